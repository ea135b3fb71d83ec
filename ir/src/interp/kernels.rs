//! Building blocks shared by the interpreter's op implementations:
//! broadcasting, elementwise maps over every numeric dtype, index helpers.
//!
//! Floating-point math is done in f64 and rounded to the tensor's type
//! (for f32 this gives correctly rounded +, -, ×, ÷ and √); integer math is
//! done in i128 and wraps to the type's width, as ONNX integer ops do.

use half::{bf16, f16};

use crate::dtype::DType;
use crate::ops::OpError;
use crate::tensor::{Data, Tensor, minifloat, strides};

/// Numpy broadcast of concrete shapes.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(OpError::Invalid(format!(
                    "shapes {:?} do not broadcast",
                    shapes
                )));
            }
        }
    }
    Ok(out)
}

/// Strides to read an input of shape `inp` at each index of the broadcast
/// shape `out` (0 along broadcast dims).
pub fn broadcast_strides(inp: &[usize], out: &[usize]) -> Vec<usize> {
    let s = strides(inp);
    let off = out.len() - inp.len();
    (0..out.len())
        .map(|i| {
            if i < off || inp[i - off] == 1 {
                0
            } else {
                s[i - off]
            }
        })
        .collect()
}

/// For each element of the broadcast shape `out`, the flat index into an
/// input of shape `inp`.
pub fn broadcast_index(inp: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    if inp == out {
        return (0..n).collect();
    }
    let st = broadcast_strides(inp, out);
    let mut idx = Vec::with_capacity(n);
    for_each_offset(out, &st, |o| idx.push(o));
    idx
}

/// Checks that `inp` broadcasts onto `out` one way (the result has
/// `out`'s shape: no more dims, each 1 or `out`'s), as an op's bias or mask
/// must.
pub fn check_broadcast_onto(inp: &[usize], out: &[usize], what: &str) -> Result<(), OpError> {
    let fits = inp.len() <= out.len()
        && inp
            .iter()
            .rev()
            .zip(out.iter().rev())
            .all(|(&i, &o)| i == 1 || i == o);
    if fits {
        Ok(())
    } else {
        Err(OpError::Invalid(format!(
            "{what} of shape {inp:?} does not broadcast to {out:?}"
        )))
    }
}

/// Calls `f` with the strided offset of every index of `shape`, in
/// row-major order.
pub fn for_each_offset(shape: &[usize], st: &[usize], mut f: impl FnMut(usize)) {
    if shape.contains(&0) {
        return;
    }
    let rank = shape.len();
    if rank == 0 {
        f(0);
        return;
    }
    let (inner, inner_st) = (shape[rank - 1], st[rank - 1]);
    let mut counter = vec![0usize; rank];
    let mut base = 0usize;
    loop {
        let mut o = base;
        for _ in 0..inner {
            f(o);
            o += inner_st;
        }
        // Advance the outer dims.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            counter[d] += 1;
            base += st[d];
            if counter[d] < shape[d] {
                break;
            }
            base -= st[d] * shape[d];
            counter[d] = 0;
        }
    }
}

/// Applies `f` pairwise under broadcasting.
pub fn zip_broadcast<A: Copy, B: Copy, R>(
    a: &[A],
    sa: &[usize],
    b: &[B],
    sb: &[usize],
    f: impl Fn(A, B) -> R,
) -> Result<(Vec<usize>, Vec<R>), OpError> {
    let out = broadcast_shapes(&[sa, sb])?;
    let n: usize = out.iter().product();
    let mut r = Vec::with_capacity(n);
    if sa == sb {
        r.extend(a.iter().zip(b).map(|(&x, &y)| f(x, y)));
    } else if b.len() == 1 && out == sa {
        let y = b[0];
        r.extend(a.iter().map(|&x| f(x, y)));
    } else if a.len() == 1 && out == sb {
        let x = a[0];
        r.extend(b.iter().map(|&y| f(x, y)));
    } else {
        let ia = broadcast_index(sa, &out);
        let ib = broadcast_index(sb, &out);
        r.extend(ia.iter().zip(&ib).map(|(&i, &j)| f(a[i], b[j])));
    }
    Ok((out, r))
}

fn dtype_error(op: &str, d: DType) -> OpError {
    OpError::Unsupported(format!("{op} on {d} tensors"))
}

/// Maps every element of a float tensor through `f` (computed in f64).
pub fn map_float(t: &Tensor, what: &str, f: impl Fn(f64) -> f64) -> Result<Tensor, OpError> {
    let data = match t.data() {
        Data::F32(v) => Data::F32(v.iter().map(|&x| f(x as f64) as f32).collect()),
        Data::F64(v) => Data::F64(v.iter().map(|&x| f(x)).collect()),
        Data::F16(v) => Data::F16(v.iter().map(|x| f16::from_f64(f(x.to_f64()))).collect()),
        Data::BF16(v) => Data::BF16(v.iter().map(|x| bf16::from_f64(f(x.to_f64()))).collect()),
        _ => return Err(dtype_error(what, t.dtype())),
    };
    Ok(Tensor::from_parts(t.dtype(), t.shape().to_vec(), data))
}

/// Maps every element of an integer tensor through `f` (in i128, wrapping
/// back to the type).
pub fn map_int(t: &Tensor, what: &str, f: impl Fn(i128) -> i128) -> Result<Tensor, OpError> {
    macro_rules! go {
        ($v:expr, $var:ident, $ty:ty) => {
            Data::$var($v.iter().map(|&x| f(x as i128) as $ty).collect())
        };
    }
    let data = match t.data() {
        Data::I8(v) => go!(v, I8, i8),
        Data::I16(v) => go!(v, I16, i16),
        Data::I32(v) => go!(v, I32, i32),
        Data::I64(v) => go!(v, I64, i64),
        Data::U8(v) => go!(v, U8, u8),
        Data::U16(v) => go!(v, U16, u16),
        Data::U32(v) => go!(v, U32, u32),
        Data::U64(v) => go!(v, U64, u64),
        Data::Packed(v) if t.dtype().is_int() => Data::Packed(
            v.iter()
                .map(|&c| {
                    minifloat::from_int_wrapping(
                        t.dtype(),
                        f(minifloat::int_value(t.dtype(), c) as i128) as i64,
                    )
                })
                .collect(),
        ),
        _ => return Err(dtype_error(what, t.dtype())),
    };
    Ok(Tensor::from_parts(t.dtype(), t.shape().to_vec(), data))
}

/// Maps a numeric tensor: floats through `ff`, integers through `fi`.
pub fn map_numeric(
    t: &Tensor,
    what: &str,
    ff: impl Fn(f64) -> f64,
    fi: impl Fn(i128) -> i128,
) -> Result<Tensor, OpError> {
    if t.dtype().is_int() {
        map_int(t, what, fi)
    } else {
        map_float(t, what, ff)
    }
}

/// Maps every element to a bool.
pub fn map_to_bool(
    t: &Tensor,
    what: &str,
    ff: impl Fn(f64) -> bool,
    fi: impl Fn(i128) -> bool,
) -> Result<Tensor, OpError> {
    let n = t.numel();
    let out: Vec<bool> = match t.data() {
        Data::Bool(v) => v.iter().map(|&b| fi(b as i128)).collect(),
        _ if t.dtype().is_int() => (0..n).map(|i| fi(t.get_i64(i) as i128)).collect(),
        Data::Str(_) | Data::C64(_) | Data::C128(_) => return Err(dtype_error(what, t.dtype())),
        _ => (0..n).map(|i| ff(t.get_f64(i))).collect(),
    };
    Ok(Tensor::from_vec(t.shape().to_vec(), out))
}

fn same_dtype(a: &Tensor, b: &Tensor, what: &str) -> Result<(), OpError> {
    if a.dtype() != b.dtype() {
        return Err(OpError::Invalid(format!(
            "{what}: operands have different types {} and {}",
            a.dtype(),
            b.dtype()
        )));
    }
    Ok(())
}

/// A broadcasting binary op on two tensors of the same numeric dtype.
pub fn binary_numeric(
    a: &Tensor,
    b: &Tensor,
    what: &str,
    ff: impl Fn(f64, f64) -> f64,
    fi: impl Fn(i128, i128) -> i128,
) -> Result<Tensor, OpError> {
    same_dtype(a, b, what)?;
    let (sa, sb) = (a.shape(), b.shape());
    macro_rules! int {
        ($x:expr, $y:expr, $var:ident, $ty:ty) => {{
            let (s, v) = zip_broadcast($x, sa, $y, sb, |p, q| fi(p as i128, q as i128) as $ty)?;
            (s, Data::$var(v))
        }};
    }
    let (shape, data) = match (a.data(), b.data()) {
        (Data::F32(x), Data::F32(y)) => {
            let (s, v) = zip_broadcast(x, sa, y, sb, |p, q| ff(p as f64, q as f64) as f32)?;
            (s, Data::F32(v))
        }
        (Data::F64(x), Data::F64(y)) => {
            let (s, v) = zip_broadcast(x, sa, y, sb, &ff)?;
            (s, Data::F64(v))
        }
        (Data::F16(x), Data::F16(y)) => {
            let (s, v) = zip_broadcast(x, sa, y, sb, |p, q| {
                f16::from_f64(ff(p.to_f64(), q.to_f64()))
            })?;
            (s, Data::F16(v))
        }
        (Data::BF16(x), Data::BF16(y)) => {
            let (s, v) = zip_broadcast(x, sa, y, sb, |p, q| {
                bf16::from_f64(ff(p.to_f64(), q.to_f64()))
            })?;
            (s, Data::BF16(v))
        }
        (Data::I8(x), Data::I8(y)) => int!(x, y, I8, i8),
        (Data::I16(x), Data::I16(y)) => int!(x, y, I16, i16),
        (Data::I32(x), Data::I32(y)) => int!(x, y, I32, i32),
        (Data::I64(x), Data::I64(y)) => int!(x, y, I64, i64),
        (Data::U8(x), Data::U8(y)) => int!(x, y, U8, u8),
        (Data::U16(x), Data::U16(y)) => int!(x, y, U16, u16),
        (Data::U32(x), Data::U32(y)) => int!(x, y, U32, u32),
        (Data::U64(x), Data::U64(y)) => int!(x, y, U64, u64),
        _ => return Err(dtype_error(what, a.dtype())),
    };
    Ok(Tensor::from_parts(a.dtype(), shape, data))
}

/// A broadcasting comparison (or other bool-valued op) of two tensors of the
/// same dtype. Strings compare as strings.
pub fn binary_to_bool(
    a: &Tensor,
    b: &Tensor,
    what: &str,
    ff: impl Fn(f64, f64) -> bool,
    fi: impl Fn(i128, i128) -> bool,
    fs: impl Fn(&str, &str) -> bool,
) -> Result<Tensor, OpError> {
    same_dtype(a, b, what)?;
    let (sa, sb) = (a.shape(), b.shape());
    macro_rules! int {
        ($x:expr, $y:expr) => {
            zip_broadcast($x, sa, $y, sb, |p, q| fi(p as i128, q as i128))?
        };
    }
    let (shape, v) = match (a.data(), b.data()) {
        (Data::F32(x), Data::F32(y)) => zip_broadcast(x, sa, y, sb, |p, q| ff(p as f64, q as f64))?,
        (Data::F64(x), Data::F64(y)) => zip_broadcast(x, sa, y, sb, &ff)?,
        (Data::F16(x), Data::F16(y)) => {
            zip_broadcast(x, sa, y, sb, |p, q| ff(p.to_f64(), q.to_f64()))?
        }
        (Data::BF16(x), Data::BF16(y)) => {
            zip_broadcast(x, sa, y, sb, |p, q| ff(p.to_f64(), q.to_f64()))?
        }
        (Data::Bool(x), Data::Bool(y)) => int!(x, y),
        (Data::I8(x), Data::I8(y)) => int!(x, y),
        (Data::I16(x), Data::I16(y)) => int!(x, y),
        (Data::I32(x), Data::I32(y)) => int!(x, y),
        (Data::I64(x), Data::I64(y)) => int!(x, y),
        (Data::U8(x), Data::U8(y)) => int!(x, y),
        (Data::U16(x), Data::U16(y)) => int!(x, y),
        (Data::U32(x), Data::U32(y)) => int!(x, y),
        (Data::U64(x), Data::U64(y)) => int!(x, y),
        (Data::Str(x), Data::Str(y)) => {
            let ia = broadcast_index(sa, &broadcast_shapes(&[sa, sb])?);
            let out = broadcast_shapes(&[sa, sb])?;
            let ib = broadcast_index(sb, &out);
            (
                out,
                ia.iter()
                    .zip(&ib)
                    .map(|(&i, &j)| fs(&x[i], &y[j]))
                    .collect(),
            )
        }
        _ => return Err(dtype_error(what, a.dtype())),
    };
    Ok(Tensor::from_vec(shape, v))
}

/// A tensor of `dtype` from f64 values (rounded to the type).
pub fn from_f64(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor, OpError> {
    let t = Tensor::from_vec(shape, v);
    if dtype == DType::F64 {
        return Ok(t);
    }
    if !dtype.is_numeric() && dtype != DType::Bool {
        return Err(dtype_error("conversion", dtype));
    }
    Ok(t.cast(dtype, true))
}

/// Reads a float tensor as f64 values.
pub fn to_f64(t: &Tensor, what: &str) -> Result<Vec<f64>, OpError> {
    if t.dtype().is_float() || t.dtype().is_int() || t.dtype() == DType::Bool {
        Ok(t.to_f64_vec())
    } else {
        Err(dtype_error(what, t.dtype()))
    }
}

/// Normalizes an axis in `[-rank, rank)`.
pub fn axis(a: i64, rank: usize) -> Result<usize, OpError> {
    crate::ops::infer::normalize_axis(a, rank)
}

/// Splits a shape at `axis` into (outer, extent, inner) element counts.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Flat index to multi-index.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        if shape[d] > 0 {
            idx[d] = i % shape[d];
            i /= shape[d];
        }
    }
    idx
}

/// A 1-D i64 tensor.
pub fn i64_vec(v: Vec<i64>) -> Tensor {
    let n = v.len();
    Tensor::from_vec(vec![n], v)
}

/// The single float parameter in an optional scalar input (Clip bounds,
/// Pad's constant), as f64.
pub fn opt_scalar(t: Option<&Tensor>) -> Option<f64> {
    t.filter(|t| t.numel() > 0).map(|t| t.get_f64(0))
}

/// A shape computed from data (a shape input, sizes, repeats), checked to
/// be non-negative and within Saturn's element limit before anything is
/// allocated for it.
pub fn checked_shape(dims: &[i64]) -> Result<Vec<usize>, OpError> {
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        if d < 0 {
            return Err(OpError::Invalid(format!(
                "negative dimension {d} in shape {dims:?}"
            )));
        }
        out.push(d as u64);
    }
    crate::tensor::checked_numel(&out).map_err(|e| OpError::Invalid(e.to_string()))?;
    Ok(out.into_iter().map(|d| d as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(
            broadcast_shapes(&[&[2, 1, 3], &[4, 1]]).unwrap(),
            vec![2, 4, 3]
        );
        assert!(broadcast_shapes(&[&[2], &[3]]).is_err());
        assert_eq!(broadcast_index(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_index(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
        let (s, v) = zip_broadcast(&[1, 2], &[2, 1], &[10, 20, 30], &[3], |a, b| a + b).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(v, vec![11, 21, 31, 12, 22, 32]);
    }

    #[test]
    fn offsets_cover_strided_views() {
        let mut seen = vec![];
        for_each_offset(&[2, 3], &[1, 2], |o| seen.push(o));
        assert_eq!(seen, vec![0, 2, 4, 1, 3, 5]);
        let mut none = 0;
        for_each_offset(&[2, 0], &[1, 1], |_| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn int_math_wraps() {
        let a = Tensor::from_vec(vec![2], vec![100i8, -128]);
        let b = Tensor::from_vec(vec![2], vec![100i8, 1]);
        let r = binary_numeric(&a, &b, "add", |x, y| x + y, |x, y| x + y).unwrap();
        assert_eq!(r.as_slice::<i8>().unwrap(), &[-56, -127]);
    }
}
