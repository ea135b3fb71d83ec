//! Graph IR: an SSA graph of typed tensor ops.
//!
//! Values are defined once, by a graph input, a constant, a capture of a
//! value from an enclosing graph (inside subgraphs of `if`, `loop`, `scan`)
//! or an output of a node. Nodes are stored in topological order: every
//! input of a node is defined before it. The verifier checks this and the
//! types; the builder keeps it by construction.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::ops::Op;
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// A value in one graph.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(u32);

impl Value {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A node in one graph.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueDef {
    /// The i-th graph input.
    Input(usize),
    /// Constant data (an ONNX initializer or `Constant` node).
    Const(Arc<Tensor>),
    /// A value of an enclosing graph, referred to by its name.
    Capture,
    /// Output `output` of node `node`.
    Node { node: NodeId, output: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValueData {
    pub name: String,
    pub ty: TensorType,
    pub def: ValueDef,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's name (may be empty); errors name the node by it.
    pub name: String,
    pub op: Op,
    /// Inputs in order; `None` is an omitted optional input.
    pub inputs: Vec<Option<Value>>,
    pub outputs: Vec<Value>,
}

impl Node {
    /// A name for messages: the node's name, or its first output's.
    pub fn label<'g>(&'g self, g: &'g Graph) -> &'g str {
        if !self.name.is_empty() {
            &self.name
        } else {
            self.outputs.first().map(|&v| g.name(v)).unwrap_or("")
        }
    }
}

/// A graph: values, nodes in topological order, inputs and outputs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub name: String,
    values: Vec<ValueData>,
    nodes: Vec<Node>,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
    captures: Vec<Value>,
    names: HashMap<String, Value>,
}

/// Errors of the raw graph-building API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    #[error("value name `{0}` is defined twice")]
    DuplicateName(String),
    #[error("value {0:?} does not belong to this graph")]
    BadValue(Value),
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    fn add_value(
        &mut self,
        name: String,
        ty: TensorType,
        def: ValueDef,
    ) -> Result<Value, GraphError> {
        if self.names.contains_key(&name) {
            return Err(GraphError::DuplicateName(name));
        }
        let v = Value(self.values.len() as u32);
        self.names.insert(name.clone(), v);
        self.values.push(ValueData { name, ty, def });
        Ok(v)
    }

    pub fn add_input(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
    ) -> Result<Value, GraphError> {
        let v = self.add_value(name.into(), ty, ValueDef::Input(self.inputs.len()))?;
        self.inputs.push(v);
        Ok(v)
    }

    /// Adds a constant; its type is that of the tensor.
    pub fn add_const(
        &mut self,
        name: impl Into<String>,
        t: impl Into<Arc<Tensor>>,
    ) -> Result<Value, GraphError> {
        let t = t.into();
        let ty = TensorType::known(t.dtype(), t.shape());
        self.add_value(name.into(), ty, ValueDef::Const(t))
    }

    /// Declares that this (sub)graph uses the enclosing graph's value `name`.
    pub fn add_capture(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
    ) -> Result<Value, GraphError> {
        let v = self.add_value(name.into(), ty, ValueDef::Capture)?;
        self.captures.push(v);
        Ok(v)
    }

    /// Appends a node whose output names and types are given. Inputs must
    /// already be defined, which keeps the nodes in topological order.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<Option<Value>>,
        outputs: Vec<(String, TensorType)>,
    ) -> Result<NodeId, GraphError> {
        for v in inputs.iter().flatten() {
            if v.index() >= self.values.len() {
                return Err(GraphError::BadValue(*v));
            }
        }
        if let Some((dup, _)) = outputs.iter().find(|(n, _)| self.names.contains_key(n)) {
            return Err(GraphError::DuplicateName(dup.clone()));
        }
        let id = NodeId(self.nodes.len() as u32);
        let mut outs = Vec::with_capacity(outputs.len());
        for (i, (n, ty)) in outputs.into_iter().enumerate() {
            outs.push(self.add_value(
                n,
                ty,
                ValueDef::Node {
                    node: id,
                    output: i,
                },
            )?);
        }
        self.nodes.push(Node {
            name: name.into(),
            op,
            inputs,
            outputs: outs,
        });
        Ok(id)
    }

    /// Renames a value. Subgraphs that capture it by its old name are
    /// updated to the new one.
    pub fn rename(&mut self, v: Value, new: impl Into<String>) -> Result<(), GraphError> {
        let new = new.into();
        let old = self.values[v.index()].name.clone();
        if old == new {
            return Ok(());
        }
        if self.names.contains_key(&new) {
            return Err(GraphError::DuplicateName(new));
        }
        self.names.remove(&old);
        self.names.insert(new.clone(), v);
        self.values[v.index()].name = new.clone();
        for node in &mut self.nodes {
            for g in node.op.subgraphs_mut() {
                if let Some(c) = g.lookup(&old)
                    && g.value(c).def == ValueDef::Capture
                {
                    // A name the subgraph defines itself cannot clash: names
                    // are unique along the scope chain.
                    let _ = std::sync::Arc::make_mut(g).rename(c, new.clone());
                }
            }
        }
        Ok(())
    }

    pub fn set_outputs(&mut self, outputs: Vec<Value>) {
        self.outputs = outputs;
    }

    /// A name not yet used in this graph, starting from `base`.
    pub fn fresh_name(&self, base: &str) -> String {
        if !self.names.contains_key(base) && !base.is_empty() {
            return base.to_string();
        }
        (0..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !self.names.contains_key(n))
            .unwrap()
    }

    pub fn value(&self, v: Value) -> &ValueData {
        &self.values[v.index()]
    }

    pub fn ty(&self, v: Value) -> &TensorType {
        &self.values[v.index()].ty
    }

    pub fn set_ty(&mut self, v: Value, ty: TensorType) {
        self.values[v.index()].ty = ty;
    }

    pub fn name(&self, v: Value) -> &str {
        &self.values[v.index()].name
    }

    /// The constant data of `v`, if it is a constant.
    pub fn const_value(&self, v: Value) -> Option<&Arc<Tensor>> {
        match &self.values[v.index()].def {
            ValueDef::Const(t) => Some(t),
            _ => None,
        }
    }

    pub fn lookup(&self, name: &str) -> Option<Value> {
        self.names.get(name).copied()
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = (Value, &ValueData)> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, d)| (Value(i as u32), d))
    }

    pub fn num_values(&self) -> usize {
        self.values.len()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.index()]
    }

    pub fn node_ids(&self) -> impl ExactSizeIterator<Item = NodeId> {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    pub fn inputs(&self) -> &[Value] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    pub fn captures(&self) -> &[Value] {
        &self.captures
    }

    /// Constants, in definition order.
    pub fn consts(&self) -> impl Iterator<Item = (Value, &Arc<Tensor>)> {
        self.values().filter_map(|(v, d)| match &d.def {
            ValueDef::Const(t) => Some((v, t)),
            _ => None,
        })
    }

    /// For each value, how many node inputs and graph outputs use it.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.values.len()];
        for n in &self.nodes {
            for v in n.inputs.iter().flatten() {
                uses[v.index()] += 1;
            }
        }
        for v in &self.outputs {
            uses[v.index()] += 1;
        }
        uses
    }

    /// Every op in this graph and its subgraphs, recursively.
    pub fn walk_ops<'a>(&'a self, f: &mut dyn FnMut(&'a Op)) {
        for n in &self.nodes {
            f(&n.op);
            for g in n.op.subgraphs() {
                g.walk_ops(f);
            }
        }
    }

    /// Total node count including subgraphs.
    pub fn total_nodes(&self) -> usize {
        let mut n = 0;
        self.walk_ops(&mut |_| n += 1);
        n
    }
}
