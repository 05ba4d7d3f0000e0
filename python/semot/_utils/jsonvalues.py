"""Values ready for strict JSON: the one conversion the reports and records share."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def json_ready(x: Any) -> Any:
    """Turn numpy scalars into Python numbers, NaN into None, tuples into lists, keys into str.

    Mappings and sequences are converted recursively; anything else is returned as it is.
    """
    if isinstance(x, Mapping):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
