"""Bad input raises ValueError / TypeError naming the argument, never a panic or a NaN."""

from __future__ import annotations

import numpy as np
import pytest

import semot
from semot import PointClouds

X = np.zeros((3, 2))
GOOD = [np.zeros((3, 2)), np.ones((2, 2))]


@pytest.mark.parametrize(
    ("points", "weights", "offsets", "match"),
    [
        (np.array([[0.0, np.nan], [1, 1]]), None, [0, 1, 2], r"points: cloud 0: point 0"),
        (np.array([[0.0, 0], [1, np.inf]]), None, [0, 1, 2], r"cloud 1: point 0"),
        (X, [1, -1, 1], [0, 3], r"weights: cloud 0: weight 1 is negative"),
        (X, [1, np.nan, 1], [0, 3], r"weights: cloud 0: weight 1 is not finite"),
        (X, [1, 1, 0], [0, 2, 3], r"cloud 1: weights sum to 0"),
        (X, None, [0, 0, 3], r"cloud 0 is empty"),
        (X, None, [1, 3], r"offsets: must start at 0"),
        (X, None, [0, 2, 1, 3], r"offsets: must be non-decreasing; offsets\[1\]=2"),
        (X, None, [0, 2], r"offsets: must end at len\(points\)=3"),
        (np.zeros(3), None, [0, 3], r"points: expected a 2-D array"),
        (X, [1, 1], [0, 3], r"weights: expected shape \(3,\)"),
        (X, None, [[0, 3]], r"offsets: expected a 1-D"),
    ],
)
def test_point_clouds_validation(points, weights, offsets, match):
    with pytest.raises(ValueError, match=match):
        PointClouds(points, weights, offsets)


def test_type_errors():
    with pytest.raises(TypeError, match="complex"):
        PointClouds(np.zeros((2, 2), complex), None, [0, 2])
    with pytest.raises(TypeError, match="numeric"):
        PointClouds(np.array([["a", "b"]], dtype=object), None, [0, 1])
    with pytest.raises(TypeError, match="offsets: expected an integer"):
        PointClouds(X, None, [0.0, 3.5])
    with pytest.raises(TypeError, match="A: expected PointClouds"):
        semot.sliced_wasserstein_cdist(np.zeros((3, 2)), GOOD)
    with pytest.raises(TypeError, match="p: expected a real number"):
        semot.sliced_wasserstein_pdist(GOOD, p="2")
    with pytest.raises(TypeError, match="n_projections: expected an integer"):
        semot.sliced_wasserstein_pdist(GOOD, n_projections=2.5)


def test_integer_and_strided_inputs_are_converted():
    pts = np.arange(24).reshape(6, 4)[:, ::2]  # int, non-contiguous
    c = PointClouds(pts, None, np.array([0, 3, 6], dtype=np.int32))
    assert c.points.dtype == np.float64 and c.points.flags.c_contiguous
    d = semot.sliced_wasserstein_pdist(c, n_projections=8, seed=0)
    assert d.shape == (1,) and np.isfinite(d).all()
    x = np.asfortranarray(np.random.default_rng(0).normal(size=(5, 3)))
    assert np.isfinite(semot.sliced_wasserstein_distance(x, x[::-1] + 1, seed=0))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(p=0.5), ValueError, r"p: must be a finite number >= 1"),
        (dict(p=np.nan), ValueError, r"p: must be"),
        (dict(n_projections=0), ValueError, r"n_projections: must be >= 1"),
        (dict(projections=np.ones((3, 4))), ValueError, r"projections: expected shape \(2, L\)"),
        (dict(projections=np.ones(2)), ValueError, r"projections: expected shape"),
        (dict(projections=[[1.0, 0.0], [0.0, 0.0]]), ValueError, r"projections: column 1 is zero"),
        (dict(method="fast"), ValueError, r"method: must be 'exact' or 'quantile'"),
        (dict(method="quantile", n_quantiles=0), ValueError, r"n_quantiles: must be >= 1"),
        (dict(n_threads=0), ValueError, r"n_threads: must be >= 1"),
        (dict(seed="x"), TypeError, r"seed"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        semot.sliced_wasserstein_cdist(GOOD, GOOD, **kwargs)


def test_dimension_mismatch_and_pairs():
    with pytest.raises(ValueError, match=r"B: points of dimension 3 differ from A's dimension 2"):
        semot.sliced_wasserstein_cdist(GOOD, [np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"y: dimension 3 differs"):
        semot.sliced_wasserstein_distance(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"pairs\[1, 1\] = 2 is out of range for 2 clouds of B"):
        semot.sliced_wasserstein_pairs(GOOD, GOOD, [[0, 1], [0, 2]])
    with pytest.raises(ValueError, match=r"pairs\[0, 0\] = -1"):
        semot.sliced_wasserstein_pairs(GOOD, GOOD, [[-1, 1]])
    with pytest.raises(ValueError, match=r"pairs: expected shape \(K, 2\)"):
        semot.sliced_wasserstein_pairs(GOOD, GOOD, [[0, 1, 1]])
    assert semot.sliced_wasserstein_pairs(GOOD, GOOD, np.zeros((0, 2), int), seed=0).shape == (0,)


def test_single_pair_errors_name_arguments():
    with pytest.raises(ValueError, match=r"^a: weight 0 is negative"):
        semot.sliced_wasserstein_distance(X, X, [-1, 1, 1])
    with pytest.raises(ValueError, match=r"^b: weights sum to 0"):
        semot.sliced_wasserstein_distance(X, X, None, [0, 0, 0])
    with pytest.raises(ValueError, match=r"^x: point 1 has a non-finite"):
        semot.sliced_wasserstein_distance([[0, 0], [np.nan, 0]], X)
    with pytest.raises(ValueError, match=r"^b: expected shape \(3,\)"):
        semot.sliced_wasserstein_distance(X, X, None, [1, 1])
    with pytest.raises(ValueError, match=r"^x: is empty"):
        semot.sliced_wasserstein_distance(np.zeros((0, 2)), X)
    with pytest.raises(ValueError, match=r"u_values: expected a 1-D"):
        semot.wasserstein_1d(np.zeros((2, 2)), [1.0])
    with pytest.raises(ValueError, match=r"u_weights: expected shape"):
        semot.wasserstein_1d([1.0, 2.0], [1.0], [1.0])
    with pytest.raises(ValueError, match=r"v: cloud 0: weight 0 is negative"):
        semot.wasserstein_1d([1.0], [1.0], None, [-1.0])


def test_native_layer_rejects_what_python_would_not_send():
    """The Rust core validates on its own: no panic even when the Python layer is bypassed."""
    from semot import _core

    pts = np.zeros((3, 2))
    w = np.ones(3)
    proj = np.eye(2)
    with pytest.raises(ValueError, match=r"A\.offsets"):
        _core.sw_pdist(pts, w, np.array([0, 5], np.int64), proj, 2.0)
    with pytest.raises(ValueError, match="A: cloud 0: weight 0 is negative"):
        _core.sw_pdist(pts, -w, np.array([0, 3], np.int64), proj, 2.0)
    with pytest.raises(TypeError):
        _core.sw_pdist(pts.astype(np.float32), w, np.array([0, 3], np.int64), proj, 2.0)
    with pytest.raises(ValueError, match="projections"):
        _core.sw_pdist(pts, w, np.array([0, 3], np.int64), np.zeros((2, 2)), 2.0)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        _core.sw_pdist(np.zeros((3, 4))[:, ::2], w, np.array([0, 3], np.int64), proj, 2.0)
    with pytest.raises(ValueError, match="p: must be"):
        _core.sw_pdist(pts, w, np.array([0, 3], np.int64), proj, 0.1)
