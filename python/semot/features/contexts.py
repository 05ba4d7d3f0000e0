"""Token contexts of sampled points: the token windows a run stores so it can be read later.

A :class:`TokenContexts` holds, for every sequence of the token stream that holds a sampled
point of some feature, the token ids around those points (from ``before`` tokens before the
first sampled position to ``after`` tokens after the last), plus the decoded string of each
token id used. It is what lets :mod:`semot.browser` show the text where a feature fires
without the model, the tokenizer or the corpus: token ids, never hidden states.

:func:`semot.collect` writes it to ``contexts.safetensors`` in the run directory
(:data:`CONTEXTS_FILE`); runs written before it did are read with the token ids given again
(:meth:`TokenContexts.from_rows` over the same token array) and a tokenizer
(:func:`token_strings`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.safetensors import read_safetensors, write_safetensors
from semot.errors import CorruptFileError

__all__ = [
    "CONTEXTS_FILE",
    "DEFAULT_AFTER",
    "DEFAULT_BEFORE",
    "TokenContexts",
    "run_points",
    "token_strings",
]

I64 = npt.NDArray[np.int64]

#: File name of the stored contexts inside a run directory.
CONTEXTS_FILE = "contexts.safetensors"
#: Tokens kept before / after each sampled position at collection time.
DEFAULT_BEFORE = 32
DEFAULT_AFTER = 16


def _int_vector(x: Any, name: str) -> I64:
    arr = np.asarray(x)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{name}: expected a 1-D array of integers, got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


@dataclass(frozen=True)
class TokenContexts:
    """Token windows of the sequences that hold sampled points, and their tokens' strings.

    Attributes
    ----------
    seq : ndarray of int64, shape (n,)
        Stream index of each stored sequence, increasing.
    start : ndarray of int64, shape (n,)
        Position (in its sequence) of the first stored token of each sequence.
    offsets : ndarray of int64, shape (n + 1,)
        Sequence ``i``'s stored tokens are ``ids[offsets[i]:offsets[i + 1]]``, positions
        ``start[i]`` onwards.
    ids : ndarray of int64, shape (T,)
        Token ids.
    vocab : dict of int to str, or None
        Decoded string of every id in ``ids`` (None when no tokenizer was known).
    """

    seq: I64
    start: I64
    offsets: I64
    ids: I64
    vocab: dict[int, str] | None

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[int, Any]],
        seq: Any,
        pos: Any,
        *,
        before: int = DEFAULT_BEFORE,
        after: int = DEFAULT_AFTER,
        vocab: Mapping[int, str] | None = None,
        what: str = "tokens",
    ) -> TokenContexts:
        """Keep the windows around the points ``(seq, pos)`` from a stream of sequences.

        Parameters
        ----------
        rows : iterable of (int, array_like of int)
            ``(stream index, token ids)`` of each sequence, in increasing stream order (the
            token source of the run, read again). Iteration stops after the last needed one.
        seq, pos : array_like of int, shape (P,)
            Sequence index and position of every point to show (all sites of a run together).
        before, after : int
            Tokens kept before the first and after the last point of each sequence.
        vocab : mapping of int to str, optional
            Strings of the token ids; only the ids kept are stored.
        what : str
            Name of the token argument in error messages.

        Raises
        ------
        ValueError
            When a point's sequence is not in ``rows`` or its position is past the end of it
            (the tokens are not the run's), naming the first such point.
        """
        s, p = _int_vector(seq, "seq"), _int_vector(pos, "pos")
        if s.shape != p.shape:
            raise ValueError(f"seq and pos: lengths differ ({s.size} vs {p.size})")
        for name, v in (("before", before), ("after", after)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
        need = np.unique(s)
        lo = np.full(need.size, np.iinfo(np.int64).max)
        hi = np.full(need.size, -1)
        where = np.searchsorted(need, s)
        np.minimum.at(lo, where, p)
        np.maximum.at(hi, where, p)
        pieces: list[I64] = []
        starts = np.zeros(need.size, np.int64)
        found = np.zeros(need.size, bool)
        k = 0
        for index, row in rows:
            if k >= need.size:
                break
            if int(index) < need[k]:
                continue
            if int(index) != need[k]:
                break  # the sequence need[k] was skipped: reported below
            ids = np.asarray(row).reshape(-1)
            if ids.size and ids.dtype.kind not in "iu":
                raise TypeError(f"{what}: sequence {int(index)} has dtype {ids.dtype}, not ids")
            if hi[k] >= ids.size:
                bad = int(np.flatnonzero((s == need[k]) & (p >= ids.size))[0])
                raise ValueError(
                    f"{what}: point {bad} of the run is at sequence {int(s[bad])} position "
                    f"{int(p[bad])}, but that sequence has {ids.size} tokens here; give the "
                    "token ids the run was collected on"
                )
            a, b = max(0, int(lo[k]) - before), min(ids.size, int(hi[k]) + after + 1)
            starts[k] = a
            pieces.append(ids[a:b].astype(np.int64))
            found[k] = True
            k += 1
        if not found.all():
            miss = int(need[np.flatnonzero(~found)[0]])
            bad = int(np.flatnonzero(s == miss)[0])
            raise ValueError(
                f"{what}: point {bad} of the run is in sequence {miss}, which the given tokens "
                "do not hold; give the token ids the run was collected on"
            )
        sizes = np.array([len(x) for x in pieces], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ids_all = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        kept = None
        if vocab is not None:
            kept = {int(i): str(vocab[int(i)]) for i in np.unique(ids_all)}
        return cls(need, starts, offsets, ids_all, kept)

    def with_vocab(self, vocab: Mapping[int, str]) -> TokenContexts:
        """Return a copy whose strings are ``vocab``'s (for every stored id)."""
        missing = [int(i) for i in np.unique(self.ids) if int(i) not in vocab]
        if missing:
            raise ValueError(f"tokenizer: gives no string for token id {missing[0]}")
        used = {int(i): str(vocab[int(i)]) for i in np.unique(self.ids)}
        return TokenContexts(self.seq, self.start, self.offsets, self.ids, used)

    def windows(
        self, seq: Any, pos: Any, before: int, after: int
    ) -> tuple[npt.NDArray[np.int64], I64]:
        """Token ids around each point, as a padded matrix.

        Parameters
        ----------
        seq, pos : array_like of int, shape (P,)
            The points.
        before, after : int
            Tokens wanted before and after each point (fewer where the stored window ends).

        Returns
        -------
        ids : ndarray of int64, shape (P, before + 1 + after)
            Column ``before`` is the token at the point; -1 where nothing is stored.
        found : ndarray of int64, shape (P,)
            1 where the point's sequence is stored (its token is known), else 0.
        """
        s, p = _int_vector(seq, "seq"), _int_vector(pos, "pos")
        offsets = np.arange(-before, after + 1)
        out = np.full((s.size, offsets.size), -1, np.int64)
        if self.seq.size == 0 or s.size == 0:
            return out, np.zeros(s.size, np.int64)
        row = np.minimum(np.searchsorted(self.seq, s), self.seq.size - 1)
        ok = self.seq[row] == s
        length = np.diff(self.offsets)[row]
        at = (p - self.start[row])[:, None] + offsets[None, :]
        inside = ok[:, None] & (at >= 0) & (at < length[:, None])
        flat = self.offsets[row][:, None] + at
        out[inside] = self.ids[flat[inside]]
        return out, inside[:, before].astype(np.int64)

    # ------------------------------------------------------------------ storage

    def save(self, root: str | os.PathLike[str]) -> Path:
        """Write ``root/contexts.safetensors`` atomically; return its path."""
        path = Path(root) / CONTEXTS_FILE
        tensors: dict[str, np.ndarray[Any, Any]] = {
            "seq": self.seq,
            "start": self.start,
            "offsets": self.offsets,
            "ids": self.ids,
        }
        if self.vocab is not None:
            keys = np.array(sorted(self.vocab), np.int64)
            blobs = [self.vocab[int(k)].encode("utf-8", "surrogatepass") for k in keys]
            tensors["vocab_ids"] = keys
            tensors["vocab_offsets"] = np.concatenate(
                [[0], np.cumsum([len(b) for b in blobs])]
            ).astype(np.int64)
            tensors["vocab_bytes"] = np.frombuffer(b"".join(blobs), np.uint8)
        write_safetensors(path, tensors, {"format": "semot.contexts", "version": "1"})
        return path

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> TokenContexts | None:
        """Read ``root/contexts.safetensors``; None when the run has none (older runs).

        Raises
        ------
        CorruptFileError
            For a file that is not a valid contexts file (names the file and what is wrong).
        """
        path = Path(root) / CONTEXTS_FILE
        if not path.is_file():
            return None
        tensors, meta = read_safetensors(path, mmap=False)

        def bad(what: str) -> CorruptFileError:
            return CorruptFileError(f"{path}: not a valid contexts file: {what}")

        if meta.get("format") != "semot.contexts":
            raise bad("no 'semot.contexts' format tag")
        try:
            seq, start, offsets, ids = (
                np.asarray(tensors[k], np.int64) for k in ("seq", "start", "offsets", "ids")
            )
        except KeyError as e:
            raise bad(f"missing tensor {e}") from None
        n = seq.size
        if (
            start.shape != (n,)
            or offsets.shape != (n + 1,)
            or (n and offsets[0] != 0)
            or (np.diff(offsets) < 0).any()
            or int(offsets[-1]) != ids.size
            or (np.diff(seq) <= 0).any()
        ):
            raise bad("inconsistent seq / start / offsets / ids")
        vocab = None
        if "vocab_ids" in tensors:
            keys = np.asarray(tensors["vocab_ids"], np.int64)
            vo = np.asarray(tensors.get("vocab_offsets", np.zeros(0)), np.int64)
            blob = bytes(np.asarray(tensors.get("vocab_bytes", np.zeros(0)), np.uint8))
            if vo.shape != (keys.size + 1,) or int(vo[-1]) != len(blob) or (np.diff(vo) < 0).any():
                raise bad("inconsistent vocabulary arrays")
            try:
                vocab = {
                    int(k): blob[vo[i] : vo[i + 1]].decode("utf-8", "surrogatepass")
                    for i, k in enumerate(keys)
                }
            except UnicodeDecodeError as e:
                raise bad(f"vocabulary is not UTF-8 ({e})") from None
        return cls(seq, start, offsets, ids, vocab)


def run_points(sites: Iterable[Any]) -> tuple[I64, I64]:
    """Sequence indices and positions of every sampled point of every site, concatenated.

    Parameters
    ----------
    sites : iterable of FeatureDistributions

    Returns
    -------
    seq, pos : ndarray of int64, shape (P,)
    """
    parts = [fd.point_arrays("seq", "pos")[1] for fd in sites]
    seq = np.concatenate([np.zeros(0, np.int64)] + [np.asarray(s, np.int64) for s, _ in parts])
    pos = np.concatenate([np.zeros(0, np.int64)] + [np.asarray(p, np.int64) for _, p in parts])
    return seq, pos


def token_strings(tokenizer: Any, ids: Iterable[int]) -> dict[int, str]:
    """Return the string shown for each token id: what ``tokenizer`` decodes it to.

    Parameters
    ----------
    tokenizer : tokenizer, mapping, sequence or callable
        A Hugging Face tokenizer (``decode([id])``; ids it cannot decode fall back to
        ``convert_ids_to_tokens``), a mapping of id to string, a sequence of strings indexed
        by id, or a callable ``id -> str``.
    ids : iterable of int
        The ids needed.

    Raises
    ------
    ValueError
        For an id the tokenizer has no string for (naming it).
    TypeError
        For a tokenizer of none of those kinds.
    """
    wanted = sorted({int(i) for i in ids})
    out: dict[int, str] = {}
    if isinstance(tokenizer, Mapping):
        for i in wanted:
            if i not in tokenizer:
                raise ValueError(f"tokenizer: the mapping has no string for token id {i}")
            out[i] = str(tokenizer[i])
        return out
    if isinstance(tokenizer, Sequence) and not isinstance(tokenizer, str):
        for i in wanted:
            if not 0 <= i < len(tokenizer):
                raise ValueError(
                    f"tokenizer: token id {i} is outside the {len(tokenizer)} strings given"
                )
            out[i] = str(tokenizer[i])
        return out
    decode = getattr(tokenizer, "decode", None)
    if callable(decode):
        for i in wanted:
            try:
                out[i] = str(decode([i]))
            except (IndexError, KeyError, ValueError, TypeError, OverflowError):
                raise ValueError(f"tokenizer: cannot decode token id {i}") from None
        return out
    if callable(tokenizer):
        return {i: str(tokenizer(i)) for i in wanted}
    raise TypeError(
        f"tokenizer: expected a tokenizer, a mapping or sequence of strings, or a callable, "
        f"got {type(tokenizer).__name__}"
    )
