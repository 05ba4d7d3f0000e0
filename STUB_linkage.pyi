# Declarations of the linkage functions of semot._core (merge into python/semot/_core.pyi).
import numpy as np
import numpy.typing as npt

def connected_components(n: int, edges: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def single_linkage(
    n: int, pairs: npt.NDArray[np.int64], distances: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]: ...
def cut_tree_threshold(
    n: int, merges: npt.NDArray[np.float64], threshold: float
) -> npt.NDArray[np.int64]: ...
def cut_tree_k(
    n: int, merges: npt.NDArray[np.float64], n_clusters: int
) -> npt.NDArray[np.int64]: ...
def merge_by_threshold(
    condensed_distances: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    threshold: float,
    n_threads: int | None = None,
) -> npt.NDArray[np.int64]: ...
