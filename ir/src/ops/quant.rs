//! Quantization.

use super::infer::{Infer, InferCx, broadcast_dim, expect_dtype, one};
use super::*;
use crate::invalid;
use crate::shape::{Dim, Shape};

/// Types QuantizeLinear can produce (and DequantizeLinear read, with i32).
pub fn is_quantized(d: DType) -> bool {
    use DType::*;
    matches!(
        d,
        I8 | U8
            | I16
            | U16
            | F8E4M3FN
            | F8E4M3FNUZ
            | F8E5M2
            | F8E5M2FNUZ
            | U4
            | I4
            | F4E2M1
            | U2
            | I2
    )
}

/// The full-precision types of quantization scales and results.
fn is_scale_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16)
}

impl QuantizeLinear {
    /// The output type: the zero point's, which `output_dtype` must agree
    /// with; `output_dtype` without a zero point; u8 without either.
    pub(crate) fn output_type(&self, zero_point: Option<DType>) -> Result<DType, OpError> {
        let d = match (zero_point, self.output_dtype) {
            (Some(z), Some(o)) if z != o => {
                return invalid!("output_dtype {o} differs from the zero point's type {z}");
            }
            (Some(z), _) => z,
            (None, Some(o)) => o,
            (None, None) => DType::U8,
        };
        if !is_quantized(d) {
            return invalid!("{d} is not a quantized type");
        }
        if let Some(p) = self.precision
            && !is_scale_float(p)
        {
            return invalid!("precision must be f32, f16 or bf16, got {p}");
        }
        Ok(d)
    }
}

impl Infer for QuantizeLinear {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        expect_dtype(
            cx,
            0,
            |d| is_scale_float(d) || d == DType::I32,
            "f32, f16, bf16 or i32",
        )?;
        expect_dtype(
            cx,
            1,
            |d| is_scale_float(d) || matches!(d, DType::I32 | DType::F8E8M0),
            "a scale type",
        )?;
        let zp = cx.opt_input(2).map(|t| t.dtype);
        one(TensorType::new(
            self.output_type(zp)?,
            cx.input(0)?.shape.clone(),
        ))
    }
}

impl DequantizeLinear {
    pub(crate) fn output_type(&self, scale: DType) -> Result<DType, OpError> {
        let d = self.output_dtype.unwrap_or(scale);
        if !is_scale_float(d) {
            return invalid!("the output type must be f32, f16 or bf16, got {d}");
        }
        Ok(d)
    }
}

impl Infer for DequantizeLinear {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = expect_dtype(
            cx,
            0,
            |d| is_quantized(d) || d == DType::I32,
            "a quantized type",
        )?;
        let s = expect_dtype(
            cx,
            1,
            |d| is_scale_float(d) || d == DType::F8E8M0,
            "f32, f16, bf16 or f8e8m0",
        )?;
        if let Some(z) = cx.opt_input(2)
            && z.dtype != x
        {
            return invalid!("the zero point is {}, the input {x}", z.dtype);
        }
        one(TensorType::new(
            self.output_type(s)?,
            cx.input(0)?.shape.clone(),
        ))
    }
}

impl Infer for DynamicQuantizeLinear {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        expect_dtype(cx, 0, |d| d == DType::F32, "f32")?;
        Ok(vec![
            TensorType::new(DType::U8, cx.input(0)?.shape.clone()),
            TensorType::new(DType::F32, Shape::scalar()),
            TensorType::new(DType::U8, Shape::scalar()),
        ])
    }
}

/// Quantized input types QLinearMatMul computes with.
pub fn is_qmatmul_int(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8)
}

impl Infer for QLinearMatMul {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        for (i, what) in [(0, "a"), (3, "b"), (7, "y_zero_point")] {
            if !is_qmatmul_int(cx.dtype(i)?) {
                return Err(OpError::Unsupported(format!(
                    "QLinearMatMul with {what} of type {}",
                    cx.dtype(i)?
                )));
            }
        }
        for (i, j) in [(0, 2), (3, 5)] {
            if cx.dtype(i)? != cx.dtype(j)? {
                return invalid!("input {i} and its zero point {j} have different types");
            }
        }
        for i in [1, 4, 6] {
            expect_dtype(cx, i, is_scale_float, "f32, f16 or bf16")?;
        }
        let shape = matmul_shape(&cx.input(0)?.shape, &cx.input(3)?.shape)?;
        one(TensorType::new(cx.dtype(7)?, shape))
    }
}

/// The shape of numpy's `matmul(a, b)`: 1-D operands gain and lose a unit
/// dim, batch dims broadcast.
fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, OpError> {
    let (Some(a), Some(b)) = (a.dims(), b.dims()) else {
        return Ok(Shape::UnknownRank);
    };
    if a.is_empty() || b.is_empty() {
        return invalid!("matmul operands must have rank 1 or more");
    }
    let (ka, kb) = (&a[a.len() - 1], &b[b.len().saturating_sub(2)]);
    if !ka.compatible(kb) {
        return invalid!("inner dims {ka} and {kb} differ");
    }
    let (ab, m) = if a.len() == 1 {
        (&a[..0], None)
    } else {
        (&a[..a.len() - 2], Some(a[a.len() - 2].clone()))
    };
    let (bb, n) = if b.len() == 1 {
        (&b[..0], None)
    } else {
        (&b[..b.len() - 2], Some(b[b.len() - 1].clone()))
    };
    let rank = ab.len().max(bb.len());
    let mut out = Vec::with_capacity(rank + 2);
    for i in 0..rank {
        let pick = |x: &[Dim]| {
            (i + x.len())
                .checked_sub(rank)
                .map_or(Dim::Known(1), |j| x[j].clone())
        };
        out.push(
            broadcast_dim(&pick(ab), &pick(bb))
                .ok_or_else(|| OpError::Invalid("batch dims do not broadcast".into()))?,
        );
    }
    out.extend(m);
    out.extend(n);
    Ok(Shape::Ranked(out))
}
