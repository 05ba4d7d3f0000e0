"""Mixed sets in the exact sliced cdist: pairs with a uniform cloud of the routed size by
matrix product (quantile embedding plus Jensen gap), the pairs of two other clouds by merge.

The all-merge reference is ``sliced_wasserstein_pairs`` (it merges every pair), checked in turn
against POT on a few pairs.
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import semot
from semot import _core


def mixed_set(rng, n_clouds, n, d, ragged, dtype=np.float64):
    """``n_clouds`` clouds of ``n`` uniform points, of which a ``ragged`` share are cut short or
    given general weights (half each), plus some uniform clouds of another size."""
    clouds = []
    kinds = rng.random(n_clouds)
    for k in kinds:
        centre = 2 * rng.normal(size=(1, d))
        if k < ragged / 2:
            m = int(rng.integers(1, n))
            clouds.append((rng.normal(size=(m, d)) + centre, np.ones(m)))
        elif k < ragged:
            clouds.append((rng.normal(size=(n, d)) + centre, rng.random(n) + 0.1))
        else:
            clouds.append((rng.normal(size=(n, d)) + centre, np.ones(n)))
    return semot.PointClouds.from_list(
        [(x.astype(dtype), w.astype(dtype)) for x, w in clouds], dtype=dtype
    )


def all_merge(A, B, proj):
    ii, jj = np.meshgrid(np.arange(len(A)), np.arange(len(B)), indexing="ij")
    pairs = np.stack([ii.ravel(), jj.ravel()], axis=1)
    return semot.sliced_wasserstein_pairs(A, B, pairs, projections=proj).reshape(len(A), len(B))


def routed_clouds(A, B):
    """Which clouds of A and of B the kernel's rule routes (computed here plainly): uniform
    weights and the size most common among the uniform clouds of B (the larger on ties)."""

    def sizes(c):
        return [len(w) if np.all(w == w[0]) else None for w in np.split(c.weights, c.offsets[1:-1])]

    sa, sb = sizes(A), sizes(B)
    counts: dict[int, int] = {}
    for s in sb:
        if s is not None:
            counts[s] = counts.get(s, 0) + 1
    n = max(counts, key=lambda s: (counts[s], s))
    return np.array([s == n for s in sa]), np.array([s == n for s in sb])


def routed_mask(A, B):
    """Which pairs take the matrix product: those with a routed cloud on either side."""
    ra, rb = routed_clouds(A, B)
    return ra[:, None] | rb[None, :]


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    ragged=st.sampled_from([0.02, 0.2, 0.6]),
    n=st.integers(2, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_routed_equals_all_merge(seed, ragged, n, dtype):
    rng = np.random.default_rng(seed)
    A = mixed_set(rng, 70, n, 4, ragged, dtype)
    B = mixed_set(rng, 64, n, 4, ragged, dtype)
    proj = semot.random_projections(4, 12, seed=seed % 1000).astype(dtype)
    D = semot.sliced_wasserstein_cdist(A, B, projections=proj)
    ref = all_merge(A, B, proj)
    mask = routed_mask(A, B)
    n_routed = _core.sw_gemm_pairs(
        A.points, A.weights, A.offsets, B.points, B.weights, B.offsets, 2.0
    )
    assert n_routed == mask.sum()
    # Merged pairs: the same arithmetic as the all-merge kernel, bit for bit.
    np.testing.assert_array_equal(D[~mask], ref[~mask])
    # Matrix-product pairs: the same quantity, other rounding.
    rel = 1e-6 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(D[mask], ref[mask], rtol=rel, atol=rel * float(ref.mean()))


def test_reference_is_pot(rng):
    A = mixed_set(rng, 70, 6, 3, 0.3)
    B = mixed_set(rng, 60, 6, 3, 0.3)
    proj = semot.random_projections(3, 10, seed=4)
    D = semot.sliced_wasserstein_cdist(A, B, projections=proj)
    mask = routed_mask(A, B)
    assert 0 < mask.sum() < mask.size
    for i, j in [*np.argwhere(mask)[:5], *np.argwhere(~mask)[:5]]:
        (x, a), (y, b) = A[int(i)], B[int(j)]
        want = ot.sliced_wasserstein_distance(x, y, a / a.sum(), b / b.sum(), projections=proj)
        assert D[i, j] == pytest.approx(want, rel=1e-9)


def test_one_sided_pairs_are_exact(rng):
    """A ragged or weighted cloud against a routed one takes the matrix product with its Jensen
    gap: POT's value to float64 rounding, in both orientations."""
    A = mixed_set(rng, 70, 6, 3, 0.5)
    B = mixed_set(rng, 60, 6, 3, 0.5)
    proj = semot.random_projections(3, 10, seed=5)
    D = semot.sliced_wasserstein_cdist(A, B, projections=proj)
    ra, rb = routed_clouds(A, B)
    one_sided = np.argwhere(ra[:, None] ^ rb[None, :])
    picks = [*one_sided[ra[one_sided[:, 0]]][:6], *one_sided[~ra[one_sided[:, 0]]][:6]]
    assert len(picks) == 12
    for i, j in picks:
        (x, a), (y, b) = A[int(i)], B[int(j)]
        want = ot.sliced_wasserstein_distance(x, y, a / a.sum(), b / b.sum(), projections=proj)
        assert D[i, j] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pdist_routes_like_cdist_of_the_set_with_itself(rng, dtype):
    from scipy.spatial.distance import squareform

    A = mixed_set(rng, 110, 5, 3, 0.2, dtype)
    proj = semot.random_projections(3, 12, seed=2).astype(dtype)
    cond = semot.sliced_wasserstein_pdist(A, projections=proj, n_threads=2)
    assert len(cond) >= _core.GEMM_MIN_PAIRS
    D = squareform(cond, checks=False)
    ref = all_merge(A, A, proj)
    np.fill_diagonal(ref, 0.0)
    merged = ~routed_mask(A, A)
    # Pairs of two unrouted clouds are merged: the all-merge kernel's bits.
    np.testing.assert_array_equal(D[merged], ref[merged])
    rel = 1e-6 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(D[~merged], ref[~merged], rtol=rel, atol=rel * float(ref.mean()))
    assert np.array_equal(cond, semot.sliced_wasserstein_pdist(A, projections=proj, n_threads=1))


def test_route_is_chosen_by_the_most_common_uniform_size_of_b(rng):
    def uniform(count, n):
        return [rng.normal(size=(n, 2)) for _ in range(count)]

    # B: 40 uniform clouds of 5 points, 30 of 7, 5 weighted ones of 5: the route is n = 5.
    weighted = [(x, rng.random(5) + 0.1) for x in uniform(5, 5)]
    B = semot.PointClouds.from_list(uniform(40, 5) + uniform(30, 7) + weighted)
    A = semot.PointClouds.from_list(uniform(50, 7) + uniform(20, 5))
    args = (A.points, A.weights, A.offsets, B.points, B.weights, B.offsets)
    # Every pair but those of an unrouted cloud of A (50) and one of B (30 + 5).
    assert _core.sw_gemm_pairs(*args, 2.0) == 70 * 75 - 50 * 35
    assert _core.sw_gemm_pairs(*args, 1.0) == 0
    # Ties go to the larger size: n = 7 for A against itself, the 20 of 5 points unrouted.
    assert _core.sw_gemm_pairs(*args[:3], *args[:3], 2.0) == 70 * 70 - 20 * 20
    small = A.subset(np.arange(50))
    assert _core.sw_gemm_pairs(*args[:3], small.points, small.weights, small.offsets, 2.0) == 0


def test_bit_identical_for_any_thread_count_and_row_stripe(rng):
    g = semot._core.GEMM_ROWS
    A = mixed_set(rng, 2 * g + 44, 6, 4, 0.1, np.float32)
    B = mixed_set(rng, 40, 6, 4, 0.1, np.float32)
    proj = semot.random_projections(4, 16, seed=3).astype(np.float32)
    D1 = semot.sliced_wasserstein_cdist(A, B, projections=proj, n_threads=1)
    for t in (2, 3):
        got = semot.sliced_wasserstein_cdist(A, B, projections=proj, n_threads=t)
        assert np.array_equal(got, D1)
    # Stripes starting at multiples of GEMM_ROWS against all of B (the distributed layout),
    # each with enough pairs to take the matrix product (GEMM_MIN_PAIRS), as the driver's do.
    for r0, r1 in [(0, g), (g, 2 * g + 44), (g, 2 * g)]:
        part = semot.sliced_wasserstein_cdist(
            A.subset(np.arange(r0, r1)), B, projections=proj, n_threads=2
        )
        assert np.array_equal(part, D1[r0:r1])


@pytest.mark.parametrize("p", [1.0, 2.0, 2.5])
def test_cdist_of_a_set_with_itself_is_exactly_symmetric(rng, p):
    A = mixed_set(rng, 80, 5, 3, 0.3)
    proj = semot.random_projections(3, 8, seed=1)
    D = semot.sliced_wasserstein_cdist(A, A, projections=proj, p=p, n_threads=2)
    # The same values as against a copy (two-sided), and symmetric bit for bit where merged.
    copy = semot.PointClouds.from_csr_unchecked(A.points.copy(), A.weights.copy(), A.offsets.copy())
    assert np.array_equal(D, semot.sliced_wasserstein_cdist(A, copy, projections=proj, p=p))
    merged = ~routed_mask(A, A) if p == 2 else np.ones(D.shape, bool)
    assert np.array_equal(D[merged], D.T[merged])
    assert np.all(np.diag(D)[np.diag(merged)] == 0)
