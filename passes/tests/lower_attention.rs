//! Attention against the interpreter: the register-blocked kernel (3-D
//! packed heads and 4-D heads, grouped-query heads, boolean and additive
//! masks broadcast over batch, heads and rows, sequence lengths that are
//! not multiples of the row block or of the vector width, value heads of
//! several vectors) and the general kernel for what the blocked one leaves
//! (causal, past keys, present outputs).

mod common;

use common::{Rng, check, check_for};
use saturn_ir::builder::GraphBuilder;
use saturn_ir::ops::Attention;
use saturn_ir::{AttrValue, DType, Graph, Tensor, TensorType};
use saturn_passes::lower::{LowerOptions, Lowered};

fn att(heads: Option<(i64, i64)>, causal: bool) -> Attention {
    Attention {
        is_causal: causal,
        kv_num_heads: heads.map(|h| h.1),
        q_num_heads: heads.map(|h| h.0),
        qk_matmul_output_mode: 0,
        scale: None,
        softcap: 0.0,
        softmax_precision: None,
        left_window_size: -1,
        right_window_size: -1,
    }
}

fn tt(dt: DType, shape: &[usize]) -> TensorType {
    TensorType::known(dt, shape)
}

/// One attention node over Q, K, V (and a mask) of these shapes.
fn graph(op: Attention, shapes: &[Vec<usize>], mask: Option<(DType, Vec<usize>)>) -> Graph {
    let mut b = GraphBuilder::new("g");
    let mut ins = Vec::new();
    for (n, s) in ["q", "k", "v"].iter().zip(shapes) {
        ins.push(b.input(*n, tt(DType::F32, s)).unwrap());
    }
    if let Some((dt, s)) = mask {
        ins.push(b.input("m", tt(dt, &s)).unwrap());
    }
    let y = b.op(op, &ins).unwrap();
    b.finish(vec![y])
}

fn inputs(rng: &mut Rng, g: &Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .map(|v| {
            let ty = g.ty(*v);
            let shape = ty.shape.as_known().unwrap();
            if ty.dtype == DType::Bool {
                // Mostly true, never a whole row false.
                let n: usize = shape.iter().product();
                let last = *shape.last().unwrap();
                let vals: Vec<bool> = (0..n)
                    .map(|i| i % last == 0 || rng.uniform(0.0, 1.0) < 0.7)
                    .collect();
                Tensor::from_vec(shape, vals)
            } else {
                rng.tensor(ty.dtype, &shape, 2.0)
            }
        })
        .collect()
}

fn blocked(l: &Lowered) -> bool {
    l.kernels[0].schedule.get("attention") == Some(&AttrValue::Str("blocked".into()))
}

#[test]
fn blocked_attention_shapes_and_masks() {
    let mut rng = Rng(51);
    // (heads for 3-D operands, Q, K, V shapes, mask)
    type Case = (
        Option<(i64, i64)>,
        Vec<Vec<usize>>,
        Option<(DType, Vec<usize>)>,
    );
    let cases: Vec<Case> = vec![
        (
            Some((2, 2)),
            vec![vec![1, 37, 32], vec![1, 37, 32], vec![1, 37, 32]],
            None,
        ),
        (
            Some((2, 2)),
            vec![vec![2, 20, 16], vec![2, 21, 16], vec![2, 21, 24]],
            Some((DType::F32, vec![2, 1, 20, 21])),
        ),
        (
            None,
            vec![vec![1, 4, 9, 8], vec![1, 2, 17, 8], vec![1, 2, 17, 80]],
            Some((DType::Bool, vec![9, 17])),
        ),
        (
            None,
            vec![vec![2, 3, 5, 7], vec![2, 3, 33, 7], vec![2, 3, 33, 5]],
            Some((DType::F32, vec![2, 3, 1, 33])),
        ),
        (
            Some((4, 1)),
            vec![vec![1, 6, 40], vec![1, 6, 10], vec![1, 6, 12]],
            None,
        ),
    ];
    for (heads, shapes, mask) in cases {
        let g = graph(att(heads, false), &shapes, mask.clone());
        let ins = inputs(&mut rng, &g);
        check(&g, ins.clone());
        let l = check_for(
            &g,
            ins,
            &LowerOptions::default(),
            1e-4,
            1e-5,
            "x86-64-avx512",
        );
        assert!(blocked(&l), "{shapes:?} {mask:?}");
    }
}

/// What the blocked kernel does not take runs in the general one.
#[test]
fn general_attention_for_causal_masks() {
    let mut rng = Rng(52);
    let g = graph(
        att(Some((2, 2)), true),
        &[vec![1, 9, 16], vec![1, 9, 16], vec![1, 9, 16]],
        None,
    );
    let ins = inputs(&mut rng, &g);
    let l = check(&g, ins);
    assert!(!blocked(&l));
}
