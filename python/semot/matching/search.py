r"""The first stage of a match: candidate targets per source, and the one top-k.

A match computes exact distances only between each source and ``n_candidates`` targets found
by an exact nearest-neighbour search of cheap per-feature vectors: the quantile embeddings
(:func:`semot.sliced_quantile_embedding`, Euclidean), the activation-weighted centroids
(Euclidean) or the decoder directions (cosine distance). :class:`CandidateSearch` is that
search; :func:`semot.match`, the Dask match and :func:`candidate_pairs` all use it.

The neighbour search runs on one of three backends, with the same neighbours up to ties
within float rounding:

* ``"numpy"``: blocked exact search (``KNN_BLOCK_ROWS`` query rows at a time), top-k by
  :func:`smallest_k`;
* ``"faiss"``: faiss-cpu's exact flat indexes (``IndexFlatL2``; ``IndexFlatIP`` on unit rows
  for cosine), in float32;
* ``"torch"``: :func:`semot.distances.torch_kernels.knn` on a torch ``device``.

:func:`smallest_k` (with :func:`merge_topk` for results computed in pieces) is the one top-k
with stable ties of the package: the ``k`` smallest entries of each row ordered by
(value, column), so ties always go to the lower column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from semot._utils.checks import FloatArray, check_choice, check_positive_int
from semot.distances.projections import random_projections
from semot.distances.sliced import sliced_quantile_embedding
from semot.matching.sets import FeatureSet, centroids, decoder_rows, feature_sets, unit_rows

__all__ = [
    "KNN_BLOCK_ROWS",
    "CandidateSearch",
    "TopK",
    "candidate_pairs",
    "knn_cosine",
    "knn_euclidean",
    "merge_topk",
    "neighbour_pairs",
    "resolve_knn_backend",
    "smallest_k",
]

Candidates = Literal["quantile-knn", "decoder-cosine", "centroid"]
KnnBackend = Literal["numpy", "faiss", "torch"]
CANDIDATES: tuple[Candidates, ...] = ("quantile-knn", "decoder-cosine", "centroid")
KNN_BACKENDS: tuple[KnnBackend, ...] = ("numpy", "faiss", "torch")
#: Query rows per block of the numpy search (memory: one block x len(b) matrix). The Dask
#: match cuts its candidate tasks at multiples of it, so every block's matrix products are
#: those of a single-process search, bit for bit.
KNN_BLOCK_ROWS = 1024


class TopK(NamedTuple):
    """The ``k`` nearest columns of every row, nearest first (ties: lower column first).

    Attributes
    ----------
    indices : ndarray of int64, shape (N_A, k)
        Column indices into ``B``.
    distances : ndarray of float64, shape (N_A, k)
        The distances, ascending along each row.
    """

    indices: npt.NDArray[np.int64]
    distances: npt.NDArray[np.float64]


def smallest_k(values: npt.NDArray[np.float64], k: int, col0: int = 0) -> TopK:
    """Return the ``k`` smallest entries of each row, by (value, column).

    Parameters
    ----------
    values : ndarray, shape (r, m)
        One block of distances.
    k : int
        How many to keep (at most ``m``).
    col0 : int
        Column index of ``values[:, 0]`` in the whole matrix.

    Returns
    -------
    TopK
        ``indices`` of shape ``(r, min(k, m))``, offset by ``col0``, nearest first; ties go
        to the lower column. ``distances``: the values at those columns.
    """
    n_cols = values.shape[1]
    k = min(k, n_cols)
    if k == n_cols:
        cand = np.argsort(values, axis=1, kind="stable")
    else:
        part = np.argpartition(values, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(values, part, 1)
        # Sort the k picked entries by (value, column): the stable order of the full row...
        cand = np.take_along_axis(part, np.lexsort((part, vals), axis=1), 1)
        # ...unless a tie straddles the k-th value: argpartition may have picked any of the
        # tied columns; redo those rows with a full stable sort.
        kth = vals.max(1)
        tied = (values <= kth[:, None]).sum(1) > k
        for r in np.flatnonzero(tied):
            cand[r] = np.argsort(values[r], kind="stable")[:k]
    return TopK((cand + col0).astype(np.int64), np.take_along_axis(values, cand, 1))


def merge_topk(a: TopK, b: TopK, k: int) -> TopK:
    """Merge two top-k lists of the same rows into the ``k`` best, by (distance, column).

    Unfilled slots may hold ``(int64 max, inf)``: they sort last.
    """
    idx = np.concatenate([a.indices, b.indices], axis=1)
    dist = np.concatenate([a.distances, b.distances], axis=1)
    order = np.lexsort((idx, dist), axis=1)[:, :k]
    return TopK(np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1))


def resolve_knn_backend(knn_backend: KnnBackend | None, device: Any) -> tuple[KnnBackend, Any]:
    """Return the ``(knn_backend, device)`` a search runs with.

    ``knn_backend=None`` means ``"torch"`` when a ``device`` is given, else ``"numpy"``; a
    ``device`` with ``"numpy"`` or ``"faiss"`` is an error (they run on the CPU), and
    ``"torch"`` without one runs on ``"cuda"``.
    """
    if knn_backend is None:
        knn_backend = "numpy" if device is None else "torch"
    check_choice(knn_backend, "knn_backend", KNN_BACKENDS)
    if knn_backend == "torch":
        return knn_backend, "cuda" if device is None else device
    if device is not None:
        raise ValueError(
            f"device: only for knn_backend='torch' (knn_backend={knn_backend!r} runs on the "
            "CPU); leave knn_backend unset to search with torch on this device"
        )
    return knn_backend, None


def knn_euclidean(
    a: Any,
    b: Any,
    k: int,
    block: int = KNN_BLOCK_ROWS,
    *,
    knn_backend: KnnBackend | None = None,
    device: Any = None,
) -> TopK:
    r"""Exact ``k`` nearest rows of ``b`` for every row of ``a``: :math:`\lVert a_i - b_j \rVert_2`.

    Parameters
    ----------
    a : array_like, shape (n, d)
        Query rows.
    b : array_like, shape (m, d)
        Rows searched.
    k : int
        Neighbours per query (at most ``m`` are returned).
    block : int
        Query rows per block of the numpy search (memory: one ``block x m`` matrix).
    knn_backend : {"numpy", "faiss", "torch"}, optional
        See :func:`resolve_knn_backend` (default: numpy, or torch when ``device`` is given).
    device : str or torch.device, optional
        Torch device of the torch backend.

    Returns
    -------
    TopK
        ``indices`` ``(n, min(k, m))``, nearest first, ties to the lower index (the faiss
        backend keeps faiss's own order of ties); ``distances``. float32 inputs are searched
        in float32 by numpy and faiss (squared distances lose digits for near-identical rows;
        :func:`semot.match` recomputes the distances it reports); torch works in float64.
    """
    return _search(a, b, k, "euclidean", block, knn_backend, device)


def knn_cosine(
    a: Any,
    b: Any,
    k: int,
    block: int = KNN_BLOCK_ROWS,
    *,
    knn_backend: KnnBackend | None = None,
    device: Any = None,
) -> TopK:
    r"""Return the ``k`` rows of ``b`` of smallest cosine distance :math:`1 - \cos(a_i, b_j)`.

    Rows are divided by their norm (at least ``1e-12``) first. Arguments and result as in
    :func:`knn_euclidean`; numpy and torch compute in float64, faiss in float32.
    """
    return _search(a, b, k, "cosine", block, knn_backend, device)


def _search(
    a: Any,
    b: Any,
    k: int,
    metric: Literal["euclidean", "cosine"],
    block: int,
    knn_backend: KnnBackend | None,
    device: Any,
) -> TopK:
    backend, device = resolve_knn_backend(knn_backend, device)
    k = check_positive_int(k, "k")
    block = check_positive_int(block, "block")
    a_, b_ = np.asarray(a), np.asarray(b)
    if a_.ndim != 2 or b_.ndim != 2 or a_.shape[1] != b_.shape[1]:
        raise ValueError(f"a, b: expected (n, d) and (m, d) arrays, got {a_.shape}, {b_.shape}")
    k = min(k, b_.shape[0])
    if backend == "torch":
        from semot.distances.torch_kernels import knn

        return TopK(*knn(a_, b_, k, metric=metric, device=device, block=block))
    if metric == "cosine":
        a_, b_ = unit_rows(a_), unit_rows(b_)
    if backend == "faiss":
        return _search_faiss(a_, b_, k, metric)
    if metric == "cosine":
        return _blocked(a_, b_, k, block, lambda blk: 1.0 - blk @ b_.T)
    dtype = np.float32 if a_.dtype == np.float32 and b_.dtype == np.float32 else np.float64
    a_, b_ = np.ascontiguousarray(a_, dtype), np.ascontiguousarray(b_, dtype)
    bn = (b_.astype(np.float64) ** 2).sum(1)

    def squared(blk: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        cross = (blk @ b_.T).astype(np.float64)
        d2: npt.NDArray[np.float64] = (
            (blk.astype(np.float64) ** 2).sum(1)[:, None] + bn[None, :] - 2.0 * cross
        )
        np.maximum(d2, 0.0, out=d2)
        return d2

    top = _blocked(a_, b_, k, block, squared)
    return TopK(top.indices, np.sqrt(top.distances))


def _blocked(a: npt.NDArray[Any], b: npt.NDArray[Any], k: int, block: int, distances: Any) -> TopK:
    """Top-k of ``distances(a[s : s + block])`` (a ``(block, len(b))`` matrix), block by block."""
    idx = np.empty((a.shape[0], k), np.int64)
    dist = np.empty((a.shape[0], k))
    for s in range(0, a.shape[0], block):
        idx[s : s + block], dist[s : s + block] = smallest_k(distances(a[s : s + block]), k)
    return TopK(idx, dist)


def _search_faiss(
    a: npt.NDArray[Any], b: npt.NDArray[Any], k: int, metric: Literal["euclidean", "cosine"]
) -> TopK:
    try:
        import faiss
    except ImportError:
        raise ImportError("knn_backend='faiss' needs faiss-cpu: pip install faiss-cpu") from None
    # Inner products of unit rows (cos, largest first) for cosine.
    index: Any = (
        faiss.IndexFlatIP(b.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(b.shape[1])
    )
    index.add(np.ascontiguousarray(b, np.float32))
    found, idx = index.search(np.ascontiguousarray(a, np.float32), k)
    found = found.astype(np.float64)
    dist: npt.NDArray[np.float64] = (
        1.0 - found if metric == "cosine" else np.sqrt(np.maximum(found, 0.0))
    )
    return TopK(idx.astype(np.int64), dist)


def neighbour_pairs(indices: npt.NDArray[np.int64], row0: int = 0) -> npt.NDArray[np.int64]:
    """Return the (source, target) index pairs of a neighbour list, ``(n * k, 2)`` int64.

    Row ``i`` of ``indices`` pairs source ``row0 + i`` with each of ``indices[i]``, in order.
    """
    rows = np.repeat(np.arange(row0, row0 + indices.shape[0]), indices.shape[1])
    return np.stack([rows, indices.ravel()], 1).astype(np.int64)


@dataclass(frozen=True)
class CandidateSearch:
    """The candidate search of a match: ``n_candidates`` targets per source.

    Build it with :meth:`create`. It is a small picklable value, so the Dask match sends the
    same object to its workers and runs :meth:`features` and :meth:`neighbours` there.

    Attributes
    ----------
    candidates : {"quantile-knn", "decoder-cosine", "centroid"}
        What is compared (see :func:`semot.match`).
    n_candidates : int
        Targets per source.
    projections : ndarray (d, L), optional
        Directions of the quantile embedding (``"quantile-knn"`` only).
    n_quantiles : int
        Quantile levels of the embedding.
    knn_backend : {"numpy", "faiss", "torch"}
        Backend of the neighbour search (and of the embedding for torch).
    device : str or torch.device, optional
        Torch device (``knn_backend="torch"`` only).
    n_threads : int, optional
        Rust threads of the embedding.
    """

    candidates: Candidates
    n_candidates: int
    projections: FloatArray | None = None
    n_quantiles: int = 32
    knn_backend: KnnBackend = "numpy"
    device: Any = None
    n_threads: int | None = None

    @classmethod
    def create(
        cls,
        candidates: Candidates,
        n_candidates: int,
        *,
        dim: int,
        n_projections: int = 128,
        n_quantiles: int = 32,
        seed: int = 0,
        knn_backend: KnnBackend | None = None,
        device: Any = None,
        n_threads: int | None = None,
    ) -> CandidateSearch:
        """Check the arguments and draw the embedding's directions (``random_projections``).

        ``dim`` is the dimension of the points; the other arguments are those of
        :func:`semot.match` (``knn_backend`` and ``device`` as in :func:`resolve_knn_backend`).
        """
        check_choice(candidates, "candidates", CANDIDATES)
        n_candidates = check_positive_int(n_candidates, "n_candidates")
        n_quantiles = check_positive_int(n_quantiles, "n_quantiles")
        backend, device = resolve_knn_backend(knn_backend, device)
        proj = None
        if candidates == "quantile-knn":
            proj = random_projections(dim, n_projections, seed)
        return cls(candidates, n_candidates, proj, n_quantiles, backend, device, n_threads)

    def inputs(
        self,
        source: FeatureSet,
        target: FeatureSet,
        source_decoder: Any = None,
        target_decoder: Any = None,
    ) -> tuple[Any, Any]:
        """Return what :meth:`features` takes for each side: the clouds, or the decoder rows.

        Decoders are ``(n_features, d_model)`` arrays indexed by feature id, needed (and only
        read) for ``"decoder-cosine"``.
        """
        if self.candidates != "decoder-cosine":
            return source.clouds, target.clouds
        if source_decoder is None or target_decoder is None:
            raise ValueError(
                "candidates='decoder-cosine' needs source_decoder and target_decoder "
                "(arrays of shape (n_features, d_model))"
            )
        return (
            decoder_rows(source_decoder, source.ids, "source_decoder"),
            decoder_rows(target_decoder, target.ids, "target_decoder"),
        )

    def features(self, side: Any) -> npt.NDArray[Any]:
        """Return the vectors the search compares, one row per feature.

        Quantile embeddings or centroids of clouds, or decoder rows as they are.
        """
        if self.candidates == "decoder-cosine":
            return np.asarray(side)
        if self.candidates == "centroid":
            return centroids(side)
        assert self.projections is not None
        if self.knn_backend == "torch":
            from semot.distances import torch_kernels

            return torch_kernels.sliced_quantile_embedding(
                side, projections=self.projections, n_quantiles=self.n_quantiles,
                device=self.device,
            )  # fmt: skip
        return sliced_quantile_embedding(
            side, projections=self.projections, n_quantiles=self.n_quantiles,
            n_threads=self.n_threads,
        )  # fmt: skip

    def neighbours(
        self, source_features: npt.NDArray[Any], target_features: npt.NDArray[Any]
    ) -> npt.NDArray[np.int64]:
        """Return each source's candidates, ``(n_source, min(n_candidates, n_target))``.

        Nearest first: cosine distance for decoder rows, else Euclidean.
        """
        search = knn_cosine if self.candidates == "decoder-cosine" else knn_euclidean
        return search(
            source_features, target_features, self.n_candidates,
            knn_backend=self.knn_backend, device=self.device,
        ).indices  # fmt: skip

    def pairs(
        self,
        source: FeatureSet,
        target: FeatureSet,
        source_decoder: Any = None,
        target_decoder: Any = None,
    ) -> npt.NDArray[np.int64]:
        """Candidate (source index, target index) pairs, sources in order, nearest first."""
        src_in, tgt_in = self.inputs(source, target, source_decoder, target_decoder)
        return neighbour_pairs(self.neighbours(self.features(src_in), self.features(tgt_in)))


def candidate_pairs(
    source: Any,
    target: Any,
    candidates: Candidates = "quantile-knn",
    n_candidates: int = 32,
    *,
    source_decoder: Any = None,
    target_decoder: Any = None,
    n_projections: int = 128,
    n_quantiles: int = 32,
    seed: int = 0,
    knn_backend: KnnBackend | None = None,
    device: Any = None,
    n_threads: int | None = None,
) -> npt.NDArray[np.int64]:
    """Candidate (source, target) index pairs of :func:`semot.match`.

    Parameters
    ----------
    source, target : FeatureDistributions, PointClouds or list of clouds
        The two sets of features; indices count the features that fired.
    candidates, n_candidates, source_decoder, target_decoder, n_projections, n_quantiles, seed
        As in :func:`semot.match`.
    knn_backend, device, n_threads
        As in :func:`semot.match`.

    Returns
    -------
    ndarray of int64, shape (n_source * min(n_candidates, n_target), 2)
        Rows ``(i, j)``, sources in order, each source's candidates nearest first.
    """
    # match() reports features that never fired; the search only needs the clouds.
    src, tgt = feature_sets(source, target, warn=False)
    search = CandidateSearch.create(
        candidates, n_candidates, dim=src.clouds.dim, n_projections=n_projections,
        n_quantiles=n_quantiles, seed=seed, knn_backend=knn_backend, device=device,
        n_threads=n_threads,
    )  # fmt: skip
    return search.pairs(src, tgt, source_decoder, target_decoder)
