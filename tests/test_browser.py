"""The feature browser (semot.browser): token contexts, the pair table, pages in Chromium."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import semot
from semot.browser import PAIR_COLUMNS, feature_pairs, write_browser
from semot.browser.inputs import MatchFrame
from semot.circuits.graph import AttributionGraph
from semot.cli import main
from semot.errors import UnfiredFeaturesWarning
from semot.features.container import FeatureDistributions
from semot.features.contexts import TokenContexts, token_strings
from semot.features.runs import write_run_record

from conftest import artifacts_dir

# Strings that would run if a page inserted them as HTML (each sets window.__pwned).
XSS_SCRIPT = "<script>window.__pwned=1</script>"
XSS_IMG = '"><img src=x onerror="window.__pwned=2">'
XSS_CLOSE = "</script><script>window.__pwned=3</script><!--"
N_SEQ, SEQ_LEN, VOCAB = 24, 20, 60


def vocabulary() -> list[str]:
    words = [f" w{i}" for i in range(VOCAB)]
    words[3], words[4], words[5] = XSS_SCRIPT, XSS_IMG, XSS_CLOSE
    words[6] = "line\nbreak"
    return words


def token_array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(N_SEQ, SEQ_LEN))


def make_site(rng: np.random.Generator, n_features: int, layer: int, dim: int = 4) -> Any:
    """Random FeatureDistributions: a few unfired features, points at random (seq, pos)."""
    sizes = rng.integers(3, 9, n_features)
    sizes[[1, n_features - 2]] = 0
    centres = rng.normal(size=(n_features, dim)) * 3
    pts = np.concatenate([centres[f] + rng.normal(size=(m, dim)) for f, m in enumerate(sizes)])
    total = int(sizes.sum())
    owner = np.repeat(np.arange(n_features), sizes)
    return FeatureDistributions.from_arrays(
        points=pts.astype(np.float32),
        weights=(1.0 / np.repeat(np.maximum(sizes, 1), sizes)).astype(np.float32),
        activations=rng.gamma(2.0, 1.0, total).astype(np.float32) + 0.1,
        keys=rng.random(total),
        seq=rng.integers(0, N_SEQ, total),
        pos=rng.integers(0, SEQ_LEN, total),
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
        feature_ids=np.arange(n_features) + 100 * layer,
        firing_counts=sizes * 3,
        activation_sums=np.bincount(owner, minlength=n_features).astype(np.float64),
        metadata={"model": "toy <b>model</b>", "hook": f"blocks.{layer}.hook_resid_post",
                  "sae": {"release": "toy"}, "n_tokens": N_SEQ * SEQ_LEN},
    )  # fmt: skip


def toy_run(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {f"layer{x}": make_site(rng, 30, x) for x in (1, 2, 3)}


def toy_matches(sites: dict[str, Any]) -> list[Any]:
    out = []
    for a, b in (("layer1", "layer2"), ("layer2", "layer3"), ("layer1", "layer3")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnfiredFeaturesWarning)
            m = semot.match(sites[a], sites[b], k=3, threshold="auto")
        m.attrs.update({"source_site": a, "target_site": b})
        out.append(m)
    return out


def toy_graph() -> AttributionGraph:
    def node(node_id: str, layer: Any, pos: int, ftype: str, clerp: str) -> dict[str, Any]:
        return {"node_id": node_id, "feature": None, "layer": layer, "ctx_idx": pos,
                "feature_type": ftype, "token_prob": 0, "is_target_logit": ftype == "logit",
                "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": node_id,
                "clerp": clerp}  # fmt: skip

    nodes = [
        node("E_1_0", "E", 0, "embedding", 'Emb: "a"'),
        node("1_105_0", "1", 0, "cross layer transcoder", XSS_IMG),
        node("2_204_1", "2", 1, "cross layer transcoder", "second"),
        node("3_302_1", "3", 1, "cross layer transcoder", "third"),
        node("4_9_1", "4", 1, "logit", "out"),
    ]
    links = [
        {"source": "E_1_0", "target": "1_105_0", "weight": 1.0},
        {"source": "1_105_0", "target": "2_204_1", "weight": 0.5},
        {"source": "2_204_1", "target": "3_302_1", "weight": 0.7},
        {"source": "3_302_1", "target": "4_9_1", "weight": 1.2},
    ]
    return AttributionGraph.from_dict(
        {
            "metadata": {"slug": "toy", "scan": "toy", "prompt_tokens": ["a", XSS_SCRIPT]},
            "qParams": {
                "pinnedIds": ["1_105_0", "2_204_1", "3_302_1"],
                "supernodes": [[XSS_CLOSE, "1_105_0", "2_204_1"], ["plain", "3_302_1"]],
            },
            "nodes": nodes,
            "links": links,
        }
    )


# ---------------------------------------------------------------------------------------------
# token contexts


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    before=st.integers(0, 6),
    after=st.integers(0, 6),
    shown_before=st.integers(0, 8),
    shown_after=st.integers(0, 8),
)
def test_windows_equal_slices_of_the_stream(
    seed: int, before: int, after: int, shown_before: int, shown_after: int
) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, 9)
    rows = [rng.integers(0, 50, n) for n in lengths]
    pick = rng.integers(0, 9, 15)
    seq = pick[lengths[pick] > 0]
    pos = np.array([rng.integers(0, lengths[s]) for s in seq], np.int64)
    ctx = TokenContexts.from_rows(enumerate(rows), seq, pos, before=before, after=after)
    win, known = ctx.windows(seq, pos, shown_before, shown_after)
    assert known.tolist() == [1] * len(seq)
    for r, (s, p) in enumerate(zip(seq.tolist(), pos.tolist(), strict=True)):
        ps = pos[seq == s]
        lo, hi = max(0, ps.min() - before), min(lengths[s], ps.max() + after + 1)
        for c, off in enumerate(range(-shown_before, shown_after + 1)):
            want = rows[s][p + off] if lo <= p + off < hi else -1
            assert win[r, c] == want
    # unknown sequences: nothing known
    w2, k2 = ctx.windows([99], [0], 1, 1)
    assert k2.tolist() == [0] and (w2 == -1).all()


def test_contexts_save_load_and_errors(tmp_path: Path) -> None:
    tokens = token_array()
    vocab = vocabulary()
    ctx = TokenContexts.from_rows(
        enumerate(tokens), [3, 3, 10], [2, 15, 0], vocab=token_strings(vocab, range(VOCAB))
    )
    ctx.save(tmp_path)
    back = TokenContexts.load(tmp_path)
    assert back is not None
    for name in ("seq", "start", "offsets", "ids"):
        assert np.array_equal(getattr(back, name), getattr(ctx, name))
    assert back.vocab == ctx.vocab == {int(i): vocab[i] for i in np.unique(ctx.ids)}
    assert TokenContexts.load(tmp_path / "nothing") is None
    with pytest.raises(ValueError, match=r"tokens: point 1 .* sequence 3 position 25"):
        TokenContexts.from_rows(enumerate(tokens), [3, 3], [2, 25])
    with pytest.raises(ValueError, match=r"tokens: point 0 of the run is in sequence 40"):
        TokenContexts.from_rows(enumerate(tokens), [40], [0])
    with pytest.raises(ValueError, match=r"tokenizer: .* token id 59"):
        token_strings({1: "a"}, [1, 59])
    with pytest.raises(ValueError, match="token id 70 is outside the 60"):
        token_strings(vocab, [70])


# ---------------------------------------------------------------------------------------------
# the pair table and the inputs


def test_feature_pairs_columns_and_margins() -> None:
    sites = toy_run()
    matches = toy_matches(sites)
    frames = [MatchFrame(m.attrs["source_site"], m.attrs["target_site"], m) for m in matches]
    pairs = feature_pairs(sites, frames)
    assert list(pairs.columns) == PAIR_COLUMNS
    assert len(pairs) == sum(len(m) for m in matches)
    first = pairs[pairs["source_site"] == "layer1"].iloc[0]
    assert (
        first["model"] == "toy <b>model</b>" and first["source_hook"] == "blocks.1.hook_resid_post"
    )
    assert first["source_layer"] == 1 and first["target_layer"] in (2, 3)
    assert json.loads(first["source_sae"]) == {"release": "toy"}
    # margin = 1 - best / second best distance of the source, brute force
    m = matches[0]
    for s, rows in m.groupby("source"):
        d = np.sort(rows["distance"].to_numpy())
        got = pairs[(pairs["source_site"] == "layer1") & (pairs["target_site"] == "layer2")
                    & (pairs["source_feature"] == s)]["margin"]  # fmt: skip
        assert np.allclose(got, 1 - d[0] / d[1], rtol=1e-12)
    assert set(pairs["target_feature"][pairs["target_site"] == "layer2"]) <= set(range(200, 230))


def test_write_browser_refuses_bad_inputs(tmp_path: Path) -> None:
    sites = toy_run()
    with pytest.raises(ValueError, match=r"no token contexts.*tokens="):
        write_browser(sites, tmp_path / "a")
    with pytest.raises(ValueError, match=r"tokens: point \d+ of the run"):
        write_browser(sites, tmp_path / "a", tokens=token_array()[:5], tokenizer=vocabulary())
    bare = pd.DataFrame(toy_matches(sites)[0])
    bare.attrs = {}
    with pytest.raises(ValueError, match=r"matches\[0\]: .* FROM:TO=PATH"):
        write_browser(sites, tmp_path / "a", tokens=token_array(), tokenizer=vocabulary(),
                      matches=[bare])  # fmt: skip
    with pytest.raises(ValueError, match="chain: no match frame from 'layer3' to 'layer1'"):
        write_browser(sites, tmp_path / "a", tokens=token_array(), tokenizer=vocabulary(),
                      matches=toy_matches(sites), chain=["layer3", "layer1"])  # fmt: skip
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match=r"out: .* not empty"):
        write_browser(sites, tmp_path / "busy", tokens=token_array(), tokenizer=vocabulary())


# ---------------------------------------------------------------------------------------------
# the pages, in headless Chromium


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def wait_view(driver: Any, prefix: str, timeout: float = 10.0) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        view = driver.execute_script("return document.body.getAttribute('data-view') || ''")
        if view.startswith(prefix):
            return str(view)
        time.sleep(0.02)
    raise AssertionError(
        f"view {prefix!r} not shown; body: {driver.find_element('tag name', 'body').text[:500]}"
    )


def open_page(driver: Any, index: Path, fragment: str = "") -> None:
    driver.get(index.resolve().as_uri() + fragment)


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    sites = toy_run()
    out = tmp_path_factory.mktemp("browser") / "site"
    res = write_browser(
        sites, out, matches=toy_matches(sites), chain=["layer1", "layer2", "layer3"],
        graph=toy_graph(), tokens=token_array(), tokenizer=vocabulary(), n_top=4, n_sampled=3,
        k=3, shard_size=8, labels={"layer1": {100: XSS_SCRIPT, 102: "a <i>label</i>"}},
    )  # fmt: skip
    assert res.index == out / "index.html"
    return res.index, sites


def test_site_files_are_self_contained(toy_site: tuple[Path, dict[str, Any]]) -> None:
    index, _ = toy_site
    out = index.parent
    for f in out.rglob("*"):
        if f.suffix in (".html", ".js", ".css"):
            text = f.read_text(encoding="utf-8")
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
            assert "https://" not in text and "@import" not in text
            if f.relative_to(out).parts[0] == "data":
                assert "</script" not in text and "<!--" not in text and "<img" not in text
    assert "innerHTML" not in (out / "assets" / "browser.js").read_text()
    assert (out / "pairs.csv").is_file() and (out / "pairs.parquet").is_file()
    assert list(pd.read_parquet(out / "pairs.parquet").columns) == PAIR_COLUMNS
    graph = AttributionGraph.load(out / "supernodes.json")
    assert [label for label, _ in graph.hand_supernodes()] == [XSS_CLOSE, "plain"]


def test_index_lists_searches_and_sorts(
    chromium: Any, toy_site: tuple[Path, dict[str, Any]]
) -> None:
    index, sites = toy_site
    driver = chromium
    open_page(driver, index)
    wait_view(driver, "index:0")
    ids = [
        int(r.get_attribute("data-id"))
        for r in driver.find_elements("css selector", "#features tbody tr")
    ]
    m12 = toy_matches(sites)[0]
    best = m12[m12["rank"] == 1].sort_values(["distance", "source"])
    # default sort: best distance in layer2, smallest first; unfired features (no row) last
    assert ids[: len(best)] == best["source"].tolist()
    assert sorted(ids) == list(range(100, 130))
    sel = driver.find_element("id", "sort")
    from selenium.webdriver.support.ui import Select

    Select(sel).select_by_value("density")
    wait_view(driver, "index:0:density")
    ids = [
        int(r.get_attribute("data-id"))
        for r in driver.find_elements("css selector", "#features tbody tr")
    ]
    dens = sites["layer1"].densities
    want = sorted(range(30), key=lambda i: (-dens[i], i))
    assert ids == [100 + i for i in want]
    search = driver.find_element("id", "search")
    search.send_keys("117")
    wait_view(driver, "index:0:density:117")
    ids = [
        int(r.get_attribute("data-id"))
        for r in driver.find_elements("css selector", "#features tbody tr")
    ]
    assert ids == [117]
    search.clear()
    search.send_keys("w7")  # a token: features whose top firing tokens hold " w7" (or w70..)
    wait_view(driver, "index:0:density:w7")
    rows = driver.find_elements("css selector", "#features tbody tr")
    assert rows and all("w7" in r.find_element("css selector", "td.toks").text for r in rows)
    search.clear()
    search.send_keys("script")  # the label holding <script> is found, and shown as text
    wait_view(driver, "index:0:density:script")
    assert XSS_SCRIPT in driver.find_element("id", "features").text
    assert driver.execute_script("return window.__pwned === undefined")
    assert console_errors(driver) == []


def test_feature_page_contexts_targets_and_chain(
    chromium: Any, toy_site: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    index, sites = toy_site
    driver = chromium
    fd = sites["layer1"]
    # a feature whose top contexts fire on one of the dangerous token strings
    tokens, vocab = token_array(), vocabulary()
    feature = None
    for i in range(len(fd)):
        s, p = fd.provenance(i)
        top = np.argsort(-np.asarray(fd.activations(i), np.float64), kind="stable")[:4]
        if any(tokens[s[j], p[j]] in (3, 4, 5) for j in top):
            feature = int(fd.feature_ids[i])
            break
    assert feature is not None
    open_page(driver, index, f"#/f/0/{feature}")
    wait_view(driver, f"feature:0:{feature}")
    i = fd.index_of(feature)
    acts = np.asarray(fd.activations(i))
    s, p = fd.provenance(i)
    lines = driver.find_elements("css selector", "#contexts .ctx-top .ctx")
    top = np.argsort(-acts.astype(np.float64), kind="stable")[:4]
    assert len(lines) == len(top)
    for line, j in zip(lines, top, strict=True):
        fire = line.find_element("css selector", ".tok.fire")
        assert fire.is_displayed()
        assert fire.get_attribute("textContent") == vocab[tokens[s[j], p[j]]].replace(
            "\n", "\u23ce"
        )
        assert line.get_attribute("title") == (
            f"sequence {s[j]}, position {p[j]}, activation {acts[j]:.3f}"
        )
    page = driver.execute_script("return document.getElementById('main').textContent")
    fired = {int(tokens[s[j], p[j]]) for j in top} & {3, 4, 5}
    assert fired and all(vocab[t] in page for t in fired)
    assert driver.execute_script("return window.__pwned === undefined")
    assert not driver.find_elements("css selector", "#main img, #main script")
    # targets: the frame's top-3 in layer2 and layer3, in rank order, each with contexts
    cards = driver.find_elements("css selector", "#targets .target")
    m12 = toy_matches(sites)[0]
    want = m12[m12["source"] == feature].sort_values("rank")["target"].tolist()
    got = [int(c.find_element("css selector", "a").text.split("#")[1]) for c in cards[:3]]
    assert got == want and len(cards) == 6
    assert all(c.find_elements("css selector", ".ctx") for c in cards)
    chain = driver.find_elements("css selector", ".chainbox svg a")
    via = semot.chain(toy_matches(sites)[:2]).set_index("source").loc[feature, "via"]
    if len(via) > 1:
        assert len(chain) == len(via)
    shot = Path(artifacts_dir(tmp_path)) / "browser-feature.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    assert console_errors(driver) == []


def test_supernodes_and_chains_pages(chromium: Any, toy_site: tuple[Path, dict[str, Any]]) -> None:
    index, _ = toy_site
    driver = chromium
    open_page(driver, index, "#/supernodes")
    wait_view(driver, "supernodes")
    groups = driver.find_elements("css selector", "details.group")
    assert len(groups) == 2
    groups[0].find_element("css selector", "summary").click()
    wait_view(driver, "supernodes:0")
    text = groups[0].text
    assert XSS_CLOSE in text and XSS_IMG in text and "layer1 #105" in text
    assert groups[0].find_elements("css selector", ".member .ctx")
    assert XSS_SCRIPT in driver.find_element("css selector", ".prompt").text
    assert driver.execute_script("return window.__pwned === undefined")
    open_page(driver, index, "#/chains")
    wait_view(driver, "chains:0")
    assert driver.find_elements("css selector", "#chains svg")
    assert console_errors(driver) == []


def test_16k_features_first_paint(chromium: Any, tmp_path: Path) -> None:
    """A 16,384-feature site: the index paints (first page of rows) in under 2 s."""
    rng = np.random.default_rng(1)
    n, m = 16_384, 4
    sizes = np.full(n, m)
    total = n * m
    fd = FeatureDistributions.from_arrays(
        points=rng.normal(size=(total, 2)).astype(np.float32),
        weights=np.full(total, 1 / m, np.float32), activations=rng.random(total).astype(np.float32),
        keys=rng.random(total), seq=rng.integers(0, 512, total), pos=rng.integers(0, 64, total),
        offsets=np.arange(n + 1) * m, feature_ids=np.arange(n), firing_counts=sizes * 2,
        activation_sums=np.ones(n), metadata={"n_tokens": 512 * 64, "hook": "layer5"},
    )  # fmt: skip
    frame = pd.DataFrame({"source": np.repeat(np.arange(n), 2), "target": np.tile([1, 2], n),
                          "rank": np.tile([1, 2], n), "distance": rng.random(2 * n) + 1,
                          "matched": np.tile([True, False], n)})  # fmt: skip
    frame["target"] = frame["target"].astype("Int64")
    tokens = rng.integers(0, 1000, (512, 64))
    t0 = time.perf_counter()
    res = write_browser({"layer5": fd}, tmp_path / "big", tokens=tokens,
                        tokenizer=[f" t{i}" for i in range(1000)], n_top=2, n_sampled=1,
                        before=4, after=2, matches=[("layer5", "layer5", frame)])  # fmt: skip
    written = time.perf_counter() - t0
    open_page(chromium, res.index)
    wait_view(chromium, "index:0")
    paint = chromium.execute_script(
        "return performance.getEntriesByName('semot-index')[0].startTime"
    )
    rows = chromium.find_elements("css selector", "#features tbody tr")
    print(f"\n16,384 features: site written in {written:.1f} s, index painted at {paint:.0f} ms")
    assert len(rows) == 100
    assert paint < 2000
    chromium.find_element("id", "next").click()
    wait_view(chromium, "index:0:distance::1")
    assert console_errors(chromium) == []


# ---------------------------------------------------------------------------------------------
# the command


def save_run(sites: dict[str, Any], root: Path) -> Path:
    root.mkdir(parents=True)
    for name, fd in sites.items():
        fd.save(root / name)
    write_run_record(root, {n: n for n in sites}, {"source": "test"})
    return root


def test_cli_browse_an_old_run_with_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sites = toy_run()
    run = save_run(sites, tmp_path / "run")
    m = toy_matches(sites)[0]
    m.to_parquet(tmp_path / "m12.parquet")  # attrs travel in the parquet metadata
    m.to_csv(tmp_path / "m12.csv", index=False)
    np.save(tmp_path / "tokens.npy", token_array())
    (tmp_path / "vocab.json").write_text(json.dumps(vocabulary()))
    out = tmp_path / "site"
    assert main(["browse", str(run), "--matches", str(tmp_path / "m12.parquet"),
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("semot browse: error: run: ") and "--tokens" in err and "\n" == err[-1]
    assert err.count("\n") == 1
    assert main(["browse", str(run), "--matches", str(tmp_path / "m12.csv"), "--tokens",
                 str(tmp_path / "tokens.npy"), "--tokenizer", str(tmp_path / "vocab.json"),
                 "--out", str(out)]) == 2  # fmt: skip
    assert "FROM:TO=PATH" in capsys.readouterr().err
    code = main(["browse", str(run), "--matches", str(tmp_path / "m12.parquet"),
                 f"1:3={tmp_path / 'm12.csv'}", "--tokens", str(tmp_path / "tokens.npy"),
                 "--tokenizer", str(tmp_path / "vocab.json"), "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "index.html" in capsys.readouterr().out
    assert (out / "index.html").is_file() and len(pd.read_csv(out / "pairs.csv")) == 2 * len(m)
    assert os.path.isfile(out / "data" / "s0" / "f0.js")
