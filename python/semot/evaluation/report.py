"""The silver standard, the metrics of each method against it, and the report.

The silver standard of a source feature is the target feature whose activations correlate
best with it (Pearson over held-out split A). A method is scored on the sources whose silver
correlation passes a threshold: how often its first target is the silver one (top-1), how
often the silver one is among its first five (top-5), the split-A correlation of its first
target, and how many top-activating contexts that target shares with the source (Jaccard).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot._utils.atomic import atomic_write_text
from semot._utils.jsonvalues import json_ready
from semot.evaluation.methods import TOP, Ranking
from semot.evaluation.stats import EMPTY_KEY

__all__ = [
    "SILVER",
    "TABLE_COLUMNS",
    "EvaluationResult",
    "SilverStandard",
    "context_overlap",
    "method_rows",
    "silver_standard",
]

#: Name of the silver standard's own row in the table (its ceiling on r and context overlap).
SILVER = "silver-A"
TABLE_COLUMNS = [
    "method",
    "threshold",
    "n_sources",
    "top1",
    "top5",
    "mean_r",
    "context_jaccard",
]


@dataclass
class SilverStandard:
    """Per evaluated source: its best-correlated target on split A.

    Attributes
    ----------
    target : ndarray of int64
        Target id with the highest Pearson r (the lowest id among ties); -1 where the source
        was constant on split A (no correlation).
    r : ndarray of float64
        That correlation (NaN where undefined).
    """

    target: npt.NDArray[np.int64]
    r: npt.NDArray[np.float64]

    def kept(self, threshold: float) -> npt.NDArray[np.bool_]:
        """Return which sources have a silver correlation of at least ``threshold``."""
        out: npt.NDArray[np.bool_] = (self.target >= 0) & (
            np.nan_to_num(self.r, nan=-2.0) >= threshold
        )
        return out

    def many_to_one(self, threshold: float) -> float:
        """Return the fraction of kept sources whose silver target another kept source shares.

        NaN when no source is kept.
        """
        kept = self.kept(threshold)
        t = self.target[kept]
        if t.size == 0:
            return float("nan")
        _, inverse, counts = np.unique(t, return_inverse=True, return_counts=True)
        return float(np.mean(counts[inverse] > 1))


def silver_standard(
    corr_a: npt.NDArray[np.float64], varies: npt.NDArray[np.bool_]
) -> SilverStandard:
    """Return the silver standard from split A's r ``(n_sources, n_target)``.

    ``varies``: which sources took more than one value on split A (the others get none).
    """
    target = np.argmax(corr_a, axis=1).astype(np.int64)
    r = corr_a[np.arange(len(target)), target]
    target = np.where(varies, target, -1)
    return SilverStandard(target, np.where(varies, r, np.nan))


def context_overlap(
    source_keys: npt.NDArray[np.int64], target_keys: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Row-wise Jaccard index of two ``(n, k)`` context-key arrays; NaN where both rows are empty.

    Empty slots (:data:`~semot.evaluation.stats.EMPTY_KEY`) are not contexts.
    """
    out = np.full(len(source_keys), np.nan)
    for i, (a, b) in enumerate(zip(source_keys, target_keys, strict=True)):
        sa, sb = set(a[a != EMPTY_KEY].tolist()), set(b[b != EMPTY_KEY].tolist())
        union = len(sa | sb)
        if union:
            out[i] = len(sa & sb) / union
    return out


def _nanmean(x: npt.NDArray[np.float64]) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def method_rows(
    ranking: Ranking,
    silver: SilverStandard,
    corr_a: npt.NDArray[np.float64],
    source_keys: npt.NDArray[np.int64],
    target_keys: npt.NDArray[np.int64],
    thresholds: Sequence[float],
) -> list[dict[str, Any]]:
    """One row per threshold: a method's agreement with the silver standard.

    Over the kept sources the method covers (``n_sources``): ``top1`` = fraction whose first
    target is the silver target; ``top5`` = fraction with the silver target among the first
    :data:`~semot.evaluation.methods.TOP` (an unassigned source counts as a miss in both);
    ``mean_r`` = mean split-A Pearson r between source and first target; ``context_jaccard`` =
    mean Jaccard index of the two features' top-activating context sets (over sources with a
    first target and at least one context).
    """
    rows = []
    first = ranking.targets[:, 0]
    has = first >= 0
    idx = np.arange(len(first))
    r_first = np.where(has, corr_a[idx, np.maximum(first, 0)], np.nan)
    jac = np.full(len(first), np.nan)
    jac[has] = context_overlap(source_keys[has], target_keys[first[has]])
    for t in thresholds:
        sel = silver.kept(t) & ranking.covered
        n = int(sel.sum())
        hit1 = ranking.targets[sel, 0] == silver.target[sel]
        hit5 = (ranking.targets[sel, :TOP] == silver.target[sel, None]).any(1)
        rows.append(
            {
                "method": ranking.method,
                "threshold": float(t),
                "n_sources": n,
                "top1": float(hit1.mean()) if n else float("nan"),
                "top5": float(hit5.mean()) if n else float("nan"),
                "mean_r": _nanmean(r_first[sel]),
                "context_jaccard": _nanmean(jac[sel]),
            }
        )
    return rows


@dataclass
class EvaluationResult:
    """What :func:`semot.evaluation.evaluate` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (method, threshold): columns :data:`TABLE_COLUMNS` and ``note``; the
        first rows (``method == "silver-A"``) are the silver standard itself (top-1 = 1 by
        definition; its r and context overlap are the ceiling).
    silver : pandas.DataFrame
        Per threshold: ``n_kept`` sources, ``n_defined`` (sources that varied on split A) and
        ``many_to_one`` (fraction of kept sources sharing their silver target).
    rankings : dict of str to Ranking
        Each method's top targets per evaluated source.
    silver_standard : SilverStandard
    source_ids : ndarray of int64
        The evaluated sources.
    info : dict
        Token counts, sites, sizes: recorded in the JSON report.
    """

    table: Any
    silver: Any
    rankings: dict[str, Ranking]
    silver_standard: SilverStandard
    source_ids: npt.NDArray[np.int64]
    info: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        """Return the table as text, with the silver standard's counts and each method's note."""
        lines = [
            f"semot evaluate: {self.info.get('source_site')} -> {self.info.get('target_site')}, "
            f"{len(self.source_ids)} sources, {self.info.get('n_tokens')} held-out tokens "
            f"(split A {self.info.get('n_tokens_a')}, split B {self.info.get('n_tokens_b')})",
        ]
        for row in self.silver.itertuples(index=False):
            lines.append(
                f"  silver r >= {row.threshold:g}: {row.n_kept} of {row.n_defined} sources kept, "
                f"{_pct(row.many_to_one)} share their best target with another (many-to-one)"
            )
        shown = self.table[TABLE_COLUMNS]
        lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        seconds = self.info.get("seconds", {})
        if "token_pass" in seconds:
            lines.append(f"  token pass: {seconds['token_pass']:.1f} s")
        for row in self.table.drop_duplicates("method").itertuples(index=False):
            took = seconds.get(row.method)
            parts = [row.note] if row.note else []
            if took is not None and not math.isnan(took):
                parts.append(f"{took:.1f} s")
            if parts:
                lines.append(f"  {row.method}: {', '.join(parts)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report: ``info``, ``silver`` and ``table`` as lists of records."""
        out: dict[str, Any] = json_ready(
            {
                "info": self.info,
                "silver": self.silver.to_dict(orient="records"),
                "table": self.table.to_dict(orient="records"),
            }
        )
        return out

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path`` (atomically; NaN is written as null)."""
        p = Path(path)
        atomic_write_text(p, json.dumps(self.to_dict(), indent=1) + "\n")
        return p

    def plot(self, path: str | Path) -> Path:
        """Plot top-1 agreement per method (bars) per threshold (groups) to ``path`` (PNG)."""
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt

        p = Path(path)
        t = self.table[self.table["method"] != SILVER]
        methods = list(dict.fromkeys(t["method"]))
        thresholds = sorted(set(t["threshold"]))
        width = 0.8 / max(len(methods), 1)
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(thresholds) + 3), 4))
        x = np.arange(len(thresholds))
        for i, m in enumerate(methods):
            sub = t[t["method"] == m].set_index("threshold")
            y = [float(sub.loc[th, "top1"]) if th in sub.index else np.nan for th in thresholds]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, np.nan_to_num(y), width, label=m)
        n_kept = dict(zip(self.silver["threshold"], self.silver["n_kept"], strict=True))
        ax.set_xticks(x, [f"r >= {th:g}\n(n = {n_kept.get(th, 0)})" for th in thresholds])
        ax.set_ylim(0, 1)
        ax.set_ylabel("top-1 agreement with the silver standard")
        ax.set_title(
            f"{self.info.get('source_site')} -> {self.info.get('target_site')}: "
            "is the match the best-correlated target?"
        )
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        return p


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f} %"
