//! Optimal-transport distances between weighted point clouds.
//!
//! This crate is the pure-Rust core of the `semot` Python package. It knows nothing about
//! Python: the binding lives in [`py`] behind the `python` feature and only converts arrays,
//! releases the GIL and maps [`Error`] to Python exceptions.
//!
//! * [`clouds`]: ragged weighted point clouds in CSR form and their validation.
//! * [`projections`]: seeded random directions on the sphere (explicit RNG algorithm) and the
//!   validated projection matrix [`Projections`].
//! * [`sliced`]: exact sliced Wasserstein distances (one pair, all pairs, candidate pairs).
//! * [`quantile`]: quantile embeddings and the matrix-product path for many pairs.
//! * [`sampler`]: the per-feature streaming samplers' hashes and reservoir update (the CPU path
//!   of `FeatureSampler`).
//! * [`sinkhorn`]: log-domain entropic OT with epsilon scaling, and the Sinkhorn divergence.
//! * [`sorting`]: a comparator network that sorts the columns of a small matrix at once (the
//!   sorted projections of uniform clouds).
//! * [`pairs`]: the condensed (`pdist`) order of pairs within a set, and checks of `(K, 2)`
//!   index arrays.
//! * [`linkage`]: union-find, connected components and single-linkage merge trees.
//! * [`parallel`]: the thread-pool and chunked driver shared by every bulk kernel.
//! * [`simd`]: the AVX-512, AVX2 and NEON merge kernels of [`sliced`], the crate's only
//!   `unsafe` code.

#[forbid(unsafe_code)]
pub mod clouds;
#[forbid(unsafe_code)]
pub mod error;
#[forbid(unsafe_code)]
pub mod float;
#[forbid(unsafe_code)]
pub mod linkage;
#[forbid(unsafe_code)]
pub mod pairs;
#[forbid(unsafe_code)]
pub mod parallel;
#[forbid(unsafe_code)]
pub mod projections;
#[forbid(unsafe_code)]
pub mod quantile;
#[forbid(unsafe_code)]
pub mod sampler;
#[forbid(unsafe_code)]
pub mod sinkhorn;
#[forbid(unsafe_code)]
pub mod sliced;
#[forbid(unsafe_code)]
pub mod sorting;
#[forbid(unsafe_code)]
pub mod wasserstein1d;

/// The only module allowed `unsafe` code (SIMD intrinsics), audited: see its documentation.
pub mod simd;

#[cfg(feature = "python")]
#[forbid(unsafe_code)]
mod py;

pub use clouds::CloudsView;
pub use error::{Error, Result};
pub use float::Real;
pub use parallel::Executor;
pub use projections::Projections;
