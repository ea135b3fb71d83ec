//! Convolution and pooling.
//!
//! Every op here slides a window over the spatial axes of an `[N, C, D1,
//! ..., Dn]` input. [`Window`] resolves the window attributes (kernel,
//! strides, dilations, pads, `auto_pad`, `ceil_mode`) into per-axis
//! geometry once, and both inference and the interpreter read the output
//! extents and pads from it, so the two cannot disagree.

use super::infer::{expect_dtype, one, same_dtype};
use super::*;
use crate::attr_enum;
use crate::invalid;
use crate::shape::{Dim, Shape};

attr_enum!(
    /// How convolutions and pools pad when explicit pads are not given.
    AutoPad { NotSet = "NOTSET", SameUpper = "SAME_UPPER", SameLower = "SAME_LOWER", Valid = "VALID" }
);

/// The window attributes of a conv or pool, checked and defaulted for a
/// number of spatial axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Explicit pads, begins then ends (zeros when not given).
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    /// Pools only: round the output extent up rather than down.
    pub ceil_mode: bool,
}

/// Where the window lies along one spatial axis for a given input extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisWindow {
    pub input: usize,
    pub output: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// Padding before the first input element; output `o` starts at input
    /// position `o * stride - pad_begin`. Negative only for the adjoint
    /// geometry of a transposed convolution asked for a larger output.
    pub pad_begin: i64,
    pub pad_end: usize,
}

/// Largest window attribute (kernel, stride, dilation, pad) Saturn accepts,
/// so that window arithmetic cannot overflow.
const MAX_WINDOW: usize = 1 << 40;

/// Attribute values checked to be positive, one per spatial axis.
fn per_axis(
    v: Option<&[i64]>,
    n: usize,
    what: &str,
    default: usize,
) -> Result<Vec<usize>, OpError> {
    let Some(v) = v else {
        return Ok(vec![default; n]);
    };
    if v.len() != n {
        return invalid!("{what} has {} values, expected {n}", v.len());
    }
    v.iter()
        .map(|&x| {
            if x < 1 {
                invalid!("{what} must be positive, found {v:?}")
            } else if x as u64 > MAX_WINDOW as u64 {
                invalid!("{what} {v:?} is too large")
            } else {
                Ok(x as usize)
            }
        })
        .collect()
}

/// The window attributes convolutions and pools share, borrowed from an
/// op; [`Windowed`] gives them for every such op.
#[derive(Clone, Copy, Debug)]
pub struct WindowAttrs<'a> {
    pub kernel_shape: Option<&'a [i64]>,
    pub strides: Option<&'a [i64]>,
    pub dilations: Option<&'a [i64]>,
    pub pads: Option<&'a [i64]>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
    /// 1 for pools.
    pub group: i64,
}

impl WindowAttrs<'_> {
    /// The window with a kernel given or taken from the weight.
    pub fn window(&self, kernel: &[i64]) -> Result<Window, OpError> {
        Window::new(
            kernel,
            self.strides,
            self.dilations,
            self.pads,
            self.auto_pad,
            self.ceil_mode,
        )
    }
}

/// Ops with a sliding window.
pub trait Windowed {
    fn window_attrs(&self) -> WindowAttrs<'_>;
}

macro_rules! windowed_conv {
    ($($op:ident),*) => {$(
        impl Windowed for $op {
            fn window_attrs(&self) -> WindowAttrs<'_> {
                WindowAttrs {
                    kernel_shape: self.kernel_shape.as_deref(),
                    strides: self.strides.as_deref(),
                    dilations: self.dilations.as_deref(),
                    pads: self.pads.as_deref(),
                    auto_pad: self.auto_pad,
                    ceil_mode: false,
                    group: self.group,
                }
            }
        }
    )*};
}
windowed_conv!(Conv, ConvInteger, QLinearConv, ConvTranspose);

impl Windowed for DeformConv {
    fn window_attrs(&self) -> WindowAttrs<'_> {
        WindowAttrs {
            kernel_shape: self.kernel_shape.as_deref(),
            strides: self.strides.as_deref(),
            dilations: self.dilations.as_deref(),
            pads: self.pads.as_deref(),
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
            group: self.group,
        }
    }
}

macro_rules! windowed_pool {
    ($($op:ident),*) => {$(
        impl Windowed for $op {
            fn window_attrs(&self) -> WindowAttrs<'_> {
                WindowAttrs {
                    kernel_shape: Some(&self.kernel_shape),
                    strides: self.strides.as_deref(),
                    dilations: self.dilations.as_deref(),
                    pads: self.pads.as_deref(),
                    auto_pad: self.auto_pad,
                    ceil_mode: self.ceil_mode,
                    group: 1,
                }
            }
        }
    )*};
}
windowed_pool!(AveragePool, MaxPool, LpPool);

impl Window {
    pub fn new(
        kernel: &[i64],
        strides: Option<&[i64]>,
        dilations: Option<&[i64]>,
        pads: Option<&[i64]>,
        auto_pad: AutoPad,
        ceil_mode: bool,
    ) -> Result<Window, OpError> {
        let n = kernel.len();
        let kernel = per_axis(Some(kernel), n, "kernel_shape", 1)?;
        let strides = per_axis(strides, n, "strides", 1)?;
        let dilations = per_axis(dilations, n, "dilations", 1)?;
        let pads = match pads {
            None => vec![0; 2 * n],
            Some(p) if p.len() != 2 * n => {
                return invalid!("pads has {} values, expected {}", p.len(), 2 * n);
            }
            Some(p) if p.iter().any(|&x| x < 0) => return invalid!("negative pads {p:?}"),
            Some(p) if p.iter().any(|&x| x as u64 > MAX_WINDOW as u64) => {
                return invalid!("pads {p:?} are too large");
            }
            Some(p) => p.iter().map(|&x| x as usize).collect(),
        };
        Ok(Window {
            kernel,
            strides,
            dilations,
            pads,
            auto_pad,
            ceil_mode,
        })
    }

    pub fn rank(&self) -> usize {
        self.kernel.len()
    }

    /// The window along spatial axis `i` over an input of extent `input`.
    pub fn axis(&self, i: usize, input: usize) -> Result<AxisWindow, OpError> {
        let (k, s, d) = (self.kernel[i], self.strides[i], self.dilations[i]);
        let extent = (k - 1)
            .checked_mul(d)
            .and_then(|e| e.checked_add(1))
            .filter(|&e| e <= 1 << 62)
            .ok_or_else(|| OpError::Invalid("window is too large".into()))?;
        if input > MAX_WINDOW {
            return invalid!("input extent {input} is too large");
        }
        let (mut pad_begin, mut pad_end) = (self.pads[i], self.pads[self.rank() + i]);
        let output = match self.auto_pad {
            AutoPad::SameUpper | AutoPad::SameLower => {
                let output = input.div_ceil(s);
                let total = ((output.saturating_sub(1)) * s + extent).saturating_sub(input);
                pad_begin = if self.auto_pad == AutoPad::SameUpper {
                    total / 2
                } else {
                    total - total / 2
                };
                pad_end = total - pad_begin;
                output
            }
            AutoPad::Valid | AutoPad::NotSet => {
                if self.auto_pad == AutoPad::Valid {
                    (pad_begin, pad_end) = (0, 0);
                }
                let padded = input + pad_begin + pad_end;
                if padded < extent {
                    return invalid!(
                        "the window (extent {extent}) is larger than the padded input ({padded})"
                    );
                }
                let span = padded - extent;
                if self.ceil_mode && self.auto_pad == AutoPad::NotSet {
                    let mut output = span.div_ceil(s) + 1;
                    // The last window must start inside the input or the
                    // leading padding.
                    if (output - 1).saturating_mul(s) >= input + pad_begin {
                        output -= 1;
                    }
                    output
                } else {
                    span / s + 1
                }
            }
        };
        Ok(AxisWindow {
            input,
            output,
            kernel: k,
            stride: s,
            dilation: d,
            pad_begin: pad_begin as i64,
            pad_end,
        })
    }

    /// Every axis for the given spatial input extents.
    pub fn axes(&self, input: &[usize]) -> Result<Vec<AxisWindow>, OpError> {
        if input.len() != self.rank() {
            return invalid!(
                "the input has {} spatial axes, the window {}",
                input.len(),
                self.rank()
            );
        }
        input
            .iter()
            .enumerate()
            .map(|(i, &n)| self.axis(i, n))
            .collect()
    }

    /// Output spatial dims for possibly unknown input dims.
    pub fn out_dims(&self, input: &[Dim]) -> Result<Vec<Dim>, OpError> {
        input
            .iter()
            .enumerate()
            .map(|(i, d)| match d.known() {
                Some(n) => Ok(Dim::Known(self.axis(i, n as usize)?.output as u64)),
                None => Ok(Dim::Unknown),
            })
            .collect()
    }
}

/// Dims of a `[N, C, spatial...]` input; `None` for unknown rank.
fn nchw<'a>(cx: &InferCx<'a>, i: usize) -> Result<Option<&'a [Dim]>, OpError> {
    let Some(dims) = cx.input(i)?.dims() else {
        return Ok(None);
    };
    if dims.len() < 3 {
        return invalid!(
            "input {i} must have a batch, a channel and at least one spatial axis, found rank {}",
            dims.len()
        );
    }
    Ok(Some(dims))
}

fn float_input(cx: &InferCx, i: usize) -> Result<DType, OpError> {
    expect_dtype(cx, i, DType::is_float, "a float type")
}

/// The kernel shape of a conv: the attribute, or the weight's spatial dims.
fn conv_kernel(attr: Option<&[i64]>, w: &TensorType) -> Option<Vec<i64>> {
    if let Some(k) = attr {
        return Some(k.to_vec());
    }
    let dims = w.dims()?;
    dims.get(2..)?
        .iter()
        .map(|d| d.known().map(|n| n as i64))
        .collect()
}

/// Output shape of a conv-like op: `[N, M, spatial...]` with `M` from the
/// weight's first dim.
fn conv_shape(cx: &InferCx, x: usize, w: usize, a: &WindowAttrs) -> Result<Shape, OpError> {
    let group = a.group;
    if group < 1 {
        return invalid!("group must be positive, found {group}");
    }
    let wt = cx.input(w)?;
    let Some(xd) = nchw(cx, x)? else {
        return Ok(match wt.rank() {
            Some(r) => Shape::Ranked(vec![Dim::Unknown; r]),
            None => Shape::UnknownRank,
        });
    };
    let r = xd.len() - 2;
    let m = match wt.dims() {
        Some(wd) if wd.len() != xd.len() => {
            return invalid!("weight has rank {}, input has rank {}", wd.len(), xd.len());
        }
        Some(wd) => {
            if let (Some(c), Some(wc)) = (xd[1].known(), wd[1].known())
                && c != wc * group as u64
            {
                return invalid!("input has {c} channels, weight expects {wc} × group {group}");
            }
            if let Some(m) = wd[0].known()
                && m % group as u64 != 0
            {
                return invalid!("{m} output channels do not split into {group} groups");
            }
            wd[0].clone()
        }
        None => Dim::Unknown,
    };
    let mut dims = vec![xd[0].clone(), m];
    match conv_kernel(a.kernel_shape, wt) {
        Some(k) => {
            if k.len() != r {
                return invalid!("kernel_shape has {} values, expected {r}", k.len());
            }
            let win = a.window(&k)?;
            dims.extend(win.out_dims(&xd[2..])?);
        }
        None => dims.extend(vec![Dim::Unknown; r]),
    }
    Ok(Shape::Ranked(dims))
}

impl Infer for Conv {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        float_input(cx, 0)?;
        let dtype = same_dtype(cx, 0, 1)?;
        if cx.opt_input(2).is_some() {
            same_dtype(cx, 0, 2)?;
        }
        let shape = conv_shape(cx, 0, 1, &self.window_attrs())?;
        one(TensorType::new(dtype, shape))
    }
}

fn int8_input(cx: &InferCx, i: usize) -> Result<DType, OpError> {
    expect_dtype(cx, i, |d| matches!(d, DType::I8 | DType::U8), "i8 or u8")
}

impl Infer for ConvInteger {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        int8_input(cx, 0)?;
        int8_input(cx, 1)?;
        let shape = conv_shape(cx, 0, 1, &self.window_attrs())?;
        one(TensorType::new(DType::I32, shape))
    }
}

impl Infer for QLinearConv {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = int8_input(cx, 0)?;
        int8_input(cx, 3)?;
        let dtype = match cx.opt_input(7) {
            Some(t) => t.dtype,
            None => x,
        };
        let shape = conv_shape(cx, 0, 3, &self.window_attrs())?;
        one(TensorType::new(dtype, shape))
    }
}

/// Resolved geometry of a transposed convolution along one axis: output
/// `o` receives input `i` through tap `k` when
/// `o = i * stride + k * dilation - pad_begin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransposeAxis {
    pub input: usize,
    pub output: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// May be negative when `output_shape` asks for more than the full
    /// result: the extra outputs are zeros.
    pub pad_begin: i64,
}

impl ConvTranspose {
    /// Per-axis geometry for the input spatial extents and kernel.
    pub fn axes(&self, input: &[usize], kernel: &[i64]) -> Result<Vec<TransposeAxis>, OpError> {
        let r = input.len();
        if kernel.len() != r {
            return invalid!("kernel_shape has {} values, expected {r}", kernel.len());
        }
        let win = self.window_attrs().window(kernel)?;
        let out_pad = match &self.output_padding {
            None => vec![0; r],
            Some(p) if p.len() == r || p.len() == 2 * r => {
                if p.iter().any(|&x| x < 0) {
                    return invalid!("negative output_padding {p:?}");
                }
                p[..r].to_vec()
            }
            Some(p) => return invalid!("output_padding has {} values, expected {r}", p.len()),
        };
        let out_shape = match &self.output_shape {
            None => None,
            // Either the spatial dims or the whole shape.
            Some(s) if s.len() == r || s.len() == r + 2 => {
                if s.iter().any(|&x| x < 0) {
                    return invalid!("negative output_shape {s:?}");
                }
                Some(s[s.len() - r..].to_vec())
            }
            Some(s) => return invalid!("output_shape has {} values, expected {r}", s.len()),
        };
        let mut axes = Vec::with_capacity(r);
        for i in 0..r {
            let (k, s, d) = (win.kernel[i], win.strides[i], win.dilations[i]);
            let too_big = || OpError::Invalid("transposed convolution output is too large".into());
            // The full extent before cropping by pads.
            let full = (input[i] as i64 - 1)
                .checked_mul(s as i64)
                .and_then(|x| x.checked_add(out_pad[i]))
                .and_then(|x| x.checked_add(((k - 1) * d + 1) as i64))
                .ok_or_else(too_big)?;
            let same = matches!(self.auto_pad, AutoPad::SameUpper | AutoPad::SameLower);
            let target = match &out_shape {
                Some(o) => Some(o[i]),
                None if same => Some(
                    (input[i] as i64)
                        .checked_mul(s as i64)
                        .ok_or_else(too_big)?,
                ),
                None => None,
            };
            let (pad_begin, output) = match target {
                Some(out) => {
                    let total = full.checked_sub(out).ok_or_else(too_big)?;
                    let begin = if self.auto_pad == AutoPad::SameUpper {
                        total.div_euclid(2)
                    } else {
                        total - total.div_euclid(2)
                    };
                    (begin, out)
                }
                None => {
                    let (b, e) = if self.auto_pad == AutoPad::Valid {
                        (0, 0)
                    } else {
                        (win.pads[i] as i64, win.pads[r + i] as i64)
                    };
                    let out = full - b - e;
                    if out < 0 {
                        return invalid!("pads {:?} leave a negative output extent", win.pads);
                    }
                    (b, out)
                }
            };
            axes.push(TransposeAxis {
                input: input[i],
                output: output as usize,
                kernel: k,
                stride: s,
                dilation: d,
                pad_begin,
            });
        }
        Ok(axes)
    }
}

impl Infer for ConvTranspose {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        float_input(cx, 0)?;
        let dtype = same_dtype(cx, 0, 1)?;
        if self.group < 1 {
            return invalid!("group must be positive, found {}", self.group);
        }
        let wt = cx.input(1)?;
        let Some(xd) = nchw(cx, 0)? else {
            return one(TensorType::unknown_rank(dtype));
        };
        let r = xd.len() - 2;
        let m = match wt.dims() {
            Some(wd) if wd.len() != xd.len() => {
                return invalid!("weight has rank {}, input has rank {}", wd.len(), xd.len());
            }
            Some(wd) => {
                if let (Some(c), Some(wc)) = (xd[1].known(), wd[0].known())
                    && c != wc
                {
                    return invalid!("input has {c} channels, weight {wc}");
                }
                match wd[1].known() {
                    Some(m) => Dim::Known(m * self.group as u64),
                    None => Dim::Unknown,
                }
            }
            None => Dim::Unknown,
        };
        let mut dims = vec![xd[0].clone(), m];
        let spatial: Option<Vec<usize>> = xd[2..]
            .iter()
            .map(|d| d.known().map(|n| n as usize))
            .collect();
        match (conv_kernel(self.kernel_shape.as_deref(), wt), spatial) {
            (Some(k), Some(input)) => {
                dims.extend(
                    self.axes(&input, &k)?
                        .iter()
                        .map(|a| Dim::Known(a.output as u64)),
                );
            }
            _ => {
                // The output extent is still known when it is given.
                match self.output_shape.as_ref().filter(|s| s.len() >= r) {
                    Some(s) => dims.extend(s[s.len() - r..].iter().map(|&n| Dim::Known(n as u64))),
                    None => dims.extend(vec![Dim::Unknown; r]),
                }
            }
        }
        one(TensorType::new(dtype, Shape::Ranked(dims)))
    }
}

impl Infer for DeformConv {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        float_input(cx, 0)?;
        let dtype = same_dtype(cx, 0, 1)?;
        same_dtype(cx, 0, 2)?;
        let shape = conv_shape(cx, 0, 1, &self.window_attrs())?;
        // Unknown output extents may still be read off the offsets.
        let shape = match (shape, cx.input(2)?.dims()) {
            (Shape::Ranked(mut d), Some(od)) if od.len() == d.len() => {
                for i in 2..d.len() {
                    if d[i] == Dim::Unknown {
                        d[i] = od[i].clone();
                    }
                }
                Shape::Ranked(d)
            }
            (s, _) => s,
        };
        one(TensorType::new(dtype, shape))
    }
}

/// Output type of a pool: `[N, C, pooled spatial...]`.
fn pool_type(cx: &InferCx, dtype: DType, a: &WindowAttrs) -> Result<TensorType, OpError> {
    let win = a.window(a.kernel_shape.unwrap_or_default())?;
    let Some(xd) = nchw(cx, 0)? else {
        return Ok(TensorType::with_rank(dtype, win.rank() + 2));
    };
    if xd.len() != win.rank() + 2 {
        return invalid!(
            "kernel_shape has {} values for an input of rank {}",
            win.rank(),
            xd.len()
        );
    }
    let mut dims = xd[..2].to_vec();
    dims.extend(win.out_dims(&xd[2..])?);
    Ok(TensorType::new(dtype, Shape::Ranked(dims)))
}

fn pool_dtype(cx: &InferCx, ints: bool) -> Result<DType, OpError> {
    if ints {
        expect_dtype(
            cx,
            0,
            |d| d.is_float() || matches!(d, DType::I8 | DType::U8),
            "a float type, i8 or u8",
        )
    } else {
        float_input(cx, 0)
    }
}

impl Infer for AveragePool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = pool_dtype(cx, false)?;
        one(pool_type(cx, dtype, &self.window_attrs())?)
    }
}

impl Infer for MaxPool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = pool_dtype(cx, true)?;
        if !matches!(self.storage_order, 0 | 1) {
            return invalid!("storage_order must be 0 or 1, found {}", self.storage_order);
        }
        let y = pool_type(cx, dtype, &self.window_attrs())?;
        let indices = TensorType::new(DType::I64, y.shape.clone());
        Ok(vec![y, indices][..cx.num_outputs.clamp(1, 2)].to_vec())
    }
}

impl Infer for LpPool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = pool_dtype(cx, false)?;
        one(pool_type(cx, dtype, &self.window_attrs())?)
    }
}

/// `[N, C, 1, ..., 1]`.
fn global_pool(cx: &InferCx, ints: bool) -> Result<Vec<TensorType>, OpError> {
    let dtype = pool_dtype(cx, ints)?;
    let shape = match nchw(cx, 0)? {
        Some(d) => {
            let mut dims = d[..2].to_vec();
            dims.extend(vec![Dim::Known(1); d.len() - 2]);
            Shape::Ranked(dims)
        }
        None => Shape::UnknownRank,
    };
    one(TensorType::new(dtype, shape))
}

impl Infer for GlobalAveragePool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        global_pool(cx, false)
    }
}

impl Infer for GlobalMaxPool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        global_pool(cx, true)
    }
}

impl Infer for GlobalLpPool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        global_pool(cx, false)
    }
}

impl MaxUnpool {
    /// The unpooled spatial extents: `(in - 1) * stride - pads + kernel`.
    pub fn default_extents(&self, input: &[Dim]) -> Result<Vec<Dim>, OpError> {
        let win = Window::new(
            &self.kernel_shape,
            self.strides.as_deref(),
            None,
            self.pads.as_deref(),
            AutoPad::NotSet,
            false,
        )?;
        let r = win.rank();
        if input.len() != r {
            return invalid!(
                "kernel_shape has {r} values for {} spatial axes",
                input.len()
            );
        }
        input
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let Some(n) = d.known() else {
                    return Ok(Dim::Unknown);
                };
                let full = (n.max(1) - 1)
                    .checked_mul(win.strides[i] as u64)
                    .and_then(|x| x.checked_add(win.kernel[i] as u64))
                    .ok_or_else(|| OpError::Invalid("unpooled extent is too large".into()))?;
                let pads = (win.pads[i] + win.pads[r + i]) as u64;
                match full.checked_sub(pads) {
                    Some(e) if n > 0 => Ok(Dim::Known(e)),
                    Some(_) => Ok(Dim::Known(0)),
                    None => invalid!("pads {:?} exceed the unpooled extent", win.pads),
                }
            })
            .collect()
    }
}

impl Infer for MaxUnpool {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = cx.dtype(0)?;
        expect_dtype(cx, 1, |d| d == DType::I64, "i64")?;
        if cx.opt_input(2).is_some() {
            if let Some(shape) = cx.ints(2) {
                return one(TensorType::new(
                    dtype,
                    super::infer::shape_from_ints(&shape),
                ));
            }
            let rank = cx.input(0)?.rank();
            return one(match rank {
                Some(r) => TensorType::with_rank(dtype, r),
                None => TensorType::unknown_rank(dtype),
            });
        }
        let Some(xd) = nchw(cx, 0)? else {
            return one(TensorType::with_rank(dtype, self.kernel_shape.len() + 2));
        };
        let mut dims = xd[..2].to_vec();
        dims.extend(self.default_extents(&xd[2..])?);
        one(TensorType::new(dtype, Shape::Ranked(dims)))
    }
}

impl Infer for Col2Im {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = cx.dtype(0)?;
        let x = cx.input(0)?;
        if let Some(r) = x.rank()
            && r != 3
        {
            return invalid!("input must have rank 3, found {r}");
        }
        let (image, block) = (cx.ints(1), cx.ints(2));
        // The number of image axes: from either shape input's value or length.
        let rank = match (&image, &block) {
            (Some(v), _) | (None, Some(v)) => Some(v.len()),
            _ => cx
                .input(1)?
                .dims()
                .and_then(|d| d.first()?.known())
                .map(|n| n as usize),
        };
        let Some(r) = rank else {
            return one(TensorType::unknown_rank(dtype));
        };
        let xd = x.dims();
        let n = xd.map_or(Dim::Unknown, |d| d[0].clone());
        // Channels: the input's second dim over the block size.
        let c = match (xd.and_then(|d| d[1].known()), &block) {
            (Some(cb), Some(b)) => {
                let taps = b.iter().try_fold(1u64, |acc, &v| {
                    u64::try_from(v)
                        .ok()
                        .filter(|&v| v > 0)
                        .and_then(|v| acc.checked_mul(v))
                });
                match taps {
                    Some(k) if cb % k == 0 => Dim::Known(cb / k),
                    _ => return invalid!("{cb} channels do not split into blocks of {b:?}"),
                }
            }
            _ => Dim::Unknown,
        };
        let mut dims = vec![n, c];
        match image {
            Some(v) if v.len() == r => dims.extend(v.iter().map(|&d| {
                if d >= 0 {
                    Dim::Known(d as u64)
                } else {
                    Dim::Unknown
                }
            })),
            _ => dims.extend(vec![Dim::Unknown; r]),
        }
        one(TensorType::new(dtype, Shape::Ranked(dims)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `f32[N,3,?]` to a type.
    pub(crate) fn ty(s: &str) -> TensorType {
        let (d, dims) = s.trim_end_matches(']').split_once('[').unwrap();
        let dtype = DType::all().find(|t| t.name() == d).unwrap();
        let dims = dims
            .split(',')
            .map(|x| match x.parse::<u64>() {
                Ok(n) => Dim::Known(n),
                Err(_) if x == "?" => Dim::Unknown,
                Err(_) => Dim::sym(x),
            })
            .collect();
        TensorType::new(dtype, Shape::Ranked(dims))
    }

    fn infer(op: impl Into<Op>, inputs: &[&str]) -> Result<Vec<String>, OpError> {
        let inputs: Vec<Option<TensorType>> = inputs.iter().map(|s| Some(ty(s))).collect();
        let cx = InferCx {
            inputs: &inputs,
            values: &[],
            num_outputs: 2,
            syms: &[],
        };
        Ok(op
            .into()
            .infer(&cx)?
            .iter()
            .map(|t| t.to_string())
            .collect())
    }

    fn conv() -> Conv {
        Conv {
            auto_pad: AutoPad::NotSet,
            dilations: None,
            group: 1,
            kernel_shape: None,
            pads: None,
            strides: None,
        }
    }

    #[test]
    fn conv_output_extents() {
        // (32 + 2 - 3) / 2 + 1 = 16; (20 + 2 - (2*2+1)) / 2 + 1 = 9.
        let mut op = conv();
        op.pads = Some(vec![1, 1, 1, 1]);
        op.strides = Some(vec![2, 2]);
        op.dilations = Some(vec![1, 2]);
        assert_eq!(
            infer(op, &["f32[N,3,32,20]", "f32[8,3,3,3]"]).unwrap(),
            ["f32[N,8,16,9]"]
        );
        // SAME_UPPER keeps ceil(in / stride) whatever the kernel.
        let mut op = conv();
        op.auto_pad = AutoPad::SameUpper;
        op.strides = Some(vec![3]);
        assert_eq!(
            infer(op, &["f32[1,2,10]", "f32[4,2,5]"]).unwrap(),
            ["f32[1,4,4]"]
        );
        // Channels must match the weight times the groups.
        assert!(infer(conv(), &["f32[1,3,8,8]", "f32[4,2,3,3]"]).is_err());
        // The kernel may be unknown: so are the output extents.
        assert_eq!(
            infer(conv(), &["f32[1,3,8,8]", "f32[4,3,K,K]"]).unwrap(),
            ["f32[1,4,?,?]"]
        );
    }

    #[test]
    fn pool_extents_with_ceil_mode_and_indices() {
        let op = MaxPool {
            auto_pad: AutoPad::NotSet,
            ceil_mode: true,
            dilations: None,
            kernel_shape: vec![3, 3],
            pads: None,
            storage_order: 0,
            strides: Some(vec![2, 2]),
        };
        // ceil((112 - 3) / 2) + 1 = 56.
        assert_eq!(
            infer(op, &["f32[1,64,112,112]"]).unwrap(),
            ["f32[1,64,56,56]", "i64[1,64,56,56]"]
        );
    }

    #[test]
    fn conv_transpose_extents() {
        let op = ConvTranspose {
            auto_pad: AutoPad::NotSet,
            dilations: None,
            group: 2,
            kernel_shape: None,
            output_padding: Some(vec![1]),
            output_shape: None,
            pads: Some(vec![1, 1]),
            strides: Some(vec![2]),
        };
        // 2 * (5 - 1) + 1 + 3 - 2 = 10 outputs, 3 maps per group.
        assert_eq!(
            infer(op, &["f32[1,4,5]", "f32[4,3,3]"]).unwrap(),
            ["f32[1,6,10]"]
        );
    }
}
