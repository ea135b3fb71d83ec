//! Attention (ONNX `Attention`, and what the optimizer fuses into it):
//! `softmax(Q·Kᵀ·scale + bias)·V` per query row, in one kernel.
//!
//! The parallel loop runs over (batch, query head); each iteration walks
//! its query rows: scores of the row against every key (a vectorised dot
//! product over the head size) go to a row of scratch memory private to the
//! iteration, are capped (`softcap`), biased (the mask, the causal frontier,
//! the local window, the padding given by `nonpad_kv_seqlen`) and turned
//! into probabilities by a three-pass softmax over the row (a row every key
//! of which is masked gives zeros); the output row is the probabilities
//! times V, vectorised along the value head size. Keys come from
//! `past_key` for the first `past` positions and from K after; the present
//! key and value outputs are the concatenation of both. Grouped-query
//! heads read the key/value head `h / (q_heads / kv_heads)`.

mod blocked;

use super::cx::NodeCx;
use super::elementwise::vector_loop;
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, ReduceOp, Ty, math};
use saturn_ir::{AttrValue, DType, Op};

/// The layout of a Q/K/V-like operand: element `(b, h, s, e)`.
#[derive(Clone, Copy, Debug)]
struct Heads {
    b: usize,
    h: usize,
    s: usize,
    d: usize,
    /// 3-D `[b, s, h·d]` rather than 4-D `[b, h, s, d]`.
    packed: bool,
}

impl Heads {
    fn of(shape: &[usize], heads: Option<usize>) -> Option<Heads> {
        match (shape, heads) {
            ([b, h, s, d], _) => Some(Heads {
                b: *b,
                h: *h,
                s: *s,
                d: *d,
                packed: false,
            }),
            ([b, s, hd], Some(h)) if h > 0 && hd % h == 0 => Some(Heads {
                b: *b,
                h,
                s: *s,
                d: hd / h,
                packed: true,
            }),
            _ => None,
        }
    }

    /// Flat index of `(b, h, s, e)`.
    fn at(&self, b: &Expr, h: &Expr, s: &Expr, e: &Expr) -> Expr {
        let (hn, sn, dn) = (self.h as i64, self.s as i64, self.d as i64);
        if self.packed {
            (b.clone() * sn + s.clone()) * (hn * dn) + h.clone() * dn + e.clone()
        } else {
            ((b.clone() * hn + h.clone()) * sn + s.clone()) * dn + e.clone()
        }
    }
}

/// Where key (or value) position `j` of a (batch, kv head) lives: the past
/// cache for `j < past`, the new block after.
#[derive(Clone, Copy)]
struct KeySource {
    new: BufId,
    new_l: Heads,
    past: Option<(BufId, Heads)>,
}

impl KeySource {
    fn past_len(&self) -> usize {
        self.past.map_or(0, |(_, l)| l.s)
    }

    /// Emits `body(buf, index of (b, h, j, 0))` for `j` over all positions,
    /// as one loop over the past block and one over the new one.
    fn for_each(
        &self,
        cx: &mut NodeCx,
        name: &str,
        b: &Expr,
        h: &Expr,
        body: &mut dyn FnMut(&mut NodeCx, Expr, BufId, Expr) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        let past = self.past_len();
        if let Some((buf, l)) = self.past
            && past > 0
        {
            let j = cx.b.begin_for(name, 0, past, 1, LoopKind::Serial);
            let base = l.at(b, h, &j, &Expr::idx(0));
            body(cx, j, buf, base)?;
            cx.b.end_for();
        }
        if self.new_l.s > 0 {
            let j =
                cx.b.begin_for(name, past, past + self.new_l.s, 1, LoopKind::Serial);
            let base = self
                .new_l
                .at(b, h, &(j.clone() - past as i64), &Expr::idx(0));
            body(cx, j, self.new, base)?;
            cx.b.end_for();
        }
        Ok(())
    }
}

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Result<(), Unsupported> {
    let vl = cx.lanes(DType::F32);
    let Op::Attention(op) = cx.g.node(node).op.clone() else {
        return unsupported("not an attention");
    };
    let n = cx.node();
    let n_out = n.outputs.len();
    if n_out > 1 {
        cx.no_epilogue()?;
    }
    let dt = cx.in_dtype(0);
    if !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("attention in {dt}"));
    }
    if cx.in_dtype(1) != dt || cx.in_dtype(2) != dt {
        return unsupported("attention with Q, K and V of different dtypes");
    }
    if op.softmax_precision.is_some_and(|p| p != dt) {
        return unsupported("attention with a softmax precision other than the inputs'");
    }
    let rank = cx.in_shape(0).len();
    let (qh, kvh) = match rank {
        3 => (
            op.q_num_heads.map(|h| h.max(0) as usize),
            op.kv_num_heads.map(|h| h.max(0) as usize),
        ),
        _ => (None, None),
    };
    let bad = || Unsupported("attention operands of unexpected shapes".into());
    let q = Heads::of(&cx.in_shape(0), qh).ok_or_else(bad)?;
    let k = Heads::of(&cx.in_shape(1), kvh).ok_or_else(bad)?;
    let v = Heads::of(&cx.in_shape(2), kvh).ok_or_else(bad)?;
    if k.h == 0 || q.h % k.h != 0 || v.h != k.h || k.d != q.d || v.s != k.s {
        return Err(bad());
    }
    let group = q.h / k.h;
    let input = |cx: &NodeCx, i: usize| cx.input(i);
    let (qb, kb, vb) = (
        input(cx, 0).ok_or_else(bad)?,
        input(cx, 1).ok_or_else(bad)?,
        input(cx, 2).ok_or_else(bad)?,
    );
    let past = match (input(cx, 4), input(cx, 5)) {
        (Some(pk), Some(pv)) => {
            let pkl = Heads::of(&cx.in_shape(4), None).ok_or_else(bad)?;
            let pvl = Heads::of(&cx.in_shape(5), None).ok_or_else(bad)?;
            if pkl.h != k.h || pvl.h != k.h || pkl.s != pvl.s || pkl.d != k.d || pvl.d != v.d {
                return Err(bad());
            }
            Some(((pk, pkl), (pv, pvl)))
        }
        (None, None) => None,
        _ => return unsupported("past_key without past_value"),
    };
    let keys = KeySource {
        new: kb,
        new_l: k,
        past: past.map(|(pk, _)| pk),
    };
    let vals = KeySource {
        new: vb,
        new_l: v,
        past: past.map(|(_, pv)| pv),
    };
    let past_len = keys.past_len();
    let total = past_len + k.s;
    let nonpad = input(cx, 6);
    if nonpad.is_some() && cx.in_dtype(6) != DType::I64 {
        return unsupported("nonpad_kv_seqlen not i64");
    }
    let mask = input(cx, 3).map(|m| (m, cx.in_shape(3), cx.in_dtype(3)));
    if let Some((_, ms, _)) = &mask
        && (ms.is_empty() || ms.len() > 4 || ms[ms.len() - 1] > total)
    {
        return Err(bad());
    }

    let ty = Ty::scalar(dt);
    let vty = Ty::vector(dt, vl);
    let c = |x: f64| Expr::constant(x, ty);
    let scale = match op.scale {
        Some(s) => s as f64,
        None => 1.0 / (q.d as f64).sqrt(),
    };
    let root = if dt == DType::F32 {
        (scale.sqrt() as f32) as f64
    } else {
        scale.sqrt()
    };
    cx.schedule("parallel", AttrValue::Str("batch_head".into()));
    cx.schedule("vector", AttrValue::Int(vl as i64));
    cx.schedule("softmax", AttrValue::Str("three_pass".into()));

    let rows = q.b * q.h;
    if rows == 0 || q.s == 0 {
        return copy_present(cx, &keys, &vals, q.b, k.h, k.d, v.d, n_out);
    }
    // The common case runs in register blocks.
    let plain_mask = match &mask {
        None => Some(None),
        Some((m, ms, mdt)) => {
            let mut p = [1usize; 4];
            p[4 - ms.len()..].copy_from_slice(ms);
            let want = [q.b, q.h, q.s];
            let fits = (0..3).all(|d| p[d] == 1 || p[d] == want[d])
                && p[3] == total
                && matches!(mdt, DType::Bool | DType::F32);
            fits.then_some(Some((*m, p, *mdt)))
        }
    };
    if let Some(mask) = plain_mask
        && dt == DType::F32
        && past.is_none()
        && n_out == 1
        && op.softcap == 0.0
        && nonpad.is_none()
        && !op.is_causal
        && op.left_window_size < 0
        && op.right_window_size < 0
        && total > 0
        && q.d > 0
        && v.d > 0
    {
        return blocked::Blocked {
            q,
            k,
            v,
            group,
            qb,
            kb,
            vb,
            mask,
            scale: root * root,
        }
        .lower(cx);
    }
    let scores = cx.scratch("scores", dt, rows * total.max(1));
    let bh = cx.b.begin_for("bh", 0, rows, 1, LoopKind::Parallel);
    let bi = cx.b.let_("b", bh.clone() / q.h as i64);
    let hi = cx.b.let_("h", bh.clone() % q.h as i64);
    let kvh_i = cx.b.let_("kvh", hi.clone() / group as i64);
    let row0 = cx.b.let_("row", bh.clone() * total.max(1) as i64);
    let offset = match nonpad {
        Some(np) => Some(cx.b.let_("offset", Expr::load(np, bi.clone()) - q.s as i64)),
        None => None,
    };
    let i = cx.b.begin_for("i", 0, q.s, 1, LoopKind::Serial);
    let qbase = cx.b.let_("qbase", q.at(&bi, &hi, &i, &Expr::idx(0)));
    let pos = cx.b.let_(
        "pos",
        match &offset {
            Some(o) => o.clone() + i.clone(),
            None => i.clone() + past_len as i64,
        },
    );

    // Scores, capped and biased, into the row; the raw/capped/biased
    // scores are also the qk output when it is asked for.
    let qk_out = (n_out > 3).then(|| cx.out_buf(3));
    let mode = op.qk_matmul_output_mode;
    let qk_at = |bh: &Expr, i: &Expr, j: &Expr| {
        (bh.clone() * q.s as i64 + i.clone()) * total as i64 + j.clone()
    };
    let d = q.d;
    let softcap = op.softcap as f64;
    keys.for_each(cx, "j", &bi, &kvh_i, &mut |cx, j, kbuf, kbase| {
        let acc = cx.b.decl("dot", Expr::constant(0.0, vty));
        vector_loop(cx, "e", d, vl, &mut |cx, e, m| {
            let qv = Expr::load_vec(qb, qbase.clone() + e.clone(), vl, 1, m.clone());
            let kv = Expr::load_vec(kbuf, kbase.clone() + e, vl, 1, m);
            cx.b.assign(acc, Expr::mul_add(qv, kv, Expr::Var(acc)));
            Ok(())
        })?;
        let s = Expr::Reduce(ReduceOp::Add, Box::new(Expr::Var(acc)));
        let s = cx.b.let_("s", Expr::bin(BinOp::Mul, s, c(root * root)));
        if let (Some(o), 0) = (qk_out, mode) {
            cx.b.store(o, qk_at(&bh, &i, &j), s.clone());
        }
        let s = if softcap > 0.0 {
            let t = Expr::Call(
                if dt == DType::F64 { "tanh" } else { "tanhf" }.into(),
                vec![Expr::bin(BinOp::Div, s, c(softcap))],
                ty,
            );
            cx.b.let_("capped", Expr::bin(BinOp::Mul, t, c(softcap)))
        } else {
            s
        };
        if let (Some(o), 1) = (qk_out, mode) {
            cx.b.store(o, qk_at(&bh, &i, &j), s.clone());
        }
        let bias = bias_at(
            &op,
            mask.as_ref(),
            q,
            &bi,
            &hi,
            &i,
            &j,
            &pos,
            nonpad.map(|np| (np, bi.clone())),
            dt,
        )?;
        let logit = match bias {
            Some(b) => cx.b.let_("logit", Expr::bin(BinOp::Add, s, b)),
            None => s,
        };
        if let (Some(o), 2) = (qk_out, mode) {
            cx.b.store(o, qk_at(&bh, &i, &j), logit.clone());
        }
        cx.b.store(scores, row0.clone() + j, logit);
        Ok(())
    })?;

    // Softmax over the row (three passes over scratch that stays in cache).
    let mx = cx.b.decl("max", c(f64::NEG_INFINITY));
    let j = cx.b.begin_for("j", 0, total, 1, LoopKind::Serial);
    let x = Expr::load(scores, row0.clone() + j);
    cx.b.assign(mx, Expr::bin(BinOp::Max, Expr::Var(mx), x));
    cx.b.end_for();
    let shift = cx.b.let_(
        "shift",
        Expr::select(
            Expr::bin(BinOp::Eq, Expr::Var(mx), c(f64::NEG_INFINITY)),
            c(0.0),
            Expr::Var(mx),
        ),
    );
    let sum = cx.b.decl("sum", c(0.0));
    let j = cx.b.begin_for("j", 0, total, 1, LoopKind::Serial);
    let x = Expr::load(scores, row0.clone() + j.clone());
    let e = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, x, shift.clone()));
    let e = cx.b.let_("e", e);
    cx.b.store(scores, row0.clone() + j, e.clone());
    cx.b.assign(sum, Expr::bin(BinOp::Add, Expr::Var(sum), e));
    cx.b.end_for();
    let inv = cx.b.let_(
        "inv",
        Expr::bin(
            BinOp::Div,
            c(1.0),
            Expr::select(
                Expr::bin(BinOp::Eq, Expr::Var(sum), c(0.0)),
                c(1.0),
                Expr::Var(sum),
            ),
        ),
    );
    let j = cx.b.begin_for("j", 0, total, 1, LoopKind::Serial);
    let at = row0.clone() + j.clone();
    let p = cx.b.let_(
        "p",
        Expr::bin(BinOp::Mul, Expr::load(scores, at.clone()), inv.clone()),
    );
    cx.b.store(scores, at, p.clone());
    if let (Some(o), 3) = (qk_out, mode) {
        cx.b.store(o, qk_at(&bh, &i, &j), p);
    }
    cx.b.end_for();

    // Output row: probabilities times V, a vector of the value head at a time.
    let y_l = Heads {
        b: q.b,
        h: q.h,
        s: q.s,
        d: v.d,
        packed: q.packed,
    };
    let dv = v.d;
    vector_loop(cx, "e", dv, vl, &mut |cx, e, m| {
        let acc = cx.b.decl("y", Expr::constant(0.0, vty));
        vals.for_each(cx, "j", &bi, &kvh_i, &mut |cx, j, vbuf, vbase| {
            let p = Expr::load(scores, row0.clone() + j).splat(vl);
            let vv = Expr::load_vec(vbuf, vbase + e.clone(), vl, 1, m.clone());
            cx.b.assign(acc, Expr::mul_add(p, vv, Expr::Var(acc)));
            Ok(())
        })?;
        let idx = if y_l.packed {
            vec![bi.clone(), i.clone(), hi.clone() * dv as i64 + e.clone()]
        } else {
            vec![bi.clone(), hi.clone(), i.clone(), e]
        };
        cx.store_out(&idx, Expr::Var(acc), m)
    })?;
    cx.b.end_for();
    cx.b.end_for();
    copy_present(cx, &keys, &vals, q.b, k.h, k.d, v.d, n_out)
}

/// The additive bias of key `j` for query row `i`: the mask (bool as 0 or
/// -inf, -inf past its last key), then -inf where the causal frontier, the
/// window or the padding forbids the key. `None` when nothing applies.
#[allow(clippy::too_many_arguments)]
fn bias_at(
    op: &saturn_ir::ops::Attention,
    mask: Option<&(BufId, Vec<usize>, DType)>,
    q: Heads,
    b: &Expr,
    h: &Expr,
    i: &Expr,
    j: &Expr,
    pos: &Expr,
    nonpad: Option<(BufId, Expr)>,
    dt: DType,
) -> Result<Option<Expr>, Unsupported> {
    let ty = Ty::scalar(dt);
    let ninf = Expr::constant(f64::NEG_INFINITY, ty);
    let mut bias = None;
    if let Some((m, shape, mdt)) = mask {
        let mut ms = vec![1usize; 4 - shape.len()];
        ms.extend_from_slice(shape);
        let want = [q.b, q.h, q.s];
        if (0..3).any(|d| ms[d] != 1 && ms[d] != want[d]) {
            return unsupported("attention mask that does not broadcast");
        }
        let keys = ms[3];
        let st = saturn_ir::tensor::strides(&ms);
        let mut at = Expr::idx(0);
        for (d, ix) in [b, h, i].into_iter().enumerate() {
            if ms[d] != 1 {
                at = at + ix.clone() * st[d] as i64;
            }
        }
        if keys == 0 {
            bias = Some(ninf.clone());
        } else {
            let jj = j.clone().min(Expr::idx(keys as i64 - 1));
            let raw = Expr::load(*m, at + jj);
            let val = match mdt {
                DType::Bool => Expr::select(raw, Expr::constant(0.0, ty), ninf.clone()),
                d if *d == dt => raw,
                d if d.is_float() => raw.cast(dt),
                _ => return unsupported("attention mask of an integer dtype"),
            };
            // Keys past the mask's last one are masked.
            let inside = j.clone().lt(Expr::idx(keys as i64));
            bias = Some(Expr::select(inside, val, ninf.clone()));
        }
    }
    let windowed = op.left_window_size >= 0 || op.right_window_size >= 0;
    if op.is_causal || windowed || nonpad.is_some() {
        let mut allowed: Option<Expr> = None;
        let mut and = |c: Expr| {
            allowed = Some(match allowed.take() {
                Some(a) => Expr::bin(BinOp::And, a, c),
                None => c,
            })
        };
        if op.is_causal {
            and(Expr::bin(BinOp::Le, j.clone(), pos.clone()));
        }
        if op.left_window_size >= 0 {
            and(Expr::bin(
                BinOp::Le,
                pos.clone() - j.clone(),
                Expr::idx(op.left_window_size),
            ));
        }
        if op.right_window_size >= 0 {
            and(Expr::bin(
                BinOp::Le,
                j.clone() - pos.clone(),
                Expr::idx(op.right_window_size),
            ));
        }
        if let Some((np, bi)) = nonpad {
            and(j.clone().lt(Expr::load(np, bi)));
        }
        let allowed = allowed.expect("a condition");
        let base = bias.unwrap_or(Expr::constant(0.0, ty));
        bias = Some(Expr::select(
            allowed,
            base.clone(),
            Expr::bin(BinOp::Add, base, ninf),
        ));
    }
    Ok(bias)
}

/// The present key and value outputs: past then new, `[b, kv heads, total, d]`.
#[allow(clippy::too_many_arguments)]
fn copy_present(
    cx: &mut NodeCx,
    keys: &KeySource,
    vals: &KeySource,
    b: usize,
    h: usize,
    dk: usize,
    dv: usize,
    n_out: usize,
) -> Result<(), Unsupported> {
    let vl = cx.lanes(DType::F32);
    for (o, src, d) in [(1, keys, dk), (2, vals, dv)] {
        if n_out <= o {
            continue;
        }
        let out = cx.out_buf(o);
        let total = src.past_len() + src.new_l.s;
        let bi = cx.b.begin_for("pb", 0, b, 1, LoopKind::Serial);
        let hi = cx.b.begin_for("ph", 0, h, 1, LoopKind::Serial);
        src.for_each(cx, "pj", &bi, &hi, &mut |cx, j, buf, base| {
            let dst = ((bi.clone() * h as i64 + hi.clone()) * total as i64 + j) * d as i64;
            vector_loop(cx, "pe", d, vl, &mut |cx, e, m| {
                let x = Expr::load_vec(buf, base.clone() + e.clone(), vl, 1, m.clone());
                cx.b.store_vec(out, dst.clone() + e, x, 1, m);
                Ok(())
            })
        })?;
        cx.b.end_for();
        cx.b.end_for();
    }
    Ok(())
}
