//! The Saturn compiler: ONNX import, the pipeline driver and the CLI.

// Import errors carry the node, op and opset they name; they are built
// once per failed import, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod commands;
pub mod model;
pub mod onnx;
