//! ONNX `TensorProto` ⇄ Saturn tensors, including external data files.

use std::path::Path;

use prost::Message;
use saturn_ir::DType;
use saturn_ir::tensor::{Data, MAX_ELEMENTS, Tensor, checked_numel};

use super::ImportError;
use super::proto::{SparseTensorProto, TensorProto, tensor_proto};

fn bad(name: &str, msg: impl Into<String>) -> ImportError {
    ImportError::Tensor {
        name: name.to_string(),
        msg: msg.into(),
    }
}

/// The dtype of an ONNX element type code.
pub fn dtype_of(code: i32, what: &str) -> Result<DType, ImportError> {
    DType::from_onnx_code(code).ok_or_else(|| ImportError::UnsupportedType {
        name: what.to_string(),
        what: format!("element type code {code}"),
    })
}

/// Unpacks sub-byte elements (int4: two per byte, int2: four per byte,
/// lowest bits first) into one code per byte.
fn unpack_bits(bytes: &[u8], bits: usize, n: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mask = (1u16 << bits) as u8 - 1;
    (0..n)
        .map(|i| (bytes[i / per] >> ((i % per) * bits)) & mask)
        .collect()
}

fn pack_bits(codes: &[u8], bits: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mut out = vec![0u8; codes.len().div_ceil(per)];
    for (i, &c) in codes.iter().enumerate() {
        out[i / per] |= (c & ((1u16 << bits) as u8 - 1)) << ((i % per) * bits);
    }
    out
}

/// Bytes of raw storage for `n` elements of `dtype`.
fn raw_len(dtype: DType, n: usize) -> usize {
    match dtype.bits() {
        b if b < 8 => (n * b).div_ceil(8),
        b => n * b / 8,
    }
}

/// Reads the external data of a tensor, relative to the model's folder.
fn external_bytes(
    t: &TensorProto,
    name: &str,
    base: Option<&Path>,
    expected: usize,
) -> Result<Vec<u8>, ImportError> {
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for kv in &t.external_data {
        let value = kv.value();
        let num = || {
            value.parse::<u64>().map_err(|_| {
                bad(
                    name,
                    format!("external data {} `{value}` is not a number", kv.key()),
                )
            })
        };
        match kv.key() {
            "location" => location = Some(value.to_string()),
            "offset" => offset = num()?,
            "length" => length = Some(num()?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad(name, "external data has no location"))?;
    let rel = Path::new(&location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad(
            name,
            format!(
                "external data location `{location}` must be a relative path inside the model's folder"
            ),
        ));
    }
    let base = base.ok_or_else(|| {
        bad(
            name,
            "external data needs the model's folder (load the model from a file)",
        )
    })?;
    let path = base.join(rel);
    let length = length.unwrap_or(expected as u64);
    if length != expected as u64 {
        return Err(bad(
            name,
            format!(
                "external data length {length} does not match the {expected} bytes the tensor needs"
            ),
        ));
    }
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path).map_err(|e| {
        bad(
            name,
            format!("cannot open external data file {}: {e}", path.display()),
        )
    })?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(bad(
            name,
            format!(
                "external data range {offset}+{length} is beyond the end of {} ({size} bytes)",
                path.display()
            ),
        ));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| bad(name, format!("reading {}: {e}", path.display())))?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf)
        .map_err(|e| bad(name, format!("reading {}: {e}", path.display())))?;
    Ok(buf)
}

/// Converts a `TensorProto`. `base` is the folder external data is
/// relative to.
pub fn from_proto(t: &TensorProto, base: Option<&Path>) -> Result<Tensor, ImportError> {
    let name = t.name();
    let dtype = dtype_of(t.data_type(), name)?;
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(bad(name, format!("negative dimension {d} in {:?}", t.dims)));
        }
        dims.push(d as u64);
    }
    let n = checked_numel(&dims).map_err(|_| {
        bad(
            name,
            format!(
                "dimensions {:?} exceed Saturn's limit of {MAX_ELEMENTS} elements",
                t.dims
            ),
        )
    })?;
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    if t.segment.is_some() {
        return Err(bad(name, "segmented tensors are not supported"));
    }

    let raw = if t.data_location() == tensor_proto::DataLocation::External {
        if dtype == DType::Str {
            return Err(bad(name, "string tensors cannot have external data"));
        }
        Some(external_bytes(t, name, base, raw_len(dtype, n))?)
    } else {
        t.raw_data.clone()
    };

    let mismatch = |have: usize| {
        bad(
            name,
            format!(
                "{dtype}{:?} needs {n} elements, the data has {have}",
                t.dims
            ),
        )
    };
    if let Some(raw) = raw {
        if dtype == DType::Str {
            return Err(bad(name, "string tensors cannot use raw_data"));
        }
        if raw.len() != raw_len(dtype, n) {
            return Err(bad(
                name,
                format!(
                    "raw data has {} bytes, {dtype}{:?} needs {}",
                    raw.len(),
                    t.dims,
                    raw_len(dtype, n)
                ),
            ));
        }
        if dtype.bits() < 8 {
            return Ok(Tensor::new(
                dtype,
                shape,
                Data::Packed(unpack_bits(&raw, dtype.bits(), n)),
            )
            .unwrap());
        }
        return Tensor::from_le_bytes(dtype, shape, &raw).map_err(|e| bad(name, e.to_string()));
    }

    let data = match dtype {
        DType::F32 => Data::F32(t.float_data.clone()),
        DType::F64 => Data::F64(t.double_data.clone()),
        DType::C64 => {
            if t.float_data.len() != 2 * n {
                return Err(mismatch(t.float_data.len() / 2));
            }
            Data::C64(t.float_data.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
        }
        DType::C128 => {
            if t.double_data.len() != 2 * n {
                return Err(mismatch(t.double_data.len() / 2));
            }
            Data::C128(
                t.double_data
                    .chunks_exact(2)
                    .map(|c| [c[0], c[1]])
                    .collect(),
            )
        }
        DType::I64 => Data::I64(t.int64_data.clone()),
        DType::U64 => Data::U64(t.uint64_data.clone()),
        DType::U32 => Data::U32(t.uint64_data.iter().map(|&x| x as u32).collect()),
        DType::I32 => Data::I32(t.int32_data.clone()),
        DType::I16 => Data::I16(t.int32_data.iter().map(|&x| x as i16).collect()),
        DType::I8 => Data::I8(t.int32_data.iter().map(|&x| x as i8).collect()),
        DType::U16 => Data::U16(t.int32_data.iter().map(|&x| x as u16).collect()),
        DType::U8 => Data::U8(t.int32_data.iter().map(|&x| x as u8).collect()),
        DType::Bool => Data::Bool(t.int32_data.iter().map(|&x| x != 0).collect()),
        DType::F16 => Data::F16(
            t.int32_data
                .iter()
                .map(|&x| saturn_ir::half::f16::from_bits(x as u16))
                .collect(),
        ),
        DType::BF16 => Data::BF16(
            t.int32_data
                .iter()
                .map(|&x| saturn_ir::half::bf16::from_bits(x as u16))
                .collect(),
        ),
        DType::Str => Data::Str(
            t.string_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        d if d.bits() < 8 => {
            // Sub-byte types keep their packed bytes in int32_data.
            let bytes: Vec<u8> = t.int32_data.iter().map(|&x| x as u8).collect();
            if bytes.len() != raw_len(d, n) {
                return Err(mismatch(bytes.len() * 8 / d.bits()));
            }
            Data::Packed(unpack_bits(&bytes, d.bits(), n))
        }
        _ => Data::Packed(t.int32_data.iter().map(|&x| x as u8).collect()),
    };
    if data.len() != n {
        return Err(mismatch(data.len()));
    }
    Tensor::new(dtype, shape, data).map_err(|e| bad(name, e.to_string()))
}

/// Converts a `SparseTensorProto` (values at flat or per-dimension
/// indices, zero elsewhere) to a dense tensor; returns its name too.
pub fn sparse_to_dense(
    s: &SparseTensorProto,
    base: Option<&Path>,
) -> Result<(String, Tensor), ImportError> {
    let values = s
        .values
        .as_ref()
        .ok_or_else(|| bad("sparse tensor", "no values"))?;
    let name = values.name().to_string();
    let vals = from_proto(values, base)?;
    let idx = from_proto(
        s.indices.as_ref().ok_or_else(|| bad(&name, "no indices"))?,
        base,
    )?;
    let mut dims = Vec::with_capacity(s.dims.len());
    for &d in &s.dims {
        if d < 0 {
            return Err(bad(
                &name,
                format!("negative dimension {d} in {:?}", s.dims),
            ));
        }
        dims.push(d as u64);
    }
    let n = checked_numel(&dims).map_err(|e| bad(&name, e.to_string()))?;
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let nnz = vals.numel();
    let idx = idx.to_i64_vec();
    let out_of_range = || bad(&name, "sparse index out of range");
    // Indices are either flat [nnz] or coordinates [nnz, rank].
    let flat: Vec<usize> = if idx.len() == nnz {
        idx.iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < n)
                    .ok_or_else(out_of_range)
            })
            .collect::<Result<_, _>>()?
    } else if idx.len() == nnz * shape.len() {
        let st = saturn_ir::tensor::strides(&shape);
        let mut flat = Vec::with_capacity(nnz);
        for c in idx.chunks(shape.len()) {
            let mut f = 0;
            for ((&i, &s), &d) in c.iter().zip(&st).zip(&shape) {
                let i = usize::try_from(i)
                    .ok()
                    .filter(|&i| i < d)
                    .ok_or_else(out_of_range)?;
                f += i * s;
            }
            flat.push(f);
        }
        flat
    } else {
        return Err(bad(&name, "indices do not match the values"));
    };
    // Gather from [zero, values…], index 0 meaning zero.
    let zero = Tensor::zeros(vals.dtype(), vec![1]).map_err(|e| bad(&name, e.to_string()))?;
    let both = Data::concat(&[zero.data(), vals.data()], vals.dtype());
    let joined =
        Tensor::new(vals.dtype(), vec![both.len()], both).map_err(|e| bad(&name, e.to_string()))?;
    let mut pick = vec![0usize; n];
    for (k, &i) in flat.iter().enumerate() {
        pick[i] = k + 1;
    }
    Ok((name, joined.gather_flat(shape, &pick)))
}

/// Converts a Saturn tensor to a `TensorProto` (raw data, or string data).
pub fn to_proto(t: &Tensor, name: &str) -> TensorProto {
    let mut p = TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(t.dtype().onnx_code()),
        name: Some(name.to_string()),
        ..Default::default()
    };
    match t.data() {
        Data::Str(v) => p.string_data = v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        Data::Packed(codes) if t.dtype().bits() < 8 => {
            p.raw_data = Some(pack_bits(codes, t.dtype().bits()))
        }
        _ => p.raw_data = t.to_le_bytes(),
    }
    p
}

/// Reads a serialized `TensorProto` file (e.g. `input_0.pb`).
pub fn read_file(path: &Path) -> Result<Tensor, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::Io {
        path: path.display().to_string(),
        err: e.to_string(),
    })?;
    let proto = TensorProto::decode(bytes.as_slice()).map_err(|e| ImportError::Decode {
        what: path.display().to_string(),
        err: e.to_string(),
    })?;
    from_proto(&proto, path.parent())
}

/// Writes a tensor as a serialized `TensorProto` file.
pub fn write_file(path: &Path, t: &Tensor, name: &str) -> Result<(), ImportError> {
    std::fs::write(path, to_proto(t, name).encode_to_vec()).map_err(|e| ImportError::Io {
        path: path.display().to_string(),
        err: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_int4() {
        let codes = vec![1u8, 15, 7, 8, 3];
        let packed = pack_bits(&codes, 4);
        assert_eq!(packed, vec![0xf1, 0x87, 0x03]);
        assert_eq!(unpack_bits(&packed, 4, 5), codes);
    }

    #[test]
    fn round_trips_through_proto() {
        let t = Tensor::from_vec(vec![2, 2], vec![1.5f32, -2.0, 0.0, 7.25]);
        assert_eq!(from_proto(&to_proto(&t, "x"), None).unwrap(), t);
    }

    #[test]
    fn rejects_absurd_and_negative_dims() {
        let mut p = to_proto(&Tensor::from_vec(vec![1], vec![1.0f32]), "w");
        p.dims = vec![1 << 40, 1 << 40];
        let e = from_proto(&p, None).unwrap_err().to_string();
        assert!(e.contains("exceed"), "{e}");
        p.dims = vec![-3];
        let e = from_proto(&p, None).unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn rejects_short_data() {
        let mut p = to_proto(&Tensor::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]), "w");
        p.raw_data = Some(vec![0; 8]);
        assert!(
            from_proto(&p, None)
                .unwrap_err()
                .to_string()
                .contains("raw data has 8 bytes")
        );
    }
}
