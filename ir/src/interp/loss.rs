//! Losses and optimizer steps.

use crate::no_eval;
use crate::ops::*;

no_eval!(
    NegativeLogLikelihoodLoss,
    SoftmaxCrossEntropyLoss,
    Adagrad,
    Adam,
    Momentum
);
