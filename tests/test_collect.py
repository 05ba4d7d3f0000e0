"""Collection from tiny transformer-lens models with sae-lens SAEs built from configs.

Nothing is downloaded: the model and the SAEs are built from configs, saved to a temporary
directory and loaded back through the loaders users call (``load_model``, ``load_sae``).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import optional_import

torch = optional_import("torch")
optional_import("transformer_lens")
optional_import("sae_lens")

from semot.collection.models import ModuleHooks, Site, load_model, load_sae, save_hooked_transformer  # noqa: E402
from semot.collection.reference import ReferenceMap, ReferenceSpec  # noqa: E402
from semot.collection.run import collect as collect_with_defaults  # noqa: E402
from semot.collection.run import load_run  # noqa: E402
from semot.features.container import CorruptFileError, FeatureDistributions  # noqa: E402

D_MODEL = 16
VOCAB = 61
HOOK0 = "blocks.0.hook_resid_post"
HOOK1 = "blocks.1.hook_resid_post"

# The tiny models here have no tokenizer, so the default ignore_token_ids="special" cannot be
# resolved (it raises): every call samples every token unless it names the ids to ignore.
collect = functools.partial(collect_with_defaults, ignore_token_ids=None)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    root = tmp_path_factory.mktemp("assets")
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=3,
        d_model=D_MODEL,
        n_ctx=32,
        d_head=4,
        n_heads=4,
        d_vocab=VOCAB,
        act_fn="gelu",
        seed=0,
        device="cpu",
    )
    save_hooked_transformer(HookedTransformer(cfg), root / "model")
    sae0 = StandardSAE(
        StandardSAEConfig(
            d_in=D_MODEL, d_sae=24, metadata=SAEMetadata(hook_name=HOOK0, model_name="tiny")
        )
    )
    sae1 = TopKSAE(
        TopKSAEConfig(
            d_in=D_MODEL, d_sae=20, k=5, metadata=SAEMetadata(hook_name=HOOK1, model_name="tiny")
        )
    )
    with torch.no_grad():
        for sae in (sae0, sae1):
            sae.W_enc.normal_()
            sae.b_enc.fill_(-0.5)
    sae0.save_model(root / "sae0")
    sae1.save_model(root / "sae1")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=(24, 12)).astype(np.int64)
    np.save(root / "tokens.npy", tokens)
    return root, tokens


def _load(root):
    model = load_model(root / "model", device="cpu")
    saes = [load_sae(path=root / n, device="cpu")[0] for n in ("sae0", "sae1")]
    return model, saes


def _hidden(model, tokens, hook):
    _, cache = model.run_with_cache(torch.as_tensor(tokens), names_filter=[hook])
    return cache[hook].numpy()


def test_loaders_round_trip(assets):
    root, tokens = assets
    model, (sae0, sae1) = _load(root)
    assert sae0.cfg.metadata.hook_name == HOOK0
    assert type(sae1).__name__ == "TopKSAE"
    again = load_model(root / "model", device="cpu")
    x = torch.as_tensor(tokens[:2])
    torch.testing.assert_close(model(x), again(x))


def test_support_points_are_reference_states_at_recorded_positions(assets, tmp_path):
    root, tokens = assets
    model, saes = _load(root)
    res = collect(
        model,
        saes,
        tokens,
        samples_per_feature=6,
        reference=HOOK1,
        normalize=None,
        batch_size=5,
        progress=False,
        out=tmp_path / "run",
    )
    h0, h1 = _hidden(model, tokens, HOOK0), _hidden(model, tokens, HOOK1)
    for name, sae, h_feat in (("sae_hook0", saes[0], h0), ("sae_hook1", saes[1], h1)):
        fd = res[HOOK0 if sae is saes[0] else HOOK1]
        acts = sae.encode(torch.as_tensor(h_feat)).detach().numpy()
        assert fd.n_features == sae.cfg.d_sae
        assert fd.fired.sum() > sae.cfg.d_sae // 2, name
        for i in range(fd.n_features):
            pts, _ = fd.cloud(i)
            s, p = fd.provenance(i)
            np.testing.assert_allclose(pts, h1[s, p], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(fd.activations(i), acts[s, p, i], rtol=1e-5, atol=1e-6)
            assert fd.firing_counts[i] == (acts[:, :, i] > 0).sum()
        assert fd.metadata["n_tokens"] == tokens.size
        assert fd.metadata["reference"]["hook"] == HOOK1
    # The token windows around every sampled point are stored with the run (for the browser).
    from semot.features.contexts import TokenContexts, run_points

    ctx = TokenContexts.load(tmp_path / "run")
    assert ctx is not None
    seq, pos = run_points(res.values())
    win, known = ctx.windows(seq, pos, 3, 2)
    assert known.all() and len(seq) == sum(fd.n_points for fd in res.values())
    length = tokens.shape[1]
    for r, (a, b) in enumerate(zip(seq.tolist(), pos.tolist(), strict=True)):
        want = [tokens[a, b + o] if 0 <= b + o < length else -1 for o in range(-3, 3)]
        assert win[r].tolist() == want
    if ctx.vocab is not None:
        assert set(ctx.vocab) == set(np.unique(ctx.ids).tolist())
    # Saved, reloaded lazily, and `semot info` style summary works.
    loaded = load_run(tmp_path / "run")
    for key, fd in res.items():
        np.testing.assert_array_equal(loaded[key].feature_ids, fd.feature_ids)
        np.testing.assert_array_equal(loaded[key].cloud(0)[0], fd.cloud(0)[0])


def test_top_mode_equals_brute_force_top_n(assets):
    root, tokens = assets
    model, saes = _load(root)
    n = 7
    fd = collect(
        model,
        saes[:1],
        tokens,
        samples_per_feature=n,
        mode="top",
        batch_size=7,
        progress=False,
        reference=HOOK0,
    )[HOOK0]
    acts = saes[0].encode(torch.as_tensor(_hidden(model, tokens, HOOK0))).detach().numpy()
    for f in range(acts.shape[2]):
        s, p = np.nonzero(acts[:, :, f] > 0)
        a = acts[s, p, f]
        order = np.lexsort((s * 2**32 + p, -a))[:n]
        got_s, got_p = fd.provenance(f)
        # Tiny float differences between batched and unbatched runs could swap near-ties:
        # compare the activation values, which must be the top-n values.
        np.testing.assert_allclose(np.sort(fd.activations(f))[::-1], a[order], rtol=1e-5)
        assert set(zip(got_s.tolist(), got_p.tolist(), strict=True)) == set(
            zip(s[order].tolist(), p[order].tolist(), strict=True)
        )
        _, w = fd.cloud(f)
        np.testing.assert_allclose(w, fd.activations(f) / fd.activations(f).sum(), rtol=1e-5)


def test_feature_subset_ignore_ids_and_stop_at_layer(assets):
    root, tokens = assets
    model, saes = _load(root)
    site = Site.from_sae(saes[0], features=[3, 0, 11])
    fd = collect(
        model,
        [site],
        tokens,
        samples_per_feature=4,
        progress=False,
        ignore_token_ids=[int(tokens[0, 0])],
        reference=HOOK0,
    )[HOOK0]
    np.testing.assert_array_equal(fd.feature_ids, [3, 0, 11])
    banned = tokens == tokens[0, 0]
    assert fd.metadata["n_tokens"] == tokens.size - banned.sum()
    for i in range(3):
        s, p = fd.provenance(i)
        assert not banned[s, p].any()


def test_reduce_normalize_and_reuse_of_the_reference_map(assets, tmp_path):
    root, tokens = assets
    model, saes = _load(root)
    spec = ReferenceSpec(
        hook=HOOK1, reduce="pca", n_components=5, normalize="unit", calibration_tokens=200
    )
    res = collect(
        model,
        saes,
        tokens,
        samples_per_feature=4,
        reference=spec,
        progress=False,
        out=tmp_path / "a",
    )
    fd = res[HOOK1]
    assert fd.dim == 5
    pts = np.concatenate([fd.cloud(i)[0] for i in range(fd.n_features) if fd.sample_sizes[i]])
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0, rtol=1e-5)
    # The PCA directions are the top eigenvectors of the calibration covariance (numpy oracle).
    refmap = ReferenceMap.load(tmp_path / "a" / HOOK1)
    h = _hidden(model, tokens, HOOK1).reshape(-1, D_MODEL)[:200].astype(np.float64)
    _, vecs = np.linalg.eigh(np.cov(h.T))
    proj = refmap.arrays["projection"].astype(np.float64)
    np.testing.assert_allclose(np.abs(proj.T @ vecs[:, ::-1][:, :5]), np.eye(5), atol=1e-4)
    # A second run with the stored map shares its space exactly.
    again = collect(
        model, saes[:1], tokens[:10], samples_per_feature=4, reference=refmap, progress=False
    )[HOOK0]
    assert again.metadata["reference"] == fd.metadata["reference"]


def test_linear_map_reference_equals_least_squares(assets):
    root, tokens = assets
    model, saes = _load(root)
    spec = ReferenceSpec(hook=HOOK1, kind="linear-map", calibration_tokens=tokens.size)
    fd = collect(model, saes[:1], tokens, samples_per_feature=3, reference=spec, progress=False)[
        HOOK0
    ]
    refmap = ReferenceMap.from_parts(fd.metadata["reference"], fd.reference_arrays)
    x = _hidden(model, tokens, HOOK0).reshape(-1, D_MODEL).astype(np.float64)
    y = _hidden(model, tokens, HOOK1).reshape(-1, D_MODEL).astype(np.float64)
    xa = np.hstack([x, np.ones((x.shape[0], 1))])
    beta, *_ = np.linalg.lstsq(xa, y, rcond=None)
    np.testing.assert_allclose(refmap.arrays[f"linear/{HOOK0}/W"], beta[:-1], atol=2e-3)
    np.testing.assert_allclose(refmap.arrays[f"linear/{HOOK0}/b"], beta[-1], atol=2e-3)
    s, p = fd.provenance(0)
    np.testing.assert_allclose(
        fd.cloud(0)[0], (xa @ beta).reshape(*tokens.shape, D_MODEL)[s, p], atol=2e-3
    )


def test_generic_torch_module_with_any_encoder():
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Embedding(30, 8), torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 6)
    )
    w = torch.randn(8, 10)
    site = Site.from_encoder(lambda h: torch.relu(h @ w), hook="2", d_in=8, d_sae=10)
    tokens = np.random.default_rng(1).integers(0, 30, size=(6, 5))
    fd = collect(
        ModuleHooks(net),
        [site],
        tokens,
        samples_per_feature=3,
        reference="1",
        normalize=None,
        progress=False,
        ignore_token_ids=None,
    )["2"]
    with torch.no_grad():
        h1 = net[1](net[0](torch.as_tensor(tokens))).numpy()
        acts = torch.relu(net[2](torch.as_tensor(h1)) @ w).numpy()
    for i in range(10):
        s, p = fd.provenance(i)
        np.testing.assert_allclose(fd.cloud(i)[0], h1[s, p], rtol=1e-6) if len(s) else None
        assert fd.firing_counts[i] == (acts[:, :, i] > 0).sum()


def test_text_files_with_a_local_tokenizer(assets, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    from semot.collection.tokens import TextFiles

    root, _ = assets
    words = ["<bos>"] + [f"w{i}" for i in range(VOCAB - 2)] + ["<unk>"]
    tk = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
    )
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", unk_token="<unk>")
    model, saes = _load(root)
    text = tmp_path / "a.txt"
    text.write_text(" ".join(f"w{i % 50}" for i in range(100)))
    src = TextFiles([text], tok, context_length=16)
    batches = list(src.batches(4))
    assert sum(b.n_tokens for b in batches) == 100 + 7  # 7 sequences, each with a BOS
    assert all((b.tokens[:, 0] == 0).all() for b in batches)
    fd = collect(
        model,
        saes[:1],
        src,
        samples_per_feature=4,
        progress=False,
        ignore_token_ids=[0],
        reference=HOOK0,
    )[HOOK0]
    assert fd.metadata["n_tokens"] == 100


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reference": "blocks.9.hook_resid_post"}, "does not exist"),
        ({"tokens": []}, "empty"),
        ({"tokens": np.zeros((3, 0), np.int64)}, "length 0"),
        ({"tokens": [np.array([1, 2]), np.array([], np.int64)]}, "length 0"),
        ({"samples_per_feature": 0}, "samples_per_feature"),
        ({"mode": "best"}, "mode"),
    ],
)
def test_clear_errors(assets, kwargs, match):
    root, tokens = assets
    model, saes = _load(root)
    args = {"tokens": tokens, "samples_per_feature": 3, "progress": False, **kwargs}
    tok = args.pop("tokens")
    with pytest.raises((ValueError, TypeError), match=match):
        collect(model, saes, tok, **args)


def test_sae_width_mismatch_is_a_clear_error(assets):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    root, tokens = assets
    model, _ = _load(root)
    bad = StandardSAE(StandardSAEConfig(d_in=8, d_sae=4, metadata=SAEMetadata(hook_name=HOOK0)))
    with pytest.raises(
        ValueError, match=r"expects d_in=8 but hook 'blocks.0.hook_resid_post' gives"
    ):
        collect(model, [bad], tokens, progress=False)


def _arrays(fd: FeatureDistributions) -> dict[str, np.ndarray]:
    out = {}
    for i in range(fd.n_features):
        pts, w = fd.cloud(i)
        s, p = fd.provenance(i)
        for name, arr in (
            ("pts", pts),
            ("w", w),
            ("s", s),
            ("p", p),
            ("a", fd.activations(i)),
            ("k", fd.keys(i)),
        ):
            out[f"{i}/{name}"] = np.array(arr)
    out["counts"] = np.array(fd.firing_counts)
    out["sums"] = np.array(fd.activation_sums)
    return out


SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    import numpy as np
    import torch
    from semot.collection.run import collect

    # As in a terminal, even when the test runner was started as a background job.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from semot.collection.models import load_model, load_sae

    root, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    # The test process finishes the run: compute with the same number of threads as it does.
    torch.set_num_threads(int(sys.argv[4]))
    model = load_model(root + "/model", device="cpu")
    saes = [load_sae(path=root + "/" + n, device="cpu")[0] for n in ("sae0", "sae1")]
    tokens = np.load(root + "/tokens.npy")

    class Slow:
        def __iter__(self):
            for row in tokens:
                time.sleep(delay)
                yield row

    collect(model, saes, Slow(), **COLLECT_ARGS, out=out, progress=False)
    """
)
# The configuration of the interrupted runs, in the subprocess and in the test process alike.
COLLECT_ARGS = {
    "samples_per_feature": 5,
    "batch_size": 2,
    "checkpoint_every": 24,
    "ignore_token_ids": None,
}
SCRIPT = SCRIPT.replace("**COLLECT_ARGS", "**" + repr(COLLECT_ARGS))


def _start_slow_run(root, out, delay, **popen):
    """Start the collection of ``SCRIPT`` in a subprocess, reading one sequence per ``delay`` s."""
    script = out.parent / f"{out.name}.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(script), str(root), str(out), str(delay)]
    return subprocess.Popen([*args, str(torch.get_num_threads())], env=env, **popen)


def _collect_here(root, out, resume):
    """The run of ``SCRIPT``, in this process (same model, SAEs, token stream and settings)."""
    model, saes = _load(root)
    rows = list(np.load(root / "tokens.npy"))
    return collect(model, saes, rows, **COLLECT_ARGS, out=out, resume=resume, progress=False)


def test_resume_after_sigkill_is_bit_identical(assets, tmp_path):
    # One subprocess, killed for real mid-run; the uninterrupted run and the resume run here
    # (the same code on the same inputs, without paying the imports of two more processes).
    root, _ = assets
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    proc = _start_slow_run(root, cut_dir, 0.15)
    pointer = cut_dir / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if pointer.is_file() and json.loads(pointer.read_text())["generation"] >= 1:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut_dir / "run.json").exists(), "the run finished before it could be killed"
    done = json.loads(pointer.read_text())["tokens_done"]
    assert 0 < done < 24 * 12
    with pytest.raises(ValueError, match="not a finished collection run"):
        load_run(cut_dir)
    _collect_here(root, cut_dir, resume=True)
    _collect_here(root, ref_dir, resume=False)
    ref, cut = load_run(ref_dir), load_run(cut_dir)
    for key in ref:
        a, b = _arrays(ref[key]), _arrays(cut[key])
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{key} {name}")
        assert ref[key].metadata == cut[key].metadata
    assert not (cut_dir / "checkpoint").exists()


def test_resume_refuses_a_different_configuration_and_a_corrupt_checkpoint(assets, tmp_path):
    root, tokens = assets
    model, saes = _load(root)

    class Stop(Exception):
        pass

    calls = {"n": 0}
    real = saes[0].encode

    def failing(h):
        calls["n"] += 1
        if calls["n"] > 3:
            raise Stop
        return real(h)

    site = Site.from_sae(saes[0])
    site.encode = failing
    out = tmp_path / "run"
    with pytest.raises(Stop):
        collect(
            model,
            [site],
            tokens,
            samples_per_feature=3,
            batch_size=2,
            out=out,
            checkpoint_every=1,
            progress=False,
        )
    assert (out / "checkpoint" / "checkpoint.json").is_file()
    with pytest.raises(ValueError, match="seed: checkpoint has 0, this run has 1"):
        collect(
            model,
            saes[:1],
            tokens,
            samples_per_feature=3,
            batch_size=2,
            out=out,
            resume=True,
            seed=1,
            progress=False,
        )
    with pytest.raises(ValueError, match="not empty"):
        collect(
            model, saes[:1], tokens, samples_per_feature=3, batch_size=2, out=out, progress=False
        )
    state = next((out / "checkpoint").glob("state-*.safetensors"))
    data = bytearray(state.read_bytes())
    data[-3] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="checksum"):
        collect(
            model,
            saes[:1],
            tokens,
            samples_per_feature=3,
            batch_size=2,
            out=out,
            resume=True,
            progress=False,
        )
    (out / "checkpoint" / "checkpoint.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="unreadable checkpoint"):
        collect(
            model,
            saes[:1],
            tokens,
            samples_per_feature=3,
            batch_size=2,
            out=out,
            resume=True,
            progress=False,
        )


def test_cli_collect_and_info(assets, tmp_path):
    from semot.cli.app import main

    root, _ = assets
    out = tmp_path / "cli"
    rc = main(
        [
            "collect",
            "--model",
            str(root / "model"),
            "--sae-path",
            str(root / "sae0"),
            "--sae-path",
            str(root / "sae1"),
            "--tokens",
            str(root / "tokens.npy"),
            "--n-tokens",
            "100",
            "--samples-per-feature",
            "4",
            "--mode",
            "top",
            "--reference",
            HOOK1,
            "--reduce",
            "6",
            "--device",
            "cpu",
            "--batch-size",
            "3",
            "--out",
            str(out),
            "--no-progress",
            "--ignore-token-ids",
            "none",
        ]
    )
    assert rc == 0
    run = load_run(out)
    assert set(run) == {"sae0", "sae1"}
    assert run["sae0"].metadata["n_tokens_read"] == 100
    assert run["sae0"].dim == 6
    r = subprocess.run(
        [sys.executable, "-m", "semot.cli", "info", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert r.returncode == 0, r.stderr
    assert "sae0" in r.stdout and "top" in r.stdout
    rc = main(
        [
            "collect",
            "--model",
            str(root / "model"),
            "--sae-path",
            str(root / "sae0"),
            "--tokens",
            str(root / "tokens.npy"),
            "--reference",
            "blocks.7.hook_nope",
            "--out",
            str(tmp_path / "bad"),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 2


def test_import_semot_does_not_import_torch():
    code = (
        "import sys, semot, semot.features.container, semot.features.sampling, "
        "semot.collection.tokens, "
        "semot.collection.reference, semot.cli.app; "
        "bad = [m for m in ('torch', 'transformer_lens', 'sae_lens', 'transformers') "
        "if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_ctrl_c_saves_a_checkpoint_and_resume_completes(assets, tmp_path):
    root, _ = assets
    out = tmp_path / "int"
    proc = _start_slow_run(
        root, out, 0.15, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pointer = out / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not pointer.is_file():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in stderr
    assert "interrupted: checkpoint saved after" in stdout, stderr[-3000:]
    saved = json.loads(pointer.read_text())
    _collect_here(root, out, resume=True)
    run = load_run(out)
    assert run[HOOK0].metadata["n_tokens_read"] == 24 * 12
    assert saved["tokens_done"] < 24 * 12


def test_dataset_source_with_a_local_builder(tmp_path):
    optional_import("datasets")
    from semot.collection.tokens import DatasetTokens

    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps({"ids": list(range(i, i + 5))}) for i in range(7)))
    src = DatasetTokens(
        "json",
        None,
        context_length=8,
        column="ids",
        dataset_kwargs={"data_files": str(data)},
    )
    batches = list(src.batches(2))
    flat = np.concatenate([b.tokens.reshape(-1) for b in batches])
    np.testing.assert_array_equal(flat, np.concatenate([np.arange(i, i + 5) for i in range(7)]))
    assert [b.first_seq for b in batches] == [0, 2, 4]
    with pytest.raises(ValueError, match="column 'text' not found"):
        list(DatasetTokens("json", None, 8, dataset_kwargs={"data_files": str(data)}).batches(2))


def test_reduced_dimension_is_n_components_and_k_is_a_deprecated_alias(assets):
    spec = ReferenceSpec(hook=HOOK1, reduce="random", n_components=5)
    with pytest.warns(DeprecationWarning, match="n_components"):
        old = ReferenceSpec(hook=HOOK1, reduce="random", k=5)
    assert old == spec
    with pytest.warns(DeprecationWarning, match="n_components"):
        assert spec.k == 5
    with pytest.raises(ValueError, match="n_components"):
        ReferenceSpec(hook=HOOK1, reduce="pca")
    with pytest.raises(TypeError, match="n_components"):
        ReferenceSpec(hook=HOOK1, reduce="pca", n_components=2.5)
    # A record written by semot 0.1 (key "k") loads as the same map.
    refmap = ReferenceMap(spec, D_MODEL)
    record = refmap.to_metadata()
    record["k"] = record.pop("n_components")
    assert ReferenceMap.from_parts(record, {}).spec == spec
    root, tokens = assets
    model, saes = _load(root)
    with pytest.warns(DeprecationWarning, match="n_components"):
        fd = collect(
            model, saes[:1], tokens[:4], reference=HOOK1, reduce="random", k=3, progress=False
        )[HOOK0]
    assert fd.dim == 3
    assert fd.metadata["reference"]["n_components"] == 3


def test_default_reference_hook_is_the_latest_block():
    from semot.collection.reference import default_reference_hook

    hooks = ["blocks.3.hook_resid_post", "blocks.10.hook_resid_pre", "blocks.2.hook_mlp_out"]
    assert default_reference_hook(hooks) == "blocks.10.hook_resid_pre"
    assert default_reference_hook([HOOK1, "blocks.1.hook_mlp_out"]) == "blocks.1.hook_mlp_out"
    assert default_reference_hook(["embed", "unembed"]) == "unembed"
    assert default_reference_hook(["blocks.0.x", "embed"]) == "blocks.0.x"


def test_a_checkpoint_of_semot_0_1_with_the_old_k_key_still_resumes(assets, tmp_path):
    root, tokens = assets
    model, saes = _load(root)

    class Stop(Exception):
        pass

    calls = {"n": 0, "limit": 3}

    def encode(h):
        calls["n"] += 1
        if calls["n"] > calls["limit"]:
            raise Stop
        return saes[0].encode(h)

    site = Site.from_encoder(encode, hook=HOOK0, d_in=D_MODEL, d_sae=saes[0].cfg.d_sae)
    args = {
        "samples_per_feature": 3,
        "batch_size": 4,
        "reference": HOOK1,
        "reduce": "random",
        "n_components": 6,
        "checkpoint_every": 1,
        "progress": False,
    }
    with pytest.raises(Stop):
        collect(model, [site], tokens, out=tmp_path / "cut", **args)
    # The pointer as semot 0.1 wrote it: the reduced dimension under "k", and a fingerprint
    # of that record.
    pointer = tmp_path / "cut" / "checkpoint" / "checkpoint.json"
    info = json.loads(pointer.read_text())
    reference = info["config"]["reference"]
    reference["k"] = reference.pop("n_components")
    info["config"]["reference_fingerprint"] = "of-the-0.1-record"
    pointer.write_text(json.dumps(info, indent=1, sort_keys=True))
    calls["limit"] = 10**9
    cut = collect(model, [site], tokens, out=tmp_path / "cut", resume=True, **args)[HOOK0]
    full = collect(model, [site], tokens, out=tmp_path / "full", **args)[HOOK0]
    a, b = _arrays(full), _arrays(cut)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert cut.metadata == full.metadata


def test_default_geometry_is_pca_whitening_fitted_without_special_tokens(assets, tmp_path):
    """The default support points are the whitened reference states (README, Which method)."""
    from semot.collection.reference import ReferenceMap

    root, tokens = assets
    model, saes = _load(root)
    special = int(tokens[0, 0])
    res = collect(
        model, saes, tokens, samples_per_feature=6, reference=HOOK1, batch_size=5,
        progress=False, out=tmp_path / "run", ignore_token_ids=[special],
    )  # fmt: skip
    refmap = ReferenceMap.load(tmp_path / "run" / HOOK0)
    h1 = _hidden(model, tokens, HOOK1)
    d = h1.shape[-1]
    assert refmap.spec.normalize == "whiten" and refmap.dim == min(128, d)
    calib = h1.reshape(-1, h1.shape[-1])[tokens.reshape(-1) != special]
    # Plain whitening: centre, rotate onto the covariance's eigenvectors, divide by sqrt(eig).
    vals, vecs = np.linalg.eigh(np.cov(calib.T.astype(np.float64)))
    white = (calib - calib.mean(0)) @ vecs / np.sqrt(vals)
    mapped = refmap.transform(calib, HOOK1)
    np.testing.assert_allclose(np.cov(np.asarray(mapped, np.float64).T), np.eye(d), atol=1e-3)
    # Same space as the plain whitening up to the sign and order of the axes.
    np.testing.assert_allclose(
        np.sort(np.abs(np.asarray(mapped).T @ white / len(calib)), axis=None)[-d:], 1.0, atol=1e-2
    )
    fd = res[HOOK0]
    i = int(np.flatnonzero(fd.fired)[0])
    s, p = fd.provenance(i)
    np.testing.assert_allclose(fd.cloud(i)[0], refmap.transform(h1[s, p], HOOK0), atol=1e-4)


@pytest.mark.parametrize(
    ("n_tokens", "calibration_tokens", "kind"),
    [
        (None, 10_000, "same-context"),  # the calibration covers the whole stream
        (100, 10_000, "same-context"),  # the stream stops inside a batch: cut differently
        (None, 130, "same-context"),  # the calibration stops inside a batch
        (None, 10_000, "linear-map"),
    ],
)
def test_the_stream_reuses_the_calibration_pass(
    assets, monkeypatch, n_tokens, calibration_tokens, kind
):
    """Calibration batches are not run again, and the samples are those of a second pass."""
    from semot.collection import run as run_module
    from semot.collection.models import HookedRunner

    root, tokens = assets
    model, saes = _load(root)
    forwarded: list[int] = []
    plain_run = HookedRunner.run

    def counting_run(self, batch, hooks):
        forwarded.append(int(batch.numel()))
        return plain_run(self, batch, hooks)

    monkeypatch.setattr(HookedRunner, "run", counting_run)
    spec = ReferenceSpec(
        hook=HOOK1,
        kind=kind,
        reduce=None if kind == "linear-map" else "pca",
        n_components=None if kind == "linear-map" else 6,
        calibration_tokens=calibration_tokens,
    )

    def run():
        forwarded.clear()
        res = collect(model, saes, tokens, samples_per_feature=6, reference=spec,
                      batch_size=5, n_tokens=n_tokens, progress=False)  # fmt: skip
        return res, sum(forwarded)

    reused, n_reused = run()
    monkeypatch.setattr(run_module, "CALIBRATION_STATE_BYTES", 0)
    again, n_again = run()

    stream = tokens.size if n_tokens is None else n_tokens
    calibrated = min(calibration_tokens, tokens.size)
    assert n_again == calibrated + stream
    # Only the batches both passes read in the same cut are reused.
    cut = n_tokens is not None and n_tokens % (5 * tokens.shape[1]) != 0
    shared = min(calibrated, stream)
    if cut:
        shared -= n_tokens % (5 * tokens.shape[1])
    if calibration_tokens < stream:
        shared -= calibration_tokens % (5 * tokens.shape[1])
    assert n_reused == calibrated + stream - shared
    assert n_reused < n_again
    assert reused.keys() == again.keys()
    for key in reused:
        a, b = _arrays(reused[key]), _arrays(again[key])
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{key} {name}")


def test_default_whitening_of_a_stream_wider_than_128_directions():
    """Default collection on a model wider than WHITEN_COMPONENTS: 128-dimensional points."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from semot.collection.reference import WHITEN_COMPONENTS

    d_model = WHITEN_COMPONENTS + 32
    cfg = HookedTransformerConfig(n_layers=1, d_model=d_model, n_ctx=16, d_head=16, n_heads=2,
                                  d_vocab=VOCAB, act_fn="gelu", seed=0, device="cpu")  # fmt: skip
    torch.manual_seed(0)
    model = HookedTransformer(cfg)
    config = StandardSAEConfig(d_in=d_model, d_sae=8, metadata=SAEMetadata(hook_name=HOOK0))
    sae = StandardSAE(config)
    with torch.no_grad():
        sae.W_enc.normal_()
    tokens = np.random.default_rng(1).integers(0, VOCAB, size=(20, 16))
    (fd,) = collect(model, sae, tokens, samples_per_feature=4, progress=False).values()
    assert fd.dim == WHITEN_COMPONENTS
    assert fd.cloud(int(np.flatnonzero(fd.fired)[0]))[0].shape[1] == WHITEN_COMPONENTS
