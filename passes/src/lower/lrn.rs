//! Local response normalisation (LRN) across channels:
//! `y = x / (bias + alpha/size · Σ x²)^beta`, the sum over a window of
//! `size` neighbouring channels.
//!
//! The parallel loop runs over (image, channel); each walks the spatial
//! positions a vector at a time, summing the squares of the window's
//! channels in a register, and computes the power as
//! `exp(−beta · log(·))` with the polynomial expansions. The output goes
//! through the epilogue.

use super::Unsupported;
use super::cx::NodeCx;
use super::elementwise::vector_loop;
use super::unsupported;
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::{BinOp, Expr, LoopKind, Ty, math};
use saturn_ir::{AttrValue, DType, Op};

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Option<Result<(), Unsupported>> {
    let Op::LRN(op) = cx.g.node(node).op.clone() else {
        return None;
    };
    Some(lrn(cx, op))
}

fn lrn(cx: &mut NodeCx, op: saturn_ir::ops::LRN) -> Result<(), Unsupported> {
    let vl = cx.lanes(DType::F32);
    let dt = cx.in_dtype(0);
    if !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("lrn in {dt}"));
    }
    let shape = cx.in_shape(0);
    if shape.len() < 2 || op.size <= 0 {
        return unsupported("lrn needs [N, C, …] and a positive size");
    }
    let (n, c) = (shape[0], shape[1]);
    let spatial: usize = shape[2..].iter().product();
    if n * c * spatial == 0 {
        return Ok(());
    }
    let size = op.size as usize;
    let (before, after) = ((size - 1) / 2, size / 2);
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("lrn without input".into()))?;
    let lanes = if spatial >= vl as usize { vl } else { 1 };
    let vty = Ty::vector(dt, lanes);
    let k = Expr::constant(op.alpha as f64 / size as f64, vty);
    let bias = Expr::constant(op.bias as f64, vty);
    let beta = Expr::constant(-(op.beta as f64), vty);
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    cx.schedule("parallel", AttrValue::Str("channels".into()));
    let view = [n, c, spatial];
    let bc = cx.b.begin_for("bc", 0, n * c, 1, LoopKind::Parallel);
    let b = cx.b.let_("b", bc.clone() / c as i64);
    let ch = cx.b.let_("ch", bc.clone() % c as i64);
    // The window [ch - before, ch + after], clamped to the channels.
    let lo =
        cx.b.let_("lo", (ch.clone() - before as i64).max(Expr::idx(0)));
    let hi = cx.b.let_(
        "hi",
        (ch.clone() + (after + 1) as i64).min(Expr::idx(c as i64)),
    );
    vector_loop(cx, "j", spatial, lanes, &mut |cx, j, mask| {
        let sum = cx.b.decl("sum", Expr::constant(0.0, vty));
        let w =
            cx.b.begin_for("w", lo.clone(), hi.clone(), 1, LoopKind::Serial);
        let at = (b.clone() * c as i64 + w) * spatial as i64 + j.clone();
        let v =
            cx.b.let_("v", Expr::load_vec(x, at, lanes, 1, mask.clone()));
        cx.b.assign(sum, Expr::mul_add(v.clone(), v, Expr::Var(sum)));
        cx.b.end_for();
        let base = Expr::mul_add(Expr::Var(sum), k.clone(), bias.clone());
        let lg = math::log(&mut cx.b, base);
        let scale = math::exp(&mut cx.b, Expr::bin(BinOp::Mul, lg, beta.clone()));
        let at = bc.clone() * spatial as i64 + j.clone();
        let xv = Expr::load_vec(x, at, lanes, 1, mask.clone());
        let y = Expr::bin(BinOp::Mul, xv, scale);
        cx.store_out_view(&view, &[b.clone(), ch.clone(), j], y, mask)
    })?;
    cx.b.end_for();
    Ok(())
}
