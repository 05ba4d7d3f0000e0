//! The Python binding: the only module that names pyo3 or numpy.
//!
//! It converts arrays (exact dtypes, C-contiguous; the Python layer has already normalised
//! them), releases the GIL in one place ([`detached`]), and maps [`crate::Error`] to builtin
//! Python exceptions in one place ([`to_pyerr`]).

use std::sync::Mutex;

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::clouds::CloudsView;
use crate::error::Error;
use crate::float::Real;
use crate::parallel::Executor;

mod linkage;
mod sampler;
mod sinkhorn;
mod sliced;

/// Maps the core error to a Python exception: `ValueError` for every invalid input,
/// `MemoryError` for a buffer that cannot be allocated, `semot.errors.InternalError` (a
/// `RuntimeError`) for the rest.
pub(crate) fn to_pyerr(err: Error) -> PyErr {
    match err {
        Error::Interrupted => {
            pyo3::exceptions::PyKeyboardInterrupt::new_err("interrupted by a signal")
        }
        Error::Memory { .. } => PyMemoryError::new_err(err.to_string()),
        Error::Internal(msg) => internal_error(msg),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A `semot.errors.InternalError` (or a plain `RuntimeError` if that cannot be imported).
fn internal_error(msg: String) -> PyErr {
    Python::attach(|py| {
        let cls = py
            .import("semot.errors")
            .and_then(|m| m.getattr("InternalError"))
            .ok()
            .and_then(|c| c.cast_into::<PyType>().ok());
        match cls {
            Some(cls) => PyErr::from_type(cls, msg),
            None => PyRuntimeError::new_err(msg),
        }
    })
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("internal error in the semot core (please report it): {text}")
}

/// Runs `f` with the GIL released and any panic caught: a panic becomes
/// [`Error::Internal`], so no `PanicException` ever reaches Python.
pub(crate) fn detach_guarded<R, F>(py: Python<'_>, f: F) -> crate::Result<R>
where
    R: Send,
    F: FnOnce() -> crate::Result<R> + Send,
{
    py.detach(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|payload| Err(Error::Internal(panic_message(&*payload))))
    })
}

/// Runs `f` with the GIL released on an executor with `n_threads` threads whose interrupt
/// check re-attaches briefly between rounds of work and runs Python's signal handlers, so
/// Ctrl-C stops long calls with `KeyboardInterrupt`.
pub(crate) fn detached<R, F>(py: Python<'_>, n_threads: Option<usize>, f: F) -> PyResult<R>
where
    R: Send,
    F: FnOnce(&Executor<'_>) -> crate::Result<R> + Send,
{
    let executor = Executor::new(n_threads).map_err(to_pyerr)?;
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let check = || {
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                *pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                true
            }
        })
    };
    let result = detach_guarded(py, || f(&executor.with_interrupt(&check)));
    match result {
        Ok(r) => Ok(r),
        Err(Error::Interrupted) => Err(pending
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or_else(|| to_pyerr(Error::Interrupted))),
        Err(e) => Err(to_pyerr(e)),
    }
}

/// A float array of either supported dtype, matched exactly (no silent conversion).
#[derive(FromPyObject)]
pub(crate) enum Array2<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

/// A 1-D float array of either supported dtype.
#[derive(FromPyObject)]
pub(crate) enum Array1<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

/// The three CSR arrays of a set of clouds, with one float dtype.
pub(crate) struct Csr<'py, T: numpy::Element> {
    points: PyReadonlyArray2<'py, T>,
    weights: PyReadonlyArray1<'py, T>,
    offsets: PyReadonlyArray1<'py, i64>,
}

impl<T: Real + numpy::Element> Csr<'_, T> {
    /// Number of clouds (offsets length minus one; validated later by `view`).
    pub(crate) fn n_clouds(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// A validated view of the clouds; `name` is used in error messages. The values are
    /// checked with the GIL released, on `n_threads` threads (a pass over every point).
    pub(crate) fn view(&self, name: &str, n_threads: Option<usize>) -> PyResult<CloudsView<'_, T>> {
        let dim = self.points.shape()[1];
        let points = contiguous(&self.points, name)?;
        let weights = contiguous1(&self.weights, &format!("{name}.weights"))?;
        let offsets = contiguous1(&self.offsets, &format!("{name}.offsets"))?;
        let exec = Executor::new(n_threads).map_err(to_pyerr)?;
        detach_guarded(self.points.py(), || {
            CloudsView::checked(name, points, dim, weights, offsets, &exec)
        })
        .map_err(to_pyerr)
    }
}

/// The contiguous data of a 2-D array, or a `ValueError` naming the argument.
pub(crate) fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray2<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// The contiguous data of a 1-D array, or a `ValueError` naming the argument.
pub(crate) fn contiguous1<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// The data of a `(K, 2)` int64 index array, or a `ValueError` naming `name` (wrong number of
/// columns, not C-contiguous). The indices themselves are checked by the core.
pub(crate) fn index_pairs<'a>(a: &'a PyReadonlyArray2<'_, i64>, name: &str) -> PyResult<&'a [i64]> {
    let shape = a.shape();
    if shape[1] != 2 {
        return Err(to_pyerr(Error::shape(
            name,
            "shape (K, 2)",
            format!("shape ({}, {})", shape[0], shape[1]),
        )));
    }
    contiguous(a, name)
}

/// The `TypeError` for sets of clouds of different dtypes.
pub(crate) fn mixed_dtypes() -> PyErr {
    PyTypeError::new_err("A and B must share one dtype (float32 or float64)")
}

/// Runs `$body` with every named [`CsrSet`] rebound to its [`Csr`] and `$t` naming their
/// common float type; sets of different dtypes raise `TypeError`.
macro_rules! with_dtype {
    (($($set:ident),+), |$t:ident| $body:expr) => {{
        // With a single set the last arm cannot match.
        #[allow(unreachable_patterns)]
        let out = match ($($set,)+) {
            ($($crate::py::CsrSet::F32($set),)+) => {
                #[allow(unused)]
                type $t = f32;
                $body
            }
            ($($crate::py::CsrSet::F64($set),)+) => {
                #[allow(unused)]
                type $t = f64;
                $body
            }
            _ => Err($crate::py::mixed_dtypes()),
        };
        out
    }};
}
pub(crate) use with_dtype;

/// Both sets of clouds with one shared dtype.
pub(crate) enum CsrSet<'py> {
    F32(Csr<'py, f32>),
    F64(Csr<'py, f64>),
}

/// Pairs up points and weights of one dtype, or raises `TypeError`.
pub(crate) fn csr<'py>(
    name: &str,
    points: Array2<'py>,
    weights: Array1<'py>,
    offsets: PyReadonlyArray1<'py, i64>,
) -> PyResult<CsrSet<'py>> {
    match (points, weights) {
        (Array2::F32(points), Array1::F32(weights)) => Ok(CsrSet::F32(Csr {
            points,
            weights,
            offsets,
        })),
        (Array2::F64(points), Array1::F64(weights)) => Ok(CsrSet::F64(Csr {
            points,
            weights,
            offsets,
        })),
        _ => Err(PyTypeError::new_err(format!(
            "{name}: points and weights must share one dtype (float32 or float64)"
        ))),
    }
}

#[pymodule]
mod _core {
    #[pymodule_export]
    use super::sliced::{
        max_abs, quantile_cdist, quantile_embedding, quantile_pdist, random_projections, sw_cdist,
        sw_gemm_pairs, sw_pairs, sw_pdist, wasserstein_1d,
    };

    #[pymodule_export]
    use super::sinkhorn::{sinkhorn_cdist, sinkhorn_pairs, sinkhorn_pdist};

    #[pymodule_export]
    use super::sampler::{sampler_keys, sampler_update};

    #[pymodule_export]
    use super::linkage::{
        connected_components, cut_tree_k, cut_tree_threshold, merge_by_threshold, single_linkage,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        // Block sizes the distributed driver must follow for bit-identical results.
        m.add("GEMM_ROWS", crate::quantile::GEMM_ROWS)?;
        m.add("GEMM_MIN_PAIRS", crate::sliced::GEMM_MIN_PAIRS)?;
        // The merge kernel this process runs ("avx512", "avx2", "neon" or "scalar"), fixed at
        // import (`SEMOT_SIMD` in the environment overrides it, see `simd::kernel`).
        let kernel = format!("{:?}", crate::simd::kernel()).to_ascii_lowercase();
        m.add("SIMD_KERNEL", kernel)
    }
}
