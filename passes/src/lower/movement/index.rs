//! Movement whose source (or target) positions are data: gathers,
//! scatters, one-hot and reverse-sequence.
//!
//! Every index read at runtime goes through [`read_index`]: wrapped once
//! when negative, then clamped into the axis, so that no access leaves
//! its buffer (the interpreter rejects such indices instead). Scatters
//! copy the data first and then apply the updates one by one in index
//! order, as the interpreter does, so duplicate indices end with the
//! same value.

use super::{
    Axis, PARALLEL_MIN, R, Src, copy_lanes, copy_nest, dot, gather_maps, input, istrides,
    normalize, numel,
};
use crate::lower::cx::NodeCx;

use crate::lower::unsupported;
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind};
use saturn_ir::ops::{ScatterReduction, TensorScatterMode};
use saturn_ir::{AttrValue, DType};

/// `ind[at]` as an index into an axis of `d > 0` elements: negative ones
/// count from the end, and the result is clamped into `[0, d)`.
fn read_index(cx: &mut NodeCx, ind: BufId, at: Expr, d: usize) -> Expr {
    let dt = cx.b.kernel().buf(ind).dtype;
    let raw = Expr::load(ind, at);
    let raw = if dt == DType::I64 {
        raw
    } else {
        raw.cast(DType::I64)
    };
    let raw = cx.b.let_("raw", raw);
    let wrapped = Expr::select(raw.clone().lt(Expr::idx(0)), raw.clone() + d as i64, raw);
    cx.b.let_("k", wrapped.max(Expr::idx(0)).min(Expr::idx(d as i64 - 1)))
}

/// Loops over `ext` (the first one of two or more iterations parallel
/// when `par`); dims of extent 1 get no loop.
struct Loops {
    vars: Vec<Expr>,
    opened: usize,
}

impl Loops {
    fn open(cx: &mut NodeCx, ext: &[usize], par: bool) -> Loops {
        let mut first = par;
        let mut opened = 0;
        let vars = ext
            .iter()
            .enumerate()
            .map(|(d, &e)| {
                if e == 1 {
                    return Expr::idx(0);
                }
                let kind = if first {
                    first = false;
                    cx.schedule("parallel", AttrValue::Str(format!("d{d}")));
                    LoopKind::Parallel
                } else {
                    LoopKind::Serial
                };
                opened += 1;
                cx.b.begin_for(&format!("d{d}"), 0, e, 1, kind)
            })
            .collect();
        Loops { vars, opened }
    }

    fn close(self, cx: &mut NodeCx) {
        for _ in 0..self.opened {
            cx.b.end_for();
        }
    }
}

pub(super) fn gather(cx: &mut NodeCx, axis: i64) -> R {
    let s = cx.in_shape(0);
    let q = cx.in_shape(1);
    if s.is_empty() {
        return unsupported("gather from a scalar");
    }
    let a = normalize(axis, s.len())?;
    let (outer, d, inner) = (numel(&s[..a]), s[a], numel(&s[a + 1..]));
    let j = numel(&q);
    let total = outer * j * inner;
    if numel(&cx.out_shape(0)) != total {
        return unsupported("gather output does not match");
    }
    if total == 0 {
        return Ok(());
    }
    if d == 0 {
        return unsupported("gather from an empty axis");
    }
    let x = input(cx, 0)?;
    let out = cx.out_buf(0);
    // Constant indices that form a few runs (a slice, a reversal, a
    // repeated row): a copy through axis maps. Others read the index
    // buffer like runtime ones.
    if let Some(t) = cx.in_const(1) {
        let mut picks = Vec::with_capacity(j);
        for i in t.to_i64_vec() {
            let w = if i < 0 { i + d as i64 } else { i };
            if !(0..d as i64).contains(&w) {
                return unsupported(format!("constant index {i} is out of range"));
            }
            picks.push(Some(w));
        }
        if super::AxisMap::of(&picks) != super::AxisMap::Table {
            let maps = [
                super::identity_map(outer),
                picks,
                super::identity_map(inner),
            ];
            return gather_maps(
                cx,
                out,
                &[outer, j, inner],
                x,
                &[outer, d, inner],
                &maps,
                None,
            );
        }
    }
    let ind = input(cx, 1)?;
    let par = total >= PARALLEL_MIN;
    let loops = Loops::open(cx, &[outer, j], par);
    let (o, jv) = (loops.vars[0].clone(), loops.vars[1].clone());
    let k = read_index(cx, ind, jv.clone(), d);
    let src = Src::Buf {
        buf: x,
        base: cx.b.let_("sb", (o.clone() * d as i64 + k) * inner as i64),
    };
    let obase = (o * j as i64 + jv) * inner as i64;
    let dims = [Axis {
        n: inner,
        os: 1,
        ss: 1,
    }];
    copy_nest(cx, out, obase, &dims, &src, false)?;
    loops.close(cx);
    Ok(())
}

pub(super) fn gather_elements(cx: &mut NodeCx, axis: i64) -> R {
    let s = cx.in_shape(0);
    let q = cx.in_shape(1);
    let r = s.len();
    if r == 0 {
        return unsupported("gather_elements of a scalar");
    }
    let a = normalize(axis, r)?;
    if q.len() != r || (0..r).any(|d| d != a && q[d] > s[d]) {
        return unsupported("indices do not fit the data");
    }
    if numel(&q) == 0 {
        return Ok(());
    }
    if s[a] == 0 {
        return unsupported("gather from an empty axis");
    }
    let (x, ind, out) = (input(cx, 0)?, input(cx, 1)?, cx.out_buf(0));
    let (xs, qs) = (istrides(&s), istrides(&q));
    let loops = Loops::open(cx, &q, numel(&q) >= PARALLEL_MIN);
    let idx = loops.vars.clone();
    let at = cx.b.let_("at", dot(&idx, &qs));
    let k = read_index(cx, ind, at.clone(), s[a]);
    let mut src = k * xs[a];
    for d in (0..r).filter(|&d| d != a) {
        src = src + idx[d].clone() * xs[d];
    }
    cx.b.store(out, at, Expr::load(x, src));
    loops.close(cx);
    Ok(())
}

/// GatherND's shapes: (batch dims, index tuple length, tuples, tuples
/// per batch, elements per slice).
fn nd_shape(s: &[usize], q: &[usize], b: usize) -> Result<(usize, usize, usize, usize), String> {
    let (r, qr) = (s.len(), q.len());
    if r == 0 || qr == 0 || b >= r.min(qr) {
        return Err("bad ranks for the indices".into());
    }
    let k = q[qr - 1];
    if b + k > r || q[..b] != s[..b] {
        return Err("indices do not fit the data".into());
    }
    let tuples = numel(&q[..qr - 1]);
    let nb = numel(&q[..b]);
    let per_batch = tuples.checked_div(nb).unwrap_or(0);
    Ok((k, tuples, per_batch, numel(&s[b + k..])))
}

pub(super) fn gather_nd(cx: &mut NodeCx, batch_dims: i64) -> R {
    let s = cx.in_shape(0);
    let q = cx.in_shape(1);
    if batch_dims < 0 {
        return unsupported("negative batch_dims");
    }
    let b = batch_dims as usize;
    let (k, tuples, per_batch, slice) = nd_shape(&s, &q, b).map_err(super::unsup)?;
    let total = tuples * slice;
    if numel(&cx.out_shape(0)) != total {
        return unsupported("gather_nd output does not match");
    }
    if total == 0 {
        return Ok(());
    }
    if s[b..b + k].contains(&0) {
        return unsupported("gather from an empty axis");
    }
    let (x, ind, out) = (input(cx, 0)?, input(cx, 1)?, cx.out_buf(0));
    let xs = istrides(&s);
    let nb = numel(&q[..b]);
    let batch_stride = numel(&s[b..]) as i64;
    let loops = Loops::open(cx, &[nb, per_batch], total >= PARALLEL_MIN);
    let idx = loops.vars.clone();
    let t =
        cx.b.let_("t", idx[0].clone() * per_batch as i64 + idx[1].clone());
    let mut off = idx[0].clone() * batch_stride;
    for jj in 0..k {
        let at = t.clone() * k as i64 + jj as i64;
        let v = read_index(cx, ind, at, s[b + jj]);
        off = off + v * xs[b + jj];
    }
    let src = Src::Buf {
        buf: x,
        base: cx.b.let_("sb", off),
    };
    let dims = [Axis {
        n: slice,
        os: 1,
        ss: 1,
    }];
    copy_nest(cx, out, t * slice as i64, &dims, &src, false)?;
    loops.close(cx);
    Ok(())
}

/// What a scatter leaves at a target: the update, or it combined with
/// what is there.
fn combine(dt: DType, red: ScatterReduction, old: Expr, new: Expr) -> Expr {
    let b = dt == DType::Bool;
    let op = match red {
        ScatterReduction::None => return new,
        // On booleans a sum or maximum is "any", a product or minimum "all".
        ScatterReduction::Add if b => BinOp::Or,
        ScatterReduction::Mul if b => BinOp::And,
        ScatterReduction::Max if b => BinOp::Or,
        ScatterReduction::Min if b => BinOp::And,
        ScatterReduction::Add => BinOp::Add,
        ScatterReduction::Mul => BinOp::Mul,
        ScatterReduction::Max => BinOp::Max,
        ScatterReduction::Min => BinOp::Min,
    };
    Expr::bin(op, old, new)
}

/// Output 0 = input 0, before the updates.
fn copy_data(cx: &mut NodeCx) -> R {
    let n = numel(&cx.in_shape(0));
    if numel(&cx.out_shape(0)) != n {
        return unsupported("scatter output does not match its data");
    }
    let src = Src::Buf {
        buf: input(cx, 0)?,
        base: Expr::idx(0),
    };
    let out = cx.out_buf(0);
    copy_nest(
        cx,
        out,
        Expr::idx(0),
        &[Axis { n, os: 1, ss: 1 }],
        &src,
        true,
    )
}

pub(super) fn scatter_elements(cx: &mut NodeCx, axis: i64, red: ScatterReduction) -> R {
    let s = cx.in_shape(0);
    let q = cx.in_shape(1);
    let r = s.len();
    if r == 0 {
        return unsupported("scatter_elements into a scalar");
    }
    let a = normalize(axis, r)?;
    if q.len() != r || cx.in_shape(2) != q || (0..r).any(|d| d != a && q[d] > s[d]) {
        return unsupported("indices do not fit the data");
    }
    let dt = cx.in_dtype(0);
    copy_data(cx)?;
    if numel(&q) == 0 {
        return Ok(());
    }
    if s[a] == 0 {
        return unsupported("scatter into an empty axis");
    }
    let (ind, upd, out) = (input(cx, 1)?, input(cx, 2)?, cx.out_buf(0));
    let (xs, qs) = (istrides(&s), istrides(&q));
    cx.schedule("order", AttrValue::Str("serial".into()));
    let loops = Loops::open(cx, &q, false);
    let idx = loops.vars.clone();
    let at = cx.b.let_("at", dot(&idx, &qs));
    let k = read_index(cx, ind, at.clone(), s[a]);
    let mut t = k * xs[a];
    for d in (0..r).filter(|&d| d != a) {
        t = t + idx[d].clone() * xs[d];
    }
    let t = cx.b.let_("target", t);
    let v = combine(dt, red, Expr::load(out, t.clone()), Expr::load(upd, at));
    cx.b.store(out, t, v);
    loops.close(cx);
    Ok(())
}

pub(super) fn scatter_nd(cx: &mut NodeCx, red: ScatterReduction) -> R {
    let s = cx.in_shape(0);
    let q = cx.in_shape(1);
    if s.is_empty() || q.is_empty() {
        return unsupported("scatter_nd needs data and indices of rank 1 or more");
    }
    let k = q[q.len() - 1];
    if k > s.len() {
        return unsupported("index tuples longer than the data rank");
    }
    let tuples = numel(&q[..q.len() - 1]);
    let slice = numel(&s[k..]);
    let mut expect = q[..q.len() - 1].to_vec();
    expect.extend_from_slice(&s[k..]);
    if cx.in_shape(2) != expect {
        return unsupported("updates do not fit");
    }
    let dt = cx.in_dtype(0);
    copy_data(cx)?;
    if tuples * slice == 0 {
        return Ok(());
    }
    if s[..k].contains(&0) {
        return unsupported("scatter into an empty axis");
    }
    let (ind, upd, out) = (input(cx, 1)?, input(cx, 2)?, cx.out_buf(0));
    let xs = istrides(&s);
    cx.schedule("order", AttrValue::Str("serial".into()));
    let t = cx.b.begin_for("t", 0, tuples, 1, LoopKind::Serial);
    let mut off = Expr::idx(0);
    for jj in 0..k {
        let v = read_index(cx, ind, t.clone() * k as i64 + jj as i64, s[jj]);
        off = off + v * xs[jj];
    }
    let off = cx.b.let_("target", off);
    let ub = cx.b.let_("ub", t * slice as i64);
    let vl = copy_lanes(cx, dt);
    let lanes = if slice >= vl as usize { vl } else { 1 };
    // Within one tuple the targets are distinct, so a vector of them is
    // as good as one by one.
    super::vloop(cx, "i", slice, lanes, &mut |cx, i, mask| {
        let at = off.clone() + i.clone();
        let old = Expr::load_vec(out, at.clone(), lanes, 1, mask.clone());
        let new = Expr::load_vec(upd, ub.clone() + i, lanes, 1, mask.clone());
        let v = combine(dt, red, old, new);
        cx.b.store_vec(out, at, v, 1, mask);
        Ok(())
    })?;
    cx.b.end_for();
    Ok(())
}

pub(super) fn one_hot(cx: &mut NodeCx, axis: i64) -> R {
    let q = cx.in_shape(0);
    let o = cx.out_shape(0);
    let a = normalize(axis, q.len() + 1)?;
    if o.len() != q.len() + 1 {
        return unsupported("one_hot output rank does not match");
    }
    let depth = o[a];
    if numel(&cx.in_shape(2)) != 2 {
        return unsupported("one_hot values must be [off, on]");
    }
    let (outer, inner) = (numel(&q[..a]), numel(&q[a..]));
    if outer * depth * inner == 0 {
        return Ok(());
    }
    let (ind, vals, out) = (input(cx, 0)?, input(cx, 2)?, cx.out_buf(0));
    let off = cx.b.let_("off", Expr::load(vals, Expr::idx(0)));
    let on = cx.b.let_("on", Expr::load(vals, Expr::idx(1)));
    let lanes = if inner >= 4 { 4 } else { 1 };
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let loops = Loops::open(cx, &[outer, depth], outer * depth * inner >= PARALLEL_MIN);
    let (ov, kv) = (loops.vars[0].clone(), loops.vars[1].clone());
    let ib = cx.b.let_("ib", ov.clone() * inner as i64);
    let obase =
        cx.b.let_("ob", (ov * depth as i64 + kv.clone()) * inner as i64);
    let ind_dt = cx.b.kernel().buf(ind).dtype;
    super::vloop(cx, "i", inner, lanes, &mut |cx, i, mask| {
        let p = Expr::load_vec(ind, ib.clone() + i.clone(), lanes, 1, mask.clone());
        let p = if ind_dt == DType::I64 {
            p
        } else {
            p.cast(DType::I64)
        };
        let p = cx.b.let_("p", p);
        let zero = Expr::idx(0).splat(lanes);
        let p = Expr::select(
            p.clone().lt(zero),
            p.clone() + Expr::idx(depth as i64).splat(lanes),
            p,
        );
        let hit = Expr::bin(BinOp::Eq, p, kv.clone().splat(lanes));
        let v = Expr::select(hit, on.clone().splat(lanes), off.clone().splat(lanes));
        cx.b.store_vec(out, obase.clone() + i, v, 1, mask);
        Ok(())
    })?;
    loops.close(cx);
    Ok(())
}

pub(super) fn reverse_sequence(cx: &mut NodeCx, batch_axis: i64, time_axis: i64) -> R {
    let s = cx.in_shape(0);
    if s.len() < 2 || !matches!((batch_axis, time_axis), (0, 1) | (1, 0)) {
        return unsupported("reverse_sequence needs rank 2+ and axes 0 and 1");
    }
    let (ba, ta) = (batch_axis as usize, time_axis as usize);
    let (nb, nt) = (s[ba], s[ta]);
    let rest = numel(&s[2..]);
    if numel(&cx.in_shape(1)) != nb {
        return unsupported("one sequence length per batch entry");
    }
    if nb * nt * rest == 0 {
        return Ok(());
    }
    let (x, lens, out) = (input(cx, 0)?, input(cx, 1)?, cx.out_buf(0));
    let loops = Loops::open(cx, &[nb, nt], nb * nt * rest >= PARALLEL_MIN);
    let (b, t) = (loops.vars[0].clone(), loops.vars[1].clone());
    let len = Expr::load(lens, b.clone());
    let len = if cx.b.kernel().buf(lens).dtype == DType::I64 {
        len
    } else {
        len.cast(DType::I64)
    };
    let len =
        cx.b.let_("len", len.max(Expr::idx(0)).min(Expr::idx(nt as i64)));
    let src_t = Expr::select(t.clone().lt(len.clone()), len - 1 - t.clone(), t.clone());
    let src_t = cx.b.let_("src_t", src_t);
    let at = |t: Expr| {
        if ta == 0 {
            (t * nb as i64 + b.clone()) * rest as i64
        } else {
            (b.clone() * nt as i64 + t) * rest as i64
        }
    };
    let src = Src::Buf {
        buf: x,
        base: cx.b.let_("sb", at(src_t)),
    };
    let dims = [Axis {
        n: rest,
        os: 1,
        ss: 1,
    }];
    copy_nest(cx, out, at(t), &dims, &src, false)?;
    loops.close(cx);
    Ok(())
}

/// TensorScatter (a cache update): the cache copied, then each batch
/// entry's update rows written from its write index on (wrapping around
/// the axis in circular mode, clamped into it otherwise), in order.
pub(super) fn tensor_scatter(cx: &mut NodeCx, axis: i64, mode: TensorScatterMode) -> R {
    let ps = cx.in_shape(0);
    let us = cx.in_shape(1);
    let r = ps.len();
    let a = normalize(axis, r)?;
    if a == 0 {
        return unsupported("the sequence axis cannot be the batch axis");
    }
    let fits = us.len() == r
        && (0..r).all(|d| {
            if d == a {
                us[d] <= ps[d]
            } else {
                us[d] == ps[d]
            }
        });
    if !fits {
        return unsupported("the update does not fit the cache");
    }
    copy_data(cx)?;
    let (batch, max_len, seq) = (ps[0], ps[a], us[a]);
    let (outer, inner) = (numel(&ps[..a]), numel(&ps[a + 1..]));
    if outer * seq * inner == 0 {
        return Ok(());
    }
    let writes = match cx.in_value(2) {
        Some(_) if numel(&cx.in_shape(2)) != batch => {
            return unsupported("one write index per batch entry");
        }
        Some(_) => Some(input(cx, 2)?),
        None => None,
    };
    let (upd, out) = (input(cx, 1)?, cx.out_buf(0));
    let per_batch = outer / batch;
    let loops = Loops::open(cx, &[batch, per_batch], outer * seq * inner >= PARALLEL_MIN);
    let (b, ob) = (loops.vars[0].clone(), loops.vars[1].clone());
    let o = cx.b.let_("o", b.clone() * per_batch as i64 + ob);
    let w = match writes {
        Some(wb) => {
            let v = Expr::load(wb, b);
            let v = if cx.b.kernel().buf(wb).dtype == DType::I64 {
                v
            } else {
                v.cast(DType::I64)
            };
            cx.b.let_("w", v)
        }
        None => Expr::idx(0),
    };
    let s = cx.b.begin_for("s", 0, seq, 1, LoopKind::Serial);
    let at = w + s.clone();
    let at = match mode {
        TensorScatterMode::Circular => {
            let m =
                cx.b.let_("m", Expr::bin(BinOp::Rem, at, Expr::idx(max_len as i64)));
            Expr::select(m.clone().lt(Expr::idx(0)), m.clone() + max_len as i64, m)
        }
        TensorScatterMode::Linear => at.max(Expr::idx(0)).min(Expr::idx(max_len as i64 - 1)),
    };
    let at = cx.b.let_("at", at);
    let src = Src::Buf {
        buf: upd,
        base: cx.b.let_("sb", (o.clone() * seq as i64 + s) * inner as i64),
    };
    let dims = [Axis {
        n: inner,
        os: 1,
        ss: 1,
    }];
    copy_nest(
        cx,
        out,
        (o * max_len as i64 + at) * inner as i64,
        &dims,
        &src,
        false,
    )?;
    cx.b.end_for();
    loops.close(cx);
    Ok(())
}
