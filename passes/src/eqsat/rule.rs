//! Rewrites written in Rust, and the helpers they share.
//!
//! Graph IR ops carry typed attributes and their conditions depend on
//! shapes, so Saturn's rules are written as two functions rather than
//! s-expression patterns: `find` looks at one e-class and returns the
//! matches rooted there, `build` adds the equivalent term and returns its
//! class, which is then merged with the root. [`Rule::rewrite`] wraps the
//! pair as an egg [`Rewrite`], so that egg's runner schedules and bounds
//! them like any other rule.

use std::sync::{Arc, OnceLock};

use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use saturn_ir::{Op, Tensor, TensorType};

use super::analysis::{EGraph, GraphAnalysis, infer_op};
use super::lang::{Node, OpId};

/// One match: the e-classes a rewrite reads, and numbers it needs that are
/// not classes (axes, scale factors …).
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub ids: Vec<Id>,
    pub ints: Vec<i64>,
    pub floats: Vec<f64>,
}

impl Match {
    pub fn new(ids: Vec<Id>) -> Match {
        Match {
            ids,
            ints: vec![],
            floats: vec![],
        }
    }

    pub fn with_ints(mut self, ints: Vec<i64>) -> Match {
        self.ints = ints;
        self
    }

    pub fn with_floats(mut self, floats: Vec<f64>) -> Match {
        self.floats = floats;
        self
    }
}

/// Finds matches rooted at an e-class.
pub type Find = fn(&EGraph, Id) -> Vec<Match>;
/// Adds the replacement of a match and returns its class.
pub type Build = fn(&mut EGraph, Id, &Match) -> Option<Id>;

/// A named rewrite.
#[derive(Clone, Copy)]
pub struct Rule {
    pub name: &'static str,
    pub find: Find,
    pub build: Build,
}

/// Variables `?0`, `?1`, … that carry a match's classes through egg.
const MAX_IDS: usize = 16;

fn vars() -> &'static [Var] {
    static VARS: OnceLock<Vec<Var>> = OnceLock::new();
    VARS.get_or_init(|| {
        (0..MAX_IDS)
            .map(|i| format!("?{i}").parse().unwrap())
            .collect()
    })
}

struct RuleSearcher(Rule);
struct RuleApplier(Rule);

impl Searcher<Node, GraphAnalysis> for RuleSearcher {
    fn search_eclass_with_limit(
        &self,
        egraph: &EGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, Node>> {
        let matches = (self.0.find)(egraph, eclass);
        let substs: Vec<Subst> = matches
            .iter()
            .take(limit)
            .map(|m| {
                let mut s = Subst::with_capacity(m.ids.len());
                for (v, &id) in vars().iter().zip(&m.ids) {
                    s.insert(*v, id);
                }
                s
            })
            .collect();
        (!substs.is_empty()).then_some(SearchMatches {
            eclass,
            substs,
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vars().to_vec()
    }
}

impl Applier<Node, GraphAnalysis> for RuleApplier {
    fn apply_one(
        &self,
        egraph: &mut EGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<Node>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        // The match is found again, so that its numbers come with it.
        let wanted: Vec<Id> = vars()
            .iter()
            .map_while(|v| subst.get(*v))
            .map(|&id| egraph.find(id))
            .collect();
        let found = (self.0.find)(egraph, eclass).into_iter().find(|m| {
            m.ids.len() == wanted.len()
                && m.ids
                    .iter()
                    .zip(&wanted)
                    .all(|(&a, &b)| egraph.find(a) == b)
        });
        let Some(m) = found else { return vec![] };
        let key = (
            self.0.name,
            std::iter::once(egraph.find(eclass)).chain(wanted).collect(),
            m.ints.clone(),
            m.floats.iter().map(|f| f.to_bits()).collect(),
        );
        if !egraph.analysis.applied.insert(key) {
            return vec![];
        }
        let Some(new) = (self.0.build)(egraph, eclass, &m) else {
            return vec![];
        };
        if egraph.union(eclass, new) {
            vec![new]
        } else {
            vec![]
        }
    }
}

impl Rule {
    /// The rule as an egg rewrite.
    pub fn rewrite(self) -> Rewrite<Node, GraphAnalysis> {
        Rewrite::new(self.name, RuleSearcher(self), RuleApplier(self))
            .expect("rule variables are bound")
    }
}

// ---- reading the e-graph ----

/// The op e-nodes of a class: (op id, op, children).
pub fn ops(egraph: &EGraph, id: Id) -> impl Iterator<Item = (OpId, &Op, &[Id])> {
    egraph[id].nodes.iter().filter_map(move |n| match n {
        Node::Op(o, c) => Some((*o, egraph.analysis.op(*o), &c[..])),
        _ => None,
    })
}

/// The e-nodes of a class whose op satisfies `pick`, with what it returns.
pub fn find_ops<'a, T>(
    egraph: &'a EGraph,
    id: Id,
    pick: impl Fn(&'a Op) -> Option<T> + 'a,
) -> impl Iterator<Item = (T, &'a [Id])> + 'a {
    ops(egraph, id).filter_map(move |(_, op, c)| pick(op).map(|t| (t, c)))
}

/// The type of a single value.
pub fn ty(egraph: &EGraph, id: Id) -> Option<&TensorType> {
    egraph[id].data.ty()
}

/// The dims of a value, if all are known.
pub fn dims(egraph: &EGraph, id: Id) -> Option<Vec<usize>> {
    ty(egraph, id)?.shape.as_known()
}

/// The rank of a value, if known.
pub fn rank(egraph: &EGraph, id: Id) -> Option<usize> {
    ty(egraph, id)?.rank()
}

/// The constant value of a class.
pub fn constant(egraph: &EGraph, id: Id) -> Option<&Arc<Tensor>> {
    egraph[id].data.value.map(|c| egraph.analysis.value(c))
}

/// The constant of a class as integers.
pub fn const_ints(egraph: &EGraph, id: Id) -> Option<Vec<i64>> {
    constant(egraph, id)
        .filter(|t| t.dtype().is_int())
        .map(|t| t.to_i64_vec())
}

/// The single number a constant class holds (any shape of one element).
pub fn scalar(egraph: &EGraph, id: Id) -> Option<f64> {
    constant(egraph, id)
        .filter(|t| t.numel() == 1)
        .map(|t| t.get_f64(0))
}

/// Whether a class holds a constant whose every element equals `x`.
pub fn is_splat(egraph: &EGraph, id: Id, x: f64) -> bool {
    constant(egraph, id).is_some_and(|t| t.numel() > 0 && (0..t.numel()).all(|i| t.get_f64(i) == x))
}

/// Whether a class is an omitted input.
pub fn is_absent(egraph: &EGraph, id: Id) -> bool {
    egraph[id].data.absent
}

// ---- building ----

/// Adds `op` applied to `children` (one output), if inference accepts it.
pub fn add_op(egraph: &mut EGraph, op: impl Into<Op>, children: &[Id]) -> Option<Id> {
    add_op_n(egraph, op.into(), 1, children)
}

/// Adds `op` with `outputs` outputs, if inference accepts it.
pub fn add_op_n(egraph: &mut EGraph, op: Op, outputs: usize, children: &[Id]) -> Option<Id> {
    infer_op(egraph, &op, outputs, children)?;
    let id = egraph.analysis.ops.intern(op, outputs);
    Some(egraph.add(Node::Op(id, children.into())))
}

/// Adds a constant.
pub fn add_const(egraph: &mut EGraph, t: Tensor) -> Id {
    let c = egraph.analysis.consts.intern(Arc::new(t));
    egraph.add(Node::Const(c))
}

/// Adds a 1-D i64 constant.
pub fn add_ints(egraph: &mut EGraph, v: &[i64]) -> Id {
    add_const(egraph, Tensor::from_vec(vec![v.len()], v.to_vec()))
}

/// The class of an omitted optional input.
pub fn absent(egraph: &mut EGraph) -> Id {
    egraph.add(Node::Absent)
}

/// `a` and `b` surely have the same type: same dtype and rank, and every
/// dim the same number or the same symbol.
pub fn same_type(egraph: &EGraph, a: Id, b: Id) -> bool {
    match (ty(egraph, a), ty(egraph, b)) {
        (Some(x), Some(y)) => {
            x.dtype == y.dtype
                && x.shape == y.shape
                && x.dims()
                    .is_some_and(|d| d.iter().all(|d| !matches!(d, saturn_ir::Dim::Unknown)))
        }
        _ => false,
    }
}
