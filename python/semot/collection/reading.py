"""One forward pass per batch: every site's feature activations and support points.

:class:`BatchReader` is the inner step of :func:`semot.collect`: it runs the model on a batch
of tokens once, encodes the hidden states at each site's hook with the site's SAE, zeroes the
activations at ignored token ids, and maps the reference map's input states to support
points, all on the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from semot.collection.models import HookedRunner, ModuleHooks, Site, require_torch
from semot.collection.reference import ReferenceMap
from semot.collection.tokens import TokenBatch


@dataclass
class BatchReading:
    """What one batch of tokens gives the samplers.

    Attributes
    ----------
    per_site : list of (activations, support points)
        Per site: float activations ``(B * L, n_features)`` (zero at ignored tokens) and the
        support points ``(B * L, dim)`` of the same positions.
    seq, pos : torch.Tensor
        Sequence index and position of every row.
    n_tokens : int
        Tokens read, ``B * L``.
    n_counted : int
        Tokens not ignored.
    sequences_end : int
        One more than the largest sequence index of the batch.
    """

    per_site: list[tuple[Any, Any]]
    seq: Any
    pos: Any
    n_tokens: int
    n_counted: int
    sequences_end: int


class BatchReader:
    """Runs the model on a batch and encodes it: activations and support points per site."""

    def __init__(
        self,
        runner: HookedRunner | ModuleHooks,
        hooks: Sequence[str],
        sites: Sequence[Site],
        refmap: ReferenceMap,
        ignore: Sequence[int],
        device: Any,
    ) -> None:
        self.torch = require_torch()
        self.runner = runner
        self.sites = sites
        self.refmap = refmap
        self.device = device
        self.hooks = list(hooks)
        self.feature_selections = [
            self.torch.as_tensor(s.feature_ids, device=device) if s.features is not None else None
            for s in sites
        ]
        self.ignore = (
            self.torch.as_tensor(list(ignore), dtype=self.torch.long, device=device)
            if ignore
            else None
        )

    def read(self, batch: TokenBatch, hidden: dict[str, Any] | None = None) -> BatchReading:
        """Forward ``batch`` once and encode every site's hidden states.

        ``hidden``: the hidden states of ``batch`` at (at least) the reader's hooks, from an
        earlier forward pass of the same model; the model is not run then.
        """
        torch = self.torch
        tokens = torch.as_tensor(batch.tokens, device=self.device)
        b, length = tokens.shape
        rows = b * length
        if hidden is None:
            hidden = self.runner.run(tokens, self.hooks)
        seq = (torch.arange(b, device=self.device) + batch.first_seq).repeat_interleave(length)
        pos = torch.arange(length, device=self.device).repeat(b)
        keep = None
        if self.ignore is not None:
            keep = ~torch.isin(tokens.reshape(-1), self.ignore)
        # Sites read in the same space from the same hook share their support points.
        points_by_source: dict[str, Any] = {}
        per_site = []
        for site, selection in zip(self.sites, self.feature_selections, strict=True):
            acts = self._encode(site, hidden[site.hook].reshape(rows, -1))
            if selection is not None:
                acts = acts[:, selection]
            if keep is not None:
                acts = acts * keep[:, None].to(acts.dtype)
            source = self.refmap.input_hook(site.hook)
            cache_key = source if self.refmap.spec.kind == "same-context" else site.hook
            if cache_key not in points_by_source:
                points_by_source[cache_key] = self.refmap.transform(
                    hidden[source].reshape(rows, -1), site.hook
                )
            per_site.append((acts.float(), points_by_source[cache_key]))
        return BatchReading(
            per_site=per_site,
            seq=seq,
            pos=pos,
            n_tokens=rows,
            n_counted=int(keep.sum()) if keep is not None else rows,
            sequences_end=batch.first_seq + b,
        )

    @staticmethod
    def _encode(site: Site, hidden: Any) -> Any:
        """Activations ``(T, d_sae)`` of hidden states ``(T, d)``, with their shapes checked."""
        if hidden.shape[-1] != site.d_in:
            raise ValueError(
                f"sae {site.name!r}: expects d_in={site.d_in} but hook {site.hook!r} gives "
                f"hidden states of width {hidden.shape[-1]}"
            )
        acts = site.encode(hidden)
        expected = (hidden.shape[0], site.d_sae)
        if acts.ndim != 2 or tuple(acts.shape) != expected:
            raise ValueError(
                f"sae {site.name!r}: encoder returned shape {tuple(acts.shape)}, "
                f"expected {expected}"
            )
        return acts
