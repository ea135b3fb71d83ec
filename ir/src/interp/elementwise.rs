//! Elementwise ops.

use std::f64::consts::{FRAC_2_SQRT_PI, SQRT_2};

use super::kernels::*;
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::ops::*;
use crate::tensor::{Data, Tensor};
use crate::{invalid, unsupported};

fn one(t: Tensor) -> Result<Vec<Tensor>, OpError> {
    Ok(vec![t])
}

/// Float-only unary ops: `Op => |x| expr`.
macro_rules! float_unary {
    ($($op:ident => |$x:ident| $e:expr;)*) => {$(
        impl Eval for $op {
            fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
                one(map_float(cx.input(0)?, stringify!($op), |$x| $e)?)
            }
        }
    )*};
}

float_unary! {
    Acos => |x| x.acos();
    Acosh => |x| x.acosh();
    Asin => |x| x.asin();
    Asinh => |x| x.asinh();
    Atan => |x| x.atan();
    Atanh => |x| x.atanh();
    Ceil => |x| x.ceil();
    Cos => |x| x.cos();
    Cosh => |x| x.cosh();
    Erf => |x| libm::erf(x);
    Exp => |x| x.exp();
    Floor => |x| x.floor();
    Log => |x| x.ln();
    Reciprocal => |x| 1.0 / x;
    Round => |x| x.round_ties_even();
    Sin => |x| x.sin();
    Sinh => |x| x.sinh();
    Sqrt => |x| x.sqrt();
    Tan => |x| x.tan();
    Tanh => |x| x.tanh();
    HardSwish => |x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0);
    Mish => |x| x * softplus(x).tanh();
    Sigmoid => |x| sigmoid(x);
    Softplus => |x| softplus(x);
    Softsign => |x| x / (1.0 + x.abs());
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn softplus(x: f64) -> f64 {
    // ln(1 + e^x) without overflow for large x.
    if x > 30.0 { x } else { x.exp().ln_1p() }
}

/// Float-only unary ops with attributes: `Op => |self, x| expr`.
macro_rules! float_unary_attr {
    ($($op:ident => |$s:ident, $x:ident| $e:expr;)*) => {$(
        impl Eval for $op {
            fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
                let $s = self;
                one(map_float(cx.input(0)?, stringify!($op), |$x| $e)?)
            }
        }
    )*};
}

float_unary_attr! {
    Celu => |s, x| {
        let a = s.alpha as f64;
        x.max(0.0) + (a * ((x / a).exp() - 1.0)).min(0.0)
    };
    Elu => |s, x| if x < 0.0 { s.alpha as f64 * (x.exp() - 1.0) } else { x };
    Gelu => |s, x| match s.approximate {
        GeluApproximation::None => 0.5 * x * (1.0 + libm::erf(x / SQRT_2)),
        GeluApproximation::Tanh => {
            let k = (FRAC_2_SQRT_PI / SQRT_2) * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + k.tanh())
        }
    };
    HardSigmoid => |s, x| (s.alpha as f64 * x + s.beta as f64).clamp(0.0, 1.0);
    LeakyRelu => |s, x| if x < 0.0 { s.alpha as f64 * x } else { x };
    Selu => |s, x| {
        let (a, g) = (s.alpha as f64, s.gamma as f64);
        if x > 0.0 { g * x } else { g * (a * x.exp() - a) }
    };
    Swish => |s, x| x * sigmoid(s.alpha as f64 * x);
    ThresholdedRelu => |s, x| if x > s.alpha as f64 { x } else { 0.0 };
}

impl Eval for Abs {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(map_numeric(cx.input(0)?, "Abs", f64::abs, i128::abs)?)
    }
}

impl Eval for Neg {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(map_numeric(cx.input(0)?, "Neg", |x| -x, |x| -x)?)
    }
}

impl Eval for Sign {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let f = |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        };
        one(map_numeric(cx.input(0)?, "Sign", f, i128::signum)?)
    }
}

impl Eval for Relu {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        // max(0, NaN) is NaN in ONNX.
        let f = |x: f64| if x < 0.0 { 0.0 } else { x };
        one(map_numeric(cx.input(0)?, "Relu", f, |x| x.max(0))?)
    }
}

impl Eval for Shrink {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (l, b) = (self.lambd as f64, self.bias as f64);
        let f = |x: f64| {
            if x < -l {
                x + b
            } else if x > l {
                x - b
            } else {
                0.0
            }
        };
        let t = cx.input(0)?;
        if t.dtype().is_int() {
            let v: Vec<f64> = t.to_f64_vec().into_iter().map(f).collect();
            return one(from_f64(t.dtype(), t.shape().to_vec(), v)?);
        }
        one(map_float(t, "Shrink", f)?)
    }
}

impl Eval for Identity {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(cx.input(0)?.clone())
    }
}

impl Eval for Not {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let t = cx.input(0)?;
        let Some(v) = t.as_slice::<bool>() else {
            return unsupported!("Not on {} tensors", t.dtype());
        };
        one(Tensor::from_vec(
            t.shape().to_vec(),
            v.iter().map(|b| !b).collect(),
        ))
    }
}

impl Eval for BitwiseNot {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(map_int(cx.input(0)?, "BitwiseNot", |x| !x)?)
    }
}

impl Eval for IsNaN {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(map_to_bool(cx.input(0)?, "IsNaN", f64::is_nan, |_| false)?)
    }
}

impl Eval for IsInf {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (neg, pos) = (self.detect_negative, self.detect_positive);
        let f = |x: f64| (pos && x == f64::INFINITY) || (neg && x == f64::NEG_INFINITY);
        one(map_to_bool(cx.input(0)?, "IsInf", f, |_| false)?)
    }
}

impl Eval for Clip {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let t = cx.input(0)?;
        let lo = opt_scalar(cx.opt_input(1));
        let hi = opt_scalar(cx.opt_input(2));
        if t.dtype().is_int() {
            let bound = |i: usize| {
                cx.opt_input(i)
                    .filter(|b| b.numel() > 0)
                    .map(|b| b.get_i64(0) as i128)
            };
            let (lo, hi) = (bound(1), bound(2));
            return one(map_int(t, "Clip", |x| {
                let x = lo.map_or(x, |l| x.max(l));
                hi.map_or(x, |h| x.min(h))
            })?);
        }
        one(map_float(t, "Clip", |x| {
            let x = match lo {
                Some(l) if x < l => l,
                _ => x,
            };
            match hi {
                Some(h) if x > h => h,
                _ => x,
            }
        })?)
    }
}

impl Eval for PRelu {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let f = |x: f64, s: f64| if x < 0.0 { s * x } else { x };
        let fi = |x: i128, s: i128| if x < 0 { s * x } else { x };
        one(binary_numeric(cx.input(0)?, cx.input(1)?, "PRelu", f, fi)?)
    }
}

/// Broadcasting numeric binary ops: `Op => float fn, int fn`.
macro_rules! binary {
    ($($op:ident => $ff:expr, $fi:expr;)*) => {$(
        impl Eval for $op {
            fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
                one(binary_numeric(cx.input(0)?, cx.input(1)?, stringify!($op), $ff, $fi)?)
            }
        }
    )*};
}

/// Integer division truncating toward zero; x / 0 is 0 rather than a trap.
fn int_div(a: i128, b: i128) -> i128 {
    if b == 0 { 0 } else { a / b }
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

binary! {
    Add => |a, b| a + b, |a, b| a + b;
    Sub => |a, b| a - b, |a, b| a - b;
    Mul => |a, b| a * b, |a, b| a.wrapping_mul(b);
    Div => |a, b| a / b, int_div;
    BitwiseAnd => |_, _| f64::NAN, |a, b| a & b;
    BitwiseOr => |_, _| f64::NAN, |a, b| a | b;
    BitwiseXor => |_, _| f64::NAN, |a, b| a ^ b;
}

impl Eval for Mod {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        let fmod = self.fmod;
        let ff = move |x: f64, y: f64| {
            let r = x % y;
            if fmod || r == 0.0 || (r < 0.0) == (y < 0.0) {
                r
            } else {
                r + y
            }
        };
        let fi = move |x: i128, y: i128| {
            if y == 0 {
                return 0;
            }
            let r = x % y;
            if fmod || r == 0 || (r < 0) == (y < 0) {
                r
            } else {
                r + y
            }
        };
        one(binary_numeric(a, b, "Mod", ff, fi)?)
    }
}

impl Eval for BitShift {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let a = cx.input(0)?;
        let bits = a.dtype().bits() as i128;
        let left = self.direction == ShiftDirection::Left;
        // Shift amounts outside [0, bits) leave only the sign fill: -1 for
        // a right shift of a negative number, 0 otherwise.
        let fi = move |x: i128, s: i128| {
            if !(0..bits).contains(&s) {
                if !left && x < 0 { -1 } else { 0 }
            } else if left {
                x << s
            } else {
                x >> s
            }
        };
        one(binary_numeric(
            a,
            cx.input(1)?,
            "BitShift",
            |_, _| f64::NAN,
            fi,
        )?)
    }
}

impl Eval for Pow {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if a.dtype() == b.dtype() {
            let fi = |x: i128, y: i128| {
                if y < 0 {
                    (x as f64).powf(y as f64) as i128
                } else {
                    x.wrapping_pow(y.min(u32::MAX as i128) as u32)
                }
            };
            return one(binary_numeric(a, b, "Pow", f64::powf, fi)?);
        }
        // Mixed types: compute in f64, result in the base's type.
        let (shape, v) = zip_broadcast(
            &to_f64(a, "Pow")?,
            a.shape(),
            &to_f64(b, "Pow")?,
            b.shape(),
            f64::powf,
        )?;
        one(from_f64(a.dtype(), shape, v)?)
    }
}

/// Logical ops on bools.
macro_rules! logical {
    ($($op:ident => $f:expr;)*) => {$(
        impl Eval for $op {
            fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
                let (a, b) = (cx.input(0)?, cx.input(1)?);
                let (Some(x), Some(y)) = (a.as_slice::<bool>(), b.as_slice::<bool>()) else {
                    return unsupported!("{} on {} tensors", stringify!($op), a.dtype());
                };
                let (shape, v) = zip_broadcast(x, a.shape(), y, b.shape(), $f)?;
                one(Tensor::from_vec(shape, v))
            }
        }
    )*};
}

logical! {
    And => |p: bool, q: bool| p && q;
    Or => |p: bool, q: bool| p || q;
    Xor => |p: bool, q: bool| p ^ q;
}

/// Comparisons: `Op => float fn, int fn, string fn`.
macro_rules! comparison {
    ($($op:ident => $ff:expr, $fi:expr, $fs:expr;)*) => {$(
        impl Eval for $op {
            fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
                one(binary_to_bool(cx.input(0)?, cx.input(1)?, stringify!($op), $ff, $fi, $fs)?)
            }
        }
    )*};
}

comparison! {
    Equal => |a, b| a == b, |a, b| a == b, |a, b| a == b;
    Greater => |a, b| a > b, |a, b| a > b, |a, b| a > b;
    GreaterOrEqual => |a, b| a >= b, |a, b| a >= b, |a, b| a >= b;
    Less => |a, b| a < b, |a, b| a < b, |a, b| a < b;
    LessOrEqual => |a, b| a <= b, |a, b| a <= b, |a, b| a <= b;
}

impl Eval for Where {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (c, x, y) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        let Some(cond) = c.as_slice::<bool>() else {
            return invalid!("condition must be bool, found {}", c.dtype());
        };
        if x.dtype() != y.dtype() {
            return invalid!(
                "branches have different types {} and {}",
                x.dtype(),
                y.dtype()
            );
        }
        let out = broadcast_shapes(&[c.shape(), x.shape(), y.shape()])?;
        let ic = broadcast_index(c.shape(), &out);
        let ix = broadcast_index(x.shape(), &out);
        let iy = broadcast_index(y.shape(), &out);
        // Pick from x's elements followed by y's.
        let nx = x.numel();
        let idx: Vec<usize> = (0..ic.len())
            .map(|i| if cond[ic[i]] { ix[i] } else { nx + iy[i] })
            .collect();
        let both = Data::concat(&[x.data(), y.data()], x.dtype());
        let joined = Tensor::new(x.dtype(), vec![both.len()], both)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        one(joined.gather_flat(out, &idx))
    }
}

/// Variadic broadcasting ops folded pairwise.
fn fold(
    cx: &EvalCx,
    what: &str,
    ff: fn(f64, f64) -> f64,
    fi: fn(i128, i128) -> i128,
) -> Result<Tensor, OpError> {
    let mut acc = cx.input(0)?.clone();
    for i in 1..cx.num_inputs() {
        acc = binary_numeric(&acc, cx.input(i)?, what, ff, fi)?;
    }
    Ok(acc)
}

impl Eval for Max {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(fold(cx, "Max", nan_max, |a, b| a.max(b))?)
    }
}

impl Eval for Min {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(fold(cx, "Min", nan_min, |a, b| a.min(b))?)
    }
}

impl Eval for Sum {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(fold(cx, "Sum", |a, b| a + b, |a, b| a + b)?)
    }
}

impl Eval for Mean {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let sum = fold(cx, "Mean", |a, b| a + b, |a, b| a + b)?;
        let n = cx.num_inputs() as f64;
        one(map_numeric(&sum, "Mean", |x| x / n, |x| x / n as i128)?)
    }
}

impl Eval for Cast {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(cast(cx.input(0)?, self.to, self.saturate, self.round_mode))
    }
}

impl Eval for CastLike {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(cast(
            cx.input(0)?,
            cx.input(1)?.dtype(),
            self.saturate,
            self.round_mode,
        ))
    }
}

fn cast(t: &Tensor, to: DType, saturate: bool, mode: RoundMode) -> Tensor {
    if to == DType::F8E8M0 {
        return crate::tensor::cast_rounding(t, to, saturate, mode == RoundMode::Up);
    }
    t.cast(to, saturate)
}

impl Eval for SwiGLU {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if a.shape() != b.shape() {
            return invalid!(
                "gate {:?} and value {:?} must have the same shape",
                a.shape(),
                b.shape()
            );
        }
        let alpha = self.alpha as f64;
        let f = move |g: f64, v: f64| g * sigmoid(alpha * g) * v;
        one(binary_numeric(a, b, "SwiGLU", f, |_, _| 0)?)
    }
}

impl Eval for OptionalHasElement {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(Tensor::scalar(cx.opt_input(0).is_some()))
    }
}

impl Eval for OptionalGetElement {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        match cx.opt_input(0) {
            Some(t) => one(t.clone()),
            None => invalid!("the optional value is empty"),
        }
    }
}
