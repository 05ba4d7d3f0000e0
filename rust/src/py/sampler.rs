//! Bindings of [`crate::sampler`]: the reservoir update of `FeatureSampler` on the CPU and the
//! weighted keys of its elementwise implementation.

use numpy::{
    IntoPyArray, PyArray1, PyReadonlyArray1, PyReadwriteArray1, PyReadwriteArray2,
    PyReadwriteArray3, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{contiguous, contiguous1, detached, to_pyerr, Array2};
use crate::float::Real;
use crate::parallel::Executor;
use crate::sampler::{self, Batch, Mode, Reservoirs};

/// The mutable data of a C-contiguous buffer, or a `ValueError` naming it.
fn writable<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    a: &'a mut numpy::PyReadwriteArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a mut [T]> {
    a.as_slice_mut()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// Runs the update with the activations and points as slices of their own dtypes.
fn run<A: Real, P: Real>(
    res: &mut Reservoirs<'_>,
    batch: Batch<'_, A, P>,
    mode: Mode,
    seed: u64,
    exec: &Executor<'_>,
) -> crate::Result<()> {
    sampler::update(res, batch, mode, seed, exec)
}

/// Offers one batch to the reservoirs held in the six buffers of a `FeatureSampler`, in place.
#[pyfunction]
#[pyo3(signature = (
    keys, tb, acts, points_buffer, counts, act_sums, activations, points, seq, pos, mode, seed,
    n_threads=None
))]
pub(crate) fn sampler_update<'py>(
    py: Python<'py>,
    mut keys: PyReadwriteArray2<'py, f64>,
    mut tb: PyReadwriteArray2<'py, i64>,
    mut acts: PyReadwriteArray2<'py, f32>,
    mut points_buffer: PyReadwriteArray3<'py, f32>,
    mut counts: PyReadwriteArray1<'py, i64>,
    mut act_sums: PyReadwriteArray1<'py, f64>,
    activations: Array2<'py>,
    points: Array2<'py>,
    seq: PyReadonlyArray1<'py, i64>,
    pos: PyReadonlyArray1<'py, i64>,
    mode: &str,
    seed: u64,
    n_threads: Option<usize>,
) -> PyResult<()> {
    let mode = Mode::parse(mode).map_err(to_pyerr)?;
    let (n_features, n) = (keys.shape()[0], keys.shape()[1]);
    let dim = points_buffer.shape()[2];
    let mut res = Reservoirs::new(
        n_features,
        n,
        dim,
        writable(&mut keys, "keys")?,
        writable(&mut tb, "tb")?,
        writable(&mut acts, "acts")?,
        writable(&mut points_buffer, "points_buffer")?,
        writable(&mut counts, "counts")?,
        writable(&mut act_sums, "act_sums")?,
    )
    .map_err(to_pyerr)?;
    let seq = contiguous1(&seq, "seq")?;
    let pos = contiguous1(&pos, "pos")?;
    macro_rules! go {
        ($a:expr, $p:expr) => {{
            let batch = Batch {
                activations: contiguous($a, "activations")?,
                points: contiguous($p, "points")?,
                seq,
                pos,
            };
            detached(py, n_threads, |exec| run(&mut res, batch, mode, seed, exec))
        }};
    }
    match (&activations, &points) {
        (Array2::F32(a), Array2::F32(p)) => go!(a, p),
        (Array2::F32(a), Array2::F64(p)) => go!(a, p),
        (Array2::F64(a), Array2::F32(p)) => go!(a, p),
        (Array2::F64(a), Array2::F64(p)) => go!(a, p),
    }
}

/// Weighted-mode keys `-ln(u) / a` of 48-bit hashes `bits` and float64 activations.
#[pyfunction]
pub(crate) fn sampler_keys<'py>(
    py: Python<'py>,
    bits: PyReadonlyArray1<'py, i64>,
    activations: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let bits = contiguous1(&bits, "bits")?;
    let activations = contiguous1(&activations, "activations")?;
    let keys = detached(py, Some(1), |_| sampler::weighted_keys(bits, activations))?;
    Ok(keys.into_pyarray(py))
}
