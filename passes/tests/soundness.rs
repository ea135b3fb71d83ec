//! Soundness of every rule: on random shapes and random inputs, the graph
//! a rule rewrote (extracted so that the rewritten form is used) computes
//! what the original computes, by the reference interpreter.
//!
//! Each case builds an instance of the rule's left-hand side, checks the
//! rule fired, and compares. Softmax cases include inputs of magnitude up
//! to 1e4 (where a naive exp overflows) and masks with −inf.

use proptest::prelude::*;
use saturn_ir::builder::GraphBuilder;
use saturn_ir::ops::*;
use saturn_ir::target::Target;
use saturn_ir::text::print;
use saturn_ir::{DType, Graph, Op, Tensor, TensorType, Value, interp};
use saturn_passes::eqsat::{Extract, Limits, optimize_extracting, rules};

/// Deterministic values for a test case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn tensor(&mut self, shape: &[usize], scale: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| ((self.next() * 2.0 - 1.0) * scale) as f32)
            .collect();
        Tensor::from_vec(shape.to_vec(), v)
    }

    /// Values in [lo, hi).
    fn positive(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| (lo + self.next() * (hi - lo)) as f32)
            .collect();
        Tensor::from_vec(shape.to_vec(), v)
    }
}

fn f32_input(b: &mut GraphBuilder, name: &str, shape: &[usize]) -> Value {
    b.input(name, TensorType::known(DType::F32, shape)).unwrap()
}

fn close(a: f64, e: f64) -> bool {
    (a.is_nan() && e.is_nan()) || a == e || (a - e).abs() <= 1e-5 + 2e-4 * e.abs()
}

/// Rewrites `g` with `rule` alone, extracts the rewritten form and checks
/// it computes the same outputs on `inputs`.
fn check(g: Graph, rule: &str, inputs: Vec<Tensor>) {
    saturn_ir::verify::verify(&g).unwrap();
    let expect = interp::run(&g, inputs.clone()).unwrap();
    let r = rules::by_name(rule).unwrap_or_else(|| panic!("no rule {rule}"));
    let target = Target::named("x86-64-avx512").unwrap();
    let (out, report) =
        optimize_extracting(&g, &target, &[r], &Limits::default(), Extract::Rewritten).unwrap();
    assert!(
        report.fired[rule] > 0,
        "{rule} did not fire on\n{}",
        print(&g)
    );
    assert_eq!(
        report.type_conflicts, 0,
        "{rule} merged values of different types"
    );
    let got = interp::run(&out, inputs).unwrap_or_else(|e| panic!("{e}\n{}", print(&out)));
    for (i, (e, a)) in expect.iter().zip(&got).enumerate() {
        assert_eq!(e.shape(), a.shape(), "output {i}");
        assert_eq!(e.dtype(), a.dtype(), "output {i}");
        for k in 0..e.numel() {
            let (x, y) = (a.get_f64(k), e.get_f64(k));
            assert!(
                close(x, y),
                "{rule}: output {i}[{k}] is {x}, expected {y}\nbefore:\n{}\nafter:\n{}",
                print(&g),
                print(&out)
            );
        }
    }
}

fn shape(rank: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<usize>> {
    rank.prop_flat_map(|r| prop::collection::vec(1usize..5, r))
}

fn perm(rank: usize) -> impl Strategy<Value = Vec<i64>> {
    Just((0..rank as i64).collect::<Vec<_>>()).prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn transpose_of_transpose((s, p1, p2) in shape(2..=4).prop_flat_map(|s| { let r = s.len(); (Just(s), perm(r), perm(r)) }), seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let t1 = b.op(Transpose { perm: Some(p1) }, &[x]).unwrap();
        let t2 = b.op(Transpose { perm: Some(p2) }, &[t1]).unwrap();
        let g = b.finish(vec![t2]);
        check(g, "transpose-of-transpose", vec![Rng(seed | 1).tensor(&s, 3.0)]);
    }

    #[test]
    fn view_of_view(s in shape(2..=4), seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let f = b.op(Flatten { axis: 1 }, &[x]).unwrap();
        let axes = b.fresh_constant("axes", Tensor::from_vec(vec![1], vec![0i64])).unwrap();
        let u = b.op(Unsqueeze {}, &[f, axes]).unwrap();
        let g = b.finish(vec![u]);
        check(g, "view-of-view", vec![Rng(seed | 1).tensor(&s, 3.0)]);
    }

    #[test]
    fn no_op_removal(s in shape(1..=4), which in 0..3usize, seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let y = match which {
            0 => {
                let target: Vec<i64> = s.iter().map(|&d| d as i64).collect();
                let c = b.fresh_constant("shape", Tensor::from_vec(vec![s.len()], target)).unwrap();
                b.op(Reshape { allowzero: false }, &[x, c]).unwrap()
            }
            1 => b.op(Cast { to: DType::F32, saturate: true, round_mode: RoundMode::Up }, &[x]).unwrap(),
            _ => b.op(Identity {}, &[x]).unwrap(),
        };
        let z = b.op(Neg {}, &[y]).unwrap();
        let g = b.finish(vec![z]);
        check(g, "no-op-removal", vec![Rng(seed | 1).tensor(&s, 3.0)]);
    }

    #[test]
    fn neutral_element(s in shape(1..=3), which in 0..4usize, seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let last = *s.last().unwrap();
        let (op, k): (Op, f32) = match which {
            0 => (Add {}.into(), 0.0),
            1 => (Sub {}.into(), 0.0),
            2 => (Mul {}.into(), 1.0),
            _ => (Div {}.into(), 1.0),
        };
        let c = b.fresh_constant("k", Tensor::from_vec(vec![last], vec![k; last])).unwrap();
        let y = b.op(op, &[x, c]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "neutral-element", vec![Rng(seed | 1).tensor(&s, 3.0)]);
    }

    #[test]
    fn constant_chain(s in shape(1..=3), mul in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let last = *s.last().unwrap();
        let c1 = b.fresh_constant("c1", rng.tensor(&[last], 2.0)).unwrap();
        let c2 = b.fresh_constant("c2", rng.tensor(&[1], 2.0)).unwrap();
        let op = |m: bool| -> Op { if m { Mul {}.into() } else { Add {}.into() } };
        let y = b.op(op(mul), &[x, c1]).unwrap();
        let z = b.op(op(mul), &[c2, y]).unwrap();
        let g = b.finish(vec![z]);
        check(g, "constant-chain", vec![rng.tensor(&s, 3.0)]);
    }

    #[test]
    fn broadcast_of_expand(m in 1usize..4, n in 1usize..5, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &[1, n]);
        let y = f32_input(&mut b, "y", &[m, n]);
        let shape = b.fresh_constant("shape", Tensor::from_vec(vec![2], vec![m as i64, n as i64])).unwrap();
        let e = b.op(Expand {}, &[x, shape]).unwrap();
        let z = b.op(Add {}, &[e, y]).unwrap();
        let g = b.finish(vec![z]);
        check(g, "broadcast-of-expand", vec![rng.tensor(&[1, n], 1.0), rng.tensor(&[m, n], 1.0)]);
    }

    #[test]
    fn dropout_at_inference(s in shape(1..=3), seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let d = b.node("", Dropout { seed: None }.into(), vec![Some(x)], vec![("d".into(), None)]).unwrap()[0];
        let y = b.op(Relu {}, &[d]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "dropout-at-inference", vec![Rng(seed | 1).tensor(&s, 3.0)]);
    }

    #[test]
    fn matmul_transposed_b_to_gemm(m in 1usize..5, k in 1usize..6, n in 1usize..5, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let a = f32_input(&mut b, "a", &[m, k]);
        let w = f32_input(&mut b, "w", &[n, k]);
        let wt = b.op(Transpose { perm: Some(vec![1, 0]) }, &[w]).unwrap();
        let y = b.op(MatMul {}, &[a, wt]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "matmul-transposed-b-to-gemm", vec![rng.tensor(&[m, k], 1.0), rng.tensor(&[n, k], 1.0)]);
    }

    #[test]
    fn gemm_constant_transposed_b(m in 1usize..5, k in 1usize..6, n in 1usize..5, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let a = f32_input(&mut b, "a", &[m, k]);
        let w = b.fresh_constant("w", rng.tensor(&[n, k], 1.0)).unwrap();
        let c = b.fresh_constant("c", rng.tensor(&[n], 1.0)).unwrap();
        let y = b.op(Gemm { alpha: 0.5, beta: 2.0, transA: false, transB: true }, &[a, w, c]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "gemm-constant-transposed-b", vec![rng.tensor(&[m, k], 1.0)]);
    }

    #[test]
    fn gemm_to_matmul(m in 1usize..5, k in 1usize..6, n in 1usize..5, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let a = f32_input(&mut b, "a", &[m, k]);
        let w = f32_input(&mut b, "w", &[k, n]);
        let y = b.op(Gemm { alpha: 1.0, beta: 1.0, transA: false, transB: false }, &[a, w]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "gemm-to-matmul", vec![rng.tensor(&[m, k], 1.0), rng.tensor(&[k, n], 1.0)]);
    }

    #[test]
    fn batchnorm_into_conv(c_in in 1usize..4, c_out in 1usize..5, hw in 3usize..7, bias in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &[1, c_in, hw, hw]);
        let w = b.fresh_constant("w", rng.tensor(&[c_out, c_in, 3, 3], 1.0)).unwrap();
        let mut inputs = vec![x, w];
        if bias {
            inputs.push(b.fresh_constant("b", rng.tensor(&[c_out], 1.0)).unwrap());
        }
        let conv = Conv { auto_pad: AutoPad::NotSet, dilations: None, group: 1, kernel_shape: None, pads: Some(vec![1, 1, 1, 1]), strides: None };
        let y = b.op(conv, &inputs).unwrap();
        let params: Vec<Value> = [(-1.0, 1.0), (-1.0, 1.0), (-1.0, 1.0), (0.1, 2.0)]
            .iter()
            .map(|&(lo, hi)| { let t = rng.positive(&[c_out], lo, hi); b.fresh_constant("p", t).unwrap() })
            .collect();
        let bn = BatchNormalization { epsilon: 1e-5, momentum: 0.9, training_mode: false };
        let z = b.node("", bn.into(), vec![Some(y), Some(params[0]), Some(params[1]), Some(params[2]), Some(params[3])], vec![("z".into(), None)]).unwrap()[0];
        let g = b.finish(vec![z]);
        check(g, "batchnorm-into-conv", vec![rng.tensor(&[1, c_in, hw, hw], 1.0)]);
    }

    #[test]
    fn batchnorm_into_gemm(m in 1usize..4, k in 1usize..5, n in 1usize..5, trans_b in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &[m, k]);
        let w_shape = if trans_b { [n, k] } else { [k, n] };
        let w = b.fresh_constant("w", rng.tensor(&w_shape, 1.0)).unwrap();
        let c = b.fresh_constant("c", rng.tensor(&[n], 1.0)).unwrap();
        let y = b.op(Gemm { alpha: 1.5, beta: 0.5, transA: false, transB: trans_b }, &[x, w, c]).unwrap();
        let params: Vec<Value> = [(-1.0, 1.0), (-1.0, 1.0), (-1.0, 1.0), (0.1, 2.0)]
            .iter()
            .map(|&(lo, hi)| { let t = rng.positive(&[n], lo, hi); b.fresh_constant("p", t).unwrap() })
            .collect();
        let bn = BatchNormalization { epsilon: 1e-3, momentum: 0.9, training_mode: false };
        let z = b.node("", bn.into(), vec![Some(y), Some(params[0]), Some(params[1]), Some(params[2]), Some(params[3])], vec![("z".into(), None)]).unwrap()[0];
        let g = b.finish(vec![z]);
        check(g, "batchnorm-into-gemm", vec![rng.tensor(&[m, k], 1.0)]);
    }

    #[test]
    fn channel_affine_into_conv(c_out in 1usize..5, mul in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &[2, 2, 5, 5]);
        let w = b.fresh_constant("w", rng.tensor(&[c_out, 2, 3, 3], 1.0)).unwrap();
        let conv = Conv { auto_pad: AutoPad::NotSet, dilations: None, group: 1, kernel_shape: None, pads: None, strides: None };
        let y = b.op(conv, &[x, w]).unwrap();
        let k = b.fresh_constant("k", rng.tensor(&[c_out, 1, 1], 2.0)).unwrap();
        let op: Op = if mul { Mul {}.into() } else { Add {}.into() };
        let z = b.op(op, &[y, k]).unwrap();
        let g = b.finish(vec![z]);
        check(g, "channel-affine-into-conv", vec![rng.tensor(&[2, 2, 5, 5], 1.0)]);
    }
}

/// Softmax written out as ONNX function bodies and exporters do.
fn written_softmax(b: &mut GraphBuilder, x: Value, axis: i64, keepdims: bool, log: bool) -> Value {
    let axes = b
        .fresh_constant("axes", Tensor::from_vec(vec![1], vec![axis]))
        .unwrap();
    let reduce = |keepdims| ReduceMax {
        keepdims,
        noop_with_empty_axes: false,
    };
    let mut m = b.op(reduce(keepdims), &[x, axes]).unwrap();
    if !keepdims {
        m = b.op(Unsqueeze {}, &[m, axes]).unwrap();
    }
    let d = b.op(Sub {}, &[x, m]).unwrap();
    let e = b.op(Exp {}, &[d]).unwrap();
    let s = b
        .op(
            ReduceSum {
                keepdims: true,
                noop_with_empty_axes: false,
            },
            &[e, axes],
        )
        .unwrap();
    if log {
        let l = b.op(Log {}, &[s]).unwrap();
        b.op(Sub {}, &[d, l]).unwrap()
    } else {
        b.op(Div {}, &[e, s]).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn softmax_from_exp_over_sum((s, axis) in shape(1..=4).prop_flat_map(|s| { let r = s.len() as i64; (Just(s), -r..r) }), keepdims in any::<bool>(), big in any::<bool>(), seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let y = written_softmax(&mut b, x, axis, keepdims, false);
        let g = b.finish(vec![y]);
        check(g, "softmax-from-exp-over-sum", vec![Rng(seed | 1).tensor(&s, if big { 1e4 } else { 3.0 })]);
    }

    #[test]
    fn log_softmax_from_sub_log_sum((s, axis) in shape(1..=4).prop_flat_map(|s| { let r = s.len() as i64; (Just(s), -r..r) }), big in any::<bool>(), seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let y = written_softmax(&mut b, x, axis, true, true);
        let g = b.finish(vec![y]);
        check(g, "log-softmax-from-sub-log-sum", vec![Rng(seed | 1).tensor(&s, if big { 1e4 } else { 3.0 })]);
    }

    #[test]
    fn softmax_fold_scale(s in shape(1..=3), div in any::<bool>(), scale in 0.05f32..4.0, seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let k = b.fresh_constant("k", Tensor::scalar(scale)).unwrap();
        let y = b.op(if div { Op::from(Div {}) } else { Op::from(Mul {}) }, &[x, k]).unwrap();
        let z = b.op(Softmax { axis: -1, scale: 1.0, algorithm: SoftmaxAlgorithm::ThreePass }, &[y]).unwrap();
        let g = b.finish(vec![z]);
        check(g, "softmax-fold-scale", vec![Rng(seed | 1).tensor(&s, 1e3)]);
    }

    #[test]
    fn softmax_fold_mask(rows in 1usize..4, n in 1usize..6, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &[rows, n]);
        let m = f32_input(&mut b, "m", &[1, n]);
        let y = b.op(Add {}, &[x, m]).unwrap();
        let z = b.op(Softmax { axis: -1, scale: 1.0, algorithm: SoftmaxAlgorithm::ThreePass }, &[y]).unwrap();
        let g = b.finish(vec![z]);
        // A mask that hides some (not all) positions with −inf.
        let mut mask = rng.tensor(&[1, n], 1.0).to_f64_vec();
        for (i, v) in mask.iter_mut().enumerate() {
            if i % 2 == 1 { *v = f64::NEG_INFINITY; }
        }
        let mask = Tensor::from_vec(vec![1, n], mask.into_iter().map(|v| v as f32).collect());
        check(g, "softmax-fold-mask", vec![rng.tensor(&[rows, n], 1e4), mask]);
    }

    #[test]
    fn softmax_algorithms(s in shape(1..=3), to in 0..3usize, masked in any::<bool>(), big in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let last = *s.last().unwrap();
        let mut inputs = vec![x];
        let mut data = vec![rng.tensor(&s, if big { 1e4 } else { 3.0 })];
        if masked {
            inputs.push(f32_input(&mut b, "m", &[last]));
            let mask: Vec<f32> = (0..last).map(|i| if i % 3 == 2 { f32::NEG_INFINITY } else { 0.5 }).collect();
            data.push(Tensor::from_vec(vec![last], mask));
        }
        let (from, rule) = match to {
            0 => (SoftmaxAlgorithm::ThreePass, "softmax-three-pass-to-two-pass"),
            1 => (SoftmaxAlgorithm::ThreePass, "softmax-three-pass-to-online"),
            _ => (SoftmaxAlgorithm::TwoPass, "softmax-two-pass-to-three-pass"),
        };
        let y = b.op(Softmax { axis: -1, scale: 0.7, algorithm: from }, &inputs).unwrap();
        let g = b.finish(vec![y]);
        check(g, rule, data);
    }

    #[test]
    fn online_to_three_pass(s in shape(1..=3), seed in any::<u64>()) {
        let mut b = GraphBuilder::new("g");
        let x = f32_input(&mut b, "x", &s);
        let y = b.op(Softmax { axis: 0, scale: 1.0, algorithm: SoftmaxAlgorithm::Online }, &[x]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "softmax-online-to-three-pass", vec![Rng(seed | 1).tensor(&s, 1e4)]);
    }

    #[test]
    fn attention_from_softmax_of_scores(bsz in 1usize..3, h in 1usize..3, sq in 1usize..5, t in 1usize..5, d in 1usize..5, masked in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let q = f32_input(&mut b, "q", &[bsz, h, sq, d]);
        let kt = f32_input(&mut b, "kt", &[bsz, h, d, t]);
        let v = f32_input(&mut b, "v", &[bsz, h, t, d]);
        let mut data = vec![rng.tensor(&[bsz, h, sq, d], 2.0), rng.tensor(&[bsz, h, d, t], 2.0), rng.tensor(&[bsz, h, t, d], 2.0)];
        let scores = b.op(MatMul {}, &[q, kt]).unwrap();
        let mut sm_in = vec![scores];
        if masked {
            sm_in.push(f32_input(&mut b, "m", &[1, 1, sq, t]));
            let mask: Vec<f32> = (0..sq * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
            data.push(Tensor::from_vec(vec![1, 1, sq, t], mask));
        }
        let p = b.op(Softmax { axis: -1, scale: 0.5, algorithm: SoftmaxAlgorithm::ThreePass }, &sm_in).unwrap();
        let y = b.op(MatMul {}, &[p, v]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "attention-from-softmax-of-scores", data);
    }

    #[test]
    fn attention_absorbs_head_layout(bsz in 1usize..3, h in 1usize..4, sq in 1usize..5, d in 1usize..4, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let hd = h * d;
        let names = ["q", "k", "v"];
        let mut heads = Vec::new();
        let mut data = Vec::new();
        for n in names {
            let x = f32_input(&mut b, n, &[bsz, sq, hd]);
            data.push(rng.tensor(&[bsz, sq, hd], 2.0));
            let shape = b.fresh_constant("split", Tensor::from_vec(vec![4], vec![bsz as i64, sq as i64, h as i64, d as i64])).unwrap();
            let r = b.op(Reshape { allowzero: false }, &[x, shape]).unwrap();
            heads.push(b.op(Transpose { perm: Some(vec![0, 2, 1, 3]) }, &[r]).unwrap());
        }
        let att = Attention {
            is_causal: false, kv_num_heads: None, q_num_heads: None, qk_matmul_output_mode: 0,
            scale: Some(0.3), softcap: 0.0, softmax_precision: None, left_window_size: -1, right_window_size: -1,
        };
        let a = b.op(att, &heads).unwrap();
        let t = b.op(Transpose { perm: Some(vec![0, 2, 1, 3]) }, &[a]).unwrap();
        let shape = b.fresh_constant("merge", Tensor::from_vec(vec![3], vec![bsz as i64, sq as i64, hd as i64])).unwrap();
        let y = b.op(Reshape { allowzero: false }, &[t, shape]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "attention-absorbs-head-layout", data);
    }

    #[test]
    fn matmul_to_flat_gemm(m in 2usize..17, k in 1usize..40, n in 1usize..70, batch in 0usize..3, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let a_shape: Vec<usize> = if batch > 0 { vec![batch, m, k] } else { vec![m, k] };
        let a = f32_input(&mut b, "a", &a_shape);
        let w = b.fresh_constant("w", rng.tensor(&[k, n], 1.0)).unwrap();
        let y = b.op(MatMul {}, &[a, w]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "matmul-to-flat-gemm", vec![rng.tensor(&a_shape, 1.0)]);
    }

    #[test]
    fn gemm_to_flat_gemm_with_bias(m in 2usize..17, k in 1usize..40, n in 1usize..40, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let a = f32_input(&mut b, "a", &[m, k]);
        let w = f32_input(&mut b, "w", &[k, n]);
        let c = b.fresh_constant("c", rng.tensor(&[n], 1.0)).unwrap();
        let y = b.op(Gemm { alpha: 1.0, beta: 1.0, transA: false, transB: false }, &[a, w, c]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "matmul-to-flat-gemm", vec![rng.tensor(&[m, k], 1.0), rng.tensor(&[k, n], 1.0)]);
    }

    #[test]
    fn matmul_to_gemv(k in 1usize..64, n in 1usize..64, seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let mut b = GraphBuilder::new("g");
        let a = f32_input(&mut b, "a", &[1, k]);
        let w = f32_input(&mut b, "w", &[k, n]);
        let y = b.op(MatMul {}, &[a, w]).unwrap();
        let g = b.finish(vec![y]);
        check(g, "matmul-to-gemv", vec![rng.tensor(&[1, k], 1.0), rng.tensor(&[k, n], 1.0)]);
    }
}

#[test]
fn every_rule_has_a_soundness_case() {
    // The rule names exercised above; a new rule must be added here and
    // get a case.
    let covered = [
        "transpose-of-transpose",
        "view-of-view",
        "no-op-removal",
        "neutral-element",
        "dropout-at-inference",
        "matmul-transposed-b-to-gemm",
        "gemm-constant-transposed-b",
        "gemm-to-matmul",
        "broadcast-of-expand",
        "constant-chain",
        "batchnorm-into-conv",
        "batchnorm-into-gemm",
        "channel-affine-into-conv",
        "softmax-from-exp-over-sum",
        "log-softmax-from-sub-log-sum",
        "softmax-fold-scale",
        "softmax-fold-mask",
        "attention-from-softmax-of-scores",
        "attention-absorbs-head-layout",
        "softmax-three-pass-to-two-pass",
        "softmax-three-pass-to-online",
        "softmax-two-pass-to-three-pass",
        "softmax-online-to-three-pass",
        "matmul-to-flat-gemm",
        "matmul-to-gemv",
    ];
    for r in rules::all() {
        assert!(
            covered.contains(&r.name),
            "rule {} has no soundness case",
            r.name
        );
    }
}
