"""Tables of the method study (:mod:`semot.bench.study`): markdown from its records."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BASELINES",
    "HEADLINE",
    "format_study",
    "headline",
    "margins",
    "study_frame",
    "summary_table",
]


def study_frame(report: dict[str, Any]) -> Any:
    """Return the study's records as a pandas DataFrame (one row per measurement)."""
    import pandas as pd

    return pd.DataFrame(report["records"])


def summary_table(
    report: dict[str, Any],
    *,
    silver: str = "correlation",
    threshold: float = 0.5,
    sample: str | None = None,
    geometries: list[str] | None = None,
    methods: list[str] | None = None,
    metric: str = "top1",
) -> Any:
    """Mean ``metric`` per (geometry, method) and hop count, with the spread over seeds.

    Pairs of the same hop count are averaged first within a seed; the cell is the mean over
    seeds and ``sd`` their standard deviation (0 with one seed).
    """
    frame = study_frame(report)
    plan = report["plan"]
    main = f"{plan['main']['mode']}-{plan['main']['samples_per_feature']}"
    f = frame[(frame["silver"] == silver) & ((frame["threshold"] - threshold).abs() < 1e-9)]
    f = f[f["sample"] == (sample or main)]
    if geometries is not None:
        f = f[f["geometry"].isin(geometries)]
    if methods is not None:
        f = f[f["method"].isin(methods)]
    per_seed = f.groupby(["geometry", "method", "hops", "seed"], sort=False)[metric].mean()
    stats = per_seed.groupby(["geometry", "method", "hops"], sort=False).agg(
        ["mean", "std", "count"]
    )
    return stats.reset_index()


def _lookup(table: Any, geometry: str, method: str, hops: int) -> Any:
    """Return the row of ``table`` (:func:`summary_table`) of one cell (empty: not measured)."""
    return table[
        (table["geometry"] == geometry) & (table["method"] == method) & (table["hops"] == hops)
    ]


def _cell(mean: float, sd: float, count: int) -> str:
    if mean != mean:
        return "n/a"
    if count > 1 and sd == sd:
        return f"{mean:.3f} ± {sd:.3f}"
    return f"{mean:.3f}"


def _markdown(table: Any, title: str) -> list[str]:
    hops = sorted(table["hops"].unique())
    lines = [
        f"### {title}",
        "",
        "| geometry | method | "
        + " | ".join(f"{h} hop{'s' if h > 1 else ''}" for h in hops)
        + " |",
        "|---|---|" + "---|" * len(hops),
    ]
    keys = list(dict.fromkeys(zip(table["geometry"], table["method"], strict=True)))
    for geo, method in keys:
        cells = []
        for h in hops:
            r = _lookup(table, geo, method, h)
            if r.empty:
                cells.append("n/a")
            else:
                cells.append(
                    _cell(
                        float(r["mean"].iloc[0]), float(r["std"].iloc[0]), int(r["count"].iloc[0])
                    )
                )
        lines.append(f"| {geo} | {method} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def format_study(report: dict[str, Any]) -> str:
    """Markdown: the geometry x method table on both silver standards, then the other switches."""
    cfg = report["config"]
    plan = report["plan"]
    lines = [
        f"## Method study: {cfg['model']}, sites after blocks {list(cfg['layers'])}, TopK SAEs "
        f"d_sae={cfg['d_sae']} k={cfg['k']}; seeds {list(plan['seeds'])}; {report['date']}",
        "",
        "Top-1 agreement with the silver target, mean ± sd over seeds (pairs of one hop count "
        "averaged first).",
        "",
    ]
    for pair in report["pairs"]:
        lines.append(
            f"- layer {pair['source']} -> {pair['target']} ({pair['hops']} hops): "
            + ", ".join(f"{k[7:]}={v}" for k, v in pair.items() if k.startswith("n_silver"))
            + f"; the two silver standards agree on {pair['silver_agreement']:.2f} of sources"
        )
    lines.append("")
    lines += ["### Headline (correlation silver r >= 0.5)", "", headline(report), ""]
    lines += ["### Headline (context silver Jaccard >= 0.1)", "",
              headline(report, silver="context", threshold=0.1), ""]  # fmt: skip
    main_geos = [g["name"] for g in (*plan["geometries"], *plan["single_seed_geometries"])]
    lines += _markdown(summary_table(report, geometries=main_geos), "Correlation silver (r >= 0.5)")
    lines += _markdown(
        summary_table(report, silver="context", threshold=0.1, geometries=main_geos),
        "Context silver (Jaccard >= 0.1)",
    )
    others = [
        s for s in dict.fromkeys(r["sample"] for r in report["records"])
        if s != f"{plan['main']['mode']}-{plan['main']['samples_per_feature']}"
    ]  # fmt: skip
    for s in others:
        lines += _markdown(
            summary_table(report, sample=s), f"Sample {s} (correlation silver r >= 0.5)"
        )
    return "\n".join(lines)


#: The rows of the headline table: (label, geometry, method).
HEADLINE = (
    ("**semot default**: centroid, whitened space", "whiten-128", "centroid"),
    ("semot joint: centroid rank + decoder rank", "whiten-128", "joint-centroid"),
    ("sliced W2 (128 directions), whitened", "whiten-128", "sliced"),
    ("sliced W2, 512 directions, whitened (seed 0)", "whiten-128", "sliced-512"),
    ("Gaussian: sliced, first two moments only", "whiten-128", "sliced-gaussian"),
    ("centroid, raw hidden states", "raw", "centroid"),
    ("sliced W2, standardized (previous default)", "standardize", "sliced"),
    ("decoder cosine", "whiten-128", "decoder-cosine"),
    ("token identity of the firings", "whiten-128", "token"),
    ("activation correlation, split B (ceiling)", "whiten-128", "activation-corr-B"),
)


def headline(report: dict[str, Any], *, silver: str = "correlation", threshold: float = 0.5) -> str:
    """Markdown: the chosen default against the baselines by hop count, mean ± sd over seeds."""
    table = summary_table(report, silver=silver, threshold=threshold)
    hops = sorted(table["hops"].unique())
    lines = [
        "| method | " + " | ".join(f"{h} hop{'s' if h > 1 else ''}" for h in hops) + " |",
        "|---|" + "---|" * len(hops),
    ]
    for label, geo, method in HEADLINE:
        cells = []
        for h in hops:
            r = _lookup(table, geo, method, h)
            cells.append(
                "n/a"
                if r.empty
                else _cell(
                    float(r["mean"].iloc[0]), float(r["std"].iloc[0]), int(r["count"].iloc[0])
                )
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Baselines the default is compared with in :func:`margins`: (label, geometry, method).
BASELINES = (
    ("sliced W2 (whitened)", "whiten-128", "sliced"),
    ("Gaussian (whitened)", "whiten-128", "sliced-gaussian"),
    ("centroid of raw states", "raw", "centroid"),
    ("previous default (sliced, standardized)", "standardize", "sliced"),
    ("decoder cosine", "whiten-128", "decoder-cosine"),
)


def margins(
    report: dict[str, Any],
    *,
    default: tuple[str, str] = ("whiten-128", "centroid"),
    silver: str = "correlation",
    threshold: float = 0.5,
) -> list[str]:
    """Markdown rows: top-1 of ``default`` minus each of :data:`BASELINES`, by hop count."""
    table = summary_table(report, silver=silver, threshold=threshold)
    hops = sorted(table["hops"].unique())

    def mean(geo: str, method: str, h: int) -> float:
        r = _lookup(table, geo, method, h)
        return float(r["mean"].iloc[0]) if not r.empty else float("nan")

    rows = []
    for label, geo, method in BASELINES:
        cells = [f"{mean(*default, h) - mean(geo, method, h):+.3f}" for h in hops]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows
