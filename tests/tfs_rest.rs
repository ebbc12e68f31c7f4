//! TF Serving REST against the real server and real OpenVINO models: results in both formats and
//! every type, a broken model's real load error, large bodies, concurrency. Versions, labels,
//! status and metadata bodies, error rows and the body limit on the fake backend:
//! tests/protocols_fake/tfs_rest.rs.

mod common;

use common::rest::{big_columnar, error_message, Rest};
use common::values::f32_bytes;
use common::{reference, Repo, Server, ADD_WITH_LABEL};
use openvino::ElementType;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

/// A started server and a REST client of it.
struct Started {
    server: Server,
    rest: Rest,
}

fn start(repo: &Repo, flags: &[&str]) -> Started {
    let server = Server::with_config(repo, flags);
    server.wait_loaded();
    let rest = Rest::new(server.rest_url(""));
    Started { server, rest }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_and_columnar_predict_match_openvino_run_directly() {
    let repo = Repo::protocol_fixtures(ADD_WITH_LABEL, &[]);
    let Started {
        server: _server,
        rest,
    } = start(&repo, &[]);
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
    let want = common::values::from_le::<f32>(
        &reference::infer(
            &xml("identity"),
            &[("x", ElementType::F32, vec![1, 10], f32_bytes(&x))],
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
            ("a", ElementType::F32, vec![1, 4], f32_bytes(&a)),
            ("b", ElementType::F32, vec![1, 4], f32_bytes(&b)),
        ],
        &["sum", "product"],
    );
    let (sum, product) = (
        common::values::from_le::<f32>(&want[0]),
        common::values::from_le::<f32>(&want[1]),
    );
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
    let repo = Repo::protocol_fixtures(ADD_WITH_LABEL, &[]);
    let Started {
        server: _server,
        rest,
    } = start(&repo, &[]);
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
async fn broken_model_reports_end_and_others_keep_serving() {
    let repo = Repo::protocol_fixtures(ADD_WITH_LABEL, &[]);
    let Started { server, rest } = start(&repo, &[]);
    let (status, body) = rest.tfs_get("/v1/models/broken").await;
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
    // The same over gRPC GetModelStatus (END is 50; the rest of its answers:
    // tests/protocols_fake/tfs_grpc.rs).
    let error = common::load_error(server.grpc_url(), "broken").await;
    assert!(error.contains("model.xml"), "{error}");

    let (status, body) = rest
        .predict("broken", &json!({"instances": [fill(10, 0.0)]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_message(&body).contains("model broken"));
    let (status, _) = rest.tfs_get("/v1/models/broken/metadata").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let answer = rest
        .predict_ok("identity", &json!({"instances": [fill(10, 2.0)]}))
        .await;
    assert_eq!(f32s(&answer["predictions"]), fill(10, 2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_of_several_megabytes_is_accepted() {
    let repo = Repo::new(&[("dynamic", "")]);
    let Started {
        server: _server,
        rest,
    } = start(&repo, &[]);
    let rows = 100_000;
    let (body, x) = big_columnar(rows);
    assert!(body.len() > 4 << 20, "body is only {} bytes", body.len());
    let (status, answer) = rest
        .send(Method::POST, "/v1/models/dynamic:predict", Some(body))
        .await
        .tfs();
    assert_eq!(status, StatusCode::OK, "{:.300}", answer.to_string());
    let (key, y) = only_key(&answer);
    assert_eq!((key, shape(y)), ("outputs", vec![rows, 8]));
    let want: Vec<f32> = x.iter().map(|v| v * 3.0).collect();
    assert_bits(&f32s(y), &want, "dynamic x3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_clients_all_get_their_own_answer() {
    let repo = Repo::new(&[("dynamic", r#""nireq": 2"#)]);
    let Started {
        server,
        rest: _rest,
    } = start(&repo, &[]);
    let url = server.rest_url("/v1/models/dynamic:predict");
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
