"""Ragged sets of weighted point clouds, stored CSR-style."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from semot._utils.checks import FloatArray, float_array, index_array

__all__ = ["PointClouds", "as_clouds", "pair_of_clouds", "two_sets"]


def _cloud_of_row(offsets: npt.NDArray[np.int64], row: int) -> int:
    return int(np.searchsorted(offsets, row, side="right") - 1)


class PointClouds:
    r"""N weighted point clouds in :math:`\mathbb{R}^d`, stored CSR-style.

    Cloud ``c`` is made of the rows ``offsets[c]:offsets[c+1]`` of ``points`` with the matching
    entries of ``weights``. Weights are normalised so that each cloud sums to one (sums are
    taken in float64), which makes every distance invariant to rescaling a cloud's weights.

    Parameters
    ----------
    points : array_like, shape (T, d)
        All points, cloud after cloud. float32 and float64 are kept as given (a big float32
        array is never upcast); integer input becomes float64.
    weights : array_like, shape (T,), optional
        Non-negative weights, one per point; ``None`` gives uniform weights per cloud. Cast to
        the dtype of ``points``.
    offsets : array_like of int, shape (N + 1,)
        Start of each cloud in ``points``, then ``T``: starts at 0, non-decreasing.

    Raises
    ------
    ValueError
        For wrong shapes, bad offsets, an empty cloud, non-finite points or weights, negative
        weights, or a cloud whose weights sum to zero; the message names the cloud.
    TypeError
        For complex, object or string arrays.

    Examples
    --------
    >>> import numpy as np, semot
    >>> clouds = semot.PointClouds.from_list([np.zeros((3, 2)), (np.ones((2, 2)), [1.0, 3.0])])
    >>> len(clouds), clouds.dim, clouds.sizes.tolist()
    (2, 2, [3, 2])
    >>> clouds[1][1].tolist()
    [0.25, 0.75]
    """

    points: FloatArray
    weights: FloatArray
    offsets: npt.NDArray[np.int64]

    def __init__(self, points: Any, weights: Any, offsets: Any) -> None:
        pts = float_array(points, "points")
        if pts.ndim != 2:
            raise ValueError(f"points: expected a 2-D array (T, d), got shape {pts.shape}")
        if pts.shape[1] < 1:
            raise ValueError("points: need at least one coordinate (d >= 1)")
        offs = index_array(offsets, "offsets", 1)
        total = pts.shape[0]
        if offs.shape[0] < 2:
            raise ValueError("offsets: must have length n_clouds + 1 >= 2")
        if offs[0] != 0:
            raise ValueError(f"offsets: must start at 0, starts at {offs[0]}")
        steps = np.diff(offs)
        if (steps < 0).any():
            c = int(np.argmax(steps < 0))
            raise ValueError(
                f"offsets: must be non-decreasing; offsets[{c}]={offs[c]} > "
                f"offsets[{c + 1}]={offs[c + 1]}"
            )
        if offs[-1] != total:
            raise ValueError(f"offsets: must end at len(points)={total}, ends at {offs[-1]}")
        if (steps == 0).any():
            c = int(np.argmax(steps == 0))
            raise ValueError(f"cloud {c} is empty (offsets[{c}] == offsets[{c + 1}])")
        if weights is None:
            w = np.ones(total, dtype=pts.dtype)
        else:
            w = float_array(weights, "weights", dtype=pts.dtype)
            if w.ndim != 1 or w.shape[0] != total:
                raise ValueError(
                    f"weights: expected shape ({total},), one weight per point, got {w.shape}"
                )
        bad_pts = ~np.isfinite(pts).all(axis=1)
        if bad_pts.any():
            row = int(np.argmax(bad_pts))
            c = _cloud_of_row(offs, row)
            raise ValueError(
                f"points: cloud {c}: point {row - offs[c]} has a non-finite coordinate"
            )
        bad_w = ~np.isfinite(w) | (w < 0)
        if bad_w.any():
            row = int(np.argmax(bad_w))
            c = _cloud_of_row(offs, row)
            what = "negative" if np.isfinite(w[row]) else "not finite"
            raise ValueError(f"weights: cloud {c}: weight {row - offs[c]} is {what} ({w[row]})")
        w64 = w.astype(np.float64)
        with np.errstate(over="ignore"):
            sums = np.add.reduceat(w64, offs[:-1])
        if not (sums > 0).all():
            c = int(np.argmax(~(sums > 0)))
            raise ValueError(f"weights: cloud {c}: weights sum to {sums[c]}, need a positive sum")
        if (sums > np.finfo(np.float64).tiny).all() and np.isfinite(sums).all():
            normalised = w * np.repeat(1.0 / sums, steps)
        else:
            # Tiny (subnormal) weights, whose reciprocal sum overflows, or huge ones whose sum
            # does: divide by each cloud's largest weight first.
            with np.errstate(over="ignore"):
                peak = np.maximum.reduceat(w64, offs[:-1])
                rel = w64 / np.repeat(peak, steps)
                normalised = rel / np.repeat(np.add.reduceat(rel, offs[:-1]), steps)
        self.points = pts
        self.weights = float_array(normalised, "weights", dtype=pts.dtype)
        self.offsets = offs

    @classmethod
    def from_csr_unchecked(
        cls, points: FloatArray, weights: FloatArray, offsets: npt.NDArray[np.int64]
    ) -> PointClouds:
        """Wrap CSR arrays that are already valid, without checking or copying them.

        For code that builds clouds from clouds (slices, dtype casts, shards read back from
        a verified file, blocks shipped to a worker): the constructor's checks cost a pass
        over every point. The caller guarantees what the constructor would check:
        ``points`` is a C-contiguous ``(N, d)`` float32 or float64 array of finite values,
        ``weights`` a C-contiguous ``(N,)`` array of the same dtype, non-negative and
        summing to 1 within every cloud, ``offsets`` a C-contiguous int64 array starting at
        0, non-decreasing, ending at ``N``, with no empty cloud. Anything else gives wrong
        distances or errors from the Rust core, not a clear message.
        """
        obj = cls.__new__(cls)
        obj.points, obj.weights, obj.offsets = points, weights, offsets
        return obj

    @classmethod
    def from_list(
        cls,
        clouds: Iterable[Any],
        *,
        dtype: npt.DTypeLike | None = None,
    ) -> PointClouds:
        """Build from a list of clouds.

        Parameters
        ----------
        clouds : iterable
            Each item is an array of points ``(n_i, d)``, or a pair ``(points, weights)``
            where ``weights`` may be ``None`` (uniform).
        dtype : dtype, optional
            float32 or float64; by default the common dtype of the inputs (float32 only if
            every cloud is float32).
        """
        pts_list: list[np.ndarray[Any, Any]] = []
        w_list: list[np.ndarray[Any, Any] | None] = []
        for i, item in enumerate(clouds):
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise ValueError(f"clouds[{i}]: expected (points, weights), got {len(item)}")
                p, w = item
            else:
                p, w = item, None
            arr = float_array(p, f"clouds[{i}] points")
            if arr.ndim == 1:
                arr = arr[:, None]
            if arr.ndim != 2:
                raise ValueError(f"clouds[{i}]: points must be (n, d), got shape {arr.shape}")
            if arr.shape[0] == 0:
                raise ValueError(f"clouds[{i}]: cloud is empty")
            pts_list.append(arr)
            w_list.append(None if w is None else float_array(w, f"clouds[{i}] weights", ndim=1))
        if not pts_list:
            raise ValueError("clouds: need at least one cloud")
        dims = {p.shape[1] for p in pts_list}
        if len(dims) > 1:
            d0 = pts_list[0].shape[1]
            bad = next(i for i, p in enumerate(pts_list) if p.shape[1] != d0)
            raise ValueError(
                f"clouds[{bad}]: dimension {pts_list[bad].shape[1]} differs from clouds[0]'s {d0}"
            )
        if dtype is None:
            all32 = all(p.dtype == np.float32 for p in pts_list)
            dtype = np.float32 if all32 else np.float64
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype: must be float32 or float64, got {dt}")
        sizes = np.array([p.shape[0] for p in pts_list], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        points = np.concatenate(pts_list, axis=0).astype(dt, copy=False)
        weights = np.concatenate(
            [
                np.ones(p.shape[0], dtype=dt) if w is None else w.astype(dt, copy=False)
                for p, w in zip(pts_list, w_list, strict=True)
            ]
        )
        for i, (p, w) in enumerate(zip(pts_list, w_list, strict=True)):
            if w is not None and w.shape[0] != p.shape[0]:
                raise ValueError(f"clouds[{i}]: {w.shape[0]} weights for {p.shape[0]} points")
        return cls(points, weights, offsets)

    @classmethod
    def from_padded(cls, points: Any, weights: Any = None) -> PointClouds:
        """Build from padded arrays, dropping padding.

        Parameters
        ----------
        points : array_like, shape (N, n, d)
            Cloud ``i`` is ``points[i]``.
        weights : array_like, shape (N, n), optional
            Non-negative weights; a zero weight marks a padding point, which is dropped.
            ``None`` gives uniform weights and no padding.
        """
        pts = float_array(points, "points")
        if pts.ndim != 3:
            raise ValueError(f"points: expected a 3-D array (N, n, d), got shape {pts.shape}")
        n_clouds, n, d = pts.shape
        if n_clouds == 0 or n == 0:
            raise ValueError(f"points: need N >= 1 clouds of n >= 1 points, got {pts.shape}")
        if weights is None:
            w = np.ones((n_clouds, n), dtype=pts.dtype)
        else:
            w = float_array(weights, "weights", dtype=pts.dtype)
            if w.shape != (n_clouds, n):
                raise ValueError(f"weights: expected shape {(n_clouds, n)}, got {w.shape}")
        keep = w != 0
        counts = keep.sum(axis=1)
        if (counts == 0).any():
            c = int(np.argmax(counts == 0))
            raise ValueError(f"weights: cloud {c} has only padding (all weights are zero)")
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(pts.reshape(-1, d)[keep.ravel()], w.ravel()[keep.ravel()], offsets)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the points."""
        return int(self.points.shape[1])

    @property
    def dtype(self) -> np.dtype[Any]:
        """Floating dtype of points and weights."""
        return self.points.dtype

    @property
    def sizes(self) -> npt.NDArray[np.int64]:
        """Number of points of each cloud."""
        return np.diff(self.offsets)

    @property
    def n_points(self) -> int:
        """Total number of points over all clouds."""
        return int(self.points.shape[0])

    @overload
    def __getitem__(self, index: int) -> tuple[FloatArray, FloatArray]: ...

    @overload
    def __getitem__(self, index: slice | Sequence[int] | npt.NDArray[Any]) -> PointClouds: ...

    def __getitem__(
        self, index: int | slice | Sequence[int] | npt.NDArray[Any]
    ) -> tuple[FloatArray, FloatArray] | PointClouds:
        """Cloud ``index`` as ``(points, normalised weights)`` views, or a subset."""
        if isinstance(index, (int, np.integer)):
            i = int(index)
            n = len(self)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"cloud index {index} out of range for {n} clouds")
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            return self.points[lo:hi], self.weights[lo:hi]
        if isinstance(index, slice):
            return self.subset(np.arange(len(self))[index])
        return self.subset(index)

    def __iter__(self) -> Iterator[tuple[FloatArray, FloatArray]]:
        for i in range(len(self)):
            yield self[i]

    def subset(self, indices: Any) -> PointClouds:
        """Return the clouds at ``indices`` (integers, repeats allowed, or a boolean mask)."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"indices: boolean mask must have shape ({len(self)},)")
            idx = np.flatnonzero(idx)
        idx = index_array(idx, "indices", 1)
        n = len(self)
        if idx.size == 0:
            raise ValueError("indices: a subset needs at least one cloud")
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            k = int(np.argmax(bad))
            raise IndexError(f"indices[{k}] = {idx[k]} out of range for {n} clouds")
        idx = np.where(idx < 0, idx + n, idx)
        starts = self.offsets[idx]
        sizes = self.offsets[idx + 1] - starts
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        rows = np.repeat(starts - offsets[:-1], sizes) + np.arange(offsets[-1])
        return PointClouds.from_csr_unchecked(
            np.ascontiguousarray(self.points[rows]),
            np.ascontiguousarray(self.weights[rows]),
            offsets,
        )

    def astype(self, dtype: npt.DTypeLike) -> PointClouds:
        """Return a copy with points and weights in ``dtype`` (float32 or float64)."""
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype: must be float32 or float64, got {dt}")
        if dt == self.dtype:
            return self
        return PointClouds.from_csr_unchecked(
            self.points.astype(dt), self.weights.astype(dt), self.offsets
        )

    def __repr__(self) -> str:
        sizes = self.sizes
        return (
            f"PointClouds(n_clouds={len(self)}, dim={self.dim}, dtype={self.dtype.name}, "
            f"points per cloud {int(sizes.min())}..{int(sizes.max())})"
        )


def as_clouds(obj: Any, name: str) -> PointClouds:
    """Interpret ``obj`` as a set of clouds.

    Accepts a :class:`PointClouds`, any object with a ``to_clouds()`` method returning one
    (such as :class:`~semot.features.container.FeatureDistributions`), a 3-D array ``(N, n, d)``
    (N clouds with uniform weights), or a list of clouds as taken by
    :meth:`PointClouds.from_list`.
    """
    if isinstance(obj, PointClouds):
        return obj
    to_clouds = getattr(obj, "to_clouds", None)
    if callable(to_clouds) and not isinstance(obj, (np.ndarray, list, tuple)):
        out = to_clouds()
        if not isinstance(out, PointClouds):
            raise TypeError(
                f"{name}: {type(obj).__name__}.to_clouds() returned {type(out).__name__}, "
                "expected PointClouds"
            )
        return out
    if isinstance(obj, (list, tuple)):
        try:
            return PointClouds.from_list(obj)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{name}: {e}") from None
    arr = np.asarray(obj)
    if arr.ndim == 3:
        try:
            return PointClouds.from_padded(arr)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{name}: {e}") from None
    raise TypeError(
        f"{name}: expected PointClouds, a list of (n_i, d) arrays or a 3-D array (N, n, d), "
        f"got {type(obj).__name__} with shape {arr.shape}"
    )


def common_dtype(a: PointClouds, b: PointClouds) -> tuple[PointClouds, PointClouds]:
    """Bring two sets of clouds to one dtype (float64 when they differ)."""
    if a.dtype == b.dtype:
        return a, b
    return a.astype(np.float64), b.astype(np.float64)


def two_sets(A: Any, B: Any) -> tuple[PointClouds, PointClouds]:
    """Interpret ``A`` and ``B`` as sets of clouds of one dimension and one dtype."""
    ca, cb = as_clouds(A, "A"), as_clouds(B, "B")
    if ca.dim != cb.dim:
        raise ValueError(f"B: points of dimension {cb.dim} differ from A's dimension {ca.dim}")
    return common_dtype(ca, cb)


def pair_of_clouds(x: Any, y: Any, a: Any, b: Any) -> tuple[PointClouds, PointClouds]:
    """Two single clouds ``(x, a)`` and ``(y, b)`` of one dimension and dtype (POT-style input).

    ``x`` and ``y`` are ``(n, d)`` arrays (1-D is taken as ``(n, 1)``), ``a`` and ``b``
    weights or ``None``. Errors name ``x``, ``y``, ``a`` or ``b``.
    """

    def one(pts: Any, w: Any, name: str, wname: str) -> PointClouds:
        arr = float_array(pts, name)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{name}: expected an (n, d) array, got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{name}: is empty")
        if w is not None:
            w = float_array(w, wname, dtype=arr.dtype)
            if w.shape != (arr.shape[0],):
                raise ValueError(
                    f"{wname}: expected shape ({arr.shape[0]},), one weight per point of {name}, "
                    f"got {w.shape}"
                )
        try:
            return PointClouds(arr, w, [0, arr.shape[0]])
        except ValueError as e:
            msg = str(e).replace("cloud 0: ", "")
            if msg.startswith("weights"):
                msg = wname + msg[len("weights") :]
            elif msg.startswith("points"):
                msg = name + msg[len("points") :]
            raise ValueError(msg) from None

    cx, cy = one(x, a, "x", "a"), one(y, b, "y", "b")
    if cx.dim != cy.dim:
        raise ValueError(f"y: dimension {cy.dim} differs from the dimension of x ({cx.dim})")
    return common_dtype(cx, cy)
