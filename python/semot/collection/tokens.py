"""Token sources for collection: deterministic streams of token-id batches.

Every source yields the same batches in the same order each time it is iterated, which is what
makes checkpoint/resume exact: a resumed run skips the batches it already consumed. Sequences
are numbered from 0 in stream order; that number and the position inside the sequence identify
a token everywhere in semot (provenance, sampling keys).

This module imports neither torch nor transformers; tokenizers and datasets are imported only
when a text or dataset source is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from semot._utils.checks import check_optional_positive_int, check_positive_int

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TokenBatch:
    """A batch of sequences of equal length.

    Attributes
    ----------
    tokens : numpy.ndarray of int64, shape (B, L)
        Token ids.
    first_seq : int
        Stream index of the batch's first sequence (row ``i`` is sequence ``first_seq + i``).
    """

    tokens: IntArray
    first_seq: int

    @property
    def n_tokens(self) -> int:
        """Number of tokens ``B * L``."""
        return int(self.tokens.size)


class TokenSource(Protocol):
    """Anything that yields :class:`TokenBatch` deterministically."""

    def batches(self, batch_size: int) -> Iterator[TokenBatch]:
        """Yield batches of at most ``batch_size`` sequences, always the same ones."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON description recorded in the output and checked on resume."""
        ...


def _check_sequence(seq: Any, index: int, what: str) -> IntArray:
    arr = np.asarray(seq)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what}: sequence {index} has dtype {arr.dtype}, expected token ids")
    if arr.ndim != 1:
        raise ValueError(f"{what}: sequence {index} has shape {arr.shape}, expected 1-D")
    if arr.shape[0] == 0:
        raise ValueError(f"{what}: sequence {index} has length 0 (zero-length sequence)")
    if (arr < 0).any():
        raise ValueError(f"{what}: sequence {index} holds a negative token id")
    return arr.astype(np.int64, copy=False)


def _group(seqs: Iterable[IntArray], batch_size: int) -> Iterator[TokenBatch]:
    """Group consecutive sequences of equal length into batches of at most ``batch_size``."""
    check_positive_int(batch_size, "batch_size")
    buf: list[IntArray] = []
    first = 0
    n = 0
    for s in seqs:
        if buf and (len(buf) == batch_size or s.shape[0] != buf[0].shape[0]):
            yield TokenBatch(np.stack(buf), first)
            first += len(buf)
            buf = []
        buf.append(s)
        n += 1
    if buf:
        yield TokenBatch(np.stack(buf), first)
    if n == 0:
        raise ValueError("tokens: the token source is empty (no sequences)")


class ArrayTokens:
    """Token ids given as one array ``(n_sequences, context_length)`` (numpy or torch).

    Parameters
    ----------
    tokens : array_like of int, shape (S, L)
        One sequence per row.
    """

    def __init__(self, tokens: Any) -> None:
        if hasattr(tokens, "detach"):
            tokens = tokens.detach().cpu().numpy()
        arr = np.asarray(tokens)
        if arr.ndim != 2:
            raise ValueError(
                f"tokens: expected a 2-D array (n_sequences, context_length), got shape "
                f"{arr.shape}; reshape a flat stream with .reshape(-1, context_length)"
            )
        if arr.shape[0] == 0:
            raise ValueError("tokens: the token array holds no sequences")
        if arr.shape[1] == 0:
            raise ValueError("tokens: sequences have length 0 (zero-length sequences)")
        self.tokens = _check_sequence(arr.reshape(-1), 0, "tokens").reshape(arr.shape)

    def batches(self, batch_size: int) -> Iterator[TokenBatch]:
        """Yield consecutive rows, ``batch_size`` at a time."""
        return _group(iter(self.tokens), batch_size)

    def describe(self) -> dict[str, Any]:
        """Shape and a checksum of the ids."""
        import hashlib

        digest = hashlib.sha256(np.ascontiguousarray(self.tokens).tobytes()).hexdigest()[:16]
        return {"kind": "array", "shape": list(self.tokens.shape), "sha256_16": digest}


class IterableTokens:
    """Token ids from a re-iterable collection of batches or sequences.

    Each item is a 1-D sequence or a 2-D batch ``(B, L)``; consecutive sequences of one length
    are regrouped into batches of ``batch_size``. For resume the iterable must yield the same
    items again when iterated a second time (a list, or an object whose ``__iter__`` restarts).
    """

    def __init__(self, items: Iterable[Any], name: str = "iterable") -> None:
        self.items = items
        self.name = name

    def _sequences(self) -> Iterator[IntArray]:
        i = 0
        for item in self.items:
            if hasattr(item, "detach"):
                item = item.detach().cpu().numpy()
            arr = np.asarray(item)
            rows = arr if arr.ndim == 2 else arr[None] if arr.ndim == 1 else None
            if rows is None:
                raise ValueError(f"tokens: item has shape {arr.shape}, expected (L,) or (B, L)")
            for row in rows:
                yield _check_sequence(row, i, "tokens")
                i += 1

    def batches(self, batch_size: int) -> Iterator[TokenBatch]:
        """Yield the items' sequences regrouped into batches."""
        return _group(self._sequences(), batch_size)

    def describe(self) -> dict[str, Any]:
        """Return the name given."""
        return {"kind": "iterable", "name": self.name}


def _chunk(
    ids: Iterator[Sequence[int]], context_length: int, bos: int | None
) -> Iterator[IntArray]:
    """Concatenate documents and cut them into sequences of ``context_length`` tokens.

    With ``bos`` each sequence starts with that token and holds ``context_length - 1`` text
    tokens. The last, shorter sequence is kept (not dropped): no token is silently lost.
    """
    body = context_length - (1 if bos is not None else 0)
    if body < 1:
        raise ValueError(f"context_length: too small ({context_length})")
    buf: list[int] = []
    for doc in ids:
        buf.extend(int(t) for t in doc)
        while len(buf) >= body:
            chunk, buf = buf[:body], buf[body:]
            yield np.asarray(([bos] if bos is not None else []) + chunk, dtype=np.int64)
    if buf:
        yield np.asarray(([bos] if bos is not None else []) + buf, dtype=np.int64)


def _tokenizer_bos(tokenizer: Any, prepend_bos: bool) -> int | None:
    """Return the id a sequence starts with: BOS, or CLS for encoders (BERT) without BOS."""
    if not prepend_bos:
        return None
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        bos = getattr(tokenizer, "cls_token_id", None)
    return int(bos) if bos is not None else None


class _Text:
    """Text tokenised with a Hugging Face tokenizer and cut into fixed-length sequences.

    Subclasses give the documents (:meth:`_texts`); documents are joined and cut into
    sequences of ``context_length`` tokens (the tokenizer's BOS first when ``prepend_bos``),
    and the final, shorter sequence is kept.
    """

    def __init__(self, tokenizer: Any, context_length: int, prepend_bos: bool, what: str) -> None:
        if tokenizer is None:
            raise ValueError(f"{what}: the model has no tokenizer; pass token ids instead")
        self.tokenizer = tokenizer
        self.context_length = check_positive_int(context_length, "context_length")
        self.bos = _tokenizer_bos(tokenizer, prepend_bos)

    def _texts(self) -> Iterator[str]:
        raise NotImplementedError

    def _docs(self) -> Iterator[Sequence[int]]:
        for text in self._texts():
            # Whole documents are tokenised before the cut: the tokenizer's warning about
            # texts longer than the model's context does not apply.
            yield self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def batches(self, batch_size: int) -> Iterator[TokenBatch]:
        """Yield the tokenised text in batches."""
        return _group(_chunk(self._docs(), self.context_length, self.bos), batch_size)


class TextFiles(_Text):
    """Local text files tokenised with a Hugging Face tokenizer, cut into fixed-length sequences.

    Files are read in the order given, each as one document; documents are joined and cut into
    sequences of ``context_length`` tokens (the tokenizer's BOS first when ``prepend_bos``);
    the final, shorter sequence is kept.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        tokenizer: Any,
        context_length: int,
        *,
        prepend_bos: bool = True,
    ) -> None:
        if not paths:
            raise ValueError("text: no files given")
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.is_file():
                raise ValueError(f"text: {p} is not a file")
        super().__init__(tokenizer, context_length, prepend_bos, "text")

    def _texts(self) -> Iterator[str]:
        for p in self.paths:
            yield p.read_text(encoding="utf-8")

    def describe(self) -> dict[str, Any]:
        """File names and sizes, context length, BOS."""
        return {
            "kind": "text",
            "files": [str(p) for p in self.paths],
            "bytes": [p.stat().st_size for p in self.paths],
            "context_length": self.context_length,
            "bos": self.bos,
        }


class TextDocuments(_Text):
    """Documents given as strings, tokenised and cut like :class:`TextFiles`.

    Parameters
    ----------
    documents : sequence of str
        The documents, in stream order (e.g. :func:`semot.collection.corpus.stdlib_docstrings`).
    tokenizer, context_length, prepend_bos
        As for :class:`TextFiles`.
    name : str
        Recorded in :meth:`describe` with a digest of the text.
    """

    def __init__(
        self,
        documents: Sequence[str],
        tokenizer: Any,
        context_length: int,
        *,
        prepend_bos: bool = True,
        name: str = "documents",
    ) -> None:
        if isinstance(documents, str):
            raise TypeError("documents: expected a sequence of str, got one str")
        self.documents = list(documents)
        if not self.documents:
            raise ValueError("documents: no documents given")
        for i, doc in enumerate(self.documents):
            if not isinstance(doc, str):
                raise TypeError(f"documents: document {i} is {type(doc).__name__}, expected str")
        super().__init__(tokenizer, context_length, prepend_bos, "documents")
        self.name = name

    def _texts(self) -> Iterator[str]:
        return iter(self.documents)

    def token_array(self) -> IntArray:
        """All sequences but a shorter last one, as one array ``(n_sequences, context_length)``."""
        rows = [s for s in _chunk(self._docs(), self.context_length, self.bos)]
        full = [r for r in rows if r.shape[0] == self.context_length]
        if not full:
            raise ValueError(
                f"documents: fewer than context_length={self.context_length} tokens in all"
            )
        return np.stack(full)

    def describe(self) -> dict[str, Any]:
        """Name, number of documents, digest of the text, context length, BOS."""
        import hashlib

        digest = hashlib.sha256("\0".join(self.documents).encode("utf-8")).hexdigest()[:16]
        return {
            "kind": "documents",
            "name": self.name,
            "n_documents": len(self.documents),
            "sha256_16": digest,
            "context_length": self.context_length,
            "bos": self.bos,
        }


class DatasetTokens:
    """A Hugging Face dataset (hub name or local builder), streamed and tokenised.

    Parameters
    ----------
    name : str
        Dataset name for :func:`datasets.load_dataset` (e.g. ``"NeelNanda/pile-10k"``), or a
        builder such as ``"text"`` with ``data_files`` in ``dataset_kwargs``.
    tokenizer, context_length, prepend_bos
        As for :class:`TextFiles`.
    split : str
        Dataset split.
    column : str
        Text column; a column of token ids (lists of int) is used as is.
    dataset_kwargs : dict, optional
        Passed to :func:`datasets.load_dataset`.
    """

    def __init__(
        self,
        name: str,
        tokenizer: Any,
        context_length: int,
        *,
        split: str = "train",
        column: str = "text",
        prepend_bos: bool = True,
        dataset_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.context_length = check_positive_int(context_length, "context_length")
        self.split = split
        self.column = column
        self.bos = _tokenizer_bos(tokenizer, prepend_bos) if tokenizer is not None else None
        self.kwargs = dict(dataset_kwargs or {})

    def _docs(self) -> Iterator[Sequence[int]]:
        try:
            import datasets
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("dataset sources need `pip install datasets`") from e
        ds = datasets.load_dataset(self.name, split=self.split, streaming=True, **self.kwargs)
        for row in ds:
            if self.column not in row:
                raise ValueError(
                    f"dataset: column {self.column!r} not found; columns are {sorted(row)}"
                )
            value = row[self.column]
            if isinstance(value, str):
                if self.tokenizer is None:
                    raise ValueError("dataset: text column but the model has no tokenizer")
                yield self.tokenizer(value, add_special_tokens=False, verbose=False)["input_ids"]
            else:
                yield list(value)

    def batches(self, batch_size: int) -> Iterator[TokenBatch]:
        """Yield the tokenised dataset in batches."""
        return _group(_chunk(self._docs(), self.context_length, self.bos), batch_size)

    def describe(self) -> dict[str, Any]:
        """Dataset name, split, column, context length, BOS."""
        return {
            "kind": "dataset",
            "name": self.name,
            "split": self.split,
            "column": self.column,
            "context_length": self.context_length,
            "bos": self.bos,
            "kwargs": {key: str(v) for key, v in self.kwargs.items()},
        }


def as_token_source(tokens: Any) -> TokenSource:
    """Interpret ``tokens`` as a :class:`TokenSource`.

    Accepts a token source, a 2-D numpy/torch array of ids, or a re-iterable of sequences or
    batches (for example a list of arrays).
    """
    if hasattr(tokens, "batches") and hasattr(tokens, "describe"):
        return tokens  # type: ignore[no-any-return]
    if isinstance(tokens, np.ndarray) or hasattr(tokens, "detach"):
        return ArrayTokens(tokens)
    if isinstance(tokens, (str, Path)):
        raise TypeError(
            "tokens: got a path; use TextFiles(paths, tokenizer, context_length) for text or "
            "np.load the ids first"
        )
    if isinstance(tokens, Iterable):
        if iter(tokens) is tokens:
            raise TypeError(
                "tokens: got a one-shot iterator; pass a list or a re-iterable object so a "
                "resumed run can read the same batches again"
            )
        return IterableTokens(tokens)
    raise TypeError(f"tokens: cannot use {type(tokens).__name__} as a token source")


def limit_tokens(batches: Iterator[TokenBatch], n_tokens: int | None) -> Iterator[TokenBatch]:
    """Stop after exactly ``n_tokens`` tokens, cutting the last sequence short if needed.

    A cut sequence keeps its prefix (causal models give the prefix the same hidden states),
    and is yielded as its own batch so batches keep one length.
    """
    check_optional_positive_int(n_tokens, "n_tokens")
    seen = 0
    for b in batches:
        if n_tokens is None or seen + b.n_tokens <= n_tokens:
            seen += b.n_tokens
            yield b
        else:
            rem = n_tokens - seen
            length = b.tokens.shape[1]
            full, part = divmod(rem, length)
            if full:
                yield TokenBatch(b.tokens[:full], b.first_seq)
            if part:
                yield TokenBatch(b.tokens[full : full + 1, :part], b.first_seq + full)
            seen = n_tokens
        if n_tokens is not None and seen >= n_tokens:
            return


def ignored_token_ids(tokenizer: Any, ignore_token_ids: Sequence[int] | str | None) -> list[int]:
    """Sorted token ids never sampled: the given ones, or the tokenizer's special tokens.

    ``"special"`` needs a tokenizer: without one it raises ValueError rather than ignore
    nothing (BOS states, with norms 100x those of text tokens, would poison the clouds).
    """
    if ignore_token_ids is None:
        return []
    if isinstance(ignore_token_ids, str):
        if ignore_token_ids != "special":
            raise ValueError(
                f"ignore_token_ids: expected 'special', None or a list of ids, got "
                f"{ignore_token_ids!r}"
            )
        if tokenizer is None:
            raise ValueError(
                "ignore_token_ids: 'special' needs the model's tokenizer and this model has "
                "none; pass the ids to ignore (e.g. [bos_id]), or None to sample every token, "
                "or a runner that knows its tokenizer (ModuleHooks(model, tokenizer=...))"
            )
        ids = getattr(tokenizer, "all_special_ids", None)
        if ids is None:
            raise ValueError(
                f"ignore_token_ids: the tokenizer {type(tokenizer).__name__} lists no "
                "all_special_ids; pass the ids to ignore, or None"
            )
        return sorted({int(i) for i in ids})
    ids = [int(i) for i in ignore_token_ids]
    if any(i < 0 for i in ids):
        i = next(k for k, v in enumerate(ids) if v < 0)
        raise ValueError(f"ignore_token_ids: index {i} is {ids[i]}, a negative token id")
    return sorted(set(ids))
