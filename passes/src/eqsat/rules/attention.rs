//! Attention fusion: `softmax(Q·Kᵀ·s + M)·V` becomes one `attention` op,
//! and the head reshapes and transposes exporters put around it fold into
//! the op's 3-D form.
//!
//! - `matmul(softmax(matmul(Q, Kᵀ), M) {scale = s}, V)` with 4-D
//!   [batch, heads, seq, head] operands → `attention(Q, K, V, M) {scale = s}`,
//!   K being Kᵀ transposed back (the algebra rules then cancel transposes);
//! - `reshape(transpose(attention(Q, K, V, M), [0,2,1,3]), [B, S, H·D])`
//!   where Q, K, V are `transpose(reshape(x, [B, S, H, D]), [0,2,1,3])` →
//!   `attention(q, k, v, M) {q_num_heads = H, kv_num_heads = H}` on the
//!   [batch, seq, hidden] tensors the projections produce.

use egg::Id;
use saturn_ir::Op;
use saturn_ir::ops::*;

use super::super::analysis::EGraph;
use super::super::rule::*;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "attention-from-softmax-of-scores",
            find: find_attention,
            build: build_attention,
        },
        Rule {
            name: "attention-absorbs-head-layout",
            find: find_heads,
            build: build_heads,
        },
    ]
}

/// A plain 4-D attention with the given scale.
fn attention(scale: f32, q_heads: Option<i64>) -> Attention {
    Attention {
        is_causal: false,
        kv_num_heads: q_heads,
        q_num_heads: q_heads,
        qk_matmul_output_mode: 0,
        scale: Some(scale),
        softcap: 0.0,
        softmax_precision: None,
        left_window_size: -1,
        right_window_size: -1,
    }
}

fn find_attention(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (_, mm) in find_ops(eg, id, |op| matches!(op, Op::MatMul(_)).then_some(())) {
        let (p, v) = (mm[0], mm[1]);
        if rank(eg, v) != Some(4) || rank(eg, id) != Some(4) {
            continue;
        }
        let softmaxes = find_ops(eg, p, |op| match op {
            Op::Softmax(s) => Some(s.clone()),
            _ => None,
        });
        for (sm, c) in softmaxes {
            if super::norm_axis(eg, sm.axis, p) != Some(3) {
                continue;
            }
            let scores = c[0];
            let mask = c.get(1).copied().filter(|&m| !is_absent(eg, m));
            for (_, qk) in find_ops(eg, scores, |op| matches!(op, Op::MatMul(_)).then_some(())) {
                let (q, kt) = (qk[0], qk[1]);
                if rank(eg, q) != Some(4) || rank(eg, kt) != Some(4) {
                    continue;
                }
                let mut ids = vec![q, kt, v];
                ids.extend(mask);
                out.push(Match::new(ids).with_floats(vec![sm.scale as f64]));
            }
        }
    }
    out
}

fn build_attention(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    let (q, kt, v) = (m.ids[0], m.ids[1], m.ids[2]);
    let k = add_op(
        eg,
        Transpose {
            perm: Some(vec![0, 1, 3, 2]),
        },
        &[kt],
    )?;
    let mut inputs = vec![q, k, v];
    inputs.extend(m.ids.get(3));
    add_op(eg, attention(m.floats[0] as f32, None), &inputs)
}

/// `transpose(reshape(x, [B, S, H, D]), [0, 2, 1, 3])`: (x, H) where x is
/// [B, S, H·D].
fn split_heads(eg: &EGraph, id: Id) -> Vec<(Id, i64)> {
    let mut out = Vec::new();
    for (perm, t) in find_ops(eg, id, |op| match op {
        Op::Transpose(t) => t.perm.clone(),
        _ => None,
    }) {
        if perm != [0, 2, 1, 3] {
            continue;
        }
        let Some(r) = dims(eg, t[0]) else { continue };
        for (_, c) in find_ops(eg, t[0], |op| matches!(op, Op::Reshape(_)).then_some(())) {
            let x = c[0];
            match dims(eg, x).as_deref() {
                Some(&[b, s, hd])
                    if r.len() == 4 && r[0] == b && r[1] == s && r[2] * r[3] == hd =>
                {
                    out.push((x, r[2] as i64));
                }
                _ => {}
            }
        }
    }
    out
}

/// The 3-D form: matches (q, k, v, mask?) with the head count and scale.
fn find_heads(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    let Some(y) = dims(eg, id) else { return out };
    if y.len() != 3 {
        return out;
    }
    for (_, r) in find_ops(eg, id, |op| matches!(op, Op::Reshape(_)).then_some(())) {
        for (perm, t) in find_ops(eg, r[0], |op| match op {
            Op::Transpose(t) => t.perm.clone(),
            _ => None,
        }) {
            if perm != [0, 2, 1, 3] {
                continue;
            }
            for (a, c) in find_ops(eg, t[0], |op| match op {
                Op::Attention(a) => Some(a.clone()),
                _ => None,
            }) {
                let plain = !a.is_causal
                    && a.q_num_heads.is_none()
                    && a.kv_num_heads.is_none()
                    && a.qk_matmul_output_mode == 0
                    && a.softcap == 0.0
                    && c.len() <= 4;
                let Some(scale) = a.scale.filter(|_| plain) else {
                    continue;
                };
                let mask = c.get(3).copied().filter(|&m| !is_absent(eg, m));
                for (q, h) in split_heads(eg, c[0]) {
                    for (k, hk) in split_heads(eg, c[1]) {
                        for (v, hv) in split_heads(eg, c[2]) {
                            if h != hk || h != hv {
                                continue;
                            }
                            let mut ids = vec![q, k, v];
                            ids.extend(mask);
                            out.push(
                                Match::new(ids)
                                    .with_ints(vec![h])
                                    .with_floats(vec![scale as f64]),
                            );
                        }
                    }
                }
            }
        }
    }
    out
}

fn build_heads(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    add_op(eg, attention(m.floats[0] as f32, Some(m.ints[0])), &m.ids)
}
