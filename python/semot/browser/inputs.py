"""What the browser reads: a run's sites, their token contexts, match frames, a chain, a graph.

Each input is checked here, once, with errors that name the argument (and, in the command,
the flag): a run without stored contexts and no ``tokens``, a match frame that does not say
which sites it matches, a chain whose consecutive sites have no frame.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semot.circuits.compress import run_layer
from semot.features.container import FeatureDistributions
from semot.features.contexts import TokenContexts, run_points, token_strings
from semot.features.runs import RUN_FILE, read_run_record, site_name

__all__ = ["MatchFrame", "load_contexts", "load_frames", "load_sites", "resolve_chain"]


@dataclass(frozen=True)
class MatchFrame:
    """One match frame with the sites it matches.

    Attributes
    ----------
    source, target : str
        Site names in the run.
    frame : pandas.DataFrame
        Columns ``source``, ``target``, ``rank``, ``distance``, ``matched`` (``semot.match``'s
        frame; a ``margin`` column is used when present).
    """

    source: str
    target: str
    frame: Any


def load_sites(run: Any) -> tuple[dict[str, FeatureDistributions], Path | None]:
    """Return the sites of ``run`` and the directory they were loaded from (or None).

    ``run`` is a run directory, a FeatureDistributions directory or a mapping of name to
    FeatureDistributions.
    """
    if isinstance(run, Mapping):
        sites = {str(k): v for k, v in run.items()}
        for name, fd in sites.items():
            if not isinstance(fd, FeatureDistributions):
                raise TypeError(
                    f"run: site {name!r} is a {type(fd).__name__}, not a FeatureDistributions"
                )
        if not sites:
            raise ValueError("run: no sites")
        return sites, None
    if isinstance(run, (str, os.PathLike)):
        root = Path(run)
        if not root.is_dir():
            raise ValueError(f"run: {root} is not a directory")
        if (root / RUN_FILE).is_file():
            dirs = read_run_record(root)
            return {name: FeatureDistributions.load(sub) for name, sub in dirs.items()}, root
        return {root.name: FeatureDistributions.load(root)}, root
    raise TypeError(f"run: expected a run directory or a mapping of sites, got {type(run)}")


def load_contexts(
    sites: Mapping[str, FeatureDistributions],
    root: Path | None,
    tokens: Any,
    tokenizer: Any,
) -> TokenContexts:
    """Return the token windows of every sampled point, with a string for every token id.

    ``tokens`` (a ``(n_sequences, context_length)`` array of the ids the run was collected
    on, or a :class:`~semot.features.contexts.TokenContexts`) replaces what the run stores;
    ``tokenizer`` (see :func:`~semot.features.contexts.token_strings`) replaces the stored
    strings.
    """
    if isinstance(tokens, TokenContexts):
        contexts: TokenContexts | None = tokens
    elif tokens is not None:
        arr = np.asarray(tokens)
        if arr.ndim != 2 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError(
                f"tokens: expected a 2-D array of token ids (n_sequences, context_length), "
                f"got shape {arr.shape} dtype {arr.dtype}"
            )
        seq, pos = run_points(sites.values())
        contexts = TokenContexts.from_rows(enumerate(arr), seq, pos, what="tokens")
    else:
        contexts = TokenContexts.load(root) if root is not None else None
    if contexts is None:
        where = f"{root} stores" if root is not None else "in-memory sites store"
        raise ValueError(
            f"run: {where} no token contexts (a run written by an older semot, or not by "
            "semot collect); pass tokens= (the (n_sequences, context_length) token ids the run "
            "was collected on, --tokens FILE.npy) and tokenizer= (--tokenizer NAME)"
        )
    if tokenizer is not None:
        contexts = contexts.with_vocab(token_strings(tokenizer, np.unique(contexts.ids)))
    if contexts.vocab is None:
        raise ValueError(
            "tokenizer: the run stores token ids but no strings (no tokenizer was known when "
            "it was collected); pass tokenizer= (--tokenizer NAME, or a JSON list of strings)"
        )
    return contexts


def load_frames(
    sites: Mapping[str, FeatureDistributions], matches: Sequence[Any]
) -> list[MatchFrame]:
    """Match frames with their sites.

    Each item of ``matches`` is a DataFrame whose ``attrs`` name ``source_site`` and
    ``target_site`` (what ``semot match`` stores in a parquet file), a path to such a parquet
    file, or a tuple ``(source site, target site, frame or path)``; sites may be given by
    name, hook or layer number.
    """
    import pandas as pd

    out: list[MatchFrame] = []
    for i, item in enumerate(matches):
        what = f"matches[{i}]"
        src = tgt = None
        if isinstance(item, tuple):
            if len(item) != 3:
                raise ValueError(f"{what}: expected (source site, target site, frame)")
            src, tgt, item = item
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            what = f"matches[{i}] ({path})"
            if path.suffix == ".parquet":
                item = pd.read_parquet(path)
            elif path.suffix == ".csv":
                item = pd.read_csv(path)
            else:
                raise ValueError(f"{what}: expected a .parquet or .csv file")
        if not isinstance(item, pd.DataFrame):
            raise TypeError(f"{what}: expected a DataFrame or a path, got {type(item).__name__}")
        src = src if src is not None else item.attrs.get("source_site")
        tgt = tgt if tgt is not None else item.attrs.get("target_site")
        if src is None or tgt is None:
            raise ValueError(
                f"{what}: the frame does not say which sites it matches (only parquet files "
                "written by semot match do); give them as FROM:TO=PATH (matches=[(from, to, "
                "frame)])"
            )
        missing = [c for c in ("source", "target", "rank", "distance", "matched") if c not in item]
        if missing:
            raise ValueError(f"{what}: missing columns {missing}")
        s, t = site_name(sites, src, f"{what}: source site"), site_name(sites, tgt, f"{what}: site")
        known = set(np.asarray(sites[s].feature_ids).tolist())
        unknown = set(pd.unique(item["source"]).tolist()) - known
        if unknown:
            raise ValueError(
                f"{what}: source feature {min(unknown)} is not a feature of site {s!r}"
            )
        out.append(MatchFrame(s, t, item))
    return out


def resolve_chain(
    sites: Mapping[str, FeatureDistributions], frames: Sequence[MatchFrame], chain: Sequence[Any]
) -> list[tuple[str, MatchFrame]]:
    """Return ``(site, frame from the previous site)`` for every site of a chain but the first.

    Raises ValueError when a step has no frame among ``frames``.
    """
    names = [site_name(sites, s, "chain: site") for s in chain]
    if len(names) < 2:
        raise ValueError("chain: give at least two sites")
    steps: list[tuple[str, MatchFrame]] = []
    for a, b in itertools.pairwise(names):
        found = [f for f in frames if f.source == a and f.target == b]
        if not found:
            raise ValueError(f"chain: no match frame from {a!r} to {b!r} among the matches")
        steps.append((b, found[0]))
    return steps


def site_layer(fd: FeatureDistributions, name: str) -> int | None:
    """Layer number of a site (None when its names carry none)."""
    try:
        return run_layer(fd, name)
    except ValueError:
        return None
