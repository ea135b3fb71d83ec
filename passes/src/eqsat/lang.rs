//! Graph IR as an egg [`Language`].
//!
//! An e-node is a graph input, a constant, an omitted optional input, an
//! op applied to e-classes, or the k-th output of a multi-output op. Ops
//! keep their typed attributes: each distinct op (kind and attributes) is
//! interned once in an [`OpTable`] and the e-node holds its [`OpId`], so
//! equal ops are equal e-nodes without turning attributes into strings.
//! Shapes and dtypes are not in the e-nodes at all: they are facts of the
//! analysis.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use egg::{Id, Language};
use saturn_ir::{Op, Tensor};

/// An interned op (kind and attributes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(u32);

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}

impl OpId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An interned constant tensor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstId(u32);

impl fmt::Debug for ConstId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// The e-nodes of Graph IR.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The i-th graph input.
    Input(u32),
    /// A constant.
    Const(ConstId),
    /// An optional input that is left out.
    Absent,
    /// An op applied to its inputs (then to the values its subgraphs
    /// capture, for `if`, `loop` and `scan`).
    Op(OpId, Box<[Id]>),
    /// Output `k` of a multi-output op, whose e-class stands for all of
    /// its outputs together.
    Proj(u32, [Id; 1]),
}

/// What distinguishes e-nodes before their children are compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Discriminant {
    Input(u32),
    Const(ConstId),
    Absent,
    Op(OpId, usize),
    Proj(u32),
}

impl Language for Node {
    type Discriminant = Discriminant;

    fn discriminant(&self) -> Discriminant {
        match self {
            Node::Input(i) => Discriminant::Input(*i),
            Node::Const(c) => Discriminant::Const(*c),
            Node::Absent => Discriminant::Absent,
            Node::Op(o, c) => Discriminant::Op(*o, c.len()),
            Node::Proj(k, _) => Discriminant::Proj(*k),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        self.discriminant() == other.discriminant()
    }

    fn children(&self) -> &[Id] {
        match self {
            Node::Op(_, c) => c,
            Node::Proj(_, c) => c,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            Node::Op(_, c) => c,
            Node::Proj(_, c) => c,
            _ => &mut [],
        }
    }
}

/// Interned ops with their number of outputs. Equal ops (same kind, equal
/// attributes, as many outputs) get one id.
#[derive(Default)]
pub struct OpTable {
    ops: Vec<(Op, usize)>,
    /// Ops bucketed by a printed key; equality within a bucket is `Op`'s.
    index: HashMap<String, Vec<OpId>>,
}

impl OpTable {
    /// The id of `op` with `outputs` outputs.
    pub fn intern(&mut self, op: Op, outputs: usize) -> OpId {
        let key = format!("{}/{outputs}{:?}", op.name(), op.attrs());
        let bucket = self.index.entry(key).or_default();
        if let Some(&id) = bucket
            .iter()
            .find(|&&id| self.ops[id.0 as usize] == (op.clone(), outputs))
        {
            return id;
        }
        let id = OpId(self.ops.len() as u32);
        self.ops.push((op, outputs));
        bucket.push(id);
        id
    }

    pub fn get(&self, id: OpId) -> &Op {
        &self.ops[id.0 as usize].0
    }

    /// How many outputs the op has.
    pub fn outputs(&self, id: OpId) -> usize {
        self.ops[id.0 as usize].1
    }
}

/// Interned constants. Equal tensors (dtype, shape and bits) get one id.
#[derive(Default)]
pub struct ConstTable {
    consts: Vec<Arc<Tensor>>,
    index: HashMap<u64, Vec<ConstId>>,
}

/// A cheap fingerprint: dtype, shape and a sample of the elements (equal
/// tensors have equal fingerprints; equality itself is checked in full).
fn fingerprint(t: &Tensor) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.dtype().hash(&mut h);
    t.shape().hash(&mut h);
    let n = t.numel();
    let step = (n / 64).max(1);
    for i in (0..n).step_by(step) {
        t.get_f64(i).to_bits().hash(&mut h);
    }
    h.finish()
}

impl ConstTable {
    pub fn intern(&mut self, t: Arc<Tensor>) -> ConstId {
        let key = fingerprint(&t);
        let bucket = self.index.entry(key).or_default();
        if let Some(&id) = bucket.iter().find(|&&id| *self.consts[id.0 as usize] == *t) {
            return id;
        }
        let id = ConstId(self.consts.len() as u32);
        self.consts.push(t);
        bucket.push(id);
        id
    }

    pub fn get(&self, id: ConstId) -> &Arc<Tensor> {
        &self.consts[id.0 as usize]
    }
}
