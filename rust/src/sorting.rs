//! Sorting the columns of a small matrix all at once with a fixed comparator network.
//!
//! A cloud of `n` points projected on `L` directions is an `(n, L)` matrix whose columns each
//! need sorting (the sorted projections of the uniform-weight path). Sorting them one by one
//! branches on every comparison; a comparator network ([`batcher`]) applies the same
//! compare-exchange sequence to every column, so each comparator is an elementwise min/max of
//! two rows, `L` lanes wide, without a branch: what vector units do best.

use crate::float::Real;

/// The largest column length sorted by a network; longer columns are sorted one by one (a
/// network has `O(n log² n)` comparators against the `O(n log n)` of a sort).
pub const MAX_NETWORK_LEN: usize = 256;

/// Batcher's odd-even merge sort for `n` elements: comparators `(i, j)`, `i < j`, each putting
/// the smaller value at `i`. Built for the next power of two and pruned of the comparators that
/// touch padding (padding holds `+∞` and no comparator ever moves it).
pub fn batcher(n: usize) -> Vec<(u32, u32)> {
    let size = n.next_power_of_two();
    let mut out = Vec::new();
    let mut p = 1;
    while p < size {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < size {
                for i in 0..k.min(size - j - k) {
                    let (a, b) = (i + j, i + j + k);
                    if a / (2 * p) == b / (2 * p) && b < n {
                        out.push((a as u32, b as u32));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    out
}

/// Sorts every column of the row-major `(data.len() / lanes, lanes)` matrix `data` in
/// increasing order with the comparators `network` (from [`batcher`] for that many rows).
/// Values must not be NaN; `-0.0` and `0.0` may come out in either order.
///
/// Where the CPU has AVX2 the comparators run eight `f32` lanes (four `f64`) at a time in the
/// crate's SIMD module ([`Real::sort_network_simd`]), with the same bits: 4.4 µs against
/// 17 µs per cloud of 64 × 128 `f32` on an AMD Zen 5. Elsewhere, [`sort_columns_from`].
pub fn sort_columns<T: Real>(data: &mut [T], lanes: usize, network: &[(u32, u32)]) {
    if !T::sort_network_simd(data, None, lanes, network) {
        sort_columns_from(data, lanes, 0, network);
    }
}

/// [`sort_columns`] of the columns `from..lanes` only, in portable code: each comparator is
/// `if y < x { swap }` lane by lane, which LLVM vectorises with SSE2 `minps` / `maxps` on
/// x86_64. This build stays portable: compiled with AVX2 enabled, LLVM turned the
/// conditional stores into masked stores (`vmaskmovps`) and the sort ran 2.6× slower on AMD
/// Zen 4; the AVX2 kernel of the SIMD module uses `vminps` / `vmaxps` directly.
#[inline]
pub fn sort_columns_from<T: Real>(
    data: &mut [T],
    lanes: usize,
    from: usize,
    network: &[(u32, u32)],
) {
    for &(i, j) in network {
        let (i, j) = (i as usize, j as usize);
        let (head, tail) = data.split_at_mut(j * lanes);
        let lo = &mut head[i * lanes + from..(i + 1) * lanes];
        let hi = &mut tail[from..lanes];
        for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
            let (x, y) = (*a, *b);
            let swap = y < x;
            *a = if swap { y } else { x };
            *b = if swap { x } else { y };
        }
    }
}

/// [`sort_columns`] carrying a payload: sorts every column of `keys` (row-major, `lanes`
/// wide) and applies the same exchanges to the same column of `payload` (the weights of the
/// values), so that `(key, payload)` pairs stay together. Keys must not be NaN; of equal keys,
/// the network leaves an order that depends on their positions only. AVX2 where the CPU has
/// it, as for [`sort_columns`].
pub fn sort_columns_by_key<T: Real>(
    keys: &mut [T],
    payload: &mut [T],
    lanes: usize,
    network: &[(u32, u32)],
) {
    debug_assert_eq!(keys.len(), payload.len());
    if !T::sort_network_simd(keys, Some(payload), lanes, network) {
        sort_columns_by_key_from(keys, payload, lanes, 0, network);
    }
}

/// [`sort_columns_by_key`] of the columns `from..lanes` only, in portable code.
#[inline]
pub fn sort_columns_by_key_from<T: Real>(
    keys: &mut [T],
    payload: &mut [T],
    lanes: usize,
    from: usize,
    network: &[(u32, u32)],
) {
    for &(i, j) in network {
        let (i, j) = (i as usize, j as usize);
        let (head, tail) = keys.split_at_mut(j * lanes);
        let (whead, wtail) = payload.split_at_mut(j * lanes);
        let lo = &mut head[i * lanes + from..(i + 1) * lanes];
        let hi = &mut tail[from..lanes];
        let wlo = &mut whead[i * lanes + from..(i + 1) * lanes];
        let whi = &mut wtail[from..lanes];
        for (((a, b), u), v) in lo.iter_mut().zip(hi).zip(wlo).zip(whi) {
            let (x, y, wx, wy) = (*a, *b, *u, *v);
            let swap = y < x;
            *a = if swap { y } else { x };
            *b = if swap { x } else { y };
            *u = if swap { wy } else { wx };
            *v = if swap { wx } else { wy };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The 0-1 principle: a network that sorts every sequence of zeros and ones sorts every
    /// sequence. Checked exhaustively up to 14 elements, all at once as columns.
    #[test]
    fn batcher_sorts_every_zero_one_sequence() {
        for n in 1..=14usize {
            let lanes = 1usize << n;
            let mut data = vec![0.0f32; n * lanes];
            for lane in 0..lanes {
                for k in 0..n {
                    data[k * lanes + lane] = ((lane >> k) & 1) as f32;
                }
            }
            sort_columns(&mut data, lanes, &batcher(n));
            for lane in 0..lanes {
                let col: Vec<f32> = (0..n).map(|k| data[k * lanes + lane]).collect();
                assert!(col.windows(2).all(|w| w[0] <= w[1]), "n = {n}: {col:?}");
            }
        }
    }

    #[test]
    fn batcher_has_the_known_comparator_counts() {
        // Knuth, TAOCP 5.3.4: 19 comparators for 8 elements, 63 for 16, 543 for 64.
        assert_eq!(batcher(8).len(), 19);
        assert_eq!(batcher(16).len(), 63);
        assert_eq!(batcher(64).len(), 543);
        assert!(batcher(1).is_empty());
    }

    /// Values on a grid of `levels` points `step` apart around zero (many ties), from a
    /// xorshift generator seeded by `seed`.
    fn grid(seed: u64, levels: u64, step: f64) -> impl FnMut() -> f64 {
        let mut state = seed | 1;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state % levels) as f64 - (levels / 2) as f64) * step
        }
    }

    /// Sorts `keys` (and then `keys` with `payload`) by the SIMD kernel and by the portable code,
    /// checks that the kernel ran where expected (`kernel`) and gave the same bits.
    fn check_simd_sort<T: Real>(
        keys: &[T],
        payload: &[T],
        lanes: usize,
        network: &[(u32, u32)],
        kernel: bool,
    ) -> Result<(), TestCaseError> {
        let bits = |v: &[T]| -> Vec<u64> { v.iter().map(|x| x.to_f64().to_bits()).collect() };
        let (mut want, mut got) = (keys.to_vec(), keys.to_vec());
        sort_columns_from(&mut want, lanes, 0, network);
        prop_assert_eq!(T::sort_network_simd(&mut got, None, lanes, network), kernel);
        if kernel {
            prop_assert_eq!(bits(&got), bits(&want));
        }
        let (mut want, mut want_w) = (keys.to_vec(), payload.to_vec());
        let (mut got, mut got_w) = (keys.to_vec(), payload.to_vec());
        sort_columns_by_key_from(&mut want, &mut want_w, lanes, 0, network);
        prop_assert_eq!(
            T::sort_network_simd(&mut got, Some(&mut got_w), lanes, network),
            kernel
        );
        if kernel {
            prop_assert_eq!(bits(&got), bits(&want));
            prop_assert_eq!(bits(&got_w), bits(&want_w));
        }
        Ok(())
    }

    proptest! {
        /// With a payload: keys come out as [`sort_columns`] sorts them, and every
        /// `(key, payload)` pair of a column survives (multisets compared after sorting both
        /// by key and payload); payloads follow their keys even among ties.
        #[test]
        fn sorts_pairs_like_a_sort(
            n in 1usize..=MAX_NETWORK_LEN,
            lanes in 1usize..12,
            seed in any::<u64>(),
        ) {
            let mut next = grid(seed, 23, 1.0);
            let mut keys: Vec<f64> = (0..n * lanes).map(|_| next()).collect();
            let mut payload: Vec<f64> = (0..n * lanes).map(|_| next()).collect();
            let column = |k: &[f64], p: &[f64], l: usize| -> Vec<(f64, f64)> {
                (0..n).map(|i| (k[i * lanes + l], p[i * lanes + l])).collect()
            };
            let before: Vec<Vec<(f64, f64)>> =
                (0..lanes).map(|l| column(&keys, &payload, l)).collect();
            let mut plain = keys.clone();
            sort_columns(&mut plain, lanes, &batcher(n));
            sort_columns_by_key(&mut keys, &mut payload, lanes, &batcher(n));
            prop_assert_eq!(&keys, &plain);
            for (l, col) in before.iter().enumerate() {
                let mut want = col.clone();
                let mut got = column(&keys, &payload, l);
                let by_both = |a: &(f64, f64), b: &(f64, f64)| {
                    a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1))
                };
                want.sort_by(by_both);
                got.sort_by(by_both);
                prop_assert_eq!(got, want);
            }
        }

        /// The SIMD network sort against the portable one, bit for bit, with and without a
        /// payload, in both float types: widths around the vector sizes (tails included),
        /// values on a grid with both zeros and NaN among them (the kernels' `min`/`max`
        /// must pick exactly the operands the portable selects pick).
        #[test]
        fn simd_sort_has_the_portable_bits(
            n in 1usize..=70,
            lanes in 1usize..40,
            seed in any::<u64>(),
        ) {
            let mut next = grid(seed, 19, 0.5);
            let special = [0.0, -0.0, f64::NAN];
            let values: Vec<f64> = (0..2 * n * lanes)
                .map(|k| if k % 13 == 5 { special[k % 3] } else { next() })
                .collect();
            let (keys, payload) = values.split_at(n * lanes);
            let network = batcher(n);
            let kernel = cfg!(target_arch = "x86_64")
                && crate::simd::kernel() != crate::simd::Kernel::Scalar
                && crate::simd::supported().contains(&crate::simd::Kernel::Avx2);
            check_simd_sort::<f64>(keys, payload, lanes, &network, kernel)?;
            let to32 = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
            check_simd_sort::<f32>(&to32(keys), &to32(payload), lanes, &network, kernel)?;
        }

        /// Against `sort_unstable_by(total_cmp)`, column by column: values on a coarse grid
        /// (many ties), any length up to the network limit.
        #[test]
        fn sorts_like_a_sort(
            n in 1usize..=MAX_NETWORK_LEN,
            lanes in 1usize..20,
            seed in any::<u64>(),
        ) {
            let mut next = grid(seed, 41, 0.25);
            let mut data: Vec<f64> = (0..n * lanes).map(|_| next()).collect();
            let mut want: Vec<Vec<f64>> = (0..lanes)
                .map(|l| (0..n).map(|k| data[k * lanes + l]).collect())
                .collect();
            for col in &mut want {
                col.sort_unstable_by(f64::total_cmp);
            }
            sort_columns(&mut data, lanes, &batcher(n));
            for (l, col) in want.iter().enumerate() {
                let got: Vec<f64> = (0..n).map(|k| data[k * lanes + l]).collect();
                prop_assert_eq!(&got, col);
            }
        }
    }
}
