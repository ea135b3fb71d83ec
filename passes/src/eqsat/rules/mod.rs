//! Rule families, one file each. Every rule is named; `all()` is what the
//! optimizer runs.
//!
//! Following Cranelift's mid-end rules: no general commutativity or
//! associativity (directed rules instead), no rewrite to something that is
//! always worse, and every saturation bounded (see [`super::Limits`]).
//! Each rule has a soundness test: both sides, evaluated by the reference
//! interpreter on random inputs, agree.

pub mod algebra;
pub mod attention;
pub mod gemm;
pub mod softmax;
pub mod two_pass;

use egg::Id;
use saturn_ir::ops::infer::normalize_axis;

use super::analysis::EGraph;
use super::rule::{Rule, const_ints, rank};

/// Every rule of every family.
pub fn all() -> Vec<Rule> {
    let mut r = Vec::new();
    r.extend(algebra::rules());
    r.extend(softmax::rules());
    r.extend(attention::rules());
    r.extend(two_pass::rules());
    r.extend(gemm::rules());
    r
}

/// The rule families by name, for `--rules`.
pub fn family(name: &str) -> Option<Vec<Rule>> {
    Some(match name {
        "algebra" => algebra::rules(),
        "softmax" => softmax::rules(),
        "attention" => attention::rules(),
        "two-pass" => two_pass::rules(),
        "gemm" => gemm::rules(),
        _ => return None,
    })
}

/// The rule called `name`.
pub fn by_name(name: &str) -> Option<Rule> {
    all().into_iter().find(|r| r.name == name)
}

/// The one axis (made non-negative) that a constant `axes` class lists,
/// for a value of rank `rank_of`'s rank.
pub(crate) fn single_axis(eg: &EGraph, axes: Option<&Id>, rank_of: Id) -> Option<i64> {
    let r = rank(eg, rank_of)?;
    match const_ints(eg, *axes?)?.as_slice() {
        [a] => normalize_axis(*a, r).ok().map(|a| a as i64),
        _ => None,
    }
}

/// An axis attribute made non-negative for a value's rank.
pub(crate) fn norm_axis(eg: &EGraph, axis: i64, of: Id) -> Option<i64> {
    normalize_axis(axis, rank(eg, of)?).ok().map(|a| a as i64)
}
