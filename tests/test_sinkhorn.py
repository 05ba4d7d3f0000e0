"""Tests of semot.distances.sinkhorn against POT and a plain-numpy log-domain reference."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from semot.clouds import PointClouds
from semot.distances.sinkhorn import (
    ConvergenceWarning,
    SinkhornInfo,
    sinkhorn_cdist,
    sinkhorn_distance,
    sinkhorn_pairs,
    sinkhorn_pdist,
)


def cost(x: np.ndarray, y: np.ndarray, p: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return np.sqrt(d2) ** p


def normalised(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w / w.sum()


def pot_value(x, y, a, b, reg, p):
    c = cost(x, y, p)
    v = ot.sinkhorn2(
        normalised(a),
        normalised(b),
        c,
        reg,
        method="sinkhorn_log",
        numItermax=100_000,
        stopThr=1e-14,
    )
    return float(v) ** (1 / p)


def ref_ot_eps(a, b, c, reg, n_iter=20_000):
    """OT_eps(a, b) = <a, f> + <b, g> by plain log-domain Sinkhorn (numpy)."""
    la, lb = np.log(a), np.log(b)
    f = np.zeros(len(a))
    g = np.zeros(len(b))
    for _ in range(n_iter):
        f = -reg * logsumexp(lb[None, :] + (g[None, :] - c) / reg, axis=1)
        g_new = -reg * logsumexp(la[:, None] + (f[:, None] - c) / reg, axis=0)
        if np.max(np.abs(g_new - g)) < 1e-14 * (1 + np.max(np.abs(g))):
            g = g_new
            break
        g = g_new
    return float(a @ f + b @ g)


def ref_ot_eps_sym(a, c, reg, n_iter=20_000):
    """OT_eps(a, a) = 2 <a, f> by the averaged symmetric update f <- (f + T(f)) / 2."""
    la = np.log(a)
    f = np.zeros(len(a))
    for _ in range(n_iter):
        f_new = 0.5 * (f - reg * logsumexp(la[None, :] + (f[None, :] - c) / reg, axis=1))
        done = np.max(np.abs(f_new - f)) < 1e-14 * (1 + np.max(np.abs(f)))
        f = f_new
        if done:
            break
    return float(2 * a @ f)


def ref_divergence(x, y, a, b, reg, p):
    a, b = normalised(a), normalised(b)
    s = ref_ot_eps(a, b, cost(x, y, p), reg) - 0.5 * (
        ref_ot_eps_sym(a, cost(x, x, p), reg) + ref_ot_eps_sym(b, cost(y, y, p), reg)
    )
    return max(s, 0.0) ** (1 / p)


def sample(seed, n=20, m=15, d=3, shift=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) * 0.8 + shift
    a = rng.uniform(0.2, 1.0, size=n)
    b = rng.uniform(0.2, 1.0, size=m)
    return x, y, a, b


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("d", [2, 16])
def test_matches_pot_f64(p, d):
    x, y, a, b = sample(p * 10 + d, d=d)
    reg = 0.05 * float(np.median(cost(x, y, p)))
    got, info = sinkhorn_distance(x, y, a, b, reg=reg, p=p, return_info=True)
    assert bool(info.converged)
    assert got == pytest.approx(pot_value(x, y, a, b, reg, p), rel=1e-5)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("d", [2, 16])
def test_matches_pot_f32(p, d):
    x, y, a, b = sample(p * 100 + d, d=d)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    reg = 0.05 * float(np.median(cost(x32, y32, p)))
    got = sinkhorn_distance(x32, y32, a, b, reg=reg, p=p)
    assert got == pytest.approx(pot_value(x32, y32, a, b, reg, p), rel=1e-4)


def test_one_dimensional_input():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=12), rng.normal(size=9) + 0.5
    reg = 0.05
    got = sinkhorn_distance(x, y, reg=reg, p=2)
    want = pot_value(x[:, None], y[:, None], np.ones(12), np.ones(9), reg, 2)
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("p", [1, 2])
def test_small_reg_close_to_emd(p):
    x, y, a, b = sample(7 + p, n=15, m=12)
    c = cost(x, y, p)
    reg = 1e-3 * float(np.median(c))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        got = sinkhorn_distance(x, y, a, b, reg=reg, p=p, max_iter=20_000, tol=1e-7)
    exact = float(ot.emd2(normalised(a), normalised(b), c)) ** (1 / p)
    assert np.isfinite(got)
    assert got == pytest.approx(exact, rel=1e-2)


def test_tiny_reg_stays_finite():
    x, y, a, b = sample(11, n=30, m=25, d=5, shift=10.0)
    reg = 1e-6 * float(np.median(cost(x, y, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for debiased in (False, True):
            v = sinkhorn_distance(x, y, a, b, reg=reg, max_iter=50, debiased=debiased)
            assert np.isfinite(v) and v > 0


@pytest.mark.parametrize("p", [1, 2])
def test_debiased_matches_numpy_reference(p):
    x, y, a, b = sample(21 + p, n=12, m=10, d=2, shift=0.7)
    reg = 0.1 * float(np.median(cost(x, y, p)))
    got = sinkhorn_distance(x, y, a, b, reg=reg, p=p, debiased=True, tol=1e-12, max_iter=100_000)
    assert got == pytest.approx(ref_divergence(x, y, a, b, reg, p), rel=1e-5)


def test_debiased_identical_is_zero():
    x, _, a, _ = sample(5)
    assert sinkhorn_distance(x, x, a, a, reg=0.1, debiased=True) == pytest.approx(0.0, abs=1e-6)
    A = PointClouds.from_list([(x, a), (x, a)])
    np.testing.assert_allclose(sinkhorn_pdist(A, reg=0.1, debiased=True), [0.0], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 12),
    m=st.integers(1, 12),
    reg=st.floats(0.05, 5.0),
)
def test_debiased_symmetric_nonnegative(seed, n, m, reg):
    x, y, a, b = sample(seed, n=n, m=m, d=2, shift=0.5)
    kw = dict(reg=reg, debiased=True, tol=1e-11, max_iter=100_000)
    ab = sinkhorn_distance(x, y, a, b, **kw)
    ba = sinkhorn_distance(y, x, b, a, **kw)
    assert ab >= 0
    assert ab == pytest.approx(ba, rel=1e-5, abs=1e-6)


def ragged(seed, n_clouds, d=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    clouds = []
    for i in range(n_clouds):
        k = int(rng.integers(1, 9))
        clouds.append((rng.normal(size=(k, d)) + i * 0.3, rng.uniform(0.1, 1.0, size=k)))
    return PointClouds.from_list(clouds, dtype=dtype)


@pytest.mark.parametrize("debiased", [False, True])
def test_bulk_equals_single(debiased):
    A, B = ragged(1, 5), ragged(2, 4)
    kw = dict(reg=0.2, p=2, debiased=debiased)
    single = np.array(
        [
            [sinkhorn_distance(A[i][0], B[j][0], A[i][1], B[j][1], **kw) for j in range(4)]
            for i in range(5)
        ]
    )
    cd = sinkhorn_cdist(A, B, **kw)
    assert cd.shape == (5, 4)
    np.testing.assert_allclose(cd, single, rtol=1e-12, atol=1e-14)
    pairs = np.array([[0, 3], [4, 0], [2, 2], [0, 3]])
    np.testing.assert_allclose(
        sinkhorn_pairs(A, B, pairs, **kw), single[pairs[:, 0], pairs[:, 1]], rtol=1e-12, atol=1e-14
    )
    pd = sinkhorn_pdist(A, **kw)
    iu = np.triu_indices(5, k=1)
    full = sinkhorn_cdist(A, A, **kw)
    np.testing.assert_allclose(pd, full[iu], rtol=1e-12, atol=1e-14)


def test_return_info_shapes():
    A, B = ragged(3, 3), ragged(4, 2)
    v, info = sinkhorn_cdist(A, B, reg=0.3, return_info=True)
    assert isinstance(info, SinkhornInfo)
    assert v.dtype == np.float64 and v.shape == (3, 2)
    assert info.n_iter.shape == (3, 2) and info.n_iter.dtype == np.uint32
    assert info.converged.shape == (3, 2) and info.converged.all()
    v, info = sinkhorn_pdist(A, reg=0.3, return_info=True)
    assert v.shape == info.converged.shape == (3,)
    assert sinkhorn_pdist(ragged(5, 1), reg=0.3).shape == (0,)


@pytest.mark.filterwarnings("ignore::semot.distances.sinkhorn.ConvergenceWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_does_not_change_results(dtype):
    A = ragged(6, 23, d=10, dtype=dtype)
    for debiased in (False, True):
        r1 = sinkhorn_pdist(A, reg=0.5, debiased=debiased, n_threads=1, return_info=True)
        r2 = sinkhorn_pdist(A, reg=0.5, debiased=debiased, n_threads=2, return_info=True)
        assert np.array_equal(r1[0], r2[0])
        assert np.array_equal(r1[1].n_iter, r2[1].n_iter)


def test_mixed_dtypes_promoted():
    A, B = ragged(7, 3, dtype=np.float32), ragged(8, 2)
    got = sinkhorn_cdist(A, B, reg=0.3)
    want = sinkhorn_cdist(A.astype(np.float64), B, reg=0.3)
    np.testing.assert_array_equal(got, want)


def test_nonconvergence_warns_once():
    rng = np.random.default_rng(9)
    A = PointClouds.from_list([rng.normal(size=(30, 2)) for _ in range(3)])
    B = PointClouds.from_list([rng.normal(size=(25, 2)) for _ in range(2)])
    with pytest.warns(ConvergenceWarning, match=r"^6 of 6 ") as rec:
        _, info = sinkhorn_cdist(A, B, reg=1e-3, max_iter=1, tol=1e-12, return_info=True)
    assert len([w for w in rec if issubclass(w.category, ConvergenceWarning)]) == 1
    assert not info.converged.any() and (info.n_iter == 1).all()
    with pytest.warns(ConvergenceWarning, match="max_iter=1 "):
        sinkhorn_distance(A[0][0], B[0][0], reg=1e-3, max_iter=1, tol=1e-12)


def test_errors():
    x, y, a, b = sample(0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reg"):
            sinkhorn_distance(x, y, reg=bad)
    with pytest.raises(TypeError, match="reg"):
        sinkhorn_distance(x, y, reg="0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="reg"):
        sinkhorn_distance(x, y, reg=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="p"):
        sinkhorn_distance(x, y, reg=0.1, p=0.5)
    with pytest.raises(ValueError, match="max_iter"):
        sinkhorn_distance(x, y, reg=0.1, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        sinkhorn_distance(x, y, reg=0.1, tol=0.0)
    xn = x.copy()
    xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sinkhorn_distance(xn, y, reg=0.1)
    with pytest.raises(ValueError, match="negative"):
        sinkhorn_distance(x, y, -a, b, reg=0.1)
    with pytest.raises(ValueError, match="y"):
        sinkhorn_distance(x, y[:, :2], reg=0.1)
    A, B = ragged(1, 3), ragged(2, 2)
    with pytest.raises(ValueError, match="pairs"):
        sinkhorn_pairs(A, B, [[0, 2]], reg=0.1)
    with pytest.raises(ValueError, match="pairs"):
        sinkhorn_pairs(A, B, [[-1, 0]], reg=0.1)
    with pytest.raises(ValueError, match="pairs"):
        sinkhorn_pairs(A, B, [[0, 1, 1]], reg=0.1)
    with pytest.raises(ValueError, match="n_threads"):
        sinkhorn_cdist(A, B, reg=0.1, n_threads=0)
    with pytest.raises(ValueError, match="reg"):
        sinkhorn_pdist(A, reg=-2.0)


def test_core_rejects_mixed_dtypes():
    from semot import _core

    A = ragged(1, 2)
    B = A.astype(np.float32)
    with pytest.raises(TypeError):
        _core.sinkhorn_cdist(
            A.points,
            A.weights,
            A.offsets,
            B.points,
            B.weights,
            B.offsets,
            0.1,
            2.0,
            100,
            1e-9,
            False,
            None,
        )


@pytest.mark.parametrize("d", [3, 16])
def test_far_from_origin_float32(d):
    # |x|^2 + |y|^2 - 2 x.y would cancel badly in float32 without centring the clouds.
    rng = np.random.default_rng(d)
    x = (rng.normal(size=(20, d)) + 1000).astype(np.float32)
    y = (rng.normal(size=(15, d)) + 1000.5).astype(np.float32)
    reg = 0.05 * float(np.median(cost(x, y, 2)))
    got = sinkhorn_distance(x, y, reg=reg)
    assert got == pytest.approx(pot_value(x, y, np.ones(20), np.ones(15), reg, 2), rel=1e-4)


def test_translated_copy_is_not_identical():
    x = np.random.default_rng(0).normal(size=(10, 16))
    assert sinkhorn_distance(x, x + 1, reg=0.1) == pytest.approx(4.0, rel=1e-9)
    assert sinkhorn_distance(x, x + 1, reg=0.1, debiased=True) == pytest.approx(4.0, rel=1e-9)
