//! Fusion and lowering: optimized Graph IR → Kernel IR.
//!
//! [`lower`] partitions the graph into fusion groups ([`fuse`]) and lowers
//! each group to one [`Kernel`]: elementwise chains become one loop nest
//! over the group's output ([`elementwise`]); an op with its own loop
//! structure (a GEMM, a convolution, a reduction, a softmax …) is the
//! *anchor* of its group, and a chain of elementwise ops that consumes its
//! result (a bias, an activation) is applied as its epilogue before the
//! store, so the intermediate never reaches memory.
//!
//! The result is a sequence of [`Step`]s over the graph's values: a
//! kernel call with the values bound to its buffers, or — for an op that
//! has no lowering yet — a fallback to the reference interpreter, with the
//! reason, so `saturn compile --report` can list it.
//!
//! Lowering needs static shapes; a backend specialises a graph with
//! symbolic dims to concrete input shapes first.

mod attention;
mod conv;
mod cx;
mod data;
pub mod elementwise;
pub mod exec;
pub mod flat;
pub mod fuse;
pub mod half;
pub mod linalg;
mod loss;
mod lrn;
mod movement;
mod norm;
mod packed;
mod reduce;
mod softmax;

use saturn_ir::graph::{Graph, NodeId, Value};
use saturn_ir::kernel::Kernel;
use saturn_ir::target::Target;
use std::fmt;

pub use cx::NodeCx;

/// The element type of a graph dtype's kernel buffers: half formats are
/// stored as their `u16` bits; `None` for dtypes kernels cannot hold.
pub fn storage_dtype(d: saturn_ir::DType) -> Option<saturn_ir::DType> {
    if saturn_ir::kernel::math::Half::of(d).is_some() {
        Some(saturn_ir::DType::U16)
    } else if saturn_ir::kernel::is_kernel_dtype(d) {
        Some(d)
    } else {
        None
    }
}

/// What a kernel buffer is bound to.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A graph value (input, constant, intermediate or output).
    Value(Value),
    /// Working memory of the kernel's buffer at this position; its length
    /// is the buffer's (static) length.
    Scratch,
    /// Data the lowering computed from constants (weights repacked into
    /// the layout a micro-kernel reads), an input buffer of the kernel.
    Const(std::sync::Arc<saturn_ir::Tensor>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Run `kernels[kernel]` with its buffers bound to `args` (one per
    /// kernel buffer, in order). `nodes` are the graph nodes it computes.
    Kernel {
        kernel: usize,
        args: Vec<Arg>,
        nodes: Vec<NodeId>,
    },
    /// Run the node with the reference interpreter.
    Fallback { node: NodeId, reason: String },
}

/// A lowered graph: kernels and the steps that run them.
#[derive(Clone, Debug, Default)]
pub struct Lowered {
    pub kernels: Vec<Kernel>,
    pub steps: Vec<Step>,
}

impl Lowered {
    /// The fallback steps, as `(node label, op name, reason)`.
    pub fn fallbacks<'g>(&self, g: &'g Graph) -> Vec<(&'g str, &'static str, &str)> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Fallback { node, reason } => {
                    let n = g.node(*node);
                    Some((n.label(g), n.op.name(), reason.as_str()))
                }
                _ => None,
            })
            .collect()
    }

    /// Number of graph nodes compiled into kernels.
    pub fn compiled_nodes(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Kernel { nodes, .. } => nodes.len(),
                Step::Fallback { .. } => 0,
            })
            .sum()
    }
}

/// Why a node could not be lowered (it then falls back).
#[derive(Clone, Debug, PartialEq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn unsupported<T>(msg: impl Into<String>) -> Result<T, Unsupported> {
    Err(Unsupported(msg.into()))
}

/// Options of lowering.
#[derive(Clone, Debug)]
pub struct LowerOptions {
    /// Fuse elementwise chains and epilogues (off: one kernel per node).
    pub fuse: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions { fuse: true }
    }
}

/// Lowers a graph with static shapes to kernels.
pub fn lower(g: &Graph, target: &Target, opts: &LowerOptions) -> Lowered {
    let groups = fuse::partition(g, opts);
    let mut out = Lowered::default();
    let mut names = std::collections::HashMap::<String, usize>::new();
    for group in groups {
        match lower_group(g, target, &group) {
            Ok((mut k, args)) => {
                // Kernel names are symbols: unique and identifier-safe.
                let base = sanitize(&k.name);
                let n = names.entry(base.clone()).or_insert(0);
                k.name = if *n == 0 { base } else { format!("{base}_{n}") };
                *n += 1;
                out.kernels.push(k);
                out.steps.push(Step::Kernel {
                    kernel: out.kernels.len() - 1,
                    args,
                    nodes: group.nodes(),
                });
            }
            Err(e) if group.epilogue.is_some() => {
                // Retry without fusion: the anchor alone, then the chain.
                let (anchor, tail) = group.split();
                for g2 in [anchor, tail] {
                    push_single(g, target, &g2, &mut out, &mut names, e.clone());
                }
            }
            Err(e) => {
                for n in group.nodes() {
                    out.steps.push(Step::Fallback {
                        node: n,
                        reason: e.0.clone(),
                    });
                }
            }
        }
    }
    out
}

fn push_single(
    g: &Graph,
    target: &Target,
    group: &fuse::Group,
    out: &mut Lowered,
    names: &mut std::collections::HashMap<String, usize>,
    _first: Unsupported,
) {
    match lower_group(g, target, group) {
        Ok((mut k, args)) => {
            let base = sanitize(&k.name);
            let n = names.entry(base.clone()).or_insert(0);
            k.name = if *n == 0 { base } else { format!("{base}_{n}") };
            *n += 1;
            out.kernels.push(k);
            out.steps.push(Step::Kernel {
                kernel: out.kernels.len() - 1,
                args,
                nodes: group.nodes(),
            });
        }
        Err(e) => {
            for n in group.nodes() {
                out.steps.push(Step::Fallback {
                    node: n,
                    reason: e.0.clone(),
                });
            }
        }
    }
}

fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'k');
    }
    out
}

/// Lowers one group: its anchor op (or the root of an elementwise tree)
/// with the epilogue.
fn lower_group(
    g: &Graph,
    target: &Target,
    group: &fuse::Group,
) -> Result<(Kernel, Vec<Arg>), Unsupported> {
    let mut cx = NodeCx::new(g, target, group)?;
    match &group.anchor {
        Some(anchor) => lower_anchor(&mut cx, *anchor)?,
        None => elementwise::lower_tree(&mut cx)?,
    }
    cx.finish()
}

/// Dispatch by op to the lowering that owns it.
fn lower_anchor(cx: &mut NodeCx, node: NodeId) -> Result<(), Unsupported> {
    use saturn_ir::Op;
    let op = &cx.g.node(node).op;
    match op {
        Op::MatMul(_) | Op::Gemm(_) | Op::FlatGemm(_) | Op::Gemv(_) => linalg::lower(cx, node),
        Op::Attention(_) => attention::lower(cx, node),
        _ => data::lower(cx, node),
    }
}

/// Whether an op may take a fused epilogue: every single-output op whose
/// lowering stores through [`NodeCx::store_out`] (a lowering that reads
/// its output back refuses, and the group is split).
pub(crate) fn epilogue_anchor(op: &saturn_ir::Op) -> bool {
    use saturn_ir::Op::*;
    matches!(
        op,
        MatMul(_)
            | Gemm(_)
            | FlatGemm(_)
            | Gemv(_)
            | Conv(_)
            | BatchNormalization(_)
            | MaxPool(_)
            | AveragePool(_)
            | GlobalAveragePool(_)
            | LayerNormalization(_)
            | Softmax(_)
            | Attention(_)
            | ReduceMean(_)
            | ReduceSum(_)
            | ReduceMax(_)
            | ReduceMin(_)
            | ReduceProd(_)
            | ReduceL1(_)
            | ReduceL2(_)
            | ReduceLogSum(_)
            | ReduceLogSumExp(_)
            | ReduceSumSquare(_)
            | LogSoftmax(_)
            | RMSNormalization(_)
            | InstanceNormalization(_)
            | LpNormalization(_)
            | MeanVarianceNormalization(_)
    )
}
