//! Ahead-of-time libraries end to end: `saturn compile` builds a model into
//! `lib<name>.so` + header + weights, the C example in `examples/c` is
//! compiled against it with the system C compiler, runs on the model's
//! inputs, and its outputs must match the reference. Libraries are built
//! with every code generator built in (Cranelift; LLVM with feature
//! `llvm`).

use std::path::{Path, PathBuf};
use std::process::Command;

use saturn_backends::native::Codegen;
use saturn_ir::Tensor;
use saturn_ir::target::Target;
use saturn_tests::{ATOL, RTOL, compare, onnx_tests_dir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read_pb(p: &Path) -> Tensor {
    saturn::onnx::tensor::read_file(p).unwrap()
}

/// `--shape` arguments giving the model's inputs the shapes of `inputs`.
fn shapes_of(model: &Path, inputs: &[Tensor]) -> Vec<String> {
    let g = saturn::model::load(model).unwrap();
    g.inputs()
        .iter()
        .zip(inputs)
        .filter(|(v, _)| g.ty(**v).shape.as_known().is_none())
        .map(|(v, t)| {
            let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
            format!("{}={}", g.name(*v), dims.join(","))
        })
        .collect()
}

/// The code generators libraries are built with.
fn codegens() -> Vec<Box<dyn Codegen>> {
    #[cfg_attr(not(feature = "llvm"), allow(unused_mut))]
    let mut v: Vec<Box<dyn Codegen>> = vec![Box::new(saturn_backends::cpu_cranelift::Cranelift)];
    #[cfg(feature = "llvm")]
    v.push(Box::new(saturn_backends::cpu_llvm::Llvm::host()));
    v
}

/// Compiles `model` with `codegen`, builds the C example against it, runs
/// it on `inputs` and returns its outputs. Also checks that no node fell
/// back.
fn through_c(model: &Path, name: &str, inputs: &[Tensor], codegen: &dyn Codegen) -> Vec<Tensor> {
    let target = Target::host();
    let g = saturn::commands::load_static(model, &shapes_of(model, inputs), &target, true).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "saturn-aot-{}-{name}-{}",
        std::process::id(),
        codegen.name()
    ));
    let lib = saturn_backends::aot::build_library_with(&g, &target, &dir, name, codegen)
        .unwrap_or_else(|e| panic!("{name} ({}): {e}", codegen.name()));
    assert!(lib.lowered.fallbacks(&lib.graph).is_empty());
    assert_eq!(
        lib.lowered.compiled_nodes(),
        lib.graph.nodes().len(),
        "{name}: every node native"
    );
    let exe = dir.join("run_model");
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-O2")
        .arg(format!("-I{}", dir.display()))
        .arg(format!("-DSATURN_HEADER=\"{name}.h\""))
        .arg(repo().join("examples/c/run_model.c"))
        .arg(format!("-L{}", dir.display()))
        .arg(format!("-l{name}"))
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut args = vec!["--threads".to_string(), "2".to_string()];
    for (i, t) in inputs.iter().enumerate() {
        let p = dir.join(format!("in{i}.bin"));
        std::fs::write(&p, t.to_le_bytes().unwrap()).unwrap();
        args.push(p.display().to_string());
    }
    for i in 0..g.outputs().len() {
        args.push(dir.join(format!("out{i}.bin")).display().to_string());
    }
    let out = Command::new(&exe).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outs = g
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ty = g.ty(*v);
            let bytes = std::fs::read(dir.join(format!("out{i}.bin"))).unwrap();
            Tensor::from_le_bytes(ty.dtype, ty.shape.as_known().unwrap(), &bytes).unwrap()
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    outs
}

/// The example model: the C program's outputs equal the interpreter's.
#[test]
fn mlp_example_matches_the_interpreter() {
    let model = repo().join("examples/mlp/model.onnx");
    let inputs: Vec<Tensor> = vec![read_pb(&repo().join("examples/mlp/inputs/input_0.pb"))];
    let g = saturn::model::load(&model).unwrap();
    let want = saturn_ir::interp::run(&g, inputs.clone()).unwrap();
    for cg in codegens() {
        let got = through_c(&model, "mlp", &inputs, cg.as_ref());
        for (w, a) in want.iter().zip(&got) {
            compare(w, a, RTOL, ATOL).unwrap_or_else(|e| panic!("{}: {e}", cg.name()));
        }
    }
}

/// The C program fails cleanly on an input file of the wrong size.
#[test]
fn wrong_input_size_is_an_error() {
    let model = repo().join("examples/mlp/model.onnx");
    let target = Target::host();
    let g = saturn::commands::load_static(&model, &["x=2,4".to_string()], &target, true).unwrap();
    let dir = std::env::temp_dir().join(format!("saturn-aot-bad-{}", std::process::id()));
    saturn_backends::aot::build_library(&g, &target, &dir, "mlp").unwrap();
    let exe = dir.join("run_model");
    let st = Command::new("cc")
        .arg(format!("-I{}", dir.display()))
        .arg("-DSATURN_HEADER=\"mlp.h\"")
        .arg(repo().join("examples/c/run_model.c"))
        .arg(format!("-L{}", dir.display()))
        .args(["-lmlp", &format!("-Wl,-rpath,{}", dir.display()), "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(dir.join("short.bin"), [0u8; 3]).unwrap();
    let out = Command::new(&exe)
        .arg(dir.join("short.bin"))
        .arg(dir.join("o.bin"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must hold exactly"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every real model of the test data: compiled to a library with no
/// fallback, run from C, outputs equal the reference outputs.
#[test]
fn models_compile_and_run_from_c() {
    let root = onnx_tests_dir();
    let mut cases = vec![root.join("transformers/test_bert_tiny")];
    let mut models: Vec<PathBuf> = std::fs::read_dir(root.join("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    models.sort();
    cases.extend(models);
    assert_eq!(cases.len(), 10);
    for case in cases {
        let name = case
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("test_")
            .to_string();
        let set = case.join("test_data_set_0");
        let inputs: Vec<Tensor> = saturn_tests::conformance::numbered(&set, "input")
            .iter()
            .map(|p| read_pb(p))
            .collect();
        let want: Vec<Tensor> = saturn_tests::conformance::numbered(&set, "output")
            .iter()
            .map(|p| read_pb(p))
            .collect();
        for cg in codegens() {
            let got = through_c(&case.join("model.onnx"), &name, &inputs, cg.as_ref());
            assert_eq!(want.len(), got.len(), "{name}");
            for (i, (w, a)) in want.iter().zip(&got).enumerate() {
                compare(w, a, RTOL, ATOL)
                    .unwrap_or_else(|e| panic!("{name} output {i} ({}): {e}", cg.name()));
            }
            eprintln!("{name} ({}): ok", cg.name());
        }
    }
}
