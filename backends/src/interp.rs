//! The reference interpreter as a backend: no compilation, exact ONNX
//! semantics.

use std::sync::Arc;

use saturn_ir::{Graph, Tensor, interp};

use super::{Backend, BackendError, Executable};

pub struct Interp;

impl Backend for Interp {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn description(&self) -> &'static str {
        "the reference interpreter (always available; the oracle for every other backend)"
    }

    fn prepare(&self, graph: &Graph) -> Result<Box<dyn Executable>, BackendError> {
        Ok(Box::new(Prepared(Arc::new(graph.clone()))))
    }
}

struct Prepared(Arc<Graph>);

impl Executable for Prepared {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        interp::run(&self.0, inputs).map_err(|e| BackendError::Run(e.to_string()))
    }
}
