//! Union-find, connected components and single-linkage merge trees.
//!
//! * [`UnionFind`]: disjoint sets with path halving and union by size.
//! * [`connected_components`]: canonical component labels of a graph given as an edge list.
//! * [`single_linkage`]: Kruskal on candidate pairs, recorded as a [`MergeTree`] in the
//!   scipy `linkage` convention; a disconnected candidate graph gives a forest.
//! * [`MergeTree::labels_at`] / [`MergeTree::labels_for`]: cheap flat cuts of a tree.
//! * [`merge_by_threshold`]: single linkage cut at a threshold straight from a condensed
//!   (scipy `pdist` order) distance vector, without materialising any pair list.
//!
//! Every labelling returned here is *canonical*: labels are `0..k` numbered in order of first
//! appearance over the elements `0..n`, so two equal partitions always give equal arrays.

use crate::error::{checked_len, try_vec, try_with_capacity, Error, Result};
use crate::float::Real;
use crate::pairs::{check_node_pairs, condensed_len, condensed_row_start};
use crate::parallel::Executor;

/// Disjoint sets over `0..n` with path halving and union by size.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
    n_sets: usize,
}

impl UnionFind {
    /// `n` singletons.
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
            size: vec![1; n],
            n_sets: n,
        }
    }

    /// `n` singletons, allocated fallibly ([`Error::Memory`] naming `name`).
    ///
    /// # Errors
    /// [`Error::Memory`] when `n` elements do not fit in memory.
    pub fn try_new(n: usize, name: &str) -> Result<Self> {
        let what = format!("a union-find over {n} points");
        let mut parent = try_with_capacity(n, name, &what)?;
        parent.extend(0..n);
        Ok(Self {
            parent,
            size: try_vec(n, 1, name, &what)?,
            n_sets: n,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The number of disjoint sets.
    pub fn n_sets(&self) -> usize {
        self.n_sets
    }

    /// The representative of the set holding `x` (panics when `x >= len()`).
    #[inline]
    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            let grandparent = self.parent[self.parent[x]];
            self.parent[x] = grandparent;
            x = grandparent;
        }
        x
    }

    /// Merges the sets holding `a` and `b`; returns whether they were distinct.
    #[inline]
    pub fn union(&mut self, a: usize, b: usize) -> bool {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        if self.size[ra] < self.size[rb] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb] = ra;
        self.size[ra] += self.size[rb];
        self.n_sets -= 1;
        true
    }

    /// The size of the set holding `x`.
    pub fn set_size(&mut self, x: usize) -> usize {
        let r = self.find(x);
        self.size[r]
    }

    /// Canonical labels: `0..n_sets()` in order of first appearance over `0..len()`.
    pub fn labels(&mut self) -> Vec<i64> {
        let n = self.len();
        let mut label_of_root = vec![-1_i64; n];
        let mut next = 0_i64;
        let mut out = Vec::with_capacity(n);
        for x in 0..n {
            let r = self.find(x);
            if label_of_root[r] < 0 {
                label_of_root[r] = next;
                next += 1;
            }
            out.push(label_of_root[r]);
        }
        out
    }
}

/// Canonical connected-component labels of the graph on `0..n` with the given edges.
///
/// `edges` is a row-major `K x 2` array of node indices; self-loops and repeated edges are
/// allowed (they change nothing).
///
/// # Errors
/// [`Error::Shape`] when `edges` has odd length, [`Error::InvalidArgument`] naming `edges`
/// and the row when an index is outside `0..n`.
pub fn connected_components(n: usize, edges: &[i64]) -> Result<Vec<i64>> {
    check_node_pairs("edges", n, edges)?;
    // Labels, their roots and the union-find: four words per node.
    drop(try_with_capacity::<usize>(
        checked_len(n, 4, "n", "labels")?,
        "n",
        &format!("labels of {n} nodes"),
    )?);
    let mut uf = UnionFind::try_new(n, "n")?;
    for e in edges.chunks_exact(2) {
        uf.union(e[0] as usize, e[1] as usize);
    }
    Ok(uf.labels())
}

/// One merge of a [`MergeTree`]: clusters `a < b` joined at `distance` into a cluster of `size`
/// points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    pub a: usize,
    pub b: usize,
    pub distance: f64,
    pub size: usize,
}

/// A single-linkage merge tree (or forest) in the scipy `linkage` convention.
///
/// Points are clusters `0..n`; merge `k` creates cluster `n + k`; each merge lists the smaller
/// cluster id first; merge distances are non-decreasing. A forest (disconnected candidate
/// graph) has fewer than `n - 1` merges.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeTree {
    n: usize,
    merges: Vec<Merge>,
}

impl MergeTree {
    /// Rebuilds and validates a tree from a row-major `M x 4` linkage matrix
    /// (`[id_a, id_b, distance, size]` per row, as produced by [`MergeTree::to_linkage`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `name` and the row when ids are not integers, refer to
    /// a cluster not yet created or already merged, when a distance is not finite and
    /// non-negative, when distances decrease, or when a size is wrong; [`Error::Shape`] when
    /// the length is not a multiple of 4 or there are more than `n - 1` rows.
    pub fn from_linkage(name: &str, n: usize, linkage: &[f64]) -> Result<Self> {
        if n == 0 {
            return Err(Error::arg("n", "must be >= 1"));
        }
        if !linkage.len().is_multiple_of(4) {
            return Err(Error::shape(
                name,
                "a row-major (M, 4) array",
                format!("length {}", linkage.len()),
            ));
        }
        let m = linkage.len() / 4;
        if m > n - 1 {
            return Err(Error::shape(
                name,
                format!("at most n - 1 = {} rows", n - 1),
                format!("{m} rows"),
            ));
        }
        let mut sizes: Vec<usize> = vec![1; n + m];
        let mut used = vec![false; n + m];
        let mut merges = Vec::with_capacity(m);
        let mut last = 0.0_f64;
        for (row, r) in linkage.chunks_exact(4).enumerate() {
            let limit = n + row;
            let id = |x: f64, what: &str| -> Result<usize> {
                if x.is_finite() && x.fract() == 0.0 && x >= 0.0 && x < limit as f64 {
                    Ok(x as usize)
                } else {
                    Err(Error::arg(
                        name,
                        format!("row {row}: {what} {x} is not a cluster id in 0..{limit}"),
                    ))
                }
            };
            let (a, b) = (id(r[0], "id")?, id(r[1], "id")?);
            if a >= b {
                return Err(Error::arg(
                    name,
                    format!("row {row}: ids must be increasing, got {a} and {b}"),
                ));
            }
            for c in [a, b] {
                if used[c] {
                    return Err(Error::arg(
                        name,
                        format!("row {row}: cluster {c} was already merged"),
                    ));
                }
                used[c] = true;
            }
            let d = r[2];
            if !d.is_finite() || d < 0.0 {
                return Err(Error::arg(
                    name,
                    format!("row {row}: distance {d} is not finite and non-negative"),
                ));
            }
            if d < last {
                return Err(Error::arg(
                    name,
                    format!("row {row}: distance {d} is smaller than the previous one {last}"),
                ));
            }
            last = d;
            let size = sizes[a] + sizes[b];
            // Exact: sizes are integers well below 2^53, stored exactly in f64.
            #[allow(clippy::float_cmp)]
            let size_ok = r[3] == size as f64;
            if !size_ok {
                return Err(Error::arg(
                    name,
                    format!("row {row}: size {} should be {size}", r[3]),
                ));
            }
            sizes[limit] = size;
            merges.push(Merge {
                a,
                b,
                distance: d,
                size,
            });
        }
        Ok(Self { n, merges })
    }

    /// The number of points.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The merges, in order.
    pub fn merges(&self) -> &[Merge] {
        &self.merges
    }

    /// The number of clusters left after every merge (1 for a tree, more for a forest).
    pub fn n_components(&self) -> usize {
        self.n - self.merges.len()
    }

    /// The merge distances, non-decreasing.
    pub fn heights(&self) -> Vec<f64> {
        self.merges.iter().map(|m| m.distance).collect()
    }

    /// The row-major `M x 4` linkage matrix `[id_a, id_b, distance, size]`.
    pub fn to_linkage(&self) -> Vec<f64> {
        self.merges
            .iter()
            .flat_map(|m| [m.a as f64, m.b as f64, m.distance, m.size as f64])
            .collect()
    }

    /// Canonical labels after replaying the first `count` merges.
    fn replay(&self, count: usize) -> Vec<i64> {
        let n = self.n;
        let mut uf = UnionFind::new(n);
        // The point that represents each cluster id.
        let mut rep: Vec<usize> = (0..n).collect();
        rep.reserve(count);
        for m in &self.merges[..count] {
            uf.union(rep[m.a], rep[m.b]);
            rep.push(rep[m.a]);
        }
        uf.labels()
    }

    /// Canonical flat-cluster labels at `threshold`: every merge at distance `<= threshold`
    /// is replayed (scipy `fcluster(Z, threshold, "distance")` up to relabelling).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `threshold` is NaN.
    pub fn labels_at(&self, threshold: f64) -> Result<Vec<i64>> {
        if threshold.is_nan() {
            return Err(Error::arg("threshold", "must not be NaN"));
        }
        let count = self.merges.partition_point(|m| m.distance <= threshold);
        Ok(self.replay(count))
    }

    /// Canonical labels for `n_clusters` clusters: the first `n - n_clusters` merges are
    /// replayed. A forest with more than `n_clusters` components returns its components.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `1 <= n_clusters <= n`.
    pub fn labels_for(&self, n_clusters: usize) -> Result<Vec<i64>> {
        if n_clusters == 0 || n_clusters > self.n {
            return Err(Error::arg(
                "n_clusters",
                format!("must be in 1..={}, got {n_clusters}", self.n),
            ));
        }
        Ok(self.replay((self.n - n_clusters).min(self.merges.len())))
    }
}

/// Single-linkage merge tree of `n` points from candidate `pairs` (row-major `K x 2`) and their
/// `distances` (length `K`), by Kruskal's algorithm.
///
/// Pairs are taken in order of `(distance, row)` — a deterministic, stable order — and each
/// pair joining two different clusters is recorded as a merge. Self-pairs `(i, i)` and repeated
/// pairs are allowed and ignored (they never join two clusters). When the candidate graph is
/// disconnected the result is a forest with fewer than `n - 1` merges.
///
/// # Errors
/// [`Error::InvalidArgument`] when `n == 0`, when a pair index is outside `0..n` (naming
/// `pairs` and the row), or when a distance is NaN, infinite or negative (naming `distances`
/// and the index); [`Error::Shape`] when the lengths disagree.
pub fn single_linkage(n: usize, pairs: &[i64], distances: &[f64]) -> Result<MergeTree> {
    if n == 0 {
        return Err(Error::arg("n", "must be >= 1"));
    }
    let k = check_node_pairs("pairs", n, pairs)?;
    if distances.len() != k {
        return Err(Error::shape(
            "distances",
            format!("length {k} (one per pair)"),
            format!("length {}", distances.len()),
        ));
    }
    check_distances("distances", distances)?;
    let mut order: Vec<usize> = (0..k).collect();
    // Stable sort: ties keep their original order.
    order.sort_by(|&x, &y| distances[x].total_cmp(&distances[y]));
    let what = format!("a merge tree of {n} points");
    let mut uf = UnionFind::try_new(n, "n")?;
    // The current cluster id of each union-find root.
    let mut cluster: Vec<usize> = try_with_capacity(n, "n", &what)?;
    cluster.extend(0..n);
    let mut merges = try_with_capacity((n - 1).min(k), "n", &what)?;
    for idx in order {
        if merges.len() == n - 1 {
            break;
        }
        let (i, j) = (pairs[2 * idx] as usize, pairs[2 * idx + 1] as usize);
        let (ri, rj) = (uf.find(i), uf.find(j));
        if ri == rj {
            continue;
        }
        let (ci, cj) = (cluster[ri], cluster[rj]);
        uf.union(ri, rj);
        let root = uf.find(ri);
        let size = uf.set_size(root);
        cluster[root] = n + merges.len();
        merges.push(Merge {
            a: ci.min(cj),
            b: ci.max(cj),
            distance: distances[idx],
            size,
        });
    }
    Ok(MergeTree { n, merges })
}

fn check_distances<T: Real>(name: &str, d: &[T]) -> Result<()> {
    match d.iter().position(|&x| !(x.is_finite() && x >= T::zero())) {
        Some(i) => Err(Error::arg(
            name,
            format!(
                "index {i}: distance {:?} is not finite and non-negative",
                d[i]
            ),
        )),
        None => Ok(()),
    }
}

/// Condensed entries handled by one chunk of [`merge_by_threshold`].
const CONDENSED_CHUNK: usize = 1 << 20;

/// Canonical labels of single linkage cut at `threshold`, i.e. the connected components of the
/// graph joining `i < j` when `condensed[idx(i, j)] <= threshold`, where `condensed` is in
/// scipy `pdist` order (`idx(i, j) = n i - i (i + 1) / 2 + j - i - 1`, see
/// [`crate::pairs::condensed_index`]).
///
/// The vector is scanned directly in parallel chunks (no pair list is built); each chunk
/// keeps only a spanning forest of its edges, so memory stays `O(n)` per chunk. The result is
/// identical for any thread count.
///
/// # Errors
/// [`Error::Shape`] naming `condensed_distances` when its length is not `n (n - 1) / 2`;
/// [`Error::InvalidArgument`] naming `condensed_distances` and the first bad index when a
/// distance is NaN, infinite or negative, or naming `threshold` when it is NaN;
/// [`Error::Interrupted`] when the executor's interrupt check asks to stop.
pub fn merge_by_threshold<T: Real>(
    n: usize,
    condensed: &[T],
    threshold: f64,
    exec: &Executor<'_>,
) -> Result<Vec<i64>> {
    const NAME: &str = "condensed_distances";
    if threshold.is_nan() {
        return Err(Error::arg("threshold", "must not be NaN"));
    }
    let m = condensed.len();
    if n < 1 || n as u128 * (n as u128 - 1) / 2 != m as u128 {
        return Err(Error::shape(
            NAME,
            format!("length n (n - 1) / 2 = {} for n = {n}", condensed_len(n)),
            format!("length {m}"),
        ));
    }
    let n_chunks = m.div_ceil(CONDENSED_CHUNK);
    let chunks = exec.map(n_chunks, |c| {
        let start = c * CONDENSED_CHUNK;
        let end = (start + CONDENSED_CHUNK).min(m);
        // The row holding `start`: the last i whose row starts at or before `start`.
        let (mut lo, mut hi) = (0, n - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if condensed_row_start(n, mid) <= start {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut uf = UnionFind::new(n);
        let mut forest: Vec<(u32, u32)> = Vec::new();
        let mut i = lo;
        let mut pos = start;
        while pos < end {
            let rs = condensed_row_start(n, i);
            let row_end = (rs + n - 1 - i).min(end);
            let row = &condensed[pos..row_end];
            // Branch-free check first (vectorises); locate the culprit only on failure.
            let valid = |d: T| d.is_finite() & (d >= T::zero());
            let all_valid = row.iter().fold(true, |ok, &d| ok & valid(d));
            if let Some(off) = (!all_valid)
                .then(|| row.iter().position(|&d| !valid(d)))
                .flatten()
            {
                return Err(Error::arg(
                    NAME,
                    format!(
                        "index {}: distance {:?} is not finite and non-negative",
                        pos + off,
                        row[off]
                    ),
                ));
            }
            // Rows `lo..` only touch nodes `lo..n`, so the `lo` nodes before stay singletons:
            // once the others are connected, only validation is left to do.
            if uf.n_sets() > lo + 1 {
                let j0 = i + 1 + (pos - rs);
                for (off, &d) in row.iter().enumerate() {
                    if d.to_f64() <= threshold && uf.union(i, j0 + off) {
                        forest.push((i as u32, (j0 + off) as u32));
                    }
                }
            }
            pos = row_end;
            i += 1;
        }
        Ok(forest)
    })?;
    let mut uf = UnionFind::new(n);
    for forest in chunks {
        for (i, j) in forest? {
            uf.union(i as usize, j as usize);
        }
    }
    Ok(uf.labels())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairs::condensed_index;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn bfs_labels(n: usize, edges: &[(usize, usize)]) -> Vec<i64> {
        let mut adj = vec![Vec::new(); n];
        for &(a, b) in edges {
            adj[a].push(b);
            adj[b].push(a);
        }
        let mut labels = vec![-1_i64; n];
        let mut next = 0;
        for s in 0..n {
            if labels[s] >= 0 {
                continue;
            }
            labels[s] = next;
            let mut q = VecDeque::from([s]);
            while let Some(u) = q.pop_front() {
                for &v in &adj[u] {
                    if labels[v] < 0 {
                        labels[v] = next;
                        q.push_back(v);
                    }
                }
            }
            next += 1;
        }
        labels
    }

    fn flat(edges: &[(usize, usize)]) -> Vec<i64> {
        edges
            .iter()
            .flat_map(|&(a, b)| [a as i64, b as i64])
            .collect()
    }

    fn is_canonical(labels: &[i64]) -> bool {
        let mut next = 0;
        for &l in labels {
            if l == next {
                next += 1;
            } else if l > next || l < 0 {
                return false;
            }
        }
        true
    }

    #[test]
    fn union_find_basics() {
        let mut uf = UnionFind::new(5);
        assert!(uf.union(0, 3));
        assert!(!uf.union(3, 0));
        assert!(uf.union(4, 1));
        assert_eq!(uf.n_sets(), 3);
        assert_eq!(uf.set_size(3), 2);
        assert_eq!(uf.labels(), vec![0, 1, 2, 0, 1]);
        assert!(UnionFind::new(0).labels().is_empty());
    }

    #[test]
    fn connected_components_validates() {
        assert_eq!(
            connected_components(3, &[0, 2, 1, 1]).unwrap(),
            vec![0, 1, 0]
        );
        let err = connected_components(3, &[0, 1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("edges"));
        assert!(err.to_string().contains("row 1"));
        assert!(connected_components(3, &[0, 1, 2]).is_err());
        assert!(connected_components(3, &[-1, 0]).is_err());
        assert_eq!(connected_components(0, &[]).unwrap(), Vec::<i64>::new());
    }

    #[test]
    fn single_linkage_small() {
        // 0 -1- 1 -3- 2, 3 isolated, and a self-pair.
        let t = single_linkage(4, &[1, 2, 0, 1, 2, 2], &[3.0, 1.0, 0.0]).unwrap();
        assert_eq!(
            t.merges(),
            &[
                Merge {
                    a: 0,
                    b: 1,
                    distance: 1.0,
                    size: 2
                },
                Merge {
                    a: 2,
                    b: 4,
                    distance: 3.0,
                    size: 3
                }
            ]
        );
        assert_eq!(t.n_components(), 2);
        assert_eq!(t.labels_at(0.5).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(t.labels_at(1.0).unwrap(), vec![0, 0, 1, 2]);
        assert_eq!(t.labels_at(f64::INFINITY).unwrap(), vec![0, 0, 0, 1]);
        assert_eq!(t.labels_for(3).unwrap(), vec![0, 0, 1, 2]);
        assert_eq!(t.labels_for(1).unwrap(), vec![0, 0, 0, 1]);
        assert!(t.labels_for(0).is_err());
        assert!(t.labels_for(5).is_err());
        assert!(t.labels_at(f64::NAN).is_err());
        let again = MergeTree::from_linkage("merges", 4, &t.to_linkage()).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn single_linkage_ties_are_stable() {
        // All distances equal: pairs are taken in row order.
        let t = single_linkage(3, &[1, 2, 0, 1], &[1.0, 1.0]).unwrap();
        assert_eq!((t.merges()[0].a, t.merges()[0].b), (1, 2));
        assert_eq!((t.merges()[1].a, t.merges()[1].b), (0, 3));
    }

    #[test]
    fn single_linkage_validates() {
        assert!(single_linkage(0, &[], &[]).is_err());
        let err = single_linkage(3, &[0, 1, 1, 2], &[1.0, f64::NAN]).unwrap_err();
        assert!(err.to_string().contains("distances"), "{err}");
        assert!(err.to_string().contains("index 1"), "{err}");
        assert!(single_linkage(3, &[0, 1], &[f64::INFINITY]).is_err());
        assert!(single_linkage(3, &[0, 1], &[-1.0]).is_err());
        assert!(single_linkage(3, &[0, 1], &[1.0, 2.0]).is_err());
        let err = single_linkage(3, &[0, 1, 0, 3], &[1.0, 2.0]).unwrap_err();
        assert!(err.to_string().contains("pairs: row 1"), "{err}");
        assert_eq!(single_linkage(1, &[], &[]).unwrap().n_components(), 1);
    }

    #[test]
    fn from_linkage_validates() {
        let ok = [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 2.0, 3.0];
        assert!(MergeTree::from_linkage("m", 3, &ok).is_ok());
        let bad_cases: [&[f64]; 7] = [
            &[0.0, 1.0, 1.0],                          // not (M, 4)
            &[1.0, 0.0, 1.0, 2.0],                     // ids decreasing
            &[0.0, 3.0, 1.0, 2.0],                     // id not yet created
            &[0.0, 1.5, 1.0, 2.0],                     // not an integer
            &[0.0, 1.0, 1.0, 3.0],                     // wrong size
            &[0.0, 1.0, 2.0, 2.0, 2.0, 3.0, 1.0, 3.0], // decreasing distance
            &[0.0, 1.0, 1.0, 2.0, 1.0, 3.0, 2.0, 3.0], // cluster merged twice
        ];
        for bad in bad_cases {
            assert!(MergeTree::from_linkage("m", 3, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn merge_by_threshold_crosses_chunks() {
        // Large enough for several chunks; a chain 0-1-...-(n-1) of short links on the
        // superdiagonal, everything else long, except one short link (5, n-1) late in the array.
        let n = 2000;
        let m = n * (n - 1) / 2;
        let mut d = vec![10.0_f64; m];
        for i in 0..n / 2 {
            d[condensed_index(n, i, i + 1)] = 1.0;
        }
        d[condensed_index(n, n - 3, n - 1)] = 1.0;
        let exec = Executor::new(Some(4)).unwrap();
        let labels = merge_by_threshold(n, &d, 1.0, &exec).unwrap();
        let mut edges: Vec<(usize, usize)> = (0..n / 2).map(|i| (i, i + 1)).collect();
        edges.push((n - 3, n - 1));
        assert_eq!(labels, bfs_labels(n, &edges));
        let seq = merge_by_threshold(n, &d, 1.0, &Executor::sequential()).unwrap();
        assert_eq!(seq, labels);
        let all = merge_by_threshold(n, &d, 10.0, &exec).unwrap();
        assert!(all.iter().all(|&l| l == 0));
        d[m - 1] = f64::NAN;
        let err = merge_by_threshold(n, &d, 1.0, &exec).unwrap_err();
        assert!(
            err.to_string().contains(&format!("index {}", m - 1)),
            "{err}"
        );
    }

    #[test]
    fn merge_by_threshold_validates() {
        let exec = Executor::sequential();
        assert_eq!(
            merge_by_threshold::<f64>(1, &[], 0.0, &exec).unwrap(),
            vec![0]
        );
        assert!(merge_by_threshold(3, &[1.0, 2.0], 0.0, &exec).is_err());
        assert!(merge_by_threshold(2, &[1.0], f64::NAN, &exec).is_err());
        assert!(merge_by_threshold(2, &[-1.0], 0.0, &exec).is_err());
        assert_eq!(
            merge_by_threshold(3, &[1.0_f32, 5.0, 1.0], 1.0, &exec).unwrap(),
            vec![0, 0, 0]
        );
    }

    fn graph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
        (1_usize..40).prop_flat_map(|n| (Just(n), prop::collection::vec((0..n, 0..n), 0..80)))
    }

    fn weighted_graph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, Vec<f64>)> {
        graph().prop_flat_map(|(n, edges)| {
            let k = edges.len();
            // Few distinct values so that ties are common.
            (
                Just(n),
                Just(edges),
                prop::collection::vec((0_u8..6).prop_map(f64::from), k),
            )
        })
    }

    proptest! {
        #[test]
        fn components_match_bfs((n, edges) in graph()) {
            let labels = connected_components(n, &flat(&edges)).unwrap();
            prop_assert!(is_canonical(&labels));
            prop_assert_eq!(labels, bfs_labels(n, &edges));
        }

        #[test]
        fn linkage_cuts_match_bfs((n, edges, d) in weighted_graph(), t in 0_u8..7) {
            let t = f64::from(t) - 0.5;
            let tree = single_linkage(n, &flat(&edges), &d).unwrap();
            let h = tree.heights();
            prop_assert!(h.windows(2).all(|w| w[0] <= w[1]));
            let all = bfs_labels(n, &edges);
            let k = all.iter().max().map_or(0, |&x| x as usize + 1);
            prop_assert_eq!(tree.n_components(), k);
            let below: Vec<(usize, usize)> = edges
                .iter()
                .zip(&d)
                .filter(|(_, &x)| x <= t)
                .map(|(&e, _)| e)
                .collect();
            let cut = tree.labels_at(t).unwrap();
            prop_assert!(is_canonical(&cut));
            prop_assert_eq!(&cut, &bfs_labels(n, &below));
            // labels_for(c) has max(c, components) clusters.
            for c in 1..=n {
                let l = tree.labels_for(c).unwrap();
                prop_assert!(is_canonical(&l));
                let count = l.iter().max().map_or(0, |&x| x as usize + 1);
                prop_assert_eq!(count, c.max(k));
            }
            // Merge sizes and ids are consistent (validated by from_linkage).
            let again = MergeTree::from_linkage("m", n, &tree.to_linkage()).unwrap();
            prop_assert_eq!(again, tree);
        }

        #[test]
        fn merge_by_threshold_matches_bfs(
            n in 1_usize..30,
            seed in prop::collection::vec(0_u8..5, 435),
            t in 0_u8..6,
            threads in 1_usize..4,
        ) {
            let m = n * (n - 1) / 2;
            let d: Vec<f64> = seed[..m].iter().map(|&x| f64::from(x)).collect();
            let t = f64::from(t);
            let mut edges = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    if d[condensed_index(n, i, j)] <= t {
                        edges.push((i, j));
                    }
                }
            }
            let exec = Executor::new(Some(threads)).unwrap();
            let labels = merge_by_threshold(n, &d, t, &exec).unwrap();
            prop_assert_eq!(&labels, &bfs_labels(n, &edges));
            // Same as cutting the full single-linkage tree.
            let pairs: Vec<(usize, usize)> =
                (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect();
            let tree = single_linkage(n, &flat(&pairs), &d).unwrap();
            prop_assert_eq!(labels, tree.labels_at(t).unwrap());
        }
    }
}
