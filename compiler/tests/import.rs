//! Import features that the ONNX test data does not exercise: external
//! data, model-local functions, sparse initializers, symbolic dims,
//! subgraph captures.

mod common;

use common::*;
use saturn::onnx::proto::*;
use saturn_ir::{Dim, Tensor, interp};

fn run(g: &saturn_ir::Graph, inputs: Vec<Tensor>) -> Vec<Tensor> {
    saturn_ir::verify::verify(g).unwrap();
    interp::run(g, inputs).unwrap()
}

#[test]
fn external_data_is_read_relative_to_the_model() {
    let dir = temp_dir("external_ok");
    let weights: Vec<f32> = vec![0.5, -1.0, 2.0];
    let mut blob = vec![0xAAu8; 16]; // the tensor starts at offset 16
    blob.extend(weights.iter().flat_map(|w| w.to_le_bytes()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/weights.bin"), &blob).unwrap();
    let mut m = add_const_model(vec![], vec![3]);
    let g = m.graph.as_mut().unwrap();
    g.input = vec![value_info("x", 1, &[2, 3])];
    let t = &mut g.initializer[0];
    t.data_location = Some(tensor_proto::DataLocation::External as i32);
    let kv = |k: &str, v: &str| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v.into()),
    };
    t.external_data = vec![
        kv("location", "data/weights.bin"),
        kv("offset", "16"),
        kv("length", "12"),
    ];
    let path = dir.join("model.onnx");
    write_model(&path, &m);
    let graph = saturn::onnx::load(&path).unwrap();
    let x = Tensor::from_vec(vec![2, 3], vec![1.0f32, 1.0, 1.0, 2.0, 2.0, 2.0]);
    let y = run(&graph, vec![x]);
    assert_eq!(
        y[0].as_slice::<f32>().unwrap(),
        &[1.5, 0.0, 3.0, 2.5, 1.0, 4.0]
    );
}

#[test]
fn model_functions_are_inlined() {
    // A local function `Double(a) = a + a`, called twice, the second call
    // on the first's result.
    let f = FunctionProto {
        name: Some("Double".into()),
        domain: Some("local".into()),
        input: vec!["a".into()],
        output: vec!["b".into()],
        node: vec![node("Add", &["a", "a"], &["b"], "sum")],
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        ..Default::default()
    };
    let mut call1 = node("Double", &["x"], &["t"], "call1");
    call1.domain = Some("local".into());
    let mut call2 = node("Double", &["t"], &["y"], "call2");
    call2.domain = Some("local".into());
    let mut m = relu_model();
    m.functions = vec![f];
    m.opset_import.push(OperatorSetIdProto {
        domain: Some("local".into()),
        version: Some(1),
    });
    m.graph.as_mut().unwrap().node = vec![call1, call2];
    let g = saturn::onnx::import_bytes(&encode(&m)).unwrap();
    assert_eq!(g.nodes().len(), 2);
    let y = run(
        &g,
        vec![Tensor::from_vec(
            vec![2, 3],
            vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0],
        )],
    );
    assert_eq!(
        y[0].as_slice::<f32>().unwrap(),
        &[4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    );
}

#[test]
fn function_attributes_refer_to_the_call() {
    // `Leaky(a) = LeakyRelu(a, alpha = @slope)`.
    let mut body = node("LeakyRelu", &["a"], &["b"], "leaky");
    body.attribute.push(AttributeProto {
        name: Some("alpha".into()),
        ref_attr_name: Some("slope".into()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        ..Default::default()
    });
    let f = FunctionProto {
        name: Some("Leaky".into()),
        domain: Some("local".into()),
        input: vec!["a".into()],
        output: vec!["b".into()],
        attribute: vec!["slope".into()],
        node: vec![body],
        ..Default::default()
    };
    let mut call = node("Leaky", &["x"], &["y"], "call");
    call.domain = Some("local".into());
    call.attribute.push(AttributeProto {
        name: Some("slope".into()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        f: Some(0.5),
        ..Default::default()
    });
    let mut m = relu_model();
    m.functions = vec![f];
    m.opset_import.push(OperatorSetIdProto {
        domain: Some("local".into()),
        version: Some(1),
    });
    m.graph.as_mut().unwrap().node = vec![call];
    let g = saturn::onnx::import_bytes(&encode(&m)).unwrap();
    let y = run(
        &g,
        vec![Tensor::from_vec(
            vec![2, 3],
            vec![-2.0f32, 2.0, -4.0, 0.0, 1.0, -1.0],
        )],
    );
    assert_eq!(
        y[0].as_slice::<f32>().unwrap(),
        &[-1.0, 2.0, -2.0, 0.0, 1.0, -0.5]
    );
}

#[test]
fn recursive_functions_are_an_error() {
    let mut inner = node("Loopy", &["a"], &["b"], "self_call");
    inner.domain = Some("local".into());
    let f = FunctionProto {
        name: Some("Loopy".into()),
        domain: Some("local".into()),
        input: vec!["a".into()],
        output: vec!["b".into()],
        node: vec![inner],
        ..Default::default()
    };
    let mut call = node("Loopy", &["x"], &["y"], "call");
    call.domain = Some("local".into());
    let mut m = relu_model();
    m.functions = vec![f];
    m.opset_import.push(OperatorSetIdProto {
        domain: Some("local".into()),
        version: Some(1),
    });
    m.graph.as_mut().unwrap().node = vec![call];
    let e = saturn::onnx::import_bytes(&encode(&m))
        .unwrap_err()
        .to_string();
    assert!(e.contains("deeper than"), "{e}");
}

#[test]
fn sparse_initializers_are_densified() {
    let mut m = add_const_model(vec![], vec![3]);
    let g = m.graph.as_mut().unwrap();
    g.initializer.clear();
    g.sparse_initializer.push(SparseTensorProto {
        values: Some(TensorProto {
            name: Some("c".into()),
            dims: vec![1],
            data_type: Some(1),
            float_data: vec![7.0],
            ..Default::default()
        }),
        indices: Some(TensorProto {
            dims: vec![1],
            data_type: Some(7),
            int64_data: vec![2],
            ..Default::default()
        }),
        dims: vec![3],
    });
    let g = saturn::onnx::import_bytes(&encode(&m)).unwrap();
    let y = run(&g, vec![Tensor::from_vec(vec![2, 3], vec![0.0f32; 6])]);
    assert_eq!(
        y[0].as_slice::<f32>().unwrap(),
        &[0.0, 0.0, 7.0, 0.0, 0.0, 7.0]
    );
}

#[test]
fn symbolic_dims_flow_through_inference() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    let mut vi = value_info("x", 1, &[0, 3]);
    if let Some(TypeProto {
        value: Some(type_proto::Value::TensorType(t)),
        ..
    }) = &mut vi.r#type
    {
        t.shape.as_mut().unwrap().dim[0].value = Some(
            tensor_shape_proto::dimension::Value::DimParam("batch".into()),
        );
    }
    g.input = vec![vi];
    g.output = vec![ValueInfoProto {
        name: Some("y".into()),
        ..Default::default()
    }];
    let g = saturn::onnx::import_bytes(&encode(&m)).unwrap();
    let y = g.outputs()[0];
    assert_eq!(g.ty(y).dims().unwrap(), &[Dim::sym("batch"), Dim::Known(3)]);
    // Any batch size runs.
    let out = run(&g, vec![Tensor::from_vec(vec![4, 3], vec![-1.0f32; 12])]);
    assert_eq!(out[0].shape(), &[4, 3]);
}

#[test]
fn initializers_listed_as_inputs_are_constants() {
    let mut m = add_const_model(vec![1.0, 2.0, 3.0], vec![3]);
    let g = m.graph.as_mut().unwrap();
    g.input.push(value_info("c", 1, &[3]));
    let g = saturn::onnx::import_bytes(&encode(&m)).unwrap();
    assert_eq!(g.inputs().len(), 1);
    let y = run(&g, vec![Tensor::from_vec(vec![2, 3], vec![0.0f32; 6])]);
    assert_eq!(
        y[0].as_slice::<f32>().unwrap(),
        &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
    );
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.node = vec![
        node("Relu", &["t"], &["y"], "second"),
        node("Neg", &["x"], &["t"], "first"),
    ];
    let g = saturn::onnx::import_bytes(&encode(&m)).unwrap();
    assert_eq!(g.nodes()[0].name, "first");
    let y = run(
        &g,
        vec![Tensor::from_vec(
            vec![2, 3],
            vec![1.0f32, -1.0, 2.0, -2.0, 0.0, 3.0],
        )],
    );
    assert_eq!(
        y[0].as_slice::<f32>().unwrap(),
        &[0.0, 1.0, 0.0, 2.0, 0.0, 0.0]
    );
}

#[test]
fn symbolic_shapes_flow_through_shape_arithmetic() {
    // x: f32[batch, 128]; s = shape(x); b = s[0:1]; t = concat(b, [2, -1]);
    // y = reshape(x, t) → f32[batch, 2, 64]; z = expand(c, shape(y)).
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    let mut vi = value_info("x", 1, &[0, 128]);
    if let Some(TypeProto {
        value: Some(type_proto::Value::TensorType(t)),
        ..
    }) = &mut vi.r#type
    {
        t.shape.as_mut().unwrap().dim[0].value = Some(
            tensor_shape_proto::dimension::Value::DimParam("batch".into()),
        );
    }
    g.input = vec![vi];
    let ints = |name: &str, v: &[i64]| TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(7),
        int64_data: v.to_vec(),
        ..Default::default()
    };
    g.initializer = vec![
        ints("zero", &[0]),
        ints("one", &[1]),
        ints("rest", &[2, -1]),
    ];
    g.initializer.push(TensorProto {
        name: Some("c".into()),
        dims: vec![1],
        data_type: Some(1),
        float_data: vec![1.0],
        ..Default::default()
    });
    g.node = vec![
        node("Shape", &["x"], &["s"], "shape"),
        node("Slice", &["s", "zero", "one"], &["b"], "slice"),
        node("Concat", &["b", "rest"], &["t"], "concat"),
        node("Reshape", &["x", "t"], &["y"], "reshape"),
        node("Shape", &["y"], &["ys"], "shape2"),
        node("Expand", &["c", "ys"], &["z"], "expand"),
    ];
    g.node[2].attribute.push(AttributeProto {
        name: Some("axis".into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(0),
        ..Default::default()
    });
    g.output = vec![
        ValueInfoProto {
            name: Some("y".into()),
            ..Default::default()
        },
        ValueInfoProto {
            name: Some("z".into()),
            ..Default::default()
        },
    ];
    let g = saturn::onnx::import_bytes(&encode(&m)).unwrap();
    let expect = [Dim::sym("batch"), Dim::Known(2), Dim::Known(64)];
    for &o in g.outputs() {
        assert_eq!(g.ty(o).dims().unwrap(), &expect, "{}", g.name(o));
    }
    let out = run(&g, vec![Tensor::from_vec(vec![3, 128], vec![0.5f32; 384])]);
    assert_eq!(out[0].shape(), &[3, 2, 64]);
    assert_eq!(out[1].shape(), &[3, 2, 64]);
}

fn sparse(values: Vec<f32>, indices: Vec<i64>, dims: Vec<i64>) -> SparseTensorProto {
    SparseTensorProto {
        values: Some(TensorProto {
            name: Some("c".into()),
            dims: vec![values.len() as i64],
            data_type: Some(1),
            float_data: values,
            ..Default::default()
        }),
        indices: Some(TensorProto {
            dims: vec![indices.len() as i64],
            data_type: Some(7),
            int64_data: indices,
            ..Default::default()
        }),
        dims,
    }
}

#[test]
fn constant_with_a_sparse_value() {
    let mut m = add_const_model(vec![], vec![3]);
    let g = m.graph.as_mut().unwrap();
    g.initializer.clear();
    let mut c = node("Constant", &[], &["c"], "const");
    c.attribute.push(AttributeProto {
        name: Some("sparse_value".into()),
        r#type: Some(attribute_proto::AttributeType::SparseTensor as i32),
        sparse_tensor: Some(sparse(vec![5.0, 6.0], vec![0, 2], vec![3])),
        ..Default::default()
    });
    g.node.insert(0, c);
    let g = saturn::onnx::import_bytes(&encode(&m)).unwrap();
    let y = run(&g, vec![Tensor::from_vec(vec![2, 3], vec![1.0f32; 6])]);
    assert_eq!(
        y[0].as_slice::<f32>().unwrap(),
        &[6.0, 1.0, 7.0, 6.0, 1.0, 7.0]
    );
}

#[test]
fn sparse_indices_out_of_range_are_an_error() {
    let mut m = add_const_model(vec![], vec![3]);
    let g = m.graph.as_mut().unwrap();
    g.initializer.clear();
    g.sparse_initializer
        .push(sparse(vec![5.0], vec![3], vec![3]));
    let e = saturn::onnx::import_bytes(&encode(&m))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`c`") && e.contains("out of range"), "{e}");
    m.graph.as_mut().unwrap().sparse_initializer[0] = sparse(vec![5.0], vec![-1], vec![3]);
    let e = saturn::onnx::import_bytes(&encode(&m))
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range"), "{e}");
}
