//! Exact sliced Wasserstein distances between weighted point clouds.
//!
//! `SW_p(μ, ν) = ( (1/L) Σ_l W_p^p(θ_l#μ, θ_l#ν) )^(1/p)` for directions `θ_1..θ_L` (the columns
//! of a `(d, L)` projection matrix), with `W_p` the exact one-dimensional distance between the
//! projected weighted samples. This is the quantity of POT's `ot.sliced_wasserstein_distance`.
//!
//! Every cloud is projected and sorted once ([`Sorted`]); a pair then costs one merge per
//! direction. The merge of [`crate::wasserstein1d`] runs a fixed number of steps, so four
//! directions are merged in lock-step, which keeps several independent dependency chains in
//! flight. When both clouds have uniform weights and the same size the merge degenerates into
//! an aligned difference of sorted values, and for `p = 2` the whole matrix of distances is a
//! matrix product (see [`crate::quantile`]).

use crate::clouds::{check_same_dim, CloudsView};
use crate::error::{checked_len, try_vec, Result};
use crate::float::Real;
use crate::pairs::{
    check_pairs, condensed_index, condensed_len, condensed_row_start, condensed_rows,
};
use crate::parallel::Executor;
use crate::projections::Projections;
use crate::quantile;
use crate::simd;
use crate::wasserstein1d::{check_p, merge_scaled, sorted_representation, Cost, Pn, P1, P2};

/// Runs `$body` with `$cost` bound to the cost type specialised for `$p`.
macro_rules! with_cost {
    ($t:ty, $p:expr, |$cost:ident| $body:expr) => {{
        let p: f64 = $p;
        if p == 1.0 {
            let $cost = P1;
            $body
        } else if p == 2.0 {
            let $cost = P2;
            $body
        } else {
            let $cost = Pn(<$t as Real>::from_f64(p));
            $body
        }
    }};
}

/// Every cloud of a set projected on every direction and sorted, ready for merging.
///
/// Cloud `c` with `n` points owns a block of `L * (n + 1)` entries `[cumulative weight,
/// value]`: direction `l` occupies `l * (n + 1) .. (l + 1) * (n + 1)` (sorted representation
/// with a sentinel, see [`crate::wasserstein1d`]). Keeping both in one entry halves the
/// number of base pointers the merge juggles.
#[derive(Debug, Clone)]
pub struct Sorted<T> {
    n_dirs: usize,
    sizes: Vec<usize>,
    base: Vec<usize>,
    data: Vec<[T; 2]>,
    uniform: Vec<bool>,
}

/// Some clouds of one set, for [`Sorted::joint`].
#[derive(Debug, Clone, Copy)]
pub struct Part<'v, 'a, T> {
    /// The set.
    pub clouds: &'v CloudsView<'a, T>,
    /// Its name in messages (`"A"`, `"B"`).
    pub name: &'v str,
    /// The clouds to take, in this order (`None`: all of them).
    pub subset: Option<&'v [usize]>,
}

impl<T: Real> Sorted<T> {
    /// Projects and sorts every cloud once (in parallel over clouds).
    ///
    /// # Errors
    /// [`Error::Shape`](crate::Error::Shape) when the projection matrix does not match the
    /// clouds' dimension; [`Error::Interrupted`](crate::Error::Interrupted) when the
    /// executor's interrupt check fires.
    pub fn new(
        clouds: &CloudsView<'_, T>,
        name: &str,
        proj: &Projections<'_, T>,
        exec: &Executor<'_>,
    ) -> Result<Self> {
        let part = Part {
            clouds,
            name,
            subset: None,
        };
        Self::joint(&[part], proj, exec)
    }

    /// Like [`Sorted::new`], for the clouds `subset` of `clouds` only (in that order).
    ///
    /// # Errors
    /// As [`Sorted::new`].
    pub fn new_subset(
        clouds: &CloudsView<'_, T>,
        name: &str,
        subset: &[usize],
        proj: &Projections<'_, T>,
        exec: &Executor<'_>,
    ) -> Result<Self> {
        let part = Part {
            clouds,
            name,
            subset: Some(subset),
        };
        Self::joint(&[part], proj, exec)
    }

    /// The clouds of several parts in one allocation, part after part: the merge of two
    /// clouds of one `Sorted` loads from one base, which is what its SIMD kernel needs
    /// ([`simd::merge_f32_joint`]).
    ///
    /// # Errors
    /// As [`Sorted::new`].
    pub fn joint(
        parts: &[Part<'_, '_, T>],
        proj: &Projections<'_, T>,
        exec: &Executor<'_>,
    ) -> Result<Self> {
        let n_dirs = proj.len();
        let mut items: Vec<(&CloudsView<'_, T>, usize)> = Vec::new();
        for part in parts {
            proj.check_dim(part.name, part.clouds.dim())?;
            match part.subset {
                Some(subset) => items.extend(subset.iter().map(|&c| (part.clouds, c))),
                None => items.extend((0..part.clouds.len()).map(|c| (part.clouds, c))),
            }
        }
        let names: Vec<&str> = parts.iter().map(|p| p.name).collect();
        let what = format!(
            "{n_dirs} sorted projections of the clouds of {}",
            names.join(" and ")
        );
        let sizes: Vec<usize> = items.iter().map(|&(s, c)| s.size(c)).collect();
        let mut base = Vec::with_capacity(sizes.len() + 1);
        let mut total = 0usize;
        for &n in &sizes {
            base.push(total);
            total = total
                .checked_add(checked_len(n_dirs, n + 1, "n_projections", &what)?)
                .ok_or_else(|| crate::Error::Memory {
                    name: "n_projections".to_owned(),
                    what: what.clone(),
                    bytes: f64::INFINITY,
                })?;
        }
        base.push(total);
        let mut data = try_vec(total, [T::zero(); 2], "n_projections", &what)?;
        let uniform: Vec<bool> = items
            .iter()
            .map(|&(s, c)| uniform_size(s.weights(c)).is_some())
            .collect();
        {
            let mut blocks = Vec::with_capacity(sizes.len());
            let mut rest = data.as_mut_slice();
            for &n in &sizes {
                let (block, tail) = rest.split_at_mut(n_dirs * (n + 1));
                blocks.push(block);
                rest = tail;
            }
            exec.each(blocks, |k, block| {
                let (clouds, c) = items[k];
                let n = sizes[k];
                let projected = proj.project(clouds.points(c));
                let w = clouds.weights(c);
                let mut pairs = Vec::with_capacity(n);
                let (mut v, mut cm) = (vec![T::zero(); n + 1], vec![T::zero(); n + 1]);
                for l in 0..n_dirs {
                    pairs.clear();
                    pairs.extend(projected.row(l).iter().copied().zip(w.iter().copied()));
                    sorted_representation(&mut pairs, &mut v, &mut cm);
                    for (e, (&ci, &vi)) in block[l * (n + 1)..(l + 1) * (n + 1)]
                        .iter_mut()
                        .zip(cm.iter().zip(&v))
                    {
                        *e = [ci, vi];
                    }
                }
            })?;
        }
        Ok(Self {
            n_dirs,
            sizes,
            base,
            data,
            uniform,
        })
    }

    /// Number of clouds.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether there are no clouds.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    fn block(&self, c: usize) -> &[[T; 2]] {
        &self.data[self.base[c]..self.base[c + 1]]
    }

    /// `Σ_l W_p^p` over all directions between clouds `i` and `j` of `self` (one pair of
    /// [`Sorted::pair_sums`]).
    pub fn pair_sum<C: Cost<T>>(&self, i: usize, j: usize, cost: C) -> f64 {
        let mut total = [0.0];
        self.pair_sums(&[(i, j)], cost, &mut total);
        total[0]
    }

    /// [`Sorted::pair_sum`] of the pairs `(i, j)` of clouds of `self`, written to `out`.
    ///
    /// The merged pairs go through the directions a group at a time (the SIMD kernel's width:
    /// 16 directions, 48 for AVX-512), every pair before the next group: the clouds of a tile
    /// of pairs then stay in cache across the pairs, where one pair's whole blocks
    /// (`L (n + 1)` entries each) would push the others out. A direction's sum and the order in
    /// which the sums are added do not depend on the grouping, so each value has the bits of
    /// the pair alone.
    pub fn pair_sums<C: Cost<T>>(&self, pairs: &[(usize, usize)], cost: C, out: &mut [f64]) {
        assert_eq!(pairs.len(), out.len(), "one output per pair");
        let kernel = simd::kernel();
        // The directions the SIMD kernel may take: whole blocks.
        let blocked = if kernel == simd::Kernel::Scalar {
            0
        } else {
            self.n_dirs - self.n_dirs % simd::BLOCK
        };
        let aligned = |&(i, j): &(usize, usize)| {
            self.sizes[i] == self.sizes[j] && self.uniform[i] && self.uniform[j]
        };
        // Directions the kernel has done for each pair. It declines on sizes and the cost,
        // never on one group but not another, so a pair it declined is scalar from there on.
        let mut done = vec![0usize; pairs.len()];
        out.fill(0.0);
        let group = pair_group(kernel);
        // Room for the largest group `pair_group` gives.
        let mut sums = [T::zero(); simd::AVX512_GROUP];
        for g0 in (0..blocked).step_by(group) {
            let len = (blocked - g0).min(group);
            for ((&(i, j), total), done) in pairs.iter().zip(out.iter_mut()).zip(&mut done) {
                if *done != g0 || aligned(&(i, j)) {
                    continue;
                }
                let (n, m) = (self.sizes[i], self.sizes[j]);
                let (xo, yo) = (self.base[i] + g0 * (n + 1), self.base[j] + g0 * (m + 1));
                let part = &mut sums[..len];
                if T::merge_blocks_joint(kernel, cost.kind(), &self.data, xo, n, yo, m, part) {
                    // Groups of four, as merge_dirs adds them.
                    for g in part.chunks_exact(4) {
                        *total += g[0].to_f64() + g[1].to_f64() + g[2].to_f64() + g[3].to_f64();
                    }
                    *done += len;
                }
            }
        }
        // The rest pair by pair: the scalar merge streams through a pair's blocks (four
        // directions at a time) faster than group by group across pairs (measured).
        for ((&(i, j), total), &done) in pairs.iter().zip(out.iter_mut()).zip(&done) {
            let (n, m) = (self.sizes[i], self.sizes[j]);
            let (x, y) = (self.block(i), self.block(j));
            *total = if aligned(&(i, j)) {
                aligned_sum(cost, x, y, n, self.n_dirs)
            } else {
                merge_dirs(cost, x, n, y, m, done, self.n_dirs, *total)
            };
        }
    }

    /// `SW_p` of the pairs `(i, j)` of clouds of `self`, written to `out` (see
    /// [`Sorted::pair_sums`]).
    ///
    /// A sum of `p`-th powers that overflowed, or that is so small that it may have lost
    /// digits to underflow (zero included), is recomputed in the scaled form of
    /// [`Sorted::scaled_distance`].
    pub fn distances<C: Cost<T>>(&self, pairs: &[(usize, usize)], cost: C, out: &mut [f64]) {
        self.pair_sums(pairs, cost, out);
        for (&(i, j), v) in pairs.iter().zip(out.iter_mut()) {
            let mean = *v / self.n_dirs as f64;
            *v = if mean.is_finite() && mean >= T::SAFE_MIN {
                cost.root(mean)
            } else {
                self.scaled_distance(i, self, j, cost.p())
            };
        }
    }

    /// `SW_p` in a form that neither overflows nor underflows: per direction `W_p^p =
    /// (2H_l)^p S_l` ([`merge_scaled`]), combined as `SW_p = 2H (Σ_l (H_l/H)^p S_l / L)^(1/p)`
    /// with `H = max_l H_l`, all in `f64`.
    pub fn scaled_distance(&self, i: usize, other: &Self, j: usize, p: f64) -> f64 {
        let (n, m) = (self.sizes[i], other.sizes[j]);
        let (x, y) = (self.block(i), other.block(j));
        let (sx, sy) = (n + 1, m + 1);
        let split = |b: &[[T; 2]]| -> (Vec<T>, Vec<T>) { b.iter().map(|e| (e[1], e[0])).unzip() };
        let per_dir: Vec<(f64, f64)> = (0..self.n_dirs)
            .map(|l| {
                let (xv, xc) = split(&x[l * sx..(l + 1) * sx]);
                let (yv, yc) = split(&y[l * sy..(l + 1) * sy]);
                merge_scaled(p, &xv, &xc, &yv, &yc)
            })
            .collect();
        let h = per_dir.iter().fold(0.0f64, |acc, &(hl, _)| acc.max(hl));
        if h == 0.0 {
            return 0.0;
        }
        let total: f64 = per_dir
            .iter()
            .filter(|&&(hl, _)| hl > 0.0)
            .map(|&(hl, sl)| (hl / h).powf(p) * sl)
            .sum();
        2.0 * h * (total / self.n_dirs as f64).powf(1.0 / p)
    }
}

/// Uniform weights and equal sizes: `W_p^p = (1/n) Σ_k |x_(k) − y_(k)|^p` per direction.
fn aligned_sum<T: Real, C: Cost<T>>(
    cost: C,
    x: &[[T; 2]],
    y: &[[T; 2]],
    n: usize,
    n_dirs: usize,
) -> f64 {
    let mut total = 0.0f64;
    for l in 0..n_dirs {
        let r = l * (n + 1)..l * (n + 1) + n;
        let (x, y) = (&x[r.clone()], &y[r]);
        // Eight independent partial sums let the compiler use SIMD lanes.
        let mut acc = [T::zero(); 8];
        let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
        let tail: T = xc
            .remainder()
            .iter()
            .zip(yc.remainder())
            .fold(T::zero(), |s, (a, b)| s + cost.eval(a[1] - b[1]));
        for (a, b) in xc.zip(yc) {
            for k in 0..8 {
                acc[k] = acc[k] + cost.eval(a[k][1] - b[k][1]);
            }
        }
        total += acc.iter().map(|v| v.to_f64()).sum::<f64>() + tail.to_f64();
    }
    total / n as f64
}

/// One direction's merge state, kept in registers. `i` and `j` are absolute positions in the
/// four-direction blocks of the two clouds.
#[derive(Clone, Copy)]
struct Lane<T> {
    i: usize,
    j: usize,
    prev: T,
    acc: T,
}

impl<T: Real> Lane<T> {
    #[inline(always)]
    fn new(i: usize, j: usize) -> Self {
        Self {
            i,
            j,
            prev: T::zero(),
            acc: T::zero(),
        }
    }

    /// One merge step (see [`crate::wasserstein1d::merge_wpp`]). The fixed step count keeps
    /// each lane inside its own direction's sentinel-extended block.
    #[inline(always)]
    fn step<C: Cost<T>>(&mut self, cost: C, x: &[[T; 2]], y: &[[T; 2]]) {
        let [a, xv] = x[self.i];
        let [b, yv] = y[self.j];
        let t = if a < b { a } else { b };
        let dt = t - self.prev;
        // A step of zero mass adds nothing, even where |x - y|^p is not finite.
        let term = cost.eval(xv - yv);
        self.acc = self.acc + if dt > T::zero() { dt * term } else { T::zero() };
        self.prev = t;
        let adv = usize::from(a <= b);
        self.i += adv;
        self.j += 1 - adv;
    }
}

/// Directions of every pair of a tile that [`Sorted::pair_sums`] merges before the next
/// group: what the kernel merges at once ([`simd::AVX512_GROUP`] for AVX-512, one
/// [`simd::BLOCK`] otherwise), a multiple of four (the scalar merge's lock-step). For `n = 64`
/// both clouds' blocks of a group take 17 KB (2 · 16 · 65 entries of 8 bytes for `f32`),
/// 50 KB for AVX-512's 48 directions.
fn pair_group(kernel: simd::Kernel) -> usize {
    if kernel == simd::Kernel::Avx512 {
        simd::AVX512_GROUP
    } else {
        simd::BLOCK
    }
}

/// The scalar merge of directions `l0 .. n_dirs` added to `total`: four directions in
/// lock-step, so that four independent dependency chains are in flight, their sums added in
/// groups of four.
fn merge_dirs<T: Real, C: Cost<T>>(
    cost: C,
    x: &[[T; 2]],
    n: usize,
    y: &[[T; 2]],
    m: usize,
    l0: usize,
    n_dirs: usize,
    mut total: f64,
) -> f64 {
    let (sx, sy) = (n + 1, m + 1);
    let steps = n + m - 1;
    let mut l = l0;
    while l + 4 <= n_dirs {
        let xb = &x[l * sx..(l + 4) * sx];
        let yb = &y[l * sy..(l + 4) * sy];
        let mut s0 = Lane::new(0, 0);
        let mut s1 = Lane::new(sx, sy);
        let mut s2 = Lane::new(2 * sx, 2 * sy);
        let mut s3 = Lane::new(3 * sx, 3 * sy);
        for _ in 0..steps {
            s0.step(cost, xb, yb);
            s1.step(cost, xb, yb);
            s2.step(cost, xb, yb);
            s3.step(cost, xb, yb);
        }
        total += s0.acc.to_f64() + s1.acc.to_f64() + s2.acc.to_f64() + s3.acc.to_f64();
        l += 4;
    }
    while l < n_dirs {
        let mut s = Lane::new(0, 0);
        let (xb, yb) = (&x[l * sx..(l + 1) * sx], &y[l * sy..(l + 1) * sy]);
        for _ in 0..steps {
            s.step(cost, xb, yb);
        }
        total += s.acc.to_f64();
        l += 1;
    }
    total
}

/// Rows of the output handled by one chunk of the merge path; columns are visited in tiles of
/// `TILE_COLS`, and [`Sorted::pair_sums`] merges a tile's pairs group of directions by group,
/// so that the tile's clouds stay in cache. With `n = 64` and `L = 128`, 16 × 16 tiles merged
/// 1.25× faster than 8 × 8 tiles merged pair by pair (AMD Zen 4, AVX2, 1024 × 1024 clouds).
const TILE_ROWS: usize = 16;
const TILE_COLS: usize = 16;
/// From this many pairs on, [`cdist`] and [`pdist`] with `p = 2` send every pair with a
/// routed cloud (see [`Route`]) down the matrix-product path of [`crate::quantile`] (below it
/// the path is not worth its setup). Part of the contract with the Python package, exported
/// as `semot._core.GEMM_MIN_PAIRS`: the distributed driver cuts a routed call into row stripes
/// over all columns with at least this many pairs, so that each stripe routes as the whole
/// call does and its results are bit-identical to a single-process call.
pub const GEMM_MIN_PAIRS: usize = 4096;

/// The size of a cloud with the weights `w` if they are uniform (all equal), else `None`.
pub fn uniform_size<T: Real>(w: &[T]) -> Option<usize> {
    w.iter().all(|&x| x == w[0]).then_some(w.len())
}

/// Which pairs of a `cdist` call take the matrix-product path: for `p = 2` and at least
/// [`GEMM_MIN_PAIRS`] pairs, the *routed* clouds are those with uniform weights and `n`
/// points, where `n` is the most common size among the clouds of `B` with uniform weights (the
/// larger one on ties), and every pair with a routed cloud on either side is a matrix product:
/// for a uniform cloud `ν` of `n` points and any cloud `μ`, `SW_2²(μ, ν) = ‖E_n(μ) − E_n(ν)‖² +
/// J(μ)` exactly, with `E_n` the quantile embedding with `n` levels and `J` its Jensen gap (see
/// [`crate::quantile`]). Only the pairs of two unrouted clouds are merged.
///
/// `n` is chosen from `B` alone, so that a row stripe of `A` against all of `B` routes its
/// pairs as the whole call does (the distributed driver's blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The common size of the routed clouds.
    pub n: usize,
    /// The routed clouds of `A`, increasing.
    pub rows: Vec<usize>,
    /// The routed clouds of `B`, increasing.
    pub cols: Vec<usize>,
    /// Number of clouds of `A`.
    pub len_a: usize,
    /// Number of clouds of `B`.
    pub len_b: usize,
}

impl Route {
    /// The route of a call on sets whose clouds have the sizes `a` and `b` ([`uniform_size`]);
    /// `None` when no pair takes the matrix-product path.
    pub fn new(a: &[Option<usize>], b: &[Option<usize>], p: f64) -> Option<Self> {
        if p != 2.0 || a.len().saturating_mul(b.len()) < GEMM_MIN_PAIRS {
            return None;
        }
        let mut sizes: Vec<usize> = b.iter().flatten().copied().collect();
        sizes.sort_unstable();
        let (mut n, mut best) = (0usize, 0usize);
        for run in sizes.chunk_by(|x, y| x == y) {
            if run.len() >= best {
                (n, best) = (run[0], run.len());
            }
        }
        let pick = |s: &[Option<usize>]| -> Vec<usize> {
            (0..s.len()).filter(|&c| s[c] == Some(n)).collect()
        };
        let (rows, cols) = (pick(a), pick(b));
        (!rows.is_empty() || !cols.is_empty()).then_some(Self {
            n,
            rows,
            cols,
            len_a: a.len(),
            len_b: b.len(),
        })
    }

    /// The route of `cdist(a, b)` with order `p`.
    pub fn of<T: Real>(a: &CloudsView<'_, T>, b: &CloudsView<'_, T>, p: f64) -> Option<Self> {
        Self::new(&size_list(a), &size_list(b), p)
    }

    /// Number of pairs on the matrix-product path: those with a routed cloud on either side.
    pub fn pairs(&self) -> usize {
        let unrouted = (self.len_a - self.rows.len()) * (self.len_b - self.cols.len());
        self.len_a * self.len_b - unrouted
    }

    /// Whether every pair takes the matrix-product path.
    pub fn is_total(&self) -> bool {
        self.rows.len() == self.len_a || self.cols.len() == self.len_b
    }
}

/// [`uniform_size`] of every cloud of `s`.
fn size_list<T: Real>(s: &CloudsView<'_, T>) -> Vec<Option<usize>> {
    (0..s.len()).map(|c| uniform_size(s.weights(c))).collect()
}

/// Whether each of `n` clouds is in the increasing list `set`.
fn mask(n: usize, set: &[usize]) -> Vec<bool> {
    let mut m = vec![false; n];
    for &c in set {
        m[c] = true;
    }
    m
}

/// `SW_p` between every cloud of `a` and every cloud of `b`, row-major `(len(a), len(b))`.
///
/// The pairs of the [`Route`] (`p = 2`, a uniform cloud of the routed size on either side) are
/// one matrix product of quantile embeddings plus Jensen gaps, computed in blocks of
/// [`quantile::GEMM_ROWS`] rows of the output; every other pair is one merge per direction. A
/// pair's value does not depend on the thread count, and a merged pair's value depends on its
/// two clouds only. When `a` and `b` are the same set (the same arrays) each merged pair is
/// computed once and mirrored (the merge is exactly symmetric).
///
/// # Errors
/// Invalid `p`, dimension mismatches, or an interrupt.
pub fn cdist<T: Real>(
    a: &CloudsView<'_, T>,
    b: &CloudsView<'_, T>,
    proj: &Projections<'_, T>,
    p: f64,
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    check_p(p)?;
    check_same_dim(a, b)?;
    let (na, nb) = (a.len(), b.len());
    let same = a.same_as(b);
    let what = format!("a {na} x {nb} distance matrix");
    let len = checked_len(na, nb, "B", &what)?;
    if let Some(route) = Route::of(a, b, p) {
        return routed_cdist(a, b, &route, proj, same, exec);
    }
    // One allocation for both sets (B's clouds after A's): see [`Sorted::joint`].
    let part = |clouds, name| Part {
        clouds,
        name,
        subset: None,
    };
    let (s, off) = if same {
        (Sorted::new(a, "A", proj, exec)?, 0)
    } else {
        (
            Sorted::joint(&[part(a, "A"), part(b, "B")], proj, exec)?,
            na,
        )
    };
    let mut out = try_vec(len, 0.0f64, "B", &what)?;
    with_cost!(T, p, |cost| {
        fill_matrix(
            &mut out,
            nb,
            TILE_ROWS,
            same,
            exec,
            |_, _| {},
            |_, _| true,
            |tile, values| {
                let tile: Vec<(usize, usize)> = tile.iter().map(|&(i, j)| (i, off + j)).collect();
                s.distances(&tile, cost, values);
            },
        )
    })?;
    Ok(out)
}

/// [`cdist`] along a route: every pair by matrix product (embeddings with `route.n` levels and
/// Jensen gaps), then the pairs of two unrouted clouds merged over it.
fn routed_cdist<T: Real>(
    a: &CloudsView<'_, T>,
    b: &CloudsView<'_, T>,
    route: &Route,
    proj: &Projections<'_, T>,
    same: bool,
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    let (na, nb) = (a.len(), b.len());
    let ea = quantile::Embedder::new(a, "A", proj, route.n, 2.0)?
        .with_gaps()
        .by_level();
    let eb = quantile::Embedder::new(b, "B", proj, route.n, 2.0)?
        .with_gaps()
        .by_level();
    let (e, gaps) = eb.all_with_gaps(exec)?;
    let cols = quantile::GramColumns::with_gaps(e, gaps, eb.width(), exec)?;
    if route.is_total() {
        return quantile::euclidean_cdist(&ea, &cols, exec);
    }
    cols.probe_blocks(quantile::GEMM_ROWS.min(na), exec.threads())?;
    let (in_rows, in_cols) = (mask(na, &route.rows), mask(nb, &route.cols));
    // Sorted projections of the unrouted clouds only: they alone meet the merge.
    let unrouted =
        |routed: &[bool]| -> Vec<usize> { (0..routed.len()).filter(|&c| !routed[c]).collect() };
    let need_a = unrouted(&in_rows);
    let pos_a = positions(na, &need_a, 0);
    let part = |clouds, name, subset| Part {
        clouds,
        name,
        subset: Some(subset),
    };
    // One allocation for both sides (see [`Sorted::joint`]); B's clouds after A's.
    let (s, pos_b) = if same {
        (Sorted::joint(&[part(a, "A", &need_a)], proj, exec)?, None)
    } else {
        let need_b = unrouted(&in_cols);
        let s = Sorted::joint(&[part(a, "A", &need_a), part(b, "B", &need_b)], proj, exec)?;
        (s, Some(positions(nb, &need_b, need_a.len())))
    };
    let pos_b = pos_b.as_ref().unwrap_or(&pos_a);
    let what = format!("a {na} x {nb} distance matrix");
    let mut out = try_vec(checked_len(na, nb, "B", &what)?, 0.0f64, "B", &what)?;
    fill_matrix(
        &mut out,
        nb,
        quantile::GEMM_ROWS,
        same,
        exec,
        |i0, rows| {
            let idx: Vec<usize> = (i0..i0 + rows.len() / nb).collect();
            cols.distances(&ea, &idx, rows);
        },
        |i, j| !in_rows[i] && !in_cols[j],
        |tile, values| {
            let tile: Vec<(usize, usize)> =
                tile.iter().map(|&(i, j)| (pos_a[i], pos_b[j])).collect();
            s.distances(&tile, P2, values);
        },
    )?;
    Ok(out)
}

/// Position of each cloud in `subset` (in order) plus `offset`, `usize::MAX` for the others.
fn positions(n: usize, subset: &[usize], offset: usize) -> Vec<usize> {
    let mut pos = vec![usize::MAX; n];
    for (k, &c) in subset.iter().enumerate() {
        pos[c] = offset + k;
    }
    pos
}

/// Fills the row-major `(len / nb, nb)` matrix `out` in parallel chunks of `chunk_rows` rows
/// (boundaries fixed by the sizes, so results are the same for any thread count): first
/// `block(i0, rows)` on the chunk starting at row `i0`, then `pairs(list, values)` on the
/// pairs `(i, j)` with `merged(i, j)` of each tile of the chunk's rows by [`TILE_COLS`]
/// columns, which writes one value per pair. With `symmetric` (`A` is `B`, square) only the
/// merged pairs with `j >= i` are computed; the others are copied from `(j, i)`.
fn fill_matrix(
    out: &mut [f64],
    nb: usize,
    chunk_rows: usize,
    symmetric: bool,
    exec: &Executor<'_>,
    block: impl Fn(usize, &mut [f64]) + Sync,
    merged: impl Fn(usize, usize) -> bool + Sync,
    pairs: impl Fn(&[(usize, usize)], &mut [f64]) + Sync,
) -> Result<()> {
    if nb == 0 {
        return Ok(());
    }
    exec.fill(out, chunk_rows * nb, |start, rows| {
        let i0 = start / nb;
        let n_rows = rows.len() / nb;
        block(i0, rows);
        let (mut tile, mut values) = (Vec::new(), Vec::new());
        for j0 in (0..nb).step_by(TILE_COLS) {
            tile.clear();
            for i in i0..i0 + n_rows {
                let lo = if symmetric { j0.max(i) } else { j0 };
                tile.extend(
                    (lo..(j0 + TILE_COLS).min(nb))
                        .filter(|&j| merged(i, j))
                        .map(|j| (i, j)),
                );
            }
            values.resize(tile.len(), 0.0);
            pairs(&tile, &mut values);
            for (&(i, j), &v) in tile.iter().zip(&values) {
                rows[(i - i0) * nb + j] = v;
            }
        }
    })?;
    if symmetric {
        // Lower triangle from the upper one, in square tiles (cache-friendly transposition).
        const T: usize = 64;
        let n = nb;
        for i0 in (0..n).step_by(T) {
            for j0 in (0..=i0).step_by(T) {
                for i in i0..(i0 + T).min(n) {
                    for j in j0..(j0 + T).min(i) {
                        if merged(i, j) {
                            out[i * n + j] = out[j * n + i];
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `SW_p` between all pairs `i < j` of `a`, condensed in `scipy.spatial.distance.pdist` order.
///
/// With `p = 2` and at least [`GEMM_MIN_PAIRS`] pairs, the pairs with a routed cloud ([`Route`]
/// of `a` with itself) are one matrix product, as in [`cdist`], and only the pairs of two
/// unrouted clouds are merged.
///
/// # Errors
/// Invalid `p`, or an interrupt.
pub fn pdist<T: Real>(
    a: &CloudsView<'_, T>,
    proj: &Projections<'_, T>,
    p: f64,
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    check_p(p)?;
    let n = a.len();
    let total = condensed_len(n);
    let route = (total >= GEMM_MIN_PAIRS)
        .then(|| Route::of(a, a, p))
        .flatten();
    let Some(route) = route else {
        let sa = Sorted::new(a, "A", proj, exec)?;
        return with_cost!(T, p, |cost| merged_pdist(&sa, cost, exec));
    };
    let embedder = quantile::Embedder::new(a, "A", proj, route.n, 2.0)?
        .with_gaps()
        .by_level();
    let (e, gaps) = embedder.all_with_gaps(exec)?;
    let mut out = quantile::euclidean_pdist(e, embedder.width(), &gaps, exec)?;
    // The pairs of two unrouted clouds, merged over the products.
    let routed = mask(n, &route.rows);
    let need: Vec<usize> = (0..n).filter(|&c| !routed[c]).collect();
    if need.len() >= 2 {
        let s = Sorted::new_subset(a, "A", &need, proj, exec)?;
        let mut merged = merged_pdist(&s, P2, exec)?.into_iter();
        for (i, &ci) in need.iter().enumerate() {
            for &cj in &need[i + 1..] {
                out[condensed_index(n, ci, cj)] = merged.next().expect("one per pair");
            }
        }
    }
    Ok(out)
}

/// `SW_p` between all pairs `i < j` of the clouds of `s`, condensed, each by merge.
fn merged_pdist<T: Real, C: Cost<T>>(
    s: &Sorted<T>,
    cost: C,
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    let n = s.len();
    let total = condensed_len(n);
    let mut out = try_vec(total, 0.0f64, "A", &format!("{total} distances"))?;
    let rows = condensed_rows(&mut out, n, TILE_ROWS);
    exec.each(rows, |_, (i0, piece)| {
        let i1 = (i0 + TILE_ROWS).min(n);
        let (mut tile, mut values) = (Vec::new(), Vec::new());
        for j0 in (i0 + 1..n).step_by(TILE_COLS) {
            tile.clear();
            for i in i0..i1 {
                tile.extend(((i + 1).max(j0)..(j0 + TILE_COLS).min(n)).map(|j| (i, j)));
            }
            values.resize(tile.len(), 0.0);
            s.distances(&tile, cost, &mut values);
            for (&(i, j), &v) in tile.iter().zip(&values) {
                // Row i of the piece holds the pairs (i, i + 1 ..).
                let row = condensed_row_start(n, i) - condensed_row_start(n, i0);
                piece[row + j - i - 1] = v;
            }
        }
    })?;
    Ok(out)
}

/// `SW_p` for the given `(K, 2)` pairs (row-major) of indices into `a` and `b`.
///
/// # Errors
/// Invalid `p`, out-of-range pairs, dimension mismatch, or an interrupt.
pub fn pairs<T: Real>(
    a: &CloudsView<'_, T>,
    b: &CloudsView<'_, T>,
    pairs: &[i64],
    proj: &Projections<'_, T>,
    p: f64,
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    check_p(p)?;
    check_same_dim(a, b)?;
    check_pairs(pairs, a.len(), b.len())?;
    // Only the clouds that appear in some pair are prepared.
    let (sub_a, map_a) = used(pairs, 0, a.len());
    let (sub_b, map_b) = used(pairs, 1, b.len());
    let part = |clouds, name, subset| Part {
        clouds,
        name,
        subset: Some(subset),
    };
    // One allocation for both sides (see [`Sorted::joint`]); B's clouds after A's.
    let s = Sorted::joint(&[part(a, "A", &sub_a), part(b, "B", &sub_b)], proj, exec)?;
    let off = sub_a.len();
    let k = pairs.len() / 2;
    let mut out = try_vec(k, 0.0f64, "pairs", &format!("{k} distances"))?;
    with_cost!(T, p, |cost| {
        exec.fill(&mut out, 64, |start, piece| {
            let tile: Vec<(usize, usize)> = (start..start + piece.len())
                .map(|q| {
                    let i = map_a[pairs[2 * q] as usize];
                    (i, off + map_b[pairs[2 * q + 1] as usize])
                })
                .collect();
            s.distances(&tile, cost, piece);
        })
    })?;
    Ok(out)
}

/// The clouds used on one side of `pairs`, and a map from cloud index to position among them.
fn used(pairs: &[i64], side: usize, n: usize) -> (Vec<usize>, Vec<usize>) {
    let mut pos = vec![usize::MAX; n];
    let mut list = Vec::new();
    for pair in pairs.chunks_exact(2) {
        let c = pair[side] as usize;
        if pos[c] == usize::MAX {
            pos[c] = list.len();
            list.push(c);
        }
    }
    (list, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections::random_directions;
    use crate::wasserstein1d::wasserstein_1d_pow;
    use proptest::prelude::*;

    fn clouds_from(list: &[(Vec<f64>, Vec<f64>)], d: usize) -> (Vec<f64>, Vec<f64>, Vec<i64>) {
        let mut pts = Vec::new();
        let mut w = Vec::new();
        let mut offs = vec![0i64];
        for (p, ww) in list {
            pts.extend_from_slice(p);
            w.extend_from_slice(ww);
            offs.push(w.len() as i64);
        }
        let _ = d;
        (pts, w, offs)
    }

    /// Reference: project each pair explicitly and use the 1-D function.
    fn reference(
        x: &[f64],
        a: &[f64],
        y: &[f64],
        b: &[f64],
        d: usize,
        proj: &[f64],
        l: usize,
        p: f64,
    ) -> f64 {
        let mut s = 0.0;
        for dir in 0..l {
            let px: Vec<f64> = x
                .chunks(d)
                .map(|r| (0..d).map(|k| r[k] * proj[k * l + dir]).sum())
                .collect();
            let py: Vec<f64> = y
                .chunks(d)
                .map(|r| (0..d).map(|k| r[k] * proj[k * l + dir]).sum())
                .collect();
            s += wasserstein_1d_pow(&px, &py, Some(a), Some(b), p).unwrap();
        }
        (s / l as f64).powf(1.0 / p)
    }

    fn cloud_strategy(d: usize) -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
        (1usize..7).prop_flat_map(move |n| {
            (
                prop::collection::vec(-3.0f64..3.0, n * d),
                prop::collection::vec(0.05f64..2.0, n),
            )
        })
    }

    proptest! {
        #[test]
        fn cdist_matches_reference(
            ca in prop::collection::vec(cloud_strategy(3), 1..5),
            cb in prop::collection::vec(cloud_strategy(3), 1..5),
            p in prop::sample::select(vec![1.0f64, 2.0, 2.5]),
            seed in 0u64..1000,
        ) {
            let d = 3;
            let l = 6;
            let proj = random_directions(d, l, seed).unwrap();
            let (pa, wa, oa) = clouds_from(&ca, d);
            let (pb, wb, ob) = clouds_from(&cb, d);
            let a = CloudsView::new("A", &pa, d, &wa, &oa).unwrap();
            let b = CloudsView::new("B", &pb, d, &wb, &ob).unwrap();
            let pr = Projections::new(&proj, d, l).unwrap();
            let ex = Executor::new(Some(2)).unwrap();
            let got = cdist(&a, &b, &pr, p, &ex).unwrap();
            for i in 0..ca.len() {
                for j in 0..cb.len() {
                    let want = reference(&ca[i].0, &ca[i].1, &cb[j].0, &cb[j].1, d, &proj, l, p);
                    let g = got[i * cb.len() + j];
                    prop_assert!((g - want).abs() <= 1e-9 * (1.0 + want), "{} vs {}", g, want);
                }
            }
            // Symmetry and zero self-distance through pdist/cdist on the same set.
            let aa = cdist(&a, &a, &pr, p, &ex).unwrap();
            for i in 0..ca.len() {
                prop_assert!(aa[i * ca.len() + i].abs() < 1e-12);
                for j in 0..ca.len() {
                    prop_assert!((aa[i * ca.len() + j] - aa[j * ca.len() + i]).abs() < 1e-12);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn invariant_to_point_order_and_weight_scale(
            (x, w) in cloud_strategy(3),
            (y, v) in cloud_strategy(3),
            scale in 0.01f64..100.0,
            rot in 0usize..7,
        ) {
            let d = 3;
            let proj = random_directions(d, 5, 1).unwrap();
            let pr = Projections::new(&proj, d, 5).unwrap();
            let n = w.len();
            let r = rot % n;
            // Rotate the points (a permutation) and rescale the weights of the first cloud.
            let xr: Vec<f64> = (0..n).flat_map(|k| x[((k + r) % n) * d..((k + r) % n + 1) * d].to_vec()).collect();
            let wr: Vec<f64> = (0..n).map(|k| w[(k + r) % n] * scale).collect();
            let ex = Executor::sequential();
            let dist = |px: &[f64], pw: &[f64]| {
                let (oa, ob) = ([0, pw.len() as i64], [0, v.len() as i64]);
                let a = CloudsView::new("A", px, d, pw, &oa).unwrap();
                let b = CloudsView::new("B", &y, d, &v, &ob).unwrap();
                cdist(&a, &b, &pr, 2.0, &ex).unwrap()[0]
            };
            let base = dist(&x, &w);
            let moved = dist(&xr, &wr);
            prop_assert!((base - moved).abs() <= 1e-7 * (1.0 + base), "{} vs {}", base, moved);
        }
    }

    proptest! {
        #[test]
        fn scaled_form_matches_plain_form(
            (x, w) in cloud_strategy(3),
            (y, v) in cloud_strategy(3),
            p in prop::sample::select(vec![1.0f64, 2.0, 3.5]),
        ) {
            let d = 3;
            let proj = random_directions(d, 6, 5).unwrap();
            let pr = Projections::new(&proj, d, 6).unwrap();
            let ex = Executor::sequential();
            let (ox, oy) = ([0, w.len() as i64], [0, v.len() as i64]);
            let a = CloudsView::new("A", &x, d, &w, &ox).unwrap();
            let b = CloudsView::new("B", &y, d, &v, &oy).unwrap();
            let (sa, sb) = (Sorted::new(&a, "A", &pr, &ex).unwrap(), Sorted::new(&b, "B", &pr, &ex).unwrap());
            let plain = cdist(&a, &b, &pr, p, &ex).unwrap()[0];
            let scaled = sa.scaled_distance(0, &sb, 0, p);
            prop_assert!((plain - scaled).abs() <= 1e-9 * (1.0 + plain), "{} vs {}", plain, scaled);
        }
    }

    /// A set of `count` clouds in `d = 2`: mostly `n` uniform points; `kinds[c] % 4` makes
    /// cloud `c` ragged (fewer points), weighted, or of another uniform size. Values on a
    /// coarse grid, so that ties and duplicates are common.
    fn mixed(count: usize, n: usize, kinds: &[u8], salt: usize) -> (Vec<f64>, Vec<f64>, Vec<i64>) {
        let mut list = Vec::new();
        for c in 0..count {
            let kind = kinds[c % kinds.len()] % 4;
            let m = match kind {
                1 => 1 + (c + salt) % n.max(2).saturating_sub(1).max(1),
                3 => n + 1 + c % 2,
                _ => n,
            };
            let pts: Vec<f64> = (0..m * 2)
                .map(|k| ((k * 7 + c * 13 + salt * 3) % 11) as f64 * 0.5 - 2.0)
                .collect();
            let w: Vec<f64> = (0..m)
                .map(|k| {
                    if kind == 2 {
                        1.0 + ((k + c) % 3) as f64
                    } else {
                        1.0
                    }
                })
                .collect();
            list.push((pts, w));
        }
        clouds_from(&list, 2)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn routed_cdist_equals_all_merge(
            kinds_a in prop::collection::vec(0u8..12, 1..20),
            kinds_b in prop::collection::vec(0u8..12, 1..20),
            n in 1usize..6,
            na in 64usize..90,
            nb in 64usize..80,
            threads in 1usize..4,
        ) {
            let (pa, wa, oa) = mixed(na, n, &kinds_a, 0);
            let (pb, wb, ob) = mixed(nb, n, &kinds_b, 5);
            let a = CloudsView::new("A", &pa, 2, &wa, &oa).unwrap();
            let b = CloudsView::new("B", &pb, 2, &wb, &ob).unwrap();
            let proj = random_directions(2, 5, 3).unwrap();
            let pr = Projections::new(&proj, 2, 5).unwrap();
            let ex = Executor::new(Some(threads)).unwrap();
            let got = cdist(&a, &b, &pr, 2.0, &ex).unwrap();
            let all: Vec<i64> = (0..na as i64).flat_map(|i| (0..nb as i64).flat_map(move |j| [i, j])).collect();
            let want = pairs(&a, &b, &all, &pr, 2.0, &ex).unwrap();
            let route = Route::of(&a, &b, 2.0);
            // A routed cloud on either side: matrix product plus Jensen gap; else merged.
            let routed = |i: usize, j: usize| route.as_ref().is_some_and(|r| r.rows.contains(&i) || r.cols.contains(&j));
            for i in 0..na {
                for j in 0..nb {
                    let (g, w) = (got[i * nb + j], want[i * nb + j]);
                    if routed(i, j) {
                        prop_assert!((g - w).abs() <= 1e-7 * (1.0 + w), "({}, {}): {} vs {}", i, j, g, w);
                    } else {
                        prop_assert_eq!(g.to_bits(), w.to_bits(), "({}, {})", i, j);
                    }
                }
            }
            // One thread, and row stripes at multiples of GEMM_ROWS: the same bits.
            let one = cdist(&a, &b, &pr, 2.0, &Executor::sequential()).unwrap();
            prop_assert_eq!(&one, &got);
            // The same set: each merged pair once, mirrored; equal to the two-sided values.
            let same = cdist(&a, &a, &pr, 2.0, &ex).unwrap();
            let (pc, wc, oc) = (pa.clone(), wa.clone(), oa.clone());
            let copy = CloudsView::new("B", &pc, 2, &wc, &oc).unwrap();
            let two_sided = cdist(&a, &copy, &pr, 2.0, &ex).unwrap();
            prop_assert_eq!(&same, &two_sided);
        }
    }

    /// A cloud of `n` points in `d` dimensions on a coarse grid (ties and duplicate values in
    /// every direction), with weights from a few levels (ties of cumulative weights), or all
    /// equal when `uniform`.
    fn grid_cloud(n: usize, d: usize, salt: u64, uniform: bool) -> (Vec<f32>, Vec<f32>) {
        let mut state = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pts = (0..n * d)
            .map(|_| (next() % 7) as f32 * 0.5 - 1.5)
            .collect();
        let w = (0..n)
            .map(|_| {
                if uniform {
                    1.0
                } else {
                    [0.25f32, 1.0, 1.0, 3.0][(next() % 4) as usize]
                }
            })
            .collect();
        (pts, w)
    }

    #[test]
    fn simd_kernel_is_present_where_the_cpu_has_one() {
        // The bit-equality test below is vacuous without a kernel: make sure CI machines
        // (x86_64 with AVX2 or AVX-512, aarch64 with NEON, under qemu too) run it.
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::arch::is_x86_feature_detected!("avx512f");
            let avx2 = std::arch::is_x86_feature_detected!("avx2");
            assert_eq!(simd::supported().contains(&simd::Kernel::Avx512), avx512);
            assert_eq!(simd::supported().contains(&simd::Kernel::Avx2), avx2);
            if std::env::var_os("SEMOT_SIMD").is_none() && (avx2 || avx512) {
                assert_eq!(Some(&simd::kernel()), simd::available().first());
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon")
            && std::env::var_os("SEMOT_SIMD").is_none()
        {
            assert_eq!(simd::kernel(), simd::Kernel::Neon);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn simd_merge_has_the_scalar_bits(
            n in 1usize..40,
            m in 1usize..40,
            n_dirs in 1usize..72,
            p in prop::sample::select(vec![1.0f64, 2.0]),
            uniform in prop::sample::select(vec![(false, false), (true, false), (true, true)]),
            salt in 0u64..1_000_000,
        ) {
            let d = 3;
            let (px, wx) = grid_cloud(n, d, salt, uniform.0);
            let (py, wy) = grid_cloud(m, d, salt + 1, uniform.1);
            let (ox, oy) = ([0, n as i64], [0, m as i64]);
            let a = CloudsView::new("A", &px, d, &wx, &ox).unwrap();
            let b = CloudsView::new("B", &py, d, &wy, &oy).unwrap();
            let proj = random_directions(d, n_dirs, salt).unwrap();
            let proj: Vec<f32> = proj.iter().map(|&v| v as f32).collect();
            let pr = Projections::new(&proj, d, n_dirs).unwrap();
            let ex = Executor::sequential();
            let part = |clouds, name| Part { clouds, name, subset: None };
            let s = Sorted::joint(&[part(&a, "A"), part(&b, "B")], &pr, &ex).unwrap();
            let (x, y) = (s.block(0), s.block(1));
            with_cost!(f32, p, |cost| {
                // The dispatching merge (SIMD groups, then scalar) against the scalar merge, for
                // one pair alone and in a tile with others. Uniform clouds of one size take
                // the aligned difference instead (other bits).
                let want = merge_dirs(cost, x, n, y, m, 0, n_dirs, 0.0);
                let back = merge_dirs(cost, y, m, x, n, 0, n_dirs, 0.0);
                let tile = [(0, 1), (1, 1), (1, 0), (0, 0)];
                let mut got = [f64::NAN; 4];
                s.pair_sums(&tile, cost, &mut got);
                if !(n == m && uniform.0 && uniform.1) {
                    prop_assert_eq!(s.pair_sum(0, 1, cost).to_bits(), want.to_bits());
                    prop_assert_eq!(got[0].to_bits(), want.to_bits(), "{} vs {}", got[0], want);
                    prop_assert_eq!(got[2].to_bits(), back.to_bits(), "{} vs {}", got[2], back);
                }
                for (k, &(i, j)) in tile.iter().enumerate() {
                    prop_assert_eq!(got[k].to_bits(), s.pair_sum(i, j, cost).to_bits());
                }
                // Every kernel of this CPU against the scalar lanes, direction by direction,
                // on every multiple of the block size (all the vectors-in-flight widths).
                let kind = Cost::<f32>::kind(cost);
                let blocked = n_dirs - n_dirs % simd::BLOCK;
                for kernel in simd::supported() {
                    for dirs in (simd::BLOCK..=blocked).step_by(simd::BLOCK) {
                        let mut sums = vec![f32::NAN; dirs];
                        let ok = simd::merge_f32_joint(kernel, kind, &s.data, s.base[0], n, s.base[1], m, &mut sums);
                        prop_assert!(ok, "{:?}", kernel);
                        for (l, &v) in sums.iter().enumerate() {
                            let one = merge_dirs(cost, x, n, y, m, l, l + 1, 0.0) as f32;
                            prop_assert_eq!(v.to_bits(), one.to_bits(), "{:?} direction {}", kernel, l);
                        }
                    }
                }
                Ok::<(), TestCaseError>(())
            })?;
        }
    }

    #[test]
    fn simd_merge_declines_what_it_cannot_do() {
        let x = vec![[0.5f32, 0.0]; simd::BLOCK * 6];
        let sq = simd::CostKind::Square;
        let mut out = [0.0f32; simd::BLOCK];
        for k in simd::supported() {
            let call = |cost, xo, n, yo, m, out: &mut [f32]| {
                simd::merge_f32_joint(k, cost, &x, xo, n, yo, m, out)
            };
            // Another order, blocks past the end, offsets that overflow, empty clouds, and
            // direction counts that are not a positive multiple of the block: the caller's
            // scalar merge.
            assert!(!call(simd::CostKind::Other, 0, 2, 48, 2, &mut out));
            assert!(!call(sq, 0, 2, 49, 2, &mut out));
            assert!(!call(sq, usize::MAX, 2, 0, 2, &mut out));
            assert!(!call(sq, 0, 0, 48, 2, &mut out));
            assert!(!call(sq, 0, 2, 48, 2, &mut out[..0]));
            assert!(!call(sq, 0, 2, 48, 2, &mut out[..8]));
            assert!(!call(sq, 0, 2, 0, 2, &mut [0.0f32; 3 * simd::BLOCK]));
            assert!(call(sq, 0, 2, 48, 2, &mut out), "{k:?}");
            assert!(!out.contains(&f32::NAN));
        }
        assert!(!simd::merge_f32_joint(
            simd::Kernel::Scalar,
            sq,
            &x,
            0,
            2,
            48,
            2,
            &mut out
        ));
    }

    #[test]
    fn route_picks_the_most_common_uniform_size_of_b() {
        let b: Vec<Option<usize>> = [vec![Some(5); 40], vec![Some(7); 30], vec![None; 50]].concat();
        let a: Vec<Option<usize>> = [vec![Some(7); 50], vec![Some(5); 20], vec![None; 3]].concat();
        let r = Route::new(&a, &b, 2.0).unwrap();
        assert_eq!((r.n, r.rows.len(), r.cols.len()), (5, 20, 40));
        assert_eq!(r.rows[0], 50);
        // Every pair but those of an unrouted cloud of A (53) and one of B (80).
        assert_eq!(r.pairs(), 73 * 120 - 53 * 80);
        assert!(!r.is_total());
        assert!(Route::new(&a, &b, 1.0).is_none());
        // Ties go to the larger size; no uniform cloud of that size in A: only B's routed
        // clouds, against every cloud of A.
        let tie: Vec<Option<usize>> = [vec![Some(5); 40], vec![Some(9); 40]].concat();
        assert_eq!(Route::new(&tie, &tie, 2.0).unwrap().n, 9);
        let r = Route::new(&a, &tie, 2.0).unwrap();
        assert!(r.rows.is_empty() && r.cols.len() == 40);
        assert_eq!(r.pairs(), 73 * 40);
        // No uniform cloud in B: no route, whatever A holds.
        assert!(Route::new(&a, &[None; 100], 2.0).is_none());
        // Below GEMM_MIN_PAIRS pairs: no route.
        assert!(Route::new(&a[..10], &b[..10], 2.0).is_none());
    }

    #[test]
    fn threads_do_not_change_results() {
        let d = 5;
        let l = 9;
        let mut list = Vec::new();
        for c in 0..23 {
            let n = 3 + c % 5;
            let p: Vec<f64> = (0..n * d)
                .map(|k| ((k * 7 + c * 13) % 17) as f64 * 0.3 - 2.0)
                .collect();
            let w: Vec<f64> = (0..n).map(|k| 1.0 + ((k + c) % 3) as f64).collect();
            list.push((p, w));
        }
        let (pa, wa, oa) = clouds_from(&list, d);
        let a = CloudsView::new("A", &pa, d, &wa, &oa).unwrap();
        let proj = random_directions(d, l, 7).unwrap();
        let pr = Projections::new(&proj, d, l).unwrap();
        let one = pdist(&a, &pr, 2.0, &Executor::new(Some(1)).unwrap()).unwrap();
        let three = pdist(&a, &pr, 2.0, &Executor::new(Some(3)).unwrap()).unwrap();
        assert_eq!(one, three);
        let c = cdist(&a, &a, &pr, 2.0, &Executor::new(Some(3)).unwrap()).unwrap();
        let n = list.len();
        let mut k = 0;
        for i in 0..n {
            for j in (i + 1)..n {
                assert_eq!(c[i * n + j], one[k]);
                k += 1;
            }
        }
    }
}
