//! Local response normalisation against the interpreter: window sizes even
//! and odd, channel counts smaller and larger than the window, spatial
//! sizes with vector remainders, f32 and f64.

mod common;

use common::{Rng, check, single};
use saturn_ir::ops::LRN;
use saturn_ir::{DType, TensorType};

#[test]
fn lrn_windows_and_shapes() {
    let mut r = Rng(23);
    for d in [DType::F32, DType::F64] {
        for (shape, size) in [
            (vec![1, 5, 3, 3], 3),
            (vec![2, 3, 7], 5),
            (vec![1, 8, 6, 5], 2),
            (vec![1, 2, 4, 4], 4),
            (vec![3, 1, 9], 1),
        ] {
            let op = LRN {
                alpha: 2e-3,
                beta: 0.75,
                bias: 1.5,
                size,
            };
            let g = single(op, &[TensorType::known(d, &shape)], &[]);
            check(&g, vec![r.tensor(d, &shape, 3.0)]);
        }
    }
}
