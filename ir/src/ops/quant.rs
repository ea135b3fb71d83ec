//! Quantization.

use super::*;
use crate::no_infer;

no_infer!(
    QuantizeLinear,
    DequantizeLinear,
    DynamicQuantizeLinear,
    QLinearMatMul
);
