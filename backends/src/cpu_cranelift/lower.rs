//! Lowering of kernels and statements: the function frame, variables,
//! loops (serial, unrolled, parallel bodies outlined), conditionals.

use super::abi;
use super::value::{Val, part_types, shape_of};
use super::{CodegenError, PARALLEL_FOR, module_error};
use cranelift_codegen::ir::{
    self, FuncRef, InstBuilder, MemFlagsData, StackSlot, StackSlotData, StackSlotKind, Type, Value,
    condcodes::IntCC, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_module::{FuncId, Linkage, Module};
use saturn_ir::kernel::{Expr, Kernel, LoopKind, Stmt, Ty, VarId, visit_exprs};
use std::collections::{BTreeSet, HashMap};

pub(super) type R<T> = Result<T, CodegenError>;

/// Unrolling beyond this many copies is not worth the code size.
const MAX_UNROLL: u32 = 16;

/// What a variable stands for while its scope is being lowered.
enum Binding {
    /// `let` (and outer values captured by a parallel body).
    Let(Val),
    /// `var`: one Cranelift variable per part of its canonical shape.
    Mutable(Vec<Variable>),
    /// A loop counter.
    Loop(Variable),
}

/// Lowers one function: a kernel or an outlined parallel body.
pub(super) struct FnLower<'a> {
    pub k: &'a Kernel,
    pub m: &'a mut dyn Module,
    pub fb: FunctionBuilder<'a>,
    pub ptr: Type,
    /// The `bufs` and `dims` arrays and the runtime pointer.
    bufs_arg: Value,
    dims_arg: Value,
    rt: Value,
    /// Base address of every buffer, the value of every dim.
    pub bufs: Vec<Value>,
    pub dims: Vec<Value>,
    env: HashMap<VarId, Binding>,
    /// Variables bound in the blocks being lowered, innermost last.
    scope: Vec<VarId>,
    in_parallel: bool,
    names: Names<'a>,
    funcs: HashMap<String, FuncRef>,
    /// 16 bytes of stack that masked lanes read zeros from or write to.
    spare: Option<StackSlot>,
    /// Whether `fma` is one instruction on this target.
    pub fma: bool,
}

/// How the functions of one kernel name what they declare.
struct Names<'a> {
    /// The kernel's symbol; outlined bodies are named after it.
    symbol: &'a str,
    /// Bodies outlined so far.
    outlined: &'a mut u32,
    /// Linkage of imported functions.
    imports: Linkage,
}

/// Declares and defines the function of kernel `k` under `symbol`.
pub(super) fn define_kernel(
    m: &mut dyn Module,
    k: &Kernel,
    symbol: &str,
    linkage: Linkage,
    imports: Linkage,
) -> R<FuncId> {
    let sig = abi::kernel_sig(m);
    let id = m
        .declare_function(symbol, linkage, &sig)
        .map_err(|e| module_error(&k.name, None, e))?;
    let mut ctx = m.make_context();
    ctx.func.signature = sig;
    ctx.func.name = ir::UserFuncName::user(0, id.as_u32());
    let mut fbc = FunctionBuilderContext::new();
    let mut outlined = 0;
    {
        let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fbc);
        let entry = fb.create_block();
        fb.append_block_params_for_function_params(entry);
        fb.switch_to_block(entry);
        let p = fb.block_params(entry).to_vec();
        let frame = [p[0], p[1], p[2]];
        let names = Names {
            symbol,
            outlined: &mut outlined,
            imports,
        };
        let mut l = FnLower::new(k, m, fb, names, frame, false);
        l.check_kernel()?;
        l.load_frame();
        l.block(&k.body)?;
        l.finish();
    }
    m.define_function(id, &mut ctx)
        .map_err(|e| module_error(&k.name, Some(&ctx.func), e))?;
    Ok(id)
}

impl<'a> FnLower<'a> {
    fn new(
        k: &'a Kernel,
        m: &'a mut dyn Module,
        fb: FunctionBuilder<'a>,
        names: Names<'a>,
        [bufs_arg, dims_arg, rt]: [Value; 3],
        in_parallel: bool,
    ) -> Self {
        let ptr = m.target_config().pointer_type();
        let fma = m.isa().has_native_fma();
        FnLower {
            k,
            m,
            fb,
            ptr,
            bufs_arg,
            dims_arg,
            rt,
            bufs: Vec::new(),
            dims: Vec::new(),
            env: HashMap::new(),
            scope: Vec::new(),
            in_parallel,
            names,
            funcs: HashMap::new(),
            spare: None,
            fma,
        }
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

    /// Loads the buffer addresses and dims from the argument arrays.
    fn load_frame(&mut self) {
        let flags = MemFlagsData::trusted();
        let pb = self.ptr.bytes() as i32;
        self.bufs = (0..self.k.bufs.len() as i32)
            .map(|i| self.fb.ins().load(self.ptr, flags, self.bufs_arg, i * pb))
            .collect();
        self.dims = (0..self.k.dims.len() as i32)
            .map(|i| self.fb.ins().load(types::I64, flags, self.dims_arg, i * 8))
            .collect();
    }

    fn finish(mut self) {
        self.fb.ins().return_(&[]);
        self.fb.seal_all_blocks();
        let config = self.m.target_config();
        self.fb.finalize(config);
    }

    fn bind(&mut self, var: VarId, b: Binding) -> R<()> {
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

    fn var_ty(&self, var: VarId) -> R<Ty> {
        self.k
            .vars
            .get(var.0 as usize)
            .map(|v| v.ty)
            .ok_or_else(|| self.invalid(format!("variable #{} is not declared", var.0)))
    }

    /// The current value of a variable.
    pub(super) fn read_var(&mut self, var: VarId) -> R<Val> {
        let ty = self.var_ty(var)?;
        match self.env.get(&var) {
            Some(Binding::Let(v)) => Ok(v.clone()),
            Some(Binding::Mutable(vars)) => {
                let vars = vars.clone();
                let parts = vars.iter().map(|&v| self.fb.use_var(v)).collect();
                Ok(Val::new(ty, shape_of(ty), parts))
            }
            Some(Binding::Loop(v)) => {
                let v = *v;
                Ok(Val::scalar(ty, self.fb.use_var(v)))
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
                let v = self.canonical(v);
                let vars: Vec<Variable> = part_types(ty, v.shape)
                    .into_iter()
                    .map(|t| self.fb.declare_var(t))
                    .collect();
                for (&var, &p) in vars.iter().zip(&v.parts) {
                    self.fb.def_var(var, p);
                }
                self.bind(*var, Binding::Mutable(vars))
            }
            Stmt::Assign { var, value } => {
                let vars = match self.env.get(var) {
                    Some(Binding::Mutable(vars)) => vars.clone(),
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
                let v = self.canonical(v);
                for (&var, &p) in vars.iter().zip(&v.parts) {
                    self.fb.def_var(var, p);
                }
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
                let c = self.typed_expr(cond, Ty::BOOL)?.single();
                let then_b = self.fb.create_block();
                let else_b = self.fb.create_block();
                let join = self.fb.create_block();
                self.fb.ins().brif(c, then_b, &[], else_b, &[]);
                self.fb.switch_to_block(then_b);
                self.block(then_)?;
                self.fb.ins().jump(join, &[]);
                self.fb.switch_to_block(else_b);
                self.block(else_)?;
                self.fb.ins().jump(join, &[]);
                self.fb.switch_to_block(join);
                Ok(())
            }
            Stmt::Call { name, args } => self.call(name, args, None).map(|_| ()),
            // Cranelift has no prefetch instruction; the hint is dropped.
            Stmt::Prefetch { .. } => Ok(()),
        }
    }

    /// Lowers `e`, which must have type `ty`.
    pub(super) fn typed_expr(&mut self, e: &Expr, ty: Ty) -> R<Val> {
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
    pub(super) fn index_expr(&mut self, e: &Expr) -> R<Value> {
        Ok(self.typed_expr(e, Ty::INDEX)?.single())
    }

    /// `for var = start; var < end; var += step`.
    fn serial_loop(
        &mut self,
        var: VarId,
        start: Value,
        end: Value,
        step: i64,
        body: &[Stmt],
    ) -> R<()> {
        let counter = self.fb.declare_var(types::I64);
        self.fb.def_var(counter, start);
        self.counted_loop(counter, end, 0, |me| {
            me.bind(var, Binding::Loop(counter))?;
            me.block(body)?;
            let i = me.fb.use_var(counter);
            let next = me.fb.ins().iadd_imm_s(i, step);
            me.fb.def_var(counter, next);
            Ok(())
        })
    }

    /// `n` copies of the body per trip while `n` iterations remain, then
    /// the rest one at a time.
    fn unrolled_loop(
        &mut self,
        var: VarId,
        start: Value,
        end: Value,
        step: i64,
        n: u32,
        body: &[Stmt],
    ) -> R<()> {
        let counter = self.fb.declare_var(types::I64);
        self.fb.def_var(counter, start);
        let last = step.saturating_mul(n as i64 - 1);
        self.counted_loop(counter, end, last, |me| {
            let i = me.fb.use_var(counter);
            for c in 0..n as i64 {
                let at = me.fb.ins().iadd_imm_s(i, c * step);
                let mark = me.scope.len();
                me.bind(var, Binding::Let(Val::scalar(Ty::INDEX, at)))?;
                me.block(body)?;
                for v in me.scope.split_off(mark) {
                    me.env.remove(&v);
                }
            }
            let next = me.fb.ins().iadd_imm_s(i, step.saturating_mul(n as i64));
            me.fb.def_var(counter, next);
            Ok(())
        })?;
        let rest = self.fb.use_var(counter);
        self.serial_loop(var, rest, end, step, body)
    }

    /// A loop running `body` while `counter + ahead < end`; the body
    /// advances the counter. Bindings made by `body` end with it.
    fn counted_loop(
        &mut self,
        counter: Variable,
        end: Value,
        ahead: i64,
        body: impl FnOnce(&mut Self) -> R<()>,
    ) -> R<()> {
        let header = self.fb.create_block();
        let body_b = self.fb.create_block();
        let exit = self.fb.create_block();
        self.fb.ins().jump(header, &[]);
        self.fb.switch_to_block(header);
        let i = self.fb.use_var(counter);
        let probe = if ahead == 0 {
            i
        } else {
            self.fb.ins().iadd_imm_s(i, ahead)
        };
        let go = self.fb.ins().icmp(IntCC::SignedLessThan, probe, end);
        self.fb.ins().brif(go, body_b, &[], exit, &[]);
        self.fb.switch_to_block(body_b);
        let mark = self.scope.len();
        body(self)?;
        for v in self.scope.split_off(mark) {
            self.env.remove(&v);
        }
        self.fb.ins().jump(header, &[]);
        self.fb.switch_to_block(exit);
        Ok(())
    }

    /// Outlines the loop body into a function run by `saturn_parallel_for`.
    fn parallel_loop(
        &mut self,
        var: VarId,
        start: Value,
        end: Value,
        step: i64,
        body: &[Stmt],
    ) -> R<()> {
        self.check_no_outer_assign(body)?;
        // What the body reads from outside, captured by value after the
        // three pointers of the frame.
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
        let mut values = vec![self.bufs_arg, self.dims_arg, self.rt];
        for (_, val) in &captures {
            values.extend(&val.parts);
        }
        let types: Vec<Type> = values.iter().map(|&v| self.type_of(v)).collect();
        let (offsets, size) = abi::ctx_layout(&types);
        let id = self.define_body(var, step, body, &captures, &offsets)?;

        let slot = self.fb.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            size,
            4,
        ));
        for (&v, &off) in values.iter().zip(&offsets) {
            self.fb.ins().stack_store(self.ptr, v, slot, off as i32);
        }
        let body_ref = self.m.declare_func_in_func(id, self.fb.func);
        let body_addr = self.fb.ins().func_addr(self.ptr, body_ref);
        let ctx_addr = self.fb.ins().stack_addr(self.ptr, slot, 0);
        let sig = abi::parallel_for_sig(self.m);
        let pf = self.import(PARALLEL_FOR, &sig)?;
        let step = self.fb.ins().iconst(types::I64, step);
        self.fb
            .ins()
            .call(pf, &[self.rt, body_addr, ctx_addr, start, end, step]);
        Ok(())
    }

    /// Defines the body function of a parallel loop: it reads the frame
    /// and `captures` from the context block (laid out at `offsets`) and
    /// runs the iterations `lo, lo + step, … < hi`.
    fn define_body(
        &mut self,
        var: VarId,
        step: i64,
        body: &[Stmt],
        captures: &[(VarId, Val)],
        offsets: &[u32],
    ) -> R<FuncId> {
        *self.names.outlined += 1;
        let name = format!("{}.parallel{}", self.names.symbol, self.names.outlined);
        let sig = abi::body_sig(self.m);
        let id = self
            .m
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(|e| module_error(&self.k.name, None, e))?;
        let mut ctx = self.m.make_context();
        ctx.func.signature = sig;
        ctx.func.name = ir::UserFuncName::user(0, id.as_u32());
        let mut fbc = FunctionBuilderContext::new();
        {
            let mut fb = FunctionBuilder::new(&mut ctx.func, &mut fbc);
            let entry = fb.create_block();
            fb.append_block_params_for_function_params(entry);
            fb.switch_to_block(entry);
            let p = fb.block_params(entry).to_vec();
            let (ctxp, lo, hi) = (p[0], p[1], p[2]);
            let flags = MemFlagsData::trusted();
            let frame = [0, 1, 2].map(|i| fb.ins().load(self.ptr, flags, ctxp, offsets[i] as i32));
            let mut inner = FnLower::new(
                self.k,
                &mut *self.m,
                fb,
                Names {
                    symbol: self.names.symbol,
                    outlined: &mut *self.names.outlined,
                    imports: self.names.imports,
                },
                frame,
                true,
            );
            inner.load_frame();
            let mut slots = offsets[3..].iter();
            for (v, val) in captures {
                let parts = val
                    .parts
                    .iter()
                    .zip(slots.by_ref())
                    .map(|(&p, &off)| {
                        let t = self.fb.func.dfg.value_type(p);
                        inner.fb.ins().load(t, flags, ctxp, off as i32)
                    })
                    .collect();
                inner.bind(*v, Binding::Let(Val::new(val.ty, val.shape, parts)))?;
            }
            inner.serial_loop(var, lo, hi, step, body)?;
            inner.finish();
        }
        self.m
            .define_function(id, &mut ctx)
            .map_err(|e| module_error(&self.k.name, Some(&ctx.func), e))?;
        Ok(id)
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

    /// A reference to the imported function `name` with signature `sig`.
    pub(super) fn import(&mut self, name: &str, sig: &ir::Signature) -> R<FuncRef> {
        if let Some(&f) = self.funcs.get(name) {
            return Ok(f);
        }
        let id = self
            .m
            .declare_function(name, self.names.imports, sig)
            .map_err(|e| module_error(&self.k.name, None, e))?;
        let f = self.m.declare_func_in_func(id, self.fb.func);
        self.funcs.insert(name.to_string(), f);
        Ok(f)
    }

    /// The address of 16 spare bytes on the stack.
    pub(super) fn spare_addr(&mut self) -> Value {
        let slot = match self.spare {
            Some(s) => s,
            None => {
                let s = self.fb.create_sized_stack_slot(StackSlotData::new(
                    StackSlotKind::ExplicitSlot,
                    16,
                    4,
                ));
                self.spare = Some(s);
                s
            }
        };
        self.fb.ins().stack_addr(self.ptr, slot, 0)
    }

    fn jump_with(&mut self, block: ir::Block, vals: Vec<Value>) {
        let args: Vec<ir::BlockArg> = vals.into_iter().map(ir::BlockArg::Value).collect();
        self.fb.ins().jump(block, &args);
    }

    /// Runs `then` when `c` holds and `other` (the rare path, laid out
    /// out of line) otherwise; both produce values of the same types,
    /// which are returned.
    pub(super) fn branch_values(
        &mut self,
        c: Value,
        types: &[Type],
        then: impl FnOnce(&mut Self) -> R<Vec<Value>>,
        other: impl FnOnce(&mut Self) -> R<Vec<Value>>,
    ) -> R<Vec<Value>> {
        let then_b = self.fb.create_block();
        let other_b = self.fb.create_block();
        let join = self.fb.create_block();
        for &t in types {
            self.fb.append_block_param(join, t);
        }
        self.fb.set_cold_block(other_b);
        self.fb.ins().brif(c, then_b, &[], other_b, &[]);
        self.fb.switch_to_block(then_b);
        let vals = then(self)?;
        self.jump_with(join, vals);
        self.fb.switch_to_block(other_b);
        let vals = other(self)?;
        self.jump_with(join, vals);
        self.fb.switch_to_block(join);
        Ok(self.fb.block_params(join).to_vec())
    }
}
