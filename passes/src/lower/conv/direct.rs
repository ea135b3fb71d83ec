//! Direct convolution: the window walk over each output plane, for
//! depthwise convolutions and tiny channel counts, where unfolding the
//! input would cost more than it saves.
//!
//! Each (image, output channel) plane is independent (the parallel loop);
//! the interior of each output row is computed in vectors along the width,
//! accumulating `w · x` over the group's input channels and the taps in
//! registers, and the borders one output at a time with the taps bounded
//! to the input.

use super::super::Unsupported;
use super::super::cx::NodeCx;
use super::window::{self, Body, Out, Tap};
use super::{ConvShape, PARALLEL_MIN, plane_loop};
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, Ty, VarId};
use saturn_ir::{AttrValue, DType};

pub(super) fn lower(
    cx: &mut NodeCx,
    s: &ConvShape,
    x: BufId,
    w: BufId,
    bias: Option<BufId>,
    dt: DType,
) -> Result<(), Unsupported> {
    let lanes = cx.lanes(dt);
    cx.schedule("conv", AttrValue::Str("direct".into()));
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let work = s.n * s.m * s.out_plane * s.cg * s.taps;
    let parallel = s.n * s.m >= 2 && work >= PARALLEL_MIN;
    if parallel {
        cx.schedule("parallel", AttrValue::Str("planes".into()));
    }
    let (n, m) = plane_loop(cx, s.n, s.m, parallel);
    let g = cx.b.let_("g", m.clone() / s.mg as i64);
    let xbase = cx.b.let_(
        "xbase",
        (n.clone() * s.c as i64 + g * s.cg as i64) * s.in_plane as i64,
    );
    let wbase = cx.b.let_("wbase", m.clone() * (s.cg * s.taps) as i64);
    let mut body = Direct {
        x,
        w,
        bias,
        dt,
        xbase,
        wbase,
        m: m.clone(),
        n,
        s,
        acc: None,
    };
    window::walk(cx, &s.axes, lanes, &mut body)?;
    cx.b.end_for();
    Ok(())
}

struct Direct<'a> {
    x: BufId,
    w: BufId,
    bias: Option<BufId>,
    dt: DType,
    xbase: Expr,
    wbase: Expr,
    n: Expr,
    m: Expr,
    s: &'a ConvShape,
    acc: Option<VarId>,
}

impl Body for Direct<'_> {
    fn begin(&mut self, cx: &mut NodeCx, lanes: u16) -> Result<(), Unsupported> {
        let ty = Ty::vector(self.dt, lanes);
        self.acc = Some(cx.b.decl("acc", Expr::constant(0.0, ty)));
        Ok(())
    }

    fn tap(&mut self, cx: &mut NodeCx, t: &Tap) -> Result<(), Unsupported> {
        let acc = self.acc.expect("begin");
        let s = self.s;
        let ci = if s.cg > 1 {
            cx.b.begin_for("ci", 0, s.cg, 1, LoopKind::Serial)
        } else {
            Expr::idx(0)
        };
        let at = self.xbase.clone() + ci.clone() * s.in_plane as i64 + t.off.clone();
        let xv = if t.lanes == 1 {
            Expr::load(self.x, at)
        } else {
            Expr::load_vec(self.x, at, t.lanes, t.stride, t.mask.clone())
        };
        let wv = Expr::load(
            self.w,
            self.wbase.clone() + ci * s.taps as i64 + t.tap.clone(),
        )
        .splat(t.lanes);
        cx.b.assign(acc, Expr::mul_add(wv, xv, Expr::Var(acc)));
        if s.cg > 1 {
            cx.b.end_for();
        }
        Ok(())
    }

    fn end(&mut self, cx: &mut NodeCx, o: &Out) -> Result<(), Unsupported> {
        let mut v = Expr::Var(self.acc.expect("begin"));
        if let Some(b) = self.bias {
            let bv = Expr::load(b, self.m.clone()).splat(o.lanes);
            v = Expr::bin(BinOp::Add, v, bv);
        }
        let s = self.s;
        let idx = [self.n.clone(), self.m.clone(), o.l.clone()];
        cx.store_out_view(&[s.n, s.m, s.out_plane], &idx, v, o.mask.clone())
    }
}
