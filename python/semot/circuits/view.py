"""Pictures of an attribution graph before and after compression into groups (supernodes).

Two outputs share one layout (:mod:`semot.circuits.layout`):

- :func:`semot.circuits.png.plot_compression` writes a side-by-side PNG or SVG (matplotlib):
  the original graph coloured by group on the left, the compressed graph (one node per group)
  on the right;
- :func:`semot.circuits.html_page.write_html` writes one self-contained HTML page (works
  offline) with both views, a toggle between them, hover details and group highlighting.

Both draw plain arrays (:class:`~semot.circuits.layout.GraphPicture`). This module makes them
from an :class:`~semot.circuits.graph.AttributionGraph` and a
:class:`~semot.circuits.compress.CompressionResult`, for ``semot compress`` and ``semot demo``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semot.circuits.compress import CompressionResult
from semot.circuits.graph import AttributionGraph
from semot.circuits.html_page import write_html
from semot.circuits.layout import GraphPicture
from semot.circuits.png import plot_compression

__all__ = ["display_names", "graph_picture", "write_pictures"]


def graph_picture(graph: AttributionGraph, title: str | None = None) -> GraphPicture:
    """Return the plain-array view of a graph that the pictures draw.

    Parameters
    ----------
    graph : AttributionGraph
        The graph; each node is labelled with its clerp.
    title : str, optional
        Title of the pictures; default ``metadata.slug``.

    Returns
    -------
    GraphPicture
        Layers, positions, kinds, clerps, links and prompt tokens of the graph.
    """
    return GraphPicture(
        layers=graph.layers,
        positions=graph.positions,
        kinds=list(graph.kinds),
        texts=list(graph.clerps),
        src=graph.src,
        dst=graph.dst,
        weight=graph.weight,
        prompt_tokens=list(graph.prompt_tokens),
        title=title if title is not None else str(graph.raw.get("metadata", {}).get("slug", "")),
    )


def display_names(labels: Any, names: Sequence[str]) -> list[str]:
    """Return the group names to write in pictures: ``""`` for groups of one node.

    Singleton groups stay unlabelled so that the names of real groups stay legible.

    Parameters
    ----------
    labels : array_like of int, shape (n_nodes,)
        Group id per node, an index into ``names``.
    names : sequence of str
        Name of each group id.

    Returns
    -------
    list of str
        ``names[g]`` when group ``g`` has two or more members, else ``""``.
    """
    sizes = np.bincount(np.asarray(labels, np.int64), minlength=len(names))
    return [n if sizes[g] > 1 else "" for g, n in enumerate(names)]


def write_pictures(
    graph: AttributionGraph,
    result: CompressionResult,
    *,
    plot: str | os.PathLike[str] | None = None,
    html: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> list[Path]:
    """Draw a graph before and after a compression, as a PNG/SVG figure and/or an HTML page.

    Parameters
    ----------
    graph : AttributionGraph
        The graph that was compressed.
    result : CompressionResult
        Its compression (:func:`semot.circuits.compress.compress`); groups of two or more
        nodes are named (:func:`display_names`).
    plot : str or os.PathLike, optional
        ``.png`` or ``.svg`` file for :func:`semot.circuits.png.plot_compression`.
    html : str or os.PathLike, optional
        File for :func:`semot.circuits.html_page.write_html`.
    title : str, optional
        Title of the pictures (see :func:`graph_picture`).

    Returns
    -------
    list of Path
        The files written, figure first.
    """
    pic = graph_picture(graph, title)
    names = display_names(result.labels, result.names)
    written: list[Path] = []
    if plot is not None:
        written.append(plot_compression(pic, result.labels, names, Path(plot)))
    if html is not None:
        written.append(write_html(pic, result.labels, names, Path(html)))
    return written
