//! Attention in register blocks, for the common case (f32, no past keys,
//! no extra outputs, a plain additive or boolean mask or none): per
//! (batch, head), `K` is transposed once into scratch, then blocks of `R`
//! query rows get their scores a vector of keys at a time (`R` broadcast
//! query values × one vector of transposed keys per step of the head
//! size), a vectorised softmax over each score row (exponentials in the
//! IR's polynomial form), and the output as `R` rows × the value head in
//! vectors, a broadcast probability per key.

use super::Heads;
use crate::lower::Unsupported;
use crate::lower::cx::NodeCx;
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, ReduceOp, Ty, VarId, math};
use saturn_ir::{AttrValue, DType};

/// Query rows per block.
const R: usize = 4;
/// Vectors of the value head held per row at once.
const MAX_V: usize = 4;

/// What the blocked kernel needs to know.
pub(super) struct Blocked {
    pub q: Heads,
    pub k: Heads,
    pub v: Heads,
    /// Query heads per key/value head.
    pub group: usize,
    pub qb: BufId,
    pub kb: BufId,
    pub vb: BufId,
    /// The mask, its shape padded to 4-D, and its dtype.
    pub mask: Option<(BufId, [usize; 4], DType)>,
    pub scale: f64,
}

impl Blocked {
    pub fn lower(&self, cx: &mut NodeCx) -> Result<(), Unsupported> {
        let (q, k) = (self.q, self.k);
        let l = cx.lanes(DType::F32);
        let vl = l as usize;
        let total = k.s;
        let tp = total.div_ceil(vl) * vl;
        let rows = q.b * q.h;
        cx.schedule("parallel", AttrValue::Str("batch_head".into()));
        cx.schedule("vector", AttrValue::Int(vl as i64));
        cx.schedule("softmax", AttrValue::Str("three_pass".into()));
        cx.schedule("attention", AttrValue::Str("blocked".into()));
        cx.schedule("rows", AttrValue::Int(R as i64));
        let kt = cx.scratch("kt", DType::F32, rows * q.d * tp);
        let scores = cx.scratch("scores", DType::F32, rows * R * tp);
        let bh = cx.b.begin_for("bh", 0, rows, 1, LoopKind::Parallel);
        let bi = cx.b.let_("b", bh.clone() / q.h as i64);
        let hi = cx.b.let_("h", bh.clone() % q.h as i64);
        let kvh = cx.b.let_("kvh", hi.clone() / self.group as i64);
        let ktb = cx.b.let_("ktb", bh.clone() * (q.d * tp) as i64);
        let sb = cx.b.let_("sb", bh * (R * tp) as i64);
        // Kᵀ of this head, keys past the last zero.
        let j = cx.b.begin_for("tj", 0, tp, 1, LoopKind::Serial);
        let e = cx.b.begin_for("te", 0, q.d, 1, LoopKind::Serial);
        let src = k.at(&bi, &kvh, &j.clone().min(Expr::idx(total as i64 - 1)), &e);
        let x = Expr::select(
            j.clone().lt(Expr::idx(total as i64)),
            Expr::load(self.kb, src),
            Expr::f32(0.0),
        );
        cx.b.store(kt, ktb.clone() + e * tp as i64 + j, x);
        cx.b.end_for();
        cx.b.end_for();
        let full = q.s / R * R;
        let at = Rows {
            b: &bi,
            h: &hi,
            kvh: &kvh,
            ktb: &ktb,
            sb: &sb,
            kt,
            scores,
            tp,
            l,
        };
        if full > 0 {
            let i0 = cx.b.begin_for("i0", 0, full, R as i64, LoopKind::Serial);
            self.block(cx, &at, &i0, R)?;
            cx.b.end_for();
        }
        if full < q.s {
            self.block(cx, &at, &Expr::idx(full as i64), q.s - full)?;
        }
        cx.b.end_for();
        Ok(())
    }

    /// Query rows `i0 .. i0 + rc` (`rc ≤ R`).
    fn block(&self, cx: &mut NodeCx, at: &Rows, i0: &Expr, rc: usize) -> Result<(), Unsupported> {
        let (q, v) = (self.q, self.v);
        let (l, tp) = (at.l, at.tp);
        let vl = l as usize;
        let total = self.k.s;
        let vty = Ty::vector(DType::F32, l);
        let zero = || Expr::constant(0.0, vty);
        // Scores: a vector of keys at a time, `rc` rows.
        let jv = cx.b.begin_for("jv", 0, tp, vl as i64, LoopKind::Serial);
        let acc: Vec<VarId> = (0..rc)
            .map(|r| cx.b.decl(&format!("s{r}"), zero()))
            .collect();
        let e = cx.b.begin_for("e", 0, q.d, 1, LoopKind::Serial);
        let kv = cx.b.let_(
            "kv",
            Expr::load_vec(
                at.kt,
                at.ktb.clone() + e.clone() * tp as i64 + jv.clone(),
                l,
                1,
                None,
            ),
        );
        for (r, &a) in acc.iter().enumerate() {
            let qi = i0.clone() + r as i64;
            let qv = Expr::load(self.qb, q.at(at.b, at.h, &qi, &e)).splat(l);
            cx.b.assign(a, Expr::mul_add(qv, kv.clone(), Expr::Var(a)));
        }
        cx.b.end_for();
        let scale = Expr::constant(self.scale, vty);
        for (r, &a) in acc.iter().enumerate() {
            let mut s = Expr::bin(BinOp::Mul, Expr::Var(a), scale.clone());
            if let Some(m) = self.mask_vec(at, &(i0.clone() + r as i64), &jv, l) {
                s = Expr::bin(BinOp::Add, s, m);
            }
            cx.b.store_vec(
                at.scores,
                at.sb.clone() + (r * tp) as i64 + jv.clone(),
                s,
                1,
                None,
            );
        }
        cx.b.end_for();
        // Softmax of each row over its `total` keys (whole vectors, then a
        // scalar tail); the normalisation is left to the output.
        let tfull = total / vl * vl;
        for r in 0..rc {
            let row = at.sb.clone() + (r * tp) as i64;
            let load = |j: Expr| Expr::load_vec(at.scores, row.clone() + j, l, 1, None);
            let mx = cx.b.decl("mxv", Expr::constant(f64::NEG_INFINITY, vty));
            if tfull > 0 {
                let j = cx.b.begin_for("mj", 0, tfull, vl as i64, LoopKind::Serial);
                cx.b.assign(mx, Expr::bin(BinOp::Max, Expr::Var(mx), load(j)));
                cx.b.end_for();
            }
            let m =
                cx.b.decl("mx", Expr::Reduce(ReduceOp::Max, Box::new(Expr::Var(mx))));
            for j in tfull..total {
                let x = Expr::load(at.scores, row.clone() + j as i64);
                cx.b.assign(m, Expr::bin(BinOp::Max, Expr::Var(m), x));
            }
            let shift = cx.b.let_(
                "shift",
                Expr::select(
                    Expr::bin(BinOp::Eq, Expr::Var(m), Expr::f32(f32::NEG_INFINITY)),
                    Expr::f32(0.0),
                    Expr::Var(m),
                ),
            );
            let sv = cx.b.decl("sumv", zero());
            if tfull > 0 {
                let j = cx.b.begin_for("xj", 0, tfull, vl as i64, LoopKind::Serial);
                let x = Expr::bin(BinOp::Sub, load(j.clone()), shift.clone().splat(l));
                let ex = math::exp(&mut cx.b, x);
                let ex = cx.b.let_("ex", ex);
                cx.b.store_vec(at.scores, row.clone() + j, ex.clone(), 1, None);
                cx.b.assign(sv, Expr::bin(BinOp::Add, Expr::Var(sv), ex));
                cx.b.end_for();
            }
            let sum =
                cx.b.decl("sum", Expr::Reduce(ReduceOp::Add, Box::new(Expr::Var(sv))));
            for j in tfull..total {
                let x = Expr::load(at.scores, row.clone() + j as i64);
                let ex = math::exp(&mut cx.b, Expr::bin(BinOp::Sub, x, shift.clone()));
                let ex = cx.b.let_("ex", ex);
                cx.b.store(at.scores, row.clone() + j as i64, ex.clone());
                cx.b.assign(sum, Expr::bin(BinOp::Add, Expr::Var(sum), ex));
            }
            // A row whose every key is masked gives zeros.
            let s = Expr::Var(sum);
            let iv = Expr::bin(
                BinOp::Div,
                Expr::f32(1.0),
                Expr::select(
                    Expr::bin(BinOp::Eq, s.clone(), Expr::f32(0.0)),
                    Expr::f32(1.0),
                    s,
                ),
            );
            let iv = cx.b.let_("inv", iv);
            // Probabilities, as softmax-then-matmul forms them.
            let j = cx.b.begin_for("pj", 0, tp, vl as i64, LoopKind::Serial);
            let p = Expr::bin(BinOp::Mul, load(j.clone()), iv.splat(l));
            cx.b.store_vec(at.scores, row.clone() + j, p, 1, None);
            cx.b.end_for();
        }
        // Output: `rc` rows × up to MAX_V vectors of the value head.
        let dv = v.d;
        let nvec = dv.div_ceil(vl);
        let mut c0 = 0;
        while c0 < nvec {
            let cn = (nvec - c0).min(MAX_V);
            let masks: Vec<Option<Expr>> = (c0..c0 + cn)
                .map(|c| {
                    let rest = dv - c * vl;
                    (rest < vl).then(|| Expr::idx(rest as i64))
                })
                .collect();
            let acc: Vec<VarId> = (0..rc * cn)
                .map(|x| cx.b.decl(&format!("y{x}"), zero()))
                .collect();
            let j = cx.b.begin_for("j", 0, total, 1, LoopKind::Serial);
            let vv: Vec<Expr> = (0..cn)
                .map(|c| {
                    let e = Expr::idx(((c0 + c) * vl) as i64);
                    let x =
                        Expr::load_vec(self.vb, v.at(at.b, at.kvh, &j, &e), l, 1, masks[c].clone());
                    cx.b.let_(&format!("v{c}"), x)
                })
                .collect();
            for r in 0..rc {
                let p = cx.b.let_(
                    &format!("p{r}"),
                    Expr::load(at.scores, at.sb.clone() + (r * tp) as i64 + j.clone()).splat(l),
                );
                for c in 0..cn {
                    let a = acc[r * cn + c];
                    cx.b.assign(a, Expr::mul_add(p.clone(), vv[c].clone(), Expr::Var(a)));
                }
            }
            cx.b.end_for();
            for r in 0..rc {
                let qi = i0.clone() + r as i64;
                for c in 0..cn {
                    let e = Expr::idx(((c0 + c) * vl) as i64);
                    let y = Expr::Var(acc[r * cn + c]);
                    let idx = if q.packed {
                        vec![at.b.clone(), qi.clone(), at.h.clone() * dv as i64 + e]
                    } else {
                        vec![at.b.clone(), at.h.clone(), qi.clone(), e]
                    };
                    cx.store_out(&idx, y, masks[c].clone())?;
                }
            }
            c0 += cn;
        }
        Ok(())
    }

    /// The mask for query row `i`, keys `j .. j + l` (its last dim is the
    /// keys', so lanes past the last key read zeros, and are never used),
    /// or `None` without a mask.
    fn mask_vec(&self, at: &Rows, i: &Expr, j: &Expr, l: u16) -> Option<Expr> {
        let (m, ms, mdt) = self.mask?;
        let vty = Ty::vector(DType::F32, l);
        let st = saturn_ir::tensor::strides(&ms);
        let mut base = Expr::idx(0);
        for (d, ix) in [at.b, at.h, i].into_iter().enumerate() {
            if ms[d] != 1 {
                base = base + ix.clone() * st[d] as i64;
            }
        }
        let rest = Expr::idx(ms[3] as i64) - j.clone();
        let mask = (!ms[3].is_multiple_of(l as usize)).then_some(rest);
        let raw = Expr::load_vec(m, base + j.clone(), l, 1, mask);
        Some(match mdt {
            DType::Bool => Expr::select(
                raw,
                Expr::constant(0.0, vty),
                Expr::constant(f64::NEG_INFINITY, vty),
            ),
            _ => raw,
        })
    }
}

/// Where the block reads and writes, for one (batch, head).
struct Rows<'a> {
    b: &'a Expr,
    h: &'a Expr,
    kvh: &'a Expr,
    ktb: &'a Expr,
    sb: &'a Expr,
    kt: BufId,
    scores: BufId,
    tp: usize,
    l: u16,
}
