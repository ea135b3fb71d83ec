//! The registry of op builders, by domain.
//!
//! Most ops need nothing more than the generic builder: the op's declared
//! attributes are read with their types from the node's attributes
//! ([`saturn_ir::Op::from_onnx`]). Ops whose meaning changed between
//! opsets, or that ONNX spells differently from Saturn, register their own
//! builder in their domain's module; it branches on the opset and emits the
//! op's current form.

mod ai_onnx;
mod ml;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use saturn_ir::builder::GraphBuilder;
use saturn_ir::ops::Op;
use saturn_ir::{Attrs, Tensor, TensorType, Value};

use super::ImportError;

/// One ONNX node on its way into the graph.
pub struct NodeCx<'a> {
    pub b: &'a mut GraphBuilder,
    /// The node's name as written (may be empty).
    pub name: &'a str,
    /// The name errors use.
    pub label: String,
    pub op_type: &'a str,
    /// The opset version of the node's domain.
    pub opset: i64,
    pub inputs: Vec<Option<Value>>,
    pub attrs: Attrs,
    /// Output names with the types the model declares for them.
    pub outputs: Vec<(String, Option<TensorType>)>,
}

/// Builds the nodes for one ONNX node.
pub type Build = fn(NodeCx) -> Result<(), ImportError>;

/// Ops of the domain `ai.onnx.ml`.
const ML_OPS: &[&str] = &[
    "ArrayFeatureExtractor",
    "Binarizer",
    "LabelEncoder",
    "TreeEnsemble",
];
/// Ops of the domain `ai.onnx.preview.training`.
const TRAINING_OPS: &[&str] = &["Adagrad", "Adam", "Momentum"];
/// Ops of the domain `ai.onnx.preview`.
const PREVIEW_OPS: &[&str] = &["FlexAttention"];

fn registry() -> &'static HashMap<(&'static str, &'static str), Build> {
    static REG: OnceLock<HashMap<(&'static str, &'static str), Build>> = OnceLock::new();
    REG.get_or_init(|| {
        let mut r = HashMap::new();
        ai_onnx::register(&mut |op, b| {
            r.insert(("", op), b);
        });
        ml::register(&mut |op, b| {
            r.insert(("ai.onnx.ml", op), b);
        });
        r
    })
}

/// The builder for an op of a domain (`""` is the default domain).
pub fn lookup(domain: &str, op_type: &str) -> Option<Build> {
    if let Some(&b) = registry().get(&(domain, op_type)) {
        return Some(b);
    }
    let in_domain = match domain {
        "" => {
            !ML_OPS.contains(&op_type)
                && !TRAINING_OPS.contains(&op_type)
                && !PREVIEW_OPS.contains(&op_type)
        }
        "ai.onnx.ml" => ML_OPS.contains(&op_type),
        "ai.onnx.preview.training" => TRAINING_OPS.contains(&op_type),
        "ai.onnx.preview" => PREVIEW_OPS.contains(&op_type),
        _ => false,
    };
    let known = Op::all_names().iter().any(|&(_, onnx)| onnx == op_type);
    (in_domain && known).then_some(generic as Build)
}

/// Every (domain, op type) Saturn imports, for `saturn ops`.
pub fn supported() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for &(_, onnx) in Op::all_names() {
        let domain = if ML_OPS.contains(&onnx) {
            "ai.onnx.ml"
        } else if TRAINING_OPS.contains(&onnx) {
            "ai.onnx.preview.training"
        } else if PREVIEW_OPS.contains(&onnx) {
            "ai.onnx.preview"
        } else {
            "ai.onnx"
        };
        out.push((domain.into(), onnx.into()));
    }
    for &(d, op) in registry().keys() {
        let d = if d.is_empty() { "ai.onnx" } else { d };
        if !out.iter().any(|(a, b)| a == d && b == op) {
            out.push((d.into(), op.into()));
        }
    }
    out.sort();
    out
}

/// The generic builder: attributes as declared, inputs as given.
pub fn generic(mut cx: NodeCx) -> Result<(), ImportError> {
    let op = cx.op_from_attrs(cx.op_type)?;
    cx.finish(op)
}

impl NodeCx<'_> {
    pub fn err(&self, msg: impl Into<String>) -> ImportError {
        ImportError::Node {
            node: self.label.clone(),
            op: self.op_type.to_string(),
            opset: self.opset,
            msg: msg.into(),
        }
    }

    /// Builds the Saturn op `onnx_name` from the node's attributes; any
    /// attribute it does not declare is an error.
    pub fn op_from_attrs(&mut self, onnx_name: &str) -> Result<Op, ImportError> {
        let attr_err = |cx: &Self, err| ImportError::Attr {
            node: cx.label.clone(),
            op: cx.op_type.to_string(),
            opset: cx.opset,
            err,
        };
        let op = match Op::from_onnx(onnx_name, &mut self.attrs) {
            Some(Ok(op)) => op,
            Some(Err(e)) => return Err(attr_err(self, e)),
            None => return Err(self.err(format!("no Saturn op named {onnx_name}"))),
        };
        std::mem::take(&mut self.attrs)
            .finish()
            .map_err(|e| attr_err(self, e))?;
        Ok(op)
    }

    /// Adds the node's final op, producing the node's outputs.
    pub fn finish(self, op: Op) -> Result<(), ImportError> {
        self.b.node(self.name, op, self.inputs, self.outputs)?;
        Ok(())
    }

    /// Adds a helper node with one fresh output.
    pub fn emit(&mut self, op: impl Into<Op>, inputs: &[Value]) -> Result<Value, ImportError> {
        Ok(self.b.op(op, inputs)?)
    }

    /// Adds a constant with a fresh name.
    pub fn constant(&mut self, t: Tensor) -> Result<Value, ImportError> {
        let base = format!("{}_const", self.label);
        Ok(self.b.fresh_constant(&base, Arc::new(t))?)
    }

    /// A 1-D i64 constant.
    pub fn ints(&mut self, v: &[i64]) -> Result<Value, ImportError> {
        self.constant(Tensor::from_vec(vec![v.len()], v.to_vec()))
    }

    /// Input `i`, which must be present.
    pub fn input(&self, i: usize) -> Result<Value, ImportError> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| self.err(format!("input {i} is required")))
    }

    /// Sets input `i` (padding with omitted inputs).
    pub fn set_input(&mut self, i: usize, v: Option<Value>) {
        if self.inputs.len() <= i {
            self.inputs.resize(i + 1, None);
        }
        self.inputs[i] = v;
    }

    /// The rank of input `i`, if known.
    pub fn rank(&self, i: usize) -> Option<usize> {
        let v = self.inputs.get(i).copied().flatten()?;
        self.b.graph().ty(v).rank()
    }
}
