//! Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
//!
//! The input is `(N, C, d…)` (seen as `[N, C, D]`), the target `(N, d…)`
//! of class indices. SoftmaxCrossEntropyLoss first takes the log-softmax
//! over C: a [`Nest`] whose rows are the `(n, d)` positions, walking C
//! (vectors across D when it is long, along C when D is 1), which keeps
//! each row's max and log-sum in scratch memory and writes the
//! `log_prob` output when it is asked for. The loss itself is a scalar
//! loop over the `(n, d)` positions: `-logp[class] · weight[class]` (0 for
//! `ignore_index`), stored as it is (`none`) or summed (`sum`), or divided
//! by the total weight of the counted positions (`mean`). Class indices
//! out of range (which the interpreter refuses) are clamped so that no
//! access leaves its buffer.

use super::cx::NodeCx;
use super::reduce::{Nest, large, libm, row_major};
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, ReduceOp, Ty};
use saturn_ir::ops::LossReduction;
use saturn_ir::{AttrValue, DType, Op};

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Option<Result<(), Unsupported>> {
    let op = cx.g.node(node).op.clone();
    Some(match &op {
        Op::NegativeLogLikelihoodLoss(o) => loss(cx, o.ignore_index, o.reduction, false),
        Op::SoftmaxCrossEntropyLoss(o) => loss(cx, o.ignore_index, o.reduction, true),
        _ => return None,
    })
}

fn c(v: f64, ty: Ty) -> Expr {
    Expr::constant(v, ty)
}

fn loss(
    cx: &mut NodeCx,
    ignore: Option<i64>,
    reduction: LossReduction,
    softmax: bool,
) -> Result<(), Unsupported> {
    let shape = cx.in_shape(0);
    let dt = cx.in_dtype(0);
    if !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("a loss of {dt}"));
    }
    if shape.len() < 2 {
        return unsupported("a loss input of rank below 2");
    }
    let (n, ch) = (shape[0], shape[1]);
    let d: usize = shape[2..].iter().product();
    let mut want = vec![n];
    want.extend_from_slice(&shape[2..]);
    if cx.in_shape(1) != want || !cx.in_dtype(1).is_int() {
        return unsupported("a loss target that is not (N, d…) integers");
    }
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("missing input".into()))?;
    let target = cx
        .input(1)
        .ok_or_else(|| Unsupported("missing target".into()))?;
    let tdt = cx.in_dtype(1);
    let weight = match cx.input(2) {
        Some(w) => {
            if cx.in_shape(2) != [ch] || cx.in_dtype(2) != dt {
                return unsupported("a loss weight that is not [C] of the input's type");
            }
            Some(w)
        }
        None => None,
    };
    let n_out = cx.node().outputs.len();
    if n_out > 1 {
        cx.no_epilogue()?;
    }
    let out = cx.out_buf(0);
    let rows = n * d;
    if rows > 0 && ch == 0 {
        return unsupported("a loss over zero classes");
    }
    let ty = Ty::scalar(dt);
    // Log-softmax statistics per (n, d): max and log Σ exp(x - max).
    let stats = if softmax && rows > 0 {
        let view = [n, ch, d];
        let mx = cx.scratch("rowmax", dt, rows);
        let ls = cx.scratch("logsum", dt, rows);
        let log_prob = (n_out > 1).then(|| cx.out_buf(1));
        let nest = Nest::new(
            cx,
            &view,
            &[false, true, false],
            &[row_major(&view)],
            dt,
            true,
            true,
        );
        nest.record(cx);
        let parallel = large(&view) && !nest.kept_ext().is_empty();
        nest.rows(cx, parallel, &mut |cx, row| {
            let vt = nest.vty(dt);
            let m = cx.b.decl("max", c(f64::NEG_INFINITY, vt));
            nest.walk(cx, row, "j", 1, &mut |cx, at| {
                let v = nest.load(&at.idx, at.mask.clone(), 0, x);
                let v = nest.fill(at, v, c(f64::NEG_INFINITY, ty));
                cx.b.assign(m, Expr::bin(BinOp::Max, Expr::Var(m), v));
                Ok(())
            })?;
            let rm = cx.b.let_("rm", nest.hreduce(ReduceOp::Max, Expr::Var(m)));
            let s = cx.b.decl("sum", c(0.0, vt));
            nest.walk(cx, row, "j", 1, &mut |cx, at| {
                let v = nest.load(&at.idx, at.mask.clone(), 0, x);
                let v = nest.fill(at, v, c(f64::NEG_INFINITY, ty));
                let e = saturn_ir::kernel::math::exp(
                    &mut cx.b,
                    Expr::bin(BinOp::Sub, v, nest.bcast(rm.clone())),
                );
                cx.b.assign(s, Expr::bin(BinOp::Add, Expr::Var(s), e));
                Ok(())
            })?;
            let sum = nest.hreduce(ReduceOp::Add, Expr::Var(s));
            let l = cx.b.let_("ls", libm(&cx.b, "logf", sum));
            if let Some(lp) = log_prob {
                nest.walk(cx, row, "j", 1, &mut |cx, at| {
                    let v = nest.load(&at.idx, at.mask.clone(), 0, x);
                    let y = Expr::bin(BinOp::Sub, v, nest.bcast(rm.clone()));
                    let y = Expr::bin(BinOp::Sub, y, nest.bcast(l.clone()));
                    let at_flat = super::cx::flat_index(&nest.ext, &at.idx);
                    cx.b.store_vec(lp, at_flat, y, 1, at.mask.clone());
                    Ok(())
                })?;
            }
            nest.store_row(cx, row, mx, rm.clone());
            nest.store_row(cx, row, ls, l.clone());
            Ok(())
        })?;
        Some((mx, ls))
    } else {
        None
    };
    cx.schedule(
        "reduction",
        AttrValue::Str(
            match reduction {
                LossReduction::None => "none",
                LossReduction::Sum => "sum",
                LossReduction::Mean => "mean",
            }
            .into(),
        ),
    );
    let total = cx.b.decl("total", c(0.0, ty));
    let total_w = cx.b.decl("weight", c(0.0, ty));
    let i = cx.b.begin_for("n", 0, n, 1, LoopKind::Serial);
    let j = cx.b.begin_for("d", 0, d, 1, LoopKind::Serial);
    let pos = cx.b.let_("pos", i.clone() * d as i64 + j.clone());
    let class = Expr::load(target, pos.clone());
    let class = if tdt == DType::I64 {
        class
    } else {
        class.cast(DType::I64)
    };
    let class = cx.b.let_("class", class);
    let counted = match ignore {
        Some(ig) => Expr::bin(BinOp::Ne, class.clone(), Expr::idx(ig)),
        None => Expr::Int(1, Ty::BOOL),
    };
    let counted = cx.b.let_("counted", counted);
    let cl = cx.b.let_(
        "cl",
        class.max(Expr::idx(0)).min(Expr::idx(ch.max(1) as i64 - 1)),
    );
    let w = match weight {
        Some(wb) => Expr::load(wb, cl.clone()),
        None => c(1.0, ty),
    };
    let w = cx.b.let_("w", Expr::select(counted.clone(), w, c(0.0, ty)));
    let at = (i * ch as i64 + cl) * d as i64 + j;
    let logp = load_logp(x, at, stats, pos.clone());
    let l = Expr::bin(
        BinOp::Mul,
        Expr::un(saturn_ir::kernel::UnOp::Neg, logp),
        w.clone(),
    );
    let l = cx.b.let_("l", Expr::select(counted, l, c(0.0, ty)));
    match reduction {
        LossReduction::None => cx.b.store(out, pos, l),
        _ => {
            cx.b.assign(total, Expr::bin(BinOp::Add, Expr::Var(total), l));
            cx.b.assign(total_w, Expr::bin(BinOp::Add, Expr::Var(total_w), w));
        }
    }
    cx.b.end_for();
    cx.b.end_for();
    match reduction {
        LossReduction::None => {}
        LossReduction::Sum => cx.b.store(out, Expr::idx(0), Expr::Var(total)),
        LossReduction::Mean => cx.b.store(
            out,
            Expr::idx(0),
            Expr::bin(BinOp::Div, Expr::Var(total), Expr::Var(total_w)),
        ),
    }
    Ok(())
}

/// `logp` at flat input index `at`: the input itself (NLL), or
/// `x - max - log Σ` of its row (softmax cross-entropy).
fn load_logp(x: BufId, at: Expr, stats: Option<(BufId, BufId)>, row: Expr) -> Expr {
    let v = Expr::load(x, at);
    match stats {
        Some((mx, ls)) => Expr::bin(
            BinOp::Sub,
            Expr::bin(BinOp::Sub, v, Expr::load(mx, row.clone())),
            Expr::load(ls, row),
        ),
        None => v,
    }
}
