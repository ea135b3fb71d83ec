//! Matrix products: Gemm, MatMul and their integer forms, Saturn's
//! FlatGemm and Gemv, Einsum, Det.
//!
//! f32 and f64 products go through `matrixmultiply` (f16 and bf16 through
//! its f64 kernel), so whole models run fast; integer products are plain
//! loops in i64 that wrap like ONNX integer math. FlatGemm and Gemv run
//! the schedule they name, in f64.

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

/// The operands of FlatGemm and Gemv, read as f64: A `[..., M, K]`, a
/// matrix B `[K, N]`, and the output shape `[..., M, N]` (onto which the
/// optional bias, input 2, broadcasts).
struct SmallM {
    dtype: DType,
    batches: usize,
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    out_shape: Vec<usize>,
}

fn small_m(cx: &EvalCx, what: &str) -> Result<SmallM, OpError> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    let dtype = a.dtype();
    if !matches!(dtype, DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
        return unsupported!("{what} on {dtype} tensors");
    }
    if b.dtype() != dtype || cx.opt_input(2).is_some_and(|c| c.dtype() != dtype) {
        return invalid!("{what} operands have different types");
    }
    let (sa, r) = (a.shape(), a.rank());
    let &[kb, n] = b.shape() else {
        return invalid!("{what}'s B must be a matrix, found shape {:?}", b.shape());
    };
    if r < 2 {
        return invalid!("{what}'s A must have rank 2 or more, found shape {sa:?}");
    }
    let (m, k) = (sa[r - 2], sa[r - 1]);
    if k != kb {
        return invalid!(
            "{what} of shapes {sa:?} and {:?}: inner dims differ",
            b.shape()
        );
    }
    let mut out_shape = sa[..r - 2].to_vec();
    out_shape.extend([m, n]);
    checked_len(&out_shape)?;
    if let Some(c) = cx.opt_input(2) {
        check_broadcast_onto(c.shape(), &out_shape, &format!("{what}'s bias"))?;
    }
    Ok(SmallM {
        dtype,
        batches: sa[..r - 2].iter().product(),
        m,
        k,
        n,
        a: a.to_f64_vec(),
        b: b.to_f64_vec(),
        out_shape,
    })
}

impl SmallM {
    /// Adds the bias (input 2, if any) to the output `y`, then rounds it
    /// to the operands' type.
    fn finish(self, cx: &EvalCx, mut y: Vec<f64>) -> Result<Vec<Tensor>, OpError> {
        if let Some(c) = cx.opt_input(2) {
            let cv = c.to_f64_vec();
            let st = broadcast_strides(c.shape(), &self.out_shape);
            let mut out = y.iter_mut();
            for_each_offset(&self.out_shape, &st, |o| {
                if let Some(y) = out.next() {
                    *y += cv[o];
                }
            });
        }
        one(float_out(self.dtype, self.out_shape, y)?)
    }
}

/// How FlatGemm walks one `m × k` by `k × n` product.
struct FlatSchedule {
    m_pad: usize,
    n_tile: usize,
    k_split: usize,
    double_buffer: bool,
}

impl FlatSchedule {
    /// M rounded up to a multiple of `m_pad`, and the number of K chunks
    /// (`k_split`, but no more chunks than K has elements, and at least
    /// one), checked against the sizes of the buffers they imply.
    fn sizes(&self, m: usize, k: usize, n: usize) -> Result<(usize, usize), OpError> {
        let mp = m
            .div_ceil(self.m_pad)
            .checked_mul(self.m_pad)
            .ok_or_else(|| {
                OpError::Invalid(format!("{m} rows padded to m_pad = {}", self.m_pad))
            })?;
        let chunks = self.k_split.min(k).max(1);
        let tile = self.n_tile.min(n);
        checked_len(&[mp, k])?;
        checked_len(&[mp, n])?;
        checked_len(&[mp, tile])?;
        checked_len(&[2, k, tile])?;
        Ok((mp, chunks))
    }

    /// `y = a · b` for row-major `a` (`m × k`), `b` (`k × n`) and `y`
    /// (`m × n`), as FlashDecoding++'s flat GEMM runs it: A padded with
    /// zero rows to `mp` rows (a multiple of `m_pad`); N walked in tiles
    /// of `n_tile` columns; in each tile, K split into `chunks`
    /// contiguous ranges (chunk c is `c·K/chunks .. (c+1)·K/chunks`) whose
    /// partial sums are computed separately and then reduced in order; with `double_buffer`, each B tile copied
    /// into one of two alternating buffers (the next one loaded before
    /// the current one is used, as its load would overlap the compute on
    /// a GPU) and read from there. The padding rows are computed like the
    /// others and trimmed at the end.
    fn run(
        &self,
        a: &[f64],
        b: &[f64],
        (m, k, n): (usize, usize, usize),
        sizes: (usize, usize),
        y: &mut [f64],
    ) {
        let (mp, chunks) = sizes;
        let mut ap = vec![0.0; mp * k];
        ap[..m * k].copy_from_slice(&a[..m * k]);
        let mut yp = vec![0.0; mp * n];
        let tiles = n.div_ceil(self.n_tile);
        let width = |t: usize| self.n_tile.min(n - t * self.n_tile);
        let load = |buf: &mut Vec<f64>, t: usize| {
            let (j0, w) = (t * self.n_tile, width(t));
            buf.clear();
            for p in 0..k {
                buf.extend_from_slice(&b[p * n + j0..][..w]);
            }
        };
        let mut bufs = [Vec::new(), Vec::new()];
        if self.double_buffer && tiles > 0 {
            load(&mut bufs[0], 0);
        }
        let mut partial = vec![0.0; mp * self.n_tile.min(n)];
        for t in 0..tiles {
            let (j0, w) = (t * self.n_tile, width(t));
            if self.double_buffer && t + 1 < tiles {
                load(&mut bufs[(t + 1) % 2], t + 1);
            }
            // Row p of the B tile is src[off + p·stride ..][..w].
            let (src, off, stride) = if self.double_buffer {
                (&bufs[t % 2][..], 0, w)
            } else {
                (b, j0, n)
            };
            // Split K: each chunk's partial sums from zero (as a split-K
            // block computes them), then reduced into the output tile in
            // chunk order.
            let partial = &mut partial[..mp * w];
            for c in 0..chunks {
                let (lo, hi) = (c * k / chunks, (c + 1) * k / chunks);
                partial.fill(0.0);
                for (i, acc) in partial.chunks_exact_mut(w).enumerate() {
                    for p in lo..hi {
                        let x = ap[i * k + p];
                        let row = &src[off + p * stride..][..w];
                        acc.iter_mut().zip(row).for_each(|(s, &v)| *s += x * v);
                    }
                }
                for (i, part) in partial.chunks_exact(w).enumerate() {
                    let out = &mut yp[i * n + j0..][..w];
                    out.iter_mut().zip(part).for_each(|(o, &s)| *o += s);
                }
            }
        }
        y.copy_from_slice(&yp[..m * n]);
    }
}

impl Eval for FlatGemm {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let (m_pad, n_tile, k_split) = self.tiling()?;
        let s = FlatSchedule {
            m_pad,
            n_tile,
            k_split,
            double_buffer: self.double_buffer,
        };
        let p = small_m(cx, "FlatGemm")?;
        let (m, k, n) = (p.m, p.k, p.n);
        let sizes = s.sizes(m, k, n)?;
        let mut y = vec![0.0; p.batches * m * n];
        if m * n > 0 {
            for (i, y) in y.chunks_exact_mut(m * n).enumerate() {
                s.run(&p.a[i * m * k..], &p.b, (m, k, n), sizes, y);
            }
        }
        p.finish(cx, y)
    }
}

impl Eval for Gemv {
    /// Per batch, `y[j] = Σ_p x[p] · B[p, j]`: B streams by rows, each row
    /// adding its term to every column's dot product, as a memory-bound
    /// vector-times-matrix kernel reads it.
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let p = small_m(cx, "Gemv")?;
        if p.m != 1 {
            return invalid!("Gemv of {} rows: M must be 1", p.m);
        }
        let (k, n) = (p.k, p.n);
        let mut y = vec![0.0; p.batches * n];
        for (i, &x) in p.a.iter().enumerate() {
            let (batch, row) = (i / k, i % k);
            let out = &mut y[batch * n..][..n];
            let brow = &p.b[row * n..][..n];
            out.iter_mut().zip(brow).for_each(|(y, &w)| *y += x * w);
        }
        p.finish(cx, y)
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

#[cfg(test)]
mod small_m_tests {
    use super::*;
    use crate::shape::TensorType;

    /// splitmix64: reproducible random shapes and values.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// In `lo..=hi`.
        fn int(&mut self, lo: usize, hi: usize) -> usize {
            lo + (self.next() % (hi - lo + 1) as u64) as usize
        }

        fn vec(&mut self, n: usize) -> Vec<f64> {
            (0..n)
                .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0)
                .collect()
        }
    }

    fn eval(op: impl Into<Op>, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        let types = [TensorType::unknown_rank(DType::F32)];
        Ok(super::super::eval_op(&op.into(), &inputs, &types)?.remove(0))
    }

    fn flat(m_pad: i64, n_tile: i64, k_split: i64, double_buffer: bool) -> FlatGemm {
        FlatGemm {
            m_pad,
            n_tile,
            k_split,
            double_buffer,
        }
    }

    /// `a · b (+ c)` by the definition, in f64: for every output element
    /// of `[batch..., m, n]`, the sum over k, plus C at the element's
    /// broadcast position.
    fn reference(a: &Tensor, b: &Tensor, c: Option<&Tensor>) -> Vec<f64> {
        let (sa, r) = (a.shape(), a.rank());
        let (m, k, n) = (sa[r - 2], sa[r - 1], b.shape()[1]);
        let (av, bv) = (a.to_f64_vec(), b.to_f64_vec());
        let mut out_shape = sa[..r - 2].to_vec();
        out_shape.extend([m, n]);
        let len: usize = out_shape.iter().product();
        (0..len)
            .map(|o| {
                let (batch, i, j) = (o / (m * n), o / n % m, o % n);
                let dot: f64 = (0..k)
                    .map(|p| av[(batch * m + i) * k + p] * bv[p * n + j])
                    .sum();
                let bias = c.map_or(0.0, |c| {
                    let idx = unravel(o, &out_shape);
                    let cs = c.shape();
                    let off = out_shape.len() - cs.len();
                    let ci = cs.iter().enumerate().fold(0, |acc, (d, &e)| {
                        acc * e + if e == 1 { 0 } else { idx[off + d] }
                    });
                    c.to_f64_vec()[ci]
                });
                dot + bias
            })
            .collect()
    }

    fn assert_near(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}: [{i}] {g} vs {w}"
            );
        }
    }

    /// A random bias shape that broadcasts onto `out`.
    fn bias_shape(rng: &mut Rng, out: &[usize]) -> Vec<usize> {
        let rank = rng.int(0, out.len());
        out[out.len() - rank..]
            .iter()
            .map(|&d| if rng.int(0, 2) == 0 { 1 } else { d })
            .collect()
    }

    #[test]
    fn flat_gemm_matches_matmul_on_random_shapes() {
        let mut rng = Rng(11);
        for case in 0..300 {
            let batch: Vec<usize> = (0..rng.int(0, 2)).map(|_| rng.int(1, 3)).collect();
            let (m, k, n) = (rng.int(1, 20), rng.int(0, 40), rng.int(1, 150));
            let op = flat(
                rng.int(1, 9) as i64,
                rng.int(1, 70) as i64,
                rng.int(1, 7) as i64,
                rng.int(0, 1) == 1,
            );
            let mut sa = batch.clone();
            sa.extend([m, k]);
            let mut out = batch.clone();
            out.extend([m, n]);
            let a = Tensor::from_vec(sa.clone(), rng.vec(sa.iter().product()));
            let b = Tensor::from_vec(vec![k, n], rng.vec(k * n));
            let cs = bias_shape(&mut rng, &out);
            let c = Tensor::from_vec(cs.clone(), rng.vec(cs.iter().product()));
            let what = format!("case {case}: A {sa:?}, B [{k}, {n}], C {cs:?}, {op:?}");
            // Without the bias: equal to matmul.
            let y = eval(op.clone(), &[&a, &b]).unwrap();
            let mm = eval(MatMul {}, &[&a, &b]).unwrap();
            assert_eq!(y.shape(), mm.shape(), "{what}");
            assert_near(&y.to_f64_vec(), &mm.to_f64_vec(), 1e-13, &what);
            assert_near(&y.to_f64_vec(), &reference(&a, &b, None), 1e-13, &what);
            // With it: matmul plus the bias.
            let y = eval(op, &[&a, &b, &c]).unwrap();
            assert_eq!(y.shape(), &out[..], "{what}");
            assert_near(&y.to_f64_vec(), &reference(&a, &b, Some(&c)), 1e-13, &what);
        }
    }

    #[test]
    fn gemv_matches_matmul_on_random_shapes() {
        let mut rng = Rng(12);
        for case in 0..100 {
            let batch: Vec<usize> = (0..rng.int(0, 3)).map(|_| rng.int(1, 3)).collect();
            let (k, n) = (rng.int(0, 50), rng.int(1, 70));
            let mut sa = batch.clone();
            sa.extend([1, k]);
            let mut out = batch.clone();
            out.extend([1, n]);
            let a = Tensor::from_vec(sa.clone(), rng.vec(sa.iter().product()));
            let b = Tensor::from_vec(vec![k, n], rng.vec(k * n));
            let cs = bias_shape(&mut rng, &out);
            let c = Tensor::from_vec(cs.clone(), rng.vec(cs.iter().product()));
            let what = format!("case {case}: A {sa:?}, B [{k}, {n}], C {cs:?}");
            let y = eval(Gemv {}, &[&a, &b]).unwrap();
            let mm = eval(MatMul {}, &[&a, &b]).unwrap();
            assert_eq!(y.shape(), mm.shape(), "{what}");
            assert_near(&y.to_f64_vec(), &mm.to_f64_vec(), 1e-13, &what);
            let y = eval(Gemv {}, &[&a, &b, &c]).unwrap();
            assert_eq!(y.shape(), &out[..], "{what}");
            assert_near(&y.to_f64_vec(), &reference(&a, &b, Some(&c)), 1e-13, &what);
        }
    }

    #[test]
    fn every_float_type() {
        let mut rng = Rng(13);
        // Values on a 1/8 grid: exact in every type, and so are the
        // products and their sums in f64.
        let grid = |rng: &mut Rng, n: usize| -> Vec<f64> {
            (0..n)
                .map(|_| (rng.int(0, 32) as f64 - 16.0) / 8.0)
                .collect()
        };
        let (m, k, n) = (3, 21, 37);
        let a = Tensor::from_vec(vec![2, m, k], grid(&mut rng, 2 * m * k));
        let b = Tensor::from_vec(vec![k, n], grid(&mut rng, k * n));
        let c = Tensor::from_vec(vec![n], grid(&mut rng, n));
        let a1 = Tensor::from_vec(vec![2, 1, k], grid(&mut rng, 2 * k));
        let want = reference(&a, &b, Some(&c));
        let want1 = reference(&a1, &b, Some(&c));
        for dtype in [DType::F16, DType::BF16, DType::F32, DType::F64] {
            let [a, a1, b, c] = [&a, &a1, &b, &c].map(|t| t.cast(dtype, false));
            let y = eval(flat(2, 16, 3, true), &[&a, &b, &c]).unwrap();
            assert_eq!(y.dtype(), dtype);
            // The exact result, rounded once to the type.
            let round = |v: &[f64]| {
                Tensor::from_vec(vec![v.len()], v.to_vec())
                    .cast(dtype, false)
                    .to_f64_vec()
            };
            assert_eq!(y.to_f64_vec(), round(&want), "{dtype}");
            let y = eval(Gemv {}, &[&a1, &b, &c]).unwrap();
            assert_eq!(y.dtype(), dtype);
            assert_eq!(y.to_f64_vec(), round(&want1), "{dtype}");
        }
        let ints = Tensor::from_vec(vec![1, 2], vec![1i32, 2]);
        let bi = Tensor::from_vec(vec![2, 1], vec![1i32, 2]);
        assert!(eval(flat(8, 64, 1, false), &[&ints, &bi]).is_err());
        assert!(eval(Gemv {}, &[&ints, &bi]).is_err());
    }

    #[test]
    fn k_split_reduces_separate_partial_sums() {
        // One output, K = 4: A = [1, 1, 1, 1], B's column [1, 2^53, 1, -2^53].
        // In order, 1 + 2^53 rounds to 2^53 (a tie, to even), so does
        // adding the next 1, and the sum ends at 0. Split in two, the
        // second half is 1 - 2^53 exactly, and (2^53) + (1 - 2^53) = 1.
        let big = 2f64.powi(53);
        let a = Tensor::from_vec(vec![1, 4], vec![1.0f64; 4]);
        let b = Tensor::from_vec(vec![4, 1], vec![1.0, big, 1.0, -big]);
        let run = |k_split, double_buffer| {
            eval(flat(8, 64, k_split, double_buffer), &[&a, &b])
                .unwrap()
                .to_f64_vec()
        };
        assert_eq!(run(1, false), [0.0]);
        assert_eq!(run(2, true), [1.0]);
        // One element per chunk: partials 1, 2^53, 1, -2^53, reduced in
        // order as above.
        assert_eq!(run(4, false), [0.0]);
        // More chunks than K has elements: one per element.
        assert_eq!(run(9, false), [0.0]);
    }

    #[test]
    fn special_values_and_empty_operands() {
        // NaN and infinities reach the output as in a plain product
        // (padding rows are zeros, but they are trimmed).
        let a = Tensor::from_vec(vec![1, 2], vec![f64::INFINITY, 1.0]);
        let b = Tensor::from_vec(vec![2, 2], vec![0.0, 1.0, 1.0, f64::NAN]);
        let y = eval(flat(8, 1, 2, true), &[&a, &b]).unwrap().to_f64_vec();
        assert!(y[0].is_nan() && y[1].is_nan());
        let y = eval(Gemv {}, &[&a, &b]).unwrap().to_f64_vec();
        assert!(y[0].is_nan() && y[1].is_nan());
        // K = 0: zeros plus the bias; M = 0 or N = 0: empty.
        let a0 = Tensor::from_vec(vec![2, 3, 0], Vec::<f32>::new());
        let b0 = Tensor::from_vec(vec![0, 4], Vec::<f32>::new());
        let c = Tensor::from_vec(vec![4], vec![1f32, 2., 3., 4.]);
        let y = eval(flat(8, 3, 4, true), &[&a0, &b0, &c]).unwrap();
        assert_eq!(y.shape(), &[2, 3, 4]);
        assert_eq!(y.to_f64_vec(), [1., 2., 3., 4.].repeat(6));
        let a1 = Tensor::from_vec(vec![2, 1, 0], Vec::<f32>::new());
        let y = eval(Gemv {}, &[&a1, &b0, &c]).unwrap();
        assert_eq!(y.to_f64_vec(), [1., 2., 3., 4.].repeat(2));
        let am = Tensor::from_vec(vec![0, 5], Vec::<f32>::new());
        let b5 = Tensor::from_vec(vec![5, 2], vec![0f32; 10]);
        assert_eq!(
            eval(flat(8, 64, 1, false), &[&am, &b5]).unwrap().shape(),
            &[0, 2]
        );
        let bn = Tensor::from_vec(vec![5, 0], Vec::<f32>::new());
        let a5 = Tensor::from_vec(vec![1, 5], vec![0f32; 5]);
        assert_eq!(
            eval(flat(8, 64, 1, true), &[&a5, &bn]).unwrap().shape(),
            &[1, 0]
        );
        assert_eq!(eval(Gemv {}, &[&a5, &bn]).unwrap().shape(), &[1, 0]);
    }

    #[test]
    fn bad_operands_and_schedules_are_errors() {
        let a = Tensor::from_vec(vec![2, 3], vec![0f32; 6]);
        let b = Tensor::from_vec(vec![3, 4], vec![0f32; 12]);
        let ok = flat(8, 64, 1, false);
        assert!(eval(ok.clone(), &[&a, &b]).is_ok());
        for bad in [
            flat(0, 64, 1, false),
            flat(8, 0, 1, true),
            flat(8, 64, -2, false),
        ] {
            assert!(eval(bad, &[&a, &b]).is_err());
        }
        // m_pad so large that the padded A cannot exist.
        assert!(eval(flat(i64::MAX, 64, 1, false), &[&a, &b]).is_err());
        // Huge tiles and splits are fine: one tile, one chunk per k.
        assert!(eval(flat(1, i64::MAX, i64::MAX, true), &[&a, &b]).is_ok());
        let v = Tensor::from_vec(vec![3], vec![0f32; 3]);
        let b3 = Tensor::from_vec(vec![1, 3, 4], vec![0f32; 12]);
        let b5 = Tensor::from_vec(vec![5, 4], vec![0f32; 20]);
        let c = Tensor::from_vec(vec![3, 4], vec![0f32; 12]);
        let c3 = Tensor::from_vec(vec![1, 2, 4], vec![0f32; 8]);
        let b64 = Tensor::from_vec(vec![3, 4], vec![0f64; 12]);
        for inputs in [
            &[&v, &b][..],
            &[&a, &b3],
            &[&a, &b5],
            &[&a, &b, &c],
            &[&a, &b, &c3],
            &[&a, &b64],
        ] {
            assert!(eval(ok.clone(), inputs).is_err());
            assert!(eval(Gemv {}, inputs).is_err());
        }
        // Gemv takes one row only.
        assert!(eval(Gemv {}, &[&a, &b]).is_err());
    }
}
