//! Element types.

use std::fmt;
use std::str::FromStr;

/// The element type of a tensor.
///
/// The numbering of [`DType::onnx_code`] follows ONNX's `TensorProto.DataType`,
/// but nothing else here knows about ONNX.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum DType {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    BF16,
    F32,
    F64,
    /// UTF-8 (or arbitrary byte) strings.
    Str,
    /// Complex numbers of two f32.
    C64,
    /// Complex numbers of two f64.
    C128,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    /// 8-bit exponent-only float (the scale type of MX formats).
    F8E8M0,
    U4,
    I4,
    F4E2M1,
    U2,
    I2,
}

/// Every dtype with its text spelling and ONNX code; the single table the
/// conversions below read from.
const TABLE: &[(DType, &str, i32)] = &[
    (DType::F32, "f32", 1),
    (DType::U8, "u8", 2),
    (DType::I8, "i8", 3),
    (DType::U16, "u16", 4),
    (DType::I16, "i16", 5),
    (DType::I32, "i32", 6),
    (DType::I64, "i64", 7),
    (DType::Str, "string", 8),
    (DType::Bool, "bool", 9),
    (DType::F16, "f16", 10),
    (DType::F64, "f64", 11),
    (DType::U32, "u32", 12),
    (DType::U64, "u64", 13),
    (DType::C64, "c64", 14),
    (DType::C128, "c128", 15),
    (DType::BF16, "bf16", 16),
    (DType::F8E4M3FN, "f8e4m3fn", 17),
    (DType::F8E4M3FNUZ, "f8e4m3fnuz", 18),
    (DType::F8E5M2, "f8e5m2", 19),
    (DType::F8E5M2FNUZ, "f8e5m2fnuz", 20),
    (DType::U4, "u4", 21),
    (DType::I4, "i4", 22),
    (DType::F4E2M1, "f4e2m1", 23),
    (DType::F8E8M0, "f8e8m0", 24),
    (DType::U2, "u2", 25),
    (DType::I2, "i2", 26),
];

impl DType {
    /// All dtypes, in ONNX code order.
    pub fn all() -> impl Iterator<Item = DType> {
        TABLE.iter().map(|&(d, _, _)| d)
    }

    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|e| e.0 == self)
            .map(|e| e.1)
            .unwrap_or("?")
    }

    /// The code of this type in ONNX's `TensorProto.DataType`.
    pub fn onnx_code(self) -> i32 {
        TABLE.iter().find(|e| e.0 == self).map(|e| e.2).unwrap_or(0)
    }

    pub fn from_onnx_code(code: i32) -> Option<DType> {
        TABLE.iter().find(|e| e.2 == code).map(|e| e.0)
    }

    pub fn is_float(self) -> bool {
        use DType::*;
        matches!(
            self,
            F16 | BF16 | F32 | F64 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 | F4E2M1
        )
    }

    pub fn is_complex(self) -> bool {
        matches!(self, DType::C64 | DType::C128)
    }

    pub fn is_signed_int(self) -> bool {
        use DType::*;
        matches!(self, I8 | I16 | I32 | I64 | I4 | I2)
    }

    pub fn is_unsigned_int(self) -> bool {
        use DType::*;
        matches!(self, U8 | U16 | U32 | U64 | U4 | U2)
    }

    pub fn is_int(self) -> bool {
        self.is_signed_int() || self.is_unsigned_int()
    }

    /// Numeric: integers and floats (not bool, string or complex).
    pub fn is_numeric(self) -> bool {
        self.is_int() || self.is_float()
    }

    /// Types narrower than a byte or with a non-IEEE layout, which Saturn
    /// stores one code per byte and computes with by converting to f32.
    pub fn is_packed(self) -> bool {
        use DType::*;
        matches!(
            self,
            F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 | U4 | I4 | F4E2M1 | U2 | I2
        )
    }

    /// Size of one element in bits (4 for int4, 2 for int2).
    pub fn bits(self) -> usize {
        use DType::*;
        match self {
            U2 | I2 => 2,
            U4 | I4 | F4E2M1 => 4,
            Bool | I8 | U8 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => 8,
            I16 | U16 | F16 | BF16 => 16,
            I32 | U32 | F32 => 32,
            I64 | U64 | F64 | C64 => 64,
            C128 => 128,
            Str => 0,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype `{0}`")]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;
    fn from_str(s: &str) -> Result<DType, UnknownDType> {
        TABLE
            .iter()
            .find(|e| e.1 == s)
            .map(|e| e.0)
            .ok_or_else(|| UnknownDType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for d in DType::all() {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
            assert_eq!(DType::from_onnx_code(d.onnx_code()), Some(d));
        }
        assert_eq!(DType::all().count(), 26);
        assert!("f33".parse::<DType>().is_err());
        assert_eq!(DType::from_onnx_code(0), None);
    }
}
