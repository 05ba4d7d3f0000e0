"""``evaluate``: is a match right? Every method against a silver standard on held-out tokens."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.checks import check_optional_positive_int, check_positive_int
from semot.evaluation.methods import METHODS, TOP, Ranking, run_methods, sae_state
from semot.evaluation.report import (
    SILVER,
    TABLE_COLUMNS,
    EvaluationResult,
    method_rows,
    silver_standard,
)
from semot.evaluation.stats import accumulate

__all__ = ["evaluate"]


def _check_thresholds(thresholds: Any) -> tuple[float, ...]:
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Sequence):
        raise TypeError(
            f"thresholds: expected a sequence of numbers, got {type(thresholds).__name__}"
        )
    if len(thresholds) == 0:
        raise ValueError("thresholds: give at least one threshold")
    out = []
    for i, t in enumerate(thresholds):
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError(f"thresholds: index {i} is {type(t).__name__}, expected a number")
        if not (math.isfinite(float(t)) and 0.0 < float(t) <= 1.0):
            raise ValueError(f"thresholds: index {i} is {t!r}, expected a correlation in (0, 1]")
        out.append(float(t))
    return tuple(sorted(set(out)))


def _check_site(site: Any, name: str) -> None:
    from semot.collection.models import Site

    if not isinstance(site, Site):
        raise TypeError(
            f"{name}: expected a semot.collection.models.Site (Site.from_sae(sae)), got "
            f"{type(site).__name__}"
        )


def _check_run(fd: Any, site: Any, name: str) -> None:
    if not (hasattr(fd, "fired_ids") and hasattr(fd, "feature_ids")):
        raise TypeError(f"{name}: expected a FeatureDistributions, got {type(fd).__name__}")
    ids = np.asarray(fd.feature_ids)
    if ids.size and int(ids.max()) >= site.d_sae:
        raise ValueError(
            f"{name}: holds feature id {int(ids.max())} but the site {site.name!r} has "
            f"d_sae = {site.d_sae} features (is it the run of that site's SAE?)"
        )
    recorded = (fd.metadata.get("sae") or {}).get("d_sae")
    if recorded is not None and int(recorded) != site.d_sae:
        raise ValueError(
            f"{name}: was collected with an SAE of d_sae = {recorded}, but the site "
            f"{site.name!r} has d_sae = {site.d_sae}"
        )


def _choose_sources(
    fired: npt.NDArray[np.int64], n_sources: int, seed: int
) -> npt.NDArray[np.int64]:
    if len(fired) == 0:
        raise ValueError("source_fd: no source feature fired in the collection; nothing to match")
    if len(fired) <= n_sources:
        return np.sort(fired).astype(np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(fired, n_sources, replace=False)).astype(np.int64)


def evaluate(
    model: Any,
    source_site: Any,
    target_site: Any,
    source_fd: Any,
    target_fd: Any,
    tokens: Any,
    *,
    source_sae: Any = None,
    target_sae: Any = None,
    n_tokens: int | None = None,
    n_sources: int = 1024,
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    top_contexts: int = 20,
    sinkhorn_sources: int = 128,
    batch_size: int = 16,
    seed: int = 0,
    ignore_token_ids: Sequence[int] | str | None = "special",
    progress: bool = True,
) -> EvaluationResult:
    """Score every matching method against a silver standard measured on held-out tokens.

    One pass over ``tokens`` (each batch: one forward pass, both sites encoded) accumulates, for
    the evaluated source features and every target feature, float64 sums for Pearson's r on two
    disjoint halves of the held-out sequences (even stream index: split A, odd: split B), and
    each feature's top ``top_contexts`` activating (sequence, position) pairs. Then:

    - silver standard: per source, the target with the highest r on split A, kept where
      r >= each threshold; ``many_to_one`` counts kept sources sharing their target;
    - methods, each ranking :data:`~semot.evaluation.methods.TOP` targets per source:
      ``semot-sliced`` (:func:`semot.match`, sliced, nearest), ``semot-sliced-1to1``
      (one-to-one over all fired sources), ``semot-sinkhorn`` (Sinkhorn divergence on the
      sliced nearest candidates of ``sinkhorn_sources`` sources), ``centroid``,
      ``decoder-cosine`` and ``sae-match`` (need the SAE weights), ``activation-corr-B``
      (Pearson r on split B);
    - metrics per method and threshold (:func:`semot.evaluation.report.method_rows`): top-1 and
      top-5 agreement with the silver target, mean split-A r of the first target, Jaccard
      overlap of the two features' top-context sets.

    Parameters
    ----------
    model
        A ``HookedTransformer``, an :class:`~semot.collection.hf.HFRunner` (what
        :func:`semot.collection.models.load_model` returns) or a collection runner.
    source_site, target_site : semot.collection.models.Site
        The two dictionaries (:meth:`Site.from_sae`); the same hook is fine.
    source_fd, target_fd : FeatureDistributions
        The collection run of the two sites (:func:`semot.collection.load_run`), collected on
        other tokens than ``tokens``. Sources are drawn from the fired ones.
    tokens : token source or array of ids (n_sequences, length)
        Held-out tokens (see :mod:`semot.collection.tokens`); at least 2 sequences.
    source_sae, target_sae : sae-lens SAE or its state dict, optional
        The SAEs' weights (``W_enc``, ``b_enc``, ``W_dec``, optional ``threshold``), for
        decoder cosine and SAE Match; without both those two rows are left out.
    n_tokens : int, optional
        Stop after this many tokens (default: all).
    n_sources : int
        Source features evaluated: all fired ones when fewer, else this many drawn with
        ``seed``.
    thresholds : sequence of float in (0, 1]
        Silver-standard correlation thresholds reported.
    top_contexts : int
        Top-activating contexts kept per feature (positive activations only).
    sinkhorn_sources : int
        Sources the Sinkhorn row covers (the slowest method).
    batch_size : int
        Sequences per forward pass.
    seed : int
        Seed of the source subset, the sliced projections and the Sinkhorn subset.
    ignore_token_ids : "special", sequence of int or None
        Token ids left out of every statistic, as in :func:`semot.collect` (``"special"``: the
        tokenizer's special tokens, an error for a model without tokenizer).
    progress : bool
        A tqdm bar over the tokens.

    Returns
    -------
    EvaluationResult
        ``.table`` (pandas), ``.to_json(path)``, ``.plot(path)``, ``print(result)``.

    Notes
    -----
    Memory: ``2 * 8 * n_sources * d_sae_target`` bytes on the model's device for the two
    splits' cross sums (1024 x 16384 features: 134 MB each, 268 MB in all), plus
    ``12 * top_contexts * (n_sources + d_sae_target)`` bytes of contexts and one batch of
    activations; nothing grows with the number of tokens. The methods use what they always
    use (the collected clouds; SAE Match's cost matrix, which over all features is
    ``8 * d_sae_source * d_sae_target`` bytes up to
    :data:`~semot.evaluation.methods.FULL_ASSIGNMENT_MAX` entries and only the evaluated
    sources' rows above it).
    """
    from semot.collection.models import runner_for
    from semot.collection.tokens import as_token_source, ignored_token_ids, limit_tokens

    _check_site(source_site, "source_site")
    _check_site(target_site, "target_site")
    _check_run(source_fd, source_site, "source_fd")
    _check_run(target_fd, target_site, "target_fd")
    ths = _check_thresholds(thresholds)
    n_tokens = check_optional_positive_int(n_tokens, "n_tokens")
    n_sources = check_positive_int(n_sources, "n_sources")
    top_contexts = check_positive_int(top_contexts, "top_contexts")
    sinkhorn_sources = check_positive_int(sinkhorn_sources, "sinkhorn_sources")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    if (source_sae is None) != (target_sae is None):
        raise ValueError("source_sae/target_sae: give both SAEs' weights, or neither")
    s_state = t_state = None
    if source_sae is not None:
        s_state = sae_state(source_sae, "source_sae", source_site.d_sae)
        t_state = sae_state(target_sae, "target_sae", target_site.d_sae)
    runner = runner_for(model)
    if hasattr(runner, "check_hooks"):
        runner.check_hooks([source_site.hook, target_site.hook])
    ignore = ignored_token_ids(getattr(runner, "tokenizer", None), ignore_token_ids)
    source = as_token_source(tokens)
    sources = _choose_sources(np.asarray(source_fd.fired_ids, np.int64), n_sources, seed)

    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_tokens, unit="tok", desc="evaluate", dynamic_ncols=True)
    try:
        stats = accumulate(
            runner,
            source_site,
            target_site,
            limit_tokens(source.batches(batch_size), n_tokens),
            sources,
            top_contexts=top_contexts,
            ignore=ignore,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    pass_seconds = time.perf_counter() - started
    split_a, split_b = stats.splits
    for name, sums in (("A", split_a), ("B", split_b)):
        if sums.n < 2:
            raise ValueError(
                f"tokens: held-out split {name} got {sums.n} tokens; give at least 2 sequences "
                "(even-numbered ones go to split A, odd-numbered ones to split B)"
            )
    corr_a = split_a.correlation()
    silver = silver_standard(corr_a, split_a.source_varies())
    rankings = run_methods(
        source_fd,
        target_fd,
        sources,
        split_b.correlation(),
        source_sae=s_state,
        target_sae=t_state,
        sinkhorn_sources=sinkhorn_sources,
        seed=seed,
    )
    result = _result(stats, silver, corr_a, rankings, ths, source_site, target_site, target_fd)
    result.info["seconds"] = {
        "token_pass": pass_seconds,
        **{name: ranking.seconds for name, ranking in rankings.items()},
    }
    return result


def _result(
    stats: Any,
    silver: Any,
    corr_a: npt.NDArray[np.float64],
    rankings: dict[str, Ranking],
    thresholds: tuple[float, ...],
    source_site: Any,
    target_site: Any,
    target_fd: Any,
) -> EvaluationResult:
    import pandas as pd

    src_keys = stats.source_contexts.keys()
    tgt_keys = stats.target_contexts.keys()
    silver_targets = np.full((len(stats.source_ids), TOP), -1, dtype=np.int64)
    silver_targets[:, 0] = silver.target
    ceiling = Ranking(
        SILVER, silver_targets, silver.target >= 0, "the best-correlated target on split A"
    )
    rows = []
    for ranking in [ceiling, *(rankings[m] for m in METHODS if m in rankings)]:
        for row in method_rows(ranking, silver, corr_a, src_keys, tgt_keys, thresholds):
            row["note"] = ranking.note
            rows.append(row)
    table = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, "note"])
    silver_frame = pd.DataFrame(
        {
            "threshold": list(thresholds),
            "n_kept": [int(silver.kept(t).sum()) for t in thresholds],
            "n_defined": [int((silver.target >= 0).sum())] * len(thresholds),
            "many_to_one": [silver.many_to_one(t) for t in thresholds],
        }
    )
    info = {
        "source_site": source_site.name,
        "target_site": target_site.name,
        "source_hook": source_site.hook,
        "target_hook": target_site.hook,
        "n_sources": len(stats.source_ids),
        "n_target": stats.n_target,
        "n_target_fired": len(target_fd.fired_ids),
        "n_tokens": stats.n_tokens,
        "n_tokens_read": stats.n_tokens_read,
        "n_sequences": stats.n_sequences,
        "n_tokens_a": stats.splits[0].n,
        "n_tokens_b": stats.splits[1].n,
        "top_contexts": stats.source_contexts.k,
        "thresholds": list(thresholds),
    }
    return EvaluationResult(table, silver_frame, rankings, silver, stats.source_ids, info)
