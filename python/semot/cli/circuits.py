"""``semot compress``: automatic supernodes for an attribution graph."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
    c.add_argument("--threshold", type=float, help="merge pairs up to this distance")
    c.add_argument("--target-ratio", type=float, help="groups / nodes to reach, e.g. 0.1")
    c.add_argument("--auto", action="store_true", help="cut with the best silhouette")
    c.add_argument("--same-position", action="store_true", help="merge only at one position")
    c.add_argument("--layer-window", type=int, help="merge only within this many layers")
    c.add_argument("--connected", action="store_true", help="merge only nodes joined by links")
    c.add_argument("--metric", choices=["sliced", "sinkhorn"], default="sliced")
    c.add_argument("--linkage", choices=["single", "average"], default="single")
    c.add_argument(
        "--graph-weight", type=float,
        help="mix in the attribution-profile distance with this weight in [0, 1]",
    )  # fmt: skip
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int)
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
    from semot.circuits.compress import compress
    from semot.circuits.graph import AttributionGraph

    chosen = [args.threshold is not None, args.target_ratio is not None, bool(args.auto)]
    if sum(chosen) != 1:
        raise ValueError("give one of --threshold, --target-ratio, --auto")
    graph = AttributionGraph.load(args.graph)
    runs = _load_runs(args.distributions) if args.distributions else None
    res = compress(
        graph,
        runs,
        threshold=args.threshold,
        target_ratio=args.target_ratio,
        auto=args.auto,
        metric=args.metric,
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
        from semot.circuits.view import plot_compression, write_html

        pic = picture(graph)
        names = display_names(res.labels, res.names)
        if args.plot:
            written.append(str(plot_compression(pic, res.labels, names, args.plot)))
        if args.html:
            written.append(str(write_html(pic, res.labels, names, args.html)))
    print(summary(res))
    print(f"wrote {', '.join(written)}")
    return 0


def picture(graph: Any, title: str | None = None) -> Any:
    """Return the plain-array view of a graph that :mod:`semot.circuits.view` draws."""
    from semot.circuits.view import GraphPicture

    return GraphPicture(
        layers=graph.layers,
        positions=graph.positions,
        kinds=list(graph.kinds),
        texts=list(graph.clerps),
        src=graph.src,
        dst=graph.dst,
        weight=graph.weight,
        prompt_tokens=list(graph.prompt_tokens),
        title=title if title is not None else str(graph.raw.get("metadata", {}).get("slug", "")),
    )


def display_names(labels: Any, names: list[str]) -> list[str]:
    """Group names for pictures: groups of one node stay unlabelled, so labels stay legible."""
    import numpy as np

    sizes = np.bincount(labels, minlength=len(names))
    return [n if sizes[g] > 1 else "" for g, n in enumerate(names)]


def summary(res: Any) -> str:
    """Describe in a few lines what a compression did."""
    r = res.report
    n_nodes = len(res.labels)
    n_groups = int(res.labels.max()) + 1
    lines = [
        f"{res.method}: {n_nodes} nodes -> {n_groups} groups "
        f"(compression ratio {r.get('compression_ratio', n_groups / n_nodes):.3f}; cut {res.cut})"
    ]
    split = r.get("edge_weight") or r.get("edge_weight_split")
    if isinstance(split, dict):
        lines.append(
            "  |edge weight| inside supernodes "
            + ", ".join(f"{k} {v:.3f}" for k, v in split.items() if isinstance(v, float))
        )
    infl = r.get("influence") or r.get("influence_preserved")
    if isinstance(infl, dict):
        lines.append(
            "  input influence on the target logit: "
            + ", ".join(f"{k} {v:.3f}" for k, v in infl.items() if isinstance(v, float))
        )
    agree = r.get("agreement")
    if isinstance(agree, dict):
        lines.append(
            "  vs hand-made supernodes: "
            + ", ".join(
                f"{'ARI' if k == 'ari' else k} {v:.3f}"
                for k, v in agree.items()
                if isinstance(v, float)
            )
        )
    if res.missing:
        lines.append(f"  {len(res.missing)} feature node(s) had no distribution (left unmerged)")
    return "\n".join(lines)
