"""TopK SAEs for models that have none, trained with sae-lens (needs ``semot[collect]``).

Most models have no published SAEs. :func:`train_saes` makes them in two steps:

1. :func:`cache_hidden_states`: one forward pass over a token source caches the hidden states
   of every requested hook to ``<out>/hidden/<hook>.f32`` (float32 rows, one per token that is
   not a special token), resumable batch by batch;
2. per hook, sae-lens's own trainer (``sae_lens.training.sae_trainer.SAETrainer``, the loop
   ``sae-lens``'s runners use) fits a ``TopKTrainingSAE`` on shuffled batches of those rows.
   sae-lens's runners (``LanguageModelSAETrainingRunner``) read tokens through a
   ``HookedTransformer`` and a Hugging Face dataset; the trainer takes any iterator of
   activation batches, which is what lets the same training run on a ``transformers`` model
   and a local token source, offline.

Each SAE is saved as a sae-lens directory (``SAE.load_from_disk`` loads it, ``cfg.metadata
.hook_name`` is the hook it was trained at) with ``semot_training.json``: the configuration it
was trained with and its held-out report (fraction of variance explained, L0, dead latents).
A directory whose record holds the same configuration is not trained again (the cache); an
interrupted training resumes from sae-lens's last checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.atomic import atomic_write_text
from semot._utils.checks import check_positive_float, check_positive_int
from semot.collection.models import require_torch
from semot.collection.tokens import TokenSource, as_token_source, ignored_token_ids, limit_tokens

TRAINING_RECORD = "semot_training.json"
_HIDDEN_DIR = "hidden"
_PROGRESS = "progress.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(hook: str) -> str:
    """File-system name of a hook: unsafe characters become ``_``."""
    return _UNSAFE.sub("_", hook)


@dataclass(frozen=True)
class TrainingConfig:
    """How one TopK SAE is trained.

    Attributes
    ----------
    d_sae : int
        Number of latents.
    k : int
        Latents kept per token (TopK).
    n_epochs : float
        Passes over the cached training rows (total samples = ``n_epochs * n_rows``).
    batch_size : int
        Rows per training step.
    lr : float
        Adam learning rate (constant, sae-lens's default schedule).
    seed : int
        Seed of the initialisation and of the batch order.
    checkpoints : int
        sae-lens checkpoints written during training (what an interrupted run resumes from).
    """

    d_sae: int = 2048
    k: int = 32
    n_epochs: float = 8.0
    batch_size: int = 4096
    lr: float = 4e-4
    seed: int = 0
    checkpoints: int = 4

    def __post_init__(self) -> None:
        check_positive_int(self.d_sae, "d_sae")
        check_positive_int(self.k, "k")
        if self.k > self.d_sae:
            raise ValueError(f"k: {self.k} is more than d_sae={self.d_sae}")
        check_positive_float(self.n_epochs, "n_epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_float(self.lr, "lr")
        if self.checkpoints < 0:
            raise ValueError(f"checkpoints: expected >= 0, got {self.checkpoints}")


@dataclass(frozen=True)
class SAEReport:
    """An SAE trained (or found in the cache) by :func:`train_saes`, with its held-out scores.

    Attributes
    ----------
    hook : str
        Where it reads (``cfg.metadata.hook_name``).
    path : Path
        Its sae-lens directory.
    fraction_variance_explained : float
        ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over the held-out rows.
    l0 : float
        Mean number of non-zero latents per held-out row.
    dead_fraction : float
        Fraction of latents that are zero on every held-out row.
    n_train_rows, n_heldout_rows : int
        Rows (tokens) trained on and evaluated on.
    cached : bool
        True when the directory already held this configuration and nothing was trained.
    """

    hook: str
    path: Path
    fraction_variance_explained: float
    l0: float
    dead_fraction: float
    n_train_rows: int
    n_heldout_rows: int
    cached: bool


class HiddenStates:
    """Hidden states cached by :func:`cache_hidden_states`: float32 rows per hook, memory-mapped."""

    def __init__(self, root: Path, widths: Mapping[str, int], rows: int) -> None:
        self.root = root
        self.widths = dict(widths)
        self.rows = rows

    def array(self, hook: str) -> npt.NDArray[np.float32]:
        """Return the rows ``(n_rows, d)`` of ``hook`` (a read-only memory map)."""
        if hook not in self.widths:
            raise KeyError(f"hook {hook!r} is not cached; cached: {sorted(self.widths)}")
        path = self.root / f"{safe_name(hook)}.f32"
        return np.memmap(path, dtype=np.float32, mode="r", shape=(self.rows, self.widths[hook]))


def cache_hidden_states(
    runner: Any,
    hooks: Sequence[str],
    tokens: Any,
    out: str | Path,
    *,
    n_tokens: int | None = None,
    batch_size: int = 16,
    ignore_token_ids: Sequence[int] = (),
    progress: bool = True,
) -> HiddenStates:
    """Run the model once over ``tokens`` and store the hidden states at ``hooks``.

    Rows are tokens in stream order, without the positions whose token id is in
    ``ignore_token_ids``. Each configuration (hooks, tokens, ``n_tokens``, ignored ids) has its
    own folder ``out/<digest>``. The pass is resumable: ``progress.json`` records the batches
    and rows written (after the rows are flushed), and a rerun with the same arguments
    continues after them, cutting off anything written past the record. A finished cache is
    reused.

    Parameters
    ----------
    runner : HookedRunner, ModuleHooks or HFRunner
        From :func:`semot.collection.models.runner_for`.
    hooks : sequence of str
        Hooks to cache (module paths or hook names of the runner).
    tokens : token source or array
        See :mod:`semot.collection.tokens`.
    out : path
        Directory of the cache.
    n_tokens : int, optional
        Read at most this many tokens.
    batch_size : int
        Sequences per forward pass.
    ignore_token_ids : sequence of int
        Token ids whose positions are not cached (special tokens).
    progress : bool
        Show a progress bar.
    """
    torch = require_torch()
    check_positive_int(batch_size, "batch_size")
    hooks = list(dict.fromkeys(hooks))
    if not hooks:
        raise ValueError("hooks: give at least one hook")
    runner.check_hooks(hooks)
    source: TokenSource = as_token_source(tokens)
    key = {
        "hooks": hooks,
        "tokens": source.describe(),
        "n_tokens": n_tokens,
        "ignore_token_ids": sorted(int(i) for i in ignore_token_ids),
    }
    # One folder per configuration, so caches of different hooks or tokens coexist.
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(out) / digest
    root.mkdir(parents=True, exist_ok=True)
    record_path = root / _PROGRESS
    record: dict[str, Any] = {"key": key, "batches": 0, "rows": 0, "widths": {}, "done": False}
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
    if record["done"]:
        return HiddenStates(root, record["widths"], record["rows"])
    # Cut what a killed run wrote after its last record.
    for hook, width in record["widths"].items():
        path = root / f"{safe_name(hook)}.f32"
        if path.exists():
            with open(path, "r+b") as f:
                f.truncate(record["rows"] * width * 4)
    ignore = torch.as_tensor(sorted(int(i) for i in ignore_token_ids), dtype=torch.long)
    bar = _bar(progress, n_tokens, "cache hidden states")
    files: dict[str, Any] = {}
    try:
        with torch.inference_mode():
            stream = limit_tokens(source.batches(batch_size), n_tokens)
            for i, batch in enumerate(stream):
                if i < record["batches"]:
                    continue
                ids = torch.as_tensor(batch.tokens, device=runner.device)
                hidden = runner.run(ids, hooks)
                keep = ~torch.isin(ids.reshape(-1).cpu(), ignore)
                for hook in hooks:
                    states = hidden[hook].reshape(-1, hidden[hook].shape[-1]).float().cpu()
                    record["widths"][hook] = int(states.shape[-1])
                    if hook not in files:
                        files[hook] = open(root / f"{safe_name(hook)}.f32", "ab")
                    files[hook].write(states[keep].numpy().astype(np.float32).tobytes())
                for f in files.values():
                    f.flush()
                record["batches"] = i + 1
                record["rows"] += int(keep.sum())
                atomic_write_text(record_path, json.dumps(record))
                if bar is not None:
                    bar.update(batch.n_tokens)
    finally:
        for f in files.values():
            f.close()
        if bar is not None:
            bar.close()
    if record["rows"] == 0:
        raise ValueError("tokens: no token was cached (an empty source, or only ignored ids)")
    record["done"] = True
    atomic_write_text(record_path, json.dumps(record))
    return HiddenStates(root, record["widths"], record["rows"])


def train_sae(
    rows: npt.NDArray[np.float32],
    heldout: npt.NDArray[np.float32],
    hook: str,
    out: str | Path,
    config: TrainingConfig = TrainingConfig(),
    *,
    model_name: str = "model",
    device: str | None = None,
    progress: bool = True,
) -> SAEReport:
    """Train one TopK SAE on ``rows`` with sae-lens's trainer and score it on ``heldout``.

    Parameters
    ----------
    rows, heldout : array, shape (n, d)
        Hidden states to train on and to evaluate on (disjoint tokens).
    hook : str
        Recorded as ``cfg.metadata.hook_name``.
    out : path
        The SAE's directory; reused when it holds the same configuration and data.
    config : TrainingConfig
    model_name : str
        Recorded as ``cfg.metadata.model_name``.
    device : str, optional
        Default: cuda when available.
    progress : bool
        Show sae-lens's progress bar.
    """
    torch = require_torch()
    from sae_lens import SAE
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    if rows.ndim != 2 or heldout.ndim != 2 or rows.shape[1] != heldout.shape[1]:
        raise ValueError(
            f"rows {rows.shape} and heldout {heldout.shape}: expected two (n, d) arrays of one d"
        )
    if rows.shape[0] < 2 or heldout.shape[0] < 2:
        raise ValueError("rows, heldout: need at least 2 rows each")
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    root = Path(out)
    key = {
        "config": asdict(config),
        "hook": hook,
        "model_name": model_name,
        "train_rows": _digest(rows),
        "heldout_rows": _digest(heldout),
    }
    record_path = root / TRAINING_RECORD
    if record_path.is_file() and (root / "cfg.json").is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("key") == json.loads(json.dumps(key)):
            return SAEReport(**{**record["report"], "path": root, "cached": True})
    d_in = int(rows.shape[1])
    torch.manual_seed(config.seed)
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(
            d_in=d_in,
            d_sae=config.d_sae,
            k=config.k,
            device=dev,
            normalize_activations="expected_average_only_in",
            metadata=SAEMetadata(hook_name=hook, model_name=model_name),
        )
    )
    n_rows = int(rows.shape[0])
    batch = min(config.batch_size, n_rows)
    total = max(batch, math.ceil(config.n_epochs * n_rows / batch) * batch)
    checkpoints = root / "checkpoints"
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=batch,
        lr=config.lr,
        lr_end=config.lr / 10,  # what sae-lens's runner config sets; unused by "constant"
        device=dev,
        n_checkpoints=config.checkpoints,
        checkpoint_path=str(checkpoints),
        n_batches_for_norm_estimate=max(1, n_rows // batch),
    )
    latest = _latest_checkpoint(checkpoints, key)
    if latest is not None:
        _load_weights(sae, latest)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=iter(()))
    if latest is not None:
        trainer.load_trainer_state(latest)
        # sae-lens checkpoints after a step's samples are counted but before its step count
        # is: the samples say how many steps are done.
        trainer.n_training_steps = trainer.n_training_samples // batch
        # Thresholds already passed were written by the interrupted run.
        trainer.checkpoint_thresholds = [
            t for t in trainer.checkpoint_thresholds if t >= trainer.n_training_samples
        ]
    else:
        with _tqdm_disabled(not progress):
            trainer.activation_scaler.estimate_scaling_factor(
                d_in,
                _row_batches(rows, batch, config.seed, 0),
                trainer_cfg.n_batches_for_norm_estimate,
            )
    checkpoints.mkdir(parents=True, exist_ok=True)
    atomic_write_text(checkpoints / "key.json", json.dumps(key))
    trainer.data_provider = _row_batches(rows, batch, config.seed, trainer.n_training_steps)
    with _tqdm_disabled(not progress):
        trained = trainer.fit()
    root.mkdir(parents=True, exist_ok=True)
    trained.save_model(str(root))
    inference = SAE.load_from_disk(str(root), device=dev)
    report = evaluate_sae(inference, heldout)
    result = SAEReport(
        hook=hook,
        path=root,
        n_train_rows=n_rows,
        n_heldout_rows=int(heldout.shape[0]),
        cached=False,
        **report,
    )
    summary = {k: v for k, v in asdict(result).items() if k not in ("path", "cached")}
    atomic_write_text(record_path, json.dumps({"key": key, "report": summary}, indent=1))
    shutil.rmtree(checkpoints, ignore_errors=True)
    return result


def evaluate_sae(sae: Any, rows: npt.NDArray[np.float32], batch: int = 8192) -> dict[str, float]:
    """Fraction of variance explained, L0 and dead fraction of ``sae`` on ``rows``.

    ``fraction_variance_explained = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` with
    ``x_hat = decode(encode(x))``; ``l0`` is the mean count of non-zero latents per row;
    ``dead_fraction`` the share of latents that are zero on every row. Sums in float64.
    """
    torch = require_torch()
    dev = next(sae.parameters()).device
    mean = np.asarray(rows, dtype=np.float64).mean(0)
    sse = sst = 0.0
    nonzero = 0
    fired = torch.zeros(int(sae.cfg.d_sae), dtype=torch.bool, device=dev)
    with torch.no_grad():
        for start in range(0, rows.shape[0], batch):
            x = torch.as_tensor(np.array(rows[start : start + batch]), device=dev)
            acts = sae.encode(x)
            recon = sae.decode(acts)
            sse += float(((x - recon).double() ** 2).sum())
            sst += float(((x.double() - torch.as_tensor(mean, device=dev)) ** 2).sum())
            active = acts != 0
            nonzero += int(active.sum())
            fired |= active.any(0)
    return {
        "fraction_variance_explained": 1.0 - sse / sst if sst > 0 else float("nan"),
        "l0": nonzero / rows.shape[0],
        "dead_fraction": 1.0 - int(fired.sum()) / fired.numel(),
    }


def train_saes(
    model: Any,
    hooks: Sequence[str],
    tokens: Any,
    heldout_tokens: Any,
    out: str | Path,
    config: TrainingConfig = TrainingConfig(),
    *,
    n_tokens: int | None = None,
    n_heldout_tokens: int | None = None,
    batch_size: int = 16,
    ignore_token_ids: Sequence[int] | str | None = "special",
    model_name: str | None = None,
    progress: bool = True,
) -> dict[str, SAEReport]:
    """Train one TopK SAE per hook of ``model`` from one cached pass over ``tokens``.

    Parameters
    ----------
    model : model or runner
        Anything :func:`semot.collection.models.runner_for` accepts (e.g. what
        :func:`~semot.collection.models.load_model` returns).
    hooks : sequence of str
        Where to train (module paths, hook names or ``blocks.<i>.hook_resid_post``).
    tokens, heldout_tokens : token sources or arrays
        Training tokens and disjoint held-out tokens for the report.
    out : path
        ``out/<hook>/`` per SAE (sae-lens directory + ``semot_training.json``) and the hidden
        state caches in ``out/hidden`` and ``out/hidden-heldout``.
    config : TrainingConfig
    n_tokens, n_heldout_tokens : int, optional
        Read at most this many tokens of each source.
    batch_size : int
        Sequences per forward pass.
    ignore_token_ids : "special", sequence of int or None
        Positions not trained on (as in :func:`semot.collect`).
    model_name : str, optional
        Recorded in the SAEs' metadata.
    progress : bool
        Progress bars.

    Returns
    -------
    dict of str to SAEReport
        Keyed by the hook as given.
    """
    from semot.collection.models import runner_for

    runner = runner_for(model)
    resolved = [runner.resolve_hook(h) for h in hooks]
    ignore = ignored_token_ids(getattr(runner, "tokenizer", None), ignore_token_ids)
    name = model_name or str(getattr(runner, "name", None) or "model")
    root = Path(out)
    train = cache_hidden_states(
        runner,
        resolved,
        tokens,
        root / _HIDDEN_DIR,
        n_tokens=n_tokens,
        batch_size=batch_size,
        ignore_token_ids=ignore,
        progress=progress,
    )
    held = cache_hidden_states(
        runner,
        resolved,
        heldout_tokens,
        root / f"{_HIDDEN_DIR}-heldout",
        n_tokens=n_heldout_tokens,
        batch_size=batch_size,
        ignore_token_ids=ignore,
        progress=progress,
    )
    device = str(runner.device)
    reports = {}
    for given, hook in zip(hooks, resolved, strict=True):
        reports[given] = train_sae(
            np.asarray(train.array(hook)),
            np.asarray(held.array(hook)),
            hook,
            root / safe_name(hook),
            config,
            model_name=name,
            device=device,
            progress=progress,
        )
    return reports


# ---------------------------------------------------------------- helpers
def _digest(rows: npt.NDArray[np.float32]) -> str:
    """Shape and a SHA-256 of the rows (what the cache key compares)."""
    h = hashlib.sha256(str(rows.shape).encode())
    step = max(1, rows.shape[0] // 64)
    for start in range(0, rows.shape[0], step):
        h.update(np.ascontiguousarray(rows[start : start + 1]).tobytes())
    h.update(np.ascontiguousarray(rows[-1:]).tobytes())
    return h.hexdigest()[:16]


def _row_batches(
    rows: npt.NDArray[np.float32], batch: int, seed: int, start_step: int
) -> Iterator[Any]:
    """Yield the batches of rows of steps ``start_step, start_step + 1, ...``.

    Epoch ``e`` is a fixed permutation of the rows (seeded by ``(seed, e)``) cut into batches
    of ``batch``, so step ``s`` always gets the same rows (what makes a resume exact).
    """
    torch = require_torch()
    n = rows.shape[0]
    per_epoch = n // batch
    step = start_step
    while True:
        epoch, within = divmod(step, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        idx = np.sort(order[within * batch : (within + 1) * batch])
        yield torch.as_tensor(np.array(rows[idx]))
        step += 1


def _latest_checkpoint(checkpoints: Path, key: Mapping[str, Any]) -> Path | None:
    """sae-lens's latest checkpoint of a training with ``key``, else None (stale ones go)."""
    if not checkpoints.is_dir():
        return None
    key_file = checkpoints / "key.json"
    if not key_file.is_file() or json.loads(key_file.read_text()) != json.loads(json.dumps(key)):
        shutil.rmtree(checkpoints)
        return None
    done = [p for p in checkpoints.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(done, key=lambda p: int(p.name)) if done else None


def _load_weights(sae: Any, checkpoint: Path) -> None:
    from safetensors.torch import load_file

    files = sorted(checkpoint.glob("*.safetensors"))
    weights = next((f for f in files if "sparsity" not in f.name), None)
    if weights is None:
        raise ValueError(f"{checkpoint}: no SAE weights in the checkpoint")
    sae.load_state_dict(load_file(str(weights)), strict=False)


@contextlib.contextmanager
def _tqdm_disabled(disabled: bool) -> Iterator[None]:
    """Silence the tqdm bars sae-lens's trainer and scaler open (they take no such option)."""
    if not disabled:
        yield
        return
    import importlib

    from tqdm.auto import tqdm

    quiet = functools.partial(tqdm, disable=True)
    saved: list[tuple[Any, Any]] = []
    for name in ("sae_lens.training.sae_trainer", "sae_lens.training.activation_scaler"):
        module: Any = importlib.import_module(name)
        if hasattr(module, "tqdm"):
            saved.append((module, module.tqdm))
            module.tqdm = quiet
    try:
        yield
    finally:
        for module, original in saved:
            module.tqdm = original


def _bar(enabled: bool, total: int | None, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the collect extra
        return None
    return tqdm(total=total, unit="tok", unit_scale=True, desc=desc)


def split_heldout(tokens: Any, fraction: float, batch_size: int = 64) -> tuple[Any, Any]:
    """Split a token source into training and held-out sequences: the last ``fraction`` held out.

    Returns two re-iterable token sources over disjoint sequences (at least one in each).
    """
    from semot.collection.tokens import IterableTokens

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"heldout_fraction: expected a number in (0, 1), got {fraction}")
    source = as_token_source(tokens)
    rows = [row for batch in source.batches(batch_size) for row in batch.tokens]
    if len(rows) < 2:
        raise ValueError("tokens: need at least 2 sequences to hold some out")
    n_held = min(len(rows) - 1, max(1, math.ceil(fraction * len(rows))))
    name = json.dumps(source.describe(), sort_keys=True)
    return (
        IterableTokens(rows[:-n_held], name=f"{name}[:-{n_held}]"),
        IterableTokens(rows[-n_held:], name=f"{name}[-{n_held}:]"),
    )
