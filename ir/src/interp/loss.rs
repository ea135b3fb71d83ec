//! Losses and optimizer steps.

use super::kernels::*;
use super::{Eval, EvalCx};
use crate::invalid;
use crate::ops::*;
use crate::tensor::Tensor;

/// The negative log-likelihood of `logp` (shaped like the `(N, C, d...)`
/// input `x`) at the target classes, weighted and reduced. Ignored samples
/// weigh 0; the mean divides by the total weight of the samples counted.
fn nll(
    x: &Tensor,
    logp: &[f64],
    cx: &EvalCx,
    ignore_index: Option<i64>,
    reduction: LossReduction,
) -> Result<Tensor, OpError> {
    let target = cx.input(1)?;
    let xs = x.shape();
    if xs.len() < 2 {
        return invalid!("the input must be (N, C, ...), got {xs:?}");
    }
    let (n, c) = (xs[0], xs[1]);
    let d: usize = xs[2..].iter().product();
    let mut want = vec![n];
    want.extend_from_slice(&xs[2..]);
    if target.shape() != want {
        return invalid!("the target must be {want:?}, got {:?}", target.shape());
    }
    let weight = match cx.opt_input(2) {
        Some(w) if w.shape() != [c] => {
            return invalid!("the weight must be [{c}], got {:?}", w.shape());
        }
        Some(w) => Some(to_f64(w, "the weight")?),
        None => None,
    };
    let t = target.to_i64_vec();
    let mut loss = Vec::with_capacity(t.len());
    let mut total_weight = 0.0;
    for i in 0..n {
        for j in 0..d {
            let class = t[i * d + j];
            if Some(class) == ignore_index {
                loss.push(0.0);
                continue;
            }
            if class < 0 || class as usize >= c {
                return invalid!("target class {class} is outside [0, {c})");
            }
            let class = class as usize;
            let w = weight.as_ref().map_or(1.0, |w| w[class]);
            total_weight += w;
            loss.push(-logp[(i * c + class) * d + j] * w);
        }
    }
    let (shape, vals) = match reduction {
        LossReduction::None => (want, loss),
        LossReduction::Sum => (vec![], vec![loss.iter().sum()]),
        LossReduction::Mean => (vec![], vec![loss.iter().sum::<f64>() / total_weight]),
    };
    from_f64(x.dtype(), shape, vals)
}

fn float_input<'a>(cx: &EvalCx<'a>, i: usize) -> Result<&'a Tensor, OpError> {
    let t = cx.input(i)?;
    if !t.dtype().is_float() || t.dtype().is_packed() {
        return invalid!("input {i} must be a float tensor, got {}", t.dtype());
    }
    Ok(t)
}

impl Eval for NegativeLogLikelihoodLoss {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, 0)?;
        let logp = x.to_f64_vec();
        Ok(vec![nll(x, &logp, cx, self.ignore_index, self.reduction)?])
    }
}

/// Log-softmax over axis 1 of an `(N, C, d...)` tensor.
fn log_softmax_axis1(x: &Tensor) -> Vec<f64> {
    let mut v = x.to_f64_vec();
    if x.rank() < 2 {
        return v;
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let d: usize = x.shape()[2..].iter().product();
    for i in 0..n {
        for j in 0..d {
            let at = |k: usize| (i * c + k) * d + j;
            let max = (0..c).map(|k| v[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let lse = (0..c).map(|k| (v[at(k)] - max).exp()).sum::<f64>().ln();
            for k in 0..c {
                v[at(k)] = v[at(k)] - max - lse;
            }
        }
    }
    v
}

impl Eval for SoftmaxCrossEntropyLoss {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = float_input(cx, 0)?;
        let logp = log_softmax_axis1(x);
        let loss = nll(x, &logp, cx, self.ignore_index, self.reduction)?;
        let mut out = vec![loss];
        if cx.num_outputs > 1 {
            out.push(from_f64(x.dtype(), x.shape().to_vec(), logp)?);
        }
        Ok(out)
    }
}

/// The inputs of an optimizer step: the learning rate R, the update count
/// T, and `per_in` groups of n tensors (X, G, ...), all of X's shape.
struct Step<'a> {
    r: f64,
    t: i64,
    n: usize,
    groups: Vec<&'a [Option<&'a Tensor>]>,
}

fn step<'a>(cx: &EvalCx<'a>, per_in: usize, per_out: usize) -> Result<Step<'a>, OpError> {
    let n = optimized_count(cx.num_inputs(), cx.num_outputs, per_in, per_out)?;
    let (r, t) = (cx.input(0)?, cx.input(1)?);
    if r.numel() != 1 || t.numel() != 1 {
        return invalid!("R and T must be scalars");
    }
    let groups: Vec<_> = (0..per_in)
        .map(|g| &cx.inputs[2 + g * n..2 + (g + 1) * n])
        .collect();
    for i in 0..n {
        let x = float_input(cx, 2 + i)?;
        for g in 1..per_in {
            let y = float_input(cx, 2 + g * n + i)?;
            if y.shape() != x.shape() {
                return invalid!(
                    "tensor {} of group {g} must have X's shape {:?}",
                    i,
                    x.shape()
                );
            }
        }
    }
    Ok(Step {
        r: r.get_f64(0),
        t: t.get_i64(0),
        n,
        groups,
    })
}

impl Step<'_> {
    /// Tensor `i` of group `g` as f64 values.
    fn values(&self, g: usize, i: usize) -> Vec<f64> {
        self.groups[g][i]
            .map(|t| t.to_f64_vec())
            .unwrap_or_default()
    }

    /// A result shaped and typed like tensor `i` of group `g`.
    fn like(&self, g: usize, i: usize, v: Vec<f64>) -> Result<Tensor, OpError> {
        let t = self.groups[g][i].ok_or_else(|| OpError::Invalid("missing input".into()))?;
        from_f64(t.dtype(), t.shape().to_vec(), v)
    }
}

impl Eval for Adagrad {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let s = step(cx, 3, 2)?;
        let (decay, eps, norm) = (
            self.decay_factor as f64,
            self.epsilon as f64,
            self.norm_coefficient as f64,
        );
        let r = s.r / (1.0 + s.t as f64 * decay);
        let (mut xs, mut hs) = (Vec::new(), Vec::new());
        for i in 0..s.n {
            let (mut x, g, mut h) = (s.values(0, i), s.values(1, i), s.values(2, i));
            for k in 0..x.len() {
                let gr = norm * x[k] + g[k];
                h[k] += gr * gr;
                x[k] -= r * gr / (h[k].sqrt() + eps);
            }
            xs.push(s.like(0, i, x)?);
            hs.push(s.like(2, i, h)?);
        }
        xs.extend(hs);
        Ok(xs)
    }
}

impl Eval for Adam {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let s = step(cx, 4, 3)?;
        let (alpha, beta, eps) = (self.alpha as f64, self.beta as f64, self.epsilon as f64);
        let (norm, post) = (
            self.norm_coefficient as f64,
            self.norm_coefficient_post as f64,
        );
        // Bias correction of the moments after the first step.
        let r = if s.t > 0 {
            let t = s.t as f64;
            s.r * (1.0 - beta.powf(t)).sqrt() / (1.0 - alpha.powf(t))
        } else {
            s.r
        };
        let (mut xs, mut vs, mut hs) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..s.n {
            let (mut x, g) = (s.values(0, i), s.values(1, i));
            let (mut v, mut h) = (s.values(2, i), s.values(3, i));
            for k in 0..x.len() {
                let gr = norm * x[k] + g[k];
                v[k] = alpha * v[k] + (1.0 - alpha) * gr;
                h[k] = beta * h[k] + (1.0 - beta) * gr * gr;
                x[k] = (1.0 - post) * (x[k] - r * v[k] / (h[k].sqrt() + eps));
            }
            xs.push(s.like(0, i, x)?);
            vs.push(s.like(2, i, v)?);
            hs.push(s.like(3, i, h)?);
        }
        xs.extend(vs);
        xs.extend(hs);
        Ok(xs)
    }
}

impl Eval for Momentum {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let s = step(cx, 3, 2)?;
        let (alpha, norm) = (self.alpha as f64, self.norm_coefficient as f64);
        // The gradient enters with weight 1 at the first step.
        let beta = if s.t > 0 { self.beta as f64 } else { 1.0 };
        let (mut xs, mut vs) = (Vec::new(), Vec::new());
        for i in 0..s.n {
            let (mut x, g, mut v) = (s.values(0, i), s.values(1, i), s.values(2, i));
            for k in 0..x.len() {
                let gr = norm * x[k] + g[k];
                v[k] = alpha * v[k] + beta * gr;
                x[k] -= s.r
                    * match self.mode {
                        MomentumMode::Standard => v[k],
                        MomentumMode::Nesterov => gr + alpha * v[k],
                    };
            }
            xs.push(s.like(0, i, x)?);
            vs.push(s.like(2, i, v)?);
        }
        xs.extend(vs);
        Ok(xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::eval_op;
    use crate::shape::TensorType;

    fn run(op: impl Into<Op>, inputs: &[&Tensor], outs: usize) -> Vec<Tensor> {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
        let types = vec![TensorType::unknown_rank(crate::dtype::DType::F32); outs];
        eval_op(&op.into(), &inputs, &types).unwrap()
    }

    /// The spec's NegativeLogLikelihoodLoss examples 2 and 3.
    #[test]
    fn nll_spec_examples() {
        let x = Tensor::from_vec(
            vec![2, 3, 2],
            vec![
                1.0f32, 2.0, 2.0, 2.0, 3.0, 2.0, 0.0, 1.0, 2.0, 2.0, 1.0, 2.0,
            ],
        );
        let t = Tensor::from_vec(vec![2, 2], vec![2i64, 1, 0, 2]);
        let w = Tensor::from_vec(vec![3], vec![0.2f32, 0.3, 0.1]);
        let op = |reduction| NegativeLogLikelihoodLoss {
            ignore_index: None,
            reduction,
        };
        let sum = run(op(LossReduction::Sum), &[&x, &t, &w], 1);
        assert!((sum[0].get_f64(0) + 1.1).abs() < 1e-6);
        let mean = run(op(LossReduction::Mean), &[&x, &t, &w], 1);
        assert!((mean[0].get_f64(0) + 1.1 / 0.7).abs() < 1e-6);
        // Ignoring class 0 drops the third sample and its weight.
        let ignoring = NegativeLogLikelihoodLoss {
            ignore_index: Some(0),
            reduction: LossReduction::Mean,
        };
        let m = run(ignoring, &[&x, &t, &w], 1);
        assert!((m[0].get_f64(0) + (0.3 + 0.6 + 0.2) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn softmax_cross_entropy_of_uniform_scores_is_log_c() {
        let x = Tensor::from_vec(vec![1, 4], vec![3.0f32; 4]);
        let t = Tensor::from_vec(vec![1], vec![2i64]);
        let op = SoftmaxCrossEntropyLoss {
            ignore_index: None,
            reduction: LossReduction::Mean,
        };
        let out = run(op, &[&x, &t], 2);
        assert!((out[0].get_f64(0) - 4f64.ln()).abs() < 1e-6);
        assert!((out[1].get_f64(3) + 4f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn momentum_first_step_uses_the_whole_gradient() {
        let r = Tensor::scalar(0.5f32);
        let t = Tensor::scalar(0i64);
        let x = Tensor::from_vec(vec![1], vec![1.0f32]);
        let g = Tensor::from_vec(vec![1], vec![2.0f32]);
        let v = Tensor::from_vec(vec![1], vec![4.0f32]);
        let op = Momentum {
            alpha: 0.5,
            beta: 0.1,
            mode: MomentumMode::Standard,
            norm_coefficient: 0.0,
        };
        let out = run(op, &[&r, &t, &x, &g, &v], 2);
        // v = 0.5·4 + 1·2 = 4; x = 1 − 0.5·4 = −1.
        assert_eq!(out[1].get_f64(0), 4.0);
        assert_eq!(out[0].get_f64(0), -1.0);
    }
}
