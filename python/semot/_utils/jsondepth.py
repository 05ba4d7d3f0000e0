"""A bound on the nesting depth of JSON that semot reads (manifests, headers, graphs, records).

Python's ``json`` module recurses once per nested array or object, and so do
``copy.deepcopy`` and ``json.dumps`` on what it returns: a file nested a few thousand levels
deep raises :class:`RecursionError` (a crash, not a format error), and one nested a few
hundred levels deep loads but cannot be copied. Every reader of a semot file checks the
depth first with :func:`json_depth_problem` (linear passes over the bytes, no recursion)
and raises its own format error; :func:`object_depth_problem` does the same for an object
handed over already parsed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_JSON_DEPTH", "json_depth_problem", "object_depth_problem"]

#: The deepest nesting of arrays and objects semot reads (the top-level value is depth 1).
MAX_JSON_DEPTH = 100
#: Every byte but quotes and brackets: deleted before the scan.
_NOT_SPECIAL = bytes(sorted(set(range(256)) - set(b'"[]{}')))
#: +1 for "[" and "{", -1 for "]" and "}".
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def _message(limit: int) -> str:
    return (
        f"JSON nested more than {limit} levels deep; semot reads at most {limit} levels of "
        "arrays and objects"
    )


def json_depth_problem(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Say whether ``text`` nests arrays and objects deeper than ``limit`` (None if not).

    Brackets inside strings do not count. The scan is a few linear passes (``bytes``
    methods, one regular expression, one cumulative sum), so it never recurses, whatever
    the input; it does not validate the JSON otherwise.

    Parameters
    ----------
    text : str or bytes
        The JSON text (UTF-8 when bytes).
    limit : int, default :data:`MAX_JSON_DEPTH`
        The deepest nesting allowed (the top-level array or object is depth 1).

    Returns
    -------
    str or None
        A message saying that the nesting exceeds ``limit``.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return None
    # Inside a string a backslash always starts a two-byte escape, so once the pairs "\\"
    # are gone, a backslash before a quote marks an escaped quote, not a delimiter. Then
    # only quotes and brackets matter: the other bytes are deleted (in C), and a bracket
    # counts when an even number of quotes comes before it (outside every string).
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    special = np.frombuffer(raw.translate(None, _NOT_SPECIAL), dtype=np.uint8)
    quotes = special == ord('"')
    outside = (np.cumsum(quotes, dtype=np.int64) & 1) == 0
    outside &= ~quotes
    levels = np.cumsum(_STEP[special[outside]], dtype=np.int64)
    if levels.size and int(levels.max()) > limit:
        return _message(limit)
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
