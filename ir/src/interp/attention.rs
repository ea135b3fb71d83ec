//! Attention, rotary embeddings, linear attention and the causal
//! convolution of state-space models.
//!
//! The math is done in f64, but each step is rounded to the type the ONNX
//! reference computes it in (see [`Prec`]): with f16 and bf16 inputs the
//! reference's intermediate roundings are large enough to show in results.

use half::{bf16, f16};

use super::kernels::*;
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::invalid;
use crate::ops::*;
use crate::tensor::Tensor;

/// Rounding to a float type after each arithmetic step, the way numpy (and
/// ml_dtypes for bf16) computes in that type: f16 and bf16 operations are
/// done in f32 and rounded.
#[derive(Clone, Copy, Debug)]
struct Prec(DType);

impl Prec {
    fn round(self, x: f64) -> f64 {
        match self.0 {
            DType::F32 => x as f32 as f64,
            DType::F16 => f16::from_f32(x as f32).to_f64(),
            DType::BF16 => bf16::from_f32(x as f32).to_f64(),
            _ => x,
        }
    }

    /// A sum as numpy computes it: bf16 rounds after every addition, the
    /// other types accumulate in a wider type and round once.
    fn sum(self, xs: impl Iterator<Item = f64>) -> f64 {
        if self.0 == DType::BF16 {
            xs.fold(0.0, |acc, x| self.round(acc + x))
        } else {
            self.round(xs.sum())
        }
    }

    /// A dot product, accumulated wide and rounded once (numpy's matmul
    /// for f16, f32 and f64; bf16 is promoted to f32 and cast back).
    fn dot(self, a: &[f64], b: impl Iterator<Item = f64>) -> f64 {
        self.round(a.iter().zip(b).map(|(x, y)| x * y).sum())
    }
}

/// The element count of a shape computed from several inputs, checked
/// against Saturn's limit before anything of that size is allocated or
/// iterated.
fn checked(dims: &[usize]) -> Result<usize, OpError> {
    let dims: Vec<i64> = dims
        .iter()
        .map(|&d| d.min(i64::MAX as usize) as i64)
        .collect();
    Ok(checked_shape(&dims)?.iter().product())
}

fn float_input<'a>(cx: &EvalCx<'a>, i: usize, what: &str) -> Result<&'a Tensor, OpError> {
    let t = cx.input(i)?;
    if !is_attention_float(t.dtype()) {
        return invalid!("{what} must be a float tensor, got {}", t.dtype());
    }
    Ok(t)
}

/// A tensor as `[batch, heads, seq, size]` values in row-major order.
#[derive(Clone, Debug)]
struct Heads {
    data: Vec<f64>,
    b: usize,
    h: usize,
    s: usize,
    d: usize,
}

impl Heads {
    /// The `size` values of one (batch, head, position).
    fn row(&self, b: usize, h: usize, s: usize) -> &[f64] {
        let o = ((b * self.h + h) * self.s + s) * self.d;
        &self.data[o..o + self.d]
    }

    /// A 4-D tensor as it is, or a 3-D `[batch, seq, heads × size]` one
    /// split into `heads` and moved to the head-major layout.
    fn from_tensor(t: &Tensor, heads: Option<usize>, what: &str) -> Result<Heads, OpError> {
        let v = t.to_f64_vec();
        match (t.shape(), heads) {
            (&[b, h, s, d], _) => Ok(Heads {
                data: v,
                b,
                h,
                s,
                d,
            }),
            (&[b, s, hidden], Some(h)) => {
                if h == 0 || hidden % h != 0 {
                    return invalid!("{what}: hidden size {hidden} does not split into {h} heads");
                }
                // Bounds the loops below when the tensor is empty.
                checked(&[b, h, s])?;
                let d = hidden / h;
                let mut data = Vec::with_capacity(v.len());
                for bi in 0..b {
                    for hi in 0..h {
                        for si in 0..s {
                            let o = (bi * s + si) * hidden + hi * d;
                            data.extend_from_slice(&v[o..o + d]);
                        }
                    }
                }
                Ok(Heads { data, b, h, s, d })
            }
            (s, _) => invalid!("{what} must be 3-D or 4-D, got shape {s:?}"),
        }
    }

    /// Back to `[batch, seq, heads × size]`.
    fn merged(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.data.len());
        for b in 0..self.b {
            for s in 0..self.s {
                for h in 0..self.h {
                    out.extend_from_slice(self.row(b, h, s));
                }
            }
        }
        out
    }

    /// `past` followed by `self` along the sequence.
    fn after(&self, past: &Heads, what: &str) -> Result<Heads, OpError> {
        if (past.b, past.h, past.d) != (self.b, self.h, self.d) {
            return invalid!(
                "{what} has shape {:?}, which does not fit batch {}, {} heads of size {}",
                [past.b, past.h, past.s, past.d],
                self.b,
                self.h,
                self.d
            );
        }
        let s = past.s + self.s;
        let mut data = Vec::with_capacity(self.b * self.h * s * self.d);
        for b in 0..self.b {
            for h in 0..self.h {
                for si in 0..past.s {
                    data.extend_from_slice(past.row(b, h, si));
                }
                for si in 0..self.s {
                    data.extend_from_slice(self.row(b, h, si));
                }
            }
        }
        Ok(Heads { data, s, ..*self })
    }

    fn shape(&self) -> Vec<usize> {
        vec![self.b, self.h, self.s, self.d]
    }
}

/// Softmax of one row in precision `p`. A row with no finite maximum
/// (all `-inf`) gives zeros rather than NaN, as ONNX's Attention requires.
fn softmax_row(row: &mut [f64], p: Prec) {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| {
        if m.is_nan() || x.is_nan() {
            f64::NAN
        } else {
            m.max(x)
        }
    });
    let shift = if max == f64::NEG_INFINITY { 0.0 } else { max };
    for x in row.iter_mut() {
        *x = p.round(p.round(*x - shift).exp());
    }
    let mut s = p.sum(row.iter().copied());
    if s == 0.0 {
        s = 1.0;
    }
    for x in row.iter_mut() {
        *x = p.round(*x / s);
    }
}

/// The sizes of one Attention evaluation.
struct Dims {
    b: usize,
    hq: usize,
    sq: usize,
    total: usize,
    past: usize,
}

impl Attention {
    /// The additive bias `[b, hq, sq, total]`: the mask (bool as 0/-inf,
    /// numbers as they are, padded with -inf up to `total` keys), then -inf
    /// where the causal frontier, the window or the padding of
    /// `nonpad_kv_seqlen` forbids a key.
    fn bias(
        &self,
        mask: Option<&Tensor>,
        dims: &Dims,
        nonpad: Option<&[i64]>,
        p: Prec,
    ) -> Result<Vec<f64>, OpError> {
        let Dims {
            b,
            hq,
            sq,
            total,
            past,
        } = *dims;
        let mut bias = vec![0.0; checked(&[b, hq, sq, total])?];
        if let Some(m) = mask {
            let r = m.rank();
            if r == 0 || r > 4 {
                return invalid!("attn_mask must have rank 1 to 4, got {r}");
            }
            let vals: Vec<f64> = if m.dtype() == DType::Bool {
                let v = m.as_slice::<bool>().unwrap_or(&[]);
                v.iter()
                    .map(|&a| if a { 0.0 } else { f64::NEG_INFINITY })
                    .collect()
            } else {
                to_f64(m, "attn_mask")?
                    .into_iter()
                    .map(|x| p.round(x))
                    .collect()
            };
            let mut ms = vec![1usize; 4 - r];
            ms.extend_from_slice(m.shape());
            let keys = ms[3];
            if keys > total {
                return invalid!("attn_mask has {keys} keys, more than the {total} there are");
            }
            let want = [b, hq, sq];
            if (0..3).any(|i| ms[i] != 1 && ms[i] != want[i]) {
                return invalid!(
                    "attn_mask of shape {:?} does not broadcast to {:?}",
                    m.shape(),
                    [b, hq, sq, total]
                );
            }
            let st = crate::tensor::strides(&ms);
            let st: Vec<usize> = (0..3).map(|i| if ms[i] == 1 { 0 } else { st[i] }).collect();
            let mut o = 0;
            for bi in 0..b {
                for h in 0..hq {
                    for i in 0..sq {
                        let base = bi * st[0] + h * st[1] + i * st[2];
                        for j in 0..total {
                            bias[o] = if j < keys {
                                vals[base + j]
                            } else {
                                f64::NEG_INFINITY
                            };
                            o += 1;
                        }
                    }
                }
            }
        }
        let windowed = self.left_window_size >= 0 || self.right_window_size >= 0;
        if !self.is_causal && !windowed && nonpad.is_none() {
            return Ok(bias);
        }
        for bi in 0..b {
            // Keys that precede the query block: the internal cache, or
            // the external one's valid keys beyond the queries.
            let offset = match nonpad {
                Some(np) => np[bi].saturating_sub(sq as i64),
                None => past as i64,
            };
            for i in 0..sq {
                let pos = offset.saturating_add(i as i64);
                for j in 0..total {
                    let jj = j as i64;
                    let allowed = (!self.is_causal || jj <= pos)
                        && (self.left_window_size < 0
                            || pos.saturating_sub(jj) <= self.left_window_size)
                        && (self.right_window_size < 0
                            || jj.saturating_sub(pos) <= self.right_window_size)
                        && nonpad.is_none_or(|np| jj < np[bi]);
                    if !allowed {
                        for h in 0..hq {
                            bias[((bi * hq + h) * sq + i) * total + j] += f64::NEG_INFINITY;
                        }
                    }
                }
            }
        }
        Ok(bias)
    }
}

fn positive(v: Option<i64>, name: &str) -> Result<usize, OpError> {
    match v {
        Some(h) if h > 0 => Ok(h as usize),
        _ => invalid!("`{name}` must be given and positive with 3-D inputs"),
    }
}

impl Eval for Attention {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        self.check_attrs()?;
        let q = float_input(cx, 0, "Q")?;
        let k = float_input(cx, 1, "K")?;
        let v = float_input(cx, 2, "V")?;
        let (t1, t2) = (q.dtype(), v.dtype());
        if k.dtype() != t1 {
            return invalid!("Q and K have different types {t1} and {}", k.dtype());
        }
        let rank = q.rank();
        if k.rank() != rank || v.rank() != rank {
            return invalid!("Q, K and V must have the same rank");
        }
        let (hq, hkv) = match rank {
            3 => (
                Some(positive(self.q_num_heads, "q_num_heads")?),
                Some(positive(self.kv_num_heads, "kv_num_heads")?),
            ),
            4 => (None, None),
            r => return invalid!("Q, K and V must be 3-D or 4-D, got rank {r}"),
        };
        let q4 = Heads::from_tensor(q, hq, "Q")?;
        let mut k4 = Heads::from_tensor(k, hkv, "K")?;
        let mut v4 = Heads::from_tensor(v, hkv, "V")?;
        if k4.b != q4.b || v4.b != q4.b {
            return invalid!("Q, K and V have different batch sizes");
        }
        if k4.h != v4.h || k4.s != v4.s {
            return invalid!("K and V have different heads or sequence lengths");
        }
        if k4.d != q4.d {
            return invalid!("Q and K have different head sizes {} and {}", q4.d, k4.d);
        }
        if k4.h == 0 || q4.h % k4.h != 0 {
            return invalid!(
                "{} query heads do not group over {} key/value heads",
                q4.h,
                k4.h
            );
        }
        let mut past = 0;
        match (cx.opt_input(4), cx.opt_input(5)) {
            (None, None) => {}
            (Some(pk), Some(pv)) => {
                if pk.rank() != 4 || pv.rank() != 4 {
                    return invalid!("past_key and past_value must be 4-D");
                }
                if pk.dtype() != t1 || pv.dtype() != t2 {
                    return invalid!("past_key and past_value must have K's and V's types");
                }
                past = pk.shape()[2];
                if pv.shape()[2] != past {
                    return invalid!("past_key and past_value have different lengths");
                }
                k4 = k4.after(&Heads::from_tensor(pk, None, "past_key")?, "past_key")?;
                v4 = v4.after(&Heads::from_tensor(pv, None, "past_value")?, "past_value")?;
            }
            _ => return invalid!("past_key and past_value must be given together"),
        }
        let nonpad = match cx.opt_input(6) {
            None => None,
            Some(_) if past > 0 || cx.opt_input(4).is_some() => {
                return invalid!("nonpad_kv_seqlen cannot be used with past_key/past_value");
            }
            Some(t) if t.dtype() != DType::I64 || t.numel() != q4.b => {
                return invalid!("nonpad_kv_seqlen must be {} i64 values", q4.b);
            }
            Some(t) => Some(t.to_i64_vec()),
        };
        let dims = Dims {
            b: q4.b,
            hq: q4.h,
            sq: q4.s,
            total: k4.s,
            past,
        };
        let p1 = Prec(t1);
        let bias = self.bias(cx.opt_input(3), &dims, nonpad.as_deref(), p1)?;
        let (b, hq, sq, total) = (dims.b, dims.hq, dims.sq, dims.total);
        let group = q4.h / k4.h;

        // Scores: Q and K each scaled by √scale, in T1.
        let scale = match self.scale {
            Some(s) => s as f64,
            None => 1.0 / (q4.d as f64).sqrt(),
        };
        let root = p1.round(scale.sqrt());
        let qs: Vec<f64> = q4.data.iter().map(|&x| p1.round(x * root)).collect();
        let ks: Vec<f64> = k4.data.iter().map(|&x| p1.round(x * root)).collect();
        let (qs, ks) = (
            Heads { data: qs, ..q4 },
            Heads {
                data: ks,
                ..k4.clone()
            },
        );
        let mut scores = Vec::with_capacity(bias.len());
        for bi in 0..b {
            for h in 0..hq {
                for i in 0..sq {
                    let qrow = qs.row(bi, h, i);
                    for j in 0..total {
                        let krow = ks.row(bi, h / group, j);
                        scores.push(p1.dot(qrow, krow.iter().copied()));
                    }
                }
            }
        }
        let raw = (self.qk_matmul_output_mode == 0 && cx.num_outputs > 3).then(|| scores.clone());
        if self.softcap > 0.0 {
            let c = p1.round(self.softcap as f64);
            for x in scores.iter_mut() {
                *x = p1.round(p1.round(p1.round(*x / c).tanh()) * c);
            }
        }
        let capped =
            (self.qk_matmul_output_mode == 1 && cx.num_outputs > 3).then(|| scores.clone());
        let mut logits: Vec<f64> = scores
            .iter()
            .zip(&bias)
            .map(|(&s, &m)| p1.round(s + m))
            .collect();
        let biased =
            (self.qk_matmul_output_mode == 2 && cx.num_outputs > 3).then(|| logits.clone());

        // Softmax in softmax_precision, then back to T1. A query that may
        // attend no key at all (its bias is all -inf) gets a zero row.
        let ps = Prec(self.softmax_precision.unwrap_or(t1));
        if total > 0 {
            for (row, brow) in logits.chunks_mut(total).zip(bias.chunks(total)) {
                for x in row.iter_mut() {
                    *x = ps.round(*x);
                }
                if brow.iter().all(|&x| x == f64::NEG_INFINITY) {
                    row.fill(0.0);
                } else {
                    softmax_row(row, ps);
                }
                for x in row.iter_mut() {
                    *x = p1.round(*x);
                }
            }
        }
        let probs = logits;

        let dv = v4.d;
        let mut y = Vec::with_capacity(checked(&[b, hq, sq, dv])?);
        for bi in 0..b {
            for h in 0..hq {
                for i in 0..sq {
                    let o = ((bi * hq + h) * sq + i) * total;
                    let prow = &probs[o..o + total];
                    for e in 0..dv {
                        y.push(p1.dot(prow, (0..total).map(|j| v4.row(bi, h / group, j)[e])));
                    }
                }
            }
        }
        let y = Heads {
            data: y,
            b,
            h: hq,
            s: sq,
            d: dv,
        };
        let y = if rank == 3 {
            from_f64(t1, vec![b, sq, hq * dv], y.merged())?
        } else {
            from_f64(t1, y.shape(), y.data)?
        };
        let mut out = vec![y];
        if cx.num_outputs > 1 {
            out.push(from_f64(t1, k4.shape(), k4.data)?);
        }
        if cx.num_outputs > 2 {
            out.push(from_f64(t2, v4.shape(), v4.data)?);
        }
        if cx.num_outputs > 3 {
            let qk = match self.qk_matmul_output_mode {
                0 => raw,
                1 => capped,
                2 => biased,
                _ => Some(probs),
            };
            out.push(from_f64(
                t1,
                vec![b, hq, sq, total],
                qk.unwrap_or_default(),
            )?);
        }
        Ok(out)
    }
}

impl Eval for RotaryEmbedding {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, 0, "the input")?;
        let (cos, sin) = (cx.input(1)?, cx.input(2)?);
        if cos.dtype() != x.dtype() || sin.dtype() != x.dtype() {
            return invalid!("the caches must have the input's type");
        }
        if x.numel() == 0 {
            return Ok(vec![x.clone()]);
        }
        let p = Prec(x.dtype());
        // (batch, seq, heads, head size) and the element stride of a head
        // and of a position.
        let (b, s, h, d, head_st, pos_st) = match *x.shape() {
            [b, h, s, d] => (b, s, h, d, s * d, d),
            [b, s, hidden] => {
                let h = positive(self.num_heads, "num_heads")?;
                if hidden % h != 0 {
                    return invalid!("hidden size {hidden} does not split into {h} heads");
                }
                (b, s, h, hidden / h, hidden / h, hidden)
            }
            _ => return invalid!("the input must be 3-D or 4-D, got {:?}", x.shape()),
        };
        let rd = match self.rotary_embedding_dim {
            0 => d,
            r if r > 0 && r as usize <= d && r % 2 == 0 => r as usize,
            r => return invalid!("rotary_embedding_dim {r} must be even and at most {d}"),
        };
        if rd % 2 != 0 {
            return invalid!("the rotated size {rd} must be even");
        }
        let half = rd / 2;
        if cos.shape() != sin.shape() || cos.shape().last() != Some(&half) {
            return invalid!(
                "the caches ({:?} and {:?}) must end in rotary size / 2 = {half}",
                cos.shape(),
                sin.shape()
            );
        }
        // Row of the caches for each (batch, position).
        let rows: Vec<usize> = match cx.opt_input(3) {
            Some(pos) => {
                if pos.shape() != [b, s] || cos.rank() != 2 {
                    return invalid!(
                        "position_ids must be [{b}, {s}] with 2-D caches, got {:?} and {:?}",
                        pos.shape(),
                        cos.shape()
                    );
                }
                let max = cos.shape()[0];
                pos.to_i64_vec()
                    .into_iter()
                    .map(|i| {
                        if i < 0 || i as usize >= max {
                            invalid!("position id {i} is outside the caches' {max} rows")
                        } else {
                            Ok(i as usize)
                        }
                    })
                    .collect::<Result<_, _>>()?
            }
            None => {
                if cos.shape() != [b, s, half] {
                    return invalid!(
                        "without position_ids the caches must be [{b}, {s}, {half}], got {:?}",
                        cos.shape()
                    );
                }
                (0..b * s).collect()
            }
        };
        let (cv, sv) = (cos.to_f64_vec(), sin.to_f64_vec());
        let xv = x.to_f64_vec();
        let mut out = xv.clone();
        for bi in 0..b {
            for si in 0..s {
                let r = rows[bi * s + si] * half;
                for hi in 0..h {
                    let base = bi * h * s * d + hi * head_st + si * pos_st;
                    // For the 3-D layout a batch spans s × hidden too, so
                    // the batch offset above is the same in both layouts.
                    for i in 0..half {
                        let (i1, i2) = if self.interleaved {
                            (2 * i, 2 * i + 1)
                        } else {
                            (i, i + half)
                        };
                        let (x1, x2) = (xv[base + i1], xv[base + i2]);
                        let (c, sn) = (cv[r + i], sv[r + i]);
                        out[base + i1] = p.round(p.round(c * x1) - p.round(sn * x2));
                        out[base + i2] = p.round(p.round(sn * x1) + p.round(c * x2));
                    }
                }
            }
        }
        Ok(vec![from_f64(x.dtype(), x.shape().to_vec(), out)?])
    }
}

impl Eval for LinearAttention {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let q = float_input(cx, 0, "query")?;
        let k = float_input(cx, 1, "key")?;
        let v = float_input(cx, 2, "value")?;
        let hq = positive(Some(self.q_num_heads), "q_num_heads")?;
        let hkv = positive(Some(self.kv_num_heads), "kv_num_heads")?;
        if hq % hkv != 0 {
            return invalid!("{hq} query heads do not group over {hkv} key/value heads");
        }
        for (t, what) in [(q, "query"), (k, "key"), (v, "value")] {
            if t.rank() != 3 {
                return invalid!("{what} must be 3-D, got {:?}", t.shape());
            }
        }
        let q4 = Heads::from_tensor(q, Some(hq), "query")?;
        let k4 = Heads::from_tensor(k, Some(hkv), "key")?;
        let v4 = Heads::from_tensor(v, Some(hkv), "value")?;
        let (b, t, dk, dv) = (q4.b, q4.s, q4.d, v4.d);
        if (k4.b, k4.s, k4.d) != (b, t, dk) || (v4.b, v4.s) != (b, t) {
            return invalid!("query, key and value do not agree in batch, time or key size");
        }
        let rule = self.update_rule;
        let gating = matches!(
            rule,
            LinearAttentionRule::Gated | LinearAttentionRule::GatedDelta
        );
        let delta = matches!(
            rule,
            LinearAttentionRule::Delta | LinearAttentionRule::GatedDelta
        );
        let per_head =
            |i: usize, what: &str, sizes: &[usize]| -> Result<Option<(Vec<f64>, usize)>, OpError> {
                match cx.opt_input(i) {
                    None => Ok(None),
                    Some(x) => match *x.shape() {
                        [xb, xt, n] if xb == b && xt == t && sizes.contains(&n) => {
                            Ok(Some((to_f64(x, what)?, n)))
                        }
                        _ => invalid!(
                            "{what} must be [{b}, {t}, one of {sizes:?}], got {:?}",
                            x.shape()
                        ),
                    },
                }
            };
        let decay = per_head(4, "decay", &[hkv, hkv * dk])?;
        let beta = per_head(5, "beta", &[hkv, 1])?;
        if gating != decay.is_some() {
            return invalid!(
                "update rule {} {} the decay input",
                rule.onnx_name(),
                if gating { "needs" } else { "forbids" }
            );
        }
        if delta != beta.is_some() {
            return invalid!(
                "update rule {} {} the beta input",
                rule.onnx_name(),
                if delta { "needs" } else { "forbids" }
            );
        }
        let n_state = checked(&[b, hkv, dk, dv])?;
        let (mut state, state_type) = match cx.opt_input(3) {
            Some(s) => {
                if s.shape() != [b, hkv, dk, dv] {
                    return invalid!(
                        "past_state must be {:?}, got {:?}",
                        [b, hkv, dk, dv],
                        s.shape()
                    );
                }
                if !is_attention_float(s.dtype()) {
                    return invalid!("past_state must be a float tensor");
                }
                (s.to_f64_vec(), s.dtype())
            }
            None => (vec![0.0; n_state], q.dtype()),
        };
        let scale = if self.scale == 0.0 {
            1.0 / (dk as f64).sqrt()
        } else {
            self.scale as f64
        };
        let group = hq / hkv;
        let mut out = vec![0.0; checked(&[b, t, hq, dv])?];
        let mut retrieved = vec![0.0; dv];
        let mut upd = vec![0.0; dv];
        for ti in 0..t {
            for bi in 0..b {
                for h in 0..hkv {
                    let st = &mut state[(bi * hkv + h) * dk * dv..][..dk * dv];
                    if let Some((g, n)) = &decay {
                        let row = (bi * t + ti) * n;
                        for d in 0..dk {
                            let gd = if *n == hkv {
                                g[row + h]
                            } else {
                                g[row + h * dk + d]
                            };
                            let f = gd.exp();
                            st[d * dv..(d + 1) * dv].iter_mut().for_each(|x| *x *= f);
                        }
                    }
                    let kt = k4.row(bi, h, ti);
                    upd.copy_from_slice(v4.row(bi, h, ti));
                    if let Some((bt, n)) = &beta {
                        let beta = bt[(bi * t + ti) * n + if *n == 1 { 0 } else { h }];
                        retrieved.fill(0.0);
                        for d in 0..dk {
                            for m in 0..dv {
                                retrieved[m] += st[d * dv + m] * kt[d];
                            }
                        }
                        for m in 0..dv {
                            upd[m] = beta * (upd[m] - retrieved[m]);
                        }
                    }
                    for d in 0..dk {
                        for m in 0..dv {
                            st[d * dv + m] += kt[d] * upd[m];
                        }
                    }
                    for hh in h * group..(h + 1) * group {
                        let qt = q4.row(bi, hh, ti);
                        let o = ((bi * t + ti) * hq + hh) * dv;
                        for m in 0..dv {
                            let s: f64 = (0..dk).map(|d| qt[d] * st[d * dv + m]).sum();
                            out[o + m] = scale * s;
                        }
                    }
                }
            }
        }
        Ok(vec![
            from_f64(q.dtype(), vec![b, t, hq * dv], out)?,
            from_f64(state_type, vec![b, hkv, dk, dv], state)?,
        ])
    }
}

impl Eval for CausalConvWithState {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, 0, "the input")?;
        let w = float_input(cx, 1, "the weight")?;
        let dt = x.dtype();
        let p = Prec(dt);
        let &[b, c, l] = x.shape() else {
            return invalid!("the input must be 3-D, got {:?}", x.shape());
        };
        let k = match *w.shape() {
            [wc, 1, k] if wc == c && k > 0 => k,
            _ => {
                return invalid!(
                    "the weight must be [{c}, 1, k] with k > 0, got {:?}",
                    w.shape()
                );
            }
        };
        let bias = match cx.opt_input(2) {
            Some(t) if t.shape() == [c] => to_f64(t, "bias")?,
            Some(t) => return invalid!("the bias must be [{c}], got {:?}", t.shape()),
            None => vec![0.0; c],
        };
        let keep = k - 1;
        checked(&[b, c, k])?;
        let past = match cx.opt_input(3) {
            Some(t) if t.shape() == [b, c, keep] => to_f64(t, "past_state")?,
            Some(t) => {
                return invalid!("past_state must be [{b}, {c}, {keep}], got {:?}", t.shape());
            }
            None => vec![0.0; b * c * keep],
        };
        let (xv, wv) = (x.to_f64_vec(), w.to_f64_vec());
        let silu = self.activation != CausalConvActivation::None;
        let mut out = Vec::with_capacity(b * c * l);
        let mut state = Vec::with_capacity(b * c * keep);
        let mut padded = Vec::with_capacity(keep + l);
        for bi in 0..b {
            for ci in 0..c {
                let row = bi * c + ci;
                padded.clear();
                padded.extend_from_slice(&past[row * keep..(row + 1) * keep]);
                padded.extend_from_slice(&xv[row * l..(row + 1) * l]);
                let kern = &wv[ci * k..(ci + 1) * k];
                for t in 0..l {
                    let s: f64 = kern.iter().zip(&padded[t..t + k]).map(|(a, x)| a * x).sum();
                    let y = p.round(s + bias[ci]);
                    out.push(if silu {
                        p.round(y / (1.0 + (-y).exp()))
                    } else {
                        y
                    });
                }
                state.extend_from_slice(&padded[padded.len() - keep..]);
            }
        }
        Ok(vec![
            from_f64(dt, vec![b, c, l], out)?,
            from_f64(dt, vec![b, c, keep], state)?,
        ])
    }
}

impl Eval for FlexAttention {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let q = float_input(cx, 0, "Q")?;
        let k = float_input(cx, 1, "K")?;
        let v = float_input(cx, 2, "V")?;
        let t = q.dtype();
        if k.dtype() != t || v.dtype() != t {
            return invalid!("Q, K and V must have the same type");
        }
        let q4 = Heads::from_tensor(q, None, "Q")?;
        let k4 = Heads::from_tensor(k, None, "K")?;
        let v4 = Heads::from_tensor(v, None, "V")?;
        if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
            return invalid!("Q, K and V must be 4-D");
        }
        if k4.b != q4.b || v4.b != q4.b || k4.h != v4.h || k4.s != v4.s || k4.d != q4.d {
            return invalid!(
                "shapes {:?}, {:?} and {:?} do not fit together",
                q.shape(),
                k.shape(),
                v.shape()
            );
        }
        if k4.h == 0 || q4.h % k4.h != 0 {
            return invalid!(
                "{} query heads do not group over {} key/value heads",
                q4.h,
                k4.h
            );
        }
        let group = q4.h / k4.h;
        let p1 = Prec(t);
        let compute = match self.softmax_precision {
            Some(d) if is_attention_float(d) => d,
            Some(d) => return invalid!("softmax_precision must be a float type, got {d}"),
            None if t == DType::F64 => DType::F64,
            None => DType::F32,
        };
        let pc = Prec(compute);
        let scale = match self.scale {
            Some(s) => s,
            None => (1.0 / (q4.d as f64).sqrt()) as f32,
        };
        let root = p1.round(scale.sqrt() as f64);
        let qs = Heads {
            data: q4.data.iter().map(|&x| p1.round(x * root)).collect(),
            ..q4
        };
        let ks = Heads {
            data: k4.data.iter().map(|&x| p1.round(x * root)).collect(),
            ..k4
        };
        let (b, hq, l, s) = (q4.b, q4.h, q4.s, k4.s);
        let shape = vec![b, hq, l, s];
        let mut scores = Vec::with_capacity(checked(&[b, hq, l, s])?);
        for bi in 0..b {
            for h in 0..hq {
                for i in 0..l {
                    for j in 0..s {
                        let x = p1.dot(qs.row(bi, h, i), ks.row(bi, h / group, j).iter().copied());
                        scores.push(pc.round(x));
                    }
                }
            }
        }
        let modify = |g: &std::sync::Arc<crate::graph::Graph>,
                      x: Vec<f64>,
                      what: &str|
         -> Result<Vec<f64>, OpError> {
            let input = from_f64(compute, shape.clone(), x)?;
            let out = cx.run_subgraph(g, vec![input])?;
            match out.as_slice() {
                [y] if y.shape() == shape.as_slice() => {
                    Ok(y.to_f64_vec().into_iter().map(|x| pc.round(x)).collect())
                }
                [y] => invalid!("{what} changed the shape {shape:?} to {:?}", y.shape()),
                _ => invalid!("{what} must have exactly one output"),
            }
        };
        if let Some(g) = &self.score_mod {
            scores = modify(g, scores, "score_mod")?;
        }
        if s > 0 {
            for row in scores.chunks_mut(s) {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                for x in row.iter_mut() {
                    *x = pc.round(pc.round(*x - max).exp());
                }
                let sum = pc.sum(row.iter().copied());
                for x in row.iter_mut() {
                    *x = pc.round(*x / sum);
                }
            }
        }
        let probs = match &self.prob_mod {
            Some(g) => modify(g, scores, "prob_mod")?,
            None => scores,
        };
        let dv = v4.d;
        let mut y = Vec::with_capacity(checked(&[b, hq, l, dv])?);
        for bi in 0..b {
            for h in 0..hq {
                for i in 0..l {
                    let o = ((bi * hq + h) * l + i) * s;
                    for e in 0..dv {
                        let x = pc.dot(
                            &probs[o..o + s],
                            (0..s).map(|j| v4.row(bi, h / group, j)[e]),
                        );
                        y.push(x);
                    }
                }
            }
        }
        Ok(vec![from_f64(t, vec![b, hq, l, dv], y)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::eval_op;
    use crate::shape::TensorType;

    fn attention() -> Attention {
        Attention {
            is_causal: false,
            kv_num_heads: None,
            left_window_size: -1,
            q_num_heads: None,
            qk_matmul_output_mode: 0,
            right_window_size: -1,
            scale: None,
            softcap: 0.0,
            softmax_precision: None,
        }
    }

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    fn run(op: impl Into<Op>, inputs: &[Option<&Tensor>], outs: usize) -> Vec<Tensor> {
        let types = vec![TensorType::unknown_rank(DType::F32); outs];
        eval_op(&op.into(), inputs, &types).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec()
    }

    #[test]
    fn equal_scores_average_the_values() {
        let q = t(&[1, 1, 1, 2], &[0.0, 0.0]);
        let k = t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let v = t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let y = run(attention(), &[Some(&q), Some(&k), Some(&v)], 1);
        assert_eq!(y[0].shape(), &[1, 1, 1, 2]);
        assert_eq!(values(&y[0]), vec![2.0, 3.0]);
    }

    #[test]
    fn causal_mask_and_cache_offset() {
        let q = t(&[1, 1, 2, 1], &[1.0, 1.0]);
        let k = t(&[1, 1, 2, 1], &[1.0, 1.0]);
        let v = t(&[1, 1, 2, 1], &[10.0, 20.0]);
        let causal = Attention {
            is_causal: true,
            ..attention()
        };
        // The first query sees only the first key.
        let y = run(causal.clone(), &[Some(&q), Some(&k), Some(&v)], 1);
        assert_eq!(values(&y[0]), vec![10.0, 15.0]);
        // With one cached key, the frontier moves right by one.
        let (pk, pv) = (t(&[1, 1, 1, 1], &[1.0]), t(&[1, 1, 1, 1], &[40.0]));
        let inputs = [Some(&q), Some(&k), Some(&v), None, Some(&pk), Some(&pv)];
        let y = run(causal, &inputs, 3);
        assert_eq!(values(&y[0]), vec![25.0, (70.0f32 / 3.0) as f64]);
        assert_eq!(y[1].shape(), &[1, 1, 3, 1]);
        assert_eq!(values(&y[2]), vec![40.0, 10.0, 20.0]);
    }

    #[test]
    fn fully_masked_rows_are_zero() {
        let q = t(&[1, 1, 2, 1], &[1.0, 1.0]);
        let k = t(&[1, 1, 2, 1], &[1.0, 1.0]);
        let v = t(&[1, 1, 2, 1], &[10.0, 20.0]);
        let mask = Tensor::from_vec(vec![2, 2], vec![false, false, true, false]);
        let op = Attention {
            qk_matmul_output_mode: 3,
            ..attention()
        };
        let y = run(op, &[Some(&q), Some(&k), Some(&v), Some(&mask)], 4);
        assert_eq!(values(&y[0]), vec![0.0, 10.0]);
        assert_eq!(values(&y[3]), vec![0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn grouped_query_heads_share_key_value_heads() {
        let q = t(&[1, 2, 1, 1], &[0.0, 0.0]);
        let k = t(&[1, 1, 2, 1], &[5.0, 6.0]);
        let v = t(&[1, 1, 2, 1], &[2.0, 4.0]);
        let y = run(attention(), &[Some(&q), Some(&k), Some(&v)], 1);
        assert_eq!(values(&y[0]), vec![3.0, 3.0]);
        // Three query heads do not group over two.
        let k2 = t(&[1, 2, 2, 1], &[0.0; 4]);
        let q3 = t(&[1, 3, 1, 1], &[0.0; 3]);
        let types = vec![TensorType::unknown_rank(DType::F32)];
        let op: Op = attention().into();
        assert!(eval_op(&op, &[Some(&q3), Some(&k2), Some(&k2)], &types).is_err());
    }

    #[test]
    fn zero_window_attends_only_the_own_position() {
        let z = t(&[1, 1, 3, 1], &[0.0; 3]);
        let v = t(&[1, 1, 3, 1], &[3.0, 6.0, 9.0]);
        let op = Attention {
            left_window_size: 0,
            right_window_size: 0,
            ..attention()
        };
        let y = run(op, &[Some(&z), Some(&z), Some(&v)], 1);
        assert_eq!(values(&y[0]), vec![3.0, 6.0, 9.0]);
    }

    #[test]
    fn packed_heads_and_softcap() {
        // 3-D inputs: two heads of size 1 packed in the last dim.
        let q = t(&[1, 1, 2], &[0.0, 0.0]);
        let k = t(&[1, 2, 2], &[0.0; 4]);
        let v = t(&[1, 2, 2], &[1.0, 10.0, 3.0, 30.0]);
        let op = Attention {
            q_num_heads: Some(2),
            kv_num_heads: Some(2),
            ..attention()
        };
        let y = run(op, &[Some(&q), Some(&k), Some(&v)], 1);
        assert_eq!(y[0].shape(), &[1, 1, 2]);
        assert_eq!(values(&y[0]), vec![2.0, 20.0]);
        // Mode 1 shows the capped score: 1·tanh(100 / 1) = 1.
        let ten = t(&[1, 1, 1, 1], &[10.0]);
        let op = Attention {
            scale: Some(1.0),
            softcap: 1.0,
            qk_matmul_output_mode: 1,
            ..attention()
        };
        let y = run(op, &[Some(&ten), Some(&ten), Some(&ten)], 4);
        assert_eq!(values(&y[3]), vec![1.0]);
    }

    #[test]
    fn rotary_quarter_turn() {
        let rot = |interleaved| RotaryEmbedding {
            interleaved,
            num_heads: None,
            rotary_embedding_dim: 0,
        };
        let x = t(&[1, 1, 1, 4], &[1.0, 2.0, 3.0, 4.0]);
        let (cos, sin) = (t(&[1, 2], &[0.0, 0.0]), t(&[1, 2], &[1.0, 1.0]));
        let pos = Tensor::from_vec(vec![1, 1], vec![0i64]);
        let inputs = [Some(&x), Some(&cos), Some(&sin), Some(&pos)];
        // Halves (1, 2) and (3, 4) turn to (-3, -4) and (1, 2).
        let y = run(rot(false), &inputs, 1);
        assert_eq!(values(&y[0]), vec![-3.0, -4.0, 1.0, 2.0]);
        // Pairs (1, 2) and (3, 4) turn to (-2, 1) and (-4, 3).
        let y = run(rot(true), &inputs, 1);
        assert_eq!(values(&y[0]), vec![-2.0, 1.0, -4.0, 3.0]);
        let far = Tensor::from_vec(vec![1, 1], vec![1i64]);
        let types = vec![TensorType::unknown_rank(DType::F32)];
        let op: Op = rot(false).into();
        assert!(eval_op(&op, &[Some(&x), Some(&cos), Some(&sin), Some(&far)], &types).is_err());
    }

    #[test]
    fn causal_conv_carries_state() {
        let x = t(&[1, 1, 3], &[1.0, 2.0, 3.0]);
        let w = t(&[1, 1, 2], &[1.0, 1.0]);
        let op = CausalConvWithState {
            activation: CausalConvActivation::None,
        };
        let y = run(op.clone(), &[Some(&x), Some(&w)], 2);
        assert_eq!(values(&y[0]), vec![1.0, 3.0, 5.0]);
        assert_eq!(values(&y[1]), vec![3.0]);
        let past = t(&[1, 1, 1], &[5.0]);
        let y = run(op, &[Some(&x), Some(&w), None, Some(&past)], 2);
        assert_eq!(values(&y[0]), vec![6.0, 3.0, 5.0]);
    }

    #[test]
    fn linear_attention_recurrences() {
        let q = t(&[1, 2, 1], &[1.0, 1.0]);
        let k = t(&[1, 2, 1], &[1.0, 2.0]);
        let v = t(&[1, 2, 1], &[3.0, 4.0]);
        let op = |update_rule| LinearAttention {
            chunk_size: 64,
            kv_num_heads: 1,
            q_num_heads: 1,
            scale: 1.0,
            update_rule,
        };
        // S = 3, then 3 + 2·4 = 11.
        let y = run(
            op(LinearAttentionRule::Linear),
            &[Some(&q), Some(&k), Some(&v)],
            2,
        );
        assert_eq!(values(&y[0]), vec![3.0, 11.0]);
        assert_eq!(y[1].shape(), &[1, 1, 1, 1]);
        // Delta rule with β = 1: S = 3, then 3 + 2·(4 − 3·2) = -1.
        let beta = t(&[1, 2, 1], &[1.0, 1.0]);
        let inputs = [Some(&q), Some(&k), Some(&v), None, None, Some(&beta)];
        let y = run(op(LinearAttentionRule::Delta), &inputs, 2);
        assert_eq!(values(&y[0]), vec![3.0, -1.0]);
        // The delta rule needs beta.
        let types = vec![TensorType::unknown_rank(DType::F32); 2];
        let o: Op = op(LinearAttentionRule::Delta).into();
        assert!(eval_op(&o, &[Some(&q), Some(&k), Some(&v)], &types).is_err());
    }

    #[test]
    fn bf16_sums_round_every_step() {
        // 256 + 1 + 1 in bf16: each addition rounds back to 256.
        let p = Prec(DType::BF16);
        assert_eq!(p.sum([256.0, 1.0, 1.0].into_iter()), 256.0);
        assert_eq!(Prec(DType::F16).sum([256.0, 1.0, 1.0].into_iter()), 258.0);
    }
}
