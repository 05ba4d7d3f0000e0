"""Command-line options shared by several command groups."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from semot.distances.choice import Distance, check_distance

__all__ = ["add_distance_option", "chosen_distance"]


def add_distance_option(parser: Any) -> None:
    """Add ``--distance`` and its hidden, deprecated alias ``--metric``."""
    parser.add_argument(
        "--distance", choices=["sliced", "sinkhorn"],
        help="sliced Wasserstein or Sinkhorn divergence (default: sliced)",
    )  # fmt: skip
    # The old name; in POT "metric" is the ground cost, so it was renamed.
    parser.add_argument("--metric", choices=["sliced", "sinkhorn"], help=argparse.SUPPRESS)


def chosen_distance(args: argparse.Namespace) -> Distance:
    """Return the ``--distance`` of a command line (or of the deprecated ``--metric``)."""
    if args.metric is None:
        return check_distance(args.distance)
    if args.distance is not None:
        raise ValueError("--distance: give --distance or its deprecated alias --metric, not both")
    print("semot: --metric is deprecated; use --distance", file=sys.stderr)
    return check_distance(args.metric)
