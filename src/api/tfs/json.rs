//! TensorFlow Serving REST `:predict` JSON ⇄ the internal [`Tensor`]
//! (<https://www.tensorflow.org/tfx/serving/api_rest>).
//!
//! Requests are `{"signature_name"?, "instances": [..]}` (row) or `{"signature_name"?, "inputs": ..}`
//! (columnar). JSON carries no dtypes: each input's dtype comes from the [`Signature`], its shape from
//! the list nesting. Shapes are checked against the signature later, by validation. `{"b64": ..}`
//! values for a numeric input are read as strings: JPEG/PNG images, decoded on the request path.
//!
//! Requests are decoded without a value tree ([`crate::api::tfs::json_decode`]): each tensor's
//! little-endian bytes are built while `serde_json` parses the body (one buffer per tensor;
//! strings are slices of one shared buffer). `serde_json` rejects the `NaN` and `Infinity`
//! literals TFS's parser takes.
//!
//! Response choices, compared with TFS (`tensorflow_serving/util/json_tensor.cc`):
//! * Non-finite floats become `null`. TFS writes `NaN`/`Infinity`/`-Infinity`, which are not JSON and
//!   which a `serde_json::Value` cannot hold; `null` keeps the body parseable by every client.
//! * FP32/FP16/BF16 are written as the shortest decimal that round-trips in FP32 (`0.1`, not
//!   `0.10000000149011612`), as TFS does.
//! * BYTES: an output whose name ends in `_bytes` is always `{"b64": ..}` (the TFS rule). Others are
//!   strings when valid UTF-8 and `{"b64": ..}` otherwise (TFS would write invalid JSON).
//! * Row format needs every output to have a first dimension of the same size. When they don't (or
//!   one is a scalar) TFS fails the request ("inconsistent batch size" / "has no shape information");
//!   we answer in the columnar layout (`{"outputs": ..}`) instead, which loses nothing.

pub use crate::api::tfs::json_decode::decode_predict;
use crate::tensor::{element_count, DataType, ShapeDisplay, Tensor, TensorData};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use half::{bf16, f16};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use std::io::Write;

/// Which request layout the client used; the response mirrors it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonFormat {
    /// `instances` in, `predictions` out.
    Row,
    /// `inputs` in, `outputs` out.
    Columnar,
}

/// Named input tensors (signature order), the layout used, and the optional `signature_name`.
pub type DecodedPredict = (Vec<(String, Tensor)>, JsonFormat, Option<String>);

/// The response body: `{"predictions": ..}` for [`JsonFormat::Row`] (columnar layout when the
/// outputs share no batch dimension, see the module docs), `{"outputs": ..}` for
/// [`JsonFormat::Columnar`]; a single output is written bare, several as `{name: value}` in the given
/// order. Serialized straight from the tensors (no `Value` tree: an answer as large as a 100 MB
/// request would take ~18× its size as one). Infallible so it slots into the REST handler: an
/// output whose data disagrees with its shape (a backend bug, outputs are not validated) is
/// logged and written as `null`.
pub struct PredictResponse {
    format: JsonFormat,
    outputs: Vec<(String, Tensor)>,
}

pub fn encode_predict(format: JsonFormat, outputs: Vec<(String, Tensor)>) -> PredictResponse {
    PredictResponse { format, outputs }
}

impl Serialize for PredictResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let views: Vec<(&str, View)> = self
            .outputs
            .iter()
            .map(|(name, t)| (name.as_str(), View::new(name, t)))
            .collect();
        let batch = views.first().and_then(|(_, v)| v.shape.first().copied());
        let same_batch = views.iter().all(|(_, v)| v.shape.first().copied() == batch);
        let mut body = serializer.serialize_map(Some(1))?;
        match (self.format, batch) {
            (JsonFormat::Row, Some(batch)) if same_batch => {
                body.serialize_entry("predictions", &Rows(&views, batch))?
            }
            _ => body.serialize_entry("outputs", &Outputs(&views, None))?,
        }
        body.end()
    }
}

/// The row layout: one item per row of the shared first dimension.
struct Rows<'v, 'a>(&'v [(&'a str, View<'a>)], usize);

impl Serialize for Rows<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut rows = serializer.serialize_seq(Some(self.1))?;
        for i in 0..self.1 {
            rows.serialize_element(&Outputs(self.0, Some(i)))?;
        }
        rows.end()
    }
}

/// Every output (`Some(i)`: its row `i`), bare when there is one, else `{name: value}`.
struct Outputs<'v, 'a>(&'v [(&'a str, View<'a>)], Option<usize>);

impl<'v, 'a> Serialize for Outputs<'v, 'a> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let part = |view: &'v View<'a>| match self.1 {
            Some(i) => view.row(i),
            None => view.all(),
        };
        match self.0 {
            [(_, only)] => part(only).serialize(serializer),
            views => {
                let mut map = serializer.serialize_map(Some(views.len()))?;
                for (name, view) in views {
                    map.serialize_entry(name, &part(view))?;
                }
                map.end()
            }
        }
    }
}

/// A checked read-only view of one output tensor.
struct View<'a> {
    shape: &'a [usize],
    /// `None` when the data does not match the shape and dtype.
    data: Option<Elems<'a>>,
}

enum Elems<'a> {
    Raw(DataType, &'a [u8]),
    /// The strings, and whether to always write them as `{"b64": ..}`.
    Strings(&'a [Bytes], bool),
}

impl<'a> View<'a> {
    fn new(name: &str, t: &'a Tensor) -> View<'a> {
        let count = element_count(&t.shape);
        let data = match (&t.data, t.dtype.element_size()) {
            (TensorData::Raw(b), Some(size))
                if count.and_then(|c| c.checked_mul(size)) == Some(b.len()) =>
            {
                Some(Elems::Raw(t.dtype, b))
            }
            (TensorData::Strings(s), None) if count == Some(s.len()) => {
                Some(Elems::Strings(s, name.ends_with("_bytes")))
            }
            _ => {
                tracing::error!(output = name, dtype = %t.dtype, shape = %ShapeDisplay(&t.shape), bytes = t.byte_len(),
                    "output data disagrees with its shape; writing null");
                None
            }
        };
        View {
            shape: &t.shape,
            data,
        }
    }

    fn all(&self) -> Nested<'_, 'a> {
        Nested {
            view: self,
            dims: self.shape,
            start: 0,
        }
    }

    /// Row `i` of the first dimension.
    fn row(&self, i: usize) -> Nested<'_, 'a> {
        let rest = self.shape.get(1..).unwrap_or(&[]);
        Nested {
            view: self,
            dims: rest,
            start: i.saturating_mul(element_count(rest).unwrap_or(0)),
        }
    }
}

/// A view's elements from `start` as lists nested to `dims`, serialized as they are read.
struct Nested<'v, 'a> {
    view: &'v View<'a>,
    dims: &'v [usize],
    start: usize,
}

impl Serialize for Nested<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(data) = &self.view.data else {
            return serializer.serialize_unit();
        };
        let Some((&len, rest)) = self.dims.split_first() else {
            return data.elem(self.start).serialize(serializer);
        };
        let stride = element_count(rest).unwrap_or(0);
        let mut list = serializer.serialize_seq(Some(len))?;
        for k in 0..len {
            list.serialize_element(&Nested {
                view: self.view,
                dims: rest,
                start: self.start + k * stride,
            })?;
        }
        list.end()
    }
}

impl Elems<'_> {
    fn elem(&self, i: usize) -> Value {
        use DataType::*;
        match *self {
            Elems::Raw(dtype, b) => match dtype {
                Bool => Value::Bool(b[i] != 0),
                U8 => b[i].into(),
                I8 => (b[i] as i8).into(),
                U16 => u16::from_le_bytes(le(b, i)).into(),
                I16 => i16::from_le_bytes(le(b, i)).into(),
                U32 => u32::from_le_bytes(le(b, i)).into(),
                I32 => i32::from_le_bytes(le(b, i)).into(),
                U64 => u64::from_le_bytes(le(b, i)).into(),
                I64 => i64::from_le_bytes(le(b, i)).into(),
                F16 => f32_value(f16::from_le_bytes(le(b, i)).to_f32()),
                BF16 => f32_value(bf16::from_le_bytes(le(b, i)).to_f32()),
                F32 => f32_value(f32::from_le_bytes(le(b, i))),
                F64 => f64::from_le_bytes(le(b, i)).into(), // non-finite → null
                Bytes => Value::Null,                       // View::new never pairs Raw with BYTES
            },
            Elems::Strings(s, always_b64) => match std::str::from_utf8(&s[i]) {
                Ok(text) if !always_b64 => Value::String(text.to_owned()),
                _ => json!({ "b64": STANDARD.encode(&s[i]) }),
            },
        }
    }
}

/// A tensor's elements as one flat JSON list (KServe v2 `data`), written as TFS responses are:
/// serialized straight from the tensor, element by element.
pub(crate) struct FlatValues<'a> {
    view: View<'a>,
    count: usize,
}

pub(crate) fn flat_values<'a>(name: &str, tensor: &'a Tensor) -> FlatValues<'a> {
    FlatValues {
        view: View::new(name, tensor),
        count: element_count(&tensor.shape).unwrap_or(0),
    }
}

impl Serialize for FlatValues<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Nested {
            view: &self.view,
            dims: std::slice::from_ref(&self.count),
            start: 0,
        }
        .serialize(serializer)
    }
}

fn le<const N: usize>(bytes: &[u8], i: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[i * N..(i + 1) * N]);
    out
}

/// An FP32 value as the shortest decimal that round-trips in FP32, widened to f64 so it is not
/// printed with float noise; non-finite values become `null`.
fn f32_value(x: f32) -> Value {
    let mut buf = [0u8; 32];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if !x.is_finite() || write!(cursor, "{x:e}").is_err() {
        return Value::Null;
    }
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(Value::Null, Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServeError;
    use crate::tensor::{tensor_from_slice, tensor_to_vec, Signature, TensorSpec};
    use DataType::{Bool, BF16, F16, F32, F64, I16, I32, I64, I8, U16, U32, U64, U8};

    fn sig(inputs: &[(&str, DataType)]) -> Signature {
        let spec = |&(name, dtype): &(&str, DataType)| TensorSpec {
            name: name.into(),
            dtype,
            shape: vec![-1],
        };
        Signature {
            inputs: inputs.iter().map(spec).collect(),
            outputs: vec![],
        }
    }

    fn decode(body: &str, s: &Signature) -> Result<DecodedPredict, ServeError> {
        decode_predict(body.as_bytes(), "m", s)
    }

    fn ok(body: &str, s: &Signature) -> (Vec<(String, Tensor)>, JsonFormat) {
        let (tensors, format, _) = decode(body, s).unwrap_or_else(|e| panic!("{body}: {e}"));
        (tensors, format)
    }

    fn fail(body: &str, s: &Signature) -> String {
        decode(body, s).expect_err(body).to_string()
    }

    fn f32s(shape: Vec<usize>, v: &[f32]) -> Tensor {
        tensor_from_slice(F32, shape, v)
    }

    fn strings(shape: Vec<usize>, v: &[&[u8]]) -> Tensor {
        Tensor::strings(shape, v.iter().map(|s| Bytes::copy_from_slice(s)).collect())
    }

    fn out(format: JsonFormat, outputs: Vec<(&str, Tensor)>) -> Value {
        let outputs = outputs
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        serde_json::to_value(encode_predict(format, outputs)).unwrap()
    }

    #[test]
    fn row_single_input_bare_values() {
        let s = sig(&[("x", F32)]);
        let (t, format) = ok(
            r#"{"instances": [[1, 2.5], [3, 4]], "signature_name": "serving_default"}"#,
            &s,
        );
        assert_eq!(format, JsonFormat::Row);
        assert_eq!(
            t,
            vec![("x".into(), f32s(vec![2, 2], &[1.0, 2.5, 3.0, 4.0]))]
        );
        assert_eq!(decode(r#"{"instances": [1]}"#, &s).unwrap().2, None);
        assert_eq!(
            decode(r#"{"instances": [1], "signature_name": "s"}"#, &s)
                .unwrap()
                .2
                .as_deref(),
            Some("s")
        );
        assert_eq!(
            ok(r#"{"instances": [7, 8]}"#, &s).0[0].1,
            f32s(vec![2], &[7.0, 8.0])
        );
        // A single input may also be named in each instance.
        assert_eq!(
            ok(r#"{"instances": [{"x": [1]}, {"x": [2]}]}"#, &s).0[0].1,
            f32s(vec![2, 1], &[1.0, 2.0])
        );
    }

    #[test]
    fn row_multi_input_objects_in_signature_order() {
        let s = sig(&[("a", F32), ("b", I64)]);
        let (t, _) = ok(
            r#"{"instances": [{"b": 7, "a": [1, 2]}, {"a": [3, 4], "b": -8}]}"#,
            &s,
        );
        assert_eq!(t[0], ("a".into(), f32s(vec![2, 2], &[1.0, 2.0, 3.0, 4.0])));
        assert_eq!(
            t[1],
            ("b".into(), tensor_from_slice(I64, vec![2], &[7i64, -8]))
        );
        assert!(fail(r#"{"instances": [[1, 2]]}"#, &s).contains("takes 2 inputs (a, b)"));
        let e = fail(r#"{"instances": [{"a": 1, "b": 2}, [1]]}"#, &s);
        assert!(
            e.contains("Instance 1 is a list, but instance 0 is an object"),
            "{e}"
        );
    }

    #[test]
    fn columnar_bare_and_named() {
        let one = sig(&[("x", I32)]);
        let (t, format) = ok(r#"{"inputs": [[1, 2, 3]]}"#, &one);
        assert_eq!(
            (format, &t[0].1),
            (
                JsonFormat::Columnar,
                &tensor_from_slice(I32, vec![1, 3], &[1i32, 2, 3])
            )
        );
        assert_eq!(
            ok(r#"{"inputs": 5}"#, &one).0[0].1,
            tensor_from_slice(I32, vec![], &[5i32])
        );
        assert_eq!(
            ok(r#"{"inputs": {"x": [[5]]}}"#, &one).0[0].1.shape,
            vec![1, 1]
        );
        let two = sig(&[("a", F64), ("b", Bool)]);
        let (t, _) = ok(r#"{"inputs": {"b": [[true], [false]], "a": 0.5}}"#, &two);
        assert_eq!(t[0].1, tensor_from_slice(F64, vec![], &[0.5f64]));
        assert_eq!(t[1].1, tensor_from_slice(Bool, vec![2, 1], &[1u8, 0]));
        assert!(fail(r#"{"inputs": [1]}"#, &two).contains("send an object {input name: value}"));
    }

    #[test]
    fn every_numeric_dtype() {
        let cases: Vec<(DataType, Tensor)> = vec![
            (Bool, tensor_from_slice(Bool, vec![2], &[1u8, 0])),
            (U8, tensor_from_slice(U8, vec![2], &[1u8, 0])),
            (U16, tensor_from_slice(U16, vec![2], &[1u16, 0])),
            (U32, tensor_from_slice(U32, vec![2], &[1u32, 0])),
            (U64, tensor_from_slice(U64, vec![2], &[1u64, 0])),
            (I8, tensor_from_slice(I8, vec![2], &[1i8, 0])),
            (I16, tensor_from_slice(I16, vec![2], &[1i16, 0])),
            (I32, tensor_from_slice(I32, vec![2], &[1i32, 0])),
            (I64, tensor_from_slice(I64, vec![2], &[1i64, 0])),
            (F16, tensor_from_slice(F16, vec![2], &[f16::ONE, f16::ZERO])),
            (
                BF16,
                tensor_from_slice(BF16, vec![2], &[bf16::ONE, bf16::ZERO]),
            ),
            (F32, f32s(vec![2], &[1.0, 0.0])),
            (F64, tensor_from_slice(F64, vec![2], &[1.0f64, 0.0])),
        ];
        for (dtype, want) in cases {
            assert_eq!(
                ok(r#"{"inputs": [1, 0]}"#, &sig(&[("x", dtype)])).0[0].1,
                want,
                "{dtype}"
            );
        }
        let one = |dtype, v: &str| {
            ok(&format!(r#"{{"inputs": [{v}]}}"#), &sig(&[("x", dtype)]))
                .0
                .remove(0)
                .1
        };
        assert_eq!(
            tensor_to_vec::<u8>(&one(Bool, "true, false")).unwrap(),
            vec![1, 0]
        );
        assert_eq!(
            tensor_to_vec::<u64>(&one(U64, "18446744073709551615")).unwrap(),
            vec![u64::MAX]
        );
        assert_eq!(
            tensor_to_vec::<i64>(&one(I64, "-9223372036854775808")).unwrap(),
            vec![i64::MIN]
        );
        assert_eq!(
            tensor_to_vec::<i8>(&one(I8, "-128, 127")).unwrap(),
            vec![-128, 127]
        );
        assert_eq!(
            tensor_to_vec::<i32>(&one(I32, "2.0, -3e2")).unwrap(),
            vec![2, -300]
        );
        assert_eq!(
            tensor_to_vec::<f16>(&one(F16, "0.5, -2")).unwrap(),
            vec![f16::from_f32(0.5), f16::from_f32(-2.0)]
        );
        assert_eq!(
            tensor_to_vec::<bf16>(&one(BF16, "1.5")).unwrap(),
            vec![bf16::from_f32(1.5)]
        );
        assert!(fail(r#"{"inputs": [1e5]}"#, &sig(&[("h", F16)]))
            .contains("Invalid value 100000.0 for FP16 - out of range"));
        assert!(
            fail(r#"{"inputs": [1e39]}"#, &sig(&[("f", F32)])).contains("for FP32 - out of range")
        );
        assert!(
            fail(r#"{"inputs": [2]}"#, &sig(&[("b", Bool)])).contains("Invalid value 2 for BOOL")
        );
    }

    #[test]
    fn bytes_strings_and_b64() {
        let s = sig(&[("s", DataType::Bytes)]);
        let (t, _) = ok(
            r#"{"instances": ["héllo", {"b64": "AAH/"}, {"b64": "AA"}]}"#,
            &s,
        );
        assert_eq!(
            t[0].1,
            strings(vec![3], &["héllo".as_bytes(), &[0, 1, 255], &[0]])
        );
        let e = fail(r#"{"instances": [{"b64": "not base64!"}]}"#, &s);
        assert!(
            e.starts_with("Instance 0: Invalid base64") && e.ends_with("input name: s"),
            "{e}"
        );
        // For a numeric input, b64 values are images: read as strings, decoded later
        // (`serving::image`), which also refuses them when the input cannot take images.
        let (t, _) = ok(r#"{"inputs": [{"b64": "AA=="}]}"#, &sig(&[("x", F32)]));
        assert_eq!(t[0].1, strings(vec![1], &[&[0]]));
        let (t, _) = ok(
            r#"{"instances": [{"x": {"b64": "AA=="}}, {"x": {"b64": "AQ=="}}]}"#,
            &sig(&[("x", F32)]),
        );
        assert_eq!(t[0].1, strings(vec![2], &[&[0], &[1]]));
        let e = decode(r#"{"inputs": [{"b64": "AA=="}, 1]}"#, &sig(&[("x", F32)])).unwrap_err();
        assert!(matches!(e, ServeError::InvalidPrecision { .. }), "{e}");
        let e = decode(r#"{"inputs": ["1"]}"#, &sig(&[("x", I32)])).unwrap_err();
        assert!(
            matches!(
                e,
                ServeError::InvalidPrecision {
                    actual: DataType::Bytes,
                    ..
                }
            ),
            "{e}"
        );
        let e = decode(r#"{"inputs": [1.5]}"#, &s).unwrap_err();
        assert!(
            matches!(
                e,
                ServeError::InvalidPrecision {
                    expected: DataType::Bytes,
                    actual: F64,
                    ..
                }
            ),
            "{e}"
        );
        assert!(fail(r#"{"inputs": [{"b64": "AA", "x": 1}]}"#, &s)
            .contains("An object where a value is expected"));
    }

    #[test]
    fn ragged_and_malformed_values() {
        let s = sig(&[("x", F32)]);
        let e = fail(r#"{"instances": [[1, 2], [3, 4], [5]]}"#, &s);
        assert_eq!(e, "Instance 2: Ragged instances - shape (1) differs from instance 0's shape (2); input name: x");
        let e = fail(r#"{"instances": [[[1, 2], [3]]]}"#, &s);
        assert!(
            e.starts_with("Instance 0: Ragged nested lists - a list of 1 at depth 1"),
            "{e}"
        );
        assert!(fail(r#"{"inputs": [[1, 2], 3]}"#, &s)
            .contains("a number at depth 1 where a list of 2 is expected"));
        assert!(fail(r#"{"inputs": [1, [2]]}"#, &s)
            .contains("a list at depth 1 where a value is expected"));
        assert!(fail(r#"{"inputs": [1, null]}"#, &s).contains("null is not a valid tensor element"));
        assert!(
            fail(r#"{"inputs": [{"y": 1}]}"#, &s).contains("An object where a value is expected")
        );
    }

    #[test]
    fn request_envelope_errors() {
        let s = sig(&[("x", F32)]);
        let both = fail(r#"{"instances": [1], "inputs": [1]}"#, &s);
        assert!(
            both.contains("both \"instances\" (row format) and \"inputs\""),
            "{both}"
        );
        assert!(fail(r#"{"signature_name": "a", "data": 1}"#, &s).ends_with("got keys: [data]"));
        let syntax = fail("{\"instances\": [1,\n 2", &s);
        assert!(
            syntax.starts_with("Invalid JSON in the request body")
                && syntax.contains("line 2 column"),
            "{syntax}"
        );
        assert!(fail("[1]", &s).ends_with("got a list"));
        assert!(fail(r#"{"instances": {"x": 1}}"#, &s).contains("\"instances\" must be a list"));
        assert!(fail(r#"{"instances": [1], "signature_name": 3}"#, &s)
            .contains("must be a string; got a number"));
    }

    #[test]
    fn unknown_and_missing_inputs() {
        let s = sig(&[("a", F32), ("b", F32)]);
        let expected = "a, b".to_string();
        let e = decode(r#"{"instances": [{"a": 1, "b": 2, "c": 3}]}"#, &s).unwrap_err();
        assert_eq!(
            e,
            ServeError::UnexpectedInput {
                model: "m".into(),
                input: "c".into(),
                expected: expected.clone()
            }
        );
        let e = decode(r#"{"inputs": {"a": 1}}"#, &s).unwrap_err();
        assert_eq!(
            e,
            ServeError::MissingInput {
                model: "m".into(),
                input: "b".into(),
                expected
            }
        );
        assert!(matches!(
            decode(r#"{"inputs": {"y": 1}}"#, &sig(&[("x", F32)])),
            Err(ServeError::UnexpectedInput { .. })
        ));
    }

    #[test]
    fn integer_range_and_fractions() {
        let e = fail(r#"{"instances": [1, 300]}"#, &sig(&[("px", U8)]));
        assert_eq!(e, "Instance 1: Invalid value 300 for UINT8 - expected an integer in 0..=255; input name: px");
        assert!(fail(r#"{"inputs": [-1]}"#, &sig(&[("u", U32)]))
            .contains("Invalid value -1 for UINT32"));
        assert!(fail(r#"{"inputs": [1.5]}"#, &sig(&[("i", I32)]))
            .contains("Invalid value 1.5 for INT32"));
        assert!(
            fail(r#"{"inputs": [18446744073709551615]}"#, &sig(&[("i", I64)]))
                .contains("for INT64")
        );
        let e = decode(r#"{"inputs": [true]}"#, &sig(&[("i", I32)])).unwrap_err();
        assert!(matches!(
            e,
            ServeError::InvalidPrecision { actual: Bool, .. }
        ));
    }

    /// The body is read as it streams, but answers are those of a check of the whole request:
    /// a syntax error anywhere first, then the envelope, then every instance's form, then the
    /// values, input by input in signature order. Repeated keys: the last one counts.
    #[test]
    fn which_problem_is_reported_and_repeated_keys() {
        let s = sig(&[("a", F32), ("b", I64)]);
        let e = decode(r#"{"instances": [{"a": "bad", "b": 1}, {"a": 1}]}"#, &s).unwrap_err();
        assert!(
            matches!(&e, ServeError::MissingInput { input, .. } if input == "b"),
            "{e}"
        );
        let e = decode(
            r#"{"instances": [{"a": 1, "b": "x"}, {"b": 2, "a": "y"}]}"#,
            &s,
        )
        .unwrap_err();
        assert!(
            matches!(&e, ServeError::InvalidPrecision { input, .. } if input == "a"),
            "{e}"
        );
        assert!(fail(r#"{"instances": [[1, "x"]], "inputs": 1"#, &s)
            .starts_with("Invalid JSON in the request body: EOF while parsing an object"));
        assert!(fail(r#"{"instances": [[1, "x"]], "inputs": [1]}"#, &s).contains("both"));
        let (t, _) = ok(r#"{"instances": [{"a": [1], "b": 3, "a": [2, 5]}]}"#, &s);
        assert_eq!(t[0].1, f32s(vec![1, 2], &[2.0, 5.0]));
        let one = sig(&[("x", F32)]);
        let (t, format) = ok(r#"{"instances": "no", "instances": [[5]]}"#, &one);
        assert_eq!(
            (format, &t[0].1),
            (JsonFormat::Row, &f32s(vec![1, 1], &[5.0]))
        );
    }

    #[test]
    fn claimed_shape_does_not_reserve_memory() {
        // ~30 kB whose first lists claim 4000^3 FP32 elements (256 GB): a ragged error, no abort.
        let wide = format!("[{}]", vec!["0"; 4000].join(","));
        let deep = format!("[{wide}{}]", ",[0]".repeat(3999));
        let body = format!(r#"{{"inputs": [{deep}{}]}}"#, ",0".repeat(3999));
        let e = fail(&body, &sig(&[("x", F32)]));
        assert!(
            e.contains("a list of 1 at depth 2 where the first one has 4000"),
            "{e}"
        );
    }

    #[test]
    fn empty_batch_and_empty_dimensions() {
        let s = sig(&[("x", F32)]);
        assert!(fail(r#"{"instances": []}"#, &s).contains("\"instances\" is an empty list"));
        assert_eq!(ok(r#"{"inputs": []}"#, &s).0[0].1, f32s(vec![0], &[]));
        assert_eq!(
            ok(r#"{"inputs": [[], []]}"#, &s).0[0].1,
            f32s(vec![2, 0], &[])
        );
        assert_eq!(
            ok(r#"{"instances": [[], []]}"#, &s).0[0].1,
            f32s(vec![2, 0], &[])
        );
        let b = ok(r#"{"inputs": []}"#, &sig(&[("s", DataType::Bytes)]))
            .0
            .remove(0)
            .1;
        assert_eq!(b, Tensor::strings(vec![0], vec![]));
    }

    #[test]
    fn response_row_and_columnar() {
        let x = || f32s(vec![2, 2], &[1.0, 0.1, -3.5, 4.0]);
        assert_eq!(
            out(JsonFormat::Row, vec![("y", x())]),
            json!({"predictions": [[1.0, 0.1], [-3.5, 4.0]]})
        );
        assert_eq!(
            out(JsonFormat::Columnar, vec![("y", x())]),
            json!({"outputs": [[1.0, 0.1], [-3.5, 4.0]]})
        );
        let two = || {
            vec![
                ("a", tensor_from_slice(I64, vec![2], &[7i64, -8])),
                ("b", x()),
            ]
        };
        let row = json!({"predictions": [{"a": 7, "b": [1.0, 0.1]}, {"a": -8, "b": [-3.5, 4.0]}]});
        assert_eq!(out(JsonFormat::Row, two()), row);
        let columnar = json!({"outputs": {"a": [7, -8], "b": [[1.0, 0.1], [-3.5, 4.0]]}});
        assert_eq!(out(JsonFormat::Columnar, two()), columnar);
        // Serialized as it is read, outputs in the given order.
        let text = serde_json::to_string(&encode_predict(
            JsonFormat::Row,
            vec![
                ("b".into(), tensor_from_slice(I64, vec![2], &[1i64, 2])),
                ("a".into(), f32s(vec![2], &[0.5, f32::NAN])),
            ],
        ))
        .unwrap();
        assert_eq!(
            text,
            r#"{"predictions":[{"b":1,"a":0.5},{"b":2,"a":null}]}"#
        );
        // No shared batch dimension: row falls back to the columnar layout.
        let mixed = vec![
            ("a", tensor_from_slice(I64, vec![3], &[1i64, 2, 3])),
            ("b", x()),
        ];
        assert_eq!(
            out(JsonFormat::Row, mixed),
            json!({"outputs": {"a": [1, 2, 3], "b": [[1.0, 0.1], [-3.5, 4.0]]}})
        );
        assert_eq!(
            out(JsonFormat::Row, vec![("s", f32s(vec![], &[2.0]))]),
            json!({"outputs": 2.0})
        );
        assert_eq!(
            out(JsonFormat::Row, vec![("e", f32s(vec![0, 4], &[]))]),
            json!({"predictions": []})
        );
        assert_eq!(
            out(JsonFormat::Columnar, vec![("e", f32s(vec![2, 0], &[]))]),
            json!({"outputs": [[], []]})
        );
    }

    #[test]
    fn response_leaves() {
        let leaves = |t: Tensor| out(JsonFormat::Columnar, vec![("o", t)])["outputs"].clone();
        assert_eq!(
            leaves(tensor_from_slice(Bool, vec![2], &[1u8, 0])),
            json!([true, false])
        );
        assert_eq!(
            leaves(tensor_from_slice(U64, vec![1], &[u64::MAX])),
            json!([u64::MAX])
        );
        assert_eq!(
            leaves(tensor_from_slice(I8, vec![2], &[-1i8, 127])),
            json!([-1, 127])
        );
        assert_eq!(
            leaves(tensor_from_slice(U16, vec![1], &[65535u16])),
            json!([65535])
        );
        assert_eq!(
            leaves(tensor_from_slice(F16, vec![1], &[f16::from_f32(0.5)])),
            json!([0.5])
        );
        assert_eq!(
            leaves(tensor_from_slice(BF16, vec![1], &[bf16::from_f32(-2.0)])),
            json!([-2.0])
        );
        assert_eq!(
            leaves(tensor_from_slice(F64, vec![1], &[0.1f64])),
            json!([0.1])
        );
        let text = serde_json::to_string(&leaves(f32s(
            vec![4],
            &[0.1, 1e-30, f32::NAN, f32::NEG_INFINITY],
        )))
        .unwrap();
        assert_eq!(text, "[0.1,1e-30,null,null]");
        assert_eq!(
            leaves(tensor_from_slice(F64, vec![1], &[f64::INFINITY])),
            json!([null])
        );
        let s = || strings(vec![2], &[b"caf\xc3\xa9", b"\xff\x00"]);
        assert_eq!(leaves(s()), json!(["café", {"b64": "/wA="}]));
        let named = out(JsonFormat::Row, vec![("img_bytes", s())]);
        assert_eq!(
            named,
            json!({"predictions": [{"b64": "Y2Fmw6k="}, {"b64": "/wA="}]})
        );
        // Data that disagrees with the shape is written as null, not a panic.
        assert_eq!(leaves(Tensor::raw(F32, vec![2], vec![0u8; 5])), Value::Null);
    }

    #[test]
    fn round_trip_through_encode_and_decode() {
        let values = [
            0.1f32,
            -1e-30,
            3.4e38,
            1.0,
            -0.0,
            123.456,
            f32::MIN_POSITIVE,
            7e-45,
        ];
        let t = f32s(vec![2, 4], &values);
        let s = sig(&[("x", F32)]);
        let columnar = out(JsonFormat::Columnar, vec![("x", t.clone())]);
        let body = json!({"inputs": columnar["outputs"]}).to_string();
        assert_eq!(ok(&body, &s).0[0].1, t);
        let row = out(JsonFormat::Row, vec![("x", t.clone())]);
        let body = json!({"instances": row["predictions"]}).to_string();
        assert_eq!(ok(&body, &s).0[0].1, t);
        let b = strings(vec![1, 2], &[b"ok", b"\x80"]);
        let body = json!({"inputs": out(JsonFormat::Columnar, vec![("b", b.clone())])["outputs"]})
            .to_string();
        assert_eq!(ok(&body, &sig(&[("b", DataType::Bytes)])).0[0].1, b);
    }
}
