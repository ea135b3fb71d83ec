//! Image and geometry ops: resize, grid sampling, ROI align, NMS.
//!
//! Everything is computed in f64 and rounded to the output type at the end.
//! Resize is separable: each resized axis becomes a list of (input index,
//! weight) taps per output index, applied one axis after another.

use super::kernels::*;
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::ops::*;
use crate::tensor::{Tensor, strides};
use crate::{invalid, unsupported};

fn one(t: Tensor) -> Result<Vec<Tensor>, OpError> {
    Ok(vec![t])
}

/// A float result in `dtype`; integer types round half to even and
/// saturate, as Resize's reference does.
fn result(dtype: DType, shape: Vec<usize>, mut v: Vec<f64>) -> Result<Tensor, OpError> {
    if dtype.is_int() {
        let (lo, hi) = int_range(dtype);
        v.iter_mut()
            .for_each(|x| *x = x.round_ties_even().clamp(lo, hi));
    }
    from_f64(dtype, shape, v)
}

fn int_range(d: DType) -> (f64, f64) {
    let bits = d.bits() as i32;
    if d.is_signed_int() {
        (-(2f64.powi(bits - 1)), 2f64.powi(bits - 1) - 1.0)
    } else {
        (0.0, 2f64.powi(bits) - 1.0)
    }
}

// ---- Resize ----

/// The Keys cubic convolution kernel with parameter `a`.
fn cubic(a: f64, t: f64) -> f64 {
    let t = t.abs();
    if t <= 1.0 {
        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    } else {
        0.0
    }
}

/// The region of interest of one axis for tf_crop_and_resize, in input
/// coordinates: `origin = start * (length - 1)`, computed in the roi's
/// own precision as ONNX implementations do (so a crop that starts on a
/// pixel picks exactly that pixel).
#[derive(Clone, Copy, PartialEq)]
struct Roi {
    start: f64,
    end: f64,
    origin: f64,
}

impl Roi {
    const FULL: Roi = Roi {
        start: 0.0,
        end: 1.0,
        origin: 0.0,
    };
}

/// Interpolation taps of one resized axis: `n` (index, weight) pairs per
/// output index, or none for outputs that take the extrapolation value.
struct AxisTaps {
    n: usize,
    taps: Vec<(usize, f64)>,
    extrapolated: Vec<bool>,
}

impl Resize {
    /// Source coordinate of output index `y`, or `None` to extrapolate.
    /// As in ONNX, the resized length in the formulas is `scale * input`,
    /// which may be fractional, while `output` is the integral extent.
    fn source(&self, y: usize, input: usize, output: usize, scale: f64, roi: Roi) -> Option<f64> {
        let (y, inp) = (y as f64, input as f64);
        let resized = scale * inp;
        Some(match self.coordinate_transformation_mode {
            CoordinateTransform::HalfPixel => (y + 0.5) / scale - 0.5,
            CoordinateTransform::HalfPixelSymmetric => {
                let adjustment = output as f64 / resized;
                let offset = inp / 2.0 * (1.0 - adjustment);
                offset + (y + 0.5) / scale - 0.5
            }
            CoordinateTransform::PytorchHalfPixel => {
                if resized > 1.0 {
                    (y + 0.5) / scale - 0.5
                } else {
                    0.0
                }
            }
            CoordinateTransform::AlignCorners => {
                if resized == 1.0 {
                    0.0
                } else {
                    y * (inp - 1.0) / (resized - 1.0)
                }
            }
            CoordinateTransform::Asymmetric => y / scale,
            CoordinateTransform::TfCropAndResize => {
                let x = if resized > 1.0 {
                    roi.origin + y * (roi.end - roi.start) * (inp - 1.0) / (resized - 1.0)
                } else {
                    0.5 * (roi.start + roi.end) * (inp - 1.0)
                };
                if !(0.0..=inp - 1.0).contains(&x) {
                    return None;
                }
                x
            }
        })
    }

    fn axis_taps(
        &self,
        input: usize,
        output: usize,
        scale: f64,
        roi: Roi,
    ) -> Result<AxisTaps, OpError> {
        // Kernel width: the antialiased filters stretch by 1/scale when
        // downsampling.
        let s = if self.antialias && self.mode != ResizeMode::Nearest {
            scale.min(1.0)
        } else {
            1.0
        };
        let (n, first) = match self.mode {
            ResizeMode::Nearest => (1, 0i64),
            ResizeMode::Linear | ResizeMode::Cubic => {
                let support = if self.mode == ResizeMode::Linear {
                    1.0
                } else {
                    2.0
                };
                let first = (-support / s).floor() + 1.0;
                if first < -(1 << 20) as f64 {
                    return unsupported!("Resize with antialias at scale {scale}");
                }
                ((2.0 - 2.0 * first) as usize, first as i64)
            }
        };
        checked_shape(&[output as i64, n as i64])?;
        let a = self.cubic_coeff_a as f64;
        let mut taps = Vec::with_capacity(output * n);
        let mut extrapolated = Vec::with_capacity(output);
        let mut w = vec![0.0; n];
        let mut idx = vec![0i64; n];
        for y in 0..output {
            let source = self.source(y, input, output, scale, roi);
            extrapolated.push(source.is_none());
            let Some(x) = source else {
                taps.extend(std::iter::repeat_n((0, 0.0), n));
                continue;
            };
            let x = if x.is_finite() {
                x.clamp(-1e15, 1e15)
            } else {
                0.0
            };
            let fl = x.floor();
            // An integral x is read as the right end of [x - 1, x].
            let (base, ratio) = if fl == x {
                (fl as i64 - 1, 1.0)
            } else {
                (fl as i64, x - fl)
            };
            match self.mode {
                ResizeMode::Nearest => {
                    let up = match self.nearest_mode {
                        _ if ratio == 1.0 => true,
                        NearestMode::RoundPreferFloor => ratio > 0.5,
                        NearestMode::RoundPreferCeil => ratio >= 0.5,
                        NearestMode::Floor => false,
                        NearestMode::Ceil => true,
                    };
                    idx[0] = base + up as i64;
                    w[0] = 1.0;
                }
                ResizeMode::Linear | ResizeMode::Cubic => {
                    for j in 0..n {
                        let i = first + j as i64;
                        let t = (i as f64 - ratio) * s;
                        idx[j] = base + i;
                        w[j] = if self.mode == ResizeMode::Linear {
                            (1.0 - t.abs()).max(0.0)
                        } else {
                            cubic(a, t)
                        };
                    }
                    if self.antialias {
                        let sum: f64 = w.iter().sum();
                        w.iter_mut().for_each(|v| *v /= sum);
                    }
                }
            }
            if self.exclude_outside {
                for j in 0..n {
                    if idx[j] < 0 || idx[j] >= input as i64 {
                        w[j] = 0.0;
                    }
                }
                let sum: f64 = w.iter().sum();
                if sum != 0.0 {
                    w.iter_mut().for_each(|v| *v /= sum);
                }
            }
            for j in 0..n {
                taps.push((idx[j].clamp(0, input as i64 - 1) as usize, w[j]));
            }
        }
        Ok(AxisTaps {
            n,
            taps,
            extrapolated,
        })
    }
}

/// Resamples `v` (of `shape`) along `axis` to `taps.extrapolated.len()`
/// outputs.
fn apply_axis(v: &[f64], shape: &[usize], axis: usize, taps: &AxisTaps, fill: f64) -> Vec<f64> {
    let (outer, _, inner) = split_at_axis(shape, axis);
    let input = shape[axis];
    let output = taps.extrapolated.len();
    let mut out = vec![0.0; outer * output * inner];
    for o in 0..outer {
        let src = &v[o * input * inner..][..input * inner];
        for y in 0..output {
            let dst = &mut out[(o * output + y) * inner..][..inner];
            if taps.extrapolated[y] {
                dst.fill(fill);
                continue;
            }
            for &(i, w) in &taps.taps[y * taps.n..][..taps.n] {
                let row = &src[i * inner..][..inner];
                for (d, &s) in dst.iter_mut().zip(row) {
                    *d += w * s;
                }
            }
        }
    }
    out
}

/// An optional input that may also be given as an empty tensor.
fn given<'a>(cx: &EvalCx<'a>, i: usize) -> Option<&'a Tensor> {
    cx.opt_input(i).filter(|t| t.numel() > 0)
}

impl Eval for Resize {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        if !(x.dtype().is_float() || x.dtype().is_int()) || x.dtype().is_packed() {
            return unsupported!("Resize on {} tensors", x.dtype());
        }
        let rank = x.rank();
        let target = match (given(cx, 2), given(cx, 3)) {
            (Some(_), Some(_)) => return invalid!("Resize takes scales or sizes, not both"),
            (Some(s), None) => ResizeTarget::Scales(s.to_f64_vec()),
            (None, Some(s)) => ResizeTarget::Sizes(s.to_i64_vec()),
            (None, None) => return invalid!("Resize needs scales or sizes"),
        };
        let input: Vec<Option<u64>> = x.shape().iter().map(|&d| Some(d as u64)).collect();
        let plan = self.plan(&input, &target)?;
        let out_shape: Vec<i64> = plan.iter().map(|p| p.output.unwrap_or(0) as i64).collect();
        let out_shape = checked_shape(&out_shape)?;
        let axes = self.resize_axes(rank)?;
        // Per-axis region of interest, for tf_crop_and_resize.
        let mut roi = vec![Roi::FULL; rank];
        if self.coordinate_transformation_mode == CoordinateTransform::TfCropAndResize {
            let Some(r) = given(cx, 1) else {
                return invalid!("tf_crop_and_resize needs a roi");
            };
            let single = r.dtype() == DType::F32;
            let r = r.to_f64_vec();
            if r.len() != 2 * axes.len() {
                return invalid!("roi has {} values for {} axes", r.len(), axes.len());
            }
            for (j, &a) in axes.iter().enumerate() {
                let (start, last) = (r[j], x.shape()[a] as f64 - 1.0);
                let origin = if single {
                    (start as f32 * last as f32) as f64
                } else {
                    start * last
                };
                roi[a] = Roi {
                    start,
                    end: r[axes.len() + j],
                    origin,
                };
            }
        }
        let mut v = to_f64(x, "Resize")?;
        let mut shape = x.shape().to_vec();
        for a in 0..rank {
            let (input, output) = (shape[a], out_shape[a]);
            let scale = plan[a].scale.unwrap_or(1.0);
            let tf = self.coordinate_transformation_mode == CoordinateTransform::TfCropAndResize;
            if input == output && scale == 1.0 && (!tf || roi[a] == Roi::FULL) {
                continue;
            }
            let next: Vec<i64> = shape
                .iter()
                .enumerate()
                .map(|(i, &d)| if i == a { output } else { d } as i64)
                .collect();
            let next: usize = checked_shape(&next)?.iter().product();
            if input == 0 {
                if next > 0 {
                    return invalid!("cannot resize an empty axis to {output}");
                }
                shape[a] = output;
                v.clear();
                continue;
            }
            let taps = self.axis_taps(input, output, scale, roi[a])?;
            v = apply_axis(&v, &shape, a, &taps, self.extrapolation_value as f64);
            shape[a] = output;
        }
        one(result(x.dtype(), shape, v)?)
    }
}

// ---- GridSample ----

/// Reflects `x` into `[lo, hi]` by folding at the borders.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    if x < lo {
        let d = lo - x;
        let n = (d / range).floor();
        let r = d - n * range;
        if n % 2.0 == 0.0 { lo + r } else { hi - r }
    } else if x > hi {
        let d = x - hi;
        let n = (d / range).floor();
        let r = d - n * range;
        if n % 2.0 == 0.0 { hi - r } else { lo + r }
    } else {
        x
    }
}

/// How grid sampling reads one axis of extent `size`.
struct SampleAxis {
    size: usize,
    lo: f64,
    hi: f64,
    padding: GridPaddingMode,
}

impl SampleAxis {
    /// The input index read at integral position `i`; `None` reads zero.
    fn pixel(&self, i: f64) -> Option<usize> {
        if self.size == 0 {
            return None;
        }
        let last = self.size as f64 - 1.0;
        let i = match self.padding {
            GridPaddingMode::Zeros => {
                if i < 0.0 || i > last {
                    return None;
                }
                i
            }
            GridPaddingMode::Border => i.clamp(0.0, last),
            GridPaddingMode::Reflection => reflect(i, self.lo, self.hi).trunc().clamp(0.0, last),
        };
        Some(i as usize)
    }

    /// Moves an out-of-border coordinate inside for border and reflection
    /// padding.
    fn fold(&self, x: f64) -> f64 {
        if x >= self.lo && x <= self.hi {
            return x;
        }
        match self.padding {
            GridPaddingMode::Zeros => x,
            GridPaddingMode::Border => x.clamp(0.0, (self.size as f64 - 1.0).max(0.0)),
            GridPaddingMode::Reflection => reflect(x, self.lo, self.hi),
        }
    }
}

impl Eval for GridSample {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, grid) = (cx.input(0)?, cx.input(1)?);
        let (xs, gs) = (x.shape(), grid.shape());
        if xs.len() < 3
            || gs.len() != xs.len()
            || gs[0] != xs[0]
            || gs[gs.len() - 1] != xs.len() - 2
        {
            return invalid!("input {xs:?} and grid {gs:?} do not match");
        }
        if !x.dtype().is_float() && !x.dtype().is_int() {
            return unsupported!("GridSample on {} tensors", x.dtype());
        }
        let r = xs.len() - 2;
        let (n, c) = (xs[0], xs[1]);
        let spatial = &xs[2..];
        let in_strides = strides(spatial);
        let plane: usize = spatial.iter().product();
        let points: usize = gs[1..gs.len() - 1].iter().product();
        let axes: Vec<SampleAxis> = spatial
            .iter()
            .map(|&size| {
                let (lo, hi) = if self.align_corners {
                    (0.0, size as f64 - 1.0)
                } else {
                    (-0.5, size as f64 - 0.5)
                };
                SampleAxis {
                    size,
                    lo,
                    hi,
                    padding: self.padding_mode,
                }
            })
            .collect();
        let xv = to_f64(x, "GridSample")?;
        let gv = grid.to_f64_vec();
        let mut shape = vec![n as i64, c as i64];
        shape.extend(gs[1..gs.len() - 1].iter().map(|&d| d as i64));
        let shape = checked_shape(&shape)?;
        let mut out = vec![0.0; shape.iter().product()];
        // Per axis: (input index or zero, weight) taps of the current point.
        let mut taps: Vec<Vec<(Option<usize>, f64)>> = vec![Vec::new(); r];
        let mut corners: Vec<(usize, f64)> = Vec::new();
        for b in 0..n {
            for p in 0..points {
                let coords = &gv[(b * points + p) * r..][..r];
                for (a, ax) in axes.iter().enumerate() {
                    // The grid lists coordinates innermost axis first.
                    let g = coords[r - 1 - a];
                    let size = ax.size as f64;
                    let mut pos = if self.align_corners {
                        (g + 1.0) / 2.0 * (size - 1.0)
                    } else {
                        ((g + 1.0) * size - 1.0) / 2.0
                    };
                    if !pos.is_finite() {
                        pos = -2.0 - size;
                    }
                    let t = &mut taps[a];
                    t.clear();
                    match self.mode {
                        GridSampleMode::Nearest => {
                            let x = ax.fold(pos.round_ties_even());
                            t.push((ax.pixel(x.trunc()), 1.0));
                        }
                        GridSampleMode::Linear => {
                            let x = ax.fold(pos);
                            let f = x.floor();
                            t.push((ax.pixel(f), 1.0 - (x - f)));
                            t.push((ax.pixel(f + 1.0), x - f));
                        }
                        GridSampleMode::Cubic => {
                            let x = ax.fold(pos);
                            let f = x.floor();
                            for k in -1..3 {
                                let i = f + k as f64;
                                t.push((ax.pixel(i), cubic(-0.75, x - i)));
                            }
                        }
                    }
                }
                // Combine the axes' taps into plane offsets and weights.
                corners.clear();
                corners.push((0, 1.0));
                for (a, t) in taps.iter().enumerate() {
                    let mut next = Vec::with_capacity(corners.len() * t.len());
                    for &(off, w) in &corners {
                        for &(i, tw) in t {
                            if let Some(i) = i {
                                next.push((off + i * in_strides[a], w * tw));
                            }
                        }
                    }
                    corners = next;
                }
                for ch in 0..c {
                    let img = &xv[(b * c + ch) * plane..][..plane];
                    out[(b * c + ch) * points + p] = corners.iter().map(|&(o, w)| w * img[o]).sum();
                }
            }
        }
        one(result(x.dtype(), shape, out)?)
    }
}

impl Eval for AffineGrid {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let theta = cx.input(0)?;
        let size = cx.input(1)?.to_i64_vec();
        let ts = theta.shape();
        let r = match size.len() {
            4 => 2,
            5 => 3,
            _ => return invalid!("size must have 4 or 5 values, found {size:?}"),
        };
        if ts != [size[0].max(0) as usize, r, r + 1] {
            return invalid!("theta {ts:?} does not fit size {size:?}");
        }
        let mut shape = vec![size[0]];
        shape.extend(&size[2..]);
        shape.push(r as i64);
        let shape = checked_shape(&shape)?;
        let spatial = &shape[1..=r];
        let th = to_f64(theta, "AffineGrid")?;
        // Normalized base coordinate of index i along an axis of extent d.
        let base = |i: usize, d: usize| {
            if self.align_corners {
                if d > 1 {
                    -1.0 + 2.0 * i as f64 / (d - 1) as f64
                } else {
                    -1.0
                }
            } else {
                -1.0 + (2 * i + 1) as f64 / d as f64
            }
        };
        let points: usize = spatial.iter().product();
        let mut out = Vec::with_capacity(shape.iter().product());
        for b in 0..shape[0] {
            let t = &th[b * r * (r + 1)..][..r * (r + 1)];
            for p in 0..points {
                let idx = unravel(p, spatial);
                // Homogeneous point (x, y[, z], 1): x runs along the last axis.
                let mut h: Vec<f64> = (0..r)
                    .map(|j| base(idx[r - 1 - j], spatial[r - 1 - j]))
                    .collect();
                h.push(1.0);
                for row in 0..r {
                    out.push((0..=r).map(|k| t[row * (r + 1) + k] * h[k]).sum());
                }
            }
        }
        one(from_f64(theta.dtype(), shape, out)?)
    }
}

// ---- RoiAlign ----

impl Eval for RoiAlign {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (x, rois, batch) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
        let xs = x.shape();
        if xs.len() != 4 {
            return invalid!("input must have rank 4, found {xs:?}");
        }
        let nr = batch.numel();
        if rois.shape() != [nr, 4] {
            return invalid!("rois {:?} do not match {nr} batch indices", rois.shape());
        }
        if self.output_height < 1 || self.output_width < 1 {
            return invalid!("output_height and output_width must be positive");
        }
        let (c, h, w) = (xs[1], xs[2], xs[3]);
        let (ph, pw) = (self.output_height as usize, self.output_width as usize);
        let shape = checked_shape(&[nr as i64, c as i64, ph as i64, pw as i64])?;
        let xv = to_f64(x, "RoiAlign")?;
        let rv = rois.to_f64_vec();
        let bv = batch.to_i64_vec();
        let half_pixel = self.coordinate_transformation_mode == RoiCoordinateTransform::HalfPixel;
        let offset = if half_pixel { 0.5 } else { 0.0 };
        let scale = self.spatial_scale as f64;
        let mut out = Vec::with_capacity(shape.iter().product());
        // (flat offsets, weights) of the four corners of each sample.
        let mut samples: Vec<([usize; 4], [f64; 4])> = Vec::new();
        for (ri, &b) in bv.iter().enumerate() {
            if b < 0 || b as usize >= xs[0] {
                return invalid!("batch index {b} is out of range for {} images", xs[0]);
            }
            let roi = &rv[ri * 4..][..4];
            let (x0, y0) = (roi[0] * scale - offset, roi[1] * scale - offset);
            let (x1, y1) = (roi[2] * scale - offset, roi[3] * scale - offset);
            let (mut rw, mut rh) = (x1 - x0, y1 - y0);
            if !half_pixel {
                rw = rw.max(1.0);
                rh = rh.max(1.0);
            }
            let (bh, bw) = (rh / ph as f64, rw / pw as f64);
            let grid = |size: f64| {
                if self.sampling_ratio > 0 {
                    self.sampling_ratio as f64
                } else {
                    size.ceil().max(0.0)
                }
            };
            let (gh, gw) = (grid(bh), grid(bw));
            if gh * gw > (1u64 << 24) as f64 || (gh * gw).is_nan() {
                return unsupported!("RoiAlign with {gh}×{gw} samples per bin");
            }
            let (gh, gw) = (gh as usize, gw as usize);
            let count = (gh * gw).max(1) as f64;
            samples.clear();
            for py in 0..ph {
                for px in 0..pw {
                    for iy in 0..gh {
                        let yy = y0 + py as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                        for ix in 0..gw {
                            let xx = x0 + px as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                            samples.push(bilinear_sample(yy, xx, h, w));
                        }
                    }
                }
            }
            let per_bin = gh * gw;
            for ch in 0..c {
                let img = &xv[(b as usize * c + ch) * h * w..][..h * w];
                for bin in 0..ph * pw {
                    let ss = &samples[bin * per_bin..][..per_bin];
                    let v = match self.mode {
                        RoiPoolMode::Avg => {
                            ss.iter()
                                .map(|(p, wt)| (0..4).map(|k| wt[k] * img[p[k]]).sum::<f64>())
                                .sum::<f64>()
                                / count
                        }
                        RoiPoolMode::Max => ss
                            .iter()
                            .map(|(p, wt)| {
                                (0..4)
                                    .map(|k| wt[k] * img[p[k]])
                                    .fold(f64::NEG_INFINITY, f64::max)
                            })
                            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                            .unwrap_or(0.0),
                    };
                    out.push(v);
                }
            }
        }
        one(from_f64(x.dtype(), shape, out)?)
    }
}

/// The corners and weights of a bilinear sample at (y, x) in an h×w plane,
/// clamped at the far edges; samples beyond one pixel outside weigh zero.
fn bilinear_sample(y: f64, x: f64, h: usize, w: usize) -> ([usize; 4], [f64; 4]) {
    if h == 0 || w == 0 || !(y >= -1.0 && y <= h as f64 && x >= -1.0 && x <= w as f64) {
        return ([0; 4], [0.0; 4]);
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut yl, mut xl) = (y as usize, x as usize);
    let yh = if yl >= h - 1 {
        yl = h - 1;
        y = yl as f64;
        yl
    } else {
        yl + 1
    };
    let xh = if xl >= w - 1 {
        xl = w - 1;
        x = xl as f64;
        xl
    } else {
        xl + 1
    };
    let (ly, lx) = (y - yl as f64, x - xl as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    (
        [yl * w + xl, yl * w + xh, yh * w + xl, yh * w + xh],
        [hy * hx, hy * lx, ly * hx, ly * lx],
    )
}

// ---- NonMaxSuppression ----

/// A box as (x min, y min, x max, y max).
fn corners(b: &[f64], center: bool) -> [f64; 4] {
    if center {
        let (hw, hh) = (b[2] / 2.0, b[3] / 2.0);
        [b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh]
    } else {
        [
            b[1].min(b[3]),
            b[0].min(b[2]),
            b[1].max(b[3]),
            b[0].max(b[2]),
        ]
    }
}

/// Whether the intersection over union of two boxes exceeds `threshold`.
fn overlaps(a: &[f64; 4], b: &[f64; 4], threshold: f64) -> bool {
    let (ix0, ix1) = (a[0].max(b[0]), a[2].min(b[2]));
    let (iy0, iy1) = (a[1].max(b[1]), a[3].min(b[3]));
    if ix1 <= ix0 || iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let union = area_a + area_b - inter;
    if inter <= 0.0 || area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > threshold
}

impl Eval for NonMaxSuppression {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (boxes, scores) = (cx.input(0)?, cx.input(1)?);
        let (bs, ss) = (boxes.shape(), scores.shape());
        if bs.len() != 3 || bs[2] != 4 || ss.len() != 3 || ss[0] != bs[0] || ss[2] != bs[1] {
            return invalid!("boxes {bs:?} and scores {ss:?} do not match");
        }
        let max_out = given(cx, 2).map_or(0, |t| t.get_i64(0)).max(0) as usize;
        let iou = given(cx, 3).map_or(0.0, |t| t.get_f64(0));
        let min_score = given(cx, 4).map(|t| t.get_f64(0));
        let center = self.center_point_box == 1;
        let (batches, classes, n) = (ss[0], ss[1], bs[1]);
        let bv = to_f64(boxes, "NonMaxSuppression")?;
        let sv = to_f64(scores, "NonMaxSuppression")?;
        let mut selected: Vec<i64> = Vec::new();
        for b in 0..batches {
            let boxes: Vec<[f64; 4]> = (0..n)
                .map(|i| corners(&bv[(b * n + i) * 4..][..4], center))
                .collect();
            for c in 0..classes {
                let sc = &sv[(b * classes + c) * n..][..n];
                let mut cand: Vec<usize> = (0..n)
                    .filter(|&i| min_score.is_none_or(|m| sc[i] > m))
                    .collect();
                // Highest score first, ties by lower index.
                cand.sort_by(|&i, &j| sc[j].total_cmp(&sc[i]).then(i.cmp(&j)));
                let mut kept: Vec<usize> = Vec::new();
                for i in cand {
                    if kept.len() >= max_out {
                        break;
                    }
                    if kept.iter().all(|&k| !overlaps(&boxes[i], &boxes[k], iou)) {
                        kept.push(i);
                        selected.extend([b as i64, c as i64, i as i64]);
                    }
                }
            }
        }
        let rows = selected.len() / 3;
        one(Tensor::from_vec(vec![rows, 3], selected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::eval_op;
    use crate::shape::TensorType;

    fn run(op: impl Into<Op>, inputs: &[Option<&Tensor>]) -> Tensor {
        let types = vec![TensorType::unknown_rank(DType::F32)];
        eval_op(&op.into(), inputs, &types).unwrap().remove(0)
    }

    fn resize(mode: ResizeMode, ct: CoordinateTransform) -> Resize {
        Resize {
            antialias: false,
            axes: None,
            coordinate_transformation_mode: ct,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            keep_aspect_ratio_policy: AspectRatioPolicy::Stretch,
            mode,
            nearest_mode: NearestMode::RoundPreferFloor,
        }
    }

    fn f32s(t: &Tensor) -> Vec<f32> {
        t.as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn linear_half_pixel_upsample() {
        // 1-D [0, 4] doubled: sources -0.25, 0.25, 0.75, 1.25, clamped at
        // the edges.
        let x = Tensor::from_vec(vec![2], vec![0f32, 4.]);
        let scales = Tensor::from_vec(vec![1], vec![2f32]);
        let y = run(
            resize(ResizeMode::Linear, CoordinateTransform::HalfPixel),
            &[Some(&x), None, Some(&scales)],
        );
        assert_eq!(f32s(&y), vec![0., 1., 3., 4.]);
    }

    #[test]
    fn nearest_modes_round_ties_their_way() {
        // Asymmetric, scale 2 from [10, 20, 30]: sources 0, .5, 1, 1.5, 2, 2.5.
        let x = Tensor::from_vec(vec![3], vec![10f32, 20., 30.]);
        let scales = Tensor::from_vec(vec![1], vec![2f32]);
        let mut op = resize(ResizeMode::Nearest, CoordinateTransform::Asymmetric);
        let y = run(op.clone(), &[Some(&x), None, Some(&scales)]);
        assert_eq!(f32s(&y), vec![10., 10., 20., 20., 30., 30.]);
        op.nearest_mode = NearestMode::RoundPreferCeil;
        let y = run(op, &[Some(&x), None, Some(&scales)]);
        assert_eq!(f32s(&y), vec![10., 20., 20., 30., 30., 30.]);
    }

    #[test]
    fn tf_crop_extrapolates_outside_the_input() {
        // roi [0.5, 1.5] of [0, 10]: sources 0.5, 1.0, 1.5 (outside).
        let x = Tensor::from_vec(vec![2], vec![0f32, 10.]);
        let roi = Tensor::from_vec(vec![2], vec![0.5f32, 1.5]);
        let sizes = Tensor::from_vec(vec![1], vec![3i64]);
        let mut op = resize(ResizeMode::Linear, CoordinateTransform::TfCropAndResize);
        op.extrapolation_value = -1.0;
        let y = run(op, &[Some(&x), Some(&roi), None, Some(&sizes)]);
        assert_eq!(f32s(&y), vec![5., 10., -1.]);
    }

    #[test]
    fn cubic_kernel_interpolates_and_sums_to_one() {
        assert_eq!(cubic(-0.75, 0.0), 1.0);
        assert_eq!(cubic(-0.75, 1.0), 0.0);
        assert_eq!(cubic(-0.75, 2.0), 0.0);
        let s: f64 = (-1..3).map(|i| cubic(-0.5, i as f64 - 0.3)).sum();
        assert!((s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reflection_folds_at_both_borders() {
        assert_eq!(reflect(-1.0, -0.5, 2.5), 0.0);
        assert_eq!(reflect(3.0, -0.5, 2.5), 2.0);
        assert_eq!(reflect(6.0, -0.5, 2.5), 0.0);
        assert_eq!(reflect(5.0, 0.0, 0.0), 0.0);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        // Two heavily overlapping boxes and one apart.
        let boxes = Tensor::from_vec(
            vec![1, 3, 4],
            vec![0f32, 0., 1., 1., 0., 0.1, 1., 1.1, 0., 5., 1., 6.],
        );
        let scores = Tensor::from_vec(vec![1, 1, 3], vec![0.8f32, 0.9, 0.1]);
        let max = Tensor::scalar(10i64);
        let iou = Tensor::scalar(0.5f32);
        let y = run(
            NonMaxSuppression {
                center_point_box: 0,
            },
            &[Some(&boxes), Some(&scores), Some(&max), Some(&iou)],
        );
        assert_eq!(y.as_slice::<i64>().unwrap(), &[0, 0, 1, 0, 0, 2]);
    }
}
