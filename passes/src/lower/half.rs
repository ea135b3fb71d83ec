//! f16 and bf16 on targets that compute in f32.
//!
//! Kernel IR has no half-precision arithmetic: a half tensor is a buffer
//! of `u16` bits (see `kernel::math::Half`). Elementwise groups widen
//! their half operands on load and narrow on store, so a chain of
//! elementwise ops rounds once, at its end. Ops that only move elements
//! (reshape, transpose, gather, pad, …) move the bits as they are. Every
//! other op is *widened* by [`widen_half`] before lowering: its half
//! inputs are cast to f32, it runs in f32, and its half outputs are cast
//! back, casts that fuse into the neighbouring elementwise kernels.

use saturn_ir::builder::GraphBuilder;
use saturn_ir::graph::{Graph, NodeId, Value, ValueDef};
use saturn_ir::kernel::math::Half;
use saturn_ir::ops::{Cast, RoundMode, ScatterReduction};
use saturn_ir::{DType, Op};

/// Ops that move elements without computing with them: on half tensors
/// they move the raw bits.
pub fn moves_bits(op: &Op) -> bool {
    use Op::*;
    match op {
        ScatterElements(o) => o.reduction == ScatterReduction::None,
        ScatterND(o) => o.reduction == ScatterReduction::None,
        _ => matches!(
            op,
            Reshape(_)
                | Flatten(_)
                | Squeeze(_)
                | Unsqueeze(_)
                | Transpose(_)
                | Concat(_)
                | Split(_)
                | Slice(_)
                | Gather(_)
                | GatherElements(_)
                | GatherND(_)
                | Pad(_)
                | Tile(_)
                | Identity(_)
                | DepthToSpace(_)
                | SpaceToDepth(_)
                | Shape(_)
                | Size(_)
                | Trilu(_)
                | ReverseSequence(_)
                | CenterCropPad(_)
                | ConstantOfShape(_)
                | Compress(_)
                | BitCast(_)
                | TensorScatter(_)
        ),
    }
}

fn is_half(g: &Graph, v: Value) -> bool {
    Half::of(g.ty(v).dtype).is_some()
}

/// Whether `node` must run widened: it touches a half tensor, computes
/// with it, and is not lowered as part of an elementwise group.
fn needs_widening(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    let touches = node.inputs.iter().flatten().any(|v| is_half(g, *v))
        || node.outputs.iter().any(|v| is_half(g, *v));
    touches
        && !moves_bits(&node.op)
        && node.op.subgraphs().is_empty()
        && !super::elementwise::is_elementwise(g, id)
}

fn cast(to: DType) -> Op {
    Op::Cast(Cast {
        to,
        saturate: true,
        round_mode: RoundMode::Up,
    })
}

/// `g` with every op that computes on half tensors (other than elementwise
/// and data-movement ops) widened to f32. Names of inputs, outputs and
/// node results are kept; returns `g` unchanged when nothing applies. A
/// node that does not type-check in f32 is kept as it is (and falls back).
pub fn widen_half(g: &Graph) -> Graph {
    let widen: Vec<bool> = g.node_ids().map(|id| needs_widening(g, id)).collect();
    if !widen.contains(&true) {
        return g.clone();
    }
    rebuild(g, &widen).unwrap_or_else(|_| g.clone())
}

fn rebuild(g: &Graph, widen: &[bool]) -> Result<Graph, saturn_ir::builder::BuildError> {
    let mut b = GraphBuilder::new(g.name.clone());
    let mut map: Vec<Option<Value>> = vec![None; g.num_values()];
    for (v, data) in g.values() {
        match &data.def {
            ValueDef::Input(_) => {
                map[v.index()] = Some(b.input(data.name.clone(), data.ty.clone())?)
            }
            ValueDef::Const(t) => map[v.index()] = Some(b.constant(data.name.clone(), t.clone())?),
            ValueDef::Capture => {
                map[v.index()] = Some(b.capture(data.name.clone(), data.ty.clone())?)
            }
            ValueDef::Node { .. } => {}
        }
    }
    for (node, &w) in g.nodes().iter().zip(widen) {
        let inputs: Vec<Option<Value>> = node
            .inputs
            .iter()
            .map(|v| v.and_then(|v| map[v.index()]))
            .collect();
        let declared = |v: &Value| (g.name(*v).to_string(), Some(g.ty(*v).clone()));
        if !w {
            let outs = b.node(
                &node.name,
                node.op.clone(),
                inputs,
                node.outputs.iter().map(declared).collect(),
            )?;
            for (v, nv) in node.outputs.iter().zip(outs) {
                map[v.index()] = Some(nv);
            }
            continue;
        }
        let mut wide = Vec::with_capacity(inputs.len());
        for v in inputs {
            wide.push(match v {
                Some(v) if Half::of(b.graph().ty(v).dtype).is_some() => {
                    let name = b.fresh_name(&format!("{}_f32", b.graph().name(v)));
                    Some(b.node("", cast(DType::F32), vec![Some(v)], vec![(name, None)])?[0])
                }
                other => other,
            });
        }
        let names: Vec<(String, Option<saturn_ir::TensorType>)> = node
            .outputs
            .iter()
            .map(|v| {
                let n = g.name(*v);
                // The original shape, known even where inference of the
                // widened node cannot see through the input casts.
                let mut ty = g.ty(*v).clone();
                if is_half(g, *v) {
                    ty.dtype = DType::F32;
                    (b.fresh_name(&format!("{n}_f32")), Some(ty))
                } else {
                    (n.to_string(), Some(ty))
                }
            })
            .collect();
        let outs = match b.node(&node.name, node.op.clone(), wide, names) {
            Ok(outs) => outs,
            Err(_) => {
                // Not valid in f32: keep the node as it is.
                let inputs = node
                    .inputs
                    .iter()
                    .map(|v| v.and_then(|v| map[v.index()]))
                    .collect();
                let outs = b.node(
                    &node.name,
                    node.op.clone(),
                    inputs,
                    node.outputs.iter().map(declared).collect(),
                )?;
                for (v, nv) in node.outputs.iter().zip(outs) {
                    map[v.index()] = Some(nv);
                }
                continue;
            }
        };
        for (v, nv) in node.outputs.iter().zip(outs) {
            let want = g.ty(*v).dtype;
            map[v.index()] = Some(if b.graph().ty(nv).dtype != want {
                b.node(
                    "",
                    cast(want),
                    vec![Some(nv)],
                    vec![(g.name(*v).to_string(), None)],
                )?[0]
            } else {
                nv
            });
        }
    }
    let outputs = g
        .outputs()
        .iter()
        .map(|v| map[v.index()].expect("outputs are defined"))
        .collect();
    Ok(b.finish(outputs))
}
