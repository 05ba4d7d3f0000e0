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

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;
