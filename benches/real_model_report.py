"""The real-model benchmark: SAEs trained, features collected, matched and evaluated offline.

Usage::

    python benches/real_model_report.py                          # minilm-smoke, minutes on CPU
    python benches/real_model_report.py --preset smollm2         # SmolLM2-135M, 4 sites
    python benches/real_model_report.py --preset minilm --device cuda

The same as ``semot bench-real`` (see :mod:`semot.bench.real`): the Python standard library's
docstrings split into disjoint train / collect / evaluate parts, one TopK SAE per site trained
with sae-lens, ``semot.collect``, then every method against the activation-correlation silver
standard on the held-out part. Prints the table README.md shows (top-1 agreement, top-5 in
brackets, at silver r >= 0.5, by distance in sites), the SAEs' held-out scores, and
collection tokens/s against the plain forward pass of the same model on the same tokens.
"""

from __future__ import annotations

import argparse

from semot.bench.real import PRESETS, format_report, run_real_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="minilm-smoke")
    parser.add_argument("--cache", default="bench-results/real-cache")
    parser.add_argument("--out", default="bench-results/real")
    parser.add_argument("--device")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    report = run_real_benchmark(args.preset, cache=args.cache, out=args.out, device=args.device)
    print(format_report(report, threshold=args.threshold))


if __name__ == "__main__":
    main()
