from __future__ import annotations

import importlib
import os
from types import ModuleType

import numpy as np
import pytest

# In CI (CI=true, as .ci/run sets) the optional collection stack must be installed: a missing
# torch / transformer-lens / sae-lens is an error there, never a silent skip.
STRICT_OPTIONAL = os.environ.get("CI", "").lower() in {"1", "true", "yes"} or (
    os.environ.get("SEMOT_REQUIRE_COLLECT") == "1"
)


def optional_import(name: str) -> ModuleType:
    """Import an optional dependency: skip the tests without it, except in CI (fail)."""
    if STRICT_OPTIONAL:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            pytest.fail(
                f"{name} is required in CI (pip install '.[test]' installs it): {e}",
                pytrace=False,
            )
    return pytest.importorskip(name)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def random_clouds(
    rng: np.random.Generator,
    n_clouds: int,
    d: int,
    sizes: tuple[int, int] = (2, 12),
    dtype: type = np.float64,
    uniform: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(n_clouds):
        n = int(rng.integers(sizes[0], sizes[1] + 1))
        pts = (rng.normal(size=(n, d)) + rng.normal(size=d)).astype(dtype)
        w = np.ones(n) if uniform else rng.random(n) + 0.05
        out.append((pts, w.astype(dtype)))
    return out
