//! Reductions (`reduce_*`), arg-reductions and cumulative scans, and the
//! loop nest that the softmax and normalization lowerings share
//! ([`Nest`]).
//!
//! A reduction's input is coalesced into groups of adjacent dims that are
//! all kept or all reduced (dims of extent 1 vanish), as an
//! `(outer, reduced, inner)` split generalised to any set of axes. The
//! kept groups form a loop nest of independent rows; each row walks the
//! reduced groups once per pass. Vectors run along the last group when it
//! is contiguous:
//! - along a reduced group ([`Lanes::Along`]): vector accumulators, merged
//!   by a horizontal `Reduce` at the end of the row; the masked tail is
//!   filled with the identity;
//! - across a kept group ([`Lanes::Across`]): each lane is a row of its
//!   own, so nothing is merged.
//!
//! The first kept loop runs in parallel when the input is large.
//!
//! Axes given as a runtime input (as ONNX models do) are read off the
//! static shapes of input and output; where those allow several axis sets
//! (`[3, 2, 2] → [3, 2]` without keepdims), the kernel holds the nest of
//! each and runs the one the given axes select. A scan's runtime axis
//! picks its loop nest by a chain of `if`s in the same way.

use super::cx::{NodeCx, flat_index};
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::build::KernelBuilder;
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, ReduceOp, Ty, UnOp, VarId};
use saturn_ir::tensor::strides;
use saturn_ir::{AttrValue, DType, Op};

/// Inputs with at least this many elements run their rows in parallel.
pub(super) const PARALLEL_MIN: usize = 1 << 15;
/// Elements per parallel chunk when the only parallel loop is a vector
/// loop (each vector of a chunk walks the whole reduced extent).
const CHUNK_WORK: usize = 1 << 13;

/// How vector lanes map onto a [`Nest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lanes {
    Scalar,
    /// Along the last group, which is reduced and contiguous.
    Along,
    /// Across the last group, which is kept and contiguous.
    Across,
}

impl Lanes {
    fn name(self) -> &'static str {
        match self {
            Lanes::Scalar => "none",
            Lanes::Along => "along",
            Lanes::Across => "across",
        }
    }
}

/// A tensor's dims as coalesced groups of kept dims (rows) and reduced
/// dims (walked by each row), with the strides of each operand.
pub(super) struct Nest {
    /// Extent of each group (all > 1).
    pub ext: Vec<usize>,
    /// Whether each group is reduced.
    pub red: Vec<bool>,
    /// Per operand, its stride in each group. Operand 0 is the walked
    /// tensor (contiguous).
    pub st: Vec<Vec<i64>>,
    pub mode: Lanes,
    /// The dtype lane masks are computed in.
    dtype: DType,
    /// Lanes of a vector (of f32) on the target.
    width: u16,
    /// A scratch buffer of the lane numbers `0..width` (for tails of
    /// [`Lanes::Along`] that must be filled).
    iota: Option<BufId>,
}

/// One row of a [`Nest`]: the index of every kept group (0 in the
/// reduced ones), and the lanes active in an [`Lanes::Across`] tail.
#[derive(Clone)]
pub(super) struct Row {
    pub idx: Vec<Expr>,
    pub mask: Option<Expr>,
}

/// One step of a walk: the index of every group, the load/store mask,
/// whether it is a masked [`Lanes::Along`] tail whose inactive lanes
/// must be filled, and which accumulator of an unrolled walk it feeds.
pub(super) struct At {
    pub idx: Vec<Expr>,
    pub mask: Option<Expr>,
    pub tail: bool,
    pub part: usize,
}

/// A body called once per row (or per step of a walk).
pub(super) type Body<'a, T> = dyn FnMut(&mut NodeCx, &T) -> Result<(), Unsupported> + 'a;

impl Nest {
    /// Coalesces `shape` (`reduced[d]`: whether dim `d` is reduced) with
    /// the strides of each operand per dim. `along`/`across` allow the
    /// two vector mappings.
    pub fn new(
        cx: &mut NodeCx,
        shape: &[usize],
        reduced: &[bool],
        operands: &[Vec<i64>],
        dtype: DType,
        along: bool,
        across: bool,
    ) -> Nest {
        let width = cx.lanes(DType::F32);
        let mut ext: Vec<usize> = Vec::new();
        let mut red: Vec<bool> = Vec::new();
        let mut st: Vec<Vec<i64>> = vec![Vec::new(); operands.len()];
        for d in 0..shape.len() {
            if shape[d] == 1 {
                continue;
            }
            let merge = red.last() == Some(&reduced[d])
                && operands
                    .iter()
                    .zip(&st)
                    .all(|(s, ns)| ns.last() == Some(&(s[d] * shape[d] as i64)));
            if merge {
                *ext.last_mut().unwrap() *= shape[d];
                for (s, ns) in operands.iter().zip(st.iter_mut()) {
                    *ns.last_mut().unwrap() = s[d];
                }
            } else {
                ext.push(shape[d]);
                red.push(reduced[d]);
                for (s, ns) in operands.iter().zip(st.iter_mut()) {
                    ns.push(s[d]);
                }
            }
        }
        let vectorizable = dtype != DType::Bool;
        let contiguous = st.first().and_then(|s| s.last()) == Some(&1);
        let long = ext.last().is_some_and(|&n| n >= width as usize);
        let mode = match red.last() {
            Some(true) if vectorizable && contiguous && long && along => Lanes::Along,
            Some(false) if vectorizable && contiguous && long && across => Lanes::Across,
            _ => Lanes::Scalar,
        };
        let mut nest = Nest {
            ext,
            red,
            st,
            mode,
            dtype,
            width,
            iota: None,
        };
        let n = nest.ext.last().copied().unwrap_or(1);
        if mode == Lanes::Along && n % width as usize != 0 {
            let it = lane_int(dtype);
            let buf = cx.scratch("lane", it, width as usize);
            for l in 0..width {
                cx.b.store(
                    buf,
                    Expr::idx(l as i64),
                    Expr::Int(l as i64, Ty::scalar(it)),
                );
            }
            nest.iota = Some(buf);
        }
        nest
    }

    pub fn lanes(&self) -> u16 {
        match self.mode {
            Lanes::Scalar => 1,
            _ => self.width,
        }
    }

    /// The type of per-element values of `dt`.
    pub fn vty(&self, dt: DType) -> Ty {
        Ty::vector(dt, self.lanes())
    }

    /// The type of per-row values of `dt` (vectors across rows).
    pub fn row_ty(&self, dt: DType) -> Ty {
        match self.mode {
            Lanes::Across => Ty::vector(dt, self.width),
            _ => Ty::scalar(dt),
        }
    }

    /// Records the vector mapping in the kernel's schedule.
    pub fn record(&self, cx: &mut NodeCx) {
        cx.schedule("vector", AttrValue::Int(self.lanes() as i64));
        cx.schedule("vectorize", AttrValue::Str(self.mode.name().into()));
    }

    /// Extents of the kept groups (the shape of a reduction's output).
    pub fn kept_ext(&self) -> Vec<usize> {
        self.groups(false).map(|g| self.ext[g]).collect()
    }

    /// Indices of the kept groups of a row.
    pub fn kept_idx(&self, row: &Row) -> Vec<Expr> {
        self.groups(false).map(|g| row.idx[g].clone()).collect()
    }

    /// Row-major flat index of a row among all rows.
    pub fn row_index(&self, row: &Row) -> Expr {
        flat_index(&self.kept_ext(), &self.kept_idx(row))
    }

    fn groups(&self, reduced: bool) -> impl Iterator<Item = usize> + '_ {
        (0..self.ext.len()).filter(move |&g| self.red[g] == reduced)
    }

    /// Extent of the reduced groups together.
    pub fn reduced_len(&self) -> usize {
        self.groups(true).map(|g| self.ext[g]).product()
    }

    /// The group of the reduced dims when there is exactly one.
    pub fn reduced_group(&self) -> Option<usize> {
        let mut it = self.groups(true);
        let g = it.next()?;
        it.next().is_none().then_some(g)
    }

    /// Opens the loops over the rows and calls `body` for each row (twice
    /// in [`Lanes::Across`]: full vectors, then the masked tail).
    pub fn rows(
        &self,
        cx: &mut NodeCx,
        parallel: bool,
        body: &mut Body<'_, Row>,
    ) -> Result<(), Unsupported> {
        let kept: Vec<usize> = self.groups(false).collect();
        let mut idx = vec![Expr::idx(0); self.ext.len()];
        let across = self.mode == Lanes::Across;
        let loops = kept.len() - across as usize;
        for (i, &g) in kept[..loops].iter().enumerate() {
            let kind = if parallel && i == 0 {
                cx.schedule("parallel", AttrValue::Str(format!("k{g}")));
                LoopKind::Parallel
            } else {
                LoopKind::Serial
            };
            idx[g] = cx.b.begin_for(&format!("k{g}"), 0, self.ext[g], 1, kind);
        }
        if across {
            let g = *kept.last().expect("a kept group");
            let (n, l) = (self.ext[g], self.width as usize);
            let full = n / l * l;
            if full > 0 {
                let vectors = (CHUNK_WORK / (l * self.reduced_len())).max(4);
                let chunk = vectors * l;
                let chunked = parallel && loops == 0 && full > chunk;
                if chunked {
                    cx.schedule("parallel", AttrValue::Str("chunk".into()));
                    cx.schedule("chunk", AttrValue::Int(chunk as i64));
                    let c =
                        cx.b.begin_for("chunk", 0, full.div_ceil(chunk), 1, LoopKind::Parallel);
                    let start = cx.b.let_("start", c * chunk as i64);
                    let end = (start.clone() + chunk as i64).min(Expr::idx(full as i64));
                    idx[g] =
                        cx.b.begin_for(&format!("k{g}"), start, end, l as i64, LoopKind::Serial);
                } else {
                    idx[g] =
                        cx.b.begin_for(&format!("k{g}"), 0, full, l as i64, LoopKind::Serial);
                }
                body(
                    cx,
                    &Row {
                        idx: idx.clone(),
                        mask: None,
                    },
                )?;
                cx.b.end_for();
                if chunked {
                    cx.b.end_for();
                }
            }
            if full < n {
                idx[g] = Expr::idx(full as i64);
                body(
                    cx,
                    &Row {
                        idx: idx.clone(),
                        mask: Some(Expr::idx((n - full) as i64)),
                    },
                )?;
            }
        } else {
            body(cx, &Row { idx, mask: None })?;
        }
        for _ in 0..loops {
            cx.b.end_for();
        }
        Ok(())
    }

    /// Walks the reduced groups of `row`, calling `body` per element (per
    /// vector). In [`Lanes::Along`], `unroll` vectors are handled per step
    /// of the main loop, each feeding accumulator `At::part`.
    pub fn walk(
        &self,
        cx: &mut NodeCx,
        row: &Row,
        name: &str,
        unroll: usize,
        body: &mut Body<'_, At>,
    ) -> Result<(), Unsupported> {
        let red: Vec<usize> = self.groups(true).collect();
        let mut idx = row.idx.clone();
        let along = self.mode == Lanes::Along;
        let loops = red.len() - along as usize;
        for &g in &red[..loops] {
            idx[g] =
                cx.b.begin_for(&format!("{name}{g}"), 0, self.ext[g], 1, LoopKind::Serial);
        }
        if along {
            let g = *red.last().expect("a reduced group");
            let (n, l) = (self.ext[g], self.width as usize);
            let u = unroll.max(1);
            let step = l * u;
            let main = if u > 1 { n / step * step } else { 0 };
            if main > 0 {
                let i = cx.b.begin_for(name, 0, main, step as i64, LoopKind::Serial);
                for part in 0..u {
                    idx[g] = i.clone() + (part * l) as i64;
                    body(
                        cx,
                        &At {
                            idx: idx.clone(),
                            mask: None,
                            tail: false,
                            part,
                        },
                    )?;
                }
                cx.b.end_for();
            }
            let full = n / l * l;
            if full > main {
                let single = full - main == l;
                idx[g] = if single {
                    Expr::idx(main as i64)
                } else {
                    cx.b.begin_for(name, main, full, l as i64, LoopKind::Serial)
                };
                body(
                    cx,
                    &At {
                        idx: idx.clone(),
                        mask: None,
                        tail: false,
                        part: 0,
                    },
                )?;
                if !single {
                    cx.b.end_for();
                }
            }
            if full < n {
                idx[g] = Expr::idx(full as i64);
                body(
                    cx,
                    &At {
                        idx: idx.clone(),
                        mask: Some(Expr::idx((n - full) as i64)),
                        tail: true,
                        part: 0,
                    },
                )?;
            }
        } else {
            body(
                cx,
                &At {
                    idx,
                    mask: row.mask.clone(),
                    tail: false,
                    part: 0,
                },
            )?;
        }
        for _ in 0..loops {
            cx.b.end_for();
        }
        Ok(())
    }

    /// Accumulators per row walk: 4 along long contiguous rows (so that
    /// the additions do not wait on each other), else 1.
    pub fn unroll(&self) -> usize {
        match (self.mode, self.ext.last()) {
            (Lanes::Along, Some(&n)) if n >= 8 * self.width as usize => 4,
            _ => 1,
        }
    }

    /// Walks the row folding every element into accumulators that start
    /// at `init`: `step(at, acc)` is the new value of the accumulator the
    /// step feeds. Returns the accumulators merged with `merge`, not yet
    /// reduced horizontally.
    pub fn accumulate(
        &self,
        cx: &mut NodeCx,
        row: &Row,
        name: &str,
        init: Expr,
        merge: BinOp,
        step: &mut dyn FnMut(&mut NodeCx, &At, Expr) -> Result<Expr, Unsupported>,
    ) -> Result<Expr, Unsupported> {
        self.accumulate_in(cx, row, name, init, merge, self.unroll(), step)
    }

    /// Accumulators worth keeping for a loop body heavier than a single
    /// operation (an exponential per element): with vectors of at most 4
    /// lanes (16 registers of 128 bits, Cranelift), one; otherwise
    /// [`Nest::unroll`].
    pub fn unroll_heavy(&self) -> usize {
        if self.width >= 8 { self.unroll() } else { 1 }
    }

    /// [`Nest::accumulate`] with `u` accumulators.
    #[allow(clippy::too_many_arguments)]
    pub fn accumulate_in(
        &self,
        cx: &mut NodeCx,
        row: &Row,
        name: &str,
        init: Expr,
        merge: BinOp,
        u: usize,
        step: &mut dyn FnMut(&mut NodeCx, &At, Expr) -> Result<Expr, Unsupported>,
    ) -> Result<Expr, Unsupported> {
        if u > 1 {
            cx.schedule("unroll", AttrValue::Int(u as i64));
        }
        let accs: Vec<VarId> = (0..u)
            .map(|p| cx.b.decl(&format!("{name}{p}"), init.clone()))
            .collect();
        self.walk(cx, row, "j", u, &mut |cx, at| {
            let a = accs[at.part];
            let v = step(cx, at, Expr::Var(a))?;
            cx.b.assign(a, v);
            Ok(())
        })?;
        let mut acc = Expr::Var(accs[0]);
        for a in &accs[1..] {
            acc = Expr::bin(merge, acc, Expr::Var(*a));
        }
        Ok(acc)
    }

    /// The element (vector) of operand `op`, held in `buf`, at `idx`.
    pub fn load(&self, idx: &[Expr], mask: Option<Expr>, op: usize, buf: BufId) -> Expr {
        let st = &self.st[op];
        let mut index = Expr::idx(0);
        for (i, &s) in idx.iter().zip(st) {
            if s != 0 {
                index = index + i.clone() * s;
            }
        }
        match (self.mode, st.last()) {
            (Lanes::Scalar, _) | (_, None) => Expr::load(buf, index),
            (_, Some(0)) => Expr::load(buf, index).splat(self.width),
            (_, Some(&s)) => Expr::load_vec(buf, index, self.width, s, mask),
        }
    }

    /// A per-row value of operand `op` (constant along the reduced dims).
    pub fn load_row(&self, row: &Row, op: usize, buf: BufId) -> Expr {
        match self.mode {
            Lanes::Across => self.load(&row.idx, row.mask.clone(), op, buf),
            _ => {
                let mut index = Expr::idx(0);
                for (i, &s) in row.idx.iter().zip(&self.st[op]) {
                    if s != 0 {
                        index = index + i.clone() * s;
                    }
                }
                Expr::load(buf, index)
            }
        }
    }

    /// `v` with the inactive lanes of an [`Lanes::Along`] tail replaced
    /// by `fill` (a scalar of `v`'s element type).
    pub fn fill(&self, at: &At, v: Expr, fill: Expr) -> Expr {
        match (at.tail, self.iota, &at.mask) {
            (true, Some(iota), Some(m)) => {
                let ty = Ty::vector(lane_int(self.dtype), self.width);
                let lanes = Expr::load_vec(iota, Expr::idx(0), self.width, 1, None);
                let rem = Expr::Int(m.as_int().unwrap_or(0), ty);
                let active = Expr::bin(BinOp::Lt, lanes, rem);
                Expr::select(active, v, fill.splat(self.width))
            }
            _ => v,
        }
    }

    /// A vector merged into a per-row value (in [`Lanes::Along`]).
    pub fn hreduce(&self, op: ReduceOp, v: Expr) -> Expr {
        match self.mode {
            Lanes::Along => Expr::Reduce(op, Box::new(v)),
            _ => v,
        }
    }

    /// A per-row value as a per-element one.
    pub fn bcast(&self, v: Expr) -> Expr {
        match self.mode {
            Lanes::Along => v.splat(self.width),
            _ => v,
        }
    }

    /// Stores a per-element value shaped like operand 0 (the group's
    /// output, through the epilogue).
    pub fn store(&self, cx: &mut NodeCx, at: &At, v: Expr) -> Result<(), Unsupported> {
        cx.store_out_view(&self.ext, &at.idx, v, at.mask.clone())
    }

    /// Stores a per-row value at the row's position in `buf` (the rows in
    /// row-major order), converted to the buffer's dtype.
    pub fn store_row(&self, cx: &mut NodeCx, row: &Row, buf: BufId, v: Expr) {
        let dt = cx.b.kernel().buf(buf).dtype;
        let v = if cx.b.ty(&v).elem != dt {
            v.cast(dt)
        } else {
            v
        };
        let at = self.row_index(row);
        cx.b.store_vec(buf, at, v, 1, row.mask.clone());
    }
}

/// The strides, per dim of the anchor's input 0, of every operand of the
/// group's epilogue (broadcast onto the output; `out_dim(d)` is the
/// output dim of input dim `d`, `None` for a reduced dim). Appended to a
/// nest's operands, they keep coalescing from merging dims that an
/// epilogue operand does not walk alike.
pub(super) fn epilogue_operands(
    cx: &NodeCx,
    rank: usize,
    out_dim: &dyn Fn(usize) -> Option<usize>,
) -> Vec<Vec<i64>> {
    let Some(t) = cx
        .group
        .epilogue
        .as_ref()
        .filter(|_| cx.group.anchor.is_some())
    else {
        return Vec::new();
    };
    let out = cx.final_shape();
    t.leaves()
        .into_iter()
        .map(|v| {
            let ls = cx.g.ty(v).shape.as_known().unwrap_or_default();
            let st = if ls.len() <= out.len() {
                super::elementwise::broadcast_strides(&ls, &out)
            } else {
                vec![0; out.len()]
            };
            (0..rank)
                .map(|d| out_dim(d).and_then(|o| st.get(o).copied()).unwrap_or(0))
                .collect()
        })
        .collect()
}

/// The integer type lane numbers are compared in, as wide as `dt`.
fn lane_int(dt: DType) -> DType {
    match dt.bits() {
        64 => DType::I64,
        16 => DType::I16,
        8 | 1 => DType::I8,
        _ => DType::I32,
    }
}

/// A constant of `ty` (floats as floats, integers as integers).
pub(super) fn constant(v: f64, ty: Ty) -> Expr {
    Expr::constant(v, ty)
}

/// Row-major strides as kernel strides.
pub(super) fn row_major(shape: &[usize]) -> Vec<i64> {
    strides(shape).iter().map(|&s| s as i64).collect()
}

/// Whether the graph's element count is large enough for parallel rows.
pub(super) fn large(shape: &[usize]) -> bool {
    shape.iter().product::<usize>() >= PARALLEL_MIN
}

/// A libm function of a float value (scalar or vector).
pub(super) fn libm(b: &saturn_ir::kernel::build::KernelBuilder, f32name: &str, x: Expr) -> Expr {
    let ty = b.ty(&x);
    let name = if ty.elem == DType::F64 {
        f32name.trim_end_matches('f')
    } else {
        f32name
    };
    Expr::Call(name.to_string(), vec![x], ty)
}

/// Normalizes an axis attribute, or explains why not.
pub(super) fn norm_axis(a: i64, rank: usize) -> Result<usize, Unsupported> {
    let r = rank as i64;
    if a < -r || a >= r {
        return unsupported(format!("axis {a} out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Option<Result<(), Unsupported>> {
    use Op::*;
    let op = cx.g.node(node).op.clone();
    let r = match &op {
        ReduceSum(o) => reduce(cx, Kind::Sum, o.keepdims, o.noop_with_empty_axes),
        ReduceMean(o) => reduce(cx, Kind::Mean, o.keepdims, o.noop_with_empty_axes),
        ReduceMax(o) => reduce(cx, Kind::Max, o.keepdims, o.noop_with_empty_axes),
        ReduceMin(o) => reduce(cx, Kind::Min, o.keepdims, o.noop_with_empty_axes),
        ReduceProd(o) => reduce(cx, Kind::Prod, o.keepdims, o.noop_with_empty_axes),
        ReduceL1(o) => reduce(cx, Kind::L1, o.keepdims, o.noop_with_empty_axes),
        ReduceL2(o) => reduce(cx, Kind::L2, o.keepdims, o.noop_with_empty_axes),
        ReduceLogSum(o) => reduce(cx, Kind::LogSum, o.keepdims, o.noop_with_empty_axes),
        ReduceLogSumExp(o) => reduce(cx, Kind::LogSumExp, o.keepdims, o.noop_with_empty_axes),
        ReduceSumSquare(o) => reduce(cx, Kind::SumSquare, o.keepdims, o.noop_with_empty_axes),
        ArgMax(o) => arg_reduce(cx, o.axis, o.select_last_index, true),
        ArgMin(o) => arg_reduce(cx, o.axis, o.select_last_index, false),
        CumSum(o) => cumulative(cx, o.exclusive, o.reverse, false),
        CumProd(o) => cumulative(cx, o.exclusive, o.reverse, true),
        _ => return None,
    };
    Some(r)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// How elements combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comb {
    Add,
    Mul,
    Max,
    Min,
    Or,
    And,
}

impl Comb {
    fn apply(self, a: Expr, b: Expr) -> Expr {
        let op = match self {
            Comb::Add => BinOp::Add,
            Comb::Mul => BinOp::Mul,
            Comb::Max => BinOp::Max,
            Comb::Min => BinOp::Min,
            Comb::Or => BinOp::Or,
            Comb::And => BinOp::And,
        };
        Expr::bin(op, a, b)
    }

    fn horizontal(self) -> ReduceOp {
        match self {
            Comb::Add => ReduceOp::Add,
            Comb::Mul => ReduceOp::Mul,
            // On 0/1 lanes.
            Comb::Max | Comb::Or => ReduceOp::Max,
            Comb::Min | Comb::And => ReduceOp::Min,
        }
    }
}

/// One reduction on one dtype: what it computes in and how.
struct Spec {
    kind: Kind,
    /// The type accumulated in.
    ct: DType,
    comb: Comb,
}

impl Spec {
    fn new(kind: Kind, dt: DType) -> Spec {
        use Kind::*;
        let ct = match kind {
            _ if dt.is_float() => dt,
            L2 | LogSum | LogSumExp => DType::F64,
            // The mean of integers divides the exact sum.
            Mean if dt.is_unsigned_int() => DType::U64,
            Mean => DType::I64,
            _ => dt,
        };
        let comb = match kind {
            Max if dt == DType::Bool => Comb::Or,
            Min if dt == DType::Bool => Comb::And,
            Max => Comb::Max,
            Min => Comb::Min,
            Prod => Comb::Mul,
            _ => Comb::Add,
        };
        Spec { kind, ct, comb }
    }

    /// The identity of the combination, in `ty` (of the compute type).
    fn identity(&self, ty: Ty) -> Expr {
        let d = ty.elem;
        match self.comb {
            Comb::Add | Comb::Or => constant(0.0, ty),
            Comb::Mul | Comb::And => constant(1.0, ty),
            Comb::Max if d.is_float() => constant(f64::NEG_INFINITY, ty),
            Comb::Min if d.is_float() => constant(f64::INFINITY, ty),
            Comb::Max => Expr::Int(int_bounds(d).0, ty),
            Comb::Min => Expr::Int(int_bounds(d).1, ty),
        }
    }

    /// Whether a masked tail (zeros in the inactive lanes) must be
    /// filled with the identity before combining.
    fn needs_fill(&self) -> bool {
        !matches!(self.comb, Comb::Add | Comb::Or) || self.kind == Kind::LogSumExp
    }

    /// The value an element contributes.
    fn map(&self, x: Expr) -> Expr {
        match self.kind {
            Kind::L1 if !self.ct.is_unsigned_int() => Expr::un(UnOp::Abs, x),
            Kind::L2 | Kind::SumSquare => Expr::bin(BinOp::Mul, x.clone(), x),
            _ => x,
        }
    }

    /// The result from the accumulated value of `count` elements.
    fn finish(&self, b: &saturn_ir::kernel::build::KernelBuilder, acc: Expr, count: usize) -> Expr {
        let ty = b.ty(&acc);
        match self.kind {
            Kind::Mean => Expr::bin(BinOp::Div, acc, constant(count as f64, ty)),
            Kind::L2 => Expr::un(UnOp::Sqrt, acc),
            Kind::LogSum => libm(b, "logf", acc),
            _ => acc,
        }
    }
}

/// The smallest and largest value of an integer dtype, as i64 bits.
fn int_bounds(d: DType) -> (i64, i64) {
    use DType::*;
    match d {
        Bool => (0, 1),
        I8 => (i8::MIN as i64, i8::MAX as i64),
        I16 => (i16::MIN as i64, i16::MAX as i64),
        I32 => (i32::MIN as i64, i32::MAX as i64),
        U8 => (0, u8::MAX as i64),
        U16 => (0, u16::MAX as i64),
        U32 => (0, u32::MAX as i64),
        U64 => (0, -1),
        _ => (i64::MIN, i64::MAX),
    }
}

fn cast(v: Expr, from: DType, to: DType) -> Expr {
    if from == to { v } else { v.cast(to) }
}

/// What input 1 says about the reduction axes.
enum Axes {
    /// Absent or empty.
    Empty,
    Given(Vec<usize>),
    /// Known at run time only: the axis sets the shapes allow (sets that
    /// differ only in dims of extent 1 counted once).
    Runtime(Vec<Vec<usize>>),
}

/// Reduction axes from the constant input 1, or, when the axes are only
/// known at run time, the sets of them the static shapes allow.
fn reduction_axes(cx: &NodeCx, rank: usize, keepdims: bool) -> Result<Axes, Unsupported> {
    if cx.in_value(1).is_none() {
        return Ok(Axes::Empty);
    }
    let Some(t) = cx.in_const(1) else {
        let c = axes_from_shapes(&cx.in_shape(0), &cx.out_shape(0), keepdims);
        if c.is_empty() {
            return unsupported("runtime reduction axes that match no axes of the shapes");
        }
        return Ok(Axes::Runtime(c));
    };
    if !t.dtype().is_int() {
        return unsupported("reduction axes that are not integers");
    }
    let v = t.to_i64_vec();
    if v.is_empty() {
        return Ok(Axes::Empty);
    }
    let mut axes = v
        .iter()
        .map(|&a| norm_axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    if axes.windows(2).any(|w| w[0] == w[1]) {
        return unsupported(format!("axes {v:?} repeat an axis"));
    }
    Ok(Axes::Given(axes))
}

/// The sets of axes (of extent other than 1: reducing those changes
/// nothing) whose reduction turns `input` into `output`.
fn axes_from_shapes(input: &[usize], output: &[usize], keepdims: bool) -> Vec<Vec<usize>> {
    let rank = input.len();
    if keepdims || output.len() == rank {
        if output.len() != rank {
            return vec![];
        }
        let mut axes = Vec::new();
        for (d, (&i, &o)) in input.iter().zip(output).enumerate() {
            if i != o {
                if o != 1 {
                    return vec![];
                }
                axes.push(d);
            }
        }
        return vec![axes];
    }
    // Without keepdims the output is the input with the axes removed.
    let k = rank.saturating_sub(output.len());
    if rank > 12 || output.len() > rank {
        return vec![];
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    for bits in 0u32..(1 << rank) {
        if bits.count_ones() as usize != k {
            continue;
        }
        let kept: Vec<usize> = (0..rank)
            .filter(|d| bits & (1 << d) == 0)
            .map(|d| input[d])
            .collect();
        if kept != output {
            continue;
        }
        let set: Vec<usize> = (0..rank)
            .filter(|&d| bits & (1 << d) != 0 && input[d] != 1)
            .collect();
        if !out.contains(&set) {
            out.push(set);
        }
    }
    out
}

fn reduce(cx: &mut NodeCx, kind: Kind, keepdims: bool, noop: bool) -> Result<(), Unsupported> {
    let shape = cx.in_shape(0);
    let dt = cx.in_dtype(0);
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("missing input".into()))?;
    let rank = shape.len();
    let sets = match reduction_axes(cx, rank, keepdims)? {
        Axes::Empty if noop => return copy(cx, x, &shape, dt),
        Axes::Empty => return reduce_nest(cx, kind, x, &shape, &(0..rank).collect::<Vec<_>>()),
        Axes::Given(a) => return reduce_nest(cx, kind, x, &shape, &a),
        Axes::Runtime(sets) => sets,
    };
    // The shapes cannot tell no axes (with noop, the input as it is)
    // from axes of extent 1 (each element mapped, as |x| or x²).
    let identity_map = matches!(
        kind,
        Kind::Sum | Kind::Mean | Kind::Max | Kind::Min | Kind::Prod
    );
    if noop && sets.iter().any(|s| s.is_empty()) && !identity_map {
        return unsupported("runtime reduction axes that the shapes do not determine");
    }
    if let [axes] = sets.as_slice() {
        return reduce_nest(cx, kind, x, &shape, axes);
    }
    // Several sets fit: each gets its nest, run when the axes at run time
    // are that set (and dims of extent 1).
    let ab = cx
        .input(1)
        .ok_or_else(|| Unsupported("missing axes".into()))?;
    let adt = cx.in_dtype(1);
    let n_axes: usize = cx.in_shape(1).iter().product();
    if !adt.is_int() || n_axes > 16 {
        return unsupported("runtime reduction axes that are not a few integers");
    }
    cx.schedule("axes", AttrValue::Str("runtime".into()));
    let given: Vec<Expr> = (0..n_axes)
        .map(|j| {
            let raw = cx.b.let_(
                "axis",
                cast(Expr::load(ab, Expr::idx(j as i64)), adt, DType::I64),
            );
            cx.b.let_(
                "a",
                Expr::select(raw.clone().lt(Expr::idx(0)), raw.clone() + rank as i64, raw),
            )
        })
        .collect();
    let ones: Vec<usize> = (0..rank).filter(|&d| shape[d] == 1).collect();
    let any = |conds: Vec<Expr>| {
        conds
            .into_iter()
            .reduce(|a, b| Expr::bin(BinOp::Or, a, b))
            .unwrap_or(Expr::Int(0, Ty::BOOL))
    };
    let all = |conds: Vec<Expr>| {
        conds
            .into_iter()
            .reduce(|a, b| Expr::bin(BinOp::And, a, b))
            .unwrap_or(Expr::Int(1, Ty::BOOL))
    };
    let is = |e: &Expr, d: usize| Expr::bin(BinOp::Eq, e.clone(), Expr::idx(d as i64));
    for set in &sets {
        if noop && set.is_empty() && n_axes == 0 {
            continue;
        }
        // Every given axis is in the set (or of extent 1), and every axis
        // of the set is given.
        let mut conds: Vec<Expr> = given
            .iter()
            .map(|a| any(set.iter().chain(&ones).map(|&d| is(a, d)).collect()))
            .collect();
        conds.extend(
            set.iter()
                .map(|&d| any(given.iter().map(|a| is(a, d)).collect())),
        );
        let when = Expr::select(all(conds), Expr::idx(1), Expr::idx(0));
        // A loop of one iteration or none: the nest runs only for its set.
        cx.b.begin_for("when", 0, when, 1, LoopKind::Serial);
        reduce_nest(cx, kind, x, &shape, set)?;
        cx.b.end_for();
    }
    Ok(())
}

/// The reduction of `x` over `axes` (sorted).
fn reduce_nest(
    cx: &mut NodeCx,
    kind: Kind,
    x: BufId,
    shape: &[usize],
    axes: &[usize],
) -> Result<(), Unsupported> {
    let shape = shape.to_vec();
    let rank = shape.len();
    let dt = cx.in_dtype(0);
    let mut reduced = vec![false; rank];
    for &a in axes {
        reduced[a] = true;
    }
    let out_len: usize = cx.out_shape(0).iter().product();
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    if out_len == 0 {
        return Ok(());
    }
    let spec = Spec::new(kind, dt);
    let ct = spec.ct;
    if shape.contains(&0) {
        // Nothing to reduce: every output is the finished identity.
        let id = spec.identity(Ty::scalar(ct));
        let v = if kind == Kind::LogSumExp {
            libm(&cx.b, "logf", id)
        } else {
            spec.finish(&cx.b, id, count)
        };
        let v = cx.b.let_("empty", cast(v, ct, dt));
        let i = cx.b.begin_for("i", 0, out_len, 1, LoopKind::Serial);
        cx.store_out_view(&[out_len], &[i], v, None)?;
        cx.b.end_for();
        return Ok(());
    }
    let vec_ok = dt != DType::Bool;
    let keep = cx.out_shape(0).len() == rank;
    let out_dim = |d: usize| {
        if reduced[d] {
            None
        } else if keep {
            Some(d)
        } else {
            Some((0..d).filter(|&e| !reduced[e]).count())
        }
    };
    let mut operands = vec![row_major(&shape)];
    operands.extend(epilogue_operands(cx, rank, &out_dim));
    let nest = Nest::new(cx, &shape, &reduced, &operands, dt, vec_ok, vec_ok);
    nest.record(cx);
    let rows = !nest.kept_ext().is_empty();
    let parallel = large(&shape) && rows;
    let unroll = nest.unroll();
    if unroll > 1 {
        cx.schedule("unroll", AttrValue::Int(unroll as i64));
    }
    let view = nest.kept_ext();
    let fill_id = match spec.comb {
        Comb::Max => f64::NEG_INFINITY,
        Comb::Min => f64::INFINITY,
        Comb::Mul | Comb::And => 1.0,
        _ => 0.0,
    };
    nest.rows(cx, parallel, &mut |cx, row| {
        let vt = nest.vty(ct);
        let load = |at: &At| cast(nest.load(&at.idx, at.mask.clone(), 0, x), dt, ct);
        // log-sum-exp shifts by the largest finite element first.
        let shift = if kind == Kind::LogSumExp {
            let m = cx.b.decl("m", constant(f64::NEG_INFINITY, vt));
            nest.walk(cx, row, "r", 1, &mut |cx, at| {
                let v = cx.b.let_("v", load(at));
                let finite = Expr::bin(
                    BinOp::Lt,
                    Expr::un(UnOp::Abs, v.clone()),
                    constant(f64::INFINITY, vt),
                );
                let v = Expr::select(finite, v, constant(f64::NEG_INFINITY, vt));
                let v = nest.fill(at, v, constant(f64::NEG_INFINITY, Ty::scalar(ct)));
                cx.b.assign(m, Expr::bin(BinOp::Max, Expr::Var(m), v));
                Ok(())
            })?;
            let mx = cx.b.let_("max", nest.hreduce(ReduceOp::Max, Expr::Var(m)));
            let rt = cx.b.ty(&mx);
            let sh = Expr::select(
                Expr::bin(BinOp::Eq, mx.clone(), constant(f64::NEG_INFINITY, rt)),
                constant(0.0, rt),
                mx,
            );
            Some(cx.b.let_("shift", sh))
        } else {
            None
        };
        let accs: Vec<VarId> = (0..unroll)
            .map(|p| cx.b.decl(&format!("acc{p}"), spec.identity(vt)))
            .collect();
        nest.walk(cx, row, "r", unroll, &mut |cx, at| {
            let v = load(at);
            let v = match &shift {
                Some(s) => {
                    let d = Expr::bin(BinOp::Sub, v, nest.bcast(s.clone()));
                    saturn_ir::kernel::math::exp(&mut cx.b, d)
                }
                None => spec.map(v),
            };
            let v = if spec.needs_fill() {
                let f = if kind == Kind::LogSumExp {
                    0.0
                } else {
                    fill_id
                };
                nest.fill(at, v, fill_const(f, ct))
            } else {
                v
            };
            let a = accs[at.part];
            cx.b.assign(a, spec.comb.apply(Expr::Var(a), v));
            Ok(())
        })?;
        let mut acc = Expr::Var(accs[0]);
        for a in &accs[1..] {
            acc = spec.comb.apply(acc, Expr::Var(*a));
        }
        let acc = nest.hreduce(spec.comb.horizontal(), acc);
        let y = match &shift {
            Some(s) => Expr::bin(BinOp::Add, libm(&cx.b, "logf", acc), s.clone()),
            None => spec.finish(&cx.b, acc, count),
        };
        let y = cast(y, ct, dt);
        let idx = nest.kept_idx(row);
        cx.store_out_view(&view, &idx, y, row.mask.clone())
    })
}

/// A fill constant of the compute type (integers by their bounds).
fn fill_const(v: f64, ct: DType) -> Expr {
    let ty = Ty::scalar(ct);
    if ct.is_float() {
        constant(v, ty)
    } else if v == f64::NEG_INFINITY {
        Expr::Int(int_bounds(ct).0, ty)
    } else if v == f64::INFINITY {
        Expr::Int(int_bounds(ct).1, ty)
    } else {
        constant(v, ty)
    }
}

/// The input as it is (`noop_with_empty_axes` without axes).
fn copy(cx: &mut NodeCx, x: BufId, shape: &[usize], dt: DType) -> Result<(), Unsupported> {
    if shape.contains(&0) {
        return Ok(());
    }
    let mut operands = vec![row_major(shape)];
    operands.extend(epilogue_operands(cx, shape.len(), &|d| Some(d)));
    let nest = Nest::new(
        cx,
        shape,
        &vec![false; shape.len()],
        &operands,
        dt,
        false,
        dt != DType::Bool,
    );
    nest.record(cx);
    let view = nest.kept_ext();
    nest.rows(cx, large(shape), &mut |cx, row| {
        let v = nest.load_row(row, 0, x);
        let idx = nest.kept_idx(row);
        cx.store_out_view(&view, &idx, v, row.mask.clone())
    })
}

/// `(outer, n, inner)` of a shape split at an axis.
pub(super) fn split3(shape: &[usize], a: usize) -> (usize, usize, usize) {
    (
        shape[..a].iter().product(),
        shape[a],
        shape[a + 1..].iter().product(),
    )
}

/// Whether a dtype vectorises across rows in the arg and scan loops.
fn wide_lanes(dt: DType) -> bool {
    dt.bits() >= 32 && dt != DType::Bool
}

/// ArgMax (`max`) or ArgMin along an axis; NaN wins, ties go to the
/// first (or with `last` the last) index. Vectors run across the dims
/// after the axis.
fn arg_reduce(cx: &mut NodeCx, axis: i64, last: bool, max: bool) -> Result<(), Unsupported> {
    let vl = cx.lanes(DType::F32);
    let shape = cx.in_shape(0);
    let dt = cx.in_dtype(0);
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("missing input".into()))?;
    let a = norm_axis(axis, shape.len().max(1))?;
    if shape.is_empty() {
        return unsupported("arg reduction of a scalar");
    }
    let out = cx.out_buf(0);
    let (outer, n, inner) = split3(&shape, a);
    if outer * n * inner == 0 {
        if outer * inner > 0 {
            return unsupported("arg reduction over an empty axis");
        }
        return Ok(());
    }
    let lanes = if inner >= vl as usize && wide_lanes(dt) {
        vl
    } else {
        1
    };
    // Indices are kept in an integer type as wide as the data.
    let it = if lanes > 1 && dt.bits() == 32 {
        DType::I32
    } else {
        DType::I64
    };
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    let parallel = large(&shape) && outer > 1;
    if parallel {
        cx.schedule("parallel", AttrValue::Str("o".into()));
    }
    let kind = if parallel {
        LoopKind::Parallel
    } else {
        LoopKind::Serial
    };
    let o = cx.b.begin_for("o", 0, outer, 1, kind);
    let fl = dt.is_float();
    super::elementwise::vector_loop(cx, "i", inner, lanes, &mut |cx, i, mask| {
        let base =
            cx.b.let_("base", o.clone() * (n * inner) as i64 + i.clone());
        let ld = |at: Expr| {
            if lanes == 1 {
                Expr::load(x, at)
            } else {
                Expr::load_vec(x, at, lanes, 1, mask.clone())
            }
        };
        let best = cx.b.decl("best", ld(base.clone()));
        let bi = cx.b.decl("besti", Expr::Int(0, Ty::vector(it, lanes)));
        let k = cx.b.begin_for("k", 1, n, 1, LoopKind::Serial);
        let c = cx.b.let_("c", ld(base.clone() + k.clone() * inner as i64));
        let b = Expr::Var(best);
        let cmp = match (max, last) {
            (true, false) => BinOp::Gt,
            (true, true) => BinOp::Ge,
            (false, false) => BinOp::Lt,
            (false, true) => BinOp::Le,
        };
        let mut better = Expr::bin(cmp, c.clone(), b.clone());
        if fl {
            let c_nan = Expr::bin(BinOp::Ne, c.clone(), c.clone());
            let nan = if last {
                c_nan
            } else {
                Expr::bin(
                    BinOp::And,
                    c_nan,
                    Expr::bin(BinOp::Eq, b.clone(), b.clone()),
                )
            };
            better = Expr::bin(BinOp::Or, better, nan);
        }
        let better = cx.b.let_("better", better);
        let kv = cast(k.clone(), DType::I64, it).splat(lanes);
        cx.b.assign(best, Expr::select(better.clone(), c, b));
        cx.b.assign(bi, Expr::select(better, kv, Expr::Var(bi)));
        cx.b.end_for();
        let at = o.clone() * inner as i64 + i;
        cx.b.store_vec(out, at, cast(Expr::Var(bi), it, DType::I64), 1, mask);
        Ok(())
    })?;
    cx.b.end_for();
    Ok(())
}

/// CumSum (or CumProd with `prod`) along the axis in input 1. Vectors
/// run across the dims after the axis. An axis known only at run time
/// selects, by a chain of `if`s, one of the loop nests of every axis.
fn cumulative(
    cx: &mut NodeCx,
    exclusive: bool,
    reverse: bool,
    prod: bool,
) -> Result<(), Unsupported> {
    let shape = cx.in_shape(0);
    let dt = cx.in_dtype(0);
    let x = cx
        .input(0)
        .ok_or_else(|| Unsupported("missing input".into()))?;
    if shape.is_empty() {
        return unsupported("a scan of a scalar");
    }
    let out = cx.out_buf(0);
    if shape.contains(&0) {
        return Ok(());
    }
    let rank = shape.len();
    let scan = Scan {
        x,
        out,
        dt,
        exclusive,
        reverse,
        prod,
        parallel: large(&shape),
        width: cx.lanes(DType::F32),
    };
    if let Some(t) = cx.in_const(1) {
        if t.numel() != 1 || !t.dtype().is_int() {
            return unsupported("a scan axis that is not one integer");
        }
        let a = norm_axis(t.get_i64(0), rank)?;
        scan.record(cx, &shape, a);
        scan.emit(&mut cx.b, &shape, a);
        return Ok(());
    }
    let ab = cx
        .input(1)
        .ok_or_else(|| Unsupported("missing axis".into()))?;
    let adt = cx.in_dtype(1);
    if !adt.is_int() || cx.in_shape(1).iter().product::<usize>() != 1 {
        return unsupported("a scan axis that is not one integer");
    }
    cx.schedule("axis", AttrValue::Str("runtime".into()));
    scan.record(cx, &shape, rank - 1);
    let raw = cast(Expr::load(ab, Expr::idx(0)), adt, DType::I64);
    let raw = cx.b.let_("axis", raw);
    let axis = cx.b.let_(
        "a",
        Expr::select(raw.clone().lt(Expr::idx(0)), raw.clone() + rank as i64, raw),
    );
    // An axis out of range writes nothing (the interpreter refuses it).
    fn chain(b: &mut KernelBuilder, scan: &Scan, shape: &[usize], axis: &Expr, d: usize) {
        if d == shape.len() {
            return;
        }
        let cond = Expr::bin(BinOp::Eq, axis.clone(), Expr::idx(d as i64));
        b.if_(
            cond,
            |b| scan.emit(b, shape, d),
            |b| chain(b, scan, shape, axis, d + 1),
        );
    }
    chain(&mut cx.b, &scan, &shape, &axis, 0);
    Ok(())
}

/// One cumulative scan, for any axis.
struct Scan {
    x: BufId,
    out: BufId,
    dt: DType,
    exclusive: bool,
    reverse: bool,
    prod: bool,
    parallel: bool,
    /// Lanes of a vector (of f32) on the target.
    width: u16,
}

impl Scan {
    fn lanes(&self, inner: usize) -> u16 {
        if inner >= self.width as usize && self.dt != DType::Bool {
            self.width
        } else {
            1
        }
    }

    fn record(&self, cx: &mut NodeCx, shape: &[usize], a: usize) {
        let (outer, _, inner) = split3(shape, a);
        cx.schedule("vector", AttrValue::Int(self.lanes(inner) as i64));
        if self.parallel && outer > 1 {
            cx.schedule("parallel", AttrValue::Str("o".into()));
        }
    }

    /// The loop nest of the scan along axis `a`.
    fn emit(&self, b: &mut KernelBuilder, shape: &[usize], a: usize) {
        let (outer, n, inner) = split3(shape, a);
        let lanes = self.lanes(inner);
        let kind = if self.parallel && outer > 1 {
            LoopKind::Parallel
        } else {
            LoopKind::Serial
        };
        let o = b.begin_for("o", 0, outer, 1, kind);
        let l = lanes as usize;
        let full = inner / l * l;
        if full > 0 {
            let i = b.begin_for("i", 0, full, l as i64, LoopKind::Serial);
            self.column(b, &o, i, None, n, inner, lanes);
            b.end_for();
        }
        if full < inner {
            let mask = (lanes > 1).then(|| Expr::idx((inner - full) as i64));
            self.column(b, &o, Expr::idx(full as i64), mask, n, inner, lanes);
        }
        b.end_for();
    }

    /// Scans the `lanes` columns from `i` of row block `o`.
    #[allow(clippy::too_many_arguments)]
    fn column(
        &self,
        b: &mut KernelBuilder,
        o: &Expr,
        i: Expr,
        mask: Option<Expr>,
        n: usize,
        inner: usize,
        lanes: u16,
    ) {
        let ty = Ty::vector(self.dt, lanes);
        let base = b.let_("base", o.clone() * (n * inner) as i64 + i);
        let acc = b.decl("acc", constant(if self.prod { 1.0 } else { 0.0 }, ty));
        let s = b.begin_for("s", 0, n, 1, LoopKind::Serial);
        let k = if self.reverse {
            Expr::idx(n as i64 - 1) - s
        } else {
            s
        };
        let at = b.let_("at", base + k * inner as i64);
        let v = if lanes == 1 {
            Expr::load(self.x, at.clone())
        } else {
            Expr::load_vec(self.x, at.clone(), lanes, 1, mask.clone())
        };
        let op = if self.prod { BinOp::Mul } else { BinOp::Add };
        if self.exclusive {
            b.store_vec(self.out, at, Expr::Var(acc), 1, mask.clone());
            b.assign(acc, Expr::bin(op, Expr::Var(acc), v));
        } else {
            b.assign(acc, Expr::bin(op, Expr::Var(acc), v));
            b.store_vec(self.out, at, Expr::Var(acc), 1, mask);
        }
        b.end_for();
    }
}
