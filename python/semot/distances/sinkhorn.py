r"""Entropic optimal transport (Sinkhorn) between weighted point clouds.

For clouds :math:`x_1, \dots, x_n` with weights :math:`a` and :math:`y_1, \dots, y_m` with
weights :math:`b` (each normalised to sum to one), the ground cost is
:math:`C_{ij} = \lVert x_i - y_j \rVert_2^p` and, for an absolute regularisation
:math:`\varepsilon` (``reg``, in the unit of the cost), the entropic plan is

.. math::

    P^\varepsilon = \operatorname*{arg\,min}_{P \in \Pi(a, b)}
        \langle P, C \rangle + \varepsilon \operatorname{KL}(P \,\|\, a \otimes b),
    \qquad
    \mathrm{OT}_\varepsilon(a, b) = \langle P^\varepsilon, C \rangle
        + \varepsilon \operatorname{KL}(P^\varepsilon \,\|\, a \otimes b)
        = \langle a, f \rangle + \langle b, g \rangle,

where :math:`f, g` are the optimal dual potentials. The functions return either

* ``debiased=False``: :math:`\langle P^\varepsilon, C \rangle^{1/p}`, the transport cost of
  the entropic plan, i.e. ``ot.sinkhorn2(a, b, C, reg) ** (1/p)`` at convergence; it tends to
  the Wasserstein distance :math:`W_p` as ``reg -> 0``. POT's ``ot.sinkhorn2`` returns
  :math:`\langle P^\varepsilon, C \rangle` itself (the cost, a :math:`p`-th power of a
  distance); semot returns its :math:`1/p`-th power, in the unit of the points, so that
  values compare with :math:`W_p` and with the sliced distances;
* ``debiased=True``: the Sinkhorn divergence of Feydy et al. (2019) (GeomLoss's default),
  :math:`S_\varepsilon^{1/p}` with
  :math:`S_\varepsilon = \max\bigl(0, \mathrm{OT}_\varepsilon(a, b)
  - \tfrac12 \mathrm{OT}_\varepsilon(a, a) - \tfrac12 \mathrm{OT}_\varepsilon(b, b)\bigr)`;
  it is zero for identical clouds and symmetric. Here too semot returns the :math:`1/p`-th
  power (GeomLoss and POT's ``ot.bregman.empirical_sinkhorn_divergence`` return
  :math:`S_\varepsilon` itself).

The solver is a log-stabilised Sinkhorn with epsilon scaling and absorption (Schmitzer 2019),
in float64 whatever the dtype of the points (float32 points are only used to build the cost
matrix). It stops when the L1 violation of the marginals of the plan,
:math:`\sum_i \lvert (P \mathbf 1)_i - a_i \rvert`, is below ``tol`` at the final
:math:`\varepsilon`; ``max_iter`` bounds the iterations at the final :math:`\varepsilon`
(intermediate stages are capped separately), and ``n_iter`` counts those iterations.
Sinkhorn converges slowly for very small ``reg`` (relative to the spread of the costs); pairs
that hit ``max_iter`` produce one :class:`ConvergenceWarning` per call and still return the
value of the last iterate.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import numpy.typing as npt

from semot import _core
from semot._utils.checks import (
    check_n_threads,
    check_p,
    check_positive_float,
    check_positive_int,
    index_array,
)
from semot._utils.memory import check_memory
from semot.clouds import PointClouds, as_clouds, pair_of_clouds, two_sets
from semot.errors import ConvergenceWarning

__all__ = [
    "ConvergenceWarning",
    "SinkhornInfo",
    "default_reg",
    "sinkhorn_cdist",
    "sinkhorn_distance",
    "sinkhorn_pairs",
    "sinkhorn_pdist",
]

#: Default maximum number of iterations at the final epsilon.
DEFAULT_MAX_ITER = 10_000
#: Default tolerance on the L1 marginal violation.
DEFAULT_TOL = 1e-9


@dataclass(frozen=True)
class SinkhornInfo:
    """Solver diagnostics, with the shape of the returned values.

    Attributes
    ----------
    n_iter : ndarray of uint32
        Iterations at the final epsilon (of the :math:`(a, b)` problem).
    converged : ndarray of bool
        Whether the marginal violation went below ``tol`` (for ``debiased=True``: in the
        :math:`(a, b)` problem and both self problems).
    """

    n_iter: npt.NDArray[np.uint32]
    converged: npt.NDArray[np.bool_]


class SinkhornParams(NamedTuple):
    """The checked solver arguments of a Sinkhorn call (see :func:`check_sinkhorn_params`)."""

    reg: float
    p: float
    max_iter: int
    tol: float
    debiased: bool


def check_sinkhorn_params(
    reg: Any, p: Any, max_iter: Any, tol: Any, debiased: Any
) -> SinkhornParams:
    """Check ``reg``, ``p``, ``max_iter``, ``tol`` (TypeError / ValueError) and bundle them."""
    return SinkhornParams(
        check_positive_float(reg, "reg"),
        check_p(p),
        check_positive_int(max_iter, "max_iter"),
        check_positive_float(tol, "tol"),
        bool(debiased),
    )


def warn_unconverged(
    n_unconverged: int, n_problems: int, max_iter: int, tol: float, stacklevel: int = 3
) -> None:
    """Issue the one :class:`ConvergenceWarning` of a call, if any problem hit ``max_iter``.

    The Dask functions count the problems over all blocks and call this once, so the warning
    reads as the single-process one. ``stacklevel`` counts from the caller of this function,
    as in :func:`warnings.warn`.
    """
    if n_unconverged:
        warnings.warn(
            f"{n_unconverged} of {n_problems} Sinkhorn problem(s) did not converge within "
            f"max_iter={max_iter} iterations (tol={tol:g}); increase max_iter or reg",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )


def check_sinkhorn_memory(a: PointClouds, b: PointClouds, n_out: int, threads: int | None) -> None:
    """Raise ``MemoryError`` before a Sinkhorn call whose buffers cannot fit.

    The buffers are the results, and a cost matrix and a kernel of the largest pair for each
    thread.
    """
    n_threads = threads or (os.cpu_count() or 1)
    n_max, m_max = int(a.sizes.max()), int(b.sizes.max())
    per_thread = 2 * 8.0 * n_max * m_max
    check_memory(
        per_thread * n_threads + 13.0 * n_out,
        "A" if per_thread * n_threads >= 13.0 * n_out else "B",
        f"cost matrices of {n_max} x {m_max} points on {n_threads} threads and {n_out} results",
    )


def check_resolved(values: npt.NDArray[np.float64], pair_of: Any, reg: float, p: float) -> None:
    """Raise ``ValueError`` for the pairs the solver refused (NaN values).

    The core gives NaN where ``reg`` is below the float64 resolution of the costs of a pair
    (``reg < 2.2e-16 * (max C - min C)``) or where the costs ``|x - y|^p`` overflow float64;
    ``pair_of(k)`` gives the ``(x, y)`` points of flat index ``k`` for the message.
    """
    bad = np.isnan(values.ravel())
    if not bad.any():
        return
    k = int(np.argmax(bad))
    x, y = pair_of(k)
    with np.errstate(over="ignore"):
        diff = x.astype(np.float64)[:, None, :] - y.astype(np.float64)[None, :, :]
        cost = np.sqrt(np.sum(diff**2, axis=-1)) ** p
    spread = float(cost.max() - cost.min())
    where = f"{int(bad.sum())} of {bad.size} problem(s), the first at flat index {k}"
    if not np.isfinite(spread):
        raise ValueError(
            f"p: the costs |x - y|^p = {float(np.sqrt(np.sum(diff**2, axis=-1)).max()):.3g}^{p:g} "
            f"exceed the float64 range (1.8e308) in {where}; use a smaller p or rescale the points"
        )
    raise ValueError(
        f"reg: {reg:g} is below what float64 resolves against costs spread over {spread:.3g} "
        f"in {where}: need reg >= {_RELATIVE_REG:.2g} x the cost spread = "
        f"{_RELATIVE_REG * spread:.3g}"
    )


#: The core's smallest ``reg`` relative to a pair's cost spread (float64 machine epsilon).
_RELATIVE_REG = float(np.finfo(np.float64).eps)


def _warn(converged: npt.NDArray[np.bool_], max_iter: int, tol: float) -> None:
    bad = int(converged.size - np.count_nonzero(converged))
    warn_unconverged(bad, int(converged.size), max_iter, tol, stacklevel=3)


def default_reg(source: PointClouds, target: PointClouds, seed: int = 0) -> float:
    r"""Default Sinkhorn regularisation between two sets of clouds.

    Returns :math:`\varepsilon = 0.05 \cdot \operatorname{median}_{i,j}
    \lVert x_i - y_j \rVert_2^2` over 256 support points ``x_i`` drawn (with replacement)
    from ``source`` and 256 ``y_j`` from ``target`` with ``numpy.random.default_rng(seed)``:
    5 % of a typical squared-Euclidean cost (the ``p = 2`` cost), so that the entropic plan
    is close to the optimal one without slowing the solver down. ``1e-3`` when that median is
    zero (every sampled point identical).
    """
    rng = np.random.default_rng(seed)
    pts = np.concatenate(
        [
            source.points[rng.integers(0, source.points.shape[0], 256)],
            target.points[rng.integers(0, target.points.shape[0], 256)],
        ]
    ).astype(np.float64)
    d2 = ((pts[:256, None, :] - pts[None, 256:, :]) ** 2).sum(-1)
    med = float(np.median(d2))
    return 0.05 * med if med > 0 else 1e-3


def _csr(c: PointClouds) -> tuple[Any, Any, Any]:
    return c.points, c.weights, c.offsets


@overload
def sinkhorn_distance(
    x: Any,
    y: Any,
    a: Any = ...,
    b: Any = ...,
    *,
    reg: float,
    p: float = ...,
    max_iter: int = ...,
    tol: float = ...,
    debiased: bool = ...,
    return_info: Literal[False] = ...,
) -> float: ...


@overload
def sinkhorn_distance(
    x: Any,
    y: Any,
    a: Any = ...,
    b: Any = ...,
    *,
    reg: float,
    p: float = ...,
    max_iter: int = ...,
    tol: float = ...,
    debiased: bool = ...,
    return_info: Literal[True],
) -> tuple[float, SinkhornInfo]: ...


def sinkhorn_distance(
    x: Any,
    y: Any,
    a: Any = None,
    b: Any = None,
    *,
    reg: float,
    p: float = 2,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    debiased: bool = False,
    return_info: bool = False,
) -> float | tuple[float, SinkhornInfo]:
    r"""Entropic OT value between two weighted point clouds.

    Returns :math:`\langle P^\varepsilon, C \rangle^{1/p}` with
    :math:`C_{ij} = \lVert x_i - y_j \rVert_2^p` and :math:`P^\varepsilon` the entropic plan
    for :math:`\varepsilon` = ``reg`` (see the module documentation), or with
    ``debiased=True`` the Sinkhorn divergence
    :math:`\max(0, \mathrm{OT}_\varepsilon(a, b) - \tfrac12 \mathrm{OT}_\varepsilon(a, a)
    - \tfrac12 \mathrm{OT}_\varepsilon(b, b))^{1/p}`. Note the power: POT's
    ``ot.sinkhorn2(a, b, C, reg)`` returns :math:`\langle P^\varepsilon, C \rangle`, the
    :math:`p`-th power of this value.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n,)
        Points of the first cloud (a 1-D array is ``n`` points on the line).
    y : array_like, shape (m, d) or (m,)
        Points of the second cloud.
    a, b : array_like, shape (n,) and (m,), optional
        Non-negative weights (normalised internally); ``None`` means uniform.
    reg : float
        Absolute entropic regularisation :math:`\varepsilon > 0`, in the unit of the cost
        :math:`\lVert x - y \rVert^p` (for example a few percent of the median cost).
    p : float, default 2
        Order of the cost, ``>= 1``.
    max_iter : int, default 10000
        Maximum number of iterations at the final epsilon.
    tol : float, default 1e-9
        Tolerance on the L1 violation of the marginals of the plan.
    debiased : bool, default False
        Return the Sinkhorn divergence instead of the transport cost of the plan.
    return_info : bool, default False
        Also return a :class:`SinkhornInfo` with 0-d ``n_iter`` and ``converged``.

    Returns
    -------
    float, or (float, SinkhornInfo)

    Warns
    -----
    ConvergenceWarning
        When the solver stops at ``max_iter``.

    Examples
    --------
    >>> import numpy as np
    >>> from semot.distances.sinkhorn import sinkhorn_distance
    >>> round(sinkhorn_distance(np.zeros((1, 2)), np.ones((1, 2)), reg=0.1), 6)
    1.414214
    """
    prm = check_sinkhorn_params(reg, p, max_iter, tol, debiased)
    cx, cy = pair_of_clouds(x, y, a, b)
    check_sinkhorn_memory(cx, cy, 1, 1)
    values, n_iter, conv = _core.sinkhorn_cdist(
        *_csr(cx), *_csr(cy), prm.reg, prm.p, prm.max_iter, prm.tol, prm.debiased, 1
    )
    check_resolved(values, lambda k: (cx.points, cy.points), prm.reg, prm.p)
    _warn(conv, prm.max_iter, prm.tol)
    value = float(values[0, 0])
    if return_info:
        return value, SinkhornInfo(n_iter.reshape(()), conv.reshape(()))
    return value


def _finish(
    values: npt.NDArray[np.float64],
    n_iter: npt.NDArray[np.uint32],
    conv: npt.NDArray[np.bool_],
    max_iter: int,
    tol: float,
    return_info: bool,
) -> npt.NDArray[np.float64] | tuple[npt.NDArray[np.float64], SinkhornInfo]:
    _warn(conv, max_iter, tol)
    if return_info:
        return values, SinkhornInfo(n_iter, conv)
    return values


def sinkhorn_cdist(
    A: Any,
    B: Any,
    *,
    reg: float,
    p: float = 2,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    debiased: bool = False,
    n_threads: int | None = None,
    return_info: bool = False,
) -> npt.NDArray[np.float64] | tuple[npt.NDArray[np.float64], SinkhornInfo]:
    r"""Sinkhorn values between every cloud of ``A`` and every cloud of ``B``.

    ``out[i, j]`` equals ``sinkhorn_distance(*A[i], *B[j], ...)`` (same quantity as
    :func:`sinkhorn_distance`: :math:`\langle P^\varepsilon, C \rangle^{1/p}`, where POT's
    ``ot.sinkhorn2`` returns :math:`\langle P^\varepsilon, C \rangle`). ``A`` and ``B`` are
    anything :func:`semot.clouds.as_clouds` accepts; mixed float32/float64 inputs are
    computed in float64.

    Parameters
    ----------
    A, B : PointClouds, list of arrays or array of shape (N, n, d)
        The two sets of clouds (anything :func:`semot.clouds.as_clouds` accepts).
    reg : float
        Absolute entropic regularisation :math:`\varepsilon > 0`, in the unit of the cost
        :math:`\lVert x - y \rVert^p`.
    p : float, default 2
        Order of the cost, ``>= 1``.
    max_iter : int, default 10000
        Maximum number of iterations at the final epsilon, per problem.
    tol : float, default 1e-9
        Tolerance on the L1 violation of the marginals of each plan.
    debiased : bool, default False
        Return Sinkhorn divergences (see :func:`sinkhorn_distance`); the self terms
        :math:`\mathrm{OT}_\varepsilon(a, a)` are computed once per cloud.
    n_threads : int, optional
        Threads to use; ``None`` uses every core (or ``RAYON_NUM_THREADS``). Results are
        bit-identical for any thread count.
    return_info : bool, default False
        Also return a :class:`SinkhornInfo` whose arrays have the shape of the values.

    Returns
    -------
    ndarray, shape (len(A), len(B)), float64, or (values, SinkhornInfo)

    Warns
    -----
    ConvergenceWarning
        Once per call, counting the problems that stopped at ``max_iter``.
    """
    prm = check_sinkhorn_params(reg, p, max_iter, tol, debiased)
    threads = check_n_threads(n_threads)
    ca, cb = two_sets(A, B)
    check_sinkhorn_memory(ca, cb, len(ca) * len(cb), threads)
    values, n_iter, conv = _core.sinkhorn_cdist(
        *_csr(ca), *_csr(cb), prm.reg, prm.p, prm.max_iter, prm.tol, prm.debiased, threads
    )
    nb = len(cb)
    check_resolved(values, lambda k: (ca[k // nb][0], cb[k % nb][0]), prm.reg, prm.p)
    return _finish(values, n_iter, conv, prm.max_iter, prm.tol, return_info)


def sinkhorn_pdist(
    A: Any,
    *,
    reg: float,
    p: float = 2,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    debiased: bool = False,
    n_threads: int | None = None,
    return_info: bool = False,
) -> npt.NDArray[np.float64] | tuple[npt.NDArray[np.float64], SinkhornInfo]:
    r"""Sinkhorn values between all pairs of clouds of ``A``, condensed like ``scipy`` ``pdist``.

    Each value is the quantity of :func:`sinkhorn_distance`,
    :math:`\langle P^\varepsilon, C \rangle^{1/p}` (POT's ``ot.sinkhorn2`` returns
    :math:`\langle P^\varepsilon, C \rangle`). The output lists the pairs
    ``(0, 1), (0, 2), ..., (0, N-1), (1, 2), ...``;
    ``scipy.spatial.distance.squareform`` turns it into a matrix.

    Parameters
    ----------
    A : PointClouds, list of arrays or array of shape (N, n, d)
        The set of clouds (anything :func:`semot.clouds.as_clouds` accepts).
    reg : float
        Absolute entropic regularisation :math:`\varepsilon > 0`, in the unit of the cost
        :math:`\lVert x - y \rVert^p`.
    p : float, default 2
        Order of the cost, ``>= 1``.
    max_iter : int, default 10000
        Maximum number of iterations at the final epsilon, per problem.
    tol : float, default 1e-9
        Tolerance on the L1 violation of the marginals of each plan.
    debiased : bool, default False
        Return Sinkhorn divergences (see :func:`sinkhorn_distance`); the self terms
        :math:`\mathrm{OT}_\varepsilon(a, a)` are computed once per cloud.
    n_threads : int, optional
        Threads to use; ``None`` uses every core (or ``RAYON_NUM_THREADS``). Results are
        bit-identical for any thread count.
    return_info : bool, default False
        Also return a :class:`SinkhornInfo` whose arrays have the shape of the values.

    Returns
    -------
    ndarray, shape (N * (N - 1) // 2,), float64, or (values, SinkhornInfo)

    Warns
    -----
    ConvergenceWarning
        Once per call, counting the problems that stopped at ``max_iter``.
    """
    prm = check_sinkhorn_params(reg, p, max_iter, tol, debiased)
    threads = check_n_threads(n_threads)
    ca = as_clouds(A, "A")
    n = len(ca)
    check_sinkhorn_memory(ca, ca, n * (n - 1) // 2, threads)
    values, n_iter, conv = _core.sinkhorn_pdist(
        *_csr(ca), prm.reg, prm.p, prm.max_iter, prm.tol, prm.debiased, threads
    )
    if np.isnan(values).any():
        rows, cols = np.triu_indices(n, 1)
        check_resolved(values, lambda k: (ca[rows[k]][0], ca[cols[k]][0]), prm.reg, prm.p)
    return _finish(values, n_iter, conv, prm.max_iter, prm.tol, return_info)


def sinkhorn_pairs(
    A: Any,
    B: Any,
    pairs: Any,
    *,
    reg: float,
    p: float = 2,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    debiased: bool = False,
    n_threads: int | None = None,
    return_info: bool = False,
) -> npt.NDArray[np.float64] | tuple[npt.NDArray[np.float64], SinkhornInfo]:
    r"""Sinkhorn values for the pairs ``(A[pairs[k, 0]], B[pairs[k, 1]])``.

    ``pairs`` is an integer array of shape ``(K, 2)`` (non-negative indices). Each value is
    the quantity of :func:`sinkhorn_distance`, :math:`\langle P^\varepsilon, C \rangle^{1/p}`
    (POT's ``ot.sinkhorn2`` returns :math:`\langle P^\varepsilon, C \rangle`).

    Parameters
    ----------
    A, B : PointClouds, list of arrays or array of shape (N, n, d)
        The two sets of clouds (anything :func:`semot.clouds.as_clouds` accepts).
    pairs : array_like of int, shape (K, 2)
        Indices ``(i, j)`` of the pairs ``(A[i], B[j])``.
    reg : float
        Absolute entropic regularisation :math:`\varepsilon > 0`, in the unit of the cost
        :math:`\lVert x - y \rVert^p`.
    p : float, default 2
        Order of the cost, ``>= 1``.
    max_iter : int, default 10000
        Maximum number of iterations at the final epsilon, per problem.
    tol : float, default 1e-9
        Tolerance on the L1 violation of the marginals of each plan.
    debiased : bool, default False
        Return Sinkhorn divergences (see :func:`sinkhorn_distance`); the self terms
        :math:`\mathrm{OT}_\varepsilon(a, a)` are computed once per cloud.
    n_threads : int, optional
        Threads to use; ``None`` uses every core (or ``RAYON_NUM_THREADS``). Results are
        bit-identical for any thread count.
    return_info : bool, default False
        Also return a :class:`SinkhornInfo` whose arrays have the shape of the values.

    Returns
    -------
    ndarray, shape (K,), float64, or (values, SinkhornInfo)

    Warns
    -----
    ConvergenceWarning
        Once per call, counting the problems that stopped at ``max_iter``.
    """
    prm = check_sinkhorn_params(reg, p, max_iter, tol, debiased)
    threads = check_n_threads(n_threads)
    ca, cb = two_sets(A, B)
    idx = index_array(pairs, "pairs", 2)
    if idx.shape[1] != 2:
        raise ValueError(f"pairs: expected shape (K, 2), got {idx.shape}")
    check_sinkhorn_memory(ca, cb, idx.shape[0], threads)
    values, n_iter, conv = _core.sinkhorn_pairs(
        *_csr(ca), *_csr(cb), idx, prm.reg, prm.p, prm.max_iter, prm.tol, prm.debiased, threads
    )
    check_resolved(values, lambda k: (ca[idx[k, 0]][0], cb[idx[k, 1]][0]), prm.reg, prm.p)
    return _finish(values, n_iter, conv, prm.max_iter, prm.tol, return_info)
