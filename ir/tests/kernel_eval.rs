//! The Kernel IR evaluator on kernels written as text: results, and the
//! errors that name the kernel and the buffer when a kernel goes wrong.
//! (Its agreement with generated code is checked by the Cranelift tests,
//! which run every kernel through both.)

use saturn_ir::kernel::eval::eval_kernel;
use saturn_ir::kernel::text::parse_kernel;

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn run(src: &str, bufs: &mut [Vec<u8>], dims: &[i64]) -> Result<(), String> {
    let k = parse_kernel(src).unwrap_or_else(|e| panic!("{e}"));
    let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
    eval_kernel(&k, &mut refs, dims).map_err(|e| e.to_string())
}

#[test]
fn masked_vector_loop_with_a_tail() {
    let src = "kernel @scale(in %x: f32[6], out %y: f32[6]) {
  for %i = 0 to 4 step 4 {
    store %y[%i] x4 = load %x[%i] x4 * 2.0: f32x4
  }
  store %y[4] x4 mask 2 = load %x[4] x4 mask 2 * 2.0: f32x4
}
";
    let mut bufs = vec![f32s(&[1., 2., 3., 4., 5., 6.]), f32s(&[0.; 6])];
    if let Err(e) = run(src, &mut bufs, &[]) {
        panic!("{e}");
    }
    assert_eq!(bufs[1], f32s(&[2., 4., 6., 8., 10., 12.]));
}

#[test]
fn out_of_bounds_access_names_the_buffer() {
    let src = "kernel @oob(in %x: f32[4], out %y: f32[4]) {
  for %i = 0 to 5 {
    store %y[%i] = load %x[%i]
  }
}
";
    let mut bufs = vec![f32s(&[0.; 4]), f32s(&[0.; 4])];
    let e = run(src, &mut bufs, &[]).unwrap_err();
    assert!(
        e.contains("`oob`") && e.contains("index 4 out of bounds of `x`"),
        "{e}"
    );
}

#[test]
fn short_buffers_and_missing_extents_are_errors() {
    let src = "kernel @k(in %x: f32[%n], out %y: f32[%n]) dims(%n) {
  store %y[0] = load %x[0]
}
";
    let e = run(src, &mut [f32s(&[0.; 2]), f32s(&[0.; 2])], &[]).unwrap_err();
    assert!(e.contains("extent 0 was not given"), "{e}");
    let e = run(src, &mut [f32s(&[0.; 2]), f32s(&[0.; 1])], &[2]).unwrap_err();
    assert!(e.contains("buffer `y` needs 8 bytes"), "{e}");
}
