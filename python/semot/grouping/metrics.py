"""Metrics of a grouping (a partition given as one integer label per item), for any items.

Nothing here knows about graphs: the items are nodes of an attribution graph in
:mod:`semot.circuits`, but could be features or points. A labelling is *canonical* when its
labels are ``0..k-1`` numbered in order of first appearance (:func:`canonical_labels`), so two
equal partitions give equal arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "agreement",
    "canonical_labels",
    "coherence",
    "compression_ratio",
    "group_members",
    "label_array",
    "silhouette",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def label_array(labels: Any, n: int | None = None, name: str = "labels") -> IntArray:
    """Return ``labels`` as a 1-D int64 array of group ids, checked.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Group id per item (an empty float array counts as no labels).
    n : int, optional
        The number of labels required (one per node of a graph, say).
    name : str, default "labels"
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        The labels.

    Raises
    ------
    TypeError
        When ``labels`` is not an integer array.
    ValueError
        When it is not 1-D or does not hold ``n`` labels.
    """
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu" and not (lab.size == 0 and lab.dtype.kind == "f"):
        raise TypeError(f"{name}: expected an integer array, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {lab.shape}")
    if n is not None and lab.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per node), got {lab.shape[0]}")
    return lab


def canonical_labels(labels: IntArray) -> IntArray:
    """Renumber group ids ``0..k-1`` in order of first appearance.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (n,)
        Group id per item (any integers).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        The same partition with the group of item 0 numbered 0, the next new group 1, and so
        on.
    """
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse.reshape(-1)].astype(np.int64)


def group_members(labels: IntArray) -> dict[int, list[int]]:
    """Map each group id to the indices of its members.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (n,)
        Group id per item.

    Returns
    -------
    dict of int to list of int
        Group ids in ascending order, each with its members' indices in ascending order.
    """
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    chunks = np.split(order, starts[1:])
    return {int(v): c.tolist() for v, c in zip(values.tolist(), chunks, strict=True)}


def compression_ratio(labels: Any) -> float:
    """Return the number of groups divided by the number of nodes.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Group id per node.

    Returns
    -------
    float
        In ``(0, 1]``; 1 when every node is alone, NaN for no nodes.
    """
    lab = label_array(labels)
    if lab.size == 0:
        return math.nan
    return float(np.unique(lab).size / lab.size)


def coherence(labels: Any, D: Any) -> dict[str, Any]:
    """Compare the mean distance within groups with the mean distance between groups.

    Parameters
    ----------
    labels : array_like of int, shape (m,)
        Group id of each of the ``m`` nodes that ``D`` covers (any subset of a graph's nodes,
        in the order of ``D``).
    D : array_like of float
        Distances between those nodes: condensed (``(m * (m - 1) / 2,)``, the order of
        ``scipy.spatial.distance.pdist``) or square ``(m, m)``, of which only the upper
        triangle is read (the diagonal never is).

    Returns
    -------
    dict
        ``within``: mean distance over pairs in the same group; ``between``: mean over pairs
        in different groups (NaN when there is no such pair); ``ratio`` = within / between
        (below 1 when groups are tighter than the space around them); ``n_within_pairs``,
        ``n_between_pairs``.

    Raises
    ------
    ValueError
        When ``D`` does not fit ``m`` or holds NaN.
    """
    lab = label_array(labels)
    m = lab.shape[0]
    d = np.asarray(D, dtype=np.float64)
    iu = np.triu_indices(m, 1)
    if d.ndim == 1:
        if d.shape[0] != m * (m - 1) // 2:
            raise ValueError(
                f"D: condensed matrix of length {d.shape[0]} does not fit {m} labels "
                f"(expected {m * (m - 1) // 2})"
            )
    elif d.ndim == 2:
        if d.shape != (m, m):
            raise ValueError(f"D: expected shape ({m}, {m}), got {d.shape}")
        d = d[iu]
    else:
        raise ValueError(f"D: expected a condensed or square matrix, got shape {d.shape}")
    if np.isnan(d).any():
        raise ValueError("D: contains NaN")
    same = lab[iu[0]] == lab[iu[1]]
    n_in, n_out = int(same.sum()), int((~same).sum())
    within = float(d[same].mean()) if n_in else math.nan
    between = float(d[~same].mean()) if n_out else math.nan
    return {
        "within": within,
        "between": between,
        "ratio": within / between if n_in and n_out and between > 0 else math.nan,
        "n_within_pairs": n_in,
        "n_between_pairs": n_out,
    }


def _pairs_same(counts: Sequence[int]) -> int:
    return sum(c * (c - 1) // 2 for c in counts)


def agreement(pred: Any, true: Any, nodes: Any = None) -> dict[str, Any]:
    """Measure how well one grouping agrees with another.

    Parameters
    ----------
    pred, true : array_like of int, shape (n,)
        Group id per node of the grouping to judge and of the reference.
    nodes : array_like of int, optional
        Node indices to compare on (default: all). Groups are cut down to these nodes.

    Returns
    -------
    dict
        ``ari``: adjusted Rand index (1 for identical partitions, about 0 for chance; 1 when
        both put every node alone, as scikit-learn does); ``precision``: share of the node
        pairs grouped together by ``pred`` that ``true`` also groups together; ``recall``:
        share of the pairs of ``true`` that ``pred`` groups together; ``f1``; NaN where a
        denominator is 0. Also ``n_nodes``, ``n_pred_groups``, ``n_true_groups``.
    """
    p = label_array(pred, name="pred")
    t = label_array(true, p.shape[0], name="true")
    if nodes is not None:
        idx = np.asarray(nodes)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = label_array(idx, name="nodes")
        if idx.size and (idx.min() < 0 or idx.max() >= p.shape[0]):
            raise ValueError(f"nodes: index outside 0..{p.shape[0] - 1}")
        p, t = p[idx], t[idx]
    m = int(p.shape[0])
    _, pi = np.unique(p, return_inverse=True)
    _, ti = np.unique(t, return_inverse=True)
    pi, ti = pi.reshape(-1), ti.reshape(-1)
    n_true = int(ti.max()) + 1 if m else 0
    _, cell = np.unique(pi * max(n_true, 1) + ti, return_counts=True)
    # Python ints: pair counts overflow nothing.
    tp = _pairs_same(cell.tolist())
    same_p = _pairs_same(np.bincount(pi).tolist()) if m else 0
    same_t = _pairs_same(np.bincount(ti).tolist()) if m else 0
    total = m * (m - 1) // 2
    fp, fn = same_p - tp, same_t - tp
    tn = total - tp - fp - fn
    if fp == 0 and fn == 0:
        ari = 1.0
    else:
        ari = 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    precision = tp / same_p if same_p else math.nan
    recall = tp / same_t if same_t else math.nan
    if math.isnan(precision) or math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "ari": float(ari),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "n_nodes": m,
        "n_pred_groups": int(pi.max()) + 1 if m else 0,
        "n_true_groups": n_true,
    }


def silhouette(d: FloatArray, labels: IntArray) -> float:
    """Return the mean silhouette of a clustering under a square distance matrix.

    For item ``i`` with ``a`` = its mean distance to the other members of its group and ``b``
    = the smallest mean distance to the members of another group, the silhouette is
    ``(b - a) / max(a, b)``; an item alone in its group scores 0, as in scikit-learn.

    Parameters
    ----------
    d : numpy.ndarray of float64, shape (n, n)
        Symmetric distances with a zero diagonal.
    labels : numpy.ndarray of int64, shape (n,)
        Canonical group ids ``0..k-1``.

    Returns
    -------
    float
        The mean over the ``n`` items, in ``[-1, 1]``.
    """
    n = len(labels)
    k = int(labels.max()) + 1
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    sizes = onehot.sum(0)
    sums = d @ onehot  # (n, k): total distance from each point to each cluster
    own = sizes[labels]
    a = np.divide(sums[np.arange(n), labels], own - 1, out=np.zeros(n), where=own > 1)
    mean_other = sums / np.maximum(sizes, 1)
    mean_other[np.arange(n), labels] = np.inf
    b = mean_other.min(1) if k > 1 else np.zeros(n)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(s.mean())
