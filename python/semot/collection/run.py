"""Collect feature distributions from a model: one streaming pass over a token source.

:func:`collect` runs the model on batches of tokens, encodes the hidden states of each
:class:`~.models.Site` (an SAE at a hook) into feature activations, maps the reference
hidden states to support points (:mod:`.reference`) and offers every firing position to
a per-feature streaming sample (:mod:`semot.features.sampling`). All of it happens on the model's
device; hidden states of the whole stream are never kept. Results are
:class:`~semot.features.container.FeatureDistributions`, one per site.

Long runs checkpoint every ``checkpoint_every`` tokens (atomic writes) and resume with
``resume=True``; a resumed run gives exactly the output of an uninterrupted one, because each
position's sampling key depends only on the seed and the position's identity.

Needs the ``semot[collect]`` extra (torch, transformer-lens, sae-lens).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from semot._utils.safetensors import read_safetensors, write_safetensors
from semot.collection.models import Site, require_torch, runner_for
from semot.collection.reference import Moments, ReferenceMap, ReferenceSpec, fit_reference
from semot.collection.tokens import TokenBatch, TokenSource, as_token_source, limit_tokens
from semot.features.container import CorruptFileError, FeatureDistributions
from semot.features.sampling import MODES, FeatureSampler, Mode, to_distributions

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "checkpoint.json"
RUN_FILE = "run.json"

_LAYER = re.compile(r"blocks\.(\d+)\.")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _default_reference_hook(sites: Sequence[Site]) -> str:
    """Return the latest hook among the sites (by ``blocks.<i>.`` layer), the last given on ties."""
    best, best_layer = sites[-1].hook, -1
    for s in sites:
        m = _LAYER.search(s.hook)
        layer = int(m.group(1)) if m else -1
        if layer >= best_layer:
            best, best_layer = s.hook, layer
    return best


def _fingerprint_tensor(x: Any) -> str:
    arr = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


def _encoder_fingerprint(site: Site) -> str:
    owner = getattr(site.encode, "__self__", None)
    if owner is not None and hasattr(owner, "state_dict"):
        h = hashlib.sha256()
        for k, v in sorted(owner.state_dict().items()):
            h.update(k.encode())
            h.update(_fingerprint_tensor(v).encode())
        return h.hexdigest()[:16]
    return "unknown"


def _model_fingerprint(model: Any) -> str:
    if not hasattr(model, "state_dict"):
        return "unknown"
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(repr(float(v.detach().double().sum())).encode())
    return h.hexdigest()[:16]


def _as_sites(saes: Sequence[Any]) -> list[Site]:
    if isinstance(saes, Site) or not isinstance(saes, Sequence):
        saes = [saes]
    sites = [s if isinstance(s, Site) else Site.from_sae(s) for s in saes]
    if not sites:
        raise ValueError("saes: give at least one SAE or Site")
    names = [_safe_name(s.name) for s in sites]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(
            f"saes: two sites share the output name {sorted(dup)[0]!r}; give Site(name=...)"
        )
    return sites


def _ignore_ids(model: Any, ignore_token_ids: Sequence[int] | str | None) -> list[int]:
    if ignore_token_ids is None:
        return []
    if isinstance(ignore_token_ids, str):
        if ignore_token_ids != "special":
            raise ValueError(
                f"ignore_token_ids: expected 'special', None or a list of ids, got "
                f"{ignore_token_ids!r}"
            )
        tok = getattr(model, "tokenizer", None)
        return sorted({int(i) for i in getattr(tok, "all_special_ids", []) or []})
    return sorted({int(i) for i in ignore_token_ids})


class _Checkpoint:
    """Atomic checkpoints: a state file per generation, then a JSON pointer to it."""

    def __init__(self, root: Path) -> None:
        self.dir = root / CHECKPOINT_DIR
        self.pointer = self.dir / CHECKPOINT_FILE

    def exists(self) -> bool:
        return self.pointer.is_file()

    def read(self) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
        try:
            info = json.loads(self.pointer.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CorruptFileError(f"{self.pointer}: unreadable checkpoint ({e})") from None
        if not isinstance(info, dict) or "state_file" not in info:
            raise CorruptFileError(f"{self.pointer}: not a semot checkpoint")
        state_path = self.dir / str(info["state_file"])
        if not state_path.is_file():
            raise CorruptFileError(f"{state_path}: checkpoint state file is missing")
        data = state_path.read_bytes()
        if len(data) != info.get("bytes") or hashlib.sha256(data).hexdigest() != info.get("sha256"):
            raise CorruptFileError(
                f"{state_path}: checkpoint state does not match its checksum (corrupt file)"
            )
        arrays, _ = read_safetensors(state_path, mmap=False)
        return info, arrays

    def write(self, info: dict[str, Any], arrays: Mapping[str, np.ndarray[Any, Any]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        gen = int(info["generation"])
        name = f"state-{gen:06d}.safetensors"
        n_bytes, sha = write_safetensors(self.dir / name, arrays)
        info = {**info, "state_file": name, "bytes": n_bytes, "sha256": sha}
        tmp = self.pointer.with_name(f"{CHECKPOINT_FILE}.tmp-{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.pointer)
        for old in self.dir.glob("state-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint has {a!r}, this run has {b!r}")
    return out


def _calibrate(
    runner: Any,
    sites: Sequence[Site],
    spec: ReferenceSpec,
    source: TokenSource,
    batch_size: int,
    device: Any,
) -> ReferenceMap:
    """One pass over the first ``spec.calibration_tokens`` tokens to fit the reference map."""
    torch = require_torch()
    ref_m = Moments()
    site_m: dict[str, Moments] = {s.hook: Moments() for s in sites}
    hooks = [spec.hook] + ([s.hook for s in sites] if spec.kind == "linear-map" else [])
    d_ref = None
    with torch.inference_mode():
        for batch in limit_tokens(source.batches(batch_size), spec.calibration_tokens):
            hs = runner.run(torch.as_tensor(batch.tokens, device=device), hooks)
            y = hs[spec.hook].reshape(-1, hs[spec.hook].shape[-1])
            d_ref = int(y.shape[-1])
            ref_m.add(y)
            if spec.kind == "linear-map":
                for s in sites:
                    x = hs[s.hook].reshape(-1, hs[s.hook].shape[-1])
                    site_m[s.hook].add(x, y)
    if d_ref is None:
        raise ValueError("tokens: the token source is empty (no calibration tokens)")
    return fit_reference(spec, d_ref, ref_m, site_m if spec.kind == "linear-map" else None)


def _reference_width(runner: Any, hook: str, source: TokenSource, device: Any) -> int:
    torch = require_torch()
    first = next(iter(source.batches(1)), None)
    if first is None:
        raise ValueError("tokens: the token source is empty")
    with torch.inference_mode():
        hs = runner.run(torch.as_tensor(first.tokens[:, :1], device=device), [hook])
    return int(hs[hook].shape[-1])


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
    k: int | None = None,
    normalize: Literal["unit", "standardize"] | None = None,
    batch_size: int = 16,
    seed: int = 0,
    out: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    ignore_token_ids: Sequence[int] | str | None = "special",
    model_name: str | None = None,
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
        an earlier run, so both runs share one space). Default: the latest SAE hook.
    reduce, k, normalize
        Dimension reduction and normalisation of the support points when ``reference`` is a
        hook name (see :class:`~semot.collection.reference.ReferenceSpec`).
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

    Returns
    -------
    dict of str to FeatureDistributions
        One per site, keyed by site name.
    """
    torch = require_torch()
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if not isinstance(samples_per_feature, int) or samples_per_feature < 1:
        raise ValueError(
            f"samples_per_feature: expected a positive integer, got {samples_per_feature!r}"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if checkpoint_every is not None and out is None:
        raise ValueError("checkpoint_every: needs out=DIR to write checkpoints to")
    if resume and out is None:
        raise ValueError("resume: needs out=DIR holding the checkpoint")
    sites = _as_sites(saes)
    runner = runner_for(model)
    source = as_token_source(tokens)
    device = runner.device
    inner = getattr(runner, "model", model)
    ignore = _ignore_ids(inner, ignore_token_ids)
    name = model_name or str(getattr(getattr(inner, "cfg", None), "model_name", "") or "model")

    root = Path(out) if out is not None else None
    ckpt = _Checkpoint(root) if root is not None else None
    saved_info: dict[str, Any] | None = None
    saved_state: dict[str, np.ndarray[Any, Any]] = {}
    if resume:
        assert ckpt is not None and root is not None
        if not ckpt.exists():
            raise ValueError(f"resume: no checkpoint in {root / CHECKPOINT_DIR}")
        saved_info, saved_state = ckpt.read()
    elif root is not None and root.exists() and any(root.iterdir()):
        if not overwrite:
            raise ValueError(
                f"out: {root} is not empty; pass resume=True to continue a run or "
                "overwrite=True to replace it"
            )
        if ckpt is not None:
            ckpt.remove()

    # Reference space.
    if isinstance(reference, ReferenceMap):
        refmap = reference
    elif saved_info is not None:
        ref_arrays = {
            k.removeprefix("reference/"): v
            for k, v in saved_state.items()
            if k.startswith("reference/")
        }
        refmap = ReferenceMap.from_parts(saved_info["config"]["reference"], ref_arrays)
    else:
        if isinstance(reference, ReferenceSpec):
            spec = reference
        else:
            spec = ReferenceSpec(
                hook=reference or _default_reference_hook(sites),
                reduce=reduce,
                k=k,
                normalize=normalize,
                seed=seed,
            )
        hooks = [spec.hook] + [s.hook for s in sites]
        runner.check_hooks(hooks)
        if spec.needs_calibration:
            refmap = _calibrate(runner, sites, spec, source, batch_size, device)
        else:
            d_ref = _reference_width(runner, spec.hook, source, device)
            refmap = fit_reference(spec, d_ref)
    needed = list(
        dict.fromkeys([s.hook for s in sites] + [refmap.input_hook(s.hook) for s in sites])
    )
    runner.check_hooks(needed)

    # Weight fingerprints guard resume against a changed model/SAE; skipped without `out`.
    track = root is not None
    config = {
        "model": {"name": name, "fingerprint": _model_fingerprint(inner) if track else None},
        "sites": {
            _safe_name(s.name): {
                "hook": s.hook,
                "identity": s.identity,
                "d_sae": s.d_sae,
                "features": _fingerprint_tensor(s.feature_ids),
                "encoder": _encoder_fingerprint(s) if track else None,
            }
            for s in sites
        },
        "tokens": source.describe(),
        "n_tokens": n_tokens,
        "samples_per_feature": samples_per_feature,
        "mode": mode,
        "seed": seed,
        "batch_size": batch_size,
        "ignore_token_ids": ignore,
        "reference": refmap.to_metadata(),
        "reference_fingerprint": refmap.fingerprint(),
    }
    if saved_info is not None:
        diffs = _diff(saved_info["config"], json.loads(json.dumps(config)))
        if diffs:
            raise ValueError(
                "resume: the checkpoint was written by a different configuration:\n  "
                + "\n  ".join(diffs)
            )

    like = torch.empty(0, device=device)
    samplers = [
        FeatureSampler(
            int(s.feature_ids.shape[0]),
            samples_per_feature,
            refmap.dim,
            mode=mode,
            seed=seed,
            like=like,
        )
        for s in sites
    ]
    feats = [
        torch.as_tensor(s.feature_ids, device=device) if s.features is not None else None
        for s in sites
    ]
    ignore_t = torch.as_tensor(ignore, dtype=torch.long, device=device) if ignore else None
    batches_done = tokens_done = tokens_counted = 0
    n_sequences = 0
    if saved_info is not None:
        for i, smp in enumerate(samplers):
            smp.load_state_dict(
                {k.split("/", 1)[1]: v for k, v in saved_state.items() if k.startswith(f"{i}/")}
            )
        batches_done = int(saved_info["batches_done"])
        tokens_done = int(saved_info["tokens_done"])
        tokens_counted = int(saved_info["tokens_counted"])
        n_sequences = int(saved_info["n_sequences"])
    generation = int(saved_info["generation"]) + 1 if saved_info else 0

    def save_checkpoint() -> None:
        nonlocal generation
        assert ckpt is not None
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for i, smp in enumerate(samplers):
            for key, v in smp.state_dict().items():
                arrays[f"{i}/{key}"] = v
        for key, v in refmap.arrays.items():
            arrays[f"reference/{key}"] = np.asarray(v)
        info = {
            "generation": generation,
            "batches_done": batches_done,
            "tokens_done": tokens_done,
            "tokens_counted": tokens_counted,
            "n_sequences": n_sequences,
            "config": json.loads(json.dumps(config)),
        }
        ckpt.write(info, arrays)
        generation += 1

    bar = _progress(progress, n_tokens, tokens_done)
    last_ckpt = tokens_done
    last_post = 0.0
    stream: Iterator[TokenBatch] = limit_tokens(source.batches(batch_size), n_tokens)
    updating = False
    try:
        with torch.inference_mode(), _DeferredInterrupt() as guard:
            for i_batch, batch in enumerate(stream):
                if i_batch < batches_done:
                    continue
                tok = torch.as_tensor(batch.tokens, device=device)
                b, length = tok.shape
                hs = runner.run(tok, needed)
                seq = (torch.arange(b, device=device) + batch.first_seq).repeat_interleave(length)
                pos = torch.arange(length, device=device).repeat(b)
                keep = None
                if ignore_t is not None:
                    keep = ~torch.isin(tok.reshape(-1), ignore_t)
                points_cache: dict[str, Any] = {}
                per_site = []
                for s, f_sel in zip(sites, feats, strict=True):
                    h = hs[s.hook].reshape(b * length, -1)
                    if h.shape[-1] != s.d_in:
                        raise ValueError(
                            f"sae {s.name!r}: expects d_in={s.d_in} but hook {s.hook!r} gives "
                            f"hidden states of width {h.shape[-1]}"
                        )
                    acts = s.encode(h)
                    if acts.ndim != 2 or acts.shape != (b * length, s.d_sae):
                        raise ValueError(
                            f"sae {s.name!r}: encoder returned shape {tuple(acts.shape)}, "
                            f"expected {(b * length, s.d_sae)}"
                        )
                    if f_sel is not None:
                        acts = acts[:, f_sel]
                    if keep is not None:
                        acts = acts * keep[:, None].to(acts.dtype)
                    src = refmap.input_hook(s.hook)
                    cache_key = src if refmap.spec.kind == "same-context" else s.hook
                    if cache_key not in points_cache:
                        points_cache[cache_key] = refmap.transform(
                            hs[src].reshape(b * length, -1), s.hook
                        )
                    per_site.append((acts.float(), points_cache[cache_key]))
                updating = True
                for smp, (acts, pts) in zip(samplers, per_site, strict=True):
                    smp.update(acts, pts, seq, pos)
                batches_done += 1
                tokens_done += b * length
                tokens_counted += int(keep.sum()) if keep is not None else b * length
                n_sequences = max(n_sequences, batch.first_seq + b)
                updating = False
                if bar is not None:
                    bar.update(b * length)
                    now = time.monotonic()
                    if now - last_post > 1.0:
                        full = sum(smp.n_full for smp in samplers)
                        total = sum(smp.n_features for smp in samplers)
                        bar.set_postfix_str(f"full samples {full}/{total}")
                        last_post = now
                if checkpoint_every is not None and tokens_done - last_ckpt >= checkpoint_every:
                    save_checkpoint()
                    last_ckpt = tokens_done
                if guard.pending:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if ckpt is not None and not updating and batches_done > 0:
            save_checkpoint()
            print(
                f"\ninterrupted: checkpoint saved after {tokens_done} tokens; "
                "run again with resume=True (--resume) to continue"
            )
        raise
    finally:
        if bar is not None:
            bar.close()
    if tokens_done == 0:
        raise ValueError("tokens: the token source is empty (no tokens were read)")

    results: dict[str, FeatureDistributions] = {}
    for s, smp in zip(sites, samplers, strict=True):
        r = smp.result()
        meta = {
            "model": name,
            "hook": s.hook,
            "sae": s.identity,
            "sampling": {"mode": mode, "samples_per_feature": samples_per_feature, "seed": seed},
            "reference": refmap.to_metadata(),
            "n_tokens": tokens_counted,
            "n_tokens_read": tokens_done,
            "n_sequences": n_sequences,
            "tokens": source.describe(),
            "ignore_token_ids": ignore,
        }
        fd = to_distributions(r, s.feature_ids, meta, dict(refmap.arrays))
        if root is not None:
            fd.save(root / _safe_name(s.name), overwrite=True)
        results[_safe_name(s.name)] = fd
    if root is not None:
        run = {"sites": {n: str(n) for n in results}, "config": json.loads(json.dumps(config))}
        tmp = root / f"{RUN_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(run, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, root / RUN_FILE)
        if ckpt is not None:
            ckpt.remove()
    return results


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


def _progress(enabled: bool, total: int | None, initial: int) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the collect extra
        return None
    return tqdm(total=total, initial=initial, unit="tok", unit_scale=True, desc="collect")


def load_run(path: str | Path) -> dict[str, FeatureDistributions]:
    """Load the FeatureDistributions of every site of a finished :func:`collect` run."""
    root = Path(path)
    run_file = root / RUN_FILE
    if not run_file.is_file():
        hint = (
            " (a checkpoint exists: the run did not finish; resume it)"
            if (root / CHECKPOINT_DIR / CHECKPOINT_FILE).is_file()
            else ""
        )
        raise ValueError(f"{root}: no {RUN_FILE}, not a finished collection run{hint}")
    try:
        run = json.loads(run_file.read_text(encoding="utf-8"))
        names = list(run["sites"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CorruptFileError(f"{run_file}: unreadable run record ({e})") from None
    return {n: FeatureDistributions.load(root / n) for n in names}
