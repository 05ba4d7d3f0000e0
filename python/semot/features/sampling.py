"""Streaming per-feature samplers: which token positions represent each SAE feature.

For every feature the sampler keeps, over a stream of token batches, the ``n`` firing positions
with the smallest *keys*:

- ``mode="weighted"`` (default): key ``-log(u) / a`` with ``a > 0`` the activation and ``u`` a
  uniform number in (0, 1) derived by hashing ``(seed, sequence, position, feature)``. Keeping
  the n smallest such keys is the Efraimidis-Spirakis weighted reservoir: a sample without
  replacement where each position enters with probability driven by its activation. The kept
  points get uniform weights, so the sample is an unbiased draw from the activation-weighted
  measure ``sum_t a_t delta_{x_t} / sum_t a_t``.
- ``mode="top"``: key ``-a``, the n largest activations; the kept points are weighted by their
  activation.

Ties are broken by position in the stream (earlier first). Because keys depend only on the
token's identity and not on batch boundaries or arrival order, the result is the same for any
batch size and after any checkpoint/resume split.

Two implementations, chosen by ``backend``:

- ``"core"`` (the default on the CPU: numpy arrays, or torch tensors on the CPU, read without a
  copy): the Rust kernel ``semot._core.sampler_update``, one pass over the batch in parallel
  over chunks of features with the GIL released; the same bits for any thread count.
- ``"elementwise"`` (the default on a GPU): array code written once against a tiny interface
  implemented for numpy and torch, so it runs on the model's device.

Both leave the buffers identical, slot for slot, so a checkpoint of one resumes on the other. On
the CPU both compute the weighted keys with the one Rust function (numpy's ``log`` rounds
differently from the platform's ``log`` in about 0.3 % of cases on AVX-512 machines); on a GPU
the keys come from ``torch.log`` and may differ from the CPU ones in the last bit, which changes
a sample only where two keys agree to 16 digits. Memory is ``O(F * n * k)``; nothing per token
is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from semot import _core
from semot._utils.checks import check_choice, check_n_threads, check_positive_int
from semot.features.container import FeatureDistributions

__all__ = [
    "BACKENDS",
    "MODES",
    "Backend",
    "FeatureSampler",
    "Mode",
    "SampleArrays",
    "combine_hashes",
    "feature_hash",
    "hash_bits",
    "hash_uniform",
    "to_distributions",
    "token_hash",
]

Mode = Literal["weighted", "top"]
MODES: tuple[Mode, ...] = ("weighted", "top")
Backend = Literal["auto", "core", "elementwise"]
BACKENDS: tuple[Backend, ...] = ("auto", "core", "elementwise")

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_EMPTY_TB = np.iinfo(np.int64).max
_POS_BITS = 32


def _mul32(x: Any, c: int) -> Any:
    """``(x * c) mod 2**32`` for int64 arrays holding values below 2**32, without overflow."""
    lo = (x & 0xFFFF) * c
    hi = (((x >> 16) * c) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _fmix32(x: Any) -> Any:
    """MurmurHash3's 32-bit finaliser on int64 arrays holding values below 2**32."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def token_hash(seed: int, seq: Any, pos: Any) -> Any:
    """32-bit hash (int64) of a token's identity ``(seed, seq, pos)``."""
    s = int(seed) & _M64
    h = _fmix32((seq & _M32) ^ (s & _M32))
    h = _fmix32(h ^ ((seq >> 32) & _M32) ^ ((s >> 32) & _M32))
    return _fmix32(h ^ (pos & _M32))


def feature_hash(feature: Any) -> Any:
    """32-bit hash (int64) of a feature index."""
    return _fmix32((feature & _M32) ^ 0x2545F491)


def combine_hashes(tok: Any, feat: Any) -> Any:
    """48 random bits (int64) from a token hash and a feature hash."""
    h = _fmix32(tok ^ feat)
    h2 = _fmix32(h ^ 0x68E31DA4)
    return (h >> 8) * (1 << 24) + (h2 >> 8)


def hash_bits(seed: int, seq: Any, pos: Any, feature: Any) -> Any:
    """48 random bits (int64) determined by ``(seed, seq, pos, feature)``.

    Works on numpy arrays and torch tensors of int64 alike (only ``& >> ^ * +`` are used), so
    the same token gets the same bits on every device and in every batch.
    """
    return combine_hashes(token_hash(seed, seq, pos), feature_hash(feature))


def hash_uniform(seed: int, seq: Any, pos: Any, feature: Any) -> Any:
    """Uniform numbers in (0, 1), float64: ``(hash_bits(...) + 0.5) / 2**48``."""
    return _bits_to_uniform(hash_bits(seed, seq, pos, feature))


def _is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (checked by module, so torch is never imported here)."""
    return type(x).__module__.startswith("torch")


def _bits_to_uniform(bits: Any) -> Any:
    f64 = bits.double() if _is_torch(bits) else bits.astype(np.float64)
    return (f64 + 0.5) / float(1 << 48)


class _Ops:
    """The handful of array operations the sampler needs, for one backend."""

    def __init__(self, like: Any) -> None:
        self.torch = _is_torch(like)
        if self.torch:
            import torch

            self.t = torch
            self.device = like.device

    def full(self, shape: tuple[int, ...], value: float | int, kind: str) -> Any:
        if self.torch:
            dt = {"f64": self.t.float64, "f32": self.t.float32, "i64": self.t.int64}[kind]
            return self.t.full(shape, value, dtype=dt, device=self.device)
        npdt = {"f64": np.float64, "f32": np.float32, "i64": np.int64}[kind]
        return np.full(shape, value, dtype=npdt)

    def zeros(self, shape: tuple[int, ...], kind: str) -> Any:
        return self.full(shape, 0, kind)

    def nonzero2(self, mask: Any) -> tuple[Any, Any]:
        if self.torch:
            r, c = self.t.nonzero(mask, as_tuple=True)
            return r, c
        rn, cn = np.nonzero(mask)
        return rn.astype(np.int64), cn.astype(np.int64)

    def f64(self, x: Any) -> Any:
        return x.double() if self.torch else x.astype(np.float64)

    def i64(self, x: Any) -> Any:
        return x.long() if self.torch else x.astype(np.int64)

    def argsort(self, x: Any, axis: int = -1) -> Any:
        if self.torch:
            return self.t.argsort(x, dim=axis, stable=True)
        return np.argsort(x, axis=axis, kind="stable")

    def take_along(self, x: Any, idx: Any, axis: int) -> Any:
        if self.torch:
            return self.t.gather(x, axis, idx)
        return np.take_along_axis(x, idx, axis=axis)

    def cat(self, xs: list[Any], axis: int = 0) -> Any:
        if self.torch:
            return self.t.cat(xs, dim=axis)
        return np.concatenate(xs, axis=axis)

    def arange(self, n: int) -> Any:
        if self.torch:
            return self.t.arange(n, device=self.device)
        return np.arange(n, dtype=np.int64)

    def nonzero1(self, mask: Any) -> Any:
        if self.torch:
            return self.t.nonzero(mask, as_tuple=True)[0]
        return np.nonzero(mask)[0].astype(np.int64)

    def group_starts(self, f: Any) -> Any:
        """Boolean mask of the first element of each run of equal values in sorted ``f``."""
        if self.torch:
            head = self.t.ones(f.shape[:1], dtype=self.t.bool, device=self.device)
            head[1:] = f[1:] != f[:-1]
            return head
        head_np = np.ones(f.shape[:1], dtype=bool)
        head_np[1:] = f[1:] != f[:-1]
        return head_np

    def where(self, cond: Any, x: Any, y: int) -> Any:
        if self.torch:
            return self.t.where(cond, x, self.t.full_like(x, y))
        return np.where(cond, x, y)

    def scatter_ones(self, z: Any, idx: Any) -> Any:
        """``z`` with ones at ``idx`` along axis 1."""
        if self.torch:
            return z.scatter(1, idx, 1)
        np.put_along_axis(z, idx, 1, axis=1)
        return z

    def bincount(self, f: Any, n: int) -> Any:
        """Occurrences of each of ``0..n-1`` in ``f`` (int64; exact on every device)."""
        if self.torch:
            return self.t.bincount(f, minlength=n)
        return np.bincount(f, minlength=n).astype(np.int64)

    def column_sums64(self, x: Any, mask: Any, f: Any, vals: Any, n: int) -> Any:
        """Float64 column sums of ``x`` over ``mask`` (``vals`` = ``x`` at the mask's ``f``).

        On CPU a sequential bincount over the firing entries (same result for any thread
        count); on GPUs a dense reduction (a fixed reduction order, unlike atomics).
        """
        if self.torch:
            if self.device.type == "cpu":
                return self.t.bincount(f, weights=vals.double(), minlength=n)
            return self.t.where(mask, x, 0).sum(0, dtype=self.t.float64)
        return np.bincount(f, weights=vals.astype(np.float64), minlength=n)

    def cumsum(self, x: Any) -> Any:
        if self.torch:
            return self.t.cumsum(x, 0)
        return np.cumsum(x)

    def log(self, x: Any) -> Any:
        return self.t.log(x) if self.torch else np.log(x)

    def all_finite(self, x: Any) -> bool:
        if self.torch:
            return bool(self.t.isfinite(x).all())
        return bool(np.isfinite(x).all())

    def first_nonfinite(self, x: Any) -> tuple[int, int] | None:
        """Row and column of the first non-finite entry in row-major order (None if none)."""
        bad = ~self.t.isfinite(x) if self.torch else ~np.isfinite(x)
        r, c = self.nonzero2(bad)
        if r.shape[0] == 0:
            return None
        return int(r[0]), int(c[0])

    def numpy(self, x: Any) -> np.ndarray[Any, Any]:
        if self.torch:
            return np.asarray(x.detach().cpu().numpy())
        return np.asarray(x)

    def from_numpy(self, x: np.ndarray[Any, Any]) -> Any:
        if self.torch:
            return self.t.from_numpy(np.ascontiguousarray(x)).to(self.device)
        return np.array(x)


def _cpu_array(x: Any, name: str, dtypes: tuple[type, ...], fallback: type) -> np.ndarray[Any, Any]:
    """``x`` (numpy array or CPU tensor) as a C-contiguous numpy array, a view when it can be.

    Dtypes outside ``dtypes`` become ``fallback``: exactly for float16, bfloat16 and integer
    activations, which the elementwise path reads as float64 too.
    """
    if _is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(
                f"{name}: a tensor on {x.device}, but this sampler runs on the CPU (create it "
                "with like= a tensor on that device)"
            )
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()  # exact; numpy has no bfloat16
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype.type not in dtypes:
        arr = arr.astype(fallback)
    return np.ascontiguousarray(arr)


@dataclass
class SampleArrays:
    """The samplers' result in CSR layout (numpy), ready for :class:`FeatureDistributions`.

    Feature ``f`` owns rows ``offsets[f]:offsets[f+1]`` of the per-point arrays, sorted by key
    (for ``mode="top"``: by decreasing activation).
    """

    points: npt.NDArray[np.float32]
    weights: npt.NDArray[np.float32]
    activations: npt.NDArray[np.float32]
    keys: npt.NDArray[np.float64]
    seq: npt.NDArray[np.int64]
    pos: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    firing_counts: npt.NDArray[np.int64]
    activation_sums: npt.NDArray[np.float64]


def to_distributions(
    samples: SampleArrays,
    feature_ids: Any,
    metadata: dict[str, Any],
    reference_arrays: dict[str, Any] | None = None,
) -> FeatureDistributions:
    """Wrap a sampler's result as a :class:`semot.FeatureDistributions` (validated).

    Every field of ``samples`` is the :meth:`FeatureDistributions.from_arrays` argument of
    the same name; ``feature_ids`` gives the id of each of the sampler's features.
    """
    arrays = {field.name: getattr(samples, field.name) for field in fields(samples)}
    return FeatureDistributions.from_arrays(
        **arrays,
        feature_ids=feature_ids,
        metadata=metadata,
        reference_arrays=reference_arrays,
    )


class FeatureSampler:
    r"""Streaming sample of ``n`` firing positions per feature, with their support points.

    Parameters
    ----------
    n_features : int
        Number of features F (columns of the activations given to :meth:`update`).
    samples_per_feature : int
        Sample size n per feature (fewer when a feature fires fewer times).
    dim : int
        Dimension k of the support points.
    mode : {"weighted", "top"}
        ``"weighted"``: activation-weighted reservoir sample (Efraimidis-Spirakis keys
        :math:`-\log(u)/a`), uniform weights on the sample. ``"top"``: the n largest
        activations, weights proportional to activation.
    seed : int
        Seed of the per-token uniforms of ``"weighted"`` mode (unused by ``"top"``).
    like : numpy.ndarray or torch.Tensor, optional
        Where the batches live: numpy (when omitted) or a tensor on the device of the
        activations that :meth:`update` will get.
    backend : {"auto", "core", "elementwise"}
        ``"core"``: the Rust kernel, on the CPU only (numpy buffers; CPU tensors are read
        without a copy). ``"elementwise"``: numpy or torch array code on the device of
        ``like``. ``"auto"`` (default): ``"core"`` unless ``like`` is a tensor on a GPU. Both
        give the same buffers bit for bit on the CPU.
    n_threads : int, optional
        Threads of the ``"core"`` backend (default: every core). The result does not depend
        on it.

    Notes
    -----
    A position *fires* for a feature when its activation is strictly positive. Memory is
    ``F * n * (k * 4 + 20)`` bytes.
    """

    def __init__(
        self,
        n_features: int,
        samples_per_feature: int,
        dim: int,
        *,
        mode: Mode = "weighted",
        seed: int = 0,
        like: Any = None,
        backend: Backend = "auto",
        n_threads: int | None = None,
    ) -> None:
        check_choice(mode, "mode", MODES)
        check_choice(backend, "backend", BACKENDS)
        self.n_features = check_positive_int(n_features, "n_features")
        self.n = check_positive_int(samples_per_feature, "samples_per_feature")
        self.dim = check_positive_int(dim, "dim")
        self.mode: Mode = mode
        self.seed = int(seed)
        self.n_threads = check_n_threads(n_threads)
        like = np.empty(0) if like is None else like
        device = like.device.type if _is_torch(like) else "cpu"
        if backend == "auto":
            backend = "core" if device == "cpu" else "elementwise"
        elif backend == "core" and device != "cpu":
            raise ValueError(
                f"backend: 'core' runs on the CPU, but like is on {like.device}; use "
                "'elementwise' (or 'auto') there"
            )
        self.backend: Backend = backend
        # The core kernel writes numpy buffers in place; CPU tensors are read as numpy views.
        self.ops = _Ops(np.empty(0) if backend == "core" else like)
        o = self.ops
        f, n, k = self.n_features, self.n, self.dim
        self.keys = o.full((f, n), math.inf, "f64")
        self.tb = o.full((f, n), _EMPTY_TB, "i64")
        self.acts = o.zeros((f, n), "f32")
        self.points = o.zeros((f, n, k), "f32")
        self.counts = o.zeros((f,), "i64")
        self.act_sums = o.zeros((f,), "f64")
        self._feature_hash: Any = None
        self._finished = False

    # ------------------------------------------------------------------ update
    def update(self, activations: Any, points: Any, seq: Any, pos: Any) -> None:
        """Offer one batch of T token positions to every feature's sample.

        Parameters
        ----------
        activations : array, shape (T, F)
            Feature activations (zero where a feature does not fire).
        points : array, shape (T, k)
            Support point of each position (its hidden state in the reference space).
        seq, pos : int arrays, shape (T,)
            Sequence index in the stream and position in the sequence of each row; together
            they identify the token, which fixes its random key.

        Raises
        ------
        ValueError
            For arrays of the wrong shape, or a non-finite activation or support point (the
            message names the first one's sequence and position); the sample is then
            unchanged.
        """
        self._check_open()
        if activations.ndim != 2 or activations.shape[1] != self.n_features:
            raise ValueError(
                f"activations: expected shape (T, {self.n_features}), got "
                f"{tuple(activations.shape)}"
            )
        t_rows = activations.shape[0]
        if points.ndim != 2 or points.shape[0] != t_rows or points.shape[1] != self.dim:
            raise ValueError(
                f"points: expected shape ({t_rows}, {self.dim}), got {tuple(points.shape)}"
            )
        for name, x in (("seq", seq), ("pos", pos)):
            if tuple(x.shape) != (t_rows,):
                raise ValueError(f"{name}: expected shape ({t_rows},), got {tuple(x.shape)}")
        if t_rows == 0:
            return
        if self.backend == "core":
            _core.sampler_update(
                self.keys,
                self.tb,
                self.acts,
                self.points,
                self.counts,
                self.act_sums,
                _cpu_array(activations, "activations", (np.float32, np.float64), np.float64),
                _cpu_array(points, "points", (np.float32, np.float64), np.float32),
                _cpu_array(seq, "seq", (np.int64,), np.int64),
                _cpu_array(pos, "pos", (np.int64,), np.int64),
                self.mode,
                self.seed & _M64,
                self.n_threads,
            )
        else:
            self._update_elementwise(activations, points, seq, pos)

    def _update_elementwise(self, activations: Any, points: Any, seq: Any, pos: Any) -> None:
        """:meth:`update` in array code (numpy or torch), for a batch of checked shapes."""
        o = self.ops
        # One full reduction doubles as the finiteness check (NaN and inf propagate; a sum
        # that overflows is checked entry by entry).
        with np.errstate(over="ignore"):
            finite_sum = o.all_finite(activations.sum())
        bad = None if finite_sum else o.first_nonfinite(activations)
        if bad is not None:
            r, c = bad
            raise ValueError(
                f"activations: non-finite value for feature {c} at sequence "
                f"{int(seq[r])}, position {int(pos[r])}"
            )
        bad = None if o.all_finite(points) else o.first_nonfinite(points)
        if bad is not None:
            r = bad[0]
            raise ValueError(
                f"points: non-finite support point at sequence {int(seq[r])}, "
                f"position {int(pos[r])}"
            )
        fires = activations > 0
        t, f = o.nonzero2(fires)
        a = activations[t, f]
        self.counts += o.bincount(f, self.n_features)
        self.act_sums += o.column_sums64(activations, fires, f, a, self.n_features)
        if t.shape[0] == 0:
            return
        seq64, pos64 = o.i64(seq), o.i64(pos)
        key = self._keys(a, seq64, pos64, t, f)
        tb = seq64[t] * (1 << _POS_BITS) + pos64[t]

        # Only candidates that beat the current worst kept entry of their feature can enter.
        # Slots are unordered; the worst is the largest (key, stream position).
        worst_key = self.keys.max(1)
        worst_key = worst_key.values if o.torch else worst_key
        at_worst = self.keys == worst_key[:, None]
        worst_tb = o.where(at_worst, self.tb, -1).max(1)
        worst_tb = worst_tb.values if o.torch else worst_tb
        thr, thr_tb = worst_key[f], worst_tb[f]
        idx = o.nonzero1((key < thr) | ((key == thr) & (tb < thr_tb)))
        if idx.shape[0] == 0:
            return
        t, f, key, tb, a = t[idx], f[idx], key[idx], tb[idx], a[idx]

        # Order candidates by (feature, key, stream position); at most n per feature can enter.
        # Rows usually arrive in stream order already, which saves one sort.
        order = o.arange(tb.shape[0]) if bool((tb[1:] >= tb[:-1]).all()) else o.argsort(tb)
        order = order[o.argsort(key[order])]
        order = order[o.argsort(f[order])]
        t, f, key, tb, a = t[order], f[order], key[order], tb[order], a[order]
        first = o.group_starts(f)
        gid = o.cumsum(o.i64(first)) - 1
        rank = o.arange(f.shape[0]) - o.nonzero1(first)[gid]
        sel = o.nonzero1(rank < self.n)
        t, f, key, tb, a, rank = (x[sel] for x in (t, f, key, tb, a, rank))
        first = o.group_starts(f)
        uniq = f[first]
        gid = o.cumsum(o.i64(first)) - 1
        nu = uniq.shape[0]

        # Per touched feature: the n best of (kept slots, new candidates).
        n = self.n
        new_keys = o.full((nu, n), math.inf, "f64")
        new_tb = o.full((nu, n), _EMPTY_TB, "i64")
        new_keys[gid, rank] = key
        new_tb[gid, rank] = tb
        cand_keys = o.cat([self.keys[uniq], new_keys], 1)
        cand_tb = o.cat([self.tb[uniq], new_tb], 1)
        perm = o.argsort(cand_tb, 1)
        perm = o.take_along(perm, o.argsort(o.take_along(cand_keys, perm, 1), 1), 1)[:, :n]
        chosen = o.zeros((nu, 2 * n), "i64")
        chosen = o.scatter_ones(chosen, perm)

        # Entering candidates take the slots of the dropped entries, row by row: both lists
        # come out of nonzero() sorted by row, with equal counts per row.
        free_r, free_c = o.nonzero2(chosen[:, :n] == 0)
        in_r, in_c = o.nonzero2(chosen[:, n:] > 0)
        if in_r.shape[0] == 0:
            return
        rows = uniq[free_r]
        pick = in_c  # rank of the candidate within its feature
        # Map (row, rank) back to the candidate's index in the filtered arrays.
        starts = o.nonzero1(first)
        cand = starts[in_r] + pick
        self.keys[rows, free_c] = key[cand]
        self.tb[rows, free_c] = tb[cand]
        self.acts[rows, free_c] = a[cand].float() if o.torch else a[cand]
        self.points[rows, free_c] = points[t[cand]]

    def _keys(self, a: Any, seq: Any, pos: Any, t: Any, f: Any) -> Any:
        """Keys of the firing entries ``(t, f)`` with activations ``a``."""
        o = self.ops
        a64 = o.f64(a)
        if self.mode == "top":
            return -a64
        if self._feature_hash is None:
            self._feature_hash = feature_hash(o.arange(self.n_features))
        tok = token_hash(self.seed, seq, pos)  # per token, not per firing entry
        bits = combine_hashes(tok[t], self._feature_hash[f])
        if o.torch and o.device.type != "cpu":
            return -o.log(_bits_to_uniform(bits)) / a64
        # On the CPU the keys come from the core's one implementation (see the module notes).
        keys = _core.sampler_keys(
            np.ascontiguousarray(o.numpy(bits)), np.ascontiguousarray(o.numpy(a64))
        )
        return o.from_numpy(keys) if o.torch else keys

    # ------------------------------------------------------------------ results
    @property
    def n_full(self) -> int:
        """Number of features whose sample already holds n positions."""
        self._check_open()
        return int((self.counts >= self.n).sum())

    def state_dict(self) -> dict[str, np.ndarray[Any, Any]]:
        """All buffers as numpy arrays (for checkpoints); see :meth:`load_state_dict`."""
        self._check_open()
        o = self.ops
        return {
            "keys": o.numpy(self.keys),
            "tb": o.numpy(self.tb),
            "acts": o.numpy(self.acts),
            "points": o.numpy(self.points),
            "counts": o.numpy(self.counts),
            "act_sums": o.numpy(self.act_sums),
        }

    def load_state_dict(self, state: dict[str, np.ndarray[Any, Any]]) -> None:
        """Restore buffers saved by :meth:`state_dict` (shapes must match)."""
        self._check_open()
        o = self.ops
        for name in ("keys", "tb", "acts", "points", "counts", "act_sums"):
            if name not in state:
                raise ValueError(f"sampler state: missing buffer {name!r}")
            cur = getattr(self, name)
            arr = np.asarray(state[name])
            if tuple(arr.shape) != tuple(cur.shape):
                raise ValueError(
                    f"sampler state: buffer {name!r} has shape {arr.shape}, expected "
                    f"{tuple(cur.shape)} (different features, n or reference dimension?)"
                )
            setattr(self, name, o.from_numpy(arr.astype(o.numpy(cur[:0]).dtype)))

    def result(self, *, in_place: bool = False) -> SampleArrays:
        """Return the samples in CSR layout (numpy), each feature's points sorted by key.

        Parameters
        ----------
        in_place : bool
            Sort and compact the support points inside the sampler's own buffer and return a
            view of it instead of a copy, so the largest array (``F * n * k * 4`` bytes) is
            never held twice. The sampler is finished afterwards: every other method raises
            ValueError. Default False (the sampler can go on).
        """
        self._check_open()
        st = self.state_dict()
        # Slots are unordered: sort each feature's entries by (key, stream position).
        order = np.argsort(st["tb"], axis=1, kind="stable")
        order = np.take_along_axis(
            order,
            np.argsort(np.take_along_axis(st["keys"], order, 1), axis=1, kind="stable"),
            1,
        )
        for name in ("keys", "tb", "acts"):
            st[name] = np.take_along_axis(st[name], order, 1)
        # Empty slots (key +inf) sort last: each feature's sample is a prefix of its row.
        valid = np.isfinite(st["keys"])
        sizes = valid.sum(1).astype(np.int64)
        offsets = np.zeros(self.n_features + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        # Row of the buffer of each kept point, in CSR order.
        flat = (order + np.arange(self.n_features)[:, None] * self.n)[valid]
        if in_place:
            points = _compact_rows(st["points"].reshape(-1, self.dim), flat, offsets)
            self._finished = True
        else:
            points = st["points"].reshape(-1, self.dim)[flat]
        acts = st["acts"][valid].astype(np.float32)
        tb = st["tb"][valid]
        if self.mode == "weighted":
            weights = np.repeat(1.0 / np.maximum(sizes, 1), sizes).astype(np.float32)
        else:
            owner = np.repeat(np.arange(self.n_features), sizes)
            sums = np.bincount(owner, weights=acts.astype(np.float64), minlength=self.n_features)
            per = sums[owner]
            weights = (acts / per).astype(np.float32)
        return SampleArrays(
            points=np.ascontiguousarray(points, dtype=np.float32),
            weights=weights,
            activations=acts,
            keys=st["keys"][valid].astype(np.float64),
            seq=(tb >> _POS_BITS).astype(np.int64),
            pos=(tb & _M32).astype(np.int64),
            offsets=offsets,
            firing_counts=st["counts"].astype(np.int64),
            activation_sums=st["act_sums"].astype(np.float64),
        )

    def _check_open(self) -> None:
        if self._finished:
            raise ValueError(
                "sampler: finished by result(in_place=True), its buffers hold the result now"
            )


#: Features whose support points :func:`_compact_rows` moves at a time.
_COMPACT_FEATURES = 64


def _compact_rows(
    rows: np.ndarray[Any, Any], flat: np.ndarray[Any, Any], offsets: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """``rows[flat]``, written over the first ``len(flat)`` rows of ``rows`` itself; a view.

    Feature ``f`` of the ``(F * n, k)`` buffer owns rows ``f * n:(f + 1) * n`` and its kept
    rows ``flat[offsets[f]:offsets[f + 1]]`` lie among them. A chunk of features is read into a
    small temporary before it is written, and its destination ends no later than the next
    chunk's rows begin (``offsets[f] <= f * n``), so nothing is overwritten unread.
    """
    n_features = offsets.shape[0] - 1
    for f0 in range(0, n_features, _COMPACT_FEATURES):
        lo, hi = offsets[f0], offsets[min(f0 + _COMPACT_FEATURES, n_features)]
        rows[lo:hi] = rows[flat[lo:hi]]
    return rows[: offsets[-1]]
