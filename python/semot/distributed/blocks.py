"""Block layouts of the Dask functions, aligned with the blocks of the Rust kernels.

A Dask run is a list of :class:`Block` s (rows ``r0:r1`` x columns ``c0:c1``). The Rust
kernels take a matrix-product path for some pairs (quantile distances; exact sliced distances
with ``p = 2`` from ``_GEMM_MIN_PAIRS`` pairs on, for the pairs of uniform clouds of one size)
and cut it into chunks of ``_GEMM_ROWS`` rows; a block must route its pairs as the whole call
does and start where the whole call starts a chunk, so that every rounding, hence the result,
is the single-process one bit for bit. :func:`stripes` and :func:`takes_gemm_path` keep those
two rules; :func:`tiles` cuts the other paths (merge, Sinkhorn), which have no such chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from semot import _core
from semot._utils.checks import check_positive_int
from semot.clouds import PointClouds

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_STRIPE",
    "Block",
    "block_shape",
    "clouds_rows",
    "gemm_stripes",
    "row_blocks",
    "stripes",
    "takes_gemm_path",
    "tiles",
]

#: Default side of a square block of pairs (merge and Sinkhorn paths).
DEFAULT_BLOCK = 512
#: Default height of a row stripe (matrix-product paths: every block spans all columns).
DEFAULT_STRIPE = 1024
# Read from the Rust kernels, never copied: rows per matrix-product chunk of the quantile
# kernel (stripes start at multiples of it, so every chunk, hence every rounding, is the one
# of a single-process call), and the number of pairs from which the sliced cdist takes the
# matrix-product path (p = 2, uniform weights, equal sizes; blocks must take the same path).
_GEMM_ROWS: int = _core.GEMM_ROWS
_GEMM_MIN_PAIRS: int = _core.GEMM_MIN_PAIRS


@dataclass(frozen=True)
class Block:
    """Rows ``r0:r1`` against columns ``c0:c1`` of a distance matrix: one task.

    ``index`` numbers it in its layout (the resume records name blocks by it).
    """

    index: int
    r0: int
    r1: int
    c0: int
    c1: int


def clouds_rows(c: PointClouds, lo: int, hi: int) -> PointClouds:
    """Clouds ``lo:hi`` as views (no copy)."""
    s, e = int(c.offsets[lo]), int(c.offsets[hi])
    return PointClouds.from_csr_unchecked(c.points[s:e], c.weights[s:e], c.offsets[lo : hi + 1] - s)


def tiles(na: int, nb: int, rows: int, cols: int) -> list[Block]:
    """Tiles of ``rows x cols`` pairs covering an ``na x nb`` matrix, row-major."""
    out: list[Block] = []
    for r0 in range(0, na, rows):
        for c0 in range(0, nb, cols):
            out.append(Block(len(out), r0, min(r0 + rows, na), c0, min(c0 + cols, nb)))
    return out


def stripes(na: int, nb: int, height: int, min_pairs: int) -> list[Block]:
    """Row stripes spanning all columns, starting at multiples of the kernel's ``GEMM_ROWS``.

    A stripe has at least ``min_pairs`` pairs (the last one is merged into the one before if
    it would have fewer), so it takes the same kernel path as the whole call.
    """
    h = _GEMM_ROWS * max(1, math.ceil(height / _GEMM_ROWS))
    if min_pairs > 0:
        h = max(h, _GEMM_ROWS * math.ceil(min_pairs / (nb * _GEMM_ROWS)))
    starts = list(range(0, na, h))
    if len(starts) > 1 and (na - starts[-1]) * nb < min_pairs:
        starts.pop()
    ends = [*starts[1:], na]
    return [Block(i, r0, r1, 0, nb) for i, (r0, r1) in enumerate(zip(starts, ends, strict=True))]


def block_shape(block_size: int | tuple[int, int] | None, default: int) -> tuple[int, int]:
    """Return the ``(rows, cols)`` of a ``block_size`` argument (an int means a square)."""
    if block_size is None:
        return default, default
    if isinstance(block_size, tuple):
        if len(block_size) != 2:
            raise ValueError(f"block_size: expected an int or (rows, cols), got {block_size!r}")
        return (
            check_positive_int(block_size[0], "block_size"),
            check_positive_int(block_size[1], "block_size"),
        )
    b = check_positive_int(block_size, "block_size")
    return b, b


def takes_gemm_path(a: PointClouds, b: PointClouds, p: float) -> bool:
    """Whether the Rust exact sliced cdist of ``a`` x ``b`` sends pairs down its matrix product.

    It does for ``p = 2`` from ``_GEMM_MIN_PAIRS`` pairs on, for every pair with a routed
    cloud on either side (uniform weights and the size most common among the uniform clouds of
    ``b``); the pairs of two other clouds are merged (``_core.sw_gemm_pairs`` applies the
    kernel's own rule). Since the size is chosen from ``b``, a row stripe of ``a`` against all
    of ``b`` routes its pairs as the whole call does.
    """
    if p != 2 or len(a) * len(b) < _GEMM_MIN_PAIRS:
        return False
    routed = _core.sw_gemm_pairs(
        a.points, a.weights, a.offsets, b.points, b.weights, b.offsets, float(p)
    )
    return routed > 0


def gemm_stripes(na: int, nb: int, height: int, exact: bool) -> list[Block]:
    """Row stripes of a matrix-product call (:func:`stripes`).

    For the exact path each has at least ``_GEMM_MIN_PAIRS`` pairs, so that no stripe falls
    back to the merge path.
    """
    return stripes(na, nb, height, _GEMM_MIN_PAIRS if exact else 0)


def row_blocks(n_rows: int, n_cols: int, rows: int) -> list[Block]:
    """Blocks of ``rows`` whole rows (the last one shorter), starting at multiples of it."""
    return [
        Block(i, r0, min(r0 + rows, n_rows), 0, n_cols)
        for i, r0 in enumerate(range(0, n_rows, rows))
    ]
