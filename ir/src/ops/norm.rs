//! Normalization ops, LRN and Dropout.

use super::*;
use crate::no_infer;

no_infer!(
    BatchNormalization,
    InstanceNormalization,
    LayerNormalization,
    GroupNormalization,
    RMSNormalization,
    LpNormalization,
    MeanVarianceNormalization,
    LRN,
    Dropout
);
