//! Kernel IR: loop nests over flat buffers.
//!
//! A [`Kernel`] is what one fused group of graph ops becomes: a function of
//! buffers (each a flat array of one dtype) and runtime extents
//! ([`Expr::Dim`]), whose body is a tree of statements: loops (serial,
//! parallel, unrolled), immutable `let` bindings, mutable locals for
//! reductions, stores, conditionals, intrinsic calls and prefetch hints.
//! Expressions are typed trees over scalars and vectors ([`Ty`]: a dtype
//! and a lane count); vector loads and stores have a stride and an
//! optional mask (the number of active lanes, for remainders).
//!
//! Every buffer index is in elements, of type `i64` (the index type).
//! Booleans are one byte in memory (0 or 1), as in ONNX tensors.
//!
//! Schedule knobs (tile sizes, vector width, unroll factors, which loop is
//! parallel) are recorded in [`Kernel::schedule`], so a snapshot pins them
//! and the auto-tuner can set them.
//!
//! Math functions (exp, log, tanh, erf, …) are not primitives: [`math`]
//! expands them into polynomial code in the IR.

pub mod build;
pub mod eval;
pub mod math;
pub mod text;
pub mod verify;

use crate::attr::AttrValue;
use crate::dtype::DType;
use std::collections::BTreeMap;

/// A buffer of a kernel, by position in [`Kernel::bufs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// A variable of a kernel, by position in [`Kernel::vars`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(pub u32);

/// The type of an expression: an element type and a lane count (1 for a
/// scalar). The index type is `i64 x 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ty {
    pub elem: DType,
    pub lanes: u16,
}

impl Ty {
    pub const INDEX: Ty = Ty::scalar(DType::I64);
    pub const BOOL: Ty = Ty::scalar(DType::Bool);
    pub const F32: Ty = Ty::scalar(DType::F32);

    pub const fn scalar(elem: DType) -> Ty {
        Ty { elem, lanes: 1 }
    }
    pub const fn vector(elem: DType, lanes: u16) -> Ty {
        Ty { elem, lanes }
    }
    pub fn with_lanes(self, lanes: u16) -> Ty {
        Ty { lanes, ..self }
    }
    pub fn with_elem(self, elem: DType) -> Ty {
        Ty { elem, ..self }
    }
    pub fn is_vector(self) -> bool {
        self.lanes > 1
    }
}

/// Element types Kernel IR computes in.
pub fn is_kernel_dtype(d: DType) -> bool {
    use DType::*;
    matches!(
        d,
        Bool | I8 | I16 | I32 | I64 | U8 | U16 | U32 | U64 | F32 | F64
    )
}

/// What a buffer is to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufKind {
    /// Read only.
    Input,
    /// Written (and possibly read back).
    Output,
    /// Local working memory, provided by the runtime for the duration of
    /// one call; its contents on entry are unspecified.
    Scratch,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Buf {
    pub name: String,
    pub dtype: DType,
    /// Length in elements; may use [`Expr::Dim`]s.
    pub len: Expr,
    pub kind: BufKind,
    /// For an output: an input of the same dtype and length that may share
    /// its memory (text `reuses %x`). The kernel promises to read element
    /// `i` of that input only before it writes element `i` of this output,
    /// and to write each element of the output once, reading none back, so
    /// that the runtime may write a residual's sum over the residual when
    /// nothing reads it later.
    pub reuses: Option<BufId>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    pub name: String,
    pub ty: Ty,
    /// Assigned after its definition (`var`), rather than bound once
    /// (`let`, loop variables).
    pub mutable: bool,
}

/// A kernel: a function of buffers and runtime extents.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Kernel {
    pub name: String,
    pub bufs: Vec<Buf>,
    /// Names of the runtime extents, in the order the caller passes them.
    pub dims: Vec<String>,
    pub vars: Vec<Var>,
    /// Schedule knobs set by the heuristic (or the tuner): e.g.
    /// `vector = 4`, `tile = [4, 8]`, `unroll = 2`, `parallel = "i"`.
    pub schedule: BTreeMap<String, AttrValue>,
    pub body: Vec<Stmt>,
}

/// How a loop runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopKind {
    Serial,
    /// Iterations are independent and may run on several threads.
    Parallel,
    /// Serial, unrolled by this factor by the code generator.
    Unroll(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `let %v = e`: binds an immutable variable.
    Let { var: VarId, value: Expr },
    /// `var %v = e`: declares a mutable local (reduction accumulators).
    Decl { var: VarId, init: Expr },
    /// `%v = e` for a variable declared with [`Stmt::Decl`].
    Assign { var: VarId, value: Expr },
    /// `store buf[index] = value`; a vector value writes `lanes` elements
    /// `stride` apart, the first `mask` of them when a mask is given.
    Store {
        buf: BufId,
        index: Expr,
        value: Expr,
        stride: i64,
        mask: Option<Expr>,
    },
    /// `for %v = start to end step s`: `%v` takes start, start+s, … while
    /// below end. `step` is positive.
    For {
        var: VarId,
        start: Expr,
        end: Expr,
        step: i64,
        kind: LoopKind,
        body: Vec<Stmt>,
    },
    If {
        cond: Expr,
        then_: Vec<Stmt>,
        else_: Vec<Stmt>,
    },
    /// A named intrinsic called for its effect.
    Call { name: String, args: Vec<Expr> },
    /// `prefetch buf[index]`: a hint that element `index` of `buf` will be
    /// read soon. No effect on the results; the index may lie outside the
    /// buffer (nothing is read then).
    Prefetch { buf: BufId, index: Expr },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Abs,
    Sqrt,
    Floor,
    Ceil,
    /// Round half to even.
    Round,
    Trunc,
    /// Logical not for bool, bitwise not for integers.
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    /// Float division, or integer division truncating toward zero.
    Div,
    /// Remainder with the sign of the dividend (C's `fmod` for floats).
    Rem,
    /// For floats: NaN if either operand is NaN.
    Min,
    Max,
    And,
    Or,
    Xor,
    Shl,
    /// Arithmetic for signed, logical for unsigned integers.
    Shr,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Floats only: `a · 2^floor(b)`, rounded once, with `2^+inf = +inf`
    /// and `2^-inf = +0` (so `0 · 2^+inf` and `inf · 2^-inf` are NaN, as
    /// for a multiplication); NaN if `b` is NaN, or if `a` is NaN and `b`
    /// finite, while a NaN `a` scaled by `2^+inf` gives `+inf` and by
    /// `2^-inf` gives `+0`. That is AVX-512's `vscalefps`, exactly (its
    /// table of special cases); code generators without such an
    /// instruction multiply by three powers of two built from exponent
    /// bits, which is exact except for double rounding of results in the
    /// subnormal range.
    Ldexp,
}

impl BinOp {
    pub fn is_compare(self) -> bool {
        use BinOp::*;
        matches!(self, Eq | Ne | Lt | Le | Gt | Ge)
    }
}

/// Horizontal reductions over the lanes of a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Add,
    Mul,
    Min,
    Max,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Var(VarId),
    /// The runtime extent `Kernel::dims[i]` (index type).
    Dim(u32),
    /// An integer (or bool) constant, splatted when `ty` is a vector.
    Int(i64, Ty),
    /// A float constant, splatted when `ty` is a vector.
    Float(f64, Ty),
    /// `lanes` elements of `buf` from `index`, `stride` apart; with a mask,
    /// only the first `mask` lanes are read (the rest are zero).
    Load {
        buf: BufId,
        index: Box<Expr>,
        lanes: u16,
        stride: i64,
        mask: Option<Box<Expr>>,
    },
    Unary(UnOp, Box<Expr>),
    /// Both operands have the same type; comparisons yield bool lanes.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `a * b + c`, fused where the target has it.
    MulAdd(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Lane-wise choice; the condition is bool with the lanes of the arms.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Value conversion to another element type (same lanes). Float to
    /// integer truncates toward zero and saturates; to bool is `!= 0`.
    Cast(DType, Box<Expr>),
    /// Reinterprets the bits as another element type of the same width.
    Bitcast(DType, Box<Expr>),
    /// A scalar repeated over `lanes` lanes.
    Splat(u16, Box<Expr>),
    /// One lane of a vector.
    Extract(Box<Expr>, u16),
    /// `shuffle(a, b, [i, …])`: a vector of the listed lanes of `a` and
    /// `b` (of one type) taken as one vector of twice the lanes: lane `i`
    /// of `a` for `i < lanes`, else lane `i - lanes` of `b`. As many lanes
    /// as indices.
    Shuffle(Box<Expr>, Box<Expr>, Vec<u16>),
    /// Horizontal reduction of a vector to a scalar.
    Reduce(ReduceOp, Box<Expr>),
    /// A pure named intrinsic returning `ty`.
    Call(String, Vec<Expr>, Ty),
}

impl Kernel {
    pub fn new(name: impl Into<String>) -> Kernel {
        Kernel {
            name: name.into(),
            ..Kernel::default()
        }
    }

    pub fn buf(&self, b: BufId) -> &Buf {
        &self.bufs[b.0 as usize]
    }

    pub fn var(&self, v: VarId) -> &Var {
        &self.vars[v.0 as usize]
    }

    /// The type of `e` in this kernel.
    pub fn ty(&self, e: &Expr) -> Ty {
        match e {
            Expr::Var(v) => self.var(*v).ty,
            Expr::Dim(_) => Ty::INDEX,
            Expr::Int(_, t) | Expr::Float(_, t) => *t,
            Expr::Load { buf, lanes, .. } => Ty::vector(self.buf(*buf).dtype, *lanes),
            Expr::Unary(_, a) => self.ty(a),
            Expr::Binary(op, a, _) => {
                let t = self.ty(a);
                if op.is_compare() {
                    t.with_elem(DType::Bool)
                } else {
                    t
                }
            }
            Expr::MulAdd(a, _, _) => self.ty(a),
            Expr::Select(_, a, _) => self.ty(a),
            Expr::Cast(d, a) | Expr::Bitcast(d, a) => self.ty(a).with_elem(*d),
            Expr::Splat(n, a) => self.ty(a).with_lanes(*n),
            Expr::Extract(a, _) | Expr::Reduce(_, a) => self.ty(a).with_lanes(1),
            Expr::Shuffle(a, _, idx) => self.ty(a).with_lanes(idx.len() as u16),
            Expr::Call(_, _, t) => *t,
        }
    }

    /// Total number of parallel loops (for reports and tests).
    pub fn count_loops(&self, pred: impl Fn(LoopKind) -> bool + Copy) -> usize {
        fn go(s: &[Stmt], pred: impl Fn(LoopKind) -> bool + Copy) -> usize {
            s.iter()
                .map(|s| match s {
                    Stmt::For { kind, body, .. } => pred(*kind) as usize + go(body, pred),
                    Stmt::If { then_, else_, .. } => go(then_, pred) + go(else_, pred),
                    _ => 0,
                })
                .sum()
        }
        go(&self.body, pred)
    }
}

impl Kernel {
    /// Which buffers the body reads, writes or prefetches.
    pub fn used_bufs(&self) -> Vec<bool> {
        let mut used = vec![false; self.bufs.len()];
        let mut mark = |b: BufId| {
            if let Some(u) = used.get_mut(b.0 as usize) {
                *u = true;
            }
        };
        // The buffers statements name (loads are expressions, below).
        fn named(stmts: &[Stmt], mark: &mut impl FnMut(BufId)) {
            for s in stmts {
                match s {
                    Stmt::Store { buf, .. } | Stmt::Prefetch { buf, .. } => mark(*buf),
                    Stmt::For { body, .. } => named(body, mark),
                    Stmt::If { then_, else_, .. } => {
                        named(then_, mark);
                        named(else_, mark);
                    }
                    _ => {}
                }
            }
        }
        named(&self.body, &mut mark);
        visit_exprs(&self.body, &mut |e| {
            if let Expr::Load { buf, .. } = e {
                mark(*buf);
            }
        });
        used
    }

    /// Keeps the buffers `keep` says to (in order) and renumbers every
    /// reference; the body must not use a dropped buffer.
    pub fn retain_bufs(&mut self, keep: &[bool]) {
        let mut map = Vec::with_capacity(self.bufs.len());
        let mut next = 0u32;
        for &k in keep {
            map.push(k.then(|| {
                next += 1;
                BufId(next - 1)
            }));
        }
        let mut i = 0;
        self.bufs.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        for b in &mut self.bufs {
            b.reuses = b.reuses.and_then(|r| map[r.0 as usize]);
        }
        let remap = |b: &mut BufId| {
            *b = map[b.0 as usize].expect("a dropped buffer is used");
        };
        fn expr(e: &mut Expr, f: &impl Fn(&mut BufId)) {
            match e {
                Expr::Var(_) | Expr::Dim(_) | Expr::Int(..) | Expr::Float(..) => {}
                Expr::Load {
                    buf, index, mask, ..
                } => {
                    f(buf);
                    expr(index, f);
                    if let Some(m) = mask {
                        expr(m, f);
                    }
                }
                Expr::Unary(_, a)
                | Expr::Cast(_, a)
                | Expr::Bitcast(_, a)
                | Expr::Splat(_, a)
                | Expr::Extract(a, _)
                | Expr::Reduce(_, a) => expr(a, f),
                Expr::Binary(_, a, b) | Expr::Shuffle(a, b, _) => {
                    expr(a, f);
                    expr(b, f);
                }
                Expr::MulAdd(a, b, c) | Expr::Select(a, b, c) => {
                    expr(a, f);
                    expr(b, f);
                    expr(c, f);
                }
                Expr::Call(_, args, _) => args.iter_mut().for_each(|a| expr(a, f)),
            }
        }
        fn block(stmts: &mut [Stmt], f: &impl Fn(&mut BufId)) {
            for s in stmts {
                match s {
                    Stmt::Let { value, .. } | Stmt::Assign { value, .. } => expr(value, f),
                    Stmt::Decl { init, .. } => expr(init, f),
                    Stmt::Store {
                        buf,
                        index,
                        value,
                        mask,
                        ..
                    } => {
                        f(buf);
                        expr(index, f);
                        expr(value, f);
                        if let Some(m) = mask {
                            expr(m, f);
                        }
                    }
                    Stmt::For {
                        start, end, body, ..
                    } => {
                        expr(start, f);
                        expr(end, f);
                        block(body, f);
                    }
                    Stmt::If { cond, then_, else_ } => {
                        expr(cond, f);
                        block(then_, f);
                        block(else_, f);
                    }
                    Stmt::Call { args, .. } => args.iter_mut().for_each(|a| expr(a, f)),
                    Stmt::Prefetch { buf, index } => {
                        f(buf);
                        expr(index, f);
                    }
                }
            }
        }
        for b in &mut self.bufs {
            expr(&mut b.len, &remap);
        }
        block(&mut self.body, &remap);
    }
}

/// The lanes `idx` of `a` and `b` taken as one vector of twice the lanes
/// (the meaning of [`Expr::Shuffle`]); every index below `2·a.len()`.
pub fn shuffle_lanes<T: Copy>(a: &[T], b: &[T], idx: &[u16]) -> Vec<T> {
    let n = a.len();
    idx.iter()
        .map(|&i| {
            let i = i as usize;
            if i < n { a[i] } else { b[i - n] }
        })
        .collect()
}

/// Walks every expression of a statement list, outermost first.
pub fn visit_exprs<'a>(stmts: &'a [Stmt], f: &mut impl FnMut(&'a Expr)) {
    fn expr<'a>(e: &'a Expr, f: &mut impl FnMut(&'a Expr)) {
        f(e);
        match e {
            Expr::Var(_) | Expr::Dim(_) | Expr::Int(..) | Expr::Float(..) => {}
            Expr::Load { index, mask, .. } => {
                expr(index, f);
                if let Some(m) = mask {
                    expr(m, f);
                }
            }
            Expr::Unary(_, a)
            | Expr::Cast(_, a)
            | Expr::Bitcast(_, a)
            | Expr::Splat(_, a)
            | Expr::Extract(a, _)
            | Expr::Reduce(_, a) => expr(a, f),
            Expr::Binary(_, a, b) | Expr::Shuffle(a, b, _) => {
                expr(a, f);
                expr(b, f);
            }
            Expr::MulAdd(a, b, c) | Expr::Select(a, b, c) => {
                expr(a, f);
                expr(b, f);
                expr(c, f);
            }
            Expr::Call(_, args, _) => args.iter().for_each(|a| expr(a, f)),
        }
    }
    for s in stmts {
        match s {
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => expr(value, f),
            Stmt::Decl { init, .. } => expr(init, f),
            Stmt::Store {
                index, value, mask, ..
            } => {
                expr(index, f);
                expr(value, f);
                if let Some(m) = mask {
                    expr(m, f);
                }
            }
            Stmt::For {
                start, end, body, ..
            } => {
                expr(start, f);
                expr(end, f);
                visit_exprs(body, f);
            }
            Stmt::If { cond, then_, else_ } => {
                expr(cond, f);
                visit_exprs(then_, f);
                visit_exprs(else_, f);
            }
            Stmt::Call { args, .. } => args.iter().for_each(|a| expr(a, f)),
            Stmt::Prefetch { index, .. } => expr(index, f),
        }
    }
}
