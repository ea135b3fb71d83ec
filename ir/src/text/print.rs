//! Printing Graph IR as text.

use std::fmt::Write;

use half::{bf16, f16};

use super::lexer::is_name_char;
use crate::attr::AttrValue;
use crate::dtype::DType;
use crate::graph::{Graph, Value, ValueDef};
use crate::shape::TensorType;
use crate::tensor::{Data, Tensor};

/// Choices that trade round-tripping for readability.
#[derive(Clone, Debug, Default)]
pub struct PrintOptions {
    /// Print constants with more elements than this as `<elided N>`
    /// (not parseable). `None` prints every constant in full.
    pub elide_consts_over: Option<usize>,
}

/// Prints a graph in the text format.
pub fn print(g: &Graph) -> String {
    print_with(g, &PrintOptions::default())
}

pub fn print_with(g: &Graph, opts: &PrintOptions) -> String {
    let mut p = Printer {
        out: String::new(),
        opts,
    };
    p.graph(g, 0);
    p.out.push('\n');
    p.out
}

struct Printer<'a> {
    out: String,
    opts: &'a PrintOptions,
}

/// Elements printed as a list rather than as hex bytes.
const LIST_LIMIT: usize = 16;

pub(crate) fn name_token(sigil: char, name: &str) -> String {
    if !name.is_empty() && name.chars().all(is_name_char) {
        format!("{sigil}{name}")
    } else {
        format!("{sigil}{name:?}")
    }
}

pub(crate) fn float_text(x: f64) -> String {
    if x.is_nan() {
        if x.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        }
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{x:?}")
    }
}

fn f32_text(x: f32) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        float_text(x as f64)
    }
}

/// The list form of a tensor's elements, if it round-trips exactly.
fn list_literal(t: &Tensor) -> Option<String> {
    let items: Vec<String> = match t.data() {
        Data::Bool(v) => v.iter().map(|b| b.to_string()).collect(),
        Data::Str(v) => v.iter().map(|s| format!("{s:?}")).collect(),
        Data::F32(v) => {
            // NaN payloads and signs are not spelled by the list form.
            if v.iter()
                .any(|x| x.is_nan() && x.to_bits() != f32::NAN.to_bits())
            {
                return None;
            }
            v.iter().map(|&x| f32_text(x)).collect()
        }
        Data::F64(v) => {
            if v.iter()
                .any(|x| x.is_nan() && x.to_bits() != f64::NAN.to_bits())
            {
                return None;
            }
            v.iter().map(|&x| float_text(x)).collect()
        }
        Data::F16(v) => {
            if v.iter()
                .any(|x| x.is_nan() && x.to_bits() != f16::NAN.to_bits())
            {
                return None;
            }
            v.iter().map(|x| f32_text(x.to_f32())).collect()
        }
        Data::BF16(v) => {
            if v.iter()
                .any(|x| x.is_nan() && x.to_bits() != bf16::NAN.to_bits())
            {
                return None;
            }
            v.iter().map(|x| f32_text(x.to_f32())).collect()
        }
        Data::C64(_) | Data::C128(_) | Data::Packed(_) => return None,
        Data::U64(v) => v.iter().map(|x| x.to_string()).collect(),
        _ => (0..t.numel()).map(|i| t.get_i64(i).to_string()).collect(),
    };
    Some(format!("[{}]", items.join(", ")))
}

/// A tensor literal: `[…]` for small ones, `0x…` for the rest.
pub(crate) fn tensor_literal(t: &Tensor, elide_over: Option<usize>) -> String {
    if let Some(limit) = elide_over
        && t.numel() > limit
    {
        return format!("<elided {}>", t.numel());
    }
    if (t.numel() <= LIST_LIMIT || t.dtype() == DType::Str)
        && let Some(s) = list_literal(t)
    {
        return s;
    }
    let bytes = t.to_le_bytes().expect("strings take the list form");
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// An attribute value as the graph printer writes it (used for Kernel IR
/// schedules).
pub(crate) fn attr_text(v: &AttrValue) -> String {
    let opts = PrintOptions::default();
    let mut p = Printer {
        out: String::new(),
        opts: &opts,
    };
    p.attr(v, 0);
    p.out
}

impl Printer<'_> {
    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn value_decl(&mut self, g: &Graph, v: Value) {
        let d = g.value(v);
        let _ = write!(self.out, "{}: {}", name_token('%', &d.name), d.ty);
    }

    fn graph(&mut self, g: &Graph, depth: usize) {
        let _ = write!(self.out, "graph {}(", name_token('@', &g.name));
        for (i, &v) in g.inputs().iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.value_decl(g, v);
        }
        self.out.push(')');
        if !g.captures().is_empty() {
            self.out.push_str(" captures(");
            for (i, &v) in g.captures().iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                self.value_decl(g, v);
            }
            self.out.push(')');
        }
        self.out.push_str(" {\n");
        for (v, d) in g.values() {
            if let ValueDef::Const(t) = &d.def {
                self.indent(depth + 1);
                self.value_decl(g, v);
                let _ = writeln!(
                    self.out,
                    " = const {}",
                    tensor_literal(t, self.opts.elide_consts_over)
                );
            }
        }
        for n in g.nodes() {
            self.indent(depth + 1);
            for (i, &v) in n.outputs.iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                self.value_decl(g, v);
            }
            if !n.outputs.is_empty() {
                self.out.push_str(" = ");
            }
            self.out.push_str(n.op.name());
            self.out.push('(');
            for (i, v) in n.inputs.iter().enumerate() {
                if i > 0 {
                    self.out.push_str(", ");
                }
                match v {
                    Some(v) => self.out.push_str(&name_token('%', g.name(*v))),
                    None => self.out.push('_'),
                }
            }
            self.out.push(')');
            let attrs = n.op.attrs();
            if !attrs.is_empty() {
                self.out.push_str(" {");
                for (i, (name, val)) in attrs.iter().enumerate() {
                    self.out.push_str(if i > 0 { ", " } else { "" });
                    let _ = write!(self.out, "{name} = ");
                    self.attr(val, depth + 1);
                }
                self.out.push('}');
            }
            if !n.name.is_empty() {
                let _ = write!(self.out, " loc({:?})", n.name);
            }
            self.out.push('\n');
        }
        self.indent(depth + 1);
        self.out.push_str("return");
        for (i, &v) in g.outputs().iter().enumerate() {
            self.out.push_str(if i > 0 { ", " } else { " " });
            self.out.push_str(&name_token('%', g.name(v)));
        }
        self.out.push('\n');
        self.indent(depth);
        self.out.push('}');
    }

    fn attr(&mut self, v: &AttrValue, depth: usize) {
        let list = |items: Vec<String>| format!("[{}]", items.join(", "));
        match v {
            AttrValue::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            AttrValue::Float(f) => self.out.push_str(&f32_text(*f)),
            AttrValue::Str(s) => {
                let _ = write!(self.out, "{s:?}");
            }
            AttrValue::Sym(s) => self.out.push_str(s),
            AttrValue::Ints(v) => self
                .out
                .push_str(&list(v.iter().map(|x| x.to_string()).collect())),
            AttrValue::Floats(v) => self
                .out
                .push_str(&list(v.iter().map(|&x| f32_text(x)).collect())),
            AttrValue::Strs(v) => self
                .out
                .push_str(&list(v.iter().map(|x| format!("{x:?}")).collect())),
            AttrValue::Tensor(t) => {
                let ty = TensorType::known(t.dtype(), t.shape());
                let _ = write!(
                    self.out,
                    "tensor<{ty}> {}",
                    tensor_literal(t, self.opts.elide_consts_over)
                );
            }
            AttrValue::Graph(g) => self.graph(g, depth),
        }
    }
}
