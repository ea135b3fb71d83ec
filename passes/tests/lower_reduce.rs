//! Lowering of reductions, arg-reductions, scans and the softmax family,
//! checked against the interpreter on random inputs.

mod common;

use common::{Rng, check, single};
use saturn_ir::kernel::{Expr, Kernel, ReduceOp, Stmt, visit_exprs};
use saturn_ir::ops::*;
use saturn_ir::{AttrValue, DType, Op, Tensor, TensorType};

fn tt(dt: DType, shape: &[usize]) -> TensorType {
    TensorType::known(dt, shape)
}

fn axes_t(a: &[i64]) -> Tensor {
    Tensor::from_vec(vec![a.len()], a.to_vec())
}

/// Values in [lo, hi) of `dt`.
fn values(rng: &mut Rng, dt: DType, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.uniform(lo, hi)).collect();
    let t = Tensor::from_vec(shape.to_vec(), v);
    if dt.is_float() {
        t.cast(dt, true)
    } else {
        t.cast(DType::I64, true).cast(dt, true)
    }
}

#[derive(Clone, Copy, Debug)]
enum R {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

const ALL: [R; 10] = [
    R::Sum,
    R::Mean,
    R::Max,
    R::Min,
    R::Prod,
    R::L1,
    R::L2,
    R::LogSum,
    R::LogSumExp,
    R::SumSquare,
];

fn op(r: R, keepdims: bool, noop: bool) -> Op {
    let (k, n) = (keepdims, noop);
    match r {
        R::Sum => ReduceSum {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::Mean => ReduceMean {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::Max => ReduceMax {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::Min => ReduceMin {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::Prod => ReduceProd {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::L1 => ReduceL1 {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::L2 => ReduceL2 {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::LogSum => ReduceLogSum {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::LogSumExp => ReduceLogSumExp {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
        R::SumSquare => ReduceSumSquare {
            keepdims: k,
            noop_with_empty_axes: n,
        }
        .into(),
    }
}

/// Checks one reduction; `axes: None` leaves input 1 out.
fn reduce_case(
    rng: &mut Rng,
    r: R,
    dt: DType,
    shape: &[usize],
    axes: Option<&[i64]>,
    keepdims: bool,
    noop: bool,
) -> Kernel {
    let (lo, hi) = match r {
        // Positive sums, so that the logarithm is well conditioned.
        R::LogSum => (0.1, 2.0),
        // Products stay in range.
        R::Prod if dt.is_float() => (0.5, 1.5),
        _ if dt.is_unsigned_int() => (0.0, 50.0),
        _ if dt.is_float() => (-3.0, 3.0),
        _ => (-50.0, 50.0),
    };
    let x = values(rng, dt, shape, lo, hi);
    let consts: Vec<(usize, Tensor)> = axes.map(|a| (1, axes_t(a))).into_iter().collect();
    let g = single(op(r, keepdims, noop), &[tt(dt, shape)], &consts);
    let l = check(&g, vec![x]);
    l.kernels[0].clone()
}

#[test]
fn float_reductions_over_axes() {
    let mut rng = Rng(1);
    let cases: &[(&[usize], Option<&[i64]>)] = &[
        (&[7], None),
        (&[7], Some(&[0])),
        (&[2, 3, 5], Some(&[1])),
        (&[2, 3, 5], Some(&[-1])),
        (&[2, 3, 5], Some(&[0, 2])),
        (&[2, 3, 5], None),
        (&[3, 1, 9], Some(&[0])),
        (&[3, 1, 9], Some(&[1])),
        (&[4, 13], Some(&[1])),
        (&[13, 4], Some(&[0])),
        (&[2, 6, 7, 3], Some(&[1, 3])),
        (&[2, 6, 7, 3], Some(&[0, 1, 2])),
        (&[5, 37], Some(&[1])),
        (&[37, 6], Some(&[0])),
        (&[1], Some(&[0])),
        (&[], None),
    ];
    for dt in [DType::F32, DType::F64] {
        for r in ALL {
            for (shape, axes) in cases {
                for keep in [true, false] {
                    reduce_case(&mut rng, r, dt, shape, *axes, keep, false);
                }
            }
        }
    }
}

#[test]
fn integer_and_bool_reductions() {
    let mut rng = Rng(2);
    let shapes: &[(&[usize], &[i64])] = &[
        (&[3, 9], &[1]),
        (&[9, 5], &[0]),
        (&[2, 3, 4], &[0, 2]),
        (&[6, 2], &[1]),
    ];
    for dt in [
        DType::I32,
        DType::I64,
        DType::I8,
        DType::U8,
        DType::U64,
        DType::I16,
    ] {
        for r in [
            R::Sum,
            R::Max,
            R::Min,
            R::Prod,
            R::Mean,
            R::L1,
            R::SumSquare,
            R::L2,
        ] {
            for (shape, axes) in shapes {
                reduce_case(&mut rng, r, dt, shape, Some(axes), true, false);
            }
        }
    }
    for r in [R::Max, R::Min] {
        for (shape, axes) in shapes {
            let n: usize = shape.iter().product();
            let v: Vec<bool> = (0..n).map(|_| rng.uniform(0.0, 1.0) < 0.7).collect();
            let x = Tensor::from_vec(shape.to_vec(), v);
            let g = single(
                op(r, false, false),
                &[tt(DType::Bool, shape)],
                &[(1, axes_t(axes))],
            );
            check(&g, vec![x]);
        }
    }
}

#[test]
fn integer_extremes_start_from_the_type_bounds() {
    // All lanes at the bounds: max of u64::MAX and min of i64::MIN.
    let x = Tensor::from_vec(vec![2, 5], vec![u64::MAX, 1, 2, 3, 4, 0, 0, 0, 0, u64::MAX]);
    let g = single(
        op(R::Max, true, false),
        &[tt(DType::U64, &[2, 5])],
        &[(1, axes_t(&[1]))],
    );
    check(&g, vec![x]);
    let x = Tensor::from_vec(vec![9], vec![i64::MIN, 3, -4, 5, 6, 7, 8, 9, 10]);
    let g = single(op(R::Min, true, false), &[tt(DType::I64, &[9])], &[]);
    check(&g, vec![x]);
}

#[test]
fn empty_axes_and_zero_size_reductions() {
    let mut rng = Rng(3);
    for r in ALL {
        // noop_with_empty_axes: the input as it is (an empty axes tensor
        // or none at all).
        reduce_case(&mut rng, r, DType::F32, &[3, 5], Some(&[]), true, true);
        reduce_case(&mut rng, r, DType::F32, &[3, 5], None, false, true);
        // Empty axes without noop: everything.
        reduce_case(&mut rng, r, DType::F32, &[3, 5], Some(&[]), false, false);
        // Reducing a zero-size dim gives the identity.
        for keep in [true, false] {
            reduce_case(&mut rng, r, DType::F32, &[2, 0], Some(&[1]), keep, false);
            reduce_case(&mut rng, r, DType::F64, &[0, 3], Some(&[0]), keep, false);
        }
        reduce_case(&mut rng, r, DType::F32, &[0, 3], Some(&[1]), true, false);
    }
    for r in [R::Sum, R::Max, R::Min, R::Prod, R::Mean] {
        reduce_case(&mut rng, r, DType::I32, &[2, 0], Some(&[1]), true, false);
        reduce_case(&mut rng, r, DType::U8, &[2, 0], Some(&[1]), true, false);
    }
}

#[test]
fn special_values() {
    let inf = f64::INFINITY;
    let nan = f64::NAN;
    let rows = vec![
        1000.0, 1001.0, 999.0, 1000.5, 998.0, -inf, //
        -inf, -inf, -inf, -inf, -inf, -inf, //
        1.0, nan, 2.0, 3.0, 4.0, 5.0, //
        1.0, inf, 2.0, -inf, 0.0, 7.0, //
        -1e4, 1e4, 0.0, 3.0, -2.0, 1.0,
    ];
    let x = Tensor::from_vec(vec![5, 6], rows);
    for r in ALL {
        for dt in [DType::F32, DType::F64] {
            let g = single(op(r, true, false), &[tt(dt, &[5, 6])], &[(1, axes_t(&[1]))]);
            check(&g, vec![x.cast(dt, true)]);
        }
    }
}

/// Every `Reduce` expression of a kernel.
fn horizontal(k: &Kernel) -> Vec<ReduceOp> {
    let mut out = Vec::new();
    visit_exprs(&k.body, &mut |e| {
        if let Expr::Reduce(op, _) = e {
            out.push(*op);
        }
    });
    out
}

fn sched(k: &Kernel, key: &str) -> Option<AttrValue> {
    k.schedule.get(key).cloned()
}

#[test]
fn loop_structure_follows_the_layout() {
    let mut rng = Rng(4);
    // Reduced dim innermost and contiguous: vectors along it, merged by
    // a horizontal reduce; the masked tail is filled with the identity.
    let k = reduce_case(
        &mut rng,
        R::Max,
        DType::F32,
        &[3, 70],
        Some(&[1]),
        true,
        false,
    );
    assert_eq!(sched(&k, "vectorize"), Some(AttrValue::Str("along".into())));
    assert_eq!(sched(&k, "unroll"), Some(AttrValue::Int(4)));
    assert_eq!(horizontal(&k), vec![ReduceOp::Max]);
    // Kept dim innermost: vectors across it, no horizontal reduce.
    let k = reduce_case(
        &mut rng,
        R::Sum,
        DType::F32,
        &[9, 10],
        Some(&[0]),
        true,
        false,
    );
    assert_eq!(
        sched(&k, "vectorize"),
        Some(AttrValue::Str("across".into()))
    );
    assert!(horizontal(&k).is_empty());
    // Too short to vectorise: scalar.
    let k = reduce_case(
        &mut rng,
        R::Sum,
        DType::F32,
        &[9, 3],
        Some(&[0]),
        true,
        false,
    );
    assert_eq!(sched(&k, "vector"), Some(AttrValue::Int(1)));
    // Large inputs run their rows in parallel.
    let k = reduce_case(
        &mut rng,
        R::Sum,
        DType::F32,
        &[64, 600],
        Some(&[1]),
        true,
        false,
    );
    assert!(k.count_loops(|l| l == saturn_ir::kernel::LoopKind::Parallel) >= 1);
    let k = reduce_case(
        &mut rng,
        R::Mean,
        DType::F32,
        &[600, 64],
        Some(&[0]),
        false,
        false,
    );
    assert!(k.count_loops(|l| l == saturn_ir::kernel::LoopKind::Parallel) >= 1);
    let k = reduce_case(
        &mut rng,
        R::Mean,
        DType::F32,
        &[100, 2000],
        Some(&[0]),
        false,
        false,
    );
    assert!(k.count_loops(|l| l == saturn_ir::kernel::LoopKind::Parallel) >= 1);
}

#[test]
fn reduce_sum_takes_an_epilogue() {
    use saturn_ir::builder::GraphBuilder;
    let mut rng = Rng(5);
    for (shape, axes, keep) in [
        (vec![4usize, 9], vec![1i64], true),
        (vec![4, 9], vec![0], false),
        (vec![2, 3, 8], vec![1], true),
    ] {
        let mut b = GraphBuilder::new("g");
        let x = b.input("x", tt(DType::F32, &shape)).unwrap();
        let a = b.constant("axes", axes_t(&axes)).unwrap();
        let s = b
            .op(
                ReduceSum {
                    keepdims: keep,
                    noop_with_empty_axes: false,
                },
                &[x, a],
            )
            .unwrap();
        let y = b.op(Relu {}, &[s]).unwrap();
        let g = b.finish(vec![y]);
        let xv = values(&mut rng, DType::F32, &shape, -2.0, 2.0);
        let l = check(&g, vec![xv]);
        assert_eq!(l.kernels.len(), 1, "one fused kernel");
    }
}

fn arg(max: bool, axis: i64, keepdims: bool, last: bool) -> Op {
    if max {
        ArgMax {
            axis,
            keepdims,
            select_last_index: last,
        }
        .into()
    } else {
        ArgMin {
            axis,
            keepdims,
            select_last_index: last,
        }
        .into()
    }
}

#[test]
fn arg_reductions() {
    let mut rng = Rng(6);
    let shapes: &[(&[usize], i64)] = &[
        (&[7], 0),
        (&[3, 5], 1),
        (&[3, 5], 0),
        (&[4, 3, 9], 1),
        (&[2, 6, 5], -1),
        (&[1, 1], 0),
        (&[5, 1, 3], 0),
    ];
    for dt in [
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::I16,
    ] {
        for (shape, axis) in shapes {
            for max in [true, false] {
                for keep in [true, false] {
                    for last in [true, false] {
                        // Few distinct values, so that ties happen.
                        let x = values(&mut rng, dt, shape, 0.0, 3.0);
                        let x = if dt.is_float() {
                            x.cast(DType::I64, true).cast(dt, true)
                        } else {
                            x
                        };
                        let g = single(arg(max, *axis, keep, last), &[tt(dt, shape)], &[]);
                        check(&g, vec![x]);
                    }
                }
            }
        }
    }
}

#[test]
fn arg_reductions_with_nan() {
    let nan = f64::NAN;
    let x = Tensor::from_vec(
        vec![4, 5],
        vec![
            1.0, nan, 3.0, nan, 0.0, //
            2.0, 2.0, 1.0, 1.0, 2.0, //
            nan, 1.0, 2.0, 3.0, 4.0, //
            -1.0, -1.0, -2.0, -2.0, 5.0,
        ],
    );
    for dt in [DType::F32, DType::F64] {
        for axis in [0, 1] {
            for max in [true, false] {
                for last in [true, false] {
                    let g = single(arg(max, axis, true, last), &[tt(dt, &[4, 5])], &[]);
                    check(&g, vec![x.cast(dt, true)]);
                }
            }
        }
    }
}

#[test]
fn cumulative_scans() {
    let mut rng = Rng(7);
    let shapes: &[(&[usize], i64)] = &[
        (&[7], 0),
        (&[3, 5], 1),
        (&[3, 5], 0),
        (&[4, 3, 9], 1),
        (&[2, 6, 5], -1),
        (&[5, 1, 3], 0),
        (&[6, 4], 0),
    ];
    for dt in [DType::F32, DType::F64, DType::I32, DType::I64, DType::U8] {
        for (shape, axis) in shapes {
            for prod in [false, true] {
                for exclusive in [false, true] {
                    for reverse in [false, true] {
                        let x = if dt.is_float() {
                            values(&mut rng, dt, shape, 0.6, 1.4)
                        } else {
                            values(&mut rng, dt, shape, 0.0, 5.0)
                        };
                        let op: Op = if prod {
                            CumProd { exclusive, reverse }.into()
                        } else {
                            CumSum { exclusive, reverse }.into()
                        };
                        let a = Tensor::from_vec(vec![], vec![*axis]);
                        let g = single(op, &[tt(dt, shape)], &[(1, a)]);
                        check(&g, vec![x]);
                    }
                }
            }
        }
    }
}

#[test]
fn kernels_have_no_stray_calls() {
    // Reductions expand exp as polynomials; only logs call libm.
    let mut rng = Rng(8);
    let k = reduce_case(
        &mut rng,
        R::LogSumExp,
        DType::F32,
        &[3, 21],
        Some(&[1]),
        true,
        false,
    );
    let mut calls = Vec::new();
    visit_exprs(&k.body, &mut |e| {
        if let Expr::Call(name, ..) = e {
            calls.push(name.clone());
        }
    });
    assert!(calls.iter().all(|c| c == "logf"), "{calls:?}");
    assert!(
        k.body
            .iter()
            .any(|s| matches!(s, Stmt::Store { .. } | Stmt::For { .. }))
    );
}

#[test]
fn runtime_scan_axes() {
    // The axis is a graph input: one loop nest per axis, chosen at run time.
    let mut rng = Rng(9);
    for (shape, axis) in [
        (vec![3usize, 5], 1i64),
        (vec![3, 5], 0),
        (vec![2, 3, 6], -1),
        (vec![2, 3, 6], -3),
    ] {
        for dt in [DType::I32, DType::I64] {
            let x = values(&mut rng, DType::F32, &shape, 0.5, 1.5);
            let a = Tensor::from_vec(vec![], vec![axis]).cast(dt, true);
            let g = single(
                CumSum {
                    exclusive: false,
                    reverse: true,
                },
                &[tt(DType::F32, &shape), tt(dt, &[])],
                &[],
            );
            check(&g, vec![x, a]);
        }
    }
}

#[test]
fn runtime_reduction_axes_follow_from_the_shapes() {
    use saturn_ir::builder::GraphBuilder;
    let mut rng = Rng(10);
    // (input, axes, keepdims, whether the shapes determine the axes: if
    // not, the kernel picks the nest of the given axes at run time)
    let cases: &[(&[usize], &[i64], bool, bool)] = &[
        (&[2, 3, 5], &[1], true, true),
        (&[2, 3, 5], &[0, 2], false, true),
        (&[2, 1, 5], &[1, 2], false, true),
        (&[4, 3, 3], &[0], false, true),
        (&[3, 3], &[1], false, false),
        (&[3, 3], &[-2], false, false),
        (&[3, 2, 2], &[2], false, false),
        (&[3, 2, 2], &[1], false, false),
        (&[2, 2, 1, 2], &[3, 2], false, false),
        (&[2, 2, 2], &[2, 0], false, false),
    ];
    for (shape, axes, keep, determined) in cases {
        let x = values(&mut rng, DType::F32, shape, -2.0, 2.0);
        let mut out: Vec<usize> = Vec::new();
        for (d, &e) in shape.iter().enumerate() {
            let r = shape.len() as i64;
            if axes.iter().any(|&a| (a + r) % r == d as i64) {
                if *keep {
                    out.push(1);
                }
            } else {
                out.push(e);
            }
        }
        let mut b = GraphBuilder::new("g");
        let xv = b.input("x", tt(DType::F32, shape)).unwrap();
        let av = b.input("axes", tt(DType::I64, &[axes.len()])).unwrap();
        let y = b
            .op(
                ReduceL2 {
                    keepdims: *keep,
                    noop_with_empty_axes: false,
                },
                &[xv, av],
            )
            .unwrap();
        let mut g = b.finish(vec![y]);
        // What a model declares: the output's static shape.
        g.set_ty(y, tt(DType::F32, &out));
        let target = saturn_ir::target::Target::named("x86-64-avx512").unwrap();
        let l = saturn_passes::lower::lower(&g, &target, &Default::default());
        let runtime = l.kernels[0].schedule.get("axes") == Some(&AttrValue::Str("runtime".into()));
        assert_eq!(runtime, !determined, "{shape:?} {axes:?}");
        check(&g, vec![x, axes_t(axes)]);
    }
}

const ALGORITHMS: [SoftmaxAlgorithm; 3] = [
    SoftmaxAlgorithm::ThreePass,
    SoftmaxAlgorithm::TwoPass,
    SoftmaxAlgorithm::Online,
];

fn softmax_op(axis: i64, scale: f32, algorithm: SoftmaxAlgorithm) -> Softmax {
    Softmax {
        axis,
        scale,
        algorithm,
    }
}

/// Softmax of `x` (with `mask` as input 1) by every algorithm.
fn softmax_case(x: &Tensor, axis: i64, scale: f32, mask: Option<&Tensor>) -> Vec<Kernel> {
    let mut out = Vec::new();
    for alg in ALGORITHMS {
        let mut types = vec![tt(x.dtype(), x.shape())];
        let mut inputs = vec![x.clone()];
        if let Some(m) = mask {
            types.push(tt(m.dtype(), m.shape()));
            inputs.push(m.clone());
        }
        let g = single(softmax_op(axis, scale, alg), &types, &[]);
        let l = check(&g, inputs);
        out.push(l.kernels[0].clone());
    }
    out
}

/// Loops of a kernel whose variable is named `name` (walks of a row).
fn loops_named(k: &Kernel, name: &str) -> usize {
    fn go(k: &Kernel, s: &[Stmt], name: &str) -> usize {
        s.iter()
            .map(|s| match s {
                Stmt::For { var, body, .. } => {
                    (k.var(*var).name == name) as usize + go(k, body, name)
                }
                Stmt::If { then_, else_, .. } => go(k, then_, name) + go(k, else_, name),
                _ => 0,
            })
            .sum()
    }
    go(k, &k.body, name)
}

#[test]
fn softmax_shapes_axes_and_scales() {
    let mut rng = Rng(20);
    let cases: &[(&[usize], i64)] = &[
        (&[7], 0),
        (&[3, 5], -1),
        (&[3, 5], 0),
        (&[4, 13], 1),
        (&[2, 3, 9], -1),
        (&[5, 4, 6], 1),
        (&[2, 9, 8], 1),
        (&[6, 3], 0),
        (&[3, 1], 1),
        (&[1, 1], 0),
        (&[2, 3], 1),
        (&[2, 4, 3, 5], 2),
    ];
    for dt in [DType::F32, DType::F64] {
        for (shape, axis) in cases {
            for scale in [1.0f32, 0.125, -2.0] {
                let x = values(&mut rng, dt, shape, -8.0, 8.0);
                softmax_case(&x, *axis, scale, None);
            }
        }
    }
}

#[test]
fn softmax_large_magnitudes() {
    let mut rng = Rng(21);
    for dt in [DType::F32, DType::F64] {
        for (shape, axis) in [
            (vec![3usize, 37], -1i64),
            (vec![5, 3], 1),
            (vec![9, 6], 0),
            (vec![4, 7, 5], 1),
        ] {
            // Spread over ±1e4: mostly one winner, exp overflows for most.
            let x = values(&mut rng, dt, &shape, -1e4, 1e4);
            softmax_case(&x, axis, 1.0, None);
            // Clustered near ±1e4, where every exp(x) overflows or
            // underflows but the differences are small.
            for centre in [1e4, -1e4] {
                let x = values(&mut rng, dt, &shape, centre - 6.0, centre + 6.0);
                softmax_case(&x, axis, 1.0, None);
            }
        }
    }
}

#[test]
fn softmax_masks_with_minus_infinity() {
    let mut rng = Rng(22);
    let inf = f64::INFINITY;
    let shape = [2usize, 3, 9];
    let mask_shapes: [&[usize]; 6] = [&[], &[9], &[3, 1], &[1, 3, 9], &[2, 1, 9], &[2, 3, 9]];
    for dt in [DType::F32, DType::F64] {
        for ms in mask_shapes {
            let n: usize = ms.iter().product();
            // Some -inf entries, never a whole row of them.
            let mv: Vec<f64> = (0..n)
                .map(|i| {
                    if i % 5 == 3 {
                        -inf
                    } else {
                        rng.uniform(-2.0, 2.0)
                    }
                })
                .collect();
            let m = Tensor::from_vec(ms.to_vec(), mv).cast(dt, true);
            let x = values(&mut rng, dt, &shape, -4.0, 4.0);
            for axis in [-1i64, 1, 0] {
                for scale in [1.0f32, 0.5] {
                    softmax_case(&x, axis, scale, Some(&m));
                }
            }
        }
        // A causal mask over rows of 13 (tails below the vector width),
        // with large logits, and with the lowest finite value as mask.
        let n = 13;
        let causal: Vec<f64> = (0..n * n)
            .map(|i| if i % n <= i / n { 0.0 } else { -inf })
            .collect();
        let m = Tensor::from_vec(vec![n, n], causal).cast(dt, true);
        for range in [3.0, 1e4] {
            let x = values(&mut rng, dt, &[2, n, n], -range, range);
            softmax_case(&x, -1, 1.0, Some(&m));
        }
        let lowest = if dt == DType::F32 {
            f32::MIN as f64
        } else {
            -1e300
        };
        let pad: Vec<f64> = (0..n).map(|i| if i >= 9 { lowest } else { 0.0 }).collect();
        let m = Tensor::from_vec(vec![n], pad).cast(dt, true);
        let x = values(&mut rng, dt, &[3, n], -5.0, 5.0);
        softmax_case(&x, -1, 1.0, Some(&m));
    }
}

#[test]
fn softmax_special_rows() {
    let inf = f64::INFINITY;
    let nan = f64::NAN;
    let rows: Vec<Vec<f64>> = vec![
        vec![-inf; 6],
        vec![-inf, 0.0, -inf, 0.0, 1.0, -inf],
        vec![1.0, nan, 2.0, 0.0, 1.0, 2.0],
        vec![1.0, inf, 2.0, 0.0, 1.0, 2.0],
        vec![1000.0, 1001.0, 1002.0, 1001.0, 999.0, 990.0],
        vec![-3.0, -3.0, -3.0, -3.0, -3.0, -3.0],
    ];
    let flat: Vec<f64> = rows.concat();
    for dt in [DType::F32, DType::F64] {
        let x = Tensor::from_vec(vec![6, 6], flat.clone()).cast(dt, true);
        softmax_case(&x, -1, 1.0, None);
        // The same rows along a strided axis.
        let xt: Vec<f64> = (0..36).map(|i| flat[(i % 6) * 6 + i / 6]).collect();
        let x = Tensor::from_vec(vec![6, 6], xt).cast(dt, true);
        softmax_case(&x, 0, 1.0, None);
        // A row of length 1: always 1.
        let x = Tensor::from_vec(vec![4, 1], vec![-1e30, 0.0, 5.0, 1e4]).cast(dt, true);
        softmax_case(&x, 1, 1.0, None);
    }
}

#[test]
fn softmax_algorithms_emit_their_own_loops() {
    let mut rng = Rng(23);
    let x = values(&mut rng, DType::F32, &[3, 37], -3.0, 3.0);
    let ks = softmax_case(&x, -1, 1.0, None);
    let alg: Vec<_> = ks.iter().map(|k| sched(k, "algorithm")).collect();
    assert_eq!(
        alg,
        ["three_pass", "two_pass", "online"].map(|a| Some(AttrValue::Str(a.into())))
    );
    for k in &ks {
        assert_eq!(sched(k, "vectorize"), Some(AttrValue::Str("along".into())));
    }
    // Passes over the row: 3, 2, 2.
    assert_eq!(
        ks.iter().map(|k| loops_named(k, "j")).collect::<Vec<_>>(),
        [3, 2, 2]
    );
    // Three-pass and online merge lanes with max and add; two-pass has no
    // max over the row's logits, only the lanes' exponents.
    assert_eq!(horizontal(&ks[0]), [ReduceOp::Max, ReduceOp::Add]);
    assert_eq!(horizontal(&ks[1]), [ReduceOp::Max, ReduceOp::Add]);
    assert_eq!(horizontal(&ks[2]), [ReduceOp::Max, ReduceOp::Add]);
    // Across rows (axis not innermost): no horizontal reduction.
    let x = values(&mut rng, DType::F32, &[7, 9], -3.0, 3.0);
    for k in softmax_case(&x, 0, 1.0, None) {
        assert_eq!(
            sched(&k, "vectorize"),
            Some(AttrValue::Str("across".into()))
        );
        assert!(horizontal(&k).is_empty());
    }
    // Large inputs run rows in parallel.
    let x = values(&mut rng, DType::F32, &[64, 600], -3.0, 3.0);
    for k in softmax_case(&x, -1, 1.0, None) {
        assert_eq!(
            k.count_loops(|l| l == saturn_ir::kernel::LoopKind::Parallel),
            1
        );
    }
}

#[test]
fn softmax_takes_an_epilogue() {
    use saturn_ir::builder::GraphBuilder;
    let mut rng = Rng(24);
    for alg in ALGORITHMS {
        for (shape, axis) in [(vec![3usize, 10], -1i64), (vec![5, 6], 0)] {
            let mut b = GraphBuilder::new("g");
            let x = b.input("x", tt(DType::F32, &shape)).unwrap();
            let s = b.op(softmax_op(axis, 1.0, alg), &[x]).unwrap();
            let c = b
                .constant("c", Tensor::from_vec(vec![], vec![3f32]))
                .unwrap();
            let y = b.op(Mul {}, &[s, c]).unwrap();
            let g = b.finish(vec![y]);
            let l = check(&g, vec![values(&mut rng, DType::F32, &shape, -3.0, 3.0)]);
            assert_eq!(l.kernels.len(), 1);
        }
    }
}

#[test]
fn log_softmax_and_hardmax() {
    let mut rng = Rng(25);
    let cases: &[(&[usize], i64)] = &[
        (&[7], 0),
        (&[3, 5], -1),
        (&[3, 5], 0),
        (&[4, 13], 1),
        (&[5, 4, 6], 1),
        (&[2, 9, 8], 1),
        (&[6, 3], 0),
        (&[3, 1], 1),
    ];
    for dt in [DType::F32, DType::F64] {
        for (shape, axis) in cases {
            // Few distinct values: ties for hardmax.
            let x = values(&mut rng, dt, shape, 0.0, 3.0)
                .cast(DType::I64, true)
                .cast(dt, true);
            let g = single(Hardmax { axis: *axis }, &[tt(dt, shape)], &[]);
            check(&g, vec![x]);
            let x = values(&mut rng, dt, shape, -20.0, 20.0);
            let g = single(LogSoftmax { axis: *axis }, &[tt(dt, shape)], &[]);
            check(&g, vec![x.clone()]);
            let x = values(&mut rng, dt, shape, -1e4, 1e4);
            check(&g, vec![x]);
        }
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let x = Tensor::from_vec(
            vec![3, 5],
            vec![
                1.0, nan, 3.0, nan, 0.0, -inf, -inf, -inf, -inf, -inf, 2.0, 2.0, inf, 1.0, inf,
            ],
        )
        .cast(dt, true);
        for axis in [0, 1] {
            check(
                &single(Hardmax { axis }, &[tt(dt, &[3, 5])], &[]),
                vec![x.clone()],
            );
            check(
                &single(LogSoftmax { axis }, &[tt(dt, &[3, 5])], &[]),
                vec![x.clone()],
            );
        }
    }
}

/// Rows long enough for several independent accumulators (pairs, for the
/// two-pass and online algorithms), merged at the end: ordinary rows, a
/// masked-out row, -inf and +inf in the later parts, a NaN first,
/// remainders.
#[test]
fn softmax_long_rows_with_several_accumulators() {
    let mut rng = Rng(24);
    for n in [128, 300, 1000] {
        let mut x = values(&mut rng, DType::F32, &[4, n], -20.0, 20.0).to_f64_vec();
        // Row 1: all -inf but one late element; row 2: -inf early, +inf late.
        for (j, v) in x[n..2 * n].iter_mut().enumerate() {
            *v = if j == n - 3 { 2.0 } else { f64::NEG_INFINITY };
        }
        x[2 * n] = f64::NEG_INFINITY;
        x[2 * n + n / 2] = 80.0;
        // Row 3: NaN first, in a lane whose later elements are finite.
        x[3 * n] = f64::NAN;
        let x = Tensor::from_vec(vec![4, n], x).cast(DType::F32, true);
        softmax_case(&x, -1, 1.0, None);
        // Wide vectors keep four accumulators (pairs) on such rows.
        for alg in ALGORITHMS {
            let g = single(softmax_op(-1, 1.0, alg), &[tt(DType::F32, &[4, n])], &[]);
            let l = common::check_for(
                &g,
                vec![x.clone()],
                &Default::default(),
                1e-4,
                1e-5,
                "x86-64-avx512",
            );
            assert_eq!(
                l.kernels[0].schedule.get("unroll"),
                Some(&AttrValue::Int(4)),
                "{alg:?}"
            );
        }
        let m = values(&mut rng, DType::F32, &[n], -2.0, 2.0);
        softmax_case(&x, -1, 0.5, Some(&m));
    }
}
