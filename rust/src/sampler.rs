//! Streaming per-feature samplers: the hashes behind the sampling keys and the reservoir update
//! of one batch, the CPU path of `semot.features.sampling.FeatureSampler`.
//!
//! For every feature the sampler keeps the `n` firing positions with the smallest
//! `(key, tie-break)`, where the tie-break `tb = seq << 32 | pos` is the position in the stream:
//!
//! * mode [`Mode::Weighted`]: `key = -ln(u) / a`, `u` in (0, 1) from a 48-bit hash of
//!   `(seed, seq, pos, feature)` (Efraimidis-Spirakis weighted reservoir);
//! * mode [`Mode::Top`]: `key = -a` (the `n` largest activations).
//!
//! The hashes are the Python ones (`semot.features.sampling.token_hash`, ...) bit for bit, and
//! [`update`] leaves the buffers exactly as the elementwise numpy implementation does, slot for
//! slot: per batch and feature the `n` smallest of the kept entries and the batch's firings
//! stay, the kept entries that drop out free their slots, and the entering firings fill the
//! freed slots in increasing slot order, smallest key first. Ties order kept entries before new
//! ones (kept entries by slot, new ones by row), which is what the numpy path's stable sorts
//! do. So checkpoints written by either path resume on the other.
//!
//! A batch is read once in blocks of rows (in parallel), which sorts its non-zero activations
//! by chunks of [`FEATURES_PER_CHUNK`] features; each chunk then computes its features from
//! those entries in row order (in parallel over chunks). Block and chunk boundaries depend
//! only on the sizes, so the result is the same for any thread count.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::{Error, Result};
use crate::float::Real;
use crate::parallel::Executor;

/// Features per work chunk of [`update`]'s second pass: enough to amortise a chunk's walk over
/// the row blocks' buckets, few enough that a batch has many chunks to share between threads.
pub const FEATURES_PER_CHUNK: usize = 32;

/// Rows per block of the first pass over a batch (which reads the activations in memory order).
const ROWS_PER_BLOCK: usize = 64;

/// The tie-break of an empty slot (its key is `+inf`): after every real entry.
pub const EMPTY_TB: i64 = i64::MAX;

/// The two ways of keying a firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `key = -ln(u) / a`: activation-weighted sample without replacement.
    Weighted,
    /// `key = -a`: the largest activations.
    Top,
}

impl Mode {
    /// Parses `"weighted"` or `"top"`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `mode` for anything else.
    pub fn parse(mode: &str) -> Result<Self> {
        match mode {
            "weighted" => Ok(Self::Weighted),
            "top" => Ok(Self::Top),
            other => Err(Error::arg(
                "mode",
                format!("expected 'weighted' or 'top', got {other:?}"),
            )),
        }
    }
}

/// MurmurHash3's 32-bit finaliser.
#[inline(always)]
pub fn fmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x = x.wrapping_mul(0xC2B2_AE35);
    x ^ (x >> 16)
}

/// 32-bit hash of a token's identity `(seed, seq, pos)` (the two's-complement bits of `seq`
/// and the low 32 bits of `pos`, as the Python `token_hash` on int64 arrays).
#[inline]
pub fn token_hash(seed: u64, seq: i64, pos: i64) -> u32 {
    let s = seq as u64;
    let h = fmix32((s as u32) ^ (seed as u32));
    let h = fmix32(h ^ ((s >> 32) as u32) ^ ((seed >> 32) as u32));
    fmix32(h ^ (pos as u32))
}

/// 32-bit hash of a feature index (its low 32 bits).
#[inline]
pub fn feature_hash(feature: i64) -> u32 {
    fmix32((feature as u32) ^ 0x2545_F491)
}

/// 48 random bits from a token hash and a feature hash.
#[inline(always)]
pub fn combine_hashes(token: u32, feature: u32) -> u64 {
    let h = fmix32(token ^ feature);
    let h2 = fmix32(h ^ 0x68E3_1DA4);
    (u64::from(h >> 8) << 24) | u64::from(h2 >> 8)
}

/// The uniform number in (0, 1) of 48 hash bits: `(bits + 0.5) / 2^48` (exact in `f64`).
#[inline(always)]
pub fn bits_to_uniform(bits: u64) -> f64 {
    (bits as f64 + 0.5) / (1u64 << 48) as f64
}

/// The weighted-mode key `-ln(u) / a` of 48 hash bits and an activation `a > 0`.
///
/// Every CPU path of the Python package computes its keys here (numpy's `log` rounds
/// differently from the platform's `ln` in about 0.3 % of cases on AVX-512 machines).
#[inline(always)]
pub fn weighted_key(bits: u64, activation: f64) -> f64 {
    -bits_to_uniform(bits).ln() / activation
}

/// [`weighted_key`] of each `(bits[i], activations[i])`, for the elementwise implementation.
///
/// # Errors
/// [`Error::Shape`] when the lengths differ; [`Error::InvalidArgument`] for bits outside
/// `0..2^48`.
pub fn weighted_keys(bits: &[i64], activations: &[f64]) -> Result<Vec<f64>> {
    if bits.len() != activations.len() {
        return Err(Error::shape(
            "activations",
            format!("shape ({},) like bits", bits.len()),
            format!("shape ({},)", activations.len()),
        ));
    }
    if let Some(b) = bits.iter().find(|&&b| !(0..1i64 << 48).contains(&b)) {
        return Err(Error::arg(
            "bits",
            format!("expected 48-bit hashes in [0, 2^48), got {b}"),
        ));
    }
    Ok(bits
        .iter()
        .zip(activations)
        .map(|(&b, &a)| weighted_key(b as u64, a))
        .collect())
}

/// The stream position of a token, `seq * 2^32 + pos` with int64 wrap-around (as numpy).
#[inline]
pub fn tie_break(seq: i64, pos: i64) -> i64 {
    seq.wrapping_mul(1 << 32).wrapping_add(pos)
}

/// The buffers of `n_features` reservoirs of `n` slots, with support points of dimension `dim`
/// (row-major, as `FeatureSampler` holds them).
#[derive(Debug)]
pub struct Reservoirs<'a> {
    n_features: usize,
    n: usize,
    dim: usize,
    /// `(F, n)`: each slot's key (`+inf` when empty).
    keys: &'a mut [f64],
    /// `(F, n)`: each slot's tie-break ([`EMPTY_TB`] when empty).
    tb: &'a mut [i64],
    /// `(F, n)`: each slot's activation.
    acts: &'a mut [f32],
    /// `(F, n, dim)`: each slot's support point.
    points: &'a mut [f32],
    /// `(F,)`: firings seen.
    counts: &'a mut [i64],
    /// `(F,)`: sum of the activations seen.
    act_sums: &'a mut [f64],
}

impl<'a> Reservoirs<'a> {
    /// Checks that every buffer has the length its shape asks for.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the first buffer that does not.
    pub fn new(
        n_features: usize,
        n: usize,
        dim: usize,
        keys: &'a mut [f64],
        tb: &'a mut [i64],
        acts: &'a mut [f32],
        points: &'a mut [f32],
        counts: &'a mut [i64],
        act_sums: &'a mut [f64],
    ) -> Result<Self> {
        let slots = n_features * n;
        let expect = |name: &str, len: usize, want: usize, shape: String| {
            if len == want {
                Ok(())
            } else {
                Err(Error::shape(
                    name,
                    format!("{want} elements {shape}"),
                    format!("{len}"),
                ))
            }
        };
        expect("keys", keys.len(), slots, format!("({n_features}, {n})"))?;
        expect("tb", tb.len(), slots, format!("({n_features}, {n})"))?;
        expect("acts", acts.len(), slots, format!("({n_features}, {n})"))?;
        expect(
            "points_buffer",
            points.len(),
            slots * dim,
            format!("({n_features}, {n}, {dim})"),
        )?;
        expect(
            "counts",
            counts.len(),
            n_features,
            format!("({n_features},)"),
        )?;
        expect(
            "act_sums",
            act_sums.len(),
            n_features,
            format!("({n_features},)"),
        )?;
        if n == 0 || dim == 0 {
            return Err(Error::arg(
                "keys",
                "samples per feature and dim must be >= 1",
            ));
        }
        Ok(Self {
            n_features,
            n,
            dim,
            keys,
            tb,
            acts,
            points,
            counts,
            act_sums,
        })
    }
}

/// One batch of `rows` token positions offered to the reservoirs.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a, A, P> {
    /// `(rows, F)` row-major activations; a position fires where its activation is `> 0`.
    pub activations: &'a [A],
    /// `(rows, dim)` row-major support points.
    pub points: &'a [P],
    /// `(rows,)` sequence index of each row.
    pub seq: &'a [i64],
    /// `(rows,)` position in its sequence of each row.
    pub pos: &'a [i64],
}

/// A firing that may enter its feature's reservoir.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    key: f64,
    tb: i64,
    row: usize,
    activation: f64,
}

impl Candidate {
    /// The batch's order: `(key, tie-break, row)`; the row makes it total (one token offered
    /// twice in a batch: earlier row first, as numpy's stable sorts).
    fn order(&self, other: &Self) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.tb.cmp(&other.tb))
            .then(self.row.cmp(&other.row))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.order(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order(other)
    }
}

/// The best (smallest) `cap` candidates offered so far, in a max-heap: the root is the one to
/// beat once the heap is full.
#[derive(Debug)]
struct BestCandidates {
    cap: usize,
    heap: BinaryHeap<Candidate>,
}

impl BestCandidates {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            heap: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, c: Candidate) {
        if self.heap.len() < self.cap {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    /// The kept candidates, smallest first.
    fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

/// The worst kept entry `(key, tb)` of one reservoir: the largest key, and among the slots with
/// that key the largest tie-break. Only a firing ordered before it can enter.
fn worst_entry(keys: &[f64], tb: &[i64]) -> (f64, i64) {
    let mut worst = (f64::NEG_INFINITY, i64::MIN);
    for (&k, &t) in keys.iter().zip(tb) {
        if k.total_cmp(&worst.0).then(t.cmp(&worst.1)) == Ordering::Greater {
            worst = (k, t);
        }
    }
    worst
}

/// Which slots the entering candidates take: `(slot, index into candidates)` pairs.
///
/// `candidates` is sorted by [`Candidate::order`] and holds at most `keys.len()` entries. The
/// reservoir keeps the `n` smallest of its slots and the candidates under the order
/// `(key, tb, kept before new, slot or candidate index)`; the slots whose entries drop out
/// take the entering candidates, both in increasing order.
fn entering_slots(keys: &[f64], tb: &[i64], candidates: &[Candidate]) -> Vec<(usize, usize)> {
    let n = keys.len();
    let m = candidates.len();
    debug_assert!(m <= n);
    if m == 0 {
        return Vec::new();
    }
    let kept_order = |a: &(f64, i64, usize), b: &(f64, i64, usize)| {
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    };
    // Only the m largest kept entries can drop out.
    let mut kept: Vec<(f64, i64, usize)> = (0..n).map(|s| (keys[s], tb[s], s)).collect();
    if m < n {
        kept.select_nth_unstable_by(n - m, kept_order);
    }
    let largest = &mut kept[n - m..];
    largest.sort_unstable_by(kept_order);
    // The m largest of (largest kept) + candidates drop out, taken from the top. On equal
    // (key, tb) the new candidate is the larger one.
    let (mut i, mut j) = (m, m);
    for _ in 0..m {
        let (k, t, _) = largest[i - 1];
        let c = &candidates[j - 1];
        let kept_is_larger = k.total_cmp(&c.key).then(t.cmp(&c.tb)) == Ordering::Greater;
        if kept_is_larger {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    // j candidates enter, into the slots of the m - i = j kept entries that dropped out.
    let mut freed: Vec<usize> = largest[i..].iter().map(|e| e.2).collect();
    freed.sort_unstable();
    freed.into_iter().zip(0..j).collect()
}

/// A non-zero activation: `(row, feature)` and its value.
#[derive(Debug, Clone, Copy)]
struct Entry {
    row: u32,
    feature: u32,
    value: f64,
}

/// What one block of rows holds: its non-zero activations bucketed by feature chunk (each
/// bucket in row-major order), and its first non-finite activation and support point.
#[derive(Debug, Default)]
struct RowScan {
    buckets: Vec<Vec<Entry>>,
    bad_activation: Option<(usize, usize)>,
    bad_point: Option<usize>,
}

/// Scans rows `r0..r1` in memory order: the activations are read once, contiguously (reading
/// them column chunk by column chunk would touch one page per row and chunk), and the rare
/// non-zero entries are sorted into their feature chunk's bucket.
fn scan_rows<A: Real, P: Real>(
    batch: &Batch<'_, A, P>,
    f_all: usize,
    dim: usize,
    r0: usize,
    r1: usize,
) -> RowScan {
    const GROUP: usize = 16;
    let zero = A::from_f64(0.0);
    let mut buckets: Vec<Vec<Entry>> = (0..f_all.div_ceil(FEATURES_PER_CHUNK))
        .map(|_| Vec::new())
        .collect();
    let mut bad_activation = None;
    'rows: for t in r0..r1 {
        let row = &batch.activations[t * f_all..(t + 1) * f_all];
        for (g, group) in row.chunks(GROUP).enumerate() {
            // Almost every entry is zero: a branch-free test per group of 16 (NaN != 0).
            if group.iter().fold(0u8, |any, &x| any | u8::from(x != zero)) == 0 {
                continue;
            }
            for (i, &x) in group.iter().enumerate() {
                let value = x.to_f64();
                if value == 0.0 {
                    continue;
                }
                let f = g * GROUP + i;
                if !value.is_finite() {
                    bad_activation = Some((t, f));
                    break 'rows;
                }
                buckets[f / FEATURES_PER_CHUNK].push(Entry {
                    row: t as u32,
                    feature: f as u32,
                    value,
                });
            }
        }
    }
    let bad_point = (r0..r1).find(|&r| {
        batch.points[r * dim..(r + 1) * dim]
            .iter()
            .any(|x| !x.is_finite())
    });
    RowScan {
        buckets,
        bad_activation,
        bad_point,
    }
}

/// What one chunk of features takes from a batch, before anything is written.
#[derive(Debug, Default)]
struct ChunkScan {
    counts: Vec<i64>,
    sums: Vec<f64>,
    /// Per feature of the chunk: its best candidates, smallest first.
    candidates: Vec<Vec<Candidate>>,
}

/// Firing counts and sums, keys of the firings and the best candidates of each feature of
/// chunk `c` (features `f0..f1`), from the row blocks' buckets taken in row order (so each
/// sum adds the batch's activations in row order). Reads the reservoirs only.
fn scan_chunk(
    res: &Reservoirs<'_>,
    rows: &[RowScan],
    tok: &[u32],
    tbs: &[i64],
    c: usize,
    mode: Mode,
) -> ChunkScan {
    let n = res.n;
    let f0 = c * FEATURES_PER_CHUNK;
    let f1 = (f0 + FEATURES_PER_CHUNK).min(res.n_features);
    let width = f1 - f0;
    let worst: Vec<(f64, i64)> = (f0..f1)
        .map(|f| worst_entry(&res.keys[f * n..(f + 1) * n], &res.tb[f * n..(f + 1) * n]))
        .collect();
    let fhash: Vec<u32> = (f0..f1).map(|f| feature_hash(f as i64)).collect();
    let mut counts = vec![0i64; width];
    let mut sums = vec![0f64; width];
    let mut best: Vec<BestCandidates> = (0..width).map(|_| BestCandidates::new(n)).collect();
    for entry in rows.iter().flat_map(|r| &r.buckets[c]) {
        let a = entry.value;
        if a < 0.0 {
            continue;
        }
        let (t, j) = (entry.row as usize, entry.feature as usize - f0);
        counts[j] += 1;
        sums[j] += a;
        let key = match mode {
            Mode::Weighted => weighted_key(combine_hashes(tok[t], fhash[j]), a),
            Mode::Top => -a,
        };
        let tb = tbs[t];
        let (wk, wt) = worst[j];
        if key.total_cmp(&wk).then(tb.cmp(&wt)) == Ordering::Less {
            best[j].offer(Candidate {
                key,
                tb,
                row: t,
                activation: a,
            });
        }
    }
    ChunkScan {
        counts,
        sums,
        candidates: best.into_iter().map(BestCandidates::into_sorted).collect(),
    }
}

/// The buffers of one chunk of features, and what its scan found.
struct ChunkUpdate<'s> {
    keys: &'s mut [f64],
    tb: &'s mut [i64],
    acts: &'s mut [f32],
    points: &'s mut [f32],
    counts: &'s mut [i64],
    act_sums: &'s mut [f64],
    scan: ChunkScan,
}

fn apply_chunk<P: Real>(u: ChunkUpdate<'_>, batch_points: &[P], n: usize, dim: usize) {
    for (j, cands) in u.scan.candidates.iter().enumerate() {
        u.counts[j] += u.scan.counts[j];
        u.act_sums[j] += u.scan.sums[j];
        let (s0, s1) = (j * n, (j + 1) * n);
        for (slot, c) in entering_slots(&u.keys[s0..s1], &u.tb[s0..s1], cands) {
            let c = &cands[c];
            let at = s0 + slot;
            u.keys[at] = c.key;
            u.tb[at] = c.tb;
            u.acts[at] = c.activation as f32;
            let src = &batch_points[c.row * dim..(c.row + 1) * dim];
            for (d, &x) in u.points[at * dim..(at + 1) * dim].iter_mut().zip(src) {
                *d = x.to_f64() as f32;
            }
        }
    }
}

/// Offers one batch to every feature's reservoir: counts, activation sums and samples.
///
/// `seed` keys [`Mode::Weighted`] (unused by [`Mode::Top`]). Nothing is written unless the
/// whole batch is valid. The interrupt check of `exec` runs only while the batch is scanned,
/// never once the reservoirs are being written.
///
/// # Errors
/// [`Error::Shape`] for arrays of the wrong length; [`Error::InvalidArgument`] naming
/// `activations` (with the feature, sequence and position of the first one in row-major
/// order) or `points` (the first row) for a non-finite value; [`Error::Interrupted`].
pub fn update<A: Real, P: Real>(
    res: &mut Reservoirs<'_>,
    batch: Batch<'_, A, P>,
    mode: Mode,
    seed: u64,
    exec: &Executor<'_>,
) -> Result<()> {
    let (f_all, n, dim) = (res.n_features, res.n, res.dim);
    let rows = batch.seq.len();
    if batch.pos.len() != rows {
        return Err(Error::shape(
            "pos",
            format!("shape ({rows},) like seq"),
            format!("shape ({},)", batch.pos.len()),
        ));
    }
    if batch.activations.len() != rows * f_all {
        return Err(Error::shape(
            "activations",
            format!("shape ({rows}, {f_all})"),
            format!("{} elements", batch.activations.len()),
        ));
    }
    if batch.points.len() != rows * dim {
        return Err(Error::shape(
            "points",
            format!("shape ({rows}, {dim})"),
            format!("{} elements", batch.points.len()),
        ));
    }
    if rows == 0 || f_all == 0 {
        return Ok(());
    }
    let tbs: Vec<i64> = batch
        .seq
        .iter()
        .zip(batch.pos)
        .map(|(&s, &p)| tie_break(s, p))
        .collect();
    let tok: Vec<u32> = match mode {
        Mode::Weighted => batch
            .seq
            .iter()
            .zip(batch.pos)
            .map(|(&s, &p)| token_hash(seed, s, p))
            .collect(),
        Mode::Top => Vec::new(),
    };

    // Phase 1: read only (interruptible). Rows in blocks, then features in chunks.
    let blocks = exec.map(rows.div_ceil(ROWS_PER_BLOCK), |b| {
        let r0 = b * ROWS_PER_BLOCK;
        scan_rows(&batch, f_all, dim, r0, (r0 + ROWS_PER_BLOCK).min(rows))
    })?;
    if let Some((t, f)) = blocks.iter().find_map(|b| b.bad_activation) {
        return Err(Error::arg(
            "activations",
            format!(
                "non-finite value for feature {f} at sequence {}, position {}",
                batch.seq[t], batch.pos[t]
            ),
        ));
    }
    if let Some(r) = blocks.iter().find_map(|b| b.bad_point) {
        return Err(Error::arg(
            "points",
            format!(
                "non-finite support point at sequence {}, position {}",
                batch.seq[r], batch.pos[r]
            ),
        ));
    }
    let shared: &Reservoirs<'_> = res;
    let scans = exec.map(f_all.div_ceil(FEATURES_PER_CHUNK), |c| {
        scan_chunk(shared, &blocks, &tok, &tbs, c, mode)
    })?;
    drop(blocks);

    // Phase 2: write, without interrupt check, so a batch is never half-offered.
    let writer = Executor::new(Some(exec.threads()))?;
    let slots = FEATURES_PER_CHUNK * n;
    let items: Vec<ChunkUpdate<'_>> = res
        .keys
        .chunks_mut(slots)
        .zip(res.tb.chunks_mut(slots))
        .zip(res.acts.chunks_mut(slots))
        .zip(res.points.chunks_mut(slots * dim))
        .zip(res.counts.chunks_mut(FEATURES_PER_CHUNK))
        .zip(res.act_sums.chunks_mut(FEATURES_PER_CHUNK))
        .zip(scans)
        .map(
            |((((((keys, tb), acts), points), counts), act_sums), scan)| ChunkUpdate {
                keys,
                tb,
                acts,
                points,
                counts,
                act_sums,
                scan,
            },
        )
        .collect();
    writer.each(items, |_, u| apply_chunk(u, batch.points, n, dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hashes_match_the_python_functions() {
        // Values printed by semot.features.sampling on int64 numpy arrays.
        assert_eq!(fmix32(0), 0);
        assert_eq!(fmix32(1), 1_364_076_727);
        assert_eq!(fmix32(0xDEAD_BEEF), 233_162_409);
        assert_eq!(fmix32(0xFFFF_FFFF), 2_180_083_513);
        let tokens: [(u64, i64, i64, u32); 6] = [
            (0, 0, 0, 0),
            (1, 2, 3, 2_605_390_241),
            (123_456_789, 7, 127, 4_040_426_185),
            (u64::MAX, (1 << 40) + 5, 65535, 1_272_783_567),
            (u64::MAX - 4, -3, -1, 1_996_571_523),
            ((1 << 63) + 17, 1 << 33, (1 << 32) + 9, 2_895_184_983),
        ];
        for (seed, seq, pos, want) in tokens {
            assert_eq!(token_hash(seed, seq, pos), want, "{seed} {seq} {pos}");
        }
        for (f, want) in [
            (0, 2_628_190_328),
            (1, 1_822_669_166),
            (2047, 426_514_758),
            ((1 << 31) + 3, 1_760_889_242),
        ] {
            assert_eq!(feature_hash(f), want);
        }
        assert_eq!(combine_hashes(0, 0), 4_934_138);
        assert_eq!(combine_hashes(0x1234_5678, 0x9ABC_DEF0), 32_362_450_756_953);
        assert_eq!(combine_hashes(0xFFFF_FFFF, 1), 133_684_138_559_564);
        // hash_bits(42, seq=3, pos=17, feature=5)
        assert_eq!(
            combine_hashes(token_hash(42, 3, 17), feature_hash(5)),
            188_899_765_885_133
        );
    }

    #[test]
    fn uniforms_stay_inside_the_open_interval() {
        assert!(bits_to_uniform(0) > 0.0);
        assert!(bits_to_uniform((1 << 48) - 1) < 1.0);
        assert!(weighted_key((1 << 48) - 1, 1.0) > 0.0);
        assert!(weighted_keys(&[1 << 48], &[1.0]).is_err());
        assert!(weighted_keys(&[1], &[1.0, 2.0]).is_err());
    }

    /// A reservoir set of `f` features with `n` slots and 1-d points, all empty.
    struct Owned {
        f: usize,
        n: usize,
        keys: Vec<f64>,
        tb: Vec<i64>,
        acts: Vec<f32>,
        points: Vec<f32>,
        counts: Vec<i64>,
        sums: Vec<f64>,
    }

    impl Owned {
        fn new(f: usize, n: usize) -> Self {
            Self {
                f,
                n,
                keys: vec![f64::INFINITY; f * n],
                tb: vec![EMPTY_TB; f * n],
                acts: vec![0.0; f * n],
                points: vec![0.0; f * n],
                counts: vec![0; f],
                sums: vec![0.0; f],
            }
        }

        fn offer(&mut self, acts: &[f32], seq: &[i64], mode: Mode, threads: usize) -> Result<()> {
            let rows = seq.len();
            let pos: Vec<i64> = vec![0; rows];
            let points: Vec<f32> = (0..rows).map(|r| r as f32).collect();
            let mut res = Reservoirs::new(
                self.f,
                self.n,
                1,
                &mut self.keys,
                &mut self.tb,
                &mut self.acts,
                &mut self.points,
                &mut self.counts,
                &mut self.sums,
            )?;
            let batch = Batch {
                activations: acts,
                points: &points,
                seq,
                pos: &pos,
            };
            update(
                &mut res,
                batch,
                mode,
                7,
                &Executor::new(Some(threads)).unwrap(),
            )
        }

        /// Each feature's kept (key, tb), sorted.
        fn kept(&self, f: usize) -> Vec<(f64, i64)> {
            let mut v: Vec<(f64, i64)> = (f * self.n..(f + 1) * self.n)
                .filter(|&s| self.keys[s].is_finite())
                .map(|s| (self.keys[s], self.tb[s]))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            v
        }
    }

    fn key_of(a: f32, seq: i64, f: usize, mode: Mode) -> f64 {
        match mode {
            Mode::Weighted => weighted_key(
                combine_hashes(token_hash(7, seq, 0), feature_hash(f as i64)),
                f64::from(a),
            ),
            Mode::Top => -f64::from(a),
        }
    }

    fn batches() -> impl Strategy<Value = (usize, usize, Vec<Vec<f32>>)> {
        (1usize..5, 1usize..6, 1usize..5).prop_flat_map(|(f, n, n_batches)| {
            // Activations on a coarse grid (ties), mostly zero.
            let value =
                prop_oneof![3 => Just(0.0f32), 2 => (1u8..4).prop_map(|v| f32::from(v) * 0.5)];
            let batch = (1usize..7)
                .prop_flat_map(move |rows| prop::collection::vec(value.clone(), rows * f));
            (Just(f), Just(n), prop::collection::vec(batch, n_batches))
        })
    }

    proptest! {
        #[test]
        fn reservoirs_keep_the_n_smallest_keys((f, n, stream) in batches(), top in any::<bool>()) {
            let mode = if top { Mode::Top } else { Mode::Weighted };
            let mut one = Owned::new(f, n);
            let mut two = Owned::new(f, n);
            let mut all: Vec<Vec<(f64, i64)>> = vec![Vec::new(); f];
            let mut next_seq = 0i64;
            for acts in &stream {
                let rows = acts.len() / f;
                let seq: Vec<i64> = (next_seq..next_seq + rows as i64).collect();
                next_seq += rows as i64;
                one.offer(acts, &seq, mode, 1).unwrap();
                two.offer(acts, &seq, mode, 2).unwrap();
                for (t, row) in acts.chunks(f).enumerate() {
                    for (j, &a) in row.iter().enumerate() {
                        if a > 0.0 {
                            all[j].push((key_of(a, seq[t], j, mode), tie_break(seq[t], 0)));
                        }
                    }
                }
            }
            for (j, entries) in all.iter_mut().enumerate() {
                entries.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                entries.truncate(n);
                prop_assert_eq!(&one.kept(j), entries);
                prop_assert_eq!(one.counts[j], all_count(&stream, f, j));
            }
            prop_assert_eq!(&one.keys, &two.keys);
            prop_assert_eq!(&one.tb, &two.tb);
            prop_assert_eq!(&one.points, &two.points);
            prop_assert_eq!(&one.sums, &two.sums);
            // The support point of a slot is the one of its row (seq = row in the stream).
            for s in 0..f * n {
                if one.keys[s].is_finite() {
                    let row = one.tb[s] >> 32;
                    let first_of_batch = seq_start(&stream, f, row);
                    prop_assert_eq!(one.points[s], (row - first_of_batch) as f32);
                }
            }
        }
    }

    fn all_count(stream: &[Vec<f32>], f: usize, j: usize) -> i64 {
        stream
            .iter()
            .flat_map(|b| b.chunks(f).map(|r| r[j]))
            .filter(|&a| a > 0.0)
            .count() as i64
    }

    /// The first stream row of the batch holding stream row `row`.
    fn seq_start(stream: &[Vec<f32>], f: usize, row: i64) -> i64 {
        let mut start = 0i64;
        for b in stream {
            let rows = (b.len() / f) as i64;
            if row < start + rows {
                return start;
            }
            start += rows;
        }
        unreachable!("row {row} is in the stream")
    }

    #[test]
    fn entering_candidates_take_the_freed_slots_in_order() {
        // Empty reservoir of 4: the numpy path fills the last slots first (its stable sort puts
        // the kept empty slots 0, 1 before the free ones).
        let keys = [f64::INFINITY; 4];
        let tb = [EMPTY_TB; 4];
        let c = |key: f64, row: usize| Candidate {
            key,
            tb: row as i64,
            row,
            activation: 1.0,
        };
        let cands = [c(0.5, 0), c(0.7, 1)];
        assert_eq!(entering_slots(&keys, &tb, &cands), vec![(2, 0), (3, 1)]);
        // Full reservoir: the worst entry (slot 0) drops for the better candidate; a candidate
        // equal to a kept entry (slot 3) loses to it.
        let keys = [0.9, 0.1, 0.2, 0.8];
        let tb = [0, 1, 2, 3];
        let cands = [c(0.15, 9), c(0.8, 3)];
        assert_eq!(entering_slots(&keys, &tb, &cands), vec![(0, 0)]);
        // Two better candidates replace slots 0 and 3, the smaller one in slot 0.
        let cands = [c(0.05, 8), c(0.3, 9)];
        assert_eq!(entering_slots(&keys, &tb, &cands), vec![(0, 0), (3, 1)]);
    }

    #[test]
    fn nothing_changes_on_bad_input() {
        let mut r = Owned::new(2, 2);
        r.offer(&[1.0, 0.0, 2.0, 3.0], &[0, 1], Mode::Weighted, 1)
            .unwrap();
        let before = (r.keys.clone(), r.counts.clone(), r.sums.clone());
        let err = r
            .offer(&[1.0, 0.0, 2.0, f32::NAN], &[5, 6], Mode::Weighted, 2)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "activations: non-finite value for feature 1 at sequence 6, position 0"
        );
        let err = r
            .offer(&[f32::NEG_INFINITY, 0.0, 2.0, 1.0], &[5, 6], Mode::Top, 1)
            .unwrap_err();
        assert!(err.to_string().contains("feature 0 at sequence 5"), "{err}");
        assert_eq!(before, (r.keys.clone(), r.counts.clone(), r.sums.clone()));
        assert!(Mode::parse("random").is_err());
    }
}
