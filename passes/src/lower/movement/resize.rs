//! Resize, with the interpreter's semantics (`interp/image.rs`).
//!
//! Resize is separable: per resized axis, each output index reads `n`
//! input indices (taps) with weights, which depend on shapes, attributes
//! and the scales alone.
//!
//! - `nearest` (one tap of weight 1) is a copy of values, not arithmetic.
//!   With constant scales or sizes its taps are computed here
//!   ([`axis_taps`] mirrors the interpreter) and it becomes a copy through
//!   axis maps ([`super::gather_maps`]): an integer upsampling factor is a
//!   plain strided copy, anything else an offset table.
//! - `linear` and `cubic` run one pass per resized axis, in axis order as
//!   the interpreter does (intermediate results in scratch memory), each
//!   pass a weighted sum of `n` rows of the previous result, vectorised
//!   along the dims after the axis. Floats compute in their own type;
//!   integers in f64, rounded half to even and saturated at the end.
//!
//! The taps of a pass are computed by a loop at kernel start
//! ([`emit_taps`]) into scratch tables, with the interpreter's f64
//! arithmetic operation for operation (so the same taps): from constant
//! scales, or from scales, sizes and roi read at run time, which is how
//! models that declare their output shape pass them. Runtime nearest
//! resizes copy through those tables.

use super::{R, copy_lanes, gather_maps, input, numel, unsup};
use crate::lower::cx::NodeCx;
use crate::lower::{Unsupported, unsupported};
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, Ty, UnOp};
use saturn_ir::ops::{
    AspectRatioPolicy, CoordinateTransform, NearestMode, Resize, ResizeMode, ResizeTarget,
};
use saturn_ir::{AttrValue, DType, Tensor};

/// Most table entries (index and weight stores) a resize may need.
const TABLE_MAX: usize = 1 << 16;

/// The crop region of one axis for `tf_crop_and_resize`.
#[derive(Clone, Copy, PartialEq)]
struct Roi {
    start: f64,
    end: f64,
    origin: f64,
}

const FULL: Roi = Roi {
    start: 0.0,
    end: 1.0,
    origin: 0.0,
};

/// Taps of one resized axis: `n` (index, weight) pairs per output index;
/// `None` for outputs that take the extrapolation value.
struct Taps {
    n: usize,
    taps: Vec<Option<Vec<(usize, f64)>>>,
}

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

/// Source coordinate of output index `y` (as the interpreter computes
/// it), or `None` to extrapolate.
fn source(op: &Resize, y: usize, input: usize, output: usize, scale: f64, roi: Roi) -> Option<f64> {
    let (y, inp) = (y as f64, input as f64);
    let resized = scale * inp;
    Some(match op.coordinate_transformation_mode {
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

/// The taps of one axis, exactly as the interpreter computes them.
fn axis_taps(
    op: &Resize,
    input: usize,
    output: usize,
    scale: f64,
    roi: Roi,
) -> Result<Taps, Unsupported> {
    let s = if op.antialias && op.mode != ResizeMode::Nearest {
        scale.min(1.0)
    } else {
        1.0
    };
    let (n, first) = match op.mode {
        ResizeMode::Nearest => (1, 0i64),
        ResizeMode::Linear | ResizeMode::Cubic => {
            let support = if op.mode == ResizeMode::Linear {
                1.0
            } else {
                2.0
            };
            let first = (-support / s).floor() + 1.0;
            if first < -(1 << 20) as f64 {
                return unsupported(format!("resize with antialias at scale {scale}"));
            }
            ((2.0 - 2.0 * first) as usize, first as i64)
        }
    };
    if output.saturating_mul(n) > TABLE_MAX {
        return unsupported("resize tables too large");
    }
    let a = op.cubic_coeff_a as f64;
    let mut taps = Vec::with_capacity(output);
    let mut w = vec![0.0; n];
    let mut idx = vec![0i64; n];
    for y in 0..output {
        let Some(x) = source(op, y, input, output, scale, roi) else {
            taps.push(None);
            continue;
        };
        let x = if x.is_finite() {
            x.clamp(-1e15, 1e15)
        } else {
            0.0
        };
        let fl = x.floor();
        let (base, ratio) = if fl == x {
            (fl as i64 - 1, 1.0)
        } else {
            (fl as i64, x - fl)
        };
        match op.mode {
            ResizeMode::Nearest => {
                let up = match op.nearest_mode {
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
                    w[j] = if op.mode == ResizeMode::Linear {
                        (1.0 - t.abs()).max(0.0)
                    } else {
                        cubic(a, t)
                    };
                }
                if op.antialias {
                    let sum: f64 = w.iter().sum();
                    w.iter_mut().for_each(|v| *v /= sum);
                }
            }
        }
        if op.exclude_outside {
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
        taps.push(Some(
            (0..n)
                .map(|j| (idx[j].clamp(0, input as i64 - 1) as usize, w[j]))
                .collect(),
        ));
    }
    Ok(Taps { n, taps })
}

/// An optional input that may also be given as an empty tensor.
fn given(cx: &NodeCx, i: usize) -> bool {
    cx.in_value(i).is_some() && numel(&cx.in_shape(i)) > 0
}

fn konst<'a>(cx: &NodeCx<'a>, i: usize, what: &str) -> Result<&'a Tensor, Unsupported> {
    cx.in_const(i)
        .ok_or_else(|| Unsupported(format!("resize {what} are not constants")))
}

pub(super) fn lower(cx: &mut NodeCx, op: &Resize) -> R {
    let dt = cx.in_dtype(0);
    if !(dt.is_float() || dt.is_int()) {
        return unsupported(format!("resize of {dt} tensors"));
    }
    if given(cx, 2) && given(cx, 3) {
        return unsupported("resize takes scales or sizes, not both");
    }
    if !given(cx, 2) && !given(cx, 3) {
        return unsupported("resize needs scales or sizes");
    }
    let tf = op.coordinate_transformation_mode == CoordinateTransform::TfCropAndResize;
    if tf && !given(cx, 1) {
        return unsupported("tf_crop_and_resize needs a roi");
    }
    let known = |i: usize| !given(cx, i) || cx.in_const(i).is_some();
    let constant = known(2) && known(3) && (!tf || known(1));
    cx.schedule("mode", AttrValue::Str(op.mode.onnx_name().into()));
    if constant {
        lower_static(cx, op)
    } else {
        cx.schedule("parameters", AttrValue::Str("runtime".into()));
        lower_dynamic(cx, op)
    }
}

/// Scales, sizes and roi are constants: the taps are computed here.
fn lower_static(cx: &mut NodeCx, op: &Resize) -> R {
    let dt = cx.in_dtype(0);
    let s = cx.in_shape(0);
    let rank = s.len();
    let target = if given(cx, 2) {
        ResizeTarget::Scales(konst(cx, 2, "scales")?.to_f64_vec())
    } else {
        ResizeTarget::Sizes(konst(cx, 3, "sizes")?.to_i64_vec())
    };
    let dims: Vec<Option<u64>> = s.iter().map(|&d| Some(d as u64)).collect();
    let plan = op.plan(&dims, &target).map_err(unsup)?;
    let out_shape: Vec<usize> = plan
        .iter()
        .map(|p| p.output.unwrap_or(0) as usize)
        .collect();
    if out_shape != cx.out_shape(0) {
        return unsupported("resize output does not match its plan");
    }
    let axes = op.resize_axes(rank).map_err(unsup)?;
    let tf = op.coordinate_transformation_mode == CoordinateTransform::TfCropAndResize;
    let mut roi = vec![FULL; rank];
    if tf {
        let r = konst(cx, 1, "roi")?;
        let single = r.dtype() == DType::F32;
        let r = r.to_f64_vec();
        if r.len() != 2 * axes.len() {
            return unsupported("roi does not fit the axes");
        }
        for (j, &a) in axes.iter().enumerate() {
            let (start, last) = (r[j], s[a] as f64 - 1.0);
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
    // The axes that change, with their taps (the interpreter skips the
    // others).
    let mut passes: Vec<Pass> = Vec::new();
    let mut statics: Vec<(usize, Taps)> = Vec::new();
    for a in 0..rank {
        let (inp, outp) = (s[a], out_shape[a]);
        let scale = plan[a].scale.unwrap_or(1.0);
        if inp == outp && scale == 1.0 && (!tf || roi[a] == FULL) {
            continue;
        }
        if inp == 0 {
            if numel(&out_shape) > 0 {
                return unsupported("cannot resize an empty axis");
            }
            return Ok(());
        }
        let taps = axis_taps(op, inp, outp, scale, roi[a])?;
        statics.push((a, taps));
        let r = roi[a];
        passes.push(Pass {
            axis: a,
            output: outp,
            n: statics.last().map_or(1, |t| t.1.n),
            taps: DynAxis {
                scale: f64c(scale),
                roi: tf.then(|| (f64c(r.start), f64c(r.end), f64c(r.origin))),
                input: inp,
            },
        });
    }
    if numel(&out_shape) == 0 {
        return Ok(());
    }
    let fill = op.extrapolation_value as f64;
    // Nearest moves values: a copy through axis maps, unless some tap
    // has a weight other than 1 (exclude_outside zeroes taps outside).
    // Linear and cubic taps are computed by the kernel from the constant
    // scales (a loop rather than a store per table entry).
    let unit = |t: &Taps| t.taps.iter().flatten().all(|v| v[0].1 == 1.0);
    if passes.is_empty() || (op.mode == ResizeMode::Nearest && statics.iter().all(|t| unit(&t.1))) {
        let mut maps: Vec<Vec<Option<i64>>> = s.iter().map(|&d| super::identity_map(d)).collect();
        for (a, t) in &statics {
            maps[*a] = t
                .taps
                .iter()
                .map(|tap| tap.as_ref().map(|v| v[0].0 as i64))
                .collect();
        }
        let fv = fill_value(dt, fill);
        let (out, x) = (cx.out_buf(0), input(cx, 0)?);
        return match gather_maps(cx, out, &out_shape, x, &s, &maps, Some(fv)) {
            // Offset tables too large to store: tables built by a loop.
            Err(_) => separable(cx, op, &s, &passes, fill),
            ok => ok,
        };
    }
    separable(cx, op, &s, &passes, fill)
}

/// The extrapolation value in the output dtype.
fn fill_value(dt: DType, v: f64) -> Expr {
    if dt.is_float() {
        Expr::Float(v, Ty::scalar(dt))
    } else {
        Expr::Int(round_int(dt, v), Ty::scalar(dt))
    }
}

/// The runtime parameters of one resized axis.
struct DynAxis {
    /// The coordinate scale (f64).
    scale: Expr,
    /// Roi start, end and origin (f64), for tf_crop_and_resize.
    roi: Option<(Expr, Expr, Expr)>,
    /// The input extent.
    input: usize,
}

/// One resized axis.
struct Pass {
    axis: usize,
    output: usize,
    /// Taps per output index.
    n: usize,
    taps: DynAxis,
}

fn f64c(v: f64) -> Expr {
    Expr::Float(v, Ty::scalar(DType::F64))
}

fn fbin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::bin(op, a, b)
}

/// Scales, sizes or roi known only at run time: the output shape is
/// static, the coordinate scales are read at kernel start, and each
/// resized axis's taps are computed by a loop in the kernel (the same
/// f64 arithmetic as the interpreter, so the same taps).
fn lower_dynamic(cx: &mut NodeCx, op: &Resize) -> R {
    let dt = cx.in_dtype(0);
    let s = cx.in_shape(0);
    let rank = s.len();
    let o = cx.out_shape(0);
    let axes = op.resize_axes(rank).map_err(unsup)?;
    if o.len() != rank || (0..rank).any(|d| !axes.contains(&d) && o[d] != s[d]) {
        return unsupported("resize output does not match");
    }
    if numel(&o) == 0 {
        return Ok(());
    }
    if axes.iter().any(|&a| s[a] == 0) {
        return unsupported("cannot resize an empty axis");
    }
    // Per listed axis, its scale (as `plan` computes it).
    let mut scales = Vec::with_capacity(axes.len());
    if given(cx, 2) {
        let b = input(cx, 2)?;
        let sdt = cx.in_dtype(2);
        if !sdt.is_float() || numel(&cx.in_shape(2)) != axes.len() {
            return unsupported("resize scales must be floats, one per axis");
        }
        for j in 0..axes.len() {
            let v = Expr::load(b, Expr::idx(j as i64));
            let v = if sdt == DType::F64 {
                v
            } else {
                v.cast(DType::F64)
            };
            scales.push(cx.b.let_("scale", v));
        }
    } else {
        let b = input(cx, 3)?;
        if cx.in_dtype(3) != DType::I64 || numel(&cx.in_shape(3)) != axes.len() {
            return unsupported("resize sizes must be i64, one per axis");
        }
        let mut ratios = Vec::with_capacity(axes.len());
        for (j, &a) in axes.iter().enumerate() {
            let v = Expr::load(b, Expr::idx(j as i64)).cast(DType::F64);
            ratios.push(cx.b.let_("ratio", fbin(BinOp::Div, v, f64c(s[a] as f64))));
        }
        match op.keep_aspect_ratio_policy {
            AspectRatioPolicy::Stretch => scales = ratios,
            policy => {
                let pick = if policy == AspectRatioPolicy::NotLarger {
                    BinOp::Min
                } else {
                    BinOp::Max
                };
                let mut it = ratios.into_iter();
                let first = it.next().unwrap_or_else(|| f64c(1.0));
                let v = it.fold(first, |acc, r| fbin(pick, acc, r));
                let v = cx.b.let_("scale", v);
                scales = vec![v; axes.len()];
            }
        }
    }
    let tf = op.coordinate_transformation_mode == CoordinateTransform::TfCropAndResize;
    let mut rois = vec![None; axes.len()];
    if tf {
        if numel(&cx.in_shape(1)) != 2 * axes.len() {
            return unsupported("roi does not fit the axes");
        }
        let rdt = cx.in_dtype(1);
        if !rdt.is_float() {
            return unsupported("roi must be floats");
        }
        let rb = input(cx, 1)?;
        for (j, &a) in axes.iter().enumerate() {
            let at = |k: usize| Expr::load(rb, Expr::idx(k as i64));
            let start = cx.b.let_("roi", at(j));
            let end = cx.b.let_("roi", at(axes.len() + j));
            let last = s[a] as f64 - 1.0;
            let wide = |e: Expr| {
                if rdt == DType::F64 {
                    e
                } else {
                    e.cast(DType::F64)
                }
            };
            // In the roi's own precision, as the interpreter computes it.
            let origin = wide(fbin(
                BinOp::Mul,
                start.clone(),
                Expr::Float(last, Ty::scalar(rdt)),
            ));
            rois[j] = Some((wide(start), wide(end), cx.b.let_("origin", origin)));
        }
    }
    let mut order: Vec<usize> = (0..axes.len()).collect();
    order.sort_by_key(|&j| axes[j]);
    let mut passes = Vec::with_capacity(axes.len());
    for j in order {
        let a = axes[j];
        let (inp, outp) = (s[a], o[a]);
        let n = match op.mode {
            ResizeMode::Nearest => 1,
            ResizeMode::Linear if !op.antialias => 2,
            ResizeMode::Cubic if !op.antialias => 4,
            _ => {
                // The runtime scale is at least about out / in; taps past
                // the real ones get weight 0.
                let support = if op.mode == ResizeMode::Linear {
                    1.0
                } else {
                    2.0
                };
                let lb = ((outp as f64 - 0.5) / inp as f64).clamp(1e-6, 1.0);
                let first = (-support / lb).floor() + 1.0;
                (2.0 - 2.0 * first).min(1e9) as usize
            }
        };
        if outp.saturating_mul(n) > TABLE_MAX {
            return unsupported("resize tables too large");
        }
        passes.push(Pass {
            axis: a,
            output: outp,
            n,
            taps: DynAxis {
                scale: scales[j].clone(),
                roi: rois[j].clone(),
                input: inp,
            },
        });
    }
    let fill = op.extrapolation_value as f64;
    if op.mode == ResizeMode::Nearest && !op.exclude_outside {
        // Positions from in-kernel tables; a copy of the values.
        let mut pos: Vec<super::Pos> = (0..rank).map(|_| super::Pos::Same).collect();
        for p in &passes {
            let d = &p.taps;
            let itab = cx.scratch(&format!("taps{}", p.axis), DType::I64, p.output.max(1));
            let ftab = d.roi.as_ref().map(|_| {
                cx.scratch(
                    &format!("extrapolated{}", p.axis),
                    DType::Bool,
                    p.output.max(1),
                )
            });
            emit_taps(cx, op, d, p.output, 1, 1, itab, None, ftab, DType::F64);
            pos[p.axis] = super::Pos::Dyn(Box::new(move |cx: &mut NodeCx, i: Expr| {
                let at = cx.b.let_("pos", Expr::load(itab, i.clone()));
                let flag = ftab.map(|f| cx.b.let_("ext", Expr::load(f, i)));
                (at, flag)
            }));
        }
        let (out, x) = (cx.out_buf(0), input(cx, 0)?);
        return super::dyn_gather(cx, out, &o, x, &s, pos, Some(fill_value(dt, fill)));
    }
    separable(cx, op, &s, &passes, fill)
}

/// Emits the loop that computes one axis's taps in the kernel: for each
/// output index, `n` source offsets (indices times `mult`) into `itab`,
/// their weights into `wtab` and the extrapolation flag into `ftab`.
#[allow(clippy::too_many_arguments)]
fn emit_taps(
    cx: &mut NodeCx,
    op: &Resize,
    d: &DynAxis,
    output: usize,
    n: usize,
    mult: i64,
    itab: BufId,
    wtab: Option<BufId>,
    ftab: Option<BufId>,
    cdt: DType,
) {
    use BinOp::*;
    let input = d.input;
    let scale = d.scale.clone();
    let y = cx.b.begin_for("y", 0, output, 1, LoopKind::Serial);
    let yf = cx.b.let_("yf", y.clone().cast(DType::F64));
    let inp = f64c(input as f64);
    let resized = cx.b.let_("resized", fbin(Mul, scale.clone(), inp.clone()));
    let half = || {
        fbin(
            Sub,
            fbin(Div, fbin(Add, yf.clone(), f64c(0.5)), scale.clone()),
            f64c(0.5),
        )
    };
    let mut ext = None;
    let x = match op.coordinate_transformation_mode {
        CoordinateTransform::HalfPixel => half(),
        CoordinateTransform::HalfPixelSymmetric => {
            let adjustment = fbin(Div, f64c(output as f64), resized.clone());
            let offset = fbin(
                Mul,
                f64c(input as f64 / 2.0),
                fbin(Sub, f64c(1.0), adjustment),
            );
            let q = fbin(Div, fbin(Add, yf.clone(), f64c(0.5)), scale.clone());
            fbin(Sub, fbin(Add, offset, q), f64c(0.5))
        }
        CoordinateTransform::PytorchHalfPixel => {
            Expr::select(fbin(Gt, resized.clone(), f64c(1.0)), half(), f64c(0.0))
        }
        CoordinateTransform::AlignCorners => {
            let v = fbin(
                Div,
                fbin(Mul, yf.clone(), f64c(input as f64 - 1.0)),
                fbin(Sub, resized.clone(), f64c(1.0)),
            );
            Expr::select(fbin(Eq, resized.clone(), f64c(1.0)), f64c(0.0), v)
        }
        CoordinateTransform::Asymmetric => fbin(Div, yf.clone(), scale.clone()),
        CoordinateTransform::TfCropAndResize => {
            let (start, end, origin) = d.roi.clone().unwrap_or((f64c(0.0), f64c(1.0), f64c(0.0)));
            let span = fbin(Sub, end.clone(), start.clone());
            let far = fbin(
                Div,
                fbin(Mul, fbin(Mul, yf.clone(), span), f64c(input as f64 - 1.0)),
                fbin(Sub, resized.clone(), f64c(1.0)),
            );
            let near = fbin(
                Mul,
                fbin(Mul, f64c(0.5), fbin(Add, start, end)),
                f64c(input as f64 - 1.0),
            );
            let x = cx.b.let_(
                "x",
                Expr::select(
                    fbin(Gt, resized.clone(), f64c(1.0)),
                    fbin(Add, origin, far),
                    near,
                ),
            );
            let inside = fbin(
                And,
                x.clone().ge(f64c(0.0)),
                fbin(Le, x.clone(), f64c(input as f64 - 1.0)),
            );
            ext = Some(Expr::un(UnOp::Not, inside));
            x
        }
    };
    let x = cx.b.let_("x", x);
    let finite = fbin(Eq, fbin(Sub, x.clone(), x.clone()), f64c(0.0));
    let clamped = x.clone().max(f64c(-1e15)).min(f64c(1e15));
    let x = cx.b.let_("x", Expr::select(finite, clamped, f64c(0.0)));
    let fl = cx.b.let_("fl", Expr::un(UnOp::Floor, x.clone()));
    let integral = cx.b.let_("integral", fbin(Eq, fl.clone(), x.clone()));
    let base = Expr::select(
        integral.clone(),
        fbin(Sub, fl.clone(), f64c(1.0)),
        fl.clone(),
    );
    let base = cx.b.let_("base", base.cast(DType::I64));
    let ratio =
        cx.b.let_("ratio", Expr::select(integral, f64c(1.0), fbin(Sub, x, fl)));
    let mut idx: Vec<Expr> = Vec::with_capacity(n);
    let mut w: Vec<Expr> = Vec::with_capacity(n);
    match op.mode {
        ResizeMode::Nearest => {
            let up = match op.nearest_mode {
                NearestMode::RoundPreferFloor => fbin(Gt, ratio.clone(), f64c(0.5)),
                NearestMode::RoundPreferCeil => ratio.clone().ge(f64c(0.5)),
                NearestMode::Floor => Expr::Int(0, Ty::BOOL),
                NearestMode::Ceil => Expr::Int(1, Ty::BOOL),
            };
            let up = fbin(Or, up, fbin(Eq, ratio.clone(), f64c(1.0)));
            idx.push(base.clone() + Expr::select(up, Expr::idx(1), Expr::idx(0)));
            w.push(f64c(1.0));
        }
        ResizeMode::Linear | ResizeMode::Cubic => {
            let support = if op.mode == ResizeMode::Linear {
                1.0
            } else {
                2.0
            };
            let (s, first) = if op.antialias {
                let s = cx.b.let_("s", scale.clone().min(f64c(1.0)));
                let first = fbin(
                    Add,
                    Expr::un(UnOp::Floor, fbin(Div, f64c(-support), s.clone())),
                    f64c(1.0),
                );
                (s, cx.b.let_("first", first))
            } else {
                (f64c(1.0), f64c(-support + 1.0))
            };
            let a = op.cubic_coeff_a as f64;
            for j in 0..n {
                let i = cx.b.let_("i", fbin(Add, first.clone(), f64c(j as f64)));
                let t = cx.b.let_(
                    "t",
                    fbin(Mul, fbin(Sub, i.clone(), ratio.clone()), s.clone()),
                );
                idx.push(base.clone() + i.cast(DType::I64));
                let ta = cx.b.let_("ta", Expr::un(UnOp::Abs, t));
                let wj = if op.mode == ResizeMode::Linear {
                    fbin(Sub, f64c(1.0), ta).max(f64c(0.0))
                } else {
                    let r1 = fbin(
                        Add,
                        fbin(
                            Mul,
                            fbin(
                                Mul,
                                fbin(Sub, fbin(Mul, f64c(a + 2.0), ta.clone()), f64c(a + 3.0)),
                                ta.clone(),
                            ),
                            ta.clone(),
                        ),
                        f64c(1.0),
                    );
                    let r2 = fbin(
                        Sub,
                        fbin(
                            Mul,
                            fbin(
                                Add,
                                fbin(
                                    Mul,
                                    fbin(Sub, fbin(Mul, f64c(a), ta.clone()), f64c(5.0 * a)),
                                    ta.clone(),
                                ),
                                f64c(8.0 * a),
                            ),
                            ta.clone(),
                        ),
                        f64c(4.0 * a),
                    );
                    Expr::select(
                        fbin(Le, ta.clone(), f64c(1.0)),
                        r1,
                        Expr::select(fbin(Lt, ta, f64c(2.0)), r2, f64c(0.0)),
                    )
                };
                w.push(cx.b.let_("w", wj));
            }
            if op.antialias {
                let sum = cx.b.let_("sum", sum(&w));
                w = w
                    .into_iter()
                    .map(|v| cx.b.let_("w", fbin(Div, v, sum.clone())))
                    .collect();
            }
        }
    }
    let idx: Vec<Expr> = idx.into_iter().map(|i| cx.b.let_("idx", i)).collect();
    if op.exclude_outside {
        for j in 0..n {
            let outside = fbin(
                Or,
                idx[j].clone().lt(Expr::idx(0)),
                idx[j].clone().ge(Expr::idx(input as i64)),
            );
            w[j] =
                cx.b.let_("w", Expr::select(outside, f64c(0.0), w[j].clone()));
        }
        let sum = cx.b.let_("sum", sum(&w));
        let nz = fbin(Ne, sum.clone(), f64c(0.0));
        for v in w.iter_mut() {
            *v = cx.b.let_(
                "w",
                Expr::select(nz.clone(), fbin(Div, v.clone(), sum.clone()), v.clone()),
            );
        }
    }
    let row = cx.b.let_("row", y.clone() * n as i64);
    for j in 0..n {
        let i = idx[j]
            .clone()
            .max(Expr::idx(0))
            .min(Expr::idx(input as i64 - 1));
        cx.b.store(itab, row.clone() + j as i64, i * mult);
        if let Some(wt) = wtab {
            let v = if cdt == DType::F64 {
                w[j].clone()
            } else {
                w[j].clone().cast(cdt)
            };
            cx.b.store(wt, row.clone() + j as i64, v);
        }
    }
    if let (Some(f), Some(e)) = (ftab, ext) {
        cx.b.store(f, y, e);
    }
    cx.b.end_for();
}

/// `w[0] + w[1] + …`, left to right.
fn sum(w: &[Expr]) -> Expr {
    let mut it = w.iter().cloned();
    let first = it.next().unwrap_or_else(|| f64c(0.0));
    it.fold(first, |a, b| fbin(BinOp::Add, a, b))
}

/// A float rounded half to even and saturated into an integer dtype.
fn round_int(dt: DType, v: f64) -> i64 {
    let bits = dt.bits() as i32;
    let (lo, hi) = if dt.is_signed_int() {
        (-(2f64.powi(bits - 1)), 2f64.powi(bits - 1) - 1.0)
    } else {
        (0.0, 2f64.powi(bits) - 1.0)
    };
    let r = v.round_ties_even().clamp(lo, hi);
    if r.is_nan() {
        0
    } else if dt == DType::U64 {
        r as u64 as i64
    } else {
        r as i64
    }
}

/// Linear and cubic resize (and nearest with weights): one weighted-sum
/// pass per resized axis, in axis order.
fn separable(cx: &mut NodeCx, op: &Resize, s: &[usize], passes: &[Pass], fill: f64) -> R {
    let dt = cx.in_dtype(0);
    let cdt = if dt == DType::F32 {
        DType::F32
    } else {
        DType::F64
    };
    let lanes = copy_lanes(cx, cdt);
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let mut shape = s.to_vec();
    let mut src: BufId = input(cx, 0)?;
    for (p, pass) in passes.iter().enumerate() {
        let a = pass.axis;
        let last = p + 1 == passes.len();
        let (outer, inp, inner) = (numel(&shape[..a]), shape[a], numel(&shape[a + 1..]));
        let output = pass.output;
        shape[a] = output;
        let dst = if last {
            cx.out_buf(0)
        } else {
            cx.scratch(&format!("pass{p}"), cdt, numel(&shape).max(1))
        };
        // Tables: tap offsets (in rows of `inner`) and weights; an
        // extrapolated output reads row 0 with weight 0 and is flagged.
        let n = pass.n;
        let itab = cx.scratch(&format!("taps{p}"), DType::I64, (output * n).max(1));
        let wtab = cx.scratch(&format!("weights{p}"), cdt, (output * n).max(1));
        let d = &pass.taps;
        let flags = d
            .roi
            .as_ref()
            .map(|_| cx.scratch(&format!("extrapolated{p}"), DType::Bool, output.max(1)));
        emit_taps(
            cx,
            op,
            d,
            output,
            n,
            inner as i64,
            itab,
            Some(wtab),
            flags,
            cdt,
        );
        let total = outer * output * inner;
        let par = total >= super::PARALLEL_MIN;
        let (okind, ykind) = match (par, outer >= 2) {
            (true, true) => (LoopKind::Parallel, LoopKind::Serial),
            (true, false) => (LoopKind::Serial, LoopKind::Parallel),
            _ => (LoopKind::Serial, LoopKind::Serial),
        };
        let ov = cx.b.begin_for("o", 0, outer, 1, okind);
        let yv = cx.b.begin_for("y", 0, output, 1, ykind);
        let sbase = cx.b.let_("sb", ov.clone() * (inp * inner) as i64);
        let dbase =
            cx.b.let_("db", (ov * output as i64 + yv.clone()) * inner as i64);
        let tap = yv.clone() * n as i64;
        let offs: Vec<Expr> = (0..n)
            .map(|j| cx.b.let_("ti", Expr::load(itab, tap.clone() + j as i64)))
            .collect();
        let ws: Vec<Expr> = (0..n)
            .map(|j| cx.b.let_("w", Expr::load(wtab, tap.clone() + j as i64)))
            .collect();
        let flag = flags.map(|f| cx.b.let_("ext", Expr::load(f, yv)));
        let l = if inner >= lanes as usize { lanes } else { 1 };
        let src_dt = cx.b.kernel().buf(src).dtype;
        let fv = Expr::Float(fill, Ty::scalar(cdt));
        super::vloop(cx, "i", inner, l, &mut |cx, i, mask| {
            let mut acc: Option<Expr> = None;
            for j in 0..n {
                let at = sbase.clone() + offs[j].clone() + i.clone();
                let v = Expr::load_vec(src, at, l, 1, mask.clone());
                let v = if src_dt == cdt { v } else { v.cast(cdt) };
                let term = Expr::bin(BinOp::Mul, ws[j].clone().splat(l), v);
                acc = Some(match acc {
                    None => term,
                    Some(a) => Expr::bin(BinOp::Add, a, term),
                });
            }
            let mut v = acc.expect("a resize tap");
            if let Some(f) = &flag {
                v = Expr::select(f.clone().splat(l), fv.clone().splat(l), v);
            }
            cx.b.store_vec(dst, dbase.clone() + i, finalize(v, dt, last), 1, mask);
            Ok(())
        })?;
        cx.b.end_for();
        cx.b.end_for();
        src = dst;
    }
    Ok(())
}

/// The value stored by a pass: intermediate passes keep the compute
/// type; the last converts to the output dtype (integers rounded half
/// to even, saturating).
fn finalize(v: Expr, dt: DType, last: bool) -> Expr {
    if !last || dt.is_float() {
        v
    } else {
        Expr::un(UnOp::Round, v).cast(dt)
    }
}
