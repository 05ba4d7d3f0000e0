# Type stubs of the native module semot._core (Rust, pyo3). Checked by mypy.stubtest.
# The public, documented API lives in the Python modules; these functions take exactly
# C-contiguous float32/float64 arrays and int64 offsets, already validated and normalised.
import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_I = npt.NDArray[np.int64]
_D = npt.NDArray[np.float64]

__version__: str
# Rows per matrix-product block of the quantile/Gram kernels (row stripes start at multiples).
GEMM_ROWS: int
# Pairs from which sliced cdist/pdist (p = 2) send the pairs with a routed cloud to the product.
GEMM_MIN_PAIRS: int
# The exact merge's kernel in this process: "avx512", "avx2", "neon" or "scalar"
# (SEMOT_SIMD=off|avx2|avx512 overrides the choice).
SIMD_KERNEL: str

# --- sliced Wasserstein and quantile embeddings -------------------------------------------
def random_projections(d: int, n_projections: int, seed: int) -> _D: ...
def max_abs(values: _F, n_threads: int | None = None) -> float: ...
def sw_cdist(
    points_a: _F, weights_a: _F, offsets_a: _I,
    points_b: _F, weights_b: _F, offsets_b: _I,
    projections: _F, p: float, n_threads: int | None = None,
) -> _D: ...  # fmt: skip
def sw_gemm_pairs(
    points_a: _F, weights_a: _F, offsets_a: _I,
    points_b: _F, weights_b: _F, offsets_b: _I, p: float,
) -> int: ...  # fmt: skip
def sw_pdist(
    points_a: _F, weights_a: _F, offsets_a: _I, projections: _F, p: float,
    n_threads: int | None = None,
) -> _D: ...  # fmt: skip
def sw_pairs(
    points_a: _F, weights_a: _F, offsets_a: _I,
    points_b: _F, weights_b: _F, offsets_b: _I,
    pairs: _I, projections: _F, p: float, n_threads: int | None = None,
) -> _D: ...  # fmt: skip
def quantile_embedding(
    points_a: _F, weights_a: _F, offsets_a: _I, projections: _F, n_quantiles: int, p: float,
    n_threads: int | None = None,
) -> _F: ...  # fmt: skip
def quantile_cdist(
    points_a: _F, weights_a: _F, offsets_a: _I,
    points_b: _F, weights_b: _F, offsets_b: _I,
    projections: _F, n_quantiles: int, p: float, n_threads: int | None = None,
) -> _D: ...  # fmt: skip
def quantile_pdist(
    points_a: _F, weights_a: _F, offsets_a: _I, projections: _F, n_quantiles: int, p: float,
    n_threads: int | None = None,
) -> _D: ...  # fmt: skip
def wasserstein_1d(
    u_values: _D, v_values: _D, u_weights: _D | None, v_weights: _D | None, p: float
) -> float: ...

# --- union-find and single linkage --------------------------------------------------------
def connected_components(n: int, edges: _I) -> _I: ...
def single_linkage(n: int, pairs: _I, distances: _D) -> _D: ...
def cut_tree_threshold(n: int, merges: _D, threshold: float) -> _I: ...
def cut_tree_k(n: int, merges: _D, n_clusters: int) -> _I: ...
def merge_by_threshold(
    condensed_distances: _F, threshold: float, n_threads: int | None = None
) -> _I: ...

# --- Sinkhorn ------------------------------------------------------------------------------
_S = tuple[_D, npt.NDArray[np.uint32], npt.NDArray[np.bool_]]

def sinkhorn_cdist(
    points_a: _F, weights_a: _F, offsets_a: _I,
    points_b: _F, weights_b: _F, offsets_b: _I,
    reg: float, p: float, max_iter: int, tol: float, debiased: bool,
    n_threads: int | None = None,
) -> _S: ...  # fmt: skip
def sinkhorn_pdist(
    points_a: _F, weights_a: _F, offsets_a: _I,
    reg: float, p: float, max_iter: int, tol: float, debiased: bool,
    n_threads: int | None = None,
) -> _S: ...  # fmt: skip
def sinkhorn_pairs(
    points_a: _F, weights_a: _F, offsets_a: _I,
    points_b: _F, weights_b: _F, offsets_b: _I,
    pairs: _I, reg: float, p: float, max_iter: int, tol: float, debiased: bool,
    n_threads: int | None = None,
) -> _S: ...  # fmt: skip

# --- streaming feature samplers -----------------------------------------------------------
# FeatureSampler's six buffers are updated in place; activations and points are float32 or
# float64, seq and pos int64, all C-contiguous. mode is "weighted" or "top".
def sampler_update(
    keys: _D, tb: _I, acts: npt.NDArray[np.float32], points_buffer: npt.NDArray[np.float32],
    counts: _I, act_sums: _D, activations: _F, points: _F, seq: _I, pos: _I,
    mode: str, seed: int, n_threads: int | None = None,
) -> None: ...  # fmt: skip
def sampler_keys(bits: _I, activations: _D) -> _D: ...
