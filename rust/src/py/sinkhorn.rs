//! placeholder
use pyo3::prelude::*;

#[pyfunction]
pub(crate) fn sinkhorn_cdist() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn sinkhorn_pdist() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn sinkhorn_pairs() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
