//! ONNX `AttributeProto` → untyped attribute values.

use std::path::Path;

use saturn_ir::AttrValue;

use super::ImportError;
use super::proto::{AttributeProto, attribute_proto::AttributeType};
use super::tensor::from_proto;

/// Converts one attribute. Graph attributes are converted by the caller
/// (they need the enclosing scope), so they are reported as `None` here.
pub fn convert(a: &AttributeProto, base: Option<&Path>) -> Result<Option<AttrValue>, ImportError> {
    let strings = |v: &[Vec<u8>]| {
        v.iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let ty = a.r#type();
    Ok(Some(match ty {
        AttributeType::Float => AttrValue::Float(a.f()),
        AttributeType::Int => AttrValue::Int(a.i()),
        AttributeType::String => AttrValue::Str(String::from_utf8_lossy(a.s()).into_owned()),
        AttributeType::Tensor => match &a.t {
            Some(t) => AttrValue::Tensor(from_proto(t, base)?),
            None => return Err(bad(a, "tensor attribute without a tensor")),
        },
        AttributeType::Floats => AttrValue::Floats(a.floats.clone()),
        AttributeType::Ints => AttrValue::Ints(a.ints.clone()),
        AttributeType::Strings => AttrValue::Strs(strings(&a.strings)),
        AttributeType::Graph => return Ok(None),
        AttributeType::SparseTensor => match &a.sparse_tensor {
            Some(t) => AttrValue::Tensor(super::tensor::sparse_to_dense(t, base)?.1),
            None => return Err(bad(a, "sparse tensor attribute without a tensor")),
        },
        AttributeType::Undefined => {
            // Old exporters leave the type out; infer it from the field set.
            if let Some(t) = &a.t {
                AttrValue::Tensor(from_proto(t, base)?)
            } else if a.g.is_some() {
                return Ok(None);
            } else if !a.ints.is_empty() {
                AttrValue::Ints(a.ints.clone())
            } else if !a.floats.is_empty() {
                AttrValue::Floats(a.floats.clone())
            } else if !a.strings.is_empty() {
                AttrValue::Strs(strings(&a.strings))
            } else if a.s.is_some() {
                AttrValue::Str(String::from_utf8_lossy(a.s()).into_owned())
            } else if a.f.is_some() {
                AttrValue::Float(a.f())
            } else if a.i.is_some() {
                AttrValue::Int(a.i())
            } else {
                return Err(bad(a, "attribute has no type and no value"));
            }
        }
        other => {
            return Err(ImportError::UnsupportedType {
                name: a.name().to_string(),
                what: format!("attribute kind {}", other.as_str_name()),
            });
        }
    }))
}

fn bad(a: &AttributeProto, msg: &str) -> ImportError {
    ImportError::Tensor {
        name: a.name().to_string(),
        msg: msg.to_string(),
    }
}
