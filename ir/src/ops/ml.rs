//! Classical machine-learning ops (ONNX domain `ai.onnx.ml`).

use super::*;
use crate::no_infer;

no_infer!(ArrayFeatureExtractor, Binarizer);
