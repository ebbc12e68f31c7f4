//! TensorFlow `TensorProto` ⇄ the internal [`Tensor`]: the fast path (`tensor_content`, shared
//! with the gRPC buffer, no copy) and the typed fields (`float_val`, `half_val`, ...).

use crate::api::tensor_pack::{self, check_count, narrow, pack, pack_bools};
use crate::error::{invalid_input, ServeError};
use crate::proto::tensorflow::{
    tensor_shape_proto, DataType as TfType, TensorProto, TensorShapeProto,
};
use crate::tensor::{element_count, DataType, Tensor, TensorData};

pub fn tf_dtype(dtype: DataType) -> TfType {
    match dtype {
        DataType::Bool => TfType::DtBool,
        DataType::U8 => TfType::DtUint8,
        DataType::U16 => TfType::DtUint16,
        DataType::U32 => TfType::DtUint32,
        DataType::U64 => TfType::DtUint64,
        DataType::I8 => TfType::DtInt8,
        DataType::I16 => TfType::DtInt16,
        DataType::I32 => TfType::DtInt32,
        DataType::I64 => TfType::DtInt64,
        DataType::F16 => TfType::DtHalf,
        DataType::BF16 => TfType::DtBfloat16,
        DataType::F32 => TfType::DtFloat,
        DataType::F64 => TfType::DtDouble,
        DataType::Bytes => TfType::DtString,
    }
}

pub fn from_tf_dtype(dtype: TfType) -> Option<DataType> {
    DataType::ALL.into_iter().find(|d| tf_dtype(*d) == dtype)
}

pub fn shape_proto<T: Copy + Into<i64>>(dims: &[T]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .iter()
            .map(|&d| tensor_shape_proto::Dim {
                size: d.into(),
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

fn decode_shape(input: &str, shape: Option<&TensorShapeProto>) -> Result<Vec<usize>, ServeError> {
    let Some(shape) = shape else {
        return Ok(Vec::new());
    };
    if shape.unknown_rank {
        return Err(invalid_input(
            input,
            "Invalid input shape - unknown_rank is not allowed in a request",
        ));
    }
    let dims: Vec<i64> = shape.dim.iter().map(|d| d.size).collect();
    tensor_pack::shape(input, &dims)
}

/// Decodes one request tensor. Shape and byte-count agreement with the model is checked later by
/// validation, so a short or long `tensor_content` gets the "Expected N bytes" error there.
pub fn decode_tensor(input: &str, proto: TensorProto) -> Result<Tensor, ServeError> {
    let tf = TfType::try_from(proto.dtype)
        .map_err(|_| invalid_input(input, format!("Unknown dtype value {}", proto.dtype)))?;
    let dtype = from_tf_dtype(tf)
        .ok_or_else(|| invalid_input(input, format!("Unsupported dtype {}", tf.as_str_name())))?;
    let shape = decode_shape(input, proto.tensor_shape.as_ref())?;
    // Within usize: decode_shape checked it.
    let count = element_count(&shape).unwrap_or(usize::MAX);
    if dtype == DataType::Bytes {
        return Ok(Tensor::strings(shape, proto.string_val));
    }
    if !proto.tensor_content.is_empty() || count == 0 {
        return Ok(Tensor::raw(dtype, shape, proto.tensor_content));
    }
    let (field, bytes) = typed_values(input, dtype, &proto)?;
    let given = bytes.len() / dtype.element_size().unwrap_or(1);
    if given == 1 && count != 1 {
        return Err(invalid_input(
            input,
            format!("a single value in {field} for a shape of {count} elements is a broadcast, which is not supported; send all {count} values"),
        ));
    }
    check_count(input, field, count, given)?;
    Ok(Tensor::raw(dtype, shape, bytes))
}

/// Packs the typed field matching `dtype` into little-endian bytes; names the field used.
fn typed_values(
    input: &str,
    dtype: DataType,
    p: &TensorProto,
) -> Result<(&'static str, Vec<u8>), ServeError> {
    Ok(match dtype {
        DataType::F32 => ("float_val", pack(&p.float_val)),
        DataType::F64 => ("double_val", pack(&p.double_val)),
        DataType::I32 => ("int_val", pack(&p.int_val)),
        DataType::I16 => ("int_val", int_val::<i16>(input, dtype, p)?),
        DataType::I8 => ("int_val", int_val::<i8>(input, dtype, p)?),
        DataType::U8 => ("int_val", int_val::<u8>(input, dtype, p)?),
        DataType::U16 => ("int_val", int_val::<u16>(input, dtype, p)?),
        DataType::I64 => ("int64_val", pack(&p.int64_val)),
        DataType::U32 => ("uint32_val", pack(&p.uint32_val)),
        DataType::U64 => ("uint64_val", pack(&p.uint64_val)),
        DataType::Bool => ("bool_val", pack_bools(&p.bool_val)),
        // TF stores each half / bfloat16 as its 16 bits in an int32.
        DataType::F16 | DataType::BF16 => {
            let bits: Vec<u16> = p.half_val.iter().map(|&bits| bits as u16).collect();
            ("half_val", pack(&bits))
        }
        DataType::Bytes => ("string_val", Vec::new()),
    })
}

/// TF keeps 8- and 16-bit integers in `int_val`, as int32s.
fn int_val<T: TryFrom<i32> + bytemuck::Pod>(
    input: &str,
    dtype: DataType,
    p: &TensorProto,
) -> Result<Vec<u8>, ServeError> {
    narrow::<i32, T>(input, "int_val", dtype, &p.int_val)
}

/// Encodes a response tensor: numbers as `tensor_content` (shares the output buffer), strings
/// as `string_val`.
pub fn encode_tensor(tensor: Tensor) -> TensorProto {
    let mut proto = TensorProto {
        dtype: tf_dtype(tensor.dtype) as i32,
        tensor_shape: Some(shape_proto(
            &tensor.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        )),
        ..Default::default()
    };
    match tensor.data {
        TensorData::Raw(bytes) => proto.tensor_content = bytes,
        TensorData::Strings(values) => proto.string_val = values,
    }
    proto
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{tensor_from_slice, tensor_to_vec};
    use bytes::Bytes;

    fn proto(dtype: TfType, shape: &[i64]) -> TensorProto {
        TensorProto {
            dtype: dtype as i32,
            tensor_shape: Some(shape_proto(shape)),
            ..Default::default()
        }
    }

    #[test]
    fn tensor_content_is_shared_not_copied() {
        let mut p = proto(TfType::DtFloat, &[1, 2]);
        p.tensor_content = Bytes::from(vec![0u8; 8]);
        let ptr = p.tensor_content.as_ptr();
        let t = decode_tensor("x", p).unwrap();
        assert_eq!(t.raw_bytes().as_ptr(), ptr);
        assert_eq!(t.shape, vec![1, 2]);
    }

    #[test]
    fn typed_fields_for_every_numeric_dtype() {
        let mut p = proto(TfType::DtFloat, &[2]);
        p.float_val = vec![1.5, -2.0];
        assert_eq!(
            tensor_to_vec::<f32>(&decode_tensor("x", p).unwrap()).unwrap(),
            vec![1.5, -2.0]
        );

        let mut p = proto(TfType::DtUint8, &[2]);
        p.int_val = vec![0, 255];
        assert_eq!(decode_tensor("x", p).unwrap().raw_bytes(), &[0, 255]);

        let mut p = proto(TfType::DtUint8, &[1]);
        p.int_val = vec![256];
        assert!(decode_tensor("x", p)
            .unwrap_err()
            .to_string()
            .contains("does not fit UINT8"));

        let mut p = proto(TfType::DtHalf, &[2]);
        p.half_val = vec![
            half::f16::from_f32(1.0).to_bits() as i32,
            half::f16::from_f32(-0.5).to_bits() as i32,
        ];
        let t = decode_tensor("x", p).unwrap();
        assert_eq!(
            tensor_to_vec::<half::f16>(&t).unwrap(),
            vec![half::f16::from_f32(1.0), half::f16::from_f32(-0.5)]
        );

        let mut p = proto(TfType::DtBfloat16, &[1]);
        p.half_val = vec![half::bf16::from_f32(3.0).to_bits() as i32];
        assert_eq!(
            tensor_to_vec::<half::bf16>(&decode_tensor("x", p).unwrap()).unwrap(),
            vec![half::bf16::from_f32(3.0)]
        );

        let mut p = proto(TfType::DtInt64, &[1, 2]);
        p.int64_val = vec![1 << 40, -3];
        assert_eq!(
            tensor_to_vec::<i64>(&decode_tensor("x", p).unwrap()).unwrap(),
            vec![1 << 40, -3]
        );

        let mut p = proto(TfType::DtBool, &[2]);
        p.bool_val = vec![true, false];
        assert_eq!(decode_tensor("x", p).unwrap().raw_bytes(), &[1, 0]);

        let mut p = proto(TfType::DtUint64, &[1]);
        p.uint64_val = vec![u64::MAX];
        assert_eq!(
            tensor_to_vec::<u64>(&decode_tensor("x", p).unwrap()).unwrap(),
            vec![u64::MAX]
        );
    }

    #[test]
    fn broadcast_and_count_mismatch_are_explained() {
        let mut p = proto(TfType::DtFloat, &[1, 4]);
        p.float_val = vec![1.0];
        assert!(decode_tensor("x", p)
            .unwrap_err()
            .to_string()
            .contains("broadcast"));
        let mut p = proto(TfType::DtFloat, &[1, 4]);
        p.float_val = vec![1.0, 2.0];
        assert_eq!(
            decode_tensor("x", p).unwrap_err().to_string(),
            "Invalid number of values in float_val - Expected: 4; Actual: 2; input name: x"
        );
    }

    #[test]
    fn bad_shapes_and_dtypes() {
        assert!(decode_tensor("x", proto(TfType::DtFloat, &[1, -1]))
            .unwrap_err()
            .to_string()
            .contains("negative"));
        assert!(decode_tensor("x", proto(TfType::DtComplex64, &[1]))
            .unwrap_err()
            .to_string()
            .contains("DT_COMPLEX64"));
        let e = decode_tensor("x", proto(TfType::DtFloat, &[1 << 40, 1 << 40])).unwrap_err();
        assert!(e.to_string().contains("overflows"));
        let p = TensorProto {
            dtype: 9999,
            ..Default::default()
        };
        assert!(decode_tensor("x", p).is_err());
    }

    #[test]
    fn encode_round_trips() {
        let t = tensor_from_slice(DataType::F32, vec![1, 3], &[1.0f32, 2.0, 3.0]);
        let p = encode_tensor(t.clone());
        assert_eq!(p.dtype, TfType::DtFloat as i32);
        assert_eq!(decode_tensor("y", p).unwrap(), t);
        let s = Tensor::strings(
            vec![2],
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
        );
        assert_eq!(decode_tensor("s", encode_tensor(s.clone())).unwrap(), s);
    }
}
