//! Image and geometry ops: resize, grid sampling, ROI align, NMS.

use super::infer::{expect_dtype, normalize_axis, one};
use super::*;
use crate::attr_enum;
use crate::invalid;
use crate::shape::{Dim, Shape};

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

/// Scales or sizes, the two ways Resize states its output.
#[derive(Clone, Debug, PartialEq)]
pub enum ResizeTarget {
    Scales(Vec<f64>),
    Sizes(Vec<i64>),
}

/// The output extent and coordinate scale of one resized axis; `None`
/// where the input extent is unknown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResizeAxis {
    pub output: Option<u64>,
    pub scale: Option<f64>,
}

impl Resize {
    /// The axes `scales`, `sizes` and `roi` refer to, in their order.
    pub fn resize_axes(&self, rank: usize) -> Result<Vec<usize>, OpError> {
        let Some(axes) = &self.axes else {
            return Ok((0..rank).collect());
        };
        let mut out = Vec::with_capacity(axes.len());
        for &a in axes {
            let a = normalize_axis(a, rank)?;
            if out.contains(&a) {
                return invalid!("axis {a} appears twice in axes {axes:?}");
            }
            out.push(a);
        }
        Ok(out)
    }

    /// Output extents and coordinate scales of every axis of an input with
    /// the given (possibly unknown) extents.
    pub fn plan(
        &self,
        input: &[Option<u64>],
        target: &ResizeTarget,
    ) -> Result<Vec<ResizeAxis>, OpError> {
        let axes = self.resize_axes(input.len())?;
        let n = match target {
            ResizeTarget::Scales(s) => s.len(),
            ResizeTarget::Sizes(s) => s.len(),
        };
        if n != axes.len() {
            return invalid!("{n} scales or sizes for {} axes", axes.len());
        }
        let mut plan: Vec<ResizeAxis> = input
            .iter()
            .map(|&d| ResizeAxis {
                output: d,
                scale: Some(1.0),
            })
            .collect();
        match target {
            ResizeTarget::Scales(scales) => {
                for (&a, &s) in axes.iter().zip(scales) {
                    if !(s > 0.0 && s.is_finite()) {
                        return invalid!("scales must be positive, found {scales:?}");
                    }
                    let out = match input[a] {
                        Some(d) => Some(extent(d as f64 * s)?),
                        None => None,
                    };
                    plan[a] = ResizeAxis {
                        output: out,
                        scale: Some(s),
                    };
                }
            }
            ResizeTarget::Sizes(sizes) => {
                if let Some(&s) = sizes.iter().find(|&&s| s < 0) {
                    return invalid!("negative size {s} in {sizes:?}");
                }
                let ratio = |a: usize, s: i64| input[a].map(|d| s as f64 / d as f64);
                if self.keep_aspect_ratio_policy == AspectRatioPolicy::Stretch {
                    for (&a, &s) in axes.iter().zip(sizes) {
                        plan[a] = ResizeAxis {
                            output: Some(s as u64),
                            scale: ratio(a, s),
                        };
                    }
                } else {
                    let ratios: Option<Vec<f64>> =
                        axes.iter().zip(sizes).map(|(&a, &s)| ratio(a, s)).collect();
                    let scale = ratios.map(|r| {
                        let pick = if self.keep_aspect_ratio_policy == AspectRatioPolicy::NotLarger
                        {
                            f64::min
                        } else {
                            f64::max
                        };
                        r.into_iter().reduce(pick).unwrap_or(1.0)
                    });
                    for &a in &axes {
                        let out = match (scale, input[a]) {
                            // Rounded half up.
                            (Some(s), Some(d)) => Some(extent(s * d as f64 + 0.5)?),
                            _ => None,
                        };
                        plan[a] = ResizeAxis { output: out, scale };
                    }
                }
            }
        }
        Ok(plan)
    }
}

/// A non-negative float extent, truncated.
fn extent(x: f64) -> Result<u64, OpError> {
    if !(0.0..1e18).contains(&x) {
        return invalid!("resized extent {x} is out of range");
    }
    Ok(x.floor() as u64)
}

/// The resize target from known input values: `scales` (input 2) or
/// `sizes` (input 3), an empty tensor counting as absent. `Ok(None)` when
/// the one given is not known.
fn resize_target(cx: &InferCx) -> Result<Option<ResizeTarget>, OpError> {
    let empty = |i: usize| match cx.opt_input(i) {
        None => true,
        Some(t) => t.shape.numel() == Some(0),
    };
    if !empty(3) {
        return Ok(cx.ints(3).map(ResizeTarget::Sizes));
    }
    if !empty(2) {
        return Ok(cx.value(2).map(|t| ResizeTarget::Scales(t.to_f64_vec())));
    }
    invalid!("Resize needs scales or sizes")
}

impl Infer for Resize {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        let Some(dims) = x.dims() else {
            return one(x.clone());
        };
        let axes = self.resize_axes(dims.len())?;
        let mut out: Vec<Dim> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if axes.contains(&i) {
                    Dim::Unknown
                } else {
                    d.clone()
                }
            })
            .collect();
        if let Some(target) = resize_target(cx)? {
            let input: Vec<Option<u64>> = dims.iter().map(Dim::known).collect();
            let plan = self.plan(&input, &target)?;
            for &a in &axes {
                let stretch_size = matches!(&target, ResizeTarget::Sizes(_))
                    && self.keep_aspect_ratio_policy == AspectRatioPolicy::Stretch;
                out[a] = match plan[a].output {
                    Some(n) => Dim::Known(n),
                    // A scale of exactly 1 keeps even a symbolic extent.
                    None if !stretch_size && plan[a].scale == Some(1.0) => dims[a].clone(),
                    None => Dim::Unknown,
                };
            }
        }
        one(TensorType::new(x.dtype, Shape::Ranked(out)))
    }
}

impl Infer for GridSample {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let x = cx.input(0)?;
        expect_dtype(cx, 1, DType::is_float, "a float type")?;
        let grid = cx.input(1)?;
        let shape = match (x.dims(), grid.dims()) {
            (Some(xd), Some(gd)) => {
                if xd.len() < 3 || gd.len() != xd.len() {
                    return invalid!("input {} and grid {} do not match", x.shape, grid.shape);
                }
                if let Some(r) = gd[gd.len() - 1].known()
                    && r as usize != xd.len() - 2
                {
                    return invalid!(
                        "grid points have {r} coordinates for {} spatial axes",
                        xd.len() - 2
                    );
                }
                let mut d = vec![xd[0].clone(), xd[1].clone()];
                d.extend(gd[1..gd.len() - 1].iter().cloned());
                Shape::Ranked(d)
            }
            (Some(xd), None) => Shape::Ranked(vec![Dim::Unknown; xd.len()]),
            (None, Some(gd)) => Shape::Ranked(vec![Dim::Unknown; gd.len()]),
            (None, None) => Shape::UnknownRank,
        };
        one(TensorType::new(x.dtype, shape))
    }
}

impl Infer for AffineGrid {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = expect_dtype(cx, 0, DType::is_float, "a float type")?;
        if let Some(size) = cx.ints(1) {
            if !matches!(size.len(), 4 | 5) {
                return invalid!("size must have 4 or 5 values, found {size:?}");
            }
            let mut d = vec![size[0]];
            d.extend(&size[2..]);
            d.push(size.len() as i64 - 2);
            return one(TensorType::new(dtype, super::infer::shape_from_ints(&d)));
        }
        let n = cx
            .input(0)?
            .dims()
            .map_or(Dim::Unknown, |d| d.first().cloned().unwrap_or(Dim::Unknown));
        let shape = match cx.input(1)?.dims().and_then(|d| d.first()?.known()) {
            Some(4) => Shape::Ranked(vec![n, Dim::Unknown, Dim::Unknown, Dim::Known(2)]),
            Some(5) => Shape::Ranked(vec![
                n,
                Dim::Unknown,
                Dim::Unknown,
                Dim::Unknown,
                Dim::Known(3),
            ]),
            _ => Shape::UnknownRank,
        };
        one(TensorType::new(dtype, shape))
    }
}

impl Infer for RoiAlign {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        let dtype = expect_dtype(cx, 0, DType::is_float, "a float type")?;
        expect_dtype(cx, 2, DType::is_int, "an integer type")?;
        if self.output_height < 1 || self.output_width < 1 {
            return invalid!("output_height and output_width must be positive");
        }
        if let Some(r) = cx.input(0)?.rank()
            && r != 4
        {
            return invalid!("input must have rank 4, found {r}");
        }
        let rois = cx
            .input(1)?
            .dims()
            .map(|d| d[0].clone())
            .filter(Dim::is_known)
            .or(cx.input(2)?.dims().and_then(|d| d.first().cloned()))
            .unwrap_or(Dim::Unknown);
        let c = cx.input(0)?.dims().map_or(Dim::Unknown, |d| d[1].clone());
        one(TensorType::new(
            dtype,
            Shape::Ranked(vec![
                rois,
                c,
                Dim::Known(self.output_height as u64),
                Dim::Known(self.output_width as u64),
            ]),
        ))
    }
}

impl Infer for NonMaxSuppression {
    fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
        expect_dtype(cx, 0, DType::is_float, "a float type")?;
        expect_dtype(cx, 1, DType::is_float, "a float type")?;
        if !matches!(self.center_point_box, 0 | 1) {
            return invalid!(
                "center_point_box must be 0 or 1, found {}",
                self.center_point_box
            );
        }
        one(TensorType::new(
            DType::I64,
            Shape::Ranked(vec![Dim::Unknown, Dim::Known(3)]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn resize() -> Resize {
        Resize {
            antialias: false,
            axes: None,
            coordinate_transformation_mode: CoordinateTransform::HalfPixel,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            keep_aspect_ratio_policy: AspectRatioPolicy::Stretch,
            mode: ResizeMode::Nearest,
            nearest_mode: NearestMode::RoundPreferFloor,
        }
    }

    /// Output type of Resize on `x` with known scales (input 2) or sizes
    /// (input 3).
    fn infer(op: &Resize, x: &str, scales: Option<Vec<f32>>, sizes: Option<Vec<i64>>) -> String {
        let x = super::super::conv::tests::ty(x);
        let mut inputs = vec![Some(x), None, None, None];
        let mut values: Vec<Option<Arc<Tensor>>> = vec![None; 4];
        if let Some(s) = scales {
            inputs[2] = Some(TensorType::known(DType::F32, &[s.len()]));
            values[2] = Some(Arc::new(Tensor::from_vec(vec![s.len()], s)));
        }
        if let Some(s) = sizes {
            inputs[3] = Some(TensorType::known(DType::I64, &[s.len()]));
            values[3] = Some(Arc::new(Tensor::from_vec(vec![s.len()], s)));
        }
        let cx = InferCx {
            inputs: &inputs,
            values: &values,
            num_outputs: 1,
            syms: &[],
        };
        Infer::infer(op, &cx).unwrap()[0].to_string()
    }

    #[test]
    fn resize_extents() {
        let op = resize();
        // floor(5 × 1.5) = 7; a scale of 1 keeps a symbolic extent.
        assert_eq!(
            infer(&op, "f32[N,3,5,4]", Some(vec![1., 1., 1.5, 0.6]), None),
            "f32[N,3,7,2]"
        );
        let mut op = resize();
        op.axes = Some(vec![-1]);
        assert_eq!(
            infer(&op, "f32[N,3,H,4]", None, Some(vec![9])),
            "f32[N,3,H,9]"
        );
        // not_larger: scale min(6/4, 6/2) = 1.5, so 4 → 6 and 2 → 3.
        let mut op = resize();
        op.axes = Some(vec![2, 3]);
        op.keep_aspect_ratio_policy = AspectRatioPolicy::NotLarger;
        assert_eq!(
            infer(&op, "f32[1,1,4,2]", None, Some(vec![6, 6])),
            "f32[1,1,6,3]"
        );
    }
}
