//! Recurrent ops: RNN, GRU, LSTM.

use crate::no_eval;
use crate::ops::*;

no_eval!(RNN, GRU, LSTM);
