//! Softmax fusion: softmax written out, as exporters and ONNX function
//! bodies emit it, becomes one `softmax` (or `log_softmax`) op; a scalar
//! scale and an additive mask fold into the softmax.
//!
//! - `exp(x − max(x)) / Σ exp(x − max(x))` → `softmax(x)` (reductions
//!   over one axis with `keepdims`, or without it followed by `unsqueeze`);
//! - `(x − max(x)) − log Σ exp(x − max(x))` → `log_softmax(x)`;
//! - `softmax(x · s)`, `softmax(x / s)` → `softmax(x) {scale}`;
//! - `softmax(x + m)` → `softmax(x, m)` (m added after the scale).

use egg::Id;
use saturn_ir::Op;
use saturn_ir::ops::*;

use super::super::analysis::EGraph;
use super::super::rule::*;
use super::{norm_axis, single_axis};

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "softmax-from-exp-over-sum",
            find: find_softmax,
            build: build_softmax,
        },
        Rule {
            name: "log-softmax-from-sub-log-sum",
            find: find_log_softmax,
            build: build_log_softmax,
        },
        Rule {
            name: "softmax-fold-scale",
            find: find_scale,
            build: build_scale,
        },
        Rule {
            name: "softmax-fold-mask",
            find: find_mask,
            build: build_mask,
        },
    ]
}

/// Whether `m` is max(x) over `axis`, kept as a size-1 dim.
fn is_max_over(eg: &EGraph, m: Id, x: Id, axis: i64) -> bool {
    let same = |a: Id, b: Id| eg.find(a) == eg.find(b);
    let kept = find_ops(eg, m, |op| match op {
        Op::ReduceMax(r) if r.keepdims && !r.noop_with_empty_axes => Some(()),
        _ => None,
    })
    .any(|(_, c)| same(c[0], x) && single_axis(eg, c.get(1), x) == Some(axis));
    kept || find_ops(eg, m, |op| matches!(op, Op::Unsqueeze(_)).then_some(())).any(|(_, c)| {
        single_axis(eg, c.get(1), m) == Some(axis)
            && find_ops(eg, c[0], |op| match op {
                Op::ReduceMax(r) if !r.keepdims && !r.noop_with_empty_axes => Some(()),
                _ => None,
            })
            .any(|(_, r)| same(r[0], x) && single_axis(eg, r.get(1), x) == Some(axis))
    })
}

/// The axis over which `s` sums `e` (with the dim kept), if it does.
fn sum_axes_of(eg: &EGraph, s: Id, e: Id) -> Vec<i64> {
    let same = |a: Id, b: Id| eg.find(a) == eg.find(b);
    let mut out: Vec<i64> = find_ops(eg, s, |op| match op {
        Op::ReduceSum(r) if r.keepdims && !r.noop_with_empty_axes => Some(()),
        _ => None,
    })
    .filter(|(_, c)| same(c[0], e))
    .filter_map(|(_, c)| single_axis(eg, c.get(1), e))
    .collect();
    for (_, c) in find_ops(eg, s, |op| matches!(op, Op::Unsqueeze(_)).then_some(())) {
        let Some(axis) = single_axis(eg, c.get(1), s) else {
            continue;
        };
        let inner = find_ops(eg, c[0], |op| match op {
            Op::ReduceSum(r) if !r.keepdims && !r.noop_with_empty_axes => Some(()),
            _ => None,
        })
        .any(|(_, r)| same(r[0], e) && single_axis(eg, r.get(1), e) == Some(axis));
        if inner {
            out.push(axis);
        }
    }
    out
}

/// `x − max(x)` classes: (x, axis) for each way `d` is one.
fn shifted(eg: &EGraph, d: Id, axis: i64) -> Vec<Id> {
    find_ops(eg, d, |op| matches!(op, Op::Sub(_)).then_some(()))
        .filter(|(_, c)| same_type(eg, c[0], d) && is_max_over(eg, c[1], c[0], axis))
        .map(|(_, c)| c[0])
        .collect()
}

fn find_softmax(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (_, div) in find_ops(eg, id, |op| matches!(op, Op::Div(_)).then_some(())) {
        let (e, s) = (div[0], div[1]);
        if !same_type(eg, e, id) {
            continue;
        }
        for axis in sum_axes_of(eg, s, e) {
            for (_, exp) in find_ops(eg, e, |op| matches!(op, Op::Exp(_)).then_some(())) {
                for x in shifted(eg, exp[0], axis) {
                    out.push(Match::new(vec![x]).with_ints(vec![axis]));
                }
            }
        }
    }
    out
}

fn build_softmax(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    add_op(eg, softmax(m.ints[0], 1.0), &[m.ids[0]])
}

/// A plain softmax over `axis` with a scale.
pub fn softmax(axis: i64, scale: f32) -> Softmax {
    Softmax {
        axis,
        scale,
        algorithm: SoftmaxAlgorithm::ThreePass,
    }
}

fn find_log_softmax(eg: &EGraph, id: Id) -> Vec<Match> {
    let same = |a: Id, b: Id| eg.find(a) == eg.find(b);
    let mut out = Vec::new();
    for (_, sub) in find_ops(eg, id, |op| matches!(op, Op::Sub(_)).then_some(())) {
        let (d, l) = (sub[0], sub[1]);
        if !same_type(eg, d, id) {
            continue;
        }
        for (_, log) in find_ops(eg, l, |op| matches!(op, Op::Log(_)).then_some(())) {
            let s = log[0];
            // Σ exp(d) over an axis, where d = x − max(x) over it.
            for (_, sum) in find_ops(eg, s, |op| match op {
                Op::ReduceSum(r) if r.keepdims && !r.noop_with_empty_axes => Some(()),
                _ => None,
            }) {
                let Some(axis) = single_axis(eg, sum.get(1), sum[0]) else {
                    continue;
                };
                let exp_of_d = find_ops(eg, sum[0], |op| matches!(op, Op::Exp(_)).then_some(()))
                    .any(|(_, e)| same(e[0], d));
                if !exp_of_d {
                    continue;
                }
                for x in shifted(eg, d, axis) {
                    out.push(Match::new(vec![x]).with_ints(vec![axis]));
                }
            }
        }
    }
    out
}

fn build_log_softmax(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    add_op(eg, LogSoftmax { axis: m.ints[0] }, &[m.ids[0]])
}

/// The softmax e-nodes of a class: (op, input, mask if any).
fn softmaxes(eg: &EGraph, id: Id) -> Vec<(Softmax, Id, Option<Id>)> {
    find_ops(eg, id, |op| match op {
        Op::Softmax(s) => Some(s.clone()),
        _ => None,
    })
    .map(|(s, c)| (s, c[0], c.get(1).copied().filter(|&m| !is_absent(eg, m))))
    .collect()
}

/// `softmax(x · s)` with a constant scalar `s`: matches (x, mask?) with
/// the combined scale.
fn find_scale(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (sm, y, mask) in softmaxes(eg, id) {
        for (op, c) in find_ops(eg, y, |op| match op {
            Op::Mul(_) | Op::Div(_) => Some(matches!(op, Op::Div(_))),
            _ => None,
        }) {
            let (is_div, a, b) = (op, c[0], c[1]);
            let cands: &[(Id, Id)] = if is_div { &[(a, b)] } else { &[(a, b), (b, a)] };
            for &(x, s) in cands {
                let Some(k) = scalar(eg, s) else { continue };
                if !same_type(eg, x, y) || k == 0.0 || !k.is_finite() {
                    continue;
                }
                let k = if is_div { 1.0 / k } else { k };
                let mut ids = vec![x];
                ids.extend(mask);
                let axis = norm_axis(eg, sm.axis, y).unwrap_or(sm.axis);
                out.push(
                    Match::new(ids)
                        .with_floats(vec![k * sm.scale as f64])
                        .with_ints(vec![axis]),
                );
            }
        }
    }
    out
}

fn build_scale(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    add_op(eg, softmax(m.ints[0], m.floats[0] as f32), &m.ids)
}

/// `softmax(y + m)` with unit scale and no mask yet: (y, m) for each
/// operand order where `m` broadcasts into `y`.
fn find_mask(eg: &EGraph, id: Id) -> Vec<Match> {
    let mut out = Vec::new();
    for (sm, y, mask) in softmaxes(eg, id) {
        if mask.is_some() || sm.scale != 1.0 {
            continue;
        }
        let axis = norm_axis(eg, sm.axis, y).unwrap_or(sm.axis);
        for (_, c) in find_ops(eg, y, |op| matches!(op, Op::Add(_)).then_some(())) {
            for (x, m) in [(c[0], c[1]), (c[1], c[0])] {
                if same_type(eg, x, y) && scalar(eg, m).is_none() {
                    out.push(Match::new(vec![x, m]).with_ints(vec![axis]));
                }
            }
        }
    }
    out
}

fn build_mask(eg: &mut EGraph, _root: Id, m: &Match) -> Option<Id> {
    add_op(eg, softmax(m.ints[0], 1.0), &m.ids)
}
