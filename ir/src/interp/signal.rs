//! Signal processing: DFT, STFT, windows, mel filter banks.

use crate::no_eval;
use crate::ops::*;

no_eval!(
    DFT,
    STFT,
    BlackmanWindow,
    HammingWindow,
    HannWindow,
    MelWeightMatrix
);
