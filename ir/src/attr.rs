//! Typed attributes.
//!
//! Each op declares its attributes with Rust types (see [`crate::ops`]).
//! Attribute values arrive untyped, as [`AttrValue`], from the text parser
//! or the ONNX importer, and the [`AttrType`] conversions give them their
//! declared types, reporting a mismatch by attribute name.

use std::sync::Arc;

use crate::dtype::DType;
use crate::graph::Graph;
use crate::tensor::Tensor;

/// An attribute value before it meets its declared type.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    Str(String),
    /// A bare identifier: enum values (`same_upper`), dtypes (`f32`),
    /// booleans (`true`).
    Sym(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strs(Vec<String>),
    Tensor(Tensor),
    Graph(Arc<Graph>),
}

impl AttrValue {
    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "int",
            AttrValue::Float(_) => "float",
            AttrValue::Str(_) => "string",
            AttrValue::Sym(_) => "identifier",
            AttrValue::Ints(_) => "int list",
            AttrValue::Floats(_) => "float list",
            AttrValue::Strs(_) => "string list",
            AttrValue::Tensor(_) => "tensor",
            AttrValue::Graph(_) => "graph",
        }
    }
}

/// Why a set of attribute values does not make an op.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttrError {
    #[error("missing required attribute `{0}`")]
    Missing(String),
    #[error("attribute `{name}` expects {expected}, found {found}")]
    Invalid {
        name: String,
        expected: String,
        found: String,
    },
    #[error("unknown attribute `{0}`")]
    Unknown(String),
}

/// A Rust type an attribute can have.
pub trait AttrType: Sized {
    /// What the attribute expects, for error messages.
    const EXPECTED: &'static str;
    /// Converts an untyped value; `Err` carries a description of what was
    /// wrong with it beyond the kind.
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue>;
    /// The untyped form, or `None` when there is nothing to print.
    fn to_attr(&self) -> Option<AttrValue>;
    /// The value of an attribute that is not given, for types that have
    /// one (`Option` is `None`).
    fn absent() -> Option<Self> {
        None
    }
    /// Subgraphs held by this attribute.
    fn graphs(&self) -> Vec<&Arc<Graph>> {
        Vec::new()
    }
    /// Subgraphs held by this attribute, to change them.
    fn graphs_mut(&mut self) -> Vec<&mut Arc<Graph>> {
        Vec::new()
    }
}

impl AttrType for i64 {
    const EXPECTED: &'static str = "an int";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Int(i) => Ok(i),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Int(*self))
    }
}

impl AttrType for bool {
    const EXPECTED: &'static str = "a boolean (0/1, true/false)";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Int(i) => Ok(i != 0),
            AttrValue::Sym(s) if s == "true" => Ok(true),
            AttrValue::Sym(s) if s == "false" => Ok(false),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Sym(if *self { "true" } else { "false" }.into()))
    }
}

impl AttrType for f32 {
    const EXPECTED: &'static str = "a float";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Float(f) => Ok(f),
            AttrValue::Int(i) => Ok(i as f32),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Float(*self))
    }
}

impl AttrType for String {
    const EXPECTED: &'static str = "a string";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Str(s) => Ok(s),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Str(self.clone()))
    }
}

impl AttrType for Vec<i64> {
    const EXPECTED: &'static str = "a list of ints";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Ints(i) => Ok(i),
            AttrValue::Floats(f) if f.is_empty() => Ok(vec![]),
            AttrValue::Strs(f) if f.is_empty() => Ok(vec![]),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Ints(self.clone()))
    }
}

impl AttrType for Vec<f32> {
    const EXPECTED: &'static str = "a list of floats";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Floats(f) => Ok(f),
            AttrValue::Ints(i) => Ok(i.into_iter().map(|x| x as f32).collect()),
            AttrValue::Strs(f) if f.is_empty() => Ok(vec![]),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Floats(self.clone()))
    }
}

impl AttrType for Vec<String> {
    const EXPECTED: &'static str = "a list of strings";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Strs(s) => Ok(s),
            AttrValue::Ints(i) if i.is_empty() => Ok(vec![]),
            AttrValue::Floats(f) if f.is_empty() => Ok(vec![]),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Strs(self.clone()))
    }
}

impl AttrType for DType {
    const EXPECTED: &'static str = "a dtype";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match &v {
            AttrValue::Sym(s) => s.parse().map_err(|_| v.clone()),
            AttrValue::Int(code) => DType::from_onnx_code(*code as i32).ok_or(v.clone()),
            _ => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Sym(self.name().into()))
    }
}

impl AttrType for Tensor {
    const EXPECTED: &'static str = "a tensor";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Tensor(t) => Ok(t),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Tensor(self.clone()))
    }
}

impl AttrType for Arc<Graph> {
    const EXPECTED: &'static str = "a graph";
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        match v {
            AttrValue::Graph(g) => Ok(g),
            v => Err(v),
        }
    }
    fn to_attr(&self) -> Option<AttrValue> {
        Some(AttrValue::Graph(self.clone()))
    }
    fn graphs(&self) -> Vec<&Arc<Graph>> {
        vec![self]
    }
    fn graphs_mut(&mut self) -> Vec<&mut Arc<Graph>> {
        vec![self]
    }
}

impl<T: AttrType> AttrType for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_attr(v: AttrValue) -> Result<Self, AttrValue> {
        T::from_attr(v).map(Some)
    }
    fn to_attr(&self) -> Option<AttrValue> {
        self.as_ref().and_then(T::to_attr)
    }
    fn absent() -> Option<Self> {
        Some(None)
    }
    fn graphs(&self) -> Vec<&Arc<Graph>> {
        self.as_ref().map(T::graphs).unwrap_or_default()
    }
    fn graphs_mut(&mut self) -> Vec<&mut Arc<Graph>> {
        self.as_mut().map(T::graphs_mut).unwrap_or_default()
    }
}

/// Declares an enum-valued attribute type. Each variant has the spelling
/// ONNX uses in its string attribute; the text format spells it in lower
/// case as a bare identifier. Parsing accepts either, in any case.
#[macro_export]
macro_rules! attr_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $onnx:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var),* }

        impl $name {
            /// The spelling ONNX uses.
            pub fn onnx_name(self) -> &'static str {
                match self { $($name::$var => $onnx),* }
            }
            pub fn parse(s: &str) -> Option<$name> {
                $(if s.eq_ignore_ascii_case($onnx) { return Some($name::$var); })*
                None
            }
        }

        impl $crate::attr::AttrType for $name {
            const EXPECTED: &'static str = concat!("one of" $(, " ", $onnx)*);
            fn from_attr(v: $crate::attr::AttrValue) -> Result<Self, $crate::attr::AttrValue> {
                match &v {
                    $crate::attr::AttrValue::Str(s) | $crate::attr::AttrValue::Sym(s) => {
                        $name::parse(s).ok_or(v)
                    }
                    _ => Err(v),
                }
            }
            fn to_attr(&self) -> Option<$crate::attr::AttrValue> {
                Some($crate::attr::AttrValue::Sym(self.onnx_name().to_ascii_lowercase()))
            }
        }
    };
}

/// Named attribute values on their way into an op.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attrs {
    items: Vec<(String, AttrValue)>,
}

impl Attrs {
    pub fn new() -> Attrs {
        Attrs::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, v: AttrValue) {
        let name = name.into();
        self.items.retain(|(n, _)| *n != name);
        self.items.push((name, v));
    }

    pub fn with(mut self, name: impl Into<String>, v: AttrValue) -> Attrs {
        self.insert(name, v);
        self
    }

    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.items.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn remove(&mut self, name: &str) -> Option<AttrValue> {
        let i = self.items.iter().position(|(n, _)| n == name)?;
        Some(self.items.remove(i).1)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(n, _)| n.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Takes attribute `name` with its declared type, falling back to the
    /// default (or the type's absent value) when it is not given.
    pub fn take<T: AttrType>(
        &mut self,
        name: &str,
        default: Option<fn() -> T>,
    ) -> Result<T, AttrError> {
        match self.remove(name) {
            Some(v) => T::from_attr(v).map_err(|v| AttrError::Invalid {
                name: name.into(),
                expected: T::EXPECTED.into(),
                found: describe(&v),
            }),
            None => default
                .map(|d| d())
                .or_else(T::absent)
                .ok_or_else(|| AttrError::Missing(name.into())),
        }
    }

    /// Fails on the first attribute nobody took.
    pub fn finish(self) -> Result<(), AttrError> {
        match self.items.into_iter().next() {
            Some((name, _)) => Err(AttrError::Unknown(name)),
            None => Ok(()),
        }
    }
}

fn describe(v: &AttrValue) -> String {
    match v {
        AttrValue::Int(i) => format!("int {i}"),
        AttrValue::Float(f) => format!("float {f:?}"),
        AttrValue::Str(s) | AttrValue::Sym(s) => format!("{} {s:?}", v.kind()),
        other => other.kind().to_string(),
    }
}

/// The printable form of a field, or `None` where it equals its default.
pub fn non_default<T: AttrType + PartialEq>(
    v: &T,
    default: Option<fn() -> T>,
) -> Option<AttrValue> {
    match default {
        Some(d) if *v == d() => None,
        _ => v.to_attr(),
    }
}
