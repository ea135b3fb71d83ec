//! String ops.

use super::infer::{Infer, InferCx, broadcast2, expect_dtype, one};
use super::*;
use crate::attr_enum;
use crate::invalid;
use crate::shape::{Dim, Shape};

attr_enum!(CaseChange { None = "NONE", Lower = "LOWER", Upper = "UPPER" });

fn strings(cx: &InferCx, i: usize) -> Result<DType, OpError> {
    expect_dtype(cx, i, |d| d == DType::Str, "string")
}

impl Infer for StringConcat {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        strings(cx, 0)?;
        strings(cx, 1)?;
        let shape = broadcast2(&cx.input(0)?.shape, &cx.input(1)?.shape)?;
        one(TensorType::new(DType::Str, shape))
    }
}

impl Infer for StringNormalizer {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        strings(cx, 0)?;
        let shape = match cx.input(0)?.shape.dims() {
            // Without stop words nothing is dropped (an empty input still
            // gives one empty string).
            Some([c]) => Shape::Ranked(vec![self.kept(c)]),
            Some([b, c]) if b.compatible(&Dim::Known(1)) => {
                Shape::Ranked(vec![Dim::Known(1), self.kept(c)])
            }
            Some(_) => {
                return invalid!("the input must be [C] or [1, C], found {}", cx.input(0)?);
            }
            None => Shape::UnknownRank,
        };
        one(TensorType::new(DType::Str, shape))
    }
}

impl StringNormalizer {
    fn kept(&self, c: &Dim) -> Dim {
        match c {
            Dim::Known(0) => Dim::Known(1),
            c if self.stopwords.is_empty() => c.clone(),
            _ => Dim::Unknown,
        }
    }
}

impl Infer for StringSplit {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        strings(cx, 0)?;
        if self.maxsplit.is_some_and(|m| m < 0) {
            return invalid!("maxsplit must not be negative");
        }
        let x = cx.input(0)?;
        let y = match x.shape.dims() {
            Some(d) => Shape::Ranked(d.iter().cloned().chain([Dim::Unknown]).collect()),
            None => Shape::UnknownRank,
        };
        Ok(vec![
            TensorType::new(DType::Str, y),
            TensorType::new(DType::I64, x.shape.clone()),
        ])
    }
}

impl Infer for RegexFullMatch {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        strings(cx, 0)?;
        one(TensorType::new(DType::Bool, cx.input(0)?.shape.clone()))
    }
}

impl TfIdfVectorizer {
    /// The output's last extent: one past the largest n-gram index.
    pub fn output_size(&self) -> Result<usize, OpError> {
        match self.ngram_indexes.iter().copied().max() {
            _ if self.ngram_indexes.iter().any(|&i| i < 0) => {
                invalid!("ngram_indexes must not be negative")
            }
            Some(m) if (m as u64) < crate::tensor::MAX_ELEMENTS => Ok(m as usize + 1),
            Some(m) => invalid!("ngram index {m} is too large"),
            None => invalid!("ngram_indexes is empty"),
        }
    }
}

impl Infer for TfIdfVectorizer {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let d = expect_dtype(
            cx,
            0,
            |d| matches!(d, DType::Str | DType::I32 | DType::I64),
            "string, int32 or int64",
        )?;
        match (&self.pool_strings, &self.pool_int64s) {
            (Some(_), None) if d == DType::Str => {}
            (None, Some(_)) if d != DType::Str => {}
            (Some(_), Some(_)) | (None, None) => {
                return invalid!("exactly one of pool_strings and pool_int64s must be set");
            }
            _ => return invalid!("the pool's type does not match the input's {d}"),
        }
        let size = Dim::Known(self.output_size()? as u64);
        let shape = match cx.input(0)?.shape.dims() {
            Some([]) | Some([_]) => Shape::Ranked(vec![size]),
            Some([b, _]) => Shape::Ranked(vec![b.clone(), size]),
            Some(_) => return invalid!("the input must be [C] or [N, C]"),
            None => Shape::UnknownRank,
        };
        one(TensorType::new(DType::F32, shape))
    }
}
