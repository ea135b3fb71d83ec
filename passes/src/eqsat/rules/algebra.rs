//! Algebra and layout: transposes and reshapes that cancel, neutral
//! elements, inference-time no-ops, matrix products with transposed
//! operands, broadcasts that the consumer would do anyway, constant chains
//! and folding BatchNorm (and per-channel scales and shifts) into the
//! convolution or Gemm before it. Constant subexpressions fold through the
//! analysis.

use egg::Id;
use saturn_ir::ops::*;
use saturn_ir::{DType, Op, Tensor};

use super::super::analysis::EGraph;
use super::super::rule::*;
use crate::eqsat::lang::Node;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "transpose-of-transpose",
            find: find_transpose_pair,
            build: build_transpose_pair,
        },
        Rule {
            name: "view-of-view",
            find: find_view_chain,
            build: build_reshape_to_type,
        },
        Rule {
            name: "no-op-removal",
            find: find_noop,
            build: |_, _, m| Some(m.ids[0]),
        },
        Rule {
            name: "neutral-element",
            find: find_neutral,
            build: |_, _, m| Some(m.ids[0]),
        },
        Rule {
            name: "dropout-at-inference",
            find: find_dropout,
            build: |_, _, m| Some(m.ids[0]),
        },
        Rule {
            name: "matmul-transposed-b-to-gemm",
            find: find_matmul_transposed_b,
            build: |eg, _, m| {
                let gemm = Gemm {
                    alpha: 1.0,
                    beta: 1.0,
                    transA: false,
                    transB: true,
                };
                add_op(eg, gemm, &m.ids)
            },
        },
        Rule {
            name: "gemm-constant-transposed-b",
            find: find_gemm_const_trans_b,
            build: build_gemm_untransposed,
        },
        Rule {
            name: "gemm-to-matmul",
            find: find_plain_gemm,
            build: |eg, _, m| add_op(eg, MatMul {}, &m.ids),
        },
        Rule {
            name: "broadcast-of-expand",
            find: find_expand_operand,
            build: build_without_expand,
        },
        Rule {
            name: "constant-chain",
            find: find_constant_chain,
            build: build_constant_chain,
        },
        Rule {
            name: "batchnorm-into-conv",
            find: find_bn_after_conv,
            build: build_bn_into_conv,
        },
        Rule {
            name: "batchnorm-into-gemm",
            find: find_bn_after_gemm,
            build: build_bn_into_gemm,
        },
        Rule {
            name: "channel-affine-into-conv",
            find: find_affine_after_conv,
            build: build_affine_into_conv,
        },
    ]
}

/// A transpose's permutation, resolved for a rank.
fn perm_of(t: &Transpose, rank: usize) -> Vec<usize> {
    match &t.perm {
        Some(p) => p
            .iter()
            .map(|&a| {
                if a < 0 {
                    (a + rank as i64) as usize
                } else {
                    a as usize
                }
            })
            .collect(),
        None => (0..rank).rev().collect(),
    }
}

fn find_transpose_pair(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    let Some(r) = rank(eg, id) else { return out };
    for (outer, c) in find_ops(eg, id, |op| match op {
        Op::Transpose(t) => Some(t.clone()),
        _ => None,
    }) {
        for (inner, d) in find_ops(eg, c[0], |op| match op {
            Op::Transpose(t) => Some(t.clone()),
            _ => None,
        }) {
            let (p1, p2) = (perm_of(&inner, r), perm_of(&outer, r));
            if p1.len() != r || p2.len() != r || p2.iter().any(|&i| i >= r) {
                continue;
            }
            let composed: Vec<i64> = p2.iter().map(|&j| p1[j] as i64).collect();
            out.push(Match::new(vec![d[0]]).with_ints(composed));
        }
    }
    out
}

fn build_transpose_pair(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    if m.ints.iter().enumerate().all(|(i, &p)| p == i as i64) {
        return Some(m.ids[0]);
    }
    add_op(
        eg,
        Transpose {
            perm: Some(m.ints.clone()),
        },
        &[m.ids[0]],
    )
}

fn is_view(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_)
    )
}

/// A view of a view of `x`: matches `x`, to become one reshape to the
/// outer view's (fully known) shape.
fn find_view_chain(eg: &EGraph, id: Id) -> Vec<Match> {
    if dims(eg, id).is_none() {
        return vec![];
    }
    let mut out = Vec::new();
    for (_, c) in find_ops(eg, id, |op| is_view(op).then_some(())) {
        for (_, d) in find_ops(eg, c[0], |op| is_view(op).then_some(())) {
            out.push(Match::new(vec![d[0]]));
        }
    }
    out
}

fn build_reshape_to_type(eg: &mut EGraph, root: Id, m: &Match) -> Option<Id> {
    let target: Vec<i64> = dims(eg, root)?.iter().map(|&d| d as i64).collect();
    let shape = add_ints(eg, &target);
    add_op(eg, Reshape { allowzero: true }, &[m.ids[0], shape])
}

/// Ops that do nothing to a value of their result's type.
fn find_noop(eg: &EGraph, id: Id) -> Vec<Match> {
    find_ops(eg, id, |op| match op {
        Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Squeeze(_)
        | Op::Unsqueeze(_)
        | Op::Expand(_)
        | Op::Identity(_)
        | Op::Cast(_) => Some(()),
        _ => None,
    })
    .filter(|(_, c)| same_type(eg, c[0], id))
    .map(|(_, c)| Match::new(vec![c[0]]))
    .collect()
}

/// `x + 0`, `0 + x`, `x − 0`, `x · 1`, `1 · x`, `x / 1`, `x ^ 1`.
fn find_neutral(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (op, c) in ops(eg, id).map(|(_, op, c)| (op.clone(), c)) {
        let (a, b) = match c {
            [a, b] => (*a, *b),
            _ => continue,
        };
        let cands: Vec<(Id, Id, f64)> = match op {
            Op::Add(_) => vec![(a, b, 0.0), (b, a, 0.0)],
            Op::Sub(_) => vec![(a, b, 0.0)],
            Op::Mul(_) => vec![(a, b, 1.0), (b, a, 1.0)],
            Op::Div(_) | Op::Pow(_) => vec![(a, b, 1.0)],
            _ => continue,
        };
        for (x, n, neutral) in cands {
            if is_splat(eg, n, neutral) && same_type(eg, x, id) {
                out.push(Match::new(vec![x]));
            }
        }
    }
    out
}

/// Output 0 of a dropout that is not training: its input.
fn find_dropout(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    // The dropout itself when it has one output, or the tuple whose
    // output 0 this is.
    let mut owners = vec![id];
    owners.extend(eg[id].nodes.iter().filter_map(|n| match n {
        Node::Proj(0, [t]) => Some(*t),
        _ => None,
    }));
    for t in owners {
        for (_, c) in find_ops(eg, t, |op| matches!(op, Op::Dropout(_)).then_some(())) {
            let training = c.get(2).filter(|&&m| !is_absent(eg, m));
            let off = match training {
                None => true,
                Some(&m) => is_splat(eg, m, 0.0),
            };
            if off && same_type(eg, c[0], id) {
                out.push(Match::new(vec![c[0]]));
            }
        }
    }
    out
}

/// `matmul(a, transpose(b))` with 2-D operands: (a, b).
fn find_matmul_transposed_b(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (_, c) in find_ops(eg, id, |op| matches!(op, Op::MatMul(_)).then_some(())) {
        if rank(eg, c[0]) != Some(2) || rank(eg, c[1]) != Some(2) {
            continue;
        }
        for (t, d) in find_ops(eg, c[1], |op| match op {
            Op::Transpose(t) => Some(t.clone()),
            _ => None,
        }) {
            if perm_of(&t, 2) == [1, 0] {
                out.push(Match::new(vec![c[0], d[0]]));
            }
        }
    }
    out
}

/// Gemm with a constant B used transposed: matches (a, b, c?) to use the
/// transposed constant instead.
fn find_gemm_const_trans_b(eg: &EGraph, id: Id) -> Vec<Match> {
    find_ops(eg, id, |op| match op {
        Op::Gemm(g) if g.transB => Some(g.clone()),
        _ => None,
    })
    .filter(|(_, c)| constant(eg, c[1]).is_some())
    .map(|(g, c)| {
        Match::new(c.iter().copied().filter(|&x| !is_absent(eg, x)).collect())
            .with_floats(vec![g.alpha as f64, g.beta as f64])
            .with_ints(vec![g.transA as i64])
    })
    .collect()
}

fn build_gemm_untransposed(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    let bt = add_op(
        eg,
        Transpose {
            perm: Some(vec![1, 0]),
        },
        &[m.ids[1]],
    )?;
    let mut inputs = vec![m.ids[0], bt];
    inputs.extend(m.ids.get(2));
    let gemm = Gemm {
        alpha: m.floats[0] as f32,
        beta: m.floats[1] as f32,
        transA: m.ints[0] != 0,
        transB: false,
    };
    add_op(eg, gemm, &inputs)
}

/// A Gemm that is a plain matrix product (no bias, no scaling, no
/// transposes): (a, b).
fn find_plain_gemm(eg: &EGraph, id: Id) -> Vec<Match> {
    find_ops(eg, id, |op| match op {
        Op::Gemm(g) if !g.transA && !g.transB && g.alpha == 1.0 => Some(()),
        _ => None,
    })
    .filter(|(_, c)| c.len() == 2 || c.get(2).is_some_and(|&x| is_absent(eg, x)))
    .map(|(_, c)| Match::new(vec![c[0], c[1]]))
    .collect()
}

fn is_broadcasting_binary(op: &Op) -> bool {
    matches!(
        op,
        Op::Add(_) | Op::Sub(_) | Op::Mul(_) | Op::Div(_) | Op::Pow(_) | Op::Max(_) | Op::Min(_)
    )
}

/// A broadcasting binary op with an `expand`ed operand whose expansion the
/// op's own broadcasting makes anyway: (op's other operand, expand's input)
/// in operand order, and which side the expand was on.
fn find_expand_operand(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (o, op, c) in ops(eg, id) {
        if !is_broadcasting_binary(op) || c.len() != 2 {
            continue;
        }
        for side in 0..2 {
            for (_, e) in find_ops(eg, c[side], |op| matches!(op, Op::Expand(_)).then_some(())) {
                let mut ids = c.to_vec();
                ids[side] = e[0];
                out.push(Match::new(ids).with_ints(vec![o_index(o)]));
            }
        }
    }
    out
}

/// The op of a match, carried as a number.
fn o_index(o: crate::eqsat::lang::OpId) -> i64 {
    o.index() as i64
}

fn build_without_expand(eg: &mut EGraph, root: Id, m: &Match) -> Option<Id> {
    // The op of the root with this operand pair, minus the expand.
    let op = ops(eg, root)
        .find(|(o, op, _)| is_broadcasting_binary(op) && o_index(*o) == m.ints[0])
        .map(|(_, op, _)| op.clone())?;
    let new = add_op(eg, op, &m.ids)?;
    same_type(eg, new, root).then_some(new)
}

/// `(x ∘ c1) ∘ c2` with constants c1, c2 and ∘ one of + or ·: (x, c1, c2)
/// and which op.
fn find_constant_chain(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (is_mul, c) in find_ops(eg, id, |op| match op {
        Op::Add(_) => Some(false),
        Op::Mul(_) => Some(true),
        _ => None,
    }) {
        for (inner, k2) in [(c[0], c[1]), (c[1], c[0])] {
            if constant(eg, k2).is_none() || constant(eg, inner).is_some() {
                continue;
            }
            for (_, d) in find_ops(eg, inner, |op| match op {
                Op::Add(_) if !is_mul => Some(()),
                Op::Mul(_) if is_mul => Some(()),
                _ => None,
            }) {
                for (x, k1) in [(d[0], d[1]), (d[1], d[0])] {
                    if constant(eg, k1).is_some() && constant(eg, x).is_none() {
                        out.push(Match::new(vec![x, k1, k2]).with_ints(vec![is_mul as i64]));
                    }
                }
            }
        }
    }
    out
}

fn build_constant_chain(eg: &mut EGraph, root: Id, m: &Match) -> Option<Id> {
    let (x, k1, k2) = (m.ids[0], m.ids[1], m.ids[2]);
    // k1 ∘ k2 folds to a constant through the analysis.
    let new = if m.ints[0] == 1 {
        let k = add_op(eg, Mul {}, &[k1, k2])?;
        add_op(eg, Mul {}, &[x, k])?
    } else {
        let k = add_op(eg, Add {}, &[k1, k2])?;
        add_op(eg, Add {}, &[x, k])?
    };
    same_type(eg, new, root).then_some(new)
}

// ---- folding per-channel affine maps into the producer ----

/// A per-channel vector from a constant that broadcasts against a
/// [N, C, …] (channel axis 1) or [N, C] value of rank `rank`: its C values.
fn per_channel(t: &Tensor, channels: usize, rank: usize) -> Option<Vec<f64>> {
    let v = t.to_f64_vec();
    if v.len() == 1 {
        return Some(vec![v[0]; channels]);
    }
    if v.len() != channels {
        return None;
    }
    // Right-aligned against the value's shape, the C elements must sit on
    // axis 1.
    let s = t.shape();
    let offset = rank.checked_sub(s.len())?;
    let on_channel = s.iter().enumerate().all(|(i, &d)| {
        if i + offset == 1 {
            d == channels
        } else {
            d == 1
        }
    });
    on_channel.then_some(v)
}

/// Scales the output channels (axis 0) of a weight tensor.
fn scale_rows(w: &Tensor, k: &[f64]) -> Option<Tensor> {
    let per = w.numel() / k.len().max(1);
    if per * k.len() != w.numel() {
        return None;
    }
    if let Some(v) = w.as_slice::<f32>() {
        let v: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| (x as f64 * k[i / per]) as f32)
            .collect();
        return Some(Tensor::from_vec(w.shape().to_vec(), v));
    }
    let v: Vec<f64> = w
        .to_f64_vec()
        .iter()
        .enumerate()
        .map(|(i, x)| x * k[i / per])
        .collect();
    saturn_ir::interp::kernels::from_f64(w.dtype(), w.shape().to_vec(), v).ok()
}

fn vector(dtype: DType, v: Vec<f64>) -> Option<Tensor> {
    let n = v.len();
    saturn_ir::interp::kernels::from_f64(dtype, vec![n], v).ok()
}

/// BatchNormalization's per-channel (scale, shift) from its constants.
fn bn_affine(
    eg: &EGraph,
    bn: &BatchNormalization,
    c: &[Id],
    channels: usize,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let vals: Vec<Vec<f64>> = c[1..5]
        .iter()
        .map(|&p| constant(eg, p).map(|t| t.to_f64_vec()))
        .collect::<Option<_>>()?;
    if vals.iter().any(|v| v.len() != channels) {
        return None;
    }
    let eps = bn.epsilon as f64;
    let k: Vec<f64> = (0..channels)
        .map(|i| vals[0][i] / (vals[3][i] + eps).sqrt())
        .collect();
    let shift: Vec<f64> = (0..channels)
        .map(|i| vals[1][i] - vals[2][i] * k[i])
        .collect();
    Some((k, shift))
}

/// The BatchNormalization e-nodes of this class (inference, one output):
/// (bn, its children).
fn batchnorms(eg: &EGraph, id: Id) -> Vec<(BatchNormalization, Vec<Id>)> {
    ops(eg, id)
        .filter_map(|(o, op, c)| match op {
            Op::BatchNormalization(bn) if !bn.training_mode && eg.analysis.ops.outputs(o) == 1 => {
                Some((bn.clone(), c.to_vec()))
            }
            _ => None,
        })
        .collect()
}

/// The convolutions of a class with constant weights (and bias):
/// (conv, x, w, bias?).
fn convs(eg: &EGraph, id: Id) -> Vec<(Conv, Id, Id, Option<Id>)> {
    find_ops(eg, id, |op| match op {
        Op::Conv(c) => Some(c.clone()),
        _ => None,
    })
    .filter(|(_, c)| {
        constant(eg, c[1]).is_some()
            && c.get(2)
                .is_none_or(|&b| is_absent(eg, b) || constant(eg, b).is_some())
    })
    .map(|(conv, c)| {
        (
            conv,
            c[0],
            c[1],
            c.get(2).copied().filter(|&b| !is_absent(eg, b)),
        )
    })
    .collect()
}

/// A conv with its weights and bias folded with a per-channel (scale, shift).
fn folded_conv(
    eg: &mut EGraph,
    conv: &Conv,
    x: Id,
    w: Id,
    b: Option<Id>,
    k: &[f64],
    shift: &[f64],
) -> Option<Id> {
    let wt = constant(eg, w)?.clone();
    let bias: Vec<f64> = match b {
        Some(b) => constant(eg, b)?.to_f64_vec(),
        None => vec![0.0; k.len()],
    };
    if bias.len() != k.len() || wt.shape().first() != Some(&k.len()) {
        return None;
    }
    let w2 = scale_rows(&wt, k)?;
    let b2 = vector(
        wt.dtype(),
        (0..k.len()).map(|i| bias[i] * k[i] + shift[i]).collect(),
    )?;
    let (w2, b2) = (add_const(eg, w2), add_const(eg, b2));
    add_op(eg, conv.clone(), &[x, w2, b2])
}

fn find_bn_after_conv(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (_, c) in batchnorms(eg, id) {
        for (_, x, w, b) in convs(eg, c[0]) {
            let mut ids = vec![c[0], x, w];
            ids.extend(b);
            out.push(Match::new(ids));
        }
    }
    out
}

fn build_bn_into_conv(eg: &mut EGraph, root: Id, m: &Match) -> Option<Id> {
    let (y, x, w) = (m.ids[0], m.ids[1], m.ids[2]);
    let (bn, c) = batchnorms(eg, root)
        .into_iter()
        .find(|(_, c)| eg.find(c[0]) == eg.find(y))?;
    let (conv, ..) = convs(eg, y)
        .into_iter()
        .find(|(_, cx, cw, _)| eg.find(*cx) == eg.find(x) && eg.find(*cw) == eg.find(w))?;
    let channels = *dims(eg, w)?.first()?;
    let (k, shift) = bn_affine(eg, &bn, &c, channels)?;
    folded_conv(eg, &conv, x, w, m.ids.get(3).copied(), &k, &shift)
}

fn find_bn_after_gemm(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (_, c) in batchnorms(eg, id) {
        if rank(eg, c[0]) != Some(2) {
            continue;
        }
        for (g, d) in find_ops(eg, c[0], |op| match op {
            Op::Gemm(g) if !g.transA => Some(g.clone()),
            _ => None,
        }) {
            let bias_ok = d
                .get(2)
                .is_none_or(|&b| is_absent(eg, b) || constant(eg, b).is_some());
            if constant(eg, d[1]).is_some() && bias_ok {
                let mut ids = vec![c[0], d[0], d[1]];
                ids.extend(d.get(2).copied().filter(|&b| !is_absent(eg, b)));
                out.push(
                    Match::new(ids)
                        .with_ints(vec![g.transB as i64])
                        .with_floats(vec![g.alpha as f64, g.beta as f64]),
                );
            }
        }
    }
    out
}

fn build_bn_into_gemm(eg: &mut EGraph, root: Id, m: &Match) -> Option<Id> {
    let (y, x, w) = (m.ids[0], m.ids[1], m.ids[2]);
    let (bn, c) = batchnorms(eg, root)
        .into_iter()
        .find(|(_, c)| eg.find(c[0]) == eg.find(y))?;
    let features = dims(eg, y)?[1];
    let (k, shift) = bn_affine(eg, &bn, &c, features)?;
    let trans_b = m.ints[0] != 0;
    let (alpha, beta) = (m.floats[0], m.floats[1]);
    let wt = constant(eg, w)?.clone();
    // Scale B's output columns: rows of Bᵀ, or columns of B.
    let w2 = if trans_b {
        scale_rows(&wt, &k)?
    } else {
        let s = wt.shape();
        if s.len() != 2 || s[1] != features {
            return None;
        }
        let v: Vec<f64> = wt
            .to_f64_vec()
            .iter()
            .enumerate()
            .map(|(i, x)| x * k[i % features])
            .collect();
        saturn_ir::interp::kernels::from_f64(wt.dtype(), s.to_vec(), v).ok()?
    };
    // New bias: (β·c)·k + shift, per feature.
    let bias: Vec<f64> = match m.ids.get(3) {
        Some(&b) => {
            let t = constant(eg, b)?;
            per_channel(t, features, 2)
                .or_else(|| (t.numel() == features).then(|| t.to_f64_vec()))?
        }
        None => vec![0.0; features],
    };
    let b2 = vector(
        wt.dtype(),
        (0..features)
            .map(|i| beta * bias[i] * k[i] + shift[i])
            .collect(),
    )?;
    let (w2, b2) = (add_const(eg, w2), add_const(eg, b2));
    let gemm = Gemm {
        alpha: alpha as f32,
        beta: 1.0,
        transA: false,
        transB: trans_b,
    };
    add_op(eg, gemm, &[x, w2, b2])
}

/// `conv(x, W, b) · s` or `conv(x, W, b) + t` with per-channel constants.
fn find_affine_after_conv(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (is_mul, c) in find_ops(eg, id, |op| match op {
        Op::Mul(_) => Some(true),
        Op::Add(_) => Some(false),
        _ => None,
    }) {
        for (y, s) in [(c[0], c[1]), (c[1], c[0])] {
            if constant(eg, s).is_none() || !same_type(eg, y, id) {
                continue;
            }
            for (_, x, w, b) in convs(eg, y) {
                let mut ids = vec![y, s, x, w];
                ids.extend(b);
                out.push(Match::new(ids).with_ints(vec![is_mul as i64]));
            }
        }
    }
    out
}

fn build_affine_into_conv(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    let (y, s, x, w) = (m.ids[0], m.ids[1], m.ids[2], m.ids[3]);
    let (conv, ..) = convs(eg, y)
        .into_iter()
        .find(|(_, cx, cw, _)| eg.find(*cx) == eg.find(x) && eg.find(*cw) == eg.find(w))?;
    let channels = *dims(eg, w)?.first()?;
    let r = rank(eg, y)?;
    let v = per_channel(constant(eg, s)?, channels, r)?;
    let (k, shift) = if m.ints[0] == 1 {
        (v, vec![0.0; channels])
    } else {
        (vec![1.0; channels], v)
    };
    folded_conv(eg, &conv, x, w, m.ids.get(4).copied(), &k, &shift)
}
