//! How Kernel IR values are LLVM values: a scalar of type `T` is an LLVM
//! `T` (bool: `i1`), a vector `T x N` is `<N x T>` whatever `N` is (LLVM
//! legalises widths the target lacks). In memory, bool is a byte.

use inkwell::context::Context;
use inkwell::types::BasicTypeEnum;
use inkwell::values::{BasicValue, BasicValueEnum, VectorValue};
use saturn_ir::DType;
use saturn_ir::kernel::Ty;

/// A lowered value and its Kernel IR type.
#[derive(Clone, Copy, Debug)]
pub(super) struct Val<'ctx> {
    pub ty: Ty,
    pub v: BasicValueEnum<'ctx>,
}

impl<'ctx> Val<'ctx> {
    pub fn new(ty: Ty, v: impl BasicValue<'ctx>) -> Val<'ctx> {
        Val {
            ty,
            v: v.as_basic_value_enum(),
        }
    }
}

/// The LLVM type of one element of `d` in registers.
pub(super) fn elem_type(c: &Context, d: DType) -> Option<BasicTypeEnum<'_>> {
    use DType::*;
    Some(match d {
        Bool => c.bool_type().into(),
        I8 | U8 => c.i8_type().into(),
        I16 | U16 => c.i16_type().into(),
        I32 | U32 => c.i32_type().into(),
        I64 | U64 => c.i64_type().into(),
        F32 => c.f32_type().into(),
        F64 => c.f64_type().into(),
        _ => return None,
    })
}

/// The LLVM type of one element of `d` in memory (bool is a byte).
pub(super) fn mem_elem_type(c: &Context, d: DType) -> Option<BasicTypeEnum<'_>> {
    if d == DType::Bool {
        Some(c.i8_type().into())
    } else {
        elem_type(c, d)
    }
}

/// `t` repeated `lanes` times (`t` itself for one lane).
pub(super) fn with_lanes(t: BasicTypeEnum<'_>, lanes: u16) -> BasicTypeEnum<'_> {
    if lanes == 1 { t } else { vector_of(t, lanes) }
}

/// `<lanes x t>`, a vector even for one lane.
pub(super) fn vector_of(t: BasicTypeEnum<'_>, lanes: u16) -> BasicTypeEnum<'_> {
    let n = lanes as u32;
    match t {
        BasicTypeEnum::IntType(i) => i.vec_type(n).into(),
        BasicTypeEnum::FloatType(f) => f.vec_type(n).into(),
        other => other,
    }
}

/// The LLVM type of a Kernel IR type in registers.
pub(super) fn llvm_type(c: &Context, ty: Ty) -> Option<BasicTypeEnum<'_>> {
    Some(with_lanes(elem_type(c, ty.elem)?, ty.lanes))
}

/// Size in bytes of one element in memory.
pub(super) fn elem_bytes(d: DType) -> u32 {
    (d.bits() / 8).max(1) as u32
}

/// A scalar constant of `d` from an integer (wrapped to the width).
pub(super) fn int_const(c: &Context, d: DType, v: i64) -> Option<BasicValueEnum<'_>> {
    Some(match elem_type(c, d)? {
        BasicTypeEnum::IntType(t) => {
            let v = if d == DType::Bool {
                (v != 0) as u64
            } else {
                v as u64
            };
            t.const_int(v, d.is_signed_int()).into()
        }
        BasicTypeEnum::FloatType(t) => t.const_float(v as f64).into(),
        _ => return None,
    })
}

/// A scalar constant of `d` from a float: converted as a cast would
/// (saturating to integers, NaN to 0; nonzero to true).
pub(super) fn float_const(c: &Context, d: DType, v: f64) -> Option<BasicValueEnum<'_>> {
    use DType::*;
    let int = |x: i64| int_const(c, d, x);
    match d {
        F32 => Some(c.f32_type().const_float(v as f32 as f64).into()),
        F64 => Some(c.f64_type().const_float(v).into()),
        Bool => int((v != 0.0) as i64),
        I8 => int(v as i8 as i64),
        U8 => int(v as u8 as i64),
        I16 => int(v as i16 as i64),
        U16 => int(v as u16 as i64),
        I32 => int(v as i32 as i64),
        U32 => int(v as u32 as i64),
        I64 => int(v as i64),
        U64 => int(v as u64 as i64),
        _ => None,
    }
}

/// A constant vector of `lanes` copies of the scalar constant `s` (`s`
/// itself for one lane).
pub(super) fn splat_const(s: BasicValueEnum<'_>, lanes: u16) -> BasicValueEnum<'_> {
    if lanes == 1 {
        return s;
    }
    let items = vec![s; lanes as usize];
    inkwell::types::VectorType::const_vector(&items).into()
}

/// `<0, 1, …, lanes-1>` as `i64` lanes.
pub(super) fn iota<'ctx>(c: &'ctx Context, lanes: u16, scale: i64) -> VectorValue<'ctx> {
    let t = c.i64_type();
    let items: Vec<_> = (0..lanes as i64)
        .map(|i| t.const_int((i * scale) as u64, true))
        .collect();
    inkwell::types::VectorType::const_vector(&items)
}

/// `<lanes x i32> zeroinitializer`, the shuffle mask of a splat.
pub(super) fn zero_mask(c: &Context, lanes: u16) -> VectorValue<'_> {
    c.i32_type().vec_type(lanes as u32).const_zero()
}

pub(super) fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64)
}

/// Unsigned integers and bool compare and divide as unsigned.
pub(super) fn is_unsigned(d: DType) -> bool {
    d.is_unsigned_int() || d == DType::Bool
}

/// Bits of the element in registers.
pub(super) fn elem_bits(d: DType) -> u32 {
    if d == DType::Bool { 1 } else { d.bits() as u32 }
}
