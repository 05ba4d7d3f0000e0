r"""Torch kernels of the quantile-embedding path and of the nearest-neighbour search.

The quantile embedding (:func:`semot.sliced_quantile_embedding`), distances between
embeddings (``method="quantile"``) and the exact nearest-neighbour search behind
:func:`semot.match`'s candidates (``knn_backend="torch"``, ``device=``) are matrix products,
sorts and prefix sums: here they run in torch on any device. The candidate search itself
(which rows are compared, how pairs are formed) is :mod:`semot.matching.search`; it calls
:func:`knn` for its torch backend. Results equal the Rust CPU path within float rounding
(the embedding is integrated in float64 like the Rust kernel, distances and neighbour
searches are computed in
float64); the projections themselves are matrix products in the dtype of the points, so keep
``torch.backends.cuda.matmul.allow_tf32`` at its default ``False`` for float32 points.

``import semot`` does not import torch; this module does (``pip install torch``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

try:
    import torch
except ImportError as _e:  # pragma: no cover - exercised only without torch
    raise ImportError("semot.distances.torch_kernels needs torch: pip install torch") from _e

from semot._utils.checks import FloatArray, check_p, check_positive_int
from semot.clouds import PointClouds, as_clouds, two_sets
from semot.distances.projections import resolve_n_quantiles, resolve_projections

__all__ = ["knn", "quantile_cdist", "sliced_quantile_embedding"]

#: Clouds embedded per batch (bounds device memory: batch x max size x d points at a time).
DEFAULT_BATCH = 256
#: Rows of the left matrix per block of :func:`quantile_cdist` and :func:`knn` (bounds device
#: memory: one block x len(B) matrix at a time).
ROW_BLOCK = 1024


def _device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={str(device)!r}: torch sees no CUDA device")
    return dev


def _embed_batch(
    c: PointClouds, lo: int, hi: int, proj: torch.Tensor, q_levels: int, scale: float
) -> torch.Tensor:
    """Embed clouds ``lo:hi`` (float64 result on ``proj``'s device)."""
    dev = proj.device
    offsets = c.offsets[lo : hi + 1]
    sizes = torch.as_tensor(np.diff(offsets), device=dev)
    n, m = hi - lo, int(sizes.max())
    start = torch.as_tensor(offsets[:-1] - offsets[0], device=dev)
    s0, s1 = int(offsets[0]), int(offsets[-1])
    pts = torch.as_tensor(c.points[s0:s1], device=dev)
    wts = torch.as_tensor(c.weights[s0:s1], device=dev)
    pos = torch.arange(m, device=dev)
    real = pos[None, :] < sizes[:, None]  # (n, m)
    rows = torch.where(real, start[:, None] + pos[None, :], start[:, None])
    x = pts[rows]  # (n, m, d); padding repeats the cloud's first point
    w = torch.where(real, wts[rows], torch.zeros((), dtype=wts.dtype, device=dev))
    vals = torch.matmul(x, proj).transpose(1, 2)  # (n, L, m), in the points' dtype
    # Padding sorts last (+inf), then takes the cloud's largest value with zero mass, so the
    # quantile function is unchanged.
    inf = torch.tensor(float("inf"), dtype=vals.dtype, device=dev)
    vals, order = torch.sort(torch.where(real[:, None, :], vals, inf), dim=-1)
    last = (sizes - 1).view(n, 1, 1).expand(n, vals.shape[1], 1)
    vals = torch.where(torch.isinf(vals), vals.gather(-1, last), vals).double()
    w = w.double()[:, None, :].expand_as(vals).gather(-1, order)
    w = w / w.sum(-1, keepdim=True)
    # Integrate relative to a central value, as the Rust kernel does, to keep the running
    # integral small.
    centre = vals.gather(-1, (sizes // 2).view(n, 1, 1).expand(n, vals.shape[1], 1))
    dv = vals - centre
    cum = torch.cumsum(w, -1)  # cumulative mass at the end of each point
    before = cum - w  # ... and at its start
    phi_before = torch.cumsum(w * dv, -1) - w * dv  # integral up to the start of each point
    # The last real point owns everything to t = 1 (cumulative sums may fall short of 1).
    knots = torch.where(pos[None, None, :] < last, cum, torch.full_like(cum, float("inf")))
    edges = torch.arange(1, q_levels + 1, device=dev, dtype=torch.float64) / q_levels
    edges = edges.expand(n, vals.shape[1], q_levels).contiguous()
    k = torch.searchsorted(knots.contiguous(), edges, right=True)
    phi = phi_before.gather(-1, k) + (edges - before.gather(-1, k)) * dv.gather(-1, k)
    phi = torch.cat([torch.zeros_like(phi[..., :1]), phi], -1)
    avg = torch.diff(phi, dim=-1) * q_levels + centre
    return (avg * scale).reshape(n, -1)


def _embedding(
    c: PointClouds,
    proj: FloatArray,
    q_levels: int,
    p: float,
    dev: torch.device,
    batch_size: int,
) -> torch.Tensor:
    """Quantile embeddings of every cloud of ``c``, float64 on ``dev``."""
    pr = torch.as_tensor(proj, device=dev)
    scale = float((proj.shape[1] * q_levels) ** (-1.0 / p))
    parts = [
        _embed_batch(c, lo, min(lo + batch_size, len(c)), pr, q_levels, scale)
        for lo in range(0, len(c), batch_size)
    ]
    return torch.cat(parts)


def sliced_quantile_embedding(
    A: Any,
    *,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = 0,
    projections: Any = None,
    n_quantiles: int | None = None,
    device: str | torch.device = "cuda",
    batch_size: int = DEFAULT_BATCH,
) -> FloatArray:
    r"""Embed each cloud as the binned quantile functions of its projections, with torch.

    The quantity of :func:`semot.sliced_quantile_embedding` (same arguments, same defaults),
    computed on ``device``: row ``i``, entry ``l * Q + q`` is
    :math:`(LQ)^{-1/p} \cdot Q \int_{q/Q}^{(q+1)/Q} F_{i,l}^{-1}(t)\,dt`.

    Parameters
    ----------
    A : PointClouds, list of arrays, or array (N, n, d)
        The clouds.
    n_projections, p, seed, projections, n_quantiles
        As in :func:`semot.sliced_quantile_embedding`.
    device : str or torch.device
        Where to compute (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
    batch_size : int
        Clouds per batch; device memory holds ``batch_size x max cloud size x d`` points.

    Returns
    -------
    ndarray, shape (N, L * Q), in the dtype of the points
    """
    ca = as_clouds(A, "A")
    p = check_p(p)
    batch_size = check_positive_int(batch_size, "batch_size")
    proj = resolve_projections(ca.dim, ca.dtype, n_projections, seed, projections)
    q = resolve_n_quantiles(n_quantiles, ca)
    e = _embedding(ca, proj, q, p, _device(device), batch_size)
    return np.ascontiguousarray(e.cpu().numpy().astype(ca.dtype))


def _minkowski_cdist(ea: torch.Tensor, eb: torch.Tensor, p: float) -> torch.Tensor:
    if p == 2:
        # Centred like the CPU path, so that the norms are small and the product is exact
        # enough; float64 throughout.
        centre = eb.mean(0, keepdim=True)
        a, b = ea - centre, eb - centre
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return torch.sqrt(torch.clamp(d2, min=0.0))
    return torch.cdist(ea, eb, p=p)


def quantile_cdist(
    A: Any,
    B: Any,
    *,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = 0,
    projections: Any = None,
    n_quantiles: int | None = None,
    device: str | torch.device = "cuda",
    batch_size: int = DEFAULT_BATCH,
) -> npt.NDArray[np.float64]:
    r"""Quantile-embedding distances between every cloud of ``A`` and of ``B``, with torch.

    The quantity of ``semot.sliced_wasserstein_cdist(A, B, method="quantile", ...)``: the
    :math:`\ell_p` distance between quantile embeddings, a lower bound of :math:`SW_p`.

    Parameters
    ----------
    A, B : PointClouds, list of arrays, or array (N, n, d)
        The two sets of clouds.
    n_projections, p, seed, projections, n_quantiles
        As in :func:`semot.sliced_wasserstein_cdist`.
    device, batch_size
        As in :func:`sliced_quantile_embedding`.

    Returns
    -------
    ndarray of float64, shape (len(A), len(B))
    """
    ca, cb = two_sets(A, B)
    p = check_p(p)
    batch_size = check_positive_int(batch_size, "batch_size")
    proj = resolve_projections(ca.dim, ca.dtype, n_projections, seed, projections)
    q = resolve_n_quantiles(n_quantiles, ca, cb)
    dev = _device(device)
    eb = _embedding(cb, proj, q, p, dev, batch_size)
    ea = _embedding(ca, proj, q, p, dev, batch_size)
    # Rounded through the points' dtype, like the CPU embeddings.
    dt = torch.float32 if ca.dtype == np.float32 else torch.float64
    ea, eb = ea.to(dt).double(), eb.to(dt).double()
    out = torch.cat(
        [_minkowski_cdist(ea[s : s + ROW_BLOCK], eb, p) for s in range(0, len(ca), ROW_BLOCK)]
    )
    return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float64)


def knn(
    a: Any,
    b: Any,
    k: int,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    device: str | torch.device = "cuda",
    block: int = ROW_BLOCK,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    r"""Exact ``k`` nearest rows of ``b`` for every row of ``a``, in float64 on ``device``.

    The torch backend of :func:`semot.matching.search.knn_euclidean` and
    :func:`~semot.matching.search.knn_cosine` (call those; this is their kernel).

    Parameters
    ----------
    a : array_like, shape (n, d)
        Query rows.
    b : array_like, shape (m, d)
        Rows searched.
    k : int
        Neighbours per query (at most ``m``).
    metric : {"euclidean", "cosine"}
        ``"euclidean"``: :math:`\lVert a_i - b_j \rVert_2`; ``"cosine"``: the cosine distance
        :math:`1 - \cos(a_i, b_j)` (rows normalised, zero rows left at zero).
    device : str or torch.device
        Where to compute.
    block : int
        Rows of ``a`` per block (device memory: ``block x m`` distances at a time).

    Returns
    -------
    indices : ndarray of int64, shape (n, min(k, m))
        Nearest first; ties go to the lower index (a stable sort on the device, as the CPU
        search does).
    distances : ndarray of float64, same shape
    """
    k = check_positive_int(k, "k")
    dev = _device(device)
    at = torch.as_tensor(np.asarray(a, np.float64), device=dev)
    bt = torch.as_tensor(np.asarray(b, np.float64), device=dev)
    k = min(k, bt.shape[0])
    cosine = metric == "cosine"
    if cosine:
        at = at / torch.clamp(torch.linalg.norm(at, dim=1, keepdim=True), min=1e-12)
        bt = bt / torch.clamp(torch.linalg.norm(bt, dim=1, keepdim=True), min=1e-12)
    else:
        bn = (bt * bt).sum(1)
    idx, dist = [], []
    for s in range(0, at.shape[0], block):
        blk = at[s : s + block]
        if cosine:
            d = 1.0 - blk @ bt.T
        else:
            d = torch.clamp((blk * blk).sum(1)[:, None] + bn[None, :] - 2.0 * blk @ bt.T, min=0.0)
        # A stable sort: ties go to the lower column, as in the CPU search.
        v, i = torch.sort(d, dim=1, stable=True)
        idx.append(i[:, :k])
        dist.append(v[:, :k] if cosine else torch.sqrt(v[:, :k]))
    return (
        torch.cat(idx).cpu().numpy().astype(np.int64),
        torch.cat(dist).cpu().numpy().astype(np.float64),
    )
