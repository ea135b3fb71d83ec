//! Reductions, arg-reductions, softmax-like ops and scans along an axis.

use crate::no_eval;
use crate::ops::*;

no_eval!(
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
