"""Measure semot against its peers in one run and print a Markdown table.

Usage::

    python benches/report.py            # the README's workloads (about 15 minutes on 2 cores)
    python benches/report.py --quick    # small sizes, a smoke test of this script
    python benches/report.py --json bench-results/report.json

Every figure is a ratio against a named peer measured in the same run. Peers that would take
minutes or hours (POT looping over ~10^6 pairs) are timed on a random sample of pairs and
extrapolated linearly to the full matrix; the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import semot

import _peers


def timed(fn, repeat=1):
    best = np.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def make(n_clouds, n, d, rng, uniform, dtype=np.float32):
    pts = rng.normal(size=(n_clouds, n, d)).astype(dtype)
    pts += rng.normal(size=(n_clouds, 1, d)).astype(dtype)
    w = (
        np.ones((n_clouds, n), dtype)
        if uniform
        else (rng.random((n_clouds, n)) + 0.1).astype(dtype)
    )
    return pts, w


def per_pair(fn, pairs):
    """Mean seconds per pair of a Python loop over ``pairs``.

    BLAS is limited to one thread: per-pair matrices are small, and OpenBLAS threads only add
    overhead there (on this 2-core machine two BLAS threads made POT ~5x slower per pair).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        t = time.perf_counter()
        for i, j in pairs:
            fn(i, j)
        return (time.perf_counter() - t) / len(pairs)


def merge_time_with(A, B, proj, threads, D, simd="off"):
    """Seconds of the same cdist with another merge kernel (``SEMOT_SIMD=off``: the scalar
    merge; ``avx2`` / ``avx512``: that kernel), and whether it gives the same bits as ``D``;
    ``None`` where this CPU lacks the kernel. ``SEMOT_SIMD`` is read once per process, hence
    the subprocess."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sets.npz"
        np.savez(
            path, pa=A.points, wa=A.weights, oa=A.offsets, pb=B.points, wb=B.weights,
            ob=B.offsets, proj=proj,
        )  # fmt: skip
        code = f"""
import json, time, numpy as np, semot
z = np.load({str(path)!r})
A = semot.PointClouds.from_csr_unchecked(z["pa"], z["wa"], z["oa"])
B = semot.PointClouds.from_csr_unchecked(z["pb"], z["wb"], z["ob"])
t = time.perf_counter()
D = semot.sliced_wasserstein_cdist(A, B, projections=z["proj"], n_threads={threads})
t = time.perf_counter() - t
np.save({str(Path(tmp) / "scalar.npy")!r}, D)
print(json.dumps(dict(t=t, kernel=semot._core.SIMD_KERNEL)))
"""
        env = {**os.environ, "SEMOT_SIMD": simd}
        res = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True, env=env))
        if res["kernel"] != ("scalar" if simd == "off" else simd):
            return None  # this CPU lacks that kernel
        same = bool(np.array_equal(np.load(Path(tmp) / "scalar.npy"), D))
    return res["t"], same


def bench_exact(cfg, rng, rows):
    import ot

    N, n, d, L, threads = cfg["N"], 64, 256, 128, 2
    proj64 = semot.random_projections(d, L, seed=0)
    for uniform in (False, True):
        pa, wa = make(N, n, d, rng, uniform)
        pb, wb = make(N, n, d, rng, uniform)
        A = semot.PointClouds.from_padded(pa, wa)
        B = semot.PointClouds.from_padded(pb, wb)
        t_semot, D = timed(
            lambda: semot.sliced_wasserstein_cdist(A, B, projections=proj64, n_threads=threads)
        )
        sample = rng.integers(0, N, size=(cfg["pot_pairs"], 2))
        a64, b64 = pa.astype(np.float64), pb.astype(np.float64)
        wn_a, wn_b = wa / wa.sum(1, keepdims=True), wb / wb.sum(1, keepdims=True)
        t_pot = per_pair(
            lambda i, j: ot.sliced_wasserstein_distance(
                a64[i], b64[j], wn_a[i].astype(np.float64), wn_b[j].astype(np.float64),
                projections=proj64,
            ),
            sample,
        ) * N * N  # fmt: skip
        got = D[sample[:, 0], sample[:, 1]]
        want = np.array([
            ot.sliced_wasserstein_distance(
                a64[i], b64[j], wn_a[i].astype(np.float64), wn_b[j].astype(np.float64),
                projections=proj64,
            )
            for i, j in sample[:20]
        ])  # fmt: skip
        err = float(np.max(np.abs(got[:20] - want) / want))
        label = "uniform weights, equal sizes" if uniform else "general weights"
        rows.append(
            dict(
                workload=f"exact sliced cdist {N}x{N}, n=64, d=256, L=128, f32, {label}",
                semot_s=t_semot,
                peer="POT ot.sliced_wasserstein_distance loop (sampled, extrapolated)",
                peer_s=t_pot,
                note=f"max rel. diff vs POT {err:.1e}",
            )
        )
        if not uniform:
            # The scalar merge, and on x86 the other kernel (skipped where the CPU lacks it).
            others = [("off", "semot's scalar merge (SEMOT_SIMD=off, a subprocess)")]
            x86 = {"avx2": "AVX2", "avx512": "AVX-512"}
            if semot._core.SIMD_KERNEL in x86:
                others += [
                    (simd, f"semot's {name} kernel (SEMOT_SIMD={simd}, a subprocess)")
                    for simd, name in x86.items()
                    if simd != semot._core.SIMD_KERNEL
                ]
            for simd, peer in others:
                timing = merge_time_with(A, B, proj64, threads, D, simd)
                if timing is None:
                    continue
                t_other, same_bits = timing
                rows.append(
                    dict(
                        workload=rows[-1]["workload"],
                        semot_s=t_semot,
                        peer=peer,
                        peer_s=t_other,
                        note=f"SIMD kernel: {semot._core.SIMD_KERNEL}; "
                        f"bit-identical: {'yes' if same_bits else 'NO'}",
                    )
                )
            sa = _peers.project_sort([(pa[i].astype(np.float64), wa[i]) for i in range(N)], proj64)
            sb = _peers.project_sort([(pb[i].astype(np.float64), wb[i]) for i in range(N)], proj64)
            batch = sample[: min(len(sample), 100)]
            t_np = per_pair(lambda i, j: _peers.numpy_pair(sa[i], sb[j]), batch) * N * N
            got_np = np.array([_peers.numpy_pair(sa[i], sb[j]) for i, j in batch[:10]])
            err_np = float(np.max(np.abs(got_np - D[batch[:10, 0], batch[:10, 1]]) / got_np))
            rows.append(
                dict(
                    workload=rows[-1]["workload"],
                    semot_s=t_semot,
                    peer="numpy: project+sort once, merge vectorised over directions "
                    "(sampled, extrapolated)",
                    peer_s=t_np,
                    note=f"max rel. diff {err_np:.1e}",
                )
            )


def bench_scaling(cfg, rng, rows):
    """Speed-up from 1 to 2 threads on every bulk path, and whether both give the same bits."""
    n, d, L = 64, 256, 128
    proj = semot.random_projections(d, L, seed=0)
    N = cfg["N_scaling"]
    general = semot.PointClouds.from_padded(*make(N, n, d, rng, uniform=False))
    Nu = cfg["N_scaling_uniform"]
    ua = semot.PointClouds.from_padded(*make(Nu, n, d, rng, uniform=True))
    ub = semot.PointClouds.from_padded(*make(Nu, n, d, rng, uniform=True))
    Nq = cfg["N_scaling_quantile"]
    qa = semot.PointClouds.from_padded(*make(Nq, n, d, rng, uniform=False))
    qb = semot.PointClouds.from_padded(*make(Nq, n, d, rng, uniform=False))
    Ns = cfg["NS"]
    sa, _ = make(Ns, n, d, rng, True)
    sb, _ = make(Ns, n, d, rng, True)
    cost = ((sa[0][:, None, :].astype(np.float64) - sb[0][None]) ** 2).sum(-1)
    reg = 0.05 * float(np.median(cost))
    paths = [
        (
            f"exact general cdist(A, A) {N}^2",
            lambda th: semot.sliced_wasserstein_cdist(
                general, general, projections=proj, n_threads=th
            ),
        ),
        (
            f"exact all-uniform cdist {Nu}^2 (matrix product)",
            lambda th: semot.sliced_wasserstein_cdist(ua, ub, projections=proj, n_threads=th),
        ),
        (
            f"quantile cdist {Nq}^2, Q=32, general weights",
            lambda th: semot.sliced_wasserstein_cdist(
                qa, qb, projections=proj, method="quantile", n_quantiles=32, n_threads=th
            ),
        ),
        (
            f"Sinkhorn cdist {Ns}^2, reg = 5% of the median cost",
            lambda th: semot.sinkhorn_cdist(sa, sb, reg=reg, n_threads=th),
        ),
    ]
    for label, run in paths:
        # Best of 3: a single sub-second run on a shared 2-vCPU VM varies by 15 %.
        t1, d1 = timed(lambda: run(1), repeat=3)
        t2, d2 = timed(lambda: run(2), repeat=3)
        rows.append(
            dict(
                workload=f"thread scaling, {label}",
                semot_s=t2,
                peer="semot with 1 thread",
                peer_s=t1,
                note="ratio = speed-up from 1 to 2 threads (best of 3 each); same bits: "
                + ("yes" if np.array_equal(d1, d2) else "NO"),
            )
        )


def bench_mixed(cfg, rng, rows):
    """Uniform clouds with a few ragged ones: routed by pair, against all-merge and raw sgemm."""
    from threadpoolctl import threadpool_limits

    N, n, d, L, threads = cfg["N"], 64, 256, 128, 2
    proj = semot.random_projections(d, L, seed=0).astype(np.float32)
    pa, wa = make(N, n, d, rng, True)
    pb, wb = make(N, n, d, rng, True)
    A, B = semot.PointClouds.from_padded(pa, wa), semot.PointClouds.from_padded(pb, wb)

    def ragged(pts, share):
        # A `share` of the clouds cut to half their points (a rare feature), the rest intact.
        cut = set(rng.choice(len(pts), size=max(1, round(share * len(pts))), replace=False))
        return semot.PointClouds.from_list(
            [x[: n // 2] if i in cut else x for i, x in enumerate(pts)]
        )

    Am, Bm = ragged(pa, 0.05), ragged(pb, 0.05)

    def cdist(X, Y):
        return semot.sliced_wasserstein_cdist(X, Y, projections=proj, n_threads=threads)

    t_uniform, _ = timed(lambda: cdist(A, B), repeat=2)
    t_mixed, Dm = timed(lambda: cdist(Am, Bm), repeat=2)
    # The same sorted-projection matrices (the embeddings the product runs on), one sgemm.
    ea = semot.sliced_quantile_embedding(A, projections=proj, n_quantiles=n)
    eb = semot.sliced_quantile_embedding(B, projections=proj, n_quantiles=n)
    with threadpool_limits(threads):
        t_gemm, _ = timed(lambda: ea @ eb.T, repeat=3)
    # What the routed call merges: the pairs of two ragged clouds (a pair with one uniform
    # cloud of n points is a matrix product plus the other cloud's Jensen gap), timed alone.
    routed_a = Am.sizes == n
    routed_b = Bm.sizes == n
    merged = np.argwhere(~routed_a[:, None] & ~routed_b[None, :])
    t_ragged, Dr = timed(
        lambda: semot.sliced_wasserstein_pairs(Am, Bm, merged, projections=proj, n_threads=threads)
    )
    assert np.array_equal(Dm[merged[:, 0], merged[:, 1]], Dr)
    # semot 0.1 merged every pair of such a call (the pairs kernel always merges).
    ii, jj = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    every = np.stack([ii.ravel(), jj.ravel()], axis=1)
    t_all_merge, Dall = timed(
        lambda: semot.sliced_wasserstein_pairs(Am, Bm, every, projections=proj, n_threads=threads)
    )
    err = float(np.max(np.abs(Dm.ravel() - Dall) / np.maximum(Dall, 1e-30)))
    bound = 1.3 * t_uniform + t_ragged
    share = len(merged) / N**2
    rows.append(
        dict(
            workload=f"exact sliced cdist {N}x{N}, n=64, d=256, L=128, f32, uniform weights, "
            f"5% of the clouds cut to n=32 ({share:.1%} of pairs merged)",
            semot_s=t_mixed,
            peer="every pair merged (semot 0.1 on mixed sets: sliced_wasserstein_pairs)",
            peer_s=t_all_merge,
            note=f"target <= 1.3 x all-uniform + ragged merge = {bound:.2f} s "
            f"(ragged merge alone {t_ragged:.2f} s); max rel. diff {err:.1e}",
        )
    )
    rows.append(
        dict(
            workload=f"exact sliced cdist {N}x{N}, n=64, d=256, L=128, f32, all uniform",
            semot_s=t_uniform,
            peer=f"numpy sgemm of the same sorted projections ({N}x{L * n} @ {L * n}x{N}), "
            f"{threads} threads",
            peer_s=t_gemm,
            note="sgemm alone: no projection, sorting or distances",
        )
    )


def bench_quantile(cfg, rng, rows):
    """The quantile path at 16384^2: the issue's workload (general weights, the default number
    of quantiles) against numpy's sgemm of the same embeddings, and uniform clouds with
    Q = 32 against the same path written in plain numpy (which handles only those)."""
    N, n, d, L = cfg["NQ"], 64, 256, 128

    def semot_run(general, n_quantiles):
        # A fresh process per run: the peak-memory figure is this call's alone.
        code = f"""
import numpy as np, semot, time, json
rng = np.random.default_rng(1)
def make(N):
    x = rng.normal(size=(N, {n}, {d})).astype(np.float32)
    x += rng.normal(size=(N, 1, {d})).astype(np.float32)
    w = (0.1 + rng.random((N, {n}))).astype(np.float32) if {general} else None
    return semot.PointClouds.from_padded(x, w)
A, B = make({N}), make({N})
proj = semot.random_projections({d}, {L}, seed=0)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark (Linux)
base = status("VmRSS")
t = time.perf_counter()
D = semot.sliced_wasserstein_cdist(
    A, B, projections=proj, method="quantile", n_quantiles={n_quantiles}
)
t = time.perf_counter() - t
peak = status("VmHWM")
pairs = rng.integers(0, {N}, size=(1000, 2))
ex = semot.sliced_wasserstein_pairs(A, B, pairs, projections=proj)
rel = np.abs(D[pairs[:, 0], pairs[:, 1]] - ex) / ex
print(json.dumps(dict(t=t, extra=peak - base - D.nbytes, out=D.nbytes, med=float(np.median(rel)),
                      mx=float(rel.max()),
                      q=semot.distances.projections.resolve_n_quantiles({n_quantiles}, A, B))))
"""
        return json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))

    def note(res):
        return (
            f"peak memory = output + {res['extra'] / res['out']:.0%}; "
            f"median rel. error vs exact {res['med']:.2%} (max {res['mx']:.2%})"
        )

    # The workload, and the matrix product alone: numpy's sgemm of the same (N, L * Q)
    # embeddings, 2 threads.
    from threadpoolctl import threadpool_limits

    general = semot_run(True, None)
    q = general["q"]

    def embed(seed):
        g = np.random.default_rng(seed)
        x = g.normal(size=(N, n, d)).astype(np.float32)
        w = (0.1 + g.random((N, n))).astype(np.float32)
        clouds = semot.PointClouds.from_padded(x, w)
        return semot.sliced_quantile_embedding(
            clouds, projections=semot.random_projections(d, L, seed=0), n_quantiles=q
        ).astype(np.float32)

    def sgemm_seconds():
        ea, eb = embed(1), embed(2)
        with threadpool_limits(2):
            return timed(lambda: ea @ eb.T)[0]

    t_gemm = sgemm_seconds()
    rows.append(
        dict(
            workload=f"quantile cdist {N}x{N}, n=64, d=256, L=128, default Q = {q}, "
            "general weights, f32",
            semot_s=general["t"],
            peer=f"numpy sgemm alone of the same embeddings ({N}x{L * q} @ {L * q}x{N}), 2 threads",
            peer_s=t_gemm,
            note="sgemm alone: no projection, sorting or distances; " + note(general),
        )
    )
    # Uniform clouds, Q = 32, against plain numpy at a size that fits, scaled by N^2.
    uniform = semot_run(False, 32)
    Np = min(N, cfg["NQ_numpy"])
    pa = make(Np, n, d, rng, True)[0].astype(np.float32)
    pb = make(Np, n, d, rng, True)[0].astype(np.float32)
    proj = semot.random_projections(d, L, seed=0).astype(np.float32)
    t_np, _ = timed(
        lambda: _peers.numpy_quantile_cdist(
            list(zip(pa, pa, strict=True)), list(zip(pb, pb, strict=True)), proj, 32
        )
    )
    rows.append(
        dict(
            workload=f"quantile cdist {N}x{N}, n=64, d=256, L=128, Q=32, uniform weights, f32",
            semot_s=uniform["t"],
            peer=f"plain numpy (measured at {Np}^2, scaled by N^2)",
            peer_s=t_np * (N / Np) ** 2,
            note=note(uniform),
        )
    )


def bench_sinkhorn(cfg, rng, rows):
    import ot

    if not hasattr(semot, "sinkhorn_cdist"):
        return
    N, n, d = cfg["NS"], 64, 256
    pa, _ = make(N, n, d, rng, True)
    pb, _ = make(N, n, d, rng, True)
    sample_c = [ot.dist(pa[i].astype(np.float64), pb[i].astype(np.float64)) for i in range(5)]
    reg = 0.05 * float(np.median(np.concatenate([c.ravel() for c in sample_c])))
    t_semot, D = timed(lambda: semot.sinkhorn_cdist(pa, pb, reg=reg, n_threads=2))
    u = np.full(n, 1 / n)
    sample = rng.integers(0, N, size=(cfg["pot_pairs_sinkhorn"], 2))

    def pot(i, j):
        C = ot.dist(pa[i].astype(np.float64), pb[j].astype(np.float64))
        return ot.sinkhorn2(u, u, C, reg, method="sinkhorn_log", numItermax=10000, stopThr=1e-9)

    t_pot = per_pair(pot, sample) * N * N
    want = np.array([pot(i, j) for i, j in sample[:10]]) ** 0.5
    err = float(np.max(np.abs(D[sample[:10, 0], sample[:10, 1]] - want) / want))
    workload = f"Sinkhorn cdist {N}x{N}, n=64, d=256, f32, reg=5% median cost"
    rows.append(
        dict(
            workload=workload,
            semot_s=t_semot,
            peer='POT sinkhorn2(method="sinkhorn_log") loop (sampled, extrapolated)',
            peer_s=t_pot,
            note=f"max rel. diff vs POT {err:.1e}",
        )
    )
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the batched Sinkhorn peers (POT batch, GeomLoss)")
        return
    xa, xb = torch.from_numpy(pa), torch.from_numpy(pb)
    ii, jj = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    ii, jj = torch.from_numpy(ii.ravel()), torch.from_numpy(jj.ravel())
    ref_idx = [i * N + j for i, j in sample[:10]]

    def batched(solve, bs):
        out = []
        for s0 in range(0, N * N, bs):
            out.append(solve(xa[ii[s0 : s0 + bs]], xb[jj[s0 : s0 + bs]]))
        return torch.cat(out).numpy()

    def pot_batch(x, y):
        M = torch.cdist(x.double(), y.double()) ** 2
        res = ot.batch.solve_batch(M, reg=reg, method="log_sinkhorn", max_iter=1000, tol=1e-9)
        return res.value_linear

    for bs in cfg["batch_sizes"]:
        t, vals = timed(lambda: batched(pot_batch, bs))
        e = float(np.max(np.abs(np.sqrt(vals[ref_idx]) - want) / want))
        rows.append(
            dict(
                workload=workload,
                semot_s=t_semot,
                peer=f"POT ot.batch.solve_batch, torch CPU, batch {bs}, tol 1e-9",
                peer_s=t,
                note=f"max rel. diff vs POT loop {e:.1e}",
            )
        )
    try:
        from geomloss import SamplesLoss
    except ImportError:
        print("geomloss is not installed: skipping that peer")
        return
    # GeomLoss uses the cost |x - y|^2 / 2 and blur = eps^(1/p): same regularisation strength.
    loss = SamplesLoss("sinkhorn", p=2, blur=(reg / 2) ** 0.5, debias=False, backend="tensorized")
    for bs in cfg["batch_sizes"]:
        t, _ = timed(lambda: batched(lambda x, y: loss(x, y), bs))
        rows.append(
            dict(
                workload=workload,
                semot_s=t_semot,
                peer=f"GeomLoss SamplesLoss tensorized, torch CPU, batch {bs}",
                peer_s=t,
                note="regularised dual value (another quantity); timing only",
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument(
        "--only", choices=["exact", "mixed", "quantile", "sinkhorn", "scaling"], action="append"
    )
    args = ap.parse_args()
    cfg = (
        dict(
            N=64,
            pot_pairs=20,
            N_scaling=64,
            N_scaling_uniform=64,
            N_scaling_quantile=128,
            NQ=256,
            NQ_numpy=128,
            NS=8,
            pot_pairs_sinkhorn=5,
            batch_sizes=[16],
        )
        if args.quick
        else dict(
            N=1024,
            pot_pairs=200,
            N_scaling=256,
            N_scaling_uniform=1024,
            N_scaling_quantile=4096,
            NQ=16384,
            NQ_numpy=2048,
            NS=128,
            pot_pairs_sinkhorn=100,
            batch_sizes=[256, 2048],
        )
    )
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    todo = args.only or ["exact", "mixed", "quantile", "sinkhorn", "scaling"]
    if "exact" in todo:
        bench_exact(cfg, rng, rows)
    if "mixed" in todo:
        bench_mixed(cfg, rng, rows)
    if "quantile" in todo:
        bench_quantile(cfg, rng, rows)
    if "sinkhorn" in todo:
        bench_sinkhorn(cfg, rng, rows)
    if "scaling" in todo:
        bench_scaling(cfg, rng, rows)
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\nsemot {semot.__version__}; {machine}; threads: 2\n")
    print("| workload | semot | peer | peer time | ratio | notes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["peer_s"] / r["semot_s"]
        print(
            f"| {r['workload']} | {r['semot_s']:.2f} s | {r['peer']} | {r['peer_s']:.1f} s | "
            f"{ratio:.0f}x | {r['note']} |"
            if ratio >= 10
            else f"| {r['workload']} | {r['semot_s']:.2f} s | {r['peer']} | {r['peer_s']:.2f} s | "
            f"{ratio:.2f}x | {r['note']} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(machine=machine, rows=rows), indent=2))


if __name__ == "__main__":
    main()
