"""semot: semantic optimal transport between sparse-autoencoder features.

Distances between features represented as weighted point clouds (the hidden states where a
feature fires, weighted by its activation): exact sliced Wasserstein and entropic (Sinkhorn)
distances in bulk from a Rust core, matching across layers, and union-find merging.

The package is laid out by pipeline stage (a lower layer never imports a higher one)::

    errors, _utils, clouds          exceptions, checks, PointClouds
    distances, grouping, features   sliced / Sinkhorn kernels, linkage, stored samples
    matching, circuits, collection, synthetic
    distributed                     the same work on a Dask cluster
    bench                           planted benchmark and the demo
    cli                             the ``semot`` command

``import semot`` imports numpy, scipy and the Rust core only; torch, dask and matplotlib are
imported by the functions that need them.
"""

from typing import Any

from semot import _compat
from semot._core import __version__
from semot.clouds import PointClouds
from semot.distances.sinkhorn import (
    SinkhornInfo,
    sinkhorn_cdist,
    sinkhorn_distance,
    sinkhorn_pairs,
    sinkhorn_pdist,
)
from semot.distances.sliced import (
    random_projections,
    sliced_quantile_embedding,
    sliced_wasserstein_cdist,
    sliced_wasserstein_distance,
    sliced_wasserstein_pairs,
    sliced_wasserstein_pdist,
    wasserstein_1d,
)
from semot.errors import ConvergenceWarning, CorruptFileError, SemotError, SemotWarning
from semot.features.container import FeatureDistributions
from semot.features.sampling import FeatureSampler
from semot.grouping.linkage import (
    MergeTree,
    connected_components,
    merge_by_threshold,
    single_linkage,
)
from semot.matching.matcher import chain, match

_compat.install()

__all__ = [
    "ConvergenceWarning",
    "CorruptFileError",
    "FeatureDistributions",
    "FeatureSampler",
    "MergeTree",
    "PointClouds",
    "SemotError",
    "SemotWarning",
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
        from semot.collection.run import collect

        return collect
    raise AttributeError(f"module 'semot' has no attribute {name!r}")
