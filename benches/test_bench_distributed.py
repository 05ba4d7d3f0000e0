"""pytest-benchmark: semot.distributed on a 2-worker LocalCluster against one process.

Measured run:  pytest benches/test_bench_distributed.py --benchmark-enable
Report:        python benches/distributed_report.py  (overhead and the 26-layer projection)
"""

from __future__ import annotations

import numpy as np
import pytest

import semot

from conftest import SMOKE

pytest.importorskip("distributed")

from distributed import Client, LocalCluster

import semot.distributed as sd

import distributed_report

SHAPE = (64, 16, 32, 16) if SMOKE else (512, 64, 256, 128)  # N, n, d, L


@pytest.fixture(scope="module")
def data():
    N, n, d, L = SHAPE
    rng = np.random.default_rng(0)
    a, b = distributed_report.make(N, n, d, rng), distributed_report.make(N, n, d, rng)
    return a, b, semot.random_projections(d, L, seed=0)


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def test_one_process_two_threads(benchmark, data):
    a, b, proj = data
    benchmark.group = f"exact cdist {SHAPE}"
    D = benchmark(semot.sliced_wasserstein_cdist, a, b, projections=proj, n_threads=2)
    assert np.isfinite(D).all()


def test_localcluster_two_workers(benchmark, data, client):
    a, b, proj = data
    benchmark.group = f"exact cdist {SHAPE}"
    D = benchmark(
        sd.sliced_wasserstein_cdist, a, b, client=client, projections=proj, progress=False,
        block_size=SHAPE[0] // 2,
    )  # fmt: skip
    assert np.array_equal(D, semot.sliced_wasserstein_cdist(a, b, projections=proj))


def test_report_quick(capsys):
    if not SMOKE:
        pytest.skip("the full report is run by hand: python benches/distributed_report.py")
    result = distributed_report.main(["--quick"])
    assert result["bit_identical"] and "overhead" in capsys.readouterr().out
