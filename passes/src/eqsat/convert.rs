//! Graph IR ⇄ e-graph.
//!
//! Encoding adds every input, constant and node of a graph; a
//! multi-output node becomes one e-class for the node and a `Proj` class
//! per output. Decoding walks the extracted best e-node of each needed
//! class from the outputs down, so nodes come out in topological order and
//! shared values stay shared. Graph inputs and outputs keep their names;
//! other values keep the name of an original value of their class where
//! there is one.

use std::collections::HashMap;

use egg::{CostFunction, Extractor, Id};
use saturn_ir::builder::merge_types;
use saturn_ir::interp::implicit_inputs;
use saturn_ir::ops::Identity;
use saturn_ir::{Graph, Value};

use super::OptError;
use super::analysis::{EGraph, GraphAnalysis, explicit_inputs};
use super::lang::Node;

/// A graph in an e-graph, with what decoding needs to restore names.
pub struct Encoded {
    pub egraph: EGraph,
    /// The class of each graph output.
    pub outputs: Vec<Id>,
    /// The class of each original value, with its name, in definition order.
    pub values: Vec<(Id, String)>,
    /// The class of each original node (its single output, or the tuple of
    /// its outputs), with the node's name.
    pub nodes: Vec<(Id, String)>,
}

/// Whether a node's outputs are reached through `Proj` nodes: when it has
/// other than exactly one. A node with one output is its value's e-node,
/// whatever else its op allows.
pub fn is_multi_output(outputs: usize) -> bool {
    outputs != 1
}

pub fn encode(g: &Graph) -> Encoded {
    let analysis = GraphAnalysis {
        inputs: g.inputs().iter().map(|&v| g.ty(v).clone()).collect(),
        ..GraphAnalysis::default()
    };
    let mut eg = EGraph::new(analysis);
    let mut class: Vec<Option<Id>> = vec![None; g.num_values()];
    for (i, &v) in g.inputs().iter().enumerate() {
        class[v.index()] = Some(eg.add(Node::Input(i as u32)));
    }
    for (v, t) in g.consts() {
        let c = eg.analysis.consts.intern(t.clone());
        class[v.index()] = Some(eg.add(Node::Const(c)));
    }
    let mut nodes = Vec::with_capacity(g.nodes().len());
    for node in g.nodes() {
        let absent = eg.add(Node::Absent);
        let mut children: Vec<Id> = node
            .inputs
            .iter()
            .map(|v| v.and_then(|v| class[v.index()]).unwrap_or(absent))
            .collect();
        children.extend(
            implicit_inputs(g, node)
                .iter()
                .filter_map(|v| class[v.index()]),
        );
        let op = eg.analysis.ops.intern(node.op.clone(), node.outputs.len());
        let id = eg.add(Node::Op(op, children.into()));
        if is_multi_output(node.outputs.len()) {
            for (k, &out) in node.outputs.iter().enumerate() {
                class[out.index()] = Some(eg.add(Node::Proj(k as u32, [id])));
            }
        } else if let Some(&out) = node.outputs.first() {
            class[out.index()] = Some(id);
        }
        nodes.push((id, node.name.clone()));
    }
    // The graph may know types more precisely than inference alone (types
    // declared by the model); keep what it knows.
    let mut values = Vec::with_capacity(g.num_values());
    for (v, d) in g.values() {
        let Some(id) = class[v.index()] else { continue };
        let facts = &mut eg[id].data;
        if let [t] = facts.types.as_mut_slice() {
            if let Some(m) = merge_types(t, &d.ty) {
                *t = m;
            }
        } else if facts.types.is_empty() && !facts.absent {
            facts.types = vec![d.ty.clone()];
        }
        values.push((id, d.name.clone()));
    }
    eg.rebuild();
    let outputs = g
        .outputs()
        .iter()
        .map(|v| class[v.index()].expect("outputs are defined"))
        .collect();
    Encoded {
        egraph: eg,
        outputs,
        values,
        nodes,
    }
}

struct Decoder<'a, CF: CostFunction<Node>> {
    eg: &'a EGraph,
    ex: &'a Extractor<'a, CF, Node, GraphAnalysis>,
    out: Graph,
    /// Preferred name of each (canonical) class.
    names: HashMap<Id, String>,
    node_names: HashMap<Id, String>,
    done: HashMap<Id, Value>,
    tuples: HashMap<Id, Vec<Value>>,
    in_progress: Vec<Id>,
    /// The class each emitted node computes.
    node_classes: Vec<Id>,
}

impl<CF: CostFunction<Node>> Decoder<'_, CF> {
    fn name_for(&self, class: Id, base: &str) -> String {
        match self.names.get(&class) {
            Some(n) if self.out.lookup(n).is_none() => n.clone(),
            _ => self.out.fresh_name(base),
        }
    }

    fn value(&mut self, class: Id) -> Result<Value, OptError> {
        let class = self.eg.find(class);
        if let Some(&v) = self.done.get(&class) {
            return Ok(v);
        }
        if self.in_progress.contains(&class) {
            return Err(OptError::Extraction(
                "the extracted graph has a cycle".into(),
            ));
        }
        self.in_progress.push(class);
        let v = match self.ex.find_best_node(class).clone() {
            Node::Input(i) => self.out.inputs()[i as usize],
            Node::Const(c) => {
                let t = self.eg.analysis.value(c).clone();
                let name = self.name_for(class, "const");
                self.out
                    .add_const(name, t)
                    .map_err(|e| OptError::Extraction(e.to_string()))?
            }
            Node::Absent => {
                return Err(OptError::Extraction(
                    "an omitted input is used as a value".into(),
                ));
            }
            Node::Proj(k, [t]) => {
                let outs = self.tuple(t)?;
                *outs.get(k as usize).ok_or_else(|| {
                    OptError::Extraction(format!(
                        "output {k} of a node with {} outputs",
                        outs.len()
                    ))
                })?
            }
            Node::Op(o, children) => {
                let outs = self.node(class, o, &children)?;
                outs[0]
            }
        };
        self.in_progress.pop();
        self.done.insert(class, v);
        Ok(v)
    }

    fn tuple(&mut self, class: Id) -> Result<Vec<Value>, OptError> {
        let class = self.eg.find(class);
        if let Some(v) = self.tuples.get(&class) {
            return Ok(v.clone());
        }
        match self.ex.find_best_node(class).clone() {
            Node::Op(o, children) => self.node(class, o, &children),
            other => Err(OptError::Extraction(format!(
                "{other:?} is not a multi-output op"
            ))),
        }
    }

    /// Emits the node for an op e-node (its inputs first).
    fn node(
        &mut self,
        class: Id,
        o: super::lang::OpId,
        children: &[Id],
    ) -> Result<Vec<Value>, OptError> {
        let mut op = self.eg.analysis.op(o).clone();
        let n_out = self.eg.analysis.ops.outputs(o);
        let n = explicit_inputs(&op, children.len());
        let mut inputs = Vec::with_capacity(n);
        for &c in &children[..n] {
            inputs.push(if self.eg[c].data.absent {
                None
            } else {
                Some(self.value(c)?)
            });
        }
        // Captured values must carry the names the subgraphs use.
        let captured: Vec<String> = op
            .subgraphs()
            .iter()
            .flat_map(|g| {
                g.captures()
                    .iter()
                    .map(|&c| g.name(c).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        for (&c, want) in children[n..].iter().zip(&captured) {
            let v = self.value(c)?;
            let have = self.out.name(v).to_string();
            if have != *want {
                for g in op.subgraphs_mut() {
                    if let Some(cv) = g.lookup(want)
                        && g.captures().contains(&cv)
                    {
                        std::sync::Arc::make_mut(g)
                            .rename(cv, have.clone())
                            .map_err(|e| OptError::Extraction(e.to_string()))?;
                    }
                }
            }
        }
        let facts = &self.eg[class].data;
        let multi = is_multi_output(n_out);
        let mut outputs = Vec::with_capacity(n_out);
        for k in 0..n_out {
            let ty = facts.types.get(k).cloned().ok_or_else(|| {
                OptError::Extraction(format!("no type for output {k} of {}", op.name()))
            })?;
            let out_class = if multi {
                self.eg
                    .lookup(Node::Proj(k as u32, [class]))
                    .unwrap_or(class)
            } else {
                class
            };
            outputs.push((self.name_for(self.eg.find(out_class), op.name()), ty));
        }
        let node_name = self.node_names.get(&class).cloned().unwrap_or_default();
        let id = self
            .out
            .add_node(node_name, op, inputs, outputs)
            .map_err(|e| OptError::Extraction(e.to_string()))?;
        let outs = self.out.node(id).outputs.clone();
        self.node_classes.push(class);
        if multi {
            self.tuples.insert(class, outs.clone());
            for (k, &v) in outs.iter().enumerate() {
                if let Some(p) = self.eg.lookup(Node::Proj(k as u32, [class])) {
                    self.done.insert(self.eg.find(p), v);
                }
            }
        }
        Ok(outs)
    }
}

/// Builds the graph of the best e-node of every class the outputs need;
/// also returns the class each of its nodes computes.
pub fn decode<CF: CostFunction<Node>>(
    enc: &Encoded,
    ex: &Extractor<'_, CF, Node, GraphAnalysis>,
    original: &Graph,
) -> Result<(Graph, Vec<Id>), OptError> {
    let eg = &enc.egraph;
    let mut names = HashMap::new();
    // Output names first: they are kept exactly.
    for (&o, &v) in enc.outputs.iter().zip(original.outputs()) {
        names
            .entry(eg.find(o))
            .or_insert_with(|| original.name(v).to_string());
    }
    for (id, name) in &enc.values {
        names.entry(eg.find(*id)).or_insert_with(|| name.clone());
    }
    let mut node_names = HashMap::new();
    for (id, name) in &enc.nodes {
        if !name.is_empty() {
            node_names
                .entry(eg.find(*id))
                .or_insert_with(|| name.clone());
        }
    }
    let mut out = Graph::new(original.name.clone());
    for &v in original.inputs() {
        out.add_input(original.name(v), original.ty(v).clone())
            .map_err(|e| OptError::Extraction(e.to_string()))?;
    }
    let mut d = Decoder {
        eg,
        ex,
        out,
        names,
        node_names,
        done: HashMap::new(),
        tuples: HashMap::new(),
        in_progress: Vec::new(),
        node_classes: Vec::new(),
    };
    let mut outputs = Vec::with_capacity(enc.outputs.len());
    for (&o, &orig) in enc.outputs.iter().zip(original.outputs()) {
        let v = d.value(o)?;
        let want = original.name(orig);
        // An output that is an input, another output or a constant under
        // another name gets its own name through an identity.
        let v = if d.out.name(v) == want {
            v
        } else {
            let ty = d.out.ty(v).clone();
            let id = d
                .out
                .add_node(
                    "",
                    Identity {}.into(),
                    vec![Some(v)],
                    vec![(want.to_string(), ty)],
                )
                .map_err(|e| OptError::Extraction(e.to_string()))?;
            d.node_classes.push(eg.find(o));
            d.out.node(id).outputs[0]
        };
        outputs.push(v);
    }
    d.out.set_outputs(outputs);
    Ok((d.out, d.node_classes))
}
