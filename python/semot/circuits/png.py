"""The PNG or SVG picture of an attribution graph before and after compression (matplotlib).

:func:`plot_compression` draws, side by side, the original graph coloured by group and the
compressed graph (one node per group), on the layout of :mod:`semot.circuits.layout`.
matplotlib is imported when a picture is drawn, with the Agg backend only (files, never a
window), so importing this module does not import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot.circuits.layout import (
    BAND_GAP,
    KINDS,
    LABEL_FONT_PT,
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
    shorten,
    token_label,
)

__all__ = ["plot_compression"]

_MARKERS = {"feature": "o", "error": "s", "embedding": "^", "logit": "D"}
# Marker area factors so that the four shapes look about equally large.
_MARKER_AREA = {"feature": 1.0, "error": 0.75, "embedding": 1.1, "logit": 0.7}


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
    check_max_labels(max_labels)
    c = check_picture(pic, labels, names, max_links)
    lay = compute_layout(c, max_links)
    plt = _plt()
    with plt.rc_context({"text.parse_math": False, "text.usetex": False, "svg.hashsalt": "semot"}):
        fig = _figure(plt, c, lay, max_labels)
        try:
            meta: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
            fig.savefig(path, format=fmt, dpi=fig.dpi, metadata=meta)
        finally:
            plt.close(fig)
    return path


def _figure(plt: Any, c: CheckedPicture, lay: Layout, max_labels: int) -> Any:
    from matplotlib.lines import Line2D

    w = lay.xlim[1] - lay.xlim[0]
    h = lay.ylim[1] - lay.ylim[0]
    token_labels = [token_label(t) for t in c.tokens] or [str(p) for p in range(lay.n_pos)]
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
                lay.layer_y[k] - lay.layer_h[k] / 2 - BAND_GAP / 2,
                lay.layer_y[k] + lay.layer_h[k] / 2 + BAND_GAP / 2,
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
    links = lay.links
    _draw_links(
        ax_o,
        lay.node_xy[c.src[links]],
        lay.node_xy[c.dst[links]],
        c.weight[links],
        widths=(0.15, 1.6),
        alpha=0.35,
    )
    _scatter_by_kind(
        ax_o,
        lay.node_xy,
        lay.node_r,
        np.asarray(lay.group_color)[lay.node_group],
        np.asarray(c.kinds),
        lay.group_size[lay.node_group] > 1,
        grouped_linewidth=0.7,
        zorder=3,
    )
    shown = f"strongest {lay.links.shape[0]} drawn" if lay.links.shape[0] < c.src.shape[0] else ""
    ax_o.set_title(
        f"original: {c.layers.shape[0]} nodes, {c.src.shape[0]} links"
        + (f" ({shown})" if shown else ""),
        fontsize=9,
    )

    # compressed view
    _draw_links(
        ax_c,
        lay.group_xy[lay.gsrc],
        lay.group_xy[lay.gdst],
        lay.gweight,
        widths=(0.25, 6.0),
        alpha=0.55,
    )
    _scatter_by_kind(
        ax_c,
        lay.group_xy,
        lay.group_r,
        np.asarray(lay.group_color),
        np.asarray(lay.group_kind),
        lay.group_size > 1,
        grouped_linewidth=0.8,
        zorder=2,
    )
    for lab in place_labels(lay, c.names, max_labels):
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
            fontsize=LABEL_FONT_PT,
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
        Line2D([], [], color=POSITIVE_COLOR, lw=2, label="positive weight"),
        Line2D([], [], color=NEGATIVE_COLOR, lw=2, label="negative weight"),
        Line2D([], [], ls="", marker="o", color=SINGLE_NODE_COLOR, label="group of one node"),
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
                label=f"{shorten(c.names[lay.group_label[g]], 30)} ({lay.group_size[g]})",
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
        fig.suptitle(shorten(c.title, 160), fontsize=11, x=0.01, ha="left", y=0.995, va="top")
    return fig


def _scatter_by_kind(
    ax: Any,
    xy: npt.NDArray[np.float64],
    radius: npt.NDArray[np.float64],
    colors: npt.NDArray[np.str_],
    kinds: npt.NDArray[np.str_],
    grouped: npt.NDArray[np.bool_],
    *,
    grouped_linewidth: float,
    zorder: float,
) -> None:
    """Draw markers of radius ``radius`` at ``xy``, one shape per kind.

    Markers with ``grouped`` set (nodes in, or groups of, two or more nodes) are drawn on top
    of the others, one ``zorder`` higher, with a darker and thicker outline.
    """
    for on_top in (False, True):
        for kind in KINDS:
            sel = np.flatnonzero((kinds == kind) & (grouped == on_top))
            if sel.size == 0:
                continue
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=_marker_area(kind, 2.0 * radius[sel]),
                c=colors[sel].tolist(),
                marker=_MARKERS[kind],
                edgecolors="#222222" if on_top else "#7a7a7a",
                linewidths=grouped_linewidth if on_top else 0.3,
                zorder=zorder + 1 if on_top else zorder,
            )


def _draw_links(
    ax: Any,
    start: npt.NDArray[np.float64],
    end: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    *,
    widths: tuple[float, float],
    alpha: float,
) -> None:
    """Draw links from ``start`` to ``end``, given strongest first, the strongest on top.

    Blue for a positive weight, red for a negative one; the width grows with ``|weight|``
    from ``widths[0]`` to ``widths[1]`` (:func:`~semot.circuits.layout.link_widths`).
    """
    if weight.size == 0:
        return
    from matplotlib.collections import LineCollection

    segments = np.stack([start[::-1], end[::-1]], axis=1)
    w = weight[::-1]
    ax.add_collection(
        LineCollection(
            list(segments),
            colors=np.where(w >= 0, POSITIVE_COLOR, NEGATIVE_COLOR).tolist(),
            linewidths=link_widths(w, *widths),
            alpha=alpha,
            zorder=1,
        )
    )
