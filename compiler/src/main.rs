//! The `saturn` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use saturn::model;
use saturn::onnx::tensor;
use saturn_ir::target::Target;
use saturn_ir::text::{PrintOptions, print_with};
use saturn_passes::{DEFAULT_PIPELINE, Limits, PassContext, run_pipeline};

#[derive(Parser)]
#[command(
    name = "saturn",
    version,
    about = "Saturn: a tensor compiler for ONNX models",
    long_about = "Saturn: a tensor compiler for ONNX models.\n\n\
        Saturn imports an ONNX model into its typed Graph IR, optimizes it by equality \
        saturation (softmax and attention fusion, two-pass softmax, flat GEMM, BatchNorm \
        folding, chosen by the target's cost model), lowers it to loop kernels and compiles \
        them to native code (`cpu`, through Cranelift; `llvm`, through LLVM, for AVX-512, AVX2 \
        and NEON), in process or ahead of time into a shared library with a C header \
        (`saturn compile`). The reference interpreter \
        (`interp`) runs any model and checks every backend. Every step reads and writes text: `saturn ir` shows \
        the Graph IR of a model, `saturn opt` the optimized IR, and a `.tir` file can be run \
        like a model.",
    after_help = "Examples:\n  \
        saturn ir examples/mlp/model.onnx\n  \
        saturn opt examples/mlp/model.onnx --report\n  \
        saturn run examples/mlp/model.onnx --inputs examples/mlp/inputs --outputs /tmp/out\n  \
        saturn run model.tir --inputs in/ --outputs out/ --backend interp\n  \
        saturn run examples/mlp/model.onnx --inputs examples/mlp/inputs --outputs /tmp/out --backend cpu\n  \
        saturn compile examples/mlp/model.onnx -o /tmp/mlp --report\n  \
        saturn bench examples/mlp/model.onnx --backend cpu --threads 1 --json\n\n\
        Run `saturn help <command>` for the options of a command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on inputs read from a folder and write its outputs.
    ///
    /// Inputs are ONNX TensorProto files named input_0.pb, input_1.pb, … in the
    /// order of the model's inputs (initializers excluded); outputs are
    /// written as output_0.pb, output_1.pb, … in the order of its outputs.
    Run {
        /// The model: an ONNX file (.onnx) or Graph IR text (.tir).
        model: PathBuf,
        /// Folder holding input_0.pb, input_1.pb, …
        #[arg(long, value_name = "DIR")]
        inputs: PathBuf,
        /// Folder to write output_0.pb, output_1.pb, … into (created if missing).
        #[arg(long, value_name = "DIR")]
        outputs: PathBuf,
        /// Backend to run with (`saturn backends` lists them).
        #[arg(long, default_value = "interp")]
        backend: String,
        /// Run the graph as imported, without the optimizer.
        #[arg(long)]
        no_opt: bool,
        /// Target the optimizer's cost model describes.
        #[arg(long, default_value = "host", value_parser = target_name)]
        target: String,
        /// Threads for compiled code's parallel loops (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Compile a model ahead of time into a shared library with a C header.
    ///
    /// Writes DIR/lib<NAME>.so, DIR/<NAME>.h (the C interface: create a
    /// session, run it on input and output buffers, query input/output names,
    /// dtypes and shapes, destroy, last error), DIR/<NAME>.weights (read by
    /// create) and DIR/<NAME>.manifest.json. Needs a C compiler (`cc`, or $CC)
    /// to link. Inputs with symbolic dims need --shape.
    Compile {
        /// The model: an ONNX file (.onnx) or Graph IR text (.tir).
        model: PathBuf,
        /// Folder to write the library, header, weights and manifest into.
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// Code generator: `cpu` (Cranelift) or `llvm` (LLVM, when built
        /// with feature `llvm`).
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Library name (default: the model file's folder or stem name).
        #[arg(long)]
        name: Option<String>,
        /// Concrete shape for an input with symbolic dims: NAME=D1,D2,…
        #[arg(long, value_name = "NAME=DIMS")]
        shape: Vec<String>,
        /// Print what was compiled: kernels per op, ops left to a fallback,
        /// planned memory against the sum of all buffers.
        #[arg(long)]
        report: bool,
        /// Print the Kernel IR of every kernel to stderr.
        #[arg(long)]
        print_kernels: bool,
        /// Write the assembly of the kernels to FILE (`--backend llvm`).
        #[arg(long, value_name = "FILE")]
        emit_asm: Option<PathBuf>,
        /// What to compile for: `host` (this machine), a reference target
        /// (x86-64-avx512, x86-64-avx2, x86-64-sse2, aarch64-neon) or, with `--backend
        /// llvm`, an LLVM target triple such as `x86_64-unknown-linux-gnu`
        /// or `aarch64-unknown-linux-gnu` (cross compilation: the library
        /// is linked by $CC, which must target that machine).
        #[arg(long, default_value = "host")]
        target: String,
        /// LLVM CPU name (`znver4`, `skylake-avx512`, `neoverse-v1`, …);
        /// `--backend llvm` only. Default: this machine's for `host`,
        /// `generic` for a triple.
        #[arg(long)]
        cpu: Option<String>,
        /// LLVM target features on top of the CPU's (`+avx512f,-avx512bw`);
        /// `--backend llvm` only.
        #[arg(long)]
        features: Option<String>,
    },
    /// Measure a model's latency with a backend.
    ///
    /// Prepares (compiles) the model once, timed separately, then runs it
    /// --warmup times untimed and --runs times timed, and prints median and
    /// minimum latency. Inputs come from --inputs (input_0.pb, …) or are
    /// generated (floats uniform in [-1, 1), integers 0).
    Bench {
        /// The model: an ONNX file (.onnx) or Graph IR text (.tir).
        model: PathBuf,
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Threads for parallel loops (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Folder with input_0.pb, … (default: generated inputs).
        #[arg(long, value_name = "DIR")]
        inputs: Option<PathBuf>,
        /// Concrete shape for an input with symbolic dims: NAME=D1,D2,…
        #[arg(long, value_name = "NAME=DIMS")]
        shape: Vec<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Run the graph as imported, without the optimizer.
        #[arg(long)]
        no_opt: bool,
        #[arg(long, default_value = "host", value_parser = target_name)]
        target: String,
        /// Also time every kernel and print the most expensive ones (to
        /// stderr): the 25 slowest, or as many as the environment variable
        /// SATURN_PROFILE_ROWS says.
        #[arg(long)]
        profile: bool,
        /// Also time ONNX Runtime (CPU, all graph optimizations) on the
        /// same model, inputs and thread count, check its outputs against
        /// Saturn's, and print the ratio of the medians. Needs a Python
        /// with onnxruntime: scripts/setup-ort.sh makes one in
        /// target/ort-venv; $SATURN_ORT_PYTHON overrides.
        #[arg(long)]
        compare_ort: bool,
    },
    /// Optimize a model and print the optimized Graph IR.
    ///
    /// Runs the pass pipeline (the e-graph optimizer: algebra and layout
    /// rules, softmax and attention fusion, softmax algorithms, flat GEMM),
    /// with the target's cost model choosing among equivalent graphs.
    Opt {
        /// The model: an ONNX file (.onnx) or Graph IR text (.tir).
        model: PathBuf,
        /// Print the optimizer's report (stop reason, e-graph size, time,
        /// rules fired, cost before and after, kernel choices) to stderr.
        #[arg(long)]
        report: bool,
        /// Print the graph after this pass (to stderr); may be repeated.
        #[arg(long, value_name = "PASS")]
        print_after: Vec<String>,
        /// Passes to run, comma-separated (default: the standard pipeline).
        #[arg(long, value_delimiter = ',', value_name = "PASS,...")]
        passes: Option<Vec<String>>,
        /// Target the cost model describes: `host` or a reference target
        /// (x86-64-avx512, x86-64-avx2, x86-64-sse2, aarch64-neon).
        #[arg(long, default_value = "host", value_parser = target_name)]
        target: String,
        /// Abbreviate constants with more than N elements.
        #[arg(long, value_name = "N")]
        elide: Option<usize>,
    },
    /// Print a model's Graph IR in the .tir text format.
    Ir {
        /// The model: an ONNX file (.onnx) or Graph IR text (.tir).
        model: PathBuf,
        /// Abbreviate constants with more than N elements (the output then
        /// cannot be parsed back).
        #[arg(long, value_name = "N")]
        elide: Option<usize>,
    },
    /// List the ONNX ops (domain and type) Saturn imports.
    Ops,
    /// List the backends built into this saturn.
    Backends,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Run {
            model,
            inputs,
            outputs,
            backend,
            no_opt,
            target,
            threads,
        } => {
            let target = (!no_opt).then(|| Target::named(&target).expect("checked by clap"));
            run_model(&model, &inputs, &outputs, &backend, target, threads)
        }
        Command::Compile {
            model,
            output,
            backend,
            name,
            shape,
            report,
            print_kernels,
            emit_asm,
            target,
            cpu,
            features,
        } => {
            let sel =
                saturn::commands::select(&backend, &target, cpu.as_deref(), features.as_deref())?;
            saturn::commands::compile(
                &model,
                &output,
                &backend,
                name.as_deref(),
                &shape,
                &sel,
                report,
                print_kernels,
                emit_asm.as_deref(),
            )
        }
        Command::Bench {
            model,
            backend,
            threads,
            runs,
            warmup,
            inputs,
            shape,
            json,
            no_opt,
            target,
            profile,
            compare_ort,
        } => {
            let target = Target::named(&target).expect("checked by clap");
            saturn::commands::bench(&saturn::commands::BenchOptions {
                profile,
                compare_ort,
                model,
                backend,
                threads,
                runs: runs.max(1),
                warmup,
                inputs,
                shapes: shape,
                json,
                opt: !no_opt,
                target,
            })
        }
        Command::Opt {
            model,
            report,
            print_after,
            passes,
            target,
            elide,
        } => {
            let g = model::load(&model)?;
            let opts = PrintOptions {
                elide_consts_over: elide,
            };
            let cx = PassContext {
                target: Target::named(&target).expect("checked by clap"),
                limits: Limits::default(),
            };
            let names: Vec<String> =
                passes.unwrap_or_else(|| DEFAULT_PIPELINE.iter().map(|s| s.to_string()).collect());
            for p in print_after.iter().chain(&names) {
                saturn_passes::lookup(p)?;
            }
            let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
            let g = run_pipeline(g, &names, &cx, &mut |pass, g, r| {
                if print_after.iter().any(|p| p == pass) {
                    eprintln!("# after {pass}\n{}", print_with(g, &opts));
                }
                if let (true, Some(r)) = (report, r) {
                    eprint!("{r}");
                }
            })?;
            print!("{}", print_with(&g, &opts));
            Ok(())
        }
        Command::Ir { model, elide } => {
            let g = model::load(&model)?;
            let opts = PrintOptions {
                elide_consts_over: elide,
            };
            print!("{}", print_with(&g, &opts));
            Ok(())
        }
        Command::Ops => {
            for (domain, op) in saturn::onnx::ops::supported() {
                println!("{domain} {op}");
            }
            Ok(())
        }
        Command::Backends => {
            for b in saturn_backends::available() {
                println!("{:8} {}", b.name(), b.description());
            }
            Ok(())
        }
    }
}

fn target_name(s: &str) -> std::result::Result<String, String> {
    match Target::named(s) {
        Some(_) => Ok(s.to_string()),
        None => Err(format!(
            "unknown target (targets: {})",
            Target::NAMES.join(", ")
        )),
    }
}

fn run_model(
    model: &Path,
    inputs: &Path,
    outputs: &Path,
    backend: &str,
    opt: Option<Target>,
    threads: usize,
) -> Result<()> {
    let backend = saturn_backends::lookup(backend)?;
    let mut g = model::load(model)?;
    if let Some(target) = opt {
        let cx = PassContext {
            target,
            limits: Limits::default(),
        };
        g = run_pipeline(g, DEFAULT_PIPELINE, &cx, &mut |_, _, _| {})?;
    }
    let mut tensors = Vec::with_capacity(g.inputs().len());
    for (i, &v) in g.inputs().iter().enumerate() {
        let path = inputs.join(format!("input_{i}.pb"));
        if !path.exists() {
            return Err(format!(
                "the model takes {} inputs but {} does not exist (input `{}`: {})",
                g.inputs().len(),
                path.display(),
                g.name(v),
                g.ty(v)
            )
            .into());
        }
        tensors.push(tensor::read_file(&path)?);
    }
    let exe = backend.prepare_with(
        &g,
        &saturn_backends::PrepareOptions {
            threads,
            ..Default::default()
        },
    )?;
    let results = exe.run(tensors)?;
    std::fs::create_dir_all(outputs).map_err(|e| format!("{}: {e}", outputs.display()))?;
    for (i, (t, &v)) in results.iter().zip(g.outputs()).enumerate() {
        tensor::write_file(&outputs.join(format!("output_{i}.pb")), t, g.name(v))?;
    }
    Ok(())
}
