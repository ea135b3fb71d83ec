//! Building kernels: [`KernelBuilder`] appends statements to the innermost
//! open block; expression helpers fold constant index arithmetic so that
//! printed kernels stay readable.

use super::*;

/// Appends statements to a kernel under construction.
pub struct KernelBuilder {
    k: Kernel,
    blocks: Vec<Vec<Stmt>>,
    /// Loops opened with [`KernelBuilder::begin_for`], innermost last.
    open: Vec<Stmt>,
}

impl KernelBuilder {
    pub fn new(name: impl Into<String>) -> KernelBuilder {
        KernelBuilder {
            k: Kernel::new(name),
            blocks: vec![Vec::new()],
            open: Vec::new(),
        }
    }

    fn add_buf(&mut self, name: &str, dtype: DType, len: Expr, kind: BufKind) -> BufId {
        self.k.bufs.push(Buf {
            name: name.to_string(),
            dtype,
            len,
            kind,
            reuses: None,
        });
        BufId(self.k.bufs.len() as u32 - 1)
    }

    pub fn input(&mut self, name: &str, dtype: DType, len: impl Into<Expr>) -> BufId {
        self.add_buf(name, dtype, len.into(), BufKind::Input)
    }
    pub fn output(&mut self, name: &str, dtype: DType, len: impl Into<Expr>) -> BufId {
        self.add_buf(name, dtype, len.into(), BufKind::Output)
    }
    pub fn scratch(&mut self, name: &str, dtype: DType, len: impl Into<Expr>) -> BufId {
        self.add_buf(name, dtype, len.into(), BufKind::Scratch)
    }

    /// Lets output `out` share the memory of input `input` (see
    /// [`crate::kernel::Buf::reuses`]): only for kernels that read each
    /// element of `input` before they write the same element of `out`,
    /// and write each element of `out` once.
    pub fn reuse(&mut self, out: BufId, input: BufId) {
        self.k.bufs[out.0 as usize].reuses = Some(input);
    }

    /// Declares a runtime extent and returns it as an index expression.
    pub fn dim(&mut self, name: &str) -> Expr {
        self.k.dims.push(name.to_string());
        Expr::Dim(self.k.dims.len() as u32 - 1)
    }

    /// Records a schedule knob.
    pub fn schedule(&mut self, key: &str, value: AttrValue) {
        self.k.schedule.insert(key.to_string(), value);
    }

    pub fn kernel(&self) -> &Kernel {
        &self.k
    }

    pub fn ty(&self, e: &Expr) -> Ty {
        self.k.ty(e)
    }

    fn new_var(&mut self, name: &str, ty: Ty, mutable: bool) -> VarId {
        self.k.vars.push(Var {
            name: name.to_string(),
            ty,
            mutable,
        });
        VarId(self.k.vars.len() as u32 - 1)
    }

    fn push(&mut self, s: Stmt) {
        self.blocks.last_mut().expect("open block").push(s);
    }

    /// Binds `e` to a fresh immutable variable (so that it is computed
    /// once) and returns the variable. Leaves and constants are returned
    /// as they are.
    pub fn let_(&mut self, name: &str, e: Expr) -> Expr {
        if matches!(
            e,
            Expr::Var(_) | Expr::Dim(_) | Expr::Int(..) | Expr::Float(..)
        ) {
            return e;
        }
        let ty = self.ty(&e);
        let var = self.new_var(name, ty, false);
        self.push(Stmt::Let { var, value: e });
        Expr::Var(var)
    }

    /// Declares a mutable local initialised to `init`.
    pub fn decl(&mut self, name: &str, init: Expr) -> VarId {
        let ty = self.ty(&init);
        let var = self.new_var(name, ty, true);
        self.push(Stmt::Decl { var, init });
        var
    }

    pub fn assign(&mut self, var: VarId, value: Expr) {
        self.push(Stmt::Assign { var, value });
    }

    /// Stores a scalar, or a contiguous unmasked vector.
    pub fn store(&mut self, buf: BufId, index: Expr, value: Expr) {
        self.push(Stmt::Store {
            buf,
            index,
            value,
            stride: 1,
            mask: None,
        });
    }

    pub fn store_vec(
        &mut self,
        buf: BufId,
        index: Expr,
        value: Expr,
        stride: i64,
        mask: Option<Expr>,
    ) {
        self.push(Stmt::Store {
            buf,
            index,
            value,
            stride,
            mask,
        });
    }

    /// `prefetch buf[index]`: element `index` of `buf` will be read soon.
    pub fn prefetch(&mut self, buf: BufId, index: Expr) {
        self.push(Stmt::Prefetch { buf, index });
    }

    pub fn call(&mut self, name: &str, args: Vec<Expr>) {
        self.push(Stmt::Call {
            name: name.to_string(),
            args,
        });
    }

    /// A loop `for %name = start to end step step`; `body` receives the
    /// loop variable.
    pub fn for_(
        &mut self,
        name: &str,
        start: impl Into<Expr>,
        end: impl Into<Expr>,
        step: i64,
        kind: LoopKind,
        body: impl FnOnce(&mut Self, Expr),
    ) {
        assert!(step > 0, "loop step must be positive");
        let var = self.new_var(name, Ty::INDEX, false);
        self.blocks.push(Vec::new());
        body(self, Expr::Var(var));
        let body = self.blocks.pop().expect("loop block");
        self.push(Stmt::For {
            var,
            start: start.into(),
            end: end.into(),
            step,
            kind,
            body,
        });
    }

    /// A serial loop from 0 to `end` with step 1.
    pub fn range(&mut self, name: &str, end: impl Into<Expr>, body: impl FnOnce(&mut Self, Expr)) {
        self.for_(name, 0, end, 1, LoopKind::Serial, body)
    }

    /// Opens a loop whose body is everything appended until the matching
    /// [`KernelBuilder::end_for`]; returns the loop variable. For code
    /// that cannot nest its body in a closure.
    pub fn begin_for(
        &mut self,
        name: &str,
        start: impl Into<Expr>,
        end: impl Into<Expr>,
        step: i64,
        kind: LoopKind,
    ) -> Expr {
        assert!(step > 0, "loop step must be positive");
        let var = self.new_var(name, Ty::INDEX, false);
        self.open.push(Stmt::For {
            var,
            start: start.into(),
            end: end.into(),
            step,
            kind,
            body: Vec::new(),
        });
        self.blocks.push(Vec::new());
        Expr::Var(var)
    }

    /// Closes the innermost loop opened with [`KernelBuilder::begin_for`].
    pub fn end_for(&mut self) {
        let mut s = self.open.pop().expect("end_for without begin_for");
        if let Stmt::For { body, .. } = &mut s {
            *body = self.blocks.pop().expect("loop block");
        }
        self.push(s);
    }

    /// Opens a conditional whose body is everything appended until the
    /// matching [`KernelBuilder::end_if`] (no else branch).
    pub fn begin_if(&mut self, cond: Expr) {
        self.open.push(Stmt::If {
            cond,
            then_: Vec::new(),
            else_: Vec::new(),
        });
        self.blocks.push(Vec::new());
    }

    /// Closes the innermost conditional opened with
    /// [`KernelBuilder::begin_if`].
    pub fn end_if(&mut self) {
        let mut s = self.open.pop().expect("end_if without begin_if");
        match &mut s {
            Stmt::If { then_, .. } => *then_ = self.blocks.pop().expect("if block"),
            _ => panic!("end_if closes a loop"),
        }
        self.push(s);
    }

    pub fn if_(
        &mut self,
        cond: Expr,
        then_: impl FnOnce(&mut Self),
        else_: impl FnOnce(&mut Self),
    ) {
        self.blocks.push(Vec::new());
        then_(self);
        let t = self.blocks.pop().expect("then block");
        self.blocks.push(Vec::new());
        else_(self);
        let e = self.blocks.pop().expect("else block");
        self.push(Stmt::If {
            cond,
            then_: t,
            else_: e,
        });
    }

    pub fn finish(mut self) -> Kernel {
        assert!(
            self.blocks.len() == 1 && self.open.is_empty(),
            "unclosed block"
        );
        self.k.body = self.blocks.pop().unwrap();
        self.k
    }
}

impl From<i64> for Expr {
    fn from(v: i64) -> Expr {
        Expr::Int(v, Ty::INDEX)
    }
}

impl From<usize> for Expr {
    fn from(v: usize) -> Expr {
        Expr::Int(v as i64, Ty::INDEX)
    }
}

impl From<i32> for Expr {
    fn from(v: i32) -> Expr {
        Expr::Int(v as i64, Ty::INDEX)
    }
}

impl Expr {
    /// An index constant.
    pub fn idx(v: i64) -> Expr {
        Expr::Int(v, Ty::INDEX)
    }
    pub fn f32(v: f32) -> Expr {
        Expr::Float(v as f64, Ty::F32)
    }
    /// A float constant of element type `ty.elem`.
    pub fn float(v: f64, ty: Ty) -> Expr {
        Expr::Float(v, ty)
    }
    pub fn int(v: i64, ty: Ty) -> Expr {
        Expr::Int(v, ty)
    }
    /// A constant of type `ty` (float or integer as the type requires).
    pub fn constant(v: f64, ty: Ty) -> Expr {
        if ty.elem.is_float() {
            Expr::Float(v, ty)
        } else {
            Expr::Int(v as i64, ty)
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Expr::Int(v, _) => Some(*v),
            _ => None,
        }
    }

    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }
    pub fn un(op: UnOp, a: Expr) -> Expr {
        Expr::Unary(op, Box::new(a))
    }
    pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select(Box::new(c), Box::new(a), Box::new(b))
    }
    pub fn mul_add(a: Expr, b: Expr, c: Expr) -> Expr {
        Expr::MulAdd(Box::new(a), Box::new(b), Box::new(c))
    }
    pub fn cast(self, to: DType) -> Expr {
        Expr::Cast(to, Box::new(self))
    }
    pub fn bitcast(self, to: DType) -> Expr {
        Expr::Bitcast(to, Box::new(self))
    }
    pub fn splat(self, lanes: u16) -> Expr {
        if lanes == 1 {
            return self;
        }
        match self {
            Expr::Int(v, t) => Expr::Int(v, t.with_lanes(lanes)),
            Expr::Float(v, t) => Expr::Float(v, t.with_lanes(lanes)),
            e => Expr::Splat(lanes, Box::new(e)),
        }
    }
    /// [`Expr::Shuffle`] of `a` and `b`.
    pub fn shuffle(a: Expr, b: Expr, idx: Vec<u16>) -> Expr {
        Expr::Shuffle(Box::new(a), Box::new(b), idx)
    }
    pub fn min(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Min, self, o)
    }
    pub fn max(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Max, self, o)
    }
    pub fn lt(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Lt, self, o)
    }
    pub fn ge(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Ge, self, o)
    }

    /// `buf[index]` as a scalar.
    pub fn load(buf: BufId, index: Expr) -> Expr {
        Expr::Load {
            buf,
            index: Box::new(index),
            lanes: 1,
            stride: 1,
            mask: None,
        }
    }

    /// `lanes` elements from `buf[index]`, `stride` apart, optionally masked.
    pub fn load_vec(buf: BufId, index: Expr, lanes: u16, stride: i64, mask: Option<Expr>) -> Expr {
        Expr::Load {
            buf,
            index: Box::new(index),
            lanes,
            stride,
            mask: mask.map(Box::new),
        }
    }
}

/// Index arithmetic folds constants (`0 + x`, `1 * x`, `c1 * c2`) so that
/// lowered kernels print compactly. Only integer constants are folded.
fn fold(op: BinOp, a: Expr, b: Expr) -> Expr {
    match (op, a.as_int(), b.as_int()) {
        (BinOp::Add, Some(x), Some(y)) if same_ty(&a, &b) => Expr::Int(x + y, int_ty(&a)),
        (BinOp::Sub, Some(x), Some(y)) if same_ty(&a, &b) => Expr::Int(x - y, int_ty(&a)),
        (BinOp::Mul, Some(x), Some(y)) if same_ty(&a, &b) => Expr::Int(x * y, int_ty(&a)),
        (BinOp::Add, Some(0), _) if same_ty(&a, &b) => b,
        (BinOp::Add | BinOp::Sub, _, Some(0)) if same_ty(&a, &b) => a,
        (BinOp::Mul, Some(1), _) if same_ty(&a, &b) => b,
        (BinOp::Mul | BinOp::Div, _, Some(1)) if same_ty(&a, &b) => a,
        (BinOp::Mul, Some(0), _) | (BinOp::Mul, _, Some(0))
            if same_ty(&a, &b) && (is_index(&a) || is_index(&b)) =>
        {
            Expr::idx(0)
        }
        _ => Expr::bin(op, a, b),
    }
}

fn int_ty(e: &Expr) -> Ty {
    match e {
        Expr::Int(_, t) => *t,
        _ => Ty::INDEX,
    }
}

fn is_index(e: &Expr) -> bool {
    matches!(e, Expr::Int(_, t) if *t == Ty::INDEX)
}

/// Folding only applies when a constant operand is index-typed (the other
/// operand's type is then the index type too, in a well-typed kernel).
fn same_ty(a: &Expr, b: &Expr) -> bool {
    let ca = matches!(a, Expr::Int(_, t) if *t == Ty::INDEX);
    let cb = matches!(b, Expr::Int(_, t) if *t == Ty::INDEX);
    match (a, b) {
        (Expr::Int(_, x), Expr::Int(_, y)) => x == y,
        _ => ca || cb,
    }
}

macro_rules! op_impl {
    ($tr:ident, $f:ident, $op:expr) => {
        impl std::ops::$tr for Expr {
            type Output = Expr;
            fn $f(self, o: Expr) -> Expr {
                fold($op, self, o)
            }
        }
        impl std::ops::$tr<i64> for Expr {
            type Output = Expr;
            fn $f(self, o: i64) -> Expr {
                fold($op, self, Expr::idx(o))
            }
        }
    };
}
op_impl!(Add, add, BinOp::Add);
op_impl!(Sub, sub, BinOp::Sub);
op_impl!(Mul, mul, BinOp::Mul);
op_impl!(Div, div, BinOp::Div);
op_impl!(Rem, rem, BinOp::Rem);

impl std::ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        Expr::un(UnOp::Neg, self)
    }
}
