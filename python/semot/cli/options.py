"""Command-line options shared by several command groups: argparse types and output checks.

The argparse types (:func:`positive_int`, :func:`seconds`, :func:`scheduler_address`, ...)
turn a bad value into argparse's own one-line usage error, naming the flag; the output
checks (:func:`check_output_file`, :func:`check_output_dir`) run before any work, so that
an unwritable output is reported before minutes of computing, not after.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from semot.distances.choice import DEFAULT_DISTANCE, DISTANCES, Distance, check_distance

__all__ = [
    "add_distance_option",
    "check_output_dir",
    "check_output_file",
    "chosen_distance",
    "dask_address",
    "finite_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "scheduler_address",
    "seconds",
]


def _int_type(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = what  # argparse names the type by it in some messages
    return parse


#: argparse type: an integer >= 1.
positive_int = _int_type(1, "a positive integer")
#: argparse type: an integer >= 0.
non_negative_int = _int_type(0, "a non-negative integer")


def finite_float(text: str) -> float:
    """Parse, as an argparse type, a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """Parse, as an argparse type, a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def seconds(text: str) -> float:
    """Parse, as an argparse type, a duration in seconds, finite and > 0 (``--timeout``)."""
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds > 0, such as 60 or 2.5, got {text!r}"
        ) from None


_ADDRESS = re.compile(
    r"(?:(?:tcp|tls|ucx|ws|wss)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})/?"
)


def dask_address(text: str) -> str:
    """Parse, as an argparse type, a Dask scheduler address (``tcp://host:8786``, ``host:8786``).

    Checked for its form only (reaching it is the run's business; the port is required, as
    Dask requires it), so that a malformed address gets one clear message instead of a
    client that never connects.
    """
    value = text.strip()
    m = _ADDRESS.fullmatch(value)
    if m is not None and 0 < int(m["port"]) < 65536:
        return value
    raise argparse.ArgumentTypeError(
        f"expected a Dask scheduler address such as tcp://host:8786, got {text!r}"
    )


def scheduler_address(text: str) -> str:
    """Parse, as an argparse type, ``local`` (an in-process cluster) or a :func:`dask_address`."""
    if text.strip() == "local":
        return "local"
    try:
        return dask_address(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'local' or a Dask scheduler address such as tcp://host:8786, got {text!r}"
        ) from None


def add_distance_option(
    parser: Any, default: Distance = DEFAULT_DISTANCE, choices: tuple[Distance, ...] = DISTANCES
) -> None:
    """Add ``--distance`` (``default`` when absent) and its hidden deprecated alias ``--metric``."""
    names = {"centroid": "centroid of the clouds", "sliced": "sliced Wasserstein",
             "sinkhorn": "Sinkhorn divergence"}  # fmt: skip
    parser.add_argument(
        "--distance", choices=list(choices),
        help=" or ".join(names[c] for c in choices) + f" (default: {default})",
    )  # fmt: skip
    # The old name; in POT "metric" is the ground cost, so it was renamed.
    parser.add_argument("--metric", choices=list(choices), help=argparse.SUPPRESS)
    parser.set_defaults(distance_default=default)


def chosen_distance(args: argparse.Namespace) -> Distance:
    """Return the ``--distance`` of a command line (or of the deprecated ``--metric``)."""
    default = getattr(args, "distance_default", DEFAULT_DISTANCE)
    if args.metric is None:
        return check_distance(args.distance, default=default)
    if args.distance is not None:
        raise ValueError("--distance: give --distance or its deprecated alias --metric, not both")
    print("semot: --metric is deprecated; use --distance", file=sys.stderr)
    return check_distance(args.metric, default=default)


def _probe_directory(flag: str, path: Path, directory: Path) -> None:
    """Raise ValueError unless a file can be created in ``directory`` (tried, then removed)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".semot-probe-", dir=directory)
    except OSError as e:
        raise ValueError(
            f"{flag} {path}: cannot write in {directory} ({e.strerror or e})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _existing_ancestor(flag: str, path: Path) -> Path:
    """Return the nearest existing ancestor of ``path``, which must be a directory."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is not a directory")
    return parent


def check_output_file(flag: str, value: str | os.PathLike[str] | None) -> None:
    """Check, before any work, that the file output ``value`` of ``flag`` can be written.

    It must not be a directory; an existing file must open for writing; a new one must be
    creatable where it goes (the missing parent directories are created by the command).

    Raises
    ------
    ValueError
        Naming the flag, the path and why.
    """
    if value is None:
        return
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a directory, expected a file name")
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise ValueError(f"{flag} {path}: cannot be written ({e.strerror or e})") from None
        return
    _probe_directory(flag, path, _existing_ancestor(flag, path))


def check_output_dir(flag: str, value: str | os.PathLike[str] | None) -> None:
    """Check, before any work, that files can be written in the directory output ``value``.

    Raises
    ------
    ValueError
        Naming the flag, the path and why (a file in the way, no permission).
    """
    if value is None:
        return
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: exists and is not a directory")
    _probe_directory(flag, path, path if path.is_dir() else _existing_ancestor(flag, path))
