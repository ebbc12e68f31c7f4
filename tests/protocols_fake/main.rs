//! The four front ends against the serving layer alone: the server runs in this process on the
//! fake backend (`y = x + version`), so wire formats, version selection, metadata, status,
//! health, readiness and the error mapping of TFS gRPC and REST and KServe v2 gRPC and REST are
//! checked in milliseconds, without OpenVINO. The models have the committed fixtures' names and
//! signatures (`common::in_process::fixture`), so error texts read as they do on real models.
//! What needs OpenVINO's results, real model files or the process: tests/tfs_grpc.rs,
//! tests/tfs_rest.rs, tests/kserve.rs.

#[path = "../common/mod.rs"]
mod common;
mod kserve_grpc;
mod kserve_rest;
mod readiness;
mod tfs_grpc;
mod tfs_rest;

use bytes::Bytes;
use common::in_process::{protocol_fixtures, InProcess};
use serde_json::{json, Value};
use std::collections::HashMap;
use tonic::Code;
use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vinoserve::proto::inference::model_infer_request::InferInputTensor;
use vinoserve::proto::inference::ModelInferRequest;
use vinoserve::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::{DataType as Tf, TensorProto};

/// The fixtures the real-model protocol tests serve, `add` with `add_config`, on the fake
/// backend.
fn all_fixtures(add_config: &'static str) -> InProcess {
    InProcess::serve(&protocol_fixtures(add_config, &[]), &[])
}

fn predict(model: &str, version: Option<i64>, dtype: Tf, content: &[u8]) -> PredictRequest {
    PredictRequest {
        model_spec: common::spec(model, version),
        inputs: HashMap::from([(
            "x".to_string(),
            TensorProto {
                dtype: dtype as i32,
                tensor_shape: Some(vinoserve::api::tfs::codec::shape_proto(&[1])),
                tensor_content: Bytes::copy_from_slice(content),
                ..Default::default()
            },
        )]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tfs_grpc_serves_the_latest_version_and_maps_errors() {
    let server = InProcess::start(&[("m", &[1, 2])], &[]);
    let mut client = PredictionServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let answer = client
        .predict(predict("m", None, Tf::DtFloat, &0.5f32.to_le_bytes()))
        .await
        .unwrap()
        .into_inner();
    let y = &answer.outputs["y"];
    assert_eq!(y.tensor_content.as_ref(), 2.5f32.to_le_bytes());
    assert_eq!(common::dims_of(y), vec![1]);

    let status = |request| {
        let mut client = client.clone();
        async move { client.predict(request).await.unwrap_err() }
    };
    // Version 1 is on disk but not served (latest 1).
    let e = status(predict("m", Some(1), Tf::DtFloat, &[0; 4])).await;
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = status(predict("nope", None, Tf::DtFloat, &[0; 4])).await;
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = status(predict("m", None, Tf::DtInt32, &[0; 4])).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("x"), "{e:?}");
    // Two floats for a [1] input: the message says what was expected and what came.
    let mut wrong = predict("m", None, Tf::DtFloat, &[0; 8]);
    wrong.inputs.get_mut("x").unwrap().tensor_shape =
        Some(vinoserve::api::tfs::codec::shape_proto(&[2]));
    let e = status(wrong).await;
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

async fn post(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tfs_rest_predicts_in_both_formats_and_maps_errors() {
    let server = InProcess::start(&[("m", &[3])], &[]);
    let url = server.rest_url("/v1/models/m:predict");
    let (status, body) = post(url.clone(), json!({"instances": [0.5]})).await;
    assert_eq!(
        (status, &body["predictions"]),
        (200, &json!([3.5])),
        "{body}"
    );
    let (status, body) = post(url.clone(), json!({"inputs": {"x": [0.5]}})).await;
    assert_eq!((status, &body["outputs"]), (200, &json!([3.5])), "{body}");
    let (status, body) = post(url.clone(), json!({"inputs": {"x": ["text"]}})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(
        server.rest_url("/v1/models/nope:predict"),
        json!({"instances": [0.5]}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let status: Value = reqwest::get(server.rest_url("/v1/models/m"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["model_version_status"][0]["version"], "3");
    assert_eq!(status["model_version_status"][0]["state"], "AVAILABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_rest_and_grpc_infer_and_map_errors() {
    let server = InProcess::start(&[("m", &[4])], &[]);
    let infer = server.rest_url("/v2/models/m/infer");
    let input = |datatype: &str, data: Value| json!({"inputs": [{"name": "x", "shape": [1], "datatype": datatype, "data": data}]});
    let (status, body) = post(infer.clone(), input("FP32", json!([0.5]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["data"], json!([4.5]), "{body}");
    assert_eq!(body["model_version"], "4", "{body}");
    let (status, body) = post(infer.clone(), input("INT32", json!([1]))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("x"), "{body}");
    let (status, body) = post(
        server.rest_url("/v2/models/nope/infer"),
        input("FP32", json!([0.5])),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let mut client = GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let request = |datatype: &str| ModelInferRequest {
        model_name: "m".into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape: vec![1],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::copy_from_slice(&0.5f32.to_le_bytes())],
        ..Default::default()
    };
    let answer = client
        .model_infer(request("FP32"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.raw_output_contents[0].as_ref(), 4.5f32.to_le_bytes());
    let e = client.model_infer(request("INT32")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}
