"""pytest-benchmark: Python end to end, from arrays to the distance matrix.

Measured run:  pytest benches --benchmark-enable --benchmark-json=bench-results/sliced.json
Smoke (CI):    CI=true pytest benches --benchmark-disable
The POT rows loop over a fixed sample of pairs; compare per-pair times.
"""

from __future__ import annotations

import numpy as np
import ot
import pytest

import semot

from conftest import SMOKE

GRID = [(16, 8, 4)] if SMOKE else [(256, 64, 256), (512, 32, 64), (128, 128, 256)]
L = 16 if SMOKE else 128


def data(n_clouds, n, d, dtype, uniform):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(n_clouds, n, d)).astype(dtype)
    w = (
        np.ones((n_clouds, n), dtype)
        if uniform
        else (rng.random((n_clouds, n)) + 0.1).astype(dtype)
    )
    return semot.PointClouds.from_padded(pts, w)


@pytest.mark.parametrize("shape", GRID, ids=lambda s: "N{}_n{}_d{}".format(*s))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("uniform", [False, True], ids=["general", "uniform"])
def test_exact_cdist(benchmark, shape, dtype, uniform):
    clouds = data(*shape, dtype, uniform)
    benchmark.group = f"exact cdist {shape}"
    D = benchmark(semot.sliced_wasserstein_cdist, clouds, clouds, n_projections=L, seed=0)
    assert D.shape == (shape[0], shape[0]) and np.isfinite(D).all()


@pytest.mark.parametrize("shape", GRID, ids=lambda s: "N{}_n{}_d{}".format(*s))
def test_quantile_cdist(benchmark, shape):
    clouds = data(*shape, np.float32, True)
    benchmark.group = f"quantile cdist {shape}"
    D = benchmark(
        semot.sliced_wasserstein_cdist, clouds, clouds, n_projections=L, seed=0, method="quantile"
    )
    assert np.isfinite(D).all()


def test_pot_loop_per_pair(benchmark):
    n, d = GRID[0][1], GRID[0][2]
    clouds = data(8, n, d, np.float64, False)
    proj = semot.random_projections(d, L, seed=0)

    def loop():
        return [
            ot.sliced_wasserstein_distance(clouds[i][0], clouds[j][0], clouds[i][1], clouds[j][1],
                                           projections=proj)
            for i in range(8) for j in range(8)
        ]  # fmt: skip

    benchmark.group = "POT loop, 64 pairs"
    out = benchmark(loop)
    assert len(out) == 64
