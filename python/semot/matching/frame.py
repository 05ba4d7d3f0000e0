"""The match frame: one row per (source, candidate target), assignment, "no match" rules.

Every matcher (:func:`semot.match`, the Dask match, the baselines in
:mod:`semot.matching.baselines`) ends in :func:`matches_from_pairs` (or
:func:`matches_from_distances` for a dense matrix), so methods compare row for row:
columns ``source``, ``target``, ``rank``, ``distance``, ``matched``. :func:`chain` composes
frames across consecutive layers.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from semot._utils.checks import check_choice, check_positive_int

__all__ = [
    "COLUMNS",
    "all_pairs",
    "auto_threshold",
    "chain",
    "check_frame_args",
    "matches_from_distances",
    "matches_from_pairs",
]

Assignment = Literal["nearest", "one-to-one"]
Threshold = float | Literal["auto"] | None
ASSIGNMENTS: tuple[Assignment, ...] = ("nearest", "one-to-one")
COLUMNS = ["source", "target", "rank", "distance", "matched"]
# Up to this many features a side, one-to-one uses scipy's dense linear_sum_assignment.
_DENSE_ASSIGNMENT_MAX = 4096


def all_pairs(n_source: int, n_target: int) -> npt.NDArray[np.int64]:
    """Every (source index, target index) pair, row-major: ``(n_source * n_target, 2)``."""
    ii, jj = np.meshgrid(np.arange(n_source), np.arange(n_target), indexing="ij")
    return np.stack([ii.ravel(), jj.ravel()], 1).astype(np.int64)


def check_frame_args(
    k: Any, assignment: Any, threshold: Any, margin: Any
) -> tuple[int, Assignment, Threshold, float | None]:
    """Check the arguments of the frame (wrong type: TypeError, bad value: ValueError).

    Returns ``(k, assignment, threshold, margin)`` as the frame builder uses them.
    """
    k = check_positive_int(k, "k")
    check_choice(assignment, "assignment", ASSIGNMENTS)
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ValueError(f"threshold: expected a number or 'auto', got {threshold!r}")
    elif threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(
                f"threshold: expected a number, 'auto' or None, got {type(threshold).__name__}"
            )
        if not np.isfinite(float(threshold)):
            raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
        threshold = float(threshold)
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
            raise TypeError(f"margin: expected a number or None, got {type(margin).__name__}")
        if not 0.0 <= float(margin) < 1.0:
            raise ValueError(f"margin: expected a number in [0, 1), got {margin!r}")
        if assignment == "one-to-one":
            raise ValueError("margin: only for assignment='nearest'")
        margin = float(margin)
    return k, assignment, threshold, margin


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
    """Build the match frame of :func:`semot.match` from a dense ``(n_source, n_target)`` matrix.

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
    return matches_from_pairs(
        all_pairs(ns, nt),
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
    assignment: Assignment,
    threshold: Threshold,
    margin: float | None,
) -> Any:
    """Build the match frame from distances of (source index, target index) pairs.

    Parameters
    ----------
    pairs : ndarray of int64, shape (K, 2)
        Rows ``(i, j)``: source index, target index (each pair at most once).
    dist : ndarray of float64, shape (K,)
        Distance of each pair.
    source_ids, target_ids : ndarray of int64
        Feature id of each source and target index.
    k, assignment, threshold, margin
        As in :func:`semot.match`.

    Returns
    -------
    pandas.DataFrame
        The frame :func:`semot.match` documents.
    """
    import pandas as pd

    k, assignment, threshold, margin = check_frame_args(k, assignment, threshold, margin)
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
        ``matches[i]`` maps layer i's features to layer i+1's (outputs of :func:`semot.match` or a
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
