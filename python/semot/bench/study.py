"""The method study: which choices make the distributional distance match real features.

``semot bench-study --preset smollm2`` measures, on a preset of the real-model benchmark
(:mod:`semot.bench.real`: the same model, corpus parts and trained SAEs), every switch of the
method against the same silver standards, over several seeds:

- the **geometry** of the reference space (:class:`Geometry`): raw hidden states, standardized
  coordinates, unit-norm points, PCA-whitened (``reduce="pca"`` + ``normalize="standardize"``),
  PCA or a random projection, and which layer is the reference (the later site of the pair, the
  site between the two, or the preset's fixed late layer);
- the **sample**: activation-weighted reservoir or top-n, and samples per feature;
- the **distance**: sliced W2 (128 or 512 directions) against the centroid of the same clouds
  and the sliced Gaussian distance (the same directions, first two moments only), so that what
  the clouds' shape adds is measured directly;
- **combinations**: decoder-cosine candidates re-ranked by the distributional distance, a joint
  rank, and the token-identity distribution of the sampled firings;
- two **silver standards**: the best-correlated target on held-out split A (what ``semot
  evaluate`` reports) and the target sharing most top-activating held-out contexts.

The forward pass runs once per token part: hidden states of every site are stored
(:func:`~semot.collection.training.cache_hidden_states`) and replayed by
:class:`~semot.collection.replay.StoredActivations`, so every collection and evaluation below
is the library's own (:func:`semot.collect`, :func:`semot.evaluation.stats.accumulate`) at
numpy speed. A collection is run once per (mode, samples per feature, seed); its sampled
positions do not depend on the reference space (the sampling keys hash the token and the
feature), so each geometry re-reads the stored states at those positions through the library's
:class:`~semot.collection.reference.ReferenceMap`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.atomic import atomic_write_text

__all__ = [
    "GEOMETRIES",
    "STUDY_METHODS",
    "STUDY_PAIRS",
    "Geometry",
    "SampleConfig",
    "StudyPlan",
    "run_study",
]

#: Candidates of the re-ranking combinations (decoder-cosine's nearest targets).
RERANK_CANDIDATES = 16
#: Targets ranked per source (as in :mod:`semot.evaluation.methods`).
TOP = 5


@dataclass(frozen=True)
class Geometry:
    """A reference space: the :class:`~semot.collection.reference.ReferenceSpec` switches.

    ``reference``: ``"target"`` (the later site of the pair, the default of :func:`semot.collect`
    for two sites), ``"middle"`` (the preset's site closest to halfway between the two) or
    ``"last"`` (the preset's ``reference_layer``, one space for every pair).
    """

    name: str
    reduce: str | None = None
    n_components: int | None = None
    normalize: str | None = None
    reference: str = "target"


#: The geometries studied.
GEOMETRIES: tuple[Geometry, ...] = (
    Geometry("raw"),
    Geometry("standardize", normalize="standardize"),
    Geometry("unit", normalize="unit"),
    Geometry("whiten-128", reduce="pca", n_components=128, normalize="standardize"),
    Geometry("pca-128", reduce="pca", n_components=128),
    Geometry("random-128", reduce="random", n_components=128),
    Geometry("whiten-32", reduce="pca", n_components=32, normalize="standardize"),
)


@dataclass(frozen=True)
class SampleConfig:
    """One collection: sampling mode and samples per feature."""

    mode: str = "weighted"
    samples_per_feature: int = 128

    @property
    def name(self) -> str:
        """``<mode>-<samples_per_feature>``."""
        return f"{self.mode}-{self.samples_per_feature}"


#: Methods of the study; each gives a (sources x targets) score, lower is closer.
STUDY_METHODS = (
    "sliced",
    "sliced-gaussian",
    "sliced-shape-0.3",
    "sliced-shape-0.1",
    "centroid",
    "token",
    "decoder-cosine",
    "rerank-sliced",
    "rerank-centroid",
    "joint-sliced",
    "joint-centroid",
    "sliced+token",
    "activation-corr-B",
)
#: ``sliced-shape-w``: the sliced W2 with its shape part (what is left after the projected means
#: are aligned) weighted by ``w``; 1 is the sliced W2, 0 the centroid along the same directions.
SHAPE_WEIGHTS = (0.3, 0.1)
#: At most this many sources per pair (a seeded subset of those with a silver target).
MAX_SOURCES = 512


@dataclass(frozen=True)
class StudyPlan:
    """What one study run measures.

    Attributes
    ----------
    seeds : tuple of int
        Seeds of the sampling keys and the projections (the spread over seeds is reported).
    main : SampleConfig
        The collection every geometry is measured on.
    samples : tuple of SampleConfig
        Other collections, measured on ``main_geometry`` with the first seed.
    geometries : tuple of Geometry
        Measured on ``main`` with every seed.
    single_seed_geometries : tuple of Geometry
        Measured on ``main`` with the first seed.
    main_geometry : str
        The geometry of the sample and reference-layer comparisons.
    references : tuple of str
        Reference layers compared on ``main_geometry`` (:attr:`Geometry.reference`).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    main: SampleConfig = SampleConfig()
    samples: tuple[SampleConfig, ...] = (
        SampleConfig("top", 128),
        SampleConfig("weighted", 32),
        SampleConfig("weighted", 512),
    )
    geometries: tuple[Geometry, ...] = GEOMETRIES[:4]
    single_seed_geometries: tuple[Geometry, ...] = GEOMETRIES[4:]
    main_geometry: str = "whiten-128"
    references: tuple[str, ...] = ("target", "middle", "last")


#: The site pairs studied per preset: one chain into the reference layer (every hop count) and
#: one pair that does not end there (where the reference-layer choice matters).
STUDY_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {
    "minilm-smoke": ((1, 3), (3, 5), (1, 5)),
    "minilm": ((3, 5), (2, 5), (1, 5), (1, 3)),
    "smollm2": ((12, 18), (7, 18), (3, 18), (3, 12)),
}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------- stored states
def stored_states(setup: Any, part: str, *, progress: bool = True) -> Any:
    """Hidden states of every site on the ``part`` tokens, as a replay runner.

    One forward pass, cached under ``<root>/hidden-<part>`` (every position, special tokens
    included, so that rows reshape to ``(S, L, d)``).
    """
    from semot.collection.replay import StoredActivations
    from semot.collection.training import cache_hidden_states

    tokens = setup.tokens[part]
    states = cache_hidden_states(
        setup.runner,
        setup.hooks,
        tokens,
        setup.root / f"hidden-{part}",
        batch_size=setup.config.batch_size,
        progress=progress,
    )
    s, length = tokens.shape
    hidden = {h: states.array(h).reshape(s, length, -1) for h in setup.hooks}
    return StoredActivations(tokens, hidden, tokenizer=setup.runner.tokenizer)


# ---------------------------------------------------------------------------------- collection
def study_run(
    setup: Any, replay: Any, sample: SampleConfig, seed: int, *, progress: bool = True
) -> dict[str, Any]:
    """Collect every site with ``sample`` and ``seed`` (cached by its settings).

    The support points are a one-dimensional placeholder: each geometry re-reads the stored
    states at the sampled positions (:func:`clouds_in`).
    """
    from semot.collection.reference import ReferenceSpec
    from semot.collection.run import collect, load_run

    key = {**setup.keys["sae"], "collect_tokens": setup.config.collect_tokens,
           "sample": asdict(sample), "seed": seed}  # fmt: skip
    out = setup.root / f"study-run-{_digest(key)}"
    if (out / "run.json").is_file():
        return load_run(out)
    return collect(
        replay,
        list(setup.sites.values()),
        setup.tokens["collect"],
        samples_per_feature=sample.samples_per_feature,
        mode=sample.mode,  # type: ignore[arg-type]
        reference=ReferenceSpec(hook=setup.hooks[-1], reduce="random", n_components=1, seed=seed),
        batch_size=setup.config.batch_size,
        seed=seed,
        out=out,
        overwrite=True,
        progress=progress,
    )


def reference_hook(setup: Any, geometry: Geometry, source: str, target: str) -> str:
    """Return the hook whose states define ``geometry``'s space for ``source -> target``."""
    from semot.collection.models import layer_index

    layers = {h: layer_index(h) for h in setup.hooks}
    if geometry.reference == "target":
        return target
    if geometry.reference == "last":
        return str(setup.runner.layer_hook(setup.config.reference_layer))
    if geometry.reference == "middle":
        lo, hi = layers[source], layers[target]
        assert lo is not None and hi is not None
        half = (lo + hi) / 2
        hooks: list[str] = list(setup.hooks)
        return min(hooks, key=lambda h: (abs((layers[h] or 0) - half), -(layers[h] or 0)))
    raise ValueError(f"geometry.reference: {geometry.reference!r} is not target, middle or last")


def fit_geometry(
    geometry: Geometry, hook: str, replay: Any, ignore: Sequence[int], seed: int
) -> Any:
    """Fit the :class:`~semot.collection.reference.ReferenceMap` of ``geometry`` at ``hook``.

    Calibration moments are those of every non-ignored collection token (at most the spec's
    ``calibration_tokens``), as :func:`semot.collect` computes them.
    """
    from semot.collection.reference import Moments, ReferenceSpec, fit_reference

    spec = ReferenceSpec(
        hook=hook,
        reduce=geometry.reduce,  # type: ignore[arg-type]
        n_components=geometry.n_components,
        normalize=geometry.normalize,  # type: ignore[arg-type]
        seed=seed,
    )
    states = replay.hidden[hook]
    keep = ~np.isin(replay.tokens, np.asarray(sorted(ignore), dtype=np.int64))
    rows = np.asarray(states[keep], dtype=np.float32)[: spec.calibration_tokens]
    moments = Moments()
    moments.add(rows)
    return fit_reference(spec, int(rows.shape[1]), moments if spec.needs_calibration else None)


def clouds_in(
    fd: Any, ids: npt.NDArray[np.int64], refmap: Any, replay: Any, feature_hook: str
) -> Any:
    """Return the clouds of features ``ids`` of ``fd``, points re-read in ``refmap``'s space.

    Point ``j`` of feature ``f`` is ``refmap.transform(states[seq_j, pos_j])``; the weights
    are the collection's.
    """
    from semot.clouds import PointClouds

    states = replay.hidden[refmap.input_hook(feature_hook)]
    seqs, poss, weights, sizes = [], [], [], []
    for f in ids:
        i = fd.index_of(int(f))
        seq, pos = fd.provenance(i)
        seqs.append(seq)
        poss.append(pos)
        weights.append(fd.cloud(i)[1])
        sizes.append(len(seq))
    seq, pos = np.concatenate(seqs), np.concatenate(poss)
    points = refmap.transform(np.asarray(states[seq, pos], dtype=np.float32), feature_hook)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return PointClouds(np.asarray(points, np.float32), np.concatenate(weights), offsets)


def token_histograms(fd: Any, ids: npt.NDArray[np.int64], tokens: Any) -> Any:
    """Unit-norm rows of the weighted token-id histogram of each feature's sampled firings."""
    import scipy.sparse as sp

    rows, cols, vals = [], [], []
    for r, f in enumerate(ids):
        i = fd.index_of(int(f))
        seq, pos = fd.provenance(i)
        rows.append(np.full(len(seq), r))
        cols.append(tokens[seq, pos])
        vals.append(fd.cloud(i)[1].astype(np.float64))
    m = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(ids), int(tokens.max()) + 1),
    )
    norms = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    return sp.diags(1.0 / np.maximum(norms, 1e-300)) @ m


# -------------------------------------------------------------------------------------- scores
def _row_ranks(score: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rank of each entry within its row (0 = lowest score)."""
    order = np.argsort(score, axis=1, kind="stable")
    ranks = np.empty_like(score)
    np.put_along_axis(ranks, order, np.arange(score.shape[1], dtype=np.float64)[None, :], 1)
    return ranks


def _rerank(first: npt.NDArray[np.float64], then: npt.NDArray[np.float64]) -> Any:
    """Keep each row's :data:`RERANK_CANDIDATES` best of ``first``, order them by ``then``."""
    k = min(RERANK_CANDIDATES, first.shape[1])
    cand = np.argpartition(first, k - 1, axis=1)[:, :k]
    out = np.full_like(first, np.inf)
    np.put_along_axis(out, cand, np.take_along_axis(then, cand, 1), 1)
    return out


def projected_moments(c: Any, projections: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per cloud: the weighted mean and standard deviation of its projections, ``(N, 2L)``."""
    from semot.distances.centroid import centroids

    proj = np.asarray(c.points, np.float64) @ projections
    w = np.asarray(c.weights, np.float64)
    seg = np.repeat(np.arange(len(c)), np.diff(c.offsets))
    mean = centroids(c) @ projections  # projection is linear: the projected centroid
    var = np.zeros_like(mean)
    np.add.at(var, seg, w[:, None] * (proj - mean[seg]) ** 2)
    return np.hstack([mean, np.sqrt(np.maximum(var, 0.0))])


def sliced_parts(
    src: Any, tgt: Any, projections: npt.NDArray[np.float64]
) -> dict[str, npt.NDArray[np.float64]]:
    r"""Return the squared parts of the sliced W2 along ``projections``, ``(len(src), len(tgt))``.

    Along a direction :math:`\theta`, :math:`W_2^2 = (m_1 - m_2)^2 + W_2^2` of the centred
    projections, and for two Gaussians the second term is :math:`(s_1 - s_2)^2` (means ``m``
    and standard deviations ``s`` of the projected clouds). Averaged over the ``L`` directions:
    ``location`` :math:`\frac1L\sum_l (m_{1l}-m_{2l})^2` and ``gaussian_spread``
    :math:`\frac1L\sum_l (s_{1l}-s_{2l})^2`. The shape part is the sliced W2 squared minus
    ``location`` (the caller has the sliced W2).
    """
    from scipy.spatial.distance import cdist

    ms, mt = projected_moments(src, projections), projected_moments(tgt, projections)
    n_dir = projections.shape[1]
    location = cdist(ms[:, :n_dir], mt[:, :n_dir], "sqeuclidean") / n_dir
    spread = cdist(ms[:, n_dir:], mt[:, n_dir:], "sqeuclidean") / n_dir
    return {"location": location, "gaussian_spread": spread}


def pair_scores(
    src: Any,
    tgt: Any,
    *,
    seed: int,
    decoder: npt.NDArray[np.float64] | None,
    token: npt.NDArray[np.float64] | None,
    corr_b: npt.NDArray[np.float64] | None,
    methods: Sequence[str],
) -> dict[str, npt.NDArray[np.float64]]:
    """Score matrices ``(len(src), len(tgt))`` of ``methods`` (lower is closer)."""
    from scipy.spatial.distance import cdist

    from semot.distances.centroid import centroids
    from semot.distances.projections import random_projections
    from semot.distances.sliced import sliced_wasserstein_cdist

    out: dict[str, npt.NDArray[np.float64]] = {}
    need = set(methods)
    sliced_family = {"sliced", "rerank-sliced", "joint-sliced", "sliced+token", "sliced-gaussian"}
    sliced_family |= {f"sliced-shape-{w:g}" for w in SHAPE_WEIGHTS}
    if need & sliced_family:
        proj = random_projections(src.dim, 128, seed)
        out["sliced"] = sliced_wasserstein_cdist(src, tgt, projections=proj)
        parts = sliced_parts(src, tgt, proj)
        # The gaussian distance is a lower bound of the sliced one along the same directions.
        out["sliced-gaussian"] = np.sqrt(parts["location"] + parts["gaussian_spread"])
        shape = np.maximum(out["sliced"] ** 2 - parts["location"], 0.0)
        for w in SHAPE_WEIGHTS:
            out[f"sliced-shape-{w:g}"] = np.sqrt(parts["location"] + w * shape)
    if "sliced-512" in need:
        out["sliced-512"] = sliced_wasserstein_cdist(src, tgt, n_projections=512, seed=seed)
    if need & {"centroid", "rerank-centroid", "joint-centroid"}:
        out["centroid"] = cdist(centroids(src), centroids(tgt))
    if token is not None:
        out["token"] = token
        if "sliced" in out:
            out["sliced+token"] = _row_ranks(out["sliced"]) + _row_ranks(token)
    if decoder is not None:
        out["decoder-cosine"] = decoder
        for base in ("sliced", "centroid"):
            if base in out:
                out[f"rerank-{base}"] = _rerank(decoder, out[base])
                out[f"joint-{base}"] = _row_ranks(decoder) + _row_ranks(out[base])
    if corr_b is not None:
        out["activation-corr-B"] = 1.0 - np.nan_to_num(corr_b, nan=-1.0)
    return {m: out[m] for m in methods if m in out}


def ranking_of(
    method: str,
    score: npt.NDArray[np.float64],
    target_ids: npt.NDArray[np.int64],
) -> Any:
    """Return the :class:`~semot.evaluation.methods.Ranking` of a score matrix (ties: lower id)."""
    from semot.evaluation.methods import TOP as EVAL_TOP
    from semot.evaluation.methods import Ranking

    k = min(EVAL_TOP, score.shape[1])
    order = np.argsort(score, axis=1, kind="stable")[:, :k]
    targets = np.full((score.shape[0], EVAL_TOP), -1, dtype=np.int64)
    targets[:, :k] = target_ids[order]
    return Ranking(method, targets, np.ones(score.shape[0], dtype=bool))


# ------------------------------------------------------------------------------ silver standards
@dataclass
class PairTruth:
    """Held-out statistics of one pair of sites, for all source features."""

    stats: Any
    corr_a: npt.NDArray[np.float64]
    corr_b: npt.NDArray[np.float64]
    silver_corr: Any
    silver_context: Any


def context_silver(stats: Any) -> Any:
    """Per source: the target whose top held-out contexts overlap most (Jaccard), and that index.

    Sources or targets without contexts get none (-1, NaN); ties go to the lower target id.
    """
    import scipy.sparse as sp

    from semot.evaluation.report import SilverStandard
    from semot.evaluation.stats import EMPTY_KEY

    ks, kt = stats.source_contexts.keys(), stats.target_contexts.keys()
    vocab, inverse = np.unique(np.concatenate([ks.ravel(), kt.ravel()]), return_inverse=True)
    inv_s, inv_t = inverse[: ks.size].reshape(ks.shape), inverse[ks.size :].reshape(kt.shape)

    def incidence(keys: npt.NDArray[np.int64], inv: npt.NDArray[np.int64]) -> Any:
        mask = keys != EMPTY_KEY
        rows = np.repeat(np.arange(keys.shape[0]), keys.shape[1])[mask.ravel()]
        return sp.csr_matrix(
            (np.ones(int(mask.sum())), (rows, inv.ravel()[mask.ravel()])),
            shape=(keys.shape[0], len(vocab)),
        )

    a, b = incidence(ks, inv_s), incidence(kt, inv_t)
    inter = (a @ b.T).toarray()
    na, nb = np.asarray(a.sum(1)).ravel(), np.asarray(b.sum(1)).ravel()
    union = na[:, None] + nb[None, :] - inter
    jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    target = np.argmax(jac, axis=1).astype(np.int64)
    best = jac[np.arange(len(target)), target]
    defined = (na > 0) & (best > 0)
    return SilverStandard(np.where(defined, target, -1), np.where(defined, best, np.nan))


def pair_truth(setup: Any, replay: Any, source: str, target: str, ignore: Sequence[int]) -> Any:
    """Held-out correlations and contexts of every source feature against every target."""
    from semot.collection.tokens import as_token_source
    from semot.evaluation.report import silver_standard
    from semot.evaluation.stats import accumulate

    src_site, tgt_site = setup.sites[source], setup.sites[target]
    stats = accumulate(
        replay,
        src_site,
        tgt_site,
        as_token_source(setup.tokens["evaluate"]).batches(setup.config.batch_size),
        np.arange(src_site.d_sae, dtype=np.int64),
        ignore=ignore,
    )
    split_a, split_b = stats.splits
    corr_a, corr_b = split_a.correlation(), split_b.correlation()
    return PairTruth(
        stats,
        corr_a,
        corr_b,
        silver_standard(corr_a, split_a.source_varies()),
        context_silver(stats),
    )


def score_rows(
    ranking: Any,
    truth: PairTruth,
    rows: npt.NDArray[np.int64],
    thresholds: Sequence[float],
    context_thresholds: Sequence[float],
) -> list[dict[str, Any]]:
    """Agreement of ``ranking`` (over source features ``rows``) with both silver standards."""
    from semot.evaluation.report import SilverStandard, method_rows

    def sub(s: Any) -> Any:
        return SilverStandard(s.target[rows], s.r[rows])

    ks = truth.stats.source_contexts.keys()[rows]
    kt = truth.stats.target_contexts.keys()
    out = []
    for name, silver, ths in (
        ("correlation", sub(truth.silver_corr), thresholds),
        ("context", sub(truth.silver_context), context_thresholds),
    ):
        for row in method_rows(ranking, silver, truth.corr_a[rows], ks, kt, ths):
            out.append({"silver": name, **row})
    return out


# ----------------------------------------------------------------------------------- the study
def _decoder_distance(setup: Any, source: str, target: str) -> npt.NDArray[np.float64]:
    from semot.evaluation.methods import sae_state
    from semot.matching.sets import unit_rows

    ws = sae_state(setup.saes[source][0], "source_sae", setup.sites[source].d_sae)["W_dec"]
    wt = sae_state(setup.saes[target][0], "target_sae", setup.sites[target].d_sae)["W_dec"]
    out: npt.NDArray[np.float64] = 1.0 - unit_rows(ws) @ unit_rows(wt).T
    return out


def run_study(
    preset: str,
    *,
    cache: str | Path,
    out: str | Path | None = None,
    plan: StudyPlan | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run the study on a preset of :data:`semot.bench.real.PRESETS`; return its records.

    Parameters
    ----------
    preset : str
        The real-model preset (model, corpus sizes, SAEs).
    cache : path
        The benchmark cache (SAEs, stored states, collections and pair results are reused).
    out : path, optional
        Writes ``study.json`` (every record) and ``study.md`` (the tables).
    plan : StudyPlan, optional
        What to measure (default: :class:`StudyPlan`).
    pairs : sequence of (source layer, target layer), optional
        Default: :data:`STUDY_PAIRS` of the preset, else every pair of its layers.
    device, progress
        As in :func:`semot.bench.real.run_real_benchmark`.
    log : callable, optional
        Receives one line per finished measurement.

    Returns
    -------
    dict
        ``config``, ``plan``, ``pairs`` (silver-standard summaries) and ``records``: one per
        (pair, collection, geometry, seed, method, silver standard, threshold) with ``top1``,
        ``top5``, ``mean_r``, ``context_jaccard`` and ``n_sources``.
    """
    from semot.bench.real import prepare_real
    from semot.collection.tokens import ignored_token_ids

    plan = plan or StudyPlan()
    setup = prepare_real(preset, cache=cache, device=device, progress=progress)
    cfg = setup.config
    layer_hook = dict(zip(cfg.layers, setup.hooks, strict=True))
    if pairs is None:
        pairs = STUDY_PAIRS.get(preset) or tuple(
            (a, b) for i, a in enumerate(cfg.layers) for b in cfg.layers[i + 1 :]
        )
    collect_states = stored_states(setup, "collect", progress=progress)
    eval_states = stored_states(setup, "evaluate", progress=progress)
    ignore = ignored_token_ids(setup.runner.tokenizer, "special")
    thresholds, context_thresholds = (0.3, 0.5, 0.7), (0.1, 0.3)
    geometries = {g.name: g for g in (*plan.geometries, *plan.single_seed_geometries)}
    main_geo = geometries[plan.main_geometry]

    # Jobs: (sample, seed, geometry, methods) measured on every pair.
    jobs: list[tuple[SampleConfig, int, Geometry, tuple[str, ...]]] = []
    for seed in plan.seeds:
        for g in plan.geometries:
            jobs.append((plan.main, seed, g, STUDY_METHODS))
    for g in plan.single_seed_geometries:
        jobs.append((plan.main, plan.seeds[0], g, STUDY_METHODS))
    jobs.append((plan.main, plan.seeds[0], main_geo, ("sliced-512",)))
    for sample in plan.samples:
        jobs.append((sample, plan.seeds[0], main_geo, ("sliced", "sliced-gaussian", "centroid")))
    for ref in plan.references:
        if ref != main_geo.reference:
            geo = replace(main_geo, name=f"{main_geo.name}@{ref}", reference=ref)
            jobs.append((plan.main, plan.seeds[0], geo, ("sliced", "sliced-gaussian", "centroid")))

    records: list[dict[str, Any]] = []
    pair_info = []
    runs: dict[tuple[SampleConfig, int], Any] = {}
    for src_layer, tgt_layer in pairs:
        source, target = layer_hook[src_layer], layer_hook[tgt_layer]
        hops = cfg.layers.index(tgt_layer) - cfg.layers.index(src_layer)
        t0 = time.perf_counter()
        truth = pair_truth(setup, eval_states, source, target, ignore)
        decoder = _decoder_distance(setup, source, target)
        pair_info.append(
            {
                "source": src_layer,
                "target": tgt_layer,
                "hops": hops,
                "seconds": time.perf_counter() - t0,
                **{
                    f"n_silver_corr_{t:g}": int(truth.silver_corr.kept(t).sum()) for t in thresholds
                },
                **{
                    f"n_silver_context_{t:g}": int(truth.silver_context.kept(t).sum())
                    for t in context_thresholds
                },
                "silver_agreement": _agreement(truth),
            }
        )
        for sample, seed, geo, methods in jobs:
            key = (sample, seed)
            if key not in runs:
                runs[key] = study_run(setup, collect_states, sample, seed, progress=progress)
            run = runs[key]
            s_fd, t_fd = run[setup.sites[source].name], run[setup.sites[target].name]
            src_ids = np.asarray(s_fd.fired_ids, np.int64)
            has_silver = truth.silver_corr.kept(min(thresholds))[src_ids]
            has_silver |= truth.silver_context.kept(min(context_thresholds))[src_ids]
            src_ids = src_ids[has_silver]
            if len(src_ids) > MAX_SOURCES:
                pick = np.random.default_rng(seed).choice(len(src_ids), MAX_SOURCES, replace=False)
                src_ids = np.sort(src_ids[pick])
            tgt_ids = np.asarray(t_fd.fired_ids, np.int64)
            ref = reference_hook(setup, geo, source, target)
            t0 = time.perf_counter()
            refmap = fit_geometry(geo, ref, collect_states, ignore, seed)
            src = clouds_in(s_fd, src_ids, refmap, collect_states, source)
            tgt = clouds_in(t_fd, tgt_ids, refmap, collect_states, target)
            token = None
            if "token" in methods:
                hs = token_histograms(s_fd, src_ids, setup.tokens["collect"])
                ht = token_histograms(t_fd, tgt_ids, setup.tokens["collect"])
                token = 1.0 - (hs @ ht.T).toarray()
            scores = pair_scores(
                src,
                tgt,
                seed=seed,
                decoder=decoder[np.ix_(src_ids, tgt_ids)],
                token=token,
                corr_b=truth.corr_b[np.ix_(src_ids, tgt_ids)],
                methods=methods,
            )
            job_rows = []
            for method, score in scores.items():
                ranking = ranking_of(method, score, tgt_ids)
                for row in score_rows(ranking, truth, src_ids, thresholds, context_thresholds):
                    job_rows.append(
                        {
                            "source": src_layer,
                            "target": tgt_layer,
                            "hops": hops,
                            "sample": sample.name,
                            "seed": seed,
                            "geometry": geo.name,
                            "method": method,
                            **row,
                        }
                    )
            records.extend(job_rows)
            if log is not None:
                summary = " ".join(
                    f"{r['method']}={r['top1']:.3f}"
                    for r in job_rows
                    if r["silver"] == "correlation" and r["threshold"] == 0.5
                )
                log(
                    f"[{src_layer}->{tgt_layer} {sample.name} seed={seed} {geo.name} "
                    f"{time.perf_counter() - t0:.0f}s] {summary}"
                )
    report = {
        "config": asdict(cfg),
        "plan": asdict(plan),
        "date": time.strftime("%Y-%m-%d"),
        "device": str(setup.runner.device),
        "sae_reports": {
            h: {k: v for k, v in asdict(r).items() if k != "path"} for h, r in setup.reports.items()
        },
        "pairs": pair_info,
        "records": records,
    }
    if out is not None:
        from semot.bench.study_report import format_study

        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        atomic_write_text(o / "study.json", json.dumps(report, indent=1, default=str) + "\n")
        atomic_write_text(o / "study.md", format_study(report) + "\n")
    return report


def _agreement(truth: PairTruth) -> float:
    """Fraction of sources with both silver targets defined whose two silver targets agree."""
    a, b = truth.silver_corr.target, truth.silver_context.target
    both = (a >= 0) & (b >= 0)
    return float(np.mean(a[both] == b[both])) if both.any() else float("nan")
