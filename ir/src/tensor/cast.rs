//! Element type conversion with ONNX `Cast` semantics.

use half::{bf16, f16};

use super::{Data, Tensor, minifloat};
use crate::dtype::DType;

/// One element on its way from one type to another.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    F32(f32),
    F64(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::F32(x) => x as f64,
            Num::F64(x) => x,
        }
    }

    fn as_f32(self) -> f32 {
        match self {
            Num::Int(i) => i as f32,
            Num::F32(x) => x,
            Num::F64(x) => x as f32,
        }
    }

    /// Integer value: ints as they are, floats truncated toward zero and
    /// saturated (NaN is 0).
    fn as_i128(self) -> i128 {
        match self {
            Num::Int(i) => i,
            Num::F32(x) => x as i128,
            Num::F64(x) => x as i128,
        }
    }

    fn is_nonzero(self) -> bool {
        match self {
            Num::Int(i) => i != 0,
            Num::F32(x) => x != 0.0,
            Num::F64(x) => x != 0.0,
        }
    }
}

fn read(t: &Tensor, i: usize) -> Num {
    match &t.data {
        Data::Bool(v) => Num::Int(v[i] as i128),
        Data::I8(v) => Num::Int(v[i] as i128),
        Data::I16(v) => Num::Int(v[i] as i128),
        Data::I32(v) => Num::Int(v[i] as i128),
        Data::I64(v) => Num::Int(v[i] as i128),
        Data::U8(v) => Num::Int(v[i] as i128),
        Data::U16(v) => Num::Int(v[i] as i128),
        Data::U32(v) => Num::Int(v[i] as i128),
        Data::U64(v) => Num::Int(v[i] as i128),
        Data::F16(v) => Num::F32(v[i].to_f32()),
        Data::BF16(v) => Num::F32(v[i].to_f32()),
        Data::F32(v) => Num::F32(v[i]),
        Data::F64(v) => Num::F64(v[i]),
        Data::Str(v) => parse_number(&v[i]),
        Data::C64(v) => Num::F32(v[i][0]),
        Data::C128(v) => Num::F64(v[i][0]),
        Data::Packed(v) if t.dtype.is_int() => {
            Num::Int(minifloat::int_value(t.dtype, v[i]) as i128)
        }
        Data::Packed(v) => Num::F32(minifloat::to_f32(t.dtype, v[i])),
    }
}

/// Parses a string the way ONNX's `Cast` from string does: integers, decimal
/// and exponent notation, `inf`/`INF`/`-Infinity`, `nan`/`NaN`.
fn parse_number(s: &str) -> Num {
    let t = s.trim();
    if let Ok(i) = t.parse::<i128>() {
        return Num::Int(i);
    }
    let lower = t.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    let neg = lower.starts_with('-');
    let x = match body {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        _ => return Num::F64(t.parse::<f64>().unwrap_or(f64::NAN)),
    };
    Num::F64(if neg { -x } else { x })
}

/// Formats a float the way numpy's `str()` does for the type's precision:
/// shortest round-trip digits, exponent notation outside [1e-4, 1e16).
pub(crate) fn format_float(x: f64, shortest: &str) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "INF".into() } else { "-INF".into() };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust's `{:e}` prints `1e-5`; numpy prints `1e-05`.
        let (mant, exp) = shortest.split_once('e').unwrap_or((shortest, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    shortest.to_string()
}

fn to_string(n: Num, src: DType) -> String {
    match n {
        Num::Int(i) if src == DType::Bool => (if i != 0 { "1" } else { "0" }).to_string(),
        Num::Int(i) => i.to_string(),
        Num::F32(x) => {
            let a = x.abs();
            let s = if a != 0.0 && !(1e-4..1e16).contains(&a) {
                format!("{x:e}")
            } else {
                format!("{x}")
            };
            format_float(x as f64, &s)
        }
        Num::F64(x) => {
            let a = x.abs();
            let s = if a != 0.0 && !(1e-4..1e16).contains(&a) {
                format!("{x:e}")
            } else {
                format!("{x}")
            };
            format_float(x, &s)
        }
    }
}

pub(crate) fn cast(t: &Tensor, to: DType, saturate: bool, round_up: bool) -> Data {
    let src = t.dtype;
    if src == to {
        return t.data.clone();
    }
    let n = t.numel();
    // Fast paths for the common float conversions.
    match (&t.data, to) {
        (Data::F32(v), DType::F16) => {
            return Data::F16(v.iter().map(|&x| f16::from_f32(x)).collect());
        }
        (Data::F32(v), DType::BF16) => {
            return Data::BF16(v.iter().map(|&x| bf16::from_f32(x)).collect());
        }
        (Data::F32(v), DType::F64) => return Data::F64(v.iter().map(|&x| x as f64).collect()),
        (Data::F16(v), DType::F32) => return Data::F32(v.iter().map(|x| x.to_f32()).collect()),
        (Data::BF16(v), DType::F32) => return Data::F32(v.iter().map(|x| x.to_f32()).collect()),
        (Data::F64(v), DType::F32) => return Data::F32(v.iter().map(|&x| x as f32).collect()),
        _ => {}
    }
    let nums = (0..n).map(|i| read(t, i));
    macro_rules! int_target {
        ($var:ident, $ty:ty) => {
            Data::$var(nums.map(|x| x.as_i128() as $ty).collect())
        };
    }
    match to {
        DType::Bool => Data::Bool(nums.map(|x| x.is_nonzero()).collect()),
        DType::I8 => int_target!(I8, i8),
        DType::I16 => int_target!(I16, i16),
        DType::I32 => int_target!(I32, i32),
        DType::I64 => int_target!(I64, i64),
        DType::U8 => int_target!(U8, u8),
        DType::U16 => int_target!(U16, u16),
        DType::U32 => int_target!(U32, u32),
        DType::U64 => int_target!(U64, u64),
        DType::F16 => Data::F16(
            nums.map(|x| match x {
                Num::F64(v) => f16::from_f64(v),
                other => f16::from_f32(other.as_f32()),
            })
            .collect(),
        ),
        DType::BF16 => Data::BF16(nums.map(|x| bf16::from_f32(x.as_f32())).collect()),
        DType::F32 => Data::F32(nums.map(Num::as_f32).collect()),
        DType::F64 => Data::F64(nums.map(Num::as_f64).collect()),
        DType::Str => Data::Str(nums.map(|x| to_string(x, src)).collect()),
        DType::C64 => Data::C64(nums.map(|x| [x.as_f32(), 0.0]).collect()),
        DType::C128 => Data::C128(nums.map(|x| [x.as_f64(), 0.0]).collect()),
        _ if to.is_int() => Data::Packed(
            nums.map(|x| {
                // Floats truncate toward zero and then wrap like integers
                // (what the ONNX reference, via ml_dtypes, produces);
                // NaN and infinities become 0.
                let v = match x {
                    Num::F32(f) if !f.is_finite() => 0,
                    Num::F64(f) if !f.is_finite() => 0,
                    _ => x.as_i128() as i64,
                };
                minifloat::from_int_wrapping(to, v)
            })
            .collect(),
        ),
        _ => Data::Packed(
            nums.map(|x| minifloat::from_f32_rounding(to, x.as_f32(), saturate, round_up))
                .collect(),
        ),
    }
}

/// Cast with e8m0's rounding mode chosen ("up" when `round_up`).
pub fn cast_rounding(t: &Tensor, to: DType, saturate: bool, round_up: bool) -> Tensor {
    Tensor::from_parts(to, t.shape.clone(), cast(t, to, saturate, round_up))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_to_int_truncates() {
        let t = Tensor::from_vec(vec![4], vec![1.7f32, -1.7, 300.0, f32::NAN]);
        let c = t.cast(DType::I32, true);
        assert_eq!(c.as_slice::<i32>().unwrap(), &[1, -1, 300, 0]);
    }

    #[test]
    fn float_to_narrow_int_truncates_then_wraps() {
        let t = Tensor::from_vec(vec![6], vec![-9.0f32, 8.0, 2.7, -2.7, f32::NAN, 20.3]);
        let c = t.cast(DType::I4, true);
        let v: Vec<i64> = (0..6).map(|i| c.get_i64(i)).collect();
        assert_eq!(v, vec![7, -8, 2, -2, 0, 4]);
        let c = t.cast(DType::U2, true);
        let v: Vec<i64> = (0..6).map(|i| c.get_i64(i)).collect();
        assert_eq!(v, vec![3, 0, 2, 2, 0, 0]);
    }

    #[test]
    fn int_to_int_wraps() {
        let t = Tensor::from_vec(vec![2], vec![300i64, -1]);
        assert_eq!(
            t.cast(DType::U8, true).as_slice::<u8>().unwrap(),
            &[44, 255]
        );
    }

    #[test]
    fn strings() {
        let t = Tensor::from_vec(vec![3], vec![0.5f32, 1e-5, f32::INFINITY]);
        assert_eq!(
            t.cast(DType::Str, true).as_strings().unwrap(),
            &["0.5", "1e-05", "INF"]
        );
        let s = Tensor::new(
            DType::Str,
            vec![3],
            Data::Str(vec!["2.5".into(), "-INF".into(), "NaN".into()]),
        )
        .unwrap();
        let f = s.cast(DType::F32, true);
        let v = f.as_slice::<f32>().unwrap();
        assert_eq!(v[0], 2.5);
        assert_eq!(v[1], f32::NEG_INFINITY);
        assert!(v[2].is_nan());
    }
}
