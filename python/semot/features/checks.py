"""Validation of the arrays and metadata of a :class:`~semot.features.FeatureDistributions`.

Two levels, so that loading stays cheap: :func:`check_structure` reads only the offsets and
the per-feature arrays (shapes, offsets, counts), :func:`check_values` reads every point.
Both raise ``ValueError`` with a message naming the array and the feature (position and id);
callers that read files turn it into :class:`~semot.errors.CorruptFileError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.jsondepth import object_depth_problem
from semot.errors import CorruptFileError
from semot.features.blocks import DTYPES, FEATURE_FIELDS, POINT_FIELDS, FeatureBlock, readonly

__all__ = [
    "WEIGHT_SUM_TOL",
    "as_stored_array",
    "check_exported_clouds",
    "check_reference_arrays",
    "check_structure",
    "check_unique_ids",
    "check_values",
    "first_duplicate",
    "first_nonfinite_row",
    "normalise_metadata",
]

Array = npt.NDArray[Any]

#: Tolerance on ``|sum of a feature's weights - 1|`` (sums taken in float64).
WEIGHT_SUM_TOL = 1e-3
#: Elements per chunk when scanning big arrays (bounds temporary memory).
_SCAN_ELEMENTS = 1 << 22


def _feature_label(ids: Array, f: int, base: int) -> str:
    return f"feature {base + f} (id {int(ids[f])})"


def check_structure(arrs: Mapping[str, Array], base: int = 0, n_tokens: int | None = None) -> None:
    """Cheap checks (shapes, offsets, per-feature arrays); ValueError naming what is wrong.

    Parameters
    ----------
    arrs : mapping of str to numpy.ndarray
        Every array of :data:`~semot.features.blocks.FIELDS`.
    base : int, default 0
        Added to feature positions in messages (the block's first feature).
    n_tokens : int, optional
        Upper bound on ``firing_counts`` (``metadata["n_tokens"]``).
    """
    offs = arrs["offsets"]
    if offs.ndim != 1 or offs.shape[0] < 1:
        raise ValueError(f"offsets: expected shape (n_features + 1,), got {offs.shape}")
    n_feat = offs.shape[0] - 1
    pts = arrs["points"]
    if pts.ndim != 2 or pts.shape[1] < 1:
        raise ValueError(f"points: expected shape (n_points, dim) with dim >= 1, got {pts.shape}")
    total = pts.shape[0]
    for name in POINT_FIELDS[1:]:
        if arrs[name].shape != (total,):
            raise ValueError(
                f"{name}: expected shape ({total},), one entry per point, got {arrs[name].shape}"
            )
    for name in FEATURE_FIELDS:
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


def first_nonfinite_row(points: Array) -> int:
    """Index of the first row of ``points`` with a non-finite value, or -1.

    Scanned in chunks of about 4 M elements, so a memory-mapped array is never copied whole.
    """
    step = max(1, _SCAN_ELEMENTS // max(1, points.shape[1]))
    for lo in range(0, points.shape[0], step):
        bad = ~np.isfinite(points[lo : lo + step]).all(axis=1)
        if bad.any():
            return lo + int(np.argmax(bad))
    return -1


def check_values(arrs: Mapping[str, Array], base: int = 0) -> None:
    """Per-point checks (reads every point); ValueError naming the feature.

    Points and activations finite, weights finite, non-negative and summing to 1 (within
    :data:`WEIGHT_SUM_TOL`) per non-empty feature, keys not NaN, ``seq`` and ``pos``
    non-negative. ``base`` is added to feature positions in messages.
    """
    offs, ids = arrs["offsets"], arrs["feature_ids"]

    def where(row: int) -> str:
        f = int(np.searchsorted(offs, row, side="right") - 1)
        return f"{_feature_label(ids, f, base)}, point {row - int(offs[f])}"

    row = first_nonfinite_row(arrs["points"])
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


def first_duplicate(values: Array) -> tuple[int, int] | None:
    """Positions ``(i, j)``, ``i < j`` in sorted order, of the first repeated value, or None.

    "First" is in the order of the values (then of position), as a stable sort finds it.
    """
    if values.shape[0] < 2:
        return None
    order = np.argsort(values, kind="stable")
    dup = np.flatnonzero(values[order][1:] == values[order][:-1])
    if not dup.size:
        return None
    return int(order[dup[0]]), int(order[dup[0] + 1])


def check_unique_ids(ids: Array) -> None:
    """Raise ValueError naming the first feature id that appears twice (and both positions)."""
    dup = first_duplicate(ids)
    if dup is not None:
        a, b = dup
        raise ValueError(
            f"feature_ids: id {int(ids[a])} appears twice, at features {a} and {b}; "
            "feature ids must be unique"
        )


def as_stored_array(name: str, value: Any) -> Array:
    """``value`` as a read-only C-contiguous array of the dtype stored for ``name``.

    Raises TypeError for a non-numeric array, or a float array where integers are stored
    (an empty float or boolean array passes: ``[]`` is float by default).
    """
    arr = np.asarray(value)
    target = DTYPES[name]
    kind = arr.dtype.kind
    if target.kind == "f":
        if kind not in "biuf":
            raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    elif kind not in "iu" and not (arr.size == 0 and kind in "bf"):
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: values too large for int64")
    return readonly(arr.astype(target, order="C", copy=False))


def _json_default(value: Any) -> Any:
    """Turn numpy scalars and arrays in metadata into plain Python values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def normalise_metadata(metadata: Any, error: type[Exception] = ValueError) -> dict[str, Any]:
    """Return the JSON copy of ``metadata`` (a dict with string keys; numpy values become plain).

    Raises TypeError for a non-dict or a non-string key, and ``error`` for a value that is
    not JSON-serialisable (NaN and infinity included), nested more than
    :data:`~semot._utils.jsondepth.MAX_JSON_DEPTH` levels deep, or an ``n_tokens`` that is
    not a non-negative int.
    """
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    bad = [k for k in metadata if not isinstance(k, str)]
    if bad:
        raise TypeError(f"metadata: keys must be strings, got {bad[0]!r}")
    deep = object_depth_problem(dict(metadata))
    if deep is not None:
        raise error(f"metadata: {deep}")
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


def check_reference_arrays(reference: Any) -> dict[str, Array] | None:
    """Return ``reference`` as a dict of read-only arrays that safetensors can store, or None."""
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
        out[key] = readonly(arr)
    return out


def check_exported_clouds(block: FeatureBlock) -> None:
    """Check the clouds of a block not validated yet (loaded, lazily) before export.

    Only what a :class:`~semot.PointClouds` needs, for every feature with a non-empty
    sample: finite points, finite non-negative weights with a positive sum. Raises
    :class:`~semot.errors.CorruptFileError` naming the block's file and the feature id.
    """
    points, weights, offsets = block["points"], block["weights"], block["offsets"]
    ids = block["feature_ids"]
    where = f"{block.source}: " if block.source is not None else ""

    def at(row: int) -> str:
        c = int(np.searchsorted(offsets, row, side="right") - 1)
        return f"feature id {int(ids[c])}, point {row - int(offsets[c])}"

    row = first_nonfinite_row(points)
    if row >= 0:
        raise CorruptFileError(f"{where}points: {at(row)} has a non-finite coordinate")
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise CorruptFileError(f"{where}weights: {at(row)} is {weights[row]}")
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    if not nonempty.size:
        return
    sums = np.add.reduceat(weights.astype(np.float64), offsets[nonempty])
    if not (sums > 0).all():
        c = int(nonempty[np.argmin(sums > 0)])
        raise CorruptFileError(
            f"{where}weights: feature id {int(ids[c])} has weights summing to "
            f"{sums[np.argmin(sums > 0)]}"
        )
