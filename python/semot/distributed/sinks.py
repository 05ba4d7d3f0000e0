"""Where the Dask functions put finished blocks, and the record that makes a run resumable.

* :class:`NpySink` / :class:`ZarrSink`: the workers write their blocks into the output array
  (``out="D.npy"`` or ``"D.zarr"``), created by :func:`prepare_out` on the client;
* :class:`Record`: which blocks are done, with a fingerprint of the computation, the CRC-32
  of each finished block's bytes and the output's expected size, in a JSON file beside the
  output (replaced atomically with :mod:`semot._utils.atomic`);
* :class:`BlockStore`: block results kept as ``.npz`` files in a ``checkpoint=`` directory
  (top-k and match runs, which have no output array).

A resumed run trusts nothing it has not checked: an output of the wrong size is brought
back to its size, and every block the record lists as done is read back and compared with
its CRC-32; a block that does not match (or has none) is computed again, with a
:class:`~semot.errors.DamagedOutputWarning`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.atomic import atomic_write_bytes
from semot._utils.jsondepth import json_depth_problem
from semot.clouds import PointClouds
from semot.distributed.blocks import Block
from semot.errors import DamagedOutputWarning

__all__ = [
    "BlockStore",
    "NpySink",
    "Record",
    "Sink",
    "ZarrSink",
    "block_checksum",
    "digest_arrays",
    "digest_clouds",
    "open_out",
    "prepare_out",
]

_RECORD_VERSION = 2


def block_checksum(values: npt.NDArray[Any]) -> int:
    """CRC-32 of a block's values as little-endian float64 in C order (what a sink stores)."""
    data = np.ascontiguousarray(values, dtype="<f8")
    return zlib.crc32(data.view(np.uint8).data if data.size else b"")


@dataclass(frozen=True)
class NpySink:
    """Blocks written into a ``.npy`` file (float64, C order) at byte ``offset``."""

    path: str
    offset: int
    n_cols: int

    def write(self, blk: Block, values: npt.NDArray[np.float64]) -> int:
        """Write one block (on a worker) and fsync it; return its :func:`block_checksum`."""
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
        return block_checksum(data)

    def read(self, blk: Block) -> npt.NDArray[np.float64]:
        """Read one finished block back."""
        mm = np.load(self.path, mmap_mode="r")
        return np.array(mm[blk.r0 : blk.r1, blk.c0 : blk.c1])


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


@dataclass(frozen=True)
class ZarrSink:
    """Blocks written into a 2-D float64 zarr array."""

    path: str

    def write(self, blk: Block, values: npt.NDArray[np.float64]) -> int:
        """Write one block (on a worker); return its :func:`block_checksum`."""
        import zarr

        data = np.ascontiguousarray(values, dtype="<f8")
        zarr.open_array(self.path, mode="r+")[blk.r0 : blk.r1, blk.c0 : blk.c1] = data
        return block_checksum(data)

    def read(self, blk: Block) -> npt.NDArray[np.float64]:
        """Read one finished block back."""
        import zarr

        arr = zarr.open_array(self.path, mode="r")
        return np.asarray(arr[blk.r0 : blk.r1, blk.c0 : blk.c1], dtype=np.float64)


Sink = NpySink | ZarrSink


def digest_arrays(*arrays: npt.NDArray[Any]) -> str:
    """BLAKE2b digest (16 bytes, hex) of the dtypes, shapes and bytes of ``arrays``."""
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.view(np.uint8).data if a.size else b"")
    return h.hexdigest()


def digest_clouds(c: PointClouds) -> str:
    """:func:`digest_arrays` of the points, weights and offsets of ``c``."""
    return digest_arrays(c.points, c.weights, c.offsets)


class Record:
    """Which blocks of an output are finished: a small JSON file next to it, replaced atomically.

    ``done`` are the finished blocks, ``checksums`` their :func:`block_checksum` (or the
    CRC-32 of their stored file), ``unconverged`` their Sinkhorn problems that hit
    ``max_iter``, and ``out_bytes`` the expected size of a ``.npy`` output.
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any], n_blocks: int) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.n_blocks = n_blocks
        self.done: set[int] = set()
        self.checksums: dict[int, int] = {}
        self.unconverged: dict[int, int] = {}
        self.out_bytes: int | None = None
        self._dirty = False
        self._saved_at = 0.0

    @classmethod
    def load(cls, path: Path, fingerprint: dict[str, Any], n_blocks: int, what: str) -> Record:
        """Read a record; refuse one that is unreadable or from another computation (ValueError)."""
        rec = cls(path, fingerprint, n_blocks)
        try:
            raw = path.read_bytes()
            deep = json_depth_problem(raw)
            if deep is not None:
                raise ValueError(deep)
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data["fingerprint"], dict):
                raise TypeError("expected an object with a 'fingerprint' object")
            old = data["fingerprint"]
            done = [_count(i) for i in data["done"]]
            bad = {_count(k): _count(v) for k, v in dict(data.get("unconverged", {})).items()}
            sums = {_count(k): _count(v) for k, v in dict(data.get("checksums", {})).items()}
            size = data.get("out_bytes")
            out_bytes = None if size is None else _count(size)
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
        rec.checksums = {i: v for i, v in sums.items() if i in rec.done}
        rec.unconverged = bad
        rec.out_bytes = out_bytes
        return rec

    def mark(self, index: int, unconverged: int, checksum: int | None = None) -> None:
        """Note block ``index`` as done (saved by the next :meth:`save`)."""
        self.done.add(index)
        if checksum is not None:
            self.checksums[index] = checksum
        if unconverged:
            self.unconverged[index] = unconverged
        self._dirty = True

    def forget(self, indices: set[int]) -> None:
        """Take ``indices`` off the finished blocks (they will be computed again)."""
        if not indices:
            return
        self.done -= indices
        for i in indices:
            self.checksums.pop(i, None)
            self.unconverged.pop(i, None)
        self._dirty = True

    def save(self, force: bool = False) -> None:
        """Write the record atomically if it changed (at most every 2 s unless ``force``)."""
        now = time.monotonic()
        if not self._dirty or (not force and now - self._saved_at < 2.0):
            return
        data = {
            "format": "semot-blocks",
            "version": _RECORD_VERSION,
            "fingerprint": self.fingerprint,
            "n_blocks": self.n_blocks,
            "out_bytes": self.out_bytes,
            "done": sorted(self.done),
            "checksums": {str(k): v for k, v in sorted(self.checksums.items())},
            "unconverged": {str(k): v for k, v in sorted(self.unconverged.items())},
        }
        atomic_write_bytes(self.path, json.dumps(data).encode())
        self._dirty = False
        self._saved_at = now


def _count(x: Any) -> int:
    """Return a non-negative int of a record (keys are strings); ValueError or TypeError if not."""
    if isinstance(x, bool) or not isinstance(x, (int, str)):
        raise TypeError(f"expected a non-negative integer, got {x!r}")
    value = int(x)
    if value < 0:
        raise ValueError(f"expected a non-negative integer, got {x!r}")
    return value


def _warn_damaged(what: str, n_bad: int, n_done: int, why: str) -> None:
    warnings.warn(
        f"{what}: {n_bad} of the {n_done} blocks recorded as finished {why}; computing them again",
        DamagedOutputWarning,
        stacklevel=4,
    )


class BlockStore:
    """Finished block results of a run without an output array (``checkpoint=`` directory)."""

    def __init__(self, root: Path, fingerprint: dict[str, Any], n_blocks: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.record = Record(root / "record.json", fingerprint, n_blocks)
        if self.record.path.exists():
            self.record = Record.load(self.record.path, fingerprint, n_blocks, f"checkpoint {root}")
        # Only blocks whose file made it to disk intact count.
        damaged = {i for i in self.record.done if not self._intact(i)}
        if damaged:
            _warn_damaged(
                f"checkpoint {root}", len(damaged), len(self.record.done),
                "are missing or do not match their CRC-32",
            )  # fmt: skip
            self.record.forget(damaged)
            self.record.save(force=True)

    def _intact(self, index: int) -> bool:
        want = self.record.checksums.get(index)
        try:
            blob = self._file(index).read_bytes()
        except OSError:
            return False
        return want is not None and zlib.crc32(blob) == want

    def _file(self, index: int) -> Path:
        return self.root / f"block-{index:06d}.npz"

    def save(self, index: int, arrays: dict[str, npt.NDArray[Any]], unconverged: int) -> None:
        """Store the result of block ``index`` atomically, then record it as done."""
        buf = io.BytesIO()
        # numpy's stub types **kwds as if a key could be its allow_pickle flag.
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        blob = buf.getvalue()
        atomic_write_bytes(self._file(index), blob)
        self.record.mark(index, unconverged, zlib.crc32(blob))
        self.record.save()

    def load(self, index: int) -> dict[str, npt.NDArray[Any]]:
        """Read the stored result of block ``index``."""
        with np.load(self._file(index)) as z:
            return {k: z[k] for k in z.files}


def prepare_out(
    client: Any,
    out: str | os.PathLike[str],
    shape: tuple[int, int],
    blocks: Sequence[Block],
    fingerprint: dict[str, Any],
    overwrite: bool,
) -> tuple[Sink, Record]:
    """Create (or reopen to resume) the output array ``out`` and its record of done blocks.

    On resume, a ``.npy`` of the wrong size is brought back to the size in the record, and
    each block recorded as done is read back and compared with its checksum; the blocks that
    differ are taken off the record (computed again) with a
    :class:`~semot.errors.DamagedOutputWarning`. Checks that every worker of ``client`` sees
    the file under the same path.

    Raises
    ------
    ValueError
        For an output without a record, a record that is unreadable or from another
        computation, or a ``.npy`` whose header is unreadable or holds another shape.
    """
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
        record = Record.load(record_path, fingerprint, len(blocks), what)
    else:
        record = Record(record_path, fingerprint, len(blocks))
        record_path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npy":
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)
            del mm
        else:
            rows = max(b.r1 - b.r0 for b in blocks)
            cols = max(b.c1 - b.c0 for b in blocks)
            zarr.open_array(str(path), mode="w", shape=shape, chunks=(rows, cols), dtype="f8")
    sink: Sink
    if path.suffix == ".npy":
        offset = _npy_data_offset(path, shape, what)
        expected = offset + shape[0] * shape[1] * 8
        if resume:
            _restore_size(path, expected, record, what)
        record.out_bytes = expected
        sink = NpySink(str(path), offset, shape[1])
    else:
        sink = ZarrSink(str(path))
    if resume:
        _check_done_blocks(sink, record, blocks, what)
    else:
        record._dirty = True
        record.save(force=True)
    seen = client.run(os.path.exists, str(path))
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ValueError(
            f"{what} is not visible from worker(s) {', '.join(blind)}: write to a filesystem "
            "that the client and every worker share under the same path"
        )
    return sink, record


def _npy_data_offset(path: Path, shape: tuple[int, int], what: str) -> int:
    """Byte position of the data of the ``.npy`` at ``path``, checked to be float64 ``shape``."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                got_shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except (ValueError, EOFError, OSError) as e:
        raise ValueError(
            f"{what}: its .npy header is unreadable ({e}); the file was damaged: pass "
            "overwrite=True to start over"
        ) from None
    if tuple(got_shape) != shape or dtype != np.float64:
        raise ValueError(f"{what}: holds {dtype} {got_shape}, expected float64 {shape}")
    return offset


def _restore_size(path: Path, expected: int, record: Record, what: str) -> None:
    """Bring a resumed ``.npy`` back to ``expected`` bytes (its blocks are checked after)."""
    if record.out_bytes is not None and record.out_bytes != expected:
        raise ValueError(
            f"{what}: its record says {record.out_bytes} bytes but its header describes "
            f"{expected}; the record does not belong to this file: pass overwrite=True to "
            "start over"
        )
    size = path.stat().st_size
    if size != expected:
        warnings.warn(
            f"{what}: {size} bytes instead of {expected} (truncated or extended after the run "
            "stopped); restoring its size and checking every finished block",
            DamagedOutputWarning,
            stacklevel=4,
        )
        os.truncate(path, expected)
        record._dirty = True


def _check_done_blocks(sink: Sink, record: Record, blocks: Sequence[Block], what: str) -> None:
    """Read back every block recorded as done; forget those that do not match their checksum."""
    damaged: set[int] = set()
    for blk in blocks:
        if blk.index not in record.done:
            continue
        want = record.checksums.get(blk.index)
        try:
            ok = want is not None and block_checksum(sink.read(blk)) == want
        except Exception:  # an unreadable zarr chunk, a file changed under us
            ok = False
        if not ok:
            damaged.add(blk.index)
    if damaged:
        _warn_damaged(what, len(damaged), len(record.done), "do not match their checksums")
        record.forget(damaged)
    record.save(force=True)


def open_out(sink: Sink) -> Any:
    """Open the finished output read-only (a memory map or a zarr array)."""
    if isinstance(sink, NpySink):
        return np.load(sink.path, mmap_mode="r")
    import zarr

    return zarr.open_array(sink.path, mode="r")
