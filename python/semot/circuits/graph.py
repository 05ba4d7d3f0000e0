"""Attribution graphs (circuit-tracer / Neuronpedia JSON) and metrics of a node grouping.

:class:`AttributionGraph` reads and writes the JSON that circuit-tracer writes and that
Neuronpedia and Anthropic's attribution-graph frontend read (the format and the quirks of real
files are described in ``shared/docs/graph-format.md``). The parsed JSON is kept as it is, so
unknown fields survive a round trip; the arrays next to it (kinds, numeric layers, positions,
links as index arrays) are what grouping methods work on.

Supernodes come in and go out as viewers expect them: :meth:`AttributionGraph.hand_supernodes`
resolves the hand-made groups in ``qParams.supernodes``, :meth:`AttributionGraph.with_supernodes`
writes a grouping back (members also pinned, at most 200 pins), and
:meth:`AttributionGraph.compressed` builds the graph with one node per group, in the same
format.

The metrics take one integer label per node (equal labels = same group): compression ratio,
share of link weight inside groups, input influence on the target logit before and after
compression, within- versus between-group distance, and agreement (adjusted Rand index,
pairwise precision/recall) with another grouping.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import re
import tempfile
import warnings as _warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components as _scc
from scipy.sparse.linalg import spsolve

from semot.errors import GraphFormatError

__all__ = [
    "ANTHROPIC_SCANS",
    "MAX_PINS",
    "AttributionGraph",
    "GraphFormatError",
    "NodeKind",
    "agreement",
    "coherence",
    "compression_ratio",
    "edge_weight_split",
    "graph_report",
    "influence_preserved",
    "input_influence",
    "node_influence",
]

NodeKind = Literal["feature", "error", "embedding", "logit"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Scans whose viewer key is ``jsNodeId`` (Neuronpedia's ``ANTHROPIC_MODELS``); every other
#: scan keys nodes by ``node_id``.
ANTHROPIC_SCANS: frozenset[str] = frozenset({"jackl-circuits-runs-1-4-sofa-v3_0"})

#: Both viewers read only this many ``qParams.pinnedIds``.
MAX_PINS = 200

_TOP_LEVEL = ("metadata", "qParams", "nodes", "links")

# circuit-tracer's `create_graph_files` writes exactly this qParams.
_EMPTY_QPARAMS: dict[str, Any] = {
    "pinnedIds": [],
    "supernodes": [],
    "linkType": "both",
    "clickedId": "",
    "sg_pos": "",
}

# `<layer>_<index>_<pos>` (circuit-tracer, Gemma, Haiku) or the lm-saes converter's
# `<layer>_cro_<index>_<pos>` / `<layer>_lor_<index>_<pos>`.
_FEATURE_ID = re.compile(r"^(-?\d+)_(?:(?:cro|lor)_)?(\d+)_(\d+)$")


def _is_number(x: Any) -> TypeGuard[numbers.Real]:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _as_int(x: Any) -> int | None:
    """Return ``x`` as an int when it is an int, an integral float or a decimal string."""
    if isinstance(x, bool):
        return None
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        v = float(x)
        return int(v) if math.isfinite(v) and v.is_integer() else None
    if isinstance(x, str):
        try:
            return int(x.strip())
        except ValueError:
            return None
    return None


def _kind_of(feature_type: str) -> NodeKind:
    # Viewers classify any type containing "error" as an error node ("lorsa error" too);
    # every unknown type ("unexplored node", "lorsa", bias leaves...) is drawn as a feature.
    if "error" in feature_type:
        return "error"
    if feature_type == "embedding":
        return "embedding"
    if feature_type == "logit":
        return "logit"
    return "feature"


def _node_name(i: int, node: Any) -> str:
    nid = node.get("node_id") if isinstance(node, dict) else None
    return f"node {i} ({nid!r})" if isinstance(nid, str) else f"node {i}"


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


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
        Viewer key of each node: ``jsNodeId`` for the scans in :data:`ANTHROPIC_SCANS`, else
        ``node_id``. ``qParams.pinnedIds`` and ``qParams.supernodes`` use these keys.
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
        blob = p.read_bytes()
        try:
            text = blob.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise GraphFormatError(f"{p}: not UTF-8 text (byte {e.start})") from None
        constants: list[str] = []

        def on_constant(name: str) -> float:
            constants.append(name)
            return float(name)

        try:
            data = json.loads(text, parse_constant=on_constant)
        except json.JSONDecodeError as e:
            raise GraphFormatError(
                f"{p}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
            ) from None
        graph = cls._build(data, where=f"{p}: ")
        if constants:
            graph.warnings.append(
                f"non-standard JSON constants {sorted(set(constants))} ({len(constants)} "
                "times); JavaScript viewers cannot parse them"
            )
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
            As :meth:`load`, without the line/column case.
        """
        return cls._build(copy.deepcopy(data), where="")

    @classmethod
    def _build(cls, data: Any, where: str) -> AttributionGraph:
        def fail(msg: str) -> GraphFormatError:
            return GraphFormatError(where + msg)

        if not isinstance(data, dict):
            raise fail(f"expected a JSON object at the top level, got {type(data).__name__}")
        missing = [k for k in _TOP_LEVEL if k not in data]
        if missing:
            raise fail(f"missing top-level key(s) {missing} (required: {list(_TOP_LEVEL)})")
        meta, qparams, nodes, links = (data[k] for k in _TOP_LEVEL)
        if not isinstance(meta, dict):
            raise fail(f"'metadata' must be an object, got {type(meta).__name__}")
        if not isinstance(qparams, dict):
            raise fail(f"'qParams' must be an object, got {type(qparams).__name__}")
        if not isinstance(nodes, list):
            raise fail(f"'nodes' must be an array, got {type(nodes).__name__}")
        if not isinstance(links, list):
            raise fail(f"'links' must be an array, got {type(links).__name__}")
        notes: list[str] = []
        scan = meta.get("scan")
        use_js = isinstance(scan, str) and scan in ANTHROPIC_SCANS

        n = len(nodes)
        node_ids: list[str] = []
        keys: list[str] = []
        js_ids: list[str] = []
        kinds: list[NodeKind] = []
        raw_layers: list[int] = []
        positions = np.zeros(n, np.int64)
        feat = np.full(n, -1, np.int64)
        clerps: list[str] = []
        for i, node in enumerate(nodes):
            if not isinstance(node, dict):
                raise fail(f"node {i}: expected an object, got {type(node).__name__}")
            nid = node.get("node_id")
            if not isinstance(nid, str):
                raise fail(f"node {i}: missing or non-string 'node_id' ({nid!r})")
            name = _node_name(i, node)
            ftype = node.get("feature_type")
            if not isinstance(ftype, str):
                raise fail(f"{name}: missing or non-string 'feature_type' ({ftype!r})")
            kind = _kind_of(ftype)
            for req in ("layer", "ctx_idx"):
                if req not in node or node[req] is None:
                    raise fail(f"{name}: missing '{req}'")
            pos = _as_int(node["ctx_idx"])
            if pos is None or pos < 0:
                raise fail(
                    f"{name}: 'ctx_idx' must be a non-negative integer, got {node['ctx_idx']!r}"
                )
            layer_val = node["layer"]
            if kind == "embedding":
                layer = -1
            elif kind == "logit":
                # The stored logit layer differs by generator and viewers ignore it: place it
                # after the rest once every other layer is known.
                layer = 0
            else:
                parsed = _as_int(layer_val)
                if parsed is None:
                    raise fail(
                        f"{name}: 'layer' must be an integer or a decimal string, got {layer_val!r}"
                    )
                layer = parsed
            js = node.get("jsNodeId")
            js = js if isinstance(js, str) else nid
            clerp = node.get("clerp")
            node_ids.append(nid)
            js_ids.append(js)
            keys.append(js if use_js else nid)
            kinds.append(kind)
            raw_layers.append(layer)
            positions[i] = pos
            clerps.append(
                clerp if isinstance(clerp, str) else ("" if clerp is None else str(clerp))
            )
            if kind == "feature":
                m = _FEATURE_ID.match(nid)
                if m and _as_int(layer_val) == int(m.group(1)) and int(m.group(3)) == pos:
                    feat[i] = int(m.group(2))
        layers = np.asarray(raw_layers, np.int64).reshape(n)
        is_logit = np.array([k == "logit" for k in kinds], bool).reshape(n)
        if is_logit.any():
            layers[is_logit] = (int(layers[~is_logit].max()) if (~is_logit).any() else -1) + 1

        # node_id -> indices; duplicates are an error except circuit-tracer's error/feature
        # id collision (an error `0_<layer>_<pos>` and a feature `0_<index>_<pos>`).
        by_id: dict[str, list[int]] = {}
        for i, nid in enumerate(node_ids):
            by_id.setdefault(nid, []).append(i)
        for nid, idx in by_id.items():
            if len(idx) == 1:
                continue
            pair_kinds = sorted(kinds[i] for i in idx)
            if len(idx) == 2 and pair_kinds == ["error", "feature"]:
                notes.append(
                    f"node_id collision {nid!r}: node {idx[0]} ({kinds[idx[0]]}, layer "
                    f"{layers[idx[0]]}) and node {idx[1]} ({kinds[idx[1]]}, layer "
                    f"{layers[idx[1]]}) (circuit-tracer error/feature id clash); links on it "
                    "are assigned by feature_type and layer order"
                )
                continue
            raise fail(
                f"duplicate node_id {nid!r} at nodes {idx[0]} and {idx[1]}"
                + (f" (and {len(idx) - 2} more)" if len(idx) > 2 else "")
            )

        src, dst, weight, link_notes = _parse_links(links, by_id, kinds, layers, positions, fail)
        notes.extend(link_notes)

        graph = cls(
            raw=data,
            node_ids=node_ids,
            keys=keys,
            kinds=kinds,
            layers=layers,
            positions=positions,
            feature_index=feat,
            clerps=clerps,
            src=src,
            dst=dst,
            weight=weight,
            warnings=notes,
        )
        graph._resolve_qparams(js_ids)
        prompt = graph.prompt_tokens
        if prompt:
            bad = np.flatnonzero(positions >= len(prompt))
            if bad.size:
                i = int(bad[0])
                notes.append(
                    f"{bad.size} node(s) have ctx_idx beyond the {len(prompt)} prompt tokens "
                    f"(first: {_node_name(i, nodes[i])}, ctx_idx {positions[i]})"
                )
        return graph

    def _resolve_qparams(self, js_ids: list[str]) -> None:
        """Resolve hand-made supernodes and pins, record findings, strip leaked labels."""
        notes = self.warnings
        q = self.raw["qParams"]
        first_id: dict[str, int] = {}
        first_js: dict[str, int] = {}
        for i, (nid, js) in enumerate(zip(self.node_ids, js_ids, strict=True)):
            first_id.setdefault(nid, i)
            first_js.setdefault(js, i)
        collided = {nid for nid, c in Counter(self.node_ids).items() if c > 1}

        def resolve(member: str) -> int | None:
            # node_id first, then jsNodeId: the two are disjoint in real files, and files use
            # one or the other depending on the scan.
            if member in first_id:
                return first_id[member]
            return first_js.get(member)

        pins = q.get("pinnedIds", [])
        pinned: set[int] = set()
        if isinstance(pins, list):
            unknown = [p for p in pins if not isinstance(p, str) or resolve(p) is None]
            pinned = {r for p in pins if isinstance(p, str) and (r := resolve(p)) is not None}
            if unknown:
                notes.append(
                    f"{len(unknown)} of {len(pins)} qParams.pinnedIds name no node "
                    f"(e.g. {unknown[:3]}); viewers ignore them"
                )
            if len(pins) > MAX_PINS:
                notes.append(
                    f"qParams.pinnedIds has {len(pins)} entries; viewers read only the first "
                    f"{MAX_PINS}"
                )
        elif pins is not None:
            notes.append(f"qParams.pinnedIds is not an array ({type(pins).__name__}); ignored")

        groups = q.get("supernodes", [])
        hand: list[tuple[str, list[int]]] = []
        if groups is not None and not isinstance(groups, list):
            notes.append(f"qParams.supernodes is not an array ({type(groups).__name__}); ignored")
            groups = []
        for gi, entry in enumerate(groups or []):
            if not isinstance(entry, list) or not entry or not isinstance(entry[0], str):
                notes.append(f"qParams.supernodes[{gi}] is not [label, member, ...]; skipped")
                continue
            label = entry[0]
            members: list[int] = []
            for m in entry[1:]:
                r = resolve(m) if isinstance(m, str) else None
                if r is None:
                    notes.append(
                        f"supernode {gi} {label!r}: member {m!r} matches no node_id or "
                        "jsNodeId; dropped"
                    )
                    continue
                if self.node_ids[r] in collided and m == self.node_ids[r]:
                    notes.append(
                        f"supernode {gi} {label!r}: member {m!r} is a colliding node_id; "
                        f"taken as node {r}, the first with that id"
                    )
                if r not in members:
                    members.append(r)
                if isinstance(pins, list) and r not in pinned:
                    notes.append(
                        f"supernode {gi} {label!r}: member {m!r} is not pinned; viewers drop it"
                    )
            if not members:
                notes.append(f"supernode {gi} {label!r} has no resolvable member; dropped")
                continue
            hand.append((label, members))
        owner: dict[int, list[str]] = {}
        for label, members in hand:
            for i in members:
                owner.setdefault(i, []).append(label)
        for i, labels in owner.items():
            if len(labels) > 1:
                notes.append(
                    f"node {i} ({self.node_ids[i]!r}) is in supernodes {labels}; viewers "
                    "assign it to the last"
                )
            # Neuronpedia downloads save a member's displayed label `[L] <clerp>` (or `[L]`
            # when the clerp equals L) as its clerp; undo it so the hand-made grouping does not
            # leak into the input of an automatic one.
            c = self.clerps[i]
            for label in labels:
                if c == f"[{label}]":
                    c = label
                elif c.startswith(f"[{label}] "):
                    c = c[len(label) + 3 :]
            self.clerps[i] = c
        self._hand = hand

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
        p = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.raw, f, indent=2, ensure_ascii=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            # mkstemp creates the file 0600; give the result the usual mode.
            mode = p.stat().st_mode & 0o777 if p.exists() else 0o644
            os.chmod(tmp, mode)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
        toks = self.raw["metadata"].get("prompt_tokens")
        return [str(t) for t in toks] if isinstance(toks, list) else []

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
                p = float(p) if _is_number(p) and math.isfinite(float(p)) else 0.0
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
        return _canonical(raw)

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
        largest down while the total stays within :data:`MAX_PINS`; a group that does not fit
        is skipped (and reported in :attr:`warnings`), smaller ones may still fit. Nodes,
        links, metadata and the rest of ``qParams`` are unchanged.

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
        for g, members in _members(lab).items():
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
        for g, members in _members(lab).items():
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
            infl = [float(v) for i in members if _is_number(v := nodes[i].get("influence"))]
            node_id = f"sn_{g}"
            new_nodes.append(
                {
                    "node_id": node_id,
                    "feature": nodes[members[0]].get("feature") if len(members) == 1 else None,
                    "layer": layer,
                    "ctx_idx": _round_half_up(float(np.mean(self.positions[members]))),
                    "feature_type": ftype,
                    "token_prob": float(sum(float(p) for p in probs if _is_number(p))),
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
            "qParams": copy.deepcopy(_EMPTY_QPARAMS),
            "nodes": new_nodes,
            "links": new_links,
        }
        return type(self)._build(data, where="")


def _parse_links(
    links: list[Any],
    by_id: dict[str, list[int]],
    kinds: list[NodeKind],
    layers: IntArray,
    positions: IntArray,
    fail: Any,
) -> tuple[IntArray, IntArray, FloatArray, list[str]]:
    """Validate links and turn them into index arrays (resolving node-id collisions)."""
    m = len(links)
    src = np.empty(m, np.int64)
    dst = np.empty(m, np.int64)
    weight = np.empty(m, np.float64)
    notes: list[str] = []
    seen_pairs: Counter[tuple[str, str]] = Counter()
    n_ambiguous = 0
    n_collided = 0
    clashing = {nid for nid, idx in by_id.items() if len(idx) > 1}
    copies: Counter[tuple[Any, Any]] = Counter(
        (lk.get("source"), lk.get("target"))
        for lk in (links if clashing else [])
        if isinstance(lk, dict) and (lk.get("source") in clashing or lk.get("target") in clashing)
    )
    for j, link in enumerate(links):
        if not isinstance(link, dict):
            raise fail(f"link {j}: expected an object, got {type(link).__name__}")
        s_id, t_id, w = link.get("source"), link.get("target"), link.get("weight")
        for role, v in (("source", s_id), ("target", t_id)):
            if not isinstance(v, str):
                raise fail(f"link {j}: missing or non-string '{role}' ({v!r})")
            if v not in by_id:
                raise fail(f"link {j}: {role} {v!r} is not a node_id of any node")
        assert isinstance(s_id, str) and isinstance(t_id, str)
        if not _is_number(w):
            raise fail(f"link {j} ({s_id!r} -> {t_id!r}): weight must be a number, got {w!r}")
        wf = float(w)
        if not math.isfinite(wf):
            raise fail(f"link {j} ({s_id!r} -> {t_id!r}): weight is {wf}")
        s_c, t_c = by_id[s_id], by_id[t_id]
        if len(s_c) == 1 and len(t_c) == 1:
            s, t = s_c[0], t_c[0]
        else:
            n_collided += 1
            # circuit-tracer: embeddings and errors have no inputs, logits no outputs, and a
            # link goes up in layer and never back in position.
            pairs = [
                (a, b)
                for a in s_c
                for b in t_c
                if a != b
                and kinds[a] != "logit"
                and kinds[b] not in ("embedding", "error")
                and layers[a] < layers[b]
                and positions[a] <= positions[b]
            ]
            if not pairs:
                pairs = [(a, b) for a in s_c for b in t_c if a != b] or [(s_c[0], t_c[0])]
            # circuit-tracer writes links target-major, sources in node order, and nodes in
            # index order: the k-th copy of a (source, target) pair is the k-th candidate.
            k = seen_pairs[(s_id, t_id)]
            seen_pairs[(s_id, t_id)] += 1
            if len(pairs) > 1 and copies[(s_id, t_id)] != len(pairs):
                n_ambiguous += 1
            s, t = pairs[min(k, len(pairs) - 1)]
        if s == t:
            raise fail(f"link {j}: self-link on node {s} ({s_id!r})")
        src[j], dst[j], weight[j] = s, t, wf
    if n_collided:
        notes.append(
            f"{n_collided} link(s) name a colliding node_id; assigned by node kind, layer "
            f"order ({n_ambiguous} could belong to either node; the k-th copy of a (source, "
            "target) pair went to the k-th candidate in file order, as circuit-tracer writes "
            "them)"
        )
    pairs_all = Counter(zip(src.tolist(), dst.tolist(), strict=True))
    dup = sum(c - 1 for c in pairs_all.values() if c > 1)
    if dup:
        notes.append(f"{dup} repeated (source, target) link(s); adjacency() sums them")
    return src, dst, weight, notes


def _members(labels: IntArray) -> dict[int, list[int]]:
    """Map each label to its node indices (ascending), labels in ascending order."""
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    chunks = np.split(order, starts[1:])
    return {int(v): c.tolist() for v, c in zip(values.tolist(), chunks, strict=True)}


def _canonical(labels: IntArray) -> IntArray:
    """Renumber labels ``0..k-1`` in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse.reshape(-1)].astype(np.int64)


# ---------------------------------------------------------------------- metrics


def _labels(labels: Any, n: int | None = None, name: str = "labels") -> IntArray:
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu" and not (lab.size == 0 and lab.dtype.kind == "f"):
        raise TypeError(f"{name}: expected an integer array, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {lab.shape}")
    if n is not None and lab.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per node), got {lab.shape[0]}")
    return lab


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
    lab = _labels(labels)
    if lab.size == 0:
        return math.nan
    return float(np.unique(lab).size / lab.size)


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
    lab = _labels(labels, graph.n_nodes)
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
    with _warnings.catch_warnings():
        # A singular system (a closed cycle) is reported below as a ValueError.
        _warnings.simplefilter("ignore")
        x = np.asarray(spsolve(system, rhs), dtype=np.float64).reshape(n)
    if not np.all(np.isfinite(x)):
        raise ValueError(
            "influence is undefined: the graph has a cycle that no path leaves "
            f"({_scc(a, directed=True, connection='strong')[0]} strongly connected components "
            f"for {n} nodes)"
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
    lab = _canonical(_labels(labels, graph.n_nodes))
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
    n_scc = _scc(comp.adjacency(), directed=True, connection="strong")[0]
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
    lab = _labels(labels)
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
    p = _labels(pred, name="pred")
    t = _labels(true, p.shape[0], name="true")
    if nodes is not None:
        idx = np.asarray(nodes)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = _labels(idx, name="nodes")
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
    lab = _labels(labels, graph.n_nodes)
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
        ref = _labels(hand, graph.n_nodes, name="hand")
        report["agreement"] = agreement(lab, ref)
        feats = [i for i, kind in enumerate(graph.kinds) if kind == "feature"]
        report["agreement_features"] = agreement(lab, ref, nodes=np.asarray(feats, np.int64))
    return report
