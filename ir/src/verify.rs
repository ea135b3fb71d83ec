//! The verifier: checks that a graph is well formed and well typed.
//!
//! - every node's inputs are defined before the node (so the graph is
//!   acyclic and in topological order);
//! - input and output counts are within the op's arity;
//! - the recorded output types agree with what the op's inference gives
//!   for the recorded input types;
//! - graph outputs exist; subgraphs verify, and their captures name values
//!   of an enclosing graph with a compatible type.

use crate::graph::{Graph, ValueDef};
use crate::ops::{InferCx, OpError};
use crate::shape::TensorType;

/// What is wrong, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("node `{node}` ({op}): {msg}")]
    Node {
        node: String,
        op: &'static str,
        msg: String,
    },
    #[error("graph `{graph}`: {msg}")]
    Graph { graph: String, msg: String },
}

/// Verifies a top-level graph.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    verify_in(g, &[])
}

fn verify_in(g: &Graph, enclosing: &[&Graph]) -> Result<(), VerifyError> {
    let graph_err = |msg: String| VerifyError::Graph {
        graph: g.name.clone(),
        msg,
    };
    for &c in g.captures() {
        let name = g.name(c);
        let outer = enclosing
            .iter()
            .rev()
            .find_map(|o| o.lookup(name).map(|v| o.ty(v)))
            .ok_or_else(|| {
                graph_err(format!(
                    "captured value `{name}` is not defined in an enclosing graph"
                ))
            })?;
        if outer.dtype != g.ty(c).dtype || !outer.shape.compatible(&g.ty(c).shape) {
            return Err(graph_err(format!(
                "captured value `{name}` is {} here but {outer} where it is defined",
                g.ty(c)
            )));
        }
    }
    for (i, n) in g.nodes().iter().enumerate() {
        let err = |msg: String| VerifyError::Node {
            node: n.label(g).to_string(),
            op: n.op.name(),
            msg,
        };
        for (what, got, range) in [
            ("inputs", n.inputs.len(), n.op.input_arity()),
            ("outputs", n.outputs.len(), n.op.output_arity()),
        ] {
            if !range.contains(&got) {
                return Err(err(format!("has {got} {what}, the op takes {range:?}")));
            }
        }
        for v in n.inputs.iter().flatten() {
            if v.index() >= g.num_values() {
                return Err(err(format!("input {v:?} does not exist")));
            }
            if let ValueDef::Node { node, .. } = g.value(*v).def
                && node.index() >= i
            {
                return Err(err(format!(
                    "input `{}` is defined by a later node (the graph has a cycle or is out of order)",
                    g.name(*v)
                )));
            }
        }
        let in_types: Vec<Option<TensorType>> = n
            .inputs
            .iter()
            .map(|v| v.map(|v| g.ty(v).clone()))
            .collect();
        let in_values: Vec<_> = n
            .inputs
            .iter()
            .map(|v| v.and_then(|v| g.const_value(v).cloned()))
            .collect();
        let cx = InferCx {
            inputs: &in_types,
            values: &in_values,
            num_outputs: n.outputs.len(),
            syms: &[],
        };
        match n.op.infer(&cx) {
            Ok(types) => {
                for (k, (&v, inferred)) in n.outputs.iter().zip(&types).enumerate() {
                    let rec = g.ty(v);
                    if rec.dtype != inferred.dtype || !rec.shape.compatible(&inferred.shape) {
                        return Err(err(format!(
                            "output {k} (`{}`) is recorded as {rec} but the op gives {inferred}",
                            g.name(v)
                        )));
                    }
                }
            }
            Err(OpError::Unsupported(_)) => {}
            Err(e) => return Err(err(e.to_string())),
        }
        let mut scope = enclosing.to_vec();
        scope.push(g);
        for sub in n.op.subgraphs() {
            verify_in(sub, &scope).map_err(|e| err(format!("in subgraph: {e}")))?;
        }
    }
    for &v in g.outputs() {
        if v.index() >= g.num_values() {
            return Err(graph_err(format!("output {v:?} does not exist")));
        }
    }
    Ok(())
}
