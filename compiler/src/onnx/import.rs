//! Graph conversion: values, initializers, subgraphs with captures,
//! function inlining and topological order.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use saturn_ir::builder::GraphBuilder;
use saturn_ir::{AttrValue, Attrs, Dim, Graph, Shape, TensorType};

use super::ImportError;
use super::attrs;
use super::ops::{self, NodeCx};
use super::proto::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, TypeProto, ValueInfoProto,
    type_proto,
};
use super::tensor::{dtype_of, from_proto};

/// Deepest nesting of function calls that is inlined.
const MAX_FUNCTION_DEPTH: usize = 32;

/// Model-wide import state.
pub(super) struct Importer<'m> {
    opsets: HashMap<String, i64>,
    functions: HashMap<(String, String), &'m FunctionProto>,
    base: Option<&'m Path>,
}

fn canonical_domain(d: &str) -> &str {
    if d == "ai.onnx" { "" } else { d }
}

/// Imports a decoded model; `base` is the folder external data is read from.
pub fn import_model(m: &ModelProto, base: Option<&Path>) -> Result<Graph, ImportError> {
    let gp = m.graph.as_ref().ok_or(ImportError::NoGraph)?;
    let mut opsets = HashMap::new();
    for o in &m.opset_import {
        opsets.insert(canonical_domain(o.domain()).to_string(), o.version());
    }
    // Models before IR version 3 had no opset_import and mean opset 1.
    opsets.entry(String::new()).or_insert(1);
    let functions = m
        .functions
        .iter()
        .map(|f| {
            (
                (
                    canonical_domain(f.domain()).to_string(),
                    f.name().to_string(),
                ),
                f,
            )
        })
        .collect();
    let imp = Importer {
        opsets,
        functions,
        base,
    };
    let b = imp.graph(gp, None, &[], &[])?;
    let outputs = output_values(&b, gp)?;
    Ok(b.finish(outputs))
}

fn output_values(b: &GraphBuilder, gp: &GraphProto) -> Result<Vec<saturn_ir::Value>, ImportError> {
    gp.output
        .iter()
        .map(|o| {
            b.graph()
                .lookup(o.name())
                .ok_or_else(|| ImportError::MissingOutput(o.name().to_string()))
        })
        .collect()
}

/// The tensor type of a value info; `None` when it declares no type.
pub(super) fn value_type(vi: &ValueInfoProto) -> Result<Option<TensorType>, ImportError> {
    match &vi.r#type {
        None => Ok(None),
        Some(t) => type_of(t, vi.name()),
    }
}

fn type_of(t: &TypeProto, name: &str) -> Result<Option<TensorType>, ImportError> {
    match &t.value {
        Some(type_proto::Value::TensorType(tt)) => {
            if tt.elem_type() == 0 {
                return Ok(None);
            }
            let dtype = dtype_of(tt.elem_type(), name)?;
            let shape = match &tt.shape {
                None => Shape::UnknownRank,
                Some(s) => Shape::Ranked(
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(super::proto::tensor_shape_proto::dimension::Value::DimValue(
                                v,
                            )) if *v >= 0 => Dim::Known(*v as u64),
                            Some(super::proto::tensor_shape_proto::dimension::Value::DimParam(
                                p,
                            )) if !p.is_empty() => Dim::sym(p),
                            _ => Dim::Unknown,
                        })
                        .collect(),
                ),
            };
            Ok(Some(TensorType::new(dtype, shape)))
        }
        None => Ok(None),
        Some(other) => {
            let what = match other {
                type_proto::Value::SequenceType(_) => "a sequence type",
                type_proto::Value::MapType(_) => "a map type",
                type_proto::Value::OptionalType(_) => "an optional type",
                type_proto::Value::SparseTensorType(_) => "a sparse tensor type",
                type_proto::Value::TensorType(_) => unreachable!(),
            };
            Err(ImportError::UnsupportedType {
                name: name.to_string(),
                what: what.to_string(),
            })
        }
    }
}

/// Names a graph uses without defining them, including those its
/// subgraphs use, in first-use order.
pub(super) fn free_vars(g: &GraphProto) -> Vec<String> {
    let mut defined: HashSet<&str> = HashSet::new();
    defined.extend(g.input.iter().map(|v| v.name()));
    defined.extend(g.initializer.iter().map(|t| t.name()));
    defined.extend(
        g.sparse_initializer
            .iter()
            .filter_map(|s| s.values.as_ref())
            .map(|t| t.name()),
    );
    for n in &g.node {
        defined.extend(n.output.iter().map(|s| s.as_str()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in &g.node {
        for name in node_uses(n) {
            if !name.is_empty() && !defined.contains(name.as_str()) && seen.insert(name.clone()) {
                out.push(name);
            }
        }
    }
    out
}

/// Values a node reads: its inputs and its subgraphs' free names.
fn node_uses(n: &NodeProto) -> Vec<String> {
    let mut uses: Vec<String> = n.input.clone();
    for a in &n.attribute {
        for g in a.g.iter().chain(&a.graphs) {
            uses.extend(free_vars(g));
        }
    }
    uses
}

/// The branch of an If that cannot run because its condition is known
/// when the model is imported (from constants and static shapes). Such a
/// branch may not even type-check with the shapes at hand (functions
/// expanded for several ranks do this), so it may be left out.
fn dead_branch(
    n: &NodeProto,
    b: &GraphBuilder,
    inputs: &[Option<saturn_ir::Value>],
) -> Option<&'static str> {
    if !canonical_domain(n.domain()).is_empty() || n.op_type() != "If" {
        return None;
    }
    let cond = b.known(inputs.first().copied().flatten()?)?;
    if cond.numel() != 1 {
        return None;
    }
    Some(if cond.get_f64(0) != 0.0 {
        "else_branch"
    } else {
        "then_branch"
    })
}

fn node_label(n: &NodeProto) -> String {
    if !n.name().is_empty() {
        n.name().to_string()
    } else {
        n.output
            .first()
            .cloned()
            .unwrap_or_else(|| n.op_type().to_string())
    }
}

/// Orders nodes so that each comes after the producers of what it reads,
/// keeping the file's order where it already is one.
fn topo_sort(
    nodes: Vec<NodeProto>,
    available: &HashSet<String>,
) -> Result<Vec<NodeProto>, ImportError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in &n.output {
            if !o.is_empty() && producer.insert(o.as_str(), i).is_some() {
                return Err(ImportError::Duplicate(o.clone()));
            }
        }
    }
    let deps: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            node_uses(n)
                .iter()
                .filter(|u| !available.contains(u.as_str()))
                .filter_map(|u| producer.get(u.as_str()).copied())
                .collect()
        })
        .collect();
    // Fast path: already in order.
    if deps
        .iter()
        .enumerate()
        .all(|(i, d)| d.iter().all(|&j| j < i))
    {
        return Ok(nodes);
    }
    let mut indegree: Vec<usize> = deps.iter().map(|d| d.len()).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            users[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len()).find(|i| !order.contains(i)).unwrap();
        return Err(ImportError::Cycle(node_label(&nodes[stuck])));
    }
    let mut slots: Vec<Option<NodeProto>> = nodes.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().unwrap())
        .collect())
}

impl Importer<'_> {
    pub(super) fn opset(&self, domain: &str) -> Option<i64> {
        self.opsets.get(canonical_domain(domain)).copied()
    }

    /// Converts a graph. `parent` is the enclosing graph's builder for a
    /// subgraph, and `captures` the names the subgraph reads from it;
    /// `hints` types the subgraph's inputs that declare no type.
    pub(super) fn graph(
        &self,
        gp: &GraphProto,
        parent: Option<&GraphBuilder>,
        captures: &[String],
        hints: &[Option<TensorType>],
    ) -> Result<GraphBuilder, ImportError> {
        let mut b = GraphBuilder::new(gp.name());
        let inits: HashSet<&str> = gp.initializer.iter().map(|t| t.name()).collect();
        for (i, vi) in gp.input.iter().enumerate() {
            if inits.contains(vi.name()) {
                continue; // an initializer that may be overridden: Saturn treats it as constant
            }
            let hint = || hints.get(i).cloned().flatten();
            let ty = value_type(vi)?
                .or_else(hint)
                .ok_or_else(|| ImportError::UnsupportedType {
                    name: vi.name().to_string(),
                    what: "an input without a tensor type".into(),
                })?;
            b.input(vi.name(), ty)?;
        }
        if let Some(parent) = parent {
            for name in captures {
                let pg = parent.graph();
                let v = pg.lookup(name).ok_or_else(|| ImportError::MissingInput {
                    node: gp.name().to_string(),
                    input: name.clone(),
                })?;
                b.capture(name.clone(), pg.ty(v).clone())?;
            }
        }
        for t in &gp.initializer {
            if b.graph().lookup(t.name()).is_some() {
                return Err(ImportError::Duplicate(t.name().to_string()));
            }
            b.constant(t.name(), from_proto(t, self.base)?)?;
        }
        for s in &gp.sparse_initializer {
            let (name, dense) = super::tensor::sparse_to_dense(s, self.base)?;
            b.constant(name, dense)?;
        }

        let mut declared: HashMap<&str, TensorType> = HashMap::new();
        for vi in gp.value_info.iter().chain(&gp.output) {
            // Value infos of non-tensor types are not needed for typing.
            if let Ok(Some(t)) = value_type(vi) {
                declared.insert(vi.name(), t);
            }
        }

        let mut nodes = Vec::with_capacity(gp.node.len());
        let mut counter = 0usize;
        for n in &gp.node {
            self.inline(n, 0, &mut counter, &mut nodes)?;
        }
        let available: HashSet<String> = b.graph().values().map(|(_, d)| d.name.clone()).collect();
        let nodes = topo_sort(nodes, &available)?;
        for n in &nodes {
            self.node(&mut b, n, &declared)?;
        }
        Ok(b)
    }

    /// Appends `n` to `out`, replacing calls of model-local functions by
    /// their bodies.
    fn inline(
        &self,
        n: &NodeProto,
        depth: usize,
        counter: &mut usize,
        out: &mut Vec<NodeProto>,
    ) -> Result<(), ImportError> {
        let key = (
            canonical_domain(n.domain()).to_string(),
            n.op_type().to_string(),
        );
        let Some(f) = self.functions.get(&key) else {
            out.push(n.clone());
            return Ok(());
        };
        if depth >= MAX_FUNCTION_DEPTH {
            return Err(ImportError::FunctionDepth(MAX_FUNCTION_DEPTH));
        }
        *counter += 1;
        let prefix = format!("{}__{}_{}/", n.op_type(), node_label(n), counter);
        let mut rename: HashMap<String, String> = HashMap::new();
        for (i, formal) in f.input.iter().enumerate() {
            rename.insert(formal.clone(), n.input.get(i).cloned().unwrap_or_default());
        }
        for (i, formal) in f.output.iter().enumerate() {
            rename.insert(formal.clone(), n.output.get(i).cloned().unwrap_or_default());
        }
        // Attribute values of the call, with the function's defaults.
        let mut attr_values: HashMap<&str, &AttributeProto> =
            f.attribute_proto.iter().map(|a| (a.name(), a)).collect();
        for a in &n.attribute {
            attr_values.insert(a.name(), a);
        }
        for body in &f.node {
            let mut m = body.clone();
            let map = |s: &String, rename: &mut HashMap<String, String>| {
                if s.is_empty() {
                    return String::new();
                }
                rename
                    .entry(s.clone())
                    .or_insert_with(|| format!("{prefix}{s}"))
                    .clone()
            };
            m.input = body.input.iter().map(|s| map(s, &mut rename)).collect();
            m.output = body.output.iter().map(|s| map(s, &mut rename)).collect();
            if !m.name().is_empty() {
                m.name = Some(format!("{prefix}{}", m.name()));
            }
            // Attributes referring to the call's attributes.
            let mut attrs = Vec::new();
            for a in &body.attribute {
                if a.ref_attr_name().is_empty() {
                    attrs.push(a.clone());
                } else if let Some(v) = attr_values.get(a.ref_attr_name()) {
                    let mut v = (*v).clone();
                    v.name = a.name.clone();
                    attrs.push(v);
                }
            }
            m.attribute = attrs;
            self.inline(&m, depth + 1, counter, out)?;
        }
        Ok(())
    }

    fn node(
        &self,
        b: &mut GraphBuilder,
        n: &NodeProto,
        declared: &HashMap<&str, TensorType>,
    ) -> Result<(), ImportError> {
        let label = node_label(n);
        let domain = canonical_domain(n.domain());
        let opset = self
            .opset(domain)
            .ok_or_else(|| ImportError::UnknownDomain {
                op: n.op_type().to_string(),
                domain: n.domain().to_string(),
                node: label.clone(),
            })?;
        let build = ops::lookup(domain, n.op_type()).ok_or_else(|| ImportError::UnsupportedOp {
            op: n.op_type().to_string(),
            domain: if domain.is_empty() {
                "ai.onnx".into()
            } else {
                domain.to_string()
            },
            opset,
            node: label.clone(),
        })?;
        let mut inputs = Vec::with_capacity(n.input.len());
        for name in &n.input {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            let v = b
                .graph()
                .lookup(name)
                .ok_or_else(|| ImportError::MissingInput {
                    node: label.clone(),
                    input: name.clone(),
                })?;
            inputs.push(Some(v));
        }
        let mut attrs = Attrs::new();
        let dead = dead_branch(n, b, &inputs);
        let mut unimportable_dead_branch = false;
        for a in &n.attribute {
            let v = match attrs::convert(a, self.base)? {
                Some(v) => v,
                None => {
                    let g = a.g.as_ref().ok_or_else(|| ImportError::Node {
                        node: label.clone(),
                        op: n.op_type().to_string(),
                        opset,
                        msg: format!(
                            "attribute `{}` is a list of graphs, which Saturn does not support",
                            a.name()
                        ),
                    })?;
                    let captures = free_vars(g);
                    let sub = match self.body(n, g, b, &inputs, &captures) {
                        Ok(sub) => sub,
                        Err(_) if dead == Some(a.name()) => {
                            unimportable_dead_branch = true;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let outs = output_values(&sub, g)?;
                    AttrValue::Graph(Arc::new(sub.finish(outs)))
                }
            };
            attrs.insert(a.name(), v);
        }
        if unimportable_dead_branch && let Some(dead) = dead {
            // The branch can never run: the live one stands in for it.
            let live = if dead == "then_branch" {
                "else_branch"
            } else {
                "then_branch"
            };
            if let Some(g) = attrs.get(live).cloned() {
                attrs.insert(dead, g);
            }
        }
        let outputs = n
            .output
            .iter()
            .map(|o| (o.clone(), declared.get(o.as_str()).cloned()))
            .collect();
        build(NodeCx {
            b,
            name: n.name(),
            label,
            op_type: n.op_type(),
            opset,
            inputs,
            attrs,
            outputs,
        })?;
        Ok(())
    }

    /// Converts the subgraph `g` of node `n`. Loop and Scan bodies may leave
    /// their inputs untyped (functions such as Range's expansion do): those
    /// take the types of the values the node passes in, and where a
    /// loop-carried value's type changes in the body, the join of both.
    fn body(
        &self,
        n: &NodeProto,
        g: &GraphProto,
        b: &GraphBuilder,
        inputs: &[Option<saturn_ir::Value>],
        captures: &[String],
    ) -> Result<GraphBuilder, ImportError> {
        let ty = |i: usize| {
            inputs
                .get(i)
                .copied()
                .flatten()
                .map(|v| b.graph().ty(v).clone())
        };
        let untyped: Vec<bool> = g
            .input
            .iter()
            .map(|vi| matches!(value_type(vi), Ok(None)))
            .collect();
        // Body input i and the body output that carries its next value.
        let (mut hints, carried): (Vec<Option<TensorType>>, Vec<(usize, usize)>) =
            match (canonical_domain(n.domain()), n.op_type()) {
                ("", "Loop") if self.opset("").is_some_and(|v| v >= 11) => {
                    let mut h = vec![
                        Some(TensorType::new(saturn_ir::DType::I64, Shape::scalar())),
                        Some(TensorType::new(saturn_ir::DType::Bool, Shape::scalar())),
                    ];
                    h.extend((2..inputs.len()).map(ty));
                    let carried = (2..inputs.len()).map(|i| (i, i - 1)).collect();
                    (h, carried)
                }
                ("", "Scan") if self.opset("").is_some_and(|v| v >= 9) => {
                    let attr = |name: &str| n.attribute.iter().find(|a| a.name() == name);
                    let m = attr("num_scan_inputs").map_or(0, |a| a.i()).max(0) as usize;
                    let states = inputs.len().saturating_sub(m);
                    let axes = attr("scan_input_axes").map(|a| a.ints.clone());
                    let mut h: Vec<Option<TensorType>> = (0..states).map(ty).collect();
                    for j in 0..m.min(inputs.len()) {
                        let a = axes.as_ref().and_then(|v| v.get(j).copied()).unwrap_or(0);
                        h.push(ty(states + j).and_then(|t| {
                            let mut dims = t.shape.dims()?.to_vec();
                            let a = saturn_ir::ops::infer::normalize_axis(a, dims.len()).ok()?;
                            dims.remove(a);
                            Some(TensorType::new(t.dtype, Shape::Ranked(dims)))
                        }));
                    }
                    (h, (0..states).map(|i| (i, i)).collect())
                }
                _ => return self.graph(g, Some(b), captures, &[]),
            };
        const PASSES: usize = 3;
        for pass in 0..=PASSES {
            let sub = self.graph(g, Some(b), captures, &hints)?;
            let outs = output_values(&sub, g)?;
            let mut changed = false;
            for &(i, o) in &carried {
                let (Some(Some(hint)), Some(&out)) = (hints.get(i), outs.get(o)) else {
                    continue;
                };
                if !untyped.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let out = sub.graph().ty(out);
                if out != hint {
                    let joined = saturn_ir::ops::join_types(hint, out)
                        .ok()
                        .filter(|_| pass < PASSES)
                        .unwrap_or_else(|| TensorType::unknown_rank(hint.dtype));
                    changed |= &joined != hint;
                    hints[i] = Some(joined);
                }
            }
            if !changed {
                return Ok(sub);
            }
        }
        self.graph(g, Some(b), captures, &hints)
    }
}
