//! Binding of the Sinkhorn kernels: CSR arrays in, `(values, n_iter, converged)` out.

use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use super::{csr, detached, index_pairs, to_pyerr, with_dtype, Array1, Array2};
use crate::error::Error;
use crate::sinkhorn::{self, BulkResult, SinkhornParams};

type Out1<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<bool>>,
);
type Out2<'py> = (
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<u32>>,
    Bound<'py, PyArray2<bool>>,
);

fn params(reg: f64, p: f64, max_iter: usize, tol: f64, debiased: bool) -> PyResult<SinkhornParams> {
    let prm = SinkhornParams {
        reg,
        p,
        max_iter,
        tol,
        debiased,
    };
    prm.validate().map_err(to_pyerr)?;
    Ok(prm)
}

fn out1(py: Python<'_>, r: BulkResult) -> Out1<'_> {
    (
        r.0.into_pyarray(py),
        r.1.into_pyarray(py),
        r.2.into_pyarray(py),
    )
}

fn out2(py: Python<'_>, r: BulkResult, shape: (usize, usize)) -> PyResult<Out2<'_>> {
    let v = ndarray::Array2::from_shape_vec(shape, r.0)
        .map_err(|e| to_pyerr(Error::arg("values", e.to_string())))?;
    let n = ndarray::Array2::from_shape_vec(shape, r.1)
        .map_err(|e| to_pyerr(Error::arg("n_iter", e.to_string())))?;
    let c = ndarray::Array2::from_shape_vec(shape, r.2)
        .map_err(|e| to_pyerr(Error::arg("converged", e.to_string())))?;
    Ok((v.into_pyarray(py), n.into_pyarray(py), c.into_pyarray(py)))
}

/// Entropic OT for all pairs `(A[i], B[j])`; arrays of shape `(nA, nB)`.
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, points_b, weights_b, offsets_b, reg, p, max_iter, tol, debiased, n_threads=None))]
pub(crate) fn sinkhorn_cdist<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    points_b: Array2<'py>,
    weights_b: Array1<'py>,
    offsets_b: PyReadonlyArray1<'py, i64>,
    reg: f64,
    p: f64,
    max_iter: usize,
    tol: f64,
    debiased: bool,
    n_threads: Option<usize>,
) -> PyResult<Out2<'py>> {
    let prm = params(reg, p, max_iter, tol, debiased)?;
    let a = csr("A", points_a, weights_a, offsets_a)?;
    let b = csr("B", points_b, weights_b, offsets_b)?;
    with_dtype!((a, b), |T| {
        let (va, vb) = (a.view("A", n_threads)?, b.view("B", n_threads)?);
        let shape = (va.len(), vb.len());
        let res = detached(py, n_threads, |ex| {
            sinkhorn::sinkhorn_cdist(&va, &vb, &prm, ex)
        })?;
        out2(py, res, shape)
    })
}

/// Entropic OT for all pairs `i < j` of `A`, condensed (scipy `pdist` order).
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, reg, p, max_iter, tol, debiased, n_threads=None))]
pub(crate) fn sinkhorn_pdist<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    reg: f64,
    p: f64,
    max_iter: usize,
    tol: f64,
    debiased: bool,
    n_threads: Option<usize>,
) -> PyResult<Out1<'py>> {
    let prm = params(reg, p, max_iter, tol, debiased)?;
    let a = csr("A", points_a, weights_a, offsets_a)?;
    with_dtype!((a), |T| {
        let va = a.view("A", n_threads)?;
        let res = detached(py, n_threads, |ex| sinkhorn::sinkhorn_pdist(&va, &prm, ex))?;
        Ok(out1(py, res))
    })
}

/// Entropic OT for the pairs `(A[pairs[k, 0]], B[pairs[k, 1]])`.
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, points_b, weights_b, offsets_b, pairs, reg, p, max_iter, tol, debiased, n_threads=None))]
pub(crate) fn sinkhorn_pairs<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    points_b: Array2<'py>,
    weights_b: Array1<'py>,
    offsets_b: PyReadonlyArray1<'py, i64>,
    pairs: PyReadonlyArray2<'py, i64>,
    reg: f64,
    p: f64,
    max_iter: usize,
    tol: f64,
    debiased: bool,
    n_threads: Option<usize>,
) -> PyResult<Out1<'py>> {
    let prm = params(reg, p, max_iter, tol, debiased)?;
    let idx = index_pairs(&pairs, "pairs")?;
    let a = csr("A", points_a, weights_a, offsets_a)?;
    let b = csr("B", points_b, weights_b, offsets_b)?;
    with_dtype!((a, b), |T| {
        let (va, vb) = (a.view("A", n_threads)?, b.view("B", n_threads)?);
        let res = detached(py, n_threads, |ex| {
            sinkhorn::sinkhorn_pairs(&va, &vb, idx, &prm, ex)
        })?;
        Ok(out1(py, res))
    })
}
