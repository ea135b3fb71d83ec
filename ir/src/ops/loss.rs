//! Losses and optimizer steps.

use super::infer::{Infer, InferCx, expect_dtype};
use super::*;
use crate::shape::{Dim, Shape};
use crate::{attr_enum, invalid};

attr_enum!(LossReduction { None = "none", Sum = "sum", Mean = "mean" });
attr_enum!(
    /// Momentum's update: plain or Nesterov's.
    MomentumMode { Standard = "standard", Nesterov = "nesterov" }
);

fn is_loss_float(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
}

/// The loss of NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss:
/// per sample (the target's shape) or a scalar.
fn loss_type(cx: &InferCx, reduction: LossReduction) -> Result<TensorType, OpError> {
    let d = expect_dtype(cx, 0, is_loss_float, "a float type")?;
    expect_dtype(
        cx,
        1,
        |d| matches!(d, DType::I32 | DType::I64),
        "i32 or i64",
    )?;
    if cx.opt_input(2).is_some() {
        expect_dtype(cx, 2, |w| w == d, "the input's type")?;
    }
    let (x, t) = (cx.input(0)?, cx.input(1)?);
    if x.rank().is_some_and(|r| r < 2) {
        return invalid!(
            "the input must be (N, C, ...), got rank {}",
            x.rank().unwrap_or(0)
        );
    }
    if let (Some(r), Some(tr)) = (x.rank(), t.rank())
        && tr + 1 != r
    {
        return invalid!("the target must have rank {}, got {tr}", r - 1);
    }
    let shape = match reduction {
        LossReduction::None => match (x.dims(), t.dims()) {
            // The per-sample shape is the input's without C; the target's
            // dims fill in what the input leaves unknown.
            (Some(xd), Some(td)) => Shape::Ranked(
                td.iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let xi = &xd[if i == 0 { 0 } else { i + 1 }];
                        if xi.is_known() { xi.clone() } else { d.clone() }
                    })
                    .collect::<Vec<Dim>>(),
            ),
            (_, _) => t.shape.clone(),
        },
        _ => Shape::scalar(),
    };
    Ok(TensorType::new(d, shape))
}

impl Infer for NegativeLogLikelihoodLoss {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        Ok(vec![loss_type(cx, self.reduction)?])
    }
}

impl Infer for SoftmaxCrossEntropyLoss {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let loss = loss_type(cx, self.reduction)?;
        let log_prob = cx.input(0)?.clone();
        Ok([loss, log_prob][..cx.num_outputs.min(2)].to_vec())
    }
}

/// How many tensors an optimizer step updates, from its `2 + per_in × n`
/// inputs and `per_out × n` outputs.
pub(crate) fn optimized_count(
    inputs: usize,
    outputs: usize,
    per_in: usize,
    per_out: usize,
) -> Result<usize, OpError> {
    let n = inputs.saturating_sub(2) / per_in;
    if n == 0 || inputs != 2 + per_in * n || outputs != per_out * n {
        return invalid!(
            "expected 2 + {per_in}·n inputs and {per_out}·n outputs, got {inputs} and {outputs}"
        );
    }
    Ok(n)
}

/// Outputs of an optimizer step: the types of input groups `groups` (in
/// units of n tensors after R and T).
fn optimizer_types(
    cx: &InferCx,
    per_in: usize,
    groups: &[usize],
) -> Result<Vec<TensorType>, OpError> {
    expect_dtype(
        cx,
        0,
        |d| matches!(d, DType::F32 | DType::F64),
        "f32 or f64",
    )?;
    expect_dtype(cx, 1, |d| d == DType::I64, "i64")?;
    let n = optimized_count(cx.num_inputs(), cx.num_outputs, per_in, groups.len())?;
    for i in 2..cx.num_inputs() {
        expect_dtype(
            cx,
            i,
            |d| matches!(d, DType::F32 | DType::F64),
            "f32 or f64",
        )?;
    }
    let mut out = Vec::with_capacity(n * groups.len());
    for &g in groups {
        for i in 0..n {
            out.push(cx.input(2 + g * n + i)?.clone());
        }
    }
    Ok(out)
}

impl Infer for Adagrad {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        // Inputs X, G, H; outputs X_new, H_new.
        optimizer_types(cx, 3, &[0, 2])
    }
}

impl Infer for Adam {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        // Inputs X, G, V, H; outputs X_new, V_new, H_new.
        optimizer_types(cx, 4, &[0, 2, 3])
    }
}

impl Infer for Momentum {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        // Inputs X, G, V; outputs X_new, V_new.
        optimizer_types(cx, 3, &[0, 2])
    }
}
