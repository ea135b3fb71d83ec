//! Signal processing: DFT, STFT, windows, mel filter banks.

use super::infer::{Infer, InferCx, expect_dtype, normalize_axis, one};
use super::*;
use crate::invalid;
use crate::shape::{Dim, Shape};

fn is_real_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

fn is_index(d: DType) -> bool {
    matches!(d, DType::I32 | DType::I64)
}

/// The single integer in input `i`, when known.
fn known_scalar(cx: &InferCx, i: usize) -> Option<i64> {
    cx.ints(i).filter(|v| v.len() == 1).map(|v| v[0])
}

/// Element types a window or filter bank may be produced in.
fn check_output_dtype(d: DType) -> Result<(), OpError> {
    if d.is_float() && !d.is_packed() || d.is_int() && !d.is_packed() {
        Ok(())
    } else {
        invalid!("output_datatype {d} is not a numeric type")
    }
}

/// Longest transform that is not a power of two: those take the direct
/// O(n²) sum.
pub const MAX_DIRECT_DFT: u64 = 1 << 16;

/// Rejects transform lengths the reference interpreter would take too long
/// on (and any beyond the element limit).
pub fn check_transform_length(len: u64) -> Result<(), OpError> {
    if len > crate::tensor::MAX_ELEMENTS {
        return invalid!("transform length {len} is too large");
    }
    if !len.is_power_of_two() && len > MAX_DIRECT_DFT {
        return crate::unsupported!(
            "transforms of length {len}: only powers of two are supported above {MAX_DIRECT_DFT}"
        );
    }
    Ok(())
}

impl DFT {
    /// The DFT axis in `[0, rank - 1)` of an input of rank `rank`.
    pub fn axis(axis: i64, rank: usize) -> Result<usize, OpError> {
        if rank < 2 {
            return invalid!("the input needs a signal axis and a complex axis");
        }
        let a = normalize_axis(axis, rank)?;
        if a == rank - 1 {
            return invalid!("axis {axis} is the complex axis");
        }
        Ok(a)
    }

    /// The transform length and the output extent along the axis, from the
    /// input extent and the `dft_length` input.
    pub fn lengths(&self, extent: u64, dft_length: Option<i64>) -> Result<(u64, u64), OpError> {
        let irfft = self.inverse && self.onesided;
        let len = match dft_length {
            Some(l) if l < 1 => return invalid!("dft_length must be positive, found {l}"),
            Some(l) => l as u64,
            None if irfft => 2 * extent.saturating_sub(1),
            None => extent,
        };
        if len == 0 {
            return invalid!("the transform length is zero");
        }
        check_transform_length(len)?;
        let out = if self.onesided && !self.inverse {
            len / 2 + 1
        } else {
            len
        };
        Ok((len, out))
    }
}

impl Infer for DFT {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let d = expect_dtype(cx, 0, is_real_float, "a float type")?;
        if cx.opt_input(1).is_some() {
            expect_dtype(cx, 1, is_index, "int32 or int64")?;
        }
        if cx.opt_input(2).is_some() {
            expect_dtype(cx, 2, |d| d == DType::I64, "int64")?;
        }
        let Some(dims) = cx.input(0)?.shape.dims() else {
            return one(TensorType::unknown_rank(d));
        };
        let rank = dims.len();
        if let Some(Dim::Known(c)) = dims.last()
            && !matches!(c, 1 | 2)
        {
            return invalid!("the last dim must be 1 (real) or 2 (complex), found {c}");
        }
        let last = Dim::Known(if self.inverse && self.onesided { 1 } else { 2 });
        let axis = match cx.opt_input(2) {
            None => Some(-2),
            Some(_) => known_scalar(cx, 2),
        };
        let dft_length = match cx.opt_input(1) {
            None => Some(None),
            Some(_) => known_scalar(cx, 1).map(Some),
        };
        let mut out: Vec<Dim> = dims.to_vec();
        out[rank.max(1) - 1] = last;
        match axis {
            Some(a) => {
                let a = DFT::axis(a, rank)?;
                out[a] = match (&dims[a], dft_length) {
                    (Dim::Known(e), Some(l)) => Dim::Known(self.lengths(*e, l)?.1),
                    (_, Some(Some(l))) => Dim::Known(self.lengths(0, Some(l))?.1),
                    _ => Dim::Unknown,
                };
            }
            None => {
                for d in &mut out[..rank - 1] {
                    *d = Dim::Unknown;
                }
            }
        }
        one(TensorType::new(d, Shape::Ranked(out)))
    }
}

impl Infer for STFT {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let d = expect_dtype(cx, 0, is_real_float, "a float type")?;
        expect_dtype(cx, 1, is_index, "int32 or int64")?;
        if cx.opt_input(2).is_some() {
            expect_dtype(cx, 2, is_real_float, "a float type")?;
        }
        if cx.opt_input(3).is_some() {
            expect_dtype(cx, 3, is_index, "int32 or int64")?;
        }
        let sig = cx.input(0)?;
        let (batch, signal) = match sig.shape.dims() {
            Some([b, s, _]) => (b.clone(), s.known()),
            Some(_) => return invalid!("the signal must be [batch, length, 1 or 2], found {sig}"),
            None => (Dim::Unknown, None),
        };
        let frame = match (cx.opt_input(3), cx.opt_input(2)) {
            (Some(_), _) => known_scalar(cx, 3),
            (None, Some(w)) => w
                .shape
                .dims()
                .and_then(|d| d.first()?.known().map(|n| n as i64)),
            (None, None) => signal.map(|s| s as i64),
        };
        let step = known_scalar(cx, 1);
        let frames = match (signal, frame, step) {
            (Some(s), Some(f), Some(st)) if st > 0 && f > 0 && f as u64 <= s => {
                Dim::Known((s - f as u64) / st as u64 + 1)
            }
            _ => Dim::Unknown,
        };
        let bins = match frame {
            Some(f) if f > 0 && self.onesided => Dim::Known(f as u64 / 2 + 1),
            Some(f) if f > 0 => Dim::Known(f as u64),
            _ => Dim::Unknown,
        };
        one(TensorType::new(
            d,
            Shape::Ranked(vec![batch, frames, bins, Dim::Known(2)]),
        ))
    }
}

macro_rules! window_infer {
    ($($op:ident),*) => {$(
        impl Infer for $op {
            fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                expect_dtype(cx, 0, is_index, "int32 or int64")?;
                check_output_dtype(self.output_datatype)?;
                let len = match known_scalar(cx, 0) {
                    Some(n) if n < 0 => return invalid!("the window size {n} is negative"),
                    Some(n) => Dim::Known(n as u64),
                    None => Dim::Unknown,
                };
                one(TensorType::new(self.output_datatype, Shape::Ranked(vec![len])))
            }
        }
    )*};
}

window_infer!(BlackmanWindow, HammingWindow, HannWindow);

impl Infer for MelWeightMatrix {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        for i in 0..3 {
            expect_dtype(cx, i, is_index, "int32 or int64")?;
        }
        for i in 3..5 {
            expect_dtype(cx, i, is_real_float, "a float type")?;
        }
        check_output_dtype(self.output_datatype)?;
        let bins = match known_scalar(cx, 1) {
            Some(n) if n < 0 => return invalid!("dft_length {n} is negative"),
            Some(n) => Dim::Known(n as u64 / 2 + 1),
            None => Dim::Unknown,
        };
        let mels = match known_scalar(cx, 0) {
            Some(n) if n < 0 => return invalid!("num_mel_bins {n} is negative"),
            Some(n) => Dim::Known(n as u64),
            None => Dim::Unknown,
        };
        one(TensorType::new(
            self.output_datatype,
            Shape::Ranked(vec![bins, mels]),
        ))
    }
}
