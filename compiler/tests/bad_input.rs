//! Bad input of every kind gives a one-line error naming what is wrong,
//! with a non-zero exit, and never a panic.

mod common;

use common::*;
use saturn::onnx::proto::*;

/// Runs `saturn run` on a model file and inputs; returns stderr, asserting
/// a clean failure (exit code 1, one `error:` line, no panic).
fn fails(model: &std::path::Path, inputs: &[saturn_ir::Tensor]) -> String {
    let dir = model.parent().unwrap();
    let in_dir = dir.join("inputs");
    write_inputs(&in_dir, inputs);
    let out = saturn_cmd()
        .args([
            "run",
            model.to_str().unwrap(),
            "--inputs",
            in_dir.to_str().unwrap(),
            "--outputs",
        ])
        .arg(dir.join("outputs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clean failure, got {:?}: {stderr}",
        out.status
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn fails_model(name: &str, m: &ModelProto, inputs: &[saturn_ir::Tensor]) -> String {
    let dir = temp_dir(name);
    let path = dir.join("model.onnx");
    write_model(&path, m);
    fails(&path, inputs)
}

fn x() -> saturn_ir::Tensor {
    saturn_ir::Tensor::from_vec(vec![2, 3], vec![1.0f32; 6])
}

#[test]
fn truncated_model() {
    let mut bytes = encode(&relu_model());
    bytes.truncate(bytes.len() / 2);
    let dir = temp_dir("truncated");
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes).unwrap();
    let e = fails(&path, &[x()]);
    assert!(e.contains("not a valid ONNX protobuf"), "{e}");
}

#[test]
fn garbage_file() {
    let dir = temp_dir("garbage");
    let path = dir.join("model.onnx");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).unwrap();
    let e = fails(&path, &[x()]);
    assert!(e.contains("not a valid ONNX protobuf"), "{e}");
}

#[test]
fn empty_file_has_no_graph() {
    let dir = temp_dir("empty");
    let path = dir.join("model.onnx");
    std::fs::write(&path, b"").unwrap();
    let e = fails(&path, &[]);
    assert!(e.contains("no graph"), "{e}");
}

#[test]
fn missing_model_file() {
    let dir = temp_dir("missing");
    let e = fails(&dir.join("nope.onnx"), &[]);
    assert!(e.contains("nope.onnx") && e.contains("No such file"), "{e}");
}

#[test]
fn unsupported_op_names_op_domain_opset_and_node() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.node[0].op_type = Some("FancyOp".into());
    g.node[0].name = Some("my_node".into());
    let e = fails_model("unsupported", &m, &[x()]);
    for part in ["FancyOp", "ai.onnx", "opset 17", "my_node", "not supported"] {
        assert!(e.contains(part), "missing {part}: {e}");
    }
}

#[test]
fn unknown_domain() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().node[0].domain = Some("com.example".into());
    let e = fails_model("domain", &m, &[x()]);
    assert!(
        e.contains("com.example") && e.contains("opset_import"),
        "{e}"
    );
}

#[test]
fn undefined_input_or_missing_initializer() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().node[0].input = vec!["w".into()];
    let e = fails_model("undefined", &m, &[x()]);
    assert!(e.contains("input `w`") && e.contains("not defined"), "{e}");
}

#[test]
fn negative_dims_in_initializer() {
    let mut m = add_const_model(vec![1.0; 3], vec![3]);
    m.graph.as_mut().unwrap().initializer[0].dims = vec![-3];
    let e = fails_model("negative", &m, &[x()]);
    assert!(
        e.contains("negative dimension -3") && e.contains("`c`"),
        "{e}"
    );
}

#[test]
fn absurd_dims_in_initializer() {
    let mut m = add_const_model(vec![1.0; 3], vec![3]);
    m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 40, 1 << 40];
    let e = fails_model("absurd", &m, &[x()]);
    assert!(e.contains("exceed") && e.contains("`c`"), "{e}");
}

#[test]
fn initializer_data_shorter_than_its_shape() {
    let mut m = add_const_model(vec![1.0; 3], vec![3]);
    m.graph.as_mut().unwrap().initializer[0].dims = vec![300];
    let e = fails_model("short", &m, &[x()]);
    assert!(e.contains("300") && e.contains("`c`"), "{e}");
}

#[test]
fn inconsistent_shapes_name_the_node() {
    // [2,3] + [4] does not broadcast.
    let m = add_const_model(vec![1.0; 4], vec![4]);
    let e = fails_model("inconsistent", &m, &[x()]);
    assert!(e.contains("add_node") && e.contains("broadcast"), "{e}");
}

#[test]
fn declared_output_type_contradicting_inference() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().output[0] = value_info("y", 7, &[2, 3]);
    let e = fails_model("contradiction", &m, &[x()]);
    assert!(e.contains("declared") && e.contains("i64[2,3]"), "{e}");
}

#[test]
fn cycle() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.node = vec![
        node("Relu", &["b"], &["a"], "first"),
        node("Relu", &["a"], &["b"], "second"),
        node("Relu", &["x"], &["y"], "third"),
    ];
    let e = fails_model("cycle", &m, &[x()]);
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn duplicate_value_names() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.node.push(node("Relu", &["x"], &["y"], "again"));
    let e = fails_model("duplicate", &m, &[x()]);
    assert!(e.contains("`y`") && e.contains("more than once"), "{e}");
}

#[test]
fn attribute_of_the_wrong_type() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.node[0].op_type = Some("LeakyRelu".into());
    g.node[0].attribute.push(AttributeProto {
        name: Some("alpha".into()),
        r#type: Some(attribute_proto::AttributeType::String as i32),
        s: Some(b"big".to_vec()),
        ..Default::default()
    });
    let e = fails_model("attr_type", &m, &[x()]);
    assert!(e.contains("alpha") && e.contains("expects a float"), "{e}");
}

#[test]
fn unknown_attribute() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().node[0]
        .attribute
        .push(AttributeProto {
            name: Some("slope".into()),
            r#type: Some(attribute_proto::AttributeType::Float as i32),
            f: Some(2.0),
            ..Default::default()
        });
    let e = fails_model("attr_unknown", &m, &[x()]);
    assert!(e.contains("unknown attribute `slope`"), "{e}");
}

#[test]
fn input_of_the_wrong_shape_or_type() {
    let m = relu_model();
    let e = fails_model(
        "wrong_shape",
        &m,
        &[saturn_ir::Tensor::from_vec(vec![3, 2], vec![1.0f32; 6])],
    );
    assert!(
        e.contains("input `x`") && e.contains("f32[2,3]") && e.contains("[3, 2]"),
        "{e}"
    );
    let e = fails_model(
        "wrong_type",
        &m,
        &[saturn_ir::Tensor::from_vec(vec![2, 3], vec![1i64; 6])],
    );
    assert!(e.contains("input `x`") && e.contains("i64"), "{e}");
}

#[test]
fn missing_input_file() {
    let e = fails_model("no_inputs", &relu_model(), &[]);
    assert!(
        e.contains("input_0.pb") && e.contains("takes 1 inputs"),
        "{e}"
    );
}

#[test]
fn malformed_input_tensor() {
    let dir = temp_dir("bad_tensor");
    let path = dir.join("model.onnx");
    write_model(&path, &relu_model());
    let in_dir = dir.join("inputs");
    std::fs::create_dir_all(&in_dir).unwrap();
    std::fs::write(in_dir.join("input_0.pb"), [0x0a, 0xff, 0xff]).unwrap();
    let out = saturn_cmd()
        .args([
            "run",
            path.to_str().unwrap(),
            "--inputs",
            in_dir.to_str().unwrap(),
            "--outputs",
            "/tmp/saturn-unused",
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("input_0.pb") && e.contains("not a valid ONNX protobuf"),
        "{e}"
    );
}

#[test]
fn external_data_outside_the_model_folder() {
    let mut m = add_const_model(vec![1.0; 3], vec![3]);
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.float_data.clear();
    t.data_location = Some(tensor_proto::DataLocation::External as i32);
    t.external_data = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some("../../etc/passwd".into()),
    }];
    let e = fails_model("external_escape", &m, &[x()]);
    assert!(e.contains("relative path inside the model's folder"), "{e}");
}

#[test]
fn external_data_file_too_short() {
    let mut m = add_const_model(vec![1.0; 3], vec![3]);
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.float_data.clear();
    t.data_location = Some(tensor_proto::DataLocation::External as i32);
    t.external_data = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some("weights.bin".into()),
    }];
    let dir = temp_dir("external_short");
    std::fs::write(dir.join("weights.bin"), [0u8; 5]).unwrap();
    let path = dir.join("model.onnx");
    write_model(&path, &m);
    let e = fails(&path, &[x()]);
    assert!(e.contains("beyond the end"), "{e}");
}

#[test]
fn absurd_runtime_shape_is_an_error_not_an_allocation() {
    // ConstantOfShape of a shape given at run time: [2^40, 2^40].
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.input = vec![value_info("s", 7, &[2])];
    g.node = vec![node("ConstantOfShape", &["s"], &["y"], "fill")];
    g.output = vec![value_info_rank("y", 1, 2)];
    let s = saturn_ir::Tensor::from_vec(vec![2], vec![1i64 << 40, 1i64 << 40]);
    let e = fails_model("absurd_runtime", &m, &[s]);
    assert!(
        e.contains("fill") && (e.contains("more elements") || e.contains("limit")),
        "{e}"
    );
}

#[test]
fn malformed_tir() {
    let dir = temp_dir("bad_tir");
    let path = dir.join("model.tir");
    std::fs::write(
        &path,
        "graph @g(%x: f32[2]) {\n  %y: f32[2] = relu(%x\n  return %y\n}\n",
    )
    .unwrap();
    let e = fails(&path, &[]);
    assert!(e.contains("model.tir:3:3") && e.contains("expected"), "{e}");
}

#[test]
fn ill_typed_tir() {
    let dir = temp_dir("ill_typed_tir");
    let path = dir.join("model.tir");
    std::fs::write(
        &path,
        "graph @g(%x: f32[2]) {\n  %y: i64[2] = relu(%x) loc(\"r\")\n  return %y\n}\n",
    )
    .unwrap();
    let e = fails(&path, &[]);
    assert!(e.contains("node `r` (relu)") && e.contains("i64[2]"), "{e}");
}

#[test]
fn unknown_backend() {
    let dir = temp_dir("backend");
    let path = dir.join("model.onnx");
    write_model(&path, &relu_model());
    let out = saturn_cmd()
        .args([
            "run",
            path.to_str().unwrap(),
            "--inputs",
            ".",
            "--outputs",
            ".",
            "--backend",
            "tpu",
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        e.contains("unknown backend `tpu`") && e.contains("interp"),
        "{e}"
    );
}
