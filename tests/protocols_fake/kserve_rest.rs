//! KServe v2 REST: health bodies, server and model metadata, and every inference error with its
//! status and message (moved from tests/kserve.rs, which keeps what needs OpenVINO).

use crate::common::rest::Rest;
use crate::kserve_grpc::served_fixtures;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_health_and_metadata() {
    let server = served_fixtures();
    let rest = Rest::new(server.rest_url(""));

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
    // rt_info: the IR's runtime-info tree, as OVMS serves it; the fake model has none (a real
    // IR's: tests/kserve.rs).
    assert_eq!(
        a.json(),
        json!({"name": "add", "versions": ["1", "2"], "platform": "openvino",
               "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 10]}],
               "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 10]}],
               "rt_info": {}})
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
async fn rest_infer_errors() {
    let server = served_fixtures();
    let rest = Rest::new(server.rest_url(""));
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
