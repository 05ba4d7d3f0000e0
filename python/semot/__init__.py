"""semot: semantic optimal transport between sparse-autoencoder features.

Distances between features represented as weighted point clouds (the hidden states where a
feature fires, weighted by its activation): exact sliced Wasserstein and entropic (Sinkhorn)
distances in bulk from a Rust core, plus union-find merging. ``import semot`` imports only
numpy; the torch-based collection code lives in optional submodules.
"""

from typing import Any

from semot._core import __version__
from semot.clouds import PointClouds
from semot.distributions import CorruptFileError, FeatureDistributions
from semot.linkage import MergeTree, connected_components, merge_by_threshold, single_linkage
from semot.matching import chain, match
from semot.sampling import FeatureSampler
from semot.sinkhorn import (
    ConvergenceWarning,
    SinkhornInfo,
    sinkhorn_cdist,
    sinkhorn_distance,
    sinkhorn_pairs,
    sinkhorn_pdist,
)
from semot.sliced import (
    random_projections,
    sliced_quantile_embedding,
    sliced_wasserstein_cdist,
    sliced_wasserstein_distance,
    sliced_wasserstein_pairs,
    sliced_wasserstein_pdist,
    wasserstein_1d,
)

__all__ = [
    "ConvergenceWarning",
    "CorruptFileError",
    "FeatureDistributions",
    "FeatureSampler",
    "MergeTree",
    "PointClouds",
    "SinkhornInfo",
    "__version__",
    "chain",
    "collect",
    "connected_components",
    "match",
    "merge_by_threshold",
    "random_projections",
    "single_linkage",
    "sinkhorn_cdist",
    "sinkhorn_distance",
    "sinkhorn_pairs",
    "sinkhorn_pdist",
    "sliced_quantile_embedding",
    "sliced_wasserstein_cdist",
    "sliced_wasserstein_distance",
    "sliced_wasserstein_pairs",
    "sliced_wasserstein_pdist",
    "wasserstein_1d",
]


def __getattr__(name: str) -> Any:
    # `semot.collect` needs torch; import it only when asked for.
    if name == "collect":
        from semot.collection import collect

        return collect
    raise AttributeError(f"module 'semot' has no attribute {name!r}")
