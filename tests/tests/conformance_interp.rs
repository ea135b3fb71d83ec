//! The ONNX conformance suites on the reference interpreter, against
//! `expectations/interp.txt`.
//!
//! `SATURN_CASES=pattern` runs only the cases whose id contains the pattern
//! and prints each result without checking the list (for working on ops).

use saturn_tests::conformance::{all_cases, check_expectations, report_filtered, run_all};

#[test]
fn interp_conformance() {
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
    let results = run_all(&cases, &|g| Ok(g), &|g, inputs| {
        saturn_ir::interp::run(g, inputs).map_err(|e| e.to_string())
    });
    if filter.is_some() {
        report_filtered(&results);
        return;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations/interp.txt");
    let problems = check_expectations(&path, &results, true);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
