"""Overhead of semot.distributed against one process, and a projection to a 26-layer model.

Usage::

    python benches/distributed_report.py            # the README workload (~3 minutes on 2 cores)
    python benches/distributed_report.py --quick    # small sizes, a smoke test of this script
    python benches/distributed_report.py --json bench-results/distributed.json

The workload is the core issue's: exact sliced cdist 1024 x 1024, float32, n = 64 points per
cloud, d = 256, L = 128, general weights. One process with 2 Rust threads against a
LocalCluster of 2 worker processes x 1 thread (one Rust thread per block), best of
``--repeat`` runs each, on an already started cluster (its start-up time is printed apart).
The distributed time includes scattering the clouds to the workers and gathering the matrix.

The projection uses single-thread per-block times measured here: all adjacent-layer pairs of
a 26-layer model with 16,384 features per layer (25 cdists of 16,384 x 16,384, or 25 matches
with quantile-knn candidates), spread over 64 cores, times (1 + the measured overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import semot
import semot.distributed as sd
from semot.distributed.blocks import DEFAULT_BLOCK
from semot.matching.search import knn_euclidean


def make(n_clouds, n, d, rng, dtype=np.float32):
    pts = rng.normal(size=(n_clouds, n, d)).astype(dtype)
    pts += rng.normal(size=(n_clouds, 1, d)).astype(dtype)
    w = (rng.random((n_clouds, n)) + 0.1).astype(dtype)
    return semot.PointClouds.from_padded(pts, w)


def best_of(repeat, fn):
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    N, n, d, L = (128, 16, 32, 16) if args.quick else (1024, 64, 256, 128)
    layers, features, cores = 26, 16_384, 64
    repeat = 1 if args.quick else args.repeat
    rng = np.random.default_rng(0)
    A, B = make(N, n, d, rng), make(N, n, d, rng)
    proj = semot.random_projections(d, L, seed=0)
    print(f"semot {semot.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip

    t_single, D1 = best_of(
        repeat, lambda: semot.sliced_wasserstein_cdist(A, B, projections=proj, n_threads=2)
    )
    print(f"one process, 2 threads: {t_single:.2f} s", flush=True)

    t = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    t_start = time.perf_counter() - t
    try:
        # Warm the workers (imports) on a tiny problem first.
        sd.sliced_wasserstein_cdist(A[:4], B[:4], client=client, projections=proj, progress=False)
        t_dist, D2 = best_of(
            repeat,
            lambda: sd.sliced_wasserstein_cdist(
                A, B, client=client, projections=proj, block_size=args.block_size,
                progress=False,
            ),
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "D.npy"
            t_npy, D3 = best_of(
                1,
                lambda: sd.sliced_wasserstein_cdist(
                    A, B, client=client, projections=proj, block_size=args.block_size,
                    out=out, overwrite=True, progress=False,
                ),
            )  # fmt: skip
            same_npy = bool(np.array_equal(D3, D1))
    finally:
        client.close()
        cluster.close()
    same = bool(np.array_equal(D2, D1))
    overhead = t_dist / t_single - 1.0
    print(f"LocalCluster start-up: {t_start:.2f} s (not counted)")
    print(f"LocalCluster 2 workers x 1 thread: {t_dist:.2f} s in memory, {t_npy:.2f} s to .npy; "
          f"bit-identical: {same} / {same_npy}")  # fmt: skip
    print(f"overhead: {100 * overhead:+.1f} %", flush=True)

    # Per-block times, one thread, for the projection.
    bs = min(args.block_size, N)
    blocks = {}
    for size in (n, 2 * n):
        ra, rb = make(bs, size, d, rng), make(bs, size, d, rng)
        t_blk, _ = best_of(
            repeat, lambda: semot.sliced_wasserstein_cdist(ra, rb, projections=proj, n_threads=1)
        )
        blocks[size] = t_blk / (bs * bs)
        print(f"block {bs} x {bs}, n = {size}, one thread: {t_blk:.2f} s "
              f"({1e6 * blocks[size]:.1f} us/pair)", flush=True)  # fmt: skip
    pairs = (layers - 1) * features * features
    cdist_h = {
        size: pairs * per_pair / cores * (1 + max(overhead, 0.0)) / 3600
        for size, per_pair in blocks.items()
    }
    # Matching with candidates: embedding of every cloud, exact k-NN over the embeddings
    # (float64 matrix product), exact distances for 32 candidates per source.
    q, n_cand = 32, 32
    t_emb, _ = best_of(
        repeat,
        lambda: semot.sliced_quantile_embedding(A, projections=proj, n_quantiles=q, n_threads=1),
    )
    emb_per_cloud = t_emb / N
    e_rows = np.asarray(rng.normal(size=(min(256, N), L * q)), np.float64)
    e_cols = np.asarray(rng.normal(size=(min(4096, 8 * N), L * q)), np.float64)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        t_knn, _ = best_of(1, lambda: knn_euclidean(e_rows, e_cols, n_cand))
    knn_per_rowcol = t_knn / (e_rows.shape[0] * e_cols.shape[0])
    match_s = (layers - 1) * (
        2 * features * emb_per_cloud
        + features * features * knn_per_rowcol
        + features * n_cand * blocks[n]
    )
    match_h = match_s / cores * (1 + max(overhead, 0.0)) / 3600
    print(f"quantile embedding {1e3 * emb_per_cloud:.2f} ms/cloud, k-NN "
          f"{1e9 * knn_per_rowcol:.0f} ns per (row, column) at width {L * q}")  # fmt: skip
    print(f"\nprojected, {layers} layers x {features:,} features, all {layers - 1} adjacent "
          f"pairs, {cores} cores:")  # fmt: skip
    for size, hours in cdist_h.items():
        print(f"  exact sliced cdist, n = {size}: {hours:.1f} h")
    print(f"  match, quantile-knn candidates ({n_cand}/source), n = {n}: {60 * match_h:.1f} min")
    result = {
        "workload": f"exact sliced cdist {N}x{N}, f32, n={n}, d={d}, L={L}, general weights",
        "single_process_2_threads_s": t_single,
        "localcluster_2x1_s": t_dist,
        "localcluster_2x1_npy_s": t_npy,
        "localcluster_start_s": t_start,
        "overhead": overhead,
        "bit_identical": same and same_npy,
        "block_size": args.block_size,
        "per_pair_one_thread_s": {str(k): v for k, v in blocks.items()},
        "projection_hours": {f"cdist_n{k}": v for k, v in cdist_h.items()}
        | {"match_quantile_knn": match_h},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
