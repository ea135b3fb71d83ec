//! Flat GEMM and GEMV: products whose M is small (decode-style shapes).
//!
//! With a few rows, a GEMM is a stream over B: every element of B is used
//! M times, so the kernel must read B once, in memory order, at memory
//! bandwidth (FlashDecoding++'s flat GEMM: pad M to a small block instead
//! of a large tile). The kernel:
//!
//! - splits N into tasks of at least `n_tile` columns, the unit of
//!   parallel work (wider when there are few cores: a task reads whole
//!   stretches of B's rows, so hardware prefetchers see long streams);
//! - with `k_split > 1` also splits K: each (K chunk, N task) pair sums
//!   into its own slice of scratch memory and a last parallel loop adds the
//!   slices (for shapes with too few N tasks to feed the threads);
//! - walks its K chunk `U` rows of B at a time (`U` = 4, 2 or 1 as M
//!   grows): the `m_pad`·`U` elements of A for those rows are broadcast
//!   once, then for every vector of columns of the task the running sums of
//!   its `M` rows (in scratch, which stays in L1) are loaded, updated with
//!   `M·U` fused multiply-adds against `U` vectors of B, and stored;
//! - with `double_buffer`, loads the B vectors of the next column step
//!   before the multiply-adds of the current one (software pipelining).
//!
//! GEMV is the case M = 1. The column remainder (N not a multiple of the
//! vector width) uses masked loads and stores; the last pass adds the K
//! chunks and stores through the epilogue.
//!
//! When B is constant (weights, the decode case), it is repacked at
//! compile time into column panels of `nr` columns, each panel `K × nr`
//! contiguous: a panel is then one sequential stream, its `M × nr` sums
//! stay in registers over all of K (A transposed once into scratch, so
//! the `M` values broadcast per row of B share a cache line), and panels
//! run in parallel, each finished sum going straight through the
//! epilogue.

use super::Unsupported;
use super::cx::NodeCx;
use super::cx::RegBlock;
use super::linalg::{GemmSpec, offset, store_result};
use saturn_ir::kernel::{BinOp, BufId, Expr, LoopKind, Ty, VarId};
use saturn_ir::{AttrValue, DType};

/// The schedule of a flat GEMM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlatParams {
    pub m_pad: usize,
    pub n_tile: usize,
    pub k_split: usize,
    pub double_buffer: bool,
}

impl FlatParams {
    /// The heuristic schedule for an `m × n × k` product on `cores` cores:
    /// tasks of at least 64 columns, and K split when there are too few
    /// tasks for the threads.
    pub fn choose(m: usize, n: usize, k: usize, cores: usize) -> FlatParams {
        let cores = cores.max(1);
        let n_tile = 64;
        let tasks = n.div_ceil(n_tile);
        let k_split = if tasks < 2 * cores && k >= 1024 {
            (2 * cores).div_ceil(tasks).min(k / 256).max(1)
        } else {
            1
        };
        FlatParams {
            m_pad: m.clamp(1, 8),
            n_tile,
            k_split,
            double_buffer: false,
        }
    }
}

/// Whether the flat kernel handles this product.
pub fn applies(s: &GemmSpec, rblk: RegBlock) -> bool {
    s.dtype == DType::F32 && s.m <= 16 && s.n >= rblk.lanes
}

/// Rows of B per step: as many as keep `m·U` broadcasts, `m` sums and `U`
/// vectors of B (twice, double-buffered) within the vector registers.
fn rows_per_step(m: usize, double_buffer: bool) -> usize {
    let budget = 14;
    (1..=4)
        .rev()
        .find(|&u| m * u + m + u * (1 + double_buffer as usize) <= budget)
        .unwrap_or(1)
}

pub fn lower(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    bidx: &[Expr],
    p: FlatParams,
) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    if s.b.batch_strides.iter().all(|&x| x == 0)
        && let Some(t) = cx.const_of_buf(s.b.buf)
    {
        return panels(cx, s, view, bidx, t);
    }
    let l = rblk.lanes as u16;
    // Row blocks of at most m_pad rows; each block streams B once.
    let rb = p.m_pad.clamp(1, 8).min(s.m.max(1));
    let u = rows_per_step(rb, p.double_buffer);
    let k_split = p.k_split.clamp(1, s.k.max(1));
    let vectors = s.n.div_ceil(rblk.lanes);
    let tasks_wanted = (2 * cx.target.cores.max(1)).div_ceil(k_split).max(1);
    let task_vectors = (p.n_tile.max(rblk.lanes) / rblk.lanes).max(vectors.div_ceil(tasks_wanted));
    let tasks = vectors.div_ceil(task_vectors);
    cx.schedule(
        "gemm",
        AttrValue::Str(if s.m == 1 { "gemv" } else { "flat" }.into()),
    );
    cx.schedule("m_pad", AttrValue::Int(rb as i64));
    cx.schedule("n_tile", AttrValue::Int(p.n_tile as i64));
    cx.schedule(
        "task_cols",
        AttrValue::Int((task_vectors * rblk.lanes) as i64),
    );
    cx.schedule("k_split", AttrValue::Int(k_split as i64));
    cx.schedule("k_step", AttrValue::Int(u as i64));
    cx.schedule("double_buffer", AttrValue::Int(p.double_buffer as i64));
    cx.schedule("vector", AttrValue::Int(rblk.lanes as i64));
    cx.schedule(
        "parallel",
        AttrValue::Str(
            if k_split > 1 {
                "k_chunks_n_tiles"
            } else {
                "n_tiles"
            }
            .into(),
        ),
    );
    let chunk = s.k.div_ceil(k_split);
    let partial = cx.scratch("partial", DType::F32, k_split * s.m * s.n);
    let vty = Ty::vector(DType::F32, l);

    let work =
        cx.b.begin_for("w", 0, tasks * k_split, 1, LoopKind::Parallel);
    let (kc, t) = if k_split > 1 {
        (
            cx.b.let_("kc", work.clone() / tasks as i64),
            cx.b.let_("t", work.clone() % tasks as i64),
        )
    } else {
        (Expr::idx(0), work.clone())
    };
    let j0 = cx.b.let_("j0", t * (task_vectors * rblk.lanes) as i64);
    let j1 = cx.b.let_(
        "j1",
        (j0.clone() + (task_vectors * rblk.lanes) as i64).min(Expr::idx(s.n as i64)),
    );
    let k0 = cx.b.let_("k0", kc.clone() * chunk as i64);
    let k1 =
        cx.b.let_("k1", (k0.clone() + chunk as i64).min(Expr::idx(s.k as i64)));
    // Slice `kc` of the partial sums, row `i`, column `j`.
    let at = |i: &Expr, j: &Expr| (kc.clone() * s.m as i64 + i.clone()) * s.n as i64 + j.clone();
    let nfull = s.n / rblk.lanes * rblk.lanes;
    // The task's full vectors end at `jf`; the last task may end with a
    // partial one at `nfull`.
    let jf = cx.b.let_("jf", j1.clone().min(Expr::idx(nfull as i64)));
    let tail = (nfull < s.n).then(|| Expr::idx((s.n - nfull) as i64));
    // Zero the task's sums.
    let i = cx.b.begin_for("i", 0, s.m, 1, LoopKind::Serial);
    col_loop(cx, &j0, &jf, &j1, nfull, &tail, &mut |cx, j, m| {
        cx.b.store_vec(partial, at(&i, &j), Expr::Float(0.0, vty), 1, m);
        Ok(())
    })?;
    cx.b.end_for();

    let blocks = s.m.div_ceil(rb);
    for blk in 0..blocks {
        let i0 = blk * rb;
        let rows = rb.min(s.m - i0);
        let rows_u = rows_per_step(rows, p.double_buffer).min(u);
        // Full steps of `rows_u` rows of B, then the remaining rows one by one.
        let segments = if rows_u == 1 {
            vec![(k0.clone(), k1.clone(), 1)]
        } else {
            let steps_end = cx.b.let_(
                "kfull",
                k0.clone() + (k1.clone() - k0.clone()) / rows_u as i64 * rows_u as i64,
            );
            vec![
                (k0.clone(), steps_end.clone(), rows_u),
                (steps_end, k1.clone(), 1),
            ]
        };
        for (start, end, step) in segments {
            let k =
                cx.b.begin_for("k", start, end, step as i64, LoopKind::Serial);
            // Broadcasts of A for these rows of B.
            let mut a = Vec::new();
            for r in 0..rows {
                for uu in 0..step {
                    let x = Expr::load(
                        s.a.buf,
                        offset(
                            &s.a,
                            bidx,
                            Expr::idx((i0 + r) as i64),
                            k.clone() + uu as i64,
                        ),
                    );
                    a.push(cx.b.let_(&format!("a{r}{uu}"), x.splat(l)));
                }
            }
            let load_b = |cx: &mut NodeCx, j: &Expr, uu: usize, mask: &Option<Expr>| -> Expr {
                let idx = offset(&s.b, bidx, k.clone() + uu as i64, j.clone());
                let x = Expr::load_vec(s.b.buf, idx, l, s.b.cs, mask.clone());
                cx.b.let_(&format!("b{uu}"), x)
            };
            let update = |cx: &mut NodeCx, j: &Expr, mask: &Option<Expr>, bv: &[Expr]| {
                for r in 0..rows {
                    let ii = Expr::idx((i0 + r) as i64);
                    let mut acc = Expr::load_vec(partial, at(&ii, j), l, 1, mask.clone());
                    for (uu, b) in bv.iter().enumerate() {
                        acc = Expr::mul_add(a[r * step + uu].clone(), b.clone(), acc);
                    }
                    cx.b.store_vec(partial, at(&ii, j), acc, 1, mask.clone());
                }
            };
            // One column step: its B vectors, then the multiply-adds.
            let mut plain = |cx: &mut NodeCx, j: Expr, m: Option<Expr>| {
                let bv: Vec<Expr> = (0..step).map(|uu| load_b(cx, &j, uu, &m)).collect();
                update(cx, &j, &m, &bv);
                Ok(())
            };
            if p.double_buffer {
                // Full vectors, the B vectors of the next column step loaded
                // before the multiply-adds of the current one.
                cx.b.begin_if(j0.clone().lt(jf.clone()));
                let next: Vec<VarId> = (0..step)
                    .map(|uu| {
                        let x = load_b(cx, &j0, uu, &None);
                        cx.b.decl(&format!("nb{uu}"), x)
                    })
                    .collect();
                let cur: Vec<VarId> = (0..step)
                    .map(|uu| cx.b.decl(&format!("cb{uu}"), Expr::Float(0.0, vty)))
                    .collect();
                let last = cx.b.let_("jlast", jf.clone() - rblk.lanes as i64);
                let j = cx.b.begin_for(
                    "j",
                    j0.clone(),
                    jf.clone(),
                    rblk.lanes as i64,
                    LoopKind::Serial,
                );
                for (c, n) in cur.iter().zip(&next) {
                    cx.b.assign(*c, Expr::Var(*n));
                }
                // The next column step (the last one loads itself again).
                let jn = cx.b.let_("jn", (j.clone() + rblk.lanes as i64).min(last));
                for (uu, n) in next.iter().enumerate() {
                    let x = load_b(cx, &jn, uu, &None);
                    cx.b.assign(*n, x);
                }
                let bv: Vec<Expr> = cur.iter().map(|c| Expr::Var(*c)).collect();
                update(cx, &j, &None, &bv);
                cx.b.end_for();
                cx.b.end_if();
                col_tail(cx, &j1, nfull, &tail, &mut plain)?;
            } else {
                col_loop(cx, &j0, &jf, &j1, nfull, &tail, &mut plain)?;
            }
            cx.b.end_for();
        }
    }
    cx.b.end_for();
    reduce_partials(cx, s, view, bidx, partial, k_split)
}

type ColBody<'a> = dyn FnMut(&mut NodeCx, Expr, Option<Expr>) -> Result<(), Unsupported> + 'a;

/// Vector steps over the columns `[j0, j1)` of a task: full vectors up to
/// `jf`, then the partial vector at `nfull` when the task reaches it.
fn col_loop(
    cx: &mut NodeCx,
    j0: &Expr,
    jf: &Expr,
    j1: &Expr,
    nfull: usize,
    tail: &Option<Expr>,
    body: &mut ColBody,
) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    let j = cx.b.begin_for(
        "j",
        j0.clone(),
        jf.clone(),
        rblk.lanes as i64,
        LoopKind::Serial,
    );
    body(cx, j, None)?;
    cx.b.end_for();
    col_tail(cx, j1, nfull, tail, body)
}

/// The partial vector at `nfull`, when the task's columns reach it.
fn col_tail(
    cx: &mut NodeCx,
    j1: &Expr,
    nfull: usize,
    tail: &Option<Expr>,
    body: &mut ColBody,
) -> Result<(), Unsupported> {
    if let Some(t) = tail {
        cx.b.begin_if(Expr::bin(BinOp::Gt, j1.clone(), Expr::idx(nfull as i64)));
        body(cx, Expr::idx(nfull as i64), Some(t.clone()))?;
        cx.b.end_if();
    }
    Ok(())
}

/// Adds the `k_split` partial sums of every element and stores the result
/// through the epilogue, in parallel over rows.
fn reduce_partials(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    bidx: &[Expr],
    buf: BufId,
    k_split: usize,
) -> Result<(), Unsupported> {
    let rblk = cx.reg_block();
    let l = rblk.lanes as u16;
    let i = cx.b.begin_for("i", 0, s.m, 1, LoopKind::Parallel);
    let full = s.n / rblk.lanes * rblk.lanes;
    let one = |cx: &mut NodeCx, j: Expr, mask: Option<Expr>| -> Result<(), Unsupported> {
        let mut sum = Expr::load_vec(buf, i.clone() * s.n as i64 + j.clone(), l, 1, mask.clone());
        for kc in 1..k_split {
            let at = (i.clone() + (kc * s.m) as i64) * s.n as i64 + j.clone();
            sum = Expr::bin(BinOp::Add, sum, Expr::load_vec(buf, at, l, 1, mask.clone()));
        }
        store_result(cx, s, view, bidx, sum, i.clone(), j, l, mask)
    };
    if full > 0 {
        let j =
            cx.b.begin_for("j", 0, full, rblk.lanes as i64, LoopKind::Serial);
        one(cx, j, None)?;
        cx.b.end_for();
    }
    if full < s.n {
        one(
            cx,
            Expr::idx(full as i64),
            Some(Expr::idx((s.n - full) as i64)),
        )?;
    }
    cx.b.end_for();
    Ok(())
}

/// How far ahead of the multiply-adds a panel is prefetched, in bytes.
const PREFETCH_BYTES: usize = 4096;

/// The flat GEMM over constant B in panels (see the module docs).
fn panels(
    cx: &mut NodeCx,
    s: &GemmSpec,
    view: &[usize],
    bidx: &[Expr],
    b: &saturn_ir::Tensor,
) -> Result<(), Unsupported> {
    let lanes = cx.f32_lanes();
    let l = lanes as u16;
    let (m, n, k) = (s.m, s.n, s.k);
    // Sums held in registers: 16 with 32 vector registers, 8 with 16.
    let budget = if lanes >= 16 { 16 } else { 8 };
    let nv = (budget / m.max(1)).clamp(1, 8);
    let nr = nv * lanes;
    let panels = n.div_ceil(nr);
    cx.schedule(
        "gemm",
        AttrValue::Str(if m == 1 { "gemv_panels" } else { "flat_panels" }.into()),
    );
    cx.schedule("panel_cols", AttrValue::Int(nr as i64));
    let prefetch = m > 1;
    if prefetch {
        cx.schedule("prefetch", AttrValue::Int(PREFETCH_BYTES as i64));
    }
    cx.schedule("vector", AttrValue::Int(lanes as i64));
    cx.schedule("parallel", AttrValue::Str("panels".into()));
    // B as panels `[q][k][c]`, columns past N zero.
    let src = b.to_f64_vec();
    let mut packed = vec![0.0f64; (panels * k * nr).max(1)];
    for q in 0..panels {
        for kk in 0..k {
            for c in 0..nr {
                let col = q * nr + c;
                if col < n {
                    let at = kk as i64 * s.b.rs + col as i64 * s.b.cs;
                    packed[(q * k + kk) * nr + c] = src[at as usize];
                }
            }
        }
    }
    let len = packed.len();
    let bp = cx.const_buf(
        "panels",
        saturn_ir::Tensor::from_vec(vec![len], packed).cast(DType::F32, false),
    );
    // Aᵀ: row `kk` holds A[0..m, kk].
    let at = cx.scratch("a_t", DType::F32, (m * k).max(1));
    let kk = cx.b.begin_for("tk", 0, k, 1, LoopKind::Serial);
    for r in 0..m {
        let x = Expr::load(s.a.buf, offset(&s.a, bidx, Expr::idx(r as i64), kk.clone()));
        cx.b.store(at, kk.clone() * m as i64 + r as i64, x);
    }
    cx.b.end_for();
    let vty = Ty::vector(DType::F32, l);
    let full = n / nr;
    let emit = |cx: &mut NodeCx, q: Expr, partial: bool| -> Result<(), Unsupported> {
        let acc: Vec<VarId> = (0..m * nv)
            .map(|x| cx.b.decl(&format!("c{x}"), Expr::Float(0.0, vty)))
            .collect();
        let base = cx.b.let_("pb", q.clone() * (k * nr) as i64);
        let kk = cx.b.begin_for("k", 0, k, 1, LoopKind::Serial);
        let row = cx.b.let_("prow", base.clone() + kk.clone() * nr as i64);
        // The panel streams from memory once. With several rows of A the
        // multiply-adds of a step fill the core's window, leaving the
        // hardware prefetcher too few lines in flight: the panel's rows
        // 4 KiB ahead are asked for now, one per cache line of the step
        // ([8, 4096]×[4096, 4096] on 2 threads: 4.2-4.7 → 3.6-4.0 ms on
        // Zen 3; one row of A keeps up without).
        if prefetch {
            for line in 0..(nr * 4).div_ceil(64) {
                let at = row.clone() + (PREFETCH_BYTES / 4 + line * 16) as i64;
                cx.b.prefetch(bp, at);
            }
        }
        let bv: Vec<Expr> = (0..nv)
            .map(|v| {
                let x = Expr::load_vec(bp, row.clone() + (v * lanes) as i64, l, 1, None);
                cx.b.let_(&format!("b{v}"), x)
            })
            .collect();
        for r in 0..m {
            let a = cx.b.let_(
                &format!("a{r}"),
                Expr::load(at, kk.clone() * m as i64 + r as i64).splat(l),
            );
            for v in 0..nv {
                let c = acc[r * nv + v];
                cx.b.assign(c, Expr::mul_add(a.clone(), bv[v].clone(), Expr::Var(c)));
            }
        }
        cx.b.end_for();
        for r in 0..m {
            for v in 0..nv {
                let j0 = q.clone() * nr as i64 + (v * lanes) as i64;
                let mask = partial.then(|| Expr::idx(n as i64) - j0.clone());
                let i = Expr::idx(r as i64);
                let acc = Expr::Var(acc[r * nv + v]);
                store_result(cx, s, view, bidx, acc, i, j0, l, mask)?;
            }
        }
        Ok(())
    };
    if full > 0 {
        let q = cx.b.begin_for("q", 0, full, 1, LoopKind::Parallel);
        emit(cx, q, false)?;
        cx.b.end_for();
    }
    if full < panels {
        emit(cx, Expr::idx(full as i64), true)?;
    }
    Ok(())
}
