"""Argument checks and input normalisation shared by every public function.

One policy: an argument of the wrong type raises ``TypeError``, a value out of range raises
``ValueError``, an integer too large for the native type the core takes raises
``OverflowError``; every message starts with the argument's name.

The Python layer is lenient (lists, integer arrays, strided arrays, torch CPU tensors through
``np.asarray``) and hands the Rust core exactly what it accepts: C-contiguous ``float32`` or
``float64`` arrays and ``int64`` offsets.
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]

#: Largest integer any count or size argument may take (the core's native ``int64``/``usize``).
MAX_NATIVE_INT = 2**63 - 1


def _max_threads() -> int:
    return max(64, 4 * (os.cpu_count() or 1))


#: Cap on ``n_threads``: four threads per core, and at least 64 (more threads than cores is
#: allowed up to this small multiple; beyond it a call would only spend its time spawning).
MAX_THREADS = _max_threads()


def as_array(x: Any, name: str) -> np.ndarray[Any, Any]:
    """``np.asarray(x)``, with numpy's errors for ragged or unconvertible input naming ``name``."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except ValueError as e:
        reason = str(e).split(". ")[0].split("\n")[0]
        raise ValueError(
            f"{name}: cannot be read as a rectangular numeric array ({reason}); a ragged list "
            "(rows of different lengths) is not an array"
        ) from None


def float_array(x: Any, name: str, ndim: int | None = None, dtype: Any = None) -> FloatArray:
    """Return ``x`` as a C-contiguous float32 or float64 array.

    float32 and float64 are kept as given; integers, booleans and float16 become float64
    (float16 becomes float32). Complex, object and string arrays raise ``TypeError``; a
    0-d array (a scalar) or a ragged list raises ``ValueError`` (a scalar is never promoted
    to a 1-D array).
    """
    arr = as_array(x, name)
    if arr.ndim == 0:
        need = "" if ndim is None else f", need a {ndim}-D array"
        raise ValueError(f"{name}: expected an array, got a scalar (0-d array{need})")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name}: complex arrays are not supported (got dtype {arr.dtype})")
    if kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if dtype is None:
        if arr.dtype == np.float32 or arr.dtype == np.float16:
            dtype = np.float32
        else:
            dtype = np.float64
    out = np.ascontiguousarray(arr, dtype=dtype)
    if ndim is not None and out.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {out.shape}")
    return out


def index_array(x: Any, name: str, ndim: int) -> npt.NDArray[np.int64]:
    """Return ``x`` as a C-contiguous int64 array of rank ``ndim``."""
    arr = as_array(x, name)
    if arr.ndim != ndim and not (arr.size == 0 and ndim > arr.ndim):
        raise ValueError(f"{name}: expected a {ndim}-D integer array, got shape {arr.shape}")
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: index too large for int64")
    out = np.ascontiguousarray(arr, dtype=np.int64)
    if out.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D integer array, got shape {out.shape}")
    return out


def check_p(p: float) -> float:
    """Validate the order ``p`` of a Wasserstein distance (a finite number >= 1)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p: expected a real number >= 1, got {type(p).__name__}")
    p = float(p)
    if not np.isfinite(p) or p < 1:
        raise ValueError(f"p: must be a finite number >= 1, got {p}")
    return p


def check_positive_int(
    value: Any, name: str, minimum: int = 1, maximum: int = MAX_NATIVE_INT
) -> int:
    """Validate an integer argument that must be at least ``minimum``.

    Raises ``OverflowError`` naming the argument when it does not fit in ``maximum``
    (by default the 64-bit native integer of the core, ``2**63 - 1``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    out = int(value)
    if out < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {out}")
    if out > maximum:
        raise OverflowError(f"{name}: {out} is too large, must be <= {maximum}")
    return out


def check_n_threads(n_threads: int | None) -> int | None:
    """Validate ``n_threads`` (``None`` means every core, or ``RAYON_NUM_THREADS``).

    At most :data:`MAX_THREADS` (four per core, at least 64); more raises ``ValueError``.
    """
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise TypeError(f"n_threads: expected an integer or None, got {type(n_threads).__name__}")
    out = int(n_threads)
    if out < 1:
        raise ValueError(f"n_threads: must be >= 1 or None, got {out}")
    if out > MAX_THREADS:
        raise ValueError(
            f"n_threads: at most {MAX_THREADS} threads (4 x os.cpu_count(), at least 64), got {out}"
        )
    return out


def resolve_seed(seed: int | np.random.Generator | None) -> int:
    """Turn ``seed`` into the 64-bit integer the Rust generator takes.

    ``None`` draws fresh entropy from the operating system.
    """
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63, dtype=np.int64))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an int, a numpy Generator or None, got {type(seed)}")
    seed = int(seed)
    if not -(2**63) <= seed < 2**64:
        raise OverflowError(f"seed: must fit in 64 bits (-2**63 <= seed < 2**64), got {seed}")
    return seed % 2**64


def check_choice(value: Any, name: str, allowed: Sequence[Any]) -> Any:
    """Validate an option that must be one of ``allowed`` (compared with ``==``)."""
    if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
        raise ValueError(f"{name}: expected one of {list(allowed)}, got {value!r}")
    return value


def check_positive_float(value: Any, name: str) -> float:
    """Validate a real argument that must be finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    out = float(value)
    if not np.isfinite(out) or out <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {out}")
    return out


def check_optional_positive_int(value: Any, name: str, minimum: int = 1) -> int | None:
    """Like :func:`check_positive_int`, but ``None`` passes through."""
    return None if value is None else check_positive_int(value, name, minimum)


def renamed_argument(
    value: Any, old_value: Any, name: str, old_name: str, *, reason: str = "", stacklevel: int = 3
) -> Any:
    """Return the value of an argument that was renamed, warning when the old name is used.

    ``value`` is what the caller passed under the new name ``name`` (None when not given),
    ``old_value`` what it passed under ``old_name``. Passing both is a TypeError; the old name
    gives a DeprecationWarning (``stacklevel`` counts from the caller of this function, so the
    default points at the caller of the public function that calls it).
    """
    if old_value is None:
        return value
    if value is not None:
        raise TypeError(f"{name}: give {name}= or its deprecated alias {old_name}=, not both")
    warnings.warn(
        f"{old_name}= is deprecated and will be removed in semot 0.3; use {name}={reason}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return old_value
