"""Attribution-graph I/O (semot.circuits.graph) on real and hand-written graphs, and the metrics
(semot.circuits.metrics, semot.grouping.metrics)."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semot.circuits.graph import AttributionGraph
from semot.circuits.graph_format import MAX_PINS
from semot.circuits.metrics import (
    edge_weight_split,
    graph_report,
    influence_preserved,
    input_influence,
    node_influence,
)
from semot.errors import GraphFormatError
from semot.grouping.metrics import agreement, coherence, compression_ratio

LOCAL = Path(__file__).resolve().parent / "data" / "graphs"
# The shared data folder sits next to the repository; CI clones the repository alone, so the
# graphs there are optional (SEMOT_GRAPH_DATA points elsewhere, e.g. from a git worktree).
SHARED = Path(
    os.environ.get("SEMOT_GRAPH_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "graphs"
)
CALC_SHA256 = "a4f8f3db79172a0eed5b033166fed77dd40a03bafe9174ecfa619c86db6eb92e"

# name -> (nodes, (feature, error, embedding, logit), links, supernodes, members, member id)
# as listed in shared/data/graphs/README.md
REAL = {
    "calc-36-plus-59": (88, (73, 7, 7, 1), 2099, 15, 28, "jsNodeId"),
    "capital-state-dallas": (94, (71, 11, 11, 1), 2205, 6, 48, "jsNodeId"),
    "gemma-small-big-en": (694, (563, 112, 9, 10), 23559, 5, 13, "node_id"),
}


def real_path(name: str) -> Path:
    for folder in (SHARED, LOCAL):
        p = folder / f"{name}.json"
        if p.is_file():
            return p
    pytest.skip(f"{name}.json not found: the shared data folder {SHARED} is absent")


@pytest.fixture(scope="module", params=sorted(REAL))
def real(request: pytest.FixtureRequest) -> tuple[str, Path, AttributionGraph]:
    path = real_path(request.param)
    return request.param, path, AttributionGraph.load(path)


# ------------------------------------------------------------------ real graphs


def test_bundled_copy_is_the_original() -> None:
    local = LOCAL / "calc-36-plus-59.json"
    assert hashlib.sha256(local.read_bytes()).hexdigest() == CALC_SHA256
    graph = AttributionGraph.load(local)
    assert (graph.n_nodes, graph.n_links) == (88, 2099)
    shared = SHARED / "calc-36-plus-59.json"
    if shared.is_file():
        assert shared.read_bytes() == local.read_bytes()


def test_real_graph_loads_and_round_trips(real, tmp_path: Path) -> None:
    name, path, graph = real
    n, kind_counts, n_links, *_ = REAL[name]
    assert graph.n_nodes == n and graph.n_links == n_links
    assert tuple(graph.kinds.count(k) for k in ("feature", "error", "embedding", "logit")) == (
        kind_counts
    )
    original = json.loads(path.read_text(encoding="utf-8"))
    assert graph.to_dict() == original
    out = tmp_path / "again.json"
    graph.save(out)
    again = AttributionGraph.load(out)
    assert again.to_dict() == original
    assert again.node_ids == graph.node_ids and again.clerps == graph.clerps
    np.testing.assert_array_equal(again.src, graph.src)
    np.testing.assert_array_equal(again.weight, graph.weight)
    assert graph.warnings == []
    # What the format document says holds for every real file.
    assert np.all(graph.layers[graph.src] < graph.layers[graph.dst])
    assert np.all(graph.positions[graph.src] <= graph.positions[graph.dst])
    assert graph.prompt_tokens == original["metadata"]["prompt_tokens"]
    assert len(graph.prompt_tokens) == graph.positions.max() + 1
    kinds = np.array(graph.kinds)
    assert np.all(graph.layers[kinds == "embedding"] == -1)
    assert np.all(graph.layers[kinds == "logit"] == graph.layers[kinds != "logit"].max() + 1)
    assert np.all((graph.feature_index >= 0) == (kinds == "feature"))


def test_real_hand_supernodes_resolve(real) -> None:
    name, _, graph = real
    *_, n_groups, n_members, member_id = REAL[name]
    hand = graph.hand_supernodes()
    assert len(hand) == n_groups
    assert sum(len(m) for _, m in hand) == n_members
    written = graph.raw["qParams"]["supernodes"]
    assert [label for label, _ in hand] == [entry[0] for entry in written]
    nodes = graph.raw["nodes"]
    for (_, members), entry in zip(hand, written, strict=True):
        assert [nodes[i][member_id] for i in members] == entry[1:]
        # the scan's key convention is what the file uses
        assert [graph.keys[i] for i in members] == entry[1:]
    labels = graph.labels_from_supernodes(hand)
    assert labels.max() + 1 == graph.n_nodes - n_members + n_groups


def test_unresolved_members_are_dropped_and_reported() -> None:
    data = json.loads((LOCAL / "calc-36-plus-59.json").read_text(encoding="utf-8"))
    data["qParams"]["supernodes"][0].append("99_123_-0")
    data["qParams"]["supernodes"].append(["nothing here", "nope"])
    data["qParams"]["pinnedIds"].append("also-nope")
    graph = AttributionGraph.from_dict(data)
    hand = graph.hand_supernodes()
    assert len(hand) == 15 and sum(len(m) for _, m in hand) == 28
    text = "\n".join(graph.warnings)
    assert "'99_123_-0'" in text and "'nope'" in text and "nothing here" in text
    assert "pinnedIds" in text and "also-nope" in text


def test_target_logit_falls_back_to_token_prob() -> None:
    graph = AttributionGraph.load(LOCAL / "calc-36-plus-59.json")
    nodes = graph.raw["nodes"]
    assert not any(n["is_target_logit"] for n in nodes)
    assert graph.node_ids[graph.target_logit()] == "18_12424133_7"


def test_target_logit_flagged(real) -> None:
    _, _, graph = real
    t = graph.target_logit()
    assert graph.kinds[t] == "logit"
    logits = [i for i, k in enumerate(graph.kinds) if k == "logit"]
    probs = [graph.raw["nodes"][i]["token_prob"] for i in logits]
    assert t == logits[int(np.argmax(probs))]


def test_leaked_supernode_labels_are_stripped_from_clerps(real) -> None:
    _, _, graph = real
    raw = [n.get("clerp", "") for n in graph.raw["nodes"]]
    assert not any(c.startswith("[") for c in graph.clerps)
    changed_at = [i for i, (r, c) in enumerate(zip(raw, graph.clerps, strict=True)) if r != c]
    changed = [(raw[i], graph.clerps[i]) for i in changed_at]
    in_groups = {i for _, m in graph.hand_supernodes() for i in m}
    assert set(changed_at) <= in_groups
    if graph.slug == "calc-36-plus-59":
        assert ("[36] _36 (width 5)", "_36 (width 5)") in changed
        assert ("[36]", "36") in changed
        assert ("[~59] _59 (width 2)", "_59 (width 2)") in changed
        # unchanged raw JSON
        assert "[36] _36 (width 5)" in raw


def test_feature_index_from_node_id() -> None:
    path = real_path("gemma-small-big-en")
    graph = AttributionGraph.load(path)
    i = graph.node_ids.index("1_14137_1")
    assert graph.feature_index[i] == 14137 and graph.layers[i] == 1
    err = graph.node_ids.index("0_0_1")  # error node: `0_<layer>_<pos>`
    assert graph.kinds[err] == "error" and graph.feature_index[err] == -1


def test_real_metrics(real) -> None:
    _, _, graph = real
    hand = graph.hand_supernodes()
    labels = graph.labels_from_supernodes(hand)
    report = graph_report(graph, labels, hand=hand)
    assert report["compression_ratio"] == pytest.approx((labels.max() + 1) / graph.n_nodes)
    split = report["edge_weight_split"]
    assert split["inside"] + split["across"] == pytest.approx(1.0)
    assert split["n_links_inside"] + split["n_links_across"] == graph.n_links
    assert report["agreement"]["ari"] == 1.0 and report["agreement_features"]["f1"] == 1.0
    infl = report["influence_preserved"]
    for key in ("embedding_share_original", "embedding_share_compressed", "correlation"):
        assert 0 < infl[key] <= 1 + 1e-9, key
    assert 0 <= infl["l1_difference"] < 0.5
    assert infl["n_inputs"] == graph.kinds.count("embedding")
    # The hand groups are small and few: the input influence barely moves.
    assert infl["correlation"] > 0.95

    x = node_influence(graph)
    has_input = np.zeros(graph.n_nodes, bool)
    has_input[graph.dst] = True
    assert x[~has_input].sum() == pytest.approx(1.0)
    emb = input_influence(graph)
    assert emb.sum() == pytest.approx(infl["embedding_share_original"])

    # Every node alone: the compressed graph is the graph itself.
    same = influence_preserved(graph, np.arange(graph.n_nodes))
    assert same["correlation"] == pytest.approx(1.0)
    assert same["l1_difference"] == pytest.approx(0.0, abs=1e-9)
    assert same["embedding_share_compressed"] == pytest.approx(same["embedding_share_original"])
    assert same["compressed_is_dag"]


def test_real_with_supernodes_and_compressed(real, tmp_path: Path) -> None:
    _, _, graph = real
    hand = graph.hand_supernodes()
    labels = graph.labels_from_supernodes(hand)
    names = [f"g{g}" for g in range(labels.max() + 1)]
    for label, members in hand:
        names[labels[members[0]]] = label
    shown = graph.with_supernodes(labels, names)
    multi = [(label, m) for label, m in hand if len(m) > 1]
    q = shown.raw["qParams"]
    assert sorted(map(tuple, q["supernodes"])) == sorted(
        (label, *(graph.keys[i] for i in sorted(m))) for label, m in multi
    )
    old_pins = graph.raw["qParams"]["pinnedIds"]
    assert q["pinnedIds"][: len(old_pins)] == old_pins
    out = tmp_path / "shown.json"
    shown.save(out)
    back = AttributionGraph.load(out)
    assert back.to_dict() == shown.to_dict()
    assert sorted((lb, tuple(sorted(m))) for lb, m in back.hand_supernodes()) == sorted(
        (lb, tuple(sorted(m))) for lb, m in multi
    )
    rest = graph.to_dict()
    got = back.to_dict()
    del rest["qParams"]["supernodes"], got["qParams"]["supernodes"]
    del rest["qParams"]["pinnedIds"], got["qParams"]["pinnedIds"]
    assert got == rest

    comp = graph.compressed(labels, names)
    comp.save(tmp_path / "comp.json")
    comp = AttributionGraph.load(tmp_path / "comp.json")
    assert comp.n_nodes == labels.max() + 1
    assert comp.slug == graph.slug + "-compressed"
    target_members = comp.raw["nodes"][comp.target_logit()]["semot_members"]
    assert graph.node_ids[graph.target_logit()] in target_members


# ------------------------------------------------------------------ hand-written graphs


def node(node_id, layer, pos, ftype="cross layer transcoder", **extra):
    base = {
        "node_id": node_id,
        "feature": None,
        "layer": layer,
        "ctx_idx": pos,
        "feature_type": ftype,
        "token_prob": 0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": node_id.replace("_", "-", 1),
        "clerp": "",
    }
    base.update(extra)
    return base


def link(s, t, w, **extra):
    return {"source": s, "target": t, "weight": w, **extra}


def tiny() -> dict:
    """A small graph in the public schema with unknown fields at every level."""
    nodes = [
        node("E_10_0", "E", 0, "embedding", clerp='Emb: "a"'),
        node("E_11_1", "E", 1, "embedding", clerp='Emb: "b"'),
        node("0_5_0", "0", 0, clerp="[low] first", my_note={"x": [1, 2]}),
        node("0_6_1", 0, 1, clerp="[low]"),  # layer as int
        node("1_7_1", "1", 1, clerp="third", feature=100007),
        node("0_1_1", "1", 1, "mlp reconstruction error", clerp='Err: mlp "b"'),
        node("2_8_1", "2", 1),
        node("3_99_1", "3", 1, "logit", token_prob=0.6, is_target_logit=True, clerp="big"),
        node("3_98_1", "3", 1, "logit", token_prob=0.3),
    ]
    del nodes[6]["clerp"]  # lenient: clerp missing
    links = [
        link("E_10_0", "0_5_0", 1.0, extra_link_field=True),
        link("E_11_1", "0_6_1", 2.0),
        link("0_5_0", "1_7_1", 0.5),
        link("0_6_1", "1_7_1", -1.5),
        link("0_1_1", "2_8_1", 0.25),
        link("1_7_1", "2_8_1", 1.0),
        link("E_10_0", "2_8_1", 0.3),
        link("2_8_1", "3_99_1", 2.0),
        link("1_7_1", "3_99_1", -0.5),
        link("E_11_1", "3_99_1", 0.1),
        link("0_6_1", "3_98_1", 0.7),
        link("0_1_1", "3_99_1", 0.2),
    ]
    return {
        "metadata": {
            "slug": "tiny",
            "scan": "gemma-2-2b",
            "prompt_tokens": ["a", "b"],
            "prompt": "ab",
            "unknown_meta": {"nested": [1, "two", None]},
        },
        "qParams": {
            "pinnedIds": ["0_5_0", "0_6_1", "E_11_1"],
            "supernodes": [["low", "0_5_0", "0_6_1"]],
            "linkType": "both",
            "clickedId": "",
            "sg_pos": "",
            "unknown_q": 3,
        },
        "nodes": nodes,
        "links": links,
        "unknown_top": ["kept"],
    }


def test_hand_written_round_trip(tmp_path: Path) -> None:
    data = tiny()
    graph = AttributionGraph.from_dict(data)
    assert graph.to_dict() == data
    graph.save(tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text(encoding="utf-8")) == data
    assert AttributionGraph.load(tmp_path / "t.json").to_dict() == data
    # from_dict copied: later changes to the input do not reach the graph
    data["nodes"][0]["clerp"] = "changed"
    assert graph.raw["nodes"][0]["clerp"] == 'Emb: "a"'
    assert graph.kinds == ["embedding"] * 2 + ["feature"] * 3 + [
        "error",
        "feature",
        "logit",
        "logit",
    ]
    assert graph.layers.tolist() == [-1, -1, 0, 0, 1, 1, 2, 3, 3]
    assert graph.clerps[2:5] == ["first", "low", "third"]
    assert graph.clerps[6] == ""
    assert graph.keys == graph.node_ids  # not an Anthropic scan
    assert graph.feature_index.tolist() == [-1, -1, 5, 6, 7, -1, 8, -1, -1]
    assert graph.target_logit() == 7
    assert graph.n_links == 12 and graph.scan == "gemma-2-2b"


def test_anthropic_scan_keys_are_js_node_ids() -> None:
    data = tiny()
    data["metadata"]["scan"] = "jackl-circuits-runs-1-4-sofa-v3_0"
    data["qParams"]["supernodes"] = [["low", "0-5_0", "0_6_1"]]  # jsNodeId, then node_id
    graph = AttributionGraph.from_dict(data)
    assert graph.keys[2] == "0-5_0"
    assert graph.hand_supernodes() == [("low", [2, 3])]
    shown = graph.with_supernodes(np.array([0, 1, 2, 2, 3, 4, 5, 6, 7]), list("abcdefgh"))
    assert shown.raw["qParams"]["supernodes"] == [["c", "0-5_0", "0-6_1"]]


def test_adjacency_orientation() -> None:
    graph = AttributionGraph.from_dict(tiny())
    a = graph.adjacency().toarray()
    assert a.shape == (9, 9)
    assert a[graph.node_ids.index("1_7_1"), graph.node_ids.index("0_6_1")] == -1.5
    assert np.count_nonzero(a) == 12


def test_labels_from_supernodes() -> None:
    graph = AttributionGraph.from_dict(tiny())
    labels = graph.labels_from_supernodes([("x", [4, 2]), ("y", [6, 4]), ("z", [])])
    # node 4 is in both: the later group wins; the rest are singletons; canonical ids
    assert labels.tolist() == [0, 1, 2, 3, 4, 5, 4, 6, 7]
    assert graph.labels_from_supernodes([[8, 0]]).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0]
    with pytest.raises(ValueError, match="member index"):
        graph.labels_from_supernodes([[9]])


def test_with_supernodes_writes_groups_and_pins(tmp_path: Path) -> None:
    graph = AttributionGraph.from_dict(tiny())
    labels = np.array([0, 1, 2, 2, 3, 4, 3, 5, 5])
    names = ["e0", "e1", "", "0_5_0", "?", "outputs"]
    shown = graph.with_supernodes(labels, names)
    shown.save(tmp_path / "s.json")
    back = AttributionGraph.load(tmp_path / "s.json")
    q = back.raw["qParams"]
    assert q["supernodes"] == [
        ["group 2", "0_5_0", "0_6_1"],  # empty name replaced
        ["0_5_0 (group 3)", "1_7_1", "2_8_1"],  # a name equal to a node key is changed
        ["outputs", "3_99_1", "3_98_1"],
    ]
    # existing pins first, then new members (largest groups first; ties in group order)
    assert q["pinnedIds"] == ["0_5_0", "0_6_1", "E_11_1", "1_7_1", "2_8_1", "3_99_1", "3_98_1"]
    assert q["unknown_q"] == 3 and back.raw["unknown_top"] == ["kept"]
    assert back.hand_supernodes() == [
        ("group 2", [2, 3]),
        ("0_5_0 (group 3)", [4, 6]),
        ("outputs", [7, 8]),
    ]
    assert back.raw["nodes"] == graph.raw["nodes"] and back.raw["links"] == graph.raw["links"]
    with pytest.raises(ValueError, match="names"):
        graph.with_supernodes(labels, names[:3])


def chain_graph(n_features: int) -> dict:
    nodes = [node("E_1_0", "E", 0, "embedding")]
    nodes += [node(f"{i}_{i}_0", str(i), 0) for i in range(n_features)]
    nodes.append(node(f"{n_features}_1_0", str(n_features), 0, "logit", token_prob=1.0))
    ids = [n["node_id"] for n in nodes]
    links = [link(a, b, 1.0) for a, b in itertools.pairwise(ids)]
    return {
        "metadata": {"slug": "chain", "scan": "s", "prompt_tokens": ["x"]},
        "qParams": {"pinnedIds": [f"p{i}" for i in range(10)]},
        "nodes": nodes,
        "links": links,
    }


def test_pins_capped_at_200_largest_groups_first() -> None:
    graph = AttributionGraph.from_dict(chain_graph(240))
    labels = np.arange(graph.n_nodes)
    feats = np.arange(1, 241)
    labels[feats[:30]] = 1000  # 30 members
    labels[feats[30:180]] = 1001  # 150 members
    labels[feats[180:240]] = 1002  # 60 members
    lab = graph.labels_from_supernodes(
        [[int(i) for i in np.flatnonzero(labels == g)] for g in (1000, 1001, 1002)]
    )
    names = [f"n{g}" for g in range(lab.max() + 1)]
    shown = graph.with_supernodes(lab, names)
    pins = shown.raw["qParams"]["pinnedIds"]
    assert len(pins) <= MAX_PINS
    assert pins[:10] == [f"p{i}" for i in range(10)]
    # 10 + 150 fit, the 60-member group does not, the 30-member one still does
    assert pins[10:160] == [graph.keys[i] for i in feats[30:180]]
    assert pins[160:] == [graph.keys[i] for i in feats[:30]]
    assert len(shown.raw["qParams"]["supernodes"]) == 3
    assert any("200-pin limit" in w and "60 members" in w for w in shown.warnings)


def test_compressed_sums_links_by_brute_force(tmp_path: Path) -> None:
    data = tiny()
    graph = AttributionGraph.from_dict(data)
    labels = np.array([0, 1, 2, 2, 3, 4, 3, 5, 5])
    names = ["in a", "in b", "low", "mid", "err", "out"]
    comp = graph.compressed(labels, names)
    comp.save(tmp_path / "c.json")
    comp = AttributionGraph.load(tmp_path / "c.json")
    # brute force: every original link between two different groups, summed per group pair
    expected: dict[tuple[str, str], float] = {}
    ids = [n["node_id"] for n in data["nodes"]]
    for lk in data["links"]:
        gs, gt = labels[ids.index(lk["source"])], labels[ids.index(lk["target"])]
        if gs != gt:
            key = (f"sn_{gs}", f"sn_{gt}")
            expected[key] = expected.get(key, 0.0) + lk["weight"]
    got = {(lk["source"], lk["target"]): lk["weight"] for lk in comp.raw["links"]}
    assert got.keys() == expected.keys()
    for key, w in expected.items():
        assert got[key] == pytest.approx(w)
    by_id = {n["node_id"]: n for n in comp.raw["nodes"]}
    assert by_id["sn_2"]["semot_members"] == ["0_5_0", "0_6_1"]
    assert by_id["sn_2"]["layer"] == "0" and by_id["sn_2"]["clerp"] == "low"
    assert by_id["sn_2"]["feature_type"] == "cross layer transcoder"
    assert by_id["sn_3"]["layer"] == "2" and by_id["sn_3"]["ctx_idx"] == 1  # mean 1.5 -> 2
    assert by_id["sn_0"]["layer"] == "E" and by_id["sn_0"]["feature_type"] == "embedding"
    assert by_id["sn_5"]["feature_type"] == "logit" and by_id["sn_5"]["layer"] == "3"
    assert by_id["sn_5"]["token_prob"] == pytest.approx(0.9) and by_id["sn_5"]["is_target_logit"]
    assert by_id["sn_4"]["feature_type"] == "mlp reconstruction error"
    assert by_id["sn_1"]["jsNodeId"] == "sn_1"
    assert comp.raw["qParams"] == {
        "pinnedIds": [],
        "supernodes": [],
        "linkType": "both",
        "clickedId": "",
        "sg_pos": "",
    }
    assert (
        comp.slug == "tiny-compressed"
        and comp.raw["metadata"]["unknown_meta"]["nested"][1] == "two"
    )
    assert comp.kinds == ["embedding", "embedding", "feature", "feature", "error", "logit"]
    # mixed kinds fall back to a transcoder feature
    mixed = graph.compressed(np.array([0, 1, 2, 2, 2, 2, 3, 4, 4]), list("abcde"))
    assert mixed.raw["nodes"][2]["feature_type"] == "cross layer transcoder"


# ------------------------------------------------------------------ malformed input


def write(tmp_path: Path, data) -> Path:
    p = tmp_path / "g.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return p


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    text = json.dumps(tiny(), indent=2)
    p = write(tmp_path, text[: len(text) // 2])
    with pytest.raises(GraphFormatError, match=r"g\.json: malformed JSON at line \d+ column \d+"):
        AttributionGraph.load(p)
    with pytest.raises(GraphFormatError, match="top level"):
        AttributionGraph.load(write(tmp_path, "[1, 2]"))


@pytest.mark.parametrize("key", ["metadata", "qParams", "nodes", "links"])
def test_missing_top_level_key(key: str) -> None:
    data = tiny()
    del data[key]
    with pytest.raises(GraphFormatError, match=key):
        AttributionGraph.from_dict(data)


def test_link_to_missing_node(tmp_path: Path) -> None:
    data = tiny()
    data["links"][3]["target"] = "9_9_9"
    with pytest.raises(GraphFormatError, match=r"g\.json: link 3: target '9_9_9' is not a node_id"):
        AttributionGraph.load(write(tmp_path, data))


def test_duplicate_node_id_names_both_nodes() -> None:
    data = tiny()
    data["nodes"][6]["node_id"] = "0_5_0"  # two features
    with pytest.raises(GraphFormatError, match=r"duplicate node_id '0_5_0' at nodes 2 and 6"):
        AttributionGraph.from_dict(data)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1.0", None, True])
def test_bad_weight_names_the_link(bad) -> None:
    data = tiny()
    data["links"][5]["weight"] = bad
    with pytest.raises(GraphFormatError, match=r"link 5 \('1_7_1' -> '2_8_1'\)"):
        AttributionGraph.from_dict(data)


def test_nan_literal_in_file(tmp_path: Path) -> None:
    text = json.dumps(tiny()).replace('"weight": 0.25', '"weight": NaN')
    with pytest.raises(GraphFormatError, match="link 4"):
        AttributionGraph.load(write(tmp_path, text))


def test_self_link() -> None:
    data = tiny()
    data["links"].append(link("1_7_1", "1_7_1", 0.1))
    with pytest.raises(GraphFormatError, match=r"link 12: self-link on node 4 \('1_7_1'\)"):
        AttributionGraph.from_dict(data)


@pytest.mark.parametrize("key", ["ctx_idx", "layer", "node_id", "feature_type"])
def test_missing_node_field(key: str) -> None:
    data = tiny()
    del data["nodes"][4][key]
    with pytest.raises(GraphFormatError, match="node 4"):
        AttributionGraph.from_dict(data)


def test_bad_layer_and_position() -> None:
    data = tiny()
    data["nodes"][4]["layer"] = "E"
    with pytest.raises(GraphFormatError, match=r"node 4 \('1_7_1'\): 'layer'"):
        AttributionGraph.from_dict(data)
    data = tiny()
    data["nodes"][4]["ctx_idx"] = -1
    with pytest.raises(GraphFormatError, match=r"node 4 \('1_7_1'\): 'ctx_idx'"):
        AttributionGraph.from_dict(data)


def test_lenient_on_known_variations() -> None:
    data = tiny()
    for n in data["nodes"]:
        n.pop("influence", None)
        n.pop("is_target_logit", None)
        n["feature"] = None
        n["layer"] = int(n["layer"]) if n["layer"] not in ("E",) else "E"
        n.pop("jsNodeId")
    graph = AttributionGraph.from_dict(data)
    assert graph.layers.tolist() == [-1, -1, 0, 0, 1, 1, 2, 3, 3]
    assert graph.target_logit() == 7  # highest token_prob
    assert graph.keys == graph.node_ids


def test_circuit_tracer_id_collision_is_resolved() -> None:
    # circuit-tracer names the error at layer 2, position 1 `0_2_1`, the same id as the
    # feature with index 2 at layer 0, position 1 (gemma-euro).
    nodes = [
        node("E_5_1", "E", 1, "embedding"),
        node("0_2_1", "0", 1),
        node("1_4_1", "1", 1),
        node("0_2_1", "2", 1, "mlp reconstruction error"),
        node("3_9_1", "3", 1),
        node("4_7_1", "4", 1, "logit", token_prob=1.0, is_target_logit=True),
    ]
    links = [
        link("E_5_1", "0_2_1", 1.0),  # target: only the feature has inputs
        link("0_2_1", "1_4_1", 2.0),  # source: only the layer-0 feature is below layer 1
        link("0_2_1", "3_9_1", 3.0),  # repeated pair: first copy the feature ...
        link("0_2_1", "3_9_1", 4.0),  # ... second copy the error (circuit-tracer order)
        link("1_4_1", "3_9_1", 1.0),
        link("3_9_1", "4_7_1", 1.0),
    ]
    data = {"metadata": {"slug": "c", "scan": "gemma-2-2b", "prompt_tokens": ["a", "b"]},
            "qParams": {}, "nodes": nodes, "links": links}  # fmt: skip
    graph = AttributionGraph.from_dict(data)
    assert graph.src.tolist() == [0, 1, 1, 3, 2, 4]
    assert graph.dst.tolist() == [1, 2, 4, 4, 4, 5]
    assert any("collision '0_2_1'" in w for w in graph.warnings)
    assert graph.to_dict() == data
    nodes.append(node("0_2_1", "5", 1))
    with pytest.raises(GraphFormatError, match="duplicate node_id '0_2_1' at nodes 1 and 3"):
        AttributionGraph.from_dict(data)


# ------------------------------------------------------------------ influence


def brute_force_influence(data: dict, target: str) -> dict[str, float]:
    """Sum over every path into `target` of the products of row-normalised |weights|."""
    incoming: dict[str, list[tuple[str, float]]] = {}
    for lk in data["links"]:
        incoming.setdefault(lk["target"], []).append((lk["source"], abs(lk["weight"])))
    total = {}
    for t, ins in incoming.items():
        total[t] = sum(w for _, w in ins)
    influence: dict[str, float] = {}

    def walk(nid: str, product: float) -> None:
        influence[nid] = influence.get(nid, 0.0) + product
        for s, w in incoming.get(nid, []):
            walk(s, product * w / total[nid])

    walk(target, 1.0)
    return influence


def test_input_influence_against_path_enumeration() -> None:
    data = tiny()
    graph = AttributionGraph.from_dict(data)
    expected = brute_force_influence(data, "3_99_1")
    x = node_influence(graph)
    for i, nid in enumerate(graph.node_ids):
        assert x[i] == pytest.approx(expected.get(nid, 0.0), abs=1e-12), nid
    emb = input_influence(graph)
    assert emb.tolist() == pytest.approx([expected["E_10_0"], expected["E_11_1"]])
    # the rest reaches the error node, the only other node without inputs
    assert emb.sum() + expected["0_1_1"] == pytest.approx(1.0)


def test_influence_preserved_hand_written() -> None:
    graph = AttributionGraph.from_dict(tiny())
    same = influence_preserved(graph, np.arange(9))
    assert same["correlation"] == pytest.approx(1.0) and same["l1_difference"] == pytest.approx(0.0)
    merged = influence_preserved(graph, np.array([0, 1, 2, 2, 3, 4, 3, 5, 5]))
    assert merged["n_inputs"] == 2 and merged["compressed_is_dag"]
    assert 0 < merged["embedding_share_compressed"] <= 1
    # an embedding merged with a feature is no longer an input of the compressed graph
    mixed = influence_preserved(graph, np.array([0, 1, 0, 2, 3, 4, 5, 6, 7]))
    assert mixed["n_inputs"] == 1 and mixed["embedding_share_in_mixed_groups"] > 0


def test_closed_cycle_has_no_influence() -> None:
    nodes = [
        node("0_1_0", "0", 0),
        node("1_1_0", "1", 0),
        node("2_1_0", "2", 0, "logit", token_prob=1.0),
    ]
    links = [link("0_1_0", "1_1_0", 1.0), link("1_1_0", "0_1_0", 1.0), link("1_1_0", "2_1_0", 1.0)]
    graph = AttributionGraph.from_dict(
        {"metadata": {}, "qParams": {}, "nodes": nodes, "links": links}
    )
    with pytest.raises(ValueError, match="cycle"):
        node_influence(graph)


# ------------------------------------------------------------------ simple metrics


def test_compression_ratio_and_edge_split() -> None:
    assert compression_ratio([0, 0, 1, 2]) == 0.75
    graph = AttributionGraph.from_dict(tiny())
    labels = np.array([0, 1, 2, 2, 3, 4, 3, 5, 5])
    split = edge_weight_split(graph, labels)
    w_in = 1.0  # 1_7_1 -> 2_8_1 is the only link inside a group
    total = sum(abs(lk["weight"]) for lk in tiny()["links"])
    assert split["inside"] == pytest.approx(w_in / total)
    assert split["across"] == pytest.approx(1 - w_in / total)
    assert split["n_links_inside"] == 1 and split["n_links_across"] == 11


def test_coherence_condensed_and_square() -> None:
    pts = np.array([0.0, 1.0, 10.0, 12.0])
    square = np.abs(pts[:, None] - pts[None, :])
    condensed = square[np.triu_indices(4, 1)]
    labels = [0, 0, 1, 1]
    a, b = coherence(labels, square), coherence(labels, condensed)
    assert a == b
    assert a["within"] == pytest.approx(1.5)
    assert a["between"] == pytest.approx((10 + 12 + 9 + 11) / 4)
    assert a["n_within_pairs"] == 2 and a["n_between_pairs"] == 4
    assert coherence([0, 1, 2], np.ones(3))["n_within_pairs"] == 0
    with pytest.raises(ValueError, match="condensed"):
        coherence(labels, np.ones(5))


def brute_force_ari(a: list[int], b: list[int]) -> float:
    """Adjusted Rand index from plain pair counting (Hubert and Arabie)."""
    n = len(a)
    both = same_a = same_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            sa, sb = a[i] == a[j], b[i] == b[j]
            same_a += sa
            same_b += sb
            both += sa and sb
    pairs = n * (n - 1) // 2
    if pairs == 0:
        return 1.0
    expected = same_a * same_b / pairs
    maximum = (same_a + same_b) / 2
    if maximum == expected:
        return 1.0
    return (both - expected) / (maximum - expected)


labelings = st.lists(st.integers(0, 5), min_size=0, max_size=25)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_ari_matches_reference(data) -> None:
    a = data.draw(labelings)
    b = data.draw(st.lists(st.integers(0, 5), min_size=len(a), max_size=len(a)))
    ari = agreement(a, b)["ari"]
    assert ari == pytest.approx(brute_force_ari(a, b), abs=1e-12)
    try:
        from sklearn.metrics import adjusted_rand_score
    except ImportError:
        return
    assert ari == pytest.approx(adjusted_rand_score(b, a), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(labelings, st.randoms(use_true_random=False))
def test_ari_identity_and_relabelling(pred, rnd) -> None:
    assert agreement(pred, pred)["ari"] == 1.0
    values = list(range(6))
    rnd.shuffle(values)
    relabelled = [values[v] * 7 - 3 for v in pred]
    other = [rnd.randrange(4) for _ in pred]
    assert agreement(relabelled, other)["ari"] == pytest.approx(agreement(pred, other)["ari"])
    assert agreement(relabelled, pred)["ari"] == 1.0


def test_pairwise_precision_recall() -> None:
    pred = [0, 0, 0, 1, 2]
    true = [0, 0, 1, 1, 2]
    r = agreement(pred, true)
    # pred pairs: (0,1) (0,2) (1,2); true pairs: (0,1) (2,3); shared: (0,1)
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 2)
    assert r["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    sub = agreement(pred, true, nodes=[0, 1, 4])
    assert sub["precision"] == 1.0 and sub["recall"] == 1.0 and sub["n_nodes"] == 3
    assert math.isnan(agreement([0, 1], [0, 0])["precision"])


def test_graph_report_keys() -> None:
    graph = AttributionGraph.from_dict(tiny())
    labels = np.array([0, 1, 2, 2, 3, 4, 3, 5, 5])
    hand = graph.hand_supernodes()
    r = graph_report(graph, labels, hand=graph.labels_from_supernodes(hand))
    assert set(r) >= {"compression_ratio", "edge_weight_split", "influence_preserved", "agreement"}
    assert r["n_groups"] == 6 and r["n_multi_groups"] == 3
    # the groups themselves work as well as their labels
    assert graph_report(graph, labels, hand=hand)["agreement"] == r["agreement"]
    json.dumps(r)  # JSON-ready
    no_logit = copy.deepcopy(tiny())
    no_logit["nodes"] = no_logit["nodes"][:7]
    no_logit["links"] = [lk for lk in no_logit["links"] if lk["target"][0] != "3"]
    g2 = AttributionGraph.from_dict(no_logit)
    assert "error" in graph_report(g2, np.arange(7))["influence_preserved"]
