//! placeholder
use pyo3::prelude::*;

#[pyfunction]
pub(crate) fn connected_components() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
#[pyfunction]
pub(crate) fn single_linkage() -> PyResult<()> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("todo"))
}
