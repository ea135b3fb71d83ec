//! Reductions, arg-reductions, softmax-like ops and scans along an axis.

use super::infer::{Infer, InferCx, broadcast_onto, expect_dtype, normalize_axis, one, same_dtype};
use super::*;
use crate::attr_enum;
use crate::shape::{Dim, Shape};

attr_enum!(
    /// How Softmax computes a row (one lane along its axis). All three
    /// give the same values up to rounding; they differ in how many passes
    /// they make over the row and how they keep `exp` from overflowing.
    SoftmaxAlgorithm {
        /// Max, then the sum of `exp(x - max)`, then the quotients.
        ThreePass = "three_pass",
        /// No max pass: the sum of `exp(x)` is kept as a mantissa and a
        /// power-of-two exponent (Dukhan & Ablavatski 2020).
        TwoPass = "two_pass",
        /// A running max and a running sum rescaled whenever the max
        /// grows, then the quotients (Milakov & Gimelshein 2018).
        Online = "online",
    }
);

/// ONNX's Softmax along `axis = -1`: no mask, scale 1, three passes.
impl Default for Softmax {
    fn default() -> Softmax {
        Softmax {
            axis: -1,
            scale: 1.0,
            algorithm: SoftmaxAlgorithm::ThreePass,
        }
    }
}

/// Element types a reduction accepts: the standard integer and float types
/// (and bool for `ReduceMax`/`ReduceMin`).
pub fn reducible(d: DType, bool_ok: bool) -> bool {
    (d.is_numeric() && !d.is_packed()) || (bool_ok && d == DType::Bool)
}

/// Reduction axes made non-negative and sorted; a repeated axis is an
/// error (as in numpy).
pub fn reduction_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    let mut out = axes
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(OpError::Invalid(format!("axes {axes:?} repeat an axis")));
    }
    Ok(out)
}

/// The dims left after reducing `axes` (sorted): each becomes `one` with
/// `keepdims`, or goes away without.
pub fn reduced_dims<T: Clone>(dims: &[T], axes: &[usize], keepdims: bool, one: T) -> Vec<T> {
    let mut out = Vec::with_capacity(dims.len());
    for (i, d) in dims.iter().enumerate() {
        if axes.binary_search(&i).is_err() {
            out.push(d.clone());
        } else if keepdims {
            out.push(one.clone());
        }
    }
    out
}

/// Type of a `Reduce*` op: axes from input 1 (known or not), `keepdims`,
/// `noop_with_empty_axes`.
fn infer_reduce(
    cx: &InferCx,
    keepdims: bool,
    noop: bool,
    bool_ok: bool,
) -> Result<Vec<TensorType>, OpError> {
    let dtype = expect_dtype(cx, 0, |d| reducible(d, bool_ok), "a numeric type")?;
    let x = cx.input(0)?;
    let Some(dims) = x.dims() else {
        return one(TensorType::unknown_rank(dtype));
    };
    let rank = dims.len();
    // The axes, if inference can know them: absent, constant, or empty by type.
    let axes = match cx.opt_input(1) {
        None => Some(vec![]),
        Some(t) => cx
            .ints(1)
            .or_else(|| (t.shape.numel() == Some(0)).then(Vec::new)),
    };
    let shape = match axes {
        Some(a) if a.is_empty() && noop => x.shape.clone(),
        Some(a) => {
            let axes = if a.is_empty() {
                (0..rank).collect()
            } else {
                reduction_axes(&a, rank)?
            };
            Shape::Ranked(reduced_dims(dims, &axes, keepdims, Dim::Known(1)))
        }
        // Unknown axes: with keepdims every dim may become 1.
        None if keepdims => Shape::Ranked(
            dims.iter()
                .map(|d| match d {
                    Dim::Known(1) => Dim::Known(1),
                    _ => Dim::Unknown,
                })
                .collect(),
        ),
        None => match cx.input(1)?.shape.numel() {
            Some(n) if n as usize <= rank => Shape::Ranked(vec![Dim::Unknown; rank - n as usize]),
            Some(n) => return Err(OpError::Invalid(format!("{n} axes for rank {rank}"))),
            None => Shape::UnknownRank,
        },
    };
    one(TensorType::new(dtype, shape))
}

macro_rules! reduce_ops {
    ($($op:ident: $bool_ok:expr),* $(,)?) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                infer_reduce(cx, self.keepdims, self.noop_with_empty_axes, $bool_ok)
            }
        }
    )*};
}

reduce_ops!(
    ReduceL1: false,
    ReduceL2: false,
    ReduceLogSum: false,
    ReduceLogSumExp: false,
    ReduceMax: true,
    ReduceMean: false,
    ReduceMin: true,
    ReduceProd: false,
    ReduceSum: false,
    ReduceSumSquare: false,
);

/// Input 0's dims with `axis` replaced by `dim` (or removed if `None`).
/// Unknown rank stays unknown.
fn replace_axis(x: &TensorType, axis: i64, dim: Option<Dim>) -> Result<Shape, OpError> {
    let Some(dims) = x.dims() else {
        return Ok(Shape::UnknownRank);
    };
    let a = normalize_axis(axis, dims.len())?;
    let mut out = dims.to_vec();
    match dim {
        Some(d) => out[a] = d,
        None => {
            out.remove(a);
        }
    }
    Ok(Shape::Ranked(out))
}

macro_rules! arg_reduce {
    ($($op:ident),*) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                expect_dtype(cx, 0, |d| reducible(d, false), "a numeric type")?;
                let keep = self.keepdims.then_some(Dim::Known(1));
                one(TensorType::new(DType::I64, replace_axis(cx.input(0)?, self.axis, keep)?))
            }
        }
    )*};
}
arg_reduce!(ArgMax, ArgMin);

macro_rules! along_axis {
    ($($op:ident),*) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                expect_dtype(cx, 0, |d| d.is_float() && !d.is_packed(), "a float type")?;
                let x = cx.input(0)?;
                if let Some(r) = x.rank() {
                    normalize_axis(self.axis, r)?;
                }
                one(x.clone())
            }
        }
    )*};
}
along_axis!(LogSoftmax, Hardmax);

impl Infer for Softmax {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = expect_dtype(cx, 0, |d| d.is_float() && !d.is_packed(), "a float type")?;
        let x = cx.input(0)?;
        if let Some(r) = x.rank() {
            normalize_axis(self.axis, r)?;
        }
        let Some(mask) = cx.opt_input(1) else {
            return one(x.clone());
        };
        same_dtype(cx, 0, 1)?;
        // The mask broadcasts onto the input, never the other way.
        let shape = match (x.dims(), mask.dims()) {
            (Some(xd), Some(md)) => Shape::Ranked(broadcast_onto(xd, md, "the softmax mask")?),
            _ => x.shape.clone(),
        };
        one(TensorType::new(dtype, shape))
    }
}

/// The axis of a scan, from its (scalar) input 1.
pub fn scan_axis(t: &crate::tensor::Tensor, rank: usize) -> Result<usize, OpError> {
    if t.numel() != 1 || t.rank() > 1 || !t.dtype().is_int() {
        return Err(OpError::Invalid(format!(
            "the axis must be one integer, found {}{:?}",
            t.dtype(),
            t.shape()
        )));
    }
    normalize_axis(t.get_i64(0), rank)
}

macro_rules! scan {
    ($($op:ident),*) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                expect_dtype(cx, 0, |d| reducible(d, false), "a numeric type")?;
                let x = cx.input(0)?;
                if let (Some(a), Some(r)) = (cx.value(1), x.rank()) {
                    scan_axis(a, r)?;
                }
                one(x.clone())
            }
        }
    )*};
}
scan!(CumSum, CumProd);

impl Infer for TopK {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = expect_dtype(cx, 0, |d| reducible(d, false), "a numeric type")?;
        let k = match cx.ints(1).as_deref() {
            Some(&[k]) if k >= 0 => Dim::Known(k as u64),
            Some(&[k]) => return Err(OpError::Invalid(format!("k = {k} is negative"))),
            Some(v) => return Err(OpError::Invalid(format!("k must be one number, got {v:?}"))),
            None => Dim::Unknown,
        };
        let x = cx.input(0)?;
        if let (Some(dims), Dim::Known(k)) = (x.dims(), &k) {
            let a = normalize_axis(self.axis, dims.len())?;
            if let Dim::Known(n) = dims[a]
                && *k > n
            {
                return Err(OpError::Invalid(format!(
                    "k = {k} is larger than the axis ({n})"
                )));
            }
        }
        let shape = replace_axis(x, self.axis, Some(k))?;
        Ok(vec![
            TensorType::new(dtype, shape.clone()),
            TensorType::new(DType::I64, shape),
        ])
    }
}

/// Inference checks shared by the op groups' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use super::*;
    use crate::tensor::Tensor;

    /// `f32[2,N,?]`, `i64[*]`.
    pub(crate) fn parse_type(s: &str) -> TensorType {
        let (dtype, dims) = s.trim_end_matches(']').split_once('[').unwrap();
        let dtype = dtype.parse().unwrap();
        let shape = match dims {
            "*" => Shape::UnknownRank,
            "" => Shape::scalar(),
            _ => Shape::Ranked(
                dims.split(',')
                    .map(|d| match (d, d.parse()) {
                        (_, Ok(n)) => Dim::Known(n),
                        ("?", _) => Dim::Unknown,
                        _ => Dim::sym(d),
                    })
                    .collect(),
            ),
        };
        TensorType::new(dtype, shape)
    }

    /// Infers the first output's type from typed inputs and known values.
    pub(crate) fn infer(op: impl Into<Op>, inputs: &[&str], values: &[Option<Tensor>]) -> String {
        let inputs: Vec<Option<TensorType>> = inputs.iter().map(|s| Some(parse_type(s))).collect();
        let values: Vec<Option<Arc<Tensor>>> =
            values.iter().map(|v| v.clone().map(Arc::new)).collect();
        let cx = InferCx {
            inputs: &inputs,
            values: &values,
            num_outputs: 1,
            syms: &[],
        };
        match op.into().infer(&cx) {
            Ok(t) => t[0].to_string(),
            Err(e) => format!("error: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::infer;
    use super::*;
    use crate::tensor::Tensor;

    fn axes(v: &[i64]) -> Option<Tensor> {
        Some(Tensor::from_vec(vec![v.len()], v.to_vec()))
    }

    fn sum(keepdims: bool) -> ReduceSum {
        ReduceSum {
            keepdims,
            noop_with_empty_axes: false,
        }
    }

    #[test]
    fn reduce_shapes() {
        let x = "f32[2,N,4]";
        assert_eq!(
            infer(sum(true), &[x, "i64[1]"], &[None, axes(&[1])]),
            "f32[2,1,4]"
        );
        assert_eq!(
            infer(sum(false), &[x, "i64[2]"], &[None, axes(&[0, -1])]),
            "f32[N]"
        );
        assert_eq!(infer(sum(false), &[x], &[]), "f32[]");
        // Axes only known at run time.
        assert_eq!(infer(sum(true), &[x, "i64[1]"], &[]), "f32[?,?,?]");
        assert_eq!(infer(sum(false), &[x, "i64[2]"], &[]), "f32[?]");
        assert_eq!(infer(sum(false), &[x, "i64[?]"], &[]), "f32[*]");
        let noop = ReduceSum {
            keepdims: true,
            noop_with_empty_axes: true,
        };
        assert_eq!(infer(noop, &[x, "i64[0]"], &[]), "f32[2,N,4]");
        assert!(infer(sum(true), &[x, "i64[1]"], &[None, axes(&[3])]).starts_with("error"));
        assert!(infer(sum(true), &["string[2]"], &[]).starts_with("error"));
    }

    #[test]
    fn softmax_mask_broadcasts_onto_the_input() {
        let sm = Softmax::default;
        assert_eq!(infer(sm(), &["f16[B,4]"], &[]), "f16[B,4]");
        assert_eq!(infer(sm(), &["f32[B,4]", "f32[1,4]"], &[]), "f32[B,4]");
        assert_eq!(infer(sm(), &["f32[B,4]", "f32[]"], &[]), "f32[B,4]");
        // A known mask dim other than 1 fixes an open input dim; a
        // symbolic or unknown one may be 1 and fixes nothing.
        assert_eq!(infer(sm(), &["f32[?,?]", "f32[3,1]"], &[]), "f32[3,?]");
        assert_eq!(infer(sm(), &["f32[N,?]", "f32[5,M]"], &[]), "f32[5,?]");
        assert_eq!(infer(sm(), &["f32[*]", "f32[5]"], &[]), "f32[*]");
        assert_eq!(infer(sm(), &["f32[2,3]", "f32[*]"], &[]), "f32[2,3]");
        // Only one way: never widening the input.
        assert!(infer(sm(), &["f32[2,4]", "f32[3]"], &[]).starts_with("error"));
        assert!(infer(sm(), &["f32[2,3]", "f32[1,2,3]"], &[]).starts_with("error"));
        assert!(infer(sm(), &["f32[1,3]", "f32[2,3]"], &[]).starts_with("error"));
        assert!(infer(sm(), &["f32[2,3]", "f16[3]"], &[]).starts_with("error"));
        assert!(infer(sm(), &["i32[2,3]"], &[]).starts_with("error"));
        let axis2 = Softmax {
            axis: 2,
            ..Softmax::default()
        };
        assert!(infer(axis2, &["f32[2,3]"], &[]).starts_with("error"));
    }

    #[test]
    fn softmax_attributes() {
        use crate::attr::{AttrValue, Attrs};
        let attrs = Attrs::new()
            .with("algorithm", AttrValue::Str("two_pass".into()))
            .with("scale", AttrValue::Float(0.125));
        let op = Op::from_text("softmax", attrs).unwrap().unwrap();
        let want = Softmax {
            axis: -1,
            scale: 0.125,
            algorithm: SoftmaxAlgorithm::TwoPass,
        };
        assert_eq!(op, Op::Softmax(want));
        assert_eq!(
            op.attrs(),
            vec![
                ("scale", AttrValue::Float(0.125)),
                ("algorithm", AttrValue::Sym("two_pass".into())),
            ]
        );
        assert_eq!(
            SoftmaxAlgorithm::parse("online"),
            Some(SoftmaxAlgorithm::Online)
        );
        assert_eq!(SoftmaxAlgorithm::ThreePass.onnx_name(), "three_pass");
        let bad = Attrs::new().with("algorithm", AttrValue::Str("four_pass".into()));
        assert!(Op::from_text("softmax", bad).unwrap().is_err());
    }

    #[test]
    fn arg_and_top_k_shapes() {
        let arg = ArgMax {
            axis: -1,
            keepdims: false,
            select_last_index: false,
        };
        assert_eq!(infer(arg, &["f16[2,3]"], &[]), "i64[2]");
        let top = TopK {
            axis: 1,
            largest: true,
            sorted: true,
        };
        let k = Some(Tensor::from_vec(vec![1], vec![2i64]));
        assert_eq!(
            infer(top.clone(), &["f32[2,3]", "i64[1]"], &[None, k]),
            "f32[2,2]"
        );
        assert_eq!(infer(top.clone(), &["f32[2,3]", "i64[1]"], &[]), "f32[2,?]");
        let k = Some(Tensor::from_vec(vec![1], vec![4i64]));
        assert!(infer(top, &["f32[2,3]", "i64[1]"], &[None, k]).starts_with("error"));
    }
}
