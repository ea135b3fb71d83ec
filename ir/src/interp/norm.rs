//! Normalization ops, LRN and Dropout.
//!
//! Statistics are computed in f64 (two passes: mean, then the mean square
//! deviation), whatever `stash_type` asks for, and results are rounded to
//! the input's type.

use super::kernels::*;
use super::reduce::{checked_len, for_each_reduced, reduce_layout};
use super::{Eval, EvalCx};
use crate::dtype::DType;
use crate::ops::*;
use crate::tensor::{Data, Tensor};
use crate::{invalid, unsupported};

/// The float input 0 of a normalization.
fn float_input<'a>(cx: &EvalCx<'a>, what: &str) -> Result<&'a Tensor, OpError> {
    let x = cx.input(0)?;
    if !norm_dtype(x.dtype()) {
        return unsupported!("{what} on {} tensors", x.dtype());
    }
    Ok(x)
}

/// Mean and (population) variance of some numbers.
fn moments(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var)
}

/// A per-channel parameter (scale, bias, mean, var) of `c` values.
fn channel_param(cx: &EvalCx, i: usize, c: usize, name: &str) -> Result<Vec<f64>, OpError> {
    let t = cx.input(i)?;
    if t.numel() != c || t.rank() > 1 || !norm_dtype(t.dtype()) {
        return invalid!(
            "{name} must hold {c} floats, one per channel, found {}{:?}",
            t.dtype(),
            t.shape()
        );
    }
    Ok(t.to_f64_vec())
}

/// `y = x · a[k] + b[k]` where `k` counts blocks of `block` elements,
/// cycling through `a.len()` (channels, or instances × channels).
fn affine_blocks(x: &Tensor, block: usize, a: &[f64], b: &[f64]) -> Result<Tensor, OpError> {
    let shape = x.shape().to_vec();
    if block == 0 || a.is_empty() {
        return Ok(x.clone());
    }
    let params = || (0..a.len()).map(|k| (a[k], b[k])).cycle();
    match x.data() {
        // The common case, without a round trip through an f64 vector.
        Data::F32(v) => {
            let mut out = Vec::with_capacity(v.len());
            for (chunk, (a, b)) in v.chunks(block).zip(params()) {
                out.extend(chunk.iter().map(|&x| (x as f64 * a + b) as f32));
            }
            Ok(Tensor::from_vec(shape, out))
        }
        _ => {
            let mut v = x.to_f64_vec();
            for (chunk, (a, b)) in v.chunks_mut(block).zip(params()) {
                chunk.iter_mut().for_each(|x| *x = *x * a + b);
            }
            from_f64(x.dtype(), shape, v)
        }
    }
}

/// (N, C, product of the spatial dims) of an `N × C × …` tensor.
fn ncs(x: &Tensor, what: &str) -> Result<(usize, usize, usize), OpError> {
    if x.rank() < 2 {
        return invalid!(
            "{what} needs a tensor of rank 2 or more, found {:?}",
            x.shape()
        );
    }
    let s = x.shape();
    Ok((s[0], s[1], s[2..].iter().product()))
}

impl Eval for BatchNormalization {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "BatchNormalization")?;
        if x.numel() == 0 {
            // Nothing to normalize, and no batch statistics.
            let mut out = vec![x.clone()];
            if cx.num_outputs > 1 {
                out.extend([cx.input(3)?.clone(), cx.input(4)?.clone()]);
            }
            return Ok(out);
        }
        let (n, c, spatial) = ncs(x, "BatchNormalization")?;
        let scale = channel_param(cx, 1, c, "scale")?;
        let bias = channel_param(cx, 2, c, "B")?;
        let input_mean = channel_param(cx, 3, c, "input_mean")?;
        let input_var = channel_param(cx, 4, c, "input_var")?;
        let eps = self.epsilon as f64;
        let (mean, var) = if self.training_mode {
            // Statistics of the batch, per channel.
            let v = x.to_f64_vec();
            let mut mean = vec![0.0; c];
            let mut var = vec![0.0; c];
            let count = (n * spatial) as f64;
            for (k, chunk) in v.chunks(spatial.max(1)).enumerate() {
                mean[k % c] += chunk.iter().sum::<f64>();
            }
            mean.iter_mut().for_each(|m| *m /= count);
            for (k, chunk) in v.chunks(spatial.max(1)).enumerate() {
                let m = mean[k % c];
                var[k % c] += chunk.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
            }
            var.iter_mut().for_each(|s| *s /= count);
            (mean, var)
        } else {
            (input_mean.clone(), input_var.clone())
        };
        let a: Vec<f64> = (0..c).map(|k| scale[k] / (var[k] + eps).sqrt()).collect();
        let b: Vec<f64> = (0..c).map(|k| bias[k] - mean[k] * a[k]).collect();
        let mut out = vec![affine_blocks(x, spatial, &a, &b)?];
        if cx.num_outputs > 1 {
            // Running statistics: unchanged outside training.
            let mo = self.momentum as f64;
            let running = |input: &[f64], batch: &[f64]| -> Vec<f64> {
                if self.training_mode {
                    input
                        .iter()
                        .zip(batch)
                        .map(|(i, b)| i * mo + b * (1.0 - mo))
                        .collect()
                } else {
                    input.to_vec()
                }
            };
            let dtype = cx.input(3)?.dtype();
            out.push(from_f64(dtype, vec![c], running(&input_mean, &mean))?);
            out.push(from_f64(dtype, vec![c], running(&input_var, &var))?);
        }
        Ok(out)
    }
}

impl Eval for InstanceNormalization {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "InstanceNormalization")?;
        if x.numel() == 0 {
            return Ok(vec![x.clone()]);
        }
        let (n, c, spatial) = ncs(x, "InstanceNormalization")?;
        let scale = channel_param(cx, 1, c, "scale")?;
        let bias = channel_param(cx, 2, c, "B")?;
        let eps = self.epsilon as f64;
        let v = x.to_f64_vec();
        let mut a = Vec::with_capacity(n * c);
        let mut b = Vec::with_capacity(n * c);
        for (k, chunk) in v.chunks(spatial.max(1)).enumerate().take(n * c) {
            let (mean, var) = moments(chunk);
            a.push(scale[k % c] / (var + eps).sqrt());
            b.push(bias[k % c] - mean * a[k]);
        }
        Ok(vec![affine_blocks(x, spatial, &a, &b)?])
    }
}

impl Eval for GroupNormalization {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "GroupNormalization")?;
        if x.numel() == 0 {
            return Ok(vec![x.clone()]);
        }
        let (n, c, spatial) = ncs(x, "GroupNormalization")?;
        let g = self.num_groups;
        if g <= 0 || c as i64 % g != 0 {
            return invalid!("{c} channels do not split into {g} groups");
        }
        let per_group = c / g as usize;
        let scale = channel_param(cx, 1, c, "scale")?;
        let bias = channel_param(cx, 2, c, "bias")?;
        let eps = self.epsilon as f64;
        let v = x.to_f64_vec();
        let mut a = Vec::with_capacity(n * c);
        let mut b = Vec::with_capacity(n * c);
        for chunk in v.chunks((per_group * spatial).max(1)).take(n * g as usize) {
            let (mean, var) = moments(chunk);
            let inv = 1.0 / (var + eps).sqrt();
            for _ in 0..per_group {
                let ch = a.len() % c;
                a.push(scale[ch] * inv);
                b.push(bias[ch] - mean * scale[ch] * inv);
            }
        }
        Ok(vec![affine_blocks(x, spatial, &a, &b)?])
    }
}

/// A parameter (scale, bias) unidirectionally broadcast to a shape.
struct Broadcast {
    v: Vec<f64>,
    /// Flat index into `v` for each output element; `None` when `v` simply
    /// repeats (its shape is a suffix of the output's).
    idx: Option<Vec<usize>>,
}

impl Broadcast {
    fn new(t: &Tensor, shape: &[usize], name: &str) -> Result<Broadcast, OpError> {
        if !norm_dtype(t.dtype()) || broadcast_shapes(&[t.shape(), shape])? != shape {
            return invalid!(
                "{name} of shape {:?} does not broadcast to {shape:?}",
                t.shape()
            );
        }
        let trimmed: Vec<usize> = t.shape().iter().copied().skip_while(|&d| d == 1).collect();
        let idx = (!shape.ends_with(&trimmed)).then(|| broadcast_index(t.shape(), shape));
        Ok(Broadcast {
            v: t.to_f64_vec(),
            idx,
        })
    }

    fn get(&self, i: usize) -> f64 {
        match &self.idx {
            Some(idx) => self.v[idx[i]],
            None => self.v[i % self.v.len()],
        }
    }
}

/// (rows, columns) of a tensor seen as a matrix split before `axis`.
fn rows_cols(x: &Tensor, axis_attr: i64) -> Result<(usize, usize, usize), OpError> {
    let a = axis(axis_attr, x.rank())?;
    let rows = x.shape()[..a].iter().product();
    let cols = x.shape()[a..].iter().product();
    Ok((a, rows, cols))
}

impl Eval for LayerNormalization {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "LayerNormalization")?;
        let stash = stash_dtype(self.stash_type)?;
        let a = axis(self.axis, x.rank())?;
        let mut stats_shape = x.shape()[..a].to_vec();
        stats_shape.resize(x.rank(), 1);
        if x.numel() == 0 {
            // The statistics of empty rows are NaN.
            let rows = checked_len(&stats_shape)?;
            let stats = from_f64(stash, stats_shape, vec![f64::NAN; rows])?;
            return Ok(vec![x.clone(), stats.clone(), stats]);
        }
        let (_, rows, cols) = rows_cols(x, self.axis)?;
        let shape = x.shape().to_vec();
        let scale = Broadcast::new(cx.input(1)?, &shape, "Scale")?;
        let bias = cx
            .opt_input(2)
            .map(|b| Broadcast::new(b, &shape, "B"))
            .transpose()?;
        let eps = self.epsilon as f64;
        let mut v = x.to_f64_vec();
        let mut means = Vec::with_capacity(rows);
        let mut inv_stds = Vec::with_capacity(rows);
        for (r, row) in v.chunks_mut(cols.max(1)).enumerate().take(rows) {
            let (mean, var) = moments(row);
            let inv = 1.0 / (var + eps).sqrt();
            for (j, y) in row.iter_mut().enumerate() {
                let i = r * cols + j;
                *y = (*y - mean) * inv * scale.get(i) + bias.as_ref().map_or(0.0, |b| b.get(i));
            }
            means.push(mean);
            inv_stds.push(inv);
        }
        let mut out = vec![from_f64(x.dtype(), shape, v)?];
        if cx.num_outputs > 1 {
            out.push(from_f64(stash, stats_shape.clone(), means)?);
            out.push(from_f64(stash, stats_shape, inv_stds)?);
        }
        Ok(out)
    }
}

impl Eval for RMSNormalization {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "RMSNormalization")?;
        if x.numel() == 0 {
            return Ok(vec![x.clone()]);
        }
        stash_dtype(self.stash_type)?;
        let (_, _, cols) = rows_cols(x, self.axis)?;
        let shape = x.shape().to_vec();
        let scale = Broadcast::new(cx.input(1)?, &shape, "scale")?;
        let eps = self.epsilon as f64;
        let mut v = x.to_f64_vec();
        for (r, row) in v.chunks_mut(cols.max(1)).enumerate() {
            let ms = row.iter().map(|x| x * x).sum::<f64>() / cols as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            for (j, y) in row.iter_mut().enumerate() {
                *y *= inv * scale.get(r * cols + j);
            }
        }
        Ok(vec![from_f64(x.dtype(), shape, v)?])
    }
}

impl Eval for LpNormalization {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "LpNormalization")?;
        if x.numel() == 0 {
            return Ok(vec![x.clone()]);
        }
        let p = match self.p {
            1 => 1.0,
            2 => 2.0,
            p => return invalid!("p = {p} (must be 1 or 2)"),
        };
        let a = axis(self.axis, x.rank())?;
        let (outer, n, inner) = split_at_axis(x.shape(), a);
        let mut v = x.to_f64_vec();
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| o * n * inner + k * inner + i;
                let norm = if p == 1.0 {
                    (0..n).map(|k| v[at(k)].abs()).sum::<f64>()
                } else {
                    (0..n).map(|k| v[at(k)] * v[at(k)]).sum::<f64>().sqrt()
                };
                for k in 0..n {
                    // A zero vector stays zero.
                    v[at(k)] = if norm == 0.0 { 0.0 } else { v[at(k)] / norm };
                }
            }
        }
        Ok(vec![from_f64(x.dtype(), x.shape().to_vec(), v)?])
    }
}

impl Eval for MeanVarianceNormalization {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "MeanVarianceNormalization")?;
        if x.numel() == 0 {
            return Ok(vec![x.clone()]);
        }
        let shape = x.shape();
        let axes = reduction_axes(&self.axes, shape.len())?;
        let count = axes.iter().map(|&a| shape[a]).product::<usize>() as f64;
        let (n, _) = reduce_layout(shape, &axes);
        let mut v = x.to_f64_vec();
        let mut mean = vec![0.0; n];
        for_each_reduced(shape, &axes, |i, o| mean[o] += v[i]);
        mean.iter_mut().for_each(|m| *m /= count);
        let mut var = vec![0.0; n];
        for_each_reduced(shape, &axes, |i, o| var[o] += (v[i] - mean[o]).powi(2));
        // As the ONNX function body: (X - E[X]) / (sqrt(Var[X]) + 1e-9).
        let std: Vec<f64> = var.iter().map(|s| (s / count).sqrt() + 1e-9).collect();
        for_each_reduced(shape, &axes, |i, o| v[i] = (v[i] - mean[o]) / std[o]);
        Ok(vec![from_f64(x.dtype(), shape.to_vec(), v)?])
    }
}

impl Eval for LRN {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "LRN")?;
        if x.numel() == 0 {
            return Ok(vec![x.clone()]);
        }
        let (n, c, spatial) = ncs(x, "LRN")?;
        if self.size <= 0 {
            return invalid!("LRN size {} is not positive", self.size);
        }
        let size = self.size as usize;
        // The window of channel `ch` is [ch - before, ch + after].
        let (before, after) = ((size - 1) / 2, size / 2);
        let (alpha, beta, bias) = (self.alpha as f64, self.beta as f64, self.bias as f64);
        let v = x.to_f64_vec();
        let sq: Vec<f64> = v.iter().map(|x| x * x).collect();
        let mut out = vec![0.0; v.len()];
        let mut sum = vec![0.0; spatial];
        for b in 0..n {
            for ch in 0..c {
                sum.iter_mut().for_each(|s| *s = 0.0);
                for w in ch.saturating_sub(before)..(ch + after + 1).min(c) {
                    let plane = &sq[(b * c + w) * spatial..][..spatial];
                    sum.iter_mut().zip(plane).for_each(|(s, q)| *s += q);
                }
                let base = (b * c + ch) * spatial;
                for (j, s) in sum.iter().enumerate() {
                    out[base + j] = v[base + j] / (bias + alpha / size as f64 * s).powf(beta);
                }
            }
        }
        Ok(vec![from_f64(x.dtype(), x.shape().to_vec(), out)?])
    }
}

/// The Mersenne Twister MT19937 with numpy's `RandomState(seed)` seeding
/// and its 53-bit uniform doubles, so seeded training-mode Dropout drops
/// the same elements as the ONNX reference implementation.
struct Mt19937 {
    state: [u32; 624],
    next: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, next: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.next = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.next >= 624 {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform double in [0, 1) from 53 random bits.
    fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

impl Eval for Dropout {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, "Dropout")?;
        let scalar = |i: usize, what: &str| -> Result<Option<f64>, OpError> {
            match cx.opt_input(i) {
                None => Ok(None),
                Some(t) if t.numel() == 1 && t.dtype() != DType::Str => Ok(Some(t.get_f64(0))),
                Some(t) => invalid!(
                    "{what} must be a scalar, found {}{:?}",
                    t.dtype(),
                    t.shape()
                ),
            }
        };
        let ratio = scalar(1, "ratio")?.unwrap_or(0.5);
        let training = scalar(2, "training_mode")?.is_some_and(|t| t != 0.0);
        if !(0.0..1.0).contains(&ratio) {
            return invalid!("dropout ratio {ratio} is outside [0, 1)");
        }
        let shape = x.shape().to_vec();
        let (y, mask) = if training && ratio > 0.0 {
            // Unseeded dropout may use any randomness; seed 0 keeps runs
            // reproducible.
            let mut rng = Mt19937::new(self.seed.unwrap_or(0) as u32);
            let keep: Vec<bool> = (0..x.numel()).map(|_| rng.next_f64() >= ratio).collect();
            let scale = 1.0 / (1.0 - ratio);
            let v: Vec<f64> = x
                .to_f64_vec()
                .iter()
                .zip(&keep)
                .map(|(&x, &k)| if k { x * scale } else { 0.0 })
                .collect();
            (from_f64(x.dtype(), shape.clone(), v)?, keep)
        } else {
            (x.clone(), vec![true; x.numel()])
        };
        let mut out = vec![y];
        if cx.num_outputs > 1 {
            out.push(Tensor::from_vec(shape, mask));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::TensorType;

    fn eval(op: impl Into<Op>, inputs: &[&Tensor], outs: usize) -> Vec<Tensor> {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        let types = vec![TensorType::unknown_rank(DType::F32); outs];
        super::super::eval_op(&op.into(), &inputs, &types).unwrap()
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    fn close(t: &Tensor, expect: &[f64]) {
        let got = t.to_f64_vec();
        assert_eq!(got.len(), expect.len(), "{t:?}");
        for (g, e) in got.iter().zip(expect) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expect:?}");
        }
    }

    #[test]
    fn mt19937_matches_numpy_random_state() {
        // numpy.random.RandomState(0).uniform(0, 1, 3)
        let mut r = Mt19937::new(0);
        assert_eq!(r.next_f64(), 0.5488135039273248);
        assert_eq!(r.next_f64(), 0.7151893663724195);
        assert_eq!(r.next_f64(), 0.6027633760716439);
        // The 700th draw of RandomState(5) (past the first twist).
        let mut r = Mt19937::new(5);
        let last = (0..700).map(|_| r.next_f64()).last().unwrap();
        assert_eq!(last, 0.7464423502866897);
    }

    #[test]
    fn batch_norm_training_updates_running_stats() {
        // One channel holding 1, 3: batch mean 2, variance 1.
        let x = f32s(&[2, 1], &[1., 3.]);
        let one = f32s(&[1], &[1.]);
        let zero = f32s(&[1], &[0.]);
        let op = BatchNormalization {
            epsilon: 0.0,
            momentum: 0.5,
            training_mode: true,
        };
        let out = eval(op, &[&x, &one, &zero, &zero, &one], 3);
        close(&out[0], &[-1., 1.]);
        close(&out[1], &[1.]); // 0·0.5 + 2·0.5
        close(&out[2], &[1.]); // 1·0.5 + 1·0.5
    }

    #[test]
    fn layer_norm_outputs_statistics() {
        let x = f32s(&[2, 2], &[1., 3., 2., 4.]);
        let w = f32s(&[2], &[1., 2.]);
        let op = LayerNormalization {
            axis: -1,
            epsilon: 0.0,
            stash_type: 1,
        };
        let out = eval(op, &[&x, &w], 3);
        // Rows (1, 3) and (2, 4): means 2 and 3, standard deviations 1.
        close(&out[0], &[-1., 2., -1., 2.]);
        assert_eq!(out[1].shape(), &[2, 1]);
        close(&out[1], &[2., 3.]);
        close(&out[2], &[1., 1.]);
    }

    #[test]
    fn group_norm_scales_per_channel() {
        // Two channels in one group: values 0, 2 → mean 1, variance 1.
        let x = f32s(&[1, 2, 1], &[0., 2.]);
        let scale = f32s(&[2], &[1., 3.]);
        let bias = f32s(&[2], &[0., 1.]);
        let op = GroupNormalization {
            epsilon: 0.0,
            num_groups: 1,
            stash_type: 1,
        };
        close(&eval(op, &[&x, &scale, &bias], 1)[0], &[-1., 4.]);
    }

    #[test]
    fn lrn_window_and_lp_norm() {
        // With size 2 the window of channel c is [c, c + 1].
        let x = f32s(&[1, 2, 1, 1], &[1., 2.]);
        let op = LRN {
            alpha: 2.0,
            beta: 1.0,
            bias: 1.0,
            size: 2,
        };
        // c0: 1 / (1 + 1·(1 + 4)); c1: 2 / (1 + 1·4)
        close(&eval(op, &[&x], 1)[0], &[1. / 6., 2. / 5.]);
        let v = f32s(&[2, 2], &[3., 4., 0., 0.]);
        let op = LpNormalization { axis: 1, p: 2 };
        close(&eval(op, &[&v], 1)[0], &[0.6, 0.8, 0., 0.]);
    }

    #[test]
    fn dropout_is_identity_outside_training() {
        let x = f32s(&[3], &[1., 2., 3.]);
        let out = eval(Dropout { seed: None }, &[&x], 2);
        assert_eq!(out[0], x);
        assert_eq!(out[1].as_slice::<bool>().unwrap(), &[true; 3]);
    }
}
