//! Threads for the kernels' parallel loops.
//!
//! Generated code calls [`saturn_parallel_for`] with an outlined loop body;
//! it splits the iterations into a few chunks per thread, which the calling
//! thread and the pool's workers claim one at a time. A model's kernels
//! come one after another, so an idle worker first spins for a while
//! (`SPIN`) watching for the next loop, and only then sleeps: waking a
//! sleeping thread costs more than a small kernel runs (and on a virtual
//! machine, an idle virtual CPU may be handed to someone else). With one
//! thread, a nested call, or a pool busy with another caller's loop, the
//! body runs inline over the whole range.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The outlined body of a parallel loop: runs iterations `lo..hi`.
pub type BodyFn = unsafe extern "C" fn(ctx: *const u8, lo: i64, hi: i64);

/// How long an idle worker watches for the next loop before it sleeps.
const SPIN: Duration = Duration::from_millis(2);

/// Chunks per thread: a few, so that a thread slowed down by something
/// else on its core leaves its share to the others.
const CHUNKS_PER_THREAD: i64 = 4;

/// The loop being run, published before its epoch.
struct Shared {
    /// Epoch (high 32 bits), the loop's chunk count (next 16) and the next
    /// unclaimed chunk (low 16): a chunk is claimed by moving this on from
    /// a value of its own epoch, below the count read from the same word
    /// (the other fields may already hold the next loop's once every
    /// chunk of this one is claimed).
    claim: AtomicU64,
    /// Chunks of the current loop finished.
    done: AtomicI64,
    body: AtomicUsize,
    ctx: AtomicUsize,
    start: AtomicI64,
    end: AtomicI64,
    step: AtomicI64,
    /// Workers asleep (or about to be) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
    /// Held by the caller whose loop is being run.
    busy: Mutex<()>,
}

impl Shared {
    /// Claims and runs chunks of the loop of `epoch` until none are left.
    fn work(&self, epoch: u64) {
        loop {
            let c = self.claim.load(Acquire);
            if c >> 32 != epoch {
                return;
            }
            let i = (c & 0xffff) as i64;
            let chunks = ((c >> 16) & 0xffff) as i64;
            if i >= chunks {
                return;
            }
            // Read before the claim: they cannot change until every chunk
            // of this epoch, this one included, is done.
            let body = self.body.load(Relaxed);
            let ctx = self.ctx.load(Relaxed) as *const u8;
            let (start, end, step) = (
                self.start.load(Relaxed),
                self.end.load(Relaxed),
                self.step.load(Relaxed),
            );
            if self
                .claim
                .compare_exchange_weak(c, c + 1, AcqRel, Relaxed)
                .is_err()
            {
                continue;
            }
            // SAFETY: `body` was stored from a `BodyFn` for this epoch.
            let body: BodyFn = unsafe { std::mem::transmute::<usize, BodyFn>(body) };
            let count = (end - start + step - 1) / step;
            let lo = start + (i * count / chunks) * step;
            let hi = (start + ((i + 1) * count / chunks) * step).min(end);
            IN_LOOP.with(|f| f.set(true));
            // SAFETY: the caller of `saturn_parallel_for` keeps `ctx`
            // valid until every chunk is done.
            unsafe { body(ctx, lo, hi) };
            IN_LOOP.with(|f| f.set(false));
            self.done.fetch_add(1, Release);
        }
    }

    fn worker(&self) {
        let mut seen = self.claim.load(Acquire) >> 32;
        while !self.stop.load(Acquire) {
            let t0 = Instant::now();
            let mut spins = 0u32;
            let epoch = loop {
                let e = self.claim.load(Acquire) >> 32;
                if e != seen || self.stop.load(Relaxed) {
                    break Some(e);
                }
                std::hint::spin_loop();
                spins += 1;
                if spins % 256 == 0 && t0.elapsed() > SPIN {
                    break None;
                }
            };
            let epoch = match epoch {
                Some(e) => e,
                None => {
                    let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
                    self.sleepers.fetch_add(1, SeqCst);
                    while self.claim.load(SeqCst) >> 32 == seen && !self.stop.load(SeqCst) {
                        g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                    self.sleepers.fetch_sub(1, SeqCst);
                    continue;
                }
            };
            seen = epoch;
            self.work(epoch);
        }
    }
}

thread_local! {
    /// Whether this thread is running a chunk (a nested loop runs inline).
    static IN_LOOP: Cell<bool> = const { Cell::new(false) };
}

/// What generated code receives as `rt`.
pub struct Runtime {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
}

impl Runtime {
    /// A runtime running parallel loops on `threads` threads (0: one per
    /// core): the caller's and `threads - 1` workers.
    pub fn new(threads: usize) -> Result<Runtime, String> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            done: AtomicI64::new(0),
            body: AtomicUsize::new(0),
            ctx: AtomicUsize::new(0),
            start: AtomicI64::new(0),
            end: AtomicI64::new(0),
            step: AtomicI64::new(1),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            busy: Mutex::new(()),
        });
        let mut rt = Runtime {
            shared,
            workers: Vec::new(),
            threads,
        };
        for i in 1..threads {
            let s = rt.shared.clone();
            let w = std::thread::Builder::new()
                .name(format!("saturn-{i}"))
                .spawn(move || s.worker())
                .map_err(|e| format!("cannot start {threads} threads: {e}"))?;
            rt.workers.push(w);
        }
        Ok(rt)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on the calling thread, which takes part in the parallel
    /// loops it starts.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }

    /// The pointer generated code receives as `rt`.
    pub fn as_ptr(&self) -> *mut c_void {
        self as *const Runtime as *mut c_void
    }

    /// Runs `body` over `[start, end)` by `step` on the pool (`count`
    /// iterations, more than one); `false` when the pool is busy or this
    /// is a nested loop, and the caller should run it inline.
    fn parallel(&self, body: BodyFn, ctx: *const u8, start: i64, end: i64, step: i64) -> bool {
        if self.workers.is_empty() || IN_LOOP.with(|f| f.get()) {
            return false;
        }
        let Ok(_busy) = self.shared.busy.try_lock() else {
            return false;
        };
        let s = &*self.shared;
        let count = (end - start + step - 1) / step;
        let chunks = count
            .min(self.threads as i64 * CHUNKS_PER_THREAD)
            .min(0xffff);
        s.body.store(body as usize, Relaxed);
        s.ctx.store(ctx as usize, Relaxed);
        s.start.store(start, Relaxed);
        s.end.store(end, Relaxed);
        s.step.store(step, Relaxed);
        s.done.store(0, Relaxed);
        let epoch = ((s.claim.load(Relaxed) >> 32) + 1) & 0xffff_ffff;
        // Publishes the fields above with the new epoch, chunk 0 next.
        s.claim.store(epoch << 32 | (chunks as u64) << 16, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        s.work(epoch);
        while s.done.load(Acquire) < chunks {
            std::hint::spin_loop();
        }
        true
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Runs `body` over `[start, end)` in steps of `step`, in parallel chunks
/// whose bounds are aligned to the step.
///
/// # Safety
/// `rt` must come from [`Runtime::as_ptr`] (or be null: then the body runs
/// inline), and `body`/`ctx` must be valid for the whole range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saturn_parallel_for(
    rt: *mut c_void,
    body: BodyFn,
    ctx: *const u8,
    start: i64,
    end: i64,
    step: i64,
) {
    if end <= start || step <= 0 {
        return;
    }
    // SAFETY: by the contract above.
    let rt = unsafe { (rt as *const Runtime).as_ref() };
    let count = (end - start + step - 1) / step;
    if count > 1 && rt.is_some_and(|r| r.parallel(body, ctx, start, end, step)) {
        return;
    }
    // SAFETY: by the contract above.
    unsafe { body(ctx, start, end) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    unsafe extern "C" fn add_range(ctx: *const u8, lo: i64, hi: i64) {
        let (sum, step) = unsafe { &*(ctx as *const (AtomicI64, i64)) };
        let mut v = lo;
        while v < hi {
            sum.fetch_add(v, Ordering::Relaxed);
            v += step;
        }
    }

    /// Every iteration runs exactly once, on 1 and on 3 threads, for
    /// steps that do not divide the range.
    #[test]
    fn each_iteration_once() {
        for threads in [1, 3] {
            let rt = Runtime::new(threads).unwrap();
            for (start, end, step) in [(0, 1000, 1), (3, 1001, 7), (5, 6, 4), (0, 0, 1)] {
                let ctx = (AtomicI64::new(0), step);
                unsafe {
                    saturn_parallel_for(
                        rt.as_ptr(),
                        add_range,
                        &ctx as *const _ as *const u8,
                        start,
                        end,
                        step,
                    )
                };
                let want: i64 = (start..end).step_by(step as usize).sum();
                assert_eq!(
                    ctx.0.load(Ordering::Relaxed),
                    want,
                    "{start}..{end} by {step}"
                );
            }
        }
    }

    /// Thousands of back-to-back loops (workers spinning, then some after
    /// a sleep), from two callers at once on one runtime: every iteration
    /// of every loop runs exactly once.
    #[test]
    fn many_loops_from_two_callers() {
        let rt = Runtime::new(3).unwrap();
        let ptr = rt.as_ptr() as usize;
        let call = move |n: i64| {
            let ctx = (AtomicI64::new(0), 1i64);
            unsafe {
                saturn_parallel_for(
                    ptr as *mut c_void,
                    add_range,
                    &ctx as *const _ as *const u8,
                    0,
                    n,
                    1,
                )
            };
            assert_eq!(ctx.0.load(Ordering::Relaxed), n * (n - 1) / 2, "0..{n}");
        };
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(move || {
                    for i in 0..3000 {
                        call(2 + i % 50);
                        if i % 1000 == 999 {
                            // Long enough for the workers to fall asleep.
                            std::thread::sleep(SPIN * 3);
                        }
                    }
                });
            }
        });
    }
}
