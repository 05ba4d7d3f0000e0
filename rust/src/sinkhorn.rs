//! Entropic optimal transport between weighted point clouds (Sinkhorn), and the Sinkhorn
//! divergence.
//!
//! # Quantities
//!
//! For clouds `x_1..x_n` with weights `a` and `y_1..y_m` with weights `b` (each normalised to
//! sum to one, in `f64`), the ground cost is `C_ij = |x_i - y_j|_2^p` and, for `eps = reg > 0`,
//! the entropic plan `P` minimises `<P, C> + eps * KL(P | a ⊗ b)` over couplings of `a` and
//! `b`. At the optimum `P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)` for dual potentials
//! `f`, `g`, and the optimal value is `OT_eps(a, b) = <a, f> + <b, g>`.
//!
//! * plain (`debiased = false`): the value is `<P, C>^(1/p)`, the transport cost of the
//!   entropic plan (what `ot.sinkhorn2(a, b, C, reg) ** (1/p)` returns);
//! * debiased (`debiased = true`): the Sinkhorn divergence of Feydy et al. (2019),
//!   `S = OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2`, clamped at 0, returned as
//!   `S^(1/p)`.
//!
//! # Algorithm
//!
//! Log-stabilised Sinkhorn with epsilon scaling and absorption (Schmitzer 2019). The solver
//! keeps potentials `f`, `g` and scalings `u`, `v` with the current plan
//! `P_ij = a_i u_i K_ij v_j b_j`, `K_ij = exp((f_i + g_j - C_ij) / eps)`. Iterations are two
//! mat-vecs with `K`; `K` is recomputed (after absorbing `eps ln u` into `f` and `eps ln v` into
//! `g`) once per epsilon stage, and whenever a scaling leaves `[1e-50, 1e50]`, in which case
//! that half-step is redone exactly in the log domain. Epsilon starts at `(max C - min C) / 16`
//! (or at `reg` when that is larger) and is divided by 4 per stage down to `reg`. When both
//! clouds are identical (same points and weights), the symmetric problem is solved with the
//! averaged update of Feydy et al., which converges in a few iterations where the alternating
//! update stalls; the debiasing terms `OT_eps(a, a)` are computed that way once per cloud.
//!
//! Convergence: after each `v` update the column marginals are exact, and the solver stops
//! when the L1 violation of the row marginals, `sum_i |(P 1)_i - a_i|`, is below `tol` at the
//! final epsilon. `max_iter` bounds the iterations (one `u` and one `v` update) at the final
//! epsilon; the reported `n_iter` counts those iterations only. Intermediate stages stop at an
//! L1 violation of `1e-3` or after 100 iterations.
//!
//! All solver arithmetic is in `f64`; `f32` points are only used to build the cost matrix
//! (each cloud is centred on its weighted mean once; for `d >= 8` the squared distances come
//! from `|x'|^2 + |y'|^2 + |delta|^2 - 2 x'.y' + 2 delta.(x' - y')` with the centred points
//! `x'`, `y'` and the offset of the means `delta` in `f64`, the products `x'.y'` through a
//! matrix product in the point type, clamped at 0; for `d < 8` from coordinate differences
//! summed in `f64`). Bulk functions run one pair per task with a fixed chunk size, so results are
//! bit-identical for any thread count, and hold one cost matrix and kernel per pair in flight.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::clouds::{check_same_dim, CloudsView};
use crate::error::{checked_len, try_vec, try_with_capacity, Error, Result};
use crate::float::Real;
use crate::pairs::{check_pairs, condensed_len, condensed_pair};
use crate::parallel::Executor;

/// Parameters of the entropic problem and of the solver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinkhornParams {
    /// Absolute entropic regularisation `eps` (same unit as the cost `|x - y|^p`), `> 0`.
    pub reg: f64,
    /// Order of the cost `|x - y|^p`, finite and `>= 1`.
    pub p: f64,
    /// Maximum number of iterations at the final epsilon, `>= 1`.
    pub max_iter: usize,
    /// Tolerance on the L1 violation of the marginals, `> 0`.
    pub tol: f64,
    /// Return the Sinkhorn divergence instead of the transport cost of the entropic plan.
    pub debiased: bool,
}

impl SinkhornParams {
    /// Checks every parameter.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `reg`, `p`, `max_iter` or `tol`.
    pub fn validate(&self) -> Result<()> {
        if !(self.reg.is_finite() && self.reg > 0.0) {
            return Err(Error::arg(
                "reg",
                format!("must be a finite number > 0, got {}", self.reg),
            ));
        }
        if !(self.p.is_finite() && self.p >= 1.0) {
            return Err(Error::arg(
                "p",
                format!("must be a finite number >= 1, got {}", self.p),
            ));
        }
        if self.max_iter < 1 {
            return Err(Error::arg("max_iter", "must be >= 1, got 0"));
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(Error::arg(
                "tol",
                format!("must be a finite number > 0, got {}", self.tol),
            ));
        }
        Ok(())
    }
}

/// The result for one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinkhornResult {
    /// `<P, C>^(1/p)`, or the debiased `S^(1/p)`.
    pub value: f64,
    /// Iterations at the final epsilon (of the `a`-`b` problem).
    pub n_iter: u32,
    /// Whether the marginal violation went below `tol` (for the divergence: in all three
    /// problems).
    pub converged: bool,
}

/// Values (`f64`), iteration counts and convergence flags of a bulk call, in output order.
pub type BulkResult = (Vec<f64>, Vec<u32>, Vec<bool>);

/// Number of pairs per task of the bulk functions (fixed: results never depend on threads).
const CHUNK: usize = 4;
/// The first epsilon is the cost spread `max C - min C` divided by this (or `reg` if larger).
const START_DIVISOR: f64 = 16.0;
/// Below this dimension the cost is computed from coordinate differences, above it through
/// a matrix product.
const GEMM_MIN_DIM: usize = 8;
/// Factor by which epsilon is divided per stage.
const EPS_FACTOR: f64 = 4.0;
/// Marginal violation at which an intermediate stage stops.
const STAGE_TOL: f64 = 1e-3;
/// Iteration cap of an intermediate stage.
const STAGE_MAX_ITER: usize = 100;
/// Smallest `reg` relative to the spread of the costs of a pair that float64 resolves (about
/// its machine epsilon): below it `f + g - C` is rounding noise at the scale of `eps`, and the
/// solver would return a wrong value. Such pairs (and pairs whose costs overflow) get a NaN
/// value, which the Python layer turns into a `ValueError` naming `reg` or `p`.
pub const MIN_RELATIVE_REG: f64 = f64::EPSILON;

/// The solution returned for a pair the solver cannot resolve (see [`MIN_RELATIVE_REG`]).
const UNRESOLVABLE: Solution = Solution {
    cost: f64::NAN,
    dual: f64::NAN,
    n_iter: 0,
    converged: false,
};

/// Whether `reg` is resolvable against costs spread over `range` (finite).
fn resolvable(range: f64, reg: f64) -> bool {
    range.is_finite() && reg >= MIN_RELATIVE_REG * range
}

/// Admissible range of the row/column sums `K v`, `K^T u` before a log-domain step.
const SUM_LO: f64 = 1e-50;
const SUM_HI: f64 = 1e50;

/// One cloud ready for the solver: its points of positive weight, centred on their (weighted)
/// mean, the mean, normalised weights and their logs, and the squared norms of the centred
/// points. Centring each cloud keeps `|x|^2 + |y|^2 - 2 x.y` accurate for clouds far from the
/// origin (the offset between two clouds enters exactly, in `f64`).
struct Prepared<T: Real> {
    pts: Vec<T>,
    mean: Vec<f64>,
    w: Vec<f64>,
    log_w: Vec<f64>,
    sqn: Vec<f64>,
}

impl<T: Real> Prepared<T> {
    fn len(&self) -> usize {
        self.w.len()
    }
}

fn prepare<T: Real>(pts: &[T], weights: &[T], dim: usize) -> Prepared<T> {
    let total: f64 = weights.iter().map(|w| w.to_f64()).sum();
    let keep: Vec<usize> = (0..weights.len())
        .filter(|&i| weights[i] > T::zero())
        .collect();
    let w: Vec<f64> = keep.iter().map(|&i| weights[i].to_f64() / total).collect();
    let log_w = w.iter().map(|x| x.ln()).collect();
    let mut mean = vec![0.0f64; dim];
    for (&i, &wi) in keep.iter().zip(&w) {
        for (m, &v) in mean.iter_mut().zip(&pts[i * dim..(i + 1) * dim]) {
            *m += wi * v.to_f64();
        }
    }
    let centred: Vec<T> = keep
        .iter()
        .flat_map(|&i| {
            pts[i * dim..(i + 1) * dim]
                .iter()
                .zip(&mean)
                .map(|(&v, &m)| T::from_f64(v.to_f64() - m))
        })
        .collect();
    let sqn = centred
        .chunks_exact(dim)
        .map(|r| r.iter().map(|&v| v.to_f64() * v.to_f64()).sum())
        .collect();
    Prepared {
        pts: centred,
        mean,
        w,
        log_w,
        sqn,
    }
}

fn prepare_all<T: Real>(set: &CloudsView<'_, T>, exec: &Executor<'_>) -> Result<Vec<Prepared<T>>> {
    exec.map(set.len(), |c| {
        prepare(set.points(c), set.weights(c), set.dim())
    })
}

/// Per-task scratch memory, reused across the pairs of a chunk.
#[derive(Default)]
struct Workspace<T> {
    prod: Vec<T>,
    delta: Vec<f64>,
    xd: Vec<f64>,
    yd: Vec<f64>,
    cost: Vec<f64>,
    kernel: Vec<f64>,
    f: Vec<f64>,
    g: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
    s: Vec<f64>,
    t: Vec<f64>,
    tmp: Vec<f64>,
}

/// `|x - y + delta|^2` with the sum in `f64`.
#[inline]
fn sq_dist<T: Real>(x: &[T], y: &[T], delta: &[f64]) -> f64 {
    x.iter()
        .zip(y)
        .zip(delta)
        .map(|((&a, &b), &dl)| {
            let d = a.to_f64() - b.to_f64() + dl;
            d * d
        })
        .sum()
}

/// Fills `ws.cost` with `C_ij = |x_i - y_j|^p`, row-major `(n, m)`.
///
/// For `dim >= 8` the squared distances are expanded around the centred points (norms and
/// mean offsets in `f64`, products by a matrix product in `T`, clamped at 0); below, they are
/// summed from coordinate differences in `f64`.
#[allow(clippy::float_cmp)] // p = 1 and p = 2 are special-cased exactly
fn cost_matrix<T: Real>(
    x: &Prepared<T>,
    y: &Prepared<T>,
    dim: usize,
    p: f64,
    ws: &mut Workspace<T>,
) {
    let (n, m) = (x.len(), y.len());
    ws.cost.clear();
    ws.cost.resize(n * m, 0.0);
    // The clouds are centred: x_i = x'_i + mu_x, y_j = y'_j + mu_y, delta = mu_x - mu_y.
    ws.delta.clear();
    ws.delta
        .extend(x.mean.iter().zip(&y.mean).map(|(&a, &b)| a - b));
    let delta = &ws.delta[..];
    let root = |d2: f64| {
        if p == 2.0 {
            d2
        } else if p == 1.0 {
            d2.sqrt()
        } else {
            d2.powf(0.5 * p)
        }
    };
    if dim >= GEMM_MIN_DIM {
        // |x_i - y_j|^2 = |x'_i|^2 + |y'_j|^2 + |delta|^2 - 2 x'_i.y'_j + 2 delta.x'_i
        //                 - 2 delta.y'_j
        let dd: f64 = delta.iter().map(|v| v * v).sum();
        let proj = |pts: &[T], out: &mut Vec<f64>| {
            out.clear();
            out.extend(pts.chunks_exact(dim).map(|r| {
                r.iter()
                    .zip(delta)
                    .map(|(&v, &dl)| v.to_f64() * dl)
                    .sum::<f64>()
            }));
        };
        proj(&x.pts, &mut ws.xd);
        proj(&y.pts, &mut ws.yd);
        ws.prod.clear();
        ws.prod.resize(n * m, T::zero());
        let xa = ArrayView2::from_shape((n, dim), &x.pts[..]).expect("shape of x");
        let ya = ArrayView2::from_shape((m, dim), &y.pts[..]).expect("shape of y");
        let mut out = ArrayViewMut2::from_shape((n, m), &mut ws.prod[..]).expect("shape of x.y");
        // matrixmultiply, not Real::gemm (faer): on these per-pair matrices, computed by
        // every thread at once, it measured 1.6x faster over a whole Sinkhorn cdist.
        general_mat_mul(T::one(), &xa, &ya.t(), T::zero(), &mut out);
        for i in 0..n {
            let row = &mut ws.cost[i * m..(i + 1) * m];
            let prod = &ws.prod[i * m..(i + 1) * m];
            let base = x.sqn[i] + dd + 2.0 * ws.xd[i];
            for (((c, &xy), &ny), &yd) in row.iter_mut().zip(prod).zip(&y.sqn).zip(&ws.yd) {
                *c = root((base + ny - 2.0 * yd - 2.0 * xy.to_f64()).max(0.0));
            }
        }
    } else {
        for i in 0..n {
            let xi = &x.pts[i * dim..(i + 1) * dim];
            let row = &mut ws.cost[i * m..(i + 1) * m];
            for (j, c) in row.iter_mut().enumerate() {
                *c = root(sq_dist(xi, &y.pts[j * dim..(j + 1) * dim], delta));
            }
        }
    }
}

/// What the solver reports for one entropic problem.
#[derive(Debug, Clone, Copy)]
struct Solution {
    /// `<P, C>`.
    cost: f64,
    /// `<a, f> + <b, g>` (the regularised objective at convergence).
    dual: f64,
    n_iter: u32,
    converged: bool,
}

#[inline]
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut xc = x.chunks_exact(8);
    let mut yc = y.chunks_exact(8);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        for k in 0..8 {
            acc[k] += xs[k] * ys[k];
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (&a, &b) in xc.remainder().iter().zip(yc.remainder()) {
        s += a * b;
    }
    s
}

/// `K_ij = exp((f_i + g_j - C_ij) / eps)`.
fn compute_kernel(c: &[f64], f: &[f64], g: &[f64], eps: f64, k: &mut [f64]) {
    let m = g.len();
    let inv = 1.0 / eps;
    for (i, &fi) in f.iter().enumerate() {
        let row = &c[i * m..(i + 1) * m];
        for ((kv, &cv), &gj) in k[i * m..(i + 1) * m].iter_mut().zip(row).zip(g) {
            *kv = ((fi + gj - cv) * inv).exp();
        }
    }
}

/// Log-sum-exp of `vals` (not empty).
fn lse(vals: &[f64]) -> f64 {
    let mx = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if mx == f64::NEG_INFINITY {
        return mx;
    }
    mx + vals.iter().map(|&z| (z - mx).exp()).sum::<f64>().ln()
}

/// Exact log-domain row update: `f_i = -eps ln sum_j b_j exp((g_j - C_ij) / eps)`.
fn log_update_rows(
    c: &[f64],
    g: &[f64],
    log_b: &[f64],
    eps: f64,
    f: &mut [f64],
    tmp: &mut Vec<f64>,
) {
    let m = g.len();
    for (i, fi) in f.iter_mut().enumerate() {
        tmp.clear();
        tmp.extend(
            c[i * m..(i + 1) * m]
                .iter()
                .zip(g)
                .zip(log_b)
                .map(|((&cv, &gj), &lb)| (gj - cv) / eps + lb),
        );
        *fi = -eps * lse(tmp);
    }
}

/// Exact log-domain column update: `g_j = -eps ln sum_i a_i exp((f_i - C_ij) / eps)`.
fn log_update_cols(
    c: &[f64],
    f: &[f64],
    log_a: &[f64],
    eps: f64,
    g: &mut [f64],
    tmp: &mut Vec<f64>,
) {
    let m = g.len();
    for (j, gj) in g.iter_mut().enumerate() {
        tmp.clear();
        tmp.extend(
            f.iter()
                .zip(log_a)
                .enumerate()
                .map(|(i, (&fi, &la))| (fi - c[i * m + j]) / eps + la),
        );
        *gj = -eps * lse(tmp);
    }
}

/// Moves `eps ln u` into `f` and `eps ln v` into `g`, resetting the scalings to 1.
fn absorb(f: &mut [f64], u: &mut [f64], g: &mut [f64], v: &mut [f64], eps: f64) {
    for (fi, ui) in f.iter_mut().zip(u.iter_mut()) {
        *fi += eps * ui.ln();
        *ui = 1.0;
    }
    for (gj, vj) in g.iter_mut().zip(v.iter_mut()) {
        *gj += eps * vj.ln();
        *vj = 1.0;
    }
}

/// `s = K (v ∘ b)`; returns whether every entry is in the admissible range.
fn row_sums(k: &[f64], v: &[f64], b: &[f64], tmp: &mut Vec<f64>, s: &mut [f64]) -> bool {
    let m = v.len();
    tmp.clear();
    tmp.extend(v.iter().zip(b).map(|(&x, &y)| x * y));
    let mut ok = true;
    for (i, si) in s.iter_mut().enumerate() {
        *si = dot(&k[i * m..(i + 1) * m], tmp);
        ok &= *si > SUM_LO && *si < SUM_HI;
    }
    ok
}

/// `t = K^T (u ∘ a)`; returns whether every entry is in the admissible range.
fn col_sums(k: &[f64], u: &[f64], a: &[f64], t: &mut [f64]) -> bool {
    let m = t.len();
    t.fill(0.0);
    for (i, (&ui, &ai)) in u.iter().zip(a).enumerate() {
        let w = ui * ai;
        for (tj, &kv) in t.iter_mut().zip(&k[i * m..(i + 1) * m]) {
            *tj += w * kv;
        }
    }
    t.iter().all(|&x| x > SUM_LO && x < SUM_HI)
}

/// `⟨P, C⟩` for the plan `P_ij = left(i) · K_ij · right_j` (row-major `K` and `C` with `m`
/// columns).
fn plan_cost(
    kernel: &[f64],
    c: &[f64],
    left: impl Fn(usize) -> f64,
    right: &[f64],
    m: usize,
) -> f64 {
    kernel
        .chunks_exact(m)
        .zip(c.chunks_exact(m))
        .enumerate()
        .map(|(i, (k, cr))| {
            let row: f64 = k
                .iter()
                .zip(cr)
                .zip(right)
                .map(|((&kv, &cv), &w)| kv * cv * w)
                .sum();
            left(i) * row
        })
        .sum()
}

/// `⟨a, f + ε ln u⟩`, the dual term of one side once the scaling `u` is absorbed.
fn dual_value(a: &[f64], f: &[f64], u: &[f64], eps: f64) -> f64 {
    a.iter()
        .zip(f.iter().zip(u))
        .map(|(&ai, (&fi, &ui))| ai * (fi + eps * ui.ln()))
        .sum()
}

/// L1 violation of the first marginal, `Σ_i a_i |u_i s_i − 1|`, where `s = K v` (so that the
/// plan's row sums are `a_i u_i s_i` with `u` scaled to match `a`).
fn marginal_error(a: &[f64], u: &[f64], s: &[f64]) -> f64 {
    a.iter()
        .zip(u)
        .zip(s)
        .map(|((&ai, &ui), &si)| ai * (ui * si - 1.0).abs())
        .sum()
}

/// The stopping rule shared by both solvers: `Some(converged)` ends the current epsilon stage.
/// Convergence is only declared after an exact (not re-absorbed) update, at the final stage.
fn stage_stop(
    exact: bool,
    it: usize,
    last: bool,
    err: f64,
    params: &SinkhornParams,
) -> Option<bool> {
    if exact && it > 0 {
        if last && err < params.tol {
            return Some(true);
        }
        if !last && err < STAGE_TOL.max(params.tol) {
            return Some(false);
        }
    }
    if (last && it >= params.max_iter) || (!last && it >= STAGE_MAX_ITER) {
        return Some(false);
    }
    None
}

/// Solves the entropic problem for the cost in `ws.cost` (`(n, m)`, row-major).
fn solve<T>(
    a: &[f64],
    log_a: &[f64],
    b: &[f64],
    log_b: &[f64],
    params: &SinkhornParams,
    ws: &mut Workspace<T>,
) -> Solution {
    let (n, m) = (a.len(), b.len());
    let Workspace {
        cost,
        kernel,
        f,
        g,
        u,
        v,
        s,
        t,
        tmp,
        ..
    } = ws;
    let c = &cost[..];
    let (cmin, cmax) = c
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    let reg = params.reg;
    if !resolvable(cmax - cmin, reg) {
        return UNRESOLVABLE;
    }
    let mut eps = start_eps(cmax - cmin, reg);
    for buf in [&mut *f, &mut *u, &mut *s] {
        buf.clear();
        buf.resize(n, 1.0);
    }
    for buf in [&mut *g, &mut *v, &mut *t] {
        buf.clear();
        buf.resize(m, 1.0);
    }
    kernel.clear();
    kernel.resize(n * m, 0.0);
    // f = 0, g_j = min_i C_ij: f + g - C <= 0 with a zero in every column.
    f.fill(0.0);
    g.fill(f64::INFINITY);
    for i in 0..n {
        for (gj, &cv) in g.iter_mut().zip(&c[i * m..(i + 1) * m]) {
            *gj = gj.min(cv);
        }
    }
    let mut n_iter = 0u32;
    let mut converged;
    loop {
        let last = eps <= reg;
        compute_kernel(c, f, g, eps, kernel);
        let mut it = 0usize;
        loop {
            let mut exact = true;
            if !row_sums(kernel, v, b, tmp, s) {
                // Redo the row update exactly in the log domain.
                absorb(f, u, g, v, eps);
                log_update_rows(c, g, log_b, eps, f, tmp);
                compute_kernel(c, f, g, eps, kernel);
                row_sums(kernel, v, b, tmp, s);
                exact = false;
            }
            if let Some(done) = stage_stop(exact, it, last, marginal_error(a, u, s), params) {
                converged = done;
                break;
            }
            for (ui, &si) in u.iter_mut().zip(s.iter()) {
                *ui = 1.0 / si;
            }
            if !col_sums(kernel, u, a, t) {
                absorb(f, u, g, v, eps);
                log_update_cols(c, f, log_a, eps, g, tmp);
                compute_kernel(c, f, g, eps, kernel);
                col_sums(kernel, u, a, t);
            }
            for (vj, &tj) in v.iter_mut().zip(t.iter()) {
                *vj = 1.0 / tj;
            }
            it += 1;
            if last {
                n_iter = n_iter.saturating_add(1);
            }
        }
        if last {
            break;
        }
        absorb(f, u, g, v, eps);
        eps = (eps / EPS_FACTOR).max(reg);
    }
    // Final plan P_ij = a_i u_i K_ij v_j b_j; potentials f + eps ln u, g + eps ln v.
    tmp.clear();
    tmp.extend(v.iter().zip(b).map(|(&x, &y)| x * y));
    let cost_sum = plan_cost(kernel, c, |i| a[i] * u[i], tmp, m);
    let dual = dual_value(a, f, u, eps) + dual_value(b, g, v, eps);
    Solution {
        cost: cost_sum,
        dual,
        n_iter,
        converged,
    }
}

/// Solves the symmetric problem `OT_eps(a, a)` for the cost in `ws.cost` (`(n, n)`,
/// symmetric): one potential `f = g` and one scaling `u = v`, updated with the averaged step
/// `u <- sqrt(u / K (u ∘ a))` (the log-domain `f <- (f + T(f)) / 2` of Feydy et al.), which
/// converges quickly even when the plan is close to the identity.
fn solve_symmetric<T>(
    a: &[f64],
    log_a: &[f64],
    params: &SinkhornParams,
    ws: &mut Workspace<T>,
) -> Solution {
    let n = a.len();
    let Workspace {
        cost,
        kernel,
        f,
        u,
        s,
        tmp,
        g,
        ..
    } = ws;
    let c = &cost[..];
    let cmax = c.iter().copied().fold(0.0f64, f64::max);
    let reg = params.reg;
    if !resolvable(cmax, reg) {
        return UNRESOLVABLE;
    }
    let mut eps = start_eps(cmax, reg);
    for buf in [&mut *f, &mut *u, &mut *s] {
        buf.clear();
        buf.resize(n, 1.0);
    }
    f.fill(0.0);
    kernel.clear();
    kernel.resize(n * n, 0.0);
    let absorb_sym = |f: &mut [f64], u: &mut [f64], eps: f64| {
        for (fi, ui) in f.iter_mut().zip(u.iter_mut()) {
            *fi += eps * ui.ln();
            *ui = 1.0;
        }
    };
    let mut n_iter = 0u32;
    let mut converged;
    loop {
        let last = eps <= reg;
        compute_kernel(c, f, f, eps, kernel);
        let mut it = 0usize;
        loop {
            let mut exact = true;
            if !row_sums(kernel, u, a, tmp, s) {
                absorb_sym(f, u, eps);
                g.clear();
                g.extend_from_slice(f);
                log_update_rows(c, g, log_a, eps, f, tmp);
                for (fi, &gi) in f.iter_mut().zip(g.iter()) {
                    *fi = 0.5 * (*fi + gi);
                }
                compute_kernel(c, f, f, eps, kernel);
                row_sums(kernel, u, a, tmp, s);
                exact = false;
            }
            if let Some(done) = stage_stop(exact, it, last, marginal_error(a, u, s), params) {
                converged = done;
                break;
            }
            for (ui, &si) in u.iter_mut().zip(s.iter()) {
                *ui = (*ui / si).sqrt();
            }
            it += 1;
            if last {
                n_iter = n_iter.saturating_add(1);
            }
        }
        if last {
            break;
        }
        absorb_sym(f, u, eps);
        eps = (eps / EPS_FACTOR).max(reg);
    }
    tmp.clear();
    tmp.extend(u.iter().zip(a).map(|(&x, &y)| x * y));
    let cost_sum = plan_cost(kernel, c, |i| tmp[i], tmp, n);
    let dual = 2.0 * dual_value(a, f, u, eps);
    Solution {
        cost: cost_sum,
        dual,
        n_iter,
        converged,
    }
}

/// First epsilon of the schedule for a cost spread `range`.
fn start_eps(range: f64, reg: f64) -> f64 {
    (range / START_DIVISOR).max(reg)
}

fn solve_pair<T: Real>(
    x: &Prepared<T>,
    y: &Prepared<T>,
    dim: usize,
    params: &SinkhornParams,
    ws: &mut Workspace<T>,
) -> Solution {
    cost_matrix(x, y, dim, params.p, ws);
    if x.w == y.w && x.mean == y.mean && x.pts == y.pts {
        // Identical clouds: the optimal potentials are symmetric.
        solve_symmetric(&x.w, &x.log_w, params, ws)
    } else {
        solve(&x.w, &x.log_w, &y.w, &y.log_w, params, ws)
    }
}

/// `OT_eps(a, a)` of one cloud, for the debiased divergence.
fn self_terms<T: Real>(
    set: &[Prepared<T>],
    dim: usize,
    params: &SinkhornParams,
    exec: &Executor<'_>,
) -> Result<Vec<Solution>> {
    let mut out = vec![None; set.len()];
    exec.fill(&mut out, CHUNK, |start, slots| {
        let mut ws = Workspace::default();
        for (k, slot) in slots.iter_mut().enumerate() {
            let c = &set[start + k];
            *slot = Some(solve_pair(c, c, dim, params, &mut ws));
        }
    })?;
    Ok(out
        .into_iter()
        .map(|s| s.expect("every slot is filled"))
        .collect())
}

#[allow(clippy::float_cmp)] // p = 1 and p = 2 are special-cased exactly
fn finish(ab: Solution, selves: Option<(Solution, Solution)>, p: f64) -> SinkhornResult {
    let root = |x: f64| {
        // NaN (an unresolvable pair) stays NaN; `f64::max` would turn it into 0.
        let x = if x.is_nan() { x } else { x.max(0.0) };
        if p == 1.0 {
            x
        } else if p == 2.0 {
            x.sqrt()
        } else {
            x.powf(1.0 / p)
        }
    };
    match selves {
        None => SinkhornResult {
            value: root(ab.cost),
            n_iter: ab.n_iter,
            converged: ab.converged,
        },
        Some((aa, bb)) => SinkhornResult {
            value: root(ab.dual - 0.5 * (aa.dual + bb.dual)),
            n_iter: ab.n_iter,
            converged: ab.converged && aa.converged && bb.converged,
        },
    }
}

/// Entropic OT between one pair of clouds.
///
/// `x` is row-major `(n, dim)` with weights `a` (`n`), `y` is `(m, dim)` with weights `b`;
/// weights are non-negative and normalised here. See the module documentation for the exact
/// quantity.
///
/// # Errors
/// [`Error::InvalidArgument`] for bad parameters, [`Error::Shape`] or
/// [`Error::InvalidCloud`] for bad clouds (named `x` and `y`).
pub fn sinkhorn_pair<T: Real>(
    x: &[T],
    a: &[T],
    y: &[T],
    b: &[T],
    dim: usize,
    params: &SinkhornParams,
) -> Result<SinkhornResult> {
    params.validate()?;
    let offs_a = [0, a.len() as i64];
    let offs_b = [0, b.len() as i64];
    let va = CloudsView::new("x", x, dim, a, &offs_a)?;
    let vb = CloudsView::new("y", y, dim, b, &offs_b)?;
    let pa = prepare(va.points(0), va.weights(0), dim);
    let pb = prepare(vb.points(0), vb.weights(0), dim);
    let mut ws = Workspace::default();
    let ab = solve_pair(&pa, &pb, dim, params, &mut ws);
    let selves = params.debiased.then(|| {
        (
            solve_pair(&pa, &pa, dim, params, &mut ws),
            solve_pair(&pb, &pb, dim, params, &mut ws),
        )
    });
    Ok(finish(ab, selves, params.p))
}

/// Runs the pairs `index(k)` for `k in 0..n_out`.
fn run_bulk<T: Real, I>(
    a: &CloudsView<'_, T>,
    b: Option<&CloudsView<'_, T>>,
    n_out: usize,
    index: I,
    params: &SinkhornParams,
    exec: &Executor<'_>,
) -> Result<BulkResult>
where
    I: Fn(usize) -> (usize, usize) + Sync,
{
    params.validate()?;
    let dim = a.dim();
    if let Some(b) = b {
        check_same_dim(a, b)?;
    }
    if n_out == 0 {
        return Ok((Vec::new(), Vec::new(), Vec::new()));
    }
    // Each thread holds a cost matrix and a kernel of the largest pair: checked up front,
    // since an allocation failing inside the parallel loop could only abort.
    let largest = |c: &CloudsView<'_, T>| (0..c.len()).map(|k| c.size(k)).max().unwrap_or(0);
    let (n_max, m_max) = (largest(a), b.map_or_else(|| largest(a), largest));
    let what = format!("cost matrices of {n_max} x {m_max} points (two per thread)");
    let per_thread = checked_len(n_max, m_max, "A", &what)?;
    let in_flight = checked_len(per_thread, 2 * exec.threads(), "A", &what)?;
    drop(try_with_capacity::<f64>(in_flight, "A", &what)?);
    let pa = prepare_all(a, exec)?;
    let pb_owned = match b {
        Some(b) => Some(prepare_all(b, exec)?),
        None => None,
    };
    let pb = pb_owned.as_deref().unwrap_or(&pa);
    let (sa, sb) = if params.debiased {
        let sa = self_terms(&pa, dim, params, exec)?;
        let sb = match b {
            Some(_) => Some(self_terms(pb, dim, params, exec)?),
            None => None,
        };
        (Some(sa), sb)
    } else {
        (None, None)
    };
    let sb_ref = sb.as_deref().or(sa.as_deref());
    let mut out = try_vec(
        n_out,
        SinkhornResult {
            value: 0.0,
            n_iter: 0,
            converged: false,
        },
        "B",
        &format!("{n_out} results"),
    )?;
    exec.fill(&mut out, CHUNK, |start, slots| {
        let mut ws = Workspace::default();
        for (k, slot) in slots.iter_mut().enumerate() {
            let (i, j) = index(start + k);
            let ab = solve_pair(&pa[i], &pb[j], dim, params, &mut ws);
            let selves = match (&sa, sb_ref) {
                (Some(sa), Some(sb)) => Some((sa[i], sb[j])),
                _ => None,
            };
            *slot = finish(ab, selves, params.p);
        }
    })?;
    Ok((
        out.iter().map(|r| r.value).collect(),
        out.iter().map(|r| r.n_iter).collect(),
        out.iter().map(|r| r.converged).collect(),
    ))
}

/// All pairs between two sets: `values[i * B.len() + j]` is the pair `(A[i], B[j])`.
///
/// # Errors
/// [`Error::InvalidArgument`] for bad parameters, [`Error::Shape`] when the dimensions
/// differ, [`Error::Interrupted`] when the executor's interrupt check fires.
pub fn sinkhorn_cdist<T: Real>(
    a: &CloudsView<'_, T>,
    b: &CloudsView<'_, T>,
    params: &SinkhornParams,
    exec: &Executor<'_>,
) -> Result<BulkResult> {
    let nb = b.len();
    run_bulk(a, Some(b), a.len() * nb, |k| (k / nb, k % nb), params, exec)
}

/// All pairs within one set, as the condensed upper triangle in scipy `pdist` order
/// `(0,1), (0,2), ..., (1,2), ...` (length `N (N - 1) / 2`).
///
/// # Errors
/// As [`sinkhorn_cdist`].
pub fn sinkhorn_pdist<T: Real>(
    a: &CloudsView<'_, T>,
    params: &SinkhornParams,
    exec: &Executor<'_>,
) -> Result<BulkResult> {
    let n = a.len();
    let n_out = condensed_len(n);
    run_bulk(a, None, n_out, |k| condensed_pair(n, k), params, exec)
}

/// The pairs `(A[pairs[2k]], B[pairs[2k + 1]])` for a row-major `(K, 2)` index array.
///
/// # Errors
/// As [`sinkhorn_cdist`], and [`Error::InvalidArgument`] naming `pairs` for an index out of
/// range.
pub fn sinkhorn_pairs<T: Real>(
    a: &CloudsView<'_, T>,
    b: &CloudsView<'_, T>,
    pairs: &[i64],
    params: &SinkhornParams,
    exec: &Executor<'_>,
) -> Result<BulkResult> {
    params.validate()?;
    check_pairs(pairs, a.len(), b.len())?;
    run_bulk(
        a,
        Some(b),
        pairs.len() / 2,
        |k| (pairs[2 * k] as usize, pairs[2 * k + 1] as usize),
        params,
        exec,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(reg: f64, p: f64, debiased: bool) -> SinkhornParams {
        SinkhornParams {
            reg,
            p,
            max_iter: 100_000,
            tol: 1e-12,
            debiased,
        }
    }

    /// Exact 1-D `W_p` between uniform clouds of equal size: sorted matching.
    fn exact_1d(x: &[f64], y: &[f64], p: f64) -> f64 {
        let mut xs = x.to_vec();
        let mut ys = y.to_vec();
        xs.sort_by(f64::total_cmp);
        ys.sort_by(f64::total_cmp);
        let s: f64 = xs.iter().zip(&ys).map(|(a, b)| (a - b).abs().powf(p)).sum();
        (s / xs.len() as f64).powf(1.0 / p)
    }

    fn lcg(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    #[test]
    fn params_validated() {
        let ok = params(0.1, 2.0, false);
        assert!(ok.validate().is_ok());
        for (bad, name) in [
            (SinkhornParams { reg: 0.0, ..ok }, "reg"),
            (
                SinkhornParams {
                    reg: f64::NAN,
                    ..ok
                },
                "reg",
            ),
            (SinkhornParams { p: 0.5, ..ok }, "p"),
            (SinkhornParams { max_iter: 0, ..ok }, "max_iter"),
            (SinkhornParams { tol: -1.0, ..ok }, "tol"),
        ] {
            match bad.validate() {
                Err(Error::InvalidArgument { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn approaches_exact_1d() {
        let x = lcg(1, 12);
        let y: Vec<f64> = lcg(2, 12).iter().map(|v| v * 2.0 + 0.3).collect();
        let w = vec![1.0; 12];
        for p in [1.0, 2.0] {
            let exact = exact_1d(&x, &y, p);
            // Sinkhorn converges slowly at tiny eps; the value is accurate long before.
            let prm = SinkhornParams {
                tol: 1e-9,
                max_iter: 5_000,
                ..params(1e-3, p, false)
            };
            let r = sinkhorn_pair(&x, &w, &y, &w, 1, &prm).unwrap();
            assert!(r.value.is_finite(), "{r:?}");
            assert!(
                (r.value - exact).abs() < 1e-2 * exact,
                "p={p} {} vs {exact}",
                r.value
            );
        }
    }

    #[test]
    fn small_reg_is_finite() {
        let x = lcg(3, 40);
        let y = lcg(4, 30);
        let r =
            sinkhorn_pair(&x, &[1.0; 20], &y, &[1.0; 15], 2, &params(1e-6, 2.0, false)).unwrap();
        assert!(r.value.is_finite() && r.value > 0.0);
    }

    #[test]
    fn identical_clouds_zero_divergence() {
        let x = lcg(5, 30);
        let w = lcg(6, 10);
        let r = sinkhorn_pair(&x, &w, &x, &w, 3, &params(0.05, 2.0, true)).unwrap();
        assert!(r.converged);
        assert!(r.value < 1e-5, "{}", r.value);
    }

    #[test]
    fn zero_weights_are_dropped() {
        let x = [0.0, 1.0, 5.0];
        let y = [0.5, 2.0];
        let r1 = sinkhorn_pair(
            &x,
            &[1.0, 1.0, 0.0],
            &y,
            &[1.0, 1.0],
            1,
            &params(0.1, 2.0, false),
        )
        .unwrap();
        let r2 = sinkhorn_pair(
            &x[..2],
            &[1.0, 1.0],
            &y,
            &[1.0, 1.0],
            1,
            &params(0.1, 2.0, false),
        )
        .unwrap();
        assert!((r1.value - r2.value).abs() < 1e-12);
    }

    #[test]
    fn bulk_matches_pair_and_threads() {
        let pts: Vec<f32> = lcg(7, 5 * 8 * 3).iter().map(|&v| v as f32).collect();
        let w = vec![1.0f32; 40];
        let offs = [0i64, 8, 13, 20, 31, 40];
        let set = CloudsView::new("A", &pts, 3, &w, &offs).unwrap();
        let prm = SinkhornParams {
            tol: 1e-9,
            max_iter: 10_000,
            ..params(0.05, 2.0, true)
        };
        let seq = sinkhorn_pdist(&set, &prm, &Executor::sequential()).unwrap();
        let par = sinkhorn_pdist(&set, &prm, &Executor::new(Some(3)).unwrap()).unwrap();
        assert_eq!(seq, par);
        let cd = sinkhorn_cdist(&set, &set, &prm, &Executor::sequential()).unwrap();
        let mut k = 0;
        for i in 0..5 {
            for j in i + 1..5 {
                assert_eq!(condensed_pair(5, k), (i, j));
                let single = sinkhorn_pair(
                    set.points(i),
                    set.weights(i),
                    set.points(j),
                    set.weights(j),
                    3,
                    &prm,
                )
                .unwrap();
                assert!((seq.0[k] - single.value).abs() <= 1e-12 * single.value.max(1.0));
                assert!((cd.0[i * 5 + j] - single.value).abs() <= 1e-12 * single.value.max(1.0));
                k += 1;
            }
        }
        let pr = sinkhorn_pairs(&set, &set, &[0, 1, 4, 2], &prm, &Executor::sequential()).unwrap();
        assert_eq!(pr.0, vec![cd.0[1], cd.0[4 * 5 + 2]]);
        assert!(sinkhorn_pairs(&set, &set, &[0, 5], &prm, &Executor::sequential()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn debiased_symmetric(
            x in proptest::collection::vec(-3.0f64..3.0, 4..20),
            y in proptest::collection::vec(-3.0f64..3.0, 4..20),
            reg in 0.05f64..2.0,
        ) {
            let n = x.len() / 2;
            let m = y.len() / 2;
            let prm = params(reg, 2.0, true);
            let ab = sinkhorn_pair(&x[..2 * n], &vec![1.0; n], &y[..2 * m], &vec![1.0; m], 2, &prm).unwrap();
            let ba = sinkhorn_pair(&y[..2 * m], &vec![1.0; m], &x[..2 * n], &vec![1.0; n], 2, &prm).unwrap();
            prop_assert!(ab.value >= 0.0);
            prop_assert!((ab.value - ba.value).abs() <= 1e-6 * (1.0 + ab.value));
        }

        #[test]
        fn identical_is_zero(
            x in proptest::collection::vec(-3.0f64..3.0, 3..30),
            reg in 0.01f64..1.0,
        ) {
            let w = vec![1.0; x.len()];
            let r = sinkhorn_pair(&x, &w, &x, &w, 1, &params(reg, 1.0, true)).unwrap();
            prop_assert!(r.value.abs() < 1e-6, "{}", r.value);
        }
    }
}
