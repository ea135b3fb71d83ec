//! Ahead-of-time libraries: a model becomes `lib<name>.so`, `<name>.h`,
//! `<name>.weights` and `<name>.manifest.json`.
//!
//! The kernels are one object file from the code generator; a generated C
//! file holds Saturn's C runtime (thread pool, weights loading, errors),
//! the model's tables (buffers and their arena offsets from the memory
//! plan, the kernel call sequence, input/output metadata) and the C ABI;
//! the system C compiler links both into the shared library.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use saturn_ir::Graph;
use saturn_ir::target::Target;
use saturn_passes::lower::{self, LowerOptions, Lowered};
use saturn_runtime::memory::{self, MemoryPlan};
use saturn_runtime::{Plan, PlanStep, SlotKind};

use super::BackendError;
use super::cpu::build_plan;

/// Saturn's C runtime, prepended to every generated model file.
const C_RUNTIME: &str = include_str!("../../runtime/c/saturn_rt.c");

/// What `saturn compile` built, for its report.
pub struct Library {
    /// The graph as lowered (half-precision ops widened to f32).
    pub graph: Graph,
    pub dir: PathBuf,
    pub name: String,
    pub lowered: Lowered,
    pub plan: Plan,
    pub memory: MemoryPlan,
    pub weight_bytes: u64,
    pub files: Vec<PathBuf>,
}

fn err(msg: impl Into<String>) -> BackendError {
    BackendError::Run(msg.into())
}

/// A C identifier from a model name.
pub fn c_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'm');
    }
    s
}

/// Lowers `g` (static shapes), emits its kernels with Cranelift and links
/// the library into `dir`.
pub fn build_library(
    g: &Graph,
    target: &Target,
    dir: &Path,
    name: &str,
) -> Result<Library, BackendError> {
    build_library_with(g, target, dir, name, &super::cpu_cranelift::Cranelift)
}

/// [`build_library`] with the kernels compiled by `codegen`.
pub fn build_library_with(
    g: &Graph,
    target: &Target,
    dir: &Path,
    name: &str,
    codegen: &dyn super::native::Codegen,
) -> Result<Library, BackendError> {
    let name = c_name(name);
    let wide = lower::half::widen_half(g);
    let g = &wide;
    let target = super::native::lowering_target(target, codegen);
    let lowered = lower::lower(g, &target, &LowerOptions::default());
    let fallbacks = lowered.fallbacks(g);
    if !fallbacks.is_empty() {
        let list: Vec<String> = fallbacks
            .iter()
            .map(|(n, op, why)| format!("`{n}` ({op}): {why}"))
            .collect();
        return Err(err(format!(
            "{} node(s) have no native lowering, and libraries do not embed the interpreter: {}",
            list.len(),
            list.join("; ")
        )));
    }
    let plan = build_plan(g, &lowered)?;
    let mem = memory::plan(&plan);
    std::fs::create_dir_all(dir)
        .map_err(|e| err(format!("cannot create `{}`: {e}", dir.display())))?;
    let prefix = format!("saturn_{name}_k_");
    let object = codegen.object(&lowered.kernels, &prefix)?;

    // Weights: every constant slot, 64-byte aligned, in slot order.
    let mut weights = Vec::new();
    let mut woff = vec![0u64; plan.slots.len()];
    for (i, s) in plan.slots.iter().enumerate() {
        if let SlotKind::Const(t) = &s.kind {
            let bytes = t
                .to_le_bytes()
                .ok_or_else(|| err(format!("constant `{}` has no byte form", s.name)))?;
            woff[i] = weights.len() as u64;
            weights.extend_from_slice(&bytes);
            weights.resize(weights.len().div_ceil(64) * 64, 0);
        }
    }
    let c = model_c(&name, g, &plan, &mem, &woff, weights.len() as u64)?;
    let h = header(&name, g);
    let manifest = manifest(&name, g);

    let obj_path = dir.join(format!("{name}.kernels.o"));
    let c_path = dir.join(format!("{name}.model.c"));
    let so_path = dir.join(format!("lib{name}.so"));
    let h_path = dir.join(format!("{name}.h"));
    let w_path = dir.join(format!("{name}.weights"));
    let m_path = dir.join(format!("{name}.manifest.json"));
    for (p, data) in [
        (&obj_path, object.as_slice()),
        (&c_path, c.as_bytes()),
        (&h_path, h.as_bytes()),
        (&w_path, weights.as_slice()),
        (&m_path, manifest.as_bytes()),
    ] {
        std::fs::write(p, data).map_err(|e| err(format!("cannot write `{}`: {e}", p.display())))?;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = std::process::Command::new(&cc)
        .args(["-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o"])
        .arg(&so_path)
        .arg(&c_path)
        .arg(&obj_path)
        .args(["-lm", "-lpthread", "-ldl"])
        .output()
        .map_err(|e| err(format!("cannot run the C compiler `{cc}`: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "the C compiler failed linking `{}`:\n{}",
            so_path.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // The object and the generated C are intermediate files.
    let _ = std::fs::remove_file(&obj_path);
    let _ = std::fs::remove_file(&c_path);
    Ok(Library {
        graph: wide.clone(),
        dir: dir.to_path_buf(),
        name,
        lowered,
        plan,
        memory: mem,
        weight_bytes: weights.len() as u64,
        files: vec![so_path, h_path, w_path, m_path],
    })
}

fn io_list(g: &Graph, vals: &[saturn_ir::graph::Value]) -> Vec<(String, i32, Vec<usize>)> {
    vals.iter()
        .map(|v| {
            let ty = g.ty(*v);
            (
                g.name(*v).to_string(),
                ty.dtype.onnx_code(),
                ty.shape.as_known().unwrap_or_default(),
            )
        })
        .collect()
}

fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char)
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

fn model_c(
    name: &str,
    g: &Graph,
    plan: &Plan,
    mem: &MemoryPlan,
    woff: &[u64],
    weight_bytes: u64,
) -> Result<String, BackendError> {
    let mut c = String::from(C_RUNTIME);
    let w = &mut c;
    let _ = writeln!(w, "\n/* ---- model `{name}` ---- */");
    let _ = writeln!(
        w,
        "#define SATURN_API __attribute__((visibility(\"default\")))"
    );
    let _ = writeln!(w, "static const uint64_t ARENA_BYTES = {}ull;", mem.arena);
    let _ = writeln!(
        w,
        "static const uint64_t WEIGHTS_BYTES = {weight_bytes}ull;"
    );
    let _ = writeln!(w, "static const saturn_slot SLOTS[] = {{");
    for (i, s) in plan.slots.iter().enumerate() {
        let (kind, off) = match s.kind {
            SlotKind::Const(_) => (1, woff[i]),
            _ => (
                2,
                mem.offsets[i].ok_or_else(|| err(format!("buffer `{}` was not planned", s.name)))?
                    as u64,
            ),
        };
        let _ = writeln!(w, "    {{{kind}, {off}ull, {}ull}},", s.bytes());
    }
    let _ = writeln!(w, "}};");
    for k in &plan.kernels {
        let _ = writeln!(
            w,
            "extern void saturn_{name}_k_{k}(uint8_t *const *, const int64_t *, void *);"
        );
    }
    let _ = writeln!(w, "static const saturn_kernel_fn KERNELS[] = {{");
    for k in &plan.kernels {
        let _ = writeln!(w, "    saturn_{name}_k_{k},");
    }
    let _ = writeln!(w, "    0\n}};");
    let mut max_args = 1;
    for (i, step) in plan.steps.iter().enumerate() {
        let PlanStep::Kernel { args, .. } = step else {
            return Err(err("fallback steps cannot be compiled into a library"));
        };
        max_args = max_args.max(args.len());
        let list: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(w, "static const int ARGS_{i}[] = {{{}}};", list.join(", "));
    }
    let _ = writeln!(w, "static const saturn_step STEPS[] = {{");
    for (i, step) in plan.steps.iter().enumerate() {
        if let PlanStep::Kernel { kernel, args } = step {
            let _ = writeln!(w, "    {{{kernel}, {}, ARGS_{i}}},", args.len());
        }
    }
    let _ = writeln!(w, "    {{0, 0, 0}}\n}};");
    let _ = writeln!(w, "#define NUM_STEPS {}", plan.steps.len());
    let _ = writeln!(w, "#define MAX_ARGS {max_args}");
    for (what, vals, slots) in [
        ("INPUT", g.inputs(), &plan.inputs),
        ("OUTPUT", g.outputs(), &plan.outputs),
    ] {
        let list = io_list(g, vals);
        for (i, (_, _, shape)) in list.iter().enumerate() {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let dims = if dims.is_empty() {
                "0".to_string()
            } else {
                dims.join(", ")
            };
            let _ = writeln!(w, "static const int64_t {what}_SHAPE_{i}[] = {{{dims}}};");
        }
        let _ = writeln!(w, "static const saturn_io {what}S[] = {{");
        for (i, ((n, code, shape), slot)) in list.iter().zip(slots.iter()).enumerate() {
            let _ = writeln!(
                w,
                "    {{{}, {code}, {}, {what}_SHAPE_{i}, {}ull, {slot}}},",
                c_string(n),
                shape.len(),
                plan.slots[*slot].bytes()
            );
        }
        let _ = writeln!(w, "    {{0, 0, 0, 0, 0, 0}}\n}};");
        let _ = writeln!(w, "#define NUM_{what}S {}", list.len());
    }
    let _ = write!(
        w,
        r#"
typedef struct saturn_session saturn_{name}_session;

static uint8_t *slot_ptr(saturn_session *s, int i) {{
    return (SLOTS[i].kind == 1 ? s->weights : s->arena) + SLOTS[i].offset;
}}

SATURN_API const char *saturn_{name}_last_error(void) {{ return saturn_error; }}

SATURN_API saturn_{name}_session *saturn_{name}_create(const char *weights_path, int threads) {{
    saturn_session *s = calloc(1, sizeof *s);
    if (!s) {{ saturn_set_error("out of memory"); return NULL; }}
    s->weights = saturn_load_weights(weights_path, "{name}.weights", WEIGHTS_BYTES,
                                     (const void *)saturn_{name}_create);
    s->arena = saturn_alloc(ARENA_BYTES);
    if (threads <= 0) {{
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }}
    s->pool = saturn_pool_new(threads);
    pthread_mutex_init(&s->mu, NULL);
    if (!s->weights || !s->arena || !s->pool) {{
        if (s->weights && (!s->arena || !s->pool)) saturn_set_error("out of memory");
        free(s->weights); free(s->arena); saturn_pool_free(s->pool); free(s);
        return NULL;
    }}
    return s;
}}

SATURN_API void saturn_{name}_destroy(saturn_{name}_session *s) {{
    if (!s) return;
    saturn_pool_free(s->pool);
    free(s->weights);
    free(s->arena);
    pthread_mutex_destroy(&s->mu);
    free(s);
}}

SATURN_API int saturn_{name}_run(saturn_{name}_session *s, const void *const *inputs,
                                 void *const *outputs) {{
    if (!s || (NUM_INPUTS && !inputs) || (NUM_OUTPUTS && !outputs)) {{
        saturn_set_error("run: null session or buffer array");
        return -1;
    }}
    for (int i = 0; i < NUM_INPUTS; i++) if (!inputs[i] && INPUTS[i].bytes) {{
        char msg[256]; snprintf(msg, sizeof msg, "run: input %d (`%.100s`) is null", i, INPUTS[i].name);
        saturn_set_error(msg); return -1;
    }}
    for (int i = 0; i < NUM_OUTPUTS; i++) if (!outputs[i] && OUTPUTS[i].bytes) {{
        char msg[256]; snprintf(msg, sizeof msg, "run: output %d (`%.100s`) is null", i, OUTPUTS[i].name);
        saturn_set_error(msg); return -1;
    }}
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < NUM_INPUTS; i++)
        memcpy(slot_ptr(s, INPUTS[i].slot), inputs[i], INPUTS[i].bytes);
    uint8_t *ptrs[MAX_ARGS];
    int64_t dims[1] = {{0}};
    for (int t = 0; t < NUM_STEPS; t++) {{
        for (int a = 0; a < STEPS[t].nargs; a++) ptrs[a] = slot_ptr(s, STEPS[t].args[a]);
        KERNELS[STEPS[t].kernel](ptrs, dims, s->pool);
    }}
    for (int i = 0; i < NUM_OUTPUTS; i++)
        memcpy(outputs[i], slot_ptr(s, OUTPUTS[i].slot), OUTPUTS[i].bytes);
    pthread_mutex_unlock(&s->mu);
    return 0;
}}

SATURN_API int saturn_{name}_num_inputs(void) {{ return NUM_INPUTS; }}
SATURN_API int saturn_{name}_num_outputs(void) {{ return NUM_OUTPUTS; }}
SATURN_API const char *saturn_{name}_input_name(int i) {{ return i >= 0 && i < NUM_INPUTS ? INPUTS[i].name : NULL; }}
SATURN_API const char *saturn_{name}_output_name(int i) {{ return i >= 0 && i < NUM_OUTPUTS ? OUTPUTS[i].name : NULL; }}
SATURN_API int saturn_{name}_input_dtype(int i) {{ return i >= 0 && i < NUM_INPUTS ? INPUTS[i].dtype : -1; }}
SATURN_API int saturn_{name}_output_dtype(int i) {{ return i >= 0 && i < NUM_OUTPUTS ? OUTPUTS[i].dtype : -1; }}
SATURN_API int saturn_{name}_input_rank(int i) {{ return i >= 0 && i < NUM_INPUTS ? INPUTS[i].rank : -1; }}
SATURN_API int saturn_{name}_output_rank(int i) {{ return i >= 0 && i < NUM_OUTPUTS ? OUTPUTS[i].rank : -1; }}
SATURN_API const int64_t *saturn_{name}_input_shape(int i) {{ return i >= 0 && i < NUM_INPUTS ? INPUTS[i].shape : NULL; }}
SATURN_API const int64_t *saturn_{name}_output_shape(int i) {{ return i >= 0 && i < NUM_OUTPUTS ? OUTPUTS[i].shape : NULL; }}
SATURN_API uint64_t saturn_{name}_input_bytes(int i) {{ return i >= 0 && i < NUM_INPUTS ? INPUTS[i].bytes : 0; }}
SATURN_API uint64_t saturn_{name}_output_bytes(int i) {{ return i >= 0 && i < NUM_OUTPUTS ? OUTPUTS[i].bytes : 0; }}
"#
    );
    Ok(c.replace(
        "#include <string.h>",
        "#include <string.h>\n#include <unistd.h>",
    ))
}

fn header(name: &str, g: &Graph) -> String {
    let upper = name.to_uppercase();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"/* {name}.h: C interface of the model `{name}`, compiled by Saturn.
 *
 * Link with -l{name} (lib{name}.so); the weights file {name}.weights is read
 * by create() (pass NULL to read it from the library's folder).
 *
 * Inputs:
"#
    );
    for (n, code, shape) in io_list(g, g.inputs()) {
        let dt = saturn_ir::DType::from_onnx_code(code).map_or("?", |d| d.name());
        let _ = writeln!(h, " *   {n}: {dt}{shape:?}");
    }
    let _ = writeln!(h, " * Outputs:");
    for (n, code, shape) in io_list(g, g.outputs()) {
        let dt = saturn_ir::DType::from_onnx_code(code).map_or("?", |d| d.name());
        let _ = writeln!(h, " *   {n}: {dt}{shape:?}");
    }
    let _ = write!(
        h,
        r#" *
 * Buffers are dense, row-major, little-endian; dtypes are ONNX TensorProto
 * codes (1 = float32, 7 = int64, …). Functions returning int give 0 on
 * success and -1 on error, with the reason in last_error().
 */
#ifndef SATURN_{upper}_H
#define SATURN_{upper}_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {{
#endif

typedef struct saturn_session saturn_{name}_session;

/* Loads the weights and starts `threads` threads (0: one per core). NULL on error. */
saturn_{name}_session *saturn_{name}_create(const char *weights_path, int threads);
/* Runs the model: inputs[i] and outputs[i] point to input_bytes(i) / output_bytes(i) bytes. */
int saturn_{name}_run(saturn_{name}_session *s, const void *const *inputs, void *const *outputs);
void saturn_{name}_destroy(saturn_{name}_session *s);
/* The last error of this thread, as one line. */
const char *saturn_{name}_last_error(void);

int saturn_{name}_num_inputs(void);
int saturn_{name}_num_outputs(void);
const char *saturn_{name}_input_name(int i);
const char *saturn_{name}_output_name(int i);
int saturn_{name}_input_dtype(int i);
int saturn_{name}_output_dtype(int i);
int saturn_{name}_input_rank(int i);
int saturn_{name}_output_rank(int i);
const int64_t *saturn_{name}_input_shape(int i);
const int64_t *saturn_{name}_output_shape(int i);
uint64_t saturn_{name}_input_bytes(int i);
uint64_t saturn_{name}_output_bytes(int i);

/* SATURN(run) names saturn_{name}_run: code written against one model
 * compiles against another by changing the included header. */
#ifndef SATURN
#define SATURN(f) saturn_{name}_##f
#endif

#ifdef __cplusplus
}}
#endif
#endif
"#
    );
    h
}

fn manifest(name: &str, g: &Graph) -> String {
    let io = |vals| {
        io_list(g, vals)
            .iter()
            .map(|(n, code, shape)| {
                let dt = saturn_ir::DType::from_onnx_code(*code).map_or("?", |d| d.name());
                let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
                format!(
                    "    {{\"name\": {}, \"dtype\": \"{dt}\", \"onnx_dtype\": {code}, \"shape\": [{}]}}",
                    json_string(n),
                    dims.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join(",\n")
    };
    format!(
        "{{\n  \"name\": {},\n  \"library\": \"lib{name}.so\",\n  \"header\": \"{name}.h\",\n  \"weights\": \"{name}.weights\",\n  \"inputs\": [\n{}\n  ],\n  \"outputs\": [\n{}\n  ]\n}}\n",
        json_string(name),
        io(g.inputs()),
        io(g.outputs())
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
