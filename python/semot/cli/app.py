"""Command line: ``semot demo``, ``collect``, ``info``, ``match``, ``bench-match``, ``compress``."""

from __future__ import annotations

import argparse
import sys

from semot import __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``semot`` command."""
    parser = argparse.ArgumentParser(
        prog="semot",
        description="Semantic optimal transport between sparse-autoencoder features.",
    )
    parser.add_argument("--version", action="version", version=f"semot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="the whole method on a planted model, offline (about a minute)",
        description=(
            "Plant a 4-layer model with known feature correspondences, collect feature "
            "distributions, match layers with semot and four baselines, print the accuracy "
            "table and write a report folder with plots and JSON."
        ),
    )
    demo.add_argument("--out", default="semot-demo", help="report directory")
    demo.add_argument("--n-tokens", type=int, default=100_000, help="tokens per stream")
    demo.add_argument("--samples-per-feature", type=int, default=128)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-plots", action="store_true", help="tables and JSON only")
    sub.add_parser("version", help="print the version")
    from semot.cli import circuits as cli_circuits
    from semot.cli import collect as cli_collect
    from semot.cli import distributed as cli_distributed
    from semot.cli import match as cli_match
    from semot.cli import train as cli_train

    cli_collect.add_parsers(sub)
    cli_match.add_parsers(sub)
    cli_circuits.add_parser(sub)
    cli_distributed.add_parsers(sub)
    cli_train.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return _dispatch(args, parser)
    except (ValueError, TypeError, ImportError) as e:
        # Bad input and missing extras are the user's to fix: one clear line, no traceback.
        print(f"semot {args.command}: error: {e}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "version":
        print(f"semot {__version__}")
        return 0
    if args.command == "demo":
        from semot.bench.demo import run

        for name in ("n_tokens", "samples_per_feature"):
            if getattr(args, name) < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1")
        run(
            args.out,
            n_tokens=args.n_tokens,
            samples_per_feature=args.samples_per_feature,
            seed=args.seed,
            plots=not args.no_plots,
        )
        return 0
    if args.command == "match":
        from semot.cli.match import run_match

        return run_match(args)
    if args.command == "compress":
        from semot.cli.circuits import run_compress

        return run_compress(args)
    if args.command == "bench-match":
        from semot.cli.match import run_bench_match

        return run_bench_match(args)
    if args.command == "cdist":
        from semot.cli.distributed import run_cdist

        return run_cdist(args)
    if args.command == "collect":
        from semot.cli.collect import run_collect

        return run_collect(args, parser)
    if args.command == "train-sae":
        from semot.cli.train import run_train_sae

        return run_train_sae(args, parser)
    if args.command == "info":
        from semot.cli.collect import run_info

        return run_info(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
