//! Classical machine-learning ops (ONNX domain `ai.onnx.ml`).

use super::infer::{Infer, InferCx, expect_dtype, one};
use super::*;
use crate::invalid;
use crate::shape::{Dim, Shape};

impl Infer for ArrayFeatureExtractor {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let d = expect_dtype(
            cx,
            0,
            |d| {
                matches!(
                    d,
                    DType::F32 | DType::F64 | DType::I32 | DType::I64 | DType::Str
                )
            },
            "float, double, int32, int64 or string",
        )?;
        expect_dtype(cx, 1, |d| d == DType::I64, "int64")?;
        let count = cx.input(1)?.shape.numel().map_or(Dim::Unknown, Dim::Known);
        let shape = match cx.input(0)?.shape.dims() {
            Some([]) => return invalid!("the input must have at least one dim"),
            Some([_]) => Shape::Ranked(vec![Dim::Known(1), count]),
            Some(d) => {
                let mut d = d.to_vec();
                *d.last_mut().unwrap() = count;
                Shape::Ranked(d)
            }
            None => Shape::UnknownRank,
        };
        one(TensorType::new(d, shape))
    }
}

impl Infer for Binarizer {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        expect_dtype(
            cx,
            0,
            |d| matches!(d, DType::F32 | DType::F64 | DType::I32 | DType::I64),
            "float, double, int32 or int64",
        )?;
        one(cx.input(0)?.clone())
    }
}

impl LabelEncoder {
    /// The element type of the keys.
    pub fn key_dtype(&self) -> Result<DType, OpError> {
        match (
            &self.keys_floats,
            &self.keys_int64s,
            &self.keys_strings,
            &self.keys_tensor,
        ) {
            (Some(_), None, None, None) => Ok(DType::F32),
            (None, Some(_), None, None) => Ok(DType::I64),
            (None, None, Some(_), None) => Ok(DType::Str),
            (None, None, None, Some(t)) => Ok(t.dtype()),
            _ => invalid!("exactly one of the keys_* attributes must be set"),
        }
    }

    /// The element type of the values, which is the output's.
    pub fn value_dtype(&self) -> Result<DType, OpError> {
        match (
            &self.values_floats,
            &self.values_int64s,
            &self.values_strings,
            &self.values_tensor,
        ) {
            (Some(_), None, None, None) => Ok(DType::F32),
            (None, Some(_), None, None) => Ok(DType::I64),
            (None, None, Some(_), None) => Ok(DType::Str),
            (None, None, None, Some(t)) => Ok(t.dtype()),
            _ => invalid!("exactly one of the values_* attributes must be set"),
        }
    }
}

impl Infer for LabelEncoder {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let key = self.key_dtype()?;
        let x = cx.input(0)?;
        if x.dtype != key {
            return invalid!("the input is {}, the keys are {key}", x.dtype);
        }
        one(TensorType::new(self.value_dtype()?, x.shape.clone()))
    }
}

impl TreeEnsemble {
    /// The number of targets: `n_targets`, or one past the largest target id.
    pub fn targets(&self) -> Result<usize, OpError> {
        let n = match self.n_targets {
            Some(n) => n,
            None => self
                .leaf_targetids
                .iter()
                .copied()
                .max()
                .map_or(0, |m| m + 1),
        };
        if !(1..=1 << 24).contains(&n) {
            return invalid!("the number of targets {n} is not valid");
        }
        Ok(n as usize)
    }
}

impl Infer for TreeEnsemble {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let d = expect_dtype(
            cx,
            0,
            |d| matches!(d, DType::F32 | DType::F64 | DType::F16),
            "float, double or float16",
        )?;
        let n = Dim::Known(self.targets()? as u64);
        let shape = match cx.input(0)?.shape.dims() {
            Some([b, _]) => Shape::Ranked(vec![b.clone(), n]),
            Some(_) => return invalid!("the input must be [N, F]"),
            None => Shape::Ranked(vec![Dim::Unknown, n]),
        };
        one(TensorType::new(d, shape))
    }
}
