//! Image and geometry ops: resize, grid sampling, ROI align, NMS.

use super::*;
use crate::{attr_enum, no_infer};

attr_enum!(CoordinateTransform {
    HalfPixel = "half_pixel",
    HalfPixelSymmetric = "half_pixel_symmetric",
    PytorchHalfPixel = "pytorch_half_pixel",
    AlignCorners = "align_corners",
    Asymmetric = "asymmetric",
    TfCropAndResize = "tf_crop_and_resize",
});
attr_enum!(AspectRatioPolicy { Stretch = "stretch", NotLarger = "not_larger", NotSmaller = "not_smaller" });
attr_enum!(ResizeMode { Nearest = "nearest", Linear = "linear", Cubic = "cubic" });
attr_enum!(NearestMode {
    RoundPreferFloor = "round_prefer_floor",
    RoundPreferCeil = "round_prefer_ceil",
    Floor = "floor",
    Ceil = "ceil",
});
attr_enum!(GridSampleMode { Linear = "linear", Nearest = "nearest", Cubic = "cubic" });
attr_enum!(GridPaddingMode { Zeros = "zeros", Border = "border", Reflection = "reflection" });
attr_enum!(RoiCoordinateTransform { HalfPixel = "half_pixel", OutputHalfPixel = "output_half_pixel" });
attr_enum!(RoiPoolMode { Avg = "avg", Max = "max" });

no_infer!(Resize, GridSample, AffineGrid, RoiAlign, NonMaxSuppression);
