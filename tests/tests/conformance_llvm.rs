//! The ONNX conformance suites on the `llvm` backend (feature `llvm`),
//! against `expectations/llvm.txt` (regenerated with `SATURN_BLESS=1`).
//!
//! As for `cpu`: a case passes only when every node of its optimized graph
//! became generated code, and its outputs match the reference outputs.
//!
//! `SATURN_CASES=pattern` runs only matching cases and prints each result.
#![cfg(feature = "llvm")]

use saturn_backends::cpu_llvm::Llvm;
use saturn_ir::builder::specialize;
use saturn_ir::target::Target;
use saturn_passes::eqsat::optimize;

#[test]
fn llvm_conformance() {
    let target = Target::host();
    let llvm = Llvm::host();
    let prepare = |g| {
        optimize(&g, &target)
            .map(|(g, _)| g)
            .map_err(|e| format!("optimize: {e}"))
    };
    let run = |g: &saturn_ir::Graph, inputs: Vec<saturn_ir::Tensor>| {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let static_shapes = g
            .inputs()
            .iter()
            .all(|v| g.ty(*v).shape.as_known().is_some());
        let g = if static_shapes {
            g.clone()
        } else {
            let s = specialize(g, &shapes).map_err(|e| format!("specialize: {e}"))?;
            optimize(&s, &target).map(|(g, _)| g).unwrap_or(s)
        };
        let c =
            saturn_backends::cpu::compile_with(&g, &target, 1, &llvm).map_err(|e| e.to_string())?;
        let fb = c.lowered.fallbacks(&c.graph);
        if let Some((n, op, why)) = fb.first() {
            return Err(format!("fallback: `{n}` ({op}): {why}"));
        }
        c.session.run(&inputs).map_err(|e| e.to_string())
    };
    saturn_tests::conformance::check_suites_with("llvm.txt", &prepare, &run, true);
}
