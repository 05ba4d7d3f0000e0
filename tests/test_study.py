"""The method study's instruments: stored activations, re-read geometries, the score parts.

``StoredActivations`` must give :func:`semot.collect` and the evaluation pass exactly what the
model gives (a tiny Llama built from a config, saved and loaded back); the study's distances
are checked against plain per-direction loops and against the sliced W2 of centred clouds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import optional_import

torch = optional_import("torch")
transformers = optional_import("transformers")

import semot  # noqa: E402
from semot.bench.study import (  # noqa: E402
    Geometry,
    clouds_in,
    context_silver,
    fit_geometry,
    sliced_parts,
    token_histograms,
)
from semot.clouds import PointClouds  # noqa: E402
from semot.collection.models import Site, load_model, runner_for  # noqa: E402
from semot.collection.reference import ReferenceSpec  # noqa: E402
from semot.collection.replay import StoredActivations  # noqa: E402
from semot.collection.run import collect  # noqa: E402
from semot.evaluation.stats import EMPTY_KEY, TopContexts, accumulate  # noqa: E402

D, D_SAE, VOCAB, S, L = 16, 12, 40, 24, 16
HOOKS = ["model.layers.0", "model.layers.1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
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
    transformers.LlamaForCausalLM(cfg).save_pretrained(root)
    runner = runner_for(load_model(str(root), device="cpu"))
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(S, L))
    with torch.no_grad():
        states = runner.run(torch.as_tensor(tokens), HOOKS)
    hidden = {h: states[h].numpy().astype(np.float32) for h in HOOKS}
    g = torch.Generator().manual_seed(1)
    sites = []
    for i, hook in enumerate(HOOKS):
        w = torch.randn(D, D_SAE, generator=g)
        sites.append(
            Site.from_encoder(
                lambda h, w=w: torch.relu(h @ w), hook=hook, d_in=D, d_sae=D_SAE, name=f"s{i}"
            )
        )
    return runner, tokens, hidden, sites


def _collect(model, tokens, sites, **kw):
    return collect(
        model,
        sites,
        tokens,
        samples_per_feature=8,
        reference=ReferenceSpec(hook=HOOKS[1], normalize="standardize"),
        batch_size=5,
        progress=False,
        ignore_token_ids=(),
        **kw,
    )


def test_collect_from_stored_states_equals_collect_from_the_model(setup):
    runner, tokens, hidden, sites = setup
    live = _collect(runner, tokens, sites)
    replay = _collect(StoredActivations(tokens, hidden), tokens, sites)
    for name in live:
        a, b = live[name], replay[name]
        np.testing.assert_array_equal(a.fired_ids, b.fired_ids)
        for i in range(a.n_features):
            np.testing.assert_array_equal(a.provenance(i)[0], b.provenance(i)[0])
            np.testing.assert_array_equal(a.provenance(i)[1], b.provenance(i)[1])
            np.testing.assert_allclose(a.cloud(i)[0], b.cloud(i)[0], rtol=1e-5, atol=1e-5)


def test_evaluation_pass_from_stored_states_equals_the_model(setup):
    from semot.collection.tokens import as_token_source

    runner, tokens, hidden, sites = setup
    ids = np.arange(D_SAE, dtype=np.int64)
    out = []
    for model in (runner, StoredActivations(tokens[::-1], {h: v[::-1] for h, v in hidden.items()})):
        stats = accumulate(model, sites[0], sites[1], as_token_source(tokens).batches(7), ids)
        out.append(stats)
    np.testing.assert_allclose(
        out[0].splits[0].correlation(), out[1].splits[0].correlation(), atol=1e-5, equal_nan=True
    )
    np.testing.assert_array_equal(out[0].source_contexts.keys(), out[1].source_contexts.keys())


def test_stored_states_refuse_what_they_do_not_hold(setup):
    _, tokens, hidden, _ = setup
    replay = StoredActivations(tokens, hidden)
    with pytest.raises(ValueError, match="sequence 1 of the batch is not among"):
        replay.run(torch.as_tensor(np.stack([tokens[0], (tokens[0] + 1) % VOCAB])), HOOKS)
    with pytest.raises(ValueError, match="no stored hidden states"):
        replay.check_hooks(["model.layers.7"])
    with pytest.raises(ValueError, match=r"shape \(24, 15, 16\)"):
        StoredActivations(tokens, {HOOKS[0]: hidden[HOOKS[0]][:, 1:]})
    # A prefix of a stored sequence (how collect reads a hook's width) is answered.
    first = replay.run(torch.as_tensor(tokens[3:4, :1]), HOOKS[:1])[HOOKS[0]]
    np.testing.assert_array_equal(first.numpy(), hidden[HOOKS[0]][3:4, :1])


def test_reference_map_on_numpy_returns_numpy(setup):
    """numpy >= 2 arrays have a .device; the map must not hand them torch tensors."""
    _, tokens, hidden, _ = setup
    replay = StoredActivations(tokens, hidden)
    refmap = fit_geometry(Geometry("std", normalize="standardize"), HOOKS[1], replay, (), 0)
    x = hidden[HOOKS[1]].reshape(-1, D)
    y = refmap.transform(x, HOOKS[0])
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, (x - x.mean(0)) / x.std(0, ddof=1), rtol=1e-3, atol=1e-3)


def test_whitened_geometry_has_identity_covariance(setup):
    _, tokens, hidden, _ = setup
    replay = StoredActivations(tokens, hidden)
    geo = Geometry("w", reduce="pca", n_components=6, normalize="standardize")
    y = fit_geometry(geo, HOOKS[1], replay, (), 0).transform(hidden[HOOKS[1]].reshape(-1, D), "")
    np.testing.assert_allclose(np.cov(y.T), np.eye(6), atol=1e-3)


def test_clouds_re_read_at_the_sampled_positions(setup):
    runner, tokens, hidden, sites = setup
    run = _collect(runner, tokens, sites)
    replay = StoredActivations(tokens, hidden)
    fd = run["s0"]
    refmap = fit_geometry(Geometry("raw"), HOOKS[1], replay, (), 0)
    ids = np.asarray(fd.fired_ids[:3])
    clouds = clouds_in(fd, ids, refmap, replay, HOOKS[0])
    for c, f in enumerate(ids):
        seq, pos = fd.provenance(fd.index_of(int(f)))
        pts, w = clouds[c]
        np.testing.assert_array_equal(pts, hidden[HOOKS[1]][seq, pos])
        np.testing.assert_allclose(w, fd.cloud(fd.index_of(int(f)))[1], rtol=1e-6)
    hist = token_histograms(fd, ids, tokens).toarray()
    seq, pos = fd.provenance(fd.index_of(int(ids[0])))
    w = fd.cloud(fd.index_of(int(ids[0])))[1].astype(np.float64)
    expect = np.zeros(VOCAB)
    np.add.at(expect, tokens[seq, pos], w)
    np.testing.assert_allclose(hist[0, : expect.size], expect / np.linalg.norm(expect))


def _random_clouds(rng, n_clouds, d):
    sizes = rng.integers(1, 7, size=n_clouds)
    pts = [rng.normal(size=(int(m), d)) * rng.uniform(0.2, 3) + rng.normal(size=d) for m in sizes]
    wts = [rng.uniform(0.1, 1, size=int(m)) for m in sizes]
    return PointClouds.from_list(list(zip(pts, wts, strict=True)))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 5))
def test_sliced_parts_against_per_direction_loops(seed, d):
    rng = np.random.default_rng(seed)
    a, b = _random_clouds(rng, 3, d), _random_clouds(rng, 4, d)
    proj = semot.distances.projections.random_projections(d, 6, seed)
    parts = sliced_parts(a, b, proj)
    sw = semot.sliced_wasserstein_cdist(a, b, projections=proj)
    for i in range(len(a)):
        for j in range(len(b)):
            (xa, wa), (xb, wb) = a[i], b[j]
            loc = spread = centred = 0.0
            for col in proj.T:
                pa, pb = xa @ col, xb @ col
                ma, mb = np.average(pa, weights=wa), np.average(pb, weights=wb)
                sa = np.sqrt(np.average((pa - ma) ** 2, weights=wa))
                sb = np.sqrt(np.average((pb - mb) ** 2, weights=wb))
                loc += (ma - mb) ** 2
                spread += (sa - sb) ** 2
                centred += semot.wasserstein_1d(pa - ma, pb - mb, wa, wb, p=2)  # W2^2
            n = proj.shape[1]
            assert parts["location"][i, j] == pytest.approx(loc / n, rel=1e-6, abs=1e-9)
            assert parts["gaussian_spread"][i, j] == pytest.approx(spread / n, rel=1e-6, abs=1e-9)
            # SW2^2 = location + the SW2^2 of the centred projections; Gaussian <= sliced.
            assert sw[i, j] ** 2 == pytest.approx((loc + centred) / n, rel=1e-6, abs=1e-9)
            assert (loc + spread) / n <= sw[i, j] ** 2 * (1 + 1e-9) + 1e-12


def test_context_silver_against_sets():
    rng = np.random.default_rng(3)
    src, tgt = TopContexts(5, 4), TopContexts(7, 4)
    for _ in range(3):
        keys = rng.choice(30, size=10, replace=False).astype(np.int64)
        for contexts, n in ((src, 5), (tgt, 7)):
            acts = rng.exponential(size=(10, n)) * (rng.random((10, n)) < 0.5)
            contexts.update(torch.as_tensor(acts, dtype=torch.float32), keys)

    class Stats:
        source_contexts, target_contexts = src, tgt

    silver = context_silver(Stats)
    ks, kt = src.keys(), tgt.keys()
    for i in range(5):
        a = set(ks[i][ks[i] != EMPTY_KEY].tolist())
        jac = []
        for j in range(7):
            b = set(kt[j][kt[j] != EMPTY_KEY].tolist())
            jac.append(len(a & b) / len(a | b) if a | b else 0.0)
        best = int(np.argmax(jac))
        if not a or jac[best] == 0:
            assert silver.target[i] == -1
        else:
            assert silver.target[i] == best and silver.r[i] == pytest.approx(jac[best])
