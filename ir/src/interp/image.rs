//! Image and geometry ops: resize, grid sampling, ROI align, NMS.

use crate::no_eval;
use crate::ops::*;

no_eval!(Resize, GridSample, AffineGrid, RoiAlign, NonMaxSuppression);
