"""Reference spaces: where the support points of every feature live.

A feature's support points must live in one space shared by all features being compared, so
that a distance between a layer-6 feature and a layer-8 feature means something. Two ways:

- ``kind="same-context"`` (default): the support point of a sampled position is the hidden
  state at one *reference hook* (e.g. the later of two compared layers) at that position, read
  in the same forward pass.
- ``kind="linear-map"``: the hidden state at the feature's own hook, mapped to the reference
  hook's space by an affine map fitted by least squares on calibration tokens. Use it across
  corpora or models where positions cannot be re-read.

Then optionally a reduction to ``n_components`` dimensions (``"random"``: seeded Gaussian
projection scaled by ``1/sqrt(n_components)``; ``"pca"``: the top ``n_components`` principal
directions of the reference hook's hidden states on calibration tokens) and a per-point
normalisation (``"whiten"``: PCA whitening, the top ``n_components`` principal directions, at
most :data:`WHITEN_COMPONENTS` by default, each scaled to unit variance, so that Euclidean
distances weigh every direction of the residual stream by its spread instead of being
dominated by a few huge coordinates; ``"unit"``: unit L2 norm; ``"standardize"``:
per-coordinate mean 0 / variance 1; statistics of the calibration tokens).
The fitted arrays are stored with every collection so later runs reuse the same map
(:meth:`ReferenceMap.load`).

numpy only at import; :meth:`ReferenceMap.transform` works on numpy arrays and torch tensors.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from semot._utils.checks import (
    check_choice,
    check_optional_positive_int,
    check_positive_int,
    renamed_argument,
)
from semot.collection.models import layer_index

Kind = Literal["same-context", "linear-map"]
Reduce = Literal["random", "pca"]
Normalize = Literal["whiten", "unit", "standardize"]

KINDS: tuple[Kind, ...] = ("same-context", "linear-map")
REDUCTIONS: tuple[Reduce | None, ...] = (None, "random", "pca")
NORMALIZATIONS: tuple[Normalize | None, ...] = (None, "whiten", "unit", "standardize")
#: Principal directions kept by ``normalize="whiten"`` without ``n_components`` (at most the
#: reference width): the method study's best geometry (README, "Which method").
WHITEN_COMPONENTS = 128

_EPS = 1e-12


def default_reference_hook(hooks: Sequence[str]) -> str:
    """Return the reference hook :func:`semot.collect` uses when none is given.

    That is the latest of ``hooks`` by transformer block (the ``i`` of ``blocks.<i>.``), so
    that features of earlier layers are compared in the space of the last one; on ties, and
    among hooks without a block number, the last one given.

    Parameters
    ----------
    hooks : sequence of str
        The hooks of the sites being collected (``[site.hook for site in sites]``).
    """
    if not hooks:
        raise ValueError("hooks: give at least one hook")
    best, best_layer = hooks[-1], -1
    for hook in hooks:
        layer = layer_index(hook)
        if layer is None:
            layer = -1
        if layer >= best_layer:
            best, best_layer = hook, layer
    return best


_K_RENAMED = (
    "k: the reduced dimension of a reference space is now called n_components; "
    "k will be removed in semot 0.3"
)


def n_components_or_deprecated_k(
    n_components: int | None, k: int | None, *, stacklevel: int
) -> int | None:
    """Return ``n_components``, or the value of its deprecated alias ``k`` (with a warning).

    The rename policy of :func:`semot._utils.checks.renamed_argument`: a DeprecationWarning
    for ``k``, a TypeError when both are given.

    Parameters
    ----------
    n_components, k : int or None
        The reduced dimension under its name and under its old name.
    stacklevel : int
        Frames between the caller of this function and the user's code that passed ``k``
        (1: the caller itself was called by the user).
    """
    out: int | None = renamed_argument(
        n_components, k, "n_components", "k",
        reason=" (k means targets per source in semot)", stacklevel=stacklevel + 3,
    )  # fmt: skip
    return out


@dataclass(frozen=True, init=False)
class ReferenceSpec:
    """What defines a reference space (recorded in every output's metadata).

    Attributes
    ----------
    hook : str
        Reference hook (its hidden states define the space).
    kind : {"same-context", "linear-map"}
        Read the reference hook at the sampled positions, or map the feature's own hook.
    reduce : {"random", "pca"} or None
        Dimension reduction.
    n_components : int or None
        Dimension of the space after ``reduce`` (required with it) or of ``"whiten"``
        (default ``min(WHITEN_COMPONENTS, width)``): the number of columns of the projection.
        The keyword ``k`` is a deprecated alias.
    normalize : {"whiten", "unit", "standardize"} or None
        Per-point normalisation, after reduction. ``"whiten"`` is PCA whitening (``reduce``
        None or ``"pca"``).
    seed : int
        Seed of the random projection.
    calibration_tokens : int
        Tokens read to fit the PCA, the standardisation and the linear maps.
    """

    hook: str
    kind: Kind = "same-context"
    reduce: Reduce | None = None
    n_components: int | None = None
    normalize: Normalize | None = None
    seed: int = 0
    calibration_tokens: int = 65536

    def __init__(
        self,
        hook: str,
        kind: Kind = "same-context",
        reduce: Reduce | None = None,
        n_components: int | None = None,
        normalize: Normalize | None = None,
        seed: int = 0,
        calibration_tokens: int = 65536,
        *,
        k: int | None = None,
    ) -> None:
        n_components = n_components_or_deprecated_k(n_components, k, stacklevel=1)
        if not isinstance(hook, str):
            raise TypeError(f"hook: expected a hook name, got {type(hook).__name__}")
        if not hook:
            raise ValueError("hook: expected a hook name, got ''")
        check_choice(kind, "kind", KINDS)
        check_choice(reduce, "reduce", REDUCTIONS)
        n_components = check_optional_positive_int(n_components, "n_components")
        if reduce is not None and n_components is None:
            raise ValueError(f"n_components: reduce={reduce!r} needs the reduced dimension")
        check_choice(normalize, "normalize", NORMALIZATIONS)
        if reduce is None and n_components is not None and normalize != "whiten":
            raise ValueError("n_components: given without reduce; pass reduce='random' or 'pca'")
        if normalize == "whiten" and reduce == "random":
            raise ValueError(
                "normalize: 'whiten' rotates onto principal directions; use reduce='pca' or "
                "None with it, not 'random'"
            )
        values = {
            "hook": hook,
            "kind": kind,
            "reduce": reduce,
            "n_components": n_components,
            "normalize": normalize,
            "seed": seed,
            "calibration_tokens": check_positive_int(calibration_tokens, "calibration_tokens"),
        }
        for name, value in values.items():
            # A frozen dataclass is filled through object.__setattr__.
            object.__setattr__(self, name, value)

    @property
    def k(self) -> int | None:
        """Deprecated name of :attr:`n_components`."""
        warnings.warn(_K_RENAMED, DeprecationWarning, stacklevel=2)
        return self.n_components

    @property
    def needs_calibration(self) -> bool:
        """Whether fitting needs a pass over calibration tokens."""
        return (
            self.kind == "linear-map"
            or self.reduce == "pca"
            or self.normalize in ("standardize", "whiten")
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ReferenceSpec:
        """Rebuild from :meth:`to_dict` (other keys are ignored).

        Records written before ``k`` was renamed ``n_components`` (semot 0.1 runs) load too.
        """
        fields = {name: record[name] for name in cls.__dataclass_fields__ if name in record}
        if "k" in record and "n_components" not in record:
            fields["n_components"] = record["k"]
        return cls(**fields)


def _np(x: Any) -> npt.NDArray[np.float64]:
    return np.asarray(x, dtype=np.float64)


@dataclass
class ReferenceMap:
    """A fitted reference space: :class:`ReferenceSpec` plus its arrays.

    Attributes
    ----------
    spec : ReferenceSpec
    d_ref : int
        Width of the reference hook.
    arrays : dict of str to numpy.ndarray
        ``projection`` (d_ref, n_components), ``center`` (d_ref,) for PCA, ``mean``/``std``
        (dim,) for
        standardisation, ``linear/<hook>/W`` (d_in, d_ref) and ``linear/<hook>/b`` (d_ref,)
        per feature hook for ``kind="linear-map"``.
    """

    spec: ReferenceSpec
    d_ref: int
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        """Dimension of the support points: the projection's columns, else the reference width."""
        if "projection" in self.arrays:
            return int(self.arrays["projection"].shape[1])
        return self.d_ref

    def input_hook(self, feature_hook: str) -> str:
        """Return the hook whose states are transformed for features read at ``feature_hook``."""
        return feature_hook if self.spec.kind == "linear-map" else self.spec.hook

    def _arr(self, name: str, like: Any) -> Any:
        arr = self.arrays[name]
        # numpy >= 2 arrays have a .device too (the array API's); only tensors get tensors.
        if hasattr(like, "device") and not isinstance(like, np.ndarray):
            key = (name, str(like.device))
            if key not in self._cache:
                import torch

                self._cache[key] = torch.tensor(
                    np.asarray(arr, dtype=np.float32), device=like.device
                )
            return self._cache[key]
        return np.asarray(arr, dtype=np.float32)

    def transform(self, hidden: Any, feature_hook: str) -> Any:
        """Support points ``(T, dim)`` of hidden states ``(T, d)`` read at :meth:`input_hook`.

        Works on float numpy arrays and torch tensors (on their device); computes in float32.
        """
        x = hidden.float() if hasattr(hidden, "float") else np.asarray(hidden, dtype=np.float32)
        if self.spec.kind == "linear-map":
            name = f"linear/{feature_hook}/W"
            if name not in self.arrays:
                raise ValueError(
                    f"reference: no fitted linear map for hook {feature_hook!r}; fitted hooks "
                    f"are {sorted(self.linear_hooks)}"
                )
            x = x @ self._arr(name, x) + self._arr(f"linear/{feature_hook}/b", x)
        if x.shape[-1] != self.d_ref:
            raise ValueError(
                f"reference: hidden states have width {x.shape[-1]}, the reference space "
                f"{self.spec.hook!r} has width {self.d_ref}"
            )
        if "center" in self.arrays:
            x = x - self._arr("center", x)
        if "projection" in self.arrays:
            x = x @ self._arr("projection", x)
        if self.spec.normalize == "unit":
            if hasattr(x, "norm"):
                x = x / x.norm(dim=-1, keepdim=True).clamp(min=_EPS)
            else:
                x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)
        elif self.spec.normalize in ("standardize", "whiten"):
            x = (x - self._arr("mean", x)) / self._arr("std", x)
        return x

    @property
    def linear_hooks(self) -> list[str]:
        """Feature hooks with a fitted linear map."""
        return sorted({name.split("/")[1] for name in self.arrays if name.startswith("linear/")})

    # ------------------------------------------------------------------ (de)serialisation
    def to_metadata(self) -> dict[str, Any]:
        """JSON record of the spec and reference width."""
        return {**self.spec.to_dict(), "d_ref": self.d_ref, "dim": self.dim}

    @classmethod
    def from_parts(
        cls, metadata: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]
    ) -> ReferenceMap:
        """Rebuild from :meth:`to_metadata` and the stored arrays."""
        spec = ReferenceSpec.from_dict(metadata)
        return cls(
            spec,
            int(metadata["d_ref"]),
            {name: np.asarray(value) for name, value in arrays.items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> ReferenceMap:
        """Load the reference map stored with a collection run (a FeatureDistributions dir)."""
        from semot.features.container import FeatureDistributions

        fd = FeatureDistributions.load(path)
        meta = fd.metadata.get("reference")
        if not isinstance(meta, dict) or "d_ref" not in meta:
            raise ValueError(f"{path}: no reference map recorded in this run's metadata")
        return cls.from_parts(meta, dict(fd.reference_arrays or {}))

    def fingerprint(self) -> str:
        """Short hash of the spec and arrays (to check a resumed run uses the same map)."""
        h = hashlib.sha256(json.dumps(self.to_metadata(), sort_keys=True).encode())
        for name in sorted(self.arrays):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.arrays[name]).tobytes())
        return h.hexdigest()[:16]


class Moments:
    """Streaming first and second moments (float64) of rows, optionally against a second set."""

    def __init__(self) -> None:
        self.n = 0
        self.sx: Any = None
        self.sxx: Any = None
        self.sy: Any = None
        self.sxy: Any = None

    def add(self, x: Any, y: Any = None) -> None:
        """Accumulate rows ``x`` (T, d) (and the matching rows ``y`` (T, e))."""
        x64 = x.double() if hasattr(x, "double") else np.asarray(x, dtype=np.float64)
        upd = {"sx": x64.sum(0), "sxx": x64.T @ x64}
        if y is not None:
            y64 = y.double() if hasattr(y, "double") else np.asarray(y, dtype=np.float64)
            upd["sy"] = y64.sum(0)
            upd["sxy"] = x64.T @ y64
        for name, value in upd.items():
            cur = getattr(self, name)
            setattr(self, name, value if cur is None else cur + value)
        self.n += int(x64.shape[0])

    def numpy(self, name: str) -> npt.NDArray[np.float64]:
        """One accumulated moment as a float64 numpy array."""
        v = getattr(self, name)
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        return _np(v)


def random_projection(d: int, n_components: int, seed: int) -> npt.NDArray[np.float32]:
    """Gaussian projection ``(d, n_components)`` with entries ``N(0, 1/n_components)``.

    Drawn with numpy ``default_rng(seed).standard_normal``.
    """
    rng = np.random.default_rng(seed)
    gaussian = rng.standard_normal((d, n_components))
    proj: npt.NDArray[np.float32] = (gaussian / np.sqrt(n_components)).astype(np.float32)
    return proj


def fit_reference(
    spec: ReferenceSpec,
    d_ref: int,
    ref_moments: Moments | None = None,
    site_moments: Mapping[str, Moments] | None = None,
) -> ReferenceMap:
    """Fit a :class:`ReferenceMap` from calibration moments.

    Parameters
    ----------
    spec : ReferenceSpec
    d_ref : int
        Width of the reference hook.
    ref_moments : Moments, optional
        Moments of the reference hook's hidden states (needed for PCA and standardisation).
    site_moments : mapping of hook name to Moments, optional
        For ``kind="linear-map"``: moments of each feature hook's states ``x`` against the
        reference states ``y`` at the same tokens. The map minimises
        ``sum_t ||x_t W + b - y_t||^2`` (normal equations, ridge ``1e-8 * trace / d``).
    """
    arrays: dict[str, npt.NDArray[Any]] = {}
    needs_ref = spec.reduce == "pca" or spec.normalize in ("standardize", "whiten")
    if needs_ref and (ref_moments is None or ref_moments.n < 2):
        raise ValueError("reference: PCA / standardisation need at least 2 calibration tokens")
    pca_components = spec.n_components if spec.reduce == "pca" else None
    if spec.normalize == "whiten":
        pca_components = spec.n_components or min(WHITEN_COMPONENTS, d_ref)
    mean = cov = None
    if ref_moments is not None and ref_moments.n >= 2:
        n = ref_moments.n
        mean = ref_moments.numpy("sx") / n
        cov = (ref_moments.numpy("sxx") - n * np.outer(mean, mean)) / (n - 1)
    if spec.kind == "linear-map":
        if not site_moments:
            raise ValueError("reference: linear-map needs calibration states of feature hooks")
        for hook, m in site_moments.items():
            if m.n < 2:
                raise ValueError(f"reference: too few calibration tokens for hook {hook!r}")
            d_in = m.numpy("sx").shape[0]
            # Augmented normal equations for [x, 1] -> y.
            g = np.zeros((d_in + 1, d_in + 1))
            g[:d_in, :d_in] = m.numpy("sxx")
            g[:d_in, d_in] = g[d_in, :d_in] = m.numpy("sx")
            g[d_in, d_in] = m.n
            rhs = np.vstack([m.numpy("sxy"), m.numpy("sy")[None, :]])
            ridge = 1e-8 * np.trace(g) / (d_in + 1)
            beta = np.linalg.solve(g + ridge * np.eye(d_in + 1), rhs)
            arrays[f"linear/{hook}/W"] = beta[:d_in].astype(np.float32)
            arrays[f"linear/{hook}/b"] = beta[d_in].astype(np.float32)
    proj: npt.NDArray[Any] | None = None
    center = np.zeros(d_ref)
    if spec.reduce == "random":
        assert spec.n_components is not None  # ReferenceSpec requires it with reduce
        proj = random_projection(d_ref, spec.n_components, spec.seed)
    elif pca_components is not None:
        assert cov is not None and mean is not None
        n_components = pca_components
        if n_components > d_ref:
            raise ValueError(f"n_components: {n_components} exceeds the reference width {d_ref}")
        vals, vecs = np.linalg.eigh(cov)
        top = vecs[:, ::-1][:, :n_components]
        # Fix each direction's sign (largest |entry| positive) so fits are reproducible.
        signs = np.sign(top[np.argmax(np.abs(top), axis=0), np.arange(n_components)])
        proj = (top * np.where(signs == 0, 1.0, signs)).astype(np.float32)
        center = mean
        arrays["center"] = mean.astype(np.float32)
        del vals
    if proj is not None:
        arrays["projection"] = proj
    if spec.normalize in ("standardize", "whiten"):
        # Standardised principal coordinates are whitened: they are uncorrelated.
        assert cov is not None and mean is not None
        p = proj if proj is not None else np.eye(d_ref)
        mu = (mean - center) @ p
        var = np.einsum("ik,ij,jk->k", p, cov, p)
        arrays["mean"] = mu.astype(np.float32)
        arrays["std"] = np.sqrt(np.maximum(var, _EPS)).astype(np.float32)
    return ReferenceMap(spec, int(d_ref), arrays)
