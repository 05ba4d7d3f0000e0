//! Index pairs: the condensed order of all pairs within one set, and checks of `(K, 2)` index
//! arrays.
//!
//! The condensed order is the order of scipy's `pdist`: the pairs `i < j` of `n` items listed
//! row by row, `(0, 1), (0, 2), ..., (0, n - 1), (1, 2), ...`. Row `i` starts at
//! [`condensed_row_start`]` = i n - i (i + 1) / 2` and holds the `n - 1 - i` pairs `(i, j)`,
//! `j > i`, so there are [`condensed_len`]` = n (n - 1) / 2` in all. Every kernel that writes a
//! condensed vector ([`crate::sliced::pdist`], [`crate::quantile::euclidean_pdist`],
//! [`crate::quantile::minkowski_pdist`], [`crate::sinkhorn::sinkhorn_pdist`]) or reads one
//! ([`crate::linkage::merge_by_threshold`]) uses these helpers.
//!
//! Index arrays are row-major `(K, 2)` `i64` slices: [`check_pairs`] checks pairs of clouds
//! across two sets (the sliced and Sinkhorn `pairs` kernels), [`check_node_pairs`] checks
//! edges within one set of `n` nodes (the linkage functions). They differ only in how their
//! messages name the culprit.

use crate::error::{Error, Result};

/// Number of pairs `i < j` of `n` items, `n (n - 1) / 2` (0 for `n <= 1`).
#[inline]
pub const fn condensed_len(n: usize) -> usize {
    n * n.saturating_sub(1) / 2
}

/// Position in the condensed order of the first pair `(i, i + 1)` of row `i` (for `i <= n`).
#[inline]
pub fn condensed_row_start(n: usize, i: usize) -> usize {
    i * n - i * (i + 1) / 2
}

/// Position of the pair `(i, j)`, `i < j < n`, in the condensed order.
#[inline]
pub fn condensed_index(n: usize, i: usize, j: usize) -> usize {
    condensed_row_start(n, i) + j - i - 1
}

/// The pair `(i, j)`, `i < j`, at position `k < n (n - 1) / 2` of the condensed order.
pub fn condensed_pair(n: usize, k: usize) -> (usize, usize) {
    // Find the last row start <= k by a float guess, then fix up.
    let row_start = |i: usize| condensed_row_start(n, i);
    let nf = n as f64;
    let kf = k as f64;
    let disc = ((2.0 * nf - 1.0) * (2.0 * nf - 1.0) - 8.0 * kf).max(0.0);
    let mut i = (((2.0 * nf - 1.0) - disc.sqrt()) / 2.0).floor().max(0.0) as usize;
    i = i.min(n.saturating_sub(2));
    while i > 0 && row_start(i) > k {
        i -= 1;
    }
    while i + 1 < n - 1 && row_start(i + 1) <= k {
        i += 1;
    }
    (i, i + 1 + (k - row_start(i)))
}

/// The number of items `n` whose condensed vector has length `m = n (n - 1) / 2` (`m == 0`
/// gives `n = 1`).
///
/// # Errors
/// [`Error::Shape`] naming `name` when `m` is not a triangular number.
pub fn n_from_condensed(name: &str, m: usize) -> Result<usize> {
    // Integer square root of 8m + 1, corrected for floating-point error.
    let disc = 8 * (m as u128) + 1;
    let mut s = (disc as f64).sqrt() as u128;
    while s * s > disc {
        s -= 1;
    }
    while (s + 1) * (s + 1) <= disc {
        s += 1;
    }
    if s * s != disc {
        return Err(Error::shape(
            name,
            "a condensed distance vector of length n (n - 1) / 2",
            format!("length {m}, which is not of that form"),
        ));
    }
    Ok(s.div_ceil(2) as usize)
}

/// Splits a condensed buffer of `n` items into the pieces of consecutive blocks of `rows`
/// rows: `(i0, piece)` holds the pairs of rows `i0 .. min(i0 + rows, n)`, in order.
pub(crate) fn condensed_rows(out: &mut [f64], n: usize, rows: usize) -> Vec<(usize, &mut [f64])> {
    let mut pieces = Vec::new();
    let mut rest = out;
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + rows).min(n);
        let len: usize = (i0..i1).map(|i| n - 1 - i).sum();
        let (piece, tail) = rest.split_at_mut(len);
        pieces.push((i0, piece));
        rest = tail;
        i0 = i1;
    }
    pieces
}

/// The first entry of a row-major `(K, 2)` array outside `0..n_a` (column 0) or `0..n_b`
/// (column 1), in row-major order: `(row, column, value, bound)`.
fn first_out_of_range(pairs: &[i64], n_a: usize, n_b: usize) -> Option<(usize, usize, i64, usize)> {
    pairs.chunks_exact(2).enumerate().find_map(|(k, pair)| {
        pair.iter()
            .zip([n_a, n_b])
            .enumerate()
            .find(|&(_, (&idx, n))| idx < 0 || idx as u64 >= n as u64)
            .map(|(side, (&idx, n))| (k, side, idx, n))
    })
}

/// Checks a row-major `(K, 2)` array of pairs of cloud indices, `pairs[k] = (i, j)` with `i`
/// a cloud of a set of `n_a` and `j` a cloud of a set of `n_b` clouds.
///
/// # Errors
/// [`Error::Shape`] naming `pairs` for an odd length, [`Error::InvalidArgument`] naming
/// `pairs` and the first entry out of range.
pub fn check_pairs(pairs: &[i64], n_a: usize, n_b: usize) -> Result<()> {
    if !pairs.len().is_multiple_of(2) {
        return Err(Error::shape(
            "pairs",
            "shape (K, 2)",
            format!("{} values", pairs.len()),
        ));
    }
    match first_out_of_range(pairs, n_a, n_b) {
        Some((k, side, idx, n)) => Err(Error::arg(
            "pairs",
            format!("pairs[{k}, {side}] = {idx} is out of range for {n} clouds"),
        )),
        None => Ok(()),
    }
}

/// Checks that `pairs` is a row-major `(K, 2)` array of node indices in `0..n` (an edge list);
/// returns `K`.
///
/// # Errors
/// [`Error::Shape`] naming `name` for an odd length, [`Error::InvalidArgument`] naming `name`
/// and the row of the first index out of range.
pub fn check_node_pairs(name: &str, n: usize, pairs: &[i64]) -> Result<usize> {
    if !pairs.len().is_multiple_of(2) {
        return Err(Error::shape(
            name,
            "a row-major (K, 2) array (even length)",
            format!("length {}", pairs.len()),
        ));
    }
    match first_out_of_range(pairs, n, n) {
        Some((row, _, v, _)) => Err(Error::arg(
            name,
            format!("row {row}: index {v} out of range for n = {n}"),
        )),
        None => Ok(pairs.len() / 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condensed_order() {
        for n in [2usize, 3, 7, 50] {
            let mut k = 0;
            for i in 0..n {
                assert_eq!(condensed_row_start(n, i), k);
                for j in i + 1..n {
                    assert_eq!(condensed_pair(n, k), (i, j));
                    assert_eq!(condensed_index(n, i, j), k);
                    k += 1;
                }
            }
            assert_eq!(condensed_len(n), k);
            let mut out = vec![0.0; k];
            let pieces = condensed_rows(&mut out, n, 3);
            let starts: Vec<usize> = pieces.iter().map(|(i0, _)| *i0).collect();
            let lens: Vec<usize> = pieces.iter().map(|(_, p)| p.len()).collect();
            assert_eq!(starts, (0..n).step_by(3).collect::<Vec<_>>());
            for (&i0, &len) in starts.iter().zip(&lens) {
                let i1 = (i0 + 3).min(n);
                assert_eq!(len, condensed_row_start(n, i1) - condensed_row_start(n, i0));
            }
        }
        assert_eq!(condensed_len(0), 0);
        assert_eq!(condensed_len(1), 0);
    }

    #[test]
    fn condensed_sizes() {
        assert_eq!(n_from_condensed("c", 0).unwrap(), 1);
        assert_eq!(n_from_condensed("c", 1).unwrap(), 2);
        assert_eq!(n_from_condensed("c", 3).unwrap(), 3);
        assert_eq!(n_from_condensed("c", 20_000 * 19_999 / 2).unwrap(), 20_000);
        assert!(n_from_condensed("c", 2).is_err());
        assert!(n_from_condensed("c", 20_000 * 19_999 / 2 + 1).is_err());
    }

    #[test]
    fn pairs_checked() {
        assert!(check_pairs(&[0, 1, 1, 0], 2, 2).is_ok());
        assert!(check_pairs(&[0, 2], 2, 2).is_err());
        assert!(check_pairs(&[-1, 0], 2, 2).is_err());
        assert!(check_pairs(&[0, 2], 1, 3).is_ok());
        assert!(check_pairs(&[0], 2, 2).is_err());
        assert_eq!(
            check_pairs(&[0, 0, 1, 2], 2, 2).unwrap_err().to_string(),
            "pairs: pairs[1, 1] = 2 is out of range for 2 clouds"
        );
        assert_eq!(check_node_pairs("edges", 3, &[0, 2, 1, 1]).unwrap(), 2);
        assert_eq!(
            check_node_pairs("edges", 3, &[0, 2, 3, 1])
                .unwrap_err()
                .to_string(),
            "edges: row 1: index 3 out of range for n = 3"
        );
        assert!(matches!(
            check_node_pairs("edges", 3, &[0, 2, 1]),
            Err(Error::Shape { .. })
        ));
    }
}
