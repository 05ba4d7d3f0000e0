"""Where the Dask functions put finished blocks, and the record that makes a run resumable.

* :class:`NpySink` / :class:`ZarrSink`: the workers write their blocks into the output array
  (``out="D.npy"`` or ``"D.zarr"``), created by :func:`prepare_out` on the client;
* :class:`Record`: which blocks are done, with a fingerprint of the computation, in a JSON
  file beside the output (replaced atomically with :mod:`semot._utils.atomic`);
* :class:`BlockStore`: block results kept as ``.npz`` files in a ``checkpoint=`` directory
  (top-k and match runs, which have no output array).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.atomic import atomic_write_bytes
from semot.clouds import PointClouds
from semot.distributed.blocks import Block

__all__ = [
    "BlockStore",
    "NpySink",
    "Record",
    "Sink",
    "ZarrSink",
    "digest_arrays",
    "digest_clouds",
    "open_out",
    "prepare_out",
]

_RECORD_VERSION = 1


@dataclass(frozen=True)
class NpySink:
    """Blocks written into a ``.npy`` file (float64, C order) at byte ``offset``."""

    path: str
    offset: int
    n_cols: int

    def write(self, blk: Block, values: npt.NDArray[np.float64]) -> None:
        """Write one block (on a worker) and fsync it."""
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

    def write(self, blk: Block, values: npt.NDArray[np.float64]) -> None:
        """Write one block (on a worker)."""
        import zarr

        zarr.open_array(self.path, mode="r+")[blk.r0 : blk.r1, blk.c0 : blk.c1] = values

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
    def load(cls, path: Path, fingerprint: dict[str, Any], n_blocks: int, what: str) -> Record:
        """Read a record; refuse one written by a different computation (ValueError)."""
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
        """Note block ``index`` as done (saved by the next :meth:`save`)."""
        self.done.add(index)
        if unconverged:
            self.unconverged[index] = unconverged
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
            "done": sorted(self.done),
            "unconverged": {str(k): v for k, v in sorted(self.unconverged.items())},
        }
        atomic_write_bytes(self.path, json.dumps(data).encode())
        self._dirty = False
        self._saved_at = now


class BlockStore:
    """Finished block results of a run without an output array (``checkpoint=`` directory)."""

    def __init__(self, root: Path, fingerprint: dict[str, Any], n_blocks: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.record = Record(root / "record.json", fingerprint, n_blocks)
        if self.record.path.exists():
            self.record = Record.load(self.record.path, fingerprint, n_blocks, f"checkpoint {root}")
        # Only blocks whose file made it to disk count.
        self.record.done = {i for i in self.record.done if self._file(i).exists()}

    def _file(self, index: int) -> Path:
        return self.root / f"block-{index:06d}.npz"

    def save(self, index: int, arrays: dict[str, npt.NDArray[Any]], unconverged: int) -> None:
        """Store the result of block ``index`` atomically, then record it as done."""
        buf = io.BytesIO()
        # numpy's stub types **kwds as if a key could be its allow_pickle flag.
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(self._file(index), buf.getvalue())
        self.record.mark(index, unconverged)
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

    Checks that every worker of ``client`` sees the file under the same path.
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
        record._dirty = True
        record.save(force=True)
    sink: Sink
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
        sink = NpySink(str(path), offset, shape[1])
    else:
        sink = ZarrSink(str(path))
    seen = client.run(os.path.exists, str(path))
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise ValueError(
            f"{what} is not visible from worker(s) {', '.join(blind)}: write to a filesystem "
            "that the client and every worker share under the same path"
        )
    return sink, record


def open_out(sink: Sink) -> Any:
    """Open the finished output read-only (a memory map or a zarr array)."""
    if isinstance(sink, NpySink):
        return np.load(sink.path, mmap_mode="r")
    import zarr

    return zarr.open_array(sink.path, mode="r")
