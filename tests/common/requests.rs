//! Requests of the two gRPC APIs, built the same way by every test: TF Serving Predict and
//! KServe v2 ModelInfer.

use bytes::Bytes;
use std::collections::HashMap;
use vinoserve::api::tfs::codec::shape_proto;
use vinoserve::proto::inference::model_infer_request::InferInputTensor;
use vinoserve::proto::inference::{InferTensorContents, ModelInferRequest};
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::{DataType as Tf, TensorProto};

/// A TensorProto carrying `bytes` as `tensor_content`.
pub fn tensor(dtype: Tf, shape: &[i64], bytes: impl Into<Bytes>) -> TensorProto {
    TensorProto {
        dtype: dtype as i32,
        tensor_shape: Some(shape_proto(shape)),
        tensor_content: bytes.into(),
        ..Default::default()
    }
}

/// A TFS Predict of `model` (at `version`, else the default one) with named `inputs`.
pub fn predict(
    model: &str,
    version: Option<i64>,
    inputs: Vec<(&str, TensorProto)>,
) -> PredictRequest {
    PredictRequest {
        model_spec: super::spec(model, version),
        inputs: inputs
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
        ..Default::default()
    }
}

/// A KServe input with no contents (for `raw_input_contents`).
pub fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents: None,
    }
}

/// `t` with typed contents that `fill` writes.
pub fn with_contents(
    mut t: InferInputTensor,
    fill: impl FnOnce(&mut InferTensorContents),
) -> InferInputTensor {
    let mut contents = InferTensorContents::default();
    fill(&mut contents);
    t.contents = Some(contents);
    t
}

/// A KServe ModelInfer of `model` at `version` ("" for the default one).
pub fn infer(
    model: &str,
    version: &str,
    inputs: Vec<InferInputTensor>,
    raw: Vec<Vec<u8>>,
) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        model_version: version.into(),
        id: String::new(),
        parameters: HashMap::new(),
        inputs,
        outputs: vec![],
        raw_input_contents: raw.into_iter().map(Bytes::from).collect(),
    }
}
