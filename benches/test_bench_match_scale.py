"""pytest-benchmark: ``semot.match`` with quantile-knn candidates and exact re-ranking.

Measured run:  pytest benches/test_bench_match_scale.py --benchmark-enable
Full size:     python benches/match_scale_report.py  (16384 x 16384, stage times, peer ratios)
Smoke (CI):    SEMOT_BENCH_SMOKE=1 pytest benches/test_bench_match_scale.py --benchmark-disable

The same workload and pipeline as the report at a size that runs in seconds. Besides timing,
it checks the candidate search honestly: the rank-1 target of ``match`` must be the
brute-force exact top-1 over ALL targets for at least 99 % of a sample of sources.
"""

from __future__ import annotations

import numpy as np
import pytest

import semot

from conftest import SMOKE
from match_scale_report import exact_recall, make_workload, measure, rank1_targets, table

N = 512 if SMOKE else 2048
D, L, Q, K = 256, 128, 32, 32
SAMPLE = 200


@pytest.fixture(scope="module", params=[True, False], ids=["uniform", "general"])
def workload(request):
    return make_workload(N, 64, D, seed=0, uniform=request.param), request.param


def test_match_quantile_knn_recall(benchmark, workload):
    (src, tgt, truth), uniform = workload
    benchmark.group = f"match {N}x{N}, quantile-knn k={K} + exact"
    m = benchmark.pedantic(
        semot.match,
        args=(src, tgt),
        kwargs=dict(
            distance="sliced",
            k=1,
            candidates="quantile-knn",
            n_candidates=K,
            n_projections=L,
            n_quantiles=Q,
            seed=0,
        ),
        rounds=1 if SMOKE else 3,
        iterations=1,
    )
    assert len(m) == N
    got, dist = rank1_targets(m, N)
    rows = np.sort(np.random.default_rng(1).choice(N, SAMPLE, replace=False))
    proj = semot.random_projections(D, L, seed=0)
    rec = exact_recall(src, tgt, got, rows, proj)
    assert rec["recall"] >= 0.99, (
        f"recall of the exact top-1 {rec['hits']}/{rec['n']} "
        f"({'uniform' if uniform else 'general'} weights)"
    )
    # The reported distances are the exact ones.
    exact = semot.sliced_wasserstein_pairs(
        src, tgt, np.stack([rows, got[rows]], 1), projections=proj
    )
    np.testing.assert_allclose(dist[rows], exact, rtol=1e-6)
    # The workload is not trivial: siblings compete, yet the planted truth mostly wins.
    assert 0.3 < np.mean(got == truth) < 1.0


def test_report_runs():
    r = measure(128, recall_sample=32, pot_pairs=4, n_candidates=8, uniform=False)
    assert r["recall_n"] == 32 and r["times"]["total"] > 0
    assert set(r["times"]) == {"embedding", "knn", "rerank", "frame", "other", "total"}
    assert all(v > 0 for k, v in r["times"].items() if k != "other")
    assert "| **total `match()`** |" in table([r], 1)
