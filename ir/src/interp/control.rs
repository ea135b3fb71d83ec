//! Control flow: If, Loop, Scan.

use crate::no_eval;
use crate::ops::*;

no_eval!(If, Loop, Scan);
