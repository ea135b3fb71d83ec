//! Shape and data-movement ops.

use super::*;
use crate::{attr_enum, no_infer};

attr_enum!(ScatterReduction { None = "none", Add = "add", Mul = "mul", Max = "max", Min = "min" });
attr_enum!(PadMode { Constant = "constant", Reflect = "reflect", Edge = "edge", Wrap = "wrap" });
attr_enum!(DepthToSpaceMode { Dcr = "DCR", Crd = "CRD" });

no_infer!(
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
