"""Attribution graphs (circuit-tracer / Neuronpedia JSON): the :class:`AttributionGraph` class.

:class:`AttributionGraph` reads and writes the JSON that circuit-tracer writes and that
Neuronpedia and Anthropic's attribution-graph frontend read (validation and parsing are in
:mod:`semot.circuits.graph_format`). The parsed JSON is kept as it is, so unknown fields survive
a round trip; the arrays next to it (kinds, numeric layers, positions, links as index arrays)
are what grouping methods work on.

Supernodes come in and go out as viewers expect them: :meth:`AttributionGraph.hand_supernodes`
resolves the hand-made groups in ``qParams.supernodes``, :meth:`AttributionGraph.with_supernodes`
writes a grouping back (members also pinned, at most 200 pins), and
:meth:`AttributionGraph.compressed` builds the graph with one node per group, in the same
format. Metrics of a grouping are in :mod:`semot.circuits.metrics` and
:mod:`semot.grouping.metrics`.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from semot._utils.atomic import atomic_write_text
from semot._utils.jsondepth import object_depth_problem
from semot.circuits.graph_format import (
    EMPTY_QPARAMS,
    MAX_PINS,
    NodeKind,
    is_number,
    parse_graph,
    prompt_tokens_of,
    read_graph_json,
)
from semot.errors import GraphFormatError
from semot.grouping.metrics import canonical_labels, group_members

__all__ = ["AttributionGraph"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(eq=False)
class AttributionGraph:
    """An attribution graph: the parsed JSON plus per-node and per-link arrays.

    Build one with :meth:`load` or :meth:`from_dict`; both validate the input and raise
    :class:`GraphFormatError` for what the format forbids while accepting what real files are
    known to vary on (``layer`` as int or string, ``feature`` null, ``clerp``, ``influence`` or
    ``activation`` missing, ``is_target_logit`` missing).

    Attributes
    ----------
    raw : dict
        The parsed JSON, untouched, so unknown fields survive :meth:`to_dict` and :meth:`save`.
    node_ids : list of str
        ``node_id`` of each node, in file order. Node indices everywhere are positions in this
        list.
    keys : list of str
        Viewer key of each node: ``jsNodeId`` for the scans in
        :data:`~semot.circuits.graph_format.ANTHROPIC_SCANS`, else ``node_id``.
        ``qParams.pinnedIds`` and ``qParams.supernodes`` use these keys.
    kinds : list of {"feature", "error", "embedding", "logit"}
        From ``feature_type``: containing ``"error"`` gives ``"error"``, ``"embedding"`` and
        ``"logit"`` give themselves, anything else (``"cross layer transcoder"``,
        ``"unexplored node"``, ``"lorsa"``...) gives ``"feature"``.
    layers : numpy.ndarray of int64, shape (n_nodes,)
        Numeric layer: -1 for embeddings, one more than the highest non-logit layer for logits
        (as viewers place them), else ``int(layer)``.
    positions : numpy.ndarray of int64, shape (n_nodes,)
        ``ctx_idx``, the token position.
    feature_index : numpy.ndarray of int64, shape (n_nodes,)
        For feature nodes, the transcoder feature index taken from the middle of a
        ``<layer>_<index>_<pos>`` ``node_id`` (also ``<layer>_cro_<index>_<pos>``) whose layer
        and position agree with the node's; -1 for other nodes or other id forms. In Haiku
        files this is Anthropic's opaque global feature id.
    clerps : list of str
        ``clerp`` of each node (``""`` when missing) with a leaked supernode label removed:
        for a member of hand-made group ``L``, ``"[L]"`` becomes ``"L"`` and a leading
        ``"[L] "`` is dropped.
    src, dst : numpy.ndarray of int64, shape (n_links,)
        Source and target node index of each link, in file order.
    weight : numpy.ndarray of float64, shape (n_links,)
        Link weight (direct attribution of source on target; may be negative).
    warnings : list of str
        Non-fatal findings: unresolved supernode members, pins that name no node, node-id
        collisions and how links on them were assigned, and so on.

    Notes
    -----
    Two graphs do not compare equal with ``==`` (the arrays make element-wise equality
    ambiguous); compare ``a.to_dict() == b.to_dict()``.
    """

    raw: dict[str, Any] = field(repr=False)
    node_ids: list[str] = field(repr=False)
    keys: list[str] = field(repr=False)
    kinds: list[NodeKind] = field(repr=False)
    layers: IntArray = field(repr=False)
    positions: IntArray = field(repr=False)
    feature_index: IntArray = field(repr=False)
    clerps: list[str] = field(repr=False)
    src: IntArray = field(repr=False)
    dst: IntArray = field(repr=False)
    weight: FloatArray = field(repr=False)
    warnings: list[str] = field(default_factory=list, repr=False)
    _hand: list[tuple[str, list[int]]] = field(default_factory=list, init=False, repr=False)

    def __repr__(self) -> str:
        return (
            f"AttributionGraph(slug={self.slug!r}, scan={self.scan!r}, "
            f"n_nodes={self.n_nodes}, n_links={self.n_links}, "
            f"n_supernodes={len(self._hand)}, n_warnings={len(self.warnings)})"
        )

    # ------------------------------------------------------------------ reading and writing

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AttributionGraph:
        """Read and validate an attribution-graph JSON file.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.json`` file (pretty-printed or compact, UTF-8, a BOM is tolerated).

        Returns
        -------
        AttributionGraph
            The graph; ``raw`` is the parsed JSON.

        Raises
        ------
        GraphFormatError
            For malformed JSON (with line and column), a missing top-level key, a node without
            ``node_id``, ``feature_type``, ``layer`` or ``ctx_idx``, a duplicate ``node_id``
            (except circuit-tracer's error/feature id collision, which is resolved and reported
            in ``warnings``), a link that names a node that does not exist, a non-finite or
            non-numeric weight, or a self-link. The message starts with the path and names
            the node or link.
        OSError
            When the file cannot be read.
        """
        p = Path(path)
        data, notes = read_graph_json(p)
        graph = cls._build(data, where=f"{p}: ")
        graph.warnings.extend(notes)
        return graph

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttributionGraph:
        """Validate a parsed attribution graph (a deep copy of ``data`` is kept).

        Parameters
        ----------
        data : dict
            The JSON object, as ``json.load`` returns it.

        Returns
        -------
        AttributionGraph
            The graph.

        Raises
        ------
        GraphFormatError
            As :meth:`load`, without the line/column case (the nesting depth is checked
            before the copy).
        """
        deep = object_depth_problem(data)
        if deep is not None:
            raise GraphFormatError(deep)
        return cls._build(copy.deepcopy(data), where="")

    @classmethod
    def _build(cls, data: Any, where: str) -> AttributionGraph:
        parsed = parse_graph(data, where)
        graph = cls(
            raw=data,
            node_ids=parsed.node_ids,
            keys=parsed.keys,
            kinds=parsed.kinds,
            layers=parsed.layers,
            positions=parsed.positions,
            feature_index=parsed.feature_index,
            clerps=parsed.clerps,
            src=parsed.src,
            dst=parsed.dst,
            weight=parsed.weight,
            warnings=parsed.notes,
        )
        graph._hand = parsed.hand
        return graph

    def to_dict(self) -> dict[str, Any]:
        """Return the graph as a JSON-ready dict (a deep copy of :attr:`raw`).

        Returns
        -------
        dict
            Equal to the JSON that was loaded, for a graph built by :meth:`load` or
            :meth:`from_dict`; with the changes for one made by :meth:`with_supernodes` or
            :meth:`compressed`.
        """
        return copy.deepcopy(self.raw)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the graph as UTF-8 JSON with indent 2, atomically.

        The JSON goes to a temporary file next to ``path`` that then replaces ``path``, so a
        reader never sees half a file and a failed write leaves an existing file intact.

        Parameters
        ----------
        path : str or os.PathLike
            Destination file.
        """
        text = json.dumps(self.raw, indent=2, ensure_ascii=False) + "\n"
        atomic_write_text(path, text)

    # ------------------------------------------------------------------ plain accessors

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.node_ids)

    @property
    def n_links(self) -> int:
        """Number of links."""
        return int(self.src.shape[0])

    @property
    def prompt_tokens(self) -> list[str]:
        """``metadata.prompt_tokens`` (empty when missing)."""
        return prompt_tokens_of(self.raw["metadata"])

    @property
    def scan(self) -> str:
        """``metadata.scan`` (empty when missing)."""
        scan = self.raw["metadata"].get("scan")
        return scan if isinstance(scan, str) else ""

    @property
    def slug(self) -> str:
        """``metadata.slug`` (empty when missing)."""
        slug = self.raw["metadata"].get("slug")
        return slug if isinstance(slug, str) else ""

    def target_logit(self) -> int:
        """Return the node index of the target logit.

        The first node with ``is_target_logit`` true; when none is flagged (as in
        ``calc-36-plus-59``), the logit node with the highest ``token_prob``.

        Returns
        -------
        int
            Node index.

        Raises
        ------
        GraphFormatError
            When nothing is flagged and the graph has no logit node.
        """
        nodes = self.raw["nodes"]
        for i, node in enumerate(nodes):
            if node.get("is_target_logit") is True:
                return i
        best, best_p = -1, -math.inf
        for i, kind in enumerate(self.kinds):
            if kind == "logit":
                p = nodes[i].get("token_prob")
                p = float(p) if is_number(p) and math.isfinite(float(p)) else 0.0
                if p > best_p:
                    best, best_p = i, p
        if best < 0:
            raise GraphFormatError("the graph has no logit node, so no target logit")
        return best

    def adjacency(self) -> sp.csr_matrix:
        """Return the weighted adjacency matrix in circuit-tracer's orientation.

        Returns
        -------
        scipy.sparse.csr_matrix of float64, shape (n_nodes, n_nodes)
            ``A[target, source] = weight``; repeated (source, target) links are summed.
        """
        n = self.n_nodes
        return sp.csr_matrix((self.weight, (self.dst, self.src)), shape=(n, n), dtype=np.float64)

    # ------------------------------------------------------------------ supernodes

    def hand_supernodes(self) -> list[tuple[str, list[int]]]:
        """Return the hand-made supernodes of ``qParams.supernodes`` as node indices.

        Each member is looked up among the ``node_id`` values first, then among the
        ``jsNodeId`` values (Haiku files use ``jsNodeId``, Gemma files ``node_id``). Members
        that match neither are dropped and reported in :attr:`warnings`, as are groups left
        empty (dropped too), members that are not pinned (viewers would drop them) and nodes
        listed in two groups.

        Returns
        -------
        list of (str, list of int)
            ``(label, member node indices)`` per group, in file order; labels may repeat.
        """
        return [(label, list(members)) for label, members in self._hand]

    def labels_from_supernodes(
        self, groups: Sequence[tuple[str, Sequence[int]]] | Sequence[Sequence[int]]
    ) -> IntArray:
        """Turn a list of groups into one label per node.

        Parameters
        ----------
        groups : sequence of (label, members) or sequence of members
            As :meth:`hand_supernodes` returns, or plain lists of node indices.

        Returns
        -------
        numpy.ndarray of int64, shape (n_nodes,)
            Group id per node. Nodes in no group get their own singleton id; a node in two
            groups goes to the later one (as viewers do). Ids are canonical: ``0..k-1`` in
            order of first appearance over nodes ``0..n-1``.

        Raises
        ------
        ValueError
            When a member is not a node index.
        """
        n = self.n_nodes
        raw = np.full(n, -1, np.int64)
        for g, group in enumerate(groups):
            members = (
                group[1]
                if isinstance(group, tuple) and len(group) == 2 and isinstance(group[0], str)
                else group
            )
            idx = np.asarray(list(members), dtype=np.int64).reshape(-1)  # type: ignore[arg-type]
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"groups[{g}]: member index outside 0..{n - 1}")
            raw[idx] = g
        free = raw < 0
        raw[free] = len(groups) + np.arange(int(free.sum()))
        return canonical_labels(raw)

    def _check_grouping(self, labels: Any, names: Sequence[str]) -> IntArray:
        lab = np.asarray(labels)
        if lab.dtype.kind not in "iu":
            raise TypeError(f"labels: expected an integer array, got dtype {lab.dtype}")
        lab = lab.astype(np.int64).reshape(-1)
        if lab.shape[0] != self.n_nodes:
            raise ValueError(f"labels: expected {self.n_nodes} labels, got {lab.shape[0]}")
        if lab.size and lab.min() < 0:
            raise ValueError("labels: group ids must be >= 0 (names[g] labels group g)")
        if lab.size and lab.max() >= len(names):
            raise ValueError(f"names: {len(names)} names for group ids up to {int(lab.max())}")
        return lab

    def with_supernodes(self, labels: Any, names: Sequence[str]) -> AttributionGraph:
        """Return a copy whose ``qParams`` shows a grouping as supernodes in the viewers.

        ``qParams.supernodes`` becomes ``[[name, key, key, ...], ...]`` for every group with
        two or more members (members in node order, keys in the scan's convention, see
        :attr:`keys`). Every member key is also pinned, since viewers only group pinned
        nodes: the existing ``pinnedIds`` stay first, then whole groups are added from the
        largest down while the total stays within
        :data:`~semot.circuits.graph_format.MAX_PINS`; a group that does not fit is skipped
        (and reported in :attr:`warnings`), smaller ones may still fit. Nodes, links, metadata
        and the rest of ``qParams`` are unchanged.

        Parameters
        ----------
        labels : array_like of int, shape (n_nodes,)
            Group id per node, ``>= 0``.
        names : sequence of str
            ``names[g]`` labels group ``g``. An empty name becomes ``"group <g>"``, and one
            equal to a node key gets ``" (group <g>)"`` appended, because viewers would
            otherwise rename it.

        Returns
        -------
        AttributionGraph
            The new graph; its :meth:`hand_supernodes` are the groups written.
        """
        lab = self._check_grouping(labels, names)
        key_set = set(self.keys) | set(self.node_ids)
        groups: list[tuple[int, str, list[str]]] = []
        for g, members in group_members(lab).items():
            if len(members) < 2:
                continue
            name = str(names[g]).strip() or f"group {g}"
            if name in key_set:
                name = f"{name} (group {g})"
            groups.append((g, name, [self.keys[i] for i in members]))
        data = copy.deepcopy(self.raw)
        q = data["qParams"]
        q["supernodes"] = [[name, *ks] for _, name, ks in groups]
        old = q.get("pinnedIds")
        pins: list[Any] = list(old) if isinstance(old, list) else []
        have = {p for p in pins if isinstance(p, str)}
        dropped: list[str] = []
        # Largest groups first; ties in group-id order (sort is stable).
        for _, name, ks in sorted(groups, key=lambda t: -len(t[2])):
            new = [k for k in dict.fromkeys(ks) if k not in have]
            if len(pins) + len(new) > MAX_PINS:
                if new:
                    dropped.append(f"{name!r} ({len(new)} members)")
                continue
            pins.extend(new)
            have.update(new)
        q["pinnedIds"] = pins
        out = type(self)._build(data, where="")
        if dropped:
            out.warnings.append(
                f"not pinned, {MAX_PINS}-pin limit reached: {', '.join(dropped)}; viewers will "
                "not show these supernodes"
            )
        return out

    def compressed(self, labels: Any, names: Sequence[str]) -> AttributionGraph:
        """Return the compressed graph, one node per group, in the same JSON format.

        Group ``g`` becomes node ``"sn_<g>"`` (also its ``jsNodeId``) with ``clerp`` =
        ``names[g]`` (``"sn_<g>"`` when empty) and ``semot_members`` = the members'
        ``node_id`` values. Its ``feature_type`` is the members' when they all share one,
        else ``"cross layer transcoder"``; ``layer`` is ``"E"`` for an all-embedding group,
        the first member's stored layer for an all-logit group, else the mean numeric layer
        rounded half up; ``ctx_idx`` is the mean position rounded half up. ``token_prob`` is
        the members' sum, ``is_target_logit`` is set on the group holding
        :meth:`target_logit`, ``influence`` is the members' smallest (circuit-tracer's
        cumulative score: the group stays when any member would), ``activation`` is null and
        ``feature`` is the member's for singletons, else null.

        Links are summed per (source group, target group); links inside a group are dropped.
        ``metadata`` is copied with ``"-compressed"`` appended to ``slug``; ``qParams`` is
        circuit-tracer's empty default. Other top-level keys (``qk_only_nodes``) are not
        carried over, because they refer to the original nodes.

        Parameters
        ----------
        labels : array_like of int, shape (n_nodes,)
            Group id per node, ``>= 0``; unused ids produce no node.
        names : sequence of str
            ``names[g]`` is the label of group ``g``.

        Returns
        -------
        AttributionGraph
            The compressed graph (loads back with :meth:`load` after :meth:`save`).
        """
        lab = self._check_grouping(labels, names)
        nodes = self.raw["nodes"]
        try:
            target = self.target_logit()
        except GraphFormatError:
            target = -1
        new_nodes: list[dict[str, Any]] = []
        for g, members in group_members(lab).items():
            types = {nodes[i]["feature_type"] for i in members}
            ftype = types.pop() if len(types) == 1 else "cross layer transcoder"
            kinds = {self.kinds[i] for i in members}
            if kinds == {"embedding"}:
                layer: str = "E"
            elif kinds == {"logit"}:
                layer = str(nodes[members[0]]["layer"])
            else:
                layer = str(_round_half_up(float(np.mean(self.layers[members]))))
            probs = [nodes[i].get("token_prob") for i in members]
            infl = [float(v) for i in members if is_number(v := nodes[i].get("influence"))]
            node_id = f"sn_{g}"
            new_nodes.append(
                {
                    "node_id": node_id,
                    "feature": nodes[members[0]].get("feature") if len(members) == 1 else None,
                    "layer": layer,
                    "ctx_idx": _round_half_up(float(np.mean(self.positions[members]))),
                    "feature_type": ftype,
                    "token_prob": float(sum(float(p) for p in probs if is_number(p))),
                    "is_target_logit": target in members,
                    "run_idx": 0,
                    "reverse_ctx_idx": 0,
                    "jsNodeId": node_id,
                    "clerp": str(names[g]) or node_id,
                    "influence": min(infl) if infl else None,
                    "activation": None,
                    "semot_members": [self.node_ids[i] for i in members],
                }
            )
        gs, gd = lab[self.src], lab[self.dst]
        across = gs != gd
        sums: dict[tuple[int, int], float] = {}
        for s, d, w in zip(
            gs[across].tolist(), gd[across].tolist(), self.weight[across].tolist(), strict=True
        ):
            sums[(s, d)] = sums.get((s, d), 0.0) + w
        new_links = [
            {"source": f"sn_{s}", "target": f"sn_{d}", "weight": w}
            for (s, d), w in sorted(sums.items())
        ]
        meta = copy.deepcopy(self.raw["metadata"])
        meta["slug"] = f"{self.slug}-compressed"
        data = {
            "metadata": meta,
            "qParams": copy.deepcopy(EMPTY_QPARAMS),
            "nodes": new_nodes,
            "links": new_links,
        }
        return type(self)._build(data, where="")


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)
