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
    let mut v = to_f64(x, what)?;
    for_each_lane(&mut v, x.shape(), a, f);
    from_f64(x.dtype(), x.shape().to_vec(), v)
}

/// Rewrites every lane along axis `a` of `v` (of shape `shape`, with no
/// zero dims) with `f`.
fn for_each_lane(v: &mut [f64], shape: &[usize], a: usize, f: impl Fn(&mut [f64])) {
    let (outer, n, inner) = split_at_axis(shape, a);
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
}

fn lane_max(lane: &[f64]) -> f64 {
    lane.iter().copied().fold(f64::NEG_INFINITY, max_nan)
}

/// Softmax of a row in three passes: the max, the sum of `exp(x - max)`,
/// the quotients. A row of -inf is 0/0 = NaN; NaN or +inf anywhere makes
/// the row NaN (as `x - max` does).
fn softmax_three_pass(lane: &mut [f64]) {
    let m = lane_max(lane);
    let mut sum = 0.0;
    for x in lane.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    lane.iter_mut().for_each(|x| *x /= sum);
}

/// Online softmax (Milakov & Gimelshein, "Online normalizer calculation
/// for softmax", 2018): one pass keeps the running max `m` and the running
/// sum `d` of `exp(x - m)`, rescaling `d` by `exp(m_old - m_new)` when the
/// max grows; a second pass writes `exp(x - m) / d`. A -inf element adds
/// nothing (kernels guard it so that `-inf - -inf` cannot turn the sum
/// into NaN), so a row of -inf ends as 0/0 = NaN like the three-pass form.
fn softmax_online(lane: &mut [f64]) {
    let (mut m, mut d) = (f64::NEG_INFINITY, 0.0);
    for &x in lane.iter() {
        if x == f64::NEG_INFINITY {
            continue;
        }
        if x > m {
            d *= (m - x).exp();
            m = x;
        }
        // NaN compares false above and poisons `d` here; +inf gives
        // exp(inf - inf) = NaN, as in the three-pass form.
        d += (x - m).exp();
    }
    lane.iter_mut().for_each(|x| *x = (*x - m).exp() / d);
}

/// `log2(e) - LOG2_E`: the low half of log2(e) as a double-double.
const LOG2_E_LO: f64 = 2.035_527_374_093_103_3e-17;

/// A power-of-two exponent `4·hi + lo`, both parts integer-valued.
/// Exponents of the two-pass softmax reach ±1.44·|x|, which for the
/// largest f64 inputs (a `finfo(float64).min` mask) is not a finite f64;
/// a quarter of it always is.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Exponent {
    hi: f64,
    lo: f64,
}

impl Exponent {
    /// `self - other`: exact whenever it is below 2^53, which is all that
    /// matters (a factor 2^-1100 already rounds to 0).
    fn minus(self, other: Exponent) -> f64 {
        4.0 * (self.hi - other.hi) + (self.lo - other.lo)
    }
}

/// `v · 2^d` for an integer-valued `d` (±inf saturate), by exponent
/// arithmetic as hardware rescales.
fn scale2(v: f64, d: f64) -> f64 {
    libm::ldexp(v, d.clamp(-1e4, 1e4) as i32)
}

/// The range reduction of the two-pass softmax: `exp(x) = p · 2^n` with
/// `n = round(x · log2 e)` and `p = exp(r)`, `r = x - n·ln 2`, so
/// `|r| ≤ ln2/2` and `p` is in [0.70, 1.42] (the part a kernel computes
/// with a polynomial). `r` is computed as `(x·log2 e - n)·ln 2` from a
/// double-double `x·log2 e`, which keeps it accurate to ~1e-16 for
/// |x| up to 2^50 and finite (so `p` stays in range, and equal inputs
/// give equal parts) for every finite `x`. `x` = +inf or NaN gives a NaN
/// `p`.
fn exp_parts(x: f64) -> (f64, Exponent) {
    // x · log2(e) / 4 = th + tl.
    let (c_hi, c_lo) = (std::f64::consts::LOG2_E / 4.0, LOG2_E_LO / 4.0);
    let th = x * c_hi;
    let tl = x.mul_add(c_hi, -th) + x * c_lo;
    let hi = th.round();
    // x · log2(e) = 4·hi + w, with w = 4·(th - hi + tl) small.
    let w = 4.0 * ((th - hi) + tl);
    let lo = w.round();
    let r = (w - lo) * std::f64::consts::LN_2;
    (r.exp(), Exponent { hi, lo })
}

/// Two-pass softmax (Dukhan & Ablavatski, "The Two-Pass Softmax
/// Algorithm", 2020): no max pass. Pass 1 sums `exp(x)` as a pair
/// (mantissa `m`, exponent `e`), merging each element's `(p, n)` at the
/// larger of the two exponents, so nothing overflows however large `x`
/// gets. Pass 2 recomputes `(p, n)` and writes `p · (1/m) · 2^(n - e)`.
/// A -inf element adds nothing and gets 0; a row of -inf is NaN (0/0, as
/// in the three-pass form); NaN or +inf anywhere makes the row NaN.
fn softmax_two_pass(lane: &mut [f64]) {
    let mut sum: Option<(f64, Exponent)> = None;
    for &x in lane.iter() {
        if x == f64::NEG_INFINITY {
            continue;
        }
        let (p, n) = exp_parts(x);
        sum = Some(match sum {
            None => (p, n),
            Some((m, e)) => {
                let d = n.minus(e);
                if d > 0.0 {
                    (scale2(m, -d) + p, n)
                } else {
                    // Also where `d` is NaN, so that NaN reaches `m`.
                    (m + scale2(p, d), e)
                }
            }
        });
    }
    let Some((m, e)) = sum else {
        lane.fill(f64::NAN);
        return;
    };
    let inv = 1.0 / m;
    for x in lane.iter_mut() {
        *x = if *x == f64::NEG_INFINITY {
            // 0, or NaN where NaN reached the sum.
            0.0 * inv
        } else {
            let (p, n) = exp_parts(*x);
            scale2(p * inv, n.minus(e))
        };
    }
}

impl Eval for Softmax {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let mask = cx.opt_input(1);
        if mask.is_none() && self.scale == 1.0 && self.algorithm == SoftmaxAlgorithm::ThreePass {
            // ONNX's Softmax.
            return one(map_lanes(x, self.axis, "Softmax", softmax_three_pass)?);
        }
        if !x.dtype().is_float() {
            return unsupported!("Softmax on {} tensors", x.dtype());
        }
        let a = axis(self.axis, x.rank())?;
        if let Some(mask) = mask {
            if mask.dtype() != x.dtype() {
                return invalid!("Softmax of {} with a mask of {}", x.dtype(), mask.dtype());
            }
            check_broadcast_onto(mask.shape(), x.shape(), "Softmax's mask")?;
        }
        if x.numel() == 0 {
            return one(x.clone());
        }
        // The logits: x · scale + mask, each step rounded to x's dtype as
        // the unfused `mul` and `add` it stands for would round it.
        let round = |v: Vec<f64>| -> Result<Vec<f64>, OpError> {
            if x.dtype() == DType::F64 {
                return Ok(v);
            }
            to_f64(&from_f64(x.dtype(), x.shape().to_vec(), v)?, "Softmax")
        };
        let mut v = to_f64(x, "Softmax")?;
        let scale = self.scale as f64;
        if scale != 1.0 {
            v.iter_mut().for_each(|z| *z *= scale);
            v = round(v)?;
        }
        if let Some(mask) = mask {
            let mv = to_f64(mask, "Softmax")?;
            let st = broadcast_strides(mask.shape(), x.shape());
            let mut z = v.iter_mut();
            for_each_offset(x.shape(), &st, |o| {
                if let Some(z) = z.next() {
                    *z += mv[o];
                }
            });
            v = round(v)?;
        }
        let row: fn(&mut [f64]) = match self.algorithm {
            SoftmaxAlgorithm::ThreePass => softmax_three_pass,
            SoftmaxAlgorithm::TwoPass => softmax_two_pass,
            SoftmaxAlgorithm::Online => softmax_online,
        };
        for_each_lane(&mut v, x.shape(), a, row);
        one(from_f64(x.dtype(), x.shape().to_vec(), v)?)
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
        assert_eq!(
            eval(
                Softmax {
                    axis: 0,
                    ..Default::default()
                },
                &[&x],
                1
            )
            .unwrap()[0],
            x
        );
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
        let y = eval(
            Softmax {
                axis: 0,
                ..Default::default()
            },
            &[&x],
            1,
        )
        .unwrap()[0]
            .to_f64_vec();
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

#[cfg(test)]
mod softmax_tests {
    use super::*;
    use crate::shape::TensorType;

    const ALGORITHMS: [SoftmaxAlgorithm; 3] = [
        SoftmaxAlgorithm::ThreePass,
        SoftmaxAlgorithm::TwoPass,
        SoftmaxAlgorithm::Online,
    ];
    const INF: f64 = f64::INFINITY;

    /// splitmix64: reproducible random inputs.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
            (0..n).map(|_| self.uniform(lo, hi)).collect()
        }
    }

    fn op(axis: i64, scale: f32, algorithm: SoftmaxAlgorithm) -> Softmax {
        Softmax {
            axis,
            scale,
            algorithm,
        }
    }

    fn run(op: Softmax, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor, OpError> {
        let inputs = [Some(x), mask];
        let n = if mask.is_some() { 2 } else { 1 };
        let types = [TensorType::unknown_rank(x.dtype())];
        Ok(super::super::eval_op(&op.into(), &inputs[..n], &types)?.remove(0))
    }

    fn f64s(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    /// One row by the textbook formula `exp(x) / Σ exp(x)`, shifted by the
    /// max only where `exp` would leave the f64 range.
    fn reference(row: &[f64]) -> Vec<f64> {
        let max = row.iter().copied().fold(-INF, f64::max);
        let min = row.iter().copied().fold(INF, f64::min);
        let shift = if max < 700.0 && min > -700.0 {
            0.0
        } else {
            max
        };
        let e: Vec<f64> = row.iter().map(|x| (x - shift).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }

    /// The reference along `axis` of `z` (of shape `shape`), walking each
    /// lane by multi-indices.
    fn reference_along(z: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
        let st = strides(shape);
        let mut out = vec![f64::NAN; z.len()];
        for i in 0..z.len() {
            if unravel(i, shape)[axis] != 0 {
                continue;
            }
            let lane: Vec<usize> = (0..shape[axis]).map(|j| i + j * st[axis]).collect();
            let row: Vec<f64> = lane.iter().map(|&p| z[p]).collect();
            for (&p, y) in lane.iter().zip(reference(&row)) {
                out[p] = y;
            }
        }
        out
    }

    /// `|a - b| ≤ tol·|b|` (plus a little for subnormal results); NaN
    /// only where NaN is expected.
    fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_near(got, want, (tol, 1e-300), what);
    }

    /// `|a - b| ≤ rel·|b| + abs`; NaN only where NaN is expected.
    fn assert_near(got: &[f64], want: &[f64], (rel, abs): (f64, f64), what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let ok = if w.is_nan() {
                g.is_nan()
            } else {
                (g - w).abs() <= rel * w.abs() + abs
            };
            assert!(ok, "{what}: element {i} is {g}, expected {w}");
        }
    }

    /// Every algorithm on every row of `rows` (of one length) against
    /// the reference.
    fn check_rows(rows: &[Vec<f64>], tol: f64, what: &str) {
        let n = rows[0].len();
        let flat: Vec<f64> = rows.concat();
        let x = f64s(&[rows.len(), n], &flat);
        let want: Vec<f64> = rows.iter().flat_map(|r| reference(r)).collect();
        for alg in ALGORITHMS {
            let y = run(op(-1, 1.0, alg), &x, None).unwrap().to_f64_vec();
            assert_close(&y, &want, tol, &format!("{what}, {alg:?}"));
        }
    }

    #[test]
    fn algorithms_agree_on_random_rows() {
        let mut rng = Rng(1);
        for n in 1..=40 {
            let rows: Vec<Vec<f64>> = (0..4).map(|_| rng.vec(n, -12.0, 12.0)).collect();
            check_rows(&rows, 1e-13, &format!("random rows of {n}"));
        }
    }

    #[test]
    fn algorithms_agree_on_large_magnitudes() {
        let mut rng = Rng(2);
        for n in [1, 2, 3, 7, 33, 100] {
            // Spread over ±1e4: mostly one winner, the rest underflow.
            let wide: Vec<Vec<f64>> = (0..3).map(|_| rng.vec(n, -1e4, 1e4)).collect();
            check_rows(&wide, 1e-13, "values in ±1e4");
            // Clustered near ±1e4 (and beyond), where every exp(x)
            // overflows or underflows but the differences are small.
            for centre in [1e4, -1e4, 3e5, -3e5, 1e9] {
                let rows: Vec<Vec<f64>> = (0..3)
                    .map(|_| rng.vec(n, -6.0, 6.0).iter().map(|d| centre + d).collect())
                    .collect();
                check_rows(&rows, 1e-11, &format!("values near {centre}"));
            }
        }
    }

    #[test]
    fn two_pass_survives_where_every_exp_overflows() {
        // exp(x) is +inf in f64 for every element, so any form that sums
        // exp(x) itself gives NaN.
        let row = [1000.0f64, 1001.0, 1002.0, 1001.0];
        assert!(row.iter().all(|x| x.exp().is_infinite()));
        // By hand: weights e^-2, e^-1, 1, e^-1 over their sum.
        let (e1, e2) = ((-1f64).exp(), (-2f64).exp());
        let sum = 1.0 + 2.0 * e1 + e2;
        let want = [e2 / sum, e1 / sum, 1.0 / sum, e1 / sum];
        let x = f64s(&[4], &row);
        let y = run(op(0, 1.0, SoftmaxAlgorithm::TwoPass), &x, None).unwrap();
        assert_close(&y.to_f64_vec(), &want, 1e-15, "two-pass of 1000..1002");
        // What runs is the (mantissa, exponent) split: exp(1000) =
        // p · 2^1443 with p = exp(1000 - 1443·ln2), |r| ≤ ln2/2.
        let (p, n) = exp_parts(1000.0);
        assert_eq!(4.0 * n.hi + n.lo, 1443.0);
        // r by Cody-Waite with ln2 as a double-double (fma keeps the
        // product exact), independently of how the kernel gets it.
        let ln2_lo = 2.319_046_813_846_299_6e-17;
        let r = (-1443.0f64).mul_add(std::f64::consts::LN_2, 1000.0);
        let r = (-1443.0f64).mul_add(ln2_lo, r);
        assert!(r.abs() <= std::f64::consts::LN_2 / 2.0);
        assert!((p - r.exp()).abs() <= 2e-16, "{p} vs {}", r.exp());
        // And the largest f64 still splits into a finite p.
        for x in [
            f64::MAX,
            f64::MIN,
            1e300,
            -1e300,
            f32::MAX as f64,
            1e-300,
            0.0,
        ] {
            let (p, _) = exp_parts(x);
            assert!((0.7..1.42).contains(&p), "p = {p} for {x}");
        }
        // Exponents of huge x are exact where it matters: equal inputs
        // give equal exponents, neighbours differ by about their distance.
        let (a, b) = (1e15, 1e15 + 1.0);
        let d = exp_parts(b).1.minus(exp_parts(a).1);
        assert!((d - std::f64::consts::LOG2_E).abs() <= 1.0, "{d}");
    }

    #[test]
    fn two_pass_parts_recompose_exp() {
        let mut rng = Rng(3);
        for _ in 0..1000 {
            let x = rng.uniform(-700.0, 700.0);
            let (p, n) = exp_parts(x);
            assert_eq!(n.lo, n.lo.round());
            assert_eq!(n.hi, n.hi.round());
            let y = p * 2f64.powf(4.0 * n.hi + n.lo);
            assert!(
                (y - x.exp()).abs() <= 1e-14 * x.exp(),
                "{x}: {y} vs {}",
                x.exp()
            );
        }
    }

    #[test]
    fn masks_with_minus_infinity() {
        // A causal mask: row i sees columns 0..=i.
        let n = 5;
        let mut rng = Rng(4);
        let x = rng.vec(n * n, -3.0, 3.0);
        let mask: Vec<f64> = (0..n * n)
            .map(|i| if i % n <= i / n { 0.0 } else { -INF })
            .collect();
        let z: Vec<f64> = x.iter().zip(&mask).map(|(a, b)| a + b).collect();
        let want = reference_along(&z, &[n, n], 1);
        for (i, w) in want.iter().enumerate() {
            // The reference itself: masked entries are exactly 0.
            assert_eq!(*w == 0.0, mask[i] == -INF);
        }
        let (x, m) = (f64s(&[n, n], &x), f64s(&[n, n], &mask));
        for alg in ALGORITHMS {
            let y = run(op(-1, 1.0, alg), &x, Some(&m)).unwrap().to_f64_vec();
            assert_close(&y, &want, 1e-14, &format!("causal mask, {alg:?}"));
            for (y, m) in y.iter().zip(&mask) {
                if *m == -INF {
                    assert_eq!(*y, 0.0, "{alg:?}");
                }
            }
        }
    }

    #[test]
    fn special_rows() {
        let nan = f64::NAN;
        let min32 = f32::MIN as f64;
        let cases: Vec<(Vec<f64>, Vec<f64>)> = vec![
            // Entirely -inf: 0/0.
            (vec![-INF, -INF, -INF], vec![nan, nan, nan]),
            // -inf entries get 0.
            (vec![-INF, 0.0, -INF, 0.0], vec![0.0, 0.5, 0.0, 0.5]),
            // NaN or +inf anywhere: the row is NaN (as exp(x - max) is).
            (vec![1.0, nan, 2.0], vec![nan, nan, nan]),
            (vec![1.0, INF, 2.0], vec![nan, nan, nan]),
            (vec![-INF, nan], vec![nan, nan]),
            // finfo(float32).min masks: a fully masked row is uniform, a
            // partly masked one ignores the masked entries.
            (vec![min32, min32, min32, min32], vec![0.25; 4]),
            (vec![min32, 3.0, min32, 3.0], vec![0.0, 0.5, 0.0, 0.5]),
            (vec![min32, min32 / 2.0], vec![0.0, 1.0]),
            // The ends of f64.
            (vec![f64::MAX, f64::MAX], vec![0.5, 0.5]),
            (vec![f64::MIN, f64::MIN], vec![0.5, 0.5]),
            (vec![f64::MIN, f64::MAX, 0.0], vec![0.0, 1.0, 0.0]),
            (vec![f64::MAX, f64::MIN], vec![1.0, 0.0]),
            // One element.
            (vec![-1e300], vec![1.0]),
        ];
        for (row, want) in cases {
            let x = f64s(&[row.len()], &row);
            for alg in ALGORITHMS {
                let y = run(op(0, 1.0, alg), &x, None).unwrap().to_f64_vec();
                assert_close(&y, &want, 1e-15, &format!("{row:?}, {alg:?}"));
            }
        }
    }

    #[test]
    fn scale_and_broadcast_masks() {
        let shape = [2usize, 3, 4];
        let mut rng = Rng(5);
        let x = rng.vec(24, -4.0, 4.0);
        let xt = f64s(&shape, &x);
        let mask_shapes: [&[usize]; 7] =
            [&[], &[1], &[4], &[3, 1], &[1, 3, 4], &[2, 1, 4], &[2, 3, 4]];
        for ms in mask_shapes {
            let mlen: usize = ms.iter().product();
            // Some masked entries, but never a whole row of them.
            let mask: Vec<f64> = (0..mlen)
                .map(|i| {
                    if i % 5 == 3 {
                        -INF
                    } else {
                        rng.uniform(-2.0, 2.0)
                    }
                })
                .collect();
            let mt = f64s(ms, &mask);
            for scale in [1.0f32, 0.125, -2.0] {
                // z = x·scale + mask, broadcasting by multi-indices.
                let z: Vec<f64> = (0..24)
                    .map(|i| {
                        let idx = unravel(i, &shape);
                        let off = shape.len() - ms.len();
                        let mi = ms.iter().enumerate().fold(0, |acc, (d, &e)| {
                            acc * e + if e == 1 { 0 } else { idx[off + d] }
                        });
                        x[i] * scale as f64 + mask[mi]
                    })
                    .collect();
                for axis in [0i64, 1, -1] {
                    let want = reference_along(&z, &shape, axis.rem_euclid(3) as usize);
                    for alg in ALGORITHMS {
                        let y = run(op(axis, scale, alg), &xt, Some(&mt)).unwrap();
                        assert_eq!(y.shape(), &shape);
                        let what = format!("mask {ms:?}, scale {scale}, axis {axis}, {alg:?}");
                        assert_close(&y.to_f64_vec(), &want, 1e-13, &what);
                    }
                }
            }
        }
    }

    #[test]
    fn every_float_type() {
        let mut rng = Rng(6);
        // Values on a 1/8 grid, exact in every type.
        let x: Vec<f64> = (0..60)
            .map(|_| (rng.below(129) as f64 - 64.0) / 8.0)
            .collect();
        let mask: Vec<f64> = (0..10)
            .map(|i| {
                if i == 7 {
                    -INF
                } else {
                    (rng.below(17) as f64 - 8.0) / 4.0
                }
            })
            .collect();
        let z: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * 0.5 + mask[i % 10])
            .collect();
        let want = reference_along(&z, &[6, 10], 1);
        // Half an ulp, relative for normal numbers and absolute for
        // subnormal ones.
        for (dtype, eps, tiny) in [
            (DType::F16, 2f64.powi(-11), 2f64.powi(-25)),
            (DType::BF16, 2f64.powi(-8), 2f64.powi(-134)),
            (DType::F32, 2f64.powi(-24), 2f64.powi(-150)),
            (DType::F64, 1e-15, 1e-300),
        ] {
            let xt = f64s(&[6, 10], &x).cast(dtype, false);
            let mt = f64s(&[10], &mask).cast(dtype, false);
            for alg in ALGORITHMS {
                let y = run(op(1, 0.5, alg), &xt, Some(&mt)).unwrap();
                assert_eq!(y.dtype(), dtype);
                // Computed in f64, rounded once.
                let what = format!("{dtype}, {alg:?}");
                assert_near(&y.to_f64_vec(), &want, (eps * 1.01, tiny * 1.01), &what);
            }
        }
    }

    #[test]
    fn defaults_are_onnx_softmax() {
        assert_eq!(
            Softmax::from_attrs(&mut crate::attr::Attrs::new()).unwrap(),
            Softmax::default()
        );
        assert!(Softmax::default().attrs().is_empty());
        // Unchanged results: a mask of zeros and the default path agree
        // bit for bit, and so does an explicit three-pass with scale 1.
        let mut rng = Rng(7);
        let x = Tensor::from_vec(
            vec![3, 7],
            rng.vec(21, -20.0, 20.0).iter().map(|&v| v as f32).collect(),
        );
        let zeros = Tensor::from_vec(vec![7], vec![0f32; 7]);
        let plain = run(Softmax::default(), &x, None).unwrap();
        assert_eq!(run(Softmax::default(), &x, Some(&zeros)).unwrap(), plain);
        let want = reference_along(&x.to_f64_vec(), &[3, 7], 1);
        assert_close(&plain.to_f64_vec(), &want, 2f64.powi(-24), "default");
    }

    #[test]
    fn bad_masks_are_errors() {
        let x = f64s(&[2, 4], &[0.0; 8]);
        let run_mask = |m: &Tensor| run(op(-1, 1.0, SoftmaxAlgorithm::Online), &x, Some(m));
        // Broadcasts only the other way, or not at all.
        assert!(run_mask(&f64s(&[1, 2, 4], &[0.0; 8])).is_err());
        assert!(run_mask(&f64s(&[3], &[0.0; 3])).is_err());
        assert!(run_mask(&f64s(&[2, 2], &[0.0; 4])).is_err());
        // Another type.
        assert!(run_mask(&Tensor::from_vec(vec![4], vec![0f32; 4])).is_err());
        assert!(run(op(2, 1.0, SoftmaxAlgorithm::TwoPass), &x, None).is_err());
        // An empty input stays empty.
        let e = f64s(&[0, 4], &[]);
        let y = run(
            op(-1, 2.0, SoftmaxAlgorithm::TwoPass),
            &e,
            Some(&f64s(&[4], &[0.0; 4])),
        );
        assert_eq!(y.unwrap().shape(), &[0, 4]);
    }
}
