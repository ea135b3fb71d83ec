//! Quantization.
//!
//! Arithmetic follows the precision the spec names (the scale's type, or
//! `precision`), rounding each step to it; integers round half to even
//! and saturate to the output type's range.

use super::kernels::*;
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::invalid;
use crate::ops::*;
use crate::tensor::{Tensor, minifloat};

/// Rounds an f64 to a float type (f16 and bf16 through f32, as numpy
/// computes them).
fn round_to(d: DType, x: f64) -> f64 {
    match d {
        DType::F32 => x as f32 as f64,
        DType::F16 => half::f16::from_f32(x as f32).to_f64(),
        DType::BF16 => half::bf16::from_f32(x as f32).to_f64(),
        _ => x,
    }
}

/// For each element of an input of shape `x`, the flat index of its scale
/// and zero point (of shape `p`): one for the whole tensor, one per index
/// along `axis`, or one per block of `block` indices along `axis`.
fn param_index(p: &[usize], x: &[usize], axis: i64, block: i64) -> Result<Vec<usize>, OpError> {
    let n: usize = x.iter().product();
    if p.iter().product::<usize>() == 1 {
        return Ok(vec![0; n]);
    }
    if x.is_empty() {
        return invalid!("a scalar input takes a scalar scale, got shape {p:?}");
    }
    let a = super::kernels::axis(axis, x.len())?;
    let (_, d, inner) = split_at_axis(x, a);
    if block == 0 {
        if p != [d] {
            return invalid!("per-axis scale must be [{d}] for axis {a} of {x:?}, got {p:?}");
        }
        return Ok((0..n).map(|i| (i / inner) % d).collect());
    }
    if block < 0 {
        return invalid!("block_size must be positive, got {block}");
    }
    let b = block as usize;
    let blocks = d.div_ceil(b);
    let fits =
        p.len() == x.len() && (0..x.len()).all(|k| p[k] == if k == a { blocks } else { x[k] });
    if !fits {
        return invalid!(
            "blocked scale for {x:?} (axis {a}, block {b}) must have {blocks} blocks on the axis, got {p:?}"
        );
    }
    Ok((0..n)
        .map(|i| {
            let (o, c, r) = (i / (d * inner), (i / inner) % d, i % inner);
            (o * blocks + c / b) * inner + r
        })
        .collect())
}

/// The range of an integer quantized type.
fn int_range(d: DType) -> (i64, i64) {
    match d {
        DType::I8 => (-128, 127),
        DType::U8 => (0, 255),
        DType::I16 => (-32768, 32767),
        DType::U16 => (0, 65535),
        _ => minifloat::int_range(d),
    }
}

/// Round half to even, then saturate to `[lo, hi]` (NaN gives 0).
fn saturate_round(x: f64, lo: i64, hi: i64) -> i64 {
    if x.is_nan() {
        return 0;
    }
    (x.round_ties_even().clamp(lo as f64, hi as f64)) as i64
}

fn check_zero_point(zp: Option<&Tensor>, scale: &Tensor) -> Result<(), OpError> {
    match zp {
        Some(z) if z.shape() != scale.shape() && z.numel() * scale.numel() != 1 => invalid!(
            "the zero point's shape {:?} differs from the scale's {:?}",
            z.shape(),
            scale.shape()
        ),
        _ => Ok(()),
    }
}

impl Eval for QuantizeLinear {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, s, zp) = (cx.input(0)?, cx.input(1)?, cx.opt_input(2));
        let out = self.output_type(zp.map(|z| z.dtype()))?;
        let xv = to_f64(x, "QuantizeLinear")?;
        let sv = to_f64(s, "QuantizeLinear")?;
        check_zero_point(zp, s)?;
        let zv = zp.map(|z| z.to_f64_vec());
        let idx = param_index(s.shape(), x.shape(), self.axis, self.block_size)?;
        // The division is done in `precision`, else in the scale's type.
        let prec = self.precision.unwrap_or(match s.dtype() {
            d @ (DType::F32 | DType::F16 | DType::BF16) => d,
            DType::F8E8M0 => DType::F32,
            _ => DType::F64,
        });
        let r = |v: f64| round_to(prec, v);
        let q = xv.iter().zip(&idx).map(|(&v, &i)| {
            let y = r(r(v) / r(sv[i]));
            (y, zv.as_ref().map_or(0.0, |z| z[i]))
        });
        let vals: Vec<f64> = if out.is_int() {
            let (lo, hi) = int_range(out);
            // Round x / scale, then add the (integer) zero point.
            q.map(|(y, z)| saturate_round(y.round_ties_even() + z, lo, hi) as f64)
                .collect()
        } else {
            q.map(|(y, z)| y + z).collect()
        };
        // Integer values are exact; floats round (and saturate) in the cast.
        let y = Tensor::from_vec(x.shape().to_vec(), vals).cast(out, self.saturate);
        Ok(vec![y])
    }
}

impl Eval for DequantizeLinear {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, s, zp) = (cx.input(0)?, cx.input(1)?, cx.opt_input(2));
        let out = self.output_type(s.dtype())?;
        if let Some(z) = zp
            && z.dtype() != x.dtype()
        {
            return invalid!("the zero point is {}, the input {}", z.dtype(), x.dtype());
        }
        check_zero_point(zp, s)?;
        let xv = to_f64(x, "DequantizeLinear")?;
        let sv = to_f64(s, "DequantizeLinear")?;
        let zv = zp.map(|z| z.to_f64_vec());
        let idx = param_index(s.shape(), x.shape(), self.axis, self.block_size)?;
        // (x - zero point) × scale in f32, then the output type.
        let r = |v: f64| v as f32 as f64;
        let vals: Vec<f64> = xv
            .iter()
            .zip(&idx)
            .map(|(&v, &i)| {
                let z = zv.as_ref().map_or(0.0, |z| z[i]);
                r(r(r(v) - z) * sv[i])
            })
            .collect();
        Ok(vec![from_f64(out, x.shape().to_vec(), vals)?])
    }
}

impl Eval for DynamicQuantizeLinear {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let Some(xv) = x.as_slice::<f32>() else {
            return invalid!("DynamicQuantizeLinear takes f32, got {}", x.dtype());
        };
        // The range always includes 0; all arithmetic is in f32.
        let max = xv.iter().copied().fold(0f32, f32::max);
        let min = xv.iter().copied().fold(0f32, f32::min);
        let scale = if max == min { 1.0 } else { max - min } / 255f32;
        let zp = (0f32 - min / scale).clamp(0.0, 255.0).round_ties_even();
        let y: Vec<u8> = xv
            .iter()
            .map(|&v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8)
            .collect();
        Ok(vec![
            Tensor::from_vec(x.shape().to_vec(), y),
            Tensor::scalar(scale),
            Tensor::scalar(zp as u8),
        ])
    }
}

/// For a matmul operand of shape `x` and the shape `p` of its scale or zero
/// point, the flat parameter index of each (batch, row) of `a` (`rows`) or
/// each (batch, column) of `b`: per tensor, per row of `a` (`[M]` or
/// `[..., M, 1]`) or per column of `b` (`[N]` or `[..., 1, N]`).
fn matmul_param_index(p: &[usize], x: &[usize], rows: bool) -> Result<Vec<usize>, OpError> {
    let r = x.len();
    // `x` without the contracted dim: (batch..., M) for a, (batch..., N) for b.
    let kdim = if rows { r - 1 } else { r.saturating_sub(2) };
    let kept: Vec<usize> = (0..r).filter(|&i| i != kdim).map(|i| x[i]).collect();
    let n: usize = kept.iter().product();
    if p.iter().product::<usize>() == 1 {
        return Ok(vec![0; n]);
    }
    let inner = *kept.last().unwrap_or(&1);
    if p.len() == 1 && r >= 2 && p[0] == inner {
        return Ok((0..n).map(|i| i % inner).collect());
    }
    if p.len() == r && r >= 2 && p[kdim] == 1 {
        let pk: Vec<usize> = (0..r).filter(|&i| i != kdim).map(|i| p[i]).collect();
        broadcast_shapes(&[&pk, &kept])
            .ok()
            .filter(|s| *s == kept)
            .ok_or_else(|| OpError::Invalid(format!("parameter shape {p:?} does not fit {x:?}")))?;
        return Ok(broadcast_index(&pk, &kept));
    }
    invalid!(
        "parameter shape {p:?} is not per tensor or per {} of {x:?}",
        if rows { "row" } else { "column" }
    )
}

impl Eval for QLinearMatMul {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (a, a_s, a_zp) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        let (b, b_s, b_zp) = (cx.input(3)?, cx.input(4)?, cx.input(5)?);
        let (y_s, y_zp) = (cx.input(6)?, cx.input(7)?);
        let out = y_zp.dtype();
        for t in [a, b, y_zp] {
            if !is_qmatmul_int(t.dtype()) {
                return Err(OpError::Unsupported(format!(
                    "QLinearMatMul on {} tensors",
                    t.dtype()
                )));
            }
        }
        if y_s.numel() != 1 || y_zp.numel() != 1 {
            return invalid!("the output scale and zero point must be per tensor");
        }
        let st = a_s.dtype();
        if b_s.dtype() != st || y_s.dtype() != st {
            return invalid!("the scales have different types");
        }
        if a.rank() == 0 || b.rank() == 0 {
            return invalid!("matmul operands must have rank 1 or more");
        }
        // Promote 1-D operands to matrices.
        let ash: Vec<usize> = if a.rank() == 1 {
            vec![1, a.shape()[0]]
        } else {
            a.shape().to_vec()
        };
        let bsh: Vec<usize> = if b.rank() == 1 {
            vec![b.shape()[0], 1]
        } else {
            b.shape().to_vec()
        };
        let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
        let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
        if k != k2 {
            return invalid!("inner dims {k} and {k2} differ");
        }
        let (ab, bb) = (&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]);
        let batch = broadcast_shapes(&[ab, bb])?;
        // Bounds what is allocated below even when an operand is empty.
        let count = |dims: &[usize], extra: &[usize]| -> Result<usize, OpError> {
            let all: Vec<i64> = dims.iter().chain(extra).map(|&d| d as i64).collect();
            Ok(checked_shape(&all)?.iter().product())
        };
        let y_len = count(&batch, &[m, n])?;
        count(ab, &[m])?;
        count(bb, &[n])?;
        let ai = broadcast_index(ab, &batch);
        let bi = broadcast_index(bb, &batch);
        let a_rows = matmul_param_index(a_s.shape(), &ash, true)?;
        let b_cols = matmul_param_index(b_s.shape(), &bsh, false)?;
        if a_zp.shape() != a_s.shape() && a_zp.numel() != 1 {
            return invalid!("a's zero point and scale have different shapes");
        }
        if b_zp.shape() != b_s.shape() && b_zp.numel() != 1 {
            return invalid!("b's zero point and scale have different shapes");
        }
        let pick = |t: &Tensor, i: usize| t.get_f64(if t.numel() == 1 { 0 } else { i });
        let (av, bv) = (a.to_i64_vec(), b.to_i64_vec());
        let (lo, hi) = int_range(out);
        let ys = y_s.get_f64(0);
        let yz = y_zp.get_f64(0);
        let mut y = Vec::with_capacity(y_len);
        for (&ia, &ib) in ai.iter().zip(&bi) {
            for r in 0..m {
                let pa = a_rows[ia * m + r];
                let za = pick(a_zp, pa) as i64;
                for c in 0..n {
                    let pb = b_cols[ib * n + c];
                    let zb = pick(b_zp, pb) as i64;
                    let acc: i64 = (0..k)
                        .map(|j| (av[(ia * m + r) * k + j] - za) * (bv[(ib * k + j) * n + c] - zb))
                        .sum();
                    // Accumulation wraps in 32 bits; the rescale factor is
                    // computed in the scales' type.
                    let f = round_to(st, round_to(st, pick(a_s, pa) * pick(b_s, pb)) / ys);
                    y.push(saturate_round(acc as i32 as f64 * f + yz, lo, hi) as f64);
                }
            }
        }
        let mut shape = batch;
        if a.rank() > 1 {
            shape.push(m);
        }
        if b.rank() > 1 {
            shape.push(n);
        }
        Ok(vec![Tensor::from_vec(shape, y).cast(out, true)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_layouts() {
        // Per tensor.
        assert_eq!(param_index(&[], &[2, 2], 1, 0).unwrap(), vec![0; 4]);
        // Per axis 1 of [2, 3].
        assert_eq!(
            param_index(&[3], &[2, 3], 1, 0).unwrap(),
            vec![0, 1, 2, 0, 1, 2]
        );
        // Blocks of 2 along axis 1 of [2, 5]: 3 blocks, the last partial.
        assert_eq!(
            param_index(&[2, 3], &[2, 5], 1, 2).unwrap(),
            vec![0, 0, 1, 1, 2, 3, 3, 4, 4, 5]
        );
        assert!(param_index(&[2, 2], &[2, 5], 1, 2).is_err());
        assert!(param_index(&[4], &[2, 3], 1, 0).is_err());
    }

    #[test]
    fn rounding_is_half_to_even_and_saturates() {
        assert_eq!(saturate_round(2.5, 0, 255), 2);
        assert_eq!(saturate_round(3.5, 0, 255), 4);
        assert_eq!(saturate_round(-0.5, -128, 127), 0);
        assert_eq!(saturate_round(300.0, -128, 127), 127);
        assert_eq!(saturate_round(-9.0, -8, 7), -8);
    }
}
