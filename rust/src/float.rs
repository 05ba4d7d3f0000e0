//! The floating-point element types the kernels are generic over (`f32` and `f64`).

use ndarray::LinalgScalar;

use crate::simd::{self, CostKind, Kernel};

/// A point coordinate type. Kernels compute in `Self` and accumulate sums in `f64`.
pub trait Real:
    LinalgScalar + PartialOrd + Default + Send + Sync + std::fmt::Debug + std::iter::Sum
{
    /// Name used in messages (`"float32"`, `"float64"`).
    const NAME: &'static str;
    /// Below this ratio `|x − y|² / (|x|² + |y|²)`, a distance obtained from a matrix product
    /// (`|x|² + |y|² − 2⟨x, y⟩`) has lost too many digits to cancellation and is recomputed
    /// directly.
    const CANCELLATION: f64;
    /// Below this magnitude a sum of `p`-th powers computed in `Self` may have lost precision
    /// to underflow (the smallest normal number times `2^mantissa_bits`); kernels then redo
    /// the pair in a scaled form in `f64`.
    const SAFE_MIN: f64;
    /// The largest finite value, as `f64`.
    const MAX: f64;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn abs(self) -> Self;
    fn powf(self, p: Self) -> Self;
    fn sqrt(self) -> Self;
    fn is_finite(self) -> bool;
    fn min(self, other: Self) -> Self;
    fn max(self, other: Self) -> Self;
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering;
    /// `c = a · b` on the calling thread (faer's kernels), `c (m, n)` row-major; `a` is the
    /// row-major `(m, k)` matrix, or its transpose `(k, m)` row-major when `a_transposed`, and
    /// likewise `b (k, n)`, or `(n, k)` when `b_transposed`. The bits of an entry depend on the
    /// shapes only, never on a thread count.
    fn gemm(
        a: &[Self],
        a_transposed: bool,
        b: &[Self],
        b_transposed: bool,
        c: &mut [Self],
        mnk: (usize, usize, usize),
    );
    /// `c = a · bᵀ` for row-major `a (m, k)`, `b (n, k)`, `c (m, n)`, on the calling thread.
    fn gemm_nt(a: &[Self], b: &[Self], c: &mut [Self], m: usize, n: usize, k: usize) {
        Self::gemm(a, false, b, true, c, (m, n, k));
    }
    /// The per-direction merge sums of `out.len()` directions (a multiple of
    /// [`simd::BLOCK`]) of two clouds in one slice by the SIMD kernel `kernel`, written to
    /// `out` (see [`simd::merge_f32_joint`]); `false` where there is no such kernel for this
    /// type.
    #[allow(clippy::too_many_arguments)]
    fn merge_blocks_joint(
        kernel: Kernel,
        cost: CostKind,
        data: &[[Self; 2]],
        xo: usize,
        n: usize,
        yo: usize,
        m: usize,
        out: &mut [Self],
    ) -> bool;
    /// Sorts the columns of the row-major `(keys.len() / lanes, lanes)` matrix `keys` with the
    /// comparator network `network` (the payload following) by this machine's SIMD kernel,
    /// with the portable operations' bits (see [`simd::sort_columns_f32`]); `false`, nothing
    /// touched, where no kernel applies.
    fn sort_network_simd(
        keys: &mut [Self],
        payload: Option<&mut [Self]>,
        lanes: usize,
        network: &[(u32, u32)],
    ) -> bool;
}

macro_rules! impl_real {
    ($t:ty, $name:literal, $cancel:literal, $joint:expr, $sort:expr) => {
        impl Real for $t {
            const NAME: &'static str = $name;
            const CANCELLATION: f64 = $cancel;
            const SAFE_MIN: f64 =
                <$t>::MIN_POSITIVE as f64 * (1u64 << <$t>::MANTISSA_DIGITS) as f64;
            const MAX: f64 = <$t>::MAX as f64;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
                <$t>::total_cmp(self, other)
            }
            fn gemm(
                a: &[Self],
                a_transposed: bool,
                b: &[Self],
                b_transposed: bool,
                c: &mut [Self],
                (m, n, k): (usize, usize, usize),
            ) {
                use faer::{Accum, MatMut, MatRef, Par};
                let a = if a_transposed {
                    MatRef::from_row_major_slice(a, k, m).transpose()
                } else {
                    MatRef::from_row_major_slice(a, m, k)
                };
                let b = if b_transposed {
                    MatRef::from_row_major_slice(b, n, k).transpose()
                } else {
                    MatRef::from_row_major_slice(b, k, n)
                };
                let c = MatMut::from_row_major_slice_mut(c, m, n);
                faer::linalg::matmul::matmul(c, Accum::Replace, a, b, 1.0, Par::Seq);
            }
            #[inline]
            fn merge_blocks_joint(
                kernel: Kernel,
                cost: CostKind,
                data: &[[Self; 2]],
                xo: usize,
                n: usize,
                yo: usize,
                m: usize,
                out: &mut [Self],
            ) -> bool {
                $joint(kernel, cost, data, xo, n, yo, m, out)
            }
            #[inline]
            fn sort_network_simd(
                keys: &mut [Self],
                payload: Option<&mut [Self]>,
                lanes: usize,
                network: &[(u32, u32)],
            ) -> bool {
                $sort(keys, payload, lanes, network)
            }
        }
    };
}

impl_real!(
    f32,
    "float32",
    0.05,
    simd::merge_f32_joint,
    simd::sort_columns_f32
);
// No SIMD merge for f64: the collections are f32, and f64 halves the lanes.
impl_real!(
    f64,
    "float64",
    1e-6,
    |_, _, _, _, _, _, _, _| false,
    simd::sort_columns_f64
);
