//! Thread pools and the chunked driver every bulk kernel runs on.
//!
//! * Work is split into chunks whose boundaries depend only on the problem size, never on the
//!   thread count, and each output element is computed by exactly one chunk: results are
//!   bit-identical for any number of threads.
//! * Chunks are grouped into rounds; between rounds the caller's interrupt check runs on the
//!   calling thread (the Python binding uses it to honour Ctrl-C).
//! * Pools are private to this crate and rebuilt when the process id changes, so the crate
//!   stays usable in a child after `fork` (rayon's global pool does not survive a fork).

use std::collections::HashMap;
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
    /// [`Error::InvalidArgument`] when `n_threads` is `Some(0)`.
    pub fn new(n_threads: Option<usize>) -> Result<Self> {
        if n_threads == Some(0) {
            return Err(Error::arg("n_threads", "must be >= 1 or None"));
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
                pool(threads).install(body);
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

fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

struct Pools {
    pid: u32,
    by_size: HashMap<usize, Arc<ThreadPool>>,
}

fn pool(threads: usize) -> Arc<ThreadPool> {
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| {
        Mutex::new(Pools {
            pid: std::process::id(),
            by_size: HashMap::new(),
        })
    });
    let mut guard = pools
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pid = std::process::id();
    if guard.pid != pid {
        // After fork the worker threads of the parent's pools do not exist in this process.
        // Dropping those pools would try to talk to them, so they are leaked on purpose.
        for (_, p) in guard.by_size.drain() {
            std::mem::forget(p);
        }
        guard.pid = pid;
    }
    guard
        .by_size
        .entry(threads)
        .or_insert_with(|| {
            Arc::new(
                ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("semot-{i}"))
                    .build()
                    .expect("building a thread pool"),
            )
        })
        .clone()
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
    }
}
