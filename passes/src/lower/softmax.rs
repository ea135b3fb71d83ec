//! Softmax, LogSoftmax and Hardmax along an axis.
//!
//! Each row (one lane along the axis) is a [`Nest`] row whose only reduced
//! group is the axis: vectors run along it when it is the contiguous
//! innermost dim (vector accumulators, merged at the end of the row, the
//! masked tail filled with -inf), or across the contiguous dims after it
//! (each lane its own row); otherwise the axis is walked strided, one
//! element at a time. Rows run in parallel when the input is large.
//!
//! Saturn's Softmax takes `scale` and an additive mask broadcast onto the
//! input (the logits are `x · scale + mask`) and one of three algorithms,
//! which emit different loops:
//! - `three_pass`: the max, the sum of `exp(z - max)`, then
//!   `exp(z - max) / sum` (re-reading x);
//! - `two_pass` (Dukhan & Ablavatski): no max pass; pass 1 splits each
//!   `exp(z)` into `p · 2^n` ([`math::exp_parts`]) and accumulates the sum
//!   as a (mantissa `m`, exponent `e`) pair rescaled to the larger exponent
//!   (`e' = max(e, n)`, `m' = m·2^(e-e') + p·2^(n-e')`), each vector lane
//!   its own pair, merged at the end; pass 2 writes `p · (1/m) · 2^(n-e)`;
//! - `online` (Milakov & Gimelshein): one pass keeps the running max and
//!   the running sum rescaled by `exp(old max - new max)`, then the write
//!   pass.

use super::cx::NodeCx;
use super::elementwise::broadcast_strides;
use super::reduce::{At, Lanes, Nest, Row, epilogue_operands, large, libm, norm_axis, row_major};
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::{BinOp, BufId, Expr, ReduceOp, Ty, math};
use saturn_ir::ops::SoftmaxAlgorithm;
use saturn_ir::{AttrValue, DType, Op};

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Option<Result<(), Unsupported>> {
    let op = cx.g.node(node).op.clone();
    Some(match &op {
        Op::Softmax(o) => softmax(cx, o.axis, o.scale as f64, o.algorithm),
        Op::LogSoftmax(o) => log_softmax(cx, o.axis),
        Op::Hardmax(o) => hardmax(cx, o.axis),
        _ => return None,
    })
}

/// The rows of a softmax-like op: the nest along `axis`, the input and
/// the mask (operand 1 of the nest).
struct Rows {
    nest: Nest,
    x: BufId,
    mask: Option<BufId>,
    dt: DType,
    parallel: bool,
}

/// Sets up the rows, or `None` when the input is empty.
fn rows(
    cx: &mut NodeCx,
    axis: i64,
    with_mask: bool,
    along: bool,
) -> Result<Option<Rows>, Unsupported> {
    let shape = cx.in_shape(0);
    let dt = cx.in_dtype(0);
    if !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("softmax of {dt}"));
    }
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("missing input".into()))?;
    let a = norm_axis(axis, shape.len())?;
    let mut operands = vec![row_major(&shape)];
    let mask = match (with_mask, cx.input(1)) {
        (true, Some(m)) => {
            let ms = cx.in_shape(1);
            let fits = ms.len() <= shape.len()
                && ms
                    .iter()
                    .rev()
                    .zip(shape.iter().rev())
                    .all(|(&i, &o)| i == 1 || i == o);
            if !fits {
                return unsupported("a softmax mask that does not broadcast onto the input");
            }
            if cx.in_dtype(1) != dt {
                return unsupported("a softmax mask of another dtype");
            }
            operands.push(broadcast_strides(&ms, &shape));
            Some(m)
        }
        _ => None,
    };
    if shape.contains(&0) {
        return Ok(None);
    }
    let reduced: Vec<bool> = (0..shape.len()).map(|d| d == a).collect();
    operands.extend(epilogue_operands(cx, shape.len(), &|d| Some(d)));
    let nest = Nest::new(cx, &shape, &reduced, &operands, dt, along, true);
    nest.record(cx);
    let parallel = large(&shape) && !nest.kept_ext().is_empty();
    Ok(Some(Rows {
        nest,
        x,
        mask,
        dt,
        parallel,
    }))
}

impl Rows {
    /// The logits `x · scale + mask` at `at`; in a tail along the axis
    /// the inactive lanes are -inf (they add nothing to any sum).
    fn z(&self, cx: &mut NodeCx, at: &At, scale: f64, fill: bool) -> Expr {
        let vt = self.nest.vty(self.dt);
        let mut z = self.nest.load(&at.idx, at.mask.clone(), 0, self.x);
        if scale != 1.0 {
            z = Expr::bin(BinOp::Mul, z, Expr::constant(scale, vt));
        }
        if let Some(m) = self.mask {
            z = Expr::bin(
                BinOp::Add,
                z,
                self.nest.load(&at.idx, at.mask.clone(), 1, m),
            );
        }
        let z = cx.b.let_("z", z);
        if fill {
            let ninf = Expr::constant(f64::NEG_INFINITY, Ty::scalar(self.dt));
            self.nest.fill(at, z, ninf)
        } else {
            z
        }
    }

    fn c(&self, v: f64, lanes: bool) -> Expr {
        let ty = if lanes {
            self.nest.vty(self.dt)
        } else {
            Ty::scalar(self.dt)
        };
        Expr::constant(v, ty)
    }
}

fn softmax(
    cx: &mut NodeCx,
    axis: i64,
    scale: f64,
    alg: SoftmaxAlgorithm,
) -> Result<(), Unsupported> {
    let name = match alg {
        SoftmaxAlgorithm::ThreePass => "three_pass",
        SoftmaxAlgorithm::TwoPass => "two_pass",
        SoftmaxAlgorithm::Online => "online",
    };
    cx.schedule("algorithm", AttrValue::Str(name.into()));
    let Some(r) = rows(cx, axis, true, true)? else {
        return Ok(());
    };
    let nest = &r.nest;
    nest.rows(cx, r.parallel, &mut |cx, row| match alg {
        SoftmaxAlgorithm::ThreePass => three_pass(cx, &r, row, scale),
        SoftmaxAlgorithm::TwoPass => two_pass(cx, &r, row, scale),
        SoftmaxAlgorithm::Online => online(cx, &r, row, scale),
    })
}

/// The largest logit of the row.
fn row_max(cx: &mut NodeCx, r: &Rows, row: &Row, scale: f64) -> Result<Expr, Unsupported> {
    let nest = &r.nest;
    let init = r.c(f64::NEG_INFINITY, true);
    let m = nest.accumulate(cx, row, "max", init, BinOp::Max, &mut |cx, at, acc| {
        let z = r.z(cx, at, scale, true);
        Ok(Expr::bin(BinOp::Max, acc, z))
    })?;
    Ok(cx.b.let_("rowmax", nest.hreduce(ReduceOp::Max, m)))
}

/// The row's max, then the sum of `exp(z - max)`, then the quotients.
fn three_pass(cx: &mut NodeCx, r: &Rows, row: &Row, scale: f64) -> Result<(), Unsupported> {
    let nest = &r.nest;
    let mx = row_max(cx, r, row, scale)?;
    let s = nest.accumulate_in(
        cx,
        row,
        "sum",
        r.c(0.0, true),
        BinOp::Add,
        nest.unroll_heavy(),
        &mut |cx, at, acc| {
            let z = r.z(cx, at, scale, true);
            let e = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, z, nest.bcast(mx.clone())));
            Ok(Expr::bin(BinOp::Add, acc, e))
        },
    )?;
    let sum = nest.hreduce(ReduceOp::Add, s);
    let rt = cx.b.ty(&sum);
    let inv =
        cx.b.let_("inv", Expr::bin(BinOp::Div, Expr::constant(1.0, rt), sum));
    nest.walk(cx, row, "j", 1, &mut |cx, at| {
        let z = r.z(cx, at, scale, false);
        let e = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, z, nest.bcast(mx.clone())));
        let y = Expr::bin(BinOp::Mul, e, nest.bcast(inv.clone()));
        nest.store(cx, at, y)
    })
}

/// Dukhan & Ablavatski: the sum as a (mantissa, exponent) pair, no max.
/// Long rows keep several pairs (independent chains), merged after.
fn two_pass(cx: &mut NodeCx, r: &Rows, row: &Row, scale: f64) -> Result<(), Unsupported> {
    let nest = &r.nest;
    let ldexp = cx.target.has_ldexp;
    let u = nest.unroll_heavy();
    if u > 1 {
        cx.schedule("unroll", AttrValue::Int(u as i64));
    }
    let pairs: Vec<(saturn_ir::kernel::VarId, saturn_ir::kernel::VarId)> = (0..u)
        .map(|p| {
            (
                cx.b.decl(&format!("m{p}"), r.c(0.0, true)),
                // Finite: `ldexp` of a NaN sum by 2^-inf would give +0.
                cx.b.decl(&format!("e{p}"), r.c(math::exp_parts_floor(r.dt), true)),
            )
        })
        .collect();
    nest.walk(cx, row, "j", u, &mut |cx, at| {
        let (m, e) = pairs[at.part];
        let z = r.z(cx, at, scale, true);
        let (p, n) = math::exp_parts(&mut cx.b, &z);
        // m' = m·2^(e-e') + p·2^(n-e') with e' = max(e, n), a select on
        // `n > e` (a NaN `n` leaves `e`; its NaN `p` reaches `m`).
        let gt =
            cx.b.let_("gt", Expr::bin(BinOp::Gt, n.clone(), Expr::Var(e)));
        let en =
            cx.b.let_("en", Expr::select(gt.clone(), n.clone(), Expr::Var(e)));
        let sum = if ldexp {
            // Two scale instructions beat the selects below.
            let dm = Expr::bin(BinOp::Sub, Expr::Var(e), en.clone());
            let dp = Expr::bin(BinOp::Sub, n, en.clone());
            Expr::bin(
                BinOp::Add,
                Expr::bin(BinOp::Ldexp, Expr::Var(m), dm),
                Expr::bin(BinOp::Ldexp, p, dp),
            )
        } else {
            // One of the factors is 2^0, so only the smaller term is
            // scaled, by 2^-|n - e|.
            let small = Expr::select(gt.clone(), Expr::Var(m), p.clone());
            let big = Expr::select(gt.clone(), p, Expr::Var(m));
            let d = Expr::select(
                gt,
                Expr::bin(BinOp::Sub, Expr::Var(e), n.clone()),
                Expr::bin(BinOp::Sub, n, Expr::Var(e)),
            );
            let d = cx.b.let_("d", d);
            let scaled = math::scale_exp2(&mut cx.b, small, &d, false);
            Expr::bin(BinOp::Add, big, scaled)
        };
        cx.b.assign(m, sum);
        cx.b.assign(e, en);
        Ok(())
    })?;
    // The pairs rescaled to their largest exponent.
    let (m, e) = pairs[0];
    for &(mp, ep) in &pairs[1..] {
        let en =
            cx.b.let_("en", Expr::bin(BinOp::Max, Expr::Var(e), Expr::Var(ep)));
        let d0 =
            cx.b.let_("d0", Expr::bin(BinOp::Sub, Expr::Var(e), en.clone()));
        let d1 =
            cx.b.let_("d1", Expr::bin(BinOp::Sub, Expr::Var(ep), en.clone()));
        let a = math::scale_exp2(&mut cx.b, Expr::Var(m), &d0, ldexp);
        let b = math::scale_exp2(&mut cx.b, Expr::Var(mp), &d1, ldexp);
        cx.b.assign(m, Expr::bin(BinOp::Add, a, b));
        cx.b.assign(e, en);
    }
    // Each lane's pair, rescaled to the largest exponent of the row.
    let (sum, ex) = if nest.mode == Lanes::Along {
        let ex =
            cx.b.let_("rowe", Expr::Reduce(ReduceOp::Max, Box::new(Expr::Var(e))));
        let d = Expr::bin(BinOp::Sub, Expr::Var(e), ex.clone().splat(nest.lanes()));
        let d = cx.b.let_("d", d);
        let ms = math::scale_exp2(&mut cx.b, Expr::Var(m), &d, ldexp);
        (Expr::Reduce(ReduceOp::Add, Box::new(ms)), ex)
    } else {
        (Expr::Var(m), Expr::Var(e))
    };
    let ex = cx.b.let_("rowe", ex);
    let rt = cx.b.ty(&sum);
    let inv =
        cx.b.let_("inv", Expr::bin(BinOp::Div, Expr::constant(1.0, rt), sum));
    nest.walk(cx, row, "j", 1, &mut |cx, at| {
        let z = r.z(cx, at, scale, false);
        let (p, n) = math::exp_parts(&mut cx.b, &z);
        let d =
            cx.b.let_("d", Expr::bin(BinOp::Sub, n, nest.bcast(ex.clone())));
        // Scaled before the NaN of a row with NaN or +inf in it comes in
        // through `inv` (`ldexp` of a NaN by 2^-inf would give +0).
        let e = math::scale_exp2(&mut cx.b, p, &d, ldexp);
        let y = Expr::bin(BinOp::Mul, e, nest.bcast(inv.clone()));
        nest.store(cx, at, y)
    })
}

/// `v`, or 0 where it is -inf (so that `-inf - -inf` never appears).
fn shift_of(v: Expr, ty: Ty) -> Expr {
    Expr::select(
        Expr::bin(BinOp::Eq, v.clone(), Expr::constant(f64::NEG_INFINITY, ty)),
        Expr::constant(0.0, ty),
        v,
    )
}

/// Milakov & Gimelshein: running max and rescaled running sum.
fn online(cx: &mut NodeCx, r: &Rows, row: &Row, scale: f64) -> Result<(), Unsupported> {
    let nest = &r.nest;
    let vt = nest.vty(r.dt);
    let u = nest.unroll_heavy();
    if u > 1 {
        cx.schedule("unroll", AttrValue::Int(u as i64));
    }
    let pairs: Vec<(saturn_ir::kernel::VarId, saturn_ir::kernel::VarId)> = (0..u)
        .map(|p| {
            (
                cx.b.decl(&format!("max{p}"), r.c(f64::NEG_INFINITY, true)),
                cx.b.decl(&format!("sum{p}"), r.c(0.0, true)),
            )
        })
        .collect();
    nest.walk(cx, row, "j", u, &mut |cx, at| {
        let (m, d) = pairs[at.part];
        let z = r.z(cx, at, scale, true);
        let mn =
            cx.b.let_("mn", Expr::bin(BinOp::Max, Expr::Var(m), z.clone()));
        let sh = cx.b.let_("sh", shift_of(mn.clone(), vt));
        let rescale = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, Expr::Var(m), sh.clone()));
        let ez = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, z, sh));
        cx.b.assign(d, Expr::mul_add(Expr::Var(d), rescale, ez));
        cx.b.assign(m, mn);
        Ok(())
    })?;
    // The pairs rescaled to their largest max.
    let (m, d) = pairs[0];
    for &(mp, dp) in &pairs[1..] {
        let mn =
            cx.b.let_("mn", Expr::bin(BinOp::Max, Expr::Var(m), Expr::Var(mp)));
        let sh = cx.b.let_("sh", shift_of(mn.clone(), vt));
        let a = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, Expr::Var(m), sh.clone()));
        let b = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, Expr::Var(mp), sh));
        let sum = Expr::bin(
            BinOp::Add,
            Expr::bin(BinOp::Mul, Expr::Var(d), a),
            Expr::bin(BinOp::Mul, Expr::Var(dp), b),
        );
        cx.b.assign(d, sum);
        cx.b.assign(m, mn);
    }
    let (mx, sum) = if nest.mode == Lanes::Along {
        let mx = cx.b.let_(
            "rowmax",
            Expr::Reduce(ReduceOp::Max, Box::new(Expr::Var(m))),
        );
        let sh = cx.b.let_("rowsh", shift_of(mx.clone(), Ty::scalar(r.dt)));
        let rescale = math::exp(
            &mut cx.b,
            Expr::bin(BinOp::Sub, Expr::Var(m), sh.splat(nest.lanes())),
        );
        let ds = Expr::bin(BinOp::Mul, Expr::Var(d), rescale);
        (mx, Expr::Reduce(ReduceOp::Add, Box::new(ds)))
    } else {
        (Expr::Var(m), Expr::Var(d))
    };
    let mx = cx.b.let_("rowmax", mx);
    let rt = cx.b.ty(&sum);
    let inv =
        cx.b.let_("inv", Expr::bin(BinOp::Div, Expr::constant(1.0, rt), sum));
    nest.walk(cx, row, "j", 1, &mut |cx, at| {
        let z = r.z(cx, at, scale, false);
        let e = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, z, nest.bcast(mx.clone())));
        let y = Expr::bin(BinOp::Mul, e, nest.bcast(inv.clone()));
        nest.store(cx, at, y)
    })
}

/// `x - max - log(Σ exp(x - max))`.
fn log_softmax(cx: &mut NodeCx, axis: i64) -> Result<(), Unsupported> {
    let Some(r) = rows(cx, axis, false, true)? else {
        return Ok(());
    };
    let nest = &r.nest;
    nest.rows(cx, r.parallel, &mut |cx, row| {
        let mx = row_max(cx, &r, row, 1.0)?;
        let s = cx.b.decl("sum", r.c(0.0, true));
        nest.walk(cx, row, "j", 1, &mut |cx, at| {
            let z = r.z(cx, at, 1.0, true);
            let e = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, z, nest.bcast(mx.clone())));
            cx.b.assign(s, Expr::bin(BinOp::Add, Expr::Var(s), e));
            Ok(())
        })?;
        let sum = nest.hreduce(ReduceOp::Add, Expr::Var(s));
        let ls = cx.b.let_("logsum", libm(&cx.b, "logf", sum));
        nest.walk(cx, row, "j", 1, &mut |cx, at| {
            let z = r.z(cx, at, 1.0, false);
            let y = Expr::bin(BinOp::Sub, z, nest.bcast(mx.clone()));
            let y = Expr::bin(BinOp::Sub, y, nest.bcast(ls.clone()));
            nest.store(cx, at, y)
        })
    })
}

/// 1 at the first largest element of each row (NaN counts as largest),
/// 0 elsewhere. Vectors run across rows only.
fn hardmax(cx: &mut NodeCx, axis: i64) -> Result<(), Unsupported> {
    let Some(r) = rows(cx, axis, false, false)? else {
        return Ok(());
    };
    let nest = &r.nest;
    let it = if r.dt == DType::F32 && nest.mode != Lanes::Scalar {
        DType::I32
    } else {
        DType::I64
    };
    let g = nest.reduced_group();
    nest.rows(cx, r.parallel, &mut |cx, row| {
        let vt = nest.vty(r.dt);
        let ity = Ty::vector(it, nest.lanes());
        let best = cx.b.decl("best", Expr::constant(f64::NEG_INFINITY, vt));
        let bi = cx.b.decl("besti", Expr::Int(0, ity));
        let k_of = |at: &At| {
            let k = g.map_or(Expr::idx(0), |g| at.idx[g].clone());
            let k = if it == DType::I64 { k } else { k.cast(it) };
            k.splat(nest.lanes())
        };
        nest.walk(cx, row, "j", 1, &mut |cx, at| {
            let c = r.z(cx, at, 1.0, false);
            let b = Expr::Var(best);
            let nan = Expr::bin(
                BinOp::And,
                Expr::bin(BinOp::Ne, c.clone(), c.clone()),
                Expr::bin(BinOp::Eq, b.clone(), b.clone()),
            );
            let better = Expr::bin(BinOp::Or, Expr::bin(BinOp::Gt, c.clone(), b.clone()), nan);
            let better = cx.b.let_("better", better);
            cx.b.assign(best, Expr::select(better.clone(), c, b));
            cx.b.assign(bi, Expr::select(better, k_of(at), Expr::Var(bi)));
            Ok(())
        })?;
        nest.walk(cx, row, "j", 1, &mut |cx, at| {
            let hit = Expr::bin(BinOp::Eq, k_of(at), Expr::Var(bi));
            let y = Expr::select(hit, r.c(1.0, true), r.c(0.0, true));
            nest.store(cx, at, y)
        })
    })
}
