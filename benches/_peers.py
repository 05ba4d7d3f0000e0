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
    """Exact SW_p for one pair from project_sort outputs, vectorised over directions."""
    (xv, xc), (yv, yc) = sx, sy
    levels = np.sort(np.concatenate([xc, yc], axis=1), axis=1)
    lo = np.concatenate([np.zeros((levels.shape[0], 1)), levels[:, :-1]], axis=1)
    mid = (lo + levels) / 2
    ix = np.minimum(
        np.array([np.searchsorted(c, m) for c, m in zip(xc, mid, strict=True)]), xv.shape[1] - 1
    )
    iy = np.minimum(
        np.array([np.searchsorted(c, m) for c, m in zip(yc, mid, strict=True)]), yv.shape[1] - 1
    )
    diff = np.take_along_axis(xv, ix, 1) - np.take_along_axis(yv, iy, 1)
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
