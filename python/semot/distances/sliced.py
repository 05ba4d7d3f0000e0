r"""Sliced Wasserstein distances between weighted point clouds, one pair or in bulk.

For directions :math:`\theta_1, \dots, \theta_L` (the columns of a ``(d, L)`` projection
matrix) the sliced :math:`p`-Wasserstein distance is

.. math::

    SW_p(\mu, \nu) = \Big( \frac{1}{L} \sum_{l=1}^{L}
        W_p^p(\theta_l \# \mu, \theta_l \# \nu) \Big)^{1/p},

where :math:`W_p` is the exact one-dimensional Wasserstein distance between the projected
weighted samples (the quantity of POT's ``ot.sliced_wasserstein_distance``). Weights are
normalised per cloud.

Random directions come from :func:`random_projections`, an explicitly specified generator
(SplitMix64-seeded xoshiro256++, Box-Muller normals, columns normalised): the same ``seed``,
dimension and ``n_projections`` give the same directions in every function and method. They
are drawn once per call, so all pairs of a bulk call share them.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

from semot import _core
from semot._utils.checks import (
    FloatArray,
    as_array,
    check_n_threads,
    check_p,
    float_array,
    index_array,
)
from semot.clouds import PointClouds, as_clouds, pair_of_clouds, two_sets
from semot.distances.projections import (
    check_sliced_memory,
    random_projections,
    resolve_n_quantiles,
    resolve_projections,
)

__all__ = [
    "random_projections",
    "sliced_quantile_embedding",
    "sliced_wasserstein_cdist",
    "sliced_wasserstein_distance",
    "sliced_wasserstein_pairs",
    "sliced_wasserstein_pdist",
    "wasserstein_1d",
]

Method = Literal["exact", "quantile"]


def check_method(method: str) -> Method:
    """Validate the ``method`` of a sliced distance: ``"exact"`` or ``"quantile"``."""
    if method not in ("exact", "quantile"):
        raise ValueError(f"method: must be 'exact' or 'quantile', got {method!r}")
    return method  # type: ignore[return-value]


def prescale(
    sets: tuple[PointClouds, ...], proj: FloatArray, n_threads: int | None = None
) -> tuple[tuple[PointClouds, ...], int]:
    """Bring points whose projections would leave the range of their dtype back into it.

    Returns the sets (scaled by ``2**-k``, an exact operation, only when needed: the
    projections ``<x, theta>`` of the points could overflow, or their coordinates are so
    small that they are subnormal) and ``k``; every sliced distance of the scaled points is
    ``2**-k`` times the distance of the original ones. ``k = 0`` (nothing copied) for any
    ordinary input. ``n_threads`` threads scan the points (one pass in the core; numpy's
    ``max()`` and ``min()`` took two on one thread, 8 % of a 1024 x 1024 exact cdist).
    """
    info = np.finfo(sets[0].dtype)
    biggest = max(_core.max_abs(c.points, n_threads) for c in sets)
    # Non-finite points (only from unchecked clouds) are left to the core, which names them.
    if biggest == 0.0 or not math.isfinite(biggest):
        return sets, 0
    col = float(np.max(np.sqrt(np.sum(np.square(proj.astype(np.float64)), axis=0))))
    log_bound = math.log2(biggest) + math.log2(col) + 0.5 * math.log2(sets[0].dim)
    if info.minexp + info.nmant + 2 < math.log2(biggest) and log_bound < info.maxexp - 4:
        return sets, 0
    k = math.ceil(log_bound)
    scaled = tuple(
        PointClouds.from_csr_unchecked(
            np.ldexp(c.points, -k).astype(c.dtype, copy=False), c.weights, c.offsets
        )
        for c in sets
    )
    return scaled, k


_Array = TypeVar("_Array", bound="np.ndarray[Any, Any]")


def unscale(out: _Array, k: int, name: str) -> _Array:
    """Multiply the distances of scaled points by ``2**k``; refuse results beyond float64."""
    if k:
        with np.errstate(over="ignore"):
            out = cast("_Array", np.ldexp(out, k).astype(out.dtype, copy=False))
    # One pass without a temporary first: inf or NaN anywhere makes the sum non-finite. Only
    # then the elementwise test (a sum of finite values may overflow on its own). An
    # `isfinite` mask of a 16384^2 matrix is a fresh 268 MB, which cost 0.8 s to touch.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(out, dtype=np.float64)
    if not np.isfinite(total) and not np.all(np.isfinite(out)):
        raise ValueError(
            f"{name}: the distances exceed the range of {np.asarray(out).dtype} "
            f"(largest finite value {np.finfo(np.asarray(out).dtype).max:.3g}); "
            "rescale the points"
        )
    return out


def sliced_wasserstein_distance(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    *,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = 0,
    projections: Any = None,
) -> float:
    r"""Sliced Wasserstein distance between two weighted point clouds.

    Computes :math:`SW_p = (\frac{1}{L}\sum_l W_p^p(\theta_l\#\mu, \theta_l\#\nu))^{1/p}`
    with exact one-dimensional :math:`W_p` between the projected weighted samples. With the
    same ``projections`` it equals ``ot.sliced_wasserstein_distance(x, y, a, b,
    projections=projections, p=p)``.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Support of the first measure (a 1-D array is taken as ``(n, 1)``).
    y : array_like, shape (m, d)
        Support of the second measure.
    a, b : array_like, optional
        Non-negative weights of ``x`` and ``y``; ``None`` means uniform. Normalised.
    n_projections : int
        Number of random directions ``L`` when ``projections`` is not given.
    p : float
        Order, ``p >= 1``.
    seed : int, numpy Generator or None
        Seed of :func:`random_projections` (default 0: the same directions every call; None
        draws fresh entropy, as POT's default does).
    projections : array_like, shape (d, L), optional
        Directions as columns (used as given, not normalised).

    Returns
    -------
    float
        :math:`SW_p(\mu, \nu)`.
    """
    cx, cy = pair_of_clouds(x, y, a, b)
    p = check_p(p)
    proj = resolve_projections(cx.dim, cx.dtype, n_projections, seed, projections)
    check_sliced_memory((cx, cy), proj.shape[1], 1)
    (cx, cy), k = prescale((cx, cy), proj, 1)
    out = _core.sw_cdist(
        cx.points, cx.weights, cx.offsets, cy.points, cy.weights, cy.offsets, proj, p, 1
    )
    return float(unscale(out, k, "x, y")[0, 0])


def sliced_wasserstein_cdist(
    A: Any,
    B: Any,
    *,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = 0,
    projections: Any = None,
    method: Method = "exact",
    n_quantiles: int | None = None,
    n_threads: int | None = None,
) -> npt.NDArray[np.float64]:
    r"""Sliced Wasserstein distances between every cloud of ``A`` and every cloud of ``B``.

    Parameters
    ----------
    A, B : PointClouds, list of arrays, or array of shape (N, n, d)
        The two sets of clouds (see :func:`semot.clouds.as_clouds`).
    n_projections, p, seed, projections
        As in :func:`sliced_wasserstein_distance`; the directions are drawn once per call.
    method : {"exact", "quantile"}
        ``"exact"``: :math:`SW_p` exactly (every cloud is projected and sorted once; a pair
        is one merge per direction; with ``p = 2`` and at least 4096 pairs, every pair with
        a *routed* cloud on either side, one with uniform weights and ``n`` points, ``n`` the
        most common size among the uniform clouds of ``B``, is one matrix product of quantile
        embeddings with ``n`` levels plus the other cloud's Jensen gap, which is exact, and only
        the pairs of two unrouted clouds are merged; ``cdist(A, A)`` merges each pair once;
        :func:`sliced_wasserstein_pdist` routes the same way with ``n`` from ``A``). ``"quantile"``:
        the :math:`\ell_p` distance between quantile embeddings
        (:func:`sliced_quantile_embedding`), a lower bound of :math:`SW_p` that is exact for
        uniform clouds of ``n_quantiles`` points; for ``p = 2`` one blocked matrix product.
    n_quantiles : int, optional
        Quantile levels per direction for ``method="quantile"``; default: the largest cloud
        size, at most 64.
    n_threads : int, optional
        Threads; ``None`` uses every core (or ``RAYON_NUM_THREADS``). Results are
        bit-identical for any value.

    Returns
    -------
    ndarray of float64, shape (len(A), len(B))

    Notes
    -----
    The GIL is released during the computation; inputs must not be modified by other threads
    during the call. Ctrl-C interrupts the call between blocks of pairs.
    """
    ca, cb = two_sets(A, B)
    p = check_p(p)
    m = check_method(method)
    n_threads = check_n_threads(n_threads)
    proj = resolve_projections(ca.dim, ca.dtype, n_projections, seed, projections)
    q = resolve_n_quantiles(n_quantiles, ca, cb) if m == "quantile" else None
    check_sliced_memory((ca, cb), proj.shape[1], len(ca) * len(cb), q)
    (ca, cb), k = prescale((ca, cb), proj, n_threads)
    if q is not None:
        out = _core.quantile_cdist(
            ca.points, ca.weights, ca.offsets, cb.points, cb.weights, cb.offsets,
            proj, q, p, n_threads,
        )  # fmt: skip
    else:
        out = _core.sw_cdist(
            ca.points, ca.weights, ca.offsets, cb.points, cb.weights, cb.offsets,
            proj, p, n_threads,
        )  # fmt: skip
    return unscale(out, k, "A, B")


def sliced_wasserstein_pdist(
    A: Any,
    *,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = 0,
    projections: Any = None,
    method: Method = "exact",
    n_quantiles: int | None = None,
    n_threads: int | None = None,
) -> npt.NDArray[np.float64]:
    """Sliced Wasserstein distances between all pairs of clouds of ``A``, condensed.

    The result has length ``N (N - 1) / 2`` in ``scipy.spatial.distance.pdist`` order (pairs
    ``(0, 1), (0, 2), ..., (1, 2), ...``); ``scipy.spatial.distance.squareform`` turns it
    into a matrix. Arguments are those of :func:`sliced_wasserstein_cdist`.
    """
    ca = as_clouds(A, "A")
    p = check_p(p)
    m = check_method(method)
    n_threads = check_n_threads(n_threads)
    proj = resolve_projections(ca.dim, ca.dtype, n_projections, seed, projections)
    q = resolve_n_quantiles(n_quantiles, ca) if m == "quantile" else None
    check_sliced_memory((ca,), proj.shape[1], len(ca) * (len(ca) - 1) // 2, q)
    (ca,), k = prescale((ca,), proj, n_threads)
    if q is not None:
        out = _core.quantile_pdist(ca.points, ca.weights, ca.offsets, proj, q, p, n_threads)
    else:
        out = _core.sw_pdist(ca.points, ca.weights, ca.offsets, proj, p, n_threads)
    return unscale(out, k, "A")


def sliced_wasserstein_pairs(
    A: Any,
    B: Any,
    pairs: Any,
    *,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = 0,
    projections: Any = None,
    method: Method = "exact",
    n_quantiles: int | None = None,
    n_threads: int | None = None,
) -> npt.NDArray[np.float64]:
    """Sliced Wasserstein distances for candidate pairs ``(i, j)`` of clouds ``A[i]``, ``B[j]``.

    Parameters
    ----------
    pairs : array_like of int, shape (K, 2)
        Row ``k`` is ``(i, j)``; only the clouds that appear are projected and sorted.
    A, B, n_projections, p, seed, projections, method, n_quantiles, n_threads
        As in :func:`sliced_wasserstein_cdist`.

    Returns
    -------
    ndarray of float64, shape (K,)
    """
    ca, cb = two_sets(A, B)
    p = check_p(p)
    m = check_method(method)
    n_threads = check_n_threads(n_threads)
    idx = (
        index_array(pairs, "pairs", 2)
        if as_array(pairs, "pairs").size
        else np.zeros((0, 2), np.int64)
    )
    if idx.shape[1] != 2:
        raise ValueError(f"pairs: expected shape (K, 2), got {idx.shape}")
    for side, (n, name) in enumerate(((len(ca), "A"), (len(cb), "B"))):
        col = idx[:, side]
        bad = (col < 0) | (col >= n)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                f"pairs: pairs[{k}, {side}] = {col[k]} is out of range for {n} clouds of {name}"
            )
    proj = resolve_projections(ca.dim, ca.dtype, n_projections, seed, projections)
    q = resolve_n_quantiles(n_quantiles, ca, cb) if m == "quantile" else None
    check_sliced_memory((ca, cb), proj.shape[1], idx.shape[0], q)
    (ca, cb), k = prescale((ca, cb), proj, n_threads)
    if q is not None:
        ua, ia = np.unique(idx[:, 0], return_inverse=True)
        ub, ib = np.unique(idx[:, 1], return_inverse=True)
        if idx.shape[0] == 0:
            return np.zeros(0)
        ea = _embed(ca.subset(ua), proj, q, p, n_threads)
        eb = _embed(cb.subset(ub), proj, q, p, n_threads)
        out = np.empty(idx.shape[0])
        for s in range(0, idx.shape[0], 4096):
            diff = ea[ia[s : s + 4096]].astype(np.float64) - eb[ib[s : s + 4096]]
            out[s : s + 4096] = minkowski_rows(diff, p)
        return unscale(out, k, "A, B")
    out = _core.sw_pairs(
        ca.points, ca.weights, ca.offsets, cb.points, cb.weights, cb.offsets,
        idx, proj, p, n_threads,
    )  # fmt: skip
    return unscale(out, k, "A, B")


def minkowski_rows(diff: npt.NDArray[np.float64], p: float) -> npt.NDArray[np.float64]:
    """Return ``(sum |diff|^p)^(1/p)`` per row.

    Rows whose plain sum overflows or underflows are redone scaled by their largest entry.
    """
    with np.errstate(over="ignore", under="ignore"):
        plain = np.sum(np.abs(diff) ** p, axis=1)
        out: npt.NDArray[np.float64] = plain ** (1.0 / p)
        bad = ~np.isfinite(plain) | (plain < np.finfo(np.float64).tiny * 2.0**53)
        if bad.any():
            half = np.abs(diff[bad] * 0.5)
            h = np.max(half, axis=1, keepdims=True)
            safe = np.where(h > 0, h, 1.0)
            out[bad] = 2.0 * h[:, 0] * np.sum((half / safe) ** p, axis=1) ** (1.0 / p)
    return out


def _embed(c: PointClouds, proj: FloatArray, q: int, p: float, n_threads: int | None) -> FloatArray:
    return _core.quantile_embedding(c.points, c.weights, c.offsets, proj, q, p, n_threads)


def sliced_quantile_embedding(
    A: Any,
    *,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = 0,
    projections: Any = None,
    n_quantiles: int | None = None,
    n_threads: int | None = None,
) -> FloatArray:
    r"""Embed each cloud as the binned quantile functions of its projections.

    Row ``i``, entry ``l * Q + q`` is :math:`s \cdot Q \int_{q/Q}^{(q+1)/Q} F_{i,l}^{-1}(t)\,dt`,
    the average of the quantile function of the projection of cloud ``i`` on direction ``l``
    over the ``q``-th of ``Q = n_quantiles`` equal bins, scaled by :math:`s = (LQ)^{-1/p}`.
    Then :math:`\lVert E_i - E_j \rVert_p` approximates :math:`SW_p` between clouds ``i`` and
    ``j``, so the rows can go into any vector index (Euclidean for ``p = 2``, L1 for ``p = 1``).

    Approximation: by Jensen's inequality on each bin, :math:`\lVert E_i - E_j\rVert_p \le
    SW_p`, with equality when every projected quantile function is constant on every bin, in
    particular for uniform clouds of exactly ``Q`` points. For other clouds the error is the
    within-bin variation of the quantile functions and shrinks as ``Q`` grows (see the README
    for measured errors).

    Parameters
    ----------
    A : PointClouds, list of arrays, or array (N, n, d)
    n_projections, p, seed, projections, n_threads
        As in :func:`sliced_wasserstein_cdist`; use the same ``seed`` (or ``projections``)
        for every set of clouds you want to compare.
    n_quantiles : int, optional
        ``Q``; default: the largest cloud size, at most 64.

    Returns
    -------
    ndarray, shape (N, L * Q), in the dtype of the points
    """
    ca = as_clouds(A, "A")
    p = check_p(p)
    n_threads = check_n_threads(n_threads)
    proj = resolve_projections(ca.dim, ca.dtype, n_projections, seed, projections)
    q = resolve_n_quantiles(n_quantiles, ca)
    check_sliced_memory((ca,), proj.shape[1], 0, q)
    (ca,), k = prescale((ca,), proj, n_threads)
    return unscale(_embed(ca, proj, q, p, n_threads), k, "A")


def wasserstein_1d(
    u_values: Any,
    v_values: Any,
    u_weights: Any = None,
    v_weights: Any = None,
    p: float = 1,
) -> float:
    r"""Exact :math:`W_p^p` between two weighted samples on the real line.

    Computes :math:`\int_0^1 |F^{-1}(t) - G^{-1}(t)|^p\,dt` for the quantile functions of
    the normalised weighted samples. Like ``ot.wasserstein_1d`` this is the ``p``-th power
    of the distance; for ``p = 1`` it equals ``scipy.stats.wasserstein_distance``.

    Parameters
    ----------
    u_values, v_values : array_like, shape (n,), (m,)
        Sample values.
    u_weights, v_weights : array_like, optional
        Non-negative weights (normalised); ``None`` means uniform.
    p : float
        Order, ``p >= 1``.

    Returns
    -------
    float
        :math:`W_p^p`.
    """
    p = check_p(p)
    u = float_array(u_values, "u_values", ndim=1, dtype=np.float64)
    v = float_array(v_values, "v_values", ndim=1, dtype=np.float64)
    uw = None if u_weights is None else float_array(u_weights, "u_weights", 1, np.float64)
    vw = None if v_weights is None else float_array(v_weights, "v_weights", 1, np.float64)
    for vals, w, name in ((u, uw, "u_weights"), (v, vw, "v_weights")):
        if w is not None and w.shape != vals.shape:
            raise ValueError(f"{name}: expected shape {vals.shape}, got {w.shape}")
    return float(_core.wasserstein_1d(u, v, uw, vw, p))  # type: ignore[arg-type]
