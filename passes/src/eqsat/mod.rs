//! The e-graph optimizer.
//!
//! A graph is encoded into an egg e-graph ([`convert`]), every rule of
//! every family ([`rules`]) is applied together until the e-graph saturates
//! or a bound is hit ([`Limits`]), and the target's cost model ([`cost`])
//! extracts the cheapest equivalent graph. What happened is summed up in a
//! [`Report`]: why it stopped, the size of the e-graph, how often each rule
//! fired, the cost before and after, and the choices between alternative
//! kernels with the estimates that decided them.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod lang;
pub mod rule;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use egg::{CostFunction, Extractor, Id, Runner, StopReason};
use saturn_ir::target::Target;
use saturn_ir::{Graph, Op, TensorType};

use analysis::{EGraph, explicit_inputs};
use cost::{Cost, CostModel, Estimate, Roofline};
use lang::Node;
use rule::Rule;

/// Bounds of one saturation.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Stop when the e-graph has this many e-nodes.
    pub nodes: usize,
    /// Stop after this many iterations.
    pub iterations: usize,
    /// Stop after this much time.
    pub time: Duration,
}

impl Default for Limits {
    /// Bounds that keep real models (CNNs, BERT) well under a second.
    fn default() -> Limits {
        Limits {
            nodes: 60_000,
            iterations: 16,
            time: Duration::from_millis(800),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptError {
    #[error("extraction failed: {0}")]
    Extraction(String),
    #[error("the optimized graph does not verify: {0}")]
    Verify(String),
}

/// One choice between alternative kernels for the same value.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The value's type.
    pub ty: String,
    /// Each alternative (op text) with its estimate; the first is chosen.
    pub alternatives: Vec<(String, Estimate)>,
}

/// What a saturation did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: String,
    pub stop_reason: String,
    pub iterations: usize,
    pub enodes: usize,
    pub eclasses: usize,
    pub time: Duration,
    /// Time spent encoding the graph, saturating, and extracting.
    pub phases: [Duration; 3],
    /// How often each rule fired, by name (rules that never fired: 0).
    pub fired: BTreeMap<String, usize>,
    pub cost_before: Cost,
    pub cost_after: Cost,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub decisions: Vec<Decision>,
    /// Merges of classes whose types disagree (0 unless a rule is unsound).
    pub type_conflicts: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# e-graph optimizer report")?;
        writeln!(f, "target:      {}", self.target)?;
        writeln!(f, "stop reason: {}", self.stop_reason)?;
        writeln!(f, "iterations:  {}", self.iterations)?;
        writeln!(f, "e-nodes:     {}", self.enodes)?;
        writeln!(f, "e-classes:   {}", self.eclasses)?;
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "time:        {:.1} ms (encode {:.1}, saturate {:.1}, extract {:.1})",
            ms(&self.time),
            ms(&self.phases[0]),
            ms(&self.phases[1]),
            ms(&self.phases[2])
        )?;
        writeln!(
            f,
            "cost:        {} -> {} (estimated, {} -> {} nodes)",
            self.cost_before, self.cost_after, self.nodes_before, self.nodes_after
        )?;
        if self.type_conflicts > 0 {
            writeln!(f, "type conflicts: {}", self.type_conflicts)?;
        }
        writeln!(f, "rules fired:")?;
        for (name, n) in &self.fired {
            writeln!(f, "  {n:6}  {name}")?;
        }
        if !self.decisions.is_empty() {
            writeln!(
                f,
                "kernel choices (estimated time, bytes moved, flops, limit):"
            )?;
            for d in &self.decisions {
                writeln!(f, "  {}:", d.ty)?;
                for (i, (op, e)) in d.alternatives.iter().enumerate() {
                    writeln!(
                        f,
                        "    {} {op}: {} ({:.3} MB, {:.3} MFLOP, {})",
                        if i == 0 { "*" } else { " " },
                        e.cost,
                        e.bytes / 1e6,
                        e.flops / 1e6,
                        e.bound
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// What extraction prefers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Extract {
    /// The cheapest graph under the target's cost model.
    #[default]
    Cheapest,
    /// Whatever the rules built, wherever they built something: for
    /// checking a rule's right-hand side against its left-hand side.
    Rewritten,
}

/// Extraction cost: an e-node's own estimate plus its children's.
struct CostFn<'a> {
    egraph: &'a EGraph,
    model: &'a dyn CostModel,
    /// With [`Extract::Rewritten`]: the e-nodes of the input graph, which
    /// then cost more than anything a rule added.
    original: Option<std::collections::HashSet<Node>>,
}

/// The estimate of one op e-node from its classes' types.
fn node_estimate(
    egraph: &EGraph,
    model: &dyn CostModel,
    op: &Op,
    children: &[Id],
    class_types: &[TensorType],
) -> Option<Estimate> {
    let n = explicit_inputs(op, children.len());
    let inputs: Vec<Option<&TensorType>> = children[..n]
        .iter()
        .map(|&c| {
            if egraph[c].data.absent {
                None
            } else {
                egraph[c].data.ty()
            }
        })
        .collect();
    if class_types.is_empty() {
        return None;
    }
    Some(model.estimate(op, &inputs, class_types))
}

impl CostFunction<Node> for CostFn<'_> {
    type Cost = Cost;

    fn cost<C>(&mut self, enode: &Node, mut costs: C) -> Cost
    where
        C: FnMut(Id) -> Cost,
    {
        if let Some(original) = &self.original {
            let own = match enode {
                Node::Op(..) if original.contains(enode) => Cost::from_seconds(1.0),
                Node::Op(..) => Cost::from_seconds(1e-6),
                _ => Cost::ZERO,
            };
            return enode.children().iter().fold(own, |acc, &c| acc + costs(c));
        }
        let own = match enode {
            Node::Op(o, children) => {
                let op = self.egraph.analysis.op(*o);
                // The types of the class the node is in; any child's class
                // is found the same way.
                let class = self
                    .egraph
                    .lookup(enode.clone())
                    .map(|c| self.egraph[c].data.types.clone());
                match class.and_then(|t| node_estimate(self.egraph, self.model, op, children, &t)) {
                    Some(e) => e.cost,
                    None => Cost::INFINITY,
                }
            }
            _ => Cost::ZERO,
        };
        enode.children().iter().fold(own, |acc, &c| acc + costs(c))
    }
}

use egg::Language;

/// The estimated cost of running a graph: every node once.
pub fn graph_cost(g: &Graph, model: &dyn CostModel) -> Cost {
    g.nodes()
        .iter()
        .map(|n| {
            let inputs: Vec<Option<&TensorType>> =
                n.inputs.iter().map(|v| v.map(|v| g.ty(v))).collect();
            let outputs: Vec<TensorType> = n.outputs.iter().map(|&v| g.ty(v).clone()).collect();
            model.estimate(&n.op, &inputs, &outputs).cost
        })
        .sum()
}

/// Ops between which the cost model chooses; the report explains those
/// choices.
fn is_choice(op: &Op) -> bool {
    matches!(
        op,
        Op::Softmax(_)
            | Op::MatMul(_)
            | Op::Gemm(_)
            | Op::FlatGemm(_)
            | Op::Gemv(_)
            | Op::Attention(_)
    )
}

fn op_text(op: &Op) -> String {
    let attrs: Vec<String> = op
        .attrs()
        .iter()
        .map(|(k, v)| match v {
            saturn_ir::AttrValue::Int(i) => format!("{k} = {i}"),
            saturn_ir::AttrValue::Float(x) => format!("{k} = {x:?}"),
            saturn_ir::AttrValue::Sym(s) => format!("{k} = {s}"),
            saturn_ir::AttrValue::Ints(i) => format!("{k} = {i:?}"),
            other => format!("{k} = <{}>", other.kind()),
        })
        .collect();
    if attrs.is_empty() {
        op.name().to_string()
    } else {
        format!("{} {{{}}}", op.name(), attrs.join(", "))
    }
}

/// Optimizes a graph for a target with the given rules and bounds.
pub fn optimize_with(
    g: &Graph,
    target: &Target,
    rules: &[Rule],
    limits: &Limits,
) -> Result<(Graph, Report), OptError> {
    optimize_extracting(g, target, rules, limits, Extract::Cheapest)
}

/// [`optimize_with`], choosing what extraction prefers.
pub fn optimize_extracting(
    g: &Graph,
    target: &Target,
    rules: &[Rule],
    limits: &Limits,
    extract: Extract,
) -> Result<(Graph, Report), OptError> {
    let start = Instant::now();
    let model = Roofline::new(target.clone());
    let mut enc = convert::encode(g);
    enc.egraph.analysis.target = target.clone();
    let original_nodes: Vec<Node> = enc
        .egraph
        .classes()
        .flat_map(|c| c.nodes.iter().cloned())
        .collect();
    let rewrites: Vec<_> = rules.iter().map(|r| r.rewrite()).collect();
    let t_encode = start.elapsed();
    let runner = Runner::default()
        .with_egraph(std::mem::take(&mut enc.egraph))
        .with_node_limit(limits.nodes)
        .with_iter_limit(limits.iterations)
        .with_time_limit(limits.time)
        .run(&rewrites);
    let stop_reason = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("e-node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({:.0} ms)", t * 1e3),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".into(),
    };
    let mut fired: BTreeMap<String, usize> =
        rules.iter().map(|r| (r.name.to_string(), 0)).collect();
    for it in &runner.iterations {
        for (name, n) in &it.applied {
            *fired.entry(name.to_string()).or_default() += n;
        }
    }
    let iterations = runner.iterations.len();
    let t_run = start.elapsed();
    enc.egraph = runner.egraph;
    let eg = &enc.egraph;
    let original = (extract == Extract::Rewritten).then(|| {
        original_nodes
            .iter()
            .map(|n| n.clone().map_children(|c| eg.find(c)))
            .collect()
    });
    let ex = Extractor::new(
        eg,
        CostFn {
            egraph: eg,
            model: &model,
            original,
        },
    );
    let (out, node_classes) = convert::decode(&enc, &ex, g)?;
    saturn_ir::verify::verify(&out).map_err(|e| OptError::Verify(e.to_string()))?;

    // Explain the choices that the cost model made.
    let mut decisions = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, &class) in out.nodes().iter().zip(&node_classes) {
        if !is_choice(&n.op) {
            continue;
        }
        if !seen.insert(class) {
            continue;
        }
        let types = eg[class].data.types.clone();
        let mut alts: Vec<(String, Estimate)> = eg[class]
            .nodes
            .iter()
            .filter_map(|node| match node {
                Node::Op(o, c) if is_choice(eg.analysis.op(*o)) => {
                    let op = eg.analysis.op(*o);
                    node_estimate(eg, &model, op, c, &types).map(|e| (op_text(op), e))
                }
                _ => None,
            })
            .collect();
        if alts.len() < 2 {
            continue;
        }
        alts.sort_by_key(|(_, e)| e.cost);
        let chosen = op_text(&n.op);
        if let Some(p) = alts.iter().position(|(t, _)| *t == chosen) {
            let c = alts.remove(p);
            alts.insert(0, c);
        }
        decisions.push(Decision {
            ty: types
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            alternatives: alts,
        });
    }

    let report = Report {
        target: target.to_string(),
        stop_reason,
        iterations,
        enodes: eg.total_number_of_nodes(),
        eclasses: eg.number_of_classes(),
        time: start.elapsed(),
        phases: [t_encode, t_run - t_encode, start.elapsed() - t_run],
        fired,
        cost_before: graph_cost(g, &model),
        cost_after: graph_cost(&out, &model),
        nodes_before: g.nodes().len(),
        nodes_after: out.nodes().len(),
        decisions,
        type_conflicts: eg.analysis.conflicts,
    };
    Ok((out, report))
}

/// Optimizes a graph for a target with every rule and the default bounds.
pub fn optimize(g: &Graph, target: &Target) -> Result<(Graph, Report), OptError> {
    optimize_with(g, target, &rules::all(), &Limits::default())
}
