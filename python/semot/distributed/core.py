r"""All-pairs distances and matching on a Dask cluster (``pip install "semot[distributed]"``).

The work is cut into blocks of pairs; each Dask worker computes blocks with the Rust kernels
(GIL released, ``n_threads`` Rust threads per block) and the client collects what it needs:

* the whole matrix in memory (``out=None``), or
* the matrix written block by block by the workers to an on-disk array (``out="D.npy"``, a
  memory-mapped ``.npy``; or ``out="D.zarr"`` when ``zarr`` is installed), resumable, or
* the ``top_k`` nearest columns of every row, reduced on the workers (``top_k=k``), so the
  client never holds an ``N_A x N_B`` matrix.

The clouds (and the projections) are sent to every worker once (``scatter(broadcast=True)``),
not with every task. A worker that dies mid-run has its blocks recomputed elsewhere (Dask's
own bookkeeping); since every block is computed by the same deterministic kernel, the result
is the single-process one, bit for bit: for exact sliced distances and Sinkhorn, and for the
matrix-product paths (quantile, and exact with uniform weights), whose blocks are row stripes
starting where the single-process kernel starts its own row blocks.

Connection problems are bounded by ``timeout``: an unreachable scheduler, a scheduler that goes
away mid-run, or a cluster left without workers raise :class:`SchedulerUnavailableError`
instead of hanging. Ctrl-C cancels the submitted blocks; with ``out=`` the finished blocks
are recorded and the same call resumes from them.

Output files must be on a filesystem that the client and every worker see under the same
path (NFS, Lustre, GPFS, or a local disk for a ``LocalCluster``): the client creates the file,
the workers write their blocks into it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

try:
    from distributed import Client, Future, as_completed
except ImportError as _e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "semot.distributed.core needs Dask distributed: pip install 'semot[distributed]'"
    ) from _e

from semot._utils.checks import FloatArray, check_n_threads, check_p, check_positive_int
from semot.clouds import PointClouds, two_sets
from semot.distances import sinkhorn as _sinkhorn
from semot.distances import sliced as _sliced
from semot.distances.sinkhorn import (
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    ConvergenceWarning,
    _check_params,
    sinkhorn_pairs,
)
from semot.distances.sliced import (
    _method,
    _n_quantiles,
    _projections,
    random_projections,
    sliced_quantile_embedding,
    sliced_wasserstein_pairs,
)
from semot.errors import SchedulerUnavailableError

__all__ = [
    "SchedulerUnavailableError",
    "TopK",
    "match",
    "sinkhorn_cdist",
    "sliced_wasserstein_cdist",
]

ClientLike: TypeAlias = "Client | str | None"
Progress: TypeAlias = bool | Callable[[int, int], None]

#: Default side of a square block of pairs (merge and Sinkhorn paths).
DEFAULT_BLOCK = 512
#: Default height of a row stripe (matrix-product paths: every block spans all columns).
DEFAULT_STRIPE = 1024
# Rows per matrix-product chunk in the Rust quantile kernel: stripes start at multiples of it
# so that every chunk, hence every rounding, is the one of a single-process call.
_GEMM_ROWS = 128
# The Rust sliced cdist takes the matrix-product path from this many pairs on (p = 2, uniform
# weights, equal sizes); blocks must take the same path as the whole call would.
_GEMM_MIN_PAIRS = 4096
# matching.knn_euclidean and _cosine_knn work in row blocks of this size from their first
# row; candidate blocks start at multiples of it so the BLAS calls are the same.
_KNN_ROWS = 1024
_RECORD_VERSION = 1


class TopK(NamedTuple):
    """The ``k`` nearest columns of every row, nearest first (ties: lower column first).

    Attributes
    ----------
    indices : ndarray of int64, shape (N_A, k)
        Column indices into ``B``.
    distances : ndarray of float64, shape (N_A, k)
        The distances, ascending along each row.
    """

    indices: npt.NDArray[np.int64]
    distances: npt.NDArray[np.float64]


# ----------------------------------------------------------------------------------------------
# Blocks and kernels (run on the workers)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    index: int
    r0: int
    r1: int
    c0: int
    c1: int


@dataclass(frozen=True)
class _BlockResult:
    index: int
    values: npt.NDArray[np.float64] | None
    topk: TopK | None
    unconverged: int


class _Kernel(Protocol):
    def block(
        self, a: PointClouds, b: PointClouds
    ) -> tuple[npt.NDArray[np.float64], int]: ...  # pragma: no cover

    def describe(self) -> dict[str, Any]: ...  # pragma: no cover


@dataclass(frozen=True)
class _SlicedKernel:
    projections: FloatArray
    p: float
    method: str
    n_quantiles: int
    n_threads: int | None
    # True when the whole call would take the merge path: a block of uniform, equal-size
    # clouds must then not switch to the matrix-product path (different rounding).
    merge_only: bool

    def block(self, a: PointClouds, b: PointClouds) -> tuple[npt.NDArray[np.float64], int]:
        if (
            self.method == "exact"
            and self.merge_only
            and self.p == 2
            and len(a) * len(b) >= _GEMM_MIN_PAIRS
            and _uniform_equal(a, b)
        ):
            ii, jj = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
            pairs = np.stack([ii.ravel(), jj.ravel()], 1)
            d = sliced_wasserstein_pairs(
                a, b, pairs, projections=_aligned(self.projections), p=self.p,
                n_threads=self.n_threads,
            )  # fmt: skip
            return d.reshape(len(a), len(b)), 0
        # The single-process function (this module's one has the same name).
        out = _sliced.sliced_wasserstein_cdist(
            a,
            b,
            projections=_aligned(self.projections),
            p=self.p,
            method=self.method,  # type: ignore[arg-type]
            n_quantiles=self.n_quantiles,
            n_threads=self.n_threads,
        )
        return out, 0

    def describe(self) -> dict[str, Any]:
        return {
            "metric": "sliced",
            "p": self.p,
            "method": self.method,
            "n_quantiles": self.n_quantiles,
            "projections": _digest_arrays(self.projections),
        }


@dataclass(frozen=True)
class _SinkhornKernel:
    reg: float
    p: float
    max_iter: int
    tol: float
    debiased: bool
    n_threads: int | None

    def block(self, a: PointClouds, b: PointClouds) -> tuple[npt.NDArray[np.float64], int]:
        with warnings.catch_warnings():
            # Counted here and reported once by the client for the whole matrix.
            warnings.simplefilter("ignore", ConvergenceWarning)
            values, info = _sinkhorn.sinkhorn_cdist(
                a,
                b,
                reg=self.reg,
                p=self.p,
                max_iter=self.max_iter,
                tol=self.tol,
                debiased=self.debiased,
                n_threads=self.n_threads,
                return_info=True,
            )
        return values, int(info.converged.size - np.count_nonzero(info.converged))

    def describe(self) -> dict[str, Any]:
        return {
            "metric": "sinkhorn",
            "reg": self.reg,
            "p": self.p,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "debiased": self.debiased,
        }


def _aligned(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``x``, copied only if it is not aligned and C-contiguous (what the Rust kernels read).

    Dask ships arrays inside pickled objects as raw frames that may start at any byte, and
    the kernels refuse misaligned data.
    """
    return np.require(x, requirements=["C", "A"])


def _rebuild_clouds(
    points: FloatArray, weights: FloatArray, offsets: npt.NDArray[np.int64]
) -> PointClouds:
    return _ShippedClouds.from_csr_unchecked(_aligned(points), _aligned(weights), _aligned(offsets))


class _ShippedClouds(PointClouds):
    """Clouds that arrive aligned wherever Dask sends them.

    Dask ships arrays inside pickled objects as raw frames that may start at any byte; this
    class aligns its arrays once on arrival (from the client or from another worker), not in
    every task.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_clouds, (self.points, self.weights, self.offsets))


def _rows(c: PointClouds, lo: int, hi: int) -> PointClouds:
    """Clouds ``lo:hi`` as views (no copy)."""
    s, e = int(c.offsets[lo]), int(c.offsets[hi])
    return PointClouds.from_csr_unchecked(c.points[s:e], c.weights[s:e], c.offsets[lo : hi + 1] - s)


def _uniform_equal(*sets: PointClouds) -> bool:
    """Whether every cloud has the same size and uniform weights (the Rust kernels' test)."""
    n = int(sets[0].sizes[0])
    for s in sets:
        if (s.sizes != n).any():
            return False
        w = s.weights.reshape(-1, n)
        if not (w == w[:, :1]).all():
            return False
    return True


def smallest_k(
    values: npt.NDArray[np.float64], k: int, col0: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Return the ``k`` smallest entries of each row, by (value, column).

    Parameters
    ----------
    values : ndarray, shape (r, m)
        One block of distances.
    k : int
        How many to keep (at most ``m``).
    col0 : int
        Column index of ``values[:, 0]`` in the whole matrix.

    Returns
    -------
    indices : ndarray of int64, shape (r, min(k, m))
        Column indices (offset by ``col0``), nearest first; ties go to the lower column.
    distances : ndarray of float64, same shape
    """
    r, m = values.shape
    k = min(k, m)
    if k == m:
        order = np.argsort(values, axis=1, kind="stable")
    else:
        part = np.argpartition(values, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(values, part, 1).max(1, keepdims=True)
        below = values < kth
        tied = values == kth
        # Of the columns tied with the k-th value, keep the lowest ones: as many as needed.
        need = k - below.sum(1, keepdims=True)
        keep = below | (tied & (np.cumsum(tied, axis=1) <= need))
        cols = np.nonzero(keep)[1].reshape(r, k)  # ascending within each row
        sub = np.take_along_axis(values, cols, 1)
        order = np.take_along_axis(cols, np.argsort(sub, axis=1, kind="stable"), 1)
    return (order + col0).astype(np.int64), np.take_along_axis(values, order, 1)


def _merge_topk(
    idx_a: npt.NDArray[np.int64],
    dist_a: npt.NDArray[np.float64],
    idx_b: npt.NDArray[np.int64],
    dist_b: npt.NDArray[np.float64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    idx = np.concatenate([idx_a, idx_b], axis=1)
    dist = np.concatenate([dist_a, dist_b], axis=1)
    # Unfilled slots hold (inf, int64 max): they sort last.
    order = np.lexsort((idx, dist), axis=1)[:, :k]
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


@dataclass(frozen=True)
class _NpySink:
    path: str
    offset: int
    n_cols: int

    def write(self, blk: _Block, values: npt.NDArray[np.float64]) -> None:
        data = np.ascontiguousarray(values, dtype="<f8")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            # Byte-exact writes (not a shared mmap): blocks of different workers never touch
            # each other's bytes, also on network filesystems.
            if blk.c0 == 0 and blk.c1 == self.n_cols:
                _pwrite_all(fd, data.tobytes(), self.offset + blk.r0 * self.n_cols * 8)
            else:
                for i in range(data.shape[0]):
                    pos = self.offset + ((blk.r0 + i) * self.n_cols + blk.c0) * 8
                    _pwrite_all(fd, data[i].tobytes(), pos)
            # The client records the block as done once this returns: make that true on disk.
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, blk: _Block) -> npt.NDArray[np.float64]:
        mm = np.load(self.path, mmap_mode="r")
        return np.array(mm[blk.r0 : blk.r1, blk.c0 : blk.c1])


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


@dataclass(frozen=True)
class _ZarrSink:
    path: str

    def write(self, blk: _Block, values: npt.NDArray[np.float64]) -> None:
        import zarr

        zarr.open_array(self.path, mode="r+")[blk.r0 : blk.r1, blk.c0 : blk.c1] = values

    def read(self, blk: _Block) -> npt.NDArray[np.float64]:
        import zarr

        arr = zarr.open_array(self.path, mode="r")
        return np.asarray(arr[blk.r0 : blk.r1, blk.c0 : blk.c1], dtype=np.float64)


_Sink = _NpySink | _ZarrSink


def _cdist_block(
    kernel: _Kernel,
    a: PointClouds,
    b: PointClouds,
    blk: _Block,
    sink: _Sink | None,
    top_k: int | None,
) -> _BlockResult:
    """Compute one block on a worker; write it, reduce it, or return it."""
    values, bad = kernel.block(_rows(a, blk.r0, blk.r1), _rows(b, blk.c0, blk.c1))
    if sink is not None:
        sink.write(blk, values)
    topk = TopK(*smallest_k(values, top_k, blk.c0)) if top_k is not None else None
    keep = values if sink is None and top_k is None else None
    return _BlockResult(blk.index, keep, topk, bad)


# ----------------------------------------------------------------------------------------------
# Block layouts
# ----------------------------------------------------------------------------------------------


def _tiles(na: int, nb: int, rows: int, cols: int) -> list[_Block]:
    out: list[_Block] = []
    for r0 in range(0, na, rows):
        for c0 in range(0, nb, cols):
            out.append(_Block(len(out), r0, min(r0 + rows, na), c0, min(c0 + cols, nb)))
    return out


def _stripes(na: int, nb: int, height: int, min_pairs: int) -> list[_Block]:
    """Row stripes spanning all columns, starting at multiples of ``_GEMM_ROWS``.

    A stripe has at least ``min_pairs`` pairs (the last one is merged into the one before if
    it would have fewer), so it takes the same kernel path as the whole call.
    """
    h = _GEMM_ROWS * max(1, math.ceil(height / _GEMM_ROWS))
    if min_pairs > 0:
        h = max(h, _GEMM_ROWS * math.ceil(min_pairs / (nb * _GEMM_ROWS)))
    starts = list(range(0, na, h))
    if len(starts) > 1 and (na - starts[-1]) * nb < min_pairs:
        starts.pop()
    ends = [*starts[1:], na]
    return [_Block(i, r0, r1, 0, nb) for i, (r0, r1) in enumerate(zip(starts, ends, strict=True))]


def _block_shape(block_size: int | tuple[int, int] | None, default: int) -> tuple[int, int]:
    if block_size is None:
        return default, default
    if isinstance(block_size, tuple):
        if len(block_size) != 2:
            raise ValueError(f"block_size: expected an int or (rows, cols), got {block_size!r}")
        return (
            check_positive_int(block_size[0], "block_size"),
            check_positive_int(block_size[1], "block_size"),
        )
    b = check_positive_int(block_size, "block_size")
    return b, b


# ----------------------------------------------------------------------------------------------
# Fingerprints and the completed-block record
# ----------------------------------------------------------------------------------------------


def _digest_arrays(*arrays: npt.NDArray[Any]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.view(np.uint8).data if a.size else b"")
    return h.hexdigest()


def _digest_clouds(c: PointClouds) -> str:
    return _digest_arrays(c.points, c.weights, c.offsets)


class _Record:
    """Which blocks of an output are finished: a small JSON file next to it, replaced atomically."""

    def __init__(self, path: Path, fingerprint: dict[str, Any], n_blocks: int) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.n_blocks = n_blocks
        self.done: set[int] = set()
        self.unconverged: dict[int, int] = {}
        self._dirty = False
        self._saved_at = 0.0

    @classmethod
    def load(cls, path: Path, fingerprint: dict[str, Any], n_blocks: int, what: str) -> _Record:
        rec = cls(path, fingerprint, n_blocks)
        try:
            data = json.loads(path.read_text())
            old = data["fingerprint"]
            done = [int(i) for i in data["done"]]
            bad = {int(k): int(v) for k, v in data.get("unconverged", {}).items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{what}: its record {path} is unreadable ({e}); pass overwrite=True to start over"
            ) from None
        differ = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        if differ:
            detail = "; ".join(
                f"{k}: {old.get(k)!r} then, {fingerprint.get(k)!r} now" for k in differ
            )
            raise ValueError(
                f"{what} was written by a different computation ({detail}); pass "
                "overwrite=True to replace it, or another output path"
            )
        rec.done = {i for i in done if 0 <= i < n_blocks}
        rec.unconverged = bad
        return rec

    def mark(self, index: int, unconverged: int) -> None:
        self.done.add(index)
        if unconverged:
            self.unconverged[index] = unconverged
        self._dirty = True

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._dirty or (not force and now - self._saved_at < 2.0):
            return
        data = {
            "format": "semot-blocks",
            "version": _RECORD_VERSION,
            "fingerprint": self.fingerprint,
            "n_blocks": self.n_blocks,
            "done": sorted(self.done),
            "unconverged": {str(k): v for k, v in sorted(self.unconverged.items())},
        }
        _atomic_write(self.path, json.dumps(data).encode())
        self._dirty = False
        self._saved_at = now


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _BlockStore:
    """Finished block results of a run without an output array (``checkpoint=`` directory)."""

    def __init__(self, root: Path, fingerprint: dict[str, Any], n_blocks: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.record = _Record(root / "record.json", fingerprint, n_blocks)
        if self.record.path.exists():
            self.record = _Record.load(
                self.record.path, fingerprint, n_blocks, f"checkpoint {root}"
            )
        # Only blocks whose file made it to disk count.
        self.record.done = {i for i in self.record.done if self._file(i).exists()}

    def _file(self, index: int) -> Path:
        return self.root / f"block-{index:06d}.npz"

    def save(self, index: int, arrays: dict[str, npt.NDArray[Any]], unconverged: int) -> None:
        tmp = self.root / f".block-{index:06d}.{os.getpid()}.tmp.npz"
        # numpy's stub types **kwds as if a key could be its allow_pickle flag.
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, self._file(index))
        self.record.mark(index, unconverged)
        self.record.save()

    def load(self, index: int) -> dict[str, npt.NDArray[Any]]:
        with np.load(self._file(index)) as z:
            return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------------------------
# Client side: connection, progress, running the blocks
# ----------------------------------------------------------------------------------------------


@contextmanager
def _client(client: ClientLike, timeout: float) -> Iterator[Client]:
    """Yield a connected client with at least one worker; close it if we opened it."""
    own = None
    if client is None:
        try:
            from distributed import get_client

            c = get_client()
        except ValueError:
            raise ValueError(
                "client: no Dask client is active; pass client=Client(...) or a scheduler "
                "address such as 'tcp://host:8786'"
            ) from None
    elif isinstance(client, str):
        try:
            c = own = Client(client, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise SchedulerUnavailableError(
                f"cannot reach the Dask scheduler at {client} within {timeout:g} s ({e}); "
                "start one with `dask scheduler` and workers with `dask worker ADDRESS`"
            ) from None
    elif isinstance(client, Client):
        c = client
    else:
        raise TypeError(
            "client: expected a distributed.Client, an address or None, got "
            f"{type(client).__name__}"
        )
    try:
        if c.status != "running":
            raise SchedulerUnavailableError(f"the Dask client is {c.status}, not running")
        try:
            c.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError) as e:
            raise SchedulerUnavailableError(
                f"no Dask worker joined the scheduler at {c.scheduler.address} within "
                f"{timeout:g} s ({type(e).__name__}); start workers with `dask worker "
                f"{c.scheduler.address}`"
            ) from None
        yield c
    finally:
        if own is not None:
            own.close(timeout=timeout)


class _Bar:
    """A progress line on stderr: blocks done, rate, time left."""

    def __init__(self, total: int, done: int, desc: str, progress: Progress) -> None:
        self.total, self.done, self.desc = total, done, desc
        self.callback = progress if callable(progress) else None
        self.enabled = progress is True
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.start_done = done
        self.last = 0.0
        self.show(force=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)
        self.show()

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else 30.0):
            return
        self.last = now
        dt = now - self.t0
        new = self.done - self.start_done
        eta = ""
        if new and self.done < self.total:
            eta = f", {_hms((self.total - self.done) * dt / new)} left"
        line = f"{self.desc}: {self.done}/{self.total} blocks, {_hms(dt)}{eta}"
        if self.tty:
            sys.stderr.write("\r" + line.ljust(70))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self.show(force=True)
            if self.tty:
                sys.stderr.write("\n")
                sys.stderr.flush()


def _hms(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _ping(client: Client, timeout: float) -> int:
    """Ask the scheduler for its workers, within ``timeout``; return how many there are."""
    box: dict[str, Any] = {}

    def ask() -> None:
        try:
            # A real round trip: Client.scheduler_info() answers from a cache when the
            # scheduler is gone.
            info = client.sync(client.scheduler.identity, n_workers=-1)
            box["n"] = len(info["workers"])
        except Exception as e:  # reported to the caller below
            box["error"] = e

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise SchedulerUnavailableError(
            f"the Dask scheduler at {client.scheduler.address} did not answer within {timeout:g} s"
        )
    if "error" in box:
        raise SchedulerUnavailableError(
            f"lost the Dask scheduler at {client.scheduler.address}: {box['error']}"
        )
    return int(box["n"])


def _run(
    client: Client,
    blocks: Sequence[_Block],
    submit: Callable[[_Block], Future[Any]],
    on_result: Callable[[_Block, Any], None],
    *,
    progress: Progress,
    desc: str,
    timeout: float,
    n_done: int = 0,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Submit ``blocks`` and hand each result to ``on_result`` as it arrives.

    Raises :class:`SchedulerUnavailableError` when the scheduler goes away or stops answering,
    or when no worker is left for ``timeout`` seconds. On any exit before the end (Ctrl-C,
    errors) the remaining blocks are cancelled and ``on_stop`` runs.
    """
    bar = _Bar(n_done + len(blocks), n_done, desc, progress)
    futures: dict[Future[Any], _Block] = {}
    address = client.scheduler.address
    try:
        for blk in blocks:
            futures[submit(blk)] = blk
        ac = as_completed(list(futures), loop=client.loop)
        last_seen = time.monotonic()
        no_workers_since: float | None = None
        while futures:
            batch = ac.next_batch(block=False)
            if not batch:
                with ac.thread_condition:
                    ac.thread_condition.wait(timeout=0.5)
                now = time.monotonic()
                bar.show()
                if client.status in ("closing", "closed"):
                    raise SchedulerUnavailableError(
                        f"lost the Dask scheduler at {address} (client {client.status})"
                    )
                if now - last_seen > min(5.0, timeout):
                    workers = _ping(client, timeout)
                    last_seen = now
                    if workers == 0:
                        no_workers_since = no_workers_since or now
                        if now - no_workers_since > timeout:
                            raise SchedulerUnavailableError(
                                f"the Dask scheduler at {address} has had no workers for "
                                f"{timeout:g} s"
                            )
                    else:
                        no_workers_since = None
                continue
            last_seen = time.monotonic()
            for fut in batch:
                blk = futures.pop(fut)
                if fut.status == "cancelled":
                    if client.status == "running":
                        raise RuntimeError(f"{desc}: block {blk.index} was cancelled")
                    raise SchedulerUnavailableError(
                        f"lost the Dask scheduler at {address}: the blocks were cancelled "
                        f"(client {client.status})"
                    )
                try:
                    result = fut.result()
                except Exception as e:
                    if fut.status == "error":
                        raise  # the block itself failed
                    # Fetching a finished result failed: a connection problem, unless the
                    # scheduler still answers.
                    if client.status != "running":
                        raise SchedulerUnavailableError(
                            f"lost the Dask scheduler at {address}: {e}"
                        ) from None
                    _ping(client, timeout)
                    raise
                fut.release()
                on_result(blk, result)
                bar.update()
    except BaseException:
        if futures:
            try:
                client.cancel(list(futures))
            except Exception:  # the scheduler may be gone already
                pass
        if on_stop is not None:
            on_stop()
        raise
    finally:
        bar.close()


def _scatter(client: Client, *objs: Any) -> list[Future[Any]]:
    """Send each object to every worker once; the same object is sent once."""
    out: list[Future[Any]] = []
    seen: dict[int, Future[Any]] = {}
    for obj in objs:
        if id(obj) not in seen:
            ship = obj
            if isinstance(obj, PointClouds):
                ship = _ShippedClouds.from_csr_unchecked(obj.points, obj.weights, obj.offsets)
            seen[id(obj)] = client.scatter(ship, broadcast=True, hash=False)
        out.append(seen[id(obj)])
    return out


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


def _prepare_out(
    client: Client,
    out: str | os.PathLike[str],
    shape: tuple[int, int],
    blocks: Sequence[_Block],
    fingerprint: dict[str, Any],
    overwrite: bool,
) -> tuple[_Sink, _Record]:
    path = Path(out).absolute()
    record_path = path.with_name(path.name + ".semot.json")
    what = f"out {path}"
    if path.suffix not in (".npy", ".zarr"):
        raise ValueError(f"out: expected a .npy or .zarr path, got {str(out)!r}")
    fingerprint = {**fingerprint, "shape": list(shape)}
    if path.suffix == ".zarr":
        try:
            import zarr
        except ImportError:
            raise ImportError("out: a .zarr output needs zarr (pip install zarr)") from None
    resume = path.exists() and not overwrite
    if resume and not record_path.exists():
        raise ValueError(
            f"{what} exists and has no record of finished blocks ({record_path.name}); pass "
            "overwrite=True to replace it"
        )
    if resume:
        record = _Record.load(record_path, fingerprint, len(blocks), what)
    else:
        record = _Record(record_path, fingerprint, len(blocks))
        record_path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npy":
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)
            del mm
        else:
            rows = max(b.r1 - b.r0 for b in blocks)
            cols = max(b.c1 - b.c0 for b in blocks)
            zarr.open_array(str(path), mode="w", shape=shape, chunks=(rows, cols), dtype="f8")
        record._dirty = True
        record.save(force=True)
    sink: _Sink
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                got_shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        if tuple(got_shape) != shape or dtype != np.float64:
            raise ValueError(f"{what}: holds {dtype} {got_shape}, expected float64 {shape}")
        sink = _NpySink(str(path), offset, shape[1])
    else:
        sink = _ZarrSink(str(path))
    seen = client.run(os.path.exists, str(path))
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ValueError(
            f"{what} is not visible from worker(s) {', '.join(blind)}: write to a filesystem "
            "that the client and every worker share under the same path"
        )
    return sink, record


def _open_out(sink: _Sink) -> Any:
    if isinstance(sink, _NpySink):
        return np.load(sink.path, mmap_mode="r")
    import zarr

    return zarr.open_array(sink.path, mode="r")


def _warn_unconverged(bad: int, total: int, max_iter: int, tol: float) -> None:
    if bad:
        warnings.warn(
            f"{bad} of {total} Sinkhorn problem(s) did not converge within max_iter={max_iter} "
            f"iterations (tol={tol:g}); increase max_iter or reg",
            ConvergenceWarning,
            stacklevel=3,
        )


# ----------------------------------------------------------------------------------------------
# cdist
# ----------------------------------------------------------------------------------------------


def _cdist(
    kernel: _Kernel,
    ca: PointClouds,
    cb: PointClouds,
    blocks: list[_Block],
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
    digest_a = _digest_clouds(ca)
    first = blocks[0]
    fingerprint = {
        **kernel.describe(),
        "A": digest_a,
        "B": digest_a if cb is ca else _digest_clouds(cb),
        "blocks": [first.r1 - first.r0, first.c1 - first.c0, len(blocks)],
    }
    best: TopK | None = None
    if top_k is not None:
        best = TopK(np.full((na, top_k), np.iinfo(np.int64).max), np.full((na, top_k), np.inf))
    dense = np.empty((na, nb)) if out is None and top_k is None else None
    unconverged = 0

    def take_topk(blk: _Block, tk: TopK) -> None:
        assert best is not None and top_k is not None
        i, d = _merge_topk(
            best.indices[blk.r0 : blk.r1], best.distances[blk.r0 : blk.r1], *tk, top_k
        )
        best.indices[blk.r0 : blk.r1], best.distances[blk.r0 : blk.r1] = i, d

    with _client(client, timeout) as c:
        sink: _Sink | None = None
        record: _Record | None = None
        store: _BlockStore | None = None
        if out is not None:
            sink, record = _prepare_out(c, out, (na, nb), blocks, fingerprint, overwrite)
        elif checkpoint is not None:
            store = _BlockStore(Path(checkpoint), {**fingerprint, "top_k": top_k}, len(blocks))
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
                take_topk(blk, TopK(*smallest_k(sink.read(blk), top_k, blk.c0)))
        todo = [b for b in blocks if b.index not in done]
        if todo:
            fk, fa, fb = _scatter(c, kernel, ca, cb)

            def submit(blk: _Block) -> Future[Any]:
                return c.submit(
                    _cdist_block, fk, fa, fb, blk, sink, top_k,
                    key=f"semot-{desc}-{blk.index}-{os.urandom(4).hex()}",
                    priority=-blk.index, pure=False,
                )  # fmt: skip

            def on_result(blk: _Block, res: _BlockResult) -> None:
                nonlocal unconverged
                unconverged += res.unconverged
                if res.topk is not None:
                    take_topk(blk, res.topk)
                if dense is not None and res.values is not None:
                    dense[blk.r0 : blk.r1, blk.c0 : blk.c1] = res.values
                if store is not None and res.topk is not None:
                    store.save(blk.index, res.topk._asdict(), res.unconverged)
                elif record is not None:
                    record.mark(blk.index, res.unconverged)
                    record.save()

            def on_stop() -> None:
                if record is not None:
                    record.save(force=True)

            try:
                _run(
                    c, todo, submit, on_result, progress=progress, desc=desc, timeout=timeout,
                    n_done=len(blocks) - len(todo), on_stop=on_stop,
                )  # fmt: skip
            finally:
                for f in (fk, fa, fb):
                    f.release()
            if record is not None:
                record.save(force=True)
        if best is not None:
            return best, unconverged
        if sink is not None:
            return _open_out(sink), unconverged
        assert dense is not None
        return dense, unconverged


def sliced_wasserstein_cdist(
    A: Any,
    B: Any,
    *,
    client: ClientLike = None,
    n_projections: int = 128,
    p: float = 2,
    seed: int | np.random.Generator | None = None,
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
        or exact with ``p = 2`` and uniform, equal-size clouds) use row stripes over all
        columns instead, ``block_size`` rows high (default 1024) rounded up to a multiple of
        128.
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
    m = _method(method)
    threads = check_n_threads(n_threads) or 1
    proj = _projections(ca.dim, ca.dtype, n_projections, seed, projections)
    q = _n_quantiles(n_quantiles, ca, cb) if m == "quantile" else 0
    na, nb = len(ca), len(cb)
    gram_exact = m == "exact" and p == 2 and na * nb >= _GEMM_MIN_PAIRS and _uniform_equal(ca, cb)
    kernel = _SlicedKernel(proj, p, m, q, threads, merge_only=not gram_exact)
    if m == "quantile" or gram_exact:
        rows, _ = _block_shape(block_size, DEFAULT_STRIPE)
        blocks = _stripes(na, nb, rows, _GEMM_MIN_PAIRS if gram_exact else 0)
    else:
        rows, cols = _block_shape(block_size, DEFAULT_BLOCK)
        blocks = _tiles(na, nb, rows, cols)
    result, _ = _cdist(
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
    in one :class:`~semot.distances.sinkhorn.ConvergenceWarning`.

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
    prm = _check_params(reg, p, max_iter, tol, debiased)
    threads = check_n_threads(n_threads) or 1
    ca, cb = two_sets(A, B)
    if A is B:
        cb = ca
    kernel = _SinkhornKernel(prm.reg, prm.p, prm.max_iter, prm.tol, prm.debiased, threads)
    rows, cols = _block_shape(block_size, DEFAULT_BLOCK)
    blocks = _tiles(len(ca), len(cb), rows, cols)
    result, bad = _cdist(
        kernel, ca, cb, blocks, client=client, out=out, top_k=top_k, overwrite=overwrite,
        checkpoint=checkpoint, progress=progress, timeout=timeout, desc="sinkhorn",
    )  # fmt: skip
    _warn_unconverged(bad, len(ca) * len(cb), prm.max_iter, prm.tol)
    return result


# ----------------------------------------------------------------------------------------------
# match
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PairMetric:
    """Distances of explicit (source, target) pairs, as :func:`semot.match` computes them."""

    metric: str
    projections: FloatArray | None
    reg: float
    n_threads: int | None

    def pairs(
        self, a: PointClouds, b: PointClouds, pairs: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], int]:
        if self.metric == "sliced":
            assert self.projections is not None
            d = sliced_wasserstein_pairs(
                a, b, pairs, projections=_aligned(self.projections), n_threads=self.n_threads
            )
            return d, 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            d, info = sinkhorn_pairs(
                a, b, pairs, reg=self.reg, debiased=True, n_threads=self.n_threads,
                return_info=True,
            )  # fmt: skip
        return np.asarray(d), int(info.converged.size - np.count_nonzero(info.converged))


@dataclass(frozen=True)
class _CandidateSpec:
    kind: str
    n_candidates: int
    projections: FloatArray | None
    n_quantiles: int
    n_threads: int | None
    device: str | None

    def source_rows(self, src: Any, r0: int, r1: int) -> npt.NDArray[Any]:
        if self.kind == "quantile-knn":
            return self.embed(_rows(src, r0, r1))
        if self.kind == "centroid":
            from semot.matching.matcher import centroids

            return centroids(_rows(src, r0, r1))
        return np.asarray(src[r0:r1])

    def embed(self, clouds: PointClouds) -> npt.NDArray[Any]:
        assert self.projections is not None
        proj = _aligned(self.projections)
        if self.device is not None:
            from semot.distances import torch_kernels as torch_backend

            return torch_backend.sliced_quantile_embedding(
                clouds, projections=proj, n_quantiles=self.n_quantiles, device=self.device
            )
        return sliced_quantile_embedding(
            clouds, projections=proj, n_quantiles=self.n_quantiles, n_threads=self.n_threads
        )

    def knn(self, a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        if self.device is not None:
            from semot.distances import torch_kernels as torch_backend

            if self.kind == "decoder-cosine":
                return torch_backend.knn_cosine(a, b, self.n_candidates, device=self.device)[0]
            return torch_backend.knn_euclidean(a, b, self.n_candidates, device=self.device)[0]
        from semot.matching import matcher as matching

        if self.kind == "decoder-cosine":
            return matching._cosine_knn(a, b, self.n_candidates)[0]
        return matching.knn_euclidean(a, b, self.n_candidates)[0]


def _target_features(spec: _CandidateSpec, tgt: Any) -> npt.NDArray[Any]:
    """Compute what source rows are compared with: embeddings, centroids or decoder rows."""
    if spec.kind == "quantile-knn":
        return spec.embed(tgt)
    if spec.kind == "centroid":
        from semot.matching.matcher import centroids

        return centroids(tgt)
    return np.asarray(tgt)


def _match_rows(
    spec: _CandidateSpec,
    metric: _PairMetric,
    src: PointClouds,
    tgt: PointClouds,
    src_feat: Any,
    tgt_feat: npt.NDArray[Any],
    blk: _Block,
) -> dict[str, npt.NDArray[Any]]:
    """Candidates of source rows ``r0:r1`` and their exact distances (on a worker)."""
    idx = spec.knn(spec.source_rows(src_feat, blk.r0, blk.r1), tgt_feat)
    rows = np.repeat(np.arange(blk.r0, blk.r1), idx.shape[1])
    pairs = np.stack([rows, idx.ravel()], 1).astype(np.int64)
    dist, bad = metric.pairs(src, tgt, pairs)
    return {"indices": idx, "distances": dist, "unconverged": np.array(bad)}


def _match_tile(
    metric: _PairMetric,
    src: PointClouds,
    tgt: PointClouds,
    blk: _Block,
    keep: int | None,
) -> dict[str, npt.NDArray[Any]]:
    """All pairs of one tile (on a worker): every distance, or the ``keep`` best per row."""
    ii, jj = np.meshgrid(np.arange(blk.r0, blk.r1), np.arange(blk.c0, blk.c1), indexing="ij")
    pairs = np.stack([ii.ravel(), jj.ravel()], 1).astype(np.int64)
    dist, bad = metric.pairs(src, tgt, pairs)
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
    metric: Literal["sliced", "sinkhorn"] = "sliced",
    k: int = 5,
    assignment: Literal["nearest", "one-to-one"] = "nearest",
    threshold: float | Literal["auto"] | None = None,
    margin: float | None = None,
    candidates: Literal["quantile-knn", "decoder-cosine", "centroid"] | None = None,
    n_candidates: int = 32,
    source_decoder: Any = None,
    target_decoder: Any = None,
    n_projections: int = 128,
    n_quantiles: int = 32,
    reg: float | None = None,
    seed: int = 0,
    n_threads: int | None = None,
    device: str | None = None,
    block_size: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: Progress = True,
    timeout: float = 60.0,
) -> Any:
    """Match source features to target features on a Dask cluster, like :func:`semot.match`.

    Returns the frame :func:`semot.match` returns for the same arguments, row for row. The
    candidate search runs on the workers, a block of 1024 source rows per task (quantile
    embeddings or centroids of the block against those of all targets, computed once on one
    worker), followed in the same task by the exact distances of the block's candidates.
    Without candidates, square tiles of all pairs are computed and reduced on the workers to
    the best ``max(k, 2)`` targets per source (``"nearest"``); ``"one-to-one"`` without
    candidates gathers the whole matrix on the client, as :func:`semot.match` holds it.

    Parameters
    ----------
    source, target, metric, k, assignment, threshold, margin, candidates, n_candidates
        As in :func:`semot.match`.
    source_decoder, target_decoder, n_projections, n_quantiles, reg, seed
        As in :func:`semot.match`.
    client : distributed.Client, str or None
        A client, a scheduler address, or ``None`` for the default client.
    n_threads : int, optional
        Rust threads per task (default one; see :func:`sliced_wasserstein_cdist`).
    device : str, optional
        Run the candidate search with torch on this device (``"cuda"`` on GPU workers); see
        :mod:`semot.distances.torch_kernels`. Candidates agree with the CPU search up to ties within
        float rounding.
    block_size : int, optional
        Tile side without candidates (default 512).
    checkpoint : str or path, optional
        Directory where finished blocks are saved; the same call resumes from them.
    progress, timeout
        As in :func:`sliced_wasserstein_cdist`.

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``target``, ``rank``, ``distance``, ``matched``.
    """
    from semot.matching.matcher import default_reg, feature_sets, matches_from_pairs

    for value, name, allowed in (
        (metric, "metric", ("sliced", "sinkhorn")),
        (assignment, "assignment", ("nearest", "one-to-one")),
        (candidates, "candidates", (None, "quantile-knn", "decoder-cosine", "centroid")),
    ):
        if value not in allowed:
            raise ValueError(f"{name}: expected one of {list(allowed)}, got {value!r}")
    k = check_positive_int(k, "k")
    n_candidates = check_positive_int(n_candidates, "n_candidates")
    threads = check_n_threads(n_threads) or 1
    src, tgt = feature_sets(source, target)
    ns, nt = len(src.ids), len(tgt.ids)
    proj = random_projections(src.clouds.dim, n_projections, seed)
    if metric == "sliced":
        pm = _PairMetric("sliced", proj, 0.0, threads)
    else:
        r = reg if reg is not None else default_reg(src.clouds, tgt.clouds, seed)
        pm = _PairMetric("sinkhorn", None, float(r), threads)
    fingerprint: dict[str, Any] = {
        "function": "match",
        "metric": metric,
        "reg": pm.reg,
        "n_projections": n_projections,
        "seed": seed,
        "candidates": candidates,
        "n_candidates": n_candidates,
        "n_quantiles": n_quantiles,
        "k": k,
        "assignment": assignment,
        "device": device,
        "source": _digest_clouds(src.clouds),
        "target": _digest_clouds(tgt.clouds),
    }
    src_feat: Any = src.clouds
    tgt_feat: Any = tgt.clouds
    if candidates == "decoder-cosine":
        from semot.matching.matcher import _decoder_rows

        if source_decoder is None or target_decoder is None:
            raise ValueError(
                "candidates='decoder-cosine' needs source_decoder and target_decoder "
                "(arrays of shape (n_features, d_model))"
            )
        src_feat = _decoder_rows(source_decoder, src.ids, "source_decoder")
        tgt_feat = _decoder_rows(target_decoder, tgt.ids, "target_decoder")
        fingerprint["decoders"] = _digest_arrays(src_feat, tgt_feat)

    keep: int | None = None
    if candidates is not None:
        blocks = [
            _Block(i, r0, min(r0 + _KNN_ROWS, ns), 0, nt)
            for i, r0 in enumerate(range(0, ns, _KNN_ROWS))
        ]
    else:
        tile = check_positive_int(block_size, "block_size") if block_size else DEFAULT_BLOCK
        blocks = _tiles(ns, nt, tile, tile)
        keep = min(max(k, 2), nt) if assignment == "nearest" else None
    fingerprint["blocks"] = len(blocks)

    parts: dict[int, dict[str, npt.NDArray[Any]]] = {}
    store = _BlockStore(Path(checkpoint), fingerprint, len(blocks)) if checkpoint else None
    if store is not None:
        for i in store.record.done:
            parts[i] = store.load(i)
    todo = [b for b in blocks if b.index not in parts]
    if todo:
        with _client(client, timeout) as c:
            f_src, f_tgt = _scatter(c, src.clouds, tgt.clouds)
            extra: list[Future[Any]] = []
            if candidates is not None:
                spec = _CandidateSpec(candidates, n_candidates, proj, n_quantiles, threads, device)
                fsrc_feat = f_src if src_feat is src.clouds else _scatter(c, src_feat)[0]
                ftgt_in = f_tgt if tgt_feat is tgt.clouds else _scatter(c, tgt_feat)[0]
                # Computed once, on one worker; Dask sends it to each worker that needs it.
                ftgt_feat = c.submit(_target_features, spec, ftgt_in, pure=False)
                extra = [fsrc_feat, ftgt_in, ftgt_feat]

                def submit(blk: _Block) -> Future[Any]:
                    return c.submit(
                        _match_rows, spec, pm, f_src, f_tgt, fsrc_feat, ftgt_feat, blk,
                        pure=False, priority=-blk.index,
                    )  # fmt: skip
            else:

                def submit(blk: _Block) -> Future[Any]:
                    return c.submit(
                        _match_tile, pm, f_src, f_tgt, blk, keep, pure=False, priority=-blk.index
                    )

            def on_result(blk: _Block, res: dict[str, npt.NDArray[Any]]) -> None:
                parts[blk.index] = res
                if store is not None:
                    store.save(blk.index, res, int(res["unconverged"]))

            def on_stop() -> None:
                if store is not None:
                    store.record.save(force=True)

            try:
                _run(
                    c, todo, submit, on_result, progress=progress, desc="match",
                    timeout=timeout, n_done=len(blocks) - len(todo), on_stop=on_stop,
                )  # fmt: skip
            finally:
                for f in (f_src, f_tgt, *extra):
                    f.release()
            if store is not None:
                store.record.save(force=True)

    bad = sum(int(p["unconverged"]) for p in parts.values())
    pairs, dist = _assemble(blocks, parts, candidates is not None, keep, ns, nt)
    if metric == "sinkhorn":
        _warn_unconverged(bad, len(dist), DEFAULT_MAX_ITER, DEFAULT_TOL)
    return matches_from_pairs(
        pairs, dist, src.ids, tgt.ids, k=k, assignment=assignment, threshold=threshold,
        margin=margin,
    )  # fmt: skip


def _assemble(
    blocks: Sequence[_Block],
    parts: dict[int, dict[str, npt.NDArray[Any]]],
    candidates: bool,
    keep: int | None,
    ns: int,
    nt: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(pairs, distances) for :func:`semot.matching.matches_from_pairs`, sources in order."""
    if candidates:
        rows, cols, dists = [], [], []
        for blk in blocks:
            part = parts[blk.index]
            idx = part["indices"]
            rows.append(np.repeat(np.arange(blk.r0, blk.r1), idx.shape[1]))
            cols.append(idx.ravel())
            dists.append(part["distances"])
        pairs = np.stack([np.concatenate(rows), np.concatenate(cols)], 1).astype(np.int64)
        return pairs, np.concatenate(dists).astype(np.float64)
    if keep is None:
        full = np.empty((ns, nt))
        for blk in blocks:
            full[blk.r0 : blk.r1, blk.c0 : blk.c1] = parts[blk.index]["values"]
        ii, jj = np.meshgrid(np.arange(ns), np.arange(nt), indexing="ij")
        return np.stack([ii.ravel(), jj.ravel()], 1).astype(np.int64), full.ravel()
    best_i = np.full((ns, keep), np.iinfo(np.int64).max)
    best_d = np.full((ns, keep), np.inf)
    for blk in blocks:
        part = parts[blk.index]
        i, d = _merge_topk(
            best_i[blk.r0 : blk.r1], best_d[blk.r0 : blk.r1],
            part["indices"], part["distances"], keep,
        )  # fmt: skip
        best_i[blk.r0 : blk.r1], best_d[blk.r0 : blk.r1] = i, d
    src_rows = np.repeat(np.arange(ns), keep)
    return np.stack([src_rows, best_i.ravel()], 1).astype(np.int64), best_d.ravel()
