//! KServe v2 (gRPC and REST), gRPC health and reflection, against the real server and real
//! OpenVINO models.

mod common;

use bytes::Bytes;
use common::{copy_dir, fixtures, reference, Repo, Server};
use openvino::ElementType;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vinoserve::proto::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use vinoserve::proto::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};

const KSERVE: &str = "inference.GRPCInferenceService";
const TFS_PREDICT: &str = "tensorflow.serving.PredictionService";
const TFS_MODEL: &str = "tensorflow.serving.ModelService";

fn served_models() -> Repo {
    Repo::new(&[
        ("identity", ""),
        ("add", r#""model_version_policy": {"all": {}}"#),
        ("two_io", ""),
        ("int64", ""),
        ("half", ""),
        ("uint8", ""),
        ("dynamic", ""),
    ])
}

fn le_bytes<T: bytemuck::Pod>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}

fn halves(values: &[f32]) -> Vec<half::f16> {
    values.iter().map(|&v| half::f16::from_f32(v)).collect()
}

/// A connection for the generated clients that have no `connect` (health, reflection).
async fn channel(server: &Server) -> Channel {
    Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn kserve_client(server: &Server) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .unwrap()
}

fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents: None,
    }
}

fn with_contents(
    mut t: InferInputTensor,
    fill: impl FnOnce(&mut InferTensorContents),
) -> InferInputTensor {
    let mut contents = InferTensorContents::default();
    fill(&mut contents);
    t.contents = Some(contents);
    t
}

fn infer_request(
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

/// Output `name` of a response, as native numbers from `raw_output_contents`.
fn output<T: bytemuck::Pod>(response: &ModelInferResponse, name: &str) -> Vec<T> {
    let index = response
        .outputs
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output {name}"));
    bytemuck::pod_collect_to_vec(&response.raw_output_contents[index])
}

/// Polls `check` until it returns true (the server rescans folders every second).
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_and_metadata() {
    let repo = served_models();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
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
async fn grpc_infer_typed_and_raw() {
    let repo = served_models();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let mut client = kserve_client(&server).await;

    // FP32, raw: bit-exact against OpenVINO run directly (incl. -0.0, denormals, inf); id echoed.
    let x: Vec<f32> = vec![
        -0.0,
        1e-40,
        f32::INFINITY,
        3.5,
        -2.25,
        0.1,
        7.0,
        8.0,
        9.0,
        1e30,
    ];
    let mut request = infer_request(
        "identity",
        "",
        vec![input("x", "FP32", &[1, 10])],
        vec![le_bytes(&x)],
    );
    request.id = "request-42".into();
    let out = client.model_infer(request).await.unwrap().into_inner();
    let xml = repo.model_dir("identity").join("1/model.xml");
    let want = reference::infer(
        &xml,
        &[("x", ElementType::F32, vec![1, 10], le_bytes(&x))],
        &["y"],
    );
    assert_eq!(out.raw_output_contents[0].as_ref(), want[0].as_slice());
    assert_eq!(
        (
            out.model_name.as_str(),
            out.model_version.as_str(),
            out.id.as_str()
        ),
        ("identity", "1", "request-42")
    );
    assert_eq!(
        (
            out.outputs[0].name.as_str(),
            out.outputs[0].datatype.as_str()
        ),
        ("y", "FP32")
    );
    assert_eq!(out.outputs[0].shape, vec![1, 10]);
    assert!(
        out.outputs[0].contents.is_none(),
        "outputs come back raw only"
    );

    // FP32, typed contents; dynamic batch of 3.
    let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
    let t = with_contents(input("x", "FP32", &[3, 8]), |c| c.fp32_contents = x.clone());
    let out = client
        .model_infer(infer_request("dynamic", "", vec![t], vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        output::<f32>(&out, "y"),
        x.iter().map(|v| v * 3.0).collect::<Vec<_>>()
    );
    assert_eq!(out.outputs[0].shape, vec![3, 8]);

    // INT64, typed and raw.
    let x = vec![1i64, -2, 3, 1000, -50000];
    let typed = with_contents(input("x", "INT64", &[1, 5]), |c| {
        c.int64_contents = x.clone()
    });
    let raw = infer_request(
        "int64",
        "",
        vec![input("x", "INT64", &[1, 5])],
        vec![le_bytes(&x)],
    );
    for request in [infer_request("int64", "", vec![typed], vec![]), raw] {
        let out = client.model_infer(request).await.unwrap().into_inner();
        assert_eq!(output::<i64>(&out, "y"), vec![2, -4, 6, 2000, -100000]);
        assert_eq!(out.outputs[0].datatype, "INT64");
    }

    // UINT8, typed (uint_contents) and raw; 255 wraps to 0.
    let x = [0u8, 1, 2, 100, 254, 255];
    let typed = with_contents(input("x", "UINT8", &[1, 6]), |c| {
        c.uint_contents = x.iter().map(|&v| v.into()).collect()
    });
    let raw = infer_request(
        "uint8",
        "",
        vec![input("x", "UINT8", &[1, 6])],
        vec![x.to_vec()],
    );
    for request in [infer_request("uint8", "", vec![typed], vec![]), raw] {
        let out = client.model_infer(request).await.unwrap().into_inner();
        assert_eq!(out.raw_output_contents[0].as_ref(), &[1, 2, 3, 101, 255, 0]);
    }

    // FP16: raw only.
    let x = halves(&[1.0, -2.5, 0.0, 100.0]);
    let out = client
        .model_infer(infer_request(
            "half",
            "",
            vec![input("x", "FP16", &[1, 4])],
            vec![le_bytes(&x)],
        ))
        .await
        .unwrap()
        .into_inner();
    let y: Vec<half::f16> = output(&out, "y");
    assert_eq!(y, halves(&[2.0, -1.5, 1.0, 101.0]));
    assert_eq!(out.outputs[0].datatype, "FP16");

    // Requested outputs on two_io: only `product`, and both in the order asked for.
    let ab = || {
        vec![
            with_contents(input("a", "FP32", &[1, 4]), |c| {
                c.fp32_contents = vec![1.0, 2.0, 3.0, 4.0]
            }),
            with_contents(input("b", "FP32", &[1, 4]), |c| {
                c.fp32_contents = vec![0.5, -1.0, 2.0, 10.0]
            }),
        ]
    };
    let requested = |names: &[&str]| {
        names
            .iter()
            .map(|n| InferRequestedOutputTensor {
                name: n.to_string(),
                parameters: HashMap::new(),
            })
            .collect()
    };
    let mut request = infer_request("two_io", "", ab(), vec![]);
    request.outputs = requested(&["product"]);
    let out = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(out.outputs.len(), 1);
    assert_eq!(output::<f32>(&out, "product"), vec![0.5, -2.0, 6.0, 40.0]);
    let out = client
        .model_infer(infer_request("two_io", "", ab(), vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        out.outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        vec!["sum", "product"]
    );
    assert_eq!(output::<f32>(&out, "sum"), vec![1.5, 1.0, 5.0, 14.0]);

    // Version selection on `add` (v1 adds 1, v2 adds 2; empty = latest).
    for (version, add) in [("", 2.0f32), ("0", 2.0), ("1", 1.0), ("2", 2.0)] {
        let t = with_contents(input("x", "FP32", &[1, 10]), |c| {
            c.fp32_contents = vec![1.0; 10]
        });
        let out = client
            .model_infer(infer_request("add", version, vec![t], vec![]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            output::<f32>(&out, "y"),
            vec![1.0 + add; 10],
            "version {version:?}"
        );
        // The answer names the version that ran: the default one for "" and "0".
        assert_eq!(
            out.model_version,
            if version.is_empty() || version == "0" {
                "2"
            } else {
                version
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_infer_errors() {
    let repo = served_models();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let mut client = kserve_client(&server).await;
    let x = || input("x", "FP32", &[1, 10]);
    let typed = || with_contents(x(), |c| c.fp32_contents = vec![0.0; 10]);
    let cases: Vec<(ModelInferRequest, Code, &str)> = vec![
        (
            infer_request("add", "", vec![typed()], vec![le_bytes(&[0f32; 10])]),
            Code::InvalidArgument,
            "both typed contents and raw_input_contents",
        ),
        (
            infer_request(
                "two_io",
                "",
                vec![input("a", "FP32", &[1, 4]), input("b", "FP32", &[1, 4])],
                vec![vec![0; 16]],
            ),
            Code::InvalidArgument,
            "raw_input_contents has 1 entries for 2 inputs",
        ),
        (
            infer_request(
                "add",
                "",
                vec![input("x", "FP32", &[1, -10])],
                vec![vec![0; 40]],
            ),
            Code::InvalidArgument,
            "negative dimension -10; input name: x",
        ),
        (
            infer_request(
                "add",
                "",
                vec![input("x", "FP32", &[1 << 40, 1 << 40])],
                vec![vec![0; 40]],
            ),
            Code::InvalidArgument,
            "overflows",
        ),
        (
            infer_request(
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
            infer_request(
                "add",
                "",
                vec![input("x", "INT32", &[1, 10])],
                vec![vec![0; 40]],
            ),
            Code::InvalidArgument,
            "Invalid input precision - Expected: FP32; Actual: INT32; input name: x",
        ),
        (
            infer_request("add", "", vec![x()], vec![vec![0; 39]]),
            Code::InvalidArgument,
            "Expected: 40 bytes; Actual: 39 bytes; input name: x",
        ),
        (
            infer_request(
                "add",
                "",
                vec![with_contents(x(), |c| c.fp32_contents = vec![0.0; 9])],
                vec![],
            ),
            Code::InvalidArgument,
            "Invalid number of values in fp32_contents - Expected: 10; Actual: 9",
        ),
        (
            infer_request(
                "add",
                "",
                vec![input("x", "FLOAT32", &[1, 10])],
                vec![vec![0; 40]],
            ),
            Code::InvalidArgument,
            "Unsupported datatype \"FLOAT32\"",
        ),
        (
            infer_request("add", "two", vec![typed()], vec![]),
            Code::InvalidArgument,
            "Invalid model version \"two\"",
        ),
        (
            infer_request("add", "7", vec![typed()], vec![]),
            Code::NotFound,
            "model add, version 7",
        ),
        (
            infer_request("nope", "", vec![typed()], vec![]),
            Code::NotFound,
            "Model with requested name is not found: nope",
        ),
    ];
    for (request, code, message) in cases {
        let status = client.model_infer(request).await.expect_err(message);
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(message),
            "{:?} does not contain {message:?}",
            status.message()
        );
    }
    let mut unknown_output = infer_request("add", "", vec![typed()], vec![]);
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

/// A REST answer: status, headers and body bytes.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.status, self.body))
    }

    /// The JSON header and the binary data after it (binary-data extension).
    fn split(&self) -> (Value, Bytes) {
        let n: usize = self.headers["inference-header-content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let header = serde_json::from_slice(&self.body[..n]).unwrap();
        (header, self.body.slice(n..))
    }

    /// `{"error": "..."}` with this status, whose message contains `part`.
    fn assert_error(&self, status: u16, part: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        let message = self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains(part),
            "{message:?} does not contain {part:?}"
        );
    }
}

struct Rest {
    client: Client,
    base: String,
}

impl Rest {
    fn new(server: &Server) -> Rest {
        Rest {
            client: Client::new(),
            base: server.rest_url(""),
        }
    }

    async fn answer(response: reqwest::Response) -> Answer {
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        Rest::answer(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        Rest::answer(request.body(body.to_string()).send().await.unwrap()).await
    }

    /// A JSON header followed by binary input data.
    async fn post_binary(&self, path: &str, header: &Value, binary: &[u8]) -> Answer {
        let header = header.to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(binary);
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/octet-stream")
            .header("Inference-Header-Content-Length", header.len());
        Rest::answer(request.body(body).send().await.unwrap()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_health_and_metadata() {
    let repo = served_models();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let rest = Rest::new(&server);

    // The Open Inference Protocol's health bodies (KServe's SDK parses them), next to the code.
    for (path, body) in [
        ("/v2/health/live", json!({"live": true})),
        ("/v2/health/ready", json!({"ready": true})),
        (
            "/v2/models/identity/ready",
            json!({"name": "identity", "ready": true}),
        ),
        (
            "/v2/models/add/versions/1/ready",
            json!({"name": "add", "ready": true}),
        ),
    ] {
        let a = rest.get(path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.json(), body, "{path}");
    }
    let a = rest.get("/v2/models/add/versions/7/ready").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json(), json!({"name": "add", "ready": false}));
    rest.get("/v2/models/nope/ready")
        .await
        .assert_error(404, "nope");
    rest.get("/v2/models/add/versions/x/ready")
        .await
        .assert_error(400, "Invalid model version");

    let a = rest.get("/v2").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"name": "vinoserve", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]})
    );

    let a = rest.get("/v2/models/add").await;
    // rt_info: the IR's runtime-info tree, as OVMS serves it (the fixture's holds what
    // ov.save_model wrote).
    assert_eq!(
        a.json(),
        json!({"name": "add", "versions": ["1", "2"], "platform": "openvino",
               "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 10]}],
               "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 10]}],
               "rt_info": {"OpenVINO Runtime": "2026.4.1-22982-e213a147257-releases/2026/4"}})
    );
    let a = rest.get("/v2/models/dynamic/versions/1").await;
    assert_eq!(
        a.json()["inputs"],
        json!([{"name": "x", "datatype": "FP32", "shape": [-1, 8]}])
    );
    rest.get("/v2/models/add/versions/9")
        .await
        .assert_error(404, "version 9");
    rest.get("/v2/models/nope")
        .await
        .assert_error(404, "Model with requested name is not found: nope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_infer_json_and_binary() {
    let repo = served_models();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let rest = Rest::new(&server);

    // JSON in and out; flat data; id echoed; version selection.
    for (path, add, version) in [
        ("/v2/models/add/infer", 2.0, "2"),
        ("/v2/models/add/versions/1/infer", 1.0, "1"),
    ] {
        let a = rest
            .post(path, &json!({"id": "r1", "inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP32", "data": vec![0.5; 10]}]}))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(a.headers["content-type"], "application/json");
        assert_eq!(
            a.json(),
            json!({"model_name": "add", "model_version": version, "id": "r1",
                   "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 10], "data": vec![0.5 + add; 10]}]})
        );
    }

    // Nested data; INT64 and UINT8.
    let a = rest
        .post("/v2/models/int64/infer", &json!({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "INT64", "data": [[1, -2, 3, 1000, -50000]]}]}))
        .await;
    assert_eq!(
        a.json()["outputs"][0]["data"],
        json!([2, -4, 6, 2000, -100000])
    );
    let a = rest
        .post("/v2/models/uint8/infer", &json!({"inputs": [{"name": "x", "shape": [1, 6], "datatype": "UINT8", "data": [0, 1, 2, 100, 254, 255]}]}))
        .await;
    assert_eq!(
        a.json()["outputs"][0]["data"],
        json!([1, 2, 3, 101, 255, 0])
    );

    // Binary both ways: an FP16 input as binary data, the output asked back as binary.
    let x = le_bytes(&halves(&[1.0, -2.5, 0.0, 100.0]));
    let header = json!({
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16", "parameters": {"binary_data_size": x.len()}}],
        "parameters": {"binary_data_output": true}
    });
    let a = rest.post_binary("/v2/models/half/infer", &header, &x).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.headers["content-type"], "application/octet-stream");
    let (json, binary) = a.split();
    assert_eq!(
        json["outputs"],
        json!([{"name": "y", "datatype": "FP16", "shape": [1, 4], "parameters": {"binary_data_size": 8}}])
    );
    let y: Vec<half::f16> = bytemuck::pod_collect_to_vec(&binary);
    assert_eq!(y, halves(&[2.0, -1.5, 1.0, 101.0]));

    // A binary input beside a JSON one; requested outputs, one binary and one JSON.
    let a_bytes = le_bytes(&[1.0f32, 2.0, 3.0, 4.0]);
    let header = json!({
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [0.5, -1.0, 2.0, 10.0]}
        ],
        "outputs": [{"name": "product", "parameters": {"binary_data": true}}, {"name": "sum"}]
    });
    let a = rest
        .post_binary("/v2/models/two_io/infer", &header, &a_bytes)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let (json, binary) = a.split();
    assert_eq!(
        json["outputs"],
        json!([
            {"name": "product", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}},
            {"name": "sum", "datatype": "FP32", "shape": [1, 4], "data": [1.5, 1.0, 5.0, 14.0]}
        ])
    );
    assert_eq!(
        bytemuck::pod_collect_to_vec::<u8, f32>(&binary),
        vec![0.5, -2.0, 6.0, 40.0]
    );

    // Only `product`, in JSON.
    let a = rest
        .post(
            "/v2/models/two_io/infer",
            &json!({"inputs": [
                {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
                {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}],
              "outputs": [{"name": "product"}]}),
        )
        .await;
    assert_eq!(
        a.json()["outputs"],
        json!([{"name": "product", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_infer_errors() {
    let repo = served_models();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let rest = Rest::new(&server);
    let x = |extra: Value| {
        let mut t = json!({"name": "x", "shape": [1, 10], "datatype": "FP32"});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"inputs": [t]})
    };

    // data and binary data for one input: 400.
    let header = x(json!({"data": vec![0.0; 10], "parameters": {"binary_data_size": 40}}));
    rest.post_binary("/v2/models/add/infer", &header, &[0; 40])
        .await
        .assert_error(400, "both \"data\" and a binary_data_size");
    rest.post_binary(
        "/v2/models/add/infer",
        &x(json!({"parameters": {"binary_data_size": 40}})),
        &[0; 39],
    )
    .await
    .assert_error(400, "only 39 bytes of binary data remain");
    rest.post("/v2/models/add/infer", &x(json!({"data": vec![0.0; 9]})))
        .await
        .assert_error(400, "Expected: 10 for shape (1,10); Actual: 9");
    rest.post(
        "/v2/models/add/infer",
        &json!({"inputs": [{"name": "x", "shape": [1, 10], "datatype": "INT32", "data": vec![0; 10]}]}),
    )
    .await
    .assert_error(
        400,
        "Invalid input precision - Expected: FP32; Actual: INT32; input name: x",
    );
    rest.post(
        "/v2/models/add/infer",
        &json!({"inputs": [{"name": "x", "shape": [1, -10], "datatype": "FP32", "data": []}]}),
    )
    .await
    .assert_error(400, "negative dimension");
    rest.post("/v2/models/add/infer", &json!({"inputs": "x"}))
        .await
        .assert_error(400, "inputs");
    rest.post(
        "/v2/models/add/versions/7/infer",
        &x(json!({"data": vec![0.0; 10]})),
    )
    .await
    .assert_error(404, "version 7");
    rest.post("/v2/models/nope/infer", &x(json!({"data": vec![0.0; 10]})))
        .await
        .assert_error(404, "nope");
    rest.post(
        "/v2/models/add/infer",
        &json!({"inputs": [], "outputs": [{"name": "z"}]}),
    )
    .await
    .assert_error(400, "Missing input");
    let bad_length = rest
        .client
        .post(format!("{}/v2/models/add/infer", rest.base))
        .header("Inference-Header-Content-Length", "lots")
        .body("{}")
        .send()
        .await
        .unwrap();
    Rest::answer(bad_length).await.assert_error(
        400,
        "Inference-Header-Content-Length must be a non-negative integer",
    );
}

async fn health_status(client: &mut HealthClient<Channel>, service: &str) -> i32 {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Readiness on every transport: REST, KServe gRPC, and the gRPC health service.
struct Probes {
    rest: Rest,
    kserve: GrpcInferenceServiceClient<Channel>,
    health: HealthClient<Channel>,
}

impl Probes {
    async fn new(server: &Server) -> Probes {
        Probes {
            rest: Rest::new(server),
            kserve: kserve_client(server).await,
            health: HealthClient::new(channel(server).await),
        }
    }

    /// (REST status, ServerReady, health of "", of the KServe and TFS predict services, of ModelService).
    async fn read(&mut self) -> (u16, bool, [i32; 4]) {
        let answer = self.rest.get("/v2/health/ready").await;
        let rest = answer.status.as_u16();
        assert_eq!(
            answer.json(),
            json!({"ready": rest == 200}),
            "the body says what the status code says"
        );
        let grpc = self
            .kserve
            .server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready;
        let mut health = [0; 4];
        for (slot, service) in health.iter_mut().zip(["", KSERVE, TFS_PREDICT, TFS_MODEL]) {
            *slot = health_status(&mut self.health, service).await;
        }
        (rest, grpc, health)
    }

    async fn expect(&mut self, ready: bool) {
        let serving = ServingStatus::Serving as i32;
        let flag = if ready {
            serving
        } else {
            ServingStatus::NotServing as i32
        };
        let want = (
            if ready { 200 } else { 503 },
            ready,
            [flag, flag, flag, serving],
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.read().await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "readiness {got:?}, expected {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_model_folders() {
    let repo = Repo::new(&[("identity", ""), ("two_io", "")]);
    let server = Server::with_config(&repo, &["--readiness", "strict"]);
    server.wait_loaded();
    let mut probes = Probes::new(&server).await;
    probes.expect(true).await;
    let unknown = probes
        .health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        unknown.code(),
        Code::NotFound,
        "the health protocol's answer for an unknown service"
    );

    // The only version of `identity` goes away: the server is no longer ready.
    std::fs::remove_dir_all(repo.model_dir("identity").join("1")).unwrap();
    probes.expect(false).await;
    let mut kserve = kserve_client(&server).await;
    let ready = ModelReadyRequest {
        name: "identity".into(),
        version: String::new(),
    };
    assert!(
        !kserve
            .model_ready(ready.clone())
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert_eq!(
        probes.rest.get("/v2/models/identity/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        probes.rest.get("/v2/models/two_io/ready").await.status,
        StatusCode::OK
    );

    // Copied back: ready again.
    copy_dir(
        &fixtures().join("identity/1"),
        &repo.model_dir("identity").join("1"),
    );
    probes.expect(true).await;
    eventually("identity ready", || {
        let mut kserve = kserve.clone();
        let ready = ready.clone();
        async move { kserve.model_ready(ready).await.unwrap().into_inner().ready }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_rule_strict_or_any() {
    let repo = Repo::new(&[("identity", ""), ("broken", "")]);
    let strict = Server::with_config(&repo, &[]);
    let any = Server::with_config(&repo, &["--readiness", "any"]);
    strict.wait_loaded();
    any.wait_loaded();
    // The broken model never gets an AVAILABLE version: strict (the default) is not ready.
    Probes::new(&strict).await.expect(false).await;
    Probes::new(&any).await.expect(true).await;
    let status = Command::new(common::binary())
        .args(["--readiness", "some"])
        .output()
        .unwrap();
    assert!(!status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stderr).contains("strict"),
        "the error lists the values"
    );
}

/// One reflection question, one answer.
async fn reflect(server: &Server, question: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel(server).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(question),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    answers
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_every_service() {
    let repo = Repo::new(&[("identity", "")]);
    let server = Server::with_config(&repo, &[]);
    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            KSERVE,
            TFS_MODEL,
            TFS_PREDICT,
        ]
    );
    // `describe` needs the service's file and every file it imports, down to google/protobuf.
    for symbol in [KSERVE, TFS_PREDICT] {
        let MessageResponse::FileDescriptorResponse(files) =
            reflect(&server, MessageRequest::FileContainingSymbol(symbol.into())).await
        else {
            panic!("no descriptor for {symbol}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    let MessageResponse::FileDescriptorResponse(any) = reflect(
        &server,
        MessageRequest::FileByFilename("google/protobuf/any.proto".into()),
    )
    .await
    else {
        panic!("google/protobuf/any.proto is not served");
    };
    assert_eq!(any.file_descriptor_proto.len(), 1);
}
