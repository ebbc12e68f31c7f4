//! KServe v2 (gRPC and REST) against the real server and real OpenVINO models: results of every
//! type, typed and raw, JSON and binary, requested outputs, version selection, and a real IR's
//! rt_info. Health, metadata, errors, readiness and reflection on the fake backend:
//! tests/protocols_fake/kserve_grpc.rs, kserve_rest.rs, readiness.rs.

mod common;

use common::requests::{infer, input, with_contents};
use common::rest::Rest;
use common::values::{halves, le_bytes};
use common::{reference, Repo, Server, ADD_ALL_VERSIONS};
use openvino::ElementType;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashMap;
use tonic::transport::Channel;
use vinoserve::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use vinoserve::proto::inference::model_infer_request::InferRequestedOutputTensor;
use vinoserve::proto::inference::ModelInferResponse;

async fn kserve_client(server: &Server) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(server.grpc_url())
        .await
        .unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_infer_typed_and_raw() {
    let repo = Repo::protocol_fixtures(ADD_ALL_VERSIONS, &["broken"]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let mut client = kserve_client(&server).await;

    // FP32, raw: bit-exact against OpenVINO run directly (incl. -0.0, denormals, inf); id echoed.
    let x: Vec<f32> = common::values::AWKWARD_F32.to_vec();
    let mut request = infer(
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
        .model_infer(infer("dynamic", "", vec![t], vec![]))
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
    let raw = infer(
        "int64",
        "",
        vec![input("x", "INT64", &[1, 5])],
        vec![le_bytes(&x)],
    );
    for request in [infer("int64", "", vec![typed], vec![]), raw] {
        let out = client.model_infer(request).await.unwrap().into_inner();
        assert_eq!(output::<i64>(&out, "y"), vec![2, -4, 6, 2000, -100000]);
        assert_eq!(out.outputs[0].datatype, "INT64");
    }

    // UINT8, typed (uint_contents) and raw; 255 wraps to 0.
    let x = [0u8, 1, 2, 100, 254, 255];
    let typed = with_contents(input("x", "UINT8", &[1, 6]), |c| {
        c.uint_contents = x.iter().map(|&v| v.into()).collect()
    });
    let raw = infer(
        "uint8",
        "",
        vec![input("x", "UINT8", &[1, 6])],
        vec![x.to_vec()],
    );
    for request in [infer("uint8", "", vec![typed], vec![]), raw] {
        let out = client.model_infer(request).await.unwrap().into_inner();
        assert_eq!(out.raw_output_contents[0].as_ref(), &[1, 2, 3, 101, 255, 0]);
    }

    // FP16: raw only.
    let x = halves(&[1.0, -2.5, 0.0, 100.0]);
    let out = client
        .model_infer(infer(
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
    let mut request = infer("two_io", "", ab(), vec![]);
    request.outputs = requested(&["product"]);
    let out = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(out.outputs.len(), 1);
    assert_eq!(output::<f32>(&out, "product"), vec![0.5, -2.0, 6.0, 40.0]);
    let out = client
        .model_infer(infer("two_io", "", ab(), vec![]))
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
            .model_infer(infer("add", version, vec![t], vec![]))
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
async fn rest_model_metadata_carries_the_ir_rt_info() {
    let repo = Repo::protocol_fixtures(ADD_ALL_VERSIONS, &["broken"]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let rest = Rest::new(server.rest_url(""));
    // rt_info: the IR's runtime-info tree, as OVMS serves it (the fixture's holds what
    // ov.save_model wrote). The rest of the metadata and health bodies:
    // tests/protocols_fake/kserve_rest.rs.
    let a = rest.get("/v2/models/add").await;
    assert_eq!(
        a.json()["rt_info"],
        json!({"OpenVINO Runtime": "2026.4.1-22982-e213a147257-releases/2026/4"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_infer_json_and_binary() {
    let repo = Repo::protocol_fixtures(ADD_ALL_VERSIONS, &["broken"]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let rest = Rest::new(server.rest_url(""));

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
