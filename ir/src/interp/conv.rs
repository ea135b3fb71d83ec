//! Convolution and pooling.

use crate::no_eval;
use crate::ops::*;

no_eval!(
    Conv,
    ConvInteger,
    QLinearConv,
    ConvTranspose,
    DeformConv,
    AveragePool,
    MaxPool,
    LpPool,
    GlobalAveragePool,
    GlobalMaxPool,
    GlobalLpPool,
    MaxUnpool,
    Col2Im
);
