"""A small, dependency-free reader and writer for the safetensors format (numpy only).

File layout: an 8-byte little-endian unsigned integer ``N``, then ``N`` bytes of a JSON
object (padded with spaces so that the data starts at a multiple of 8 bytes), then the raw
little-endian data of every tensor. The JSON object maps each tensor name to
``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (byte offsets relative
to the first byte after the header) and may hold ``"__metadata__"``, a ``str -> str`` map.

Files written here load with the ``safetensors`` package and the reverse; tensors are laid
out by decreasing item size so that every tensor starts at a multiple of its item size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from semot._utils.atomic import atomic_write
from semot._utils.jsondepth import json_depth_problem
from semot.errors import CorruptFileError

# CorruptFileError is re-exported: it was importable from here before it moved to semot.errors.
__all__ = [
    "DTYPES",
    "CorruptFileError",
    "file_sha256",
    "read_header",
    "read_safetensors",
    "write_safetensors",
]

#: safetensors dtype name -> numpy dtype (always little-endian).
DTYPES: dict[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}

_METADATA_KEY = "__metadata__"
_CHUNK = 1 << 20
#: The largest header read (the safetensors package's own limit): a bigger claimed size is
#: a damaged or hostile file, not a header to allocate.
MAX_HEADER_BYTES = 100_000_000


def _dtype_name(arr: np.ndarray[Any, Any], name: str) -> str:
    dt = arr.dtype
    key = (dt.kind, dt.itemsize)
    if dt.kind not in "biuf" or key not in _NAMES:
        raise TypeError(
            f"tensor {name!r}: dtype {dt} cannot be stored; supported: "
            "float64, float32, float16, int64, int32, int16, int8, uint8, bool"
        )
    return _NAMES[key]


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray[Any, Any]],
    metadata: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Write ``tensors`` to a safetensors file, atomically.

    Parameters
    ----------
    path : str or path-like
        Destination file. Written through ``<name>.tmp-<pid>`` in the same directory, flushed,
        fsynced and renamed, so ``path`` is either the old file or the complete new one.
    tensors : mapping of str to numpy.ndarray
        Arrays of dtype float64, float32, float16, int64, int32, int16, int8, uint8 or bool,
        any shape (zero-sized included). Stored little-endian, C order.
    metadata : mapping of str to str, optional
        Stored as the header's ``"__metadata__"``.

    Returns
    -------
    tuple of (int, str)
        The size of the written file in bytes and its SHA-256 as a hex string.

    Raises
    ------
    TypeError
        For a name or metadata entry that is not a string, or an unsupported dtype.
    ValueError
        For the reserved name ``"__metadata__"``.
    """
    arrays: list[tuple[str, str, np.ndarray[Any, Any]]] = []
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        if name == _METADATA_KEY:
            raise ValueError(f"{_METADATA_KEY!r} is reserved and cannot name a tensor")
        arr = np.asarray(value)
        dtype_name = _dtype_name(arr, name)
        arr = arr.astype(DTYPES[dtype_name], order="C", copy=False)
        arrays.append((name, dtype_name, arr))
    # Largest item size first: every tensor then starts at a multiple of its item size.
    arrays.sort(key=lambda t: (-t[2].dtype.itemsize, t[0]))
    header: dict[str, Any] = {}
    if metadata is not None:
        meta: dict[str, str] = {}
        for key, val in metadata.items():
            if not isinstance(key, str) or not isinstance(val, str):
                raise TypeError(f"metadata: keys and values must be strings, got {key!r}: {val!r}")
            meta[key] = val
        header[_METADATA_KEY] = meta
    begin = 0
    for name, dtype_name, arr in arrays:
        end = begin + arr.nbytes
        header[name] = {"dtype": dtype_name, "shape": list(arr.shape), "data_offsets": [begin, end]}
        begin = end
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    chunks: list[Any] = [struct.pack("<Q", len(raw)), raw]
    chunks.extend(arr.reshape(-1).view(np.uint8) for _, _, arr in arrays if arr.nbytes)
    return atomic_write(Path(path), chunks)


def _bad(path: Path, what: str) -> CorruptFileError:
    return CorruptFileError(f"{path}: not a valid safetensors file: {what}")


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def read_header(path: str | os.PathLike[str]) -> tuple[int, dict[str, Any], int]:
    """Read and check the header of a safetensors file.

    Returns
    -------
    tuple of (int, dict, int)
        Byte position where the data starts, the parsed header, and the file size.

    Raises
    ------
    CorruptFileError
        For any malformation; see :func:`read_safetensors`. The header is at most
        :data:`MAX_HEADER_BYTES` long and nested at most
        :data:`~semot._utils.jsondepth.MAX_JSON_DEPTH` levels deep.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise _bad(path, f"the file is {size} bytes long, shorter than the 8-byte header size")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise _bad(
                path,
                f"the header claims {n} bytes, more than the {MAX_HEADER_BYTES} that "
                "safetensors allows",
            )
        if n > size - 8:
            raise _bad(
                path,
                f"the header claims {n} bytes but the file has only {size - 8} after the "
                "8-byte size (truncated, or not a safetensors file)",
            )
        raw = f.read(n)
    deep = json_depth_problem(raw)
    if deep is not None:
        raise _bad(path, f"the header is {deep}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _bad(path, f"the header is a JSON {type(header).__name__}, not an object")
    data_start = 8 + n
    data_len = size - data_start
    meta = header.get(_METADATA_KEY, {})
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise _bad(path, f"{_METADATA_KEY!r} must be an object of strings")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == _METADATA_KEY:
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _bad(
                path, f"tensor {name!r}: expected an object with dtype, shape and data_offsets"
            )
        dtype_name, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
            raise _bad(
                path,
                f"tensor {name!r}: unknown dtype {dtype_name!r} (supported: {', '.join(DTYPES)})",
            )
        if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
            raise _bad(path, f"tensor {name!r}: shape {shape!r} is not a list of sizes")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_count(o) for o in offs)):
            raise _bad(path, f"tensor {name!r}: data_offsets {offs!r} are not two byte offsets")
        begin, end = offs
        need = math.prod(shape) * DTYPES[dtype_name].itemsize
        if end < begin or end - begin != need:
            raise _bad(
                path,
                f"tensor {name!r}: data_offsets [{begin}, {end}] span {end - begin} bytes but "
                f"dtype {dtype_name} and shape {shape} need {need}",
            )
        if end > data_len:
            raise _bad(
                path,
                f"tensor {name!r}: data_offsets [{begin}, {end}] reach past the end of the "
                f"data ({data_len} bytes; the file is truncated or the offsets are wrong)",
            )
        spans.append((begin, end, name))
    spans.sort()
    reach, last = 0, ""
    for begin, end, name in spans:
        if end == begin:
            continue
        if begin < reach:
            raise _bad(path, f"tensors {last!r} and {name!r} overlap in the data")
        reach, last = end, name
    return data_start, header, size


def read_safetensors(
    path: str | os.PathLike[str], mmap: bool = True
) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]]:
    """Read a safetensors file.

    Parameters
    ----------
    path : str or path-like
        The file.
    mmap : bool, default True
        If true, every array is a read-only view of one :class:`numpy.memmap` of the file:
        nothing is read from disk until an array is touched. Zero-sized tensors are plain
        read-only empty arrays (a memory map cannot be zero bytes long). If false, the data
        is read into memory and the arrays are ordinary writeable arrays.

    Returns
    -------
    tuple of (dict, dict)
        The tensors by name (in file order) and the ``"__metadata__"`` strings (empty if the
        file has none).

    Raises
    ------
    CorruptFileError
        If the file is shorter than 8 bytes, the header length exceeds the file, the header is
        not a JSON object, a dtype is unknown, a shape does not match its byte range, byte
        ranges overlap or reach past the end of the file (truncated data).
    OSError
        If the file cannot be opened.
    """
    path = Path(path)
    data_start, header, size = read_header(path)
    data_len = size - data_start
    buf: np.ndarray[Any, Any]
    if data_len == 0:
        buf = np.zeros(0, dtype=np.uint8)
    elif mmap:
        try:
            buf = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(data_len,))
        except (ValueError, OSError) as e:
            raise CorruptFileError(f"{path}: cannot be memory-mapped ({e})") from None
    else:
        buf = np.empty(data_len, dtype=np.uint8)
        with open(path, "rb") as f:
            f.seek(data_start)
            got = f.readinto(buf.data)
        if got != data_len:
            raise _bad(path, f"expected {data_len} data bytes, read {got} (file changed?)")
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    for name, info in header.items():
        if name == _METADATA_KEY:
            continue
        dt = DTYPES[info["dtype"]]
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]
        if end == begin:
            arr = np.zeros(shape, dtype=dt)
            if mmap:
                arr.flags.writeable = False
        else:
            arr = buf[begin:end].view(dt).reshape(shape)
        tensors[name] = arr
    return tensors, dict(header.get(_METADATA_KEY, {}))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, as a hex string, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
