//! Loads and stores: contiguous vectors as vector accesses, strided ones
//! as a span and a shuffle (small strides), scalar loads (a few lanes) or
//! gathers, and scatters, masked ones through LLVM's masked intrinsics
//! (one instruction with AVX-512 masks; lanes past the mask are never
//! touched), a stride of zero as one scalar access. Bools are bytes in
//! memory.

use super::lower::{FnLower, R};
use super::value::{Val, elem_bytes, iota, llvm_type, mem_elem_type, vector_of, with_lanes};
use inkwell::IntPredicate;
use inkwell::types::BasicTypeEnum;
use inkwell::values::{BasicValue, BasicValueEnum, IntValue, PointerValue, VectorValue};
use saturn_ir::DType;
use saturn_ir::kernel::{BufId, Expr, Ty};

/// Strided loads up to this stride read their span contiguously and
/// shuffle, if the span has at most [`MAX_SPAN_LANES`] elements.
const MAX_SPAN_STRIDE: i64 = 4;
const MAX_SPAN_LANES: i64 = 64;
/// Unmasked strided loads of at most this many lanes (too far apart for a
/// span) are scalar loads.
const MAX_SCALAR_LANES: u16 = 8;

impl<'a, 'ctx> FnLower<'a, 'ctx> {
    /// The element type and base address of a buffer.
    fn buffer(&self, buf: BufId) -> R<(DType, PointerValue<'ctx>)> {
        match (
            self.k.bufs.get(buf.0 as usize),
            self.bufs.get(buf.0 as usize),
        ) {
            (Some(b), Some(&base)) => Ok((b.dtype, base)),
            _ => Err(self.invalid(format!("buffer #{} is not declared", buf.0))),
        }
    }

    fn mem_type(&self, d: DType) -> R<BasicTypeEnum<'ctx>> {
        mem_elem_type(self.c, d).ok_or_else(|| self.unsupported(format!("buffer of {d}")))
    }

    /// The address of element `index` of a buffer of `et`.
    fn element(
        &self,
        et: BasicTypeEnum<'ctx>,
        base: PointerValue<'ctx>,
        index: IntValue<'ctx>,
    ) -> R<PointerValue<'ctx>> {
        // SAFETY (of the IR): every access a kernel makes is in bounds.
        Ok(unsafe { self.b.build_in_bounds_gep(et, base, &[index], "")? })
    }

    /// Addresses of `lanes` elements `stride` apart from `index`.
    fn lane_addrs(
        &self,
        et: BasicTypeEnum<'ctx>,
        base: PointerValue<'ctx>,
        index: IntValue<'ctx>,
        lanes: u16,
        stride: i64,
    ) -> R<VectorValue<'ctx>> {
        let first = self.splat_value(index.into(), lanes)?;
        let idx = self
            .b
            .build_int_add(first, iota(self.c, lanes, stride), "")?;
        // A GEP with a vector index yields a vector of pointers (which
        // inkwell's typed builder does not express).
        use inkwell::llvm_sys::core::LLVMBuildInBoundsGEP2;
        use inkwell::types::AsTypeRef;
        use inkwell::values::AsValueRef;
        let mut indices = [idx.as_value_ref()];
        // SAFETY: the builder is positioned (it built `idx`), `et` is the
        // element type of the buffer `base` points to, and the result is a
        // vector of pointers.
        Ok(unsafe {
            VectorValue::new(LLVMBuildInBoundsGEP2(
                self.b.as_mut_ptr(),
                et.as_type_ref(),
                base.as_value_ref(),
                indices.as_mut_ptr(),
                1,
                c"".as_ptr(),
            ))
        })
    }

    /// Lane `i` active iff `i < count`. The count is clamped to
    /// `0..=lanes` and compared in 32-bit lanes: one compare against one
    /// constant where 64-bit lanes take two compares, four constants and
    /// a pack on AVX2 (whose constants LLVM then kept in registers across
    /// micro-kernels, spilling their sums).
    fn lane_mask(&self, count: IntValue<'ctx>, lanes: u16) -> R<VectorValue<'ctx>> {
        let top = self.index(lanes as i64);
        let below = self
            .b
            .build_int_compare(IntPredicate::SLT, count, top, "")?;
        let count = self.b.build_select(below, count, top, "")?.into_int_value();
        let zero = self.index(0);
        let neg = self
            .b
            .build_int_compare(IntPredicate::SLT, count, zero, "")?;
        let count = self.b.build_select(neg, zero, count, "")?.into_int_value();
        let i32t = self.c.i32_type();
        let count = self.b.build_int_truncate(count, i32t, "")?;
        let n = self.splat_value(count.into(), lanes)?;
        let items: Vec<_> = (0..lanes as u64)
            .map(|i| i32t.const_int(i, false))
            .collect();
        let iota = inkwell::types::VectorType::const_vector(&items);
        Ok(self.b.build_int_compare(IntPredicate::SLT, iota, n, "")?)
    }

    /// Memory bytes to register values: bools are `x != 0`.
    fn mem_to_reg(&self, d: DType, v: BasicValueEnum<'ctx>) -> R<BasicValueEnum<'ctx>> {
        if d != DType::Bool {
            return Ok(v);
        }
        let zero = v.get_type().const_zero();
        Ok(match (v, zero) {
            (BasicValueEnum::IntValue(a), BasicValueEnum::IntValue(z)) => {
                self.b.build_int_compare(IntPredicate::NE, a, z, "")?.into()
            }
            (BasicValueEnum::VectorValue(a), BasicValueEnum::VectorValue(z)) => {
                self.b.build_int_compare(IntPredicate::NE, a, z, "")?.into()
            }
            _ => return Err(self.invalid("bool load of an unexpected type")),
        })
    }

    /// Register values to memory: bools become bytes 0 or 1.
    fn reg_to_mem(&self, ty: Ty, v: BasicValueEnum<'ctx>) -> R<BasicValueEnum<'ctx>> {
        if ty.elem != DType::Bool {
            return Ok(v);
        }
        let t = with_lanes(self.c.i8_type().into(), ty.lanes);
        Ok(self
            .b
            .build_cast(inkwell::values::InstructionOpcode::ZExt, v, t, "")?)
    }

    pub(super) fn load(
        &mut self,
        buf: BufId,
        index: &Expr,
        lanes: u16,
        stride: i64,
        mask: Option<&Expr>,
    ) -> R<Val<'ctx>> {
        let (d, base) = self.buffer(buf)?;
        let ty = Ty::vector(d, lanes);
        self.check_ty(ty)?;
        let et = self.mem_type(d)?;
        let align = elem_bytes(d);
        let idx = self.index_expr(index)?;
        let count = match mask {
            Some(m) => Some(self.index_expr(m)?),
            None => None,
        };
        let mt = vector_of(et, lanes);
        let ptr_t: BasicTypeEnum = self.c.ptr_type(Default::default()).into();
        let raw: BasicValueEnum<'ctx> = match count {
            None if lanes == 1 || stride == 0 => {
                let addr = self.element(et, base, idx)?;
                let s = self.load_scalar(et, addr, align)?;
                if lanes == 1 {
                    s
                } else {
                    self.splat_value(s, lanes)?.into()
                }
            }
            None if stride == 1 => {
                let addr = self.element(et, base, idx)?;
                self.load_scalar(mt, addr, align)?
            }
            Some(n) if stride == 1 || lanes == 1 => match self.plain_pieces(n, lanes) {
                Some(pieces) => {
                    let mut v = mt.into_vector_type().const_zero();
                    for (at, width) in pieces {
                        let from = self.b.build_int_add(idx, self.index(at as i64), "")?;
                        let addr = self.element(et, base, from)?;
                        let piece = self.load_scalar(with_lanes(et, width), addr, align)?;
                        v = self.put_lanes(v, piece, at)?;
                    }
                    self.scalar_if_one(v.into(), lanes)?
                }
                None => {
                    let addr = self.element(et, base, idx)?;
                    let f = self.intrinsic("llvm.masked.load", &[mt, ptr_t])?;
                    let m = self.lane_mask(n, lanes)?;
                    let args = [addr.into(), m.into(), mt.const_zero()];
                    let v = self.masked_load(f, &args, align)?;
                    self.scalar_if_one(v, lanes)?
                }
            },
            _ if (2..=MAX_SPAN_STRIDE).contains(&stride)
                && (lanes as i64 * stride) <= MAX_SPAN_LANES =>
            {
                // A small stride: one contiguous masked load of the span
                // the lanes cover (never past the last lane read), then a
                // shuffle picking every `stride`-th element. Much cheaper
                // than a gather.
                let span = lanes as i64 * stride;
                let st = vector_of(et, span as u16);
                let addr = self.element(et, base, idx)?;
                // Elements read: (active - 1) · stride + 1.
                let full = self.index(lanes as i64);
                let active = match count {
                    Some(n) => {
                        let less = self.b.build_int_compare(IntPredicate::SLT, n, full, "")?;
                        self.b.build_select(less, n, full, "")?.into_int_value()
                    }
                    None => full,
                };
                let last = self.b.build_int_nsw_mul(
                    self.b.build_int_sub(active, self.index(1), "")?,
                    self.index(stride),
                    "",
                )?;
                let reach = self.b.build_int_add(last, self.index(1), "")?;
                let reach = self.b.build_select(
                    self.b
                        .build_int_compare(IntPredicate::SGT, active, self.index(0), "")?,
                    reach,
                    self.index(0),
                    "",
                )?;
                let f = self.intrinsic("llvm.masked.load", &[st, ptr_t])?;
                let m = self.lane_mask(reach.into_int_value(), span as u16)?;
                let wide = self.masked_load(f, &[addr.into(), m.into(), st.const_zero()], align)?;
                let pick: Vec<_> = (0..lanes as u64)
                    .map(|i| self.c.i32_type().const_int(i * stride as u64, false))
                    .collect();
                let pick = inkwell::types::VectorType::const_vector(&pick);
                let wide = wide.into_vector_value();
                self.b
                    .build_shuffle_vector(wide, wide.get_type().get_poison(), pick, "")?
                    .into()
            }
            None if lanes <= MAX_SCALAR_LANES => {
                // A few lanes far apart: scalar loads put together, which
                // beats a gather (many micro-ops on every x86 core).
                let mut v = mt.into_vector_type().get_poison();
                for j in 0..lanes as i64 {
                    let at = self.b.build_int_add(idx, self.index(j * stride), "")?;
                    let addr = self.element(et, base, at)?;
                    let s = self.load_scalar(et, addr, align)?;
                    v = self.b.build_insert_element(
                        v,
                        s,
                        self.c.i32_type().const_int(j as u64, false),
                        "",
                    )?;
                }
                v.into()
            }
            _ => {
                let ptrs = self.lane_addrs(et, base, idx, lanes, stride)?;
                let m = match count {
                    Some(n) => self.lane_mask(n, lanes)?,
                    None => self.all_lanes(lanes),
                };
                let f = self.intrinsic("llvm.masked.gather", &[mt, ptrs.get_type().into()])?;
                self.masked_load(f, &[ptrs.into(), m.into(), mt.const_zero()], align)?
            }
        };
        let v = self.mem_to_reg(d, raw)?;
        debug_assert_eq!(Some(v.get_type()), llvm_type(self.c, ty));
        Ok(Val::new(ty, v))
    }

    fn load_scalar(
        &self,
        t: BasicTypeEnum<'ctx>,
        addr: PointerValue<'ctx>,
        align: u32,
    ) -> R<BasicValueEnum<'ctx>> {
        let v = self.b.build_load(t, addr, "")?;
        if let Some(i) = v.as_instruction_value() {
            i.set_alignment(align)
                .map_err(|e| self.invalid(format!("alignment: {e:?}")))?;
        }
        Ok(v)
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
        if self.k.bufs[buf.0 as usize].kind == saturn_ir::kernel::BufKind::Input {
            return Err(self.invalid(format!(
                "store to input buffer `{}`",
                self.k.bufs[buf.0 as usize].name
            )));
        }
        let idx = self.index_expr(index)?;
        let v = self.expr(value)?;
        if v.ty.elem != d {
            return Err(self.invalid(format!(
                "store of {} to `{}` of dtype {d}",
                v.ty.elem, self.k.bufs[buf.0 as usize].name
            )));
        }
        let count = match mask {
            Some(m) => Some(self.index_expr(m)?),
            None => None,
        };
        let lanes = v.ty.lanes;
        let et = self.mem_type(d)?;
        let align = elem_bytes(d);
        let raw = self.reg_to_mem(v.ty, v.v)?;
        let ptr_t: BasicTypeEnum = self.c.ptr_type(Default::default()).into();
        match count {
            None if lanes == 1 || stride == 1 => {
                let addr = self.element(et, base, idx)?;
                self.store_scalar(addr, raw, align)?;
            }
            Some(n) if lanes == 1 || stride == 1 => {
                let raw = self.vector_if_one(raw)?;
                match self.plain_pieces(n, lanes) {
                    Some(pieces) => {
                        for (at, width) in pieces {
                            let to = self.b.build_int_add(idx, self.index(at as i64), "")?;
                            let addr = self.element(et, base, to)?;
                            let piece = self.lanes_of(raw.into_vector_value(), at, width)?;
                            self.store_scalar(addr, piece, align)?;
                        }
                    }
                    None => {
                        let addr = self.element(et, base, idx)?;
                        let f = self.intrinsic("llvm.masked.store", &[raw.get_type(), ptr_t])?;
                        let m = self.lane_mask(n, lanes)?;
                        self.masked_call(f, &[raw, addr.into(), m.into()], 1, align)?;
                    }
                }
            }
            _ => {
                // Lanes in order: with a stride of 0 the last active one wins.
                let ptrs = self.lane_addrs(et, base, idx, lanes, stride)?;
                let m = match count {
                    Some(n) => self.lane_mask(n, lanes)?,
                    None => self.all_lanes(lanes),
                };
                let f = self.intrinsic(
                    "llvm.masked.scatter",
                    &[raw.get_type(), ptrs.get_type().into()],
                )?;
                self.masked_call(f, &[raw, ptrs.into(), m.into()], 1, align)?;
            }
        }
        Ok(())
    }

    /// `llvm.prefetch` (a read, kept in all cache levels) of element
    /// `index` of `buf`. The address is computed without `inbounds`: a
    /// prefetch past the buffer is allowed and does nothing.
    pub(super) fn prefetch(&mut self, buf: BufId, index: &Expr) -> R<()> {
        let (d, base) = self.buffer(buf)?;
        let et = self.mem_type(d)?;
        let idx = self.index_expr(index)?;
        // SAFETY (of the IR): a plain GEP is defined for any index.
        let addr = unsafe { self.b.build_gep(et, base, &[idx], "")? };
        let ptr_t: BasicTypeEnum = self.c.ptr_type(Default::default()).into();
        let f = self.intrinsic("llvm.prefetch", &[ptr_t])?;
        let i32t = self.c.i32_type();
        let args: Vec<inkwell::values::BasicMetadataValueEnum> = vec![
            addr.into(),
            i32t.const_zero().into(),
            i32t.const_int(3, false).into(),
            i32t.const_int(1, false).into(),
        ];
        self.b.build_direct_call(f, &args, "")?;
        Ok(())
    }

    /// Calls a masked memory intrinsic whose argument `ptr_arg` is the
    /// address (or addresses), aligned to `align` bytes; returns its value
    /// (a store's is unused).
    fn masked_call(
        &self,
        f: inkwell::values::FunctionValue<'ctx>,
        args: &[BasicValueEnum<'ctx>],
        ptr_arg: u32,
        align: u32,
    ) -> R<Option<BasicValueEnum<'ctx>>> {
        let args: Vec<inkwell::values::BasicMetadataValueEnum> =
            args.iter().map(|&a| a.into()).collect();
        let call = self.b.build_direct_call(f, &args, "")?;
        let kind = inkwell::attributes::Attribute::get_named_enum_kind_id("align");
        call.add_attribute(
            inkwell::attributes::AttributeLoc::Param(ptr_arg),
            self.c.create_enum_attribute(kind, align as u64),
        );
        Ok(match call.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Some(v),
            inkwell::values::ValueKind::Instruction(_) => None,
        })
    }

    fn masked_load(
        &self,
        f: inkwell::values::FunctionValue<'ctx>,
        args: &[BasicValueEnum<'ctx>],
        align: u32,
    ) -> R<BasicValueEnum<'ctx>> {
        self.masked_call(f, args, 0, align)?
            .ok_or_else(|| self.invalid("a masked load without a value"))
    }

    /// A mask whose count is a constant, as contiguous groups of lanes
    /// `(first, width)` of power-of-two widths, widest first, each one
    /// plain load or store; `None` where one masked access is cheaper.
    /// One group always beats a masked access; several beat it where the
    /// target has no mask registers (an AVX2 masked store is a microcoded
    /// loop on some cores, NEON has none at all).
    fn plain_pieces(&self, count: IntValue<'ctx>, lanes: u16) -> Option<Vec<(u16, u16)>> {
        let n = count.get_sign_extended_constant()?.clamp(0, lanes as i64) as u16;
        let mut pieces = Vec::new();
        let mut at = 0;
        let mut width = lanes.next_power_of_two();
        while width > 0 {
            if n - at >= width {
                pieces.push((at, width));
                at += width;
            }
            width /= 2;
        }
        (pieces.len() <= 1 || !self.cx.machine.has_mask_registers()).then_some(pieces)
    }

    /// Lanes `at..at + width` of `v`: a vector, or a scalar for one lane.
    pub(super) fn lanes_of(
        &self,
        v: VectorValue<'ctx>,
        at: u16,
        width: u16,
    ) -> R<BasicValueEnum<'ctx>> {
        let i32t = self.c.i32_type();
        if width == 1 {
            return Ok(self
                .b
                .build_extract_element(v, i32t.const_int(at as u64, false), "")?);
        }
        if width as u32 == v.get_type().get_size() {
            return Ok(v.into());
        }
        let pick: Vec<_> = (at..at + width)
            .map(|i| i32t.const_int(i as u64, false))
            .collect();
        let pick = inkwell::types::VectorType::const_vector(&pick);
        Ok(self
            .b
            .build_shuffle_vector(v, v.get_type().get_poison(), pick, "")?
            .into())
    }

    /// `v` with lanes `at..` replaced by `piece` (a vector, or a scalar for
    /// one lane).
    fn put_lanes(
        &self,
        v: VectorValue<'ctx>,
        piece: BasicValueEnum<'ctx>,
        at: u16,
    ) -> R<VectorValue<'ctx>> {
        let i32t = self.c.i32_type();
        let lanes = v.get_type().get_size();
        if !piece.is_vector_value() {
            return Ok(self.b.build_insert_element(
                v,
                piece,
                i32t.const_int(at as u64, false),
                "",
            )?);
        }
        let piece = piece.into_vector_value();
        let width = piece.get_type().get_size();
        if width == lanes {
            return Ok(piece);
        }
        // The piece widened to `lanes` (lanes past it unused), then lanes
        // `at..at + width` taken from it.
        let undef = i32t.get_undef();
        let widen: Vec<_> = (0..lanes)
            .map(|i| {
                if i < width {
                    i32t.const_int(i as u64, false)
                } else {
                    undef
                }
            })
            .collect();
        let wide = self.b.build_shuffle_vector(
            piece,
            piece.get_type().get_poison(),
            inkwell::types::VectorType::const_vector(&widen),
            "",
        )?;
        let at = at as u32;
        let pick: Vec<_> = (0..lanes)
            .map(|i| {
                let from = if (at..at + width).contains(&i) {
                    lanes + i - at
                } else {
                    i
                };
                i32t.const_int(from as u64, false)
            })
            .collect();
        Ok(self.b.build_shuffle_vector(
            v,
            wide,
            inkwell::types::VectorType::const_vector(&pick),
            "",
        )?)
    }

    /// Every lane active.
    fn all_lanes(&self, lanes: u16) -> VectorValue<'ctx> {
        let t = self.c.bool_type().const_int(1, false);
        inkwell::types::VectorType::const_vector(&vec![t; lanes as usize])
    }

    /// Lane 0 of a one-lane vector; other vectors as they are.
    fn scalar_if_one(&self, v: BasicValueEnum<'ctx>, lanes: u16) -> R<BasicValueEnum<'ctx>> {
        if lanes != 1 {
            return Ok(v);
        }
        let zero = self.c.i32_type().const_zero();
        Ok(self
            .b
            .build_extract_element(v.into_vector_value(), zero, "")?)
    }

    /// A scalar as a one-lane vector; vectors as they are.
    fn vector_if_one(&self, v: BasicValueEnum<'ctx>) -> R<BasicValueEnum<'ctx>> {
        if v.is_vector_value() {
            return Ok(v);
        }
        let t = vector_of(v.get_type(), 1).into_vector_type();
        let zero = self.c.i32_type().const_zero();
        Ok(self
            .b
            .build_insert_element(t.get_poison(), v, zero, "")?
            .into())
    }

    fn store_scalar(&self, addr: PointerValue<'ctx>, v: BasicValueEnum<'ctx>, align: u32) -> R<()> {
        let st = self.b.build_store(addr, v)?;
        st.set_alignment(align)
            .map_err(|e| self.invalid(format!("alignment: {e:?}")))?;
        Ok(())
    }
}
