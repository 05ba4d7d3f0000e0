"""Feature distributions: for every SAE feature, a weighted sample of where it fires.

A :class:`FeatureDistributions` holds, for each of ``F`` sparse-autoencoder features, a
sample of ``m_f`` token positions where the feature fired, as a weighted point cloud of
hidden states, with the provenance of each point and per-feature firing statistics. It is
saved as a directory of safetensors shards plus a JSON manifest, loads lazily (memory-mapped)
and converts to :class:`~semot.PointClouds` for the distance functions.
"""

from __future__ import annotations

import copy
import json
import numbers
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.atomic import atomic_write, fsync_directory
from semot._utils.safetensors import file_sha256, read_safetensors, write_safetensors
from semot.clouds import PointClouds
from semot.errors import CorruptFileError

__all__ = ["CorruptFileError", "FeatureDistributions"]

Array = npt.NDArray[Any]

FORMAT = "semot.FeatureDistributions"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REFERENCE = "reference.safetensors"
_SHARD_RE = re.compile(r"shard-\d{5,}\.safetensors")
#: Files a save may leave behind: shards, the reference, and temporary files of any of ours.
_OWNED_RE = re.compile(
    r"(shard-\d{5,}\.safetensors|reference\.safetensors|manifest\.json)(\.tmp-\d+)?"
)
_MANIFEST_KEYS = frozenset(
    {
        "format",
        "schema_version",
        "semot_version",
        "n_features",
        "dim",
        "n_points",
        "shards",
        "reference_file",
        "metadata",
    }
)
_SHARD_KEYS = frozenset({"file", "features", "n_points", "bytes", "sha256"})

_POINT_FIELDS = ("points", "weights", "activations", "keys", "seq", "pos")
_FEATURE_FIELDS = ("feature_ids", "firing_counts", "activation_sums")
_FIELDS = ("offsets", *_POINT_FIELDS, *_FEATURE_FIELDS)
_DTYPES: dict[str, np.dtype[Any]] = {
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
#: Tolerance on ``|sum of a feature's weights - 1|`` (sums taken in float64).
WEIGHT_SUM_TOL = 1e-3
#: Above this many pieces, a selection is copied into one block instead of kept as views.
_MAX_VIEW_PIECES = 16
#: Elements per chunk when scanning big arrays (bounds temporary memory).
_SCAN_ELEMENTS = 1 << 22


def _readonly(arr: Array) -> Array:
    out: Array = arr.view()
    out.flags.writeable = False
    return out


class _Block:
    """One contiguous run of features in CSR layout (a shard, a slice of one, or a copy).

    ``source`` is the file the arrays live in (for messages), ``checked`` whether the
    per-point values have been validated.
    """

    __slots__ = ("arrays", "checked", "source")

    def __init__(self, arrays: dict[str, Array], source: Path | None, checked: bool) -> None:
        self.arrays = arrays
        self.source = source
        self.checked = checked

    def __getitem__(self, name: str) -> Array:
        return self.arrays[name]

    @property
    def n_features(self) -> int:
        return int(self.arrays["offsets"].shape[0] - 1)

    def slice(self, a: int, b: int) -> _Block:
        """Features ``a:b`` of this block, as views (offsets are rebased, a small copy)."""
        if a == 0 and b == self.n_features:
            return self
        offs = self.arrays["offsets"]
        lo, hi = int(offs[a]), int(offs[b])
        out = {name: self.arrays[name][lo:hi] for name in _POINT_FIELDS}
        out.update({name: self.arrays[name][a:b] for name in _FEATURE_FIELDS})
        out["offsets"] = _readonly(offs[a : b + 1] - lo)
        return _Block(out, self.source, self.checked)


def _gather(
    blocks: Sequence[_Block],
    starts: npt.NDArray[np.int64],
    positions: npt.NDArray[np.int64],
    dim: int,
    fields: Sequence[str] = _FIELDS,
) -> _Block:
    """Copy the features at global ``positions`` (in that order) into one new block."""
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
        if name in _POINT_FIELDS:
            shape = (total, dim) if name == "points" else (total,)
        else:
            shape = (positions.shape[0],)
        out[name] = np.empty(shape, dtype=_DTYPES[name])
    for j in used:
        sel = np.flatnonzero(bi == j)
        block, li = blocks[j], local[sel]
        sz = sizes[sel]
        inner = np.arange(int(sz.sum()), dtype=np.int64) - np.repeat(np.cumsum(sz) - sz, sz)
        src = np.repeat(block["offsets"][li], sz) + inner
        dst = np.repeat(offsets[sel], sz) + inner
        for name in out:
            if name in _POINT_FIELDS:
                out[name][dst] = block[name][src]
            else:
                out[name][sel] = block[name][li]
    out = {name: _readonly(arr) for name, arr in out.items()}
    out["offsets"] = _readonly(offsets)
    sources = {blocks[j].source for j in used}
    return _Block(
        out,
        sources.pop() if len(sources) == 1 else None,
        all(blocks[j].checked for j in used),
    )


def _feature_label(ids: Array, f: int, base: int) -> str:
    return f"feature {base + f} (id {int(ids[f])})"


def _check_structure(arrs: Mapping[str, Array], base: int = 0, n_tokens: int | None = None) -> None:
    """Cheap checks (shapes, offsets, per-feature arrays); ValueError naming what is wrong.

    ``base`` is added to feature positions in messages.
    """
    offs = arrs["offsets"]
    if offs.ndim != 1 or offs.shape[0] < 1:
        raise ValueError(f"offsets: expected shape (n_features + 1,), got {offs.shape}")
    n_feat = offs.shape[0] - 1
    pts = arrs["points"]
    if pts.ndim != 2 or pts.shape[1] < 1:
        raise ValueError(f"points: expected shape (n_points, dim) with dim >= 1, got {pts.shape}")
    total = pts.shape[0]
    for name in _POINT_FIELDS[1:]:
        if arrs[name].shape != (total,):
            raise ValueError(
                f"{name}: expected shape ({total},), one entry per point, got {arrs[name].shape}"
            )
    for name in _FEATURE_FIELDS:
        if arrs[name].shape != (n_feat,):
            raise ValueError(
                f"{name}: expected shape ({n_feat},), one entry per feature (len(offsets) - 1), "
                f"got {arrs[name].shape}"
            )
    ids = arrs["feature_ids"]
    if offs[0] != 0:
        raise ValueError(f"offsets: must start at 0, starts at {int(offs[0])}")
    sizes = np.diff(offs)
    if (sizes < 0).any():
        f = int(np.argmax(sizes < 0))
        raise ValueError(
            f"offsets: must be non-decreasing; {_feature_label(ids, f, base)} has "
            f"offsets[{f}]={int(offs[f])} > offsets[{f + 1}]={int(offs[f + 1])}"
        )
    if offs[-1] != total:
        raise ValueError(f"offsets: must end at len(points)={total}, ends at {int(offs[-1])}")
    counts = arrs["firing_counts"]
    if (counts < 0).any():
        f = int(np.argmax(counts < 0))
        raise ValueError(
            f"firing_counts: {_feature_label(ids, f, base)} has a negative count {int(counts[f])}"
        )
    if (sizes > counts).any():
        f = int(np.argmax(sizes > counts))
        raise ValueError(
            f"firing_counts: {_feature_label(ids, f, base)} has {int(sizes[f])} sampled points "
            f"but fired only {int(counts[f])} times (m_f must be <= firing_counts[f])"
        )
    if ((sizes == 0) & (counts > 0)).any():
        f = int(np.argmax((sizes == 0) & (counts > 0)))
        raise ValueError(
            f"offsets: {_feature_label(ids, f, base)} fired {int(counts[f])} times "
            "(firing_counts) but has no sampled point; a feature that fired needs m_f >= 1"
        )
    if n_tokens is not None and (counts > n_tokens).any():
        f = int(np.argmax(counts > n_tokens))
        raise ValueError(
            f"firing_counts: {_feature_label(ids, f, base)} fired {int(counts[f])} times, more "
            f"than metadata['n_tokens'] = {n_tokens}"
        )
    sums = arrs["activation_sums"]
    if not np.isfinite(sums).all():
        f = int(np.argmax(~np.isfinite(sums)))
        raise ValueError(
            f"activation_sums: {_feature_label(ids, f, base)} has a non-finite sum {sums[f]}"
        )


def _first_bad_row(points: Array) -> int:
    """Index of the first row of ``points`` with a non-finite value, or -1 (chunked scan)."""
    step = max(1, _SCAN_ELEMENTS // max(1, points.shape[1]))
    for lo in range(0, points.shape[0], step):
        bad = ~np.isfinite(points[lo : lo + step]).all(axis=1)
        if bad.any():
            return lo + int(np.argmax(bad))
    return -1


def _check_values(arrs: Mapping[str, Array], base: int = 0) -> None:
    """Per-point checks (reads every point); ValueError naming the feature."""
    offs, ids = arrs["offsets"], arrs["feature_ids"]

    def where(row: int) -> str:
        f = int(np.searchsorted(offs, row, side="right") - 1)
        return f"{_feature_label(ids, f, base)}, point {row - int(offs[f])}"

    row = _first_bad_row(arrs["points"])
    if row >= 0:
        raise ValueError(f"points: {where(row)} has a non-finite coordinate")
    w = arrs["weights"]
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        row = int(np.argmax(bad))
        what = "negative" if np.isfinite(w[row]) else "not finite"
        raise ValueError(f"weights: {where(row)} has a weight that is {what} ({w[row]})")
    sizes = np.diff(offs)
    if w.shape[0]:
        nonempty = np.flatnonzero(sizes > 0)
        sums = np.add.reduceat(w.astype(np.float64), offs[nonempty])
        off = np.abs(sums - 1.0) > WEIGHT_SUM_TOL
        if off.any():
            k = int(np.argmax(off))
            raise ValueError(
                f"weights: {_feature_label(ids, int(nonempty[k]), base)} has weights summing "
                f"to {sums[k]:.6g}; each feature's weights must sum to 1"
            )
    act = arrs["activations"]
    if not np.isfinite(act).all():
        row = int(np.argmax(~np.isfinite(act)))
        raise ValueError(f"activations: {where(row)} is not finite ({act[row]})")
    keys = arrs["keys"]
    if np.isnan(keys).any():
        row = int(np.argmax(np.isnan(keys)))
        raise ValueError(f"keys: {where(row)} is NaN")
    for name in ("seq", "pos"):
        arr = arrs[name]
        if (arr < 0).any():
            row = int(np.argmax(arr < 0))
            raise ValueError(f"{name}: {where(row)} is negative ({int(arr[row])})")


def _check_unique_ids(ids: Array) -> None:
    if ids.shape[0] < 2:
        return
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        a, b = int(order[dup[0]]), int(order[dup[0] + 1])
        raise ValueError(
            f"feature_ids: id {int(ids[a])} appears twice, at features {a} and {b}; "
            "feature ids must be unique"
        )


def _convert(name: str, value: Any) -> Array:
    """``value`` as a read-only C-contiguous array of the dtype stored for ``name``."""
    arr = np.asarray(value)
    target = _DTYPES[name]
    kind = arr.dtype.kind
    if target.kind == "f":
        if kind not in "biuf":
            raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    elif kind not in "iu" and not (arr.size == 0 and kind in "bf"):
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: values too large for int64")
    return _readonly(arr.astype(target, order="C", copy=False))


def _json_default(value: Any) -> Any:
    """Turn numpy scalars and arrays in metadata into plain Python values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _normalise_metadata(metadata: Any, error: type[Exception] = ValueError) -> dict[str, Any]:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    bad = [k for k in metadata if not isinstance(k, str)]
    if bad:
        raise TypeError(f"metadata: keys must be strings, got {bad[0]!r}")
    try:
        text = json.dumps(dict(metadata), allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as e:
        raise error(f"metadata: must be JSON-serialisable (no NaN or infinity): {e}") from None
    out: dict[str, Any] = json.loads(text)
    n_tokens = out.get("n_tokens")
    if n_tokens is not None and (
        isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 0
    ):
        raise error(f"metadata['n_tokens']: must be a non-negative integer, got {n_tokens!r}")
    return out


def _check_reference(reference: Any) -> dict[str, Array] | None:
    if reference is None:
        return None
    if not isinstance(reference, Mapping):
        raise TypeError(
            f"reference_arrays: expected a mapping of str to arrays, got {type(reference).__name__}"
        )
    out: dict[str, Array] = {}
    for key, value in reference.items():
        if not isinstance(key, str):
            raise TypeError(f"reference_arrays: names must be strings, got {key!r}")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf" or arr.dtype.itemsize > 8:
            raise TypeError(f"reference_arrays[{key!r}]: dtype {arr.dtype} cannot be stored")
        out[key] = _readonly(arr)
    return out


def _position(index: Any, n: int) -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"feature position must be an int, got {type(index).__name__}")
    i = int(index)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"feature position {index} out of range for {n} features")
    return i


def _fmt(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quantiles(values: Array, fmt: str) -> str:
    if values.size == 0:
        return "n/a"
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return "min {} | q25 {} | median {} | q75 {} | max {}".format(*(format(x, fmt) for x in q))


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


class FeatureDistributions:
    r"""Per-feature weighted samples of hidden states, stored CSR-style, optionally on disk.

    For each of ``F`` features ``f`` (in the order of :attr:`feature_ids`) it holds ``m_f``
    sampled token positions where the feature fired (``m_f = 0`` if it never fired):

    - ``points`` ``(m_f, dim)`` float32: the hidden states (support points of the cloud);
    - ``weights`` ``(m_f,)`` float32, summing to 1: uniform in sampling mode ``"weighted"``,
      proportional to the activation in mode ``"top"``;
    - ``activations`` ``(m_f,)`` float32: the feature's activation at each point;
    - ``keys`` ``(m_f,)`` float64: the sampling keys (smaller is kept first), kept so that
      runs can be merged later;
    - ``seq``, ``pos`` ``(m_f,)`` int64: provenance, the sequence index in the token stream
      and the position in that sequence;

    and per feature ``feature_ids`` (int64, unique), ``firing_counts`` (int64, number of token
    positions it fired on over the whole stream) and ``activation_sums`` (float64, sum of its
    activations over the stream), plus a free JSON ``metadata`` dict and optional opaque
    ``reference_arrays``.

    Build one with :meth:`from_arrays`, :meth:`load`, :meth:`select`, indexing or
    :meth:`concatenate`; arrays handed out are read-only (memory-mapped after :meth:`load`).

    Examples
    --------
    >>> import numpy as np, semot
    >>> from semot.features.container import FeatureDistributions
    >>> fd = FeatureDistributions.from_arrays(
    ...     points=np.arange(6, dtype=np.float32).reshape(3, 2), weights=[0.5, 0.5, 1.0],
    ...     activations=[1.0, 2.0, 3.0], keys=[0.1, 0.2, 0.3], seq=[0, 0, 1], pos=[1, 4, 2],
    ...     offsets=[0, 2, 2, 3], feature_ids=[10, 11, 12], firing_counts=[5, 0, 1],
    ...     activation_sums=[7.5, 0.0, 3.0], metadata={"n_tokens": 100})
    >>> len(fd), fd.dim, fd.sample_sizes.tolist(), fd.fired_ids.tolist()
    (3, 2, [2, 0, 1], [10, 12])
    >>> fd.densities.tolist()
    [0.05, 0.0, 0.01]
    """

    _blocks: list[_Block]
    _starts: npt.NDArray[np.int64]
    _dim: int
    _metadata: dict[str, Any]
    _reference: dict[str, Array] | None
    _source: Path | None
    _manifest: dict[str, Any] | None
    _cache: dict[str, Any]

    def __init__(self) -> None:
        raise TypeError(
            "use FeatureDistributions.from_arrays(...) or FeatureDistributions.load(path)"
        )

    @classmethod
    def _make(
        cls,
        blocks: list[_Block],
        dim: int,
        metadata: dict[str, Any],
        reference: dict[str, Array] | None,
        source: Path | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> FeatureDistributions:
        obj = cls.__new__(cls)
        obj._blocks = [b for b in blocks if b.n_features > 0]
        sizes = [b.n_features for b in obj._blocks]
        obj._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        obj._dim = dim
        obj._metadata = metadata
        obj._reference = reference
        obj._source = source
        obj._manifest = manifest
        obj._cache = {}
        return obj

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_arrays(
        cls,
        *,
        points: npt.ArrayLike,
        weights: npt.ArrayLike,
        activations: npt.ArrayLike,
        keys: npt.ArrayLike,
        seq: npt.ArrayLike,
        pos: npt.ArrayLike,
        offsets: npt.ArrayLike,
        feature_ids: npt.ArrayLike,
        firing_counts: npt.ArrayLike,
        activation_sums: npt.ArrayLike,
        metadata: Mapping[str, Any],
        reference_arrays: Mapping[str, npt.ArrayLike] | None = None,
    ) -> FeatureDistributions:
        """Build an in-memory object from CSR arrays, validating everything.

        Feature ``f`` owns rows ``offsets[f]:offsets[f+1]`` of every per-point array.

        Parameters
        ----------
        points : array_like, shape (T, dim)
            Sampled hidden states, all features one after another; stored as float32.
        weights : array_like, shape (T,)
            Non-negative, finite; each feature's weights sum to 1 (within 1e-3). float32.
        activations : array_like, shape (T,)
            Finite activation of the feature at each point. float32.
        keys : array_like, shape (T,)
            Sampling keys (not NaN). float64.
        seq, pos : array_like of int, shape (T,)
            Non-negative sequence index and position in the sequence of each point. int64.
        offsets : array_like of int, shape (F + 1,)
            Starts at 0, non-decreasing, ends at ``T``.
        feature_ids : array_like of int, shape (F,)
            Unique feature ids. int64.
        firing_counts : array_like of int, shape (F,)
            Non-negative, ``>= m_f = offsets[f+1] - offsets[f]``, zero exactly when
            ``m_f = 0`` (a feature that fired has a sample), and ``<= n_tokens`` when
            ``metadata["n_tokens"]`` is given. int64.
        activation_sums : array_like, shape (F,)
            Finite. float64.
        metadata : dict
            Free JSON-serialisable dict (no NaN; numpy scalars and arrays become numbers and
            lists); ``"n_tokens"``, if present, is the number of token positions in the
            stream (a non-negative int). Stored as its JSON copy.
        reference_arrays : mapping of str to array_like, optional
            Arrays describing the reference map, kept as given and saved to
            ``reference.safetensors``.

        Returns
        -------
        FeatureDistributions
            The arrays are converted to the dtypes above (not copied when they already have
            them) and exposed read-only; do not modify the inputs afterwards.

        Raises
        ------
        ValueError
            For a wrong shape, bad offsets, duplicate feature ids, ``m_f > firing_counts[f]``,
            non-finite points, negative weights, weights not summing to 1, and so on; the
            message names the argument and the feature (position and id).
        TypeError
            For arrays of the wrong kind (strings, complex, floats where ints are needed) or
            metadata that is not a dict with string keys.
        """
        given = {
            "points": points,
            "weights": weights,
            "activations": activations,
            "keys": keys,
            "seq": seq,
            "pos": pos,
            "offsets": offsets,
            "feature_ids": feature_ids,
            "firing_counts": firing_counts,
            "activation_sums": activation_sums,
        }
        arrs = {name: _convert(name, value) for name, value in given.items()}
        meta = _normalise_metadata(metadata)
        _check_structure(arrs, n_tokens=meta.get("n_tokens"))
        _check_unique_ids(arrs["feature_ids"])
        _check_values(arrs)
        ref = _check_reference(reference_arrays)
        dim = int(arrs["points"].shape[1])
        return cls._make([_Block(arrs, None, True)], dim, meta, ref)

    # ------------------------------------------------------------------ storage

    def save(
        self, path: str | os.PathLike[str], *, shard_size: int = 4096, overwrite: bool = False
    ) -> None:
        """Save to the directory ``path``.

        Writes ``shard-00000.safetensors``, ... (each holding ``shard_size`` consecutive
        features in CSR layout, the last one fewer), ``reference.safetensors`` if there are
        reference arrays, and ``manifest.json`` last. Every file is written to a temporary name,
        fsynced and renamed, so a write that is killed midway leaves no manifest and the
        directory does not load.

        Parameters
        ----------
        path : str or path-like
            Directory; created (with parents) if missing.
        shard_size : int, default 4096
            Features per shard file.
        overwrite : bool, default False
            Allow writing into a non-empty directory. Its old ``manifest.json`` is removed
            first; old shard and reference files that the new save does not rewrite, and
            temporary files of interrupted saves, are removed after the new manifest is in
            place; other files are left alone.

        Raises
        ------
        FileExistsError
            If ``path`` is a non-empty directory and ``overwrite`` is false, or is a file.
        """
        if isinstance(shard_size, bool) or not isinstance(shard_size, numbers.Integral):
            raise TypeError(f"shard_size: expected an int, got {type(shard_size).__name__}")
        if shard_size < 1:
            raise ValueError(f"shard_size: must be >= 1, got {shard_size}")
        shard_size = int(shard_size)
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise FileExistsError(f"{root} exists and is not a directory")
        root.mkdir(parents=True, exist_ok=True)
        existing = sorted(p.name for p in root.iterdir())
        if existing and not overwrite:
            raise FileExistsError(
                f"{root} is not empty ({len(existing)} entries); pass overwrite=True to replace "
                "a saved FeatureDistributions there"
            )
        manifest_path = root / MANIFEST
        if manifest_path.exists():
            manifest_path.unlink()
            fsync_directory(root)
        n = len(self)
        shards: list[dict[str, Any]] = []
        for k, start in enumerate(range(0, n, shard_size)):
            stop = min(n, start + shard_size)
            block = self._range_block(start, stop)
            name = f"shard-{k:05d}.safetensors"
            n_bytes, sha = write_safetensors(
                root / name,
                {field: block[field] for field in _FIELDS},
                {"format": f"{FORMAT}.shard", "features": f"{start}:{stop}"},
            )
            shards.append(
                {
                    "file": name,
                    "features": [start, stop],
                    "n_points": int(block["points"].shape[0]),
                    "bytes": n_bytes,
                    "sha256": sha,
                }
            )
        reference = self._reference
        if reference is not None:
            write_safetensors(root / REFERENCE, reference, {"format": f"{FORMAT}.reference"})
        from semot._core import __version__

        manifest = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "semot_version": __version__,
            "n_features": n,
            "dim": self._dim,
            "n_points": self.n_points,
            "shards": shards,
            "reference_file": REFERENCE if reference is not None else None,
            "metadata": self._metadata,
        }
        atomic_write(manifest_path, [json.dumps(manifest, indent=1).encode("utf-8") + b"\n"])
        keep = {s["file"] for s in shards} | {MANIFEST}
        if reference is not None:
            keep.add(REFERENCE)
        removed = False
        for entry in existing:
            if _OWNED_RE.fullmatch(entry) and entry not in keep:
                (root / entry).unlink(missing_ok=True)
                removed = True
        if removed:
            fsync_directory(root)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> FeatureDistributions:
        """Load a directory written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            The directory.
        mmap : bool, default True
            Memory-map the shards (nothing is read until touched; arrays are read-only
            :class:`numpy.memmap` views). If false, the shards are read into memory.

        Returns
        -------
        FeatureDistributions
            Per-point values are validated lazily: by :meth:`to_clouds` for what it exports
            and by :meth:`verify` for everything.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        CorruptFileError
            Naming the file: no ``manifest.json`` (not a saved object, or a write that did not
            finish), a manifest that is not JSON, has missing or unknown keys, another
            ``schema_version`` or inconsistent shard ranges; a shard that is missing, has
            another byte size than the manifest says, is not valid safetensors or whose
            contents disagree with the manifest (feature count, dim, points) or are
            inconsistent (offsets, counts, duplicate feature ids).
        """
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such directory")
        if not root.is_dir():
            raise NotADirectoryError(f"{root}: is not a directory")
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            leftovers = [p.name for p in root.iterdir() if _SHARD_RE.fullmatch(p.name)]
            hint = (
                f"; it holds {len(leftovers)} shard file(s) without a manifest, the trace of "
                "a save that did not finish: save again with overwrite=True"
                if leftovers
                else ""
            )
            raise CorruptFileError(
                f"{manifest_path}: missing, so {root} is not a saved FeatureDistributions{hint}"
            )
        manifest = _read_manifest(manifest_path)
        blocks: list[_Block] = []
        for shard in manifest["shards"]:
            blocks.append(
                _load_shard(
                    root, shard, manifest["dim"], mmap, manifest["metadata"].get("n_tokens")
                )
            )
        ids = (
            np.concatenate([b["feature_ids"] for b in blocks]) if blocks else np.zeros(0, np.int64)
        )
        try:
            _check_unique_ids(ids)
        except ValueError as e:
            raise CorruptFileError(f"{manifest_path}: shards hold inconsistent data: {e}") from None
        reference = None
        if manifest["reference_file"] is not None:
            ref_path = root / manifest["reference_file"]
            if not ref_path.is_file():
                raise CorruptFileError(f"{ref_path}: listed in {manifest_path} but missing")
            reference, _ = read_safetensors(ref_path, mmap=mmap)
            reference = {k: _readonly(v) for k, v in reference.items()}
        return cls._make(
            blocks, manifest["dim"], manifest["metadata"], reference, root.resolve(), manifest
        )

    def verify(self) -> None:
        """Check the data fully; raise :class:`CorruptFileError` on any problem.

        For an object from :meth:`load`, recompute the SHA-256 of every shard file and compare
        it (and the size) with the manifest. Then, for every feature, check the per-point values
        that :meth:`load` leaves unread (finite points, activations, non-negative weights
        summing to 1, keys not NaN, non-negative ``seq``/``pos``).

        Raises
        ------
        CorruptFileError
            Naming the file (when there is one) and what is wrong.
        """
        if self._source is not None and self._manifest is not None:
            for shard in self._manifest["shards"]:
                file = self._source / shard["file"]
                if not file.is_file():
                    raise CorruptFileError(f"{file}: shard listed in the manifest is missing")
                size = file.stat().st_size
                if size != shard["bytes"]:
                    raise CorruptFileError(
                        f"{file}: {size} bytes, but the manifest says {shard['bytes']}"
                    )
                sha = file_sha256(file)
                if sha != shard["sha256"]:
                    raise CorruptFileError(
                        f"{file}: SHA-256 {sha} differs from the manifest's {shard['sha256']}: "
                        "the file was modified or damaged"
                    )
        for k, block in enumerate(self._blocks):
            try:
                _check_values(block.arrays, int(self._starts[k]))
            except ValueError as e:
                where = str(block.source) if block.source is not None else "in-memory data"
                raise CorruptFileError(f"{where}: {e}") from None
            block.checked = True

    # ------------------------------------------------------------------ properties

    def _feature_array(self, name: str) -> Array:
        if len(self._blocks) == 1:
            return self._blocks[0][name]
        if name not in self._cache:
            parts = [b[name] for b in self._blocks]
            arr = np.concatenate(parts) if parts else np.zeros(0, dtype=_DTYPES[name])
            self._cache[name] = _readonly(arr)
        out: Array = self._cache[name]
        return out

    @property
    def metadata(self) -> dict[str, Any]:
        """The free JSON metadata dict given at construction (a copy)."""
        return copy.deepcopy(self._metadata)

    @property
    def feature_ids(self) -> npt.NDArray[np.int64]:
        """Feature ids, int64 ``(F,)``, in storage order (unique)."""
        return self._feature_array("feature_ids")

    @property
    def n_features(self) -> int:
        """Number of features ``F`` (fired or not)."""
        return int(self._starts[-1])

    def __len__(self) -> int:
        return self.n_features

    @property
    def dim(self) -> int:
        """Dimension of the hidden states (columns of ``points``)."""
        return self._dim

    @property
    def n_points(self) -> int:
        """Total number of sampled points over all features."""
        return sum(int(b["offsets"][-1]) for b in self._blocks)

    @property
    def sample_sizes(self) -> npt.NDArray[np.int64]:
        """Sample size ``m_f`` of each feature, int64 ``(F,)`` (0 if it never fired)."""
        if "sample_sizes" not in self._cache:
            parts = [np.diff(b["offsets"]) for b in self._blocks]
            arr = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            self._cache["sample_sizes"] = _readonly(arr.astype(np.int64, copy=False))
        out: npt.NDArray[np.int64] = self._cache["sample_sizes"]
        return out

    @property
    def firing_counts(self) -> npt.NDArray[np.int64]:
        """Token positions each feature fired on over the whole stream, int64 ``(F,)``."""
        return self._feature_array("firing_counts")

    @property
    def activation_sums(self) -> npt.NDArray[np.float64]:
        """Sum of each feature's activations over the whole stream, float64 ``(F,)``."""
        return self._feature_array("activation_sums")

    @property
    def n_tokens(self) -> int | None:
        """Token positions in the stream (``metadata["n_tokens"]``), or None if not recorded."""
        value = self._metadata.get("n_tokens")
        return None if value is None else int(value)

    @property
    def densities(self) -> npt.NDArray[np.float64]:
        """Firing density ``firing_counts / n_tokens`` of each feature, float64 ``(F,)``.

        Raises
        ------
        ValueError
            If ``n_tokens`` is unknown (not in the metadata) or zero.
        """
        n_tokens = self.n_tokens
        if n_tokens is None:
            raise ValueError("densities: unknown, the metadata has no 'n_tokens'")
        if n_tokens == 0:
            raise ValueError("densities: undefined, metadata['n_tokens'] is 0")
        return self.firing_counts.astype(np.float64) / float(n_tokens)

    @property
    def fired(self) -> npt.NDArray[np.bool_]:
        """Boolean mask ``(F,)``: the feature fired at least once (``firing_counts > 0``)."""
        return self.firing_counts > 0

    @property
    def fired_ids(self) -> npt.NDArray[np.int64]:
        """Ids of the fired features (non-empty samples): the clouds of :meth:`to_clouds`."""
        return self.feature_ids[self.fired]

    @property
    def reference_arrays(self) -> dict[str, Array] | None:
        """The reference-map arrays given at construction (read-only, lazy after load), or None."""
        return None if self._reference is None else dict(self._reference)

    # ------------------------------------------------------------------ per feature

    def _locate(self, index: Any) -> tuple[_Block, int, int]:
        i = _position(index, len(self))
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        block = self._blocks[k]
        local = i - int(self._starts[k])
        offs = block["offsets"]
        return block, int(offs[local]), int(offs[local + 1])

    def cloud(self, i: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Return the points ``(m_f, dim)`` and weights ``(m_f,)`` of the feature at position ``i``.

        Both are read-only float32 views (empty if the feature never fired).
        """
        block, lo, hi = self._locate(i)
        return block["points"][lo:hi], block["weights"][lo:hi]

    def activations(self, i: int) -> npt.NDArray[np.float32]:
        """Return the activations ``(m_f,)`` float32 of feature ``i`` at its sampled points."""
        block, lo, hi = self._locate(i)
        return block["activations"][lo:hi]

    def keys(self, i: int) -> npt.NDArray[np.float64]:
        """Return the sampling keys ``(m_f,)`` float64 of feature ``i`` (smaller kept first)."""
        block, lo, hi = self._locate(i)
        return block["keys"][lo:hi]

    def provenance(self, i: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Return sequence indices and positions ``(m_f,)`` int64 of feature ``i``'s points."""
        block, lo, hi = self._locate(i)
        return block["seq"][lo:hi], block["pos"][lo:hi]

    def _id_index(self) -> tuple[Array, Array]:
        if "id_index" not in self._cache:
            ids = self.feature_ids
            order = np.argsort(ids, kind="stable")
            self._cache["id_index"] = (ids[order], order)
        out: tuple[Array, Array] = self._cache["id_index"]
        return out

    def _positions_of(self, feature_ids: Any) -> npt.NDArray[np.int64]:
        ids = np.atleast_1d(np.asarray(feature_ids))
        if ids.ndim != 1:
            raise ValueError(f"feature_ids: expected a 1-D sequence of ids, got shape {ids.shape}")
        if ids.size == 0:
            return np.zeros(0, np.int64)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"feature_ids: expected integer ids, got dtype {ids.dtype}")
        sorted_ids, order = self._id_index()
        where = np.searchsorted(sorted_ids, ids)
        where_c = np.minimum(where, max(0, sorted_ids.shape[0] - 1))
        found = (where < sorted_ids.shape[0]) & (sorted_ids[where_c] == ids)
        if not found.all():
            missing = ids[np.argmin(found)]
            raise KeyError(f"feature id {int(missing)} is not in this FeatureDistributions")
        out: npt.NDArray[np.int64] = order[where_c].astype(np.int64)
        return out

    def index_of(self, feature_id: int) -> int:
        """Return the position of the feature with id ``feature_id``.

        Raises
        ------
        KeyError
            If no feature has that id (the message names it).
        """
        if isinstance(feature_id, bool) or not isinstance(feature_id, numbers.Integral):
            raise TypeError(f"feature_id: expected an int, got {type(feature_id).__name__}")
        return int(self._positions_of([int(feature_id)])[0])

    # ------------------------------------------------------------------ subsets

    def _take(self, positions: npt.NDArray[np.int64]) -> FeatureDistributions:
        n = len(positions)
        if n > 1:
            order = np.argsort(positions, kind="stable")
            dup = np.flatnonzero(positions[order][1:] == positions[order][:-1])
            if dup.size:
                p = int(positions[order[dup[0]]])
                raise ValueError(
                    f"feature {p} (id {int(self.feature_ids[p])}) is selected twice; "
                    "feature ids must stay unique"
                )
        blocks: list[_Block] = []
        if n:
            bi = np.searchsorted(self._starts, positions, side="right") - 1
            breaks = np.flatnonzero((np.diff(positions) != 1) | (np.diff(bi) != 0)) + 1
            if breaks.size < _MAX_VIEW_PIECES:
                for lo, hi in zip([0, *breaks.tolist()], [*breaks.tolist(), n], strict=True):
                    k = int(bi[lo])
                    a = int(positions[lo] - self._starts[k])
                    blocks.append(self._blocks[k].slice(a, a + hi - lo))
            else:
                blocks.append(_gather(self._blocks, self._starts, positions, self._dim))
        return FeatureDistributions._make(
            blocks, self._dim, copy.deepcopy(self._metadata), self._reference
        )

    def select(self, feature_ids: npt.ArrayLike) -> FeatureDistributions:
        """Return the features with ids ``feature_ids``, in that order.

        Contiguous runs of features are kept as views (memory-mapped data stays on disk); a
        scattered selection is copied.

        Raises
        ------
        KeyError
            Naming the first id that is not present.
        ValueError
            If an id is given twice.
        """
        return self._take(self._positions_of(feature_ids))

    def __getitem__(self, index: int | slice | npt.ArrayLike) -> FeatureDistributions:
        """Select features by position: an int (one feature), a slice, int positions or a mask.

        Always returns a :class:`FeatureDistributions` (use :meth:`cloud` for one feature's
        arrays). Negative positions count from the end.
        """
        n = len(self)
        if isinstance(index, (numbers.Integral, np.integer)) and not isinstance(index, bool):
            return self._take(np.array([_position(index, n)], dtype=np.int64))
        if isinstance(index, slice):
            return self._take(np.arange(n, dtype=np.int64)[index])
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask must have shape ({n},), got {idx.shape}")
            return self._take(np.flatnonzero(idx).astype(np.int64))
        if idx.size == 0:
            return self._take(np.zeros(0, np.int64))
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(
                f"index: expected an int, a slice, a 1-D int array or a boolean mask, got "
                f"{type(index).__name__} of dtype {idx.dtype} and shape {idx.shape}"
            )
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            k = int(np.argmax(bad))
            raise IndexError(f"index[{k}] = {int(idx[k])} out of range for {n} features")
        return self._take(np.where(idx < 0, idx + n, idx).astype(np.int64))

    @classmethod
    def concatenate(cls, runs: Sequence[FeatureDistributions]) -> FeatureDistributions:
        """Put the features of several runs one after another (no data is copied).

        Parameters
        ----------
        runs : sequence of FeatureDistributions
            Non-empty; same ``dim``; pairwise disjoint feature ids; equal ``metadata["sampling"]``,
            ``metadata["reference"]`` and ``metadata["n_tokens"]`` wherever one run has them.

        Returns
        -------
        FeatureDistributions
            Metadata of the first run plus ``"concatenated_from"``: one entry per run,
            ``{"source": directory or None, "n_features": F, "metadata": its metadata}``.
            Reference arrays of the first run.

        Raises
        ------
        ValueError
            Saying which run differs and in what.
        """
        runs = list(runs)
        if not runs:
            raise ValueError("runs: need at least one FeatureDistributions")
        for k, run in enumerate(runs):
            if not isinstance(run, FeatureDistributions):
                raise TypeError(f"runs[{k}]: expected FeatureDistributions, got {type(run)}")
        first = runs[0]
        for k, run in enumerate(runs[1:], start=1):
            if run.dim != first.dim:
                raise ValueError(f"runs[{k}]: dim {run.dim} differs from runs[0]'s {first.dim}")
            for key in ("sampling", "reference", "n_tokens"):
                if key not in first._metadata and key not in run._metadata:
                    continue
                a, b = first._metadata.get(key), run._metadata.get(key)
                if a != b:
                    raise ValueError(
                        f"runs[{k}]: metadata[{key!r}] = {_fmt(b)} differs from runs[0]'s "
                        f"{_fmt(a)}; only runs with equal {key!r} can be concatenated"
                    )
        ids = np.concatenate([r.feature_ids for r in runs])
        owner = np.repeat(np.arange(len(runs)), [len(r) for r in runs])
        order = np.argsort(ids, kind="stable")
        dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
        if dup.size:
            a, b = int(order[dup[0]]), int(order[dup[0] + 1])
            raise ValueError(
                f"feature id {int(ids[a])} is in runs[{int(owner[a])}] and runs[{int(owner[b])}]; "
                "concatenated runs must have disjoint feature ids"
            )
        meta = copy.deepcopy(first._metadata)
        meta["concatenated_from"] = [
            {
                "source": None if r._source is None else str(r._source),
                "n_features": len(r),
                "metadata": copy.deepcopy(r._metadata),
            }
            for r in runs
        ]
        blocks = [b for r in runs for b in r._blocks]
        return cls._make(blocks, first.dim, meta, first._reference)

    # ------------------------------------------------------------------ export

    def _range_block(self, start: int, stop: int) -> _Block:
        """Features ``start:stop`` as one block: views if they live in one block, else a copy."""
        if stop <= start:
            arrays = {
                name: np.zeros((0, self._dim) if name == "points" else (0,), _DTYPES[name])
                for name in _FIELDS
            }
            arrays["offsets"] = np.zeros(1, np.int64)
            return _Block(arrays, None, True)
        k = int(np.searchsorted(self._starts, start, side="right") - 1)
        if stop <= self._starts[k + 1]:
            base = int(self._starts[k])
            return self._blocks[k].slice(start - base, stop - base)
        positions = np.arange(start, stop, dtype=np.int64)
        return _gather(self._blocks, self._starts, positions, self._dim)

    def to_clouds(self, *, include_unfired: bool = False) -> PointClouds:
        """Return the fired features as :class:`~semot.PointClouds`, in :attr:`fired_ids` order.

        Features with an empty sample (never fired) are left out with a ``UserWarning``, since
        a :class:`~semot.PointClouds` cannot hold an empty cloud. When the kept features are
        one contiguous run of one shard (or of the in-memory arrays), the points and weights
        are the stored arrays themselves (zero-copy, memory-mapped after :meth:`load`);
        otherwise they are copied. Data that has not been validated yet (after :meth:`load`) is
        checked first (finite points, non-negative weights with a positive sum).

        Parameters
        ----------
        include_unfired : bool, default False
            Ask for every feature; raises if some feature has an empty sample.

        Raises
        ------
        ValueError
            If no feature fired, or ``include_unfired`` is true and some feature did not.
        CorruptFileError
            If loaded data is invalid (names the file and the feature).
        """
        sizes = self.sample_sizes
        keep = np.flatnonzero(sizes > 0).astype(np.int64)
        n, n_empty = len(self), len(self) - keep.shape[0]
        if n_empty and include_unfired:
            raise ValueError(
                f"include_unfired=True is impossible: {n_empty} of {n} features have an empty "
                "sample (they never fired) and a PointClouds cannot hold an empty cloud; use "
                "include_unfired=False and fd.fired_ids for the ids of the clouds"
            )
        if keep.shape[0] == 0:
            raise ValueError(f"none of the {n} features fired: there is no cloud to export")
        if n_empty:
            warnings.warn(
                f"{n_empty} of {n} features never fired (empty samples) and are left out of "
                f"the PointClouds; fd.fired_ids lists the ids of the {keep.shape[0]} clouds kept, "
                "in order",
                UserWarning,
                stacklevel=2,
            )
        bi = np.searchsorted(self._starts, keep, side="right") - 1
        one_run = bi[0] == bi[-1] and int(keep[-1] - keep[0]) == keep.shape[0] - 1
        if one_run:
            k = int(bi[0])
            a = int(keep[0] - self._starts[k])
            block = self._blocks[k].slice(a, a + keep.shape[0])
        else:
            block = _gather(
                self._blocks, self._starts, keep, self._dim, ("points", "weights", "feature_ids")
            )
        points = np.require(block["points"], np.float32, ["C", "A"])
        weights = np.require(block["weights"], np.float32, ["C", "A"])
        offsets = np.require(block["offsets"], np.int64, ["C", "A"])
        if not block.checked:
            self._check_export(block, points, weights, offsets)
        return PointClouds.from_csr_unchecked(points, weights, offsets)

    @staticmethod
    def _check_export(
        block: _Block, points: Array, weights: Array, offsets: npt.NDArray[np.int64]
    ) -> None:
        ids = block["feature_ids"]
        where = f"{block.source}: " if block.source is not None else ""

        def at(row: int) -> str:
            c = int(np.searchsorted(offsets, row, side="right") - 1)
            return f"feature id {int(ids[c])}, point {row - int(offsets[c])}"

        row = _first_bad_row(points)
        if row >= 0:
            raise CorruptFileError(f"{where}points: {at(row)} has a non-finite coordinate")
        bad = ~np.isfinite(weights) | (weights < 0)
        if bad.any():
            row = int(np.argmax(bad))
            raise CorruptFileError(f"{where}weights: {at(row)} is {weights[row]}")
        sums = np.add.reduceat(weights.astype(np.float64), offsets[:-1])
        if not (sums > 0).all():
            c = int(np.argmin(sums > 0))
            raise CorruptFileError(
                f"{where}weights: feature id {int(ids[c])} has weights summing to {sums[c]}"
            )

    # ------------------------------------------------------------------ display

    def disk_bytes(self) -> int | None:
        """Return the bytes on disk of the directory this was loaded from (all its files).

        None for an object that was not loaded (or was derived by selection).
        """
        if self._source is None or self._manifest is None:
            return None
        total = sum(int(s["bytes"]) for s in self._manifest["shards"])
        for name in (MANIFEST, self._manifest["reference_file"]):
            if name is not None and (self._source / name).is_file():
                total += (self._source / name).stat().st_size
        return total

    def summary(self) -> str:
        """Return a human-readable multi-line summary (what ``semot info DIR`` prints).

        Reads the metadata keys ``model`` (or ``model_name``), ``hook`` (or ``hook_name``),
        ``sae`` (or ``sae_release`` / ``sae_id``), ``n_tokens``, ``sampling`` (a dict with
        ``mode`` and ``n``, or any value) and ``reference``; missing keys print as ``?``.
        """
        md = self._metadata

        def pick(*names: str) -> str:
            values = [_fmt(md[k]) for k in names if md.get(k) is not None]
            return " / ".join(values) if values else "?"

        n, n_fired = len(self), int(self.fired.sum())
        n_tokens = self.n_tokens
        sampling = md.get("sampling")
        if isinstance(sampling, Mapping):
            extra = {k: v for k, v in sampling.items() if k not in ("mode", "n")}
            sampling_text = f"mode {sampling.get('mode', '?')}, n = {sampling.get('n', '?')}"
            if extra:
                sampling_text += f" ({_fmt(extra, 60)})"
        else:
            sampling_text = "?" if sampling is None else _fmt(sampling)
        reference_text = "?" if md.get("reference") is None else _fmt(md["reference"])
        if self._reference is not None:
            names = ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(self._reference.items()))
            reference_text += f"; arrays: {_fmt(names, 80) if names else 'none'}"
        pct = f" ({100.0 * n_fired / n:.1f} %)" if n else ""
        if n_tokens is not None and n_tokens > 0:
            dens = self.densities[self.fired]
            density_text = _quantiles(dens, ".3g") + " (fired features)"
        else:
            density_text = "unknown (no n_tokens)" if n_tokens is None else "n/a"
        disk = self.disk_bytes()
        lines = [
            "semot FeatureDistributions"
            + (f" at {self._source}" if self._source is not None else " (in memory)"),
            f"  model:        {pick('model', 'model_name')}",
            f"  hook:         {pick('hook', 'hook_name')}",
            f"  SAE:          {pick('sae', 'sae_release', 'sae_id')}",
            f"  features:     {n:,}, fired: {n_fired:,}{pct}",
            f"  tokens:       {'?' if n_tokens is None else f'{n_tokens:,}'}",
            f"  sampling:     {sampling_text}",
            f"  reference:    {reference_text}",
            f"  dim:          {self.dim}",
            f"  points:       {self.n_points:,}",
            f"  sample sizes: {_quantiles(self.sample_sizes, '.0f')}",
            f"  densities:    {density_text}",
        ]
        if disk is not None and self._manifest is not None:
            n_files = len(self._manifest["shards"]) + 1 + (self._reference is not None)
            lines.append(f"  disk:         {_human_bytes(disk)} in {n_files} files")
        return "\n".join(lines)

    def __repr__(self) -> str:
        where = f", path='{self._source}'" if self._source is not None else ""
        return (
            f"FeatureDistributions(n_features={len(self)}, fired={int(self.fired.sum())}, "
            f"dim={self.dim}, n_points={self.n_points}{where})"
        )


# ---------------------------------------------------------------------- loading helpers


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _plain_name(x: Any) -> bool:
    return isinstance(x, str) and x not in ("", ".", "..") and "/" not in x and "\\" not in x


def _read_manifest(path: Path) -> dict[str, Any]:
    """Parse and validate ``manifest.json``; CorruptFileError naming it on any problem."""

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{path}: {what}")

    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise bad(f"expected a JSON object, got a {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise bad(f"'format' is {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        writer = manifest.get("semot_version", "an unknown version")
        raise bad(
            f"schema_version {version!r} (written by semot {writer}) is not supported: this "
            f"semot reads schema_version {SCHEMA_VERSION} only"
        )
    missing = sorted(_MANIFEST_KEYS - set(manifest))
    unknown = sorted(set(manifest) - _MANIFEST_KEYS)
    if missing:
        raise bad(f"missing keys {missing}")
    if unknown:
        raise bad(f"unknown keys {unknown}")
    if not isinstance(manifest["semot_version"], str):
        raise bad("'semot_version' must be a string")
    for key in ("n_features", "dim", "n_points"):
        if not _is_count(manifest[key]):
            raise bad(f"{key!r} must be a non-negative integer, got {manifest[key]!r}")
    if manifest["dim"] < 1:
        raise bad(f"'dim' must be >= 1, got {manifest['dim']}")
    shards = manifest["shards"]
    if not isinstance(shards, list):
        raise bad("'shards' must be a list")
    expect_start, total_points = 0, 0
    for k, shard in enumerate(shards):
        if not isinstance(shard, dict) or set(shard) != _SHARD_KEYS:
            raise bad(f"shards[{k}]: expected an object with keys {sorted(_SHARD_KEYS)}")
        feats = shard["features"]
        if not (
            isinstance(feats, list)
            and len(feats) == 2
            and all(_is_count(x) for x in feats)
            and feats[0] == expect_start
            and feats[1] > feats[0]
        ):
            raise bad(
                f"shards[{k}]: 'features' {feats!r} must be [start, stop] with start = "
                f"{expect_start} (where the previous shard stops) and stop > start"
            )
        expect_start = feats[1]
        if not _plain_name(shard["file"]):
            raise bad(f"shards[{k}]: 'file' {shard['file']!r} must be a plain file name")
        if not _is_count(shard["n_points"]) or not _is_count(shard["bytes"]):
            raise bad(f"shards[{k}]: 'n_points' and 'bytes' must be non-negative integers")
        sha = shard["sha256"]
        if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise bad(f"shards[{k}]: 'sha256' must be 64 lowercase hex digits")
        total_points += shard["n_points"]
    if expect_start != manifest["n_features"]:
        raise bad(f"shards cover {expect_start} features, 'n_features' is {manifest['n_features']}")
    if total_points != manifest["n_points"]:
        raise bad(f"shards hold {total_points} points, 'n_points' is {manifest['n_points']}")
    ref = manifest["reference_file"]
    if ref is not None and not _plain_name(ref):
        raise bad(f"'reference_file' {ref!r} must be null or a plain file name")
    try:
        manifest["metadata"] = _normalise_metadata(manifest["metadata"], CorruptFileError)
    except (TypeError, CorruptFileError) as e:
        raise bad(str(e)) from None
    return manifest


def _load_shard(
    root: Path, shard: dict[str, Any], dim: int, mmap: bool, n_tokens: int | None
) -> _Block:
    """Open one shard and check it against its manifest entry."""
    file = root / shard["file"]

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{file}: {what}")

    if not file.is_file():
        raise bad("shard listed in manifest.json is missing")
    size = file.stat().st_size
    if size != shard["bytes"]:
        raise bad(f"{size} bytes, but manifest.json says {shard['bytes']} (truncated or replaced)")
    tensors, _ = read_safetensors(file, mmap=mmap)
    missing = sorted(set(_FIELDS) - set(tensors))
    if missing:
        raise bad(f"missing tensors {missing}")
    for name in _FIELDS:
        if tensors[name].dtype != _DTYPES[name]:
            raise bad(f"tensor {name!r} has dtype {tensors[name].dtype}, expected {_DTYPES[name]}")
    start, stop = shard["features"]
    offs = tensors["offsets"]
    if offs.shape != (stop - start + 1,):
        raise bad(
            f"holds {offs.shape[0] - 1 if offs.ndim == 1 else '?'} features (offsets shape "
            f"{offs.shape}), manifest.json says {stop - start}"
        )
    pts = tensors["points"]
    if pts.ndim != 2 or pts.shape[1] != dim:
        raise bad(f"points have shape {pts.shape}, manifest.json says dim {dim}")
    if pts.shape[0] != shard["n_points"]:
        raise bad(f"holds {pts.shape[0]} points, manifest.json says {shard['n_points']}")
    arrays = {name: _readonly(tensors[name]) for name in _FIELDS}
    try:
        _check_structure(arrays, base=start, n_tokens=n_tokens)
    except ValueError as e:
        raise bad(str(e)) from None
    return _Block(arrays, file, False)
