"""Match features across layers: candidates, exact distances, assignment, "no match" rules.

:func:`match` compares every source feature with target features by a semantic distance
between their distributions (sliced Wasserstein or Sinkhorn divergence) and returns a tidy
:class:`pandas.DataFrame` with one row per (source, candidate target). For scale it works in
two stages: a cheap candidate search (nearest neighbours of the quantile embeddings, decoder
cosine, or centroids), then exact distances on the candidates only.

Every baseline in :mod:`semot.matching.baselines` returns the same frame, through
:func:`matches_from_distances`, so methods compare row for row.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from semot.clouds import PointClouds, as_clouds
from semot.distances.sinkhorn import sinkhorn_pairs
from semot.distances.sliced import (
    random_projections,
    sliced_quantile_embedding,
    sliced_wasserstein_pairs,
)

Metric = Literal["sliced", "sinkhorn"]
Assignment = Literal["nearest", "one-to-one"]
Candidates = Literal["quantile-knn", "decoder-cosine", "centroid"]
Threshold = float | Literal["auto"] | None
KnnBackend = Literal["numpy", "faiss"]

COLUMNS = ["source", "target", "rank", "distance", "matched"]
_BLOCK = 1024
_DENSE_ASSIGNMENT_MAX = 4096


@dataclass
class FeatureSet:
    """Clouds of the features that can be matched, with their feature ids."""

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


def feature_sets(source: Any, target: Any) -> tuple[FeatureSet, FeatureSet]:
    """Feature sets of both sides of a match, in one space; warns about unfired features.

    The warning points at the caller of the public function that called this one.
    """
    src, tgt = feature_set(source, "source"), feature_set(target, "target")
    if src.clouds.dim != tgt.clouds.dim:
        raise ValueError(
            f"source and target live in different spaces (dim {src.clouds.dim} vs "
            f"{tgt.clouds.dim}); collect them with one reference map"
        )
    for side, fs in (("source", src), ("target", tgt)):
        if fs.n_excluded:
            warnings.warn(
                f"{side}: {fs.n_excluded} of {fs.n_excluded + len(fs.ids)} features never "
                "fired and are not matched",
                UserWarning,
                stacklevel=3,
            )
    return src, tgt


def centroids(clouds: PointClouds) -> npt.NDArray[np.float64]:
    """Weighted mean of each cloud, ``(N, d)`` float64 (the activation-weighted centroid)."""
    w = clouds.weights.astype(np.float64)[:, None] * clouds.points
    sizes = np.diff(clouds.offsets)
    owner = np.repeat(np.arange(len(clouds)), sizes)
    out = np.zeros((len(clouds), clouds.dim))
    np.add.at(out, owner, w)
    return out


def knn_euclidean(
    a: npt.NDArray[Any],
    b: npt.NDArray[Any],
    k: int,
    block: int = _BLOCK,
    backend: KnnBackend = "numpy",
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Exact k nearest rows of ``b`` for every row of ``a`` (Euclidean), in row blocks.

    Returns indices ``(len(a), k)`` and distances, nearest first; ties go to the lower index.
    Memory: one ``block x len(b)`` matrix at a time. float32 inputs are searched in float32
    (the squared distances lose digits for near-identical rows; callers that need exact
    values recompute them, as :func:`match` does). ``backend="faiss"`` uses faiss-cpu's exact
    ``IndexFlatL2`` (same neighbours up to ties and float rounding).
    """
    k = min(k, b.shape[0])
    dtype = np.float32 if a.dtype == np.float32 and b.dtype == np.float32 else np.float64
    a_, b_ = np.ascontiguousarray(a, dtype), np.ascontiguousarray(b, dtype)
    if backend == "faiss":
        return _knn_faiss(a_, b_, k)
    if backend != "numpy":
        raise ValueError(f"knn_backend: expected 'numpy' or 'faiss', got {backend!r}")
    bn = (b_.astype(np.float64) ** 2).sum(1)
    idx = np.empty((a_.shape[0], k), np.int64)
    dist = np.empty((a_.shape[0], k))
    for s in range(0, a_.shape[0], block):
        blk = a_[s : s + block]
        cross = (blk @ b_.T).astype(np.float64)
        d2 = (blk.astype(np.float64) ** 2).sum(1)[:, None] + bn[None, :] - 2.0 * cross
        np.maximum(d2, 0.0, out=d2)
        i, d = _topk_rows(d2, k)
        idx[s : s + block], dist[s : s + block] = i, np.sqrt(d)
    return idx, dist


def _knn_faiss(
    a: npt.NDArray[Any], b: npt.NDArray[Any], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    try:
        import faiss
    except ImportError:
        raise ImportError("knn_backend='faiss' needs faiss-cpu: pip install faiss-cpu") from None
    index = faiss.IndexFlatL2(b.shape[1])
    index.add(np.ascontiguousarray(b, np.float32))
    d2, idx = index.search(np.ascontiguousarray(a, np.float32), k)
    return idx.astype(np.int64), np.sqrt(np.maximum(d2.astype(np.float64), 0.0))


def _topk_rows(
    d: npt.NDArray[np.float64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Return the k smallest entries of each row, sorted (stable: ties to the lower column)."""
    n_cols = d.shape[1]
    if k >= n_cols:
        cand = np.argsort(d, axis=1, kind="stable")
        return cand.astype(np.int64), np.take_along_axis(d, cand, 1)
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(d, part, 1)
    # Sort the k picked entries by (value, column): the stable order of the full row...
    order = np.lexsort((part, vals), axis=1)
    cand = np.take_along_axis(part, order, 1)
    # ...unless a tie straddles the k-th value: argpartition may have picked any of the tied
    # columns; redo those rows with a full stable sort.
    kth = vals.max(1)
    tied = (d <= kth[:, None]).sum(1) > k
    for r in np.flatnonzero(tied):
        cand[r] = np.argsort(d[r], kind="stable")[:k]
    return cand.astype(np.int64), np.take_along_axis(d, cand, 1)


def _cosine_knn(
    a: npt.NDArray[Any], b: npt.NDArray[Any], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    an = np.asarray(a, np.float64)
    bn = np.asarray(b, np.float64)
    an = an / np.maximum(np.linalg.norm(an, axis=1, keepdims=True), 1e-12)
    bn = bn / np.maximum(np.linalg.norm(bn, axis=1, keepdims=True), 1e-12)
    k = min(k, bn.shape[0])
    idx = np.empty((an.shape[0], k), np.int64)
    dist = np.empty((an.shape[0], k))
    for s in range(0, an.shape[0], _BLOCK):
        i, d = _topk_rows(1.0 - an[s : s + _BLOCK] @ bn.T, k)
        idx[s : s + _BLOCK], dist[s : s + _BLOCK] = i, d
    return idx, dist


def _check_choice(value: Any, name: str, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {list(allowed)}, got {value!r}")


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def default_reg(src: PointClouds, tgt: PointClouds, seed: int = 0) -> float:
    """5 % of the median squared distance between sampled support points of both sides."""
    rng = np.random.default_rng(seed)
    pts = np.concatenate(
        [
            src.points[rng.integers(0, src.points.shape[0], 256)],
            tgt.points[rng.integers(0, tgt.points.shape[0], 256)],
        ]
    ).astype(np.float64)
    d2 = ((pts[:256, None, :] - pts[None, 256:, :]) ** 2).sum(-1)
    med = float(np.median(d2))
    return 0.05 * med if med > 0 else 1e-3


def match(
    source: Any,
    target: Any,
    *,
    metric: Metric = "sliced",
    k: int = 5,
    assignment: Assignment = "nearest",
    threshold: Threshold = None,
    margin: float | None = None,
    candidates: Candidates | None = None,
    n_candidates: int = 32,
    source_decoder: Any = None,
    target_decoder: Any = None,
    n_projections: int = 128,
    n_quantiles: int = 32,
    reg: float | None = None,
    seed: int = 0,
    n_threads: int | None = None,
    knn_backend: KnnBackend = "numpy",
) -> Any:
    r"""Match each source feature to target features by a distance between distributions.

    Parameters
    ----------
    source, target : FeatureDistributions, PointClouds or list of clouds
        The two sets of features (for example two layers collected in one reference space).
        Features that never fired are left out with a warning.
    metric : {"sliced", "sinkhorn"}
        ``"sliced"``: exact sliced Wasserstein distance :math:`SW_2` with ``n_projections``
        directions from ``seed``; ``"sinkhorn"``: debiased Sinkhorn divergence with squared
        Euclidean cost and regularisation ``reg`` (default: 5 % of the median squared distance
        between support points).
    k : int
        Targets reported per source feature (``assignment="nearest"``).
    assignment : {"nearest", "one-to-one"}
        ``"nearest"``: the k closest targets of every source (several sources may share a
        target). ``"one-to-one"``: a minimum-total-distance matching where each target is used
        at most once (scipy ``linear_sum_assignment`` on the full matrix up to 4096 features,
        else a sparse bipartite matching on the candidate graph); one row per source.
    threshold : float or "auto", optional
        "No match" when the best distance exceeds it. ``"auto"``: the midpoint between the
        median best and the median second-best distance over all sources (most sources have
        one right target, so a best distance that looks like a typical second best is a
        non-match); see :func:`auto_threshold`.
    margin : float, optional
        "No match" unless the best distance is at most ``(1 - margin)`` times the second best
        (ambiguous matches are rejected); only for ``"nearest"``.
    candidates : {"quantile-knn", "decoder-cosine", "centroid"}, optional
        Restrict exact distances to ``n_candidates`` targets per source, found by exact
        nearest-neighbour search of the quantile embeddings (:func:`sliced_quantile_embedding`,
        ``n_quantiles`` bins), of decoder directions (cosine; needs ``source_decoder`` and
        ``target_decoder`` of shape ``(n_features, d_model)`` indexed by feature id), or of
        the activation-weighted centroids. None: all pairs.
    n_candidates : int
        Candidates per source.
    n_threads : int, optional
        Threads for the distance kernels.
    knn_backend : {"numpy", "faiss"}
        Nearest-neighbour search of the quantile-knn and centroid candidates: blocked exact
        search with numpy (default), or faiss-cpu's exact flat index when it is installed.

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``target`` (feature ids; ``<NA>`` when a one-to-one source is left
        unmatched), ``rank`` (1 = best), ``distance``, ``matched`` (True on the rank-1 row of
        a source whose best target passes ``threshold`` and ``margin``, and on every assigned
        one-to-one pair that passes ``threshold``). Save with ``.to_parquet`` or ``.to_csv``.
    """
    _check_choice(metric, "metric", ("sliced", "sinkhorn"))
    _check_choice(assignment, "assignment", ("nearest", "one-to-one"))
    _check_choice(candidates, "candidates", (None, "quantile-knn", "decoder-cosine", "centroid"))
    _check_choice(knn_backend, "knn_backend", ("numpy", "faiss"))
    k = _check_positive_int(k, "k")
    n_candidates = _check_positive_int(n_candidates, "n_candidates")
    src, tgt = feature_sets(source, target)

    pairs = _candidate_pairs(
        src,
        tgt,
        candidates,
        n_candidates,
        source_decoder,
        target_decoder,
        n_projections,
        n_quantiles,
        seed,
    )
    dist = pair_distances(src, tgt, pairs, metric, n_projections, reg, seed, n_threads)
    return matches_from_pairs(
        pairs,
        dist,
        src.ids,
        tgt.ids,
        k=k,
        assignment=assignment,
        threshold=threshold,
        margin=margin,
    )


def pair_distances(
    src: FeatureSet,
    tgt: FeatureSet,
    pairs: npt.NDArray[np.int64],
    metric: str,
    n_projections: int,
    reg: float | None,
    seed: int,
    n_threads: int | None,
) -> npt.NDArray[np.float64]:
    """Exact distances of (source index, target index) pairs: the second stage of a match.

    ``"sliced"``: SW2 with ``n_projections`` directions from ``seed``; ``"sinkhorn"``: the
    debiased divergence with ``reg`` (default :func:`default_reg`).
    """
    if metric == "sliced":
        proj = random_projections(src.clouds.dim, n_projections, seed)
        return sliced_wasserstein_pairs(
            src.clouds, tgt.clouds, pairs, projections=proj, n_threads=n_threads
        )
    r = reg if reg is not None else default_reg(src.clouds, tgt.clouds, seed)
    return np.asarray(
        sinkhorn_pairs(src.clouds, tgt.clouds, pairs, reg=r, debiased=True, n_threads=n_threads),
        dtype=np.float64,
    )


def _candidate_pairs(
    src: FeatureSet,
    tgt: FeatureSet,
    candidates: str | None,
    n_candidates: int,
    source_decoder: Any,
    target_decoder: Any,
    n_projections: int,
    n_quantiles: int,
    seed: int,
    knn_backend: KnnBackend = "numpy",
) -> npt.NDArray[np.int64]:
    ns, nt = len(src.ids), len(tgt.ids)
    if candidates is None:
        ii, jj = np.meshgrid(np.arange(ns), np.arange(nt), indexing="ij")
        return np.stack([ii.ravel(), jj.ravel()], 1).astype(np.int64)
    if candidates == "quantile-knn":
        proj = random_projections(src.clouds.dim, n_projections, seed)
        es = sliced_quantile_embedding(src.clouds, projections=proj, n_quantiles=n_quantiles)
        et = sliced_quantile_embedding(tgt.clouds, projections=proj, n_quantiles=n_quantiles)
        idx, _ = knn_euclidean(es, et, n_candidates, backend=knn_backend)
    elif candidates == "centroid":
        idx, _ = knn_euclidean(
            centroids(src.clouds), centroids(tgt.clouds), n_candidates, backend=knn_backend
        )
    else:
        if source_decoder is None or target_decoder is None:
            raise ValueError(
                "candidates='decoder-cosine' needs source_decoder and target_decoder "
                "(arrays of shape (n_features, d_model))"
            )
        ds = _decoder_rows(source_decoder, src.ids, "source_decoder")
        dt = _decoder_rows(target_decoder, tgt.ids, "target_decoder")
        idx, _ = _cosine_knn(ds, dt, n_candidates)
    rows = np.repeat(np.arange(ns), idx.shape[1])
    return np.stack([rows, idx.ravel()], 1).astype(np.int64)


def _decoder_rows(w: Any, ids: npt.NDArray[np.int64], name: str) -> npt.NDArray[np.float64]:
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


def matches_from_distances(
    d: Any,
    source_ids: Any = None,
    target_ids: Any = None,
    *,
    k: int = 5,
    assignment: Assignment = "nearest",
    threshold: Threshold = None,
    margin: float | None = None,
) -> Any:
    """Build the match frame of :func:`match` from a dense ``(n_source, n_target)`` matrix.

    Used by every baseline, so all methods report the same columns.
    """
    dm = np.asarray(d, dtype=np.float64)
    if dm.ndim != 2 or 0 in dm.shape:
        raise ValueError(f"distances: expected a non-empty 2-D matrix, got shape {dm.shape}")
    if not np.isfinite(dm).all():
        r, c = np.argwhere(~np.isfinite(dm))[0]
        raise ValueError(f"distances: entry ({r}, {c}) is not finite")
    ns, nt = dm.shape
    sid = np.arange(ns) if source_ids is None else np.asarray(source_ids, np.int64)
    tid = np.arange(nt) if target_ids is None else np.asarray(target_ids, np.int64)
    if sid.shape != (ns,) or tid.shape != (nt,):
        raise ValueError(
            f"source_ids/target_ids: expected lengths {ns} and {nt}, got {sid.shape} and "
            f"{tid.shape}"
        )
    ii, jj = np.meshgrid(np.arange(ns), np.arange(nt), indexing="ij")
    pairs = np.stack([ii.ravel(), jj.ravel()], 1)
    return matches_from_pairs(
        pairs,
        dm.ravel(),
        sid,
        tid,
        k=k,
        assignment=assignment,
        threshold=threshold,
        margin=margin,
    )


def matches_from_pairs(
    pairs: npt.NDArray[np.int64],
    dist: npt.NDArray[np.float64],
    source_ids: npt.NDArray[np.int64],
    target_ids: npt.NDArray[np.int64],
    *,
    k: int,
    assignment: str,
    threshold: Threshold,
    margin: float | None,
) -> Any:
    """Build the match frame from distances of (source index, target index) pairs."""
    import pandas as pd

    _check_choice(assignment, "assignment", ("nearest", "one-to-one"))
    k = _check_positive_int(k, "k")
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ValueError(f"threshold: expected a number or 'auto', got {threshold!r}")
    elif threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
    if margin is not None and not 0.0 <= margin < 1.0:
        raise ValueError(f"margin: expected a number in [0, 1), got {margin!r}")
    if margin is not None and assignment == "one-to-one":
        raise ValueError("margin: only for assignment='nearest'")
    ns = len(source_ids)
    # Sort pairs by (source, distance, target) once: the per-source rankings fall out of it.
    order = np.lexsort((pairs[:, 1], dist, pairs[:, 0]))
    p, d = pairs[order], dist[order]
    if threshold == "auto":
        threshold = auto_threshold(p, d)
    if assignment == "nearest":
        first = np.ones(len(p), bool)
        first[1:] = p[1:, 0] != p[:-1, 0]
        starts = np.flatnonzero(first)
        rank = np.arange(len(p)) - np.repeat(starts, np.diff(np.append(starts, len(p))))
        keep = rank < k
        p, d, rank = p[keep], d[keep], rank[keep]
        best = rank == 0
        ok = best.copy()
        if threshold is not None:
            ok &= d <= threshold
        if margin is not None:
            second = np.full(len(p), np.inf)
            has2 = np.flatnonzero(rank == 1)
            second[has2 - 1] = d[has2]
            ok &= d <= (1.0 - margin) * second
        return pd.DataFrame(
            {
                "source": source_ids[p[:, 0]],
                "target": pd.array(target_ids[p[:, 1]], dtype="Int64"),
                "rank": (rank + 1).astype(np.int64),
                "distance": d,
                "matched": ok,
            },
            columns=COLUMNS,
        )
    src_idx, tgt_idx, dd = _assign(p, d, ns, len(target_ids))
    ok = tgt_idx >= 0
    if threshold is not None:
        ok &= dd <= threshold
    tgt = pd.array([int(target_ids[j]) if j >= 0 else None for j in tgt_idx], dtype="Int64")
    return pd.DataFrame(
        {
            "source": source_ids[src_idx],
            "target": tgt,
            "rank": np.ones(len(src_idx), np.int64),
            "distance": np.where(tgt_idx >= 0, dd, np.nan),
            "matched": ok,
        },
        columns=COLUMNS,
    )


def auto_threshold(pairs: npt.NDArray[np.int64], dist: npt.NDArray[np.float64]) -> float:
    """Midpoint of the median best and median second-best distance per source.

    ``pairs`` must be sorted by (source, distance). Sources with a single candidate count only
    towards the best distances; with no second-best distance at all, no source is rejected.
    """
    first = np.ones(len(pairs), bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    starts = np.flatnonzero(first)
    best = dist[starts]
    has2 = np.append(starts[1:], len(pairs)) - starts > 1
    if not has2.any():
        return float("inf")
    second = dist[starts[has2] + 1]
    return 0.5 * (float(np.median(best)) + float(np.median(second)))


def _assign(
    p: npt.NDArray[np.int64], d: npt.NDArray[np.float64], ns: int, nt: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Minimum-cost one-to-one assignment on the given edges; -1 = unassigned source."""
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    out_t = np.full(ns, -1, np.int64)
    out_d = np.full(ns, np.nan)
    dense = len(p) == ns * nt and max(ns, nt) <= _DENSE_ASSIGNMENT_MAX
    if dense:
        m = np.empty((ns, nt))
        m[p[:, 0], p[:, 1]] = d
        r, c = linear_sum_assignment(m)
        out_t[r], out_d[r] = c, m[r, c]
        return np.arange(ns), out_t, out_d
    # Sparse: every source also gets a private "unmatched" column costing more than any real
    # edge, so a full matching of the sources always exists. Costs are shifted to be > 0
    # (scipy treats explicit zeros as missing edges).
    big = float(d.max() - d.min()) * 2.0 + 1.0
    cost = d - d.min() + 1.0
    rows = np.concatenate([p[:, 0], np.arange(ns)])
    cols = np.concatenate([p[:, 1], nt + np.arange(ns)])
    vals = np.concatenate([cost, np.full(ns, big + 1.0)])
    graph = csr_matrix((vals, (rows, cols)), shape=(ns, nt + ns))
    row, col_of_row = min_weight_full_bipartite_matching(graph)
    col = np.full(ns, -1, np.int64)
    col[row] = col_of_row
    real = (col >= 0) & (col < nt)
    out_t[real] = col[real]
    # Read the chosen edges' distances back from a matrix with the same sparsity (candidate
    # pairs are unique per source).
    dmat = csr_matrix((d, (p[:, 0], p[:, 1])), shape=(ns, nt))
    chosen = np.flatnonzero(real)
    out_d[chosen] = np.asarray(dmat[chosen, col[chosen]]).ravel()
    return np.arange(ns), out_t, out_d


def chain(matches: Sequence[Any]) -> Any:
    """Compose rank-1 matches across consecutive layers (5 -> 6 -> ... -> 11).

    Parameters
    ----------
    matches : sequence of DataFrame
        ``matches[i]`` maps layer i's features to layer i+1's (outputs of :func:`match` or a
        baseline); only rows with ``matched`` are followed.

    Returns
    -------
    pandas.DataFrame
        One row per source feature of ``matches[0]``: ``source``, ``target`` (the feature
        reached at the last layer, ``<NA>`` when the chain breaks), ``distance`` (sum of the
        step distances along the chain; NaN when broken), ``steps`` (how many steps held), and
        ``via`` (the list of feature ids visited, source first).
    """
    import pandas as pd

    if not matches:
        raise ValueError("matches: give at least one match frame")
    steps = []
    for i, m in enumerate(matches):
        missing = [c for c in ("source", "target", "distance", "matched") if c not in m]
        if missing:
            raise ValueError(f"matches[{i}]: missing columns {missing}")
        ok = m[m["matched"].astype(bool)]
        steps.append(
            {
                int(s): (int(t), float(dd))
                for s, t, dd in zip(ok["source"], ok["target"], ok["distance"], strict=True)
            }
        )
    rows = []
    for s in pd.unique(matches[0]["source"]):
        cur, total, via, held = int(s), 0.0, [int(s)], 0
        for step in steps:
            if cur not in step:
                break
            cur, dd = step[cur]
            total += dd
            via.append(cur)
            held += 1
        done = held == len(steps)
        rows.append(
            {
                "source": int(s),
                "target": cur if done else None,
                "distance": total if done else np.nan,
                "steps": held,
                "via": via,
            }
        )
    out = pd.DataFrame(rows, columns=["source", "target", "distance", "steps", "via"])
    out["target"] = out["target"].astype("Int64")
    return out
