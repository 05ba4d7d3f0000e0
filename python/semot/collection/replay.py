"""Collect and evaluate from stored hidden states instead of running the model again.

:class:`StoredActivations` is a collection runner (the interface :func:`semot.collect` and
:func:`semot.evaluation.evaluate` drive: ``run(tokens, hooks)``, ``device``, ``check_hooks``)
that answers from hidden states computed once, e.g. on a GPU, and kept as ``(S, L, d)`` arrays
(memory maps are fine). A batch of token sequences is looked up by its content, so any token
source over the same sequences works, in any batch size or order. Studies that collect many
configurations of the same tokens (sample sizes, modes, seeds) pay for the forward pass once.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from semot.collection.models import require_torch

__all__ = ["StoredActivations"]


class StoredActivations:
    """A runner that returns stored hidden states of known token sequences.

    Parameters
    ----------
    tokens : array of int, shape (S, L)
        The token ids of the stored sequences.
    hidden : mapping of hook name to array, shape (S, L, d_hook)
        Hidden states at each hook, row ``s`` for sequence ``tokens[s]``.
    tokenizer : optional
        The model's tokenizer (for ``ignore_token_ids="special"`` and text sources).

    Raises
    ------
    ValueError
        When an array's first two dimensions differ from ``tokens``'.

    Notes
    -----
    Sequences with identical tokens have identical hidden states in a deterministic model, so a
    repeated sequence is answered from its first copy.
    """

    def __init__(
        self,
        tokens: npt.ArrayLike,
        hidden: Mapping[str, Any],
        *,
        tokenizer: Any = None,
    ) -> None:
        ids = np.asarray(tokens)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"tokens: expected an integer array (S, L), got shape {ids.shape}")
        if not hidden:
            raise ValueError("hidden: give the hidden states of at least one hook")
        for hook, arr in hidden.items():
            shape = tuple(np.shape(arr))
            if len(shape) != 3 or shape[:2] != ids.shape:
                raise ValueError(
                    f"hidden: the states of {hook!r} have shape {shape}, expected "
                    f"({ids.shape[0]}, {ids.shape[1]}, d)"
                )
        self.tokens = ids.astype(np.int64)
        self.hidden = dict(hidden)
        self.tokenizer = tokenizer
        self.vocab_size: int | None = None
        self.max_length: int | None = int(ids.shape[1])
        self._row_of: dict[bytes, int] = {}
        for s in range(ids.shape[0] - 1, -1, -1):  # first copy wins
            self._row_of[self.tokens[s].tobytes()] = s

    @property
    def device(self) -> Any:
        """Always the CPU: the states are numpy arrays."""
        return require_torch().device("cpu")

    def resolve_hook(self, hook: str) -> str:
        """Return ``hook`` (stored hooks are named as they were stored)."""
        return hook

    def check_hooks(self, hooks: Sequence[str]) -> None:
        """Raise ValueError naming a hook that was not stored and the closest stored names."""
        for h in hooks:
            if h not in self.hidden:
                close = difflib.get_close_matches(h, list(self.hidden), n=3)
                hint = f"; did you mean {close}?" if close else f"; stored: {sorted(self.hidden)}"
                raise ValueError(f"hook {h!r} has no stored hidden states{hint}")

    def rows(self, tokens: Any) -> npt.NDArray[np.int64]:
        """Return the stored row of each sequence of ``tokens`` ``(B, L')``, ``L' <= L``.

        Raises ValueError naming the first sequence that is not stored.
        """
        ids = np.asarray(tokens.cpu() if hasattr(tokens, "cpu") else tokens, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] > self.tokens.shape[1]:
            raise ValueError(
                f"tokens: expected sequences (B, L) with L <= {self.tokens.shape[1]}, got shape "
                f"{ids.shape}"
            )
        width = ids.shape[1]
        if width == self.tokens.shape[1]:
            lookup = self._row_of
        else:  # a prefix (e.g. one token to read a hook's width)
            lookup = {}
            for s in range(self.tokens.shape[0] - 1, -1, -1):
                lookup[self.tokens[s, :width].tobytes()] = s
        out = np.empty(ids.shape[0], dtype=np.int64)
        for i, row in enumerate(ids):
            found = lookup.get(row.tobytes())
            if found is None:
                raise ValueError(
                    f"tokens: sequence {i} of the batch is not among the stored sequences "
                    "(StoredActivations answers only the sequences it was given)"
                )
            out[i] = found
        return out

    def run(self, tokens: Any, hooks: Sequence[str]) -> dict[str, Any]:
        """Hidden states ``(B, L', d)`` (float32 CPU tensors) of ``tokens`` at ``hooks``."""
        torch = require_torch()
        self.check_hooks(hooks)
        rows = self.rows(tokens)
        width = int(tokens.shape[1])
        return {
            h: torch.from_numpy(np.ascontiguousarray(self.hidden[h][rows, :width], np.float32))
            for h in dict.fromkeys(hooks)
        }
