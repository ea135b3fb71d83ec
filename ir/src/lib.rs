//! Saturn's intermediate representations.
//!
//! - [`dtype`], [`shape`], [`tensor`]: element types, static and symbolic
//!   shapes, concrete tensors;
//! - [`graph`], [`ops`], [`attr`]: Graph IR, an SSA graph of typed tensor
//!   ops, with the op set declared once in [`ops`];
//! - [`text`]: the `.tir` text format (printer and parser);
//! - [`verify`]: the verifier;
//! - [`interp`]: the reference interpreter, the oracle for everything
//!   downstream.
//!
//! This crate knows nothing of ONNX's protobuf, egg, or any code generator.

pub mod attr;
pub mod builder;
pub mod dtype;
pub mod graph;
pub mod interp;
pub mod kernel;
pub mod ops;
pub mod shape;
pub mod target;
pub mod tensor;
pub mod text;
pub mod verify;

pub use attr::{AttrValue, Attrs};
pub use builder::GraphBuilder;
pub use dtype::DType;
pub use graph::{Graph, Node, NodeId, Value, ValueDef};
pub use half;
pub use ops::Op;
pub use shape::{Dim, Shape, TensorType};
pub use tensor::Tensor;
