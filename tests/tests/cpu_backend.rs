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

/// The plan and memory plan of a model lowered for AVX-512.
fn planned(
    case: &str,
) -> (
    saturn_ir::Graph,
    saturn_runtime::Plan,
    saturn_runtime::memory::MemoryPlan,
) {
    let model = onnx_tests_dir().join(case).join("model.onnx");
    let target = saturn_ir::target::Target::named("x86-64-avx512").unwrap();
    let g = saturn::commands::load_static(&model, &[], &target, true).unwrap();
    let g = saturn_passes::lower::half::widen_half(&g);
    let lowered = saturn_passes::lower::lower(&g, &target, &Default::default());
    let plan = saturn_backends::cpu::build_plan(&g, &lowered).unwrap();
    let mem = saturn_runtime::memory::plan(&plan);
    (g, plan, mem)
}

/// The slot a slot sits in (itself, or the base of its view chain).
fn root(plan: &saturn_runtime::Plan, mut s: usize) -> usize {
    while let saturn_runtime::SlotKind::View { base, .. } = plan.slots[s].kind {
        s = base;
    }
    s
}

/// No two buffers alive at once overlap, except a view and the slots it
/// sits in (a slot is alive from the step that first touches it to the
/// one that last does; a base as long as any of its views).
fn check_no_overlap(plan: &saturn_runtime::Plan, mem: &saturn_runtime::memory::MemoryPlan) {
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
    for s in 0..n {
        let r = root(plan, s);
        if let (true, Some((a, b))) = (r != s, life[s]) {
            life[r] = Some(life[r].map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
    }
    let spans: Vec<(usize, usize, usize, usize, usize)> = (0..n)
        .filter_map(|s| {
            let (a, b) = life[s]?;
            let off = mem.offsets[s]?;
            Some((a, b, off, off + plan.slots[s].bytes(), s))
        })
        .collect();
    for (i, x) in spans.iter().enumerate() {
        for y in &spans[i + 1..] {
            let alive_together = x.0 <= y.1 && y.0 <= x.1;
            let overlap = x.2 < y.3 && y.2 < x.3;
            let contains = root(plan, x.4) == y.4 || root(plan, y.4) == x.4;
            assert!(
                !(alive_together && overlap) || contains,
                "{x:?} and {y:?} share memory while alive"
            );
        }
    }
}

/// Liveness-based reuse: resnet50's planned arena is far smaller than the
/// sum of its intermediates, and no two buffers alive at once overlap.
#[test]
fn resnet50_memory_plan_reuses_buffers() {
    let (_, plan, mem) = planned("models/test_resnet50");
    assert!(
        mem.arena * 4 < mem.unplanned,
        "planned {} of {} bytes",
        mem.arena,
        mem.unplanned
    );
    check_no_overlap(&plan, &mem);
}

/// Squeezenet's fire modules concatenate two convolutions along channels:
/// the convolutions write their halves of the concatenation in place, so
/// no concat step is left, and the parts sit side by side in their base.
#[test]
fn squeezenet_concats_are_written_in_place() {
    let (g, plan, mem) = planned("models/test_squeezenet");
    let concats = g
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, saturn_ir::ops::Op::Concat(_)))
        .count();
    assert_eq!(concats, 8);
    let steps: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            saturn_runtime::PlanStep::Kernel { kernel, .. } => Some(plan.kernels[*kernel].as_str()),
            _ => None,
        })
        .collect();
    assert!(
        !steps.iter().any(|k| k.starts_with("concat")),
        "concat steps left: {steps:?}"
    );
    let mut parts: Vec<(usize, usize, usize)> = (0..plan.slots.len())
        .filter_map(|s| match plan.slots[s].kind {
            saturn_runtime::SlotKind::View { base, offset } => Some((base, offset, s)),
            _ => None,
        })
        .collect();
    assert_eq!(parts.len(), 16, "two parts per concatenation");
    parts.sort();
    for w in parts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.0 == b.0 {
            // The second part starts where the first ends, in memory too.
            assert_eq!(a.1 + plan.slots[a.2].bytes(), b.1);
            assert_eq!(
                mem.offsets[b.2],
                mem.offsets[a.2].map(|o| o + plan.slots[a.2].bytes())
            );
        } else {
            assert_eq!(b.1, 0);
        }
    }
    check_no_overlap(&plan, &mem);
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

/// A bottleneck block: the residual `%r` is read by the first convolution
/// and by the sum in the second one's epilogue; `tail` adds what comes
/// after the block.
fn residual_block(n: usize, tail: &str, ret: &str) -> Graph {
    let t = format!("f32[{n},32,9,9]");
    let src = format!(
        "graph @res(%x: {t}, %w1: f32[32,32,1,1], %w2: f32[32,32,3,3], %b: f32[32]) {{
  %r: {t} = relu(%x)
  %c1: {t} = conv(%r, %w1, %b)
  %h: {t} = relu(%c1)
  %c2: {t} = conv(%h, %w2, %b) {{pads = [1, 1, 1, 1]}}
  %s: {t} = add(%c2, %r)
  %y: {t} = relu(%s)
  %z: {t} = conv(%y, %w1, %b)
{tail}  return {ret}
}}
"
    );
    saturn_ir::text::parse(&src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

fn residual_inputs(g: &Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let shape = g.ty(*v).shape.as_known().unwrap();
            let n: usize = shape.iter().product();
            let vals = (0..n)
                .map(|j| (((j * 7919 + i * 104729) % 211) as f32 - 105.0) / 300.0)
                .collect();
            Tensor::from_vec(shape, vals)
        })
        .collect()
}

/// A sum with a residual nothing reads later is written over the residual
/// (its slot becomes a view of the residual's); a residual read later, or
/// returned, keeps its memory. Every backend agrees with the interpreter
/// either way.
#[test]
fn residual_sums_are_written_over_a_dead_residual() {
    let cases = [
        (residual_block(1, "", "%z"), true),
        (residual_block(2, "", "%z"), true),
        (
            residual_block(1, "  %t: f32[1,32,9,9] = add(%z, %r)\n", "%t"),
            false,
        ),
        (residual_block(1, "", "%z, %r"), false),
    ];
    for (g, reused) in cases {
        let target = saturn_ir::target::Target::named("x86-64-avx512").unwrap();
        let lowered = saturn_passes::lower::lower(&g, &target, &Default::default());
        let plan = saturn_backends::cpu::build_plan(&g, &lowered).unwrap();
        let views: Vec<(usize, usize)> = (0..plan.slots.len())
            .filter_map(|s| match plan.slots[s].kind {
                saturn_runtime::SlotKind::View { base, .. } => Some((s, base)),
                _ => None,
            })
            .collect();
        if reused {
            let [(view, base)] = views[..] else {
                panic!("one view expected: {views:?}");
            };
            assert_eq!(plan.slots[view].name, "y");
            assert_eq!(plan.slots[base].name, "r");
            check_no_overlap(&plan, &saturn_runtime::memory::plan(&plan));
        } else {
            assert!(views.is_empty(), "{views:?}");
        }
        let inputs = residual_inputs(&g);
        let want = saturn_ir::interp::run(&g, inputs.clone()).unwrap();
        for name in ["cpu", "llvm"] {
            let Ok(b) = saturn_backends::lookup(name) else {
                continue;
            };
            for threads in [1, 2] {
                let opts = saturn_backends::PrepareOptions {
                    threads,
                    ..Default::default()
                };
                let got = b
                    .prepare_with(&g, &opts)
                    .unwrap()
                    .run(inputs.clone())
                    .unwrap();
                for (w, x) in want.iter().zip(&got) {
                    compare(w, x, RTOL, 1e-5)
                        .unwrap_or_else(|e| panic!("{name}, {threads} thread(s): {e}"));
                }
            }
        }
    }
}

/// Convolutions on small planes (channels in the lanes on wide vectors,
/// rows in blocks of up to 8 positions and a last block of the rest, each
/// transposed in registers) for every row width from 1 to 17, on every
/// backend, against the interpreter.
#[test]
fn small_plane_convolutions_agree_on_every_backend() {
    for w in 1..=17 {
        let src = format!(
            "graph @c(%x: f32[1,32,5,{w}], %k: f32[48,32,3,3], %b: f32[48]) {{
  %c: f32[1,48,5,{w}] = conv(%x, %k, %b) {{pads = [1, 1, 1, 1]}}
  %y: f32[1,48,5,{w}] = relu(%c)
  return %y
}}
"
        );
        let g = saturn_ir::text::parse(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let inputs = residual_inputs(&g);
        let want = saturn_ir::interp::run(&g, inputs.clone()).unwrap();
        for name in ["cpu", "llvm"] {
            let Ok(b) = saturn_backends::lookup(name) else {
                continue;
            };
            let got = b.prepare(&g).unwrap().run(inputs.clone()).unwrap();
            compare(&want[0], &got[0], RTOL, 1e-5)
                .unwrap_or_else(|e| panic!("{name}, rows of {w}: {e}"));
        }
    }
}
