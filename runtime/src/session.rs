//! A loaded model ready to run.

use crate::memory::{self, MemoryPlan};
use crate::pool::Runtime;
use crate::{KernelFn, Plan, PlanStep, RuntimeError, SlotKind, elem_bytes};
use saturn_ir::tensor::Tensor;
use std::any::Any;
use std::sync::{Arc, Mutex};

/// Per step of a plan: its kernel (or fallback node) name and seconds.
pub type StepTimes = Vec<(String, f64)>;

/// What a run hands to the pool thread that executes it.
struct AssertSend<T>(T);
// SAFETY: the run borrows the session and the inputs for its duration
// only, and the caller waits for it (`Runtime::run` returns after `f`).
unsafe impl<T> Send for AssertSend<T> {}

/// A plan bound to its kernels, with its arena and threads.
pub struct Session {
    plan: Plan,
    mem: MemoryPlan,
    fns: Vec<KernelFn>,
    rt: Runtime,
    /// Constant bytes per slot (8-byte aligned storage).
    weights: Vec<Option<Vec<u64>>>,
    arena: Mutex<Vec<u64>>,
    /// Keeps the code of `fns` alive (a JIT module or a loaded library).
    _code: Arc<dyn Any + Send + Sync>,
}

fn words(bytes: &[u8]) -> Vec<u64> {
    let mut w = vec![0u64; bytes.len().div_ceil(8)];
    // SAFETY: `w` has at least `bytes.len()` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), w.as_mut_ptr() as *mut u8, bytes.len())
    };
    w
}

impl Session {
    /// Binds `plan` to `fns` (one per `plan.kernels`, same order); `code`
    /// is whatever owns the machine code.
    pub fn new(
        plan: Plan,
        fns: Vec<KernelFn>,
        threads: usize,
        code: Arc<dyn Any + Send + Sync>,
    ) -> Result<Session, RuntimeError> {
        if fns.len() != plan.kernels.len() {
            return Err(RuntimeError::Step(format!(
                "{} kernels for a plan of {}",
                fns.len(),
                plan.kernels.len()
            )));
        }
        let mem = memory::plan(&plan);
        let mut weights = Vec::with_capacity(plan.slots.len());
        for s in &plan.slots {
            weights.push(match &s.kind {
                SlotKind::Const(t) => Some(words(&t.to_le_bytes().ok_or_else(|| {
                    RuntimeError::Step(format!("constant `{}` has no byte form", s.name))
                })?)),
                _ => None,
            });
        }
        let rt = Runtime::new(threads).map_err(RuntimeError::Step)?;
        let arena = Mutex::new(vec![0u64; mem.arena.div_ceil(8) + 8]);
        Ok(Session {
            plan,
            mem,
            fns,
            rt,
            weights,
            arena,
            _code: code,
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn memory(&self) -> &MemoryPlan {
        &self.mem
    }

    pub fn threads(&self) -> usize {
        self.rt.threads()
    }

    /// Checks count, dtypes and shapes of the inputs.
    pub fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), RuntimeError> {
        if inputs.len() != self.plan.inputs.len() {
            return Err(RuntimeError::InputCount {
                expected: self.plan.inputs.len(),
                got: inputs.len(),
            });
        }
        for (i, (t, &s)) in inputs.iter().zip(&self.plan.inputs).enumerate() {
            let slot = &self.plan.slots[s];
            if t.dtype() != slot.dtype || t.shape() != slot.shape.as_slice() {
                return Err(RuntimeError::InputType {
                    index: i,
                    name: slot.name.clone(),
                    expected: format!("{}{:?}", slot.dtype, slot.shape),
                    got: format!("{}{:?}", t.dtype(), t.shape()),
                });
            }
        }
        Ok(())
    }

    /// Runs the model.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        self.run_timed(inputs, None, Vec::new())
    }

    /// Runs the model writing into `outputs` where they are tensors of the
    /// outputs' dtypes and shapes (as from an earlier run), so that their
    /// memory is reused; others are replaced by fresh tensors.
    pub fn run_into(
        &self,
        inputs: &[Tensor],
        outputs: &mut Vec<Tensor>,
    ) -> Result<(), RuntimeError> {
        let reuse = std::mem::take(outputs);
        *outputs = self.run_timed(inputs, None, reuse)?;
        Ok(())
    }

    /// Runs the model and says how long each step took: per step of the
    /// plan, its kernel name (or the fallback's node) and seconds.
    pub fn profile(&self, inputs: &[Tensor]) -> Result<(Vec<Tensor>, StepTimes), RuntimeError> {
        let mut times = vec![0.0; self.plan.steps.len()];
        let out = self.run_timed(inputs, Some(&mut times), Vec::new())?;
        let steps = self
            .plan
            .steps
            .iter()
            .zip(times)
            .map(|(s, t)| {
                let name = match s {
                    PlanStep::Kernel { kernel, .. } => self.plan.kernels[*kernel].clone(),
                    PlanStep::Fallback { label, op, .. } => {
                        format!("{label} ({}, interpreter)", op.name())
                    }
                };
                (name, t)
            })
            .collect();
        Ok((out, steps))
    }

    fn run_timed(
        &self,
        inputs: &[Tensor],
        times: Option<&mut [f64]>,
        reuse: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, RuntimeError> {
        // The steps run on a thread of the pool, so that the parallel loops
        // of consecutive kernels find the other threads still awake.
        let job = AssertSend((self, inputs, times, reuse));
        self.rt.run(move || {
            let AssertSend((me, inputs, times, reuse)) = job;
            me.run_steps(inputs, times, reuse)
        })
    }

    fn run_steps(
        &self,
        inputs: &[Tensor],
        mut times: Option<&mut [f64]>,
        mut reuse: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, RuntimeError> {
        self.check_inputs(inputs)?;
        let mut arena = self
            .arena
            .lock()
            .map_err(|_| RuntimeError::Step("a previous run panicked".into()))?;
        let base = arena.as_mut_ptr() as *mut u8;
        // Inputs are read where they are: kernels never write an input
        // buffer, so the caller's tensors are bound without a copy.
        let mut bound: Vec<Option<*mut u8>> = vec![None; self.plan.slots.len()];
        for (t, &s) in inputs.iter().zip(&self.plan.inputs) {
            if let Some(b) = t.as_le_bytes() {
                bound[s] = Some(b.as_ptr() as *mut u8);
            }
        }
        // Outputs computed by the steps are written where they are
        // returned: a fresh tensor per output, bound like an input.
        let mut outs: Vec<Option<Tensor>> = vec![None; self.plan.outputs.len()];
        reuse.resize_with(self.plan.outputs.len(), || Tensor::scalar(0.0f32));
        for (o, &s) in self.plan.outputs.iter().enumerate() {
            let slot = &self.plan.slots[s];
            if !matches!(slot.kind, SlotKind::Temp) || bound[s].is_some() {
                continue;
            }
            let old = std::mem::replace(&mut reuse[o], Tensor::scalar(0.0f32));
            let fits = old.dtype() == slot.dtype && old.shape() == slot.shape.as_slice();
            let mut t = if fits {
                old
            } else {
                match Tensor::zeros(slot.dtype, slot.shape.clone()) {
                    Ok(t) => t,
                    Err(_) => continue,
                }
            };
            if let Some(b) = t.as_le_bytes_mut() {
                debug_assert_eq!(b.len(), slot.bytes());
                bound[s] = Some(b.as_mut_ptr());
                outs[o] = Some(t);
            }
        }
        let ptr = |s: usize| -> *mut u8 {
            match (bound[s], &self.weights[s], self.mem.offsets[s]) {
                (Some(p), _, _) => p,
                (None, Some(w), _) => w.as_ptr() as *mut u8,
                // SAFETY: offsets lie inside the arena.
                (None, None, Some(o)) => unsafe { base.add(o) },
                (None, None, None) => std::ptr::null_mut(),
            }
        };
        for (t, &s) in inputs.iter().zip(&self.plan.inputs) {
            if bound[s].is_some() {
                continue;
            }
            let bytes = t.to_le_bytes().ok_or_else(|| {
                RuntimeError::Step(format!("input {} has no byte form", t.dtype()))
            })?;
            // SAFETY: the slot has exactly the input's size (checked).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr(s), bytes.len()) };
        }
        let dims: [i64; 1] = [0];
        for (at, step) in self.plan.steps.iter().enumerate() {
            let t0 = times.as_ref().map(|_| std::time::Instant::now());
            match step {
                PlanStep::Kernel { kernel, args } => {
                    let ptrs: Vec<*mut u8> = args.iter().map(|&s| ptr(s)).collect();
                    // SAFETY: the kernel was compiled for exactly these
                    // buffers, each of the size the plan gives.
                    unsafe { (self.fns[*kernel])(ptrs.as_ptr(), dims.as_ptr(), self.rt.as_ptr()) };
                }
                PlanStep::Fallback {
                    label,
                    op,
                    inputs,
                    outputs,
                    types,
                } => {
                    let ins: Vec<Option<Tensor>> = inputs
                        .iter()
                        .map(|s| s.map(|s| self.read(s, ptr(s))).transpose())
                        .collect::<Result<_, _>>()?;
                    let refs: Vec<Option<&Tensor>> = ins.iter().map(|t| t.as_ref()).collect();
                    let outs = saturn_ir::interp::eval_op(op, &refs, types)
                        .map_err(|e| RuntimeError::Step(format!("node `{label}`: {e}")))?;
                    for (t, &s) in outs.iter().zip(outputs) {
                        let bytes = t.to_le_bytes().ok_or_else(|| {
                            RuntimeError::Step(format!("node `{label}`: output has no byte form"))
                        })?;
                        if bytes.len() != self.plan.slots[s].bytes() {
                            return Err(RuntimeError::Step(format!(
                                "node `{label}`: output of {} bytes for a buffer of {}",
                                bytes.len(),
                                self.plan.slots[s].bytes()
                            )));
                        }
                        // SAFETY: sizes checked just above.
                        unsafe {
                            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr(s), bytes.len())
                        };
                    }
                }
            }
            if let (Some(t), Some(t0)) = (times.as_deref_mut(), t0) {
                t[at] = t0.elapsed().as_secs_f64();
            }
        }
        self.plan
            .outputs
            .iter()
            .zip(outs)
            .map(|(&s, t)| match t {
                Some(t) => Ok(t),
                None => self.read(s, ptr(s)),
            })
            .collect()
    }

    fn read(&self, s: usize, p: *mut u8) -> Result<Tensor, RuntimeError> {
        let slot = &self.plan.slots[s];
        let n = slot.bytes();
        // SAFETY: the slot's memory holds `n` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
        debug_assert_eq!(n % elem_bytes(slot.dtype), 0);
        Tensor::from_le_bytes(slot.dtype, slot.shape.clone(), bytes)
            .map_err(|e| RuntimeError::Step(format!("buffer `{}`: {e}", slot.name)))
    }
}
