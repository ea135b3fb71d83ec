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
/// built directly from the exponent bits. The biased exponent `n + bias`
/// is read off the low mantissa bits of `n + 1.5·2^m + bias` (`m` the
/// mantissa width: the sum is an integer-valued float whose low bits are
/// exactly that integer), then shifted into the exponent field; the
/// magic number's own bits shift out. No float-to-integer conversion.
pub fn exp2_int(b: &mut KernelBuilder, n: &Expr) -> Expr {
    let ty = b.ty(n);
    let ity = bits_of(ty);
    let (bias, shift) = if ty.elem == DType::F64 {
        (1023.0, 52)
    } else {
        (127.0, 23)
    };
    let magic = 1.5 * 2f64.powi(shift) + bias;
    let e = Expr::bin(BinOp::Add, n.clone(), c(magic, ty)).bitcast(ity.elem);
    let _ = b;
    Expr::bin(BinOp::Shl, e, Expr::Int(shift as i64, ity)).bitcast(ty.elem)
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
    // replaced below. Just below the overflow threshold n is nmax + 1:
    // the missing factor 2 goes into p.
    let over = Expr::bin(BinOp::Gt, n.clone(), c(nmax, ty));
    let p = Expr::select(over, Expr::bin(BinOp::Mul, p.clone(), c(2.0, ty)), p);
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

/// Half-precision storage. Kernel IR computes f16 and bf16 values in f32:
/// their buffers are `u16` buffers of the raw bits, loads widen exactly and
/// stores narrow with round-to-nearest-even, all with integer operations on
/// the bits (so every code generator gets them for free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    F16,
    BF16,
}

impl Half {
    /// The half format a graph dtype is stored as, if it is one.
    pub fn of(d: DType) -> Option<Half> {
        match d {
            DType::F16 => Some(Half::F16),
            DType::BF16 => Some(Half::BF16),
            _ => None,
        }
    }
}

fn u32c(v: u32, lanes: u16) -> Expr {
    Expr::Int(v as i64, Ty::vector(DType::U32, lanes))
}

/// The f32 value of half bits (`u16` lanes); exact, subnormals, infinities
/// and NaNs included.
pub fn half_to_f32(b: &mut KernelBuilder, bits: Expr, h: Half) -> Expr {
    let lanes = b.ty(&bits).lanes;
    let w = bits.cast(DType::U32);
    match h {
        Half::BF16 => Expr::bin(BinOp::Shl, w, u32c(16, lanes)).bitcast(DType::F32),
        Half::F16 => {
            let w = b.let_("h", w);
            let sign = Expr::bin(
                BinOp::Shl,
                Expr::bin(BinOp::And, w.clone(), u32c(0x8000, lanes)),
                u32c(16, lanes),
            );
            let em = b.let_("em", Expr::bin(BinOp::And, w, u32c(0x7fff, lanes)));
            let shifted = b.let_("em13", Expr::bin(BinOp::Shl, em.clone(), u32c(13, lanes)));
            // Normal and subnormal halves: the bits as a (possibly
            // subnormal) f32, rescaled by 2^112 (exact).
            let finite = Expr::bin(
                BinOp::Mul,
                shifted.clone().bitcast(DType::F32),
                Expr::Float(2f64.powi(112), Ty::vector(DType::F32, lanes)),
            );
            let special =
                Expr::bin(BinOp::Or, shifted, u32c(0x7f80_0000, lanes)).bitcast(DType::F32);
            let mag = Expr::select(
                Expr::bin(BinOp::Ge, em, u32c(0x7c00, lanes)),
                special,
                finite,
            );
            Expr::bin(BinOp::Or, mag.bitcast(DType::U32), sign).bitcast(DType::F32)
        }
    }
}

/// The half bits (`u16` lanes) nearest to an f32 value, ties to even;
/// overflow gives infinity, NaN a quiet NaN.
pub fn f32_to_half(b: &mut KernelBuilder, x: Expr, h: Half) -> Expr {
    let lanes = b.ty(&x).lanes;
    let u = b.let_("u", x.bitcast(DType::U32));
    let abs = b.let_(
        "a",
        Expr::bin(BinOp::And, u.clone(), u32c(0x7fff_ffff, lanes)),
    );
    let is_nan = Expr::bin(BinOp::Gt, abs.clone(), u32c(0x7f80_0000, lanes));
    let bits = match h {
        Half::BF16 => {
            let odd = Expr::bin(
                BinOp::And,
                Expr::bin(BinOp::Shr, u.clone(), u32c(16, lanes)),
                u32c(1, lanes),
            );
            let rounded = Expr::bin(
                BinOp::Shr,
                Expr::bin(
                    BinOp::Add,
                    Expr::bin(BinOp::Add, u.clone(), u32c(0x7fff, lanes)),
                    odd,
                ),
                u32c(16, lanes),
            );
            let nan = Expr::bin(
                BinOp::Or,
                Expr::bin(BinOp::Shr, u, u32c(16, lanes)),
                u32c(0x40, lanes),
            );
            Expr::select(is_nan, nan, rounded)
        }
        Half::F16 => {
            let sign = Expr::bin(
                BinOp::And,
                Expr::bin(BinOp::Shr, u, u32c(16, lanes)),
                u32c(0x8000, lanes),
            );
            // Below 2^-14 the result is subnormal: adding 0.5 leaves the
            // rounded multiple of 2^-24 in the low mantissa bits.
            let f = Ty::vector(DType::F32, lanes);
            let sub = Expr::bin(
                BinOp::Sub,
                Expr::bin(
                    BinOp::Add,
                    abs.clone().bitcast(DType::F32),
                    Expr::Float(0.5, f),
                )
                .bitcast(DType::U32),
                u32c(0x3f00_0000, lanes),
            );
            // Normal: rebias the exponent and round the 13 dropped bits.
            let odd = Expr::bin(
                BinOp::And,
                Expr::bin(BinOp::Shr, abs.clone(), u32c(13, lanes)),
                u32c(1, lanes),
            );
            let normal = Expr::bin(
                BinOp::Shr,
                Expr::bin(
                    BinOp::Add,
                    Expr::bin(BinOp::Add, abs.clone(), u32c(0xc800_0fff, lanes)),
                    odd,
                ),
                u32c(13, lanes),
            );
            let mag = Expr::select(
                Expr::bin(BinOp::Lt, abs.clone(), u32c(0x3880_0000, lanes)),
                sub,
                normal,
            );
            let mag = Expr::select(
                Expr::bin(BinOp::Ge, abs, u32c(0x477f_f000, lanes)),
                u32c(0x7c00, lanes),
                mag,
            );
            let mag = Expr::select(is_nan, u32c(0x7e00, lanes), mag);
            Expr::bin(BinOp::Or, mag, sign)
        }
    };
    bits.cast(DType::U16)
}

/// `x` (f32) rounded to the nearest value of the half format.
pub fn round_to_half(b: &mut KernelBuilder, x: Expr, h: Half) -> Expr {
    let bits = f32_to_half(b, x, h);
    let bits = b.let_("hb", bits);
    half_to_f32(b, bits, h)
}

/// A finite exponent below every `n` that [`exp_parts`] gives for `dt`
/// (|n| ≤ 2^22 · log2 e < 2^23 for f32): the starting exponent of a sum
/// of no terms, finite so that rescaling it never scales by 2^±inf.
pub fn exp_parts_floor(dt: DType) -> f64 {
    if dt == DType::F64 {
        -(2f64.powi(52))
    } else {
        -(2f64.powi(24))
    }
}

/// [`exp_split`] for every input, as the two-pass softmax needs it:
/// `exp(x) = p · 2^n`. `x = -inf` gives `p = 0` (and a finite `n`);
/// inputs below `-2^22` (f32) or `-2^50` (f64) are first raised to that
/// bound, where `x · log2 e` is still exact enough for `p` to stay in
/// range (their exp is 0 next to any element above the bound, and equal
/// ones stay equal, so a row masked with the type's lowest value comes
/// out uniform). NaN and +inf give a NaN `p`.
pub fn exp_parts(b: &mut KernelBuilder, x: &Expr) -> (Expr, Expr) {
    let ty = b.ty(x);
    let lo = if ty.elem == DType::F64 {
        -(2f64.powi(50))
    } else {
        -(2f64.powi(22))
    };
    let x = b.let_("x", x.clone());
    let xc = b.let_("xc", Expr::bin(BinOp::Max, x.clone(), c(lo, ty)));
    let (p, n) = exp_split(b, &xc);
    let p = Expr::select(
        Expr::bin(BinOp::Eq, x, c(f64::NEG_INFINITY, ty)),
        c(0.0, ty),
        p,
    );
    (b.let_("p", p), n)
}

/// `v · 2^d` for an integer-valued float `d ≤` the largest normal
/// exponent. With `ldexp` (the target has one instruction for it) that is
/// [`BinOp::Ldexp`]; otherwise `2^d` comes from the exponent bits, with `d`
/// below the smallest normal exponent giving exponent field 0, that is the
/// factor `+0`.
pub fn scale_exp2(b: &mut KernelBuilder, v: Expr, d: &Expr, ldexp: bool) -> Expr {
    if ldexp {
        return Expr::bin(BinOp::Ldexp, v, d.clone());
    }
    let ty = b.ty(d);
    let below = if ty.elem == DType::F64 {
        -1023.0
    } else {
        -127.0
    };
    let dd = Expr::bin(BinOp::Max, d.clone(), c(below, ty));
    let s = exp2_int(b, &dd);
    Expr::bin(BinOp::Mul, v, s)
}

/// `log(x)`: x = m·2^e with m in [√½, √2) read off the float bits, then
/// log(m) = 2·atanh(s) with s = (m − 1)/(m + 1), |s| < 0.172, as an odd
/// series in s. Subnormal inputs are rescaled first; log(0) = -inf,
/// log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
pub fn log(b: &mut KernelBuilder, x: Expr) -> Expr {
    let ty = b.ty(&x);
    let ity = bits_of(ty);
    let f64_ = ty.elem == DType::F64;
    let (mant_bits, bias, min_normal, sub_scale, sub_bits) = if f64_ {
        (52, 1023, f64::MIN_POSITIVE, 2f64.powi(54), 54.0)
    } else {
        (23, 127, f32::MIN_POSITIVE as f64, 2f64.powi(23), 23.0)
    };
    let i = |v: i64| Expr::Int(v, ity);
    let x = b.let_("x", x);
    let tiny = b.let_("tiny", Expr::bin(BinOp::Lt, x.clone(), c(min_normal, ty)));
    let xs = Expr::select(
        tiny.clone(),
        Expr::bin(BinOp::Mul, x.clone(), c(sub_scale, ty)),
        x.clone(),
    );
    let u = b.let_("u", xs.bitcast(ity.elem));
    let mant_mask = (1i64 << mant_bits) - 1;
    let e = Expr::bin(
        BinOp::Sub,
        Expr::bin(BinOp::Shr, u.clone(), i(mant_bits)),
        i(bias),
    );
    let e = b.let_("e", e.cast(ty.elem));
    let one_bits = (bias as i64) << mant_bits;
    let m = Expr::bin(
        BinOp::Or,
        Expr::bin(BinOp::And, u, i(mant_mask)),
        i(one_bits),
    )
    .bitcast(ty.elem);
    let m = b.let_("m", m);
    // m in [1, 2): above √2 halve it (and count one more in e).
    let big = b.let_(
        "big",
        Expr::bin(BinOp::Gt, m.clone(), c(std::f64::consts::SQRT_2, ty)),
    );
    let m = Expr::select(big.clone(), Expr::bin(BinOp::Mul, m.clone(), c(0.5, ty)), m);
    let m = b.let_("mr", m);
    let e = Expr::bin(BinOp::Add, e, Expr::select(big, c(1.0, ty), c(0.0, ty)));
    let e = Expr::bin(
        BinOp::Sub,
        e,
        Expr::select(tiny, c(sub_bits, ty), c(0.0, ty)),
    );
    let s = Expr::bin(
        BinOp::Div,
        Expr::bin(BinOp::Sub, m.clone(), c(1.0, ty)),
        Expr::bin(BinOp::Add, m, c(1.0, ty)),
    );
    let s = b.let_("s", s);
    let s2 = b.let_("s2", Expr::bin(BinOp::Mul, s.clone(), s.clone()));
    let terms: &[f64] = if f64_ {
        &[
            2.0,
            2.0 / 3.0,
            2.0 / 5.0,
            2.0 / 7.0,
            2.0 / 9.0,
            2.0 / 11.0,
            2.0 / 13.0,
            2.0 / 15.0,
            2.0 / 17.0,
            2.0 / 19.0,
        ]
    } else {
        &[2.0, 2.0 / 3.0, 2.0 / 5.0, 2.0 / 7.0, 2.0 / 9.0]
    };
    let series = Expr::bin(BinOp::Mul, s, poly(b, &s2, terms));
    let y = Expr::mul_add(
        e.clone(),
        c(LN2_HI, ty),
        Expr::mul_add(e, c(LN2_LO, ty), series),
    );
    let y = b.let_("lg", y);
    // Special values.
    let y = Expr::select(
        Expr::bin(BinOp::Eq, x.clone(), c(f64::INFINITY, ty)),
        x.clone(),
        y,
    );
    let y = Expr::select(
        Expr::bin(BinOp::Eq, x.clone(), c(0.0, ty)),
        c(f64::NEG_INFINITY, ty),
        y,
    );
    let y = Expr::select(
        Expr::bin(BinOp::Lt, x.clone(), c(0.0, ty)),
        c(f64::NAN, ty),
        y,
    );
    let y = Expr::select(Expr::bin(BinOp::Ne, x.clone(), x), c(f64::NAN, ty), y);
    b.let_("log", y)
}

/// `tanh(x)`: an odd Taylor series below |x| = 0.3, else
/// `1 − 2/(exp(2|x|) + 1)` with the sign of x (exact ±1 once exp
/// overflows); NaN stays NaN.
pub fn tanh(b: &mut KernelBuilder, x: Expr) -> Expr {
    let ty = b.ty(&x);
    let x = b.let_("x", x);
    let a = b.let_("ax", Expr::un(UnOp::Abs, x.clone()));
    let x2 = b.let_("x2", Expr::bin(BinOp::Mul, x.clone(), x.clone()));
    let small = Expr::bin(
        BinOp::Mul,
        x.clone(),
        poly(
            b,
            &x2,
            &[
                1.0,
                -1.0 / 3.0,
                2.0 / 15.0,
                -17.0 / 315.0,
                62.0 / 2835.0,
                -1382.0 / 155925.0,
            ],
        ),
    );
    let e = exp(b, Expr::bin(BinOp::Mul, a.clone(), c(2.0, ty)));
    let big = Expr::bin(
        BinOp::Sub,
        c(1.0, ty),
        Expr::bin(BinOp::Div, c(2.0, ty), Expr::bin(BinOp::Add, e, c(1.0, ty))),
    );
    let big = b.let_("t", big);
    let big = Expr::select(
        Expr::bin(BinOp::Lt, x.clone(), c(0.0, ty)),
        Expr::un(UnOp::Neg, big.clone()),
        big,
    );
    let y = Expr::select(Expr::bin(BinOp::Lt, a, c(0.3, ty)), small, big);
    b.let_("tanh", y)
}

/// `erf(x)`: a Taylor series below |x| = 0.5; above, `1 − erfc(|x|)` with
/// the sign of x, erfc from the Chebyshev-fitted form
/// `t·exp(−x² + P(t))`, t = 1/(1 + |x|/2) (fractional error below 1.2e-7).
pub fn erf(b: &mut KernelBuilder, x: Expr) -> Expr {
    let ty = b.ty(&x);
    let x = b.let_("x", x);
    let a = b.let_("ax", Expr::un(UnOp::Abs, x.clone()));
    let x2 = b.let_("x2", Expr::bin(BinOp::Mul, x.clone(), x.clone()));
    let k = std::f64::consts::FRAC_2_SQRT_PI;
    let small = Expr::bin(
        BinOp::Mul,
        x.clone(),
        poly(
            b,
            &x2,
            &[
                k,
                -k / 3.0,
                k / 10.0,
                -k / 42.0,
                k / 216.0,
                -k / 1320.0,
                k / 9360.0,
            ],
        ),
    );
    let t = b.let_(
        "t",
        Expr::bin(
            BinOp::Div,
            c(1.0, ty),
            Expr::mul_add(a.clone(), c(0.5, ty), c(1.0, ty)),
        ),
    );
    let p = poly(
        b,
        &t,
        &[
            -1.265_512_23,
            1.000_023_68,
            0.374_091_96,
            0.096_784_18,
            -0.186_288_06,
            0.278_868_07,
            -1.135_203_98,
            1.488_515_87,
            -0.822_152_23,
            0.170_872_77,
        ],
    );
    let arg = Expr::bin(BinOp::Sub, p, x2);
    let erfc = Expr::bin(BinOp::Mul, t, exp(b, arg));
    let big = b.let_("erfa", Expr::bin(BinOp::Sub, c(1.0, ty), erfc));
    let big = Expr::select(
        Expr::bin(BinOp::Lt, x.clone(), c(0.0, ty)),
        Expr::un(UnOp::Neg, big.clone()),
        big,
    );
    let y = Expr::select(Expr::bin(BinOp::Lt, a, c(0.5, ty)), small, big);
    // NaN: |x| < 0.5 is false and the large branch keeps NaN.
    b.let_("erf", y)
}
