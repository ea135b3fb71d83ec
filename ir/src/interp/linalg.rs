//! Matrix products: Gemm, MatMul and their integer forms, Einsum, Det.

use crate::no_eval;
use crate::ops::*;

no_eval!(Gemm, MatMul, MatMulInteger, Einsum, Det);
