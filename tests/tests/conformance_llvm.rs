//! The ONNX conformance suites on the `llvm` backend (feature `llvm`),
//! against `expectations/llvm.txt` (regenerated with `SATURN_BLESS=1`).
//!
//! As for `cpu`: a case passes only when every node of its optimized graph
//! became generated code, and its outputs match the reference outputs.
//!
//! `SATURN_CASES=pattern` runs only matching cases and prints each result.
#![cfg(feature = "llvm")]

use saturn_backends::cpu_llvm::Llvm;
use saturn_ir::target::Target;
use saturn_passes::eqsat::optimize;
use saturn_tests::conformance::{check_suites_with, run_native};

#[test]
fn llvm_conformance() {
    let target = Target::host();
    let llvm = Llvm::host();
    let prepare = |g| {
        optimize(&g, &target)
            .map(|(g, _)| g)
            .map_err(|e| format!("optimize: {e}"))
    };
    let run = |g: &saturn_ir::Graph, inputs| run_native(g, inputs, &target, &llvm);
    check_suites_with("llvm.txt", &prepare, &run, true);
}
