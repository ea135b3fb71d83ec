//! Lowering of kernels and statements: the functions of a kernel,
//! variables, loops (serial, unrolled, parallel bodies outlined),
//! conditionals.
//!
//! Every kernel is two functions: the ABI entry `(bufs, dims, rt)`, which
//! loads the buffer addresses and dims and calls the inner function with
//! each buffer as its own `noalias` pointer argument; the inner function
//! holds the body and is inlined into the entry, so LLVM knows that no two
//! buffers overlap. Parallel bodies are split the same way.

use super::abi;
use super::value::{Val, llvm_type};
use super::{CodegenError, PARALLEL_FOR};
use inkwell::basic_block::BasicBlock;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicType, BasicTypeEnum};
use inkwell::values::{BasicValueEnum, FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, IntPredicate};
use saturn_ir::kernel::{Expr, Kernel, LoopKind, Stmt, Ty, VarId, visit_exprs};
use std::collections::{BTreeSet, HashMap};

use super::settings::Machine;

pub(super) type R<T> = Result<T, CodegenError>;

/// Unrolling beyond this many copies is not worth the code size.
const MAX_UNROLL: u32 = 16;

/// The module being built and what every function in it shares.
pub(super) struct ModCx<'ctx> {
    pub c: &'ctx Context,
    pub m: Module<'ctx>,
    pub machine: Machine,
}

/// What a variable stands for while its scope is being lowered.
#[derive(Clone, Copy)]
enum Binding<'ctx> {
    /// `let`, loop counters and outer values captured by a parallel body.
    Let(Val<'ctx>),
    /// `var`: a stack slot (promoted to registers by LLVM).
    Mutable(PointerValue<'ctx>, Ty),
}

/// Lowers the inner function of a kernel or of a parallel body.
pub(super) struct FnLower<'a, 'ctx> {
    pub cx: &'a ModCx<'ctx>,
    pub c: &'ctx Context,
    pub k: &'a Kernel,
    pub b: Builder<'ctx>,
    f: FunctionValue<'ctx>,
    /// The first block: stack slots only, then a branch to the body.
    allocas: Builder<'ctx>,
    alloca_block: BasicBlock<'ctx>,
    start_block: BasicBlock<'ctx>,
    pub bufs: Vec<PointerValue<'ctx>>,
    pub dims: Vec<IntValue<'ctx>>,
    rt: PointerValue<'ctx>,
    env: HashMap<VarId, Binding<'ctx>>,
    /// Variables bound in the blocks being lowered, innermost last.
    scope: Vec<VarId>,
    in_parallel: bool,
    /// The kernel's symbol; outlined bodies are named after it.
    symbol: &'a str,
    outlined: &'a mut u32,
}

/// Declares and defines the functions of kernel `k`, exported as `symbol`.
pub(super) fn define_kernel<'ctx>(cx: &ModCx<'ctx>, k: &Kernel, symbol: &str) -> R<()> {
    let c = cx.c;
    let entry =
        cx.m.add_function(symbol, abi::kernel_type(c), Some(Linkage::External));
    abi::machine_attrs(c, entry, &cx.machine);
    let i64t: BasicTypeEnum = c.i64_type().into();
    let ptr: BasicTypeEnum = c.ptr_type(AddressSpace::default()).into();
    let mut extra = vec![i64t; k.dims.len()];
    extra.push(ptr);
    let inner = cx.m.add_function(
        &format!("{symbol}.inner"),
        abi::inner_type(c, k.bufs.len(), &extra),
        Some(Linkage::Internal),
    );
    abi::machine_attrs(c, inner, &cx.machine);
    abi::inner_attrs(c, inner, &k.bufs);

    // The entry: load the frame, call the inner function.
    let b = c.create_builder();
    b.position_at_end(c.append_basic_block(entry, "entry"));
    let p = entry.get_params();
    let (bufs_arg, dims_arg, rt) = (
        p[0].into_pointer_value(),
        p[1].into_pointer_value(),
        p[2].into_pointer_value(),
    );
    let mut args: Vec<BasicValueEnum> = Vec::new();
    for i in 0..k.bufs.len() {
        let at = unsafe {
            b.build_in_bounds_gep(
                ptr,
                bufs_arg,
                &[c.i64_type().const_int(i as u64, false)],
                "",
            )?
        };
        args.push(b.build_load(ptr, at, &format!("buf{i}"))?);
    }
    for i in 0..k.dims.len() {
        let at = unsafe {
            b.build_in_bounds_gep(
                i64t,
                dims_arg,
                &[c.i64_type().const_int(i as u64, false)],
                "",
            )?
        };
        args.push(b.build_load(i64t, at, &format!("dim{i}"))?);
    }
    args.push(rt.into());
    let args: Vec<_> = args.into_iter().map(Into::into).collect();
    b.build_direct_call(inner, &args, "")?;
    b.build_return(None)?;

    let mut outlined = 0;
    let mut l = FnLower::new(cx, k, inner, symbol, &mut outlined, false);
    l.check_kernel()?;
    let p = inner.get_params();
    l.bufs = (0..k.bufs.len())
        .map(|i| p[i].into_pointer_value())
        .collect();
    l.dims = (0..k.dims.len())
        .map(|i| p[k.bufs.len() + i].into_int_value())
        .collect();
    l.rt = p[k.bufs.len() + k.dims.len()].into_pointer_value();
    l.block(&k.body)?;
    l.finish()
}

impl<'a, 'ctx> FnLower<'a, 'ctx> {
    fn new(
        cx: &'a ModCx<'ctx>,
        k: &'a Kernel,
        f: FunctionValue<'ctx>,
        symbol: &'a str,
        outlined: &'a mut u32,
        in_parallel: bool,
    ) -> Self {
        let c = cx.c;
        let alloca_block = c.append_basic_block(f, "allocas");
        let start_block = c.append_basic_block(f, "start");
        let allocas = c.create_builder();
        allocas.position_at_end(alloca_block);
        let b = c.create_builder();
        b.position_at_end(start_block);
        FnLower {
            cx,
            c,
            k,
            b,
            f,
            allocas,
            alloca_block,
            start_block,
            bufs: Vec::new(),
            dims: Vec::new(),
            rt: c.ptr_type(AddressSpace::default()).const_null(),
            env: HashMap::new(),
            scope: Vec::new(),
            in_parallel,
            symbol,
            outlined,
        }
    }

    /// The function being built.
    #[allow(dead_code)]
    pub(super) fn current_fn(&self) -> FunctionValue<'ctx> {
        self.f
    }

    fn finish(self) -> R<()> {
        self.b.build_return(None)?;
        self.allocas.position_at_end(self.alloca_block);
        self.allocas.build_unconditional_branch(self.start_block)?;
        Ok(())
    }

    pub(super) fn unsupported(&self, what: impl Into<String>) -> CodegenError {
        CodegenError::Unsupported {
            kernel: self.k.name.clone(),
            what: what.into(),
        }
    }

    pub(super) fn invalid(&self, what: impl Into<String>) -> CodegenError {
        CodegenError::Invalid {
            kernel: self.k.name.clone(),
            what: what.into(),
        }
    }

    /// Buffer and variable types the code generator can represent.
    fn check_kernel(&self) -> R<()> {
        crate::native::bad_kernel_type(self.k).map_or(Ok(()), |b| Err(self.bad_type(b)))
    }

    pub(super) fn check_ty(&self, ty: Ty) -> R<()> {
        crate::native::bad_type(ty).map_or(Ok(()), |b| Err(self.bad_type(b)))
    }

    fn bad_type(&self, b: crate::native::BadType) -> CodegenError {
        match b {
            crate::native::BadType::Unsupported(what) => self.unsupported(what),
            crate::native::BadType::Invalid(what) => self.invalid(what),
        }
    }

    /// The LLVM type of `ty` (checked first).
    pub(super) fn ty(&self, ty: Ty) -> R<BasicTypeEnum<'ctx>> {
        self.check_ty(ty)?;
        llvm_type(self.c, ty).ok_or_else(|| self.unsupported(format!("element type {}", ty.elem)))
    }

    /// A stack slot of type `t` in the function's first block.
    fn slot(&self, t: BasicTypeEnum<'ctx>, name: &str) -> R<PointerValue<'ctx>> {
        Ok(self.allocas.build_alloca(t, name)?)
    }

    fn bind(&mut self, var: VarId, b: Binding<'ctx>) -> R<()> {
        if self.env.contains_key(&var) {
            return Err(self.invalid(format!("{} is defined twice", self.var_name(var))));
        }
        self.env.insert(var, b);
        self.scope.push(var);
        Ok(())
    }

    fn var_name(&self, var: VarId) -> String {
        match self.k.vars.get(var.0 as usize) {
            Some(v) => format!("variable %{}", v.name),
            None => format!("variable #{}", var.0),
        }
    }

    fn var_label(&self, var: VarId) -> String {
        self.k
            .vars
            .get(var.0 as usize)
            .map(|v| v.name.clone())
            .unwrap_or_default()
    }

    fn var_ty(&self, var: VarId) -> R<Ty> {
        self.k
            .vars
            .get(var.0 as usize)
            .map(|v| v.ty)
            .ok_or_else(|| self.invalid(format!("variable #{} is not declared", var.0)))
    }

    /// The current value of a variable.
    pub(super) fn read_var(&mut self, var: VarId) -> R<Val<'ctx>> {
        match self.env.get(&var).copied() {
            Some(Binding::Let(v)) => Ok(v),
            Some(Binding::Mutable(slot, ty)) => {
                let t = self.ty(ty)?;
                let v = self.b.build_load(t, slot, &self.var_label(var))?;
                Ok(Val::new(ty, v))
            }
            None => Err(self.invalid(format!("{} is used outside its scope", self.var_name(var)))),
        }
    }

    /// Lowers a block; variables bound in it go out of scope at its end.
    fn block(&mut self, stmts: &[Stmt]) -> R<()> {
        let mark = self.scope.len();
        for s in stmts {
            self.stmt(s)?;
        }
        for v in self.scope.split_off(mark) {
            self.env.remove(&v);
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::Let { var, value } => {
                let v = self.typed_expr(value, self.var_ty(*var)?)?;
                self.bind(*var, Binding::Let(v))
            }
            Stmt::Decl { var, init } => {
                let ty = self.var_ty(*var)?;
                let v = self.typed_expr(init, ty)?;
                let slot = self.slot(self.ty(ty)?, &self.var_label(*var))?;
                self.b.build_store(slot, v.v)?;
                self.bind(*var, Binding::Mutable(slot, ty))
            }
            Stmt::Assign { var, value } => {
                let slot = match self.env.get(var) {
                    Some(Binding::Mutable(slot, _)) => *slot,
                    Some(_) => {
                        return Err(self.invalid(format!(
                            "{} is assigned but not declared with `var`",
                            self.var_name(*var)
                        )));
                    }
                    None => {
                        return Err(self.invalid(format!(
                            "{} is assigned outside its scope",
                            self.var_name(*var)
                        )));
                    }
                };
                let v = self.typed_expr(value, self.var_ty(*var)?)?;
                self.b.build_store(slot, v.v)?;
                Ok(())
            }
            Stmt::Store {
                buf,
                index,
                value,
                stride,
                mask,
            } => self.store(*buf, index, value, *stride, mask.as_ref()),
            Stmt::For {
                var,
                start,
                end,
                step,
                kind,
                body,
            } => {
                if *step <= 0 {
                    return Err(self.invalid(format!("loop step {step} is not positive")));
                }
                let start = self.index_expr(start)?;
                let end = self.index_expr(end)?;
                match kind {
                    LoopKind::Parallel if !self.in_parallel => {
                        self.parallel_loop(*var, start, end, *step, body)
                    }
                    LoopKind::Unroll(n) if *n >= 2 && *n <= MAX_UNROLL => {
                        self.unrolled_loop(*var, start, end, *step, *n, body)
                    }
                    _ => self.serial_loop(*var, start, end, *step, body),
                }
            }
            Stmt::If { cond, then_, else_ } => {
                let c = self.typed_expr(cond, Ty::BOOL)?.v.into_int_value();
                let then_b = self.c.append_basic_block(self.f, "then");
                let else_b = self.c.append_basic_block(self.f, "else");
                let join = self.c.append_basic_block(self.f, "join");
                self.b.build_conditional_branch(c, then_b, else_b)?;
                self.b.position_at_end(then_b);
                self.block(then_)?;
                self.b.build_unconditional_branch(join)?;
                self.b.position_at_end(else_b);
                self.block(else_)?;
                self.b.build_unconditional_branch(join)?;
                self.b.position_at_end(join);
                Ok(())
            }
            Stmt::Call { name, args } => self.call(name, args, None).map(|_| ()),
            Stmt::Prefetch { buf, index } => self.prefetch(*buf, index),
        }
    }

    /// Lowers `e`, which must have type `ty`.
    pub(super) fn typed_expr(&mut self, e: &Expr, ty: Ty) -> R<Val<'ctx>> {
        let v = self.expr(e)?;
        if v.ty != ty {
            return Err(self.invalid(format!(
                "expected a value of type {}x{}, found {}x{}",
                ty.elem, ty.lanes, v.ty.elem, v.ty.lanes
            )));
        }
        Ok(v)
    }

    /// Lowers an index expression (`i64` scalar).
    pub(super) fn index_expr(&mut self, e: &Expr) -> R<IntValue<'ctx>> {
        Ok(self.typed_expr(e, Ty::INDEX)?.v.into_int_value())
    }

    pub(super) fn expr(&mut self, e: &Expr) -> R<Val<'ctx>> {
        match e {
            Expr::Var(v) => self.read_var(*v),
            Expr::Dim(i) => match self.dims.get(*i as usize) {
                Some(d) => Ok(Val::new(Ty::INDEX, *d)),
                None => Err(self.invalid(format!("extent #{i} is not declared"))),
            },
            Expr::Int(v, ty) => self.constant(*ty, super::value::int_const(self.c, ty.elem, *v)),
            Expr::Float(v, ty) => {
                self.constant(*ty, super::value::float_const(self.c, ty.elem, *v))
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
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                self.binary(*op, a, b)
            }
            Expr::MulAdd(a, b, c) => {
                let (a, b, c) = (self.expr(a)?, self.expr(b)?, self.expr(c)?);
                self.mul_add(a, b, c)
            }
            Expr::Select(c, a, b) => {
                let (c, a, b) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
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
                self.splat(a, *n)
            }
            Expr::Extract(a, i) => {
                let a = self.expr(a)?;
                self.extract(a, *i)
            }
            Expr::Shuffle(a, b, idx) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                self.shuffle(a, b, idx)
            }
            Expr::Reduce(op, a) => {
                let a = self.expr(a)?;
                self.reduce(*op, a)
            }
            Expr::Call(name, args, ty) => {
                let v = self.call(name, args, Some(*ty))?;
                v.ok_or_else(|| self.invalid(format!("call of `{name}` returns nothing")))
            }
        }
    }

    pub(super) fn constant(&self, ty: Ty, s: Option<BasicValueEnum<'ctx>>) -> R<Val<'ctx>> {
        self.check_ty(ty)?;
        let s = s.ok_or_else(|| self.unsupported(format!("constant of {}", ty.elem)))?;
        Ok(Val::new(ty, super::value::splat_const(s, ty.lanes)))
    }

    /// `for var = start; var < end; var += step`.
    fn serial_loop(
        &mut self,
        var: VarId,
        start: IntValue<'ctx>,
        end: IntValue<'ctx>,
        step: i64,
        body: &[Stmt],
    ) -> R<()> {
        let counter = self.slot(self.c.i64_type().into(), &self.var_label(var))?;
        self.b.build_store(counter, start)?;
        self.counted_loop(counter, end, 0, |me, i| {
            me.bind(var, Binding::Let(Val::new(Ty::INDEX, i)))?;
            me.block(body)?;
            let next = me.b.build_int_nsw_add(i, me.index(step), "")?;
            me.b.build_store(counter, next)?;
            Ok(())
        })
    }

    /// `n` copies of the body per trip while `n` iterations remain, then
    /// the rest one at a time.
    fn unrolled_loop(
        &mut self,
        var: VarId,
        start: IntValue<'ctx>,
        end: IntValue<'ctx>,
        step: i64,
        n: u32,
        body: &[Stmt],
    ) -> R<()> {
        let counter = self.slot(self.c.i64_type().into(), &self.var_label(var))?;
        self.b.build_store(counter, start)?;
        let last = step.saturating_mul(n as i64 - 1);
        self.counted_loop(counter, end, last, |me, i| {
            for c in 0..n as i64 {
                let at = if c == 0 {
                    i
                } else {
                    me.b.build_int_nsw_add(i, me.index(c * step), "")?
                };
                let mark = me.scope.len();
                me.bind(var, Binding::Let(Val::new(Ty::INDEX, at)))?;
                me.block(body)?;
                for v in me.scope.split_off(mark) {
                    me.env.remove(&v);
                }
            }
            let next =
                me.b.build_int_nsw_add(i, me.index(step.saturating_mul(n as i64)), "")?;
            me.b.build_store(counter, next)?;
            Ok(())
        })?;
        let rest = self
            .b
            .build_load(self.c.i64_type(), counter, "")?
            .into_int_value();
        self.serial_loop(var, rest, end, step, body)
    }

    pub(super) fn index(&self, v: i64) -> IntValue<'ctx> {
        self.c.i64_type().const_int(v as u64, true)
    }

    /// A loop running `body` (given the counter's value) while
    /// `counter + ahead < end`; the body advances the counter.
    fn counted_loop(
        &mut self,
        counter: PointerValue<'ctx>,
        end: IntValue<'ctx>,
        ahead: i64,
        body: impl FnOnce(&mut Self, IntValue<'ctx>) -> R<()>,
    ) -> R<()> {
        let header = self.c.append_basic_block(self.f, "loop");
        let body_b = self.c.append_basic_block(self.f, "body");
        let exit = self.c.append_basic_block(self.f, "exit");
        self.b.build_unconditional_branch(header)?;
        self.b.position_at_end(header);
        let i = self
            .b
            .build_load(self.c.i64_type(), counter, "i")?
            .into_int_value();
        let probe = if ahead == 0 {
            i
        } else {
            self.b.build_int_add(i, self.index(ahead), "")?
        };
        let go = self
            .b
            .build_int_compare(IntPredicate::SLT, probe, end, "")?;
        self.b.build_conditional_branch(go, body_b, exit)?;
        self.b.position_at_end(body_b);
        let mark = self.scope.len();
        body(self, i)?;
        for v in self.scope.split_off(mark) {
            self.env.remove(&v);
        }
        self.b.build_unconditional_branch(header)?;
        self.b.position_at_end(exit);
        Ok(())
    }

    /// Outlines the loop body into a function run by `saturn_parallel_for`.
    fn parallel_loop(
        &mut self,
        var: VarId,
        start: IntValue<'ctx>,
        end: IntValue<'ctx>,
        step: i64,
        body: &[Stmt],
    ) -> R<()> {
        self.check_no_outer_assign(body)?;
        // What the body reads from outside, captured by value after the
        // buffers, dims and runtime pointer.
        let mut used = BTreeSet::new();
        visit_exprs(body, &mut |e| {
            if let Expr::Var(v) = e {
                used.insert(*v);
            }
        });
        let mut captures = Vec::new();
        for v in used {
            if self.env.contains_key(&v) {
                captures.push((v, self.read_var(v)?));
            }
        }
        let c = self.c;
        let mut values: Vec<BasicValueEnum<'ctx>> = Vec::new();
        values.extend(self.bufs.iter().map(|&p| BasicValueEnum::from(p)));
        values.extend(self.dims.iter().map(|&d| BasicValueEnum::from(d)));
        values.push(self.rt.into());
        values.extend(captures.iter().map(|(_, v)| v.v));
        let types: Vec<BasicTypeEnum<'ctx>> = values.iter().map(|v| v.get_type()).collect();
        let ctx_ty = c.struct_type(&types, false);
        let body_fn = self.define_body(
            var,
            step,
            body,
            &captures,
            ctx_ty.as_basic_type_enum(),
            &types,
        )?;

        let ctx = self.slot(ctx_ty.into(), "ctx")?;
        for (i, v) in values.iter().enumerate() {
            let at = self.b.build_struct_gep(ctx_ty, ctx, i as u32, "")?;
            self.b.build_store(at, *v)?;
        }
        let pf = self.import(PARALLEL_FOR, abi::parallel_for_type(c));
        let body_ptr = body_fn.as_global_value().as_pointer_value();
        self.b.build_direct_call(
            pf,
            &[
                self.rt.into(),
                body_ptr.into(),
                ctx.into(),
                start.into(),
                end.into(),
                self.index(step).into(),
            ],
            "",
        )?;
        Ok(())
    }

    /// Defines the body function of a parallel loop: its entry reads the
    /// context block (of type `ctx_ty`, fields `types`) and calls the inner
    /// body with buffers, dims, runtime pointer, `captures` and `lo, hi`;
    /// the inner body runs the iterations `lo, lo + step, … < hi`.
    fn define_body(
        &mut self,
        var: VarId,
        step: i64,
        body: &[Stmt],
        captures: &[(VarId, Val<'ctx>)],
        ctx_ty: BasicTypeEnum<'ctx>,
        types: &[BasicTypeEnum<'ctx>],
    ) -> R<FunctionValue<'ctx>> {
        *self.outlined += 1;
        let name = format!("{}.parallel{}", self.symbol, self.outlined);
        let c = self.c;
        let cx = self.cx;
        let entry =
            cx.m.add_function(&name, abi::body_type(c), Some(Linkage::Internal));
        abi::machine_attrs(c, entry, &cx.machine);
        let nbufs = self.k.bufs.len();
        let mut extra: Vec<BasicTypeEnum> = types[nbufs..].to_vec();
        extra.push(c.i64_type().into());
        extra.push(c.i64_type().into());
        let inner = cx.m.add_function(
            &format!("{name}.inner"),
            abi::inner_type(c, nbufs, &extra),
            Some(Linkage::Internal),
        );
        abi::machine_attrs(c, inner, &cx.machine);
        abi::inner_attrs(c, inner, &self.k.bufs);

        let b = c.create_builder();
        b.position_at_end(c.append_basic_block(entry, "entry"));
        let p = entry.get_params();
        let ctx = p[0].into_pointer_value();
        let st = ctx_ty.into_struct_type();
        let mut args = Vec::new();
        for (i, t) in types.iter().enumerate() {
            let at = b.build_struct_gep(st, ctx, i as u32, "")?;
            args.push(b.build_load(*t, at, "")?.into());
        }
        args.push(p[1].into());
        args.push(p[2].into());
        b.build_direct_call(inner, &args, "")?;
        b.build_return(None)?;

        let ndims = self.k.dims.len();
        let mut l = FnLower::new(cx, self.k, inner, self.symbol, &mut *self.outlined, true);
        let p = inner.get_params();
        l.bufs = (0..nbufs).map(|i| p[i].into_pointer_value()).collect();
        l.dims = (0..ndims).map(|i| p[nbufs + i].into_int_value()).collect();
        l.rt = p[nbufs + ndims].into_pointer_value();
        let mut at = nbufs + ndims + 1;
        for (v, val) in captures {
            l.bind(*v, Binding::Let(Val::new(val.ty, p[at])))?;
            at += 1;
        }
        let (lo, hi) = (p[at].into_int_value(), p[at + 1].into_int_value());
        l.serial_loop(var, lo, hi, step, body)?;
        l.finish()?;
        Ok(entry)
    }

    /// A parallel body may not assign variables declared outside it.
    fn check_no_outer_assign(&self, body: &[Stmt]) -> R<()> {
        match crate::native::assigned_outer(body, &|v| self.env.contains_key(&v)) {
            Some(var) => Err(self.invalid(format!(
                "{} is declared outside a parallel loop and assigned inside it",
                self.var_name(var)
            ))),
            None => Ok(()),
        }
    }

    /// The imported function `name` of type `t` (declared once per module).
    pub(super) fn import(
        &self,
        name: &str,
        t: inkwell::types::FunctionType<'ctx>,
    ) -> FunctionValue<'ctx> {
        match self.cx.m.get_function(name) {
            Some(f) => f,
            None => self.cx.m.add_function(name, t, Some(Linkage::External)),
        }
    }
}
