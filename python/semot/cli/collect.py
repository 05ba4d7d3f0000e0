"""``semot collect`` and ``semot info``: argument parsing and the calls they make."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    c.add_argument("--model", required=True, help="transformer-lens model name or local dir")
    c.add_argument("--sae-release", help="sae-lens release (with --sae-id)")
    c.add_argument("--sae-id", action="append", default=[], help="sae-lens SAE id (repeatable)")
    c.add_argument(
        "--sae-path", action="append", default=[], help="local sae-lens SAE dir (repeatable)"
    )
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", help=".npy file of token ids, shape (n_sequences, length)")
    src.add_argument("--text", nargs="+", help="text files, tokenised with the model's tokenizer")
    src.add_argument("--dataset", help="Hugging Face dataset name (streamed)")
    c.add_argument("--dataset-split", default="train")
    c.add_argument("--dataset-column", default="text")
    c.add_argument("--context-length", type=int, default=128, help="for --text / --dataset")
    c.add_argument("--n-tokens", type=int, help="stop after this many tokens (default: all)")
    c.add_argument("--samples-per-feature", type=int, default=128)
    c.add_argument("--mode", choices=["weighted", "top"], default="weighted")
    c.add_argument("--reference", help="reference hook (default: the latest SAE hook)")
    c.add_argument(
        "--reference-kind", choices=["same-context", "linear-map"], default="same-context"
    )
    c.add_argument(
        "--reduce",
        type=int,
        metavar="N_COMPONENTS",
        dest="n_components",
        help="reduce support points to N_COMPONENTS dimensions (method: --reduce-method)",
    )
    c.add_argument("--reduce-method", choices=["random", "pca"], default="random")
    c.add_argument("--normalize", choices=["unit", "standardize"])
    c.add_argument("--calibration-tokens", type=int, default=65536)
    c.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    c.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--checkpoint-every", type=int, default=1_000_000, help="tokens")
    c.add_argument("--out", required=True, help="output run directory")
    c.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    c.add_argument("--overwrite", action="store_true", help="replace what is in --out")
    c.add_argument("--no-progress", action="store_true")
    i = sub.add_parser("info", help="summarise a saved collection run or FeatureDistributions dir")
    i.add_argument("path")


def run_collect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Carry out ``semot collect``."""
    flags = {
        "n_tokens": "--n-tokens",
        "samples_per_feature": "--samples-per-feature",
        "batch_size": "--batch-size",
        "n_components": "--reduce",
        "checkpoint_every": "--checkpoint-every",
    }
    for name, flag in flags.items():
        v = getattr(args, name)
        if v is not None and v < 1:
            parser.error(f"{flag} must be >= 1")
    if not args.sae_path and not args.sae_id:
        parser.error("give --sae-path DIR or --sae-release R --sae-id ID (repeatable)")
    if args.sae_id and not args.sae_release:
        parser.error("--sae-id needs --sae-release")
    import numpy as np

    from semot.collection.models import Site, load_model, load_sae
    from semot.collection.reference import ReferenceSpec, default_reference_hook
    from semot.collection.run import collect
    from semot.collection.tokens import ArrayTokens, DatasetTokens, TextFiles

    model = load_model(args.model, device=args.device)
    dev = str(model.cfg.device)
    sites = []
    for p in args.sae_path:
        sae, ident = load_sae(path=p, device=dev)
        sites.append(Site.from_sae(sae, identity=ident, name=Path(p).name))
    for sid in args.sae_id:
        sae, ident = load_sae(release=args.sae_release, sae_id=sid, device=dev)
        sites.append(Site.from_sae(sae, identity=ident, name=sid))
    tokens: Any
    if args.tokens:
        path = Path(args.tokens)
        if not path.is_file():
            parser.error(f"--tokens: {path} is not a file")
        try:
            tokens = ArrayTokens(np.load(path, mmap_mode="r"))
        except ValueError as e:
            parser.error(f"--tokens: {e}")
    elif args.text:
        tokens = TextFiles(args.text, model.tokenizer, args.context_length)
    else:
        tokens = DatasetTokens(
            args.dataset,
            model.tokenizer,
            args.context_length,
            split=args.dataset_split,
            column=args.dataset_column,
        )
    reference: Any = args.reference
    if (
        args.reference
        or args.n_components
        or args.normalize
        or args.reference_kind != "same-context"
    ):
        reference = ReferenceSpec(
            hook=args.reference or default_reference_hook([s.hook for s in sites]),
            kind=args.reference_kind,
            reduce=args.reduce_method if args.n_components else None,
            n_components=args.n_components,
            normalize=args.normalize,
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
        model_name=args.model,
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
