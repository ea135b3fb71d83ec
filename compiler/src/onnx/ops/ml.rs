//! Builders for the domain `ai.onnx.ml`.

use super::Build;

pub(super) fn register(_reg: &mut dyn FnMut(&'static str, Build)) {}
