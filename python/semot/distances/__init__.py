"""Distances between weighted point clouds: sliced Wasserstein, Sinkhorn, projections.

The Rust kernels behind :mod:`semot._core`, with POT's argument names. The torch versions of
the quantile kernels live in :mod:`semot.distances.torch_kernels` (needs torch; not imported
here).
"""

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

__all__ = [
    "SinkhornInfo",
    "random_projections",
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
