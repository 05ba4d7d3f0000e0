"""A flat table of matched feature pairs that other feature tools can join on.

SAEDashboard and Neuronpedia identify a feature by model, SAE (layer / hook) and feature
index; :func:`feature_pairs` writes one row per (source feature, candidate target) of every
match frame with exactly those keys on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semot.browser.inputs import MatchFrame, site_layer
from semot.browser.records import TargetRows
from semot.features.container import FeatureDistributions

__all__ = ["PAIR_COLUMNS", "feature_pairs"]

#: Columns of :func:`feature_pairs`, in order.
PAIR_COLUMNS = [
    "model",
    "source_site",
    "source_hook",
    "source_sae",
    "source_layer",
    "source_feature",
    "target_site",
    "target_hook",
    "target_sae",
    "target_layer",
    "target_feature",
    "rank",
    "distance",
    "margin",
    "matched",
]


def _sae_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, sort_keys=True, default=str)


def feature_pairs(sites: Mapping[str, FeatureDistributions], frames: Sequence[MatchFrame]) -> Any:
    """One row per (source feature, candidate target) of every frame, with join keys.

    Columns (:data:`PAIR_COLUMNS`):

    - ``model``: the source site's ``metadata["model"]`` (the model name the run recorded);
    - ``source_site`` / ``target_site``: site names in the run (``layer3``, ``blocks.6...``);
    - ``source_hook`` / ``target_hook``: the hook the SAE reads (``metadata["hook"]``, e.g.
      ``blocks.6.hook_resid_pre``), what SAEDashboard and sae-lens call ``hook_name``;
    - ``source_sae`` / ``target_sae``: the SAE's identity as recorded (``metadata["sae"]``:
      a sae-lens release and id, or a path; JSON text when it is structured);
    - ``source_layer`` / ``target_layer``: layer number (from the metadata or the hook name;
      <NA> when neither says), the layer of a Neuronpedia source id such as ``6-res-jb``;
    - ``source_feature`` / ``target_feature``: the feature index in its SAE (the SAE latent,
      Neuronpedia's ``index``);
    - ``rank``: 1 for the best target of the source;
    - ``distance``: the distance the match computed (sliced W2 by default);
    - ``margin``: ``1 - d1 / d2`` of the source (the same on each of its rows): its best
      over its second-best distance, the largest ``margin=`` it passes; NaN with one target;
    - ``matched``: whether the row passed the frame's "no match" rules (rank-1 rows only).

    Rows with no target (one-to-one, unassigned) are left out.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    parts = []
    for mf in frames:
        f = mf.frame[mf.frame["target"].notna()]
        s_fd, t_fd = sites[mf.source], sites[mf.target]
        margins = TargetRows(mf.frame, 2, digits=17).margin
        src = np.asarray(f["source"], np.int64)
        n = len(f)
        s_layer, t_layer = site_layer(s_fd, mf.source), site_layer(t_fd, mf.target)
        parts.append(
            pd.DataFrame(
                {
                    "model": [str(s_fd.metadata.get("model", ""))] * n,
                    "source_site": [mf.source] * n,
                    "source_hook": [str(s_fd.metadata.get("hook", ""))] * n,
                    "source_sae": [_sae_text(s_fd.metadata.get("sae"))] * n,
                    "source_layer": pd.array([s_layer] * n, dtype="Int64"),
                    "source_feature": src,
                    "target_site": [mf.target] * n,
                    "target_hook": [str(t_fd.metadata.get("hook", ""))] * n,
                    "target_sae": [_sae_text(t_fd.metadata.get("sae"))] * n,
                    "target_layer": pd.array([t_layer] * n, dtype="Int64"),
                    "target_feature": np.asarray(f["target"].astype("int64"), np.int64),
                    "rank": np.asarray(f["rank"], np.int64),
                    "distance": np.asarray(f["distance"], np.float64),
                    "margin": np.array(
                        [np.nan if margins.get(int(s)) is None else margins[int(s)] for s in src],
                        np.float64,
                    ),
                    "matched": np.asarray(f["matched"], bool),
                },
                columns=PAIR_COLUMNS,
            )
        )
    if not parts:
        return pd.DataFrame({c: [] for c in PAIR_COLUMNS}, columns=PAIR_COLUMNS)
    return pd.concat(parts, ignore_index=True)
