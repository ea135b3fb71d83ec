//! The ONNX conformance suites on the `cpu` backend (Cranelift), against
//! `expectations/cpu.txt` (regenerated with `SATURN_BLESS=1`).
//!
//! A case passes only when every node of its optimized graph became
//! generated code: a node left to the interpreter fallback fails the case
//! with the op named, so this list measures the code generator alone.
//!
//! `SATURN_CASES=pattern` runs only matching cases and prints each result.

use saturn_backends::cpu_cranelift::Cranelift;
use saturn_ir::target::Target;
use saturn_passes::eqsat::optimize;
use saturn_tests::conformance::{check_suites_with, run_native};

#[test]
fn cpu_conformance() {
    let target = Target::named("x86-64-avx512").unwrap();
    let prepare = |g| {
        optimize(&g, &target)
            .map(|(g, _)| g)
            .map_err(|e| format!("optimize: {e}"))
    };
    let run = |g: &saturn_ir::Graph, inputs| run_native(g, inputs, &target, &Cranelift);
    check_suites_with("cpu.txt", &prepare, &run, true);
}
