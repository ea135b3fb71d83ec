//! The `saturn` command line on good input.

mod common;

use common::*;
use saturn_ir::Tensor;

#[test]
fn run_writes_outputs_in_graph_order() {
    let dir = temp_dir("cli_run");
    let path = dir.join("model.onnx");
    write_model(&path, &relu_model());
    let x = Tensor::from_vec(vec![2, 3], vec![-1.0f32, 2.0, -3.0, 4.0, 0.0, -0.5]);
    write_inputs(&dir.join("in"), &[x]);
    let out = saturn_cmd()
        .args(["run", path.to_str().unwrap(), "--inputs"])
        .arg(dir.join("in"))
        .arg("--outputs")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y = saturn::onnx::tensor::read_file(&dir.join("out/output_0.pb")).unwrap();
    assert_eq!(
        y.as_slice::<f32>().unwrap(),
        &[0.0, 2.0, 0.0, 4.0, 0.0, 0.0]
    );
}

#[test]
fn ir_prints_text_that_runs_like_the_model() {
    let dir = temp_dir("cli_ir");
    let path = dir.join("model.onnx");
    write_model(&path, &add_const_model(vec![1.0, 2.0, 3.0], vec![3]));
    let out = saturn_cmd()
        .args(["ir", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("%c: f32[3] = const [1.0, 2.0, 3.0]"),
        "{text}"
    );
    assert!(text.contains("= add(%x, %c) loc(\"add_node\")"), "{text}");
    std::fs::write(dir.join("model.tir"), &text).unwrap();
    write_inputs(
        &dir.join("in"),
        &[Tensor::from_vec(vec![2, 3], vec![1.0f32; 6])],
    );
    let out = saturn_cmd()
        .args(["run", dir.join("model.tir").to_str().unwrap(), "--inputs"])
        .arg(dir.join("in"))
        .arg("--outputs")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y = saturn::onnx::tensor::read_file(&dir.join("out/output_0.pb")).unwrap();
    assert_eq!(
        y.as_slice::<f32>().unwrap(),
        &[2.0, 3.0, 4.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn help_teaches_the_commands() {
    let out = saturn_cmd().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for part in ["run", "ir", "backends", "Examples:", "saturn run"] {
        assert!(help.contains(part), "--help lacks {part}:\n{help}");
    }
    let out = saturn_cmd().args(["help", "run"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for part in ["--inputs", "--outputs", "--backend", "input_0.pb"] {
        assert!(help.contains(part), "run --help lacks {part}:\n{help}");
    }
}

#[test]
fn backends_lists_the_interpreter() {
    let out = saturn_cmd().arg("backends").output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("interp"));
}

#[test]
fn the_readme_example_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mlp");
    let out_dir = temp_dir("readme_example");
    let out = saturn_cmd()
        .arg("run")
        .arg(root.join("model.onnx"))
        .arg("--inputs")
        .arg(root.join("inputs"))
        .arg("--outputs")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y = saturn::onnx::tensor::read_file(&out_dir.join("output_0.pb")).unwrap();
    let expected = saturn::onnx::tensor::read_file(&root.join("expected/output_0.pb")).unwrap();
    assert_eq!(y.shape(), &[2, 3]);
    for (a, e) in y
        .as_slice::<f32>()
        .unwrap()
        .iter()
        .zip(expected.as_slice::<f32>().unwrap())
    {
        assert!((a - e).abs() <= 1e-6 + 1e-5 * e.abs(), "{a} vs {e}");
    }
}

#[test]
fn opt_prints_the_optimized_graph_and_a_report() {
    let dir = temp_dir("cli_opt");
    let path = dir.join("model.tir");
    std::fs::write(
        &path,
        "graph @g(%x: f32[2,5]) {\n  %axes: i64[1] = const [1]\n  %m: f32[2,1] = reduce_max(%x, %axes)\n  %d: f32[2,5] = sub(%x, %m)\n  %e: f32[2,5] = exp(%d)\n  %s: f32[2,1] = reduce_sum(%e, %axes)\n  %y: f32[2,5] = div(%e, %s)\n  return %y\n}\n",
    )
    .unwrap();
    let out = saturn_cmd()
        .args([
            "opt",
            path.to_str().unwrap(),
            "--report",
            "--print-after",
            "eqsat",
            "--target",
            "x86-64-avx512",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ir = String::from_utf8(out.stdout).unwrap();
    assert!(ir.contains("%y: f32[2,5] = softmax(%x) {axis = 1}"), "{ir}");
    assert!(!ir.contains("reduce_max"), "{ir}");
    let err = String::from_utf8(out.stderr).unwrap();
    for part in [
        "# after eqsat",
        "stop reason: saturated",
        "e-nodes:",
        "e-classes:",
        "iterations:",
        "time:",
        "softmax-from-exp-over-sum",
        "cost:",
    ] {
        assert!(err.contains(part), "report lacks {part}:\n{err}");
    }
}

#[test]
fn opt_rejects_unknown_targets_and_passes() {
    let dir = temp_dir("cli_opt_bad");
    let path = dir.join("model.onnx");
    write_model(&path, &relu_model());
    let out = saturn_cmd()
        .args(["opt", path.to_str().unwrap(), "--target", "z80"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown target"));
    let out = saturn_cmd()
        .args(["opt", path.to_str().unwrap(), "--passes", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("unknown pass `nope`") && e.contains("eqsat"),
        "{e}"
    );
}

#[test]
fn run_with_and_without_the_optimizer_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mlp");
    let mut results = Vec::new();
    for flag in [None, Some("--no-opt")] {
        let out_dir = temp_dir(if flag.is_some() { "noopt" } else { "opt" });
        let mut cmd = saturn_cmd();
        cmd.arg("run")
            .arg(root.join("model.onnx"))
            .arg("--inputs")
            .arg(root.join("inputs"))
            .arg("--outputs")
            .arg(&out_dir);
        if let Some(f) = flag {
            cmd.arg(f);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        results.push(saturn::onnx::tensor::read_file(&out_dir.join("output_0.pb")).unwrap());
    }
    let (a, b) = (
        results[0].as_slice::<f32>().unwrap(),
        results[1].as_slice::<f32>().unwrap(),
    );
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
    }
}

/// `saturn compile --report` says what became native code; a node without
/// a lowering is listed by name, op and reason, and no library is built.
#[test]
fn compile_reports_kernels_and_fallbacks() {
    let dir = temp_dir("cli_compile");
    let ok = dir.join("relu.tir");
    std::fs::write(
        &ok,
        "graph @relu(%x: f32[2,3]) {\n  %y: f32[2,3] = relu(%x)\n  return %y\n}\n",
    )
    .unwrap();
    let out = saturn_cmd()
        .args(["compile", ok.to_str().unwrap(), "--report", "-o"])
        .arg(dir.join("lib"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("compiled 1 of 1 nodes"), "{stdout}");
    assert!(stdout.contains("fallbacks: none"), "{stdout}");
    assert!(stdout.contains("memory: planned peak"), "{stdout}");
    for f in ["librelu.so", "relu.h", "relu.weights", "relu.manifest.json"] {
        assert!(dir.join("lib").join(f).exists(), "{f}");
    }

    let bad = dir.join("det.tir");
    std::fs::write(
        &bad,
        "graph @det(%x: f32[3,3]) {\n  %d: f32[] = det(%x)\n  %y: f32[] = neg(%d)\n  return %y\n}\n",
    )
    .unwrap();
    let out = saturn_cmd()
        .args(["compile", bad.to_str().unwrap(), "--report", "-o"])
        .arg(dir.join("lib2"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stdout.contains("fallbacks (1, run by the interpreter)"),
        "{stdout}"
    );
    assert!(stdout.contains("(det)"), "{stdout}");
    assert!(stdout.contains("native ops: neg"), "{stdout}");
    assert!(stderr.contains("no native lowering"), "{stderr}");
}
