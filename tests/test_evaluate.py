"""``semot evaluate``: streaming Pearson sums, top contexts, the silver standard, the CLI.

A tiny Llama built from a config and saved with ``save_pretrained`` (no tokenizer), TopK SAEs
built from sae-lens configs, a tiny collection run made with ``semot.collection.run.collect``;
nothing is downloaded. The planted case: a target SAE whose encoder is a permutation of the
source's on the same hook, so the right answer is known.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import optional_import

torch = optional_import("torch")
transformers = optional_import("transformers")
optional_import("sae_lens")

from semot.collection.models import Site, load_model, load_sae, runner_for  # noqa: E402
from semot.collection.run import collect, load_run  # noqa: E402
from semot.collection.tokens import ArrayTokens  # noqa: E402
from semot.evaluation import evaluate  # noqa: E402
from semot.evaluation.methods import METHODS  # noqa: E402
from semot.evaluation.stats import (  # noqa: E402
    EMPTY_KEY,
    PearsonSums,
    TopContexts,
    accumulate,
    context_key,
    split_of,
)
from semot.matching.baselines import activation_correlation_match  # noqa: E402

D = 16
D_SAE = 12
VOCAB = 50
HOOK = "model.layers.0"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    transformers.LlamaForCausalLM(cfg).save_pretrained(root / "model")

    def sae(hook: str) -> TopKSAE:
        return TopKSAE(
            TopKSAEConfig(
                d_in=D, d_sae=D_SAE, k=3, metadata=SAEMetadata(hook_name=hook, model_name="tiny")
            )
        )

    src, tgt, other = sae(HOOK), sae(HOOK), sae("model.layers.1")
    perm = np.random.default_rng(1).permutation(D_SAE)  # target j is source perm[j]
    with torch.no_grad():
        for s in (src, other):
            s.W_enc.normal_()
            s.W_dec.normal_()
            s.b_enc.normal_(std=0.1)
        tgt.W_enc.copy_(src.W_enc[:, perm])
        tgt.b_enc.copy_(src.b_enc[perm])
        tgt.W_dec.copy_(src.W_dec[perm])
        tgt.b_dec.copy_(src.b_dec)
    for name, s in (("sae_a", src), ("sae_b", tgt), ("sae_c", other)):
        s.save_model(root / name)
    TopKSAE(TopKSAEConfig(d_in=D, d_sae=8, k=3, metadata=SAEMetadata(hook_name=HOOK))).save_model(
        root / "sae_narrow"
    )  # in no run
    rng = np.random.default_rng(0)
    collect_tokens = rng.integers(0, VOCAB, size=(24, 16)).astype(np.int64)
    heldout = np.random.default_rng(7).integers(0, VOCAB, size=(30, 16)).astype(np.int64)
    np.save(root / "heldout.npy", heldout)
    model = load_model(root / "model", device="cpu")
    sites = [
        Site.from_sae(
            load_sae(path=root / n, device="cpu")[0], name=n, identity={"path": str(root / n)}
        )
        for n in ("sae_a", "sae_b", "sae_c")
    ]
    collect(
        model,
        sites,
        collect_tokens,
        samples_per_feature=512,  # more than any feature fires: every firing is kept
        batch_size=8,
        out=root / "run",
        progress=False,
        ignore_token_ids=None,
    )
    inverse = np.argsort(perm)  # source i is target inverse[i]
    return {"root": root, "model": model, "sites": sites, "heldout": heldout, "inverse": inverse}


# ------------------------------------------------------------------ streaming statistics
def test_pearson_sums_equal_numpy_corrcoef():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(300, 7)), 0) * rng.uniform(0.5, 50, size=7)
    y = np.maximum(rng.normal(size=(300, 9)), 0)
    y[:, 4] = 0.0  # a target that never fires: r is 0, not NaN
    x[:, 2] = 3.0  # a constant source
    sums = PearsonSums(7, 9)
    for lo, hi in ((0, 1), (1, 130), (130, 130), (130, 300)):
        sums.update(torch.as_tensor(x[lo:hi]), torch.as_tensor(y[lo:hi]))
    assert sums.sxy.shape == (7, 9) and sums.sxy.dtype == torch.float64  # the bounded state
    assert sums.n == 300
    with np.errstate(invalid="ignore"):  # constant columns: NaN in corrcoef, 0 in semot
        ref = np.corrcoef(x.T, y.T)[:7, 7:]
    r = sums.correlation()
    ok = np.isfinite(ref)
    np.testing.assert_allclose(r[ok], ref[ok], rtol=0, atol=1e-12)
    assert (r[2] == 0).all() and (r[:, 4] == 0).all()
    assert sums.source_varies().tolist() == [True, True, False, True, True, True, True]
    with pytest.raises(ValueError, match="expected 7 source and 9 target"):
        sums.update(torch.zeros(3, 9), torch.zeros(3, 9))


def _brute_top(acts: np.ndarray, keys: np.ndarray, k: int) -> list[list[int]]:
    out = []
    for j in range(acts.shape[1]):
        pos = [(-float(acts[t, j]), int(keys[t])) for t in range(len(keys)) if acts[t, j] > 0]
        out.append([key for _, key in sorted(pos)[:k]])
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    k=st.integers(1, 6),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=5),
)
def test_top_contexts_equal_a_brute_force_top_k(seed, k, cuts):
    rng = np.random.default_rng(seed)
    t = 60
    # Values on a coarse grid: many ties, which go to the earlier token.
    acts = np.round(np.maximum(rng.normal(size=(t, 5)), 0), 1).astype(np.float32)
    keys = context_key(np.arange(t) // 7, np.arange(t) % 7)
    top = TopContexts(5, k)
    bounds = sorted({0, t, *[min(c, t) for c in np.cumsum(cuts)]})
    for lo, hi in itertools.pairwise(bounds):
        top.update(torch.as_tensor(acts[lo:hi]), keys[lo:hi])
    got = top.keys()
    assert got.shape == (5, k)
    for j, want in enumerate(_brute_top(acts, keys, k)):
        row = got[j][got[j] != EMPTY_KEY].tolist()
        assert row == want


def test_accumulate_matches_brute_force_on_model_activations(assets):
    """Both splits' r against numpy.corrcoef, contexts against a brute-force top-k."""
    runner = runner_for(assets["model"])
    src, other = assets["sites"][0], assets["sites"][2]
    tokens = assets["heldout"][:10]
    sub = np.array([1, 4, 5, 9], dtype=np.int64)
    stats = accumulate(runner, src, other, ArrayTokens(tokens).batches(3), sub, top_contexts=4)
    with torch.no_grad():
        hidden = runner.run(torch.as_tensor(tokens), [src.hook, other.hook])
        xs = src.encode(hidden[src.hook].reshape(-1, D)).numpy().astype(np.float64)[:, sub]
        yt = other.encode(hidden[other.hook].reshape(-1, D)).numpy().astype(np.float64)
    seq = np.repeat(np.arange(10), 16)
    for s in (0, 1):
        rows = split_of(seq) == s
        assert stats.splits[s].n == rows.sum()
        with np.errstate(invalid="ignore"):  # a constant feature: NaN in corrcoef, 0 in semot
            ref = np.corrcoef(xs[rows].T, yt[rows].T)[: len(sub), len(sub) :]
        ref = np.nan_to_num(ref, nan=0.0)
        np.testing.assert_allclose(stats.splits[s].correlation(), ref, atol=1e-10)
    # The activation-correlation baseline on split B ranks the same as on stored activations.
    rows = split_of(seq) == 1
    frame = activation_correlation_match(xs[rows], yt[rows], k=3)
    r_b = stats.splits[1].correlation()
    for i in range(len(sub)):
        want = frame[frame["source"] == i]["target"].tolist()
        assert np.argsort(-r_b[i], kind="stable")[:3].tolist() == want
    keys = context_key(seq, np.tile(np.arange(16), 10))
    assert stats.source_contexts.keys().shape == (len(sub), 4)
    for got, want in zip(stats.source_contexts.keys(), _brute_top(xs, keys, 4), strict=True):
        assert got[got != EMPTY_KEY].tolist() == want
    for got, want in zip(stats.target_contexts.keys(), _brute_top(yt, keys, 4), strict=True):
        assert got[got != EMPTY_KEY].tolist() == want


# ------------------------------------------------------------------ the planted permutation
def test_planted_permutation_is_found_by_the_silver_standard_and_every_method(assets):
    fds = load_run(assets["root"] / "run")
    src, tgt = assets["sites"][0], assets["sites"][1]
    sae_a = load_sae(path=assets["root"] / "sae_a", device="cpu")[0]
    sae_b = load_sae(path=assets["root"] / "sae_b", device="cpu")[0]
    result = evaluate(
        assets["model"],
        src,
        tgt,
        fds["sae_a"],
        fds["sae_b"],
        assets["heldout"],
        source_sae=sae_a,
        target_sae=sae_b.state_dict(),
        thresholds=(0.5, 0.9),
        top_contexts=5,
        batch_size=8,
        ignore_token_ids=None,
        progress=False,
    )
    ids = result.source_ids
    assert ids.tolist() == fds["sae_a"].fired_ids.tolist()
    silver = result.silver_standard
    np.testing.assert_array_equal(silver.target, assets["inverse"][ids])
    np.testing.assert_allclose(silver.r, 1.0, atol=1e-12)
    assert result.silver["n_kept"].tolist() == [len(ids), len(ids)]
    assert result.silver["many_to_one"].tolist() == [0.0, 0.0]
    t = result.table
    assert list(dict.fromkeys(t["method"])) == ["silver-A", *METHODS]
    for row in t.itertuples(index=False):
        assert row.top1 == 1.0 and row.top5 == 1.0, row.method
        assert row.mean_r == pytest.approx(1.0, abs=1e-12), row.method
        assert row.context_jaccard == 1.0, row.method
        assert row.n_sources == len(ids), row.method
    assert result.info["n_tokens_a"] == 15 * 16 and result.info["n_tokens_b"] == 15 * 16
    text = result.format()
    assert "semot-sinkhorn" in text and "many-to-one" in text


def test_metrics_of_a_wrong_method_and_many_to_one():
    """A ranking built by hand: the numbers follow from the definitions."""
    from semot.evaluation.methods import Ranking
    from semot.evaluation.report import method_rows, silver_standard

    corr = np.array([[0.9, 0.1, 0.0], [0.2, 0.6, 0.1], [0.8, 0.0, 0.3], [0.1, 0.2, 0.25]])
    silver = silver_standard(corr, np.array([True, True, True, False]))
    assert silver.target.tolist() == [0, 1, 0, -1]
    assert silver.kept(0.5).tolist() == [True, True, True, False]
    assert silver.many_to_one(0.5) == pytest.approx(2 / 3)
    assert silver.many_to_one(0.7) == 1.0
    targets = np.array([[0, 1, -1, -1, -1], [2, 1, -1, -1, -1], [2, 0, 1, -1, -1], [0] * 5])
    keys = np.array([[1, 2, EMPTY_KEY], [3, EMPTY_KEY, EMPTY_KEY], [1, 5, 6], [7, 8, 9]])
    tkeys = np.array([[1, 9, EMPTY_KEY], [3, 4, EMPTY_KEY], [EMPTY_KEY] * 3])
    ranking = Ranking("m", targets, np.array([True, True, True, True]))
    (row,) = method_rows(ranking, silver, corr, keys, tkeys, [0.5])
    assert row["n_sources"] == 3
    assert row["top1"] == pytest.approx(1 / 3)
    assert row["top5"] == 1.0
    assert row["mean_r"] == pytest.approx((0.9 + 0.1 + 0.3) / 3)
    # source 0 vs target 0: {1,2} vs {1,9} -> 1/3; source 1 vs target 2: {3} vs {} -> 0;
    # source 2 vs target 2: {1,5,6} vs {} -> 0.
    assert row["context_jaccard"] == pytest.approx((1 / 3 + 0 + 0) / 3)


# ------------------------------------------------------------------ errors
def test_clear_errors(assets):
    fds = load_run(assets["root"] / "run")
    src, tgt = assets["sites"][0], assets["sites"][1]
    kw = {"ignore_token_ids": None, "progress": False}
    heldout = assets["heldout"]
    small = Site.from_encoder(lambda h: h[:, :5], hook=HOOK, d_in=D, d_sae=5, name="small")
    with pytest.raises(ValueError, match=r"target_fd: holds feature id 11 but the site 'small'"):
        evaluate(assets["model"], src, small, fds["sae_a"], fds["sae_b"], heldout, **kw)
    wide = Site.from_encoder(lambda h: h, hook=HOOK, d_in=D + 1, d_sae=D_SAE, name="wide")
    with pytest.raises(ValueError, match="gives width 16 but its SAE reads d_in = 17"):
        evaluate(assets["model"], wide, tgt, fds["sae_a"], fds["sae_b"], heldout, **kw)
    with pytest.raises(ValueError, match=r"target_sae: W_dec has 5 rows .* d_sae = 12"):
        evaluate(
            assets["model"], src, tgt, fds["sae_a"], fds["sae_b"], heldout,
            source_sae={"W_dec": np.zeros((12, D))}, target_sae={"W_dec": np.zeros((5, D))},
            **kw,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"thresholds: index 1 is 1.5"):
        evaluate(assets["model"], src, tgt, fds["sae_a"], fds["sae_b"], heldout,
                 thresholds=(0.3, 1.5), **kw)  # fmt: skip
    with pytest.raises(TypeError, match=r"source_site: expected a semot\.collection\.models\.Site"):
        evaluate(assets["model"], "sae_a", tgt, fds["sae_a"], fds["sae_b"], heldout, **kw)
    bad_hook = Site.from_encoder(lambda h: h, hook="model.layers.7", d_in=D, d_sae=D_SAE)
    with pytest.raises(ValueError, match=r"'model\.layers\.7' is not a submodule"):
        evaluate(assets["model"], bad_hook, tgt, fds["sae_a"], fds["sae_b"], heldout, **kw)
    with pytest.raises(ValueError, match="split B got 0 tokens"):
        evaluate(assets["model"], src, tgt, fds["sae_a"], fds["sae_b"], heldout[:1], **kw)
    with pytest.raises(ValueError, match="'special' needs the model's tokenizer"):
        evaluate(assets["model"], src, tgt, fds["sae_a"], fds["sae_b"], heldout, progress=False)


# ------------------------------------------------------------------ the command line
def test_cli_end_to_end(assets, tmp_path, capsys):
    from semot.cli import main

    root = assets["root"]
    base = [
        "evaluate", str(root / "run"), "--model", str(root / "model"), "--device", "cpu",
        "--tokens", str(root / "heldout.npy"), "--ignore-token-ids", "none", "--no-progress",
        "--sinkhorn-sources", "2",
    ]  # fmt: skip
    out = tmp_path / "report"
    rc = main([*base, "--from", "sae_a", "--to", "sae_b", "--thresholds", "0.5,0.9",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    for method in METHODS:
        assert method in printed
    report = json.loads((out / "report.json").read_text())
    assert report["info"]["source_site"] == "sae_a"
    rows = [r for r in report["table"] if r["method"] == "semot-sliced"]
    assert [r["threshold"] for r in rows] == [0.5, 0.9]
    assert all(r["top1"] == 1.0 for r in rows)  # the SAE paths came from the run's record
    assert (out / "top1_agreement.png").stat().st_size > 1000

    # Two different layers: runs, and the metrics are in range.
    rc = main([*base, "--from", "sae_a", "--to", "sae_c", "--n-sources", "5"])
    assert rc == 0
    assert "sae_a -> sae_c, 5 sources" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        main([*base, "--from", "sae_a", "--to", "nope"])
    assert "--to: no site 'nope' in the run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--from", "sae_a", "--to", "sae_b", "--sae-path", str(root / "sae_a")])
    assert "--sae-path: give it twice" in capsys.readouterr().err
    # An SAE of another width given for --to: the run and the SAE disagree.
    rc = main([*base, "--from", "sae_a", "--to", "sae_b", "--sae-path", str(root / "sae_a"),
               "--sae-path", str(root / "sae_narrow")])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "target_fd: holds feature id 11 but the site 'sae_b' has d_sae = 8" in err


def test_same_table_for_any_thread_count_and_block_size(assets, monkeypatch):
    import pandas as pd

    from semot.evaluation import methods

    fds = load_run(assets["root"] / "run")
    src, other = assets["sites"][0], assets["sites"][2]
    saes = [load_sae(path=assets["root"] / n, device="cpu")[0] for n in ("sae_a", "sae_c")]
    kw = {"n_sources": 6, "sinkhorn_sources": 3, "ignore_token_ids": None, "progress": False}
    threads = torch.get_num_threads()
    tables = []
    try:
        for n, block in ((1, methods.BLOCK), (2, 4)):  # 4: the nearest baselines in 2 blocks
            torch.set_num_threads(n)
            monkeypatch.setattr(methods, "BLOCK", block)
            res = evaluate(
                assets["model"], src, other, fds["sae_a"], fds["sae_c"], assets["heldout"],
                source_sae=saes[0], target_sae=saes[1], **kw,
            )  # fmt: skip
            tables.append(res.table)
    finally:
        torch.set_num_threads(threads)
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
    assert len(res.source_ids) == 6
    assert list(dict.fromkeys(res.table["method"])) == ["silver-A", *METHODS]


def test_cli_match_joint_score_reads_the_sae_decoders(assets, tmp_path):
    """``semot match --score joint``: the permuted SAE is found through both ranks."""
    import pandas as pd

    from semot.cli import main

    root = assets["root"]
    out = tmp_path / "m.parquet"
    base = ["match", str(root / "run"), "--from", "sae_a", "--to", "sae_b", "--out", str(out)]
    rc = main([*base, "--score", "joint", "--sae-from", str(root / "sae_a"),
               "--sae-to", str(root / "sae_b")])  # fmt: skip
    assert rc == 0
    m = pd.read_parquet(out)
    first = m[m["rank"] == 1]
    assert {"distance", "score"} <= set(m.columns)
    assert (first["target"].astype(int).to_numpy() == assets["inverse"][first["source"]]).all()
    assert (first["score"] == 0).all()  # rank 0 by both the centroid and the decoder
    assert main([*base, "--score", "joint"]) == 2  # no SAEs given: one-line error
    assert main([*base, "--sae-from", str(root / "sae_a")]) == 2
