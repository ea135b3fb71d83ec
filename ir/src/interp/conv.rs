//! Convolution and pooling.
//!
//! Convolutions unfold the input windows into a matrix (im2col) and
//! multiply it with the weights; f32 and f64 go through `matrixmultiply`,
//! f16/bf16 are computed in f64, integer convolutions in i64. Transposed
//! convolution and Col2Im are the adjoint: a product followed by folding
//! the columns back onto the image (col2im). Pools walk each window's taps
//! directly. The window geometry (output extents, pads) comes from
//! [`Window`], shared with type inference.

use std::ops::Range;

use super::kernels::*;
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::ops::*;
use crate::tensor::{Data, Tensor, strides};
use crate::{invalid, unsupported};

fn one(t: Tensor) -> Result<Vec<Tensor>, OpError> {
    Ok(vec![t])
}

/// At most this many elements of unfolded columns are held at once.
const COLUMN_BUDGET: usize = 1 << 22;

// ---- numeric element types and matrix products ----

/// An element type the convolution kernels compute in.
trait Num: Copy + Default + PartialEq + Send + Sync + 'static {
    fn add(self, other: Self) -> Self;
    /// `c = a · b` for strided views: `a` is m×k, `b` k×n, `c` m×n, each
    /// with (row stride, column stride).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        sa: (usize, usize),
        b: &[Self],
        sb: (usize, usize),
        c: &mut [Self],
        sc: (usize, usize),
    );
}

/// Whether an m×n view with strides `s` fits in `len` elements.
fn fits(rows: usize, cols: usize, s: (usize, usize), len: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * s.0 + (cols - 1) * s.1 < len
}

macro_rules! float_num {
    ($t:ty, $gemm:path) => {
        impl Num for $t {
            fn add(self, other: Self) -> Self {
                self + other
            }
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: &[Self],
                sa: (usize, usize),
                b: &[Self],
                sb: (usize, usize),
                c: &mut [Self],
                sc: (usize, usize),
            ) {
                assert!(
                    fits(m, k, sa, a.len()) && fits(k, n, sb, b.len()) && fits(m, n, sc, c.len())
                );
                if m == 0 || n == 0 {
                    return;
                }
                if k == 0 {
                    for i in 0..m {
                        for j in 0..n {
                            c[i * sc.0 + j * sc.1] = 0.0;
                        }
                    }
                    return;
                }
                // SAFETY: the asserts above keep every index of the three
                // strided views inside their slices, and `c` does not alias
                // `a` or `b` (it is borrowed mutably).
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        sa.0 as isize,
                        sa.1 as isize,
                        b.as_ptr(),
                        sb.0 as isize,
                        sb.1 as isize,
                        0.0,
                        c.as_mut_ptr(),
                        sc.0 as isize,
                        sc.1 as isize,
                    )
                }
            }
        }
    };
}
float_num!(f32, matrixmultiply::sgemm);
float_num!(f64, matrixmultiply::dgemm);

impl Num for i64 {
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[Self],
        sa: (usize, usize),
        b: &[Self],
        sb: (usize, usize),
        c: &mut [Self],
        sc: (usize, usize),
    ) {
        assert!(fits(m, k, sa, a.len()) && fits(k, n, sb, b.len()) && fits(m, n, sc, c.len()));
        for i in 0..m {
            for j in 0..n {
                c[i * sc.0 + j * sc.1] = 0;
            }
            for p in 0..k {
                let x = a[i * sa.0 + p * sa.1];
                if x == 0 {
                    continue;
                }
                for j in 0..n {
                    let y = b[p * sb.0 + j * sb.1];
                    let o = &mut c[i * sc.0 + j * sc.1];
                    *o = o.wrapping_add(x.wrapping_mul(y));
                }
            }
        }
    }
}

// ---- im2col and its adjoint ----

/// Visits the unfolded (im2col) layout of one image of `channels` planes:
/// rows are (channel, tap) with taps in row-major kernel order, columns the
/// output positions whose first spatial index lies in `first`. Calls
/// `f(index into the column block, image offset read or None in padding)`.
fn unfold(
    channels: usize,
    axes: &[AxisWindow],
    first: Range<usize>,
    mut f: impl FnMut(usize, Option<usize>),
) {
    let input: Vec<usize> = axes.iter().map(|a| a.input).collect();
    let in_strides = strides(&input);
    let plane: usize = input.iter().product();
    let kernel: Vec<usize> = axes.iter().map(|a| a.kernel).collect();
    let taps: usize = kernel.iter().product();
    let rest: usize = axes[1..].iter().map(|a| a.output).product();
    let ncols = first.len() * rest;
    let mut k = vec![0usize; axes.len()];
    for c in 0..channels {
        for t in 0..taps {
            let mut rem = t;
            for a in (0..axes.len()).rev() {
                k[a] = rem % kernel[a];
                rem /= kernel[a];
            }
            let row = c * taps + t;
            walk(
                axes,
                &k,
                &in_strides,
                0,
                first.clone(),
                Some(c * plane),
                row * ncols,
                &mut f,
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    axes: &[AxisWindow],
    k: &[usize],
    in_strides: &[usize],
    a: usize,
    range: Range<usize>,
    base: Option<usize>,
    mut col: usize,
    f: &mut impl FnMut(usize, Option<usize>),
) {
    let ax = &axes[a];
    let last = a + 1 == axes.len();
    let inner: usize = axes[a + 1..].iter().map(|a| a.output).product();
    let shift = (k[a] * ax.dilation) as i64 - ax.pad_begin;
    for o in range {
        let p = (o * ax.stride) as i64 + shift;
        let off = base.filter(|_| p >= 0 && (p as usize) < ax.input);
        let off = off.map(|b| b + p as usize * in_strides[a]);
        if last {
            f(col, off);
            col += 1;
        } else {
            walk(
                axes,
                k,
                in_strides,
                a + 1,
                0..axes[a + 1].output,
                off,
                col,
                f,
            );
            col += inner;
        }
    }
}

/// Unfolds one image into `cols` (`channels * taps` rows).
fn im2col<T: Num>(
    img: &[T],
    channels: usize,
    axes: &[AxisWindow],
    first: Range<usize>,
    cols: &mut [T],
) {
    unfold(channels, axes, first, |j, off| {
        cols[j] = off.map_or(T::default(), |o| img[o]);
    });
}

/// Adds unfolded columns back onto their image positions (the adjoint of
/// [`im2col`]).
fn col2im_add<T: Num>(
    cols: &[T],
    channels: usize,
    axes: &[AxisWindow],
    first: Range<usize>,
    img: &mut [T],
) {
    unfold(channels, axes, first, |j, off| {
        if let Some(o) = off {
            img[o] = img[o].add(cols[j]);
        }
    });
}

/// How many first-axis output rows to unfold at once for `rows` column rows.
fn chunk_rows(rows: usize, axes: &[AxisWindow]) -> usize {
    let rest: usize = axes[1..].iter().map(|a| a.output).product();
    (COLUMN_BUDGET / rows.saturating_mul(rest).max(1)).clamp(1, axes[0].output.max(1))
}

/// A zeroed buffer of `dims.product()` elements, checked against the
/// element limit first.
fn buffer<T: Num>(dims: &[usize]) -> Result<Vec<T>, OpError> {
    let dims: Vec<i64> = dims
        .iter()
        .map(|&d| d.min(i64::MAX as usize) as i64)
        .collect();
    let n = checked_shape(&dims)?.iter().product();
    Ok(vec![T::default(); n])
}

// ---- convolution ----

/// Shapes of a convolution, checked.
struct ConvGeom {
    batch: usize,
    channels: usize,
    /// Output channels.
    maps: usize,
    group: usize,
    axes: Vec<AxisWindow>,
}

impl ConvGeom {
    fn new(x: &[usize], w: &[usize], a: &WindowAttrs) -> Result<ConvGeom, OpError> {
        let group = a.group;
        if x.len() < 3 {
            return invalid!("input must have rank 3 or more, found {:?}", x);
        }
        if w.len() != x.len() {
            return invalid!("weight {w:?} and input {x:?} differ in rank");
        }
        if group < 1 {
            return invalid!("group must be positive, found {group}");
        }
        let group = group as usize;
        if x[1] != w[1] * group || !w[0].is_multiple_of(group) {
            return invalid!("input {x:?} and weight {w:?} do not match for {group} groups");
        }
        let wk: Vec<i64> = w[2..].iter().map(|&d| d as i64).collect();
        if let Some(k) = a.kernel_shape
            && *k != wk
        {
            return invalid!("kernel_shape {k:?} differs from the weight's {wk:?}");
        }
        let win = a.window(&wk)?;
        let axes = win.axes(&x[2..])?;
        Ok(ConvGeom {
            batch: x[0],
            channels: x[1],
            maps: w[0],
            group,
            axes,
        })
    }

    /// Elements of one output plane.
    fn plane(&self) -> usize {
        self.axes.iter().map(|a| a.output).product()
    }

    fn out_shape(&self) -> Result<Vec<usize>, OpError> {
        let mut s = vec![self.batch as i64, self.maps as i64];
        s.extend(self.axes.iter().map(|a| a.output as i64));
        checked_shape(&s)
    }
}

/// Convolution of `x` with `w` (no bias) in the element type `T`.
fn conv_forward<T: Num>(g: &ConvGeom, x: &[T], w: &[T]) -> Result<Vec<T>, OpError> {
    let out_shape = g.out_shape()?;
    let mut out = buffer::<T>(&out_shape)?;
    let axes = &g.axes;
    let (cg, mg) = (g.channels / g.group, g.maps / g.group);
    let taps: usize = axes.iter().map(|a| a.kernel).product();
    let rows = cg * taps;
    let in_plane: usize = axes.iter().map(|a| a.input).product();
    let l: usize = axes.iter().map(|a| a.output).product();
    if l == 0 || mg == 0 {
        return Ok(out);
    }
    let pointwise = axes
        .iter()
        .all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.output == a.input);
    let rest = l / axes[0].output;
    let chunk = chunk_rows(rows, axes);
    let mut cols = if pointwise {
        Vec::new()
    } else {
        buffer::<T>(&[rows, chunk, rest])?
    };
    for n in 0..g.batch {
        for gi in 0..g.group {
            let img = &x[(n * g.channels + gi * cg) * in_plane..][..cg * in_plane];
            let wg = &w[gi * mg * rows..][..mg * rows];
            let dst = &mut out[(n * g.maps + gi * mg) * l..][..mg * l];
            if pointwise {
                T::gemm(mg, rows, l, wg, (rows, 1), img, (l, 1), dst, (l, 1));
                continue;
            }
            for h0 in (0..axes[0].output).step_by(chunk) {
                let h1 = (h0 + chunk).min(axes[0].output);
                let ncols = (h1 - h0) * rest;
                let block = &mut cols[..rows * ncols];
                im2col(img, cg, axes, h0..h1, block);
                T::gemm(
                    mg,
                    rows,
                    ncols,
                    wg,
                    (rows, 1),
                    block,
                    (ncols, 1),
                    &mut dst[h0 * rest..],
                    (l, 1),
                );
            }
        }
    }
    Ok(out)
}

/// Adds a per-channel bias to an `[N, M, spatial...]` result whose planes
/// hold `plane` elements.
fn add_bias<T: Num>(out: &mut [T], maps: usize, plane: usize, bias: &[T]) -> Result<(), OpError> {
    if bias.len() != maps {
        return invalid!("bias has {} values for {maps} output channels", bias.len());
    }
    if plane == 0 {
        return Ok(());
    }
    for (i, chunk) in out.chunks_mut(plane).enumerate() {
        let b = bias[i % maps];
        for v in chunk {
            *v = v.add(b);
        }
    }
    Ok(())
}

/// Runs a float kernel on the inputs of a float op: f32 data as it is
/// (through sgemm), f64, f16 and bf16 widened to f64; the result is
/// rounded back to the inputs' type.
fn with_floats(
    ins: &[&Tensor],
    what: &str,
    f32_kernel: impl FnOnce(&[&[f32]]) -> Result<(Vec<usize>, Vec<f32>), OpError>,
    f64_kernel: impl FnOnce(&[&[f64]]) -> Result<(Vec<usize>, Vec<f64>), OpError>,
) -> Result<Tensor, OpError> {
    let dtype = ins[0].dtype();
    if let Some(t) = ins.iter().find(|t| t.dtype() != dtype) {
        return invalid!("{what}: inputs have types {dtype} and {}", t.dtype());
    }
    match dtype {
        DType::F32 => {
            let v: Option<Vec<&[f32]>> = ins.iter().map(|t| t.as_slice::<f32>()).collect();
            let v = v.ok_or_else(|| OpError::Invalid(format!("{what}: malformed f32 data")))?;
            let (shape, out) = f32_kernel(&v)?;
            Ok(Tensor::from_vec(shape, out))
        }
        DType::F64 | DType::F16 | DType::BF16 => {
            let v: Vec<Vec<f64>> = ins.iter().map(|t| t.to_f64_vec()).collect();
            let v: Vec<&[f64]> = v.iter().map(|v| v.as_slice()).collect();
            let (shape, out) = f64_kernel(&v)?;
            from_f64(dtype, shape, out)
        }
        d => unsupported!("{what} on {d} tensors"),
    }
}

/// Convolution with an optional bias (`ins` = x, w[, b]).
fn conv_with_bias<T: Num>(g: &ConvGeom, ins: &[&[T]]) -> Result<(Vec<usize>, Vec<T>), OpError> {
    let mut out = conv_forward(g, ins[0], ins[1])?;
    if let Some(b) = ins.get(2) {
        add_bias(&mut out, g.maps, g.plane(), b)?;
    }
    Ok((g.out_shape()?, out))
}

impl Eval for Conv {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        let g = ConvGeom::new(x.shape(), w.shape(), &self.window_attrs())?;
        let mut ins = vec![x, w];
        ins.extend(cx.opt_input(2));
        one(with_floats(
            &ins,
            "Conv",
            |v| conv_with_bias(&g, v),
            |v| conv_with_bias(&g, v),
        )?)
    }
}

/// An 8-bit quantized tensor as i64 values less a zero point, which is a
/// scalar or (`per_channel` along axis 0) one value per row.
fn dequant_ints(t: &Tensor, zp: Option<&Tensor>, per_channel: bool) -> Result<Vec<i64>, OpError> {
    if !matches!(t.dtype(), DType::I8 | DType::U8) {
        return unsupported!("quantized convolution on {} tensors", t.dtype());
    }
    let mut v = t.to_i64_vec();
    let Some(zp) = zp.filter(|z| z.numel() > 0) else {
        return Ok(v);
    };
    if zp.dtype() != t.dtype() {
        return invalid!(
            "zero point has type {}, its tensor {}",
            zp.dtype(),
            t.dtype()
        );
    }
    let z = zp.to_i64_vec();
    if z.len() == 1 {
        v.iter_mut().for_each(|x| *x -= z[0]);
    } else if per_channel && t.rank() > 0 && z.len() == t.shape()[0] && zp.rank() == 1 {
        let row = t.numel() / z.len().max(1);
        for (i, x) in v.iter_mut().enumerate() {
            *x -= z[i / row.max(1)];
        }
    } else {
        return invalid!(
            "zero point of shape {:?} does not fit {:?}",
            zp.shape(),
            t.shape()
        );
    }
    Ok(v)
}

impl Eval for ConvInteger {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        let g = ConvGeom::new(x.shape(), w.shape(), &self.window_attrs())?;
        let xv = dequant_ints(x, cx.opt_input(2), false)?;
        let wv = dequant_ints(w, cx.opt_input(3), true)?;
        let out = conv_forward(&g, &xv, &wv)?;
        let out: Vec<i32> = out.into_iter().map(|v| v as i32).collect();
        one(Tensor::from_vec(g.out_shape()?, out))
    }
}

/// A scale input: one value, or one per output channel when allowed.
fn scales(t: &Tensor, n: usize, what: &str) -> Result<Vec<f32>, OpError> {
    if !t.dtype().is_float() {
        return invalid!("{what} must be a float tensor, found {}", t.dtype());
    }
    let v: Vec<f32> = t.to_f64_vec().into_iter().map(|x| x as f32).collect();
    if v.len() == 1 || (v.len() == n && t.rank() == 1) {
        Ok(v)
    } else {
        invalid!(
            "{what} of shape {:?} does not fit {n} output channels",
            t.shape()
        )
    }
}

impl Eval for QLinearConv {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, w) = (cx.input(0)?, cx.input(3)?);
        let g = ConvGeom::new(x.shape(), w.shape(), &self.window_attrs())?;
        let xv = dequant_ints(x, cx.opt_input(2), false)?;
        let wv = dequant_ints(w, cx.opt_input(5), true)?;
        let mut acc = conv_forward(&g, &xv, &wv)?;
        // The accumulator is i32 in ONNX.
        acc.iter_mut().for_each(|v| *v = *v as i32 as i64);
        if let Some(b) = cx.opt_input(8) {
            if b.dtype() != DType::I32 {
                return invalid!("bias must be i32, found {}", b.dtype());
            }
            let b: Vec<i64> = b.to_i64_vec();
            add_bias(&mut acc, g.maps, g.plane(), &b)?;
            acc.iter_mut().for_each(|v| *v = *v as i32 as i64);
        }
        let x_scale = scales(cx.input(1)?, 1, "x_scale")?[0];
        let w_scale = scales(cx.input(4)?, g.maps, "w_scale")?;
        let y_scale = scales(cx.input(6)?, 1, "y_scale")?[0];
        let y_zp = cx.opt_input(7).filter(|z| z.numel() > 0);
        let out_dtype = y_zp.map_or(x.dtype(), |z| z.dtype());
        let zp = y_zp.map_or(0.0, |z| z.get_f64(0));
        let (lo, hi) = match out_dtype {
            DType::I8 => (-128.0, 127.0),
            DType::U8 => (0.0, 255.0),
            d => return unsupported!("QLinearConv producing {d}"),
        };
        let l = acc.len() / (g.batch * g.maps).max(1);
        let v: Vec<f64> = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let ws = w_scale[if w_scale.len() == 1 {
                    0
                } else {
                    (i / l.max(1)) % g.maps
                }];
                // The multiplier is formed in f32, as ONNX does.
                let mult = (x_scale * ws / y_scale) as f64;
                (a as f64 * mult + zp).clamp(lo, hi).round_ties_even()
            })
            .collect();
        one(from_f64(out_dtype, g.out_shape()?, v)?)
    }
}

// ---- transposed convolution and col2im ----

/// Transposed convolution: `out[o] += x[i] * w[k]` at `o = i*s + k*d - pad`.
fn conv_transpose<T: Num>(
    ins: &[&[T]],
    xs: &[usize],
    group: usize,
    mg: usize,
    axes: &[AxisWindow],
) -> Result<(Vec<usize>, Vec<T>), OpError> {
    let (x, w) = (ins[0], ins[1]);
    let (batch, channels) = (xs[0], xs[1]);
    let maps = mg * group;
    let mut shape = vec![batch as i64, maps as i64];
    shape.extend(axes.iter().map(|a| a.input as i64));
    let shape = checked_shape(&shape)?;
    let mut out = buffer::<T>(&shape)?;
    let taps: usize = axes.iter().map(|a| a.kernel).product();
    let rows = mg * taps;
    let lin: usize = axes.iter().map(|a| a.output).product();
    let lout: usize = axes.iter().map(|a| a.input).product();
    if lin > 0 && rows > 0 {
        transpose_into(x, w, &mut out, (batch, channels, group, mg), axes)?;
    }
    if let Some(b) = ins.get(2) {
        add_bias(&mut out, maps, lout, b)?;
    }
    Ok((shape, out))
}

/// The products and folds of [`conv_transpose`] for non-empty extents.
fn transpose_into<T: Num>(
    x: &[T],
    w: &[T],
    out: &mut [T],
    (batch, channels, group, mg): (usize, usize, usize, usize),
    axes: &[AxisWindow],
) -> Result<(), OpError> {
    let cg = channels / group;
    let maps = mg * group;
    let taps: usize = axes.iter().map(|a| a.kernel).product();
    let rows = mg * taps;
    let lin: usize = axes.iter().map(|a| a.output).product();
    let lout: usize = axes.iter().map(|a| a.input).product();
    let rest = lin / axes[0].output;
    let chunk = chunk_rows(rows, axes);
    let mut cols = buffer::<T>(&[rows, chunk, rest])?;
    for n in 0..batch {
        for gi in 0..group {
            let img = &x[(n * channels + gi * cg) * lin..][..cg * lin];
            // The group's weights are cg × rows; the product needs their
            // transpose.
            let wg = &w[gi * cg * rows..][..cg * rows];
            let dst = &mut out[(n * maps + gi * mg) * lout..][..mg * lout];
            for h0 in (0..axes[0].output).step_by(chunk) {
                let h1 = (h0 + chunk).min(axes[0].output);
                let ncols = (h1 - h0) * rest;
                let block = &mut cols[..rows * ncols];
                T::gemm(
                    rows,
                    cg,
                    ncols,
                    wg,
                    (1, rows),
                    &img[h0 * rest..],
                    (lin, 1),
                    block,
                    (ncols, 1),
                );
                col2im_add(block, mg, axes, h0..h1, dst);
            }
        }
    }
    Ok(())
}

impl Eval for ConvTranspose {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, w) = (cx.input(0)?, cx.input(1)?);
        let (xs, ws) = (x.shape(), w.shape());
        if xs.len() < 3 || ws.len() != xs.len() {
            return invalid!("input {xs:?} and weight {ws:?} do not fit a transposed convolution");
        }
        if self.group < 1 {
            return invalid!("group must be positive, found {}", self.group);
        }
        let group = self.group as usize;
        if ws[0] != xs[1] || xs[1] % group != 0 {
            return invalid!("input {xs:?} and weight {ws:?} do not match for {group} groups");
        }
        let wk: Vec<i64> = ws[2..].iter().map(|&d| d as i64).collect();
        if let Some(k) = &self.kernel_shape
            && *k != wk
        {
            return invalid!("kernel_shape {k:?} differs from the weight's {wk:?}");
        }
        // The adjoint of a convolution from the output to the input.
        let axes: Vec<AxisWindow> = self
            .axes(&xs[2..], &wk)?
            .into_iter()
            .map(|t| AxisWindow {
                input: t.output,
                output: t.input,
                kernel: t.kernel,
                stride: t.stride,
                dilation: t.dilation,
                pad_begin: t.pad_begin,
                pad_end: 0,
            })
            .collect();
        let mg = ws[1];
        let mut ins = vec![x, w];
        ins.extend(cx.opt_input(2));
        one(with_floats(
            &ins,
            "ConvTranspose",
            |v| conv_transpose(v, xs, group, mg, &axes),
            |v| conv_transpose(v, xs, group, mg, &axes),
        )?)
    }
}

impl Eval for Col2Im {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let image = cx.input(1)?.to_i64_vec();
        let block = cx.input(2)?.to_i64_vec();
        if image.len() != block.len() || image.is_empty() {
            return invalid!("image_shape {image:?} and block_shape {block:?} do not match");
        }
        let xs = x.shape();
        if xs.len() != 3 {
            return invalid!("input must have rank 3, found {xs:?}");
        }
        let win = Window::new(
            &block,
            self.strides.as_deref(),
            self.dilations.as_deref(),
            self.pads.as_deref(),
            AutoPad::NotSet,
            false,
        )?;
        let image = checked_shape(&image)?;
        // Col2Im reads the image as the "input" of a convolution whose
        // output positions are the blocks.
        let axes = win.axes(&image)?;
        let taps: usize = axes.iter().map(|a| a.kernel).product();
        let blocks: usize = axes.iter().map(|a| a.output).product();
        if xs[1] % taps != 0 || xs[2] != blocks {
            return invalid!("input {xs:?} does not hold {blocks} blocks of {taps} taps");
        }
        let c = xs[1] / taps;
        let mut shape = vec![xs[0] as i64, c as i64];
        shape.extend(image.iter().map(|&d| d as i64));
        let shape = checked_shape(&shape)?;
        let plane: usize = image.iter().product();
        let v = to_f64(x, "Col2Im")?;
        let mut out = buffer::<f64>(&shape)?;
        if blocks > 0 {
            for n in 0..xs[0] {
                let cols = &v[n * xs[1] * blocks..][..xs[1] * blocks];
                let img = &mut out[n * c * plane..][..c * plane];
                col2im_add(cols, c, &axes, 0..axes[0].output, img);
            }
        }
        one(from_f64(x.dtype(), shape, out)?)
    }
}

// ---- deformable convolution ----

impl Eval for DeformConv {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, w, offset) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        let g = ConvGeom::new(x.shape(), w.shape(), &self.window_attrs())?;
        if !x.dtype().is_float() {
            return unsupported!("DeformConv on {} tensors", x.dtype());
        }
        let r = g.axes.len();
        let taps: usize = g.axes.iter().map(|a| a.kernel).product();
        let l: usize = g.axes.iter().map(|a| a.output).product();
        let og = self.offset_group;
        if og < 1 || g.channels % og as usize != 0 {
            return invalid!("offset_group {og} does not divide {} channels", g.channels);
        }
        let og = og as usize;
        let mut off_shape = vec![g.batch, og * taps * r];
        off_shape.extend(g.axes.iter().map(|a| a.output));
        if offset.shape() != off_shape.as_slice() {
            return invalid!(
                "offset has shape {:?}, expected {off_shape:?}",
                offset.shape()
            );
        }
        let mask = cx.opt_input(4);
        let mut mask_shape = vec![g.batch, og * taps];
        mask_shape.extend(g.axes.iter().map(|a| a.output));
        if let Some(m) = mask
            && m.shape() != mask_shape.as_slice()
        {
            return invalid!("mask has shape {:?}, expected {mask_shape:?}", m.shape());
        }
        let xv = x.to_f64_vec();
        let wv = w.to_f64_vec();
        let offv = offset.to_f64_vec();
        let maskv = mask.map(|m| m.to_f64_vec());
        let input: Vec<usize> = g.axes.iter().map(|a| a.input).collect();
        let in_strides = strides(&input);
        let plane: usize = input.iter().product();
        let out_dims: Vec<usize> = g.axes.iter().map(|a| a.output).collect();
        let kernel: Vec<usize> = g.axes.iter().map(|a| a.kernel).collect();
        let (cg, mg) = (g.channels / g.group, g.maps / g.group);
        let c_per_og = g.channels / og;
        let out_shape = g.out_shape()?;
        let mut out = buffer::<f64>(&out_shape)?;
        let mut cols = buffer::<f64>(&[g.channels, taps, l])?;
        // Corner offsets and weights of one sampling point.
        let mut corners: Vec<(usize, f64)> = Vec::with_capacity(1 << r);
        for n in 0..g.batch {
            for o in 0..l {
                let oi = unravel(o, &out_dims);
                for t in 0..taps {
                    let ki = unravel(t, &kernel);
                    for gi in 0..og {
                        let ch = (gi * taps + t) * r;
                        let m = maskv
                            .as_ref()
                            .map_or(1.0, |m| m[(n * og * taps + gi * taps + t) * l + o]);
                        let pos: Vec<f64> = (0..r)
                            .map(|a| {
                                let ax = &g.axes[a];
                                let base = (oi[a] * ax.stride + ki[a] * ax.dilation) as f64
                                    - ax.pad_begin as f64;
                                base + offv[((n * og * taps * r) + ch + a) * l + o]
                            })
                            .collect();
                        linear_corners(&pos, &input, &in_strides, &mut corners);
                        for c in gi * c_per_og..(gi + 1) * c_per_og {
                            let img = &xv[(n * g.channels + c) * plane..][..plane];
                            let v: f64 = corners.iter().map(|&(i, wt)| wt * img[i]).sum();
                            cols[(c * taps + t) * l + o] = v * m;
                        }
                    }
                }
            }
            for gi in 0..g.group {
                let rows = cg * taps;
                let wg = &wv[gi * mg * rows..][..mg * rows];
                let block = &cols[gi * rows * l..][..rows * l];
                let dst = &mut out[(n * g.maps + gi * mg) * l..][..mg * l];
                f64::gemm(mg, rows, l, wg, (rows, 1), block, (l, 1), dst, (l, 1));
            }
        }
        if let Some(b) = cx.opt_input(3) {
            add_bias(&mut out, g.maps, g.plane(), &b.to_f64_vec())?;
        }
        one(from_f64(x.dtype(), out_shape, out)?)
    }
}

/// The in-range corners of an N-linear interpolation at `pos` with their
/// weights (corners outside the input read zeros and are left out).
fn linear_corners(pos: &[f64], dims: &[usize], st: &[usize], out: &mut Vec<(usize, f64)>) {
    out.clear();
    let r = pos.len();
    if pos.iter().any(|p| !p.is_finite()) {
        return;
    }
    for corner in 0..1usize << r {
        let mut off = 0usize;
        let mut wt = 1.0;
        let mut inside = true;
        for a in 0..r {
            let f = pos[a].floor();
            let frac = pos[a] - f;
            let hi = (corner >> (r - 1 - a)) & 1 == 1;
            let i = f + hi as u8 as f64;
            wt *= if hi { frac } else { 1.0 - frac };
            if i < 0.0 || i >= dims[a] as f64 {
                inside = false;
                break;
            }
            off += i as usize * st[a];
        }
        if inside && wt != 0.0 {
            out.push((off, wt));
        }
    }
}

// ---- pooling ----

/// The taps of every pooling window, per axis.
struct PoolTaps {
    axes: Vec<AxisWindow>,
    in_strides: Vec<usize>,
    /// Per axis and output index: first in-range input position, how many
    /// taps are in range, and how many lie within input plus pads.
    ranges: Vec<Vec<(usize, usize, usize)>>,
}

impl PoolTaps {
    fn new(axes: Vec<AxisWindow>) -> PoolTaps {
        let input: Vec<usize> = axes.iter().map(|a| a.input).collect();
        let ranges = axes
            .iter()
            .map(|a| {
                (0..a.output)
                    .map(|o| {
                        let start = (o * a.stride) as i64 - a.pad_begin;
                        let d = a.dilation as i64;
                        let k = a.kernel as i64;
                        let first_k = if start >= 0 { 0 } else { (-start + d - 1) / d };
                        // Taps k with start + k*d < limit.
                        let below = |limit: i64| {
                            if limit <= start {
                                0
                            } else {
                                ((limit - start + d - 1) / d).min(k)
                            }
                        };
                        let end_k = below(a.input as i64);
                        let count = (end_k - first_k).max(0) as usize;
                        let first = (start + first_k * d).max(0) as usize;
                        let padded = below(a.input as i64 + a.pad_end as i64) as usize;
                        (first, count, padded)
                    })
                    .collect()
            })
            .collect();
        PoolTaps {
            in_strides: strides(&input),
            axes,
            ranges,
        }
    }

    fn out_dims(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.output).collect()
    }

    fn in_plane(&self) -> usize {
        self.axes.iter().map(|a| a.input).product()
    }

    /// Calls `f` for each output position (in row-major order) with its
    /// multi-index.
    fn for_each_output(&self, mut f: impl FnMut(&[usize])) {
        let dims = self.out_dims();
        if dims.contains(&0) {
            return;
        }
        let mut idx = vec![0usize; dims.len()];
        loop {
            f(&idx);
            let mut a = dims.len();
            loop {
                if a == 0 {
                    return;
                }
                a -= 1;
                idx[a] += 1;
                if idx[a] < dims[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
    }

    /// Calls `f` with the plane offset of each in-range tap of output `o`.
    fn taps(&self, o: &[usize], f: &mut impl FnMut(usize)) {
        self.rec(0, 0, o, f);
    }

    fn rec(&self, a: usize, base: usize, o: &[usize], f: &mut impl FnMut(usize)) {
        let (first, count, _) = self.ranges[a][o[a]];
        let step = self.axes[a].dilation * self.in_strides[a];
        let mut off = base + first * self.in_strides[a];
        for _ in 0..count {
            if a + 1 == self.axes.len() {
                f(off);
            } else {
                self.rec(a + 1, off, o, f);
            }
            off += step;
        }
    }

    /// Taps of output `o` in range, and within the input plus its pads.
    fn counts(&self, o: &[usize]) -> (usize, usize) {
        o.iter().enumerate().fold((1, 1), |(c, p), (a, &i)| {
            let (_, count, padded) = self.ranges[a][i];
            (c * count, p * padded)
        })
    }
}

/// The `[N, C, spatial...]` split of a pooled input.
fn pool_setup(x: &Tensor, win: &Window) -> Result<(usize, PoolTaps), OpError> {
    let xs = x.shape();
    if xs.len() != win.rank() + 2 {
        return invalid!(
            "input of shape {xs:?} does not fit a {}-D window",
            win.rank()
        );
    }
    let axes = win.axes(&xs[2..])?;
    let mut shape = vec![xs[0] as i64, xs[1] as i64];
    shape.extend(axes.iter().map(|a| a.output as i64));
    checked_shape(&shape)?;
    Ok((xs[0] * xs[1], PoolTaps::new(axes)))
}

fn pooled_shape(x: &Tensor, taps: &PoolTaps) -> Vec<usize> {
    let mut s = x.shape()[..2].to_vec();
    s.extend(taps.out_dims());
    s
}

/// Average or Lp pooling in f64: `reduce(sum over taps of g(x), in-range
/// count, padded count)`.
fn pool_f64(
    x: &Tensor,
    taps: &PoolTaps,
    planes: usize,
    g: impl Fn(f64) -> f64,
    finish: impl Fn(f64, usize, usize) -> f64,
    what: &str,
) -> Result<Tensor, OpError> {
    let v = to_f64(x, what)?;
    let in_plane = taps.in_plane();
    let mut out = Vec::with_capacity(planes * taps.out_dims().iter().product::<usize>());
    for p in 0..planes {
        let img = &v[p * in_plane..][..in_plane];
        taps.for_each_output(|o| {
            let mut s = 0.0;
            taps.taps(o, &mut |i| s += g(img[i]));
            let (c, padded) = taps.counts(o);
            out.push(finish(s, c, padded));
        });
    }
    from_f64(x.dtype(), pooled_shape(x, taps), out)
}

impl Eval for AveragePool {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let win = self.window_attrs().window(&self.kernel_shape)?;
        let (planes, taps) = pool_setup(x, &win)?;
        let include = self.count_include_pad;
        one(pool_f64(
            x,
            &taps,
            planes,
            |v| v,
            |s, c, padded| s / if include { padded } else { c } as f64,
            "AveragePool",
        )?)
    }
}

fn lp_power(p: i64) -> Result<f64, OpError> {
    if p < 1 {
        return invalid!("p must be positive, found {p}");
    }
    Ok(p as f64)
}

fn lp_term(p: f64) -> impl Fn(f64) -> f64 {
    move |v: f64| {
        if p == 2.0 { v * v } else { v.abs().powf(p) }
    }
}

impl Eval for LpPool {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let p = lp_power(self.p)?;
        let win = self.window_attrs().window(&self.kernel_shape)?;
        let (planes, taps) = pool_setup(x, &win)?;
        one(pool_f64(
            x,
            &taps,
            planes,
            lp_term(p),
            |s, _, _| s.powf(1.0 / p),
            "LpPool",
        )?)
    }
}

/// Max pooling of one typed plane set; NaNs are skipped unless a window
/// holds nothing else. Returns values and the flat input index of each.
fn max_pool_typed<T: Copy + PartialOrd + Default>(
    v: &[T],
    taps: &PoolTaps,
    planes: usize,
) -> (Vec<T>, Vec<i64>) {
    let in_plane = taps.in_plane();
    let n = planes * taps.out_dims().iter().product::<usize>();
    let (mut out, mut idx) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for p in 0..planes {
        let img = &v[p * in_plane..][..in_plane];
        taps.for_each_output(|o| {
            let mut best: Option<(T, usize)> = None;
            taps.taps(o, &mut |i| {
                let x = img[i];
                #[allow(clippy::eq_op)]
                let is_nan = x != x;
                match best {
                    None => best = Some((x, i)),
                    Some((b, _)) => {
                        #[allow(clippy::eq_op)]
                        let b_nan = b != b;
                        if !is_nan && (b_nan || x > b) {
                            best = Some((x, i));
                        }
                    }
                }
            });
            match best {
                Some((b, i)) => {
                    out.push(b);
                    idx.push((p * in_plane + i) as i64);
                }
                None => {
                    out.push(T::default());
                    idx.push(-1);
                }
            }
        });
    }
    (out, idx)
}

/// Converts row-major flat input indices to column-major order over the
/// spatial axes (storage_order = 1); the plane stays row-major.
fn column_major(idx: &mut [i64], spatial: &[usize]) {
    let plane: usize = spatial.iter().product();
    if plane == 0 {
        return;
    }
    for i in idx.iter_mut().filter(|i| **i >= 0) {
        let (p, within) = (*i as usize / plane, *i as usize % plane);
        let m = unravel(within, spatial);
        let mut off = 0;
        let mut stride = 1;
        for (a, &d) in spatial.iter().enumerate() {
            off += m[a] * stride;
            stride *= d;
        }
        *i = (p * plane + off) as i64;
    }
}

impl Eval for MaxPool {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let win = self.window_attrs().window(&self.kernel_shape)?;
        let (planes, taps) = pool_setup(x, &win)?;
        let shape = pooled_shape(x, &taps);
        macro_rules! go {
            ($($var:ident),*) => {
                match x.data() {
                    $(Data::$var(v) => {
                        let (o, i) = max_pool_typed(v, &taps, planes);
                        (Tensor::from_vec(shape.clone(), o), i)
                    })*
                    _ => return unsupported!("MaxPool on {} tensors", x.dtype()),
                }
            };
        }
        let (y, mut idx) = go!(F32, F64, F16, BF16, I8, U8, I16, U16, I32, I64, U32, U64);
        if cx.num_outputs < 2 {
            return one(y);
        }
        if self.storage_order == 1 {
            column_major(&mut idx, &x.shape()[2..]);
        }
        Ok(vec![y, Tensor::from_vec(shape, idx)])
    }
}

/// `[N, C, 1, ..., 1]` and the plane size of a global pool's input.
fn global_setup(x: &Tensor) -> Result<(Vec<usize>, usize, usize), OpError> {
    let xs = x.shape();
    if xs.len() < 3 {
        return invalid!("input must have rank 3 or more, found {xs:?}");
    }
    let mut shape = xs[..2].to_vec();
    shape.extend(vec![1; xs.len() - 2]);
    Ok((shape, xs[0] * xs[1], xs[2..].iter().product()))
}

fn global_f64(x: &Tensor, what: &str, f: impl Fn(&[f64]) -> f64) -> Result<Tensor, OpError> {
    let (shape, planes, plane) = global_setup(x)?;
    let v = to_f64(x, what)?;
    let out = (0..planes).map(|p| f(&v[p * plane..][..plane])).collect();
    from_f64(x.dtype(), shape, out)
}

impl Eval for GlobalAveragePool {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        if !x.dtype().is_float() {
            return unsupported!("GlobalAveragePool on {} tensors", x.dtype());
        }
        one(global_f64(x, "GlobalAveragePool", |p| {
            p.iter().sum::<f64>() / p.len() as f64
        })?)
    }
}

impl Eval for GlobalLpPool {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        if !x.dtype().is_float() {
            return unsupported!("GlobalLpPool on {} tensors", x.dtype());
        }
        let p = lp_power(self.p)?;
        let term = lp_term(p);
        one(global_f64(x, "GlobalLpPool", |v| {
            v.iter().map(|&x| term(x)).sum::<f64>().powf(1.0 / p)
        })?)
    }
}

impl Eval for GlobalMaxPool {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let (shape, planes, plane) = global_setup(x)?;
        if plane == 0 {
            return invalid!("GlobalMaxPool of an empty plane");
        }
        fn max_of<T: Copy + PartialOrd>(v: &[T]) -> T {
            let mut best = v[0];
            for &x in &v[1..] {
                // NaN propagates: a NaN best stays, a NaN x replaces.
                #[allow(clippy::eq_op)]
                if x != x || x > best {
                    best = x;
                }
            }
            best
        }
        macro_rules! go {
            ($($var:ident),*) => {
                match x.data() {
                    $(Data::$var(v) => Tensor::from_vec(
                        shape,
                        (0..planes).map(|p| max_of(&v[p * plane..][..plane])).collect(),
                    ),)*
                    _ => return unsupported!("GlobalMaxPool on {} tensors", x.dtype()),
                }
            };
        }
        one(go!(
            F32, F64, F16, BF16, I8, U8, I16, U16, I32, I64, U32, U64
        ))
    }
}

impl Eval for MaxUnpool {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, ind) = (cx.input(0)?, cx.input(1)?);
        let xs = x.shape();
        if xs.len() < 3 || ind.shape() != xs {
            return invalid!("input {xs:?} and indices {:?} do not match", ind.shape());
        }
        // Indices address the default unpooled shape; an explicit
        // output_shape then pads (or crops) it at the end of each axis.
        let dims: Vec<crate::shape::Dim> = xs[2..]
            .iter()
            .map(|&d| crate::shape::Dim::Known(d as u64))
            .collect();
        let mut full = vec![xs[0] as i64, xs[1] as i64];
        for d in self.default_extents(&dims)? {
            full.push(d.known().unwrap_or(0) as i64);
        }
        let full = checked_shape(&full)?;
        let n: usize = full.iter().product();
        let v = to_f64(x, "MaxUnpool")?;
        let mut out = buffer::<f64>(&[n])?;
        for (&val, i) in v.iter().zip(ind.to_i64_vec()) {
            if i < 0 || i as usize >= n {
                return invalid!("index {i} is out of range for the unpooled shape {full:?}");
            }
            out[i as usize] = val;
        }
        let Some(s) = cx.opt_input(2) else {
            return one(from_f64(x.dtype(), full, out)?);
        };
        let shape = checked_shape(&s.to_i64_vec())?;
        if shape.len() != xs.len() || shape[..2] != xs[..2] {
            return invalid!("output_shape {shape:?} does not fit input {xs:?}");
        }
        let mut placed = buffer::<f64>(&shape)?;
        let st = strides(&shape);
        for (i, &val) in out.iter().enumerate() {
            let m = unravel(i, &full);
            if m.iter().zip(&shape).all(|(a, b)| a < b) {
                placed[m.iter().zip(&st).map(|(a, s)| a * s).sum::<usize>()] = val;
            }
        }
        one(from_f64(x.dtype(), shape, placed)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::eval_op;
    use crate::shape::TensorType;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    fn run(op: impl Into<Op>, inputs: &[&Tensor]) -> Vec<Tensor> {
        let op = op.into();
        let ins: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        let n = (*op.output_arity().end()).min(2);
        let types = vec![TensorType::unknown_rank(DType::F32); n];
        eval_op(&op, &ins, &types).unwrap()
    }

    fn conv(pads: Option<Vec<i64>>, strides: Option<Vec<i64>>) -> Conv {
        Conv {
            auto_pad: AutoPad::NotSet,
            dilations: None,
            group: 1,
            kernel_shape: None,
            pads,
            strides,
        }
    }

    #[test]
    fn conv_2d_with_padding_and_stride() {
        // 3×3 input 1..9, 2×2 kernel of ones, pad 1 on every side, stride 2:
        // windows start at -1 and 1 along each axis.
        let x = t(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let w = t(&[1, 1, 2, 2], &[1.; 4]);
        let y = &run(conv(Some(vec![1; 4]), Some(vec![2, 2])), &[&x, &w])[0];
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        // (-1,-1): just 1; (-1,1): 2+3; (1,-1): 4+7; (1,1): 5+6+8+9.
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1., 5., 11., 28.]);
    }

    #[test]
    fn grouped_conv_with_bias_in_f64() {
        // Two groups of one channel; each output channel sees only its own.
        let x = Tensor::from_vec(vec![1, 2, 1, 2], vec![1.0f64, 2., 10., 20.]);
        let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![3.0f64, -1.]);
        let b = Tensor::from_vec(vec![2], vec![0.5f64, 1.]);
        let mut op = conv(None, None);
        op.group = 2;
        let y = &run(op, &[&x, &w, &b])[0];
        assert_eq!(y.as_slice::<f64>().unwrap(), &[3.5, 6.5, -9., -19.]);
    }

    #[test]
    fn bias_follows_the_channel_in_every_image() {
        // Two images of one pixel, two 1×1 filters (×1, ×2), bias 10 / 20.
        let x = t(&[2, 1, 1, 1], &[1., 3.]);
        let w = t(&[2, 1, 1, 1], &[1., 2.]);
        let b = t(&[2], &[10., 20.]);
        let y = &run(conv(None, None), &[&x, &w, &b])[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[11., 22., 13., 26.]);
    }

    #[test]
    fn same_lower_pads_at_the_start() {
        let win = Window::new(&[2], Some(&[1]), None, None, AutoPad::SameLower, false).unwrap();
        let a = win.axis(0, 4).unwrap();
        assert_eq!((a.output, a.pad_begin, a.pad_end), (4, 1, 0));
        let win = Window::new(&[2], Some(&[1]), None, None, AutoPad::SameUpper, false).unwrap();
        let a = win.axis(0, 4).unwrap();
        assert_eq!((a.output, a.pad_begin, a.pad_end), (4, 0, 1));
    }

    #[test]
    fn ceil_mode_drops_windows_starting_in_the_end_padding() {
        // in 5, kernel 2, stride 2, pads 0/1: ceil((6-2)/2)+1 = 3 windows,
        // starting at 0, 2, 4 (inside the input).
        let win =
            Window::new(&[2], Some(&[2]), None, Some(&[0, 1]), AutoPad::NotSet, true).unwrap();
        assert_eq!(win.axis(0, 5).unwrap().output, 3);
        // in 4, kernel 2, stride 2, pads 1/1: ceil(4/2)+1 = 3 windows
        // starting at -1, 1, 3, all before in + pad_begin.
        let win =
            Window::new(&[2], Some(&[2]), None, Some(&[1, 1]), AutoPad::NotSet, true).unwrap();
        assert_eq!(win.axis(0, 4).unwrap().output, 3);
        // in 3, kernel 1, stride 2, pads 0/2: ceil(4/2)+1 = 3, the last would
        // start at 4 ≥ 3 + 0, so 2 windows.
        let win =
            Window::new(&[1], Some(&[2]), None, Some(&[0, 2]), AutoPad::NotSet, true).unwrap();
        assert_eq!(win.axis(0, 3).unwrap().output, 2);
    }

    #[test]
    fn average_pool_counts_pads_only_when_asked() {
        let x = t(&[1, 1, 2], &[2., 4.]);
        let mut op = AveragePool {
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            count_include_pad: false,
            dilations: None,
            kernel_shape: vec![2],
            pads: Some(vec![1, 1]),
            strides: None,
        };
        let y = &run(op.clone(), &[&x])[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2., 3., 4.]);
        op.count_include_pad = true;
        let y = &run(op, &[&x])[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1., 3., 2.]);
    }

    #[test]
    fn max_pool_indices_in_both_storage_orders() {
        // 2×3 plane; a 2×2 window at stride 1 gives two outputs.
        let x = t(&[1, 1, 2, 3], &[1., 9., 2., 3., 4., 8.]);
        let mut op = MaxPool {
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            dilations: None,
            kernel_shape: vec![2, 2],
            pads: None,
            storage_order: 0,
            strides: None,
        };
        let ys = run(op.clone(), &[&x]);
        assert_eq!(ys[0].as_slice::<f32>().unwrap(), &[9., 9.]);
        assert_eq!(ys[1].as_slice::<i64>().unwrap(), &[1, 1]);
        op.storage_order = 1;
        // Element (0, 1) is at 0 + 1 * 2 in column-major order.
        assert_eq!(run(op, &[&x])[1].as_slice::<i64>().unwrap(), &[2, 2]);
    }

    #[test]
    fn conv_transpose_is_the_adjoint_of_conv() {
        // in [1, 2], kernel [1, 10], stride 2: out[2i + k] += x[i] w[k].
        let x = t(&[1, 1, 2], &[1., 2.]);
        let w = t(&[1, 1, 2], &[1., 10.]);
        let op = ConvTranspose {
            auto_pad: AutoPad::NotSet,
            dilations: None,
            group: 1,
            kernel_shape: None,
            output_padding: None,
            output_shape: None,
            pads: None,
            strides: Some(vec![2]),
        };
        let y = &run(op.clone(), &[&x, &w])[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1., 10., 2., 20.]);
        let mut op6 = op;
        op6.output_shape = Some(vec![6]);
        let y = &run(op6, &[&x, &w])[0];
        // total = 4 - 6 = -2: begin = -2 - (-1) = -1, so outputs shift right.
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0., 1., 10., 2., 20., 0.]);
    }

    #[test]
    fn lp_pool_sums_powers() {
        let x = t(&[1, 1, 2], &[3., -4.]);
        let op = LpPool {
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            dilations: None,
            kernel_shape: vec![2],
            p: 2,
            pads: None,
            strides: None,
        };
        assert_eq!(run(op, &[&x])[0].as_slice::<f32>().unwrap(), &[5.]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = t(&[1, 2, 3, 3], &[0.; 18]);
        let w = t(&[1, 1, 2, 2], &[0.; 4]);
        let op: Op = conv(None, None).into();
        let types = vec![TensorType::unknown_rank(DType::F32)];
        assert!(eval_op(&op, &[Some(&x), Some(&w)], &types).is_err());
        let big = t(&[1, 1, 5, 5], &[0.; 25]);
        let op: Op = conv(None, None).into();
        assert!(eval_op(&op, &[Some(&x.clone()), Some(&big)], &types).is_err());
    }

    #[test]
    fn hostile_attributes_are_errors_not_panics() {
        let x = t(&[1, 1, 4, 4], &[1.; 16]);
        let w = t(&[1, 1, 2, 2], &[1.; 4]);
        let types = vec![TensorType::unknown_rank(DType::F32); 2];
        let eval = |op: Op, ins: &[&Tensor]| {
            let ins: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
            eval_op(&op, &ins, &types)
        };
        for pads in [vec![i64::MAX; 4], vec![-1; 4], vec![0; 3]] {
            assert!(eval(conv(Some(pads), None).into(), &[&x, &w]).is_err());
        }
        // A large stride is fine (one window); zero or absurd ones are not.
        for (stride, ok) in [(1 << 40, true), (i64::MAX, false), (0, false)] {
            let r = eval(conv(None, Some(vec![stride, 1])).into(), &[&x, &w]);
            assert_eq!(r.is_ok(), ok, "stride {stride}");
        }
        let mut op = conv(None, None);
        op.dilations = Some(vec![i64::MAX, i64::MAX]);
        assert!(eval(op.into(), &[&x, &w]).is_err());
        let ct = ConvTranspose {
            auto_pad: AutoPad::NotSet,
            dilations: None,
            group: 1,
            kernel_shape: None,
            output_padding: None,
            output_shape: Some(vec![i64::MAX, 3]),
            pads: None,
            strides: Some(vec![1 << 40, 1]),
        };
        assert!(eval(ct.into(), &[&x, &w]).is_err());
        let pool = MaxPool {
            auto_pad: AutoPad::NotSet,
            ceil_mode: true,
            dilations: None,
            kernel_shape: vec![2, 2],
            pads: Some(vec![0, 0, 1 << 40, 0]),
            storage_order: 0,
            strides: Some(vec![i64::MAX, 1]),
        };
        assert!(eval(pool.into(), &[&x]).is_err());
        let unpool = MaxUnpool {
            kernel_shape: vec![2, 2],
            pads: None,
            strides: Some(vec![1 << 40, 1 << 40]),
        };
        let idx = Tensor::from_vec(vec![1, 1, 4, 4], vec![0i64; 16]);
        assert!(eval(unpool.into(), &[&x, &idx]).is_err());
    }
}
