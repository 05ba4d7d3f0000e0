"""Ground-truth recovery on planted models, the scoring, the properties, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import semot
from semot.bench.planted import property_checks, score
from semot.cli.app import main
from semot.matching.baselines import centroid_match, decoder_cosine_match
from semot.matching.matcher import auto_threshold, matches_from_distances
from semot.synthetic.planted import collect_planted, make_planted_model, save_planted_run


@pytest.fixture(scope="module", params=[0, 1, 2])
def planted(request):
    seed = request.param
    m = make_planted_model(seed=seed)
    fds, _ = collect_planted(m, range(4), n_tokens=50_000, samples_per_feature=64, seed=seed)
    return m, fds


def test_semot_recovers_planted_targets_at_every_layer_distance(planted):
    # Measured over seeds 0-3 (50k tokens, n = 64): top-1 between 0.80 and 0.96.
    m, fds = planted
    for tl in (1, 2, 3):
        got = score(semot.match(fds[0], fds[tl], k=5), m.truth(0, tl))
        assert got["top1"] >= 0.7, (tl, got)
        assert got["top5"] >= got["top1"]


def test_decoder_cosine_fades_with_distance_and_semot_does_not(planted):
    # Measured: decoder cosine 0.42-0.45 at distance 3, semot 0.86-0.91.
    m, fds = planted
    truth = m.truth(0, 3)
    dec = score(decoder_cosine_match(m.saes[0].W_dec, m.saes[3].W_dec), truth)["top1"]
    sem = score(semot.match(fds[0], fds[3], k=1), truth)["top1"]
    assert dec < 0.6
    assert sem > dec + 0.25


def test_one_to_one_output_is_a_valid_matching(planted):
    _, fds = planted
    r = semot.match(fds[0], fds[1], assignment="one-to-one")
    assert r["source"].is_unique
    assigned = r["target"].dropna()
    assert assigned.is_unique
    assert len(r) == len(fds[0].fired_ids)


def test_score_by_hand():
    frame = pd.DataFrame(
        {
            "source": [0, 0, 1, 1, 2, 2, 3, 3],
            "target": pd.array([5, 6, 7, 5, 6, 7, 8, 5], dtype="Int64"),
            "rank": [1, 2, 1, 2, 1, 2, 1, 2],
            "distance": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 1.0],
            "matched": [True, False, True, False, False, False, False, False],
        }
    )
    truth = [{5}, {5}, set(), {9}]
    got = score(frame, truth)
    assert got["top1"] == pytest.approx(1 / 3)  # source 0 right; 1 and 3 wrong at rank 1
    assert got["top5"] == pytest.approx(2 / 3)  # source 1 has 5 at rank 2
    # Declared none: sources 2 and 3; truly none: source 2.
    assert got["none_precision"] == pytest.approx(1 / 2)
    assert got["none_recall"] == pytest.approx(1.0)


def test_auto_threshold_is_the_midpoint_of_medians():
    rng = np.random.default_rng(0)
    d = rng.random((7, 5))
    m = matches_from_distances(d, k=5, threshold="auto")
    srt = np.sort(d, axis=1)
    want = 0.5 * (np.median(srt[:, 0]) + np.median(srt[:, 1]))
    best = m[m["rank"] == 1]
    np.testing.assert_array_equal(best["matched"].to_numpy(), srt[:, 0] <= want)
    pairs = np.array([[0, 0]])
    assert auto_threshold(pairs, np.array([1.0])) == float("inf")


def test_thresholds_at_the_edges():
    d = np.random.default_rng(1).random((6, 4)) + 1.0
    for assignment in ("nearest", "one-to-one"):
        all_in = matches_from_distances(d, assignment=assignment, threshold=10.0, k=1)
        # 6 sources, 4 targets: one-to-one can match only 4, and matches exactly those.
        assert all_in["matched"].sum() == (6 if assignment == "nearest" else 4)
        assert (all_in["matched"] == all_in["target"].notna()).all()
        none = matches_from_distances(d, assignment=assignment, threshold=0.5, k=1)
        assert not none["matched"].any()
    with pytest.raises(ValueError, match="threshold"):
        matches_from_distances(d, threshold="sometimes")  # type: ignore[arg-type]


def test_centroid_baseline_brute_force(planted):
    _m, fds = planted
    src, tgt = fds[0], fds[2]
    r = centroid_match(src, tgt, k=1)
    for s in (0, 5, 17):
        pts, w = src.cloud(s)
        cs = (w[:, None].astype(np.float64) * pts).sum(0) / w.sum()
        dists = []
        for t in range(len(tgt)):
            p2, w2 = tgt.cloud(t)
            ct = (w2[:, None].astype(np.float64) * p2).sum(0) / w2.sum()
            dists.append(np.linalg.norm(cs - ct))
        assert int(r[r["source"] == s]["target"].iloc[0]) == int(np.argmin(dists))


def test_properties_rescaling_is_exact_and_stability_is_bounded():
    props = property_checks(seed=0, n_tokens=20_000)
    assert props["rescaling"]["same_samples"]
    assert props["rescaling"]["max_abs_distance_change"] == 0.0
    for s in props["stability"]:
        assert s["max_change"] <= s["bound"] + 1e-6
    kept = [r["kept"] for r in props["recovery"]]
    assert kept == sorted(kept, reverse=True)  # a larger margin keeps fewer matches


def test_cli_match_on_a_saved_run(tmp_path, capsys):
    m = make_planted_model(n_layers=2, d_model=32, n_atoms=50, n_families=6, n_shape_pairs=2)
    fds, _ = collect_planted(m, [0, 1], n_tokens=10_000, samples_per_feature=16)
    run = save_planted_run(fds, tmp_path / "run")
    out = tmp_path / "m.csv"
    assert main(["match", str(run), "--from", "0", "--to", "layer1", "--k", "3",
                 "--threshold", "auto", "--out", str(out)]) == 0  # fmt: skip
    got = pd.read_csv(out)
    want = semot.match(fds[0], fds[1], k=3, threshold="auto")
    np.testing.assert_array_equal(got["target"], want["target"].to_numpy(np.int64))
    np.testing.assert_allclose(got["distance"], want["distance"])
    assert "matched" in capsys.readouterr().out
    assert main(["match", str(run), "--from", "7", "--to", "0", "--out", str(out)]) == 2
    assert "no such site" in capsys.readouterr().err
    assert main(["match", str(run), "--from", "0", "--to", "1", "--out", "x.txt"]) == 2


def test_demo_writes_its_report(tmp_path, capsys):
    from semot.bench.demo import run

    res = run(tmp_path / "rep", n_tokens=20_000, samples_per_feature=32, verbose=False)
    names = {f.name for f in res.files}
    assert {"accuracy.png", "heatmap.png", "examples.png", "results.json"} <= names
    # the feature browser of the planted run, with its synthetic tokens' strings
    browser = tmp_path / "rep" / "browser"
    assert (browser / "index.html") in res.files
    meta = (browser / "data" / "meta.js").read_text()
    assert '"chain":[0,1,2,3]' in meta and '"supernodes":true' in meta
    assert (browser / "pairs.parquet").is_file() and (browser / "supernodes.json").is_file()
    from semot.synthetic.planted import make_planted_model

    words = make_planted_model(seed=0).vocabulary()
    assert len(set(words)) == len(words)
    data = json.loads((tmp_path / "rep" / "results.json").read_text())
    methods = {r["method"] for r in data["results"]}
    assert {
        "semot sliced",
        "centroid",
        "decoder cosine",
        "SAE Match",
        "activation corr.",
    } <= methods
    # The table has every method at every layer distance.
    assert res.table.shape[1] == 3
    assert res.table.notna().all().all()
