"""Layout of an attribution-graph picture, shared by the PNG/SVG figure and the HTML page.

The input is plain arrays (:class:`GraphPicture`), so the pictures do not depend on any graph
class (:func:`semot.circuits.view.graph_picture` makes one from an
:class:`~semot.circuits.graph.AttributionGraph`). :func:`check_picture` validates a picture and
a grouping of its nodes; :func:`compute_layout` places them.

Layout: x is the token position, y is the layer (embeddings at the bottom, logits at the top).
Nodes that share a (layer, position) cell are packed on a small grid inside the cell, so they
never overlap; a layer's band grows with its most crowded cell. In the compressed view each
group sits at the mean position and layer of its members (single-node groups keep their packed
place) and overlapping nodes are then pushed apart, deterministically.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BAND_GAP",
    "KINDS",
    "LABEL_FONT_PT",
    "NEGATIVE_COLOR",
    "POSITIVE_COLOR",
    "SINGLE_NODE_COLOR",
    "CheckedPicture",
    "GraphPicture",
    "Layout",
    "PlacedLabel",
    "check_max_labels",
    "check_picture",
    "compute_layout",
    "link_widths",
    "place_labels",
    "replace_control_chars",
    "shorten",
    "token_label",
]

KINDS = ("feature", "error", "embedding", "logit")
"""The node kinds a :class:`GraphPicture` may hold."""

# Geometry, in inches (the PNG/SVG axes use 1 data unit = 1 inch; the HTML 72 units per inch).
_NODE_D = (0.22, 0.19, 0.16, 0.13, 0.11)  # marker diameters to try, the largest that fits
_GAP = 0.25  # free space between neighbouring markers, as a share of the diameter
_GROUPED = 1.2  # grouped nodes are drawn this much larger in the original view
_MIN_BAND = 0.30  # least height of a layer band
BAND_GAP = 0.10  # space between layer bands

POSITIVE_COLOR = "#2166ac"  # positive attribution
NEGATIVE_COLOR = "#c2352b"  # negative attribution
SINGLE_NODE_COLOR = "#b4b4b4"  # nodes whose group has one member
_BASE_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
)


@dataclass
class GraphPicture:
    """An attribution graph as plain arrays, ready to be drawn.

    Parameters
    ----------
    layers : ndarray of int64, shape (n,)
        Numeric layer of each node: embeddings ``-1``, logits the highest value.
    positions : ndarray of int64, shape (n,)
        Token position (``ctx_idx``) of each node, an index into `prompt_tokens`.
    kinds : sequence of str, length n
        ``"feature"``, ``"error"``, ``"embedding"`` or ``"logit"`` for each node.
    texts : sequence of str, length n
        Label of each node (the clerp; may be ``""``). Treated as untrusted text.
    src, dst : ndarray of int64, shape (m,)
        Source and target node index of each link.
    weight : ndarray of float64, shape (m,)
        Signed attribution weight of each link.
    prompt_tokens : sequence of str
        Token strings, indexed by position. May be empty; then positions are shown as numbers.
    title : str, optional
        Title of the pictures.
    """

    layers: npt.NDArray[np.int64]
    positions: npt.NDArray[np.int64]
    kinds: Sequence[str]
    texts: Sequence[str]
    src: npt.NDArray[np.int64]
    dst: npt.NDArray[np.int64]
    weight: npt.NDArray[np.float64]
    prompt_tokens: Sequence[str]
    title: str = ""


# ----------------------------------------------------------------------------------------------
# validation


@dataclass(frozen=True)
class CheckedPicture:
    """A :class:`GraphPicture` and a grouping of its nodes, validated (:func:`check_picture`).

    Arrays are C-contiguous int64 / float64 and sequences are lists; ``tokens`` are the prompt
    tokens, ``labels`` the group id of each node (an index into ``names``).
    """

    layers: npt.NDArray[np.int64]
    positions: npt.NDArray[np.int64]
    kinds: list[str]
    texts: list[str]
    src: npt.NDArray[np.int64]
    dst: npt.NDArray[np.int64]
    weight: npt.NDArray[np.float64]
    tokens: list[str]
    title: str
    labels: npt.NDArray[np.int64]
    names: list[str]


def _int_vector(x: Any, name: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(x)
    if arr.size == 0:
        arr = arr.astype(np.int64).reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _str_list(x: Any, name: str) -> list[str]:
    if isinstance(x, str | bytes):
        raise ValueError(f"{name}: expected a sequence of strings, got a single string")
    out = list(x)
    for i, s in enumerate(out):
        if not isinstance(s, str):
            raise ValueError(f"{name}[{i}]: expected a string, got {type(s).__name__}")
    return out


def _check_length(name: str, got: int, want: int, what: str) -> None:
    if got != want:
        raise ValueError(f"{name}: expected {want} entries ({what}), got {got}")


def check_picture(pic: GraphPicture, labels: Any, names: Any, max_links: int) -> CheckedPicture:
    """Validate the inputs; every error is a ``ValueError`` that names the bad argument."""
    if not isinstance(pic, GraphPicture):
        raise ValueError(f"pic: expected a GraphPicture, got {type(pic).__name__}")
    if isinstance(max_links, bool) or not isinstance(max_links, int | np.integer):
        raise ValueError(f"max_links: expected an integer, got {max_links!r}")
    if max_links < 0:
        raise ValueError(f"max_links: must be >= 0, got {max_links}")
    layers = _int_vector(pic.layers, "layers")
    n = layers.shape[0]
    if n == 0:
        raise ValueError("layers: the graph has no nodes")
    positions = _int_vector(pic.positions, "positions")
    _check_length("positions", positions.shape[0], n, "one per node, as layers")
    kinds = _str_list(pic.kinds, "kinds")
    _check_length("kinds", len(kinds), n, "one per node, as layers")
    for i, k in enumerate(kinds):
        if k not in KINDS:
            raise ValueError(f"kinds[{i}]: expected one of {', '.join(KINDS)}, got {k!r}")
    texts = _str_list(pic.texts, "texts")
    _check_length("texts", len(texts), n, "one per node, as layers")
    tokens = _str_list(pic.prompt_tokens, "prompt_tokens")
    if positions.min() < 0:
        raise ValueError(f"positions: must be >= 0, got {int(positions.min())}")
    if tokens and positions.max() >= len(tokens):
        raise ValueError(
            f"positions: value {int(positions.max())} is out of range for "
            f"{len(tokens)} prompt_tokens"
        )
    src = _int_vector(pic.src, "src")
    m = src.shape[0]
    dst = _int_vector(pic.dst, "dst")
    _check_length("dst", dst.shape[0], m, "one per link, as src")
    weight_arr = np.asarray(pic.weight)
    if weight_arr.size == 0:
        weight_arr = weight_arr.reshape(-1)
    if weight_arr.ndim != 1 or weight_arr.dtype.kind not in "biuf":
        raise ValueError(
            f"weight: expected a 1-D real array, got shape {weight_arr.shape} "
            f"and dtype {weight_arr.dtype}"
        )
    weight = np.ascontiguousarray(weight_arr, dtype=np.float64)
    _check_length("weight", weight.shape[0], m, "one per link, as src")
    if not np.isfinite(weight).all():
        raise ValueError("weight: contains NaN or infinite values")
    for name, idx in (("src", src), ("dst", dst)):
        if m and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx[(idx < 0) | (idx >= n)][0])
            raise ValueError(f"{name}: link index {bad} is out of range for {n} nodes")
    label_arr = _int_vector(labels, "labels")
    _check_length("labels", label_arr.shape[0], n, "one group id per node")
    name_list = _str_list(names, "names")
    if label_arr.min() < 0 or label_arr.max() >= len(name_list):
        bad = int(label_arr[(label_arr < 0) | (label_arr >= len(name_list))][0])
        raise ValueError(
            f"labels: group id {bad} is out of range for {len(name_list)} names "
            "(labels must index names)"
        )
    if not isinstance(pic.title, str):
        raise ValueError(f"title: expected a string, got {type(pic.title).__name__}")
    return CheckedPicture(
        layers=layers,
        positions=positions,
        kinds=kinds,
        texts=texts,
        src=src,
        dst=dst,
        weight=weight,
        tokens=tokens,
        title=pic.title,
        labels=label_arr,
        names=name_list,
    )


# ----------------------------------------------------------------------------------------------
# layout (shared by the matplotlib figure and the HTML page)


@dataclass(frozen=True)
class Layout:
    """Where everything goes in both views (:func:`compute_layout`); lengths in inches.

    Groups are numbered compactly ``0..G-1`` in the order of the caller's group ids
    (``group_label`` maps back); links are listed strongest first.
    """

    node_xy: npt.NDArray[np.float64]  # (n, 2) inches
    node_r: npt.NDArray[np.float64]  # (n,) drawn radius in the original view
    node_d: float  # diameter of an ungrouped node
    node_group: npt.NDArray[np.int64]  # (n,) compact group index 0..G-1
    group_label: npt.NDArray[np.int64]  # (G,) the caller's group id of each compact group
    group_size: npt.NDArray[np.int64]  # (G,)
    group_xy: npt.NDArray[np.float64]  # (G, 2) inches
    group_r: npt.NDArray[np.float64]  # (G,)
    group_kind: list[str]  # (G,) shape of the group marker
    group_color: list[str]  # (G,) hex colour
    layer_values: npt.NDArray[np.int64]  # (L,) sorted distinct layers
    layer_y: npt.NDArray[np.float64]  # (L,) centre of each layer band
    layer_h: npt.NDArray[np.float64]  # (L,) height of each layer band
    layer_names: list[str]
    col_w: float
    n_pos: int
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    links: npt.NDArray[np.int64]  # indices of the original links drawn, strongest first
    gsrc: npt.NDArray[np.int64]  # compressed edges drawn, strongest first
    gdst: npt.NDArray[np.int64]
    gweight: npt.NDArray[np.float64]
    n_gedges: int  # all compressed edges (before max_links)


def _palette(k: int) -> list[str]:
    """Return ``k`` distinct colours: a fixed list, then golden-angle hues."""
    out = list(_BASE_PALETTE[:k])
    i = 0
    while len(out) < k:
        hue = (0.13 + i * 0.618033988749895) % 1.0
        light = (0.45, 0.62, 0.35)[i % 3]
        r, g, b = colorsys.hls_to_rgb(hue, light, 0.65)
        out.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
        i += 1
    return out


def _layer_names(layers: npt.NDArray[np.int64], kinds: list[str], values: Any) -> list[str]:
    names = []
    kind_arr = np.asarray(kinds)
    for v in values:
        ks = set(kind_arr[layers == v].tolist())
        if ks == {"embedding"}:
            names.append("emb")
        elif ks == {"logit"}:
            names.append("logit")
        else:
            names.append(str(int(v)))
    return names


def _strongest(weight: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """Return the indices of the ``k`` largest ``|weight|``, strongest first (ties by index)."""
    order = np.argsort(-np.abs(weight), kind="stable")
    return order[:k].astype(np.int64)


def _separate(
    xy: npt.NDArray[np.float64], r: npt.NDArray[np.float64], gap: float, iters: int = 400
) -> npt.NDArray[np.float64]:
    """Push overlapping discs apart (deterministic); big discs move least."""
    from scipy.spatial import cKDTree

    xy = xy.copy()
    if xy.shape[0] < 2:
        return xy
    inv_mass = 1.0 / (r * r)
    reach = 2.0 * float(r.max()) + gap
    for _ in range(iters):
        pairs = cKDTree(xy).query_pairs(reach, output_type="ndarray")
        if pairs.shape[0] == 0:
            break
        i, j = pairs[:, 0], pairs[:, 1]
        d = xy[j] - xy[i]
        dist = np.hypot(d[:, 0], d[:, 1])
        need = r[i] + r[j] + gap
        bad = dist < need - 1e-9
        if not bad.any():
            break
        i, j, d, dist, need = i[bad], j[bad], d[bad], dist[bad], need[bad]
        same = dist < 1e-12
        if same.any():  # coinciding centres: a fixed direction per pair
            angle = (i[same] * 0.618033988749895 + j[same] * 0.41421356) * 2.0 * math.pi
            d[same] = np.stack([np.cos(angle), np.sin(angle)], axis=1)
            dist[same] = 1.0
        u = d / dist[:, None]
        push = 0.55 * (need - dist)
        wi = inv_mass[i] / (inv_mass[i] + inv_mass[j])
        delta = np.zeros_like(xy)
        np.add.at(delta, i, -u * (push * wi)[:, None])
        np.add.at(delta, j, u * (push * (1.0 - wi))[:, None])
        xy += delta
    return xy


def compute_layout(c: CheckedPicture, max_links: int) -> Layout:
    """Place the nodes of both views, colour the groups and pick the links to draw.

    Parameters
    ----------
    c : CheckedPicture
        The validated picture and grouping.
    max_links : int
        How many of the strongest links (by ``|weight|``) to keep in each view; the edges of
        the compressed view are the summed weights of the links between two groups.

    Returns
    -------
    Layout
        Node and group positions and radii, layer bands, axis limits, links to draw.
    """
    n = c.layers.shape[0]
    n_pos = max(len(c.tokens), int(c.positions.max()) + 1)
    col_w = float(np.clip(13.0 / n_pos, 0.45, 1.25))

    # groups: compact ids 0..G-1 in the order of the caller's ids
    group_label, node_group = np.unique(c.labels, return_inverse=True)
    node_group = node_group.astype(np.int64).reshape(-1)
    n_groups = group_label.shape[0]
    group_size = np.bincount(node_group, minlength=n_groups).astype(np.int64)
    multi = np.flatnonzero(group_size > 1)
    colors = [SINGLE_NODE_COLOR] * n_groups
    for g, col in zip(multi.tolist(), _palette(multi.shape[0]), strict=True):
        colors[g] = col

    # layer bands: a band is as tall as its most crowded (layer, position) cell needs
    layer_values, layer_idx = np.unique(c.layers, return_inverse=True)
    layer_idx = layer_idx.reshape(-1)
    n_layers = layer_values.shape[0]
    cell = layer_idx * n_pos + c.positions
    cell_count = np.bincount(cell, minlength=n_layers * n_pos).reshape(n_layers, n_pos)
    crowd = int(cell_count.max())
    for node_d in _NODE_D:  # the largest markers that fit a crowded cell on two rows
        gap = _GAP * node_d
        pitch = node_d + gap
        cols = max(1, int((col_w * 0.92 + gap) // pitch))
        if crowd <= 2 * cols:
            break
    rows = -(-cell_count.max(axis=1) // cols)
    layer_h = np.maximum(rows * pitch, max(_MIN_BAND, pitch + gap)).astype(np.float64)
    tops = np.cumsum(layer_h + BAND_GAP)
    layer_y = tops - BAND_GAP - layer_h / 2.0

    # pack each cell: grouped nodes first (by group), then the rest, on a centred grid
    is_single = (group_size[node_group] == 1).astype(np.int64)
    order = np.lexsort((np.arange(n), node_group, is_single, cell))
    node_xy = np.empty((n, 2), dtype=np.float64)
    sorted_cells = cell[order]
    starts = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
    ends = np.r_[starts[1:], n]
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        members = order[s:e]
        k = e - s
        li, p = divmod(int(sorted_cells[s]), n_pos)
        ncol = min(k, cols)
        nrow = -(-k // ncol)
        slot = np.arange(k)
        row, col = slot // ncol, slot % ncol
        in_row = np.where(row == nrow - 1, k - (nrow - 1) * ncol, ncol)  # last row may be short
        node_xy[members, 0] = p * col_w + (col - (in_row - 1) / 2.0) * pitch
        node_xy[members, 1] = layer_y[li] + ((nrow - 1) / 2.0 - row) * pitch

    # compressed view: multi-node groups at the mean (position, layer) of their members
    r = node_d / 2.0
    node_r = np.where(is_single == 1, r, _GROUPED * r)
    sums = np.zeros((n_groups, 2))
    np.add.at(sums, node_group, np.stack([c.positions, c.layers], axis=1).astype(np.float64))
    mean = sums / group_size[:, None]
    group_xy = np.empty((n_groups, 2))
    group_xy[:, 0] = mean[:, 0] * col_w
    group_xy[:, 1] = np.interp(mean[:, 1], layer_values.astype(np.float64), layer_y)
    single_nodes = np.flatnonzero(is_single == 1)
    group_xy[node_group[single_nodes]] = node_xy[single_nodes]
    group_r = np.minimum(r * np.sqrt(group_size), max(r, min(0.5 * col_w, 0.45)))
    group_xy = _separate(group_xy, group_r, gap)

    # a group's marker: its members' kind when they all share one, else a feature's circle
    kind_idx = np.array([KINDS.index(k) for k in c.kinds], dtype=np.int64)
    kind_count = np.zeros((n_groups, len(KINDS)), dtype=np.int64)
    np.add.at(kind_count, (node_group, kind_idx), 1)
    pure = kind_count.max(axis=1) == group_size
    group_kind = [
        KINDS[k] if ok else "feature"
        for k, ok in zip(kind_count.argmax(axis=1).tolist(), pure.tolist(), strict=True)
    ]

    # edges
    links = _strongest(c.weight, max_links)
    gs, gd = node_group[c.src], node_group[c.dst]
    between = gs != gd  # links inside a group vanish in the compressed graph
    key = gs[between] * n_groups + gd[between]
    ukey, inv = np.unique(key, return_inverse=True)
    gw = np.bincount(inv.reshape(-1), weights=c.weight[between], minlength=ukey.shape[0])
    nonzero = gw != 0.0
    ukey, gw = ukey[nonzero], gw[nonzero]
    top = _strongest(gw, max_links)

    lo = np.minimum(node_xy.min(axis=0), (group_xy - group_r[:, None]).min(axis=0))
    hi = np.maximum(node_xy.max(axis=0), (group_xy + group_r[:, None]).max(axis=0))
    pad = 0.12
    xlim = (min(-col_w / 2.0, float(lo[0]) - pad), max((n_pos - 0.5) * col_w, float(hi[0]) + pad))
    ylim = (min(0.0, float(lo[1]) - pad), max(float(tops[-1]), float(hi[1]) + pad))
    return Layout(
        node_xy=node_xy,
        node_r=node_r,
        node_d=node_d,
        node_group=node_group,
        group_label=group_label.astype(np.int64),
        group_size=group_size,
        group_xy=group_xy,
        group_r=group_r,
        group_kind=group_kind,
        group_color=colors,
        layer_values=layer_values.astype(np.int64),
        layer_y=layer_y,
        layer_h=layer_h,
        layer_names=_layer_names(c.layers, c.kinds, layer_values),
        col_w=col_w,
        n_pos=n_pos,
        xlim=xlim,
        ylim=ylim,
        links=links,
        gsrc=(ukey[top] // n_groups).astype(np.int64),
        gdst=(ukey[top] % n_groups).astype(np.int64),
        gweight=gw[top],
        n_gedges=int(ukey.shape[0]),
    )


def replace_control_chars(s: str) -> str:
    """Replace control characters (other than tab and newline) by U+FFFD."""
    return "".join(ch if ch >= " " or ch in "\t\n" else "\ufffd" for ch in s)


def shorten(s: str, k: int) -> str:
    """Return ``s`` on one line, control characters replaced, cut to ``k`` characters with …."""
    s = " ".join(replace_control_chars(s).split())
    return s if len(s) <= k else s[: k - 1] + "…"


def token_label(tok: str) -> str:
    """Return the axis label of a prompt token: its ``repr``, at most 16 characters."""
    return shorten(repr(tok), 16)


def _labelled_groups(lay: Layout, names: list[str], max_labels: int) -> list[int]:
    """Compact ids of the groups whose name is drawn in the compressed view."""
    strength = np.zeros(lay.group_size.shape[0])
    np.add.at(strength, lay.gsrc, np.abs(lay.gweight))
    np.add.at(strength, lay.gdst, np.abs(lay.gweight))
    cand = [g for g in range(lay.group_size.shape[0]) if names[lay.group_label[g]].strip()]
    cand.sort(key=lambda g: (-int(lay.group_size[g]), -float(strength[g]), g))
    return cand[:max_labels]


LABEL_FONT_PT = 7.0
_CHAR_W = 0.56 * LABEL_FONT_PT / 72.0  # rough mean glyph width, inches
_LABEL_H = 1.35 * LABEL_FONT_PT / 72.0
_LABEL_CHARS = 34


@dataclass(frozen=True)
class PlacedLabel:
    """A group name placed in the compressed view (:func:`place_labels`)."""

    group: int
    text: str
    x: float  # anchor, inches
    y: float  # vertical centre, inches
    ha: str  # "left", "right" or "center"
    leader: bool  # away from the disc: draw a line from the disc to the label


def place_labels(lay: Layout, names: list[str], max_labels: int) -> list[PlacedLabel]:
    """Place group names next to their discs, greedily avoiding overlaps and the edges."""
    out: list[PlacedLabel] = []
    boxes: list[tuple[float, float, float, float]] = []
    cx, cy, cr = lay.group_xy[:, 0], lay.group_xy[:, 1], lay.group_r
    disc_weight = np.where(lay.group_size > 1, 4.0, 1.0)  # covering a big group costs more
    for g in _labelled_groups(lay, names, max_labels):
        text = shorten(names[lay.group_label[g]], _LABEL_CHARS)
        w, h = len(text) * _CHAR_W + 0.04, _LABEL_H
        x, y, r = float(cx[g]), float(cy[g]), float(cr[g])
        pad = 0.03
        cands = [
            (x + r + pad, y, "left", x + r + pad, x + r + pad + w, 0.0),
            (x - r - pad, y, "right", x - r - pad - w, x - r - pad, 0.0),
            (x, y + r + pad + h / 2, "center", x - w / 2, x + w / 2, 0.0),
            (x, y - r - pad - h / 2, "center", x - w / 2, x + w / 2, 0.0),
        ]
        for step in (1, 2, 3):  # further away, joined to the disc by a leader line
            for sign in (1.0, -1.0):
                oy = sign * (r + step * h)
                ox = r + pad + 0.08 * step
                cost = 0.5 * step
                cands.append((x + ox, y + oy, "left", x + ox, x + ox + w, cost))
                cands.append((x - ox, y + oy, "right", x - ox - w, x - ox, cost))
        best: tuple[float, int] | None = None
        for k, (_, ay, _, x0, x1, cost) in enumerate(cands):
            y0, y1 = ay - h / 2, ay + h / 2
            out_of_frame = x0 < lay.xlim[0] or x1 > lay.xlim[1] or y0 < lay.ylim[0]
            out_of_frame = out_of_frame or y1 > lay.ylim[1]
            label_hits = sum(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)
            # discs that the box covers (nearest point of the box to each centre)
            dx = np.maximum(np.maximum(x0 - cx, 0.0), cx - x1)
            dy = np.maximum(np.maximum(y0 - cy, 0.0), cy - y1)
            covered = dx * dx + dy * dy < cr * cr
            disc_cost = float(disc_weight[covered].sum())
            score = 100.0 * out_of_frame + 20.0 * label_hits + disc_cost + cost
            if best is None or score < best[0]:
                best = (score, k)
            if score == 0.0:
                break
        assert best is not None
        ax, ay, ha, x0, x1, cost = cands[best[1]]
        boxes.append((x0, ay - h / 2, x1, ay + h / 2))
        out.append(PlacedLabel(group=g, text=text, x=ax, y=ay, ha=ha, leader=cost > 0))
    return out


def check_max_labels(max_labels: int) -> None:
    """Raise ``ValueError`` unless ``max_labels`` is an integer >= 0."""
    if isinstance(max_labels, bool) or not isinstance(max_labels, int | np.integer):
        raise ValueError(f"max_labels: expected an integer, got {max_labels!r}")
    if max_labels < 0:
        raise ValueError(f"max_labels: must be >= 0, got {max_labels}")


def link_widths(w: npt.NDArray[np.float64], lo: float, hi: float) -> npt.NDArray[np.float64]:
    """Map ``|w|`` linearly onto ``[lo, hi]``: ``lo`` for 0, ``hi`` for the largest ``|w|``."""
    a = np.abs(w)
    top = float(a.max()) if a.size else 1.0
    return lo + (hi - lo) * a / (top if top > 0 else 1.0)
