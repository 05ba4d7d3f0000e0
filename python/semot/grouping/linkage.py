"""Union-find connected components and single-linkage merge trees.

Every labelling returned here is *canonical*: labels are ``0..k-1`` numbered in order of first
appearance over the points ``0..n-1``, so two equal partitions give equal arrays.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from semot import _core
from semot._utils.checks import (
    as_array,
    check_n_threads,
    check_positive_int,
    float_array,
    index_array,
)
from semot._utils.memory import check_memory

__all__ = ["MergeTree", "connected_components", "merge_by_threshold", "single_linkage"]

IntArray = npt.NDArray[np.int64]


def _pairs(x: Any, name: str) -> IntArray:
    """Return ``x`` as a C-contiguous ``(K, 2)`` int64 array (empty input gives ``(0, 2)``)."""
    arr = as_array(x, name)
    if arr.size == 0:
        arr = arr.reshape(0, 2)
    out = index_array(arr, name, 2)
    if out.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (K, 2), got {out.shape}")
    return out


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold: expected a real number, got {type(threshold).__name__}")
    value = float(threshold)
    if math.isnan(value):
        raise ValueError("threshold: must not be NaN")
    return value


def connected_components(n: int, edges: Any) -> IntArray:
    """Label the connected components of an undirected graph given as an edge list.

    Parameters
    ----------
    n : int
        Number of nodes (``>= 0``); nodes are ``0..n-1``.
    edges : array_like of int, shape (K, 2)
        One edge per row. Self-loops and repeated edges are allowed.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Canonical component labels ``0..k-1``, numbered in order of first appearance.

    Raises
    ------
    ValueError
        When ``edges`` is not ``(K, 2)`` or an index is outside ``0..n-1`` (the message names
        the row).
    TypeError
        When ``n`` is not an integer or ``edges`` is not an integer array.

    Examples
    --------
    >>> from semot.grouping.linkage import connected_components
    >>> connected_components(5, [[3, 1], [4, 0]]).tolist()
    [0, 1, 2, 1, 0]
    """
    n = check_positive_int(n, "n", minimum=0)
    edge_list = _pairs(edges, "edges")
    # Labels, the union-find (parent and size) and the label of each root: 8 bytes each.
    check_memory(4 * 8.0 * n, "n", f"labels of {n} nodes")
    return _core.connected_components(n, edge_list)


@dataclass(frozen=True, eq=False)
class MergeTree:
    """A single-linkage merge tree (or forest) in the scipy ``linkage`` convention.

    Points are clusters ``0..n-1``; merge ``k`` (row ``k`` of :attr:`merges`) creates cluster
    ``n + k``; each row lists the smaller cluster id first and merge distances are
    non-decreasing. When the candidate graph was disconnected the tree is a *forest* with
    fewer than ``n - 1`` merges and ``n_components > 1``.

    Parameters
    ----------
    n : int
        Number of points.
    merges : numpy.ndarray of float64, shape (n_merges, 4)
        Rows ``[id_a, id_b, distance, size]``, read-only.

    Examples
    --------
    >>> from semot.grouping.linkage import single_linkage
    >>> tree = single_linkage(4, [[0, 1], [1, 2]], [0.5, 2.0])
    >>> tree.merges.tolist()
    [[0.0, 1.0, 0.5, 2.0], [2.0, 4.0, 2.0, 3.0]]
    >>> tree.n_components, tree.labels_at(1.0).tolist(), tree.labels_for(2).tolist()
    (2, [0, 0, 1, 2], [0, 0, 0, 1])
    """

    n: int
    merges: npt.NDArray[np.float64] = field(repr=False)

    def __post_init__(self) -> None:
        n = check_positive_int(self.n, "n")
        merges = np.array(float_array(self.merges, "merges"), dtype=np.float64, copy=True)
        if merges.size == 0:
            merges = merges.reshape(0, 4)
        if merges.ndim != 2 or merges.shape[1] != 4:
            raise ValueError(f"merges: expected shape (n_merges, 4), got {merges.shape}")
        # Validates ids, sizes and monotone heights (cheap: a cut with no merge replayed).
        _core.cut_tree_k(n, merges, n)
        merges.setflags(write=False)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "merges", merges)

    def __repr__(self) -> str:
        return f"MergeTree(n={self.n}, n_merges={self.n_merges}, n_components={self.n_components})"

    @property
    def n_merges(self) -> int:
        """Number of merges (``n - 1`` for a tree, fewer for a forest)."""
        return int(self.merges.shape[0])

    @property
    def n_components(self) -> int:
        """Number of clusters after every merge (1 for a tree, more for a forest)."""
        return self.n - self.n_merges

    @property
    def heights(self) -> npt.NDArray[np.float64]:
        """Merge distances, non-decreasing, shape ``(n_merges,)`` (read-only view)."""
        return self.merges[:, 2]

    def labels_at(self, threshold: float) -> IntArray:
        """Flat clusters obtained by replaying every merge with distance ``<= threshold``.

        Equivalent (up to relabelling) to ``scipy.cluster.hierarchy.fcluster(Z, threshold,
        "distance")`` for a full tree.

        Parameters
        ----------
        threshold : float
            Merge distance cut-off (``inf`` replays every merge).

        Returns
        -------
        numpy.ndarray of int64, shape (n,)
            Canonical labels.

        Raises
        ------
        ValueError
            When ``threshold`` is NaN.
        """
        return _core.cut_tree_threshold(self.n, self.merges, _check_threshold(threshold))

    def labels_for(self, n_clusters: int) -> IntArray:
        """Flat clusters obtained by replaying the first ``n - n_clusters`` merges.

        A forest with more than ``n_clusters`` components cannot be cut into fewer clusters:
        its components are returned (so the result has ``max(n_clusters, n_components)``
        clusters). With tied merge distances the cut follows the merge order.

        Parameters
        ----------
        n_clusters : int
            Target number of clusters, ``1 <= n_clusters <= n``.

        Returns
        -------
        numpy.ndarray of int64, shape (n,)
            Canonical labels.

        Raises
        ------
        ValueError
            When ``n_clusters`` is outside ``1..n``.
        """
        k = check_positive_int(n_clusters, "n_clusters")
        if k > self.n:
            raise ValueError(f"n_clusters: must be <= n = {self.n}, got {k}")
        return _core.cut_tree_k(self.n, self.merges, k)

    def to_scipy(self) -> npt.NDArray[np.float64]:
        """Return the full linkage matrix for :mod:`scipy.cluster.hierarchy`.

        Returns
        -------
        numpy.ndarray of float64, shape (n - 1, 4)
            A writable copy of :attr:`merges`.

        Raises
        ------
        ValueError
            When the tree is a forest: scipy linkage matrices must have exactly ``n - 1`` rows
            ending in a single root, which a disconnected candidate graph cannot provide.
        """
        if self.n_components != 1:
            raise ValueError(
                f"cannot convert to a scipy linkage matrix: the merge tree is a forest with "
                f"{self.n_components} components ({self.n_merges} merges for {self.n} points; "
                f"scipy needs exactly n - 1 = {self.n - 1}). The candidate pairs do not connect "
                "every point; add pairs or cut with labels_at / labels_for instead."
            )
        return np.array(self.merges, copy=True)


def single_linkage(n: int, pairs: Any, distances: Any) -> MergeTree:
    """Single-linkage merge tree from candidate pairs, by Kruskal's algorithm.

    Pairs are taken in order of ``(distance, row)``, a deterministic and stable order; each
    pair joining two different clusters becomes a merge. Self-pairs ``(i, i)`` and repeated
    pairs are allowed and ignored (they never join two clusters). Pairs missing from the
    candidate list are treated as infinitely far apart, so a disconnected candidate graph
    gives a forest (see :attr:`MergeTree.n_components`).

    Parameters
    ----------
    n : int
        Number of points (``>= 1``).
    pairs : array_like of int, shape (K, 2)
        Candidate pairs of point indices in ``0..n-1``.
    distances : array_like of float, shape (K,)
        Distance of each pair: finite and non-negative.

    Returns
    -------
    MergeTree
        With all pairs given (e.g. every ``i < j`` with ``scipy.spatial.distance.pdist``
        distances) and no ties, ``merges`` equals ``scipy.cluster.hierarchy.linkage(condensed,
        "single")``; with ties the heights agree and the order among tied merges may differ.

    Raises
    ------
    ValueError
        When ``n < 1``, shapes disagree, an index is out of range (naming ``pairs`` and the
        row) or a distance is NaN, infinite or negative (naming ``distances`` and the index).
    TypeError
        For non-integer ``pairs`` or non-numeric ``distances``.

    Examples
    --------
    >>> from semot.grouping.linkage import single_linkage
    >>> tree = single_linkage(3, [[0, 1], [1, 2], [0, 2]], [1.0, 3.0, 2.0])
    >>> tree.to_scipy().tolist()
    [[0.0, 1.0, 1.0, 2.0], [2.0, 3.0, 2.0, 3.0]]
    """
    n = check_positive_int(n, "n")
    p = _pairs(pairs, "pairs")
    d = np.asarray(float_array(distances, "distances", ndim=1), dtype=np.float64)
    # Union-find, cluster ids and the merges (at most one per pair, 4 float64 each).
    check_memory(8.0 * (3 * n + 4 * min(n, p.shape[0])), "n", f"a merge tree of {n} points")
    merges = _core.single_linkage(n, p, d)
    return MergeTree(n, merges)


def merge_by_threshold(
    condensed_distances: Any, threshold: float, *, n_threads: int | None = None
) -> IntArray:
    """Single linkage cut at ``threshold``, straight from a condensed distance vector.

    Points ``i < j`` are joined when their distance is ``<= threshold``; the result is the
    connected components of that graph, i.e. ``fcluster(linkage(d, "single"), threshold,
    "distance")`` up to relabelling. The vector is scanned in parallel without building any
    pair list, so ``n`` of tens of thousands (``m`` in the hundreds of millions) is fine.
    float32 input is used as given (not copied to float64).

    Parameters
    ----------
    condensed_distances : array_like of float, shape (m,)
        Distances in ``scipy.spatial.distance.pdist`` order, ``m = n (n - 1) / 2``; finite and
        non-negative. ``m = 0`` means a single point.
    threshold : float
        Distance cut-off (not NaN).
    n_threads : int, optional
        Threads to use; ``None`` uses every core (or ``RAYON_NUM_THREADS``). The result does not
        depend on it.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Canonical labels.

    Raises
    ------
    ValueError
        When ``m`` is not of the form ``n (n - 1) / 2``, a distance is NaN, infinite or negative
        (naming ``condensed_distances`` and the index), or ``threshold`` is NaN.
    TypeError
        For non-numeric input.

    Examples
    --------
    >>> from semot.grouping.linkage import merge_by_threshold
    >>> merge_by_threshold([1.0, 5.0, 5.0], 2.0).tolist()  # 3 points: d01, d02, d12
    [0, 0, 1]
    """
    d = float_array(condensed_distances, "condensed_distances", ndim=1)
    return _core.merge_by_threshold(d, _check_threshold(threshold), check_n_threads(n_threads))
