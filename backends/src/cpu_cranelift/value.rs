//! How Kernel IR values live in Cranelift values.
//!
//! A value of type `Ty` has a [`Shape`]: a scalar; a run of native 128-bit
//! vectors (when the vector is 128 bits or a multiple of it); or one
//! scalar per lane (other widths). Non-boolean types always have their
//! canonical shape ([`shape_of`]). Boolean vectors are lane masks (all
//! ones or all zeros) whose lane width follows what computed them (a
//! comparison of `f64x2` gives `i64x2` masks), or one `i8` 0/1 per lane;
//! [`FnLower::reshape`] converts between these where a consumer needs
//! another. Mutable variables and outlined captures use the canonical
//! shape, which for booleans is `128 / lanes`-bit masks when that is at
//! least 8 bits.

use super::lower::{FnLower, R};
use cranelift_codegen::ir::{
    ConstantData, Endianness, Immediate, InstBuilder, MemFlagsData, Type, Value, types,
};
use saturn_ir::DType;
use saturn_ir::kernel::Ty;

/// The Cranelift scalar type of a kernel dtype (bool: `i8`).
pub(super) fn scalar_type(d: DType) -> Option<Type> {
    use DType::*;
    Some(match d {
        Bool | I8 | U8 => types::I8,
        I16 | U16 => types::I16,
        I32 | U32 => types::I32,
        I64 | U64 => types::I64,
        F32 => types::F32,
        F64 => types::F64,
        _ => return None,
    })
}

/// The arithmetic family of a dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    Float,
    Signed,
    Unsigned,
    Bool,
}

pub(super) fn class(d: DType) -> Class {
    if d == DType::Bool {
        Class::Bool
    } else if d.is_float() {
        Class::Float
    } else if d.is_signed_int() {
        Class::Signed
    } else {
        Class::Unsigned
    }
}

/// How the lanes of a value are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    Scalar,
    /// This many native vectors of this (128-bit) type.
    Simd(Type, u16),
    /// One scalar per lane.
    Lanes(u16),
}

/// The 128-bit vector type with lanes of `lane`.
pub(super) fn vec_of(lane: Type) -> Type {
    lane.by(128 / lane.bits())
        .expect("lane type of at most 64 bits")
}

/// The canonical shape of values of type `ty` (a kernel dtype with at
/// least one lane).
pub(super) fn shape_of(ty: Ty) -> Shape {
    let lanes = ty.lanes as u32;
    if lanes == 1 {
        return Shape::Scalar;
    }
    let bits = if ty.elem == DType::Bool {
        if 128 % lanes == 0 && lanes <= 16 {
            128 / lanes
        } else if lanes.is_multiple_of(16) {
            8
        } else {
            return Shape::Lanes(ty.lanes);
        }
    } else {
        scalar_type(ty.elem).map_or(8, |t| t.bits())
    };
    if !(lanes * bits).is_multiple_of(128) {
        return Shape::Lanes(ty.lanes);
    }
    let lane = if ty.elem == DType::Bool {
        Type::int(bits as u16).expect("mask lane width")
    } else {
        scalar_type(ty.elem).expect("kernel dtype")
    };
    Shape::Simd(vec_of(lane), (lanes * bits / 128) as u16)
}

/// The Cranelift types of the parts of a value of shape `s` and type `ty`.
pub(super) fn part_types(ty: Ty, s: Shape) -> Vec<Type> {
    let scalar = scalar_type(ty.elem).unwrap_or(types::I8);
    match s {
        Shape::Scalar => vec![scalar],
        Shape::Simd(v, n) => vec![v; n as usize],
        Shape::Lanes(n) => vec![scalar; n as usize],
    }
}

/// A lowered Kernel IR value.
#[derive(Clone, Debug)]
pub(super) struct Val {
    pub ty: Ty,
    pub shape: Shape,
    pub parts: Vec<Value>,
    /// The scalar every lane equals, when known (splats and constants):
    /// vector shifts take their amount from it.
    pub uniform: Option<Value>,
}

impl Val {
    pub fn scalar(ty: Ty, v: Value) -> Val {
        Val {
            ty,
            shape: Shape::Scalar,
            parts: vec![v],
            uniform: Some(v),
        }
    }

    pub fn new(ty: Ty, shape: Shape, parts: Vec<Value>) -> Val {
        Val {
            ty,
            shape,
            parts,
            uniform: None,
        }
    }

    pub fn single(&self) -> Value {
        self.parts[0]
    }
}

/// Flags for reinterpreting vector bits across lane widths.
pub(super) fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

impl FnLower<'_> {
    pub(super) fn type_of(&self, v: Value) -> Type {
        self.fb.func.dfg.value_type(v)
    }

    /// An integer constant of type `t` (scalar), wrapped to its width.
    pub(super) fn iconst(&mut self, t: Type, v: i64) -> Value {
        let v = if t.bits() >= 64 {
            v
        } else {
            v & ((1i64 << t.bits()) - 1)
        };
        self.fb.ins().iconst(t, v)
    }

    /// A float constant of scalar type `t`.
    pub(super) fn fconst(&mut self, t: Type, v: f64) -> Value {
        if t == types::F32 {
            self.fb.ins().f32const(v as f32)
        } else {
            self.fb.ins().f64const(v)
        }
    }

    /// A constant of kernel type `ty` (splatted over its lanes).
    pub(super) fn constant(&mut self, ty: Ty, int: i64, float: f64, is_float: bool) -> R<Val> {
        let t = self.scalar_ty(ty.elem)?;
        let s = match class(ty.elem) {
            Class::Float => {
                let v = if is_float { float } else { int as f64 };
                self.fconst(t, v)
            }
            Class::Bool => {
                let on = if is_float { float != 0.0 } else { int != 0 };
                self.iconst(t, on as i64)
            }
            _ => {
                let v = if is_float { float as i64 } else { int };
                self.iconst(t, v)
            }
        };
        Ok(self.splat(ty, s))
    }

    /// The scalar `s` (of `ty.elem`) over the lanes of `ty`, in the
    /// canonical shape.
    pub(super) fn splat(&mut self, ty: Ty, s: Value) -> Val {
        let shape = shape_of(ty);
        let parts = match shape {
            Shape::Scalar => vec![s],
            Shape::Lanes(n) => vec![s; n as usize],
            Shape::Simd(vty, n) => {
                let lane = if ty.elem == DType::Bool {
                    self.fb.ins().bmask(vty.lane_type(), s)
                } else {
                    s
                };
                let v = self.fb.ins().splat(vty, lane);
                vec![v; n as usize]
            }
        };
        Val {
            ty,
            shape,
            parts,
            uniform: Some(s),
        }
    }

    /// A native vector of type `vty` with every lane `s` (of the lane type).
    pub(super) fn splat_native(&mut self, vty: Type, s: Value) -> Value {
        self.fb.ins().splat(vty, s)
    }

    /// The lanes of `v` as scalars (bool lanes as `i8` 0 or 1).
    pub(super) fn lanes(&mut self, v: &Val) -> Vec<Value> {
        match v.shape {
            Shape::Scalar | Shape::Lanes(_) => v.parts.clone(),
            Shape::Simd(vty, _) => {
                let n = vty.lane_count();
                let mut out = Vec::with_capacity(v.ty.lanes as usize);
                for &p in &v.parts {
                    for i in 0..n {
                        let x = self.fb.ins().extractlane(p, i as u8);
                        out.push(if v.ty.elem == DType::Bool {
                            self.mask_to_bool(x)
                        } else {
                            x
                        });
                    }
                }
                out
            }
        }
    }

    /// An all-ones-or-zero integer to `i8` 1 or 0.
    pub(super) fn mask_to_bool(&mut self, x: Value) -> Value {
        let t = self.type_of(x);
        let x = if t == types::I8 {
            x
        } else {
            self.fb.ins().ireduce(types::I8, x)
        };
        let one = self.iconst(types::I8, 1);
        self.fb.ins().band(x, one)
    }

    /// Assembles a value of type `ty` and shape `shape` from scalar lanes.
    pub(super) fn assemble(&mut self, ty: Ty, lanes: Vec<Value>, shape: Shape) -> Val {
        debug_assert_eq!(lanes.len(), ty.lanes as usize);
        let parts = match shape {
            Shape::Scalar | Shape::Lanes(_) => lanes,
            Shape::Simd(vty, _) => {
                let n = vty.lane_count() as usize;
                let mut parts = Vec::new();
                for chunk in lanes.chunks(n) {
                    let lane = |me: &mut Self, x: Value| {
                        if ty.elem == DType::Bool {
                            me.fb.ins().bmask(vty.lane_type(), x)
                        } else {
                            x
                        }
                    };
                    let first = lane(self, chunk[0]);
                    let mut v = self.fb.ins().splat(vty, first);
                    for (i, &x) in chunk.iter().enumerate().skip(1) {
                        let x = lane(self, x);
                        v = self.fb.ins().insertlane(v, x, i as u8);
                    }
                    parts.push(v);
                }
                parts
            }
        };
        Val::new(ty, shape, parts)
    }

    /// `v` in shape `shape` (only booleans ever change shape).
    pub(super) fn reshape(&mut self, v: Val, shape: Shape) -> Val {
        if v.shape == shape {
            return v;
        }
        if let (Shape::Simd(from, _), Shape::Simd(to, _)) = (v.shape, shape) {
            let parts = self.resize_masks(v.parts, from, to);
            return Val::new(v.ty, shape, parts);
        }
        let lanes = self.lanes(&v);
        self.assemble(v.ty, lanes, shape)
    }

    /// `v` in its canonical shape.
    pub(super) fn canonical(&mut self, v: Val) -> Val {
        let s = shape_of(v.ty);
        self.reshape(v, s)
    }

    /// Lane masks of vector type `from` as masks of vector type `to`
    /// (same total lane count), halving or doubling the lane width a step
    /// at a time.
    fn resize_masks(&mut self, mut parts: Vec<Value>, from: Type, to: Type) -> Vec<Value> {
        let mut cur = from.as_int();
        let to = to.as_int();
        if cur != from {
            parts = parts
                .into_iter()
                .map(|p| self.fb.ins().bitcast(cur, little(), p))
                .collect();
        }
        while cur.lane_bits() > to.lane_bits() {
            let next = vec_of(Type::int((cur.lane_bits() / 2) as u16).expect("lane"));
            parts = parts
                .chunks(2)
                .map(|pair| self.narrow_masks(pair[0], pair[1], cur, next))
                .collect();
            cur = next;
        }
        while cur.lane_bits() < to.lane_bits() {
            let next = vec_of(Type::int((cur.lane_bits() * 2) as u16).expect("lane"));
            parts = parts
                .into_iter()
                .flat_map(|p| {
                    let lo = self.fb.ins().swiden_low(p);
                    let hi = self.fb.ins().swiden_high(p);
                    [lo, hi]
                })
                .collect();
            cur = next;
        }
        parts
    }

    /// Two vectors of masks to one with lanes half as wide.
    fn narrow_masks(&mut self, a: Value, b: Value, from: Type, to: Type) -> Value {
        if from.lane_bits() <= 32 {
            // Saturating narrowing keeps -1 and 0.
            return self.fb.ins().snarrow(a, b);
        }
        self.take_low_halves(a, b, to)
    }

    /// The low half of every lane of `a` then of `b`, as a vector of type
    /// `to` (lanes half as wide): wrapping narrowing.
    pub(super) fn take_low_halves(&mut self, a: Value, b: Value, to: Type) -> Value {
        let w = to.lane_bits() / 8; // output lane bytes
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let lane = i as u32 / w;
            let k = i as u32 % w;
            *byte = (lane * 2 * w + k) as u8;
        }
        let a8 = self.fb.ins().bitcast(types::I8X16, little(), a);
        let b8 = self.fb.ins().bitcast(types::I8X16, little(), b);
        let mask = self.shuffle_mask(&bytes);
        let r = self.fb.ins().shuffle(a8, b8, mask);
        self.fb.ins().bitcast(to, little(), r)
    }

    pub(super) fn shuffle_mask(&mut self, bytes: &[u8; 16]) -> Immediate {
        self.fb
            .func
            .dfg
            .immediates
            .push(ConstantData::from(bytes.to_vec()))
    }

    pub(super) fn scalar_ty(&self, d: DType) -> R<Type> {
        scalar_type(d).ok_or_else(|| self.unsupported(format!("element type {d}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(elem: DType, lanes: u16) -> Ty {
        Ty::vector(elem, lanes)
    }

    #[test]
    fn canonical_shapes() {
        assert_eq!(shape_of(ty(DType::F32, 1)), Shape::Scalar);
        assert_eq!(shape_of(ty(DType::F32, 4)), Shape::Simd(types::F32X4, 1));
        assert_eq!(shape_of(ty(DType::F32, 8)), Shape::Simd(types::F32X4, 2));
        assert_eq!(shape_of(ty(DType::U8, 16)), Shape::Simd(types::I8X16, 1));
        assert_eq!(shape_of(ty(DType::U8, 4)), Shape::Lanes(4));
        assert_eq!(shape_of(ty(DType::F32, 3)), Shape::Lanes(3));
        assert_eq!(shape_of(ty(DType::F64, 2)), Shape::Simd(types::F64X2, 1));
        assert_eq!(shape_of(ty(DType::Bool, 4)), Shape::Simd(types::I32X4, 1));
        assert_eq!(shape_of(ty(DType::Bool, 2)), Shape::Simd(types::I64X2, 1));
        assert_eq!(shape_of(ty(DType::Bool, 32)), Shape::Simd(types::I8X16, 2));
        assert_eq!(shape_of(ty(DType::Bool, 3)), Shape::Lanes(3));
        assert_eq!(shape_of(ty(DType::Bool, 24)), Shape::Lanes(24));
    }
}
