//! Exact Wasserstein distances between weighted samples on the real line.
//!
//! For two measures with quantile functions `F⁻¹` and `G⁻¹`,
//! `W_p^p = ∫₀¹ |F⁻¹(t) − G⁻¹(t)|^p dt`. On weighted samples both quantile functions are step
//! functions, and the integral is a merge of the two sorted cumulative-weight sequences.
//!
//! The sorted representation used here stores, for a sample of size `n`, `n + 1` sorted values
//! and `n + 1` cumulative weights: the last real cumulative weight is forced to exactly 1 and a
//! sentinel (value repeated, cumulative weight 2) follows, so the merge runs a fixed number of
//! steps (`n + m − 1`) without bounds logic or data-dependent branches.

use crate::error::{Error, Result};
use crate::float::Real;
use crate::simd::CostKind;

/// The ground cost `|d|^p` on the line, specialised for the common orders.
pub trait Cost<T>: Copy + Send + Sync {
    fn eval(self, d: T) -> T;
    /// `x^(1/p)`, the final root of a `p`-Wasserstein distance.
    fn root(self, x: f64) -> f64;
    /// The order `p`.
    fn p(self) -> f64;
    /// Which SIMD specialisation of the merge applies ([`crate::simd`]).
    fn kind(self) -> CostKind;
}

/// `p = 1`.
#[derive(Debug, Clone, Copy)]
pub struct P1;
/// `p = 2`.
#[derive(Debug, Clone, Copy)]
pub struct P2;
/// Any `p >= 1`.
#[derive(Debug, Clone, Copy)]
pub struct Pn<T>(pub T);

impl<T: Real> Cost<T> for P1 {
    #[inline(always)]
    fn eval(self, d: T) -> T {
        d.abs()
    }
    fn root(self, x: f64) -> f64 {
        x
    }
    fn p(self) -> f64 {
        1.0
    }
    fn kind(self) -> CostKind {
        CostKind::Abs
    }
}

impl<T: Real> Cost<T> for P2 {
    #[inline(always)]
    fn eval(self, d: T) -> T {
        d * d
    }
    fn root(self, x: f64) -> f64 {
        x.sqrt()
    }
    fn p(self) -> f64 {
        2.0
    }
    fn kind(self) -> CostKind {
        CostKind::Square
    }
}

impl<T: Real> Cost<T> for Pn<T> {
    #[inline(always)]
    fn eval(self, d: T) -> T {
        d.abs().powf(self.0)
    }
    fn root(self, x: f64) -> f64 {
        x.powf(1.0 / self.0.to_f64())
    }
    fn p(self) -> f64 {
        self.0.to_f64()
    }
    fn kind(self) -> CostKind {
        CostKind::Other
    }
}

/// Validates the order `p` of a Wasserstein distance.
pub fn check_p(p: f64) -> Result<()> {
    if !p.is_finite() || p < 1.0 {
        return Err(Error::arg(
            "p",
            format!("must be a finite number >= 1, got {p}"),
        ));
    }
    Ok(())
}

/// Sentinel cumulative weight, larger than any real cumulative weight (which is at most 1).
pub(crate) const SENTINEL: f64 = 2.0;

/// Writes the sorted representation of one weighted sample.
///
/// `pairs` holds `(value, weight)` and is sorted in place; `vals` and `cums` receive `n + 1`
/// entries each (see the module documentation). Weights are normalised by their `f64` sum.
pub(crate) fn sorted_representation<T: Real>(pairs: &mut [(T, T)], vals: &mut [T], cums: &mut [T]) {
    let n = pairs.len();
    debug_assert_eq!(vals.len(), n + 1);
    debug_assert_eq!(cums.len(), n + 1);
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|p| p.1.to_f64()).sum();
    let mut acc = 0.0f64;
    for (k, &(v, w)) in pairs.iter().enumerate() {
        acc += w.to_f64();
        vals[k] = v;
        cums[k] = T::from_f64((acc / total).min(1.0));
    }
    cums[n - 1] = T::one();
    vals[n] = vals[n - 1];
    cums[n] = T::from_f64(SENTINEL);
}

/// `W_p^p` between two samples in sorted representation (`x`, `cx` of length `n + 1`; `y`,
/// `cy` of length `m + 1`), accumulated in `f64`.
#[inline]
pub fn merge_wpp<T: Real, C: Cost<T>>(cost: C, x: &[T], cx: &[T], y: &[T], cy: &[T]) -> f64 {
    let n = x.len() - 1;
    let m = y.len() - 1;
    let (mut i, mut j) = (0usize, 0usize);
    let mut prev = T::zero();
    let mut acc = 0.0f64;
    for _ in 0..(n + m - 1) {
        let a = cx[i];
        let b = cy[j];
        let t = if a < b { a } else { b };
        let dt = t - prev;
        // A step of zero mass adds nothing, even where |x - y|^p is not finite.
        if dt > T::zero() {
            acc += (dt * cost.eval(x[i] - y[j])).to_f64();
        }
        prev = t;
        let adv = usize::from(a <= b);
        i += adv;
        j += 1 - adv;
    }
    acc
}

/// `W_p^p` between two samples in sorted representation in a scaled form that neither
/// overflows nor underflows: `(H, S)` with `W_p^p = (2H)^p S`, where `H` is the largest
/// `|x/2 − y/2|` over the steps of positive mass and `S = Σ Δt (|x/2 − y/2| / H)^p <= 1`
/// (accumulated in `f64`). Halved values keep `H` finite even for samples near `±f64::MAX`.
pub(crate) fn merge_scaled<T: Real>(p: f64, x: &[T], cx: &[T], y: &[T], cy: &[T]) -> (f64, f64) {
    let n = x.len() - 1;
    let m = y.len() - 1;
    let steps = n + m - 1;
    let walk = |f: &mut dyn FnMut(f64, f64)| {
        let (mut i, mut j) = (0usize, 0usize);
        let mut prev = T::zero();
        for _ in 0..steps {
            let (a, b) = (cx[i], cy[j]);
            let t = if a < b { a } else { b };
            let dt = t - prev;
            if dt > T::zero() {
                f(dt.to_f64(), 0.5 * x[i].to_f64() - 0.5 * y[j].to_f64());
            }
            prev = t;
            let adv = usize::from(a <= b);
            i += adv;
            j += 1 - adv;
        }
    };
    let mut half_max = 0.0f64;
    walk(&mut |_, d| half_max = half_max.max(d.abs()));
    if half_max == 0.0 {
        return (0.0, 0.0);
    }
    let mut s = 0.0f64;
    walk(&mut |dt, d| s += dt * (d.abs() / half_max).powf(p));
    (half_max, s)
}

/// `W_p^p` between two weighted samples on the line (exact).
///
/// Weights may be `None` (uniform); they are normalised. Returns the `p`-th power of the
/// distance, the quantity `ot.wasserstein_1d` returns.
///
/// # Errors
/// [`Error::InvalidArgument`] or [`Error::InvalidCloud`] for empty samples, mismatched weight
/// lengths, non-finite values, negative weights or weights summing to zero.
pub fn wasserstein_1d_pow<T: Real>(
    u: &[T],
    v: &[T],
    u_weights: Option<&[T]>,
    v_weights: Option<&[T]>,
    p: f64,
) -> Result<f64> {
    check_p(p)?;
    let prep = |name: &str, vals: &[T], w: Option<&[T]>| -> Result<(Vec<T>, Vec<T>)> {
        let ones;
        let w = if let Some(w) = w {
            w
        } else {
            ones = vec![T::one(); vals.len()];
            &ones
        };
        let offsets = [0, vals.len() as i64];
        let view = crate::clouds::CloudsView::new(name, vals, 1, w, &offsets)?;
        let mut pairs: Vec<(T, T)> = view
            .points(0)
            .iter()
            .copied()
            .zip(view.weights(0).iter().copied())
            .collect();
        let n = pairs.len();
        let (mut xs, mut cs) = (vec![T::zero(); n + 1], vec![T::zero(); n + 1]);
        sorted_representation(&mut pairs, &mut xs, &mut cs);
        Ok((xs, cs))
    };
    if u.is_empty() {
        return Err(Error::arg("u_values", "is empty"));
    }
    if v.is_empty() {
        return Err(Error::arg("v_values", "is empty"));
    }
    let (x, cx) = prep("u", u, u_weights)?;
    let (y, cy) = prep("v", v, v_weights)?;
    let direct = if p == 1.0 {
        merge_wpp(P1, &x, &cx, &y, &cy)
    } else if p == 2.0 {
        merge_wpp(P2, &x, &cx, &y, &cy)
    } else {
        merge_wpp(Pn(T::from_f64(p)), &x, &cx, &y, &cy)
    };
    if direct.is_finite() && (direct >= T::SAFE_MIN) {
        return Ok(direct);
    }
    // Overflow, or underflow (also a zero that may be one): W_p^p = (2M)^p S.
    let (half_max, s) = merge_scaled(p, &x, &cx, &y, &cy);
    if half_max == 0.0 {
        return Ok(0.0);
    }
    let log2 = p * (half_max.log2() + 1.0) + s.log2();
    if log2 < -1074.0 {
        return Err(Error::arg(
            "p",
            format!(
                "W_p^p = 2^{log2:.0} is below the float64 range (the smallest positive float64 \
                 is about 4.9e-324 = 2^-1074): rescale the values or use a smaller p \
                 (W_p = {:e})",
                2.0 * half_max * s.powf(1.0 / p)
            ),
        ));
    }
    if log2 >= 1024.0 {
        return Err(Error::arg(
            "p",
            format!(
                "W_p^p = 2^{log2:.0} is beyond the float64 range (about 1.8e308 = 2^1024): \
                 rescale the values or use a smaller p (W_p = {:e})",
                2.0 * half_max * s.powf(1.0 / p)
            ),
        ));
    }
    let value = (2.0 * half_max).powf(p) * s;
    Ok(if value.is_finite() && value > 0.0 {
        value
    } else {
        log2.exp2()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Brute force: integrate |F^-1 - G^-1|^p on a fine grid of quantile levels.
    fn brute(u: &[f64], uw: &[f64], v: &[f64], vw: &[f64], p: f64) -> f64 {
        let q = |vals: &[f64], w: &[f64], t: f64| {
            let mut idx: Vec<usize> = (0..vals.len()).collect();
            idx.sort_by(|&a, &b| vals[a].total_cmp(&vals[b]));
            let tot: f64 = w.iter().sum();
            let mut acc = 0.0;
            for &k in &idx {
                acc += w[k] / tot;
                if t < acc {
                    return vals[k];
                }
            }
            vals[idx[idx.len() - 1]]
        };
        let grid = 20_000;
        (0..grid)
            .map(|g| {
                let t = (f64::from(g) + 0.5) / f64::from(grid);
                (q(u, uw, t) - q(v, vw, t)).abs().powf(p)
            })
            .sum::<f64>()
            / f64::from(grid)
    }

    #[test]
    fn simple_values() {
        // Dirac at 0 vs Dirac at 3.
        assert!(
            (wasserstein_1d_pow(&[0.0f64], &[3.0], None, None, 1.0).unwrap() - 3.0).abs() < 1e-12
        );
        assert!(
            (wasserstein_1d_pow(&[0.0f64], &[3.0], None, None, 2.0).unwrap() - 9.0).abs() < 1e-12
        );
        // Uniform {0, 1} vs Dirac at 0: W1 = 0.5.
        let w = wasserstein_1d_pow(&[0.0f64, 1.0], &[0.0], None, None, 1.0).unwrap();
        assert!((w - 0.5).abs() < 1e-12);
    }

    #[test]
    fn errors() {
        assert!(wasserstein_1d_pow::<f64>(&[], &[1.0], None, None, 1.0).is_err());
        assert!(wasserstein_1d_pow(&[1.0f64], &[1.0], None, None, 0.5).is_err());
        assert!(wasserstein_1d_pow(&[1.0f64], &[1.0], Some(&[-1.0]), None, 1.0).is_err());
    }

    #[test]
    fn extreme_values_are_exact_or_refused() {
        let big = [-1.7e308f64, 1.7e308];
        assert_eq!(
            wasserstein_1d_pow(&big, &big, None, None, 1.0).unwrap(),
            0.0
        );
        assert_eq!(
            wasserstein_1d_pow(&big, &big, None, None, 2.0).unwrap(),
            0.0
        );
        let tiny = wasserstein_1d_pow(&[1e-200f64], &[3e-200], None, None, 1.0).unwrap();
        assert!((tiny - 2e-200).abs() < 1e-212);
        let w = wasserstein_1d_pow(&[0.0f64, 1.0], &[0.5, 3.0], None, None, 1000.0).unwrap();
        assert!((w / (0.5 * 2f64.powi(1000)) - 1.0).abs() < 1e-12, "{w}");
        assert!(wasserstein_1d_pow(&[1e200f64], &[-1e200], None, None, 2.0).is_err());
        assert!(wasserstein_1d_pow(&[1e-200f64], &[2e-200], None, None, 2.0).is_err());
    }

    proptest! {
        #[test]
        fn matches_brute_force(
            u in prop::collection::vec((-5.0f64..5.0, 0.1f64..3.0), 1..8),
            v in prop::collection::vec((-5.0f64..5.0, 0.1f64..3.0), 1..8),
            p in prop::sample::select(vec![1.0f64, 1.5, 2.0, 3.0]),
        ) {
            let (uv, uw): (Vec<f64>, Vec<f64>) = u.into_iter().unzip();
            let (vv, vw): (Vec<f64>, Vec<f64>) = v.into_iter().unzip();
            let exact = wasserstein_1d_pow(&uv, &vv, Some(&uw), Some(&vw), p).unwrap();
            let b = brute(&uv, &uw, &vv, &vw, p);
            prop_assert!((exact - b).abs() <= 2e-3 * (1.0 + b), "exact {} brute {}", exact, b);
        }

        #[test]
        fn symmetric_and_zero_on_self(
            u in prop::collection::vec((-5.0f64..5.0, 0.0f64..3.0), 1..10),
            v in prop::collection::vec((-5.0f64..5.0, 0.1f64..3.0), 1..10),
        ) {
            let (uv, mut uw): (Vec<f64>, Vec<f64>) = u.into_iter().unzip();
            uw[0] += 0.5;
            let (vv, vw): (Vec<f64>, Vec<f64>) = v.into_iter().unzip();
            let a = wasserstein_1d_pow(&uv, &vv, Some(&uw), Some(&vw), 2.0).unwrap();
            let b = wasserstein_1d_pow(&vv, &uv, Some(&vw), Some(&uw), 2.0).unwrap();
            prop_assert!((a - b).abs() <= 1e-12 * (1.0 + a));
            prop_assert_eq!(wasserstein_1d_pow(&uv, &uv, Some(&uw), Some(&uw), 2.0).unwrap(), 0.0);
        }
    }
}
