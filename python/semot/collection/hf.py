"""Hugging Face ``transformers`` models as collection runners (needs ``semot[collect]``).

:class:`HFRunner` runs a ``transformers`` model (a causal LM from ``AutoModelForCausalLM``, an
encoder from ``AutoModel``, or a GGUF checkpoint that ``transformers`` dequantizes with the
``gguf`` package) and returns the outputs of named submodules, stopping the forward pass once
the last one has run. It knows its tokenizer, so ``ignore_token_ids="special"`` resolves.

Sites by layer number
---------------------
Layer ``i`` means the residual stream after block ``i`` (0-based): the output of the ``i``-th
module of the model's list of blocks. By family, for the classes :func:`load_hf_model` loads:

==========================================  ==================  ==========================
family (``config.model_type``)              model class         layer ``i`` is the module
==========================================  ==================  ==========================
Llama, Mistral, Qwen2/3, Gemma 1-3, Phi-3   ``...ForCausalLM``  ``model.layers.<i>``
GPT-2                                       ``GPT2LMHeadModel`` ``transformer.h.<i>``
GPT-NeoX / Pythia                           ``GPTNeoXForCausalLM`` ``gpt_neox.layers.<i>``
BERT, RoBERTa (encoders)                    ``BertModel``       ``encoder.layer.<i>``
==========================================  ==================  ==========================

Other families work too: the list of blocks is the first ``torch.nn.ModuleList`` whose length
is ``config.num_hidden_layers``. With ``output_hidden_states=True`` a ``transformers`` model
returns the same states as ``hidden_states[i + 1]``, except after the last block of decoders
(Llama, GPT-2), where ``hidden_states[-1]`` has the final norm applied and layer ``i`` does not.
A transformer-lens hook name ``blocks.<i>.hook_resid_post`` (what sae-lens SAEs trained on a
``HookedTransformer`` record) is read as layer ``i``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from semot.collection.models import ModuleHooks, check_layer, require_torch

#: Module path of the list of blocks, by ``config.model_type``, for the documented families
#: (the classes :func:`load_hf_model` loads). Other families are found by shape.
FAMILY_BLOCKS: dict[str, str] = {
    **{
        family: "model.layers"
        for family in (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "gemma3_text",
            "phi3",
            "olmo",
            "olmo2",
        )
    },
    "gpt2": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
    "bert": "encoder.layer",
    "roberta": "encoder.layer",
}

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def blocks_path(model: Any) -> str:
    """Return the module path of ``model``'s list of transformer blocks.

    The family's documented path (:data:`FAMILY_BLOCKS`) when the model has it, else the first
    ``torch.nn.ModuleList`` whose length is ``config.num_hidden_layers``.
    """
    torch = require_torch()
    n_layers = int(model.config.num_hidden_layers)
    modules = dict(model.named_modules())
    known = FAMILY_BLOCKS.get(str(getattr(model.config, "model_type", "")))
    if known is not None and isinstance(modules.get(known), torch.nn.ModuleList):
        return known
    for name, module in modules.items():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers and name:
            return str(name)
    raise ValueError(
        f"model: found no list of {n_layers} blocks (config.num_hidden_layers) among its "
        "submodules; give hooks as module paths instead of layer numbers"
    )


class HFRunner(ModuleHooks):
    """Runs a ``transformers`` model; hooks are submodule paths or layer numbers.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        In eval mode, on its device.
    tokenizer : transformers tokenizer, optional
        The model's tokenizer (text sources and ``ignore_token_ids="special"`` need it).
    name : str, optional
        Recorded as the model's name (default: ``config._name_or_path``).
    """

    def __init__(self, model: Any, tokenizer: Any = None, name: str | None = None) -> None:
        super().__init__(model, call=_call_with_input_ids)
        self.tokenizer = tokenizer
        self.name = name or str(getattr(model.config, "_name_or_path", "") or "model")
        self.n_layers = int(model.config.num_hidden_layers)
        self.blocks = blocks_path(model)
        self.family = str(getattr(model.config, "model_type", "unknown"))
        self.vocab_size = int(model.config.vocab_size)
        positions = getattr(model.config, "max_position_embeddings", None)
        self.max_length = int(positions) if positions else None

    def layer_hook(self, layer: int) -> str:
        """Return the module path of the residual stream after block ``layer`` (0-based)."""
        return f"{self.blocks}.{check_layer(layer, self.n_layers)}"

    def resolve_hook(self, hook: str) -> str:
        """Return the module path of ``hook``: layer i for ``blocks.<i>.hook_resid_post``."""
        match = _RESID_POST.match(hook)
        return self.layer_hook(int(match.group(1))) if match else hook


def _call_with_input_ids(model: Any, tokens: Any) -> Any:
    return model(input_ids=tokens)


def _wants_causal_lm(config: Any) -> bool:
    architectures = list(getattr(config, "architectures", None) or [])
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures) or bool(
        getattr(config, "is_decoder", False)
    )


def load_hf_model(
    name_or_path: str | Path,
    *,
    device: str | None = None,
    gguf_file: str | Path | None = None,
    dtype: str | None = None,
) -> HFRunner:
    """Load a ``transformers`` model and its tokenizer as an :class:`HFRunner`.

    Parameters
    ----------
    name_or_path : str or Path
        A model directory (``save_pretrained``) or a hub name (needs network or the Hugging
        Face cache). Causal LMs (``config.architectures`` ending in ``ForCausalLM`` or
        ``LMHeadModel``) load through ``AutoModelForCausalLM``, anything else through
        ``AutoModel``.
    device : str, optional
        ``"cuda"`` or ``"cpu"``; default cuda when available.
    gguf_file : str or Path, optional
        A GGUF checkpoint, relative to ``name_or_path`` or absolute; ``transformers``
        dequantizes it (needs the ``gguf`` package). Always a causal LM.
    dtype : str, optional
        ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
    """
    torch = require_torch()
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - transformers comes with the collect extra
        raise ImportError(
            "Hugging Face models need transformers: pip install 'semot[collect]'"
        ) from e
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, dtype or "float32", None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"dtype: {dtype!r} is not a torch dtype (float32, bfloat16, float16)")
    source = str(name_or_path)
    kwargs: dict[str, Any] = {}
    if gguf_file is not None:
        gguf = Path(gguf_file)
        if gguf.is_absolute() or not Path(source).is_dir():
            source, gguf = str(gguf.parent), Path(gguf.name)
        if not (Path(source) / gguf).is_file():
            raise ValueError(f"gguf_file: {Path(source) / gguf} is not a file")
        try:
            import gguf as _gguf_package  # noqa: F401  (transformers needs it to read GGUF)
        except ImportError as e:
            raise ImportError("GGUF checkpoints need the gguf package: pip install gguf") from e
        kwargs["gguf_file"] = str(gguf)
        causal = True
    else:
        config = transformers.AutoConfig.from_pretrained(source)
        causal = _wants_causal_lm(config)
    auto: Any = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    with warnings.catch_warnings():
        # Loading a checkpoint into the base class of an LM announces the unused head weights.
        warnings.filterwarnings("ignore", message=".*were not used when initializing.*")
        model = auto.from_pretrained(source, dtype=torch_dtype, **kwargs)
    model.to(dev)
    model.eval()
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # no key/value cache: one forward pass per batch
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError):
        tokenizer = None
    name = str(name_or_path) if gguf_file is None else f"{name_or_path}:{Path(gguf_file).name}"
    return HFRunner(model, tokenizer, name=name)
