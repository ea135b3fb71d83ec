//! The GEMM family against the interpreter: the packed, cache-blocked
//! kernel, flat GEMM and GEMV (with K split and double-buffered B), the
//! small-problem kernels, batched and transposed operands, bias and a fused
//! epilogue. Shapes have remainders below the register block in M and N.

mod common;

use common::{Rng, check, single};
use saturn_ir::builder::GraphBuilder;
use saturn_ir::ops::{Add, FlatGemm, Gemm, Gemv, MatMul, Relu};
use saturn_ir::{AttrValue, DType, Tensor, TensorType};
use saturn_passes::lower::Lowered;

fn f32s(shape: &[usize]) -> TensorType {
    TensorType::known(DType::F32, shape)
}

fn schedule(l: &Lowered, key: &str) -> Option<AttrValue> {
    l.kernels.iter().find_map(|k| k.schedule.get(key).cloned())
}

fn matmul(a: &[usize], b: &[usize], seed: u64) -> Lowered {
    let g = single(MatMul {}, &[f32s(a), f32s(b)], &[]);
    let mut r = Rng(seed);
    check(
        &g,
        vec![r.tensor(DType::F32, a, 1.0), r.tensor(DType::F32, b, 1.0)],
    )
}

#[test]
fn packed_gemm_with_remainders() {
    for (m, n, k) in [(70, 50, 80), (64, 48, 64), (33, 13, 330), (19, 97, 300)] {
        let l = matmul(&[m, k], &[k, n], (m * n + k) as u64);
        assert_eq!(
            schedule(&l, "gemm"),
            Some(AttrValue::Str("packed".into())),
            "{m}x{n}x{k}"
        );
    }
}

#[test]
fn batched_packed_gemm_broadcasts_b() {
    let l = matmul(&[3, 40, 70], &[70, 30], 7);
    assert_eq!(schedule(&l, "gemm"), Some(AttrValue::Str("packed".into())));
    matmul(&[2, 40, 70], &[2, 70, 30], 8);
    matmul(&[2, 1, 40, 70], &[3, 70, 30], 9);
}

#[test]
fn flat_gemm_for_small_m() {
    for m in [1, 2, 4, 5, 8, 16] {
        for (n, k) in [(70, 33), (3 * 32 + 5, 64), (4, 7)] {
            let l = matmul(&[m, k], &[k, n], (m * 100 + n) as u64);
            let want = if m == 1 { "gemv" } else { "flat" };
            assert_eq!(
                schedule(&l, "gemm"),
                Some(AttrValue::Str(want.into())),
                "{m}x{n}x{k}"
            );
        }
    }
}

#[test]
fn flat_gemm_schedules_from_the_optimizer() {
    let mut r = Rng(3);
    for (m, n, k) in [(4, 70, 300), (3, 37, 129), (8, 64, 64), (1, 9, 1000)] {
        for k_split in [1, 3, 4] {
            for double_buffer in [false, true] {
                for (m_pad, n_tile) in [(8, 64), (2, 16), (4, 8)] {
                    let op = FlatGemm {
                        m_pad,
                        n_tile,
                        k_split,
                        double_buffer,
                    };
                    let g = single(op, &[f32s(&[m, k]), f32s(&[k, n])], &[]);
                    let l = check(
                        &g,
                        vec![
                            r.tensor(DType::F32, &[m, k], 1.0),
                            r.tensor(DType::F32, &[k, n], 1.0),
                        ],
                    );
                    assert_eq!(
                        schedule(&l, "k_split"),
                        Some(AttrValue::Int(k_split.min(k as i64)))
                    );
                }
            }
        }
    }
}

#[test]
fn gemv_with_bias() {
    let mut r = Rng(5);
    let g = single(
        Gemv {},
        &[f32s(&[1, 300]), f32s(&[300, 45]), f32s(&[45])],
        &[],
    );
    let l = check(
        &g,
        vec![
            r.tensor(DType::F32, &[1, 300], 1.0),
            r.tensor(DType::F32, &[300, 45], 1.0),
            r.tensor(DType::F32, &[45], 1.0),
        ],
    );
    assert_eq!(schedule(&l, "gemm"), Some(AttrValue::Str("gemv".into())));
}

#[test]
fn gemm_transposes_scales_and_bias() {
    let mut r = Rng(11);
    for (m, n, k) in [(40, 36, 50), (3, 20, 9), (17, 5, 6)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for bias in [vec![n], vec![m, 1], vec![m, n]] {
                let op = Gemm {
                    alpha: 0.5,
                    beta: 2.0,
                    transA: ta,
                    transB: tb,
                };
                let sa = if ta { [k, m] } else { [m, k] };
                let sb = if tb { [n, k] } else { [k, n] };
                let g = single(op, &[f32s(&sa), f32s(&sb), f32s(&bias)], &[]);
                check(
                    &g,
                    vec![
                        r.tensor(DType::F32, &sa, 1.0),
                        r.tensor(DType::F32, &sb, 1.0),
                        r.tensor(DType::F32, &bias, 1.0),
                    ],
                );
            }
        }
    }
}

#[test]
fn f64_and_integer_products() {
    let mut r = Rng(13);
    for d in [DType::F64, DType::I32, DType::I64] {
        let t = |s: &[usize]| TensorType::known(d, s);
        let g = single(MatMul {}, &[t(&[5, 7]), t(&[7, 3])], &[]);
        check(
            &g,
            vec![r.tensor(d, &[5, 7], 4.0), r.tensor(d, &[7, 3], 4.0)],
        );
    }
}

/// `relu(x·w + b)`: the bias and the activation are the GEMM's epilogue,
/// on every kernel (packed, flat, small).
#[test]
fn bias_and_relu_fuse_into_the_gemm() {
    let mut r = Rng(17);
    for (m, n, k) in [(64, 40, 70), (4, 70, 33), (1, 45, 20), (3, 3, 3)] {
        let mut b = GraphBuilder::new("mlp");
        let x = b.input("x", f32s(&[m, k])).unwrap();
        let w = b.constant("w", r.tensor(DType::F32, &[k, n], 1.0)).unwrap();
        let bias = b.constant("b", r.tensor(DType::F32, &[n], 1.0)).unwrap();
        let h = b.op(MatMul {}, &[x, w]).unwrap();
        let h = b.op(Add {}, &[h, bias]).unwrap();
        let y = b.op(Relu {}, &[h]).unwrap();
        let g = b.finish(vec![y]);
        let l = check(&g, vec![r.tensor(DType::F32, &[m, k], 1.0)]);
        assert_eq!(l.kernels.len(), 1, "{m}x{n}x{k}: one fused kernel");
    }
}

#[test]
fn empty_products_store_nothing_or_zeros() {
    let mut r = Rng(19);
    let g = single(MatMul {}, &[f32s(&[4, 0]), f32s(&[0, 5])], &[]);
    check(
        &g,
        vec![
            Tensor::from_vec(vec![4, 0], Vec::<f32>::new()),
            Tensor::from_vec(vec![0, 5], Vec::<f32>::new()),
        ],
    );
    let g = single(MatMul {}, &[f32s(&[0, 3]), f32s(&[3, 5])], &[]);
    check(
        &g,
        vec![
            Tensor::from_vec(vec![0, 3], Vec::<f32>::new()),
            r.tensor(DType::F32, &[3, 5], 1.0),
        ],
    );
}

/// Constant weights (B) are packed at compile time into a constant
/// buffer of the kernel, plain and transposed, with remainders; the
/// kernel no longer reads the original weights.
#[test]
fn constant_weights_are_packed_at_compile_time() {
    let mut r = Rng(21);
    for (m, n, k) in [(70, 50, 80), (33, 13, 330), (40, 36, 100)] {
        for tb in [false, true] {
            let op = Gemm {
                alpha: 1.0,
                beta: 1.0,
                transA: false,
                transB: tb,
            };
            let sb = if tb { [n, k] } else { [k, n] };
            let w = r.tensor(DType::F32, &sb, 1.0);
            let g = single(op, &[f32s(&[m, k])], &[(1, w)]);
            let l = check(&g, vec![r.tensor(DType::F32, &[m, k], 1.0)]);
            let k0 = &l.kernels[0];
            assert_eq!(schedule(&l, "gemm"), Some(AttrValue::Str("packed".into())));
            assert!(
                k0.bufs
                    .iter()
                    .any(|b| b.name == "packed_b" && b.kind == saturn_ir::kernel::BufKind::Input)
            );
            // x, the packed weights, the output and A's scratch.
            assert_eq!(k0.bufs.len(), 4, "{:?}", k0.bufs);
        }
    }
}

/// Flat GEMM and GEMV over constant weights stream B from compile-time
/// panels: M from 1 to 16, N with a partial last panel, plain and
/// transposed weights, a bias and a fused epilogue.
#[test]
fn flat_gemm_over_constant_weights_uses_panels() {
    let mut r = Rng(61);
    for (m, n, k) in [
        (1, 100, 70),
        (3, 64, 33),
        (8, 150, 40),
        (16, 20, 9),
        (1, 7, 300),
    ] {
        for tb in [false, true] {
            let sb = if tb { [n, k] } else { [k, n] };
            let w = r.tensor(DType::F32, &sb, 1.0);
            let bias = r.tensor(DType::F32, &[n], 1.0);
            let mut b = GraphBuilder::new("g");
            let x = b.input("x", f32s(&[m, k])).unwrap();
            let wv = b.constant("w", w).unwrap();
            let bv = b.constant("bias", bias).unwrap();
            let op = Gemm {
                alpha: 1.5,
                beta: 1.0,
                transA: false,
                transB: tb,
            };
            let y = b.op(op, &[x, wv, bv]).unwrap();
            let y = b.op(Relu {}, &[y]).unwrap();
            let g = b.finish(vec![y]);
            let l = check(&g, vec![r.tensor(DType::F32, &[m, k], 1.0)]);
            let want = if m == 1 { "gemv_panels" } else { "flat_panels" };
            assert_eq!(
                schedule(&l, "gemm"),
                Some(AttrValue::Str(want.into())),
                "{m}x{n}x{k} transB {tb}"
            );
            // Several rows of A prefetch the panels ahead.
            assert_eq!(
                schedule(&l, "prefetch"),
                (m > 1).then_some(AttrValue::Int(4096)),
                "{m}x{n}x{k} transB {tb}"
            );
        }
    }
}
