"""``semot compress``: automatic supernodes for an attribution graph."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from semot.cli.options import (
    add_distance_option,
    check_output_file,
    chosen_distance,
    finite_float,
    non_negative_int,
    positive_int,
)


def add_parser(sub: Any) -> None:
    """Register the ``compress`` sub-command."""
    c = sub.add_parser(
        "compress",
        help="group an attribution graph's feature nodes into supernodes",
        description=(
            "Read an attribution graph (circuit-tracer / Neuronpedia JSON), group its feature "
            "nodes by the distance between their feature distributions (or, without "
            "--distributions, by their attribution profiles), and write the graph with "
            "qParams.supernodes filled, the compressed graph, metrics and pictures."
        ),
    )
    c.add_argument("graph", help="graph JSON file")
    c.add_argument(
        "--distributions", nargs="+", default=[],
        help="`semot collect` run dirs (or FeatureDistributions dirs) covering the graph's layers",
    )  # fmt: skip
    c.add_argument("--threshold", type=finite_float, help="merge pairs up to this distance")
    c.add_argument("--target-ratio", type=finite_float, help="groups / nodes to reach, e.g. 0.1")
    c.add_argument("--auto", action="store_true", help="cut with the best silhouette")
    c.add_argument("--same-position", action="store_true", help="merge only at one position")
    c.add_argument(
        "--layer-window", type=non_negative_int,
        help="merge only within this many layers (0: the same layer)",
    )  # fmt: skip
    c.add_argument("--connected", action="store_true", help="merge only nodes joined by links")
    add_distance_option(c, default="sliced")
    c.add_argument("--linkage", choices=["single", "average"], default="single")
    c.add_argument(
        "--graph-weight", type=finite_float,
        help="mix in the attribution-profile distance with this weight in [0, 1]",
    )  # fmt: skip
    c.add_argument("--seed", type=non_negative_int, default=0)
    c.add_argument("--threads", type=positive_int)
    c.add_argument("--out", required=True, help="graph JSON with qParams.supernodes filled")
    c.add_argument("--compressed", help="also write the compressed graph JSON here")
    c.add_argument("--report", help="also write the metrics as JSON here")
    c.add_argument("--plot", help="picture of original and compressed graph (.png or .svg)")
    c.add_argument("--html", help="self-contained HTML view")


def _load_runs(paths: list[str]) -> list[Any]:
    from semot.collection.run import load_run
    from semot.features.container import FeatureDistributions

    runs: list[Any] = []
    for p in paths:
        root = Path(p)
        if (root / "run.json").is_file():
            runs.append(load_run(root))
        elif root.is_dir():
            runs.append({root.name: FeatureDistributions.load(root)})
        else:
            raise ValueError(f"--distributions {p}: not a directory")
    return runs


def run_compress(args: argparse.Namespace) -> int:
    """Carry out ``semot compress``."""
    from semot.bench.report import write_json
    from semot.circuits.compress import compress, compression_summary
    from semot.circuits.graph import AttributionGraph

    chosen = [args.threshold is not None, args.target_ratio is not None, bool(args.auto)]
    if sum(chosen) != 1:
        raise ValueError("give one of --threshold, --target-ratio, --auto")
    for flag in ("out", "compressed", "report", "plot", "html"):
        check_output_file(f"--{flag}", getattr(args, flag))
    graph = AttributionGraph.load(args.graph)
    runs = _load_runs(args.distributions) if args.distributions else None
    res = compress(
        graph,
        runs,
        threshold=args.threshold,
        target_ratio=args.target_ratio,
        auto=args.auto,
        distance=chosen_distance(args),
        graph_weight=args.graph_weight,
        linkage=args.linkage,
        same_position=args.same_position,
        layer_window=args.layer_window,
        connected=args.connected,
        seed=args.seed,
        n_threads=args.threads,
    )
    res.graph.save(args.out)
    written = [args.out]
    if args.compressed:
        res.compressed.save(args.compressed)
        written.append(args.compressed)
    if args.report:
        write_json(res.report, Path(args.report))
        written.append(args.report)
    if args.plot or args.html:
        from semot.circuits.view import write_pictures

        pictures = write_pictures(graph, res, plot=args.plot, html=args.html)
        written += [str(p) for p in pictures]
    print(compression_summary(res))
    print(f"wrote {', '.join(written)}")
    return 0
