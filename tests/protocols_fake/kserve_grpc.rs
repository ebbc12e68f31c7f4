//! KServe v2 gRPC: server and model health, metadata, and every inference error with its code
//! and message (moved from tests/kserve.rs, which keeps what needs OpenVINO).

use crate::common::in_process::{protocol_fixtures, InProcess};
use crate::common::requests::{infer, input, with_contents};
use crate::common::values::le_bytes;
use crate::common::{assert_status, ADD_ALL_VERSIONS};
use std::collections::HashMap;
use tonic::transport::Channel;
use tonic::Code;
use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vinoserve::proto::inference::model_infer_request::InferRequestedOutputTensor;
use vinoserve::proto::inference::{
    ModelInferRequest, ModelMetadataRequest, ModelReadyRequest, ServerLiveRequest,
    ServerMetadataRequest, ServerReadyRequest,
};

/// The fixtures tests/kserve.rs serves, on the fake backend.
pub fn served_fixtures() -> InProcess {
    InProcess::serve(&protocol_fixtures(ADD_ALL_VERSIONS, &["broken"]), &[])
}

pub async fn kserve_client(server: &InProcess) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_and_metadata() {
    let server = served_fixtures();
    let mut client = kserve_client(&server).await;

    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = client
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "vinoserve");
    assert_eq!(meta.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(meta.extensions, vec!["binary_tensor_data"]);

    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    for (name, version, want) in [
        ("identity", "", true),
        ("add", "1", true),
        ("add", "7", false),
    ] {
        let got = client
            .model_ready(ready(name, version))
            .await
            .unwrap()
            .into_inner()
            .ready;
        assert_eq!(got, want, "{name} {version:?}");
    }
    let status = client.model_ready(ready("nope", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    let status = client
        .model_ready(ready("add", "latest"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());

    let metadata = |name: &str, version: &str| ModelMetadataRequest {
        name: name.into(),
        version: version.into(),
    };
    let m = client
        .model_metadata(metadata("add", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((m.name.as_str(), m.platform.as_str()), ("add", "openvino"));
    assert_eq!(m.versions, vec!["1", "2"]);
    assert_eq!(
        (
            m.inputs[0].name.as_str(),
            m.inputs[0].datatype.as_str(),
            m.inputs[0].shape.as_slice()
        ),
        ("x", "FP32", &[1i64, 10][..])
    );
    assert_eq!(m.outputs[0].name, "y");
    let m = client
        .model_metadata(metadata("dynamic", "1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.inputs[0].shape, vec![-1, 8]);
    let m = client
        .model_metadata(metadata("two_io", ""))
        .await
        .unwrap()
        .into_inner();
    let names = |t: &[vinoserve::proto::inference::model_metadata_response::TensorMetadata]| {
        t.iter().map(|t| t.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        (names(&m.inputs), names(&m.outputs)),
        (
            vec!["a".into(), "b".into()],
            vec!["sum".into(), "product".into()]
        )
    );
    let m = client
        .model_metadata(metadata("half", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.inputs[0].datatype, "FP16");
    let status = client
        .model_metadata(metadata("add", "9"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("version 9"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_infer_errors() {
    let server = served_fixtures();
    let mut client = kserve_client(&server).await;
    let x = || input("x", "FP32", &[1, 10]);
    let typed = || with_contents(x(), |c| c.fp32_contents = vec![0.0; 10]);
    let cases: Vec<(ModelInferRequest, Code, &str)> = vec![
        (
            infer("add", "", vec![typed()], vec![le_bytes(&[0f32; 10])]),
            Code::InvalidArgument,
            "both typed contents and raw_input_contents",
        ),
        (
            infer(
                "two_io",
                "",
                vec![input("a", "FP32", &[1, 4]), input("b", "FP32", &[1, 4])],
                vec![vec![0; 16]],
            ),
            Code::InvalidArgument,
            "raw_input_contents has 1 entries for 2 inputs",
        ),
        (
            infer(
                "add",
                "",
                vec![input("x", "FP32", &[1, -10])],
                vec![vec![0; 40]],
            ),
            Code::InvalidArgument,
            "negative dimension -10; input name: x",
        ),
        (
            infer(
                "add",
                "",
                vec![input("x", "FP32", &[1 << 40, 1 << 40])],
                vec![vec![0; 40]],
            ),
            Code::InvalidArgument,
            "overflows",
        ),
        (
            infer(
                "half",
                "",
                vec![with_contents(input("x", "FP16", &[1, 4]), |c| {
                    c.fp32_contents = vec![1.0; 4]
                })],
                vec![],
            ),
            Code::InvalidArgument,
            "FP16 has no typed contents field",
        ),
        (
            infer(
                "add",
                "",
                vec![input("x", "INT32", &[1, 10])],
                vec![vec![0; 40]],
            ),
            Code::InvalidArgument,
            "Invalid input precision - Expected: FP32; Actual: INT32; input name: x",
        ),
        (
            infer("add", "", vec![x()], vec![vec![0; 39]]),
            Code::InvalidArgument,
            "Expected: 40 bytes; Actual: 39 bytes; input name: x",
        ),
        (
            infer(
                "add",
                "",
                vec![with_contents(x(), |c| c.fp32_contents = vec![0.0; 9])],
                vec![],
            ),
            Code::InvalidArgument,
            "Invalid number of values in fp32_contents - Expected: 10; Actual: 9",
        ),
        (
            infer(
                "add",
                "",
                vec![input("x", "FLOAT32", &[1, 10])],
                vec![vec![0; 40]],
            ),
            Code::InvalidArgument,
            "Unsupported datatype \"FLOAT32\"",
        ),
        (
            infer("add", "two", vec![typed()], vec![]),
            Code::InvalidArgument,
            "Invalid model version \"two\"",
        ),
        (
            infer("add", "7", vec![typed()], vec![]),
            Code::NotFound,
            "model add, version 7",
        ),
        (
            infer("nope", "", vec![typed()], vec![]),
            Code::NotFound,
            "Model with requested name is not found: nope",
        ),
    ];
    for (request, code, message) in cases {
        let status = client.model_infer(request).await.expect_err(message);
        assert_status(&status, code, message);
    }
    let mut unknown_output = infer("add", "", vec![typed()], vec![]);
    unknown_output.outputs = vec![InferRequestedOutputTensor {
        name: "z".into(),
        parameters: HashMap::new(),
    }];
    let status = client.model_infer(unknown_output).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("Unknown output requested: z"),
        "{}",
        status.message()
    );
}
