from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse.csgraph import connected_components as sp_components
from scipy.spatial.distance import pdist

from semot.grouping.linkage import (
    MergeTree,
    connected_components,
    merge_by_threshold,
    single_linkage,
)


def canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..k-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse.ravel()].astype(np.int64)


def is_canonical(labels: np.ndarray) -> bool:
    return labels.dtype == np.int64 and np.array_equal(labels, canonical(labels))


def all_pairs(n: int) -> np.ndarray:
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1)


def scipy_components(n: int, edges: np.ndarray) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    graph = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = sp_components(graph, directed=False)
    return canonical(labels)


# ---------------------------------------------------------------- connected_components


def test_connected_components_small() -> None:
    labels = connected_components(5, [[3, 1], [4, 0], [2, 2]])
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 2, 1, 0]
    assert connected_components(3, []).tolist() == [0, 1, 2]
    assert connected_components(0, np.empty((0, 2), dtype=np.int32)).tolist() == []


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=80),
        )
    )
)
def test_connected_components_matches_scipy(case: tuple[int, list[tuple[int, int]]]) -> None:
    n, edges = case
    arr = np.array(edges, dtype=np.int32).reshape(-1, 2)
    labels = connected_components(n, arr)
    assert is_canonical(labels)
    np.testing.assert_array_equal(labels, scipy_components(n, arr))


def test_connected_components_errors() -> None:
    with pytest.raises(ValueError, match=r"edges.*row 1"):
        connected_components(3, [[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=r"edges.*row 0"):
        connected_components(3, [[-1, 1]])
    with pytest.raises(ValueError, match="edges"):
        connected_components(3, [[0, 1, 2]])
    with pytest.raises(ValueError, match="edges"):
        connected_components(3, [0, 1])
    with pytest.raises(TypeError, match="edges"):
        connected_components(3, [[0.5, 1.0]])
    with pytest.raises(TypeError, match="n"):
        connected_components(3.0, [[0, 1]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n"):
        connected_components(-1, [[0, 1]])


# ---------------------------------------------------------------- single_linkage


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_single_linkage_matches_scipy(n: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    d = pdist(x)
    tree = single_linkage(n, all_pairs(n), d)
    assert tree.n_components == 1
    assert tree.n_merges == n - 1
    assert np.all(np.diff(tree.heights) >= 0)
    if n == 1:
        assert tree.to_scipy().shape == (0, 4)
        return
    z = linkage(d, method="single")
    # Continuous data: no ties, so the linkage matrix is identical to scipy's.
    np.testing.assert_array_equal(tree.to_scipy(), z)
    for t in np.quantile(d, [0.0, 0.1, 0.5, 0.9, 1.0]):
        expected = canonical(fcluster(z, t, "distance"))
        np.testing.assert_array_equal(tree.labels_at(t), expected)
        np.testing.assert_array_equal(merge_by_threshold(d, t), expected)
    for k in {1, 2, n // 2 + 1, n}:
        expected = canonical(fcluster(z, k, "maxclust"))
        np.testing.assert_array_equal(tree.labels_for(k), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 25), st.integers(0, 2**32 - 1))
def test_single_linkage_ties_match_scipy_heights(n: int, seed: int) -> None:
    # Few distinct distances: many ties. Heights and threshold cuts still agree with scipy.
    rng = np.random.default_rng(seed)
    d = rng.integers(0, 4, size=n * (n - 1) // 2).astype(np.float64)
    tree = single_linkage(n, all_pairs(n), d)
    z = linkage(d, method="single")
    np.testing.assert_array_equal(tree.heights, z[:, 2])
    for t in [-0.5, 0.0, 0.5, 1.0, 2.0, 3.0]:
        expected = canonical(fcluster(z, t, "distance"))
        np.testing.assert_array_equal(tree.labels_at(t), expected)
        np.testing.assert_array_equal(merge_by_threshold(d, t), expected)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.integers(0, 5)),
                max_size=60,
            ),
        )
    )
)
def test_sparse_candidates_cut_matches_components(
    case: tuple[int, list[tuple[int, int, int]]],
) -> None:
    n, rows = case
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    pairs, d = arr[:, :2], arr[:, 2].astype(np.float64)
    tree = single_linkage(n, pairs, d)
    assert np.all(np.diff(tree.heights) >= 0)
    full = scipy_components(n, pairs)
    assert tree.n_components == int(full.max()) + 1
    np.testing.assert_array_equal(tree.labels_at(np.inf), full)
    for t in [-1.0, 0.0, 1.5, 3.0, 5.0]:
        labels = tree.labels_at(t)
        assert is_canonical(labels)
        np.testing.assert_array_equal(labels, scipy_components(n, pairs[d <= t]))
    for k in range(1, n + 1):
        labels = tree.labels_for(k)
        assert is_canonical(labels)
        assert int(labels.max()) + 1 == max(k, tree.n_components)


def test_forest() -> None:
    # 0-1-2 connected, 3-4 connected, 5 alone.
    tree = single_linkage(6, [[1, 2], [0, 1], [3, 4], [5, 5]], [2.0, 1.0, 0.5, 0.0])
    assert tree.n_components == 3
    assert tree.n_merges == 3
    assert tree.merges.tolist() == [
        [3.0, 4.0, 0.5, 2.0],
        [0.0, 1.0, 1.0, 2.0],
        [2.0, 7.0, 2.0, 3.0],
    ]
    assert tree.labels_at(1.0).tolist() == [0, 0, 1, 2, 2, 3]
    assert tree.labels_at(np.inf).tolist() == [0, 0, 0, 1, 1, 2]
    # Fewer clusters than components: the forest's components.
    assert tree.labels_for(1).tolist() == [0, 0, 0, 1, 1, 2]
    assert tree.labels_for(4).tolist() == [0, 0, 1, 2, 2, 3]
    assert tree.labels_for(6).tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="forest with 3 components"):
        tree.to_scipy()


def test_ties_are_resolved_by_row_order() -> None:
    tree = single_linkage(3, [[1, 2], [0, 1]], [1.0, 1.0])
    assert tree.merges.tolist() == [[1.0, 2.0, 1.0, 2.0], [0.0, 3.0, 1.0, 3.0]]
    swapped = single_linkage(3, [[0, 1], [1, 2]], [1.0, 1.0])
    assert swapped.merges.tolist() == [[0.0, 1.0, 1.0, 2.0], [2.0, 3.0, 1.0, 3.0]]


def test_merge_tree_is_read_only_and_validated() -> None:
    tree = single_linkage(3, [[0, 1], [1, 2]], [1.0, 2.0])
    with pytest.raises(ValueError):
        tree.merges[0, 2] = 5.0
    with pytest.raises(AttributeError):
        tree.n = 4  # type: ignore[misc]
    out = tree.to_scipy()
    out[0, 2] = 5.0  # a copy
    assert tree.merges[0, 2] == 1.0
    assert "n_components=1" in repr(tree)
    same = MergeTree(3, np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]], dtype=float))
    np.testing.assert_array_equal(same.merges, tree.merges)
    with pytest.raises(ValueError, match=r"merges.*row 1.*size"):
        MergeTree(3, np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 4]], dtype=float))
    with pytest.raises(ValueError, match=r"merges.*row 0"):
        MergeTree(3, np.array([[0, 5, 1.0, 2]], dtype=float))
    with pytest.raises(ValueError, match="merges"):
        MergeTree(3, np.array([[0, 1, 1.0]], dtype=float))
    with pytest.raises(ValueError, match=r"merges.*row 1.*smaller"):
        MergeTree(3, np.array([[0, 1, 2.0, 2], [2, 3, 1.0, 3]], dtype=float))


def test_single_linkage_lenient_inputs() -> None:
    a = single_linkage(4, [[0, 1], [2, 3], [1, 2]], [1, 2, 3])
    b = single_linkage(
        np.int64(4),
        np.array([[0, 1], [2, 3], [1, 2]], dtype=np.uint8),
        np.array([1, 2, 3], dtype=np.float32),
    )
    c = single_linkage(4, np.array([[0, 2, 1], [1, 3, 2]]).T, np.array([1.0, 0, 2, 0, 3])[::2])
    np.testing.assert_array_equal(a.merges, b.merges)
    np.testing.assert_array_equal(a.merges, c.merges)
    assert a.merges.dtype == np.float64
    one = single_linkage(1, [], [])
    assert one.n_components == 1 and one.to_scipy().shape == (0, 4)
    assert one.labels_at(0.0).tolist() == [0]


def test_single_linkage_errors() -> None:
    with pytest.raises(ValueError, match=r"distances.*index 1"):
        single_linkage(3, [[0, 1], [1, 2]], [1.0, np.nan])
    with pytest.raises(ValueError, match=r"distances.*index 0"):
        single_linkage(3, [[0, 1], [1, 2]], [np.inf, 1.0])
    with pytest.raises(ValueError, match=r"distances.*index 1"):
        single_linkage(3, [[0, 1], [1, 2]], [1.0, -1.0])
    with pytest.raises(ValueError, match="distances"):
        single_linkage(3, [[0, 1], [1, 2]], [1.0])
    with pytest.raises(ValueError, match=r"pairs.*row 1"):
        single_linkage(3, [[0, 1], [1, 3]], [1.0, 2.0])
    with pytest.raises(ValueError, match="pairs"):
        single_linkage(3, [[0, 1, 2]], [1.0])
    with pytest.raises(ValueError, match="n"):
        single_linkage(0, [], [])
    with pytest.raises(TypeError, match="pairs"):
        single_linkage(3, [[0.0, 1.0]], [1.0])
    with pytest.raises(TypeError, match="distances"):
        single_linkage(3, [[0, 1]], ["a"])
    tree = single_linkage(3, [[0, 1], [1, 2]], [1.0, 2.0])
    with pytest.raises(ValueError, match="threshold"):
        tree.labels_at(np.nan)
    with pytest.raises(TypeError, match="threshold"):
        tree.labels_at("1")  # type: ignore[arg-type]
    for bad in (0, 4):
        with pytest.raises(ValueError, match="n_clusters"):
            tree.labels_for(bad)
    with pytest.raises(TypeError, match="n_clusters"):
        tree.labels_for(1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- merge_by_threshold


def test_merge_by_threshold_small_and_dtypes() -> None:
    d = [1.0, 5.0, 5.0]  # d01, d02, d12
    assert merge_by_threshold(d, 2.0).tolist() == [0, 0, 1]
    assert merge_by_threshold(np.array(d, dtype=np.float32), 2.0).tolist() == [0, 0, 1]
    assert merge_by_threshold(np.array([1, 5, 5]), 5).tolist() == [0, 0, 0]
    assert merge_by_threshold([], 1.0).tolist() == [0]
    assert merge_by_threshold([3.0], 1.0).tolist() == [0, 1]
    assert merge_by_threshold(d, -np.inf).tolist() == [0, 1, 2]


@pytest.mark.parametrize("n_threads", [None, 1, 3])
def test_merge_by_threshold_large_matches_scipy(n_threads: int | None) -> None:
    # n = 1600 gives m ~ 1.3M condensed entries: more than one internal chunk.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1600, 2))
    d = pdist(x)
    t = 0.08
    labels = merge_by_threshold(d, t, n_threads=n_threads)
    i, j = np.triu_indices(len(x), k=1)
    keep = d <= t
    expected = scipy_components(len(x), np.stack([i[keep], j[keep]], axis=1))
    np.testing.assert_array_equal(labels, expected)
    assert 1 < labels.max() + 1 < len(x)


def test_merge_by_threshold_errors() -> None:
    with pytest.raises(ValueError, match="condensed_distances"):
        merge_by_threshold([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match=r"condensed_distances.*index 2"):
        merge_by_threshold([1.0, 2.0, np.nan], 1.0)
    with pytest.raises(ValueError, match=r"condensed_distances.*index 0"):
        merge_by_threshold([-1.0, 2.0, 3.0], 1.0)
    with pytest.raises(ValueError, match="condensed_distances"):
        merge_by_threshold([[1.0, 2.0, 3.0]], 1.0)
    with pytest.raises(ValueError, match="threshold"):
        merge_by_threshold([1.0, 2.0, 3.0], np.nan)
    with pytest.raises(TypeError, match="condensed_distances"):
        merge_by_threshold(["a"], 1.0)
    with pytest.raises(ValueError, match="n_threads"):
        merge_by_threshold([1.0], 1.0, n_threads=0)
