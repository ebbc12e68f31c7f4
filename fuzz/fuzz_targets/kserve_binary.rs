//! KServe v2 REST `infer` with the binary-data extension: `decode_request` splits the body into
//! the JSON header (`Inference-Header-Content-Length` bytes) and the binary tensors.
//!
//! Input: a 4-byte little-endian header length (`0xFFFFFFFF`: no header, the body is all JSON),
//! then the body. The length is arbitrary: it may exceed the body or split a UTF-8 sequence.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vinoserve::api::kserve::json::{decode_request, encode_response};
use vinoserve::model::request::InferResponse;
use vinoserve::model::validate::validate_inputs;

fuzz_target!(|data: &[u8]| {
    let Some((length, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let header_len = match u32::from_le_bytes(*length) {
        u32::MAX => None,
        n => Some(n as usize),
    };
    let decoded = match decode_request(Bytes::copy_from_slice(body), header_len) {
        Ok(decoded) => decoded,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // Echo the inputs (an identity model), unvalidated: the encoder must not trust them.
    let answer = InferResponse {
        model: "fuzz".into(),
        version: 1,
        outputs: decoded.inputs.clone(),
    };
    let (json, _chunks) = encode_response(answer, decoded.id, &decoded.binary);
    let _ = serde_json::to_vec(&json);
    let signature = common::signature();
    if let Ok(valid) = validate_inputs("fuzz", &signature, decoded.inputs) {
        common::assert_validated(&signature, valid.tensors());
    }
});
