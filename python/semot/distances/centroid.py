r"""The centroid distance: how far apart the means of two feature distributions are.

For clouds :math:`\mu = \sum_i a_i \delta_{x_i}` and :math:`\nu = \sum_j b_j \delta_{y_j}` (weights
normalised), the distance is :math:`\|\bar x - \bar y\|_2` with :math:`\bar x = \sum_i a_i x_i`:
the Wasserstein distance between the Dirac measures at the two means, and the location part of
:math:`W_2` (:math:`W_2^2(\mu, \nu) = \|\bar x - \bar y\|^2 + W_2^2` of the centred clouds).
The method study of :mod:`semot.bench.study` found it the most reliable distance between
feature distributions on real SAEs, in a whitened reference space; it is ``distance="centroid"``
everywhere a distance is chosen.

All sums are float64; a pair costs ``O(d)`` once the means are known.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from semot.clouds import PointClouds

__all__ = ["centroid_pairs", "centroid_pdist", "centroids"]

_BLOCK = 1 << 16


def centroids(clouds: PointClouds) -> npt.NDArray[np.float64]:
    r"""Activation-weighted mean of each cloud: row ``i`` is :math:`\sum_j w_{ij} x_{ij}`.

    :class:`~semot.clouds.PointClouds` normalises the weights of each cloud to sum to one, so
    row ``i`` is the mean of feature ``i``'s distribution. Returns ``(N, d)`` float64.
    """
    w = clouds.weights.astype(np.float64)[:, None] * clouds.points
    sizes = np.diff(clouds.offsets)
    owner = np.repeat(np.arange(len(clouds)), sizes)
    out = np.zeros((len(clouds), clouds.dim))
    np.add.at(out, owner, w)
    return out


def centroid_pairs(
    source: PointClouds, target: PointClouds, pairs: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Centroid distance of each ``(source index, target index)`` row of ``pairs``, float64."""
    if source.dim != target.dim:
        raise ValueError(
            f"source, target: clouds of dimension {source.dim} and {target.dim} live in "
            "different spaces"
        )
    cs, ct = centroids(source), centroids(target)
    out = np.empty(len(pairs))
    for start in range(0, len(pairs), _BLOCK):
        p = pairs[start : start + _BLOCK]
        out[start : start + len(p)] = np.linalg.norm(cs[p[:, 0]] - ct[p[:, 1]], axis=1)
    return out


def centroid_pdist(clouds: PointClouds) -> npt.NDArray[np.float64]:
    """Condensed centroid distances of all pairs ``i < j`` (``scipy...pdist`` order)."""
    from scipy.spatial.distance import pdist

    out: npt.NDArray[np.float64] = pdist(centroids(clouds), "euclidean")
    return out
