//! The ONNX conformance suites with the e-graph optimizer in front of the
//! interpreter. It checks against the same list as the interpreter alone
//! (`expectations/interp.txt`): no case may be lost by optimizing, and a
//! case that optimizing makes pass shows up as well.
//!
//! `SATURN_CASES=pattern` runs only matching cases and prints each result.

use saturn_ir::target::Target;
use saturn_passes::eqsat::optimize;

#[test]
fn optimized_conformance() {
    let target = Target::named("x86-64-avx512").unwrap();
    let prepare = |g| {
        let (g, report) = optimize(&g, &target).map_err(|e| format!("optimize: {e}"))?;
        if report.type_conflicts > 0 {
            return Err(format!(
                "optimize: {} type conflicts",
                report.type_conflicts
            ));
        }
        Ok(g)
    };
    saturn_tests::conformance::check_suites("interp.txt", &prepare, false);
}
