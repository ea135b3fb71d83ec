//! Shape and data-movement ops.

use crate::no_eval;
use crate::ops::*;

no_eval!(
    Reshape,
    Flatten,
    Squeeze,
    Unsqueeze,
    Transpose,
    Concat,
    Split,
    Slice,
    Gather,
    GatherElements,
    GatherND,
    ScatterElements,
    ScatterND,
    Expand,
    Tile,
    Pad,
    Shape,
    Size,
    ConstantOfShape,
    Range,
    OneHot,
    NonZero,
    Compress,
    DepthToSpace,
    SpaceToDepth,
    EyeLike,
    Trilu,
    ReverseSequence,
    CenterCropPad,
    Unique,
);
