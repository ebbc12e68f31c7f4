//! TF Serving REST: version and label selection, status and metadata bodies, every error row
//! with its status and JSON message, the body size limit (moved from tests/tfs_rest.rs, which
//! keeps what needs OpenVINO).

use crate::all_fixtures;
use crate::common::in_process::{fixture, InProcess};
use crate::common::rest::{big_columnar, error_message, Rest};
use crate::common::ADD_WITH_LABEL;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// `n` copies of `v`: one row for `json!` (which cannot take `[v; n]`).
fn fill(n: usize, v: f32) -> Vec<f32> {
    vec![v; n]
}

fn f32s(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(f32s).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_labels_select_what_they_name() {
    let server = all_fixtures(ADD_WITH_LABEL);
    let rest = Rest::new(server.rest_url(""));
    let body = json!({"instances": [fill(10, 1.0)]});
    for (target, add) in [
        ("add", 2.0f32),
        ("add/versions/0", 2.0),
        ("add/versions/1", 1.0),
        ("add/versions/2", 2.0),
        ("add/labels/stable", 1.0),
    ] {
        let answer = rest.predict_ok(target, &body).await;
        assert_eq!(
            f32s(&answer["predictions"]),
            vec![1.0 + add; 10],
            "{target}"
        );
    }
    let (status, answer) = rest.predict("add/labels/canary", &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_message(&answer),
        "Model version label is not found: model add, label canary"
    );
    let (status, answer) = rest.tfs_get("/v1/models/add/labels/stable").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["model_version_status"][0]["version"], "1");
    // Version 0 is the default version, as in OVMS: the same answers as no version at all.
    for suffix in ["", "/metadata"] {
        let unversioned = rest.tfs_get(&format!("/v1/models/add{suffix}")).await;
        let zero = rest
            .tfs_get(&format!("/v1/models/add/versions/0{suffix}"))
            .await;
        assert_eq!(zero, unversioned, "/v1/models/add/versions/0{suffix}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metadata_bodies_match_tf_serving() {
    let server = all_fixtures(ADD_WITH_LABEL);
    let rest = Rest::new(server.rest_url(""));
    let ok = json!({"error_code": "OK", "error_message": ""});
    let available = |v: &str| json!({"version": v, "state": "AVAILABLE", "status": ok});
    let (status, body) = rest.tfs_get("/v1/models/add").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"model_version_status": [available("1"), available("2")]})
    );
    let (status, body) = rest.tfs_get("/v1/models/add/versions/2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"model_version_status": [available("2")]}));

    let dim = |size: &str| json!({"size": size, "name": ""});
    // TF Serving's snake_case keys and OVMS's camelCase ones side by side (ovmsclient's REST
    // client reads only the latter).
    let info = |name: &str, dtype: &str, dims: Vec<Value>| {
        let shape = json!({"dim": dims, "unknown_rank": false, "unknownRank": false});
        json!({"dtype": dtype, "tensor_shape": shape, "tensorShape": shape, "name": name})
    };
    let (status, body) = rest.tfs_get("/v1/models/dynamic/metadata").await;
    assert_eq!(status, StatusCode::OK);
    let def = json!({
        "inputs": {"x": info("x", "DT_FLOAT", vec![dim("-1"), dim("8")])},
        "outputs": {"y": info("y", "DT_FLOAT", vec![dim("-1"), dim("8")])},
        "method_name": "tensorflow/serving/predict",
        "methodName": "tensorflow/serving/predict"
    });
    let spec =
        json!({"name": "dynamic", "signature_name": "", "signatureName": "", "version": "1"});
    assert_eq!(
        body,
        json!({
            "model_spec": spec,
            "modelSpec": spec,
            "metadata": {"signature_def": {
                "signature_def": {"serving_default": def},
                "signatureDef": {"serving_default": def}
            }}
        })
    );
    let (status, body) = rest.tfs_get("/v1/models/add/versions/1/metadata").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["model_spec"]["version"], "1");
    let inputs = &body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"];
    assert_eq!(inputs["x"]["dtype"], "DT_FLOAT");
    assert_eq!(
        inputs["x"]["tensor_shape"]["dim"],
        json!([dim("1"), dim("10")])
    );
    let (_, body) = rest.tfs_get("/v1/models/int64/metadata").await;
    let sig = &body["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(sig["outputs"]["y"]["dtype"], "DT_INT64");
}

const SHAPE: &str = "Invalid input shape - Expected: (1,10); Actual: (1,11); input name: x";
const PRECISION: &str = "Invalid input precision - Expected: FP32; Actual: BYTES; input name: x";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_row_has_its_status_and_json_message() {
    let server = all_fixtures(ADD_WITH_LABEL);
    let rest = Rest::new(server.rest_url(""));
    let zeros = |n| json!({"instances": [fill(n, 0.0)]});
    // `:predict` bodies: (model path, body, HTTP status, what the error message contains).
    #[rustfmt::skip]
    let predicts: Vec<(&str, Value, u16, &str)> = vec![
        ("nope", zeros(10), 404, "Model with requested name is not found: nope"),
        ("add/versions/7", zeros(10), 404, "version is not found: model add, version 7"),
        ("add", zeros(11), 400, SHAPE),
        ("add", json!({"inputs": [fill(10, 0.0), fill(10, 0.0)]}), 400, "Actual: (2,10)"),
        ("add", json!({"instances": [["1", 2, 3, 4, 5, 6, 7, 8, 9, 0]]}), 400, PRECISION),
        // No fixture takes strings: a b64 value for a numeric input is a precision error.
        ("add", json!({"inputs": [[{"b64": "AAAAAA=="}]]}), 400, PRECISION),
        ("identity", json!({"instances": [{"b64": "AAAAAA=="}]}), 400, PRECISION),
        ("uint8", json!({"inputs": [[0, 1, 2, 3, 4, 256]]}), 400, "Invalid value 256 for UINT8"),
        ("two_io", json!({"instances": [{"a": fill(4, 0.0)}]}), 400,
            "Missing input with specific name - Expected input: b; model two_io takes: a, b"),
        ("two_io", json!({"inputs": {"b": [fill(4, 0.0)]}}), 400, "Expected input: a"),
        ("add", json!({"inputs": {"x": [fill(10, 0.0)], "z": 1}}), 400,
            "Unexpected input name: z; model add takes: x"),
        ("add", json!({"inputs": [fill(10, 0.0)], "instances": [fill(10, 0.0)]}), 400,
            "both \"instances\" (row format) and \"inputs\" (columnar format)"),
        ("add", json!({"signature_name": "other", "instances": [fill(10, 0.0)]}), 400,
            "\"other\" not found"),
        ("broken", zeros(10), 404, "Model has no available version: model broken"),
    ];
    for (target, body, code, message) in predicts {
        let (status, answer) = rest.predict(target, &body).await;
        let text = error_message(&answer);
        assert_eq!(status.as_u16(), code, "{target} {body}: {text}");
        assert!(
            text.contains(message),
            "{target} {body}: {text:?} lacks {message:?}"
        );
    }
    // Bodies that are not a JSON object.
    #[rustfmt::skip]
    let raw = [
        ("{\"instances\": [[1,\n 2,]]}", "Invalid JSON in the request body: trailing comma at line 2 column"),
        ("", "Invalid JSON in the request body"),
        ("[1]", "must be a JSON object"),
    ];
    for (raw, message) in raw {
        let path = "/v1/models/add:predict";
        let (status, answer) = rest.send(Method::POST, path, Some(raw.into())).await.tfs();
        let text = error_message(&answer);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}: {text}");
        assert!(
            text.contains(message),
            "{raw:?}: {text:?} lacks {message:?}"
        );
    }
    // Methods and paths (POSTs carry a valid predict body).
    #[rustfmt::skip]
    let requests = [
        ("GET /v1/models/nope", 404, "Model with requested name is not found: nope"),
        ("GET /v1/models/nope/metadata", 404, "Model with requested name is not found: nope"),
        ("GET /v1/models/add/versions/7", 404, "version is not found: model add, version 7"),
        ("GET /v1/models/add/versions/7/metadata", 404, "version is not found: model add, version 7"),
        ("GET /v1/models/add:predict", 405, "GET is not allowed on /v1/models/add:predict; use POST"),
        ("POST /v1/models/add", 405, "POST is not allowed on /v1/models/add; use GET"),
        ("POST /v1/models/add/metadata", 405, "POST is not allowed on /v1/models/add/metadata; use GET"),
        ("GET /v1/models/add/versions/x", 400, "Invalid version \"x\" in path"),
        ("GET /v1/models/a/b/c", 400, "Malformed request path /v1/models/a/b/c"),
        ("GET /v3/models/add", 404, "Malformed request: GET /v3/models/add"),
        ("POST /nowhere", 404, "Malformed request: POST /nowhere"),
        ("PUT /v1/models/add", 405, "PUT is not allowed on /v1/models/add; use GET"),
        ("GET /v2/models/add/infer", 405, "GET is not allowed on /v2/models/add/infer; use POST"),
        ("POST /v2/models/add/ready", 405, "use GET"),
        ("DELETE /v1/config", 405, "use GET"),
        ("GET /v1/config/reload", 405, "use POST"),
        ("POST /metrics", 405, "use GET"),
    ];
    for (request, code, message) in requests {
        let (method, path) = request.split_once(' ').unwrap();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method != Method::GET).then(|| zeros(10).to_string());
        let (status, answer) = rest.send(method, path, body).await.tfs();
        let text = error_message(&answer);
        assert_eq!(status.as_u16(), code, "{request}: {text}");
        assert!(
            text.contains(message),
            "{request}: {text:?} lacks {message:?}"
        );
    }
    // A wrong method names the right one in `Allow` (RFC 9110).
    for (method, path, allow) in [
        (Method::GET, "/v1/models/add:predict", "POST"),
        (Method::DELETE, "/v1/models/add/metadata", "GET"),
        (Method::PUT, "/v2/models/add/infer", "POST"),
        (Method::POST, "/v2/health/live", "GET"),
    ] {
        let response = rest
            .client
            .request(method.clone(), rest.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
    }
    // The server still answers after all of that.
    rest.predict_ok("add", &zeros(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_message_size_is_refused_with_a_json_error() {
    let server = InProcess::serve(&[fixture("dynamic")], &["--max_message_size", "1000000"]);
    let rest = Rest::new(server.rest_url(""));
    let (body, _) = big_columnar(100_000);
    let (status, answer) = rest
        .send(Method::POST, "/v1/models/dynamic:predict", Some(body))
        .await
        .tfs();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let text = error_message(&answer);
    assert!(
        text.contains("payload reached size limit") && text.contains("--max_message_size"),
        "{text}"
    );
    let (small, _) = big_columnar(10);
    let (status, _) = rest
        .send(Method::POST, "/v1/models/dynamic:predict", Some(small))
        .await
        .tfs();
    assert_eq!(status, StatusCode::OK);
}
