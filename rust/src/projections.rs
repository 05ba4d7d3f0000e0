//! Projection matrices: random directions on the unit sphere, drawn with an explicitly
//! specified generator, and the validated [`Projections`] view that the sliced
//! ([`crate::sliced`]) and quantile ([`crate::quantile`]) kernels project clouds with.
//!
//! The algorithm is fixed so that a seed means the same directions on every platform and in
//! every version: the 64-bit seed initialises a SplitMix64 stream, whose first four outputs
//! seed xoshiro256++; each coordinate is a standard normal from the Box–Muller transform of
//! two 53-bit uniforms (both outputs used, in order), drawn column by column; each column is
//! then divided by its Euclidean norm. The matrix has shape `(d, L)`: column `l` is direction
//! `l`, the convention of POT's `projections=` argument.

use crate::error::{checked_len, try_vec, try_with_capacity, Error, Result};
use crate::float::Real;

/// xoshiro256++ (Blackman & Vigna), seeded through SplitMix64.
#[derive(Debug, Clone)]
pub struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    /// Seeds the state from SplitMix64 outputs of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `(0, 1]`, 53 bits.
    fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// `d * n_projections` standard normals, column-major by direction, from `seed`.
fn normals(d: usize, n_projections: usize, seed: u64) -> Result<Vec<f64>> {
    let mut rng = Xoshiro256pp::new(seed);
    let what = format!("{n_projections} directions of dimension d={d}");
    let n = checked_len(d, n_projections, "n_projections", &what)?;
    let mut out = try_with_capacity(n.saturating_add(1), "n_projections", &what)?;
    while out.len() < n {
        let u1 = rng.next_open01();
        let u2 = rng.next_open01();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        out.push(r * theta.cos());
        out.push(r * theta.sin());
    }
    out.truncate(n);
    Ok(out)
}

/// Draws `n_projections` unit directions in dimension `d` from `seed`.
///
/// Returns a row-major `(d, n_projections)` matrix whose columns have unit norm.
///
/// # Errors
/// [`Error::InvalidArgument`] when `d` or `n_projections` is zero.
pub fn random_directions(d: usize, n_projections: usize, seed: u64) -> Result<Vec<f64>> {
    if d == 0 {
        return Err(Error::arg("d", "the dimension must be >= 1"));
    }
    if n_projections == 0 {
        return Err(Error::arg("n_projections", "must be >= 1"));
    }
    let z = normals(d, n_projections, seed)?;
    let what = format!("{n_projections} directions of dimension d={d}");
    let mut out = try_vec(z.len(), 0.0, "n_projections", &what)?;
    for l in 0..n_projections {
        let col = &z[l * d..(l + 1) * d];
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        for (k, v) in col.iter().enumerate() {
            out[k * n_projections + l] = v / norm;
        }
    }
    Ok(out)
}

/// Validates a user-given row-major `(d, n_projections)` projection matrix.
///
/// # Errors
/// [`Error::Shape`] when the matrix does not have `d` rows, [`Error::InvalidArgument`] for a
/// non-finite entry or a zero column.
pub fn check_projections<T: Real>(proj: &[T], d: usize, n_projections: usize) -> Result<()> {
    if n_projections == 0 || proj.len() != d * n_projections {
        return Err(Error::shape(
            "projections",
            format!("shape ({d}, L) with L >= 1 (d rows, one column per direction)"),
            format!("{} values for L={n_projections}", proj.len()),
        ));
    }
    if let Some(pos) = proj.iter().position(|v| !v.is_finite()) {
        return Err(Error::arg(
            "projections",
            format!(
                "entry ({}, {}) is not finite",
                pos / n_projections,
                pos % n_projections
            ),
        ));
    }
    for l in 0..n_projections {
        if (0..d).all(|k| proj[k * n_projections + l] == T::zero()) {
            return Err(Error::arg(
                "projections",
                format!("column {l} is zero; every column must be a non-zero direction"),
            ));
        }
    }
    Ok(())
}

/// A validated projection matrix: row-major `(d, n_projections)`, one direction per column
/// (checked by [`check_projections`]).
#[derive(Debug, Clone, Copy)]
pub struct Projections<'a, T> {
    data: &'a [T],
    dim: usize,
    n_projections: usize,
}

impl<'a, T: Real> Projections<'a, T> {
    /// Validates the matrix (shape, finite entries, no zero column).
    ///
    /// # Errors
    /// [`Error::Shape`] or [`Error::InvalidArgument`] naming `projections`.
    pub fn new(data: &'a [T], dim: usize, n_projections: usize) -> Result<Self> {
        check_projections(data, dim, n_projections)?;
        Ok(Self {
            data,
            dim,
            n_projections,
        })
    }

    /// Number of directions `L`.
    pub fn len(&self) -> usize {
        self.n_projections
    }

    /// Whether there are no directions (never true for a validated matrix).
    pub fn is_empty(&self) -> bool {
        self.n_projections == 0
    }

    /// Dimension `d` of the directions.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Projects the `n` points of one cloud: `(L, d) @ (d, n)`, so that row `l` holds the
    /// `n` projections on direction `l` contiguously.
    pub(crate) fn project(&self, points: &[T]) -> ndarray::Array2<T> {
        let (n, d, l) = (points.len() / self.dim, self.dim, self.n_projections);
        let mut out = ndarray::Array2::zeros((l, n));
        let c = out.as_slice_mut().expect("a new array is contiguous");
        // The directions are stored (d, L) and the points (n, d): both operands transposed.
        T::gemm(self.data, true, points, true, c, (l, n, d));
        out
    }

    /// Projects the `n` points of one cloud: `(n, d) @ (d, L)`, so that row `k` holds point
    /// `k`'s projections on every direction (the layout [`crate::sorting`] sorts).
    pub(crate) fn project_points(&self, points: &[T]) -> ndarray::Array2<T> {
        let (n, d, l) = (points.len() / self.dim, self.dim, self.n_projections);
        let mut out = ndarray::Array2::zeros((n, l));
        let c = out.as_slice_mut().expect("a new array is contiguous");
        T::gemm(points, false, self.data, false, c, (n, l, d));
        out
    }

    /// Checks that the directions have the dimension `dim` of the points of the set `name`.
    pub(crate) fn check_dim(&self, name: &str, dim: usize) -> Result<()> {
        if dim == self.dim {
            Ok(())
        } else {
            Err(Error::shape(
                "projections",
                format!("{dim} rows (the dimension of {name})"),
                format!("{} rows", self.dim),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_columns_and_reproducible() {
        let p = random_directions(5, 7, 42).unwrap();
        for l in 0..7 {
            let n: f64 = (0..5).map(|k| p[k * 7 + l] * p[k * 7 + l]).sum();
            assert!((n - 1.0).abs() < 1e-12);
        }
        assert_eq!(p, random_directions(5, 7, 42).unwrap());
        assert_ne!(p, random_directions(5, 7, 43).unwrap());
        // Drawing more directions keeps the first ones (column-major draw order).
        let q = random_directions(5, 8, 42).unwrap();
        for k in 0..5 {
            for l in 0..7 {
                assert_eq!(p[k * 7 + l], q[k * 8 + l]);
            }
        }
    }

    #[test]
    fn normals_look_standard() {
        let z = normals(1, 200_000, 1).unwrap();
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / z.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn impossible_sizes_are_errors() {
        for (d, l) in [(3, 1usize << 60), (usize::MAX, 2), (3, 1_000_000_000_000)] {
            assert!(
                matches!(random_directions(d, l, 0), Err(Error::Memory { .. })),
                "d={d} L={l}"
            );
        }
    }

    #[test]
    fn zero_column_rejected() {
        let p = [1.0f64, 0.0, 0.0, 0.0];
        assert!(check_projections(&p, 2, 2).is_err());
        assert!(check_projections(&[1.0f64, 0.0, 0.0, 1.0], 2, 2).is_ok());
        assert!(check_projections(&[1.0f64, 0.0, 0.0], 2, 2).is_err());
    }
}
