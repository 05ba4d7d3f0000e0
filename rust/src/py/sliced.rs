//! placeholder
use pyo3::prelude::*;
#[pyfunction]
pub(crate) fn quantile_cdist() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn quantile_embedding() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn quantile_pdist() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn random_projections() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn sw_cdist() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn sw_pairs() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn sw_pdist() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn wasserstein_1d() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
