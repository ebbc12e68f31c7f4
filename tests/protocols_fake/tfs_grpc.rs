//! TF Serving gRPC: every error row with its code and message, metadata and status (moved from
//! tests/tfs_grpc.rs, which keeps what needs OpenVINO).

use crate::all_fixtures;
use crate::common::requests::{predict, tensor};
use crate::common::values::f32_bytes;
use crate::common::ADD_ALL_VERSIONS;
use crate::common::{assert_status, dims_of, load_error, signature_def, spec};
use tonic::Code;
use vinoserve::api::tfs::codec::shape_proto;
use vinoserve::proto::tensorflow::serving::model_service_client::ModelServiceClient;
use vinoserve::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use vinoserve::proto::tensorflow::serving::{
    model_spec::VersionChoice, ClassificationRequest, GetModelStatusRequest, ModelSpec,
    PredictRequest,
};
use vinoserve::proto::tensorflow::DataType as Tf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_row_has_its_code_and_message() {
    let server = all_fixtures(ADD_ALL_VERSIONS);
    let mut client = PredictionServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let x = || tensor(Tf::DtFloat, &[1, 10], f32_bytes(&[0f32; 10]));
    let cases: Vec<(PredictRequest, Code, &str)> = vec![
        (
            predict("nope", None, vec![("x", x())]),
            Code::NotFound,
            "Model with requested name is not found: nope",
        ),
        (
            predict("add", Some(7), vec![("x", x())]),
            Code::NotFound,
            "Model with requested version is not found: model add, version 7",
        ),
        (
            predict(
                "add",
                None,
                vec![("x", tensor(Tf::DtFloat, &[1, 11], f32_bytes(&[0f32; 11])))],
            ),
            Code::InvalidArgument,
            "Invalid input shape - Expected: (1,10); Actual: (1,11); input name: x",
        ),
        (
            predict(
                "add",
                None,
                vec![("x", tensor(Tf::DtInt32, &[1, 10], vec![0; 40]))],
            ),
            Code::InvalidArgument,
            "Invalid input precision - Expected: FP32; Actual: INT32; input name: x",
        ),
        (
            predict(
                "two_io",
                None,
                vec![("a", tensor(Tf::DtFloat, &[1, 4], vec![0; 16]))],
            ),
            Code::InvalidArgument,
            "Expected input: b",
        ),
        (
            predict("add", None, vec![("x", x()), ("z", x())]),
            Code::InvalidArgument,
            "Unexpected input name: z",
        ),
        (
            predict(
                "add",
                None,
                vec![("x", tensor(Tf::DtFloat, &[1, 10], vec![0; 39]))],
            ),
            Code::InvalidArgument,
            "Expected: 40 bytes; Actual: 39 bytes; input name: x",
        ),
        (
            predict(
                "add",
                None,
                vec![("x", tensor(Tf::DtFloat, &[1, 10], vec![0; 44]))],
            ),
            Code::InvalidArgument,
            "Expected: 40 bytes; Actual: 44 bytes",
        ),
        (
            predict(
                "add",
                None,
                vec![("x", tensor(Tf::DtFloat, &[1 << 40, 1 << 40], vec![0; 40]))],
            ),
            Code::InvalidArgument,
            "overflows",
        ),
        (
            predict("broken", None, vec![("x", x())]),
            Code::NotFound,
            "Model has no available version: model broken",
        ),
    ];
    for (req, code, message) in cases {
        let status = client.predict(req).await.expect_err(message);
        assert_status(&status, code, message);
    }
    let mut bad_filter = predict("add", None, vec![("x", x())]);
    bad_filter.output_filter = vec!["nope".into()];
    assert_eq!(
        client.predict(bad_filter).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let status = client
        .classify(ClassificationRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("Predict"));
    // The server still serves after all of that.
    let answer = client
        .predict(predict("add", None, vec![("x", x())]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dims_of(&answer.outputs["y"]), vec![1, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_status() {
    let server = all_fixtures(ADD_ALL_VERSIONS);
    let mut client = PredictionServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let (type_url, map) = signature_def(&mut client, "dynamic").await;
    assert_eq!(
        type_url,
        "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    );
    let def = &map.signature_def["serving_default"];
    assert_eq!(def.inputs["x"].dtype, Tf::DtFloat as i32);
    assert_eq!(def.inputs["x"].tensor_shape, Some(shape_proto(&[-1i64, 8])));
    assert_eq!(
        def.outputs["y"].tensor_shape,
        Some(shape_proto(&[-1i64, 8]))
    );
    assert_eq!(def.method_name, "tensorflow/serving/predict");

    let mut models = ModelServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let status = |model: &str, version: Option<i64>| GetModelStatusRequest {
        model_spec: spec(model, version),
    };
    let add = models
        .get_model_status(status("add", None))
        .await
        .unwrap()
        .into_inner();
    let states: Vec<(i64, i32)> = add
        .model_version_status
        .iter()
        .map(|s| (s.version, s.state))
        .collect();
    assert_eq!(states, vec![(1, 30), (2, 30)]);
    // The load error in the status (the real runtime's text: tests/tfs_rest.rs).
    let error = load_error(server.grpc_url(), "broken").await;
    assert!(error.contains("FAIL"), "{error}");
    let one = models
        .get_model_status(GetModelStatusRequest {
            model_spec: Some(ModelSpec {
                name: "add".into(),
                signature_name: String::new(),
                version_choice: Some(VersionChoice::Version(1)),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.model_version_status.len(), 1);
    let missing = models
        .get_model_status(status("nope", None))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
