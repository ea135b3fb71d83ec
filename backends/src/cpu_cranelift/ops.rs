//! Lowering of expressions: arithmetic, comparisons, conversions, lane
//! operations and calls. Each operation has a native rule for scalars and
//! 128-bit vectors where Cranelift has one, and falls back to lanes.

use super::abi;
use super::lower::{FnLower, R};
use super::value::{Class, Shape, Val, class, little, shape_of, vec_of};
use cranelift_codegen::ir::{
    InstBuilder, Type, Value,
    condcodes::{FloatCC, IntCC},
    types,
};
use saturn_ir::DType;
use saturn_ir::kernel::{BinOp, Expr, ReduceOp, Ty, UnOp};

impl FnLower<'_> {
    pub(super) fn expr(&mut self, e: &Expr) -> R<Val> {
        match e {
            Expr::Var(v) => self.read_var(*v),
            Expr::Dim(i) => match self.dims.get(*i as usize) {
                Some(&d) => Ok(Val::scalar(Ty::INDEX, d)),
                None => Err(self.invalid(format!("dim {i} is not declared"))),
            },
            Expr::Int(v, ty) => {
                self.check_ty(*ty)?;
                self.constant(*ty, *v, 0.0, false)
            }
            Expr::Float(v, ty) => {
                self.check_ty(*ty)?;
                self.constant(*ty, 0, *v, true)
            }
            Expr::Load {
                buf,
                index,
                lanes,
                stride,
                mask,
            } => self.load(*buf, index, *lanes, *stride, mask.as_deref()),
            Expr::Unary(op, a) => {
                let a = self.expr(a)?;
                self.unary(*op, a)
            }
            Expr::Binary(op, a, b) => {
                let a = self.expr(a)?;
                let b = self.expr(b)?;
                self.binary(*op, a, b)
            }
            Expr::MulAdd(a, b, c) => {
                let a = self.expr(a)?;
                let b = self.expr(b)?;
                let c = self.expr(c)?;
                self.mul_add(a, b, c)
            }
            Expr::Select(c, a, b) => {
                let c = self.expr(c)?;
                let a = self.expr(a)?;
                let b = self.expr(b)?;
                self.select(c, a, b)
            }
            Expr::Cast(to, a) => {
                let a = self.expr(a)?;
                self.cast(*to, a)
            }
            Expr::Bitcast(to, a) => {
                let a = self.expr(a)?;
                self.bitcast(*to, a)
            }
            Expr::Splat(n, a) => {
                let a = self.expr(a)?;
                if a.ty.lanes != 1 {
                    return Err(self.invalid("splat of a vector"));
                }
                let ty = a.ty.with_lanes(*n);
                self.check_ty(ty)?;
                Ok(self.splat(ty, a.single()))
            }
            Expr::Extract(a, i) => {
                let a = self.expr(a)?;
                if *i >= a.ty.lanes {
                    return Err(
                        self.invalid(format!("lane {i} of a vector of {} lanes", a.ty.lanes))
                    );
                }
                Ok(self.extract(&a, *i))
            }
            Expr::Shuffle(a, b, idx) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                let n = a.ty.lanes;
                if a.ty != b.ty || idx.is_empty() || idx.iter().any(|&i| i >= 2 * n) {
                    return Err(self.invalid(format!("shuffle {idx:?} of {n} lanes")));
                }
                let ty = a.ty.with_lanes(idx.len() as u16);
                self.check_ty(ty)?;
                // Lane by lane: 128-bit vectors hold few lanes, and kernels
                // shuffle where the vectors are wide (the LLVM backend).
                let (la, lb) = (self.lanes(&a), self.lanes(&b));
                let picks = saturn_ir::kernel::shuffle_lanes(&la, &lb, idx);
                Ok(self.assemble(ty, picks, shape_of(ty)))
            }
            Expr::Reduce(op, a) => {
                let a = self.expr(a)?;
                self.reduce(*op, a)
            }
            Expr::Call(name, args, ty) => {
                self.check_ty(*ty)?;
                match self.call(name, args, Some(*ty))? {
                    Some(v) => Ok(v),
                    None => Err(self.invalid(format!("call of `{name}` has no result"))),
                }
            }
        }
    }

    /// Applies `f` to the lanes of `args` one lane at a time; the result
    /// of type `ty` is assembled in its canonical shape.
    fn lanewise(
        &mut self,
        ty: Ty,
        args: &[&Val],
        mut f: impl FnMut(&mut Self, &[Value]) -> R<Value>,
    ) -> R<Val> {
        let lanes: Vec<Vec<Value>> = args.iter().map(|a| self.lanes(a)).collect();
        let mut out = Vec::with_capacity(ty.lanes as usize);
        for i in 0..ty.lanes as usize {
            let xs: Vec<Value> = lanes.iter().map(|l| l[i]).collect();
            out.push(f(self, &xs)?);
        }
        let shape = shape_of(ty);
        Ok(self.assemble(ty, out, shape))
    }

    /// Applies `f` part by part to values of one shape; `f` returns `None`
    /// where a vector part has no native instruction, and then the whole
    /// operation goes lane by lane through `f` on scalars.
    fn partwise(
        &mut self,
        ty: Ty,
        args: &[&Val],
        mut f: impl FnMut(&mut Self, &[Value]) -> R<Option<Value>>,
    ) -> R<Val> {
        let shape = args[0].shape;
        if let Shape::Simd(..) = shape {
            let mut parts = Vec::new();
            let mut native = true;
            for i in 0..args[0].parts.len() {
                let xs: Vec<Value> = args.iter().map(|a| a.parts[i]).collect();
                match f(self, &xs)? {
                    Some(v) => parts.push(v),
                    None => {
                        native = false;
                        break;
                    }
                }
            }
            if native {
                let vty = self.type_of(parts[0]);
                return Ok(Val::new(ty, Shape::Simd(vty, parts.len() as u16), parts));
            }
        }
        let lanes: Vec<Vec<Value>> = args.iter().map(|a| self.lanes(a)).collect();
        let mut out = Vec::with_capacity(ty.lanes as usize);
        for i in 0..ty.lanes as usize {
            let xs: Vec<Value> = lanes.iter().map(|l| l[i]).collect();
            match f(self, &xs)? {
                Some(v) => out.push(v),
                None => return Err(self.unsupported("a scalar operation")),
            }
        }
        let shape = match shape {
            Shape::Scalar => Shape::Scalar,
            _ => shape_of(ty),
        };
        Ok(self.assemble(ty, out, shape))
    }

    fn unary(&mut self, op: UnOp, a: Val) -> R<Val> {
        let c = class(a.ty.elem);
        let bad = |me: &Self| me.unsupported(format!("{op:?} on {}", a.ty.elem));
        match (op, c) {
            (
                UnOp::Floor | UnOp::Ceil | UnOp::Round | UnOp::Trunc,
                Class::Signed | Class::Unsigned | Class::Bool,
            )
            | (UnOp::Abs, Class::Unsigned | Class::Bool) => return Ok(a),
            (UnOp::Neg | UnOp::Sqrt, Class::Bool)
            | (UnOp::Sqrt, Class::Signed | Class::Unsigned)
            | (UnOp::Not, Class::Float) => return Err(bad(self)),
            _ => {}
        }
        let ty = a.ty;
        self.partwise(ty, &[&a], |me, x| {
            let x = x[0];
            Ok(Some(match (op, c) {
                (UnOp::Neg, Class::Float) => me.fb.ins().fneg(x),
                (UnOp::Neg, _) => me.fb.ins().ineg(x),
                (UnOp::Abs, Class::Float) => me.fb.ins().fabs(x),
                (UnOp::Abs, _) => me.fb.ins().iabs(x),
                (UnOp::Sqrt, _) => me.fb.ins().sqrt(x),
                (UnOp::Floor, _) => me.fb.ins().floor(x),
                (UnOp::Ceil, _) => me.fb.ins().ceil(x),
                (UnOp::Round, _) => me.fb.ins().nearest(x),
                (UnOp::Trunc, _) => me.fb.ins().trunc(x),
                (UnOp::Not, Class::Bool) if !me.type_of(x).is_vector() => {
                    let one = me.iconst(types::I8, 1);
                    me.fb.ins().bxor(x, one)
                }
                (UnOp::Not, _) => me.fb.ins().bnot(x),
            }))
        })
    }

    pub(super) fn binary(&mut self, op: BinOp, a: Val, b: Val) -> R<Val> {
        if a.ty != b.ty {
            return Err(self.invalid(format!(
                "{op:?} of {}x{} and {}x{}",
                a.ty.elem, a.ty.lanes, b.ty.elem, b.ty.lanes
            )));
        }
        let c = class(a.ty.elem);
        if op == BinOp::Ldexp && c == Class::Float {
            return crate::native::ldexp_expanded(self, a, b);
        }
        let b = if c == Class::Bool {
            self.reshape(b, a.shape)
        } else {
            b
        };
        use BinOp::*;
        let ok = match c {
            Class::Float => !matches!(op, And | Or | Xor | Shl | Shr),
            Class::Signed | Class::Unsigned => op != Ldexp,
            Class::Bool => matches!(op, And | Or | Xor | Min | Max) || op.is_compare(),
        };
        if !ok {
            return Err(self.unsupported(format!("{op:?} on {}", a.ty.elem)));
        }
        let ty = if op.is_compare() {
            a.ty.with_elem(DType::Bool)
        } else {
            a.ty
        };
        // Vector shifts take one scalar amount for all lanes.
        if matches!(op, Shl | Shr)
            && let (Shape::Simd(..), Some(amount)) = (a.shape, b.uniform)
        {
            let parts = a
                .parts
                .iter()
                .map(|&x| match (op, c) {
                    (Shl, _) => self.fb.ins().ishl(x, amount),
                    (_, Class::Signed) => self.fb.ins().sshr(x, amount),
                    _ => self.fb.ins().ushr(x, amount),
                })
                .collect();
            return Ok(Val::new(ty, a.shape, parts));
        }
        if op == Rem && c == Class::Float {
            let f = if a.ty.elem == DType::F32 {
                "fmodf"
            } else {
                "fmod"
            };
            let d = a.ty.elem;
            return self.lanewise(ty, &[&a, &b], |me, x| me.call_c(f, &[d, d], d, x));
        }
        self.partwise(ty, &[&a, &b], |me, x| me.binary_native(op, c, x[0], x[1]))
    }

    /// `op` on two Cranelift values of one type (scalar or vector), or
    /// `None` when a vector has no native instruction for it.
    fn binary_native(&mut self, op: BinOp, c: Class, x: Value, y: Value) -> R<Option<Value>> {
        use BinOp::*;
        let t = self.type_of(x);
        let vector = t.is_vector();
        let signed = c == Class::Signed;
        let float = c == Class::Float;
        if vector
            && (matches!(op, Div | Rem | Shl | Shr) || (op == Mul && t.lane_bits() == 8))
            && !float
        {
            return Ok(None);
        }
        let v = match op {
            Add if float => self.fb.ins().fadd(x, y),
            Add => self.fb.ins().iadd(x, y),
            Sub if float => self.fb.ins().fsub(x, y),
            Sub => self.fb.ins().isub(x, y),
            Mul if float => self.fb.ins().fmul(x, y),
            Mul => self.fb.ins().imul(x, y),
            Div if float => self.fb.ins().fdiv(x, y),
            Div => return Ok(Some(self.int_div(x, y, signed, false))),
            Rem => return Ok(Some(self.int_div(x, y, signed, true))),
            Min if float => self.fb.ins().fmin(x, y),
            Max if float => self.fb.ins().fmax(x, y),
            Min if signed => self.fb.ins().smin(x, y),
            Max if signed => self.fb.ins().smax(x, y),
            Min => self.fb.ins().umin(x, y),
            Max => self.fb.ins().umax(x, y),
            And => self.fb.ins().band(x, y),
            Or => self.fb.ins().bor(x, y),
            Xor => self.fb.ins().bxor(x, y),
            Shl => self.fb.ins().ishl(x, y),
            Shr if signed => self.fb.ins().sshr(x, y),
            Shr => self.fb.ins().ushr(x, y),
            Ldexp => return Err(self.invalid("ldexp reached the native rules unexpanded")),
            Eq | Ne | Lt | Le | Gt | Ge if float => {
                let cc = match op {
                    Eq => FloatCC::Equal,
                    Ne => FloatCC::NotEqual,
                    Lt => FloatCC::LessThan,
                    Le => FloatCC::LessThanOrEqual,
                    Gt => FloatCC::GreaterThan,
                    _ => FloatCC::GreaterThanOrEqual,
                };
                self.fb.ins().fcmp(cc, x, y)
            }
            Eq | Ne | Lt | Le | Gt | Ge => {
                let cc = match (op, signed) {
                    (Eq, _) => IntCC::Equal,
                    (Ne, _) => IntCC::NotEqual,
                    (Lt, true) => IntCC::SignedLessThan,
                    (Le, true) => IntCC::SignedLessThanOrEqual,
                    (Gt, true) => IntCC::SignedGreaterThan,
                    (_, true) => IntCC::SignedGreaterThanOrEqual,
                    (Lt, false) => IntCC::UnsignedLessThan,
                    (Le, false) => IntCC::UnsignedLessThanOrEqual,
                    (Gt, false) => IntCC::UnsignedGreaterThan,
                    (_, false) => IntCC::UnsignedGreaterThanOrEqual,
                };
                self.fb.ins().icmp(cc, x, y)
            }
        };
        Ok(Some(v))
    }

    /// Scalar integer division or remainder truncating toward zero that
    /// never traps: by zero gives 0, `MIN / -1` wraps to `MIN`.
    fn int_div(&mut self, x: Value, y: Value, signed: bool, rem: bool) -> Value {
        let t = self.type_of(x);
        let zero = self.iconst(t, 0);
        let one = self.iconst(t, 1);
        let is_zero = self.fb.ins().icmp(IntCC::Equal, y, zero);
        if !signed {
            let safe = self.fb.ins().select(is_zero, one, y);
            return if rem {
                self.fb.ins().urem(x, safe)
            } else {
                let q = self.fb.ins().udiv(x, safe);
                self.fb.ins().select(is_zero, zero, q)
            };
        }
        let minus_one = self.iconst(t, -1);
        let is_m1 = self.fb.ins().icmp(IntCC::Equal, y, minus_one);
        let bad = self.fb.ins().bor(is_zero, is_m1);
        // x % 1 == 0 is right for both divisors 0 and -1.
        let safe = self.fb.ins().select(bad, one, y);
        if rem {
            return self.fb.ins().srem(x, safe);
        }
        let q = self.fb.ins().sdiv(x, safe);
        let neg = self.fb.ins().ineg(x);
        let q = self.fb.ins().select(is_m1, neg, q);
        self.fb.ins().select(is_zero, zero, q)
    }

    fn mul_add(&mut self, a: Val, b: Val, c: Val) -> R<Val> {
        if a.ty != b.ty || a.ty != c.ty {
            return Err(self.invalid("mul_add operands of different types"));
        }
        if class(a.ty.elem) == Class::Float && self.fma {
            let ty = a.ty;
            return self.partwise(ty, &[&a, &b, &c], |me, x| {
                Ok(Some(me.fb.ins().fma(x[0], x[1], x[2])))
            });
        }
        let p = self.binary(BinOp::Mul, a, b)?;
        self.binary(BinOp::Add, p, c)
    }

    fn select(&mut self, c: Val, a: Val, b: Val) -> R<Val> {
        if a.ty != b.ty || c.ty != a.ty.with_elem(DType::Bool) {
            return Err(self.invalid(format!(
                "select on {}x{} between {}x{} and {}x{}",
                c.ty.elem, c.ty.lanes, a.ty.elem, a.ty.lanes, b.ty.elem, b.ty.lanes
            )));
        }
        let b = self.reshape(b, a.shape);
        match a.shape {
            Shape::Simd(vty, n) => {
                let c = self.reshape(c, Shape::Simd(vty.as_int(), n));
                let parts = (0..n as usize)
                    .map(|i| {
                        let m = if vty.lane_type().is_float() {
                            self.fb.ins().bitcast(vty, little(), c.parts[i])
                        } else {
                            c.parts[i]
                        };
                        self.fb.ins().bitselect(m, a.parts[i], b.parts[i])
                    })
                    .collect();
                Ok(Val::new(a.ty, a.shape, parts))
            }
            _ => {
                let c = self.reshape(c, a.shape);
                let parts = (0..a.parts.len())
                    .map(|i| self.fb.ins().select(c.parts[i], a.parts[i], b.parts[i]))
                    .collect();
                Ok(Val::new(a.ty, a.shape, parts))
            }
        }
    }

    pub(super) fn extract(&mut self, a: &Val, i: u16) -> Val {
        let ty = a.ty.with_lanes(1);
        let v = match a.shape {
            Shape::Scalar => a.parts[0],
            Shape::Lanes(_) => a.parts[i as usize],
            Shape::Simd(vty, _) => {
                let n = vty.lane_count() as u16;
                let x = self
                    .fb
                    .ins()
                    .extractlane(a.parts[(i / n) as usize], (i % n) as u8);
                if a.ty.elem == DType::Bool {
                    self.mask_to_bool(x)
                } else {
                    x
                }
            }
        };
        Val::scalar(ty, v)
    }

    fn reduce(&mut self, op: ReduceOp, a: Val) -> R<Val> {
        let bop = match op {
            ReduceOp::Add => BinOp::Add,
            ReduceOp::Mul => BinOp::Mul,
            ReduceOp::Min => BinOp::Min,
            ReduceOp::Max => BinOp::Max,
        };
        let c = class(a.ty.elem);
        if c == Class::Bool && matches!(op, ReduceOp::Add | ReduceOp::Mul) {
            return Err(self.unsupported(format!("{op:?} reduction of bool")));
        }
        // Fold the native parts onto the first, then its lanes in order.
        let mut a = a;
        if let Shape::Simd(vty, n) = a.shape
            && n > 1
        {
            let mut acc = a.parts[0];
            let mut native = true;
            for i in 1..n as usize {
                match self.binary_native(bop, c, acc, a.parts[i])? {
                    Some(v) => acc = v,
                    None => {
                        native = false;
                        break;
                    }
                }
            }
            if native {
                let lanes = vty.lane_count() as u16;
                a = Val::new(a.ty.with_lanes(lanes), Shape::Simd(vty, 1), vec![acc]);
            }
        }
        let lanes = self.lanes(&a);
        let mut acc = lanes[0];
        for &x in &lanes[1..] {
            acc = match self.binary_native(bop, c, acc, x)? {
                Some(v) => v,
                None => return Err(self.unsupported(format!("{op:?} reduction"))),
            };
        }
        Ok(Val::scalar(a.ty.with_lanes(1), acc))
    }

    /// Calls the C function `name`: for effect (`ret` None) or for a value
    /// of type `ret`; vector arguments go lane by lane.
    pub(super) fn call(&mut self, name: &str, args: &[Expr], ret: Option<Ty>) -> R<Option<Val>> {
        let vals = args.iter().map(|a| self.expr(a)).collect::<R<Vec<Val>>>()?;
        let arg_lanes: Vec<u16> = vals.iter().map(|v| v.ty.lanes).collect();
        let lanes = crate::native::call_lanes(&arg_lanes, ret)
            .ok_or_else(|| self.invalid(format!("call of `{name}` with mixed lane counts")))?;
        let arg_types: Vec<DType> = vals.iter().map(|v| v.ty.elem).collect();
        let sig = abi::call_sig(self.m, &arg_types, ret.map(|t| t.elem))
            .ok_or_else(|| self.unsupported(format!("call of `{name}` with these types")))?;
        let f = self.import(name, &sig)?;
        let per_arg: Vec<Vec<Value>> = vals.iter().map(|v| self.lanes(v)).collect();
        let mut out = Vec::new();
        for i in 0..lanes as usize {
            let xs: Vec<Value> = per_arg
                .iter()
                .map(|l| if l.len() == 1 { l[0] } else { l[i] })
                .collect();
            let call = self.fb.ins().call(f, &xs);
            if ret.is_some() {
                out.push(self.fb.inst_results(call)[0]);
            }
        }
        Ok(match ret {
            Some(ty) => {
                let out = if ty.elem == DType::Bool {
                    // C returns any nonzero byte for true.
                    out.into_iter().map(|x| self.nonzero(x)).collect()
                } else {
                    out
                };
                let shape = shape_of(ty);
                Some(self.assemble(ty, out, shape))
            }
            None => None,
        })
    }

    /// A scalar call of a C function on scalar values.
    fn call_c(&mut self, name: &str, args: &[DType], ret: DType, xs: &[Value]) -> R<Value> {
        let sig = abi::call_sig(self.m, args, Some(ret))
            .ok_or_else(|| self.unsupported(format!("call of `{name}`")))?;
        let f = self.import(name, &sig)?;
        let call = self.fb.ins().call(f, xs);
        Ok(self.fb.inst_results(call)[0])
    }

    /// An integer scalar to bool (`x != 0`).
    fn nonzero(&mut self, x: Value) -> Value {
        let t = self.type_of(x);
        let zero = self.iconst(t, 0);
        self.fb.ins().icmp(IntCC::NotEqual, x, zero)
    }

    pub(super) fn cast(&mut self, to: DType, a: Val) -> R<Val> {
        let ty = a.ty.with_elem(to);
        self.check_ty(ty)?;
        let from = a.ty.elem;
        if from == to {
            return Ok(a);
        }
        if let Shape::Simd(..) = a.shape
            && let Some(v) = self.cast_simd(from, to, &a)?
        {
            return Ok(v);
        }
        let shape = match a.shape {
            Shape::Scalar => Shape::Scalar,
            _ => shape_of(ty),
        };
        let lanes = self.lanes(&a);
        let out = lanes
            .into_iter()
            .map(|x| self.cast_scalar(from, to, x))
            .collect::<R<Vec<_>>>()?;
        Ok(self.assemble(ty, out, shape))
    }

    fn cast_scalar(&mut self, from: DType, to: DType, x: Value) -> R<Value> {
        let ft = self.scalar_ty(from)?;
        let tt = self.scalar_ty(to)?;
        let (fc, tc) = (class(from), class(to));
        Ok(match (fc, tc) {
            _ if from == to => x,
            (Class::Float, Class::Bool) => {
                let zero = self.fconst(ft, 0.0);
                self.fb.ins().fcmp(FloatCC::NotEqual, x, zero)
            }
            (_, Class::Bool) => self.nonzero(x),
            (Class::Bool, Class::Float) => {
                let w = self.fb.ins().uextend(types::I32, x);
                self.fb.ins().fcvt_from_sint(tt, w)
            }
            (Class::Float, Class::Float) => {
                if tt.bits() > ft.bits() {
                    self.fb.ins().fpromote(tt, x)
                } else {
                    self.fb.ins().fdemote(tt, x)
                }
            }
            (Class::Float, _) => {
                let signed = tc == Class::Signed;
                if tt.bits() >= 32 {
                    if signed {
                        self.fb.ins().fcvt_to_sint_sat(tt, x)
                    } else {
                        self.fb.ins().fcvt_to_uint_sat(tt, x)
                    }
                } else {
                    // Saturate in i32, clamp to the narrow range, wrap.
                    let bits = tt.bits();
                    let (lo, hi) = if signed {
                        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
                    } else {
                        (0, (1i64 << bits) - 1)
                    };
                    let w = self.fb.ins().fcvt_to_sint_sat(types::I32, x);
                    let lo = self.iconst(types::I32, lo);
                    let hi = self.iconst(types::I32, hi);
                    let w = self.fb.ins().smax(w, lo);
                    let w = self.fb.ins().smin(w, hi);
                    self.fb.ins().ireduce(tt, w)
                }
            }
            (_, Class::Float) => {
                let signed = fc == Class::Signed;
                if ft.bits() < 32 {
                    let w = if signed {
                        self.fb.ins().sextend(types::I32, x)
                    } else {
                        self.fb.ins().uextend(types::I32, x)
                    };
                    self.fb.ins().fcvt_from_sint(tt, w)
                } else if signed {
                    self.fb.ins().fcvt_from_sint(tt, x)
                } else {
                    self.fb.ins().fcvt_from_uint(tt, x)
                }
            }
            _ => {
                // Integer (or bool) to integer: wrap or extend.
                if tt.bits() < ft.bits() {
                    self.fb.ins().ireduce(tt, x)
                } else if tt.bits() == ft.bits() {
                    x
                } else if fc == Class::Signed {
                    self.fb.ins().sextend(tt, x)
                } else {
                    self.fb.ins().uextend(tt, x)
                }
            }
        })
    }

    /// Native vector conversions; `None` where lanes are cheaper or the
    /// target has nothing better.
    fn cast_simd(&mut self, from: DType, to: DType, a: &Val) -> R<Option<Val>> {
        let Shape::Simd(vty, _) = a.shape else {
            return Ok(None);
        };
        let ty = a.ty.with_elem(to);
        let (fc, tc) = (class(from), class(to));
        if tc == Class::Bool {
            // x != 0, as masks of the source width.
            let lane = vty.lane_type();
            let zero = if fc == Class::Float {
                self.fconst(lane, 0.0)
            } else {
                self.iconst(lane, 0)
            };
            let zero = self.splat_native(vty, zero);
            let parts = a
                .parts
                .iter()
                .map(|&p| {
                    if fc == Class::Float {
                        self.fb.ins().fcmp(FloatCC::NotEqual, p, zero)
                    } else {
                        self.fb.ins().icmp(IntCC::NotEqual, p, zero)
                    }
                })
                .collect::<Vec<_>>();
            let mt = vty.as_int();
            return Ok(Some(Val::new(
                ty,
                Shape::Simd(mt, parts.len() as u16),
                parts,
            )));
        }
        let target = shape_of(ty);
        let Shape::Simd(tvty, tn) = target else {
            return Ok(None);
        };
        if fc == Class::Bool {
            // Masks of the target width, and-ed with the bits of 1.
            let m = self.reshape(a.clone(), Shape::Simd(tvty.as_int(), tn));
            let lane = tvty.lane_type();
            let one_bits = match tc {
                Class::Float if lane == types::F32 => 1f32.to_bits() as i64,
                Class::Float => 1f64.to_bits() as i64,
                _ => 1,
            };
            let one = self.iconst(lane.as_int(), one_bits);
            let one = self.splat_native(tvty.as_int(), one);
            let parts = m
                .parts
                .iter()
                .map(|&p| {
                    let v = self.fb.ins().band(p, one);
                    if tc == Class::Float {
                        self.fb.ins().bitcast(tvty, little(), v)
                    } else {
                        v
                    }
                })
                .collect();
            return Ok(Some(Val::new(ty, target, parts)));
        }
        let fbits = vty.lane_bits();
        let tbits = tvty.lane_bits();
        let parts = match (fc, tc) {
            (Class::Float, Class::Float) => {
                if tbits > fbits {
                    self.promote_parts(&a.parts)
                } else {
                    self.demote_parts(&a.parts)
                }
            }
            (Class::Signed | Class::Unsigned, Class::Signed | Class::Unsigned) => {
                self.resize_ints(a.parts.clone(), vty, tvty, fc == Class::Signed)
            }
            (Class::Signed | Class::Unsigned, Class::Float) => {
                if fbits > tbits {
                    return Ok(None);
                }
                let signed = fc == Class::Signed;
                let wide = self.resize_ints(a.parts.clone(), vty, tvty.as_int(), signed);
                // Narrow unsigned values widened to the float width are
                // non-negative in the signed sense.
                let unsigned = !signed && fbits == tbits;
                wide.into_iter()
                    .map(|p| {
                        if unsigned {
                            self.fb.ins().fcvt_from_uint(tvty, p)
                        } else {
                            self.fb.ins().fcvt_from_sint(tvty, p)
                        }
                    })
                    .collect()
            }
            (Class::Float, Class::Signed | Class::Unsigned) => {
                if vty != types::F32X4 || tbits > 32 {
                    return Ok(None);
                }
                let signed = tc == Class::Signed;
                let sat: Vec<Value> = a
                    .parts
                    .iter()
                    .map(|&p| {
                        if signed || tbits < 32 {
                            self.fb.ins().fcvt_to_sint_sat(types::I32X4, p)
                        } else {
                            self.fb.ins().fcvt_to_uint_sat(types::I32X4, p)
                        }
                    })
                    .collect();
                if tbits == 32 {
                    sat
                } else {
                    let (lo, hi) = if signed {
                        (-(1i64 << (tbits - 1)), (1i64 << (tbits - 1)) - 1)
                    } else {
                        (0, (1i64 << tbits) - 1)
                    };
                    let lo = self.iconst(types::I32, lo);
                    let lo = self.splat_native(types::I32X4, lo);
                    let hi = self.iconst(types::I32, hi);
                    let hi = self.splat_native(types::I32X4, hi);
                    let clamped = sat
                        .into_iter()
                        .map(|p| {
                            let p = self.fb.ins().smax(p, lo);
                            self.fb.ins().smin(p, hi)
                        })
                        .collect();
                    self.resize_ints(clamped, types::I32X4, tvty, true)
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Val::new(ty, target, parts)))
    }

    /// Integer vectors of lane type `from` to lane type `to`: extending
    /// (by the source's signedness) or wrapping, a halving or doubling at
    /// a time.
    fn resize_ints(
        &mut self,
        mut parts: Vec<Value>,
        from: Type,
        to: Type,
        signed: bool,
    ) -> Vec<Value> {
        let mut cur = from;
        while cur.lane_bits() < to.lane_bits() {
            cur = vec_of(Type::int((cur.lane_bits() * 2) as u16).expect("lane"));
            parts = parts
                .into_iter()
                .flat_map(|p| {
                    if signed {
                        [self.fb.ins().swiden_low(p), self.fb.ins().swiden_high(p)]
                    } else {
                        [self.fb.ins().uwiden_low(p), self.fb.ins().uwiden_high(p)]
                    }
                })
                .collect();
        }
        while cur.lane_bits() > to.lane_bits() {
            let half = cur.lane_bits() / 2;
            let next = vec_of(Type::int(half as u16).expect("lane"));
            parts = parts
                .chunks(2)
                .map(|pair| {
                    if half == 32 {
                        return self.take_low_halves(pair[0], pair[1], next);
                    }
                    // Sign-extend the low halves in place, then a
                    // saturating narrowing (SSE2 `packs`) is exact.
                    let k = self.iconst(types::I32, half as i64);
                    let [a, b] = [pair[0], pair[1]].map(|p| {
                        let p = self.fb.ins().ishl(p, k);
                        self.fb.ins().sshr(p, k)
                    });
                    self.fb.ins().snarrow(a, b)
                })
                .collect();
            cur = next;
        }
        parts
    }

    fn promote_parts(&mut self, parts: &[Value]) -> Vec<Value> {
        let high = self.shuffle_mask(&[8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
        let mut out = Vec::new();
        for &p in parts {
            out.push(self.fb.ins().fvpromote_low(p));
            let b = self.fb.ins().bitcast(types::I8X16, little(), p);
            let h = self.fb.ins().shuffle(b, b, high);
            let h = self.fb.ins().bitcast(types::F32X4, little(), h);
            out.push(self.fb.ins().fvpromote_low(h));
        }
        out
    }

    fn demote_parts(&mut self, parts: &[Value]) -> Vec<Value> {
        let join = self.shuffle_mask(&[0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);
        parts
            .chunks(2)
            .map(|pair| {
                let a = self.fb.ins().fvdemote(pair[0]);
                let b = self.fb.ins().fvdemote(pair[1]);
                let a = self.fb.ins().bitcast(types::I8X16, little(), a);
                let b = self.fb.ins().bitcast(types::I8X16, little(), b);
                let r = self.fb.ins().shuffle(a, b, join);
                self.fb.ins().bitcast(types::F32X4, little(), r)
            })
            .collect()
    }

    fn bitcast(&mut self, to: DType, a: Val) -> R<Val> {
        let ty = a.ty.with_elem(to);
        self.check_ty(ty)?;
        let from = a.ty.elem;
        if from.bits() != to.bits() {
            return Err(self.invalid(format!("bitcast of {from} to {to}")));
        }
        if from == DType::Bool || to == DType::Bool {
            return self.cast(to, a);
        }
        let tt = self.scalar_ty(to)?;
        let parts = match a.shape {
            Shape::Simd(vty, _) => {
                let tv = vec_of(tt);
                if tv == vty {
                    a.parts
                } else {
                    a.parts
                        .iter()
                        .map(|&p| self.fb.ins().bitcast(tv, little(), p))
                        .collect()
                }
            }
            _ => a
                .parts
                .iter()
                .map(|&p| {
                    if self.type_of(p) == tt {
                        p
                    } else {
                        self.fb.ins().bitcast(tt, little(), p)
                    }
                })
                .collect(),
        };
        let shape = match a.shape {
            Shape::Simd(_, n) => Shape::Simd(vec_of(tt), n),
            s => s,
        };
        Ok(Val::new(ty, shape, parts))
    }
}

impl crate::native::ValueOps for FnLower<'_> {
    type V = Val;
    type E = super::CodegenError;
    fn ty_of(v: &Val) -> Ty {
        v.ty
    }
    fn constant_of(&mut self, ty: Ty, v: f64) -> R<Val> {
        self.constant(ty, v as i64, v, class(ty.elem) == Class::Float)
    }
    fn unary(&mut self, op: UnOp, a: Val) -> R<Val> {
        FnLower::unary(self, op, a)
    }
    fn binary(&mut self, op: BinOp, a: Val, b: Val) -> R<Val> {
        FnLower::binary(self, op, a, b)
    }
    fn select(&mut self, c: Val, a: Val, b: Val) -> R<Val> {
        FnLower::select(self, c, a, b)
    }
    fn bitcast(&mut self, to: DType, a: Val) -> R<Val> {
        FnLower::bitcast(self, to, a)
    }
}
