//! KServe v2 (Open Inference Protocol) tensors ⇄ the internal [`Tensor`], shared by the gRPC
//! service and the REST binary-data extension.
//!
//! An input's data comes either as typed `contents` (one repeated field per datatype family) or
//! as raw little-endian bytes (`raw_input_contents`, positionally matched to `inputs`), never
//! both in one request. Raw bytes stay slices of the request buffer (no copy). Outputs always
//! leave as raw bytes; numeric outputs share the output buffer (no copy either).
//!
//! Only the wire form is checked here (datatype names, shapes, value counts); whether the tensor
//! fits the model (dtype, shape, byte count) is checked once, by the shared validation.

pub use crate::api::tensor_pack::shape;
use crate::api::tensor_pack::{check_count, narrow, pack, pack_bools};
use crate::error::{invalid_input, ServeError};
use crate::proto::inference::model_infer_request::InferInputTensor;
use crate::proto::inference::model_infer_response::InferOutputTensor;
use crate::proto::inference::model_metadata_response::TensorMetadata;
use crate::proto::inference::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::serving::registry::VersionSelector;
use crate::serving::request::{InferRequest, InferResponse};
use crate::tensor::{element_count, DataType, Tensor, TensorData, TensorSpec};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::HashMap;

/// `model_version` as KServe sends it: empty means the latest AVAILABLE version.
pub fn version_selector(version: &str) -> Result<VersionSelector, ServeError> {
    if version.is_empty() {
        return Ok(VersionSelector::Latest);
    }
    version
        .parse::<u64>()
        .map(VersionSelector::from_number)
        .map_err(|_| {
            ServeError::invalid(format!(
                "Invalid model version {version:?}: expected a positive integer, or empty (or 0) for the default version"
            ))
        })
}

pub fn datatype(input: &str, name: &str) -> Result<DataType, ServeError> {
    DataType::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = DataType::ALL.iter().map(|d| d.name()).collect();
        invalid_input(
            input,
            format!(
                "Unsupported datatype {name:?}; expected one of {}",
                known.join(", ")
            ),
        )
    })
}

/// Shape dimensions as KServe writes them.
pub fn wire_shape(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

pub fn tensor_metadata(spec: &TensorSpec) -> TensorMetadata {
    TensorMetadata {
        name: spec.name.clone(),
        datatype: spec.dtype.name().to_string(),
        shape: spec.shape.clone(),
    }
}

/// Raw bytes → tensor. Numeric data is kept as is (validation checks its length); BYTES data is
/// a sequence of elements, each a 4-byte little-endian length followed by that many bytes.
pub fn decode_raw(
    input: &str,
    dtype: DataType,
    shape: Vec<usize>,
    raw: Bytes,
) -> Result<Tensor, ServeError> {
    if dtype != DataType::Bytes {
        return Ok(Tensor::raw(dtype, shape, raw));
    }
    let mut values = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let Some(prefix) = raw.get(at..at + 4) else {
            return Err(invalid_input(
                input,
                format!("Invalid raw BYTES data - {} bytes after element {} are too few for a 4-byte length prefix", raw.len() - at, values.len()),
            ));
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let start = at + 4;
        if len > raw.len() - start {
            return Err(invalid_input(
                input,
                format!(
                    "Invalid raw BYTES data - element {} claims {len} bytes but only {} remain",
                    values.len(),
                    raw.len() - start
                ),
            ));
        }
        values.push(raw.slice(start..start + len));
        at = start + len;
    }
    Ok(Tensor::strings(shape, values))
}

/// Tensor → raw bytes: numeric data is shared, not copied; strings get their length prefixes.
pub fn encode_raw(tensor: Tensor) -> Bytes {
    match tensor.data {
        TensorData::Raw(bytes) => bytes,
        TensorData::Strings(values) => {
            let size = values.iter().map(|v| 4 + v.len()).sum();
            let mut out = BytesMut::with_capacity(size);
            for v in values {
                out.put_u32_le(v.len() as u32);
                out.put_slice(&v);
            }
            out.freeze()
        }
    }
}

/// The typed field a datatype's values go in.
fn contents_field(dtype: DataType) -> Option<&'static str> {
    use DataType::*;
    match dtype {
        Bool => Some("bool_contents"),
        I8 | I16 | I32 => Some("int_contents"),
        I64 => Some("int64_contents"),
        U8 | U16 | U32 => Some("uint_contents"),
        U64 => Some("uint64_contents"),
        F32 => Some("fp32_contents"),
        F64 => Some("fp64_contents"),
        Bytes => Some("bytes_contents"),
        // No 16-bit float field exists in the protocol.
        F16 | BF16 => None,
    }
}

/// Every typed field, with its value count.
fn field_counts(c: &InferTensorContents) -> [(&'static str, usize); 8] {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
}

fn has_contents(input: &InferInputTensor) -> bool {
    input
        .contents
        .as_ref()
        .is_some_and(|c| field_counts(c).iter().any(|&(_, n)| n > 0))
}

/// Typed `contents` → tensor: exactly the datatype's field, with one value per element.
pub fn decode_contents(
    input: &str,
    dtype: DataType,
    shape: Vec<usize>,
    contents: Option<InferTensorContents>,
) -> Result<Tensor, ServeError> {
    let c = contents.unwrap_or_default();
    let raw_only = || {
        invalid_input(
            input,
            format!("{dtype} has no typed contents field in KServe v2; send it as raw bytes (raw_input_contents, or binary data over REST)"),
        )
    };
    let field = contents_field(dtype).ok_or_else(raw_only)?;
    let counts = field_counts(&c);
    if let Some((stray, _)) = counts.iter().find(|&&(f, n)| n > 0 && f != field) {
        return Err(invalid_input(
            input,
            format!("{dtype} values go in {field}, but {stray} has values"),
        ));
    }
    let given = counts
        .iter()
        .find(|&&(f, _)| f == field)
        .map_or(0, |&(_, n)| n);
    check_count(
        input,
        field,
        element_count(&shape).unwrap_or(usize::MAX),
        given,
    )?;
    use DataType::*;
    let bytes = match dtype {
        Bytes => return Ok(Tensor::strings(shape, c.bytes_contents)),
        Bool => pack_bools(&c.bool_contents),
        I8 => narrow::<i32, i8>(input, field, dtype, &c.int_contents)?,
        I16 => narrow::<i32, i16>(input, field, dtype, &c.int_contents)?,
        I32 => pack(&c.int_contents),
        U8 => narrow::<u32, u8>(input, field, dtype, &c.uint_contents)?,
        U16 => narrow::<u32, u16>(input, field, dtype, &c.uint_contents)?,
        U32 => pack(&c.uint_contents),
        I64 => pack(&c.int64_contents),
        U64 => pack(&c.uint64_contents),
        F32 => pack(&c.fp32_contents),
        F64 => pack(&c.fp64_contents),
        F16 | BF16 => return Err(raw_only()),
    };
    Ok(Tensor::raw(dtype, shape, bytes))
}

/// A `ModelInfer` request as the shared internal request, plus the `id` to echo.
pub fn decode_infer_request(
    request: ModelInferRequest,
) -> Result<(InferRequest, String), ServeError> {
    if request.model_name.is_empty() {
        return Err(ServeError::invalid("model_name is required"));
    }
    let version = version_selector(&request.model_version)?;
    let raw = request.raw_input_contents;
    if !raw.is_empty() {
        if let Some(mixed) = request.inputs.iter().find(|i| has_contents(i)) {
            return Err(invalid_input(
                &mixed.name,
                "The request has both typed contents and raw_input_contents; send every input's data one way: all in raw_input_contents, or all in contents",
            ));
        }
        if raw.len() != request.inputs.len() {
            return Err(ServeError::invalid(format!(
                "raw_input_contents has {} entries for {} inputs; send one per input, in the order of inputs",
                raw.len(),
                request.inputs.len()
            )));
        }
    }
    let mut raw = raw.into_iter();
    let inputs = request
        .inputs
        .into_iter()
        .map(|input| {
            let dtype = datatype(&input.name, &input.datatype)?;
            let shape = shape(&input.name, &input.shape)?;
            let tensor = match raw.next() {
                Some(bytes) => decode_raw(&input.name, dtype, shape, bytes)?,
                None => decode_contents(&input.name, dtype, shape, input.contents)?,
            };
            Ok((input.name, tensor))
        })
        .collect::<Result<Vec<_>, ServeError>>()?;
    let decoded = InferRequest {
        model: request.model_name,
        version,
        inputs,
        output_filter: request.outputs.into_iter().map(|o| o.name).collect(),
    };
    Ok((decoded, request.id))
}

/// The answer as a `ModelInferResponse`: every output in `raw_output_contents`, in output order.
pub fn encode_infer_response(answer: InferResponse, id: String) -> ModelInferResponse {
    let (outputs, raw_output_contents) = answer
        .outputs
        .into_iter()
        .map(|(name, tensor)| {
            let meta = InferOutputTensor {
                name,
                datatype: tensor.dtype.name().to_string(),
                shape: wire_shape(&tensor.shape),
                parameters: HashMap::new(),
                contents: None,
            };
            (meta, encode_raw(tensor))
        })
        .unzip();
    ModelInferResponse {
        model_name: answer.model,
        model_version: answer.version.to_string(),
        id,
        parameters: HashMap::new(),
        outputs,
        raw_output_contents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::inference::model_infer_request::InferRequestedOutputTensor;
    use crate::tensor::{tensor_from_slice, tensor_to_vec};

    fn input(
        name: &str,
        datatype: &str,
        shape: &[i64],
        contents: InferTensorContents,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            parameters: HashMap::new(),
            contents: Some(contents),
        }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Bytes>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            model_version: String::new(),
            id: "req-1".into(),
            parameters: HashMap::new(),
            inputs,
            outputs: vec![],
            raw_input_contents: raw,
        }
    }

    fn decode_one(input: InferInputTensor) -> Result<Tensor, ServeError> {
        decode_infer_request(request(vec![input], vec![])).map(|(mut r, _)| r.inputs.remove(0).1)
    }

    /// The message of a request the codec refuses (`InferRequest` has no `Debug`, so no `unwrap_err`).
    fn rejected(r: ModelInferRequest) -> String {
        match decode_infer_request(r) {
            Ok(_) => panic!("expected an error"),
            Err(e) => message(e),
        }
    }

    fn message(e: ServeError) -> String {
        assert!(matches!(e, ServeError::InvalidRequest(_)), "{e:?}");
        e.to_string()
    }

    #[test]
    fn versions() {
        assert_eq!(version_selector(""), Ok(VersionSelector::Latest));
        assert_eq!(version_selector("0"), Ok(VersionSelector::Latest));
        assert_eq!(version_selector("3"), Ok(VersionSelector::Number(3)));
        for bad in ["-1", "latest", "1.5", " 2"] {
            assert!(
                message(version_selector(bad).unwrap_err()).contains("positive integer"),
                "{bad}"
            );
        }
    }

    #[test]
    fn typed_contents_per_datatype() {
        let c = |f: fn(&mut InferTensorContents)| {
            let mut c = InferTensorContents::default();
            f(&mut c);
            c
        };
        let cases: Vec<(&str, InferTensorContents, Tensor)> = vec![
            (
                "BOOL",
                c(|c| c.bool_contents = vec![true, false, true]),
                Tensor::raw(DataType::Bool, vec![3], vec![1u8, 0, 1]),
            ),
            (
                "INT8",
                c(|c| c.int_contents = vec![-128, 0, 127]),
                tensor_from_slice(DataType::I8, vec![3], &[-128i8, 0, 127]),
            ),
            (
                "INT16",
                c(|c| c.int_contents = vec![-300, 0, 300]),
                tensor_from_slice(DataType::I16, vec![3], &[-300i16, 0, 300]),
            ),
            (
                "INT32",
                c(|c| c.int_contents = vec![i32::MIN, 0, i32::MAX]),
                tensor_from_slice(DataType::I32, vec![3], &[i32::MIN, 0, i32::MAX]),
            ),
            (
                "INT64",
                c(|c| c.int64_contents = vec![i64::MIN, 0, i64::MAX]),
                tensor_from_slice(DataType::I64, vec![3], &[i64::MIN, 0, i64::MAX]),
            ),
            (
                "UINT8",
                c(|c| c.uint_contents = vec![0, 1, 255]),
                tensor_from_slice(DataType::U8, vec![3], &[0u8, 1, 255]),
            ),
            (
                "UINT16",
                c(|c| c.uint_contents = vec![0, 1, 65535]),
                tensor_from_slice(DataType::U16, vec![3], &[0u16, 1, 65535]),
            ),
            (
                "UINT32",
                c(|c| c.uint_contents = vec![0, 1, u32::MAX]),
                tensor_from_slice(DataType::U32, vec![3], &[0u32, 1, u32::MAX]),
            ),
            (
                "UINT64",
                c(|c| c.uint64_contents = vec![0, 1, u64::MAX]),
                tensor_from_slice(DataType::U64, vec![3], &[0u64, 1, u64::MAX]),
            ),
            (
                "FP32",
                c(|c| c.fp32_contents = vec![-0.0, 1.5, f32::INFINITY]),
                tensor_from_slice(DataType::F32, vec![3], &[-0.0f32, 1.5, f32::INFINITY]),
            ),
            (
                "FP64",
                c(|c| c.fp64_contents = vec![-0.0, 1.5, 1e300]),
                tensor_from_slice(DataType::F64, vec![3], &[-0.0f64, 1.5, 1e300]),
            ),
            (
                "BYTES",
                c(|c| {
                    c.bytes_contents = vec![
                        Bytes::from_static(b"a"),
                        Bytes::new(),
                        Bytes::from_static(b"\xff\x00"),
                    ]
                }),
                Tensor::strings(
                    vec![3],
                    vec![
                        Bytes::from_static(b"a"),
                        Bytes::new(),
                        Bytes::from_static(b"\xff\x00"),
                    ],
                ),
            ),
        ];
        for (datatype, contents, want) in cases {
            assert_eq!(
                decode_one(input("x", datatype, &[3], contents)).unwrap(),
                want,
                "{datatype}"
            );
        }
    }

    #[test]
    fn typed_contents_errors() {
        let c = InferTensorContents {
            int_contents: vec![1, 300],
            ..Default::default()
        };
        let e = message(decode_one(input("x", "INT8", &[2], c.clone())).unwrap_err());
        assert!(
            e.contains("value 300 in int_contents does not fit INT8; input name: x"),
            "{e}"
        );
        let u = InferTensorContents {
            uint_contents: vec![256],
            ..Default::default()
        };
        assert!(
            message(decode_one(input("x", "UINT8", &[1], u)).unwrap_err())
                .contains("does not fit UINT8")
        );

        let e = message(decode_one(input("x", "FP32", &[2], c.clone())).unwrap_err());
        assert!(
            e.contains("FP32 values go in fp32_contents, but int_contents has values"),
            "{e}"
        );

        let e = message(decode_one(input("x", "INT32", &[3], c)).unwrap_err());
        assert!(
            e.contains("Invalid number of values in int_contents - Expected: 3; Actual: 2"),
            "{e}"
        );

        let f = InferTensorContents {
            fp32_contents: vec![1.0],
            ..Default::default()
        };
        let e = message(decode_one(input("x", "FP16", &[1], f)).unwrap_err());
        assert!(e.contains("FP16 has no typed contents field"), "{e}");

        let e = message(decode_one(input("x", "FLOAT", &[1], Default::default())).unwrap_err());
        assert!(e.contains("Unsupported datatype \"FLOAT\""), "{e}");

        // No data at all for a non-empty tensor: counted as zero values.
        let e = message(decode_one(input("x", "FP32", &[2], Default::default())).unwrap_err());
        assert!(e.contains("Expected: 2; Actual: 0"), "{e}");
        // An empty tensor needs no values.
        assert_eq!(
            decode_one(input("x", "FP32", &[0, 4], Default::default())).unwrap(),
            Tensor::raw(DataType::F32, vec![0, 4], Vec::<u8>::new())
        );
    }

    #[test]
    fn shapes() {
        let e = message(decode_one(input("x", "FP32", &[1, -1], Default::default())).unwrap_err());
        assert!(e.contains("negative dimension -1; input name: x"), "{e}");
        let e = message(
            decode_one(input("x", "FP32", &[1 << 40, 1 << 40], Default::default())).unwrap_err(),
        );
        assert!(e.contains("element count overflows"), "{e}");
        assert_eq!(shape("x", &[]), Ok(vec![]));
    }

    #[test]
    fn raw_inputs_are_slices_of_the_request_buffer() {
        let buffer = Bytes::from(pack(&[1.0f32, 2.0, 3.0, 4.0]));
        let (r, id) = decode_infer_request(request(
            vec![input("x", "FP32", &[1, 4], Default::default())],
            vec![buffer.clone()],
        ))
        .unwrap();
        assert_eq!(id, "req-1");
        let TensorData::Raw(got) = &r.inputs[0].1.data else {
            panic!()
        };
        assert_eq!(got.as_ptr(), buffer.as_ptr());
        assert_eq!(
            tensor_to_vec::<f32>(&r.inputs[0].1).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
    }

    #[test]
    fn raw_fp16_and_bool() {
        let halves: Vec<u16> = [1.0f32, -2.5]
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let (r, _) = decode_infer_request(request(
            vec![
                input("h", "FP16", &[2], Default::default()),
                input("b", "BOOL", &[2], Default::default()),
            ],
            vec![Bytes::from(pack(&halves)), Bytes::from_static(&[1, 0])],
        ))
        .unwrap();
        assert_eq!(
            r.inputs[0].1,
            tensor_from_slice(DataType::F16, vec![2], &halves)
        );
        assert_eq!(
            r.inputs[1].1,
            Tensor::raw(DataType::Bool, vec![2], vec![1u8, 0])
        );
    }

    #[test]
    fn contents_and_raw_together_are_rejected() {
        let c = InferTensorContents {
            fp32_contents: vec![1.0],
            ..Default::default()
        };
        let e = rejected(request(
            vec![
                input("a", "FP32", &[1], c),
                input("b", "FP32", &[1], Default::default()),
            ],
            vec![Bytes::from(pack(&[1.0f32])), Bytes::from(pack(&[2.0f32]))],
        ));
        assert!(
            e.contains("both typed contents and raw_input_contents"),
            "{e}"
        );
        assert!(e.ends_with("input name: a"), "{e}");
    }

    #[test]
    fn raw_count_must_match_inputs() {
        let e = rejected(request(
            vec![
                input("a", "FP32", &[1], Default::default()),
                input("b", "FP32", &[1], Default::default()),
            ],
            vec![Bytes::from(pack(&[1.0f32]))],
        ));
        assert!(
            e.contains("raw_input_contents has 1 entries for 2 inputs"),
            "{e}"
        );
    }

    #[test]
    fn raw_bytes_round_trip_with_length_prefixes() {
        let values = vec![
            Bytes::from_static(b"hello"),
            Bytes::new(),
            Bytes::from_static(b"\x00\xff"),
        ];
        let encoded = encode_raw(Tensor::strings(vec![3], values.clone()));
        assert_eq!(&encoded[..9], b"\x05\x00\x00\x00hello");
        assert_eq!(encoded.len(), 4 + 5 + 4 + 4 + 2);
        let decoded = decode_raw("s", DataType::Bytes, vec![3], encoded).unwrap();
        assert_eq!(decoded, Tensor::strings(vec![3], values));

        let e = message(
            decode_raw(
                "s",
                DataType::Bytes,
                vec![1],
                Bytes::from_static(b"\x05\x00\x00\x00abc"),
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("element 0 claims 5 bytes but only 3 remain"),
            "{e}"
        );
        let e = message(
            decode_raw(
                "s",
                DataType::Bytes,
                vec![1],
                Bytes::from_static(b"\x01\x00"),
            )
            .unwrap_err(),
        );
        assert!(e.contains("too few for a 4-byte length prefix"), "{e}");
    }

    #[test]
    fn requested_outputs_become_the_filter() {
        let mut r = request(vec![], vec![]);
        r.model_version = "2".into();
        r.outputs = vec![InferRequestedOutputTensor {
            name: "product".into(),
            parameters: HashMap::new(),
        }];
        let (decoded, _) = decode_infer_request(r).unwrap();
        assert_eq!(decoded.version, VersionSelector::Number(2));
        assert_eq!(decoded.output_filter, vec!["product".to_string()]);
        let mut r = request(vec![], vec![]);
        r.model_name.clear();
        assert!(rejected(r).contains("model_name is required"));
    }

    #[test]
    fn outputs_share_their_buffers() {
        let y = tensor_from_slice(DataType::F32, vec![1, 2], &[1.0f32, 2.0]);
        let TensorData::Raw(buffer) = y.data.clone() else {
            panic!()
        };
        let response = encode_infer_response(
            InferResponse {
                model: "m".into(),
                version: 2,
                outputs: vec![("y".into(), y)],
            },
            "abc".into(),
        );
        assert_eq!(
            (
                response.model_name.as_str(),
                response.model_version.as_str(),
                response.id.as_str()
            ),
            ("m", "2", "abc")
        );
        assert_eq!(response.outputs[0].datatype, "FP32");
        assert_eq!(response.outputs[0].shape, vec![1, 2]);
        assert_eq!(response.raw_output_contents[0].as_ptr(), buffer.as_ptr());
    }
}
