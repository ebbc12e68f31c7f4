//! Hostile and malformed input: each gets a 4xx / INVALID_ARGUMENT-class answer with a reason,
//! the server's memory stays bounded, and other clients keep being served. Also gRPC deadlines.

mod common;

use bytes::Bytes;
use common::{spec, Repo, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tonic::Code;
use vinoserve::api::tfs::codec::shape_proto;
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::{
    tensor_shape_proto, DataType as Tf, TensorProto, TensorShapeProto,
};

fn tensor(shape: &[i64], bytes: usize) -> TensorProto {
    TensorProto {
        dtype: Tf::DtFloat as i32,
        tensor_shape: Some(shape_proto(shape)),
        tensor_content: Bytes::from(vec![0u8; bytes]),
        ..Default::default()
    }
}

fn predict(model: &str, inputs: Vec<(String, TensorProto)>) -> PredictRequest {
    PredictRequest {
        model_spec: spec(model, None),
        inputs: inputs.into_iter().collect(),
        ..Default::default()
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A complete HTTP/1.1 POST that asks the server to close the connection after answering.
fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Sends raw bytes to the REST port and returns what came back before the server closed or
/// the read timed out.
fn raw_http(addr: &str, request: &[u8], shutdown_write: bool) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    if shutdown_write {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tensors_get_reasons_and_memory_stays_bounded() {
    let repo = Repo::new(&[("add", ""), ("identity", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let mut client = server.predict_client().await;
    let ok = || predict("identity", vec![("x".into(), tensor(&[1, 10], 40))]);
    client.predict(ok()).await.unwrap();
    let rss_before = rss_kib(server.child.id());

    let negative = TensorProto {
        dtype: Tf::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: vec![
                tensor_shape_proto::Dim {
                    size: -5,
                    name: String::new(),
                },
                tensor_shape_proto::Dim {
                    size: 10,
                    name: String::new(),
                },
            ],
            unknown_rank: false,
        }),
        ..Default::default()
    };
    let thousands: Vec<(String, TensorProto)> = (0..5000)
        .map(|i| (format!("input_{i}"), tensor(&[1, 10], 40)))
        .collect();
    let cases: Vec<(PredictRequest, &str)> = vec![
        (
            predict("add", vec![("x".into(), tensor(&[1 << 20, 1 << 20], 40))]),
            "Invalid input shape",
        ),
        (
            predict("add", vec![("x".into(), tensor(&[1, 10, 1 << 40], 40))]),
            "Invalid input shape",
        ),
        (
            predict("add", vec![("x".into(), negative)]),
            "negative dimension -5",
        ),
        (
            predict("add", vec![("x".into(), tensor(&[0, 10], 0))]),
            "Invalid input shape",
        ),
        (
            predict("add", vec![("x".into(), tensor(&[1, 10], 12))]),
            "Expected: 40 bytes; Actual: 12 bytes",
        ),
        (
            predict("add", vec![("x".into(), tensor(&[1, 10], 4000))]),
            "Expected: 40 bytes; Actual: 4000 bytes",
        ),
        (predict("add", thousands), "Unexpected input name"),
    ];
    for (request, reason) in cases {
        let status = client.predict(request).await.expect_err(reason);
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains(reason),
            "{:?} lacks {reason:?}",
            status.message()
        );
        // Every other client keeps being served between hostile requests.
        client.predict(ok()).await.unwrap();
    }
    let rss_after = rss_kib(server.child.id());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_is_refused_and_the_server_keeps_serving() {
    let repo = Repo::new(&[("identity", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let addr = server.rest_addr.clone();

    // A 2 GiB Content-Length is refused before any of it is read.
    let huge = raw_http(
        &addr,
        b"POST /v1/models/identity:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2147483648\r\n\r\n{\"instances\": [",
        false,
    );
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    assert!(huge.contains("--max_message_size"), "{huge}");

    // A body shorter than its Content-Length: the client gave up; no answer is owed, but the
    // server must not wedge or crash.
    let truncated = raw_http(
        &addr,
        b"POST /v1/models/identity:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"instances\": [[1,2",
        true,
    );
    assert!(
        truncated.is_empty() || truncated.starts_with("HTTP/1.1 4"),
        "{truncated}"
    );

    // Invalid UTF-8 in a JSON input name, and a JSON document nested beyond reason.
    let answer = raw_http(
        &addr,
        &post(
            "/v1/models/identity:predict",
            b"{\"inputs\": {\"\xff\xfe\": 1}}",
        ),
        false,
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let deep = format!(
        "{{\"instances\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let answer = raw_http(
        &addr,
        &post("/v1/models/identity:predict", deep.as_bytes()),
        false,
    );
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "{}",
        &answer[..answer.len().min(300)]
    );

    let ok = reqwest::Client::new()
        .post(server.rest_url("/v1/models/identity:predict"))
        .body(r#"{"instances": [[1,2,3,4,5,6,7,8,9,10]]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// A unary gRPC call over plain HTTP/2, with a `grpc-timeout` header but no client-side timer
/// (tonic's client enforces the header itself), so the status observed is the server's.
async fn raw_predict(addr: &str, request: &PredictRequest, grpc_timeout: &str) -> (String, String) {
    use prost::Message;
    raw_predict_bytes(addr, &request.encode_to_vec(), grpc_timeout).await
}

/// Like [`raw_predict`], with the protobuf payload given as bytes (which may be malformed).
async fn raw_predict_bytes(addr: &str, payload: &[u8], grpc_timeout: &str) -> (String, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    let http_request = hyper::Request::post(format!(
        "http://{addr}/tensorflow.serving.PredictionService/Predict"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", grpc_timeout)
    .body(Full::new(Bytes::from(frame)))
    .unwrap();
    let response = client.request(http_request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    // A trailers-only answer carries the status in the headers; otherwise in the trailers.
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    // grpc-message is percent-encoded; the messages here only encode spaces and punctuation.
    let message = field("grpc-message")
        .replace("%20", " ")
        .replace("%28", "(")
        .replace("%29", ")")
        .replace("%3B", ";");
    (field("grpc-status"), message)
}

/// `ovms_current_requests` of a model, from /metrics.
/// A request whose deadline passes while it waits for a worker is answered DEADLINE_EXCEEDED
/// (with what the client allowed), and the worker skips its job instead of running it for
/// nobody. On the fake backend in-process, whose inferences wait at a gate the test holds
/// closed: the queue is there by construction, not by racing large uploads against the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_deadline_answers_deadline_exceeded_and_the_job_is_skipped() {
    use std::sync::atomic::Ordering;
    let server = common::in_process::InProcess::start(&[("m", &[1])], &[]);
    let control = server.backend.control.clone();
    let warm = control.inferences.load(Ordering::SeqCst);
    control.close_gate();
    // Two requests take the two workers (the fake model's optimal number) and wait at the gate.
    let grpc = server.grpc_addr.to_string();
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let grpc = grpc.clone();
            tokio::spawn(async move {
                let request = predict("m", vec![("x".into(), tensor(&[1], 4))]);
                raw_predict(&grpc, &request, "60S").await
            })
        })
        .collect();
    common::eventually(
        "both workers held at the gate",
        Duration::from_secs(60),
        async || (control.waiting.load(Ordering::SeqCst) == 2).then_some(()),
    )
    .await;
    // The third waits in the queue until its 50 ms are up.
    let hurried = predict("m", vec![("x".into(), tensor(&[1], 4))]);
    let (status, message) = raw_predict(&grpc, &hurried, "50m").await;
    assert_eq!(
        status,
        (Code::DeadlineExceeded as i32).to_string(),
        "{message}"
    );
    assert!(message.contains("allowed 50 ms"), "{message}");
    control.open_gate();
    for b in busy {
        let (status, message) = b.await.unwrap();
        assert_eq!(status, "0", "{message}");
    }
    // The expired job was dropped by a worker, not run: only the two held ones ran. The pool
    // takes the queued job right after the second answer; wait for it to be gone.
    common::eventually("the queue drained", Duration::from_secs(60), async || {
        let text = reqwest::get(server.rest_url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let queued: f64 = text
            .lines()
            .filter(|l| l.starts_with("ovms_current_requests{name=\"m\","))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (queued == 0.0).then_some(())
    })
    .await;
    assert_eq!(control.inferences.load(Ordering::SeqCst), warm + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_and_invalid_utf8_names_are_invalid_argument() {
    use prost::Message;
    let repo = Repo::new(&[("identity", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    // An input named "QQ", whose bytes are then replaced by invalid UTF-8.
    let valid = predict("identity", vec![("QQ".into(), tensor(&[1, 10], 40))]).encode_to_vec();
    let at = valid.windows(2).position(|w| w == b"QQ").unwrap();
    let mut invalid_name = valid.clone();
    invalid_name[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    let truncated = &valid[..valid.len() - 7];
    for payload in [&invalid_name[..], truncated, &[0xff; 16][..]] {
        let (status, message) = raw_predict_bytes(&server.grpc_addr, payload, "5S").await;
        assert_eq!(
            status,
            (Code::InvalidArgument as i32).to_string(),
            "{message}"
        );
        assert!(message.contains("Malformed protobuf message"), "{message}");
    }
    let mut client = server.predict_client().await;
    client
        .predict(predict(
            "identity",
            vec![("x".into(), tensor(&[1, 10], 40))],
        ))
        .await
        .unwrap();
}

/// Made-up model names cannot grow `/metrics` (they are counted under one label), and error
/// messages quote what a client sent cut to 128 characters, so the right code reaches the
/// client (a 1 MB label over gRPC would otherwise exceed the client's metadata limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_and_huge_echoes_stay_bounded() {
    use vinoserve::proto::tensorflow::serving::model_spec::VersionChoice;
    use vinoserve::proto::tensorflow::serving::ModelSpec;
    let repo = Repo::new(&[("identity", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let http = reqwest::Client::new();
    // One of each kind first, so the series for "(unknown)" exist before measuring.
    let warm = http
        .get(server.rest_url("/v1/models/u0"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 404);
    let before = server.metrics_text().await.unwrap().len();
    for n in 1..=2000 {
        let path = format!("/v1/models/u{n}%00x");
        let answer = http.get(server.rest_url(&path)).send().await.unwrap();
        assert_eq!(answer.status(), 404);
    }
    let mut grpc = server.predict_client().await;
    for n in 0..200 {
        let request = predict(&format!("g{n}"), vec![("x".into(), tensor(&[1, 10], 40))]);
        let status = grpc.predict(request).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    let text = server.metrics_text().await.unwrap();
    assert!(
        text.len() <= before + 4096,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
    assert!(
        !text.contains("u17") && !text.contains("g17"),
        "made-up names are not labels"
    );
    assert!(text.contains("name=\"(unknown)\""), "{text}");

    let long = "m".repeat(100_000);
    let status = grpc
        .predict(predict(&long, vec![("x".into(), tensor(&[1, 10], 40))]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{}", status.message().len());
    assert!(status.message().len() < 300, "{}", status.message().len());
    assert!(status.message().contains("(100000 characters in all)"));
    let label = "l".repeat(1 << 20);
    let request = PredictRequest {
        model_spec: Some(ModelSpec {
            name: "identity".into(),
            signature_name: String::new(),
            version_choice: Some(VersionChoice::VersionLabel(label)),
        }),
        inputs: [("x".to_string(), tensor(&[1, 10], 40))].into(),
        ..Default::default()
    };
    let status = grpc.predict(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("(1048576 characters in all)"));
    // A 5 MB signature_name over REST: a 400 of a few hundred bytes, not 5 MB.
    let body = format!(
        r#"{{"signature_name": "{}", "instances": [[0,0,0,0,0,0,0,0,0,0]]}}"#,
        "s".repeat(5 << 20)
    );
    let answer = http
        .post(server.rest_url("/v1/models/identity:predict"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(text.len() < 3000, "{} bytes", text.len());
}

/// JSON has a budget of its own (`--max_json_body_size`): over it, TFS REST and KServe REST
/// answer 413 naming the flag, before decoding; the same tensor in KServe's binary extension
/// (a small JSON header) is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_over_its_budget_is_413_and_binary_is_not_limited_by_it() {
    let repo = Repo::new(&[("dynamic", "")]);
    let server = Server::with_config(&repo, &["--max_json_body_size", "4096"]);
    server.wait_loaded();
    let http = reqwest::Client::new();
    let rows: Vec<Vec<f32>> = vec![vec![0.5; 8]; 1000];
    let tfs = serde_json::json!({ "instances": rows }).to_string();
    let answer = http
        .post(server.rest_url("/v1/models/dynamic:predict"))
        .body(tfs)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
    assert!(answer
        .text()
        .await
        .unwrap()
        .contains("--max_json_body_size"));

    let flat: Vec<f32> = vec![0.5; 8000];
    let kserve = serde_json::json!({"inputs": [
        {"name": "x", "shape": [1000, 8], "datatype": "FP32", "data": flat}
    ]})
    .to_string();
    let answer = http
        .post(server.rest_url("/v2/models/dynamic/infer"))
        .body(kserve)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
    let text = answer.text().await.unwrap();
    assert!(text.contains("--max_json_body_size"), "{text}");

    let header = serde_json::json!({"inputs": [
        {"name": "x", "shape": [1000, 8], "datatype": "FP32",
         "parameters": {"binary_data_size": 32000}}
    ]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(bytemuck::cast_slice(&flat));
    let answer = http
        .post(server.rest_url("/v2/models/dynamic/infer"))
        .header("Inference-Header-Content-Length", header.len())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

fn status_kib(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// JSON is decoded without a value tree: a 5 MB body raises the server's peak RSS (VmHWM, reset
/// through /proc/PID/clear_refs) by less than 4× its size; the tree-walking decoder took 12-13×
/// (docs/json-memory.md). Each body is the first large one its server sees (a tree's freed pages
/// would be reused by the next), is decoded in full, then refused by validation (the shape), so
/// inference adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_json_body_costs_a_small_multiple_of_its_size() {
    let row = format!("[{}]", ["0.25"; 10].join(","));
    let rows = 400_000; // 52 bytes a row: 20.8 MB (smaller bodies measure the allocator's fixed overhead: 2 MiB huge pages, arena commits)
    let tfs = format!(
        r#"{{"instances": [{}]}}"#,
        vec![row.as_str(); rows].join(",")
    );
    let kserve = format!(
        r#"{{"inputs": [{{"name": "x", "shape": [{rows}, 10], "datatype": "FP32", "data": [{}]}}]}}"#,
        vec![row.as_str(); rows].join(",")
    );
    for (path, body) in [
        ("/v1/models/add:predict", tfs),
        ("/v2/models/add/infer", kserve),
    ] {
        let repo = Repo::new(&[("add", "")]);
        let server = Server::with_config(&repo, &["--max_json_body_size", "67108864"]);
        server.wait_loaded();
        let http = reqwest::Client::new();
        let small = r#"{"instances": [[1,2,3,4,5,6,7,8,9,10]]}"#;
        let warm = http
            .post(server.rest_url("/v1/models/add:predict"))
            .body(small)
            .send()
            .await
            .unwrap();
        assert_eq!(warm.status(), 200);
        let pid = server.child.id();
        let before = status_kib(pid, "VmRSS:");
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        let answer = http
            .post(server.rest_url(path))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{path}");
        let text = answer.text().await.unwrap();
        assert!(text.contains("Invalid input shape"), "{path}: {text}");
        let growth = status_kib(pid, "VmHWM:").saturating_sub(before) * 1024;
        let ratio = growth as f64 / body.len() as f64;
        println!(
            "{path}: peak RSS +{growth} bytes for a {} byte body ({ratio:.2}×)",
            body.len()
        );
        assert!(
            growth < 4 * body.len(),
            "{path}: peak RSS grew {growth} bytes for a {}-byte body ({ratio:.1}×)",
            body.len()
        );
        // The memory is given back before the answer leaves (glibc's trim, mimalloc's collect).
        let kept = status_kib(pid, "VmRSS:").saturating_sub(before) * 1024;
        assert!(
            kept < body.len() / 2,
            "{path}: {kept} bytes still resident after a {}-byte body",
            body.len()
        );
    }
}

/// A REST body is read into one buffer of its announced `Content-Length`: reading a 48 MiB
/// body (to an unknown model, so it is read in full and answered 404 without decoding) grows
/// peak RSS by about its size. Read by doubling from 8 KiB, as actix's extractor does, the last
/// doubling held the old 32 MiB and the new 64 MiB buffers at once (100 MB bodies: 2.4× their
/// size, docs/json-memory.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_read_into_one_buffer_of_its_size() {
    let repo = Repo::new(&[("add", "")]);
    let server = Server::with_config(&repo, &["--max_json_body_size", "67108864"]);
    server.wait_loaded();
    let http = reqwest::Client::new();
    let body = vec![b' '; 48 << 20];
    let pid = server.child.id();
    let before = status_kib(pid, "VmRSS:");
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let answer = http
        .post(server.rest_url("/v1/models/unknown:predict"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let growth = status_kib(pid, "VmHWM:").saturating_sub(before) * 1024;
    let ratio = growth as f64 / body.len() as f64;
    println!(
        "peak RSS +{growth} bytes reading a {} byte body ({ratio:.2}×)",
        body.len()
    );
    assert!(
        growth < body.len() * 3 / 2,
        "peak RSS grew {growth} bytes reading a {}-byte body ({ratio:.2}×)",
        body.len()
    );
}
