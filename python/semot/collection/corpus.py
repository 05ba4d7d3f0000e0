"""Real English text that every machine has offline: the Python standard library's docstrings.

:func:`stdlib_docstrings` reads the docstrings of the modules, classes and functions of the
standard library's ``.py`` files by parsing them (nothing is imported), in sorted file order, so
the corpus is the same on every machine with the same Python version. :func:`split_documents`
cuts a list of documents into disjoint parts (SAE training / collection / evaluation) by a
seeded hash of each document's index, so a part never changes when another part's share does.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from semot._utils.checks import check_positive_int

# Parts of the standard library that are tests, GUI or vendored code rather than documented
# library text.
_SKIP_PARTS = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "site-packages", "lib2to3", "ensurepip"}
)


def stdlib_root() -> Path:
    """Directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_docstrings(*, min_chars: int = 200, max_documents: int | None = None) -> list[str]:
    """Docstrings of the standard library, one document each, in a fixed order.

    Parameters
    ----------
    min_chars : int
        Keep docstrings of at least this many characters (short ones are mostly signatures).
    max_documents : int, optional
        Stop after this many documents.

    Returns
    -------
    list of str
        Module, class and function docstrings (``ast.get_docstring``, cleaned), of files in
        sorted path order and nodes in source order; exact duplicates are kept once.
    """
    check_positive_int(min_chars, "min_chars")
    root = stdlib_root()
    seen: set[str] = set()
    docs: list[str] = []
    for path in _library_files(root):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few files are templates or encoded otherwise
        for node in ast.walk(tree):
            if not isinstance(
                node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
            ):
                continue
            doc = ast.get_docstring(node)
            if doc is None or len(doc) < min_chars or doc in seen:
                continue
            seen.add(doc)
            docs.append(doc)
            if max_documents is not None and len(docs) >= max_documents:
                return docs
    if not docs:
        raise ValueError(f"no docstrings found under {root} (is the standard library there?)")
    return docs


def _library_files(root: Path) -> list[Path]:
    """List the ``.py`` files under ``root``, sorted, without the skipped directories."""
    files: list[Path] = []
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in _SKIP_PARTS and not d.startswith((".", "__"))]
        files.extend(Path(folder) / n for n in names if n.endswith(".py"))
    return sorted(files)


def split_documents(
    documents: Sequence[str], fractions: Mapping[str, float], *, seed: int = 0
) -> dict[str, list[str]]:
    """Split documents into disjoint named parts, each document in exactly one.

    Document ``i`` goes to the part whose cumulative share holds ``u_i``, a uniform number in
    [0, 1) from the SHA-256 of ``(seed, i)``: parts are disjoint, their sizes follow
    ``fractions`` (normalised), and the order inside each part is the documents' order.

    Parameters
    ----------
    documents : sequence of str
    fractions : mapping of str to float
        Part name to share, e.g. ``{"train": 0.6, "collect": 0.2, "evaluate": 0.2}``.
    seed : int
    """
    if not fractions:
        raise ValueError("fractions: give at least one part")
    names = list(fractions)
    shares = [float(fractions[n]) for n in names]
    if any(not s > 0 for s in shares):
        bad = next(n for n, s in zip(names, shares, strict=True) if not s > 0)
        raise ValueError(f"fractions: part {bad!r} has share {fractions[bad]}, expected > 0")
    total = sum(shares)
    bounds = []
    acc = 0.0
    for s in shares:
        acc += s / total
        bounds.append(acc)
    parts: dict[str, list[str]] = {n: [] for n in names}
    for i, doc in enumerate(documents):
        digest = hashlib.sha256(f"{seed}:{i}".encode()).digest()
        u = int.from_bytes(digest[:8], "little") / 2.0**64
        part = next((n for n, b in zip(names, bounds, strict=True) if u < b), names[-1])
        parts[part].append(doc)
    return parts


def corpus_description(documents: Sequence[str]) -> dict[str, object]:
    """Describe a corpus for records: Python version, size and a digest of the text."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc.encode("utf-8"))
        digest.update(b"\0")
    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "n_documents": len(documents),
        "n_chars": sum(len(d) for d in documents),
        "sha256_16": digest.hexdigest()[:16],
    }


#: The disjoint parts of the built-in corpus: SAE training, collection and evaluation.
CORPUS_PARTS: dict[str, float] = {"train": 0.6, "collect": 0.2, "evaluate": 0.2}


@functools.lru_cache(maxsize=2)
def _stdlib_parts() -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    docs = stdlib_docstrings()
    parts = split_documents(docs, CORPUS_PARTS, seed=0)
    return tuple(docs), {name: tuple(part) for name, part in parts.items()}


def corpus_documents(spec: str) -> list[str]:
    """Documents of a built-in corpus: ``"stdlib"`` or a part ``"stdlib:<part>"``.

    The parts (:data:`CORPUS_PARTS`, split by :func:`split_documents` with seed 0) are
    disjoint, so SAEs trained on ``stdlib:train`` never see the text collected from
    ``stdlib:collect`` or evaluated on ``stdlib:evaluate``.
    """
    name, _, part = spec.partition(":")
    if name != "stdlib":
        raise ValueError(f"unknown corpus {name!r}; the built-in corpus is 'stdlib'")
    docs, parts = _stdlib_parts()
    if not part:
        return list(docs)
    if part not in parts:
        raise ValueError(f"unknown part {part!r} of 'stdlib'; parts are {sorted(parts)}")
    return list(parts[part])
