//! Losses and optimizer steps.

use super::*;
use crate::{attr_enum, no_infer};

attr_enum!(LossReduction { None = "none", Sum = "sum", Mean = "mean" });

no_infer!(
    NegativeLogLikelihoodLoss,
    SoftmaxCrossEntropyLoss,
    Adagrad,
    Adam,
    Momentum
);
