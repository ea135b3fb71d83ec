//! Saturn's runtime: runs compiled models.
//!
//! A compiled model is a [`Plan`]: buffers ([`Slot`]s: inputs, constants,
//! intermediates, outputs, kernel scratch) and the steps that fill them
//! (calls of compiled kernels, or interpreter fallbacks). [`memory::plan`]
//! places every intermediate in one arena by liveness, so buffers whose
//! lifetimes do not overlap share memory. A [`Session`] binds inputs,
//! runs the steps with a thread pool ([`pool`]) for the kernels' parallel
//! loops and returns the outputs.
//!
//! Kernels are called with the kernel ABI of Saturn's code generators:
//! `fn(bufs: *const *mut u8, dims: *const i64, rt: *mut c_void)`, with the
//! runtime's [`pool::saturn_parallel_for`] as the parallel-loop entry.

pub mod memory;
pub mod pool;
mod session;

use saturn_ir::DType;
use saturn_ir::ops::Op;
use saturn_ir::shape::TensorType;
use saturn_ir::tensor::Tensor;
use std::sync::Arc;

pub use session::{Session, StepTimes};

/// The kernel ABI.
pub type KernelFn = unsafe extern "C" fn(*const *mut u8, *const i64, *mut std::ffi::c_void);

/// What a buffer holds.
#[derive(Clone, Debug)]
pub enum SlotKind {
    /// Graph input `i`.
    Input(usize),
    /// Constant data (weights).
    Const(Arc<Tensor>),
    /// Computed by a step (intermediates and outputs).
    Temp,
    /// Computed by a step into bytes `offset..` of slot `base` (a part
    /// of a concatenation written in place; never an input or output).
    View { base: usize, offset: usize },
    /// Working memory of one kernel call.
    Scratch,
}

#[derive(Clone, Debug)]
pub struct Slot {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub kind: SlotKind,
}

impl Slot {
    pub fn bytes(&self) -> usize {
        let n: usize = self.shape.iter().product();
        n * elem_bytes(self.dtype)
    }
}

/// Bytes per element in a buffer (bool is one byte).
pub fn elem_bytes(d: DType) -> usize {
    (d.bits() / 8).max(1)
}

#[derive(Clone, Debug)]
pub enum PlanStep {
    /// Call kernel `kernel` with these slots as its buffers.
    Kernel { kernel: usize, args: Vec<usize> },
    /// Run an op with the reference interpreter.
    Fallback {
        label: String,
        op: Op,
        inputs: Vec<Option<usize>>,
        outputs: Vec<usize>,
        types: Vec<TensorType>,
    },
}

/// A compiled model, independent of where its kernels live.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub slots: Vec<Slot>,
    pub steps: Vec<PlanStep>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    /// Kernel names, by index (symbols in a library, entries in a JIT).
    pub kernels: Vec<String>,
}

/// Errors of running a model: bad inputs are named precisely.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    #[error("expected {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
    #[error("input {index} (`{name}`): expected {expected}, got {got}")]
    InputType {
        index: usize,
        name: String,
        expected: String,
        got: String,
    },
    #[error("{0}")]
    Step(String),
}
