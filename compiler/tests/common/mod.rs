//! Helpers for building small ONNX models in tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use saturn::onnx::proto::*;

pub fn saturn_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_saturn"))
}

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saturn-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn encode(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

pub fn write_model(path: &Path, m: &ModelProto) {
    std::fs::write(path, encode(m)).unwrap();
}

pub fn write_inputs(dir: &Path, inputs: &[saturn_ir::Tensor]) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, t) in inputs.iter().enumerate() {
        saturn::onnx::tensor::write_file(
            &dir.join(format!("input_{i}.pb")),
            t,
            &format!("input_{i}"),
        )
        .unwrap();
    }
}

pub fn value_info(name: &str, elem_type: i32, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

/// A value info with a known rank but unknown dims.
pub fn value_info_rank(name: &str, elem_type: i32, rank: usize) -> ValueInfoProto {
    let mut vi = value_info(name, elem_type, &vec![0; rank]);
    if let Some(TypeProto {
        value: Some(type_proto::Value::TensorType(t)),
        ..
    }) = &mut vi.r#type
    {
        for d in &mut t.shape.as_mut().unwrap().dim {
            d.value = None;
        }
    }
    vi
}

pub fn node(op: &str, inputs: &[&str], outputs: &[&str], name: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.into()),
        op_type: Some(op.into()),
        ..Default::default()
    }
}

pub fn model(graph: GraphProto, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(graph),
        ..Default::default()
    }
}

/// `y = relu(x)` with x: f32[2,3], opset 17.
pub fn relu_model() -> ModelProto {
    model(
        GraphProto {
            name: Some("relu".into()),
            node: vec![node("Relu", &["x"], &["y"], "relu_node")],
            input: vec![value_info("x", 1, &[2, 3])],
            output: vec![value_info("y", 1, &[2, 3])],
            ..Default::default()
        },
        17,
    )
}

/// `y = x + c` with x: f32[2,3] and an f32 initializer `c`.
pub fn add_const_model(c: Vec<f32>, dims: Vec<i64>) -> ModelProto {
    model(
        GraphProto {
            name: Some("add".into()),
            node: vec![node("Add", &["x", "c"], &["y"], "add_node")],
            input: vec![value_info("x", 1, &[2, 3])],
            output: vec![ValueInfoProto {
                name: Some("y".into()),
                ..Default::default()
            }],
            initializer: vec![TensorProto {
                name: Some("c".into()),
                dims,
                data_type: Some(1),
                float_data: c,
                ..Default::default()
            }],
            ..Default::default()
        },
        17,
    )
}
