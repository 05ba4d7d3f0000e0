"""Plain reference implementations used as peers in the benchmarks (not part of semot)."""

from __future__ import annotations

import numpy as np


def project_sort(clouds, proj):
    """Project and sort every cloud once: values (L, n) and cumulative weights (L, n)."""
    out = []
    for pts, w in clouds:
        xp = (pts @ proj).T  # (L, n)
        order = np.argsort(xp, axis=1)
        vals = np.take_along_axis(xp, order, axis=1)
        cum = np.cumsum(w[order], axis=1) / w.sum()
        cum[:, -1] = 1.0
        out.append((vals, cum))
    return out


def numpy_pair(sx, sy, p=2.0):
    """Exact SW_p for one pair from ``project_sort`` outputs, vectorised over directions.

    Each direction's cumulative weights are shifted by ``2 * l`` so that one flat
    ``searchsorted`` locates every merged level in every direction at once. (Batching many
    pairs into one call was slower here: the arrays outgrow the caches.)
    """
    (xv, xc), (yv, yc) = sx, sy
    n_dirs, n = xc.shape
    m = yc.shape[1]
    rows = np.arange(n_dirs)[:, None]
    levels = np.sort(np.concatenate([xc, yc], axis=1), axis=1)
    lo = np.concatenate([np.zeros((n_dirs, 1)), levels[:, :-1]], axis=1)
    mid = (lo + levels) / 2 + 2.0 * rows
    ix = np.searchsorted((xc + 2.0 * rows).ravel(), mid.ravel()).reshape(mid.shape) - n * rows
    iy = np.searchsorted((yc + 2.0 * rows).ravel(), mid.ravel()).reshape(mid.shape) - m * rows
    diff = np.take_along_axis(xv, np.minimum(ix, n - 1), 1) - np.take_along_axis(
        yv, np.minimum(iy, m - 1), 1
    )
    return float(np.mean(np.sum((levels - lo) * np.abs(diff) ** p, axis=1)) ** (1 / p))


def numpy_quantile_cdist(clouds_a, clouds_b, proj, n_quantiles):
    """Quantile path in plain numpy for uniform equal-size clouds: sort, embed, one GEMM."""

    def embed(cl):
        pts = np.stack([c[0] for c in cl])  # (N, n, d)
        xp = np.sort(pts @ proj, axis=1)  # (N, n, L)
        n = xp.shape[1]
        xp = xp.reshape(len(cl), n_quantiles, n // n_quantiles, -1).mean(axis=2)
        return xp.transpose(0, 2, 1).reshape(len(cl), -1) / np.sqrt(proj.shape[1] * n_quantiles)

    ea, eb = embed(clouds_a), embed(clouds_b)
    d2 = (ea**2).sum(1)[:, None] + (eb**2).sum(1)[None] - 2 * ea @ eb.T
    return np.sqrt(np.maximum(d2, 0))
