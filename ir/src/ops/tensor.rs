//! Shape and data-movement ops.
//!
//! Inference is as precise as the inputs allow: shape-like inputs (target
//! shapes, axes, pads, repeats, slice bounds) are read from their known
//! values, and only the dims that truly depend on unknown data become
//! unknown. The rules that inference and evaluation share (resolving a
//! Reshape target, clamping Slice bounds, splitting, padding amounts) live
//! in [`rules`], so the two cannot disagree.

use super::infer::{Infer, InferCx, SymInt, expect_dtype, normalize_axis, one, shape_from_ints};
use super::*;
use crate::shape::{Dim, Shape as Dims};
use crate::tensor::MAX_ELEMENTS;
use crate::{attr_enum, invalid};

attr_enum!(ScatterReduction { None = "none", Add = "add", Mul = "mul", Max = "max", Min = "min" });
attr_enum!(PadMode { Constant = "constant", Reflect = "reflect", Edge = "edge", Wrap = "wrap" });
attr_enum!(DepthToSpaceMode { Dcr = "DCR", Crd = "CRD" });
attr_enum!(
    /// How TensorScatter places updates past the end of the cache.
    TensorScatterMode { Linear = "linear", Circular = "circular" }
);

/// Rules shared by type inference and the reference interpreter.
pub mod rules {
    use super::*;

    /// Resolves a Reshape target against the input dims: `0` copies the
    /// input dim at the same position (unless `allowzero`), `-1` takes what
    /// is left of the element count. Symbolic dims that cancel out between
    /// input and target still let `-1` be resolved.
    pub fn reshape_dims(
        input: &[Dim],
        target: &[i64],
        allowzero: bool,
    ) -> Result<Vec<Dim>, OpError> {
        let target: Vec<SymInt> = target.iter().map(|&t| SymInt::Int(t)).collect();
        reshape_dims_sym(input, &target, allowzero)
    }

    /// [`reshape_dims`] for a target known element by element, some
    /// elements symbolic or unknown.
    pub fn reshape_dims_sym(
        input: &[Dim],
        target_elems: &[SymInt],
        allowzero: bool,
    ) -> Result<Vec<Dim>, OpError> {
        let target = format!(
            "[{}]",
            target_elems
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut infer_at = None;
        let mut out = Vec::with_capacity(target_elems.len());
        for (i, t) in target_elems.iter().enumerate() {
            let t = match t {
                SymInt::Int(t) => *t,
                SymInt::Sym(_) | SymInt::Unknown => {
                    out.push(t.to_dim());
                    continue;
                }
            };
            out.push(match t {
                -1 => {
                    if infer_at.replace(i).is_some() {
                        return invalid!("shape {target} has more than one -1");
                    }
                    Dim::Unknown
                }
                0 if !allowzero => match input.get(i) {
                    Some(d) => d.clone(),
                    None => {
                        return invalid!(
                            "shape {target} copies dim {i} (0) but the input has rank {}",
                            input.len()
                        );
                    }
                },
                t if t < 0 => return invalid!("shape {target} has a negative dim {t}"),
                t => Dim::Known(t as u64),
            });
        }
        if allowzero && infer_at.is_some() && target_elems.contains(&SymInt::Int(0)) {
            return invalid!("shape {target} has both 0 and -1 with allowzero");
        }
        let (in_known, in_syms) = split_dims(input)?;
        let others: Vec<Dim> = out
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != infer_at)
            .map(|(_, d)| d.clone())
            .collect();
        let (out_known, out_syms) = split_dims(&others)?;
        let (Some(in_known), Some(out_known)) = (in_known, out_known) else {
            return Ok(out);
        };
        // What remains of the input's symbols once the target's are matched.
        let mut rest = in_syms;
        let mut all_matched = true;
        for s in out_syms {
            match rest.iter().position(|r| *r == s) {
                Some(p) => {
                    rest.swap_remove(p);
                }
                None => all_matched = false,
            }
        }
        match infer_at {
            Some(at) => {
                if all_matched && rest.is_empty() {
                    if out_known == 0 {
                        return invalid!(
                            "cannot infer -1 in shape {target}: the other dims hold 0 elements"
                        );
                    }
                    if in_known % out_known != 0 {
                        return invalid!(
                            "cannot reshape {} elements into shape {target}",
                            in_known
                        );
                    }
                    out[at] = Dim::Known(in_known / out_known);
                } else if all_matched && rest.len() == 1 && in_known == out_known && out_known != 0
                {
                    // The one symbol left over is what -1 stands for.
                    out[at] = rest.swap_remove(0);
                }
            }
            None => {
                if all_matched && rest.is_empty() && in_known != out_known {
                    return invalid!("cannot reshape {} elements into shape {target}", in_known);
                }
            }
        }
        Ok(out)
    }

    /// Product of the known dims and the list of symbolic ones; `None` for
    /// the product when some dim is anonymous-unknown.
    fn split_dims(dims: &[Dim]) -> Result<(Option<u64>, Vec<Dim>), OpError> {
        let mut known: Option<u64> = Some(1);
        let mut syms = Vec::new();
        for d in dims {
            match d {
                Dim::Known(n) => {
                    known = match known {
                        Some(k) => Some(k.checked_mul(*n).ok_or_else(|| {
                            OpError::Invalid(format!("too many elements in {dims:?}"))
                        })?),
                        None => None,
                    }
                }
                Dim::Sym(_) => syms.push(d.clone()),
                Dim::Unknown => known = None,
            }
        }
        Ok((known, syms))
    }

    /// Product of dims: known if all are, the single non-trivial dim if the
    /// others are 1, otherwise unknown.
    pub fn dim_product(dims: &[Dim]) -> Dim {
        let mut known: u64 = 1;
        let mut other: Option<&Dim> = None;
        let mut many = false;
        for d in dims {
            match d {
                Dim::Known(n) => match known.checked_mul(*n) {
                    Some(k) => known = k,
                    None => return Dim::Unknown,
                },
                d => {
                    many |= other.is_some();
                    other = Some(d);
                }
            }
        }
        match other {
            None => Dim::Known(known),
            Some(_) if known == 0 => Dim::Known(0),
            Some(d) if known == 1 && !many => d.clone(),
            Some(_) => Dim::Unknown,
        }
    }

    /// A dim times a factor.
    pub fn dim_times(d: &Dim, k: u64) -> Dim {
        match (d, k) {
            (_, 0) => Dim::Known(0),
            (d, 1) => d.clone(),
            (Dim::Known(n), k) => n.checked_mul(k).map_or(Dim::Unknown, Dim::Known),
            _ => Dim::Unknown,
        }
    }

    /// One axis of a Slice with ONNX's clamping: returns the first index
    /// and the number of elements taken (`step` apart).
    pub fn slice_axis(dim: u64, start: i64, end: i64, step: i64) -> Result<(i64, u64), OpError> {
        if step == 0 {
            return invalid!("slice step cannot be 0");
        }
        if dim == 0 {
            return Ok((0, 0));
        }
        let d = dim as i128;
        let (mut s, mut e) = (start as i128, end as i128);
        if s < 0 {
            s += d;
        }
        if e < 0 {
            e += d;
        }
        let step = step as i128;
        let len = if step > 0 {
            s = s.clamp(0, d);
            e = e.clamp(0, d);
            if e > s { (e - s + step - 1) / step } else { 0 }
        } else {
            s = s.clamp(0, d - 1);
            e = e.clamp(-1, d - 1);
            if s > e { (s - e - step - 1) / -step } else { 0 }
        };
        Ok((s as i64, len as u64))
    }

    /// The extent of a sliced dim that is not known: unchanged when the
    /// slice provably takes the whole axis, unknown otherwise.
    pub fn slice_unknown_dim(d: &Dim, start: i64, end: i64, step: i64) -> Dim {
        // No dim exceeds MAX_ELEMENTS, so bounds past it clamp the same way
        // for every extent.
        let huge = MAX_ELEMENTS as i64;
        let whole = match step {
            1 => (start == 0 || start <= -huge) && end >= huge,
            -1 => (start == -1 || start >= huge) && end < -huge,
            _ => false,
        };
        if whole { d.clone() } else { Dim::Unknown }
    }

    /// Per-axis (axis, start, end, step) of a Slice, axes normalized and
    /// checked for repeats.
    pub fn slice_specs(
        rank: usize,
        starts: &[i64],
        ends: &[i64],
        axes: Option<&[i64]>,
        steps: Option<&[i64]>,
    ) -> Result<Vec<(usize, i64, i64, i64)>, OpError> {
        let n = starts.len();
        if ends.len() != n
            || axes.is_some_and(|a| a.len() != n)
            || steps.is_some_and(|s| s.len() != n)
        {
            return invalid!("slice starts, ends, axes and steps must have the same length");
        }
        let mut seen = vec![false; rank];
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let axis = match axes {
                Some(a) => normalize_axis(a[i], rank)?,
                None if i < rank => i,
                None => return invalid!("{n} slice starts for rank {rank}"),
            };
            if std::mem::replace(&mut seen[axis], true) {
                return invalid!("axis {axis} is sliced twice");
            }
            let step = steps.map_or(1, |s| s[i]);
            if step == 0 {
                return invalid!("slice step cannot be 0");
            }
            out.push((axis, starts[i], ends[i], step));
        }
        Ok(out)
    }

    /// Sizes of the parts of a Split along a dim of `dim` elements into
    /// `n` parts: equal parts, the last one smaller when `dim` does not
    /// divide evenly.
    pub fn split_even(dim: u64, n: usize) -> Result<Vec<u64>, OpError> {
        if n == 0 {
            return invalid!("split into 0 parts");
        }
        let n64 = n as u64;
        let chunk = dim.div_ceil(n64);
        let last = dim as i128 - chunk as i128 * (n64 as i128 - 1);
        if last < 0 {
            return invalid!("a dim of {dim} cannot be split into {n} parts");
        }
        let mut sizes = vec![chunk; n - 1];
        sizes.push(last as u64);
        Ok(sizes)
    }

    /// Normalized (axis, before, after) pads from Pad's `pads` and `axes`.
    pub fn pad_amounts(
        rank: usize,
        pads: &[i64],
        axes: Option<&[i64]>,
    ) -> Result<Vec<(i64, i64)>, OpError> {
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&a| normalize_axis(a, rank))
                .collect::<Result<_, _>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return invalid!(
                "pads has {} values, expected {} (two per axis)",
                pads.len(),
                2 * axes.len()
            );
        }
        let mut out = vec![(0, 0); rank];
        let mut seen = vec![false; rank];
        for (i, &a) in axes.iter().enumerate() {
            if std::mem::replace(&mut seen[a], true) {
                return invalid!("axis {a} is padded twice");
            }
            out[a] = (pads[i], pads[axes.len() + i]);
        }
        Ok(out)
    }

    /// The extent of a padded dim; negative results are errors.
    pub fn padded(dim: u64, (before, after): (i64, i64)) -> Result<u64, OpError> {
        let n = dim as i128 + before as i128 + after as i128;
        if n < 0 {
            return invalid!("pads ({before}, {after}) remove more than the dim of {dim}");
        }
        Ok(n as u64)
    }

    /// Axes of Squeeze/Unsqueeze normalized against `rank`, with repeats
    /// rejected.
    pub fn unique_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
        let mut out = Vec::with_capacity(axes.len());
        for &a in axes {
            let a = normalize_axis(a, rank)?;
            if out.contains(&a) {
                return invalid!("axis {a} is repeated in {axes:?}");
            }
            out.push(a);
        }
        Ok(out)
    }

    /// Flatten's axis in `[-rank, rank]`, made non-negative.
    pub fn flatten_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
        let r = rank as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if !(0..=r).contains(&a) {
            return invalid!("flatten axis {axis} is out of range for rank {rank}");
        }
        Ok(a as usize)
    }

    /// DepthToSpace/SpaceToDepth's blocksize, small enough that its square
    /// cannot overflow.
    pub fn blocksize(b: i64) -> Result<u64, OpError> {
        if b <= 0 || b > u32::MAX as i64 {
            return invalid!("blocksize {b} is out of range");
        }
        Ok(b as u64)
    }

    /// Transpose's permutation: the given one, checked, or the reversal.
    pub fn permutation(perm: Option<&[i64]>, rank: usize) -> Result<Vec<usize>, OpError> {
        let Some(perm) = perm else {
            return Ok((0..rank).rev().collect());
        };
        if perm.len() != rank {
            return invalid!("perm {perm:?} does not fit rank {rank}");
        }
        let mut seen = vec![false; rank];
        let mut out = Vec::with_capacity(rank);
        for &p in perm {
            let p = normalize_axis(p, rank)?;
            if std::mem::replace(&mut seen[p], true) {
                return invalid!("perm {perm:?} is not a permutation");
            }
            out.push(p);
        }
        Ok(out)
    }

    /// Shape's `[start, end)` range over a rank, clamped as ONNX says.
    pub fn shape_range(start: i64, end: Option<i64>, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let clamp = |x: i64| if x < 0 { (x + r).max(0) } else { x.min(r) } as usize;
        let (s, e) = (clamp(start), clamp(end.unwrap_or(r)));
        (s, e.max(s))
    }

    /// Number of elements of a Range; errors for a zero or non-finite step.
    pub fn range_len_f64(start: f64, limit: f64, delta: f64) -> Result<u64, OpError> {
        if delta == 0.0 || !(start.is_finite() && limit.is_finite() && delta.is_finite()) {
            return invalid!("range({start}, {limit}, {delta}) is not finite");
        }
        let n = ((limit - start) / delta).ceil();
        if n > MAX_ELEMENTS as f64 {
            return invalid!("range({start}, {limit}, {delta}) is too long");
        }
        Ok(n.max(0.0) as u64)
    }

    /// Number of elements of an integer Range.
    pub fn range_len_int(start: i128, limit: i128, delta: i128) -> Result<u64, OpError> {
        if delta == 0 {
            return invalid!("range step cannot be 0");
        }
        let span = limit - start;
        // ceil(span / delta) for either sign of delta.
        let n = if (span > 0) == (delta > 0) && span != 0 {
            (span.abs() + delta.abs() - 1) / delta.abs()
        } else {
            0
        };
        if n > MAX_ELEMENTS as i128 {
            return invalid!("range({start}, {limit}, {delta}) is too long");
        }
        Ok(n as u64)
    }
}

use rules::*;

fn ranked(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Dims::Ranked(dims))
}

/// The number of entries of a 1-D input, if known.
fn len_1d(cx: &InferCx, i: usize) -> Option<usize> {
    match cx.opt_input(i)?.dims()? {
        [d] => d.known().map(|n| n as usize),
        [] => Some(1),
        _ => None,
    }
}

fn index_dtype(cx: &InferCx, i: usize) -> Result<DType, OpError> {
    expect_dtype(
        cx,
        i,
        |d| matches!(d, DType::I32 | DType::I64),
        "i32 or i64",
    )
}

fn i64_input(cx: &InferCx, i: usize) -> Result<DType, OpError> {
    expect_dtype(cx, i, |d| d == DType::I64, "i64")
}

impl Infer for Reshape {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        i64_input(cx, 1)?;
        let Some(target) = cx.sym_ints(1) else {
            return one(match len_1d(cx, 1) {
                Some(n) => TensorType::with_rank(x.dtype, n),
                None => TensorType::unknown_rank(x.dtype),
            });
        };
        let dims = match x.dims() {
            Some(d) => reshape_dims_sym(d, &target, self.allowzero)?,
            None => target
                .iter()
                .map(|t| match t {
                    SymInt::Int(0) if self.allowzero => Dim::Known(0),
                    SymInt::Int(0) | SymInt::Int(-1) => Dim::Unknown,
                    t => t.to_dim(),
                })
                .collect(),
        };
        one(ranked(x.dtype, dims))
    }
}

impl Infer for Flatten {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        let Some(dims) = x.dims() else {
            return one(TensorType::with_rank(x.dtype, 2));
        };
        let a = flatten_axis(self.axis, dims.len())?;
        one(ranked(
            x.dtype,
            vec![dim_product(&dims[..a]), dim_product(&dims[a..])],
        ))
    }
}

impl Infer for Squeeze {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        if cx.opt_input(1).is_some() {
            i64_input(cx, 1)?;
        }
        let Some(dims) = x.dims() else {
            return one(TensorType::unknown_rank(x.dtype));
        };
        let axes = match (cx.opt_input(1), cx.ints(1)) {
            (None, _) => {
                if dims.iter().all(Dim::is_known) {
                    let kept = dims.iter().filter(|d| **d != Dim::Known(1)).cloned();
                    return one(ranked(x.dtype, kept.collect()));
                }
                return one(TensorType::unknown_rank(x.dtype));
            }
            (Some(_), None) => {
                return one(match len_1d(cx, 1) {
                    Some(n) if n <= dims.len() => TensorType::with_rank(x.dtype, dims.len() - n),
                    Some(_) => return invalid!("more squeezed axes than the rank {}", dims.len()),
                    None => TensorType::unknown_rank(x.dtype),
                });
            }
            (Some(_), Some(axes)) => unique_axes(&axes, dims.len())?,
        };
        for &a in &axes {
            if let Dim::Known(n) = dims[a]
                && n != 1
            {
                return invalid!("cannot squeeze axis {a} of extent {n}");
            }
        }
        let kept = (0..dims.len())
            .filter(|i| !axes.contains(i))
            .map(|i| dims[i].clone());
        one(ranked(x.dtype, kept.collect()))
    }
}

impl Infer for Unsqueeze {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        i64_input(cx, 1)?;
        let Some(dims) = x.dims() else {
            return one(TensorType::unknown_rank(x.dtype));
        };
        let Some(axes) = cx.ints(1) else {
            return one(match len_1d(cx, 1) {
                Some(n) => TensorType::with_rank(x.dtype, dims.len() + n),
                None => TensorType::unknown_rank(x.dtype),
            });
        };
        let rank = dims.len() + axes.len();
        let axes = unique_axes(&axes, rank)?;
        let mut rest = dims.iter();
        let out = (0..rank).map(|i| {
            if axes.contains(&i) {
                Dim::Known(1)
            } else {
                rest.next().cloned().unwrap_or(Dim::Unknown)
            }
        });
        one(ranked(x.dtype, out.collect()))
    }
}

impl Infer for Transpose {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        let rank = match (x.rank(), &self.perm) {
            (Some(r), _) => r,
            (None, Some(p)) => p.len(),
            (None, None) => return one(x.clone()),
        };
        let perm = permutation(self.perm.as_deref(), rank)?;
        let dims = match x.dims() {
            Some(d) => perm.iter().map(|&p| d[p].clone()).collect(),
            None => vec![Dim::Unknown; rank],
        };
        one(ranked(x.dtype, dims))
    }
}

impl Infer for Concat {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = cx.dtype(0)?;
        let mut known: Option<Vec<Dim>> = None;
        for i in 0..cx.num_inputs() {
            let t = cx.input(i)?;
            if t.dtype != dtype {
                return invalid!("concat inputs 0 and {i} have types {dtype} and {}", t.dtype);
            }
            if known.is_none() {
                known = t.dims().map(|d| d.to_vec());
            }
        }
        let Some(first) = known else {
            return one(TensorType::unknown_rank(dtype));
        };
        let rank = first.len();
        if rank == 0 {
            return invalid!("cannot concatenate scalars");
        }
        let axis = normalize_axis(self.axis, rank)?;
        let mut out = first.clone();
        let mut total = Some(0u64);
        let mut sum_syms = Vec::new();
        for i in 0..cx.num_inputs() {
            let Some(dims) = cx.input(i)?.dims() else {
                total = None;
                out[axis] = Dim::Unknown;
                continue;
            };
            if dims.len() != rank {
                return invalid!("concat inputs have ranks {rank} and {}", dims.len());
            }
            for (d, (o, x)) in out.iter_mut().zip(dims).enumerate() {
                if d == axis {
                    match x {
                        Dim::Known(n) => total = total.and_then(|t| t.checked_add(*n)),
                        _ => sum_syms.push(x.clone()),
                    }
                } else {
                    *o = merge_equal_dims(o, x).ok_or_else(|| {
                        OpError::Invalid(format!("concat inputs differ in dim {d}: {o} and {x}"))
                    })?;
                }
            }
        }
        out[axis] = match (total, sum_syms.as_slice()) {
            (Some(t), []) => Dim::Known(t),
            (Some(0), [d]) => d.clone(),
            _ => Dim::Unknown,
        };
        one(ranked(dtype, out))
    }
}

/// Two dims that must be equal: the more precise one, `None` on conflict.
fn merge_equal_dims(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => (x == y).then(|| a.clone()),
        (Dim::Known(_), _) => Some(a.clone()),
        (_, Dim::Known(_)) => Some(b.clone()),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => Some(a.clone()),
        (Dim::Sym(_), Dim::Unknown) => Some(a.clone()),
        (Dim::Unknown, Dim::Sym(_)) => Some(b.clone()),
        _ => Some(Dim::Unknown),
    }
}

impl Infer for Split {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        let n = cx.num_outputs;
        if let Some(k) = self.num_outputs
            && k as usize != n
        {
            return invalid!("num_outputs is {k} but the node has {n} outputs");
        }
        if cx.opt_input(1).is_some() {
            i64_input(cx, 1)?;
            if self.num_outputs.is_some() {
                return invalid!("split sizes and num_outputs cannot both be given");
            }
        }
        let Some(dims) = x.dims() else {
            return Ok(vec![TensorType::unknown_rank(x.dtype); n]);
        };
        let axis = normalize_axis(self.axis, dims.len())?;
        let sizes: Vec<Dim> = match (cx.opt_input(1), cx.ints(1)) {
            (Some(_), Some(split)) => {
                if split.len() != n {
                    return invalid!("{} split sizes for {n} outputs", split.len());
                }
                if split.iter().any(|&s| s < 0) {
                    return invalid!("negative split size in {split:?}");
                }
                if let Dim::Known(d) = dims[axis]
                    && split.iter().map(|&s| s as i128).sum::<i128>() != d as i128
                {
                    return invalid!("split sizes {split:?} do not add up to {d}");
                }
                split.iter().map(|&s| Dim::Known(s as u64)).collect()
            }
            (Some(_), None) => vec![Dim::Unknown; n],
            // A split that cannot happen is left for evaluation to report:
            // it may sit in a branch that never runs.
            (None, _) => match &dims[axis] {
                Dim::Known(d) => match split_even(*d, n) {
                    Ok(sizes) => sizes.into_iter().map(Dim::Known).collect(),
                    Err(_) => vec![Dim::Unknown; n],
                },
                d if n == 1 => vec![d.clone()],
                _ => vec![Dim::Unknown; n],
            },
        };
        Ok(sizes
            .into_iter()
            .map(|s| {
                let mut d = dims.to_vec();
                d[axis] = s;
                ranked(x.dtype, d)
            })
            .collect())
    }
}

impl Infer for Slice {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        for i in 1..cx.num_inputs() {
            if cx.opt_input(i).is_some() {
                index_dtype(cx, i)?;
            }
        }
        let Some(dims) = x.dims() else {
            return one(x.clone());
        };
        let known = |i: usize| match cx.opt_input(i) {
            None => Some(None),
            Some(_) => cx.ints(i).map(Some),
        };
        let (Some(Some(starts)), Some(Some(ends)), Some(axes), Some(steps)) =
            (known(1), known(2), known(3), known(4))
        else {
            // Without known bounds the sliced axes become unknown; the others
            // keep their dims when it is known which axes are sliced.
            let mut out = vec![Dim::Unknown; dims.len()];
            let axes = match known(3) {
                Some(Some(axes)) => Some(axes),
                Some(None) => len_1d(cx, 1).map(|n| (0..n.min(dims.len()) as i64).collect()),
                None => None,
            };
            if let Some(axes) = axes {
                let axes = unique_axes(&axes, dims.len())?;
                for (i, o) in out.iter_mut().enumerate() {
                    if !axes.contains(&i) {
                        *o = dims[i].clone();
                    }
                }
            }
            return one(ranked(x.dtype, out));
        };
        let specs = slice_specs(
            dims.len(),
            &starts,
            &ends,
            axes.as_deref(),
            steps.as_deref(),
        )?;
        let mut out = dims.to_vec();
        for (axis, start, end, step) in specs {
            out[axis] = match &dims[axis] {
                Dim::Known(d) => Dim::Known(slice_axis(*d, start, end, step)?.1),
                d => slice_unknown_dim(d, start, end, step),
            };
        }
        one(ranked(x.dtype, out))
    }
}

impl Infer for Gather {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        index_dtype(cx, 1)?;
        let (Some(d), Some(ind)) = (x.dims(), cx.input(1)?.dims()) else {
            return one(TensorType::unknown_rank(x.dtype));
        };
        let axis = normalize_axis(self.axis, d.len())?;
        let mut out = d[..axis].to_vec();
        out.extend_from_slice(ind);
        out.extend_from_slice(&d[axis + 1..]);
        one(ranked(x.dtype, out))
    }
}

impl Infer for GatherElements {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        index_dtype(cx, 1)?;
        let ind = cx.input(1)?;
        if let (Some(r), Some(q)) = (x.rank(), ind.rank()) {
            if r != q {
                return invalid!("data has rank {r} but indices rank {q}");
            }
            normalize_axis(self.axis, r)?;
        }
        one(TensorType::new(x.dtype, ind.shape.clone()))
    }
}

impl Infer for GatherND {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        i64_input(cx, 1)?;
        let (Some(d), Some(ind)) = (x.dims(), cx.input(1)?.dims()) else {
            return one(TensorType::unknown_rank(x.dtype));
        };
        let b = gather_nd_batch(self.batch_dims, d.len(), ind.len())?;
        let Some(Dim::Known(k)) = ind.last() else {
            return one(TensorType::unknown_rank(x.dtype));
        };
        let k = *k as usize;
        if b + k > d.len() {
            return invalid!(
                "indices address {k} dims after {b} batch dims of rank {}",
                d.len()
            );
        }
        let mut out = ind[..ind.len() - 1].to_vec();
        out.extend_from_slice(&d[b + k..]);
        one(ranked(x.dtype, out))
    }
}

/// GatherND/ScatterND's batch dims, checked against both ranks.
pub(crate) fn gather_nd_batch(batch_dims: i64, r: usize, q: usize) -> Result<usize, OpError> {
    if r == 0 || q == 0 {
        return invalid!("data and indices need rank at least 1");
    }
    if batch_dims < 0 || batch_dims as usize >= r.min(q) {
        return invalid!("batch_dims {batch_dims} is out of range for ranks {r} and {q}");
    }
    Ok(batch_dims as usize)
}

impl Infer for ScatterElements {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        index_dtype(cx, 1)?;
        super::infer::same_dtype(cx, 0, 2)?;
        if let Some(r) = x.rank() {
            normalize_axis(self.axis, r)?;
        }
        one(x.clone())
    }
}

impl Infer for ScatterND {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        i64_input(cx, 1)?;
        super::infer::same_dtype(cx, 0, 2)?;
        one(cx.input(0)?.clone())
    }
}

impl Infer for TensorScatter {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        super::infer::same_dtype(cx, 0, 1)?;
        if cx.opt_input(2).is_some() {
            i64_input(cx, 2)?;
        }
        let x = cx.input(0)?;
        if let Some(r) = x.rank() {
            normalize_axis(self.axis, r)?;
        }
        one(x.clone())
    }
}

impl Infer for Expand {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        i64_input(cx, 1)?;
        let Some(dims) = x.dims() else {
            return one(TensorType::unknown_rank(x.dtype));
        };
        let Some(shape) = cx.ints(1) else {
            if let Some(target) = cx.sym_ints(1) {
                let target = Dims::Ranked(target.iter().map(SymInt::to_dim).collect());
                return one(TensorType::new(
                    x.dtype,
                    super::infer::broadcast2(&x.shape, &target)?,
                ));
            }
            let Some(n) = len_1d(cx, 1) else {
                return one(TensorType::unknown_rank(x.dtype));
            };
            // A known input dim other than 1 survives any broadcast.
            let rank = n.max(dims.len());
            let out = (0..rank).map(|i| match (i + dims.len()).checked_sub(rank) {
                Some(j) if matches!(dims[j], Dim::Known(k) if k != 1) => dims[j].clone(),
                _ => Dim::Unknown,
            });
            return one(ranked(x.dtype, out.collect()));
        };
        if let Some(&bad) = shape.iter().find(|&&s| s < 0) {
            return invalid!("expand shape {shape:?} has a negative dim {bad}");
        }
        let target = shape_from_ints(&shape);
        one(TensorType::new(
            x.dtype,
            super::infer::broadcast2(&x.shape, &target)?,
        ))
    }
}

impl Infer for Tile {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        i64_input(cx, 1)?;
        let Some(dims) = x.dims() else {
            return one(x.clone());
        };
        let Some(reps) = cx.ints(1) else {
            return one(TensorType::with_rank(x.dtype, dims.len()));
        };
        if reps.len() != dims.len() {
            return invalid!("{} repeats for rank {}", reps.len(), dims.len());
        }
        if let Some(&bad) = reps.iter().find(|&&r| r < 0) {
            return invalid!("negative repeat {bad}");
        }
        let out = dims.iter().zip(&reps).map(|(d, &r)| dim_times(d, r as u64));
        one(ranked(x.dtype, out.collect()))
    }
}

impl Infer for Pad {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        i64_input(cx, 1)?;
        if let Some(v) = cx.opt_input(2)
            && v.dtype != x.dtype
        {
            return invalid!("pad value is {} but the data is {}", v.dtype, x.dtype);
        }
        if cx.opt_input(3).is_some() {
            index_dtype(cx, 3)?;
        }
        let Some(dims) = x.dims() else {
            return one(x.clone());
        };
        let axes = match cx.opt_input(3) {
            None => None,
            Some(_) => match cx.ints(3) {
                Some(a) => Some(a),
                None => return one(TensorType::with_rank(x.dtype, dims.len())),
            },
        };
        let Some(pads) = cx.ints(1) else {
            let mut out = vec![Dim::Unknown; dims.len()];
            if let Some(axes) = &axes {
                let axes = unique_axes(axes, dims.len())?;
                for (i, o) in out.iter_mut().enumerate() {
                    if !axes.contains(&i) {
                        *o = dims[i].clone();
                    }
                }
            }
            return one(ranked(x.dtype, out));
        };
        let amounts = pad_amounts(dims.len(), &pads, axes.as_deref())?;
        let mut out = Vec::with_capacity(dims.len());
        for (d, &p) in dims.iter().zip(&amounts) {
            out.push(match d {
                Dim::Known(n) => Dim::Known(padded(*n, p)?),
                d if p == (0, 0) => d.clone(),
                _ => Dim::Unknown,
            });
        }
        one(ranked(x.dtype, out))
    }
}

impl Infer for Shape {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let len = match cx.input(0)?.rank() {
            Some(r) => {
                let (s, e) = shape_range(self.start, self.end, r);
                Dim::Known((e - s) as u64)
            }
            None => Dim::Unknown,
        };
        one(ranked(DType::I64, vec![len]))
    }
}

impl Infer for Size {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        cx.input(0)?;
        one(TensorType::known(DType::I64, &[]))
    }
}

impl Infer for ConstantOfShape {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        i64_input(cx, 0)?;
        let dtype = self.value.as_ref().map_or(DType::F32, |v| v.dtype());
        if let Some(v) = &self.value
            && v.numel() != 1
        {
            return invalid!("value must hold one element, it has {}", v.numel());
        }
        one(match (cx.ints(0), len_1d(cx, 0)) {
            (Some(shape), _) => {
                if let Some(&bad) = shape.iter().find(|&&s| s < 0) {
                    return invalid!("shape {shape:?} has a negative dim {bad}");
                }
                TensorType::new(dtype, shape_from_ints(&shape))
            }
            (None, n) => match cx.sym_ints(0) {
                Some(dims) => TensorType::new(
                    dtype,
                    Dims::Ranked(dims.iter().map(SymInt::to_dim).collect()),
                ),
                None => match n {
                    Some(n) => TensorType::with_rank(dtype, n),
                    None => TensorType::unknown_rank(dtype),
                },
            },
        })
    }
}

impl Infer for Range {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = super::infer::same_dtype(cx, 0, 1)?;
        super::infer::same_dtype(cx, 0, 2)?;
        if !dtype.is_numeric() {
            return invalid!("range of {dtype}");
        }
        // The inputs are scalars; one-element tensors are accepted too, as
        // the ONNX reference does (function bodies pass Split results).
        for i in 0..3 {
            if let Some(n) = cx.input(i)?.shape.numel()
                && n != 1
            {
                return invalid!("range input {i} must be a scalar");
            }
        }
        let len = match (cx.value(0), cx.value(1), cx.value(2)) {
            (Some(s), Some(l), Some(d)) if s.numel() == 1 && l.numel() == 1 && d.numel() == 1 => {
                Dim::Known(if dtype.is_int() {
                    let v = |t: &Tensor| t.get_i64(0) as i128;
                    range_len_int(v(s), v(l), v(d))?
                } else {
                    range_len_f64(s.get_f64(0), l.get_f64(0), d.get_f64(0))?
                })
            }
            _ => Dim::Unknown,
        };
        one(ranked(dtype, vec![len]))
    }
}

impl Infer for OneHot {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let ind = cx.input(0)?;
        let dtype = cx.dtype(2)?;
        let Some(dims) = ind.dims() else {
            return one(TensorType::unknown_rank(dtype));
        };
        let axis = normalize_axis(self.axis, dims.len() + 1)?;
        let depth = match cx.value(1) {
            Some(d) if d.numel() == 1 => Dim::Known(one_hot_depth(d)?),
            Some(d) => return invalid!("depth must hold one value, it has {}", d.numel()),
            None => Dim::Unknown,
        };
        let mut out = dims.to_vec();
        out.insert(axis, depth);
        one(ranked(dtype, out))
    }
}

/// OneHot's depth from its (possibly float) scalar input.
pub(crate) fn one_hot_depth(t: &Tensor) -> Result<u64, OpError> {
    let d = t.get_f64(0);
    if !(d >= 1.0 && d <= MAX_ELEMENTS as f64) {
        return invalid!("one-hot depth {d} is not a positive count");
    }
    Ok(d as u64)
}

impl Infer for NonZero {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let rank = match cx.input(0)?.rank() {
            Some(r) => Dim::Known(r as u64),
            None => Dim::Unknown,
        };
        one(ranked(DType::I64, vec![rank, Dim::Unknown]))
    }
}

impl Infer for Compress {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        expect_dtype(cx, 1, |d| d == DType::Bool, "bool")?;
        let count = cx.value(1).map_or(Dim::Unknown, |c| {
            Dim::Known(c.to_i64_vec().iter().filter(|&&b| b != 0).count() as u64)
        });
        let Some(axis) = self.axis else {
            return one(ranked(x.dtype, vec![count]));
        };
        let Some(dims) = x.dims() else {
            return one(x.clone());
        };
        let axis = normalize_axis(axis, dims.len())?;
        let mut out = dims.to_vec();
        out[axis] = count;
        one(ranked(x.dtype, out))
    }
}

/// The 4-D dims of a DepthToSpace/SpaceToDepth input.
fn dims4<'a>(cx: &InferCx<'a>, what: &str) -> Result<Option<&'a [Dim]>, OpError> {
    match cx.input(0)?.dims() {
        Some(d) if d.len() == 4 => Ok(Some(d)),
        Some(d) => invalid!("{what} needs a 4-D input, not rank {}", d.len()),
        None => Ok(None),
    }
}

/// A dim divided by `k`, which must divide it when it is known.
fn dim_div(d: &Dim, k: u64, what: &str) -> Result<Dim, OpError> {
    Ok(match d {
        Dim::Known(n) if n % k != 0 => return invalid!("{what} {n} is not divisible by {k}"),
        Dim::Known(n) => Dim::Known(n / k),
        d if k == 1 => d.clone(),
        _ => Dim::Unknown,
    })
}

impl Infer for DepthToSpace {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = cx.dtype(0)?;
        let b = blocksize(self.blocksize)?;
        let Some(d) = dims4(cx, "DepthToSpace")? else {
            return one(TensorType::with_rank(dtype, 4));
        };
        let c = dim_div(&d[1], b * b, "channel count")?;
        one(ranked(
            dtype,
            vec![d[0].clone(), c, dim_times(&d[2], b), dim_times(&d[3], b)],
        ))
    }
}

impl Infer for SpaceToDepth {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = cx.dtype(0)?;
        let b = blocksize(self.blocksize)?;
        let Some(d) = dims4(cx, "SpaceToDepth")? else {
            return one(TensorType::with_rank(dtype, 4));
        };
        let (h, w) = (dim_div(&d[2], b, "height")?, dim_div(&d[3], b, "width")?);
        one(ranked(
            dtype,
            vec![d[0].clone(), dim_times(&d[1], b * b), h, w],
        ))
    }
}

impl Infer for EyeLike {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        if let Some(r) = x.rank()
            && r != 2
        {
            return invalid!("EyeLike needs a 2-D input, not rank {r}");
        }
        let dtype = self.dtype.unwrap_or(x.dtype);
        if dtype == DType::Str {
            return invalid!("EyeLike cannot make strings");
        }
        one(TensorType::new(
            dtype,
            Dims::Ranked(match x.dims() {
                Some(d) => d.to_vec(),
                None => vec![Dim::Unknown; 2],
            }),
        ))
    }
}

impl Infer for Trilu {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        if let Some(r) = x.rank()
            && r < 2
        {
            return invalid!("Trilu needs rank 2 or more, not {r}");
        }
        if cx.opt_input(1).is_some() {
            i64_input(cx, 1)?;
        }
        one(x.clone())
    }
}

impl Infer for ReverseSequence {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        i64_input(cx, 1)?;
        if let Some(r) = x.rank() {
            reverse_sequence_axes(self, r)?;
        }
        one(x.clone())
    }
}

/// ReverseSequence's (batch axis, time axis), checked.
pub(crate) fn reverse_sequence_axes(
    op: &ReverseSequence,
    rank: usize,
) -> Result<(usize, usize), OpError> {
    if rank < 2 {
        return invalid!("ReverseSequence needs rank 2 or more, not {rank}");
    }
    let (b, t) = (op.batch_axis, op.time_axis);
    if !matches!((b, t), (0, 1) | (1, 0)) {
        return invalid!("batch_axis {b} and time_axis {t} must be 0 and 1");
    }
    Ok((b as usize, t as usize))
}

impl Infer for CenterCropPad {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        index_dtype(cx, 1)?;
        let Some(dims) = x.dims() else {
            return one(x.clone());
        };
        let axes = crop_axes(self.axes.as_deref(), dims.len())?;
        let mut out = dims.to_vec();
        match cx.ints(1) {
            Some(shape) => {
                if shape.len() != axes.len() {
                    return invalid!("{} target dims for {} axes", shape.len(), axes.len());
                }
                for (&a, &s) in axes.iter().zip(&shape) {
                    if s < 0 {
                        return invalid!("negative target dim {s}");
                    }
                    out[a] = Dim::Known(s as u64);
                }
            }
            None => {
                for &a in &axes {
                    out[a] = Dim::Unknown;
                }
            }
        }
        one(ranked(x.dtype, out))
    }
}

/// CenterCropPad's axes: the given ones normalized, or every axis.
pub(crate) fn crop_axes(axes: Option<&[i64]>, rank: usize) -> Result<Vec<usize>, OpError> {
    match axes {
        Some(a) => unique_axes(a, rank),
        None => Ok((0..rank).collect()),
    }
}

impl Infer for Unique {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        let idx = |d: Dim| ranked(DType::I64, vec![d]);
        let (y, inverse) = match (self.axis, x.dims()) {
            (None, _) => (
                ranked(x.dtype, vec![Dim::Unknown]),
                x.shape.numel().map_or(Dim::Unknown, Dim::Known),
            ),
            (Some(a), Some(dims)) => {
                let a = normalize_axis(a, dims.len())?;
                let mut y = dims.to_vec();
                y[a] = Dim::Unknown;
                (ranked(x.dtype, y), dims[a].clone())
            }
            (Some(_), None) => (TensorType::unknown_rank(x.dtype), Dim::Unknown),
        };
        let all = [y, idx(Dim::Unknown), idx(inverse), idx(Dim::Unknown)];
        Ok(all.into_iter().take(cx.num_outputs).collect())
    }
}

impl Infer for BitCast {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        bitcast_check(x.dtype, self.to)?;
        one(TensorType::new(self.to, x.shape.clone()))
    }
}

/// BitCast's types must have the same width and not be strings.
pub(crate) fn bitcast_check(from: DType, to: DType) -> Result<(), OpError> {
    if from == DType::Str || to == DType::Str {
        return invalid!("BitCast does not apply to strings");
    }
    if from.bits() != to.bits() {
        return invalid!(
            "BitCast from {from} ({} bits) to {to} ({} bits)",
            from.bits(),
            to.bits()
        );
    }
    Ok(())
}
