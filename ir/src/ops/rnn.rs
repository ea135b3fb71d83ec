//! Recurrent ops: RNN, GRU, LSTM.

use super::*;
use crate::{attr_enum, no_infer};

attr_enum!(RnnDirection { Forward = "forward", Reverse = "reverse", Bidirectional = "bidirectional" });

no_infer!(RNN, GRU, LSTM);
