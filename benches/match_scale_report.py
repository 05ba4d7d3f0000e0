"""Matching at scale: ``semot.match`` on 16384 x 16384 features, timed stage by stage.

Usage::

    python benches/match_scale_report.py                      # the issue's workload (2 cores)
    python benches/match_scale_report.py --n-features 2048 --general-n-features 1024  # quick
    python benches/match_scale_report.py --json bench-results/match_scale.json

Workload: ``--n-features`` source and as many target features, each a cloud of ``--points``
points in ``--dim`` dimensions. Features are drawn from shared "concepts": families of
Gaussian mixtures (random means, component offsets, scales and one dominant direction each),
several close concepts per family. Target feature ``truth[i]`` is a fresh sample of source
feature ``i``'s concept after a small drift of its means and scale, so the exact top-1 is
meaningful and its siblings are close competitors.

The main run uses uniform weights and equal sizes (what semot's weighted reservoir sampling
produces); a second, smaller run (``--general-n-features``, 0 to skip) uses general weights
(log-normal activations) and sizes from half to all of ``--points``.

Reported for ``semot.match(distance="sliced", k=1, candidates="quantile-knn")``:

- wall time of each stage of the one ``match`` call (quantile embedding of both sides, exact
  knn candidate search, exact sliced distances on the candidates, building the frame; the
  rest, validation and pair bookkeeping, is "other") and the total;
- peak resident memory of the process during ``match`` and in all;
- recall of the exact top-1: for ``--recall-sample`` random sources, the brute-force exact
  argmin over ALL targets (``sliced_wasserstein_cdist`` of the sample rows against every
  target, same projections) against ``match``'s rank-1 target (a tie in distance counts as a
  hit);
- top-1 accuracy against the planted truth (all sources), and that of the brute-force exact
  top-1 on the sample (the ceiling for any candidate search);
- ratios against peers measured in the same run: POT ``ot.sliced_wasserstein_distance`` on
  ``--pot-pairs`` random pairs with the same projections, extrapolated to all N^2 pairs
  (brute force) and to the candidate pairs alone; semot's own brute-force exact cdist, timed
  on the recall rows and extrapolated to N^2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import semot
import semot.matching.matcher as matcher
import semot.matching.search as search

STAGES = {
    # stage name: (module, function) that match() calls for it, looked up there at call time
    "embedding": (search, "sliced_quantile_embedding"),
    "knn": (search, "knn_euclidean"),
    "rerank": (matcher, "sliced_wasserstein_pairs"),
    "frame": (matcher, "matches_from_pairs"),
}


# ---------------------------------------------------------------------------------------------
# Workload


def make_workload(
    n_features: int,
    n_points: int = 64,
    dim: int = 256,
    seed: int = 0,
    uniform: bool = True,
    family_size: int = 8,
    chunk: int = 1024,
) -> tuple[semot.PointClouds, semot.PointClouds, np.ndarray]:
    """Source and target clouds from shared concepts, and the planted truth.

    Returns ``(source, target, truth)``: target feature ``truth[i]`` is the counterpart of
    source feature ``i``. Points are float32.

    Concepts come in families of about ``family_size``. A family has a random centre (norm
    varying by family), a base scale, a layout of 1 to 3 mixture components (offsets and
    weights) and a dominant direction with its amplitude. Each concept perturbs its family's
    parameters by its own amount, from near-duplicates (like split features) to clearly
    distinct concepts, so close competitors exist. A target cloud is a fresh sample of the
    same concept after a small drift of its mean, offsets, scale and amplitude.
    """
    rng = np.random.default_rng(seed)
    n_fam = max(1, math.ceil(n_features / family_size))
    fam = rng.integers(0, n_fam, n_features)
    rs = np.sqrt(dim)  # |N(0, I_d)| ~ rs; its projection on a unit direction ~ N(0, 1)
    # Family level: centre, base scale, mixture layout, dominant direction.
    f_centre = rng.normal(size=(n_fam, dim)) * rng.uniform(0.5, 2.0, (n_fam, 1))
    f_scale = np.exp(rng.uniform(np.log(0.25), np.log(1.0), n_fam))
    f_ncomp = rng.integers(1, 4, n_fam)
    f_off = rng.normal(size=(n_fam, 3, dim)) * (1.2 * f_scale[:, None, None])
    f_off[:, 0] = 0.0
    f_w = rng.dirichlet(np.ones(3), n_fam) * (np.arange(3)[None, :] < f_ncomp[:, None])
    f_w /= f_w.sum(1, keepdims=True)
    f_axis = rng.normal(size=(n_fam, dim)) / rs
    f_amp = rng.uniform(0.0, 2.0, n_fam) * f_scale
    # Concept level: the family's parameters perturbed by a concept-specific amount t, from
    # near-duplicates (t = 0.02, like split features) to clearly distinct concepts (t = 0.5).
    t = np.exp(rng.uniform(np.log(0.02), np.log(0.5), n_features))
    mean = f_centre[fam] + rng.normal(size=(n_features, dim)) * t[:, None]
    comp_off = f_off[fam] + rng.normal(size=(n_features, 3, dim)) * t[:, None, None]
    comp_off[:, 0] = 0.0
    comp_w = f_w[fam]
    scale = f_scale[fam] * np.exp(0.5 * t * rng.normal(size=n_features))
    axis = f_axis[fam] + rng.normal(size=(n_features, dim)) * (t[:, None] / rs)
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    amp = f_amp[fam] * np.exp(0.5 * t * rng.normal(size=n_features)) * rs

    def drifted(
        r: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            mean + r.normal(size=mean.shape) * 0.06,
            comp_off + r.normal(size=comp_off.shape) * 0.03,
            scale * np.exp(0.03 * r.normal(size=n_features)),
            amp * np.exp(0.05 * r.normal(size=n_features)),
        )

    def sample(
        r: np.random.Generator,
        params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        order: np.ndarray,
    ) -> semot.PointClouds:
        mu, off, sc, am = (p[order] for p in params)
        cw, ax = comp_w[order], axis[order]
        pts = np.empty((n_features, n_points, dim), np.float32)
        for s in range(0, n_features, chunk):
            e = min(s + chunk, n_features)
            u = r.random((e - s, n_points))
            comp = (u[:, :, None] > np.cumsum(cw[s:e], 1)[:, None, :]).sum(2).clip(0, 2)
            blk = r.standard_normal((e - s, n_points, dim), dtype=np.float32)
            blk *= sc[s:e, None, None].astype(np.float32)
            blk += np.take_along_axis(off[s:e], comp[:, :, None], 1).astype(np.float32)
            blk += mu[s:e, None, :].astype(np.float32)
            g = r.standard_normal((e - s, n_points, 1), dtype=np.float32)
            blk += g * (am[s:e, None, None] * ax[s:e, None, :]).astype(np.float32)
            pts[s:e] = blk
        if uniform:
            w = np.ones((n_features, n_points), np.float32)
        else:
            w = np.exp(r.normal(size=(n_features, n_points))).astype(np.float32)
            sizes = r.integers(n_points // 2, n_points + 1, n_features)
            w[np.arange(n_points)[None, :] >= sizes[:, None]] = 0.0
        return semot.PointClouds.from_padded(pts, w)

    r_src, r_tgt = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 2))
    src = sample(r_src, (mean, comp_off, scale, amp), np.arange(n_features))
    truth = rng.permutation(n_features)
    inv = np.argsort(truth)  # target j holds the concept of source inv[j]
    tgt = sample(r_tgt, drifted(rng), inv)
    return src, tgt, truth.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Measurement helpers


def _status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the VmHWM high-water mark (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """Peak resident memory since the last reset (VmHWM), else ru_maxrss."""
    hwm = _status("VmHWM")
    if hwm is not None:
        return hwm
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024


@contextmanager
def stage_timers() -> Iterator[dict[str, float]]:
    """Time the functions that match() calls, one entry per stage."""
    times = dict.fromkeys(STAGES, 0.0)
    saved = {name: getattr(module, attr) for name, (module, attr) in STAGES.items()}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                times[name] += time.perf_counter() - t

        return timed

    for name, (module, attr) in STAGES.items():
        setattr(module, attr, wrap(name, saved[name]))
    try:
        yield times
    finally:
        for name, (module, attr) in STAGES.items():
            setattr(module, attr, saved[name])


def run_match(
    src: semot.PointClouds,
    tgt: semot.PointClouds,
    *,
    n_candidates: int = 32,
    n_projections: int = 128,
    n_quantiles: int = 32,
    seed: int = 0,
    n_threads: int | None = None,
) -> tuple[Any, dict[str, float], dict[str, int]]:
    """One ``semot.match`` call: the frame, stage times (+ ``other``, ``total``) and memory."""
    base = _status("VmRSS") or 0
    resettable = _reset_peak()
    with stage_timers() as times:
        t = time.perf_counter()
        m = semot.match(
            src,
            tgt,
            distance="sliced",
            k=1,
            candidates="quantile-knn",
            n_candidates=n_candidates,
            n_projections=n_projections,
            n_quantiles=n_quantiles,
            seed=seed,
            n_threads=n_threads,
        )
        total = time.perf_counter() - t
    times = dict(times)
    times["other"] = total - sum(times.values())
    times["total"] = total
    mem = {"rss_before": base, "peak_during_match": peak_rss() if resettable else -1}
    return m, times, mem


def rank1_targets(m: Any, n_source: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 target index and distance of every source (k=1 frame, ids 0..N-1)."""
    top = m[m["rank"] == 1]
    tgt = np.full(n_source, -1, np.int64)
    dist = np.full(n_source, np.nan)
    tgt[top["source"].to_numpy()] = top["target"].to_numpy(dtype=np.int64)
    dist[top["source"].to_numpy()] = top["distance"].to_numpy()
    return tgt, dist


def exact_recall(
    src: semot.PointClouds,
    tgt: semot.PointClouds,
    got: np.ndarray,
    rows: np.ndarray,
    proj: np.ndarray,
    n_threads: int | None = None,
) -> dict[str, Any]:
    """Recall of the brute-force exact top-1 on the sampled source ``rows``.

    ``got[i]`` is match()'s rank-1 target of source ``i``. A hit: the same target, or one at
    exactly the same exact distance (a tie). Also returns the brute-force argmins and the time
    of the brute-force block (``rows`` against all targets).
    """
    t = time.perf_counter()
    D = semot.sliced_wasserstein_cdist(src.subset(rows), tgt, projections=proj, n_threads=n_threads)
    t_block = time.perf_counter() - t
    best = D.argmin(1)
    dmin = D[np.arange(len(rows)), best]
    dgot = D[np.arange(len(rows)), got[rows]]
    hit = (got[rows] == best) | (dgot == dmin)
    return {
        "hits": int(hit.sum()),
        "n": len(rows),
        "recall": float(hit.mean()),
        "exact_best": best,
        "block_s": t_block,
        "block_pairs": int(D.size),
        # how far off the misses are (relative excess distance of match's pick)
        "worst_excess": float(np.max((dgot - dmin) / dmin)) if len(rows) else 0.0,
    }


def pot_per_pair(
    src: semot.PointClouds, tgt: semot.PointClouds, pairs: np.ndarray, proj: np.ndarray
) -> tuple[float, float]:
    """Mean seconds per pair of POT's ``sliced_wasserstein_distance`` loop, and max rel. diff.

    BLAS is limited to one thread as in ``benches/report.py``: per-pair matrices are small and
    OpenBLAS threads only add overhead there.
    """
    import ot
    from threadpoolctl import threadpool_limits

    def cloud(c: semot.PointClouds, i: int) -> tuple[np.ndarray, np.ndarray]:
        x, w = c[int(i)]
        w64 = np.asarray(w, np.float64)
        return np.asarray(x, np.float64), w64 / w64.sum()

    data = [(cloud(src, i), cloud(tgt, j)) for i, j in pairs]
    with threadpool_limits(1):
        t = time.perf_counter()
        vals = [
            ot.sliced_wasserstein_distance(xa, xb, wa, wb, projections=proj)
            for (xa, wa), (xb, wb) in data
        ]
        per = (time.perf_counter() - t) / len(pairs)
    ours = semot.sliced_wasserstein_pairs(src, tgt, pairs, projections=proj)
    pot = np.asarray(vals, np.float64)
    return per, float(np.max(np.abs(ours - pot) / pot))


# ---------------------------------------------------------------------------------------------
# One run


def measure(
    n_features: int,
    *,
    points: int = 64,
    dim: int = 256,
    n_candidates: int = 32,
    n_projections: int = 128,
    n_quantiles: int = 32,
    recall_sample: int = 200,
    pot_pairs: int = 100,
    seed: int = 0,
    uniform: bool = True,
    n_threads: int | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Generate the workload, run match once and measure it; a dict of results."""
    import pandas  # noqa: F401  (match imports it lazily; keep the import out of the timings)

    t = time.perf_counter()
    src, tgt, truth = make_workload(n_features, points, dim, seed, uniform)
    t_gen = time.perf_counter() - t
    log(f"  workload generated in {t_gen:.1f} s ({src.points.nbytes * 2 / 2**30:.2f} GiB points)")

    m, times, mem = run_match(
        src,
        tgt,
        n_candidates=n_candidates,
        n_projections=n_projections,
        n_quantiles=n_quantiles,
        seed=seed,
        n_threads=n_threads,
    )
    log("  match: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    got, _ = rank1_targets(m, n_features)
    assert (got >= 0).all(), "every source has a rank-1 row"
    acc = float(np.mean(got == truth))

    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(n_features, min(recall_sample, n_features), replace=False))
    proj = semot.random_projections(dim, n_projections, seed)
    rec = exact_recall(src, tgt, got, rows, proj, n_threads)
    log(f"  recall {rec['hits']}/{rec['n']}; brute-force block {rec['block_s']:.1f} s")
    exact_acc = float(np.mean(rec["exact_best"] == truth[rows]))
    brute_semot = rec["block_s"] / rec["block_pairs"] * n_features**2

    pairs = np.stack(
        [rng.integers(0, n_features, pot_pairs), rng.integers(0, n_features, pot_pairs)], 1
    )
    pot_s, pot_diff = pot_per_pair(src, tgt, pairs, proj)
    n_cand_pairs = n_features * min(n_candidates, n_features)
    log(f"  POT {pot_s * 1e3:.2f} ms per pair")
    return {
        "n_features": n_features,
        "points": points,
        "dim": dim,
        "n_candidates": n_candidates,
        "n_projections": n_projections,
        "n_quantiles": n_quantiles,
        "uniform": uniform,
        "seed": seed,
        "times": times,
        "generate_s": t_gen,
        "rss_before_match": mem["rss_before"],
        "peak_rss_match": mem["peak_during_match"],
        "peak_rss_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "input_bytes": int(src.points.nbytes + tgt.points.nbytes),
        "n_rows": len(m),
        "recall_hits": rec["hits"],
        "recall_n": rec["n"],
        "recall": rec["recall"],
        "worst_excess": rec["worst_excess"],
        "accuracy_truth": acc,
        "accuracy_truth_exact_sample": exact_acc,
        "semot_brute_s": brute_semot,
        "semot_block_pairs": rec["block_pairs"],
        "pot_per_pair_s": pot_s,
        "pot_pairs": pot_pairs,
        "pot_brute_s": pot_s * n_features**2,
        "pot_candidates_s": pot_s * n_cand_pairs,
        "pot_max_rel_diff": pot_diff,
    }


# ---------------------------------------------------------------------------------------------
# Report


def _t(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s" if s >= 1 else f"{s * 1e3:.0f} ms"


def _label(r: dict[str, Any]) -> str:
    n = r["n_features"]
    kind = "uniform weights, equal sizes" if r["uniform"] else "general weights, sizes n/2..n"
    return f"{n}x{n}, {kind}"


def table(results: list[dict[str, Any]], threads: int) -> str:
    """Markdown table: one column per run."""
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("quantile embedding (both sides)", lambda r: _t(r["times"]["embedding"])),
        (
            "knn candidate search",
            lambda r: _t(r["times"]["knn"]),
        ),
        (
            "exact re-ranking (candidate pairs)",
            lambda r: f"{_t(r['times']['rerank'])} ({r['n_features'] * r['n_candidates']:,} pairs)",
        ),
        ("frame", lambda r: _t(r["times"]["frame"])),
        ("other (validation, pair bookkeeping)", lambda r: _t(r["times"]["other"])),
        ("**total `match()`**", lambda r: f"**{_t(r['times']['total'])}**"),
        (
            "peak RSS during `match()` (of which input points)",
            lambda r: (
                f"{r['peak_rss_match'] / 2**30:.2f} GiB ({r['input_bytes'] / 2**30:.2f} GiB)"
                if r["peak_rss_match"] > 0
                else "n/a"
            ),
        ),
        (
            "recall of exact top-1 (sample)",
            lambda r: f"{r['recall']:.1%} ({r['recall_hits']}/{r['recall_n']})",
        ),
        (
            "top-1 = planted truth: `match()` (all) / brute-force exact (sample)",
            lambda r: f"{r['accuracy_truth']:.1%} / {r['accuracy_truth_exact_sample']:.1%}",
        ),
        (
            "POT brute force, all N^2 pairs (extrapolated); ratio",
            lambda r: f"{_t(r['pot_brute_s'])}; **{r['pot_brute_s'] / r['times']['total']:,.0f}x**",
        ),
        (
            "POT on the candidate pairs only (extrapolated); ratio",
            lambda r: (
                f"{_t(r['pot_candidates_s'])}; {r['pot_candidates_s'] / r['times']['total']:,.0f}x"
            ),
        ),
        (
            "semot exact cdist brute force (extrapolated); ratio",
            lambda r: f"{_t(r['semot_brute_s'])}; {r['semot_brute_s'] / r['times']['total']:,.1f}x",
        ),
    ]
    head = "| `semot.match`, quantile-knn + exact sliced re-ranking | " + " | ".join(
        _label(r) for r in results
    )
    lines = [head + " |", "|---" * (len(results) + 1) + "|"]
    for name, fn in rows:
        lines.append(f"| {name} | " + " | ".join(fn(r) for r in results) + " |")
    r0 = results[0]
    notes = (
        f"n={r0['points']} points, d={r0['dim']}, L={r0['n_projections']} projections, "
        f"Q={r0['n_quantiles']} quantiles, k={r0['n_candidates']} candidates, float32, "
        f"{threads} threads. POT: `ot.sliced_wasserstein_distance` with the same projections "
        f"on {r0['pot_pairs']} random pairs (1 BLAS thread), times N^2 (or the candidate "
        f"pairs); max rel. diff vs semot "
        + ", ".join(f"{r['pot_max_rel_diff']:.0e}" for r in results)
        + ". semot brute force: exact `sliced_wasserstein_cdist` of the recall rows against all "
        "targets, times N^2 / pairs. Ratios are peer time / total `match()` time."
    )
    return "\n".join(lines) + "\n\n" + notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-features", type=int, default=16384)
    ap.add_argument("--points", type=int, default=64)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--n-candidates", type=int, default=32)
    ap.add_argument("--n-projections", type=int, default=128)
    ap.add_argument("--n-quantiles", type=int, default=32)
    ap.add_argument("--recall-sample", type=int, default=200)
    ap.add_argument("--pot-pairs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all cores)")
    ap.add_argument(
        "--general-n-features",
        type=int,
        default=4096,
        help="features of the general-weights run (0: skip it)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    threads = args.threads or os.cpu_count() or 1
    common = dict(
        points=args.points,
        dim=args.dim,
        n_candidates=args.n_candidates,
        n_projections=args.n_projections,
        n_quantiles=args.n_quantiles,
        recall_sample=args.recall_sample,
        pot_pairs=args.pot_pairs,
        seed=args.seed,
        n_threads=args.threads,
        log=log,
    )
    results = []
    runs = [(args.n_features, True)]
    if args.general_n_features > 0:
        runs.append((args.general_n_features, False))
    for n, uniform in runs:
        log(f"run {n}x{n}, {'uniform' if uniform else 'general'} weights")
        results.append(measure(n, uniform=uniform, **common))

    cmd = "PYTHONPATH=python python benches/match_scale_report.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(table(results, threads))
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"numpy {np.__version__}, semot {semot.__version__}."
    )
    print(f"Command: `{cmd.strip()}`")
    for r in results:
        ok_t = r["times"]["total"] < 300
        ok_r = r["recall"] >= 0.99
        print(
            f"Targets ({_label(r)}): total under 5 min: {'yes' if ok_t else 'NO'}; "
            f"recall >= 99%: {'yes' if ok_r else 'NO'}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": cmd, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
