//! Prometheus metrics after known traffic, parsed from the text format.

mod common;

use bytes::Bytes;
use common::metrics_text::{parse, value};
use common::{spec, Repo, Server};
use vinoserve::api::tfs::codec::shape_proto;
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::{DataType as Tf, TensorProto};

fn x(n: usize) -> TensorProto {
    TensorProto {
        dtype: Tf::DtFloat as i32,
        tensor_shape: Some(shape_proto(&[1i64, n as i64])),
        tensor_content: Bytes::from(vec![0u8; n * 4]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histograms_move_by_the_traffic_sent() {
    let repo = Repo::new(&[
        ("add", r#""model_version_policy": {"all": {}}"#),
        ("identity", ""),
    ]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let mut grpc = server.predict_client().await;
    let http = reqwest::Client::new();
    let before = parse(&server.metrics_text().await.unwrap());

    for _ in 0..5 {
        let req = PredictRequest {
            model_spec: spec("add", None),
            inputs: [("x".to_string(), x(10))].into(),
            ..Default::default()
        };
        grpc.predict(req).await.unwrap();
    }
    for _ in 0..2 {
        let req = PredictRequest {
            model_spec: spec("add", Some(1)),
            inputs: [("x".to_string(), x(11))].into(),
            ..Default::default()
        };
        grpc.predict(req).await.unwrap_err();
    }
    for _ in 0..3 {
        let r = http
            .post(server.rest_url("/v1/models/add/versions/1:predict"))
            .body(r#"{"instances": [[0,0,0,0,0,0,0,0,0,0]]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // KServe's model calls are counted as OVMS counts them: ModelReady without a version,
    // ModelMetadata under the version that answered.
    for path in [
        "/v2/models/add/ready",
        "/v2/models/add/ready",
        "/v2/models/add",
    ] {
        let r = http.get(server.rest_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = http
        .get(server.rest_url("/v2/models/add/versions/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let response = http.get(server.rest_url("/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let after = parse(&response.text().await.unwrap());
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };

    let grpc_predict = [
        ("api", "TensorFlowServing"),
        ("interface", "gRPC"),
        ("method", "Predict"),
        ("name", "add"),
    ];
    assert_eq!(
        delta(
            "ovms_requests_success",
            &[&grpc_predict[..], &[("version", "2")]].concat()
        ),
        5.0
    );
    assert_eq!(delta("ovms_requests_fail", &grpc_predict), 2.0);
    let rest_predict = [
        ("interface", "REST"),
        ("method", "Predict"),
        ("name", "add"),
        ("version", "1"),
    ];
    assert_eq!(delta("ovms_requests_success", &rest_predict), 3.0);
    let kserve_rest = |method| {
        [
            ("api", "KServe"),
            ("interface", "REST"),
            ("method", method),
            ("name", "add"),
        ]
    };
    assert_eq!(
        delta("ovms_requests_success", &kserve_rest("ModelReady")),
        2.0
    );
    assert_eq!(
        delta(
            "ovms_requests_success",
            &[&kserve_rest("ModelMetadata")[..], &[("version", "2")]].concat()
        ),
        1.0
    );
    assert_eq!(
        delta("ovms_requests_fail", &kserve_rest("ModelMetadata")),
        1.0
    );
    assert_eq!(
        delta(
            "ovms_request_time_us_count",
            &[("interface", "gRPC"), ("name", "add"), ("version", "2")]
        ),
        5.0
    );
    // Failed requests never reach a worker: 5 on version 2, 3 on version 1.
    assert_eq!(
        delta(
            "ovms_inference_time_us_count",
            &[("name", "add"), ("version", "2")]
        ),
        5.0
    );
    assert_eq!(
        delta(
            "ovms_inference_time_us_count",
            &[("name", "add"), ("version", "1")]
        ),
        3.0
    );
    assert_eq!(
        delta("ovms_wait_for_infer_req_time_us_count", &[("name", "add")]),
        8.0
    );
    assert!(value(&after, "ovms_inference_time_us_sum", &[("name", "add")]) > 0.0);
    // The +Inf bucket holds every observation.
    assert_eq!(
        value(
            &after,
            "ovms_inference_time_us_bucket",
            &[("name", "add"), ("version", "2"), ("le", "+Inf")]
        ),
        value(
            &after,
            "ovms_inference_time_us_count",
            &[("name", "add"), ("version", "2")]
        )
    );
    // Loads and states: both versions of add and identity v1 loaded once, all AVAILABLE.
    assert_eq!(
        value(
            &after,
            "vinoserve_model_loads_total",
            &[("name", "add"), ("result", "success")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "vinoserve_version_state",
            &[("name", "add"), ("state", "AVAILABLE")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "vinoserve_version_state",
            &[
                ("name", "identity"),
                ("version", "1"),
                ("state", "AVAILABLE")
            ]
        ),
        1.0
    );
    assert!(
        value(
            &after,
            "ovms_infer_req_queue_size",
            &[("name", "add"), ("version", "2")]
        ) >= 1.0
    );
    assert_eq!(
        value(&after, "ovms_current_requests", &[("name", "add")]),
        0.0
    );
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let repo = Repo::new(&[("identity", "")]);
    let server = Server::with_config(&repo, &["--metrics_enable", "false"]);
    let r = reqwest::get(server.rest_url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 404);
}

/// Sends `n` Predicts of `[1, width]` zeros to `model` and checks every answer is `x + add`.
async fn predict_zeros(server: &Server, model: &str, width: usize, n: usize, add: f32) {
    let mut grpc = server.predict_client().await;
    for _ in 0..n {
        let req = PredictRequest {
            model_spec: spec(model, None),
            inputs: [("x".to_string(), x(width))].into(),
            ..Default::default()
        };
        let out = grpc.predict(req).await.unwrap().into_inner();
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&out.outputs["y"].tensor_content);
        assert_eq!(values, vec![add; width], "{model}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_fixed_shape_models_run_inline_and_dynamic_ones_never() {
    let repo = Repo::new(&[("add", ""), ("dynamic", "")]);
    // A limit far above any inference time on any machine: whether the path opens must not
    // depend on how fast this CPU runs `add` (100-300 µs on some, 10 µs on others).
    let server = Server::with_config(&repo, &["--inline_inference_us", "60000000"]);
    server.wait_loaded();
    predict_zeros(&server, "add", 10, 20, 2.0).await;
    predict_zeros(&server, "dynamic", 8, 20, 0.0).await;
    let samples = parse(&server.metrics_text().await.unwrap());
    let inline = |model: &str| {
        value(
            &samples,
            "vinoserve_inferences_inline_total",
            &[("name", model)],
        )
    };
    let inferred =
        |model: &str| value(&samples, "ovms_inference_time_us_count", &[("name", model)]);
    assert_eq!(inferred("add"), 20.0);
    // The first request after a load always goes to a worker (nothing measured yet); after it
    // the path is open. At least one of the rest runs inline; not necessarily all, since a
    // request can arrive before the worker that answered the last one has given back its executor.
    assert!(
        (1.0..20.0).contains(&inline("add")),
        "inline runs of add: {}",
        inline("add")
    );
    assert_eq!(inferred("dynamic"), 20.0);
    assert_eq!(
        inline("dynamic"),
        0.0,
        "a dynamic-shape model always hands off"
    );

    let off = Server::with_config(&repo, &["--inline_inference_us", "0"]);
    off.wait_loaded();
    predict_zeros(&off, "add", 10, 20, 2.0).await;
    let samples = parse(&off.metrics_text().await.unwrap());
    assert_eq!(
        value(
            &samples,
            "vinoserve_inferences_inline_total",
            &[("name", "add")]
        ),
        0.0
    );
}
