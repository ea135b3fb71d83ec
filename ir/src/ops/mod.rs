//! The op set of Graph IR, declared once.
//!
//! Each op is one line of the [`ops!`] table: its Rust type, its text name,
//! the number of inputs and outputs it takes, and its attributes with their
//! types and defaults. From the table follow the op structs, the [`Op`] enum,
//! attribute parsing and printing (shared by the text format and the ONNX
//! importer), and the dispatch to type inference ([`Infer`]) and to the
//! reference interpreter ([`Eval`](crate::interp::Eval)). A new op must
//! implement both traits, so adding one to the table breaks the build until
//! every place that must handle it does.
//!
//! Semantics follow the newest ONNX opset of each op; the importer rewrites
//! older opsets into this form. Attribute names are ONNX's.

#![allow(non_snake_case)]

pub mod infer;

mod attention;
mod control;
mod conv;
mod elementwise;
mod image;
mod linalg;
mod loss;
mod ml;
mod norm;
mod quant;
mod reduce;
mod rnn;
mod signal;
mod string;
mod tensor;

use std::ops::RangeInclusive;
use std::sync::Arc;

pub use attention::*;
pub use control::*;
pub use conv::*;
pub use elementwise::*;
pub use image::*;
pub use infer::{Infer, InferCx};
pub use linalg::*;
pub use loss::*;
#[allow(unused_imports)] // the ml group declares no attribute enums yet
pub use ml::*;
pub use norm::*;
pub use quant::*;
pub use reduce::*;
pub use rnn::*;
pub use signal::*;
pub use string::*;
pub use tensor::*;

use crate::attr::{AttrError, AttrType, AttrValue, Attrs, non_default};
use crate::dtype::DType;
use crate::graph::Graph;
use crate::interp::{Eval, EvalCx};
use crate::shape::TensorType;
use crate::tensor::Tensor;

/// "Any number" in arity ranges.
const N: usize = usize::MAX;

/// Why an op cannot be typed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// Saturn has no implementation of this op (or of this case of it).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The inputs or attributes are not valid for the op.
    #[error("{0}")]
    Invalid(String),
}

/// `Err(OpError::Invalid(format!(...)))`.
#[macro_export]
macro_rules! invalid {
    ($($t:tt)*) => { Err($crate::ops::OpError::Invalid(format!($($t)*))) };
}

/// `Err(OpError::Unsupported(format!(...)))`.
#[macro_export]
macro_rules! unsupported {
    ($($t:tt)*) => { Err($crate::ops::OpError::Unsupported(format!($($t)*))) };
}

macro_rules! attr_default {
    ($ty:ty) => {
        None
    };
    ($ty:ty, $e:expr) => {
        Some((|| $e) as fn() -> $ty)
    };
}

macro_rules! ops {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident $text:literal ($ins:expr => $outs:expr)
            { $($field:ident : $fty:ty $(= $default:expr)?),* $(,)? }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Clone, Debug, PartialEq)]
            pub struct $name { $(pub $field: $fty),* }

            impl $name {
                pub const NAME: &'static str = $text;

                #[allow(unused_variables)]
                pub fn from_attrs(attrs: &mut Attrs) -> Result<Self, AttrError> {
                    Ok(Self { $($field: attrs.take::<$fty>(stringify!($field), attr_default!($fty $(, $default)?))?),* })
                }

                /// Attributes that differ from their defaults, in declaration order.
                pub fn attrs(&self) -> Vec<(&'static str, AttrValue)> {
                    #[allow(unused_mut)]
                    let mut out = Vec::new();
                    $(
                        if let Some(v) = non_default(&self.$field, attr_default!($fty $(, $default)?)) {
                            out.push((stringify!($field), v));
                        }
                    )*
                    out
                }

                #[allow(unused_mut)]
                fn subgraphs(&self) -> Vec<&Arc<Graph>> {
                    let mut out = Vec::new();
                    $(out.extend(AttrType::graphs(&self.$field));)*
                    out
                }

                #[allow(unused_mut)]
                fn subgraphs_mut(&mut self) -> Vec<&mut Arc<Graph>> {
                    let mut out = Vec::new();
                    $(out.extend(AttrType::graphs_mut(&mut self.$field));)*
                    out
                }
            }

            impl From<$name> for Op {
                fn from(o: $name) -> Op { Op::$name(o) }
            }
        )*

        /// An op with its attributes.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op { $($name($name)),* }

        impl Op {
            /// The op's name in the text format.
            pub fn name(&self) -> &'static str {
                match self { $(Op::$name(_) => $text),* }
            }

            /// The op's name in ONNX (its Rust type name).
            pub fn onnx_name(&self) -> &'static str {
                match self { $(Op::$name(_) => stringify!($name)),* }
            }

            /// Every op's (text name, ONNX name).
            pub fn all_names() -> &'static [(&'static str, &'static str)] {
                &[$(($text, stringify!($name))),*]
            }

            /// Builds an op from its text name; `None` for an unknown name.
            /// Unknown attributes are errors.
            pub fn from_text(name: &str, mut attrs: Attrs) -> Option<Result<Op, AttrError>> {
                let op = match name {
                    $($text => $name::from_attrs(&mut attrs).map(Op::$name),)*
                    _ => return None,
                };
                Some(op.and_then(|op| attrs.finish().map(|()| op)))
            }

            /// Builds an op from its ONNX name, taking the attributes it
            /// declares out of `attrs` and leaving the rest.
            pub fn from_onnx(op_type: &str, attrs: &mut Attrs) -> Option<Result<Op, AttrError>> {
                Some(match op_type {
                    $(stringify!($name) => $name::from_attrs(attrs).map(Op::$name),)*
                    _ => return None,
                })
            }

            /// Attributes that differ from their defaults.
            pub fn attrs(&self) -> Vec<(&'static str, AttrValue)> {
                match self { $(Op::$name(o) => o.attrs()),* }
            }

            /// How many inputs the op takes (trailing optional ones may be left out).
            pub fn input_arity(&self) -> RangeInclusive<usize> {
                match self { $(Op::$name(_) => $ins),* }
            }

            /// How many outputs the op has.
            pub fn output_arity(&self) -> RangeInclusive<usize> {
                match self { $(Op::$name(_) => $outs),* }
            }

            /// Subgraphs held in attributes (`if`, `loop`, `scan`).
            pub fn subgraphs(&self) -> Vec<&Arc<Graph>> {
                match self { $(Op::$name(o) => o.subgraphs()),* }
            }

            /// Subgraphs held in attributes, to change them.
            pub fn subgraphs_mut(&mut self) -> Vec<&mut Arc<Graph>> {
                match self { $(Op::$name(o) => o.subgraphs_mut()),* }
            }

            /// Output types from input types (and known input values).
            pub fn infer(&self, cx: &InferCx) -> Result<Vec<TensorType>, OpError> {
                match self { $(Op::$name(o) => Infer::infer(o, cx)),* }
            }

            /// Evaluates the op with the reference interpreter.
            pub fn eval(&self, cx: &EvalCx) -> Result<Vec<Tensor>, OpError> {
                match self { $(Op::$name(o) => Eval::eval(o, cx)),* }
            }
        }
    };
}

ops! {
    // ---- elementwise: unary math ----
    Abs "abs" (1..=1 => 1..=1) {}
    Acos "acos" (1..=1 => 1..=1) {}
    Acosh "acosh" (1..=1 => 1..=1) {}
    Asin "asin" (1..=1 => 1..=1) {}
    Asinh "asinh" (1..=1 => 1..=1) {}
    Atan "atan" (1..=1 => 1..=1) {}
    Atanh "atanh" (1..=1 => 1..=1) {}
    BitwiseNot "bitwise_not" (1..=1 => 1..=1) {}
    Ceil "ceil" (1..=1 => 1..=1) {}
    Cos "cos" (1..=1 => 1..=1) {}
    Cosh "cosh" (1..=1 => 1..=1) {}
    Erf "erf" (1..=1 => 1..=1) {}
    Exp "exp" (1..=1 => 1..=1) {}
    Floor "floor" (1..=1 => 1..=1) {}
    Identity "identity" (1..=1 => 1..=1) {}
    IsNaN "is_nan" (1..=1 => 1..=1) {}
    IsInf "is_inf" (1..=1 => 1..=1) { detect_negative: bool = true, detect_positive: bool = true }
    Log "log" (1..=1 => 1..=1) {}
    Neg "neg" (1..=1 => 1..=1) {}
    Not "not" (1..=1 => 1..=1) {}
    Reciprocal "reciprocal" (1..=1 => 1..=1) {}
    Round "round" (1..=1 => 1..=1) {}
    Sign "sign" (1..=1 => 1..=1) {}
    Sin "sin" (1..=1 => 1..=1) {}
    Sinh "sinh" (1..=1 => 1..=1) {}
    Sqrt "sqrt" (1..=1 => 1..=1) {}
    Tan "tan" (1..=1 => 1..=1) {}
    Tanh "tanh" (1..=1 => 1..=1) {}
    // ---- elementwise: activations ----
    Celu "celu" (1..=1 => 1..=1) { alpha: f32 = 1.0 }
    Elu "elu" (1..=1 => 1..=1) { alpha: f32 = 1.0 }
    Gelu "gelu" (1..=1 => 1..=1) { approximate: GeluApproximation = GeluApproximation::None }
    HardSigmoid "hard_sigmoid" (1..=1 => 1..=1) { alpha: f32 = 0.2, beta: f32 = 0.5 }
    HardSwish "hard_swish" (1..=1 => 1..=1) {}
    LeakyRelu "leaky_relu" (1..=1 => 1..=1) { alpha: f32 = 0.01 }
    Mish "mish" (1..=1 => 1..=1) {}
    PRelu "prelu" (2..=2 => 1..=1) {}
    Relu "relu" (1..=1 => 1..=1) {}
    Selu "selu" (1..=1 => 1..=1) { alpha: f32 = 1.673_263_2, gamma: f32 = 1.050_701 }
    Shrink "shrink" (1..=1 => 1..=1) { bias: f32 = 0.0, lambd: f32 = 0.5 }
    Sigmoid "sigmoid" (1..=1 => 1..=1) {}
    Softplus "softplus" (1..=1 => 1..=1) {}
    Softsign "softsign" (1..=1 => 1..=1) {}
    Swish "swish" (1..=1 => 1..=1) { alpha: f32 = 1.0 }
    ThresholdedRelu "thresholded_relu" (1..=1 => 1..=1) { alpha: f32 = 1.0 }
    SwiGLU "swiglu" (2..=2 => 1..=1) { alpha: f32 = 1.0 }
    Clip "clip" (1..=3 => 1..=1) {}
    // ---- elementwise: binary, broadcasting ----
    Add "add" (2..=2 => 1..=1) {}
    Sub "sub" (2..=2 => 1..=1) {}
    Mul "mul" (2..=2 => 1..=1) {}
    Div "div" (2..=2 => 1..=1) {}
    Pow "pow" (2..=2 => 1..=1) {}
    Mod "mod" (2..=2 => 1..=1) { fmod: bool = false }
    And "and" (2..=2 => 1..=1) {}
    Or "or" (2..=2 => 1..=1) {}
    Xor "xor" (2..=2 => 1..=1) {}
    Equal "equal" (2..=2 => 1..=1) {}
    Greater "greater" (2..=2 => 1..=1) {}
    GreaterOrEqual "greater_or_equal" (2..=2 => 1..=1) {}
    Less "less" (2..=2 => 1..=1) {}
    LessOrEqual "less_or_equal" (2..=2 => 1..=1) {}
    BitShift "bit_shift" (2..=2 => 1..=1) { direction: ShiftDirection }
    BitwiseAnd "bitwise_and" (2..=2 => 1..=1) {}
    BitwiseOr "bitwise_or" (2..=2 => 1..=1) {}
    BitwiseXor "bitwise_xor" (2..=2 => 1..=1) {}
    Where "where" (3..=3 => 1..=1) {}
    Max "max" (1..=N => 1..=1) {}
    Min "min" (1..=N => 1..=1) {}
    Mean "mean" (1..=N => 1..=1) {}
    Sum "sum" (1..=N => 1..=1) {}
    // ---- elementwise: type conversion ----
    Cast "cast" (1..=1 => 1..=1) { to: DType, saturate: bool = true, round_mode: RoundMode = RoundMode::Up }
    CastLike "cast_like" (2..=2 => 1..=1) { saturate: bool = true, round_mode: RoundMode = RoundMode::Up }
    // ---- optional values (tensors only: an omitted input is an empty optional) ----
    OptionalHasElement "optional_has_element" (0..=1 => 1..=1) {}
    OptionalGetElement "optional_get_element" (1..=1 => 1..=1) {}

    // ---- reductions and scans along an axis ----
    ReduceL1 "reduce_l1" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceL2 "reduce_l2" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceLogSum "reduce_log_sum" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceLogSumExp "reduce_log_sum_exp" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceMax "reduce_max" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceMean "reduce_mean" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceMin "reduce_min" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceProd "reduce_prod" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceSum "reduce_sum" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ReduceSumSquare "reduce_sum_square" (1..=2 => 1..=1) { keepdims: bool = true, noop_with_empty_axes: bool = false }
    ArgMax "arg_max" (1..=1 => 1..=1) { axis: i64 = 0, keepdims: bool = true, select_last_index: bool = false }
    ArgMin "arg_min" (1..=1 => 1..=1) { axis: i64 = 0, keepdims: bool = true, select_last_index: bool = false }
    /// With Saturn's extensions: an optional mask input added to the
    /// scaled logits, and the algorithm that computes each row.
    Softmax "softmax" (1..=2 => 1..=1) {
        axis: i64 = -1, scale: f32 = 1.0, algorithm: SoftmaxAlgorithm = SoftmaxAlgorithm::ThreePass,
    }
    LogSoftmax "log_softmax" (1..=1 => 1..=1) { axis: i64 = -1 }
    Hardmax "hardmax" (1..=1 => 1..=1) { axis: i64 = -1 }
    CumSum "cum_sum" (2..=2 => 1..=1) { exclusive: bool = false, reverse: bool = false }
    CumProd "cum_prod" (2..=2 => 1..=1) { exclusive: bool = false, reverse: bool = false }
    TopK "top_k" (2..=2 => 2..=2) { axis: i64 = -1, largest: bool = true, sorted: bool = true }

    // ---- neural network: convolution and pooling ----
    Conv "conv" (2..=3 => 1..=1) {
        auto_pad: AutoPad = AutoPad::NotSet, dilations: Option<Vec<i64>>, group: i64 = 1,
        kernel_shape: Option<Vec<i64>>, pads: Option<Vec<i64>>, strides: Option<Vec<i64>>,
    }
    ConvInteger "conv_integer" (2..=4 => 1..=1) {
        auto_pad: AutoPad = AutoPad::NotSet, dilations: Option<Vec<i64>>, group: i64 = 1,
        kernel_shape: Option<Vec<i64>>, pads: Option<Vec<i64>>, strides: Option<Vec<i64>>,
    }
    QLinearConv "qlinear_conv" (8..=9 => 1..=1) {
        auto_pad: AutoPad = AutoPad::NotSet, dilations: Option<Vec<i64>>, group: i64 = 1,
        kernel_shape: Option<Vec<i64>>, pads: Option<Vec<i64>>, strides: Option<Vec<i64>>,
    }
    ConvTranspose "conv_transpose" (2..=3 => 1..=1) {
        auto_pad: AutoPad = AutoPad::NotSet, dilations: Option<Vec<i64>>, group: i64 = 1,
        kernel_shape: Option<Vec<i64>>, output_padding: Option<Vec<i64>>,
        output_shape: Option<Vec<i64>>, pads: Option<Vec<i64>>, strides: Option<Vec<i64>>,
    }
    DeformConv "deform_conv" (3..=5 => 1..=1) {
        dilations: Option<Vec<i64>>, group: i64 = 1, kernel_shape: Option<Vec<i64>>,
        offset_group: i64 = 1, pads: Option<Vec<i64>>, strides: Option<Vec<i64>>,
    }
    AveragePool "average_pool" (1..=1 => 1..=1) {
        auto_pad: AutoPad = AutoPad::NotSet, ceil_mode: bool = false, count_include_pad: bool = false,
        dilations: Option<Vec<i64>>, kernel_shape: Vec<i64>, pads: Option<Vec<i64>>, strides: Option<Vec<i64>>,
    }
    MaxPool "max_pool" (1..=1 => 1..=2) {
        auto_pad: AutoPad = AutoPad::NotSet, ceil_mode: bool = false, dilations: Option<Vec<i64>>,
        kernel_shape: Vec<i64>, pads: Option<Vec<i64>>, storage_order: i64 = 0, strides: Option<Vec<i64>>,
    }
    LpPool "lp_pool" (1..=1 => 1..=1) {
        auto_pad: AutoPad = AutoPad::NotSet, ceil_mode: bool = false, dilations: Option<Vec<i64>>,
        kernel_shape: Vec<i64>, p: i64 = 2, pads: Option<Vec<i64>>, strides: Option<Vec<i64>>,
    }
    GlobalAveragePool "global_average_pool" (1..=1 => 1..=1) {}
    GlobalMaxPool "global_max_pool" (1..=1 => 1..=1) {}
    GlobalLpPool "global_lp_pool" (1..=1 => 1..=1) { p: i64 = 2 }
    MaxUnpool "max_unpool" (2..=3 => 1..=1) { kernel_shape: Vec<i64>, pads: Option<Vec<i64>>, strides: Option<Vec<i64>> }
    Col2Im "col2im" (3..=3 => 1..=1) { dilations: Option<Vec<i64>>, pads: Option<Vec<i64>>, strides: Option<Vec<i64>> }

    // ---- neural network: normalization ----
    BatchNormalization "batch_normalization" (5..=5 => 1..=3) { epsilon: f32 = 1e-5, momentum: f32 = 0.9, training_mode: bool = false }
    InstanceNormalization "instance_normalization" (3..=3 => 1..=1) { epsilon: f32 = 1e-5 }
    LayerNormalization "layer_normalization" (2..=3 => 1..=3) { axis: i64 = -1, epsilon: f32 = 1e-5, stash_type: i64 = 1 }
    GroupNormalization "group_normalization" (3..=3 => 1..=1) { epsilon: f32 = 1e-5, num_groups: i64, stash_type: i64 = 1 }
    RMSNormalization "rms_normalization" (2..=2 => 1..=1) { axis: i64 = -1, epsilon: f32 = 1e-5, stash_type: i64 = 1 }
    LpNormalization "lp_normalization" (1..=1 => 1..=1) { axis: i64 = -1, p: i64 = 2 }
    MeanVarianceNormalization "mean_variance_normalization" (1..=1 => 1..=1) { axes: Vec<i64> = vec![0, 2, 3] }
    LRN "lrn" (1..=1 => 1..=1) { alpha: f32 = 1e-4, beta: f32 = 0.75, bias: f32 = 1.0, size: i64 }
    Dropout "dropout" (1..=3 => 1..=2) { seed: Option<i64> }

    // ---- neural network: matrix products ----
    Gemm "gemm" (2..=3 => 1..=1) { alpha: f32 = 1.0, beta: f32 = 1.0, transA: bool = false, transB: bool = false }
    MatMul "matmul" (2..=2 => 1..=1) {}
    MatMulInteger "matmul_integer" (2..=4 => 1..=1) {}
    /// Saturn: a small-M product scheduled as FlashDecoding++'s flat GEMM.
    FlatGemm "flat_gemm" (2..=3 => 1..=1) { m_pad: i64 = 8, n_tile: i64 = 64, k_split: i64 = 1, double_buffer: bool = false }
    /// Saturn: a row vector (M = 1) times a matrix.
    Gemv "gemv" (2..=3 => 1..=1) {}
    QLinearMatMul "qlinear_matmul" (8..=8 => 1..=1) {}
    Einsum "einsum" (1..=N => 1..=1) { equation: String }
    Det "det" (1..=1 => 1..=1) {}

    // ---- neural network: attention ----
    Attention "attention" (3..=7 => 1..=4) {
        is_causal: bool = false, kv_num_heads: Option<i64>, left_window_size: i64 = -1,
        q_num_heads: Option<i64>, qk_matmul_output_mode: i64 = 0, right_window_size: i64 = -1,
        scale: Option<f32>, softcap: f32 = 0.0, softmax_precision: Option<DType>,
    }
    RotaryEmbedding "rotary_embedding" (3..=4 => 1..=1) { interleaved: bool = false, num_heads: Option<i64>, rotary_embedding_dim: i64 = 0 }
    LinearAttention "linear_attention" (3..=6 => 2..=2) {
        chunk_size: i64 = 64, kv_num_heads: i64, q_num_heads: i64, scale: f32 = 0.0,
        update_rule: LinearAttentionRule = LinearAttentionRule::GatedDelta,
    }
    CausalConvWithState "causal_conv_with_state" (2..=4 => 2..=2) { activation: CausalConvActivation = CausalConvActivation::None }
    /// Domain `ai.onnx.preview`.
    FlexAttention "flex_attention" (3..=3 => 1..=1) {
        prob_mod: Option<Arc<Graph>>, scale: Option<f32>, score_mod: Option<Arc<Graph>>,
        softmax_precision: Option<DType>,
    }

    // ---- neural network: quantization ----
    QuantizeLinear "quantize_linear" (2..=3 => 1..=1) {
        axis: i64 = 1, block_size: i64 = 0, output_dtype: Option<DType>, precision: Option<DType>, saturate: bool = true,
    }
    DequantizeLinear "dequantize_linear" (2..=3 => 1..=1) { axis: i64 = 1, block_size: i64 = 0, output_dtype: Option<DType> }
    DynamicQuantizeLinear "dynamic_quantize_linear" (1..=1 => 3..=3) {}

    // ---- neural network: losses and training ----
    NegativeLogLikelihoodLoss "nll_loss" (2..=3 => 1..=1) { ignore_index: Option<i64>, reduction: LossReduction = LossReduction::Mean }
    SoftmaxCrossEntropyLoss "softmax_cross_entropy_loss" (2..=3 => 1..=2) { ignore_index: Option<i64>, reduction: LossReduction = LossReduction::Mean }
    Adagrad "adagrad" (5..=N => 2..=N) { decay_factor: f32 = 0.0, epsilon: f32 = 1e-6, norm_coefficient: f32 = 0.0 }
    Adam "adam" (6..=N => 3..=N) { alpha: f32 = 0.9, beta: f32 = 0.999, epsilon: f32 = 1e-6, norm_coefficient: f32 = 0.0, norm_coefficient_post: f32 = 0.0 }
    Momentum "momentum" (5..=N => 2..=N) { alpha: f32, beta: f32, mode: MomentumMode, norm_coefficient: f32 }

    // ---- recurrent ----
    RNN "rnn" (3..=6 => 0..=2) {
        activation_alpha: Vec<f32> = vec![], activation_beta: Vec<f32> = vec![], activations: Vec<String> = vec![],
        clip: Option<f32>, direction: RnnDirection = RnnDirection::Forward, hidden_size: Option<i64>, layout: i64 = 0,
    }
    GRU "gru" (3..=6 => 0..=2) {
        activation_alpha: Vec<f32> = vec![], activation_beta: Vec<f32> = vec![], activations: Vec<String> = vec![],
        clip: Option<f32>, direction: RnnDirection = RnnDirection::Forward, hidden_size: Option<i64>, layout: i64 = 0,
        linear_before_reset: bool = false,
    }
    LSTM "lstm" (3..=8 => 0..=3) {
        activation_alpha: Vec<f32> = vec![], activation_beta: Vec<f32> = vec![], activations: Vec<String> = vec![],
        clip: Option<f32>, direction: RnnDirection = RnnDirection::Forward, hidden_size: Option<i64>, layout: i64 = 0,
        input_forget: bool = false,
    }

    // ---- tensor: shape and data movement ----
    Reshape "reshape" (2..=2 => 1..=1) { allowzero: bool = false }
    Flatten "flatten" (1..=1 => 1..=1) { axis: i64 = 1 }
    Squeeze "squeeze" (1..=2 => 1..=1) {}
    Unsqueeze "unsqueeze" (2..=2 => 1..=1) {}
    Transpose "transpose" (1..=1 => 1..=1) { perm: Option<Vec<i64>> }
    Concat "concat" (1..=N => 1..=1) { axis: i64 }
    Split "split" (1..=2 => 1..=N) { axis: i64 = 0, num_outputs: Option<i64> }
    Slice "slice" (3..=5 => 1..=1) {}
    Gather "gather" (2..=2 => 1..=1) { axis: i64 = 0 }
    GatherElements "gather_elements" (2..=2 => 1..=1) { axis: i64 = 0 }
    GatherND "gather_nd" (2..=2 => 1..=1) { batch_dims: i64 = 0 }
    ScatterElements "scatter_elements" (3..=3 => 1..=1) { axis: i64 = 0, reduction: ScatterReduction = ScatterReduction::None }
    ScatterND "scatter_nd" (3..=3 => 1..=1) { reduction: ScatterReduction = ScatterReduction::None }
    Expand "expand" (2..=2 => 1..=1) {}
    Tile "tile" (2..=2 => 1..=1) {}
    Pad "pad" (2..=4 => 1..=1) { mode: PadMode = PadMode::Constant }
    Shape "shape" (1..=1 => 1..=1) { end: Option<i64>, start: i64 = 0 }
    Size "size" (1..=1 => 1..=1) {}
    ConstantOfShape "constant_of_shape" (1..=1 => 1..=1) { value: Option<Tensor> }
    Range "range" (3..=3 => 1..=1) {}
    OneHot "one_hot" (3..=3 => 1..=1) { axis: i64 = -1 }
    NonZero "non_zero" (1..=1 => 1..=1) {}
    Compress "compress" (2..=2 => 1..=1) { axis: Option<i64> }
    DepthToSpace "depth_to_space" (1..=1 => 1..=1) { blocksize: i64, mode: DepthToSpaceMode = DepthToSpaceMode::Dcr }
    SpaceToDepth "space_to_depth" (1..=1 => 1..=1) { blocksize: i64, mode: DepthToSpaceMode = DepthToSpaceMode::Dcr }
    EyeLike "eye_like" (1..=1 => 1..=1) { dtype: Option<DType>, k: i64 = 0 }
    Trilu "trilu" (1..=2 => 1..=1) { upper: bool = true }
    ReverseSequence "reverse_sequence" (2..=2 => 1..=1) { batch_axis: i64 = 1, time_axis: i64 = 0 }
    CenterCropPad "center_crop_pad" (2..=2 => 1..=1) { axes: Option<Vec<i64>> }
    Unique "unique" (1..=1 => 1..=4) { axis: Option<i64>, sorted: bool = true }
    TensorScatter "tensor_scatter" (2..=3 => 1..=1) { axis: i64 = -2, mode: TensorScatterMode = TensorScatterMode::Linear }
    BitCast "bit_cast" (1..=1 => 1..=1) { to: DType }

    // ---- image and geometry ----
    Resize "resize" (1..=4 => 1..=1) {
        antialias: bool = false, axes: Option<Vec<i64>>,
        coordinate_transformation_mode: CoordinateTransform = CoordinateTransform::HalfPixel,
        cubic_coeff_a: f32 = -0.75, exclude_outside: bool = false, extrapolation_value: f32 = 0.0,
        keep_aspect_ratio_policy: AspectRatioPolicy = AspectRatioPolicy::Stretch,
        mode: ResizeMode = ResizeMode::Nearest, nearest_mode: NearestMode = NearestMode::RoundPreferFloor,
    }
    GridSample "grid_sample" (2..=2 => 1..=1) { align_corners: bool = false, mode: GridSampleMode = GridSampleMode::Linear, padding_mode: GridPaddingMode = GridPaddingMode::Zeros }
    AffineGrid "affine_grid" (2..=2 => 1..=1) { align_corners: bool = false }
    RoiAlign "roi_align" (3..=3 => 1..=1) {
        coordinate_transformation_mode: RoiCoordinateTransform = RoiCoordinateTransform::HalfPixel,
        mode: RoiPoolMode = RoiPoolMode::Avg, output_height: i64 = 1, output_width: i64 = 1,
        sampling_ratio: i64 = 0, spatial_scale: f32 = 1.0,
    }
    NonMaxSuppression "non_max_suppression" (2..=5 => 1..=1) { center_point_box: i64 = 0 }

    // ---- signal processing ----
    DFT "dft" (1..=3 => 1..=1) { inverse: bool = false, onesided: bool = false }
    STFT "stft" (2..=4 => 1..=1) { onesided: bool = true }
    BlackmanWindow "blackman_window" (1..=1 => 1..=1) { output_datatype: DType = DType::F32, periodic: bool = true }
    HammingWindow "hamming_window" (1..=1 => 1..=1) { output_datatype: DType = DType::F32, periodic: bool = true }
    HannWindow "hann_window" (1..=1 => 1..=1) { output_datatype: DType = DType::F32, periodic: bool = true }
    MelWeightMatrix "mel_weight_matrix" (5..=5 => 1..=1) { output_datatype: DType = DType::F32 }

    // ---- control flow ----
    If "if" (1..=1 => 1..=N) { then_branch: Arc<Graph>, else_branch: Arc<Graph> }
    Loop "loop" (2..=N => 1..=N) { body: Arc<Graph> }
    Scan "scan" (1..=N => 1..=N) {
        body: Arc<Graph>, num_scan_inputs: i64, scan_input_axes: Option<Vec<i64>>,
        scan_input_directions: Option<Vec<i64>>, scan_output_axes: Option<Vec<i64>>,
        scan_output_directions: Option<Vec<i64>>,
    }

    // ---- strings ----
    StringConcat "string_concat" (2..=2 => 1..=1) {}
    StringNormalizer "string_normalizer" (1..=1 => 1..=1) {
        case_change_action: CaseChange = CaseChange::None, is_case_sensitive: bool = false,
        locale: Option<String>, stopwords: Vec<String> = vec![],
    }
    StringSplit "string_split" (1..=1 => 2..=2) { delimiter: Option<String>, maxsplit: Option<i64> }
    RegexFullMatch "regex_full_match" (1..=1 => 1..=1) { pattern: String }
    TfIdfVectorizer "tfidf_vectorizer" (1..=1 => 1..=1) {
        max_gram_length: i64, max_skip_count: i64, min_gram_length: i64, mode: String,
        ngram_counts: Vec<i64>, ngram_indexes: Vec<i64>, pool_int64s: Option<Vec<i64>>,
        pool_strings: Option<Vec<String>>, weights: Option<Vec<f32>>,
    }

    // ---- classical ML (domain ai.onnx.ml) ----
    ArrayFeatureExtractor "ml.array_feature_extractor" (2..=2 => 1..=1) {}
    Binarizer "ml.binarizer" (1..=1 => 1..=1) { threshold: f32 = 0.0 }
    LabelEncoder "ml.label_encoder" (1..=1 => 1..=1) {
        default_float: f32 = -0.0, default_int64: i64 = -1, default_string: String = "_Unused".into(),
        default_tensor: Option<Tensor>, keys_floats: Option<Vec<f32>>, keys_int64s: Option<Vec<i64>>,
        keys_strings: Option<Vec<String>>, keys_tensor: Option<Tensor>, values_floats: Option<Vec<f32>>,
        values_int64s: Option<Vec<i64>>, values_strings: Option<Vec<String>>, values_tensor: Option<Tensor>,
    }
    TreeEnsemble "ml.tree_ensemble" (1..=1 => 1..=1) {
        aggregate_function: i64 = 1, leaf_targetids: Vec<i64>, leaf_weights: Tensor,
        membership_values: Option<Tensor>, n_targets: Option<i64>, nodes_falseleafs: Vec<i64>,
        nodes_falsenodeids: Vec<i64>, nodes_featureids: Vec<i64>, nodes_hitrates: Option<Tensor>,
        nodes_missing_value_tracks_true: Option<Vec<i64>>, nodes_modes: Tensor, nodes_splits: Tensor,
        nodes_trueleafs: Vec<i64>, nodes_truenodeids: Vec<i64>, post_transform: i64 = 0, tree_roots: Vec<i64>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_are_unique() {
        let mut names: Vec<_> = Op::all_names().iter().map(|n| n.0).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn attrs_take_defaults_and_reject_unknown() {
        let op = Op::from_text("conv", Attrs::new().with("group", AttrValue::Int(2)))
            .unwrap()
            .unwrap();
        let Op::Conv(c) = &op else { panic!("{op:?}") };
        assert_eq!(c.group, 2);
        assert_eq!(c.auto_pad, AutoPad::NotSet);
        assert_eq!(op.attrs(), vec![("group", AttrValue::Int(2))]);
        let err = Op::from_text("conv", Attrs::new().with("groups", AttrValue::Int(2)))
            .unwrap()
            .unwrap_err();
        assert_eq!(err, AttrError::Unknown("groups".into()));
        let err = Op::from_text("concat", Attrs::new()).unwrap().unwrap_err();
        assert_eq!(err, AttrError::Missing("axis".into()));
        assert!(Op::from_text("no_such_op", Attrs::new()).is_none());
    }
}
