r"""JSON that is safe inside an HTML ``<script>`` element or a ``.js`` file a page loads.

The one implementation every page semot writes uses (the circuit view of
:mod:`semot.circuits.html_page`, the feature browser of :mod:`semot.browser`): ``<``, ``>``
and ``&`` become ``\u003c``, ``\u003e`` and ``\u0026``, so no string in the data can end
the element (``</script``) or open a comment (``<!--``), and the line separators U+2028 and
U+2029 become escapes too (older JavaScript parsers end a line there). The text is still
JSON, and a JavaScript expression that evaluates to the same value.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_for_script"]

_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_TABLE = str.maketrans(_ESCAPES)


def json_for_script(obj: Any) -> str:
    """Return compact JSON of ``obj`` that cannot close or comment out a ``<script>``.

    Parameters
    ----------
    obj : JSON-able
        Strict JSON values only (``allow_nan=False``: NaN and infinities raise ValueError).

    Returns
    -------
    str
        ``json.dumps(obj)`` without spaces and non-ASCII escaped only where listed above.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_TABLE)
