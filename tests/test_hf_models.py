"""Hugging Face models in collection: tiny Llama, GPT-2 and BERT built from configs.

Each model and a word-level tokenizer are saved with ``save_pretrained`` and loaded back
through the user's path (:func:`semot.collection.models.load_model`, ``semot collect``).
Support points are checked against ``output_hidden_states=True`` of the same model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import optional_import

torch = optional_import("torch")
transformers = optional_import("transformers")
optional_import("sae_lens")

from semot.collection.hf import HFRunner, blocks_path  # noqa: E402
from semot.collection.models import Site, layer_index, load_model  # noqa: E402
from semot.collection.run import collect, load_run  # noqa: E402
from semot.collection.tokens import TextDocuments, ignored_token_ids  # noqa: E402

WORDS = [f"w{i}" for i in range(40)]
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "[CLS]", "[SEP]", "[MASK]"]


def _tokenizer(encoder: bool):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    names = (
        {"cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
        if encoder
        else {"bos_token": "<s>", "eos_token": "</s>"}
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", **names
    )


def _model(family: str):
    vocab = len(SPECIAL) + len(WORDS)
    torch.manual_seed(0)
    if family == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=vocab,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
        return transformers.LlamaForCausalLM(cfg), "model.layers"
    if family == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=vocab, n_embd=16, n_layer=3, n_head=4, n_positions=64
        )
        return transformers.GPT2LMHeadModel(cfg), "transformer.h"
    cfg = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    return transformers.BertModel(cfg), "encoder.layer"


FAMILIES = ["llama", "gpt2", "bert"]


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    family = request.param
    model, blocks = _model(family)
    root = tmp_path_factory.mktemp(family)
    model.save_pretrained(root)
    _tokenizer(encoder=family == "bert").save_pretrained(root)
    return family, root, blocks


def _documents(n: int = 30, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 25)))) for _ in range(n)]


def _sites(d: int, hooks: list[str], seed: int = 0) -> list[Site]:
    g = torch.Generator().manual_seed(seed)
    sites = []
    for i, hook in enumerate(hooks):
        w = torch.randn(d, 12, generator=g)
        sites.append(
            Site.from_encoder(
                lambda h, w=w: torch.relu(h @ w), hook=hook, d_in=d, d_sae=12, name=f"s{i}"
            )
        )
    return sites


def test_loads_through_the_user_path_with_tokenizer_and_layers(saved):
    family, root, blocks = saved
    runner = load_model(root, device="cpu")
    assert isinstance(runner, HFRunner)
    assert runner.family == family
    assert blocks_path(runner.model) == blocks
    assert runner.layer_hook(2) == f"{blocks}.2"
    assert layer_index(runner.layer_hook(1)) == 1
    assert runner.resolve_hook("blocks.1.hook_resid_post") == f"{blocks}.1"
    assert runner.tokenizer is not None
    with pytest.raises(ValueError, match=r"layers: 3 is outside \[0, 3\)"):
        runner.layer_hook(3)
    with pytest.raises(ValueError, match="did you mean"):
        runner.check_hooks([f"{blocks}.7"])


def test_support_points_equal_output_hidden_states_and_special_tokens_are_never_sampled(
    saved, tmp_path
):
    _, root, _ = saved
    runner = load_model(root, device="cpu")
    docs = TextDocuments(_documents(), runner.tokenizer, context_length=16)
    tokens = docs.token_array()
    special = set(runner.tokenizer.all_special_ids)
    assert tokens[0, 0] in special  # every sequence starts with BOS (CLS for BERT)
    hooks = [runner.layer_hook(0), runner.layer_hook(1)]
    res = collect(
        runner,
        _sites(16, hooks),
        tokens,
        samples_per_feature=5,
        reference=runner.layer_hook(1),
        normalize=None,
        batch_size=4,
        progress=False,
        out=tmp_path / "run",
    )
    with torch.no_grad():
        out = runner.model(input_ids=torch.as_tensor(tokens), output_hidden_states=True)
    # hidden_states[i + 1] is the output of block i (block 1 of 3 is not the last one).
    reference = out.hidden_states[2].numpy()
    encoder_input = out.hidden_states[1].numpy()
    w0 = _sites(16, hooks)[0]
    acts = w0.encode(torch.as_tensor(encoder_input)).numpy()
    fd = res["s0"]
    n_sampled = 0
    for i in range(fd.n_features):
        s, p = fd.provenance(i)
        n_sampled += len(s)
        assert not set(tokens[s, p].tolist()) & special
        if len(s):
            np.testing.assert_allclose(fd.cloud(i)[0], reference[s, p], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(fd.activations(i), acts[s, p, i], rtol=1e-4, atol=1e-5)
        is_special = np.isin(tokens, list(special))
        assert fd.firing_counts[i] == ((acts[:, :, i] > 0) & ~is_special).sum()
    assert n_sampled > 0
    assert fd.metadata["ignore_token_ids"] == sorted(special)
    summary = load_run(tmp_path / "run")["s0"].summary()
    assert "n = 5" in summary and "n = ?" not in summary


def test_the_forward_pass_stops_after_the_last_needed_block(saved):
    _, root, _ = saved
    runner = load_model(root, device="cpu")
    ran: list[int] = []
    handles = [
        block.register_forward_hook(lambda *_a, i=i: ran.append(i))
        for i, block in enumerate(runner.model.get_submodule(runner.blocks))
    ]
    try:
        runner.run(torch.zeros(1, 4, dtype=torch.long), [runner.layer_hook(0)])
    finally:
        for h in handles:
            h.remove()
    assert ran == [0]


def test_special_cannot_be_resolved_without_a_tokenizer():
    with pytest.raises(ValueError, match="'special' needs the model's tokenizer"):
        ignored_token_ids(None, "special")
    net = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4))
    site = Site.from_encoder(torch.relu, hook="1", d_in=4, d_sae=4)
    from semot.collection.models import ModuleHooks

    with pytest.raises(ValueError, match="ignore_token_ids"):
        collect(ModuleHooks(net), [site], np.zeros((2, 3), dtype=np.int64), progress=False)


def test_cli_collect_a_transformers_model_by_layers(saved, tmp_path, capsys):
    _, root, blocks = saved
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from semot.cli import main

    paths = []
    for i in (0, 2):
        sae = TopKSAE(TopKSAEConfig(d_in=16, d_sae=10, k=3, metadata=SAEMetadata(hook_name="x")))
        sae.save_model(tmp_path / f"sae{i}")
        paths += ["--sae-path", str(tmp_path / f"sae{i}")]
    text = tmp_path / "a.txt"
    text.write_text(" ".join(_documents(10)), encoding="utf-8")
    out = tmp_path / "run"
    rc = main(
        [
            "collect",
            "--model",
            str(root),
            "--layers",
            "0,2",
            *paths,
            "--text",
            str(text),
            "--context-length",
            "16",
            "--samples-per-feature",
            "4",
            "--out",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    record = json.loads((out / "run.json").read_text())
    hooks = [site["hook"] for site in record["config"]["sites"].values()]
    assert hooks == [f"{blocks}.0", f"{blocks}.2"]
    assert record["config"]["ignore_token_ids"]  # the tokenizer's special ids
    for site in record["config"]["sites"].values():
        assert site["identity"]["path"].endswith(("sae0", "sae2"))
    with pytest.raises(SystemExit):
        main(
            [
                "collect",
                "--model",
                str(root),
                "--layers",
                "0,5",
                *paths,
                "--text",
                str(text),
                "--out",
                str(tmp_path / "bad"),
                "--device",
                "cpu",
            ]
        )
    assert "--layers: 5 is outside [0, 3)" in capsys.readouterr().err


def test_bad_tokens_and_devices_are_clear_errors(saved):
    _, root, _ = saved
    runner = load_model(root, device="cpu")
    hook = runner.layer_hook(0)
    with pytest.raises(ValueError, match="outside the model's vocabulary of 47"):
        runner.run(torch.full((1, 4), 47), [hook])
    with pytest.raises(ValueError, match="longer than the model's context of 64"):
        runner.run(torch.zeros(1, 65, dtype=torch.long), [hook])
    with pytest.raises(ValueError, match="device: 'bogus' is not a torch device"):
        load_model(root, device="bogus")


def _write_tiny_gguf(model, path):
    """Write a Llama ``model`` as a float32 GGUF file, the way llama.cpp's converter does."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)

    def permute(w, n_head):  # llama.cpp's rotary layout of q and k
        return (
            w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape)
        )

    for name, tensor in model.state_dict().items():
        w = tensor.numpy().astype(np.float32)
        if name.endswith("q_proj.weight"):
            w = permute(w, cfg.num_attention_heads)
        if name.endswith("k_proj.weight"):
            w = permute(w, cfg.num_key_value_heads)
        base, suffix = name.rsplit(".", 1)
        writer.add_tensor(f"{names.get_name(base)}.{suffix}", w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_tiny_gguf_loads_through_transformers_with_the_same_hidden_states(tmp_path):
    optional_import("gguf")
    model, _ = _model("llama")
    model.eval()
    _write_tiny_gguf(model, tmp_path / "tiny.gguf")
    tokens = torch.as_tensor(np.random.default_rng(0).integers(0, 47, size=(2, 9)))
    with torch.no_grad():
        expected = model(input_ids=tokens, output_hidden_states=True).hidden_states[2]
    for runner in (
        load_model(tmp_path, gguf_file="tiny.gguf", device="cpu"),
        load_model(tmp_path / "tiny.gguf", device="cpu"),
    ):
        assert isinstance(runner, HFRunner) and runner.family == "llama"
        hidden = runner.run(tokens, [runner.layer_hook(1)])[runner.layer_hook(1)]
        torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-6)
        # This file carries no tokenizer (SmolLM2's does): "special" then cannot be resolved.
        assert runner.tokenizer is None
    with pytest.raises(ValueError, match=r"gguf_file: .* is not a file"):
        load_model(tmp_path, gguf_file="missing.gguf", device="cpu")
