//! Transposed convolution and Col2Im, as gathers.
//!
//! Both are adjoints of a forward convolution: a source element at
//! position `i` reaches the output at `o = i·s + k·d − pad` through tap
//! `k`. Rather than scattering (which would read the output back), each
//! output gathers its sources: for every tap, `q = o + pad − k·d` must be
//! a multiple of the stride with `q / s` inside the source. Each output is
//! accumulated in a register and stored once; the (image, channel) planes
//! run in parallel.

use super::super::cx::NodeCx;
use super::super::{Unsupported, unsupported};
use super::{PARALLEL_MIN, plane_loop};
use saturn_ir::kernel::build::KernelBuilder;
use saturn_ir::kernel::{BinOp, Expr, LoopKind, Ty};
use saturn_ir::ops::{AutoPad, Col2Im, ConvTranspose, Window};
use saturn_ir::tensor::strides;
use saturn_ir::{AttrValue, DType};

/// One axis of a gather: outputs `output`, sources `source`.
struct GAxis {
    output: usize,
    source: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: i64,
}

/// Visits every source of the output at `o` (one index per axis):
/// `leaf(b, source offset, tap index)` accumulates its term.
fn gather(
    b: &mut KernelBuilder,
    axes: &[GAxis],
    o: &[Expr],
    leaf: &dyn Fn(&mut KernelBuilder, Expr, Expr),
) {
    let source: Vec<usize> = axes.iter().map(|a| a.source).collect();
    let kernel: Vec<usize> = axes.iter().map(|a| a.kernel).collect();
    let (src_st, tap_st) = (strides(&source), strides(&kernel));
    #[allow(clippy::too_many_arguments)]
    fn go(
        b: &mut KernelBuilder,
        axes: &[GAxis],
        src_st: &[usize],
        tap_st: &[usize],
        o: &[Expr],
        a: usize,
        src: Expr,
        tap: Expr,
        leaf: &dyn Fn(&mut KernelBuilder, Expr, Expr),
    ) {
        if a == axes.len() {
            let src = b.let_("src", src);
            let tap = b.let_("tap", tap);
            leaf(b, src, tap);
            return;
        }
        let ax = &axes[a];
        let (s, d) = (ax.stride as i64, ax.dilation as i64);
        let k = b.begin_for(&format!("k{a}"), 0, ax.kernel, 1, LoopKind::Serial);
        let q = b.let_("q", o[a].clone() + ax.pad_begin - k.clone() * d);
        let mut cond = Expr::bin(
            BinOp::And,
            q.clone().ge(Expr::idx(0)),
            q.clone().lt(Expr::idx(ax.source as i64 * s)),
        );
        if s > 1 {
            let rem = Expr::bin(BinOp::Eq, q.clone() % s, Expr::idx(0));
            cond = Expr::bin(BinOp::And, cond, rem);
        }
        let src2 = src + q / s * src_st[a] as i64;
        let tap2 = tap + k * tap_st[a] as i64;
        b.if_(
            cond,
            |b| go(b, axes, src_st, tap_st, o, a + 1, src2, tap2, leaf),
            |_| {},
        );
        b.end_for();
    }
    go(
        b,
        axes,
        &src_st,
        &tap_st,
        o,
        0,
        Expr::idx(0),
        Expr::idx(0),
        leaf,
    );
}

/// Opens one loop per output axis; returns the indices and the row-major
/// offset in the output plane.
fn output_loops(cx: &mut NodeCx, axes: &[GAxis]) -> (Vec<Expr>, Expr) {
    let out: Vec<usize> = axes.iter().map(|a| a.output).collect();
    let st = strides(&out);
    let mut idx = Vec::new();
    let mut l = Expr::idx(0);
    for (a, &e) in out.iter().enumerate() {
        let o = cx.b.begin_for(&format!("o{a}"), 0, e, 1, LoopKind::Serial);
        l = l + o.clone() * st[a] as i64;
        idx.push(o);
    }
    (idx, l)
}

pub(super) fn conv_transpose(cx: &mut NodeCx, op: &ConvTranspose) -> Result<(), Unsupported> {
    let dt = cx.in_dtype(0);
    if !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("conv_transpose on {dt}"));
    }
    let (xs, ws) = (cx.in_shape(0), cx.in_shape(1));
    if xs.len() < 3 || ws.len() != xs.len() || op.group < 1 {
        return unsupported(format!(
            "transposed convolution of {xs:?} by {ws:?} in {} groups",
            op.group
        ));
    }
    let g = op.group as usize;
    if ws[0] != xs[1] || xs[1] % g != 0 {
        return unsupported(format!(
            "input {xs:?} and weight {ws:?} do not match for {g} groups"
        ));
    }
    let wk: Vec<i64> = ws[2..].iter().map(|&d| d as i64).collect();
    if let Some(k) = &op.kernel_shape
        && *k != wk
    {
        return unsupported(format!(
            "kernel_shape {k:?} differs from the weight's {wk:?}"
        ));
    }
    let t = op
        .axes(&xs[2..], &wk)
        .map_err(|e| Unsupported(format!("transposed convolution window: {e}")))?;
    let axes: Vec<GAxis> = t
        .iter()
        .map(|a| GAxis {
            output: a.output,
            source: a.input,
            kernel: a.kernel,
            stride: a.stride,
            dilation: a.dilation,
            pad_begin: a.pad_begin,
        })
        .collect();
    let (n, c, mg) = (xs[0], xs[1], ws[1]);
    let (m, cg) = (mg * g, c / g);
    let mut want = vec![n, m];
    want.extend(axes.iter().map(|a| a.output));
    if want != cx.out_shape(0) {
        return unsupported("transposed convolution output shape disagrees with its window");
    }
    let (Some(x), Some(w)) = (cx.input(0), cx.input(1)) else {
        return unsupported("conv_transpose without input or weight");
    };
    let bias = cx.input(2);
    if bias.is_some() && cx.in_shape(2) != [m] {
        return unsupported(format!("conv_transpose bias of shape {:?}", cx.in_shape(2)));
    }
    let out_plane: usize = axes.iter().map(|a| a.output).product();
    let in_plane: usize = xs[2..].iter().product();
    let taps: usize = ws[2..].iter().product();
    if n * m * out_plane == 0 {
        return Ok(());
    }
    cx.schedule("conv", AttrValue::Str("gather".into()));
    let work = n * m * out_plane * cg * taps;
    let parallel = n * m >= 2 && work >= PARALLEL_MIN;
    let (pn, pm) = plane_loop(cx, n, m, parallel);
    let gi = cx.b.let_("g", pm.clone() / mg as i64);
    let mm = cx.b.let_("mm", pm.clone() % mg as i64);
    let xbase = cx.b.let_(
        "xbase",
        (pn.clone() * c as i64 + gi.clone() * cg as i64) * in_plane as i64,
    );
    // Weight [C, M/g, taps...]: channel c = g·cg + ci, map mm.
    let wbase =
        cx.b.let_("wbase", (gi * (cg * mg) as i64 + mm) * taps as i64);
    let (o, l) = output_loops(cx, &axes);
    let ty = Ty::scalar(dt);
    let acc = cx.b.decl("acc", Expr::constant(0.0, ty));
    let leaf = |b: &mut KernelBuilder, src: Expr, tap: Expr| {
        let ci = b.begin_for("ci", 0, cg, 1, LoopKind::Serial);
        let xv = Expr::load(x, xbase.clone() + ci.clone() * in_plane as i64 + src);
        let wv = Expr::load(w, wbase.clone() + ci * (mg * taps) as i64 + tap);
        b.assign(acc, Expr::mul_add(xv, wv, Expr::Var(acc)));
        b.end_for();
    };
    gather(&mut cx.b, &axes, &o, &leaf);
    let mut v = Expr::Var(acc);
    if let Some(bb) = bias {
        v = Expr::bin(BinOp::Add, v, Expr::load(bb, pm.clone()));
    }
    cx.store_out_view(&[n, m, out_plane], &[pn, pm, l], v, None)?;
    for _ in &axes {
        cx.b.end_for();
    }
    cx.b.end_for();
    Ok(())
}

pub(super) fn col2im(cx: &mut NodeCx, op: &Col2Im) -> Result<(), Unsupported> {
    let dt = cx.in_dtype(0);
    if !matches!(dt, DType::F32 | DType::F64) {
        return unsupported(format!("col2im on {dt}"));
    }
    let xs = cx.in_shape(0);
    let out = cx.out_shape(0);
    if xs.len() != 3 || out.len() < 3 {
        return unsupported(format!("col2im of {xs:?} to {out:?}"));
    }
    // Shapes given as runtime inputs follow from the static shapes: the
    // image is the output's, the block the only one that fits.
    let image = match cx.in_const(1) {
        Some(t) => t.to_i64_vec(),
        None => out[2..].iter().map(|&d| d as i64).collect(),
    };
    let block = match cx.in_const(2) {
        Some(t) => t.to_i64_vec(),
        None => deduce_block(op, &xs, &out)?,
    };
    if xs.len() != 3 || image.len() != block.len() || image.is_empty() {
        return unsupported(format!(
            "col2im of {xs:?} with image {image:?} and block {block:?}"
        ));
    }
    if image.iter().any(|&d| d < 0) {
        return unsupported(format!("col2im image shape {image:?}"));
    }
    let win = Window::new(
        &block,
        op.strides.as_deref(),
        op.dilations.as_deref(),
        op.pads.as_deref(),
        AutoPad::NotSet,
        false,
    )
    .map_err(|e| Unsupported(format!("col2im window: {e}")))?;
    let image: Vec<usize> = image.iter().map(|&d| d as usize).collect();
    let w = win
        .axes(&image)
        .map_err(|e| Unsupported(format!("col2im window: {e}")))?;
    let taps: usize = w.iter().map(|a| a.kernel).product();
    let blocks: usize = w.iter().map(|a| a.output).product();
    if taps == 0 || !xs[1].is_multiple_of(taps) || xs[2] != blocks {
        return unsupported(format!(
            "input {xs:?} does not hold {blocks} blocks of {taps} taps"
        ));
    }
    let (n, c) = (xs[0], xs[1] / taps);
    let mut want = vec![n, c];
    want.extend(&image);
    if want != cx.out_shape(0) {
        return unsupported("col2im output shape disagrees with its window");
    }
    let plane: usize = image.iter().product();
    if n * c * plane == 0 {
        return Ok(());
    }
    let Some(x) = cx.input(0) else {
        return unsupported("col2im without input");
    };
    // The image is the output; the blocks are the sources.
    let axes: Vec<GAxis> = w
        .iter()
        .map(|a| GAxis {
            output: a.input,
            source: a.output,
            kernel: a.kernel,
            stride: a.stride,
            dilation: a.dilation,
            pad_begin: a.pad_begin,
        })
        .collect();
    cx.schedule("conv", AttrValue::Str("gather".into()));
    let parallel = n * c >= 2 && n * c * plane * taps >= PARALLEL_MIN;
    let (pn, pc) = plane_loop(cx, n, c, parallel);
    let xbase = cx.b.let_(
        "xbase",
        (pn.clone() * xs[1] as i64 + pc.clone() * taps as i64) * blocks as i64,
    );
    let (o, l) = output_loops(cx, &axes);
    let ty = Ty::scalar(dt);
    let acc = cx.b.decl("acc", Expr::constant(0.0, ty));
    let leaf = |b: &mut KernelBuilder, src: Expr, tap: Expr| {
        let v = Expr::load(x, xbase.clone() + tap * blocks as i64 + src);
        b.assign(acc, Expr::bin(BinOp::Add, Expr::Var(acc), v));
    };
    gather(&mut cx.b, &axes, &o, &leaf);
    cx.store_out_view(&[n, c, plane], &[pn, pc, l], Expr::Var(acc), None)?;
    for _ in &axes {
        cx.b.end_for();
    }
    cx.b.end_for();
    Ok(())
}

/// The block shape of a Col2Im whose block input is not a constant: the
/// one factorisation of the taps (`C·taps / C`) whose window count over the
/// image matches the input's blocks.
fn deduce_block(op: &Col2Im, xs: &[usize], out: &[usize]) -> Result<Vec<i64>, Unsupported> {
    let r = out.len() - 2;
    if out[1] == 0 || !xs[1].is_multiple_of(out[1]) {
        return unsupported(format!("col2im of {xs:?} to {out:?}"));
    }
    let taps = xs[1] / out[1];
    if taps == 0 || taps > 1 << 20 {
        return unsupported(format!("col2im with {taps} taps per block"));
    }
    let image: Vec<usize> = out[2..].to_vec();
    let mut found: Vec<Vec<i64>> = Vec::new();
    let mut cur = Vec::new();
    #[allow(clippy::too_many_arguments)]
    fn go(
        op: &Col2Im,
        image: &[usize],
        rest: usize,
        r: usize,
        cur: &mut Vec<i64>,
        found: &mut Vec<Vec<i64>>,
        blocks: usize,
    ) {
        if found.len() > 1 {
            return;
        }
        if cur.len() == r {
            if rest != 1 {
                return;
            }
            let fits = Window::new(
                cur,
                op.strides.as_deref(),
                op.dilations.as_deref(),
                op.pads.as_deref(),
                AutoPad::NotSet,
                false,
            )
            .and_then(|w| w.axes(image))
            .is_ok_and(|a| a.iter().map(|a| a.output).product::<usize>() == blocks);
            if fits {
                found.push(cur.clone());
            }
            return;
        }
        for k in 1..=rest {
            if rest.is_multiple_of(k) {
                cur.push(k as i64);
                go(op, image, rest / k, r, cur, found, blocks);
                cur.pop();
            }
        }
    }
    go(op, &image, taps, r, &mut cur, &mut found, xs[2]);
    match found.len() {
        1 => Ok(found.pop().unwrap()),
        0 => unsupported("col2im: no block shape fits the static shapes"),
        _ => unsupported("col2im: the block shape is not a constant and several fit"),
    }
}
