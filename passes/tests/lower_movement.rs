//! Lowerings of the movement family against the interpreter: every case
//! lowers without fallback and the Kernel IR evaluator (bounds-checked)
//! agrees with the interpreter.

mod common;

use common::{Rng, check};
use saturn_ir::builder::GraphBuilder;
use saturn_ir::kernel::{Kernel, LoopKind};
use saturn_ir::ops::*;
use saturn_ir::{AttrValue, DType, Graph, Op, Tensor};
use saturn_passes::lower::Lowered;

/// An input of the node under test.
enum In {
    /// A graph input with this value.
    X(Tensor),
    /// A constant.
    C(Tensor),
    /// A graph input (a parameter known only at run time); the node's
    /// output types are declared, as a model does, from this value.
    P(Tensor),
    /// Omitted.
    No,
}

use In::{C, No, P, X};

fn graph(op: impl Into<Op>, ins: &[In], outputs: usize) -> (Graph, Vec<Tensor>) {
    let op: Op = op.into();
    let declared: Option<Vec<saturn_ir::TensorType>> = if ins.iter().any(|i| matches!(i, P(_))) {
        let known: Vec<In> = ins
            .iter()
            .map(|i| match i {
                X(t) => X(t.clone()),
                C(t) | P(t) => C(t.clone()),
                No => No,
            })
            .collect();
        let (g, _) = graph(op.clone(), &known, outputs);
        Some(g.outputs().iter().map(|v| g.ty(*v).clone()).collect())
    } else {
        None
    };
    let mut b = GraphBuilder::new("g");
    let mut vals = Vec::new();
    let mut inputs = Vec::new();
    for (i, x) in ins.iter().enumerate() {
        vals.push(match x {
            X(t) | P(t) => {
                let ty = saturn_ir::TensorType::known(t.dtype(), t.shape());
                inputs.push(t.clone());
                Some(b.input(format!("x{i}"), ty).unwrap())
            }
            C(t) => Some(b.constant(format!("c{i}"), t.clone()).unwrap()),
            No => None,
        });
    }
    let outs = (0..outputs)
        .map(|i| (format!("y{i}"), declared.as_ref().map(|d| d[i].clone())))
        .collect();
    let o = b.node("", op, vals, outs).unwrap();
    (b.finish(o), inputs)
}

/// Lowers one node, checks it against the interpreter, returns the
/// lowering.
fn run_n(op: impl Into<Op>, ins: &[In], outputs: usize) -> Lowered {
    let (g, inputs) = graph(op, ins, outputs);
    check(&g, inputs)
}

fn run(op: impl Into<Op>, ins: &[In]) -> Lowered {
    run_n(op, ins, 1)
}

fn rnd(dt: DType, shape: &[usize], seed: u64) -> Tensor {
    Rng(seed).tensor(dt, shape, 50.0)
}

fn ints(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v.to_vec())
}

fn i1(v: &[i64]) -> Tensor {
    ints(&[v.len()], v)
}

fn kernel(l: &Lowered) -> &Kernel {
    assert_eq!(l.kernels.len(), 1, "one kernel");
    &l.kernels[0]
}

fn knob<'a>(l: &'a Lowered, key: &str) -> Option<&'a AttrValue> {
    kernel(l).schedule.get(key)
}

const DTYPES: [DType; 7] = [
    DType::F32,
    DType::F64,
    DType::I8,
    DType::U16,
    DType::I32,
    DType::I64,
    DType::Bool,
];

/// Slice starts, ends, axes and steps.
type SliceCase<'a> = (&'a [i64], &'a [i64], Option<&'a [i64]>, Option<&'a [i64]>);

// ---- copies ----

#[test]
fn reshape_family_copies_every_dtype() {
    for (k, dt) in DTYPES.into_iter().enumerate() {
        let x = rnd(dt, &[3, 1, 5, 7], k as u64);
        run(
            Reshape { allowzero: false },
            &[X(x.clone()), C(i1(&[5, -1]))],
        );
        run(Flatten { axis: 2 }, &[X(x.clone())]);
        run(Squeeze {}, &[X(x.clone()), C(i1(&[1]))]);
        run(Unsqueeze {}, &[X(x.clone()), C(i1(&[0, -1]))]);
        run(Identity {}, &[X(x)]);
    }
    // Scalars and empty tensors.
    run(
        Reshape { allowzero: false },
        &[X(Tensor::scalar(3.5f32)), C(i1(&[1, 1]))],
    );
    run(Flatten { axis: 0 }, &[X(rnd(DType::F32, &[0, 4], 1))]);
}

#[test]
fn large_copy_runs_parallel_chunks() {
    let x = rnd(DType::F32, &[64, 1030], 3);
    let l = run(Reshape { allowzero: false }, &[X(x), C(i1(&[-1]))]);
    assert_eq!(knob(&l, "parallel"), Some(&AttrValue::Str("chunks".into())));
    assert_eq!(kernel(&l).count_loops(|k| k == LoopKind::Parallel), 1);
    assert_eq!(knob(&l, "vector"), Some(&AttrValue::Int(4)));
}

#[test]
fn shape_and_size_store_constants() {
    let x = rnd(DType::F32, &[2, 3, 4, 5], 1);
    for (start, end) in [
        (0, None),
        (1, Some(3)),
        (-2, None),
        (-10, Some(10)),
        (3, Some(1)),
    ] {
        run(Shape { start, end }, &[X(x.clone())]);
    }
    run(Size {}, &[X(x)]);
    run(Size {}, &[X(rnd(DType::Bool, &[0, 3], 2))]);
    run(
        Shape {
            start: 0,
            end: None,
        },
        &[X(Tensor::scalar(1i64))],
    );
}

#[test]
fn transposes_of_every_rank() {
    let cases: &[(&[usize], &[i64])] = &[
        (&[3, 5], &[1, 0]),
        (&[2, 3, 4], &[2, 0, 1]),
        (&[2, 3, 4], &[0, 2, 1]),
        (&[2, 3, 4], &[1, 0, 2]),
        (&[2, 1, 3, 5], &[0, 2, 3, 1]),
        (&[2, 3, 4, 5], &[3, 1, 0, 2]),
        (&[1, 6, 1, 7], &[2, 3, 0, 1]),
        (&[4], &[0]),
    ];
    for (k, (shape, perm)) in cases.iter().enumerate() {
        for dt in [DType::F32, DType::U8, DType::I64, DType::Bool] {
            let x = rnd(dt, shape, k as u64);
            run(
                Transpose {
                    perm: Some(perm.to_vec()),
                },
                &[X(x)],
            );
        }
    }
    run(
        Transpose { perm: None },
        &[X(rnd(DType::F64, &[2, 3, 5], 9))],
    );
}

#[test]
fn transpose_that_moves_the_innermost_dim_is_tiled() {
    // 2-D with remainders on both sides of the tiles, every tile width.
    for dt in [DType::F32, DType::U8, DType::F64, DType::I16] {
        let x = rnd(dt, &[37, 53], 4);
        let l = run(
            Transpose {
                perm: Some(vec![1, 0]),
            },
            &[X(x)],
        );
        assert!(knob(&l, "tile").is_some(), "{dt}: tiled");
    }
    // Batched (NCHW -> NHWC), large enough to run in parallel.
    let x = rnd(DType::F32, &[2, 40, 30, 33], 5);
    let l = run(
        Transpose {
            perm: Some(vec![0, 2, 3, 1]),
        },
        &[X(x)],
    );
    assert!(knob(&l, "tile").is_some());
    assert_eq!(kernel(&l).count_loops(|k| k == LoopKind::Parallel), 2);
    // Adjacent dims that stay adjacent merge: [2,3,4,5] -> [4,5,2,3] is
    // a 2-D transpose of [6, 20].
    let l = run(
        Transpose {
            perm: Some(vec![2, 3, 0, 1]),
        },
        &[X(rnd(DType::I32, &[2, 3, 4, 5], 6))],
    );
    assert!(kernel(&l).count_loops(|_| true) <= 3);
}

#[test]
fn depth_and_space() {
    for mode in [DepthToSpaceMode::Dcr, DepthToSpaceMode::Crd] {
        for dt in [DType::F32, DType::I8] {
            let x = rnd(dt, &[2, 8, 3, 5], 1);
            run(DepthToSpace { blocksize: 2, mode }, &[X(x)]);
            let x = rnd(dt, &[1, 3, 6, 9], 2);
            run(SpaceToDepth { blocksize: 3, mode }, &[X(x)]);
        }
    }
}

#[test]
fn concat_along_every_axis() {
    for dt in [DType::F32, DType::U8, DType::Bool, DType::I64] {
        for axis in [0, 1, 2, -1] {
            let mut s = [2, 3, 5];
            let ins: Vec<In> = (0..3)
                .map(|k| {
                    let a = if axis < 0 { 2 } else { axis as usize };
                    s[a] = k + 1;
                    X(rnd(dt, &s, k as u64))
                })
                .collect();
            run(Concat { axis }, &ins);
        }
    }
    // One input empty along the axis, one a constant.
    let ins = [
        X(rnd(DType::F32, &[2, 0, 3], 1)),
        C(rnd(DType::F32, &[2, 2, 3], 2)),
        X(rnd(DType::F32, &[2, 5, 3], 3)),
    ];
    run(Concat { axis: 1 }, &ins);
}

#[test]
fn split_by_sizes_and_counts() {
    for dt in [DType::F32, DType::I16, DType::Bool] {
        let x = rnd(dt, &[4, 7, 3], 1);
        run_n(
            Split {
                axis: 1,
                num_outputs: None,
            },
            &[X(x.clone()), C(i1(&[2, 0, 5]))],
            3,
        );
        run_n(
            Split {
                axis: -2,
                num_outputs: Some(3),
            },
            &[X(x.clone())],
            3,
        );
        run_n(
            Split {
                axis: 0,
                num_outputs: None,
            },
            &[X(x.clone())],
            2,
        );
        run_n(
            Split {
                axis: 2,
                num_outputs: None,
            },
            &[X(x)],
            3,
        );
    }
}

#[test]
fn slices_with_steps_axes_and_clamping() {
    let x = rnd(DType::F32, &[5, 6, 7], 1);
    let cases: &[SliceCase] = &[
        (&[1], &[4], None, None),
        (&[0, 1, 2], &[5, 5, 7], None, Some(&[2, 2, 3])),
        (&[-1], &[-100], Some(&[2]), Some(&[-1])),
        (&[4, 10], &[0, -100], Some(&[0, 1]), Some(&[-2, -3])),
        (&[-3, 0], &[100, 100], Some(&[-1, 0]), None),
        (&[2], &[2], Some(&[1]), None),
        (&[i64::MIN], &[i64::MAX], Some(&[1]), Some(&[1])),
        (&[i64::MAX], &[i64::MIN], Some(&[2]), Some(&[-1])),
    ];
    for dt in [DType::F32, DType::U8, DType::Bool] {
        let x = x.cast(dt, true);
        for (starts, ends, axes, steps) in cases {
            let mut ins = vec![X(x.clone()), C(i1(starts)), C(i1(ends))];
            ins.push(axes.map_or(No, |a| C(i1(a))));
            ins.push(steps.map_or(No, |s| C(i1(s))));
            run(Slice {}, &ins);
        }
    }
    // i32 bounds.
    let b = |v: &[i32]| C(Tensor::from_vec(vec![v.len()], v.to_vec()));
    run(
        Slice {},
        &[X(x), b(&[1, 0]), b(&[-1, 7]), b(&[0, 2]), b(&[1, 2])],
    );
}

#[test]
fn tiles_small_and_large_repeats() {
    for dt in [DType::F32, DType::I8, DType::Bool] {
        let x = rnd(dt, &[2, 3], 1);
        run(Tile {}, &[X(x.clone()), C(i1(&[2, 3]))]);
        run(Tile {}, &[X(x.clone()), C(i1(&[1, 40]))]);
        run(Tile {}, &[X(x.clone()), C(i1(&[30, 1]))]);
        run(Tile {}, &[X(x), C(i1(&[0, 2]))]);
    }
    run(
        Tile {},
        &[X(rnd(DType::F32, &[1, 3, 1], 2)), C(i1(&[2, 2, 9]))],
    );
}

#[test]
fn pads_in_every_mode() {
    let modes = [
        PadMode::Constant,
        PadMode::Reflect,
        PadMode::Edge,
        PadMode::Wrap,
    ];
    let pads: &[&[i64]] = &[
        &[0, 1, 2, 0, 2, 1],
        &[1, 0, 0, 0, 0, 3],
        &[0, -1, 2, 0, 1, -2],
        &[0, 0, 0, 0, 0, 0],
    ];
    for dt in [DType::F32, DType::I32, DType::U8, DType::Bool] {
        let x = rnd(dt, &[2, 3, 4], 1);
        for mode in modes {
            for p in pads {
                run(Pad { mode }, &[X(x.clone()), C(i1(p))]);
            }
        }
    }
    let x = rnd(DType::F32, &[2, 3, 4], 2);
    // Constant value as a constant and as a runtime input; axes.
    let v = Tensor::scalar(7.5f32);
    run(
        Pad {
            mode: PadMode::Constant,
        },
        &[
            X(x.clone()),
            C(i1(&[1, 2, 3, 1])),
            C(v.clone()),
            C(i1(&[-1, 0])),
        ],
    );
    run(
        Pad {
            mode: PadMode::Constant,
        },
        &[X(x.clone()), C(i1(&[1, 1, 1, 1, 1, 1])), X(v)],
    );
    // Pads larger than the dim: several reflections, and wraps; many
    // runs on two axes take offset tables.
    for mode in [PadMode::Reflect, PadMode::Wrap, PadMode::Edge] {
        run(Pad { mode }, &[X(x.clone()), C(i1(&[0, 0, 9, 0, 0, 11]))]);
        let l = run(Pad { mode }, &[X(x.clone()), C(i1(&[0, 7, 9, 0, 8, 11]))]);
        if mode == PadMode::Reflect {
            assert!(knob(&l, "offset_table").is_some());
        }
    }
    // Tables with fill entries on an outer and the innermost axis.
    let l = run(
        Pad {
            mode: PadMode::Constant,
        },
        &[
            X(x.clone()),
            C(i1(&[0, 0, 0, 0, 0, 0])),
            C(Tensor::scalar(1.0f32)),
        ],
    );
    assert!(knob(&l, "offset_table").is_none());
    // Padding an empty input with a constant.
    run(
        Pad {
            mode: PadMode::Constant,
        },
        &[X(rnd(DType::F32, &[2, 0], 3)), C(i1(&[0, 1, 0, 2]))],
    );
    // A conv-style pad of NCHW, large enough to run in parallel.
    let l = run(
        Pad {
            mode: PadMode::Constant,
        },
        &[
            X(rnd(DType::F32, &[1, 8, 64, 64], 4)),
            C(i1(&[0, 0, 1, 1, 0, 0, 1, 1])),
        ],
    );
    assert_eq!(knob(&l, "boxes"), Some(&AttrValue::Int(5)));
}

#[test]
fn center_crop_pad_mixes_crop_and_pad() {
    let x = rnd(DType::F32, &[5, 4, 3], 1);
    run(
        CenterCropPad { axes: None },
        &[X(x.clone()), C(i1(&[3, 7, 3]))],
    );
    run(
        CenterCropPad {
            axes: Some(vec![-1, 0]),
        },
        &[X(x.clone()), C(i1(&[6, 2]))],
    );
    run(
        CenterCropPad { axes: None },
        &[X(x.cast(DType::I8, true)), C(i1(&[4, 4, 4]))],
    );
}

#[test]
fn compress_with_constant_conditions() {
    let x = rnd(DType::F32, &[3, 5], 1);
    let cond = |v: &[bool]| C(Tensor::from_vec(vec![v.len()], v.to_vec()));
    run(
        Compress { axis: Some(1) },
        &[X(x.clone()), cond(&[true, false, true, true])],
    );
    run(
        Compress { axis: Some(0) },
        &[X(x.clone()), cond(&[false, true, true])],
    );
    run(
        Compress { axis: None },
        &[X(x.clone()), cond(&[true, false, false, true, true])],
    );
    run(Compress { axis: Some(-1) }, &[X(x), cond(&[false, false])]);
}

// ---- values made from nothing ----

#[test]
fn trilu_upper_and_lower() {
    for dt in [DType::F32, DType::I64, DType::Bool, DType::U8] {
        let x = rnd(dt, &[2, 5, 7], 1);
        for upper in [true, false] {
            run(Trilu { upper }, &[X(x.clone())]);
            for k in [-8, -2, 0, 1, 3, 9, i64::MIN, i64::MAX] {
                run(Trilu { upper }, &[X(x.clone()), C(Tensor::scalar(k))]);
            }
            run(Trilu { upper }, &[X(x.clone()), X(Tensor::scalar(-1i64))]);
            run(
                Trilu { upper },
                &[X(x.clone()), X(Tensor::scalar(i64::MAX))],
            );
        }
    }
    run(Trilu { upper: true }, &[X(rnd(DType::F32, &[3, 0], 1))]);
}

#[test]
fn eye_like_diagonals() {
    let x = rnd(DType::F32, &[4, 6], 1);
    for k in [-5, -1, 0, 2, 5, 6, 100, i64::MIN] {
        run(EyeLike { dtype: None, k }, &[X(x.clone())]);
        run(
            EyeLike {
                dtype: Some(DType::Bool),
                k,
            },
            &[X(x.clone())],
        );
        run(
            EyeLike {
                dtype: Some(DType::I32),
                k,
            },
            &[X(x.clone())],
        );
    }
}

#[test]
fn constant_of_shape_fills() {
    run(ConstantOfShape { value: None }, &[C(i1(&[3, 5]))]);
    for v in [
        Tensor::from_vec(vec![1], vec![2.5f64]),
        Tensor::from_vec(vec![1], vec![-3i32]),
        Tensor::from_vec(vec![1], vec![true]),
        Tensor::from_vec(vec![1], vec![u64::MAX]),
    ] {
        run(
            ConstantOfShape {
                value: Some(v.clone()),
            },
            &[C(i1(&[2, 9]))],
        );
        run(ConstantOfShape { value: Some(v) }, &[C(i1(&[0]))]);
    }
    run(
        ConstantOfShape { value: None },
        &[C(Tensor::from_vec(vec![0], Vec::<i64>::new()))],
    );
}

#[test]
fn ranges_of_ints_and_floats() {
    // The output extent is static only when all three inputs are known.
    let c = |t: Tensor| C(t);
    run(
        Range {},
        &[
            c(Tensor::scalar(10i32)),
            c(Tensor::scalar(4i32)),
            c(Tensor::scalar(-3i32)),
        ],
    );
    run(
        Range {},
        &[
            c(Tensor::scalar(1.0f32)),
            c(Tensor::scalar(2.0f32)),
            c(Tensor::scalar(0.1f32)),
        ],
    );
    run(
        Range {},
        &[
            c(Tensor::scalar(-5i64)),
            c(Tensor::scalar(100i64)),
            c(Tensor::scalar(7i64)),
        ],
    );
    run(
        Range {},
        &[
            c(Tensor::scalar(0.5f64)),
            c(Tensor::scalar(-2.0f64)),
            c(Tensor::scalar(-0.25f64)),
        ],
    );
    run(
        Range {},
        &[
            c(Tensor::scalar(3u16)),
            c(Tensor::scalar(3u16)),
            c(Tensor::scalar(1u16)),
        ],
    );
}

// ---- data-dependent indices ----

#[test]
fn gather_with_runtime_and_constant_indices() {
    let x = rnd(DType::F32, &[4, 5, 6], 1);
    let ind = ints(&[2, 3], &[0, -1, 2, 3, -4, 1]);
    for axis in [0, 1, -1] {
        for dt in [DType::F32, DType::I8, DType::Bool, DType::I64] {
            let x = x.cast(dt, true);
            run(Gather { axis }, &[X(x.clone()), X(ind.clone())]);
            run(Gather { axis }, &[X(x.clone()), C(ind.clone())]);
        }
    }
    // i32 indices, a scalar index, an embedding-style lookup.
    let ind32 = Tensor::from_vec(vec![3], vec![2i32, -1, 0]);
    run(Gather { axis: 1 }, &[X(x.clone()), X(ind32)]);
    run(
        Gather { axis: 0 },
        &[X(x.clone()), X(Tensor::scalar(-2i64))],
    );
    run(Gather { axis: 2 }, &[X(x), C(Tensor::scalar(5i64))]);
    // Irregular constant indices read their buffer like runtime ones.
    let mut r = Rng(11);
    let many: Vec<i64> = (0..40).map(|_| (r.next_u64() % 10) as i64 - 5).collect();
    let l = run(
        Gather { axis: 1 },
        &[X(rnd(DType::F32, &[3, 5, 4], 3)), C(i1(&many))],
    );
    assert!(knob(&l, "boxes").is_none() && knob(&l, "offset_table").is_none());
    let table = rnd(DType::F32, &[50, 37], 2);
    let tokens = ints(&[2, 4], &[3, 49, 0, 7, 7, 12, 1, 33]);
    run(Gather { axis: 0 }, &[C(table), X(tokens)]);
}

#[test]
fn gather_clamps_indices_out_of_range() {
    // The interpreter rejects these; the kernel must stay in bounds, so
    // lower and run it alone.
    let (g, inputs) = graph(
        Gather { axis: 0 },
        &[X(rnd(DType::F32, &[3, 2], 1)), X(i1(&[7, -9]))],
        1,
    );
    let target = saturn_ir::target::Target::named("x86-64-avx512").unwrap();
    let l = saturn_passes::lower::lower(&g, &target, &Default::default());
    assert!(l.fallbacks(&g).is_empty());
    let out = saturn_passes::lower::exec::run_lowered(&g, &l, inputs.clone(), &mut |_, k, b| {
        saturn_ir::kernel::eval::eval_kernel(k, b, &[]).map_err(|e| e.to_string())
    })
    .unwrap();
    let x = inputs[0].to_f64_vec();
    // 7 reads the last row, -9 the first.
    assert_eq!(out[0].to_f64_vec(), vec![x[4], x[5], x[0], x[1]]);
}

#[test]
fn gather_elements_and_nd() {
    let x = rnd(DType::F32, &[3, 4, 5], 1);
    let mut r = Rng(7);
    let mut idx = |shape: &[usize], d: i64| {
        let n: usize = shape.iter().product();
        let v: Vec<i64> = (0..n)
            .map(|_| (r.next_u64() % (2 * d as u64)) as i64 - d)
            .collect();
        ints(shape, &v)
    };
    for axis in [0, 1, 2, -1] {
        let d = [3, 4, 5][((axis + 3) % 3) as usize];
        let ind = idx(&[2, 3, 4], d);
        for dt in [DType::F32, DType::U8, DType::Bool] {
            run(
                GatherElements { axis },
                &[X(x.cast(dt, true)), X(ind.clone())],
            );
        }
    }
    // batch_dims 0: tuples of 1 and 2 indices; batch_dims 1.
    run(
        GatherND { batch_dims: 0 },
        &[X(x.clone()), X(ints(&[2, 1], &[2, -1]))],
    );
    run(
        GatherND { batch_dims: 0 },
        &[X(x.clone()), X(ints(&[3, 2], &[0, 1, 2, 3, -1, -4]))],
    );
    run(
        GatherND { batch_dims: 1 },
        &[
            X(x.clone()),
            X(ints(&[3, 2, 2], &[0, 1, 3, 4, 2, 0, 1, -1, 0, 0, 3, 2])),
        ],
    );
    run(
        GatherND { batch_dims: 2 },
        &[
            X(x.cast(DType::I16, true)),
            X(ints(&[3, 4, 1], &[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])),
        ],
    );
}

#[test]
fn scatters_in_index_order_with_every_reduction() {
    let reductions = [
        ScatterReduction::None,
        ScatterReduction::Add,
        ScatterReduction::Mul,
        ScatterReduction::Max,
        ScatterReduction::Min,
    ];
    for dt in [DType::F32, DType::I32, DType::U8, DType::Bool, DType::F64] {
        let data = rnd(dt, &[4, 5], 1);
        // Duplicate targets, negative indices.
        let ind = ints(&[2, 3], &[1, 1, -1, 0, 1, 1]);
        let upd = rnd(dt, &[2, 3], 2);
        for reduction in reductions {
            for axis in [0, 1] {
                run(
                    ScatterElements { axis, reduction },
                    &[X(data.clone()), X(ind.clone()), X(upd.clone())],
                );
            }
            // ScatterND: whole rows (duplicates) and single elements.
            let rows = ints(&[3, 1], &[2, -1, 2]);
            run(
                ScatterND { reduction },
                &[X(data.clone()), X(rows), X(rnd(dt, &[3, 5], 3))],
            );
            let cells = ints(&[2, 2, 2], &[0, 0, 3, 4, 0, 0, -1, -1]);
            run(
                ScatterND { reduction },
                &[X(data.clone()), X(cells), X(rnd(dt, &[2, 2], 4))],
            );
        }
    }
}

#[test]
fn one_hot_axes_and_index_types() {
    let vals = Tensor::from_vec(vec![2], vec![-1.5f32, 4.0]);
    let ind = ints(&[2, 3], &[0, 2, -1, 5, 1, -7]);
    for axis in [-1, 0, 1, 2] {
        run(
            OneHot { axis },
            &[X(ind.clone()), C(Tensor::scalar(4i64)), X(vals.clone())],
        );
    }
    let find = Tensor::from_vec(vec![5], vec![0.7f32, 2.9, -1.2, 9.0, f32::NAN]);
    let ivals = Tensor::from_vec(vec![2], vec![0i32, 1]);
    run(
        OneHot { axis: 0 },
        &[X(find), C(Tensor::scalar(3.0f32)), X(ivals)],
    );
    let u8ind = Tensor::from_vec(vec![9], vec![0u8, 1, 2, 3, 4, 5, 6, 7, 8]);
    run(
        OneHot { axis: -1 },
        &[
            X(u8ind),
            C(Tensor::scalar(6i32)),
            C(Tensor::from_vec(vec![2], vec![false, true])),
        ],
    );
}

#[test]
fn reverse_sequences_on_both_layouts() {
    let x = rnd(DType::F32, &[4, 3, 5], 1);
    run(
        ReverseSequence {
            batch_axis: 1,
            time_axis: 0,
        },
        &[X(x.clone()), X(i1(&[4, 1, 3]))],
    );
    run(
        ReverseSequence {
            batch_axis: 0,
            time_axis: 1,
        },
        &[X(x.cast(DType::I8, true)), X(i1(&[0, 3, 2, 1]))],
    );
}

// ---- resize ----

fn resize(mode: ResizeMode, ct: CoordinateTransform) -> Resize {
    Resize {
        antialias: false,
        axes: None,
        coordinate_transformation_mode: ct,
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        keep_aspect_ratio_policy: AspectRatioPolicy::Stretch,
        mode,
        nearest_mode: NearestMode::RoundPreferFloor,
    }
}

fn scales(v: &[f32]) -> In {
    C(Tensor::from_vec(vec![v.len()], v.to_vec()))
}

const COORDS: [CoordinateTransform; 5] = [
    CoordinateTransform::HalfPixel,
    CoordinateTransform::HalfPixelSymmetric,
    CoordinateTransform::PytorchHalfPixel,
    CoordinateTransform::AlignCorners,
    CoordinateTransform::Asymmetric,
];

#[test]
fn resize_nearest_every_mode() {
    let x = rnd(DType::F32, &[1, 2, 4, 5], 1);
    let modes = [
        NearestMode::RoundPreferFloor,
        NearestMode::RoundPreferCeil,
        NearestMode::Floor,
        NearestMode::Ceil,
    ];
    for ct in COORDS {
        for nm in modes {
            let op = Resize {
                nearest_mode: nm,
                ..resize(ResizeMode::Nearest, ct)
            };
            for s in [
                [1.0, 1.0, 2.0, 3.0],
                [1.0, 1.0, 0.6, 1.7],
                [1.0, 2.0, 1.5, 0.4],
            ] {
                run(op.clone(), &[X(x.clone()), No, scales(&s)]);
            }
            run(op.clone(), &[X(x.clone()), No, No, C(i1(&[1, 2, 7, 3]))]);
        }
    }
    // Integer dtypes move values as they are.
    let op = resize(ResizeMode::Nearest, CoordinateTransform::Asymmetric);
    for dt in [DType::U8, DType::I64, DType::I16] {
        run(
            op.clone(),
            &[X(x.cast(dt, true)), No, scales(&[1.0, 1.0, 2.0, 2.0])],
        );
    }
}

#[test]
fn resize_nearest_integer_upsampling_is_a_strided_copy() {
    let x = rnd(DType::F32, &[1, 3, 20, 24], 2);
    let op = resize(ResizeMode::Nearest, CoordinateTransform::Asymmetric);
    let l = run(op, &[X(x), No, scales(&[1.0, 1.0, 2.0, 2.0])]);
    assert!(knob(&l, "offset_table").is_none());
    assert_eq!(knob(&l, "boxes"), Some(&AttrValue::Int(1)));
}

#[test]
fn resize_linear_and_cubic() {
    let x = rnd(DType::F32, &[1, 2, 4, 5], 3);
    for ct in COORDS {
        for mode in [ResizeMode::Linear, ResizeMode::Cubic] {
            let op = resize(mode, ct);
            for s in [
                [1.0, 1.0, 2.0, 2.0],
                [1.0, 1.0, 0.6, 1.7],
                [1.0, 1.0, 1.0, 0.5],
            ] {
                run(op.clone(), &[X(x.clone()), No, scales(&s)]);
            }
            run(op.clone(), &[X(x.clone()), No, No, C(i1(&[1, 2, 9, 3]))]);
        }
    }
    // exclude_outside and another cubic coefficient, f64.
    let op = Resize {
        exclude_outside: true,
        cubic_coeff_a: -0.5,
        ..resize(ResizeMode::Cubic, CoordinateTransform::HalfPixel)
    };
    run(
        op,
        &[
            X(x.cast(DType::F64, true)),
            No,
            scales(&[1.0, 1.0, 1.7, 0.8]),
        ],
    );
}

#[test]
fn resize_antialias_axes_and_aspect_ratio() {
    let x = rnd(DType::F32, &[1, 1, 9, 12], 4);
    for mode in [ResizeMode::Linear, ResizeMode::Cubic] {
        let op = Resize {
            antialias: true,
            ..resize(mode, CoordinateTransform::HalfPixel)
        };
        run(
            op.clone(),
            &[X(x.clone()), No, scales(&[1.0, 1.0, 0.4, 0.6])],
        );
        run(op, &[X(x.clone()), No, No, C(i1(&[1, 1, 4, 5]))]);
    }
    let op = Resize {
        axes: Some(vec![3, 2]),
        ..resize(ResizeMode::Linear, CoordinateTransform::AlignCorners)
    };
    run(op, &[X(x.clone()), No, scales(&[0.5, 1.5])]);
    for policy in [AspectRatioPolicy::NotLarger, AspectRatioPolicy::NotSmaller] {
        let op = Resize {
            axes: Some(vec![2, 3]),
            keep_aspect_ratio_policy: policy,
            ..resize(ResizeMode::Linear, CoordinateTransform::HalfPixel)
        };
        run(op, &[X(x.clone()), No, No, C(i1(&[7, 7]))]);
    }
}

#[test]
fn resize_tf_crop_and_resize_extrapolates() {
    let x = rnd(DType::F32, &[1, 1, 4, 5], 5);
    let roi = C(Tensor::from_vec(
        vec![8],
        vec![0f32, 0.0, -0.2, 0.4, 1.0, 1.0, 0.6, 1.3],
    ));
    for mode in [ResizeMode::Nearest, ResizeMode::Linear, ResizeMode::Cubic] {
        let op = Resize {
            extrapolation_value: 10.0,
            ..resize(mode, CoordinateTransform::TfCropAndResize)
        };
        let roi = match &roi {
            C(t) => C(t.clone()),
            _ => unreachable!(),
        };
        run(op, &[X(x.clone()), roi, No, C(i1(&[1, 1, 3, 7]))]);
    }
}

#[test]
fn resize_integers_round_and_saturate() {
    let x = Rng(6).tensor(DType::U8, &[1, 1, 5, 6], 1.0);
    let x = Tensor::from_vec(
        vec![1, 1, 5, 6],
        x.to_f64_vec()
            .iter()
            .enumerate()
            .map(|(i, _)| ((i * 37) % 256) as u8)
            .collect::<Vec<u8>>(),
    );
    for mode in [ResizeMode::Linear, ResizeMode::Cubic] {
        let op = resize(mode, CoordinateTransform::HalfPixel);
        run(
            op.clone(),
            &[X(x.clone()), No, scales(&[1.0, 1.0, 1.6, 2.5])],
        );
        run(
            op,
            &[
                X(x.cast(DType::I8, false)),
                No,
                scales(&[1.0, 1.0, 2.0, 0.5]),
            ],
        );
    }
}

#[test]
fn resize_large_linear_runs_in_parallel() {
    let x = rnd(DType::F32, &[1, 4, 64, 64], 7);
    let op = resize(ResizeMode::Linear, CoordinateTransform::HalfPixel);
    let l = run(op, &[X(x), No, scales(&[1.0, 1.0, 2.0, 2.0])]);
    assert!(kernel(&l).count_loops(|k| k == LoopKind::Parallel) >= 1);
}

#[test]
fn resize_nearest_irregular_maps_use_offset_tables() {
    // Maps of many runs with extrapolated entries: on both axes, and on
    // the outer axis only (the inner one copied as it is).
    let x = rnd(DType::F32, &[1, 1, 12, 12], 8);
    let op = Resize {
        extrapolation_value: -3.0,
        ..resize(ResizeMode::Nearest, CoordinateTransform::TfCropAndResize)
    };
    let roi = |v: [f32; 8]| C(Tensor::from_vec(vec![8], v.to_vec()));
    let both = roi([0.0, 0.0, -0.3, 0.1, 1.0, 1.0, 1.2, 1.4]);
    let l = run(
        op.clone(),
        &[X(x.clone()), both, No, C(i1(&[1, 1, 29, 31]))],
    );
    assert!(knob(&l, "offset_table").is_some());
    let outer = roi([0.0, 0.0, -0.3, 0.0, 1.0, 1.0, 1.2, 1.0]);
    let l = run(
        op.clone(),
        &[X(x.clone()), outer, No, C(i1(&[1, 1, 29, 12]))],
    );
    assert!(knob(&l, "offset_table").is_some());
    for dt in [DType::U8, DType::I32] {
        let r = roi([0.0, 0.0, 0.1, -0.3, 1.0, 1.0, 0.9, 1.2]);
        run(
            op.clone(),
            &[X(x.cast(dt, true)), r, No, C(i1(&[1, 1, 12, 29]))],
        );
    }
}

// ---- parameters known only at run time ----

fn runtime(l: &Lowered) -> bool {
    knob(l, "parameters") == Some(&AttrValue::Str("runtime".into()))
}

#[test]
fn slices_with_runtime_bounds() {
    let x = rnd(DType::F32, &[5, 6, 7], 1);
    let cases: &[SliceCase] = &[
        (&[1], &[4], None, None),
        (&[0, 1, 2], &[5, 5, 7], None, Some(&[2, 2, 3])),
        (&[-1], &[-100], Some(&[2]), Some(&[-1])),
        (&[4, 10], &[0, -100], Some(&[0, 1]), Some(&[-2, -3])),
        (&[-3, 0], &[100, 100], Some(&[-1, 0]), None),
        (&[i64::MIN], &[i64::MAX], Some(&[1]), Some(&[1])),
        (&[i64::MAX], &[i64::MIN], Some(&[2]), Some(&[-1])),
    ];
    for dt in [DType::F32, DType::U8, DType::Bool] {
        let x = x.cast(dt, true);
        for (starts, ends, axes, steps) in cases {
            // Everything at run time, then the axes constant.
            for const_axes in [false, true] {
                let mut ins = vec![X(x.clone()), P(i1(starts)), P(i1(ends))];
                ins.push(match axes {
                    Some(a) if const_axes => C(i1(a)),
                    Some(a) => P(i1(a)),
                    None => No,
                });
                ins.push(steps.map_or(No, |s| P(i1(s))));
                let l = run(Slice {}, &ins);
                assert!(runtime(&l));
            }
        }
    }
    // i32 parameters.
    let b = |v: &[i32]| P(Tensor::from_vec(vec![v.len()], v.to_vec()));
    run(
        Slice {},
        &[X(x), b(&[1, 0]), b(&[-1, 7]), b(&[0, 2]), b(&[1, 2])],
    );
}

#[test]
fn pads_with_runtime_amounts() {
    let modes = [
        PadMode::Constant,
        PadMode::Reflect,
        PadMode::Edge,
        PadMode::Wrap,
    ];
    let x = rnd(DType::F32, &[2, 3, 4], 1);
    for dt in [DType::F32, DType::I8, DType::Bool] {
        let x = x.cast(dt, true);
        for mode in modes {
            for p in [
                &[0, 1, 2, 0, 2, 1][..],
                &[0, -1, 2, 1, 1, -2],
                &[0, 7, 9, 0, 8, 11],
            ] {
                let l = run(Pad { mode }, &[X(x.clone()), P(i1(p))]);
                assert!(runtime(&l));
            }
            // Axes at run time (negative) and as constants.
            run(
                Pad { mode },
                &[X(x.clone()), P(i1(&[2, 1, 1, 3])), No, P(i1(&[-1, 1]))],
            );
            run(
                Pad { mode },
                &[X(x.clone()), P(i1(&[2, 1, 1, 3])), No, C(i1(&[2, 0]))],
            );
        }
    }
    let v = Tensor::scalar(-2.5f32);
    run(
        Pad {
            mode: PadMode::Constant,
        },
        &[X(x.clone()), P(i1(&[1, 0, 2, 1, 1, 0])), X(v)],
    );
}

#[test]
fn runtime_conditions_and_targets() {
    let x = rnd(DType::F32, &[3, 5], 1);
    let cond = |v: &[bool]| P(Tensor::from_vec(vec![v.len()], v.to_vec()));
    for (axis, c) in [
        (Some(1), &[true, false, true, true][..]),
        (Some(0), &[false, true, true]),
        (None, &[true, false, false, true, true, false, true]),
        (Some(-1), &[false, true, false, false, true, false]),
    ] {
        let l = run(Compress { axis }, &[X(x.clone()), cond(c)]);
        assert!(runtime(&l));
    }
    let x = rnd(DType::I32, &[5, 4, 3], 2);
    run(
        CenterCropPad { axes: None },
        &[X(x.clone()), P(i1(&[3, 7, 3]))],
    );
    run(
        CenterCropPad {
            axes: Some(vec![-1, 0]),
        },
        &[X(x), P(i1(&[6, 2]))],
    );
}

fn fvals(v: &[f32]) -> Tensor {
    Tensor::from_vec(vec![v.len()], v.to_vec())
}

#[test]
fn resize_with_runtime_scales_and_sizes() {
    let x = rnd(DType::F32, &[1, 2, 4, 5], 3);
    for mode in [ResizeMode::Nearest, ResizeMode::Linear, ResizeMode::Cubic] {
        for ct in COORDS {
            let op = resize(mode, ct);
            for s in [
                [1.0, 1.0, 2.0, 2.0],
                [1.0, 1.0, 0.6, 1.7],
                [1.0, 1.0, 1.0, 0.5],
            ] {
                let l = run(op.clone(), &[X(x.clone()), No, P(fvals(&s))]);
                assert!(runtime(&l));
            }
            run(op.clone(), &[X(x.clone()), No, No, P(i1(&[1, 2, 9, 3]))]);
        }
    }
    let modes = [
        NearestMode::RoundPreferFloor,
        NearestMode::RoundPreferCeil,
        NearestMode::Floor,
        NearestMode::Ceil,
    ];
    for nm in modes {
        let op = Resize {
            nearest_mode: nm,
            ..resize(ResizeMode::Nearest, CoordinateTransform::HalfPixel)
        };
        run(op, &[X(x.clone()), No, P(fvals(&[1.0, 1.0, 1.5, 0.8]))]);
    }
    // Axes, aspect-ratio policies, exclude_outside, antialias, integers.
    let x = rnd(DType::F32, &[1, 1, 9, 12], 4);
    let op = Resize {
        axes: Some(vec![3, 2]),
        ..resize(ResizeMode::Linear, CoordinateTransform::AlignCorners)
    };
    run(op, &[X(x.clone()), No, P(fvals(&[0.5, 1.5]))]);
    for policy in [AspectRatioPolicy::NotLarger, AspectRatioPolicy::NotSmaller] {
        for mode in [ResizeMode::Nearest, ResizeMode::Linear] {
            let op = Resize {
                axes: Some(vec![2, 3]),
                keep_aspect_ratio_policy: policy,
                ..resize(mode, CoordinateTransform::HalfPixel)
            };
            run(op, &[X(x.clone()), No, No, P(i1(&[7, 7]))]);
        }
    }
    for mode in [ResizeMode::Nearest, ResizeMode::Cubic] {
        let op = Resize {
            exclude_outside: true,
            cubic_coeff_a: -0.5,
            nearest_mode: NearestMode::Floor,
            ..resize(mode, CoordinateTransform::HalfPixel)
        };
        run(op, &[X(x.clone()), No, P(fvals(&[1.0, 1.0, 1.7, 0.8]))]);
    }
    for mode in [ResizeMode::Linear, ResizeMode::Cubic] {
        let op = Resize {
            antialias: true,
            ..resize(mode, CoordinateTransform::HalfPixel)
        };
        run(
            op.clone(),
            &[X(x.clone()), No, P(fvals(&[1.0, 1.0, 0.4, 0.6]))],
        );
        run(op, &[X(x.clone()), No, No, P(i1(&[1, 1, 4, 5]))]);
    }
    let op = resize(ResizeMode::Linear, CoordinateTransform::HalfPixel);
    let xi = x.cast(DType::U8, true);
    run(op.clone(), &[X(xi), No, P(fvals(&[1.0, 1.0, 1.6, 2.5]))]);
    run(
        op,
        &[
            X(x.cast(DType::F64, true)),
            No,
            P(fvals(&[1.0, 1.0, 0.5, 1.5])),
        ],
    );
}

#[test]
fn resize_tf_crop_with_runtime_roi() {
    let x = rnd(DType::F32, &[1, 1, 4, 5], 5);
    let roi = fvals(&[0.0, 0.0, -0.2, 0.4, 1.0, 1.0, 0.6, 1.3]);
    for mode in [ResizeMode::Nearest, ResizeMode::Linear, ResizeMode::Cubic] {
        let op = Resize {
            extrapolation_value: 10.0,
            ..resize(mode, CoordinateTransform::TfCropAndResize)
        };
        run(
            op.clone(),
            &[X(x.clone()), P(roi.clone()), No, P(i1(&[1, 1, 3, 7]))],
        );
        run(
            op.clone(),
            &[X(x.clone()), P(roi.clone()), No, C(i1(&[1, 1, 3, 7]))],
        );
        let r2 = fvals(&[0.4, 0.6, 0.8, 0.9]);
        let op2 = Resize {
            axes: Some(vec![3, 2]),
            ..op
        };
        run(op2, &[X(x.clone()), P(r2), P(fvals(&[2.0, 0.5]))]);
    }
}

// ---- half formats move as bits ----

/// Lowers and runs `g`, comparing the outputs' bytes with the
/// interpreter's (half tensors live in kernels as `u16` bits).
fn check_bits(g: &Graph, inputs: Vec<Tensor>) {
    let target = saturn_ir::target::Target::named("x86-64-avx512").unwrap();
    let l = saturn_passes::lower::lower(g, &target, &Default::default());
    assert!(l.fallbacks(g).is_empty(), "fell back: {:?}", l.fallbacks(g));
    let want = saturn_ir::interp::run(g, inputs.clone()).expect("interpreter");
    let got = saturn_passes::lower::exec::run_lowered(g, &l, inputs, &mut |_, k, b| {
        saturn_ir::kernel::eval::eval_kernel(k, b, &[]).map_err(|e| e.to_string())
    })
    .unwrap();
    for (w, a) in want.iter().zip(&got) {
        assert_eq!(w.shape(), a.shape());
        assert_eq!(w.to_le_bytes(), a.to_le_bytes());
    }
}

fn run_bits(op: impl Into<Op>, ins: &[In]) {
    let (g, inputs) = graph(op, ins, 1);
    check_bits(&g, inputs);
}

#[test]
fn half_tensors_move_as_bits() {
    for dt in [DType::F16, DType::BF16] {
        let x = rnd(DType::F32, &[2, 3, 5], 1).cast(dt, true);
        let value = Tensor::scalar(2.5f32)
            .cast(dt, true)
            .reshape(vec![])
            .unwrap();
        run_bits(
            Pad {
                mode: PadMode::Constant,
            },
            &[X(x.clone()), C(i1(&[0, 1, 2, 0, 1, 1])), C(value.clone())],
        );
        run_bits(
            Pad {
                mode: PadMode::Constant,
            },
            &[X(x.clone()), P(i1(&[0, 1, 2, 0, 1, 1])), X(value.clone())],
        );
        run_bits(Trilu { upper: false }, &[X(x.clone())]);
        run_bits(
            CenterCropPad { axes: None },
            &[X(x.clone()), C(i1(&[3, 2, 7]))],
        );
        run_bits(
            Transpose {
                perm: Some(vec![2, 0, 1]),
            },
            &[X(x.clone())],
        );
        run_bits(Gather { axis: 2 }, &[X(x.clone()), X(i1(&[4, -1, 0]))]);
        run_bits(
            ConstantOfShape {
                value: Some(value.reshape(vec![1]).unwrap()),
            },
            &[C(i1(&[3, 4]))],
        );
        run_bits(
            Slice {},
            &[
                X(x),
                C(i1(&[-1])),
                C(i1(&[-100])),
                C(i1(&[2])),
                C(i1(&[-2])),
            ],
        );
    }
}

#[test]
fn bit_casts_between_dtypes_of_one_width() {
    let pairs = [
        (DType::F32, DType::I32),
        (DType::I32, DType::F32),
        (DType::F64, DType::U64),
        (DType::I8, DType::U8),
        (DType::U16, DType::I16),
        (DType::Bool, DType::U8),
        (DType::U8, DType::Bool),
        (DType::I64, DType::I64),
    ];
    for (from, to) in pairs {
        let x = if from == DType::U8 && to == DType::Bool {
            // Bytes that are booleans.
            rnd(DType::Bool, &[3, 7], 2).cast(DType::U8, true)
        } else {
            rnd(from, &[3, 7], 1)
        };
        run(BitCast { to }, &[X(x.clone())]);
        run(BitCast { to }, &[X(x.reshape(vec![21]).unwrap())]);
    }
    run(BitCast { to: DType::I32 }, &[X(Tensor::scalar(1.5f32))]);
}

#[test]
fn tensor_scatter_updates_caches() {
    for mode in [TensorScatterMode::Linear, TensorScatterMode::Circular] {
        for dt in [DType::F32, DType::I8] {
            // [batch, heads, max_len, dim], two new rows per batch entry.
            let past = rnd(dt, &[2, 3, 6, 5], 1);
            let upd = rnd(dt, &[2, 3, 2, 5], 2);
            let writes = if mode == TensorScatterMode::Circular {
                i1(&[5, -1])
            } else {
                i1(&[4, 1])
            };
            let op = TensorScatter { axis: -2, mode };
            run(op.clone(), &[X(past.clone()), X(upd.clone()), X(writes)]);
            run(op, &[X(past), X(upd), No]);
            // The sequence axis last, in 3-D.
            let op = TensorScatter { axis: 2, mode };
            run(
                op,
                &[
                    X(rnd(dt, &[2, 4, 7], 3)),
                    X(rnd(dt, &[2, 4, 3], 4)),
                    X(i1(&[0, 4])),
                ],
            );
        }
    }
}
