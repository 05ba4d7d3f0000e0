"""Streaming activation statistics over held-out tokens, in bounded memory (needs torch).

:class:`PearsonSums` accumulates, in float64, what Pearson's r between every pair (source
feature, target feature) needs; :class:`TopContexts` keeps each feature's top-k activating
token positions; :func:`accumulate` runs a model over a token source once per batch and feeds
both, with the held-out tokens split into two disjoint halves by sequence (:func:`split_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.checks import check_positive_int

__all__ = [
    "EMPTY_KEY",
    "ActivationStats",
    "PearsonSums",
    "TopContexts",
    "accumulate",
    "context_key",
    "split_of",
]

#: Key of an empty slot of :class:`TopContexts` (no positive activation there).
EMPTY_KEY = np.iinfo(np.int64).max
_POS_BITS = 32


def context_key(seq: Any, pos: Any) -> npt.NDArray[np.int64]:
    """Key of the token at ``(sequence, position)``: ``seq * 2**32 + pos`` (stream order)."""
    s = np.asarray(seq, dtype=np.int64)
    p = np.asarray(pos, dtype=np.int64)
    out: npt.NDArray[np.int64] = (s << _POS_BITS) | p
    return out


def split_of(seq: Any) -> npt.NDArray[np.int64]:
    """Held-out split of each sequence: 0 (split A) for even stream indices, 1 (split B) for odd.

    Deterministic and disjoint: a sequence and all its tokens belong to one split.
    """
    out: npt.NDArray[np.int64] = np.asarray(seq, dtype=np.int64) % 2
    return out


class PearsonSums:
    r"""Float64 sums for Pearson's r of ``n_source`` source features against ``n_target`` targets.

    Over the tokens seen so far (``n`` of them), with :math:`x_i` a source activation and
    :math:`y_j` a target activation, it keeps :math:`\sum x_i`, :math:`\sum x_i^2`
    (``(n_source,)``), :math:`\sum y_j`, :math:`\sum y_j^2` (``(n_target,)``) and
    :math:`\sum x_i y_j` (``(n_source, n_target)``), all float64 on ``device``. Memory:
    ``8 * n_source * n_target`` bytes for the cross sums (1024 x 16384: 134 MB), plus the
    vectors.

    Parameters
    ----------
    n_source, n_target : int
        Number of source and target features.
    device : str or torch.device
        Where the sums live (the model's device).
    """

    def __init__(self, n_source: int, n_target: int, device: Any = "cpu") -> None:
        from semot.collection.models import require_torch

        torch = require_torch()
        self.n_source = check_positive_int(n_source, "n_source")
        self.n_target = check_positive_int(n_target, "n_target")
        f64 = {"dtype": torch.float64, "device": device}
        self.n = 0
        self.sx = torch.zeros(self.n_source, **f64)
        self.sxx = torch.zeros(self.n_source, **f64)
        self.sy = torch.zeros(self.n_target, **f64)
        self.syy = torch.zeros(self.n_target, **f64)
        self.sxy = torch.zeros(self.n_source, self.n_target, **f64)

    def update(self, x: Any, y: Any) -> None:
        """Add tokens: activations ``x`` ``(T, n_source)``, ``y`` ``(T, n_target)``, row for row."""
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"activations: expected (T, n_source) and (T, n_target) on the same tokens, got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[1] != self.n_source or y.shape[1] != self.n_target:
            raise ValueError(
                f"activations: expected {self.n_source} source and {self.n_target} target "
                f"columns, got {x.shape[1]} and {y.shape[1]}"
            )
        if x.shape[0] == 0:
            return
        x = x.to(self.sxy.device, self.sxy.dtype)
        y = y.to(self.sxy.device, self.sxy.dtype)
        self.n += int(x.shape[0])
        self.sx += x.sum(0)
        self.sxx += (x * x).sum(0)
        self.sy += y.sum(0)
        self.syy += (y * y).sum(0)
        self.sxy += x.T @ y

    def source_varies(self) -> npt.NDArray[np.bool_]:
        """Whether each source feature took more than one value (its r is defined)."""
        vx = self.n * self.sxx.cpu().numpy() - self.sx.cpu().numpy() ** 2
        out: npt.NDArray[np.bool_] = vx > 0
        return out

    def correlation(self) -> npt.NDArray[np.float64]:
        r"""Pearson's r, ``(n_source, n_target)`` float64.

        :math:`r_{ij} = (n S_{xy} - S_x S_y) / \sqrt{(n S_{xx} - S_x^2)(n S_{yy} - S_y^2)}`,
        clipped to [-1, 1]; 0 where either feature was constant (as
        :func:`semot.matching.baselines.activation_correlation_match` does).
        """
        if self.n < 2:
            raise ValueError(f"activations: need at least 2 tokens for a correlation, got {self.n}")
        n = float(self.n)
        sx, sxx = self.sx.cpu().numpy(), self.sxx.cpu().numpy()
        sy, syy = self.sy.cpu().numpy(), self.syy.cpu().numpy()
        vx = np.maximum(n * sxx - sx * sx, 0.0)
        vy = np.maximum(n * syy - sy * sy, 0.0)
        cov = n * self.sxy.cpu().numpy() - sx[:, None] * sy[None, :]
        den = np.sqrt(vx)[:, None] * np.sqrt(vy)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(den > 0, cov / np.where(den > 0, den, 1.0), 0.0)
        out: npt.NDArray[np.float64] = np.clip(r, -1.0, 1.0)
        return out


class TopContexts:
    """Running top-k activating token positions of each of ``n_features`` features.

    Only positive activations count. Ties are broken by stream order (the earlier token
    first), so the result does not depend on batch size. Memory: ``12 * k * n_features``
    bytes (float32 values and int64 keys).

    Parameters
    ----------
    n_features : int
    k : int
        Contexts kept per feature.
    """

    def __init__(self, n_features: int, k: int) -> None:
        self.n_features = check_positive_int(n_features, "n_features")
        self.k = check_positive_int(k, "top_contexts")
        self.values = np.full((self.k, self.n_features), -np.inf, dtype=np.float32)
        self.key_array = np.full((self.k, self.n_features), EMPTY_KEY, dtype=np.int64)

    def update(self, acts: Any, keys: npt.NDArray[np.int64]) -> None:
        """Add tokens: ``acts`` ``(T, n_features)`` torch tensor, ``keys`` ``(T,)`` increasing."""
        from semot.collection.models import require_torch

        torch = require_torch()
        t = int(acts.shape[0])
        if t == 0:
            return
        if acts.shape[1] != self.n_features or keys.shape != (t,):
            raise ValueError(
                f"contexts: expected ({t}, {self.n_features}) activations and {t} keys, got "
                f"{tuple(acts.shape)} and {keys.shape}"
            )
        kk = min(self.k, t)
        acts = acts.float()
        top = torch.topk(acts, kk, dim=0)
        vals, idx = top.values, top.indices
        # topk chooses arbitrarily among ties at the k-th value; where a column has such a tie
        # (with a positive value), redo it with a stable sort: the earliest tokens win.
        kth = vals[-1]
        tie = ((acts >= kth[None, :]).sum(0) > kk) & (kth > 0)
        if bool(tie.any()):
            cols = torch.nonzero(tie).flatten()
            sub = acts[:, cols]
            order = torch.sort(sub, dim=0, descending=True, stable=True).indices[:kk]
            idx[:, cols] = order
            vals[:, cols] = torch.gather(sub, 0, order)
        v = vals.cpu().numpy().astype(np.float32)
        kb = keys[idx.cpu().numpy()]
        kb = np.where(v > 0, kb, EMPTY_KEY)
        v = np.where(v > 0, v, -np.inf).astype(np.float32)
        allv = np.concatenate([self.values, v])
        allk = np.concatenate([self.key_array, kb])
        order = np.lexsort((allk, -allv), axis=0)[: self.k]
        self.values = np.take_along_axis(allv, order, 0)
        self.key_array = np.take_along_axis(allk, order, 0)

    def keys(self) -> npt.NDArray[np.int64]:
        """Return the context keys ``(n_features, k)``, best first, :data:`EMPTY_KEY` padded."""
        out: npt.NDArray[np.int64] = np.ascontiguousarray(self.key_array.T)
        return out


@dataclass
class ActivationStats:
    """What one pass over the held-out tokens gives (see :func:`accumulate`).

    Attributes
    ----------
    source_ids : ndarray of int64, shape (n_sub,)
        Source features measured (the subset), sorted.
    n_target : int
        Target features measured (all of them: ids ``0 .. n_target - 1``).
    splits : tuple of PearsonSums
        Sums on split A (silver standard) and split B (activation-correlation baseline).
    source_contexts, target_contexts : TopContexts
        Top-k contexts over both splits.
    n_tokens : int
        Tokens counted (ignored ids excluded); ``n_tokens_read`` includes them.
    """

    source_ids: npt.NDArray[np.int64]
    n_target: int
    splits: tuple[PearsonSums, PearsonSums]
    source_contexts: TopContexts
    target_contexts: TopContexts
    n_tokens: int
    n_tokens_read: int
    n_sequences: int


def accumulate(
    runner: Any,
    source_site: Any,
    target_site: Any,
    batches: Any,
    source_ids: npt.NDArray[np.int64],
    *,
    top_contexts: int = 20,
    ignore: Sequence[int] = (),
    progress: Any = None,
) -> ActivationStats:
    """One pass over ``batches``: per batch, run the model once and encode both sites.

    Parameters
    ----------
    runner
        A collection runner (``.run(tokens, hooks)``, ``.device``).
    source_site, target_site : semot.collection.models.Site
        Their ``encode`` maps the hook's hidden states ``(T, d_in)`` to ``(T, d_sae)``.
    batches : iterable of TokenBatch
        The held-out tokens.
    source_ids : ndarray of int64
        Source features to measure (all target features are measured).
    top_contexts : int
        Contexts kept per feature.
    ignore : sequence of int
        Token ids left out of every statistic (special tokens).
    progress : tqdm bar, optional
        Advanced by the tokens read.

    Memory on the model's device: two ``(len(source_ids), d_sae_target)`` float64 matrices (one
    per split), plus one batch of activations.
    """
    from semot.collection.models import require_torch

    torch = require_torch()
    dev = runner.device
    n_sub, n_tgt = len(source_ids), int(target_site.d_sae)
    splits = (PearsonSums(n_sub, n_tgt, dev), PearsonSums(n_sub, n_tgt, dev))
    ctx_s, ctx_t = TopContexts(n_sub, top_contexts), TopContexts(n_tgt, top_contexts)
    sub = torch.as_tensor(source_ids, device=dev)
    ignored = np.asarray(sorted(ignore), dtype=np.int64)
    hooks = [source_site.hook, target_site.hook]
    n_tokens = n_read = n_seq = 0
    for batch in batches:
        b, length = batch.tokens.shape
        with torch.no_grad():
            hidden = runner.run(torch.as_tensor(batch.tokens, device=dev), hooks)
            keep = ~np.isin(batch.tokens.reshape(-1), ignored)
            seq = np.repeat(np.arange(batch.first_seq, batch.first_seq + b), length)[keep]
            pos = np.tile(np.arange(length), b)[keep]
            rows = torch.as_tensor(np.flatnonzero(keep), device=dev)
            acts = []
            for site in (source_site, target_site):
                h = hidden[site.hook]
                if h.shape[-1] != site.d_in:
                    raise ValueError(
                        f"site {site.name!r}: hook {site.hook!r} gives width {h.shape[-1]} but "
                        f"its SAE reads d_in = {site.d_in}"
                    )
                a = site.encode(h.reshape(b * length, -1)[rows])
                if a.shape[-1] != site.d_sae:
                    raise ValueError(
                        f"site {site.name!r}: its encoder gives {a.shape[-1]} features, "
                        f"expected d_sae = {site.d_sae}"
                    )
                acts.append(a)
            xs = acts[0].index_select(1, sub)
            yt = acts[1]
            part = torch.as_tensor(split_of(seq), device=dev)
            for s, sums in enumerate(splits):
                mask = part == s
                sums.update(xs[mask], yt[mask])
            keys = context_key(seq, pos)
            ctx_s.update(xs, keys)
            ctx_t.update(yt, keys)
        n_tokens += int(keep.sum())
        n_read += int(b * length)
        n_seq += int(b)
        if progress is not None:
            progress.update(int(b * length))
    if n_read == 0:
        raise ValueError("tokens: the token source is empty")
    return ActivationStats(
        np.asarray(source_ids, dtype=np.int64), n_tgt, splits, ctx_s, ctx_t, n_tokens, n_read, n_seq
    )
