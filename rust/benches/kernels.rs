//! Criterion benchmarks of the sliced kernels: preparation (project + sort), one pair with
//! general and uniform weights, and the all-pairs driver at 1 and 2 threads.
//!
//! Run with `cargo bench -p semot --bench kernels`.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use semot::projections::{random_directions, Projections, Xoshiro256pp};
use semot::sliced::{cdist, Sorted};
use semot::wasserstein1d::P2;
use semot::{CloudsView, Executor};

struct Data {
    points: Vec<f32>,
    weights: Vec<f32>,
    offsets: Vec<i64>,
    proj: Vec<f32>,
}

fn data(n_clouds: usize, n: usize, d: usize, l: usize, uniform: bool) -> Data {
    let mut rng = Xoshiro256pp::new(1);
    let mut unif = || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
    let points = (0..n_clouds * n * d).map(|_| unif() - 0.5).collect();
    let weights = (0..n_clouds * n)
        .map(|_| if uniform { 1.0 } else { 0.1 + unif() })
        .collect();
    let offsets = (0..=n_clouds).map(|c| (c * n) as i64).collect();
    let proj = random_directions(d, l, 3)
        .unwrap()
        .into_iter()
        .map(|v| v as f32)
        .collect();
    Data {
        points,
        weights,
        offsets,
        proj,
    }
}

fn bench_pair(c: &mut Criterion) {
    let (n, d, l) = (64, 256, 128);
    let mut g = c.benchmark_group("sliced_pair_n64_d256_L128_f32");
    for uniform in [false, true] {
        let dt = data(2, n, d, l, uniform);
        let view = CloudsView::new("A", &dt.points, d, &dt.weights, &dt.offsets).unwrap();
        let pr = Projections::new(&dt.proj, d, l).unwrap();
        let sorted = Sorted::new(&view, "A", &pr, &Executor::sequential()).unwrap();
        let name = if uniform { "uniform" } else { "general" };
        g.bench_function(name, |b| b.iter(|| sorted.pair_sum(0, 1, P2)));
    }
    g.finish();
}

fn bench_prepare(c: &mut Criterion) {
    let (n, d, l) = (64, 256, 128);
    let dt = data(64, n, d, l, false);
    let view = CloudsView::new("A", &dt.points, d, &dt.weights, &dt.offsets).unwrap();
    let pr = Projections::new(&dt.proj, d, l).unwrap();
    c.bench_function("prepare_64_clouds", |b| {
        b.iter(|| Sorted::new(&view, "A", &pr, &Executor::sequential()).unwrap());
    });
}

fn bench_cdist(c: &mut Criterion) {
    let (n, d, l) = (64, 256, 128);
    let dt = data(64, n, d, l, false);
    let view = CloudsView::new("A", &dt.points, d, &dt.weights, &dt.offsets).unwrap();
    let pr = Projections::new(&dt.proj, d, l).unwrap();
    let mut g = c.benchmark_group("cdist_64x64_general");
    g.sample_size(10);
    for threads in [1usize, 2] {
        let ex = Executor::new(Some(threads)).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(threads), &threads, |b, _| {
            b.iter(|| cdist(&view, &view, &pr, 2.0, &ex).unwrap());
        });
    }
    g.finish();
}

criterion_group!(benches, bench_pair, bench_prepare, bench_cdist);
criterion_main!(benches);
