//! Partitioning a graph into fusion groups.
//!
//! Walking the nodes from last to first, every elementwise node that is
//! not yet part of a group roots a tree: its producers join the tree when
//! they are elementwise too and their result has no other use (so it never
//! needs to reach memory). A tree whose only non-trivial leaf is the
//! single-use result of another op (a GEMM, a convolution …) becomes that
//! op's epilogue. Every other node is a group of its own.

use super::LowerOptions;
use super::elementwise::is_elementwise;
use saturn_ir::graph::{Graph, NodeId, Value, ValueDef};

/// An elementwise expression over graph values.
#[derive(Clone, Debug, PartialEq)]
pub enum Tree {
    /// A value read from memory.
    Leaf(Value),
    /// The anchor's result, in registers.
    Anchor,
    /// An elementwise node applied to its inputs (`None`: omitted input).
    Node(NodeId, Vec<Option<Tree>>),
}

impl Tree {
    fn collect_nodes(&self, out: &mut Vec<NodeId>) {
        if let Tree::Node(n, args) = self {
            out.push(*n);
            for a in args.iter().flatten() {
                a.collect_nodes(out);
            }
        }
    }

    /// Values read from memory, first use first, without repeats.
    pub fn leaves(&self) -> Vec<Value> {
        fn go(t: &Tree, out: &mut Vec<Value>) {
            match t {
                Tree::Leaf(v) => {
                    if !out.contains(v) {
                        out.push(*v)
                    }
                }
                Tree::Anchor => {}
                Tree::Node(_, args) => args.iter().flatten().for_each(|a| go(a, out)),
            }
        }
        let mut out = Vec::new();
        go(self, &mut out);
        out
    }

    fn replace_leaf(&mut self, v: Value, with: &Tree) -> usize {
        match self {
            Tree::Leaf(x) if *x == v => {
                *self = with.clone();
                1
            }
            Tree::Node(_, args) => args
                .iter_mut()
                .flatten()
                .map(|a| a.replace_leaf(v, with))
                .sum(),
            _ => 0,
        }
    }
}

/// One kernel's worth of graph nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The op with its own loop structure, if any.
    pub anchor: Option<NodeId>,
    /// The elementwise tree: the whole group when there is no anchor, the
    /// anchor's epilogue otherwise.
    pub epilogue: Option<Tree>,
    /// The value the tree computes (the group's output when there is a
    /// tree).
    pub root: Option<Value>,
    /// The anchor's output that the epilogue reads as [`Tree::Anchor`].
    pub anchor_value: Option<Value>,
}

impl Group {
    /// Every node of the group, in graph order.
    pub fn nodes(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self.anchor.into_iter().collect();
        if let Some(t) = &self.epilogue {
            t.collect_nodes(&mut out);
        }
        out.sort();
        out
    }

    /// The anchor alone and the epilogue as a plain elementwise group.
    pub fn split(&self) -> (Group, Group) {
        let anchor = self.anchor.expect("split needs an anchor");
        let a = single(anchor);
        let mut t = self.epilogue.clone().expect("split needs an epilogue");
        fn fill(t: &mut Tree, leaf: &Tree) {
            match t {
                Tree::Anchor => *t = leaf.clone(),
                Tree::Node(_, args) => args.iter_mut().flatten().for_each(|a| fill(a, leaf)),
                Tree::Leaf(_) => {}
            }
        }
        let v = self
            .anchor_value
            .expect("an epilogue reads the anchor's value");
        fill(&mut t, &Tree::Leaf(v));
        let tail = Group {
            anchor: None,
            epilogue: Some(t),
            root: self.root,
            anchor_value: None,
        };
        (a, tail)
    }
}

/// Partitions the graph; groups come in an order that respects every
/// dependency (by their last node).
pub fn partition(g: &Graph, opts: &LowerOptions) -> Vec<Group> {
    let uses = g.use_counts();
    let n = g.nodes().len();
    let is_output: Vec<bool> = {
        let mut o = vec![false; g.num_values()];
        for v in g.outputs() {
            o[v.index()] = true;
        }
        o
    };
    let elementwise: Vec<bool> = g.node_ids().map(|id| is_elementwise(g, id)).collect();
    let mut claimed = vec![false; n];
    let mut groups: Vec<(usize, Group)> = Vec::new();

    let producer = |v: Value| match g.value(v).def {
        ValueDef::Node { node, output: 0 } if g.node(node).outputs.len() == 1 => Some(node),
        _ => None,
    };
    let private = |v: Value| uses[v.index()] == 1 && !is_output[v.index()];

    let ids: Vec<NodeId> = g.node_ids().collect();
    for &id in ids.iter().rev() {
        if claimed[id.index()] {
            continue;
        }
        claimed[id.index()] = true;
        if !elementwise[id.index()] {
            groups.push((id.index(), single(id)));
            continue;
        }
        let mut tree = build_tree(g, id, opts, &elementwise, &mut claimed, &producer, &private);
        let root = g.node(id).outputs[0];
        let mut anchor = None;
        if opts.fuse {
            // One leaf produced privately by a lowerable anchor with the
            // root's shape: the tree becomes its epilogue.
            let candidates: Vec<(Value, NodeId)> = tree
                .leaves()
                .into_iter()
                .filter(|&v| private(v) && g.ty(v).shape == g.ty(root).shape)
                .filter_map(|v| producer(v).map(|p| (v, p)))
                .filter(|(_, p)| !claimed[p.index()] && !elementwise[p.index()])
                .filter(|(_, p)| super::epilogue_anchor(&g.node(*p).op))
                .collect();
            if let Some(&(v, p)) = candidates.last() {
                if tree.replace_leaf(v, &Tree::Anchor) == 1 {
                    claimed[p.index()] = true;
                    anchor = Some((v, p));
                }
            }
        }
        groups.push((
            id.index(),
            Group {
                anchor: anchor.map(|(_, p)| p),
                epilogue: Some(tree),
                root: Some(root),
                anchor_value: anchor.map(|(v, _)| v),
            },
        ));
    }
    groups.sort_by_key(|(last, _)| *last);
    groups.into_iter().map(|(_, g)| g).collect()
}

fn single(id: NodeId) -> Group {
    Group {
        anchor: Some(id),
        epilogue: None,
        root: None,
        anchor_value: None,
    }
}

fn build_tree(
    g: &Graph,
    id: NodeId,
    opts: &LowerOptions,
    elementwise: &[bool],
    claimed: &mut [bool],
    producer: &impl Fn(Value) -> Option<NodeId>,
    private: &impl Fn(Value) -> bool,
) -> Tree {
    let node = g.node(id);
    let data = super::elementwise::data_inputs(&node.op, node.inputs.len());
    let args = node
        .inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let v = (*v)?;
            if !data.contains(&i) {
                return None;
            }
            if opts.fuse && private(v) {
                if let Some(p) = producer(v) {
                    if elementwise[p.index()] && !claimed[p.index()] {
                        claimed[p.index()] = true;
                        return Some(build_tree(
                            g,
                            p,
                            opts,
                            elementwise,
                            claimed,
                            producer,
                            private,
                        ));
                    }
                }
            }
            Some(Tree::Leaf(v))
        })
        .collect();
    Tree::Node(id, args)
}
