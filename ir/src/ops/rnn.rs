//! Recurrent ops: RNN, GRU, LSTM.

use super::infer::{Infer, InferCx, expect_dtype};
use super::*;
use crate::shape::{Dim, Shape};
use crate::{attr_enum, invalid};

attr_enum!(RnnDirection { Forward = "forward", Reverse = "reverse", Bidirectional = "bidirectional" });

impl RnnDirection {
    pub fn count(self) -> usize {
        match self {
            RnnDirection::Bidirectional => 2,
            _ => 1,
        }
    }
}

/// What the three recurrent ops share: gates per step, direction, layout.
pub struct RnnShape {
    /// Gates per hidden unit: 1 (RNN), 3 (GRU), 4 (LSTM).
    pub gates: usize,
    pub direction: RnnDirection,
    pub hidden_size: Option<i64>,
    /// 0: time-major `[seq, batch, …]`; 1: batch-major.
    pub layout: i64,
}

impl RnnShape {
    pub fn check_layout(&self) -> Result<bool, OpError> {
        match self.layout {
            0 => Ok(false),
            1 => Ok(true),
            l => invalid!("layout must be 0 or 1, found {l}"),
        }
    }

    /// Output types: Y, Y_h (and Y_c for LSTM) as many as the node has.
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let d = expect_dtype(
            cx,
            0,
            |d| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16),
            "a float type",
        )?;
        for i in [1, 2] {
            if cx.dtype(i)? != d {
                return invalid!("input {i} is {}, X is {d}", cx.dtype(i)?);
            }
        }
        let batch_major = self.check_layout()?;
        let dirs = Dim::Known(self.direction.count() as u64);
        let (seq, batch) = match cx.input(0)?.shape.dims() {
            Some([a, b, _]) if batch_major => (b.clone(), a.clone()),
            Some([a, b, _]) => (a.clone(), b.clone()),
            Some(_) => return invalid!("X must have rank 3, found {}", cx.input(0)?),
            None => (Dim::Unknown, Dim::Unknown),
        };
        let hidden = match self.hidden_size {
            Some(h) if h < 1 => return invalid!("hidden_size must be positive, found {h}"),
            Some(h) => Dim::Known(h as u64),
            None => match cx.input(2)?.shape.dims() {
                Some([_, _, h]) => h.clone(),
                _ => Dim::Unknown,
            },
        };
        let y = if batch_major {
            vec![batch.clone(), seq, dirs.clone(), hidden.clone()]
        } else {
            vec![seq, dirs.clone(), batch.clone(), hidden.clone()]
        };
        let state = if batch_major {
            vec![batch, dirs, hidden]
        } else {
            vec![dirs, batch, hidden]
        };
        let mut out = vec![TensorType::new(d, Shape::Ranked(y))];
        for _ in 1..cx.num_outputs {
            out.push(TensorType::new(d, Shape::Ranked(state.clone())));
        }
        Ok(out)
    }
}

impl RNN {
    pub fn shape(&self) -> RnnShape {
        RnnShape {
            gates: 1,
            direction: self.direction,
            hidden_size: self.hidden_size,
            layout: self.layout,
        }
    }
}

impl GRU {
    pub fn shape(&self) -> RnnShape {
        RnnShape {
            gates: 3,
            direction: self.direction,
            hidden_size: self.hidden_size,
            layout: self.layout,
        }
    }
}

impl LSTM {
    pub fn shape(&self) -> RnnShape {
        RnnShape {
            gates: 4,
            direction: self.direction,
            hidden_size: self.hidden_size,
            layout: self.layout,
        }
    }
}

impl Infer for RNN {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        self.shape().infer(cx)
    }
}

impl Infer for GRU {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        self.shape().infer(cx)
    }
}

impl Infer for LSTM {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        self.shape().infer(cx)
    }
}
