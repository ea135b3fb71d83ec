//! The packed, cache-blocked f32 GEMM (large M, N and K).
//!
//! Both operands are first copied into panel order, so that the
//! micro-kernel reads two contiguous streams: A as row panels of `MR` rows
//! (`ap[(p·K + k)·MR + r]`), B as column panels of `NR = NV·LANES` columns
//! (`bp[(q·K + k)·NR + c]`). The micro-kernel keeps an `MR × NR` block of C
//! in `MR·NV` vector registers over all of K: per step of K it loads `NV`
//! vectors of the B panel, broadcasts `MR` elements of the A panel and
//! does `MR·NV` fused multiply-adds. Blocks of `NC` columns are sized so
//! that their packed B (`K × NC`) stays in L2 while the row panels of a
//! block of `MC` rows stream past it; each A panel (`MR × K`) is reused
//! from L1 across the columns of a block. Row blocks run in parallel and
//! pack their own rows of A; B is packed by a parallel loop over its
//! panels first. Padding rows and columns of the last panels are never
//! stored, so they need no initialisation. Finished blocks go through the
//! epilogue on store.

use super::Unsupported;
use super::cx::NodeCx;
use super::cx::RegBlock;
use super::linalg::{GemmSpec, offset, store_result};
use saturn_ir::kernel::{BufId, Expr, LoopKind, Ty};
use saturn_ir::{AttrValue, DType, Tensor};

/// Whether the packed kernel pays for its packing on this problem.
pub fn applies(s: &GemmSpec, rblk: RegBlock) -> bool {
    let batch: usize = s.batch.iter().product();
    s.dtype == DType::F32
        && s.m > 16
        && s.n >= rblk.nr()
        && s.k >= 8
        && batch * s.m * s.n * s.k >= 1 << 17
}

/// Cache blocking: `(MC, NC)` in rows and columns, multiples of the
/// register block.
fn blocking(cx: &NodeCx, s: &GemmSpec) -> (usize, usize) {
    let rblk = cx.reg_block();
    let l2 = cx
        .target
        .caches
        .iter()
        .find(|c| c.level == 2)
        .map_or(1 << 20, |c| c.bytes as usize);
    // Half of L2 for the packed B block.
    let nc = (l2 / 2 / (s.k * 4)).max(rblk.nr()) / rblk.nr() * rblk.nr();
    let nc = nc.min(s.n.div_ceil(rblk.nr()) * rblk.nr());
    // Row blocks: enough of them for the threads, each at least a few
    // panels.
    let panels = s.m.div_ceil(rblk.mr);
    let mc_panels = (panels / (4 * cx.target.cores.max(1))).clamp(1, 16);
    (mc_panels * rblk.mr, nc)
}

pub fn lower(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    bidx: &[Expr],
) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    let (m, n, k) = (s.m, s.n, s.k);
    let (mc, nc) = blocking(cx, s);
    let panels_m = m.div_ceil(rblk.mr);
    let panels_n = n.div_ceil(rblk.nr());
    cx.schedule("gemm", AttrValue::Str("packed".into()));
    cx.schedule(
        "tile",
        AttrValue::Ints(vec![rblk.mr as i64, rblk.nr() as i64]),
    );
    cx.schedule("block", AttrValue::Ints(vec![mc as i64, nc as i64]));
    cx.schedule("vector", AttrValue::Int(rblk.lanes as i64));
    cx.schedule("parallel", AttrValue::Str("row_blocks".into()));
    let nbatch: usize = s.batch.iter().product::<usize>().max(1);
    // One panel buffer per batch index when the operand varies by batch.
    let per_batch = |strides: &[i64]| strides.iter().any(|&x| x != 0);
    let (a_vary, b_vary) = (per_batch(&s.a.batch_strides), per_batch(&s.b.batch_strides));
    let a_len = panels_m * rblk.mr * k;
    let b_len = panels_n * rblk.nr() * k;
    let ap = cx.scratch(
        "packed_a",
        DType::F32,
        a_len * if a_vary { nbatch } else { 1 },
    );
    // Constant B (weights) is packed once, now; otherwise per call.
    let b_const = (!b_vary).then(|| cx.const_of_buf(s.b.buf)).flatten();
    let bp = match b_const {
        Some(t) => {
            let src = t.to_f64_vec();
            let nr = rblk.nr();
            let mut out = vec![0.0f64; b_len.max(1)];
            for q in 0..panels_n {
                for kk in 0..k {
                    for c in 0..nr {
                        let col = q * nr + c;
                        if col < n {
                            let at = kk as i64 * s.b.rs + col as i64 * s.b.cs;
                            out[(q * k + kk) * nr + c] = src[at as usize];
                        }
                    }
                }
            }
            let len = out.len();
            cx.const_buf(
                "packed_b",
                Tensor::from_vec(vec![len], out).cast(s.dtype, false),
            )
        }
        None => cx.scratch(
            "packed_b",
            DType::F32,
            b_len * if b_vary { nbatch } else { 1 },
        ),
    };
    let flat_b = flat_batch(&s.batch, bidx);
    let a_base = if a_vary {
        flat_b.clone() * a_len as i64
    } else {
        Expr::idx(0)
    };
    let b_base = if b_vary {
        flat_b * b_len as i64
    } else {
        Expr::idx(0)
    };

    if b_const.is_none() {
        // Pack B: panel q, row k, its NR columns (the last panel partly).
        let l = rblk.lanes as u16;
        let q = cx.b.begin_for("q", 0, panels_n, 1, LoopKind::Parallel);
        let kk = cx.b.begin_for("k", 0, k, 1, LoopKind::Serial);
        for v in 0..rblk.nv {
            let col = q.clone() * rblk.nr() as i64 + (v * rblk.lanes) as i64;
            let rest = cx.b.let_("rest", Expr::idx(n as i64) - col.clone());
            // Columns past N: a masked load reads zeros, never out of bounds.
            let mask = Expr::select(
                rest.clone().lt(Expr::idx(rblk.lanes as i64)),
                rest.max(Expr::idx(0)),
                Expr::idx(rblk.lanes as i64),
            );
            let src = offset(
                &s.b,
                bidx,
                kk.clone(),
                col.clone().min(Expr::idx(n as i64 - 1)),
            );
            let x = Expr::load_vec(s.b.buf, src, l, s.b.cs, Some(mask));
            let dst = b_base.clone()
                + (q.clone() * k as i64 + kk.clone()) * rblk.nr() as i64
                + (v * rblk.lanes) as i64;
            cx.b.store_vec(bp, dst, x, 1, None);
        }
        cx.b.end_for();
        cx.b.end_for();
    }

    // Row blocks in parallel; each packs its rows of A, then walks its
    // column blocks.
    let blocks_m = panels_m.div_ceil(mc / rblk.mr);
    let rb = cx.b.begin_for("rb", 0, blocks_m, 1, LoopKind::Parallel);
    let p0 = cx.b.let_("p0", rb.clone() * (mc / rblk.mr) as i64);
    let p1 = cx.b.let_(
        "p1",
        (p0.clone() + (mc / rblk.mr) as i64).min(Expr::idx(panels_m as i64)),
    );
    // Pack A rows of this block: panel p, row k, its MR rows.
    let p =
        cx.b.begin_for("p", p0.clone(), p1.clone(), 1, LoopKind::Serial);
    let kk = cx.b.begin_for("k", 0, k, 1, LoopKind::Serial);
    for r in 0..rblk.mr {
        let row = (p.clone() * rblk.mr as i64 + r as i64).min(Expr::idx(m as i64 - 1));
        let x = Expr::load(s.a.buf, offset(&s.a, bidx, row, kk.clone()));
        let dst = a_base.clone() + (p.clone() * k as i64 + kk.clone()) * rblk.mr as i64 + r as i64;
        cx.b.store(ap, dst, x);
    }
    cx.b.end_for();
    cx.b.end_for();
    let blk = Operands {
        s,
        view,
        bidx,
        ap,
        bp,
        a_base: &a_base,
        b_base: &b_base,
    };
    // Column blocks of NC columns, full panels first.
    let full_n = n / rblk.nr();
    let q_per_block = nc / rblk.nr();
    let blocks_n = full_n.div_ceil(q_per_block.max(1));
    let full_m = m / rblk.mr;
    if full_n > 0 {
        let cb = cx.b.begin_for("cb", 0, blocks_n, 1, LoopKind::Serial);
        let q0 = cx.b.let_("q0", cb.clone() * q_per_block as i64);
        let q1 = cx.b.let_(
            "q1",
            (q0.clone() + q_per_block as i64).min(Expr::idx(full_n as i64)),
        );
        // Full row panels of the block, then the partial last one.
        let pf = cx.b.let_("pf", p1.clone().min(Expr::idx(full_m as i64)));
        let p =
            cx.b.begin_for("p", p0.clone(), pf.clone(), 1, LoopKind::Serial);
        let q =
            cx.b.begin_for("q", q0.clone(), q1.clone(), 1, LoopKind::Serial);
        micro(cx, &blk, &p, &q, rblk.mr, rblk.nr())?;
        cx.b.end_for();
        cx.b.end_for();
        if m % rblk.mr != 0 {
            tail_rows(cx, &p1, full_m, |cx| {
                let q =
                    cx.b.begin_for("q", q0.clone(), q1.clone(), 1, LoopKind::Serial);
                micro(
                    cx,
                    &blk,
                    &Expr::idx(full_m as i64),
                    &q,
                    m % rblk.mr,
                    rblk.nr(),
                )?;
                cx.b.end_for();
                Ok(())
            })?;
        }
        cx.b.end_for();
    }
    if n % rblk.nr() != 0 {
        let q = Expr::idx(full_n as i64);
        let pf = cx.b.let_("pf", p1.clone().min(Expr::idx(full_m as i64)));
        let p = cx.b.begin_for("p", p0.clone(), pf, 1, LoopKind::Serial);
        micro(cx, &blk, &p, &q, rblk.mr, n % rblk.nr())?;
        cx.b.end_for();
        if m % rblk.mr != 0 {
            tail_rows(cx, &p1, full_m, |cx| {
                micro(
                    cx,
                    &blk,
                    &Expr::idx(full_m as i64),
                    &q,
                    m % rblk.mr,
                    n % rblk.nr(),
                )
            })?;
        }
    }
    cx.b.end_for();
    Ok(())
}

/// Runs `body` when the row block ends with the partial last panel.
fn tail_rows(
    cx: &mut NodeCx,
    p1: &Expr,
    full_m: usize,
    body: impl FnOnce(&mut NodeCx) -> Result<(), Unsupported>,
) -> Result<(), Unsupported> {
    cx.b.begin_if(Expr::bin(
        saturn_ir::kernel::BinOp::Gt,
        p1.clone(),
        Expr::idx(full_m as i64),
    ));
    let r = body(cx);
    cx.b.end_if();
    r
}

/// Flattened index of the batch position.
fn flat_batch(batch: &[usize], bidx: &[Expr]) -> Expr {
    let mut e = Expr::idx(0);
    for (i, &d) in bidx.iter().zip(batch) {
        e = e * d as i64 + i.clone();
    }
    e
}

/// What every micro-kernel of one GEMM reads: the spec, C's view and batch
/// position, the packed panels and this batch's offsets in them.
#[derive(Clone, Copy)]
struct Operands<'a> {
    s: &'a GemmSpec,
    view: &'a [usize],
    bidx: &'a [Expr],
    ap: BufId,
    bp: BufId,
    a_base: &'a Expr,
    b_base: &'a Expr,
}

/// One `rows × cols` block of C at row panel `p`, column panel `q`.
fn micro(
    cx: &mut NodeCx,
    o: &Operands,
    p: &Expr,
    q: &Expr,
    rows: usize,
    cols: usize,
) -> Result<(), Unsupported> {
    let Operands {
        s,
        view,
        bidx,
        ap,
        bp,
        a_base,
        b_base,
    } = *o;
    let rblk = cx.reg_block();
    let l = rblk.lanes as u16;
    let vty = Ty::vector(DType::F32, l);
    let nv = cols.div_ceil(rblk.lanes);
    let k = s.k as i64;
    let mut acc = Vec::new();
    for r in 0..rows {
        for v in 0..nv {
            acc.push(cx.b.decl(&format!("c{r}{v}"), Expr::Float(0.0, vty)));
        }
    }
    let a_panel =
        cx.b.let_("ap", a_base.clone() + p.clone() * (k * rblk.mr as i64));
    let b_panel =
        cx.b.let_("bp", b_base.clone() + q.clone() * (k * rblk.nr() as i64));
    let kk = cx.b.begin_for("k", 0, s.k, 1, LoopKind::Serial);
    let bk =
        cx.b.let_("bk", b_panel.clone() + kk.clone() * rblk.nr() as i64);
    let ak =
        cx.b.let_("ak", a_panel.clone() + kk.clone() * rblk.mr as i64);
    let bv: Vec<Expr> = (0..nv)
        .map(|v| {
            let x = Expr::load_vec(bp, bk.clone() + (v * rblk.lanes) as i64, l, 1, None);
            cx.b.let_(&format!("b{v}"), x)
        })
        .collect();
    for r in 0..rows {
        let a = cx.b.let_(
            &format!("a{r}"),
            Expr::load(ap, ak.clone() + r as i64).splat(l),
        );
        for v in 0..nv {
            let a = a.clone();
            let c = acc[r * nv + v];
            cx.b.assign(c, Expr::mul_add(a, bv[v].clone(), Expr::Var(c)));
        }
    }
    cx.b.end_for();
    for r in 0..rows {
        for v in 0..nv {
            let rem = cols - v * rblk.lanes;
            let mask = (rem < rblk.lanes).then(|| Expr::idx(rem as i64));
            let i = p.clone() * rblk.mr as i64 + r as i64;
            let j = q.clone() * rblk.nr() as i64 + (v * rblk.lanes) as i64;
            let acc = Expr::Var(acc[r * nv + v]);
            store_result(cx, s, view, bidx, acc, i, j, l, mask)?;
        }
    }
    Ok(())
}
