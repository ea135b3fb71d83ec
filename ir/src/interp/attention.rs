//! Attention and rotary embeddings.

use crate::no_eval;
use crate::ops::*;

no_eval!(Attention, RotaryEmbedding);
