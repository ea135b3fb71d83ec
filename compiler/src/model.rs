//! Loading a model from either of the formats Saturn reads.

use std::path::Path;

use saturn_ir::Graph;

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Onnx(#[from] crate::onnx::ImportError),
    #[error("{path}:{err}")]
    Parse {
        path: String,
        err: saturn_ir::text::ParseError,
    },
    #[error("{path}: {err}")]
    Verify {
        path: String,
        err: saturn_ir::verify::VerifyError,
    },
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
}

/// Loads a `.onnx` model or a `.tir` Graph IR file (by extension; anything
/// else is tried as ONNX), and verifies the result.
pub fn load(path: &Path) -> Result<Graph, LoadError> {
    let shown = path.display().to_string();
    let g = if path.extension().is_some_and(|e| e == "tir") {
        let text = std::fs::read_to_string(path).map_err(|err| LoadError::Io {
            path: shown.clone(),
            err,
        })?;
        saturn_ir::text::parse(&text).map_err(|err| LoadError::Parse {
            path: shown.clone(),
            err,
        })?
    } else {
        crate::onnx::load(path)?
    };
    saturn_ir::verify::verify(&g).map_err(|err| LoadError::Verify { path: shown, err })?;
    Ok(g)
}
