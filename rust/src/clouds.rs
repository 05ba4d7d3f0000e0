//! Ragged weighted point clouds in CSR form: `points (T, d)`, `weights (T,)`, `offsets (N+1,)`.
//!
//! Cloud `c` is made of the rows `offsets[c]..offsets[c+1]` of `points`, with the matching
//! entries of `weights`. Weights are non-negative and are normalised per cloud by the kernels
//! (in `f64`), so only their ratios matter.

use crate::error::{Error, Result};
use crate::float::Real;
use crate::parallel::Executor;

/// The largest `|x|` over `values`, as `f64` (`0` for none; NaN where some value is NaN,
/// else infinity where some value is infinite), in parallel chunks: a maximum does not
/// depend on their order, so any thread count gives the same value.
///
/// # Errors
/// An interrupt.
#[allow(clippy::eq_op)] // `x != x`: NaN
pub fn max_abs<T: Real>(values: &[T], exec: &Executor<'_>) -> Result<f64> {
    const CHUNK: usize = 1 << 16;
    let parts = exec.map(values.len().div_ceil(CHUNK), |c| {
        let chunk = &values[c * CHUNK..((c + 1) * CHUNK).min(values.len())];
        // Sixteen independent running maxima (a loop LLVM vectorises, where one running
        // maximum is a chain it keeps scalar). Infinities win the comparisons; NaN loses
        // them all, so it is flagged on the side by `x != x` (the test that vectorises: one
        // compare; `!is_finite()` made the pass twice as slow).
        let (mut lanes, mut nan) = ([T::zero(); 16], false);
        let mut rows = chunk.chunks_exact(16);
        for row in &mut rows {
            for (m, &x) in lanes.iter_mut().zip(row) {
                let a = x.abs();
                *m = if a > *m { a } else { *m };
                nan |= x != x;
            }
        }
        for &x in rows.remainder() {
            let a = x.abs();
            lanes[0] = if a > lanes[0] { a } else { lanes[0] };
            nan |= x != x;
        }
        if nan {
            return f64::NAN;
        }
        lanes
            .iter()
            .fold(T::zero(), |m, &x| if x > m { x } else { m })
            .to_f64()
    })?;
    Ok(parts.into_iter().fold(0.0, |m, x| {
        if m.is_nan() || x.is_nan() {
            f64::NAN
        } else {
            m.max(x)
        }
    }))
}

/// A borrowed, validated set of weighted point clouds.
#[derive(Debug, Clone, Copy)]
pub struct CloudsView<'a, T> {
    points: &'a [T],
    weights: &'a [T],
    offsets: &'a [i64],
    dim: usize,
}

impl<'a, T: Real> CloudsView<'a, T> {
    /// Checks the CSR structure and every value, then returns a view.
    ///
    /// `name` is the argument name used in error messages (for example `"A"`).
    ///
    /// # Errors
    /// [`Error::Shape`] when the arrays disagree in length, [`Error::InvalidArgument`] for bad
    /// offsets, [`Error::InvalidCloud`] naming the first bad cloud (empty, non-finite point,
    /// negative or non-finite weight, or weights summing to zero).
    pub fn new(
        name: &str,
        points: &'a [T],
        dim: usize,
        weights: &'a [T],
        offsets: &'a [i64],
    ) -> Result<Self> {
        Self::checked(name, points, dim, weights, offsets, &Executor::sequential())
    }

    /// [`CloudsView::new`], checking the clouds' values on `exec`'s threads (the same checks
    /// and, when several clouds are bad, the same error: the first bad cloud's).
    ///
    /// # Errors
    /// As [`CloudsView::new`], or an interrupt.
    pub fn checked(
        name: &str,
        points: &'a [T],
        dim: usize,
        weights: &'a [T],
        offsets: &'a [i64],
        exec: &Executor<'_>,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(Error::arg(
                name,
                "points must have at least one column (d >= 1)",
            ));
        }
        if !points.len().is_multiple_of(dim) {
            return Err(Error::shape(
                name,
                format!("a multiple of d={dim} point coordinates"),
                points.len().to_string(),
            ));
        }
        let total = points.len() / dim;
        if weights.len() != total {
            return Err(Error::shape(
                &format!("{name}.weights"),
                format!("length {total} (one weight per point)"),
                format!("length {}", weights.len()),
            ));
        }
        if offsets.len() < 2 {
            return Err(Error::arg(
                &format!("{name}.offsets"),
                "must have length n_clouds + 1 >= 2 (at least one cloud)",
            ));
        }
        if offsets[0] != 0 {
            return Err(Error::arg(
                &format!("{name}.offsets"),
                format!("must start at 0, starts at {}", offsets[0]),
            ));
        }
        for (c, w) in offsets.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(Error::arg(
                    &format!("{name}.offsets"),
                    format!(
                        "must be non-decreasing, offsets[{}]={} > offsets[{}]={}",
                        c,
                        w[0],
                        c + 1,
                        w[1]
                    ),
                ));
            }
        }
        let last = offsets[offsets.len() - 1];
        if last != total as i64 {
            return Err(Error::arg(
                &format!("{name}.offsets"),
                format!("must end at the number of points {total}, ends at {last}"),
            ));
        }
        let view = Self {
            points,
            weights,
            offsets,
            dim,
        };
        // Every cloud's check, in cloud order: the first error is the sequential one's.
        exec.map(view.len(), |c| view.check_cloud(name, c))?
            .into_iter()
            .find(Result::is_err)
            .unwrap_or(Ok(()))?;
        Ok(view)
    }

    fn check_cloud(&self, name: &str, c: usize) -> Result<()> {
        let (lo, hi) = self.range(c);
        if lo == hi {
            return Err(Error::cloud(name, c, "is empty (it has no points)"));
        }
        let mut sum = 0.0f64;
        for (k, &w) in self.weights[lo..hi].iter().enumerate() {
            if !w.is_finite() {
                return Err(Error::cloud(
                    name,
                    c,
                    format!("weight {k} is not finite ({w:?})"),
                ));
            }
            if w < T::zero() {
                return Err(Error::cloud(
                    name,
                    c,
                    format!("weight {k} is negative ({w:?})"),
                ));
            }
            sum += w.to_f64();
        }
        if sum <= 0.0 || !sum.is_finite() {
            return Err(Error::cloud(
                name,
                c,
                format!("weights must have a positive finite sum, got {sum}"),
            ));
        }
        let pts = &self.points[lo * self.dim..hi * self.dim];
        // A branch-free pass (vectorised) first; the position only for the error message.
        let all_finite = pts
            .chunks(64)
            .all(|c| c.iter().fold(true, |ok, x| ok & x.is_finite()));
        if all_finite {
            return Ok(());
        }
        if let Some(pos) = pts.iter().position(|x| !x.is_finite()) {
            return Err(Error::cloud(
                name,
                c,
                format!(
                    "point {} has a non-finite coordinate ({:?})",
                    pos / self.dim,
                    pts[pos]
                ),
            ));
        }
        Ok(())
    }

    /// Whether `other` views the very same arrays (then the two sets are one).
    pub fn same_as(&self, other: &Self) -> bool {
        std::ptr::eq(self.points, other.points)
            && std::ptr::eq(self.weights, other.weights)
            && std::ptr::eq(self.offsets, other.offsets)
            && self.dim == other.dim
    }

    /// Number of clouds.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no clouds (never true for a validated view).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of the points.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Total number of points over all clouds.
    pub fn total_points(&self) -> usize {
        self.weights.len()
    }

    /// Row range `lo..hi` of cloud `c`.
    pub fn range(&self, c: usize) -> (usize, usize) {
        (self.offsets[c] as usize, self.offsets[c + 1] as usize)
    }

    /// Number of points of cloud `c`.
    pub fn size(&self, c: usize) -> usize {
        let (lo, hi) = self.range(c);
        hi - lo
    }

    /// The points of cloud `c`, row-major `(n_c, d)`.
    pub fn points(&self, c: usize) -> &'a [T] {
        let (lo, hi) = self.range(c);
        self.point_rows(lo, hi)
    }

    /// The points of rows `lo..hi` of the set (consecutive clouds), row-major.
    pub fn point_rows(&self, lo: usize, hi: usize) -> &'a [T] {
        &self.points[lo * self.dim..hi * self.dim]
    }

    /// The (unnormalised) weights of cloud `c`.
    pub fn weights(&self, c: usize) -> &'a [T] {
        let (lo, hi) = self.range(c);
        &self.weights[lo..hi]
    }

    /// All points, row-major `(T, d)`.
    pub fn all_points(&self) -> &'a [T] {
        self.points
    }
}

/// Checks that the points of `b` have the dimension of the points of `a` (errors name `B`).
///
/// # Errors
/// [`Error::Shape`] naming `B` when the dimensions differ.
pub(crate) fn check_same_dim<T: Real>(a: &CloudsView<'_, T>, b: &CloudsView<'_, T>) -> Result<()> {
    if a.dim() == b.dim() {
        Ok(())
    } else {
        Err(Error::shape(
            "B",
            format!("points of dimension {} (the dimension of A)", a.dim()),
            format!("dimension {}", b.dim()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_abs_is_the_plain_maximum() {
        // Lengths around the chunk size; the largest magnitude negative, then NaN anywhere.
        for len in [0usize, 1, 7, (1 << 16) - 1, 1 << 16, (1 << 16) + 3, 3 << 16] {
            let mut v: Vec<f32> = (0..len)
                .map(|k| ((k * 7919) % 1013) as f32 - 500.0)
                .collect();
            if len > 2 {
                v[len / 2] = -1e30;
            }
            let want = v.iter().fold(0.0f64, |m, &x| m.max(f64::from(x.abs())));
            for threads in [1, 2, 3] {
                let ex = Executor::new(Some(threads)).unwrap();
                assert_eq!(
                    max_abs(&v, &ex).unwrap(),
                    want,
                    "len {len}, {threads} threads"
                );
            }
            if len > 0 {
                v[0] = f32::NEG_INFINITY;
                assert_eq!(max_abs(&v, &Executor::sequential()).unwrap(), f64::INFINITY);
                v[len - 1] = f32::NAN;
                assert!(
                    max_abs(&v, &Executor::sequential()).unwrap().is_nan(),
                    "len {len}"
                );
            }
        }
    }

    /// The checks on several threads report what the sequential ones do: the first bad cloud,
    /// wherever the chunks split (bad clouds in different chunks, and in the same one).
    #[test]
    fn checks_on_threads_report_the_first_bad_cloud() {
        let n_clouds = 500;
        let pts: Vec<f64> = (0..n_clouds).map(|c| c as f64).collect();
        let offsets: Vec<i64> = (0..=n_clouds as i64).collect();
        let ex = Executor::new(Some(3)).unwrap();
        for bad in [
            vec![],
            vec![7],
            vec![130, 70],
            vec![499, 64, 65],
            vec![0, 1, 2],
        ] {
            let mut w = vec![1.0f64; n_clouds];
            let mut p = pts.clone();
            for (k, &c) in bad.iter().enumerate() {
                if k % 2 == 0 {
                    w[c] = -1.0;
                } else {
                    p[c] = f64::NAN;
                }
            }
            let one = CloudsView::new("A", &p, 1, &w, &offsets).map(|_| ());
            let many = CloudsView::checked("A", &p, 1, &w, &offsets, &ex).map(|_| ());
            assert_eq!(one, many, "bad clouds {bad:?}");
            match bad.iter().min() {
                None => assert!(many.is_ok()),
                Some(&first) => assert!(
                    matches!(many, Err(Error::InvalidCloud { cloud, .. }) if cloud == first),
                    "{many:?}"
                ),
            }
        }
    }

    #[test]
    fn rejects_bad_structure() {
        let pts = [0.0f64, 1.0, 2.0, 3.0];
        let w = [1.0, 1.0];
        assert!(CloudsView::new("A", &pts, 2, &w, &[0, 2]).is_ok());
        assert!(matches!(
            CloudsView::new("A", &pts, 2, &w, &[1, 2]),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            CloudsView::new("A", &pts, 2, &w, &[0, 2, 1]),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            CloudsView::new("A", &pts, 2, &w, &[0, 0, 2]),
            Err(Error::InvalidCloud { cloud: 0, .. })
        ));
        assert!(matches!(
            CloudsView::new("A", &pts, 2, &[1.0, -1.0], &[0, 1, 2]),
            Err(Error::InvalidCloud { cloud: 1, .. })
        ));
        assert!(matches!(
            CloudsView::new("A", &pts, 2, &[0.0, 0.0], &[0, 2]),
            Err(Error::InvalidCloud { cloud: 0, .. })
        ));
        let a = CloudsView::new("A", &pts, 2, &w, &[0, 2]).unwrap();
        let b = CloudsView::new("B", &pts, 1, &[1.0; 4], &[0, 4]).unwrap();
        assert!(check_same_dim(&a, &a).is_ok());
        assert!(matches!(check_same_dim(&a, &b), Err(Error::Shape { .. })));
        let nan = [0.0, f64::NAN, 2.0, 3.0];
        assert!(matches!(
            CloudsView::new("A", &nan, 2, &w, &[0, 1, 2]),
            Err(Error::InvalidCloud { cloud: 0, .. })
        ));
    }
}
