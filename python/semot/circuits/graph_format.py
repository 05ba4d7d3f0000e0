"""The attribution-graph JSON format: reading, validating, and the arrays derived from it.

The format is the JSON that circuit-tracer writes and that Neuronpedia and Anthropic's
attribution-graph frontend read (the format and the quirks of real files are described in
``shared/docs/graph-format.md``): top-level ``metadata``, ``qParams``, ``nodes`` and ``links``.
:func:`parse_graph` checks what the format forbids while accepting what real files are known to
vary on, and derives what grouping methods work on (kinds, numeric layers, positions, links as
index arrays, hand-made supernodes). :class:`semot.circuits.graph.AttributionGraph` is built on
it.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

import numpy as np
import numpy.typing as npt

from semot._utils.jsondepth import json_depth_problem
from semot.errors import GraphFormatError

__all__ = [
    "ANTHROPIC_SCANS",
    "EMPTY_QPARAMS",
    "MAX_PINS",
    "NodeKind",
    "ParsedGraph",
    "is_number",
    "node_name",
    "parse_graph",
    "prompt_tokens_of",
    "read_graph_json",
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

#: The ``qParams`` that circuit-tracer's ``create_graph_files`` writes (copy before changing).
EMPTY_QPARAMS: dict[str, Any] = {
    "pinnedIds": [],
    "supernodes": [],
    "linkType": "both",
    "clickedId": "",
    "sg_pos": "",
}

# `<layer>_<index>_<pos>` (circuit-tracer, Gemma, Haiku) or the lm-saes converter's
# `<layer>_cro_<index>_<pos>` / `<layer>_lor_<index>_<pos>`.
_FEATURE_ID = re.compile(r"^(-?\d+)_(?:(?:cro|lor)_)?(\d+)_(\d+)$")


def is_number(x: Any) -> TypeGuard[numbers.Real]:
    """Return whether a JSON value is a number (``true`` and ``false`` are not)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


_INT64 = (-(2**63), 2**63)


def _as_int(x: Any) -> int | None:
    """Return ``x`` as an int when it is an int64-sized int, integral float or decimal string."""
    if isinstance(x, bool):
        return None
    value: int | None = None
    if isinstance(x, numbers.Integral):
        value = int(x)
    elif isinstance(x, numbers.Real):
        v = float(x)
        value = int(v) if math.isfinite(v) and v.is_integer() else None
    elif isinstance(x, str):
        try:
            value = int(x.strip())
        except ValueError:
            return None
    # Beyond int64 the arrays of the graph cannot hold it: the caller's error names the node.
    if value is None or not _INT64[0] <= value < _INT64[1]:
        return None
    return value


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


def node_name(i: int, node: Any) -> str:
    """Name node ``i`` in a message: ``node 3 ('1_42_5')``, or ``node 3`` without an id."""
    nid = node.get("node_id") if isinstance(node, dict) else None
    return f"node {i} ({nid!r})" if isinstance(nid, str) else f"node {i}"


def prompt_tokens_of(metadata: dict[str, Any]) -> list[str]:
    """Return ``metadata.prompt_tokens`` as strings (empty when missing)."""
    toks = metadata.get("prompt_tokens")
    return [str(t) for t in toks] if isinstance(toks, list) else []


@dataclass(eq=False)
class ParsedGraph:
    """What :func:`parse_graph` derives from a graph's JSON.

    The fields are those of :class:`semot.circuits.graph.AttributionGraph` of the same name
    (``notes`` are its ``warnings``); ``hand`` holds the resolved ``qParams.supernodes`` as
    ``(label, member node indices)``.
    """

    node_ids: list[str]
    keys: list[str]
    kinds: list[NodeKind]
    layers: IntArray
    positions: IntArray
    feature_index: IntArray
    clerps: list[str]
    src: IntArray
    dst: IntArray
    weight: FloatArray
    notes: list[str]
    hand: list[tuple[str, list[int]]]


def read_graph_json(p: Path) -> tuple[Any, list[str]]:
    """Read a graph file as JSON, without validating it.

    Parameters
    ----------
    p : pathlib.Path
        The ``.json`` file (UTF-8, a BOM is tolerated).

    Returns
    -------
    tuple of (object, list of str)
        The parsed JSON and the findings of reading it (non-standard constants such as
        ``NaN``, which Python reads and JavaScript viewers do not).

    Raises
    ------
    GraphFormatError
        For bytes that are not UTF-8, malformed JSON (with line and column), or JSON nested
        more than :data:`~semot._utils.jsondepth.MAX_JSON_DEPTH` levels deep.
    OSError
        When the file cannot be read.
    """
    blob = p.read_bytes()
    deep = json_depth_problem(blob)
    if deep is not None:
        raise GraphFormatError(f"{p}: {deep}")
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise GraphFormatError(f"{p}: not UTF-8 text (byte {e.start})") from None
    constants: list[str] = []
    notes: list[str] = []

    def on_constant(name: str) -> float:
        constants.append(name)
        return float(name)

    try:
        data = json.loads(text, parse_constant=on_constant)
    except json.JSONDecodeError as e:
        raise GraphFormatError(
            f"{p}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    if constants:
        notes.append(
            f"non-standard JSON constants {sorted(set(constants))} ({len(constants)} "
            "times); JavaScript viewers cannot parse them"
        )
    return data, notes


def parse_graph(data: Any, where: str = "") -> ParsedGraph:
    """Validate a parsed attribution graph and derive its arrays.

    Parameters
    ----------
    data : object
        The JSON, as ``json.load`` returns it; it is not modified.
    where : str, default ""
        Prefix of every error message (the file's path and ``": "`` when read from one).

    Returns
    -------
    ParsedGraph
        Per-node and per-link arrays, the hand-made supernodes and the findings.

    Raises
    ------
    GraphFormatError
        For what the format forbids (see :meth:`semot.circuits.graph.AttributionGraph.load`).
    """

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
        name = node_name(i, node)
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
                f"{name}: 'ctx_idx' must be a non-negative integer below 2**63, got "
                f"{node['ctx_idx']!r}"
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
                    f"{name}: 'layer' must be an integer (or a decimal string) in the int64 "
                    f"range, got {layer_val!r}"
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
        clerps.append(clerp if isinstance(clerp, str) else ("" if clerp is None else str(clerp)))
        if kind == "feature":
            m = _FEATURE_ID.match(nid)
            if m and _as_int(layer_val) == int(m.group(1)) and int(m.group(3)) == pos:
                index = _as_int(m.group(2))
                if index is None:
                    raise fail(f"{name}: feature index {m.group(2)} is beyond the int64 range")
                feat[i] = index
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
    hand = _resolve_qparams(qparams, node_ids, js_ids, clerps, notes)
    prompt = prompt_tokens_of(meta)
    if prompt:
        bad = np.flatnonzero(positions >= len(prompt))
        if bad.size:
            i = int(bad[0])
            notes.append(
                f"{bad.size} node(s) have ctx_idx beyond the {len(prompt)} prompt tokens "
                f"(first: {node_name(i, nodes[i])}, ctx_idx {positions[i]})"
            )
    return ParsedGraph(
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
        notes=notes,
        hand=hand,
    )


def _parse_links(
    links: list[Any],
    by_id: dict[str, list[int]],
    kinds: list[NodeKind],
    layers: IntArray,
    positions: IntArray,
    fail: Callable[[str], GraphFormatError],
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
        if not is_number(w):
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


def _resolve_qparams(
    qparams: dict[str, Any],
    node_ids: list[str],
    js_ids: list[str],
    clerps: list[str],
    notes: list[str],
) -> list[tuple[str, list[int]]]:
    """Resolve hand-made supernodes and pins, record findings, strip leaked labels.

    Appends the findings to ``notes`` and rewrites ``clerps`` in place; returns the
    hand-made groups as ``(label, member node indices)``.
    """
    q = qparams
    first_id: dict[str, int] = {}
    first_js: dict[str, int] = {}
    for i, (nid, js) in enumerate(zip(node_ids, js_ids, strict=True)):
        first_id.setdefault(nid, i)
        first_js.setdefault(js, i)
    collided = {nid for nid, c in Counter(node_ids).items() if c > 1}

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
                f"qParams.pinnedIds has {len(pins)} entries; viewers read only the first {MAX_PINS}"
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
            if node_ids[r] in collided and m == node_ids[r]:
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
                f"node {i} ({node_ids[i]!r}) is in supernodes {labels}; viewers "
                "assign it to the last"
            )
        # Neuronpedia downloads save a member's displayed label `[L] <clerp>` (or `[L]`
        # when the clerp equals L) as its clerp; undo it so the hand-made grouping does not
        # leak into the input of an automatic one.
        c = clerps[i]
        for label in labels:
            if c == f"[{label}]":
                c = label
            elif c.startswith(f"[{label}] "):
                c = c[len(label) + 3 :]
        clerps[i] = c
    return hand
