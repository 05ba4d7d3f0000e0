"""`semot train-sae`: hidden-state cache, sae-lens training, held-out report, cache and resume.

A tiny Llama and its tokenizer are built from configs and saved (as in test_hf_models.py);
the numbers are checked against plain computations written in the tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import optional_import

torch = optional_import("torch")
optional_import("transformers")
optional_import("sae_lens")

from semot.collection.models import load_model  # noqa: E402
from semot.collection.tokens import TextDocuments  # noqa: E402
from semot.collection.training import (  # noqa: E402
    TRAINING_RECORD,
    TrainingConfig,
    cache_hidden_states,
    evaluate_sae,
    train_saes,
)
from test_hf_models import _documents, _model, _tokenizer  # noqa: E402

CONFIG = TrainingConfig(d_sae=24, k=4, n_epochs=10, batch_size=128, lr=3e-3, checkpoints=2)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    model, _ = _model("llama")
    model.save_pretrained(root)
    _tokenizer(encoder=False).save_pretrained(root)
    runner = load_model(root, device="cpu")
    train = TextDocuments(_documents(60, 1), runner.tokenizer, 16).token_array()
    heldout = TextDocuments(_documents(20, 2), runner.tokenizer, 16).token_array()
    return root, runner, train, heldout


def test_cached_rows_are_the_hidden_states_of_non_special_tokens(llama, tmp_path):
    _, runner, train, _ = llama
    hooks = [runner.layer_hook(0), runner.layer_hook(2)]
    special = sorted(runner.tokenizer.all_special_ids)
    cache = cache_hidden_states(
        runner, hooks, train, tmp_path, batch_size=7, ignore_token_ids=special, progress=False
    )
    with torch.no_grad():
        out = runner.model(input_ids=torch.as_tensor(train), output_hidden_states=True)
    keep = ~np.isin(train.reshape(-1), special)
    assert cache.rows == keep.sum() < train.size  # BOS rows are left out
    np.testing.assert_allclose(
        cache.array(hooks[0]), out.hidden_states[1].reshape(-1, 16).numpy()[keep], rtol=1e-5
    )
    # Resume: a run cut after 2 batches, plus junk a killed writer left, gives the same rows.
    again = tmp_path / "again"
    calls = {"n": 0}
    real_run = runner.run

    def dying_run(tokens, hooks_):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real_run(tokens, hooks_)

    runner.run = dying_run
    try:
        with pytest.raises(KeyboardInterrupt):
            cache_hidden_states(
                runner, hooks, train, again, batch_size=7, ignore_token_ids=special,
                progress=False,
            )  # fmt: skip
    finally:
        del runner.run
    (folder,) = again.iterdir()
    with open(folder / "model.layers.0.f32", "ab") as f:
        f.write(b"junk")
    resumed = cache_hidden_states(
        runner, hooks, train, again, batch_size=7, ignore_token_ids=special, progress=False
    )
    for hook in hooks:
        np.testing.assert_array_equal(resumed.array(hook), cache.array(hook))


def test_report_numbers_equal_a_plain_computation():
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(3)
    sae = TopKSAE(TopKSAEConfig(d_in=16, d_sae=40, k=3))
    with torch.no_grad():
        sae.W_enc[:, 30:] = 0.0  # pre-activation -100: these latents never fire
        sae.b_enc[30:] = -100.0
    rows = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    got = evaluate_sae(sae, rows, batch=64)
    with torch.no_grad():
        acts = sae.encode(torch.as_tensor(rows)).numpy()
        recon = sae.decode(torch.as_tensor(acts)).numpy().astype(np.float64)
    x = rows.astype(np.float64)
    fve = 1 - ((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert got["fraction_variance_explained"] == pytest.approx(fve, rel=1e-6)  # f32 residuals
    assert got["l0"] == pytest.approx((acts != 0).sum(1).mean())
    assert got["dead_fraction"] == pytest.approx((~(acts != 0).any(0)).mean())
    assert got["dead_fraction"] >= 10 / 40


def test_train_saes_saves_sae_lens_dirs_caches_and_resumes_bit_identically(
    llama, tmp_path, monkeypatch
):
    _, runner, train, heldout = llama
    from sae_lens import SAE
    from sae_lens.training.sae_trainer import SAETrainer

    hooks = [runner.layer_hook(1)]
    full = train_saes(runner, hooks, train, heldout, tmp_path / "full", CONFIG, progress=False)
    report = full[hooks[0]]
    sae = SAE.load_from_disk(str(report.path))
    assert type(sae).__name__ == "TopKSAE"
    assert sae.cfg.metadata.hook_name == "model.layers.1"
    assert report.l0 == pytest.approx(CONFIG.k)
    assert 0.0 < report.fraction_variance_explained < 1.0
    record = json.loads((report.path / TRAINING_RECORD).read_text())
    assert record["report"]["n_heldout_rows"] == report.n_heldout_rows
    # The cache: same configuration, nothing trained (fit is never called).
    monkeypatch.setattr(SAETrainer, "fit", lambda self: pytest.fail("trained again"))
    again = train_saes(runner, hooks, train, heldout, tmp_path / "full", CONFIG, progress=False)
    assert again[hooks[0]].cached
    monkeypatch.undo()
    # Interrupted after sae-lens wrote its first checkpoint, then resumed.
    real_step = SAETrainer.step
    state = {"steps": 0}

    def dying_step(self, batch):
        state["steps"] += 1
        if state["steps"] > 0.6 * CONFIG.n_epochs * report.n_train_rows / CONFIG.batch_size:
            raise KeyboardInterrupt
        return real_step(self, batch)

    monkeypatch.setattr(SAETrainer, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_saes(runner, hooks, train, heldout, tmp_path / "cut", CONFIG, progress=False)
    monkeypatch.undo()
    assert any((tmp_path / "cut" / "model.layers.1" / "checkpoints").iterdir())
    resumed = train_saes(runner, hooks, train, heldout, tmp_path / "cut", CONFIG, progress=False)
    assert not resumed[hooks[0]].cached
    a = SAE.load_from_disk(str(report.path)).state_dict()
    b = SAE.load_from_disk(str(resumed[hooks[0]].path)).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_cli_train_sae_by_layers(llama, tmp_path, capsys):
    root, _, _, _ = llama
    from semot.cli import main

    text = tmp_path / "t.txt"
    text.write_text("\n".join(_documents(80, 4)), encoding="utf-8")
    out = tmp_path / "saes"
    rc = main(
        ["train-sae", "--model", str(root), "--layers", "0,2", "--text", str(text),
         "--context-length", "16", "--d-sae", "16", "--k", "2", "--epochs", "2",
         "--train-batch-size", "64", "--out", str(out), "--device", "cpu", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "model.layers.0" in printed and "variance explained" in printed
    for layer in (0, 2):
        cfg = json.loads((out / f"model.layers.{layer}" / "cfg.json").read_text())
        assert cfg["metadata"]["hook_name"] == f"model.layers.{layer}"
    with pytest.raises(SystemExit):
        main(["train-sae", "--model", str(root), "--text", str(text), "--out", str(out)])
    assert "--layers" in capsys.readouterr().err
