//! Shape and data-movement ops.
//!
//! Every op here works on any dtype (strings, bool, f16, packed types
//! included): it computes, for each output element, the flat index of the
//! input element it copies, and lets [`Tensor::gather_flat`] move the data.
//! Values that come from nowhere (padding, zeros of Trilu, off values) are
//! appended after the input's elements and addressed past its end.
//! Shape arithmetic shared with inference lives in [`crate::ops::rules`].

use std::cmp::Ordering;

use super::kernels::*;
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::ops::rules::*;
use crate::ops::*;
use crate::shape::Dim;
use crate::tensor::{Data, Tensor, strides};
use crate::{invalid, map_data, unsupported};

fn one(t: Tensor) -> Result<Vec<Tensor>, OpError> {
    Ok(vec![t])
}

/// Fails unless a shape computed from several inputs is small enough to
/// allocate.
fn check_size(shape: &[usize]) -> Result<(), OpError> {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    checked_shape(&dims).map(|_| ())
}

fn reshaped(t: &Tensor, shape: Vec<usize>) -> Result<Tensor, OpError> {
    t.clone()
        .reshape(shape)
        .map_err(|e| OpError::Invalid(e.to_string()))
}

/// An index into a dim of `d`, negative ones counting from the end.
fn index(i: i64, d: usize) -> Result<usize, OpError> {
    let j = if i < 0 {
        i as i128 + d as i128
    } else {
        i as i128
    };
    if j < 0 || j >= d as i128 {
        return invalid!("index {i} is out of range for a dim of {d}");
    }
    Ok(j as usize)
}

fn known_dims(dims: &[Dim]) -> Result<Vec<i64>, OpError> {
    dims.iter()
        .map(|d| match d {
            Dim::Known(n) => Ok(*n as i64),
            _ => invalid!("cannot resolve shape {dims:?}"),
        })
        .collect()
}

fn as_dims(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::from(d)).collect()
}

/// An integer input (shape, axes, indices) as i64 values.
fn ints(t: &Tensor, what: &str) -> Result<Vec<i64>, OpError> {
    if !t.dtype().is_int() {
        return invalid!("{what} must be integers, not {}", t.dtype());
    }
    Ok(t.to_i64_vec())
}

/// Calls `f` with every multi-index of `shape` in row-major order.
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut ix = vec![0; shape.len()];
    loop {
        f(&ix);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            ix[d] += 1;
            if ix[d] < shape[d] {
                break;
            }
            ix[d] = 0;
        }
    }
}

/// `t`'s elements followed by `extra`'s (of the same dtype), so that
/// indices past `t.numel()` address `extra`.
fn with_extra(t: &Tensor, extra: &Tensor) -> Result<Data, OpError> {
    if t.dtype() != extra.dtype() {
        return invalid!(
            "values of type {} for a {} tensor",
            extra.dtype(),
            t.dtype()
        );
    }
    Ok(Data::concat(&[t.data(), extra.data()], t.dtype()))
}

/// One zero (false, "", 0.0) of a dtype.
fn zero(dtype: DType) -> Tensor {
    Tensor::from_parts(dtype, vec![1], Data::zeros(dtype, 1))
}

/// Gathers through per-axis maps: output element `(i0, i1, …)` reads the
/// input's flat index `maps[0][i0] + maps[1][i1] + …` (entries already
/// scaled by the input strides), or `fill` where any entry is `None`.
fn gather_axes(t: &Tensor, maps: &[Vec<Option<usize>>], fill: &Tensor) -> Result<Tensor, OpError> {
    let shape: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    check_size(&shape)?;
    let fill_at = t.numel();
    let mut idx = Vec::with_capacity(shape.iter().product());
    fn walk(
        maps: &[Vec<Option<usize>>],
        base: Option<usize>,
        fill_at: usize,
        out: &mut Vec<usize>,
    ) {
        let Some((first, rest)) = maps.split_first() else {
            out.push(base.unwrap_or(fill_at));
            return;
        };
        for m in first {
            let b = match (base, m) {
                (Some(b), Some(m)) => Some(b + m),
                _ => None,
            };
            walk(rest, b, fill_at, out);
        }
    }
    walk(maps, Some(0), fill_at, &mut idx);
    let data = if idx.contains(&fill_at) {
        with_extra(t, fill)?.gather(&idx)
    } else {
        t.data().gather(&idx)
    };
    Ok(Tensor::from_parts(t.dtype(), shape, data))
}

/// The identity map of every axis of `t`.
fn identity_maps(t: &Tensor) -> Vec<Vec<Option<usize>>> {
    let st = t.strides();
    t.shape()
        .iter()
        .zip(&st)
        .map(|(&d, &s)| (0..d).map(|i| Some(i * s)).collect())
        .collect()
}

/// `t` viewed with `shape`, transposed by `perm` (output dim `i` is input
/// dim `perm[i]`).
fn permute(t: &Tensor, shape: &[usize], perm: &[usize]) -> Tensor {
    let st = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out_st: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let mut idx = Vec::with_capacity(t.numel());
    for_each_offset(&out_shape, &out_st, |o| idx.push(o));
    t.gather_flat(out_shape, &idx)
}

/// The slices of `t` along `axis` at the given positions, in order.
fn take_along(t: &Tensor, axis: usize, picks: &[usize]) -> Result<Tensor, OpError> {
    let (outer, d, inner) = split_at_axis(t.shape(), axis);
    let mut shape = t.shape().to_vec();
    shape[axis] = picks.len();
    check_size(&shape)?;
    let mut idx = Vec::with_capacity(outer * picks.len() * inner);
    for o in 0..outer {
        for &p in picks {
            let b = (o * d + p) * inner;
            idx.extend(b..b + inner);
        }
    }
    Ok(t.gather_flat(shape, &idx))
}

/// Which elements are not zero (false, "", 0, 0+0i).
fn nonzero_mask(t: &Tensor) -> Vec<bool> {
    match t.data() {
        Data::Bool(v) => v.clone(),
        Data::Str(v) => v.iter().map(|s| !s.is_empty()).collect(),
        Data::C64(v) => v.iter().map(|c| c[0] != 0.0 || c[1] != 0.0).collect(),
        Data::C128(v) => v.iter().map(|c| c[0] != 0.0 || c[1] != 0.0).collect(),
        _ if t.dtype().is_int() => (0..t.numel()).map(|i| t.get_i64(i) != 0).collect(),
        _ => (0..t.numel()).map(|i| t.get_f64(i) != 0.0).collect(),
    }
}

impl Eval for Reshape {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let target = ints(cx.input(1)?, "the shape")?;
        let dims = reshape_dims(&as_dims(x.shape()), &target, self.allowzero)?;
        let shape = checked_shape(&known_dims(&dims)?)?;
        one(reshaped(x, shape)?)
    }
}

impl Eval for Flatten {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let a = flatten_axis(self.axis, x.rank())?;
        let s = x.shape();
        one(reshaped(
            x,
            vec![s[..a].iter().product(), s[a..].iter().product()],
        )?)
    }
}

impl Eval for Squeeze {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let s = x.shape();
        let axes = match cx.opt_input(1) {
            Some(a) => unique_axes(&ints(a, "axes")?, s.len())?,
            None => (0..s.len()).filter(|&i| s[i] == 1).collect(),
        };
        if let Some(&a) = axes.iter().find(|&&a| s[a] != 1) {
            return invalid!("cannot squeeze axis {a} of extent {}", s[a]);
        }
        let shape = (0..s.len()).filter(|i| !axes.contains(i)).map(|i| s[i]);
        one(reshaped(x, shape.collect())?)
    }
}

impl Eval for Unsqueeze {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let axes = ints(cx.input(1)?, "axes")?;
        let rank = x.rank() + axes.len();
        let axes = unique_axes(&axes, rank)?;
        let mut rest = x.shape().iter();
        let shape = (0..rank).map(|i| {
            if axes.contains(&i) {
                1
            } else {
                rest.next().copied().unwrap_or(1)
            }
        });
        one(reshaped(x, shape.collect())?)
    }
}

impl Eval for Transpose {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let perm = permutation(self.perm.as_deref(), x.rank())?;
        one(permute(x, x.shape(), &perm))
    }
}

impl Eval for Concat {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let ts = (0..cx.num_inputs())
            .map(|i| cx.input(i))
            .collect::<Result<Vec<_>, _>>()?;
        let first = cx.input(0)?;
        let a = axis(self.axis, first.rank())?;
        let mut shape = first.shape().to_vec();
        shape[a] = 0;
        for t in &ts {
            let ok = t.dtype() == first.dtype()
                && t.rank() == first.rank()
                && (0..t.rank()).all(|d| d == a || t.shape()[d] == first.shape()[d]);
            if !ok {
                return invalid!(
                    "cannot concatenate {}{:?} and {}{:?} on axis {a}",
                    first.dtype(),
                    first.shape(),
                    t.dtype(),
                    t.shape()
                );
            }
            shape[a] += t.shape()[a];
        }
        check_size(&shape)?;
        let (outer, _, inner) = split_at_axis(first.shape(), a);
        let parts: Vec<&Data> = ts.iter().map(|t| t.data()).collect();
        let all = Data::concat(&parts, first.dtype());
        let mut idx = Vec::with_capacity(all.len());
        for o in 0..outer {
            let mut base = 0;
            for t in &ts {
                let chunk = t.shape()[a] * inner;
                let start = base + o * chunk;
                idx.extend(start..start + chunk);
                base += t.numel();
            }
        }
        one(Tensor::from_parts(first.dtype(), shape, all.gather(&idx)))
    }
}

impl Eval for Split {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let a = axis(self.axis, x.rank())?;
        let d = x.shape()[a];
        let n = cx.num_outputs;
        let sizes: Vec<usize> = match cx.opt_input(1) {
            Some(s) => {
                let s = ints(s, "split")?;
                if s.len() != n
                    || s.iter().any(|&v| v < 0)
                    || s.iter().map(|&v| v as i128).sum::<i128>() != d as i128
                {
                    return invalid!("split sizes {s:?} do not split {d} into {n} outputs");
                }
                s.into_iter().map(|v| v as usize).collect()
            }
            None => split_even(d as u64, n)?
                .into_iter()
                .map(|v| v as usize)
                .collect(),
        };
        let mut start = 0;
        let mut out = Vec::with_capacity(n);
        for len in sizes {
            out.push(take_along(x, a, &(start..start + len).collect::<Vec<_>>())?);
            start += len;
        }
        Ok(out)
    }
}

impl Eval for Slice {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let get = |i: usize, what: &str| cx.opt_input(i).map(|t| ints(t, what)).transpose();
        let (starts, ends) = (ints(cx.input(1)?, "starts")?, ints(cx.input(2)?, "ends")?);
        let (axes, steps) = (get(3, "axes")?, get(4, "steps")?);
        let specs = slice_specs(x.rank(), &starts, &ends, axes.as_deref(), steps.as_deref())?;
        let mut maps = identity_maps(x);
        let st = x.strides();
        for (a, start, end, step) in specs {
            let (first, len) = slice_axis(x.shape()[a] as u64, start, end, step)?;
            maps[a] = (0..len as i64)
                .map(|i| Some((first + i * step) as usize * st[a]))
                .collect();
        }
        one(gather_axes(x, &maps, &zero(x.dtype()))?)
    }
}

impl Eval for Gather {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, ind) = (cx.input(0)?, cx.input(1)?);
        let a = axis(self.axis, x.rank())?;
        let d = x.shape()[a];
        let picks = ints(ind, "indices")?
            .into_iter()
            .map(|i| index(i, d))
            .collect::<Result<Vec<_>, _>>()?;
        let taken = take_along(x, a, &picks)?;
        let mut shape = x.shape()[..a].to_vec();
        shape.extend_from_slice(ind.shape());
        shape.extend_from_slice(&x.shape()[a + 1..]);
        one(reshaped(&taken, shape)?)
    }
}

/// For GatherElements/ScatterElements: for each position of `ind`, the
/// flat index in `data` it addresses along `axis`.
fn element_targets(data: &[usize], ind: &Tensor, a: usize) -> Result<Vec<usize>, OpError> {
    let s = ind.shape();
    if s.len() != data.len() || (0..s.len()).any(|d| d != a && s[d] > data[d]) {
        return invalid!("indices of shape {s:?} do not fit data of shape {data:?} on axis {a}");
    }
    let st = strides(data);
    let values = ints(ind, "indices")?;
    let mut out = Vec::with_capacity(values.len());
    let mut k = 0;
    let mut err = None;
    for_each_index(s, |ix| {
        let off: usize = ix
            .iter()
            .enumerate()
            .filter(|&(d, _)| d != a)
            .map(|(d, &i)| i * st[d])
            .sum();
        match index(values[k], data[a]) {
            Ok(i) => out.push(off + i * st[a]),
            Err(e) => {
                err.get_or_insert(e);
            }
        }
        k += 1;
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

impl Eval for GatherElements {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, ind) = (cx.input(0)?, cx.input(1)?);
        let a = axis(self.axis, x.rank())?;
        let idx = element_targets(x.shape(), ind, a)?;
        one(x.gather_flat(ind.shape().to_vec(), &idx))
    }
}

/// Writes `updates[u]` into `data[t]` for each `(t, u)`, in order, combined
/// with what is there by `reduction`.
fn scatter(
    data: &Tensor,
    updates: &Tensor,
    pairs: &[(usize, usize)],
    reduction: ScatterReduction,
) -> Result<Tensor, OpError> {
    let (dtype, shape) = (data.dtype(), data.shape().to_vec());
    if updates.dtype() != dtype {
        return invalid!("updates are {} but the data is {dtype}", updates.dtype());
    }
    if reduction == ScatterReduction::None {
        let n = data.numel();
        let mut idx: Vec<usize> = (0..n).collect();
        for &(t, u) in pairs {
            idx[t] = n + u;
        }
        return Ok(Tensor::from_parts(
            dtype,
            shape,
            with_extra(data, updates)?.gather(&idx),
        ));
    }
    if dtype.is_float() {
        let (mut v, u) = (data.to_f64_vec(), updates.to_f64_vec());
        for &(t, j) in pairs {
            let (x, y) = (v[t], u[j]);
            v[t] = match reduction {
                ScatterReduction::Add => x + y,
                ScatterReduction::Mul => x * y,
                _ if x.is_nan() || y.is_nan() => f64::NAN,
                ScatterReduction::Max => x.max(y),
                _ => x.min(y),
            };
        }
        return from_f64(dtype, shape, v);
    }
    if !(dtype.is_int() || dtype == DType::Bool) {
        return unsupported!("scatter with reduction on {dtype} tensors");
    }
    let (mut v, u) = (int_values(data), int_values(updates));
    for &(t, j) in pairs {
        let (x, y) = (v[t], u[j]);
        v[t] = match reduction {
            ScatterReduction::Add => x.wrapping_add(y),
            ScatterReduction::Mul => x.wrapping_mul(y),
            ScatterReduction::Max => x.max(y),
            _ => x.min(y),
        };
    }
    Ok(from_i128(dtype, shape, v))
}

/// Integer (or bool) elements as exact i128 values.
fn int_values(t: &Tensor) -> Vec<i128> {
    match t.data() {
        Data::U64(v) => v.iter().map(|&x| x as i128).collect(),
        _ => (0..t.numel()).map(|i| t.get_i64(i) as i128).collect(),
    }
}

/// A tensor of an integer (or bool) dtype from i128 values, wrapping.
fn from_i128(dtype: DType, shape: Vec<usize>, v: Vec<i128>) -> Tensor {
    let wide: Vec<i64> = v.into_iter().map(|x| x as i64).collect();
    Tensor::from_vec(shape, wide).cast(dtype, false)
}

impl Eval for ScatterElements {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, ind, upd) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        if upd.shape() != ind.shape() {
            return invalid!(
                "updates {:?} and indices {:?} differ in shape",
                upd.shape(),
                ind.shape()
            );
        }
        let a = axis(self.axis, x.rank())?;
        let targets = element_targets(x.shape(), ind, a)?;
        let pairs: Vec<_> = targets
            .into_iter()
            .enumerate()
            .map(|(u, t)| (t, u))
            .collect();
        one(scatter(x, upd, &pairs, self.reduction)?)
    }
}

/// For GatherND/ScatterND: the flat offset in `data` of each index tuple
/// (the last dim of `ind`) after `b` batch dims, and the number of
/// elements each one addresses.
fn nd_offsets(data: &[usize], ind: &Tensor, b: usize) -> Result<(Vec<usize>, usize), OpError> {
    let q = ind.rank();
    let k = ind.shape()[q - 1];
    if b + k > data.len() {
        return invalid!("indices address {k} dims after {b} batch dims of {data:?}");
    }
    if ind.shape()[..b] != data[..b] {
        return invalid!(
            "batch dims of indices {:?} and data {data:?} differ",
            ind.shape()
        );
    }
    let st = strides(data);
    let batch_stride: usize = data[b..].iter().product();
    let slice: usize = data[b + k..].iter().product();
    let values = ints(ind, "indices")?;
    let tuples: usize = ind.shape()[..q - 1].iter().product();
    // Tuples are grouped by batch; there is at least one when the loop runs.
    let per_batch = tuples / ind.shape()[..b].iter().product::<usize>().max(1);
    let mut out = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut off = t / per_batch * batch_stride;
        for j in 0..k {
            off += index(values[t * k + j], data[b + j])? * st[b + j];
        }
        out.push(off);
    }
    Ok((out, slice))
}

impl Eval for GatherND {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, ind) = (cx.input(0)?, cx.input(1)?);
        let b = gather_nd_batch(self.batch_dims, x.rank(), ind.rank())?;
        let (offsets, slice) = nd_offsets(x.shape(), ind, b)?;
        let k = ind.shape()[ind.rank() - 1];
        let mut shape = ind.shape()[..ind.rank() - 1].to_vec();
        shape.extend_from_slice(&x.shape()[b + k..]);
        check_size(&shape)?;
        let mut idx = Vec::with_capacity(offsets.len() * slice);
        for o in offsets {
            idx.extend(o..o + slice);
        }
        one(x.gather_flat(shape, &idx))
    }
}

impl Eval for ScatterND {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, ind, upd) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        if ind.rank() == 0 || x.rank() == 0 {
            return invalid!("data and indices need rank at least 1");
        }
        let (offsets, slice) = nd_offsets(x.shape(), ind, 0)?;
        let k = ind.shape()[ind.rank() - 1];
        let mut expect = ind.shape()[..ind.rank() - 1].to_vec();
        expect.extend_from_slice(&x.shape()[k..]);
        if upd.shape() != expect.as_slice() {
            return invalid!("updates have shape {:?}, expected {expect:?}", upd.shape());
        }
        let mut pairs = Vec::with_capacity(upd.numel());
        for (j, o) in offsets.into_iter().enumerate() {
            pairs.extend((0..slice).map(|s| (o + s, j * slice + s)));
        }
        one(scatter(x, upd, &pairs, self.reduction)?)
    }
}

impl Eval for TensorScatter {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (past, upd) = (cx.input(0)?, cx.input(1)?);
        let a = axis(self.axis, past.rank())?;
        if a == 0 {
            return invalid!("the sequence axis cannot be the batch axis");
        }
        let (ps, us) = (past.shape(), upd.shape());
        let fits = us.len() == ps.len()
            && (0..ps.len()).all(|d| {
                if d == a {
                    us[d] <= ps[d]
                } else {
                    us[d] == ps[d]
                }
            });
        if !fits {
            return invalid!("update {us:?} does not fit the cache {ps:?} on axis {a}");
        }
        let batch = ps[0];
        let writes = match cx.opt_input(2) {
            Some(w) => ints(w, "write_indices")?,
            None => vec![0; batch],
        };
        if writes.len() != batch {
            return invalid!("{} write indices for a batch of {batch}", writes.len());
        }
        let (outer, max_len, inner) = split_at_axis(ps, a);
        let seq = us[a];
        let per_batch = outer / batch.max(1);
        let mut pairs = Vec::with_capacity(upd.numel());
        for o in 0..outer {
            let w = writes[o / per_batch.max(1)] as i128;
            for s in 0..seq {
                let mut at = w + s as i128;
                if self.mode == TensorScatterMode::Circular && max_len > 0 {
                    at = at.rem_euclid(max_len as i128);
                }
                if at < 0 || at >= max_len as i128 {
                    return invalid!("write position {at} is outside the cache of {max_len}");
                }
                let (dst, src) = ((o * max_len + at as usize) * inner, (o * seq + s) * inner);
                pairs.extend((0..inner).map(|r| (dst + r, src + r)));
            }
        }
        one(scatter(past, upd, &pairs, ScatterReduction::None)?)
    }
}

impl Eval for Expand {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let target = checked_shape(&ints(cx.input(1)?, "the shape")?)?;
        let shape = broadcast_shapes(&[x.shape(), &target])?;
        check_size(&shape)?;
        let idx = broadcast_index(x.shape(), &shape);
        one(x.gather_flat(shape, &idx))
    }
}

impl Eval for Tile {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let reps = ints(cx.input(1)?, "repeats")?;
        if reps.len() != x.rank() || reps.iter().any(|&r| r < 0) {
            return invalid!("repeats {reps:?} do not fit rank {}", x.rank());
        }
        let st = x.strides();
        let mut maps = Vec::with_capacity(x.rank());
        for (a, &d) in x.shape().iter().enumerate() {
            let n = checked_shape(&[d as i64, reps[a]])?
                .iter()
                .product::<usize>();
            maps.push((0..n).map(|i| Some(i % d * st[a])).collect());
        }
        one(gather_axes(x, &maps, &zero(x.dtype()))?)
    }
}

impl Eval for Pad {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let pads = ints(cx.input(1)?, "pads")?;
        let axes = cx.opt_input(3).map(|a| ints(a, "axes")).transpose()?;
        let amounts = pad_amounts(x.rank(), &pads, axes.as_deref())?;
        let fill = match cx.opt_input(2) {
            Some(v) if v.numel() > 0 => v.gather_flat(vec![1], &[0]),
            _ => zero(x.dtype()),
        };
        let st = x.strides();
        let mut maps = Vec::with_capacity(x.rank());
        for (a, &d) in x.shape().iter().enumerate() {
            let (before, after) = amounts[a];
            let n = padded(d as u64, (before, after))?;
            checked_shape(&[n as i64])?;
            if d == 0 && n > 0 && self.mode != PadMode::Constant {
                return invalid!("cannot {} pad an empty axis", self.mode.onnx_name());
            }
            let (d, before) = (d as i128, before as i128);
            let map = (0..n as i128).map(|o| {
                let c = o - before;
                let c = if (0..d).contains(&c) {
                    c
                } else {
                    match self.mode {
                        PadMode::Constant => return None,
                        PadMode::Edge => c.clamp(0, d - 1),
                        PadMode::Wrap => c.rem_euclid(d),
                        PadMode::Reflect if d == 1 => 0,
                        PadMode::Reflect => {
                            let period = 2 * (d - 1);
                            let m = c.rem_euclid(period);
                            if m < d { m } else { period - m }
                        }
                    }
                };
                Some(c as usize * st[a])
            });
            maps.push(map.collect());
        }
        one(gather_axes(x, &maps, &fill)?)
    }
}

impl Eval for Shape {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let (s, e) = shape_range(self.start, self.end, x.rank());
        one(i64_vec(x.shape()[s..e].iter().map(|&d| d as i64).collect()))
    }
}

impl Eval for Size {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        one(Tensor::scalar(cx.input(0)?.numel() as i64))
    }
}

impl Eval for ConstantOfShape {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let shape = checked_shape(&ints(cx.input(0)?, "the shape")?)?;
        let value = self.value.clone().unwrap_or_else(|| Tensor::scalar(0f32));
        if value.numel() != 1 {
            return invalid!("value must hold one element, it has {}", value.numel());
        }
        let n = shape.iter().product();
        let data = map_data!(value.data(), v => v.iter().cycle().take(n).cloned().collect());
        one(Tensor::from_parts(value.dtype(), shape, data))
    }
}

impl Eval for Range {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (s, l, d) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        let dtype = s.dtype();
        if l.dtype() != dtype || d.dtype() != dtype || !dtype.is_numeric() {
            return invalid!("range inputs must share a numeric type");
        }
        if s.numel() != 1 || l.numel() != 1 || d.numel() != 1 {
            return invalid!("range inputs must be scalars");
        }
        if dtype.is_int() {
            let (s, l, d) = (int_values(s)[0], int_values(l)[0], int_values(d)[0]);
            let n = range_len_int(s, l, d)? as usize;
            let v = (0..n as i128).map(|i| s + i * d).collect();
            return one(from_i128(dtype, vec![n], v));
        }
        let (s, l, d) = (s.get_f64(0), l.get_f64(0), d.get_f64(0));
        let n = range_len_f64(s, l, d)? as usize;
        one(from_f64(
            dtype,
            vec![n],
            (0..n).map(|i| s + i as f64 * d).collect(),
        )?)
    }
}

impl Eval for OneHot {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (ind, depth, values) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        if depth.numel() != 1 {
            return invalid!("depth must hold one value, it has {}", depth.numel());
        }
        if values.numel() != 2 {
            return invalid!(
                "values must be [off, on], it has {} elements",
                values.numel()
            );
        }
        let depth = one_hot_depth(depth)? as usize;
        let a = axis(self.axis, ind.rank() + 1)?;
        let mut shape = ind.shape().to_vec();
        shape.insert(a, depth);
        check_size(&shape)?;
        let outer: usize = ind.shape()[..a].iter().product();
        let inner: usize = ind.shape()[a..].iter().product();
        let picks: Vec<i64> = if ind.dtype().is_float() {
            ind.to_f64_vec().into_iter().map(|x| x as i64).collect()
        } else {
            ind.to_i64_vec()
        };
        let mut idx = Vec::with_capacity(outer * depth * inner);
        for o in 0..outer {
            for k in 0..depth {
                idx.extend((0..inner).map(|i| {
                    let p = picks[o * inner + i];
                    let p = if p < 0 { p + depth as i64 } else { p };
                    usize::from(p == k as i64)
                }));
            }
        }
        one(values.gather_flat(shape, &idx))
    }
}

impl Eval for NonZero {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let mask = nonzero_mask(x);
        let nnz = mask.iter().filter(|&&b| b).count();
        let rank = x.rank();
        let mut out = vec![0i64; rank * nnz];
        let mut j = 0;
        let mut k = 0;
        for_each_index(x.shape(), |ix| {
            if mask[k] {
                for (d, &i) in ix.iter().enumerate() {
                    out[d * nnz + j] = i as i64;
                }
                j += 1;
            }
            k += 1;
        });
        one(Tensor::from_vec(vec![rank, nnz], out))
    }
}

impl Eval for Compress {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, cond) = (cx.input(0)?, cx.input(1)?);
        if cond.rank() != 1 {
            return invalid!("the condition must be 1-D, not {:?}", cond.shape());
        }
        let (x, a) = match self.axis {
            Some(a) => (x.clone(), axis(a, x.rank())?),
            None => (reshaped(x, vec![x.numel()])?, 0),
        };
        let d = x.shape()[a];
        let picks: Vec<usize> = nonzero_mask(cond)
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b)
            .map(|(i, _)| i)
            .collect();
        if picks.last().is_some_and(|&i| i >= d) {
            return invalid!("the condition selects past the dim of {d}");
        }
        one(take_along(&x, a, &picks)?)
    }
}

/// The blocksize and the 4-D input of DepthToSpace/SpaceToDepth.
fn blocks<'a>(
    cx: &EvalCx<'a>,
    b: i64,
    what: &str,
) -> Result<(&'a Tensor, usize, [usize; 4]), OpError> {
    let x = cx.input(0)?;
    let &[n, c, h, w] = x.shape() else {
        return invalid!("{what} needs a 4-D input, not {:?}", x.shape());
    };
    Ok((x, blocksize(b)? as usize, [n, c, h, w]))
}

/// The product of dims, checked to be a size Saturn can allocate.
fn dims_product(dims: &[usize]) -> Result<usize, OpError> {
    dims.iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d))
        .filter(|&p| p as u64 <= crate::tensor::MAX_ELEMENTS)
        .ok_or_else(|| OpError::Invalid(format!("dims {dims:?} are too large")))
}

impl Eval for DepthToSpace {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, b, [n, c, h, w]) = blocks(cx, self.blocksize, "DepthToSpace")?;
        let bb = b * b;
        if c % bb != 0 {
            return invalid!("{c} channels are not divisible by {b}²");
        }
        let c2 = c / bb;
        let (h2, w2) = (dims_product(&[h, b])?, dims_product(&[w, b])?);
        let t = match self.mode {
            DepthToSpaceMode::Dcr => permute(x, &[n, b, b, c2, h, w], &[0, 3, 4, 1, 5, 2]),
            DepthToSpaceMode::Crd => permute(x, &[n, c2, b, b, h, w], &[0, 1, 4, 2, 5, 3]),
        };
        one(reshaped(&t, vec![n, c2, h2, w2])?)
    }
}

impl Eval for SpaceToDepth {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, b, [n, c, h, w]) = blocks(cx, self.blocksize, "SpaceToDepth")?;
        if h % b != 0 || w % b != 0 {
            return invalid!("{h}×{w} is not divisible by the blocksize {b}");
        }
        let c2 = dims_product(&[c, b, b])?;
        let view = [n, c, h / b, b, w / b, b];
        let t = match self.mode {
            DepthToSpaceMode::Dcr => permute(x, &view, &[0, 3, 5, 1, 2, 4]),
            DepthToSpaceMode::Crd => permute(x, &view, &[0, 1, 3, 5, 2, 4]),
        };
        one(reshaped(&t, vec![n, c2, h / b, w / b])?)
    }
}

impl Eval for EyeLike {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let &[rows, cols] = x.shape() else {
            return invalid!("EyeLike needs a 2-D input, not {:?}", x.shape());
        };
        let dtype = self.dtype.unwrap_or(x.dtype());
        if dtype == DType::Str {
            return invalid!("EyeLike cannot make strings");
        }
        let one_value = Tensor::from_vec(vec![1], vec![1i64]).cast(dtype, true);
        let values = Tensor::from_parts(dtype, vec![2], with_extra(&zero(dtype), &one_value)?);
        let mut idx = Vec::with_capacity(rows * cols);
        for i in 0..rows as i64 {
            idx.extend((0..cols as i64).map(|j| usize::from(j - i == self.k)));
        }
        one(values.gather_flat(vec![rows, cols], &idx))
    }
}

impl Eval for Trilu {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let r = x.rank();
        if r < 2 {
            return invalid!("Trilu needs rank 2 or more, not {r}");
        }
        let k = match cx.opt_input(1) {
            Some(k) if k.numel() == 1 => ints(k, "k")?[0],
            Some(k) => return invalid!("k must be a scalar, not {:?}", k.shape()),
            None => 0,
        };
        let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
        let n = x.numel();
        let mut idx = Vec::with_capacity(n);
        for p in 0..n {
            let (i, j) = ((p / cols % rows) as i128, (p % cols) as i128);
            let keep = if self.upper {
                j - i >= k as i128
            } else {
                j - i <= k as i128
            };
            idx.push(if keep { p } else { n });
        }
        let data = with_extra(x, &zero(x.dtype()))?.gather(&idx);
        one(Tensor::from_parts(x.dtype(), x.shape().to_vec(), data))
    }
}

impl Eval for ReverseSequence {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, lens) = (cx.input(0)?, cx.input(1)?);
        let (ba, ta) = reverse_sequence_axes(self, x.rank())?;
        let (batch, time) = (x.shape()[ba], x.shape()[ta]);
        let lens = ints(lens, "sequence_lens")?;
        if lens.len() != batch || lens.iter().any(|&l| l < 0 || l as usize > time) {
            return invalid!("sequence_lens {lens:?} do not fit batch {batch} and time {time}");
        }
        let st = x.strides();
        let mut idx = Vec::with_capacity(x.numel());
        for_each_index(x.shape(), |ix| {
            let (b, t) = (ix[ba], ix[ta]);
            let len = lens[b] as usize;
            let src_t = if t < len { len - 1 - t } else { t };
            let flat: usize = ix.iter().zip(&st).map(|(&i, &s)| i * s).sum();
            idx.push(flat - t * st[ta] + src_t * st[ta]);
        });
        one(x.gather_flat(x.shape().to_vec(), &idx))
    }
}

impl Eval for CenterCropPad {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let target = ints(cx.input(1)?, "the shape")?;
        let axes = crop_axes(self.axes.as_deref(), x.rank())?;
        if target.len() != axes.len() {
            return invalid!("{} target dims for {} axes", target.len(), axes.len());
        }
        let st = x.strides();
        let mut maps = identity_maps(x);
        for (&a, &s) in axes.iter().zip(&target) {
            let s = checked_shape(&[s])?[0];
            let d = x.shape()[a];
            maps[a] = if s <= d {
                let c = (d - s) / 2;
                (0..s).map(|i| Some((c + i) * st[a])).collect()
            } else {
                let p = (s - d) / 2;
                (0..s)
                    .map(|i| (i >= p && i - p < d).then(|| (i - p) * st[a]))
                    .collect()
            };
        }
        one(gather_axes(x, &maps, &zero(x.dtype()))?)
    }
}

/// Element values that Unique can order.
enum Keys<'a> {
    Float(Vec<f64>),
    Int(Vec<i128>),
    Str(&'a [String]),
}

impl Keys<'_> {
    fn of(t: &Tensor) -> Result<Keys<'_>, OpError> {
        Ok(match t.data() {
            Data::Str(v) => Keys::Str(v),
            _ if t.dtype().is_int() || t.dtype() == DType::Bool => Keys::Int(int_values(t)),
            _ if t.dtype().is_float() => Keys::Float(t.to_f64_vec()),
            _ => return unsupported!("Unique on {} tensors", t.dtype()),
        })
    }

    fn cmp(&self, i: usize, j: usize) -> Ordering {
        match self {
            // NaNs sort last and equal each other; -0 equals 0.
            Keys::Float(v) => v[i]
                .partial_cmp(&v[j])
                .unwrap_or_else(|| v[i].is_nan().cmp(&v[j].is_nan())),
            Keys::Int(v) => v[i].cmp(&v[j]),
            Keys::Str(v) => v[i].cmp(&v[j]),
        }
    }
}

impl Eval for Unique {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let (a, outer, count, inner) = match self.axis {
            Some(a) => {
                let a = axis(a, x.rank())?;
                let (o, d, i) = split_at_axis(x.shape(), a);
                (Some(a), o, d, i)
            }
            None => (None, 1, x.numel(), 1),
        };
        let keys = Keys::of(x)?;
        // Items are the slices along the axis (single elements without one),
        // compared element by element in row-major order.
        let cmp = |p: usize, q: usize| {
            for o in 0..outer {
                for r in 0..inner {
                    let at = |s: usize| (o * count + s) * inner + r;
                    match keys.cmp(at(p), at(q)) {
                        Ordering::Equal => {}
                        ord => return ord,
                    }
                }
            }
            Ordering::Equal
        };
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by(|&p, &q| cmp(p, q));
        // Groups of equal items, each led by its first occurrence (the
        // sort is stable).
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut group_of = vec![0usize; count];
        for (n, &p) in order.iter().enumerate() {
            if n == 0 || cmp(order[n - 1], p) != Ordering::Equal {
                groups.push((p, 0));
            }
            let g = groups.len() - 1;
            groups[g].1 += 1;
            group_of[p] = g;
        }
        let mut rank: Vec<usize> = (0..groups.len()).collect();
        if !self.sorted {
            rank.sort_by_key(|&g| groups[g].0);
        }
        let mut position = vec![0usize; groups.len()];
        for (n, &g) in rank.iter().enumerate() {
            position[g] = n;
        }
        let firsts: Vec<usize> = rank.iter().map(|&g| groups[g].0).collect();
        let y = match a {
            Some(a) => take_along(x, a, &firsts)?,
            None => x.gather_flat(vec![firsts.len()], &firsts),
        };
        let as_i64 = |v: Vec<usize>| i64_vec(v.into_iter().map(|i| i as i64).collect());
        let outputs = [
            y,
            as_i64(firsts),
            as_i64(group_of.iter().map(|&g| position[g]).collect()),
            as_i64(rank.iter().map(|&g| groups[g].1).collect()),
        ];
        Ok(outputs.into_iter().take(cx.num_outputs.max(1)).collect())
    }
}

impl Eval for BitCast {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        bitcast_check(x.dtype(), self.to)?;
        let raw = x
            .to_le_bytes()
            .ok_or_else(|| OpError::Invalid("BitCast does not apply to strings".into()))?;
        let t = Tensor::from_le_bytes(self.to, x.shape().to_vec(), &raw)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        one(t)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::interp::eval_op;
    use crate::ops::infer::InferCx;
    use crate::shape::{Shape as Dims, TensorType};

    fn t(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    fn strs(v: &[&str]) -> Tensor {
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        Tensor::new(DType::Str, vec![v.len()], Data::Str(v)).unwrap()
    }

    /// Evaluates `op` with `outputs` outputs.
    fn run_n(
        op: impl Into<Op>,
        inputs: &[Option<&Tensor>],
        outputs: usize,
    ) -> Result<Vec<Tensor>, OpError> {
        let types = vec![TensorType::unknown_rank(DType::F32); outputs];
        eval_op(&op.into(), inputs, &types)
    }

    fn run(op: impl Into<Op>, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        Ok(run_n(op, &inputs, 1)?.remove(0))
    }

    fn ints_of(t: &Tensor) -> (Vec<usize>, Vec<i64>) {
        (t.shape().to_vec(), t.to_i64_vec())
    }

    fn sym(s: &str) -> Dim {
        Dim::sym(s)
    }

    fn k(n: u64) -> Dim {
        Dim::Known(n)
    }

    /// Infers `op` on inputs given as (type, known value).
    fn infer(
        op: impl Into<Op>,
        inputs: &[(TensorType, Option<Tensor>)],
        outputs: usize,
    ) -> Result<Vec<TensorType>, OpError> {
        let types: Vec<Option<TensorType>> = inputs.iter().map(|i| Some(i.0.clone())).collect();
        let values: Vec<Option<Arc<Tensor>>> =
            inputs.iter().map(|i| i.1.clone().map(Arc::new)).collect();
        let cx = InferCx {
            inputs: &types,
            values: &values,
            num_outputs: outputs,
            syms: &[],
        };
        op.into().infer(&cx)
    }

    fn ty(dtype: DType, dims: Vec<Dim>) -> TensorType {
        TensorType::new(dtype, Dims::Ranked(dims))
    }

    fn value(v: &[i64]) -> (TensorType, Option<Tensor>) {
        (
            TensorType::known(DType::I64, &[v.len()]),
            Some(t(&[v.len()], v)),
        )
    }

    fn unknown_value(n: usize) -> (TensorType, Option<Tensor>) {
        (TensorType::known(DType::I64, &[n]), None)
    }

    #[test]
    fn reshape_resolves_zero_and_minus_one() {
        let r =
            |input: Vec<Dim>, target: &[i64], allowzero| reshape_dims(&input, target, allowzero);
        assert_eq!(
            r(vec![k(2), k(3), k(4)], &[0, -1], false).unwrap(),
            vec![k(2), k(12)]
        );
        // Symbols that cancel still resolve -1.
        assert_eq!(
            r(vec![sym("N"), k(3), k(4)], &[0, -1], false).unwrap(),
            vec![sym("N"), k(12)]
        );
        assert_eq!(
            r(vec![sym("N"), k(3), k(4)], &[-1, 12], false).unwrap(),
            vec![sym("N"), k(12)]
        );
        assert_eq!(
            r(vec![sym("N"), sym("M")], &[-1], false).unwrap(),
            vec![Dim::Unknown]
        );
        assert_eq!(
            r(vec![k(0), k(3)], &[0, 3], true).unwrap(),
            vec![k(0), k(3)]
        );
        assert!(r(vec![k(2), k(3)], &[0, -1], true).is_err());
        assert!(r(vec![k(2), k(3)], &[-1, -1], false).is_err());
        assert!(r(vec![k(2), k(3)], &[4, -1], false).is_err());
        assert!(r(vec![k(2), k(3)], &[5], false).is_err());
        assert!(r(vec![k(2)], &[1, 0], false).is_err());
    }

    #[test]
    fn reshape_infers_from_known_target() {
        let x = ty(DType::F32, vec![sym("B"), k(8), k(4)]);
        let out = infer(
            Reshape { allowzero: false },
            &[(x.clone(), None), value(&[0, -1, 2])],
            1,
        )
        .unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![sym("B"), k(16), k(2)]));
        let out = infer(
            Reshape { allowzero: false },
            &[(x, None), unknown_value(3)],
            1,
        )
        .unwrap();
        assert_eq!(out[0], TensorType::with_rank(DType::F32, 3));
    }

    #[test]
    fn slice_clamps_like_onnx() {
        assert_eq!(slice_axis(10, -1, i64::MIN, -1).unwrap(), (9, 10));
        assert_eq!(slice_axis(10, 0, i64::MAX, 3).unwrap(), (0, 4));
        assert_eq!(slice_axis(5, 20, 0, -1).unwrap(), (4, 4));
        assert_eq!(slice_axis(5, 1000, 2000, 1).unwrap(), (5, 0));
        assert_eq!(slice_axis(5, -100, 2, 1).unwrap(), (0, 2));
        assert_eq!(slice_axis(0, 0, -1, -1).unwrap(), (0, 0));
        assert!(slice_axis(5, 0, 5, 0).is_err());

        let x = t(&[3, 4], &(0..12).collect::<Vec<_>>());
        let y = run(
            Slice {},
            &[
                &x,
                &t(&[2], &[-1, 3]),
                &t(&[2], &[i64::MIN, 0]),
                &t(&[2], &[0, 1]),
                &t(&[2], &[-2, -1]),
            ],
        )
        .unwrap();
        assert_eq!(ints_of(&y), (vec![2, 3], vec![11, 10, 9, 3, 2, 1]));
        // Repeated axes are rejected.
        assert!(
            run(
                Slice {},
                &[&x, &t(&[2], &[0, 0]), &t(&[2], &[1, 1]), &t(&[2], &[1, -1])]
            )
            .is_err()
        );
    }

    #[test]
    fn slice_infers_whole_symbolic_axes() {
        let x = ty(DType::F32, vec![sym("N"), k(10)]);
        let out = infer(
            Slice {},
            &[(x.clone(), None), value(&[0, 2]), value(&[i64::MAX, -2])],
            1,
        )
        .unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![sym("N"), k(6)]));
        let out = infer(
            Slice {},
            &[(x.clone(), None), value(&[1]), value(&[i64::MAX])],
            1,
        )
        .unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![Dim::Unknown, k(10)]));
        // Unknown bounds on a known axis keep the other dims.
        let out = infer(
            Slice {},
            &[(x, None), unknown_value(1), unknown_value(1), value(&[1])],
            1,
        )
        .unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![sym("N"), Dim::Unknown]));
    }

    #[test]
    fn pad_modes() {
        let x = t(&[3], &[1, 2, 3]);
        let pads = t(&[2], &[2, 2]);
        let pad = |mode| run(Pad { mode }, &[&x, &pads]).unwrap().to_i64_vec();
        assert_eq!(pad(PadMode::Constant), vec![0, 0, 1, 2, 3, 0, 0]);
        assert_eq!(pad(PadMode::Reflect), vec![3, 2, 1, 2, 3, 2, 1]);
        assert_eq!(pad(PadMode::Edge), vec![1, 1, 1, 2, 3, 3, 3]);
        assert_eq!(pad(PadMode::Wrap), vec![2, 3, 1, 2, 3, 1, 2]);
        // Reflecting further than the data bounces back and forth.
        let far = run(
            Pad {
                mode: PadMode::Reflect,
            },
            &[&x, &t(&[2], &[0, 5])],
        )
        .unwrap();
        assert_eq!(far.to_i64_vec(), vec![1, 2, 3, 2, 1, 2, 3, 2]);
        // Negative pads crop; the constant comes from input 2.
        let y = run(
            Pad {
                mode: PadMode::Constant,
            },
            &[&x, &t(&[2], &[-1, 1]), &Tensor::scalar(9i64)],
        )
        .unwrap();
        assert_eq!(y.to_i64_vec(), vec![2, 3, 9]);
        assert!(
            run(
                Pad {
                    mode: PadMode::Constant
                },
                &[&x, &t(&[2], &[-2, -2])]
            )
            .is_err()
        );
        // Axes select what the pads apply to; strings pad with "".
        let m = t(&[2, 2], &[1, 2, 3, 4]);
        let y = run(
            Pad {
                mode: PadMode::Edge,
            },
            &[
                &m,
                &t(&[2], &[1, 0]),
                &Tensor::scalar(0i64),
                &t(&[1], &[-1]),
            ],
        )
        .unwrap();
        assert_eq!(ints_of(&y), (vec![2, 3], vec![1, 1, 2, 3, 3, 4]));
        let s = run(
            Pad {
                mode: PadMode::Constant,
            },
            &[&strs(&["a"]), &t(&[2], &[1, 0])],
        )
        .unwrap();
        assert_eq!(s.as_strings().unwrap(), &["".to_string(), "a".to_string()]);
    }

    #[test]
    fn gather_checks_indices() {
        let x = t(&[3, 2], &[1, 2, 3, 4, 5, 6]);
        let y = run(Gather { axis: 0 }, &[&x, &t(&[2], &[-1, 0])]).unwrap();
        assert_eq!(ints_of(&y), (vec![2, 2], vec![5, 6, 1, 2]));
        let y = run(Gather { axis: 1 }, &[&x, &Tensor::scalar(1i64)]).unwrap();
        assert_eq!(ints_of(&y), (vec![3], vec![2, 4, 6]));
        assert!(run(Gather { axis: 0 }, &[&x, &t(&[1], &[3])]).is_err());
        assert!(run(Gather { axis: 0 }, &[&x, &t(&[1], &[-4])]).is_err());
        assert!(run(Gather { axis: 2 }, &[&x, &t(&[1], &[0])]).is_err());
        let e = run(GatherElements { axis: 1 }, &[&x, &t(&[3, 1], &[1, 0, -1])]).unwrap();
        assert_eq!(e.to_i64_vec(), vec![2, 3, 6]);
    }

    #[test]
    fn split_sizes() {
        assert_eq!(split_even(5, 3).unwrap(), vec![2, 2, 1]);
        assert_eq!(split_even(6, 3).unwrap(), vec![2, 2, 2]);
        assert!(split_even(5, 4).is_err());
        let x = t(&[5], &[1, 2, 3, 4, 5]);
        let parts = run_n(
            Split {
                axis: 0,
                num_outputs: Some(3),
            },
            &[Some(&x)],
            3,
        )
        .unwrap();
        let v: Vec<Vec<i64>> = parts.iter().map(|p| p.to_i64_vec()).collect();
        assert_eq!(v, vec![vec![1, 2], vec![3, 4], vec![5]]);
        let sizes = t(&[2], &[4, 1]);
        let parts = run_n(
            Split {
                axis: -1,
                num_outputs: None,
            },
            &[Some(&x), Some(&sizes)],
            2,
        )
        .unwrap();
        assert_eq!(parts[1].to_i64_vec(), vec![5]);
        assert!(
            run_n(
                Split {
                    axis: 0,
                    num_outputs: None
                },
                &[Some(&x), Some(&t(&[2], &[4, 2]))],
                2
            )
            .is_err()
        );
    }

    #[test]
    fn scatter_reductions() {
        let data = Tensor::from_vec(vec![3], vec![100i8, 2, 3]);
        let upd = Tensor::from_vec(vec![2], vec![2i8, 5]);
        let ind = t(&[2], &[0, 0]);
        let y = run(
            ScatterElements {
                axis: 0,
                reduction: ScatterReduction::Mul,
            },
            &[&data, &ind, &upd],
        )
        .unwrap();
        // 100 * 2 * 5 = 1000 wraps to -24 in i8.
        assert_eq!(y.as_slice::<i8>().unwrap(), &[-24, 2, 3]);
        let y = run(
            ScatterElements {
                axis: 0,
                reduction: ScatterReduction::None,
            },
            &[&data, &t(&[2], &[-1, 1]), &upd],
        )
        .unwrap();
        assert_eq!(y.as_slice::<i8>().unwrap(), &[100, 5, 2]);
        assert!(
            run(
                ScatterElements {
                    axis: 0,
                    reduction: ScatterReduction::None
                },
                &[&data, &t(&[2], &[3, 1]), &upd]
            )
            .is_err()
        );

        let data = f(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let ind = t(&[2, 1], &[1, 1]);
        let upd = f(&[2, 2], &[10.0, 20.0, 30.0, 40.0]);
        let y = run(
            ScatterND {
                reduction: ScatterReduction::Add,
            },
            &[&data, &ind, &upd],
        )
        .unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 2.0, 43.0, 64.0]);
        let y = run(
            ScatterND {
                reduction: ScatterReduction::Max,
            },
            &[&data, &t(&[1, 2], &[0, 1]), &f(&[1], &[-5.0])],
        )
        .unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn gather_nd_with_batch_dims() {
        // data[b, i, j]; indices pick (i, j) per batch.
        let x = t(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]);
        let ind = t(&[2, 1, 2], &[1, 0, 0, 1]);
        let y = run(GatherND { batch_dims: 1 }, &[&x, &ind]).unwrap();
        assert_eq!(ints_of(&y), (vec![2, 1], vec![2, 5]));
        let y = run(GatherND { batch_dims: 0 }, &[&x, &t(&[1, 1], &[1])]).unwrap();
        assert_eq!(ints_of(&y), (vec![1, 2, 2], vec![4, 5, 6, 7]));
        assert!(run(GatherND { batch_dims: 0 }, &[&x, &t(&[1, 1], &[2])]).is_err());
    }

    #[test]
    fn depth_space_modes() {
        let x = t(&[1, 8, 1, 1], &(0..8).collect::<Vec<_>>());
        let d2s = |mode| run(DepthToSpace { blocksize: 2, mode }, &[&x]).unwrap();
        assert_eq!(
            ints_of(&d2s(DepthToSpaceMode::Dcr)),
            (vec![1, 2, 2, 2], vec![0, 2, 4, 6, 1, 3, 5, 7])
        );
        assert_eq!(
            ints_of(&d2s(DepthToSpaceMode::Crd)),
            (vec![1, 2, 2, 2], vec![0, 1, 2, 3, 4, 5, 6, 7])
        );
        // SpaceToDepth undoes DepthToSpace in the same mode.
        for mode in [DepthToSpaceMode::Dcr, DepthToSpaceMode::Crd] {
            let back = run(SpaceToDepth { blocksize: 2, mode }, &[&d2s(mode)]).unwrap();
            assert_eq!(back, x);
        }
        assert!(
            run(
                DepthToSpace {
                    blocksize: 3,
                    mode: DepthToSpaceMode::Dcr
                },
                &[&x]
            )
            .is_err()
        );
    }

    #[test]
    fn trilu_and_eye() {
        let x = t(&[3, 3], &(0..9).collect::<Vec<_>>());
        let y = run(Trilu { upper: true }, &[&x, &Tensor::scalar(1i64)]).unwrap();
        assert_eq!(y.to_i64_vec(), vec![0, 1, 2, 0, 0, 5, 0, 0, 0]);
        let y = run(Trilu { upper: false }, &[&x, &Tensor::scalar(-1i64)]).unwrap();
        assert_eq!(y.to_i64_vec(), vec![0, 0, 0, 3, 0, 0, 6, 7, 0]);
        let e = run(
            EyeLike {
                dtype: Some(DType::Bool),
                k: -1,
            },
            &[&f(&[2, 3], &[0.0; 6])],
        )
        .unwrap();
        assert_eq!(
            e.as_slice::<bool>().unwrap(),
            &[false, false, false, true, false, false]
        );
    }

    #[test]
    fn unique_matches_spec_examples() {
        let x = t(&[6], &[2, 1, 1, 3, 4, 3]);
        let out = run_n(
            Unique {
                axis: None,
                sorted: false,
            },
            &[Some(&x)],
            4,
        )
        .unwrap();
        let v: Vec<Vec<i64>> = out.iter().map(|o| o.to_i64_vec()).collect();
        assert_eq!(
            v,
            vec![
                vec![2, 1, 3, 4],
                vec![0, 1, 3, 4],
                vec![0, 1, 1, 2, 3, 2],
                vec![1, 2, 2, 1]
            ]
        );
        let x = t(&[2, 2], &[1, 3, 2, 3]);
        let out = run_n(
            Unique {
                axis: None,
                sorted: true,
            },
            &[Some(&x)],
            4,
        )
        .unwrap();
        let v: Vec<Vec<i64>> = out.iter().map(|o| o.to_i64_vec()).collect();
        assert_eq!(
            v,
            vec![
                vec![1, 2, 3],
                vec![0, 2, 1],
                vec![0, 2, 1, 2],
                vec![1, 1, 2]
            ]
        );
        let x = t(&[3, 3], &[1, 0, 0, 1, 0, 0, 2, 3, 4]);
        let out = run_n(
            Unique {
                axis: Some(0),
                sorted: true,
            },
            &[Some(&x)],
            4,
        )
        .unwrap();
        assert_eq!(ints_of(&out[0]), (vec![2, 3], vec![1, 0, 0, 2, 3, 4]));
        assert_eq!(out[2].to_i64_vec(), vec![0, 0, 1]);
        assert_eq!(out[3].to_i64_vec(), vec![2, 1]);
    }

    #[test]
    fn range_one_hot_crop_reverse() {
        let r = run(
            Range {},
            &[
                &Tensor::scalar(10i32),
                &Tensor::scalar(4i32),
                &Tensor::scalar(-3i32),
            ],
        )
        .unwrap();
        assert_eq!(r.as_slice::<i32>().unwrap(), &[10, 7]);
        let r = run(
            Range {},
            &[
                &Tensor::scalar(1.0f64),
                &Tensor::scalar(2.0f64),
                &Tensor::scalar(0.25f64),
            ],
        )
        .unwrap();
        assert_eq!(r.as_slice::<f64>().unwrap(), &[1.0, 1.25, 1.5, 1.75]);
        assert!(
            run(
                Range {},
                &[
                    &Tensor::scalar(0i64),
                    &Tensor::scalar(4i64),
                    &Tensor::scalar(0i64)
                ]
            )
            .is_err()
        );

        let y = run(
            OneHot { axis: -1 },
            &[
                &t(&[3], &[1, -1, 5]),
                &Tensor::scalar(3i64),
                &t(&[2], &[0, 9]),
            ],
        )
        .unwrap();
        assert_eq!(ints_of(&y), (vec![3, 3], vec![0, 9, 0, 0, 0, 9, 0, 0, 0]));
        let y = run(
            OneHot { axis: 0 },
            &[
                &t(&[2], &[0, 1]),
                &Tensor::scalar(2.0f32),
                &t(&[2], &[0, 1]),
            ],
        )
        .unwrap();
        assert_eq!(ints_of(&y), (vec![2, 2], vec![1, 0, 0, 1]));

        let crop = run(
            CenterCropPad { axes: None },
            &[&t(&[5], &[1, 2, 3, 4, 5]), &t(&[1], &[2])],
        )
        .unwrap();
        assert_eq!(crop.to_i64_vec(), vec![2, 3]);
        let pad = run(
            CenterCropPad { axes: None },
            &[&t(&[2], &[1, 2]), &t(&[1], &[5])],
        )
        .unwrap();
        assert_eq!(pad.to_i64_vec(), vec![0, 1, 2, 0, 0]);

        let x = t(&[4, 4], &(0..16).collect::<Vec<_>>());
        let op = ReverseSequence {
            batch_axis: 0,
            time_axis: 1,
        };
        let y = run(op, &[&x, &t(&[4], &[1, 2, 3, 4])]).unwrap();
        assert_eq!(
            y.to_i64_vec(),
            vec![0, 1, 2, 3, 5, 4, 6, 7, 10, 9, 8, 11, 15, 14, 13, 12]
        );
    }

    #[test]
    fn movement_keeps_any_dtype() {
        let s = strs(&["a", "b", "c", "d"]);
        let s2 = run(Reshape { allowzero: false }, &[&s, &t(&[2], &[2, -1])]).unwrap();
        let tr = run(Transpose { perm: None }, &[&s2]).unwrap();
        assert_eq!(
            tr.as_strings().unwrap(),
            &["a", "c", "b", "d"].map(String::from)
        );
        let c = run(Concat { axis: 1 }, &[&s2, &s2]).unwrap();
        assert_eq!(c.shape(), &[2, 4]);
        assert_eq!(
            c.as_strings().unwrap()[4..],
            ["c", "d", "c", "d"].map(String::from)
        );
        let tile = run(Tile {}, &[&t(&[2], &[1, 2]), &t(&[1], &[3])]).unwrap();
        assert_eq!(tile.to_i64_vec(), vec![1, 2, 1, 2, 1, 2]);
        let b = run(BitCast { to: DType::I32 }, &[&f(&[1], &[1.0])]).unwrap();
        assert_eq!(b.as_slice::<i32>().unwrap(), &[0x3f80_0000]);
        assert!(run(BitCast { to: DType::I64 }, &[&f(&[1], &[1.0])]).is_err());
        let nz = run(NonZero {}, &[&t(&[2, 2], &[0, 3, 4, 0])]).unwrap();
        assert_eq!(ints_of(&nz), (vec![2, 2], vec![0, 1, 1, 0]));
    }

    #[test]
    fn tensor_scatter_linear_and_circular() {
        let past = t(&[2, 4, 1], &[0; 8]);
        let upd = t(&[2, 2, 1], &[1, 2, 3, 4]);
        let w = t(&[2], &[1, 3]);
        let op = |mode| TensorScatter { axis: -2, mode };
        let y = run(op(TensorScatterMode::Circular), &[&past, &upd, &w]).unwrap();
        assert_eq!(y.to_i64_vec(), vec![0, 1, 2, 0, 4, 0, 0, 3]);
        assert!(run(op(TensorScatterMode::Linear), &[&past, &upd, &w]).is_err());
    }

    #[test]
    fn inference_uses_known_values() {
        let x = ty(DType::F32, vec![sym("N"), k(1), k(3)]);
        let out = infer(Squeeze {}, &[(x.clone(), None), value(&[1])], 1).unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![sym("N"), k(3)]));
        assert!(infer(Squeeze {}, &[(x.clone(), None), value(&[2])], 1).is_err());
        let out = infer(Unsqueeze {}, &[(x.clone(), None), value(&[-1, 0])], 1).unwrap();
        assert_eq!(
            out[0],
            ty(DType::F32, vec![k(1), sym("N"), k(1), k(3), k(1)])
        );
        let out = infer(
            Shape {
                start: -2,
                end: None,
            },
            &[(x.clone(), None)],
            1,
        )
        .unwrap();
        assert_eq!(out[0], TensorType::known(DType::I64, &[2]));
        let out = infer(Expand {}, &[(x.clone(), None), value(&[2, 1, 4, 3])], 1).unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![k(2), sym("N"), k(4), k(3)]));
        let out = infer(Expand {}, &[(x.clone(), None), unknown_value(3)], 1).unwrap();
        assert_eq!(
            out[0],
            ty(DType::F32, vec![Dim::Unknown, Dim::Unknown, k(3)])
        );
        let out = infer(Tile {}, &[(x.clone(), None), value(&[1, 4, 2])], 1).unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![sym("N"), k(4), k(6)]));
        let out = infer(
            Pad {
                mode: PadMode::Constant,
            },
            &[
                (x.clone(), None),
                value(&[1, -1]),
                (TensorType::known(DType::F32, &[]), None),
                value(&[2]),
            ],
            1,
        )
        .unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![sym("N"), k(1), k(3)]));
        let out = infer(ConstantOfShape { value: None }, &[unknown_value(2)], 1).unwrap();
        assert_eq!(out[0], TensorType::with_rank(DType::F32, 2));
        let out = infer(Flatten { axis: -1 }, &[(x.clone(), None)], 1).unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![sym("N"), k(3)]));
        let y = ty(DType::F32, vec![sym("N"), k(2), k(3)]);
        let out = infer(Concat { axis: 1 }, &[(x.clone(), None), (y, None)], 1).unwrap();
        assert_eq!(out[0], ty(DType::F32, vec![sym("N"), k(3), k(3)]));
        let out = infer(
            Split {
                axis: 2,
                num_outputs: None,
            },
            &[(x, None)],
            2,
        )
        .unwrap();
        assert_eq!(out[1], ty(DType::F32, vec![sym("N"), k(1), k(1)]));
    }
}
