"""Memory estimates: refuse a call whose buffers cannot fit before anything is allocated.

Every bulk function knows, from the sizes of its arguments alone, how many bytes its
largest buffers take (the output, the sorted projections, the embeddings, one cost matrix
per thread). :func:`check_memory` compares that estimate with the memory available and
raises ``MemoryError`` naming the argument that makes the call too big, instead of letting
the allocation fail in the core (which could only abort the process).

The limit is the memory available to the process (``MemAvailable`` of ``/proc/meminfo``, or
``os.sysconf`` free pages where there is no ``/proc``). Set the environment variable
``SEMOT_MEMORY_LIMIT`` to override it: a number of bytes, optionally with a unit suffix
(``"512M"``, ``"8G"``, ``"1.5T"``), or ``"none"`` to disable the check (the core's fallible
allocations still turn a failed allocation into ``MemoryError``).
"""

from __future__ import annotations

import math
import os

__all__ = ["available_memory", "check_memory", "format_bytes", "memory_limit"]

#: Environment variable that overrides the memory limit (see the module documentation).
LIMIT_ENV = "SEMOT_MEMORY_LIMIT"

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


def available_memory() -> int | None:
    """Bytes of memory available to the process now, or None when it cannot be told."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return int(pages) * int(size) if pages > 0 and size > 0 else None


def memory_limit() -> int | None:
    """Return the limit :func:`check_memory` applies, in bytes (None: no limit).

    ``SEMOT_MEMORY_LIMIT`` if set, else the available memory.

    Raises
    ------
    ValueError
        When ``SEMOT_MEMORY_LIMIT`` is set but is not a size.
    """
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return available_memory()
    if raw.lower() in ("none", "off"):
        return None
    text = raw.upper().removesuffix("B").removesuffix("I")
    unit = text[-1] if text and text[-1] in _UNITS else ""
    number = text[: len(text) - len(unit)] if unit else text
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(
            f"{LIMIT_ENV}: expected a number of bytes such as 8G or 512M, or 'none', got {raw!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{LIMIT_ENV}: must be a positive size or 'none', got {raw!r}")
    return int(value)


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest unit that keeps a number >= 1 (``3.7 TB``, ``22 GB``)."""
    for unit, factor in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= factor:
            value = n / factor
            if value >= 1e6:
                return f"{n:.3g} bytes"
            return f"{value:.2g} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(n)} bytes"


def check_memory(nbytes: float, name: str, what: str) -> None:
    """Raise ``MemoryError`` when a call's buffers of ``nbytes`` bytes exceed the limit.

    Parameters
    ----------
    nbytes : float
        Estimated bytes the call allocates (may exceed any native integer; a float is fine).
    name : str
        The argument that makes the call this big; the message starts with it.
    what : str
        What takes the memory, for the message (``"10**9 projections of d=3"``).

    Raises
    ------
    MemoryError
        ``"<name>: <what> need 3.7 TB, more than the 22 GB available"``.
    """
    limit = memory_limit()
    if limit is None or nbytes <= limit:
        return
    if os.environ.get(LIMIT_ENV, "").strip():
        source = f"the {format_bytes(limit)} allowed by {LIMIT_ENV}"
    else:
        source = f"the {format_bytes(limit)} available (set {LIMIT_ENV} to change the limit)"
    raise MemoryError(f"{name}: {what} need {format_bytes(nbytes)}, more than {source}")
