//! The ONNX conformance suites with the e-graph optimizer in front of the
//! interpreter. It checks against the same list as the interpreter alone
//! (`expectations/interp.txt`): no case may be lost by optimizing, and a
//! case that optimizing makes pass shows up as well.
//!
//! `SATURN_CASES=pattern` runs only matching cases and prints each result.

use saturn_ir::target::Target;
use saturn_passes::eqsat::optimize;
use saturn_tests::conformance::{all_cases, check_expectations, report_filtered, run_all};

#[test]
fn optimized_conformance() {
    let cases = all_cases();
    assert!(
        cases.len() > 2000,
        "expected the full ONNX test data, found {} cases",
        cases.len()
    );
    let filter = std::env::var("SATURN_CASES").ok();
    let cases: Vec<_> = match &filter {
        Some(f) => cases
            .into_iter()
            .filter(|c| c.id.contains(f.as_str()))
            .collect(),
        None => cases,
    };
    let target = Target::named("x86-64-avx512").unwrap();
    let results = run_all(
        &cases,
        &|g| {
            let (g, report) = optimize(&g, &target).map_err(|e| format!("optimize: {e}"))?;
            if report.type_conflicts > 0 {
                return Err(format!(
                    "optimize: {} type conflicts",
                    report.type_conflicts
                ));
            }
            Ok(g)
        },
        &|g, inputs| saturn_ir::interp::run(g, inputs).map_err(|e| e.to_string()),
    );
    if filter.is_some() {
        report_filtered(&results);
        return;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations/interp.txt");
    let problems = check_expectations(&path, &results, false);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
