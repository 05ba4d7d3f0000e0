"""Human-readable text about a :class:`~semot.features.container.FeatureDistributions`.

The multi-line summary that ``semot info DIR`` prints, the one-line repr, and the small
formatters they use (shortened JSON, quantiles, byte sizes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from semot.features.container import FeatureDistributions

__all__ = ["human_bytes", "quantiles_text", "repr_text", "short_json", "summary_text"]


def short_json(value: Any, limit: int = 100) -> str:
    """``value`` as text (a string as is, anything else as sorted JSON), cut to ``limit`` chars.

    A cut text ends with ``...`` and is exactly ``limit`` characters long.
    """
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quantiles_text(values: npt.NDArray[Any], fmt: str) -> str:
    """Minimum, quartiles and maximum of ``values`` (numpy's linear quantiles), or ``n/a``.

    Each number is written with the format spec ``fmt`` (such as ``".3g"``).
    """
    if values.size == 0:
        return "n/a"
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return "min {} | q25 {} | median {} | q75 {} | max {}".format(*(format(x, fmt) for x in q))


def human_bytes(n: int) -> str:
    """``n`` bytes in binary units: ``"512 B"``, ``"1.5 KiB"``, ... up to GiB (one decimal)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def summary_text(
    fd: FeatureDistributions, source: Path | None, disk: tuple[int, int] | None
) -> str:
    """Return the text of :meth:`FeatureDistributions.summary`.

    Parameters
    ----------
    fd : FeatureDistributions
        What to describe (read through its public properties only).
    source : Path, optional
        The directory it was loaded from, None for an object in memory.
    disk : tuple of (int, int), optional
        Bytes on disk and number of files of that directory, None when not loaded.
    """
    md = fd.metadata

    def pick(*names: str) -> str:
        values = [short_json(md[k]) for k in names if md.get(k) is not None]
        return " / ".join(values) if values else "?"

    n, n_fired = len(fd), int(fd.fired.sum())
    n_tokens = fd.n_tokens
    sampling = md.get("sampling")
    if isinstance(sampling, Mapping):
        # collect() records the sample size as samples_per_feature, older writers as n.
        size = sampling.get("samples_per_feature", sampling.get("n", "?"))
        extra = {k: v for k, v in sampling.items() if k not in ("mode", "n", "samples_per_feature")}
        sampling_text = f"mode {sampling.get('mode', '?')}, n = {size}"
        if extra:
            sampling_text += f" ({short_json(extra, 60)})"
    else:
        sampling_text = "?" if sampling is None else short_json(sampling)
    reference_text = "?" if md.get("reference") is None else short_json(md["reference"])
    reference = fd.reference_arrays
    if reference is not None:
        names = ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(reference.items()))
        reference_text += f"; arrays: {short_json(names, 80) if names else 'none'}"
    pct = f" ({100.0 * n_fired / n:.1f} %)" if n else ""
    if n_tokens is not None and n_tokens > 0:
        dens = fd.densities[fd.fired]
        density_text = quantiles_text(dens, ".3g") + " (fired features)"
    else:
        density_text = "unknown (no n_tokens)" if n_tokens is None else "n/a"
    lines = [
        "semot FeatureDistributions" + (f" at {source}" if source is not None else " (in memory)"),
        f"  model:        {pick('model', 'model_name')}",
        f"  hook:         {pick('hook', 'hook_name')}",
        f"  SAE:          {pick('sae', 'sae_release', 'sae_id')}",
        f"  features:     {n:,}, fired: {n_fired:,}{pct}",
        f"  tokens:       {'?' if n_tokens is None else f'{n_tokens:,}'}",
        f"  sampling:     {sampling_text}",
        f"  reference:    {reference_text}",
        f"  dim:          {fd.dim}",
        f"  points:       {fd.n_points:,}",
        f"  sample sizes: {quantiles_text(fd.sample_sizes, '.0f')}",
        f"  densities:    {density_text}",
    ]
    if disk is not None:
        n_bytes, n_files = disk
        lines.append(f"  disk:         {human_bytes(n_bytes)} in {n_files} files")
    return "\n".join(lines)


def repr_text(fd: FeatureDistributions, source: Path | None) -> str:
    """Return the one-line repr: sizes, and the directory it was loaded from if any."""
    where = f", path='{source}'" if source is not None else ""
    return (
        f"FeatureDistributions(n_features={len(fd)}, fired={int(fd.fired.sum())}, "
        f"dim={fd.dim}, n_points={fd.n_points}{where})"
    )
