//! TFS gRPC `Predict`: arbitrary bytes as a `PredictRequest`, each input through
//! `decode_tensor`, then `validate_inputs` against a fixed signature. What validation accepts
//! must keep its promises and survive an encode/decode round trip.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use vinoserve::api::tfs::codec::{decode_tensor, encode_tensor};
use vinoserve::model::validate::validate_inputs;
use vinoserve::proto::tensorflow::serving::PredictRequest;

fuzz_target!(|data: &[u8]| {
    // From `Bytes`, as the server decodes: `tensor_content` is then a slice of the buffer.
    let Ok(request) = PredictRequest::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    // The map's iteration order is random; sorting makes a crash reproduce.
    let mut protos: Vec<_> = request.inputs.into_iter().collect();
    protos.sort_by(|a, b| a.0.cmp(&b.0));
    let mut inputs = Vec::with_capacity(protos.len());
    for (name, proto) in protos {
        match decode_tensor(&name, proto) {
            Ok(tensor) => inputs.push((name, tensor)),
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    }
    let signature = common::signature();
    let Ok(valid) = validate_inputs("fuzz", &signature, inputs) else {
        return;
    };
    common::assert_validated(&signature, valid.tensors());
    for (spec, tensor) in signature.inputs.iter().zip(valid.tensors()) {
        let back = decode_tensor(&spec.name, encode_tensor(tensor.clone()))
            .expect("an encoded valid tensor decodes");
        assert_eq!(&back, tensor, "{}", spec.name);
    }
});
