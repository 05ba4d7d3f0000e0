"""The data of the browser's pages: per-site index columns, per-feature records, chains.

Everything here is plain JSON-able data built with numpy, one site at a time; the layout of
the files is in :mod:`semot.browser.site`.

A *context* is the list ``[seq, pos, activation, ids, k]``: the point's sequence index and
position in the token stream, the feature's activation there, the token ids of the window
around it and the index ``k`` of the firing token in ``ids``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from semot.browser.inputs import MatchFrame
from semot.features.container import FeatureDistributions
from semot.features.contexts import TokenContexts

__all__ = ["TargetRows", "chain_rows", "site_records", "target_rows"]

#: Bins of the activation histogram of each feature.
HISTOGRAM_BINS = 16


def _num(x: float, digits: int = 6) -> float | None:
    """Return a finite float rounded to ``digits`` significant digits, None for NaN/inf."""
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _nums(x: Any, digits: int = 6) -> list[float | None]:
    """:func:`_num` of every element of ``x``, vectorised."""
    a = np.asarray(x, np.float64)
    ok = np.isfinite(a) & (a != 0)
    scale = np.ones_like(a)
    scale[ok] = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(a[ok]))))
    r = np.where(ok, np.round(a * scale) / scale, np.where(np.isfinite(a), a, np.nan))
    return [None if v != v else v for v in r.tolist()]


class TargetRows:
    """The best targets of every source feature of one frame.

    Attributes
    ----------
    rows : dict of int to list
        Source feature id to ``[target id, rank, distance, matched]`` rows, best first
        (by rank, then distance), at most ``k`` of them (unassigned one-to-one rows left out).
    margin : dict of int to float or None
        ``1 - d1 / d2`` of each source (its best and second-best distance; the largest
        ``margin=`` the source passes), or the frame's own ``margin`` column; None with fewer
        than two targets.
    """

    def __init__(self, frame: Any, k: int, digits: int = 4) -> None:
        f = frame[frame["target"].notna()]
        src = np.asarray(f["source"], np.int64)
        tgt = np.asarray(f["target"].astype("int64"), np.int64)
        rank = np.asarray(f["rank"], np.int64)
        dist = np.asarray(f["distance"], np.float64)
        ok = np.asarray(f["matched"], bool)
        order = np.lexsort((dist, rank, src))
        src, tgt, rank, dist, ok = src[order], tgt[order], rank[order], dist[order], ok[order]
        first = np.ones(src.size, bool)
        first[1:] = src[1:] != src[:-1]
        starts = np.flatnonzero(first)
        n_of = np.diff(np.append(starts, src.size))
        if "margin" in f:
            margin = np.asarray(f["margin"], np.float64)[order][starts]
        else:
            d1 = dist[starts]
            d2 = np.where(n_of > 1, dist[np.minimum(starts + 1, src.size - 1)], np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                margin = np.where(d2 > 0, 1.0 - d1 / d2, np.nan)
        dists = _nums(dist, max(digits, 6))
        t_l, r_l, ok_l = tgt.tolist(), rank.tolist(), ok.astype(int).tolist()
        self.rows: dict[int, list[list[Any]]] = {}
        for s, a, n in zip(src[starts].tolist(), starts.tolist(), n_of.tolist(), strict=True):
            self.rows[s] = [[t_l[j], r_l[j], dists[j], ok_l[j]] for j in range(a, a + min(n, k))]
        self.margin: dict[int, float | None] = dict(
            zip(src[starts].tolist(), _nums(margin, digits), strict=True)
        )


def target_rows(frames: Sequence[MatchFrame], k: int) -> list[TargetRows]:
    """Return the :class:`TargetRows` of each frame."""
    return [TargetRows(f.frame, k) for f in frames]


def _ranks(owner: npt.NDArray[np.int64], order: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Return the rank of each element of ``order`` among those with the same owner.

    ``order`` must keep the elements of one owner together.
    """
    o = owner[order]
    first = np.ones(o.size, bool)
    first[1:] = o[1:] != o[:-1]
    starts = np.flatnonzero(first)
    return np.arange(o.size) - np.repeat(starts, np.diff(np.append(starts, o.size)))


def site_records(
    fd: FeatureDistributions,
    contexts: TokenContexts,
    *,
    site_index: int,
    n_top: int,
    n_sampled: int,
    before: int,
    after: int,
    targets: Mapping[int, TargetRows],
    labels: Mapping[int, str] | None,
    seed: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the index columns of one site and the record of each of its features.

    Parameters
    ----------
    fd : FeatureDistributions
        The site.
    contexts : TokenContexts
        Token windows of the run.
    site_index : int
        Position of the site among the run's sites (seeds its sampled contexts).
    n_top, n_sampled : int
        Contexts of the largest activations (ties: the earlier point), and of a uniform
        random sample of the feature's other sampled points, shown per feature.
    before, after : int
        Tokens shown before and after the firing token.
    targets : mapping of int to TargetRows
        Target site index to the best targets of this site's features there.
    labels : mapping of int to str, optional
        A label per feature id (for example an explanation from elsewhere).
    seed : int
        Seed of the sampled contexts.

    Returns
    -------
    index : dict
        Columns, one entry per feature in the site's order: ``ids``, ``n`` (sample size),
        ``fc`` (firing count), ``d`` (density: firing count / tokens, None when unknown),
        ``tok`` (up to 3 distinct strings of the firing tokens of the top contexts), ``lbl``
        and, per target site ``t``, ``m[t]`` = ``{"bt", "bd", "bm", "ok"}``: the best target,
        its distance, the source's margin and whether it is matched (None without a row).
    records : list of dict
        Per feature: ``i`` id, ``n``, ``fc``, ``d``, ``amax`` (largest sampled activation),
        ``h`` the activation histogram ``[lo, hi, counts]`` over the sampled points
        (:data:`HISTOGRAM_BINS` equal bins from the smallest to the largest; in
        ``mode="weighted"`` the points are drawn in proportion to the activation, so this is
        the histogram of the activation-weighted distribution), ``top`` and ``smp``
        contexts, ``t`` {target site: rows ``[id, rank, distance, matched]``} and ``mg``
        {target site: margin}.
    """
    nf = len(fd)
    ids = np.asarray(fd.feature_ids, np.int64)
    sizes = np.asarray(fd.sample_sizes, np.int64)
    counts = np.asarray(fd.firing_counts, np.int64)
    dens = _nums(fd.densities, 4) if fd.n_tokens else [None] * nf
    offsets, (acts, seq, pos) = fd.point_arrays("activations", "seq", "pos")
    acts = np.asarray(acts, np.float64)
    owner = np.repeat(np.arange(nf), sizes)
    point = np.arange(owner.size)
    by_act = np.lexsort((point, -acts, owner))
    is_top = np.zeros(owner.size, bool)
    is_top[by_act[_ranks(owner, by_act) < n_top]] = True
    u = np.random.default_rng([seed, site_index]).random(owner.size)
    u[is_top] = np.inf
    by_u = np.lexsort((u, owner))
    is_smp = np.zeros(owner.size, bool)
    is_smp[by_u[(_ranks(owner, by_u) < n_sampled) & np.isfinite(u[by_u])]] = True
    # Chosen points: each feature's top ones by activation, then its sampled ones in order.
    top_pts = by_act[is_top[by_act]]
    smp_pts = point[is_smp]
    chosen = np.concatenate([top_pts, smp_pts])
    chosen = chosen[np.lexsort((np.arange(chosen.size), owner[chosen]))]
    win, known = contexts.windows(seq[chosen], pos[chosen], before, after)
    valid = win >= 0
    a_col = np.where(valid.any(1), valid.argmax(1), 0)
    b_col = np.where(valid.any(1), valid.shape[1] - valid[:, ::-1].argmax(1), 0)
    win_l, a_l, b_l = win.tolist(), a_col.tolist(), b_col.tolist()
    known_l = known.astype(bool).tolist()
    seq_l, pos_l = seq[chosen].tolist(), pos[chosen].tolist()
    act_l = _nums(acts[chosen])
    ctx_all = []
    for r in range(chosen.size):
        if known_l[r]:
            a, b = a_l[r], b_l[r]
            ctx_all.append([seq_l[r], pos_l[r], act_l[r], win_l[r][a:b], before - a])
        else:
            ctx_all.append([seq_l[r], pos_l[r], act_l[r], [], -1])
    n_top_of = np.bincount(owner[top_pts], minlength=nf)
    n_ch_of = np.bincount(owner[chosen], minlength=nf)
    ch_start = np.concatenate([[0], np.cumsum(n_ch_of)]).tolist()
    # Histograms and maxima, vectorised over features.
    fired = sizes > 0
    lo = np.zeros(nf)
    hi = np.zeros(nf)
    if owner.size:
        lo[fired] = np.minimum.reduceat(acts, offsets[:-1][fired])
        hi[fired] = np.maximum.reduceat(acts, offsets[:-1][fired])
    span = np.where(hi > lo, hi - lo, 1.0)
    bins = np.clip(((acts - lo[owner]) / span[owner] * HISTOGRAM_BINS).astype(np.int64), 0,
                   HISTOGRAM_BINS - 1)  # fmt: skip
    hist = np.bincount(owner * HISTOGRAM_BINS + bins, minlength=nf * HISTOGRAM_BINS)
    hist_l = hist.reshape(nf, HISTOGRAM_BINS).tolist()
    lo_l, hi_l = _nums(lo), _nums(hi)
    vocab = contexts.vocab or {}
    ids_l, sizes_l, counts_l = ids.tolist(), sizes.tolist(), counts.tolist()
    index: dict[str, Any] = {
        "ids": ids_l,
        "n": sizes_l,
        "fc": counts_l,
        "d": dens,
        "tok": [],
        "lbl": [str(labels.get(f, "")) if labels else "" for f in ids_l],
        "m": {},
    }
    for t, rows in targets.items():
        col: dict[str, list[Any]] = {"bt": [], "bd": [], "bm": [], "ok": []}
        for f in ids_l:
            best = rows.rows.get(f)
            col["bt"].append(best[0][0] if best else None)
            col["bd"].append(best[0][2] if best else None)
            col["bm"].append(rows.margin.get(f) if best else None)
            col["ok"].append(best[0][3] if best else None)
        index["m"][str(t)] = col
    records: list[dict[str, Any]] = []
    for i in range(nf):
        ctx = ctx_all[ch_start[i] : ch_start[i + 1]]
        nt = int(n_top_of[i])
        fired_tokens = [vocab.get(c[3][c[4]], "") for c in ctx[:nt] if c[4] >= 0]
        index["tok"].append(list(dict.fromkeys(fired_tokens))[:3])
        f = ids_l[i]
        records.append(
            {
                "i": f,
                "n": sizes_l[i],
                "fc": counts_l[i],
                "d": dens[i],
                "amax": hi_l[i] if sizes_l[i] else None,
                "h": [lo_l[i], hi_l[i], hist_l[i] if sizes_l[i] else []],
                "top": ctx[:nt],
                "smp": ctx[nt:],
                "t": {str(t): rows.rows.get(f, []) for t, rows in targets.items()},
                "mg": {str(t): rows.margin.get(f) for t, rows in targets.items()},
            }
        )
    return index, records


def chain_rows(
    chain: Any, steps: Sequence[Any], first_ids: npt.NDArray[np.int64]
) -> list[list[Any]]:
    """Rows ``[source id, via ids, step distances]`` of the chains that hold one step or more.

    Parameters
    ----------
    chain : pandas.DataFrame
        :func:`semot.chain`'s output over the chain's frames.
    steps : sequence of DataFrame
        The frames of the steps, in order, to read each step's distance (rank-1 matched rows).
    first_ids : ndarray of int64
        Feature ids of the first site (rows come in this order).
    """
    best = []
    for frame in steps:
        ok = frame[frame["matched"].astype(bool) & frame["target"].notna()]
        best.append(
            {
                (int(s), int(t)): float(d)
                for s, t, d in zip(ok["source"], ok["target"], ok["distance"], strict=True)
            }
        )
    by_source = {int(s): list(v) for s, v in zip(chain["source"], chain["via"], strict=True)}
    rows = []
    for f in first_ids.tolist():
        via = by_source.get(int(f))
        if not via or len(via) < 2:
            continue
        dists = [_num(best[k].get((via[k], via[k + 1]), float("nan"))) for k in range(len(via) - 1)]
        rows.append([int(f), [int(v) for v in via], dists])
    return rows
