"""Bad input to the core layer: clear Python exceptions, never an abort, a hang, inf or NaN.

Each class of issue 14 ("the machine must be protected", "no silent inf, NaN or zero from
finite input") with its examples and more of each class. Calls that aborted the process
before run in a subprocess, which must exit with status 1 and the exception's name (never a
signal).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import semot
from semot import _core
from semot.distances.sinkhorn import sinkhorn_cdist, sinkhorn_distance
from semot.distances.sliced import wasserstein_1d
from semot.grouping.linkage import connected_components, single_linkage

RNG = np.random.default_rng(0)
CLOUDS = RNG.normal(size=(3, 4, 2))


def run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` after ``import numpy as np, semot`` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    prelude = "import numpy as np, semot\nfrom semot import _core\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


# Each call once aborted the process (SIGABRT "memory allocation failed") or panicked.
ABORTING = {
    "sliced n_projections=10**9": (
        "semot.sliced_wasserstein_cdist(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), "
        "n_projections=10**9)",
        "MemoryError",
        "n_projections",
    ),
    "random_projections 10**12": (
        "semot.random_projections(3, 10**12, 0)",
        "MemoryError",
        "n_projections",
    ),
    "core random_projections 10**12 (no Python check)": (
        "_core.random_projections(3, 10**12, 0)",
        "MemoryError",
        "n_projections",
    ),
    "core random_projections usize overflow": (
        "_core.random_projections(2**40, 2**40, 0)",
        "MemoryError",
        "n_projections",
    ),
    "quantile n_quantiles=10**10": (
        "semot.sliced_wasserstein_cdist(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), "
        "method='quantile', n_quantiles=10**10)",
        "MemoryError",
        "n_quantiles",
    ),
    "core quantile n_quantiles=10**13 (no Python check)": (
        "p = np.zeros((3, 2)); w = np.ones(3); o = np.array([0, 3]);"
        "pr = np.eye(2); _core.quantile_embedding(p, w, o, pr, 10**13, 2.0, 1)",
        "MemoryError",
        "n_quantiles",
    ),
    "single_linkage(10**12)": (
        "semot.grouping.linkage.single_linkage(10**12, [[0, 1]], [1.0])",
        "MemoryError",
        "n",
    ),
    "core single_linkage(10**13) (no Python check)": (
        "_core.single_linkage(10**13, np.array([[0, 1]]), np.array([1.0]))",
        "MemoryError",
        "n",
    ),
    "connected_components(10**12)": (
        "semot.grouping.linkage.connected_components(10**12, [[0, 1]])",
        "MemoryError",
        "n",
    ),
    "core connected_components(10**13) (no Python check)": (
        "_core.connected_components(10**13, np.array([[0, 1]]))",
        "MemoryError",
        "n",
    ),
    "core n_threads=10**6 (no Python check)": (
        "p = np.zeros((3, 2)); w = np.ones(3) / 3; o = np.array([0, 3]);"
        "_core.sw_pdist(p, w, np.array([0, 1, 2, 3]), np.eye(2), 2.0, 10**6)",
        "ValueError",
        "n_threads",
    ),
    "sinkhorn huge clouds": (
        "from semot.distances.sinkhorn import sinkhorn_cdist\n"
        "x = np.lib.stride_tricks.as_strided(np.zeros(1), (1, 10**6, 1), (0, 0, 0))\n"
        "sinkhorn_cdist(semot.PointClouds.from_csr_unchecked(np.zeros((10**6, 1)),"
        " np.full(10**6, 1e-6), np.array([0, 10**6])), semot.PointClouds.from_csr_unchecked("
        "np.ones((10**6, 1)), np.full(10**6, 1e-6), np.array([0, 10**6])), reg=1.0)",
        "MemoryError",
        "A",
    ),
}


@pytest.mark.parametrize("case", list(ABORTING), ids=list(ABORTING))
def test_sizes_that_cannot_fit_raise_in_a_subprocess(case: str) -> None:
    code, exc, name = ABORTING[case]
    proc = run_isolated(code)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{exc}: {name}"), proc.stderr[-2000:]
    assert "PanicException" not in proc.stderr


def test_memory_limit_is_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.zeros((2, 50, 3))
    semot.sliced_wasserstein_cdist(x, x, n_projections=64)
    monkeypatch.setenv("SEMOT_MEMORY_LIMIT", "10k")
    with pytest.raises(MemoryError, match=r"^n_projections: .*SEMOT_MEMORY_LIMIT"):
        semot.sliced_wasserstein_cdist(x, x, n_projections=64)
    monkeypatch.setenv("SEMOT_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="SEMOT_MEMORY_LIMIT"):
        semot.sliced_wasserstein_cdist(x, x, n_projections=64)
    monkeypatch.setenv("SEMOT_MEMORY_LIMIT", "none")
    semot.sliced_wasserstein_cdist(x, x, n_projections=64)


# --- n_threads and other integers -------------------------------------------------------

INTEGER_CASES = [
    (lambda: semot.sliced_wasserstein_pdist(CLOUDS, n_threads=10**6), ValueError, "n_threads"),
    (lambda: semot.sliced_wasserstein_pdist(CLOUDS, n_threads=2**64), ValueError, "n_threads"),
    (lambda: semot.sliced_wasserstein_pdist(CLOUDS, n_threads=0), ValueError, "n_threads"),
    (lambda: semot.sliced_wasserstein_pdist(CLOUDS, n_threads=2.0), TypeError, "n_threads"),
    (lambda: sinkhorn_cdist(CLOUDS, CLOUDS, reg=1.0, n_threads=10**5), ValueError, "n_threads"),
    (lambda: sinkhorn_cdist(CLOUDS, CLOUDS, reg=1.0, max_iter=10**20), OverflowError, "max_iter"),
    (lambda: sinkhorn_cdist(CLOUDS, CLOUDS, reg=1.0, max_iter=2**63), OverflowError, "max_iter"),
    (lambda: semot.sliced_wasserstein_pdist(CLOUDS, seed=2**64), OverflowError, "seed"),
    (lambda: semot.sliced_wasserstein_pdist(CLOUDS, seed=-(2**70)), OverflowError, "seed"),
    (lambda: semot.random_projections(2**64, 1), OverflowError, "d"),
    (lambda: semot.random_projections(2, 2**64), OverflowError, "n_projections"),
    (
        lambda: semot.sliced_wasserstein_pdist(CLOUDS, n_projections=10**30),
        OverflowError,
        "n_projections",
    ),
    (
        lambda: semot.sliced_wasserstein_pdist(CLOUDS, method="quantile", n_quantiles=2**64),
        OverflowError,
        "n_quantiles",
    ),
    (lambda: single_linkage(2**64, [[0, 1]], [1.0]), OverflowError, "n"),
    (lambda: connected_components(2**63, [[0, 1]]), OverflowError, "n"),
]


@pytest.mark.parametrize(("call", "exc", "name"), INTEGER_CASES)
def test_integers_out_of_range_name_the_argument(call, exc, name) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=rf"^{name}: "):
        call()


def test_thread_cap_is_documented_and_allowed() -> None:
    from semot._utils.checks import MAX_THREADS

    assert MAX_THREADS == max(64, 4 * (os.cpu_count() or 1))
    small = RNG.normal(size=(3, 2, 2))
    one = semot.sliced_wasserstein_pdist(small, n_projections=4, n_threads=1)
    many = semot.sliced_wasserstein_pdist(small, n_projections=4, n_threads=MAX_THREADS)
    assert np.array_equal(one, many)


def live_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_thread_pools_are_bounded() -> None:
    clouds = semot.PointClouds.from_padded(RNG.normal(size=(40, 3, 2)))
    semot.sliced_wasserstein_pdist(clouds, n_projections=4, n_threads=2)
    before = live_threads()
    for threads in range(2, 42):
        semot.sliced_wasserstein_pdist(clouds, n_projections=4, n_threads=threads)
    # At most 4 pools (the last four thread counts: 38 + 39 + 40 + 41 threads) stay alive;
    # without the bound 860 threads were left behind. Evicted pools end their threads
    # asynchronously, so allow them a moment.
    bound = before + 38 + 39 + 40 + 41
    for _ in range(100):
        if live_threads() <= bound:
            break
        time.sleep(0.02)
    assert live_threads() <= bound, (live_threads(), before)


def test_no_panic_exception_reaches_python() -> None:
    # A pool that cannot be built, or any panic of the core, is an ordinary Exception.
    assert issubclass(semot.errors.InternalError, RuntimeError)
    assert issubclass(semot.errors.InternalError, semot.errors.SemotError)
    with pytest.raises(ValueError, match="n_threads"):
        _core.sw_pdist(np.zeros((3, 2)), np.ones(3), np.array([0, 1, 2, 3]), np.eye(2), 2.0, 10**6)


# --- arrays: 0-d and ragged ---------------------------------------------------------------

ARRAY_CASES = [
    (lambda: wasserstein_1d(np.float64(3.0), [1.0, 2.0]), "u_values"),
    (lambda: wasserstein_1d([1.0, 2.0], np.array(1.0)), "v_values"),
    (lambda: wasserstein_1d([1.0, 2.0], [1.0], u_weights=np.array(1.0)), "u_weights"),
    (lambda: semot.PointClouds(np.array(1.0), None, [0, 1]), "points"),
    (lambda: semot.PointClouds(np.zeros((2, 1)), np.array(1.0), [0, 2]), "weights"),
    (lambda: semot.PointClouds(np.zeros((2, 1)), None, np.array(2)), "offsets"),
    (lambda: semot.sliced_wasserstein_distance(np.array(2.0), np.zeros((2, 1))), "x"),
    (lambda: wasserstein_1d([[1.0, 2.0], [3.0]], [1.0]), "u_values"),
    (lambda: semot.PointClouds([[0.0, 1.0], [2.0]], None, [0, 2]), "points"),
    (lambda: semot.PointClouds(np.zeros((2, 1)), [[1.0], [1.0, 2.0]], [0, 2]), "weights"),
    (lambda: single_linkage(3, [[0, 1], [1]], [1.0, 2.0]), "pairs"),
    (lambda: single_linkage(3, [[0, 1], [1, 2]], [[1.0], [2.0, 3.0]]), "distances"),
    (lambda: connected_components(3, [[0, 1], [2]]), "edges"),
    (lambda: semot.sliced_wasserstein_pairs(CLOUDS, CLOUDS, [[0, 1], [1]]), "pairs"),
]


@pytest.mark.parametrize(("call", "name"), ARRAY_CASES)
def test_scalars_and_ragged_lists_name_the_argument(call, name) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=rf"^{name}: "):
        call()


# --- no silent inf, NaN or zero -------------------------------------------------------------


def sw_reference(x: np.ndarray, y: np.ndarray, proj: np.ndarray, p: float) -> float:
    """Exact sliced distance of uniform clouds of one size, brute force in log space:
    ``log SW_p = logsumexp_{l,k}(p log|x_(k) - y_(k)|) / p - log(n L) / p`` never overflows."""
    px, py = x.astype(np.float64) @ proj, y.astype(np.float64) @ proj
    diffs = np.abs(np.sort(px, axis=0) - np.sort(py, axis=0))
    if not diffs.any():
        return 0.0
    with np.errstate(divide="ignore"):
        logs = p * np.log(diffs)
    return float(np.exp((scipy.special.logsumexp(logs) - np.log(diffs.size)) / p))


SCALES = [
    ("float32", 1e20, 2),
    ("float32", 3e37, 2),
    ("float32", 1e-30, 2),
    ("float32", 1e-42, 1),
    ("float64", 1e200, 2),
    ("float64", 1e307, 2),
    ("float64", 1e-200, 2),
    ("float64", 1e-310, 2),
    ("float64", 1.0, 1000),
    ("float64", 1e3, 50),
    ("float32", 1.0, 50),
    ("float32", 1e10, 7),
]


@pytest.mark.parametrize(("dtype", "scale", "p"), SCALES)
@pytest.mark.parametrize("method", ["exact", "quantile"])
def test_sliced_extreme_scales_are_finite_and_right(dtype, scale, p, method) -> None:  # type: ignore[no-untyped-def]
    base = RNG.normal(size=(4, 5, 2))
    base /= np.abs(base).max()
    a = (base * scale).astype(dtype)
    b = (base[::-1] * 0.7 * scale).astype(dtype)
    proj = semot.random_projections(2, 16, seed=3)
    got = semot.sliced_wasserstein_cdist(a, b, projections=proj, p=p, method=method)
    assert np.all(np.isfinite(got)), got
    # Uniform clouds of 5 points with n_quantiles = 5: the quantile path is exact too.
    want = np.array(
        [[sw_reference(a[i], b[j], proj.astype(dtype), p) for j in range(4)] for i in range(4)]
    )
    np.testing.assert_allclose(got, want, rtol=2e-3 if dtype == "float32" else 1e-9)
    assert (got > 0).all()
    pd = semot.sliced_wasserstein_pdist(a, projections=proj, p=p, method=method)
    assert np.all(np.isfinite(pd)) and (pd > 0).all()


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(0, 300),
    dtype=st.sampled_from(["float32", "float64"]),
    scale=st.sampled_from([1e-310, 1e-40, 1.0, 3e38, 1e300]),
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_max_abs_is_numpys(rows: int, dtype: str, scale: float, threads: int, seed: int) -> None:
    # The range check of prescale: one parallel pass, against numpy's max of |x|.
    g = np.random.default_rng(seed)
    with np.errstate(over="ignore", under="ignore"):
        x = (g.normal(size=(rows, 257)) * scale).astype(dtype)
    x[~np.isfinite(x)] = 0
    want = float(np.abs(x).max()) if x.size else 0.0
    assert _core.max_abs(x, threads) == want
    if x.size:
        x.flat[g.integers(x.size)] = np.nan
        assert np.isnan(_core.max_abs(x, threads))


def test_max_abs_refuses_views_and_other_dtypes() -> None:
    x = np.ones((4, 6))
    with pytest.raises(ValueError, match="values must be C-contiguous"):
        _core.max_abs(x[:, ::2])
    with pytest.raises(TypeError):
        _core.max_abs(np.ones((4, 6), dtype=np.int64))


def test_weighted_merge_path_at_extreme_scales() -> None:
    x = np.array([[1.0], [2.0], [4.0]]) * 1e300
    y = np.array([[0.5], [3.0]]) * 1e300
    for p in (1, 2, 3):
        got = semot.sliced_wasserstein_distance(x, y, [1, 2, 1], [3, 1], projections=[[1.0]], p=p)
        want = wasserstein_1d(x[:, 0] / 1e300, y[:, 0] / 1e300, [1, 2, 1], [3, 1], p=p)
        np.testing.assert_allclose(got, 1e300 * want ** (1 / p), rtol=1e-12)


def test_distances_beyond_float64_raise_and_finite_ones_whose_sum_overflows_pass() -> None:
    with pytest.raises(ValueError, match=r"exceed the range of float64"):
        semot.sliced_wasserstein_distance([[-1.7e308]], [[1.7e308]], projections=[[1.0]])
    # Two finite distances of 9e307: their sum overflows, which alone is no error.
    a = semot.PointClouds.from_padded(np.array([[[0.9e308]], [[-0.9e308]]]))
    b = semot.PointClouds.from_padded(np.array([[[0.0]]]))
    got = semot.sliced_wasserstein_cdist(a, b, projections=[[1.0]])
    np.testing.assert_allclose(got, [[0.9e308], [0.9e308]], rtol=1e-15)


def test_wasserstein_1d_extremes() -> None:
    big = [-1.7e308, 1.7e308]
    assert wasserstein_1d(big, big) == 0.0
    assert wasserstein_1d(big, big, p=2) == 0.0
    assert wasserstein_1d([1e-200, 3e-200], [2e-200, 5e-200], p=1) == pytest.approx(1.5e-200)
    assert wasserstein_1d([1e-160], [3e-160], p=2) == pytest.approx(4e-320, rel=1e-2)
    assert wasserstein_1d([0.0, 1.0], [0.5, 3.0], p=1000) == pytest.approx(2.0**1000 * 0.5)
    with pytest.raises(ValueError, match=r"float64 range"):
        wasserstein_1d([1e200], [-1e200], p=2)  # W_2^2 = 4e400
    with pytest.raises(ValueError, match=r"float64 range"):
        wasserstein_1d([1e-200], [2e-200], p=2)  # W_2^2 = 1e-400


def test_tiny_and_huge_weights_normalise() -> None:
    pts = np.arange(6.0).reshape(3, 2)
    for w in ([1e-320, 2e-320, 1e-320], [1e308, 1.5e308, 1e308]):
        c = semot.PointClouds(pts, w, [0, 3])
        assert np.all(np.isfinite(c.weights))
        np.testing.assert_allclose(c.weights.sum(), 1.0)
    c = semot.PointClouds(pts, [1e-320, 2e-320, 1e-320], [0, 3])
    np.testing.assert_allclose(c.weights, [0.25, 0.5, 0.25])
    d = semot.sliced_wasserstein_distance(pts, pts + 1, [1e-320, 2e-320, 1e-320], None)
    assert np.isfinite(d) and d > 0


@pytest.mark.parametrize(
    ("reg", "p", "name"),
    [(1e-300, 2, "reg"), (1e-30, 2, "reg"), (1e-20, 1, "reg"), (0.1, 50, "reg"), (1.0, 300, "p")],
)
def test_sinkhorn_refuses_what_float64_cannot_resolve(reg: float, p: float, name: str) -> None:
    x, y = RNG.normal(size=(5, 2)) * 10, RNG.normal(size=(6, 2)) * 10 + 5
    with pytest.raises(ValueError, match=rf"^{name}: "):
        sinkhorn_distance(x, y, reg=reg, p=p)
    with pytest.raises(ValueError, match=rf"^{name}: "):
        sinkhorn_cdist([x, y], [y], reg=reg, p=p, debiased=True)


def test_sinkhorn_small_reg_still_computes() -> None:
    import ot

    x, y = RNG.normal(size=(5, 2)), RNG.normal(size=(6, 2)) + 1
    want = ot.emd2([], [], ot.dist(x, y)) ** 0.5
    got = sinkhorn_distance(x, y, reg=1e-9)
    assert got == pytest.approx(want, rel=1e-6)


# --- property: finite valid input gives finite output -----------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
exponents = st.integers(-300, 300)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(finite, finite), min_size=1, max_size=6),
    st.lists(st.tuples(finite, finite), min_size=1, max_size=6),
    exponents,
    st.sampled_from([1.0, 1.5, 2.0, 3.0, 20.0]),
    st.sampled_from(["float32", "float64"]),
)
def test_finite_input_gives_finite_sliced_and_1d(xs, ys, e, p, dtype) -> None:  # type: ignore[no-untyped-def]
    limit = 1e30 if dtype == "float32" else 1e290
    scale = float(np.clip(10.0**e, 1e-30 if dtype == "float32" else 1e-290, limit))
    x = (np.array(xs) * scale / 1e6).astype(dtype)
    y = (np.array(ys) * scale / 1e6).astype(dtype)
    for method in ("exact", "quantile"):
        d = (
            semot.sliced_wasserstein_distance(x, y, n_projections=8, p=p)
            if method == "exact"
            else (
                semot.sliced_wasserstein_cdist([x], [y], n_projections=8, p=p, method=method)[0, 0]
            )
        )
        assert np.isfinite(d) and d >= 0
    w = None
    try:
        w = wasserstein_1d(x[:, 0].astype(np.float64), y[:, 0].astype(np.float64), p=p)
    except ValueError as err:  # only when W_p^p itself is beyond float64
        assert "float64 range" in str(err)
    if w is not None:
        assert np.isfinite(w) and w >= 0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(finite, finite), min_size=1, max_size=5),
    st.lists(st.tuples(finite, finite), min_size=1, max_size=5),
    st.floats(1e-3, 10.0),
)
def test_finite_input_gives_finite_sinkhorn(xs, ys, rel) -> None:  # type: ignore[no-untyped-def]
    x, y = np.array(xs) / 1e3, np.array(ys) / 1e3
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    reg = rel * max(float(cost.max()), 1e-6)
    for debiased in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", semot.errors.ConvergenceWarning)
            d = sinkhorn_distance(x, y, reg=reg, debiased=debiased, max_iter=200, tol=1e-6)
        assert np.isfinite(d) and d >= 0
