from __future__ import annotations

import numpy as np
import pytest


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
