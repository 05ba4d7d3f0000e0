//! Benchmarks of the Sinkhorn kernels: one pair, and a small cdist.
//!
//! Run with `cargo bench --bench sinkhorn`. The workload mirrors the README's comparison:
//! clouds of 64 points in d = 256, float32, `reg` = 5% of the median squared distance.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use semot::sinkhorn::{sinkhorn_cdist, sinkhorn_pair, SinkhornParams};
use semot::{CloudsView, Executor};

/// Deterministic pseudo-random numbers in `[-1, 1)`.
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `n_clouds` clouds of `n` points in dimension `d`: a per-cloud offset plus noise.
fn clouds(seed: u64, n_clouds: usize, n: usize, d: usize) -> (Vec<f32>, Vec<f32>, Vec<i64>) {
    let centres = noise(seed, n_clouds * d);
    let mut pts = noise(seed + 1, n_clouds * n * d);
    for c in 0..n_clouds {
        for i in 0..n {
            for k in 0..d {
                pts[(c * n + i) * d + k] += 0.5 * centres[c * d + k];
            }
        }
    }
    let w = vec![1.0f32; n_clouds * n];
    let offs = (0..=n_clouds).map(|c| (c * n) as i64).collect();
    (pts, w, offs)
}

fn median_sq_dist(x: &[f32], y: &[f32], d: usize) -> f64 {
    let mut all: Vec<f64> = x
        .chunks_exact(d)
        .flat_map(|a| {
            y.chunks_exact(d).map(move |b| {
                a.iter()
                    .zip(b)
                    .map(|(&u, &v)| f64::from(u - v) * f64::from(u - v))
                    .sum()
            })
        })
        .collect();
    all.sort_by(f64::total_cmp);
    all[all.len() / 2]
}

fn bench(c: &mut Criterion) {
    let (d, n) = (256, 64);
    let (pts, w, offs) = clouds(1, 32, n, d);
    let x = &pts[..n * d];
    let y = &pts[n * d..2 * n * d];
    let reg = 0.05 * median_sq_dist(x, y, d);
    let params = SinkhornParams {
        reg,
        p: 2.0,
        max_iter: 1000,
        tol: 1e-9,
        debiased: false,
    };
    let mut group = c.benchmark_group("sinkhorn");
    for debiased in [false, true] {
        let prm = SinkhornParams { debiased, ..params };
        group.bench_with_input(
            BenchmarkId::new(
                "pair_64x64_d256_f32",
                if debiased { "debiased" } else { "plain" },
            ),
            &prm,
            |bch, prm| {
                bch.iter(|| sinkhorn_pair(x, &w[..n], y, &w[..n], d, prm).expect("valid input"));
            },
        );
    }
    let half = pts.len() / 2;
    let set_a =
        CloudsView::new("A", &pts[..half], d, &w[..16 * n], &offs[..=16]).expect("valid input");
    let set_b =
        CloudsView::new("B", &pts[half..], d, &w[16 * n..], &offs[..=16]).expect("valid input");
    for threads in [1usize, 2] {
        let exec = Executor::new(Some(threads)).expect("valid input");
        group.bench_with_input(
            BenchmarkId::new("cdist_16x16_64pts_d256_f32", format!("{threads}threads")),
            &exec,
            |bch, exec| {
                bch.iter(|| sinkhorn_cdist(&set_a, &set_b, &params, exec).expect("valid input"));
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
