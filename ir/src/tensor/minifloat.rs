//! Narrow number formats (float8, float4, int4, int2, e8m0), stored one code
//! per byte. Conversion goes through f32.

use crate::dtype::DType;

/// Layout of a narrow float format.
struct Format {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    /// Has a sign bit.
    signed: bool,
    /// How NaN and infinity are encoded.
    special: Special,
}

#[derive(PartialEq)]
enum Special {
    /// IEEE-like: all-ones exponent is inf (mantissa 0) or NaN.
    Ieee,
    /// Only S.1111.111 is NaN; no infinity (e4m3fn).
    FiniteNanAllOnes,
    /// "Unsigned zero": 0x80 is the only NaN, no negative zero, no infinity.
    Uz,
    /// No NaN, no infinity (float4 e2m1).
    None,
    /// e8m0: every code is 2^(e - 127), except 0xff which is NaN.
    ExpOnly,
}

fn format(dtype: DType) -> Option<Format> {
    use Special::*;
    let f = |exp_bits, man_bits, bias, special| Format {
        exp_bits,
        man_bits,
        bias,
        signed: true,
        special,
    };
    Some(match dtype {
        DType::F8E4M3FN => f(4, 3, 7, FiniteNanAllOnes),
        DType::F8E4M3FNUZ => f(4, 3, 8, Uz),
        DType::F8E5M2 => f(5, 2, 15, Ieee),
        DType::F8E5M2FNUZ => f(5, 2, 16, Uz),
        DType::F4E2M1 => f(2, 1, 1, None),
        DType::F8E8M0 => Format {
            exp_bits: 8,
            man_bits: 0,
            bias: 127,
            signed: false,
            special: ExpOnly,
        },
        _ => return Option::None,
    })
}

impl Format {
    fn total_bits(&self) -> u32 {
        self.exp_bits + self.man_bits + self.signed as u32
    }

    fn is_nan(&self, code: u8) -> bool {
        let exp_mask = (1u32 << self.exp_bits) - 1;
        let e = (code as u32 >> self.man_bits) & exp_mask;
        let m = code as u32 & ((1 << self.man_bits) - 1);
        match self.special {
            Special::Ieee => e == exp_mask && m != 0,
            Special::FiniteNanAllOnes => e == exp_mask && m == (1 << self.man_bits) - 1,
            Special::Uz => code == 0x80,
            Special::None => false,
            Special::ExpOnly => code == 0xff,
        }
    }

    fn decode(&self, code: u8) -> f32 {
        if self.is_nan(code) {
            return f32::NAN;
        }
        if self.special == Special::ExpOnly {
            return 2f32.powi(code as i32 - self.bias);
        }
        let exp_mask = (1u32 << self.exp_bits) - 1;
        let sign_bit = 1u32 << (self.exp_bits + self.man_bits);
        let neg = code as u32 & sign_bit != 0;
        let e = (code as u32 >> self.man_bits) & exp_mask;
        let m = code as u32 & ((1 << self.man_bits) - 1);
        let mag = if self.special == Special::Ieee && e == exp_mask {
            f32::INFINITY
        } else if e == 0 {
            m as f32 * 2f32.powi(1 - self.bias - self.man_bits as i32)
        } else {
            (1.0 + m as f32 / (1u32 << self.man_bits) as f32) * 2f32.powi(e as i32 - self.bias)
        };
        if neg { -mag } else { mag }
    }

    /// Positive finite codes in increasing order of value.
    fn positive_codes(&self) -> Vec<u8> {
        let n = 1u32 << (self.exp_bits + self.man_bits);
        (0..n)
            .map(|c| c as u8)
            .filter(|&c| !self.is_nan(c) && self.decode(c).is_finite())
            .collect()
    }

    fn nan_code(&self) -> u8 {
        match self.special {
            Special::Ieee => ((1u32 << (self.exp_bits + self.man_bits)) - 1) as u8,
            Special::FiniteNanAllOnes => 0x7f,
            Special::Uz => 0x80,
            Special::None => 0,
            Special::ExpOnly => 0xff,
        }
    }

    fn encode(&self, x: f32, saturate: bool, round_up: bool) -> u8 {
        let codes = self.positive_codes();
        let max_code = *codes.last().unwrap();
        let max = self.decode(max_code);
        let sign = if self.signed && x.is_sign_negative() {
            1u8 << (self.exp_bits + self.man_bits)
        } else {
            0
        };
        if x.is_nan() {
            return if self.special == Special::None {
                // float4 has no NaN. The ONNX reference (ml_dtypes) writes
                // the negative-zero code, with the NaN's sign bit flipped:
                // NaN gives -0, -NaN gives +0.
                (1u8 << (self.exp_bits + self.man_bits)) ^ sign
            } else {
                self.nan_code()
            };
        }
        let a = x.abs();
        if !self.signed && x < 0.0 {
            return if self.special == Special::ExpOnly {
                0
            } else {
                self.nan_code()
            };
        }
        let overflow = |sign: u8| -> u8 {
            if saturate || self.special == Special::None {
                max_code | sign
            } else if self.special == Special::Ieee {
                (((1u32 << self.exp_bits) - 1) << self.man_bits) as u8 | sign
            } else {
                self.nan_code()
            }
        };
        if a.is_infinite() {
            return overflow(sign);
        }
        if self.special == Special::ExpOnly {
            // Round to a power of two: down when exact or rounding to nearest
            // ties up; `round_up` takes the next power for any remainder.
            if a == 0.0 {
                return 0;
            }
            let bits = a.to_bits();
            let e = ((bits >> 23) & 0xff) as i32;
            let m = bits & 0x7f_ffff;
            let mut code = e;
            if e == 0 {
                // f32 subnormal: below 2^-127 is the smallest e8m0 code.
                return if round_up && m != 0 { 1 } else { 0 };
            }
            if m != 0 && (round_up || m >= 0x40_0000) {
                code += 1;
            }
            return if code >= 0xff {
                if saturate { 0xfe } else { 0xff }
            } else {
                code as u8
            };
        }
        // Gap between the largest value and the next one the format would
        // have: halfway to it rounds up to overflow.
        let ulp_at_max = 2f32
            .powi(((max_code as u32 >> self.man_bits) as i32 - self.bias) - self.man_bits as i32);
        if a >= max + ulp_at_max / 2.0 {
            if a == max + ulp_at_max / 2.0 && (max_code & 1) == 0 {
                return max_code | sign;
            }
            return overflow(sign);
        }
        // Binary search for the nearest representable value, ties to even.
        let idx = codes.partition_point(|&c| self.decode(c) < a);
        let code = if idx == 0 {
            codes[0]
        } else if idx == codes.len() {
            max_code
        } else {
            let (lo, hi) = (codes[idx - 1], codes[idx]);
            let (dl, dh) = (a - self.decode(lo), self.decode(hi) - a);
            if dl < dh || (dl == dh && lo & 1 == 0) {
                lo
            } else {
                hi
            }
        };
        if code == 0 && self.special == Special::Uz {
            return 0; // no negative zero
        }
        code | sign
    }
}

/// Decode one stored code of a packed dtype to f32 (ints give their value).
pub fn to_f32(dtype: DType, code: u8) -> f32 {
    match dtype {
        DType::U4 | DType::U2 => code as f32,
        DType::I4 | DType::I2 => int_value(dtype, code) as f32,
        _ => format(dtype).map(|f| f.decode(code)).unwrap_or(f32::NAN),
    }
}

/// The integer value of a stored int4/int2/uint4/uint2 code.
pub fn int_value(dtype: DType, code: u8) -> i64 {
    match dtype {
        DType::I4 => ((code << 4) as i8 >> 4) as i64,
        DType::I2 => ((code << 6) as i8 >> 6) as i64,
        DType::U4 => (code & 0xf) as i64,
        DType::U2 => (code & 0x3) as i64,
        _ => code as i64,
    }
}

/// Range of an integer packed dtype.
pub fn int_range(dtype: DType) -> (i64, i64) {
    match dtype {
        DType::I4 => (-8, 7),
        DType::U4 => (0, 15),
        DType::I2 => (-2, 1),
        DType::U2 => (0, 3),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Encode an integer into a packed integer dtype, wrapping like a two's
/// complement truncation.
pub fn from_int_wrapping(dtype: DType, v: i64) -> u8 {
    let bits = dtype.bits();
    (v as u64 & ((1u64 << bits) - 1)) as u8
}

/// Encode an f32 into a packed dtype. Floats round to nearest even; integers
/// round to nearest even and saturate to their range.
pub fn from_f32(dtype: DType, x: f32, saturate: bool) -> u8 {
    from_f32_rounding(dtype, x, saturate, false)
}

/// Like [`from_f32`]; `round_up` selects e8m0's "up" rounding mode.
pub fn from_f32_rounding(dtype: DType, x: f32, saturate: bool, round_up: bool) -> u8 {
    if dtype.is_int() {
        let (lo, hi) = int_range(dtype);
        let v = if x.is_nan() {
            0
        } else {
            (x.round_ties_even() as f64).clamp(lo as f64, hi as f64) as i64
        };
        return from_int_wrapping(dtype, v);
    }
    match format(dtype) {
        Some(f) => f.encode(x, saturate, round_up),
        None => 0,
    }
}

/// Total bits of a packed float format (for unpacking raw storage).
pub fn code_bits(dtype: DType) -> u32 {
    format(dtype)
        .map(|f| f.total_bits())
        .unwrap_or(dtype.bits() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3fn_known_values() {
        let d = DType::F8E4M3FN;
        assert_eq!(to_f32(d, 0x7e), 448.0);
        assert!(to_f32(d, 0x7f).is_nan());
        assert_eq!(to_f32(d, 0x01), 2f32.powi(-9));
        assert_eq!(from_f32(d, 448.0, true), 0x7e);
        assert_eq!(from_f32(d, 1e6, true), 0x7e);
        assert_eq!(from_f32(d, 1e6, false), 0x7f);
        assert_eq!(from_f32(d, -1.0, true), 0xb8);
    }

    #[test]
    fn e5m2_overflow_is_infinite() {
        let d = DType::F8E5M2;
        assert_eq!(to_f32(d, 0x7b), 57344.0);
        assert_eq!(to_f32(d, 0x7c), f32::INFINITY);
        assert_eq!(from_f32(d, 1e9, false), 0x7c);
        assert_eq!(from_f32(d, 1e9, true), 0x7b);
    }

    #[test]
    fn uz_formats_have_no_negative_zero() {
        assert_eq!(from_f32(DType::F8E4M3FNUZ, -0.0, true), 0);
        assert!(to_f32(DType::F8E4M3FNUZ, 0x80).is_nan());
        assert_eq!(to_f32(DType::F8E4M3FNUZ, 0x7f), 240.0);
    }

    #[test]
    fn every_code_round_trips() {
        for d in [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
        ] {
            for c in 0..=255u8 {
                let v = to_f32(d, c);
                if v.is_finite() {
                    let back = from_f32(d, v, true);
                    assert_eq!(to_f32(d, back), v, "{d} code {c:#x}");
                }
            }
        }
        for c in 0..16u8 {
            assert_eq!(from_f32(DType::F4E2M1, to_f32(DType::F4E2M1, c), true), c);
        }
    }

    #[test]
    fn float4_nan_is_a_zero_of_the_other_sign() {
        assert_eq!(from_f32(DType::F4E2M1, f32::NAN, true), 0x8);
        assert_eq!(from_f32(DType::F4E2M1, -f32::NAN, true), 0x0);
        assert_eq!(from_f32(DType::F4E2M1, f32::INFINITY, false), 0x7);
    }

    #[test]
    fn ints() {
        assert_eq!(int_value(DType::I4, 0xf), -1);
        assert_eq!(from_f32(DType::I4, 9.0, true), 7);
        assert_eq!(
            from_f32(DType::I4, -2.5, true),
            from_int_wrapping(DType::I4, -2)
        );
        assert_eq!(from_f32(DType::U4, 20.0, true), 15);
    }
}
