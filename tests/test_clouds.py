"""PointClouds: construction, dtype handling, indexing and subsets."""

from __future__ import annotations

import numpy as np
import pytest

from semot import PointClouds


def test_from_list_and_indexing(rng):
    a = rng.normal(size=(3, 4)).astype(np.float32)
    b = rng.normal(size=(5, 4)).astype(np.float32)
    c = PointClouds.from_list([a, (b, [1, 2, 3, 4, 10])])
    assert len(c) == 2 and c.dim == 4 and c.dtype == np.float32
    assert c.sizes.tolist() == [3, 5] and c.n_points == 8
    pts, w = c[0]
    np.testing.assert_array_equal(pts, a)
    np.testing.assert_allclose(w, 1 / 3)
    pts, w = c[-1]
    np.testing.assert_array_equal(pts, b)
    np.testing.assert_allclose(w, np.array([1, 2, 3, 4, 10]) / 20, rtol=1e-6)
    with pytest.raises(IndexError):
        c[2]
    assert "n_clouds=2" in repr(c)


def test_float32_is_not_upcast_and_mixing_promotes():
    x32 = np.zeros((4, 3), np.float32)
    assert PointClouds(x32, None, [0, 4]).points.dtype == np.float32
    mixed = PointClouds.from_list([x32, np.zeros((2, 3))])
    assert mixed.dtype == np.float64
    assert PointClouds(x32, None, [0, 4]).points is not None
    half = PointClouds(np.zeros((2, 2), np.float16), None, [0, 2])
    assert half.dtype == np.float32


def test_weights_normalised_per_cloud():
    c = PointClouds(np.arange(10.0).reshape(5, 2), [1, 3, 2, 2, 4], [0, 2, 5])
    np.testing.assert_allclose(c.weights, [0.25, 0.75, 0.25, 0.25, 0.5])


def test_from_padded_drops_zero_weights(rng):
    pts = rng.normal(size=(3, 4, 2))
    w = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 2, 0, 1]], float)
    c = PointClouds.from_padded(pts, w)
    assert c.sizes.tolist() == [2, 4, 2]
    np.testing.assert_array_equal(c[2][0], pts[2, [1, 3]])
    np.testing.assert_allclose(c[2][1], [2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="cloud 1 has only padding"):
        PointClouds.from_padded(pts, np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]))
    assert len(PointClouds.from_padded(pts)) == 3


def test_subset_and_slices(rng):
    clouds = [rng.normal(size=(k + 1, 3)) for k in range(6)]
    c = PointClouds.from_list(clouds)
    s = c.subset([4, 1, 4])
    assert s.sizes.tolist() == [5, 2, 5]
    np.testing.assert_array_equal(s[0][0], clouds[4])
    np.testing.assert_array_equal(s[1][0], clouds[1])
    t = c[1:6:2]
    assert t.sizes.tolist() == [2, 4, 6]
    m = c.subset(np.array([True, False, False, False, False, True]))
    assert m.sizes.tolist() == [1, 6]
    assert c.subset([-1]).sizes.tolist() == [6]
    with pytest.raises(IndexError, match=r"indices\[1\] = 6 out of range"):
        c.subset([0, 6])
    assert len(list(iter(c))) == 6


def test_from_list_errors():
    with pytest.raises(ValueError, match=r"clouds\[1\]: dimension 3 differs"):
        PointClouds.from_list([np.zeros((2, 2)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"clouds\[0\]: cloud is empty"):
        PointClouds.from_list([np.zeros((0, 2))])
    with pytest.raises(ValueError, match=r"clouds\[0\]: 1 weights for 2 points"):
        PointClouds.from_list([(np.zeros((2, 2)), [1.0])])
    with pytest.raises(ValueError, match="need at least one cloud"):
        PointClouds.from_list([])
