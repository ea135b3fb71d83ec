//! Neural-network ops: convolution, pooling, normalization, matrix
//! products, attention, quantization, losses and optimizer steps.

use super::*;
use crate::{attr_enum, no_infer};

attr_enum!(
    /// How convolutions and pools pad when explicit pads are not given.
    AutoPad { NotSet = "NOTSET", SameUpper = "SAME_UPPER", SameLower = "SAME_LOWER", Valid = "VALID" }
);
attr_enum!(LossReduction { None = "none", Sum = "sum", Mean = "mean" });

no_infer!(
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
    Col2Im,
    BatchNormalization,
    InstanceNormalization,
    LayerNormalization,
    GroupNormalization,
    RMSNormalization,
    LpNormalization,
    MeanVarianceNormalization,
    LRN,
    Dropout,
    Gemm,
    MatMul,
    MatMulInteger,
    QLinearMatMul,
    Einsum,
    Det,
    Attention,
    RotaryEmbedding,
    QuantizeLinear,
    DequantizeLinear,
    DynamicQuantizeLinear,
    NegativeLogLikelihoodLoss,
    SoftmaxCrossEntropyLoss,
    Adagrad,
    Adam,
    Momentum,
);
