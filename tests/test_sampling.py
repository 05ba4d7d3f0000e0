"""The streaming samplers against brute force, exact probabilities and each other."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semot.features.sampling import FeatureSampler, hash_uniform

from conftest import optional_import


def _stream(rng: np.random.Generator, s: int, length: int, f: int, k: int, ties: bool = False):
    acts = np.where(rng.random((s, length, f)) < 0.3, rng.exponential(size=(s, length, f)), 0)
    if ties:
        acts = np.round(acts * 2) / 2
    pts = rng.normal(size=(s, length, k))
    return acts.astype(np.float32), pts.astype(np.float32)


def _run(acts, pts, n, mode, seed, batch, order=None):
    s, length, f = acts.shape
    smp = FeatureSampler(f, n, pts.shape[2], mode=mode, seed=seed)
    starts = list(range(0, s, batch))
    if order is not None:
        starts = [starts[i] for i in order]
    for s0 in starts:
        rows = np.arange(s0, min(s, s0 + batch))
        seq = np.repeat(rows, length)
        pos = np.tile(np.arange(length), rows.size)
        smp.update(acts[rows].reshape(-1, f), pts[rows].reshape(-1, pts.shape[2]), seq, pos)
    return smp.result()


def _brute(acts, n, mode, seed, f):
    s, p = np.nonzero(acts[:, :, f] > 0)
    a = acts[s, p, f].astype(np.float64)
    if mode == "top":
        key = -a
    else:
        u = hash_uniform(seed, s.astype(np.int64), p.astype(np.int64), np.full(s.size, f))
        key = -np.log(u) / a
    order = np.lexsort((s * 2**32 + p, key))[:n]
    return s[order], p[order]


@pytest.mark.parametrize("mode", ["weighted", "top"])
@pytest.mark.parametrize("batch", [1, 3, 40])
def test_sampler_equals_brute_force(mode, batch):
    rng = np.random.default_rng(1)
    acts, pts = _stream(rng, 40, 9, 6, 3, ties=mode == "top")
    r = _run(acts, pts, 5, mode, 7, batch)
    for f in range(acts.shape[2]):
        s, p = _brute(acts, 5, mode, 7, f)
        rows = slice(r.offsets[f], r.offsets[f + 1])
        np.testing.assert_array_equal(r.seq[rows], s)
        np.testing.assert_array_equal(r.pos[rows], p)
        np.testing.assert_array_equal(r.points[rows], pts[s, p])
        np.testing.assert_array_equal(r.activations[rows], acts[s, p, f])
        assert r.firing_counts[f] == (acts[:, :, f] > 0).sum()
        np.testing.assert_allclose(r.activation_sums[f], acts[:, :, f].sum(dtype=np.float64))
        w = r.weights[rows]
        np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
        if mode == "top":
            np.testing.assert_allclose(w, acts[s, p, f] / acts[s, p, f].sum(), rtol=1e-6)
        else:
            np.testing.assert_allclose(w, 1.0 / len(s), rtol=1e-6)


def test_batching_and_order_do_not_change_the_sample():
    rng = np.random.default_rng(2)
    acts, pts = _stream(rng, 30, 7, 5, 2)
    ref = _run(acts, pts, 4, "weighted", 0, 30)
    for batch, order in [(1, None), (4, None), (4, [7, 2, 5, 0, 1, 3, 6, 4])]:
        r = _run(acts, pts, 4, "weighted", 0, batch, order)
        for name in ("points", "keys", "seq", "pos", "offsets", "firing_counts"):
            np.testing.assert_array_equal(getattr(r, name), getattr(ref, name))


def test_state_dict_round_trip_mid_stream():
    rng = np.random.default_rng(3)
    acts, pts = _stream(rng, 20, 5, 4, 2)
    full = _run(acts, pts, 3, "weighted", 5, 2)
    a = FeatureSampler(4, 3, 2, seed=5)
    for s0 in range(0, 10, 2):
        rows = np.arange(s0, s0 + 2)
        a.update(
            acts[rows].reshape(-1, 4),
            pts[rows].reshape(-1, 2),
            np.repeat(rows, 5),
            np.tile(np.arange(5), 2),
        )
    b = FeatureSampler(4, 3, 2, seed=5)
    b.load_state_dict(a.state_dict())
    for s0 in range(10, 20, 2):
        rows = np.arange(s0, s0 + 2)
        b.update(
            acts[rows].reshape(-1, 4),
            pts[rows].reshape(-1, 2),
            np.repeat(rows, 5),
            np.tile(np.arange(5), 2),
        )
    r = b.result()
    for name in ("points", "keys", "seq", "pos", "offsets", "firing_counts", "activation_sums"):
        np.testing.assert_array_equal(getattr(r, name), getattr(full, name))


def _inclusion_probabilities(w: np.ndarray, n: int) -> np.ndarray:
    """Exact inclusion probabilities of successive weighted sampling without replacement."""
    probs = np.zeros(len(w))
    for seq in itertools.permutations(range(len(w)), n):
        p, left = 1.0, w.sum()
        for i in seq:
            p *= w[i] / left
            left -= w[i]
        probs[list(seq)] += p
    return probs


@pytest.mark.parametrize("n", [1, 2])
def test_weighted_mode_inclusion_frequencies_match_exact_probabilities(n):
    """Efraimidis-Spirakis keeps item i with the successive-sampling probability; n=1 is the
    activation-weighted measure itself. Chi-square test over 4000 seeds (fixed)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    a = np.array([0.1, 0.5, 1.0, 2.0, 4.0, 0.25], dtype=np.float32)
    trials = 4000
    counts = np.zeros(a.size)
    for seed in range(trials):
        smp = FeatureSampler(1, n, 1, seed=seed)
        smp.update(
            a[:, None],
            np.zeros((a.size, 1), np.float32),
            np.zeros(a.size, np.int64),
            np.arange(a.size),
        )
        counts[smp.result().pos] += 1
    expected = _inclusion_probabilities(a.astype(np.float64), n) * trials
    if n == 1:
        np.testing.assert_allclose(expected / trials, a / a.sum())
    # Inclusion indicators sum to n per trial: chi-square on counts/n is the multinomial test
    # for n=1 and conservative enough for n=2 with this many trials.
    stat = (((counts - expected) ** 2) / expected).sum() / n
    p_value = scipy_stats.chi2.sf(stat, df=a.size - 1)
    assert p_value > 1e-3, (counts, expected, p_value)
    # And the test has power: uniform inclusion would be rejected.
    uniform = np.full(a.size, trials * n / a.size)
    stat_u = (((counts - uniform) ** 2) / uniform).sum() / n
    assert scipy_stats.chi2.sf(stat_u, df=a.size - 1) < 1e-6


def test_hash_uniform_is_uniform_and_distinct():
    scipy_stats = pytest.importorskip("scipy.stats")
    seq = np.repeat(np.arange(200), 50).astype(np.int64)
    pos = np.tile(np.arange(50), 200).astype(np.int64)
    u = hash_uniform(0, seq, pos, np.full(seq.size, 3))
    assert ((u > 0) & (u < 1)).all()
    assert np.unique(u).size == u.size
    assert scipy_stats.kstest(u, "uniform").pvalue > 1e-3
    v = hash_uniform(1, seq, pos, np.full(seq.size, 3))
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.05


def test_bad_input():
    smp = FeatureSampler(3, 2, 2)
    with pytest.raises(ValueError, match="activations: expected shape"):
        smp.update(
            np.zeros((4, 2), np.float32),
            np.zeros((4, 2), np.float32),
            np.zeros(4, np.int64),
            np.arange(4),
        )
    with pytest.raises(ValueError, match="points: expected shape"):
        smp.update(
            np.zeros((4, 3), np.float32),
            np.zeros((4, 5), np.float32),
            np.zeros(4, np.int64),
            np.arange(4),
        )
    acts = np.zeros((4, 3), np.float32)
    acts[2, 1] = np.nan
    with pytest.raises(ValueError, match="feature 1 at sequence 0, position 2"):
        smp.update(acts, np.zeros((4, 2), np.float32), np.zeros(4, np.int64), np.arange(4))
    with pytest.raises(ValueError, match="mode"):
        FeatureSampler(3, 2, 2, mode="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples_per_feature"):
        FeatureSampler(3, 0, 2)


@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 6),
    batch=st.integers(1, 12),
)
@settings(max_examples=30, deadline=None)
def test_property_sample_is_the_n_smallest_keys(seed, n, batch):
    rng = np.random.default_rng(seed % 1000)
    acts, pts = _stream(rng, 12, 4, 3, 2)
    r = _run(acts, pts, n, "weighted", seed, batch)
    for f in range(3):
        s, p = _brute(acts, n, "weighted", seed, f)
        rows = slice(r.offsets[f], r.offsets[f + 1])
        np.testing.assert_array_equal(r.seq[rows], s)
        np.testing.assert_array_equal(r.pos[rows], p)


def test_torch_backend_matches_numpy():
    torch = optional_import("torch")
    rng = np.random.default_rng(4)
    acts, pts = _stream(rng, 25, 6, 5, 3)
    ref = _run(acts, pts, 4, "weighted", 9, 25)
    smp = FeatureSampler(5, 4, 3, seed=9, like=torch.empty(0))
    seq = np.repeat(np.arange(25), 6)
    pos = np.tile(np.arange(6), 25)
    for s0 in range(0, 150, 36):
        sl = slice(s0, s0 + 36)
        smp.update(
            torch.from_numpy(acts.reshape(-1, 5)[sl]),
            torch.from_numpy(pts.reshape(-1, 3)[sl]),
            torch.from_numpy(seq[sl]),
            torch.from_numpy(pos[sl]),
        )
    r = smp.result()
    for name in ("points", "seq", "pos", "offsets", "firing_counts", "weights"):
        np.testing.assert_array_equal(getattr(r, name), getattr(ref, name))
    # log() may differ by one ulp between numpy and torch.
    np.testing.assert_allclose(r.keys, ref.keys, rtol=1e-14)


def test_top_mode_with_unfired_features_at_the_end():
    acts = np.zeros((6, 4), np.float32)
    acts[:, 0] = [1, 2, 0, 3, 0, 1]
    acts[2, 1] = 5.0
    smp = FeatureSampler(4, 2, 1, mode="top")
    smp.update(acts, np.arange(6, dtype=np.float32)[:, None], np.zeros(6, np.int64), np.arange(6))
    r = smp.result()
    np.testing.assert_array_equal(r.offsets, [0, 2, 3, 3, 3])
    np.testing.assert_array_equal(r.pos, [3, 1, 2])
    np.testing.assert_allclose(r.weights, [0.6, 0.4, 1.0])
