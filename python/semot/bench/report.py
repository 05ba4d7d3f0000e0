"""PNG plots and JSON of the planted benchmark (``semot demo``, ``semot bench-match``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from semot._utils.jsonvalues import json_ready


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_distance(results: Any, path: Path) -> Path:
    """Top-1 accuracy against layer distance, one line per method, one panel per token mode."""
    plt = _plt()
    modes = list(dict.fromkeys(results["tokens"]))
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        sub = results[results["tokens"] == mode]
        mean = sub.groupby(["method", "layer_distance"], sort=False)["top1"].mean().unstack()
        for method, row in mean.iterrows():
            style = "-o" if str(method).startswith("semot") else "--s"
            ax.plot(row.index, row.to_numpy(), style, label=method, lw=2 if style == "-o" else 1)
        ax.set_title(f"{'same tokens' if mode == 'same' else 'disjoint token streams'}")
        ax.set_xlabel("layer distance (source layer 0)")
        ax.set_ylabel("top-1 accuracy")
        ax.set_ylim(0, 1.02)
        ax.set_xticks(sorted(set(sub["layer_distance"])))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Planted features: does each method find the true target?")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sample_size(curve: Any, path: Path) -> Path:
    """Top-1 accuracy against samples per feature (all features and shape pairs)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, col, title in (
        (axes[0], "top1", "all features"),
        (axes[1], "top1_shape_pairs", "shape pairs (equal means, different shapes)"),
    ):
        mean = curve.groupby(["method", "samples_per_feature"], sort=False)[col].mean().unstack()
        for method, row in mean.iterrows():
            ax.plot(row.index, row.to_numpy(), "-o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("samples per feature n")
        ax.set_ylabel("top-1 accuracy")
        ax.set_ylim(0, 1.02)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(distances: Any, title: str, path: Path) -> Path:
    """Plot a distance matrix: rows = source features, columns = their true targets."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    im = ax.imshow(distances, cmap="viridis_r", aspect="auto")
    ax.set_xlabel("target feature (true target of row i at column i)")
    ax.set_ylabel("source feature")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="sliced W2")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_examples(examples: list[dict[str, Any]], path: Path) -> Path:
    """Support points of a few source features and their candidate targets (2-D PCA)."""
    plt = _plt()
    n = len(examples)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False)
    for ax, ex in zip(axes[0], examples, strict=True):
        clouds = ex["clouds"]  # list of (label, points)
        allp = np.concatenate([p for _, p in clouds])
        mu = allp.mean(0)
        _, _, vt = np.linalg.svd(allp - mu, full_matrices=False)
        for (label, pts), marker in zip(clouds, ("o", "^", "x", "s"), strict=False):
            xy = (pts - mu) @ vt[:2].T
            ax.scatter(xy[:, 0], xy[:, 1], s=14, marker=marker, alpha=0.6, label=label)
        ax.set_title(ex["title"], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7)
    fig.suptitle("Contexts (support points, PCA) of source features and their matches")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as JSON (NaN becomes null, numpy scalars become numbers)."""
    path.write_text(json.dumps(json_ready(obj), indent=2) + "\n")
    return path
