//! Thread pools and the chunked driver every bulk kernel runs on.
//!
//! * Work is split into chunks whose boundaries depend only on the problem size, never on the
//!   thread count, and each output element is computed by exactly one chunk: results are
//!   bit-identical for any number of threads.
//! * The caller's interrupt check runs on the calling thread (the Python binding uses it to
//!   honour Ctrl-C): between rounds of chunks on one thread, every [`POLL`] while a pool works.
//! * Pools are private to this crate and rebuilt when the process id changes, so the crate
//!   stays usable in a child after `fork` (rayon's global pool does not survive a fork).
//! * At most [`POOL_CACHE`] pools are kept (least recently used first out), so calls with
//!   many different thread counts do not leave their threads behind; a thread count is at
//!   most [`max_threads`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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
    /// chunk's first element and the chunk itself.
    ///
    /// On one thread the chunks run in order, with the interrupt check between rounds of a few
    /// chunks. On more, every chunk is one task of the pool's work stealing, with no barrier
    /// before the last: chunks of uneven cost (Sinkhorn problems that converge at different
    /// iterations) keep every thread busy. The calling thread meanwhile runs the interrupt
    /// check every [`POLL`]; when it fires, the chunks not yet started are skipped.
    pub fn fill<O, F>(&self, out: &mut [O], chunk: usize, f: F) -> Result<()>
    where
        O: Send,
        F: Fn(usize, &mut [O]) + Sync,
    {
        let chunk = chunk.max(1);
        let threads = self.threads();
        if threads == 1 {
            // A round is a few chunks: Ctrl-C is answered quickly.
            let round = chunk * 8;
            for (r, piece) in out.chunks_mut(round).enumerate() {
                self.check()?;
                for (i, c) in piece.chunks_mut(chunk).enumerate() {
                    f(r * round + i * chunk, c);
                }
            }
            return self.check();
        }
        self.check()?;
        let pool = pool(threads)?;
        let stop = AtomicBool::new(false);
        let work = |out: &mut [O]| {
            out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| {
                if !stop.load(Ordering::Relaxed) {
                    f(i * chunk, c);
                }
            });
        };
        // Without a check, or on a worker thread of some pool (a nested call, which must not
        // block a worker), the pool runs everything and the check comes at the end.
        if self.interrupt.is_none() || rayon::current_thread_index().is_some() {
            pool.install(|| work(out));
            return self.check();
        }
        let (done, finished) = mpsc::channel::<()>();
        let interrupted = pool.in_place_scope(|scope| {
            scope.spawn(move |_| {
                work(out);
                // The receiver outlives the scope's body only on the interrupted path, where
                // it no longer listens: a failed send is expected there.
                let _ = done.send(());
            });
            loop {
                match finished.recv_timeout(POLL) {
                    // Disconnected: the task unwound (a panic, re-raised by the scope).
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return false,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.check().is_err() {
                            stop.store(true, Ordering::Relaxed);
                            return true;
                        }
                    }
                }
            }
        });
        if interrupted {
            Err(Error::Interrupted)
        } else {
            self.check()
        }
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

/// How often the calling thread runs the interrupt check while the pool works.
pub const POLL: Duration = Duration::from_millis(20);

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

    /// The polling path (an interrupt that never fires) with chunks of very uneven cost: every
    /// element once, for any thread count.
    #[test]
    fn polled_fill_covers_everything_once() {
        let never = || false;
        for threads in [2, 3] {
            let ex = Executor::new(Some(threads)).unwrap().with_interrupt(&never);
            let mut out = vec![0usize; 301];
            ex.fill(&mut out, 3, |start, c| {
                if start % 60 == 0 {
                    std::thread::sleep(Duration::from_millis(30));
                }
                for (k, v) in c.iter_mut().enumerate() {
                    *v += start + k + 1;
                }
            })
            .unwrap();
            assert!(out.iter().enumerate().all(|(i, &v)| v == i + 1));
        }
    }

    /// An interrupt that fires while the pool works stops it: the chunks not yet started are
    /// skipped and the call returns `Interrupted` well before the work would have ended.
    #[test]
    fn interrupt_while_working_skips_the_rest() {
        use std::sync::atomic::AtomicUsize;
        let calls = AtomicUsize::new(0);
        // False at the check before the start, true at the first poll.
        let stop = || calls.fetch_add(1, Ordering::Relaxed) >= 1;
        let ex = Executor::new(Some(2)).unwrap().with_interrupt(&stop);
        let ran = AtomicUsize::new(0);
        let mut out = vec![0u8; 200];
        let t = std::time::Instant::now();
        let res = ex.fill(&mut out, 1, |_, _| {
            ran.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        });
        assert_eq!(res, Err(Error::Interrupted));
        // 200 chunks of 5 ms on 2 threads take 500 ms; the first poll comes after 20.
        let ran = ran.load(Ordering::Relaxed);
        assert!(ran < 100, "{ran} chunks ran");
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
    }

    /// A panic in a chunk reaches the caller (as a panic, which the binding turns into an
    /// error) instead of hanging the polling thread.
    #[test]
    fn panic_in_a_chunk_propagates() {
        let never = || false;
        let ex = Executor::new(Some(2)).unwrap().with_interrupt(&never);
        let mut out = vec![0u8; 64];
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ex.fill(&mut out, 1, |start, _| assert!(start != 40, "chunk 40"))
        }));
        assert!(res.is_err());
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
