"""A bound on the nesting depth of JSON that semot reads (manifests, headers, graphs, records).

Python's ``json`` module recurses once per nested array or object, and so do
``copy.deepcopy`` and ``json.dumps`` on what it returns: a file nested a few thousand levels
deep raises :class:`RecursionError` (a crash, not a format error), and one nested a few
hundred levels deep loads but cannot be copied. Every reader of a semot file checks the
depth first with :func:`json_depth_problem` (an iterative scan of the bytes, no recursion)
and raises its own format error; :func:`object_depth_problem` does the same for an object
handed over already parsed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_JSON_DEPTH", "json_depth_problem", "object_depth_problem"]

#: The deepest nesting of arrays and objects semot reads (the top-level value is depth 1).
MAX_JSON_DEPTH = 100
#: Bytes scanned at a time (bounds the temporary arrays of the scan).
_CHUNK = 1 << 24

_QUOTE = 0x22
#: +1 for "[" and "{", -1 for "]" and "}", 0 for every other byte.
_STEP = np.zeros(256, np.int32)
_STEP[[0x5B, 0x7B]] = 1
_STEP[[0x5D, 0x7D]] = -1
#: The bytes the scan looks at: brackets and quotes.
_SPECIAL = _STEP != 0
_SPECIAL[_QUOTE] = True


def _message(limit: int, where: str = "") -> str:
    return (
        f"JSON nested more than {limit} levels deep{where}; semot reads at most "
        f"{limit} levels of arrays and objects"
    )


def json_depth_problem(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Say where ``text`` nests arrays and objects deeper than ``limit``, or return None.

    Brackets inside strings do not count. The scan is iterative (numpy, chunk by chunk), so
    it never recurses, whatever the input; it does not validate the JSON otherwise.

    Parameters
    ----------
    text : str or bytes
        The JSON text (UTF-8 when bytes).
    limit : int, default :data:`MAX_JSON_DEPTH`
        The deepest nesting allowed (the top-level array or object is depth 1).

    Returns
    -------
    str or None
        A message naming the byte offset where the nesting first exceeds ``limit``.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return None
    # Inside a string a backslash always starts a two-byte escape, so once the pairs "\\"
    # are blanked out, a backslash before a quote marks an escaped quote, not a delimiter.
    # Blanking keeps byte offsets.
    raw = raw.replace(b"\\\\", b"  ").replace(b'\\"', b"  ")
    buf = np.frombuffer(raw, dtype=np.uint8)
    in_string = False
    depth = 0
    for lo in range(0, buf.shape[0], _CHUNK):
        chunk = buf[lo : lo + _CHUNK]
        special = np.flatnonzero(_SPECIAL[chunk])
        if not special.size:
            continue
        values = chunk[special]
        quotes = values == _QUOTE
        # Number of quotes before each special byte: odd means inside a string.
        parity = np.cumsum(quotes, dtype=np.int32) - quotes
        step = _STEP[values]
        step[((parity & 1) == 1) != in_string] = 0
        levels = np.cumsum(step, dtype=np.int32)
        levels += depth
        over = np.flatnonzero(levels > limit)
        if over.size:
            return _message(limit, f" (at byte {lo + int(special[over[0]])})")
        depth = int(levels[-1])
        in_string = in_string != bool(int(parity[-1] + quotes[-1]) & 1)
    return None


def object_depth_problem(data: Any, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Say whether ``data`` (dicts and lists, as from ``json.loads``) nests deeper than ``limit``.

    Iterative (level by level), so it never recurses; a container reached by several paths
    is visited once per level it appears at, and one that contains itself is infinitely deep.

    Returns
    -------
    str or None
        A message saying that the nesting exceeds ``limit``.
    """
    containers = (dict, list, tuple)
    if not isinstance(data, containers):
        return None
    # Breadth first, one level at a time; a container reached twice within a level once.
    level: dict[int, Any] = {id(data): data}
    for _ in range(limit):
        below: dict[int, Any] = {}
        for obj in level.values():
            for value in obj.values() if isinstance(obj, dict) else obj:
                if isinstance(value, containers):
                    below[id(value)] = value
        if not below:
            return None
        level = below
    return _message(limit)
