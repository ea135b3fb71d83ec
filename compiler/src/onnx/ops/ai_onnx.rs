//! Builders for the default domain (`ai.onnx`) where an op's ONNX form
//! differs from Saturn's: attributes that later opsets turned into inputs,
//! older semantics, and values rather than ops (`Constant`).

use saturn_ir::ops::infer::normalize_axis;
use saturn_ir::ops::*;
use saturn_ir::{AttrValue, DType, Op, Tensor};

use super::{Build, NodeCx, generic};
use crate::onnx::ImportError;
use crate::onnx::proto::tensor_proto;

pub(super) fn register(reg: &mut dyn FnMut(&'static str, Build)) {
    reg("Constant", constant);
    for op in [
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "ReduceSumSquare",
    ] {
        reg(op, reduce);
    }
    reg("Squeeze", axes_input_before_13);
    reg("Unsqueeze", axes_input_before_13);
    reg("Split", split);
    reg("Slice", slice);
    reg("Pad", pad);
    reg("Clip", clip);
    reg("Dropout", dropout);
    reg("BatchNormalization", batch_norm);
    reg("Softmax", softmax_like);
    reg("LogSoftmax", softmax_like);
    reg("Hardmax", softmax_like);
    reg("Upsample", upsample);
    reg("Resize", resize);
    for op in [
        "Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less",
    ] {
        reg(op, legacy_broadcast);
    }
    reg("Gemm", gemm);
    reg("PRelu", prelu);
    reg("TopK", top_k);
    reg("Cast", cast);
    reg("DFT", dft);
    reg("Scatter", scatter);
    reg("GridSample", grid_sample);
    reg("QuantizeLinear", quantize);
    reg("DequantizeLinear", quantize);
    reg("LpPool", lp_pool);
    reg("GlobalLpPool", lp_pool);
    reg("Reshape", reshape);
    reg("Concat", concat);
    reg("GroupNormalization", group_norm);
    reg("RoiAlign", roi_align);
    reg("Scan", scan);
    for op in ["RNN", "GRU", "LSTM"] {
        reg(op, recurrent);
    }
}

/// Moves an int or ints attribute to a constant input at `index`.
fn attr_to_input(cx: &mut NodeCx, attr: &str, index: usize) -> Result<(), ImportError> {
    if let Some(v) = cx.attrs.remove(attr) {
        let ints = match v {
            AttrValue::Ints(v) => v,
            AttrValue::Int(i) => vec![i],
            other => {
                return Err(cx.err(format!(
                    "attribute `{attr}` must be ints, found {}",
                    other.kind()
                )));
            }
        };
        let c = cx.ints(&ints)?;
        cx.set_input(index, Some(c));
    }
    Ok(())
}

/// A scalar constant of input 0's dtype holding `value`.
fn scalar_like_input(cx: &mut NodeCx, value: f32) -> Result<saturn_ir::Value, ImportError> {
    let dtype = cx.b.graph().ty(cx.input(0)?).dtype;
    cx.constant(Tensor::scalar(value).cast(dtype, true))
}

fn constant(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.outputs.len() != 1 {
        return Err(cx.err("Constant has exactly one output"));
    }
    let attrs = std::mem::take(&mut cx.attrs);
    let names: Vec<String> = attrs.names().map(String::from).collect();
    let [name] = names.as_slice() else {
        return Err(cx.err(format!(
            "Constant needs exactly one value attribute, found {names:?}"
        )));
    };
    let v = attrs.get(name).cloned().unwrap();
    let t = match (name.as_str(), v) {
        ("value" | "sparse_value", AttrValue::Tensor(t)) => t,
        ("value_float", AttrValue::Float(f)) => Tensor::scalar(f),
        ("value_floats", AttrValue::Floats(f)) => Tensor::from_vec(vec![f.len()], f),
        ("value_floats", AttrValue::Ints(i)) if i.is_empty() => {
            Tensor::from_vec(vec![0], Vec::<f32>::new())
        }
        ("value_int", AttrValue::Int(i)) => Tensor::scalar(i),
        ("value_ints", AttrValue::Ints(i)) => Tensor::from_vec(vec![i.len()], i),
        ("value_string", AttrValue::Str(s)) => {
            Tensor::new(DType::Str, vec![], saturn_ir::tensor::Data::Str(vec![s])).unwrap()
        }
        ("value_strings", AttrValue::Strs(s)) => {
            Tensor::new(DType::Str, vec![s.len()], saturn_ir::tensor::Data::Str(s)).unwrap()
        }
        (n, v) => {
            return Err(cx.err(format!(
                "Constant attribute `{n}` ({}) is not supported",
                v.kind()
            )));
        }
    };
    let out = cx.outputs[0].0.clone();
    if let Some(declared) = &cx.outputs[0].1
        && (declared.dtype != t.dtype() || !declared.shape.admits(t.shape()))
    {
        return Err(cx.err(format!(
            "the constant is {}{:?} but its output is declared {declared}",
            t.dtype(),
            t.shape()
        )));
    }
    cx.b.constant(out, t)?;
    Ok(())
}

fn reduce(mut cx: NodeCx) -> Result<(), ImportError> {
    let axes_became_input = if cx.op_type == "ReduceSum" { 13 } else { 18 };
    if cx.opset < axes_became_input {
        attr_to_input(&mut cx, "axes", 1)?;
    }
    generic(cx)
}

fn axes_input_before_13(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 13 {
        attr_to_input(&mut cx, "axes", 1)?;
    }
    generic(cx)
}

fn split(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 13 {
        attr_to_input(&mut cx, "split", 1)?;
    }
    generic(cx)
}

fn slice(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 10 {
        attr_to_input(&mut cx, "starts", 1)?;
        attr_to_input(&mut cx, "ends", 2)?;
        attr_to_input(&mut cx, "axes", 3)?;
    }
    generic(cx)
}

fn pad(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 11 {
        attr_to_input(&mut cx, "pads", 1)?;
        let value = match cx.attrs.remove("value") {
            Some(AttrValue::Float(f)) => f,
            Some(AttrValue::Int(i)) => i as f32,
            _ => 0.0,
        };
        let c = scalar_like_input(&mut cx, value)?;
        cx.set_input(2, Some(c));
    }
    generic(cx)
}

fn clip(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 11 {
        for (attr, index) in [("min", 1), ("max", 2)] {
            if let Some(v) = cx.attrs.remove(attr) {
                let AttrValue::Float(f) = v else {
                    return Err(cx.err(format!("attribute `{attr}` must be a float")));
                };
                let c = scalar_like_input(&mut cx, f)?;
                cx.set_input(index, Some(c));
            }
        }
    }
    generic(cx)
}

fn dropout(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 12 {
        // Inference-mode dropout: the ratio does not matter.
        cx.attrs.remove("ratio");
        cx.attrs.remove("is_test");
    }
    generic(cx)
}

fn batch_norm(mut cx: NodeCx) -> Result<(), ImportError> {
    cx.attrs.remove("is_test");
    cx.attrs.remove("consumed_inputs");
    if let Some(v) = cx.attrs.remove("spatial")
        && v != AttrValue::Int(1)
    {
        return Err(cx.err("BatchNormalization with spatial = 0 is not supported"));
    }
    if cx.outputs.len() > 3 {
        // Opsets before 9 list the saved statistics of training.
        cx.outputs.truncate(3);
    }
    generic(cx)
}

/// Before opset 13, softmax-like ops flatten the input to 2-D at `axis`
/// (default 1) and normalize whole rows.
fn softmax_like(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset >= 13 {
        return generic(cx);
    }
    let axis = match cx.attrs.remove("axis") {
        Some(AttrValue::Int(a)) => a,
        None => 1,
        Some(_) => return Err(cx.err("attribute `axis` must be an int")),
    };
    let x = cx.input(0)?;
    let rank = cx
        .rank(0)
        .ok_or_else(|| cx.err("the input's rank must be known"))?;
    let a = normalize_axis(axis, rank).map_err(|e| cx.err(e.to_string()))?;
    let make = |op_type: &str, axis: i64| -> Op {
        match op_type {
            "Softmax" => Softmax {
                axis,
                ..Default::default()
            }
            .into(),
            "LogSoftmax" => LogSoftmax { axis }.into(),
            _ => Hardmax { axis }.into(),
        }
    };
    if a + 1 == rank {
        let op = make(cx.op_type, -1);
        return cx.finish(op);
    }
    let flat = cx.emit(Flatten { axis: a as i64 }, &[x])?;
    let y = cx.emit(make(cx.op_type, 1), &[flat])?;
    let shape = cx.emit(
        Shape {
            start: 0,
            end: None,
        },
        &[x],
    )?;
    cx.inputs = vec![Some(y), Some(shape)];
    cx.finish(Reshape { allowzero: false }.into())
}

fn nearest_legacy_resize(mode: ResizeMode) -> Resize {
    Resize {
        antialias: false,
        axes: None,
        coordinate_transformation_mode: CoordinateTransform::Asymmetric,
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        keep_aspect_ratio_policy: AspectRatioPolicy::Stretch,
        mode,
        nearest_mode: NearestMode::Floor,
    }
}

fn legacy_mode(cx: &mut NodeCx) -> Result<ResizeMode, ImportError> {
    match cx.attrs.remove("mode") {
        None => Ok(ResizeMode::Nearest),
        Some(AttrValue::Str(s)) => match s.as_str() {
            "nearest" => Ok(ResizeMode::Nearest),
            "linear" | "bilinear" => Ok(ResizeMode::Linear),
            other => Err(cx.err(format!("mode `{other}` is not supported"))),
        },
        Some(_) => Err(cx.err("attribute `mode` must be a string")),
    }
}

/// Upsample (opsets 7 to 9) is Resize with asymmetric coordinates and
/// floor rounding.
fn upsample(mut cx: NodeCx) -> Result<(), ImportError> {
    let mode = legacy_mode(&mut cx)?;
    let x = cx.input(0)?;
    let scales = match cx.attrs.remove("scales") {
        Some(AttrValue::Floats(s)) => cx.constant(Tensor::from_vec(vec![s.len()], s))?,
        _ => cx.input(1)?,
    };
    if !cx.attrs.is_empty() {
        let names: Vec<String> = cx.attrs.names().map(String::from).collect();
        return Err(cx.err(format!("unknown attributes {names:?}")));
    }
    cx.inputs = vec![Some(x), None, Some(scales)];
    cx.finish(nearest_legacy_resize(mode).into())
}

fn resize(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset >= 11 {
        return generic(cx);
    }
    let mode = legacy_mode(&mut cx)?;
    let (x, scales) = (cx.input(0)?, cx.input(1)?);
    cx.inputs = vec![Some(x), None, Some(scales)];
    cx.finish(nearest_legacy_resize(mode).into())
}

/// Before opset 7, binary ops broadcast only with `broadcast = 1`, and
/// `axis` says where the second operand's dims line up with the first's.
fn legacy_broadcast(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset >= 7 {
        return generic(cx);
    }
    cx.attrs.remove("broadcast");
    cx.attrs.remove("consumed_inputs");
    if let Some(v) = cx.attrs.remove("axis") {
        let AttrValue::Int(axis) = v else {
            return Err(cx.err("attribute `axis` must be an int"));
        };
        let (ra, rb) = match (cx.rank(0), cx.rank(1)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(cx.err("legacy broadcasting needs the operands' ranks")),
        };
        let axis = normalize_axis(axis, ra).map_err(|e| cx.err(e.to_string()))?;
        let trailing = ra
            .checked_sub(axis + rb)
            .ok_or_else(|| cx.err("operand B does not fit at `axis`"))?;
        if trailing > 0 {
            let axes: Vec<i64> = (rb..rb + trailing).map(|a| a as i64).collect();
            let axes = cx.ints(&axes)?;
            let b = cx.input(1)?;
            let b = cx.emit(Unsqueeze {}, &[b, axes])?;
            cx.set_input(1, Some(b));
        }
    }
    generic(cx)
}

fn gemm(mut cx: NodeCx) -> Result<(), ImportError> {
    cx.attrs.remove("broadcast");
    generic(cx)
}

fn top_k(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 10 {
        attr_to_input(&mut cx, "k", 1)?;
    }
    generic(cx)
}

fn cast(mut cx: NodeCx) -> Result<(), ImportError> {
    // Before opset 6, `to` named the type as a string.
    if let Some(AttrValue::Str(s)) = cx.attrs.get("to").cloned() {
        let code = tensor_proto::DataType::from_str_name(&s)
            .ok_or_else(|| cx.err(format!("unknown type `{s}`")))?;
        cx.attrs.insert("to", AttrValue::Int(code as i64));
    }
    generic(cx)
}

fn dft(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 20 {
        let axis = match cx.attrs.remove("axis") {
            Some(AttrValue::Int(a)) => a,
            _ => 1,
        };
        let c = cx.constant(Tensor::scalar(axis))?;
        cx.set_input(2, Some(c));
    }
    generic(cx)
}

fn scatter(mut cx: NodeCx) -> Result<(), ImportError> {
    let op = cx.op_from_attrs("ScatterElements")?;
    cx.finish(op)
}

fn grid_sample(mut cx: NodeCx) -> Result<(), ImportError> {
    if let Some(AttrValue::Str(m)) = cx.attrs.get("mode").cloned() {
        let m = match m.as_str() {
            "bilinear" => "linear",
            "bicubic" => "cubic",
            other => other,
        };
        cx.attrs.insert("mode", AttrValue::Str(m.into()));
    }
    generic(cx)
}

fn quantize(mut cx: NodeCx) -> Result<(), ImportError> {
    // 0 means "the zero point's type".
    for attr in ["output_dtype", "precision"] {
        if cx.attrs.get(attr) == Some(&AttrValue::Int(0)) {
            cx.attrs.remove(attr);
        }
    }
    generic(cx)
}

fn lp_pool(mut cx: NodeCx) -> Result<(), ImportError> {
    // Opset 1 had a float `p`.
    if let Some(AttrValue::Float(p)) = cx.attrs.get("p").cloned() {
        cx.attrs.insert("p", AttrValue::Int(p as i64));
    }
    generic(cx)
}

/// Before opset 7, a 1-D slope of PRelu applies per channel (axis 1), where
/// later opsets broadcast it from the trailing axis.
fn prelu(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 7
        && let (Some(rx), Some(1)) = (cx.rank(0), cx.rank(1))
        && rx > 2
    {
        let axes: Vec<i64> = (1..rx as i64 - 1).collect();
        let axes = cx.ints(&axes)?;
        let slope = cx.input(1)?;
        let slope = cx.emit(Unsqueeze {}, &[slope, axes])?;
        cx.set_input(1, Some(slope));
    }
    cx.attrs.remove("consumed_inputs");
    generic(cx)
}

/// Before opset 5, Reshape took its target shape as an attribute.
fn reshape(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 5 {
        cx.attrs.remove("consumed_inputs");
        attr_to_input(&mut cx, "shape", 1)?;
    }
    generic(cx)
}

/// Before opset 4, Concat's axis was optional and defaulted to 1.
fn concat(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset < 4 && cx.attrs.get("axis").is_none() {
        cx.attrs.insert("axis", AttrValue::Int(1));
    }
    generic(cx)
}

/// Before opset 21, GroupNormalization's scale and bias hold one value per
/// group; they become one value per channel (each group's value repeated
/// over its channels).
fn group_norm(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset >= 21 {
        return generic(cx);
    }
    let groups = match cx.attrs.get("num_groups") {
        Some(AttrValue::Int(g)) if *g > 0 => *g as usize,
        _ => return Err(cx.err("attribute `num_groups` must be a positive int")),
    };
    let x = cx.input(0)?;
    let channels =
        cx.b.graph()
            .ty(x)
            .dims()
            .and_then(|d| d.get(1)?.known())
            .ok_or_else(|| cx.err("the number of channels must be known"))? as usize;
    if !channels.is_multiple_of(groups) {
        return Err(cx.err(format!("{channels} channels in {groups} groups")));
    }
    for i in [1, 2] {
        let v = cx.input(i)?;
        let per_channel = if let Some(t) = cx.b.known(v).cloned() {
            if t.numel() != groups {
                return Err(cx.err(format!("input {i} must hold {groups} values")));
            }
            let idx: Vec<usize> = (0..channels).map(|c| c / (channels / groups)).collect();
            cx.constant(t.gather_flat(vec![channels], &idx))?
        } else {
            let g = groups as i64;
            let col = cx.ints(&[g, 1])?;
            let col = cx.emit(Reshape { allowzero: false }, &[v, col])?;
            let grid = cx.ints(&[g, channels as i64 / g])?;
            let grid = cx.emit(Expand {}, &[col, grid])?;
            let flat = cx.ints(&[channels as i64])?;
            cx.emit(Reshape { allowzero: false }, &[grid, flat])?
        };
        cx.set_input(i, Some(per_channel));
    }
    generic(cx)
}

fn roi_align(mut cx: NodeCx) -> Result<(), ImportError> {
    // Before opset 16 RoiAlign had no coordinate_transformation_mode and
    // behaved as `output_half_pixel` (no half-pixel offset).
    if cx.opset < 16 && cx.attrs.get("coordinate_transformation_mode").is_none() {
        cx.attrs.insert(
            "coordinate_transformation_mode",
            AttrValue::Str("output_half_pixel".into()),
        );
    }
    generic(cx)
}

/// Scan before opset 9 has a batch axis first on every state and scan
/// input (and output) and an optional `sequence_lens` first input. With
/// full-length sequences it is one opset-9 Scan per batch entry, on the
/// entries picked out with Gather and stacked back with Concat.
fn scan(mut cx: NodeCx) -> Result<(), ImportError> {
    if cx.opset >= 9 {
        return generic(cx);
    }
    if let Some(v) = cx.attrs.remove("directions") {
        cx.attrs.insert("scan_input_directions", v);
    }
    let op = cx.op_from_attrs("Scan")?;
    let Op::Scan(scan) = &op else {
        unreachable!("op_from_attrs(\"Scan\") builds a Scan")
    };
    let inputs: Vec<saturn_ir::Value> = cx.inputs[1..]
        .iter()
        .map(|v| v.ok_or_else(|| cx.err("only the sequence lengths may be omitted")))
        .collect::<Result<_, _>>()?;
    let batch = inputs
        .iter()
        .find_map(|&v| cx.b.graph().ty(v).dims()?.first()?.known())
        .ok_or_else(|| cx.err("Scan before opset 9 needs a known batch size"))?;
    let m = scan.num_scan_inputs.max(0) as usize;
    if let Some(lens) = cx.inputs[0] {
        let full = m >= 1
            && inputs.len() >= m
            && match (
                cx.b.known(lens),
                cx.b.graph().ty(inputs[inputs.len() - m]).dims(),
            ) {
                (Some(l), Some(d)) if d.len() >= 2 => {
                    let seq = d[1].known();
                    l.to_i64_vec().iter().all(|&x| seq == Some(x as u64))
                }
                _ => false,
            };
        if !full {
            return Err(cx.err(
                "Scan before opset 9 with sequence lengths shorter than the sequences is not supported",
            ));
        }
    }
    if batch > 1 << 16 {
        return Err(cx.err(format!("batch size {batch} is too large to unroll")));
    }
    let zero_axis = cx.ints(&[0])?;
    let mut per_output: Vec<Vec<saturn_ir::Value>> = vec![Vec::new(); cx.outputs.len()];
    for b in 0..batch as i64 {
        let index = cx.constant(Tensor::scalar(b))?;
        let entries: Vec<Option<saturn_ir::Value>> = inputs
            .iter()
            .map(|&v| cx.emit(Gather { axis: 0 }, &[v, index]).map(Some))
            .collect::<Result<_, _>>()?;
        // Distinct names: the builder names empty outputs alike.
        let outs: Vec<(String, Option<saturn_ir::TensorType>)> = (0..cx.outputs.len())
            .map(|k| (cx.b.fresh_name(&format!("{}_batch{b}_{k}", cx.label)), None))
            .collect();
        let results = cx.b.node("", op.clone(), entries, outs)?;
        for (k, r) in results.into_iter().enumerate() {
            let u = cx.emit(Unsqueeze {}, &[r, zero_axis])?;
            per_output[k].push(u);
        }
    }
    let outputs = std::mem::take(&mut cx.outputs);
    for (parts, out) in per_output.into_iter().zip(outputs) {
        let parts = parts.into_iter().map(Some).collect();
        cx.b.node("", Concat { axis: 0 }.into(), parts, vec![out])?;
    }
    Ok(())
}

/// Opsets before 7 of the recurrent ops have `output_sequence`, which only
/// says whether Y is wanted: the node's outputs already say that.
fn recurrent(mut cx: NodeCx) -> Result<(), ImportError> {
    cx.attrs.remove("output_sequence");
    generic(cx)
}
