"""Every matching method on the same source features, as ranked lists of targets.

Each method is the library's own (:func:`semot.match`, its exact stage for Sinkhorn, the
baselines of :mod:`semot.matching.baselines`); this module only runs them on the evaluated
sources and turns their frames into a :class:`Ranking`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from semot.errors import UnfiredFeaturesWarning
from semot.matching.baselines import centroid_match, decoder_cosine_match, sae_match
from semot.matching.frame import matches_from_distances, matches_from_pairs
from semot.matching.matcher import exact_stage, match, pair_distances
from semot.matching.sets import feature_set

__all__ = [
    "BLOCK",
    "FULL_ASSIGNMENT_MAX",
    "METHODS",
    "PAIR_LIMIT",
    "SINKHORN_CANDIDATES",
    "TOP",
    "Ranking",
    "frame_ranking",
    "run_methods",
    "sae_state",
]

#: Targets kept per source in every ranking.
TOP = 5
#: Above this many (source, target) pairs, semot's sliced matches search 64 candidates per
#: source (quantile-embedding k-NN) instead of measuring every pair.
PAIR_LIMIT = 2**20
_N_CANDIDATES = 64
#: Sinkhorn re-ranks this many of the sliced nearest targets of each of its sources.
SINKHORN_CANDIDATES = 16
#: Sources per dense (sources x targets) matrix of the nearest baselines (256 x 16384 float64:
#: 34 MB, a few times that while the frame is built).
BLOCK = 256
#: SAE Match assigns over all features up to this many (source x target) entries of its cost
#: matrix (float64: 134 MB); above it, only the evaluated sources are assigned into all targets.
FULL_ASSIGNMENT_MAX = 2**24

#: The methods, in table order.
METHODS = (
    "semot-sliced",
    "semot-sliced-1to1",
    "semot-sinkhorn",
    "centroid",
    "decoder-cosine",
    "sae-match",
    "activation-corr-B",
)


@dataclass
class Ranking:
    """The top targets a method gives each evaluated source.

    Attributes
    ----------
    method : str
    targets : ndarray of int64, shape (n_sources, TOP)
        Target feature ids, best first; -1 where the method gives fewer (one-to-one methods give
        one, an unassigned source none).
    covered : ndarray of bool, shape (n_sources,)
        Sources the method was run on.
    note : str
        How it was run (candidates, subsets).
    seconds : float
        Wall time of the method (not deterministic; reported, never compared).
    """

    method: str
    targets: npt.NDArray[np.int64]
    covered: npt.NDArray[np.bool_]
    note: str = ""
    seconds: float = float("nan")


def frame_ranking(
    method: str, frame: Any, source_ids: npt.NDArray[np.int64], note: str = ""
) -> Ranking:
    """Turn a match frame (``source``, ``target``, ``rank``) into a :class:`Ranking`.

    Rows of sources outside ``source_ids`` (sorted) and ranks above :data:`TOP` are dropped.
    """
    n = len(source_ids)
    targets = np.full((n, TOP), -1, dtype=np.int64)
    covered = np.zeros(n, dtype=bool)
    f = frame[frame["rank"] <= TOP]
    src = f["source"].to_numpy(dtype=np.int64)
    pos = np.searchsorted(source_ids, src)
    ok = pos < n
    ok[ok] = source_ids[pos[ok]] == src[ok]
    tgt = f["target"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    rank = f["rank"].to_numpy(dtype=np.int64) - 1
    targets[pos[ok], rank[ok]] = tgt[ok]
    covered[pos[ok]] = True
    return Ranking(method, targets, covered, note)


def sae_state(sae: Any, name: str, d_sae: int) -> dict[str, npt.NDArray[np.float64]]:
    """Return the parameters of a sae-lens SAE (or of its state dict) as float64 arrays.

    Raises ValueError when ``W_dec`` is missing or its rows disagree with the site's ``d_sae``.
    """
    state = sae.state_dict() if hasattr(sae, "state_dict") else sae
    if not isinstance(state, Mapping):
        raise TypeError(
            f"{name}: expected a sae-lens SAE or its state dict, got {type(sae).__name__}"
        )
    out: dict[str, npt.NDArray[np.float64]] = {}
    for key in ("W_enc", "b_enc", "W_dec", "threshold", "scale"):
        if key in state:
            v = state[key]
            if hasattr(v, "detach"):
                v = v.detach().float().cpu().numpy()
            out[key] = np.asarray(v, dtype=np.float64)
    if "W_dec" not in out:
        raise ValueError(f"{name}: no W_dec among the SAE parameters")
    if out["W_dec"].shape[0] != d_sae:
        raise ValueError(
            f"{name}: W_dec has {out['W_dec'].shape[0]} rows but the site has d_sae = {d_sae} "
            "(is it the SAE of that site?)"
        )
    return out


def _subset_state(
    state: Mapping[str, npt.NDArray[np.float64]], ids: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[np.float64]]:
    out = {"W_enc": state["W_enc"][:, ids], "b_enc": state["b_enc"][ids]}
    out["W_dec"] = state["W_dec"][ids]
    for key in ("threshold", "scale"):
        if key in state:
            out[key] = state[key][ids]
    return out


def _candidates(n_pairs: int) -> tuple[dict[str, Any], str]:
    if n_pairs <= PAIR_LIMIT:
        return {}, "all pairs"
    return (
        {"candidates": "quantile-knn", "n_candidates": _N_CANDIDATES},
        f"{_N_CANDIDATES} quantile-knn candidates per source",
    )


def run_methods(
    source_fd: Any,
    target_fd: Any,
    source_ids: npt.NDArray[np.int64],
    corr_b: npt.NDArray[np.float64],
    *,
    source_sae: Mapping[str, npt.NDArray[np.float64]] | None,
    target_sae: Mapping[str, npt.NDArray[np.float64]] | None,
    sinkhorn_sources: int,
    seed: int,
) -> dict[str, Ranking]:
    """Rank targets for the sources ``source_ids`` (sorted, fired in ``source_fd``) by each method.

    Parameters
    ----------
    source_fd, target_fd : FeatureDistributions
        The collection run's two sites.
    source_ids : ndarray of int64
        The evaluated sources.
    corr_b : ndarray, shape (len(source_ids), n_target)
        Pearson r on held-out split B: the activation-correlation baseline's matrix.
    source_sae, target_sae : dict of arrays, optional
        SAE parameters (:func:`sae_state`); without them decoder cosine and SAE Match are left
        out.
    sinkhorn_sources : int
        Sources Sinkhorn is run on (the first of a seeded permutation of ``source_ids``).
    seed : int
        Seed of the sliced projections, the candidate search and the Sinkhorn subset.
    """
    out: dict[str, Ranking] = {}
    clock = [time.perf_counter()]

    def done(ranking: Ranking) -> Ranking:
        now = time.perf_counter()
        ranking.seconds, clock[0] = now - clock[0], now
        return ranking

    n_tf = len(target_fd.fired_ids)
    sub_fd = source_fd.select(source_ids)
    k_near = max(TOP, SINKHORN_CANDIDATES)
    with warnings.catch_warnings():
        # Targets that never fired in the collection cannot be ranked by a distribution method;
        # the report counts them once.
        warnings.simplefilter("ignore", UnfiredFeaturesWarning)
        cand, how = _candidates(len(source_ids) * n_tf)
        near = match(sub_fd, target_fd, distance="sliced", k=k_near, seed=seed, **cand)
        out["semot-sliced"] = done(frame_ranking("semot-sliced", near, source_ids, how))
        n_sf = len(source_fd.fired_ids)
        cand, how = _candidates(n_sf * n_tf)
        one = match(
            source_fd, target_fd, distance="sliced", assignment="one-to-one", seed=seed, **cand
        )
        note = f"over all {n_sf} fired sources, {how}"
        out["semot-sliced-1to1"] = done(frame_ranking("semot-sliced-1to1", one, source_ids, note))
        out["semot-sinkhorn"] = done(
            _sinkhorn(source_fd, target_fd, source_ids, near, sinkhorn_sources, seed)
        )
        cen = _by_blocks(
            source_ids, lambda ids: centroid_match(source_fd.select(ids), target_fd, k=TOP)
        )
        out["centroid"] = done(frame_ranking("centroid", cen, source_ids))
    if source_sae is not None and target_sae is not None:
        n_tgt = int(target_sae["W_dec"].shape[0])
        w_s, w_t = source_sae["W_dec"], target_sae["W_dec"]

        def cosine(ids: npt.NDArray[np.int64]) -> Any:
            frame = decoder_cosine_match(w_s[ids], w_t, k=TOP)
            frame["source"] = ids[frame["source"].to_numpy()]
            return frame

        dec = _by_blocks(source_ids, cosine)
        out["decoder-cosine"] = done(frame_ranking("decoder-cosine", dec, source_ids))
        n_src = int(source_sae["W_dec"].shape[0])
        if n_src * n_tgt <= FULL_ASSIGNMENT_MAX:
            sm = sae_match(dict(source_sae), dict(target_sae))
            note = f"one-to-one over all {n_src} x {n_tgt} features"
        else:
            sm = sae_match(_subset_state(source_sae, source_ids), dict(target_sae))
            sm["source"] = source_ids[sm["source"].to_numpy()]
            note = f"one-to-one of the {len(source_ids)} evaluated sources into all {n_tgt}"
        out["sae-match"] = done(frame_ranking("sae-match", sm, source_ids, note))

    def correlation(ids: npt.NDArray[np.int64]) -> Any:
        rows = np.searchsorted(source_ids, ids)  # source_ids is sorted
        return matches_from_distances(1.0 - corr_b[rows], ids, k=TOP)

    ac = _by_blocks(source_ids, correlation)
    note = "Pearson r on held-out split B"
    out["activation-corr-B"] = done(frame_ranking("activation-corr-B", ac, source_ids, note))
    return out


def _sinkhorn(
    source_fd: Any,
    target_fd: Any,
    source_ids: npt.NDArray[np.int64],
    near: Any,
    n_sources: int,
    seed: int,
) -> Ranking:
    """Sinkhorn divergence on the sliced nearest candidates of a seeded subset of sources."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(source_ids)[: min(n_sources, len(source_ids))])
    src = feature_set(source_fd.select(chosen), "source")
    tgt = feature_set(target_fd, "target")
    rows = near[near["source"].isin(chosen)]
    si = _positions(src.ids, rows["source"].to_numpy(dtype=np.int64))
    ti = _positions(tgt.ids, rows["target"].to_numpy(dtype=np.int64))
    pairs = np.stack([si, ti], 1).astype(np.int64)
    stage = exact_stage(src.clouds, tgt.clouds, "sinkhorn", seed=seed)
    dist, _ = pair_distances(src.clouds, tgt.clouds, pairs, stage)
    frame = matches_from_pairs(
        pairs, dist, src.ids, tgt.ids, k=TOP, assignment="nearest", threshold=None, margin=None
    )
    note = f"{len(chosen)} sources, re-ranking their {SINKHORN_CANDIDATES} sliced nearest targets"
    return frame_ranking("semot-sinkhorn", frame, source_ids, note)


def _by_blocks(ids: npt.NDArray[np.int64], frame_of: Callable[[Any], Any]) -> Any:
    """Concatenate ``frame_of(block)`` over blocks of :data:`BLOCK` sources (nearest frames only).

    A nearest-assignment frame is per source, so blocks give the same rows as one call, with a
    dense ``(BLOCK, n_target)`` matrix at a time instead of ``(len(ids), n_target)``.
    """
    import pandas as pd

    frames = [frame_of(ids[i : i + BLOCK]) for i in range(0, len(ids), BLOCK)]
    return pd.concat(frames, ignore_index=True)


def _positions(ids: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Index of each of ``values`` in ``ids`` (every value is present; ``ids`` in any order)."""
    order = np.argsort(ids, kind="stable")
    out: npt.NDArray[np.int64] = order[np.searchsorted(ids, values, sorter=order)]
    return out
