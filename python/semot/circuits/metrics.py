"""Metrics of a grouping of an attribution graph's nodes: link weight, influence, a report.

The grouping is one integer label per node (equal labels = same group). The share of
``|weight|`` on links inside groups (:func:`edge_weight_split`), the influence of every node
on the target logit through all paths (:func:`node_influence`, :func:`input_influence`), how
much of the input tokens' influence a compressed graph keeps (:func:`influence_preserved`),
and all of them together with agreement against a reference grouping (:func:`graph_report`).
Metrics that do not need the graph (compression ratio, coherence, agreement) are in
:mod:`semot.grouping.metrics`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse import csgraph
from scipy.sparse.linalg import spsolve

from semot.circuits.graph import AttributionGraph
from semot.grouping.metrics import agreement, canonical_labels, compression_ratio, label_array

__all__ = [
    "edge_weight_split",
    "graph_report",
    "influence_preserved",
    "input_influence",
    "node_influence",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def edge_weight_split(graph: AttributionGraph, labels: Any) -> dict[str, Any]:
    """Split the total absolute link weight into links inside groups and across groups.

    Parameters
    ----------
    graph : AttributionGraph
        The graph.
    labels : array_like of int, shape (n_nodes,)
        Group id per node.

    Returns
    -------
    dict
        ``inside`` and ``across``: shares of the total ``|weight|`` (sum to 1; NaN when the
        graph has no weight), ``total_abs_weight``, and the link counts ``n_links_inside``
        and ``n_links_across``. A compressed graph drops the ``inside`` links.
    """
    lab = label_array(labels, graph.n_nodes)
    inside = lab[graph.src] == lab[graph.dst]
    w = np.abs(graph.weight)
    total = float(w.sum())
    w_in = float(w[inside].sum())
    return {
        "inside": w_in / total if total > 0 else math.nan,
        "across": (total - w_in) / total if total > 0 else math.nan,
        "total_abs_weight": total,
        "n_links_inside": int(inside.sum()),
        "n_links_across": int((~inside).sum()),
    }


def node_influence(graph: AttributionGraph, target: int | None = None) -> FloatArray:
    """Return the influence of every node on the target logit through all paths.

    As in the attribution-graph papers and circuit-tracer's pruning: take ``|A|``
    (:meth:`AttributionGraph.adjacency`), normalise each row so that a node's incoming
    weights sum to 1 (rows with no input stay 0), giving ``Â``; the influence is
    ``e_target^T (I - Â)^{-1}``, i.e. the sum over all paths into the target of the product
    of normalised weights. It is found by one sparse solve of ``(I - Â)^T x = e_target``.

    Parameters
    ----------
    graph : AttributionGraph
        The graph (a DAG in every real file; cycles are allowed when the system is still
        solvable, as in a compressed graph whose groups span layers).
    target : int, optional
        Node index; default :meth:`AttributionGraph.target_logit`.

    Returns
    -------
    numpy.ndarray of float64, shape (n_nodes,)
        Influence per node; 1 at the target. Summed over the nodes without inputs (the
        leaves: embeddings, error nodes) it is 1 when the target has an input.

    Raises
    ------
    ValueError
        When a cycle that no path leaves makes the influence infinite.
    GraphFormatError
        When there is no target logit.
    """
    n = graph.n_nodes
    t = graph.target_logit() if target is None else int(target)
    if not 0 <= t < n:
        raise ValueError(f"target: node index {t} outside 0..{n - 1}")
    a = abs(graph.adjacency())
    rows = np.asarray(a.sum(axis=1)).reshape(n)
    scale = np.zeros(n)
    np.divide(1.0, rows, out=scale, where=rows > 0)
    a_hat = sp.diags(scale) @ a
    system = (sp.identity(n, format="csr") - a_hat).T.tocsc()
    rhs = np.zeros(n)
    rhs[t] = 1.0
    with warnings.catch_warnings():
        # A singular system (a closed cycle) is reported below as a ValueError.
        warnings.simplefilter("ignore")
        x = np.asarray(spsolve(system, rhs), dtype=np.float64).reshape(n)
    if not np.all(np.isfinite(x)):
        n_strong = csgraph.connected_components(a, directed=True, connection="strong")[0]
        raise ValueError(
            "influence is undefined: the graph has a cycle that no path leaves "
            f"({n_strong} strongly connected components for {n} nodes)"
        )
    return x


def _embeddings(graph: AttributionGraph) -> IntArray:
    return np.array([i for i, k in enumerate(graph.kinds) if k == "embedding"], np.int64)


def input_influence(graph: AttributionGraph) -> FloatArray:
    """Return the influence of each input-token (embedding) node on the target logit.

    Parameters
    ----------
    graph : AttributionGraph
        The graph.

    Returns
    -------
    numpy.ndarray of float64, shape (n_embeddings,)
        :func:`node_influence` at the embedding nodes, in node order. Its sum is the share of
        the target's influence that comes from the input tokens (the rest reaches error
        nodes and features without inputs).
    """
    return node_influence(graph)[_embeddings(graph)]


def _leaf_mass(graph: AttributionGraph, x: FloatArray) -> float:
    has_input = np.zeros(graph.n_nodes, bool)
    has_input[graph.dst[graph.weight != 0]] = True
    return float(x[~has_input].sum())


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else math.nan


def influence_preserved(graph: AttributionGraph, labels: Any) -> dict[str, Any]:
    """Compare the input influence on the target logit before and after compression.

    The compressed graph is :meth:`AttributionGraph.compressed`; its input nodes are the
    all-embedding groups. The original influence of the embeddings in each such group is
    summed, both vectors are normalised to sum 1, and compared.

    Parameters
    ----------
    graph : AttributionGraph
        The original graph.
    labels : array_like of int, shape (n_nodes,)
        Group id per node.

    Returns
    -------
    dict
        ``embedding_share_original`` / ``embedding_share_compressed``: share of the target
        logit's total influence (the influence reaching nodes without inputs) that reaches
        embedding nodes, in each graph; ``correlation`` (Pearson) and ``l1_difference``
        (in ``[0, 2]``) between the normalised per-input vectors (NaN when undefined, e.g.
        fewer than two inputs for the correlation); ``embedding_share_in_mixed_groups``:
        share of the original embedding influence whose embeddings were merged with other
        kinds of node (those groups are not inputs of the compressed graph); ``n_inputs``;
        ``compressed_is_dag``. With every node alone the two graphs are the same and the
        correlation is 1, the difference 0.
    """
    lab = canonical_labels(label_array(labels, graph.n_nodes))
    k = int(lab.max()) + 1 if lab.size else 0
    comp = graph.compressed(lab, [f"group {g}" for g in range(k)])
    x = node_influence(graph)
    emb = _embeddings(graph)
    emb_total = float(x[emb].sum())
    # compressed() makes one node per label value, in ascending order: node g is group g.
    inputs = [g for g in range(k) if comp.kinds[g] == "embedding"]
    u = np.zeros(len(inputs))
    pos = {g: j for j, g in enumerate(inputs)}
    mixed = 0.0
    for e in emb.tolist():
        j = pos.get(int(lab[e]))
        if j is None:
            mixed += float(x[e])
        else:
            u[j] += x[e]
    n_scc = csgraph.connected_components(comp.adjacency(), directed=True, connection="strong")[0]
    try:
        xc = node_influence(comp)
        v = xc[np.asarray(inputs, np.int64)]
        share_c = _share(float(v.sum()), _leaf_mass(comp, xc))
    except ValueError:
        v = np.full(len(inputs), math.nan)
        share_c = math.nan
    su, sv = float(u.sum()), float(v.sum())
    if su > 0 and sv > 0:
        un, vn = u / su, v / sv
        l1 = float(np.abs(un - vn).sum())
        corr = (
            float(np.corrcoef(un, vn)[0, 1])
            if len(inputs) >= 2 and np.std(un) > 0 and np.std(vn) > 0
            else math.nan
        )
    else:
        l1 = corr = math.nan
    return {
        "embedding_share_original": _share(emb_total, _leaf_mass(graph, x)),
        "embedding_share_compressed": share_c,
        "correlation": corr,
        "l1_difference": l1,
        "embedding_share_in_mixed_groups": _share(mixed, emb_total),
        "n_inputs": len(inputs),
        "compressed_is_dag": bool(n_scc == comp.n_nodes),
    }


def graph_report(graph: AttributionGraph, labels: Any, hand: Any = None) -> dict[str, Any]:
    """Bundle the metrics of a grouping of a graph's nodes.

    Parameters
    ----------
    graph : AttributionGraph
        The graph.
    labels : array_like of int, shape (n_nodes,)
        Group id per node.
    hand : array_like of int or list of (label, members), optional
        A reference grouping (e.g. ``graph.labels_from_supernodes(graph.hand_supernodes())``,
        or the groups themselves) to compute :func:`agreement` against.

    Returns
    -------
    dict
        ``n_nodes``, ``n_groups``, ``n_multi_groups`` (groups of two or more),
        ``compression_ratio``, ``edge_weight_split`` (:func:`edge_weight_split`),
        ``influence_preserved`` (:func:`influence_preserved`; ``{"error": message}`` when the
        graph has no target logit or the influence is undefined), and with ``hand``:
        ``agreement`` over all nodes and ``agreement_features`` over the feature nodes.
    """
    lab = label_array(labels, graph.n_nodes)
    sizes = np.unique(lab, return_counts=True)[1]
    report: dict[str, Any] = {
        "n_nodes": graph.n_nodes,
        "n_groups": int(sizes.size),
        "n_multi_groups": int((sizes >= 2).sum()),
        "compression_ratio": compression_ratio(lab),
        "edge_weight_split": edge_weight_split(graph, lab),
    }
    try:
        report["influence_preserved"] = influence_preserved(graph, lab)
    except ValueError as e:  # GraphFormatError included: no logit node
        report["influence_preserved"] = {"error": str(e)}
    if hand is not None:
        if isinstance(hand, list) and (not hand or isinstance(hand[0], tuple)):
            hand = graph.labels_from_supernodes(hand)
        ref = label_array(hand, graph.n_nodes, name="hand")
        report["agreement"] = agreement(lab, ref)
        feats = [i for i, kind in enumerate(graph.kinds) if kind == "feature"]
        report["agreement_features"] = agreement(lab, ref, nodes=np.asarray(feats, np.int64))
    return report
