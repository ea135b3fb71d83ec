//! Normalizations: batch (inference and training form), layer, RMS,
//! instance, group, Lp and mean-variance normalization.
//!
//! Each is a [`Nest`] over the input whose reduced dims are the ones its
//! statistics run over (the normalized dims of a layer norm, the spatial
//! dims of an instance, the group of channels and the spatial dims of a
//! group norm, …): every row computes its mean and variance in two passes
//! (`Σx`, then `Σ(x - mean)²`, as the interpreter does) and writes
//! `(x - mean) · inv · scale + bias` in a third, with per-row factors
//! folded where the parameters are per row. Vectors run along the
//! contiguous normalized dims (or across rows when those are trivial);
//! rows run in parallel when the input is large. Scale and bias are
//! operands of the nest, broadcast by strides.

use super::cx::NodeCx;
use super::elementwise::broadcast_strides;
use super::reduce::{Nest, Row, epilogue_operands, large, norm_axis, row_major};
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, ReduceOp, Ty, UnOp};
use saturn_ir::{DType, Op};

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Option<Result<(), Unsupported>> {
    let op = cx.g.node(node).op.clone();
    Some(match &op {
        Op::BatchNormalization(o) => {
            batch_norm(cx, o.epsilon as f64, o.momentum as f64, o.training_mode)
        }
        Op::LayerNormalization(o) => layer_norm(cx, o.axis, o.epsilon as f64, false),
        Op::RMSNormalization(o) => layer_norm(cx, o.axis, o.epsilon as f64, true),
        Op::InstanceNormalization(o) => instance_norm(cx, o.epsilon as f64),
        Op::GroupNormalization(o) => group_norm(cx, o.num_groups, o.epsilon as f64),
        Op::LpNormalization(o) => lp_norm(cx, o.axis, o.p),
        Op::MeanVarianceNormalization(o) => mvn(cx, &o.axes),
        _ => return None,
    })
}

/// The float input 0: its buffer, shape and dtype.
fn input(cx: &NodeCx) -> Result<(BufId, Vec<usize>, DType), Unsupported> {
    let dt = cx.in_dtype(0);
    if !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("normalization of {dt}"));
    }
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("missing input".into()))?;
    Ok((x, cx.in_shape(0), dt))
}

/// A parameter broadcast onto `shape`: its buffer and strides.
fn broadcast_param(
    cx: &NodeCx,
    i: usize,
    shape: &[usize],
    name: &str,
) -> Result<(BufId, Vec<i64>), Unsupported> {
    let b = cx
        .input(i)
        .ok_or_else(|| Unsupported(format!("missing {name}")))?;
    let ps = cx.in_shape(i);
    let fits = ps.len() <= shape.len()
        && ps
            .iter()
            .rev()
            .zip(shape.iter().rev())
            .all(|(&p, &s)| p == 1 || p == s);
    if !fits || !cx.in_dtype(i).is_float() {
        return unsupported(format!("{name} that does not broadcast onto the input"));
    }
    Ok((b, broadcast_strides(&ps, shape)))
}

/// A per-channel parameter of `c` floats.
fn channel_param(
    cx: &NodeCx,
    i: usize,
    c: usize,
    name: &str,
) -> Result<(BufId, DType), Unsupported> {
    let b = cx
        .input(i)
        .ok_or_else(|| Unsupported(format!("missing {name}")))?;
    let n: usize = cx.in_shape(i).iter().product();
    let dt = cx.in_dtype(i);
    if n != c || cx.in_shape(i).len() > 1 || !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("{name} that is not {c} floats"));
    }
    Ok((b, dt))
}

fn c(v: f64, ty: Ty) -> Expr {
    Expr::constant(v, ty)
}

fn as_dt(v: Expr, from: DType, to: DType) -> Expr {
    if from == to { v } else { v.cast(to) }
}

/// The nest of `shape` with `reduced` dims, recorded in the schedule.
fn nest(
    cx: &mut NodeCx,
    shape: &[usize],
    reduced: &[bool],
    operands: &[Vec<i64>],
    dt: DType,
) -> (Nest, bool) {
    let mut operands = operands.to_vec();
    operands.extend(epilogue_operands(cx, shape.len(), &|d| Some(d)));
    let n = Nest::new(cx, shape, reduced, &operands, dt, true, true);
    n.record(cx);
    let parallel = large(shape) && !n.kept_ext().is_empty();
    (n, parallel)
}

/// The row's mean and (population) variance of `x` (operand 0), in two
/// passes; `square_only`: the mean square instead, in one.
fn moments(
    cx: &mut NodeCx,
    n: &Nest,
    row: &Row,
    x: BufId,
    dt: DType,
    square_only: bool,
) -> Result<(Expr, Expr), Unsupported> {
    let count = n.reduced_len() as f64;
    let vt = n.vty(dt);
    let rt = n.row_ty(dt);
    if square_only {
        let q = n.accumulate(cx, row, "sq", c(0.0, vt), BinOp::Add, &mut |cx, at, acc| {
            let v = cx.b.let_("v", n.load(&at.idx, at.mask.clone(), 0, x));
            Ok(Expr::mul_add(v.clone(), v, acc))
        })?;
        let ms = Expr::bin(BinOp::Div, n.hreduce(ReduceOp::Add, q), c(count, rt));
        return Ok((c(0.0, rt), cx.b.let_("meansq", ms)));
    }
    let s = n.accumulate(cx, row, "sum", c(0.0, vt), BinOp::Add, &mut |_, at, acc| {
        let v = n.load(&at.idx, at.mask.clone(), 0, x);
        Ok(Expr::bin(BinOp::Add, acc, v))
    })?;
    let mean = Expr::bin(BinOp::Div, n.hreduce(ReduceOp::Add, s), c(count, rt));
    let mean = cx.b.let_("mean", mean);
    let q = n.accumulate(cx, row, "sq", c(0.0, vt), BinOp::Add, &mut |cx, at, acc| {
        let v = n.load(&at.idx, at.mask.clone(), 0, x);
        let d = Expr::bin(BinOp::Sub, v, n.bcast(mean.clone()));
        let d = n.fill(at, d, c(0.0, Ty::scalar(dt)));
        let d = cx.b.let_("d", d);
        Ok(Expr::mul_add(d.clone(), d, acc))
    })?;
    let var = Expr::bin(BinOp::Div, n.hreduce(ReduceOp::Add, q), c(count, rt));
    Ok((mean, cx.b.let_("var", var)))
}

/// `1 / sqrt(v + eps)`.
fn inv_std(cx: &mut NodeCx, v: Expr, eps: f64) -> Expr {
    let t = cx.b.ty(&v);
    let s = Expr::un(UnOp::Sqrt, Expr::bin(BinOp::Add, v, c(eps, t)));
    cx.b.let_("inv", Expr::bin(BinOp::Div, c(1.0, t), s))
}

/// LayerNormalization (`rms`: RMSNormalization): over the dims from
/// `axis` on; with more than one output, also the mean and 1/std per row.
fn layer_norm(cx: &mut NodeCx, axis: i64, eps: f64, rms: bool) -> Result<(), Unsupported> {
    let (x, shape, dt) = input(cx)?;
    let a = norm_axis(axis, shape.len())?;
    let n_out = cx.node().outputs.len();
    if n_out > 1 {
        cx.no_epilogue()?;
    }
    let (sb, ss) = broadcast_param(cx, 1, &shape, "scale")?;
    let bias = match cx.input(2) {
        Some(_) if !rms => Some(broadcast_param(cx, 2, &shape, "bias")?),
        _ => None,
    };
    let stats: Vec<BufId> = (1..n_out).map(|i| cx.out_buf(i)).collect();
    let (sdt, bdt) = (cx.in_dtype(1), bias.as_ref().map(|_| cx.in_dtype(2)));
    let bias_buf = bias.as_ref().map(|(b, _)| *b);
    if shape.contains(&0) {
        // Empty rows have NaN statistics.
        let rows: usize = shape[..a].iter().product();
        for &s in &stats {
            let sd = cx.b.kernel().buf(s).dtype;
            let i = cx.b.begin_for("r", 0, rows, 1, LoopKind::Serial);
            cx.b.store(s, i, c(f64::NAN, Ty::scalar(sd)));
            cx.b.end_for();
        }
        return Ok(());
    }
    let mut operands = vec![row_major(&shape), ss];
    if let Some((_, bs)) = &bias {
        operands.push(bs.clone());
    }
    let reduced: Vec<bool> = (0..shape.len()).map(|d| d >= a).collect();
    let (n, parallel) = nest(cx, &shape, &reduced, &operands, dt);
    n.rows(cx, parallel, &mut |cx, row| {
        let (mean, var) = moments(cx, &n, row, x, dt, rms)?;
        let inv = inv_std(cx, var, eps);
        n.walk(cx, row, "j", 1, &mut |cx, at| {
            let v = n.load(&at.idx, at.mask.clone(), 0, x);
            let v = if rms {
                v
            } else {
                Expr::bin(BinOp::Sub, v, n.bcast(mean.clone()))
            };
            let sc = as_dt(n.load(&at.idx, at.mask.clone(), 1, sb), sdt, dt);
            let y = Expr::bin(
                BinOp::Mul,
                Expr::bin(BinOp::Mul, v, n.bcast(inv.clone())),
                sc,
            );
            let y = match (bias_buf, bdt) {
                (Some(bb), Some(bd)) => Expr::bin(
                    BinOp::Add,
                    y,
                    as_dt(n.load(&at.idx, at.mask.clone(), 2, bb), bd, dt),
                ),
                _ => y,
            };
            n.store(cx, at, y)
        })?;
        if let Some(&m) = stats.first() {
            n.store_row(cx, row, m, mean.clone());
        }
        if let Some(&s) = stats.get(1) {
            n.store_row(cx, row, s, inv.clone());
        }
        Ok(())
    })
}

/// The per-channel parameter strides of an `[N, C, …]` tensor.
fn channel_strides(rank: usize) -> Vec<i64> {
    (0..rank).map(|d| (d == 1) as i64).collect()
}

/// BatchNormalization: `x · a[c] + b[c]` with `a = scale / sqrt(var + eps)`
/// and `b = bias - mean · a`; in training mode mean and variance are the
/// batch's (over N and the spatial dims) and the running statistics are
/// updated with `momentum`.
fn batch_norm(cx: &mut NodeCx, eps: f64, momentum: f64, training: bool) -> Result<(), Unsupported> {
    let (x, shape, dt) = input(cx)?;
    if shape.len() < 2 {
        return unsupported("batch normalization of rank below 2");
    }
    let ch = shape[1];
    let n_out = cx.node().outputs.len();
    if n_out > 1 {
        cx.no_epilogue()?;
    }
    let (scale, sdt) = channel_param(cx, 1, ch, "scale")?;
    let (bias, bdt) = channel_param(cx, 2, ch, "bias")?;
    let (in_mean, mdt) = channel_param(cx, 3, ch, "input_mean")?;
    let (in_var, vdt) = channel_param(cx, 4, ch, "input_var")?;
    let running: Vec<BufId> = (1..n_out).map(|i| cx.out_buf(i)).collect();
    let rank = shape.len();
    let copy_running = |cx: &mut NodeCx| {
        // Outside training the running statistics are the inputs.
        for (&o, (src, sd)) in running.iter().zip([(in_mean, mdt), (in_var, vdt)]) {
            let od = cx.b.kernel().buf(o).dtype;
            let i = cx.b.begin_for("ch", 0, ch, 1, LoopKind::Serial);
            cx.b.store(o, i.clone(), as_dt(Expr::load(src, i), sd, od));
            cx.b.end_for();
        }
    };
    if shape.contains(&0) {
        copy_running(cx);
        return Ok(());
    }
    let ps = channel_strides(rank);
    let operands = [row_major(&shape), ps];
    let load_row = |n: &Nest, row: &Row, b: BufId, d: DType| as_dt(n.load_row(row, 1, b), d, dt);
    if !training {
        // Rows are (n, c); the walk runs over the spatial dims.
        let reduced: Vec<bool> = (0..rank).map(|d| d >= 2).collect();
        let (n, parallel) = nest(cx, &shape, &reduced, &operands, dt);
        n.rows(cx, parallel, &mut |cx, row| {
            let var = load_row(&n, row, in_var, vdt);
            let inv = inv_std(cx, var, eps);
            let a = Expr::bin(BinOp::Mul, load_row(&n, row, scale, sdt), inv);
            let a = cx.b.let_("a", a);
            let m = load_row(&n, row, in_mean, mdt);
            let b = Expr::bin(
                BinOp::Sub,
                load_row(&n, row, bias, bdt),
                Expr::bin(BinOp::Mul, m, a.clone()),
            );
            let b = cx.b.let_("b", b);
            n.walk(cx, row, "j", 1, &mut |cx, at| {
                let v = n.load(&at.idx, at.mask.clone(), 0, x);
                let y = Expr::mul_add(v, n.bcast(a.clone()), n.bcast(b.clone()));
                n.store(cx, at, y)
            })
        })?;
        copy_running(cx);
        return Ok(());
    }
    // Training: rows are channels; statistics run over N and the spatial
    // dims.
    let reduced: Vec<bool> = (0..rank).map(|d| d != 1).collect();
    let (n, parallel) = nest(cx, &shape, &reduced, &operands, dt);
    n.rows(cx, parallel, &mut |cx, row| {
        let (mean, var) = moments(cx, &n, row, x, dt, false)?;
        let inv = inv_std(cx, var.clone(), eps);
        let a = cx.b.let_(
            "a",
            Expr::bin(BinOp::Mul, load_row(&n, row, scale, sdt), inv),
        );
        let b = cx.b.let_("b", load_row(&n, row, bias, bdt));
        n.walk(cx, row, "j", 1, &mut |cx, at| {
            let v = n.load(&at.idx, at.mask.clone(), 0, x);
            let d = Expr::bin(BinOp::Sub, v, n.bcast(mean.clone()));
            let y = Expr::mul_add(d, n.bcast(a.clone()), n.bcast(b.clone()));
            n.store(cx, at, y)
        })?;
        let rt = cx.b.ty(&mean);
        for (&o, (src, sd, batch)) in running
            .iter()
            .zip([(in_mean, mdt, mean.clone()), (in_var, vdt, var.clone())])
        {
            let old = load_row(&n, row, src, sd);
            let v = Expr::mul_add(
                old,
                c(momentum, rt),
                Expr::bin(BinOp::Mul, batch, c(1.0 - momentum, rt)),
            );
            n.store_row(cx, row, o, v);
        }
        Ok(())
    })
}

/// InstanceNormalization: statistics per (n, c) over the spatial dims.
fn instance_norm(cx: &mut NodeCx, eps: f64) -> Result<(), Unsupported> {
    let (x, shape, dt) = input(cx)?;
    if shape.len() < 2 {
        return unsupported("instance normalization of rank below 2");
    }
    let (scale, sdt) = channel_param(cx, 1, shape[1], "scale")?;
    let (bias, bdt) = channel_param(cx, 2, shape[1], "bias")?;
    if shape.contains(&0) {
        return Ok(());
    }
    let rank = shape.len();
    let reduced: Vec<bool> = (0..rank).map(|d| d >= 2).collect();
    let operands = [row_major(&shape), channel_strides(rank)];
    let (n, parallel) = nest(cx, &shape, &reduced, &operands, dt);
    n.rows(cx, parallel, &mut |cx, row| {
        let (mean, var) = moments(cx, &n, row, x, dt, false)?;
        let inv = inv_std(cx, var, eps);
        let sc = as_dt(n.load_row(row, 1, scale), sdt, dt);
        let a = cx.b.let_("a", Expr::bin(BinOp::Mul, sc, inv));
        let b = cx.b.let_("b", as_dt(n.load_row(row, 1, bias), bdt, dt));
        n.walk(cx, row, "j", 1, &mut |cx, at| {
            // (x - mean)·a + bias: no cancellation of large terms where the
            // variance is tiny.
            let v = n.load(&at.idx, at.mask.clone(), 0, x);
            let d = Expr::bin(BinOp::Sub, v, n.bcast(mean.clone()));
            let y = Expr::mul_add(d, n.bcast(a.clone()), n.bcast(b.clone()));
            n.store(cx, at, y)
        })
    })
}

/// GroupNormalization: statistics per (n, group) over the group's
/// channels and the spatial dims; scale and bias per channel.
fn group_norm(cx: &mut NodeCx, groups: i64, eps: f64) -> Result<(), Unsupported> {
    let (x, shape, dt) = input(cx)?;
    if shape.len() < 2 {
        return unsupported("group normalization of rank below 2");
    }
    let ch = shape[1];
    if groups <= 0 || ch as i64 % groups != 0 {
        return unsupported(format!("{ch} channels do not split into {groups} groups"));
    }
    let (scale, sdt) = channel_param(cx, 1, ch, "scale")?;
    let (bias, bdt) = channel_param(cx, 2, ch, "bias")?;
    if shape.contains(&0) {
        return Ok(());
    }
    let g = groups as usize;
    let cpg = ch / g;
    let spatial: usize = shape[2..].iter().product();
    // The input seen as [N, groups, channels per group, spatial].
    let view = [shape[0], g, cpg, spatial];
    let reduced = [false, false, true, true];
    let ps = vec![0, cpg as i64, 1, 0];
    let operands = [row_major(&view), ps];
    let (n, parallel) = nest(cx, &view, &reduced, &operands, dt);
    n.rows(cx, parallel, &mut |cx, row| {
        let (mean, var) = moments(cx, &n, row, x, dt, false)?;
        let inv = inv_std(cx, var, eps);
        n.walk(cx, row, "j", 1, &mut |cx, at| {
            let v = n.load(&at.idx, at.mask.clone(), 0, x);
            let sc = as_dt(n.load(&at.idx, at.mask.clone(), 1, scale), sdt, dt);
            let bi = as_dt(n.load(&at.idx, at.mask.clone(), 1, bias), bdt, dt);
            let sc = Expr::bin(BinOp::Mul, sc, n.bcast(inv.clone()));
            let d = Expr::bin(BinOp::Sub, v, n.bcast(mean.clone()));
            n.store(cx, at, Expr::mul_add(d, sc, bi))
        })
    })
}

/// LpNormalization: `x / ‖x‖_p` along the axis (p = 1 or 2); a zero
/// vector stays zero.
fn lp_norm(cx: &mut NodeCx, axis: i64, p: i64) -> Result<(), Unsupported> {
    let (x, shape, dt) = input(cx)?;
    if p != 1 && p != 2 {
        return unsupported(format!("Lp normalization with p = {p}"));
    }
    let a = norm_axis(axis, shape.len())?;
    if shape.contains(&0) {
        return Ok(());
    }
    let reduced: Vec<bool> = (0..shape.len()).map(|d| d == a).collect();
    let (n, parallel) = nest(cx, &shape, &reduced, &[row_major(&shape)], dt);
    n.rows(cx, parallel, &mut |cx, row| {
        let s = n.accumulate(
            cx,
            row,
            "norm",
            c(0.0, n.vty(dt)),
            BinOp::Add,
            &mut |cx, at, acc| {
                let v = cx.b.let_("v", n.load(&at.idx, at.mask.clone(), 0, x));
                Ok(if p == 1 {
                    Expr::bin(BinOp::Add, Expr::un(UnOp::Abs, v), acc)
                } else {
                    Expr::mul_add(v.clone(), v, acc)
                })
            },
        )?;
        let norm = n.hreduce(ReduceOp::Add, s);
        let norm = if p == 2 {
            Expr::un(UnOp::Sqrt, norm)
        } else {
            norm
        };
        let norm = cx.b.let_("nrm", norm);
        let rt = cx.b.ty(&norm);
        let inv = Expr::select(
            Expr::bin(BinOp::Eq, norm.clone(), c(0.0, rt)),
            c(0.0, rt),
            Expr::bin(BinOp::Div, c(1.0, rt), norm),
        );
        let inv = cx.b.let_("inv", inv);
        n.walk(cx, row, "j", 1, &mut |cx, at| {
            let v = n.load(&at.idx, at.mask.clone(), 0, x);
            n.store(cx, at, Expr::bin(BinOp::Mul, v, n.bcast(inv.clone())))
        })
    })
}

/// MeanVarianceNormalization: `(x - mean) / (sqrt(var) + 1e-9)` over
/// `axes`.
fn mvn(cx: &mut NodeCx, axes: &[i64]) -> Result<(), Unsupported> {
    let (x, shape, dt) = input(cx)?;
    let rank = shape.len();
    let mut reduced = vec![false; rank];
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if reduced[a] {
            return unsupported(format!("axes {axes:?} repeat an axis"));
        }
        reduced[a] = true;
    }
    if shape.contains(&0) {
        return Ok(());
    }
    let (n, parallel) = nest(cx, &shape, &reduced, &[row_major(&shape)], dt);
    n.rows(cx, parallel, &mut |cx, row| {
        let (mean, var) = moments(cx, &n, row, x, dt, false)?;
        let rt = cx.b.ty(&var);
        let sd = Expr::bin(BinOp::Add, Expr::un(UnOp::Sqrt, var), c(1e-9, rt));
        let inv = cx.b.let_("inv", Expr::bin(BinOp::Div, c(1.0, rt), sd));
        n.walk(cx, row, "j", 1, &mut |cx, at| {
            let v = n.load(&at.idx, at.mask.clone(), 0, x);
            let d = Expr::bin(BinOp::Sub, v, n.bcast(mean.clone()));
            n.store(cx, at, Expr::bin(BinOp::Mul, d, n.bcast(inv.clone())))
        })
    })
}
