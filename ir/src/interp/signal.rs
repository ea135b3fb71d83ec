//! Signal processing: DFT, STFT, windows, mel filter banks. Transforms are
//! computed in f64 (a radix-2 FFT for power-of-two lengths, the direct sum
//! otherwise) and rounded to the input's type.

use std::f64::consts::PI;

use super::kernels::{checked_shape, from_f64, split_at_axis};
use super::{Eval, EvalCx};
use crate::invalid;
use crate::ops::*;
use crate::tensor::Tensor;

/// A complex number as (re, im).
type C = (f64, f64);

fn mul(a: C, b: C) -> C {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

/// `out[k] = Σ x[n] e^{∓2πi kn/L}` (− forward, + inverse, unscaled) for
/// `L = x.len()`.
fn transform(x: &[C], inverse: bool) -> Vec<C> {
    let l = x.len();
    let sign = if inverse { 1.0 } else { -1.0 };
    if l.is_power_of_two() && l > 1 {
        // Iterative radix-2 Cooley-Tukey.
        let bits = l.trailing_zeros();
        let mut a: Vec<C> = (0..l)
            .map(|i| x[i.reverse_bits() >> (usize::BITS - bits)])
            .collect();
        let mut len = 2;
        while len <= l {
            let ang = sign * 2.0 * PI / len as f64;
            for start in (0..l).step_by(len) {
                for j in 0..len / 2 {
                    let w = ((ang * j as f64).cos(), (ang * j as f64).sin());
                    let u = a[start + j];
                    let v = mul(a[start + j + len / 2], w);
                    a[start + j] = (u.0 + v.0, u.1 + v.1);
                    a[start + j + len / 2] = (u.0 - v.0, u.1 - v.1);
                }
            }
            len *= 2;
        }
        return a;
    }
    // The direct sum, with a table of the L distinct twiddles.
    let tw: Vec<C> = (0..l)
        .map(|m| {
            let ang = sign * 2.0 * PI * m as f64 / l as f64;
            (ang.cos(), ang.sin())
        })
        .collect();
    (0..l)
        .map(|k| {
            let mut s = (0.0, 0.0);
            for (n, &v) in x.iter().enumerate() {
                let p = mul(v, tw[(k * n) % l]);
                s = (s.0 + p.0, s.1 + p.1);
            }
            s
        })
        .collect()
}

/// The input's values as complex numbers: its last dim is 1 (real) or 2.
fn complex_values(x: &Tensor) -> Result<Vec<C>, OpError> {
    let v = super::kernels::to_f64(x, "DFT")?;
    match x.shape().last() {
        Some(1) => Ok(v.into_iter().map(|r| (r, 0.0)).collect()),
        Some(2) => Ok(v.chunks_exact(2).map(|c| (c[0], c[1])).collect()),
        _ => invalid!(
            "the last dim must be 1 (real) or 2 (complex), found {:?}",
            x.shape()
        ),
    }
}

/// A scalar integer input.
fn scalar_int(t: &Tensor, what: &str) -> Result<i64, OpError> {
    if t.numel() != 1 {
        return invalid!("{what} must be a scalar, found shape {:?}", t.shape());
    }
    Ok(t.get_i64(0))
}

impl Eval for DFT {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let axis = match cx.opt_input(2) {
            Some(a) => scalar_int(a, "axis")?,
            None => -2,
        };
        let axis = DFT::axis(axis, x.rank())?;
        let dft_length = cx
            .opt_input(1)
            .map(|t| scalar_int(t, "dft_length"))
            .transpose()?;
        let vals = complex_values(x)?;
        // The complex view drops the last dim.
        let cshape = &x.shape()[..x.rank() - 1];
        let (outer, extent, inner) = split_at_axis(cshape, axis);
        let (len, out_extent) = self.lengths(extent as u64, dft_length)?;
        let irfft = self.inverse && self.onesided;
        let mut oshape: Vec<i64> = cshape.iter().map(|&d| d as i64).collect();
        oshape[axis] = out_extent as i64;
        oshape.push(if irfft { 1 } else { 2 });
        let oshape = checked_shape(&oshape)?;
        let (len, out_extent) = (len as usize, out_extent as usize);

        let mut out = vec![0.0; oshape.iter().product()];
        let comps = if irfft { 1 } else { 2 };
        let mut line = vec![(0.0, 0.0); len];
        for o in 0..outer {
            for i in 0..inner {
                let at = |n: usize| vals[(o * extent + n) * inner + i];
                // The signal cut or zero-padded to the length (for IRFFT
                // the first half of the spectrum, the rest its mirror).
                let half = len / 2 + 1;
                let given = if irfft { half } else { len }.min(extent);
                for (n, c) in line.iter_mut().enumerate() {
                    *c = if n < given { at(n) } else { (0.0, 0.0) };
                }
                if irfft {
                    for k in half..len {
                        let c = line[len - k];
                        line[k] = (c.0, -c.1);
                    }
                }
                let y = transform(&line, self.inverse);
                let scale = if self.inverse { 1.0 / len as f64 } else { 1.0 };
                for (k, c) in y.iter().take(out_extent).enumerate() {
                    let base = ((o * out_extent + k) * inner + i) * comps;
                    out[base] = c.0 * scale;
                    if comps == 2 {
                        out[base + 1] = c.1 * scale;
                    }
                }
            }
        }
        Ok(vec![from_f64(x.dtype(), oshape, out)?])
    }
}

impl Eval for STFT {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let x = cx.input(0)?;
        let &[batch, signal, _] = x.shape() else {
            return invalid!(
                "the signal must be [batch, length, 1 or 2], found {:?}",
                x.shape()
            );
        };
        let vals = complex_values(x)?;
        let step = scalar_int(cx.input(1)?, "frame_step")?;
        let window = cx.opt_input(2);
        if let Some(w) = window
            && w.rank() != 1
        {
            return invalid!("the window must be 1-D, found {:?}", w.shape());
        }
        let frame = match (cx.opt_input(3), window) {
            (Some(f), _) => scalar_int(f, "frame_length")?,
            (None, Some(w)) => w.numel() as i64,
            (None, None) => signal as i64,
        };
        if let Some(w) = window
            && w.numel() as i64 != frame
        {
            return invalid!("the window has {} values, the frame {frame}", w.numel());
        }
        if step < 1 || frame < 1 || frame as usize > signal {
            return invalid!(
                "frame_step {step} and frame_length {frame} do not fit a signal of {signal}"
            );
        }
        check_transform_length(frame as u64)?;
        let (step, frame) = (step as usize, frame as usize);
        let w: Vec<f64> = match window {
            Some(w) => super::kernels::to_f64(w, "STFT")?,
            None => vec![1.0; frame],
        };
        let frames = (signal - frame) / step + 1;
        let bins = if self.onesided { frame / 2 + 1 } else { frame };
        let oshape = checked_shape(&[batch as i64, frames as i64, bins as i64, 2])?;
        let mut out = Vec::with_capacity(oshape.iter().product());
        let mut line = vec![(0.0, 0.0); frame];
        for b in 0..batch {
            for f in 0..frames {
                for (n, l) in line.iter_mut().enumerate() {
                    let v = vals[b * signal + f * step + n];
                    *l = (v.0 * w[n], v.1 * w[n]);
                }
                for c in transform(&line, false).into_iter().take(bins) {
                    out.push(c.0);
                    out.push(c.1);
                }
            }
        }
        Ok(vec![from_f64(x.dtype(), oshape, out)?])
    }
}

/// The window size in input 0.
fn window_size(cx: &EvalCx) -> Result<usize, OpError> {
    let n = scalar_int(cx.input(0)?, "the size")?;
    Ok(checked_shape(&[n])?[0])
}

/// A generalized cosine window `Σ a_j cos(2π j n / N)` with `N` the size
/// (periodic) or the size less one (symmetric).
fn cosine_window(
    cx: &EvalCx,
    periodic: bool,
    a: &[f64],
    dtype: crate::dtype::DType,
) -> Result<Vec<Tensor>, OpError> {
    let size = window_size(cx)?;
    let denom = if periodic {
        size as f64
    } else {
        size as f64 - 1.0
    };
    let v = (0..size)
        .map(|n| {
            a.iter()
                .enumerate()
                .map(|(j, &c)| c * (2.0 * PI * j as f64 * n as f64 / denom).cos())
                .sum()
        })
        .collect();
    Ok(vec![from_f64(dtype, vec![size], v)?])
}

impl Eval for BlackmanWindow {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        cosine_window(cx, self.periodic, &[0.42, -0.5, 0.08], self.output_datatype)
    }
}

impl Eval for HammingWindow {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let alpha = 25.0 / 46.0;
        cosine_window(
            cx,
            self.periodic,
            &[alpha, alpha - 1.0],
            self.output_datatype,
        )
    }
}

impl Eval for HannWindow {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        // sin²(πn/N) = 1/2 − 1/2 cos(2πn/N).
        cosine_window(cx, self.periodic, &[0.5, -0.5], self.output_datatype)
    }
}

impl Eval for MelWeightMatrix {
    fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
        let mels = scalar_int(cx.input(0)?, "num_mel_bins")?;
        let dft_length = scalar_int(cx.input(1)?, "dft_length")?;
        let rate = scalar_int(cx.input(2)?, "sample_rate")?;
        let edge = |i: usize| -> Result<(f64, crate::dtype::DType), OpError> {
            let t = cx.input(i)?;
            if t.numel() != 1 {
                return invalid!("input {i} must be a scalar");
            }
            Ok((t.get_f64(0), t.dtype()))
        };
        let ((low, dt), (high, _)) = (edge(3)?, edge(4)?);
        if mels < 0 || dft_length < 1 || rate < 1 {
            return invalid!(
                "num_mel_bins {mels}, dft_length {dft_length} and sample_rate {rate} are not valid"
            );
        }
        let bins = dft_length as usize / 2 + 1;
        let shape = checked_shape(&[bins as i64, mels])?;
        let mels = mels as usize;
        // Mel edges are computed in the edges' precision, as ONNX's
        // reference does.
        let round = |v: f64| Tensor::scalar(v).cast(dt, true).get_f64(0);
        let to_mel = |f: f64| round(2595.0 * (f / 700.0).ln_1p() / 10f64.ln());
        let (lo, hi) = (to_mel(low), to_mel(high));
        let step = (hi - lo) / (mels + 2) as f64;
        let points: Vec<i64> = (0..mels + 2)
            .map(|i| {
                let mel = i as f64 * step + lo;
                let hz = 700.0 * (mel / 2595.0 * 10f64.ln()).exp_m1();
                ((dft_length + 1) as f64 * hz / rate as f64).floor() as i64
            })
            .collect();
        let mut out = vec![0.0; bins * mels];
        let mut set = |j: i64, i: usize, v: f64| -> Result<(), OpError> {
            if j < 0 || j as usize >= bins {
                return invalid!("mel band {i} reaches bin {j}, outside [0, {bins})");
            }
            out[j as usize * mels + i] = v;
            Ok(())
        };
        for i in 0..mels {
            let (left, center, right) = (points[i], points[i + 1], points[i + 2]);
            if center == left {
                set(center, i, 1.0)?;
            } else {
                for j in left..=center {
                    set(j, i, (j - left) as f64 / (center - left) as f64)?;
                }
            }
            if right > center {
                for j in center..right {
                    set(j, i, (right - j) as f64 / (right - center) as f64)?;
                }
            }
        }
        Ok(vec![from_f64(self.output_datatype, shape, out)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[C], b: &[C]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.0 - y.0).abs() < 1e-9 && (x.1 - y.1).abs() < 1e-9)
    }

    #[test]
    fn fft_matches_the_direct_sum() {
        // [1, 2, 3, 4]: X0 = 10, X1 = -2 + 2i, X2 = -2, X3 = -2 - 2i.
        let x: Vec<C> = [1.0, 2.0, 3.0, 4.0].iter().map(|&r| (r, 0.0)).collect();
        let expect = [(10.0, 0.0), (-2.0, 2.0), (-2.0, 0.0), (-2.0, -2.0)];
        assert!(close(&transform(&x, false), &expect));
        // Length 3 takes the direct sum: [1, 1, 1] → [3, 0, 0].
        let y = transform(&[(1.0, 0.0); 3], false);
        assert!(close(&y, &[(3.0, 0.0), (0.0, 0.0), (0.0, 0.0)]));
        // The inverse (unscaled) of the spectrum is 4 × the signal.
        let back = transform(&expect, true);
        let four: Vec<C> = x.iter().map(|c| (4.0 * c.0, 0.0)).collect();
        assert!(close(&back, &four));
    }

    fn dft(op: DFT, x: &Tensor, axis: i64) -> Result<Tensor, OpError> {
        let axis = Tensor::scalar(axis);
        crate::interp::eval_op(&op.into(), &[Some(x), None, Some(&axis)], &[])
            .map(|mut v| v.remove(0))
    }

    #[test]
    fn rfft_then_irfft_gives_the_signal_back() {
        let x = Tensor::from_vec(vec![1, 6, 1], vec![1.0f64, 2.0, 0.0, -1.0, 5.0, 3.0]);
        let rfft = DFT {
            inverse: false,
            onesided: true,
        };
        let spec = dft(rfft, &x, 1).unwrap();
        assert_eq!(spec.shape(), &[1, 4, 2]);
        // Bin 0 is the sum.
        assert_eq!(&spec.as_slice::<f64>().unwrap()[..2], &[10.0, 0.0]);
        let irfft = DFT {
            inverse: true,
            onesided: true,
        };
        let back = dft(irfft, &spec, 1).unwrap();
        assert_eq!(back.shape(), &[1, 6, 1]);
        let (a, b) = (
            back.as_slice::<f64>().unwrap(),
            x.as_slice::<f64>().unwrap(),
        );
        assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-12), "{a:?}");
    }

    #[test]
    fn bad_dft_inputs_are_errors() {
        let op = DFT {
            inverse: true,
            onesided: true,
        };
        // One bin gives a zero-length inverse.
        let x = Tensor::from_vec(vec![1, 1, 2], vec![1.0f32, 0.0]);
        assert!(dft(op.clone(), &x, 1).is_err());
        // The complex axis cannot be transformed; a last dim of 3 is neither.
        assert!(dft(op.clone(), &x, 2).is_err());
        let y = Tensor::from_vec(vec![1, 1, 3], vec![1.0f32, 0.0, 0.0]);
        assert!(dft(op, &y, 1).is_err());
    }

    #[test]
    fn symmetric_hann_window() {
        let op = HannWindow {
            output_datatype: crate::dtype::DType::F64,
            periodic: false,
        };
        let n = Tensor::scalar(5i64);
        let w = crate::interp::eval_op(&op.into(), &[Some(&n)], &[]).unwrap();
        let w = w[0].as_slice::<f64>().unwrap();
        // sin²(πn/4): 0, 1/2, 1, 1/2, 0.
        for (a, b) in w.iter().zip([0.0, 0.5, 1.0, 0.5, 0.0]) {
            assert!((a - b).abs() < 1e-12, "{w:?}");
        }
    }
}
