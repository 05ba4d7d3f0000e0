"""Match features across layers: :func:`match`, and its exact stage :func:`pair_distances`.

:func:`match` compares every source feature with target features by a semantic distance
between their distributions (sliced Wasserstein or Sinkhorn divergence) and returns a tidy
:class:`pandas.DataFrame` with one row per (source, candidate target). For scale it works in
two stages: a cheap candidate search (:class:`semot.matching.search.CandidateSearch`:
nearest neighbours of the quantile embeddings, decoder cosine, or centroids; numpy, faiss or
torch), then exact distances on the candidates only (:func:`pair_distances`), then the frame
(:func:`semot.matching.frame.matches_from_pairs`). The Dask match
(:func:`semot.distributed.match`) runs the same three pieces block by block.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

# The `name as name` imports are re-exports: names that lived here before the package was
# cut by stage, still imported from here by modules outside it (semot/__init__, bench,
# circuits, their tests) until their owners switch to semot.matching.
from semot._utils.checks import (
    FloatArray,
    check_choice,
    check_n_threads,
    check_positive_float,
    check_positive_int,
)
from semot.clouds import PointClouds
from semot.distances.centroid import centroid_pairs
from semot.distances.choice import DISTANCES, Distance, check_distance
from semot.distances.projections import random_projections
from semot.distances.sinkhorn import ConvergenceWarning, sinkhorn_pairs
from semot.distances.sinkhorn import default_reg as default_reg
from semot.distances.sliced import sliced_wasserstein_pairs
from semot.matching.frame import (
    Assignment,
    Threshold,
    all_pairs,
    check_frame_args,
    matches_from_pairs,
)
from semot.matching.frame import auto_threshold as auto_threshold
from semot.matching.frame import chain as chain
from semot.matching.frame import matches_from_distances as matches_from_distances
from semot.matching.search import (
    CANDIDATES,
    Candidates,
    CandidateSearch,
    KnnBackend,
    resolve_knn_backend,
)
from semot.matching.sets import decoder_rows, feature_sets, unit_rows
from semot.matching.sets import feature_set as feature_set

__all__ = [
    "DISTANCES",
    "SCORES",
    "ExactStage",
    "MatchOptions",
    "Score",
    "check_match_args",
    "decoder_pair_distances",
    "exact_stage",
    "joint_matches",
    "match",
    "pair_distances",
    "rank_within_sources",
]


Score = Literal["distance", "joint"]
SCORES: tuple[Score, ...] = ("distance", "joint")


class MatchOptions(NamedTuple):
    """The checked arguments of a match (:func:`check_match_args`)."""

    distance: Distance
    k: int
    assignment: Assignment
    threshold: Threshold
    margin: float | None
    candidates: Candidates | None
    n_candidates: int
    knn_backend: KnnBackend
    device: Any
    n_projections: int
    n_quantiles: int
    reg: float | None
    n_threads: int | None


def check_match_args(
    *,
    distance: Any,
    metric: Any,
    k: Any,
    assignment: Any,
    threshold: Any,
    margin: Any,
    candidates: Any,
    n_candidates: Any,
    knn_backend: Any,
    device: Any,
    n_projections: Any,
    n_quantiles: Any,
    reg: Any,
    n_threads: Any,
) -> MatchOptions:
    """Check the arguments of :func:`match` and of the Dask match, the same way for both.

    A wrong type raises TypeError, a bad value ValueError, the message starting with the
    argument's name. ``metric`` is the deprecated alias of ``distance`` (DeprecationWarning;
    TypeError when both are given). Must be called directly by the public function (the
    DeprecationWarning points at its caller).
    """
    dist = check_distance(distance, metric, stacklevel=5)
    k, assignment, threshold, margin = check_frame_args(k, assignment, threshold, margin)
    if candidates is not None:
        check_choice(candidates, "candidates", CANDIDATES)
    backend, device = resolve_knn_backend(knn_backend, device)
    return MatchOptions(
        distance=dist,
        k=k,
        assignment=assignment,
        threshold=threshold,
        margin=margin,
        candidates=candidates,
        n_candidates=check_positive_int(n_candidates, "n_candidates"),
        knn_backend=backend,
        device=device,
        n_projections=check_positive_int(n_projections, "n_projections"),
        n_quantiles=check_positive_int(n_quantiles, "n_quantiles"),
        reg=None if reg is None else check_positive_float(reg, "reg"),
        n_threads=check_n_threads(n_threads),
    )


@dataclass(frozen=True)
class ExactStage:
    """How :func:`pair_distances` measures a pair (the second stage of a match).

    Attributes
    ----------
    distance : {"sliced", "sinkhorn"}
        The distance.
    projections : ndarray (d, L), optional
        Directions of the sliced distance.
    reg : float, optional
        Regularisation of the Sinkhorn divergence.
    n_threads : int, optional
        Rust threads.
    """

    distance: Distance
    projections: FloatArray | None
    reg: float | None
    n_threads: int | None


def exact_stage(
    source: PointClouds,
    target: PointClouds,
    distance: Distance,
    *,
    n_projections: int = 128,
    reg: float | None = None,
    seed: int = 0,
    n_threads: int | None = None,
) -> ExactStage:
    """Resolve the exact stage of a match: draw the directions, or pick the regularisation.

    ``"sliced"``: ``random_projections(d, n_projections, seed)``; ``"sinkhorn"``: ``reg``,
    default :func:`semot.distances.sinkhorn.default_reg` ``(source, target, seed)``.
    """
    if distance == "centroid":
        return ExactStage("centroid", None, None, n_threads)
    if distance == "sliced":
        return ExactStage(
            "sliced", random_projections(source.dim, n_projections, seed), None, n_threads
        )
    r = reg if reg is not None else default_reg(source, target, seed)
    return ExactStage("sinkhorn", None, float(r), n_threads)


def pair_distances(
    source: PointClouds,
    target: PointClouds,
    pairs: npt.NDArray[np.int64],
    stage: ExactStage,
    *,
    warn: bool = True,
) -> tuple[npt.NDArray[np.float64], int]:
    r"""Exact distances of (source index, target index) pairs: the second stage of a match.

    ``"sliced"``: :math:`SW_2` with ``stage.projections``
    (:func:`semot.sliced_wasserstein_pairs`); ``"sinkhorn"``: the debiased Sinkhorn
    divergence :math:`S_\varepsilon^{1/2}` with squared Euclidean cost and
    :math:`\varepsilon` = ``stage.reg`` (:func:`semot.sinkhorn_pairs`, ``debiased=True``).

    Returns
    -------
    distances : ndarray of float64, shape (len(pairs),)
    n_unconverged : int
        Sinkhorn problems that stopped at ``max_iter`` (0 for sliced). With ``warn`` they are
        also reported by a ConvergenceWarning; the Dask match passes ``warn=False`` on its
        workers and reports the total once.
    """
    if stage.distance == "centroid":
        return centroid_pairs(source, target, pairs), 0
    if stage.distance == "sliced":
        d = sliced_wasserstein_pairs(
            source, target, pairs, projections=stage.projections, n_threads=stage.n_threads
        )
        return d, 0
    assert stage.reg is not None
    with warnings.catch_warnings():
        if not warn:
            warnings.simplefilter("ignore", ConvergenceWarning)
        d, info = sinkhorn_pairs(
            source, target, pairs, reg=stage.reg, debiased=True, n_threads=stage.n_threads,
            return_info=True,
        )  # fmt: skip
    return np.asarray(d, np.float64), int(info.converged.size - np.count_nonzero(info.converged))


def match(
    source: Any,
    target: Any,
    *,
    distance: Distance | None = None,
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
    knn_backend: KnnBackend | None = None,
    device: Any = None,
    score: Score = "distance",
    metric: Distance | None = None,
) -> Any:
    r"""Match each source feature to target features by a distance between distributions.

    Parameters
    ----------
    source, target : FeatureDistributions, PointClouds or list of clouds
        The two sets of features (for example two layers collected in one reference space).
        Features that never fired are left out with a warning.
    distance : {"centroid", "sliced", "sinkhorn"}, default "centroid"
        ``"centroid"``: Euclidean distance between the clouds' activation-weighted means
        (:mod:`semot.distances.centroid`; the default since the method study of the README,
        "Which method"); ``"sliced"``: exact sliced Wasserstein distance :math:`SW_2` with
        ``n_projections`` directions from ``seed``; ``"sinkhorn"``: debiased Sinkhorn
        divergence with squared Euclidean cost and regularisation ``reg`` (default: 5 % of
        the median squared distance between support points), to the power 1/2 (see
        :mod:`semot.distances.sinkhorn`).
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
        non-match); see :func:`semot.matching.frame.auto_threshold`.
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
    knn_backend : {"numpy", "faiss", "torch"}, optional
        Backend of the candidate search: blocked exact search with numpy, faiss-cpu's exact
        flat indexes (float32), or torch on ``device`` (the embedding too). Default: numpy,
        or torch when ``device`` is given. Not used without ``candidates``.
    device : str or torch.device, optional
        Torch device of the candidate search (``"cuda"``, ``"cuda:1"``, ``"cpu"``); giving one
        selects ``knn_backend="torch"``, and is an error with ``"numpy"`` or ``"faiss"``.
        ``knn_backend="torch"`` without a device uses ``"cuda"``.
    score : {"distance", "joint"}
        What ranks the targets of a source. ``"distance"``: the distance. ``"joint"``: the
        sum of the target's rank by the distance and its rank by decoder cosine among the
        source's candidates (every target without ``candidates``), ties to the lower target
        id; needs ``source_decoder`` and ``target_decoder``. It measured best on real SAEs
        (README, "Which method"). The frame's ``distance`` column stays the distance and a
        ``score`` column holds the rank sum; ``threshold`` and ``margin`` are not defined for it.
    metric : {"centroid", "sliced", "sinkhorn"}, optional
        Deprecated alias of ``distance`` (in POT, ``metric`` is the ground cost).

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``target`` (feature ids; ``<NA>`` when a one-to-one source is left
        unmatched), ``rank`` (1 = best), ``distance``, ``matched`` (True on the rank-1 row of
        a source whose best target passes ``threshold`` and ``margin``, and on every assigned
        one-to-one pair that passes ``threshold``). Save with ``.to_parquet`` or ``.to_csv``.
        The three backends give the same frame up to candidates whose search distances tie
        within float rounding.
    """
    opt = check_match_args(
        distance=distance, metric=metric, k=k, assignment=assignment, threshold=threshold,
        margin=margin, candidates=candidates, n_candidates=n_candidates,
        knn_backend=knn_backend, device=device, n_projections=n_projections,
        n_quantiles=n_quantiles, reg=reg, n_threads=n_threads,
    )  # fmt: skip
    check_choice(score, "score", SCORES)
    if score == "joint":
        if source_decoder is None or target_decoder is None:
            raise ValueError("score: 'joint' needs source_decoder and target_decoder")
        if opt.threshold is not None or opt.margin is not None:
            raise ValueError("score: threshold and margin are not defined for score='joint'")
    src, tgt = feature_sets(source, target)
    if opt.candidates is None:
        pairs = all_pairs(len(src.ids), len(tgt.ids))
    else:
        search = CandidateSearch.create(
            opt.candidates, opt.n_candidates, dim=src.clouds.dim,
            n_projections=opt.n_projections, n_quantiles=opt.n_quantiles, seed=seed,
            knn_backend=opt.knn_backend, device=opt.device, n_threads=opt.n_threads,
        )  # fmt: skip
        pairs = search.pairs(src, tgt, source_decoder, target_decoder)
    stage = exact_stage(
        src.clouds, tgt.clouds, opt.distance, n_projections=opt.n_projections, reg=opt.reg,
        seed=seed, n_threads=opt.n_threads,
    )  # fmt: skip
    dist, _ = pair_distances(src.clouds, tgt.clouds, pairs, stage)
    if score == "joint":
        ws = decoder_rows(source_decoder, src.ids, "source_decoder")
        wt = decoder_rows(target_decoder, tgt.ids, "target_decoder")
        return joint_matches(pairs, dist, decoder_pair_distances(ws, wt, pairs), src.ids,
                             tgt.ids, k=opt.k, assignment=opt.assignment)  # fmt: skip
    return matches_from_pairs(
        pairs, dist, src.ids, tgt.ids, k=opt.k, assignment=opt.assignment,
        threshold=opt.threshold, margin=opt.margin,
    )  # fmt: skip


def decoder_pair_distances(
    source_rows: npt.NDArray[np.float64],
    target_rows: npt.NDArray[np.float64],
    pairs: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """``1 - cosine`` of the decoder rows of each (source index, target index) pair."""
    if source_rows.shape[1] != target_rows.shape[1]:
        raise ValueError(
            f"source_decoder, target_decoder: rows of width {source_rows.shape[1]} and "
            f"{target_rows.shape[1]} cannot be compared"
        )
    us, ut = unit_rows(source_rows), unit_rows(target_rows)
    out = np.empty(len(pairs))
    block = 1 << 16
    for start in range(0, len(pairs), block):
        p = pairs[start : start + block]
        out[start : start + len(p)] = 1.0 - np.einsum("ij,ij->i", us[p[:, 0]], ut[p[:, 1]])
    return out


def rank_within_sources(
    pairs: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Rank (0 = smallest) of each pair's value among the pairs of its source; ties by target."""
    order = np.lexsort((pairs[:, 1], values, pairs[:, 0]))
    src = pairs[order, 0]
    start = np.ones(len(order), dtype=bool)
    start[1:] = src[1:] != src[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order)) - first
    return ranks


def joint_matches(
    pairs: npt.NDArray[np.int64],
    dist: npt.NDArray[np.float64],
    decoder_dist: npt.NDArray[np.float64],
    source_ids: npt.NDArray[np.int64],
    target_ids: npt.NDArray[np.int64],
    *,
    k: int,
    assignment: Assignment,
) -> Any:
    """Return the match frame ranked by rank by ``dist`` + rank by ``decoder_dist``.

    Ranks are taken among each source's pairs; the frame keeps the distance in ``distance``.
    """
    joint = (rank_within_sources(pairs, dist) + rank_within_sources(pairs, decoder_dist)).astype(
        np.float64
    )
    frame = matches_from_pairs(
        pairs, joint, source_ids, target_ids, k=k, assignment=assignment, threshold=None,
        margin=None,
    )  # fmt: skip
    import pandas as pd

    # Put the distance back beside the score, pair by pair (a left merge keeps the row order).
    lookup = pd.DataFrame(
        {
            "source": source_ids[pairs[:, 0]],
            "target": pd.array(target_ids[pairs[:, 1]], dtype="Int64"),
            "distance": dist,
        }
    )
    frame = frame.rename(columns={"distance": "score"})
    frame["target"] = frame["target"].astype("Int64")
    frame = frame.merge(lookup, on=["source", "target"], how="left")
    columns = [c for c in frame.columns if c not in ("distance", "score")]
    at = columns.index("rank") + 1
    frame = frame[[*columns[:at], "distance", "score", *columns[at:]]]
    return frame
