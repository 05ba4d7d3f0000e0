"""``semot match`` and ``semot bench-match``: argument parsing and the calls they make."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from semot.cli.options import (
    add_distance_option,
    check_output_dir,
    check_output_file,
    chosen_distance,
    dask_address,
    finite_float,
    non_negative_int,
    positive_float,
    positive_int,
)


def add_parsers(sub: Any) -> None:
    """Register the ``match`` and ``bench-match`` sub-commands."""
    m = sub.add_parser(
        "match",
        help="match the features of one layer to another (semantic distances)",
        description=(
            "Match every feature of one collected site (--from) to the features of another "
            "(--to) by a distance between their distributions, and write a table with one row "
            "per (source, candidate target): source, target, rank, distance, matched."
        ),
    )
    m.add_argument("run", help="a `semot collect` output dir (or a FeatureDistributions dir)")
    m.add_argument("--from", dest="source", required=True, help="site name, hook name or layer")
    m.add_argument("--to", dest="target", required=True, help="site name, hook name or layer")
    add_distance_option(m)
    m.add_argument("--k", type=positive_int, default=5, help="targets per source (nearest)")
    m.add_argument("--assignment", choices=["nearest", "one-to-one"], default="nearest")
    m.add_argument(
        "--candidates", choices=["none", "quantile-knn", "centroid"], default="none",
        help="candidate search before exact distances (default: all pairs)",
    )  # fmt: skip
    m.add_argument("--n-candidates", type=positive_int, default=32)
    m.add_argument(
        "--score", choices=["distance", "joint"], default="distance",
        help="rank targets by the distance, or by distance rank + decoder-cosine rank "
        "(joint: needs --sae-from and --sae-to)",
    )  # fmt: skip
    m.add_argument(
        "--sae-from", help="sae-lens SAE directory of --from (its W_dec), for --score joint"
    )
    m.add_argument("--sae-to", help="sae-lens SAE directory of --to (its W_dec), for --score joint")
    m.add_argument("--threshold", help="'no match' above this distance, or 'auto'")
    m.add_argument(
        "--margin", type=finite_float, help="'no match' unless best <= (1-margin) x second"
    )
    m.add_argument("--n-projections", type=positive_int, default=128)
    m.add_argument(
        "--reg", type=positive_float, help="Sinkhorn regularisation (default: 5%% of median)"
    )
    m.add_argument("--seed", type=non_negative_int, default=0)
    m.add_argument("--threads", type=positive_int, help="threads (default: all cores)")
    m.add_argument(
        "--scheduler",
        type=dask_address,
        help="run on this Dask cluster (tcp://host:8786; needs semot[distributed])",
    )
    m.add_argument("--out", required=True, help="output table: .csv or .parquet")

    b = sub.add_parser(
        "bench-match",
        help="the planted-feature matching benchmark: semot vs baselines, table and plots",
        description=(
            "Build planted multi-layer models with known feature correspondences, collect "
            "their feature distributions, match with semot and the baselines, and write the "
            "accuracy table, plots and JSON to --out."
        ),
    )
    b.add_argument("--out", default="semot-bench-match", help="report directory")
    b.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2])
    b.add_argument("--noise", type=finite_float, nargs="+", default=[0.35, 1.0])
    b.add_argument("--n-tokens", type=positive_int, default=100_000)
    b.add_argument("--samples-per-feature", type=positive_int, default=128)
    b.add_argument(
        "--sizes", type=positive_int, nargs="+", default=[8, 16, 32, 64, 128, 256],
        help="samples per feature for the accuracy-vs-n curve",
    )  # fmt: skip
    b.add_argument("--quick", action="store_true", help="one seed, one noise level, fewer sizes")


def find_site(runs: dict[str, Any], key: str, flag: str) -> Any:
    """Return the site ``key`` of a loaded run: by site name, hook name, or layer number."""
    from semot.features.runs import site_name

    return runs[site_name(runs, key, flag)]


def decoder_matrix(path: str, flag: str) -> Any:
    """``W_dec`` ``(d_sae, d_model)`` of a sae-lens SAE directory or ``.safetensors`` file."""
    from semot._utils.safetensors import read_safetensors

    p = Path(path)
    file = p / "sae_weights.safetensors" if p.is_dir() else p
    if not file.is_file():
        raise ValueError(f"{flag} {path}: no sae_weights.safetensors (a sae-lens SAE directory)")
    tensors, _ = read_safetensors(file)
    if "W_dec" not in tensors:
        raise ValueError(f"{flag} {path}: {file.name} holds no W_dec")
    return tensors["W_dec"]


def load_sites(path: str) -> dict[str, Any]:
    """Load the sites of a ``semot collect`` output dir, or one FeatureDistributions dir."""
    from semot.collection.run import load_run
    from semot.features.container import FeatureDistributions

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{path}: not a directory")
    if (root / "run.json").is_file():
        return load_run(root)
    return {root.name: FeatureDistributions.load(root)}


def run_match(args: argparse.Namespace) -> int:
    """Carry out ``semot match``."""
    from semot.matching.matcher import match

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out {args.out}: expected a .csv or .parquet file name")
    threshold: float | str | None = None
    if args.threshold is not None:
        threshold = args.threshold if args.threshold == "auto" else _float(args.threshold)
    check_output_file("--out", out)
    if args.scheduler:
        check_output_dir("--out", out.with_name(out.name + ".blocks"))
    from semot.features.runs import site_name

    runs = load_sites(args.run)
    source_name = site_name(runs, args.source, "--from")
    target_name = site_name(runs, args.target, "--to")
    source, target = runs[source_name], runs[target_name]
    run: Callable[..., Any] = match
    kwargs: dict[str, Any] = {}
    if args.score == "joint":
        if not (args.sae_from and args.sae_to):
            raise ValueError("--score joint: needs --sae-from and --sae-to (the SAE directories)")
        if args.scheduler:
            raise ValueError("--score joint: not on a Dask cluster yet; drop --scheduler")
        kwargs = {
            "score": "joint",
            "source_decoder": decoder_matrix(args.sae_from, "--sae-from"),
            "target_decoder": decoder_matrix(args.sae_to, "--sae-to"),
        }
    elif args.sae_from or args.sae_to:
        raise ValueError("--sae-from/--sae-to: only used with --score joint")
    if args.scheduler:
        from semot import distributed

        # Finished blocks are kept next to the output until it is written: rerun to resume.
        run = distributed.match
        kwargs |= {"client": args.scheduler, "checkpoint": out.with_name(out.name + ".blocks")}
    frame = run(
        source,
        target,
        distance=chosen_distance(args),
        k=args.k,
        assignment=args.assignment,
        threshold=threshold,
        margin=args.margin,
        candidates=None if args.candidates == "none" else args.candidates,
        n_candidates=args.n_candidates,
        n_projections=args.n_projections,
        reg=args.reg,
        seed=args.seed,
        n_threads=args.threads,
        **kwargs,
    )
    # Kept in the parquet file's metadata: `semot browse` reads which sites it matches.
    frame.attrs.update({"source_site": source_name, "target_site": target_name})
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    if "checkpoint" in kwargs:
        import shutil

        shutil.rmtree(kwargs["checkpoint"], ignore_errors=True)
    best = frame[frame["rank"] == 1]
    print(
        f"{len(best)} source features, {int(best['matched'].sum())} matched; "
        f"{len(frame)} rows written to {out}"
    )
    return 0


def _markdown(table: Any) -> str:
    cols = [f"distance {c}" for c in table.columns]
    lines = ["| tokens | method | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (tokens, method), row in table.iterrows():
        lines.append(f"| {tokens} | {method} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines) + "\n"


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--threshold: expected a number or 'auto', got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"--threshold: expected a finite number or 'auto', got {text!r}")
    return value


def run_bench_match(args: argparse.Namespace) -> int:
    """Carry out ``semot bench-match``."""
    from semot.bench.planted import (
        property_checks,
        run_benchmark,
        sample_size_curve,
        summary_table,
    )
    from semot.bench.report import plot_accuracy_vs_distance, plot_sample_size, write_json

    seeds, noises, sizes = args.seeds, args.noise, args.sizes
    if args.quick:
        seeds, noises, sizes = seeds[:1], noises[:1], [16, 64, 128]
    out = Path(args.out)
    check_output_dir("--out", out)
    out.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    print(f"semot bench-match: seeds {seeds}, noise {noises}, {args.n_tokens:,} tokens per stream")
    results = run_benchmark(
        seeds=seeds,
        noises=noises,
        n_tokens=args.n_tokens,
        samples_per_feature=args.samples_per_feature,
        progress=say,
    )
    results.to_csv(out / "results.csv", index=False)
    table = summary_table(results)
    print("\nmean top-1 accuracy, source layer 0 -> layer distance:")
    print(table.round(3).to_string())
    more = results.groupby(["tokens", "method"], sort=False)[
        ["top5", "none_precision", "none_recall"]
    ].mean()
    print("\ntop-5 and 'no match' (threshold='auto'), mean over distances:")
    print(more.round(3).to_string())
    by_noise = results.groupby(["noise", "method"], sort=False)["top1"].mean().unstack("noise")
    print("\ntop-1 by noise level:")
    print(by_noise.round(3).to_string())
    curve = sample_size_curve(sizes=sizes, seeds=seeds, n_tokens=args.n_tokens, progress=say)
    curve.to_csv(out / "sample_size.csv", index=False)
    print("\ntop-1 against samples per feature (disjoint tokens, distance 3):")
    print(
        curve.groupby(["method", "samples_per_feature"], sort=False)[["top1", "top1_shape_pairs"]]
        .mean()
        .round(3)
        .to_string()
    )
    props = property_checks(seed=seeds[0])
    print("\nproperties:")
    print(f"  rescaling x{props['rescaling']['factor']}: {props['rescaling']}")
    for s in props["stability"]:
        print(f"  stability: {s}")
    for r in props["recovery"]:
        print(f"  recovery: {r}")
    plot_accuracy_vs_distance(results, out / "accuracy.png")
    plot_sample_size(curve, out / "sample_size.png")
    (out / "table.md").write_text(_markdown(table))
    write_json(
        {
            "args": vars(args),
            "results": results.to_dict(orient="records"),
            "sample_size": curve.to_dict(orient="records"),
            "properties": props,
        },
        out / "results.json",
    )
    print(f"\nreport: {out.resolve()}/")
    return 0
