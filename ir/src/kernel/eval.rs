//! A reference evaluator for Kernel IR.
//!
//! [`eval_kernel`] runs a kernel statement by statement on byte buffers, with
//! the semantics the code generators implement (see the module docs of
//! [`crate::kernel`]): integers wrap at their width, integer division and
//! remainder by zero give 0 and `MIN / -1` wraps, shift amounts are taken
//! modulo the width, float-to-integer casts saturate (NaN gives 0), float
//! `min`/`max` propagate NaN, masked loads read zero in the inactive lanes.
//! Parallel loops run serially. Every access is checked against the
//! buffer's declared length, so a lowering that reads or writes out of
//! bounds fails here with the kernel and buffer named, instead of
//! corrupting memory in generated code.
//!
//! It is the oracle for lowerings: a lowered graph run through this
//! evaluator must agree with the graph interpreter. It favours clarity over
//! speed; tests use it on small shapes.

use super::*;
use std::fmt;

/// Why a kernel could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct KernelEvalError {
    pub kernel: String,
    pub msg: String,
}

impl fmt::Display for KernelEvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel `{}`: {}", self.kernel, self.msg)
    }
}

/// Bytes of one element of a kernel dtype in memory.
pub fn elem_bytes(d: DType) -> usize {
    d.bits().div_ceil(8).max(1)
}

/// Runs `k` on `bufs` (one byte slice per [`Kernel::bufs`] entry, in
/// order, little-endian elements) with the runtime extents `dims`.
pub fn eval_kernel(
    k: &Kernel,
    bufs: &mut [&mut [u8]],
    dims: &[i64],
) -> Result<(), KernelEvalError> {
    let mut ev = Eval {
        k,
        bufs,
        dims,
        lens: Vec::new(),
        env: vec![None; k.vars.len()],
    };
    ev.check_bufs()?;
    ev.block(&k.body)
}

/// The lanes of a value: integers (and bools, 0 or 1) normalised to their
/// type's width, floats as f64 holding a value of their type.
#[derive(Clone, Debug)]
enum Lanes {
    I(Vec<i64>),
    F(Vec<f64>),
}

#[derive(Clone, Debug)]
struct Val {
    ty: Ty,
    lanes: Lanes,
}

impl Val {
    fn ints(ty: Ty, v: Vec<i64>) -> Val {
        Val {
            ty,
            lanes: Lanes::I(v),
        }
    }
    fn floats(ty: Ty, v: Vec<f64>) -> Val {
        Val {
            ty,
            lanes: Lanes::F(v),
        }
    }
    fn len(&self) -> usize {
        match &self.lanes {
            Lanes::I(v) => v.len(),
            Lanes::F(v) => v.len(),
        }
    }
}

/// An integer of dtype `d` from any bit pattern: truncated to the width and
/// sign- or zero-extended back (u64 keeps its bits).
fn norm_int(d: DType, x: i64) -> i64 {
    use DType::*;
    match d {
        Bool => (x != 0) as i64,
        I8 => x as i8 as i64,
        U8 => x as u8 as i64,
        I16 => x as i16 as i64,
        U16 => x as u16 as i64,
        I32 => x as i32 as i64,
        U32 => x as u32 as i64,
        _ => x,
    }
}

fn norm_float(d: DType, x: f64) -> f64 {
    if d == DType::F32 { x as f32 as f64 } else { x }
}

/// An integer lane as a float of dtype `to`.
fn int_to_float(from: DType, to: DType, x: i64) -> f64 {
    let unsigned = from.is_unsigned_int();
    if to == DType::F32 {
        (if unsigned { x as u64 as f32 } else { x as f32 }) as f64
    } else if unsigned {
        x as u64 as f64
    } else {
        x as f64
    }
}

/// A float lane converted to the integer dtype `to`, saturating (NaN: 0).
fn float_to_int(to: DType, x: f64) -> i64 {
    use DType::*;
    match to {
        Bool => (x != 0.0) as i64,
        I8 => x as i8 as i64,
        U8 => x as u8 as i64,
        I16 => x as i16 as i64,
        U16 => x as u16 as i64,
        I32 => x as i32 as i64,
        U32 => x as u32 as i64,
        U64 => x as u64 as i64,
        _ => x as i64,
    }
}

struct Eval<'a, 'b> {
    k: &'a Kernel,
    bufs: &'a mut [&'b mut [u8]],
    dims: &'a [i64],
    /// Declared lengths in elements.
    lens: Vec<i64>,
    env: Vec<Option<Val>>,
}

type R<T> = Result<T, KernelEvalError>;

impl Eval<'_, '_> {
    fn fail<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(KernelEvalError {
            kernel: self.k.name.clone(),
            msg: msg.into(),
        })
    }

    fn check_bufs(&mut self) -> R<()> {
        if self.bufs.len() != self.k.bufs.len() {
            return self.fail(format!(
                "{} buffers given for {} declared",
                self.bufs.len(),
                self.k.bufs.len()
            ));
        }
        for (i, b) in self.k.bufs.iter().enumerate() {
            if !is_kernel_dtype(b.dtype) {
                return self.fail(format!("buffer `{}` has dtype {}", b.name, b.dtype));
            }
            let len = self.scalar_int(&b.len)?;
            let need = len.max(0) as usize * elem_bytes(b.dtype);
            if len < 0 || self.bufs[i].len() < need {
                return self.fail(format!(
                    "buffer `{}` needs {need} bytes ({len} x {}), {} given",
                    b.name,
                    b.dtype,
                    self.bufs[i].len()
                ));
            }
            self.lens.push(len);
        }
        Ok(())
    }

    fn block(&mut self, stmts: &[Stmt]) -> R<()> {
        for s in stmts {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::Let { var, value }
            | Stmt::Decl { var, init: value }
            | Stmt::Assign { var, value } => {
                let v = self.expr(value)?;
                self.env[var.0 as usize] = Some(v);
            }
            Stmt::Store {
                buf,
                index,
                value,
                stride,
                mask,
            } => {
                let base = self.scalar_int(index)?;
                let v = self.expr(value)?;
                let active = match mask {
                    Some(m) => (self.scalar_int(m)?.clamp(0, v.len() as i64)) as usize,
                    None => v.len(),
                };
                let b = buf.0 as usize;
                if self.k.bufs[b].kind == BufKind::Input {
                    return self.fail(format!("store to input buffer `{}`", self.k.bufs[b].name));
                }
                for lane in 0..active {
                    let at = base + lane as i64 * stride;
                    self.write(b, at, &v, lane)?;
                }
            }
            Stmt::For {
                var,
                start,
                end,
                step,
                body,
                ..
            } => {
                let (mut i, end) = (self.scalar_int(start)?, self.scalar_int(end)?);
                if *step <= 0 {
                    return self.fail(format!("loop step {step} is not positive"));
                }
                while i < end {
                    self.env[var.0 as usize] = Some(Val::ints(Ty::INDEX, vec![i]));
                    self.block(body)?;
                    i += step;
                }
            }
            Stmt::If { cond, then_, else_ } => {
                if self.scalar_int(cond)? != 0 {
                    self.block(then_)?;
                } else {
                    self.block(else_)?;
                }
            }
            Stmt::Call { name, .. } => {
                return self.fail(format!("the evaluator does not know intrinsic `{name}`"));
            }
            // A hint only: nothing to compute.
            Stmt::Prefetch { .. } => {}
        }
        Ok(())
    }

    fn scalar_int(&mut self, e: &Expr) -> R<i64> {
        let v = self.expr(e)?;
        match v.lanes {
            Lanes::I(l) if l.len() == 1 => Ok(l[0]),
            _ => self.fail("expected a scalar integer"),
        }
    }

    fn element(&self, b: usize, at: i64) -> R<usize> {
        if at < 0 || at >= self.lens[b] {
            let buf = &self.k.bufs[b];
            return self.fail(format!(
                "index {at} out of bounds of `{}` (length {})",
                buf.name, self.lens[b]
            ));
        }
        Ok(at as usize * elem_bytes(self.k.bufs[b].dtype))
    }

    fn read(&self, b: usize, at: i64) -> R<Scalar> {
        let off = self.element(b, at)?;
        let d = self.k.bufs[b].dtype;
        let bytes = &self.bufs[b][off..off + elem_bytes(d)];
        let mut raw = [0u8; 8];
        raw[..bytes.len()].copy_from_slice(bytes);
        let bits = u64::from_le_bytes(raw);
        Ok(match d {
            DType::F32 => Scalar::F(f32::from_bits(bits as u32) as f64),
            DType::F64 => Scalar::F(f64::from_bits(bits)),
            _ => Scalar::I(norm_int(d, bits as i64)),
        })
    }

    fn write(&mut self, b: usize, at: i64, v: &Val, lane: usize) -> R<()> {
        let off = self.element(b, at)?;
        let d = self.k.bufs[b].dtype;
        if v.ty.elem != d {
            return self.fail(format!(
                "store of {} to `{}` of dtype {d}",
                v.ty.elem, self.k.bufs[b].name
            ));
        }
        let bits: u64 = match &v.lanes {
            Lanes::F(l) if d == DType::F32 => (l[lane] as f32).to_bits() as u64,
            Lanes::F(l) => l[lane].to_bits(),
            Lanes::I(l) => l[lane] as u64,
        };
        let n = elem_bytes(d);
        self.bufs[b][off..off + n].copy_from_slice(&bits.to_le_bytes()[..n]);
        Ok(())
    }

    fn expr(&mut self, e: &Expr) -> R<Val> {
        Ok(match e {
            Expr::Var(v) => match &self.env[v.0 as usize] {
                Some(x) => x.clone(),
                None => {
                    return self.fail(format!(
                        "variable `{}` used before its definition",
                        self.k.var(*v).name
                    ));
                }
            },
            Expr::Dim(i) => match self.dims.get(*i as usize) {
                Some(d) => Val::ints(Ty::INDEX, vec![*d]),
                None => return self.fail(format!("extent {i} was not given")),
            },
            Expr::Int(v, t) => {
                if t.elem.is_float() {
                    Val::floats(*t, vec![norm_float(t.elem, *v as f64); t.lanes as usize])
                } else {
                    Val::ints(*t, vec![norm_int(t.elem, *v); t.lanes as usize])
                }
            }
            Expr::Float(v, t) => {
                if t.elem.is_float() {
                    Val::floats(*t, vec![norm_float(t.elem, *v); t.lanes as usize])
                } else {
                    Val::ints(*t, vec![float_to_int(t.elem, *v); t.lanes as usize])
                }
            }
            Expr::Load {
                buf,
                index,
                lanes,
                stride,
                mask,
            } => {
                let base = self.scalar_int(index)?;
                let n = *lanes as usize;
                let active = match mask {
                    Some(m) => self.scalar_int(m)?.clamp(0, n as i64) as usize,
                    None => n,
                };
                let b = buf.0 as usize;
                let d = self.k.bufs[b].dtype;
                let ty = Ty::vector(d, *lanes);
                if d.is_float() {
                    let mut out = vec![0.0; n];
                    for (lane, o) in out.iter_mut().enumerate().take(active) {
                        if let Scalar::F(x) = self.read(b, base + lane as i64 * stride)? {
                            *o = x;
                        }
                    }
                    Val::floats(ty, out)
                } else {
                    let mut out = vec![0; n];
                    for (lane, o) in out.iter_mut().enumerate().take(active) {
                        if let Scalar::I(x) = self.read(b, base + lane as i64 * stride)? {
                            *o = x;
                        }
                    }
                    Val::ints(ty, out)
                }
            }
            Expr::Unary(op, a) => {
                let a = self.expr(a)?;
                self.unary(*op, a)?
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                self.binary(*op, a, b)?
            }
            Expr::MulAdd(a, b, c) => {
                let (a, b, c) = (self.expr(a)?, self.expr(b)?, self.expr(c)?);
                let ty = a.ty;
                match (a.lanes, b.lanes, c.lanes) {
                    (Lanes::F(a), Lanes::F(b), Lanes::F(c)) => {
                        let v = (0..a.len())
                            .map(|i| {
                                if ty.elem == DType::F32 {
                                    (a[i] as f32).mul_add(b[i] as f32, c[i] as f32) as f64
                                } else {
                                    a[i].mul_add(b[i], c[i])
                                }
                            })
                            .collect();
                        Val::floats(ty, v)
                    }
                    (Lanes::I(a), Lanes::I(b), Lanes::I(c)) => {
                        let v = (0..a.len())
                            .map(|i| norm_int(ty.elem, a[i].wrapping_mul(b[i]).wrapping_add(c[i])))
                            .collect();
                        Val::ints(ty, v)
                    }
                    _ => return self.fail("mul_add of mixed operand types"),
                }
            }
            Expr::Select(c, a, b) => {
                let (c, a, b) = (self.expr(c)?, self.expr(a)?, self.expr(b)?);
                let Lanes::I(c) = c.lanes else {
                    return self.fail("select on a float condition");
                };
                if c.len() != a.len() || a.len() != b.len() {
                    return self.fail("select lanes differ");
                }
                let ty = a.ty;
                match (a.lanes, b.lanes) {
                    (Lanes::F(a), Lanes::F(b)) => Val::floats(
                        ty,
                        (0..c.len())
                            .map(|i| if c[i] != 0 { a[i] } else { b[i] })
                            .collect(),
                    ),
                    (Lanes::I(a), Lanes::I(b)) => Val::ints(
                        ty,
                        (0..c.len())
                            .map(|i| if c[i] != 0 { a[i] } else { b[i] })
                            .collect(),
                    ),
                    _ => return self.fail("select arms of different types"),
                }
            }
            Expr::Cast(to, a) => {
                let a = self.expr(a)?;
                cast(a, *to)
            }
            Expr::Bitcast(to, a) => {
                let a = self.expr(a)?;
                if a.ty.elem.bits() != to.bits() {
                    return self.fail(format!("bitcast {} to {to}", a.ty.elem));
                }
                let ty = a.ty.with_elem(*to);
                let from = a.ty.elem;
                let bits: Vec<u64> = match a.lanes {
                    Lanes::F(l) if from == DType::F32 => {
                        l.iter().map(|x| (*x as f32).to_bits() as u64).collect()
                    }
                    Lanes::F(l) => l.iter().map(|x| x.to_bits()).collect(),
                    Lanes::I(l) => l.iter().map(|x| *x as u64).collect(),
                };
                match *to {
                    DType::F32 => Val::floats(
                        ty,
                        bits.iter()
                            .map(|b| f32::from_bits(*b as u32) as f64)
                            .collect(),
                    ),
                    DType::F64 => {
                        Val::floats(ty, bits.iter().map(|b| f64::from_bits(*b)).collect())
                    }
                    d => Val::ints(ty, bits.iter().map(|b| norm_int(d, *b as i64)).collect()),
                }
            }
            Expr::Splat(n, a) => {
                let a = self.expr(a)?;
                let ty = a.ty.with_lanes(*n);
                match a.lanes {
                    Lanes::F(l) if l.len() == 1 => Val::floats(ty, vec![l[0]; *n as usize]),
                    Lanes::I(l) if l.len() == 1 => Val::ints(ty, vec![l[0]; *n as usize]),
                    _ => return self.fail("splat of a vector"),
                }
            }
            Expr::Shuffle(a, b, idx) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                let n = a.len();
                if b.len() != n || idx.iter().any(|&i| i as usize >= 2 * n) {
                    return self.fail(format!(
                        "shuffle of {:?} from {n} and {} lanes",
                        idx,
                        b.len()
                    ));
                }
                let ty = a.ty.with_lanes(idx.len() as u16);
                match (a.lanes, b.lanes) {
                    (Lanes::F(x), Lanes::F(y)) => {
                        Val::floats(ty, super::shuffle_lanes(&x, &y, idx))
                    }
                    (Lanes::I(x), Lanes::I(y)) => Val::ints(ty, super::shuffle_lanes(&x, &y, idx)),
                    _ => return self.fail("shuffle of a float and an integer vector"),
                }
            }
            Expr::Extract(a, i) => {
                let a = self.expr(a)?;
                let i = *i as usize;
                if i >= a.len() {
                    return self.fail(format!("extract of lane {i} from {} lanes", a.len()));
                }
                let ty = a.ty.with_lanes(1);
                match a.lanes {
                    Lanes::F(l) => Val::floats(ty, vec![l[i]]),
                    Lanes::I(l) => Val::ints(ty, vec![l[i]]),
                }
            }
            Expr::Reduce(op, a) => {
                let a = self.expr(a)?;
                let ty = a.ty.with_lanes(1);
                let d = ty.elem;
                match a.lanes {
                    Lanes::F(l) => {
                        let mut acc = l[0];
                        for &x in &l[1..] {
                            acc = norm_float(
                                d,
                                match op {
                                    ReduceOp::Add => acc + x,
                                    ReduceOp::Mul => acc * x,
                                    ReduceOp::Min => fmin(acc, x),
                                    ReduceOp::Max => fmax(acc, x),
                                },
                            );
                        }
                        Val::floats(ty, vec![acc])
                    }
                    Lanes::I(l) => {
                        let un = d.is_unsigned_int();
                        let mut acc = l[0];
                        for &x in &l[1..] {
                            acc = norm_int(
                                d,
                                match op {
                                    ReduceOp::Add => acc.wrapping_add(x),
                                    ReduceOp::Mul => acc.wrapping_mul(x),
                                    ReduceOp::Min if un => (acc as u64).min(x as u64) as i64,
                                    ReduceOp::Max if un => (acc as u64).max(x as u64) as i64,
                                    ReduceOp::Min => acc.min(x),
                                    ReduceOp::Max => acc.max(x),
                                },
                            );
                        }
                        Val::ints(ty, vec![acc])
                    }
                }
            }
            Expr::Call(name, args, ty) => {
                let vals: Vec<Val> = args.iter().map(|a| self.expr(a)).collect::<R<_>>()?;
                let mut out = Vec::with_capacity(ty.lanes as usize);
                for lane in 0..ty.lanes as usize {
                    let xs: Vec<f64> = vals
                        .iter()
                        .map(|v| match &v.lanes {
                            Lanes::F(l) => l[lane.min(l.len() - 1)],
                            Lanes::I(l) => l[lane.min(l.len() - 1)] as f64,
                        })
                        .collect();
                    match call(name, &xs) {
                        Some(y) => out.push(norm_float(ty.elem, y)),
                        None => {
                            return self.fail(format!(
                                "the evaluator does not know function `{name}` of {} arguments",
                                xs.len()
                            ));
                        }
                    }
                }
                if ty.elem.is_float() {
                    Val::floats(*ty, out)
                } else {
                    Val::ints(*ty, out.iter().map(|x| float_to_int(ty.elem, *x)).collect())
                }
            }
        })
    }

    fn unary(&self, op: UnOp, a: Val) -> R<Val> {
        let ty = a.ty;
        let d = ty.elem;
        Ok(match a.lanes {
            Lanes::F(l) => {
                let f = |x: f64| -> f64 {
                    match op {
                        UnOp::Neg => -x,
                        UnOp::Abs => x.abs(),
                        UnOp::Sqrt => x.sqrt(),
                        UnOp::Floor => x.floor(),
                        UnOp::Ceil => x.ceil(),
                        UnOp::Round => x.round_ties_even(),
                        UnOp::Trunc => x.trunc(),
                        UnOp::Not => f64::NAN,
                    }
                };
                if op == UnOp::Not {
                    return self.fail("not of a float");
                }
                Val::floats(ty, l.into_iter().map(|x| norm_float(d, f(x))).collect())
            }
            Lanes::I(l) => {
                let un = d.is_unsigned_int() || d == DType::Bool;
                let f = |x: i64| -> i64 {
                    match op {
                        UnOp::Neg => x.wrapping_neg(),
                        UnOp::Abs if un => x,
                        UnOp::Abs => x.wrapping_abs(),
                        UnOp::Not if d == DType::Bool => (x == 0) as i64,
                        UnOp::Not => !x,
                        UnOp::Sqrt | UnOp::Floor | UnOp::Ceil | UnOp::Round | UnOp::Trunc => x,
                    }
                };
                if op == UnOp::Sqrt {
                    return self.fail("sqrt of an integer");
                }
                Val::ints(ty, l.into_iter().map(|x| norm_int(d, f(x))).collect())
            }
        })
    }

    fn binary(&self, op: BinOp, a: Val, b: Val) -> R<Val> {
        if a.ty != b.ty {
            return self.fail(format!(
                "binary operands of types {}x{} and {}x{}",
                a.ty.elem, a.ty.lanes, b.ty.elem, b.ty.lanes
            ));
        }
        let ty = a.ty;
        let d = ty.elem;
        let cmp_ty = ty.with_elem(DType::Bool);
        use BinOp::*;
        Ok(match (a.lanes, b.lanes) {
            (Lanes::F(x), Lanes::F(y)) => {
                let pairs = x.iter().zip(&y).map(|(a, b)| (*a, *b));
                if op.is_compare() {
                    let v = pairs
                        .map(|(a, b)| {
                            (match op {
                                Eq => a == b,
                                Ne => a != b,
                                Lt => a < b,
                                Le => a <= b,
                                Gt => a > b,
                                _ => a >= b,
                            }) as i64
                        })
                        .collect();
                    return Ok(Val::ints(cmp_ty, v));
                }
                let mut out = Vec::with_capacity(x.len());
                for (a, b) in pairs {
                    out.push(norm_float(
                        d,
                        match op {
                            Add => a + b,
                            Sub => a - b,
                            Mul => a * b,
                            Div => a / b,
                            Rem => a % b,
                            Min => fmin(a, b),
                            Max => fmax(a, b),
                            Ldexp => ldexp(a, b),
                            _ => return self.fail(format!("{op:?} of floats")),
                        },
                    ));
                }
                Val::floats(ty, out)
            }
            (Lanes::I(x), Lanes::I(y)) => {
                let un = d.is_unsigned_int() || d == DType::Bool;
                let bits = d.bits().max(1) as i64;
                let mut out = Vec::with_capacity(x.len());
                for (&a, &b) in x.iter().zip(&y) {
                    let (ua, ub) = (a as u64, b as u64);
                    let v = match op {
                        Add => a.wrapping_add(b),
                        Sub => a.wrapping_sub(b),
                        Mul => a.wrapping_mul(b),
                        Div if b == 0 => 0,
                        Div if un => (ua / ub) as i64,
                        Div => a.wrapping_div(b),
                        Rem if b == 0 || (!un && b == -1) => 0,
                        Rem if un => (ua % ub) as i64,
                        Rem => a % b,
                        Min if un => ua.min(ub) as i64,
                        Max if un => ua.max(ub) as i64,
                        Min => a.min(b),
                        Max => a.max(b),
                        And => a & b,
                        Or => a | b,
                        Xor => a ^ b,
                        Shl => a.wrapping_shl((b & (bits - 1)) as u32),
                        Shr if un => {
                            // Logical: on the zero-extended value of the width.
                            let w = if bits == 64 {
                                ua
                            } else {
                                ua & ((1u64 << bits) - 1)
                            };
                            (w >> (b & (bits - 1))) as i64
                        }
                        Shr => a >> (b & (bits - 1)),
                        Eq => (a == b) as i64,
                        Ne => (a != b) as i64,
                        Lt if un => (ua < ub) as i64,
                        Le if un => (ua <= ub) as i64,
                        Gt if un => (ua > ub) as i64,
                        Ge if un => (ua >= ub) as i64,
                        Lt => (a < b) as i64,
                        Le => (a <= b) as i64,
                        Gt => (a > b) as i64,
                        Ge => (a >= b) as i64,
                        Ldexp => return self.fail("ldexp of integers"),
                    };
                    out.push(if op.is_compare() { v } else { norm_int(d, v) });
                }
                Val::ints(if op.is_compare() { cmp_ty } else { ty }, out)
            }
            _ => return self.fail("binary operands of mixed kinds"),
        })
    }
}

#[derive(Clone, Copy)]
enum Scalar {
    I(i64),
    F(f64),
}

fn fmin(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// `a · 2^floor(b)` ([`BinOp::Ldexp`]) exactly in f64: the scaling is
/// split so that only the last multiplication can round (f32 results are
/// then rounded once more by the caller, from an exact f64 value unless it
/// is far below the smallest f32).
fn ldexp(a: f64, b: f64) -> f64 {
    if b.is_nan() {
        return f64::NAN;
    }
    if b.is_infinite() {
        return match (a.is_nan(), b > 0.0) {
            (true, true) => f64::INFINITY,
            (true, false) => 0.0,
            (false, up) => a * if up { f64::INFINITY } else { 0.0 },
        };
    }
    // Beyond ±2200 every finite f64 has overflowed or underflowed.
    let mut k = b.floor().clamp(-2200.0, 2200.0) as i32;
    let mut y = a;
    let step_up = 2f64.powi(1023);
    // Down in steps that keep a normal value normal (2^-1022 · 2^53).
    let step_down = 2f64.powi(-969);
    while k > 1023 {
        y *= step_up;
        k -= 1023;
    }
    while k < -1022 {
        y *= step_down;
        k += 969;
    }
    y * 2f64.powi(k)
}

fn fmax(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn cast(a: Val, to: DType) -> Val {
    let from = a.ty.elem;
    let ty = a.ty.with_elem(to);
    match a.lanes {
        Lanes::F(l) if to.is_float() => {
            Val::floats(ty, l.into_iter().map(|x| norm_float(to, x)).collect())
        }
        Lanes::F(l) => Val::ints(ty, l.into_iter().map(|x| float_to_int(to, x)).collect()),
        Lanes::I(l) if to.is_float() => Val::floats(
            ty,
            l.into_iter().map(|x| int_to_float(from, to, x)).collect(),
        ),
        Lanes::I(l) => Val::ints(ty, l.into_iter().map(|x| norm_int(to, x)).collect()),
    }
}

/// The C math functions kernels call by name: `f`-suffixed ones in f32.
fn call(name: &str, x: &[f64]) -> Option<f64> {
    let f32_1 = |f: fn(f32) -> f32| (x.len() == 1).then(|| f(x[0] as f32) as f64);
    let f32_2 = |f: fn(f32, f32) -> f32| (x.len() == 2).then(|| f(x[0] as f32, x[1] as f32) as f64);
    let f64_1 = |f: fn(f64) -> f64| (x.len() == 1).then(|| f(x[0]));
    let f64_2 = |f: fn(f64, f64) -> f64| (x.len() == 2).then(|| f(x[0], x[1]));
    match name {
        "expf" => f32_1(libm::expf),
        "exp" => f64_1(libm::exp),
        "exp2f" => f32_1(libm::exp2f),
        "exp2" => f64_1(libm::exp2),
        "expm1f" => f32_1(libm::expm1f),
        "expm1" => f64_1(libm::expm1),
        "logf" => f32_1(libm::logf),
        "log" => f64_1(libm::log),
        "log2f" => f32_1(libm::log2f),
        "log2" => f64_1(libm::log2),
        "log10f" => f32_1(libm::log10f),
        "log10" => f64_1(libm::log10),
        "log1pf" => f32_1(libm::log1pf),
        "log1p" => f64_1(libm::log1p),
        "powf" => f32_2(libm::powf),
        "pow" => f64_2(libm::pow),
        "sqrtf" => f32_1(libm::sqrtf),
        "sqrt" => f64_1(libm::sqrt),
        "cbrtf" => f32_1(libm::cbrtf),
        "cbrt" => f64_1(libm::cbrt),
        "sinf" => f32_1(libm::sinf),
        "sin" => f64_1(libm::sin),
        "cosf" => f32_1(libm::cosf),
        "cos" => f64_1(libm::cos),
        "tanf" => f32_1(libm::tanf),
        "tan" => f64_1(libm::tan),
        "asinf" => f32_1(libm::asinf),
        "asin" => f64_1(libm::asin),
        "acosf" => f32_1(libm::acosf),
        "acos" => f64_1(libm::acos),
        "atanf" => f32_1(libm::atanf),
        "atan" => f64_1(libm::atan),
        "atan2f" => f32_2(libm::atan2f),
        "atan2" => f64_2(libm::atan2),
        "sinhf" => f32_1(libm::sinhf),
        "sinh" => f64_1(libm::sinh),
        "coshf" => f32_1(libm::coshf),
        "cosh" => f64_1(libm::cosh),
        "tanhf" => f32_1(libm::tanhf),
        "tanh" => f64_1(libm::tanh),
        "asinhf" => f32_1(libm::asinhf),
        "asinh" => f64_1(libm::asinh),
        "acoshf" => f32_1(libm::acoshf),
        "acosh" => f64_1(libm::acosh),
        "atanhf" => f32_1(libm::atanhf),
        "atanh" => f64_1(libm::atanh),
        "erff" => f32_1(libm::erff),
        "erf" => f64_1(libm::erf),
        "erfcf" => f32_1(libm::erfcf),
        "erfc" => f64_1(libm::erfc),
        "tgammaf" => f32_1(libm::tgammaf),
        "tgamma" => f64_1(libm::tgamma),
        "lgammaf" => f32_1(libm::lgammaf),
        "lgamma" => f64_1(libm::lgamma),
        "fmodf" => f32_2(libm::fmodf),
        "fmod" => f64_2(libm::fmod),
        "remainderf" => f32_2(libm::remainderf),
        "remainder" => f64_2(libm::remainder),
        "hypotf" => f32_2(libm::hypotf),
        "hypot" => f64_2(libm::hypot),
        "fminf" => f32_2(libm::fminf),
        "fmin" => f64_2(libm::fmin),
        "fmaxf" => f32_2(libm::fmaxf),
        "fmax" => f64_2(libm::fmax),
        "copysignf" => f32_2(libm::copysignf),
        "copysign" => f64_2(libm::copysign),
        "fabsf" => f32_1(libm::fabsf),
        "fabs" => f64_1(libm::fabs),
        "floorf" => f32_1(libm::floorf),
        "floor" => f64_1(libm::floor),
        "ceilf" => f32_1(libm::ceilf),
        "ceil" => f64_1(libm::ceil),
        "truncf" => f32_1(libm::truncf),
        "trunc" => f64_1(libm::trunc),
        "roundf" => f32_1(libm::roundf),
        "round" => f64_1(libm::round),
        "rintf" | "nearbyintf" => f32_1(libm::rintf),
        "rint" | "nearbyint" => f64_1(libm::rint),
        "fmaf" => (x.len() == 3).then(|| libm::fmaf(x[0] as f32, x[1] as f32, x[2] as f32) as f64),
        "fma" => (x.len() == 3).then(|| libm::fma(x[0], x[1], x[2])),
        _ => None,
    }
}
