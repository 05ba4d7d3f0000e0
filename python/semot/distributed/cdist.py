r"""All-pairs distances on a Dask cluster (``pip install "semot[distributed]"``).

The work is cut into blocks of pairs (:mod:`semot.distributed.blocks`); each Dask worker
computes blocks with the Rust kernels (:mod:`semot.distributed.kernels`; GIL released,
``n_threads`` Rust threads per block) and the client collects what it needs:

* the whole matrix in memory (``out=None``), or
* the matrix written block by block by the workers to an on-disk array (``out="D.npy"``, a
  memory-mapped ``.npy``; or ``out="D.zarr"`` when ``zarr`` is installed), resumable, or
* the ``top_k`` nearest columns of every row, reduced on the workers (``top_k=k``), so the
  client never holds an ``N_A x N_B`` matrix.

The clouds (and the projections) are sent to every worker once (``scatter(broadcast=True)``),
not with every task. A worker that dies mid-run has its blocks recomputed elsewhere (Dask's
own bookkeeping); since every block is computed by the same deterministic kernel, the result
is the single-process one, bit for bit: for exact sliced distances and Sinkhorn, and for the
matrix-product paths (quantile, and the pairs of uniform, equal-size clouds of exact calls),
whose blocks are row stripes starting where the single-process kernel starts its own row blocks.

Connection problems are bounded by ``timeout``: an unreachable scheduler, a scheduler that goes
away mid-run, or a cluster left without workers raise :class:`SchedulerUnavailableError`
instead of hanging. Ctrl-C cancels the submitted blocks; with ``out=`` the finished blocks
are recorded and the same call resumes from them.

Output files must be on a filesystem that the client and every worker see under the same
path (NFS, Lustre, GPFS, or a local disk for a ``LocalCluster``): the client creates the file,
the workers write their blocks into it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from semot._utils.checks import check_n_threads, check_p, check_positive_int
from semot.clouds import PointClouds, two_sets
from semot.distances.projections import resolve_n_quantiles, resolve_projections
from semot.distances.sinkhorn import (
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    check_sinkhorn_params,
    warn_unconverged,
)
from semot.distances.sliced import check_method
from semot.distributed.blocks import (
    DEFAULT_BLOCK,
    DEFAULT_STRIPE,
    Block,
    block_shape,
    gemm_stripes,
    takes_gemm_path,
    tiles,
)
from semot.distributed.client import (
    ClientLike,
    Progress,
    Shipment,
    connect,
    run_blocks,
    scatter,
)
from semot.distributed.kernels import (
    BlockResult,
    Kernel,
    SinkhornKernel,
    SlicedKernel,
    cdist_block,
)
from semot.distributed.sinks import BlockStore, Record, Sink, digest_clouds, open_out, prepare_out
from semot.errors import SchedulerUnavailableError
from semot.matching.search import TopK, merge_topk, smallest_k

if TYPE_CHECKING:
    from distributed import Future

__all__ = ["SchedulerUnavailableError", "TopK", "sinkhorn_cdist", "sliced_wasserstein_cdist"]


def _run_cdist(
    kernel: Kernel,
    ca: PointClouds,
    cb: PointClouds,
    blocks: list[Block],
    *,
    client: ClientLike,
    out: str | os.PathLike[str] | None,
    top_k: int | None,
    overwrite: bool,
    checkpoint: str | os.PathLike[str] | None,
    progress: Progress,
    timeout: float,
    desc: str,
) -> tuple[Any, int]:
    na, nb = len(ca), len(cb)
    if top_k is not None:
        top_k = min(check_positive_int(top_k, "top_k"), nb)
    if checkpoint is not None and (out is not None or top_k is None):
        raise ValueError("checkpoint: only for top_k without out (out= is resumable itself)")
    digest_a = digest_clouds(ca)
    first = blocks[0]
    fingerprint = {
        **kernel.describe(),
        "A": digest_a,
        "B": digest_a if cb is ca else digest_clouds(cb),
        "blocks": [first.r1 - first.r0, first.c1 - first.c0, len(blocks)],
    }
    best: TopK | None = None
    if top_k is not None:
        best = TopK(np.full((na, top_k), np.iinfo(np.int64).max), np.full((na, top_k), np.inf))
    dense = np.empty((na, nb)) if out is None and top_k is None else None
    unconverged = 0

    def take_topk(blk: Block, tk: TopK) -> None:
        assert best is not None and top_k is not None
        rows = TopK(best.indices[blk.r0 : blk.r1], best.distances[blk.r0 : blk.r1])
        i, d = merge_topk(rows, tk, top_k)
        best.indices[blk.r0 : blk.r1], best.distances[blk.r0 : blk.r1] = i, d

    with connect(client, timeout) as c:
        sink: Sink | None = None
        record: Record | None = None
        store: BlockStore | None = None
        if out is not None:
            sink, record = prepare_out(c, out, (na, nb), blocks, fingerprint, overwrite)
        elif checkpoint is not None:
            store = BlockStore(Path(checkpoint), {**fingerprint, "top_k": top_k}, len(blocks))
            record = store.record
        done = record.done if record is not None else set()
        for blk in blocks:
            if blk.index not in done:
                continue
            if record is not None:
                unconverged += record.unconverged.get(blk.index, 0)
            if store is not None:
                z = store.load(blk.index)
                take_topk(blk, TopK(z["indices"], z["distances"]))
            elif top_k is not None and sink is not None:
                take_topk(blk, smallest_k(sink.read(blk), top_k, blk.c0))
        todo = [b for b in blocks if b.index not in done]
        if todo:
            shipped = Shipment(lambda: scatter(c, kernel, ca, cb))

            def submit(blk: Block) -> Future[Any]:
                fk, fa, fb = shipped.futures
                return c.submit(
                    cdist_block, fk, fa, fb, blk, sink, top_k,
                    key=f"semot-{desc}-{blk.index}-{os.urandom(4).hex()}",
                    priority=-blk.index, pure=False,
                )  # fmt: skip

            def on_result(blk: Block, res: BlockResult) -> None:
                nonlocal unconverged
                unconverged += res.unconverged
                if res.topk is not None:
                    take_topk(blk, res.topk)
                if dense is not None and res.values is not None:
                    dense[blk.r0 : blk.r1, blk.c0 : blk.c1] = res.values
                if store is not None and res.topk is not None:
                    store.save(blk.index, res.topk._asdict(), res.unconverged)
                elif record is not None:
                    record.mark(blk.index, res.unconverged, res.checksum)
                    record.save()

            def on_stop() -> None:
                if record is not None:
                    record.save(force=True)

            try:
                run_blocks(
                    c, todo, submit, on_result, progress=progress, desc=desc, timeout=timeout,
                    n_done=len(blocks) - len(todo), on_stop=on_stop, reship=shipped.reship,
                )  # fmt: skip
            finally:
                shipped.release()
            if record is not None:
                record.save(force=True)
        if best is not None:
            return best, unconverged
        if sink is not None:
            return open_out(sink), unconverged
        assert dense is not None
        return dense, unconverged


def sliced_wasserstein_cdist(
    A: Any,
    B: Any,
    *,
    client: ClientLike = None,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = 0,
    projections: Any = None,
    method: Literal["exact", "quantile"] = "exact",
    n_quantiles: int | None = None,
    n_threads: int | None = None,
    out: str | os.PathLike[str] | None = None,
    top_k: int | None = None,
    block_size: int | tuple[int, int] | None = None,
    overwrite: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: Progress = True,
    timeout: float = 60.0,
) -> Any:
    """Sliced Wasserstein distances between all clouds of ``A`` and ``B``, on a Dask cluster.

    The same quantity as :func:`semot.sliced_wasserstein_cdist` with the same arguments:
    the directions are drawn once, on the client, and every block uses them. Exact distances
    are bit-identical to a single-process call; so are quantile distances (row blocks start
    at multiples of 128, where the single-process kernel starts its own).

    Parameters
    ----------
    A, B : PointClouds, FeatureDistributions, list of arrays or array (N, n, d)
        The two sets of clouds.
    client : distributed.Client, str or None
        A connected client, a scheduler address (``"tcp://host:8786"``; connected for this
        call and closed after it), or ``None`` for the current default client.
    n_projections, p, seed, projections, method, n_quantiles
        As in :func:`semot.sliced_wasserstein_cdist`.
    n_threads : int, optional
        Rust threads per block. ``None``: one; a worker then runs as many blocks at once as
        it has Dask threads (``dask worker --nthreads``), the kernels releasing the GIL.
    out : str or path, optional
        Write the matrix to this ``.npy`` (memory-mapped, float64) or ``.zarr`` file, block by
        block from the workers, and return it opened read-only. It must be on a filesystem
        that every worker sees under the same path. An existing output written by the same
        computation is resumed (finished blocks are skipped); see ``overwrite``.
    top_k : int, optional
        Return only the ``top_k`` nearest columns of every row (:class:`TopK`), reduced on the
        workers. With ``out``, the file is written too.
    block_size : int or (int, int), optional
        Rows and columns per block (default 512). Matrix-product paths (``method="quantile"``,
        or exact with ``p = 2`` when some pairs of uniform, equal-size clouds take it) use row
        stripes over all columns instead, ``block_size`` rows high (default 1024) rounded up
        to a multiple of the kernel's row blocks (``semot._core.GEMM_ROWS``, 256).
    overwrite : bool
        Replace an existing ``out`` instead of resuming it.
    checkpoint : str or path, optional
        With ``top_k`` and no ``out``: a directory where finished blocks are saved, so that
        the same call resumes after an interruption.
    progress : bool or callable
        ``True``: a progress line on stderr; a callable is called with ``(done, total)``
        blocks after each block.
    timeout : float
        Seconds to wait for the scheduler (connection, answers) and for workers to be
        present before raising :class:`SchedulerUnavailableError`.

    Returns
    -------
    ndarray (N_A, N_B) float64, a read-only memory map or zarr array (with ``out``), or
    TopK (with ``top_k``)
    """
    ca, cb = two_sets(A, B)
    if A is B:
        cb = ca
    p = check_p(p)
    m = check_method(method)
    threads = check_n_threads(n_threads) or 1
    proj = resolve_projections(ca.dim, ca.dtype, n_projections, seed, projections)
    q = resolve_n_quantiles(n_quantiles, ca, cb) if m == "quantile" else 0
    na, nb = len(ca), len(cb)
    gram_exact = m == "exact" and takes_gemm_path(ca, cb, p)
    kernel = SlicedKernel(proj, p, m, q, threads, merge_only=not gram_exact)
    if m == "quantile" or gram_exact:
        rows, _ = block_shape(block_size, DEFAULT_STRIPE)
        blocks = gemm_stripes(na, nb, rows, exact=gram_exact)
    else:
        rows, cols = block_shape(block_size, DEFAULT_BLOCK)
        blocks = tiles(na, nb, rows, cols)
    result, _ = _run_cdist(
        kernel, ca, cb, blocks, client=client, out=out, top_k=top_k, overwrite=overwrite,
        checkpoint=checkpoint, progress=progress, timeout=timeout, desc="sliced",
    )  # fmt: skip
    return result


def sinkhorn_cdist(
    A: Any,
    B: Any,
    *,
    reg: float,
    client: ClientLike = None,
    p: float = 2,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    debiased: bool = False,
    n_threads: int | None = None,
    out: str | os.PathLike[str] | None = None,
    top_k: int | None = None,
    block_size: int | tuple[int, int] | None = None,
    overwrite: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: Progress = True,
    timeout: float = 60.0,
) -> Any:
    r"""Sinkhorn values between all clouds of ``A`` and ``B``, on a Dask cluster.

    The same quantity as :func:`semot.sinkhorn_cdist`, bit-identical to a single-process
    call. Problems that stop at ``max_iter`` are counted over the whole matrix and reported
    in one :class:`~semot.distances.sinkhorn.ConvergenceWarning`. Like the single-process
    function, it returns :math:`\langle P^\varepsilon, C \rangle^{1/p}` (POT's
    ``ot.sinkhorn2`` returns :math:`\langle P^\varepsilon, C \rangle`).

    Parameters
    ----------
    A, B : PointClouds, FeatureDistributions, list of arrays or array (N, n, d)
        The two sets of clouds.
    reg, p, max_iter, tol, debiased
        As in :func:`semot.sinkhorn_cdist`.
    client, n_threads, out, top_k, block_size, overwrite, checkpoint, progress, timeout
        As in :func:`sliced_wasserstein_cdist` (blocks are always square tiles here).

    Returns
    -------
    ndarray (N_A, N_B) float64, a read-only memory map or zarr array (with ``out``), or
    TopK (with ``top_k``)

    Warns
    -----
    ConvergenceWarning
        Once, counting the problems that stopped at ``max_iter``.
    """
    prm = check_sinkhorn_params(reg, p, max_iter, tol, debiased)
    threads = check_n_threads(n_threads) or 1
    ca, cb = two_sets(A, B)
    if A is B:
        cb = ca
    kernel = SinkhornKernel(prm.reg, prm.p, prm.max_iter, prm.tol, prm.debiased, threads)
    rows, cols = block_shape(block_size, DEFAULT_BLOCK)
    blocks = tiles(len(ca), len(cb), rows, cols)
    result, bad = _run_cdist(
        kernel, ca, cb, blocks, client=client, out=out, top_k=top_k, overwrite=overwrite,
        checkpoint=checkpoint, progress=progress, timeout=timeout, desc="sinkhorn",
    )  # fmt: skip
    warn_unconverged(bad, len(ca) * len(cb), prm.max_iter, prm.tol, stacklevel=2)
    return result
