//! Property tests of lowering: random shapes (small dims, so that vector
//! remainders below the vector width and size-1 dims come up often) for
//! every kernel family, each lowered without fallback, run through the
//! Kernel IR evaluator and compared with the interpreter.

mod common;

use common::{Rng, check, single};
use proptest::prelude::*;
use saturn_ir::builder::GraphBuilder;
use saturn_ir::ops::*;
use saturn_ir::{DType, Tensor, TensorType};

fn f32s(shape: &[usize]) -> TensorType {
    TensorType::known(DType::F32, shape)
}

fn dims(rank: std::ops::RangeInclusive<usize>, max: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max, rank)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// `tanh(a * b + c)` with each operand broadcast along some dims.
    #[test]
    fn fused_broadcasting_chain(shape in dims(1..=4, 9), mask_b in 0u8..16, mask_c in 0u8..16, seed in 0u64..1000) {
        let bcast = |m: u8| shape.iter().enumerate().map(|(i, &d)| if m >> i & 1 == 1 { 1 } else { d }).collect::<Vec<_>>();
        let (sb, sc) = (bcast(mask_b), bcast(mask_c));
        let mut b = GraphBuilder::new("chain");
        let x = b.input("a", f32s(&shape)).unwrap();
        let y = b.input("b", f32s(&sb)).unwrap();
        let z = b.input("c", f32s(&sc)).unwrap();
        let m = b.op(Mul {}, &[x, y]).unwrap();
        let s = b.op(Add {}, &[m, z]).unwrap();
        let t = b.op(Tanh {}, &[s]).unwrap();
        let g = b.finish(vec![t]);
        let mut r = Rng(seed);
        check(&g, vec![r.tensor(DType::F32, &shape, 2.0), r.tensor(DType::F32, &sb, 2.0), r.tensor(DType::F32, &sc, 2.0)]);
    }

    /// Matrix products of every size class (small, flat, packed), batched.
    #[test]
    fn matmul_shapes(m in 1usize..40, n in 1usize..40, k in 1usize..70, batch in 1usize..3, seed in 0u64..1000) {
        let (sa, sb) = (vec![batch, m, k], vec![k, n]);
        let g = single(MatMul {}, &[f32s(&sa), f32s(&sb)], &[]);
        let mut r = Rng(seed);
        check(&g, vec![r.tensor(DType::F32, &sa, 1.0), r.tensor(DType::F32, &sb, 1.0)]);
    }

    /// Softmax in all three algorithms along any axis, with inputs up to
    /// 1e4 in magnitude (a naive exp overflows).
    #[test]
    fn softmax_algorithms(shape in dims(1..=3, 11), axis in 0usize..3, alg in 0usize..3, big in any::<bool>(), seed in 0u64..1000) {
        let axis = (axis % shape.len()) as i64;
        let algorithm = [SoftmaxAlgorithm::ThreePass, SoftmaxAlgorithm::TwoPass, SoftmaxAlgorithm::Online][alg];
        let g = single(Softmax { axis, scale: 1.0, algorithm }, &[f32s(&shape)], &[]);
        let mut r = Rng(seed);
        check(&g, vec![r.tensor(DType::F32, &shape, if big { 1e4 } else { 3.0 })]);
    }

    /// Sums and maxima over random axis sets, with and without keepdims.
    #[test]
    fn reductions(shape in dims(1..=4, 7), axes_mask in 1u8..16, keepdims in any::<bool>(), max in any::<bool>(), seed in 0u64..1000) {
        let axes: Vec<i64> = (0..shape.len() as i64).filter(|i| axes_mask >> i & 1 == 1).collect();
        let axes = if axes.is_empty() { vec![0] } else { axes };
        let axes_t = Tensor::from_vec(vec![axes.len()], axes);
        let op: saturn_ir::Op = if max {
            ReduceMax { keepdims, noop_with_empty_axes: false }.into()
        } else {
            ReduceSum { keepdims, noop_with_empty_axes: false }.into()
        };
        let g = single(op, &[f32s(&shape)], &[(1, axes_t)]);
        let mut r = Rng(seed);
        check(&g, vec![r.tensor(DType::F32, &shape, 3.0)]);
    }

    /// 2-D convolutions: channels, groups, kernel sizes, strides, padding.
    #[test]
    fn conv2d(c in 1usize..5, m in 1usize..6, h in 3usize..10, w in 3usize..10, kh in 1usize..4, stride in 1i64..3, pad in 0i64..2, grouped in any::<bool>(), seed in 0u64..1000) {
        let group = if grouped && c == m { c } else { 1 };
        let kw = kh;
        let x = vec![1, c, h, w];
        let wt = vec![m, c / group, kh, kw];
        let op = Conv {
            auto_pad: AutoPad::NotSet,
            dilations: None,
            group: group as i64,
            kernel_shape: None,
            pads: Some(vec![pad; 4]),
            strides: Some(vec![stride; 2]),
        };
        let g = single(op, &[f32s(&x), f32s(&wt), f32s(&[m])], &[]);
        let mut r = Rng(seed);
        check(&g, vec![r.tensor(DType::F32, &x, 1.0), r.tensor(DType::F32, &wt, 1.0), r.tensor(DType::F32, &[m], 1.0)]);
    }

    /// Transposes of any permutation.
    #[test]
    fn transposes(shape in dims(2..=4, 6), rot in 0usize..24, seed in 0u64..1000) {
        let mut perm: Vec<i64> = (0..shape.len() as i64).collect();
        // A permutation from the rotation index.
        let mut k = rot;
        for i in (1..perm.len()).rev() {
            perm.swap(i, k % (i + 1));
            k /= i + 1;
        }
        let g = single(Transpose { perm: Some(perm) }, &[f32s(&shape)], &[]);
        let mut r = Rng(seed);
        check(&g, vec![r.tensor(DType::F32, &shape, 3.0)]);
    }
}
