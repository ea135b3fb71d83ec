//! Recurrent ops: RNN, GRU, LSTM, on one engine: each direction walks the
//! sequence of every batch entry (up to its `sequence_lens`) and updates
//! its state with the op's cell, in f64.

use super::kernels::{from_f64, to_f64};
use super::{Eval, EvalCx};
use crate::invalid;
use crate::ops::*;
use crate::tensor::Tensor;

/// An activation function of a recurrent cell with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl Act {
    fn apply(self, x: f64) -> f64 {
        match self {
            Act::Relu => x.max(0.0),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Affine(a, b) => a * x + b,
            Act::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            Act::Softsign => x / (1.0 + x.abs()),
            Act::Softplus => x.exp().ln_1p(),
        }
    }
}

/// Parses an activations list. Alphas and betas are consumed in order by
/// the functions that take them; missing ones take the ONNX op defaults.
fn activations(
    names: &[String],
    alphas: &[f32],
    betas: &[f32],
    defaults: &[&str],
    dirs: usize,
) -> Result<Vec<Act>, OpError> {
    let per_dir = defaults.len();
    let names: Vec<String> = if names.is_empty() {
        (0..dirs)
            .flat_map(|_| defaults.iter().map(|s| s.to_string()))
            .collect()
    } else if names.len() == per_dir * dirs {
        names.to_vec()
    } else if names.len() == per_dir {
        // One list for both directions.
        (0..dirs).flat_map(|_| names.iter().cloned()).collect()
    } else {
        return invalid!(
            "{} activations given, expected {}",
            names.len(),
            per_dir * dirs
        );
    };
    let (mut a, mut b) = (alphas.iter(), betas.iter());
    let mut alpha = |default: f64| a.next().map_or(default, |&v| v as f64);
    let mut beta = |default: f64| b.next().map_or(default, |&v| v as f64);
    names
        .iter()
        .map(|n| {
            Ok(match n.to_ascii_lowercase().as_str() {
                "relu" => Act::Relu,
                "tanh" => Act::Tanh,
                "sigmoid" => Act::Sigmoid,
                "affine" => Act::Affine(alpha(1.0), beta(0.0)),
                "leakyrelu" => Act::LeakyRelu(alpha(0.01)),
                "thresholdedrelu" => Act::ThresholdedRelu(alpha(1.0)),
                "scaledtanh" => Act::ScaledTanh(alpha(1.0), beta(1.0)),
                "hardsigmoid" => Act::HardSigmoid(alpha(0.2), beta(0.5)),
                "elu" => Act::Elu(alpha(1.0)),
                "softsign" => Act::Softsign,
                "softplus" => Act::Softplus,
                other => return invalid!("unknown activation `{other}`"),
            })
        })
        .collect()
}

/// The recurrence of one op.
#[derive(Clone, Copy)]
enum Cell {
    Rnn,
    Gru { linear_before_reset: bool },
    Lstm { input_forget: bool },
}

/// Weights of one direction.
struct Weights<'a> {
    w: &'a [f64],
    r: &'a [f64],
    wb: &'a [f64],
    rb: &'a [f64],
    p: &'a [f64],
}

/// `out[j] = Σ m[j][k] v[k] + bias[j]` for the rows `rows` of `m`.
fn matvec(
    m: &[f64],
    cols: usize,
    rows: std::ops::Range<usize>,
    v: &[f64],
    bias: &[f64],
) -> Vec<f64> {
    rows.map(|j| {
        let row = &m[j * cols..(j + 1) * cols];
        row.iter().zip(v).map(|(a, b)| a * b).sum::<f64>() + bias[j]
    })
    .collect()
}

struct Engine {
    cell: Cell,
    acts: Vec<Act>,
    clip: Option<f64>,
    hidden: usize,
    input: usize,
}

impl Engine {
    fn clip(&self, x: f64) -> f64 {
        match self.clip {
            Some(c) => x.clamp(-c, c),
            None => x,
        }
    }

    /// One step: updates `h` (and `c` for LSTM) from input `x`.
    fn step(&self, wt: &Weights, acts: &[Act], x: &[f64], h: &mut Vec<f64>, c: &mut [f64]) {
        let hs = self.hidden;
        let gate = |k: usize| k * hs..(k + 1) * hs;
        let wx = |k: usize| matvec(wt.w, self.input, gate(k), x, wt.wb);
        match self.cell {
            Cell::Rnn => {
                let (a, b) = (wx(0), matvec(wt.r, hs, gate(0), h, wt.rb));
                *h = (0..hs)
                    .map(|j| acts[0].apply(self.clip(a[j] + b[j])))
                    .collect();
            }
            Cell::Gru {
                linear_before_reset,
            } => {
                let (f, g) = (acts[0], acts[1]);
                let z: Vec<f64> = {
                    let (a, b) = (wx(0), matvec(wt.r, hs, gate(0), h, wt.rb));
                    (0..hs).map(|j| f.apply(self.clip(a[j] + b[j]))).collect()
                };
                let r: Vec<f64> = {
                    let (a, b) = (wx(1), matvec(wt.r, hs, gate(1), h, wt.rb));
                    (0..hs).map(|j| f.apply(self.clip(a[j] + b[j]))).collect()
                };
                let a = wx(2);
                let hh: Vec<f64> = if linear_before_reset {
                    let b = matvec(wt.r, hs, gate(2), h, wt.rb);
                    (0..hs)
                        .map(|j| g.apply(self.clip(a[j] + r[j] * b[j])))
                        .collect()
                } else {
                    let rh: Vec<f64> = r.iter().zip(h.iter()).map(|(r, h)| r * h).collect();
                    let b = matvec(wt.r, hs, gate(2), &rh, wt.rb);
                    (0..hs).map(|j| g.apply(self.clip(a[j] + b[j]))).collect()
                };
                *h = (0..hs)
                    .map(|j| (1.0 - z[j]) * hh[j] + z[j] * h[j])
                    .collect();
            }
            Cell::Lstm { input_forget } => {
                let (f, g, hact) = (acts[0], acts[1], acts[2]);
                let pre = |k: usize| {
                    let (a, b) = (wx(k), matvec(wt.r, hs, gate(k), h, wt.rb));
                    (0..hs).map(|j| a[j] + b[j]).collect::<Vec<f64>>()
                };
                // Gate order in W, R, B: i, o, f, c; peepholes: i, o, f.
                let (pi, po, pf) = (pre(0), pre(1), pre(2));
                let pc = pre(3);
                let peep = |k: usize, j: usize| wt.p.get(k * hs + j).copied().unwrap_or(0.0);
                let i: Vec<f64> = (0..hs)
                    .map(|j| f.apply(self.clip(pi[j] + peep(0, j) * c[j])))
                    .collect();
                let fg: Vec<f64> = if input_forget {
                    i.iter().map(|i| 1.0 - i).collect()
                } else {
                    (0..hs)
                        .map(|j| f.apply(self.clip(pf[j] + peep(2, j) * c[j])))
                        .collect()
                };
                for j in 0..hs {
                    c[j] = fg[j] * c[j] + i[j] * g.apply(self.clip(pc[j]));
                }
                *h = (0..hs)
                    .map(|j| f.apply(self.clip(po[j] + peep(1, j) * c[j])) * hact.apply(c[j]))
                    .collect();
            }
        }
    }
}

fn run(
    cx: &EvalCx,
    cell: Cell,
    shape: RnnShape,
    acts: Vec<Act>,
    clip: Option<f32>,
) -> Result<Vec<Tensor>, OpError> {
    let x = cx.input(0)?;
    let dtype = x.dtype();
    let batch_major = shape.check_layout()?;
    let &[a, b, input] = x.shape() else {
        return invalid!("X must have rank 3, found {:?}", x.shape());
    };
    let (seq, batch) = if batch_major { (b, a) } else { (a, b) };
    let dirs = shape.direction.count();
    let g = shape.gates;
    let (w, r) = (cx.input(1)?, cx.input(2)?);
    let &[_, _, hidden] = r.shape() else {
        return invalid!("R must have rank 3, found {:?}", r.shape());
    };
    if shape.hidden_size.is_some_and(|h| h != hidden as i64) {
        return invalid!("hidden_size does not match R's shape {:?}", r.shape());
    }
    if w.shape() != [dirs, g * hidden, input] || r.shape() != [dirs, g * hidden, hidden] {
        return invalid!(
            "W {:?} and R {:?} do not fit {dirs} directions, {g} gates, {hidden} hidden and {input} inputs",
            w.shape(),
            r.shape()
        );
    }
    let (w, r) = (to_f64(w, "W")?, to_f64(r, "R")?);
    let bias = match cx.opt_input(3) {
        Some(t) if t.shape() != [dirs, 2 * g * hidden] => {
            return invalid!(
                "B has shape {:?}, expected [{dirs}, {}]",
                t.shape(),
                2 * g * hidden
            );
        }
        Some(t) => to_f64(t, "B")?,
        None => vec![0.0; dirs * 2 * g * hidden],
    };
    let lens: Vec<usize> = match cx.opt_input(4) {
        Some(t) if t.shape() != [batch] => {
            return invalid!(
                "sequence_lens has shape {:?}, expected [{batch}]",
                t.shape()
            );
        }
        Some(t) => t
            .to_i64_vec()
            .into_iter()
            .map(|l| {
                usize::try_from(l)
                    .ok()
                    .filter(|&l| l <= seq)
                    .ok_or_else(|| {
                        OpError::Invalid(format!("sequence length {l} is not in [0, {seq}]"))
                    })
            })
            .collect::<Result<_, _>>()?,
        None => vec![seq; batch],
    };
    let state_shape = if batch_major {
        [batch, dirs, hidden]
    } else {
        [dirs, batch, hidden]
    };
    // Offset of (direction, batch) in a state tensor of the layout.
    let state_at = |d: usize, bi: usize| {
        if batch_major {
            (bi * dirs + d) * hidden
        } else {
            (d * batch + bi) * hidden
        }
    };
    let initial = |i: usize, what: &str| -> Result<Option<Vec<f64>>, OpError> {
        match cx.opt_input(i) {
            Some(t) if t.shape() != state_shape => {
                invalid!("{what} has shape {:?}, expected {state_shape:?}", t.shape())
            }
            Some(t) => Ok(Some(to_f64(t, what)?)),
            None => Ok(None),
        }
    };
    let init_h = initial(5, "initial_h")?;
    let (init_c, peepholes) = if let Cell::Lstm { .. } = cell {
        let p = match cx.opt_input(7) {
            Some(t) if t.shape() != [dirs, 3 * hidden] => {
                return invalid!(
                    "P has shape {:?}, expected [{dirs}, {}]",
                    t.shape(),
                    3 * hidden
                );
            }
            Some(t) => Some(to_f64(t, "P")?),
            None => None,
        };
        (initial(6, "initial_c")?, p)
    } else {
        (None, None)
    };
    let xs = to_f64(x, "X")?;
    let x_at = |t: usize, bi: usize| {
        let o = if batch_major {
            (bi * seq + t) * input
        } else {
            (t * batch + bi) * input
        };
        &xs[o..o + input]
    };

    let y_shape = if batch_major {
        vec![batch, seq, dirs, hidden]
    } else {
        vec![seq, dirs, batch, hidden]
    };
    crate::interp::kernels::checked_shape(&y_shape.iter().map(|&d| d as i64).collect::<Vec<_>>())?;
    let mut y = vec![0.0; y_shape.iter().product()];
    let mut yh = vec![0.0; dirs * batch * hidden];
    let mut yc = vec![0.0; dirs * batch * hidden];
    let per_dir = acts.len() / dirs;
    let engine = Engine {
        cell,
        acts,
        clip: clip.map(|c| c as f64),
        hidden,
        input,
    };
    let gh = g * hidden;
    for d in 0..dirs {
        let reverse = shape.direction == RnnDirection::Reverse || d == 1;
        let wt = Weights {
            w: &w[d * gh * input..(d + 1) * gh * input],
            r: &r[d * gh * hidden..(d + 1) * gh * hidden],
            wb: &bias[d * 2 * gh..d * 2 * gh + gh],
            rb: &bias[d * 2 * gh + gh..(d + 1) * 2 * gh],
            p: peepholes
                .as_ref()
                .map_or(&[][..], |p| &p[d * 3 * hidden..(d + 1) * 3 * hidden]),
        };
        let acts = &engine.acts[d * per_dir..(d + 1) * per_dir];
        for (bi, &len) in lens.iter().enumerate() {
            let s = state_at(d, bi);
            let mut h = init_h
                .as_ref()
                .map_or(vec![0.0; hidden], |v| v[s..s + hidden].to_vec());
            let mut c = init_c
                .as_ref()
                .map_or(vec![0.0; hidden], |v| v[s..s + hidden].to_vec());
            for step in 0..len {
                let t = if reverse { len - 1 - step } else { step };
                engine.step(&wt, acts, x_at(t, bi), &mut h, &mut c);
                let o = if batch_major {
                    ((bi * seq + t) * dirs + d) * hidden
                } else {
                    ((t * dirs + d) * batch + bi) * hidden
                };
                y[o..o + hidden].copy_from_slice(&h);
            }
            yh[s..s + hidden].copy_from_slice(&h);
            yc[s..s + hidden].copy_from_slice(&c);
        }
    }
    let state_shape = state_shape.to_vec();
    let mut out = vec![
        from_f64(dtype, y_shape, y)?,
        from_f64(dtype, state_shape.clone(), yh)?,
    ];
    if let Cell::Lstm { .. } = cell {
        out.push(from_f64(dtype, state_shape, yc)?);
    }
    out.truncate(cx.num_outputs);
    Ok(out)
}

impl Eval for RNN {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let dirs = self.direction.count();
        let acts = activations(
            &self.activations,
            &self.activation_alpha,
            &self.activation_beta,
            &["Tanh"],
            dirs,
        )?;
        run(cx, Cell::Rnn, self.shape(), acts, self.clip)
    }
}

impl Eval for GRU {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let dirs = self.direction.count();
        let acts = activations(
            &self.activations,
            &self.activation_alpha,
            &self.activation_beta,
            &["Sigmoid", "Tanh"],
            dirs,
        )?;
        let cell = Cell::Gru {
            linear_before_reset: self.linear_before_reset,
        };
        run(cx, cell, self.shape(), acts, self.clip)
    }
}

impl Eval for LSTM {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let dirs = self.direction.count();
        let acts = activations(
            &self.activations,
            &self.activation_alpha,
            &self.activation_beta,
            &["Sigmoid", "Tanh", "Tanh"],
            dirs,
        )?;
        let cell = Cell::Lstm {
            input_forget: self.input_forget,
        };
        run(cx, cell, self.shape(), acts, self.clip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::eval_op;

    fn rnn(direction: RnnDirection) -> RNN {
        RNN {
            activation_alpha: vec![],
            activation_beta: vec![],
            activations: vec![],
            clip: None,
            direction,
            hidden_size: Some(1),
            layout: 0,
        }
    }

    #[test]
    fn rnn_with_identity_weights_accumulates() {
        // One unit, W = R = 1, Affine(1, 0) activation: h_t = x_t + h_{t-1}.
        let mut op = rnn(RnnDirection::Forward);
        op.activations = vec!["Affine".into()];
        let x = Tensor::from_vec(vec![3, 1, 1], vec![1.0f32, 2.0, 3.0]);
        let one = Tensor::from_vec(vec![1, 1, 1], vec![1.0f32]);
        let out = eval_op(
            &op.into(),
            &[Some(&x), Some(&one), Some(&one)],
            &[
                crate::shape::TensorType::unknown_rank(crate::dtype::DType::F32),
                crate::shape::TensorType::unknown_rank(crate::dtype::DType::F32),
            ],
        )
        .unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[1.0, 3.0, 6.0]);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[6.0]);
    }

    #[test]
    fn reverse_direction_and_sequence_lengths() {
        // Batch of two, lengths 3 and 1, walked from the end of each.
        let mut op = rnn(RnnDirection::Reverse);
        op.activations = vec!["Affine".into()];
        let x = Tensor::from_vec(vec![3, 2, 1], vec![1.0f32, 10.0, 2.0, 20.0, 3.0, 30.0]);
        let one = Tensor::from_vec(vec![1, 1, 1], vec![1.0f32]);
        let lens = Tensor::from_vec(vec![2], vec![3i32, 1]);
        let out = eval_op(
            &op.into(),
            &[Some(&x), Some(&one), Some(&one), None, Some(&lens)],
            &[
                crate::shape::TensorType::unknown_rank(crate::dtype::DType::F32),
                crate::shape::TensorType::unknown_rank(crate::dtype::DType::F32),
            ],
        )
        .unwrap();
        // Entry 0: h at t=2 is 3, t=1 is 5, t=0 is 6. Entry 1: only t=0: 10.
        assert_eq!(
            out[0].as_slice::<f32>().unwrap(),
            &[6.0, 10.0, 5.0, 0.0, 3.0, 0.0]
        );
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[6.0, 10.0]);
    }

    #[test]
    fn activation_parameters_are_consumed_in_order() {
        let names = vec!["LeakyRelu".to_string(), "Tanh".into(), "HardSigmoid".into()];
        let acts = activations(&names, &[0.5, 0.25], &[0.75], &["a", "b", "c"], 1).unwrap();
        assert_eq!(
            acts,
            vec![Act::LeakyRelu(0.5), Act::Tanh, Act::HardSigmoid(0.25, 0.75)]
        );
    }
}
