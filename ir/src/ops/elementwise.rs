//! Elementwise ops: unary math and activations, broadcasting binary ops,
//! variadic ops, casts.

use super::infer::{Infer, InferCx, broadcast_all, broadcast2, one, same_dtype};
use super::*;
use crate::{attr_enum, invalid};

attr_enum!(
    /// Gelu's formula: exact (erf) or the tanh approximation.
    GeluApproximation { None = "none", Tanh = "tanh" }
);
attr_enum!(ShiftDirection { Left = "LEFT", Right = "RIGHT" });
attr_enum!(
    /// Rounding of casts to f8e8m0.
    RoundMode { Up = "up", Down = "down", Nearest = "nearest" }
);

/// Output: the type of input 0.
macro_rules! same_as_input {
    ($($op:ident),* $(,)?) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                one(cx.input(0)?.clone())
            }
        }
    )*};
}

same_as_input!(
    Abs,
    Acos,
    Acosh,
    Asin,
    Asinh,
    Atan,
    Atanh,
    BitwiseNot,
    Ceil,
    Cos,
    Cosh,
    Erf,
    Exp,
    Floor,
    Identity,
    Log,
    Neg,
    Not,
    Reciprocal,
    Round,
    Sign,
    Sin,
    Sinh,
    Sqrt,
    Tan,
    Tanh,
    Celu,
    Elu,
    Gelu,
    HardSigmoid,
    HardSwish,
    LeakyRelu,
    Mish,
    Relu,
    Selu,
    Shrink,
    Sigmoid,
    Softplus,
    Softsign,
    Swish,
    ThresholdedRelu,
    Clip,
);

/// Output: bool, shaped like input 0.
macro_rules! predicate {
    ($($op:ident),* $(,)?) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                one(TensorType::new(DType::Bool, cx.input(0)?.shape.clone()))
            }
        }
    )*};
}
predicate!(IsNaN, IsInf);

/// Broadcasting ops whose operands share a type, which the output keeps.
macro_rules! broadcasting {
    ($($op:ident),* $(,)?) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                let mut dtype = cx.dtype(0)?;
                for i in 1..cx.num_inputs() {
                    dtype = same_dtype(cx, 0, i)?;
                }
                one(TensorType::new(dtype, broadcast_all(cx)?))
            }
        }
    )*};
}
broadcasting!(
    Add, Sub, Mul, Div, Mod, BitShift, BitwiseAnd, BitwiseOr, BitwiseXor, Max, Min, Mean, Sum, And,
    Or, Xor
);

/// Broadcasting comparisons: operands share a type, the output is bool.
macro_rules! comparison {
    ($($op:ident),* $(,)?) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                same_dtype(cx, 0, 1)?;
                one(TensorType::new(DType::Bool, broadcast_all(cx)?))
            }
        }
    )*};
}
comparison!(Equal, Greater, GreaterOrEqual, Less, LessOrEqual);

impl Infer for PRelu {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = same_dtype(cx, 0, 1)?;
        one(TensorType::new(
            dtype,
            broadcast2(&cx.input(0)?.shape, &cx.input(1)?.shape)?,
        ))
    }
}

impl Infer for Pow {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        one(TensorType::new(cx.dtype(0)?, broadcast_all(cx)?))
    }
}

impl Infer for Where {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        super::infer::expect_dtype(cx, 0, |d| d == DType::Bool, "bool")?;
        let dtype = same_dtype(cx, 1, 2)?;
        one(TensorType::new(dtype, broadcast_all(cx)?))
    }
}

impl Infer for Cast {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        one(TensorType::new(self.to, cx.input(0)?.shape.clone()))
    }
}

impl Infer for CastLike {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        one(TensorType::new(cx.dtype(1)?, cx.input(0)?.shape.clone()))
    }
}

impl Infer for SwiGLU {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = same_dtype(cx, 0, 1)?;
        super::infer::expect_dtype(cx, 0, |d| d.is_float(), "a float type")?;
        let (a, b) = (&cx.input(0)?.shape, &cx.input(1)?.shape);
        if !a.compatible(b) {
            return invalid!("gate {a} and value {b} must have the same shape");
        }
        // Where one side knows a dim the other does not, keep the known one.
        let shape = crate::builder::merge_types(
            &TensorType::new(dtype, a.clone()),
            &TensorType::new(dtype, b.clone()),
        )
        .map(|t| t.shape)
        .unwrap_or_else(|| a.clone());
        one(TensorType::new(dtype, shape))
    }
}

impl Infer for OptionalHasElement {
    fn infer(&self, _cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        one(TensorType::known(DType::Bool, &[]))
    }
}

impl Infer for OptionalGetElement {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        one(cx.input(0)?.clone())
    }
}
