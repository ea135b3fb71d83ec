//! Concrete tensors: the values the interpreter computes with and the data
//! of constants.

pub mod minifloat;

use std::fmt;

use half::{bf16, f16};

use crate::dtype::DType;

/// Largest number of elements Saturn will allocate for one tensor (2^32,
/// 16 GiB of f32). Anything larger is rejected with an error rather than
/// attempted.
pub const MAX_ELEMENTS: u64 = 1 << 32;

/// Complex number with f32 parts.
pub type C64 = [f32; 2];
/// Complex number with f64 parts.
pub type C128 = [f64; 2];

/// The elements of a tensor, one vector per storage type.
#[derive(Clone, PartialEq)]
pub enum Data {
    Bool(Vec<bool>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Str(Vec<String>),
    C64(Vec<C64>),
    C128(Vec<C128>),
    /// Narrow types (float8, float4, int4, int2, e8m0): one code per byte,
    /// the dtype says how to read it.
    Packed(Vec<u8>),
}

/// Applies `$body` to the vector inside a [`Data`], whatever its type,
/// binding it to `$v`. The body is instantiated once per storage type.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::Data::Bool($v) => $body,
            $crate::tensor::Data::I8($v) => $body,
            $crate::tensor::Data::I16($v) => $body,
            $crate::tensor::Data::I32($v) => $body,
            $crate::tensor::Data::I64($v) => $body,
            $crate::tensor::Data::U8($v) => $body,
            $crate::tensor::Data::U16($v) => $body,
            $crate::tensor::Data::U32($v) => $body,
            $crate::tensor::Data::U64($v) => $body,
            $crate::tensor::Data::F16($v) => $body,
            $crate::tensor::Data::BF16($v) => $body,
            $crate::tensor::Data::F32($v) => $body,
            $crate::tensor::Data::F64($v) => $body,
            $crate::tensor::Data::Str($v) => $body,
            $crate::tensor::Data::C64($v) => $body,
            $crate::tensor::Data::C128($v) => $body,
            $crate::tensor::Data::Packed($v) => $body,
        }
    };
}

/// Like [`with_data!`], but rebuilds a `Data` of the same variant from the
/// `Vec` the body returns.
#[macro_export]
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::Data::Bool($v) => $crate::tensor::Data::Bool($body),
            $crate::tensor::Data::I8($v) => $crate::tensor::Data::I8($body),
            $crate::tensor::Data::I16($v) => $crate::tensor::Data::I16($body),
            $crate::tensor::Data::I32($v) => $crate::tensor::Data::I32($body),
            $crate::tensor::Data::I64($v) => $crate::tensor::Data::I64($body),
            $crate::tensor::Data::U8($v) => $crate::tensor::Data::U8($body),
            $crate::tensor::Data::U16($v) => $crate::tensor::Data::U16($body),
            $crate::tensor::Data::U32($v) => $crate::tensor::Data::U32($body),
            $crate::tensor::Data::U64($v) => $crate::tensor::Data::U64($body),
            $crate::tensor::Data::F16($v) => $crate::tensor::Data::F16($body),
            $crate::tensor::Data::BF16($v) => $crate::tensor::Data::BF16($body),
            $crate::tensor::Data::F32($v) => $crate::tensor::Data::F32($body),
            $crate::tensor::Data::F64($v) => $crate::tensor::Data::F64($body),
            $crate::tensor::Data::Str($v) => $crate::tensor::Data::Str($body),
            $crate::tensor::Data::C64($v) => $crate::tensor::Data::C64($body),
            $crate::tensor::Data::C128($v) => $crate::tensor::Data::C128($body),
            $crate::tensor::Data::Packed($v) => $crate::tensor::Data::Packed($body),
        }
    };
}

impl Data {
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty vector of the storage type for `dtype`.
    pub fn empty(dtype: DType) -> Data {
        Data::zeros(dtype, 0)
    }

    /// `n` zeros (false, "", 0) of the storage type for `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Data {
        match dtype {
            DType::Bool => Data::Bool(vec![false; n]),
            DType::I8 => Data::I8(vec![0; n]),
            DType::I16 => Data::I16(vec![0; n]),
            DType::I32 => Data::I32(vec![0; n]),
            DType::I64 => Data::I64(vec![0; n]),
            DType::U8 => Data::U8(vec![0; n]),
            DType::U16 => Data::U16(vec![0; n]),
            DType::U32 => Data::U32(vec![0; n]),
            DType::U64 => Data::U64(vec![0; n]),
            DType::F16 => Data::F16(vec![f16::ZERO; n]),
            DType::BF16 => Data::BF16(vec![bf16::ZERO; n]),
            DType::F32 => Data::F32(vec![0.0; n]),
            DType::F64 => Data::F64(vec![0.0; n]),
            DType::Str => Data::Str(vec![String::new(); n]),
            DType::C64 => Data::C64(vec![[0.0; 2]; n]),
            DType::C128 => Data::C128(vec![[0.0; 2]; n]),
            _ => Data::Packed(vec![0; n]),
        }
    }

    /// Picks elements by flat index: `out[i] = self[idx[i]]`.
    #[allow(clippy::clone_on_copy)] // one body for every element type, strings included
    pub fn gather(&self, idx: &[usize]) -> Data {
        map_data!(self, v => idx.iter().map(|&i| v[i].clone()).collect())
    }

    /// Concatenates data of the same variant.
    pub fn concat(parts: &[&Data], dtype: DType) -> Data {
        let total = parts.iter().map(|p| p.len()).sum();
        let mut out = Data::zeros(dtype, 0);
        macro_rules! go {
            ($($var:ident),*) => {
                match &mut out {
                    $(Data::$var(o) => {
                        o.reserve(total);
                        for p in parts {
                            if let Data::$var(v) = p {
                                o.extend_from_slice(v);
                            }
                        }
                    })*
                }
            };
        }
        go!(
            Bool, I8, I16, I32, I64, U8, U16, U32, U64, F16, BF16, F32, F64, Str, C64, C128, Packed
        );
        out
    }
}

/// A native element type with its own [`Data`] variant.
pub trait Elem:
    Copy + PartialEq + PartialOrd + Default + Send + Sync + fmt::Debug + 'static
{
    const DTYPE: DType;
    fn slice(d: &Data) -> Option<&[Self]>;
    fn slice_mut(d: &mut Data) -> Option<&mut Vec<Self>>;
    fn wrap(v: Vec<Self>) -> Data;
}

macro_rules! elem {
    ($t:ty, $var:ident, $dt:ident) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$dt;
            fn slice(d: &Data) -> Option<&[Self]> {
                match d {
                    Data::$var(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(d: &mut Data) -> Option<&mut Vec<Self>> {
                match d {
                    Data::$var(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(v: Vec<Self>) -> Data {
                Data::$var(v)
            }
        }
    };
}
elem!(bool, Bool, Bool);
elem!(i8, I8, I8);
elem!(i16, I16, I16);
elem!(i32, I32, I32);
elem!(i64, I64, I64);
elem!(u8, U8, U8);
elem!(u16, U16, U16);
elem!(u32, U32, U32);
elem!(u64, U64, U64);
elem!(f16, F16, F16);
elem!(bf16, BF16, BF16);
elem!(f32, F32, F32);
elem!(f64, F64, F64);

/// Errors building or converting tensors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("shape {shape:?} has {expected} elements but the data has {actual}")]
    LengthMismatch {
        shape: Vec<usize>,
        expected: u64,
        actual: usize,
    },
    #[error("shape {0:?} has more elements than Saturn allows ({MAX_ELEMENTS})")]
    TooLarge(Vec<u64>),
    #[error("data of type {data} does not match dtype {dtype}")]
    DTypeMismatch { dtype: DType, data: &'static str },
    #[error("raw data of {len} bytes does not hold {numel} elements of {dtype}")]
    RawLength {
        dtype: DType,
        numel: usize,
        len: usize,
    },
}

/// Checked element count of a shape, bounded by [`MAX_ELEMENTS`].
pub fn checked_numel(shape: &[u64]) -> Result<usize, TensorError> {
    let mut n: u64 = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .ok_or_else(|| TensorError::TooLarge(shape.to_vec()))?;
    }
    if n > MAX_ELEMENTS {
        return Err(TensorError::TooLarge(shape.to_vec()));
    }
    Ok(n as usize)
}

/// A dense tensor in row-major order.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Data,
}

fn variant_name(d: &Data) -> &'static str {
    match d {
        Data::Bool(_) => "bool",
        Data::I8(_) => "i8",
        Data::I16(_) => "i16",
        Data::I32(_) => "i32",
        Data::I64(_) => "i64",
        Data::U8(_) => "u8",
        Data::U16(_) => "u16",
        Data::U32(_) => "u32",
        Data::U64(_) => "u64",
        Data::F16(_) => "f16",
        Data::BF16(_) => "bf16",
        Data::F32(_) => "f32",
        Data::F64(_) => "f64",
        Data::Str(_) => "string",
        Data::C64(_) => "c64",
        Data::C128(_) => "c128",
        Data::Packed(_) => "packed",
    }
}

impl Tensor {
    /// Builds a tensor, checking that data, dtype and shape agree.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Data) -> Result<Tensor, TensorError> {
        let expected_variant = variant_name(&Data::empty(dtype));
        if variant_name(&data) != expected_variant {
            return Err(TensorError::DTypeMismatch {
                dtype,
                data: variant_name(&data),
            });
        }
        let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let n = checked_numel(&dims)?;
        if n != data.len() {
            return Err(TensorError::LengthMismatch {
                shape,
                expected: n as u64,
                actual: data.len(),
            });
        }
        Ok(Tensor { dtype, shape, data })
    }

    /// A tensor from a vector of native elements.
    ///
    /// Panics if the length does not match the shape: for internal use
    /// where that is an invariant.
    pub fn from_vec<T: Elem>(shape: Vec<usize>, v: Vec<T>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), v.len(), "shape {shape:?}");
        Tensor {
            dtype: T::DTYPE,
            shape,
            data: T::wrap(v),
        }
    }

    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor::from_vec(vec![], vec![v])
    }

    /// Builds a tensor from already validated parts.
    pub(crate) fn from_parts(dtype: DType, shape: Vec<usize>, data: Data) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { dtype, shape, data }
    }

    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let n = checked_numel(&dims)?;
        Ok(Tensor {
            dtype,
            shape,
            data: Data::zeros(dtype, n),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn into_data(self) -> Data {
        self.data
    }

    /// The same data under another shape with the same element count.
    pub fn reshape(mut self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        if shape.iter().product::<usize>() != self.numel() {
            return Err(TensorError::LengthMismatch {
                expected: shape.iter().product::<usize>() as u64,
                shape,
                actual: self.numel(),
            });
        }
        self.shape = shape;
        Ok(self)
    }

    pub fn as_slice<T: Elem>(&self) -> Option<&[T]> {
        T::slice(&self.data)
    }

    pub fn as_strings(&self) -> Option<&[String]> {
        match &self.data {
            Data::Str(v) => Some(v),
            _ => None,
        }
    }

    /// Row-major strides of the shape, in elements.
    pub fn strides(&self) -> Vec<usize> {
        strides(&self.shape)
    }

    /// Element `i` as f64 (bool → 0/1, complex → real part, string → NaN).
    pub fn get_f64(&self, i: usize) -> f64 {
        match &self.data {
            Data::Bool(v) => v[i] as u8 as f64,
            Data::I8(v) => v[i] as f64,
            Data::I16(v) => v[i] as f64,
            Data::I32(v) => v[i] as f64,
            Data::I64(v) => v[i] as f64,
            Data::U8(v) => v[i] as f64,
            Data::U16(v) => v[i] as f64,
            Data::U32(v) => v[i] as f64,
            Data::U64(v) => v[i] as f64,
            Data::F16(v) => v[i].to_f64(),
            Data::BF16(v) => v[i].to_f64(),
            Data::F32(v) => v[i] as f64,
            Data::F64(v) => v[i],
            Data::Str(_) => f64::NAN,
            Data::C64(v) => v[i][0] as f64,
            Data::C128(v) => v[i][0],
            Data::Packed(v) => minifloat::to_f32(self.dtype, v[i]) as f64,
        }
    }

    /// Element `i` as i64 (floats truncate toward zero).
    pub fn get_i64(&self, i: usize) -> i64 {
        match &self.data {
            Data::Bool(v) => v[i] as i64,
            Data::I8(v) => v[i] as i64,
            Data::I16(v) => v[i] as i64,
            Data::I32(v) => v[i] as i64,
            Data::I64(v) => v[i],
            Data::U8(v) => v[i] as i64,
            Data::U16(v) => v[i] as i64,
            Data::U32(v) => v[i] as i64,
            Data::U64(v) => v[i] as i64,
            Data::Packed(v) if self.dtype.is_int() => minifloat::int_value(self.dtype, v[i]),
            _ => self.get_f64(i) as i64,
        }
    }

    /// All elements as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.numel()).map(|i| self.get_f64(i)).collect()
    }

    /// All elements as i64 (for shape-like inputs: shapes, axes, indices).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            Data::I64(v) => v.clone(),
            _ => (0..self.numel()).map(|i| self.get_i64(i)).collect(),
        }
    }

    /// Picks elements by flat index into a new tensor of the given shape.
    pub fn gather_flat(&self, shape: Vec<usize>, idx: &[usize]) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), idx.len());
        Tensor {
            dtype: self.dtype,
            shape,
            data: self.data.gather(idx),
        }
    }

    /// The elements' memory as little-endian bytes, without a copy, where
    /// the host stores them so (every fixed-width type on a little-endian
    /// machine, bools as 0 or 1); `None` otherwise (then use
    /// [`Tensor::to_le_bytes`]).
    pub fn as_le_bytes(&self) -> Option<&[u8]> {
        fn raw<T>(v: &[T]) -> &[u8] {
            // SAFETY: any initialised memory may be viewed as bytes; the
            // length is the slice's size in bytes.
            unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
        }
        if cfg!(target_endian = "big") {
            return None;
        }
        Some(match &self.data {
            // `bool` is one byte holding 0 or 1.
            Data::Bool(v) => raw(v),
            Data::I8(v) => raw(v),
            Data::I16(v) => raw(v),
            Data::I32(v) => raw(v),
            Data::I64(v) => raw(v),
            Data::U8(v) => raw(v),
            Data::U16(v) => raw(v),
            Data::U32(v) => raw(v),
            Data::U64(v) => raw(v),
            Data::F16(v) => raw(v),
            Data::BF16(v) => raw(v),
            Data::F32(v) => raw(v),
            Data::F64(v) => raw(v),
            _ => return None,
        })
    }

    /// The elements' memory as bytes to write in place (little-endian
    /// hosts, numeric dtypes whose every byte pattern is a valid element:
    /// not bool, not strings, not the one-code-per-byte packed types).
    pub fn as_le_bytes_mut(&mut self) -> Option<&mut [u8]> {
        fn raw<T: Copy>(v: &mut [T]) -> &mut [u8] {
            // SAFETY: these element types are plain numbers, valid for any
            // bytes; the length is the slice's size in bytes.
            unsafe {
                std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v))
            }
        }
        if cfg!(target_endian = "big") {
            return None;
        }
        Some(match &mut self.data {
            Data::I8(v) => raw(v),
            Data::I16(v) => raw(v),
            Data::I32(v) => raw(v),
            Data::I64(v) => raw(v),
            Data::U8(v) => raw(v),
            Data::U16(v) => raw(v),
            Data::U32(v) => raw(v),
            Data::U64(v) => raw(v),
            Data::F16(v) => raw(v),
            Data::BF16(v) => raw(v),
            Data::F32(v) => raw(v),
            Data::F64(v) => raw(v),
            _ => return None,
        })
    }

    /// Little-endian bytes of the elements, packed types one code per byte.
    /// Strings have no byte form and give `None`.
    pub fn to_le_bytes(&self) -> Option<Vec<u8>> {
        fn bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| f(x)).collect()
        }
        Some(match &self.data {
            Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            Data::I8(v) => bytes(v, i8::to_le_bytes),
            Data::I16(v) => bytes(v, i16::to_le_bytes),
            Data::I32(v) => bytes(v, i32::to_le_bytes),
            Data::I64(v) => bytes(v, i64::to_le_bytes),
            Data::U8(v) => v.clone(),
            Data::U16(v) => bytes(v, u16::to_le_bytes),
            Data::U32(v) => bytes(v, u32::to_le_bytes),
            Data::U64(v) => bytes(v, u64::to_le_bytes),
            Data::F16(v) => bytes(v, f16::to_le_bytes),
            Data::BF16(v) => bytes(v, bf16::to_le_bytes),
            Data::F32(v) => bytes(v, f32::to_le_bytes),
            Data::F64(v) => bytes(v, f64::to_le_bytes),
            Data::C64(v) => v
                .iter()
                .flat_map(|c| c.iter().flat_map(|x| x.to_le_bytes()))
                .collect(),
            Data::C128(v) => v
                .iter()
                .flat_map(|c| c.iter().flat_map(|x| x.to_le_bytes()))
                .collect(),
            Data::Packed(v) => v.clone(),
            Data::Str(_) => return None,
        })
    }

    /// The inverse of [`Tensor::to_le_bytes`].
    pub fn from_le_bytes(
        dtype: DType,
        shape: Vec<usize>,
        raw: &[u8],
    ) -> Result<Tensor, TensorError> {
        let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let n = checked_numel(&dims)?;
        let width = if dtype.is_packed() {
            1
        } else {
            dtype.bits() / 8
        };
        if dtype == DType::Str || raw.len() != n * width {
            return Err(TensorError::RawLength {
                dtype,
                numel: n,
                len: raw.len(),
            });
        }
        fn read<T, const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            raw.chunks_exact(N)
                .map(|c| f(c.try_into().unwrap()))
                .collect()
        }
        let data = match dtype {
            DType::Bool => Data::Bool(raw.iter().map(|&b| b != 0).collect()),
            DType::I8 => Data::I8(read(raw, i8::from_le_bytes)),
            DType::I16 => Data::I16(read(raw, i16::from_le_bytes)),
            DType::I32 => Data::I32(read(raw, i32::from_le_bytes)),
            DType::I64 => Data::I64(read(raw, i64::from_le_bytes)),
            DType::U8 => Data::U8(raw.to_vec()),
            DType::U16 => Data::U16(read(raw, u16::from_le_bytes)),
            DType::U32 => Data::U32(read(raw, u32::from_le_bytes)),
            DType::U64 => Data::U64(read(raw, u64::from_le_bytes)),
            DType::F16 => Data::F16(read(raw, f16::from_le_bytes)),
            DType::BF16 => Data::BF16(read(raw, bf16::from_le_bytes)),
            DType::F32 => Data::F32(read(raw, f32::from_le_bytes)),
            DType::F64 => Data::F64(read(raw, f64::from_le_bytes)),
            DType::C64 => Data::C64(read(raw, |b: [u8; 8]| {
                [
                    f32::from_le_bytes(b[..4].try_into().unwrap()),
                    f32::from_le_bytes(b[4..].try_into().unwrap()),
                ]
            })),
            DType::C128 => Data::C128(read(raw, |b: [u8; 16]| {
                [
                    f64::from_le_bytes(b[..8].try_into().unwrap()),
                    f64::from_le_bytes(b[8..].try_into().unwrap()),
                ]
            })),
            DType::Str => unreachable!("checked above"),
            _ => Data::Packed(raw.to_vec()),
        };
        Ok(Tensor { dtype, shape, data })
    }

    /// Converts every element to `to` with ONNX `Cast` semantics: floats to
    /// ints truncate toward zero (saturating at the type's range), ints wrap,
    /// anything to bool is `!= 0`, strings parse or print numbers.
    /// `saturate` applies to the float8 targets.
    pub fn cast(&self, to: DType, saturate: bool) -> Tensor {
        Tensor {
            dtype: to,
            shape: self.shape.clone(),
            data: cast::cast(self, to, saturate, false),
        }
    }
}

mod cast;
pub use cast::cast_rounding;

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}{:?}>", self.dtype, self.shape)?;
        const SHOWN: usize = 16;
        let n = self.numel().min(SHOWN);
        f.write_str("[")?;
        for i in 0..n {
            if i > 0 {
                f.write_str(", ")?;
            }
            match &self.data {
                Data::Str(v) => write!(f, "{:?}", v[i])?,
                Data::C64(v) => write!(f, "{:?}", v[i])?,
                Data::C128(v) => write!(f, "{:?}", v[i])?,
                Data::Bool(v) => write!(f, "{}", v[i])?,
                Data::F16(_) | Data::BF16(_) | Data::F32(_) | Data::F64(_) | Data::Packed(_) => {
                    write!(f, "{}", self.get_f64(i))?
                }
                _ => write!(f, "{}", self.get_i64(i))?,
            }
        }
        if self.numel() > SHOWN {
            write!(f, ", … {} more", self.numel() - SHOWN)?;
        }
        f.write_str("]")
    }
}
