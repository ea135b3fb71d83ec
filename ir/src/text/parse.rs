//! Parsing the text format.

use std::sync::Arc;

use half::{bf16, f16};

use super::lexer::{Tok, Token, lex};
use crate::attr::{AttrValue, Attrs};
use crate::dtype::DType;
use crate::graph::{Graph, Value};
use crate::ops::Op;
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::{Data, Tensor};

/// A parse error at a line and column (both from 1).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{line}:{col}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// Parses one graph. The result is not verified; run
/// [`crate::verify::verify`] on it to check types.
pub fn parse(src: &str) -> Result<Graph, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser::new(toks);
    let g = p.graph()?;
    p.expect_eof()?;
    Ok(g)
}

/// The token cursor, shared with the Kernel IR parser.
pub(crate) struct Parser {
    pub(crate) toks: Vec<Token>,
    pub(crate) pos: usize,
}

type PResult<T> = Result<T, ParseError>;

/// Converts a number token to f32 exactly as written.
fn parse_f32(text: &str) -> Option<f32> {
    match text {
        "nan" | "+nan" => Some(f32::NAN),
        "-nan" => Some(-f32::NAN),
        "inf" | "+inf" => Some(f32::INFINITY),
        "-inf" => Some(f32::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

pub(crate) fn parse_f64(text: &str) -> Option<f64> {
    match text {
        "nan" | "+nan" => Some(f64::NAN),
        "-nan" => Some(-f64::NAN),
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

pub(crate) fn is_float_text(text: &str) -> bool {
    text.contains(['.', 'e', 'E', 'n', 'i'])
}

/// An element of a list literal.
enum Elem {
    Num(String),
    Str(String),
    Bool(bool),
}

impl Parser {
    pub(crate) fn new(toks: Vec<Token>) -> Parser {
        Parser { toks, pos: 0 }
    }

    pub(crate) fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    pub(crate) fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }

    pub(crate) fn next(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    pub(crate) fn err_at<T>(&self, tok: &Token, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            line: tok.line,
            col: tok.col,
            msg: msg.into(),
        })
    }

    pub(crate) fn err<T>(&self, msg: impl Into<String>) -> PResult<T> {
        self.err_at(&self.toks[self.pos], msg)
    }

    pub(crate) fn expected<T>(&self, what: &str) -> PResult<T> {
        self.err(format!("expected {what}, found {}", self.peek().describe()))
    }

    pub(crate) fn eat(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Punct(c) {
            self.next();
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, c: char) -> PResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            self.expected(&format!("`{c}`"))
        }
    }

    pub(crate) fn eat_ident(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Tok::Ident(w) if w == word) {
            self.next();
            true
        } else {
            false
        }
    }

    pub(crate) fn expect_ident(&mut self, word: &str) -> PResult<()> {
        if self.eat_ident(word) {
            Ok(())
        } else {
            self.expected(&format!("`{word}`"))
        }
    }

    pub(crate) fn expect_eof(&mut self) -> PResult<()> {
        if *self.peek() == Tok::Eof {
            Ok(())
        } else {
            self.expected("end of input")
        }
    }

    pub(crate) fn value_name(&mut self) -> PResult<(String, Token)> {
        let t = self.next();
        match &t.tok {
            Tok::Value(v) => Ok((v.clone(), t)),
            other => self.err_at(
                &t,
                format!("expected a value (`%name`), found {}", other.describe()),
            ),
        }
    }

    fn ty(&mut self) -> PResult<TensorType> {
        let t = self.next();
        let Tok::Ident(name) = &t.tok else {
            return self.err_at(
                &t,
                format!(
                    "expected a type such as `f32[2,3]`, found {}",
                    t.tok.describe()
                ),
            );
        };
        let dtype: DType = match name.parse() {
            Ok(d) => d,
            Err(e) => return self.err_at(&t, e.to_string()),
        };
        self.expect('[')?;
        if self.eat('*') {
            self.expect(']')?;
            return Ok(TensorType::unknown_rank(dtype));
        }
        let mut dims = Vec::new();
        if !self.eat(']') {
            loop {
                let t = self.next();
                dims.push(match &t.tok {
                    Tok::Num(n) => match n.parse::<u64>() {
                        Ok(d) => Dim::Known(d),
                        Err(_) => return self.err_at(&t, format!("bad dimension `{n}`")),
                    },
                    Tok::Ident(s) | Tok::Str(s) => Dim::sym(s),
                    Tok::Punct('?') => Dim::Unknown,
                    other => {
                        return self.err_at(
                            &t,
                            format!("expected a dimension, found {}", other.describe()),
                        );
                    }
                });
                if self.eat(']') {
                    break;
                }
                self.expect(',')?;
            }
        }
        Ok(TensorType::new(dtype, Shape::Ranked(dims)))
    }

    /// `%name: type` declarations separated by commas, within `close`.
    fn decl_list(&mut self, close: char) -> PResult<Vec<(String, TensorType, Token)>> {
        let mut out = Vec::new();
        if self.eat(close) {
            return Ok(out);
        }
        loop {
            let (name, tok) = self.value_name()?;
            self.expect(':')?;
            out.push((name, self.ty()?, tok));
            if self.eat(close) {
                return Ok(out);
            }
            self.expect(',')?;
        }
    }

    fn graph(&mut self) -> PResult<Graph> {
        self.expect_ident("graph")?;
        let t = self.next();
        let Tok::At(name) = t.tok else {
            return self.err_at(&t, "expected the graph's name (`@name`)");
        };
        let mut g = Graph::new(name);
        let dup = |p: &Self, tok: &Token, name: &str| {
            p.err_at::<Value>(tok, format!("value `%{name}` is defined twice"))
        };
        self.expect('(')?;
        for (name, ty, tok) in self.decl_list(')')? {
            if g.add_input(&name, ty).is_err() {
                dup(self, &tok, &name)?;
            }
        }
        if self.eat_ident("captures") {
            self.expect('(')?;
            for (name, ty, tok) in self.decl_list(')')? {
                if g.add_capture(&name, ty).is_err() {
                    dup(self, &tok, &name)?;
                }
            }
        }
        self.expect('{')?;
        loop {
            if self.eat_ident("return") {
                let mut outs = Vec::new();
                if let Tok::Value(_) = self.peek() {
                    loop {
                        let (name, tok) = self.value_name()?;
                        match g.lookup(&name) {
                            Some(v) => outs.push(v),
                            None => {
                                return self
                                    .err_at(&tok, format!("value `%{name}` is not defined"));
                            }
                        }
                        if !self.eat(',') {
                            break;
                        }
                    }
                }
                g.set_outputs(outs);
                self.expect('}')?;
                return Ok(g);
            }
            self.statement(&mut g)?;
        }
    }

    fn statement(&mut self, g: &mut Graph) -> PResult<()> {
        let mut decls = Vec::new();
        if let Tok::Value(_) = self.peek() {
            loop {
                let (name, tok) = self.value_name()?;
                self.expect(':')?;
                decls.push((name, self.ty()?, tok));
                if !self.eat(',') {
                    break;
                }
            }
            self.expect('=')?;
        }
        let op_tok = self.next();
        let Tok::Ident(op_name) = &op_tok.tok else {
            return self.err_at(
                &op_tok,
                format!(
                    "expected an op name or `return`, found {}",
                    op_tok.tok.describe()
                ),
            );
        };
        if op_name == "const" {
            if decls.len() != 1 {
                return self.err_at(&op_tok, "a constant defines exactly one value");
            }
            let (name, ty, tok) = decls.pop().unwrap();
            let t = self.literal(&ty)?;
            if g.add_const(&name, t).is_err() {
                return self.err_at(&tok, format!("value `%{name}` is defined twice"));
            }
            return Ok(());
        }
        self.expect('(')?;
        let mut inputs = Vec::new();
        if !self.eat(')') {
            loop {
                let t = self.next();
                match &t.tok {
                    Tok::Ident(u) if u == "_" => inputs.push(None),
                    Tok::Value(name) => match g.lookup(name) {
                        Some(v) => inputs.push(Some(v)),
                        None => {
                            return self.err_at(
                                &t,
                                format!("value `%{name}` is not defined before this use"),
                            );
                        }
                    },
                    other => {
                        return self.err_at(
                            &t,
                            format!("expected an input value or `_`, found {}", other.describe()),
                        );
                    }
                }
                if self.eat(')') {
                    break;
                }
                self.expect(',')?;
            }
        }
        let mut attrs = Attrs::new();
        if self.eat('{') && !self.eat('}') {
            loop {
                let t = self.next();
                let Tok::Ident(name) = &t.tok else {
                    return self.err_at(
                        &t,
                        format!("expected an attribute name, found {}", t.tok.describe()),
                    );
                };
                if attrs.get(name).is_some() {
                    return self.err_at(&t, format!("attribute `{name}` is given twice"));
                }
                self.expect('=')?;
                let v = self.attr_value()?;
                attrs.insert(name.clone(), v);
                if self.eat('}') {
                    break;
                }
                self.expect(',')?;
            }
        }
        let mut node_name = String::new();
        if self.eat_ident("loc") {
            self.expect('(')?;
            let t = self.next();
            let Tok::Str(s) = t.tok else {
                return self.err_at(&t, "expected the node's name as a string");
            };
            node_name = s;
            self.expect(')')?;
        }
        let op = match Op::from_text(op_name, attrs) {
            Some(Ok(op)) => op,
            Some(Err(e)) => return self.err_at(&op_tok, format!("{op_name}: {e}")),
            None => return self.err_at(&op_tok, format!("unknown op `{op_name}`")),
        };
        for (name, _, tok) in &decls {
            if g.lookup(name).is_some() || decls.iter().filter(|d| &d.0 == name).count() > 1 {
                return self.err_at(tok, format!("value `%{name}` is defined twice"));
            }
        }
        let outputs = decls.into_iter().map(|(n, t, _)| (n, t)).collect();
        g.add_node(node_name, op, inputs, outputs)
            .map_err(|e| ParseError {
                line: op_tok.line,
                col: op_tok.col,
                msg: e.to_string(),
            })?;
        Ok(())
    }

    fn list_elems(&mut self) -> PResult<Vec<(Elem, Token)>> {
        self.expect('[')?;
        let mut out = Vec::new();
        if self.eat(']') {
            return Ok(out);
        }
        loop {
            let t = self.next();
            let e = match &t.tok {
                Tok::Num(n) => Elem::Num(n.clone()),
                Tok::Str(s) => Elem::Str(s.clone()),
                Tok::Ident(w) if w == "true" => Elem::Bool(true),
                Tok::Ident(w) if w == "false" => Elem::Bool(false),
                Tok::Ident(w) if w == "nan" || w == "inf" => Elem::Num(w.clone()),
                other => {
                    return self.err_at(
                        &t,
                        format!("expected a list element, found {}", other.describe()),
                    );
                }
            };
            out.push((e, t));
            if self.eat(']') {
                return Ok(out);
            }
            self.expect(',')?;
        }
    }

    /// A constant's data: `[elements]` or `0x…`, for a type with a fully
    /// known shape.
    fn literal(&mut self, ty: &TensorType) -> PResult<Tensor> {
        let start = self.toks[self.pos].clone();
        let Some(shape) = ty.shape.as_known() else {
            return self.err_at(
                &start,
                format!("a constant needs a fully known shape, not {}", ty.shape),
            );
        };
        if let Tok::Hex(bytes) = self.peek().clone() {
            self.next();
            return Tensor::from_le_bytes(ty.dtype, shape, &bytes)
                .or_else(|e| self.err_at(&start, e.to_string()));
        }
        if *self.peek() == Tok::Punct('<') {
            return self.err_at(
                &start,
                "elided constants cannot be parsed; print without eliding",
            );
        }
        let elems = self.list_elems()?;
        let n: usize = shape.iter().product();
        if elems.len() != n {
            return self.err_at(
                &start,
                format!(
                    "{} has {n} elements but the literal has {}",
                    ty,
                    elems.len()
                ),
            );
        }
        let bad = |p: &Self, t: &Token| {
            p.err_at::<Tensor>(t, format!("element does not fit {}", ty.dtype))
        };
        macro_rules! nums {
            ($conv:expr) => {{
                let mut v = Vec::with_capacity(n);
                for (e, t) in &elems {
                    match e {
                        Elem::Num(s) => match $conv(s.as_str()) {
                            Some(x) => v.push(x),
                            None => return bad(self, t).map(|_| unreachable!()),
                        },
                        Elem::Bool(b) => match $conv(if *b { "1" } else { "0" }) {
                            Some(x) => v.push(x),
                            None => return bad(self, t).map(|_| unreachable!()),
                        },
                        Elem::Str(_) => return bad(self, t).map(|_| unreachable!()),
                    }
                }
                v
            }};
        }
        let data = match ty.dtype {
            DType::Bool => Data::Bool(nums!(|s: &str| match s {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            })),
            DType::I8 => Data::I8(nums!(|s: &str| s.parse().ok())),
            DType::I16 => Data::I16(nums!(|s: &str| s.parse().ok())),
            DType::I32 => Data::I32(nums!(|s: &str| s.parse().ok())),
            DType::I64 => Data::I64(nums!(|s: &str| s.parse().ok())),
            DType::U8 => Data::U8(nums!(|s: &str| s.parse().ok())),
            DType::U16 => Data::U16(nums!(|s: &str| s.parse().ok())),
            DType::U32 => Data::U32(nums!(|s: &str| s.parse().ok())),
            DType::U64 => Data::U64(nums!(|s: &str| s.parse().ok())),
            DType::F32 => Data::F32(nums!(parse_f32)),
            DType::F64 => Data::F64(nums!(parse_f64)),
            DType::F16 => Data::F16(nums!(|s: &str| parse_f32(s).map(f16::from_f32))),
            DType::BF16 => Data::BF16(nums!(|s: &str| parse_f32(s).map(bf16::from_f32))),
            DType::Str => {
                let mut v = Vec::with_capacity(n);
                for (e, t) in elems {
                    match e {
                        Elem::Str(s) => v.push(s),
                        _ => return self.err_at(&t, "expected a string"),
                    }
                }
                Data::Str(v)
            }
            other => {
                return self.err_at(
                    &start,
                    format!("{other} constants are written as hex data (`0x…`)"),
                );
            }
        };
        Tensor::new(ty.dtype, shape, data).or_else(|e| self.err_at(&start, e.to_string()))
    }

    pub(crate) fn attr_value(&mut self) -> PResult<AttrValue> {
        let start = self.toks[self.pos].clone();
        match self.peek().clone() {
            Tok::Num(n) => {
                self.next();
                number_attr(&n).map_or_else(|| self.err_at(&start, format!("bad number `{n}`")), Ok)
            }
            Tok::Str(s) => {
                self.next();
                Ok(AttrValue::Str(s))
            }
            Tok::Ident(w) if w == "nan" || w == "inf" => {
                self.next();
                Ok(AttrValue::Float(parse_f32(&w).unwrap()))
            }
            Tok::Ident(w) if w == "graph" => Ok(AttrValue::Graph(Arc::new(self.graph()?))),
            Tok::Ident(w) if w == "tensor" && *self.peek_at(1) == Tok::Punct('<') => {
                self.next();
                self.next();
                let ty = self.ty()?;
                self.expect('>')?;
                Ok(AttrValue::Tensor(self.literal(&ty)?))
            }
            Tok::Ident(w) => {
                self.next();
                Ok(AttrValue::Sym(w))
            }
            Tok::Punct('[') => {
                let elems = self.list_elems()?;
                if elems.iter().all(|(e, _)| matches!(e, Elem::Str(_))) && !elems.is_empty() {
                    return Ok(AttrValue::Strs(
                        elems
                            .into_iter()
                            .map(|(e, _)| {
                                if let Elem::Str(s) = e {
                                    s
                                } else {
                                    unreachable!()
                                }
                            })
                            .collect(),
                    ));
                }
                let mut texts = Vec::new();
                for (e, t) in elems {
                    match e {
                        Elem::Num(n) => texts.push((n, t)),
                        _ => return self.err_at(&t, "lists hold numbers or strings, not both"),
                    }
                }
                if texts.iter().any(|(n, _)| is_float_text(n)) {
                    let mut v = Vec::new();
                    for (n, t) in texts {
                        match parse_f32(&n) {
                            Some(x) => v.push(x),
                            None => return self.err_at(&t, format!("bad number `{n}`")),
                        }
                    }
                    Ok(AttrValue::Floats(v))
                } else {
                    let mut v = Vec::new();
                    for (n, t) in texts {
                        match n.parse::<i64>() {
                            Ok(x) => v.push(x),
                            Err(_) => return self.err_at(&t, format!("`{n}` does not fit an i64")),
                        }
                    }
                    Ok(AttrValue::Ints(v))
                }
            }
            other => self.err_at(
                &start,
                format!("expected an attribute value, found {}", other.describe()),
            ),
        }
    }
}

fn number_attr(n: &str) -> Option<AttrValue> {
    if is_float_text(n) {
        parse_f32(n).map(AttrValue::Float)
    } else {
        n.parse::<i64>().ok().map(AttrValue::Int)
    }
}
