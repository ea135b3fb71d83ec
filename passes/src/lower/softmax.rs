//! Lowerings of the softmax family.

use super::Unsupported;
use super::cx::NodeCx;
use saturn_ir::graph::NodeId;

pub fn lower(_cx: &mut NodeCx, _node: NodeId) -> Option<Result<(), Unsupported>> {
    None
}
// x
