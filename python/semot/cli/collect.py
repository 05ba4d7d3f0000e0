"""``semot collect`` and ``semot info``: argument parsing and the calls they make."""

from __future__ import annotations

import argparse
from pathlib import Path
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


def add_parsers(sub: Any) -> None:
    """Register the ``collect`` and ``info`` sub-commands."""
    c = sub.add_parser(
        "collect",
        help="sample feature distributions from a model (needs semot[collect])",
        description=(
            "Run a model over tokens and sample, for every SAE feature, positions where it "
            "fires with their hidden states in a reference space. Writes one "
            "FeatureDistributions directory per SAE under --out."
        ),
    )
    add_model_options(c)
    add_site_options(c)
    c.add_argument("--sae-release", help="sae-lens release (with --sae-id)")
    c.add_argument("--sae-id", action="append", default=[], help="sae-lens SAE id (repeatable)")
    c.add_argument(
        "--sae-path", action="append", default=[], help="local sae-lens SAE dir (repeatable)"
    )
    add_token_options(c)
    c.add_argument(
        "--n-tokens", type=positive_int, help="stop after this many tokens (default: all)"
    )
    c.add_argument("--samples-per-feature", type=positive_int, default=128)
    c.add_argument("--mode", choices=["weighted", "top"], default="weighted")
    c.add_argument(
        "--reference", help="reference hook or block number (default: the latest SAE hook)"
    )
    c.add_argument(
        "--reference-kind", choices=["same-context", "linear-map"], default="same-context"
    )
    c.add_argument(
        "--reduce",
        type=positive_int,
        metavar="N_COMPONENTS",
        dest="n_components",
        help="reduce support points to N_COMPONENTS dimensions (method: --reduce-method)",
    )
    c.add_argument("--reduce-method", choices=["random", "pca"], default="random")
    c.add_argument(
        "--normalize", choices=["auto", "whiten", "unit", "standardize", "none"], default="auto",
        help="support-point normalisation (default auto: PCA whitening to --reduce or at most "
        "128 directions; none with --reduce-method random; none: raw hidden states)",
    )  # fmt: skip
    c.add_argument("--calibration-tokens", type=positive_int, default=65536)
    c.add_argument("--batch-size", type=positive_int, default=16, help="sequences per forward pass")
    c.add_argument("--seed", type=non_negative_int, default=0)
    c.add_argument("--checkpoint-every", type=positive_int, default=1_000_000, help="tokens")
    c.add_argument("--out", required=True, help="output run directory")
    c.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    c.add_argument("--overwrite", action="store_true", help="replace what is in --out")
    c.add_argument("--no-progress", action="store_true")
    i = sub.add_parser("info", help="summarise a saved collection run or FeatureDistributions dir")
    i.add_argument("path")


def run_collect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Carry out ``semot collect``."""
    if not args.sae_path and not args.sae_id:
        parser.error("give --sae-path DIR or --sae-release R --sae-id ID (repeatable)")
    if args.sae_id and not args.sae_release:
        parser.error("--sae-id needs --sae-release")
    from semot.collection.models import Site, load_sae, runner_for
    from semot.collection.reference import ReferenceSpec, default_reference_hook
    from semot.collection.run import collect

    model = load_cli_model(args)
    runner = runner_for(model)
    dev = str(runner.device)
    loaded = [(load_sae(path=p, device=dev), Path(p).name) for p in args.sae_path]
    loaded += [
        (load_sae(release=args.sae_release, sae_id=sid, device=dev), sid) for sid in args.sae_id
    ]
    hooks = site_hooks(runner, args, len(loaded), parser)
    sites = []
    for i, ((sae, ident), name) in enumerate(loaded):
        sites.append(
            Site.from_sae(sae, identity=ident, name=name, hook=hooks[i] if hooks else None)
        )
    tokenizer = runner.tokenizer
    tokens = token_source(args, tokenizer, parser)
    reference: Any = args.reference
    if reference is not None and reference.isdigit():
        reference = runner.layer_hook(int(reference)) if hasattr(runner, "layer_hook") else None
        if reference is None:
            parser.error("--reference: this model has no layer numbering; give a hook")
    if (
        args.reference
        or args.n_components
        or args.normalize != "auto"
        or args.reference_kind != "same-context"
    ):
        reference = ReferenceSpec(
            hook=reference or default_reference_hook([s.hook for s in sites]),
            kind=args.reference_kind,
            reduce=args.reduce_method if args.n_components else None,
            n_components=args.n_components,
            normalize=_normalize(args),
            seed=args.seed,
            calibration_tokens=args.calibration_tokens,
        )
    results = collect(
        model,
        sites,
        tokens,
        n_tokens=args.n_tokens,
        samples_per_feature=args.samples_per_feature,
        mode=args.mode,
        reference=reference,
        batch_size=args.batch_size,
        seed=args.seed,
        out=args.out,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        ignore_token_ids=args.ignore_token_ids,
        model_name=args.model if args.gguf_file is None else f"{args.model}:{args.gguf_file}",
    )
    for name, fd in results.items():
        print(f"{name}: {fd.n_features} features, {int(fd.fired.sum())} fired -> {args.out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Carry out ``semot info``."""
    from semot.collection.run import load_run
    from semot.features.container import FeatureDistributions
    from semot.features.runs import RUN_FILE

    root = Path(args.path)
    if (root / RUN_FILE).is_file():
        for name, fd in load_run(root).items():
            print(f"== {name}")
            print(fd.summary())
        return 0
    print(FeatureDistributions.load(root).summary())
    return 0


def _normalize(args: argparse.Namespace) -> Any:
    """Return the ``--normalize`` of a command line as :class:`ReferenceSpec` takes it."""
    if args.normalize == "none":
        return None
    if args.normalize == "auto":
        return None if (args.n_components and args.reduce_method == "random") else "whiten"
    return args.normalize
