"""Sliced Wasserstein distances against POT and scipy, invariants, and bulk consistency."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import squareform

import semot

from conftest import random_clouds


def pot_sw(x, y, a, b, proj, p):
    a = None if a is None else np.asarray(a, np.float64) / np.sum(a)
    b = None if b is None else np.asarray(b, np.float64) / np.sum(b)
    return ot.sliced_wasserstein_distance(
        np.asarray(x, np.float64), np.asarray(y, np.float64), a, b, projections=proj, p=p
    )


@pytest.mark.parametrize("p", [1, 2, 3.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_single_pair_matches_pot(rng, p, weighted):
    for _ in range(5):
        x = rng.normal(size=(int(rng.integers(1, 40)), 7))
        y = rng.normal(size=(int(rng.integers(1, 40)), 7)) + 0.5
        a = rng.random(len(x)) + 0.01 if weighted else None
        b = rng.random(len(y)) + 0.01 if weighted else None
        proj = semot.random_projections(7, 50, seed=int(rng.integers(1 << 30)))
        got = semot.sliced_wasserstein_distance(x, y, a, b, projections=proj, p=p)
        want = pot_sw(x, y, a, b, proj, p)
        assert got == pytest.approx(want, rel=1e-6)


def test_non_unit_projections_used_as_given(rng):
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(8, 3))
    proj = rng.normal(size=(3, 20)) * 3.0
    got = semot.sliced_wasserstein_distance(x, y, projections=proj)
    assert got == pytest.approx(pot_sw(x, y, None, None, proj, 2), rel=1e-6)


def test_float32_close_to_float64(rng):
    x = rng.normal(size=(30, 16))
    y = rng.normal(size=(25, 16)) + 0.2
    a, b = rng.random(30) + 0.1, rng.random(25) + 0.1
    proj = semot.random_projections(16, 64, seed=3)
    d64 = semot.sliced_wasserstein_distance(x, y, a, b, projections=proj)
    d32 = semot.sliced_wasserstein_distance(
        x.astype(np.float32), y.astype(np.float32), a.astype(np.float32), b, projections=proj
    )
    assert d32 == pytest.approx(d64, rel=1e-4)


def test_seed_gives_same_directions_everywhere(rng):
    clouds = random_clouds(rng, 6, 5)
    proj = semot.random_projections(5, 32, seed=99)
    np.testing.assert_array_equal(proj, semot.random_projections(5, 32, seed=99))
    assert not np.array_equal(proj, semot.random_projections(5, 32, seed=100))
    by_seed = semot.sliced_wasserstein_cdist(clouds, clouds, n_projections=32, seed=99)
    by_proj = semot.sliced_wasserstein_cdist(clouds, clouds, projections=proj)
    np.testing.assert_array_equal(by_seed, by_proj)
    (x, a), (y, b) = clouds[0], clouds[1]
    single = semot.sliced_wasserstein_distance(x, y, a, b, n_projections=32, seed=99)
    assert single == by_seed[0, 1]
    e1 = semot.sliced_quantile_embedding(clouds, n_projections=32, seed=99, n_quantiles=4)
    e2 = semot.sliced_quantile_embedding(clouds, projections=proj, n_quantiles=4)
    np.testing.assert_array_equal(e1, e2)


def test_directions_are_unit_and_isotropic():
    proj = semot.random_projections(3, 20000, seed=1)
    np.testing.assert_allclose(np.linalg.norm(proj, axis=0), 1.0, rtol=1e-12)
    # Uniform on the sphere: each coordinate has mean 0 and variance 1/d.
    assert np.abs(proj.mean(axis=1)).max() < 0.02
    np.testing.assert_allclose(proj.var(axis=1), 1 / 3, atol=0.01)


@pytest.mark.parametrize("p", [1, 2, 2.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bulk_functions_agree_with_pot(rng, p, dtype):
    A = random_clouds(rng, 7, 6, dtype=dtype)
    B = random_clouds(rng, 5, 6, dtype=dtype)
    proj = semot.random_projections(6, 40, seed=5)
    rel = 1e-6 if dtype == np.float64 else 2e-4
    D = semot.sliced_wasserstein_cdist(A, B, projections=proj, p=p)
    assert D.shape == (7, 5) and D.dtype == np.float64
    for i, (x, a) in enumerate(A):
        for j, (y, b) in enumerate(B):
            assert D[i, j] == pytest.approx(pot_sw(x, y, a, b, proj, p), rel=rel)
    P = semot.sliced_wasserstein_pdist(A, projections=proj, p=p)
    full = semot.sliced_wasserstein_cdist(A, A, projections=proj, p=p)
    np.testing.assert_allclose(squareform(P), full, rtol=1e-12, atol=1e-12)
    pairs = np.array([[0, 4], [6, 0], [3, 3], [0, 4]])
    K = semot.sliced_wasserstein_pairs(A, B, pairs, projections=proj, p=p)
    np.testing.assert_array_equal(K, D[pairs[:, 0], pairs[:, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_equal_size_fast_path_is_exact(rng, dtype):
    # 80 x 80 pairs >= the matrix-product threshold: uses the Gram path.
    n, d = 9, 5
    A = (rng.normal(size=(80, n, d)) * 3 + 10).astype(dtype)
    B = (rng.normal(size=(80, n, d)) * 3 + 10).astype(dtype)
    proj = semot.random_projections(d, 24, seed=2)
    D = semot.sliced_wasserstein_cdist(A, B, projections=proj)
    rel = 1e-7 if dtype == np.float64 else 1e-4
    for i, j in rng.integers(0, 80, size=(40, 2)):
        assert D[i, j] == pytest.approx(pot_sw(A[i], B[j], None, None, proj, 2), rel=rel)
    # Self-distances survive cancellation and match the merge path exactly enough.
    S = semot.sliced_wasserstein_cdist(A, A, projections=proj)
    assert np.abs(np.diag(S)).max() < (1e-6 if dtype == np.float64 else 1e-3) * S.mean()
    P = semot.sliced_wasserstein_pdist(A, projections=proj)
    np.testing.assert_allclose(squareform(P), S - np.diag(np.diag(S)), rtol=rel, atol=1e-9)
    K = semot.sliced_wasserstein_pairs(A, B, [[1, 2], [5, 7]], projections=proj)
    np.testing.assert_allclose(K, D[[1, 5], [2, 7]], rtol=rel)


def test_translation_has_closed_form(rng):
    x = rng.normal(size=(20, 4))
    a = rng.random(20) + 0.1
    t = np.array([0.5, -1.0, 2.0, 0.25])
    proj = semot.random_projections(4, 64, seed=11)
    for p in (1, 2, 3):
        got = semot.sliced_wasserstein_distance(x, x + t, a, a, projections=proj, p=p)
        want = np.mean(np.abs(t @ proj) ** p) ** (1 / p)
        assert got == pytest.approx(want, rel=1e-10)


def test_wasserstein_1d_matches_scipy_and_pot(rng):
    for _ in range(20):
        u, v = rng.normal(size=int(rng.integers(1, 30))), rng.normal(size=int(rng.integers(1, 30)))
        uw, vw = rng.random(len(u)), rng.random(len(v)) + 0.01
        uw[0] += 0.1
        got = semot.wasserstein_1d(u, v, uw, vw)
        assert got == pytest.approx(scipy.stats.wasserstein_distance(u, v, uw, vw), rel=1e-10)
        for p in (1, 2, 3.5):
            want = ot.wasserstein_1d(u, v, uw / uw.sum(), vw / vw.sum(), p=p)
            assert semot.wasserstein_1d(u, v, uw, vw, p=p) == pytest.approx(want, rel=1e-10)
    assert semot.wasserstein_1d([0, 1], [0]) == pytest.approx(0.5)


def test_quantile_method(rng):
    d, L = 8, 32
    proj = semot.random_projections(d, L, seed=4)
    # Uniform clouds of Q points: the embedding distance is exact.
    A = rng.normal(size=(30, 16, d))
    B = rng.normal(size=(30, 16, d)) + 0.3
    exact = semot.sliced_wasserstein_cdist(A, B, projections=proj)
    quant = semot.sliced_wasserstein_cdist(A, B, projections=proj, method="quantile")
    np.testing.assert_allclose(quant, exact, rtol=1e-9)
    # General weights and sizes: a lower bound, close for enough levels.
    Aw = random_clouds(rng, 20, d, sizes=(20, 60))
    Bw = random_clouds(rng, 20, d, sizes=(20, 60))
    ex = semot.sliced_wasserstein_cdist(Aw, Bw, projections=proj)
    for p in (1, 2):
        exp_ = semot.sliced_wasserstein_cdist(Aw, Bw, projections=proj, p=p)
        for q in (8, 64):
            qu = semot.sliced_wasserstein_cdist(
                Aw, Bw, projections=proj, p=p, method="quantile", n_quantiles=q
            )
            assert (qu <= exp_ * (1 + 1e-9) + 1e-12).all()
            rel = np.median(np.abs(qu - exp_) / exp_)
            assert rel < (0.05 if q == 8 else 0.01), (p, q, rel)
    # pdist and pairs use the same embedding.
    qp = semot.sliced_wasserstein_pdist(Aw, projections=proj, method="quantile", n_quantiles=16)
    qc = semot.sliced_wasserstein_cdist(Aw, Aw, projections=proj, method="quantile", n_quantiles=16)
    np.testing.assert_allclose(squareform(qp), qc - np.diag(np.diag(qc)), rtol=1e-6, atol=1e-9)
    qk = semot.sliced_wasserstein_pairs(
        Aw, Bw, [[0, 1], [3, 2]], projections=proj, method="quantile", n_quantiles=16
    )
    qc2 = semot.sliced_wasserstein_cdist(
        Aw, Bw, projections=proj, method="quantile", n_quantiles=16
    )
    np.testing.assert_allclose(qk, qc2[[0, 3], [1, 2]], rtol=1e-6)
    assert ex.shape == (20, 20)


def test_quantile_embedding_is_a_vector_index_input(rng):
    A = random_clouds(rng, 10, 4, sizes=(5, 5), uniform=True)
    E = semot.sliced_quantile_embedding(A, n_projections=16, seed=0)
    assert E.shape == (10, 16 * 5)
    D = semot.sliced_wasserstein_cdist(A, A, n_projections=16, seed=0)
    np.testing.assert_allclose(np.linalg.norm(E[:, None] - E[None], axis=-1), D, atol=1e-9)
    E1 = semot.sliced_quantile_embedding(A, n_projections=16, seed=0, p=1)
    D1 = semot.sliced_wasserstein_cdist(A, A, n_projections=16, seed=0, p=1)
    np.testing.assert_allclose(np.abs(E1[:, None] - E1[None]).sum(-1), D1, atol=1e-9)
    E32 = semot.sliced_quantile_embedding(
        semot.PointClouds.from_list(A, dtype=np.float32), n_projections=16, seed=0
    )
    assert E32.dtype == np.float32


@pytest.mark.parametrize("method", ["exact", "quantile"])
def test_results_do_not_depend_on_threads(rng, method):
    A = random_clouds(rng, 70, 6, sizes=(3, 9))
    B = random_clouds(rng, 65, 6, sizes=(3, 9))
    kw = dict(n_projections=20, seed=8, method=method)
    c1 = semot.sliced_wasserstein_cdist(A, B, n_threads=1, **kw)
    c2 = semot.sliced_wasserstein_cdist(A, B, n_threads=2, **kw)
    c3 = semot.sliced_wasserstein_cdist(A, B, n_threads=3, **kw)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(c1, c3)
    p1 = semot.sliced_wasserstein_pdist(A, n_threads=1, **kw)
    np.testing.assert_array_equal(p1, semot.sliced_wasserstein_pdist(A, n_threads=2, **kw))
    U = np.random.default_rng(0).normal(size=(90, 8, 6))
    g1 = semot.sliced_wasserstein_cdist(U, U[::-1], n_threads=1, **kw)
    np.testing.assert_array_equal(g1, semot.sliced_wasserstein_cdist(U, U[::-1], n_threads=2, **kw))


# ---------------------------------------------------------------- property tests

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def weighted_cloud(draw, d=3):
    n = draw(st.integers(1, 8))
    pts = draw(hnp.arrays(np.float64, (n, d), elements=finite))
    w = draw(hnp.arrays(np.float64, (n,), elements=st.floats(0.01, 5)))
    return pts, w


PROJ = semot.random_projections(3, 16, seed=21)


@settings(max_examples=60, deadline=None)
@given(weighted_cloud(), weighted_cloud(), st.sampled_from([1.0, 2.0, 3.0]))
def test_symmetry_and_self_distance(c1, c2, p):
    (x, a), (y, b) = c1, c2
    d_xy = semot.sliced_wasserstein_distance(x, y, a, b, projections=PROJ, p=p)
    d_yx = semot.sliced_wasserstein_distance(y, x, b, a, projections=PROJ, p=p)
    assert d_xy == pytest.approx(d_yx, rel=1e-9, abs=1e-9)
    assert semot.sliced_wasserstein_distance(x, x, a, a, projections=PROJ, p=p) == 0.0
    assert d_xy >= 0


@settings(max_examples=60, deadline=None)
@given(weighted_cloud(), weighted_cloud(), st.randoms(use_true_random=False), st.floats(0.01, 100))
def test_permutation_and_weight_scale_invariance(c1, c2, rnd, scale):
    (x, a), (y, b) = c1, c2
    base = semot.sliced_wasserstein_distance(x, y, a, b, projections=PROJ)
    perm = list(range(len(x)))
    rnd.shuffle(perm)
    permuted = semot.sliced_wasserstein_distance(x[perm], y, a[perm], b, projections=PROJ)
    scaled = semot.sliced_wasserstein_distance(x, y, a * scale, b, projections=PROJ)
    # Rounding of cumulative weights can leave segments of ~1e-16, amplified by the root.
    assert permuted == pytest.approx(base, rel=1e-9, abs=1e-7)
    assert scaled == pytest.approx(base, rel=1e-9, abs=1e-7)


@settings(max_examples=40, deadline=None)
@given(weighted_cloud(), weighted_cloud(), weighted_cloud())
def test_triangle_inequality(c1, c2, c3):
    d = lambda u, v: semot.sliced_wasserstein_distance(*u[:1], *v[:1], u[1], v[1], projections=PROJ)  # noqa: E731
    assert d(c1, c3) <= d(c1, c2) + d(c2, c3) + 1e-9
