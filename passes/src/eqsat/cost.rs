//! The cost model: roofline estimates against a target description.
//!
//! An op's time is the larger of the bytes it must move over the bandwidth
//! of the memory level that holds its data, and its flops over the
//! target's peak rate on the cores it can use, plus a fixed overhead per
//! kernel. Multi-pass algorithms (softmax) pay for every pass that goes
//! back to memory; a GEMM pays for the rows its tiling pads.

use std::fmt;
use std::ops::Add;

use saturn_ir::ops::*;
use saturn_ir::target::{Cache, Target};
use saturn_ir::{DType, Op, Shape, TensorType};

/// An estimated time in nanoseconds. Infinity (for what must never be
/// chosen) is a separate value that finite arithmetic cannot reach: sums
/// of finite costs saturate below it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost(u64);

impl Cost {
    pub const ZERO: Cost = Cost(0);
    pub const INFINITY: Cost = Cost(u64::MAX);
    const MAX_FINITE: u64 = u64::MAX - 1;

    /// A cost from a time in seconds.
    pub fn from_seconds(s: f64) -> Cost {
        if s.is_nan() || s < 0.0 {
            return Cost::INFINITY;
        }
        let ns = (s * 1e9).round();
        // `MAX_FINITE as f64` rounds up to 2^64, so compare before converting.
        if ns >= Cost::MAX_FINITE as f64 {
            Cost(Cost::MAX_FINITE)
        } else {
            Cost(ns as u64)
        }
    }

    pub fn seconds(self) -> f64 {
        self.0 as f64 * 1e-9
    }

    pub fn is_infinite(self) -> bool {
        self == Cost::INFINITY
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        if self.is_infinite() || other.is_infinite() {
            Cost::INFINITY
        } else {
            Cost(self.0.saturating_add(other.0).min(Cost::MAX_FINITE))
        }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::ZERO, |a, b| a + b)
    }
}

impl fmt::Debug for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_infinite() {
            return f.write_str("inf");
        }
        let s = self.seconds();
        if s >= 1.0 {
            write!(f, "{s:.3} s")
        } else if s >= 1e-3 {
            write!(f, "{:.3} ms", s * 1e3)
        } else {
            write!(f, "{:.3} us", s * 1e6)
        }
    }
}

/// How an estimate came about, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub cost: Cost,
    /// Bytes moved, counting every pass.
    pub bytes: f64,
    pub flops: f64,
    /// What limits it: "memory (L2)", "compute", "overhead" …
    pub bound: String,
}

/// Estimates what ops cost on a target.
pub trait CostModel {
    fn target(&self) -> &Target;
    /// The estimate for one op with the given input and output types.
    fn estimate(&self, op: &Op, inputs: &[Option<&TensorType>], outputs: &[TensorType])
    -> Estimate;
}

/// The roofline model of a [`Target`].
pub struct Roofline {
    pub target: Target,
}

/// Elements of a shape; unknown and symbolic dims count as 1 (the cost of
/// one instance of the dynamic dim).
fn numel(shape: &Shape) -> f64 {
    match shape.dims() {
        Some(d) => d.iter().map(|d| d.known().unwrap_or(1) as f64).product(),
        None => 1.0,
    }
}

fn elem_bytes(d: DType) -> f64 {
    if d == DType::Str {
        16.0
    } else {
        (d.bits() as f64 / 8.0).max(1.0 / 8.0).ceil().max(1.0)
    }
}

fn bytes_of(t: &TensorType) -> f64 {
    numel(&t.shape) * elem_bytes(t.dtype)
}

fn dim(t: &TensorType, i: isize) -> f64 {
    let Some(d) = t.dims() else { return 1.0 };
    let i = if i < 0 { d.len() as isize + i } else { i };
    d.get(i as usize).and_then(|d| d.known()).unwrap_or(1) as f64
}

/// Flops per output element of elementwise ops: transcendental ones cost
/// a polynomial.
fn elementwise_flops(op: &Op) -> f64 {
    match op {
        Op::Exp(_)
        | Op::Log(_)
        | Op::Tanh(_)
        | Op::Sigmoid(_)
        | Op::Erf(_)
        | Op::Gelu(_)
        | Op::Softplus(_)
        | Op::Mish(_)
        | Op::Swish(_)
        | Op::Elu(_)
        | Op::Selu(_)
        | Op::Celu(_)
        | Op::Sin(_)
        | Op::Cos(_)
        | Op::Tan(_)
        | Op::Pow(_) => 12.0,
        Op::Div(_) | Op::Sqrt(_) | Op::Reciprocal(_) => 4.0,
        _ => 1.0,
    }
}

/// Ops that only reinterpret their input (views in generated code).
fn is_view(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_)
            | Op::Flatten(_)
            | Op::Squeeze(_)
            | Op::Unsqueeze(_)
            | Op::Identity(_)
            | Op::Shape(_)
            | Op::Size(_)
    )
}

/// Rows of a conventional tiled GEMM's M tile: small M is padded up to it.
pub const GEMM_M_TILE: f64 = 64.0;

impl Roofline {
    pub fn new(target: Target) -> Roofline {
        Roofline { target }
    }

    /// Bandwidth for a working set of `bytes`: the smallest cache that
    /// holds it with room to spare (half its capacity: other data and
    /// associativity claim the rest; a quarter of the last level, which
    /// other cores and processes share: a 16 MiB softmax on a VM's 32 MiB
    /// L3 ran at DRAM speed), else main memory.
    fn bandwidth(&self, bytes: f64) -> (f64, String) {
        let last = self.target.caches.last().map(|c| c.level);
        let holds = |c: &&Cache| {
            let room = if Some(c.level) == last { 4.0 } else { 2.0 };
            c.bytes as f64 >= bytes * room
        };
        match self.target.caches.iter().find(holds) {
            Some(c) => (
                c.bandwidth * self.target.cores as f64,
                format!("L{}", c.level),
            ),
            None => (self.target.dram_bandwidth, "DRAM".into()),
        }
    }

    /// Time of moving `first` bytes once (from wherever the whole working
    /// set lives) and re-reading `again` bytes from wherever a re-read
    /// block of `block` bytes lives; with `flops` on `cores` cores.
    fn roofline(&self, first: f64, again: f64, block: f64, flops: f64, cores: f64) -> Estimate {
        let (bw_first, level_first) = self.bandwidth(first);
        let (bw_again, level_again) = self.bandwidth(block);
        let mem = first / bw_first + again / bw_again;
        let compute =
            flops / (self.target.peak_flops_f32 * cores.clamp(1.0, self.target.cores as f64));
        let overhead = self.target.kernel_overhead;
        let bound = if overhead > mem.max(compute) {
            "overhead".to_string()
        } else if mem >= compute {
            if again > 0.0 && level_again != level_first {
                format!("memory ({level_first}, re-reads from {level_again})")
            } else {
                format!("memory ({level_first})")
            }
        } else {
            "compute".to_string()
        };
        // Memory and arithmetic overlap, but not perfectly: a tenth of the
        // smaller one shows (which also orders algorithms that move the
        // same bytes by their arithmetic).
        Estimate {
            cost: Cost::from_seconds(mem.max(compute) + 0.1 * mem.min(compute) + overhead),
            bytes: first + again,
            flops,
            bound,
        }
    }

    fn softmax(
        &self,
        s: &Softmax,
        x: &TensorType,
        mask: Option<&TensorType>,
        y: &TensorType,
    ) -> Estimate {
        let rank = x.rank().unwrap_or(1) as isize;
        let axis = if s.axis < 0 {
            s.axis + rank as i64
        } else {
            s.axis
        };
        let n = dim(x, axis as isize);
        let total = numel(&x.shape);
        let size = elem_bytes(x.dtype);
        let mask_bytes = mask.map(bytes_of).unwrap_or(0.0);
        // (reads of the input, flops per element) of each algorithm: three
        // passes re-read the row for max, sum and output; two-pass and
        // online read it twice, at the price of more arithmetic.
        let (reads, flops_per) = match s.algorithm {
            SoftmaxAlgorithm::ThreePass => (3.0, 26.0),
            SoftmaxAlgorithm::TwoPass => (2.0, 34.0),
            SoftmaxAlgorithm::Online => (2.0, 40.0),
        };
        let first = total * size + mask_bytes + bytes_of(y);
        let again = (reads - 1.0) * (total * size + mask_bytes);
        let row = n * size;
        self.roofline(first, again, row, flops_per * total, total / n)
    }

    /// A GEMM of [M, K] × [K, N] (batch b) whose rows are padded to
    /// `m_pad`, that streams B `b_reads` times, on `cores` cores.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        b: f64,
        m: f64,
        k: f64,
        n: f64,
        m_pad: f64,
        b_reads: f64,
        extra: f64,
        cores: f64,
    ) -> Estimate {
        let padded = (m / m_pad).ceil() * m_pad;
        let flops = 2.0 * b * padded * k * n;
        let a_bytes = b * m * k * 4.0;
        let b_bytes = k * n * 4.0;
        let c_bytes = b * m * n * 4.0;
        let first = a_bytes + b_bytes + c_bytes + extra;
        let again = (b_reads - 1.0).max(0.0) * b_bytes;
        self.roofline(first, again, b_bytes, flops, cores)
    }

    fn matmul_like(&self, op: &Op, a: &TensorType, y: &TensorType) -> Estimate {
        let (m, k) = match op {
            Op::Gemm(g) if g.transA => (dim(a, 1), dim(a, 0)),
            _ => (dim(a, -2), dim(a, -1)),
        };
        let n = dim(y, -1);
        let batch = (numel(&y.shape) / (m * n).max(1.0)).max(1.0);
        let cores = self.target.cores as f64;
        match op {
            // Conventional tiled GEMM: M padded to its tile, B packed into
            // panels first (one more read and write of B).
            Op::MatMul(_) | Op::Gemm(_) => {
                let pack = 2.0 * k * n * 4.0;
                self.gemm(batch, m, k, n, GEMM_M_TILE, 1.0, pack, cores)
            }
            // Flat GEMM: M padded to m_pad; B streamed once per M tile;
            // N tiles (and K splits) spread over the cores.
            Op::FlatGemm(f) => {
                let m_tiles = (m / f.m_pad as f64).ceil();
                let parallel = (n / f.n_tile as f64).ceil() * f.k_split as f64;
                let mut e = self.gemm(
                    batch,
                    m,
                    k,
                    n,
                    f.m_pad as f64,
                    m_tiles,
                    0.0,
                    parallel.min(cores),
                );
                if !f.double_buffer {
                    // Without double buffering each B tile's load is exposed.
                    e.cost = e.cost
                        + Cost::from_seconds(
                            self.target.kernel_overhead * (n / f.n_tile as f64).ceil() * 0.01,
                        );
                }
                e
            }
            // GEMV: one row, B streamed once, columns split over the cores.
            Op::Gemv(_) => self.gemm(batch, 1.0, k, n, 1.0, 1.0, 0.0, cores),
            _ => unreachable!(),
        }
    }
}

impl CostModel for Roofline {
    fn target(&self) -> &Target {
        &self.target
    }

    fn estimate(
        &self,
        op: &Op,
        inputs: &[Option<&TensorType>],
        outputs: &[TensorType],
    ) -> Estimate {
        let input_bytes: f64 = inputs.iter().flatten().map(|t| bytes_of(t)).sum();
        let output_bytes: f64 = outputs.iter().map(bytes_of).sum();
        let out_elems: f64 = outputs.iter().map(|t| numel(&t.shape)).sum();
        let cores = self.target.cores as f64;
        if is_view(op) {
            return Estimate {
                cost: Cost::from_seconds(self.target.kernel_overhead * 0.05),
                bytes: 0.0,
                flops: 0.0,
                bound: "view".into(),
            };
        }
        let input = |i: usize| inputs.get(i).copied().flatten();
        match op {
            Op::Softmax(s) => {
                if let (Some(x), Some(y)) = (input(0), outputs.first()) {
                    return self.softmax(s, x, input(1), y);
                }
            }
            Op::MatMul(_) | Op::Gemm(_) | Op::FlatGemm(_) | Op::Gemv(_) => {
                if let (Some(a), Some(_), Some(y)) = (input(0), input(1), outputs.first()) {
                    return self.matmul_like(op, a, y);
                }
            }
            Op::Conv(_) => {
                if let (Some(w), Some(y)) = (input(1), outputs.first()) {
                    let per_out: f64 = w
                        .dims()
                        .map(|d| {
                            d[1..]
                                .iter()
                                .map(|x| x.known().unwrap_or(1) as f64)
                                .product()
                        })
                        .unwrap_or(1.0);
                    return self.roofline(
                        input_bytes + output_bytes,
                        0.0,
                        0.0,
                        2.0 * per_out * numel(&y.shape),
                        cores,
                    );
                }
            }
            Op::Attention(_) => {
                if let (Some(q), Some(k)) = (input(0), input(1)) {
                    // Q·Kᵀ and P·V, with the softmax in between; the scores
                    // never leave the cache.
                    let s_len = numel(&q.shape) / dim(q, -1).max(1.0);
                    let t_len = dim(k, -2);
                    let flops = 4.0 * s_len * t_len * dim(q, -1) + 30.0 * s_len * t_len;
                    return self.roofline(input_bytes + output_bytes, 0.0, 0.0, flops, cores);
                }
            }
            _ => {}
        }
        let flops = out_elems * elementwise_flops(op);
        self.roofline(input_bytes + output_bytes, 0.0, 0.0, flops, cores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax_cost(model: &Roofline, dims: &[usize], algorithm: SoftmaxAlgorithm) -> Cost {
        let t = TensorType::known(DType::F32, dims);
        let op = Op::Softmax(Softmax {
            axis: -1,
            scale: 1.0,
            algorithm,
        });
        model
            .estimate(&op, &[Some(&t)], std::slice::from_ref(&t))
            .cost
    }

    #[test]
    fn softmax_algorithm_follows_the_memory_hierarchy() {
        let model = Roofline::new(Target::named("x86-64-avx512").unwrap());
        let two = |d: &[usize]| softmax_cost(&model, d, SoftmaxAlgorithm::TwoPass);
        let three = |d: &[usize]| softmax_cost(&model, d, SoftmaxAlgorithm::ThreePass);
        // 32 MiB rows: beyond the last-level cache, every pass is a trip to memory.
        assert!(two(&[4, 8_388_608]) < three(&[4, 8_388_608]));
        // Small rows in cache: the three-pass form's lighter arithmetic wins.
        assert!(three(&[8, 128]) < two(&[8, 128]));
        // 16 MiB in and out on an AVX2 machine with a 32 MiB L3: beyond the
        // share of a shared last level counted on, so memory-bound, and
        // two-pass (measured 1.5× faster there).
        let mut t = Target::named("x86-64-avx2").unwrap();
        t.caches.last_mut().unwrap().bytes = 32 << 20;
        let model = Roofline::new(t);
        let two = softmax_cost(&model, &[64, 32768], SoftmaxAlgorithm::TwoPass);
        let three = softmax_cost(&model, &[64, 32768], SoftmaxAlgorithm::ThreePass);
        assert!(two < three, "{two:?} {three:?}");
    }

    #[test]
    fn small_m_prefers_flat_gemm_and_gemv() {
        let model = Roofline::new(Target::named("x86-64-avx512").unwrap());
        let cost = |m: usize, op: Op| {
            let a = TensorType::known(DType::F32, &[m, 4096]);
            let b = TensorType::known(DType::F32, &[4096, 4096]);
            let y = TensorType::known(DType::F32, &[m, 4096]);
            model.estimate(&op, &[Some(&a), Some(&b)], &[y]).cost
        };
        let flat = |m| {
            Op::FlatGemm(FlatGemm {
                m_pad: if m <= 8 { 8 } else { 16 },
                n_tile: 64,
                k_split: 1,
                double_buffer: true,
            })
        };
        assert!(cost(1, Op::Gemv(Gemv {})) < cost(1, Op::MatMul(MatMul {})));
        assert!(cost(1, Op::Gemv(Gemv {})) <= cost(1, flat(1)));
        for m in [4, 8, 16] {
            assert!(cost(m, flat(m)) < cost(m, Op::MatMul(MatMul {})), "M = {m}");
        }
        // A flat GEMM re-streams B per 8-row tile: wrong for large M.
        let flat64 = Op::FlatGemm(FlatGemm {
            m_pad: 8,
            n_tile: 64,
            k_split: 1,
            double_buffer: true,
        });
        assert!(cost(256, Op::MatMul(MatMul {})) < cost(256, flat64));
    }

    #[test]
    fn infinity_is_unreachable_by_sums() {
        let big = Cost(Cost::MAX_FINITE);
        assert!(!(big + big).is_infinite());
        assert!((big + Cost::INFINITY).is_infinite());
        assert!(Cost::from_seconds(f64::MAX) < Cost::INFINITY);
        assert!(Cost::from_seconds(f64::NAN).is_infinite());
        assert_eq!(Cost::from_seconds(1e-6).to_string(), "1.000 us");
    }
}
