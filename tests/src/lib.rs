//! Shared machinery of Saturn's integration tests: finding the ONNX test
//! data, comparing tensors, and strict expectation lists.
//!
//! The suites (which cases exist) are data under `../shared/onnx-tests`; the
//! expectations (which of them pass on a backend) are data under
//! `expectations/`; the runners in `tests/` tie the two together.

pub mod conformance;

use std::path::PathBuf;

use saturn_ir::Tensor;
use saturn_ir::tensor::Data;

/// The ONNX test data folder: `$SATURN_ONNX_TESTS`, or `../shared/onnx-tests`
/// beside the repository.
pub fn onnx_tests_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SATURN_ONNX_TESTS") {
        return PathBuf::from(p);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = repo.join("../shared/onnx-tests");
    assert!(
        dir.is_dir(),
        "ONNX test data not found at {} (set SATURN_ONNX_TESTS to its folder)",
        dir.display()
    );
    dir
}

/// The suites under the test data folder, in a fixed order.
pub const SUITES: &[&str] = &[
    "node",
    "pytorch-converted",
    "pytorch-operator",
    "simple",
    "models",
    "transformers",
];

/// Relative tolerance of float comparisons (the ONNX backend runner's).
pub const RTOL: f64 = 1e-3;
/// Absolute tolerance of float comparisons.
pub const ATOL: f64 = 1e-7;

/// Checks that `actual` matches `expected`: same dtype and shape; floats
/// within `atol + rtol·|expected|` (NaN equal to NaN, infinities exact);
/// everything else exactly.
pub fn compare(expected: &Tensor, actual: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if expected.dtype() != actual.dtype() {
        return Err(format!(
            "dtype {} instead of {}",
            actual.dtype(),
            expected.dtype()
        ));
    }
    if expected.shape() != actual.shape() {
        return Err(format!(
            "shape {:?} instead of {:?}",
            actual.shape(),
            expected.shape()
        ));
    }
    match (expected.data(), actual.data()) {
        (Data::Str(e), Data::Str(a)) => {
            if let Some(i) = (0..e.len()).find(|&i| e[i] != a[i]) {
                return Err(format!("element {i}: {:?} instead of {:?}", a[i], e[i]));
            }
        }
        (Data::C64(e), Data::C64(a)) => {
            for i in 0..e.len() {
                for k in 0..2 {
                    close(e[i][k] as f64, a[i][k] as f64, rtol, atol)
                        .map_err(|m| format!("element {i}: {m}"))?;
                }
            }
        }
        (Data::C128(e), Data::C128(a)) => {
            for i in 0..e.len() {
                for k in 0..2 {
                    close(e[i][k], a[i][k], rtol, atol).map_err(|m| format!("element {i}: {m}"))?;
                }
            }
        }
        _ if expected.dtype().is_float() => {
            let mut worst: Option<(usize, f64, f64)> = None;
            let mut bad = 0usize;
            for i in 0..expected.numel() {
                let (e, a) = (expected.get_f64(i), actual.get_f64(i));
                if close(e, a, rtol, atol).is_err() {
                    bad += 1;
                    let d = (e - a).abs();
                    if worst.is_none_or(|w| d > (w.1 - w.2).abs() || d.is_nan()) {
                        worst = Some((i, e, a));
                    }
                }
            }
            if let Some((i, e, a)) = worst {
                return Err(format!(
                    "{bad} of {} elements differ; worst at {i}: {a} instead of {e}",
                    expected.numel()
                ));
            }
        }
        _ => {
            if expected.data() != actual.data() {
                let i = (0..expected.numel())
                    .find(|&i| expected.get_i64(i) != actual.get_i64(i))
                    .unwrap_or(0);
                return Err(format!(
                    "element {i}: {} instead of {}",
                    actual.get_i64(i),
                    expected.get_i64(i)
                ));
            }
        }
    }
    Ok(())
}

fn close(e: f64, a: f64, rtol: f64, atol: f64) -> Result<(), String> {
    if e.is_nan() && a.is_nan() {
        return Ok(());
    }
    if e.is_infinite() || a.is_infinite() {
        return if e == a {
            Ok(())
        } else {
            Err(format!("{a} instead of {e}"))
        };
    }
    if (e - a).abs() <= atol + rtol * e.abs() {
        Ok(())
    } else {
        Err(format!("{a} instead of {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_rules() {
        let e = Tensor::from_vec(vec![3], vec![1.0f32, f32::NAN, 100.0]);
        let ok = Tensor::from_vec(vec![3], vec![1.0005f32, f32::NAN, 100.09]);
        assert!(compare(&e, &ok, RTOL, ATOL).is_ok());
        let bad = Tensor::from_vec(vec![3], vec![1.0f32, 0.0, 100.0]);
        assert!(compare(&e, &bad, RTOL, ATOL).is_err());
        let shape = Tensor::from_vec(vec![1, 3], vec![1.0f32, f32::NAN, 100.0]);
        assert!(
            compare(&e, &shape, RTOL, ATOL)
                .unwrap_err()
                .contains("shape")
        );
        let ints = Tensor::from_vec(vec![2], vec![1i64, 2]);
        assert!(compare(&ints, &Tensor::from_vec(vec![2], vec![1i64, 3]), RTOL, ATOL).is_err());
    }
}
