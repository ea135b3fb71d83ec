//! Normalization ops, LRN and Dropout.

use super::infer::{Infer, InferCx, expect_dtype, normalize_axis, one};
use super::*;
use crate::shape::{Dim, Shape};

/// The float types normalizations compute on.
pub fn norm_dtype(d: DType) -> bool {
    d.is_float() && !d.is_packed()
}

/// Input 0 must be a float tensor whose rank, if known, is at least
/// `min_rank`; the output is of its type.
fn same_float(cx: &InferCx, min_rank: usize) -> Result<TensorType, OpError> {
    expect_dtype(cx, 0, norm_dtype, "a float type")?;
    let x = cx.input(0)?;
    if let Some(r) = x.rank()
        && r < min_rank
    {
        return Err(OpError::Invalid(format!(
            "the input has rank {r}, at least {min_rank} is needed"
        )));
    }
    Ok(x.clone())
}

macro_rules! same_float_ops {
    ($($op:ident: $min_rank:expr),* $(,)?) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                one(same_float(cx, $min_rank)?)
            }
        }
    )*};
}
same_float_ops!(InstanceNormalization: 3, GroupNormalization: 2, LRN: 2);

impl Infer for BatchNormalization {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let y = same_float(cx, 2)?;
        let mut out = vec![y.clone()];
        if cx.num_outputs > 1 {
            // The running mean and variance, shaped [C] like the inputs.
            let stats = cx.input(3)?;
            let c = y.dims().map_or(Dim::Unknown, |d| d[1].clone());
            let c = match (&c, stats.dims()) {
                (Dim::Known(_), _) => c,
                (_, Some([d])) => d.clone(),
                _ => c,
            };
            let t = TensorType::new(stats.dtype, Shape::Ranked(vec![c]));
            out.extend([t.clone(), t]);
        }
        out.truncate(cx.num_outputs.max(1));
        Ok(out)
    }
}

/// The axis dims from `axis` on become 1: the shape of per-row statistics.
fn stats_shape(x: &TensorType, axis: i64) -> Result<Shape, OpError> {
    let Some(dims) = x.dims() else {
        return Ok(Shape::UnknownRank);
    };
    let a = normalize_axis(axis, dims.len())?;
    let mut out = dims[..a].to_vec();
    out.resize(dims.len(), Dim::Known(1));
    Ok(Shape::Ranked(out))
}

/// The dtype `stash_type` names, which must be a float type.
pub fn stash_dtype(code: i64) -> Result<DType, OpError> {
    i32::try_from(code)
        .ok()
        .and_then(DType::from_onnx_code)
        .filter(|&d| norm_dtype(d))
        .ok_or_else(|| OpError::Invalid(format!("stash_type {code} is not a float type")))
}

impl Infer for LayerNormalization {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let y = same_float(cx, 1)?;
        let stats = TensorType::new(stash_dtype(self.stash_type)?, stats_shape(&y, self.axis)?);
        let mut out = vec![y, stats.clone(), stats];
        out.truncate(cx.num_outputs.max(1));
        Ok(out)
    }
}

impl Infer for RMSNormalization {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let y = same_float(cx, 1)?;
        stash_dtype(self.stash_type)?;
        stats_shape(&y, self.axis)?;
        one(y)
    }
}

impl Infer for LpNormalization {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let y = same_float(cx, 0)?;
        if self.p != 1 && self.p != 2 {
            return Err(OpError::Invalid(format!("p = {} (must be 1 or 2)", self.p)));
        }
        if let Some(r) = y.rank() {
            normalize_axis(self.axis, r)?;
        }
        one(y)
    }
}

impl Infer for MeanVarianceNormalization {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let y = same_float(cx, 0)?;
        if let Some(r) = y.rank() {
            reduction_axes(&self.axes, r)?;
        }
        one(y)
    }
}

impl Infer for Dropout {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let y = same_float(cx, 0)?;
        let mask = TensorType::new(DType::Bool, y.shape.clone());
        let mut out = vec![y, mask];
        out.truncate(cx.num_outputs.max(1));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::reduce::testing::infer;
    use super::*;

    #[test]
    fn statistics_outputs() {
        let ln = LayerNormalization {
            axis: 1,
            epsilon: 1e-5,
            stash_type: 1,
        };
        let inputs: Vec<Option<TensorType>> = ["f16[2,3,4]", "f16[3,4]"]
            .iter()
            .map(|s| Some(super::super::reduce::testing::parse_type(s)))
            .collect();
        let cx = InferCx {
            inputs: &inputs,
            values: &[],
            num_outputs: 3,
            syms: &[],
        };
        let out: Vec<String> = ln
            .infer(&cx)
            .unwrap()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(out, ["f16[2,3,4]", "f32[2,1,1]", "f32[2,1,1]"]);
        let bn = BatchNormalization {
            epsilon: 1e-5,
            momentum: 0.9,
            training_mode: true,
        };
        let x = "f32[N,3,8]";
        assert_eq!(
            infer(bn, &[x, "f32[3]", "f32[3]", "f64[3]", "f64[3]"], &[]),
            "f32[N,3,8]"
        );
        assert!(
            infer(
                LRN {
                    alpha: 1e-4,
                    beta: 0.75,
                    bias: 1.0,
                    size: 3
                },
                &["i32[1,2]"],
                &[]
            )
            .starts_with("error")
        );
    }
}
