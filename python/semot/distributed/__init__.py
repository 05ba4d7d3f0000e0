"""Block-wise distances and matching on a Dask cluster (the extra ``semot[distributed]``).

One job a module: :mod:`~semot.distributed.blocks` (block layouts, aligned with the Rust
kernels' own blocks), :mod:`~semot.distributed.kernels` (what a worker computes for one
block), :mod:`~semot.distributed.sinks` (outputs, resume records), :mod:`~semot.distributed.client`
(connection, scattering, the run loop), :mod:`~semot.distributed.cdist` (the all-pairs
functions) and :mod:`~semot.distributed.match_blocks` (:func:`semot.match`, block by block).
"""

from semot.distributed.cdist import sinkhorn_cdist, sliced_wasserstein_cdist
from semot.distributed.match_blocks import match
from semot.errors import SchedulerUnavailableError
from semot.matching.search import TopK, smallest_k

__all__ = [
    "SchedulerUnavailableError",
    "TopK",
    "match",
    "sinkhorn_cdist",
    "sliced_wasserstein_cdist",
    "smallest_k",
]
