//! Building graphs with type inference.
//!
//! [`GraphBuilder`] adds nodes in topological order and types each output
//! by the op's inference. It also tracks the values it can compute at build
//! time (constants, and small results of ops whose inputs are all known,
//! such as shape arithmetic) so that inference of `reshape`, `slice`,
//! `constant_of_shape` … sees the shapes they compute. The graph itself is
//! not changed by this: folding for real is a pass.

use std::sync::Arc;

use crate::graph::{Graph, GraphError, NodeId, Value};
use crate::interp;
use crate::ops::infer::SymInt;
use crate::ops::{InferCx, Op, OpError};
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// Largest result (in elements) the builder computes to learn a value.
const KNOWN_LIMIT: u64 = 1 << 16;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("node `{node}` ({op}): {err}")]
    Op {
        node: String,
        op: &'static str,
        err: OpError,
    },
    #[error("node `{node}` ({op}): takes {expected} {what}, has {got}")]
    Arity {
        node: String,
        op: &'static str,
        what: &'static str,
        expected: String,
        got: usize,
    },
    #[error(
        "node `{node}` ({op}): output `{value}` is declared {declared} but inferred {inferred}"
    )]
    TypeConflict {
        node: String,
        op: &'static str,
        value: String,
        /// The declared and inferred types, as text.
        declared: String,
        inferred: String,
    },
}

/// Builds a [`Graph`], inferring the type of every node output.
pub struct GraphBuilder {
    graph: Graph,
    known: Vec<Option<Arc<Tensor>>>,
    /// Small integer values followed element by element where some
    /// elements are symbolic dims (shapes of tensors with symbolic dims).
    syms: Vec<Option<Vec<SymInt>>>,
}

fn arity_text(r: &std::ops::RangeInclusive<usize>) -> String {
    match (*r.start(), *r.end()) {
        (a, b) if a == b => format!("{a}"),
        (a, usize::MAX) => format!("at least {a}"),
        (a, b) => format!("{a} to {b}"),
    }
}

/// Combines an inferred type with one declared by the producer of the
/// model, keeping what each knows. `None` if they contradict each other.
pub fn merge_types(inferred: &TensorType, declared: &TensorType) -> Option<TensorType> {
    if inferred.dtype != declared.dtype {
        return None;
    }
    let shape = match (&inferred.shape, &declared.shape) {
        (Shape::UnknownRank, s) | (s, Shape::UnknownRank) => s.clone(),
        (Shape::Ranked(a), Shape::Ranked(b)) => {
            if a.len() != b.len() {
                return None;
            }
            let mut dims = Vec::with_capacity(a.len());
            for (x, y) in a.iter().zip(b) {
                dims.push(match (x, y) {
                    (Dim::Known(p), Dim::Known(q)) if p != q => return None,
                    (Dim::Known(_), _) => x.clone(),
                    (_, Dim::Known(_)) => y.clone(),
                    (Dim::Sym(_), _) => x.clone(),
                    _ => y.clone(),
                });
            }
            Shape::Ranked(dims)
        }
    };
    Some(TensorType::new(inferred.dtype, shape))
}

impl GraphBuilder {
    pub fn new(name: impl Into<String>) -> GraphBuilder {
        GraphBuilder {
            graph: Graph::new(name),
            known: Vec::new(),
            syms: Vec::new(),
        }
    }

    fn remember(&mut self, v: Value, t: Option<Arc<Tensor>>) {
        if self.known.len() <= v.index() {
            self.known.resize(v.index() + 1, None);
        }
        self.known[v.index()] = t;
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The value of `v` if it is known at build time.
    pub fn known(&self, v: Value) -> Option<&Arc<Tensor>> {
        self.known.get(v.index()).and_then(|t| t.as_ref())
    }

    pub fn input(&mut self, name: impl Into<String>, ty: TensorType) -> Result<Value, BuildError> {
        Ok(self.graph.add_input(name, ty)?)
    }

    pub fn constant(
        &mut self,
        name: impl Into<String>,
        t: impl Into<Arc<Tensor>>,
    ) -> Result<Value, BuildError> {
        let t = t.into();
        let v = self.graph.add_const(name, t.clone())?;
        self.remember(v, Some(t));
        Ok(v)
    }

    /// A constant with a fresh name derived from `base`.
    pub fn fresh_constant(
        &mut self,
        base: &str,
        t: impl Into<Arc<Tensor>>,
    ) -> Result<Value, BuildError> {
        let name = self.graph.fresh_name(base);
        self.constant(name, t)
    }

    pub fn capture(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
    ) -> Result<Value, BuildError> {
        Ok(self.graph.add_capture(name, ty)?)
    }

    pub fn fresh_name(&self, base: &str) -> String {
        self.graph.fresh_name(base)
    }

    /// Adds a node with one fresh-named output and returns it.
    pub fn op(&mut self, op: impl Into<Op>, inputs: &[Value]) -> Result<Value, BuildError> {
        let op = op.into();
        let name = self.graph.fresh_name(op.name());
        let inputs: Vec<Option<Value>> = inputs.iter().copied().map(Some).collect();
        Ok(self.node("", op, inputs, vec![(name, None)])?[0])
    }

    /// Adds a node. Each output has a name (empty for a fresh one) and
    /// optionally a type declared by whoever produced the model, which is
    /// merged with the inferred type. Inference that is not implemented
    /// for an op falls back to the declared types.
    pub fn node(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<Option<Value>>,
        outputs: Vec<(String, Option<TensorType>)>,
    ) -> Result<Vec<Value>, BuildError> {
        let node_label = if name.is_empty() {
            outputs.first().map(|o| o.0.clone()).unwrap_or_default()
        } else {
            name.to_string()
        };
        let op_err = |err| BuildError::Op {
            node: node_label.clone(),
            op: op.name(),
            err,
        };
        // Trailing omitted inputs are the same as absent ones.
        let mut inputs = inputs;
        while inputs.last() == Some(&None) {
            inputs.pop();
        }
        for (what, got, range) in [
            ("inputs", inputs.len(), op.input_arity()),
            ("outputs", outputs.len(), op.output_arity()),
        ] {
            if !range.contains(&got) {
                return Err(BuildError::Arity {
                    node: node_label,
                    op: op.name(),
                    what,
                    expected: arity_text(&range),
                    got,
                });
            }
        }
        for v in inputs.iter().flatten() {
            if v.index() >= self.graph.num_values() {
                return Err(GraphError::BadValue(*v).into());
            }
        }
        let in_types: Vec<Option<TensorType>> = inputs
            .iter()
            .map(|v| v.map(|v| self.graph.ty(v).clone()))
            .collect();
        let in_values: Vec<Option<Arc<Tensor>>> = inputs
            .iter()
            .map(|v| v.and_then(|v| self.known(v).cloned()))
            .collect();
        let in_syms: Vec<Option<Vec<SymInt>>> = inputs
            .iter()
            .map(|v| v.and_then(|v| self.syms.get(v.index()).cloned().flatten()))
            .collect();
        let cx = InferCx {
            inputs: &in_types,
            values: &in_values,
            num_outputs: outputs.len(),
            syms: &in_syms,
        };
        let inferred = match op.infer(&cx) {
            Ok(types) => Some(types),
            Err(OpError::Unsupported(_)) if outputs.iter().all(|o| o.1.is_some()) => None,
            Err(e) => return Err(op_err(e)),
        };
        let mut types = Vec::with_capacity(outputs.len());
        for (i, (out_name, declared)) in outputs.iter().enumerate() {
            let inf = inferred.as_ref().and_then(|t| t.get(i));
            let ty = match (inf, declared) {
                (Some(inf), Some(dec)) => {
                    merge_types(inf, dec).ok_or_else(|| BuildError::TypeConflict {
                        node: node_label.clone(),
                        op: op.name(),
                        value: out_name.clone(),
                        declared: dec.to_string(),
                        inferred: inf.to_string(),
                    })?
                }
                (Some(inf), None) => inf.clone(),
                (None, Some(dec)) => dec.clone(),
                (None, None) => {
                    return Err(op_err(OpError::Invalid(format!(
                        "inference gave no type for output {i}"
                    ))));
                }
            };
            types.push(ty);
        }

        // Learn the outputs' values when every input is known and the
        // results are small.
        let folded = if !inputs.is_empty()
            && in_values.iter().all(|v| v.is_some())
            && op.subgraphs().is_empty()
            && types
                .iter()
                .all(|t| t.shape.numel().is_some_and(|n| n <= KNOWN_LIMIT))
        {
            let refs: Vec<Option<&Tensor>> = in_values.iter().map(|v| v.as_deref()).collect();
            interp::eval_op(&op, &refs, &types).ok()
        } else {
            None
        };

        let names: Vec<(String, TensorType)> = outputs
            .into_iter()
            .zip(types)
            .enumerate()
            .map(|(i, ((n, _), t))| {
                (
                    // Each omitted output gets its own base, so that two of
                    // them in one node do not get the same fresh name.
                    match (n.is_empty(), i) {
                        (false, _) => n,
                        (true, 0) => self.graph.fresh_name(op.name()),
                        (true, i) => self.graph.fresh_name(&format!("{}_out{i}", op.name())),
                    },
                    t,
                )
            })
            .collect();
        let id = self.graph.add_node(name, op, inputs, names)?;
        let outs = self.graph.node(id).outputs.clone();
        if let Some(vals) = folded {
            for (&v, t) in outs.iter().zip(vals) {
                // A value is only as good as its agreement with the type.
                if self.graph.ty(v).shape.admits(t.shape()) && self.graph.ty(v).dtype == t.dtype() {
                    self.remember(v, Some(Arc::new(t)));
                }
            }
        } else if let [out] = outs[..] {
            let op = &self.graph.node(self.graph.node_ids().last().unwrap()).op;
            let elems = follow_syms(op, &in_types, &in_values, &in_syms);
            if let Some(elems) = elems {
                self.learn_syms(out, elems);
            }
        }
        Ok(outs)
    }

    /// Records the elements of `v`; when they are all numbers, `v`'s value
    /// is known outright.
    fn learn_syms(&mut self, v: Value, elems: Vec<SymInt>) {
        let ty = self.graph.ty(v).clone();
        if ty.shape.numel() != Some(elems.len() as u64)
            || !(ty.dtype.is_int())
            || ty.dtype.is_packed()
        {
            return;
        }
        let ints: Option<Vec<i64>> = elems
            .iter()
            .map(|e| match e {
                SymInt::Int(n) => Some(*n),
                _ => None,
            })
            .collect();
        if let Some(ints) = ints {
            let shape = ty.shape.as_known().unwrap_or_default();
            let t = Tensor::from_vec(shape, ints).cast(ty.dtype, true);
            self.remember(v, Some(Arc::new(t)));
            return;
        }
        if self.syms.len() <= v.index() {
            self.syms.resize(v.index() + 1, None);
        }
        self.syms[v.index()] = Some(elems);
    }

    pub fn last_node(&self) -> Option<NodeId> {
        self.graph.node_ids().last()
    }

    /// Sets the graph outputs and returns the graph.
    pub fn finish(mut self, outputs: Vec<Value>) -> Graph {
        self.graph.set_outputs(outputs);
        self.graph
    }
}

/// The elements of a shape-arithmetic result, followed through the ops
/// exporters use to compute shapes (`shape`, `gather`, `slice`, `concat`,
/// `unsqueeze`, `squeeze`, `cast`, `identity`), where some input elements
/// are symbolic dims.
fn follow_syms(
    op: &Op,
    types: &[Option<TensorType>],
    values: &[Option<Arc<Tensor>>],
    syms: &[Option<Vec<SymInt>>],
) -> Option<Vec<SymInt>> {
    let elems = |i: usize| -> Option<Vec<SymInt>> {
        if let Some(Some(t)) = values.get(i) {
            if t.dtype().is_int() && t.numel() <= 64 {
                return Some(t.to_i64_vec().into_iter().map(SymInt::Int).collect());
            }
            return None;
        }
        syms.get(i).cloned().flatten()
    };
    let ints = |i: usize| values.get(i)?.as_ref().map(|t| t.to_i64_vec());
    match op {
        Op::Shape(s) => {
            let dims = types.first()?.as_ref()?.dims()?;
            let r = dims.len() as i64;
            let clamp = |a: i64| if a < 0 { (a + r).max(0) } else { a.min(r) } as usize;
            let (start, end) = (clamp(s.start), clamp(s.end.unwrap_or(r)));
            Some(
                dims[start..end.max(start)]
                    .iter()
                    .map(SymInt::from_dim)
                    .collect(),
            )
        }
        Op::Size(_) => {
            let n = types.first()?.as_ref()?.shape.numel()?;
            Some(vec![SymInt::Int(n as i64)])
        }
        Op::Identity(_) | Op::Unsqueeze(_) | Op::Squeeze(_) => elems(0),
        Op::Cast(c) if c.to.is_int() => elems(0),
        Op::Concat(_) => {
            let mut out = Vec::new();
            for i in 0..types.len() {
                out.extend(elems(i)?);
            }
            Some(out)
        }
        Op::Gather(g) if g.axis == 0 || g.axis == -1 => {
            let data = elems(0)?;
            let n = data.len() as i64;
            ints(1)?
                .into_iter()
                .map(|i| {
                    let i = if i < 0 { i + n } else { i };
                    (0..n).contains(&i).then(|| data[i as usize].clone())
                })
                .collect()
        }
        Op::Slice(_) => {
            let data = elems(0)?;
            let n = data.len() as i64;
            let (starts, ends) = (ints(1)?, ints(2)?);
            let steps = if types.len() > 4 { ints(4)? } else { vec![1] };
            if starts.len() != 1 || ends.len() != 1 || steps.len() != 1 || steps[0] != 1 {
                return None;
            }
            let clamp = |a: i64| if a < 0 { (a + n).max(0) } else { a.min(n) } as usize;
            let (b, e) = (clamp(starts[0]), clamp(ends[0]));
            Some(data[b..e.max(b)].to_vec())
        }
        _ => None,
    }
}

/// `g` with its inputs given concrete shapes and every type inferred
/// again; nodes whose outputs become known at build time are replaced by
/// constants. Backends that need static shapes compile this.
pub fn specialize(g: &Graph, shapes: &[Vec<usize>]) -> Result<Graph, BuildError> {
    use crate::graph::ValueDef;
    let mut b = GraphBuilder::new(g.name.clone());
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for (v, data) in g.values() {
        match &data.def {
            ValueDef::Input(i) => {
                let shape = shapes.get(*i).cloned().unwrap_or_default();
                map[v.index()] =
                    Some(b.input(data.name.clone(), TensorType::known(data.ty.dtype, &shape))?);
            }
            ValueDef::Const(t) => {
                map[v.index()] = Some(b.constant(data.name.clone(), t.clone())?);
            }
            ValueDef::Capture => {
                map[v.index()] = Some(b.capture(data.name.clone(), data.ty.clone())?);
            }
            ValueDef::Node { .. } => {}
        }
    }
    for node in g.nodes() {
        let inputs: Vec<Option<Value>> = node
            .inputs
            .iter()
            .map(|v| v.and_then(|v| map[v.index()]))
            .collect();
        let random = node.op.name().starts_with("random") || node.op.name() == "bernoulli";
        let known: Vec<Option<Arc<Tensor>>> = if node.op.subgraphs().is_empty() && !random {
            let ins: Vec<Option<&Arc<Tensor>>> =
                inputs.iter().map(|v| v.and_then(|v| b.known(v))).collect();
            if ins
                .iter()
                .zip(&node.inputs)
                .all(|(k, v)| v.is_none() || k.is_some())
            {
                let tys: Vec<TensorType> = node.outputs.iter().map(|v| g.ty(*v).clone()).collect();
                let refs: Vec<Option<&Tensor>> = ins.iter().map(|t| t.map(|t| &**t)).collect();
                match crate::interp::eval_op(&node.op, &refs, &tys) {
                    Ok(outs) if outs.iter().all(|t| t.numel() <= 1 << 16) => {
                        outs.into_iter().map(|t| Some(Arc::new(t))).collect()
                    }
                    _ => vec![],
                }
            } else {
                vec![]
            }
        } else {
            vec![]
        };
        if !known.is_empty() && known.len() == node.outputs.len() {
            for (v, t) in node.outputs.iter().zip(known) {
                let t = t.expect("known output");
                map[v.index()] = Some(b.constant(g.name(*v).to_string(), t)?);
            }
            continue;
        }
        let outs: Vec<(String, Option<TensorType>)> = node
            .outputs
            .iter()
            .map(|v| (g.name(*v).to_string(), None))
            .collect();
        let vals = b.node(&node.name, node.op.clone(), inputs, outs)?;
        for (v, nv) in node.outputs.iter().zip(vals) {
            map[v.index()] = Some(nv);
        }
    }
    let outputs = g
        .outputs()
        .iter()
        .map(|v| map[v.index()].expect("outputs are defined"))
        .collect();
    Ok(b.finish(outputs))
}
