"""``semot demo``: the whole method on a planted model, offline, with the base install only.

1. A planted 4-layer model (:mod:`semot.synthetic.planted`) whose SAE features have known
   correspondences across layers (with splits, merges, births, deaths and drifting
   dictionaries).
2. Collection through the same streaming sampler as real runs (:class:`semot.FeatureSampler`),
   on two disjoint token streams.
3. Matching of layer 0 to every later layer with semot and the four baselines, scored against
   the planted truth; a printed table.
4. Circuit compression: a synthetic attribution graph of one prompt through the planted
   model, its feature nodes grouped into supernodes by semantic distance and, as a baseline,
   by attribution profiles; agreement with the planted groups.
5. A report folder: ``accuracy.png`` (top-1 accuracy against layer distance per method),
   ``heatmap.png`` (semot distances, true targets on the diagonal), ``examples.png`` (contexts
   of a few matches), ``graph.png`` / ``graph.html`` (the graph before and after compression),
   ``supernodes.json`` (the graph with ``qParams.supernodes`` for Neuronpedia's viewer),
   ``compressed.json``, ``results.csv`` and ``results.json``; and ``browser/``, the feature
   browser of the planted run (:func:`semot.browser.write_browser`: layer 0 matched to
   layer 1, 1 to 2 and 2 to 3 and chained through all four, the supernodes, contexts in the
   planted model's synthetic tokens).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semot.bench.planted import collect_model, run_methods, score, summary_table
from semot.distances.sliced import sliced_wasserstein_cdist
from semot.matching.matcher import feature_set
from semot.synthetic.planted import make_planted_model


@dataclass
class DemoResult:
    """What the demo measured (also returned for tests)."""

    table: Any  # pandas.DataFrame: top-1 per (tokens, method) x layer distance
    results: Any  # long pandas.DataFrame, one row per (tokens, distance, method)
    seconds: float
    files: list[Path] = field(default_factory=list)


def run(
    out: str | Path | None = "semot-demo",
    *,
    n_tokens: int = 100_000,
    samples_per_feature: int = 128,
    seed: int = 0,
    verbose: bool = True,
    plots: bool = True,
) -> DemoResult:
    """Run the demo, print a table, and write the report folder ``out`` (None: no files)."""
    import pandas as pd

    say = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    model = make_planted_model(seed=seed)
    nf = [model.n_features(x) for x in range(model.n_layers)]
    say(
        f"semot demo: planted model, {model.n_layers} layers, d_model {model.config.d_model}, "
        f"SAE features per layer {nf}"
    )
    say(f"  collecting {samples_per_feature} samples per feature from 2 x {n_tokens:,} tokens ...")
    col = collect_model(
        model, n_tokens=n_tokens, samples_per_feature=samples_per_feature, seed=seed
    )
    say(f"  collected in {col.seconds:.1f} s; matching layer 0 to layers 1-{model.n_layers - 1}")
    rows = []
    for tl in range(1, model.n_layers):
        truth = model.truth(0, tl)
        for tokens in ("same", "disjoint"):
            for name, (frame, secs) in run_methods(col, 0, tl, tokens).items():
                rows.append(
                    {"tokens": tokens, "layer_distance": tl, "method": name,
                     **score(frame, truth), "seconds": secs}
                )  # fmt: skip
    results = pd.DataFrame(rows)
    table = summary_table(results)
    say("")
    say("top-1 accuracy (share of layer-0 features with a true target whose best match is one):")
    say(_format_table(table))
    far = results[(results["layer_distance"] == model.n_layers - 1)]
    say("")
    say(f"'no match' at layer distance {model.n_layers - 1} (threshold='auto'), same tokens:")
    for _, r in far[far["tokens"] == "same"].iterrows():
        say(
            f"  {r['method']:<18} precision {_pct(r['none_precision'])}  "
            f"recall {_pct(r['none_recall'])}  ({int(r['n_none'])} sources truly have none)"
        )
    say("")
    say("  Decoder directions drift and rotate from layer to layer, so decoder-based methods")
    say("  fade with layer distance; semot compares where features fire, which does not drift.")
    say("  The centroid (first moment of the same clouds) is as good here: most planted")
    say("  concepts differ by a mean shift. Activation correlation needs shared tokens.")
    say("")
    circuit = _compress_planted_graph(model, col, seed)
    say(
        f"circuit compression: synthetic attribution graph, {circuit['n_nodes']} nodes "
        f"({circuit['n_features']} features in {circuit['n_planted']} planted groups); "
        f"cut at {circuit['n_groups']} groups in all (error, embedding, logit nodes stay alone)"
    )
    for name, r in circuit["methods"].items():
        say(
            f"  {name:<26} ARI vs planted {r['ari']:.3f}, "
            f"pair precision {r['precision']:.2f}, recall {r['recall']:.2f} (feature nodes)"
        )
    files: list[Path] = []
    if out is not None:
        files = _write_report(Path(out), model, col, results, plots, circuit)
        say("")
        shown = ", ".join(f.relative_to(Path(out)).as_posix() for f in files)
        say(f"report: {Path(out).resolve()}/ ({shown})")
    secs = time.perf_counter() - t0
    say(f"done in {secs:.1f} s")
    return DemoResult(table=table, results=results, seconds=secs, files=files)


def _pct(x: float) -> str:
    return "  n/a" if x != x else f"{x:5.0%}"


def _format_table(table: Any) -> str:
    lines = []
    dists = list(table.columns)
    head = f"  {'tokens':<9} {'method':<18}" + "".join(f"  dist {d}" for d in dists)
    lines.append(head)
    for (tokens, method), row in table.iterrows():
        cells = "".join(f"  {_pct(v):>6}" for v in row.to_numpy())
        lines.append(f"  {tokens:<9} {method:<18}{cells}")
    return "\n".join(lines)


def _compress_planted_graph(model: Any, col: Any, seed: int) -> dict[str, Any]:
    """Supernodes of a synthetic graph: semantic (semot) and graph-profile (baseline)."""
    from semot.circuits.compress import compress
    from semot.circuits.graph import AttributionGraph
    from semot.grouping.metrics import agreement
    from semot.synthetic.graph import planted_graph

    data, truth = planted_graph(model, seed=seed)
    graph = AttributionGraph.from_dict(data)
    feats = np.array([i for i, k in enumerate(graph.kinds) if k == "feature"])
    ratio = (int(truth.max()) + 1) / graph.n_nodes
    methods: dict[str, Any] = {}
    results = {}
    for name, dist in (("semot (sliced W2)", col.same), ("graph profiles (baseline)", None)):
        res = compress(graph, dist, target_ratio=ratio)
        agree = agreement(res.labels, truth, nodes=feats)
        methods[name] = {
            "n_groups": int(res.labels.max()) + 1,
            "ari": agree["ari"],
            "precision": agree["precision"],
            "recall": agree["recall"],
            "report": res.report,
        }
        results[name] = res
    return {
        "graph": graph,
        "semot": results["semot (sliced W2)"],
        "n_nodes": graph.n_nodes,
        "n_features": len(feats),
        "n_planted": len(np.unique(truth[feats])),
        "n_groups": int(truth.max()) + 1,
        "methods": methods,
    }


def _write_report(
    out: Path, model: Any, col: Any, results: Any, plots: bool, circuit: dict[str, Any]
) -> list[Path]:
    from semot.bench.report import (
        plot_accuracy_vs_distance,
        plot_examples,
        plot_heatmap,
        write_json,
    )

    out.mkdir(parents=True, exist_ok=True)
    files = []
    csv = out / "results.csv"
    results.to_csv(csv, index=False)
    files.append(csv)
    far = model.n_layers - 1
    files.append(
        write_json(
            {
                "model": model.summary(),
                "collection_seconds": col.seconds,
                "results": results.to_dict(orient="records"),
                "circuit_compression": {
                    k: v for k, v in circuit.items() if k not in ("graph", "semot")
                },
            },
            out / "results.json",
        )
    )
    res = circuit["semot"]
    res.graph.save(out / "supernodes.json")
    res.compressed.save(out / "compressed.json")
    files += [out / "supernodes.json", out / "compressed.json"]
    files.append(_write_browser(out / "browser", model, col, res.graph))
    if not plots:
        return files
    from semot.circuits.view import write_pictures

    files += write_pictures(
        circuit["graph"],
        res,
        plot=out / "graph.png",
        html=out / "graph.html",
        title="planted graph: semot supernodes",
    )
    files.append(plot_accuracy_vs_distance(results, out / "accuracy.png"))
    # Heatmap: 40 sources with exactly one true target, targets in the same order.
    truth = model.truth(0, far)
    src_fs, tgt_fs = feature_set(col.same[0], "source"), feature_set(col.same[far], "target")
    single = [s for s, t in enumerate(truth) if len(t) == 1][:40]
    cols = [next(iter(truth[s])) for s in single]
    d = sliced_wasserstein_cdist(
        src_fs.clouds[np.array(single)], tgt_fs.clouds[np.array(cols)], n_projections=128
    )
    files.append(
        plot_heatmap(
            d, f"semot distances, layer 0 -> layer {far} (same tokens)", out / "heatmap.png"
        )
    )
    files.append(plot_examples(_examples(model, col, far), out / "examples.png"))
    return files


def _write_browser(out: Path, model: Any, col: Any, graph: Any) -> Path:
    """Write the feature browser of the planted run (stream 0): adjacent layers, chained."""
    import warnings

    from semot.browser import write_browser
    from semot.errors import UnfiredFeaturesWarning
    from semot.matching.matcher import match

    sites = {f"layer{x}": col.same[x] for x in range(model.n_layers)}
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnfiredFeaturesWarning)
        for a in range(model.n_layers - 1):
            m = match(sites[f"layer{a}"], sites[f"layer{a + 1}"], k=5, threshold="auto")
            frames.append((f"layer{a}", f"layer{a + 1}", m))
    site = write_browser(
        sites,
        out,
        matches=frames,
        chain=list(sites),
        graph=graph,
        tokens=col.tokens,
        tokenizer=model.vocabulary(),
        title="semot demo: planted model",
    )
    return site.index


def _examples(model: Any, col: Any, far: int) -> list[dict[str, Any]]:
    """Pick a shape pair and features whose decoder drifted, with what semot chose."""
    from semot.matching.baselines import decoder_cosine_match
    from semot.matching.matcher import match

    src, tgt = col.same[0], col.same[far]
    sem = match(src, tgt, k=1)
    dec = decoder_cosine_match(model.saes[0].W_dec, model.saes[far].W_dec, k=1)
    best = dict(zip(sem["source"], sem["target"], strict=True))
    dbest = dict(zip(dec["source"], dec["target"], strict=True))
    truth = model.truth(0, far)
    out = []

    def cloud(fd: Any, f: int) -> Any:
        return np.asarray(fd.cloud(int(f))[0])

    pairs = model.shape_pair_features(0)
    if pairs:
        a, b = pairs[0]
        out.append(
            {
                "title": f"shape pair: features {a} (two modes) and {b} (one mode), layer 0",
                "clouds": [(f"L0 #{a}", cloud(src, a)), (f"L0 #{b}", cloud(src, b))],
            }
        )
    drifted = [
        s for s in range(len(truth))
        if len(truth[s]) == 1 and int(best[s]) in truth[s] and int(dbest[s]) not in truth[s]
    ]  # fmt: skip
    for s in drifted[:2]:
        out.append(
            {
                "title": f"L0 #{s}: semot -> L{far} #{best[s]} (true), decoder -> #{dbest[s]}",
                "clouds": [
                    (f"L0 #{s}", cloud(src, s)),
                    (f"semot: L{far} #{best[s]}", cloud(tgt, int(best[s]))),
                    (f"decoder: L{far} #{dbest[s]}", cloud(tgt, int(dbest[s]))),
                ],
            }
        )
    return out
