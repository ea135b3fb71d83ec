//! The Saturn compiler: ONNX import, the pipeline driver and the CLI.

pub mod model;
pub mod onnx;
