//! The Kernel IR text format: printer and parser.
//!
//! ```text
//! # Lines starting with '#' are comments.
//! kernel @add_relu(in %x: f32[1024], in %b: f32[64], out %y: f32[1024], scratch %t: f32[%n * 4]) dims(%n) schedule {tile = [4, 8], vector = 4} {
//!   parallel for %i = 0 to 16 {
//!     for %j = 0 to 64 step 4 {
//!       let %a: f32x4 = load %x[%i * 64 + %j] x4
//!       store %y[%i * 64 + %j] x4 = max(%a + load %b[%j] x4, 0.0: f32x4)
//!     }
//!   }
//! }
//! ```
//!
//! - Buffers are `in`, `out` or `scratch` parameters with a dtype and a
//!   length; runtime extents are listed in `dims(…)`; the schedule is a map
//!   of attribute values written as in Graph IR text.
//! - Types are `f32` (a scalar) or `f32x4` (four lanes). Index constants
//!   (`i64` scalars) are bare numbers; every other constant carries its
//!   type: `1.5: f32`, `-inf: f32x4`, `nan: f64`, `3: i32`. Float
//!   constants are printed in the shortest form that reads back to the same
//!   `f64`.
//! - Arithmetic is infix with Rust's precedence (`* / %`, then `+ -`, then
//!   `<< >>`, `&`, `^`, `|`, and last the comparisons, which do not chain);
//!   the other operations are named: `min(a, b)`, `max`, `neg(a)`, `abs`,
//!   `sqrt`, `floor`, `ceil`, `round`, `trunc`, `not`, `fma(a, b, c)`,
//!   `select(c, a, b)`, `cast<i32>(e)`, `bitcast<f32>(e)`, `splat<4>(e)`,
//!   `extract(e, 2)`, `reduce_add(e)` (`_mul`, `_min`, `_max`),
//!   `call @expf(e): f32`.
//! - Loads are `load %buf[index]` with the suffixes `x4` (lanes),
//!   `stride 3` and `mask m` (a mask that is not a name or a constant is
//!   parenthesised); stores are `store %buf[index] x4 stride 3 mask m = e`.
//! - Statements: `let %a: f32 = e`, `var %acc: f32 = e`, `%acc = e`,
//!   `for %i = 0 to %n step 4 { … }` (also `parallel for`, `unroll 4 for`),
//!   `if c { … } else { … }`, `call @name(args)`, `prefetch %buf[index]`.
//!
//! Names need not be unique in a [`Kernel`]; the printer makes them unique
//! (`%n`, `%n.1`, …) over buffers, extents and variables together, so the
//! parser, which resolves names by scope, gets back the same structure:
//! `print(parse(print(k))) == print(k)`. In hand-written text a name may
//! be defined again: inside its scope that shadows it with a new variable;
//! outside, with the same type and mutability, it is the same variable
//! (sibling loops can both use `%j`). The type of a `let` or `var` may be
//! left out where the value's type is clear. As in Graph IR, `-` and `.`
//! may be part of a name, so `%a-%b` is the name `%a-` followed by `%b`:
//! space the operators, as the printer does.
//!
//! The parser checks syntax and names only; [`super::verify::verify_kernel`]
//! checks types.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write};

use super::*;
use crate::text::lexer::{Tok, Token, lex};
use crate::text::parse::{ParseError, Parser, is_float_text, parse_f64};
use crate::text::print::{attr_text, float_text, name_token};

/// A parse error at a line and column (both from 1), saying what was
/// expected; the same type Graph IR text uses.
pub type KernelParseError = ParseError;

type PResult<T> = Result<T, KernelParseError>;

// ---------------------------------------------------------------------------
// Syntax of the operators, declared once for the printer and the parser.

/// Binding strength of an infix operator; higher binds tighter.
const PREC_CMP: u8 = 1;
/// Names, constants, calls, loads and parenthesised expressions.
const PREC_PRIMARY: u8 = 8;

/// How a binary operator is written.
enum BinSyntax {
    Infix(&'static str, u8),
    Named(&'static str),
}

fn bin_syntax(op: BinOp) -> BinSyntax {
    use BinOp::*;
    use BinSyntax::*;
    match op {
        Mul => Infix("*", 7),
        Div => Infix("/", 7),
        Rem => Infix("%", 7),
        Add => Infix("+", 6),
        Sub => Infix("-", 6),
        Shl => Infix("<<", 5),
        Shr => Infix(">>", 5),
        And => Infix("&", 4),
        Xor => Infix("^", 3),
        Or => Infix("|", 2),
        Eq => Infix("==", PREC_CMP),
        Ne => Infix("!=", PREC_CMP),
        Lt => Infix("<", PREC_CMP),
        Le => Infix("<=", PREC_CMP),
        Gt => Infix(">", PREC_CMP),
        Ge => Infix(">=", PREC_CMP),
        Min => Named("min"),
        Max => Named("max"),
        Ldexp => Named("ldexp"),
    }
}

const BIN_OPS: [BinOp; 19] = {
    use BinOp::*;
    [
        Add, Sub, Mul, Div, Rem, Min, Max, And, Or, Xor, Shl, Shr, Eq, Ne, Lt, Le, Gt, Ge, Ldexp,
    ]
};

/// How a binary operator reads in messages: `+`, `min`.
pub(crate) fn bin_name(op: BinOp) -> &'static str {
    match bin_syntax(op) {
        BinSyntax::Infix(s, _) | BinSyntax::Named(s) => s,
    }
}

pub(crate) fn un_name(op: UnOp) -> &'static str {
    use UnOp::*;
    match op {
        Neg => "neg",
        Abs => "abs",
        Sqrt => "sqrt",
        Floor => "floor",
        Ceil => "ceil",
        Round => "round",
        Trunc => "trunc",
        Not => "not",
    }
}

const UN_OPS: [UnOp; 8] = {
    use UnOp::*;
    [Neg, Abs, Sqrt, Floor, Ceil, Round, Trunc, Not]
};

pub(crate) fn reduce_name(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::Add => "reduce_add",
        ReduceOp::Mul => "reduce_mul",
        ReduceOp::Min => "reduce_min",
        ReduceOp::Max => "reduce_max",
    }
}

const REDUCE_OPS: [ReduceOp; 4] = [ReduceOp::Add, ReduceOp::Mul, ReduceOp::Min, ReduceOp::Max];

fn kind_name(k: BufKind) -> &'static str {
    match k {
        BufKind::Input => "in",
        BufKind::Output => "out",
        BufKind::Scratch => "scratch",
    }
}

/// `f32` for a scalar, `f32x4` for a vector.
pub fn ty_text(t: Ty) -> String {
    if t.lanes == 1 {
        t.elem.to_string()
    } else {
        format!("{}x{}", t.elem, t.lanes)
    }
}

fn parse_ty_text(s: &str) -> Option<Ty> {
    if let Ok(d) = s.parse::<DType>() {
        return Some(Ty::scalar(d));
    }
    let (d, n) = s.rsplit_once('x')?;
    let lanes = lanes_text(n)?;
    Some(Ty::vector(d.parse().ok()?, lanes))
}

/// The digits of a lane count (`4` in `x4`).
fn lanes_text(n: &str) -> Option<u16> {
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// An integer constant's digits: as the unsigned value for `u64` (where the
/// two spellings are one-to-one), else the stored `i64`.
fn int_text(v: i64, t: Ty) -> String {
    if t.elem == DType::U64 {
        (v as u64).to_string()
    } else {
        v.to_string()
    }
}

/// A schedule key: bare when it lexes as an identifier.
fn key_text(k: &str) -> String {
    let ident = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ident {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// The type of `e`, or `None` where it refers to something that does not
/// exist. Mirrors [`Kernel::ty`] without panicking.
pub(crate) fn try_ty(k: &Kernel, e: &Expr) -> Option<Ty> {
    Some(match e {
        Expr::Var(v) => k.vars.get(v.0 as usize)?.ty,
        Expr::Dim(_) => Ty::INDEX,
        Expr::Int(_, t) | Expr::Float(_, t) => *t,
        Expr::Load { buf, lanes, .. } => Ty::vector(k.bufs.get(buf.0 as usize)?.dtype, *lanes),
        Expr::Unary(_, a) | Expr::MulAdd(a, _, _) | Expr::Select(_, a, _) => try_ty(k, a)?,
        Expr::Binary(op, a, _) => {
            let t = try_ty(k, a)?;
            if op.is_compare() {
                t.with_elem(DType::Bool)
            } else {
                t
            }
        }
        Expr::Cast(d, a) | Expr::Bitcast(d, a) => try_ty(k, a)?.with_elem(*d),
        Expr::Splat(n, a) => try_ty(k, a)?.with_lanes(*n),
        Expr::Extract(a, _) | Expr::Reduce(_, a) => try_ty(k, a)?.with_lanes(1),
        Expr::Shuffle(a, _, idx) => try_ty(k, a)?.with_lanes(idx.len() as u16),
        Expr::Call(_, _, t) => *t,
    })
}

// ---------------------------------------------------------------------------
// Printing

/// Prints a kernel in the text format.
pub fn print_kernel(k: &Kernel) -> String {
    Printer::new(k).kernel()
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print_kernel(self))
    }
}

/// The unique printed names (`%n`, `%n.1`) of a kernel's buffers, extents
/// and variables.
struct Names {
    bufs: Vec<String>,
    dims: Vec<String>,
    vars: Vec<String>,
}

impl Names {
    /// Buffers first, then extents, then variables in the order the body
    /// defines them (those never defined last, by id).
    fn new(k: &Kernel) -> Names {
        fn unique(used: &mut HashSet<String>, base: &str) -> String {
            let mut name = base.to_string();
            let mut n = 0;
            while used.contains(&name) {
                n += 1;
                name = format!("{base}.{n}");
            }
            used.insert(name.clone());
            name_token('%', &name)
        }
        fn defs(stmts: &[Stmt], f: &mut impl FnMut(VarId)) {
            for s in stmts {
                match s {
                    Stmt::Let { var, .. } | Stmt::Decl { var, .. } => f(*var),
                    Stmt::For { var, body, .. } => {
                        f(*var);
                        defs(body, f);
                    }
                    Stmt::If { then_, else_, .. } => {
                        defs(then_, f);
                        defs(else_, f);
                    }
                    Stmt::Assign { .. }
                    | Stmt::Store { .. }
                    | Stmt::Call { .. }
                    | Stmt::Prefetch { .. } => {}
                }
            }
        }
        let mut used = HashSet::new();
        let bufs = k.bufs.iter().map(|b| unique(&mut used, &b.name)).collect();
        let dims = k.dims.iter().map(|d| unique(&mut used, d)).collect();
        let mut vars: Vec<Option<String>> = vec![None; k.vars.len()];
        defs(&k.body, &mut |v| {
            if let Some(slot @ None) = vars.get_mut(v.0 as usize) {
                *slot = Some(unique(&mut used, &k.vars[v.0 as usize].name));
            }
        });
        let vars = vars
            .into_iter()
            .zip(&k.vars)
            .map(|(n, v)| n.unwrap_or_else(|| unique(&mut used, &v.name)))
            .collect();
        Names { bufs, dims, vars }
    }
}

/// Prints the parts of one kernel; also used by the verifier to show the
/// offending statement and expression.
pub(crate) struct Printer<'a> {
    k: &'a Kernel,
    names: Names,
}

impl<'a> Printer<'a> {
    pub(crate) fn new(k: &'a Kernel) -> Printer<'a> {
        Printer {
            k,
            names: Names::new(k),
        }
    }

    // Names of things that do not exist print as `%?…`, which does not
    // parse: only ill-formed kernels have them.
    pub(crate) fn buf(&self, b: BufId) -> String {
        let n = self.names.bufs.get(b.0 as usize);
        n.cloned().unwrap_or_else(|| format!("%?buf{}", b.0))
    }

    pub(crate) fn var(&self, v: VarId) -> String {
        let n = self.names.vars.get(v.0 as usize);
        n.cloned().unwrap_or_else(|| format!("%?var{}", v.0))
    }

    fn dim(&self, d: u32) -> String {
        let n = self.names.dims.get(d as usize);
        n.cloned().unwrap_or_else(|| format!("%?dim{d}"))
    }

    fn var_ty(&self, v: VarId) -> String {
        match self.k.vars.get(v.0 as usize) {
            Some(var) => ty_text(var.ty),
            None => "?".into(),
        }
    }

    /// An expression on one line.
    pub(crate) fn expr(&self, e: &Expr) -> String {
        self.expr_prec(e).0
    }

    /// `e`, parenthesised unless it binds at least as tightly as `min`.
    fn operand(&self, e: &Expr, min: u8) -> String {
        let (s, p) = self.expr_prec(e);
        if p < min { format!("({s})") } else { s }
    }

    fn args(&self, args: &[&Expr]) -> String {
        let items: Vec<String> = args.iter().map(|a| self.expr(a)).collect();
        items.join(", ")
    }

    /// The suffixes of a load or store: ` x4 stride 3 mask %m`.
    fn access(&self, lanes: Option<u16>, stride: i64, mask: Option<&Expr>) -> String {
        let mut s = String::new();
        if let Some(l) = lanes.filter(|&l| l != 1) {
            let _ = write!(s, " x{l}");
        }
        if stride != 1 {
            let _ = write!(s, " stride {stride}");
        }
        if let Some(m) = mask {
            let _ = write!(s, " mask {}", self.operand(m, PREC_PRIMARY));
        }
        s
    }

    fn expr_prec(&self, e: &Expr) -> (String, u8) {
        let s = match e {
            Expr::Var(v) => self.var(*v),
            Expr::Dim(d) => self.dim(*d),
            Expr::Int(v, t) if *t == Ty::INDEX => v.to_string(),
            Expr::Int(v, t) => format!("{}: {}", int_text(*v, *t), ty_text(*t)),
            Expr::Float(v, t) => format!("{}: {}", float_text(*v), ty_text(*t)),
            Expr::Load {
                buf,
                index,
                lanes,
                stride,
                mask,
            } => format!(
                "load {}[{}]{}",
                self.buf(*buf),
                self.expr(index),
                self.access(Some(*lanes), *stride, mask.as_deref())
            ),
            Expr::Unary(op, a) => format!("{}({})", un_name(*op), self.expr(a)),
            Expr::Binary(op, a, b) => match bin_syntax(*op) {
                BinSyntax::Infix(sym, p) => {
                    // Left-associative; comparisons do not chain.
                    let left_min = if p == PREC_CMP { p + 1 } else { p };
                    let s = format!(
                        "{} {sym} {}",
                        self.operand(a, left_min),
                        self.operand(b, p + 1)
                    );
                    return (s, p);
                }
                BinSyntax::Named(name) => format!("{name}({})", self.args(&[a, b])),
            },
            Expr::MulAdd(a, b, c) => format!("fma({})", self.args(&[a, b, c])),
            Expr::Select(c, a, b) => format!("select({})", self.args(&[c, a, b])),
            Expr::Cast(d, a) => format!("cast<{d}>({})", self.expr(a)),
            Expr::Bitcast(d, a) => format!("bitcast<{d}>({})", self.expr(a)),
            Expr::Splat(n, a) => format!("splat<{n}>({})", self.expr(a)),
            Expr::Extract(a, i) => format!("extract({}, {i})", self.expr(a)),
            Expr::Shuffle(a, b, idx) => {
                let idx: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
                format!("shuffle({}, [{}])", self.args(&[a, b]), idx.join(", "))
            }
            Expr::Reduce(op, a) => format!("{}({})", reduce_name(*op), self.expr(a)),
            Expr::Call(name, args, t) => {
                let args: Vec<&Expr> = args.iter().collect();
                format!(
                    "call {}({}): {}",
                    name_token('@', name),
                    self.args(&args),
                    ty_text(*t)
                )
            }
        };
        (s, PREC_PRIMARY)
    }

    /// A statement's first line (all of it, for the statements that have
    /// no body), without the `{` of a body.
    pub(crate) fn stmt_head(&self, s: &Stmt) -> String {
        match s {
            Stmt::Let { var, value } => format!(
                "let {}: {} = {}",
                self.var(*var),
                self.var_ty(*var),
                self.expr(value)
            ),
            Stmt::Decl { var, init } => format!(
                "var {}: {} = {}",
                self.var(*var),
                self.var_ty(*var),
                self.expr(init)
            ),
            Stmt::Assign { var, value } => format!("{} = {}", self.var(*var), self.expr(value)),
            Stmt::Store {
                buf,
                index,
                value,
                stride,
                mask,
            } => {
                let lanes = try_ty(self.k, value).map(|t| t.lanes);
                format!(
                    "store {}[{}]{} = {}",
                    self.buf(*buf),
                    self.expr(index),
                    self.access(lanes, *stride, mask.as_ref()),
                    self.expr(value)
                )
            }
            Stmt::For {
                var,
                start,
                end,
                step,
                kind,
                ..
            } => {
                let mut s = match kind {
                    LoopKind::Serial => String::new(),
                    LoopKind::Parallel => "parallel ".into(),
                    LoopKind::Unroll(n) => format!("unroll {n} "),
                };
                let _ = write!(s, "for {}", self.var(*var));
                if self.k.vars.get(var.0 as usize).map(|v| v.ty) != Some(Ty::INDEX) {
                    let _ = write!(s, ": {}", self.var_ty(*var));
                }
                let _ = write!(s, " = {} to {}", self.expr(start), self.expr(end));
                if *step != 1 {
                    let _ = write!(s, " step {step}");
                }
                s
            }
            Stmt::If { cond, .. } => format!("if {}", self.expr(cond)),
            Stmt::Call { name, args } => {
                let args: Vec<&Expr> = args.iter().collect();
                format!("call {}({})", name_token('@', name), self.args(&args))
            }
            Stmt::Prefetch { buf, index } => {
                format!("prefetch {}[{}]", self.buf(*buf), self.expr(index))
            }
        }
    }

    fn block(&self, out: &mut String, stmts: &[Stmt], depth: usize) {
        out.push_str("{\n");
        for s in stmts {
            self.stmt(out, s, depth + 1);
        }
        indent(out, depth);
        out.push('}');
    }

    fn stmt(&self, out: &mut String, s: &Stmt, depth: usize) {
        indent(out, depth);
        out.push_str(&self.stmt_head(s));
        match s {
            Stmt::For { body, .. } => {
                out.push(' ');
                self.block(out, body, depth);
            }
            Stmt::If { then_, else_, .. } => {
                out.push(' ');
                self.block(out, then_, depth);
                if !else_.is_empty() {
                    out.push_str(" else ");
                    self.block(out, else_, depth);
                }
            }
            _ => {}
        }
        out.push('\n');
    }

    /// The kernel's first line, without the `{` of its body.
    pub(crate) fn header(&self) -> String {
        let k = self.k;
        let mut s = format!("kernel {}(", name_token('@', &k.name));
        for (i, b) in k.bufs.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(
                s,
                "{} {}: {}[{}]",
                kind_name(b.kind),
                self.names.bufs[i],
                b.dtype,
                self.expr(&b.len)
            );
            if let Some(r) = b.reuses {
                let _ = write!(s, " reuses {}", self.names.bufs[r.0 as usize]);
            }
        }
        s.push(')');
        if !k.dims.is_empty() {
            let _ = write!(s, " dims({})", self.names.dims.join(", "));
        }
        if !k.schedule.is_empty() {
            let items: Vec<String> = k
                .schedule
                .iter()
                .map(|(key, v)| format!("{} = {}", key_text(key), attr_text(v)))
                .collect();
            let _ = write!(s, " schedule {{{}}}", items.join(", "));
        }
        s
    }

    fn kernel(&self) -> String {
        let mut out = self.header();
        out.push(' ');
        self.block(&mut out, &self.k.body, 0);
        out.push('\n');
        out
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// Parses one kernel. The result is not verified; run
/// [`super::verify::verify_kernel`] on it to check scopes and types.
pub fn parse_kernel(src: &str) -> Result<Kernel, KernelParseError> {
    let mut p = KParser::new(lex(src)?);
    let k = p.kernel()?;
    p.p.expect_eof()?;
    Ok(k)
}

/// Parses a file of kernels, one after the other.
pub fn parse_kernels(src: &str) -> Result<Vec<Kernel>, KernelParseError> {
    let mut p = KParser::new(lex(src)?);
    let mut out = Vec::new();
    while *p.p.peek() != Tok::Eof {
        out.push(p.kernel()?);
    }
    Ok(out)
}

/// The statements that can follow in a block, for messages.
const STMT_EXPECTED: &str = "a statement (`let`, `var`, `store`, `for`, `parallel for`, `unroll N for`, `if`, `call`, `prefetch`, `%var = …`) or `}`";

/// The suffixes of a load or store, with the token of the lane count.
struct Access {
    lanes: Option<(u16, Token)>,
    stride: i64,
    mask: Option<Expr>,
}

struct KParser {
    p: Parser,
    /// The kernel being read.
    k: Kernel,
    bufs: HashMap<String, BufId>,
    dims: HashMap<String, u32>,
    /// Variables in scope, innermost block last.
    scopes: Vec<Vec<(String, VarId)>>,
    /// Every variable made so far, by name: a name defined again outside
    /// the scope of its first definition is the same variable when its
    /// type and mutability agree (a printed kernel names each variable
    /// once, however many statements define it).
    made: HashMap<String, Vec<VarId>>,
    /// Open blocks and expressions, bounded by [`MAX_NESTING`].
    depth: usize,
}

/// How deeply blocks and expressions may nest in text, so that hostile
/// input fails with a message rather than overflowing the stack.
const MAX_NESTING: usize = 256;

impl KParser {
    fn new(toks: Vec<Token>) -> KParser {
        KParser {
            p: Parser::new(toks),
            k: Kernel::default(),
            bufs: HashMap::new(),
            dims: HashMap::new(),
            scopes: Vec::new(),
            made: HashMap::new(),
            depth: 0,
        }
    }

    fn tok(&self) -> Token {
        self.p.toks[self.p.pos].clone()
    }

    fn kernel(&mut self) -> PResult<Kernel> {
        self.bufs.clear();
        self.dims.clear();
        self.scopes.clear();
        self.made.clear();
        self.depth = 0;
        self.p.expect_ident("kernel")?;
        let t = self.p.next();
        let Tok::At(name) = t.tok else {
            return self.p.err_at(
                &t,
                format!(
                    "expected the kernel's name (`@name`), found {}",
                    t.tok.describe()
                ),
            );
        };
        self.k = Kernel::new(name);
        // Buffer lengths may use the extents, which are declared after the
        // buffers: remember where each length is and read it later.
        let mut lens = Vec::new();
        self.p.expect('(')?;
        if !self.p.eat(')') {
            loop {
                lens.push(self.buffer()?);
                if self.p.eat(')') {
                    break;
                }
                self.p.expect(',')?;
            }
        }
        if self.p.eat_ident("dims") {
            self.p.expect('(')?;
            if !self.p.eat(')') {
                loop {
                    let (name, tok) = self.p.value_name()?;
                    if self.dims.contains_key(&name) {
                        return self
                            .p
                            .err_at(&tok, format!("extent `%{name}` is declared twice"));
                    }
                    self.dims.insert(name.clone(), self.k.dims.len() as u32);
                    self.k.dims.push(name);
                    if self.p.eat(')') {
                        break;
                    }
                    self.p.expect(',')?;
                }
            }
        }
        if self.p.eat_ident("schedule") {
            self.schedule()?;
        }
        let body = self.p.pos;
        for (i, pos) in lens.into_iter().enumerate() {
            self.p.pos = pos;
            self.k.bufs[i].len = self.expr()?;
            self.p.expect(']')?;
        }
        self.p.pos = body;
        self.k.body = self.block()?;
        Ok(std::mem::take(&mut self.k))
    }

    /// `in %x: f32[len]`; returns where the length starts, having skipped
    /// it.
    fn buffer(&mut self) -> PResult<usize> {
        let t = self.p.next();
        let kind = match &t.tok {
            Tok::Ident(w) if w == "in" => BufKind::Input,
            Tok::Ident(w) if w == "out" => BufKind::Output,
            Tok::Ident(w) if w == "scratch" => BufKind::Scratch,
            other => {
                return self.p.err_at(
                    &t,
                    format!(
                        "expected a buffer (`in`, `out` or `scratch` `%name: dtype[length]`), found {}",
                        other.describe()
                    ),
                );
            }
        };
        let (name, tok) = self.p.value_name()?;
        if self.bufs.contains_key(&name) {
            return self
                .p
                .err_at(&tok, format!("buffer `%{name}` is declared twice"));
        }
        self.p.expect(':')?;
        let dtype = self.dtype()?;
        let open = self.tok();
        self.p.expect('[')?;
        let start = self.p.pos;
        let mut depth = 1;
        while depth > 0 {
            match self.p.next().tok {
                Tok::Punct('[') => depth += 1,
                Tok::Punct(']') => depth -= 1,
                Tok::Eof => return self.p.err_at(&open, "this `[` is never closed"),
                _ => {}
            }
        }
        let reuses = if self.p.eat_ident("reuses") {
            let (other, tok) = self.p.value_name()?;
            match self.bufs.get(&other) {
                Some(&b) if kind == BufKind::Output => Some(b),
                Some(_) => {
                    return self
                        .p
                        .err_at(&tok, "only an `out` buffer may reuse an input's memory");
                }
                None => {
                    return self.p.err_at(
                        &tok,
                        format!("`reuses %{other}` names no buffer declared before it"),
                    );
                }
            }
        } else {
            None
        };
        self.bufs
            .insert(name.clone(), BufId(self.k.bufs.len() as u32));
        self.k.bufs.push(Buf {
            name,
            dtype,
            len: Expr::idx(0),
            kind,
            reuses,
        });
        Ok(start)
    }

    fn schedule(&mut self) -> PResult<()> {
        self.p.expect('{')?;
        if self.p.eat('}') {
            return Ok(());
        }
        loop {
            let t = self.p.next();
            let key = match &t.tok {
                Tok::Ident(k) | Tok::Str(k) => k.clone(),
                other => {
                    return self.p.err_at(
                        &t,
                        format!("expected a schedule key, found {}", other.describe()),
                    );
                }
            };
            if self.k.schedule.contains_key(&key) {
                return self
                    .p
                    .err_at(&t, format!("schedule key `{key}` is given twice"));
            }
            self.p.expect('=')?;
            let v = self.p.attr_value()?;
            self.k.schedule.insert(key, v);
            if self.p.eat('}') {
                return Ok(());
            }
            self.p.expect(',')?;
        }
    }

    fn dtype(&mut self) -> PResult<DType> {
        let t = self.p.next();
        match &t.tok {
            Tok::Ident(w) => w.parse().or_else(|_| {
                self.p.err_at(
                    &t,
                    format!("expected an element type such as `f32`, found `{w}`"),
                )
            }),
            other => self.p.err_at(
                &t,
                format!(
                    "expected an element type such as `f32`, found {}",
                    other.describe()
                ),
            ),
        }
    }

    fn ty(&mut self) -> PResult<Ty> {
        let t = self.p.next();
        if let Tok::Ident(w) = &t.tok
            && let Some(ty) = parse_ty_text(w)
        {
            return Ok(ty);
        }
        self.p.err_at(
            &t,
            format!(
                "expected a type such as `f32` or `f32x4`, found {}",
                t.tok.describe()
            ),
        )
    }

    fn int<T: TryFrom<i64>>(&mut self, what: &str) -> PResult<T> {
        let t = self.p.next();
        if let Tok::Num(n) = &t.tok
            && let Some(v) = n.parse::<i64>().ok().and_then(|v| T::try_from(v).ok())
        {
            return Ok(v);
        }
        self.p
            .err_at(&t, format!("expected {what}, found {}", t.tok.describe()))
    }

    // -- Names and scopes

    fn lookup_var(&self, name: &str) -> Option<VarId> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|s| s.iter().rev())
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }

    /// Defines `name` in the innermost scope.
    fn define(&mut self, name: String, ty: Ty, mutable: bool) -> VarId {
        let again = if self.lookup_var(&name).is_none() {
            self.made.get(&name).and_then(|vs| {
                vs.iter().rev().copied().find(|v| {
                    let var = &self.k.vars[v.0 as usize];
                    var.ty == ty && var.mutable == mutable
                })
            })
        } else {
            None
        };
        let id = again.unwrap_or_else(|| {
            let id = VarId(self.k.vars.len() as u32);
            self.k.vars.push(Var {
                name: name.clone(),
                ty,
                mutable,
            });
            self.made.entry(name.clone()).or_default().push(id);
            id
        });
        self.scopes
            .last_mut()
            .expect("statements are parsed inside a block")
            .push((name, id));
        id
    }

    /// `%name` in an expression: a variable in scope or an extent.
    fn name_expr(&mut self) -> PResult<Expr> {
        let (name, tok) = self.p.value_name()?;
        if let Some(v) = self.lookup_var(&name) {
            return Ok(Expr::Var(v));
        }
        if let Some(&d) = self.dims.get(&name) {
            return Ok(Expr::Dim(d));
        }
        let msg = if self.bufs.contains_key(&name) {
            format!("`%{name}` is a buffer; read it with `load %{name}[index]`")
        } else if self.made.contains_key(&name) {
            format!("`%{name}` is not in scope here")
        } else {
            format!("`%{name}` is not defined")
        };
        self.p.err_at(&tok, msg)
    }

    fn buf_name(&mut self) -> PResult<BufId> {
        let (name, tok) = self.p.value_name()?;
        match self.bufs.get(&name) {
            Some(&b) => Ok(b),
            None => self
                .p
                .err_at(&tok, format!("`%{name}` is not a buffer of this kernel")),
        }
    }

    // -- Statements

    /// `{ statements }` in a scope of its own.
    fn block(&mut self) -> PResult<Vec<Stmt>> {
        self.scopes.push(Vec::new());
        let r = self.nested(Self::block_in_scope);
        self.scopes.pop();
        r
    }

    /// Runs `f` one level deeper.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_NESTING {
            return self.p.err(format!(
                "blocks and expressions nest more than {MAX_NESTING} deep"
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn block_in_scope(&mut self) -> PResult<Vec<Stmt>> {
        self.p.expect('{')?;
        let mut out = Vec::new();
        while !self.p.eat('}') {
            out.push(self.stmt()?);
        }
        Ok(out)
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        let t = self.tok();
        let word = match &t.tok {
            Tok::Ident(w) => w.as_str(),
            Tok::Value(_) => return self.assign(),
            _ => return self.p.expected(STMT_EXPECTED),
        };
        match word {
            "let" | "var" => self.binding(word == "var"),
            "store" => self.store(),
            "for" | "parallel" | "unroll" => self.for_loop(),
            "if" => {
                self.p.next();
                let cond = self.expr()?;
                let then_ = self.block()?;
                let else_ = if self.p.eat_ident("else") {
                    self.block()?
                } else {
                    Vec::new()
                };
                Ok(Stmt::If { cond, then_, else_ })
            }
            "call" => {
                self.p.next();
                let (name, args) = self.call_args()?;
                Ok(Stmt::Call { name, args })
            }
            "prefetch" => {
                self.p.next();
                let buf = self.buf_name()?;
                self.p.expect('[')?;
                let index = self.expr()?;
                self.p.expect(']')?;
                Ok(Stmt::Prefetch { buf, index })
            }
            _ => self.p.expected(STMT_EXPECTED),
        }
    }

    /// `let %a: ty = e` or `var %a: ty = e`; the type may be left out
    /// where the value's type is clear.
    fn binding(&mut self, mutable: bool) -> PResult<Stmt> {
        self.p.next();
        let (name, tok) = self.p.value_name()?;
        let ann = if self.p.eat(':') {
            Some(self.ty()?)
        } else {
            None
        };
        self.p.expect('=')?;
        let value = self.expr()?;
        let Some(ty) = ann.or_else(|| try_ty(&self.k, &value)) else {
            return self.p.err_at(
                &tok,
                format!("cannot tell the type of `%{name}`; write it, as in `%{name}: f32`"),
            );
        };
        let var = self.define(name, ty, mutable);
        Ok(if mutable {
            Stmt::Decl { var, init: value }
        } else {
            Stmt::Let { var, value }
        })
    }

    fn assign(&mut self) -> PResult<Stmt> {
        let (name, tok) = self.p.value_name()?;
        let Some(var) = self.lookup_var(&name) else {
            return self.p.err_at(
                &tok,
                format!(
                    "`%{name}` is not a variable in scope; declare it with `var %{name}: type = …`"
                ),
            );
        };
        self.p.expect('=')?;
        let value = self.expr()?;
        Ok(Stmt::Assign { var, value })
    }

    fn store(&mut self) -> PResult<Stmt> {
        self.p.next();
        let buf = self.buf_name()?;
        self.p.expect('[')?;
        let index = self.expr()?;
        self.p.expect(']')?;
        let Access {
            lanes,
            stride,
            mask,
        } = self.access()?;
        self.p.expect('=')?;
        let value = self.expr()?;
        if let Some((lanes, tok)) = lanes
            && let Some(t) = try_ty(&self.k, &value)
            && t.lanes != lanes
        {
            return self.p.err_at(
                &tok,
                format!(
                    "the store says x{lanes} but the value has type {}",
                    ty_text(t)
                ),
            );
        }
        Ok(Stmt::Store {
            buf,
            index,
            value,
            stride,
            mask,
        })
    }

    /// The suffixes of a load or store: `x4`, `stride 3`, `mask m`, in
    /// that order, each optional.
    fn access(&mut self) -> PResult<Access> {
        let t = self.tok();
        let mut lanes = None;
        if let Tok::Ident(w) = &t.tok
            && let Some(n) = w.strip_prefix('x')
            && n.bytes().all(|b| b.is_ascii_digit())
            && !n.is_empty()
        {
            let Some(l) = lanes_text(n) else {
                return self.p.err_at(&t, format!("`{w}`: too many lanes"));
            };
            self.p.next();
            lanes = Some((l, t));
        }
        let stride = if self.p.eat_ident("stride") {
            self.int("the stride (an integer)")?
        } else {
            1
        };
        let mask = if self.p.eat_ident("mask") {
            Some(self.primary()?)
        } else {
            None
        };
        Ok(Access {
            lanes,
            stride,
            mask,
        })
    }

    fn for_loop(&mut self) -> PResult<Stmt> {
        let kind = if self.p.eat_ident("parallel") {
            LoopKind::Parallel
        } else if self.p.eat_ident("unroll") {
            LoopKind::Unroll(self.int("the unroll factor")?)
        } else {
            LoopKind::Serial
        };
        self.p.expect_ident("for")?;
        let (name, _) = self.p.value_name()?;
        let ty = if self.p.eat(':') {
            self.ty()?
        } else {
            Ty::INDEX
        };
        self.p.expect('=')?;
        let start = self.expr()?;
        self.p.expect_ident("to")?;
        let end = self.expr()?;
        let step = if self.p.eat_ident("step") {
            self.int("the step (an integer)")?
        } else {
            1
        };
        self.scopes.push(Vec::new());
        let var = self.define(name, ty, false);
        let body = self.nested(Self::block_in_scope);
        self.scopes.pop();
        Ok(Stmt::For {
            var,
            start,
            end,
            step,
            kind,
            body: body?,
        })
    }

    // -- Expressions

    fn expr(&mut self) -> PResult<Expr> {
        self.binary(PREC_CMP)
    }

    /// The infix operator at the cursor and how many tokens spell it; 0
    /// for a signed number read as an operator and its operand (`%a -1`).
    fn peek_binop(&self) -> Option<(BinOp, u8, usize)> {
        let t0 = &self.p.toks[self.p.pos];
        let next_is = |c: char| {
            self.p.toks.get(self.p.pos + 1).is_some_and(|t1| {
                t1.tok == Tok::Punct(c) && t1.line == t0.line && t1.col == t0.col + 1
            })
        };
        let (sym, len): (String, usize) = match &t0.tok {
            Tok::Punct(c @ ('<' | '>')) if next_is(*c) => (format!("{c}{c}"), 2),
            Tok::Punct(c @ ('<' | '>' | '=' | '!')) if next_is('=') => (format!("{c}="), 2),
            Tok::Punct(c) => (c.to_string(), 1),
            Tok::Num(n) if n.starts_with(['-', '+']) => (n[..1].to_string(), 0),
            _ => return None,
        };
        BIN_OPS.iter().find_map(|&op| match bin_syntax(op) {
            BinSyntax::Infix(s, p) if s == sym => Some((op, p, len)),
            _ => None,
        })
    }

    /// Operators binding at least as tightly as `min`, left-associative.
    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.primary()?;
        while let Some((op, prec, len)) = self.peek_binop() {
            if prec < min {
                break;
            }
            if len == 0 {
                // `-1` after an operand: the operator and a number.
                let t = &mut self.p.toks[self.p.pos];
                if let Tok::Num(n) = &t.tok {
                    let rest = n[1..].to_string();
                    t.tok = if rest == "inf" || rest == "nan" {
                        Tok::Ident(rest)
                    } else {
                        Tok::Num(rest)
                    };
                    t.col += 1;
                }
            }
            for _ in 0..len {
                self.p.next();
            }
            let rhs = self.binary(prec + 1)?;
            lhs = Expr::bin(op, lhs, rhs);
            if prec == PREC_CMP
                && let Some((next, _, _)) = self.peek_binop()
                && next.is_compare()
            {
                return self.p.err("comparisons do not chain; add parentheses");
            }
        }
        Ok(lhs)
    }

    fn args(&mut self) -> PResult<Vec<Expr>> {
        self.p.expect('(')?;
        let mut out = Vec::new();
        if self.p.eat(')') {
            return Ok(out);
        }
        loop {
            out.push(self.expr()?);
            if self.p.eat(')') {
                return Ok(out);
            }
            self.p.expect(',')?;
        }
    }

    /// Exactly `N` arguments of the function named by `t`.
    fn args_n<const N: usize>(&mut self, t: &Token, name: &str) -> PResult<[Expr; N]> {
        let args = self.args()?;
        let n = args.len();
        args.try_into().or_else(|_| {
            self.p.err_at(
                t,
                format!(
                    "`{name}` takes {N} argument{}, not {n}",
                    if N == 1 { "" } else { "s" }
                ),
            )
        })
    }

    /// `@name(args)`.
    fn call_args(&mut self) -> PResult<(String, Vec<Expr>)> {
        let t = self.p.next();
        let Tok::At(name) = t.tok else {
            return self.p.err_at(
                &t,
                format!(
                    "expected the callee's name (`@name`), found {}",
                    t.tok.describe()
                ),
            );
        };
        Ok((name, self.args()?))
    }

    /// `<dtype>` or `<lanes>` after `cast`, `bitcast`, `splat`.
    fn angle<T>(&mut self, inner: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        self.p.expect('<')?;
        let v = inner(self)?;
        self.p.expect('>')?;
        Ok(v)
    }

    /// A constant from its digits and, after `:`, its type.
    fn constant(&mut self, t: &Token, text: &str) -> PResult<Expr> {
        let float = is_float_text(text);
        if !self.p.eat(':') {
            if float {
                return self.p.err_at(
                    t,
                    format!("a float constant needs its type, as in `{text}: f32`"),
                );
            }
            return match text.parse::<i64>() {
                Ok(v) => Ok(Expr::idx(v)),
                Err(_) => self
                    .p
                    .err_at(t, format!("`{text}` does not fit the index type i64")),
            };
        }
        let ty = self.ty()?;
        if float {
            return match parse_f64(text) {
                Some(v) => Ok(Expr::Float(v, ty)),
                None => self.p.err_at(t, format!("bad number `{text}`")),
            };
        }
        let v = text.parse::<i64>().ok().or_else(|| {
            (ty.elem == DType::U64)
                .then(|| text.parse::<u64>().ok().map(|v| v as i64))
                .flatten()
        });
        match v {
            Some(v) => Ok(Expr::Int(v, ty)),
            None => self
                .p
                .err_at(t, format!("`{text}` does not fit {}", ty_text(ty))),
        }
    }

    /// A name, constant, parenthesised expression, load or named
    /// operation.
    fn primary(&mut self) -> PResult<Expr> {
        self.nested(Self::primary_inner)
    }

    fn primary_inner(&mut self) -> PResult<Expr> {
        let t = self.tok();
        let word = match &t.tok {
            Tok::Value(_) => return self.name_expr(),
            Tok::Num(n) => {
                let n = n.clone();
                self.p.next();
                return self.constant(&t, &n);
            }
            Tok::Punct('(') => {
                self.p.next();
                let e = self.expr()?;
                self.p.expect(')')?;
                return Ok(e);
            }
            Tok::Ident(w) => w.clone(),
            _ => return self.p.expected("an expression"),
        };
        self.p.next();
        let b = Box::new;
        Ok(match word.as_str() {
            "inf" | "nan" => return self.constant(&t, &word),
            "load" => {
                let buf = self.buf_name()?;
                self.p.expect('[')?;
                let index = self.expr()?;
                self.p.expect(']')?;
                let Access {
                    lanes,
                    stride,
                    mask,
                } = self.access()?;
                Expr::Load {
                    buf,
                    index: b(index),
                    lanes: lanes.map_or(1, |l| l.0),
                    stride,
                    mask: mask.map(b),
                }
            }
            "call" => {
                let (name, args) = self.call_args()?;
                self.p.expect(':')?;
                Expr::Call(name, args, self.ty()?)
            }
            "cast" | "bitcast" => {
                let d = self.angle(|p| p.dtype())?;
                let [a] = self.args_n(&t, &word)?;
                if word == "cast" {
                    Expr::Cast(d, b(a))
                } else {
                    Expr::Bitcast(d, b(a))
                }
            }
            "splat" => {
                let n = self.angle(|p| p.int("a lane count"))?;
                let [a] = self.args_n(&t, &word)?;
                Expr::Splat(n, b(a))
            }
            "extract" => {
                self.p.expect('(')?;
                let a = self.expr()?;
                self.p.expect(',')?;
                let lane = self.int("a lane number")?;
                self.p.expect(')')?;
                Expr::Extract(b(a), lane)
            }
            "shuffle" => {
                self.p.expect('(')?;
                let x = self.expr()?;
                self.p.expect(',')?;
                let y = self.expr()?;
                self.p.expect(',')?;
                self.p.expect('[')?;
                let mut idx = vec![self.int("a lane number")?];
                while self.p.eat(',') {
                    idx.push(self.int("a lane number")?);
                }
                self.p.expect(']')?;
                self.p.expect(')')?;
                Expr::Shuffle(b(x), b(y), idx)
            }
            "fma" => {
                let [x, y, z] = self.args_n(&t, &word)?;
                Expr::MulAdd(b(x), b(y), b(z))
            }
            "select" => {
                let [c, x, y] = self.args_n(&t, &word)?;
                Expr::Select(b(c), b(x), b(y))
            }
            w => {
                if let Some(&op) = UN_OPS.iter().find(|&&op| un_name(op) == w) {
                    let [a] = self.args_n(&t, w)?;
                    Expr::Unary(op, b(a))
                } else if let Some(&op) = REDUCE_OPS.iter().find(|&&op| reduce_name(op) == w) {
                    let [a] = self.args_n(&t, w)?;
                    Expr::Reduce(op, b(a))
                } else if let Some(&op) = BIN_OPS
                    .iter()
                    .find(|&&op| matches!(bin_syntax(op), BinSyntax::Named(n) if n == w))
                {
                    let [x, y] = self.args_n(&t, w)?;
                    Expr::Binary(op, b(x), b(y))
                } else {
                    return self.p.err_at(
                        &t,
                        format!("expected an expression, found `{w}`, which is not an operation"),
                    );
                }
            }
        })
    }
}
