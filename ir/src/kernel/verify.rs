//! The Kernel IR verifier.
//!
//! Checks what the code generators and the evaluator take for granted:
//!
//! - every buffer, extent and variable referred to exists;
//! - variables are used within the scope of a definition (loop variables
//!   and `let`s are scoped to their block) and are not defined again while
//!   in scope; the same variable may be defined in disjoint blocks;
//! - `let` and loop variables are immutable, `var` ones mutable, and only
//!   the latter are assigned, with a value of their type;
//! - operand types agree with the operation: arithmetic on integers and
//!   floats (`%` of floats is C's `fmod`), shifts on integers, bitwise operations on integers
//!   and bools, rounding and `sqrt` on floats, binary operands of one
//!   type, comparisons giving bools, a `select` condition of bools with
//!   the arms' lanes, `splat` of a scalar, `extract` of a lane that
//!   exists, reductions of numeric vectors, `bitcast` between numeric
//!   types of one width;
//! - every dtype is a kernel dtype ([`is_kernel_dtype`]) with at least one
//!   lane, and integer constants fit their type;
//! - indices, loop bounds, masks and buffer lengths have the index type;
//!   stored values have the buffer's dtype; nothing is stored to an input
//!   buffer; loop steps are positive.

use std::fmt;

use super::text::{Printer, bin_name, reduce_name, ty_text, un_name};
use super::*;
use crate::text::print::name_token;

/// Why a kernel is ill-formed, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct KernelVerifyError {
    /// The kernel's name.
    pub kernel: String,
    /// Where the problem is: the statement's first line as printed, or
    /// the buffer whose length it is in.
    pub at: String,
    /// The offending expression as printed, where the problem is in one.
    pub expr: Option<String>,
    pub msg: String,
}

impl fmt::Display for KernelVerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {}: {}", name_token('@', &self.kernel), self.msg)?;
        if let Some(e) = &self.expr {
            write!(f, ", in `{e}`")?;
        }
        write!(f, ", at `{}`", self.at)
    }
}

/// Checks that `k` is well-formed.
pub fn verify_kernel(k: &Kernel) -> Result<(), KernelVerifyError> {
    let mut c = Checker {
        k,
        in_scope: vec![false; k.vars.len()],
        scopes: Vec::new(),
        at: At::Buf(0),
    };
    for (i, b) in k.bufs.iter().enumerate() {
        c.at = At::Buf(i);
        if !is_kernel_dtype(b.dtype) {
            return Err(c.fail(
                None,
                format!("buffer dtype {} is not a kernel dtype", b.dtype),
            ));
        }
        c.index(&b.len, "a buffer length")?;
        if let Some(r) = b.reuses {
            let ok = b.kind == BufKind::Output
                && k.bufs.get(r.0 as usize).is_some_and(|o| {
                    o.kind == BufKind::Input && o.dtype == b.dtype && o.len == b.len
                });
            if !ok {
                return Err(c.fail(
                    None,
                    "only an output may reuse the memory of an input, of its dtype and length"
                        .to_string(),
                ));
            }
        }
    }
    c.block(&k.body)
}

/// What is being checked, for messages.
#[derive(Clone, Copy)]
enum At<'a> {
    Buf(usize),
    Stmt(&'a Stmt),
}

type Check<T> = Result<T, KernelVerifyError>;

struct Checker<'a> {
    k: &'a Kernel,
    /// By variable: whether a definition of it is in scope.
    in_scope: Vec<bool>,
    /// The variables each open block defines.
    scopes: Vec<Vec<VarId>>,
    at: At<'a>,
}

fn is_numeric(t: Ty) -> bool {
    t.elem.is_int() || t.elem.is_float()
}

fn is_int_or_bool(t: Ty) -> bool {
    t.elem.is_int() || t.elem == DType::Bool
}

/// Whether `v` is a value of the integer type `d`, read as signed or as
/// unsigned (`-1: u8` and `255: u8` are both all ones).
fn int_fits(v: i64, d: DType) -> bool {
    match d {
        DType::Bool => v == 0 || v == 1,
        DType::I64 | DType::U64 => true,
        _ => {
            let bits = d.bits() as u32;
            v >= -(1i64 << (bits - 1)) && v < (1i64 << bits)
        }
    }
}

impl<'a> Checker<'a> {
    fn fail(&self, e: Option<&Expr>, msg: String) -> KernelVerifyError {
        let p = Printer::new(self.k);
        let at = match self.at {
            At::Buf(i) => match self.k.bufs.get(i) {
                Some(_) => format!("buffer {}", p.buf(BufId(i as u32))),
                None => p.header(),
            },
            At::Stmt(s) => p.stmt_head(s),
        };
        KernelVerifyError {
            kernel: self.k.name.clone(),
            at,
            expr: e.map(|e| p.expr(e)),
            msg,
        }
    }

    fn err<T>(&self, e: Option<&Expr>, msg: String) -> Check<T> {
        Err(self.fail(e, msg))
    }

    fn var_name(&self, v: VarId) -> String {
        Printer::new(self.k).var(v)
    }

    fn buf_name(&self, b: BufId) -> String {
        Printer::new(self.k).buf(b)
    }

    /// A type values can have: a kernel dtype, at least one lane.
    fn valid_ty(&self, t: Ty, e: Option<&Expr>, what: &str) -> Check<()> {
        if !is_kernel_dtype(t.elem) {
            return self.err(
                e,
                format!("{what} has dtype {}, which is not a kernel dtype", t.elem),
            );
        }
        if t.lanes == 0 {
            return self.err(e, format!("{what} has type {}, with no lanes", ty_text(t)));
        }
        Ok(())
    }

    /// `e` has the index type.
    fn index(&mut self, e: &Expr, what: &str) -> Check<()> {
        let t = self.expr(e)?;
        if t != Ty::INDEX {
            return self.err(
                Some(e),
                format!("{what} must have the index type i64, not {}", ty_text(t)),
            );
        }
        Ok(())
    }

    fn var(&self, v: VarId) -> Check<&'a Var> {
        match self.k.vars.get(v.0 as usize) {
            Some(var) => Ok(var),
            None => self.err(
                None,
                format!(
                    "variable #{} does not exist (the kernel has {})",
                    v.0,
                    self.k.vars.len()
                ),
            ),
        }
    }

    fn buf(&self, b: BufId, e: Option<&Expr>) -> Check<&'a Buf> {
        match self.k.bufs.get(b.0 as usize) {
            Some(buf) => Ok(buf),
            None => self.err(
                e,
                format!(
                    "buffer #{} does not exist (the kernel has {})",
                    b.0,
                    self.k.bufs.len()
                ),
            ),
        }
    }

    /// Defines `v` (a `let`, `var` or loop variable) in the innermost
    /// block, after checking its type and mutability.
    fn define(&mut self, v: VarId, ty: Ty, mutable: bool, stmt: &str) -> Check<()> {
        let var = self.var(v)?;
        // Names are only worked out for messages (it takes a walk).
        let name = || self.var_name(v);
        if !is_kernel_dtype(var.ty.elem) || var.ty.lanes == 0 {
            return self.valid_ty(var.ty, None, &format!("variable {}", name()));
        }
        if var.mutable != mutable {
            let msg = if mutable {
                format!("{stmt} declares {}, which is not mutable", name())
            } else {
                format!(
                    "{stmt} binds {}, which is mutable (declare it with `var`)",
                    name()
                )
            };
            return self.err(None, msg);
        }
        if var.ty != ty {
            return self.err(
                None,
                format!(
                    "{} has type {}, but {stmt} gives it {}",
                    name(),
                    ty_text(var.ty),
                    ty_text(ty)
                ),
            );
        }
        if self.in_scope[v.0 as usize] {
            return self.err(None, format!("{} is defined again while in scope", name()));
        }
        self.in_scope[v.0 as usize] = true;
        self.scopes
            .last_mut()
            .expect("definitions are inside a block")
            .push(v);
        Ok(())
    }

    fn block(&mut self, stmts: &'a [Stmt]) -> Check<()> {
        self.scopes.push(Vec::new());
        for s in stmts {
            self.stmt(s)?;
        }
        for v in self.scopes.pop().expect("the block's scope") {
            self.in_scope[v.0 as usize] = false;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &'a Stmt) -> Check<()> {
        self.at = At::Stmt(s);
        match s {
            Stmt::Let { var, value } => {
                let t = self.expr(value)?;
                self.define(*var, t, false, "`let`")
            }
            Stmt::Decl { var, init } => {
                let t = self.expr(init)?;
                self.define(*var, t, true, "`var`")
            }
            Stmt::Assign { var, value } => {
                let v = self.var(*var)?;
                let name = || self.var_name(*var);
                if !self.in_scope[var.0 as usize] {
                    return self.err(None, format!("assigns {}, which is not in scope", name()));
                }
                if !v.mutable {
                    return self.err(
                        None,
                        format!("assigns {}, which is not mutable (only `var`s are)", name()),
                    );
                }
                let t = self.expr(value)?;
                if t != v.ty {
                    return self.err(
                        Some(value),
                        format!(
                            "assigns a value of type {} to {} of type {}",
                            ty_text(t),
                            self.var_name(*var),
                            ty_text(v.ty)
                        ),
                    );
                }
                Ok(())
            }
            Stmt::Store {
                buf,
                index,
                value,
                stride: _,
                mask,
            } => {
                let b = self.buf(*buf, None)?;
                if b.kind == BufKind::Input {
                    return self.err(
                        None,
                        format!("stores to input buffer {}", self.buf_name(*buf)),
                    );
                }
                self.index(index, "a store index")?;
                if let Some(m) = mask {
                    self.index(m, "a store mask")?;
                }
                let t = self.expr(value)?;
                if t.elem != b.dtype {
                    return self.err(
                        Some(value),
                        format!(
                            "stores a value of type {} into buffer {} of {}",
                            ty_text(t),
                            self.buf_name(*buf),
                            b.dtype
                        ),
                    );
                }
                Ok(())
            }
            Stmt::For {
                var,
                start,
                end,
                step,
                kind,
                body,
            } => {
                self.index(start, "a loop start")?;
                self.index(end, "a loop end")?;
                if *step <= 0 {
                    return self.err(None, format!("the loop step must be positive, not {step}"));
                }
                if *kind == LoopKind::Unroll(0) {
                    return self.err(None, "the unroll factor must be at least 1".into());
                }
                let v = self.var(*var)?;
                if v.ty != Ty::INDEX {
                    return self.err(
                        None,
                        format!(
                            "loop variable {} must have the index type i64, not {}",
                            self.var_name(*var),
                            ty_text(v.ty)
                        ),
                    );
                }
                self.scopes.push(Vec::new());
                self.define(*var, Ty::INDEX, false, "the loop")?;
                self.block(body)?;
                self.in_scope[var.0 as usize] = false;
                self.scopes.pop();
                Ok(())
            }
            Stmt::If { cond, then_, else_ } => {
                let t = self.expr(cond)?;
                if t != Ty::BOOL {
                    return self.err(
                        Some(cond),
                        format!("the condition must be a bool scalar, not {}", ty_text(t)),
                    );
                }
                self.block(then_)?;
                self.block(else_)
            }
            Stmt::Prefetch { buf, index } => {
                self.buf(*buf, None)?;
                self.index(index, "a prefetch index")
            }
            Stmt::Call { name, args } => {
                if name.is_empty() {
                    return self.err(None, "the callee has no name".into());
                }
                for a in args {
                    self.expr(a)?;
                }
                Ok(())
            }
        }
    }

    /// The type of `e`, after checking its operands:
    ///
    /// - arithmetic (`+ - * /`, `min`, `max`, `fma`, `neg`, `abs`) on
    ///   integers and floats, `%` on integers, `sqrt floor ceil round
    ///   trunc` on floats, bitwise operations (`& | ^ not`) on integers and
    ///   bools, shifts on integers; comparisons on any type, giving bools;
    /// - binary operands, `fma` operands and `select` arms of one type;
    ///   the `select` condition bool with the arms' lanes;
    /// - `bitcast` between numeric types of one width; `splat` of a
    ///   scalar; `extract` of a lane that exists; reductions of numeric
    ///   vectors.
    fn expr(&mut self, e: &Expr) -> Check<Ty> {
        let here = Some(e);
        Ok(match e {
            Expr::Var(v) => {
                let var = self.var(*v)?;
                if !self.in_scope[v.0 as usize] {
                    return self.err(
                        here,
                        format!(
                            "{} is used outside the scope of its definition",
                            self.var_name(*v)
                        ),
                    );
                }
                var.ty
            }
            Expr::Dim(d) => {
                if *d as usize >= self.k.dims.len() {
                    return self.err(
                        here,
                        format!(
                            "extent #{d} does not exist (the kernel has {})",
                            self.k.dims.len()
                        ),
                    );
                }
                Ty::INDEX
            }
            Expr::Int(v, t) => {
                self.valid_ty(*t, here, "a constant")?;
                if t.elem.is_float() {
                    return self.err(
                        here,
                        format!("an integer constant has float type {}", ty_text(*t)),
                    );
                }
                if !int_fits(*v, t.elem) {
                    return self.err(here, format!("{v} does not fit {}", t.elem));
                }
                *t
            }
            Expr::Float(_, t) => {
                self.valid_ty(*t, here, "a constant")?;
                if !t.elem.is_float() {
                    return self.err(
                        here,
                        format!("a float constant has non-float type {}", ty_text(*t)),
                    );
                }
                *t
            }
            Expr::Load {
                buf,
                index,
                lanes,
                stride: _,
                mask,
            } => {
                let b = self.buf(*buf, here)?;
                if let At::Buf(_) = self.at {
                    return self.err(here, "a buffer length cannot load from a buffer".into());
                }
                self.index(index, "a load index")?;
                if let Some(m) = mask {
                    self.index(m, "a load mask")?;
                }
                let t = Ty::vector(b.dtype, *lanes);
                self.valid_ty(t, here, "a load")?;
                t
            }
            Expr::Unary(op, a) => {
                let t = self.expr(a)?;
                let ok = match op {
                    UnOp::Neg | UnOp::Abs => is_numeric(t),
                    UnOp::Sqrt | UnOp::Floor | UnOp::Ceil | UnOp::Round | UnOp::Trunc => {
                        t.elem.is_float()
                    }
                    UnOp::Not => is_int_or_bool(t),
                };
                if !ok {
                    return self.err(
                        here,
                        format!("`{}` does not apply to {}", un_name(*op), ty_text(t)),
                    );
                }
                t
            }
            Expr::Binary(op, a, b) => {
                let (ta, tb) = (self.expr(a)?, self.expr(b)?);
                let name = bin_name(*op);
                if ta != tb {
                    return self.err(
                        here,
                        format!(
                            "the operands of `{name}` have different types {} and {}",
                            ty_text(ta),
                            ty_text(tb)
                        ),
                    );
                }
                use BinOp::*;
                let ok = match op {
                    Add | Sub | Mul | Div | Rem | Min | Max => is_numeric(ta),
                    Ldexp => ta.elem.is_float(),
                    Shl | Shr => ta.elem.is_int(),
                    And | Or | Xor => is_int_or_bool(ta),
                    Eq | Ne | Lt | Le | Gt | Ge => true,
                };
                if !ok {
                    return self.err(here, format!("`{name}` does not apply to {}", ty_text(ta)));
                }
                if op.is_compare() {
                    ta.with_elem(DType::Bool)
                } else {
                    ta
                }
            }
            Expr::MulAdd(a, b, c) => {
                let (ta, tb, tc) = (self.expr(a)?, self.expr(b)?, self.expr(c)?);
                if ta != tb || ta != tc {
                    return self.err(
                        here,
                        format!(
                            "the operands of `fma` have different types {}, {} and {}",
                            ty_text(ta),
                            ty_text(tb),
                            ty_text(tc)
                        ),
                    );
                }
                if !is_numeric(ta) {
                    return self.err(here, format!("`fma` does not apply to {}", ty_text(ta)));
                }
                ta
            }
            Expr::Select(c, a, b) => {
                let (tc, ta, tb) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                if ta != tb {
                    return self.err(
                        here,
                        format!(
                            "the arms of `select` have different types {} and {}",
                            ty_text(ta),
                            ty_text(tb)
                        ),
                    );
                }
                if tc != ta.with_elem(DType::Bool) {
                    return self.err(
                        here,
                        format!(
                            "the condition of `select` must be {}, not {}",
                            ty_text(ta.with_elem(DType::Bool)),
                            ty_text(tc)
                        ),
                    );
                }
                ta
            }
            Expr::Cast(d, a) => {
                let t = self.expr(a)?.with_elem(*d);
                self.valid_ty(t, here, "a cast")?;
                t
            }
            Expr::Bitcast(d, a) => {
                let ta = self.expr(a)?;
                let t = ta.with_elem(*d);
                self.valid_ty(t, here, "a bitcast")?;
                if !is_numeric(ta) || !is_numeric(t) || ta.elem.bits() != d.bits() {
                    return self.err(
                        here,
                        format!(
                            "`bitcast` from {} to {} does not keep the width of a number",
                            ta.elem, d
                        ),
                    );
                }
                t
            }
            Expr::Splat(n, a) => {
                let ta = self.expr(a)?;
                if ta.lanes != 1 {
                    return self.err(here, format!("`splat` needs a scalar, not {}", ty_text(ta)));
                }
                let t = ta.with_lanes(*n);
                self.valid_ty(t, here, "a splat")?;
                t
            }
            Expr::Shuffle(a, b, idx) => {
                let (ta, tb) = (self.expr(a)?, self.expr(b)?);
                if ta != tb {
                    return self.err(
                        here,
                        format!(
                            "the operands of `shuffle` have different types {} and {}",
                            ty_text(ta),
                            ty_text(tb)
                        ),
                    );
                }
                if let Some(i) = idx.iter().find(|&&i| i >= 2 * ta.lanes) {
                    return self.err(
                        here,
                        format!(
                            "`shuffle` of lane {i} from two vectors of {} lanes",
                            ta.lanes
                        ),
                    );
                }
                let t = ta.with_lanes(idx.len() as u16);
                self.valid_ty(t, here, "a shuffle")?;
                t
            }
            Expr::Extract(a, lane) => {
                let ta = self.expr(a)?;
                if *lane >= ta.lanes {
                    return self.err(
                        here,
                        format!("`extract` of lane {lane} from {}", ty_text(ta)),
                    );
                }
                ta.with_lanes(1)
            }
            Expr::Reduce(op, a) => {
                let ta = self.expr(a)?;
                if !ta.is_vector() || !is_numeric(ta) {
                    return self.err(
                        here,
                        format!(
                            "`{}` needs a numeric vector, not {}",
                            reduce_name(*op),
                            ty_text(ta)
                        ),
                    );
                }
                ta.with_lanes(1)
            }
            Expr::Call(name, args, t) => {
                if name.is_empty() {
                    return self.err(here, "the callee has no name".into());
                }
                for a in args {
                    self.expr(a)?;
                }
                self.valid_ty(*t, here, "a call")?;
                *t
            }
        })
    }
}
