//! Math functions expanded into Kernel IR: range reduction, a polynomial,
//! and exponent manipulation on the float bits, so hot loops never call
//! libm. Every function works lane-wise on f32 or f64 scalars and vectors
//! (f64 is computed with the same polynomials, to f32 accuracy).

use super::build::KernelBuilder;
use super::*;

const LOG2E: f64 = std::f64::consts::LOG2_E;
/// ln 2 split in a part exact in f32 and the rest (Cody–Waite).
const LN2_HI: f64 = 0.693_145_751_953_125;
const LN2_LO: f64 = 1.428_606_765_330_187e-6;

fn c(v: f64, ty: Ty) -> Expr {
    Expr::Float(v, ty)
}

/// The integer type with the float type's width.
fn bits_of(ty: Ty) -> Ty {
    ty.with_elem(if ty.elem == DType::F64 {
        DType::I64
    } else {
        DType::I32
    })
}

/// Horner's rule: `coeffs[0] + x*(coeffs[1] + x*(…))`.
pub fn poly(b: &mut KernelBuilder, x: &Expr, coeffs: &[f64]) -> Expr {
    let ty = b.ty(x);
    let mut acc = c(*coeffs.last().expect("coefficients"), ty);
    for &k in coeffs.iter().rev().skip(1) {
        acc = Expr::mul_add(acc, x.clone(), c(k, ty));
    }
    acc
}

/// `2^n` for a float `n` holding an integer in the normal exponent range,
/// built directly from the exponent bits.
pub fn exp2_int(b: &mut KernelBuilder, n: &Expr) -> Expr {
    let ty = b.ty(n);
    let ity = bits_of(ty);
    let (bias, shift) = if ty.elem == DType::F64 {
        (1023, 52)
    } else {
        (127, 23)
    };
    let ni = n.clone().cast(ity.elem);
    let e = Expr::bin(BinOp::Add, ni, Expr::Int(bias, ity));
    Expr::bin(BinOp::Shl, e, Expr::Int(shift, ity)).bitcast(ty.elem)
}

/// Splits `exp(x)` as `p · 2^n` with `p` in about [0.7, 1.5] and `n` an
/// integer-valued float: `n = round(x · log2 e)`, `p` the polynomial of
/// the reduced argument. The two-pass softmax accumulates these pairs.
pub fn exp_split(b: &mut KernelBuilder, x: &Expr) -> (Expr, Expr) {
    let ty = b.ty(x);
    let n = b.let_(
        "n",
        Expr::un(UnOp::Round, Expr::bin(BinOp::Mul, x.clone(), c(LOG2E, ty))),
    );
    let r = Expr::mul_add(n.clone(), c(-LN2_HI, ty), x.clone());
    let r = b.let_("r", Expr::mul_add(n.clone(), c(-LN2_LO, ty), r));
    // exp(r) on |r| ≤ ln2/2, degree 6 Taylor (relative error ~2e-7).
    let p = poly(
        b,
        &r,
        &[
            1.0,
            1.0,
            0.5,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
        ],
    );
    let p = b.let_("p", p);
    (p, n)
}

/// `exp(x)`: +inf above the overflow threshold, 0 below the underflow one,
/// NaN for NaN.
pub fn exp(b: &mut KernelBuilder, x: Expr) -> Expr {
    let ty = b.ty(&x);
    let (hi, lo, nmax) = if ty.elem == DType::F64 {
        (709.78, -708.39, 1023.0)
    } else {
        (88.722_83, -87.336_54, 127.0)
    };
    let x = b.let_("x", x);
    let (p, n) = exp_split(b, &x);
    // Keep the exponent in the normal range; out-of-range inputs are
    // replaced below.
    let n = Expr::bin(BinOp::Min, n, c(nmax, ty));
    let n = Expr::bin(BinOp::Max, n, c(-nmax + 1.0, ty));
    let scale = exp2_int(b, &n);
    let y = Expr::bin(BinOp::Mul, p, scale);
    let y = Expr::select(
        Expr::bin(BinOp::Gt, x.clone(), c(hi, ty)),
        c(f64::INFINITY, ty),
        y,
    );
    let y = Expr::select(Expr::bin(BinOp::Lt, x, c(lo, ty)), c(0.0, ty), y);
    b.let_("exp", y)
}
