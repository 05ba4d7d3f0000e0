"""Pictures of an attribution graph before and after compression into groups (supernodes).

The input is plain arrays (:class:`GraphPicture`), so this module does not depend on any graph
class. Two outputs share one layout:

- :func:`plot_compression` writes a side-by-side PNG or SVG (matplotlib, Agg backend only):
  the original graph coloured by group on the left, the compressed graph (one node per group)
  on the right.
- :func:`write_html` writes one self-contained HTML page (inline SVG and a little inline
  JavaScript, no external resources, works offline) with both views, a toggle between them,
  hover details and group highlighting.

Layout: x is the token position, y is the layer (embeddings at the bottom, logits at the top).
Nodes that share a (layer, position) cell are packed on a small grid inside the cell, so they
never overlap; a layer's band grows with its most crowded cell. In the compressed view each
group sits at the mean position and layer of its members (single-node groups keep their packed
place) and overlapping nodes are then pushed apart, deterministically.
"""

from __future__ import annotations

import colorsys
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["KINDS", "GraphPicture", "plot_compression", "write_html"]

KINDS = ("feature", "error", "embedding", "logit")
"""The node kinds a :class:`GraphPicture` may hold."""

# Geometry, in inches (the PNG/SVG axes use 1 data unit = 1 inch; the HTML 72 units per inch).
_NODE_D = (0.22, 0.19, 0.16, 0.13, 0.11)  # marker diameters to try, the largest that fits
_GAP = 0.25  # free space between neighbouring markers, as a share of the diameter
_GROUPED = 1.2  # grouped nodes are drawn this much larger in the original view
_MIN_BAND = 0.30  # least height of a layer band
_BAND_GAP = 0.10  # space between layer bands
_SVG_SCALE = 72.0  # HTML user units per inch

_POS_COLOR = "#2166ac"  # positive attribution
_NEG_COLOR = "#c2352b"  # negative attribution
_SINGLE_COLOR = "#b4b4b4"  # nodes whose group has one member
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
_MARKERS = {"feature": "o", "error": "s", "embedding": "^", "logit": "D"}
# Marker area factors so that the four shapes look about equally large.
_MARKER_AREA = {"feature": 1.0, "error": 0.75, "embedding": 1.1, "logit": 0.7}


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
class _Checked:
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


def _check(pic: GraphPicture, labels: Any, names: Any, max_links: int) -> _Checked:
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
    return _Checked(
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
class _Layout:
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


def _layout(c: _Checked, max_links: int) -> _Layout:
    n = c.layers.shape[0]
    n_pos = max(len(c.tokens), int(c.positions.max()) + 1)
    col_w = float(np.clip(13.0 / n_pos, 0.45, 1.25))

    # groups: compact ids 0..G-1 in the order of the caller's ids
    group_label, node_group = np.unique(c.labels, return_inverse=True)
    node_group = node_group.astype(np.int64).reshape(-1)
    n_groups = group_label.shape[0]
    group_size = np.bincount(node_group, minlength=n_groups).astype(np.int64)
    multi = np.flatnonzero(group_size > 1)
    colors = [_SINGLE_COLOR] * n_groups
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
    tops = np.cumsum(layer_h + _BAND_GAP)
    layer_y = tops - _BAND_GAP - layer_h / 2.0

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
    return _Layout(
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


def _clean(s: str) -> str:
    """Replace control characters (other than tab and newline) by U+FFFD."""
    return "".join(ch if ch >= " " or ch in "\t\n" else "\ufffd" for ch in s)


def _short(s: str, k: int) -> str:
    s = " ".join(_clean(s).split())
    return s if len(s) <= k else s[: k - 1] + "…"


def _token_label(tok: str) -> str:
    return _short(repr(tok), 16)


def _labelled_groups(lay: _Layout, names: list[str], max_labels: int) -> list[int]:
    """Compact ids of the groups whose name is drawn in the compressed view."""
    strength = np.zeros(lay.group_size.shape[0])
    np.add.at(strength, lay.gsrc, np.abs(lay.gweight))
    np.add.at(strength, lay.gdst, np.abs(lay.gweight))
    cand = [g for g in range(lay.group_size.shape[0]) if names[lay.group_label[g]].strip()]
    cand.sort(key=lambda g: (-int(lay.group_size[g]), -float(strength[g]), g))
    return cand[:max_labels]


_LABEL_FONT_PT = 7.0
_CHAR_W = 0.56 * _LABEL_FONT_PT / 72.0  # rough mean glyph width, inches
_LABEL_H = 1.35 * _LABEL_FONT_PT / 72.0
_LABEL_CHARS = 34


@dataclass(frozen=True)
class _Label:
    group: int
    text: str
    x: float  # anchor, inches
    y: float  # vertical centre, inches
    ha: str  # "left", "right" or "center"
    leader: bool  # away from the disc: draw a line from the disc to the label


def _place_labels(lay: _Layout, names: list[str], max_labels: int) -> list[_Label]:
    """Place group names next to their discs, greedily avoiding overlaps and the edges."""
    out: list[_Label] = []
    boxes: list[tuple[float, float, float, float]] = []
    cx, cy, cr = lay.group_xy[:, 0], lay.group_xy[:, 1], lay.group_r
    disc_weight = np.where(lay.group_size > 1, 4.0, 1.0)  # covering a big group costs more
    for g in _labelled_groups(lay, names, max_labels):
        text = _short(names[lay.group_label[g]], _LABEL_CHARS)
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
        out.append(_Label(group=g, text=text, x=ax, y=ay, ha=ha, leader=cost > 0))
    return out


def _check_max_labels(max_labels: int) -> None:
    if isinstance(max_labels, bool) or not isinstance(max_labels, int | np.integer):
        raise ValueError(f"max_labels: expected an integer, got {max_labels!r}")
    if max_labels < 0:
        raise ValueError(f"max_labels: must be >= 0, got {max_labels}")


def _link_widths(w: npt.NDArray[np.float64], lo: float, hi: float) -> npt.NDArray[np.float64]:
    a = np.abs(w)
    top = float(a.max()) if a.size else 1.0
    return lo + (hi - lo) * a / (top if top > 0 else 1.0)


# ----------------------------------------------------------------------------------------------
# matplotlib figure


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _marker_area(kind: str, diameter_in: npt.NDArray[np.float64] | float) -> Any:
    return _MARKER_AREA[kind] * (np.asarray(diameter_in) * 72.0) ** 2


def plot_compression(
    pic: GraphPicture,
    labels: npt.NDArray[np.int64],
    names: Sequence[str],
    path: str | Path,
    *,
    max_links: int = 400,
    max_labels: int = 60,
) -> Path:
    """Draw the graph before and after compression side by side, to a PNG or SVG file.

    Left: the original graph, x = token position (prompt tokens as tick labels), y = layer
    (embeddings at the bottom, logits at the top), nodes coloured by group (groups of one node
    grey), shapes by kind; the strongest `max_links` links are drawn thin. Right: the compressed
    graph, one node per group at the mean position and layer of its members, marker area
    proportional to the member count, edges = summed weights of the links between two groups
    (links inside a group are dropped), blue positive and red negative, width proportional to
    ``|weight|``, only the strongest `max_links` drawn; group names as labels.

    Parameters
    ----------
    pic : GraphPicture
        The graph.
    labels : ndarray of int64, shape (n,)
        ``labels[i]`` is the group id of node ``i``, an index into `names`.
    names : sequence of str
        Name of each group id. Unused ids are allowed.
    path : str or Path
        Output file; ``.png`` or ``.svg`` (the suffix picks the format).
    max_links : int, default 400
        How many of the strongest links to draw in each view.
    max_labels : int, default 60
        At most this many group names are drawn in the compressed view: groups with a
        non-empty name, largest first, then by total ``|weight|`` of their drawn edges.

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    ValueError
        On inconsistent input (the message names the argument) or an unsupported suffix.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ValueError(f"path: expected a .png or .svg file, got {str(path)!r}")
    _check_max_labels(max_labels)
    c = _check(pic, labels, names, max_links)
    lay = _layout(c, max_links)
    plt = _plt()
    with plt.rc_context({"text.parse_math": False, "text.usetex": False, "svg.hashsalt": "semot"}):
        fig = _figure(plt, c, lay, max_labels)
        try:
            meta: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
            fig.savefig(path, format=fmt, dpi=fig.dpi, metadata=meta)
        finally:
            plt.close(fig)
    return path


def _figure(plt: Any, c: _Checked, lay: _Layout, max_labels: int) -> Any:
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    w = lay.xlim[1] - lay.xlim[0]
    h = lay.ylim[1] - lay.ylim[0]
    token_labels = [_token_label(t) for t in c.tokens] or [str(p) for p in range(lay.n_pos)]
    longest = max((len(t) for t in token_labels), default=1)
    rotate = longest * 0.075 > lay.col_w * 0.95
    margin_left, margin_mid, margin_right, legend_w = 0.7, 0.7, 0.2, 2.7
    margin_bottom = 0.45 + (min(longest, 16) * 0.06 if rotate else 0.25)
    margin_top = 0.8
    multi = np.flatnonzero(lay.group_size > 1)
    n_legend_groups = min(multi.shape[0], 30)
    legend_h = 0.2 * (n_legend_groups + 9) + 0.4
    fig_w = margin_left + w + margin_mid + w + margin_right + legend_w
    fig_h = max(margin_bottom + h + margin_top, legend_h)
    dpi = float(np.clip(3800.0 / fig_w, 70.0, 140.0))
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
    y0 = (fig_h - h - margin_top - margin_bottom) / 2.0 + margin_bottom
    ax_o = fig.add_axes([margin_left / fig_w, y0 / fig_h, w / fig_w, h / fig_h])
    ax_c = fig.add_axes([(margin_left + w + margin_mid) / fig_w, y0 / fig_h, w / fig_w, h / fig_h])
    ax_l = fig.add_axes([1.0 - legend_w / fig_w, 0.02, legend_w / fig_w - 0.005, 0.96])
    ax_l.axis("off")

    for ax in (ax_o, ax_c):
        ax.set_xlim(*lay.xlim)
        ax.set_ylim(*lay.ylim)
        for k in range(0, lay.layer_y.shape[0], 2):  # light bands for every other layer
            ax.axhspan(
                lay.layer_y[k] - lay.layer_h[k] / 2 - _BAND_GAP / 2,
                lay.layer_y[k] + lay.layer_h[k] / 2 + _BAND_GAP / 2,
                color="#f3f3f3",
                zorder=0,
                lw=0,
            )
        for p in range(lay.n_pos + 1):
            ax.axvline((p - 0.5) * lay.col_w, color="#e4e4e4", lw=0.6, zorder=0)
        ax.set_xticks(np.arange(lay.n_pos) * lay.col_w)
        ax.set_xticklabels(
            token_labels,
            fontsize=8,
            rotation=40 if rotate else 0,
            ha="right" if rotate else "center",
            rotation_mode="anchor" if rotate else "default",
        )
        ax.set_yticks(lay.layer_y)
        ax.set_yticklabels(lay.layer_names, fontsize=7 if lay.layer_y.shape[0] <= 32 else 5)
        ax.tick_params(length=2, pad=2)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.set_xlabel("token position", fontsize=8)
    ax_o.set_ylabel("layer", fontsize=8)

    # original view: strongest links (thin), then nodes coloured by group
    if lay.links.size:
        idx = lay.links[::-1]  # strongest drawn last, on top
        segs = np.stack([lay.node_xy[c.src[idx]], lay.node_xy[c.dst[idx]]], axis=1)
        cols = np.where(c.weight[idx] >= 0, _POS_COLOR, _NEG_COLOR)
        ax_o.add_collection(
            LineCollection(
                list(segs),
                colors=cols.tolist(),
                linewidths=_link_widths(c.weight[idx], 0.15, 1.6),
                alpha=0.35,
                zorder=1,
            )
        )
    node_colors = np.asarray(lay.group_color)[lay.node_group]
    kinds = np.asarray(c.kinds)
    node_grouped = lay.group_size[lay.node_group] > 1
    for grouped in (False, True):  # grouped nodes on top
        for kind in KINDS:
            sel = np.flatnonzero((kinds == kind) & (node_grouped == grouped))
            if sel.size == 0:
                continue
            ax_o.scatter(
                lay.node_xy[sel, 0],
                lay.node_xy[sel, 1],
                s=_marker_area(kind, 2.0 * lay.node_r[sel]),
                c=node_colors[sel].tolist(),
                marker=_MARKERS[kind],
                edgecolors="#222222" if grouped else "#7a7a7a",
                linewidths=0.7 if grouped else 0.3,
                zorder=4 if grouped else 3,
            )
    shown = f"strongest {lay.links.shape[0]} drawn" if lay.links.shape[0] < c.src.shape[0] else ""
    ax_o.set_title(
        f"original: {c.layers.shape[0]} nodes, {c.src.shape[0]} links"
        + (f" ({shown})" if shown else ""),
        fontsize=9,
    )

    # compressed view
    if lay.gsrc.size:
        order = np.arange(lay.gsrc.shape[0])[::-1]
        segs = np.stack([lay.group_xy[lay.gsrc[order]], lay.group_xy[lay.gdst[order]]], axis=1)
        gw = lay.gweight[order]
        ax_c.add_collection(
            LineCollection(
                list(segs),
                colors=np.where(gw >= 0, _POS_COLOR, _NEG_COLOR).tolist(),
                linewidths=_link_widths(gw, 0.25, 6.0),
                alpha=0.55,
                zorder=1,
            )
        )
    gkinds = np.asarray(lay.group_kind)
    gcolors = np.asarray(lay.group_color)
    for big in (False, True):  # groups of 2+ nodes on top
        for kind in KINDS:
            sel = np.flatnonzero((gkinds == kind) & ((lay.group_size > 1) == big))
            if sel.size == 0:
                continue
            ax_c.scatter(
                lay.group_xy[sel, 0],
                lay.group_xy[sel, 1],
                s=_marker_area(kind, 2.0 * lay.group_r[sel]),
                c=gcolors[sel].tolist(),
                marker=_MARKERS[kind],
                edgecolors="#222222" if big else "#7a7a7a",
                linewidths=0.8 if big else 0.3,
                zorder=3 if big else 2,
            )
    for lab in _place_labels(lay, c.names, max_labels):
        if lab.leader:
            ax_c.plot(
                [lay.group_xy[lab.group, 0], lab.x],
                [lay.group_xy[lab.group, 1], lab.y],
                color="#555555",
                lw=0.5,
                zorder=4.5,
            )
        ax_c.text(
            lab.x,
            lab.y,
            lab.text,
            fontsize=_LABEL_FONT_PT,
            va="center",
            ha=lab.ha,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75},
        )
    n_multi = int(multi.shape[0])
    shown = f"strongest {lay.gsrc.shape[0]} drawn" if lay.gsrc.shape[0] < lay.n_gedges else ""
    ax_c.set_title(
        f"compressed: {lay.group_size.shape[0]} groups ({n_multi} with 2+ nodes), "
        f"{lay.n_gedges} edges" + (f" ({shown})" if shown else ""),
        fontsize=9,
    )

    # legend: kinds, link signs, groups
    handles = [
        Line2D([], [], ls="", marker=_MARKERS[k], color="#9a9a9a", mec="#333333", label=k)
        for k in KINDS
        if k in set(c.kinds)
    ]
    handles += [
        Line2D([], [], color=_POS_COLOR, lw=2, label="positive weight"),
        Line2D([], [], color=_NEG_COLOR, lw=2, label="negative weight"),
        Line2D([], [], ls="", marker="o", color=_SINGLE_COLOR, label="group of one node"),
    ]
    for g in multi[:n_legend_groups].tolist():
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                color=lay.group_color[g],
                mec="#222222",
                label=f"{_short(c.names[lay.group_label[g]], 30)} ({lay.group_size[g]})",
            )
        )
    if multi.shape[0] > n_legend_groups:
        handles.append(
            Line2D([], [], ls="", label=f"… {multi.shape[0] - n_legend_groups} more groups")
        )
    ax_l.legend(
        handles=handles,
        loc="upper left",
        fontsize=7.5,
        frameon=False,
        title="groups (members)",
        title_fontsize=8,
        alignment="left",
    )
    if c.title:
        fig.suptitle(_short(c.title, 160), fontsize=11, x=0.01, ha="left", y=0.995, va="top")
    return fig


# ----------------------------------------------------------------------------------------------
# HTML


def _esc(s: str) -> str:
    return html.escape(_clean(s), quote=True)


def _json_for_script(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _f(v: float) -> str:
    return f"{v:.1f}"


def _svg_shape(
    kind: str, x: float, y: float, r: float, fill: str, cls: str, data: str, extra: str = ""
) -> str:
    attrs = f'class="{cls}" {data} fill="{fill}"{extra}'
    if kind == "feature":
        return f'<circle {attrs} cx="{_f(x)}" cy="{_f(y)}" r="{_f(r)}"/>'
    if kind == "error":
        a = r * 0.87
        side = _f(2 * a)
        return f'<rect {attrs} x="{_f(x - a)}" y="{_f(y - a)}" width="{side}" height="{side}"/>'
    if kind == "embedding":
        a = r * 1.15
        pts = [(x, y - a), (x + a * 0.95, y + a * 0.7), (x - a * 0.95, y + a * 0.7)]
    else:  # logit
        a = r * 1.2
        pts = [(x, y - a), (x + a, y), (x, y + a), (x - a, y)]
    return f'<polygon {attrs} points="{" ".join(f"{_f(px)},{_f(py)}" for px, py in pts)}"/>'


_CSS = """
*{box-sizing:border-box}
body{font:13px system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;height:100vh;
display:flex;flex-direction:column;color:#222}
header{padding:6px 10px;border-bottom:1px solid #ddd;display:flex;gap:8px;align-items:center;
flex-wrap:wrap}
header h1{font-size:15px;margin:0 10px 0 0}
header .hint{color:#777;font-size:12px}
button{font:inherit;padding:3px 10px;border:1px solid #888;background:#fff;border-radius:4px;
cursor:pointer}
button.on{background:#333;color:#fff;border-color:#333}
main{flex:1;display:flex;min-height:0}
#views{flex:1;min-width:0;position:relative}
#views svg{width:100%;height:100%;display:block;cursor:grab;user-select:none}
aside{width:300px;overflow:auto;border-left:1px solid #ddd;padding:6px 10px;font-size:12px}
aside h2{font-size:13px;margin:8px 0 4px}
aside ul{margin:0;padding:0}
.glist{list-style:none;cursor:pointer;padding:1px 3px;border-radius:3px}
.glist:hover{background:#eef}
.glist.on{background:#ffe9a8}
.sw{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:5px;
border:1px solid #555;vertical-align:-1px}
.node,.group{stroke:#333;stroke-width:.6;vector-effect:non-scaling-stroke;cursor:pointer}
[data-one]{stroke:#888;stroke-width:.4}
line.lk{vector-effect:non-scaling-stroke}
line.leader{stroke:#555;stroke-width:.5;vector-effect:non-scaling-stroke}
svg.has-sel .node:not(.sel),svg.has-sel .group:not(.sel){opacity:.15}
svg.has-sel line.lk:not(.sel){opacity:.04}
.node.sel,.group.sel{stroke:#000;stroke-width:2}
.band{fill:#f3f3f3}
.axis{font-size:8px;fill:#444}
.ttl{font-size:10px;fill:#222}
.glabel{font-size:7px;fill:#111;paint-order:stroke;stroke:#fff;stroke-width:2px;
stroke-linejoin:round;pointer-events:none}
#tip{position:fixed;pointer-events:none;background:#fffff4;border:1px solid #999;
padding:4px 7px;max-width:380px;font-size:12px;display:none;z-index:10;
box-shadow:0 1px 4px rgba(0,0,0,.2);white-space:pre-wrap;overflow-wrap:anywhere}
#tip .t0{font-weight:600}
#selinfo{white-space:pre-wrap;overflow-wrap:anywhere}
.legend span{margin-right:8px}
"""

_JS = """
(function(){
"use strict";
var D = JSON.parse(document.getElementById("semot-data").textContent);
var tip = document.getElementById("tip");
var views = {orig: document.getElementById("v-orig"), comp: document.getElementById("v-comp")};
var buttons = {orig: document.getElementById("b-orig"), comp: document.getElementById("b-comp")};
var nodeEls = views.orig.querySelectorAll(".node");
var linkEls = views.orig.querySelectorAll("line.lk");
var groupEls = views.comp.querySelectorAll(".group");
var glinkEls = views.comp.querySelectorAll("line.lk");
var listEls = document.querySelectorAll(".glist");
var selinfo = document.getElementById("selinfo");
var current = "orig", sel = -1;
function show(which){
  current = which;
  for (var k in views){ views[k].style.display = (k === which) ? "" : "none";
    buttons[k].classList.toggle("on", k === which); }
}
buttons.orig.addEventListener("click", function(){ show("orig"); });
buttons.comp.addEventListener("click", function(){ show("comp"); });
function tok(p){ return (p < D.tokens.length) ? JSON.stringify(D.tokens[p]) : ""; }
function gname(g){ var n = D.groups[g].n; return n ? n : "(unnamed)"; }
function nodeLines(i){
  var n = D.nodes[i], g = D.groups[n.g];
  return [n.t ? n.t : "(no label)",
    n.k + ", layer " + n.ln + ", position " + n.p + " " + tok(n.p),
    "group: " + gname(n.g) + " (" + g.m.length + (g.m.length === 1 ? " node)" : " nodes)")];
}
function groupLines(g){
  var G = D.groups[g], out = [gname(g), G.m.length + (G.m.length === 1 ? " node" : " nodes") +
    ", mean layer " + G.l + ", mean position " + G.p];
  var shown = G.m.slice(0, 12).map(function(i){ var n = D.nodes[i];
    return "  " + n.k + ", layer " + n.ln + ", position " + n.p + ": " +
      (n.t ? n.t : "(no label)"); });
  if (G.m.length > 12) shown.push("  \\u2026 " + (G.m.length - 12) + " more");
  return out.concat(shown);
}
function fill(el, lines){
  el.textContent = "";
  lines.forEach(function(s, k){ var d = document.createElement("div"); d.textContent = s;
    if (k === 0) d.className = "t0"; el.appendChild(d); });
}
function hoverLines(t){
  if (!t || !t.getAttribute) return null;
  if (t.classList.contains("node")) return nodeLines(+t.getAttribute("data-i"));
  if (t.classList.contains("group")) return groupLines(+t.getAttribute("data-g"));
  return null;
}
document.addEventListener("mousemove", function(ev){
  var lines = dragging ? null : hoverLines(ev.target);
  if (!lines){ tip.style.display = "none"; return; }
  fill(tip, lines); tip.style.display = "block";
  var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
  if (x + w > window.innerWidth) x = ev.clientX - w - 10;
  if (y + h > window.innerHeight) y = Math.max(0, ev.clientY - h - 10);
  tip.style.left = x + "px"; tip.style.top = y + "px";
});
function select(g){
  sel = (g === sel) ? -1 : g;
  var on = sel >= 0;
  nodeEls.forEach(function(el){ el.classList.toggle("sel", on &&
    D.nodes[+el.getAttribute("data-i")].g === sel); });
  linkEls.forEach(function(el){ el.classList.toggle("sel", on &&
    (D.nodes[+el.getAttribute("data-s")].g === sel ||
     D.nodes[+el.getAttribute("data-t")].g === sel)); });
  groupEls.forEach(function(el){ el.classList.toggle("sel", +el.getAttribute("data-g") === sel); });
  glinkEls.forEach(function(el){ el.classList.toggle("sel", on &&
    (+el.getAttribute("data-s") === sel || +el.getAttribute("data-t") === sel)); });
  listEls.forEach(function(el){ el.classList.toggle("on", +el.getAttribute("data-g") === sel); });
  views.orig.classList.toggle("has-sel", on); views.comp.classList.toggle("has-sel", on);
  if (on) fill(selinfo, groupLines(sel)); else selinfo.textContent = "(click a group)";
}
listEls.forEach(function(el){ el.addEventListener("click", function(){
  select(+el.getAttribute("data-g")); }); });
function clickOn(t){
  if (t.classList && t.classList.contains("node")){
    select(D.nodes[+t.getAttribute("data-i")].g);
  } else if (t.classList && t.classList.contains("group")){
    var g = +t.getAttribute("data-g"); if (g !== sel) select(g); show("orig");
  } else if (sel >= 0) select(sel);
}
var dragging = null;
function getVB(svg){ return svg.getAttribute("viewBox").split(/[ ,]+/).map(Number); }
function setVB(svg, v){ svg.setAttribute("viewBox", v.map(function(a){
  return a.toFixed(2); }).join(" ")); }
function panZoom(svg){
  var home = svg.getAttribute("viewBox");
  function scale(v){ var r = svg.getBoundingClientRect();
    return Math.max(v[2] / Math.max(r.width, 1), v[3] / Math.max(r.height, 1)); }
  svg.addEventListener("wheel", function(ev){
    ev.preventDefault();
    var v = getVB(svg), r = svg.getBoundingClientRect(), s = scale(v);
    var cx = v[0] + v[2] / 2 + (ev.clientX - r.left - r.width / 2) * s;
    var cy = v[1] + v[3] / 2 + (ev.clientY - r.top - r.height / 2) * s;
    var f = Math.exp(Math.max(-1, Math.min(1, ev.deltaY * 0.002)));
    setVB(svg, [cx - (cx - v[0]) * f, cy - (cy - v[1]) * f, v[2] * f, v[3] * f]);
  }, {passive: false});
  svg.addEventListener("mousedown", function(ev){
    if (ev.button !== 0) return;
    var v = getVB(svg);
    dragging = {svg: svg, x: ev.clientX, y: ev.clientY, v: v, moved: false, s: scale(v),
      target: ev.target};
  });
  svg.addEventListener("dblclick", function(){ svg.setAttribute("viewBox", home); });
}
window.addEventListener("mousemove", function(ev){
  if (!dragging) return;
  var dx = ev.clientX - dragging.x, dy = ev.clientY - dragging.y;
  if (Math.abs(dx) + Math.abs(dy) > 4) dragging.moved = true;
  if (!dragging.moved) return;
  var v = dragging.v;
  setVB(dragging.svg, [v[0] - dx * dragging.s, v[1] - dy * dragging.s, v[2], v[3]]);
});
window.addEventListener("mouseup", function(){
  if (!dragging) return;
  var d = dragging; dragging = null;
  if (!d.moved) clickOn(d.target);
});
document.addEventListener("keydown", function(ev){
  if (ev.key === "Escape" && sel >= 0) select(sel);
  if (ev.key === "t") show(current === "orig" ? "comp" : "orig");
});
panZoom(views.orig); panZoom(views.comp);
show("orig");
})();
"""


def write_html(
    pic: GraphPicture,
    labels: npt.NDArray[np.int64],
    names: Sequence[str],
    path: str | Path,
    *,
    max_links: int = 2000,
    max_labels: int = 60,
) -> Path:
    """Write one self-contained HTML page with both views of the graph.

    The page holds inline SVG, CSS and a little JavaScript and loads nothing from elsewhere
    (it works offline). It shows the original graph coloured by group or the compressed graph
    (one node per group), with buttons (or the key ``t``) to toggle between them. Hovering a
    node shows its label, kind, layer, position and group name; hovering a group shows its
    members. Clicking a group (in the compressed view or in the list on the right), or a node
    of the original view, highlights the group's members and their links in the original view
    (clicking in the compressed view also switches to the original view); clicking again or
    Escape clears it. Mouse wheel zooms, dragging pans, double click resets. All text that
    comes from the graph (labels, group names, tokens, title) is escaped.

    Parameters
    ----------
    pic : GraphPicture
        The graph.
    labels : ndarray of int64, shape (n,)
        ``labels[i]`` is the group id of node ``i``, an index into `names`.
    names : sequence of str
        Name of each group id. Unused ids are allowed.
    path : str or Path
        Output file (conventionally ``.html``).
    max_links : int, default 2000
        How many of the strongest links to draw in each view.
    max_labels : int, default 60
        At most this many group names are written next to groups in the compressed view
        (every group's name still shows on hover and in the list).

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    ValueError
        On inconsistent input; the message names the argument.
    """
    path = Path(path)
    _check_max_labels(max_labels)
    c = _check(pic, labels, names, max_links)
    lay = _layout(c, max_links)
    path.write_text(_html_page(c, lay, max_labels), encoding="utf-8")
    return path


def _html_page(c: _Checked, lay: _Layout, max_labels: int) -> str:
    s = _SVG_SCALE
    x0, x1 = lay.xlim
    y0, y1 = lay.ylim

    def sx(x: Any) -> Any:
        return (np.asarray(x) - x0) * s

    def sy(y: Any) -> Any:
        return (y1 - np.asarray(y)) * s

    token_labels = [_token_label(t) for t in c.tokens] or [str(p) for p in range(lay.n_pos)]
    left, bottom, top = 52.0, 86.0, 30.0
    vb = (
        f"{_f(-left)} {_f(-top)} {_f((x1 - x0) * s + left + 10)} {_f((y1 - y0) * s + top + bottom)}"
    )

    def frame(title: str) -> list[str]:
        out = [f'<text class="ttl" x="0" y="-12">{_esc(title)}</text>', '<g class="frame">']
        for k in range(0, lay.layer_y.shape[0], 2):
            top_y = sy(lay.layer_y[k] + lay.layer_h[k] / 2 + _BAND_GAP / 2)
            out.append(
                f'<rect class="band" x="0" y="{_f(top_y)}" width="{_f((x1 - x0) * s)}" '
                f'height="{_f((lay.layer_h[k] + _BAND_GAP) * s)}"/>'
            )
        for k, name in enumerate(lay.layer_names):
            out.append(
                f'<text class="axis" x="-6" y="{_f(sy(lay.layer_y[k]) + 3.5)}" '
                f'text-anchor="end">{_esc(name)}</text>'
            )
        base = (y1 - y0) * s + 14
        for p, t in enumerate(token_labels):
            x = sx(p * lay.col_w)
            out.append(
                f'<text class="axis" x="{_f(x)}" y="{_f(base)}" text-anchor="end" '
                f'transform="rotate(-40 {_f(x)} {_f(base)})">{_esc(t)}</text>'
            )
        out.append("</g>")
        return out

    def link_lines(
        xy_s: Any, xy_t: Any, w: Any, s_idx: Any, t_idx: Any, lo: float, hi: float, op: float
    ) -> list[str]:
        out = ['<g class="links">']
        widths = _link_widths(np.asarray(w), lo, hi)
        opacity = _link_widths(np.asarray(w), 0.25 * op, op)  # weak links fade
        for k in range(len(w) - 1, -1, -1):  # strongest last, on top
            col = _POS_COLOR if w[k] >= 0 else _NEG_COLOR
            out.append(
                f'<line class="lk" data-s="{s_idx[k]}" data-t="{t_idx[k]}" '
                f'x1="{_f(sx(xy_s[k][0]))}" y1="{_f(sy(xy_s[k][1]))}" '
                f'x2="{_f(sx(xy_t[k][0]))}" y2="{_f(sy(xy_t[k][1]))}" stroke="{col}" '
                f'stroke-width="{widths[k]:.2f}" stroke-opacity="{opacity[k]:.2f}"/>'
            )
        out.append("</g>")
        return out

    n = c.layers.shape[0]
    m = c.src.shape[0]
    n_groups = lay.group_size.shape[0]

    # original view
    orig: list[str] = [f'<svg id="v-orig" viewBox="{vb}" role="img" aria-label="original graph">']
    shown = f", strongest {lay.links.shape[0]} drawn" if lay.links.shape[0] < m else ""
    orig += frame(f"original: {n} nodes, {m} links{shown}")
    li = lay.links
    orig += link_lines(
        lay.node_xy[c.src[li]], lay.node_xy[c.dst[li]], c.weight[li], c.src[li], c.dst[li],
        0.3, 2.5, 0.6,
    )  # fmt: skip
    orig.append('<g class="nodes">')
    for i in range(n):
        g = int(lay.node_group[i])
        single = lay.group_size[g] == 1
        orig.append(
            _svg_shape(
                c.kinds[i],
                float(sx(lay.node_xy[i, 0])),
                float(sy(lay.node_xy[i, 1])),
                float(lay.node_r[i] * s),
                lay.group_color[g],
                "node",
                f'data-i="{i}" data-g="{g}"',
                ' data-one="1"' if single else "",
            )
        )
    orig += ["</g>", "</svg>"]

    # compressed view
    comp: list[str] = [
        f'<svg id="v-comp" viewBox="{vb}" role="img" aria-label="compressed graph" '
        'style="display:none">'
    ]
    shown = f", strongest {lay.gsrc.shape[0]} drawn" if lay.gsrc.shape[0] < lay.n_gedges else ""
    n_multi = int((lay.group_size > 1).sum())
    comp += frame(
        f"compressed: {n_groups} groups ({n_multi} with 2+ nodes), {lay.n_gedges} edges{shown}"
    )
    comp += link_lines(
        lay.group_xy[lay.gsrc], lay.group_xy[lay.gdst], lay.gweight, lay.gsrc, lay.gdst,
        0.5, 9.0, 0.75,
    )  # fmt: skip
    comp.append('<g class="groups">')
    order = np.argsort(-lay.group_size, kind="stable")[::-1]  # big groups drawn last
    for g in order.tolist():
        comp.append(
            _svg_shape(
                lay.group_kind[g],
                float(sx(lay.group_xy[g, 0])),
                float(sy(lay.group_xy[g, 1])),
                float(lay.group_r[g] * s),
                lay.group_color[g],
                "group",
                f'data-g="{g}"',
                ' data-one="1"' if lay.group_size[g] == 1 else "",
            )
        )
    comp.append("</g>")
    comp.append('<g class="glabels">')
    anchor = {"left": "start", "right": "end", "center": "middle"}
    for lab in _place_labels(lay, c.names, max_labels):
        if lab.leader:
            comp.append(
                f'<line class="leader" x1="{_f(sx(lay.group_xy[lab.group, 0]))}" '
                f'y1="{_f(sy(lay.group_xy[lab.group, 1]))}" x2="{_f(sx(lab.x))}" '
                f'y2="{_f(sy(lab.y))}"/>'
            )
        comp.append(
            f'<text class="glabel" x="{_f(sx(lab.x))}" y="{_f(sy(lab.y) + 2.5)}" '
            f'text-anchor="{anchor[lab.ha]}">{_esc(lab.text)}</text>'
        )
    comp += ["</g>", "</svg>"]

    # side panel: groups
    def item(g: int) -> str:
        name = c.names[lay.group_label[g]]
        return (
            f'<li class="glist" data-g="{g}"><span class="sw" '
            f'style="background:{lay.group_color[g]}"></span>'
            f"{_esc(name) if name.strip() else '<i>(unnamed)</i>'} ({lay.group_size[g]})</li>"
        )

    multi = [g for g in range(n_groups) if lay.group_size[g] > 1]
    singles = [g for g in range(n_groups) if lay.group_size[g] == 1]
    side = ["<aside>", "<h2>Selected group</h2>", '<div id="selinfo">(click a group)</div>']
    side.append(f"<h2>Groups with 2+ nodes ({len(multi)})</h2><ul>")
    side += [item(g) for g in multi]
    side.append("</ul>")
    if singles:
        side.append(
            f"<details><summary>Single-node groups ({len(singles)})</summary><ul>"
            + "".join(item(g) for g in singles)
            + "</ul></details>"
        )
    present = [k for k in KINDS if k in set(c.kinds)]
    shapes = {"feature": "\u25cf", "error": "\u25a0", "embedding": "\u25b2", "logit": "\u25c6"}
    side.append(
        '<h2>Legend</h2><div class="legend">'
        + "".join(f"<span>{shapes[k]} {k}</span>" for k in present)
        + f'<br><span style="color:{_POS_COLOR}">\u2501 positive</span>'
        f'<span style="color:{_NEG_COLOR}">\u2501 negative</span>'
        f'<br><span style="color:{_SINGLE_COLOR}">\u25cf</span>group of one node (grey)'
        "<br>x: token position, y: layer. Links inside a group are dropped in the "
        "compressed view; edges between groups are summed weights.</div>"
    )
    side.append("</aside>")

    members: list[list[int]] = [[] for _ in range(n_groups)]
    for i, g in enumerate(lay.node_group.tolist()):
        members[g].append(i)
    groups = [
        {
            "n": _clean(c.names[lay.group_label[g]]),
            "m": mem,
            "l": round(float(c.layers[mem].mean()), 2),
            "p": round(float(c.positions[mem].mean()), 2),
        }
        for g, mem in enumerate(members)
    ]
    data = {
        "tokens": [_clean(t) for t in c.tokens],
        "nodes": [
            {
                "t": _clean(c.texts[i]),
                "k": c.kinds[i],
                "ln": lay.layer_names[int(np.searchsorted(lay.layer_values, c.layers[i]))],
                "p": int(c.positions[i]),
                "g": int(lay.node_group[i]),
            }
            for i in range(n)
        ],
        "groups": groups,
    }

    title = c.title or "attribution graph"
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_esc(title)}</h1>",
        f'<button id="b-orig" class="on">Original ({n} nodes)</button>',
        f'<button id="b-comp">Compressed ({n_groups} groups)</button>',
        '<span class="hint">hover for details \u00b7 click a group to highlight its members '
        "\u00b7 wheel zooms, drag pans, double click resets \u00b7 t toggles</span></header>",
        '<main><div id="views">',
        *orig,
        *comp,
        "</div>",
        *side,
        "</main>",
        '<div id="tip"></div>',
        f'<script type="application/json" id="semot-data">{_json_for_script(data)}</script>',
        f"<script>{_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(page) + "\n"
