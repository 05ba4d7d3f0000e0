//! Bindings of [`crate::linkage`]: union-find components, single-linkage trees and their cuts.

use numpy::ndarray::Array2;
use numpy::PyUntypedArrayMethods;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::{contiguous, contiguous1, detached, index_pairs, to_pyerr, Array1};
use crate::error::Error;
use crate::linkage::{self, MergeTree};
use crate::pairs::n_from_condensed;

/// A validated merge tree from an `(M, 4)` float64 linkage matrix.
fn tree(n: usize, merges: &PyReadonlyArray2<'_, f64>) -> PyResult<MergeTree> {
    let shape = merges.shape();
    if shape[1] != 4 {
        return Err(to_pyerr(Error::shape(
            "merges",
            "shape (M, 4)",
            format!("shape ({}, {})", shape[0], shape[1]),
        )));
    }
    MergeTree::from_linkage("merges", n, contiguous(merges, "merges")?).map_err(to_pyerr)
}

/// Canonical connected-component labels of the graph on `0..n` with `edges` (K x 2 int64).
#[pyfunction]
pub(crate) fn connected_components<'py>(
    py: Python<'py>,
    n: usize,
    edges: PyReadonlyArray2<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let edges = index_pairs(&edges, "edges")?;
    let labels = detached(py, Some(1), |_| linkage::connected_components(n, edges))?;
    Ok(labels.into_pyarray(py))
}

/// Single-linkage merges `(M, 4)` float64 `[id_a, id_b, distance, size]` (scipy convention)
/// of `n` points from candidate `pairs` (K x 2 int64) and `distances` (K float64).
#[pyfunction]
pub(crate) fn single_linkage<'py>(
    py: Python<'py>,
    n: usize,
    pairs: PyReadonlyArray2<'py, i64>,
    distances: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let pairs = index_pairs(&pairs, "pairs")?;
    let distances = contiguous1(&distances, "distances")?;
    let flat = detached(py, Some(1), |_| {
        linkage::single_linkage(n, pairs, distances).map(|t| t.to_linkage())
    })?;
    let rows = flat.len() / 4;
    let out = Array2::from_shape_vec((rows, 4), flat).expect("the linkage has 4 columns");
    Ok(out.into_pyarray(py))
}

/// Canonical labels of the tree `merges` (M x 4 float64 over `n` points) cut at `threshold`.
#[pyfunction]
pub(crate) fn cut_tree_threshold<'py>(
    py: Python<'py>,
    n: usize,
    merges: PyReadonlyArray2<'py, f64>,
    threshold: f64,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let t = tree(n, &merges)?;
    let labels = detached(py, Some(1), |_| t.labels_at(threshold))?;
    Ok(labels.into_pyarray(py))
}

/// Canonical labels of the tree `merges` (M x 4 float64 over `n` points) with `n_clusters`
/// clusters (or the forest's components when there are more).
#[pyfunction]
pub(crate) fn cut_tree_k<'py>(
    py: Python<'py>,
    n: usize,
    merges: PyReadonlyArray2<'py, f64>,
    n_clusters: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let t = tree(n, &merges)?;
    let labels = detached(py, Some(1), |_| t.labels_for(n_clusters))?;
    Ok(labels.into_pyarray(py))
}

/// Canonical labels of single linkage cut at `threshold` from a condensed (scipy `pdist`
/// order) float32 or float64 distance vector.
#[pyfunction]
#[pyo3(signature = (condensed_distances, threshold, n_threads=None))]
pub(crate) fn merge_by_threshold<'py>(
    py: Python<'py>,
    condensed_distances: Array1<'py>,
    threshold: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    const NAME: &str = "condensed_distances";
    let labels = match &condensed_distances {
        Array1::F32(a) => {
            let d = contiguous1(a, NAME)?;
            let n = n_from_condensed(NAME, d.len()).map_err(to_pyerr)?;
            detached(py, n_threads, |exec| {
                linkage::merge_by_threshold(n, d, threshold, exec)
            })?
        }
        Array1::F64(a) => {
            let d = contiguous1(a, NAME)?;
            let n = n_from_condensed(NAME, d.len()).map_err(to_pyerr)?;
            detached(py, n_threads, |exec| {
                linkage::merge_by_threshold(n, d, threshold, exec)
            })?
        }
    };
    Ok(labels.into_pyarray(py))
}
