//! The code generators against plain Rust computations and the Kernel IR
//! evaluator.
//!
//! Every kernel is compiled by every code generator built in (Cranelift,
//! and LLVM with feature `llvm`), each for several CPUs (this machine with
//! all its extensions, and on x86-64 also the SSE2 baseline and an
//! AVX2+FMA level when the machine has it), so both native vector rules and
//! their fallbacks run, and executed through the kernel ABI with test
//! versions of `saturn_parallel_for`.

use saturn_backends::cpu_cranelift::{
    CodegenError, Cpu, JitModule, KernelFn, PARALLEL_FOR, ParallelBodyFn, emit_object,
};
use saturn_backends::native::JitCode;
use saturn_ir::DType;
use saturn_ir::kernel::build::KernelBuilder;
use saturn_ir::kernel::{BinOp, Expr, Kernel, LoopKind, ReduceOp, Ty, UnOp, math};
use std::ffi::c_void;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Calls of the test parallel-for implementations (through `rt`).
struct Runtime {
    calls: AtomicUsize,
    chunks: AtomicUsize,
}

/// Runs the whole range at once.
unsafe extern "C" fn pf_direct(
    rt: *mut c_void,
    body: ParallelBodyFn,
    ctx: *const u8,
    start: i64,
    end: i64,
    _step: i64,
) {
    let rt = unsafe { &*(rt as *const Runtime) };
    rt.calls.fetch_add(1, Ordering::SeqCst);
    if start < end {
        rt.chunks.fetch_add(1, Ordering::SeqCst);
        unsafe { body(ctx, start, end) };
    }
}

/// The chunk boundaries splitting the iterations of `[start, end)` by
/// `step` into `parts` runs, each starting on an iteration.
fn chunks(start: i64, end: i64, step: i64, parts: i64) -> Vec<(i64, i64)> {
    if start >= end {
        return vec![];
    }
    let n = (end - start + step - 1) / step;
    (0..parts)
        .map(|p| {
            let lo = start + (n * p / parts) * step;
            let hi = (start + (n * (p + 1) / parts) * step).min(end);
            (lo, hi)
        })
        .filter(|(lo, hi)| lo < hi)
        .collect()
}

/// Three chunks one after another.
unsafe extern "C" fn pf_chunks(
    rt: *mut c_void,
    body: ParallelBodyFn,
    ctx: *const u8,
    start: i64,
    end: i64,
    step: i64,
) {
    let rt = unsafe { &*(rt as *const Runtime) };
    rt.calls.fetch_add(1, Ordering::SeqCst);
    for (lo, hi) in chunks(start, end, step, 3) {
        rt.chunks.fetch_add(1, Ordering::SeqCst);
        unsafe { body(ctx, lo, hi) };
    }
}

/// Three chunks on three threads.
unsafe extern "C" fn pf_threads(
    rt: *mut c_void,
    body: ParallelBodyFn,
    ctx: *const u8,
    start: i64,
    end: i64,
    step: i64,
) {
    let rt = unsafe { &*(rt as *const Runtime) };
    rt.calls.fetch_add(1, Ordering::SeqCst);
    let ctx = ctx as usize;
    std::thread::scope(|s| {
        for (lo, hi) in chunks(start, end, step, 3) {
            rt.chunks.fetch_add(1, Ordering::SeqCst);
            s.spawn(move || unsafe { body(ctx as *const u8, lo, hi) });
        }
    });
}

type ParallelFor = unsafe extern "C" fn(*mut c_void, ParallelBodyFn, *const u8, i64, i64, i64);

/// A code generator and the CPU it compiles for.
enum Gen {
    Cranelift(Cpu),
    #[cfg(feature = "llvm")]
    Llvm(saturn_backends::cpu_llvm::Machine),
}

/// The code generators and CPUs every kernel is compiled for.
fn gens() -> Vec<(&'static str, Gen)> {
    #[cfg_attr(not(feature = "llvm"), allow(unused_mut))]
    let mut v: Vec<(&'static str, Gen)> = cpus()
        .into_iter()
        .map(|(n, c)| (n, Gen::Cranelift(c)))
        .collect();
    #[cfg(feature = "llvm")]
    {
        use saturn_backends::cpu_llvm::Machine;
        let host = Machine::host();
        let at = |cpu: &str| Machine {
            cpu: cpu.to_string(),
            features: String::new(),
            ..host.clone()
        };
        v.push(("llvm", Gen::Llvm(host.clone())));
        #[cfg(target_arch = "x86_64")]
        {
            v.push(("llvm-sse2", Gen::Llvm(at("x86-64"))));
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(("llvm-avx2", Gen::Llvm(at("x86-64-v3"))));
            }
        }
    }
    v
}

/// The CPUs every kernel is compiled for by Cranelift.
fn cpus() -> Vec<(&'static str, Cpu)> {
    let mut v = vec![("host", Cpu::Host)];
    #[cfg(target_arch = "x86_64")]
    {
        v.push(("sse2", Cpu::Baseline(vec![])));
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            let f = [
                "has_sse3",
                "has_ssse3",
                "has_sse41",
                "has_sse42",
                "has_popcnt",
                "has_avx",
                "has_avx2",
                "has_fma",
                "has_bmi1",
                "has_bmi2",
                "has_lzcnt",
            ];
            v.push((
                "avx2",
                Cpu::Baseline(f.iter().map(|s| s.to_string()).collect()),
            ));
        }
    }
    v
}

/// Sum of the values kernels passed to `test_record`.
static RECORDED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

extern "C" fn test_record(x: i64) {
    RECORDED.fetch_add(x, Ordering::SeqCst);
}

extern "C" fn test_scale(x: f32, k: i8) -> f32 {
    x * k as f32
}

/// Extra functions kernels of these tests call.
fn symbols(pf: ParallelFor) -> Vec<(&'static str, *const u8)> {
    vec![
        (PARALLEL_FOR, pf as *const u8),
        ("test_record", test_record as *const u8),
        ("test_scale", test_scale as *const u8),
    ]
}

fn compile(kernels: &[Kernel], cg: &Gen, pf: ParallelFor) -> Box<dyn JitCode> {
    match cg {
        Gen::Cranelift(cpu) => match JitModule::compile_for(kernels, &symbols(pf), cpu) {
            Ok(m) => Box::new(m),
            Err(e) => panic!("{cpu:?}: {e}"),
        },
        #[cfg(feature = "llvm")]
        Gen::Llvm(machine) => {
            let llvm = saturn_backends::cpu_llvm::Llvm::for_machine(machine.clone());
            match llvm.jit(kernels, &symbols(pf)) {
                Ok(m) => Box::new(m),
                Err(e) => panic!("llvm {machine}: {e}"),
            }
        }
    }
}

/// Calls a compiled kernel on `bufs` (byte vectors, updated in place).
fn call(f: KernelFn, bufs: &mut [Vec<u8>], dims: &[i64], rt: &Runtime) {
    let mut ptrs: Vec<*mut u8> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
    // Zero-length buffers still need a valid pointer.
    let mut empty = [0u8; 16];
    for (p, b) in ptrs.iter_mut().zip(bufs.iter()) {
        if b.is_empty() {
            *p = empty.as_mut_ptr();
        }
    }
    unsafe {
        f(
            ptrs.as_ptr(),
            dims.as_ptr(),
            rt as *const Runtime as *mut c_void,
        )
    };
}

/// One run of a kernel: which CPU, and the buffers afterwards.
struct Run {
    cpu: &'static str,
    bufs: Vec<Vec<u8>>,
}

/// Runs `k` for every CPU on copies of `bufs`.
fn run(k: &Kernel, bufs: &[Vec<u8>], dims: &[i64]) -> Vec<Run> {
    run_many(
        std::slice::from_ref(k),
        &[(k.name.as_str(), bufs.to_vec(), dims.to_vec())],
    )
}

/// Compiles `kernels` together once per CPU and runs each job
/// `(kernel name, buffers, dims)`; results are per CPU then per job.
/// A kernel to call by name, its buffers and its dims.
type Job<'a> = (&'a str, Vec<Vec<u8>>, Vec<i64>);

fn run_many(kernels: &[Kernel], jobs: &[Job]) -> Vec<Run> {
    let rt = Runtime {
        calls: AtomicUsize::new(0),
        chunks: AtomicUsize::new(0),
    };
    let mut out = Vec::new();
    for (name, cg) in gens() {
        let m = compile(kernels, &cg, pf_chunks);
        for (kname, bufs, dims) in jobs {
            let f = m.entry(kname).expect("kernel entry");
            let mut bufs = bufs.clone();
            call(f, &mut bufs, dims, &rt);
            out.push(Run { cpu: name, bufs });
        }
    }
    // The Kernel IR evaluator must agree with the generated code.
    for (kname, bufs, dims) in jobs {
        let k = kernels.iter().find(|k| k.name == *kname).expect("kernel");
        let mut bufs = bufs.clone();
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
        match saturn_ir::kernel::eval::eval_kernel(k, &mut refs, dims) {
            Ok(()) => out.push(Run { cpu: "eval", bufs }),
            // Functions this test supplies to the JIT are not the evaluator's.
            Err(e) if e.msg.contains("function `test_") => {}
            Err(e) => panic!("evaluator: {e}"),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------

/// A Rust type standing for a kernel dtype.
trait El: Copy + Debug + PartialEq + 'static {
    const D: DType;
    fn bytes(self) -> Vec<u8>;
    fn read(b: &[u8]) -> Self;
    /// Edge cases and ordinary values.
    fn samples() -> Vec<Self>;
    /// `a op b` as Rust computes it, as output bytes; `None` when the op
    /// does not apply to this type.
    fn bin(op: BinOp, a: Self, b: Self) -> Option<Vec<u8>>;
    fn un(op: UnOp, a: Self) -> Option<Vec<u8>>;
    /// `a as d` (Kernel IR cast semantics, which are Rust's `as`).
    fn cast(a: Self, d: DType) -> Vec<u8>;
}

fn size_of(d: DType) -> usize {
    d.bits() / 8
}

fn to_bytes<T: El>(v: &[T]) -> Vec<u8> {
    v.iter().flat_map(|x| x.bytes()).collect()
}

fn from_bytes<T: El>(b: &[u8]) -> Vec<T> {
    b.chunks(size_of(T::D)).map(T::read).collect()
}

fn b(v: bool) -> Vec<u8> {
    vec![v as u8]
}

macro_rules! cast_to {
    ($a:expr, $d:expr) => {{
        let a = $a;
        match $d {
            DType::I8 => (a as i8).to_le_bytes().to_vec(),
            DType::I16 => (a as i16).to_le_bytes().to_vec(),
            DType::I32 => (a as i32).to_le_bytes().to_vec(),
            DType::I64 => (a as i64).to_le_bytes().to_vec(),
            DType::U8 => (a as u8).to_le_bytes().to_vec(),
            DType::U16 => (a as u16).to_le_bytes().to_vec(),
            DType::U32 => (a as u32).to_le_bytes().to_vec(),
            DType::U64 => (a as u64).to_le_bytes().to_vec(),
            DType::F32 => (a as f32).to_le_bytes().to_vec(),
            DType::F64 => (a as f64).to_le_bytes().to_vec(),
            d => panic!("cast to {d}"),
        }
    }};
}

macro_rules! int_el {
    ($t:ty, $d:expr) => {
        impl El for $t {
            const D: DType = $d;
            fn bytes(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
            fn read(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().unwrap())
            }
            fn samples() -> Vec<Self> {
                let mut v: Vec<$t> = vec![0, 1, 2, 3, 7, 100, <$t>::MAX, <$t>::MIN, <$t>::MAX / 3];
                v.push((0 as $t).wrapping_sub(1));
                v.push((0 as $t).wrapping_sub(7));
                v.push(<$t>::MIN.wrapping_add(1));
                v.push((33 as $t).wrapping_mul(5));
                v
            }
            fn bin(op: BinOp, a: Self, b: Self) -> Option<Vec<u8>> {
                use BinOp::*;
                let v: $t = match op {
                    Add => a.wrapping_add(b),
                    Sub => a.wrapping_sub(b),
                    Mul => a.wrapping_mul(b),
                    Div => {
                        if b == 0 {
                            0
                        } else {
                            a.wrapping_div(b)
                        }
                    }
                    Rem => {
                        if b == 0 {
                            0
                        } else {
                            a.wrapping_rem(b)
                        }
                    }
                    Min => a.min(b),
                    Max => a.max(b),
                    And => a & b,
                    Or => a | b,
                    Xor => a ^ b,
                    Shl => a.wrapping_shl(b as u32),
                    Shr => a.wrapping_shr(b as u32),
                    Eq => return Some(self::b(a == b)),
                    Ne => return Some(self::b(a != b)),
                    Lt => return Some(self::b(a < b)),
                    Le => return Some(self::b(a <= b)),
                    Gt => return Some(self::b(a > b)),
                    Ge => return Some(self::b(a >= b)),
                    Ldexp => return None,
                };
                Some(v.bytes())
            }
            fn un(op: UnOp, a: Self) -> Option<Vec<u8>> {
                let v: $t = match op {
                    UnOp::Neg => (0 as $t).wrapping_sub(a),
                    UnOp::Abs => {
                        if a > (0 as $t).wrapping_sub(1) || (0 as $t).wrapping_sub(1) > 0 {
                            // unsigned, or non-negative
                            a
                        } else {
                            (0 as $t).wrapping_sub(a)
                        }
                    }
                    UnOp::Floor | UnOp::Ceil | UnOp::Round | UnOp::Trunc => a,
                    UnOp::Not => !a,
                    UnOp::Sqrt => return None,
                };
                Some(v.bytes())
            }
            fn cast(a: Self, d: DType) -> Vec<u8> {
                if d == DType::Bool {
                    return b(a != 0);
                }
                cast_to!(a, d)
            }
        }
    };
}

int_el!(i8, DType::I8);
int_el!(i16, DType::I16);
int_el!(i32, DType::I32);
int_el!(i64, DType::I64);
int_el!(u8, DType::U8);
int_el!(u16, DType::U16);
int_el!(u32, DType::U32);
int_el!(u64, DType::U64);

/// `a · 2^floor(b)` in f64 by exact power-of-two steps (the samples give
/// no results in the subnormal range, where steps could round twice).
fn ldexp(a: f64, b: f64) -> f64 {
    if b.is_nan() {
        return f64::NAN;
    }
    // As vscalef: a NaN scaled by 2^±inf is +inf or +0.
    match (a.is_nan(), b) {
        (true, f64::INFINITY) => return f64::INFINITY,
        (true, f64::NEG_INFINITY) => return 0.0,
        (_, f64::INFINITY) => return a * f64::INFINITY,
        (_, f64::NEG_INFINITY) => return a * 0.0,
        _ => {}
    }
    let mut k = b.floor().clamp(-3000.0, 3000.0) as i32;
    let mut y = a;
    while k != 0 {
        let s = k.clamp(-1000, 1000);
        y *= 2f64.powi(s);
        k -= s;
    }
    y
}

macro_rules! float_el {
    ($t:ty, $d:expr) => {
        impl El for $t {
            const D: DType = $d;
            fn bytes(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
            fn read(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().unwrap())
            }
            fn samples() -> Vec<Self> {
                vec![
                    0.0,
                    -0.0,
                    1.0,
                    -1.5,
                    2.5,
                    3.5,
                    -2.5,
                    0.3,
                    1e10,
                    -3e9,
                    7.75,
                    <$t>::INFINITY,
                    <$t>::NEG_INFINITY,
                    <$t>::NAN,
                    <$t>::MAX,
                    300.7,
                    -129.9,
                    65535.5,
                ]
            }
            fn bin(op: BinOp, a: Self, b: Self) -> Option<Vec<u8>> {
                use BinOp::*;
                let v: $t = match op {
                    Add => a + b,
                    Sub => a - b,
                    Mul => a * b,
                    Div => a / b,
                    Rem => a % b,
                    Min | Max if a.is_nan() || b.is_nan() => <$t>::NAN,
                    Min => a.min(b),
                    Max => a.max(b),
                    Eq => return Some(self::b(a == b)),
                    Ne => return Some(self::b(a != b)),
                    Lt => return Some(self::b(a < b)),
                    Le => return Some(self::b(a <= b)),
                    Gt => return Some(self::b(a > b)),
                    Ge => return Some(self::b(a >= b)),
                    Ldexp => ldexp(a as f64, b as f64) as $t,
                    And | Or | Xor | Shl | Shr => return None,
                };
                Some(v.bytes())
            }
            fn un(op: UnOp, a: Self) -> Option<Vec<u8>> {
                let v = match op {
                    UnOp::Neg => -a,
                    UnOp::Abs => a.abs(),
                    UnOp::Sqrt => a.sqrt(),
                    UnOp::Floor => a.floor(),
                    UnOp::Ceil => a.ceil(),
                    UnOp::Round => a.round_ties_even(),
                    UnOp::Trunc => a.trunc(),
                    UnOp::Not => return None,
                };
                Some(v.bytes())
            }
            fn cast(a: Self, d: DType) -> Vec<u8> {
                if d == DType::Bool {
                    return b(a != 0.0);
                }
                cast_to!(a, d)
            }
        }
    };
}

float_el!(f32, DType::F32);
float_el!(f64, DType::F64);

impl El for bool {
    const D: DType = DType::Bool;
    fn bytes(self) -> Vec<u8> {
        vec![self as u8]
    }
    fn read(b: &[u8]) -> Self {
        assert!(b[0] <= 1, "bool byte {}", b[0]);
        b[0] != 0
    }
    fn samples() -> Vec<Self> {
        vec![false, true, true, false, true]
    }
    fn bin(op: BinOp, a: Self, b: Self) -> Option<Vec<u8>> {
        use BinOp::*;
        Some(self::b(match op {
            And | Min => a & b,
            Or | Max => a | b,
            Xor => a ^ b,
            Eq => a == b,
            Ne => a != b,
            Lt => !a & b,
            Le => a <= b,
            Gt => a & !b,
            Ge => a >= b,
            _ => return None,
        }))
    }
    fn un(op: UnOp, a: Self) -> Option<Vec<u8>> {
        match op {
            UnOp::Not => Some(b(!a)),
            UnOp::Floor | UnOp::Ceil | UnOp::Round | UnOp::Trunc | UnOp::Abs => Some(b(a)),
            _ => None,
        }
    }
    fn cast(a: Self, d: DType) -> Vec<u8> {
        if d == DType::Bool {
            return b(a);
        }
        cast_to!(a as u8, d)
    }
}

/// Two element byte strings of dtype `d` are the same value (floats: both
/// NaN or equal, so +0 and -0 agree).
fn same(d: DType, x: &[u8], y: &[u8]) -> bool {
    match d {
        DType::F32 => {
            let (a, b) = (f32::read(x), f32::read(y));
            a == b || (a.is_nan() && b.is_nan())
        }
        DType::F64 => {
            let (a, b) = (f64::read(x), f64::read(y));
            a == b || (a.is_nan() && b.is_nan())
        }
        _ => x == y,
    }
}

/// Checks an output buffer of dtype `d` against expected element bytes.
fn check_elems(what: &str, d: DType, got: &[u8], expect: &[Vec<u8>]) {
    let n = size_of(d);
    assert_eq!(got.len(), expect.len() * n, "{what}: length");
    for (i, e) in expect.iter().enumerate() {
        let g = &got[i * n..(i + 1) * n];
        assert!(
            same(d, g, e),
            "{what}: element {i}: got {g:?}, expected {e:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Kernel shapes
// ---------------------------------------------------------------------------

/// `z[i..] = f(x[i..], y[i..])` over `n` elements in steps of `lanes`,
/// the last step masked (`lanes > 1`).
fn map2(
    name: &str,
    d: DType,
    out: DType,
    lanes: u16,
    f: impl FnOnce(&mut KernelBuilder, Expr, Expr) -> Expr,
) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let n = b.dim("n");
    let x = b.input("x", d, n.clone());
    let y = b.input("y", d, n.clone());
    let z = b.output("z", out, n.clone());
    b.for_("i", 0, n.clone(), lanes as i64, LoopKind::Serial, |b, i| {
        if lanes == 1 {
            let v = f(b, Expr::load(x, i.clone()), Expr::load(y, i.clone()));
            b.store(z, i, v);
        } else {
            let rest = b.let_("rest", n.clone() - i.clone());
            let xv = Expr::load_vec(x, i.clone(), lanes, 1, Some(rest.clone()));
            let yv = Expr::load_vec(y, i.clone(), lanes, 1, Some(rest.clone()));
            let v = f(b, xv, yv);
            b.store_vec(z, i, v, 1, Some(rest));
        }
    });
    b.finish()
}

/// Lane counts to try for a dtype: scalar, one 128-bit vector, 256 and
/// 512 bits (one register with AVX2 or AVX-512, several otherwise), and
/// an odd width kept lane by lane.
fn lane_counts(d: DType) -> Vec<u16> {
    let native = (128 / d.bits()) as u16;
    vec![1, native, native * 2, native * 4, 3]
}

const BINOPS: [BinOp; 19] = [
    BinOp::Add,
    BinOp::Sub,
    BinOp::Mul,
    BinOp::Div,
    BinOp::Rem,
    BinOp::Min,
    BinOp::Max,
    BinOp::And,
    BinOp::Or,
    BinOp::Xor,
    BinOp::Shl,
    BinOp::Shr,
    BinOp::Eq,
    BinOp::Ne,
    BinOp::Lt,
    BinOp::Le,
    BinOp::Gt,
    BinOp::Ge,
    BinOp::Ldexp,
];

const UNOPS: [UnOp; 8] = [
    UnOp::Neg,
    UnOp::Abs,
    UnOp::Sqrt,
    UnOp::Floor,
    UnOp::Ceil,
    UnOp::Round,
    UnOp::Trunc,
    UnOp::Not,
];

/// Every binary operation on every pair of samples of `T`, at every lane
/// count, against Rust.
fn check_binary<T: El>() {
    let s = T::samples();
    let (xs, ys): (Vec<T>, Vec<T>) = s
        .iter()
        .flat_map(|&a| s.iter().map(move |&b| (a, b)))
        .unzip();
    let n = xs.len();
    let mut kernels = Vec::new();
    let mut cases = Vec::new();
    for op in BINOPS {
        if T::bin(op, xs[0], ys[0]).is_none() {
            continue;
        }
        let out = if op.is_compare() { DType::Bool } else { T::D };
        let expect: Vec<Vec<u8>> = xs
            .iter()
            .zip(&ys)
            .map(|(&a, &b)| T::bin(op, a, b).unwrap())
            .collect();
        for lanes in lane_counts(T::D) {
            let name = format!("{op:?}_{lanes}");
            kernels.push(map2(&name, T::D, out, lanes, |_, a, b| Expr::bin(op, a, b)));
            cases.push((name, out, expect.clone()));
        }
    }
    check_cases(&kernels, &cases, &[to_bytes(&xs), to_bytes(&ys)], n);
}

/// Runs kernels of the `map2` shape on `inputs` and checks `z`.
fn check_cases(
    kernels: &[Kernel],
    cases: &[(String, DType, Vec<Vec<u8>>)],
    inputs: &[Vec<u8>],
    n: usize,
) {
    let jobs: Vec<Job> = cases
        .iter()
        .map(|(name, out, _)| {
            let mut bufs = inputs.to_vec();
            bufs.push(vec![0xAB; n * size_of(*out)]);
            (name.as_str(), bufs, vec![n as i64])
        })
        .collect();
    let runs = run_many(kernels, &jobs);
    for (i, r) in runs.iter().enumerate() {
        let (name, out, expect) = &cases[i % cases.len()];
        let z = r.bufs.last().unwrap();
        check_elems(&format!("{} {name}", r.cpu), *out, z, expect);
    }
}

fn check_unary<T: El>() {
    let xs = T::samples();
    let n = xs.len();
    let mut kernels = Vec::new();
    let mut cases = Vec::new();
    for op in UNOPS {
        if T::un(op, xs[0]).is_none() {
            continue;
        }
        let expect: Vec<Vec<u8>> = xs.iter().map(|&a| T::un(op, a).unwrap()).collect();
        for lanes in lane_counts(T::D) {
            let name = format!("{op:?}_{lanes}");
            kernels.push(map2(&name, T::D, T::D, lanes, |_, a, _| Expr::un(op, a)));
            cases.push((name, T::D, expect.clone()));
        }
    }
    check_cases(&kernels, &cases, &[to_bytes(&xs), to_bytes(&xs)], n);
}

/// Every cast from `T` to every kernel dtype.
fn check_casts<T: El>() {
    let xs = T::samples();
    let n = xs.len();
    let mut kernels = Vec::new();
    let mut cases = Vec::new();
    for to in ALL {
        let expect: Vec<Vec<u8>> = xs.iter().map(|&a| T::cast(a, to)).collect();
        let mut counts = lane_counts(T::D);
        counts.extend(lane_counts(to));
        counts.sort();
        counts.dedup();
        for lanes in counts {
            let name = format!("{to}_{lanes}");
            kernels.push(map2(&name, T::D, to, lanes, |_, a, _| a.cast(to)));
            cases.push((name, to, expect.clone()));
        }
    }
    check_cases(&kernels, &cases, &[to_bytes(&xs), to_bytes(&xs)], n);
}

const ALL: [DType; 11] = [
    DType::Bool,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::F32,
    DType::F64,
];

// ---------------------------------------------------------------------------
// Operation matrices
// ---------------------------------------------------------------------------

#[test]
fn binary_f32() {
    check_binary::<f32>();
}
#[test]
fn binary_f64() {
    check_binary::<f64>();
}
#[test]
fn binary_signed() {
    check_binary::<i8>();
    check_binary::<i16>();
    check_binary::<i32>();
    check_binary::<i64>();
}
#[test]
fn binary_unsigned() {
    check_binary::<u8>();
    check_binary::<u16>();
    check_binary::<u32>();
    check_binary::<u64>();
}
#[test]
fn binary_bool() {
    check_binary::<bool>();
}

#[test]
fn unary_all() {
    check_unary::<f32>();
    check_unary::<f64>();
    check_unary::<i8>();
    check_unary::<i16>();
    check_unary::<i32>();
    check_unary::<i64>();
    check_unary::<u8>();
    check_unary::<u16>();
    check_unary::<u32>();
    check_unary::<u64>();
    check_unary::<bool>();
}

#[test]
fn casts_from_floats() {
    check_casts::<f32>();
    check_casts::<f64>();
}
#[test]
fn casts_from_signed() {
    check_casts::<i8>();
    check_casts::<i16>();
    check_casts::<i32>();
    check_casts::<i64>();
}
#[test]
fn casts_from_unsigned() {
    check_casts::<u8>();
    check_casts::<u16>();
    check_casts::<u32>();
    check_casts::<u64>();
}
#[test]
fn casts_from_bool() {
    check_casts::<bool>();
}

// ---------------------------------------------------------------------------
// Memory: masks and strides
// ---------------------------------------------------------------------------

fn f32x(lanes: u16) -> Ty {
    Ty::vector(DType::F32, lanes)
}

/// `y[i] = x[i] * 2 + 1` in f32x4 steps with masked tails: lengths with
/// remainders 0 to 3 (and none at all); elements past `n` stay untouched.
#[test]
fn masked_tails_touch_only_active_lanes() {
    for lanes in [4u16, 8, 3] {
        let mut b = KernelBuilder::new("scale");
        let n = b.dim("n");
        let x = b.input("x", DType::F32, n.clone());
        let y = b.output("y", DType::F32, n.clone());
        b.for_("i", 0, n.clone(), lanes as i64, LoopKind::Serial, |b, i| {
            let rest = b.let_("rest", n.clone() - i.clone());
            let v = Expr::load_vec(x, i.clone(), lanes, 1, Some(rest.clone()));
            let v = Expr::mul_add(
                v,
                Expr::Float(2.0, f32x(lanes)),
                Expr::Float(1.0, f32x(lanes)),
            );
            b.store_vec(y, i, v, 1, Some(rest));
        });
        let k = b.finish();
        for n in 0..=9usize {
            let xs: Vec<f32> = (0..n).map(|i| i as f32 - 3.5).collect();
            let ys = vec![-7.0f32; n + 8];
            for r in run(&k, &[to_bytes(&xs), to_bytes(&ys)], &[n as i64]) {
                let got: Vec<f32> = from_bytes(&r.bufs[1]);
                for (i, g) in got.iter().enumerate() {
                    let want = if i < n { xs[i] * 2.0 + 1.0 } else { -7.0 };
                    assert_eq!(*g, want, "{} lanes {lanes} n {n} element {i}", r.cpu);
                }
            }
        }
    }
}

/// Lanes at or past the mask read as zero.
#[test]
fn masked_loads_read_zeros_past_the_mask() {
    fn check<T: El>(lanes: u16) {
        let mut b = KernelBuilder::new("prefix");
        let m = b.dim("m");
        let x = b.input("x", T::D, lanes as i64);
        let y = b.output("y", T::D, lanes as i64);
        let v = Expr::load_vec(x, Expr::idx(0), lanes, 1, Some(m));
        b.store_vec(y, Expr::idx(0), v, 1, None);
        let k = b.finish();
        let s = T::samples();
        // Nonzero samples only, so that zeros stand out.
        let zero = T::read(&vec![0u8; size_of(T::D)]);
        let nonzero: Vec<T> = s
            .iter()
            .copied()
            .filter(|v| v.bytes() != zero.bytes())
            .collect();
        let xs: Vec<T> = (0..lanes as usize)
            .map(|i| nonzero[i % nonzero.len()])
            .collect();
        // Counts past the lanes or below zero clamp (one past 2³² too:
        // masks compare in 32-bit lanes).
        for m in [
            0,
            1,
            lanes as i64 - 1,
            lanes as i64,
            lanes as i64 + 5,
            -3,
            (1 << 32) + 1,
        ] {
            let ys = vec![nonzero[0]; lanes as usize];
            for r in run(&k, &[to_bytes(&xs), to_bytes(&ys)], &[m]) {
                let got: Vec<T> = from_bytes(&r.bufs[1]);
                for (i, g) in got.iter().enumerate() {
                    let want = if (i as i64) < m { xs[i] } else { zero };
                    assert!(
                        same(T::D, &g.bytes(), &want.bytes()),
                        "{} {} x{lanes} mask {m} lane {i}: {g:?} vs {want:?}",
                        r.cpu,
                        T::D
                    );
                }
            }
        }
    }
    check::<u8>(16);
    check::<u8>(4);
    check::<i64>(2);
    check::<f32>(8);
    check::<f64>(3);
    check::<bool>(16);
    check::<bool>(4);
    check::<i16>(8);
}

/// Prefetches are hints: ahead of a loop's loads, far past the end of
/// the buffer and before its start, they change no result on any CPU.
#[test]
fn prefetches_change_nothing() {
    let mut b = KernelBuilder::new("prefetched");
    let x = b.input("x", DType::F32, 64);
    let y = b.output("y", DType::F32, 64);
    b.for_("i", 0, 64, 8, LoopKind::Serial, |b, i| {
        b.prefetch(x, i.clone() + 16);
        b.prefetch(x, i.clone() + (1i64 << 40));
        b.prefetch(x, i.clone() - 4096);
        let v = Expr::load_vec(x, i.clone(), 8, 1, None);
        b.store_vec(y, i, v * Expr::Float(3.0, f32x(8)), 1, None);
    });
    let k = b.finish();
    let xs: Vec<f32> = (0..64).map(|i| i as f32 * 0.5 - 7.0).collect();
    for r in run(&k, &[to_bytes(&xs), vec![0u8; 256]], &[]) {
        let got: Vec<f32> = from_bytes(&r.bufs[1]);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, xs[i] * 3.0, "{} element {i}", r.cpu);
        }
    }
}

/// Masks with a constant count: plain loads and stores of power-of-two
/// groups of lanes where the target has no mask registers (7 lanes: 4 +
/// 2 + 1), one masked access where it does; either way exactly the first
/// `count` elements are read and written (clamped to `0..=lanes`), from
/// an unaligned start, and the lanes past them read as zero.
#[test]
fn constant_masks_touch_exactly_their_lanes() {
    fn check<T: El>(lanes: u16) {
        let l = lanes as i64;
        for count in [0, 1, 2, 3, l - 1, l, l + 3, -2] {
            let mut b = KernelBuilder::new("constant_mask");
            let x = b.input("x", T::D, l + 2);
            let y = b.output("y", T::D, l + 2);
            let whole = b.output("whole", T::D, l);
            let v = Expr::load_vec(x, Expr::idx(1), lanes, 1, Some(Expr::idx(count)));
            let v = b.let_("v", v);
            b.store_vec(y, Expr::idx(1), v.clone(), 1, Some(Expr::idx(count)));
            b.store_vec(whole, Expr::idx(0), v, 1, None);
            let k = b.finish();
            let s = T::samples();
            let zero = T::read(&vec![0u8; size_of(T::D)]);
            let nonzero: Vec<T> = s
                .iter()
                .copied()
                .filter(|v| v.bytes() != zero.bytes())
                .collect();
            let xs: Vec<T> = (0..l as usize + 2)
                .map(|i| nonzero[(i + 1) % nonzero.len()])
                .collect();
            let sentinel = nonzero[0];
            let ys = vec![sentinel; l as usize + 2];
            let wholes = vec![sentinel; l as usize];
            let n = count.clamp(0, l) as usize;
            for r in run(&k, &[to_bytes(&xs), to_bytes(&ys), to_bytes(&wholes)], &[]) {
                let what = format!("{} {} x{lanes} count {count}", r.cpu, T::D);
                let got: Vec<T> = from_bytes(&r.bufs[1]);
                for (i, g) in got.iter().enumerate() {
                    let want = if (1..=n).contains(&i) {
                        xs[i]
                    } else {
                        sentinel
                    };
                    assert!(
                        same(T::D, &g.bytes(), &want.bytes()),
                        "{what} stored element {i}: {g:?} vs {want:?}"
                    );
                }
                let got: Vec<T> = from_bytes(&r.bufs[2]);
                for (i, g) in got.iter().enumerate() {
                    let want = if i < n { xs[i + 1] } else { zero };
                    assert!(
                        same(T::D, &g.bytes(), &want.bytes()),
                        "{what} loaded lane {i}: {g:?} vs {want:?}"
                    );
                }
            }
        }
    }
    check::<f32>(8);
    check::<f32>(16);
    check::<f64>(3);
    check::<u8>(16);
    check::<bool>(16);
    check::<i16>(8);
    check::<i64>(1);
}

/// A transpose two ways: strided vector loads (stride = cols), and
/// strided vector stores (stride = rows), both with masked tails.
fn check_transpose<T: El>(lanes: u16) {
    const ROWS: i64 = 7;
    const COLS: i64 = 5;
    let mut b = KernelBuilder::new("transpose");
    let x = b.input("x", T::D, ROWS * COLS);
    let t = b.output("t", T::D, ROWS * COLS);
    let back = b.output("back", T::D, ROWS * COLS);
    let l = lanes as i64;
    b.range("i", COLS, |b, i| {
        b.for_("j", 0, ROWS, l, LoopKind::Serial, |b, j| {
            let rest = b.let_("rest", Expr::idx(ROWS) - j.clone());
            let at = j.clone() * COLS + i.clone();
            let v = Expr::load_vec(x, at, lanes, COLS, Some(rest.clone()));
            b.store_vec(t, i.clone() * ROWS + j, v, 1, Some(rest));
        });
    });
    b.range("j", ROWS, |b, j| {
        b.for_("i", 0, COLS, l, LoopKind::Serial, |b, i| {
            let rest = b.let_("rest", Expr::idx(COLS) - i.clone());
            let v = Expr::load_vec(
                x,
                j.clone() * COLS + i.clone(),
                lanes,
                1,
                Some(rest.clone()),
            );
            b.store_vec(back, i * ROWS + j, v, ROWS, Some(rest));
        });
    });
    let k = b.finish();
    let s = T::samples();
    let n = (ROWS * COLS) as usize;
    let xs: Vec<T> = (0..n).map(|i| s[(i * 7 + 3) % s.len()]).collect();
    let fill = vec![0xCDu8; n * size_of(T::D)];
    let expect: Vec<Vec<u8>> = (0..n)
        .map(|p| {
            let (i, j) = (p / ROWS as usize, p % ROWS as usize);
            xs[j * COLS as usize + i].bytes()
        })
        .collect();
    for r in run(&k, &[to_bytes(&xs), fill.clone(), fill], &[]) {
        let what = format!("{} {} x{lanes}", r.cpu, T::D);
        check_elems(&format!("{what} strided loads"), T::D, &r.bufs[1], &expect);
        check_elems(&format!("{what} strided stores"), T::D, &r.bufs[2], &expect);
    }
}

/// Strides of 2 to 4 (which LLVM reads as one contiguous span and a
/// shuffle): every lane count and mask, the last lane at the very end of
/// the buffer.
#[test]
fn small_strides_with_masks() {
    for stride in 2..=4i64 {
        for lanes in [2u16, 4, 8, 16] {
            let l = lanes as i64;
            let n = (l - 1) * stride + 1;
            let counts = [-1, 0, 1, l - 1, l, l + 3];
            let mut b = KernelBuilder::new("span");
            let x = b.input("x", DType::F32, n);
            let y = b.output("y", DType::F32, l * counts.len() as i64);
            for (c, &count) in counts.iter().enumerate() {
                let mask = (count != l).then(|| Expr::idx(count));
                let v = Expr::load_vec(x, Expr::idx(0), lanes, stride, mask);
                b.store_vec(y, Expr::idx(c as i64 * l), v, 1, None);
            }
            let k = b.finish();
            let xs: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let mut expect = Vec::new();
            for &count in &counts {
                for lane in 0..l {
                    let v = if lane < count {
                        (lane * stride) as f32 + 0.5
                    } else {
                        0.0
                    };
                    expect.push(v.to_le_bytes().to_vec());
                }
            }
            let out = vec![0xCDu8; (l as usize) * counts.len() * 4];
            for r in run(&k, &[to_bytes(&xs), out], &[]) {
                check_elems(
                    &format!("{} stride {stride} x{lanes}", r.cpu),
                    DType::F32,
                    &r.bufs[1],
                    &expect,
                );
            }
        }
    }
}

/// Strides too wide for a span, without a mask (a few lanes: scalar loads
/// put together in LLVM; more: a gather), forwards and backwards.
fn check_far_strides<T: El>() {
    for lanes in [2u16, 3, 6, 8, 16] {
        for stride in [5i64, 32, -7] {
            let l = lanes as i64;
            let reach = (l - 1) * stride.abs();
            let n = reach + 1;
            let first = if stride < 0 { reach } else { 0 };
            let mut b = KernelBuilder::new("far");
            let x = b.input("x", T::D, n);
            let y = b.output("y", T::D, l);
            let v = Expr::load_vec(x, Expr::idx(first), lanes, stride, None);
            b.store_vec(y, Expr::idx(0), v, 1, None);
            let k = b.finish();
            let s = T::samples();
            let xs: Vec<T> = (0..n as usize).map(|i| s[(i * 5 + 1) % s.len()]).collect();
            let expect: Vec<Vec<u8>> = (0..l)
                .map(|j| xs[(first + j * stride) as usize].bytes())
                .collect();
            let out = vec![0xCDu8; lanes as usize * size_of(T::D)];
            for r in run(&k, &[to_bytes(&xs), out], &[]) {
                let what = format!("{} {} x{lanes} stride {stride}", r.cpu, T::D);
                check_elems(&what, T::D, &r.bufs[1], &expect);
            }
        }
    }
}

#[test]
fn far_strides_without_masks() {
    check_far_strides::<f32>();
    check_far_strides::<f64>();
    check_far_strides::<u8>();
    check_far_strides::<bool>();
}

#[test]
fn strided_loads_and_stores() {
    check_transpose::<i32>(4);
    check_transpose::<f64>(2);
    check_transpose::<u8>(4);
    check_transpose::<i16>(8);
    check_transpose::<f32>(8);
    check_transpose::<bool>(4);
    check_transpose::<u8>(16);
}

// ---------------------------------------------------------------------------
// Control flow and variables
// ---------------------------------------------------------------------------

/// Matrix-vector product with an f32x4 accumulator (`var`, reassigned in
/// the inner loop, reduced), rows of odd index negated (`if`/`else`), and
/// a per-row count of positive products (a scalar `var` assigned inside
/// an `if`).
#[test]
fn nested_loops_with_reductions_and_branches() {
    let mut b = KernelBuilder::new("matvec");
    let m = b.dim("m");
    let n = b.dim("n");
    let a = b.input("a", DType::F32, m.clone() * n.clone());
    let x = b.input("x", DType::F32, n.clone());
    let y = b.output("y", DType::F32, m.clone());
    let pos = b.output("pos", DType::I32, m.clone());
    b.range("i", m.clone(), |b, i| {
        let acc = b.decl("acc", Expr::Float(0.0, f32x(4)));
        b.for_("j", 0, n.clone(), 4, LoopKind::Serial, |b, j| {
            let rest = b.let_("rest", n.clone() - j.clone());
            let av = Expr::load_vec(
                a,
                i.clone() * n.clone() + j.clone(),
                4,
                1,
                Some(rest.clone()),
            );
            let xv = Expr::load_vec(x, j, 4, 1, Some(rest));
            b.assign(acc, Expr::mul_add(av, xv, Expr::Var(acc)));
        });
        let count = b.decl("count", Expr::Int(0, Ty::scalar(DType::I32)));
        b.range("j", n.clone(), |b, j| {
            let p = Expr::bin(
                BinOp::Mul,
                Expr::load(a, i.clone() * n.clone() + j.clone()),
                Expr::load(x, j),
            );
            b.if_(
                Expr::bin(BinOp::Gt, p, Expr::f32(0.0)),
                |b| {
                    let c = Expr::bin(
                        BinOp::Add,
                        Expr::Var(count),
                        Expr::Int(1, Ty::scalar(DType::I32)),
                    );
                    b.assign(count, c);
                },
                |_| {},
            );
        });
        b.store(pos, i.clone(), Expr::Var(count));
        let s = b.let_("s", Expr::Reduce(ReduceOp::Add, Box::new(Expr::Var(acc))));
        let even = Expr::bin(BinOp::Eq, i.clone() % 2, Expr::idx(0));
        b.if_(
            even,
            |b| b.store(y, i.clone(), s.clone()),
            |b| b.store(y, i.clone(), -s.clone()),
        );
    });
    let k = b.finish();
    for (m, n) in [(3usize, 10usize), (4, 4), (1, 1), (2, 0), (0, 5), (5, 13)] {
        let av: Vec<f32> = (0..m * n)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25)
            .collect();
        let xv: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin()).collect();
        for r in run(
            &k,
            &[to_bytes(&av), to_bytes(&xv), vec![0; m * 4], vec![0; m * 4]],
            &[m as i64, n as i64],
        ) {
            let ys: Vec<f32> = from_bytes(&r.bufs[2]);
            let ps: Vec<i32> = from_bytes(&r.bufs[3]);
            for i in 0..m {
                let row = &av[i * n..(i + 1) * n];
                let dot: f64 = row
                    .iter()
                    .zip(&xv)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let scale: f64 = row
                    .iter()
                    .zip(&xv)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                let want = if i % 2 == 0 { dot } else { -dot };
                assert!(
                    (ys[i] as f64 - want).abs() <= 1e-5 * scale.max(1.0),
                    "{} m {m} n {n} row {i}: {} vs {want}",
                    r.cpu,
                    ys[i]
                );
                let count = row.iter().zip(&xv).filter(|&(&a, &b)| a * b > 0.0).count();
                assert_eq!(ps[i] as usize, count, "{} positives of row {i}", r.cpu);
            }
        }
    }
}

/// `Unroll(4)` loops with an odd start and step 2 visit exactly the
/// iterations of the serial loop, also when fewer than four remain; a
/// `let` inside the body is bound once per copy.
#[test]
fn unrolled_loops_run_every_iteration() {
    let mut b = KernelBuilder::new("unrolled");
    let n = b.dim("n");
    let y = b.output("y", DType::I64, n.clone());
    let total = b.output("total", DType::I64, 1i64);
    let sum = b.decl("sum", Expr::idx(0));
    b.for_("i", 1, n.clone(), 2, LoopKind::Unroll(4), |b, i| {
        let t = b.let_("t", i.clone() * 3);
        b.store(y, i.clone(), t + 1);
        b.assign(sum, Expr::Var(sum) + i);
    });
    b.store(total, Expr::idx(0), Expr::Var(sum));
    let k = b.finish();
    for n in 0..14usize {
        for r in run(
            &k,
            &[to_bytes(&vec![-1i64; n]), to_bytes(&[0i64])],
            &[n as i64],
        ) {
            let ys: Vec<i64> = from_bytes(&r.bufs[0]);
            for (i, &v) in ys.iter().enumerate() {
                let want = if i % 2 == 1 { 3 * i as i64 + 1 } else { -1 };
                assert_eq!(v, want, "{} n {n} element {i}", r.cpu);
            }
            let total: Vec<i64> = from_bytes(&r.bufs[1]);
            assert_eq!(
                total[0],
                (1..n as i64).step_by(2).sum::<i64>(),
                "{} n {n}",
                r.cpu
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Parallel loops
// ---------------------------------------------------------------------------

/// A parallel loop (start 2, step 3) inside a serial one, reading a `let`
/// scalar, a mutable outer `var` (changed between the parallel loops), a
/// vector `let`, a boolean vector `let`, the outer loop variable and the
/// dims. With `nested`, the body holds another parallel loop, which runs
/// serially.
fn parallel_kernel(nested: bool) -> Kernel {
    let mut b = KernelBuilder::new("par");
    let rows = b.dim("rows");
    let n = b.dim("n");
    let x = b.input("x", DType::F32, n.clone());
    let out = b.output("out", DType::F32, rows.clone() * n.clone());
    let scale = b.let_("scale", n.clone().cast(DType::F32));
    let acc = b.decl("acc", Expr::f32(5.0));
    let v = b.let_(
        "v",
        Expr::bin(
            BinOp::Add,
            Expr::load(x, Expr::idx(0)).splat(4),
            Expr::Float(1.0, f32x(4)),
        ),
    );
    let mask = b.let_(
        "mask",
        Expr::bin(
            BinOp::Lt,
            Expr::load(x, Expr::idx(0)).splat(4),
            Expr::load(x, Expr::idx(1)).splat(4),
        ),
    );
    b.range("r", rows.clone(), |b, r| {
        b.assign(acc, Expr::bin(BinOp::Add, Expr::Var(acc), Expr::f32(1.0)));
        b.for_("i", 2, n.clone(), 3, LoopKind::Parallel, |b, i| {
            let val = Expr::bin(BinOp::Mul, Expr::load(x, i.clone()), scale.clone());
            let val = Expr::bin(BinOp::Add, val, Expr::Var(acc));
            let val = Expr::bin(BinOp::Add, val, Expr::Extract(Box::new(v.clone()), 2));
            let val = Expr::bin(BinOp::Add, val, r.clone().cast(DType::F32));
            let bonus = Expr::select(
                Expr::Extract(Box::new(mask.clone()), 1),
                Expr::f32(100.0),
                Expr::f32(0.0),
            );
            let val = b.let_("val", Expr::bin(BinOp::Add, val, bonus));
            let at = r.clone() * n.clone() + i.clone();
            if nested {
                b.for_("k", 0, 1, 1, LoopKind::Parallel, |b, k| {
                    b.store(out, at + k, val.clone());
                });
            } else {
                b.store(out, at, val);
            }
        });
    });
    b.finish()
}

fn parallel_expect(rows: usize, n: usize, xs: &[f32]) -> Vec<f32> {
    let mut out = vec![-1.0f32; rows * n];
    for r in 0..rows {
        let acc = 5.0 + (r + 1) as f32;
        for i in (2..n).step_by(3) {
            let bonus = if xs[0] < xs[1] { 100.0 } else { 0.0 };
            out[r * n + i] = xs[i] * n as f32 + acc + (xs[0] + 1.0) + r as f32 + bonus;
        }
    }
    out
}

#[test]
fn parallel_loops_through_the_runtime() {
    let pfs: [(&str, ParallelFor); 3] = [
        ("direct", pf_direct),
        ("chunks", pf_chunks),
        ("threads", pf_threads),
    ];
    for nested in [false, true] {
        let k = parallel_kernel(nested);
        assert_eq!(
            k.count_loops(|l| l == LoopKind::Parallel),
            1 + nested as usize
        );
        for (pf_name, pf) in pfs {
            for (gen_name, cg) in gens() {
                let m = compile(std::slice::from_ref(&k), &cg, pf);
                let f = m.entry("par").unwrap();
                for (rows, n) in [(3usize, 20usize), (1, 2), (2, 3), (4, 7), (0, 5)] {
                    let xs: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
                    let mut bufs = vec![to_bytes(&xs), to_bytes(&vec![-1.0f32; rows * n])];
                    let rt = Runtime {
                        calls: AtomicUsize::new(0),
                        chunks: AtomicUsize::new(0),
                    };
                    call(f, &mut bufs, &[rows as i64, n as i64], &rt);
                    let got: Vec<f32> = from_bytes(&bufs[1]);
                    let want = if n >= 2 {
                        parallel_expect(rows, n, &xs)
                    } else {
                        vec![]
                    };
                    assert_eq!(
                        got, want,
                        "{pf_name} {gen_name} nested {nested} rows {rows} n {n}"
                    );
                    assert_eq!(
                        rt.calls.load(Ordering::SeqCst),
                        rows,
                        "one runtime call per row"
                    );
                    let iters = (2..n).step_by(3).count();
                    let chunks = rt.chunks.load(Ordering::SeqCst);
                    if pf_name != "direct" && iters >= 3 {
                        assert_eq!(chunks, 3 * rows, "{pf_name}: three chunks per row");
                    }
                }
            }
        }
    }
}

#[test]
fn parallel_body_may_not_assign_outer_variables() {
    let mut b = KernelBuilder::new("racy");
    let n = b.dim("n");
    let y = b.output("y", DType::I64, 1i64);
    let sum = b.decl("sum", Expr::idx(0));
    b.for_("i", 0, n, 1, LoopKind::Parallel, |b, i| {
        b.assign(sum, Expr::Var(sum) + i);
    });
    b.store(y, Expr::idx(0), Expr::Var(sum));
    let err = JitModule::compile(&[b.finish()], &symbols(pf_direct)).unwrap_err();
    assert!(matches!(err, CodegenError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("parallel"), "{err}");
}

// ---------------------------------------------------------------------------
// Calls and math
// ---------------------------------------------------------------------------

fn rel_close(got: f64, want: f64, rel: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() || want == 0.0 {
        return got == want;
    }
    ((got - want) / want).abs() <= rel
}

/// `expf` on scalars and (lane by lane) on masked f32x4 vectors, `powf`
/// with two arguments, a test function taking a narrow signed integer, and
/// a call for effect in every iteration.
#[test]
fn calls_to_c_functions() {
    let i8_ty = Ty::scalar(DType::I8);
    let mut b = KernelBuilder::new("calls");
    let n = b.dim("n");
    let x = b.input("x", DType::F32, n.clone());
    let outs: Vec<_> = ["exp", "expv", "pow", "scale"]
        .iter()
        .map(|name| b.output(name, DType::F32, n.clone()))
        .collect();
    b.range("i", n.clone(), |b, i| {
        let xi = Expr::load(x, i.clone());
        b.store(
            outs[0],
            i.clone(),
            Expr::Call("expf".into(), vec![xi.clone()], Ty::F32),
        );
        let pow = Expr::Call("powf".into(), vec![xi.clone(), Expr::f32(2.5)], Ty::F32);
        b.store(outs[2], i.clone(), pow);
        let scaled = Expr::Call("test_scale".into(), vec![xi, Expr::Int(-3, i8_ty)], Ty::F32);
        b.store(outs[3], i.clone(), scaled);
        b.call("test_record", vec![i]);
    });
    b.for_("i", 0, n.clone(), 4, LoopKind::Serial, |b, i| {
        let rest = b.let_("rest", n.clone() - i.clone());
        let v = Expr::load_vec(x, i.clone(), 4, 1, Some(rest.clone()));
        let e = Expr::Call("expf".into(), vec![v], f32x(4));
        b.store_vec(outs[1], i, e, 1, Some(rest));
    });
    let k = b.finish();
    let n = 11usize;
    let xs: Vec<f32> = (0..n).map(|i| i as f32 * 0.9 - 4.0).collect();
    let before = RECORDED.load(Ordering::SeqCst);
    let runs = run(
        &k,
        &[
            to_bytes(&xs),
            vec![0; n * 4],
            vec![0; n * 4],
            vec![0; n * 4],
            vec![0; n * 4],
        ],
        &[n as i64],
    );
    let recorded = RECORDED.load(Ordering::SeqCst) - before;
    assert_eq!(recorded, runs.len() as i64 * (0..n as i64).sum::<i64>());
    for r in runs {
        let exp: Vec<f32> = from_bytes(&r.bufs[1]);
        let expv: Vec<f32> = from_bytes(&r.bufs[2]);
        let pow: Vec<f32> = from_bytes(&r.bufs[3]);
        let scale: Vec<f32> = from_bytes(&r.bufs[4]);
        for i in 0..n {
            assert!(
                rel_close(exp[i] as f64, xs[i].exp() as f64, 1e-6),
                "{} expf({})",
                r.cpu,
                xs[i]
            );
            assert!(
                rel_close(expv[i] as f64, xs[i].exp() as f64, 1e-6),
                "{} vector expf({})",
                r.cpu,
                xs[i]
            );
            assert!(
                rel_close(pow[i] as f64, xs[i].powf(2.5) as f64, 1e-6),
                "{} powf({})",
                r.cpu,
                xs[i]
            );
            assert_eq!(scale[i], xs[i] * -3.0, "{} test_scale", r.cpu);
        }
    }
}

/// `math::exp` expanded into Kernel IR against `f32::exp` (1e-6
/// relative), for scalars and vectors of one and two native widths, and
/// in f64; with overflow, underflow, infinities and NaN.
#[test]
fn exp_expansion_matches_libm() {
    let cases: [(DType, u16); 6] = [
        (DType::F32, 1),
        (DType::F32, 4),
        (DType::F32, 8),
        (DType::F32, 3),
        (DType::F64, 2),
        (DType::F64, 1),
    ];
    for (d, lanes) in cases {
        let k = map2("exp", d, d, lanes, |b, x, _| math::exp(b, x));
        // Up to the overflow threshold: between 88.376 (where
        // round(x * log2 e) reaches 128) and 88.72 the factor 2 beyond the
        // largest exponent goes into the polynomial part.
        let mut xs: Vec<f64> = (0..2000).map(|i| -87.0 + i as f64 * 0.0876).collect();
        xs.extend([0.0, -0.0, 1e-8, -1e-8, 0.5, 1.0, 88.3, 88.4, 88.5, 88.7]);
        let specials = [
            (f64::INFINITY, f64::INFINITY),
            (f64::NEG_INFINITY, 0.0),
            (f64::NAN, f64::NAN),
            (
                89.0,
                if d == DType::F32 {
                    f64::INFINITY
                } else {
                    89f64.exp()
                },
            ),
            (-88.0, if d == DType::F32 { 0.0 } else { (-88f64).exp() }),
            (1000.0, f64::INFINITY),
            (-1000.0, 0.0),
        ];
        let n_regular = xs.len();
        xs.extend(specials.iter().map(|s| s.0));
        if d == DType::F64 {
            xs.extend((0..300).map(|i| -700.0 + i as f64 * 4.66));
        }
        let input = if d == DType::F32 {
            to_bytes(&xs.iter().map(|&v| v as f32).collect::<Vec<_>>())
        } else {
            to_bytes(&xs)
        };
        let n = xs.len();
        let out = vec![0u8; n * size_of(d)];
        for r in run(&k, &[input.clone(), input.clone(), out], &[n as i64]) {
            let got: Vec<f64> = if d == DType::F32 {
                from_bytes::<f32>(&r.bufs[2])
                    .into_iter()
                    .map(|v| v as f64)
                    .collect()
            } else {
                from_bytes::<f64>(&r.bufs[2])
            };
            for (i, (&x, &g)) in xs.iter().zip(&got).enumerate() {
                let want = if i >= n_regular && i < n_regular + specials.len() {
                    specials[i - n_regular].1
                } else if d == DType::F32 {
                    (x as f32).exp() as f64
                } else {
                    x.exp()
                };
                assert!(
                    rel_close(g, want, 1e-6),
                    "{} {d} x{lanes}: exp({x}) = {g}, expected {want}",
                    r.cpu
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Lanes: masks, splats, extracts, reductions, constants
// ---------------------------------------------------------------------------

/// Selects whose boolean lanes come from comparisons of other widths:
/// i32x4 masks choosing f64x4 (widening), f64x16 masks choosing u8x16
/// (narrowing), u8x4 lane-wise booleans choosing f32x4 and the reverse;
/// boolean vectors stored as bytes, combined across representations, and
/// kept in a mutable variable.
#[test]
fn boolean_vectors_across_widths() {
    let mut b = KernelBuilder::new("masks");
    let n = 16i64;
    let ai = b.input("ai", DType::I32, n);
    let af = b.input("af", DType::F64, n);
    let au = b.input("au", DType::U8, n);
    let ab = b.input("ab", DType::Bool, n);
    let o64 = b.output("o64", DType::F64, n);
    let o8 = b.output("o8", DType::U8, n);
    let o32 = b.output("o32", DType::F32, n);
    let ou = b.output("ou", DType::U8, n);
    let ob = b.output("ob", DType::Bool, 4 * n);
    let z = Expr::idx(0);
    let ld = |buf, lanes, at: i64| Expr::load_vec(buf, Expr::idx(at), lanes, 1, None);
    // i32x4 compare selects f64x4.
    let c = Expr::bin(BinOp::Lt, ld(ai, 4, 0), ld(ai, 4, 4));
    let s = Expr::select(c, ld(af, 4, 0), ld(af, 4, 4));
    b.store_vec(o64, z.clone(), s, 1, None);
    // f64x16 compare selects u8x16.
    let c = Expr::bin(
        BinOp::Ge,
        ld(af, 16, 0),
        Expr::Float(0.0, Ty::vector(DType::F64, 16)),
    );
    let s = Expr::select(c, ld(au, 16, 0), Expr::Int(7, Ty::vector(DType::U8, 16)));
    b.store_vec(o8, z.clone(), s, 1, None);
    // u8x4 compare (lane-wise) selects f32x4, and f32x4 compare selects u8x4.
    let cu = Expr::bin(BinOp::Gt, ld(au, 4, 0), ld(au, 4, 4));
    let fa = ld(ai, 4, 0).cast(DType::F32);
    let fb = ld(ai, 4, 4).cast(DType::F32);
    b.store_vec(
        o32,
        z.clone(),
        Expr::select(cu.clone(), fa.clone(), fb.clone()),
        1,
        None,
    );
    let cf = Expr::bin(BinOp::Le, fa, fb);
    b.store_vec(
        ou,
        z.clone(),
        Expr::select(cf.clone(), ld(au, 4, 8), ld(au, 4, 12)),
        1,
        None,
    );
    // Stored booleans: i32-wide masks, bytes-wide masks, lane-wise, and
    // combinations of representations.
    b.store_vec(ob, z.clone(), cf.clone(), 1, None);
    let c16 = Expr::bin(
        BinOp::Ne,
        ld(au, 16, 0),
        ld(au, 16, 0).min(Expr::Int(100, Ty::vector(DType::U8, 16))),
    );
    b.store_vec(ob, Expr::idx(4), c16, 1, None);
    b.store_vec(
        ob,
        Expr::idx(20),
        Expr::bin(BinOp::And, cf.clone(), cu.clone()),
        1,
        None,
    );
    b.store_vec(
        ob,
        Expr::idx(24),
        Expr::bin(BinOp::Or, cu.clone(), cf.clone()),
        1,
        None,
    );
    b.store_vec(ob, Expr::idx(28), Expr::un(UnOp::Not, cf.clone()), 1, None);
    b.store_vec(
        ob,
        Expr::idx(32),
        Expr::bin(
            BinOp::Xor,
            ld(ab, 16, 0),
            ld(ab, 16, 0).lt(Expr::Int(1, Ty::vector(DType::Bool, 16))),
        ),
        1,
        None,
    );
    // A boolean var of 4 lanes assigned from an f64x4 comparison.
    let flag = b.decl("flag", cu.clone());
    let c64 = Expr::bin(BinOp::Gt, ld(af, 4, 0), ld(af, 4, 4));
    b.assign(flag, Expr::bin(BinOp::Xor, Expr::Var(flag), c64));
    b.store_vec(ob, Expr::idx(48), Expr::Var(flag), 1, None);
    // Bool bytes other than 0 and 1 read as true.
    b.store_vec(ob, Expr::idx(52), ld(ab, 4, 12), 1, None);
    let k = b.finish();

    let ai_v: Vec<i32> = vec![3, -1, 5, 0, 2, 2, 9, -7, 1, 1, 1, 1, 1, 1, 1, 1];
    let af_v: Vec<f64> = vec![
        1.5,
        -2.0,
        f64::NAN,
        0.0,
        -0.5,
        3.0,
        4.0,
        -1.0,
        2.0,
        -3.0,
        5.0,
        6.0,
        -7.0,
        8.0,
        9.0,
        -0.0,
    ];
    let au_v: Vec<u8> = vec![
        10, 200, 30, 0, 5, 201, 29, 1, 50, 60, 70, 80, 90, 100, 110, 120,
    ];
    let mut ab_bytes = vec![1u8, 0, 2, 0, 1, 1, 0, 0, 7, 0, 1, 0, 0, 3, 1, 255];
    ab_bytes.truncate(16);
    let ab_v: Vec<bool> = ab_bytes.iter().map(|&x| x != 0).collect();
    let outs = [
        vec![0u8; 16 * 8],
        vec![0u8; 16],
        vec![0u8; 16 * 4],
        vec![0u8; 16],
        vec![9u8; 64],
    ];
    let mut bufs = vec![
        to_bytes(&ai_v),
        to_bytes(&af_v),
        to_bytes(&au_v),
        ab_bytes.clone(),
    ];
    bufs.extend(outs);

    let cf: Vec<bool> = (0..4)
        .map(|i| (ai_v[i] as f32) <= (ai_v[i + 4] as f32))
        .collect();
    let cu: Vec<bool> = (0..4).map(|i| au_v[i] > au_v[i + 4]).collect();
    for r in run(&k, &bufs, &[]) {
        let o64: Vec<f64> = from_bytes(&r.bufs[4]);
        for i in 0..4 {
            let want = if ai_v[i] < ai_v[i + 4] {
                af_v[i]
            } else {
                af_v[i + 4]
            };
            assert!(
                same(DType::F64, &o64[i].bytes(), &want.bytes()),
                "{} o64[{i}]",
                r.cpu
            );
        }
        for i in 0..16 {
            let want = if af_v[i] >= 0.0 { au_v[i] } else { 7 };
            assert_eq!(r.bufs[5][i], want, "{} o8[{i}]", r.cpu);
        }
        let o32: Vec<f32> = from_bytes(&r.bufs[6]);
        for i in 0..4 {
            let want = if cu[i] { ai_v[i] } else { ai_v[i + 4] } as f32;
            assert_eq!(o32[i], want, "{} o32[{i}]", r.cpu);
            let want = if cf[i] { au_v[i + 8] } else { au_v[i + 12] };
            assert_eq!(r.bufs[7][i], want, "{} ou[{i}]", r.cpu);
        }
        let ob = &r.bufs[8];
        let bools = |v: &[bool]| v.iter().map(|&x| x as u8).collect::<Vec<u8>>();
        assert_eq!(ob[0..4], bools(&cf)[..], "{} cf", r.cpu);
        let c16: Vec<bool> = au_v.iter().map(|&v| v != v.min(100)).collect();
        assert_eq!(ob[4..20], bools(&c16)[..], "{} c16", r.cpu);
        let and: Vec<bool> = (0..4).map(|i| cf[i] & cu[i]).collect();
        let or: Vec<bool> = (0..4).map(|i| cf[i] | cu[i]).collect();
        let not: Vec<bool> = (0..4).map(|i| !cf[i]).collect();
        assert_eq!(ob[20..24], bools(&and)[..], "{} and", r.cpu);
        assert_eq!(ob[24..28], bools(&or)[..], "{} or", r.cpu);
        assert_eq!(ob[28..32], bools(&not)[..], "{} not", r.cpu);
        let xor: Vec<bool> = ab_v.iter().map(|&v| v ^ !v).collect();
        assert_eq!(ob[32..48], bools(&xor)[..], "{} xor", r.cpu);
        let flag: Vec<bool> = (0..4).map(|i| cu[i] ^ (af_v[i] > af_v[i + 4])).collect();
        assert_eq!(ob[48..52], bools(&flag)[..], "{} flag", r.cpu);
        assert_eq!(
            ob[52..56],
            bools(&ab_v[12..16])[..],
            "{} loaded bools",
            r.cpu
        );
        assert!(ob[56..].iter().all(|&x| x == 9), "{} untouched", r.cpu);
    }
}

/// Splat of a loaded scalar, every lane extracted back, and horizontal
/// reductions, for one type of each class at several widths.
/// A reduction and the Rust fold computing it.
type Fold<T> = (ReduceOp, fn(T, T) -> T);

fn check_lanes<T: El>(lanes: u16, reduce: &[Fold<T>]) {
    let s = T::samples();
    let xs: Vec<T> = (0..lanes as usize)
        .map(|i| s[(i * 5 + 1) % s.len()])
        .collect();
    let mut b = KernelBuilder::new("lanes");
    let x = b.input("x", T::D, lanes as i64);
    let splat = b.output("splat", T::D, lanes as i64);
    let ext = b.output("extract", T::D, lanes as i64);
    let red = b.output("reduce", T::D, reduce.len() as i64);
    let v = b.let_("v", Expr::load_vec(x, Expr::idx(0), lanes, 1, None));
    let one = b.let_("one", Expr::load(x, Expr::idx(1)));
    b.store_vec(
        splat,
        Expr::idx(0),
        Expr::Splat(lanes, Box::new(one)),
        1,
        None,
    );
    for i in 0..lanes {
        b.store(
            ext,
            Expr::idx(i as i64),
            Expr::Extract(Box::new(v.clone()), i),
        );
    }
    for (j, (op, _)) in reduce.iter().enumerate() {
        b.store(
            red,
            Expr::idx(j as i64),
            Expr::Reduce(*op, Box::new(v.clone())),
        );
    }
    let k = b.finish();
    let out = |n: usize| vec![0u8; n * size_of(T::D)];
    let bufs = [
        to_bytes(&xs),
        out(lanes as usize),
        out(lanes as usize),
        out(reduce.len()),
    ];
    for r in run(&k, &bufs, &[]) {
        let what = format!("{} {} x{lanes}", r.cpu, T::D);
        let splat: Vec<Vec<u8>> = vec![xs[1].bytes(); lanes as usize];
        check_elems(&format!("{what} splat"), T::D, &r.bufs[1], &splat);
        let ext: Vec<Vec<u8>> = xs.iter().map(|x| x.bytes()).collect();
        check_elems(&format!("{what} extract"), T::D, &r.bufs[2], &ext);
        let want: Vec<Vec<u8>> = reduce
            .iter()
            .map(|(_, f)| xs[1..].iter().fold(xs[0], |a, &b| f(a, b)).bytes())
            .collect();
        check_elems(&format!("{what} reduce"), T::D, &r.bufs[3], &want);
    }
}

#[test]
fn splat_extract_reduce() {
    use ReduceOp::*;
    let int_ops = |add: fn(i32, i32) -> i32, mul: fn(i32, i32) -> i32| {
        [
            (Add, add),
            (Mul, mul),
            (Min, i32::min as fn(i32, i32) -> i32),
            (Max, i32::max),
        ]
    };
    for lanes in [4, 8, 3, 2] {
        check_lanes::<i32>(lanes, &int_ops(i32::wrapping_add, i32::wrapping_mul));
    }
    let u8_ops: [Fold<u8>; 4] = [
        (Add, u8::wrapping_add),
        (Mul, u8::wrapping_mul),
        (Min, u8::min),
        (Max, u8::max),
    ];
    for lanes in [16, 32, 4] {
        check_lanes::<u8>(lanes, &u8_ops);
    }
    let i64_ops: [Fold<i64>; 4] = [
        (Add, i64::wrapping_add),
        (Mul, i64::wrapping_mul),
        (Min, i64::min),
        (Max, i64::max),
    ];
    for lanes in [2, 4] {
        check_lanes::<i64>(lanes, &i64_ops);
    }
    let u16_ops: [Fold<u16>; 2] = [(Min, u16::min), (Max, u16::max)];
    for lanes in [8, 3] {
        check_lanes::<u16>(lanes, &u16_ops);
    }
    // Float sums of samples with infinities are NaN or infinite in any
    // order; min and max propagate NaN.
    fn fmin(a: f32, b: f32) -> f32 {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else {
            a.min(b)
        }
    }
    fn fmax(a: f32, b: f32) -> f32 {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else {
            a.max(b)
        }
    }
    let f32_ops: [Fold<f32>; 2] = [(Min, fmin), (Max, fmax)];
    for lanes in [4, 8, 16, 3] {
        check_lanes::<f32>(lanes, &f32_ops);
    }
    let bool_ops: [Fold<bool>; 2] = [(Min, |a, b| a & b), (Max, |a, b| a | b)];
    for lanes in [16, 4, 2, 3, 32] {
        check_lanes::<bool>(lanes, &bool_ops);
    }
}

/// Float sums and products over lanes of ordinary values, against f64.
/// Shuffles of two vectors against picking the lanes in Rust: the block
/// interleavings of the register transpose, a reversal, one lane, and
/// repeats, at every lane count; bool vectors (from comparisons) too.
fn check_shuffles<T: El>() {
    let s = T::samples();
    for lanes in lane_counts(T::D) {
        let n = lanes as usize;
        let xs: Vec<T> = (0..2 * n).map(|i| s[(i * 7 + 3) % s.len()]).collect();
        let mut picks: Vec<Vec<u16>> = vec![
            (0..2 * lanes).rev().collect(),
            vec![lanes],
            vec![0, 2 * lanes - 1, 0, 1],
        ];
        let mut bs = 1;
        while n.is_multiple_of(2 * bs) {
            for half in [0..n / (2 * bs), n / (2 * bs)..n / bs] {
                picks.push(
                    half.flat_map(|j| (j * bs..(j + 1) * bs).chain(n + j * bs..n + (j + 1) * bs))
                        .map(|i| i as u16)
                        .collect(),
                );
            }
            bs *= 2;
        }
        let mut b = KernelBuilder::new("shuffles");
        let x = b.input("x", T::D, 2 * n as i64);
        let outs: Vec<_> = picks
            .iter()
            .enumerate()
            .map(|(i, p)| b.output(&format!("o{i}"), T::D, p.len() as i64))
            .collect();
        let flags: Vec<_> = picks
            .iter()
            .enumerate()
            .map(|(i, p)| b.output(&format!("f{i}"), DType::Bool, p.len() as i64))
            .collect();
        let va = b.let_("a", Expr::load_vec(x, Expr::idx(0), lanes, 1, None));
        let vb = b.let_("b", Expr::load_vec(x, Expr::idx(n as i64), lanes, 1, None));
        let lt = b.let_("lt", Expr::bin(BinOp::Lt, va.clone(), vb.clone()));
        let gt = b.let_("gt", Expr::bin(BinOp::Gt, va.clone(), vb.clone()));
        for (i, p) in picks.iter().enumerate() {
            let v = Expr::shuffle(va.clone(), vb.clone(), p.clone());
            b.store_vec(outs[i], Expr::idx(0), v, 1, None);
            let f = Expr::shuffle(lt.clone(), gt.clone(), p.clone());
            b.store_vec(flags[i], Expr::idx(0), f, 1, None);
        }
        let k = b.finish();
        let mut bufs = vec![to_bytes(&xs)];
        bufs.extend(picks.iter().map(|p| vec![0u8; p.len() * size_of(T::D)]));
        bufs.extend(picks.iter().map(|p| vec![0u8; p.len()]));
        for r in run(&k, &bufs, &[]) {
            for (i, p) in picks.iter().enumerate() {
                let what = format!("{} {} x{lanes} shuffle {p:?}", r.cpu, T::D);
                let want: Vec<Vec<u8>> = p.iter().map(|&j| xs[j as usize].bytes()).collect();
                check_elems(&what, T::D, &r.bufs[1 + i], &want);
                let flag = |j: usize| -> bool {
                    let (a, b) = (xs[j % n], xs[n + j % n]);
                    if j < n {
                        T::bin(BinOp::Lt, a, b).unwrap() == [1]
                    } else {
                        T::bin(BinOp::Gt, a, b).unwrap() == [1]
                    }
                };
                let want: Vec<u8> = p.iter().map(|&j| flag(j as usize) as u8).collect();
                assert_eq!(r.bufs[1 + picks.len() + i], want, "{what} flags");
            }
        }
    }
}

#[test]
fn shuffles() {
    check_shuffles::<f32>();
    check_shuffles::<f64>();
    check_shuffles::<i32>();
    check_shuffles::<u8>();
    check_shuffles::<i64>();
}

#[test]
fn float_reductions() {
    for lanes in [4u16, 8, 16, 3] {
        let mut b = KernelBuilder::new("sum");
        let x = b.input("x", DType::F32, lanes as i64);
        let y = b.output("y", DType::F32, 2i64);
        let v = b.let_("v", Expr::load_vec(x, Expr::idx(0), lanes, 1, None));
        b.store(
            y,
            Expr::idx(0),
            Expr::Reduce(ReduceOp::Add, Box::new(v.clone())),
        );
        b.store(y, Expr::idx(1), Expr::Reduce(ReduceOp::Mul, Box::new(v)));
        let k = b.finish();
        let xs: Vec<f32> = (0..lanes).map(|i| 0.75 + i as f32 * 0.125).collect();
        let sum: f64 = xs.iter().map(|&v| v as f64).sum();
        let prod: f64 = xs.iter().map(|&v| v as f64).product();
        for r in run(&k, &[to_bytes(&xs), vec![0; 8]], &[]) {
            let got: Vec<f32> = from_bytes(&r.bufs[1]);
            assert!(
                rel_close(got[0] as f64, sum, 1e-6),
                "{} sum x{lanes}",
                r.cpu
            );
            assert!(
                rel_close(got[1] as f64, prod, 1e-6),
                "{} product x{lanes}",
                r.cpu
            );
        }
    }
}

/// Vector constants of every class, and shifts by a constant amount (one
/// native vector shift) including amounts past the width (taken modulo).
#[test]
fn constants_and_uniform_shifts() {
    fn check<T: El>(
        lanes: u16,
        c: i64,
        amounts: &[i64],
        shl: fn(T, u32) -> T,
        shr: fn(T, u32) -> T,
    ) {
        let ty = Ty::vector(T::D, lanes);
        let mut b = KernelBuilder::new("shifts");
        let x = b.input("x", T::D, lanes as i64);
        let y = b.output("y", T::D, (lanes as usize * (2 * amounts.len() + 1)) as i64);
        let v = b.let_("v", Expr::load_vec(x, Expr::idx(0), lanes, 1, None));
        b.store_vec(y, Expr::idx(0), Expr::Int(c, ty), 1, None);
        for (j, &a) in amounts.iter().enumerate() {
            let at = (lanes as usize * (1 + 2 * j)) as i64;
            let l = Expr::bin(BinOp::Shl, v.clone(), Expr::Int(a, ty));
            let r = Expr::bin(BinOp::Shr, v.clone(), Expr::Int(a, ty));
            b.store_vec(y, Expr::idx(at), l, 1, None);
            b.store_vec(y, Expr::idx(at + lanes as i64), r, 1, None);
        }
        let k = b.finish();
        let s = T::samples();
        let xs: Vec<T> = (0..lanes as usize)
            .map(|i| s[(i * 3 + 2) % s.len()])
            .collect();
        let mut want: Vec<Vec<u8>> = Vec::new();
        let cv = T::read(&c.to_le_bytes()[..size_of(T::D)]);
        want.extend(std::iter::repeat_n(cv.bytes(), lanes as usize));
        for &a in amounts {
            want.extend(xs.iter().map(|&x| shl(x, a as u32).bytes()));
            want.extend(xs.iter().map(|&x| shr(x, a as u32).bytes()));
        }
        let out = vec![0u8; want.len() * size_of(T::D)];
        for r in run(&k, &[to_bytes(&xs), out], &[]) {
            check_elems(
                &format!("{} {} x{lanes}", r.cpu, T::D),
                T::D,
                &r.bufs[1],
                &want,
            );
        }
    }
    check::<i8>(16, -3, &[0, 1, 7, 9], i8::wrapping_shl, i8::wrapping_shr);
    check::<u8>(16, 200, &[1, 7], u8::wrapping_shl, u8::wrapping_shr);
    check::<i16>(8, -300, &[3, 15, 17], i16::wrapping_shl, i16::wrapping_shr);
    check::<u16>(16, 60000, &[3, 15], u16::wrapping_shl, u16::wrapping_shr);
    check::<i32>(4, -5, &[1, 31, 33], i32::wrapping_shl, i32::wrapping_shr);
    check::<u32>(
        8,
        4_000_000_000,
        &[4, 31],
        u32::wrapping_shl,
        u32::wrapping_shr,
    );
    check::<i64>(
        2,
        i64::MIN,
        &[1, 63, 65],
        i64::wrapping_shl,
        i64::wrapping_shr,
    );
    check::<u64>(4, -1, &[1, 63], u64::wrapping_shl, u64::wrapping_shr);
    check::<i32>(3, 7, &[2, 31], i32::wrapping_shl, i32::wrapping_shr);
}

#[test]
fn float_and_bool_constants() {
    let mut b = KernelBuilder::new("consts");
    let f = b.output("f", DType::F64, 4i64);
    let g = b.output("g", DType::F32, 8i64);
    let t = b.output("t", DType::Bool, 20i64);
    let u = b.output("u", DType::U8, 4i64);
    b.store_vec(
        f,
        Expr::idx(0),
        Expr::Float(-2.5, Ty::vector(DType::F64, 4)),
        1,
        None,
    );
    b.store_vec(g, Expr::idx(0), Expr::Float(1e-3, f32x(8)), 1, None);
    b.store_vec(
        t,
        Expr::idx(0),
        Expr::Int(1, Ty::vector(DType::Bool, 16)),
        1,
        None,
    );
    b.store_vec(
        t,
        Expr::idx(16),
        Expr::Int(0, Ty::vector(DType::Bool, 4)),
        1,
        None,
    );
    // An integer constant of a float type and a float constant of an
    // integer type convert.
    b.store_vec(
        u,
        Expr::idx(0),
        Expr::Float(7.0, Ty::vector(DType::U8, 4)),
        1,
        None,
    );
    let k = b.finish();
    for r in run(
        &k,
        &[vec![0; 32], vec![0; 32], vec![5; 20], vec![0; 4]],
        &[],
    ) {
        assert_eq!(from_bytes::<f64>(&r.bufs[0]), vec![-2.5; 4], "{}", r.cpu);
        assert_eq!(from_bytes::<f32>(&r.bufs[1]), vec![1e-3f32; 8], "{}", r.cpu);
        assert_eq!(r.bufs[2][..16], [1u8; 16], "{}", r.cpu);
        assert_eq!(r.bufs[2][16..], [0u8; 4], "{}", r.cpu);
        assert_eq!(r.bufs[3], vec![7u8; 4], "{}", r.cpu);
    }
}

/// Fused multiply-add on floats (within rounding of the exact result) and
/// wrapping on integers.
#[test]
fn mul_add() {
    for lanes in [1u16, 4, 8, 3] {
        let k = map2("fma", DType::F32, DType::F32, lanes, |_, a, b| {
            Expr::mul_add(a.clone(), b, a)
        });
        let xs: Vec<f32> = (0..29).map(|i| i as f32 * 0.37 - 5.0).collect();
        let ys: Vec<f32> = (0..29).map(|i| 3.0 - i as f32 * 0.11).collect();
        for r in run(&k, &[to_bytes(&xs), to_bytes(&ys), vec![0; 29 * 4]], &[29]) {
            let got: Vec<f32> = from_bytes(&r.bufs[2]);
            for i in 0..29 {
                let want = xs[i] as f64 * ys[i] as f64 + xs[i] as f64;
                assert!(
                    (got[i] as f64 - want).abs()
                        <= 1e-6 * (1.0 + want.abs() + (xs[i] * ys[i]).abs() as f64),
                    "{} x{lanes} {i}",
                    r.cpu
                );
            }
        }
        let k = map2("ima", DType::I32, DType::I32, lanes, |_, a, b| {
            Expr::mul_add(a.clone(), b, a)
        });
        let s = i32::samples();
        let xs: Vec<i32> = (0..29).map(|i| s[i % s.len()]).collect();
        let ys: Vec<i32> = (0..29).map(|i| s[(i * 7) % s.len()]).collect();
        for r in run(&k, &[to_bytes(&xs), to_bytes(&ys), vec![0; 29 * 4]], &[29]) {
            let got: Vec<i32> = from_bytes(&r.bufs[2]);
            for i in 0..29 {
                assert_eq!(
                    got[i],
                    xs[i].wrapping_mul(ys[i]).wrapping_add(xs[i]),
                    "{} x{lanes} {i}",
                    r.cpu
                );
            }
        }
    }
}

/// Bitcasts keep the bits (booleans convert as values).
#[test]
fn bitcasts() {
    fn check<A: El, B: El>(lanes: u16, xs: &[A], f: impl Fn(A) -> Vec<u8>) {
        let k = map2("bits", A::D, B::D, lanes, |_, a, _| a.bitcast(B::D));
        let n = xs.len();
        let want: Vec<Vec<u8>> = xs.iter().map(|&x| f(x)).collect();
        for r in run(
            &k,
            &[to_bytes(xs), to_bytes(xs), vec![0; n * size_of(B::D)]],
            &[n as i64],
        ) {
            check_elems(
                &format!("{} {} to {} x{lanes}", r.cpu, A::D, B::D),
                B::D,
                &r.bufs[2],
                &want,
            );
        }
    }
    for lanes in [1, 4, 8, 3] {
        check::<f32, i32>(lanes, &f32::samples(), |x| {
            x.to_bits().to_le_bytes().to_vec()
        });
        check::<i32, f32>(lanes, &i32::samples(), |x| x.to_le_bytes().to_vec());
        check::<u32, f32>(lanes, &u32::samples(), |x| x.to_le_bytes().to_vec());
        check::<f64, u64>(lanes, &f64::samples(), |x| {
            x.to_bits().to_le_bytes().to_vec()
        });
        check::<i64, f64>(lanes, &i64::samples(), |x| x.to_le_bytes().to_vec());
        check::<i8, u8>(lanes, &i8::samples(), |x| x.to_le_bytes().to_vec());
        check::<u16, i16>(lanes, &u16::samples(), |x| x.to_le_bytes().to_vec());
        check::<u8, bool>(lanes, &u8::samples(), |x| vec![(x != 0) as u8]);
        check::<bool, u8>(lanes, &bool::samples(), |x| vec![x as u8]);
    }
    for lanes in [16, 32] {
        check::<u8, bool>(lanes, &u8::samples(), |x| vec![(x != 0) as u8]);
        check::<bool, i8>(lanes, &bool::samples(), |x| vec![x as u8]);
    }
}

// ---------------------------------------------------------------------------
// Errors, objects, the module type
// ---------------------------------------------------------------------------

fn compile_err(k: Kernel) -> CodegenError {
    JitModule::compile(&[k], &symbols(pf_direct)).expect_err("compiles")
}

#[test]
fn errors_name_the_kernel_and_the_problem() {
    // A buffer type the code generator has no representation for.
    let mut b = KernelBuilder::new("halves");
    let x = b.input("x", DType::F16, 4i64);
    let y = b.output("y", DType::F16, 4i64);
    b.store(y, Expr::idx(0), Expr::load(x, Expr::idx(0)));
    let e = compile_err(b.finish());
    assert!(
        matches!(&e, CodegenError::Unsupported { kernel, .. } if kernel == "halves"),
        "{e}"
    );
    assert!(e.to_string().contains("f16"), "{e}");

    // Bitwise and of floats.
    let e = compile_err(map2("fand", DType::F32, DType::F32, 4, |_, a, b| {
        Expr::bin(BinOp::And, a, b)
    }));
    assert!(
        matches!(&e, CodegenError::Unsupported { kernel, .. } if kernel == "fand"),
        "{e}"
    );

    // Operands of different types.
    let e = compile_err(map2("mixed", DType::F32, DType::F32, 4, |_, a, _| {
        Expr::bin(BinOp::Add, a, Expr::f32(1.0))
    }));
    assert!(matches!(e, CodegenError::Invalid { .. }), "{e}");

    // A variable used outside its scope.
    let mut b = KernelBuilder::new("scope");
    let y = b.output("y", DType::I64, 4i64);
    let mut inner = None;
    b.range("i", 4i64, |_, i| inner = Some(i));
    b.store(y, Expr::idx(0), inner.unwrap());
    let e = compile_err(b.finish());
    assert!(e.to_string().contains("scope"), "{e}");

    // Assigning a `let`.
    let mut b = KernelBuilder::new("assign");
    let y = b.output("y", DType::I64, 1i64);
    b.range("i", 4i64, |b, i| {
        let Expr::Var(v) = i.clone() else {
            unreachable!()
        };
        b.assign(v, i);
    });
    b.store(y, Expr::idx(0), Expr::idx(0));
    assert!(matches!(
        compile_err(b.finish()),
        CodegenError::Invalid { .. }
    ));

    // A dim that is not declared.
    let mut b = KernelBuilder::new("dims");
    let y = b.output("y", DType::I64, 1i64);
    b.store(y, Expr::idx(0), Expr::Dim(3));
    assert!(matches!(
        compile_err(b.finish()),
        CodegenError::Invalid { .. }
    ));

    // Two kernels of one name.
    let k = map2("twice", DType::I32, DType::I32, 1, |_, a, _| a);
    let e = JitModule::compile(&[k.clone(), k], &[]).unwrap_err();
    assert!(matches!(e, CodegenError::Invalid { .. }), "{e}");
}

#[test]
fn unresolved_imports_are_errors() {
    let mut b = KernelBuilder::new("calls_nothing");
    b.call("saturn_test_no_such_function", vec![Expr::idx(1)]);
    let e = compile_err(b.finish());
    assert_eq!(
        e,
        CodegenError::Unresolved("saturn_test_no_such_function".into())
    );
    // Parallel loops need the runtime's entry point.
    let mut b = KernelBuilder::new("par");
    let y = b.output("y", DType::I64, 4i64);
    b.for_("i", 0, 4, 1, LoopKind::Parallel, |b, i| {
        b.store(y, i.clone(), i)
    });
    let e = JitModule::compile(&[b.finish()], &[]).unwrap_err();
    assert_eq!(e, CodegenError::Unresolved(PARALLEL_FOR.into()));
}

#[test]
fn jit_module_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<JitModule>();
    // Kernels of one module run on several threads at once.
    let k = map2("add", DType::I64, DType::I64, 2, |_, a, b| {
        Expr::bin(BinOp::Add, a, b)
    });
    let m = JitModule::compile(&[k], &[]).unwrap();
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let m = &m;
            s.spawn(move || {
                let f = m.entry("add").unwrap();
                let xs: Vec<i64> = (0..9).map(|i| i * t).collect();
                let mut bufs = vec![to_bytes(&xs), to_bytes(&xs), vec![0; 72]];
                let rt = Runtime {
                    calls: AtomicUsize::new(0),
                    chunks: AtomicUsize::new(0),
                };
                call(f, &mut bufs, &[9], &rt);
                let got: Vec<i64> = from_bytes(&bufs[2]);
                assert_eq!(got, xs.iter().map(|x| 2 * x).collect::<Vec<_>>());
            });
        }
    });
    assert!(m.entry("sub").is_none());
    assert_eq!(m.names().collect::<Vec<_>>(), vec!["add"]);
}

#[test]
fn emit_object_exports_prefixed_kernels() {
    use object::{Object, ObjectSymbol};
    let k1 = parallel_kernel(false);
    let mut b = KernelBuilder::new("softplus");
    let n = b.dim("n");
    let x = b.input("x", DType::F32, n.clone());
    let y = b.output("y", DType::F32, n.clone());
    b.range("i", n, |b, i| {
        let e = Expr::Call("expf".into(), vec![Expr::load(x, i.clone())], Ty::F32);
        let l = Expr::Call("log1pf".into(), vec![e], Ty::F32);
        b.store(y, i, l);
    });
    let k2 = b.finish();
    let bytes = emit_object(&[k1, k2], None, "saturn_m0_").unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    assert_eq!(obj.kind(), object::ObjectKind::Relocatable);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(obj.architecture(), object::Architecture::X86_64);
    #[cfg(target_os = "linux")]
    assert_eq!(obj.format(), object::BinaryFormat::Elf);
    let find = |name: &str| obj.symbols().find(|s| s.name() == Ok(name));
    for name in ["saturn_m0_par", "saturn_m0_softplus"] {
        let s = find(name).unwrap_or_else(|| panic!("no symbol {name}"));
        assert!(s.is_definition() && s.is_global(), "{name} exported");
        assert_eq!(s.kind(), object::SymbolKind::Text);
    }
    for name in [PARALLEL_FOR, "expf", "log1pf"] {
        let s = find(name).unwrap_or_else(|| panic!("no import {name}"));
        assert!(s.is_undefined(), "{name} imported");
    }
    // The outlined body is not exported.
    assert!(
        obj.symbols()
            .filter(|s| s.is_global() && s.is_definition())
            .all(|s| s.name().is_ok_and(|n| !n.contains("parallel")))
    );

    // An explicit triple, and a malformed one.
    #[cfg(target_arch = "x86_64")]
    {
        let k = map2("add", DType::F32, DType::F32, 8, |_, a, b| {
            Expr::bin(BinOp::Add, a, b)
        });
        let bytes = emit_object(&[k], Some("x86_64-unknown-linux-gnu"), "p_").unwrap();
        let obj = object::File::parse(&*bytes).unwrap();
        assert!(obj.symbols().any(|s| s.name() == Ok("p_add")));
    }
    let e = emit_object(&[], Some("not-a-triple"), "p_").unwrap_err();
    assert!(matches!(e, CodegenError::Target(_)), "{e}");
}

/// Half storage: widening every f16/bf16 bit pattern and narrowing a spread
/// of f32 values agree bit for bit with the `half` crate on every CPU
/// (the Kernel IR expansion is integer code, so lane widths and masks
/// matter, not float instructions).
#[test]
fn half_conversions_are_exact() {
    use half::{bf16, f16};
    use math::Half;
    for h in [Half::F16, Half::BF16] {
        let n = 1 << 16;
        let mut b = KernelBuilder::new("widen");
        let x = b.input("x", DType::U16, n);
        let y = b.output("y", DType::F32, n);
        b.for_("i", 0, n, 4, LoopKind::Serial, |b, i| {
            let v = math::half_to_f32(b, Expr::load_vec(x, i.clone(), 4, 1, None), h);
            b.store_vec(y, i, v, 1, None);
        });
        let k = b.finish();
        let bits: Vec<u16> = (0..=u16::MAX).collect();
        for r in run(&k, &[to_bytes(&bits), vec![0; n * 4]], &[]) {
            let got: Vec<f32> = from_bytes(&r.bufs[1]);
            for (i, g) in got.iter().enumerate() {
                let want = match h {
                    Half::F16 => f16::from_bits(i as u16).to_f32(),
                    Half::BF16 => bf16::from_bits(i as u16).to_f32(),
                };
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "{} {h:?} {i:#06x}: {g:e} vs {want:e}",
                    r.cpu
                );
            }
        }
        let mut b = KernelBuilder::new("narrow");
        let x = b.input("x", DType::F32, n);
        let y = b.output("y", DType::U16, n);
        b.for_("i", 0, n, 4, LoopKind::Serial, |b, i| {
            let v = math::f32_to_half(b, Expr::load_vec(x, i.clone(), 4, 1, None), h);
            b.store_vec(y, i, v, 1, None);
        });
        let k = b.finish();
        let xs: Vec<f32> = (0..n as u32)
            .map(|i| f32::from_bits(i.wrapping_mul(0x9e37_79b9) ^ (i << 7)))
            .collect();
        for r in run(&k, &[to_bytes(&xs), vec![0; n * 2]], &[]) {
            let got: Vec<u16> = from_bytes(&r.bufs[1]);
            for (x, g) in xs.iter().zip(&got) {
                let (want, nan) = match h {
                    Half::F16 => (f16::from_f32(*x).to_bits(), f16::from_bits(*g).is_nan()),
                    Half::BF16 => (bf16::from_f32(*x).to_bits(), bf16::from_bits(*g).is_nan()),
                };
                assert!(
                    *g == want || (x.is_nan() && nan),
                    "{} {h:?} {x:e}: {g:#06x} vs {want:#06x}",
                    r.cpu
                );
            }
        }
    }
}

/// The polynomial expansions of log, tanh and erf against libm, over their
/// ranges and special values, in f32 (relative 2e-6) and f64 (the same
/// polynomials: 2e-6 too, they are f32-accurate), on every CPU.
#[test]
fn log_tanh_erf_expansions_match_libm() {
    type Expand = fn(&mut KernelBuilder, Expr) -> Expr;
    let fns: [(&str, Expand, fn(f64) -> f64); 3] = [
        ("log", math::log, f64::ln),
        ("tanh", math::tanh, f64::tanh),
        ("erf", math::erf, libm::erf),
    ];
    for (name, expand, reference) in fns {
        for (d, lanes) in [(DType::F32, 4u16), (DType::F32, 3), (DType::F64, 2)] {
            let k = map2(name, d, d, lanes, |b, x, _| expand(b, x));
            let mut xs: Vec<f64> = match name {
                "log" => (0..3000)
                    .map(|i| 10f64.powf(-37.0 + i as f64 * 0.025))
                    .collect(),
                _ => (0..3000).map(|i| -12.0 + i as f64 * 0.008).collect(),
            };
            xs.extend([
                0.0, -0.0, 1.0, -1.0, 0.25, 0.29, 0.3, 0.31, 0.49, 0.5, 0.51, 1e-6, -1e-6, 2.0,
                30.0, -30.0,
            ]);
            xs.extend([f64::INFINITY, f64::NEG_INFINITY, f64::NAN]);
            if name == "log" && d == DType::F32 {
                xs.extend([1e-40, 1e-45, f32::MIN_POSITIVE as f64, 3.4e38]);
            }
            let input = if d == DType::F32 {
                to_bytes(&xs.iter().map(|&v| v as f32).collect::<Vec<_>>())
            } else {
                to_bytes(&xs)
            };
            let n = xs.len();
            let out = vec![0u8; n * size_of(d)];
            for r in run(&k, &[input.clone(), input.clone(), out], &[n as i64]) {
                let got: Vec<f64> = if d == DType::F32 {
                    from_bytes::<f32>(&r.bufs[2])
                        .into_iter()
                        .map(|v| v as f64)
                        .collect()
                } else {
                    from_bytes::<f64>(&r.bufs[2])
                };
                for (&x, &g) in xs.iter().zip(&got) {
                    let x = if d == DType::F32 { x as f32 as f64 } else { x };
                    let want = reference(x);
                    let want = if d == DType::F32 {
                        want as f32 as f64
                    } else {
                        want
                    };
                    // Absolute slack near zero crossings (log near 1).
                    let ok = rel_close(g, want, 2e-6) || (g - want).abs() < 1e-7;
                    assert!(
                        ok,
                        "{} {d} x{lanes}: {name}({x:e}) = {g:e}, expected {want:e}",
                        r.cpu
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// LLVM: errors, objects, cross targets
// ---------------------------------------------------------------------------

#[cfg(feature = "llvm")]
mod llvm {
    use super::*;
    use saturn_backends::cpu_llvm::{CodegenError as LlvmError, Llvm, Machine};

    fn llvm_err(k: Kernel) -> LlvmError {
        Llvm::host()
            .jit(&[k], &symbols(pf_direct))
            .expect_err("compiles")
    }

    #[test]
    fn errors_name_the_kernel_and_the_problem() {
        let mut b = KernelBuilder::new("halves");
        let x = b.input("x", DType::F16, 4i64);
        let y = b.output("y", DType::F16, 4i64);
        b.store(y, Expr::idx(0), Expr::load(x, Expr::idx(0)));
        let e = llvm_err(b.finish());
        assert!(
            matches!(&e, LlvmError::Unsupported { kernel, .. } if kernel == "halves"),
            "{e}"
        );
        assert!(e.to_string().contains("f16"), "{e}");

        let e = llvm_err(map2("mixed", DType::F32, DType::F32, 4, |_, a, _| {
            Expr::bin(BinOp::Add, a, Expr::f32(1.0))
        }));
        assert!(matches!(e, LlvmError::Invalid { .. }), "{e}");

        let mut b = KernelBuilder::new("scope");
        let y = b.output("y", DType::I64, 4i64);
        let mut inner = None;
        b.range("i", 4i64, |_, i| inner = Some(i));
        b.store(y, Expr::idx(0), inner.unwrap());
        let e = llvm_err(b.finish());
        assert!(e.to_string().contains("scope"), "{e}");

        let mut b = KernelBuilder::new("racy");
        let n = b.dim("n");
        let y = b.output("y", DType::I64, 1i64);
        let sum = b.decl("sum", Expr::idx(0));
        b.for_("i", 0, n, 1, LoopKind::Parallel, |b, i| {
            b.assign(sum, Expr::Var(sum) + i);
        });
        b.store(y, Expr::idx(0), Expr::Var(sum));
        let e = llvm_err(b.finish());
        assert!(e.to_string().contains("parallel"), "{e}");

        let k = map2("twice", DType::I32, DType::I32, 1, |_, a, _| a);
        let e = Llvm::host().jit(&[k.clone(), k], &[]).unwrap_err();
        assert!(matches!(e, LlvmError::Invalid { .. }), "{e}");
    }

    #[test]
    fn unresolved_imports_are_errors() {
        let mut b = KernelBuilder::new("calls_nothing");
        b.call("saturn_test_no_such_function", vec![Expr::idx(1)]);
        assert_eq!(
            llvm_err(b.finish()),
            LlvmError::Unresolved("saturn_test_no_such_function".into())
        );
        let mut b = KernelBuilder::new("par");
        let y = b.output("y", DType::I64, 4i64);
        b.for_("i", 0, 4, 1, LoopKind::Parallel, |b, i| {
            b.store(y, i.clone(), i)
        });
        let e = Llvm::host().jit(&[b.finish()], &[]).unwrap_err();
        assert_eq!(e, LlvmError::Unresolved(PARALLEL_FOR.into()));
    }

    #[test]
    fn jit_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<saturn_backends::cpu_llvm::LlvmJit>();
        let k = map2("add", DType::I64, DType::I64, 8, |_, a, b| {
            Expr::bin(BinOp::Add, a, b)
        });
        let m = Llvm::host().jit(&[k], &[]).unwrap();
        std::thread::scope(|s| {
            for t in 0..4i64 {
                let m = &m;
                s.spawn(move || {
                    let f = m.entry("add").unwrap();
                    let xs: Vec<i64> = (0..19).map(|i| i * t).collect();
                    let mut bufs = vec![to_bytes(&xs), to_bytes(&xs), vec![0; 19 * 8]];
                    let rt = Runtime {
                        calls: AtomicUsize::new(0),
                        chunks: AtomicUsize::new(0),
                    };
                    call(f, &mut bufs, &[19], &rt);
                    let got: Vec<i64> = from_bytes(&bufs[2]);
                    assert_eq!(got, xs.iter().map(|x| 2 * x).collect::<Vec<_>>());
                });
            }
        });
        assert!(m.entry("sub").is_none());
    }

    fn softplus() -> Kernel {
        let mut b = KernelBuilder::new("softplus");
        let n = b.dim("n");
        let x = b.input("x", DType::F32, n.clone());
        let y = b.output("y", DType::F32, n.clone());
        b.range("i", n, |b, i| {
            let e = Expr::Call("expf".into(), vec![Expr::load(x, i.clone())], Ty::F32);
            let l = Expr::Call("log1pf".into(), vec![e], Ty::F32);
            b.store(y, i, l);
        });
        b.finish()
    }

    #[test]
    fn emit_object_exports_prefixed_kernels() {
        use object::{Object, ObjectSymbol};
        let bytes = Llvm::host()
            .emit_object(&[parallel_kernel(false), softplus()], "saturn_m0_")
            .unwrap();
        let obj = object::File::parse(&*bytes).unwrap();
        assert_eq!(obj.kind(), object::ObjectKind::Relocatable);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(obj.architecture(), object::Architecture::X86_64);
        let find = |name: &str| obj.symbols().find(|s| s.name() == Ok(name));
        for name in ["saturn_m0_par", "saturn_m0_softplus"] {
            let s = find(name).unwrap_or_else(|| panic!("no symbol {name}"));
            assert!(s.is_definition() && s.is_global(), "{name} exported");
            assert_eq!(s.kind(), object::SymbolKind::Text);
        }
        for name in [PARALLEL_FOR, "expf", "log1pf"] {
            let s = find(name).unwrap_or_else(|| panic!("no import {name}"));
            assert!(s.is_undefined(), "{name} imported");
        }
        assert!(
            obj.symbols()
                .filter(|s| s.is_global() && s.is_definition())
                .all(|s| s
                    .name()
                    .is_ok_and(|n| !n.contains("parallel") && !n.contains("inner")))
        );
        let e = Machine::new("not-a-triple", None, None).unwrap_err();
        assert!(matches!(e, LlvmError::Target(_)), "{e}");
    }

    /// Code for AArch64 (NEON) from this machine: an AArch64 object whose
    /// relocations are AArch64's. It is not run.
    #[test]
    fn cross_compiles_for_aarch64() {
        use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags};
        let m = Machine::new("aarch64-unknown-linux-gnu", Some("neoverse-n1"), None).unwrap();
        assert_eq!(m.vector_bits(), 128);
        let add = map2("add", DType::F32, DType::F32, 4, |_, a, b| {
            Expr::bin(BinOp::Add, a, b)
        });
        let llvm = Llvm::for_machine(m);
        let bytes = llvm
            .emit_object(&[add, parallel_kernel(true), softplus()], "p_")
            .unwrap();
        let obj = object::File::parse(&*bytes).unwrap();
        assert_eq!(obj.architecture(), object::Architecture::Aarch64);
        assert!(
            obj.symbols()
                .any(|s| s.name() == Ok("p_add") && s.is_definition())
        );
        let mut relocs = 0;
        for sec in obj.sections() {
            for (_, r) in sec.relocations() {
                relocs += 1;
                match r.flags() {
                    RelocationFlags::Elf { r_type } => assert!(
                        (257..=1032).contains(&r_type),
                        "{r_type} is not an AArch64 ELF relocation"
                    ),
                    f => panic!("unexpected relocation {f:?}"),
                }
            }
        }
        assert!(relocs > 0, "calls of expf and the runtime are relocated");
        let asm = llvm
            .emit_asm(&[map2("fadd", DType::F32, DType::F32, 4, |_, a, b| {
                Expr::bin(BinOp::Add, a, b)
            })])
            .unwrap();
        assert!(asm.contains("fadd\tv"), "NEON vector add:\n{asm}");
        // Running it here is refused, not attempted.
        let e = llvm.jit(&[], &[]).unwrap_err();
        assert!(matches!(e, LlvmError::NotHost(_)), "{e}");
    }

    /// 512-bit Kernel IR vectors stay whole on an AVX-512 CPU: one `zmm`
    /// FMA, not two `ymm` halves.
    #[test]
    fn wide_vectors_use_wide_registers() {
        let m = Machine::new("x86_64-unknown-linux-gnu", Some("znver4"), None).unwrap();
        assert_eq!(m.vector_bits(), 512);
        let mut b = KernelBuilder::new("fma16");
        let x = b.input("x", DType::F32, 16i64);
        let y = b.output("y", DType::F32, 16i64);
        let v = Expr::load_vec(x, Expr::idx(0), 16, 1, None);
        b.store_vec(
            y,
            Expr::idx(0),
            Expr::mul_add(v.clone(), v.clone(), v),
            1,
            None,
        );
        let asm = Llvm::for_machine(m).emit_asm(&[b.finish()]).unwrap();
        assert!(asm.contains("zmm"), "{asm}");
        assert!(!asm.contains("ymm"), "{asm}");
        let m2 = Machine::new("x86_64-unknown-linux-gnu", Some("haswell"), None).unwrap();
        assert_eq!(m2.vector_bits(), 256);
        let m3 =
            Machine::new("x86_64-unknown-linux-gnu", Some("znver4"), Some("-avx512f")).unwrap();
        assert_eq!(m3.vector_bits(), 256);
    }
}
