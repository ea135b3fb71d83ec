//! Convolution and pooling.

use super::*;
use crate::{attr_enum, no_infer};

attr_enum!(
    /// How convolutions and pools pad when explicit pads are not given.
    AutoPad { NotSet = "NOTSET", SameUpper = "SAME_UPPER", SameLower = "SAME_LOWER", Valid = "VALID" }
);

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
    Col2Im
);
