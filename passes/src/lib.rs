//! Saturn's graph passes and the pass manager.
//!
//! Every pass reads and writes Graph IR, so a pass test is a `.tir` input,
//! a pipeline and the expected output. The e-graph optimizer ([`eqsat`])
//! is the main pass; the pass manager runs a named pipeline and lets the
//! driver look at the graph after any pass (`--print-after`).

pub mod eqsat;
pub mod lower;

use saturn_ir::Graph;
use saturn_ir::target::Target;

pub use eqsat::{Limits, Report};

/// What passes may know: the target and the optimizer's bounds.
#[derive(Clone, Debug)]
pub struct PassContext {
    pub target: Target,
    pub limits: Limits,
}

/// What a pass returns: the new graph and, where it has one, a report.
pub struct PassOutput {
    pub graph: Graph,
    pub report: Option<Report>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    #[error("unknown pass `{0}` (passes: {1})")]
    Unknown(String, String),
    #[error("pass `{pass}`: {msg}")]
    Failed { pass: &'static str, msg: String },
}

/// A graph-to-graph pass.
pub trait Pass: Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn run(&self, graph: Graph, cx: &PassContext) -> Result<PassOutput, PassError>;
}

/// The e-graph optimizer as a pass.
pub struct EqSat;

impl Pass for EqSat {
    fn name(&self) -> &'static str {
        "eqsat"
    }

    fn description(&self) -> &'static str {
        "equality saturation with every rule family, extraction by the target's cost model"
    }

    fn run(&self, graph: Graph, cx: &PassContext) -> Result<PassOutput, PassError> {
        let (graph, report) =
            eqsat::optimize_with(&graph, &cx.target, &eqsat::rules::all(), &cx.limits).map_err(
                |e| PassError::Failed {
                    pass: "eqsat",
                    msg: e.to_string(),
                },
            )?;
        Ok(PassOutput {
            graph,
            report: Some(report),
        })
    }
}

/// Every pass, by name.
pub static PASSES: &[&dyn Pass] = &[&EqSat];

/// The pipeline `saturn opt` and `saturn run` use.
pub const DEFAULT_PIPELINE: &[&str] = &["eqsat"];

pub fn lookup(name: &str) -> Result<&'static dyn Pass, PassError> {
    PASSES
        .iter()
        .copied()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = PASSES.iter().map(|p| p.name()).collect();
            PassError::Unknown(name.to_string(), names.join(", "))
        })
}

/// Runs passes in order; `after` sees the graph and report after each.
pub fn run_pipeline(
    mut graph: Graph,
    names: &[&str],
    cx: &PassContext,
    after: &mut dyn FnMut(&str, &Graph, Option<&Report>),
) -> Result<Graph, PassError> {
    for name in names {
        let pass = lookup(name)?;
        let out = pass.run(graph, cx)?;
        after(pass.name(), &out.graph, out.report.as_ref());
        graph = out.graph;
    }
    Ok(graph)
}
