//! Lowerings of the movement family: ops that only move elements, so every
//! kernel dtype goes through the same code.
//!
//! Most of them are one idea, the one the interpreter's `gather_axes` is
//! built on: each output element reads one source element (or a fill
//! value), and along each output axis the source position depends on the
//! output position alone — an *axis map*. [`gather_maps`] turns per-axis
//! maps into copy nests. A map made of a few affine runs (slice, pad,
//! crop, a repeated period for tile, each source position repeated for
//! nearest upsampling by an integer factor) splits the output into boxes,
//! each copied by [`copy_nest`]: adjacent dims merged, the innermost one
//! vectorised (contiguous loads where the source is contiguous, strided
//! loads where it is not, square tiles when a transpose moves the
//! innermost dim), the outermost loop parallel when the copy is large.
//! Any other map becomes a table of source offsets in scratch memory,
//! stored at kernel start.
//!
//! Ops whose source positions depend on data (gather, scatter, one-hot,
//! reverse-sequence) are in [`index`]; resize is in [`resize`].
//!
//! **Runtime indices are clamped.** The interpreter rejects an index out
//! of range; generated code never reads or writes outside a buffer, so an
//! index (or sequence length) out of range is wrapped once (negative ones
//! count from the end) and then clamped into the valid range: it reads or
//! writes the nearest valid element instead of failing.

mod index;
mod resize;

use super::cx::NodeCx;
use super::elementwise::{coalesce, vector_loop};
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, Ty};
use saturn_ir::ops::rules::{permutation, shape_range, slice_axis, slice_specs};
use saturn_ir::ops::{DepthToSpaceMode, PadMode};
use saturn_ir::tensor::{Tensor, strides};
use saturn_ir::{AttrValue, DType, Op};

/// Copies at least this many elements run their outer loop in parallel.
const PARALLEL_MIN: usize = 1 << 15;
/// Elements per parallel chunk of a one-dimensional copy.
const CHUNK: usize = 4096;
/// A map with more runs than this is handled as a period, a repeat or a
/// table.
const RUNS_MAX: usize = 8;
/// Most boxes one copy splits into before it uses offset tables.
const BLOCKS_MAX: usize = 256;
/// Most entries of offset tables (each one a store at kernel start).
const TABLE_MAX: usize = 1 << 16;

type R = Result<(), Unsupported>;

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Option<R> {
    use Op::*;
    let op = cx.g.node(node).op.clone();
    Some(match &op {
        Reshape(_) | Flatten(_) | Squeeze(_) | Unsqueeze(_) | Identity(_) => flat_copy(cx),
        Shape(o) => shape(cx, o.start, o.end),
        Size(_) => size(cx),
        Transpose(o) => transpose(cx, o.perm.as_deref()),
        DepthToSpace(o) => depth_to_space(cx, o.blocksize, o.mode, false),
        SpaceToDepth(o) => depth_to_space(cx, o.blocksize, o.mode, true),
        Concat(o) => concat(cx, o.axis),
        Split(o) => split(cx, o.axis),
        Slice(_) => slice(cx),
        Tile(_) => tile(cx),
        Pad(o) => pad(cx, o.mode),
        CenterCropPad(o) => center_crop_pad(cx, o.axes.as_deref()),
        Compress(o) => compress(cx, o.axis),
        Trilu(o) => trilu(cx, o.upper),
        EyeLike(o) => eye_like(cx, o.k),
        Range(_) => range(cx),
        ConstantOfShape(o) => constant_of_shape(cx, o.value.as_ref()),
        Gather(o) => index::gather(cx, o.axis),
        GatherElements(o) => index::gather_elements(cx, o.axis),
        GatherND(o) => index::gather_nd(cx, o.batch_dims),
        ScatterElements(o) => index::scatter_elements(cx, o.axis, o.reduction),
        ScatterND(o) => index::scatter_nd(cx, o.reduction),
        OneHot(o) => index::one_hot(cx, o.axis),
        ReverseSequence(o) => index::reverse_sequence(cx, o.batch_axis, o.time_axis),
        Resize(o) => resize::lower(cx, o),
        BitCast(_) => bit_cast(cx),
        TensorScatter(o) => index::tensor_scatter(cx, o.axis, o.mode),
        _ => return None,
    })
}

// ---- copy nests ----

/// One dim of a copy: its extent and the element strides of the output
/// and of the source along it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Axis {
    pub n: usize,
    pub os: i64,
    pub ss: i64,
}

/// What a copy reads.
#[derive(Clone, Debug)]
pub(super) enum Src {
    /// `buf[base + Σ i·ss]`.
    Buf { buf: BufId, base: Expr },
    /// One value everywhere (a constant or a variable bound earlier).
    Value(Expr),
    /// `buf[base + Σ i·ss]` (of dtype `from`) with its bits read as
    /// dtype `to`, of the same width.
    Bits {
        buf: BufId,
        base: Expr,
        from: DType,
        to: DType,
    },
}

/// Lanes of a copy vector: one vector register of the dtype.
pub(super) fn copy_lanes(cx: &NodeCx, dt: DType) -> u16 {
    cx.lanes(dt)
}

/// The side of the square tiles of a transpose: a cache line of the
/// dtype, between 8 and 32 elements (a multiple of [`copy_lanes`]).
fn tile_side(dt: DType) -> usize {
    (64 / dt.bits().div_ceil(8).max(1)).clamp(8, 32)
}

fn unsup(e: impl std::fmt::Display) -> Unsupported {
    Unsupported(e.to_string())
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn istrides(shape: &[usize]) -> Vec<i64> {
    strides(shape).into_iter().map(|s| s as i64).collect()
}

/// `src` read at element offset `off` (from its base): `lanes` elements
/// `stride` apart, the first `mask` of them.
pub(super) fn read(src: &Src, off: Expr, lanes: u16, stride: i64, mask: Option<Expr>) -> Expr {
    match src {
        Src::Value(v) => v.clone().splat(lanes),
        Src::Buf { buf, base } => {
            let at = base.clone() + off;
            if lanes == 1 {
                Expr::load(*buf, at)
            } else if stride == 0 {
                Expr::load(*buf, at).splat(lanes)
            } else {
                Expr::load_vec(*buf, at, lanes, stride, mask)
            }
        }
        Src::Bits {
            buf,
            base,
            from,
            to,
        } => {
            let src = Src::Buf {
                buf: *buf,
                base: base.clone(),
            };
            let v = read(&src, off, lanes, stride, mask);
            if from == to {
                v
            } else if *from == DType::Bool || *to == DType::Bool {
                // A boolean is the byte 0 or 1; a byte as a boolean is
                // whether it is nonzero.
                v.cast(*to)
            } else {
                v.bitcast(*to)
            }
        }
    }
}

/// [`vector_loop`] without a loop around a single vector.
pub(super) fn vloop(
    cx: &mut NodeCx,
    name: &str,
    n: usize,
    lanes: u16,
    body: &mut dyn FnMut(&mut NodeCx, Expr, Option<Expr>) -> R,
) -> R {
    let l = lanes as usize;
    if n / l == 1 {
        body(cx, Expr::idx(0), None)?;
        if n > l {
            body(cx, Expr::idx(l as i64), Some(Expr::idx((n - l) as i64)))?;
        }
        return Ok(());
    }
    vector_loop(cx, name, n, lanes, body)
}

/// `Σ idx[d] · st[d]`.
fn dot(idx: &[Expr], st: &[i64]) -> Expr {
    let mut e = Expr::idx(0);
    for (i, s) in idx.iter().zip(st) {
        e = e + i.clone() * *s;
    }
    e
}

/// Copies the box `dims` of `src` to `out` at `obase`: dims merged where
/// both sides walk them alike, the innermost vectorised, the outermost
/// parallel when the box is large and `par` allows it.
pub(super) fn copy_nest(
    cx: &mut NodeCx,
    out: BufId,
    obase: Expr,
    dims: &[Axis],
    src: &Src,
    par: bool,
) -> R {
    let Some(total) = dims.iter().try_fold(1usize, |p, a| p.checked_mul(a.n)) else {
        return unsupported("copy too large");
    };
    if total == 0 {
        return Ok(());
    }
    let ext: Vec<usize> = dims.iter().map(|a| a.n).collect();
    let os: Vec<i64> = dims.iter().map(|a| a.os).collect();
    let ss: Vec<i64> = dims.iter().map(|a| a.ss).collect();
    let (ext, st) = coalesce(&ext, &[os, ss]);
    let (os, ss) = (&st[0], &st[1]);
    let dt = cx.b.kernel().buf(out).dtype;
    let rank = ext.len();
    if rank == 0 {
        let v = read(src, Expr::idx(0), 1, 0, None);
        cx.b.store(out, obase, v);
        return Ok(());
    }
    let n = ext[rank - 1];
    let (osi, ssi) = (os[rank - 1], ss[rank - 1]);
    let vl = copy_lanes(cx, dt);
    let lanes = if n >= vl as usize { vl } else { 1 };
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let parallel = par && total >= PARALLEL_MIN;
    if let (Src::Buf { .. }, Some(p)) = (src, tile_dim(&ext, os, ss, tile_side(dt))) {
        return tiled(cx, out, obase, &ext, os, ss, p, src, parallel, dt);
    }
    if rank == 1 && parallel && n / CHUNK >= 2 {
        // One long dim: parallel chunks of whole vectors, then the tail.
        let l = lanes as usize;
        let chunk = CHUNK / l * l;
        let full = n / l * l;
        cx.schedule("parallel", AttrValue::Str("chunks".into()));
        cx.schedule("chunk", AttrValue::Int(chunk as i64));
        let c =
            cx.b.begin_for("c", 0, full.div_ceil(chunk), 1, LoopKind::Parallel);
        let start = c * chunk as i64;
        let end = (start.clone() + chunk as i64).min(Expr::idx(full as i64));
        let i = cx.b.begin_for("i", start, end, l as i64, LoopKind::Serial);
        let v = read(src, i.clone() * ssi, lanes, ssi, None);
        cx.b.store_vec(out, obase.clone() + i * osi, v, osi, None);
        cx.b.end_for();
        cx.b.end_for();
        if full < n {
            let m = Some(Expr::idx((n - full) as i64));
            let v = read(src, Expr::idx(full as i64 * ssi), lanes, ssi, m.clone());
            cx.b.store_vec(out, obase + full as i64 * osi, v, osi, m);
        }
        return Ok(());
    }
    let mut idx = Vec::new();
    for (d, &e) in ext[..rank - 1].iter().enumerate() {
        let kind = if parallel && d == 0 {
            cx.schedule("parallel", AttrValue::Str("outer".into()));
            LoopKind::Parallel
        } else {
            LoopKind::Serial
        };
        idx.push(cx.b.begin_for(&format!("d{d}"), 0, e, 1, kind));
    }
    let ob = cx.b.let_("ob", obase + dot(&idx, os));
    let sb = match src {
        Src::Value(_) => Expr::idx(0),
        _ => cx.b.let_("sb", dot(&idx, ss)),
    };
    vloop(cx, "i", n, lanes, &mut |cx, i, mask| {
        let v = read(src, sb.clone() + i.clone() * ssi, lanes, ssi, mask.clone());
        cx.b.store_vec(out, ob.clone() + i * osi, v, osi, mask);
        Ok(())
    })?;
    for _ in 0..rank - 1 {
        cx.b.end_for();
    }
    Ok(())
}

/// For a copy whose innermost output dim is strided in the source (a
/// transpose that moves it): the dim that is contiguous in the source,
/// when both are long enough to tile.
fn tile_dim(ext: &[usize], os: &[i64], ss: &[i64], t: usize) -> Option<usize> {
    let r = ext.len();
    if r < 2 || os[r - 1] != 1 || ss[r - 1].abs() <= 1 || ext[r - 1] < t {
        return None;
    }
    (0..r - 1).find(|&d| ss[d] == 1 && ext[d] >= t)
}

/// A transpose-like copy in square tiles: dim `p` (contiguous in the
/// source) and the innermost dim (contiguous in the output) are walked
/// `t × t` at a time, so both sides of a tile stay in cache.
#[allow(clippy::too_many_arguments)]
fn tiled(
    cx: &mut NodeCx,
    out: BufId,
    obase: Expr,
    ext: &[usize],
    os: &[i64],
    ss: &[i64],
    p: usize,
    src: &Src,
    parallel: bool,
    dt: DType,
) -> R {
    let r = ext.len();
    let inner = r - 1;
    let t = tile_side(dt);
    // Whole vectors per tile row (both are powers of two).
    let lanes = copy_lanes(cx, dt).min(t as u16);
    let (np, n) = (ext[p], ext[inner]);
    let (osi, ssi) = (os[inner], ss[inner]);
    cx.schedule("tile", AttrValue::Ints(vec![t as i64, t as i64]));
    let outer: Vec<usize> = (0..inner).filter(|&d| d != p).collect();
    let full = n / t * t;
    // Full tiles of the innermost dim, then its remainder untiled.
    for part in 0..2 {
        if (part == 0 && full == 0) || (part == 1 && full == n) {
            continue;
        }
        let mut first = true;
        let mut kind = |cx: &mut NodeCx| {
            let k = if parallel && first {
                cx.schedule("parallel", AttrValue::Str("outer".into()));
                LoopKind::Parallel
            } else {
                LoopKind::Serial
            };
            first = false;
            k
        };
        let mut idx = vec![Expr::idx(0); r];
        let mut opened = 0;
        for &d in &outer {
            let k = kind(cx);
            idx[d] = cx.b.begin_for(&format!("d{d}"), 0, ext[d], 1, k);
            opened += 1;
        }
        if part == 0 {
            let k = kind(cx);
            let pb = cx.b.begin_for("pt", 0, np, t as i64, k);
            let ib = cx.b.begin_for("it", 0, full, t as i64, LoopKind::Serial);
            let pend = (pb.clone() + t as i64).min(Expr::idx(np as i64));
            idx[p] = cx.b.begin_for("p", pb, pend, 1, LoopKind::Serial);
            let ob = cx.b.let_("ob", obase.clone() + dot(&idx, os));
            let sb = cx.b.let_("sb", dot(&idx, ss));
            let i = cx.b.begin_for(
                "i",
                ib.clone(),
                ib + t as i64,
                lanes as i64,
                LoopKind::Serial,
            );
            let v = read(src, sb + i.clone() * ssi, lanes, ssi, None);
            cx.b.store_vec(out, ob + i * osi, v, osi, None);
            opened += 4;
        } else {
            let k = kind(cx);
            idx[p] = cx.b.begin_for("p", 0, np, 1, k);
            opened += 1;
            let ob =
                cx.b.let_("ob", obase.clone() + dot(&idx, os) + full as i64 * osi);
            let sb = cx.b.let_("sb", dot(&idx, ss) + full as i64 * ssi);
            let rest_lanes = if n - full >= lanes as usize { lanes } else { 1 };
            vloop(cx, "i", n - full, rest_lanes, &mut |cx, i, mask| {
                let v = read(
                    src,
                    sb.clone() + i.clone() * ssi,
                    rest_lanes,
                    ssi,
                    mask.clone(),
                );
                cx.b.store_vec(out, ob.clone() + i * osi, v, osi, mask);
                Ok(())
            })?;
        }
        for _ in 0..opened {
            cx.b.end_for();
        }
    }
    Ok(())
}

/// A copy of the whole input to output 0, element for element.
fn flat_copy(cx: &mut NodeCx) -> R {
    let n = numel(&cx.out_shape(0));
    if numel(&cx.in_shape(0)) != n {
        return unsupported("input and output sizes differ");
    }
    let buf = input(cx, 0)?;
    let out = cx.out_buf(0);
    let src = Src::Buf {
        buf,
        base: Expr::idx(0),
    };
    copy_nest(
        cx,
        out,
        Expr::idx(0),
        &[Axis { n, os: 1, ss: 1 }],
        &src,
        true,
    )
}

fn input(cx: &NodeCx, i: usize) -> Result<BufId, Unsupported> {
    cx.input(i)
        .ok_or_else(|| Unsupported(format!("input {i} is missing")))
}

/// Output 0 as the permutation `perm` of the input seen as `view`.
fn permute_copy(cx: &mut NodeCx, view: &[usize], perm: &[usize]) -> R {
    let st = istrides(view);
    let out_view: Vec<usize> = perm.iter().map(|&p| view[p]).collect();
    if numel(&out_view) != numel(&cx.out_shape(0)) || numel(view) != numel(&cx.in_shape(0)) {
        return unsupported("transposed view does not match the output");
    }
    let os = istrides(&out_view);
    let dims: Vec<Axis> = (0..perm.len())
        .map(|d| Axis {
            n: out_view[d],
            os: os[d],
            ss: st[perm[d]],
        })
        .collect();
    let src = Src::Buf {
        buf: input(cx, 0)?,
        base: Expr::idx(0),
    };
    let out = cx.out_buf(0);
    copy_nest(cx, out, Expr::idx(0), &dims, &src, true)
}

fn transpose(cx: &mut NodeCx, perm: Option<&[i64]>) -> R {
    let s = cx.in_shape(0);
    let perm = permutation(perm, s.len()).map_err(unsup)?;
    permute_copy(cx, &s, &perm)
}

/// DepthToSpace (or, with `inverse`, SpaceToDepth) as a 6-D transpose.
fn depth_to_space(cx: &mut NodeCx, b: i64, mode: DepthToSpaceMode, inverse: bool) -> R {
    let &[n, c, h, w] = cx.in_shape(0).as_slice() else {
        return unsupported("depth/space rearrangement needs a 4-D input");
    };
    if b <= 0 {
        return unsupported("blocksize must be positive");
    }
    let b = b as usize;
    let (view, perm) = if !inverse {
        if c % (b * b) != 0 {
            return unsupported("channels not divisible by blocksize²");
        }
        let c2 = c / (b * b);
        match mode {
            DepthToSpaceMode::Dcr => (vec![n, b, b, c2, h, w], [0, 3, 4, 1, 5, 2]),
            DepthToSpaceMode::Crd => (vec![n, c2, b, b, h, w], [0, 1, 4, 2, 5, 3]),
        }
    } else {
        if h % b != 0 || w % b != 0 {
            return unsupported("spatial dims not divisible by blocksize");
        }
        let view = vec![n, c, h / b, b, w / b, b];
        match mode {
            DepthToSpaceMode::Dcr => (view, [0, 3, 5, 1, 2, 4]),
            DepthToSpaceMode::Crd => (view, [0, 1, 3, 5, 2, 4]),
        }
    };
    permute_copy(cx, &view, &perm)
}

fn concat(cx: &mut NodeCx, axis: i64) -> R {
    let out_shape = cx.out_shape(0);
    let rank = out_shape.len();
    let a = normalize(axis, rank)?;
    let os = istrides(&out_shape);
    let out = cx.out_buf(0);
    let mut at = 0usize;
    for i in 0..cx.node().inputs.len() {
        let Some(buf) = cx.input(i) else {
            continue;
        };
        let s = cx.in_shape(i);
        if s.len() != rank || (0..rank).any(|d| d != a && s[d] != out_shape[d]) {
            return unsupported("concat inputs do not fit the output");
        }
        let st = istrides(&s);
        let dims: Vec<Axis> = (0..rank)
            .map(|d| Axis {
                n: s[d],
                os: os[d],
                ss: st[d],
            })
            .collect();
        let src = Src::Buf {
            buf,
            base: Expr::idx(0),
        };
        copy_nest(cx, out, Expr::idx(at as i64 * os[a]), &dims, &src, true)?;
        at += s[a];
    }
    if at != out_shape[a] {
        return unsupported("concat inputs do not fill the output");
    }
    Ok(())
}

fn normalize(axis: i64, rank: usize) -> Result<usize, Unsupported> {
    saturn_ir::ops::infer::normalize_axis(axis, rank).map_err(unsup)
}

/// Each output is a slab of the input along the axis; the sizes are the
/// outputs' extents.
fn split(cx: &mut NodeCx, axis: i64) -> R {
    let s = cx.in_shape(0);
    let a = normalize(axis, s.len())?;
    let st = istrides(&s);
    let buf = input(cx, 0)?;
    let mut at = 0usize;
    for i in 0..cx.node().outputs.len() {
        let o = cx.out_shape(i);
        if o.len() != s.len() || (0..s.len()).any(|d| d != a && o[d] != s[d]) {
            return unsupported("split outputs do not fit the input");
        }
        if at + o[a] > s[a] {
            return unsupported("split outputs exceed the input");
        }
        let os = istrides(&o);
        let dims: Vec<Axis> = (0..s.len())
            .map(|d| Axis {
                n: o[d],
                os: os[d],
                ss: st[d],
            })
            .collect();
        let src = Src::Buf {
            buf,
            base: Expr::idx(at as i64 * st[a]),
        };
        let out = cx.out_buf(i);
        copy_nest(cx, out, Expr::idx(0), &dims, &src, true)?;
        at += o[a];
    }
    Ok(())
}

/// An integer constant input as i64 values; `Ok(None)` when absent.
fn const_ints(cx: &NodeCx, i: usize, what: &str) -> Result<Option<Vec<i64>>, Unsupported> {
    if cx.in_value(i).is_none() {
        return Ok(None);
    }
    match cx.in_const(i) {
        Some(t) if t.dtype().is_int() => Ok(Some(t.to_i64_vec())),
        Some(_) => unsupported(format!("{what} must be integers")),
        None => unsupported(format!("{what} is not a constant")),
    }
}

fn identity_map(n: usize) -> Vec<Option<i64>> {
    (0..n as i64).map(Some).collect()
}

/// Whether input `i` is absent or a constant.
fn known(cx: &NodeCx, i: usize) -> bool {
    cx.in_value(i).is_none() || cx.in_const(i).is_some()
}

fn slice(cx: &mut NodeCx) -> R {
    if !(1..5).all(|i| known(cx, i)) {
        return slice_dynamic(cx);
    }
    let s = cx.in_shape(0);
    let starts = const_ints(cx, 1, "slice starts")?.unwrap_or_default();
    let ends = const_ints(cx, 2, "slice ends")?.unwrap_or_default();
    let axes = const_ints(cx, 3, "slice axes")?;
    let steps = const_ints(cx, 4, "slice steps")?;
    let specs =
        slice_specs(s.len(), &starts, &ends, axes.as_deref(), steps.as_deref()).map_err(unsup)?;
    let mut maps: Vec<Vec<Option<i64>>> = s.iter().map(|&d| identity_map(d)).collect();
    for (a, start, end, step) in specs {
        let (first, len) = slice_axis(s[a] as u64, start, end, step).map_err(unsup)?;
        maps[a] = (0..len as i64).map(|i| Some(first + i * step)).collect();
    }
    gather_maps0(cx, &maps, None)
}

fn tile(cx: &mut NodeCx) -> R {
    let s = cx.in_shape(0);
    let o = cx.out_shape(0);
    if s.len() != o.len() {
        return unsupported("tile output rank differs");
    }
    let mut maps = Vec::new();
    for (&d, &n) in s.iter().zip(&o) {
        if d == 0 {
            if n != 0 {
                return unsupported("tile of an empty axis");
            }
            maps.push(vec![]);
            continue;
        }
        if n % d != 0 {
            return unsupported("tile output is not a multiple of the input");
        }
        maps.push((0..n).map(|i| Some((i % d) as i64)).collect());
    }
    gather_maps0(cx, &maps, None)
}

/// The dtype of `dt`'s kernel buffers (half formats are their bits).
pub(super) fn storage(dt: DType) -> DType {
    super::storage_dtype(dt).unwrap_or(dt)
}

/// A scalar of (graph) dtype `dt` from element `i` of `t`, in the dtype
/// of `dt`'s buffers: a half value is its bits.
pub(super) fn constant(dt: DType, t: &Tensor, i: usize) -> Expr {
    let st = storage(dt);
    if st != dt {
        let bytes = t.to_le_bytes().unwrap_or_default();
        let w = dt.bits().div_ceil(8);
        let mut raw = [0u8; 8];
        if let Some(b) = bytes.get(i * w..(i + 1) * w) {
            raw[..w].copy_from_slice(b);
        }
        return Expr::Int(u64::from_le_bytes(raw) as i64, Ty::scalar(st));
    }
    let ty = Ty::scalar(dt);
    if dt.is_float() {
        Expr::Float(t.get_f64(i), ty)
    } else if dt == DType::Bool {
        Expr::Int((t.get_f64(i) != 0.0) as i64, ty)
    } else {
        Expr::Int(t.get_i64(i), ty)
    }
}

/// Zero of (graph) dtype `dt` in its buffers' dtype (+0.0 is all zero
/// bits in every float format).
pub(super) fn zero(dt: DType) -> Expr {
    Expr::constant(0.0, Ty::scalar(storage(dt)))
}

/// The fill value given by input `i` (its first element; a constant or
/// read at kernel start), or zero.
fn fill_input(cx: &mut NodeCx, i: usize, dt: DType) -> Result<Expr, Unsupported> {
    if cx.in_value(i).is_none() || numel(&cx.in_shape(i)) == 0 {
        return Ok(zero(dt));
    }
    if cx.in_dtype(i) != dt {
        return unsupported("fill value of another dtype");
    }
    if let Some(t) = cx.in_const(i) {
        return Ok(constant(dt, t, 0));
    }
    let b = input(cx, i)?;
    Ok(cx.b.let_("fill", Expr::load(b, Expr::idx(0))))
}

fn pad(cx: &mut NodeCx, mode: PadMode) -> R {
    if !known(cx, 1) || !known(cx, 3) {
        return pad_dynamic(cx, mode);
    }
    let s = cx.in_shape(0);
    let dt = cx.in_dtype(0);
    let pads = const_ints(cx, 1, "pads")?.unwrap_or_default();
    let axes = const_ints(cx, 3, "pad axes")?;
    let amounts =
        saturn_ir::ops::rules::pad_amounts(s.len(), &pads, axes.as_deref()).map_err(unsup)?;
    let mut maps = Vec::with_capacity(s.len());
    for (a, &d) in s.iter().enumerate() {
        let (before, after) = amounts[a];
        let n = saturn_ir::ops::rules::padded(d as u64, (before, after)).map_err(unsup)?;
        if d == 0 && n > 0 && mode != PadMode::Constant {
            return unsupported("cannot pad an empty axis but with a constant");
        }
        let (d, before) = (d as i128, before as i128);
        let map = (0..n as i128).map(|o| {
            let c = o - before;
            let c = if (0..d).contains(&c) {
                c
            } else {
                match mode {
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
            Some(c as i64)
        });
        maps.push(map.collect());
    }
    let fill = fill_input(cx, 2, dt)?;
    gather_maps0(cx, &maps, Some(fill))
}

fn center_crop_pad(cx: &mut NodeCx, axes: Option<&[i64]>) -> R {
    let s = cx.in_shape(0);
    let rank = s.len();
    let axes: Vec<usize> = match axes {
        Some(a) => saturn_ir::ops::rules::unique_axes(a, rank).map_err(unsup)?,
        None => (0..rank).collect(),
    };
    // The target extents are the output's (also when the target shape is
    // only known at run time).
    let o = cx.out_shape(0);
    if o.len() != rank || (0..rank).any(|d| !axes.contains(&d) && o[d] != s[d]) {
        return unsupported("center_crop_pad output does not match");
    }
    let target: Vec<i64> = axes.iter().map(|&a| o[a] as i64).collect();
    let mut maps: Vec<Vec<Option<i64>>> = s.iter().map(|&d| identity_map(d)).collect();
    for (&a, &t) in axes.iter().zip(&target) {
        if t < 0 {
            return unsupported("negative target dim");
        }
        let (t, d) = (t as usize, s[a]);
        maps[a] = if t <= d {
            let c = (d - t) / 2;
            (0..t).map(|i| Some((c + i) as i64)).collect()
        } else {
            let p = (t - d) / 2;
            (0..t)
                .map(|i| (i >= p && i - p < d).then(|| (i - p) as i64))
                .collect()
        };
    }
    let fill = zero(cx.in_dtype(0));
    gather_maps0(cx, &maps, Some(fill))
}

/// Compress with a constant condition: a gather of the picked positions.
fn compress(cx: &mut NodeCx, axis: Option<i64>) -> R {
    let Some(cond) = cx.in_const(1) else {
        return compress_dynamic(cx, axis);
    };
    let s = cx.in_shape(0);
    let (view, a) = match axis {
        Some(ax) => (s.clone(), normalize(ax, s.len())?),
        None => (vec![numel(&s)], 0),
    };
    let picks: Vec<Option<i64>> = (0..cond.numel())
        .filter(|&i| cond.get_f64(i) != 0.0)
        .map(|i| Some(i as i64))
        .collect();
    if picks
        .last()
        .is_some_and(|p| p.unwrap_or(0) as usize >= view[a])
    {
        return unsupported("the condition selects past the axis");
    }
    let mut maps: Vec<Vec<Option<i64>>> = view.iter().map(|&d| identity_map(d)).collect();
    maps[a] = picks;
    let out_view: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    if numel(&out_view) != numel(&cx.out_shape(0)) {
        return unsupported("compress output does not match");
    }
    let (out, buf) = (cx.out_buf(0), input(cx, 0)?);
    gather_maps(cx, out, &out_view, buf, &view, &maps, None)
}

/// [`gather_maps`] from input 0 to output 0.
fn gather_maps0(cx: &mut NodeCx, maps: &[Vec<Option<i64>>], fill: Option<Expr>) -> R {
    let (out, buf) = (cx.out_buf(0), input(cx, 0)?);
    let out_shape = cx.out_shape(0);
    let in_shape = cx.in_shape(0);
    if maps.len() != out_shape.len() || maps.iter().zip(&out_shape).any(|(m, &n)| m.len() != n) {
        return unsupported("axis maps do not match the output shape");
    }
    gather_maps(cx, out, &out_shape, buf, &in_shape, maps, fill)
}

// ---- axis maps ----

/// Output positions `at .. at + len` of an axis read source positions
/// `start, start + step, …`, or the fill value (`src: None`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Run {
    at: usize,
    len: usize,
    src: Option<(i64, i64)>,
}

/// Splits a map into maximal affine runs (greedily).
fn runs(map: &[Option<i64>]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (i, &m) in map.iter().enumerate() {
        if let Some(last) = out.last_mut() {
            let extends = match (last.src, m) {
                (None, None) => true,
                (Some((s, _)), Some(v)) if last.len == 1 => {
                    last.src = Some((s, v - s));
                    true
                }
                (Some((s, step)), Some(v)) => v == s + step * last.len as i64,
                _ => false,
            };
            if extends {
                last.len += 1;
                continue;
            }
        }
        out.push(Run {
            at: i,
            len: 1,
            src: m.map(|v| (v, 0)),
        });
    }
    out
}

/// How one output axis is copied.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum AxisMap {
    /// A few runs.
    Runs(Vec<Run>),
    /// `map[i] = map[i % p]`, the first period a few runs (tile, wrap).
    Cycle(usize, Vec<Run>),
    /// Each entry repeated `f` times (`map[i] = map[i - i % f]`), the
    /// distinct entries a few runs (nearest upsampling).
    Repeat(usize, Vec<Run>),
    /// Anything else: a table of offsets.
    Table,
}

impl AxisMap {
    pub(super) fn of(map: &[Option<i64>]) -> AxisMap {
        let n = map.len();
        let r = runs(map);
        if r.len() <= RUNS_MAX {
            return AxisMap::Runs(r);
        }
        let period = (1..n)
            .filter(|&p| n.is_multiple_of(p) && map[p] == map[0])
            .find(|&p| (p..n).all(|i| map[i] == map[i - p]));
        if let Some(p) = period {
            let r = runs(&map[..p]);
            if r.len() <= RUNS_MAX {
                return AxisMap::Cycle(p, r);
            }
        }
        let f = map.iter().take_while(|&&m| m == map[0]).count();
        if f > 1 && n.is_multiple_of(f) && (0..n).all(|i| map[i] == map[i - i % f]) {
            let sub: Vec<Option<i64>> = map.iter().step_by(f).copied().collect();
            let r = runs(&sub);
            if r.len() <= RUNS_MAX {
                return AxisMap::Repeat(f, r);
            }
        }
        AxisMap::Table
    }

    /// The boxes of this axis: output offset (in elements), source offset
    /// (`None`: fill), and the copy dims, for an axis of `n` positions
    /// with output stride `os` and source stride `st`.
    fn pieces(&self, n: usize, os: i64, st: i64) -> Vec<(i64, Option<i64>, Vec<Axis>)> {
        let ss = |r: &Run| r.src.map_or(0, |(_, step)| step * st);
        let so = |r: &Run| r.src.map(|(s, _)| s * st);
        match self {
            AxisMap::Runs(rs) => rs
                .iter()
                .map(|r| {
                    let d = Axis {
                        n: r.len,
                        os,
                        ss: ss(r),
                    };
                    (r.at as i64 * os, so(r), vec![d])
                })
                .collect(),
            AxisMap::Cycle(p, rs) => rs
                .iter()
                .map(|r| {
                    let rep = Axis {
                        n: n / p,
                        os: *p as i64 * os,
                        ss: 0,
                    };
                    let d = Axis {
                        n: r.len,
                        os,
                        ss: ss(r),
                    };
                    (r.at as i64 * os, so(r), vec![rep, d])
                })
                .collect(),
            AxisMap::Repeat(f, rs) => rs
                .iter()
                .map(|r| {
                    let f = *f as i64;
                    let d = Axis {
                        n: r.len,
                        os: f * os,
                        ss: ss(r),
                    };
                    let rep = Axis {
                        n: f as usize,
                        os,
                        ss: 0,
                    };
                    (r.at as i64 * f * os, so(r), vec![d, rep])
                })
                .collect(),
            AxisMap::Table => vec![],
        }
    }
}

/// One box of a copy through axis maps.
struct Block {
    obase: i64,
    sbase: Option<i64>,
    dims: Vec<Axis>,
}

/// Copies `buf` (of `in_shape`) to `out` (of `out_shape`) through per-axis
/// maps: output position `i` of axis `a` reads source position
/// `maps[a][i]`, or `fill` where it is `None`.
pub(super) fn gather_maps(
    cx: &mut NodeCx,
    out: BufId,
    out_shape: &[usize],
    buf: BufId,
    in_shape: &[usize],
    maps: &[Vec<Option<i64>>],
    fill: Option<Expr>,
) -> R {
    let rank = out_shape.len();
    if numel(out_shape) == 0 {
        return Ok(());
    }
    if maps.len() != rank || in_shape.len() != rank {
        return unsupported("axis maps do not match the ranks");
    }
    for (a, m) in maps.iter().enumerate() {
        if m.len() != out_shape[a]
            || m.iter()
                .flatten()
                .any(|&p| p < 0 || p as usize >= in_shape[a])
        {
            return unsupported("an axis map reads outside the source");
        }
    }
    let has_fill = maps.iter().any(|m| m.contains(&None));
    let fill = match fill {
        Some(f) => f,
        None if has_fill => return unsupported("a map needs a fill value"),
        None => zero(cx.b.kernel().buf(out).dtype),
    };
    let os = istrides(out_shape);
    let st = istrides(in_shape);
    let axis_maps: Vec<AxisMap> = maps.iter().map(|m| AxisMap::of(m)).collect();
    if !axis_maps.contains(&AxisMap::Table) {
        let pieces: Vec<_> = (0..rank)
            .map(|a| axis_maps[a].pieces(out_shape[a], os[a], st[a]))
            .collect();
        let full: Vec<Axis> = (0..rank)
            .map(|a| Axis {
                n: out_shape[a],
                os: os[a],
                ss: 0,
            })
            .collect();
        let mut blocks = Vec::new();
        if boxes(&pieces, &full, 0, 0, 0, vec![], &mut blocks) {
            cx.schedule("boxes", AttrValue::Int(blocks.len() as i64));
            for b in blocks {
                let src = match b.sbase {
                    Some(s) => Src::Buf {
                        buf,
                        base: Expr::idx(s),
                    },
                    None => Src::Value(fill.clone()),
                };
                copy_nest(cx, out, Expr::idx(b.obase), &b.dims, &src, true)?;
            }
            return Ok(());
        }
    }
    gather_tables(cx, out, out_shape, buf, &st, maps, fill)
}

/// Collects the boxes of a copy through axis pieces, axis by axis; a fill
/// piece covers every later axis whole. False when there are more than
/// [`BLOCKS_MAX`].
#[allow(clippy::type_complexity)]
fn boxes(
    pieces: &[Vec<(i64, Option<i64>, Vec<Axis>)>],
    full: &[Axis],
    a: usize,
    ob: i64,
    sb: i64,
    dims: Vec<Axis>,
    out: &mut Vec<Block>,
) -> bool {
    if a == pieces.len() {
        out.push(Block {
            obase: ob,
            sbase: Some(sb),
            dims,
        });
        return out.len() <= BLOCKS_MAX;
    }
    for (oo, so, d) in &pieces[a] {
        let mut dims2 = dims.clone();
        dims2.extend_from_slice(d);
        match so {
            None => {
                dims2.extend_from_slice(&full[a + 1..]);
                out.push(Block {
                    obase: ob + oo,
                    sbase: None,
                    dims: dims2,
                });
                if out.len() > BLOCKS_MAX {
                    return false;
                }
            }
            Some(so) => {
                if !boxes(pieces, full, a + 1, ob + oo, sb + so, dims2, out) {
                    return false;
                }
            }
        }
    }
    true
}

/// The general copy through axis maps: every axis that is not one affine
/// run reads its source offsets (`-1`: fill) from a table in scratch
/// memory, stored at kernel start.
fn gather_tables(
    cx: &mut NodeCx,
    out: BufId,
    out_shape: &[usize],
    buf: BufId,
    st: &[i64],
    maps: &[Vec<Option<i64>>],
    fill: Expr,
) -> R {
    let rank = out_shape.len();
    if rank == 0 {
        return unsupported("offset tables of a scalar");
    }
    let os = istrides(out_shape);
    // Per axis: (first offset, stride) when affine, else a table offset.
    enum Walk {
        Affine(i64, i64),
        Table(usize),
    }
    let mut walks = Vec::with_capacity(rank);
    let mut entries: Vec<i64> = Vec::new();
    for (a, m) in maps.iter().enumerate() {
        let r = runs(m);
        match r.as_slice() {
            [
                Run {
                    src: Some((s, step)),
                    ..
                },
            ] => walks.push(Walk::Affine(s * st[a], step * st[a])),
            [] => walks.push(Walk::Affine(0, 0)),
            _ => {
                walks.push(Walk::Table(entries.len()));
                entries.extend(m.iter().map(|p| p.map_or(-1, |p| p * st[a])));
            }
        }
    }
    if entries.len() > TABLE_MAX {
        return unsupported("axis maps need too large offset tables");
    }
    cx.schedule("offset_table", AttrValue::Int(entries.len() as i64));
    let tab = cx.scratch("offsets", DType::I64, entries.len().max(1));
    for (i, &e) in entries.iter().enumerate() {
        cx.b.store(tab, Expr::idx(i as i64), Expr::idx(e));
    }
    let dt = cx.b.kernel().buf(out).dtype;
    let parallel = numel(out_shape) >= PARALLEL_MIN;
    // Walk the outer axes, accumulating offset and the fill flag.
    let mut ob = Expr::idx(0);
    let mut sb = Expr::idx(0);
    let mut bad: Option<Expr> = None;
    let or = |bad: Option<Expr>, c: Expr| match bad {
        Some(b) => Expr::bin(BinOp::Or, b, c),
        None => c,
    };
    for a in 0..rank - 1 {
        let kind = if parallel && a == 0 {
            cx.schedule("parallel", AttrValue::Str("outer".into()));
            LoopKind::Parallel
        } else {
            LoopKind::Serial
        };
        let i = cx.b.begin_for(&format!("d{a}"), 0, out_shape[a], 1, kind);
        ob = cx.b.let_("ob", ob + i.clone() * os[a]);
        match walks[a] {
            Walk::Affine(s, step) => sb = cx.b.let_("sb", sb + (i * step + s)),
            Walk::Table(t) => {
                let off = cx.b.let_("t", Expr::load(tab, i + t as i64));
                if maps[a].contains(&None) {
                    bad = Some(cx.b.let_("fill", or(bad, off.clone().lt(Expr::idx(0)))));
                }
                sb = cx.b.let_("sb", sb + off);
            }
        }
    }
    let a = rank - 1;
    let n = out_shape[a];
    let pick = |bad: &Option<Expr>, v: Expr, lanes: u16| match bad {
        None => v,
        Some(b) => Expr::select(b.clone().splat(lanes), fill.clone().splat(lanes), v),
    };
    match walks[a] {
        Walk::Affine(s, step) => {
            let vl = copy_lanes(cx, dt);
            let lanes = if n >= vl as usize { vl } else { 1 };
            // A row of fill still reads in bounds: its base is below a
            // valid row's (a `-1` replaced an offset), clamped so that the
            // whole row stays inside the source.
            let lo = if step < 0 { (n as i64 - 1) * -step } else { 0 };
            let sbase = match &bad {
                Some(_) => cx.b.let_("sb", (sb + s).max(Expr::idx(lo))),
                None => cx.b.let_("sb", sb + s),
            };
            let src = Src::Buf { buf, base: sbase };
            vloop(cx, "i", n, lanes, &mut |cx, i, mask| {
                let v = read(&src, i.clone() * step, lanes, step, mask.clone());
                let v = pick(&bad, v, lanes);
                cx.b.store_vec(out, ob.clone() + i, v, 1, mask);
                Ok(())
            })?;
        }
        Walk::Table(t) => {
            let i = cx.b.begin_for("i", 0, n, 1, LoopKind::Serial);
            let off = cx.b.let_("t", Expr::load(tab, i.clone() + t as i64));
            let bad = if maps[a].contains(&None) {
                Some(or(bad, off.clone().lt(Expr::idx(0))))
            } else {
                bad
            };
            let at = match &bad {
                Some(_) => (sb + off).max(Expr::idx(0)),
                None => sb + off,
            };
            let v = pick(&bad, Expr::load(buf, at), 1);
            cx.b.store(out, ob + i, v);
            cx.b.end_for();
        }
    }
    for _ in 0..rank - 1 {
        cx.b.end_for();
    }
    Ok(())
}

// ---- copies with parameters known at run time ----

/// How an output dim of a copy finds its source position.
pub(super) enum Pos {
    /// The same position (output and input extents are equal).
    Same,
    /// Emitted in the loop over the output position: the source position
    /// (always inside the dim) and, optionally, a flag that the element
    /// is the fill value instead.
    Dyn(PosFn),
}

pub(super) type PosFn = Box<dyn Fn(&mut NodeCx, Expr) -> (Expr, Option<Expr>)>;

/// A copy whose per-axis source positions are computed in the kernel
/// (from runtime slice starts, pads, picks …). The dims after the last
/// computed one are copied as contiguous vectors.
pub(super) fn dyn_gather(
    cx: &mut NodeCx,
    out: BufId,
    out_shape: &[usize],
    buf: BufId,
    in_shape: &[usize],
    pos: Vec<Pos>,
    fill: Option<Expr>,
) -> R {
    let rank = out_shape.len();
    let total = numel(out_shape);
    if total == 0 {
        return Ok(());
    }
    if pos.len() != rank || in_shape.len() != rank {
        return unsupported("positions do not match the ranks");
    }
    if numel(in_shape) == 0 {
        return match fill {
            Some(f) => {
                let dims = [Axis {
                    n: total,
                    os: 1,
                    ss: 0,
                }];
                copy_nest(cx, out, Expr::idx(0), &dims, &Src::Value(f), true)
            }
            None => unsupported("a copy out of an empty tensor"),
        };
    }
    let last = pos.iter().rposition(|p| matches!(p, Pos::Dyn(_)));
    let inner_from = last.map_or(0, |k| k + 1);
    if (inner_from..rank).any(|d| out_shape[d] != in_shape[d]) {
        return unsupported("unmapped dims differ in extent");
    }
    let inner = numel(&out_shape[inner_from..]);
    let (os, st) = (istrides(out_shape), istrides(in_shape));
    let parallel = total >= PARALLEL_MIN;
    let mut ob = Expr::idx(0);
    let mut sb = Expr::idx(0);
    let mut bad: Option<Expr> = None;
    for (d, p) in pos.iter().enumerate().take(inner_from) {
        let kind = if parallel && d == 0 {
            cx.schedule("parallel", AttrValue::Str("outer".into()));
            LoopKind::Parallel
        } else {
            LoopKind::Serial
        };
        let i = cx.b.begin_for(&format!("d{d}"), 0, out_shape[d], 1, kind);
        ob = cx.b.let_("ob", ob + i.clone() * os[d]);
        match p {
            Pos::Same => sb = cx.b.let_("sb", sb + i * st[d]),
            Pos::Dyn(f) => {
                let (at, flag) = f(cx, i);
                sb = cx.b.let_("sb", sb + at * st[d]);
                if let Some(flag) = flag {
                    let b = match bad {
                        Some(b) => Expr::bin(BinOp::Or, b, flag),
                        None => flag,
                    };
                    bad = Some(cx.b.let_("fill", b));
                }
            }
        }
    }
    let dt = cx.b.kernel().buf(out).dtype;
    let vl = copy_lanes(cx, dt);
    let lanes = if inner >= vl as usize { vl } else { 1 };
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let fill = fill.unwrap_or_else(|| zero(dt));
    vloop(cx, "i", inner, lanes, &mut |cx, i, mask| {
        let v = Expr::load_vec(buf, sb.clone() + i.clone(), lanes, 1, mask.clone());
        let v = match &bad {
            Some(b) => Expr::select(b.clone().splat(lanes), fill.clone().splat(lanes), v),
            None => v,
        };
        cx.b.store_vec(out, ob.clone() + i, v, 1, mask);
        Ok(())
    })?;
    for _ in 0..inner_from {
        cx.b.end_for();
    }
    Ok(())
}

/// Element `i` of integer input `at` as an index value: the constant,
/// or a load (bound at kernel start).
fn int_at(cx: &mut NodeCx, at: usize, i: usize) -> Result<Expr, Unsupported> {
    if let Some(t) = cx.in_const(at) {
        if !t.dtype().is_int() {
            return unsupported("integer parameters expected");
        }
        return Ok(Expr::idx(t.get_i64(i)));
    }
    let dt = cx.in_dtype(at);
    if !dt.is_int() {
        return unsupported("integer parameters expected");
    }
    let b = input(cx, at)?;
    let v = Expr::load(b, Expr::idx(i as i64));
    let v = if dt == DType::I64 {
        v
    } else {
        v.cast(DType::I64)
    };
    Ok(cx.b.let_("p", v))
}

/// Which dims entry `i` of a runtime slice or pad applies to: its axis
/// from input `axes` (constant or loaded), or `i` itself.
enum EntryAxis {
    Dim(usize),
    /// A runtime axis, already made non-negative.
    Runtime(Expr),
}

fn entry_axis(
    cx: &mut NodeCx,
    axes: usize,
    i: usize,
    rank: usize,
) -> Result<EntryAxis, Unsupported> {
    if cx.in_value(axes).is_none() {
        return if i < rank {
            Ok(EntryAxis::Dim(i))
        } else {
            unsupported("more entries than dims")
        };
    }
    if let Some(t) = cx.in_const(axes) {
        return Ok(EntryAxis::Dim(normalize(t.get_i64(i), rank)?));
    }
    let a = int_at(cx, axes, i)?;
    let a = Expr::select(a.clone().lt(Expr::idx(0)), a.clone() + rank as i64, a);
    Ok(EntryAxis::Runtime(cx.b.let_("axis", a)))
}

/// `v` into dim `d`'s slot of `per_dim` (all slots for a runtime axis,
/// each chosen where the axis is that dim).
fn assign(per_dim: &mut [Expr], hit: &mut [bool], t: &EntryAxis, v: &dyn Fn(usize) -> Expr) {
    match t {
        EntryAxis::Dim(d) => {
            per_dim[*d] = v(*d);
            hit[*d] = true;
        }
        EntryAxis::Runtime(a) => {
            for d in 0..per_dim.len() {
                let is = Expr::bin(BinOp::Eq, a.clone(), Expr::idx(d as i64));
                per_dim[d] = Expr::select(is, v(d), per_dim[d].clone());
                hit[d] = true;
            }
        }
    }
}

/// Slice with starts, steps or axes known only at run time: the output
/// extents are static, so only each sliced dim's first position and step
/// are computed (as the interpreter clamps them), and every position is
/// clamped into the dim.
fn slice_dynamic(cx: &mut NodeCx) -> R {
    let s = cx.in_shape(0);
    let r = s.len();
    let m = numel(&cx.in_shape(1));
    for i in [2, 3, 4] {
        if cx.in_value(i).is_some() && numel(&cx.in_shape(i)) != m {
            return unsupported("slice parameters differ in length");
        }
    }
    let mut first = vec![Expr::idx(0); r];
    let mut step = vec![Expr::idx(1); r];
    let mut hit = vec![false; r];
    for i in 0..m {
        let start = int_at(cx, 1, i)?;
        let sp = if cx.in_value(4).is_some() {
            int_at(cx, 4, i)?
        } else {
            Expr::idx(1)
        };
        let t = entry_axis(cx, 3, i, r)?;
        let dims: Vec<usize> = match &t {
            EntryAxis::Dim(d) => vec![*d],
            EntryAxis::Runtime(_) => (0..r).collect(),
        };
        // The first position: negative starts count from the end, then
        // clamped to [0, d] going forward or [0, d - 1] going back.
        let mut firsts = vec![Expr::idx(0); r];
        for d in dims {
            let dim = s[d] as i64;
            let neg = start.clone().lt(Expr::idx(0));
            let st = cx.b.let_(
                "start",
                Expr::select(neg, start.clone() + dim, start.clone()),
            );
            let fwd = st.clone().max(Expr::idx(0)).min(Expr::idx(dim));
            let back = st.max(Expr::idx(0)).min(Expr::idx((dim - 1).max(0)));
            let pos = Expr::bin(BinOp::Gt, sp.clone(), Expr::idx(0));
            firsts[d] = cx.b.let_("first", Expr::select(pos, fwd, back));
        }
        assign(&mut first, &mut hit, &t, &|d| firsts[d].clone());
        assign(&mut step, &mut hit, &t, &|_| sp.clone());
    }
    let mut pos = Vec::with_capacity(r);
    for d in 0..r {
        if !hit[d] {
            pos.push(Pos::Same);
            continue;
        }
        let f = cx.b.let_("first", first[d].clone());
        let st = cx.b.let_("step", step[d].clone());
        let hi = (s[d] as i64 - 1).max(0);
        pos.push(Pos::Dyn(Box::new(move |cx: &mut NodeCx, i: Expr| {
            let p = (f.clone() + i * st.clone())
                .max(Expr::idx(0))
                .min(Expr::idx(hi));
            (cx.b.let_("pos", p), None)
        })));
    }
    cx.schedule("parameters", AttrValue::Str("runtime".into()));
    let (out, buf, o) = (cx.out_buf(0), input(cx, 0)?, cx.out_shape(0));
    dyn_gather(cx, out, &o, buf, &s, pos, None)
}

/// Pad with pads (or axes) known only at run time: each padded dim's
/// leading pad is loaded, and each output position maps to its source
/// as the interpreter's map does.
fn pad_dynamic(cx: &mut NodeCx, mode: PadMode) -> R {
    let s = cx.in_shape(0);
    let r = s.len();
    let dt = cx.in_dtype(0);
    let np = numel(&cx.in_shape(1));
    if !np.is_multiple_of(2) {
        return unsupported("pads must come in pairs");
    }
    let m = np / 2;
    if cx.in_value(3).is_some() && numel(&cx.in_shape(3)) != m {
        return unsupported("one pair of pads per axis");
    }
    let mut before = vec![Expr::idx(0); r];
    let mut hit = vec![false; r];
    for i in 0..m {
        let b = int_at(cx, 1, i)?;
        let t = entry_axis(cx, 3, i, r)?;
        assign(&mut before, &mut hit, &t, &|_| b.clone());
    }
    let fill = fill_input(cx, 2, dt)?;
    let mut pos = Vec::with_capacity(r);
    for d in 0..r {
        if !hit[d] {
            pos.push(Pos::Same);
            continue;
        }
        let dim = s[d] as i64;
        if dim == 0 {
            if mode != PadMode::Constant && numel(&cx.out_shape(0)) > 0 {
                return unsupported("cannot pad an empty axis but with a constant");
            }
            pos.push(Pos::Same);
            continue;
        }
        let b = cx.b.let_("before", before[d].clone());
        pos.push(Pos::Dyn(Box::new(move |cx: &mut NodeCx, o: Expr| {
            let c = cx.b.let_("c", o - b.clone());
            let clamp = |e: Expr| e.max(Expr::idx(0)).min(Expr::idx(dim - 1));
            let rem_euclid = |cx: &mut NodeCx, e: Expr, p: i64| {
                let m = cx.b.let_("m", Expr::bin(BinOp::Rem, e, Expr::idx(p)));
                cx.b.let_(
                    "m",
                    Expr::select(m.clone().lt(Expr::idx(0)), m.clone() + p, m),
                )
            };
            match mode {
                PadMode::Constant => {
                    let out = Expr::bin(
                        BinOp::Or,
                        c.clone().lt(Expr::idx(0)),
                        c.clone().ge(Expr::idx(dim)),
                    );
                    (cx.b.let_("pos", clamp(c)), Some(out))
                }
                PadMode::Edge => (cx.b.let_("pos", clamp(c)), None),
                PadMode::Wrap => (rem_euclid(cx, c, dim), None),
                PadMode::Reflect if dim == 1 => (Expr::idx(0), None),
                PadMode::Reflect => {
                    let period = 2 * (dim - 1);
                    let m = rem_euclid(cx, c, period);
                    let p = Expr::select(
                        m.clone().lt(Expr::idx(dim)),
                        m.clone(),
                        Expr::idx(period) - m,
                    );
                    (cx.b.let_("pos", p), None)
                }
            }
        })));
    }
    cx.schedule("parameters", AttrValue::Str("runtime".into()));
    let (out, buf, o) = (cx.out_buf(0), input(cx, 0)?, cx.out_shape(0));
    dyn_gather(cx, out, &o, buf, &s, pos, Some(fill))
}

/// Compress with a runtime condition into a statically shaped output:
/// the picked positions are collected in scratch memory first (at most
/// as many as the output holds, inside the axis), then gathered.
fn compress_dynamic(cx: &mut NodeCx, axis: Option<i64>) -> R {
    let s = cx.in_shape(0);
    let (view, a) = match axis {
        Some(ax) => (s.clone(), normalize(ax, s.len())?),
        None => (vec![numel(&s)], 0),
    };
    let o = cx.out_shape(0);
    let mut out_view = view.clone();
    out_view[a] = match axis {
        Some(_) if o.len() == s.len() => o[a],
        None if o.len() == 1 => o[0],
        _ => return unsupported("compress output does not match"),
    };
    if numel(&out_view) != numel(&o) {
        return unsupported("compress output does not match");
    }
    let k = out_view[a];
    if k == 0 || numel(&o) == 0 {
        return Ok(());
    }
    let (cond, n) = (input(cx, 1)?, numel(&cx.in_shape(1)));
    let picks = cx.scratch("picks", DType::I64, k);
    for i in 0..k {
        cx.b.store(picks, Expr::idx(i as i64), Expr::idx(0));
    }
    let count = cx.b.decl("count", Expr::idx(0));
    let scan = n.min(view[a]);
    let j = cx.b.begin_for("j", 0, scan, 1, LoopKind::Serial);
    let take = Expr::bin(
        BinOp::And,
        Expr::load(cond, j.clone()),
        Expr::Var(count).lt(Expr::idx(k as i64)),
    );
    let count_e = Expr::Var(count);
    cx.b.if_(
        take,
        |b| {
            b.store(picks, count_e.clone(), j.clone());
            b.assign(count, count_e.clone() + 1);
        },
        |_| {},
    );
    cx.b.end_for();
    let mut pos: Vec<Pos> = view.iter().map(|_| Pos::Same).collect();
    pos[a] = Pos::Dyn(Box::new(move |cx: &mut NodeCx, i: Expr| {
        (cx.b.let_("pick", Expr::load(picks, i)), None)
    }));
    cx.schedule("parameters", AttrValue::Str("runtime".into()));
    let (out, buf) = (cx.out_buf(0), input(cx, 0)?);
    dyn_gather(cx, out, &out_view, buf, &view, pos, None)
}

/// BitCast: the same bits read as another dtype of the same width.
fn bit_cast(cx: &mut NodeCx) -> R {
    let n = numel(&cx.out_shape(0));
    if numel(&cx.in_shape(0)) != n {
        return unsupported("bit_cast changes the size");
    }
    let (buf, out) = (input(cx, 0)?, cx.out_buf(0));
    let from = cx.b.kernel().buf(buf).dtype;
    let to = cx.b.kernel().buf(out).dtype;
    if from.bits() != to.bits() {
        return unsupported("bit_cast between dtypes of different widths");
    }
    let src = Src::Bits {
        buf,
        base: Expr::idx(0),
        from,
        to,
    };
    copy_nest(
        cx,
        out,
        Expr::idx(0),
        &[Axis { n, os: 1, ss: 1 }],
        &src,
        true,
    )
}

// ---- values from shapes and constants ----

fn shape(cx: &mut NodeCx, start: i64, end: Option<i64>) -> R {
    let s = cx.in_shape(0);
    let (a, b) = shape_range(start, end, s.len());
    if cx.out_shape(0) != [b - a] {
        return unsupported("shape output does not match");
    }
    let out = cx.out_buf(0);
    for (i, &d) in s[a..b].iter().enumerate() {
        cx.b.store(out, Expr::idx(i as i64), Expr::idx(d as i64));
    }
    Ok(())
}

fn size(cx: &mut NodeCx) -> R {
    let n = numel(&cx.in_shape(0));
    let out = cx.out_buf(0);
    cx.b.store(out, Expr::idx(0), Expr::idx(n as i64));
    Ok(())
}

/// Output 0 filled with one value.
fn fill_out(cx: &mut NodeCx, v: Expr) -> R {
    let n = numel(&cx.out_shape(0));
    let out = cx.out_buf(0);
    copy_nest(
        cx,
        out,
        Expr::idx(0),
        &[Axis { n, os: 1, ss: 0 }],
        &Src::Value(v),
        true,
    )
}

fn constant_of_shape(cx: &mut NodeCx, value: Option<&Tensor>) -> R {
    let dt = cx.out_dtype(0);
    let v = match value {
        Some(t) if t.numel() == 1 && t.dtype() == dt => constant(dt, t, 0),
        Some(_) => return unsupported("constant_of_shape value does not fit"),
        None => zero(dt),
    };
    fill_out(cx, v)
}

fn eye_like(cx: &mut NodeCx, k: i64) -> R {
    let &[rows, cols] = cx.out_shape(0).as_slice() else {
        return unsupported("eye_like needs a 2-D output");
    };
    let dt = cx.out_dtype(0);
    fill_out(cx, zero(dt))?;
    let out = cx.out_buf(0);
    // Ones where j - i == k.
    let (r, c) = (rows as i64, cols as i64);
    let first = k.saturating_neg().max(0);
    let last = r.min(c.saturating_sub(k)); // exclusive bound on i
    if first < last {
        let i = cx.b.begin_for("i", first, last, 1, LoopKind::Serial);
        let at = i.clone() * (c + 1) + k;
        cx.b.store(out, at, Expr::constant(1.0, Ty::scalar(dt)));
        cx.b.end_for();
    }
    Ok(())
}

fn range(cx: &mut NodeCx) -> R {
    let dt = cx.out_dtype(0);
    let n = numel(&cx.out_shape(0));
    if n == 0 {
        return Ok(());
    }
    let (s, d) = (input(cx, 0)?, input(cx, 2)?);
    let out = cx.out_buf(0);
    let s = cx.b.let_("start", Expr::load(s, Expr::idx(0)));
    let d = cx.b.let_("delta", Expr::load(d, Expr::idx(0)));
    let i = cx.b.begin_for("i", 0, n, 1, LoopKind::Serial);
    let v = if dt.is_float() {
        // As the interpreter: start + i·delta in f64, rounded once.
        let f = |e: Expr| {
            if dt == DType::F64 {
                e
            } else {
                e.cast(DType::F64)
            }
        };
        let v = Expr::bin(
            BinOp::Add,
            f(s),
            Expr::bin(BinOp::Mul, i.clone().cast(DType::F64), f(d)),
        );
        if dt == DType::F64 { v } else { v.cast(dt) }
    } else {
        let ic = if dt == DType::I64 {
            i.clone()
        } else {
            i.clone().cast(dt)
        };
        Expr::bin(BinOp::Add, s, Expr::bin(BinOp::Mul, ic, d))
    };
    cx.b.store(out, i, v);
    cx.b.end_for();
    Ok(())
}

/// Trilu: per row, the kept columns are one range and the zeroed ones
/// the other; `k` may be a runtime scalar.
fn trilu(cx: &mut NodeCx, upper: bool) -> R {
    let s = cx.in_shape(0);
    let r = s.len();
    if r < 2 {
        return unsupported("trilu needs rank 2 or more");
    }
    let (rows, cols) = (s[r - 2], s[r - 1]);
    let batch = numel(&s[..r - 2]);
    if batch * rows * cols == 0 {
        return Ok(());
    }
    let dt = storage(cx.in_dtype(0));
    let x = input(cx, 0)?;
    let out = cx.out_buf(0);
    let lim = (rows + cols) as i64;
    let k = match cx.in_value(1) {
        None => Expr::idx(0),
        Some(_) => match cx.in_const(1) {
            Some(t) if t.numel() == 1 => Expr::idx(t.get_i64(0).clamp(-lim, lim)),
            Some(_) => return unsupported("trilu k must be a scalar"),
            None => {
                let kb = input(cx, 1)?;
                if cx.in_dtype(1) != DType::I64 || numel(&cx.in_shape(1)) != 1 {
                    return unsupported("trilu k must be an i64 scalar");
                }
                let k = Expr::load(kb, Expr::idx(0));
                cx.b.let_("k", k.max(Expr::idx(-lim)).min(Expr::idx(lim)))
            }
        },
    };
    let parallel = batch * rows * cols >= PARALLEL_MIN && batch * rows >= 2;
    let kind = if parallel {
        cx.schedule("parallel", AttrValue::Str("rows".into()));
        LoopKind::Parallel
    } else {
        LoopKind::Serial
    };
    let lanes = copy_lanes(cx, dt);
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let row = cx.b.begin_for("row", 0, batch * rows, 1, kind);
    let i = Expr::bin(BinOp::Rem, row.clone(), Expr::idx(rows as i64));
    // Upper keeps j >= i + k; lower keeps j <= i + k.
    let edge = if upper { i + k } else { i + k + 1 };
    let b =
        cx.b.let_("b", edge.max(Expr::idx(0)).min(Expr::idx(cols as i64)));
    let base = cx.b.let_("base", row * cols as i64);
    let zero_v = zero(dt).splat(lanes);
    let (keep, drop) = if upper {
        ((b.clone(), Expr::idx(cols as i64)), (Expr::idx(0), b))
    } else {
        ((Expr::idx(0), b.clone()), (b, Expr::idx(cols as i64)))
    };
    for (range, copy) in [(keep, true), (drop, false)] {
        let (start, end) = range;
        let j =
            cx.b.begin_for("j", start, end.clone(), lanes as i64, LoopKind::Serial);
        let m = cx.b.let_("m", end - j.clone());
        let at = base.clone() + j;
        let v = if copy {
            Expr::load_vec(x, at.clone(), lanes, 1, Some(m.clone()))
        } else {
            zero_v.clone()
        };
        cx.b.store_vec(out, at, v, 1, Some(m));
        cx.b.end_for();
    }
    cx.b.end_for();
    Ok(())
}
