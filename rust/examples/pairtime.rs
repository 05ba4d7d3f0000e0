use semot::projections::{random_directions, Xoshiro256pp};
use semot::sliced::{Projections, Sorted};
use semot::wasserstein1d::P2;
use semot::{CloudsView, Executor};
fn main() {
    let uniform = std::env::args().nth(1).is_some();
    let (n, d, l) = (64usize, 256usize, 128usize);
    let mut rng = Xoshiro256pp::new(1);
    let mut unif = || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
    let points: Vec<f32> = (0..2 * n * d).map(|_| unif() - 0.5).collect();
    let weights: Vec<f32> = (0..2 * n).map(|_| if uniform { 1.0 } else { 0.1 + unif() }).collect();
    let offsets = vec![0i64, n as i64, 2 * n as i64];
    let proj: Vec<f32> = random_directions(d, l, 3).unwrap().into_iter().map(|v| v as f32).collect();
    let view = CloudsView::new("A", &points, d, &weights, &offsets).unwrap();
    let pr = Projections::new(&proj, d, l).unwrap();
    let s = Sorted::new(&view, "A", &pr, &Executor::sequential()).unwrap();
    let mut acc = 0.0;
    let iters: usize = std::env::var("ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(20000);
    for _ in 0..iters {
        acc += s.pair_sum(0, &s, 1, P2);
    }
    eprintln!("{acc}");
}
