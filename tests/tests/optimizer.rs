//! What the optimizer must do to real models: fuse BERT's attention
//! blocks, recognize softmax written out, fold BatchNorm into the
//! convolutions of the model-zoo CNNs — and keep their outputs.

use saturn_ir::target::Target;
use saturn_ir::{Graph, Op, interp};
use saturn_passes::eqsat::optimize;
use saturn_tests::conformance::{data_sets, numbered};
use saturn_tests::{ATOL, RTOL, compare, onnx_tests_dir};

fn load(case: &str) -> Graph {
    saturn::model::load(&onnx_tests_dir().join(case).join("model.onnx")).unwrap()
}

fn optimized(g: &Graph) -> Graph {
    let (out, report) = optimize(g, &Target::named("x86-64-avx512").unwrap()).unwrap();
    assert_eq!(report.type_conflicts, 0);
    out
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.nodes().iter().filter(|n| pred(&n.op)).count()
}

/// Both graphs give the case's expected outputs.
fn same_outputs(case: &str, a: &Graph, b: &Graph) {
    let dir = onnx_tests_dir().join(case);
    for set in data_sets(&dir) {
        let read = |p: &std::path::PathBuf| saturn::onnx::tensor::read_file(p).unwrap();
        let inputs: Vec<_> = numbered(&set, "input").iter().map(read).collect();
        let x = interp::run(a, inputs.clone()).unwrap();
        let y = interp::run(b, inputs).unwrap();
        for (i, (x, y)) in x.iter().zip(&y).enumerate() {
            compare(x, y, RTOL, ATOL).unwrap_or_else(|e| panic!("{case} output {i}: {e}"));
        }
    }
}

#[test]
fn bert_attention_blocks_become_attention() {
    let case = "transformers/test_bert_tiny";
    let g = load(case);
    let opt = optimized(&g);
    assert_eq!(count(&opt, |op| matches!(op, Op::Attention(_))), 2);
    assert_eq!(count(&opt, |op| matches!(op, Op::Softmax(_))), 0);
    // The head reshapes and transposes went into the attention ops.
    assert_eq!(count(&opt, |op| matches!(op, Op::Transpose(_))), 0);
    for n in opt
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, Op::Attention(_)))
    {
        let Op::Attention(a) = &n.op else {
            unreachable!()
        };
        assert_eq!((a.q_num_heads, a.kv_num_heads), (Some(2), Some(2)));
        assert_eq!(a.scale, Some(0.125));
        assert_eq!(n.inputs.len(), 4, "q, k, v and the mask");
    }
    same_outputs(case, &g, &opt);
}

#[test]
fn written_out_softmax_becomes_one_op() {
    let node = onnx_tests_dir().join("node");
    let mut cases: Vec<String> = std::fs::read_dir(&node)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| {
            (n.starts_with("test_softmax_") || n.starts_with("test_logsoftmax_"))
                && n.contains("_expanded")
        })
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 28);
    for name in cases {
        let case = format!("node/{name}");
        let g = load(&case);
        let opt = optimized(&g);
        let ops: Vec<&str> = opt.nodes().iter().map(|n| n.op.name()).collect();
        let want = if name.starts_with("test_log") {
            "log_softmax"
        } else {
            "softmax"
        };
        assert_eq!(ops, [want], "{case}");
        same_outputs(&case, &g, &opt);
    }
}

#[test]
fn batchnorm_folds_into_the_convolutions_of_every_cnn() {
    let mut folded = 0;
    for model in [
        "bvlc_alexnet",
        "densenet121",
        "inception_v1",
        "inception_v2",
        "resnet50",
        "shufflenet",
        "squeezenet",
        "vgg19",
        "zfnet512",
    ] {
        let case = format!("models/test_{model}");
        let g = load(&case);
        let opt = optimized(&g);
        // No BatchNorm is left whose input a convolution produces.
        let after_conv = |g: &Graph| {
            g.nodes()
                .iter()
                .filter(|n| matches!(n.op, Op::BatchNormalization(_)))
                .filter(|n| {
                    let x = n.inputs[0].unwrap();
                    g.nodes()
                        .iter()
                        .any(|p| p.outputs.contains(&x) && matches!(p.op, Op::Conv(_)))
                })
                .count()
        };
        folded += after_conv(&g);
        assert_eq!(after_conv(&opt), 0, "{case}");
        same_outputs(&case, &g, &opt);
    }
    // resnet50 (53), inception_v2 (69), shufflenet (49) and densenet121
    // (BatchNorms after a Conv) had some.
    assert!(folded > 170, "only {folded} BatchNorms followed a Conv");
}
