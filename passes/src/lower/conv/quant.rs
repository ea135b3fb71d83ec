//! Integer convolutions: ConvInteger and QLinearConv, as a direct window
//! walk accumulating in i32.
//!
//! Inputs are 8-bit; each tap multiplies `x − x_zero` by `w − w_zero` (the
//! weight's zero point per output channel or shared) and adds in i32 with
//! wrapping, which is the interpreter's i64 sum truncated to i32. Padding
//! is never read, so it contributes zero after the zero point, as in the
//! interpreter. QLinearConv then adds its i32 bias and requantises: the
//! multiplier `x_scale · w_scale / y_scale` is formed in f32, the result
//! in f64, clamped to the output type and rounded half to even.

use super::super::cx::NodeCx;
use super::super::{Unsupported, unsupported};
use super::window::{self, Body, Out, Tap};
use super::{ConvShape, PARALLEL_MIN, plane_loop};
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, Ty, UnOp, VarId};
use saturn_ir::ops::Windowed;
use saturn_ir::{AttrValue, DType, Op};

/// A zero point: none, one value, or one per output channel.
#[derive(Clone, Copy)]
enum Zero {
    None,
    Shared(BufId),
    PerChannel(BufId),
}

impl Zero {
    /// The zero point of input `i` (of an 8-bit tensor of dtype `dt`),
    /// per channel when allowed and its length is `m`.
    fn of(
        cx: &NodeCx,
        i: usize,
        dt: DType,
        per_channel: Option<usize>,
    ) -> Result<Zero, Unsupported> {
        let Some(b) = cx.input(i) else {
            return Ok(Zero::None);
        };
        let shape = cx.in_shape(i);
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(Zero::None);
        }
        if cx.in_dtype(i) != dt {
            return unsupported(format!("zero point of type {} for {dt}", cx.in_dtype(i)));
        }
        match per_channel {
            _ if n == 1 => Ok(Zero::Shared(b)),
            Some(m) if n == m && shape.len() == 1 => Ok(Zero::PerChannel(b)),
            _ => unsupported(format!("zero point of shape {shape:?}")),
        }
    }

    /// The zero point for output channel `m`, as an i32 scalar.
    fn value(self, m: &Expr) -> Option<Expr> {
        match self {
            Zero::None => None,
            Zero::Shared(b) => Some(Expr::load(b, Expr::idx(0)).cast(DType::I32)),
            Zero::PerChannel(b) => Some(Expr::load(b, m.clone()).cast(DType::I32)),
        }
    }
}

/// The requantisation of QLinearConv.
struct Requant {
    x_scale: BufId,
    w_scale: (BufId, bool),
    y_scale: BufId,
    y_zero: Option<BufId>,
    bias: Option<BufId>,
    out: DType,
}

pub(super) fn lower(cx: &mut NodeCx, op: &Op) -> Result<(), Unsupported> {
    let (s, xi, wi, xz, wz, rq) = match op {
        Op::ConvInteger(o) => {
            let s = ConvShape::new(cx, o as &dyn Windowed, 0, 1)?;
            (s, 0, 1, 2, 3, None)
        }
        Op::QLinearConv(o) => {
            let s = ConvShape::new(cx, o as &dyn Windowed, 0, 3)?;
            (s, 0, 3, 2, 5, Some(()))
        }
        _ => return unsupported("not an integer convolution"),
    };
    let (xd, wd) = (cx.in_dtype(xi), cx.in_dtype(wi));
    for d in [xd, wd] {
        if !matches!(d, DType::I8 | DType::U8) {
            return unsupported(format!("{} on {d}", op.name()));
        }
    }
    let (Some(x), Some(w)) = (cx.input(xi), cx.input(wi)) else {
        return unsupported("integer convolution without input or weight");
    };
    let xzero = Zero::of(cx, xz, xd, None)?;
    let wzero = Zero::of(cx, wz, wd, Some(s.m))?;
    let rq = match rq {
        None => None,
        Some(()) => {
            let scalar = |cx: &NodeCx, i: usize, n: usize| -> Result<(BufId, bool), Unsupported> {
                let shape = cx.in_shape(i);
                let len: usize = shape.iter().product();
                if cx.in_dtype(i) != DType::F32 {
                    return unsupported(format!("scale of type {}", cx.in_dtype(i)));
                }
                let b = cx
                    .input(i)
                    .ok_or_else(|| Unsupported("missing scale".into()))?;
                match len {
                    1 => Ok((b, false)),
                    _ if len == n && shape.len() == 1 => Ok((b, true)),
                    _ => unsupported(format!("scale of shape {shape:?}")),
                }
            };
            let (x_scale, _) = scalar(cx, 1, 1)?;
            let w_scale = scalar(cx, 4, s.m)?;
            let (y_scale, _) = scalar(cx, 6, 1)?;
            let y_zero = cx
                .input(7)
                .filter(|_| cx.in_shape(7).iter().product::<usize>() > 0);
            let out = cx.out_dtype(0);
            if !matches!(out, DType::I8 | DType::U8)
                || y_zero.is_some_and(|_| cx.in_dtype(7) != out)
            {
                return unsupported(format!("QLinearConv producing {out}"));
            }
            let bias = cx.input(8);
            if bias.is_some() && (cx.in_dtype(8) != DType::I32 || cx.in_shape(8) != [s.m]) {
                return unsupported("QLinearConv bias must be i32 with one value per map");
            }
            Some(Requant {
                x_scale,
                w_scale,
                y_scale,
                y_zero,
                bias,
                out,
            })
        }
    };
    if s.n * s.m * s.out_plane == 0 {
        return Ok(());
    }
    let lanes = cx.lanes(DType::I32);
    cx.schedule("conv", AttrValue::Str("direct".into()));
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let work = s.n * s.m * s.out_plane * s.cg * s.taps;
    let parallel = s.n * s.m >= 2 && work >= PARALLEL_MIN;
    let (n, m) = plane_loop(cx, s.n, s.m, parallel);
    let g = cx.b.let_("g", m.clone() / s.mg as i64);
    let xbase = cx.b.let_(
        "xbase",
        (n.clone() * s.c as i64 + g * s.cg as i64) * s.in_plane as i64,
    );
    let wbase = cx.b.let_("wbase", m.clone() * (s.cg * s.taps) as i64);
    let xz = xzero.value(&m).map(|e| cx.b.let_("xz", e));
    let wz = wzero.value(&m).map(|e| cx.b.let_("wz", e));
    let mut body = IntConv {
        x,
        w,
        xbase,
        wbase,
        xz,
        wz,
        n,
        m,
        s: &s,
        rq,
        acc: None,
    };
    window::walk(cx, &s.axes, lanes, &mut body)?;
    cx.b.end_for();
    Ok(())
}

struct IntConv<'a> {
    x: BufId,
    w: BufId,
    xbase: Expr,
    wbase: Expr,
    xz: Option<Expr>,
    wz: Option<Expr>,
    n: Expr,
    m: Expr,
    s: &'a ConvShape,
    rq: Option<Requant>,
    acc: Option<VarId>,
}

impl Body for IntConv<'_> {
    fn begin(&mut self, cx: &mut NodeCx, lanes: u16) -> Result<(), Unsupported> {
        let ty = Ty::vector(DType::I32, lanes);
        self.acc = Some(cx.b.decl("acc", Expr::Int(0, ty)));
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
        let mut xv = xv.cast(DType::I32);
        if let Some(z) = &self.xz {
            xv = Expr::bin(BinOp::Sub, xv, z.clone().splat(t.lanes));
        }
        let mut wv = Expr::load(
            self.w,
            self.wbase.clone() + ci * s.taps as i64 + t.tap.clone(),
        )
        .cast(DType::I32);
        if let Some(z) = &self.wz {
            wv = Expr::bin(BinOp::Sub, wv, z.clone());
        }
        let prod = Expr::bin(BinOp::Mul, xv, wv.splat(t.lanes));
        cx.b.assign(acc, Expr::bin(BinOp::Add, Expr::Var(acc), prod));
        if s.cg > 1 {
            cx.b.end_for();
        }
        Ok(())
    }

    fn end(&mut self, cx: &mut NodeCx, o: &Out) -> Result<(), Unsupported> {
        let mut v = Expr::Var(self.acc.expect("begin"));
        let l = o.lanes;
        if let Some(rq) = &self.rq {
            if let Some(b) = rq.bias {
                v = Expr::bin(BinOp::Add, v, Expr::load(b, self.m.clone()).splat(l));
            }
            // The multiplier in f32, as the interpreter forms it.
            let ws = Expr::load(
                rq.w_scale.0,
                if rq.w_scale.1 {
                    self.m.clone()
                } else {
                    Expr::idx(0)
                },
            );
            let xs = Expr::load(rq.x_scale, Expr::idx(0));
            let ys = Expr::load(rq.y_scale, Expr::idx(0));
            let mult = Expr::bin(BinOp::Div, Expr::bin(BinOp::Mul, xs, ws), ys);
            let mult = cx.b.let_("mult", mult.cast(DType::F64));
            let fty = Ty::vector(DType::F64, l);
            let mut f = Expr::bin(BinOp::Mul, v.cast(DType::F64), mult.splat(l));
            if let Some(z) = rq.y_zero {
                let zp = Expr::load(z, Expr::idx(0)).cast(DType::F64).splat(l);
                f = Expr::bin(BinOp::Add, f, zp);
            }
            let (lo, hi) = if rq.out == DType::I8 {
                (-128.0, 127.0)
            } else {
                (0.0, 255.0)
            };
            let f = Expr::bin(BinOp::Max, f, Expr::Float(lo, fty));
            let f = Expr::bin(BinOp::Min, f, Expr::Float(hi, fty));
            v = Expr::un(UnOp::Round, f).cast(rq.out);
        }
        let s = self.s;
        let idx = [self.n.clone(), self.m.clone(), o.l.clone()];
        cx.store_out_view(&[s.n, s.m, s.out_plane], &idx, v, o.mask.clone())
    }
}
