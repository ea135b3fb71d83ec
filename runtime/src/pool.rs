//! Threads for the kernels' parallel loops.
//!
//! Generated code calls [`saturn_parallel_for`] with an outlined loop body;
//! it splits the iterations into a few chunks per thread and runs them on
//! a rayon pool (whose idle workers sleep rather than spin). With one
//! thread the body runs inline over the whole range.

use std::ffi::c_void;

/// The outlined body of a parallel loop: runs iterations `lo..hi`.
pub type BodyFn = unsafe extern "C" fn(ctx: *const u8, lo: i64, hi: i64);

/// What generated code receives as `rt`.
pub struct Runtime {
    pool: Option<rayon::ThreadPool>,
    threads: usize,
}

impl Runtime {
    /// A runtime running parallel loops on `threads` threads (0: one per
    /// core).
    pub fn new(threads: usize) -> Result<Runtime, String> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("saturn-{i}"))
                    .build()
                    .map_err(|e| format!("cannot start {threads} threads: {e}"))?,
            )
        } else {
            None
        };
        Ok(Runtime { pool, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a thread of the pool (here, without one), waiting for it.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// The pointer generated code receives as `rt`.
    pub fn as_ptr(&self) -> *mut c_void {
        self as *const Runtime as *mut c_void
    }
}

struct SendPtr(*const u8);
// SAFETY: the context block is only read by the loop bodies, and lives on
// the caller's stack until `saturn_parallel_for` returns.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

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
    let pool = rt.and_then(|r| r.pool.as_ref().map(|p| (p, r.threads)));
    let Some((pool, threads)) = pool.filter(|_| count > 1) else {
        // SAFETY: by the contract above.
        unsafe { body(ctx, start, end) };
        return;
    };
    let chunks = count.min(threads as i64 * 4);
    let ctx = SendPtr(ctx);
    pool.scope(|s| {
        for c in 0..chunks {
            let ctx = &ctx;
            s.spawn(move |_| {
                let lo = start + (c * count / chunks) * step;
                let hi = (start + ((c + 1) * count / chunks) * step).min(end);
                // SAFETY: by the contract above.
                unsafe { body(ctx.0, lo, hi) };
            });
        }
    });
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
}
