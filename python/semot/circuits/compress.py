"""Automatic supernodes for attribution graphs: group nodes that mean the same thing.

Feature nodes of an attribution graph (circuit-tracer / Neuronpedia JSON, read by
:mod:`semot.circuits.graph`) are grouped by a distance between them, then merged with Kruskal
union-find (single linkage) or average linkage:

- the *semantic* distance: sliced Wasserstein (or Sinkhorn) between the nodes' feature
  distributions, looked up by (layer, feature index) in collection runs
  (:func:`node_distributions`);
- the *graph* distance: ``1 - cosine`` between the nodes' normalised attribution profiles
  (incoming weights from every node, outgoing weights to every node; :func:`profile_distances`),
  for graphs whose models cannot be run, and as an optional second term.

Error, embedding and logit nodes are never merged; feature nodes without a distribution are
left unmerged (and reported) when a semantic distance is used. The cut is a distance
threshold, a target compression ratio, or chosen automatically by the silhouette of the cuts
of the merge tree. Constraints (same token position, a layer window, connected in the graph)
restrict which pairs may merge.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from semot._utils.checks import check_choice, check_optional_positive_int, check_positive_float
from semot.circuits.graph import AttributionGraph
from semot.circuits.metrics import graph_report
from semot.clouds import PointClouds
from semot.distances.centroid import centroid_pdist
from semot.distances.choice import Distance, check_distance
from semot.distances.sinkhorn import default_reg, sinkhorn_pdist
from semot.distances.sliced import sliced_wasserstein_pdist
from semot.errors import SemotWarning
from semot.grouping.linkage import single_linkage
from semot.grouping.metrics import canonical_labels, coherence, silhouette

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Linkage = Literal["single", "average"]


@dataclass
class NodeDistributions:
    """Feature distributions of a graph's feature nodes.

    Attributes
    ----------
    nodes : ndarray of int64
        Graph node indices that have a distribution, increasing.
    clouds : PointClouds
        Their clouds, in the order of ``nodes``.
    missing : list of int
        Feature nodes with no distribution (no run for their layer, or the feature never fired).
    """

    nodes: I64
    clouds: PointClouds
    missing: list[int] = field(default_factory=list)


def run_layer(fd: Any, name: str = "") -> int:
    """Layer number of a collected site: ``metadata["layer"]``, else the hook name's number.

    Hooks such as ``blocks.12.hook_resid_post``, ``layer3`` or ``model.layers.7.mlp`` give
    12, 3 and 7.
    """
    meta = getattr(fd, "metadata", {}) or {}
    if isinstance(meta.get("layer"), int):
        return int(meta["layer"])
    for text in (str(meta.get("hook", "")), name):
        found = re.findall(r"(?:^|\D)(\d+)(?=\D|$)", text)
        if found:
            return int(found[0])
    raise ValueError(
        f"cannot tell the layer of run {name or meta.get('hook')!r}: give metadata['layer'] "
        "or a hook name with a layer number"
    )


def node_distributions(graph: AttributionGraph, runs: Any) -> NodeDistributions:
    """Look up the distribution of every feature node by (layer, feature index).

    Parameters
    ----------
    graph : AttributionGraph
    runs : FeatureDistributions, mapping of name to FeatureDistributions, or a sequence of them
        Collection runs (for example ``load_run(dir)``); each covers one layer (from
        :func:`run_layer`). Two runs for one layer are an error.

    Returns
    -------
    NodeDistributions
    """
    by_layer: dict[int, Any] = {}
    for name, fd in _iter_runs(runs):
        layer = run_layer(fd, name)
        if layer in by_layer:
            raise ValueError(f"runs: two runs for layer {layer}")
        by_layer[layer] = fd
    nodes: list[int] = []
    parts: list[tuple[Any, Any]] = []
    missing: list[int] = []
    position: dict[int, dict[int, int]] = {}
    for i, kind in enumerate(graph.kinds):
        if kind != "feature":
            continue
        layer, feat = int(graph.layers[i]), int(graph.feature_index[i])
        fd = by_layer.get(layer)
        if fd is None or feat < 0:
            missing.append(i)
            continue
        if layer not in position:
            position[layer] = {int(f): j for j, f in enumerate(fd.feature_ids)}
        j = position[layer].get(feat)
        if j is None:
            missing.append(i)
            continue
        pts, w = fd.cloud(j)
        if len(pts) == 0:
            missing.append(i)
            continue
        nodes.append(i)
        parts.append((pts, w))
    if not nodes:
        feat_layers = sorted(
            {int(graph.layers[i]) for i, k in enumerate(graph.kinds) if k == "feature"}
        )
        raise ValueError(
            "no feature node of the graph has a distribution in the given runs "
            f"(run layers {sorted(by_layer)}, graph feature layers {feat_layers})"
        )
    return NodeDistributions(np.array(nodes, np.int64), PointClouds.from_list(parts), missing)


def _iter_runs(runs: Any) -> list[tuple[str, Any]]:
    if hasattr(runs, "to_clouds"):
        return [("", runs)]
    if isinstance(runs, Mapping):
        return [(str(k), v) for k, v in runs.items()]
    if isinstance(runs, Sequence):
        out: list[tuple[str, Any]] = []
        for r in runs:
            out.extend(_iter_runs(r))
        return out
    raise TypeError(
        f"runs: expected FeatureDistributions or a mapping/list of them, got {type(runs)}"
    )


def semantic_distances(
    nd: NodeDistributions,
    *,
    distance: Distance | None = None,
    n_projections: int = 128,
    reg: float | None = None,
    seed: int = 0,
    n_threads: int | None = None,
    metric: Distance | None = None,
) -> F64:
    """Square matrix of distances between the nodes' distributions (order of ``nd.nodes``).

    ``distance="sliced"`` (default): exact sliced W2; ``"sinkhorn"``: debiased Sinkhorn
    divergence with ``reg`` (default: 5 % of the median squared distance between support
    points). ``metric`` is the deprecated alias of ``distance``.
    """
    chosen = check_distance(distance, metric, default="sliced")
    if chosen == "centroid":
        cond = centroid_pdist(nd.clouds)
    elif chosen == "sliced":
        cond = sliced_wasserstein_pdist(
            nd.clouds, n_projections=n_projections, seed=seed, n_threads=n_threads
        )
    else:
        r = reg if reg is not None else default_reg(nd.clouds, nd.clouds, seed)
        cond = np.asarray(sinkhorn_pdist(nd.clouds, reg=r, debiased=True, n_threads=n_threads))
    return _square(np.asarray(cond, np.float64), len(nd.nodes))


def _square(cond: F64, n: int) -> F64:
    out = np.zeros((n, n))
    iu = np.triu_indices(n, 1)
    out[iu] = cond
    out.T[iu] = cond
    return out


def profile_distances(graph: AttributionGraph, nodes: Sequence[int] | I64) -> F64:
    """``1 - cosine`` between the nodes' attribution profiles (square, order of ``nodes``).

    A node's profile is its row of absolute incoming weights (normalised to sum 1) followed by
    its column of absolute outgoing weights (normalised to sum 1): two nodes that read from the
    same nodes and write to the same nodes are close. A node with no links is at distance 1
    from everything.
    """
    idx = np.asarray(nodes, np.int64)
    a = abs(graph.adjacency()).tocsr()
    incoming = a[idx].toarray()
    outgoing = a.T.tocsr()[idx].toarray()

    def unit(x: F64) -> F64:
        s = x.sum(1, keepdims=True)
        x = np.divide(x, s, out=np.zeros_like(x), where=s > 0)
        n = np.linalg.norm(x, axis=1, keepdims=True)
        out: F64 = np.divide(x, n, out=np.zeros_like(x), where=n > 0)
        return out

    prof = np.concatenate([unit(incoming), unit(outgoing)], axis=1) / math.sqrt(2.0)
    sim = np.clip(prof @ prof.T, 0.0, 1.0)
    d: F64 = 1.0 - sim
    np.fill_diagonal(d, 0.0)
    return d


def _allowed(
    graph: AttributionGraph,
    nodes: I64,
    same_position: bool,
    layer_window: int | None,
    connected: bool,
) -> npt.NDArray[np.bool_]:
    n = len(nodes)
    ok = ~np.eye(n, dtype=bool)
    if same_position:
        p = graph.positions[nodes]
        ok &= p[:, None] == p[None, :]
    if layer_window is not None:
        lay = graph.layers[nodes]
        ok &= np.abs(lay[:, None] - lay[None, :]) <= layer_window
    if connected:
        # Only pairs joined by a link: Kruskal then grows groups that are connected subgraphs.
        where = {int(v): k for k, v in enumerate(nodes)}
        link = np.zeros((n, n), bool)
        for s, t in zip(graph.src, graph.dst, strict=True):
            if int(s) in where and int(t) in where:
                link[where[int(s)], where[int(t)]] = link[where[int(t)], where[int(s)]] = True
        ok &= link
    return ok


@dataclass
class Grouping:
    """Result of :func:`group_nodes`."""

    labels: I64  # per graph node, canonical 0..k-1
    eligible: I64  # graph node indices that could merge
    cut: dict[str, Any]  # how the cut was chosen (threshold, n_groups, silhouette)


def group_nodes(
    graph: AttributionGraph,
    distances: F64,
    nodes: Sequence[int] | I64,
    *,
    threshold: float | None = None,
    target_ratio: float | None = None,
    auto: bool = False,
    linkage: Linkage = "single",
    same_position: bool = False,
    layer_window: int | None = None,
    connected: bool = False,
) -> Grouping:
    """Merge the given nodes by a square distance matrix; every other node stays alone.

    Parameters
    ----------
    graph : AttributionGraph
    distances : ndarray, shape (len(nodes), len(nodes))
        Symmetric distances among ``nodes`` (graph node indices, feature nodes only).
    threshold, target_ratio, auto
        Exactly one: merge every allowed pair up to ``threshold``; or cut to
        ``round(target_ratio * graph.n_nodes)`` groups in total (non-mergeable nodes count as
        one group each); or pick the cut with the best silhouette among up to 40 cuts.
    linkage : {"single", "average"}
        ``"single"``: Kruskal union-find over the allowed pairs (constraints exact).
        ``"average"``: scipy average linkage; pairs that a constraint forbids get a distance
        above every allowed one, so they merge only after everything else (a threshold cut
        below that never joins them; a count cut may when it has to).
    same_position, layer_window, connected
        Constraints on the pairs that may merge: same token position; layers at most
        ``layer_window`` apart; joined by a link of the graph.
    """
    idx = np.asarray(nodes, np.int64)
    n = len(idx)
    d = np.asarray(distances, np.float64)
    if d.shape != (n, n):
        raise ValueError(f"distances: expected shape {(n, n)}, got {d.shape}")
    if not np.isfinite(d).all():
        r, c = np.argwhere(~np.isfinite(d))[0]
        raise ValueError(f"distances: entry ({r}, {c}) is not finite")
    bad = [int(i) for i in idx if graph.kinds[int(i)] != "feature"]
    if bad:
        raise ValueError(f"nodes: node {bad[0]} ({graph.node_ids[bad[0]]}) is not a feature node")
    chosen = [x is not None and x is not False for x in (threshold, target_ratio, auto or None)]
    if sum(chosen) != 1:
        raise ValueError("give exactly one of threshold, target_ratio, auto")
    check_choice(linkage, "linkage", ("single", "average"))
    check_optional_positive_int(layer_window, "layer_window", minimum=0)
    ok = _allowed(graph, idx, same_position, layer_window, connected)
    n_fixed = graph.n_nodes - n

    cut: dict[str, Any] = {"linkage": linkage}
    if n < 2:
        local = np.zeros(n, np.int64)
    else:
        tree_cut = _tree(d, ok, linkage)
        if threshold is not None:
            if not np.isfinite(threshold):
                raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
            local = tree_cut(threshold=float(threshold))
            cut["threshold"] = float(threshold)
        elif target_ratio is not None:
            if check_positive_float(target_ratio, "target_ratio") > 1.0:
                raise ValueError(f"target_ratio: expected a number in (0, 1], got {target_ratio!r}")
            want = max(1, round(target_ratio * graph.n_nodes) - n_fixed)
            if round(target_ratio * graph.n_nodes) <= n_fixed:
                warnings.warn(
                    f"target_ratio {target_ratio}: the graph has {n_fixed} nodes that never "
                    "merge; merging the mergeable ones as far as allowed",
                    SemotWarning,
                    stacklevel=2,
                )
            local = tree_cut(k=min(want, n))
            cut["target_ratio"] = float(target_ratio)
        else:
            best: tuple[float, I64, int] | None = None
            for k in _candidate_ks(n):
                lab = tree_cut(k=k)
                s = silhouette(d, lab)
                if best is None or s > best[0]:
                    best = (s, lab, k)
            assert best is not None
            local = best[1]
            cut["silhouette"], cut["auto_k"] = best[0], best[2]
    labels = np.empty(graph.n_nodes, np.int64)
    others = np.setdiff1d(np.arange(graph.n_nodes), idx)
    labels[idx] = local
    labels[others] = (local.max() + 1 if n else 0) + np.arange(len(others))
    labels = canonical_labels(labels)
    cut["n_groups"] = int(labels.max()) + 1
    return Grouping(labels, idx, cut)


def _candidate_ks(n: int) -> list[int]:
    ks = np.unique(np.round(np.geomspace(2, max(2, n - 1), 40)).astype(int))
    return [int(k) for k in ks if 2 <= k < n] or [1]


def _tree(d: F64, ok: npt.NDArray[np.bool_], linkage: str) -> Any:
    n = d.shape[0]
    if linkage == "single":
        iu = np.triu_indices(n, 1)
        keep = ok[iu]
        pairs = np.stack([iu[0][keep], iu[1][keep]], 1)
        tree = single_linkage(n, pairs, d[iu][keep]) if len(pairs) else None

        def cut_single(*, threshold: float | None = None, k: int | None = None) -> I64:
            if tree is None:
                return np.arange(n, dtype=np.int64)
            if threshold is not None:
                return tree.labels_at(threshold)
            return tree.labels_for(max(1, int(k or 1)))

        return cut_single
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import squareform

    big = (float(d.max()) + 1.0) * 10.0
    dd = np.where(ok, d, big)
    np.fill_diagonal(dd, 0.0)
    z = scipy_linkage(squareform(dd, checks=False), method="average")

    def cut_average(*, threshold: float | None = None, k: int | None = None) -> I64:
        if threshold is not None:
            lab = fcluster(z, threshold, criterion="distance")
        else:
            lab = fcluster(z, max(1, int(k or 1)), criterion="maxclust")
        return canonical_labels(np.asarray(lab, np.int64))

    return cut_average


_WORD = re.compile(r"[A-Za-z0-9_']+|[^\sA-Za-z0-9_']")
_STOP = {"the", "a", "an", "of", "in", "to", "and", "or", "is", "on", "for", "with", "at"}


def supernode_names(
    graph: AttributionGraph,
    labels: I64,
    *,
    context_tokens: Mapping[int, Sequence[str]] | None = None,
) -> list[str]:
    """Name every group from its members' clerps, else from their contexts' tokens.

    With clerps: the clerp all members share, else the (up to) three most frequent words of
    their clerps. Without: the most frequent tokens of ``context_tokens[node]`` (for example
    the tokens around each sampled position of the feature), else the prompt tokens at the
    members' positions. Each label ends with the members' layer range; a label is never a
    node key of the graph.
    """
    keys = set(graph.keys) | set(graph.node_ids)
    names = []
    for g in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == g)
        clerps = [graph.clerps[i].strip() for i in members if graph.clerps[i].strip()]
        if clerps:
            uniq = list(dict.fromkeys(clerps))
            base = uniq[0] if len(uniq) == 1 else _top_words(clerps)
        else:
            toks: list[str] = []
            for i in members:
                if context_tokens is not None and int(i) in context_tokens:
                    toks.extend(context_tokens[int(i)])
                elif 0 <= graph.positions[i] < len(graph.prompt_tokens):
                    toks.append(graph.prompt_tokens[int(graph.positions[i])])
            base = " / ".join(t for t, _ in Counter(toks).most_common(3)) or f"group {g}"
        lay = graph.layers[members]
        span = f"L{lay.min()}" if lay.min() == lay.max() else f"L{lay.min()}-{lay.max()}"
        name = f"{base} ({span})" if len(members) > 1 else base
        names.append(name if name not in keys else f"{name} [supernode]")
    return names


def _top_words(texts: Sequence[str]) -> str:
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update({w for w in _WORD.findall(t) if w.lower() not in _STOP and w.strip()})
    return " / ".join(w for w, _ in counts.most_common(3)) or texts[0]


@dataclass
class CompressionResult:
    """Supernodes of a graph, the graph with them filled in, the compressed graph, metrics."""

    labels: I64
    names: list[str]
    graph: AttributionGraph  # the input with qParams.supernodes / pinnedIds filled
    compressed: AttributionGraph
    report: dict[str, Any]
    cut: dict[str, Any]
    method: str
    missing: list[int] = field(default_factory=list)


def compress(
    graph: AttributionGraph,
    distributions: Any = None,
    *,
    threshold: float | None = None,
    target_ratio: float | None = None,
    auto: bool = False,
    distance: Distance | None = None,
    graph_weight: float | None = None,
    linkage: Linkage = "single",
    same_position: bool = False,
    layer_window: int | None = None,
    connected: bool = False,
    n_projections: int = 128,
    reg: float | None = None,
    seed: int = 0,
    n_threads: int | None = None,
    context_tokens: Mapping[int, Sequence[str]] | None = None,
    metric: Distance | None = None,
) -> CompressionResult:
    """Group a graph's feature nodes into supernodes and compress the graph.

    Parameters
    ----------
    graph : AttributionGraph
    distributions : runs of FeatureDistributions, optional
        Collection runs covering the graph's feature layers (see :func:`node_distributions`).
        None: graph-only grouping by attribution profiles (:func:`profile_distances`).
    threshold, target_ratio, auto
        The cut; exactly one (see :func:`group_nodes`). Thresholds are in the units of the
        distance used: sliced W2, or ``1 - cosine`` for the graph distance, or the mix below.
    distance : {"sliced", "sinkhorn"}, optional
        Semantic distance (default ``"sliced"``); ``metric`` is its deprecated alias (in POT,
        ``metric`` names the ground cost).
    graph_weight : float in [0, 1], optional
        With distributions: the distance is ``(1 - w) * semantic / median(semantic) +
        w * graph / median(graph)`` (each term scaled to median 1). Default 0.
    linkage, same_position, layer_window, connected
        See :func:`group_nodes`.

    Returns
    -------
    CompressionResult
        ``labels`` (per node), ``names`` (per group), the input graph with
        ``qParams.supernodes`` filled, the compressed graph, and the metrics of
        :func:`semot.circuits.graph.graph_report` (with agreement against the graph's hand-made
        supernodes when it has some).
    """
    chosen = check_distance(distance, metric, default="sliced")
    missing: list[int] = []
    if distributions is None:
        if graph_weight not in (None, 1.0):
            raise ValueError("graph_weight: needs distributions")
        nodes = np.array([i for i, k in enumerate(graph.kinds) if k == "feature"], np.int64)
        d = profile_distances(graph, nodes)
        method = "graph profiles"
    else:
        nd = node_distributions(graph, distributions)
        missing = nd.missing
        if missing:
            warnings.warn(
                f"{len(missing)} feature node(s) have no distribution and stay unmerged "
                f"(first: {graph.node_ids[missing[0]]})",
                SemotWarning,
                stacklevel=2,
            )
        nodes = nd.nodes
        d = semantic_distances(
            nd, distance=chosen, n_projections=n_projections, reg=reg, seed=seed,
            n_threads=n_threads,
        )  # fmt: skip
        method = f"semantic ({chosen})"
        w = 0.0 if graph_weight is None else float(graph_weight)
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"graph_weight: expected a number in [0, 1], got {graph_weight!r}")
        if w > 0:
            g = profile_distances(graph, nodes)
            d = (1 - w) * d / _median_off_diag(d) + w * g / _median_off_diag(g)
            method += f" + {w:g} x graph profiles"
    grouping = group_nodes(
        graph, d, nodes, threshold=threshold, target_ratio=target_ratio, auto=auto,
        linkage=linkage, same_position=same_position, layer_window=layer_window,
        connected=connected,
    )  # fmt: skip
    labels = grouping.labels
    names = supernode_names(graph, labels, context_tokens=context_tokens)
    hand = graph.hand_supernodes()
    hand_labels = graph.labels_from_supernodes(hand) if hand else None
    report = graph_report(graph, labels, hand=hand_labels)
    report["method"] = method
    report["cut"] = grouping.cut
    report["n_missing_distributions"] = len(missing)
    if len(nodes) > 1:
        report["coherence"] = coherence(labels[nodes], d)
    return CompressionResult(
        labels=labels,
        names=names,
        graph=graph.with_supernodes(labels, names),
        compressed=graph.compressed(labels, names),
        report=report,
        cut=grouping.cut,
        method=method,
        missing=missing,
    )


def _median_off_diag(d: F64) -> float:
    iu = np.triu_indices(d.shape[0], 1)
    m = float(np.median(d[iu])) if len(iu[0]) else 1.0
    return m if m > 0 else 1.0


def compression_summary(result: CompressionResult) -> str:
    """Describe in a few lines what a compression did.

    Parameters
    ----------
    result : CompressionResult
        What :func:`compress` returned.

    Returns
    -------
    str
        The method, nodes -> groups, compression ratio and cut; the ``|weight|`` split inside
        and across groups; the input influence kept; the agreement with hand-made supernodes
        when the graph has some; the number of feature nodes without a distribution.
    """
    r = result.report
    n_nodes = len(result.labels)
    n_groups = int(result.labels.max()) + 1
    lines = [
        f"{result.method}: {n_nodes} nodes -> {n_groups} groups "
        f"(compression ratio {r.get('compression_ratio', n_groups / n_nodes):.3f}; "
        f"cut {result.cut})"
    ]
    split = r.get("edge_weight") or r.get("edge_weight_split")
    if isinstance(split, dict):
        lines.append(
            "  |edge weight| inside supernodes "
            + ", ".join(f"{k} {v:.3f}" for k, v in split.items() if isinstance(v, float))
        )
    infl = r.get("influence") or r.get("influence_preserved")
    if isinstance(infl, dict):
        lines.append(
            "  input influence on the target logit: "
            + ", ".join(f"{k} {v:.3f}" for k, v in infl.items() if isinstance(v, float))
        )
    agree = r.get("agreement")
    if isinstance(agree, dict):
        lines.append(
            "  vs hand-made supernodes: "
            + ", ".join(
                f"{'ARI' if k == 'ari' else k} {v:.3f}"
                for k, v in agree.items()
                if isinstance(v, float)
            )
        )
    if result.missing:
        lines.append(f"  {len(result.missing)} feature node(s) had no distribution (left unmerged)")
    return "\n".join(lines)
