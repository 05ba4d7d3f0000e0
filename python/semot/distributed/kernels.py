"""The worker side of the Dask cdist functions: one block of distances per task.

A kernel is a small frozen object sent to every worker once; :func:`cdist_block` applies it
to the rows and columns of one :class:`~semot.distributed.blocks.Block` with the
single-process Rust functions, then writes the block to the output, reduces it to its top-k
(:func:`semot.matching.search.smallest_k`), or returns it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from semot._utils.checks import FloatArray
from semot.clouds import PointClouds
from semot.distances.sinkhorn import ConvergenceWarning, sinkhorn_cdist
from semot.distances.sliced import sliced_wasserstein_cdist, sliced_wasserstein_pairs
from semot.distributed.blocks import Block, clouds_rows, takes_gemm_path
from semot.distributed.client import aligned
from semot.distributed.sinks import Sink, digest_arrays
from semot.matching.frame import all_pairs
from semot.matching.search import TopK, smallest_k

__all__ = ["BlockResult", "Kernel", "SinkhornKernel", "SlicedKernel", "cdist_block"]


@dataclass(frozen=True)
class BlockResult:
    """What a worker returns for one block.

    The values (kept only when the client assembles the dense matrix), their top-k, the
    number of Sinkhorn problems that hit ``max_iter``, and the checksum of what was written
    to the output (:func:`~semot.distributed.sinks.block_checksum`; None without one).
    """

    index: int
    values: npt.NDArray[np.float64] | None
    topk: TopK | None
    unconverged: int
    checksum: int | None = None


class Kernel(Protocol):
    """A distance between two sets of clouds, computed one block at a time on the workers."""

    def block(self, a: PointClouds, b: PointClouds) -> tuple[npt.NDArray[np.float64], int]:
        """Return the values of ``a`` x ``b`` and how many problems did not converge."""
        ...  # pragma: no cover

    def describe(self) -> dict[str, Any]:
        """Return the fingerprint of the computation (JSON-serialisable)."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class SlicedKernel:
    """The block kernel of :func:`semot.sliced_wasserstein_cdist` (same arguments)."""

    projections: FloatArray
    p: float
    method: str
    n_quantiles: int
    n_threads: int | None
    # True when the whole call merges every pair: a block whose own clouds would send some
    # pairs down the matrix-product path must then merge them too (different rounding).
    merge_only: bool

    def block(self, a: PointClouds, b: PointClouds) -> tuple[npt.NDArray[np.float64], int]:
        """Distances of clouds ``a`` x ``b`` (one block) and 0 unconverged problems."""
        if self.method == "exact" and self.merge_only and takes_gemm_path(a, b, self.p):
            # The pairs kernel always merges: the rounding of the whole call.
            d = sliced_wasserstein_pairs(
                a, b, all_pairs(len(a), len(b)), projections=aligned(self.projections),
                p=self.p, n_threads=self.n_threads,
            )  # fmt: skip
            return d.reshape(len(a), len(b)), 0
        out = sliced_wasserstein_cdist(
            a,
            b,
            projections=aligned(self.projections),
            p=self.p,
            method=self.method,  # type: ignore[arg-type]
            n_quantiles=self.n_quantiles,
            n_threads=self.n_threads,
        )
        return out, 0

    def describe(self) -> dict[str, Any]:
        """Return the fingerprint of the computation (resume records; keys are the format's)."""
        return {
            "metric": "sliced",
            "p": self.p,
            "method": self.method,
            "n_quantiles": self.n_quantiles,
            "projections": digest_arrays(self.projections),
        }


@dataclass(frozen=True)
class SinkhornKernel:
    """The block kernel of :func:`semot.sinkhorn_cdist` (same arguments)."""

    reg: float
    p: float
    max_iter: int
    tol: float
    debiased: bool
    n_threads: int | None

    def block(self, a: PointClouds, b: PointClouds) -> tuple[npt.NDArray[np.float64], int]:
        """Values of clouds ``a`` x ``b`` (one block) and how many problems hit ``max_iter``."""
        with warnings.catch_warnings():
            # Counted here and reported once by the client for the whole matrix.
            warnings.simplefilter("ignore", ConvergenceWarning)
            values, info = sinkhorn_cdist(
                a,
                b,
                reg=self.reg,
                p=self.p,
                max_iter=self.max_iter,
                tol=self.tol,
                debiased=self.debiased,
                n_threads=self.n_threads,
                return_info=True,
            )
        return values, int(info.converged.size - np.count_nonzero(info.converged))

    def describe(self) -> dict[str, Any]:
        """Return the fingerprint of the computation (resume records; keys are the format's)."""
        return {
            "metric": "sinkhorn",
            "reg": self.reg,
            "p": self.p,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "debiased": self.debiased,
        }


def cdist_block(
    kernel: Kernel,
    a: PointClouds,
    b: PointClouds,
    blk: Block,
    sink: Sink | None,
    top_k: int | None,
) -> BlockResult:
    """Compute one block on a worker; write it, reduce it, or return it."""
    values, bad = kernel.block(clouds_rows(a, blk.r0, blk.r1), clouds_rows(b, blk.c0, blk.c1))
    checksum = sink.write(blk, values) if sink is not None else None
    topk = smallest_k(values, top_k, blk.c0) if top_k is not None else None
    keep = values if sink is None and top_k is None else None
    return BlockResult(blk.index, keep, topk, bad, checksum)
