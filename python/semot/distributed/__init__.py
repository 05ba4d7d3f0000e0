"""Block-wise distances and matching on a Dask cluster (the extra ``semot[distributed]``)."""

from semot.distributed.core import (
    TopK,
    match,
    sinkhorn_cdist,
    sliced_wasserstein_cdist,
    smallest_k,
)
from semot.errors import SchedulerUnavailableError

__all__ = [
    "SchedulerUnavailableError",
    "TopK",
    "match",
    "sinkhorn_cdist",
    "sliced_wasserstein_cdist",
    "smallest_k",
]
