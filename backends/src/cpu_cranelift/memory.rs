//! Loads and stores: contiguous vectors as native vector accesses, strided
//! ones lane by lane, masked ones as a full access when the mask covers
//! every lane and otherwise lane by lane, inactive lanes redirected to a
//! spare stack slot (reading zeros, or absorbing the write) so that no
//! lane needs a branch.

use super::lower::{FnLower, R};
use super::value::{Shape, Val, part_types, shape_of};
use cranelift_codegen::ir::{
    Endianness, InstBuilder, MemFlagsData, Value, condcodes::IntCC, types,
};
use saturn_ir::DType;
use saturn_ir::kernel::{BufId, Expr, Ty};

/// Buffers are little-endian, possibly unaligned, and every access the
/// kernel makes is in bounds.
fn mem() -> MemFlagsData {
    MemFlagsData::new()
        .with_endianness(Endianness::Little)
        .with_notrap()
}

/// The shape a full load of `ty` with `stride` produces: canonical, but
/// booleans stay bytes (masks only when whole `i8x16` vectors are read).
fn load_shape(ty: Ty, stride: i64) -> Shape {
    if ty.lanes == 1 {
        Shape::Scalar
    } else if ty.elem == DType::Bool {
        if stride == 1 && ty.lanes.is_multiple_of(16) {
            Shape::Simd(types::I8X16, ty.lanes / 16)
        } else {
            Shape::Lanes(ty.lanes)
        }
    } else {
        shape_of(ty)
    }
}

impl FnLower<'_> {
    /// The element type and base address of a buffer.
    fn buffer(&self, buf: BufId) -> R<(DType, Value)> {
        match (
            self.k.bufs.get(buf.0 as usize),
            self.bufs.get(buf.0 as usize),
        ) {
            (Some(b), Some(&base)) => Ok((b.dtype, base)),
            _ => Err(self.invalid(format!("buffer #{} is not declared", buf.0))),
        }
    }

    /// `base + index * size` (bytes).
    fn element_addr(&mut self, base: Value, index: Value, size: i64) -> Value {
        let off = self.fb.ins().imul_imm_s(index, size);
        let off = if self.ptr == types::I64 {
            off
        } else {
            self.fb.ins().ireduce(self.ptr, off)
        };
        self.fb.ins().iadd(base, off)
    }

    /// `addr + off` as an address and an immediate offset.
    fn offset(&mut self, addr: Value, off: i64) -> (Value, i32) {
        match i32::try_from(off) {
            Ok(o) => (addr, o),
            Err(_) => (self.fb.ins().iadd_imm_s(addr, off), 0),
        }
    }

    pub(super) fn load(
        &mut self,
        buf: BufId,
        index: &Expr,
        lanes: u16,
        stride: i64,
        mask: Option<&Expr>,
    ) -> R<Val> {
        let (d, base) = self.buffer(buf)?;
        let ty = Ty::vector(d, lanes);
        self.check_ty(ty)?;
        let idx = self.index_expr(index)?;
        let size = (d.bits() / 8) as i64;
        let addr = self.element_addr(base, idx, size);
        let Some(mask) = mask else {
            return Ok(self.load_full(ty, addr, stride));
        };
        let m = self.index_expr(mask)?;
        let shape = load_shape(ty, stride);
        let part_tys = part_types(ty, shape);
        let all = self
            .fb
            .ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, m, lanes as i64);
        let parts = self.branch_values(
            all,
            &part_tys,
            |me| Ok(me.load_full(ty, addr, stride).parts),
            |me| {
                let v = me.load_masked(ty, addr, stride, m);
                Ok(me.reshape(v, shape).parts)
            },
        )?;
        Ok(Val::new(ty, shape, parts))
    }

    fn load_full(&mut self, ty: Ty, addr: Value, stride: i64) -> Val {
        let t = self.scalar_ty(ty.elem).unwrap_or(types::I8);
        let size = t.bytes() as i64;
        let shape = load_shape(ty, stride);
        match shape {
            Shape::Simd(vty, n) if stride == 1 => {
                let parts: Vec<Value> = (0..n as i64)
                    .map(|k| {
                        let (a, o) = self.offset(addr, k * 16);
                        let v = self.fb.ins().load(vty, mem(), a, o);
                        if ty.elem == DType::Bool {
                            let zero = self.iconst(types::I8, 0);
                            let zero = self.splat_native(vty, zero);
                            self.fb.ins().icmp(IntCC::NotEqual, v, zero)
                        } else {
                            v
                        }
                    })
                    .collect();
                Val::new(ty, shape, parts)
            }
            _ => {
                let lanes = (0..ty.lanes as i64)
                    .map(|i| {
                        let (a, o) = self.offset(addr, i * stride * size);
                        let x = self.fb.ins().load(t, mem(), a, o);
                        self.normalize_bool(ty.elem, x)
                    })
                    .collect();
                self.assemble(ty, lanes, shape)
            }
        }
    }

    /// Booleans read from memory as 0 or 1 whatever the byte held.
    fn normalize_bool(&mut self, d: DType, x: Value) -> Value {
        if d == DType::Bool {
            let zero = self.iconst(types::I8, 0);
            self.fb.ins().icmp(IntCC::NotEqual, x, zero)
        } else {
            x
        }
    }

    /// Lane `i` where `i < m`, zero elsewhere; lane by lane.
    fn load_masked(&mut self, ty: Ty, addr: Value, stride: i64, m: Value) -> Val {
        let t = self.scalar_ty(ty.elem).unwrap_or(types::I8);
        let size = t.bytes() as i64;
        let spare = self.spare_addr();
        let zero = self.iconst(types::I64, 0);
        self.fb.ins().store(mem(), zero, spare, 0);
        self.fb.ins().store(mem(), zero, spare, 8);
        let lanes = (0..ty.lanes as i64)
            .map(|i| {
                let at = self.fb.ins().iadd_imm_s(addr, i * stride * size);
                let on = self.fb.ins().icmp_imm_s(IntCC::SignedGreaterThan, m, i);
                let a = self.fb.ins().select(on, at, spare);
                let x = self.fb.ins().load(t, mem(), a, 0);
                self.normalize_bool(ty.elem, x)
            })
            .collect();
        let shape = if ty.lanes == 1 {
            Shape::Scalar
        } else {
            Shape::Lanes(ty.lanes)
        };
        self.assemble(ty, lanes, shape)
    }

    pub(super) fn store(
        &mut self,
        buf: BufId,
        index: &Expr,
        value: &Expr,
        stride: i64,
        mask: Option<&Expr>,
    ) -> R<()> {
        let (d, base) = self.buffer(buf)?;
        let v = self.expr(value)?;
        if v.ty.elem != d {
            return Err(self.invalid(format!(
                "store of {} into buffer `{}` of {d}",
                v.ty.elem, self.k.bufs[buf.0 as usize].name
            )));
        }
        let idx = self.index_expr(index)?;
        let size = (d.bits() / 8) as i64;
        let addr = self.element_addr(base, idx, size);
        let Some(mask) = mask else {
            self.store_full(v, addr, stride);
            return Ok(());
        };
        let m = self.index_expr(mask)?;
        let all = self
            .fb
            .ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, m, v.ty.lanes as i64);
        let v2 = v.clone();
        self.branch_values(
            all,
            &[],
            |me| {
                me.store_full(v, addr, stride);
                Ok(vec![])
            },
            |me| {
                me.store_masked(&v2, addr, stride, m);
                Ok(vec![])
            },
        )?;
        Ok(())
    }

    fn store_full(&mut self, v: Val, addr: Value, stride: i64) {
        let ty = v.ty;
        if stride == 1 && ty.lanes > 1 {
            let v = if ty.elem == DType::Bool && ty.lanes.is_multiple_of(16) {
                // Masks to bytes 0 or 1.
                let v = self.reshape(v, Shape::Simd(types::I8X16, ty.lanes / 16));
                let one = self.iconst(types::I8, 1);
                let one = self.splat_native(types::I8X16, one);
                let parts = v
                    .parts
                    .iter()
                    .map(|&p| self.fb.ins().band(p, one))
                    .collect();
                Val::new(ty, v.shape, parts)
            } else {
                v
            };
            if let Shape::Simd(..) = v.shape
                && (ty.elem != DType::Bool || ty.lanes.is_multiple_of(16))
            {
                for (k, &p) in v.parts.iter().enumerate() {
                    let (a, o) = self.offset(addr, k as i64 * 16);
                    self.fb.ins().store(mem(), p, a, o);
                }
                return;
            }
            return self.store_lanes(&v, addr, stride);
        }
        self.store_lanes(&v, addr, stride)
    }

    fn store_lanes(&mut self, v: &Val, addr: Value, stride: i64) {
        let size = (v.ty.elem.bits() / 8) as i64;
        let lanes = self.lanes(v);
        for (i, x) in lanes.into_iter().enumerate() {
            let (a, o) = self.offset(addr, i as i64 * stride * size);
            self.fb.ins().store(mem(), x, a, o);
        }
    }

    fn store_masked(&mut self, v: &Val, addr: Value, stride: i64, m: Value) {
        let size = (v.ty.elem.bits() / 8) as i64;
        let spare = self.spare_addr();
        let lanes = self.lanes(v);
        for (i, x) in lanes.into_iter().enumerate() {
            let i = i as i64;
            let at = self.fb.ins().iadd_imm_s(addr, i * stride * size);
            let on = self.fb.ins().icmp_imm_s(IntCC::SignedGreaterThan, m, i);
            let a = self.fb.ins().select(on, at, spare);
            self.fb.ins().store(mem(), x, a, 0);
        }
    }
}
