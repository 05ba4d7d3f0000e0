"""Command-line interface: ``semot demo``, ``semot collect``, ``semot info``, ``semot version``."""

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
    demo = sub.add_parser("demo", help="run the method on planted features (offline, ~seconds)")
    demo.add_argument("--groups", type=int, default=12, help="number of planted groups")
    demo.add_argument("--per-group", type=int, default=8, help="features per group")
    demo.add_argument("--samples", type=int, default=64, help="samples per feature")
    demo.add_argument("--dim", type=int, default=32, help="dimension of the hidden states")
    demo.add_argument("--seed", type=int, default=0)
    sub.add_parser("version", help="print the version")
    from semot.cli_collect import add_parsers

    add_parsers(sub)
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
        from semot.demo import run

        for name in ("groups", "per_group", "samples", "dim"):
            if getattr(args, name) < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1")
        run(args.groups, args.per_group, args.samples, args.dim, args.seed)
        return 0
    if args.command == "collect":
        from semot.cli_collect import run_collect

        return run_collect(args, parser)
    if args.command == "info":
        from semot.cli_collect import run_info

        return run_info(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
