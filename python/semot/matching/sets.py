"""What a match compares: the features that fired, their clouds, ids, centroids, decoder rows.

A :class:`FeatureSet` is one side of a match (:func:`semot.match`, the Dask match, the
baselines): the clouds of the features that can be matched and their feature ids, so that a
frame reports ids, not positions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from semot.clouds import PointClouds, as_clouds
from semot.distances.centroid import centroids
from semot.errors import UnfiredFeaturesWarning

__all__ = ["FeatureSet", "centroids", "decoder_rows", "feature_set", "feature_sets", "unit_rows"]


@dataclass
class FeatureSet:
    """Clouds of the features that can be matched, with their feature ids.

    Attributes
    ----------
    clouds : PointClouds
        One cloud per matchable feature, in id order.
    ids : ndarray of int64
        Feature id of each cloud (``arange`` for plain clouds).
    n_excluded : int
        Features of a FeatureDistributions left out because they never fired.
    """

    clouds: PointClouds
    ids: npt.NDArray[np.int64]
    n_excluded: int = 0


def feature_set(obj: Any, name: str) -> FeatureSet:
    """Clouds and feature ids of a FeatureDistributions, PointClouds or list of clouds.

    Features of a FeatureDistributions that never fired are left out (counted in
    ``n_excluded``; the caller reports them).
    """
    if hasattr(obj, "fired_ids") and hasattr(obj, "to_clouds"):
        n_all = len(obj)
        ids = np.asarray(obj.fired_ids, dtype=np.int64)
        if ids.size == 0:
            raise ValueError(f"{name}: no feature fired; nothing to match")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            clouds = obj.to_clouds()
        return FeatureSet(clouds, ids, n_all - int(ids.size))
    clouds = as_clouds(obj, name)
    if len(clouds) == 0:
        raise ValueError(f"{name}: no features")
    return FeatureSet(clouds, np.arange(len(clouds), dtype=np.int64))


def feature_sets(source: Any, target: Any, *, warn: bool = True) -> tuple[FeatureSet, FeatureSet]:
    """Feature sets of both sides of a match, in one space.

    With ``warn``, an :class:`~semot.errors.UnfiredFeaturesWarning` counts the features that
    never fired; it points at the caller of the public function that called this one.
    """
    src, tgt = feature_set(source, "source"), feature_set(target, "target")
    if src.clouds.dim != tgt.clouds.dim:
        raise ValueError(
            f"source and target live in different spaces (dim {src.clouds.dim} vs "
            f"{tgt.clouds.dim}); collect them with one reference map"
        )
    for side, fs in (("source", src), ("target", tgt)):
        if warn and fs.n_excluded:
            warnings.warn(
                f"{side}: {fs.n_excluded} of {fs.n_excluded + len(fs.ids)} features never "
                "fired and are not matched",
                UnfiredFeaturesWarning,
                stacklevel=3,
            )
    return src, tgt


def unit_rows(x: Any) -> npt.NDArray[np.float64]:
    """Rows of ``x`` scaled to unit L2 norm, float64 (norms below 1e-12 count as 1e-12)."""
    arr = np.asarray(x, np.float64)
    out: npt.NDArray[np.float64] = arr / np.maximum(
        np.linalg.norm(arr, axis=1, keepdims=True), 1e-12
    )
    return out


def decoder_rows(w: Any, ids: npt.NDArray[np.int64], name: str) -> npt.NDArray[np.float64]:
    """Rows ``ids`` of a decoder matrix ``(n_features, d_model)`` (numpy or torch), float64."""
    if hasattr(w, "detach"):
        w = w.detach().cpu().numpy()
    arr = np.asarray(w, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected (n_features, d_model), got shape {arr.shape}")
    if ids.max(initial=-1) >= arr.shape[0]:
        raise ValueError(
            f"{name}: has {arr.shape[0]} rows but feature id {int(ids.max())} is needed"
        )
    return arr[ids]
