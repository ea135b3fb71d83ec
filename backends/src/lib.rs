//! Saturn's backends behind one small trait, looked up by name.
//!
//! A backend turns a verified graph into something that runs
//! ([`Backend::prepare`]); the result runs on input tensors
//! ([`Executable::run`]). `interp` (the reference interpreter) is always
//! available; code generators register here behind their cargo features.

pub mod aot;
pub mod cpu;
pub mod cpu_cranelift;
#[cfg(feature = "llvm")]
pub mod cpu_llvm;
pub mod interp;
pub mod native;

use saturn_ir::target::Target;
use saturn_ir::{Graph, Tensor};

/// Why a backend could not prepare or run a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{0}` (available: {1})")]
    Unknown(String, String),
    #[error("backend `{0}` was not built into this saturn (enable cargo feature `{1}`)")]
    Disabled(String, &'static str),
    #[error("{0}")]
    Run(String),
}

/// A target Saturn can run models on.
pub trait Backend: Sync {
    fn name(&self) -> &'static str;
    /// One line for `--help` and `saturn backends`.
    fn description(&self) -> &'static str;
    /// Prepares a graph for execution (compiles it, for code generators).
    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, BackendError>;
    /// [`Backend::prepare`] with options (threads, target).
    fn prepare_with(
        &self,
        graph: &Graph,
        opts: &PrepareOptions,
    ) -> Result<Box<dyn Executable>, BackendError> {
        let _ = opts;
        self.prepare(graph)
    }
}

/// How a backend prepares a model.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// Threads for parallel loops (0: one per core).
    pub threads: usize,
    /// The target the code is for.
    pub target: Target,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            threads: 0,
            target: Target::host(),
        }
    }
}

/// A prepared model.
pub trait Executable {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError>;
    /// [`Executable::run`] writing into `outputs` where they already are
    /// tensors of the right dtypes and shapes (as from an earlier run), so
    /// that their memory is reused, as a caller of the C ABI passes its
    /// output buffers.
    fn run_into(&self, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<(), BackendError> {
        *outputs = self.run(inputs.to_vec())?;
        Ok(())
    }
    /// Runs and says how long each step took (kernel or node name,
    /// seconds), where the backend can tell; `None` where it cannot.
    fn profile(&self, inputs: Vec<Tensor>) -> Result<Option<Vec<(String, f64)>>, BackendError> {
        self.run(inputs)?;
        Ok(None)
    }
}

#[cfg(not(feature = "llvm"))]
static BACKENDS: &[&dyn Backend] = &[&interp::Interp, &cpu::CPU];
#[cfg(feature = "llvm")]
static BACKENDS: &[&dyn Backend] = &[&interp::Interp, &cpu::CPU, &cpu::LLVM];

/// Backends that are known but need a cargo feature, with that feature.
#[cfg(not(feature = "llvm"))]
static DISABLED: &[(&str, &str)] = &[("llvm", "llvm")];
#[cfg(feature = "llvm")]
static DISABLED: &[(&str, &str)] = &[];

/// All backends built into this binary.
pub fn available() -> &'static [&'static dyn Backend] {
    BACKENDS
}

/// The backend called `name`.
pub fn lookup(name: &str) -> Result<&'static dyn Backend, BackendError> {
    if let Some(b) = BACKENDS.iter().find(|b| b.name() == name) {
        return Ok(*b);
    }
    if let Some((n, feature)) = DISABLED.iter().find(|(n, _)| *n == name) {
        return Err(BackendError::Disabled(n.to_string(), feature));
    }
    let names: Vec<&str> = BACKENDS.iter().map(|b| b.name()).collect();
    Err(BackendError::Unknown(name.to_string(), names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_name() {
        assert_eq!(lookup("interp").unwrap().name(), "interp");
        let e = lookup("tpu").err().unwrap().to_string();
        assert!(
            e.contains("unknown backend `tpu`") && e.contains("interp"),
            "{e}"
        );
    }
}
