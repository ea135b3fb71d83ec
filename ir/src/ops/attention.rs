//! Attention and rotary embeddings.

use super::*;
use crate::no_infer;

no_infer!(Attention, RotaryEmbedding);
