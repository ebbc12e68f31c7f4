//! TFS REST `:predict` JSON (row and columnar, `{"b64": ..}`): `decode_predict` against a fixed
//! signature, then validation and the response encoder on what it decoded.
//!
//! Input: one selector byte, then the body. An even selector picks the multi-input signature
//! (named inputs), an odd one a single input of dtype number `selector / 2 % 14` (bare values).

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use vinoserve::api::tfs::json::{decode_predict, encode_predict};
use vinoserve::model::validate::validate_inputs;
use vinoserve::tensor::DataType;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let signature = match selector % 2 {
        0 => common::signature(),
        _ => common::single(DataType::ALL[usize::from(selector / 2) % DataType::ALL.len()]),
    };
    let (inputs, format, _) = match decode_predict(body, "fuzz", &signature) {
        Ok(decoded) => decoded,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(inputs.len(), signature.inputs.len());
    for ((name, tensor), spec) in inputs.iter().zip(&signature.inputs) {
        assert_eq!(name, &spec.name);
        common::assert_consistent(name, tensor);
    }
    let _ = serde_json::to_vec(&encode_predict(format, inputs.clone()));
    if let Ok(valid) = validate_inputs("fuzz", &signature, inputs) {
        common::assert_validated(&signature, valid.tensors());
    }
});
