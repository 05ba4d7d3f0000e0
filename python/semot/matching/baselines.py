"""Baselines for cross-layer feature matching, with the output format of :func:`semot.match`.

- :func:`decoder_cosine_match`: cosine similarity of decoder directions (Feature Flow style).
- :func:`sae_match`: SAE Match style; each SAE's activation threshold (JumpReLU) or scale is
  folded into its encoder and decoder, then a one-to-one assignment minimises the squared
  error between the folded parameters.
- :func:`activation_correlation_match`: Pearson correlation of feature activations over the
  same tokens.
- :func:`centroid_match`: Euclidean distance between activation-weighted mean support points
  (the first moment of the distributions semot compares in full).

Each returns a :class:`pandas.DataFrame` with columns ``source``, ``target``, ``rank``,
``distance``, ``matched``; "distance" is ``1 - cosine``, the folded squared error,
``1 - r`` and the centroid distance respectively.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from semot.matching.frame import Assignment, Threshold, matches_from_distances
from semot.matching.sets import centroids, feature_set, unit_rows


def _np(x: Any, name: str, ndim: int) -> npt.NDArray[np.float64]:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains non-finite values")
    return arr


def decoder_cosine_match(
    source_decoder: Any,
    target_decoder: Any,
    *,
    k: int = 5,
    assignment: Assignment = "nearest",
    threshold: Threshold = None,
    margin: float | None = None,
) -> Any:
    """Match by cosine similarity of decoder rows; distance ``1 - cos(W_dec_s[i], W_dec_t[j])``.

    Parameters
    ----------
    source_decoder, target_decoder : array, shape (n_features, d_model)
        Decoder matrices (sae-lens ``W_dec``), rows are feature directions.
    k, assignment, threshold, margin
        As in :func:`semot.match`.
    """
    ds = unit_rows(_np(source_decoder, "source_decoder", 2))
    dt = unit_rows(_np(target_decoder, "target_decoder", 2))
    if ds.shape[1] != dt.shape[1]:
        raise ValueError(
            f"decoders have different widths ({ds.shape[1]} vs {dt.shape[1]}): decoder cosine "
            "needs both SAEs in one space"
        )
    return matches_from_distances(
        1.0 - ds @ dt.T, k=k, assignment=assignment, threshold=threshold, margin=margin
    )


def fold_sae(
    W_enc: Any, b_enc: Any, W_dec: Any, threshold: Any = None, scale: Any = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Fold per-feature activation thresholds / scales into an SAE's parameters.

    With ``t_i`` the threshold (JumpReLU) of feature i, or else its ``scale``, or else the norm
    of its decoder row, returns ``W_enc[:, i] / t_i``, ``b_enc[i] / t_i`` and
    ``W_dec[i] * t_i``: the same SAE function, with every feature firing at activation 1 on
    the same scale, so parameters of two SAEs become comparable.
    """
    we = _np(W_enc, "W_enc", 2)
    be = _np(b_enc, "b_enc", 1)
    wd = _np(W_dec, "W_dec", 2)
    f = wd.shape[0]
    if we.shape[1] != f or be.shape[0] != f:
        raise ValueError(
            f"W_enc {we.shape}, b_enc {be.shape} and W_dec {wd.shape} disagree on the number "
            "of features"
        )
    if threshold is not None and np.any(_np(threshold, "threshold", 1) > 0):
        t = _np(threshold, "threshold", 1)
    elif scale is not None:
        t = _np(scale, "scale", 1)
    else:
        t = np.linalg.norm(wd, axis=1)
    if t.shape != (f,) or np.any(t <= 0):
        raise ValueError("threshold/scale: need one positive value per feature")
    return we / t[None, :], be / t, wd * t[:, None]


def sae_match(source: dict[str, Any], target: dict[str, Any], *, k: int = 1) -> Any:
    """SAE Match style one-to-one matching of two SAEs by their folded parameters.

    Parameters
    ----------
    source, target : dict
        ``W_enc`` (d, F), ``b_enc`` (F,), ``W_dec`` (F, d) and optionally ``threshold`` or
        ``scale`` (F,) (a sae-lens SAE's ``state_dict()`` works).

    Returns
    -------
    pandas.DataFrame
        One row per source feature; distance = ``||W_dec'_s[i] - W_dec'_t[j]||^2 +
        ||W_enc'_s[:, i] - W_enc'_t[:, j]||^2`` over the folded parameters, minimised in total
        by a one-to-one assignment.
    """
    del k
    es, _, ds = fold_sae(**_sae_params(source, "source"))
    et, _, dt = fold_sae(**_sae_params(target, "target"))
    if ds.shape[1] != dt.shape[1]:
        raise ValueError("SAEs of different widths cannot be compared parameter-wise")
    cost = _sq_dists(ds, dt) + _sq_dists(es.T, et.T)
    return matches_from_distances(cost, assignment="one-to-one")


def _sae_params(p: dict[str, Any], name: str) -> dict[str, Any]:
    if hasattr(p, "state_dict"):
        p = dict(p.state_dict())
    missing = [key for key in ("W_enc", "b_enc", "W_dec") if key not in p]
    if missing:
        raise ValueError(f"{name}: missing SAE parameters {missing}")
    return {key: p[key] for key in ("W_enc", "b_enc", "W_dec", "threshold", "scale") if key in p}


def _sq_dists(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    d: npt.NDArray[np.float64] = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def activation_correlation_match(
    source_activations: Any,
    target_activations: Any,
    *,
    k: int = 5,
    assignment: Assignment = "nearest",
    threshold: Threshold = None,
    margin: float | None = None,
) -> Any:
    """Match by Pearson correlation of activations on the same tokens; distance ``1 - r``.

    Parameters
    ----------
    source_activations, target_activations : array, shape (n_tokens, n_features)
        Activations of both SAEs on the same token positions, row for row. A feature that
        is constant over the tokens has no correlation: its distance to everything is 1.
    """
    a = _np(source_activations, "source_activations", 2)
    b = _np(target_activations, "target_activations", 2)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"activations: need the same tokens on both sides, got {a.shape[0]} and "
            f"{b.shape[0]} rows"
        )
    if a.shape[0] < 2:
        raise ValueError("activations: need at least 2 tokens")
    a = a - a.mean(0)
    b = b - b.mean(0)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    r = (a.T @ b) / np.maximum(na[:, None] * nb[None, :], 1e-300)
    r[(na == 0)[:, None] | (nb == 0)[None, :]] = 0.0
    return matches_from_distances(
        1.0 - r, k=k, assignment=assignment, threshold=threshold, margin=margin
    )


def centroid_match(
    source: Any,
    target: Any,
    *,
    k: int = 5,
    assignment: Assignment = "nearest",
    threshold: Threshold = None,
    margin: float | None = None,
) -> Any:
    """Match by the Euclidean distance between activation-weighted centroids.

    ``distance = || sum_i a_i x_i - sum_j b_j y_j ||`` for the two clouds' (normalised)
    weights: the first-moment summary of the distributions :func:`semot.match` compares.
    """
    src, tgt = feature_set(source, "source"), feature_set(target, "target")
    cs, ct = centroids(src.clouds), centroids(tgt.clouds)
    if cs.shape[1] != ct.shape[1]:
        raise ValueError("source and target live in different spaces")
    d = np.sqrt(_sq_dists(cs, ct))
    return matches_from_distances(
        d, src.ids, tgt.ids, k=k, assignment=assignment, threshold=threshold, margin=margin
    )
