//! Normalization ops, LRN and Dropout.

use crate::no_eval;
use crate::ops::*;

no_eval!(
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
