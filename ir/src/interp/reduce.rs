//! Reductions, arg-reductions, softmax-like ops and scans along an axis.
//!
//! Float kernels compute in f64, integer kernels in i128 wrapping to the
//! element type; both read their input through [`Nums`].

use std::cmp::Ordering;

use super::kernels::*;
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::ops::*;
use crate::tensor::{Data, Tensor, strides};
use crate::{invalid, unsupported};

fn one(t: Tensor) -> Result<Vec<Tensor>, OpError> {
    Ok(vec![t])
}

/// The element count of a shape computed from inputs, checked against
/// overflow and Saturn's element limit. Ops call it before indexing
/// arithmetic on shapes that may hold a 0 next to huge dims.
pub(super) fn checked_len(shape: &[usize]) -> Result<usize, OpError> {
    let dims: Vec<i64> = shape
        .iter()
        .map(|&d| i64::try_from(d).unwrap_or(-1))
        .collect();
    Ok(checked_shape(&dims)?.iter().product())
}

/// The elements of a real tensor in the form kernels compute with: floats
/// as f64, integers and bools as i128.
pub(crate) enum Nums {
    Float(Vec<f64>),
    Int(Vec<i128>),
}

pub(crate) fn nums(t: &Tensor, what: &str) -> Result<Nums, OpError> {
    macro_rules! ints {
        ($v:expr) => {
            Nums::Int($v.iter().map(|&x| x as i128).collect())
        };
    }
    Ok(match t.data() {
        Data::F32(v) => Nums::Float(v.iter().map(|&x| x as f64).collect()),
        Data::F64(v) => Nums::Float(v.clone()),
        Data::F16(_) | Data::BF16(_) => Nums::Float(t.to_f64_vec()),
        Data::Bool(v) => ints!(v),
        Data::I8(v) => ints!(v),
        Data::I16(v) => ints!(v),
        Data::I32(v) => ints!(v),
        Data::I64(v) => ints!(v),
        Data::U8(v) => ints!(v),
        Data::U16(v) => ints!(v),
        Data::U32(v) => ints!(v),
        Data::U64(v) => ints!(v),
        _ => return unsupported!("{what} on {} tensors", t.dtype()),
    })
}

/// A tensor of an integer (or bool) dtype from i128 values, wrapping each to
/// the type's width.
pub(crate) fn from_ints(dtype: DType, shape: Vec<usize>, v: Vec<i128>) -> Result<Tensor, OpError> {
    macro_rules! wrap {
        ($var:ident, $ty:ty) => {
            Data::$var(v.iter().map(|&x| x as $ty).collect())
        };
    }
    let data = match dtype {
        DType::Bool => Data::Bool(v.iter().map(|&x| x != 0).collect()),
        DType::I8 => wrap!(I8, i8),
        DType::I16 => wrap!(I16, i16),
        DType::I32 => wrap!(I32, i32),
        DType::I64 => wrap!(I64, i64),
        DType::U8 => wrap!(U8, u8),
        DType::U16 => wrap!(U16, u16),
        DType::U32 => wrap!(U32, u32),
        DType::U64 => wrap!(U64, u64),
        _ => return unsupported!("integer results of type {dtype}"),
    };
    Ok(Tensor::from_parts(dtype, shape, data))
}

/// The smallest and largest value of an integer (or bool) dtype.
fn int_range(dtype: DType) -> (i128, i128) {
    if dtype == DType::Bool {
        return (0, 1);
    }
    let bits = dtype.bits() as u32;
    if dtype.is_signed_int() {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

/// A reduction's output length and, for each input dim, the stride of the
/// output offset (0 along reduced axes).
pub(super) fn reduce_layout(shape: &[usize], axes: &[usize]) -> (usize, Vec<usize>) {
    let kept = reduced_dims(shape, axes, true, 1);
    let mut st = strides(&kept);
    for &a in axes {
        st[a] = 0;
    }
    (kept.iter().product(), st)
}

/// Calls `f(input index, output offset)` for every element of a tensor of
/// shape `shape` whose `axes` are reduced, in row-major order.
pub(super) fn for_each_reduced(shape: &[usize], axes: &[usize], mut f: impl FnMut(usize, usize)) {
    let (_, st) = reduce_layout(shape, axes);
    let mut i = 0;
    for_each_offset(shape, &st, |o| {
        f(i, o);
        i += 1;
    });
}

/// Folds the elements of `x` (of shape `shape`) over `axes` into one
/// accumulator per output element.
fn fold<T: Copy, A: Copy>(
    x: &[T],
    shape: &[usize],
    axes: &[usize],
    init: A,
    f: impl Fn(A, T) -> A,
) -> Vec<A> {
    let mut acc = vec![init; reduce_layout(shape, axes).0];
    for_each_reduced(shape, axes, |i, o| acc[o] = f(acc[o], x[i]));
    acc
}

/// max/min that propagate NaN, as ONNX (numpy) reductions do.
fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn min_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    L1,
    L2,
    LogSum,
    LogSumExp,
    Max,
    Mean,
    Min,
    Prod,
    Sum,
    SumSquare,
}

impl Reduction {
    /// Whether integer inputs reduce exactly in integers (the others go
    /// through f64 and truncate back).
    fn int_exact(self) -> bool {
        use Reduction::*;
        matches!(self, L1 | Max | Mean | Min | Prod | Sum | SumSquare)
    }
}

fn float_reduce(kind: Reduction, v: &[f64], shape: &[usize], axes: &[usize]) -> Vec<f64> {
    use Reduction::*;
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    let sum = |f: fn(f64) -> f64| fold(v, shape, axes, 0.0, |a, x| a + f(x));
    match kind {
        Sum => sum(|x| x),
        SumSquare => sum(|x| x * x),
        L1 => sum(f64::abs),
        L2 => sum(|x| x * x).into_iter().map(f64::sqrt).collect(),
        LogSum => sum(|x| x).into_iter().map(f64::ln).collect(),
        Mean => sum(|x| x).into_iter().map(|s| s / count as f64).collect(),
        Prod => fold(v, shape, axes, 1.0, |a, x| a * x),
        Max => fold(v, shape, axes, f64::NEG_INFINITY, max_nan),
        Min => fold(v, shape, axes, f64::INFINITY, min_nan),
        LogSumExp => {
            // Shift by the largest finite element so exp cannot overflow;
            // infinities and NaN then come out of exp and ln as they should.
            let shift: Vec<f64> = fold(v, shape, axes, f64::NEG_INFINITY, |a, x| {
                if x.is_finite() && x > a { x } else { a }
            })
            .into_iter()
            .map(|m| if m.is_finite() { m } else { 0.0 })
            .collect();
            let mut s = vec![0.0; shift.len()];
            for_each_reduced(shape, axes, |i, o| s[o] += (v[i] - shift[o]).exp());
            s.iter().zip(&shift).map(|(s, m)| s.ln() + m).collect()
        }
    }
}

fn int_reduce(
    kind: Reduction,
    dtype: DType,
    v: &[i128],
    shape: &[usize],
    axes: &[usize],
) -> Vec<i128> {
    use Reduction::*;
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    let (lo, hi) = int_range(dtype);
    let sum = |f: fn(i128) -> i128| fold(v, shape, axes, 0i128, |a, x| a.wrapping_add(f(x)));
    match kind {
        Sum => sum(|x| x),
        SumSquare => sum(|x| x.wrapping_mul(x)),
        L1 => sum(i128::abs),
        // Like numpy's mean cast back to an integer: truncated.
        Mean => sum(|x| x)
            .into_iter()
            .map(|s| if count == 0 { 0 } else { s / count as i128 })
            .collect(),
        Prod => fold(v, shape, axes, 1i128, i128::wrapping_mul),
        Max => fold(v, shape, axes, lo, i128::max),
        Min => fold(v, shape, axes, hi, i128::min),
        L2 | LogSum | LogSumExp => unreachable!("computed in floats"),
    }
}

fn reduce(
    cx: &EvalCx,
    kind: Reduction,
    keepdims: bool,
    noop_with_empty_axes: bool,
    what: &str,
) -> Result<Vec<Tensor>, OpError> {
    let x = cx.input(0)?;
    let bool_ok = matches!(kind, Reduction::Max | Reduction::Min);
    if !reducible(x.dtype(), bool_ok) {
        return unsupported!("{what} on {} tensors", x.dtype());
    }
    let axes = match cx.opt_input(1) {
        Some(t) if !t.dtype().is_int() => return invalid!("axes must be integers"),
        Some(t) => t.to_i64_vec(),
        None => vec![],
    };
    if axes.is_empty() && noop_with_empty_axes {
        return one(x.clone());
    }
    let axes = if axes.is_empty() {
        (0..x.rank()).collect()
    } else {
        reduction_axes(&axes, x.rank())?
    };
    let out_shape = reduced_dims(x.shape(), &axes, keepdims, 1);
    let out_len = checked_len(&out_shape)?;
    // An empty input reduces like an [out_len, 0] one: to the identity.
    let (shape, axes) = if x.numel() == 0 {
        (vec![out_len, 0], vec![1])
    } else {
        (x.shape().to_vec(), axes)
    };
    let shape = shape.as_slice();
    let dtype = x.dtype();
    let v = match nums(x, what)? {
        Nums::Int(v) if kind.int_exact() => {
            return one(from_ints(
                dtype,
                out_shape,
                int_reduce(kind, dtype, &v, shape, &axes),
            )?);
        }
        Nums::Int(v) => v.into_iter().map(|x| x as f64).collect(),
        Nums::Float(v) => v,
    };
    one(from_f64(
        dtype,
        out_shape,
        float_reduce(kind, &v, shape, &axes),
    )?)
}

macro_rules! reductions {
    ($($op:ident => $kind:ident),* $(,)?) => {$(
        impl Eval for $op {
            fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
                reduce(cx, Reduction::$kind, self.keepdims, self.noop_with_empty_axes, stringify!($op))
            }
        }
    )*};
}

reductions!(
    ReduceL1 => L1,
    ReduceL2 => L2,
    ReduceLogSum => LogSum,
    ReduceLogSumExp => LogSumExp,
    ReduceMax => Max,
    ReduceMean => Mean,
    ReduceMin => Min,
    ReduceProd => Prod,
    ReduceSum => Sum,
    ReduceSumSquare => SumSquare,
);

/// Float order with NaN above everything (numpy's sort order).
pub(crate) fn cmp_nan_high(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Float order with NaN below everything.
fn cmp_nan_low(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// For each lane along the middle dim of `(outer, n, inner)`, the index
/// of the winner: `ord(candidate, best)` is `Greater` when the candidate
/// beats the best so far; `Equal` ties go to the last index if `last`.
fn arg_best<T: Copy>(
    v: &[T],
    (outer, n, inner): (usize, usize, usize),
    last: bool,
    ord: impl Fn(T, T) -> Ordering,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let base = o * n * inner + i;
            let mut best = 0;
            for k in 1..n {
                match ord(v[base + k * inner], v[base + best * inner]) {
                    Ordering::Greater => best = k,
                    Ordering::Equal if last => best = k,
                    _ => {}
                }
            }
            out.push(best);
        }
    }
    out
}

/// ArgMax (`max`) or ArgMin. NaN wins either way, as in numpy.
fn arg_reduce(
    cx: &EvalCx,
    a: i64,
    keepdims: bool,
    last: bool,
    max: bool,
    what: &str,
) -> Result<Vec<Tensor>, OpError> {
    let x = cx.input(0)?;
    let a = axis(a, x.rank())?;
    let mut shape = x.shape().to_vec();
    if keepdims {
        shape[a] = 1;
    } else {
        shape.remove(a);
    }
    if x.numel() == 0 {
        if checked_len(&shape)? > 0 {
            return invalid!("{what} of an empty axis");
        }
        return one(Tensor::from_vec(shape, Vec::<i64>::new()));
    }
    let lanes = split_at_axis(x.shape(), a);
    let best = match nums(x, what)? {
        Nums::Float(v) if max => arg_best(&v, lanes, last, cmp_nan_high),
        Nums::Float(v) => arg_best(&v, lanes, last, |c, b| cmp_nan_low(b, c)),
        Nums::Int(v) if max => arg_best(&v, lanes, last, |c, b| c.cmp(&b)),
        Nums::Int(v) => arg_best(&v, lanes, last, |c, b| b.cmp(&c)),
    };
    one(Tensor::from_vec(
        shape,
        best.into_iter().map(|i| i as i64).collect(),
    ))
}

impl Eval for ArgMax {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (k, l) = (self.keepdims, self.select_last_index);
        arg_reduce(cx, self.axis, k, l, true, "ArgMax")
    }
}

impl Eval for ArgMin {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (k, l) = (self.keepdims, self.select_last_index);
        arg_reduce(cx, self.axis, k, l, false, "ArgMin")
    }
}

/// Rewrites every lane along `axis` of a float tensor with `f`.
fn map_lanes(x: &Tensor, a: i64, what: &str, f: impl Fn(&mut [f64])) -> Result<Tensor, OpError> {
    if !x.dtype().is_float() {
        return unsupported!("{what} on {} tensors", x.dtype());
    }
    let a = axis(a, x.rank())?;
    if x.numel() == 0 {
        return Ok(x.clone());
    }
    let (outer, n, inner) = split_at_axis(x.shape(), a);
    let mut v = to_f64(x, what)?;
    if inner == 1 {
        v.chunks_exact_mut(n.max(1)).for_each(&f);
    } else {
        let mut lane = vec![0.0; n];
        for o in 0..outer {
            for i in 0..inner {
                let base = o * n * inner + i;
                for (k, l) in lane.iter_mut().enumerate() {
                    *l = v[base + k * inner];
                }
                f(&mut lane);
                for (k, l) in lane.iter().enumerate() {
                    v[base + k * inner] = *l;
                }
            }
        }
    }
    from_f64(x.dtype(), x.shape().to_vec(), v)
}

fn lane_max(lane: &[f64]) -> f64 {
    lane.iter().copied().fold(f64::NEG_INFINITY, max_nan)
}

impl Eval for Softmax {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(map_lanes(cx.input(0)?, self.axis, "Softmax", |lane| {
            let m = lane_max(lane);
            let mut sum = 0.0;
            for x in lane.iter_mut() {
                *x = (*x - m).exp();
                sum += *x;
            }
            lane.iter_mut().for_each(|x| *x /= sum);
        })?)
    }
}

impl Eval for LogSoftmax {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(map_lanes(cx.input(0)?, self.axis, "LogSoftmax", |lane| {
            let m = lane_max(lane);
            let log_sum = lane.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            lane.iter_mut().for_each(|x| *x = *x - m - log_sum);
        })?)
    }
}

impl Eval for Hardmax {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(map_lanes(cx.input(0)?, self.axis, "Hardmax", |lane| {
            let best = arg_best(lane, (1, lane.len(), 1), false, cmp_nan_high);
            for (k, x) in lane.iter_mut().enumerate() {
                *x = if best.first() == Some(&k) { 1.0 } else { 0.0 };
            }
        })?)
    }
}

/// CumSum/CumProd: running `f` from `init` along the axis in input 1.
fn scan<T: Copy>(
    v: &[T],
    (outer, n, inner): (usize, usize, usize),
    exclusive: bool,
    reverse: bool,
    init: T,
    f: impl Fn(T, T) -> T,
) -> Vec<T> {
    let mut out = vec![init; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * n * inner + i;
            let mut acc = init;
            for step in 0..n {
                let k = if reverse { n - 1 - step } else { step };
                let at = base + k * inner;
                if exclusive {
                    out[at] = acc;
                    acc = f(acc, v[at]);
                } else {
                    acc = f(acc, v[at]);
                    out[at] = acc;
                }
            }
        }
    }
    out
}

fn cumulative(
    cx: &EvalCx,
    exclusive: bool,
    reverse: bool,
    prod: bool,
    what: &str,
) -> Result<Vec<Tensor>, OpError> {
    let x = cx.input(0)?;
    if !reducible(x.dtype(), false) {
        return unsupported!("{what} on {} tensors", x.dtype());
    }
    let a = scan_axis(cx.input(1)?, x.rank())?;
    if x.numel() == 0 {
        return one(x.clone());
    }
    let lanes = split_at_axis(x.shape(), a);
    let shape = x.shape().to_vec();
    one(match nums(x, what)? {
        Nums::Float(v) if prod => from_f64(
            x.dtype(),
            shape,
            scan(&v, lanes, exclusive, reverse, 1.0, |a, b| a * b),
        )?,
        Nums::Float(v) => from_f64(
            x.dtype(),
            shape,
            scan(&v, lanes, exclusive, reverse, 0.0, |a, b| a + b),
        )?,
        Nums::Int(v) if prod => from_ints(
            x.dtype(),
            shape,
            scan(&v, lanes, exclusive, reverse, 1, i128::wrapping_mul),
        )?,
        Nums::Int(v) => from_ints(
            x.dtype(),
            shape,
            scan(&v, lanes, exclusive, reverse, 0, i128::wrapping_add),
        )?,
    })
}

impl Eval for CumSum {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        cumulative(cx, self.exclusive, self.reverse, false, "CumSum")
    }
}

impl Eval for CumProd {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        cumulative(cx, self.exclusive, self.reverse, true, "CumProd")
    }
}

/// The `k` best indices of each lane, best first; equal values keep their
/// index order. NaN counts as larger than any number.
fn top_k<T: Copy>(
    v: &[T],
    (outer, n, inner): (usize, usize, usize),
    k: usize,
    largest: bool,
    cmp: impl Fn(T, T) -> Ordering,
) -> Vec<usize> {
    let mut out = vec![0; outer * k * inner];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let base = o * n * inner + i;
            order.clear();
            order.extend(0..n);
            // A stable sort keeps the lower index first among ties.
            order.sort_by(|&p, &q| {
                let (x, y) = (v[base + p * inner], v[base + q * inner]);
                if largest { cmp(y, x) } else { cmp(x, y) }
            });
            for (j, &p) in order[..k].iter().enumerate() {
                out[o * k * inner + j * inner + i] = p;
            }
        }
    }
    out
}

impl Eval for TopK {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let kt = cx.input(1)?;
        if kt.numel() != 1 || !kt.dtype().is_int() {
            return invalid!(
                "k must be one integer, found {}{:?}",
                kt.dtype(),
                kt.shape()
            );
        }
        let a = axis(self.axis, x.rank())?;
        let k = kt.get_i64(0);
        if k < 0 || k as u64 > x.shape()[a] as u64 {
            return invalid!("k = {k} is out of range for an axis of {}", x.shape()[a]);
        }
        let k = k as usize;
        if x.numel() == 0 {
            // k ≤ the axis, so the result is empty too.
            let mut shape = x.shape().to_vec();
            shape[a] = k;
            let indices = Tensor::from_vec(shape.clone(), Vec::<i64>::new());
            return Ok(vec![x.gather_flat(shape, &[]), indices]);
        }
        let lanes = split_at_axis(x.shape(), a);
        let picks = match nums(x, "TopK")? {
            Nums::Float(v) => top_k(&v, lanes, k, self.largest, cmp_nan_high),
            Nums::Int(v) => top_k(&v, lanes, k, self.largest, |a, b| a.cmp(&b)),
        };
        let mut shape = x.shape().to_vec();
        shape[a] = k;
        // Flat input positions of the picks, in output order.
        let (_, n, inner) = lanes;
        let flat: Vec<usize> = picks
            .iter()
            .enumerate()
            .map(|(j, &p)| {
                let (o, i) = (j / (k * inner), j % inner);
                o * n * inner + p * inner + i
            })
            .collect();
        let values = x.gather_flat(shape.clone(), &flat);
        let indices = Tensor::from_vec(shape, picks.into_iter().map(|p| p as i64).collect());
        Ok(vec![values, indices])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::TensorType;

    fn eval(op: impl Into<Op>, inputs: &[&Tensor], outs: usize) -> Result<Vec<Tensor>, OpError> {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        let types = vec![TensorType::unknown_rank(DType::F32); outs];
        super::super::eval_op(&op.into(), &inputs, &types)
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    fn axes(v: &[i64]) -> Tensor {
        Tensor::from_vec(vec![v.len()], v.to_vec())
    }

    const KEEP: (bool, bool) = (true, false);

    #[test]
    fn reductions_over_axes() {
        let x = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let (keepdims, noop_with_empty_axes) = KEEP;
        let sum = ReduceSum {
            keepdims,
            noop_with_empty_axes,
        };
        let y = &eval(sum.clone(), &[&x, &axes(&[-1])], 1).unwrap()[0];
        assert_eq!(y.shape(), &[2, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[6., 15.]);
        // No axes: everything.
        let y = &eval(sum, &[&x], 1).unwrap()[0];
        assert_eq!(
            (y.shape(), y.as_slice::<f32>().unwrap()),
            (&[1, 1][..], &[21.][..])
        );
        let mean = ReduceMean {
            keepdims: false,
            noop_with_empty_axes,
        };
        let y = &eval(mean, &[&x, &axes(&[0])], 1).unwrap()[0];
        assert_eq!(
            (y.shape(), y.as_slice::<f32>().unwrap()),
            (&[3][..], &[2.5, 3.5, 4.5][..])
        );
        let noop = ReduceSum {
            keepdims,
            noop_with_empty_axes: true,
        };
        assert_eq!(eval(noop, &[&x, &axes(&[])], 1).unwrap()[0], x);
        let dup = ReduceSum {
            keepdims,
            noop_with_empty_axes,
        };
        assert!(eval(dup.clone(), &[&x, &axes(&[1, -1])], 1).is_err());
        assert!(eval(dup, &[&x, &axes(&[2])], 1).is_err());
    }

    #[test]
    fn empty_reductions_give_the_identity() {
        let x = f32s(&[2, 0], &[]);
        let (keepdims, noop_with_empty_axes) = KEEP;
        let a = axes(&[1]);
        let run = |op: Op| eval(op, &[&x, &a], 1).unwrap()[0].to_f64_vec();
        let (k, n) = (keepdims, noop_with_empty_axes);
        let inf = f64::INFINITY;
        assert_eq!(
            run(ReduceSum {
                keepdims: k,
                noop_with_empty_axes: n
            }
            .into()),
            [0., 0.]
        );
        assert_eq!(
            run(ReduceProd {
                keepdims: k,
                noop_with_empty_axes: n
            }
            .into()),
            [1., 1.]
        );
        assert_eq!(
            run(ReduceMax {
                keepdims: k,
                noop_with_empty_axes: n
            }
            .into()),
            [-inf, -inf]
        );
        assert_eq!(
            run(ReduceMin {
                keepdims: k,
                noop_with_empty_axes: n
            }
            .into()),
            [inf, inf]
        );
        assert_eq!(
            run(ReduceLogSum {
                keepdims: k,
                noop_with_empty_axes: n
            }
            .into()),
            [-inf, -inf]
        );
        let lse = ReduceLogSumExp {
            keepdims: k,
            noop_with_empty_axes: n,
        };
        assert_eq!(run(lse.into()), [-inf, -inf]);
        // Integers start from the type's extremes, bools from false/true.
        let xi = Tensor::from_vec(vec![1, 0], Vec::<i8>::new());
        let max = ReduceMax {
            keepdims: k,
            noop_with_empty_axes: n,
        };
        let y = &eval(max.clone(), &[&xi, &a], 1).unwrap()[0];
        assert_eq!(y.as_slice::<i8>().unwrap(), &[-128]);
        let xb = Tensor::from_vec(vec![1, 0], Vec::<bool>::new());
        let y = &eval(max, &[&xb, &a], 1).unwrap()[0];
        assert_eq!(y.as_slice::<bool>().unwrap(), &[false]);
    }

    #[test]
    fn empty_inputs() {
        let x = f32s(&[0, 3], &[]);
        let (keepdims, noop_with_empty_axes) = KEEP;
        let sum = ReduceSum {
            keepdims,
            noop_with_empty_axes,
        };
        let y = &eval(sum, &[&x, &axes(&[0])], 1).unwrap()[0];
        assert_eq!((y.shape(), y.to_f64_vec()), (&[1, 3][..], vec![0.; 3]));
        let arg = |axis| ArgMax {
            axis,
            keepdims: false,
            select_last_index: false,
        };
        assert!(eval(arg(0), &[&x], 1).is_err());
        assert_eq!(eval(arg(1), &[&x], 1).unwrap()[0].shape(), &[0]);
        assert_eq!(eval(Softmax { axis: 0 }, &[&x], 1).unwrap()[0], x);
    }

    #[test]
    fn integer_and_bool_reductions() {
        let (keepdims, noop_with_empty_axes) = KEEP;
        let x = Tensor::from_vec(vec![3], vec![100u8, 100, 100]);
        let sum = ReduceSum {
            keepdims,
            noop_with_empty_axes,
        };
        // 300 wraps to 44.
        assert_eq!(
            eval(sum, &[&x], 1).unwrap()[0].as_slice::<u8>().unwrap(),
            &[44]
        );
        let big = Tensor::from_vec(vec![2], vec![u64::MAX, 1]);
        let max = ReduceMax {
            keepdims,
            noop_with_empty_axes,
        };
        let y = &eval(max, &[&big], 1).unwrap()[0];
        assert_eq!(y.as_slice::<u64>().unwrap(), &[u64::MAX]);
        let b = Tensor::from_vec(vec![2, 2], vec![true, false, true, true]);
        let min = ReduceMin {
            keepdims: false,
            noop_with_empty_axes,
        };
        let y = &eval(min, &[&b, &axes(&[1])], 1).unwrap()[0];
        assert_eq!(y.as_slice::<bool>().unwrap(), &[false, true]);
        let mean = ReduceMean {
            keepdims,
            noop_with_empty_axes,
        };
        let x = Tensor::from_vec(vec![2], vec![-3i32, 0]);
        // -1.5 truncates toward zero.
        assert_eq!(
            eval(mean, &[&x], 1).unwrap()[0].as_slice::<i32>().unwrap(),
            &[-1]
        );
    }

    #[test]
    fn log_sum_exp_is_stable() {
        let (keepdims, noop_with_empty_axes) = KEEP;
        let x = Tensor::from_vec(vec![2], vec![1000.0f64, 1000.0]);
        let op = ReduceLogSumExp {
            keepdims,
            noop_with_empty_axes,
        };
        let y = eval(op.clone(), &[&x], 1).unwrap()[0].to_f64_vec()[0];
        assert!((y - (1000.0 + 2f64.ln())).abs() < 1e-9);
        let x = Tensor::from_vec(vec![2], vec![f64::NEG_INFINITY, f64::NEG_INFINITY]);
        assert_eq!(
            eval(op, &[&x], 1).unwrap()[0].to_f64_vec(),
            [f64::NEG_INFINITY]
        );
    }

    #[test]
    fn arg_max_ties_and_nan() {
        let x = f32s(&[2, 3], &[1., 3., 3., f32::NAN, 2., f32::NAN]);
        let arg = |max: bool, last: bool| {
            let r = if max {
                eval(
                    ArgMax {
                        axis: 1,
                        keepdims: false,
                        select_last_index: last,
                    },
                    &[&x],
                    1,
                )
            } else {
                eval(
                    ArgMin {
                        axis: 1,
                        keepdims: false,
                        select_last_index: last,
                    },
                    &[&x],
                    1,
                )
            };
            r.unwrap()[0].as_slice::<i64>().unwrap().to_vec()
        };
        assert_eq!(arg(true, false), [1, 0]);
        assert_eq!(arg(true, true), [2, 2]);
        assert_eq!(arg(false, false), [0, 0]);
        let y = &eval(
            ArgMax {
                axis: 0,
                keepdims: true,
                select_last_index: false,
            },
            &[&x],
            1,
        )
        .unwrap()[0];
        assert_eq!(y.shape(), &[1, 3]);
        let empty = f32s(&[0, 2], &[]);
        assert!(
            eval(
                ArgMax {
                    axis: 0,
                    keepdims: true,
                    select_last_index: false
                },
                &[&empty],
                1
            )
            .is_err()
        );
    }

    #[test]
    fn softmax_family() {
        let x = f32s(&[2, 2], &[0., 0., 1000., 0.]);
        let y = eval(Softmax { axis: 0 }, &[&x], 1).unwrap()[0].to_f64_vec();
        assert_eq!(y, [0., 0.5, 1., 0.5]);
        let y = eval(LogSoftmax { axis: -1 }, &[&x], 1).unwrap()[0].to_f64_vec();
        assert!((y[0] + 2f64.ln()).abs() < 1e-6 && y[2] == 0.0 && y[3] == -1000.0);
        let x = f32s(&[1, 3], &[2., 5., 5.]);
        let y = eval(Hardmax { axis: 1 }, &[&x], 1).unwrap()[0].to_f64_vec();
        assert_eq!(y, [0., 1., 0.]);
    }

    #[test]
    fn cumulative_scans() {
        let x = Tensor::from_vec(vec![4], vec![1i32, 2, 3, 4]);
        let ax = Tensor::scalar(0i64);
        let run = |op: Op| {
            eval(op, &[&x, &ax], 1).unwrap()[0]
                .as_slice::<i32>()
                .unwrap()
                .to_vec()
        };
        assert_eq!(
            run(CumSum {
                exclusive: false,
                reverse: false
            }
            .into()),
            [1, 3, 6, 10]
        );
        assert_eq!(
            run(CumSum {
                exclusive: true,
                reverse: true
            }
            .into()),
            [9, 7, 4, 0]
        );
        assert_eq!(
            run(CumProd {
                exclusive: true,
                reverse: false
            }
            .into()),
            [1, 1, 2, 6]
        );
        let bad = Tensor::from_vec(vec![2], vec![0i64, 1]);
        assert!(
            eval(
                CumSum {
                    exclusive: false,
                    reverse: false
                },
                &[&x, &bad],
                1
            )
            .is_err()
        );
    }

    #[test]
    fn top_k_orders_ties_by_index_and_nan_first() {
        let x = f32s(&[5], &[1., f32::NAN, 3., 1., 3.]);
        let k = Tensor::from_vec(vec![1], vec![4i64]);
        let run = |largest: bool| {
            let r = eval(
                TopK {
                    axis: -1,
                    largest,
                    sorted: true,
                },
                &[&x, &k],
                2,
            )
            .unwrap();
            (r[0].to_f64_vec(), r[1].as_slice::<i64>().unwrap().to_vec())
        };
        let (v, i) = run(true);
        assert!(v[0].is_nan());
        assert_eq!((&v[1..], i), (&[3., 3., 1.][..], vec![1, 2, 4, 0]));
        let (v, i) = run(false);
        assert_eq!((v, i), (vec![1., 1., 3., 3.], vec![0, 3, 2, 4]));
        let k = Tensor::from_vec(vec![1], vec![6i64]);
        assert!(
            eval(
                TopK {
                    axis: 0,
                    largest: true,
                    sorted: true
                },
                &[&x, &k],
                2
            )
            .is_err()
        );
    }
}
