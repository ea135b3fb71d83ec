//! Softmax algorithms: the three-pass form (max, Σ exp, normalize), the
//! two-pass form of Dukhan & Ablavatski (Σ exp kept as a mantissa and an
//! exponent, so no max pass) and the online form (running max and sum).
//! All compute the same function; the cost model picks: the two-pass form
//! moves two reads and a write instead of three reads and a write, which
//! wins when a row does not fit in cache, while rows that fit favour the
//! three-pass form's lighter arithmetic.

use egg::Id;
use saturn_ir::Op;
use saturn_ir::ops::*;

use super::super::analysis::EGraph;
use super::super::rule::*;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "softmax-three-pass-to-two-pass",
            find: |eg, id| find_algorithm(eg, id, SoftmaxAlgorithm::ThreePass),
            build: |eg, r, m| build_algorithm(eg, r, m, SoftmaxAlgorithm::TwoPass),
        },
        Rule {
            name: "softmax-three-pass-to-online",
            find: |eg, id| find_algorithm(eg, id, SoftmaxAlgorithm::ThreePass),
            build: |eg, r, m| build_algorithm(eg, r, m, SoftmaxAlgorithm::Online),
        },
        Rule {
            name: "softmax-two-pass-to-three-pass",
            find: |eg, id| find_algorithm(eg, id, SoftmaxAlgorithm::TwoPass),
            build: |eg, r, m| build_algorithm(eg, r, m, SoftmaxAlgorithm::ThreePass),
        },
        Rule {
            name: "softmax-online-to-three-pass",
            find: |eg, id| find_algorithm(eg, id, SoftmaxAlgorithm::Online),
            build: |eg, r, m| build_algorithm(eg, r, m, SoftmaxAlgorithm::ThreePass),
        },
    ]
}

/// Softmax e-nodes with the given algorithm: the inputs, with the axis
/// and scale as numbers.
fn find_algorithm(eg: &EGraph, id: Id, algorithm: SoftmaxAlgorithm) -> Vec<Match> {
    find_ops(eg, id, |op| match op {
        Op::Softmax(s) if s.algorithm == algorithm => Some(s.clone()),
        _ => None,
    })
    .map(|(s, c)| {
        Match::new(c.to_vec())
            .with_ints(vec![s.axis])
            .with_floats(vec![s.scale as f64])
    })
    .collect()
}

fn build_algorithm(
    eg: &mut EGraph,
    _root: Id,
    m: &Match,
    algorithm: SoftmaxAlgorithm,
) -> Option<Id> {
    let op = Softmax {
        axis: m.ints[0],
        scale: m.floats[0] as f32,
        algorithm,
    };
    add_op(eg, op, &m.ids)
}
