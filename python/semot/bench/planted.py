"""The planted-feature matching benchmark: every method, side by side, against ground truth.

:func:`run_benchmark` builds planted models (:mod:`semot.synthetic.planted`), collects their feature
distributions with the same streaming sampler as real runs, matches a source layer to every
later layer with semot and the baselines, and scores each method against the planted truth:

- ``top1`` / ``top5``: share of source features that have a true target whose rank-1 target
  (resp. one of the five best) is a true target;
- ``none_precision`` / ``none_recall``: of the sources declared "no match" (best distance over
  the ``threshold="auto"`` rule of :func:`semot.matching.auto_threshold`), the share that truly
  have none; of the sources that truly have none, the share declared so.

:func:`sample_size_curve` measures accuracy against samples per feature, and
:func:`property_checks` the paper's properties (exact invariance to rescaling activations;
stability of distances under perturbation of the support points; recovery against sample size
and margin). ``semot bench-match`` and ``semot demo`` print and plot these tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semot.clouds import PointClouds
from semot.distances.sliced import random_projections, sliced_wasserstein_pairs
from semot.matching.baselines import (
    activation_correlation_match,
    centroid_match,
    decoder_cosine_match,
    sae_match,
)
from semot.matching.matcher import match
from semot.synthetic.planted import PlantedModel, collect_planted, make_planted_model

METHODS = (
    "semot sliced",
    "semot sliced 1:1",
    "centroid",
    "decoder cosine",
    "SAE Match",
    "activation corr.",
)


def score(matches: Any, truth: Sequence[set[int]]) -> dict[str, float]:
    """Top-1 / top-5 accuracy and "no match" precision/recall of a match frame.

    Parameters
    ----------
    matches : pandas.DataFrame
        Output of :func:`semot.match` or a baseline (``source``, ``target``, ``rank``,
        ``matched``).
    truth : sequence of set of int
        ``truth[s]``: the true target ids of source ``s`` (empty: no match).
    """
    top: dict[int, list[int]] = {}
    declared_none: set[int] = set()
    for s, t, r, ok in zip(
        matches["source"], matches["target"], matches["rank"], matches["matched"], strict=True
    ):
        s = int(s)
        if r == 1 and not ok:
            declared_none.add(s)
        if t is not None and t is not np.nan and not _is_na(t):
            top.setdefault(s, []).append(int(t))
    with_target = [s for s in range(len(truth)) if truth[s]]
    without = {s for s in range(len(truth)) if not truth[s]}
    hit1 = [bool(top.get(s)) and top[s][0] in truth[s] for s in with_target]
    hit5 = [any(t in truth[s] for t in top.get(s, [])[:5]) for s in with_target]
    tp_none = len(declared_none & without)
    return {
        "top1": float(np.mean(hit1)) if hit1 else float("nan"),
        "top5": float(np.mean(hit5)) if hit5 else float("nan"),
        "none_precision": tp_none / len(declared_none) if declared_none else float("nan"),
        "none_recall": tp_none / len(without) if without else float("nan"),
        "n_sources": float(len(truth)),
        "n_none": float(len(without)),
    }


def _is_na(x: Any) -> bool:
    try:
        return bool(np.isnan(x))
    except TypeError:
        return x is None or str(x) == "<NA>"


@dataclass
class Collected:
    """A planted model and the distributions of its layers on two token streams."""

    model: PlantedModel
    same: dict[int, Any]  # layer -> FeatureDistributions, stream 0
    other: dict[int, Any]  # layer -> FeatureDistributions, stream 1 (disjoint tokens)
    activations: dict[int, Any]  # layer -> activations on the first tokens of stream 0
    seconds: float
    tokens: Any = None  # (n_sequences, seq_len) synthetic token ids of stream 0


def collect_model(
    model: PlantedModel, *, n_tokens: int, samples_per_feature: int, seed: int = 0
) -> Collected:
    """Collect every layer of ``model`` on two disjoint token streams (reference: last layer)."""
    t = time.perf_counter()
    layers = list(range(model.n_layers))
    token_ids: list[Any] = []
    same, acts = collect_planted(
        model,
        layers,
        n_tokens=n_tokens,
        samples_per_feature=samples_per_feature,
        seed=seed,
        stream_seed=0,
        keep_activations=min(n_tokens, 50_000),
        token_ids=token_ids,
    )
    other, _ = collect_planted(
        model,
        layers,
        n_tokens=n_tokens,
        samples_per_feature=samples_per_feature,
        seed=seed,
        stream_seed=1,
    )
    tokens = np.stack(token_ids)
    return Collected(model, same, other, acts, time.perf_counter() - t, tokens)


def run_methods(
    col: Collected, source_layer: int, target_layer: int, tokens: str, n_threads: int | None = None
) -> dict[str, tuple[Any, float]]:
    """Match one layer pair with every method; returns ``{method: (frame, seconds)}``.

    ``tokens="same"``: both layers from one stream; ``"disjoint"``: the target layer from a
    different stream (activation correlation then has no shared tokens and is left out).
    """
    m = col.model
    src = col.same[source_layer]
    tgt = (col.same if tokens == "same" else col.other)[target_layer]
    out: dict[str, tuple[Any, float]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> None:
        t = time.perf_counter()
        frame = fn()
        out[name] = (frame, time.perf_counter() - t)

    timed(
        "semot sliced",
        lambda: match(src, tgt, distance="sliced", k=5, threshold="auto", n_threads=n_threads),
    )
    timed(
        "semot sliced 1:1",
        lambda: match(
            src,
            tgt,
            distance="sliced",
            assignment="one-to-one",
            threshold="auto",
            n_threads=n_threads,
        ),
    )
    timed("centroid", lambda: centroid_match(src, tgt, k=5, threshold="auto"))
    sd, td = m.saes[source_layer], m.saes[target_layer]
    timed("decoder cosine", lambda: decoder_cosine_match(sd.W_dec, td.W_dec, k=5, threshold="auto"))
    timed("SAE Match", lambda: sae_match(sd.state_dict(), td.state_dict()))
    if tokens == "same":
        timed(
            "activation corr.",
            lambda: activation_correlation_match(
                col.activations[source_layer], col.activations[target_layer], k=5,
                threshold="auto",
            ),
        )  # fmt: skip
    return out


def run_benchmark(
    *,
    seeds: Sequence[int] = (0, 1),
    noises: Sequence[float] = (0.35, 1.0),
    n_tokens: int = 100_000,
    samples_per_feature: int = 128,
    n_layers: int = 4,
    token_modes: Sequence[str] = ("same", "disjoint"),
    progress: Callable[[str], None] | None = None,
    n_threads: int | None = None,
) -> Any:
    """Accuracy of every method against layer distance, noise and token overlap.

    Source layer 0 is matched to every later layer of planted models (one per seed and
    noise level). Returns a long :class:`pandas.DataFrame` with one row per (seed, noise,
    tokens, layer distance, method): ``top1``, ``top5``, ``none_precision``,
    ``none_recall``, ``seconds``.
    """
    import pandas as pd

    rows = []
    for seed in seeds:
        for noise in noises:
            model = make_planted_model(seed=seed, noise=noise, n_layers=n_layers)
            col = collect_model(model, n_tokens=n_tokens, samples_per_feature=samples_per_feature)
            if progress:
                progress(
                    f"seed {seed}, noise {noise}: {sum(len(v) for v in col.same.values())} "
                    f"features on {n_layers} layers collected twice in {col.seconds:.1f} s"
                )
            for tl in range(1, n_layers):
                truth = model.truth(0, tl)
                for tokens in token_modes:
                    for name, (frame, secs) in run_methods(col, 0, tl, tokens, n_threads).items():
                        rows.append(
                            {
                                "seed": seed,
                                "noise": noise,
                                "tokens": tokens,
                                "layer_distance": tl,
                                "method": name,
                                **score(frame, truth),
                                "seconds": secs,
                            }
                        )
    return pd.DataFrame(rows)


def summary_table(results: Any) -> Any:
    """Mean top-1 accuracy per method (rows) and layer distance (columns), per token mode."""
    return (
        results.groupby(["tokens", "method", "layer_distance"], sort=False)["top1"]
        .mean()
        .unstack("layer_distance")
    )


def sample_size_curve(
    *,
    sizes: Sequence[int] = (8, 16, 32, 64, 128, 256),
    seeds: Sequence[int] = (0, 1),
    n_tokens: int = 100_000,
    layer_distance: int = 3,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Top-1 accuracy of semot and the centroid against samples per feature.

    Disjoint token streams, source layer 0 to ``layer_distance``. Also reports, per size,
    the accuracy on the planted shape pairs (features with equal mean contexts).
    """
    import pandas as pd

    rows = []
    for seed in seeds:
        model = make_planted_model(seed=seed, n_layers=layer_distance + 1)
        truth = model.truth(0, layer_distance)
        shape = {a for pair in model.shape_pair_features(0) for a in pair}
        shape_truth = [t if i in shape else set() for i, t in enumerate(truth)]
        for n in sizes:
            col = collect_model(model, n_tokens=n_tokens, samples_per_feature=n, seed=seed)
            src, tgt = col.same[0], col.other[layer_distance]
            frames = {
                "semot sliced": match(src, tgt, distance="sliced", k=5),
                "semot sliced 1:1": match(src, tgt, distance="sliced", assignment="one-to-one"),
                "centroid": centroid_match(src, tgt, k=5),
            }
            for name, frame in frames.items():
                rows.append(
                    {
                        "seed": seed,
                        "samples_per_feature": n,
                        "method": name,
                        "top1": score(frame, truth)["top1"],
                        "top1_shape_pairs": score(frame, shape_truth)["top1"],
                    }
                )
            if progress:
                progress(f"seed {seed}, n = {n}: done")
    return pd.DataFrame(rows)


def property_checks(seed: int = 0, n_tokens: int = 60_000) -> dict[str, Any]:
    """Measure the paper's three properties on a planted model.

    - ``rescaling``: every SAE's activations multiplied by 7.3 (encoder and threshold scaled):
      the collected samples and the matched distances are compared with the unscaled run;
      ``max_abs_distance_change`` is 0.0 when the invariance is exact.
    - ``stability``: support points of the source features perturbed by Gaussian noise of
      standard deviation ``eps`` per coordinate; the distance change is reported against the
      bound ``eps * sqrt(d)`` (SW_2 changes by at most the root-mean-square displacement).
    - ``recovery``: top-1 accuracy of the points that pass the margin rule against the share
      of sources kept, for several margins.
    """
    import copy

    model = make_planted_model(seed=seed, n_layers=2)
    base, _ = collect_planted(model, [0, 1], n_tokens=n_tokens, samples_per_feature=64)
    scaled_model = copy.deepcopy(model)
    for sae in scaled_model.saes:
        sae.W_enc = sae.W_enc * 7.3
        sae.b_enc = sae.b_enc * 7.3
        sae.threshold = sae.threshold * 7.3
    scaled, _ = collect_planted(scaled_model, [0, 1], n_tokens=n_tokens, samples_per_feature=64)
    m0 = match(base[0], base[1], k=3)
    m1 = match(scaled[0], scaled[1], k=3)
    same_samples = all(
        np.array_equal(base[x].to_clouds().points, scaled[x].to_clouds().points)
        and np.array_equal(base[x].firing_counts, scaled[x].firing_counts)
        for x in (0, 1)
    )
    rescaling = {
        "factor": 7.3,
        "same_samples": same_samples,
        "same_ranking": bool((m0["target"] == m1["target"]).all()),
        "max_abs_distance_change": float(np.abs(m0["distance"] - m1["distance"]).max()),
    }

    # Stability: perturb the source clouds, compare distances to the matched targets.
    src = base[0].to_clouds()
    tgt = base[1].to_clouds()
    best = m0[m0["rank"] == 1]
    pairs = np.stack([best["source"].to_numpy(), best["target"].to_numpy(np.int64)], 1)
    proj = random_projections(src.dim, 128, 0)
    d0 = sliced_wasserstein_pairs(src, tgt, pairs, projections=proj)
    rng = np.random.default_rng(seed)
    stability = []
    for eps in (0.01, 0.03, 0.1, 0.3):
        moved = PointClouds(
            (src.points + rng.normal(size=src.points.shape) * eps).astype(np.float32),
            src.weights,
            src.offsets,
        )
        d1 = sliced_wasserstein_pairs(moved, tgt, pairs, projections=proj)
        change = np.abs(d1 - d0)
        stability.append(
            {
                "eps": eps,
                "bound": eps * float(np.sqrt(src.dim)),
                "mean_change": float(change.mean()),
                "max_change": float(change.max()),
                "relative_mean_change": float((change / d0).mean()),
            }
        )

    truth = model.truth(0, 1)
    recovery = []
    for margin in (0.0, 0.05, 0.1, 0.2, 0.3):
        fr = match(base[0], base[1], k=2, margin=margin)
        top = fr[(fr["rank"] == 1) & fr["matched"]]
        kept = [(int(s), int(t)) for s, t in zip(top["source"], top["target"], strict=True)]
        judged = [t in truth[s] for s, t in kept if truth[s]]
        recovery.append(
            {
                "margin": margin,
                "kept": len(kept) / len(truth),
                "top1_of_kept": float(np.mean(judged)) if judged else float("nan"),
            }
        )
    return {"rescaling": rescaling, "stability": stability, "recovery": recovery}
