//! Bindings of the sliced Wasserstein and quantile-embedding kernels.

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::{
    contiguous, contiguous1, csr, detached, index_pairs, to_pyerr, with_dtype, Array1, Array2, Csr,
    CsrSet,
};
use crate::float::Real;
use crate::projections::Projections;
use crate::{clouds, quantile, sliced, wasserstein1d};

fn dtype_mismatch() -> PyErr {
    PyTypeError::new_err("projections must have the dtype of the points (float32 or float64)")
}

/// The projection matrix as an array of the clouds' dtype, if it has that dtype.
trait FromArray2: numpy::Element + Sized {
    fn from_array2(a: Array2<'_>) -> Option<PyReadonlyArray2<'_, Self>>;
}

impl FromArray2 for f32 {
    fn from_array2(a: Array2<'_>) -> Option<PyReadonlyArray2<'_, Self>> {
        match a {
            Array2::F32(x) => Some(x),
            Array2::F64(_) => None,
        }
    }
}

impl FromArray2 for f64 {
    fn from_array2(a: Array2<'_>) -> Option<PyReadonlyArray2<'_, Self>> {
        match a {
            Array2::F64(x) => Some(x),
            Array2::F32(_) => None,
        }
    }
}

/// [`with_dtype!`] over the sets of clouds, with the projection matrix `$proj` taken in the
/// same dtype as `$pr`.
macro_rules! dispatch {
    (($($set:ident),+), $proj:ident, |$t:ident, $pr:ident| $body:expr) => {
        with_dtype!(($($set),+), |$t| {
            match <$t as FromArray2>::from_array2($proj) {
                Some($pr) => $body,
                None => Err(dtype_mismatch()),
            }
        })
    };
}

fn projections<'a, T: Real + numpy::Element>(
    arr: &'a PyReadonlyArray2<'_, T>,
) -> PyResult<Projections<'a, T>> {
    let shape = arr.shape();
    Projections::new(contiguous(arr, "projections")?, shape[0], shape[1]).map_err(to_pyerr)
}

fn reshape(
    py: Python<'_>,
    v: Vec<f64>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'_, PyArray2<f64>>> {
    v.into_pyarray(py).reshape([rows, cols])
}

/// Random unit directions, shape `(d, n_projections)`, from the explicit generator.
#[pyfunction]
pub(crate) fn random_projections(
    py: Python<'_>,
    d: usize,
    n_projections: usize,
    seed: u64,
) -> PyResult<Bound<'_, PyArray2<f64>>> {
    let v = super::detach_guarded(py, || {
        crate::projections::random_directions(d, n_projections, seed)
    })
    .map_err(to_pyerr)?;
    reshape(py, v, d, n_projections)
}

fn cdist_impl<T: Real + numpy::Element>(
    py: Python<'_>,
    a: &Csr<'_, T>,
    b: &Csr<'_, T>,
    proj: &PyReadonlyArray2<'_, T>,
    p: f64,
    n_threads: Option<usize>,
) -> PyResult<Vec<f64>> {
    let (va, vb, pr) = (
        a.view("A", n_threads)?,
        b.view("B", n_threads)?,
        projections(proj)?,
    );
    detached(py, n_threads, |ex| sliced::cdist(&va, &vb, &pr, p, ex))
}

/// Exact sliced Wasserstein distances between all clouds of A and all clouds of B.
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, points_b, weights_b, offsets_b, projections, p, n_threads=None))]
pub(crate) fn sw_cdist<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    points_b: Array2<'py>,
    weights_b: Array1<'py>,
    offsets_b: PyReadonlyArray1<'py, i64>,
    projections: Array2<'py>,
    p: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let a = csr("A", points_a, weights_a, offsets_a)?;
    let b = csr("B", points_b, weights_b, offsets_b)?;
    let (na, nb) = (a_len(&a), a_len(&b));
    let out = dispatch!((a, b), projections, |T, pr| cdist_impl(
        py, &a, &b, &pr, p, n_threads
    ))?;
    reshape(py, out, na, nb)
}

fn a_len(set: &CsrSet<'_>) -> usize {
    match set {
        CsrSet::F32(c) => c.n_clouds(),
        CsrSet::F64(c) => c.n_clouds(),
    }
}

/// How many pairs of `sw_cdist` on these sets (with order `p`) take the matrix-product path
/// ([`sliced::Route`]); 0 when every pair is merged.
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, points_b, weights_b, offsets_b, p))]
pub(crate) fn sw_gemm_pairs<'py>(
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    points_b: Array2<'py>,
    weights_b: Array1<'py>,
    offsets_b: PyReadonlyArray1<'py, i64>,
    p: f64,
) -> PyResult<usize> {
    let a = csr("A", points_a, weights_a, offsets_a)?;
    let b = csr("B", points_b, weights_b, offsets_b)?;
    with_dtype!((a, b), |T| {
        let (va, vb) = (a.view("A", None)?, b.view("B", None)?);
        wasserstein1d::check_p(p).map_err(to_pyerr)?;
        Ok(sliced::Route::of(&va, &vb, p).map_or(0, |r| r.pairs()))
    })
}

/// Exact sliced Wasserstein distances between all pairs of clouds of A (condensed).
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, projections, p, n_threads=None))]
pub(crate) fn sw_pdist<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    projections: Array2<'py>,
    p: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let a = csr("A", points_a, weights_a, offsets_a)?;
    let out = dispatch!((a), projections, |T, pr| {
        let (va, pr) = (a.view("A", n_threads)?, self::projections(&pr)?);
        detached(py, n_threads, |ex| sliced::pdist(&va, &pr, p, ex))
    })?;
    Ok(out.into_pyarray(py))
}

/// Exact sliced Wasserstein distances for the given `(K, 2)` pairs of cloud indices.
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, points_b, weights_b, offsets_b, pairs, projections, p, n_threads=None))]
pub(crate) fn sw_pairs<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    points_b: Array2<'py>,
    weights_b: Array1<'py>,
    offsets_b: PyReadonlyArray1<'py, i64>,
    pairs: PyReadonlyArray2<'py, i64>,
    projections: Array2<'py>,
    p: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let a = csr("A", points_a, weights_a, offsets_a)?;
    let b = csr("B", points_b, weights_b, offsets_b)?;
    let idx = index_pairs(&pairs, "pairs")?;
    let out = dispatch!((a, b), projections, |T, pr| {
        let (va, vb, pr) = (
            a.view("A", n_threads)?,
            b.view("B", n_threads)?,
            self::projections(&pr)?,
        );
        detached(py, n_threads, |ex| sliced::pairs(&va, &vb, idx, &pr, p, ex))
    })?;
    Ok(out.into_pyarray(py))
}

/// Quantile embeddings `(N, L * n_quantiles)` in the dtype of the points.
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, projections, n_quantiles, p, n_threads=None))]
pub(crate) fn quantile_embedding<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    projections: Array2<'py>,
    n_quantiles: usize,
    p: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let a = csr("A", points_a, weights_a, offsets_a)?;
    dispatch!((a), projections, |T, pr| {
        let (va, pr) = (a.view("A", n_threads)?, self::projections(&pr)?);
        let width = pr.len() * n_quantiles;
        let e = detached(py, n_threads, |ex| {
            quantile::embedding(&va, "A", &pr, n_quantiles, p, ex)
        })?;
        let rows = va.len();
        Ok(e.into_pyarray(py).reshape([rows, width])?.into_any())
    })
}

/// Distances between quantile embeddings of A and B (Minkowski-p; a matrix product for p=2).
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, points_b, weights_b, offsets_b, projections, n_quantiles, p, n_threads=None))]
pub(crate) fn quantile_cdist<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    points_b: Array2<'py>,
    weights_b: Array1<'py>,
    offsets_b: PyReadonlyArray1<'py, i64>,
    projections: Array2<'py>,
    n_quantiles: usize,
    p: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let a = csr("A", points_a, weights_a, offsets_a)?;
    let b = csr("B", points_b, weights_b, offsets_b)?;
    let (na, nb) = (a_len(&a), a_len(&b));
    let out = dispatch!((a, b), projections, |T, pr| {
        let (va, vb, pr) = (
            a.view("A", n_threads)?,
            b.view("B", n_threads)?,
            self::projections(&pr)?,
        );
        // Level-major embeddings: the distances are the same, without transposes.
        let ea = quantile::Embedder::new(&va, "A", &pr, n_quantiles, p)
            .map_err(to_pyerr)?
            .by_level();
        let eb = quantile::Embedder::new(&vb, "B", &pr, n_quantiles, p)
            .map_err(to_pyerr)?
            .by_level();
        detached(py, n_threads, |ex| {
            quantile::minkowski_cdist(&ea, &eb, p, ex)
        })
    })?;
    reshape(py, out, na, nb)
}

/// Distances between quantile embeddings of all pairs of A (condensed).
#[pyfunction]
#[pyo3(signature = (points_a, weights_a, offsets_a, projections, n_quantiles, p, n_threads=None))]
pub(crate) fn quantile_pdist<'py>(
    py: Python<'py>,
    points_a: Array2<'py>,
    weights_a: Array1<'py>,
    offsets_a: PyReadonlyArray1<'py, i64>,
    projections: Array2<'py>,
    n_quantiles: usize,
    p: f64,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let a = csr("A", points_a, weights_a, offsets_a)?;
    let out = dispatch!((a), projections, |T, pr| {
        let (va, pr) = (a.view("A", n_threads)?, self::projections(&pr)?);
        detached(py, n_threads, |ex| {
            let embedder = quantile::Embedder::new(&va, "A", &pr, n_quantiles, p)?.by_level();
            quantile::minkowski_pdist(embedder.all(ex)?, embedder.width(), p, ex)
        })
    })?;
    Ok(out.into_pyarray(py))
}

fn w1d_impl<T: Real + numpy::Element>(
    py: Python<'_>,
    u: &PyReadonlyArray1<'_, T>,
    v: &PyReadonlyArray1<'_, T>,
    uw: Option<&PyReadonlyArray1<'_, T>>,
    vw: Option<&PyReadonlyArray1<'_, T>>,
    p: f64,
) -> PyResult<f64> {
    let sl = |a: &PyReadonlyArray1<'_, T>, name: &str| -> PyResult<Vec<T>> {
        contiguous1(a, name).map(<[T]>::to_vec)
    };
    let (u, v) = (sl(u, "u_values")?, sl(v, "v_values")?);
    let uw = uw.map(|w| sl(w, "u_weights")).transpose()?;
    let vw = vw.map(|w| sl(w, "v_weights")).transpose()?;
    super::detach_guarded(py, || {
        wasserstein1d::wasserstein_1d_pow(&u, &v, uw.as_deref(), vw.as_deref(), p)
    })
    .map_err(to_pyerr)
}

/// `W_p^p` between two weighted samples on the line.
#[pyfunction]
#[pyo3(signature = (u_values, v_values, u_weights, v_weights, p))]
pub(crate) fn wasserstein_1d<'py>(
    py: Python<'py>,
    u_values: Array1<'py>,
    v_values: Array1<'py>,
    u_weights: Option<Array1<'py>>,
    v_weights: Option<Array1<'py>>,
    p: f64,
) -> PyResult<f64> {
    match (u_values, v_values, u_weights, v_weights) {
        (Array1::F64(u), Array1::F64(v), uw, vw) => {
            let uw = match uw {
                Some(Array1::F64(w)) => Some(w),
                None => None,
                Some(Array1::F32(_)) => return Err(dtype_mismatch_1d()),
            };
            let vw = match vw {
                Some(Array1::F64(w)) => Some(w),
                None => None,
                Some(Array1::F32(_)) => return Err(dtype_mismatch_1d()),
            };
            w1d_impl(py, &u, &v, uw.as_ref(), vw.as_ref(), p)
        }
        _ => Err(dtype_mismatch_1d()),
    }
}

fn dtype_mismatch_1d() -> PyErr {
    PyTypeError::new_err("wasserstein_1d takes float64 arrays")
}

/// The largest `|x|` of a 2-D float array (NaN where some value is NaN), in parallel: the
/// range check of `prescale`, one pass over the points where `max()` and `min()` took two.
#[pyfunction]
#[pyo3(signature = (values, n_threads=None))]
pub(crate) fn max_abs(
    py: Python<'_>,
    values: Array2<'_>,
    n_threads: Option<usize>,
) -> PyResult<f64> {
    match values {
        Array2::F32(v) => {
            let data = contiguous(&v, "values")?;
            detached(py, n_threads, |ex| clouds::max_abs(data, ex))
        }
        Array2::F64(v) => {
            let data = contiguous(&v, "values")?;
            detached(py, n_threads, |ex| clouds::max_abs(data, ex))
        }
    }
}
