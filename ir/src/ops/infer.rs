//! Type inference: output dtypes and shapes from input types and, where
//! they are known, input values (shape tensors, axes, constants).

use std::sync::Arc;

use super::OpError;
use crate::dtype::DType;
use crate::shape::{Dim, Shape, TensorType};
use crate::tensor::Tensor;

/// What inference knows about a node's inputs.
pub struct InferCx<'a> {
    /// Input types, in order; `None` is an omitted optional input.
    pub inputs: &'a [Option<TensorType>],
    /// Input values where they are known (constants and what folds from
    /// them); shorter than `inputs` or `None` where unknown.
    pub values: &'a [Option<Arc<Tensor>>],
    /// How many outputs the node has.
    pub num_outputs: usize,
    /// Integer inputs known element by element, some elements possibly
    /// symbolic (a shape computed by `shape`, `gather`, `concat` … from a
    /// tensor with symbolic dims); shorter than `inputs` or `None` where
    /// unknown.
    pub syms: &'a [Option<Vec<SymInt>>],
}

/// One element of a small integer tensor that inference follows: a number,
/// a symbolic dim, or unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SymInt {
    Int(i64),
    Sym(Arc<str>),
    Unknown,
}

impl SymInt {
    /// The element a dim stands for.
    pub fn from_dim(d: &Dim) -> SymInt {
        match d {
            Dim::Known(n) => SymInt::Int(*n as i64),
            Dim::Sym(s) => SymInt::Sym(s.clone()),
            Dim::Unknown => SymInt::Unknown,
        }
    }

    /// The dim this element stands for, where it is one (negative numbers
    /// are not dims).
    pub fn to_dim(&self) -> Dim {
        match self {
            SymInt::Int(n) if *n >= 0 => Dim::Known(*n as u64),
            SymInt::Sym(s) => Dim::Sym(s.clone()),
            _ => Dim::Unknown,
        }
    }
}

impl std::fmt::Display for SymInt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SymInt::Int(n) => write!(f, "{n}"),
            SymInt::Sym(s) => write!(f, "{s}"),
            SymInt::Unknown => f.write_str("?"),
        }
    }
}

/// Output types of an op.
pub trait Infer {
    fn infer(&self, _cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let name = std::any::type_name::<Self>()
            .rsplit("::")
            .next()
            .unwrap_or("?");
        Err(OpError::Unsupported(format!("type inference for {name}")))
    }
}

/// Implements [`Infer`] with the default (unsupported) body for ops that
/// have no inference yet.
#[macro_export]
macro_rules! no_infer {
    ($($op:ident),* $(,)?) => { $(impl $crate::ops::Infer for $op {})* };
}

impl<'a> InferCx<'a> {
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Input `i`, which must be present.
    pub fn input(&self, i: usize) -> Result<&'a TensorType, OpError> {
        match self.inputs.get(i) {
            Some(Some(t)) => Ok(t),
            _ => Err(OpError::Invalid(format!("input {i} is required"))),
        }
    }

    /// Input `i`, if present.
    pub fn opt_input(&self, i: usize) -> Option<&'a TensorType> {
        self.inputs.get(i).and_then(|t| t.as_ref())
    }

    pub fn dtype(&self, i: usize) -> Result<DType, OpError> {
        Ok(self.input(i)?.dtype)
    }

    /// The known value of input `i`.
    pub fn value(&self, i: usize) -> Option<&'a Tensor> {
        self.values.get(i).and_then(|v| v.as_deref())
    }

    /// The known value of input `i` as integers (shapes, axes, sizes).
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.value(i).map(|t| t.to_i64_vec())
    }

    /// The elements of integer input `i`, from its known value or as
    /// followed symbolically.
    pub fn sym_ints(&self, i: usize) -> Option<Vec<SymInt>> {
        if let Some(v) = self.ints(i) {
            return Some(v.into_iter().map(SymInt::Int).collect());
        }
        self.syms.get(i).cloned().flatten()
    }

    /// Rank of input `i`, if known.
    pub fn rank(&self, i: usize) -> Result<Option<usize>, OpError> {
        Ok(self.input(i)?.rank())
    }
}

/// Checks a dtype against a predicate, with a message naming the input.
pub fn expect_dtype(
    cx: &InferCx,
    i: usize,
    ok: impl Fn(DType) -> bool,
    what: &str,
) -> Result<DType, OpError> {
    let d = cx.dtype(i)?;
    if ok(d) {
        Ok(d)
    } else {
        Err(OpError::Invalid(format!(
            "input {i} has type {d}, expected {what}"
        )))
    }
}

/// Checks that inputs `i` and `j` have the same dtype.
pub fn same_dtype(cx: &InferCx, i: usize, j: usize) -> Result<DType, OpError> {
    let (a, b) = (cx.dtype(i)?, cx.dtype(j)?);
    if a != b {
        return Err(OpError::Invalid(format!(
            "inputs {i} and {j} have different types: {a} and {b}"
        )));
    }
    Ok(a)
}

/// An axis in `[-rank, rank)` made non-negative.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(OpError::Invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Multidirectional (numpy) broadcasting of two shapes.
pub fn broadcast2(a: &Shape, b: &Shape) -> Result<Shape, OpError> {
    let (Some(a), Some(b)) = (a.dims(), b.dims()) else {
        return Ok(Shape::UnknownRank);
    };
    let rank = a.len().max(b.len());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            &a[i + a.len() - rank]
        } else {
            &Dim::Known(1)
        };
        let db = if i + b.len() >= rank {
            &b[i + b.len() - rank]
        } else {
            &Dim::Known(1)
        };
        out.push(broadcast_dim(da, db).ok_or_else(|| {
            OpError::Invalid(format!(
                "shapes {} and {} do not broadcast",
                Shape::Ranked(a.to_vec()),
                Shape::Ranked(b.to_vec())
            ))
        })?);
    }
    Ok(Shape::Ranked(out))
}

/// One broadcast dim; `None` if the two cannot broadcast.
pub fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    Some(match (a, b) {
        (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
        (Dim::Known(x), Dim::Known(y)) if x == y => a.clone(),
        (Dim::Known(_), Dim::Known(_)) => return None,
        (Dim::Known(_), _) => a.clone(),
        (_, Dim::Known(_)) => b.clone(),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => a.clone(),
        _ => Dim::Unknown,
    })
}

/// Broadcast of all present inputs' shapes.
pub fn broadcast_all(cx: &InferCx) -> Result<Shape, OpError> {
    let mut shape = Shape::scalar();
    for t in cx.inputs.iter().flatten() {
        shape = broadcast2(&shape, &t.shape)?;
    }
    Ok(shape)
}

/// The dims of `to` once `from` is checked to broadcast onto them one
/// way (ONNX "unidirectional" broadcasting: the result has `to`'s shape,
/// so `from` has no more dims, and each of its dims is 1 or `to`'s). A
/// known dim of `from` other than 1 fixes a dim that `to` leaves open.
pub fn broadcast_onto(to: &[Dim], from: &[Dim], what: &str) -> Result<Vec<Dim>, OpError> {
    let bad = || {
        OpError::Invalid(format!(
            "{what} of shape {} does not broadcast to {}",
            Shape::Ranked(from.to_vec()),
            Shape::Ranked(to.to_vec())
        ))
    };
    if from.len() > to.len() {
        return Err(bad());
    }
    let mut out = to.to_vec();
    let off = to.len() - from.len();
    for (o, f) in out[off..].iter_mut().zip(from) {
        match (&*o, f) {
            (_, Dim::Known(1)) => {}
            (Dim::Known(a), Dim::Known(b)) if a != b => return Err(bad()),
            (Dim::Known(_), _) => {}
            (_, Dim::Known(_)) => *o = f.clone(),
            // A symbolic or unknown `from` dim may be 1 at run time.
            _ => {}
        }
    }
    Ok(out)
}

/// Turns a known dims list into a shape, with unknown dims where a value is
/// negative.
pub fn shape_from_ints(v: &[i64]) -> Shape {
    Shape::Ranked(
        v.iter()
            .map(|&d| {
                if d >= 0 {
                    Dim::Known(d as u64)
                } else {
                    Dim::Unknown
                }
            })
            .collect(),
    )
}

/// A single output of the given type.
pub fn one(t: TensorType) -> Result<Vec<TensorType>, OpError> {
    Ok(vec![t])
}
