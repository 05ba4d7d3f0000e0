"""The self-contained HTML page of an attribution graph before and after compression.

:func:`write_html` writes one page with inline SVG, CSS and JavaScript that loads nothing from
elsewhere (it works offline): both views on the layout of :mod:`semot.circuits.layout`, a
toggle between them, hover details and group highlighting. The stylesheet and the script are
package data (``assets/graph_view.css`` and ``assets/graph_view.js``), inlined into every page.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.htmljson import json_for_script
from semot.circuits.layout import (
    BAND_GAP,
    KINDS,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    SINGLE_NODE_COLOR,
    CheckedPicture,
    GraphPicture,
    Layout,
    check_max_labels,
    check_picture,
    compute_layout,
    link_widths,
    place_labels,
    replace_control_chars,
    token_label,
)

__all__ = ["write_html"]

_SVG_SCALE = 72.0  # HTML user units per inch


@cache
def _asset(name: str) -> str:
    """Return the text of a file in ``semot/circuits/assets`` (package data)."""
    return (resources.files("semot.circuits") / "assets" / name).read_text(encoding="utf-8")


def _esc(s: str) -> str:
    return html.escape(replace_control_chars(s), quote=True)


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
    check_max_labels(max_labels)
    c = check_picture(pic, labels, names, max_links)
    lay = compute_layout(c, max_links)
    path.write_text(_html_page(c, lay, max_labels), encoding="utf-8")
    return path


def _html_page(c: CheckedPicture, lay: Layout, max_labels: int) -> str:
    s = _SVG_SCALE
    x0, x1 = lay.xlim
    y0, y1 = lay.ylim

    def sx(x: Any) -> Any:
        return (np.asarray(x) - x0) * s

    def sy(y: Any) -> Any:
        return (y1 - np.asarray(y)) * s

    token_labels = [token_label(t) for t in c.tokens] or [str(p) for p in range(lay.n_pos)]
    left, bottom, top = 52.0, 86.0, 30.0
    vb = (
        f"{_f(-left)} {_f(-top)} {_f((x1 - x0) * s + left + 10)} {_f((y1 - y0) * s + top + bottom)}"
    )

    def frame(title: str) -> list[str]:
        out = [f'<text class="ttl" x="0" y="-12">{_esc(title)}</text>', '<g class="frame">']
        for k in range(0, lay.layer_y.shape[0], 2):
            top_y = sy(lay.layer_y[k] + lay.layer_h[k] / 2 + BAND_GAP / 2)
            out.append(
                f'<rect class="band" x="0" y="{_f(top_y)}" width="{_f((x1 - x0) * s)}" '
                f'height="{_f((lay.layer_h[k] + BAND_GAP) * s)}"/>'
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
        widths = link_widths(np.asarray(w), lo, hi)
        opacity = link_widths(np.asarray(w), 0.25 * op, op)  # weak links fade
        for k in range(len(w) - 1, -1, -1):  # strongest last, on top
            col = POSITIVE_COLOR if w[k] >= 0 else NEGATIVE_COLOR
            out.append(
                f'<line class="lk" data-s="{s_idx[k]}" data-t="{t_idx[k]}" '
                f'x1="{_f(sx(xy_s[k][0]))}" y1="{_f(sy(xy_s[k][1]))}" '
                f'x2="{_f(sx(xy_t[k][0]))}" y2="{_f(sy(xy_t[k][1]))}" stroke="{col}" '
                f'stroke-width="{widths[k]:.2f}" stroke-opacity="{opacity[k]:.2f}"/>'
            )
        out.append("</g>")
        return out

    def markers(
        cls: str,
        indices: Iterable[int],
        kinds: Sequence[str],
        xy: npt.NDArray[np.float64],
        radius: npt.NDArray[np.float64],
        group_of: npt.NDArray[np.int64],
        data: Callable[[int, int], str],
    ) -> list[str]:
        # One shape per node (or group), coloured by group; groups of one node get data-one,
        # which the stylesheet outlines lighter.
        out = [f'<g class="{cls}s">']
        for k in indices:
            g = int(group_of[k])
            out.append(
                _svg_shape(
                    kinds[k],
                    float(sx(xy[k, 0])),
                    float(sy(xy[k, 1])),
                    float(radius[k] * s),
                    lay.group_color[g],
                    cls,
                    data(k, g),
                    ' data-one="1"' if lay.group_size[g] == 1 else "",
                )
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
    orig += markers(
        "node", range(n), c.kinds, lay.node_xy, lay.node_r, lay.node_group,
        lambda i, g: f'data-i="{i}" data-g="{g}"',
    )  # fmt: skip
    orig.append("</svg>")

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
    order = np.argsort(-lay.group_size, kind="stable")[::-1]  # big groups drawn last
    comp += markers(
        "group", order.tolist(), lay.group_kind, lay.group_xy, lay.group_r,
        np.arange(n_groups), lambda g, _: f'data-g="{g}"',
    )  # fmt: skip
    comp.append('<g class="glabels">')
    anchor = {"left": "start", "right": "end", "center": "middle"}
    for lab in place_labels(lay, c.names, max_labels):
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
        + f'<br><span style="color:{POSITIVE_COLOR}">\u2501 positive</span>'
        f'<span style="color:{NEGATIVE_COLOR}">\u2501 negative</span>'
        f'<br><span style="color:{SINGLE_NODE_COLOR}">\u25cf</span>group of one node (grey)'
        "<br>x: token position, y: layer. Links inside a group are dropped in the "
        "compressed view; edges between groups are summed weights.</div>"
    )
    side.append("</aside>")

    members: list[list[int]] = [[] for _ in range(n_groups)]
    for i, g in enumerate(lay.node_group.tolist()):
        members[g].append(i)
    groups = [
        {
            "n": replace_control_chars(c.names[lay.group_label[g]]),
            "m": mem,
            "l": round(float(c.layers[mem].mean()), 2),
            "p": round(float(c.positions[mem].mean()), 2),
        }
        for g, mem in enumerate(members)
    ]
    data = {
        "tokens": [replace_control_chars(t) for t in c.tokens],
        "nodes": [
            {
                "t": replace_control_chars(c.texts[i]),
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
        f"<style>\n{_asset('graph_view.css')}</style></head><body>",
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
        f'<script type="application/json" id="semot-data">{json_for_script(data)}</script>',
        f"<script>\n{_asset('graph_view.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(page) + "\n"
