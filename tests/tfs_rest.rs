//! TF Serving REST against the real server and real OpenVINO models.

mod common;

use common::{reference, Repo, Server};
use openvino::ElementType;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

fn all_models() -> Repo {
    Repo::new(&[
        ("identity", ""),
        (
            "add",
            r#""model_version_policy": {"all": {}}, "version_labels": {"stable": 1}"#,
        ),
        ("two_io", ""),
        ("int64", ""),
        ("half", ""),
        ("uint8", ""),
        ("dynamic", ""),
        ("broken", ""),
    ])
}

/// A started server plus one HTTP client; every answer it gets must be `application/json`.
struct Rest {
    server: Server,
    client: Client,
}

impl Rest {
    fn start(repo: &Repo, flags: &[&str]) -> Rest {
        let server = Server::with_config(repo, flags);
        server.wait_loaded();
        Rest {
            server,
            client: Client::new(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.server.rest_url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response.headers().get("content-type").cloned();
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{path}: {status}"
        );
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: {status} with a non-JSON body ({e}): {text:.300}"));
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    /// `POST /v1/models/{target}:predict`, `target` being `m`, `m/versions/n` or `m/labels/l`.
    async fn predict(&self, target: &str, body: &Value) -> (StatusCode, Value) {
        let path = format!("/v1/models/{target}:predict");
        self.send(Method::POST, &path, Some(body.to_string())).await
    }

    async fn predict_ok(&self, target: &str, body: &Value) -> Value {
        let (status, answer) = self.predict(target, body).await;
        assert_eq!(status, StatusCode::OK, "{target}: {answer}");
        answer
    }
}

/// The message of a TFS error body, which is exactly `{"error": "..."}`.
fn error_message(body: &Value) -> &str {
    let object = body.as_object().expect("error body is an object");
    assert_eq!(object.len(), 1, "error body has only \"error\": {body}");
    object["error"].as_str().expect("\"error\" is a string")
}

/// The only key of a predict response (`predictions` or `outputs`) and its value.
fn only_key(body: &Value) -> (&str, &Value) {
    let object = body.as_object().expect("response is an object");
    assert_eq!(object.len(), 1, "one top-level key: {body}");
    let (key, value) = object.iter().next().unwrap();
    (key.as_str(), value)
}

/// The shape the list nesting implies (first elements; `f32s` checks every leaf).
fn shape(mut v: &Value) -> Vec<usize> {
    let mut dims = Vec::new();
    while let Value::Array(items) = v {
        dims.push(items.len());
        match items.first() {
            Some(first) => v = first,
            None => break,
        }
    }
    dims
}

fn f32s(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(items) => items.iter().flat_map(f32s).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number: {other}"),
    }
}

fn i64s(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(items) => items.iter().flat_map(i64s).collect(),
        other => vec![other
            .as_i64()
            .unwrap_or_else(|| panic!("not an integer: {other}"))],
    }
}

/// Bit-exact float comparison (keeps -0.0 apart from 0.0).
fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(got), bits(want), "{what}: got {got:?}, want {want:?}");
}

/// `n` copies of `v`: one row for `json!` (which cannot take `[v; n]`).
fn fill(n: usize, v: f32) -> Vec<f32> {
    vec![v; n]
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

fn floats(raw: &[u8]) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_and_columnar_predict_match_openvino_run_directly() {
    let repo = all_models();
    let rest = Rest::start(&repo, &[]);
    let xml = |m: &str| repo.model_dir(m).join("1").join("model.xml");

    // identity: exact through JSON, incl. -0.0, a denormal and the extremes of FP32.
    let x = [
        -0.0f32,
        1e-40,
        3.4e38,
        -2.25,
        0.1,
        1.0 / 3.0,
        7.0,
        -1e-30,
        123.456,
        16777216.0,
    ];
    let want = floats(
        &reference::infer(
            &xml("identity"),
            &[("x", ElementType::F32, vec![1, 10], le_bytes(&x))],
            &["y"],
        )[0],
    );
    assert_bits(&want, &x, "reference identity");
    for (body, key) in [
        (json!({"instances": [x]}), "predictions"),
        (json!({"inputs": [x]}), "outputs"),
        (json!({"inputs": {"x": [x]}}), "outputs"),
        (
            json!({"signature_name": "serving_default", "instances": [x]}),
            "predictions",
        ),
    ] {
        let answer = rest.predict_ok("identity", &body).await;
        let (got_key, value) = only_key(&answer);
        assert_eq!(got_key, key, "{body}");
        assert_eq!(shape(value), [1, 10], "{answer}");
        assert_bits(&f32s(value), &want, &body.to_string());
    }

    // two_io: row instances name both inputs; every row is an object naming both outputs.
    let a = [1.5f32, -2.0, 3.25, 1e-3];
    let b = [0.5f32, 4.0, -2.0, 1e3];
    let want = reference::infer(
        &xml("two_io"),
        &[
            ("a", ElementType::F32, vec![1, 4], le_bytes(&a)),
            ("b", ElementType::F32, vec![1, 4], le_bytes(&b)),
        ],
        &["sum", "product"],
    );
    let (sum, product) = (floats(&want[0]), floats(&want[1]));
    let answer = rest
        .predict_ok("two_io", &json!({"instances": [{"a": a, "b": b}]}))
        .await;
    let (key, rows) = only_key(&answer);
    assert_eq!((key, rows.as_array().unwrap().len()), ("predictions", 1));
    let row = rows[0].as_object().unwrap();
    assert_eq!(row.len(), 2, "{answer}");
    assert_bits(&f32s(&row["sum"]), &sum, "row sum");
    assert_bits(&f32s(&row["product"]), &product, "row product");
    assert_eq!(shape(&row["sum"]), [4]);

    let answer = rest
        .predict_ok("two_io", &json!({"inputs": {"b": [b], "a": [a]}}))
        .await;
    let (key, outputs) = only_key(&answer);
    assert_eq!((key, outputs.as_object().unwrap().len()), ("outputs", 2));
    assert_eq!(shape(&outputs["sum"]), [1, 4]);
    assert_bits(&f32s(&outputs["sum"]), &sum, "columnar sum");
    assert_bits(&f32s(&outputs["product"]), &product, "columnar product");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_half_and_dynamic_models_in_both_formats() {
    let repo = all_models();
    let rest = Rest::start(&repo, &[]);
    for (format, out) in [("instances", "predictions"), ("inputs", "outputs")] {
        let run = |model: &'static str, x: Value| {
            let body = json!({ format: x });
            let rest = &rest;
            async move {
                let answer = rest.predict_ok(model, &body).await;
                let (key, value) = only_key(&answer);
                assert_eq!(key, out, "{model}: {answer}");
                value.clone()
            }
        };
        let y = run("int64", json!([[1, -2, 3, 1000, -50000]])).await;
        assert_eq!(
            (shape(&y), i64s(&y)),
            (vec![1, 5], vec![2, -4, 6, 2000, -100000])
        );
        let y = run("uint8", json!([[0, 1, 2, 100, 254, 255]])).await;
        assert_eq!(
            (shape(&y), i64s(&y)),
            (vec![1, 6], vec![1, 2, 3, 101, 255, 0])
        );
        let y = run("half", json!([[1.0, -2.5, 0.0, 100.0]])).await;
        assert_eq!(
            (shape(&y), f32s(&y)),
            (vec![1, 4], vec![2.0, -1.5, 1.0, 101.0])
        );
        let x: Vec<Vec<f32>> = (0..3)
            .map(|r| (0..8).map(|c| (r * 8 + c) as f32 * 0.5 - 4.0).collect())
            .collect();
        let y = run("dynamic", json!(x)).await;
        let want: Vec<f32> = x.iter().flatten().map(|v| v * 3.0).collect();
        assert_eq!(shape(&y), [3, 8], "{format}");
        assert_bits(&f32s(&y), &want, "dynamic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_labels_select_what_they_name() {
    let repo = all_models();
    let rest = Rest::start(&repo, &[]);
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
    let (status, answer) = rest.get("/v1/models/add/labels/stable").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["model_version_status"][0]["version"], "1");
    // Version 0 is the default version, as in OVMS: the same answers as no version at all.
    for suffix in ["", "/metadata"] {
        let unversioned = rest.get(&format!("/v1/models/add{suffix}")).await;
        let zero = rest
            .get(&format!("/v1/models/add/versions/0{suffix}"))
            .await;
        assert_eq!(zero, unversioned, "/v1/models/add/versions/0{suffix}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metadata_bodies_match_tf_serving() {
    let repo = all_models();
    let rest = Rest::start(&repo, &[]);
    let ok = json!({"error_code": "OK", "error_message": ""});
    let available = |v: &str| json!({"version": v, "state": "AVAILABLE", "status": ok});
    let (status, body) = rest.get("/v1/models/add").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"model_version_status": [available("1"), available("2")]})
    );
    let (status, body) = rest.get("/v1/models/add/versions/2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"model_version_status": [available("2")]}));

    let dim = |size: &str| json!({"size": size, "name": ""});
    // TF Serving's snake_case keys and OVMS's camelCase ones side by side (ovmsclient's REST
    // client reads only the latter).
    let info = |name: &str, dtype: &str, dims: Vec<Value>| {
        let shape = json!({"dim": dims, "unknown_rank": false, "unknownRank": false});
        json!({"dtype": dtype, "tensor_shape": shape, "tensorShape": shape, "name": name})
    };
    let (status, body) = rest.get("/v1/models/dynamic/metadata").await;
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
    let (status, body) = rest.get("/v1/models/add/versions/1/metadata").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["model_spec"]["version"], "1");
    let inputs = &body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"];
    assert_eq!(inputs["x"]["dtype"], "DT_FLOAT");
    assert_eq!(
        inputs["x"]["tensor_shape"]["dim"],
        json!([dim("1"), dim("10")])
    );
    let (_, body) = rest.get("/v1/models/int64/metadata").await;
    let sig = &body["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(sig["outputs"]["y"]["dtype"], "DT_INT64");
}

const SHAPE: &str = "Invalid input shape - Expected: (1,10); Actual: (1,11); input name: x";
const PRECISION: &str = "Invalid input precision - Expected: FP32; Actual: BYTES; input name: x";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_row_has_its_status_and_json_message() {
    let repo = all_models();
    let rest = Rest::start(&repo, &[]);
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
        let (status, answer) = rest.send(Method::POST, path, Some(raw.into())).await;
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
        let (status, answer) = rest.send(method, path, body).await;
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
            .request(method.clone(), rest.server.rest_url(path))
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
async fn broken_model_reports_end_and_others_keep_serving() {
    let repo = all_models();
    let rest = Rest::start(&repo, &[]);
    let (status, body) = rest.get("/v1/models/broken").await;
    assert_eq!(status, StatusCode::OK);
    let versions = body["model_version_status"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{body}");
    assert_eq!(
        (&versions[0]["version"], &versions[0]["state"]),
        (&json!("1"), &json!("END"))
    );
    let error = &versions[0]["status"];
    assert_eq!(error["error_code"], "UNKNOWN");
    let message = error["error_message"].as_str().unwrap();
    assert!(message.contains("model.xml"), "{message}");

    let (status, body) = rest
        .predict("broken", &json!({"instances": [fill(10, 0.0)]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_message(&body).contains("model broken"));
    let (status, _) = rest.get("/v1/models/broken/metadata").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let answer = rest
        .predict_ok("identity", &json!({"instances": [fill(10, 2.0)]}))
        .await;
    assert_eq!(f32s(&answer["predictions"]), fill(10, 2.0));
}

fn big_columnar(rows: usize) -> (String, Vec<f32>) {
    let x: Vec<f32> = (0..rows * 8)
        .map(|i| (i % 1000) as f32 * 0.25 - 100.0)
        .collect();
    let nested: Vec<&[f32]> = x.chunks(8).collect();
    (json!({"inputs": nested}).to_string(), x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_of_several_megabytes_is_accepted() {
    let repo = Repo::new(&[("dynamic", "")]);
    let rest = Rest::start(&repo, &[]);
    let rows = 100_000;
    let (body, x) = big_columnar(rows);
    assert!(body.len() > 4 << 20, "body is only {} bytes", body.len());
    let (status, answer) = rest
        .send(Method::POST, "/v1/models/dynamic:predict", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{:.300}", answer.to_string());
    let (key, y) = only_key(&answer);
    assert_eq!((key, shape(y)), ("outputs", vec![rows, 8]));
    let want: Vec<f32> = x.iter().map(|v| v * 3.0).collect();
    assert_bits(&f32s(y), &want, "dynamic x3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_message_size_is_refused_with_a_json_error() {
    let repo = Repo::new(&[("dynamic", "")]);
    let rest = Rest::start(&repo, &["--max_message_size", "1000000"]);
    let (body, _) = big_columnar(100_000);
    let (status, answer) = rest
        .send(Method::POST, "/v1/models/dynamic:predict", Some(body))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let text = error_message(&answer);
    assert!(
        text.contains("payload reached size limit") && text.contains("--max_message_size"),
        "{text}"
    );
    let (small, _) = big_columnar(10);
    let (status, _) = rest
        .send(Method::POST, "/v1/models/dynamic:predict", Some(small))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_clients_all_get_their_own_answer() {
    let repo = Repo::new(&[("dynamic", r#""nireq": 2"#)]);
    let rest = Rest::start(&repo, &[]);
    let url = rest.server.rest_url("/v1/models/dynamic:predict");
    let tasks: Vec<_> = (0..16)
        .map(|id| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = Client::new();
                for round in 0..10 {
                    let rows = 1 + (id + round) % 5;
                    let x: Vec<Vec<f32>> = (0..rows)
                        .map(|r| {
                            (0..8)
                                .map(|c| (id * 1000 + round * 10 + r * 8 + c) as f32)
                                .collect()
                        })
                        .collect();
                    let response = client
                        .post(&url)
                        .json(&json!({"instances": x}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    let answer: Value = response.json().await.unwrap();
                    let y = &answer["predictions"];
                    assert_eq!(shape(y), [rows, 8], "client {id} round {round}");
                    let want: Vec<f32> = x.iter().flatten().map(|v| v * 3.0).collect();
                    assert_eq!(f32s(y), want, "client {id} round {round}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}
