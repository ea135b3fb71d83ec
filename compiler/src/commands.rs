//! `saturn compile` and `saturn bench`: the pipeline from a model file to
//! a library or to measured latencies.

use std::path::{Path, PathBuf};
use std::time::Instant;

use saturn_ir::target::Target;
use saturn_ir::{Graph, Tensor};
use saturn_passes::{DEFAULT_PIPELINE, Limits, PassContext, run_pipeline};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Parses `NAME=D1,D2,…` shape overrides.
fn parse_shapes(specs: &[String]) -> Result<Vec<(String, Vec<usize>)>> {
    specs
        .iter()
        .map(|s| {
            let (name, dims) = s
                .split_once('=')
                .ok_or_else(|| format!("--shape `{s}`: expected NAME=D1,D2,…"))?;
            let dims = if dims.is_empty() {
                vec![]
            } else {
                dims.split(',')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| format!("--shape `{s}`: dims must be non-negative integers"))?
            };
            Ok((name.to_string(), dims))
        })
        .collect()
}

/// Loads a model, gives its inputs concrete shapes (from `--shape` or its
/// static types) and optimizes it.
pub fn load_static(path: &Path, shapes: &[String], target: &Target, opt: bool) -> Result<Graph> {
    let g = crate::model::load(path)?;
    let overrides = parse_shapes(shapes)?;
    for (name, _) in &overrides {
        if !g.inputs().iter().any(|v| g.name(*v) == name) {
            let names: Vec<&str> = g.inputs().iter().map(|v| g.name(*v)).collect();
            return Err(format!(
                "--shape: the model has no input `{name}` (inputs: {})",
                names.join(", ")
            )
            .into());
        }
    }
    let mut concrete = Vec::new();
    let mut any_override = false;
    for &v in g.inputs() {
        let ty = g.ty(v);
        if let Some((_, dims)) = overrides.iter().find(|(n, _)| n == g.name(v)) {
            if !ty.shape.admits(dims) {
                return Err(format!(
                    "--shape: input `{}` is {}, which {:?} does not fit",
                    g.name(v),
                    ty,
                    dims
                )
                .into());
            }
            any_override = true;
            concrete.push(dims.clone());
        } else if let Some(s) = ty.shape.as_known() {
            concrete.push(s);
        } else {
            return Err(format!(
                "input `{}` has type {} with symbolic dims: give it a shape with --shape {}=D1,D2,…",
                g.name(v),
                ty,
                g.name(v)
            )
            .into());
        }
    }
    let g = if any_override {
        saturn_ir::builder::specialize(&g, &concrete)?
    } else {
        g
    };
    if !opt {
        return Ok(g);
    }
    let cx = PassContext {
        target: target.clone(),
        limits: Limits::default(),
    };
    Ok(run_pipeline(g, DEFAULT_PIPELINE, &cx, &mut |_, _, _| {})?)
}

fn default_name(model: &Path) -> String {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if stem == "model" {
        // The ONNX test layout: <case>/model.onnx.
        if let Some(dir) = model.parent().and_then(|p| p.file_name()) {
            return dir
                .to_string_lossy()
                .trim_start_matches("test_")
                .to_string();
        }
    }
    stem
}

/// What `saturn compile` builds for: the code generator (and the machine
/// it generates code for) and the target the optimizer and the lowering
/// describe.
pub struct Selection {
    pub codegen: Box<dyn saturn_backends::native::Codegen>,
    pub target: Target,
    /// The machine code is for, in words.
    pub machine: String,
}

/// The code generator of `backend` for `--target` (a Saturn target name
/// or, with `llvm`, a target triple), `--cpu` and `--features`.
pub fn select(
    backend: &str,
    target: &str,
    cpu: Option<&str>,
    features: Option<&str>,
) -> Result<Selection> {
    let named = Target::named(target);
    match backend {
        "cpu" => {
            if cpu.is_some() || features.is_some() {
                return Err("--cpu and --features choose LLVM's target: use --backend llvm".into());
            }
            let target = named.ok_or_else(|| {
                format!(
                    "unknown target `{target}` for the cpu backend (targets: {}; target triples need --backend llvm)",
                    Target::NAMES.join(", ")
                )
            })?;
            Ok(Selection {
                codegen: Box::new(saturn_backends::cpu_cranelift::Cranelift),
                target,
                machine: "this machine (Cranelift)".into(),
            })
        }
        #[cfg(feature = "llvm")]
        "llvm" => {
            use saturn_backends::cpu_llvm::{Llvm, Machine};
            let machine = match (target, named.is_some()) {
                ("host", _) => {
                    let mut m = Machine::host();
                    if let Some(c) = cpu {
                        m.cpu = c.to_string();
                        m.features = String::new();
                    }
                    if let Some(f) = features {
                        m.features = f.to_string();
                    }
                    m
                }
                (_, true) => {
                    let (triple, base) = match target {
                        "x86-64-avx512" => ("x86_64-unknown-linux-gnu", "x86-64-v4"),
                        "x86-64-avx2" => ("x86_64-unknown-linux-gnu", "x86-64-v3"),
                        _ => ("aarch64-unknown-linux-gnu", "generic"),
                    };
                    Machine::new(triple, Some(cpu.unwrap_or(base)), features)?
                }
                (triple, false) => Machine::new(triple, cpu, features)?,
            };
            // The optimizer and the lowering see the machine: this one, or
            // the reference target of its vector width.
            let target = match named {
                Some(t) if cpu.is_none() && features.is_none() => t,
                _ if machine.is_host() => Target::host(),
                _ => {
                    let name = match (machine.is_aarch64(), machine.vector_bits()) {
                        (true, _) => "aarch64-neon",
                        (_, 512) => "x86-64-avx512",
                        (_, 256) => "x86-64-avx2",
                        _ => "x86-64-sse2",
                    };
                    Target::named(name).expect("a reference target")
                }
            };
            Ok(Selection {
                machine: machine.to_string(),
                codegen: Box::new(Llvm::for_machine(machine)),
                target,
            })
        }
        other => {
            saturn_backends::lookup(other)?;
            Err(format!("backend `{other}` cannot build libraries (use `cpu` or `llvm`)").into())
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn compile(
    model: &Path,
    out: &Path,
    backend: &str,
    name: Option<&str>,
    shapes: &[String],
    sel: &Selection,
    report: bool,
    print_kernels: bool,
    emit_asm: Option<&Path>,
) -> Result<()> {
    let target = &sel.target;
    let t0 = Instant::now();
    let g = load_static(model, shapes, target, true)?;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| default_name(model));
    if report {
        println!("backend {backend}: code for {}", sel.machine);
    }
    let lib = match saturn_backends::aot::build_library_with(
        &g,
        target,
        out,
        &name,
        sel.codegen.as_ref(),
    ) {
        Ok(lib) => lib,
        Err(e) => {
            if report {
                // Say what was and was not compiled, then why no library.
                let wide = saturn_passes::lower::half::widen_half(&g);
                let lowered = saturn_passes::lower::lower(
                    &wide,
                    target,
                    &saturn_passes::lower::LowerOptions::default(),
                );
                let plan = saturn_backends::cpu::build_plan(&wide, &lowered)?;
                let mem = saturn_runtime::memory::plan(&plan);
                print_report(&wide, &lowered, &mem, t0.elapsed().as_secs_f64());
            }
            return Err(e.into());
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    if print_kernels {
        for k in &lib.lowered.kernels {
            eprintln!("{}", saturn_ir::kernel::text::print_kernel(k));
        }
    }
    if let Some(path) = emit_asm {
        let asm = sel.codegen.assembly(&lib.lowered.kernels)?.ok_or_else(|| {
            format!(
                "the {} code generator does not print assembly (use --backend llvm)",
                sel.codegen.name()
            )
        })?;
        std::fs::write(path, asm).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    for f in &lib.files {
        println!("wrote {}", f.display());
    }
    if report {
        print_report(&lib.graph, &lib.lowered, &lib.memory, secs);
    }
    Ok(())
}

/// Kernels per op, fallbacks, memory: what `--report` prints.
pub fn print_report(
    g: &Graph,
    lowered: &saturn_passes::lower::Lowered,
    mem: &saturn_runtime::memory::MemoryPlan,
    secs: f64,
) {
    use std::collections::BTreeMap;
    let mut per_op: BTreeMap<&str, usize> = BTreeMap::new();
    for step in &lowered.steps {
        if let saturn_passes::lower::Step::Kernel { nodes, .. } = step {
            for n in nodes {
                *per_op.entry(g.node(*n).op.name()).or_default() += 1;
            }
        }
    }
    println!(
        "compiled {} of {} nodes into {} kernels in {:.2} s",
        lowered.compiled_nodes(),
        g.nodes().len(),
        lowered.kernels.len(),
        secs
    );
    let ops: Vec<String> = per_op.iter().map(|(o, n)| format!("{o} ×{n}")).collect();
    println!("native ops: {}", ops.join(", "));
    let fb = lowered.fallbacks(g);
    if fb.is_empty() {
        println!("fallbacks: none (every node is native code)");
    } else {
        println!("fallbacks ({}, run by the interpreter):", fb.len());
        for (n, op, why) in fb {
            println!("  {n} ({op}): {why}");
        }
    }
    println!(
        "memory: planned peak {} vs {} unplanned ({:.1}%)",
        human_bytes(mem.arena),
        human_bytes(mem.unplanned),
        100.0 * mem.arena as f64 / mem.unplanned.max(1) as f64
    );
}

fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / 1048576.0),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub struct BenchOptions {
    pub model: PathBuf,
    pub backend: String,
    pub threads: usize,
    pub runs: usize,
    pub warmup: usize,
    pub inputs: Option<PathBuf>,
    pub shapes: Vec<String>,
    pub json: bool,
    pub opt: bool,
    pub target: Target,
    /// Also time every step (kernel) and print the most expensive ones.
    pub profile: bool,
    /// Also time ONNX Runtime on the same model, inputs and threads.
    pub compare_ort: bool,
}

/// Inputs for a benchmark: floats uniform in [-1, 1), everything else 0.
pub fn generated_inputs(g: &Graph) -> Result<Vec<Tensor>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    g.inputs()
        .iter()
        .map(|&v| {
            let ty = g.ty(v);
            let shape = ty
                .shape
                .as_known()
                .ok_or_else(|| format!("input `{}` has symbolic dims: use --shape", g.name(v)))?;
            let n: usize = shape.iter().product();
            if ty.dtype.is_float() {
                let vals: Vec<f32> = (0..n)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
                    })
                    .collect();
                Ok(Tensor::from_vec(shape, vals).cast(ty.dtype, true))
            } else {
                Ok(Tensor::zeros(ty.dtype, shape)?)
            }
        })
        .collect()
}

/// Runs `runs` more times timing every step and prints the steps that
/// take longest (median per step), with their share of the total.
fn print_profile(
    exe: &dyn saturn_backends::Executable,
    inputs: &[Tensor],
    runs: usize,
) -> Result<()> {
    let mut per_step: Vec<(String, Vec<f64>)> = Vec::new();
    let mut totals = Vec::new();
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        let Some(steps) = exe.profile(inputs.to_vec())? else {
            eprintln!("profile: this backend does not time its steps");
            return Ok(());
        };
        totals.push((
            t0.elapsed().as_secs_f64(),
            steps.iter().map(|s| s.1).sum::<f64>(),
        ));
        if per_step.is_empty() {
            per_step = steps.iter().map(|(n, _)| (n.clone(), Vec::new())).collect();
        }
        for ((_, ts), (_, t)) in per_step.iter_mut().zip(&steps) {
            ts.push(*t);
        }
    }
    let mut rows: Vec<(String, f64)> = per_step
        .into_iter()
        .map(|(n, mut ts)| {
            ts.sort_by(|a, b| a.total_cmp(b));
            (n, ts[ts.len() / 2])
        })
        .collect();
    let total: f64 = rows.iter().map(|r| r.1).sum();
    // Steps of one kernel name run as one entry.
    let mut by_name: Vec<(String, f64, usize)> = Vec::new();
    for (n, t) in rows.drain(..) {
        match by_name.iter_mut().find(|r| r.0 == n) {
            Some(r) => {
                r.1 += t;
                r.2 += 1;
            }
            None => by_name.push((n, t, 1)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    eprintln!(
        "profile: {} steps, {:.3} ms in steps (median per step over {} runs); per run, median {:.3} ms in steps, {:.3} ms in all",
        by_name.iter().map(|r| r.2).sum::<usize>(),
        total * 1e3,
        runs.max(1),
        median(totals.iter().map(|t| t.1).collect()) * 1e3,
        median(totals.iter().map(|t| t.0).collect()) * 1e3,
    );
    let shown = std::env::var("SATURN_PROFILE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    for (n, t, count) in by_name.iter().take(shown) {
        eprintln!(
            "  {:>9.3} ms {:>5.1}%  {n}{}",
            t * 1e3,
            100.0 * t / total.max(1e-12),
            if *count > 1 {
                format!(" (×{count})")
            } else {
                String::new()
            }
        );
    }
    if by_name.len() > shown {
        let rest: f64 = by_name[shown..].iter().map(|r| r.1).sum();
        eprintln!(
            "  {:>9.3} ms {:>5.1}%  ({} more kernels; SATURN_PROFILE_ROWS=N shows N rows)",
            rest * 1e3,
            100.0 * rest / total.max(1e-12),
            by_name.len() - shown
        );
    }
    Ok(())
}

/// What ONNX Runtime measured on the same model and inputs.
struct OrtResult {
    version: String,
    median_ms: f64,
    min_ms: f64,
    outputs_match: bool,
    max_abs_diff: f64,
}

/// The Python interpreter with ONNX Runtime: `$SATURN_ORT_PYTHON`, the
/// virtual environment `scripts/setup-ort.sh` makes, or `python3`.
fn ort_python() -> PathBuf {
    if let Some(p) = std::env::var_os("SATURN_ORT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new("target/ort-venv/bin/python");
    if venv.exists() {
        return venv.to_path_buf();
    }
    PathBuf::from("python3")
}

/// The numpy dtype of a tensor dtype ONNX Runtime takes.
fn numpy_dtype(d: saturn_ir::DType) -> Option<&'static str> {
    use saturn_ir::DType::*;
    Some(match d {
        F32 => "<f4",
        F64 => "<f8",
        F16 => "<f2",
        I8 => "i1",
        U8 => "u1",
        I16 => "<i2",
        U16 => "<u2",
        I32 => "<i4",
        U32 => "<u4",
        I64 => "<i8",
        U64 => "<u8",
        Bool => "?",
        _ => return None,
    })
}

/// The value of `"key": value` in a flat JSON object, as text.
fn json_field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let at = s.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = s[at..].trim_start();
    let end = if let Some(r) = rest.strip_prefix('"') {
        return r.find('"').map(|e| &r[..e]);
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

/// ONNX Runtime in a Python process beside this one
/// (`bench/ort_bench.py`), timed on request so that its runs alternate
/// with Saturn's and both see the same machine.
struct Ort {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Inputs, outputs, spec, script and the process's stderr.
    dir: PathBuf,
    version: String,
}

impl Ort {
    /// Starts ONNX Runtime on the model of `o` with `inputs` and `threads`
    /// (warmed up), to compare its outputs with `outputs` at the end.
    fn start(
        o: &BenchOptions,
        g: &Graph,
        inputs: &[Tensor],
        outputs: &[Tensor],
        threads: usize,
    ) -> Result<Ort> {
        if o.model.extension().and_then(|e| e.to_str()) != Some("onnx") {
            return Err("--compare-ort needs an ONNX model (.onnx)".into());
        }
        let dir = std::env::temp_dir().join(format!("saturn-ort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |prefix: &str, i: usize, name: &str, t: &Tensor| -> Result<String> {
            let dtype = numpy_dtype(t.dtype())
                .ok_or_else(|| format!("--compare-ort: {} tensors are not supported", t.dtype()))?;
            let file = dir.join(format!("{prefix}{i}.bin"));
            let bytes = t
                .to_le_bytes()
                .ok_or_else(|| format!("{} has no byte form", t.dtype()))?;
            std::fs::write(&file, bytes).map_err(|e| format!("{}: {e}", file.display()))?;
            let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
            Ok(format!(
                "{{\"name\": {:?}, \"file\": {:?}, \"dtype\": \"{dtype}\", \"shape\": [{}]}}",
                name,
                file.display().to_string(),
                shape.join(", ")
            ))
        };
        let mut ins = Vec::new();
        for (i, (t, v)) in inputs.iter().zip(g.inputs()).enumerate() {
            ins.push(write("in", i, g.name(*v), t)?);
        }
        let mut outs = Vec::new();
        for (i, (t, v)) in outputs.iter().zip(g.outputs()).enumerate() {
            outs.push(write("out", i, g.name(*v), t)?);
        }
        let model =
            std::fs::canonicalize(&o.model).map_err(|e| format!("{}: {e}", o.model.display()))?;
        let spec = format!(
            "{{\"model\": {:?}, \"threads\": {threads}, \"warmup\": {}, \"rtol\": 1e-3, \"atol\": 1e-4, \"inputs\": [{}], \"outputs\": [{}]}}",
            model.display().to_string(),
            o.warmup,
            ins.join(", "),
            outs.join(", ")
        );
        let spec_path = dir.join("spec.json");
        let script = dir.join("ort_bench.py");
        let stderr = dir.join("stderr.txt");
        std::fs::write(&spec_path, spec).map_err(|e| format!("{}: {e}", spec_path.display()))?;
        std::fs::write(&script, include_str!("bench/ort_bench.py"))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let err_file =
            std::fs::File::create(&stderr).map_err(|e| format!("{}: {e}", stderr.display()))?;
        let python = ort_python();
        let spawned = std::process::Command::new(&python)
            .arg(&script)
            .arg(&spec_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(err_file)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("--compare-ort: cannot run {}: {e}", python.display()).into());
            }
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("stdin and stdout are piped");
        };
        let mut ort = Ort {
            child,
            stdin,
            stdout: std::io::BufReader::new(stdout),
            dir,
            version: String::new(),
        };
        let hello = ort.line()?;
        ort.version = json_field(&hello, "version").unwrap_or("?").to_string();
        Ok(ort)
    }

    /// The next line ONNX Runtime's side says; its error if it ended.
    fn line(&mut self) -> Result<String> {
        use std::io::BufRead;
        let mut s = String::new();
        let n = self
            .stdout
            .read_line(&mut s)
            .map_err(|e| format!("--compare-ort: reading from ONNX Runtime: {e}"))?;
        if n > 0 {
            return Ok(s);
        }
        let err = std::fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default();
        let hint = if err.contains("No module named") {
            " (install it with scripts/setup-ort.sh, or point SATURN_ORT_PYTHON at a Python that has onnxruntime)"
        } else {
            ""
        };
        Err(format!(
            "--compare-ort: ONNX Runtime failed{hint}: {}",
            err.lines().last().unwrap_or("it ended without a word")
        )
        .into())
    }

    fn send(&mut self, what: &str) -> Result<()> {
        use std::io::Write;
        writeln!(self.stdin, "{what}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("--compare-ort: writing to ONNX Runtime: {e}").into())
    }

    /// `n` timed runs, in ms.
    fn run(&mut self, n: usize) -> Result<Vec<f64>> {
        self.send(&format!("run {n}"))?;
        let line = self.line()?;
        let times: Option<Vec<f64>> = line
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|t| t.trim().parse().ok())
            .collect();
        match times {
            Some(t) if t.len() == n => Ok(t),
            _ => Err(format!("--compare-ort: expected {n} times, got {line}").into()),
        }
    }

    /// Whether ONNX Runtime's outputs match Saturn's, and the largest
    /// absolute difference.
    fn finish(mut self) -> Result<(bool, f64)> {
        self.send("finish")?;
        let line = self.line()?;
        let diff = json_field(&line, "max_abs_diff")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("--compare-ort: no `max_abs_diff` in {line}"))?;
        Ok((json_field(&line, "outputs_match") == Some("true"), diff))
    }
}

impl Drop for Ort {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long the machine is left alone after a round of ONNX Runtime runs.
const ORT_SETTLE_MS: u64 = 100;

/// The median of `times` (sorted here) and its minimum.
fn median_min(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(|a, b| a.total_cmp(b));
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    (median, times[0])
}

pub fn bench(o: &BenchOptions) -> Result<()> {
    let backend = saturn_backends::lookup(&o.backend)?;
    let g = load_static(&o.model, &o.shapes, &o.target, o.opt)?;
    let inputs = match &o.inputs {
        Some(dir) => (0..g.inputs().len())
            .map(|i| crate::onnx::tensor::read_file(&dir.join(format!("input_{i}.pb"))))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        None => generated_inputs(&g)?,
    };
    let t0 = Instant::now();
    let exe = backend.prepare_with(
        &g,
        &saturn_backends::PrepareOptions {
            threads: o.threads,
            target: o.target.clone(),
        },
    )?;
    let compile_s = t0.elapsed().as_secs_f64();
    let threads = if o.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        o.threads
    };
    let mut ort = if o.compare_ort {
        let outputs = exe.run(inputs.clone())?;
        Some(Ort::start(o, &g, &inputs, &outputs, threads)?)
    } else {
        None
    };
    // Outputs are written into the previous run's tensors, as a caller of
    // the C ABI reuses its output buffers (and ONNX Runtime its arena).
    let mut outputs = Vec::new();
    for _ in 0..o.warmup {
        exe.run_into(&inputs, &mut outputs)?;
    }
    // With ONNX Runtime, rounds of a tenth of the runs each, alternating,
    // so that a busy moment of the machine falls on both; each round
    // starts with an untimed run (on both sides).
    let round = if ort.is_some() {
        (o.runs / 10).max(1)
    } else {
        o.runs.max(1)
    };
    let mut times = Vec::with_capacity(o.runs);
    let mut ort_times = Vec::with_capacity(o.runs);
    while times.len() < o.runs {
        let n = round.min(o.runs - times.len());
        if ort.is_some() {
            // The other's run left the caches cold: warm them again.
            exe.run_into(&inputs, &mut outputs)?;
        }
        for _ in 0..n {
            let t = Instant::now();
            exe.run_into(&inputs, &mut outputs)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        if let Some(r) = &mut ort {
            ort_times.extend(r.run(n)?);
            // ONNX Runtime's idle workers spin for a while after a run:
            // let them go to sleep before Saturn's next round.
            std::thread::sleep(std::time::Duration::from_millis(ORT_SETTLE_MS));
        }
    }
    if o.profile {
        print_profile(exe.as_ref(), &inputs, o.runs)?;
    }
    let (median, min) = median_min(&mut times);
    let ort = match ort {
        Some(r) => {
            let version = r.version.clone();
            let (outputs_match, max_abs_diff) = r.finish()?;
            let (median_ms, min_ms) = median_min(&mut ort_times);
            Some(OrtResult {
                version,
                median_ms,
                min_ms,
                outputs_match,
                max_abs_diff,
            })
        }
        None => None,
    };
    let model = o.model.display().to_string();
    if o.json {
        let mut fields = format!(
            "\"model\": \"{}\", \"backend\": \"{}\", \"threads\": {threads}, \"runs\": {}, \"warmup\": {}, \"compile_s\": {compile_s:.6}, \"median_ms\": {median:.6}, \"min_ms\": {min:.6}",
            model.replace('\\', "\\\\").replace('"', "\\\""),
            o.backend,
            o.runs,
            o.warmup
        );
        if let Some(r) = &ort {
            fields += &format!(
                ", \"ort_version\": \"{}\", \"ort_median_ms\": {:.6}, \"ort_min_ms\": {:.6}, \"ratio\": {:.4}, \"ort_outputs_match\": {}, \"ort_max_abs_diff\": {:e}",
                r.version,
                r.median_ms,
                r.min_ms,
                median / r.median_ms,
                r.outputs_match,
                r.max_abs_diff
            );
        }
        println!("{{{fields}}}");
    } else {
        println!(
            "{model}: backend {}, {threads} thread(s): median {median:.3} ms, min {min:.3} ms over {} runs ({} warm-up); prepare/compile {compile_s:.3} s",
            o.backend, o.runs, o.warmup
        );
        if let Some(r) = &ort {
            println!(
                "{model}: onnxruntime {}, {threads} thread(s): median {:.3} ms, min {:.3} ms; saturn/onnxruntime median {:.3} ({}); outputs {} (max abs diff {:.2e})",
                r.version,
                r.median_ms,
                r.min_ms,
                median / r.median_ms,
                if median <= r.median_ms {
                    "saturn is faster"
                } else {
                    "onnxruntime is faster"
                },
                if r.outputs_match { "match" } else { "DIFFER" },
                r.max_abs_diff
            );
        }
    }
    Ok(())
}
