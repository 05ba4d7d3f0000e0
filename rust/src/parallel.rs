//! Thread pools and the chunked driver every bulk kernel runs on.
//!
//! * Work is split into chunks whose boundaries depend only on the problem size, never on the
//!   thread count, and each output element is computed by exactly one chunk: results are
//!   bit-identical for any number of threads.
//! * Chunks are grouped into rounds; between rounds the caller's interrupt check runs on the
//!   calling thread (the Python binding uses it to honour Ctrl-C).
//! * Pools are private to this crate and rebuilt when the process id changes, so the crate
//!   stays usable in a child after `fork` (rayon's global pool does not survive a fork).
//! * At most [`POOL_CACHE`] pools are kept (least recently used first out), so calls with
//!   many different thread counts do not leave their threads behind; a thread count is at
//!   most [`max_threads`].

use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{Error, Result};

/// How a bulk call runs: how many threads, and how to ask whether to stop early.
#[derive(Clone, Copy, Default)]
pub struct Executor<'a> {
    n_threads: Option<usize>,
    interrupt: Option<&'a (dyn Fn() -> bool + Sync)>,
}

impl std::fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("n_threads", &self.n_threads)
            .field("interrupt", &self.interrupt.is_some())
            .finish()
    }
}

impl<'a> Executor<'a> {
    /// `None` uses every core (or `RAYON_NUM_THREADS` when set), `Some(1)` runs on the calling
    /// thread, `Some(k)` runs on a private pool of `k` threads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `n_threads` is `Some(0)` or above [`max_threads`].
    pub fn new(n_threads: Option<usize>) -> Result<Self> {
        if n_threads == Some(0) {
            return Err(Error::arg("n_threads", "must be >= 1 or None"));
        }
        if let Some(n) = n_threads {
            let cap = max_threads();
            if n > cap {
                return Err(Error::arg(
                    "n_threads",
                    format!(
                        "at most {cap} threads (4 x the number of cores, at least 64), got {n}"
                    ),
                ));
            }
        }
        Ok(Self {
            n_threads,
            interrupt: None,
        })
    }

    /// A single-threaded executor without interrupt check.
    pub fn sequential() -> Self {
        Self {
            n_threads: Some(1),
            interrupt: None,
        }
    }

    /// Adds a check called between rounds of chunks; returning `true` stops the run with
    /// [`Error::Interrupted`].
    #[must_use]
    pub fn with_interrupt(mut self, check: &'a (dyn Fn() -> bool + Sync)) -> Self {
        self.interrupt = Some(check);
        self
    }

    /// The number of threads this executor will use.
    pub fn threads(&self) -> usize {
        self.n_threads.unwrap_or_else(default_threads)
    }

    fn check(&self) -> Result<()> {
        match self.interrupt {
            Some(stop) if stop() => Err(Error::Interrupted),
            _ => Ok(()),
        }
    }

    /// Fills `out` in chunks of `chunk` elements: `f(start, slice)` receives the index of the
    /// chunk's first element and the chunk itself. Chunks run in parallel; the interrupt check
    /// runs between rounds of chunks.
    pub fn fill<O, F>(&self, out: &mut [O], chunk: usize, f: F) -> Result<()>
    where
        O: Send,
        F: Fn(usize, &mut [O]) + Sync,
    {
        let chunk = chunk.max(1);
        let threads = self.threads();
        // A round is a few chunks per thread: long enough to keep threads busy, short enough
        // that Ctrl-C is answered quickly.
        let round = chunk * (4 * threads).max(8);
        let mut start = 0;
        for piece in out.chunks_mut(round) {
            self.check()?;
            let len = piece.len();
            if threads == 1 {
                for (i, c) in piece.chunks_mut(chunk).enumerate() {
                    f(start + i * chunk, c);
                }
            } else {
                let body = || {
                    piece
                        .par_chunks_mut(chunk)
                        .enumerate()
                        .for_each(|(i, c)| f(start + i * chunk, c));
                };
                pool(threads)?.install(body);
            }
            start += len;
        }
        self.check()
    }

    /// Runs `f(k, item)` for every item in parallel (items are typically disjoint mutable
    /// pieces of an output buffer of varying sizes).
    pub fn each<I, F>(&self, items: Vec<I>, f: F) -> Result<()>
    where
        I: Send,
        F: Fn(usize, I) + Sync,
    {
        let mut slots: Vec<Option<I>> = items.into_iter().map(Some).collect();
        self.fill(&mut slots, 1, |k, slot| {
            if let Some(item) = slot[0].take() {
                f(k, item);
            }
        })
    }

    /// Runs `f(i)` for every `i` in `0..n` in parallel, collecting the results in order.
    pub fn map<R, F>(&self, n: usize, f: F) -> Result<Vec<R>>
    where
        R: Send,
        F: Fn(usize) -> R + Sync,
    {
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        self.fill(&mut out, 1, |i, slot| slot[0] = Some(f(i)))?;
        Ok(out
            .into_iter()
            .map(|r| r.expect("every slot is filled"))
            .collect())
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// The largest thread count an executor takes: four threads per core, and at least 64 (the
/// Python layer applies the same cap, `semot._utils.checks.MAX_THREADS`).
pub fn max_threads() -> usize {
    (4 * cores()).max(64)
}

fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .map_or_else(cores, |n| n.min(max_threads()))
}

/// How many thread pools are kept alive between calls.
pub const POOL_CACHE: usize = 4;

struct Pools {
    pid: u32,
    /// Most recently used last.
    by_size: Vec<(usize, Arc<ThreadPool>)>,
}

static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();

fn pool(threads: usize) -> Result<Arc<ThreadPool>> {
    let pools = POOLS.get_or_init(|| {
        Mutex::new(Pools {
            pid: std::process::id(),
            by_size: Vec::new(),
        })
    });
    let mut guard = pools
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pid = std::process::id();
    if guard.pid != pid {
        // After fork the worker threads of the parent's pools do not exist in this process.
        // Dropping those pools would try to talk to them, so they are leaked on purpose.
        for (_, p) in guard.by_size.drain(..) {
            std::mem::forget(p);
        }
        guard.pid = pid;
    }
    if let Some(pos) = guard.by_size.iter().position(|(n, _)| *n == threads) {
        let entry = guard.by_size.remove(pos);
        let p = entry.1.clone();
        guard.by_size.push(entry);
        return Ok(p);
    }
    let built = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("semot-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("n_threads: cannot start {threads} threads: {e}")))?;
    let p = Arc::new(built);
    guard.by_size.push((threads, p.clone()));
    if guard.by_size.len() > POOL_CACHE {
        // Dropping the last handle of a pool ends its threads (once they finish their work;
        // a call still running on it holds its own handle).
        let evicted = guard.by_size.remove(0);
        drop(guard);
        drop(evicted);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_covers_everything_once() {
        for threads in [1, 2, 3] {
            let ex = Executor::new(Some(threads)).unwrap();
            let mut out = vec![0usize; 1003];
            ex.fill(&mut out, 7, |start, c| {
                for (k, v) in c.iter_mut().enumerate() {
                    *v += start + k;
                }
            })
            .unwrap();
            assert!(out.iter().enumerate().all(|(i, &v)| v == i));
        }
    }

    #[test]
    fn interrupt_stops() {
        let stop = || true;
        let ex = Executor::new(Some(2)).unwrap().with_interrupt(&stop);
        let mut out = vec![0u8; 10];
        assert_eq!(ex.fill(&mut out, 1, |_, _| {}), Err(Error::Interrupted));
    }

    #[test]
    fn zero_threads_rejected() {
        assert!(Executor::new(Some(0)).is_err());
        assert!(Executor::new(Some(max_threads() + 1)).is_err());
        assert!(Executor::new(Some(usize::MAX)).is_err());
    }

    #[test]
    fn pool_cache_is_bounded() {
        for threads in 2..12 {
            let ex = Executor::new(Some(threads)).unwrap();
            let mut out = vec![0u8; 64];
            ex.fill(&mut out, 1, |_, c| c[0] = 1).unwrap();
        }
        let cached = POOLS
            .get()
            .unwrap()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_size
            .len();
        assert!(cached <= POOL_CACHE, "{cached} pools cached");
    }
}
