"""Supernodes: recovery of planted groups, constraints, cuts, and the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from semot.circuits.compress import compress, group_nodes, profile_distances, run_layer
from semot.circuits.graph import AttributionGraph
from semot.cli.app import main
from semot.grouping.metrics import agreement, silhouette
from semot.synthetic.graph import planted_graph
from semot.synthetic.planted import collect_planted, make_planted_model, save_planted_run

DATA = Path(__file__).resolve().parent / "data" / "graphs"


@pytest.fixture(scope="module", params=[0, 1])
def planted(request):
    seed = request.param
    m = make_planted_model(seed=seed)
    graph_json, truth = planted_graph(m, seed=seed)
    fds, _ = collect_planted(m, range(m.n_layers), n_tokens=40_000, samples_per_feature=64)
    return AttributionGraph.from_dict(graph_json), truth, fds


def _feature_ari(graph, labels, truth):
    feats = np.array([i for i, k in enumerate(graph.kinds) if k == "feature"])
    return agreement(labels, truth, nodes=feats)["ari"]


def test_semantic_supernodes_recover_planted_groups(planted):
    # Measured on seeds 0-5 (40k tokens, n = 64), ARI over feature nodes at the planted number
    # of groups: single linkage 0.71-1.00, average linkage 0.90-1.00; graph-only profiles
    # 0.27-0.51.
    graph, truth, fds = planted
    ratio = (truth.max() + 1) / graph.n_nodes
    res = compress(graph, fds, target_ratio=ratio)
    ari = _feature_ari(graph, res.labels, truth)
    assert ari >= 0.6, res.report
    assert res.report["n_groups"] == truth.max() + 1
    avg = compress(graph, fds, target_ratio=ratio, linkage="average")
    assert _feature_ari(graph, avg.labels, truth) >= 0.8
    profiles = compress(graph, target_ratio=ratio)
    assert _feature_ari(graph, profiles.labels, truth) < ari - 0.15


def test_non_feature_nodes_never_merge(planted):
    graph, _, fds = planted
    res = compress(graph, fds, threshold=1e9)
    other = [i for i, k in enumerate(graph.kinds) if k != "feature"]
    counts = np.bincount(res.labels)
    assert all(counts[res.labels[i]] == 1 for i in other)
    feats = [i for i, k in enumerate(graph.kinds) if k == "feature"]
    assert len(set(res.labels[feats])) == 1  # an infinite threshold joins every feature


def test_constraints_hold(planted):
    graph, _, fds = planted
    res = compress(graph, fds, threshold=1e9, same_position=True)
    for g in np.unique(res.labels):
        assert len(set(graph.positions[res.labels == g])) == 1
    res = compress(graph, fds, threshold=1e9, layer_window=0)
    for g in np.unique(res.labels):
        assert len(set(graph.layers[res.labels == g])) == 1
    res = compress(graph, fds, target_ratio=0.7, connected=True)
    linked = set(zip(graph.src.tolist(), graph.dst.tolist(), strict=True))
    for g in np.unique(res.labels):
        members = np.flatnonzero(res.labels == g)
        if len(members) < 2:
            continue
        # Connected in the undirected link graph restricted to the group: grow from one member.
        seen, todo = {int(members[0])}, [int(members[0])]
        mset = set(members.tolist())
        while todo:
            x = todo.pop()
            for y in mset - seen:
                if (x, y) in linked or (y, x) in linked:
                    seen.add(y)
                    todo.append(y)
        assert seen == mset


def test_unreachable_ratio_warns_and_merges_all_it_can(planted):
    graph, _, fds = planted
    fixed = sum(k != "feature" for k in graph.kinds)
    with pytest.warns(UserWarning, match="never merge"):
        res = compress(graph, fds, target_ratio=fixed / graph.n_nodes / 2)
    assert res.report["n_groups"] == fixed + 1


def test_missing_distributions_stay_unmerged(planted):
    graph, _, fds = planted
    partial = {x: fds[x] for x in (0, 1, 2)}
    with pytest.warns(UserWarning, match="no distribution"):
        res = compress(graph, partial, threshold=1e9)
    last = [i for i, k in enumerate(graph.kinds) if k == "feature" and graph.layers[i] == 3]
    assert last and len(res.missing) == len(last)
    counts = np.bincount(res.labels)
    assert all(counts[res.labels[i]] == 1 for i in last)


def test_auto_cut_and_average_linkage(planted):
    graph, truth, fds = planted
    # Measured on seeds 0-5: the silhouette cut gives ARI 0.91-1.00.
    res = compress(graph, fds, auto=True)
    assert res.cut["silhouette"] > 0
    assert _feature_ari(graph, res.labels, truth) >= 0.8
    avg = compress(graph, fds, target_ratio=0.7, linkage="average")
    assert avg.report["n_groups"] == round(0.7 * graph.n_nodes)


def test_silhouette_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 0, 1])
    want = []
    for i in range(12):
        own = [j for j in range(12) if labels[j] == labels[i] and j != i]
        if not own:
            want.append(0.0)
            continue
        a = np.mean([d[i, j] for j in own])
        b = min(
            np.mean([d[i, j] for j in range(12) if labels[j] == c])
            for c in set(labels.tolist()) - {labels[i]}
        )
        want.append((b - a) / max(a, b))
    assert silhouette(d, labels) == pytest.approx(np.mean(want))


def test_profile_distance_brute_force():
    graph = AttributionGraph.from_dict(_tiny_graph())
    feats = [i for i, k in enumerate(graph.kinds) if k == "feature"]
    d = profile_distances(graph, feats)
    a = np.abs(graph.adjacency().toarray())
    for x, y in itertools.combinations(range(len(feats)), 2):

        def prof(i):
            inc, out = a[i], a[:, i]
            inc = inc / inc.sum() if inc.sum() else inc
            out = out / out.sum() if out.sum() else out
            inc = inc / np.linalg.norm(inc) if np.linalg.norm(inc) else inc
            out = out / np.linalg.norm(out) if np.linalg.norm(out) else out
            return np.concatenate([inc, out]) / np.sqrt(2)

        want = 1 - np.clip(prof(feats[x]) @ prof(feats[y]), 0, 1)
        assert d[x, y] == pytest.approx(want)


def test_errors():
    graph = AttributionGraph.from_dict(_tiny_graph())
    feats = [i for i, k in enumerate(graph.kinds) if k == "feature"]
    d = profile_distances(graph, feats)
    with pytest.raises(ValueError, match="exactly one"):
        group_nodes(graph, d, feats, threshold=0.1, auto=True)
    with pytest.raises(ValueError, match="not a feature node"):
        group_nodes(graph, np.zeros((2, 2)), [0, 1], threshold=0.1)
    with pytest.raises(ValueError, match="shape"):
        group_nodes(graph, d[:1], feats, threshold=0.1)
    bad = d.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        group_nodes(graph, bad, feats, threshold=0.1)
    with pytest.raises(ValueError, match="target_ratio"):
        group_nodes(graph, d, feats, target_ratio=1.5)
    with pytest.raises(ValueError, match="layer"):
        run_layer(type("X", (), {"metadata": {"hook": "resid"}})())


def test_cli_compress_planted(tmp_path, capsys):
    m = make_planted_model(seed=0)
    graph_json, _ = planted_graph(m, seed=0)
    gpath = tmp_path / "g.json"
    gpath.write_text(json.dumps(graph_json))
    fds, _ = collect_planted(m, range(m.n_layers), n_tokens=20_000, samples_per_feature=32)
    run = save_planted_run(fds, tmp_path / "run")
    out = tmp_path / "out.json"
    args = ["compress", str(gpath), "--distributions", str(run), "--target-ratio", "0.6",
            "--out", str(out), "--compressed", str(tmp_path / "c.json"),
            "--report", str(tmp_path / "r.json")]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "compression" in text and "ARI" in text
    back = AttributionGraph.load(out)
    assert back.raw["qParams"]["supernodes"]
    AttributionGraph.load(tmp_path / "c.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["compression_ratio"] == pytest.approx(0.6, abs=0.02)
    assert main(["compress", str(gpath), "--out", str(out)]) == 2  # no cut chosen
    assert "one of" in capsys.readouterr().err


@pytest.mark.skipif(not (DATA / "calc-36-plus-59.json").exists(), reason="no real graph copy")
def test_graph_only_grouping_on_a_real_graph(tmp_path):
    graph = AttributionGraph.load(DATA / "calc-36-plus-59.json")
    res = compress(graph, target_ratio=0.5)
    assert "agreement" in res.report or "ari" in json.dumps(res.report)
    assert res.report["compression_ratio"] == pytest.approx(0.5, abs=0.03)
    res.graph.save(tmp_path / "out.json")
    again = AttributionGraph.load(tmp_path / "out.json")
    assert again.raw["nodes"] == graph.raw["nodes"]


def _tiny_graph():
    def node(nid, kind, layer, pos, clerp=""):
        return {"node_id": nid, "feature": 0, "layer": layer, "ctx_idx": pos,
                "feature_type": kind, "jsNodeId": nid, "clerp": clerp}  # fmt: skip

    nodes = [
        node("E_1_0", "embedding", "E", 0),
        node("E_2_1", "embedding", "E", 1),
        node("0_5_0", "cross layer transcoder", "0", 0, "cats"),
        node("0_6_1", "cross layer transcoder", "0", 1, "dogs"),
        node("1_7_1", "cross layer transcoder", "1", 1, "pets"),
        node("1_8_1", "cross layer transcoder", "1", 1, "animals"),
        node("3_9_1", "logit", "3", 1, 'Output "x" (p=0.5)'),
    ]
    links = [
        ("E_1_0", "0_5_0", 1.0), ("E_2_1", "0_6_1", 2.0), ("0_5_0", "1_7_1", 0.5),
        ("0_6_1", "1_7_1", -0.5), ("0_5_0", "1_8_1", 0.4), ("0_6_1", "1_8_1", 0.6),
        ("1_7_1", "3_9_1", 1.0), ("1_8_1", "3_9_1", 0.8),
    ]  # fmt: skip
    return {
        "metadata": {"slug": "tiny", "scan": "test", "prompt_tokens": ["a", "b"], "prompt": "ab"},
        "qParams": {
            "pinnedIds": [],
            "supernodes": [],
            "linkType": "both",
            "clickedId": "",
            "sg_pos": "",
        },
        "nodes": nodes,
        "links": [{"source": s, "target": t, "weight": w} for s, t, w in links],
    }
