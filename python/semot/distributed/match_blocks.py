""":func:`semot.match` on a Dask cluster: the same match, scheduled block by block.

Everything but the scheduling is :mod:`semot.matching`'s: the argument checks
(:func:`~semot.matching.matcher.check_match_args`), the candidate search
(:class:`~semot.matching.search.CandidateSearch`, sent to the workers), the exact stage
(:func:`~semot.matching.matcher.pair_distances`), the top-k
(:func:`~semot.matching.search.smallest_k`, :func:`~semot.matching.search.merge_topk`) and
the frame (:func:`~semot.matching.frame.matches_from_pairs`). Hence the same frame, row for
row.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from semot._utils.checks import check_positive_int
from semot.clouds import PointClouds
from semot.distances.choice import Distance
from semot.distances.sinkhorn import DEFAULT_MAX_ITER, DEFAULT_TOL, warn_unconverged
from semot.distributed.blocks import DEFAULT_BLOCK, Block, clouds_rows, row_blocks, tiles
from semot.distributed.client import (
    ClientLike,
    Progress,
    Shipment,
    aligned,
    connect,
    run_blocks,
    scatter,
)
from semot.distributed.sinks import BlockStore, digest_arrays, digest_clouds
from semot.matching.frame import Assignment, Threshold, all_pairs, matches_from_pairs
from semot.matching.matcher import (
    ExactStage,
    check_match_args,
    exact_stage,
    pair_distances,
)
from semot.matching.search import (
    KNN_BLOCK_ROWS,
    Candidates,
    CandidateSearch,
    KnnBackend,
    TopK,
    merge_topk,
    neighbour_pairs,
    smallest_k,
)
from semot.matching.sets import feature_sets

if TYPE_CHECKING:
    from distributed import Future

__all__ = ["match"]


_Stage = TypeVar("_Stage", ExactStage, CandidateSearch)


def _on_arrival(stage: _Stage) -> _Stage:
    """Return ``stage`` with its directions aligned.

    Dask may hand arrays inside pickled objects over at any byte offset, and the Rust kernels
    read aligned arrays only.
    """
    if stage.projections is None:
        return stage
    return dataclasses.replace(stage, projections=aligned(stage.projections))


def _target_features(search: CandidateSearch, target: Any) -> npt.NDArray[Any]:
    """Compute the target features (on one worker): ``CandidateSearch.features``."""
    return _on_arrival(search).features(target)


def _match_rows(
    search: CandidateSearch,
    stage: ExactStage,
    src: PointClouds,
    tgt: PointClouds,
    src_in: Any,
    tgt_feat: npt.NDArray[Any],
    blk: Block,
) -> dict[str, npt.NDArray[Any]]:
    """Candidates of source rows ``r0:r1`` and their exact distances (on a worker)."""
    search = _on_arrival(search)
    rows = (
        clouds_rows(src_in, blk.r0, blk.r1)
        if isinstance(src_in, PointClouds)
        else np.asarray(src_in)[blk.r0 : blk.r1]
    )
    idx = search.neighbours(search.features(rows), tgt_feat)
    dist, bad = pair_distances(
        src, tgt, neighbour_pairs(idx, blk.r0), _on_arrival(stage), warn=False
    )
    return {"indices": idx, "distances": dist, "unconverged": np.array(bad)}


def _match_tile(
    stage: ExactStage,
    src: PointClouds,
    tgt: PointClouds,
    blk: Block,
    keep: int | None,
) -> dict[str, npt.NDArray[Any]]:
    """All pairs of one tile (on a worker): every distance, or the ``keep`` best per row."""
    pairs = all_pairs(blk.r1 - blk.r0, blk.c1 - blk.c0) + np.array([blk.r0, blk.c0])
    dist, bad = pair_distances(src, tgt, pairs, _on_arrival(stage), warn=False)
    d = dist.reshape(blk.r1 - blk.r0, blk.c1 - blk.c0)
    if keep is None:
        return {"values": d, "unconverged": np.array(bad)}
    idx, best = smallest_k(d, keep, blk.c0)
    return {"indices": idx, "distances": best, "unconverged": np.array(bad)}


def match(
    source: Any,
    target: Any,
    *,
    client: ClientLike = None,
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
    block_size: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: Progress = True,
    timeout: float = 60.0,
    metric: Distance | None = None,
) -> Any:
    """Match source features to target features on a Dask cluster, like :func:`semot.match`.

    Returns the frame :func:`semot.match` returns for the same arguments, row for row. The
    candidate search runs on the workers, a block of 1024 source rows per task (quantile
    embeddings or centroids of the block against those of all targets, computed once on one
    worker), followed in the same task by the exact distances of the block's candidates.
    Without candidates, square tiles of all pairs are computed and reduced on the workers to
    the best ``max(k, 2)`` targets per source (``"nearest"``); ``"one-to-one"`` without
    candidates gathers the whole matrix on the client, as :func:`semot.match` holds it.
    Arguments are checked as :func:`semot.match` checks them (same exceptions, same
    messages), before any connection is made.

    Parameters
    ----------
    source, target, distance, k, assignment, threshold, margin, candidates, n_candidates
        As in :func:`semot.match`.
    source_decoder, target_decoder, n_projections, n_quantiles, reg, seed, metric
        As in :func:`semot.match`.
    client : distributed.Client, str or None
        A client, a scheduler address, or ``None`` for the default client.
    n_threads : int, optional
        Rust threads per task (default one; see
        :func:`semot.distributed.sliced_wasserstein_cdist`).
    knn_backend, device
        As in :func:`semot.match`; the search runs on the workers (``device="cuda"`` on GPU
        workers).
    block_size : int, optional
        Tile side without candidates (default 512).
    checkpoint : str or path, optional
        Directory where finished blocks are saved; the same call resumes from them.
    progress, timeout
        As in :func:`semot.distributed.sliced_wasserstein_cdist`.

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``target``, ``rank``, ``distance``, ``matched``.
    """
    opt = check_match_args(
        distance=distance, metric=metric, k=k, assignment=assignment, threshold=threshold,
        margin=margin, candidates=candidates, n_candidates=n_candidates,
        knn_backend=knn_backend, device=device, n_projections=n_projections,
        n_quantiles=n_quantiles, reg=reg, n_threads=n_threads,
    )  # fmt: skip
    threads = opt.n_threads or 1
    src, tgt = feature_sets(source, target)
    ns, nt = len(src.ids), len(tgt.ids)
    stage = exact_stage(
        src.clouds, tgt.clouds, opt.distance, n_projections=opt.n_projections, reg=opt.reg,
        seed=seed, n_threads=threads,
    )  # fmt: skip
    # Key names and values are those of the record format (1): old checkpoints still resume.
    fingerprint: dict[str, Any] = {
        "function": "match",
        "metric": opt.distance,
        "reg": stage.reg or 0.0,
        "n_projections": opt.n_projections,
        "seed": seed,
        "candidates": opt.candidates,
        "n_candidates": opt.n_candidates,
        "n_quantiles": opt.n_quantiles,
        "k": opt.k,
        "assignment": opt.assignment,
        "device": None if opt.device is None else str(opt.device),
        "source": digest_clouds(src.clouds),
        "target": digest_clouds(tgt.clouds),
    }
    if opt.knn_backend == "faiss":
        fingerprint["knn_backend"] = "faiss"
    search: CandidateSearch | None = None
    src_in: Any = src.clouds
    tgt_in: Any = tgt.clouds
    keep: int | None = None
    if opt.candidates is not None:
        search = CandidateSearch.create(
            opt.candidates, opt.n_candidates, dim=src.clouds.dim,
            n_projections=opt.n_projections, n_quantiles=opt.n_quantiles, seed=seed,
            knn_backend=opt.knn_backend, device=opt.device, n_threads=threads,
        )  # fmt: skip
        src_in, tgt_in = search.inputs(src, tgt, source_decoder, target_decoder)
        if opt.candidates == "decoder-cosine":
            fingerprint["decoders"] = digest_arrays(src_in, tgt_in)
        # Tasks start at multiples of the search's row blocks: the same matrix products.
        blocks = row_blocks(ns, nt, KNN_BLOCK_ROWS)
    else:
        tile = check_positive_int(block_size, "block_size") if block_size else DEFAULT_BLOCK
        blocks = tiles(ns, nt, tile, tile)
        keep = min(max(opt.k, 2), nt) if opt.assignment == "nearest" else None
    fingerprint["blocks"] = len(blocks)

    parts: dict[int, dict[str, npt.NDArray[Any]]] = {}
    store = BlockStore(Path(checkpoint), fingerprint, len(blocks)) if checkpoint else None
    if store is not None:
        for i in store.record.done:
            parts[i] = store.load(i)
    todo = [b for b in blocks if b.index not in parts]
    if todo:
        with connect(client, timeout) as c:

            def ship() -> list[Future[Any]]:
                # The clouds on every worker; for a candidate search also the inputs of its
                # features and the target's features (computed once, on one worker; Dask
                # sends them to each worker that needs them).
                f_src, f_tgt = scatter(c, src.clouds, tgt.clouds)
                if search is None:
                    return [f_src, f_tgt]
                fsrc_in = f_src if src_in is src.clouds else scatter(c, src_in)[0]
                ftgt_in = f_tgt if tgt_in is tgt.clouds else scatter(c, tgt_in)[0]
                ftgt_feat = c.submit(_target_features, search, ftgt_in, pure=False)
                return [f_src, f_tgt, fsrc_in, ftgt_in, ftgt_feat]

            shipped = Shipment(ship)

            def submit(blk: Block) -> Future[Any]:
                if search is not None:
                    f_src, f_tgt, fsrc_in, _, ftgt_feat = shipped.futures
                    return c.submit(
                        _match_rows, search, stage, f_src, f_tgt, fsrc_in, ftgt_feat, blk,
                        pure=False, priority=-blk.index,
                    )  # fmt: skip
                f_src, f_tgt = shipped.futures
                return c.submit(
                    _match_tile, stage, f_src, f_tgt, blk, keep, pure=False,
                    priority=-blk.index,
                )  # fmt: skip

            def on_result(blk: Block, res: dict[str, npt.NDArray[Any]]) -> None:
                parts[blk.index] = res
                if store is not None:
                    store.save(blk.index, res, int(res["unconverged"]))

            def on_stop() -> None:
                if store is not None:
                    store.record.save(force=True)

            try:
                run_blocks(
                    c, todo, submit, on_result, progress=progress, desc="match",
                    timeout=timeout, n_done=len(blocks) - len(todo), on_stop=on_stop,
                    reship=shipped.reship,
                )  # fmt: skip
            finally:
                shipped.release()
            if store is not None:
                store.record.save(force=True)

    bad = sum(int(p["unconverged"]) for p in parts.values())
    pairs, dist = _assemble(blocks, parts, search is not None, keep, ns, nt)
    if opt.distance == "sinkhorn":
        warn_unconverged(bad, len(dist), DEFAULT_MAX_ITER, DEFAULT_TOL, stacklevel=2)
    return matches_from_pairs(
        pairs, dist, src.ids, tgt.ids, k=opt.k, assignment=opt.assignment,
        threshold=opt.threshold, margin=opt.margin,
    )  # fmt: skip


def _assemble(
    blocks: Sequence[Block],
    parts: dict[int, dict[str, npt.NDArray[Any]]],
    candidates: bool,
    keep: int | None,
    ns: int,
    nt: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(pairs, distances) for :func:`semot.matching.frame.matches_from_pairs`, sources in order."""
    if candidates:
        pairs = np.concatenate(
            [neighbour_pairs(parts[blk.index]["indices"], blk.r0) for blk in blocks]
        )
        dists = np.concatenate([parts[blk.index]["distances"] for blk in blocks])
        return pairs, dists.astype(np.float64)
    if keep is None:
        full = np.empty((ns, nt))
        for blk in blocks:
            full[blk.r0 : blk.r1, blk.c0 : blk.c1] = parts[blk.index]["values"]
        return all_pairs(ns, nt), full.ravel()
    best = TopK(np.full((ns, keep), np.iinfo(np.int64).max), np.full((ns, keep), np.inf))
    for blk in blocks:
        part = parts[blk.index]
        rows = TopK(best.indices[blk.r0 : blk.r1], best.distances[blk.r0 : blk.r1])
        merged = merge_topk(rows, TopK(part["indices"], part["distances"]), keep)
        best.indices[blk.r0 : blk.r1], best.distances[blk.r0 : blk.r1] = merged
    return neighbour_pairs(best.indices), best.distances.ravel()
