//! Flat GEMM (FlashDecoding++): a matrix product whose M is small
//! (decode-style, M ≤ 16) pads M to 8 (or 16) instead of a conventional
//! tile of 64, splits K or N across cores and double-buffers the stream of
//! B; with M = 1 it is a GEMV. The rules offer these kernels next to the
//! conventional GEMM, and the cost model chooses by M, K, N and the target.
//!
//! - `matmul(A, B)`, A [..., M, K], B [K, N], M ≤ 16 → `flat_gemm(A, B)`
//! - `gemm(A, B, C)` (no transposes, unit scales), M ≤ 16 → `flat_gemm(A, B, C)`
//! - M = 1: the same → `gemv(A, B [, C])`

use egg::Id;
use saturn_ir::Op;
use saturn_ir::ops::*;
use saturn_ir::target::Target;

use super::super::analysis::EGraph;
use super::super::rule::*;

/// Largest M for which flat GEMM is offered.
pub const FLAT_MAX_M: usize = 16;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "matmul-to-flat-gemm",
            find: |eg, id| find_small_m(eg, id, 2..=FLAT_MAX_M),
            build: build_flat,
        },
        Rule {
            name: "matmul-to-gemv",
            find: |eg, id| find_small_m(eg, id, 1..=1),
            build: |eg, _, m| add_op(eg, Gemv {}, &m.ids),
        },
    ]
}

/// `matmul(A, B)` or a plain `gemm(A, B, C)` whose B is 2-D and whose M is
/// known and in `ms`: (A, B, C?) and M.
fn find_small_m(eg: &EGraph, id: Id, ms: std::ops::RangeInclusive<usize>) -> Vec<Match> {
    let mut out = Vec::new();
    for (op, c) in ops(eg, id).map(|(_, op, c)| (op.clone(), c)) {
        let ok = match &op {
            Op::MatMul(_) => true,
            Op::Gemm(g) => !g.transA && !g.transB && g.alpha == 1.0 && g.beta == 1.0,
            _ => false,
        };
        if !ok {
            continue;
        }
        let (Some(a), Some(b)) = (dims(eg, c[0]), dims(eg, c[1])) else {
            continue;
        };
        if b.len() != 2
            || a.len() < 2
            || ty(eg, c[0]).map(|t| t.dtype) != ty(eg, c[1]).map(|t| t.dtype)
        {
            continue;
        }
        let m = a[a.len() - 2];
        if !ms.contains(&m) {
            continue;
        }
        let mut ids = vec![c[0], c[1]];
        ids.extend(c.get(2).copied().filter(|&x| !is_absent(eg, x)));
        out.push(Match::new(ids).with_ints(vec![m as i64, b[0] as i64, b[1] as i64]));
    }
    out
}

/// The flat-GEMM schedule for [M, K] × [K, N] on a target: M padded to 8
/// (16 above 8); N tiles of whole vectors sized so that a K × n_tile panel
/// of B stays in L2; K split when there are fewer N tiles than cores; B's
/// tiles double-buffered when K is long enough to hide the next load.
pub fn flat_schedule(m: usize, k: usize, n: usize, target: &Target) -> FlatGemm {
    let lanes = target.f32_lanes();
    let l2 = target
        .caches
        .get(1)
        .or(target.caches.first())
        .map(|c| c.bytes)
        .unwrap_or(1 << 20) as usize;
    let fit = (l2 / 2) / (4 * k.max(1));
    let n_tile = ((fit / lanes).max(1) * lanes)
        .clamp(lanes, 512)
        .min(n.div_ceil(lanes) * lanes);
    let n_tiles = n.div_ceil(n_tile);
    let k_split = if n_tiles < target.cores {
        target.cores.div_ceil(n_tiles).min((k / 256).max(1))
    } else {
        1
    };
    FlatGemm {
        m_pad: if m <= 8 { 8 } else { 16 },
        n_tile: n_tile as i64,
        k_split: k_split as i64,
        double_buffer: k >= 64,
    }
}

fn build_flat(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    let (mm, k, n) = (m.ints[0] as usize, m.ints[1] as usize, m.ints[2] as usize);
    let op = flat_schedule(mm, k, n, &eg.analysis.target);
    add_op(eg, op, &m.ids)
}
