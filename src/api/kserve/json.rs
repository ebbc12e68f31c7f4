//! KServe v2 REST inference bodies ⇄ the internal request and answer, with the binary-data
//! extension (<https://github.com/kserve/kserve/blob/master/docs/predict-api/v2/rest_predict_v2.yaml>,
//! Triton's `binary_tensor_data`).
//!
//! A request body is a JSON header, optionally followed by binary tensor data: when the
//! `Inference-Header-Content-Length: N` header is present, the first N bytes are JSON and the rest
//! are the data of the inputs that declare `"parameters": {"binary_data_size": K}`, in input
//! order, each in the raw form of `raw_input_contents`. Binary inputs stay slices of the body.
//!
//! A response output is written in JSON (`data`, a flat list) or, when asked for with the
//! request's `binary_data_output` or the output's own `binary_data` parameter (which wins), as
//! binary data after the JSON, announced by `"parameters": {"binary_data_size": K}`.

use crate::api::kserve::codec::{datatype, decode_raw, encode_raw, shape, wire_shape};
use crate::api::kserve::json_data::{read_data, DataForm, DataInput};
use crate::api::tfs::json::flat_values;
use crate::error::ServeError;
use crate::serving::request::InferResponse;
use crate::tensor::Tensor;
use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct RequestBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputBody>,
    #[serde(default)]
    outputs: Vec<OutputBody>,
}

#[derive(Deserialize)]
struct InputBody {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<DataForm>,
}

#[derive(Deserialize)]
struct OutputBody {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// A decoded REST inference request.
pub struct RestInfer {
    pub id: Option<String>,
    pub inputs: Vec<(String, Tensor)>,
    /// Requested outputs (empty = all).
    pub outputs: Vec<String>,
    /// How to write each output: binary or JSON.
    pub binary: BinaryOutputs,
}

/// Which outputs go back as binary data.
pub struct BinaryOutputs {
    default: bool,
    /// Per-output choices (`outputs[i].parameters.binary_data`), which override the default.
    explicit: Vec<(String, bool)>,
}

impl BinaryOutputs {
    pub fn is_binary(&self, output: &str) -> bool {
        self.explicit
            .iter()
            .find(|(name, _)| name == output)
            .map_or(self.default, |&(_, binary)| binary)
    }
}

fn bool_param(params: &Map<String, Value>, key: &str, at: &str) -> Result<bool, ServeError> {
    match params.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ServeError::invalid(format!(
            "{at}.parameters.{key} must be true or false, got {other}"
        ))),
    }
}

/// Splits the body at the JSON header length (the whole body is JSON without the header).
fn split_body(body: Bytes, header_len: Option<usize>) -> Result<(Bytes, Bytes), ServeError> {
    match header_len {
        None => Ok((body, Bytes::new())),
        Some(n) if n <= body.len() => {
            let binary = body.slice(n..);
            Ok((body.slice(..n), binary))
        }
        Some(n) => Err(ServeError::invalid(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        ))),
    }
}

/// Parses a REST inference body (`header_len`: the `Inference-Header-Content-Length` value).
///
/// Two passes over the JSON, neither building a value tree: the first reads everything but the
/// `data` lists (only whether each is flat), the second reads each `data` straight into its
/// tensor's bytes, now that its `datatype` and `shape` are known (JSON members come in any order).
pub fn decode_request(body: Bytes, header_len: Option<usize>) -> Result<RestInfer, ServeError> {
    let (header, mut binary) = split_body(body, header_len)?;
    let parsed: RequestBody =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&header))
            .map_err(|e| ServeError::invalid(format!("Invalid inference request JSON: {e}")))?;
    let described: Vec<DataInput> = parsed
        .inputs
        .iter()
        .map(|input| DataInput {
            name: &input.name,
            datatype: &input.datatype,
            shape: &input.shape,
            form: input
                .data
                .as_ref()
                .filter(|_| !input.parameters.contains_key("binary_data_size")),
        })
        .collect();
    let mut data = read_data(&header, &described)?;
    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for (input, data) in parsed.inputs.iter().zip(&mut data) {
        let dtype = datatype(&input.name, &input.datatype)?;
        let shape = shape(&input.name, &input.shape)?;
        let tensor = match (input.parameters.get("binary_data_size"), &input.data) {
            (Some(_), Some(_)) => {
                return Err(ServeError::invalid(format!(
                    "Input {} has both \"data\" and a binary_data_size parameter; send its values one way",
                    input.name
                )))
            }
            (Some(size), None) => {
                let size = size.as_u64().ok_or_else(|| {
                    ServeError::invalid(format!(
                        "Input {}: binary_data_size must be a non-negative integer, got {size}",
                        input.name
                    ))
                })? as usize;
                if size > binary.len() {
                    return Err(ServeError::invalid(format!(
                        "Input {} declares binary_data_size {size} but only {} bytes of binary data remain",
                        input.name,
                        binary.len()
                    )));
                }
                decode_raw(&input.name, dtype, shape, binary.split_to(size))?
            }
            (None, Some(_)) => match data.take() {
                Some(column) => column?.finish(shape)?,
                None => unreachable!("read_data reads every valid input with data"),
            },
            (None, None) => {
                return Err(ServeError::invalid(format!(
                    "Input {} has no \"data\" and no binary_data_size parameter",
                    input.name
                )))
            }
        };
        inputs.push((input.name.clone(), tensor));
    }
    if !binary.is_empty() {
        return Err(ServeError::invalid(format!(
            "{} bytes of binary data follow the last binary input (check the binary_data_size parameters and Inference-Header-Content-Length)",
            binary.len()
        )));
    }
    let default = bool_param(&parsed.parameters, "binary_data_output", "request")?;
    let explicit = parsed
        .outputs
        .iter()
        .filter(|o| o.parameters.contains_key("binary_data"))
        .map(|o| {
            let at = format!("output {}", o.name);
            Ok((
                o.name.clone(),
                bool_param(&o.parameters, "binary_data", &at)?,
            ))
        })
        .collect::<Result<_, ServeError>>()?;
    Ok(RestInfer {
        id: parsed.id,
        inputs,
        outputs: parsed.outputs.into_iter().map(|o| o.name).collect(),
        binary: BinaryOutputs { default, explicit },
    })
}

/// The response's JSON part, serialized straight from the output tensors (no `Value` tree: an
/// answer as large as a 100 MB request would take many times its size as one). Members come in
/// the order a `serde_json::Value` map wrote them before (sorted by key), so the bytes on the
/// wire are the same: `id`, `model_name`, `model_version`, `outputs`; per output `data`,
/// `datatype`, `name`, `parameters`, `shape`.
pub struct ResponseHeader {
    id: Option<String>,
    model_name: String,
    model_version: String,
    outputs: Vec<OutputHeader>,
}

struct OutputHeader {
    name: String,
    datatype: &'static str,
    shape: Vec<i64>,
    values: OutputValues,
}

enum OutputValues {
    /// Written as the flat JSON list `data`.
    Json(Tensor),
    /// Sent after the JSON, announced by `"parameters": {"binary_data_size": ..}`.
    Binary(usize),
}

/// The response: the JSON header, and the binary data that follows it (in output order).
pub fn encode_response(
    answer: InferResponse,
    id: Option<String>,
    binary: &BinaryOutputs,
) -> (ResponseHeader, Vec<Bytes>) {
    let mut chunks = Vec::new();
    let outputs = answer
        .outputs
        .into_iter()
        .map(|(name, tensor)| {
            let datatype = tensor.dtype.name();
            let shape = wire_shape(&tensor.shape);
            let values = if binary.is_binary(&name) {
                let bytes = encode_raw(tensor);
                let size = bytes.len();
                chunks.push(bytes);
                OutputValues::Binary(size)
            } else {
                OutputValues::Json(tensor)
            };
            OutputHeader {
                name,
                datatype,
                shape,
                values,
            }
        })
        .collect();
    let header = ResponseHeader {
        id,
        model_name: answer.model,
        model_version: answer.version.to_string(),
        outputs,
    };
    (header, chunks)
}

impl Serialize for ResponseHeader {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut body = serializer.serialize_map(None)?;
        if let Some(id) = &self.id {
            body.serialize_entry("id", id)?;
        }
        body.serialize_entry("model_name", &self.model_name)?;
        body.serialize_entry("model_version", &self.model_version)?;
        body.serialize_entry("outputs", &self.outputs)?;
        body.end()
    }
}

impl Serialize for OutputHeader {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        if let OutputValues::Json(tensor) = &self.values {
            out.serialize_entry("data", &flat_values(&self.name, tensor))?;
        }
        out.serialize_entry("datatype", self.datatype)?;
        out.serialize_entry("name", &self.name)?;
        if let OutputValues::Binary(size) = self.values {
            out.serialize_entry("parameters", &BinaryDataSize(size))?;
        }
        out.serialize_entry("shape", &self.shape)?;
        out.end()
    }
}

/// `{"binary_data_size": N}`.
struct BinaryDataSize(usize);

impl Serialize for BinaryDataSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("binary_data_size", &self.0)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{tensor_from_slice, tensor_to_vec, DataType};
    use half::{bf16, f16};
    use serde_json::json;

    fn decode(json: Value) -> Result<RestInfer, ServeError> {
        decode_request(Bytes::from(json.to_string()), None)
    }

    fn err(r: Result<RestInfer, ServeError>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn flat_and_nested_data() {
        for data in [json!([1, 2, 3, 4, 5, 6]), json!([[1, 2, 3], [4, 5, 6]])] {
            let r = decode(json!({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT64", "data": data}]})).unwrap();
            assert_eq!(
                r.inputs[0].1,
                tensor_from_slice(DataType::I64, vec![2, 3], &[1i64, 2, 3, 4, 5, 6])
            );
        }
        let r = decode(json!({"inputs": [{"name": "b", "shape": [2], "datatype": "BOOL", "data": [true, false]}],
                              "id": "q"}))
        .unwrap();
        assert_eq!(
            r.inputs[0].1,
            Tensor::raw(DataType::Bool, vec![2], vec![1u8, 0])
        );
        assert_eq!(r.id.as_deref(), Some("q"));
        let r = decode(json!({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["hi", {"b64": "AP8="}]}]})).unwrap();
        assert_eq!(
            r.inputs[0].1,
            Tensor::strings(
                vec![2],
                vec![Bytes::from_static(b"hi"), Bytes::from_static(b"\x00\xff")]
            )
        );
    }

    #[test]
    fn data_errors_name_the_input() {
        let e = err(decode(
            json!({"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [1, 2]}]}),
        ));
        assert!(
            e.contains("Expected: 10 for shape (1,10); Actual: 2; input name: x"),
            "{e}"
        );
        let e = err(decode(
            json!({"inputs": [{"name": "x", "shape": [2], "datatype": "UINT8", "data": [1, 256]}]}),
        ));
        assert!(e.contains("Invalid value 256 for UINT8"), "{e}");
        let e = err(decode(
            json!({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": []}]}),
        ));
        assert!(e.contains("negative dimension"), "{e}");
        let e = err(decode(
            json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}),
        ));
        assert!(e.contains("Input x has no \"data\""), "{e}");
        let e = err(decode(
            json!({"inputs": [{"name": "x", "shape": "1", "datatype": "FP32"}]}),
        ));
        assert!(e.contains("inputs[0].shape"), "{e}");
    }

    #[test]
    fn binary_inputs_follow_the_json_header() {
        let header = json!({"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "b", "shape": [1], "datatype": "FP32", "data": [3.5]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}
        ]})
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(bytemuck::cast_slice(&[1.0f32, 2.0]));
        body.extend_from_slice(b"\x02\x00\x00\x00hi");
        let body = Bytes::from(body);
        let r = decode_request(body.clone(), Some(header.len())).unwrap();
        assert_eq!(
            tensor_to_vec::<f32>(&r.inputs[0].1).unwrap(),
            vec![1.0, 2.0]
        );
        assert_eq!(tensor_to_vec::<f32>(&r.inputs[1].1).unwrap(), vec![3.5]);
        assert_eq!(
            r.inputs[2].1,
            Tensor::strings(vec![1], vec![Bytes::from_static(b"hi")])
        );
        // The binary input is a slice of the body, not a copy.
        assert_eq!(
            r.inputs[0].1.raw_bytes().as_ptr(),
            body[header.len()..].as_ptr()
        );

        let e = err(decode_request(body.clone(), Some(body.len() + 1)));
        assert!(e.contains("body has only"), "{e}");
        let e = err(decode_request(
            body.slice(..body.len() - 1),
            Some(header.len()),
        ));
        assert!(
            e.contains("declares binary_data_size 6 but only 5 bytes"),
            "{e}"
        );
        let mut extra = body.to_vec();
        extra.push(0);
        let e = err(decode_request(Bytes::from(extra), Some(header.len())));
        assert!(
            e.contains("1 bytes of binary data follow the last binary input"),
            "{e}"
        );
    }

    #[test]
    fn binary_output_choice() {
        let r = decode(json!({"inputs": [], "parameters": {"binary_data_output": true},
                              "outputs": [{"name": "a", "parameters": {"binary_data": false}}, {"name": "b"}]}))
        .unwrap();
        assert_eq!(r.outputs, vec!["a", "b"]);
        assert!(!r.binary.is_binary("a"));
        assert!(r.binary.is_binary("b"));
        let r = decode(
            json!({"inputs": [], "outputs": [{"name": "a", "parameters": {"binary_data": true}}]}),
        )
        .unwrap();
        assert!(r.binary.is_binary("a") && !r.binary.is_binary("b"));
        let e = err(decode(
            json!({"inputs": [], "parameters": {"binary_data_output": 1}}),
        ));
        assert!(
            e.contains("binary_data_output must be true or false"),
            "{e}"
        );
    }

    #[test]
    fn response_json_and_binary() {
        let answer = InferResponse {
            model: "m".into(),
            version: 3,
            outputs: vec![
                (
                    "sum".into(),
                    tensor_from_slice(DataType::F32, vec![1, 2], &[0.1f32, 2.0]),
                ),
                (
                    "product".into(),
                    tensor_from_slice(DataType::F32, vec![1, 2], &[3.0f32, 4.0]),
                ),
            ],
        };
        let binary = BinaryOutputs {
            default: false,
            explicit: vec![("product".into(), true)],
        };
        let (body, chunks) = encode_response(answer, Some("id-7".into()), &binary);
        // The bytes a `Value` tree wrote (keys sorted), which clients and tests have seen.
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            json!({"model_name": "m", "model_version": "3", "id": "id-7", "outputs": [
                {"name": "sum", "datatype": "FP32", "shape": [1, 2], "data": [0.1, 2.0]},
                {"name": "product", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}}
            ]})
            .to_string()
        );
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].as_ref(),
            bytemuck::cast_slice::<f32, u8>(&[3.0, 4.0])
        );
    }

    #[test]
    fn response_of_every_dtype_is_written_as_a_value_tree_was() {
        use DataType::{Bool, BF16, F16, F32, F64, I16, I32, I64, I8, U16, U32, U64, U8};
        let halves = [0.5f32, -2.5, f32::INFINITY];
        let outputs = vec![
            ("b", tensor_from_slice(Bool, vec![2], &[1u8, 0])),
            ("u8", tensor_from_slice(U8, vec![2], &[0u8, 255])),
            ("i8", tensor_from_slice(I8, vec![2], &[-128i8, 127])),
            ("u16", tensor_from_slice(U16, vec![1], &[65535u16])),
            ("i16", tensor_from_slice(I16, vec![1], &[-32768i16])),
            ("u32", tensor_from_slice(U32, vec![1], &[u32::MAX])),
            ("i32", tensor_from_slice(I32, vec![1], &[i32::MIN])),
            ("u64", tensor_from_slice(U64, vec![1], &[u64::MAX])),
            ("i64", tensor_from_slice(I64, vec![1], &[i64::MIN])),
            (
                "f16",
                tensor_from_slice(F16, vec![3], &halves.map(f16::from_f32)),
            ),
            (
                "bf16",
                tensor_from_slice(BF16, vec![3], &halves.map(bf16::from_f32)),
            ),
            (
                "f32",
                tensor_from_slice(F32, vec![3], &[0.1f32, 3.0, f32::NAN]),
            ),
            (
                "f64",
                tensor_from_slice(F64, vec![2], &[0.1f64, f64::NEG_INFINITY]),
            ),
            (
                "s",
                Tensor::strings(
                    vec![2],
                    vec![Bytes::from_static(b"h\"i\n"), Bytes::from_static(b"\xff")],
                ),
            ),
            (
                "s_bytes",
                Tensor::strings(vec![1], vec![Bytes::from_static(b"ok")]),
            ),
            ("scalar", tensor_from_slice(I32, vec![], &[7i32])),
            ("empty", tensor_from_slice(F32, vec![0, 3], &[] as &[f32])),
            // A backend bug: data that disagrees with the shape is written as null.
            ("short", Tensor::raw(F32, vec![2], vec![0u8; 4])),
            ("raw", tensor_from_slice(I16, vec![2], &[1i16, -1])),
        ];
        let answer = InferResponse {
            model: "every".into(),
            version: 12,
            outputs: outputs.into_iter().map(|(n, t)| (n.into(), t)).collect(),
        };
        let binary = BinaryOutputs {
            default: false,
            explicit: vec![("raw".into(), true)],
        };
        let (body, chunks) = encode_response(answer, None, &binary);
        let expected = json!({"model_name": "every", "model_version": "12", "outputs": [
            {"name": "b", "datatype": "BOOL", "shape": [2], "data": [true, false]},
            {"name": "u8", "datatype": "UINT8", "shape": [2], "data": [0, 255]},
            {"name": "i8", "datatype": "INT8", "shape": [2], "data": [-128, 127]},
            {"name": "u16", "datatype": "UINT16", "shape": [1], "data": [65535]},
            {"name": "i16", "datatype": "INT16", "shape": [1], "data": [-32768]},
            {"name": "u32", "datatype": "UINT32", "shape": [1], "data": [u32::MAX]},
            {"name": "i32", "datatype": "INT32", "shape": [1], "data": [i32::MIN]},
            {"name": "u64", "datatype": "UINT64", "shape": [1], "data": [u64::MAX]},
            {"name": "i64", "datatype": "INT64", "shape": [1], "data": [i64::MIN]},
            {"name": "f16", "datatype": "FP16", "shape": [3], "data": [0.5, -2.5, null]},
            {"name": "bf16", "datatype": "BF16", "shape": [3], "data": [0.5, -2.5, null]},
            {"name": "f32", "datatype": "FP32", "shape": [3], "data": [0.1, 3.0, null]},
            {"name": "f64", "datatype": "FP64", "shape": [2], "data": [0.1, null]},
            {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["h\"i\n", {"b64": "/w=="}]},
            {"name": "s_bytes", "datatype": "BYTES", "shape": [1], "data": [{"b64": "b2s="}]},
            {"name": "scalar", "datatype": "INT32", "shape": [], "data": [7]},
            {"name": "empty", "datatype": "FP32", "shape": [0, 3], "data": []},
            {"name": "short", "datatype": "FP32", "shape": [2], "data": null},
            {"name": "raw", "datatype": "INT16", "shape": [2], "parameters": {"binary_data_size": 4}}
        ]});
        assert_eq!(serde_json::to_string(&body).unwrap(), expected.to_string());
        assert_eq!(chunks, vec![Bytes::from_static(b"\x01\x00\xff\xff")]);
    }
}
