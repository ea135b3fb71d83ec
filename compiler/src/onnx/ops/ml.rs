//! Builders for the domain `ai.onnx.ml`.

use saturn_ir::{AttrValue, DType};

use super::{Build, NodeCx, generic};
use crate::onnx::ImportError;

pub(super) fn register(reg: &mut dyn FnMut(&'static str, Build)) {
    reg("LabelEncoder", label_encoder);
}

/// LabelEncoder 1 maps strings to their index in `classes_strings`, or
/// indices to strings, by the input's type: key-value lists from opset 2 on.
fn label_encoder(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset >= 2 {
        return generic(cx);
    }
    let classes = match cx.attrs.remove("classes_strings") {
        Some(AttrValue::Strs(s)) => s,
        None => Vec::new(),
        Some(_) => return Err(cx.err("attribute `classes_strings` must be strings")),
    };
    let indices: Vec<i64> = (0..classes.len() as i64).collect();
    let x = cx.input(0)?;
    if cx.b.graph().ty(x).dtype == DType::Str {
        cx.attrs.remove("default_string");
        cx.attrs.insert("keys_strings", AttrValue::Strs(classes));
        cx.attrs.insert("values_int64s", AttrValue::Ints(indices));
    } else {
        cx.attrs.remove("default_int64");
        cx.attrs.insert("keys_int64s", AttrValue::Ints(indices));
        cx.attrs.insert("values_strings", AttrValue::Strs(classes));
    }
    generic(cx)
}
