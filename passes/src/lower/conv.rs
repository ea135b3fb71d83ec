//! Lowerings of the conv family: convolution, transposed convolution,
//! Col2Im and pooling.
//!
//! A convolution takes one of two strategies, recorded as the `conv`
//! schedule knob:
//! - `im2col_gemm` / `gemm_1x1` ([`gemm`]): tiles of the unfolded input
//!   packed into scratch and multiplied by the weights with a
//!   register-blocked micro-kernel (1×1 convolutions read the input as it
//!   is);
//! - `direct` ([`direct`]): a loop nest over the window taps, vectorised
//!   along the output width, for depthwise convolutions and tiny channel
//!   counts.
//!
//! Both add the bias and store through the fused epilogue. Integer
//! convolutions (ConvInteger, QLinearConv: [`quant`]) walk directly,
//! accumulating in i32. Pools
//! ([`pool`]) and direct convolutions share the window walk of
//! [`window`], which never reads padding. Transposed convolutions and
//! Col2Im ([`transpose`]) gather, for each output, the inputs that a
//! forward convolution would have spread onto it.

mod direct;
mod gemm;
mod pool;
mod quant;
mod transpose;
mod window;

use super::cx::NodeCx;
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::{Expr, LoopKind, Ty};
use saturn_ir::ops::{AxisWindow, Windowed};
use saturn_ir::{DType, Op};

/// Work (multiply-adds or taps) from which the outer loop runs in
/// parallel.
const PARALLEL_MIN: usize = 1 << 15;

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Option<Result<(), Unsupported>> {
    let op = cx.g.node(node).op.clone();
    Some(match &op {
        Op::Conv(o) => conv(cx, o),
        Op::ConvInteger(_) | Op::QLinearConv(_) => quant::lower(cx, &op),
        Op::ConvTranspose(o) => transpose::conv_transpose(cx, o),
        Op::Col2Im(o) => transpose::col2im(cx, o),
        Op::MaxPool(_) | Op::AveragePool(_) | Op::LpPool(_) => pool::lower(cx, &op),
        Op::GlobalAveragePool(_) | Op::GlobalMaxPool(_) | Op::GlobalLpPool(_) => {
            pool::lower_global(cx, &op)
        }
        _ => return None,
    })
}

/// The shapes of a convolution, checked.
pub(super) struct ConvShape {
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub m: usize,
    pub g: usize,
    /// Input and output channels per group.
    pub cg: usize,
    pub mg: usize,
    pub axes: Vec<AxisWindow>,
    /// Taps of the kernel (product of its extents).
    pub taps: usize,
    pub in_plane: usize,
    pub out_plane: usize,
}

impl ConvShape {
    /// Shapes of a forward convolution of input `x` by weight `w` (input
    /// positions), with the window attributes of `op`.
    fn new(cx: &NodeCx, op: &dyn Windowed, x: usize, w: usize) -> Result<ConvShape, Unsupported> {
        let (xs, ws) = (cx.in_shape(x), cx.in_shape(w));
        let a = op.window_attrs();
        if xs.len() < 3 || ws.len() != xs.len() {
            return unsupported(format!("convolution of input {xs:?} by weight {ws:?}"));
        }
        if a.group < 1 {
            return unsupported(format!("group {}", a.group));
        }
        let g = a.group as usize;
        if xs[1] != ws[1] * g || ws[0] % g != 0 {
            return unsupported(format!(
                "input {xs:?} and weight {ws:?} do not match for {g} groups"
            ));
        }
        let wk: Vec<i64> = ws[2..].iter().map(|&d| d as i64).collect();
        if let Some(k) = a.kernel_shape
            && *k != wk
        {
            return unsupported(format!(
                "kernel_shape {k:?} differs from the weight's {wk:?}"
            ));
        }
        let axes = a
            .window(&wk)
            .and_then(|win| win.axes(&xs[2..]))
            .map_err(|e| Unsupported(format!("convolution window: {e}")))?;
        let mut want = vec![xs[0], ws[0]];
        want.extend(axes.iter().map(|a| a.output));
        if want != cx.out_shape(0) {
            return unsupported("convolution output shape disagrees with its window");
        }
        Ok(ConvShape {
            n: xs[0],
            c: xs[1],
            m: ws[0],
            g,
            cg: ws[1],
            mg: ws[0] / g,
            taps: ws[2..].iter().product(),
            in_plane: xs[2..].iter().product(),
            out_plane: axes.iter().map(|a| a.output).product(),
            axes,
        })
    }
}

fn conv(cx: &mut NodeCx, o: &saturn_ir::ops::Conv) -> Result<(), Unsupported> {
    let dt = cx.in_dtype(0);
    if !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("conv on {dt}"));
    }
    let s = ConvShape::new(cx, o, 0, 1)?;
    let (Some(x), Some(w)) = (cx.input(0), cx.input(1)) else {
        return unsupported("conv without input or weight");
    };
    let bias = cx.input(2);
    if bias.is_some() && cx.in_shape(2) != [s.m] {
        return unsupported(format!("conv bias of shape {:?}", cx.in_shape(2)));
    }
    if s.n * s.m * s.out_plane == 0 {
        return Ok(());
    }
    let plan = gemm::Plan::new(cx, &s, dt);
    // Depthwise (one input channel per group) and tiny reductions gain
    // nothing from unfolding; neither does a panel set too big to hold.
    let direct = (s.cg == 1 && s.taps > 1)
        || (s.cg * s.taps < 4 && s.cg > 0)
        || plan.scratch() > gemm::MAX_SCRATCH;
    if direct {
        direct::lower(cx, &s, x, w, bias, dt)
    } else {
        gemm::lower(cx, &s, &plan, x, w, bias, dt)
    }
}

/// The smallest value of an integer or float dtype, as a scalar constant.
pub(super) fn lowest(dt: DType) -> Expr {
    let ty = Ty::scalar(dt);
    use DType::*;
    match dt {
        F32 | F64 => Expr::Float(f64::NEG_INFINITY, ty),
        I8 => Expr::Int(i8::MIN as i64, ty),
        I16 => Expr::Int(i16::MIN as i64, ty),
        I32 => Expr::Int(i32::MIN as i64, ty),
        I64 => Expr::Int(i64::MIN, ty),
        _ => Expr::Int(0, ty),
    }
}

/// Opens one loop over the `n·c` planes of an `[N, C, ...]` tensor
/// (parallel when asked) and returns the image and channel of the plane;
/// the caller closes it with one `end_for`.
pub(super) fn plane_loop(cx: &mut NodeCx, n: usize, c: usize, parallel: bool) -> (Expr, Expr) {
    let kind = if parallel {
        LoopKind::Parallel
    } else {
        LoopKind::Serial
    };
    if n == 1 {
        let pc = cx.b.begin_for("c", 0, c, 1, kind);
        return (Expr::idx(0), pc);
    }
    let p = cx.b.begin_for("plane", 0, n * c, 1, kind);
    let pn = cx.b.let_("n", p.clone() / c as i64);
    let pc = cx.b.let_("c", p % c as i64);
    (pn, pc)
}
