"""Command line: ``semot demo``, ``collect``, ``info``, ``match``, ``browse``, ``compress``, ....

Every command fails the same way: one line on stderr, ``semot <command>: error: <what>``, and
exit status 2 (argparse's own usage errors look and exit alike; an interrupt exits 130). The
one place that does it is :func:`main`: it turns every error semot raises about its input
(:class:`~semot.errors.SemotError`, ``ValueError``, ``TypeError``, ``KeyError``,
``MemoryError``, ``OverflowError``), every ``OSError`` (a missing path, a directory given for a
file, an unwritable output, an unreachable scheduler) and a missing extra (``ImportError``)
into that line, with the library's argument names translated into the command's flags
(``overwrite=True`` becomes ``--overwrite``) by :func:`flag_message`. Semot's warnings print
as one line too, ``semot <command>: warning: <what>``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from semot import __version__
from semot.cli.options import check_output_dir, positive_int
from semot.errors import SemotError, SemotWarning

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "flag_message", "main"]

#: Exit status of a command that failed (bad input, unreadable or unwritable file, ...).
EXIT_ERROR = 2
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130

#: The errors that are the user's to fix: reported in one line, never with a traceback.
_USER_ERRORS = (
    SemotError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    MemoryError,
    OverflowError,
    ImportError,
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line too (and point at ``--help``)."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` and exit with :data:`EXIT_ERROR`."""
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: Library argument names whose flag is not the argument's name.
_ALIASES = {"n_threads": "--threads", "client": "--scheduler"}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``semot`` command."""
    parser = _Parser(
        prog="semot",
        description="Semantic optimal transport between sparse-autoencoder features.",
        epilog=(
            "Exit status: 0 on success; 2 on any error, reported in one line on stderr "
            "('semot COMMAND: error: ...'); 130 when interrupted."
        ),
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
    demo.add_argument("--n-tokens", type=positive_int, default=100_000, help="tokens per stream")
    demo.add_argument("--samples-per-feature", type=positive_int, default=128)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-plots", action="store_true", help="tables and JSON only")
    sub.add_parser("version", help="print the version")
    from semot.cli import bench_real as cli_bench_real
    from semot.cli import browse as cli_browse
    from semot.cli import circuits as cli_circuits
    from semot.cli import collect as cli_collect
    from semot.cli import distributed as cli_distributed
    from semot.cli import evaluate as cli_evaluate
    from semot.cli import match as cli_match
    from semot.cli import train as cli_train

    cli_collect.add_parsers(sub)
    cli_match.add_parsers(sub)
    cli_circuits.add_parser(sub)
    cli_distributed.add_parsers(sub)
    cli_train.add_parser(sub)
    cli_bench_real.add_parser(sub)
    cli_evaluate.add_parser(sub)
    cli_browse.add_parser(sub)
    args = parser.parse_args(argv)
    command = sub.choices[args.command]
    try:
        with _one_line_warnings(args.command):
            return _dispatch(args, parser)
    except KeyboardInterrupt:
        print(f"semot {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`semot info RUN | head`): not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _USER_ERRORS as e:
        # The user's to fix: one clear line naming the flags, no traceback.
        print(f"semot {args.command}: error: {flag_message(e, command)}", file=sys.stderr)
        return EXIT_ERROR


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Map each argument name (argparse ``dest``) of a command to its long flag."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.dest != "help":
            flags.setdefault(action.dest, longs[0])
    for name, flag in _ALIASES.items():
        if flag in flags.values():
            flags.setdefault(name, flag)
    return flags


def _error_text(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
        if error.filename2 is not None:
            text += f" (to {error.filename2})"
        return text
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


def flag_message(error: BaseException | str, parser: argparse.ArgumentParser) -> str:
    """Return the one-line message of ``error`` for the command ``parser``, in its flags.

    The library names its arguments as Python does (``overwrite=True``, ``n_threads: must
    be ...``); a command line has flags. Translated: ``name=True`` to ``--flag``,
    ``name=value`` to ``--flag value``, and a message that starts with ``name:`` (or with
    ``out``, the output path) to ``--flag``. Newlines become spaces.
    """
    text = error if isinstance(error, str) else _error_text(error)
    text = " ".join(text.split())
    flags = _flags(parser)
    names = sorted(flags, key=len, reverse=True)
    if names:
        alt = "|".join(re.escape(n) for n in names)
        text = re.sub(rf"(?<![\w.-])({alt})=True\b", lambda m: flags[m[1]], text)
        text = re.sub(rf"(?<![\w.-])({alt})=(?=\S)", lambda m: flags[m[1]] + " ", text)
        text = re.sub(rf"^({alt}):", lambda m: flags[m[1]] + ":", text)
        if "out" in flags:
            text = re.sub(r"^out(?= )", flags["out"], text)
    return text


@contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Show semot's warnings as ``semot <command>: warning: ...`` (others as usual)."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
            if isinstance(category, type) and issubclass(category, SemotWarning):
                text = " ".join(str(message).split())
                print(f"semot {command}: warning: {text}", file=sys.stderr)
            else:
                shown(message, category, *rest, **kw)

        warnings.showwarning = show
        yield


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "version":
        print(f"semot {__version__}")
        return 0
    if args.command == "demo":
        from semot.bench.demo import run

        check_output_dir("--out", args.out)
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
    if args.command == "bench-real":
        from semot.cli.bench_real import run_bench_real

        return run_bench_real(args)
    if args.command == "bench-study":
        from semot.cli.bench_real import run_bench_study

        return run_bench_study(args)
    if args.command == "train-sae":
        from semot.cli.train import run_train_sae

        return run_train_sae(args, parser)
    if args.command == "evaluate":
        from semot.cli.evaluate import run_evaluate

        return run_evaluate(args, parser)
    if args.command == "browse":
        from semot.cli.browse import run_browse

        return run_browse(args)
    if args.command == "info":
        from semot.cli.collect import run_info

        return run_info(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
