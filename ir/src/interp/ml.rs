//! Classical machine-learning ops (ONNX domain `ai.onnx.ml`).

use crate::no_eval;
use crate::ops::*;

no_eval!(ArrayFeatureExtractor, Binarizer);
