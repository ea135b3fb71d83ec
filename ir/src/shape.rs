//! Shapes with static and symbolic dimensions, and tensor types.

use std::fmt;
use std::sync::Arc;

use crate::dtype::DType;

/// One dimension of a shape: a known extent, a named symbol (`N`, `batch`)
/// or an anonymous unknown (`?`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Dim {
    Known(u64),
    Sym(Arc<str>),
    Unknown,
}

impl Dim {
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Arc::from(name))
    }

    pub fn known(self: &Dim) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Dim::Known(_))
    }

    /// Whether two dims may describe the same extent: equal knowns, or either
    /// side not known.
    pub fn compatible(&self, other: &Dim) -> bool {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a == b,
            _ => true,
        }
    }
}

impl From<u64> for Dim {
    fn from(n: u64) -> Dim {
        Dim::Known(n)
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n as u64)
    }
}

/// Whether a symbol name prints bare (`N`, `batch_size`) or needs quotes.
pub(crate) fn is_bare_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) if is_bare_ident(s) => f.write_str(s),
            Dim::Sym(s) => write!(f, "{s:?}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A shape: a list of dims, or unknown rank.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Shape {
    Ranked(Vec<Dim>),
    UnknownRank,
}

impl Shape {
    pub fn known(dims: &[usize]) -> Shape {
        Shape::Ranked(dims.iter().map(|&d| Dim::from(d)).collect())
    }

    pub fn scalar() -> Shape {
        Shape::Ranked(vec![])
    }

    pub fn dims(&self) -> Option<&[Dim]> {
        match self {
            Shape::Ranked(d) => Some(d),
            Shape::UnknownRank => None,
        }
    }

    pub fn rank(&self) -> Option<usize> {
        self.dims().map(|d| d.len())
    }

    /// All dims as numbers, if every one is known.
    pub fn as_known(&self) -> Option<Vec<usize>> {
        self.dims()?
            .iter()
            .map(|d| d.known().map(|n| n as usize))
            .collect()
    }

    /// Number of elements, if every dim is known and the product fits.
    pub fn numel(&self) -> Option<u64> {
        let mut n: u64 = 1;
        for d in self.dims()? {
            n = n.checked_mul(d.known()?)?;
        }
        Some(n)
    }

    /// Whether a concrete shape fits this (possibly symbolic) one.
    pub fn admits(&self, concrete: &[usize]) -> bool {
        match self {
            Shape::UnknownRank => true,
            Shape::Ranked(dims) => {
                dims.len() == concrete.len()
                    && dims
                        .iter()
                        .zip(concrete)
                        .all(|(d, &c)| d.known().is_none_or(|k| k == c as u64))
            }
        }
    }

    /// Whether two shapes may describe the same tensor.
    pub fn compatible(&self, other: &Shape) -> bool {
        match (self, other) {
            (Shape::Ranked(a), Shape::Ranked(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.compatible(y))
            }
            _ => true,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::UnknownRank => f.write_str("[*]"),
            Shape::Ranked(dims) => {
                f.write_str("[")?;
                for (i, d) in dims.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// The type of a value: element type and shape. Printed `f32[1,3,N,?]`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }

    pub fn known(dtype: DType, dims: &[usize]) -> TensorType {
        TensorType::new(dtype, Shape::known(dims))
    }

    pub fn unknown_rank(dtype: DType) -> TensorType {
        TensorType::new(dtype, Shape::UnknownRank)
    }

    /// A type whose rank is known but none of its dims.
    pub fn with_rank(dtype: DType, rank: usize) -> TensorType {
        TensorType::new(dtype, Shape::Ranked(vec![Dim::Unknown; rank]))
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape.rank()
    }

    pub fn dims(&self) -> Option<&[Dim]> {
        self.shape.dims()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let t = TensorType::new(
            DType::F32,
            Shape::Ranked(vec![
                Dim::Known(1),
                Dim::sym("N"),
                Dim::Unknown,
                Dim::sym("a b"),
            ]),
        );
        assert_eq!(t.to_string(), "f32[1,N,?,\"a b\"]");
        assert_eq!(TensorType::unknown_rank(DType::I64).to_string(), "i64[*]");
        assert_eq!(TensorType::known(DType::Bool, &[]).to_string(), "bool[]");
    }

    #[test]
    fn admits_and_numel() {
        let s = Shape::Ranked(vec![Dim::Known(2), Dim::sym("N")]);
        assert!(s.admits(&[2, 7]));
        assert!(!s.admits(&[3, 7]));
        assert!(!s.admits(&[2]));
        assert_eq!(s.numel(), None);
        assert_eq!(Shape::known(&[2, 3]).numel(), Some(6));
        assert_eq!(Shape::known(&[usize::MAX, 3]).numel(), None);
    }
}
