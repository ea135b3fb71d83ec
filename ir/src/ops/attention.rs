//! Attention, rotary embeddings, linear attention and the causal
//! convolution of state-space models.

use super::infer::{Infer, InferCx, expect_dtype, same_dtype};
use super::*;
use crate::shape::{Dim, Shape};
use crate::{attr_enum, invalid};

attr_enum!(
    /// LinearAttention's recurrence.
    LinearAttentionRule {
        Linear = "linear",
        Gated = "gated",
        Delta = "delta",
        GatedDelta = "gated_delta",
    }
);
attr_enum!(
    /// CausalConvWithState's fused activation (`swish` is SiLU too).
    CausalConvActivation { None = "none", Silu = "silu", Swish = "swish" }
);

/// The float types attention-like ops compute in.
pub(crate) fn is_attention_float(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
}

/// `d / n`: known when `d` is, which must then divide evenly.
fn dim_div(d: &Dim, n: u64, what: &str) -> Result<Dim, OpError> {
    match d {
        Dim::Known(x) if n == 0 || x % n != 0 => {
            invalid!("{what}: {x} does not split into {n} heads")
        }
        Dim::Known(x) => Ok(Dim::Known(x / n)),
        _ => Ok(Dim::Unknown),
    }
}

fn dim_mul(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => Dim::Known(x * y),
        (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
        _ => Dim::Unknown,
    }
}

fn dim_add(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => Dim::Known(x + y),
        (Dim::Known(0), d) | (d, Dim::Known(0)) => d.clone(),
        _ => Dim::Unknown,
    }
}

/// A positive head-count attribute.
fn heads(v: Option<i64>, name: &str) -> Result<u64, OpError> {
    match v {
        Some(h) if h > 0 => Ok(h as u64),
        Some(h) => invalid!("`{name}` must be positive, got {h}"),
        None => invalid!("`{name}` is required with 3-D inputs"),
    }
}

fn ranked(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape::Ranked(dims))
}

impl Attention {
    /// Checks the attributes that have a fixed range.
    pub(crate) fn check_attrs(&self) -> Result<(), OpError> {
        if !(0..=3).contains(&self.qk_matmul_output_mode) {
            return invalid!(
                "qk_matmul_output_mode must be 0 to 3, got {}",
                self.qk_matmul_output_mode
            );
        }
        for (name, w) in [
            ("left_window_size", self.left_window_size),
            ("right_window_size", self.right_window_size),
        ] {
            if w < -1 {
                return invalid!("{name} must be -1 or nonnegative, got {w}");
            }
        }
        if let Some(p) = self.softmax_precision
            && !is_attention_float(p)
        {
            return invalid!("softmax_precision must be a float type, got {p}");
        }
        Ok(())
    }
}

impl Infer for Attention {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        self.check_attrs()?;
        let t1 = expect_dtype(cx, 0, is_attention_float, "a float type")?;
        same_dtype(cx, 0, 1)?;
        let t2 = expect_dtype(cx, 2, is_attention_float, "a float type")?;
        let past = (cx.opt_input(4), cx.opt_input(5));
        if past.0.is_some() != past.1.is_some() {
            return invalid!("past_key and past_value must be given together");
        }
        if past.0.is_some() {
            same_dtype(cx, 0, 4)?;
            same_dtype(cx, 2, 5)?;
            if cx.opt_input(6).is_some() {
                return invalid!("nonpad_kv_seqlen cannot be used with past_key/past_value");
            }
        }
        if cx.opt_input(6).is_some() {
            expect_dtype(cx, 6, |d| d == DType::I64, "i64")?;
        }
        let (q, k, v) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        let (Some(qd), Some(kd), Some(vd)) = (q.dims(), k.dims(), v.dims()) else {
            let r = q.rank().or(k.rank()).or(v.rank());
            let y = match r {
                Some(r) => TensorType::with_rank(t1, r),
                None => TensorType::unknown_rank(t1),
            };
            let all = [
                y,
                TensorType::with_rank(t1, 4),
                TensorType::with_rank(t2, 4),
                TensorType::with_rank(t1, 4),
            ];
            return Ok(all[..cx.num_outputs.min(4)].to_vec());
        };
        if qd.len() != kd.len() || qd.len() != vd.len() {
            return invalid!("Q, K and V must have the same rank");
        }
        let (b, hq, sq, dk, hkv, skv, dv, y) = match qd.len() {
            3 => {
                let hq = heads(self.q_num_heads, "q_num_heads")?;
                let hkv = heads(self.kv_num_heads, "kv_num_heads")?;
                let dv = dim_div(&vd[2], hkv, "V's hidden size")?;
                let y = vec![qd[0].clone(), qd[1].clone(), dim_mul(&Dim::Known(hq), &dv)];
                (
                    qd[0].clone(),
                    Dim::Known(hq),
                    qd[1].clone(),
                    dim_div(&kd[2], hkv, "K's hidden size")?,
                    Dim::Known(hkv),
                    kd[1].clone(),
                    dv,
                    y,
                )
            }
            4 => {
                let y = vec![qd[0].clone(), qd[1].clone(), qd[2].clone(), vd[3].clone()];
                (
                    qd[0].clone(),
                    qd[1].clone(),
                    qd[2].clone(),
                    kd[3].clone(),
                    kd[1].clone(),
                    kd[2].clone(),
                    vd[3].clone(),
                    y,
                )
            }
            r => return invalid!("Q, K and V must be 3-D or 4-D, got rank {r}"),
        };
        if let (Dim::Known(h), Dim::Known(g)) = (&hq, &hkv)
            && (*g == 0 || h % g != 0)
        {
            return invalid!("{h} query heads do not group over {g} key/value heads");
        }
        let past_len = match past.0.and_then(|p| p.dims()) {
            Some(p) if p.len() == 4 => p[2].clone(),
            Some(_) => return invalid!("past_key must be 4-D"),
            None if past.0.is_some() => Dim::Unknown,
            None => Dim::Known(0),
        };
        let total = dim_add(&past_len, &skv);
        let all = [
            ranked(t1, y),
            ranked(t1, vec![b.clone(), hkv.clone(), total.clone(), dk]),
            ranked(t2, vec![b.clone(), hkv, total.clone(), dv]),
            ranked(t1, vec![b, hq, sq, total]),
        ];
        Ok(all[..cx.num_outputs.min(4)].to_vec())
    }
}

impl Infer for RotaryEmbedding {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let d = expect_dtype(cx, 0, is_attention_float, "a float type")?;
        same_dtype(cx, 0, 1)?;
        same_dtype(cx, 0, 2)?;
        if cx.opt_input(3).is_some() {
            expect_dtype(cx, 3, |d| d == DType::I64, "i64")?;
        }
        let x = cx.input(0)?;
        match x.rank() {
            Some(3) if self.num_heads.is_none_or(|h| h <= 0) => {
                invalid!("num_heads must be given (and positive) for a 3-D input")
            }
            Some(3 | 4) | None => Ok(vec![TensorType::new(d, x.shape.clone())]),
            Some(r) => invalid!("the input must be 3-D or 4-D, got rank {r}"),
        }
    }
}

impl Infer for LinearAttention {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let t = expect_dtype(cx, 0, is_attention_float, "a float type")?;
        same_dtype(cx, 0, 1)?;
        same_dtype(cx, 0, 2)?;
        let hq = heads(Some(self.q_num_heads), "q_num_heads")?;
        let hkv = heads(Some(self.kv_num_heads), "kv_num_heads")?;
        if hq % hkv != 0 {
            return invalid!("{hq} query heads do not group over {hkv} key/value heads");
        }
        let s = match cx.opt_input(3) {
            Some(_) => expect_dtype(cx, 3, is_attention_float, "a float type")?,
            None => t,
        };
        for i in [4, 5] {
            if cx.opt_input(i).is_some() {
                same_dtype(cx, 0, i)?;
            }
        }
        let (q, v) = (cx.input(0)?, cx.input(2)?);
        for (i, x) in [(0, q), (1, cx.input(1)?), (2, v)] {
            if x.rank().is_some_and(|r| r != 3) {
                return invalid!("input {i} must be 3-D (batch, time, heads × size)");
            }
        }
        let (Some(qd), Some(vd)) = (q.dims(), v.dims()) else {
            return Ok(vec![
                TensorType::with_rank(t, 3),
                TensorType::with_rank(s, 4),
            ]);
        };
        let dk = dim_div(&qd[2], hq, "the query's hidden size")?;
        let dv = dim_div(&vd[2], hkv, "the value's hidden size")?;
        Ok(vec![
            ranked(
                t,
                vec![qd[0].clone(), qd[1].clone(), dim_mul(&Dim::Known(hq), &dv)],
            ),
            ranked(s, vec![qd[0].clone(), Dim::Known(hkv), dk, dv]),
        ])
    }
}

impl Infer for CausalConvWithState {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let t = expect_dtype(cx, 0, is_attention_float, "a float type")?;
        for i in 1..cx.num_inputs() {
            if cx.opt_input(i).is_some() {
                same_dtype(cx, 0, i)?;
            }
        }
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        for (i, r) in [(0, x.rank()), (1, w.rank())] {
            if r.is_some_and(|r| r != 3) {
                return invalid!("input {i} must be 3-D");
            }
        }
        let state = match (x.dims(), w.dims()) {
            (Some(xd), Some(wd)) => {
                let k = match &wd[2] {
                    Dim::Known(0) => return invalid!("the kernel must not be empty"),
                    Dim::Known(k) => Dim::Known(k - 1),
                    _ => Dim::Unknown,
                };
                ranked(t, vec![xd[0].clone(), xd[1].clone(), k])
            }
            _ => TensorType::with_rank(t, 3),
        };
        Ok(vec![x.clone(), state])
    }
}

impl Infer for FlexAttention {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let t = expect_dtype(cx, 0, is_attention_float, "a float type")?;
        same_dtype(cx, 0, 1)?;
        same_dtype(cx, 0, 2)?;
        if let Some(p) = self.softmax_precision
            && !is_attention_float(p)
        {
            return invalid!("softmax_precision must be a float type, got {p}");
        }
        let (q, v) = (cx.input(0)?, cx.input(2)?);
        for i in 0..3 {
            if cx.input(i)?.rank().is_some_and(|r| r != 4) {
                return invalid!("input {i} must be 4-D");
            }
        }
        match (q.dims(), v.dims()) {
            (Some(qd), Some(vd)) => Ok(vec![ranked(
                t,
                vec![qd[0].clone(), qd[1].clone(), qd[2].clone(), vd[3].clone()],
            )]),
            _ => Ok(vec![TensorType::with_rank(t, 4)]),
        }
    }
}
