//! GEMM-family lowerings: MatMul, Gemm, flat GEMM and GEMV share one
//! register-blocked core ([`gemm`]).
//!
//! The core computes `alpha · A·B + beta · C` for a batch of `[M, K]·[K, N]`
//! problems. For f32 it works on blocks of `MR` rows × `NV` vectors of
//! columns held in registers: per step of K, it loads `NV` vectors of a
//! row of B, broadcasts one element of A per row and accumulates with
//! fused multiply-adds; remainders of N use masked vectors, remainders of
//! M a smaller block. B is packed to a contiguous `[K, N]` panel when it
//! is transposed. The outer loop runs in parallel over row blocks, or over
//! column blocks when M is small (decode-style shapes), or over the batch.
//! Other dtypes use a scalar triple loop.

use super::cx::NodeCx;
use super::{Unsupported, unsupported};
use saturn_ir::graph::NodeId;
use saturn_ir::kernel::{BufId, Expr, LoopKind, Ty};
use saturn_ir::{AttrValue, DType, Op};

/// One operand of the core: element `(r, c)` of batch `b` is at
/// `off(b) + r·rs + c·cs`.
#[derive(Clone, Debug)]
pub struct Operand {
    pub buf: BufId,
    /// Offset per batch index (one stride per batch dim of the output).
    pub batch_strides: Vec<i64>,
    pub rs: i64,
    pub cs: i64,
}

/// A batch of GEMMs writing the output `[batch…, M, N]` (or a view of it
/// through `out_index`).
pub struct GemmSpec {
    pub batch: Vec<usize>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Operand,
    pub b: Operand,
    pub alpha: f64,
    /// `beta · C`, C broadcast over the `[M, N]` output (and the batch).
    pub bias: Option<(Operand, f64)>,
    pub dtype: DType,
}

pub fn lower(cx: &mut NodeCx, node: NodeId) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    let op = cx.g.node(node).op.clone();
    let (sa, sb) = (cx.in_shape(0), cx.in_shape(1));
    let dtype = cx.in_dtype(0);
    let (a, b) = (
        cx.input(0).ok_or_else(|| Unsupported("missing A".into()))?,
        cx.input(1).ok_or_else(|| Unsupported("missing B".into()))?,
    );
    let out = cx.out_shape(0);
    let spec = match &op {
        Op::Gemm(o) => {
            let (m, k) = if o.transA {
                (sa[1], sa[0])
            } else {
                (sa[0], sa[1])
            };
            let n = if o.transB { sb[0] } else { sb[1] };
            let ao = if o.transA {
                Operand {
                    buf: a,
                    batch_strides: vec![],
                    rs: 1,
                    cs: m as i64,
                }
            } else {
                Operand {
                    buf: a,
                    batch_strides: vec![],
                    rs: k as i64,
                    cs: 1,
                }
            };
            let bo = if o.transB {
                Operand {
                    buf: b,
                    batch_strides: vec![],
                    rs: 1,
                    cs: k as i64,
                }
            } else {
                Operand {
                    buf: b,
                    batch_strides: vec![],
                    rs: n as i64,
                    cs: 1,
                }
            };
            let bias = match cx.input(2) {
                Some(c) if o.beta != 0.0 => {
                    let s = super::elementwise::broadcast_strides(&cx.in_shape(2), &[m, n]);
                    Some((
                        Operand {
                            buf: c,
                            batch_strides: vec![],
                            rs: s[0],
                            cs: s[1],
                        },
                        o.beta as f64,
                    ))
                }
                _ => None,
            };
            GemmSpec {
                batch: vec![],
                m,
                n,
                k,
                a: ao,
                b: bo,
                alpha: o.alpha as f64,
                bias,
                dtype,
            }
        }
        Op::MatMul(_) | Op::FlatGemm(_) | Op::Gemv(_) => {
            if sa.is_empty() || sb.is_empty() {
                return unsupported("matmul of a scalar");
            }
            // Vectors are promoted to matrices (and the unit dim dropped
            // from the output, which the flat output index ignores).
            let a2: Vec<usize> = if sa.len() == 1 {
                vec![1, sa[0]]
            } else {
                sa.clone()
            };
            let b2: Vec<usize> = if sb.len() == 1 {
                vec![sb[0], 1]
            } else {
                sb.clone()
            };
            let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
            let n = b2[b2.len() - 1];
            let rank = a2.len().max(b2.len());
            let batch: Vec<usize> = (0..rank - 2)
                .map(|d| {
                    let da = d as isize - (rank - a2.len()) as isize;
                    let db = d as isize - (rank - b2.len()) as isize;
                    let ea = if da >= 0 { a2[da as usize] } else { 1 };
                    let eb = if db >= 0 { b2[db as usize] } else { 1 };
                    ea.max(eb)
                })
                .collect();
            let bstr = |shape: &[usize]| -> Vec<i64> {
                let full = super::elementwise::broadcast_strides(shape, &batch_and(&batch, shape));
                full[..batch.len()].to_vec()
            };
            let ao = Operand {
                buf: a,
                batch_strides: bstr(&a2),
                rs: k as i64,
                cs: 1,
            };
            let bo = Operand {
                buf: b,
                batch_strides: bstr(&b2),
                rs: n as i64,
                cs: 1,
            };
            let bias = match cx.input(2) {
                Some(c) => {
                    let mut full_out = batch.clone();
                    full_out.extend([m, n]);
                    let s = super::elementwise::broadcast_strides(&cx.in_shape(2), &full_out);
                    Some((
                        Operand {
                            buf: c,
                            batch_strides: s[..batch.len()].to_vec(),
                            rs: s[batch.len()],
                            cs: s[batch.len() + 1],
                        },
                        1.0,
                    ))
                }
                None => None,
            };
            GemmSpec {
                batch,
                m,
                n,
                k,
                a: ao,
                b: bo,
                alpha: 1.0,
                bias,
                dtype,
            }
        }
        _ => return unsupported("not a GEMM"),
    };
    let mut view = spec.batch.clone();
    view.extend([spec.m, spec.n]);
    if view.iter().product::<usize>() != out.iter().product::<usize>() {
        return unsupported("GEMM output shape mismatch");
    }
    let cores = cx.target.cores;
    match &op {
        // The optimizer's schedule, where it chose a flat kernel.
        Op::FlatGemm(f) => {
            let p = super::flat::FlatParams {
                m_pad: f.m_pad.clamp(1, 64) as usize,
                n_tile: f.n_tile.clamp(rblk.lanes as i64, 1 << 16) as usize,
                k_split: f.k_split.clamp(1, 1 << 10) as usize,
                double_buffer: f.double_buffer,
            };
            gemm_with(cx, &spec, &view, Some(p))
        }
        Op::Gemv(_) => {
            let p = super::flat::FlatParams::choose(spec.m, spec.n, spec.k, cores);
            gemm_with(cx, &spec, &view, Some(p))
        }
        _ => gemm(cx, &spec, &view),
    }
}

/// `batch` followed by the last two dims of `shape` (for broadcasting the
/// batch dims of one operand).
fn batch_and(batch: &[usize], shape: &[usize]) -> Vec<usize> {
    let mut v = batch.to_vec();
    v.extend(&shape[shape.len() - 2..]);
    v
}

pub(crate) fn offset(op: &Operand, bidx: &[Expr], r: Expr, c: Expr) -> Expr {
    let mut e = Expr::idx(0);
    for (i, s) in bidx.iter().zip(&op.batch_strides) {
        e = e + i.clone() * *s;
    }
    e + r * op.rs + c * op.cs
}

/// Emits the GEMM core; results are stored through the epilogue at
/// `[batch…, i, j]` of `view`.
pub fn gemm(cx: &mut NodeCx, s: &GemmSpec, view: &[usize]) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    let flat = super::flat::applies(s, rblk)
        .then(|| super::flat::FlatParams::choose(s.m, s.n, s.k, cx.target.cores));
    gemm_with(cx, s, view, flat)
}

/// [`gemm`] with the flat-GEMM schedule given (`None`: not flat).
pub fn gemm_with(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    flat: Option<super::flat::FlatParams>,
) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    if s.m * s.n == 0 {
        return Ok(());
    }
    let flops = 2 * s.batch.iter().product::<usize>() * s.m * s.n * s.k;
    let big = flops >= 1 << 20;
    let vectorized = s.dtype == DType::F32 && s.n >= rblk.lanes;
    let flat = flat.filter(|_| vectorized);
    // Which loop runs in parallel: the batch when there is one, else row
    // blocks when there are enough, else column blocks. Flat GEMMs run
    // their N tiles in parallel (and share scratch across the batch).
    let par_batch = big && flat.is_none() && s.batch.iter().product::<usize>() >= 2;
    let par_rows = big && !par_batch && s.m >= 2 * rblk.mr * 2;
    let par_cols = big && !par_batch && !par_rows;
    let mut bidx = Vec::new();
    for (d, &e) in s.batch.iter().enumerate() {
        let kind = if par_batch && d == 0 {
            LoopKind::Parallel
        } else {
            LoopKind::Serial
        };
        bidx.push(cx.b.begin_for(&format!("b{d}"), 0, e, 1, kind));
    }
    if !vectorized {
        cx.schedule("vector", AttrValue::Int(1));
        scalar_gemm(cx, s, view, &bidx)?;
    } else if let Some(p) = flat {
        super::flat::lower(cx, s, view, &bidx, p)?;
    } else if super::packed::applies(s, rblk) {
        super::packed::lower(cx, s, view, &bidx)?;
    } else {
        cx.schedule("vector", AttrValue::Int(rblk.lanes as i64));
        cx.schedule(
            "tile",
            AttrValue::Ints(vec![rblk.mr as i64, (rblk.nv * rblk.lanes) as i64]),
        );
        cx.schedule(
            "parallel",
            AttrValue::Str(
                if par_batch {
                    "batch"
                } else if par_rows {
                    "rows"
                } else if par_cols {
                    "cols"
                } else {
                    "none"
                }
                .into(),
            ),
        );
        // B packed contiguous when its columns are strided.
        let b = if s.b.cs != 1 {
            pack_b(cx, s, &bidx)?
        } else {
            s.b.clone()
        };
        let s2 = GemmSpec { b, ..clone_spec(s) };
        vector_gemm(cx, &s2, view, &bidx, par_rows, par_cols)?;
    }
    for _ in &s.batch {
        cx.b.end_for();
    }
    Ok(())
}

fn clone_spec(s: &GemmSpec) -> GemmSpec {
    GemmSpec {
        batch: s.batch.clone(),
        m: s.m,
        n: s.n,
        k: s.k,
        a: s.a.clone(),
        b: s.b.clone(),
        alpha: s.alpha,
        bias: s.bias.clone(),
        dtype: s.dtype,
    }
}

/// Copies B (one batch) into a contiguous `[K, N]` scratch panel.
fn pack_b(cx: &mut NodeCx, s: &GemmSpec, bidx: &[Expr]) -> Result<Operand, Unsupported> {
    if !s.batch.is_empty() && s.b.batch_strides.iter().any(|&x| x != 0) {
        // A per-batch panel would race between parallel batches.
        return unsupported("strided batched B");
    }
    let (k, n) = (s.k, s.n);
    let panel = cx.scratch("packed_b", s.dtype, k * n);
    let p = cx.b.begin_for("pk", 0, k, 1, LoopKind::Serial);
    let j = cx.b.begin_for("pn", 0, n, 1, LoopKind::Serial);
    let v = Expr::load(s.b.buf, offset(&s.b, bidx, p.clone(), j.clone()));
    cx.b.store(panel, p * n as i64 + j, v);
    cx.b.end_for();
    cx.b.end_for();
    cx.schedule("pack_b", AttrValue::Int(1));
    Ok(Operand {
        buf: panel,
        batch_strides: vec![0; s.batch.len()],
        rs: n as i64,
        cs: 1,
    })
}

fn scalar_gemm(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    bidx: &[Expr],
) -> Result<(), Unsupported> {
    let ty = Ty::scalar(s.dtype);
    let i = cx.b.begin_for("i", 0, s.m, 1, LoopKind::Serial);
    let j = cx.b.begin_for("j", 0, s.n, 1, LoopKind::Serial);
    let acc = cx.b.decl("acc", Expr::constant(0.0, ty));
    let p = cx.b.begin_for("p", 0, s.k, 1, LoopKind::Serial);
    let a = Expr::load(s.a.buf, offset(&s.a, bidx, i.clone(), p.clone()));
    let b = Expr::load(s.b.buf, offset(&s.b, bidx, p, j.clone()));
    let prod = Expr::bin(saturn_ir::kernel::BinOp::Mul, a, b);
    cx.b.assign(
        acc,
        Expr::bin(saturn_ir::kernel::BinOp::Add, Expr::Var(acc), prod),
    );
    cx.b.end_for();
    store_result(cx, s, view, bidx, Expr::Var(acc), i, j, 1, None)?;
    cx.b.end_for();
    cx.b.end_for();
    Ok(())
}

/// Stores `alpha · acc + beta · C[i, j…]` (`lanes` of them, the first
/// `mask`) at output `[bidx…, i, j]` through the epilogue.
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_result(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    bidx: &[Expr],
    acc: Expr,
    i: Expr,
    j: Expr,
    lanes: u16,
    mask: Option<Expr>,
) -> Result<(), Unsupported> {
    let v = finish_value(s, bidx, acc, i.clone(), j.clone(), lanes, mask.clone());
    let mut idx = bidx.to_vec();
    idx.extend([i, j]);
    cx.store_out_view(view, &idx, v, mask)
}

/// `alpha · acc + beta · C[i, j…]`.
fn finish_value(
    s: &GemmSpec,
    bidx: &[Expr],
    acc: Expr,
    i: Expr,
    j: Expr,
    lanes: u16,
    mask: Option<Expr>,
) -> Expr {
    use saturn_ir::kernel::BinOp::*;
    let ty = Ty::vector(s.dtype, lanes);
    let mut v = acc;
    if s.alpha != 1.0 {
        v = Expr::bin(Mul, v, Expr::constant(s.alpha, ty));
    }
    if let Some((c, beta)) = &s.bias {
        let idx = offset(c, bidx, i, j);
        let cv = if lanes == 1 {
            Expr::load(c.buf, idx)
        } else if c.cs == 0 {
            Expr::load(c.buf, idx).splat(lanes)
        } else {
            Expr::load_vec(c.buf, idx, lanes, c.cs, mask)
        };
        let cv = if *beta != 1.0 {
            Expr::bin(Mul, cv, Expr::constant(*beta, ty))
        } else {
            cv
        };
        v = Expr::bin(Add, v, cv);
    }
    v
}

fn vector_gemm(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    bidx: &[Expr],
    par_rows: bool,
    par_cols: bool,
) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    let nb = rblk.nv * rblk.lanes;
    let full_rows = s.m / rblk.mr * rblk.mr;
    let full_cols = s.n / nb * nb;
    // Column blocks outside row blocks when columns run in parallel.
    let row_blocks: Vec<(usize, usize, usize)> = {
        let mut v = Vec::new();
        if full_rows > 0 {
            v.push((0, full_rows, rblk.mr));
        }
        if full_rows < s.m {
            v.push((full_rows, s.m, s.m - full_rows));
        }
        v
    };
    let col_blocks: Vec<(usize, usize, usize)> = {
        let mut v = Vec::new();
        if full_cols > 0 {
            v.push((0, full_cols, nb));
        }
        if full_cols < s.n {
            v.push((full_cols, s.n, s.n - full_cols));
        }
        v
    };
    for &(r0, r1, mr) in &row_blocks {
        for &(c0, c1, ncols) in &col_blocks {
            // Loop order: rows outer (parallel rows) or columns outer.
            let rows_kind = if par_rows && mr == rblk.mr {
                LoopKind::Parallel
            } else {
                LoopKind::Serial
            };
            let cols_kind = if par_cols && ncols == nb {
                LoopKind::Parallel
            } else {
                LoopKind::Serial
            };
            let (i, j);
            if par_cols {
                j = cx.b.begin_for("j", c0, c1, ncols as i64, cols_kind);
                i = cx.b.begin_for("i", r0, r1, mr as i64, LoopKind::Serial);
            } else {
                i = cx.b.begin_for("i", r0, r1, mr as i64, rows_kind);
                j = cx.b.begin_for("j", c0, c1, ncols as i64, LoopKind::Serial);
            }
            micro_kernel(cx, s, view, bidx, &i, &j, mr, ncols)?;
            cx.b.end_for();
            cx.b.end_for();
        }
    }
    Ok(())
}

/// One `mr × ncols` block at `(i, j)`: accumulators in registers over all
/// of K, then the finished values stored through the epilogue.
#[allow(clippy::too_many_arguments)]
fn micro_kernel(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    bidx: &[Expr],
    i: &Expr,
    j: &Expr,
    mr: usize,
    ncols: usize,
) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    use saturn_ir::kernel::BinOp;
    let l = rblk.lanes as u16;
    let vty = Ty::vector(DType::F32, l);
    let nv = ncols.div_ceil(rblk.lanes);
    let masks: Vec<Option<Expr>> = (0..nv)
        .map(|c| {
            let rem = ncols - c * rblk.lanes;
            if rem >= rblk.lanes {
                None
            } else {
                Some(Expr::idx(rem as i64))
            }
        })
        .collect();
    let mut acc = Vec::new();
    for r in 0..mr {
        for c in 0..nv {
            acc.push(cx.b.decl(&format!("c{r}{c}"), Expr::Float(0.0, vty)));
        }
    }
    let p = cx.b.begin_for("p", 0, s.k, 1, LoopKind::Serial);
    let mut bv = Vec::new();
    for (c, mask) in masks.iter().enumerate() {
        let idx = offset(&s.b, bidx, p.clone(), j.clone() + (c * rblk.lanes) as i64);
        let v = Expr::load_vec(s.b.buf, idx, l, 1, mask.clone());
        bv.push(cx.b.let_(&format!("b{c}"), v));
    }
    for r in 0..mr {
        let idx = offset(&s.a, bidx, i.clone() + r as i64, p.clone());
        let a =
            cx.b.let_(&format!("a{r}"), Expr::load(s.a.buf, idx).splat(l));
        for c in 0..nv {
            let v = acc[r * nv + c];
            cx.b.assign(v, Expr::mul_add(a.clone(), bv[c].clone(), Expr::Var(v)));
        }
    }
    cx.b.end_for();
    for r in 0..mr {
        for (c, mask) in masks.iter().enumerate() {
            let (ii, jj) = (i.clone() + r as i64, j.clone() + (c * rblk.lanes) as i64);
            let acc = Expr::Var(acc[r * nv + c]);
            store_result(cx, s, view, bidx, acc, ii, jj, l, mask.clone())?;
        }
    }
    let _ = BinOp::Add;
    Ok(())
}
