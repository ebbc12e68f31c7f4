//! Large inputs and outputs reach OpenVINO in place (#15): a 64 KiB input and output through
//! every protocol give the results of OpenVINO run directly on the same input; an input whose
//! bytes sit misaligned in the body (KServe's binary extension after a JSON header of odd
//! length) is copied instead, with the same result; the metric says which way each went.

mod common;

use bytes::Bytes;
use common::requests::tensor;
use common::values::f32_bytes;
use common::{reference, Repo, Server};
use openvino::ElementType;
use serde_json::json;
use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vinoserve::proto::inference::{model_infer_request, ModelInferRequest};
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::DataType as Tf;

/// x [32, 512] f32 (64 KiB, the smallest size lent in place) → y = x · W [32, 512].
const ROWS: usize = 32;
const WIDTH: usize = 512;

/// The server and its repository (deleted when dropped).
struct Served {
    _repo: Repo,
    server: Server,
    xml: std::path::PathBuf,
}

fn serve_matmul() -> Served {
    let repo = Repo::new(&[]);
    let version = repo.model_dir("matmul").join("1");
    common::make_matmul_model(&version, ROWS, WIDTH);
    std::fs::write(
        repo.config_path(),
        r#"{"model_config_list": [{"config": {"name": "matmul", "base_path": "models/matmul",
            "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}}}]}"#,
    )
    .unwrap();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    Served {
        xml: version.join("model.xml"),
        _repo: repo,
        server,
    }
}

fn input(seed: usize) -> Vec<f32> {
    (0..ROWS * WIDTH)
        .map(|i| ((i * 7 + seed * 13) % 101) as f32 / 50.0 - 1.0)
        .collect()
}

/// OpenVINO alone on the same model and input (its default precision, so compared loosely).
fn expected(xml: &std::path::Path, x: &[f32]) -> Vec<f32> {
    let shape = vec![ROWS as i64, WIDTH as i64];
    let bytes = bytemuck::cast_slice(x).to_vec();
    let out = reference::infer(xml, &[("x", ElementType::F32, shape, bytes)], &["y"]);
    bytemuck::pod_collect_to_vec(&out[0])
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-3 + 1e-2 * w.abs(),
            "{what}: y[{i}] = {g}, OpenVINO alone gives {w}"
        );
    }
}

async fn handovers(server: &Server, direction: &str, mode: &str) -> f64 {
    server
        .metric(
            "vinoserve_tensor_handover_total",
            &[("direction", direction), ("mode", mode)],
        )
        .await
}

async fn tfs_grpc(server: &Server, x: &[f32]) -> Vec<f32> {
    let request = PredictRequest {
        model_spec: common::spec("matmul", None),
        inputs: [(
            "x".to_string(),
            tensor(Tf::DtFloat, &[ROWS as i64, WIDTH as i64], f32_bytes(x)),
        )]
        .into(),
        ..Default::default()
    };
    let answer = server
        .predict_client()
        .await
        .predict(request)
        .await
        .unwrap()
        .into_inner();
    bytemuck::pod_collect_to_vec(&answer.outputs["y"].tensor_content)
}

async fn kserve_grpc(server: &Server, x: &[f32]) -> Vec<f32> {
    let mut client = GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let request = ModelInferRequest {
        model_name: "matmul".into(),
        inputs: vec![model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![ROWS as i64, WIDTH as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(bytemuck::cast_slice(x).to_vec())],
        ..Default::default()
    };
    let answer = client.model_infer(request).await.unwrap().into_inner();
    bytemuck::pod_collect_to_vec(&answer.raw_output_contents[0])
}

/// KServe REST with the input as binary data after a JSON header padded to `header_len`, which
/// places the input at that offset in the body; the output comes back as binary data too.
async fn kserve_binary(server: &Server, x: &[f32], header_len: usize) -> Vec<f32> {
    let mut header = json!({
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [ROWS, WIDTH],
                    "parameters": {"binary_data_size": x.len() * 4}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}]
    })
    .to_string();
    assert!(header.len() <= header_len);
    header.extend(std::iter::repeat_n(' ', header_len - header.len()));
    let mut body = header.into_bytes();
    body.extend_from_slice(bytemuck::cast_slice(x));
    let response = reqwest::Client::new()
        .post(server.rest_url("/v2/models/matmul/infer"))
        .header("content-type", "application/octet-stream")
        .header("Inference-Header-Content-Length", header_len)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let json_len: usize = response.headers()["Inference-Header-Content-Length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap();
    bytemuck::pod_collect_to_vec(&body[json_len..])
}

async fn tfs_rest_json(server: &Server, x: &[f32]) -> Vec<f32> {
    let rows: Vec<&[f32]> = x.chunks(WIDTH).collect();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(server.rest_url("/v1/models/matmul:predict"))
        .json(&json!({"inputs": {"x": rows}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

async fn kserve_rest_json(server: &Server, x: &[f32]) -> Vec<f32> {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(server.rest_url("/v2/models/matmul/infer"))
        .json(&json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [ROWS, WIDTH], "data": x}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_gives_openvinos_results_with_inputs_in_place_or_copied() {
    let served = serve_matmul();
    let (server, xml) = (&served.server, &served.xml);
    for seed in 0..3 {
        let x = input(seed);
        let want = expected(xml, &x);
        let outputs_before = handovers(server, "output", "in_place").await;
        assert_close(&tfs_grpc(server, &x).await, &want, "TFS gRPC");
        assert_close(&kserve_grpc(server, &x).await, &want, "KServe gRPC");
        assert_close(&tfs_rest_json(server, &x).await, &want, "TFS REST");
        assert_close(&kserve_rest_json(server, &x).await, &want, "KServe REST");

        // The body is one buffer from its first byte; the input starts at the header's length.
        for (header_len, mode) in [(400, "in_place"), (401, "copied_misaligned")] {
            let before = handovers(server, "input", mode).await;
            let got = kserve_binary(server, &x, header_len).await;
            assert_close(
                &got,
                &want,
                &format!("KServe binary after {header_len} bytes"),
            );
            assert_eq!(
                handovers(server, "input", mode).await,
                before + 1.0,
                "input at offset {header_len}: {mode}"
            );
        }
        // Every answer's output (static, 64 KiB) was written straight into its response buffer.
        assert_eq!(
            handovers(server, "output", "in_place").await,
            outputs_before + 6.0
        );
    }
}

/// Many requests of one size but different contents, several in flight: each answer is its own
/// input's, so no inference read another request's bytes or wrote into another's buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_requests_each_get_their_own_answer() {
    let served = serve_matmul();
    let (server, xml) = (&served.server, &served.xml);
    let inputs: Vec<(Vec<f32>, Vec<f32>)> = (0..4 * 6)
        .map(|seed| {
            let x = input(10 + seed);
            let want = expected(xml, &x);
            (x, want)
        })
        .collect();
    let clients = inputs
        .chunks(6)
        .enumerate()
        .map(|(client, requests)| async move {
            for (n, (x, want)) in requests.iter().enumerate() {
                let got = if n % 2 == 0 {
                    tfs_grpc(server, x).await
                } else {
                    kserve_binary(server, x, 400 + n).await
                };
                assert_close(&got, want, &format!("client {client} request {n}"));
            }
        });
    futures::future::join_all(clients).await;
}
