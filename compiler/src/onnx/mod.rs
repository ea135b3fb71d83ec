//! ONNX import: protobuf → Graph IR.
//!
//! The model is decoded with prost, its functions are inlined, its nodes
//! sorted topologically, and each node is built by the op builder that the
//! registry ([`ops`]) holds for its domain and type, which also turns older
//! opsets into the op's current form. Every value is typed by Saturn's own
//! inference, merged with the types the model declares.

mod attrs;
mod import;
pub mod ops;
pub mod proto;
pub mod tensor;

use std::path::Path;

use prost::Message;
use saturn_ir::Graph;
use saturn_ir::attr::AttrError;
use saturn_ir::builder::BuildError;

pub use import::import_model;

/// Why a model could not be imported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {err}")]
    Io { path: String, err: String },
    #[error("{what}: not a valid ONNX protobuf (malformed or truncated): {err}")]
    Decode { what: String, err: String },
    #[error("the model has no graph")]
    NoGraph,
    #[error("node `{node}`: op {op} (domain `{domain}`, opset {opset}) is not supported by Saturn")]
    UnsupportedOp {
        op: String,
        domain: String,
        opset: i64,
        node: String,
    },
    #[error(
        "node `{node}`: domain `{domain}` of op {op} is not imported by the model (no opset_import entry)"
    )]
    UnknownDomain {
        op: String,
        domain: String,
        node: String,
    },
    #[error("node `{node}` ({op}, opset {opset}): {err}")]
    Attr {
        node: String,
        op: String,
        opset: i64,
        err: AttrError,
    },
    #[error("node `{node}` ({op}, opset {opset}): {msg}")]
    Node {
        node: String,
        op: String,
        opset: i64,
        msg: String,
    },
    #[error(transparent)]
    Build(Box<BuildError>),
    #[error("tensor `{name}`: {msg}")]
    Tensor { name: String, msg: String },
    #[error("`{name}`: {what} is not supported")]
    UnsupportedType { name: String, what: String },
    #[error(
        "node `{node}`: input `{input}` is not defined (no graph input, initializer or node output has this name)"
    )]
    MissingInput { node: String, input: String },
    #[error("graph output `{0}` is not defined")]
    MissingOutput(String),
    #[error("the graph has a cycle through node `{0}`")]
    Cycle(String),
    #[error("value `{0}` is defined more than once")]
    Duplicate(String),
    #[error("functions nest deeper than {0} levels (recursive function?)")]
    FunctionDepth(usize),
}

impl From<BuildError> for ImportError {
    fn from(e: BuildError) -> ImportError {
        ImportError::Build(Box::new(e))
    }
}

/// Loads an ONNX model file. External data is read relative to its folder.
pub fn load(path: &Path) -> Result<Graph, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::Io {
        path: path.display().to_string(),
        err: e.to_string(),
    })?;
    let model = proto::ModelProto::decode(bytes.as_slice()).map_err(|e| ImportError::Decode {
        what: path.display().to_string(),
        err: e.to_string(),
    })?;
    import_model(&model, path.parent())
}

/// Imports a serialized model held in memory; it cannot use external data.
pub fn import_bytes(bytes: &[u8]) -> Result<Graph, ImportError> {
    let model = proto::ModelProto::decode(bytes).map_err(|e| ImportError::Decode {
        what: "model".into(),
        err: e.to_string(),
    })?;
    import_model(&model, None)
}
