//! The ONNX conformance suites on the reference interpreter, against
//! `expectations/interp.txt` (regenerated with `SATURN_BLESS=1`).
//!
//! `SATURN_CASES=pattern` runs only the cases whose id contains the pattern
//! and prints each result without checking the list (for working on ops).

#[test]
fn interp_conformance() {
    saturn_tests::conformance::check_suites("interp.txt", &|g| Ok(g), true);
}
