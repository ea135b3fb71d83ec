//! The ONNX conformance suites on the reference interpreter, against
//! `expectations/interp.txt`.

use saturn_tests::conformance::{all_cases, check_expectations, run_all};

#[test]
fn interp_conformance() {
    let cases = all_cases();
    assert!(
        cases.len() > 2000,
        "expected the full ONNX test data, found {} cases",
        cases.len()
    );
    let results = run_all(&cases, &|g| Ok(g), &|g, inputs| {
        saturn_ir::interp::run(g, inputs).map_err(|e| e.to_string())
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("expectations/interp.txt");
    let problems = check_expectations(&path, &results);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
