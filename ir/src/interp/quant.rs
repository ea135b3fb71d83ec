//! Quantization.

use crate::no_eval;
use crate::ops::*;

no_eval!(
    QuantizeLinear,
    DequantizeLinear,
    DynamicQuantizeLinear,
    QLinearMatMul
);
