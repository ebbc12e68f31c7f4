//! One request can be followed in the log from its transport to the worker thread that ran it:
//! every line of the request carries its span (method, model, version, request id, and the W3C
//! trace id when the client sent `traceparent`).

mod common;

use common::{Repo, Server};
use serde_json::Value;
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REST_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// The JSON log lines whose spans carry `trace_id`.
fn lines_of(server: &Server, trace_id: &str) -> Vec<Value> {
    server
        .log_text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["span"]["trace_id"] == trace_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_followed_from_transport_to_worker_by_its_trace_id() {
    let repo = Repo::new(&[("add", "")]);
    // The worker path for every request (no inline runs), and the lines it writes at debug.
    let server = Server::start_with_env(
        &[
            "--config_path",
            &repo.config_path().display().to_string(),
            "--inline_inference_us",
            "0",
            "--log_format",
            "json",
        ],
        &[("VINOSERVE_LOG_LEVEL", "info,vinoserve=debug")],
    );
    server.wait_loaded();
    let mut request = tonic::Request::new(common::zeros_request("add", 10));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    server
        .predict_client()
        .await
        .predict(request)
        .await
        .unwrap();
    let answer = reqwest::Client::new()
        .post(server.rest_url("/v1/models/add:predict"))
        .header(
            "traceparent",
            format!("00-{REST_TRACE}-00f067aa0ba902b7-01"),
        )
        .body(r#"{"instances": [[0,0,0,0,0,0,0,0,0,0]]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    for trace in [TRACE, REST_TRACE] {
        let lines = common::eventually(
            &format!("the log lines of trace {trace}"),
            Duration::from_secs(60),
            async || {
                let lines = lines_of(&server, trace);
                (lines.len() >= 2).then_some(lines)
            },
        )
        .await;
        let messages: Vec<&str> = lines
            .iter()
            .filter_map(|l| l["fields"]["message"].as_str())
            .collect();
        assert!(
            messages.contains(&"inference on a worker thread")
                && messages.contains(&"request done"),
            "{messages:?}"
        );
        for line in &lines {
            let span = &line["span"];
            assert_eq!(span["method"], "Predict", "{line}");
            assert_eq!(span["model"], "add", "{line}");
            assert!(
                span["request_id"].as_str().is_some_and(|id| !id.is_empty()),
                "{line}"
            );
        }
        let worker = lines
            .iter()
            .find(|l| l["fields"]["message"] == "inference on a worker thread")
            .unwrap();
        assert!(
            worker["threadName"]
                .as_str()
                .unwrap_or("")
                .starts_with("ov-add"),
            "the inference line comes from the model's worker thread: {worker}"
        );
        let done = lines
            .iter()
            .find(|l| l["fields"]["message"] == "request done")
            .unwrap();
        assert_eq!(done["span"]["version"], 2, "{done}");
    }
}
