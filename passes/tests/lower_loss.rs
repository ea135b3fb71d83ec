//! Lowering of NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss,
//! checked against the interpreter on random inputs.

mod common;

use common::{Rng, check};
use saturn_ir::builder::GraphBuilder;
use saturn_ir::ops::*;
use saturn_ir::{DType, Graph, Op, Tensor, TensorType};

fn tt(dt: DType, shape: &[usize]) -> TensorType {
    TensorType::known(dt, shape)
}

fn graph(op: Op, types: &[TensorType], n_out: usize) -> Graph {
    let mut b = GraphBuilder::new("g");
    let vals: Vec<Option<_>> = types
        .iter()
        .enumerate()
        .map(|(i, t)| Some(b.input(format!("x{i}"), t.clone()).unwrap()))
        .collect();
    let outs = b
        .node("", op, vals, vec![(String::new(), None); n_out])
        .unwrap();
    b.finish(outs)
}

#[test]
fn losses_over_shapes_reductions_weights_and_ignored_classes() {
    let mut rng = Rng(1);
    let shapes: &[&[usize]] = &[&[3, 5], &[2, 4, 3], &[2, 5, 2, 3], &[4, 1], &[1, 6, 9]];
    let reductions = [LossReduction::None, LossReduction::Sum, LossReduction::Mean];
    for dt in [DType::F32, DType::F64] {
        for shape in shapes {
            let (n, c) = (shape[0], shape[1]);
            let mut tshape = vec![n];
            tshape.extend_from_slice(&shape[2..]);
            let tn: usize = tshape.iter().product();
            for tdt in [DType::I64, DType::I32] {
                for ignore in [None, Some(0i64), Some(-1)] {
                    for weighted in [false, true] {
                        for reduction in reductions {
                            for sce in [false, true] {
                                let nx: usize = shape.iter().product();
                                let xv: Vec<f64> =
                                    (0..nx).map(|_| rng.uniform(-4.0, 2.0)).collect();
                                let x = Tensor::from_vec(shape.to_vec(), xv).cast(dt, true);
                                // Some targets hit the ignored index.
                                let t: Vec<i64> = (0..tn)
                                    .map(|k| match ignore {
                                        Some(ig) if k % 3 == 1 => ig,
                                        _ => (rng.uniform(0.0, c as f64) as i64).min(c as i64 - 1),
                                    })
                                    .collect();
                                let t = Tensor::from_vec(tshape.clone(), t).cast(tdt, true);
                                let mut types = vec![tt(dt, shape), tt(tdt, &tshape)];
                                let mut inputs = vec![x, t];
                                if weighted {
                                    let w: Vec<f64> =
                                        (0..c).map(|_| rng.uniform(0.2, 2.0)).collect();
                                    types.push(tt(dt, &[c]));
                                    inputs.push(Tensor::from_vec(vec![c], w).cast(dt, true));
                                }
                                let op: Op = if sce {
                                    SoftmaxCrossEntropyLoss {
                                        ignore_index: ignore,
                                        reduction,
                                    }
                                    .into()
                                } else {
                                    NegativeLogLikelihoodLoss {
                                        ignore_index: ignore,
                                        reduction,
                                    }
                                    .into()
                                };
                                for n_out in if sce { vec![1, 2] } else { vec![1] } {
                                    let g = graph(op.clone(), &types, n_out);
                                    check(&g, inputs.clone());
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_position_ignored() {
    // The mean over no weight is 0/0.
    let x = Tensor::from_vec(vec![2, 3], vec![0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6]);
    let t = Tensor::from_vec(vec![2], vec![1i64, 1]);
    for sce in [false, true] {
        let op: Op = if sce {
            SoftmaxCrossEntropyLoss {
                ignore_index: Some(1),
                reduction: LossReduction::Mean,
            }
            .into()
        } else {
            NegativeLogLikelihoodLoss {
                ignore_index: Some(1),
                reduction: LossReduction::Mean,
            }
            .into()
        };
        let g = graph(op, &[tt(DType::F32, &[2, 3]), tt(DType::I64, &[2])], 1);
        check(&g, vec![x.clone(), t.clone()]);
    }
}
