//! Matrix products: Gemm, MatMul and their integer forms, Einsum, Det.
//!
//! f32 and f64 products go through `matrixmultiply` (f16 and bf16 through
//! its f64 kernel), so whole models run fast; integer products are plain
//! loops in i64 that wrap like ONNX integer math.

use std::borrow::Cow;

use half::{bf16, f16};

use super::kernels::*;
use super::reduce::checked_len;
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::ops::*;
use crate::tensor::{Data, Tensor, strides};
use crate::{invalid, unsupported};

fn one(t: Tensor) -> Result<Vec<Tensor>, OpError> {
    Ok(vec![t])
}

/// A matrix view: row stride and column stride, in elements.
#[derive(Clone, Copy)]
struct Layout {
    rs: usize,
    cs: usize,
}

impl Layout {
    fn rows(cols: usize) -> Layout {
        Layout { rs: cols, cs: 1 }
    }

    fn cols(rows: usize) -> Layout {
        Layout { rs: 1, cs: rows }
    }

    /// Whether an `r` × `c` matrix with this layout fits in `len` elements.
    fn fits(self, r: usize, c: usize, len: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < len
    }
}

/// `Σ x(p) · y(p)` for `p < k`, in four interleaved sums so the loop
/// pipelines.
fn dot(k: usize, x: impl Fn(usize) -> f64, y: impl Fn(usize) -> f64) -> f64 {
    let mut s = [0.0; 4];
    let full = k - k % 4;
    for p in (0..full).step_by(4) {
        for (l, s) in s.iter_mut().enumerate() {
            *s += x(p + l) * y(p + l);
        }
    }
    let tail: f64 = (full..k).map(|p| x(p) * y(p)).sum();
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

macro_rules! float_gemm {
    ($name:ident, $ty:ty, $kernel:path) => {
        /// `c ← alpha · a b + beta · c` for an `m` × `k` matrix `a`, a
        /// `k` × `n` matrix `b` and a row-major `m` × `n` matrix `c`.
        #[allow(clippy::too_many_arguments)]
        fn $name(
            (m, k, n): (usize, usize, usize),
            alpha: $ty,
            a: &[$ty],
            la: Layout,
            b: &[$ty],
            lb: Layout,
            beta: $ty,
            c: &mut [$ty],
        ) {
            assert!(la.fits(m, k, a.len()) && lb.fits(k, n, b.len()) && c.len() >= m * n);
            if m == 0 || n == 0 {
                return;
            }
            if k == 0 {
                c[..m * n].iter_mut().for_each(|x| *x *= beta);
                return;
            }
            if m == 1 {
                // A vector times a matrix (a batch-1 dense layer): one pass
                // over B beats packing it for the kernel.
                let mut acc = vec![0f64; n];
                if lb.cs == 1 {
                    for p in 0..k {
                        let x = a[p * la.cs] as f64;
                        let row = &b[p * lb.rs..][..n];
                        acc.iter_mut()
                            .zip(row)
                            .for_each(|(y, &w)| *y += x * w as f64);
                    }
                } else {
                    for (j, y) in acc.iter_mut().enumerate() {
                        *y = dot(
                            k,
                            |p| a[p * la.cs] as f64,
                            |p| b[p * lb.rs + j * lb.cs] as f64,
                        );
                    }
                }
                let (alpha, beta) = (alpha as f64, beta as f64);
                for (c, y) in c[..n].iter_mut().zip(acc) {
                    let prior = if beta == 0.0 { 0.0 } else { beta * *c as f64 };
                    *c = (alpha * y + prior) as $ty;
                }
                return;
            }
            // SAFETY: the assert above keeps every element the kernel reads
            // or writes inside `a`, `b` and `c`; `c` is row-major without
            // aliasing.
            unsafe {
                $kernel(
                    m,
                    k,
                    n,
                    alpha,
                    a.as_ptr(),
                    la.rs as isize,
                    la.cs as isize,
                    b.as_ptr(),
                    lb.rs as isize,
                    lb.cs as isize,
                    beta,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                )
            }
        }
    };
}
float_gemm!(sgemm, f32, matrixmultiply::sgemm);
float_gemm!(dgemm, f64, matrixmultiply::dgemm);

/// `c += a b` in wrapping i64 arithmetic (row-major `c`).
fn igemm(
    (m, k, n): (usize, usize, usize),
    a: &[i64],
    la: Layout,
    b: &[i64],
    lb: Layout,
    c: &mut [i64],
) {
    for i in 0..m {
        let row = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let x = a[i * la.rs + p * la.cs];
            if x == 0 {
                continue;
            }
            for (j, y) in row.iter_mut().enumerate() {
                *y = y.wrapping_add(x.wrapping_mul(b[p * lb.rs + j * lb.cs]));
            }
        }
    }
}

/// Integer elements as i64 (u64 keeps its bits, so wrapping math agrees).
fn int_vec(t: &Tensor) -> Vec<i64> {
    match t.data() {
        Data::U64(v) => v.iter().map(|&x| x as i64).collect(),
        _ => t.to_i64_vec(),
    }
}

/// A tensor of an integer dtype from i64 values, wrapped to its width.
fn from_i64(dtype: DType, shape: Vec<usize>, v: Vec<i64>) -> Tensor {
    let t = Tensor::from_vec(shape, v);
    if dtype == DType::I64 {
        t
    } else {
        t.cast(dtype, false)
    }
}

/// The numeric payload of a product's operand, converted for the kernel
/// of its dtype.
enum Operand<'a> {
    F32(&'a [f32]),
    F64(Cow<'a, [f64]>),
    Int(Vec<i64>),
}

fn operand<'a>(t: &'a Tensor, what: &str) -> Result<Operand<'a>, OpError> {
    Ok(match t.data() {
        Data::F32(v) => Operand::F32(v),
        Data::F64(v) => Operand::F64(Cow::Borrowed(v)),
        Data::F16(_) | Data::BF16(_) => Operand::F64(Cow::Owned(t.to_f64_vec())),
        _ if t.dtype().is_int() && !t.dtype().is_packed() => Operand::Int(int_vec(t)),
        _ => return unsupported!("{what} on {} tensors", t.dtype()),
    })
}

/// Rounds f64 results to a float dtype.
fn float_out(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor, OpError> {
    Ok(match dtype {
        DType::F16 => Tensor::from_vec(shape, v.into_iter().map(f16::from_f64).collect()),
        DType::BF16 => Tensor::from_vec(shape, v.into_iter().map(bf16::from_f64).collect()),
        _ => from_f64(dtype, shape, v)?,
    })
}

/// How a (batched, numpy-style) matrix product lines up its operands.
struct MatMulPlan {
    m: usize,
    k: usize,
    n: usize,
    /// For each output batch, the element offsets of its A and B matrices.
    batches: Vec<(usize, usize)>,
    out_shape: Vec<usize>,
}

impl MatMulPlan {
    fn new(sa: &[usize], sb: &[usize]) -> Result<MatMulPlan, OpError> {
        let (ra, rb) = (sa.len(), sb.len());
        if ra == 0 || rb == 0 {
            return invalid!("matrix product operands must have rank 1 or more");
        }
        let (m, k) = if ra == 1 {
            (1, sa[0])
        } else {
            (sa[ra - 2], sa[ra - 1])
        };
        let (kb, n) = if rb == 1 {
            (sb[0], 1)
        } else {
            (sb[rb - 2], sb[rb - 1])
        };
        if k != kb {
            return invalid!("matrix product of shapes {sa:?} and {sb:?}: inner dims differ");
        }
        let (ba, bb) = (&sa[..ra.saturating_sub(2)], &sb[..rb.saturating_sub(2)]);
        let batch = broadcast_shapes(&[ba, bb])?;
        checked_len(&batch)?;
        let mut out_shape = batch.clone();
        if ra >= 2 {
            out_shape.push(m);
        }
        if rb >= 2 {
            out_shape.push(n);
        }
        checked_len(&out_shape)?;
        let batches = broadcast_index(ba, &batch)
            .into_iter()
            .zip(broadcast_index(bb, &batch))
            .map(|(i, j)| (i * m * k, j * k * n))
            .collect();
        Ok(MatMulPlan {
            m,
            k,
            n,
            batches,
            out_shape,
        })
    }

    fn dims(&self) -> (usize, usize, usize) {
        (self.m, self.k, self.n)
    }

    /// Runs `kernel(a offset, b offset, output block)` for every batch.
    fn run<T: Copy + Default>(&self, mut kernel: impl FnMut(usize, usize, &mut [T])) -> Vec<T> {
        let block = self.m * self.n;
        let mut out = vec![T::default(); self.batches.len() * block];
        if block > 0 {
            for (c, &(oa, ob)) in out.chunks_exact_mut(block).zip(&self.batches) {
                kernel(oa, ob, c);
            }
        }
        out
    }
}

impl Eval for MatMul {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        if a.dtype() != b.dtype() {
            return invalid!("MatMul of {} and {}", a.dtype(), b.dtype());
        }
        let p = MatMulPlan::new(a.shape(), b.shape())?;
        let (_, k, n) = p.dims();
        let (la, lb) = (Layout::rows(k), Layout::rows(n));
        let shape = p.out_shape.clone();
        one(match (operand(a, "MatMul")?, operand(b, "MatMul")?) {
            (Operand::F32(x), Operand::F32(y)) => Tensor::from_vec(
                shape,
                p.run(|i, j, c| sgemm(p.dims(), 1.0, &x[i..], la, &y[j..], lb, 0.0, c)),
            ),
            (Operand::F64(x), Operand::F64(y)) => float_out(
                a.dtype(),
                shape,
                p.run(|i, j, c| dgemm(p.dims(), 1.0, &x[i..], la, &y[j..], lb, 0.0, c)),
            )?,
            (Operand::Int(x), Operand::Int(y)) => from_i64(
                a.dtype(),
                shape,
                p.run(|i, j, c| igemm(p.dims(), &x[i..], la, &y[j..], lb, c)),
            ),
            _ => return unsupported!("MatMul on {} tensors", a.dtype()),
        })
    }
}

/// A zero point of MatMulInteger as a function of (batch, row or column):
/// one value, one per row (column), or one per row (column) of each batch.
fn zero_point(
    t: Option<&Tensor>,
    per: usize,
    batches: usize,
    what: &str,
) -> Result<impl Fn(usize, usize) -> i64, OpError> {
    let v = t.map(int_vec).unwrap_or_else(|| vec![0]);
    let mode = match v.len() {
        1 => 0,
        l if l == per => 1,
        l if l == per * batches => 2,
        l => {
            return invalid!(
                "{what} has {l} values, expected 1, {per} or {}",
                per * batches
            );
        }
    };
    Ok(move |b: usize, i: usize| match mode {
        0 => v[0],
        1 => v[i],
        _ => v[b * per + i],
    })
}

impl Eval for MatMulInteger {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        for t in [a, b] {
            if !matches!(t.dtype(), DType::I8 | DType::U8) {
                return unsupported!("MatMulInteger on {} tensors", t.dtype());
            }
        }
        let p = MatMulPlan::new(a.shape(), b.shape())?;
        if p.batches.is_empty() || p.m * p.n == 0 {
            return one(Tensor::zeros(DType::I32, p.out_shape)
                .map_err(|e| OpError::Invalid(e.to_string()))?);
        }
        let (m, k, n) = p.dims();
        let (ba, bb) = (a.numel() / (m * k).max(1), b.numel() / (k * n).max(1));
        let za = zero_point(cx.opt_input(2), m, ba, "a_zero_point")?;
        let zb = zero_point(cx.opt_input(3), n, bb, "b_zero_point")?;
        let mut x = int_vec(a);
        let mut y = int_vec(b);
        for (i, v) in x.iter_mut().enumerate() {
            *v -= za(i / (m * k).max(1), (i / k.max(1)) % m.max(1));
        }
        for (i, v) in y.iter_mut().enumerate() {
            *v -= zb(i / (k * n).max(1), i % n.max(1));
        }
        let (la, lb) = (Layout::rows(k), Layout::rows(n));
        let out = p.run(|i, j, c| igemm(p.dims(), &x[i..], la, &y[j..], lb, c));
        one(from_i64(DType::I32, p.out_shape.clone(), out))
    }
}

impl Eval for Gemm {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (a, b) = (cx.input(0)?, cx.input(1)?);
        let dtype = a.dtype();
        if b.dtype() != dtype || cx.opt_input(2).is_some_and(|c| c.dtype() != dtype) {
            return invalid!("Gemm operands have different types");
        }
        let (&[ar, ac], &[br, bc]) = (a.shape(), b.shape()) else {
            return invalid!(
                "Gemm of shapes {:?} and {:?}: both must be matrices",
                a.shape(),
                b.shape()
            );
        };
        let (m, k, la) = if self.transA {
            (ac, ar, Layout::cols(ac))
        } else {
            (ar, ac, Layout::rows(ac))
        };
        let (kb, n, lb) = if self.transB {
            (bc, br, Layout::cols(bc))
        } else {
            (br, bc, Layout::rows(bc))
        };
        if k != kb {
            return invalid!(
                "Gemm of shapes {:?} and {:?}: inner dims differ",
                a.shape(),
                b.shape()
            );
        }
        checked_len(&[m, n])?;
        // C, broadcast to the output.
        let c = match cx.opt_input(2) {
            Some(c) => {
                if c.rank() > 2 || broadcast_shapes(&[c.shape(), &[m, n]])? != [m, n] {
                    return invalid!(
                        "Gemm's C of shape {:?} does not broadcast to [{m}, {n}]",
                        c.shape()
                    );
                }
                Some((c, broadcast_index(c.shape(), &[m, n])))
            }
            None => None,
        };
        let (alpha, beta) = (self.alpha as f64, self.beta as f64);
        let dims = (m, k, n);
        one(match (operand(a, "Gemm")?, operand(b, "Gemm")?) {
            (Operand::F32(x), Operand::F32(y)) => {
                let mut out = vec![0f32; m * n];
                if let Some((c, idx)) = &c {
                    let cv = c.as_slice::<f32>().unwrap_or_default();
                    for (o, &i) in out.iter_mut().zip(idx) {
                        *o = (beta * cv[i] as f64) as f32;
                    }
                }
                sgemm(dims, alpha as f32, x, la, y, lb, 1.0, &mut out);
                Tensor::from_vec(vec![m, n], out)
            }
            (Operand::F64(x), Operand::F64(y)) => {
                let mut out = vec![0f64; m * n];
                if let Some((c, idx)) = &c {
                    let cv = c.to_f64_vec();
                    for (o, &i) in out.iter_mut().zip(idx) {
                        *o = beta * cv[i];
                    }
                }
                dgemm(dims, alpha, &x, la, &y, lb, 1.0, &mut out);
                float_out(dtype, vec![m, n], out)?
            }
            (Operand::Int(x), Operand::Int(y)) => {
                let mut out = vec![0i64; m * n];
                igemm(dims, &x, la, &y, lb, &mut out);
                let cv = c.as_ref().map(|(c, _)| int_vec(c));
                for (j, o) in out.iter_mut().enumerate() {
                    let cj = match (&c, &cv) {
                        (Some((_, idx)), Some(cv)) => cv[idx[j]],
                        _ => 0,
                    };
                    *o = if alpha == 1.0 && beta == 1.0 {
                        o.wrapping_add(cj)
                    } else {
                        (alpha * *o as f64 + beta * cj as f64) as i64
                    };
                }
                from_i64(dtype, vec![m, n], out)
            }
            _ => return unsupported!("Gemm on {dtype} tensors"),
        })
    }
}

/// Values of einsum operands: floats in f64, integers in wrapping i64.
trait EinsumElem: Copy + Default {
    fn mul(self, o: Self) -> Self;
    fn add(self, o: Self) -> Self;
    fn one() -> Self;
}

impl EinsumElem for f64 {
    fn mul(self, o: f64) -> f64 {
        self * o
    }
    fn add(self, o: f64) -> f64 {
        self + o
    }
    fn one() -> f64 {
        1.0
    }
}

impl EinsumElem for i64 {
    fn mul(self, o: i64) -> i64 {
        self.wrapping_mul(o)
    }
    fn add(self, o: i64) -> i64 {
        self.wrapping_add(o)
    }
    fn one() -> i64 {
        1
    }
}

/// Einsum iterations Saturn will run (the product of every label's extent).
const EINSUM_LIMIT: u64 = 1 << 36;

/// Sums the products of the operands over every assignment of the labels:
/// the loop runs over the output labels, then the summed ones. Each
/// operand reads with one stride per label (strides of repeated labels add
/// up, which walks diagonals; broadcast unit dims read with stride 0).
fn einsum<T: EinsumElem>(
    ops: &[Vec<T>],
    op_strides: &[Vec<usize>],
    out_strides: &[usize],
    loop_dims: &[usize],
    out_len: usize,
) -> Vec<T> {
    let mut out = vec![T::default(); out_len];
    if loop_dims.contains(&0) {
        return out;
    }
    let rank = loop_dims.len();
    let mut idx = vec![0usize; rank];
    let mut offs = vec![0usize; ops.len()];
    let mut o = 0usize;
    loop {
        let mut p = T::one();
        for (v, &off) in ops.iter().zip(&offs) {
            p = p.mul(v[off]);
        }
        out[o] = out[o].add(p);
        // Advance the odometer.
        let mut d = rank;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            o += out_strides[d];
            for (off, st) in offs.iter_mut().zip(op_strides) {
                *off += st[d];
            }
            if idx[d] < loop_dims[d] {
                break;
            }
            o -= out_strides[d] * loop_dims[d];
            for (off, st) in offs.iter_mut().zip(op_strides) {
                *off -= st[d] * loop_dims[d];
            }
            idx[d] = 0;
        }
    }
}

impl Eval for Einsum {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let ts: Vec<&Tensor> = (0..cx.num_inputs())
            .map(|i| cx.input(i))
            .collect::<Result<_, _>>()?;
        let dtype = ts.first().map(|t| t.dtype()).unwrap_or(DType::F32);
        if ts.iter().any(|t| t.dtype() != dtype) {
            return invalid!("Einsum operands have different types");
        }
        let ranks: Vec<usize> = ts.iter().map(|t| t.rank()).collect();
        if ts.iter().any(|t| t.numel() == 0) {
            // Einsum sums products, so an empty operand gives zeros (or
            // an empty output); only the output's shape needs working out.
            let plan = EinsumPlan::new(&self.equation, &ranks)?;
            let mut size = vec![1usize; plan.num_labels];
            for (labels, t) in plan.inputs.iter().zip(&ts) {
                for (&l, &d) in labels.iter().zip(t.shape()) {
                    if size[l] == 1 || d == 0 {
                        size[l] = d;
                    }
                }
            }
            let out_shape: Vec<usize> = plan.output.iter().map(|&l| size[l]).collect();
            checked_len(&out_shape)?;
            return one(
                Tensor::zeros(dtype, out_shape).map_err(|e| OpError::Invalid(e.to_string()))?
            );
        }
        let plan = EinsumPlan::new(&self.equation, &ranks)?;
        // Each label's extent; unit dims broadcast.
        let mut size = vec![1usize; plan.num_labels];
        for (labels, t) in plan.inputs.iter().zip(&ts) {
            for (&l, &d) in labels.iter().zip(t.shape()) {
                if size[l] == 1 {
                    size[l] = d;
                } else if d != 1 && d != size[l] {
                    return invalid!(
                        "Einsum: extents {d} and {} of one subscript differ",
                        size[l]
                    );
                }
            }
        }
        // Loop order: output labels, then the summed ones.
        let mut order = plan.output.clone();
        order.extend((0..plan.num_labels).filter(|l| !plan.output.contains(l)));
        let loop_dims: Vec<usize> = order.iter().map(|&l| size[l]).collect();
        let total = loop_dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .filter(|&t| t <= EINSUM_LIMIT);
        if total.is_none() {
            return unsupported!("Einsum with more than {EINSUM_LIMIT} terms");
        }
        let out_shape: Vec<usize> = plan.output.iter().map(|&l| size[l]).collect();
        checked_len(&out_shape)?;
        let out_len = out_shape.iter().product();
        let mut out_strides = strides(&out_shape);
        out_strides.resize(order.len(), 0);
        let op_strides: Vec<Vec<usize>> = plan
            .inputs
            .iter()
            .zip(&ts)
            .map(|(labels, t)| {
                let st = t.strides();
                order
                    .iter()
                    .map(|&l| {
                        labels
                            .iter()
                            .zip(t.shape().iter().zip(&st))
                            .filter(|&(&x, (&d, _))| x == l && d != 1)
                            .map(|(_, (_, &s))| s)
                            .sum()
                    })
                    .collect()
            })
            .collect();
        if dtype.is_int() && !dtype.is_packed() {
            let vals: Vec<Vec<i64>> = ts.iter().map(|t| int_vec(t)).collect();
            let out = einsum(&vals, &op_strides, &out_strides, &loop_dims, out_len);
            return one(from_i64(dtype, out_shape, out));
        }
        if !dtype.is_float() || dtype.is_packed() {
            return unsupported!("Einsum on {dtype} tensors");
        }
        let vals: Vec<Vec<f64>> = ts.iter().map(|t| t.to_f64_vec()).collect();
        let out = einsum(&vals, &op_strides, &out_strides, &loop_dims, out_len);
        one(float_out(dtype, out_shape, out)?)
    }
}

/// Determinant of a row-major `n` × `n` matrix by LU decomposition with
/// partial pivoting.
fn det(mut a: Vec<f64>, n: usize) -> f64 {
    let mut d = 1.0;
    for c in 0..n {
        let pivot = (c..n)
            .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
            .unwrap_or(c);
        if a[pivot * n + c] == 0.0 {
            return 0.0;
        }
        if pivot != c {
            for j in 0..n {
                a.swap(c * n + j, pivot * n + j);
            }
            d = -d;
        }
        let p = a[c * n + c];
        d *= p;
        for r in c + 1..n {
            let f = a[r * n + c] / p;
            if f != 0.0 {
                for j in c + 1..n {
                    a[r * n + j] -= f * a[c * n + j];
                }
            }
        }
    }
    d
}

impl Eval for Det {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        if !x.dtype().is_float() {
            return unsupported!("Det on {} tensors", x.dtype());
        }
        let r = x.rank();
        if r < 2 || x.shape()[r - 1] != x.shape()[r - 2] {
            return invalid!(
                "Det of a tensor of shape {:?}: not square matrices",
                x.shape()
            );
        }
        let n = x.shape()[r - 1];
        let v = x.to_f64_vec();
        let out_shape = x.shape()[..r - 2].to_vec();
        let count = checked_len(&out_shape)?;
        if n == 0 {
            // The determinant of a 0 × 0 matrix is 1.
            return one(float_out(x.dtype(), out_shape, vec![1.0; count])?);
        }
        let out = (0..count)
            .map(|b| det(v[b * n * n..(b + 1) * n * n].to_vec(), n))
            .collect();
        one(float_out(x.dtype(), out_shape, out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::TensorType;

    fn eval(op: impl Into<Op>, inputs: &[&Tensor]) -> Result<Vec<Tensor>, OpError> {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        let types = vec![TensorType::unknown_rank(DType::F32); 1];
        super::super::eval_op(&op.into(), &inputs, &types)
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    #[test]
    fn matmul_broadcasts_batches_and_vectors() {
        // [2,1,2,2] x [3,2,1] -> [2,3,2,1]
        let a = f32s(&[2, 1, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let b = f32s(&[3, 2, 1], &[1., 0., 0., 1., 1., 1.]);
        let y = &eval(MatMul {}, &[&a, &b]).unwrap()[0];
        assert_eq!(y.shape(), &[2, 3, 2, 1]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[1., 3., 2., 4., 3., 7., 5., 7., 6., 8., 11., 15.]
        );
        // 1-D · 1-D is a scalar; [2] x [2,3] drops the row dim.
        let v = f32s(&[2], &[1., 2.]);
        assert_eq!(
            eval(MatMul {}, &[&v, &v]).unwrap()[0].shape(),
            &[] as &[usize]
        );
        let m = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let y = &eval(MatMul {}, &[&v, &m]).unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[9., 12., 15.]);
        assert!(eval(MatMul {}, &[&m, &m]).is_err());
    }

    #[test]
    fn integer_matmul_wraps() {
        let a = Tensor::from_vec(vec![1, 2], vec![100i8, 100]);
        let b = Tensor::from_vec(vec![2, 1], vec![2i8, 1]);
        let y = &eval(MatMul {}, &[&a, &b]).unwrap()[0];
        // 300 wraps to 44 in i8.
        assert_eq!(y.as_slice::<i8>().unwrap(), &[44]);
    }

    #[test]
    fn gemm_transposes_and_broadcasts_c() {
        let a = f32s(&[2, 2], &[1., 3., 2., 4.]); // A^T = [[1,2],[3,4]]
        let b = f32s(&[2, 2], &[1., 0., 1., 1.]); // B^T = [[1,1],[0,1]]
        let c = f32s(&[2], &[10., 20.]);
        let op = Gemm {
            alpha: 2.0,
            beta: 0.5,
            transA: true,
            transB: true,
        };
        let y = &eval(op, &[&a, &b, &c]).unwrap()[0];
        // A^T B^T = [[1,3],[3,7]]; 2·that + 0.5·C.
        assert_eq!(y.as_slice::<f32>().unwrap(), &[7., 16., 11., 24.]);
    }

    #[test]
    fn matmul_integer_subtracts_zero_points() {
        let a = Tensor::from_vec(vec![2, 2], vec![10u8, 11, 12, 13]);
        let b = Tensor::from_vec(vec![2, 1], vec![1u8, 2]);
        let za = Tensor::from_vec(vec![2], vec![10u8, 12]); // per row
        let zb = Tensor::scalar(1u8);
        let y = &eval(MatMulInteger {}, &[&a, &b, &za, &zb]).unwrap()[0];
        // rows [0,1] and [0,1] times [0,1]^T
        assert_eq!(y.as_slice::<i32>().unwrap(), &[1, 1]);
    }

    #[test]
    fn einsum_diagonal_trace_and_outer() {
        let x = f32s(&[2, 2], &[1., 2., 3., 4.]);
        let e = |eq: &str, ins: &[&Tensor]| {
            let op = Einsum {
                equation: eq.into(),
            };
            eval(op, ins).unwrap().remove(0)
        };
        assert_eq!(e("ii", &[&x]).as_slice::<f32>().unwrap(), &[5.]);
        assert_eq!(e("ii->i", &[&x]).as_slice::<f32>().unwrap(), &[1., 4.]);
        assert_eq!(
            e("ij->ji", &[&x]).as_slice::<f32>().unwrap(),
            &[1., 3., 2., 4.]
        );
        let v = f32s(&[2], &[1., 2.]);
        let o = e("i,j", &[&v, &v]);
        assert_eq!(o.shape(), &[2, 2]);
        assert_eq!(o.as_slice::<f32>().unwrap(), &[1., 2., 2., 4.]);
        // Broadcast ellipsis: [2,2] rows times a [2] vector.
        let o = e("...i,...i->...", &[&x, &v]);
        assert_eq!(o.as_slice::<f32>().unwrap(), &[5., 11.]);
    }

    #[test]
    fn determinants() {
        let x = f32s(&[2, 2, 2], &[1., 2., 3., 4., 0., 1., 1., 0.]);
        let y = &eval(Det {}, &[&x]).unwrap()[0];
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-2., -1.]);
        assert_eq!(det(vec![2., 0., 0., 0., 3., 0., 0., 0., 4.], 3), 24.0);
        assert_eq!(det(vec![], 0), 1.0);
        let empty = f32s(&[2, 0, 0], &[]);
        assert_eq!(eval(Det {}, &[&empty]).unwrap()[0].to_f64_vec(), [1., 1.]);
    }

    #[test]
    fn empty_products() {
        // A zero-length inner dim sums nothing: zeros.
        let a = f32s(&[2, 0], &[]);
        let b = f32s(&[0, 3], &[]);
        let y = &eval(MatMul {}, &[&a, &b]).unwrap()[0];
        assert_eq!((y.shape(), y.to_f64_vec()), (&[2, 3][..], vec![0.; 6]));
        let e = Einsum {
            equation: "ij,jk->ik".into(),
        };
        assert_eq!(eval(e, &[&a, &b]).unwrap()[0].to_f64_vec(), vec![0.; 6]);
        let ai = Tensor::from_vec(vec![2, 0], Vec::<u8>::new());
        let bi = Tensor::from_vec(vec![0, 1], Vec::<u8>::new());
        let y = &eval(MatMulInteger {}, &[&ai, &bi]).unwrap()[0];
        assert_eq!(y.as_slice::<i32>().unwrap(), &[0, 0]);
    }
}
