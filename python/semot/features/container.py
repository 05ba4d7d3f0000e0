"""Feature distributions: for every SAE feature, a weighted sample of where it fires.

A :class:`FeatureDistributions` holds, for each of ``F`` sparse-autoencoder features, a
sample of ``m_f`` token positions where the feature fired, as a weighted point cloud of
hidden states, with the provenance of each point and per-feature firing statistics. It is
saved as a directory of safetensors shards plus a JSON manifest, loads lazily (memory-mapped)
and converts to :class:`~semot.PointClouds` for the distance functions.

This module is the container (construction, per-feature access, selection, concatenation,
export); the CSR blocks it is made of are in :mod:`semot.features.blocks`, the validation
in :mod:`semot.features.checks`, the directory format in :mod:`semot.features.format` and
the summary text in :mod:`semot.features.summary`.
"""

from __future__ import annotations

import copy
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.checks import check_positive_int
from semot.clouds import PointClouds
from semot.errors import CorruptFileError, UnfiredFeaturesWarning
from semot.features.blocks import DTYPES, FeatureBlock, empty_block, gather_features, readonly
from semot.features.checks import (
    as_stored_array,
    check_exported_clouds,
    check_reference_arrays,
    check_structure,
    check_unique_ids,
    check_values,
    first_duplicate,
    normalise_metadata,
)
from semot.features.format import disk_usage, load_directory, save_directory, verify_shard_files
from semot.features.summary import repr_text, short_json, summary_text

# CorruptFileError is re-exported: it was importable from here before it moved to semot.errors.
__all__ = ["CorruptFileError", "FeatureDistributions"]

Array = npt.NDArray[Any]

#: Above this many pieces, a selection is copied into one block instead of kept as views.
MAX_VIEW_PIECES = 16


def feature_position(index: Any, n: int) -> int:
    """Return ``index`` as a position in ``0..n-1`` (negative counts from the end).

    Raises TypeError for a non-integer and IndexError out of range.
    """
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"feature position must be an int, got {type(index).__name__}")
    i = int(index)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"feature position {index} out of range for {n} features")
    return i


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

    _blocks: list[FeatureBlock]
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
        blocks: list[FeatureBlock],
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
        arrs = {name: as_stored_array(name, value) for name, value in given.items()}
        meta = normalise_metadata(metadata)
        check_structure(arrs, n_tokens=meta.get("n_tokens"))
        check_unique_ids(arrs["feature_ids"])
        check_values(arrs)
        ref = check_reference_arrays(reference_arrays)
        dim = int(arrs["points"].shape[1])
        return cls._make([FeatureBlock(arrs, None, True)], dim, meta, ref)

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
        save_directory(
            path,
            n_features=len(self),
            dim=self._dim,
            n_points=self.n_points,
            features=self._range_block,
            metadata=self._metadata,
            reference=self._reference,
            shard_size=check_positive_int(shard_size, "shard_size"),
            overwrite=overwrite,
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = True, verify: bool = True
    ) -> FeatureDistributions:
        """Load a directory written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            The directory.
        mmap : bool, default True
            Memory-map the shards (nothing is read until touched; arrays are read-only
            :class:`numpy.memmap` views). If false, the shards are read into memory.
        verify : bool, default True
            Compare each shard file's SHA-256 with the one the manifest recorded, the first
            time the shard's data is read (any array of its features: ids, counts, points;
            one sequential read of the file), and raise :class:`CorruptFileError` naming the
            file if they differ, so that a damaged shard never yields numbers. ``False``
            skips the comparison (storage you trust, or to look into a damaged directory);
            the structural checks of loading still run.

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
            finish), a manifest that is not JSON, is nested too deep, has missing or unknown
            keys, another ``schema_version`` or inconsistent shard ranges; a shard or
            reference file that is a symbolic link out of ``path``; a shard that is missing,
            has another byte size than the manifest says, is not valid safetensors or whose
            contents disagree with the manifest (feature count, dim, points) or are
            inconsistent (offsets, counts, duplicate feature ids). With ``verify``, also
            later, at the first read of a shard whose SHA-256 differs from the manifest's.
        """
        saved = load_directory(path, mmap=mmap, verify=bool(verify))
        return cls._make(
            saved.blocks,
            saved.manifest["dim"],
            saved.manifest["metadata"],
            saved.reference,
            saved.root,
            saved.manifest,
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
            verify_shard_files(self._source, self._manifest)
        for k, block in enumerate(self._blocks):
            if block.pending is not None and self._source is None:
                block.pending.run()  # derived from a loaded object: its shard's SHA-256
            try:
                check_values(block.arrays, int(self._starts[k]))
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
            arr = np.concatenate(parts) if parts else np.zeros(0, dtype=DTYPES[name])
            self._cache[name] = readonly(arr)
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
            self._cache["sample_sizes"] = readonly(arr.astype(np.int64, copy=False))
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

    def _locate(self, index: Any) -> tuple[FeatureBlock, int, int]:
        i = feature_position(index, len(self))
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

    def point_arrays(self, *names: str) -> tuple[npt.NDArray[np.int64], list[Array]]:
        """Per-point arrays of all features at once, in CSR form.

        Parameters
        ----------
        *names : str
            Any of ``"activations"``, ``"keys"``, ``"seq"``, ``"pos"``, ``"weights"``,
            ``"points"``.

        Returns
        -------
        offsets : ndarray of int64, shape (F + 1,)
            Feature ``i``'s points are rows ``offsets[i]:offsets[i + 1]`` of every array.
        arrays : list of ndarray
            The arrays, in the order of ``names`` (read-only; views when the features live
            in one shard, else copies).
        """
        allowed = ("activations", "keys", "seq", "pos", "weights", "points")
        for name in names:
            if name not in allowed:
                raise ValueError(f"names: {name!r} is not one of {allowed}")
        block = self._range_block(0, len(self))
        return np.asarray(block["offsets"], np.int64), [block[name] for name in names]

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
        dup = first_duplicate(positions)
        if dup is not None:
            p = int(positions[dup[0]])
            raise ValueError(
                f"feature {p} (id {int(self.feature_ids[p])}) is selected twice; "
                "feature ids must stay unique"
            )
        blocks: list[FeatureBlock] = []
        if n:
            bi = np.searchsorted(self._starts, positions, side="right") - 1
            breaks = np.flatnonzero((np.diff(positions) != 1) | (np.diff(bi) != 0)) + 1
            if breaks.size < MAX_VIEW_PIECES:
                for lo, hi in zip([0, *breaks.tolist()], [*breaks.tolist(), n], strict=True):
                    k = int(bi[lo])
                    a = int(positions[lo] - self._starts[k])
                    blocks.append(self._blocks[k].slice(a, a + hi - lo))
            else:
                blocks.append(gather_features(self._blocks, self._starts, positions, self._dim))
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
            return self._take(np.array([feature_position(index, n)], dtype=np.int64))
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
                        f"runs[{k}]: metadata[{key!r}] = {short_json(b)} differs from runs[0]'s "
                        f"{short_json(a)}; only runs with equal {key!r} can be concatenated"
                    )
        ids = np.concatenate([r.feature_ids for r in runs])
        owner = np.repeat(np.arange(len(runs)), [len(r) for r in runs])
        dup = first_duplicate(ids)
        if dup is not None:
            a, b = dup
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

    def _range_block(self, start: int, stop: int) -> FeatureBlock:
        """Features ``start:stop`` as one block: views if they live in one block, else a copy."""
        if stop <= start:
            return empty_block(self._dim)
        k = int(np.searchsorted(self._starts, start, side="right") - 1)
        if stop <= self._starts[k + 1]:
            base = int(self._starts[k])
            return self._blocks[k].slice(start - base, stop - base)
        positions = np.arange(start, stop, dtype=np.int64)
        return gather_features(self._blocks, self._starts, positions, self._dim)

    def to_clouds(self, *, include_unfired: bool = False) -> PointClouds:
        """Return the fired features as :class:`~semot.PointClouds`, in :attr:`fired_ids` order.

        Features with an empty sample (never fired) are left out with an
        :class:`~semot.errors.UnfiredFeaturesWarning`, since a :class:`~semot.PointClouds`
        cannot hold an empty cloud. When the kept features are
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
                UnfiredFeaturesWarning,
                stacklevel=2,
            )
        bi = np.searchsorted(self._starts, keep, side="right") - 1
        # Loaded data not validated yet is checked block by block (so that a message names
        # the shard file), before any copy; every non-empty feature of a block is kept.
        for k in np.unique(bi).tolist():
            if not self._blocks[k].checked:
                check_exported_clouds(self._blocks[k])
        one_run = bi[0] == bi[-1] and int(keep[-1] - keep[0]) == keep.shape[0] - 1
        if one_run:
            k = int(bi[0])
            a = int(keep[0] - self._starts[k])
            block = self._blocks[k].slice(a, a + keep.shape[0])
        else:
            block = gather_features(
                self._blocks, self._starts, keep, self._dim, ("points", "weights", "feature_ids")
            )
        points = np.require(block["points"], np.float32, ["C", "A"])
        weights = np.require(block["weights"], np.float32, ["C", "A"])
        offsets = np.require(block["offsets"], np.int64, ["C", "A"])
        return PointClouds.from_csr_unchecked(points, weights, offsets)

    # ------------------------------------------------------------------ display

    def _disk_usage(self) -> tuple[int, int] | None:
        if self._source is None or self._manifest is None:
            return None
        return disk_usage(self._source, self._manifest)

    def disk_bytes(self) -> int | None:
        """Return the bytes on disk of the directory this was loaded from (all its files).

        None for an object that was not loaded (or was derived by selection).
        """
        usage = self._disk_usage()
        return None if usage is None else usage[0]

    def summary(self) -> str:
        """Return a human-readable multi-line summary (what ``semot info DIR`` prints).

        Reads the metadata keys ``model`` (or ``model_name``), ``hook`` (or ``hook_name``),
        ``sae`` (or ``sae_release`` / ``sae_id``), ``n_tokens``, ``sampling`` (a dict with
        ``mode`` and ``n``, or any value) and ``reference``; missing keys print as ``?``.
        """
        return summary_text(self, self._source, self._disk_usage())

    def __repr__(self) -> str:
        return repr_text(self, self._source)
