//! The `cpu` backend as a user sees it: graphs with symbolic dims compiled
//! per concrete input shape (and reused), any thread count giving the same
//! results, inputs checked against the model with clear errors, and the
//! memory plan of a real model sharing memory between buffers.

use saturn_ir::builder::GraphBuilder;
use saturn_ir::ops::{Add, MatMul, Relu, Softmax, SoftmaxAlgorithm};
use saturn_ir::shape::{Dim, Shape};
use saturn_ir::{DType, Graph, Tensor, TensorType};
use saturn_tests::{ATOL, RTOL, compare, onnx_tests_dir};

fn backend() -> &'static dyn saturn_backends::Backend {
    saturn_backends::lookup("cpu").unwrap()
}

/// `softmax(relu(x · w + b))` with a symbolic batch dim.
fn mlp() -> Graph {
    let mut b = GraphBuilder::new("mlp");
    let ty = TensorType::new(
        DType::F32,
        Shape::Ranked(vec![Dim::sym("batch"), Dim::Known(13)]),
    );
    let x = b.input("x", ty).unwrap();
    let vals: Vec<f32> = (0..13 * 7)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 10.0)
        .collect();
    let w = b
        .constant("w", Tensor::from_vec(vec![13, 7], vals))
        .unwrap();
    let bias = b
        .constant(
            "b",
            Tensor::from_vec(vec![7], vec![0.1f32, -0.2, 0.3, 0.0, 0.5, -0.6, 0.7]),
        )
        .unwrap();
    let h = b.op(MatMul {}, &[x, w]).unwrap();
    let h = b.op(Add {}, &[h, bias]).unwrap();
    let h = b.op(Relu {}, &[h]).unwrap();
    let y = b
        .op(
            Softmax {
                axis: -1,
                scale: 1.0,
                algorithm: SoftmaxAlgorithm::TwoPass,
            },
            &[h],
        )
        .unwrap();
    b.finish(vec![y])
}

fn input(batch: usize) -> Tensor {
    let v: Vec<f32> = (0..batch * 13)
        .map(|i| ((i * 7919 % 101) as f32 - 50.0) / 25.0)
        .collect();
    Tensor::from_vec(vec![batch, 13], v)
}

#[test]
fn symbolic_dims_compile_per_shape() {
    let g = mlp();
    let exe = backend().prepare(&g).unwrap();
    // Batch sizes below, at and above the vector width and the GEMM's
    // register blocks, and one again (served by the compiled cache).
    for batch in [1, 3, 4, 5, 17, 64, 3] {
        let x = input(batch);
        let want = saturn_ir::interp::run(&g, vec![x.clone()]).unwrap();
        let got = exe.run(vec![x]).unwrap();
        assert_eq!(got[0].shape(), &[batch, 7]);
        compare(&want[0], &got[0], RTOL, ATOL).unwrap_or_else(|e| panic!("batch {batch}: {e}"));
    }
}

#[test]
fn thread_counts_agree() {
    let g = mlp();
    let x = input(200);
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let opts = saturn_backends::PrepareOptions {
            threads,
            ..Default::default()
        };
        let exe = backend().prepare_with(&g, &opts).unwrap();
        results.push(exe.run(vec![x.clone()]).unwrap());
    }
    for r in &results[1..] {
        compare(&results[0][0], &r[0], 0.0, 0.0).unwrap();
    }
}

#[test]
fn inputs_are_checked_against_the_model() {
    let exe = backend().prepare(&mlp()).unwrap();
    let e = exe.run(vec![]).err().unwrap().to_string();
    assert!(e.contains("expected 1 inputs, got 0"), "{e}");
    let e = exe
        .run(vec![Tensor::from_vec(vec![2, 12], vec![0f32; 24])])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`x`") && e.contains("[2, 12]"), "{e}");
    let e = exe
        .run(vec![Tensor::from_vec(vec![2, 13], vec![0f64; 26])])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`x`") && e.contains("f64"), "{e}");
}

/// Liveness-based reuse: resnet50's planned arena is far smaller than the
/// sum of its intermediates, and no two buffers alive at once overlap.
#[test]
fn resnet50_memory_plan_reuses_buffers() {
    let model = onnx_tests_dir().join("models/test_resnet50/model.onnx");
    let target = saturn_ir::target::Target::named("x86-64-avx512").unwrap();
    let g = saturn::commands::load_static(&model, &[], &target, true).unwrap();
    let g = saturn_passes::lower::half::widen_half(&g);
    let lowered = saturn_passes::lower::lower(&g, &target, &Default::default());
    let plan = saturn_backends::cpu::build_plan(&g, &lowered).unwrap();
    let mem = saturn_runtime::memory::plan(&plan);
    assert!(
        mem.arena * 4 < mem.unplanned,
        "planned {} of {} bytes",
        mem.arena,
        mem.unplanned
    );
    // Lifetimes: a slot is alive from the step that first touches it to
    // the one that last does; overlapping lifetimes need disjoint memory.
    let n = plan.slots.len();
    let mut life: Vec<Option<(usize, usize)>> = vec![None; n];
    for (t, step) in plan.steps.iter().enumerate() {
        for s in step_slots(step) {
            life[s] = Some(life[s].map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
        }
    }
    // Inputs are written before the first step; outputs read after the last.
    for &s in &plan.inputs {
        life[s] = Some((0, life[s].map_or(0, |l| l.1)));
    }
    for &s in &plan.outputs {
        life[s] = Some((life[s].map_or(plan.steps.len(), |l| l.0), plan.steps.len()));
    }
    let spans: Vec<(usize, usize, usize, usize)> = (0..n)
        .filter_map(|s| {
            let (a, b) = life[s]?;
            let off = mem.offsets[s]?;
            Some((a, b, off, off + plan.slots[s].bytes()))
        })
        .collect();
    for (i, x) in spans.iter().enumerate() {
        for y in &spans[i + 1..] {
            let alive_together = x.0 <= y.1 && y.0 <= x.1;
            let overlap = x.2 < y.3 && y.2 < x.3;
            assert!(
                !(alive_together && overlap),
                "{x:?} and {y:?} share memory while alive"
            );
        }
    }
}

fn step_slots(step: &saturn_runtime::PlanStep) -> Vec<usize> {
    match step {
        saturn_runtime::PlanStep::Kernel { args, .. } => args.clone(),
        saturn_runtime::PlanStep::Fallback {
            inputs, outputs, ..
        } => inputs
            .iter()
            .flatten()
            .copied()
            .chain(outputs.iter().copied())
            .collect(),
    }
}
