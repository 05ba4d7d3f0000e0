from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semot.circuits.html_page import write_html
from semot.circuits.layout import GraphPicture, check_picture, compute_layout
from semot.circuits.png import plot_compression

from conftest import artifacts_dir


def _graphs_dir() -> Path:
    """Real graphs: $SEMOT_GRAPHS_DIR, else shared/data/graphs beside or in the checkout."""
    root = Path(__file__).resolve().parent.parent
    for cand in (
        os.environ.get("SEMOT_GRAPHS_DIR", ""),
        root / "shared/data/graphs",
        root.parent / "shared/data/graphs",
        "/work/shared/data/graphs",
    ):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return Path("/work/shared/data/graphs")


GRAPHS = _graphs_dir()
XSS = "<script>window.__pwned=1</script>"


def small_picture(**overrides: Any) -> tuple[GraphPicture, np.ndarray, list[str]]:
    """10 nodes over 4 positions, 3 groups; several nodes share a (layer, position) cell."""
    fields: dict[str, Any] = dict(
        layers=np.array([-1, -1, -1, 0, 0, 0, 1, 1, 2, 3], dtype=np.int64),
        positions=np.array([0, 1, 2, 1, 1, 2, 2, 2, 2, 2], dtype=np.int64),
        kinds=["embedding"] * 3 + ["feature", "feature", "error", "feature", "feature"]
        + ["feature", "logit"],
        texts=["Emb: a", "Emb: b", "Emb: c", XSS, 'quote " & amp', "err", "x'y", "", "z",
               'Output "d"'],
        src=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 3, 1], dtype=np.int64),
        dst=np.array([3, 4, 5, 6, 7, 8, 8, 8, 9, 9, 9], dtype=np.int64),
        weight=np.array([1.0, 0.5, -0.3, 2.0, -1.0, 0.2, 0.7, -0.4, 3.0, 0.1, -0.05]),
        prompt_tokens=["<bos>", " small", " $x$ & <b>"],
        title="small <test> graph",
    )  # fmt: skip
    fields.update(overrides)
    labels = np.array([0, 0, 1, 0, 0, 1, 2, 2, 2, 1], dtype=np.int64)
    names = ["tokens & <i>", 'say "big"', "mid'layer"]
    return GraphPicture(**fields), labels, names


@pytest.mark.parametrize("suffix", [".png", ".svg", ".PNG"])
def test_plot_writes_file(tmp_path: Path, suffix: str) -> None:
    pic, labels, names = small_picture()
    out = plot_compression(pic, labels, names, tmp_path / f"g{suffix}")
    assert out == tmp_path / f"g{suffix}"
    assert out.stat().st_size > 1000
    if suffix.lower() == ".png":
        import matplotlib.image as mpimg

        img = mpimg.imread(out)
        assert img.ndim == 3 and img.shape[2] in (3, 4)
        assert img.dtype == np.float32 and img.shape[0] > 100 and img.shape[1] > 100
        assert img.min() < 0.5 < img.max()  # not blank
    else:
        text = out.read_text(encoding="utf-8")
        assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_plot_rejects_unknown_suffix(tmp_path: Path) -> None:
    pic, labels, names = small_picture()
    with pytest.raises(ValueError, match="path"):
        plot_compression(pic, labels, names, tmp_path / "g.jpg")


def test_html_structure_and_escaping(tmp_path: Path) -> None:
    pic, labels, names = small_picture()
    out = write_html(pic, labels, names, tmp_path / "g.html")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'class="node"', text)) == 10
    assert len(re.findall(r'class="group"', text)) == 3
    assert len(re.findall(r'class="glist"', text)) == 3
    # self-contained: no external resource loads of any kind
    assert not re.search(r"""(src|href|xlink:href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert "@import" not in text and "url(" not in text
    # untrusted text never appears raw
    assert XSS not in text
    assert "\\u003cscript\\u003ewindow.__pwned=1\\u003c/script\\u003e" in text  # JSON data
    assert "<test>" not in text and "small &lt;test&gt; graph" in text
    assert "tokens & <i>" not in text and "tokens &amp; &lt;i&gt;" in text
    assert "say &quot;big&quot;" in text and "mid&#x27;layer" in text
    assert "&lt;b&gt;" in text  # the prompt token
    assert text.count("<script") == 2  # the data block and the page's own script
    data = re.search(r'<script type="application/json" id="semot-data">(.*?)</script>', text, re.S)
    assert data is not None
    parsed = json.loads(data.group(1))
    assert parsed["nodes"][3]["t"] == XSS
    assert [g["m"] for g in parsed["groups"]] == [[0, 1, 3, 4], [2, 5, 9], [6, 7, 8]]
    assert parsed["groups"][0]["n"] == "tokens & <i>"


def test_html_links_limited(tmp_path: Path) -> None:
    pic, labels, names = small_picture()
    text = write_html(pic, labels, names, tmp_path / "g.html", max_links=4).read_text()
    orig = text.split('<svg id="v-orig"')[1].split("</svg>")[0]
    comp = text.split('<svg id="v-comp"')[1].split("</svg>")[0]
    assert orig.count('<line class="lk"') == 4
    # links between groups (0->1 absent, 0->2, 1->2, 2->1, 0->1 ...) summed, inside dropped
    assert 0 < comp.count('<line class="lk"') <= 4


def test_layout_no_overlap_and_axes() -> None:
    pic, labels, names = small_picture()
    lay = compute_layout(check_picture(pic, labels, names, 100), 100)
    xy, r = lay.node_xy, lay.node_r
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert (d >= r[:, None] + r[None, :]).all()
    assert (r[labels != -1] > 0).all() and r.max() <= 0.6 * lay.node_d + 1e-12
    # y follows the layer, x the position
    order = np.argsort(pic.layers, kind="stable")
    assert np.all(np.diff(lay.layer_y) > 0)
    assert np.all(np.diff([xy[order][pic.layers[order] == v, 1].mean() for v in (-1, 0, 1, 2, 3)])
                  > 0)  # fmt: skip
    assert lay.layer_names[0] == "emb" and lay.layer_names[-1] == "logit"
    gd = np.hypot(*(lay.group_xy[:, None] - lay.group_xy[None]).transpose(2, 0, 1))
    np.fill_diagonal(gd, np.inf)
    assert (gd >= lay.group_r[:, None] + lay.group_r[None, :] - 1e-6).all()
    # compressed edges: sums over links between groups; links inside a group dropped
    edges = zip(lay.gsrc.tolist(), lay.gdst.tolist(), strict=True)
    pairs = dict(zip(edges, lay.gweight.tolist(), strict=True))
    assert pairs[(0, 2)] == pytest.approx(2.0 - 1.0)  # 3->6, 4->7
    assert pairs[(1, 2)] == pytest.approx(0.2)  # 5->8 (2->5 is inside group 1)
    assert len(pairs) == 4
    assert pairs[(0, 1)] == pytest.approx(0.1 - 0.05)  # 3->9, 1->9
    assert pairs[(2, 1)] == pytest.approx(3.0)


def test_html_interactions_in_chromium(chromium: Any, tmp_path: Path) -> None:
    """Hover, toggle, click-to-highlight, pan/zoom, in headless Chromium; no console errors."""
    pic, labels, names = small_picture()
    page = write_html(pic, labels, names, tmp_path / "g.html")
    chromium.get(page.resolve().as_uri())
    script = Path(__file__).with_name("graph_view_dom.js").read_text(encoding="utf-8")
    out = chromium.execute_script(script)
    errors = [e for e in chromium.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == [] and out["pwned"] is None and out["scripts"] == 2
    assert (out["nodes"], out["groups"]) == (10, 3)
    assert out["tipShown"] == "block" and XSS in out["tipText"] and not out["tipHasElement"]
    assert "feature, layer 0, position 1" in out["tipText"] and "tokens & <i>" in out["tipText"]
    assert out["afterToggle"] == ["none", ""]
    assert out["groupTip"].startswith("tokens & <i>4 nodes")
    assert out["afterGroupClick"] == ["", "none", True]  # back to the original view
    assert out["selectedNodes"] == [0, 1, 3, 4]
    assert out["afterListClick"] == [False, 0]
    assert out["afterNodeClick"] == [6, 7, 8] and out["selLinks"] > 0
    assert out["afterEscape"] == 0
    assert out["panned"] and out["reset"]
    chromium.save_screenshot(str(Path(artifacts_dir(tmp_path)) / "graph-view.png"))


@pytest.mark.parametrize(
    ("override", "arg"),
    [
        ({"positions": np.zeros(9, dtype=np.int64)}, "positions"),
        ({"kinds": ["feature"] * 11}, "kinds"),
        ({"kinds": ["feature"] * 9 + ["neuron"]}, "kinds"),
        ({"texts": ["a"] * 3}, "texts"),
        ({"dst": np.zeros(3, dtype=np.int64)}, "dst"),
        ({"weight": np.ones(2)}, "weight"),
        ({"weight": np.full(11, np.nan)}, "weight"),
        ({"src": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 3, 10])}, "src"),
        ({"dst": np.array([3, 4, 5, 6, 7, 8, 8, 8, 9, 9, -1])}, "dst"),
        ({"layers": np.zeros(10)}, "layers"),
        ({"layers": np.zeros(0, dtype=np.int64)}, "layers"),
        ({"positions": np.full(10, 3, dtype=np.int64)}, "positions"),
        ({"prompt_tokens": "abc"}, "prompt_tokens"),
    ],
)
def test_bad_picture(tmp_path: Path, override: dict[str, Any], arg: str) -> None:
    pic, labels, names = small_picture(**override)
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        plot_compression(pic, labels, names, tmp_path / "g.png")
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        write_html(pic, labels, names, tmp_path / "g.html")
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "g.html").exists()


@pytest.mark.parametrize(
    ("labels", "names", "arg"),
    [
        (np.zeros(9, dtype=np.int64), ["a"], "labels"),
        (np.zeros(11, dtype=np.int64), ["a"], "labels"),
        (np.arange(10), ["a"] * 9, "labels"),
        (np.full(10, -1), ["a"], "labels"),
        (np.zeros(10), ["a"], "labels"),
        (np.zeros(10, dtype=np.int64), [1], "names"),
    ],
)
def test_bad_labels(tmp_path: Path, labels: Any, names: Any, arg: str) -> None:
    pic, _, _ = small_picture()
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        plot_compression(pic, labels, names, tmp_path / "g.png")
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        write_html(pic, labels, names, tmp_path / "g.html")


def test_bad_max_links(tmp_path: Path) -> None:
    pic, labels, names = small_picture()
    with pytest.raises(ValueError, match=r"^max_links"):
        plot_compression(pic, labels, names, tmp_path / "g.png", max_links=-1)
    with pytest.raises(ValueError, match=r"^max_labels"):
        write_html(pic, labels, names, tmp_path / "g.html", max_labels=-1)


def test_single_group_and_no_links(tmp_path: Path) -> None:
    pic, _, _ = small_picture(
        src=np.zeros(0, dtype=np.int64), dst=np.zeros(0, dtype=np.int64), weight=np.zeros(0)
    )
    plot_compression(pic, np.zeros(10, dtype=np.int64), ["all"], tmp_path / "g.png")
    text = write_html(pic, np.arange(10), [""] * 10, tmp_path / "g.html").read_text()
    assert text.count('class="group"') == 10


# ---------------------------------------------------------------------------------------------
# real graphs (circuit-tracer / Neuronpedia JSON), parsed minimally


def load_graph(path: Path) -> tuple[GraphPicture, np.ndarray, list[str]]:
    """Build a GraphPicture and the hand-made supernodes (other nodes: groups of one, no name)."""
    g = json.loads(path.read_text(encoding="utf-8"))
    nodes = g["nodes"]
    kinds = []
    for nd in nodes:
        ft = str(nd.get("feature_type", ""))
        kinds.append(
            "error" if "error" in ft else ft if ft in ("embedding", "logit") else "feature"
        )
    raw = [str(nd["layer"]) for nd in nodes]
    pairs = list(zip(raw, kinds, strict=True))
    top = max(int(v) for v, k in pairs if k != "logit" and v != "E")
    layers = np.array(
        [-1 if v == "E" else top + 1 if k == "logit" else int(v) for v, k in pairs], dtype=np.int64
    )
    index = {nd["node_id"]: i for i, nd in enumerate(nodes)}
    js_index = {nd.get("jsNodeId"): i for i, nd in enumerate(nodes)}
    src = np.array([index[lk["source"]] for lk in g["links"]], dtype=np.int64)
    dst = np.array([index[lk["target"]] for lk in g["links"]], dtype=np.int64)
    pic = GraphPicture(
        layers=layers,
        positions=np.array([nd["ctx_idx"] for nd in nodes], dtype=np.int64),
        kinds=kinds,
        texts=[str(nd.get("clerp") or "") for nd in nodes],
        src=src,
        dst=dst,
        weight=np.array([lk["weight"] for lk in g["links"]], dtype=np.float64),
        prompt_tokens=list(g["metadata"]["prompt_tokens"]),
        title=f"{g['metadata']['slug']}: hand-made supernodes",
    )
    labels = np.full(len(nodes), -1, dtype=np.int64)
    names: list[str] = []
    for group in g["qParams"]["supernodes"]:
        members = [index.get(m, js_index.get(m)) for m in group[1:]]
        members = [i for i in members if i is not None]
        if members:
            labels[members] = len(names)
            names.append(str(group[0]))
    for i in np.flatnonzero(labels < 0):
        labels[i] = len(names)
        names.append("")
    return pic, labels, names


def real_graphs() -> list[Path]:
    return sorted(GRAPHS.glob("*.json")) if GRAPHS.is_dir() else []


@pytest.mark.skipif(not real_graphs(), reason=f"no real graphs in {GRAPHS}")
@pytest.mark.parametrize("name", ["gemma-small-big-en", "calc-36-plus-59", "capital-state-dallas"])
def test_real_graph(tmp_path: Path, name: str) -> None:
    path = GRAPHS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path} missing")
    pic, labels, names = load_graph(path)
    t0 = time.perf_counter()
    png = plot_compression(pic, labels, names, tmp_path / "g.png")
    page = write_html(pic, labels, names, tmp_path / "g.html")
    elapsed = time.perf_counter() - t0
    assert elapsed < 30, f"{name}: {elapsed:.1f} s"
    text = page.read_text(encoding="utf-8")
    n = len(pic.kinds)
    assert text.count('class="node"') == n
    assert text.count('class="group"') == len(np.unique(labels))
    assert "http://" not in text and "https://" not in text
    import matplotlib.image as mpimg

    assert mpimg.imread(png).ndim == 3
    lay = compute_layout(check_picture(pic, labels, names, 400), 400)
    from scipy.spatial import cKDTree

    for i, j in cKDTree(lay.node_xy).query_pairs(2 * lay.node_r.max()):
        assert np.hypot(*(lay.node_xy[i] - lay.node_xy[j])) >= lay.node_r[i] + lay.node_r[j]
    pairs = cKDTree(lay.group_xy).query_pairs(2 * lay.group_r.max())
    for i, j in pairs:
        assert np.hypot(*(lay.group_xy[i] - lay.group_xy[j])) >= (
            lay.group_r[i] + lay.group_r[j] - 1e-6
        )
    if name == "gemma-small-big-en":
        assert n == 694 and pic.src.shape[0] == 23559
