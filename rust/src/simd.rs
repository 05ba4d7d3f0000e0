//! The crate's one module with `unsafe` code: the merge of sliced Wasserstein across
//! directions, and the comparator-network sort of a cloud's projections
//! ([`sort_columns_f32`](crate::simd::sort_columns_f32), AVX2), with SIMD intrinsics behind
//! runtime CPU-feature detection.
//!
//! The merge of two sorted weighted sequences (see [`crate::wasserstein1d`]) takes exactly
//! `n + m − 1` steps in every direction, so vector lanes holding different directions of the
//! same pair of clouds stay in lock-step: each step loads one entry per lane, the successor
//! of the entry it consumed, and no lane ever waits for another. The kernels here do, per
//! lane, the operations of the scalar merge of [`crate::sliced`] in the same order (a multiply
//! then an add, never a fused multiply-add), so each direction's sum has the same bits as the
//! scalar one; the caller adds the directions up in the scalar order, so whole distances are
//! bit-identical.
//!
//! A lane holds its two current entries by role, not by cloud: the one the last step kept
//! and the one it loaded. The costs `|d|` and `d²` are symmetric (`x − y` and `y − x` round
//! to exact negatives), so a step needs only which of the two it consumes: the smaller weight.
//! Where the weights are equal a lane may consume the second cloud's entry where the scalar
//! merge consumes the first's; every later step with that same cumulative weight has zero mass
//! and adds nothing, and both merges leave a run of equal weights in the same state, so the
//! sums keep the scalar bits. Against per-cloud state this drops four selects and one bound
//! per step: on an Intel Xeon (2 cores, 512² general clouds, n = 64, d = 256, L = 128) the
//! AVX-512 kernel went from 0.97 to 0.89 s, the AVX2 one from 1.85 to 1.63 s.
//!
//! Both clouds' sorted representations lie in one allocation ([`crate::sliced::Sorted::joint`]),
//! so one 32-bit entry index per lane addresses either, and each step loads only the entry it
//! consumed: one 64-bit `[cumulative weight, value]` load per lane and step.
//!
//! * x86_64, AVX-512F: sixteen `f32` directions per vector, three vectors in flight; entry
//!   positions are float offsets and the loads are two `vgatherdpd` of eight 64-bit entries
//!   per step, split into weights and values by two permutes. The default on Intel and on
//!   AMD from Zen 5 on ([`available`](crate::simd::available)): on the Intel Xeon measured
//!   it merged 1.8× faster than the AVX2 kernel (0.89 s against 1.63 s, above), on an AMD
//!   Zen 5 1.6× faster (1024² general clouds, before the by-role state); on an AMD Zen 4 it
//!   was 0.8-0.9× as fast (32-bit gathers).
//! * x86_64: AVX2, eight `f32` directions per vector, two vectors in flight. The eight loads
//!   are scalar loads, not `vgatherdps`: on the machine measured (AMD Zen 4) the microcoded
//!   gather was slower.
//! * aarch64: NEON, four `f32` directions per vector, four vectors in flight. NEON is part of
//!   the aarch64 baseline (no build flag), but is still detected at run time like AVX2; there
//!   is no prefetch (the aarch64 prefetch intrinsic is not stable).
//!
//! Everything else (other CPUs, `f64`, orders other than 1 and 2, or `SEMOT_SIMD=off` in the
//! environment) takes the scalar merge, against which these kernels are tested bit for bit.
//!
//! Cumulative weights are never NaN and never −0 (they come from validated weights, see
//! [`crate::wasserstein1d::sorted_representation`]), so `min` and `max` of two of them need no
//! care for either. Memory safety does not depend on the data: every load index is clamped to
//! the slice's last entry before it is used, and the block sizes are checked against the
//! slice on entry (for the sort: every comparator's rows against the matrix, before any
//! access).
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::sync::OnceLock;

/// The ground cost of a merge, for the kernels that specialise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostKind {
    /// `|d|`.
    Abs,
    /// `d²`.
    Square,
    /// Any other order (no SIMD kernel).
    Other,
}

/// Directions one call of [`merge_f32_joint`] handles at a time: the kernels' vector width times the
/// vectors they keep in flight.
pub const BLOCK: usize = 16;

/// Vectors of sixteen directions the AVX-512 kernel keeps in flight (see `avx512::merge` for
/// the measurements).
const AVX512_VECTORS: usize = 3;
// `avx512::merge` takes the rest of a call in two vectors or one: it has arms for 3, 2 and 1.
const _: () = assert!(AVX512_VECTORS == 3);

/// Directions the AVX-512 kernel merges at once: the group [`crate::sliced::Sorted::pair_sums`]
/// hands it, and the largest group of any kernel.
pub const AVX512_GROUP: usize = AVX512_VECTORS * BLOCK;

/// The largest `BLOCK · (n + 1)` for which entry indices fit the kernels' 32-bit lanes.
const MAX_INDEX: usize = i32::MAX as usize;

/// Which kernel [`merge_f32_joint`] runs on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// x86_64 with AVX-512F.
    Avx512,
    /// x86_64 with AVX2.
    Avx2,
    /// aarch64 with NEON.
    Neon,
    /// No SIMD kernel: the caller's scalar merge.
    Scalar,
}

/// The kernel of this machine, detected once: the first of [`available`]. `SEMOT_SIMD` in
/// the environment overrides the choice, for comparisons: `off` (or `0`, `false`, `no`)
/// selects the scalar merge, `avx2` or `avx512` that kernel where the CPU has it (else the
/// scalar merge). Every kernel gives the scalar merge's bits, so the choice changes the speed
/// only.
pub fn kernel() -> Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        let choice = std::env::var("SEMOT_SIMD").map(|v| v.trim().to_ascii_lowercase());
        let pick = |k: Kernel| {
            if detect().contains(&k) {
                k
            } else {
                Kernel::Scalar
            }
        };
        match choice.as_deref() {
            Ok("off" | "0" | "false" | "no") => Kernel::Scalar,
            Ok("avx2") => pick(Kernel::Avx2),
            Ok("avx512") => pick(Kernel::Avx512),
            _ => available().first().copied().unwrap_or(Kernel::Scalar),
        }
    })
}

/// The SIMD kernels this CPU runs by default, the preferred first (empty where there is
/// none).
///
/// On x86_64 the AVX-512 kernel comes first on Intel CPUs and on AMD from Zen 5 on (family
/// `0x1A`), whose gathers pay: on an Intel Xeon (2 cores, family 6 model 167) it merged 1.89×
/// faster than the AVX2 kernel, whose loads are scalar (3.71 s against 7.01 s on 1024 × 1024
/// general-weight clouds, n = 64, d = 256, L = 128, `benches/report.py`); on an AMD Zen 5
/// (EPYC, 2 cores) 1.58× faster (4.17 s against 6.58 s, before the by-role lane state). On AMD Zen 4 (family `0x19`), whose gathers are slow, the AVX2 kernel was the
/// faster one (0.59 s against 0.75 s at 256 × 256, measured before the AVX-512 loads became
/// 64-bit gathers), so earlier AMD CPUs keep it first (`SEMOT_SIMD=avx512` selects the other).
pub fn available() -> Vec<Kernel> {
    #[cfg(target_arch = "x86_64")]
    let skip = (!gathers_pay()).then_some(Kernel::Avx512);
    #[cfg(not(target_arch = "x86_64"))]
    let skip = None;
    detect().into_iter().filter(|&k| Some(k) != skip).collect()
}

/// Every SIMD kernel this CPU can run (what the tests compare with the scalar merge).
pub fn supported() -> Vec<Kernel> {
    detect()
}

/// Whether this CPU's AVX-512 gathers are fast enough for the AVX-512 kernel to lead: Intel,
/// or AMD from family `0x1A` (Zen 5) on.
#[cfg(target_arch = "x86_64")]
fn gathers_pay() -> bool {
    // SAFETY: `cpuid` leaves 0 and 1 exist on every x86_64 CPU and have no side effects
    // (newer toolchains declare the intrinsic safe, older ones unsafe: hence the allow).
    #[allow(unused_unsafe)]
    let (vendor, signature) = unsafe {
        (
            std::arch::x86_64::__cpuid(0),
            std::arch::x86_64::__cpuid(1).eax,
        )
    };
    let vendor: Vec<u8> = [vendor.ebx, vendor.edx, vendor.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    // The family is the base family, plus the extended family where the base is 0xF.
    let base = (signature >> 8) & 0xF;
    let family = if base == 0xF {
        base + ((signature >> 20) & 0xFF)
    } else {
        base
    };
    vendor == b"GenuineIntel" || (vendor == b"AuthenticAMD" && family >= 0x1A)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Vec<Kernel> {
    let mut kernels = Vec::new();
    if std::arch::is_x86_feature_detected!("avx512f") {
        kernels.push(Kernel::Avx512);
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        kernels.push(Kernel::Avx2);
    }
    kernels
}

#[cfg(target_arch = "aarch64")]
fn detect() -> Vec<Kernel> {
    if std::arch::is_aarch64_feature_detected!("neon") {
        vec![Kernel::Neon]
    } else {
        Vec::new()
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> Vec<Kernel> {
    Vec::new()
}

/// Per-direction merge sums of `out.len()` directions of two clouds whose sorted
/// representations lie in one slice, written to `out`; `false` (and `out` untouched) where no
/// kernel applies (then the caller merges those directions itself). `out.len()` must be a
/// positive multiple of [`BLOCK`].
///
/// `data` holds the blocks of the first cloud from entry `xo` on, direction `l` at entries
/// `xo + l·(n + 1) .. xo + (l + 1)·(n + 1)` (`n + 1` entries `[cumulative weight, value]`, see
/// [`crate::wasserstein1d`]), and those of the second cloud, with `m` points, from entry `yo`
/// on. `out[l]` is `Σ_steps Δt · cost(x − y)` over the `n + m − 1` merge steps of direction
/// `l`, accumulated in `f32` with the scalar merge's operations in the scalar merge's order
/// (so with its bits).
#[allow(clippy::too_many_arguments)]
pub fn merge_f32_joint(
    kernel: Kernel,
    cost: CostKind,
    data: &[[f32; 2]],
    xo: usize,
    n: usize,
    yo: usize,
    m: usize,
    out: &mut [f32],
) -> bool {
    let dirs = out.len();
    if cost == CostKind::Other
        || n == 0
        || m == 0
        || dirs == 0
        || !dirs.is_multiple_of(BLOCK)
        || data.len() > MAX_INDEX
    {
        return false;
    }
    let (sx, sy) = (n + 1, m + 1);
    let fits = |o: usize, s: usize| {
        dirs.checked_mul(s)
            .and_then(|len| o.checked_add(len))
            .is_some_and(|end| end <= data.len())
    };
    if !fits(xo, sx) || !fits(yo, sy) {
        return false;
    }
    let abs = cost == CostKind::Abs;
    // The AVX-512 kernel addresses floats, not entries: beyond `i32::MAX / 2` entries (8 GiB
    // of sorted projections) it hands over to the AVX2 one.
    let kernel = if kernel == Kernel::Avx512 && data.len() > MAX_INDEX / 2 {
        Kernel::Avx2
    } else {
        kernel
    };
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
            // SAFETY: the guard checked that this CPU has AVX-512F (a cached flag, whatever
            // kernel the caller asked for); both clouds' `dirs` blocks lie inside `data` and
            // every float offset fits 32 bits (`data` has at most `i32::MAX / 2` entries),
            // checked above, which is all `avx512::merge` reads.
            unsafe { avx512::merge(abs, data, (xo, sx), (yo, sy), out) };
            true
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
            for (g, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
                let (gx, gy) = (xo + g * BLOCK * sx, yo + g * BLOCK * sy);
                // SAFETY: the guard checked that this CPU has AVX2 (a cached flag, whatever
                // kernel the caller asked for); the `BLOCK` blocks of group `g` of both clouds
                // lie inside `data` (all `dirs` do) and every entry index fits 32 bits,
                // checked above, which is all `avx2::merge` reads.
                chunk.copy_from_slice(&unsafe { avx2::merge(abs, data, gx, sx, gy, sy) });
            }
            true
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon if std::arch::is_aarch64_feature_detected!("neon") => {
            for (g, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
                let (gx, gy) = (xo + g * BLOCK * sx, yo + g * BLOCK * sy);
                // SAFETY: the guard checked that this CPU has NEON; the `BLOCK` blocks of
                // group `g` of both clouds lie inside `data` (all `dirs` do) and every entry
                // index fits 32 bits, checked above, which is all `neon::merge` reads.
                chunk.copy_from_slice(&unsafe { neon::merge(abs, data, gx, sx, gy, sy) });
            }
            true
        }
        _ => false,
    }
}

/// The safe entry points of the AVX2 network sort, one per float type.
macro_rules! network_sort_entry {
    ($(#[$doc:meta])* $name:ident, $t:ty) => {
        $(#[$doc])*
        pub fn $name(
            keys: &mut [$t],
            payload: Option<&mut [$t]>,
            lanes: usize,
            network: &[(u32, u32)],
        ) -> bool {
            #[cfg(target_arch = "x86_64")]
            if sort_applies(keys.len(), payload.as_deref().map(<[$t]>::len), lanes, network) {
                // SAFETY: `sort_applies` checked that this CPU has AVX2 and that every
                // comparator's rows lie inside `keys` (and `payload`, of the same length),
                // which is all the kernel reads and writes.
                unsafe { avx2::$name(keys, payload, lanes, network) };
                return true;
            }
            let _ = (keys, payload, lanes, network);
            false
        }
    };
}

network_sort_entry!(
    /// Sorts every column of the row-major `(keys.len() / lanes, lanes)` matrix `keys` with
    /// the comparator network `network`, applying the same exchanges to `payload` where
    /// given: the operations of [`crate::sorting::sort_columns`] (and `sort_columns_by_key`),
    /// lane for lane, so the same bits. `false` (nothing touched) where no kernel applies: no
    /// AVX2, `SEMOT_SIMD` off, or shapes that do not match (a comparator `(i, j)` must have
    /// `i < j <` rows).
    ///
    /// Each comparator is an elementwise compare-exchange of two rows, eight `f32` lanes per
    /// AVX2 vector; the portable build is limited to SSE2 (see the sorting module for why it
    /// is not compiled for AVX2), half as wide. Columns past the last full vector take the
    /// portable operations.
    sort_columns_f32,
    f32
);
network_sort_entry!(
    /// [`sort_columns_f32`] for `f64` (four lanes per vector).
    sort_columns_f64,
    f64
);

/// Whether the AVX2 network sort runs: the CPU has AVX2, SIMD is not switched off, and the
/// shapes are consistent (`len` a multiple of `lanes`, the payload as long, every comparator
/// `i < j` within the rows).
#[cfg(target_arch = "x86_64")]
fn sort_applies(len: usize, payload: Option<usize>, lanes: usize, network: &[(u32, u32)]) -> bool {
    if kernel() == Kernel::Scalar || !std::arch::is_x86_feature_detected!("avx2") {
        return false;
    }
    if lanes == 0 || !len.is_multiple_of(lanes) || payload.is_some_and(|p| p != len) {
        return false;
    }
    let rows = len / lanes;
    network.iter().all(|&(i, j)| i < j && (j as usize) < rows)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{AVX512_GROUP, AVX512_VECTORS as V, BLOCK};
    use std::arch::x86_64::{
        __m512, __m512i, __mmask16, _mm512_abs_ps, _mm512_add_epi32, _mm512_castpd_ps,
        _mm512_castsi512_si256, _mm512_cmp_ps_mask, _mm512_extracti64x4_epi64, _mm512_i32gather_pd,
        _mm512_mask_add_ps, _mm512_mask_blend_epi32, _mm512_mask_blend_ps, _mm512_max_ps,
        _mm512_min_epi32, _mm512_min_ps, _mm512_mul_ps, _mm512_mullo_epi32, _mm512_permutex2var_ps,
        _mm512_set1_epi32, _mm512_setr_epi32, _mm512_setzero_ps, _mm512_storeu_ps, _mm512_sub_ps,
        _mm_prefetch, _CMP_GT_OQ, _CMP_LE_OQ, _MM_HINT_T0,
    };

    /// Directions per vector.
    const LANES: usize = 16;

    /// Loads the entries whose weights are the floats at `at` (sixteen lanes, float offsets
    /// `2e` of entries `e` of `base`) as `(weights, values)`: two gathers of eight 64-bit
    /// entries (`[weight, value]` each), then one two-source permute per output to split
    /// weights from values. Sixteen element loads per vector where two gathers of sixteen
    /// floats made thirty-two.
    ///
    /// # Safety
    /// AVX-512F must be available, and every lane of `at` must be `2e` for an entry `e` in
    /// bounds of `base`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    // Gathers have no alignment requirement on their elements, so reading 4-byte-aligned
    // entries through an `f64` pointer is sound.
    #[allow(clippy::cast_ptr_alignment)]
    unsafe fn load16(base: *const [f32; 2], at: __m512i) -> (__m512, __m512) {
        let entries = base.cast::<f64>();
        let (lo, hi) = (
            _mm512_castsi512_si256(at),
            _mm512_extracti64x4_epi64::<1>(at),
        );
        // SAFETY: lane `k` of `lo` / `hi` is `2e` for an entry `e` in bounds (caller's
        // contract); scale 4 makes that the byte offset `8e` of the 8-byte entry `e`, which
        // the gather reads whole.
        let (g0, g1) = unsafe {
            (
                _mm512_castpd_ps(_mm512_i32gather_pd::<4>(lo, entries)),
                _mm512_castpd_ps(_mm512_i32gather_pd::<4>(hi, entries)),
            )
        };
        // g0 = [w0 v0 w1 v1 .. w7 v7], g1 the same for lanes 8..16: evens are the weights.
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        (
            _mm512_permutex2var_ps(g0, evens, g1),
            _mm512_permutex2var_ps(g0, odds, g1),
        )
    }

    /// One vector of sixteen directions: per lane the current entry of each cloud, the merge
    /// state, and the float offset of the next entry of each. Positions are float offsets
    /// into the joint slice: entry `e` is at `2e`.
    ///
    /// The two entries are held by role, not by cloud: `kept` is the entry the last step did
    /// not consume, `new` the one it loaded (at the start: the first cloud's first entry and
    /// the second's). The costs `|d|` and `d²` are symmetric in their two values (`x − y` and
    /// `y − x` round to exact negatives), so a lane needs only which entry a step consumes, not
    /// whose it is: that saves the four per-cloud selects of the loaded entry and one of the
    /// two position bounds. Where both weights are equal the lane may consume the second
    /// cloud's entry where the scalar merge consumes the first's; every step with that weight
    /// but the first then has zero mass (and adds nothing), and both merges leave the run of
    /// equal weights in the same state, so the sums keep the scalar bits.
    #[derive(Clone, Copy)]
    struct Lanes {
        kept_w: __m512,
        kept_v: __m512,
        new_w: __m512,
        new_v: __m512,
        prev: __m512,
        acc: __m512,
        kept_next: __m512i,
        new_next: __m512i,
        last: __m512i,
    }

    impl Lanes {
        /// The lanes of directions `16v .. 16v + 16`.
        ///
        /// # Safety
        /// AVX-512F must be available, and `base` must be `merge`'s `data` under its contract
        /// with directions `16v .. 16v + 16` among the caller's and `len` entries.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn new(
            base: *const [f32; 2],
            len: usize,
            v: usize,
            (xo, sx): (usize, usize),
            (yo, sy): (usize, usize),
        ) -> Self {
            let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            // Lane k merges direction 16v + k, whose block of the first cloud starts at entry
            // xo + (16v + k)·sx, float 2·(xo + (16v + k)·sx).
            let first = |o: usize, s: usize| {
                _mm512_add_epi32(
                    _mm512_mullo_epi32(lane, _mm512_set1_epi32(2 * s as i32)),
                    _mm512_set1_epi32(2 * (o + LANES * v * s) as i32),
                )
            };
            let (ix, iy) = (first(xo, sx), first(yo, sy));
            // SAFETY: the first entry of each lane's block is in bounds (caller's contract).
            let ((kept_w, kept_v), (new_w, new_v)) =
                unsafe { (load16(base, ix), load16(base, iy)) };
            let entry = _mm512_set1_epi32(2);
            let zero = _mm512_setzero_ps();
            Self {
                kept_w,
                kept_v,
                new_w,
                new_v,
                prev: zero,
                acc: zero,
                kept_next: _mm512_add_epi32(ix, entry),
                new_next: _mm512_add_epi32(iy, entry),
                // The last entry of the slice: with sane weights a lane never leaves its own
                // blocks (the sentinels stop it); whatever the weights hold, no load leaves
                // the slice.
                last: _mm512_set1_epi32(2 * (len as i32 - 1)),
            }
        }

        /// One merge step in every lane: the scalar merge's step of [`crate::sliced`].
        ///
        /// # Safety
        /// AVX-512F must be available, and `base` must be the slice the lanes were made for.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn step<const ABS: bool>(&mut self, base: *const [f32; 2]) {
            // `vminps` of two weights in [0, 2]: the smaller, either where they are equal.
            let t = _mm512_min_ps(self.kept_w, self.new_w);
            let dt = _mm512_sub_ps(t, self.prev);
            let d = _mm512_sub_ps(self.kept_v, self.new_v);
            let term = if ABS {
                _mm512_abs_ps(d)
            } else {
                _mm512_mul_ps(d, d)
            };
            // A step of zero mass adds nothing, even where the cost is not finite: the lanes
            // where `dt > 0` add `dt · term`, the others keep their sum (where the scalar
            // merge adds +0, which leaves unchanged a sum that starts at +0 and never
            // decreases).
            let positive: __mmask16 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(dt, _mm512_setzero_ps());
            self.acc = _mm512_mask_add_ps(self.acc, positive, self.acc, _mm512_mul_ps(dt, term));
            self.prev = t;
            // Set where the kept entry is consumed (it is the smaller), clear where the new one
            // is; the other one is kept.
            let kept_goes: __mmask16 = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(self.kept_w, self.new_w);
            self.kept_w = _mm512_max_ps(self.kept_w, self.new_w);
            self.kept_v = _mm512_mask_blend_ps(kept_goes, self.kept_v, self.new_v);
            let load = _mm512_mask_blend_epi32(kept_goes, self.new_next, self.kept_next);
            self.kept_next = _mm512_mask_blend_epi32(kept_goes, self.kept_next, self.new_next);
            let load = _mm512_min_epi32(load, self.last);
            self.new_next = _mm512_add_epi32(load, _mm512_set1_epi32(2));
            // SAFETY: every lane of `load` is at most the float offset of the slice's last
            // entry, and at least that of a lane's first entry: positions start at a block's
            // first entry (in bounds, `new`'s contract) and only grow.
            (self.new_w, self.new_v) = unsafe { load16(base, load) };
        }
    }

    /// See [`super::merge_f32_joint`] (`abs`: the cost `|d|`, else `d²`; `out.len()` a
    /// multiple of [`BLOCK`]).
    ///
    /// # Safety
    /// AVX-512F must be available; `data` must hold `out.len()` blocks of `x.1` entries from
    /// `x.0` on and of `y.1` entries from `y.0` on, and have at most `i32::MAX / 2` entries
    /// (float offsets fit 32 bits).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn merge(
        abs: bool,
        data: &[[f32; 2]],
        x: (usize, usize),
        y: (usize, usize),
        out: &mut [f32],
    ) {
        debug_assert!(out.len().is_multiple_of(BLOCK));
        debug_assert!(x.0 + out.len() * x.1 <= data.len() && y.0 + out.len() * y.1 <= data.len());
        debug_assert!(data.len() <= i32::MAX as usize / 2);
        // Three vectors in flight (48 directions), then two or one for the rest. With the
        // 64-bit gathers the step is bound by its dependency chain (weights, comparison,
        // index, gather), not by the loads: on an AMD Zen 5, 1024^2 general clouds took
        // 5.2-5.3 s with two vectors, 4.4-4.6 s with three, the same with four. With the
        // by-role state, on an Intel Xeon (512^2): 0.88-0.90 s with three, 0.85-0.91 s with
        // four, 0.87-0.94 s with five.
        for (g, chunk) in out.chunks_mut(AVX512_GROUP).enumerate() {
            let done = g * AVX512_GROUP;
            let (gx, gy) = ((x.0 + done * x.1, x.1), (y.0 + done * y.1, y.1));
            // SAFETY: the directions `done .. done + chunk.len()` of both clouds lie in `data`
            // (caller's contract), and each call reads `chunk.len()` of them.
            unsafe {
                match (chunk.len() / LANES, abs) {
                    (V, true) => merge_cost::<true, V>(data, gx, gy, chunk),
                    (V, false) => merge_cost::<false, V>(data, gx, gy, chunk),
                    (2, true) => merge_cost::<true, 2>(data, gx, gy, chunk),
                    (2, false) => merge_cost::<false, 2>(data, gx, gy, chunk),
                    (_, true) => merge_cost::<true, 1>(data, gx, gy, chunk),
                    (_, false) => merge_cost::<false, 1>(data, gx, gy, chunk),
                }
            }
        }
    }

    /// [`merge`] of `16 · V` directions (`out.len()`), `V` vectors in flight.
    ///
    /// # Safety
    /// As for [`merge`], with `out.len() = 16 · V`.
    #[target_feature(enable = "avx512f")]
    unsafe fn merge_cost<const ABS: bool, const V: usize>(
        data: &[[f32; 2]],
        x: (usize, usize),
        y: (usize, usize),
        out: &mut [f32],
    ) {
        debug_assert_eq!(out.len(), V * LANES);
        let steps = x.1 + y.1 - 3;
        let base = data.as_ptr();
        // The lanes walk 2·16·V streams at uneven paces, more than the hardware prefetchers
        // follow: ask for every line of both clouds' blocks up front.
        for (o, s) in [x, y] {
            for e in (o..o + V * LANES * s).step_by(8) {
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(e).cast::<i8>());
            }
        }
        // SAFETY: the blocks of directions 0..16V lie in `data` (caller's contract), so
        // `Lanes::new` loads in bounds, and `step` clamps every load to the slice's last entry.
        unsafe {
            let mut lanes: [Lanes; V] =
                std::array::from_fn(|v| Lanes::new(base, data.len(), v, x, y));
            for _ in 0..steps {
                for s in &mut lanes {
                    s.step::<ABS>(base);
                }
            }
            for (s, chunk) in lanes.iter().zip(out.chunks_exact_mut(LANES)) {
                _mm512_storeu_ps(chunk.as_mut_ptr(), s.acc);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::BLOCK;
    use std::arch::x86_64::{
        __m256, __m256i, _mm256_add_epi32, _mm256_add_ps, _mm256_and_ps, _mm256_andnot_ps,
        _mm256_blendv_epi8, _mm256_blendv_pd, _mm256_blendv_ps, _mm256_castpd128_pd256,
        _mm256_castpd_ps, _mm256_castps_si256, _mm256_cmp_pd, _mm256_cmp_ps, _mm256_insertf128_pd,
        _mm256_loadu_pd, _mm256_loadu_ps, _mm256_max_pd, _mm256_max_ps, _mm256_min_epi32,
        _mm256_min_pd, _mm256_min_ps, _mm256_mul_ps, _mm256_mullo_epi32, _mm256_set1_epi32,
        _mm256_set1_ps, _mm256_setr_epi32, _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_storeu_pd,
        _mm256_storeu_ps, _mm256_storeu_si256, _mm256_sub_ps, _mm_load_sd, _mm_loadh_pd,
        _mm_prefetch, _CMP_GT_OQ, _CMP_LE_OQ, _CMP_LT_OQ, _MM_HINT_T0,
    };

    /// Loads the entries at `idx` (eight lanes, entry indices into `base`) as `(weights,
    /// values)`, lanes in order.
    ///
    /// # Safety
    /// AVX2 must be available, and `base[idx[k]]` must be in bounds for every lane `k`.
    #[inline]
    #[target_feature(enable = "avx2")]
    // `_mm256_storeu_si256` and `_mm_load_sd`/`_mm_loadh_pd` do unaligned accesses, so the
    // casts to more strictly aligned pointer types are sound.
    #[allow(clippy::cast_ptr_alignment)]
    unsafe fn load8(base: *const [f32; 2], idx: __m256i) -> (__m256, __m256) {
        // Unsigned (the indices are below `i32::MAX`): widening them to addresses is then the
        // free zero-extension of a 32-bit move, not a sign extension per lane.
        let mut at = [0u32; 8];
        // SAFETY: `at` holds the 8 lanes of 32 bits the store writes.
        unsafe { _mm256_storeu_si256(at.as_mut_ptr().cast::<__m256i>(), idx) };
        let e = |k: usize| base.wrapping_add(at[k] as usize).cast::<f64>();
        // SAFETY: every `at[k]` is the index of an entry of `base` by the caller's contract,
        // and each load reads that one 8-byte entry.
        let (e01, e23, e45, e67) = unsafe {
            (
                _mm_loadh_pd(_mm_load_sd(e(0)), e(1)),
                _mm_loadh_pd(_mm_load_sd(e(2)), e(3)),
                _mm_loadh_pd(_mm_load_sd(e(4)), e(5)),
                _mm_loadh_pd(_mm_load_sd(e(6)), e(7)),
            )
        };
        // [e0 e1 | e4 e5] and [e2 e3 | e6 e7], as [w v w v | w v w v] floats.
        let lo = _mm256_castpd_ps(_mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(e01), e45));
        let hi = _mm256_castpd_ps(_mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(e23), e67));
        (
            _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi),
            _mm256_shuffle_ps::<0b11_01_11_01>(lo, hi),
        )
    }

    /// One vector of eight directions: per lane the two current entries, held by role as in
    /// the AVX-512 kernel (`kept` and `new`, see `avx512::Lanes`), the merge state, and the
    /// entry index of the next entry of each.
    #[derive(Clone, Copy)]
    struct Lanes {
        kept_w: __m256,
        kept_v: __m256,
        new_w: __m256,
        new_v: __m256,
        prev: __m256,
        acc: __m256,
        kept_next: __m256i,
        new_next: __m256i,
        last: __m256i,
    }

    impl Lanes {
        /// The lanes of directions `8v .. 8v + 8`.
        ///
        /// # Safety
        /// AVX2 must be available, and `base` must be `merge`'s `data` under its contract,
        /// with `len` entries.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn new(
            base: *const [f32; 2],
            len: usize,
            v: usize,
            (xo, sx): (usize, usize),
            (yo, sy): (usize, usize),
        ) -> Self {
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            // Lane k merges direction 8v + k, whose block of the first cloud starts at entry
            // xo + (8v + k)·sx.
            let first = |o: usize, s: usize| {
                _mm256_add_epi32(
                    _mm256_mullo_epi32(lane, _mm256_set1_epi32(s as i32)),
                    _mm256_set1_epi32((o + 8 * v * s) as i32),
                )
            };
            let (ix, iy) = (first(xo, sx), first(yo, sy));
            // SAFETY: the first entry of each lane's block is in bounds (caller's contract).
            let ((kept_w, kept_v), (new_w, new_v)) = unsafe { (load8(base, ix), load8(base, iy)) };
            let one = _mm256_set1_epi32(1);
            let zero = _mm256_setzero_ps();
            Self {
                kept_w,
                kept_v,
                new_w,
                new_v,
                prev: zero,
                acc: zero,
                kept_next: _mm256_add_epi32(ix, one),
                new_next: _mm256_add_epi32(iy, one),
                // The slice's last entry bounds every load, whatever the weights hold.
                last: _mm256_set1_epi32(len as i32 - 1),
            }
        }

        /// One merge step in every lane: the scalar merge's step of [`crate::sliced`].
        ///
        /// # Safety
        /// AVX2 must be available, and `base` must be the slice the lanes were made for.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn step<const ABS: bool>(&mut self, base: *const [f32; 2]) {
            let t = _mm256_min_ps(self.kept_w, self.new_w);
            let dt = _mm256_sub_ps(t, self.prev);
            let d = _mm256_sub_ps(self.kept_v, self.new_v);
            let term = if ABS {
                _mm256_andnot_ps(_mm256_set1_ps(-0.0), d)
            } else {
                _mm256_mul_ps(d, d)
            };
            // A step of zero mass adds nothing, even where the cost is not finite.
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(dt, _mm256_setzero_ps());
            self.acc = _mm256_add_ps(self.acc, _mm256_and_ps(positive, _mm256_mul_ps(dt, term)));
            self.prev = t;
            // All ones where the kept entry is consumed, zero where the new one is.
            let kept_goes = _mm256_cmp_ps::<_CMP_LE_OQ>(self.kept_w, self.new_w);
            let goes = _mm256_castps_si256(kept_goes);
            self.kept_w = _mm256_max_ps(self.kept_w, self.new_w);
            self.kept_v = _mm256_blendv_ps(self.kept_v, self.new_v, kept_goes);
            let load = _mm256_blendv_epi8(self.new_next, self.kept_next, goes);
            self.kept_next = _mm256_blendv_epi8(self.kept_next, self.new_next, goes);
            let load = _mm256_min_epi32(load, self.last);
            self.new_next = _mm256_add_epi32(load, _mm256_set1_epi32(1));
            // SAFETY: every lane of `load` is at most the index of the slice's last entry, and
            // at least a lane's first entry (positions start there and only grow).
            (self.new_w, self.new_v) = unsafe { load8(base, load) };
        }
    }

    /// See [`super::merge_f32_joint`] (`abs`: the cost `|d|`, else `d²`).
    ///
    /// # Safety
    /// AVX2 must be available; `data` must hold `BLOCK` blocks of `sx` entries from `xo` on
    /// and of `sy` entries from `yo` on, and have at most `i32::MAX` entries.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn merge(
        abs: bool,
        data: &[[f32; 2]],
        xo: usize,
        sx: usize,
        yo: usize,
        sy: usize,
    ) -> [f32; BLOCK] {
        debug_assert!(xo + BLOCK * sx <= data.len() && yo + BLOCK * sy <= data.len());
        debug_assert!(i32::try_from(data.len()).is_ok());
        // SAFETY: the caller's contract is `merge_cost`'s.
        unsafe {
            if abs {
                merge_cost::<true>(data, (xo, sx), (yo, sy))
            } else {
                merge_cost::<false>(data, (xo, sx), (yo, sy))
            }
        }
    }

    /// [`merge`] for one cost, two vectors in flight.
    ///
    /// # Safety
    /// As for [`merge`].
    #[target_feature(enable = "avx2")]
    unsafe fn merge_cost<const ABS: bool>(
        data: &[[f32; 2]],
        x: (usize, usize),
        y: (usize, usize),
    ) -> [f32; BLOCK] {
        let steps = x.1 + y.1 - 3;
        let base = data.as_ptr();
        // The lanes walk 32 streams at uneven paces, more than the hardware prefetchers
        // follow: ask for every line of both clouds' blocks up front.
        for (o, s) in [x, y] {
            for e in (o..o + BLOCK * s).step_by(8) {
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(e).cast::<i8>());
            }
        }
        // SAFETY: the blocks of directions 0..16 lie in `data` (caller's contract), so
        // `Lanes::new` loads in bounds, and `step` clamps every load to the slice's last entry.
        unsafe {
            let mut s0 = Lanes::new(base, data.len(), 0, x, y);
            let mut s1 = Lanes::new(base, data.len(), 1, x, y);
            for _ in 0..steps {
                s0.step::<ABS>(base);
                s1.step::<ABS>(base);
            }
            let mut out = [0.0f32; BLOCK];
            _mm256_storeu_ps(out.as_mut_ptr(), s0.acc);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), s1.acc);
            out
        }
    }

    /// The network sort of [`super::sort_columns_f32`] and [`super::sort_columns_f64`]: for
    /// each comparator `(i, j)` and each full vector of lanes, `lo = min(y, x)` and
    /// `hi = max(x, y)` (`vminps` gives its second operand unless the first is smaller: the
    /// portable `if y < x { y } else { x }`, ties, zeros and NaN alike), or, with a payload,
    /// one `y < x` mask that blends keys and payload.
    macro_rules! network_sort {
        ($name:ident, $t:ty, $width:literal, $load:ident, $store:ident, $min:ident, $max:ident,
         $cmp:ident, $blend:ident, $lt:ident) => {
            /// # Safety
            /// AVX2 must be available; every comparator `(i, j)` must have `i < j` and
            /// `j < keys.len() / lanes`, and `payload`, where given, the length of `keys`.
            #[target_feature(enable = "avx2")]
            pub(super) unsafe fn $name(
                keys: &mut [$t],
                payload: Option<&mut [$t]>,
                lanes: usize,
                network: &[(u32, u32)],
            ) {
                let full = lanes - lanes % $width;
                let k = keys.as_mut_ptr();
                match payload {
                    None => {
                        for &(i, j) in network {
                            let (a, b) = (i as usize * lanes, j as usize * lanes);
                            for l in (0..full).step_by($width) {
                                // SAFETY: rows `i < j` lie inside `keys` (caller's contract)
                                // and `l + width <= lanes`, so both vectors are inside their
                                // row, and the two rows do not overlap.
                                unsafe {
                                    let x = $load(k.add(a + l));
                                    let y = $load(k.add(b + l));
                                    $store(k.add(a + l), $min(y, x));
                                    $store(k.add(b + l), $max(x, y));
                                }
                            }
                        }
                        crate::sorting::sort_columns_from(keys, lanes, full, network);
                    }
                    Some(payload) => {
                        let w = payload.as_mut_ptr();
                        for &(i, j) in network {
                            let (a, b) = (i as usize * lanes, j as usize * lanes);
                            for l in (0..full).step_by($width) {
                                // SAFETY: as above, and `payload` has the length of `keys`.
                                unsafe {
                                    let (x, y) = ($load(k.add(a + l)), $load(k.add(b + l)));
                                    let (u, v) = ($load(w.add(a + l)), $load(w.add(b + l)));
                                    let swap = $cmp::<$lt>(y, x);
                                    $store(k.add(a + l), $blend(x, y, swap));
                                    $store(k.add(b + l), $blend(y, x, swap));
                                    $store(w.add(a + l), $blend(u, v, swap));
                                    $store(w.add(b + l), $blend(v, u, swap));
                                }
                            }
                        }
                        crate::sorting::sort_columns_by_key_from(
                            keys, payload, lanes, full, network,
                        );
                    }
                }
            }
        };
    }

    network_sort!(
        sort_columns_f32,
        f32,
        8,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_min_ps,
        _mm256_max_ps,
        _mm256_cmp_ps,
        _mm256_blendv_ps,
        _CMP_LT_OQ
    );
    network_sort!(
        sort_columns_f64,
        f64,
        4,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_min_pd,
        _mm256_max_pd,
        _mm256_cmp_pd,
        _mm256_blendv_pd,
        _CMP_LT_OQ
    );
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::BLOCK;
    use std::arch::aarch64::{
        float32x4_t, uint32x4_t, vabsq_f32, vaddq_f32, vaddq_u32, vandq_u32, vbslq_f32, vbslq_u32,
        vcgtq_f32, vcleq_f32, vcombine_f32, vdupq_n_f32, vdupq_n_u32, vgetq_lane_u32, vld1_f32,
        vld1q_u32, vmaxq_f32, vminq_f32, vminq_u32, vmulq_f32, vreinterpretq_f32_u32,
        vreinterpretq_u32_f32, vst1q_f32, vsubq_f32, vuzp1q_f32, vuzp2q_f32,
    };

    /// Loads the entries at `idx` (four lanes, entry indices into `base`) as `(weights,
    /// values)`, lanes in order.
    ///
    /// # Safety
    /// NEON must be available, and `base[idx[k]]` must be in bounds for every lane `k`.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn load4(base: *const [f32; 2], idx: uint32x4_t) -> (float32x4_t, float32x4_t) {
        let e = |k: u32| base.wrapping_add(k as usize).cast::<f32>();
        // SAFETY: every lane of `idx` is the index of an entry of `base` by the caller's
        // contract, and each load reads that one entry's two `f32` (4-byte aligned, as
        // `[f32; 2]` is).
        let (e0, e1, e2, e3) = unsafe {
            (
                vld1_f32(e(vgetq_lane_u32::<0>(idx))),
                vld1_f32(e(vgetq_lane_u32::<1>(idx))),
                vld1_f32(e(vgetq_lane_u32::<2>(idx))),
                vld1_f32(e(vgetq_lane_u32::<3>(idx))),
            )
        };
        // [w0 v0 w1 v1] and [w2 v2 w3 v3].
        let (lo, hi) = (vcombine_f32(e0, e1), vcombine_f32(e2, e3));
        (vuzp1q_f32(lo, hi), vuzp2q_f32(lo, hi))
    }

    /// One vector of four directions: per lane the two current entries, held by role as in
    /// the AVX-512 kernel (`kept` and `new`, see `avx512::Lanes`), the merge state, and the
    /// entry index of the next entry of each.
    #[derive(Clone, Copy)]
    struct Lanes {
        kept_w: float32x4_t,
        kept_v: float32x4_t,
        new_w: float32x4_t,
        new_v: float32x4_t,
        prev: float32x4_t,
        acc: float32x4_t,
        kept_next: uint32x4_t,
        new_next: uint32x4_t,
        last: uint32x4_t,
    }

    impl Lanes {
        /// The lanes of directions `4v .. 4v + 4`.
        ///
        /// # Safety
        /// NEON must be available, and `base` must be `merge`'s `data` under its contract,
        /// with `len` entries.
        #[inline]
        #[target_feature(enable = "neon")]
        unsafe fn new(
            base: *const [f32; 2],
            len: usize,
            v: usize,
            (xo, sx): (usize, usize),
            (yo, sy): (usize, usize),
        ) -> Self {
            // Lane k merges direction 4v + k, whose block of the first cloud starts at entry
            // xo + (4v + k)·sx.
            let first = |o: usize, s: usize| {
                let first: [u32; 4] = std::array::from_fn(|k| (o + (4 * v + k) * s) as u32);
                // SAFETY: `first` holds the four u32 the load reads.
                unsafe { vld1q_u32(first.as_ptr()) }
            };
            let (ix, iy) = (first(xo, sx), first(yo, sy));
            // SAFETY: the first entry of each lane's block is in bounds (caller's contract).
            let ((kept_w, kept_v), (new_w, new_v)) = unsafe { (load4(base, ix), load4(base, iy)) };
            let one = vdupq_n_u32(1);
            let zero = vdupq_n_f32(0.0);
            Self {
                kept_w,
                kept_v,
                new_w,
                new_v,
                prev: zero,
                acc: zero,
                kept_next: vaddq_u32(ix, one),
                new_next: vaddq_u32(iy, one),
                // The slice's last entry bounds every load, whatever the weights hold.
                last: vdupq_n_u32(len as u32 - 1),
            }
        }

        /// One merge step in every lane: the scalar merge's step of [`crate::sliced`].
        ///
        /// # Safety
        /// NEON must be available, and `base` must be the slice the lanes were made for.
        #[inline]
        #[target_feature(enable = "neon")]
        unsafe fn step<const ABS: bool>(&mut self, base: *const [f32; 2]) {
            // Two weights in [0, 2] (never NaN, never -0): the smaller, either where equal.
            let t = vminq_f32(self.kept_w, self.new_w);
            let dt = vsubq_f32(t, self.prev);
            let d = vsubq_f32(self.kept_v, self.new_v);
            let term = if ABS { vabsq_f32(d) } else { vmulq_f32(d, d) };
            // A step of zero mass adds nothing, even where the cost is not finite. A multiply
            // then an add, as the scalar merge does (not `vfmaq_f32`/`vmlaq_f32`).
            let positive = vcgtq_f32(dt, vdupq_n_f32(0.0));
            let mass = vandq_u32(positive, vreinterpretq_u32_f32(vmulq_f32(dt, term)));
            self.acc = vaddq_f32(self.acc, vreinterpretq_f32_u32(mass));
            self.prev = t;
            // All ones where the kept entry is consumed, zero where the new one is.
            let goes = vcleq_f32(self.kept_w, self.new_w);
            self.kept_w = vmaxq_f32(self.kept_w, self.new_w);
            self.kept_v = vbslq_f32(goes, self.new_v, self.kept_v);
            let load = vbslq_u32(goes, self.kept_next, self.new_next);
            self.kept_next = vbslq_u32(goes, self.new_next, self.kept_next);
            let load = vminq_u32(load, self.last);
            self.new_next = vaddq_u32(load, vdupq_n_u32(1));
            // SAFETY: every lane of `load` is at most the index of the slice's last entry, and
            // at least a lane's first entry (positions start there and only grow).
            (self.new_w, self.new_v) = unsafe { load4(base, load) };
        }
    }

    /// See [`super::merge_f32_joint`] (`abs`: the cost `|d|`, else `d²`).
    ///
    /// # Safety
    /// NEON must be available; `data` must hold `BLOCK` blocks of `sx` entries from `xo` on
    /// and of `sy` entries from `yo` on, and have at most `i32::MAX` entries.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn merge(
        abs: bool,
        data: &[[f32; 2]],
        xo: usize,
        sx: usize,
        yo: usize,
        sy: usize,
    ) -> [f32; BLOCK] {
        debug_assert!(xo + BLOCK * sx <= data.len() && yo + BLOCK * sy <= data.len());
        debug_assert!(i32::try_from(data.len()).is_ok());
        // SAFETY: the caller's contract is `merge_cost`'s.
        unsafe {
            if abs {
                merge_cost::<true>(data, (xo, sx), (yo, sy))
            } else {
                merge_cost::<false>(data, (xo, sx), (yo, sy))
            }
        }
    }

    /// [`merge`] for one cost, four vectors in flight.
    ///
    /// # Safety
    /// As for [`merge`].
    #[target_feature(enable = "neon")]
    unsafe fn merge_cost<const ABS: bool>(
        data: &[[f32; 2]],
        x: (usize, usize),
        y: (usize, usize),
    ) -> [f32; BLOCK] {
        let steps = x.1 + y.1 - 3;
        let base = data.as_ptr();
        // SAFETY: the blocks of directions 0..16 lie in `data` (caller's contract), so
        // `Lanes::new` loads in bounds, and `step` clamps every load to the slice's last entry.
        unsafe {
            let mut s0 = Lanes::new(base, data.len(), 0, x, y);
            let mut s1 = Lanes::new(base, data.len(), 1, x, y);
            let mut s2 = Lanes::new(base, data.len(), 2, x, y);
            let mut s3 = Lanes::new(base, data.len(), 3, x, y);
            for _ in 0..steps {
                s0.step::<ABS>(base);
                s1.step::<ABS>(base);
                s2.step::<ABS>(base);
                s3.step::<ABS>(base);
            }
            let mut out = [0.0f32; BLOCK];
            for (k, s) in [s0, s1, s2, s3].iter().enumerate() {
                vst1q_f32(out.as_mut_ptr().add(4 * k), s.acc);
            }
            out
        }
    }
}
