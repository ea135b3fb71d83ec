//! What the CPU code generators share: the [`Codegen`] interface (kernels
//! to machine code in this process, or to an object file for a library)
//! and the C math functions that code compiled into this process may call.

use saturn_ir::DType;
use saturn_ir::kernel::{BinOp, Kernel, Ty, UnOp};
use saturn_ir::target::Target;
use saturn_runtime::KernelFn;

use super::BackendError;

/// A code generator for the CPU: Cranelift, or LLVM (feature `llvm`).
pub trait Codegen: Send + Sync {
    /// `cranelift` or `llvm`.
    fn name(&self) -> &'static str;
    /// The widest vectors the generated code keeps in one register, in
    /// bits: kernels are lowered for this width.
    fn vector_bits(&self) -> u32;
    /// Whether [`BinOp::Ldexp`] on vectors of that width is one
    /// instruction (otherwise it is expanded, see [`ldexp_expanded`]).
    fn has_ldexp(&self) -> bool {
        false
    }
    /// Compiles `kernels` into this process; `symbols` supplies the
    /// functions they import (the runtime's `saturn_parallel_for`).
    fn jit(
        &self,
        kernels: &[Kernel],
        symbols: &[(&str, *const u8)],
    ) -> Result<Box<dyn JitCode>, BackendError>;
    /// A relocatable, position-independent object exporting each kernel
    /// as `{prefix}{name}`.
    fn object(&self, kernels: &[Kernel], prefix: &str) -> Result<Vec<u8>, BackendError>;
    /// The assembly of `kernels`, where the code generator can print it.
    fn assembly(&self, kernels: &[Kernel]) -> Result<Option<String>, BackendError> {
        let _ = kernels;
        Ok(None)
    }
}

/// Why a CPU code generator cannot represent a type.
pub(crate) enum BadType {
    /// An element type outside the Kernel IR's.
    Unsupported(String),
    /// Not a type at all (invalid IR).
    Invalid(&'static str),
}

/// Whether the CPU code generators can represent `ty`.
pub(crate) fn bad_type(ty: saturn_ir::kernel::Ty) -> Option<BadType> {
    if !saturn_ir::kernel::is_kernel_dtype(ty.elem) {
        return Some(BadType::Unsupported(format!("element type {}", ty.elem)));
    }
    (ty.lanes == 0).then_some(BadType::Invalid("a vector type with zero lanes"))
}

/// The first buffer or variable of `k` whose type the CPU code generators
/// cannot represent.
pub(crate) fn bad_kernel_type(k: &Kernel) -> Option<BadType> {
    k.bufs
        .iter()
        .find(|b| !saturn_ir::kernel::is_kernel_dtype(b.dtype))
        .map(|b| BadType::Unsupported(format!("buffer `{}` of {}", b.name, b.dtype)))
        .or_else(|| k.vars.iter().find_map(|v| bad_type(v.ty)))
}

/// The lanes of a call with arguments of `args` lanes returning `ret`:
/// the widest of them, which every vector argument and the result must
/// have (scalar arguments are splatted); `None` when they disagree.
pub(crate) fn call_lanes(args: &[u16], ret: Option<saturn_ir::kernel::Ty>) -> Option<u16> {
    let lanes = ret
        .map(|t| t.lanes)
        .into_iter()
        .chain(args.iter().copied())
        .max()
        .unwrap_or(1);
    let agree = args.iter().all(|&l| l == 1 || l == lanes) && ret.is_none_or(|t| t.lanes == lanes);
    agree.then_some(lanes)
}

/// The first variable bound outside `body` (`outer` says which) that
/// `body` assigns: a parallel loop's iterations may not share one.
pub(crate) fn assigned_outer(
    body: &[saturn_ir::kernel::Stmt],
    outer: &dyn Fn(saturn_ir::kernel::VarId) -> bool,
) -> Option<saturn_ir::kernel::VarId> {
    use saturn_ir::kernel::Stmt;
    body.iter().find_map(|s| match s {
        Stmt::Assign { var, .. } if outer(*var) => Some(*var),
        Stmt::For { body, .. } => assigned_outer(body, outer),
        Stmt::If { then_, else_, .. } => {
            assigned_outer(then_, outer).or_else(|| assigned_outer(else_, outer))
        }
        _ => None,
    })
}

/// `target` as the lowering sees it for `codegen`: vectors as wide as the
/// code generator keeps in one register.
pub fn lowering_target(target: &Target, codegen: &dyn Codegen) -> Target {
    let mut t = target.clone();
    t.vector_bits = codegen.vector_bits();
    t.has_ldexp = codegen.has_ldexp();
    t
}

/// The value operations of a code generator that [`ldexp_expanded`] is
/// written in (each code generator's own methods of these names).
pub(crate) trait ValueOps {
    type V: Clone;
    type E;
    fn ty_of(v: &Self::V) -> Ty;
    /// `v` in every lane of type `ty` (truncated for integer types).
    fn constant_of(&mut self, ty: Ty, v: f64) -> Result<Self::V, Self::E>;
    fn unary(&mut self, op: UnOp, a: Self::V) -> Result<Self::V, Self::E>;
    fn binary(&mut self, op: BinOp, a: Self::V, b: Self::V) -> Result<Self::V, Self::E>;
    fn select(&mut self, c: Self::V, a: Self::V, b: Self::V) -> Result<Self::V, Self::E>;
    fn bitcast(&mut self, to: DType, a: Self::V) -> Result<Self::V, Self::E>;
}

/// [`BinOp::Ldexp`] without a scale instruction: `a` multiplied in turn
/// by three powers of two built in the exponent bits, whose exponents sum
/// to `floor(b)` (reaching past every finite result). Scaling up takes
/// steps of at most the largest exponent; scaling down below the smallest
/// normal exponent takes steps that keep a normal value normal (f32:
/// 2^-102 = 2^-126 · 2^24), so that only the last multiplication rounds,
/// unless the result is below half the smallest subnormal anyway.
/// Infinite and NaN `b` are fixed up after.
pub(crate) fn ldexp_expanded<O: ValueOps>(o: &mut O, a: O::V, b: O::V) -> Result<O::V, O::E> {
    let ty = O::ty_of(&a);
    let (lo, hi, digits, shift, ity) = if ty.elem == DType::F64 {
        (-1022.0, 1023.0, 53.0, 52, DType::I64)
    } else {
        (-126.0, 127.0, 24.0, 23, DType::I32)
    };
    let f = o.unary(UnOp::Floor, b)?;
    let clamp = |o: &mut O, x: O::V| {
        let l = o.constant_of(ty, lo)?;
        let h = o.constant_of(ty, hi)?;
        let x = o.binary(BinOp::Max, x, l)?;
        o.binary(BinOp::Min, x, h)
    };
    let step = |o: &mut O, x: O::V| {
        let l = o.constant_of(ty, lo)?;
        let below = o.binary(BinOp::Lt, x.clone(), l)?;
        let down = o.constant_of(ty, lo + digits)?;
        let h = o.constant_of(ty, hi)?;
        let up = o.binary(BinOp::Min, x, h)?;
        o.select(below, down, up)
    };
    // 2^e for an integer-valued e in [lo, hi]: e + bias (= hi) lands in the low
    // mantissa bits of 1.5 · 2^shift, and the shift moves it into the
    // exponent field.
    let pow2 = |o: &mut O, e: O::V| {
        let magic = o.constant_of(ty, 1.5 * 2f64.powi(shift) + hi)?;
        let biased = o.binary(BinOp::Add, e, magic)?;
        let bits = o.bitcast(ity, biased)?;
        let by = o.constant_of(ty.with_elem(ity), shift as f64)?;
        let bits = o.binary(BinOp::Shl, bits, by)?;
        o.bitcast(ty.elem, bits)
    };
    let e1 = step(o, f.clone())?;
    let r = o.binary(BinOp::Sub, f.clone(), e1.clone())?;
    let e2 = step(o, r.clone())?;
    let r = o.binary(BinOp::Sub, r, e2.clone())?;
    let e3 = clamp(o, r)?;
    let mut y = a.clone();
    for e in [e1, e2, e3] {
        let s = pow2(o, e)?;
        y = o.binary(BinOp::Mul, y, s)?;
    }
    // b = ±inf: a · inf or a · 0 (NaN for 0 · inf, inf · 0), but +inf or
    // +0 for a NaN `a` (as vscalef).
    let inf = o.constant_of(ty, f64::INFINITY)?;
    let zero = o.constant_of(ty, 0.0)?;
    let up = o.binary(BinOp::Gt, f.clone(), zero.clone())?;
    let factor = o.select(up, inf.clone(), zero)?;
    let a_nan = o.binary(BinOp::Ne, a.clone(), a.clone())?;
    let scaled = o.binary(BinOp::Mul, a, factor.clone())?;
    let at_inf = o.select(a_nan, factor, scaled)?;
    let mag = o.unary(UnOp::Abs, f.clone())?;
    let infinite = o.binary(BinOp::Eq, mag, inf)?;
    let y = o.select(infinite, at_inf, y)?;
    let nan = o.binary(BinOp::Ne, f.clone(), f.clone())?;
    o.select(nan, f, y)
}

/// Kernels compiled into this process. Entry points are valid while the
/// value lives.
pub trait JitCode: Send + Sync {
    fn entry(&self, name: &str) -> Option<KernelFn>;
}

macro_rules! table {
    ($($name:ident / $via:ident ($($arg:ident),+) : $t:ty;)*) => {
        &[$((stringify!($name), {
            extern "C" fn f($($arg: $t),+) -> $t {
                libm::$via($($arg),+)
            }
            f as *const u8
        })),*]
    };
}

/// The C math functions kernels call by name, each with its address (from
/// the `libm` crate), for code compiled into this process.
pub fn libm_symbols() -> &'static [(&'static str, *const u8)] {
    table! {
        expf/expf(x): f32; exp/exp(x): f64;
        exp2f/exp2f(x): f32; exp2/exp2(x): f64;
        expm1f/expm1f(x): f32; expm1/expm1(x): f64;
        logf/logf(x): f32; log/log(x): f64;
        log2f/log2f(x): f32; log2/log2(x): f64;
        log10f/log10f(x): f32; log10/log10(x): f64;
        log1pf/log1pf(x): f32; log1p/log1p(x): f64;
        powf/powf(x, y): f32; pow/pow(x, y): f64;
        sqrtf/sqrtf(x): f32; sqrt/sqrt(x): f64;
        cbrtf/cbrtf(x): f32; cbrt/cbrt(x): f64;
        sinf/sinf(x): f32; sin/sin(x): f64;
        cosf/cosf(x): f32; cos/cos(x): f64;
        tanf/tanf(x): f32; tan/tan(x): f64;
        asinf/asinf(x): f32; asin/asin(x): f64;
        acosf/acosf(x): f32; acos/acos(x): f64;
        atanf/atanf(x): f32; atan/atan(x): f64;
        atan2f/atan2f(y, x): f32; atan2/atan2(y, x): f64;
        sinhf/sinhf(x): f32; sinh/sinh(x): f64;
        coshf/coshf(x): f32; cosh/cosh(x): f64;
        tanhf/tanhf(x): f32; tanh/tanh(x): f64;
        asinhf/asinhf(x): f32; asinh/asinh(x): f64;
        acoshf/acoshf(x): f32; acosh/acosh(x): f64;
        atanhf/atanhf(x): f32; atanh/atanh(x): f64;
        erff/erff(x): f32; erf/erf(x): f64;
        erfcf/erfcf(x): f32; erfc/erfc(x): f64;
        tgammaf/tgammaf(x): f32; tgamma/tgamma(x): f64;
        lgammaf/lgammaf(x): f32; lgamma/lgamma(x): f64;
        fmodf/fmodf(x, y): f32; fmod/fmod(x, y): f64;
        remainderf/remainderf(x, y): f32; remainder/remainder(x, y): f64;
        hypotf/hypotf(x, y): f32; hypot/hypot(x, y): f64;
        fminf/fminf(x, y): f32; fmin/fmin(x, y): f64;
        fmaxf/fmaxf(x, y): f32; fmax/fmax(x, y): f64;
        copysignf/copysignf(x, y): f32; copysign/copysign(x, y): f64;
        fabsf/fabsf(x): f32; fabs/fabs(x): f64;
        floorf/floorf(x): f32; floor/floor(x): f64;
        ceilf/ceilf(x): f32; ceil/ceil(x): f64;
        truncf/truncf(x): f32; trunc/trunc(x): f64;
        roundf/roundf(x): f32; round/round(x): f64;
        rintf/rintf(x): f32; rint/rint(x): f64;
        nearbyintf/rintf(x): f32; nearbyint/rint(x): f64;
        fmaf/fmaf(x, y, z): f32; fma/fma(x, y, z): f64;
        roundevenf/roundevenf(x): f32; roundeven/roundeven(x): f64;
    }
}
