//! Saturn's own ops (softmax with a mask, scale and algorithm; flat_gemm;
//! gemv) in the text format, through the verifier and the interpreter,
//! which checks every result against its inferred type.

use saturn_ir::text::{parse, print};
use saturn_ir::verify::verify;
use saturn_ir::{Tensor, interp};

const SRC: &str = "graph @g(%q: f32[2,1,8], %w: f32[8,5], %b: f32[5], %s: f32[2,4], %m: f32[4]) {
  %y: f32[2,1,5] = flat_gemm(%q, %w, %b) {m_pad = 4, n_tile = 2, k_split = 3, double_buffer = true}
  %v: f32[2,1,5] = gemv(%q, %w, %b)
  %p: f32[2,4] = softmax(%s, %m) {scale = 0.5, algorithm = two_pass}
  %o: f32[2,4] = softmax(%s) {algorithm = online}
  return %y, %v, %p, %o
}
";

#[test]
fn round_trip_and_run() {
    let g = parse(SRC).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(print(&g), SRC);
    verify(&g).unwrap();
    let q: Vec<f32> = (0..16).map(|i| i as f32 / 4.0 - 2.0).collect();
    let w: Vec<f32> = (0..40).map(|i| (i % 7) as f32 - 3.0).collect();
    let inputs = vec![
        Tensor::from_vec(vec![2, 1, 8], q),
        Tensor::from_vec(vec![8, 5], w),
        Tensor::from_vec(vec![5], vec![1f32, 0., -1., 0.5, 2.]),
        Tensor::from_vec(vec![2, 4], vec![2f32, 0., 2., 0., 1., 1., 1., 1.]),
        Tensor::from_vec(
            vec![4],
            vec![0f32, 0., f32::NEG_INFINITY, f32::NEG_INFINITY],
        ),
    ];
    let out = interp::run(&g, inputs).unwrap();
    // Small integers and quarters: both products are exact, and equal.
    assert_eq!(out[0], out[1]);
    assert_eq!(out[0].shape(), &[2, 1, 5]);
    // Row 0: 0.5·[2, 0] → weights e : 1; row 1: uniform over two.
    let e = 1f64.exp();
    let p = out[2].to_f64_vec();
    let want = [e / (e + 1.0), 1.0 / (e + 1.0), 0.0, 0.0, 0.5, 0.5, 0.0, 0.0];
    for (p, w) in p.iter().zip(want) {
        assert!((p - w).abs() < 1e-7, "{p} vs {w}");
    }
    let o = out[3].to_f64_vec();
    assert!((o[0] - e * e / (2.0 * e * e + 2.0)).abs() < 1e-7 && o[4] == 0.25);
}
