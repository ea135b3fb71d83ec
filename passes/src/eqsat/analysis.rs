//! The e-graph analysis: every e-class knows the types of its values and,
//! when it is a constant, its value (constant folding).

use std::sync::Arc;

use egg::{Analysis, DidMerge, Id};
use saturn_ir::builder::merge_types;
use saturn_ir::ops::{InferCx, Op};
use saturn_ir::target::Target;
use saturn_ir::{Tensor, TensorType, interp};

use super::lang::{ConstId, ConstTable, Node, OpId, OpTable};

pub type EGraph = egg::EGraph<Node, GraphAnalysis>;

/// Largest result (in elements) folded into a constant.
pub const FOLD_LIMIT: u64 = 1 << 23;

/// A match a rule applied: its name, the root and matched classes, and
/// the match's numbers (floats as bits).
pub type AppliedMatch = (&'static str, Vec<Id>, Vec<i64>, Vec<u64>);

/// Tables and inputs the analysis reads; the e-graph owns it.
pub struct GraphAnalysis {
    pub ops: OpTable,
    pub consts: ConstTable,
    /// Types of the graph inputs.
    pub inputs: Vec<TensorType>,
    /// E-classes merged although their types disagree: a rewrite that
    /// is not sound. Tests assert this stays 0.
    pub conflicts: usize,
    /// The target, for rules whose result depends on it (tile sizes).
    pub target: Target,
    /// Matches already applied (rule, match): egg finds a match again in
    /// every iteration, and building it again would redo its work (such as
    /// folding a BatchNorm into convolution weights) for nothing.
    pub applied: std::collections::HashSet<AppliedMatch>,
}

impl Default for GraphAnalysis {
    fn default() -> GraphAnalysis {
        GraphAnalysis {
            ops: OpTable::default(),
            consts: ConstTable::default(),
            inputs: Vec::new(),
            conflicts: 0,
            target: Target::named("x86-64-avx512").expect("a reference target"),
            applied: Default::default(),
        }
    }
}

/// What the analysis knows about an e-class.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// One type for a value; one per output for the class of a
    /// multi-output op; none for an omitted input.
    pub types: Vec<TensorType>,
    /// The value, where it is a known constant.
    pub value: Option<ConstId>,
    /// The class of an omitted optional input.
    pub absent: bool,
}

impl Facts {
    /// The type of a single value.
    pub fn ty(&self) -> Option<&TensorType> {
        match self.types.as_slice() {
            [t] => Some(t),
            _ => None,
        }
    }
}

/// How many of an op e-node's children are its inputs; the rest are the
/// values its subgraphs capture.
pub fn explicit_inputs(op: &Op, children: usize) -> usize {
    let captures: usize = op.subgraphs().iter().map(|g| g.captures().len()).sum();
    children.saturating_sub(captures)
}

impl GraphAnalysis {
    pub fn op(&self, id: OpId) -> &Op {
        self.ops.get(id)
    }

    pub fn value(&self, id: ConstId) -> &Arc<Tensor> {
        self.consts.get(id)
    }
}

/// Infers the output types of `op` applied to the given classes, and
/// folds it when every input is constant. `None` when inference rejects it.
pub fn infer_op(
    egraph: &EGraph,
    op: &Op,
    outputs: usize,
    children: &[Id],
) -> Option<(Vec<TensorType>, Option<Tensor>)> {
    let n = explicit_inputs(op, children.len());
    let mut types = Vec::with_capacity(n);
    let mut values: Vec<Option<Arc<Tensor>>> = Vec::with_capacity(n);
    for &c in &children[..n] {
        let f = &egraph[c].data;
        if f.absent {
            types.push(None);
            values.push(None);
        } else {
            types.push(Some(f.ty()?.clone()));
            values.push(f.value.map(|v| egraph.analysis.value(v).clone()));
        }
    }
    let cx = InferCx {
        inputs: &types,
        values: &values,
        num_outputs: outputs,
        syms: &[],
    };
    let out = op.infer(&cx).ok()?;
    if out.len() != outputs {
        return None;
    }
    let foldable = out.len() == 1
        && op.subgraphs().is_empty()
        && types
            .iter()
            .zip(&values)
            .all(|(t, v)| t.is_none() || v.is_some())
        && out[0].shape.numel().is_some_and(|n| n <= FOLD_LIMIT)
        && values.iter().any(|v| v.is_some());
    if let Some(t) = shape_value(op, &types) {
        return Some((out, Some(t)));
    }
    let folded = if foldable {
        let refs: Vec<Option<&Tensor>> = values.iter().map(|v| v.as_deref()).collect();
        interp::eval_op(op, &refs, &out)
            .ok()
            .and_then(|mut v| v.pop())
    } else {
        None
    };
    Some((out, folded))
}

/// `Shape` and `Size` of a value whose shape is static are constants,
/// whatever the value is.
fn shape_value(op: &Op, inputs: &[Option<TensorType>]) -> Option<Tensor> {
    let dims = inputs.first()?.as_ref()?.shape.as_known()?;
    match op {
        Op::Shape(s) => {
            let (a, b) = saturn_ir::ops::rules::shape_range(s.start, s.end, dims.len());
            let v: Vec<i64> = dims[a..b].iter().map(|&d| d as i64).collect();
            Some(Tensor::from_vec(vec![v.len()], v))
        }
        Op::Size(_) => Some(Tensor::scalar(dims.iter().product::<usize>() as i64)),
        _ => None,
    }
}

impl Analysis<Node> for GraphAnalysis {
    type Data = Facts;

    fn make(egraph: &mut EGraph, enode: &Node, _id: Id) -> Facts {
        let none = Facts {
            types: vec![],
            value: None,
            absent: false,
        };
        match enode {
            Node::Input(i) => Facts {
                types: egraph
                    .analysis
                    .inputs
                    .get(*i as usize)
                    .cloned()
                    .into_iter()
                    .collect(),
                ..none
            },
            Node::Const(c) => {
                let t = egraph.analysis.value(*c);
                Facts {
                    types: vec![TensorType::known(t.dtype(), t.shape())],
                    value: Some(*c),
                    absent: false,
                }
            }
            Node::Absent => Facts {
                absent: true,
                ..none
            },
            Node::Proj(k, [tuple]) => Facts {
                types: egraph[*tuple]
                    .data
                    .types
                    .get(*k as usize)
                    .cloned()
                    .into_iter()
                    .collect(),
                ..none
            },
            Node::Op(o, children) => {
                let op = egraph.analysis.op(*o).clone();
                let outputs = egraph.analysis.ops.outputs(*o);
                match infer_op(egraph, &op, outputs, children) {
                    Some((types, folded)) => {
                        let value = folded.map(|t| egraph.analysis.consts.intern(Arc::new(t)));
                        Facts {
                            types,
                            value,
                            absent: false,
                        }
                    }
                    None => none,
                }
            }
        }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        let mut changed_a = false;
        if a.types.is_empty() && !b.types.is_empty() {
            a.types = b.types.clone();
            changed_a = true;
        } else if a.types.len() == b.types.len() {
            for (x, y) in a.types.iter_mut().zip(&b.types) {
                match merge_types(x, y) {
                    Some(m) if m != *x => {
                        *x = m;
                        changed_a = true;
                    }
                    Some(_) => {}
                    None => self.conflicts += 1,
                }
            }
        } else if !b.types.is_empty() {
            self.conflicts += 1;
        }
        if a.value.is_none() && b.value.is_some() {
            a.value = b.value;
            changed_a = true;
        }
        let changed_b = a.types != b.types || a.value != b.value;
        DidMerge(changed_a, changed_b)
    }

    fn modify(egraph: &mut EGraph, id: Id) {
        if let Some(c) = egraph[id].data.value {
            let leaf = egraph.add(Node::Const(c));
            egraph.union(id, leaf);
        }
    }
}
