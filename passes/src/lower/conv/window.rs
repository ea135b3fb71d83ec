//! The sliding-window loop nest that direct convolutions and pools share.
//!
//! [`walk`] visits every output position of one `[spatial...]` plane and,
//! for each, every tap of its window that lies inside the input: padded
//! positions are never read. The outer spatial axes loop over their
//! outputs one at a time and bound each window's taps by index arithmetic
//! (`klo..khi`). The last axis is split, at lowering time, into the
//! outputs whose whole window lies inside the input (the interior, walked
//! in vectors of `lanes` consecutive outputs, a masked vector for the
//! rest or for an interior narrower than a vector) and the borders before
//! and after it (scalar, with bounded taps). A [`Body`] declares its
//! accumulators per output, consumes each tap and stores the result.

use super::super::Unsupported;
use super::super::cx::NodeCx;
use saturn_ir::kernel::{Expr, LoopKind};
use saturn_ir::ops::AxisWindow;
use saturn_ir::tensor::strides;

/// One tap of the window of the output at hand.
pub(crate) struct Tap<'a> {
    /// Input position on each spatial axis (on the last axis, that of
    /// lane 0; lane `j` reads `stride · j` further).
    pub pos: &'a [Expr],
    /// Row-major offset of `pos` in the input plane.
    pub off: Expr,
    /// Row-major index of the tap in the kernel.
    pub tap: Expr,
    pub lanes: u16,
    /// Input elements between the positions of consecutive lanes.
    pub stride: i64,
    pub mask: Option<Expr>,
}

/// The output at hand, once its taps are done.
pub(crate) struct Out {
    /// Row-major offset of the output (lane 0) in the output plane.
    pub l: Expr,
    pub lanes: u16,
    pub mask: Option<Expr>,
    /// Taps inside the input (index type).
    pub count: Expr,
    /// Taps inside the input and its pads (what `count_include_pad`
    /// divides by).
    pub padded: Expr,
}

/// What a walk computes at each output.
pub(crate) trait Body {
    fn begin(&mut self, cx: &mut NodeCx, lanes: u16) -> Result<(), Unsupported>;
    fn tap(&mut self, cx: &mut NodeCx, t: &Tap) -> Result<(), Unsupported>;
    fn end(&mut self, cx: &mut NodeCx, o: &Out) -> Result<(), Unsupported>;
}

/// The outputs `[lo, hi)` of an axis whose whole window lies inside the
/// input.
pub(crate) fn interior(a: &AxisWindow) -> (usize, usize) {
    let (s, d, k) = (a.stride as i64, a.dilation as i64, a.kernel as i64);
    let pb = a.pad_begin;
    let out = a.output as i64;
    // o·s − pb ≥ 0
    let lo = if pb > 0 { (pb + s - 1) / s } else { 0 };
    let lo = lo.min(out);
    // o·s − pb + (k−1)·d ≤ input − 1
    let rhs = a.input as i64 - 1 + pb - (k - 1) * d;
    let hi = if rhs < 0 { 0 } else { rhs / s + 1 };
    let hi = hi.clamp(lo, out);
    (lo as usize, hi as usize)
}

/// Whether some output of the axis has no tap inside the input.
pub(crate) fn has_empty(a: &AxisWindow) -> bool {
    (0..a.output).any(|o| {
        let start = (o * a.stride) as i64 - a.pad_begin;
        let d = a.dilation as i64;
        let first = if start >= 0 { 0 } else { (-start + d - 1) / d };
        first >= a.kernel as i64 || start + first * d >= a.input as i64
    })
}

/// The window of one output `o` along an axis, as index expressions.
pub(crate) struct AxisAt {
    /// Input position of tap 0 (may lie in the padding).
    pub start: Expr,
    /// Taps `klo..khi` lie inside the input (empty when `khi <= klo`).
    pub klo: Expr,
    pub khi: Expr,
    pub count: Expr,
    pub padded: Expr,
}

pub(crate) fn axis_at(cx: &mut NodeCx, a: &AxisWindow, o: Expr) -> AxisAt {
    let (s, d, k) = (a.stride as i64, a.dilation as i64, a.kernel as i64);
    let (pb, input, pe) = (a.pad_begin, a.input as i64, a.pad_end as i64);
    let os = cx.b.let_("os", o * s);
    let start = cx.b.let_("start", os.clone() - pb);
    // Division truncates toward zero; the clamps make it a ceiling where
    // the result matters.
    let klo = cx.b.let_(
        "klo",
        ((Expr::idx(pb + d - 1) - os.clone()) / d).max(Expr::idx(0)),
    );
    let khi = cx.b.let_(
        "khi",
        ((Expr::idx(input + pb + d - 1) - os.clone()) / d).min(Expr::idx(k)),
    );
    let count =
        cx.b.let_("cnt", (khi.clone() - klo.clone()).max(Expr::idx(0)));
    let padded = cx.b.let_(
        "pcnt",
        ((Expr::idx(input + pe + pb + d - 1) - os) / d)
            .min(Expr::idx(k))
            .max(Expr::idx(0)),
    );
    AxisAt {
        start,
        klo,
        khi,
        count,
        padded,
    }
}

/// Visits every output of a plane with the window geometry `axes` (one
/// per spatial axis), vectorising the interior of the last axis with
/// `lanes` lanes (1: scalar).
pub(crate) fn walk(
    cx: &mut NodeCx,
    axes: &[AxisWindow],
    lanes: u16,
    body: &mut dyn Body,
) -> Result<(), Unsupported> {
    let r = axes.len();
    if r == 0 || axes.iter().any(|a| a.output == 0) {
        return Ok(());
    }
    let mut outer: Vec<(Expr, AxisAt)> = Vec::new();
    for (a, ax) in axes[..r - 1].iter().enumerate() {
        let o =
            cx.b.begin_for(&format!("o{a}"), 0, ax.output, 1, LoopKind::Serial);
        let at = axis_at(cx, ax, o.clone());
        outer.push((o, at));
    }
    let last = &axes[r - 1];
    let (lo, hi) = interior(last);
    // An interior narrower than a vector is one masked vector just wide
    // enough for it (13 outputs: 16 lanes, 13 active), not scalars.
    let vl = match hi - lo {
        0 | 1 => 1,
        w => lanes.min(w.next_power_of_two().min(u16::MAX as usize) as u16),
    };
    let w = Walk {
        axes,
        outer: &outer,
    };
    w.segment(cx, 0, lo, 1, true, body)?;
    w.segment(cx, lo, hi, vl, false, body)?;
    w.segment(cx, hi, last.output, 1, true, body)?;
    for _ in 0..r - 1 {
        cx.b.end_for();
    }
    Ok(())
}

struct Walk<'a> {
    axes: &'a [AxisWindow],
    outer: &'a [(Expr, AxisAt)],
}

impl Walk<'_> {
    /// Outputs `[start, end)` of the last axis; `border`: their windows may
    /// leave the input.
    fn segment(
        &self,
        cx: &mut NodeCx,
        start: usize,
        end: usize,
        lanes: u16,
        border: bool,
        body: &mut dyn Body,
    ) -> Result<(), Unsupported> {
        if end <= start {
            return Ok(());
        }
        let l = lanes as usize;
        let full = start + (end - start) / l * l;
        if full > start {
            let o =
                cx.b.begin_for("ow", start, full, l as i64, LoopKind::Serial);
            self.one(cx, o, lanes, None, border, body)?;
            cx.b.end_for();
        }
        if full < end {
            let mask = Some(Expr::idx((end - full) as i64));
            self.one(cx, Expr::idx(full as i64), lanes, mask, border, body)?;
        }
        Ok(())
    }

    fn one(
        &self,
        cx: &mut NodeCx,
        o: Expr,
        lanes: u16,
        mask: Option<Expr>,
        border: bool,
        body: &mut dyn Body,
    ) -> Result<(), Unsupported> {
        let axes = self.axes;
        let r = axes.len();
        let last = &axes[r - 1];
        let input: Vec<usize> = axes.iter().map(|a| a.input).collect();
        let output: Vec<usize> = axes.iter().map(|a| a.output).collect();
        let kernel: Vec<usize> = axes.iter().map(|a| a.kernel).collect();
        let (in_st, out_st, tap_st) = (strides(&input), strides(&output), strides(&kernel));
        body.begin(cx, lanes)?;
        let at_last = if border {
            Some(axis_at(cx, last, o.clone()))
        } else {
            None
        };
        let mut ks = Vec::new();
        for (a, (_, at)) in self.outer.iter().enumerate() {
            ks.push(cx.b.begin_for(
                &format!("k{a}"),
                at.klo.clone(),
                at.khi.clone(),
                1,
                LoopKind::Serial,
            ));
        }
        let (s, d) = (last.stride as i64, last.dilation as i64);
        let kl = match &at_last {
            Some(at) => cx.b.begin_for(
                &format!("k{}", r - 1),
                at.klo.clone(),
                at.khi.clone(),
                1,
                LoopKind::Serial,
            ),
            None => {
                let kind = if last.kernel >= 2 {
                    LoopKind::Unroll(last.kernel.min(4) as u32)
                } else {
                    LoopKind::Serial
                };
                cx.b.begin_for(&format!("k{}", r - 1), 0, last.kernel, 1, kind)
            }
        };
        let mut pos = Vec::new();
        let mut off = Expr::idx(0);
        let mut tap = Expr::idx(0);
        for (a, (_, at)) in self.outer.iter().enumerate() {
            let p = at.start.clone() + ks[a].clone() * axes[a].dilation as i64;
            off = off + p.clone() * in_st[a] as i64;
            tap = tap + ks[a].clone() * tap_st[a] as i64;
            pos.push(p);
        }
        let p = o.clone() * s - last.pad_begin + kl.clone() * d;
        off = off + p.clone();
        tap = tap + kl;
        pos.push(p);
        let off = cx.b.let_("off", off);
        let tap = cx.b.let_("tap", tap);
        body.tap(
            cx,
            &Tap {
                pos: &pos,
                off,
                tap,
                lanes,
                stride: s,
                mask: mask.clone(),
            },
        )?;
        for _ in 0..r {
            cx.b.end_for();
        }
        let mut count = match &at_last {
            Some(at) => at.count.clone(),
            None => Expr::idx(last.kernel as i64),
        };
        let mut padded = match &at_last {
            Some(at) => at.padded.clone(),
            None => Expr::idx(last.kernel as i64),
        };
        let mut l = o;
        for (a, (oa, at)) in self.outer.iter().enumerate() {
            count = count * at.count.clone();
            padded = padded * at.padded.clone();
            l = l + oa.clone() * out_st[a] as i64;
        }
        let count = cx.b.let_("count", count);
        let padded = cx.b.let_("padded", padded);
        body.end(
            cx,
            &Out {
                l,
                lanes,
                mask,
                count,
                padded,
            },
        )
    }
}
