//! The one error type of the core. The binding maps every variant to a Python exception.

/// Everything that can go wrong in the core, described well enough for the user to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A scalar or array argument has an invalid value.
    #[error("{name}: {reason}")]
    InvalidArgument { name: String, reason: String },
    /// One cloud of a set of clouds is invalid (bad weights, empty, non-finite points, ...).
    #[error("{name}: cloud {cloud}: {reason}")]
    InvalidCloud {
        name: String,
        cloud: usize,
        reason: String,
    },
    /// An array has the wrong shape or two arrays disagree on a dimension.
    #[error("{name}: expected {expected}, got {got}")]
    Shape {
        name: String,
        expected: String,
        got: String,
    },
    /// The caller's interrupt check asked to stop (Ctrl-C in Python).
    #[error("interrupted")]
    Interrupted,
    /// A buffer of the call cannot be allocated (the binding raises `MemoryError`).
    #[error("{name}: {what} need {}, which cannot be allocated", fmt_bytes(*.bytes))]
    Memory {
        name: String,
        what: String,
        bytes: f64,
    },
    /// Something the core cannot do on this machine (a thread pool that cannot be built, a
    /// bug caught at the boundary); the binding raises a `RuntimeError`.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn arg(name: &str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn cloud(name: &str, cloud: usize, reason: impl Into<String>) -> Self {
        Self::InvalidCloud {
            name: name.to_owned(),
            cloud,
            reason: reason.into(),
        }
    }

    pub(crate) fn shape(name: &str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Self::Shape {
            name: name.to_owned(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

/// A vector of `len` copies of `value`, allocated fallibly: [`Error::Memory`] naming `name`
/// when `len` elements do not fit in memory (or their size overflows `usize`), instead of the
/// process abort of `vec![value; len]`.
///
/// The allocation is first tried and released, then made by `vec![value; len]`: for a zero
/// value (all bits zero, as `0.0`) that is one zeroed allocation, whose pages the system maps
/// zeroed on first write, where a fill would write every byte on the calling thread. An output
/// matrix is then first touched by the threads that compute it: for a 16384² `f64` matrix
/// that moved 2 GiB of serial page faults and writes into the parallel loop.
///
/// # Errors
/// [`Error::Memory`].
pub fn try_vec<T: Clone>(len: usize, value: T, name: &str, what: &str) -> Result<Vec<T>> {
    drop(try_with_capacity::<T>(len, name, what)?);
    Ok(vec![value; len])
}

/// An empty vector with room for `len` elements, allocated fallibly (see [`try_vec`]).
///
/// # Errors
/// [`Error::Memory`].
pub fn try_with_capacity<T>(len: usize, name: &str, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::Memory {
        name: name.to_owned(),
        what: what.to_owned(),
        bytes: len as f64 * std::mem::size_of::<T>() as f64,
    })?;
    Ok(v)
}

/// `a * b`, or [`Error::Memory`] naming `name` when the product overflows `usize`.
///
/// # Errors
/// [`Error::Memory`].
pub fn checked_len(a: usize, b: usize, name: &str, what: &str) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::Memory {
        name: name.to_owned(),
        what: what.to_owned(),
        bytes: a as f64 * b as f64,
    })
}

/// `bytes` in the largest unit that keeps a number >= 1 (`3.7 TB`).
fn fmt_bytes(bytes: f64) -> String {
    for (unit, factor) in [
        ("PB", 1e15),
        ("TB", 1e12),
        ("GB", 1e9),
        ("MB", 1e6),
        ("kB", 1e3),
    ] {
        if bytes >= factor {
            return format!("{:.2} {unit}", bytes / factor);
        }
    }
    format!("{bytes} bytes")
}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;
