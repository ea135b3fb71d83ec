//! Pooling: windowed max, average and Lp pools over the window walk, and
//! global pools as one vectorised reduction per plane.
//!
//! Every plane (`n`, `c`) is independent; the plane loop runs in parallel
//! when the work is large. Windowed pools vectorise along the output width
//! (lanes `stride` apart in the input) and never read padding: max ignores
//! it, average divides by the taps inside the input (or inside input and
//! pads with `count_include_pad`), as the interpreter does. MaxPool with
//! its Indices output walks one output at a time and tracks the flat
//! index of the first maximum (NaNs lose against any number).

use super::super::cx::NodeCx;
use super::super::{Unsupported, unsupported};
use super::window::{self, Body, Out, Tap};
use super::{PARALLEL_MIN, lowest, plane_loop};
use saturn_ir::kernel::{BinOp, BufId, Expr, ReduceOp, Ty, UnOp, VarId};
use saturn_ir::ops::{AxisWindow, Windowed};
use saturn_ir::tensor::strides;
use saturn_ir::{AttrValue, DType, Op};

/// The geometry of a windowed pool over input 0.
fn pool_axes(cx: &NodeCx, op: &dyn Windowed) -> Result<Vec<AxisWindow>, Unsupported> {
    let a = op.window_attrs();
    let kernel = a.kernel_shape.unwrap_or_default();
    let xs = cx.in_shape(0);
    if xs.len() < 3 || xs.len() != kernel.len() + 2 {
        return unsupported(format!(
            "pool of a rank-{} input with a {}-D window",
            xs.len(),
            kernel.len()
        ));
    }
    let axes = a
        .window(kernel)
        .and_then(|w| w.axes(&xs[2..]))
        .map_err(|e| Unsupported(format!("pool window: {e}")))?;
    let mut want = xs[..2].to_vec();
    want.extend(axes.iter().map(|a| a.output));
    if want != cx.out_shape(0) {
        return unsupported("pool output shape disagrees with its window");
    }
    Ok(axes)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Max,
    Avg { include_pad: bool },
    Lp(i64),
}

pub(super) fn lower(cx: &mut NodeCx, op: &Op) -> Result<(), Unsupported> {
    let (axes, kind, storage_order) = match op {
        Op::MaxPool(o) => (pool_axes(cx, o)?, Kind::Max, o.storage_order),
        Op::AveragePool(o) => (
            pool_axes(cx, o)?,
            Kind::Avg {
                include_pad: o.count_include_pad,
            },
            0,
        ),
        Op::LpPool(o) => {
            if o.p < 1 {
                return unsupported(format!("LpPool with p = {}", o.p));
            }
            (pool_axes(cx, o)?, Kind::Lp(o.p), 0)
        }
        _ => return unsupported("not a windowed pool"),
    };
    let dt = cx.in_dtype(0);
    if kind != Kind::Max && !dt.is_float() {
        return unsupported(format!("{} on {dt}", op.name()));
    }
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("pool without input".into()))?;
    let xs = cx.in_shape(0);
    let (n, c) = (xs[0], xs[1]);
    let in_plane: usize = xs[2..].iter().product();
    let out_plane: usize = axes.iter().map(|a| a.output).product();
    if n * c * out_plane == 0 {
        return Ok(());
    }
    let with_indices = kind == Kind::Max && cx.node().outputs.len() > 1;
    if with_indices && !matches!(storage_order, 0 | 1) {
        return unsupported(format!("storage_order {storage_order}"));
    }
    let taps: usize = axes.iter().map(|a| a.kernel.min(a.input.max(1))).product();
    let lanes = if with_indices { 1 } else { cx.lanes(dt) };
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let parallel = n * c >= 2 && n * c * out_plane * taps.max(1) >= PARALLEL_MIN;
    let (pn, pc) = plane_loop(cx, n, c, parallel);
    let p = cx.b.let_("plane", pn.clone() * c as i64 + pc.clone());
    let base = cx.b.let_("xbase", p.clone() * in_plane as i64);
    let spatial: Vec<usize> = axes.iter().map(|a| a.input).collect();
    let index_strides: Vec<i64> = if storage_order == 1 {
        // Column-major over the spatial axes.
        let mut s = vec![0i64; spatial.len()];
        let mut acc = 1i64;
        for (a, &d) in spatial.iter().enumerate() {
            s[a] = acc;
            acc *= d as i64;
        }
        s
    } else {
        strides(&spatial).iter().map(|&s| s as i64).collect()
    };
    let mut body = PoolBody {
        kind,
        x,
        base: base.clone(),
        dt,
        acc: None,
        all_nan: None,
        best_index: None,
        indices: with_indices.then(|| (cx.out_buf(1), index_strides, base, out_plane)),
        plane: p,
        empty: axes.iter().any(window::has_empty),
        view: [n, c, out_plane],
        nc: (pn, pc),
    };
    window::walk(cx, &axes, lanes, &mut body)?;
    cx.b.end_for();
    Ok(())
}

struct PoolBody {
    kind: Kind,
    x: BufId,
    /// Offset of the plane in the input.
    base: Expr,
    dt: DType,
    acc: Option<VarId>,
    /// Float max without indices: lanes whose taps so far were all NaN.
    all_nan: Option<VarId>,
    best_index: Option<VarId>,
    /// The Indices output: its buffer, the index strides of the spatial
    /// axes, the plane's offset in the input, and the output plane size.
    indices: Option<(BufId, Vec<i64>, Expr, usize)>,
    plane: Expr,
    /// Whether some window may hold no tap inside the input.
    empty: bool,
    view: [usize; 3],
    nc: (Expr, Expr),
}

fn konst(v: f64, ty: Ty) -> Expr {
    Expr::constant(v, ty)
}

impl PoolBody {
    fn lp_term(&self, cx: &mut NodeCx, x: Expr, p: i64) -> Expr {
        let ty = cx.b.ty(&x);
        match p {
            1 => Expr::un(UnOp::Abs, x),
            2 => {
                let x = cx.b.let_("x", x);
                Expr::bin(BinOp::Mul, x.clone(), x)
            }
            _ => pow(Expr::un(UnOp::Abs, x), konst(p as f64, ty), ty),
        }
    }
}

/// `x^y` through libm, lane by lane.
pub(super) fn pow(x: Expr, y: Expr, ty: Ty) -> Expr {
    let name = if ty.elem == DType::F64 { "pow" } else { "powf" };
    Expr::Call(name.into(), vec![x, y], ty)
}

/// The p-th root of a sum of p-th powers.
pub(super) fn lp_root(s: Expr, p: i64, ty: Ty) -> Expr {
    match p {
        1 => s,
        2 => Expr::un(UnOp::Sqrt, s),
        _ => pow(s, konst(1.0 / p as f64, ty), ty),
    }
}

impl Body for PoolBody {
    fn begin(&mut self, cx: &mut NodeCx, lanes: u16) -> Result<(), Unsupported> {
        let ty = Ty::vector(self.dt, lanes);
        let fl = self.dt.is_float();
        let init = match self.kind {
            // With indices, NaN for floats: any number replaces it, and a
            // window of NaNs stays NaN.
            Kind::Max if fl && self.indices.is_some() => Expr::Float(f64::NAN, ty),
            Kind::Max => lowest(self.dt).splat(lanes),
            _ => konst(0.0, ty),
        };
        self.acc = Some(cx.b.decl("acc", init));
        if self.kind == Kind::Max && fl && self.indices.is_none() {
            let all = Expr::Int(1, Ty::vector(DType::Bool, lanes));
            self.all_nan = Some(cx.b.decl("all_nan", all));
        }
        if self.indices.is_some() {
            self.best_index = Some(cx.b.decl("best", Expr::idx(-1)));
        }
        Ok(())
    }

    fn tap(&mut self, cx: &mut NodeCx, t: &Tap) -> Result<(), Unsupported> {
        let acc = self.acc.expect("begin");
        let at = self.base.clone() + t.off.clone();
        let x = if t.lanes == 1 {
            Expr::load(self.x, at)
        } else {
            Expr::load_vec(self.x, at, t.lanes, t.stride, t.mask.clone())
        };
        let x = cx.b.let_("x", x);
        let best = Expr::Var(acc);
        let fl = self.dt.is_float();
        match self.kind {
            Kind::Max => {
                if let (Some(bi), Some((_, st, pbase, _))) = (self.best_index, &self.indices) {
                    // The interpreter keeps the first maximum; a NaN only
                    // wins when nothing was seen.
                    let mut idx = pbase.clone();
                    for (p, s) in t.pos.iter().zip(st) {
                        idx = idx + p.clone() * *s;
                    }
                    let first = Expr::bin(BinOp::Lt, Expr::Var(bi), Expr::idx(0));
                    let better = if fl {
                        let x_num = Expr::bin(BinOp::Eq, x.clone(), x.clone());
                        let b_nan = Expr::bin(BinOp::Ne, best.clone(), best.clone());
                        let gt = Expr::bin(BinOp::Gt, x.clone(), best.clone());
                        Expr::bin(BinOp::And, x_num, Expr::bin(BinOp::Or, b_nan, gt))
                    } else {
                        Expr::bin(BinOp::Gt, x.clone(), best.clone())
                    };
                    let take = cx.b.let_("take", Expr::bin(BinOp::Or, first, better));
                    cx.b.assign(acc, Expr::select(take.clone(), x, best));
                    cx.b.assign(bi, Expr::select(take, idx, Expr::Var(bi)));
                } else if let Some(all_nan) = self.all_nan {
                    // From -inf, a NaN never replaces the maximum (`x > acc`
                    // is false: one `maxps`); the lanes whose taps were all
                    // NaN are tracked apart (one masked compare) and get a
                    // NaN at the end.
                    let gt = Expr::bin(BinOp::Gt, x.clone(), best.clone());
                    cx.b.assign(acc, Expr::select(gt, x.clone(), best));
                    let nan = Expr::bin(BinOp::Ne, x.clone(), x);
                    cx.b.assign(all_nan, Expr::bin(BinOp::And, Expr::Var(all_nan), nan));
                } else {
                    cx.b.assign(acc, Expr::bin(BinOp::Max, best, x));
                }
            }
            Kind::Avg { .. } => cx.b.assign(acc, Expr::bin(BinOp::Add, best, x)),
            Kind::Lp(p) => {
                let term = self.lp_term(cx, x, p);
                cx.b.assign(acc, Expr::bin(BinOp::Add, best, term));
            }
        }
        Ok(())
    }

    fn end(&mut self, cx: &mut NodeCx, o: &Out) -> Result<(), Unsupported> {
        let acc = Expr::Var(self.acc.expect("begin"));
        let ty = Ty::vector(self.dt, o.lanes);
        let zero = konst(0.0, ty);
        let v = match self.kind {
            Kind::Max => {
                if let (Some(bi), Some((buf, _, _, out_plane))) = (self.best_index, &self.indices) {
                    let at = self.plane.clone() * *out_plane as i64 + o.l.clone();
                    cx.b.store(*buf, at, Expr::Var(bi));
                    let found = Expr::bin(BinOp::Ge, Expr::Var(bi), Expr::idx(0));
                    Expr::select(found, acc, zero)
                } else {
                    let acc = match self.all_nan {
                        Some(n) => Expr::select(Expr::Var(n), konst(f64::NAN, ty), acc),
                        None => acc,
                    };
                    if self.empty {
                        let some = Expr::bin(BinOp::Gt, o.count.clone(), Expr::idx(0));
                        Expr::select(some.splat(o.lanes), acc, zero)
                    } else {
                        acc
                    }
                }
            }
            Kind::Avg { include_pad } => {
                let n = if include_pad {
                    o.padded.clone()
                } else {
                    o.count.clone()
                };
                let n = n.cast(self.dt).splat(o.lanes);
                Expr::bin(BinOp::Div, acc, n)
            }
            Kind::Lp(p) => lp_root(acc, p, ty),
        };
        let idx = [self.nc.0.clone(), self.nc.1.clone(), o.l.clone()];
        cx.store_out_view(&self.view, &idx, v, o.mask.clone())
    }
}

/// GlobalAveragePool, GlobalMaxPool, GlobalLpPool: a reduction of each
/// plane, in vectors along the plane then across the lanes.
pub(super) fn lower_global(cx: &mut NodeCx, op: &Op) -> Result<(), Unsupported> {
    let kind = match op {
        Op::GlobalAveragePool(_) => Kind::Avg { include_pad: false },
        Op::GlobalMaxPool(_) => Kind::Max,
        Op::GlobalLpPool(o) => {
            if o.p < 1 {
                return unsupported(format!("GlobalLpPool with p = {}", o.p));
            }
            Kind::Lp(o.p)
        }
        _ => return unsupported("not a global pool"),
    };
    let dt = cx.in_dtype(0);
    if kind != Kind::Max && !dt.is_float() {
        return unsupported(format!("{} on {dt}", op.name()));
    }
    let xs = cx.in_shape(0);
    if xs.len() < 3 {
        return unsupported(format!("global pool of a rank-{} input", xs.len()));
    }
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("pool without input".into()))?;
    let (n, c) = (xs[0], xs[1]);
    let plane: usize = xs[2..].iter().product();
    if n * c == 0 {
        return Ok(());
    }
    if plane == 0 && kind == Kind::Max {
        return unsupported("global max pool of an empty plane");
    }
    let lanes = cx.lanes(dt);
    let l = lanes as usize;
    let full = plane / l * l;
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let parallel = n * c >= 2 && n * c * plane >= PARALLEL_MIN;
    let (pn, pc) = plane_loop(cx, n, c, parallel);
    let base =
        cx.b.let_("xbase", (pn.clone() * c as i64 + pc.clone()) * plane as i64);
    let (vop, rop) = match kind {
        Kind::Max => (BinOp::Max, ReduceOp::Max),
        _ => (BinOp::Add, ReduceOp::Add),
    };
    let init = |ty: Ty| match kind {
        Kind::Max if dt.is_float() => Expr::Float(f64::NEG_INFINITY, ty),
        Kind::Max => lowest(dt).splat(ty.lanes),
        _ => konst(0.0, ty),
    };
    let term = |cx: &mut NodeCx, x: Expr| -> Expr {
        match kind {
            Kind::Lp(p) => {
                let ty = cx.b.ty(&x);
                match p {
                    1 => Expr::un(UnOp::Abs, x),
                    2 => {
                        let x = cx.b.let_("x", x);
                        Expr::bin(BinOp::Mul, x.clone(), x)
                    }
                    _ => pow(Expr::un(UnOp::Abs, x), konst(p as f64, ty), ty),
                }
            }
            _ => x,
        }
    };
    let s = if full > 0 && lanes > 1 {
        // Two accumulators hide the latency of the adds on long planes.
        let parts = if full >= 8 * l && full.is_multiple_of(2 * l) {
            2
        } else {
            1
        };
        let vty = Ty::vector(dt, lanes);
        let accs: Vec<VarId> = (0..parts)
            .map(|i| cx.b.decl(&format!("acc{i}"), init(vty)))
            .collect();
        let i = cx.b.begin_for(
            "i",
            0,
            full,
            (parts * l) as i64,
            saturn_ir::kernel::LoopKind::Serial,
        );
        for (k, acc) in accs.iter().enumerate() {
            let v = Expr::load_vec(x, base.clone() + i.clone() + (k * l) as i64, lanes, 1, None);
            let v = term(cx, v);
            cx.b.assign(*acc, Expr::bin(vop, Expr::Var(*acc), v));
        }
        cx.b.end_for();
        let mut all = Expr::Var(accs[0]);
        for acc in &accs[1..] {
            all = Expr::bin(vop, all, Expr::Var(*acc));
        }
        cx.b.decl("s", Expr::Reduce(rop, Box::new(all)))
    } else {
        cx.b.decl("s", init(Ty::scalar(dt)))
    };
    let start = if lanes > 1 { full } else { 0 };
    if start < plane {
        let i =
            cx.b.begin_for("t", start, plane, 1, saturn_ir::kernel::LoopKind::Serial);
        let v = term(cx, Expr::load(x, base.clone() + i));
        cx.b.assign(s, Expr::bin(vop, Expr::Var(s), v));
        cx.b.end_for();
    }
    let ty = Ty::scalar(dt);
    let v = match kind {
        Kind::Max => Expr::Var(s),
        Kind::Avg { .. } => Expr::bin(BinOp::Div, Expr::Var(s), konst(plane as f64, ty)),
        Kind::Lp(p) => lp_root(Expr::Var(s), p, ty),
    };
    cx.store_out_view(&[n, c], &[pn, pc], v, None)?;
    cx.b.end_for();
    Ok(())
}
