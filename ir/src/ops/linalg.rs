//! Matrix products: Gemm, MatMul and their integer forms, Einsum, Det.

use super::*;
use crate::no_infer;

no_infer!(Gemm, MatMul, MatMulInteger, Einsum, Det);
