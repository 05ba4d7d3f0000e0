"""The on-disk format of a :class:`~semot.features.container.FeatureDistributions`.

A saved object is a directory::

    manifest.json               what the directory holds (written last)
    shard-00000.safetensors     features 0 .. shard_size - 1 in CSR layout
    shard-00001.safetensors     ...
    reference.safetensors       the reference-map arrays, if any

``manifest.json`` is a JSON object with exactly the keys ``format``
(``"semot.FeatureDistributions"``), ``schema_version`` (1), ``semot_version``,
``n_features``, ``dim``, ``n_points``, ``reference_file`` (a file name or null),
``metadata`` (the free JSON dict) and ``shards``: one entry per shard, in feature order,
``{"file", "features": [start, stop], "n_points", "bytes", "sha256"}``. Each shard holds the
arrays of :data:`~semot.features.blocks.FIELDS` for its features, in their stored dtypes.

Every file is written atomically (:mod:`semot._utils.atomic`) and the manifest last, so a
save that is killed midway leaves a directory without a manifest, which does not load.
Loading checks the manifest and every shard's size and structure (cheap), refuses files
that lead outside the directory (symbolic links, or names with a path in them), and, unless
told not to, compares each shard's SHA-256 with the manifest's the first time the shard's
data is read (:class:`~semot.features.blocks.PendingCheck`); :func:`verify_shard_files`
compares them all at once.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.atomic import atomic_write, fsync_directory
from semot._utils.jsondepth import json_depth_problem
from semot._utils.safetensors import file_sha256, read_safetensors, write_safetensors
from semot.errors import CorruptFileError
from semot.features.blocks import DTYPES, FIELDS, FeatureBlock, PendingCheck, readonly
from semot.features.checks import check_structure, check_unique_ids, normalise_metadata

__all__ = [
    "FORMAT",
    "MANIFEST",
    "REFERENCE",
    "SCHEMA_VERSION",
    "SavedDirectory",
    "check_inside",
    "check_shard_file",
    "check_shard_sha256",
    "disk_usage",
    "load_directory",
    "read_manifest",
    "save_directory",
    "verify_shard_files",
]

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


@dataclass(frozen=True)
class SavedDirectory:
    """What :func:`load_directory` read: the manifest, one block per shard, the reference."""

    root: Path
    manifest: dict[str, Any]
    blocks: list[FeatureBlock]
    reference: dict[str, Array] | None


# ---------------------------------------------------------------------- writing


def save_directory(
    path: str | os.PathLike[str],
    *,
    n_features: int,
    dim: int,
    n_points: int,
    features: Callable[[int, int], FeatureBlock],
    metadata: dict[str, Any],
    reference: dict[str, Array] | None,
    shard_size: int,
    overwrite: bool,
) -> None:
    """Write a directory in the format above (see :meth:`FeatureDistributions.save`).

    Parameters
    ----------
    path : str or path-like
        The directory; created (with parents) if missing.
    n_features, dim, n_points : int
        Sizes recorded in the manifest.
    features : callable
        ``features(start, stop)`` returns features ``start:stop`` as one block; called once
        per shard, so that only one shard's copy is in memory at a time.
    metadata : dict
        The JSON metadata, stored in the manifest.
    reference : dict of str to numpy.ndarray, optional
        Written to ``reference.safetensors``.
    shard_size : int
        Features per shard (validated by the caller).
    overwrite : bool
        Allow a non-empty directory: its old manifest is removed first, and old shard,
        reference and temporary files not rewritten are removed once the new manifest is in
        place; other files are left alone.

    Raises
    ------
    FileExistsError
        If ``path`` is a file, or a non-empty directory and ``overwrite`` is false.
    """
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
    # The old manifest goes first: until the new one is written, the directory does not load.
    if manifest_path.exists():
        manifest_path.unlink()
        fsync_directory(root)
    shards: list[dict[str, Any]] = []
    for k, start in enumerate(range(0, n_features, shard_size)):
        stop = min(n_features, start + shard_size)
        block = features(start, stop)
        name = f"shard-{k:05d}.safetensors"
        n_bytes, sha = write_safetensors(
            root / name,
            {field: block[field] for field in FIELDS},
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
    if reference is not None:
        write_safetensors(root / REFERENCE, reference, {"format": f"{FORMAT}.reference"})
    from semot._core import __version__

    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "semot_version": __version__,
        "n_features": n_features,
        "dim": dim,
        "n_points": n_points,
        "shards": shards,
        "reference_file": REFERENCE if reference is not None else None,
        "metadata": metadata,
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


# ---------------------------------------------------------------------- reading


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _plain_name(x: Any) -> bool:
    return isinstance(x, str) and x not in ("", ".", "..") and "/" not in x and "\\" not in x


def read_manifest(path: Path) -> dict[str, Any]:
    """Parse and validate ``manifest.json``; CorruptFileError naming it on any problem.

    Returns the manifest with its ``metadata`` normalised (as :meth:`from_arrays` stores it).
    """

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{path}: {what}")

    raw = path.read_bytes()
    deep = json_depth_problem(raw)
    if deep is not None:
        raise bad(deep)
    try:
        manifest = json.loads(raw.decode("utf-8"))
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
        manifest["metadata"] = normalise_metadata(manifest["metadata"], CorruptFileError)
    except (TypeError, CorruptFileError) as e:
        raise bad(str(e)) from None
    return manifest


def check_inside(root: Path, file: Path, what: str) -> None:
    """Raise CorruptFileError if ``file`` leads outside the directory ``root``.

    A file of a saved directory is a plain name in it; one that is a symbolic link (or
    behind one) to somewhere else would make a load read, and a save overwrite, data that
    is not the directory's.
    """
    try:
        target = file.resolve()
        inside = target.is_relative_to(root.resolve())
    except (OSError, RuntimeError) as e:  # a loop of links
        raise CorruptFileError(f"{file}: {what} cannot be resolved ({e})") from None
    if not inside:
        raise CorruptFileError(
            f"{file}: {what} is a symbolic link to {target}, outside {root}; a saved "
            "directory reads only its own files"
        )


def check_shard_file(file: Path, shard: dict[str, Any]) -> None:
    """Raise CorruptFileError if a shard file is missing or not the size its entry says."""
    check_inside(file.parent, file, "shard listed in manifest.json")
    if not file.is_file():
        raise CorruptFileError(f"{file}: shard listed in manifest.json is missing")
    size = file.stat().st_size
    if size != shard["bytes"]:
        raise CorruptFileError(
            f"{file}: {size} bytes, but manifest.json says {shard['bytes']} (truncated or replaced)"
        )


def check_shard_sha256(file: Path, shard: dict[str, Any]) -> None:
    """Raise CorruptFileError if the SHA-256 of a shard file differs from its entry's."""
    sha = file_sha256(file)
    if sha != shard["sha256"]:
        raise CorruptFileError(
            f"{file}: SHA-256 {sha} differs from the manifest's {shard['sha256']}: "
            "the file was modified or damaged (load with verify=False to read it anyway)"
        )


def _load_shard(
    root: Path,
    shard: dict[str, Any],
    dim: int,
    mmap: bool,
    n_tokens: int | None,
    verify: bool,
) -> FeatureBlock:
    """Open one shard and check it against its manifest entry (structure only).

    With ``verify``, the block's data is checked against the SHA-256 of the entry the first
    time it is read.
    """
    file = root / shard["file"]

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{file}: {what}")

    check_shard_file(file, shard)
    tensors, _ = read_safetensors(file, mmap=mmap)
    missing = sorted(set(FIELDS) - set(tensors))
    if missing:
        raise bad(f"missing tensors {missing}")
    for name in FIELDS:
        if tensors[name].dtype != DTYPES[name]:
            raise bad(f"tensor {name!r} has dtype {tensors[name].dtype}, expected {DTYPES[name]}")
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
    arrays = {name: readonly(tensors[name]) for name in FIELDS}
    try:
        check_structure(arrays, base=start, n_tokens=n_tokens)
    except ValueError as e:
        raise bad(str(e)) from None
    pending = PendingCheck(functools.partial(check_shard_sha256, file, shard)) if verify else None
    return FeatureBlock(arrays, file, False, pending)


def load_directory(
    path: str | os.PathLike[str], *, mmap: bool, verify: bool = True
) -> SavedDirectory:
    """Read a directory written by :func:`save_directory` (see :meth:`FeatureDistributions.load`).

    Checks the manifest, each shard's size and structure against it, that no file leads
    outside ``path`` and that feature ids are unique across shards; per-point values are
    left unread. With ``verify``, each shard's SHA-256 is compared with the manifest's the
    first time its data is read.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If ``path`` does not exist or is not a directory.
    CorruptFileError
        Naming the file, for anything that does not match the format.
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
    check_inside(root, manifest_path, "the manifest")
    manifest = read_manifest(manifest_path)
    n_tokens = manifest["metadata"].get("n_tokens")
    blocks = [
        _load_shard(root, shard, manifest["dim"], mmap, n_tokens, verify)
        for shard in manifest["shards"]
    ]
    # Unverified reads (.arrays): the SHA-256 checks wait for the first read of the data.
    ids = (
        np.concatenate([b.arrays["feature_ids"] for b in blocks])
        if blocks
        else np.zeros(0, np.int64)
    )
    try:
        check_unique_ids(ids)
    except ValueError as e:
        raise CorruptFileError(f"{manifest_path}: shards hold inconsistent data: {e}") from None
    reference = None
    if manifest["reference_file"] is not None:
        ref_path = root / manifest["reference_file"]
        check_inside(root, ref_path, "the reference file")
        if not ref_path.is_file():
            raise CorruptFileError(f"{ref_path}: listed in {manifest_path} but missing")
        tensors, _ = read_safetensors(ref_path, mmap=mmap)
        reference = {k: readonly(v) for k, v in tensors.items()}
    return SavedDirectory(root.resolve(), manifest, blocks, reference)


def verify_shard_files(root: Path, manifest: dict[str, Any]) -> None:
    """Compare every shard file's size and SHA-256 with the manifest; CorruptFileError if not."""
    for shard in manifest["shards"]:
        file = root / shard["file"]
        check_shard_file(file, shard)
        check_shard_sha256(file, shard)


def disk_usage(root: Path, manifest: dict[str, Any]) -> tuple[int, int]:
    """Bytes on disk and number of files of a saved directory (shards, manifest, reference).

    Shard sizes are the manifest's; the manifest and reference are measured (when present).
    """
    total = sum(int(s["bytes"]) for s in manifest["shards"])
    for name in (MANIFEST, manifest["reference_file"]):
        if name is not None and (root / name).is_file():
            total += (root / name).stat().st_size
    n_files = len(manifest["shards"]) + 1 + (manifest["reference_file"] is not None)
    return total, n_files
