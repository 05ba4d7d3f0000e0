//! Quantile embeddings of sliced measures, and all-pairs distances between embeddings.
//!
//! For `L` directions and `Q` levels, cloud `μ` is mapped to the vector
//! `E(μ)[l·Q + q] = s · Q ∫_{q/Q}^{(q+1)/Q} F_l⁻¹(t) dt`, the average of the quantile function of
//! `θ_l#μ` over the `q`-th of `Q` equal bins, scaled by `s = (L·Q)^(−1/p)`. Then
//! `‖E(μ) − E(ν)‖_p^p = (1/L) Σ_l (1/Q) Σ_q |F̄_{l,q} − Ḡ_{l,q}|^p`, a Riemann sum of
//! `SW_p^p = (1/L) Σ_l ∫₀¹ |F_l⁻¹ − G_l⁻¹|^p dt`.
//!
//! By Jensen's inequality on each bin the embedding distance never exceeds `SW_p`, and it is
//! exact when every quantile function is constant on every bin: uniform weights with `n` a
//! divisor of `Q`... in particular `Q = n` for clouds of `n` equally weighted points. For `p = 2`
//! the all-pairs matrix is one matrix product: `‖e_a − e_b‖² = ‖e_a‖² + ‖e_b‖² − 2⟨e_a, e_b⟩`,
//! computed on centred embeddings, with pairs that lost digits to cancellation recomputed
//! directly (see [`Real::CANCELLATION`]).
//!
//! For `p = 2` the loss in Jensen's inequality is known exactly: per direction
//! `∫₀¹ (F⁻¹ − G⁻¹)² = (1/Q) Σ_q (F̄_q − Ḡ_q)² + Σ_q ∫_{bin q} (F⁻¹ − F̄_q)²` whenever `G⁻¹` is
//! constant on every bin (the cross term of each bin vanishes). With `Q = n` that holds for every
//! uniform cloud `ν` of `n` points, so `SW_2²(μ, ν) = ‖E(μ) − E(ν)‖² + J(μ)` exactly for *any*
//! `μ`, where the Jensen gap `J(μ) = (1/L) Σ_l Σ_q ∫_{bin q} (F_l⁻¹ − F̄_{l,q})²` is one number
//! per cloud ([`Embedder::with_gaps`]). That keeps every pair with one such uniform cloud on the
//! matrix-product path of the exact distance ([`crate::sliced::cdist`]).

use crate::clouds::CloudsView;
use crate::error::{checked_len, try_vec, try_with_capacity, Error, Result};
use crate::float::Real;
use crate::pairs::{condensed_len, condensed_rows};
use crate::parallel::Executor;
use crate::projections::Projections;
use crate::sorting;
use crate::wasserstein1d::check_p;

/// Clouds embedded per chunk of work, and the most projected together.
const EMBED_CHUNK: usize = 16;
/// The most points projected by one matrix product when embedding.
const RUN_POINTS: usize = 4096;
/// Output rows per matrix-product block of [`euclidean_cdist`] and [`euclidean_pdist`]. Fixed,
/// so results do not depend on the thread count. Part of the contract with the Python package,
/// exported as `semot._core.GEMM_ROWS`: the distributed driver starts its row stripes at
/// multiples of it, so that every block, hence every rounding, is the one of a
/// single-process call. 256 rather than 128: each block streams all the columns' embeddings
/// through the product once, and halving the blocks made the 8192 × 8192 cdist (Q = 32,
/// L = 128) 1.2× faster on 2 Zen 4 cores; 512 gained nothing more.
pub const GEMM_ROWS: usize = 256;
/// Width of the tiles of the two transposes: the columns of a transposed product block read per
/// pass over its rows (a tile of `(tile, r)` entries stays in cache while the output is
/// written row by row), and the directions per pass of [`transpose_scaled`].
const TRANSPOSE_TILE: usize = 32;

/// Computes quantile embeddings of the clouds of one set, on demand.
#[derive(Debug, Clone, Copy)]
pub struct Embedder<'a, T> {
    clouds: &'a CloudsView<'a, T>,
    proj: &'a Projections<'a, T>,
    n_quantiles: usize,
    scale: f64,
    gaps: bool,
    by_level: bool,
}

/// Buffers reused across the clouds one thread embeds, and the sorting network of the last
/// cloud size seen.
#[derive(Debug)]
struct Scratch<T> {
    pairs: Vec<(T, T)>,
    /// The weights of the projections `(n, L)`, permuted with them by the sort.
    weights: Vec<T>,
    network: (usize, Vec<(u32, u32)>),
    /// Bin means `(Q, L)` and per-direction Jensen terms of [`Embedder::embed_equal_bins`].
    means: Vec<f64>,
    jensen: Vec<f64>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            pairs: Vec::new(),
            weights: Vec::new(),
            network: (0, Vec::new()),
            means: Vec::new(),
            jensen: Vec::new(),
        }
    }
}

impl<'a, T: Real> Embedder<'a, T> {
    /// Checks the parameters; `name` names the set in errors.
    ///
    /// # Errors
    /// Invalid `p` or `n_quantiles`, or a dimension mismatch.
    pub fn new(
        clouds: &'a CloudsView<'a, T>,
        name: &str,
        proj: &'a Projections<'a, T>,
        n_quantiles: usize,
        p: f64,
    ) -> Result<Self> {
        check_p(p)?;
        if n_quantiles == 0 {
            return Err(Error::arg("n_quantiles", "must be >= 1"));
        }
        proj.check_dim(name, clouds.dim())?;
        let what = format!("embeddings of {} x {n_quantiles} quantiles", proj.len());
        let width = checked_len(proj.len(), n_quantiles, "n_quantiles", &what)?;
        checked_len(width, clouds.len(), "n_quantiles", &what)?;
        let scale = (width as f64).powf(-1.0 / p);
        Ok(Self {
            clouds,
            proj,
            n_quantiles,
            scale,
            gaps: false,
            by_level: false,
        })
    }

    /// The same embedder, with the entries of an embedding ordered level by level,
    /// `E[q·L + l]`, instead of `E[l·Q + q]`: the same vector up to a fixed permutation of its
    /// coordinates, which no distance between embeddings sees, and the order the sorting
    /// network leaves the projections in, so that uniform clouds need no transpose. For the
    /// all-pairs paths; [`embedding`] returns the documented order.
    pub fn by_level(self) -> Self {
        Self {
            by_level: true,
            ..self
        }
    }

    /// The same embedder, also computing each cloud's Jensen gap `J` (see the module
    /// documentation) wherever embeddings are computed with their gaps
    /// ([`Embedder::rows_with_gaps`]); without it the gaps are zero. Meaningful for `p = 2`.
    pub fn with_gaps(self) -> Self {
        Self { gaps: true, ..self }
    }

    /// Length `L * Q` of one embedding.
    pub fn width(&self) -> usize {
        self.proj.len() * self.n_quantiles
    }

    /// Number of clouds.
    pub fn len(&self) -> usize {
        self.clouds.len()
    }

    /// Whether there are no clouds.
    pub fn is_empty(&self) -> bool {
        self.clouds.is_empty()
    }

    /// Embeds the clouds `clouds` (in that order) into `out` (row-major), on this thread, and
    /// writes each one's Jensen gap to `gaps` (zero unless [`Embedder::with_gaps`]).
    ///
    /// Runs of consecutive clouds (their points are contiguous) are projected by one matrix
    /// product, so the projection matrix is packed once per run rather than once per cloud.
    pub fn rows_with_gaps(&self, clouds: &[usize], out: &mut [T], gaps: &mut [f64]) {
        let mut scratch = Scratch::default();
        let width = self.width();
        let mut k = 0;
        while k < clouds.len() {
            // A run: consecutive clouds, at most EMBED_CHUNK of them and RUN_POINTS points
            // (one cloud at least), which bounds the projection buffer.
            let mut end = k + 1;
            let mut points = self.clouds.size(clouds[k]);
            while end < clouds.len()
                && end - k < EMBED_CHUNK
                && clouds[end] == clouds[end - 1] + 1
                && points + self.clouds.size(clouds[end]) <= RUN_POINTS
            {
                points += self.clouds.size(clouds[end]);
                end += 1;
            }
            let (first, last) = (clouds[k], clouds[end - 1]);
            let (lo, _) = self.clouds.range(first);
            let (_, hi) = self.clouds.range(last);
            // Points of clouds first..=last, rows lo..hi of the set.
            let block = self.clouds.point_rows(lo, hi);
            let mut projected = self.proj.project_points(block);
            let data = projected
                .as_slice_mut()
                .expect("a fresh projection is contiguous");
            let n_dirs = self.proj.len();
            for q in k..end {
                let c = clouds[q];
                let (a, b) = self.clouds.range(c);
                let by_point = &mut data[(a - lo) * n_dirs..(b - lo) * n_dirs];
                gaps[q] = self.embed(
                    c,
                    by_point,
                    &mut out[q * width..(q + 1) * width],
                    &mut scratch,
                );
            }
            k = end;
        }
    }

    /// The embedding of cloud `c`, written to `row` (length [`Embedder::width`]), from its
    /// projections `by_point` (row-major `(n, L)`, sorted in place here); returns its Jensen
    /// gap when [`Embedder::with_gaps`], else zero.
    ///
    /// Every direction is sorted at once by a comparator network while the cloud is small
    /// enough (the weights travel with the values), else direction by direction; the bins are
    /// then integrated row by row, every direction at once ([`bin_averages`]).
    fn embed(&self, c: usize, by_point: &mut [T], row: &mut [T], scratch: &mut Scratch<T>) -> f64 {
        let q_levels = self.n_quantiles;
        let Scratch {
            pairs,
            weights,
            network,
            means,
            jensen,
        } = scratch;
        let w = self.clouds.weights(c);
        let n = w.len();
        let n_dirs = self.proj.len();
        let uniform = w.iter().all(|&x| x == w[0]);
        if !uniform {
            weights.clear();
            for &wi in w {
                weights.extend(std::iter::repeat_n(wi, n_dirs));
            }
        }
        if (2..=sorting::MAX_NETWORK_LEN).contains(&n) {
            if network.0 != n {
                *network = (n, sorting::batcher(n));
            }
            if uniform {
                sorting::sort_columns(by_point, n_dirs, &network.1);
            } else {
                sorting::sort_columns_by_key(by_point, weights, n_dirs, &network.1);
            }
        } else if n > 1 {
            for l in 0..n_dirs {
                pairs.clear();
                pairs.extend((0..n).map(|i| {
                    let k = i * n_dirs + l;
                    (by_point[k], if uniform { T::one() } else { weights[k] })
                }));
                pairs.sort_unstable_by(|a: &(T, T), b| a.0.total_cmp(&b.0));
                for (i, &(v, wi)) in pairs.iter().enumerate() {
                    by_point[i * n_dirs + l] = v;
                    if !uniform {
                        weights[i * n_dirs + l] = wi;
                    }
                }
            }
        }
        if uniform && n.is_multiple_of(q_levels) {
            return self.embed_equal_bins(by_point, row, means, jensen);
        }
        // Equal weights count as ones, whatever their value.
        let total = if uniform {
            n as f64
        } else {
            w.iter().map(|x| x.to_f64()).sum()
        };
        let weights = (!uniform).then_some(&weights[..]);
        let gap = bin_averages(
            by_point, weights, total, n_dirs, q_levels, means, jensen, self.gaps,
        );
        self.write_means(means, row);
        gap
    }

    /// Writes the bin means `means (Q, L)` (row-major), times the scale, to the embedding
    /// `row` in this embedder's order.
    fn write_means(&self, means: &[f64], row: &mut [T]) {
        if self.by_level {
            for (e, &m) in row.iter_mut().zip(means.iter()) {
                *e = T::from_f64(m * self.scale);
            }
        } else {
            transpose_scaled(means, self.proj.len(), self.scale, row);
        }
    }

    /// [`Embedder::embed`] for `n` equally weighted points sorted in every direction
    /// (`by_point` row-major `(n, L)`, row `i` the `i`-th smallest value of each direction)
    /// when `Q` divides `n`: bin `q` holds points `qk .. (q+1)k` of mass `1/n` each, `k = n/Q`,
    /// so its average is their mean and its Jensen term `(1/n) Σ (x − mean)²`. Computed row by
    /// row, every direction at once, in `f64`; for `k = 1` the embedding is the scaled values.
    fn embed_equal_bins(
        &self,
        by_point: &[T],
        row: &mut [T],
        means: &mut Vec<f64>,
        jensen: &mut Vec<f64>,
    ) -> f64 {
        let (q_levels, n_dirs) = (self.n_quantiles, self.proj.len());
        let per_bin = by_point.len() / (n_dirs * q_levels);
        // The bin means `(Q, L)`, row by row, every direction at once.
        means.clear();
        means.resize(q_levels * n_dirs, 0.0);
        let bins = by_point.chunks_exact(per_bin * n_dirs);
        for (bin, mean) in bins.clone().zip(means.chunks_exact_mut(n_dirs)) {
            for point in bin.chunks_exact(n_dirs) {
                for (m, &v) in mean.iter_mut().zip(point) {
                    *m += v.to_f64();
                }
            }
            if per_bin > 1 {
                for m in mean.iter_mut() {
                    *m /= per_bin as f64;
                }
            }
        }
        self.write_means(means, row);
        if per_bin == 1 || !self.gaps {
            return 0.0;
        }
        jensen.clear();
        jensen.resize(n_dirs, 0.0);
        for (bin, mean) in bins.zip(means.chunks_exact(n_dirs)) {
            for point in bin.chunks_exact(n_dirs) {
                for ((j, &v), &m) in jensen.iter_mut().zip(point).zip(mean) {
                    let dev = v.to_f64() - m;
                    *j += dev * dev;
                }
            }
        }
        let n = (per_bin * q_levels) as f64;
        jensen.iter().sum::<f64>() / n / n_dirs as f64
    }

    /// The embeddings of the clouds `clouds` (in that order), row-major, computed in parallel.
    ///
    /// # Errors
    /// An interrupt, or a buffer that cannot be allocated.
    pub fn subset(&self, clouds: &[usize], exec: &Executor<'_>) -> Result<Vec<T>> {
        Ok(self.subset_with_gaps(clouds, exec)?.0)
    }

    /// [`Embedder::subset`] and the clouds' Jensen gaps (zero unless [`Embedder::with_gaps`]).
    ///
    /// # Errors
    /// As [`Embedder::subset`].
    pub fn subset_with_gaps(
        &self,
        clouds: &[usize],
        exec: &Executor<'_>,
    ) -> Result<(Vec<T>, Vec<f64>)> {
        let width = self.width();
        let what = format!(
            "{} embeddings of {} x {} quantiles",
            clouds.len(),
            self.proj.len(),
            self.n_quantiles
        );
        let len = checked_len(clouds.len(), width, "n_quantiles", &what)?;
        let mut out = try_vec(len, T::zero(), "n_quantiles", &what)?;
        let mut gaps = vec![0.0f64; clouds.len()];
        if width > 0 {
            let chunks: Vec<_> = out
                .chunks_mut(EMBED_CHUNK * width)
                .zip(gaps.chunks_mut(EMBED_CHUNK))
                .collect();
            exec.each(chunks, |k, (rows, g)| {
                let c0 = k * EMBED_CHUNK;
                self.rows_with_gaps(&clouds[c0..c0 + g.len()], rows, g);
            })?;
        }
        Ok((out, gaps))
    }

    /// Every embedding, row-major `(len, width)`, computed in parallel.
    ///
    /// # Errors
    /// An interrupt, or a buffer that cannot be allocated.
    pub fn all(&self, exec: &Executor<'_>) -> Result<Vec<T>> {
        Ok(self.all_with_gaps(exec)?.0)
    }

    /// Every embedding and every cloud's Jensen gap (see [`Embedder::subset_with_gaps`]).
    ///
    /// # Errors
    /// As [`Embedder::all`].
    pub fn all_with_gaps(&self, exec: &Executor<'_>) -> Result<(Vec<T>, Vec<f64>)> {
        let every: Vec<usize> = (0..self.len()).collect();
        self.subset_with_gaps(&every, exec)
    }
}

/// The quantile embedding of every cloud, row-major `(len(clouds), L * n_quantiles)`.
///
/// # Errors
/// Invalid `p` or `n_quantiles`, dimension mismatch, or an interrupt.
pub fn embedding<T: Real>(
    clouds: &CloudsView<'_, T>,
    name: &str,
    proj: &Projections<'_, T>,
    n_quantiles: usize,
    p: f64,
    exec: &Executor<'_>,
) -> Result<Vec<T>> {
    Embedder::new(clouds, name, proj, n_quantiles, p)?.all(exec)
}

/// `row[l·Q + q] = means[q·L + l] · scale` for `means (Q, L)` row-major: the transpose, by
/// tiles of [`TRANSPOSE_TILE`] directions, so that the lines written stay in L1 (a stride of
/// `Q` floats maps all of one pass's stores onto a few cache sets).
fn transpose_scaled<T: Real>(means: &[f64], n_dirs: usize, scale: f64, row: &mut [T]) {
    let q_levels = means.len() / n_dirs.max(1);
    for l0 in (0..n_dirs).step_by(TRANSPOSE_TILE) {
        let l1 = (l0 + TRANSPOSE_TILE).min(n_dirs);
        for (q, mean) in means.chunks_exact(n_dirs).enumerate() {
            for (l, &m) in mean.iter().enumerate().take(l1).skip(l0) {
                row[l * q_levels + q] = T::from_f64(m * scale);
            }
        }
    }
}

/// The averages of the quantile functions of `L` sorted weighted samples over `Q` equal bins
/// of `[0, 1]`. `sorted` is row-major `(n, L)`, each column sorted;
/// `weights` the same shape, the weight of each value (`None`: all equal), with `total` their
/// sum (of one column; `n` when equal). Writes `means (Q, L)`: `means[q·L + l] = Q ∫_{bin q}
/// F_l⁻¹(t) dt`. With `gap`, returns `(1/L) Σ_l Σ_q ∫_{bin q} (F_l⁻¹(t) − means[q·L + l])² dt`,
/// the loss of Jensen's inequality on the bins for `p = 2`, summed from non-negative terms
/// (no cancellation); else zero.
///
/// Point `i` of direction `l` holds the stretch `[u, v)` of `[0, Q]` (bin widths 1) after the
/// mass of the points before it; the last point ends at `Q`, whatever the rounding of the
/// cumulative sums. Values enter relative to each direction's middle value, which keeps the
/// sums of a bin small. The walk is [`for_each_piece`]; the gap needs the means, so a second
/// walk.
#[allow(clippy::too_many_arguments)]
fn bin_averages<T: Real>(
    sorted: &[T],
    weights: Option<&[T]>,
    total: f64,
    n_dirs: usize,
    q_levels: usize,
    means: &mut Vec<f64>,
    jensen: &mut Vec<f64>,
    gap: bool,
) -> f64 {
    let n = sorted.len() / n_dirs.max(1);
    let centre: Vec<f64> = sorted[(n / 2) * n_dirs..(n / 2 + 1) * n_dirs]
        .iter()
        .map(|v| v.to_f64())
        .collect();
    let unit = q_levels as f64 / total;
    // One extra row: bin `Q`, which only ever receives pieces of length zero (written without
    // a branch).
    means.clear();
    means.resize((q_levels + 1) * n_dirs, 0.0);
    // A direction's state is its sum over its current bin, stored on every piece: the last
    // store to a bin (the piece that closes it, or the last piece of all) leaves its whole
    // sum.
    for_each_piece(
        sorted,
        weights,
        &centre,
        unit,
        q_levels,
        |sum, bin, len, x, l, closes| {
            let s = sum + len * x;
            means[bin * n_dirs + l] = s;
            // A product, not a select: LLVM made the select a branch, taken at random (2x
            // slower on varied clouds). `s` is finite, so the product is exactly s or 0.
            s * f64::from(u8::from(!closes))
        },
        |_, _| {},
    );
    let mut out = 0.0;
    if gap {
        jensen.clear();
        jensen.resize(n_dirs, 0.0);
        let means = &means[..];
        for_each_piece(
            sorted,
            weights,
            &centre,
            unit,
            q_levels,
            |sum, bin, len, x, l, _| {
                let dev = x - means[bin * n_dirs + l];
                sum + len * dev * dev
            },
            |l, sum| jensen[l] = sum,
        );
        // Lengths in bin units are Q times those in [0, 1].
        out = jensen.iter().sum::<f64>() / q_levels as f64 / n_dirs as f64;
    }
    means.truncate(q_levels * n_dirs);
    for mean in means.chunks_exact_mut(n_dirs) {
        for (m, &c) in mean.iter_mut().zip(&centre) {
            *m += c;
        }
    }
    out
}

/// Calls `state = piece(state, bin, length, x, l, closes)` for every piece of a bin that
/// point `i` of direction `l` covers, in order, in bin units (bins `[q, q + 1)` of `[0, Q]`):
/// the inner loop of [`bin_averages`]. `x` is the point's value minus `centre[l]`; `closes`:
/// the piece reaches the end of its bin and no later piece falls in it (the last bin is never
/// closed: points of no mass may follow). `state` is one number per direction, zero at the
/// start, passed to `finish(l, state)` after the last point.
///
/// Point `i` covers `[u, v)`, `u` the mass before it times `unit = Q / total`,
/// `v = u + w·unit`, except that the last point ends at `Q`. A point that ends at most one bin
/// after the one it starts in gives two pieces (the second may be empty, and may lie in bin
/// `Q`, past the last); a wider one gives one per bin it touches. Direction by direction:
/// the state stays in registers, and nothing in the loop branches on the data but the rare
/// wide point.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn for_each_piece<T: Real>(
    sorted: &[T],
    weights: Option<&[T]>,
    centre: &[f64],
    unit: f64,
    q_levels: usize,
    mut piece: impl FnMut(f64, usize, f64, f64, usize, bool) -> f64,
    mut finish: impl FnMut(usize, f64),
) {
    let n_dirs = centre.len();
    let qf = q_levels as f64;
    for (l, &c) in centre.iter().enumerate() {
        let values = sorted.iter().skip(l).step_by(n_dirs);
        let masses = (0..).map(|i| weights.map_or(1.0, |w| w[i * n_dirs + l].to_f64()));
        let (mut u, mut b, mut e, mut state) = (0.0f64, 0usize, 1.0f64, 0.0f64);
        let count = sorted.len() / n_dirs;
        for (i, (&value, w)) in values.zip(masses).enumerate() {
            let x = value.to_f64() - c;
            let next = u + w * unit;
            // The last point ends at Q; no point past it (a comparison, not `f64::min`: no
            // NaN can arise, and it is one instruction).
            let v = if i + 1 == count || next > qf {
                qf
            } else {
                next
            };
            if v <= e + 1.0 {
                // The point reaches the end of its bin, and the walk moves to the next one
                // (the last bin stays open: points of no mass may still come).
                let moves = v >= e && b + 1 < q_levels;
                let first = if v < e { v } else { e } - u;
                state = piece(state, b, first, x, l, moves);
                let second = v - e;
                state = piece(
                    state,
                    b + 1,
                    if second > 0.0 { second } else { 0.0 },
                    x,
                    l,
                    false,
                );
                // Arithmetic, not a select: LLVM made `if moves { e + 1.0 }` a branch, taken
                // at random (2x slower).
                let moves = u8::from(moves);
                b += usize::from(moves);
                e += f64::from(moves);
            } else {
                (state, b) = wide_pieces(state, b, u, v, q_levels, x, l, &mut piece);
                e = (b + 1) as f64;
            }
            u = v;
        }
        finish(l, state);
    }
}

/// The pieces of a point over `[u, v)` that reaches past the bin after its first, `b`: one
/// per bin it touches. Returns the state and the bin the next point starts in.
#[cold]
#[allow(clippy::too_many_arguments)]
fn wide_pieces(
    state: f64,
    b: usize,
    u: f64,
    v: f64,
    q_levels: usize,
    x: f64,
    l: usize,
    piece: &mut impl FnMut(f64, usize, f64, f64, usize, bool) -> f64,
) -> (f64, usize) {
    // b + 2 < v <= Q: bin b is not the last.
    let mut state = piece(state, b, (b + 1) as f64 - u, x, l, true);
    let mut q = b + 1;
    while ((q + 1) as f64) <= v {
        state = piece(state, q, 1.0, x, l, q + 1 < q_levels);
        q += 1;
    }
    (
        piece(state, q, v - q as f64, x, l, false),
        q.min(q_levels - 1),
    )
}

/// Checks that `len` elements of `T` can be allocated (the buffers threads allocate inside
/// a parallel loop, where a failed allocation could only abort).
fn probe<T>(len: usize, name: &str, what: &str) -> Result<()> {
    drop(try_with_capacity::<T>(len, name, what)?);
    Ok(())
}

/// Rows per chunk of [`centre`]'s parallel passes. Fixed, so that the mean's rounding does not
/// depend on the thread count.
const CENTRE_ROWS: usize = 256;

/// Centres the rows of `m` (`width` columns) on their mean row, in place, on the threads of
/// `exec`; returns that mean and the squared norms of the centred rows. The mean is summed in
/// `f64`, chunk by chunk of [`CENTRE_ROWS`] rows, then over the chunks in order.
///
/// # Errors
/// An interrupt.
fn centre<T: Real>(m: &mut [T], width: usize, exec: &Executor<'_>) -> Result<(Vec<T>, Vec<f64>)> {
    if width == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let rows = m.len() / width;
    let chunk = CENTRE_ROWS * width;
    let shared: &[T] = m;
    let partial = exec.map(rows.div_ceil(CENTRE_ROWS), |c| {
        let mut sum = vec![0.0f64; width];
        for r in shared[c * chunk..shared.len().min((c + 1) * chunk)].chunks_exact(width) {
            for (s, &v) in sum.iter_mut().zip(r) {
                *s += v.to_f64();
            }
        }
        sum
    })?;
    let mut sum = vec![0.0f64; width];
    for p in &partial {
        for (s, &v) in sum.iter_mut().zip(p) {
            *s += v;
        }
    }
    let mean: Vec<T> = sum
        .iter()
        .map(|s| T::from_f64(s / rows.max(1) as f64))
        .collect();
    let mut norms = vec![0.0f64; rows];
    let items: Vec<_> = m
        .chunks_mut(chunk)
        .zip(norms.chunks_mut(CENTRE_ROWS))
        .collect();
    exec.each(items, |_, (block, norms)| {
        subtract(block, &mean);
        for (n, r) in norms.iter_mut().zip(block.chunks_exact(width)) {
            *n = sq_norm(r);
        }
    })?;
    Ok((mean, norms))
}

/// Subtracts `centre` from every row. Distances do not change; cancellation in the matrix
/// product path shrinks.
fn subtract<T: Real>(m: &mut [T], centre: &[T]) {
    for r in m.chunks_exact_mut(centre.len()) {
        for (v, &c) in r.iter_mut().zip(centre) {
            *v = *v - c;
        }
    }
}

fn sq_norms<T: Real>(e: &[T], width: usize) -> Vec<f64> {
    e.chunks_exact(width).map(sq_norm).collect()
}

/// `Σ v²` in `f64`, over eight interleaved partial sums: independent adds, which vectorise,
/// where one running sum would wait on every add (a fixed order all the same).
fn sq_norm<T: Real>(r: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = r.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v.to_f64() * v.to_f64();
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| v.to_f64() * v.to_f64())
        .sum();
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + tail
}

fn direct_sq<T: Real>(x: &[T], y: &[T]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| {
            let d = a.to_f64() - b.to_f64();
            d * d
        })
        .sum()
}

/// `‖x − y‖₂` from the differences, in a scaled form when the plain sum of squares
/// overflows or underflows `f64`.
fn direct_norm<T: Real>(x: &[T], y: &[T]) -> f64 {
    let d2 = direct_sq(x, y);
    if d2.is_finite() && d2 >= f64::SAFE_MIN {
        return d2.sqrt();
    }
    scaled_minkowski(x, y, 2.0)
}

/// `‖x − y‖_p` as `2H (Σ (|x/2 − y/2| / H)^p)^(1/p)` with `H = max |x/2 − y/2|`, which neither
/// overflows nor underflows.
fn scaled_minkowski<T: Real>(x: &[T], y: &[T], p: f64) -> f64 {
    let half = |a: T, b: T| (0.5 * a.to_f64() - 0.5 * b.to_f64()).abs();
    let h = x
        .iter()
        .zip(y)
        .fold(0.0f64, |acc, (&a, &b)| acc.max(half(a, b)));
    if h == 0.0 {
        return 0.0;
    }
    let s: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (half(a, b) / h).powf(p))
        .sum();
    2.0 * h * s.powf(1.0 / p)
}

/// Whether the squared distance `d2 = na + nb − 2g` from a Gram entry stands: not when
/// cancellation struck, when a norm or the product left the range of `T` or `f64`, or when
/// the norms are so small that their products may have underflowed in `T` (then the distance
/// is recomputed from the differences).
///
/// The tests are combined with `&`, not `&&`: no branches, so the loop over a row
/// vectorises (`d2 <= f64::MAX` also rejects NaN and infinities).
#[inline(always)]
#[allow(clippy::needless_bitwise_bool)] // measured: `&&` keeps the loop scalar
fn gram_is_exact<T: Real>(d2: f64, na: f64, nb: f64) -> bool {
    (d2 >= T::CANCELLATION * (na + nb))
        & (d2 <= f64::MAX)
        & (na.min(nb) >= T::SAFE_MIN)
        & (na.max(nb) <= T::MAX)
}

/// `sqrt(d² + gap)` for the embedding distance `d` and the pair's Jensen gap (see the module
/// documentation), as a `hypot` so that it cannot overflow; `d` itself when the gap is zero.
#[inline]
fn with_gap(d: f64, gap: f64) -> f64 {
    if gap > 0.0 {
        d.hypot(gap.sqrt())
    } else {
        d
    }
}

/// The column side of the matrix-product path: the embeddings of some clouds, centred on their
/// mean row, with their squared norms and Jensen gaps.
#[derive(Debug, Clone)]
pub struct GramColumns<T> {
    e: Vec<T>,
    centre: Vec<T>,
    norms: Vec<f64>,
    gaps: Vec<f64>,
    width: usize,
}

impl<T: Real> GramColumns<T> {
    /// Takes the embeddings `e` (row-major, `width` columns) and centres them in place, on
    /// the threads of `exec`.
    ///
    /// # Errors
    /// An interrupt.
    pub fn new(e: Vec<T>, width: usize, exec: &Executor<'_>) -> Result<Self> {
        let rows = e.len() / width.max(1);
        Self::with_gaps(e, vec![0.0; rows], width, exec)
    }

    /// [`GramColumns::new`], with the clouds' Jensen gaps: a distance is then
    /// `sqrt(‖e_a − e_b‖² + J_a + J_b)`, [`Embedder::with_gaps`] giving the rows' `J_a`.
    ///
    /// # Errors
    /// An interrupt.
    pub fn with_gaps(
        mut e: Vec<T>,
        gaps: Vec<f64>,
        width: usize,
        exec: &Executor<'_>,
    ) -> Result<Self> {
        let (centre, norms) = centre(&mut e, width, exec)?;
        debug_assert_eq!(gaps.len(), norms.len());
        Ok(Self {
            e,
            centre,
            norms,
            gaps,
            width,
        })
    }

    /// Number of columns (embedded clouds).
    pub fn len(&self) -> usize {
        self.norms.len()
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.norms.is_empty()
    }

    /// Checks that `threads` blocks of up to `rows` rows can be allocated (the buffers of
    /// [`GramColumns::distances`], allocated inside parallel loops).
    ///
    /// # Errors
    /// [`Error::Memory`] when they cannot.
    pub fn probe_blocks(&self, rows: usize, threads: usize) -> Result<()> {
        let block = rows.max(1) * (self.width + self.len());
        probe::<T>(
            checked_len(block, threads, "n_quantiles", "blocks of embeddings")?,
            "n_quantiles",
            "blocks of embeddings and their products",
        )
    }

    /// Euclidean distances between the embeddings of the clouds `rows` of `a` (computed here,
    /// on this thread, as one block) and every column, written to `out`, row-major
    /// `(len(rows), len(self))`. The rounding of a distance depends on the block: the same
    /// `rows` against the same columns always give the same bits.
    pub fn distances(&self, a: &Embedder<'_, T>, rows: &[usize], out: &mut [f64]) {
        let (width, r, nb) = (self.width, rows.len(), self.len());
        if r == 0 || nb == 0 {
            return;
        }
        let mut ea = vec![T::zero(); r * width];
        let mut gap_a = vec![0.0f64; r];
        a.rows_with_gaps(rows, &mut ea, &mut gap_a);
        subtract(&mut ea, &self.centre);
        let norm_a = sq_norms(&ea, width);
        // The product transposed, `(nb, r)`: with the long side as faer's column count its
        // kernels pack the short block, not all the columns once per block (1.4x faster at
        // 128 x 16384 x 4096 on one Zen 4 core).
        let mut g = vec![T::zero(); nb * r];
        T::gemm_nt(&self.e, &ea, &mut g, nb, r, width);
        let block = GramBlock {
            g: &g,
            r,
            e: &self.e,
            norms: &self.norms,
            gaps: &self.gaps,
            width,
        };
        for j0 in (0..nb).step_by(TRANSPOSE_TILE) {
            let j1 = (j0 + TRANSPOSE_TILE).min(nb);
            for k in 0..r {
                let row = Side {
                    k,
                    x: &ea[k * width..(k + 1) * width],
                    norm: norm_a[k],
                    gap: gap_a[k],
                };
                block.finish(&row, j0, &mut out[k * nb + j0..k * nb + j1]);
            }
        }
    }
}

/// A transposed product block `g (cols, r)` of centred embeddings, with the columns'
/// embeddings `e`, squared norms and Jensen gaps.
struct GramBlock<'a, T> {
    g: &'a [T],
    r: usize,
    e: &'a [T],
    norms: &'a [f64],
    gaps: &'a [f64],
    width: usize,
}

/// Row `k` of a [`GramBlock`]: its centred embedding `x`, squared norm and Jensen gap.
struct Side<'a, T> {
    k: usize,
    x: &'a [T],
    norm: f64,
    gap: f64,
}

impl<T: Real> GramBlock<'_, T> {
    /// The distances of `row` to the columns `j0 .. j0 + dst.len()`, into `dst`: first from
    /// the product, every entry alike (a loop that vectorises), then, only where some entry
    /// needs it, the direct recomputations (see [`gram_is_exact`]) and the Jensen gaps.
    fn finish(&self, row: &Side<'_, T>, j0: usize, dst: &mut [f64]) {
        let (na, r) = (row.norm, self.r);
        // The strided products first, then a pass over contiguous slices only.
        let column = self.g[j0 * r + row.k..].iter().step_by(r);
        for (o, &g) in dst.iter_mut().zip(column) {
            *o = g.to_f64();
        }
        let mut fix = false;
        let norms = &self.norms[j0..j0 + dst.len()];
        for (o, &nb) in dst.iter_mut().zip(norms) {
            let d2 = na + nb - 2.0 * *o;
            let ok = gram_is_exact::<T>(d2, na, nb);
            fix |= !ok;
            // A NaN marks the entries to recompute: a kept `d2` is finite and non-negative.
            *o = if ok { d2.sqrt() } else { f64::NAN };
        }
        let gaps = &self.gaps[j0..j0 + dst.len()];
        if !fix && row.gap <= 0.0 && gaps.iter().all(|&g| g <= 0.0) {
            return;
        }
        for (t, (o, &gap_b)) in dst.iter_mut().zip(gaps).enumerate() {
            let j = j0 + t;
            if o.is_nan() {
                *o = direct_norm(row.x, &self.e[j * self.width..(j + 1) * self.width]);
            }
            *o = with_gap(*o, row.gap + gap_b);
        }
    }
}

/// Euclidean distances between the embeddings of every cloud of `a` and the columns `cols`,
/// row-major `(len(a), len(cols))` (with Jensen gaps where `a` and `cols` have them:
/// [`GramColumns::with_gaps`]).
///
/// Only the columns are held in full: the embeddings of `a` are computed block by block inside
/// the parallel loop (blocks of [`GEMM_ROWS`] rows), so the extra memory is one embedding
/// matrix plus a block per thread.
///
/// # Errors
/// An interrupt.
pub fn euclidean_cdist<T: Real>(
    a: &Embedder<'_, T>,
    cols: &GramColumns<T>,
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    let (na, nb) = (a.len(), cols.len());
    let what = format!("a {na} x {nb} distance matrix");
    let mut out = try_vec(checked_len(na, nb, "B", &what)?, 0.0f64, "B", &what)?;
    if nb == 0 {
        return Ok(out);
    }
    // The blocks each thread allocates inside the loop, checked once up front.
    cols.probe_blocks(GEMM_ROWS.min(na.max(1)), exec.threads())?;
    exec.fill(&mut out, GEMM_ROWS * nb, |start, rows| {
        let i0 = start / nb;
        let idx: Vec<usize> = (i0..i0 + rows.len() / nb).collect();
        cols.distances(a, &idx, rows);
    })?;
    Ok(out)
}

/// Euclidean distances between all pairs of rows `i < j` of `e`, in `pdist` order, each with
/// the pair's Jensen gaps `gaps[i] + gaps[j]` (see [`GramColumns::with_gaps`]; `gaps` empty:
/// none). The embedding is centred in place.
///
/// # Errors
/// An interrupt.
pub fn euclidean_pdist<T: Real>(
    mut e: Vec<T>,
    width: usize,
    gaps: &[f64],
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    let (_, norms) = centre(&mut e, width, exec)?;
    let n = e.len() / width;
    let no_gaps;
    let gaps = if gaps.is_empty() {
        no_gaps = vec![0.0f64; n];
        &no_gaps
    } else {
        gaps
    };
    let total = condensed_len(n);
    let mut out = try_vec(total, 0.0f64, "A", &format!("{total} distances"))?;
    let block = GEMM_ROWS.min(n.max(1)) * n;
    probe::<T>(
        checked_len(block, exec.threads(), "A", "blocks of products")?,
        "A",
        "blocks of products of embeddings",
    )?;
    let pieces = condensed_rows(&mut out, n, GEMM_ROWS);
    exec.each(pieces, |_, (i0, piece)| {
        let i1 = (i0 + GEMM_ROWS).min(n);
        let r = i1 - i0;
        let cols = n - i0;
        // Transposed, `(cols, r)`, as in [`GramColumns::distances`].
        let mut g = vec![T::zero(); cols * r];
        T::gemm_nt(
            &e[i0 * width..],
            &e[i0 * width..i1 * width],
            &mut g,
            cols,
            r,
            width,
        );
        let block = GramBlock {
            g: &g,
            r,
            e: &e[i0 * width..],
            norms: &norms[i0..],
            gaps: &gaps[i0..],
            width,
        };
        // Row i's pairs (i, j > i) start at `start[i - i0]` in the piece.
        let mut start = Vec::with_capacity(r);
        let mut k = 0;
        for i in i0..i1 {
            start.push(k);
            k += n - i - 1;
        }
        for c0 in (0..cols).step_by(TRANSPOSE_TILE) {
            let c1 = (c0 + TRANSPOSE_TILE).min(cols);
            for (ri, i) in (i0..i1).enumerate() {
                // Columns c > ri only (pairs j = i0 + c > i).
                let from = c0.max(ri + 1);
                if from >= c1 {
                    continue;
                }
                let row = Side {
                    k: ri,
                    x: &e[i * width..(i + 1) * width],
                    norm: norms[i],
                    gap: gaps[i],
                };
                let at = start[ri] + (from - ri - 1);
                block.finish(&row, from, &mut piece[at..at + (c1 - from)]);
            }
        }
    })?;
    Ok(out)
}

/// `(Σ_k |x_k − y_k|^p)^(1/p)`, accumulated in `f64` (in a scaled form when the plain sum
/// overflows or underflows).
fn minkowski<T: Real>(x: &[T], y: &[T], p: f64) -> f64 {
    let plain = if p == 1.0 {
        x.iter().zip(y).map(|(&a, &b)| (a - b).abs().to_f64()).sum()
    } else if p == 2.0 {
        direct_sq(x, y)
    } else {
        x.iter()
            .zip(y)
            .map(|(&a, &b)| (a.to_f64() - b.to_f64()).abs().powf(p))
            .sum::<f64>()
    };
    if !(plain.is_finite() && plain >= f64::SAFE_MIN) {
        scaled_minkowski(x, y, p)
    } else if p == 1.0 {
        plain
    } else if p == 2.0 {
        plain.sqrt()
    } else {
        plain.powf(1.0 / p)
    }
}

/// Minkowski-`p` distances between the embeddings of `a` and of `b`; `p = 2` uses the
/// matrix-product path.
///
/// # Errors
/// Invalid `p`, or an interrupt.
pub fn minkowski_cdist<T: Real>(
    a: &Embedder<'_, T>,
    b: &Embedder<'_, T>,
    p: f64,
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    check_p(p)?;
    let eb = b.all(exec)?;
    if p == 2.0 {
        return euclidean_cdist(a, &GramColumns::new(eb, a.width(), exec)?, exec);
    }
    let ea = a.all(exec)?;
    let width = a.width();
    let (na, nb) = (a.len(), b.len());
    let what = format!("a {na} x {nb} distance matrix");
    let mut out = try_vec(checked_len(na, nb, "B", &what)?, 0.0f64, "B", &what)?;
    if nb == 0 {
        return Ok(out);
    }
    exec.fill(&mut out, 16 * nb, |start, rows| {
        for (k, v) in rows.iter_mut().enumerate() {
            let (i, j) = ((start + k) / nb, (start + k) % nb);
            *v = minkowski(
                &ea[i * width..(i + 1) * width],
                &eb[j * width..(j + 1) * width],
                p,
            );
        }
    })?;
    Ok(out)
}

/// Minkowski-`p` distances between all pairs of rows of `e`, in `pdist` order.
///
/// # Errors
/// Invalid `p`, or an interrupt.
pub fn minkowski_pdist<T: Real>(
    e: Vec<T>,
    width: usize,
    p: f64,
    exec: &Executor<'_>,
) -> Result<Vec<f64>> {
    check_p(p)?;
    if p == 2.0 {
        return euclidean_pdist(e, width, &[], exec);
    }
    let n = e.len() / width;
    let total = condensed_len(n);
    let mut out = try_vec(total, 0.0f64, "A", &format!("{total} distances"))?;
    let pieces = condensed_rows(&mut out, n, 16);
    exec.each(pieces, |_, (i0, piece)| {
        let mut k = 0;
        for i in i0..(i0 + 16).min(n) {
            for j in (i + 1)..n {
                piece[k] = minkowski(
                    &e[i * width..(i + 1) * width],
                    &e[j * width..(j + 1) * width],
                    p,
                );
                k += 1;
            }
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasserstein1d::wasserstein_1d_pow;
    use proptest::prelude::*;

    /// Dimension and number of directions of [`Fixture`].
    const DIM: usize = 3;
    const DIRS: usize = 5;

    /// Clouds of the sizes `sizes` in dimension [`DIM`], values on a coarse grid (ties within
    /// and across directions), weights all equal or all unequal, and [`DIRS`] random
    /// directions.
    struct Fixture {
        points: Vec<f64>,
        weights: Vec<f64>,
        offsets: Vec<i64>,
        dirs: Vec<f64>,
    }

    fn fixture(sizes: &[usize], uniform: bool, seed: u64) -> Fixture {
        let total: usize = sizes.iter().sum();
        let mut rng = crate::projections::Xoshiro256pp::new(seed);
        let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let points = (0..total * DIM)
            .map(|_| (unit() * 8.0).floor() - 4.0)
            .collect();
        // Equal weights of any value (not only ones), or unequal ones.
        let equal = 0.125 + unit();
        let weights = (0..total)
            .map(|_| if uniform { equal } else { 0.25 + unit() })
            .collect();
        let mut offsets = vec![0i64];
        for &n in sizes {
            offsets.push(offsets.last().copied().unwrap_or(0) + n as i64);
        }
        let dirs = crate::projections::random_directions(DIM, DIRS, seed).unwrap();
        Fixture {
            points,
            weights,
            offsets,
            dirs,
        }
    }

    /// Embeddings and gaps of the clouds of `f` with `n_quantiles` levels, direction-major
    /// and level-major.
    fn both_layouts(f: &Fixture, n_quantiles: usize) -> [(Vec<f64>, Vec<f64>); 2] {
        let clouds = CloudsView::new("A", &f.points, DIM, &f.weights, &f.offsets).unwrap();
        let proj = Projections::new(&f.dirs, DIM, DIRS).unwrap();
        let ex = Executor::new(Some(2)).unwrap();
        let e = Embedder::new(&clouds, "A", &proj, n_quantiles, 2.0)
            .unwrap()
            .with_gaps();
        [
            e.all_with_gaps(&ex).unwrap(),
            e.by_level().all_with_gaps(&ex).unwrap(),
        ]
    }

    /// The bin averages and Jensen sum of one sorted weighted sample, written plainly: the
    /// overlap of every point's stretch of `[0, 1]` with every bin, `O(n·Q)`.
    fn brute_bins(pairs: &[(f64, f64)], q_levels: usize) -> (Vec<f64>, f64) {
        let total: f64 = pairs.iter().map(|p| p.1).sum();
        let mut ends = Vec::new();
        let mut acc = 0.0;
        for &(_, w) in pairs {
            acc += w;
            ends.push(acc / total);
        }
        *ends.last_mut().unwrap() = 1.0;
        let overlap = |k: usize, q: usize| {
            let (lo, hi) = (if k == 0 { 0.0 } else { ends[k - 1] }, ends[k]);
            let (a, b) = (q as f64 / q_levels as f64, (q + 1) as f64 / q_levels as f64);
            (hi.min(b) - lo.max(a)).max(0.0)
        };
        let qf = q_levels as f64;
        let avg: Vec<f64> = (0..q_levels)
            .map(|q| {
                (0..pairs.len())
                    .map(|k| overlap(k, q) * pairs[k].0)
                    .sum::<f64>()
                    * qf
            })
            .collect();
        let gap = (0..q_levels)
            .map(|q| {
                (0..pairs.len())
                    .map(|k| overlap(k, q) * (pairs[k].0 - avg[q]).powi(2))
                    .sum::<f64>()
            })
            .sum();
        (avg, gap)
    }

    /// [`bin_averages`] of the single sorted sample `pairs` (one direction).
    fn bins_of(pairs: &[(f64, f64)], q_levels: usize) -> (Vec<f64>, f64) {
        let (x, w): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let total = w.iter().sum();
        let (mut means, mut jensen) = (Vec::new(), Vec::new());
        let gap = bin_averages(
            &x,
            Some(&w),
            total,
            1,
            q_levels,
            &mut means,
            &mut jensen,
            true,
        );
        (means, gap)
    }

    proptest! {
        /// A level-major embedding is the direction-major one with its coordinates permuted,
        /// bit for bit, with the same gaps, on every path of [`Embedder::embed`].
        #[test]
        fn level_major_is_a_permutation(
            sizes in prop::collection::vec(1usize..40, 1..5),
            uniform in any::<bool>(),
            n_quantiles in 1usize..9,
            seed in any::<u64>(),
        ) {
            let [(by_dir, gaps), (by_level, gaps_level)] =
                both_layouts(&fixture(&sizes, uniform, seed), n_quantiles);
            let (n_dirs, q) = (DIRS, n_quantiles);
            prop_assert_eq!(gaps, gaps_level);
            for (row_d, row_l) in by_dir.chunks_exact(n_dirs * q).zip(by_level.chunks_exact(n_dirs * q)) {
                for l in 0..n_dirs {
                    for k in 0..q {
                        prop_assert_eq!(row_d[l * q + k].to_bits(), row_l[k * n_dirs + l].to_bits());
                    }
                }
            }
        }

        /// Embeddings and gaps of every path of [`Embedder::embed`] (equal bins; the network
        /// with and without weights; direction by direction beyond
        /// [`sorting::MAX_NETWORK_LEN`]) against [`brute_bins`] of the same cloud, projected
        /// and sorted here.
        #[test]
        fn embeddings_match_the_plain_bin_integrals(
            n in prop_oneof![1usize..40, (sorting::MAX_NETWORK_LEN - 2)..(sorting::MAX_NETWORK_LEN + 3)],
            uniform in any::<bool>(),
            n_quantiles in 1usize..9,
            seed in any::<u64>(),
        ) {
            let f = fixture(&[n], uniform, seed);
            let [(e, gaps), _] = both_layouts(&f, n_quantiles);
            let (dim, n_dirs, points, dirs) = (DIM, DIRS, &f.points, &f.dirs);
            let scale = ((n_dirs * n_quantiles) as f64).powf(-0.5);
            let mut want_gap = 0.0;
            for l in 0..n_dirs {
                let mut vals: Vec<(f64, f64)> = (0..n)
                    .map(|i| ((0..dim).map(|c| points[i * dim + c] * dirs[c * n_dirs + l]).sum(), f.weights[i]))
                    .collect();
                vals.sort_by(|a, b| a.0.total_cmp(&b.0));
                let (avg, gap) = brute_bins(&vals, n_quantiles);
                want_gap += gap;
                for (k, &a) in avg.iter().enumerate() {
                    let got = e[l * n_quantiles + k];
                    let a = a * scale;
                    prop_assert!((got - a).abs() <= 1e-12 * (1.0 + a.abs()), "{} vs {}", got, a);
                }
            }
            want_gap /= n_dirs as f64;
            prop_assert!((gaps[0] - want_gap).abs() <= 1e-12 * (1.0 + want_gap), "{} vs {}", gaps[0], want_gap);
        }

        /// [`bin_averages`] against [`brute_bins`] on one sample with heavy points (a point
        /// may cover many bins), zero weights, ties and mass ends on bin edges.
        #[test]
        fn bin_averages_match_the_plain_integrals(
            mu in prop::collection::vec((-5.0f64..5.0, prop_oneof![0.0f64..0.05, 0.01f64..3.0, Just(1.0), Just(0.0)]), 1..30),
            q_levels in 1usize..20,
        ) {
            let mut mu = mu;
            mu.sort_by(|a, b| a.0.total_cmp(&b.0));
            prop_assume!(mu.iter().map(|p| p.1).sum::<f64>() > 0.0);
            let (want, want_gap) = brute_bins(&mu, q_levels);
            let (got, gap) = bins_of(&mu, q_levels);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-9 * (1.0 + w.abs()), "{:?} vs {:?}", got, want);
            }
            prop_assert!(gap >= 0.0);
            prop_assert!((gap - want_gap).abs() <= 1e-9 * (1.0 + want_gap), "{} vs {}", gap, want_gap);
        }

        /// `W_2²(μ, ν) = (1/Q) Σ_q (F̄_q − y_q)² + gap(μ)` for every uniform `ν` of `Q` points,
        /// against the plain one-dimensional merge: the identity the routed exact path uses.
        #[test]
        fn jensen_gap_closes_the_bin_average_distance(
            mu in prop::collection::vec((-5.0f64..5.0, 0.01f64..3.0), 1..12),
            ys in prop::collection::vec(-5.0f64..5.0, 1..10),
            ties in 0usize..3,
        ) {
            let mut mu = mu;
            // Repeated values and weights that put mass ends on bin edges.
            for k in 0..ties.min(mu.len() - 1) {
                mu[k + 1].0 = mu[k].0;
                mu[k].1 = 1.0;
            }
            mu.sort_by(|a, b| a.0.total_cmp(&b.0));
            let q = ys.len();
            let (avg, gap) = bins_of(&mu, q);
            prop_assert!(gap >= 0.0);
            let (x, w): (Vec<f64>, Vec<f64>) = mu.iter().copied().unzip();
            let want = wasserstein_1d_pow(&x, &ys, Some(&w), None, 2.0).unwrap();
            let mut y = ys.clone();
            y.sort_by(f64::total_cmp);
            let embedded: f64 = avg.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
                / q as f64;
            let got = embedded + gap;
            prop_assert!((got - want).abs() <= 1e-9 * (1.0 + want), "{} vs {}", got, want);
        }
    }

    #[test]
    fn bin_averages_of_small_samples() {
        let pairs = [(1.0f64, 1.0), (2.0, 1.0), (5.0, 1.0), (7.0, 1.0)];
        let (four, _) = bins_of(&pairs, 4);
        for (d, want) in four.iter().zip([1.0, 2.0, 5.0, 7.0]) {
            assert!((d - want).abs() < 1e-12, "{four:?}");
        }
        let (two, _) = bins_of(&pairs, 2);
        assert!(
            (two[0] - 1.5).abs() < 1e-12 && (two[1] - 6.0).abs() < 1e-12,
            "{two:?}"
        );
        // Weighted: mass 0.75 at 0 and 0.25 at 4; bins of 1/2: [0, 2].
        let (two, _) = bins_of(&[(0.0f64, 3.0), (4.0, 1.0)], 2);
        assert!(
            (two[0]).abs() < 1e-12 && (two[1] - 2.0).abs() < 1e-12,
            "{two:?}"
        );
        // Mass that ends exactly at the end, then a point of no mass: the last bin keeps
        // its sum.
        let (two, _) = bins_of(&[(1.0f64, 1.0), (2.0, 1.0), (3.0, 0.0)], 2);
        assert_eq!(two, [1.0, 2.0]);
        let (two, _) = bins_of(&[(1.0f64, 1.0), (2.0, 2.0), (3.0, 0.0), (4.0, 0.0)], 2);
        assert!(
            (two[0] - 4.0 / 3.0).abs() < 1e-12 && (two[1] - 2.0).abs() < 1e-12,
            "{two:?}"
        );
        // One point over three bins, then one over the last.
        let (three, gap) = bins_of(&[(1.0f64, 3.0), (4.0, 1.0)], 4);
        assert_eq!(three, [1.0, 1.0, 1.0, 4.0]);
        assert_eq!(gap, 0.0);
    }

    /// [`centre`] against a plain mean, and the same bits for any thread count: sizes around
    /// the chunk of [`CENTRE_ROWS`] rows.
    #[test]
    fn centring_is_the_mean_for_any_thread_count() {
        let width = 3;
        for rows in [0, 1, CENTRE_ROWS - 1, CENTRE_ROWS, 3 * CENTRE_ROWS + 5] {
            let m: Vec<f32> = (0..rows * width)
                .map(|k| ((k * 37) % 101) as f32 * 0.37 - 9.0)
                .collect();
            let runs: Vec<(Vec<f32>, Vec<f32>, Vec<f64>)> = [1, 2, 3]
                .iter()
                .map(|&t| {
                    let mut c = m.clone();
                    let (mean, norms) =
                        centre(&mut c, width, &Executor::new(Some(t)).unwrap()).unwrap();
                    (c, mean, norms)
                })
                .collect();
            for run in &runs[1..] {
                assert_eq!(run, &runs[0], "rows = {rows}");
            }
            let (c, mean, norms) = &runs[0];
            for (col, &got) in mean.iter().enumerate() {
                let want = (0..rows)
                    .map(|r| f64::from(m[r * width + col]))
                    .sum::<f64>()
                    / rows.max(1) as f64;
                assert!((f64::from(got) - want).abs() <= 1e-6 * (1.0 + want.abs()));
            }
            for (r, &n) in norms.iter().enumerate() {
                let row = &c[r * width..(r + 1) * width];
                let want: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                assert!((n - want).abs() <= 1e-12 * (1.0 + want));
                for (col, &v) in row.iter().enumerate() {
                    assert_eq!(v, m[r * width + col] - mean[col]);
                }
            }
        }
    }

    #[test]
    fn gram_path_matches_direct() {
        let width = 7;
        let ea: Vec<f64> = (0..5 * width)
            .map(|k| ((k * 31) % 11) as f64 + 100.0)
            .collect();
        let eb: Vec<f64> = (0..300 * width)
            .map(|k| ((k * 17) % 13) as f64 + 100.0)
            .collect();
        let ex = Executor::new(Some(2)).unwrap();
        let mut eb_c = eb.clone();
        let (mean, nb) = centre(&mut eb_c, width, &ex).unwrap();
        let mut ea_c = ea.clone();
        subtract(&mut ea_c, &mean);
        let na: Vec<f64> = sq_norms(&ea_c, width);
        let mut g = vec![0.0; 300 * 5];
        f64::gemm_nt(&eb_c, &ea_c, &mut g, 300, 5, width);
        let gaps = vec![0.0; 300];
        let block = GramBlock {
            g: &g,
            r: 5,
            e: &eb_c,
            norms: &nb,
            gaps: &gaps,
            width,
        };
        let mut got = vec![0.0; 5 * 300];
        for (k, dst) in got.chunks_exact_mut(300).enumerate() {
            let row = Side {
                k,
                x: &ea_c[k * width..(k + 1) * width],
                norm: na[k],
                gap: 0.0,
            };
            // Uneven pieces, as the tiles of a block.
            let (left, right) = dst.split_at_mut(37);
            block.finish(&row, 0, left);
            block.finish(&row, 37, right);
        }
        for i in 0..5 {
            for j in 0..300 {
                let want = direct_sq(
                    &ea[i * width..(i + 1) * width],
                    &eb[j * width..(j + 1) * width],
                )
                .sqrt();
                assert!((got[i * 300 + j] - want).abs() <= 1e-9 * (1.0 + want));
            }
        }
        let pd = euclidean_pdist(eb.clone(), width, &[], &ex).unwrap();
        let mut k = 0;
        for i in 0..300 {
            for j in (i + 1)..300 {
                let want = direct_sq(
                    &eb[i * width..(i + 1) * width],
                    &eb[j * width..(j + 1) * width],
                )
                .sqrt();
                assert!((pd[k] - want).abs() <= 1e-9 * (1.0 + want));
                k += 1;
            }
        }
    }
}
