"""Collect feature distributions from a model: one streaming pass over a token source.

:func:`collect` runs the model on batches of tokens, encodes the hidden states of each
:class:`~.models.Site` (an SAE at a hook) into feature activations, maps the reference
hidden states to support points (:mod:`.reference`) and offers every firing position to
a per-feature streaming sample (:mod:`semot.features.sampling`). All of it happens on the model's
device; hidden states of the whole stream are never kept. Results are
:class:`~semot.features.container.FeatureDistributions`, one per site.

The pipeline, one step per method of the run object :func:`collect` builds:

1. resolve the sites, the runner of the model and the token source;
2. open the run directory: refuse a non-empty one, or read the checkpoint to resume from;
3. fit the reference map (or take the given or checkpointed one), keeping the calibration
   pass's hidden states (within :data:`CALIBRATION_STATE_BYTES`) so that step 5 does not run
   the model on those batches again;
4. build the run configuration (with weight fingerprints) and check it against the checkpoint;
5. stream the batches into one sampler per site, checkpointing as it goes;
6. turn the samples into FeatureDistributions and write the finished run.

Long runs checkpoint every ``checkpoint_every`` tokens (:mod:`.checkpoint`, atomic writes) and
resume with ``resume=True``; a resumed run gives exactly the output of an uninterrupted one,
because each position's sampling key depends only on the seed and the position's identity.

Needs the ``semot[collect]`` extra (torch, transformer-lens, sae-lens).
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from semot._utils.checks import check_choice, check_optional_positive_int, check_positive_int
from semot._utils.memory import available_memory
from semot.collection.checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    Checkpoint,
    Progress,
    SavedState,
    array_fingerprint,
    config_differences,
    encoder_fingerprint,
    model_fingerprint,
)
from semot.collection.models import HookedRunner, ModuleHooks, Site, require_torch, runner_for
from semot.collection.reading import BatchReader
from semot.collection.reference import (
    Moments,
    ReferenceMap,
    ReferenceSpec,
    default_reference_hook,
    fit_reference,
    n_components_or_deprecated_k,
)
from semot.collection.tokens import (
    TokenBatch,
    TokenSource,
    as_token_source,
    ignored_token_ids,
    limit_tokens,
)
from semot.features.container import FeatureDistributions
from semot.features.contexts import TokenContexts, run_points, token_strings
from semot.features.runs import RUN_FILE, read_run_record, write_run_record
from semot.features.sampling import MODES, FeatureSampler, Mode, to_distributions

_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _output_name(name: str) -> str:
    """Return the directory name of a site's output: unsafe characters become ``_``."""
    return _UNSAFE_IN_NAME.sub("_", name)


def collect(
    model: Any,
    saes: Sequence[Any] | Any,
    tokens: Any,
    *,
    n_tokens: int | None = None,
    samples_per_feature: int = 128,
    mode: Mode = "weighted",
    reference: str | ReferenceSpec | ReferenceMap | None = None,
    reduce: Literal["random", "pca"] | None = None,
    n_components: int | None = None,
    normalize: Literal["auto", "whiten", "unit", "standardize"] | None = "auto",
    batch_size: int = 16,
    seed: int = 0,
    out: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    ignore_token_ids: Sequence[int] | str | None = "special",
    model_name: str | None = None,
    k: int | None = None,
) -> dict[str, FeatureDistributions]:
    r"""Sample, for every feature of every SAE, token positions where it fires.

    Parameters
    ----------
    model : HookedTransformer, HookedSAETransformer or torch.nn.Module
        The model (its device is used). Generic modules are run by
        :class:`~.models.ModuleHooks` with hooks = submodule names; wrap the model in a
        ``ModuleHooks(model, call=...)`` to change how it is called.
    saes : SAE, Site, or a sequence of them
        sae-lens SAEs (hook from ``sae.cfg.metadata.hook_name``) or :class:`~.models.Site`
        objects; all are read in one forward pass that stops after the last needed layer.
    tokens : array (S, L), re-iterable of sequences/batches, or a token source
        See :mod:`semot.collection.tokens` (``TextFiles``, ``DatasetTokens``).
    n_tokens : int, optional
        Stop after exactly this many tokens (all of the source when None).
    samples_per_feature : int
        Sample size n per feature.
    mode : {"weighted", "top"}
        Activation-weighted reservoir sample with uniform weights (an unbiased sample of the
        activation-weighted measure), or the n largest activations weighted by activation.
    reference : str, ReferenceSpec or ReferenceMap, optional
        Reference hook (same-context), a spec, or a fitted map (e.g. ``ReferenceMap.load`` of
        an earlier run, so both runs share one space). Default: the latest SAE hook
        (:func:`~semot.collection.reference.default_reference_hook`).
    reduce, n_components, normalize
        Dimension reduction, reduced dimension and normalisation of the support points when
        ``reference`` is a hook name (see :class:`~semot.collection.reference.ReferenceSpec`).
        ``normalize="auto"`` (default) is ``"whiten"`` (PCA whitening to ``n_components``,
        default at most 128 directions), or None with ``reduce="random"``: the geometry the
        method study measured best (README, "Which method"). ``normalize=None`` keeps the raw
        hidden states.
    batch_size : int
        Sequences per forward pass.
    seed : int
        Seed of the sampling keys and of the random projection.
    out : path, optional
        Run directory: one FeatureDistributions per site in ``out/<site name>``, ``run.json``,
        and checkpoints in ``out/checkpoint`` while running.
    checkpoint_every : int, optional
        Write a checkpoint every this many tokens (needs ``out``).
    resume : bool
        Continue from the checkpoint in ``out`` (the configuration must match).
    overwrite : bool
        Replace existing outputs in ``out``.
    progress : bool
        Show a progress bar (tokens/s, features with a full sample).
    ignore_token_ids : "special", sequence of int or None
        Token ids whose positions are never sampled nor counted (default: the tokenizer's
        special tokens, e.g. BOS, whose hidden states are outliers).
    model_name : str, optional
        Recorded in the metadata (default: ``model.cfg.model_name`` when present).
    k : int, optional
        Deprecated name of ``n_components``.

    Returns
    -------
    dict of str to FeatureDistributions
        One per site, keyed by site name.
    """
    require_torch()
    n_components = n_components_or_deprecated_k(n_components, k, stacklevel=1)
    check_choice(mode, "mode", MODES)
    check_positive_int(samples_per_feature, "samples_per_feature")
    check_positive_int(batch_size, "batch_size")
    check_optional_positive_int(n_tokens, "n_tokens")
    if checkpoint_every is not None and out is None:
        raise ValueError("checkpoint_every: needs out=DIR to write checkpoints to")
    if resume and out is None:
        raise ValueError("resume: needs out=DIR holding the checkpoint")

    run = _CollectRun(
        model,
        saes,
        tokens,
        n_tokens=n_tokens,
        samples_per_feature=samples_per_feature,
        mode=mode,
        batch_size=batch_size,
        seed=seed,
        out=out,
        ignore_token_ids=ignore_token_ids,
        model_name=model_name,
    )
    saved = run.open_directory(resume=resume, overwrite=overwrite)
    refmap = run.reference_map(reference, saved, reduce, n_components, normalize)
    config = run.config(refmap)
    if saved is not None:
        run.check_resumes(saved, config)
    samplers = run.samplers(refmap, saved)
    done = run.stream(
        refmap,
        samplers,
        config,
        saved.progress if saved is not None else Progress(),
        checkpoint_every=checkpoint_every,
        show_progress=progress,
    )
    return run.finish(refmap, samplers, config, done)


class _CollectRun:
    """One call of :func:`collect`: its inputs, resolved, and the steps of its pipeline.

    The constructor is step 1: it turns ``saes`` into sites, ``model`` into a runner and
    ``tokens`` into a token source, and resolves the ignored token ids and the model name.
    """

    def __init__(
        self,
        model: Any,
        saes: Sequence[Any] | Any,
        tokens: Any,
        *,
        n_tokens: int | None,
        samples_per_feature: int,
        mode: Mode,
        batch_size: int,
        seed: int,
        out: str | Path | None,
        ignore_token_ids: Sequence[int] | str | None,
        model_name: str | None,
    ) -> None:
        self.runner: HookedRunner | ModuleHooks = runner_for(model)
        # An SAE's hook may be named the transformer-lens way on a transformers model.
        self.sites = [replace(s, hook=self.runner.resolve_hook(s.hook)) for s in _as_sites(saes)]
        self.source: TokenSource = as_token_source(tokens)
        self.device = self.runner.device
        # The model itself (not the runner wrapping it) holds the cfg and weights.
        self.model = getattr(self.runner, "model", model)
        self.ignore = ignored_token_ids(getattr(self.runner, "tokenizer", None), ignore_token_ids)
        self.model_name = model_name or str(
            getattr(self.runner, "name", None)
            or getattr(getattr(self.model, "cfg", None), "model_name", "")
            or "model"
        )
        self.n_tokens = n_tokens
        self.samples_per_feature = samples_per_feature
        self.mode: Mode = mode
        self.batch_size = batch_size
        self.seed = seed
        self.root = Path(out) if out is not None else None
        self.checkpoint = Checkpoint(self.root) if self.root is not None else None
        # Hidden states of the first batches, kept from the calibration pass (step 3) for the
        # stream (step 5), in stream order.
        self.calibration_states: list[_KeptStates | None] = []

    # ------------------------------------------------------------ step 2: run directory
    def open_directory(self, *, resume: bool, overwrite: bool) -> SavedState | None:
        """Read the checkpoint to resume from, or make sure ``out`` may be written.

        Returns the checkpoint's content with ``resume``, else None. Without ``resume`` a
        non-empty ``out`` is refused unless ``overwrite``, which drops its checkpoint (the
        site directories and ``run.json`` are replaced when the run finishes).
        """
        root, checkpoint = self.root, self.checkpoint
        if resume:
            assert root is not None and checkpoint is not None  # collect() checked `out`
            if not checkpoint.exists():
                raise ValueError(f"resume: no checkpoint in {root / CHECKPOINT_DIR}")
            return checkpoint.read()
        if root is not None and root.exists() and any(root.iterdir()):
            if not overwrite:
                raise ValueError(
                    f"out: {root} is not empty; pass resume=True to continue a run or "
                    "overwrite=True to replace it"
                )
            if checkpoint is not None:
                checkpoint.remove()
        return None

    # ------------------------------------------------------------ step 3: reference map
    def reference_map(
        self,
        reference: str | ReferenceSpec | ReferenceMap | None,
        saved: SavedState | None,
        reduce: Literal["random", "pca"] | None,
        n_components: int | None,
        normalize: Literal["auto", "whiten", "unit", "standardize"] | None,
    ) -> ReferenceMap:
        """Return the map from hidden states to support points, having checked every hook.

        A given :class:`ReferenceMap` is used as is, a resumed run uses its checkpoint's; else
        the map of ``reference`` (a spec, or a hook name with ``reduce``, ``n_components`` and
        ``normalize``; default hook: the latest SAE hook) is fitted, on a calibration pass
        over the first ``calibration_tokens`` tokens when it needs one.
        """
        if isinstance(reference, ReferenceMap):
            refmap = reference
        elif saved is not None:
            refmap = saved.reference_map()
        else:
            if isinstance(reference, ReferenceSpec):
                spec = reference
            else:
                if normalize == "auto":
                    normalize = None if reduce == "random" else "whiten"
                spec = ReferenceSpec(
                    hook=reference or default_reference_hook([s.hook for s in self.sites]),
                    reduce=reduce,
                    n_components=n_components,
                    normalize=normalize,
                    seed=self.seed,
                )
            self.runner.check_hooks([spec.hook] + [s.hook for s in self.sites])
            if spec.needs_calibration:
                refmap = self._calibrate(spec)
            else:
                refmap = fit_reference(spec, self._reference_width(spec.hook))
        self.runner.check_hooks(self.hooks(refmap))
        return refmap

    def hooks(self, refmap: ReferenceMap) -> list[str]:
        """Hooks read in every forward pass: the sites' and the reference map's inputs."""
        site_hooks = [s.hook for s in self.sites]
        return list(dict.fromkeys(site_hooks + [refmap.input_hook(h) for h in site_hooks]))

    def _calibrate(self, spec: ReferenceSpec) -> ReferenceMap:
        """Fit ``spec`` on the moments of the first ``spec.calibration_tokens`` tokens.

        The hidden states of the calibration batches that the stream reads too are kept in
        :attr:`calibration_states` (within :func:`_state_cache_budget`), so that the stream
        does not run the model on them a second time.
        """
        torch = require_torch()
        ref_moments = Moments()
        site_moments: dict[str, Moments] = {s.hook: Moments() for s in self.sites}
        linear = spec.kind == "linear-map"
        hooks = [spec.hook] + ([s.hook for s in self.sites] if linear else [])
        # Every hook the stream reads, whichever kind of map is fitted (ReferenceMap.input_hook
        # gives the site's own hook or spec.hook).
        stream_hooks = list(dict.fromkeys([s.hook for s in self.sites] + [spec.hook]))
        room = _state_cache_budget(self.device)
        d_ref = None
        batches = limit_tokens(self.source.batches(self.batch_size), spec.calibration_tokens)
        with torch.inference_mode():
            for batch in batches:
                caching = room > 0
                tokens = torch.as_tensor(batch.tokens, device=self.device)
                hidden = self.runner.run(tokens, stream_hooks if caching else hooks)
                if caching:
                    size = sum(int(hidden[h].numel()) * hidden[h].element_size() for h in hidden)
                    room -= size
                    if room >= 0:
                        self.calibration_states.append(_KeptStates(batch, hidden))
                # Ignored positions (special tokens, whose states are outliers) are never
                # sampled, so they do not shape the space either.
                keep = ~np.isin(batch.tokens.reshape(-1), np.asarray(self.ignore, np.int64))
                rows = torch.as_tensor(np.flatnonzero(keep), device=self.device)
                y = hidden[spec.hook].reshape(-1, hidden[spec.hook].shape[-1])
                d_ref = int(y.shape[-1])
                y = y[rows]
                ref_moments.add(y)
                if linear:
                    for s in self.sites:
                        x = hidden[s.hook].reshape(-1, hidden[s.hook].shape[-1])[rows]
                        site_moments[s.hook].add(x, y)
        if d_ref is None:
            raise ValueError("tokens: the token source is empty (no calibration tokens)")
        return fit_reference(spec, d_ref, ref_moments, site_moments if linear else None)

    def _reference_width(self, hook: str) -> int:
        """Width of the hidden states at ``hook``, from one token of the source."""
        torch = require_torch()
        first = next(iter(self.source.batches(1)), None)
        if first is None:
            raise ValueError("tokens: the token source is empty")
        with torch.inference_mode():
            tokens = torch.as_tensor(first.tokens[:, :1], device=self.device)
            hidden = self.runner.run(tokens, [hook])
        return int(hidden[hook].shape[-1])

    # ------------------------------------------------------------ step 4: configuration
    def config(self, refmap: ReferenceMap) -> dict[str, Any]:
        """Return the run configuration, recorded in checkpoints and ``run.json``.

        Weight fingerprints of the model and the encoders guard a resume against changed
        weights; they are computed only for runs with ``out`` (nothing to resume otherwise).
        It is compared with a checkpoint's on resume. The result went through a JSON round
        trip (tuples are lists), as it is stored.
        """
        track = self.root is not None
        config = {
            "model": {
                "name": self.model_name,
                "fingerprint": model_fingerprint(self.model) if track else None,
            },
            "sites": {
                _output_name(s.name): {
                    "hook": s.hook,
                    "identity": s.identity,
                    "d_sae": s.d_sae,
                    "features": array_fingerprint(s.feature_ids),
                    "encoder": encoder_fingerprint(s) if track else None,
                }
                for s in self.sites
            },
            "tokens": self.source.describe(),
            "n_tokens": self.n_tokens,
            "samples_per_feature": self.samples_per_feature,
            "mode": self.mode,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "ignore_token_ids": self.ignore,
            "reference": refmap.to_metadata(),
            "reference_fingerprint": refmap.fingerprint(),
        }
        normalised: dict[str, Any] = json.loads(json.dumps(config))
        return normalised

    @staticmethod
    def check_resumes(saved: SavedState, config: Mapping[str, Any]) -> None:
        """Refuse to resume a checkpoint written by a different configuration, listing how."""
        diffs = config_differences(saved.config, config)
        if diffs:
            raise ValueError(
                "resume: the checkpoint was written by a different configuration:\n  "
                + "\n  ".join(diffs)
            )

    # ------------------------------------------------------------ step 5: streaming
    def samplers(self, refmap: ReferenceMap, saved: SavedState | None) -> list[FeatureSampler]:
        """One sampler per site on the model's device, restored from the checkpoint if any."""
        torch = require_torch()
        like = torch.empty(0, device=self.device)
        samplers = [
            FeatureSampler(
                int(s.feature_ids.shape[0]),
                self.samples_per_feature,
                refmap.dim,
                mode=self.mode,
                seed=self.seed,
                like=like,
            )
            for s in self.sites
        ]
        if saved is not None:
            for sampler, state in zip(samplers, saved.sampler_states, strict=True):
                sampler.load_state_dict(state)
        return samplers

    def stream(
        self,
        refmap: ReferenceMap,
        samplers: Sequence[FeatureSampler],
        config: Mapping[str, Any],
        progress: Progress,
        *,
        checkpoint_every: int | None,
        show_progress: bool,
    ) -> Progress:
        """Offer every batch after ``progress.batches_done`` to the samplers.

        Checkpoints every ``checkpoint_every`` tokens. A first Ctrl-C stops after the current
        batch and a second one at once; either way a checkpoint is saved when the samplers
        are not half-way through an update, and the KeyboardInterrupt propagates.

        Returns
        -------
        Progress
            ``progress``, updated (it is modified in place).
        """
        torch = require_torch()
        reader = BatchReader(
            self.runner, self.hooks(refmap), self.sites, refmap, self.ignore, self.device
        )
        checkpoint = self.checkpoint

        def save_checkpoint() -> None:
            assert checkpoint is not None
            states = [sampler.state_dict() for sampler in samplers]
            checkpoint.write(progress, config, states, refmap.arrays)

        bar = _ProgressBar.start(show_progress, self.n_tokens, progress.tokens_done)
        last_checkpoint = progress.tokens_done
        resume_after = progress.batches_done
        stream = limit_tokens(self.source.batches(self.batch_size), self.n_tokens)
        # True while the samplers and counters are being updated: a checkpoint written then
        # would hold a half-offered batch.
        updating = False
        try:
            with torch.inference_mode(), _DeferredInterrupt() as guard:
                for i_batch, batch in enumerate(stream):
                    if i_batch < resume_after:
                        continue
                    reading = reader.read(batch, self._kept_states(i_batch, batch))
                    updating = True
                    for sampler, (acts, points) in zip(samplers, reading.per_site, strict=True):
                        sampler.update(acts, points, reading.seq, reading.pos)
                    progress.batches_done += 1
                    progress.tokens_done += reading.n_tokens
                    progress.tokens_counted += reading.n_counted
                    progress.n_sequences = max(progress.n_sequences, reading.sequences_end)
                    updating = False
                    if bar is not None:
                        bar.advance(reading.n_tokens, samplers)
                    if (
                        checkpoint_every is not None
                        and progress.tokens_done - last_checkpoint >= checkpoint_every
                    ):
                        save_checkpoint()
                        last_checkpoint = progress.tokens_done
                    if guard.pending:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            if checkpoint is not None and not updating and progress.batches_done > 0:
                save_checkpoint()
                print(
                    f"\ninterrupted: checkpoint saved after {progress.tokens_done} tokens; "
                    "run again with resume=True (--resume) to continue"
                )
            raise
        finally:
            self.calibration_states.clear()
            if bar is not None:
                bar.close()
        if progress.tokens_done == 0:
            raise ValueError("tokens: the token source is empty (no tokens were read)")
        return progress

    def _kept_states(self, i_batch: int, batch: TokenBatch) -> dict[str, Any] | None:
        """Return the hidden states the calibration pass kept of stream batch ``i_batch``, if any.

        Each is handed out once and dropped. A batch that the stream cut differently (a token
        limit below the calibration's) does not match the kept one and is run again.
        """
        states = self.calibration_states
        kept = states[i_batch] if i_batch < len(states) else None
        if kept is None:
            return None
        states[i_batch] = None
        return kept.hidden if kept.matches(batch) else None

    # ------------------------------------------------------------ step 6: results
    def finish(
        self,
        refmap: ReferenceMap,
        samplers: Sequence[FeatureSampler],
        config: Mapping[str, Any],
        progress: Progress,
    ) -> dict[str, FeatureDistributions]:
        """Turn the samples into FeatureDistributions; with ``out``, write the finished run.

        Each site goes to ``out/<site name>``, then ``run.json`` (whose presence marks the run
        finished), then the checkpoint is deleted.
        """
        results: dict[str, FeatureDistributions] = {}
        for site, sampler in zip(self.sites, samplers, strict=True):
            metadata = {
                "model": self.model_name,
                "hook": site.hook,
                "sae": site.identity,
                "sampling": {
                    "mode": self.mode,
                    "samples_per_feature": self.samples_per_feature,
                    "seed": self.seed,
                },
                "reference": refmap.to_metadata(),
                "n_tokens": progress.tokens_counted,
                "n_tokens_read": progress.tokens_done,
                "n_sequences": progress.n_sequences,
                "tokens": self.source.describe(),
                "ignore_token_ids": self.ignore,
            }
            fd = to_distributions(
                sampler.result(in_place=True), site.feature_ids, metadata, dict(refmap.arrays)
            )
            name = _output_name(site.name)
            if self.root is not None:
                fd.save(self.root / name, overwrite=True)
            results[name] = fd
        if self.root is not None:
            self.store_contexts(results)
            write_run_record(self.root, {name: name for name in results}, config)
            if self.checkpoint is not None:
                self.checkpoint.remove()
        return results

    def store_contexts(self, results: Mapping[str, FeatureDistributions]) -> None:
        """Write the token windows around every sampled point to ``contexts.safetensors``.

        One more pass over the token source (no forward pass: the sources yield the same
        batches every time) picks out the sequences that hold a sampled point; with the
        tokenizer known, the decoded string of each id kept is stored too.
        """
        import numpy as np

        assert self.root is not None
        seq, pos = run_points(results.values())
        batches = limit_tokens(self.source.batches(self.batch_size), self.n_tokens)
        rows = ((b.first_seq + i, row) for b in batches for i, row in enumerate(b.tokens))
        contexts = TokenContexts.from_rows(rows, seq, pos)
        tokenizer = getattr(self.runner, "tokenizer", None)
        if tokenizer is not None:
            contexts = contexts.with_vocab(token_strings(tokenizer, np.unique(contexts.ids)))
        contexts.save(self.root)


# ---------------------------------------------------------------- step 3 helpers
#: At most this many bytes of hidden states from the calibration pass are kept for the stream,
#: and at most a quarter of the memory free on the model's device.
CALIBRATION_STATE_BYTES = 1 << 30


@dataclass
class _KeptStates:
    """Hidden states at every stream hook of one calibration batch."""

    batch: TokenBatch
    hidden: dict[str, Any]

    def matches(self, batch: TokenBatch) -> bool:
        """Whether ``batch`` is the batch these states were computed from."""
        return batch.first_seq == self.batch.first_seq and np.array_equal(
            batch.tokens, self.batch.tokens
        )


def _state_cache_budget(device: Any) -> int:
    """Bytes of calibration hidden states that may be kept on ``device`` (0: none)."""
    torch = require_torch()
    dev = torch.device(device)
    free: int | None = None
    if dev.type == "cpu":
        free = available_memory()
    elif dev.type == "cuda":
        free = int(torch.cuda.mem_get_info(dev)[0])
    if free is None:
        return 0
    return min(CALIBRATION_STATE_BYTES, free // 4)


# ---------------------------------------------------------------- step 1 helpers
def _as_sites(saes: Sequence[Any] | Any) -> list[Site]:
    """Sites of ``saes`` (SAEs or Sites, one or a sequence), with unique output names."""
    if isinstance(saes, Site) or not isinstance(saes, Sequence):
        saes = [saes]
    sites = [s if isinstance(s, Site) else Site.from_sae(s) for s in saes]
    if not sites:
        raise ValueError("saes: give at least one SAE or Site")
    names = [_output_name(s.name) for s in sites]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(
            f"saes: two sites share the output name {sorted(dup)[0]!r}; give Site(name=...)"
        )
    return sites


# ---------------------------------------------------------------- step 5 helpers
class _DeferredInterrupt:
    """Turn the first Ctrl-C into a flag checked between batches; a second one interrupts.

    A batch then never stops half-way through the samplers' update, so the checkpoint written
    on interruption is always consistent. Only in the main thread (elsewhere, a no-op).
    """

    def __init__(self) -> None:
        self.pending = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.pending:
            signal.signal(signal.SIGINT, self._old)
            raise KeyboardInterrupt
        self.pending = True

    def __enter__(self) -> _DeferredInterrupt:
        # Only in the main thread, and not where SIGINT is ignored (a background job).
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        ):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class _ProgressBar:
    """A tqdm bar of tokens read, with the count of full samples refreshed once a second."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.last_postfix = 0.0

    @classmethod
    def start(cls, enabled: bool, total: int | None, initial: int) -> _ProgressBar | None:
        """Start a bar at ``initial`` tokens; None when disabled or without tqdm."""
        if not enabled:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm comes with the collect extra
            return None
        return cls(tqdm(total=total, initial=initial, unit="tok", unit_scale=True, desc="collect"))

    def advance(self, n_tokens: int, samplers: Sequence[FeatureSampler]) -> None:
        """Count ``n_tokens`` more tokens."""
        self.bar.update(n_tokens)
        now = time.monotonic()
        # Counting full samples touches every sampler: not on every batch.
        if now - self.last_postfix > 1.0:
            full = sum(s.n_full for s in samplers)
            total = sum(s.n_features for s in samplers)
            self.bar.set_postfix_str(f"full samples {full}/{total}")
            self.last_postfix = now

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


# ---------------------------------------------------------------- run directories
def load_run(path: str | Path) -> dict[str, FeatureDistributions]:
    """Load the FeatureDistributions of every site of a finished :func:`collect` run.

    Raises
    ------
    ValueError
        If ``path`` has no ``run.json`` (not a finished run).
    CorruptFileError
        For a ``run.json`` that is unreadable or names a site outside ``path`` (see
        :func:`semot.features.runs.read_run_record`), or a site that does not load.
    """
    root = Path(path)
    run_file = root / RUN_FILE
    if not run_file.is_file():
        hint = (
            " (a checkpoint exists: the run did not finish; resume it)"
            if (root / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file()
            else ""
        )
        raise ValueError(f"{root}: no {RUN_FILE}, not a finished collection run{hint}")
    sites = read_run_record(root)
    return {name: FeatureDistributions.load(sub) for name, sub in sites.items()}
