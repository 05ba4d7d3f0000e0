"""The CSR layout of stored features: field names and dtypes, and runs of features as blocks.

Every stored array of a :class:`~semot.features.container.FeatureDistributions` is either
*per point* (one row per sampled point, features one after another) or *per feature*; the
``offsets`` array says which rows belong to which feature. A :class:`FeatureBlock` is one
contiguous run of features in that layout: a shard file, a slice of one, or a copy gathered
from several.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DTYPES",
    "FEATURE_FIELDS",
    "FIELDS",
    "POINT_FIELDS",
    "FeatureBlock",
    "PendingCheck",
    "empty_block",
    "gather_features",
    "readonly",
]

Array = npt.NDArray[Any]

#: Per-point arrays: feature ``f`` owns rows ``offsets[f]:offsets[f+1]`` of each.
POINT_FIELDS = ("points", "weights", "activations", "keys", "seq", "pos")
#: Per-feature arrays: one entry per feature.
FEATURE_FIELDS = ("feature_ids", "firing_counts", "activation_sums")
#: Every stored array, in the order they are validated and written.
FIELDS = ("offsets", *POINT_FIELDS, *FEATURE_FIELDS)
#: The dtype each array is stored in (in memory and in the shard files).
DTYPES: dict[str, np.dtype[Any]] = {
    "offsets": np.dtype(np.int64),
    "points": np.dtype(np.float32),
    "weights": np.dtype(np.float32),
    "activations": np.dtype(np.float32),
    "keys": np.dtype(np.float64),
    "seq": np.dtype(np.int64),
    "pos": np.dtype(np.int64),
    "feature_ids": np.dtype(np.int64),
    "firing_counts": np.dtype(np.int64),
    "activation_sums": np.dtype(np.float64),
}


def readonly(arr: Array) -> Array:
    """Return a read-only view of ``arr`` (the data is shared, never copied)."""
    out: Array = arr.view()
    out.flags.writeable = False
    return out


class PendingCheck:
    """A check of the file some blocks live in, run once, before the first read of their data.

    ``check`` raises (:class:`~semot.errors.CorruptFileError`) if the file is damaged; it is
    then run again at the next read, so a damaged file never yields data. Thread-safe, and
    picklable when ``check`` is (a copy keeps whether the check has passed).
    """

    __slots__ = ("_check", "_done", "_lock")

    def __init__(self, check: Callable[[], None]) -> None:
        self._check = check
        self._done = False
        self._lock = threading.Lock()

    def __getstate__(self) -> tuple[Callable[[], None], bool]:
        return self._check, self._done

    def __setstate__(self, state: tuple[Callable[[], None], bool]) -> None:
        self._check, self._done = state
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        """Whether the check has passed."""
        return self._done

    def run(self) -> None:
        """Run the check unless it has passed already."""
        if self._done:
            return
        with self._lock:
            if not self._done:
                self._check()
                self._done = True


class FeatureBlock:
    """One contiguous run of features in CSR layout (a shard, a slice of one, or a copy).

    ``arrays`` maps every name of :data:`FIELDS` to its array, ``source`` is the file the
    arrays live in (for messages; None in memory or when gathered from several files),
    ``checked`` says whether the per-point values have been validated, and ``pending`` is
    the integrity check of the file (a :class:`PendingCheck` shared by every slice of it),
    run by the first ``block[name]``; ``arrays`` itself gives the data unchecked.
    """

    __slots__ = ("arrays", "checked", "pending", "source")

    def __init__(
        self,
        arrays: dict[str, Array],
        source: Path | None,
        checked: bool,
        pending: PendingCheck | None = None,
    ) -> None:
        self.arrays = arrays
        self.source = source
        self.checked = checked
        self.pending = pending

    def __getitem__(self, name: str) -> Array:
        if self.pending is not None:
            self.pending.run()
            self.pending = None
        return self.arrays[name]

    @property
    def n_features(self) -> int:
        """Number of features in the block (``len(offsets) - 1``)."""
        return int(self.arrays["offsets"].shape[0] - 1)

    def slice(self, a: int, b: int) -> FeatureBlock:
        """Features ``a:b`` of this block, as views (offsets are rebased, a small copy)."""
        if a == 0 and b == self.n_features:
            return self
        offs = self.arrays["offsets"]
        lo, hi = int(offs[a]), int(offs[b])
        out = {name: self.arrays[name][lo:hi] for name in POINT_FIELDS}
        out.update({name: self.arrays[name][a:b] for name in FEATURE_FIELDS})
        out["offsets"] = readonly(offs[a : b + 1] - lo)
        return FeatureBlock(out, self.source, self.checked, self.pending)


def empty_block(dim: int) -> FeatureBlock:
    """Return a block of zero features with points of dimension ``dim`` (valid, so checked)."""
    arrays = {
        name: np.zeros((0, dim) if name == "points" else (0,), DTYPES[name]) for name in FIELDS
    }
    arrays["offsets"] = np.zeros(1, np.int64)
    return FeatureBlock(arrays, None, True)


def gather_features(
    blocks: Sequence[FeatureBlock],
    starts: npt.NDArray[np.int64],
    positions: npt.NDArray[np.int64],
    dim: int,
    fields: Sequence[str] = FIELDS,
) -> FeatureBlock:
    """Copy the features at global ``positions`` (in that order) into one new block.

    ``blocks`` hold features ``starts[k]:starts[k+1]`` one after another; only ``fields``
    are copied (``offsets`` always is).
    """
    bi = np.searchsorted(starts, positions, side="right") - 1
    local = positions - starts[bi]
    sizes = np.zeros(positions.shape[0], dtype=np.int64)
    used = np.unique(bi)
    for j in used:
        sel = bi == j
        offs = blocks[j]["offsets"]
        sizes[sel] = offs[local[sel] + 1] - offs[local[sel]]
    offsets = np.zeros(positions.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    out: dict[str, Array] = {}
    for name in fields:
        if name == "offsets":
            continue
        shape: tuple[int, ...]
        if name in POINT_FIELDS:
            shape = (total, dim) if name == "points" else (total,)
        else:
            shape = (positions.shape[0],)
        out[name] = np.empty(shape, dtype=DTYPES[name])
    for j in used:
        sel = np.flatnonzero(bi == j)
        block, li = blocks[j], local[sel]
        sz = sizes[sel]
        # Row r of the k-th selected feature: source row offs[li[k]] + r, target row
        # offsets[sel[k]] + r, for all features of this block in one vectorised copy.
        inner = np.arange(int(sz.sum()), dtype=np.int64) - np.repeat(np.cumsum(sz) - sz, sz)
        src = np.repeat(block["offsets"][li], sz) + inner
        dst = np.repeat(offsets[sel], sz) + inner
        for name in out:
            if name in POINT_FIELDS:
                out[name][dst] = block[name][src]
            else:
                out[name][sel] = block[name][li]
    out = {name: readonly(arr) for name, arr in out.items()}
    out["offsets"] = readonly(offsets)
    sources = {blocks[j].source for j in used}
    return FeatureBlock(
        out,
        sources.pop() if len(sources) == 1 else None,
        all(blocks[j].checked for j in used),
    )
