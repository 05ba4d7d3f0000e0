"""``semot train-sae``: TopK SAEs at chosen layers of a model that has none."""

from __future__ import annotations

import argparse
from typing import Any

from semot.cli.model_options import (
    add_model_options,
    add_site_options,
    add_token_options,
    load_cli_model,
    site_hooks,
    token_source,
)
from semot.cli.options import non_negative_int, positive_int


def add_parser(sub: Any) -> None:
    """Register the ``train-sae`` sub-command."""
    t = sub.add_parser(
        "train-sae",
        help="train TopK SAEs at chosen layers with sae-lens (needs semot[collect])",
        description=(
            "Cache the hidden states of the chosen layers in one forward pass over the "
            "tokens, train one TopK SAE per layer with sae-lens's trainer, and report the "
            "fraction of variance explained, L0 and dead latents on held-out tokens. Each SAE "
            "is a sae-lens directory OUT/<hook> for `semot collect --sae-path`; a directory "
            "trained with the same configuration is reused, an interrupted run resumes."
        ),
    )
    add_model_options(t)
    add_site_options(t, what="SAE")
    add_token_options(t)
    add_token_options(t, prefix="heldout-", required=False)
    t.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.1,
        help="without --heldout-*: hold out this share of the sequences (default 0.1)",
    )
    t.add_argument("--n-tokens", type=positive_int, help="train on at most this many tokens")
    t.add_argument(
        "--n-heldout-tokens", type=positive_int, help="evaluate on at most this many tokens"
    )
    t.add_argument("--d-sae", type=positive_int, default=2048, help="latents per SAE")
    t.add_argument("--k", type=positive_int, default=32, help="latents kept per token (TopK)")
    t.add_argument("--epochs", type=float, default=8.0, help="passes over the cached tokens")
    t.add_argument("--lr", type=float, default=4e-4)
    t.add_argument("--train-batch-size", type=positive_int, default=4096, help="tokens per step")
    t.add_argument("--batch-size", type=positive_int, default=16, help="sequences per forward pass")
    t.add_argument("--seed", type=non_negative_int, default=0)
    t.add_argument("--out", required=True, help="directory of the SAEs and caches")
    t.add_argument("--no-progress", action="store_true")


def run_train_sae(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Carry out ``semot train-sae``."""
    if not args.layers and not args.hook:
        parser.error("give --layers 3,7,12 or --hook NAME (repeatable): where to train")
    from semot.collection.models import runner_for
    from semot.collection.training import TrainingConfig, split_heldout, train_saes

    config = TrainingConfig(
        d_sae=args.d_sae,
        k=args.k,
        n_epochs=args.epochs,
        batch_size=args.train_batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    model = load_cli_model(args)
    runner = runner_for(model)
    hooks = site_hooks(runner, args, None, parser)
    assert hooks is not None  # checked above
    tokens = token_source(args, runner.tokenizer, parser)
    heldout = token_source(args, runner.tokenizer, parser, prefix="heldout-")
    if heldout is None:
        tokens, heldout = split_heldout(tokens, args.heldout_fraction)
    reports = train_saes(
        runner,
        hooks,
        tokens,
        heldout,
        args.out,
        config,
        n_tokens=args.n_tokens,
        n_heldout_tokens=args.n_heldout_tokens,
        batch_size=args.batch_size,
        ignore_token_ids=args.ignore_token_ids,
        progress=not args.no_progress,
    )
    print(f"{'hook':<24} {'variance explained':>18} {'L0':>7} {'dead':>7} {'tokens':>9}  path")
    for report in reports.values():
        note = "  (cached)" if report.cached else ""
        print(
            f"{report.hook:<24} {report.fraction_variance_explained:>18.3f} "
            f"{report.l0:>7.1f} {100 * report.dead_fraction:>6.1f}% "
            f"{report.n_train_rows:>9}  {report.path}{note}"
        )
    paths = " ".join(f"--sae-path {r.path}" for r in reports.values())
    print(f"next: semot collect --model {args.model} {paths} ... --out RUN")
    return 0
