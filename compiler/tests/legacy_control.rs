//! Import of older opsets of the control-flow, recurrent and ml ops, of
//! loop bodies that leave their inputs untyped, and of If branches that
//! cannot run.

use prost::Message;
use saturn::onnx::proto::*;
use saturn_ir::{DType, Tensor, interp};

fn tensor_type(elem: i32, dims: Option<&[i64]>) -> TypeProto {
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(elem),
            shape: dims.map(|d| TensorShapeProto {
                dim: d
                    .iter()
                    .map(|&v| tensor_shape_proto::Dimension {
                        value: Some(tensor_shape_proto::dimension::Value::DimValue(v)),
                        ..Default::default()
                    })
                    .collect(),
            }),
        })),
        ..Default::default()
    }
}

fn value(name: &str, ty: Option<TypeProto>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: ty,
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn attr(name: &str, ty: attribute_proto::AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(ty as i32),
        ..Default::default()
    }
}

fn model(graph: GraphProto, opsets: &[(&str, i64)]) -> saturn_ir::Graph {
    let m = ModelProto {
        ir_version: Some(8),
        opset_import: opsets
            .iter()
            .map(|&(d, v)| OperatorSetIdProto {
                domain: Some(d.into()),
                version: Some(v),
            })
            .collect(),
        graph: Some(graph),
        ..Default::default()
    };
    let g = saturn::onnx::import_bytes(&m.encode_to_vec()).unwrap();
    saturn_ir::verify::verify(&g).unwrap();
    g
}

const FLOAT: i32 = 1;
const STRING: i32 = 8;
const INT64: i32 = 7;
const BOOL: i32 = 9;

#[test]
fn label_encoder_1_maps_strings_to_class_indices_and_back() {
    let mut classes = attr("classes_strings", attribute_proto::AttributeType::Strings);
    classes.strings = vec![b"a".to_vec(), b"b".to_vec()];
    let mut default = attr("default_int64", attribute_proto::AttributeType::Int);
    default.i = Some(9);
    let mut le = node(
        "LabelEncoder",
        &["x"],
        &["y"],
        vec![classes.clone(), default],
    );
    le.domain = Some("ai.onnx.ml".into());
    let graph = GraphProto {
        name: Some("g".into()),
        node: vec![le],
        input: vec![value("x", Some(tensor_type(STRING, Some(&[3]))))],
        output: vec![value("y", None)],
        ..Default::default()
    };
    let g = model(graph, &[("", 13), ("ai.onnx.ml", 1)]);
    let x = Tensor::new(
        DType::Str,
        vec![3],
        saturn_ir::tensor::Data::Str(vec!["b".into(), "z".into(), "a".into()]),
    )
    .unwrap();
    let y = interp::run(&g, vec![x]).unwrap();
    assert_eq!(y[0].as_slice::<i64>().unwrap(), &[1, 9, 0]);

    // From integers: indices to class names.
    let mut le = node("LabelEncoder", &["x"], &["y"], vec![classes]);
    le.domain = Some("ai.onnx.ml".into());
    let graph = GraphProto {
        name: Some("g".into()),
        node: vec![le],
        input: vec![value("x", Some(tensor_type(INT64, Some(&[2]))))],
        output: vec![value("y", None)],
        ..Default::default()
    };
    let g = model(graph, &[("", 13), ("ai.onnx.ml", 1)]);
    let y = interp::run(&g, vec![Tensor::from_vec(vec![2], vec![1i64, 5])]).unwrap();
    assert_eq!(
        y[0].as_strings().unwrap(),
        &["b".to_string(), "_Unused".to_string()]
    );
}

#[test]
fn rnn_1_output_sequence_is_accepted() {
    let mut seq = attr("output_sequence", attribute_proto::AttributeType::Int);
    seq.i = Some(1);
    let mut hidden = attr("hidden_size", attribute_proto::AttributeType::Int);
    hidden.i = Some(1);
    let graph = GraphProto {
        name: Some("g".into()),
        node: vec![node(
            "RNN",
            &["x", "w", "r"],
            &["y", "y_h"],
            vec![seq, hidden],
        )],
        input: vec![
            value("x", Some(tensor_type(FLOAT, Some(&[2, 1, 1])))),
            value("w", Some(tensor_type(FLOAT, Some(&[1, 1, 1])))),
            value("r", Some(tensor_type(FLOAT, Some(&[1, 1, 1])))),
        ],
        output: vec![value("y", None), value("y_h", None)],
        ..Default::default()
    };
    let g = model(graph, &[("", 1)]);
    let t = |v: Vec<f32>| Tensor::from_vec(vec![v.len(), 1, 1], v);
    let out = interp::run(&g, vec![t(vec![0.5, -0.25]), t(vec![1.0]), t(vec![0.0])]).unwrap();
    // R = 0: each step is tanh(x_t).
    let y = out[0].as_slice::<f32>().unwrap();
    assert_eq!(out[0].shape(), &[2, 1, 1, 1]);
    assert!((y[0] - 0.5f32.tanh()).abs() < 1e-6 && (y[1] + 0.25f32.tanh()).abs() < 1e-6);
}

#[test]
fn untyped_loop_body_inputs_take_the_loop_types() {
    // Like Range's function body: `prev` is untyped and grows nothing, but
    // the body adds a captured step to it each iteration.
    let body = GraphProto {
        name: Some("body".into()),
        node: vec![
            node("Identity", &["cond"], &["cond_out"], vec![]),
            node("Add", &["prev", "delta"], &["next"], vec![]),
            node("Identity", &["prev"], &["seen"], vec![]),
        ],
        input: vec![
            value("i", Some(tensor_type(INT64, Some(&[])))),
            value("cond", Some(tensor_type(BOOL, Some(&[])))),
            value("prev", None),
        ],
        output: vec![
            value("cond_out", None),
            value("next", None),
            value("seen", None),
        ],
        ..Default::default()
    };
    let mut body_attr = attr("body", attribute_proto::AttributeType::Graph);
    body_attr.g = Some(body);
    let graph = GraphProto {
        name: Some("g".into()),
        node: vec![node(
            "Loop",
            &["m", "", "start"],
            &["last", "all"],
            vec![body_attr],
        )],
        input: vec![
            value("m", Some(tensor_type(INT64, Some(&[])))),
            value("start", Some(tensor_type(FLOAT, Some(&[])))),
            value("delta", Some(tensor_type(FLOAT, Some(&[])))),
        ],
        output: vec![value("last", None), value("all", None)],
        ..Default::default()
    };
    let g = model(graph, &[("", 13)]);
    let out = interp::run(
        &g,
        vec![
            Tensor::scalar(3i64),
            Tensor::scalar(1.0f32),
            Tensor::scalar(0.5f32),
        ],
    )
    .unwrap();
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[2.5]);
    assert_eq!(out[1].as_slice::<f32>().unwrap(), &[1.0, 1.5, 2.0]);
}

#[test]
fn if_branch_that_cannot_run_may_not_type_check() {
    // The condition is a constant; the else branch adds shapes [2] and [3].
    let konst = |name: &str, t: TensorProto| {
        let mut a = attr("value", attribute_proto::AttributeType::Tensor);
        a.t = Some(t);
        node("Constant", &[], &[name], vec![a])
    };
    let floats = |v: Vec<f32>| TensorProto {
        dims: vec![v.len() as i64],
        data_type: Some(FLOAT),
        float_data: v,
        ..Default::default()
    };
    let branch = |name: &str, nodes: Vec<NodeProto>, out: &str| GraphProto {
        name: Some(name.into()),
        node: nodes,
        output: vec![value(out, None)],
        ..Default::default()
    };
    let then = branch(
        "then",
        vec![node("Identity", &["two"], &["t"], vec![])],
        "t",
    );
    let els = branch(
        "else",
        vec![node("Add", &["two", "three"], &["e"], vec![])],
        "e",
    );
    let mut then_attr = attr("then_branch", attribute_proto::AttributeType::Graph);
    then_attr.g = Some(then);
    let mut else_attr = attr("else_branch", attribute_proto::AttributeType::Graph);
    else_attr.g = Some(els);
    let cond = TensorProto {
        data_type: Some(BOOL),
        int32_data: vec![1],
        ..Default::default()
    };
    let graph = GraphProto {
        name: Some("g".into()),
        node: vec![
            konst("c", cond),
            konst("two", floats(vec![1.0, 2.0])),
            konst("three", floats(vec![1.0, 2.0, 3.0])),
            node("If", &["c"], &["y"], vec![then_attr, else_attr]),
        ],
        output: vec![value("y", None)],
        ..Default::default()
    };
    let g = model(graph, &[("", 13)]);
    let y = interp::run(&g, vec![]).unwrap();
    assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 2.0]);
}
