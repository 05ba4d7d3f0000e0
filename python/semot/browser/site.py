"""Write the feature browser: a static site that opens from disk, offline, with no server.

Layout of ``out/``:

- ``index.html``: the page (static: it holds no data); ``assets/browser.js`` and
  ``assets/browser.css`` (package data, copied);
- ``data/meta.js``: sites, frames, chain, what else exists; ``data/vocab.js``: the string of
  every token id shown;
- ``data/s<j>/index.js``: the index columns of site ``j`` (:func:`~semot.browser.records.
  site_records`); ``data/s<j>/f<k>.js``: records of features ``k * shard .. (k + 1) * shard - 1``
  of site ``j`` (in the site's order), loaded when a page needs them;
- ``data/chains.js`` and ``data/supernodes.js`` when a chain or a graph is given;
- ``pairs.csv`` / ``pairs.parquet`` (:func:`~semot.browser.export.feature_pairs`) and
  ``supernodes.json`` (the graph with ``qParams.supernodes``, Neuronpedia's format).

Every data file is a script ``semotData("<key>", <JSON>);``: pages opened from ``file://``
may load scripts but not ``fetch()`` files (Chromium blocks it), so the JSON travels as
JavaScript, escaped by :func:`semot._utils.htmljson.json_for_script`. The page inserts every
string from the data as text (``textContent``), never as HTML.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from semot._utils.atomic import atomic_write_text
from semot._utils.checks import check_positive_int
from semot._utils.htmljson import json_for_script
from semot.browser.export import feature_pairs
from semot.browser.inputs import (
    load_contexts,
    load_frames,
    load_sites,
    resolve_chain,
    site_layer,
)
from semot.browser.records import chain_rows, site_records, target_rows

__all__ = ["BrowserSite", "write_browser"]

#: The file that marks a directory as a browser semot wrote (it may be replaced).
MARKER = "semot-browser.json"
_ASSETS = ("browser.js", "browser.css")


@dataclass
class BrowserSite:
    """What :func:`write_browser` wrote.

    Attributes
    ----------
    index : Path
        ``out/index.html``; open it in a browser.
    n_features : dict of str to int
        Features per site.
    files : list of Path
        The tables and JSON written beside the page (pairs, supernodes).
    """

    index: Path
    n_features: dict[str, int]
    files: list[Path] = field(default_factory=list)


def _script(key: str, value: Any) -> str:
    return f"semotData({json.dumps(key)},{json_for_script(value)});\n"


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file() and not overwrite:
        raise ValueError(
            f"out: {out} is not empty and holds no browser written by semot; pass "
            "overwrite=True to write into it"
        )


def write_browser(
    run: Any,
    out: str | os.PathLike[str],
    *,
    matches: Sequence[Any] = (),
    chain: Sequence[str] | None = None,
    graph: Any = None,
    tokens: Any = None,
    tokenizer: Any = None,
    labels: Mapping[str, Mapping[int, str]] | None = None,
    n_top: int = 8,
    n_sampled: int = 8,
    k: int = 5,
    before: int = 12,
    after: int = 4,
    shard_size: int = 128,
    title: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> BrowserSite:
    """Write a self-contained static site to read features, their matches and supernodes.

    The index lists the features of a site (search by id, token or label; sort by distance,
    margin, density, firing count or matched; pages of 100). A feature's page shows its top
    and sampled contexts (the tokens around the firing position, the firing token shaded by
    its activation relative to the feature's largest), its activation histogram and density,
    its best targets in every target site with distance and margin and each target's top
    contexts beside it, and the chain through it drawn as a path. The supernode page lists
    each group of ``graph`` with its members' contexts.

    Parameters
    ----------
    run : path or mapping of str to FeatureDistributions
        A ``semot collect`` run directory (its token contexts are read from
        ``contexts.safetensors``), a FeatureDistributions directory, or loaded sites.
    out : path
        Output directory (created; a browser written there before is replaced).
    matches : sequence
        Match frames: DataFrames whose ``attrs`` name ``source_site`` and ``target_site``
        (what ``semot match`` stores in parquet files), such parquet paths, or tuples
        ``(source site, target site, frame or path)``. Sites by name, hook or layer number.
    chain : sequence of str, optional
        Sites to chain through, in order (``semot.chain`` of the frames between consecutive
        ones, which must be among ``matches``).
    graph : AttributionGraph or path, optional
        A graph with ``qParams.supernodes`` (``semot compress`` output); its feature nodes are
        looked up in the run's sites by (layer, feature index).
    tokens : array of int (n_sequences, context_length) or TokenContexts, optional
        The token ids the run was collected on; needed when the run stores no contexts
        (runs written by older semot, or sites given in memory).
    tokenizer : tokenizer, mapping, sequence of str or callable, optional
        Strings of the token ids (:func:`semot.features.contexts.token_strings`); needed when
        the run stores none.
    labels : mapping of site to mapping of feature id to str, optional
        A label per feature, shown and searched.
    n_top, n_sampled : int
        Contexts per feature: the largest activations, then a uniform random sample of the
        other sampled points (``seed``).
    k : int
        Targets shown per source feature and target site.
    before, after : int
        Tokens shown before and after the firing token.
    shard_size : int
        Features per data file.
    title : str, optional
        Page title (default: the model name).
    seed : int
        Seed of the sampled contexts.
    overwrite : bool
        Write into a non-empty ``out`` that holds something else.

    Returns
    -------
    BrowserSite

    Raises
    ------
    ValueError
        For a run without contexts and no ``tokens`` (or without strings and no
        ``tokenizer``), tokens that are not the run's, a frame that does not say which
        sites it matches, a chain step without a frame; the message names the argument.
    """
    from semot.circuits.graph import AttributionGraph
    from semot.matching.frame import chain as chain_frames

    for name, v in (("n_top", n_top), ("k", k), ("shard_size", shard_size)):
        check_positive_int(v, name)
    for name, v in (("n_sampled", n_sampled), ("before", before), ("after", after)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
    out = Path(out)
    _check_out(out, overwrite)
    sites, root = load_sites(run)
    frames = load_frames(sites, matches)
    contexts = load_contexts(sites, root, tokens, tokenizer)
    steps = resolve_chain(sites, frames, chain) if chain else []
    if graph is not None and not isinstance(graph, AttributionGraph):
        graph = AttributionGraph.load(graph)
    # Sites in layer order when every site has a layer number (run records sort by name).
    layers = [site_layer(sites[n], n) for n in sites]
    names = list(sites)
    if all(x is not None for x in layers):
        names = [n for _, _, n in sorted(zip(layers, range(len(names)), names, strict=True))]
    pos_of = {n: j for j, n in enumerate(names)}

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".data-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        rows_of = target_rows(frames, k)
        meta_sites = []
        for j, name in enumerate(names):
            fd = sites[name]
            targets = {
                pos_of[f.target]: rows_of[i] for i, f in enumerate(frames) if f.source == name
            }
            index, records = site_records(
                fd, contexts, site_index=j, n_top=n_top, n_sampled=n_sampled, before=before,
                after=after, targets=targets, labels=(labels or {}).get(name), seed=seed,
            )  # fmt: skip
            d = tmp / f"s{j}"
            d.mkdir()
            (d / "index.js").write_text(_script(f"s{j}/index", index), encoding="utf-8")
            for start in range(0, len(records), shard_size):
                key = f"s{j}/f{start // shard_size}"
                body = {"start": start, "features": records[start : start + shard_size]}
                (d / f"f{start // shard_size}.js").write_text(_script(key, body), "utf-8")
            meta_sites.append(
                {
                    "name": name,
                    "hook": str(fd.metadata.get("hook", "")),
                    "layer": site_layer(fd, name),
                    "nf": len(fd),
                    "nfired": int(np.count_nonzero(fd.fired)),
                    "ntok": fd.n_tokens,
                    "targets": sorted(targets),
                }
            )
        chain_meta = None
        if steps:
            first = names.index(steps[0][1].source)
            ch = chain_frames([f.frame for _, f in steps])
            first_ids = np.asarray(sites[names[first]].feature_ids, np.int64)
            rows = chain_rows(ch, [f.frame for _, f in steps], first_ids)
            chain_meta = [first] + [pos_of[s] for s, _ in steps]
            (tmp / "chains.js").write_text(
                _script("chains", {"sites": chain_meta, "rows": rows}), encoding="utf-8"
            )
        if graph is not None:
            (tmp / "supernodes.js").write_text(
                _script("supernodes", _supernodes(graph, sites, names)), encoding="utf-8"
            )
        vocab = contexts.vocab or {}
        keys = sorted(vocab)
        (tmp / "vocab.js").write_text(
            _script("vocab", {"ids": keys, "s": [vocab[i] for i in keys]}), encoding="utf-8"
        )
        model = str(next(iter(sites.values())).metadata.get("model", ""))
        meta = {
            "title": title if title is not None else (model or "semot features"),
            "model": model,
            "sites": meta_sites,
            "chain": chain_meta,
            "supernodes": graph is not None,
            "shard": shard_size,
            "before": before,
            "after": after,
        }
        (tmp / "meta.js").write_text(_script("meta", meta), encoding="utf-8")
        old = out / "data"
        if old.exists():
            shutil.rmtree(old)
        tmp.rename(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assets = out / "assets"
    assets.mkdir(exist_ok=True)
    for name in _ASSETS:
        text = (resources.files("semot.browser") / "assets" / name).read_text(encoding="utf-8")
        atomic_write_text(assets / name, text)
    atomic_write_text(out / "index.html", _PAGE)
    files: list[Path] = []
    if frames:
        pairs = feature_pairs(sites, frames)
        pairs.to_csv(out / "pairs.csv", index=False)
        pairs.to_parquet(out / "pairs.parquet", index=False)
        files += [out / "pairs.csv", out / "pairs.parquet"]
    if graph is not None:
        graph.save(out / "supernodes.json")
        files.append(out / "supernodes.json")
    atomic_write_text(
        out / MARKER,
        json.dumps({"format": "semot.browser", "version": 1, "sites": names}, indent=1),
    )
    return BrowserSite(out / "index.html", {n: len(sites[n]) for n in names}, files)


def _supernodes(graph: Any, sites: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """Return the groups of ``graph``'s ``qParams.supernodes``, members with site and feature."""
    by_layer: dict[int, int] = {}
    known: dict[int, set[int]] = {}
    for j, name in enumerate(names):
        layer = site_layer(sites[name], name)
        if layer is not None and layer not in by_layer:
            by_layer[layer] = j
            known[j] = set(np.asarray(sites[name].feature_ids).tolist())
    groups = []
    for label, members in graph.hand_supernodes():
        rows = []
        for i in members:
            layer, feat = int(graph.layers[i]), int(graph.feature_index[i])
            site = by_layer.get(layer)
            has = graph.kinds[i] == "feature" and site is not None and feat in known[site]
            rows.append(
                {
                    "node": graph.node_ids[i],
                    "kind": graph.kinds[i],
                    "layer": layer,
                    "pos": int(graph.positions[i]),
                    "feat": feat,
                    "clerp": graph.clerps[i],
                    "site": site if has else None,
                }
            )
        groups.append({"label": label, "members": rows})
    return {"title": graph.slug, "prompt": graph.prompt_tokens, "groups": groups}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>semot features</title>
<link rel="stylesheet" href="assets/browser.css">
</head><body>
<header><h1 id="title">semot features</h1><nav id="nav"></nav></header>
<main id="main"><p class="muted">loading...</p></main>
<noscript>This page needs JavaScript.</noscript>
<script src="assets/browser.js"></script>
</body></html>
"""
