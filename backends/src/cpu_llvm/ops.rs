//! Arithmetic, comparisons, casts, lane operations and calls, with the
//! semantics of the Kernel IR evaluator: integers wrap, division by zero
//! gives 0 and `MIN / -1` wraps, shift amounts are taken modulo the width,
//! float-to-integer casts saturate (NaN gives 0), float `min`/`max`
//! propagate NaN.

use super::lower::{FnLower, R};
use super::value::{Val, elem_bits, elem_type, is_float, is_unsigned, splat_const, zero_mask};
use inkwell::intrinsics::Intrinsic;
use inkwell::types::{BasicMetadataTypeEnum, BasicType, BasicTypeEnum};
use inkwell::values::{BasicMetadataValueEnum, BasicValueEnum, FunctionValue, ValueKind};
use inkwell::{FloatPredicate, IntPredicate};
use saturn_ir::DType;
use saturn_ir::kernel::{BinOp, Expr, ReduceOp, Ty, UnOp};

type V<'ctx> = BasicValueEnum<'ctx>;

impl<'a, 'ctx> FnLower<'a, 'ctx> {
    /// The LLVM intrinsic `name` overloaded on `types`.
    pub(super) fn intrinsic(
        &self,
        name: &str,
        types: &[BasicTypeEnum<'ctx>],
    ) -> R<FunctionValue<'ctx>> {
        Intrinsic::find(name)
            .and_then(|i| i.get_declaration(&self.cx.m, types))
            .ok_or_else(|| self.invalid(format!("LLVM has no intrinsic `{name}` for {types:?}")))
    }

    /// Calls `f` and returns its value.
    pub(super) fn call_value(&self, f: FunctionValue<'ctx>, args: &[V<'ctx>]) -> R<V<'ctx>> {
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|&a| a.into()).collect();
        match self.b.build_direct_call(f, &args, "")?.try_as_basic_value() {
            ValueKind::Basic(v) => Ok(v),
            ValueKind::Instruction(_) => {
                Err(self.invalid("a call of a void function used as a value"))
            }
        }
    }

    /// `name` (an intrinsic overloaded on the type of `args[0]`) on `args`.
    fn intr(&self, name: &str, args: &[V<'ctx>]) -> R<V<'ctx>> {
        let f = self.intrinsic(name, &[args[0].get_type()])?;
        self.call_value(f, args)
    }

    fn icmp(&self, p: IntPredicate, a: V<'ctx>, b: V<'ctx>) -> R<V<'ctx>> {
        Ok(match (a, b) {
            (V::IntValue(a), V::IntValue(b)) => self.b.build_int_compare(p, a, b, "")?.into(),
            (V::VectorValue(a), V::VectorValue(b)) => self.b.build_int_compare(p, a, b, "")?.into(),
            _ => return Err(self.invalid("integer comparison of mismatched operands")),
        })
    }

    fn fcmp(&self, p: FloatPredicate, a: V<'ctx>, b: V<'ctx>) -> R<V<'ctx>> {
        Ok(match (a, b) {
            (V::FloatValue(a), V::FloatValue(b)) => self.b.build_float_compare(p, a, b, "")?.into(),
            (V::VectorValue(a), V::VectorValue(b)) => {
                self.b.build_float_compare(p, a, b, "")?.into()
            }
            _ => return Err(self.invalid("float comparison of mismatched operands")),
        })
    }

    /// `c ? a : b` lane-wise (`c` is `i1` or `<N x i1>`).
    pub(super) fn sel(&self, c: V<'ctx>, a: V<'ctx>, b: V<'ctx>) -> R<V<'ctx>> {
        Ok(match c {
            V::IntValue(c) => self.b.build_select(c, a, b, "")?,
            V::VectorValue(c) => self.b.build_select(c, a, b, "")?,
            _ => return Err(self.invalid("select on a non-boolean condition")),
        })
    }

    fn op(&self, op: inkwell::values::InstructionOpcode, a: V<'ctx>, b: V<'ctx>) -> R<V<'ctx>> {
        Ok(self.b.build_binop(op, a, b, "")?)
    }

    /// A constant of the type of `ty` with every lane `v`.
    pub(super) fn int_splat(&self, ty: Ty, v: i64) -> R<V<'ctx>> {
        let s = super::value::int_const(self.c, ty.elem, v)
            .ok_or_else(|| self.unsupported(format!("constant of {}", ty.elem)))?;
        Ok(splat_const(s, ty.lanes))
    }

    pub(super) fn unary(&mut self, op: UnOp, a: Val<'ctx>) -> R<Val<'ctx>> {
        let ty = a.ty;
        self.check_ty(ty)?;
        let x = a.v;
        let v = if is_float(ty.elem) {
            match op {
                UnOp::Neg => match x {
                    V::FloatValue(f) => self.b.build_float_neg(f, "")?.into(),
                    V::VectorValue(f) => self.b.build_float_neg(f, "")?.into(),
                    _ => return Err(self.invalid("negation of a non-float")),
                },
                UnOp::Abs => self.intr("llvm.fabs", &[x])?,
                UnOp::Sqrt => self.intr("llvm.sqrt", &[x])?,
                UnOp::Floor => self.intr("llvm.floor", &[x])?,
                UnOp::Ceil => self.intr("llvm.ceil", &[x])?,
                UnOp::Round => self.intr("llvm.roundeven", &[x])?,
                UnOp::Trunc => self.intr("llvm.trunc", &[x])?,
                UnOp::Not => return Err(self.invalid("not of a float")),
            }
        } else {
            use inkwell::values::InstructionOpcode::*;
            let bool_ = ty.elem == DType::Bool;
            match op {
                // Negation of a bool is itself (−1 is true).
                UnOp::Neg if bool_ => x,
                UnOp::Neg => self.op(Sub, self.int_splat(ty, 0)?, x)?,
                UnOp::Abs if is_unsigned(ty.elem) => x,
                UnOp::Abs => {
                    let f = self.intrinsic("llvm.abs", &[x.get_type()])?;
                    let poison = self.c.bool_type().const_zero();
                    self.call_value(f, &[x, poison.into()])?
                }
                UnOp::Not => self.op(Xor, x, self.int_splat(ty, -1)?)?,
                UnOp::Sqrt => return Err(self.invalid("sqrt of an integer")),
                UnOp::Floor | UnOp::Ceil | UnOp::Round | UnOp::Trunc => x,
            }
        };
        Ok(Val::new(ty, v))
    }

    pub(super) fn binary(&mut self, op: BinOp, a: Val<'ctx>, b: Val<'ctx>) -> R<Val<'ctx>> {
        if a.ty != b.ty {
            return Err(self.invalid(format!(
                "binary operands of types {}x{} and {}x{}",
                a.ty.elem, a.ty.lanes, b.ty.elem, b.ty.lanes
            )));
        }
        let ty = a.ty;
        self.check_ty(ty)?;
        let d = ty.elem;
        if op == BinOp::Ldexp {
            return self.ldexp(a, b);
        }
        let (x, y) = (a.v, b.v);
        use inkwell::values::InstructionOpcode as I;
        if op.is_compare() {
            let r = if is_float(d) {
                // Ordered, except `!=`, which NaN satisfies.
                let p = match op {
                    BinOp::Eq => FloatPredicate::OEQ,
                    BinOp::Ne => FloatPredicate::UNE,
                    BinOp::Lt => FloatPredicate::OLT,
                    BinOp::Le => FloatPredicate::OLE,
                    BinOp::Gt => FloatPredicate::OGT,
                    _ => FloatPredicate::OGE,
                };
                self.fcmp(p, x, y)?
            } else {
                let un = is_unsigned(d);
                let p = match op {
                    BinOp::Eq => IntPredicate::EQ,
                    BinOp::Ne => IntPredicate::NE,
                    BinOp::Lt if un => IntPredicate::ULT,
                    BinOp::Le if un => IntPredicate::ULE,
                    BinOp::Gt if un => IntPredicate::UGT,
                    BinOp::Ge if un => IntPredicate::UGE,
                    BinOp::Lt => IntPredicate::SLT,
                    BinOp::Le => IntPredicate::SLE,
                    BinOp::Gt => IntPredicate::SGT,
                    _ => IntPredicate::SGE,
                };
                self.icmp(p, x, y)?
            };
            return Ok(Val::new(ty.with_elem(DType::Bool), r));
        }
        let v = if is_float(d) {
            match op {
                BinOp::Add => self.op(I::FAdd, x, y)?,
                BinOp::Sub => self.op(I::FSub, x, y)?,
                BinOp::Mul => self.op(I::FMul, x, y)?,
                BinOp::Div => self.op(I::FDiv, x, y)?,
                BinOp::Rem => self.op(I::FRem, x, y)?,
                BinOp::Min => self.intr("llvm.minimum", &[x, y])?,
                BinOp::Max => self.intr("llvm.maximum", &[x, y])?,
                _ => return Err(self.invalid(format!("{op:?} of floats"))),
            }
        } else if d == DType::Bool {
            // Bools are 0 or 1, results normalised to 0 or 1.
            match op {
                BinOp::Add | BinOp::Or | BinOp::Max => self.op(I::Or, x, y)?,
                BinOp::Sub | BinOp::Xor => self.op(I::Xor, x, y)?,
                BinOp::Mul | BinOp::And | BinOp::Min | BinOp::Div => self.op(I::And, x, y)?,
                BinOp::Rem => self.int_splat(ty, 0)?,
                // Shifting a 1-bit value by an amount modulo 1 (zero).
                BinOp::Shl | BinOp::Shr => x,
                _ => unreachable!("comparisons handled above"),
            }
        } else {
            let un = is_unsigned(d);
            let zero = self.int_splat(ty, 0)?;
            match op {
                BinOp::Add => self.op(I::Add, x, y)?,
                BinOp::Sub => self.op(I::Sub, x, y)?,
                BinOp::Mul => self.op(I::Mul, x, y)?,
                BinOp::And => self.op(I::And, x, y)?,
                BinOp::Or => self.op(I::Or, x, y)?,
                BinOp::Xor => self.op(I::Xor, x, y)?,
                BinOp::Min if un => self.intr("llvm.umin", &[x, y])?,
                BinOp::Max if un => self.intr("llvm.umax", &[x, y])?,
                BinOp::Min => self.intr("llvm.smin", &[x, y])?,
                BinOp::Max => self.intr("llvm.smax", &[x, y])?,
                BinOp::Shl | BinOp::Shr => {
                    let amount =
                        self.op(I::And, y, self.int_splat(ty, elem_bits(d) as i64 - 1)?)?;
                    let o = match op {
                        BinOp::Shl => I::Shl,
                        _ if un => I::LShr,
                        _ => I::AShr,
                    };
                    self.op(o, x, amount)?
                }
                BinOp::Div | BinOp::Rem => {
                    // Division by 0 gives 0; signed MIN / -1 wraps (its
                    // remainder is 0): divide by 1 there and fix up.
                    let by_zero = self.icmp(IntPredicate::EQ, y, zero)?;
                    let one = self.int_splat(ty, 1)?;
                    if un {
                        let safe = self.sel(by_zero, one, y)?;
                        let o = if op == BinOp::Div { I::UDiv } else { I::URem };
                        let r = self.op(o, x, safe)?;
                        self.sel(by_zero, zero, r)?
                    } else {
                        let minus_one = self.int_splat(ty, -1)?;
                        let by_m1 = self.icmp(IntPredicate::EQ, y, minus_one)?;
                        let odd = self.op(I::Or, by_zero, by_m1)?;
                        let safe = self.sel(odd, one, y)?;
                        if op == BinOp::Div {
                            let q = self.op(I::SDiv, x, safe)?;
                            let neg = self.op(I::Sub, zero, x)?;
                            let q = self.sel(by_m1, neg, q)?;
                            self.sel(by_zero, zero, q)?
                        } else {
                            let r = self.op(I::SRem, x, safe)?;
                            self.sel(odd, zero, r)?
                        }
                    }
                }
                _ => unreachable!("comparisons handled above"),
            }
        };
        Ok(Val::new(ty, v))
    }

    /// [`BinOp::Ldexp`]: AVX-512's `vscalefps`/`vscalefpd` on full 512-bit
    /// vectors, the shared expansion elsewhere.
    fn ldexp(&mut self, a: Val<'ctx>, b: Val<'ctx>) -> R<Val<'ctx>> {
        let ty = a.ty;
        if !is_float(ty.elem) {
            return Err(self.invalid(format!("ldexp of {}", ty.elem)));
        }
        if !(self.cx.machine.has_scalef() && elem_bits(ty.elem) * ty.lanes as u32 == 512) {
            return crate::native::ldexp_expanded(self, a, b);
        }
        let (name, mask_ty) = if ty.elem == DType::F32 {
            ("llvm.x86.avx512.mask.scalef.ps.512", self.c.i16_type())
        } else {
            ("llvm.x86.avx512.mask.scalef.pd.512", self.c.i8_type())
        };
        let f = self.intrinsic(name, &[])?;
        // Every lane written (mask of ones), current rounding mode (4).
        let mask = mask_ty.const_all_ones();
        let rounding = self.c.i32_type().const_int(4, false);
        let v = self.call_value(f, &[a.v, b.v, a.v, mask.into(), rounding.into()])?;
        Ok(Val::new(ty, v))
    }

    pub(super) fn mul_add(&mut self, a: Val<'ctx>, b: Val<'ctx>, c: Val<'ctx>) -> R<Val<'ctx>> {
        if a.ty != b.ty || a.ty != c.ty {
            return Err(self.invalid("mul_add operands of different types"));
        }
        let ty = a.ty;
        self.check_ty(ty)?;
        if is_float(ty.elem) {
            // Fused where the target has one instruction for it.
            let name = if self.cx.machine.has_fma() {
                "llvm.fma"
            } else {
                "llvm.fmuladd"
            };
            return Ok(Val::new(ty, self.intr(name, &[a.v, b.v, c.v])?));
        }
        let p = self.binary(BinOp::Mul, a, b)?;
        self.binary(BinOp::Add, p, c)
    }

    pub(super) fn select(&mut self, c: Val<'ctx>, a: Val<'ctx>, b: Val<'ctx>) -> R<Val<'ctx>> {
        if c.ty.elem != DType::Bool || c.ty.lanes != a.ty.lanes {
            return Err(self.invalid("select condition must be bool lanes like the arms"));
        }
        if a.ty != b.ty {
            return Err(self.invalid("select arms of different types"));
        }
        Ok(Val::new(a.ty, self.sel(c.v, a.v, b.v)?))
    }

    pub(super) fn cast(&mut self, to: DType, a: Val<'ctx>) -> R<Val<'ctx>> {
        let from = a.ty.elem;
        let ty = a.ty.with_elem(to);
        let tt = self.ty(ty)?;
        if from == to {
            return Ok(a);
        }
        use inkwell::values::InstructionOpcode as I;
        let x = a.v;
        let v = match (is_float(from), is_float(to)) {
            (true, true) => {
                let o = if to.bits() > from.bits() {
                    I::FPExt
                } else {
                    I::FPTrunc
                };
                self.b.build_cast(o, x, tt, "")?
            }
            (true, false) if to == DType::Bool => {
                let zero = tt_zero_like(x);
                self.fcmp(FloatPredicate::UNE, x, zero)?
            }
            (true, false) => self.float_to_int(from, to, a.ty.lanes, x, tt)?,
            (false, true) => {
                let o = if is_unsigned(from) {
                    I::UIToFP
                } else {
                    I::SIToFP
                };
                self.b.build_cast(o, x, tt, "")?
            }
            (false, false) if to == DType::Bool => {
                let zero = tt_zero_like(x);
                self.icmp(IntPredicate::NE, x, zero)?
            }
            (false, false) => {
                let (fb, tb) = (elem_bits(from), elem_bits(to));
                let o = if tb < fb {
                    I::Trunc
                } else if tb == fb {
                    I::BitCast
                } else if is_unsigned(from) {
                    I::ZExt
                } else {
                    I::SExt
                };
                if o == I::BitCast {
                    x
                } else {
                    self.b.build_cast(o, x, tt, "")?
                }
            }
        };
        Ok(Val::new(ty, v))
    }

    /// Float to integer, saturating, NaN to 0: clamped into the target's
    /// range in the float type, converted (now in range), NaN lanes
    /// zeroed. (LLVM's `fptosi.sat` is correct too, but x86 has no vector
    /// form of it and gets it lane by lane.)
    fn float_to_int(
        &mut self,
        from: DType,
        to: DType,
        lanes: u16,
        x: V<'ctx>,
        tt: BasicTypeEnum<'ctx>,
    ) -> R<V<'ctx>> {
        let (lo, hi) = int_range(to);
        let (lo, hi) = (
            float_at_most(from, lo, false),
            float_at_most(from, hi, true),
        );
        let c = |v: f64| -> R<V<'ctx>> {
            let s = super::value::float_const(self.c, from, v)
                .ok_or_else(|| self.unsupported(format!("constant of {from}")))?;
            Ok(splat_const(s, lanes))
        };
        // `x > lo ? x : lo` also sends NaN to `lo`; NaN is zeroed below.
        let above = self.fcmp(FloatPredicate::OGT, x, c(lo)?)?;
        let xc = self.sel(above, x, c(lo)?)?;
        let below = self.fcmp(FloatPredicate::OLT, xc, c(hi)?)?;
        let xc = self.sel(below, xc, c(hi)?)?;
        use inkwell::values::InstructionOpcode as I;
        let o = if is_unsigned(to) {
            I::FPToUI
        } else {
            I::FPToSI
        };
        let r = self.b.build_cast(o, xc, tt, "")?;
        // At or past `max + 1` (a power of two, exact in any float type):
        // the integer maximum, which the float type may not hold.
        let (_, max) = int_range(to);
        let over = self.fcmp(FloatPredicate::OGE, x, c(max + 1.0)?)?;
        let it = Ty::vector(to, lanes);
        let top = match to {
            DType::U64 => self.int_splat(it, -1)?,
            _ => self.int_splat(it, max as i64)?,
        };
        let r = self.sel(over, top, r)?;
        let nan = self.fcmp(FloatPredicate::UNO, x, x)?;
        self.sel(nan, self.int_splat(it, 0)?, r)
    }

    pub(super) fn bitcast(&mut self, to: DType, a: Val<'ctx>) -> R<Val<'ctx>> {
        let from = a.ty.elem;
        if from.bits() != to.bits() {
            return Err(self.invalid(format!("bitcast {from} to {to}")));
        }
        if from == DType::Bool || to == DType::Bool {
            // A byte read as a bool is `!= 0`; a bool's byte is 0 or 1.
            if is_float(from) || is_float(to) {
                return Err(self.invalid(format!("bitcast {from} to {to}")));
            }
            return self.cast(to, a);
        }
        let ty = a.ty.with_elem(to);
        let tt = self.ty(ty)?;
        if elem_type(self.c, from) == elem_type(self.c, to) {
            return Ok(Val::new(ty, a.v));
        }
        let v = self
            .b
            .build_cast(inkwell::values::InstructionOpcode::BitCast, a.v, tt, "")?;
        Ok(Val::new(ty, v))
    }

    /// A scalar repeated over `lanes` lanes.
    pub(super) fn splat(&mut self, a: Val<'ctx>, lanes: u16) -> R<Val<'ctx>> {
        let ty = a.ty.with_lanes(lanes);
        self.check_ty(ty)?;
        if lanes == 1 {
            return Ok(a);
        }
        Ok(Val::new(ty, self.splat_value(a.v, lanes)?))
    }

    /// `<lanes x T>` of copies of the scalar `s`.
    pub(super) fn splat_value(
        &self,
        s: V<'ctx>,
        lanes: u16,
    ) -> R<inkwell::values::VectorValue<'ctx>> {
        let poison = super::value::vector_of(s.get_type(), lanes)
            .into_vector_type()
            .get_poison();
        let idx = self.c.i32_type().const_zero();
        let one = self.b.build_insert_element(poison, s, idx, "")?;
        Ok(self
            .b
            .build_shuffle_vector(one, poison, zero_mask(self.c, lanes), "")?)
    }

    pub(super) fn extract(&mut self, a: Val<'ctx>, i: u16) -> R<Val<'ctx>> {
        if i >= a.ty.lanes {
            return Err(self.invalid(format!("extract of lane {i} from {} lanes", a.ty.lanes)));
        }
        let ty = a.ty.with_lanes(1);
        if a.ty.lanes == 1 {
            return Ok(a);
        }
        let idx = self.c.i32_type().const_int(i as u64, false);
        let v = self
            .b
            .build_extract_element(a.v.into_vector_value(), idx, "")?;
        Ok(Val::new(ty, v))
    }

    /// Lanes `idx` of `a` and `b` taken as one vector (`shufflevector`).
    pub(super) fn shuffle(&mut self, a: Val<'ctx>, b: Val<'ctx>, idx: &[u16]) -> R<Val<'ctx>> {
        let n = a.ty.lanes;
        if a.ty != b.ty || idx.is_empty() || idx.iter().any(|&i| i >= 2 * n) {
            return Err(self.invalid(format!("shuffle {idx:?} of {} lanes", n)));
        }
        let ty = a.ty.with_lanes(idx.len() as u16);
        self.check_ty(ty)?;
        if n == 1 {
            // Scalars: insert the picks one by one.
            let pick = |i: u16| if i == 0 { a.v } else { b.v };
            if idx.len() == 1 {
                return Ok(Val::new(ty, pick(idx[0])));
            }
            let mut v = super::value::vector_of(a.v.get_type(), idx.len() as u16)
                .into_vector_type()
                .get_poison();
            for (j, &i) in idx.iter().enumerate() {
                let at = self.c.i32_type().const_int(j as u64, false);
                v = self.b.build_insert_element(v, pick(i), at, "")?;
            }
            return Ok(Val::new(ty, v));
        }
        if idx.len() == 1 {
            let (from, i) = if idx[0] < n {
                (a, idx[0])
            } else {
                (b, idx[0] - n)
            };
            return self.extract(from, i);
        }
        let mask: Vec<_> = idx
            .iter()
            .map(|&i| self.c.i32_type().const_int(i as u64, false))
            .collect();
        let mask = inkwell::types::VectorType::const_vector(&mask);
        let v = self.b.build_shuffle_vector(
            a.v.into_vector_value(),
            b.v.into_vector_value(),
            mask,
            "",
        )?;
        Ok(Val::new(ty, v))
    }

    /// Horizontal reduction. Float sums and products fold halves
    /// together (a tree, not the lane order); min and max propagate NaN.
    pub(super) fn reduce(&mut self, op: ReduceOp, a: Val<'ctx>) -> R<Val<'ctx>> {
        let ty = a.ty.with_lanes(1);
        self.check_ty(a.ty)?;
        if a.ty.lanes == 1 {
            return Ok(a);
        }
        let d = ty.elem;
        let bin = match op {
            ReduceOp::Add => BinOp::Add,
            ReduceOp::Mul => BinOp::Mul,
            ReduceOp::Min => BinOp::Min,
            ReduceOp::Max => BinOp::Max,
        };
        if is_float(d) && matches!(op, ReduceOp::Add | ReduceOp::Mul) || d == DType::Bool {
            return self.tree_reduce(bin, a);
        }
        let name = match (op, is_float(d), is_unsigned(d)) {
            (ReduceOp::Min, true, _) => "llvm.vector.reduce.fminimum",
            (ReduceOp::Max, true, _) => "llvm.vector.reduce.fmaximum",
            (ReduceOp::Add, false, _) => "llvm.vector.reduce.add",
            (ReduceOp::Mul, false, _) => "llvm.vector.reduce.mul",
            (ReduceOp::Min, false, true) => "llvm.vector.reduce.umin",
            (ReduceOp::Max, false, true) => "llvm.vector.reduce.umax",
            (ReduceOp::Min, false, false) => "llvm.vector.reduce.smin",
            (ReduceOp::Max, false, false) => "llvm.vector.reduce.smax",
            _ => unreachable!("float sums handled above"),
        };
        let f = self.intrinsic(name, &[a.v.get_type()])?;
        Ok(Val::new(ty, self.call_value(f, &[a.v])?))
    }

    /// Halves folded together until one lane is left (odd counts fold the
    /// last lane in at the end).
    fn tree_reduce(&mut self, op: BinOp, a: Val<'ctx>) -> R<Val<'ctx>> {
        let mut v = a;
        let mut tail: Option<Val<'ctx>> = None;
        while v.ty.lanes > 1 {
            let n = v.ty.lanes;
            if n % 2 == 1 {
                let last = self.extract(v, n - 1)?;
                tail = Some(match tail {
                    Some(t) => self.binary(op, t, last)?,
                    None => last,
                });
                v = self.take_lanes(v, 0, n - 1)?;
                continue;
            }
            let lo = self.take_lanes(v, 0, n / 2)?;
            let hi = self.take_lanes(v, n / 2, n / 2)?;
            v = self.binary(op, lo, hi)?;
        }
        match tail {
            Some(t) => self.binary(op, v, t),
            None => Ok(v),
        }
    }

    /// Lanes `from .. from + n` of `a`.
    fn take_lanes(&mut self, a: Val<'ctx>, from: u16, n: u16) -> R<Val<'ctx>> {
        if n == 1 {
            return self.extract(a, from);
        }
        let v = self.lanes_of(a.v.into_vector_value(), from, n)?;
        Ok(Val::new(a.ty.with_lanes(n), v))
    }

    /// Calls the C function `name` with scalar arguments, lane by lane for
    /// vectors (scalar arguments repeat for every lane).
    pub(super) fn call(
        &mut self,
        name: &str,
        args: &[Expr],
        ret: Option<Ty>,
    ) -> R<Option<Val<'ctx>>> {
        let vals = args
            .iter()
            .map(|a| self.expr(a))
            .collect::<R<Vec<Val<'ctx>>>>()?;
        let arg_lanes: Vec<u16> = vals.iter().map(|v| v.ty.lanes).collect();
        let lanes = crate::native::call_lanes(&arg_lanes, ret)
            .ok_or_else(|| self.invalid(format!("call of `{name}` with mixed lane counts")))?;
        // C passes integers narrower than `int` widened; bool is a byte.
        let c_type = |d: DType| -> Option<BasicTypeEnum<'ctx>> {
            match d {
                DType::Bool | DType::I8 | DType::U8 | DType::I16 | DType::U16 => {
                    Some(self.c.i32_type().into())
                }
                _ => elem_type(self.c, d),
            }
        };
        let mut params: Vec<BasicMetadataTypeEnum> = Vec::new();
        for v in &vals {
            let t = c_type(v.ty.elem)
                .ok_or_else(|| self.unsupported(format!("call of `{name}` with {}", v.ty.elem)))?;
            params.push(t.into());
        }
        let fn_type = match ret {
            Some(t) => c_type(t.elem)
                .ok_or_else(|| self.unsupported(format!("call of `{name}` returning {}", t.elem)))?
                .fn_type(&params, false),
            None => self.c.void_type().fn_type(&params, false),
        };
        let f = self.import(name, fn_type);
        if f.get_type() != fn_type {
            return Err(self.invalid(format!(
                "`{name}` is called with two different signatures in one module"
            )));
        }
        let mut out = Vec::new();
        for lane in 0..lanes {
            let mut xs: Vec<BasicMetadataValueEnum> = Vec::new();
            for v in &vals {
                let x = if v.ty.lanes == 1 {
                    *v
                } else {
                    self.extract(*v, lane)?
                };
                let d = x.ty.elem;
                let x = if c_type(d) != elem_type(self.c, d) {
                    let o = if is_unsigned(d) {
                        inkwell::values::InstructionOpcode::ZExt
                    } else {
                        inkwell::values::InstructionOpcode::SExt
                    };
                    self.b.build_cast(o, x.v, self.c.i32_type(), "")?
                } else {
                    x.v
                };
                xs.push(x.into());
            }
            let r = self.b.build_direct_call(f, &xs, "")?;
            if let Some(t) = ret {
                let ValueKind::Basic(v) = r.try_as_basic_value() else {
                    return Err(self.invalid(format!("`{name}` returns nothing")));
                };
                let v = match t.elem {
                    // C returns any nonzero int for true.
                    DType::Bool => {
                        self.icmp(IntPredicate::NE, v, self.c.i32_type().const_zero().into())?
                    }
                    DType::I8 | DType::U8 | DType::I16 | DType::U16 => {
                        let et = elem_type(self.c, t.elem).expect("integer type");
                        self.b
                            .build_cast(inkwell::values::InstructionOpcode::Trunc, v, et, "")?
                    }
                    _ => v,
                };
                out.push(v);
            }
        }
        let Some(t) = ret else {
            return Ok(None);
        };
        if lanes == 1 {
            return Ok(Some(Val::new(t, out[0])));
        }
        let vt = self.ty(t)?.into_vector_type();
        let mut v = vt.get_poison();
        for (i, x) in out.into_iter().enumerate() {
            let idx = self.c.i32_type().const_int(i as u64, false);
            v = self.b.build_insert_element(v, x, idx, "")?;
        }
        Ok(Some(Val::new(t, v)))
    }
}

/// The smallest and largest value of an integer dtype, as f64 (exact for
/// every width up to 53 bits; 64-bit bounds are powers of two or their
/// neighbours, handled by [`float_at_most`]).
fn int_range(d: DType) -> (f64, f64) {
    use DType::*;
    match d {
        I8 => (i8::MIN as f64, i8::MAX as f64),
        U8 => (0.0, u8::MAX as f64),
        I16 => (i16::MIN as f64, i16::MAX as f64),
        U16 => (0.0, u16::MAX as f64),
        I32 => (i32::MIN as f64, i32::MAX as f64),
        U32 => (0.0, u32::MAX as f64),
        I64 => (i64::MIN as f64, i64::MAX as f64),
        _ => (0.0, u64::MAX as f64),
    }
}

/// The float of dtype `d` nearest `v` on the safe side: for an upper bound
/// (`upper`), the largest one that does not exceed the integer bound `v`
/// (`2^31 - 1` is not an f32: `2^31 - 128` is); for a lower bound (always a
/// power of two or zero), `v` itself.
fn float_at_most(d: DType, v: f64, upper: bool) -> f64 {
    if !upper {
        return v;
    }
    if d == DType::F32 {
        let mut f = v as f32;
        if f as f64 > v {
            f = f32::from_bits(f.to_bits() - 1);
        }
        f as f64
    } else {
        let mut f = v;
        // u64::MAX and i64::MAX round up to a power of two as f64.
        if f >= 2f64.powi(63) {
            f = f64::from_bits(f.to_bits() - 1);
        }
        f
    }
}

/// Zero of the type of `x`.
fn tt_zero_like(x: BasicValueEnum<'_>) -> BasicValueEnum<'_> {
    x.get_type().as_basic_type_enum().const_zero()
}

impl<'ctx> crate::native::ValueOps for FnLower<'_, 'ctx> {
    type V = Val<'ctx>;
    type E = super::CodegenError;
    fn ty_of(v: &Val<'ctx>) -> Ty {
        v.ty
    }
    fn constant_of(&mut self, ty: Ty, v: f64) -> R<Val<'ctx>> {
        let s = super::value::float_const(self.c, ty.elem, v);
        self.constant(ty, s)
    }
    fn unary(&mut self, op: UnOp, a: Val<'ctx>) -> R<Val<'ctx>> {
        FnLower::unary(self, op, a)
    }
    fn binary(&mut self, op: BinOp, a: Val<'ctx>, b: Val<'ctx>) -> R<Val<'ctx>> {
        FnLower::binary(self, op, a, b)
    }
    fn select(&mut self, c: Val<'ctx>, a: Val<'ctx>, b: Val<'ctx>) -> R<Val<'ctx>> {
        FnLower::select(self, c, a, b)
    }
    fn bitcast(&mut self, to: DType, a: Val<'ctx>) -> R<Val<'ctx>> {
        FnLower::bitcast(self, to, a)
    }
}
