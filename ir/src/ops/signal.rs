//! Signal processing: DFT, STFT, windows, mel filter banks.

use super::*;
use crate::no_infer;

no_infer!(
    DFT,
    STFT,
    BlackmanWindow,
    HammingWindow,
    HannWindow,
    MelWeightMatrix
);
