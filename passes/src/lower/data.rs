//! Dispatch of the anchors that are not GEMMs to the module that owns
//! their op family.

use super::cx::NodeCx;
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;

type Lowering = fn(&mut NodeCx, NodeId) -> Option<Result<(), Unsupported>>;

/// Each family answers `None` for ops that are not its own.
const FAMILIES: &[Lowering] = &[
    super::conv::lower,
    super::norm::lower,
    super::softmax::lower,
    super::reduce::lower,
    super::movement::lower,
    super::lrn::lower,
    super::loss::lower,
];

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Result<(), Unsupported> {
    for f in FAMILIES {
        if let Some(r) = f(cx, node) {
            return r;
        }
    }
    unsupported(format!(
        "`{}` has no kernel lowering yet",
        cx.g.node(node).op.name()
    ))
}
