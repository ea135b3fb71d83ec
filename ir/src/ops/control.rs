//! Control flow: If, Loop, Scan.

use super::*;
use crate::no_infer;

no_infer!(If, Loop, Scan);
