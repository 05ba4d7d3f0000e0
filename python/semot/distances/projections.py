r"""Directions of the sliced distances and the defaults every sliced kernel shares.

:func:`random_projections` is the one generator of directions (SplitMix64-seeded
xoshiro256++, Box-Muller normals, columns normalised): the same ``seed``, dimension and
``n_projections`` give the same directions in the Rust kernels, the torch kernels, the
candidate search of :func:`semot.match` and the Dask functions. :func:`resolve_projections`
turns a function's ``(n_projections, seed, projections)`` arguments into the ``(d, L)``
matrix the kernels read, and :func:`resolve_n_quantiles` applies the default number of
quantile levels of the quantile embedding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from semot import _core
from semot._utils.checks import FloatArray, check_positive_int, float_array, resolve_seed
from semot._utils.memory import check_memory
from semot.clouds import PointClouds

__all__ = [
    "MAX_DEFAULT_QUANTILES",
    "check_directions_memory",
    "check_sliced_memory",
    "random_projections",
    "resolve_n_quantiles",
    "resolve_projections",
]

#: Default number of quantile levels: the largest cloud size, capped here.
MAX_DEFAULT_QUANTILES = 64


def random_projections(
    d: int, n_projections: int = 128, seed: int | np.random.Generator | None = 0
) -> npt.NDArray[np.float64]:
    """Draw unit directions in dimension ``d``.

    Parameters
    ----------
    d : int
        Dimension of the points.
    n_projections : int
        Number of directions ``L``.
    seed : int, numpy Generator or None
        Seed of the explicit generator (SplitMix64-seeded xoshiro256++; standard normals from
        the Box-Muller transform, drawn direction by direction; each direction then divided by
        its norm). The default ``0``, like every ``seed`` default of semot, makes a call
        reproducible; ``None`` draws fresh operating-system entropy.

    Returns
    -------
    ndarray of float64, shape (d, n_projections)
        Column ``l`` is direction ``l`` (POT's ``projections=`` convention). Drawing more
        directions with the same seed keeps the first ones.
    """
    d = check_positive_int(d, "d")
    n_projections = check_positive_int(n_projections, "n_projections")
    check_directions_memory(d, n_projections)
    return _core.random_projections(d, n_projections, resolve_seed(seed))


def check_directions_memory(d: int, n_projections: int) -> None:
    """``MemoryError`` naming ``n_projections`` when ``(d, L)`` directions cannot fit.

    Drawing them takes two float64 ``(d, L)`` buffers (the normals and the directions).
    """
    check_memory(
        2.0 * 8 * d * n_projections,
        "n_projections",
        f"{n_projections} projections of d={d}",
    )


def resolve_projections(
    dim: int,
    dtype: np.dtype[Any],
    n_projections: int,
    seed: int | np.random.Generator | None,
    projections: Any,
) -> FloatArray:
    """Return the ``(dim, L)`` direction matrix of a call, C-contiguous in ``dtype``.

    Parameters
    ----------
    dim : int
        Dimension of the points.
    dtype : numpy dtype
        dtype of the points (the kernels project in it).
    n_projections, seed : int, and int, Generator or None
        Used when ``projections`` is None: :func:`random_projections` ``(dim, n_projections,
        seed)``.
    projections : array_like of shape (dim, L), optional
        Directions given by the caller; checked (right shape, no zero column), not
        normalised.

    Returns
    -------
    ndarray of shape (dim, L), in ``dtype``
    """
    if projections is None:
        n_projections = check_positive_int(n_projections, "n_projections")
        check_directions_memory(dim, n_projections)
        proj: FloatArray = _core.random_projections(dim, n_projections, resolve_seed(seed))
    else:
        proj = float_array(projections, "projections")
        if proj.ndim != 2 or proj.shape[0] != dim:
            raise ValueError(
                f"projections: expected shape ({dim}, L) (d rows, one column per direction), "
                f"got {proj.shape}"
            )
        if proj.shape[1] < 1:
            raise ValueError("projections: need at least one direction (L >= 1)")
        zero = ~np.any(proj != 0, axis=0)
        if zero.any():
            raise ValueError(
                f"projections: column {int(np.argmax(zero))} is zero; every column must be a "
                "non-zero direction"
            )
    return np.ascontiguousarray(proj, dtype=dtype)


def resolve_n_quantiles(n_quantiles: int | None, *sets: PointClouds) -> int:
    """Return the number of quantile levels ``Q`` of a quantile embedding.

    ``None``: the largest cloud size over ``sets``, at most :data:`MAX_DEFAULT_QUANTILES`
    (more levels than points would only repeat values); otherwise the checked integer.
    """
    if n_quantiles is None:
        return int(min(max(int(s.sizes.max()) for s in sets), MAX_DEFAULT_QUANTILES))
    return check_positive_int(n_quantiles, "n_quantiles")


def check_sliced_memory(
    sets: tuple[PointClouds, ...],
    n_projections: int,
    n_out: int,
    n_quantiles: int | None = None,
) -> None:
    """``MemoryError`` before a sliced call whose buffers cannot fit.

    ``sets`` are the clouds the call prepares, ``n_projections`` the number of directions,
    ``n_out`` the number of distances returned; ``n_quantiles`` is given for the quantile
    path. The exact path holds every cloud projected and sorted (``L (T + N)`` pairs of the
    points' dtype per set), the quantile path the embeddings (``N L Q`` values per set).
    """
    item = sets[0].dtype.itemsize
    out = 8.0 * n_out
    if n_quantiles is None:
        sorted_bytes = sum(2.0 * item * n_projections * (c.n_points + len(c)) for c in sets)
        if sorted_bytes >= out:
            check_memory(
                sorted_bytes + out,
                "n_projections",
                f"{n_projections} sorted projections of {sum(c.n_points for c in sets)} points",
            )
        check_memory(sorted_bytes + out, "A", f"{n_out} distances")
        return
    emb = sum(float(item) * len(c) * n_projections * n_quantiles for c in sets)
    if emb >= out:
        check_memory(
            emb + out,
            "n_quantiles",
            f"embeddings of {sum(len(c) for c in sets)} clouds with {n_projections} x "
            f"{n_quantiles} quantiles",
        )
    check_memory(emb + out, "A", f"{n_out} distances")
