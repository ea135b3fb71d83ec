//! Checking lowerings: a graph runs through the reference interpreter and,
//! lowered to Kernel IR, through the Kernel IR evaluator; the outputs must
//! agree and no node may fall back to the interpreter.
#![allow(dead_code)]

use saturn_ir::builder::GraphBuilder;
use saturn_ir::kernel::eval::eval_kernel;
use saturn_ir::target::Target;
use saturn_ir::{DType, Graph, Op, Tensor, TensorType};
use saturn_passes::lower::{self, LowerOptions, Lowered, exec};

/// A deterministic pseudo-random stream (tests need no entropy).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() as f64 / (1u64 << 53) as f64)
    }
    /// A tensor of `dtype` with values in [-range, range) (integers
    /// rounded; bools random).
    pub fn tensor(&mut self, dtype: DType, shape: &[usize], range: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let vals: Vec<f64> = (0..n).map(|_| self.uniform(-range, range)).collect();
        let t = Tensor::from_vec(shape.to_vec(), vals);
        let t = if dtype.is_float() {
            t
        } else {
            t.cast(DType::I64, true)
        };
        t.cast(dtype, true)
    }
}

/// A graph of one node over inputs of the given types; `consts` are
/// constant inputs given by position (they are not graph inputs).
pub fn single(op: impl Into<Op>, inputs: &[TensorType], consts: &[(usize, Tensor)]) -> Graph {
    let mut b = GraphBuilder::new("g");
    let n = inputs.len() + consts.len();
    let mut vals = Vec::new();
    let mut next = 0;
    for i in 0..n {
        if let Some((_, t)) = consts.iter().find(|(p, _)| *p == i) {
            vals.push(b.constant(format!("c{i}"), t.clone()).unwrap());
        } else {
            vals.push(b.input(format!("x{i}"), inputs[next].clone()).unwrap());
            next += 1;
        }
    }
    let op = op.into();
    let out = b.op(op, &vals).unwrap();
    b.finish(vec![out])
}

/// The vector widths every lowering is checked at: 128-bit (SSE, NEON,
/// Cranelift), 256-bit (AVX2) and 512-bit (AVX-512) targets. Schedules
/// asserted by tests are those of the first.
pub const TARGETS: [&str; 3] = ["x86-64-sse2", "x86-64-avx2", "x86-64-avx512"];

/// Lowers `g` for every target of [`TARGETS`], runs it through the
/// evaluator, and compares with the interpreter (rtol 1e-4, atol 1e-5 for
/// floats; exact otherwise). Fails if any node fell back. Returns the
/// lowering for the 128-bit target for further checks.
pub fn check(g: &Graph, inputs: Vec<Tensor>) -> Lowered {
    check_with(g, inputs, &LowerOptions::default(), 1e-4, 1e-5)
}

pub fn check_with(
    g: &Graph,
    inputs: Vec<Tensor>,
    opts: &LowerOptions,
    rtol: f64,
    atol: f64,
) -> Lowered {
    let mut first = None;
    for t in TARGETS {
        let target = Target::named(t).unwrap();
        let l = check_target(g, inputs.clone(), opts, rtol, atol, &target);
        first.get_or_insert(l);
        // AVX-512 code generators may have a scale instruction (ldexp).
        if target.vector_bits == 512 {
            let scalef = Target {
                has_ldexp: true,
                ..target
            };
            check_target(g, inputs.clone(), opts, rtol, atol, &scalef);
        }
    }
    first.expect("at least one target")
}

/// [`check_with`] for the one target called `target`.
pub fn check_for(
    g: &Graph,
    inputs: Vec<Tensor>,
    opts: &LowerOptions,
    rtol: f64,
    atol: f64,
    target: &str,
) -> Lowered {
    check_target(g, inputs, opts, rtol, atol, &Target::named(target).unwrap())
}

/// [`check_with`] for `target`.
pub fn check_target(
    g: &Graph,
    inputs: Vec<Tensor>,
    opts: &LowerOptions,
    rtol: f64,
    atol: f64,
    target: &Target,
) -> Lowered {
    let lowered = lower::lower(g, target, opts);
    let fb = lowered.fallbacks(g);
    assert!(fb.is_empty(), "fell back: {fb:?}");
    let want = saturn_ir::interp::run(g, inputs.clone()).expect("interpreter");
    let got = exec::run_lowered(g, &lowered, inputs, &mut |_, k, bufs| {
        eval_kernel(k, bufs, &[]).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| {
        panic!(
            "lowered run failed ({}): {e}\n{:#?}",
            target.name,
            lowered.kernels.first().map(|k| &k.name)
        )
    });
    assert_eq!(want.len(), got.len());
    for (i, (w, a)) in want.iter().zip(&got).enumerate() {
        assert_close(w, a, rtol, atol, &format!("output {i} ({})", target.name));
    }
    lowered
}

pub fn assert_close(w: &Tensor, a: &Tensor, rtol: f64, atol: f64, what: &str) {
    assert_eq!(w.dtype(), a.dtype(), "{what}: dtype");
    assert_eq!(w.shape(), a.shape(), "{what}: shape");
    let (wv, av) = (w.to_f64_vec(), a.to_f64_vec());
    for (j, (x, y)) in wv.iter().zip(&av).enumerate() {
        let ok = if w.dtype().is_float() {
            (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= atol + rtol * x.abs()
        } else {
            x == y
        };
        assert!(ok, "{what}: element {j}: expected {x}, got {y}");
    }
}
