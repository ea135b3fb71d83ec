//! The reference interpreter: evaluates Graph IR on concrete tensors with
//! ONNX semantics. It is the oracle every rewrite and backend is checked
//! against, so each kernel is written for clarity first; loops are plain
//! but not wasteful, so whole models run in seconds.

mod attention;
mod control;
mod conv;
mod elementwise;
mod image;
pub mod kernels;
mod linalg;
mod loss;
mod ml;
mod norm;
mod quant;
mod reduce;
mod rnn;
mod signal;
mod string;
mod tensor;

use std::sync::Arc;

use crate::graph::{Graph, Value, ValueDef};
use crate::ops::OpError;
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// Reference evaluation of an op.
pub trait Eval {
    fn eval(&self, _cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let name = std::any::type_name::<Self>()
            .rsplit("::")
            .next()
            .unwrap_or("?");
        Err(OpError::Unsupported(format!(
            "the reference interpreter has no {name}"
        )))
    }
}

/// Implements [`Eval`] with the default (unsupported) body for ops that
/// have no reference implementation yet.
#[macro_export]
macro_rules! no_eval {
    ($($op:ident),* $(,)?) => { $(impl $crate::interp::Eval for $op {})* };
}

/// Why a graph could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("the graph takes {expected} inputs, {got} were given")]
    InputCount { expected: usize, got: usize },
    #[error("input `{name}` is {actual}, the graph expects {expected}")]
    InputType {
        name: String,
        expected: TensorType,
        actual: String,
    },
    #[error("node `{node}` ({op}): {err}")]
    Op {
        node: String,
        op: &'static str,
        err: OpError,
    },
    #[error("node `{node}` ({op}): output {index} is {actual}, but its type is {expected}")]
    OutputType {
        node: String,
        op: &'static str,
        index: usize,
        expected: TensorType,
        actual: String,
    },
    #[error("captured value `{0}` is not defined in any enclosing graph")]
    UnboundCapture(String),
    #[error("graph output `{0}` was not computed")]
    MissingOutput(String),
}

/// Values visible to a subgraph: the enclosing graphs' environments.
pub struct Scope<'a> {
    parent: Option<&'a Scope<'a>>,
    graph: &'a Graph,
    env: &'a [Option<Arc<Tensor>>],
}

impl Scope<'_> {
    fn lookup(&self, name: &str) -> Option<Arc<Tensor>> {
        if let Some(v) = self.graph.lookup(name)
            && let Some(Some(t)) = self.env.get(v.index())
        {
            return Some(t.clone());
        }
        self.parent?.lookup(name)
    }
}

/// What an op's evaluation sees: its inputs and a way to run subgraphs.
pub struct EvalCx<'a> {
    pub inputs: &'a [Option<&'a Tensor>],
    /// Output types recorded in the graph.
    pub output_types: &'a [TensorType],
    pub num_outputs: usize,
    scope: &'a Scope<'a>,
}

impl<'a> EvalCx<'a> {
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Input `i`, which must be present.
    pub fn input(&self, i: usize) -> Result<&'a Tensor, OpError> {
        self.opt_input(i)
            .ok_or_else(|| OpError::Invalid(format!("input {i} is required")))
    }

    /// Input `i`, if present.
    pub fn opt_input(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).copied().flatten()
    }

    /// Runs a subgraph of this node with the given inputs; its captures
    /// read the enclosing graphs' values.
    pub fn run_subgraph(&self, g: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, OpError> {
        run_scoped(g, inputs, Some(self.scope))
            .map_err(|e| OpError::Invalid(format!("in subgraph `{}`: {e}", g.name)))
    }
}

/// Evaluates a graph on the given inputs (in graph input order).
pub fn run(graph: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InterpError> {
    run_scoped(graph, inputs, None)
}

fn describe(t: &Tensor) -> String {
    format!("{}{:?}", t.dtype(), t.shape())
}

/// Values of the enclosing graph that a node's subgraphs read.
pub fn implicit_inputs(graph: &Graph, node: &crate::graph::Node) -> Vec<Value> {
    let mut out = Vec::new();
    for g in node.op.subgraphs() {
        for &c in g.captures() {
            if let Some(v) = graph.lookup(g.name(c)) {
                out.push(v);
            }
        }
    }
    out
}

fn run_scoped(
    graph: &Graph,
    inputs: Vec<Tensor>,
    parent: Option<&Scope>,
) -> Result<Vec<Tensor>, InterpError> {
    if inputs.len() != graph.inputs().len() {
        return Err(InterpError::InputCount {
            expected: graph.inputs().len(),
            got: inputs.len(),
        });
    }
    let mut env: Vec<Option<Arc<Tensor>>> = vec![None; graph.num_values()];
    for (&v, t) in graph.inputs().iter().zip(inputs) {
        let ty = graph.ty(v);
        if ty.dtype != t.dtype() || !ty.shape.admits(t.shape()) {
            return Err(InterpError::InputType {
                name: graph.name(v).to_string(),
                expected: ty.clone(),
                actual: describe(&t),
            });
        }
        env[v.index()] = Some(Arc::new(t));
    }
    for (v, d) in graph.values() {
        match &d.def {
            ValueDef::Const(t) => env[v.index()] = Some(t.clone()),
            ValueDef::Capture => {
                let t = parent
                    .and_then(|p| p.lookup(&d.name))
                    .ok_or_else(|| InterpError::UnboundCapture(d.name.clone()))?;
                env[v.index()] = Some(t);
            }
            _ => {}
        }
    }

    // Free each intermediate after its last use.
    let mut uses = graph.use_counts();
    let implicit: Vec<Vec<Value>> = graph
        .nodes()
        .iter()
        .map(|n| implicit_inputs(graph, n))
        .collect();
    for vs in &implicit {
        for v in vs {
            uses[v.index()] += 1;
        }
    }

    for (node, implicit) in graph.nodes().iter().zip(&implicit) {
        let outputs = {
            let inputs: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|v| v.and_then(|v| env[v.index()].as_deref()))
                .collect();
            let output_types: Vec<TensorType> =
                node.outputs.iter().map(|&v| graph.ty(v).clone()).collect();
            let scope = Scope {
                parent,
                graph,
                env: &env,
            };
            let cx = EvalCx {
                inputs: &inputs,
                output_types: &output_types,
                num_outputs: node.outputs.len(),
                scope: &scope,
            };
            let op_err = |err| InterpError::Op {
                node: node.label(graph).to_string(),
                op: node.op.name(),
                err,
            };
            let outputs = node.op.eval(&cx).map_err(op_err)?;
            if outputs.len() < node.outputs.len() {
                return Err(op_err(OpError::Invalid(format!(
                    "produced {} outputs, the node has {}",
                    outputs.len(),
                    node.outputs.len()
                ))));
            }
            outputs
        };
        for (index, (&v, t)) in node.outputs.iter().zip(outputs).enumerate() {
            let ty = graph.ty(v);
            if ty.dtype != t.dtype() || !ty.shape.admits(t.shape()) {
                return Err(InterpError::OutputType {
                    node: node.label(graph).to_string(),
                    op: node.op.name(),
                    index,
                    expected: ty.clone(),
                    actual: describe(&t),
                });
            }
            if uses[v.index()] > 0 {
                env[v.index()] = Some(Arc::new(t));
            }
        }
        for v in node.inputs.iter().flatten().chain(implicit) {
            uses[v.index()] -= 1;
            if uses[v.index()] == 0 && matches!(graph.value(*v).def, ValueDef::Node { .. }) {
                env[v.index()] = None;
            }
        }
    }

    graph
        .outputs()
        .iter()
        .map(|&v| {
            let t = env[v.index()]
                .clone()
                .ok_or_else(|| InterpError::MissingOutput(graph.name(v).to_string()))?;
            Ok(Arc::try_unwrap(t).unwrap_or_else(|t| (*t).clone()))
        })
        .collect()
}

/// Evaluates one op without subgraphs on the given inputs.
pub fn eval_op(
    op: &crate::ops::Op,
    inputs: &[Option<&Tensor>],
    output_types: &[TensorType],
) -> Result<Vec<Tensor>, OpError> {
    let empty = Graph::default();
    let scope = Scope {
        parent: None,
        graph: &empty,
        env: &[],
    };
    let cx = EvalCx {
        inputs,
        output_types,
        num_outputs: output_types.len(),
        scope: &scope,
    };
    op.eval(&cx)
}
