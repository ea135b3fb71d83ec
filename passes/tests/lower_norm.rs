//! Lowering of the normalizations, checked against the interpreter on
//! random inputs.

mod common;

use common::{Rng, check, single};
use saturn_ir::builder::GraphBuilder;
use saturn_ir::kernel::{Kernel, LoopKind};
use saturn_ir::ops::*;
use saturn_ir::{AttrValue, DType, Graph, Op, Tensor, TensorType};

fn tt(dt: DType, shape: &[usize]) -> TensorType {
    TensorType::known(dt, shape)
}

fn values(rng: &mut Rng, dt: DType, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.uniform(lo, hi)).collect();
    Tensor::from_vec(shape.to_vec(), v).cast(dt, true)
}

/// A graph of one node with `n_out` outputs over inputs `x0, x1, …`.
fn multi(op: impl Into<Op>, inputs: &[TensorType], n_out: usize) -> Graph {
    let mut b = GraphBuilder::new("g");
    let vals: Vec<Option<_>> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| Some(b.input(format!("x{i}"), t.clone()).unwrap()))
        .collect();
    let outs = b
        .node("", op.into(), vals, vec![(String::new(), None); n_out])
        .unwrap();
    b.finish(outs)
}

fn sched(k: &Kernel, key: &str) -> Option<AttrValue> {
    k.schedule.get(key).cloned()
}

#[test]
fn layer_normalization() {
    let mut rng = Rng(1);
    // (shape, axis, scale shape)
    let cases: &[(&[usize], i64, &[usize])] = &[
        (&[2, 3, 8], -1, &[8]),
        (&[2, 3, 8], 1, &[3, 8]),
        (&[2, 3, 8], 1, &[3, 1]),
        (&[2, 3, 8], 0, &[2, 3, 8]),
        (&[4, 13], 1, &[13]),
        (&[4, 13], -1, &[1, 13]),
        (&[5, 3], 1, &[3]),
        (&[2, 3, 4, 5], 2, &[4, 5]),
        (&[2, 3, 4, 5], -3, &[5]),
        (&[7], 0, &[7]),
        (&[3, 1], 1, &[1]),
        (&[3, 45], -1, &[45]),
        (&[2, 5, 9], 1, &[5, 9]),
    ];
    for dt in [DType::F32, DType::F64] {
        for (shape, axis, ss) in cases {
            for (bias, n_out) in [(true, 1), (false, 1), (true, 3), (false, 2)] {
                for stash in [1i64, 11] {
                    let op = LayerNormalization {
                        axis: *axis,
                        epsilon: 1e-5,
                        stash_type: stash,
                    };
                    let mut types = vec![tt(dt, shape), tt(dt, ss)];
                    let mut inputs = vec![
                        values(&mut rng, dt, shape, 90.0, 110.0),
                        values(&mut rng, dt, ss, -2.0, 2.0),
                    ];
                    if bias {
                        types.push(tt(dt, ss));
                        inputs.push(values(&mut rng, dt, ss, -1.0, 1.0));
                    }
                    let g = multi(op, &types, n_out);
                    check(&g, inputs);
                }
            }
        }
    }
}

#[test]
fn layer_normalization_of_empty_rows() {
    // Zero-size normalized dims: the statistics are NaN.
    let op = LayerNormalization {
        axis: 1,
        epsilon: 1e-5,
        stash_type: 1,
    };
    let g = multi(op, &[tt(DType::F32, &[3, 0]), tt(DType::F32, &[0])], 3);
    check(
        &g,
        vec![
            Tensor::from_vec(vec![3, 0], Vec::<f32>::new()),
            Tensor::from_vec(vec![0], Vec::<f32>::new()),
        ],
    );
}

#[test]
fn rms_normalization() {
    let mut rng = Rng(2);
    let cases: &[(&[usize], i64, &[usize])] = &[
        (&[2, 3, 8], -1, &[8]),
        (&[2, 3, 8], 1, &[3, 8]),
        (&[4, 13], 1, &[13]),
        (&[5, 3], 1, &[3]),
        (&[2, 3, 4, 5], 2, &[1, 5]),
        (&[6], 0, &[6]),
    ];
    for dt in [DType::F32, DType::F64] {
        for (shape, axis, ss) in cases {
            let op = RMSNormalization {
                axis: *axis,
                epsilon: 1e-5,
                stash_type: 1,
            };
            let g = single(op, &[tt(dt, shape), tt(dt, ss)], &[]);
            check(
                &g,
                vec![
                    values(&mut rng, dt, shape, -3.0, 3.0),
                    values(&mut rng, dt, ss, -2.0, 2.0),
                ],
            );
        }
    }
}

fn bn_inputs(
    rng: &mut Rng,
    dt: DType,
    sdt: DType,
    shape: &[usize],
) -> (Vec<TensorType>, Vec<Tensor>) {
    let c = shape[1];
    let types = vec![
        tt(dt, shape),
        tt(dt, &[c]),
        tt(dt, &[c]),
        tt(sdt, &[c]),
        tt(sdt, &[c]),
    ];
    let inputs = vec![
        values(rng, dt, shape, -3.0, 3.0),
        values(rng, dt, &[c], 0.5, 1.5),
        values(rng, dt, &[c], -1.0, 1.0),
        values(rng, sdt, &[c], -0.5, 0.5),
        values(rng, sdt, &[c], 0.5, 2.0),
    ];
    (types, inputs)
}

#[test]
fn batch_normalization() {
    let mut rng = Rng(3);
    let shapes: &[&[usize]] = &[
        &[2, 3, 4, 5],
        &[2, 3],
        &[1, 5, 7],
        &[3, 6, 1, 1],
        &[2, 4, 3],
    ];
    for dt in [DType::F32, DType::F64] {
        for sdt in [dt, DType::F64] {
            for shape in shapes {
                for training in [false, true] {
                    for n_out in [1, 3] {
                        let op = BatchNormalization {
                            epsilon: 1e-3,
                            momentum: 0.8,
                            training_mode: training,
                        };
                        let (types, inputs) = bn_inputs(&mut rng, dt, sdt, shape);
                        let g = multi(op, &types, n_out);
                        check(&g, inputs);
                    }
                }
            }
        }
    }
}

#[test]
fn instance_and_group_normalization() {
    let mut rng = Rng(4);
    let shapes: &[&[usize]] = &[
        &[2, 3, 5, 4],
        &[1, 4, 9],
        &[3, 2, 1],
        &[2, 6, 3, 3],
        &[1, 6, 7],
    ];
    for dt in [DType::F32, DType::F64] {
        for shape in shapes {
            let c = shape[1];
            let types = [tt(dt, shape), tt(dt, &[c]), tt(dt, &[c])];
            let inputs = || {
                let mut r = Rng(c as u64 + 17);
                vec![
                    values(&mut r, dt, shape, -3.0, 3.0),
                    values(&mut r, dt, &[c], 0.5, 1.5),
                    values(&mut r, dt, &[c], -1.0, 1.0),
                ]
            };
            let g = single(InstanceNormalization { epsilon: 1e-5 }, &types, &[]);
            check(&g, inputs());
            for groups in (1..=c).filter(|g| c % g == 0) {
                let op = GroupNormalization {
                    epsilon: 1e-5,
                    num_groups: groups as i64,
                    stash_type: 1,
                };
                let g = single(op, &types, &[]);
                check(&g, inputs());
            }
        }
        let _ = &mut rng;
    }
}

#[test]
fn lp_and_mean_variance_normalization() {
    let mut rng = Rng(5);
    let cases: &[(&[usize], i64)] = &[
        (&[3, 5], -1),
        (&[3, 5], 0),
        (&[4, 13], 1),
        (&[5, 4, 6], 1),
        (&[2, 9, 8], 1),
        (&[7], 0),
        (&[3, 45], 1),
    ];
    for dt in [DType::F32, DType::F64] {
        for (shape, axis) in cases {
            for p in [1, 2] {
                let g = single(LpNormalization { axis: *axis, p }, &[tt(dt, shape)], &[]);
                check(&g, vec![values(&mut rng, dt, shape, -3.0, 3.0)]);
            }
        }
        // A zero vector stays zero.
        let x = Tensor::from_vec(
            vec![2, 5],
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, -2.0, 3.0],
        )
        .cast(dt, true);
        for p in [1, 2] {
            check(
                &single(LpNormalization { axis: 1, p }, &[tt(dt, &[2, 5])], &[]),
                vec![x.clone()],
            );
        }
        let mvn: &[(&[usize], &[i64])] = &[
            (&[2, 3, 4, 5], &[0, 2, 3]),
            (&[2, 3, 4, 5], &[1]),
            (&[2, 3, 4, 5], &[2, 3]),
            (&[2, 3, 4, 5], &[-1]),
            (&[3, 7], &[0]),
            (&[3, 7], &[0, 1]),
            (&[2, 3, 45], &[2]),
        ];
        for (shape, axes) in mvn {
            let op = MeanVarianceNormalization {
                axes: axes.to_vec(),
            };
            check(
                &single(op, &[tt(dt, shape)], &[]),
                vec![values(&mut rng, dt, shape, -3.0, 3.0)],
            );
        }
    }
}

#[test]
fn loops_vectorise_along_rows_and_run_in_parallel() {
    let mut rng = Rng(6);
    let op = LayerNormalization {
        axis: -1,
        epsilon: 1e-5,
        stash_type: 1,
    };
    let g = single(
        op,
        &[tt(DType::F32, &[64, 600]), tt(DType::F32, &[600])],
        &[],
    );
    let l = check(
        &g,
        vec![
            values(&mut rng, DType::F32, &[64, 600], -1.0, 1.0),
            values(&mut rng, DType::F32, &[600], -1.0, 1.0),
        ],
    );
    let k = &l.kernels[0];
    assert_eq!(sched(k, "vectorize"), Some(AttrValue::Str("along".into())));
    assert_eq!(k.count_loops(|l| l == LoopKind::Parallel), 1);
    // Batch norm over [N, C]: vectors across channels.
    let (types, inputs) = bn_inputs(&mut rng, DType::F32, DType::F32, &[5, 9]);
    let op = BatchNormalization {
        epsilon: 1e-5,
        momentum: 0.9,
        training_mode: false,
    };
    let l = check(&single(op, &types, &[]), inputs);
    assert_eq!(
        sched(&l.kernels[0], "vectorize"),
        Some(AttrValue::Str("across".into()))
    );
}

#[test]
fn normalizations_take_an_epilogue() {
    let mut rng = Rng(7);
    // LayerNorm + Relu, BatchNorm + Relu: one kernel each.
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", tt(DType::F32, &[3, 10])).unwrap();
    let s = b.input("s", tt(DType::F32, &[10])).unwrap();
    let ln = b
        .op(
            LayerNormalization {
                axis: -1,
                epsilon: 1e-5,
                stash_type: 1,
            },
            &[x, s],
        )
        .unwrap();
    let y = b.op(Relu {}, &[ln]).unwrap();
    let g = b.finish(vec![y]);
    let l = check(
        &g,
        vec![
            values(&mut rng, DType::F32, &[3, 10], -1.0, 1.0),
            values(&mut rng, DType::F32, &[10], -1.0, 1.0),
        ],
    );
    assert_eq!(l.kernels.len(), 1);

    let mut b = GraphBuilder::new("g");
    let (types, inputs) = bn_inputs(&mut rng, DType::F32, DType::F32, &[2, 3, 5]);
    let vals: Vec<_> = types
        .iter()
        .enumerate()
        .map(|(i, t)| b.input(format!("x{i}"), t.clone()).unwrap())
        .collect();
    let bn = b
        .op(
            BatchNormalization {
                epsilon: 1e-5,
                momentum: 0.9,
                training_mode: false,
            },
            &vals,
        )
        .unwrap();
    let y = b.op(Relu {}, &[bn]).unwrap();
    let g = b.finish(vec![y]);
    let l = check(&g, inputs);
    assert_eq!(l.kernels.len(), 1);
}

/// `op(x, params…) + bias` where bias broadcasts along the last dim: one
/// fused kernel that agrees with the interpreter.
fn fused_with_bias(op: Op, x: Tensor, params: Vec<Tensor>, consts: Vec<Tensor>) {
    let mut rng = Rng(8);
    let mut b = GraphBuilder::new("g");
    let mut vals = vec![b.input("x", tt(x.dtype(), x.shape())).unwrap()];
    for (i, p) in params.iter().enumerate() {
        vals.push(b.input(format!("p{i}"), tt(p.dtype(), p.shape())).unwrap());
    }
    for (i, c) in consts.iter().enumerate() {
        vals.push(b.constant(format!("c{i}"), c.clone()).unwrap());
    }
    let y = b.op(op, &vals).unwrap();
    let shape = b.graph().ty(y).shape.as_known().unwrap();
    let last = *shape.last().unwrap_or(&1);
    let bias = b.input("bias", tt(x.dtype(), &[last])).unwrap();
    let z = b.op(Add {}, &[y, bias]).unwrap();
    let g = b.finish(vec![z]);
    let mut inputs = vec![x.clone()];
    inputs.extend(params);
    inputs.push(values(&mut rng, x.dtype(), &[last], -1.0, 1.0));
    let l = check(&g, inputs);
    let names: Vec<&str> = l.kernels.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names.len(), 1, "{names:?} for {:?}", x.shape());
}

#[test]
fn more_anchors_take_epilogues() {
    let mut rng = Rng(9);
    let dt = DType::F32;
    let x = |rng: &mut Rng, s: &[usize]| values(rng, dt, s, 0.5, 2.0);
    let axes = |a: &[i64]| Tensor::from_vec(vec![a.len()], a.to_vec());
    for (keep, a) in [
        (true, vec![1i64]),
        (false, vec![0]),
        (false, vec![2]),
        (true, vec![0, 2]),
    ] {
        let ops: Vec<Op> = vec![
            ReduceMax {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
            ReduceMin {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
            ReduceProd {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
            ReduceL1 {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
            ReduceL2 {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
            ReduceLogSum {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
            ReduceLogSumExp {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
            ReduceSumSquare {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
            ReduceMean {
                keepdims: keep,
                noop_with_empty_axes: false,
            }
            .into(),
        ];
        for op in ops {
            fused_with_bias(op, x(&mut rng, &[4, 6, 5]), vec![], vec![axes(&a)]);
        }
    }
    for (shape, axis) in [(vec![3usize, 9], -1i64), (vec![5, 6, 7], 1)] {
        fused_with_bias(
            LogSoftmax { axis }.into(),
            x(&mut rng, &shape),
            vec![],
            vec![],
        );
        for p in [1, 2] {
            fused_with_bias(
                LpNormalization { axis, p }.into(),
                x(&mut rng, &shape),
                vec![],
                vec![],
            );
        }
    }
    let rms = RMSNormalization {
        axis: -1,
        epsilon: 1e-5,
        stash_type: 1,
    };
    fused_with_bias(
        rms.into(),
        x(&mut rng, &[3, 10]),
        vec![x(&mut rng, &[10])],
        vec![],
    );
    let inst = InstanceNormalization { epsilon: 1e-5 };
    fused_with_bias(
        inst.into(),
        x(&mut rng, &[2, 3, 8]),
        vec![x(&mut rng, &[3]), x(&mut rng, &[3])],
        vec![],
    );
    let mvn = MeanVarianceNormalization {
        axes: vec![0, 2, 3],
    };
    fused_with_bias(mvn.into(), x(&mut rng, &[2, 3, 4, 5]), vec![], vec![]);
}
