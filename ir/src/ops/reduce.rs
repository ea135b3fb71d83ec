//! Reductions, arg-reductions, softmax-like ops and scans along an axis.

use super::*;
use crate::no_infer;

no_infer!(
    ReduceL1,
    ReduceL2,
    ReduceLogSum,
    ReduceLogSumExp,
    ReduceMax,
    ReduceMean,
    ReduceMin,
    ReduceProd,
    ReduceSum,
    ReduceSumSquare,
    ArgMax,
    ArgMin,
    Softmax,
    LogSoftmax,
    Hardmax,
    CumSum,
    CumProd,
    TopK,
);
