//! TF Serving gRPC against the real server and real OpenVINO models: results, concurrency, the
//! queue bound, SIGTERM, a missing runtime, reshape at load. Error rows, metadata and status on
//! the fake backend: tests/protocols_fake/tfs_grpc.rs.

mod common;

use bytes::Bytes;
use common::requests::{predict, tensor};
use common::values::f32_bytes;
use common::{reference, Repo, Server, ADD_ALL_VERSIONS};
use openvino::ElementType;
use tonic::Code;
use vinoserve::api::tfs::codec::shape_proto;
use vinoserve::proto::tensorflow::serving::model_spec::VersionChoice;
use vinoserve::proto::tensorflow::{DataType as Tf, TensorProto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_match_openvino_run_directly() {
    let repo = Repo::protocol_fixtures(ADD_ALL_VERSIONS, &[]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let mut client = server.predict_client().await;
    let dir = |m: &str, v: u64| repo.model_dir(m).join(v.to_string()).join("model.xml");

    // identity: bit-exact, incl. -0.0, denormals, inf.
    let x: Vec<f32> = common::values::AWKWARD_F32.to_vec();
    let out = client
        .predict(predict(
            "identity",
            None,
            vec![("x", tensor(Tf::DtFloat, &[1, 10], f32_bytes(&x)))],
        ))
        .await
        .unwrap()
        .into_inner();
    let want = reference::infer(
        &dir("identity", 1),
        &[("x", ElementType::F32, vec![1, 10], f32_bytes(&x))],
        &["y"],
    );
    assert_eq!(out.outputs["y"].tensor_content.as_ref(), want[0].as_slice());
    assert_eq!(out.outputs["y"].dtype, Tf::DtFloat as i32);
    assert_eq!(
        out.outputs["y"].tensor_shape,
        Some(shape_proto(&[1i64, 10]))
    );
    let answered = out.model_spec.unwrap();
    assert_eq!(
        (answered.name.as_str(), answered.version_choice),
        ("identity", Some(VersionChoice::Version(1)))
    );

    // two inputs, two outputs; output_filter picks one.
    let a = [1.0f32, 2.0, 3.0, 4.0];
    let b = [0.5f32, -1.0, 2.0, 10.0];
    let inputs = vec![
        ("a", tensor(Tf::DtFloat, &[1, 4], f32_bytes(&a))),
        ("b", tensor(Tf::DtFloat, &[1, 4], f32_bytes(&b))),
    ];
    let out = client
        .predict(predict("two_io", None, inputs.clone()))
        .await
        .unwrap()
        .into_inner();
    let want = reference::infer(
        &dir("two_io", 1),
        &[
            ("a", ElementType::F32, vec![1, 4], f32_bytes(&a)),
            ("b", ElementType::F32, vec![1, 4], f32_bytes(&b)),
        ],
        &["sum", "product"],
    );
    assert_eq!(
        out.outputs["sum"].tensor_content.as_ref(),
        want[0].as_slice()
    );
    assert_eq!(
        out.outputs["product"].tensor_content.as_ref(),
        want[1].as_slice()
    );
    let mut filtered = predict("two_io", None, inputs);
    filtered.output_filter = vec!["product".into()];
    let out = client.predict(filtered).await.unwrap().into_inner();
    assert_eq!(out.outputs.keys().collect::<Vec<_>>(), vec!["product"]);

    // int64 via the typed field; uint8 via int_val; fp16 via half_val; dynamic batch of 3.
    let mut t = TensorProto {
        dtype: Tf::DtInt64 as i32,
        tensor_shape: Some(shape_proto(&[1i64, 5])),
        ..Default::default()
    };
    t.int64_val = vec![1, -2, 3, 1000, -50000];
    let out = client
        .predict(predict("int64", None, vec![("x", t)]))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<i64> = bytemuck::pod_collect_to_vec(&out.outputs["y"].tensor_content);
    assert_eq!(got, vec![2, -4, 6, 2000, -100000]);

    let mut t = TensorProto {
        dtype: Tf::DtUint8 as i32,
        tensor_shape: Some(shape_proto(&[1i64, 6])),
        ..Default::default()
    };
    t.int_val = vec![0, 1, 2, 100, 254, 255];
    let out = client
        .predict(predict("uint8", None, vec![("x", t)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        out.outputs["y"].tensor_content.as_ref(),
        &[1, 2, 3, 101, 255, 0]
    );

    let halves: Vec<half::f16> = [1.0f32, -2.5, 0.0, 100.0]
        .iter()
        .map(|&v| half::f16::from_f32(v))
        .collect();
    let mut t = TensorProto {
        dtype: Tf::DtHalf as i32,
        tensor_shape: Some(shape_proto(&[1i64, 4])),
        ..Default::default()
    };
    t.half_val = halves.iter().map(|h| h.to_bits() as i32).collect();
    let out = client
        .predict(predict("half", None, vec![("x", t)]))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<half::f16> = bytemuck::pod_collect_to_vec(&out.outputs["y"].tensor_content);
    assert_eq!(
        got.iter().map(|h| h.to_f32()).collect::<Vec<_>>(),
        vec![2.0, -1.5, 1.0, 101.0]
    );

    let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
    let out = client
        .predict(predict(
            "dynamic",
            None,
            vec![("x", tensor(Tf::DtFloat, &[3, 8], f32_bytes(&x)))],
        ))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&out.outputs["y"].tensor_content);
    assert_eq!(got, x.iter().map(|v| v * 3.0).collect::<Vec<_>>());
    assert_eq!(out.outputs["y"].tensor_shape, Some(shape_proto(&[3i64, 8])));

    // Versions: unversioned (and version 0, as ovmsclient sends it) goes to the highest;
    // version and label select.
    let ones = f32_bytes(&[1.0; 10]);
    for (version, add) in [
        (None, 2.0f32),
        (Some(0), 2.0),
        (Some(1), 1.0),
        (Some(2), 2.0),
    ] {
        let out = client
            .predict(predict(
                "add",
                version,
                vec![("x", tensor(Tf::DtFloat, &[1, 10], ones.clone()))],
            ))
            .await
            .unwrap()
            .into_inner();
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&out.outputs["y"].tensor_content);
        assert_eq!(got, vec![1.0 + add; 10], "version {version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_clients_all_get_their_own_answer() {
    let repo = Repo::new(&[("dynamic", r#""nireq": 2"#)]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let url = server.grpc_url();
    let tasks: Vec<_> = (0..64)
        .map(|client_id| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut client = vinoserve::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient::connect(url).await.unwrap();
                for round in 0..10 {
                    let rows = 1 + (client_id + round) % 4;
                    let x: Vec<f32> = (0..rows * 8).map(|i| (client_id * 1000 + round * 10) as f32 + i as f32).collect();
                    let req = predict("dynamic", None, vec![("x", tensor(Tf::DtFloat, &[rows as i64, 8], f32_bytes(&x)))]);
                    let out = client.predict(req).await.unwrap().into_inner();
                    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&out.outputs["y"].tensor_content);
                    assert_eq!(got, x.iter().map(|v| v * 3.0).collect::<Vec<_>>());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_queue_answers_resource_exhausted_naming_model_and_bound() {
    let repo = Repo::new(&[("dynamic", r#""nireq": 1"#)]);
    let server = Server::with_config(&repo, &["--queue_bound", "1"]);
    server.wait_loaded();
    let client = server.predict_client().await;
    // Big batches keep the single worker busy, so most of 32 simultaneous requests find the
    // one queue slot taken.
    let rows = 200_000usize;
    let x = Bytes::from(vec![0u8; rows * 8 * 4]);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let mut client = client.clone();
            let req = predict(
                "dynamic",
                None,
                vec![("x", tensor(Tf::DtFloat, &[rows as i64, 8], x.to_vec()))],
            );
            tokio::spawn(async move { client.predict(req).await })
        })
        .collect();
    let mut ok = 0;
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
                assert!(
                    s.message().contains("dynamic") && s.message().contains("(1 waiting)"),
                    "{}",
                    s.message()
                );
                exhausted += 1;
            }
        }
    }
    assert!(ok >= 1 && exhausted >= 1, "ok {ok}, exhausted {exhausted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_every_request_in_flight_then_exits_zero() {
    let repo = Repo::new(&[("dynamic", r#""nireq": 1"#)]);
    // Each request on a connection of its own, spread over the gRPC threads that accept them:
    // every thread must drain its connections before the server exits.
    let mut server = Server::with_config(&repo, &["--grpc_workers", "3"]);
    server.wait_loaded();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.predict_client().await);
    }
    // Large batches on one worker: the eight requests are served one after another, so when the
    // first answer arrives the others are still queued or running.
    let rows = 1_000_000usize;
    let x: Vec<f32> = (0..rows * 8).map(|i| (i % 7) as f32).collect();
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let answered = answered_tx.clone();
            let req = predict(
                "dynamic",
                None,
                vec![("x", tensor(Tf::DtFloat, &[rows as i64, 8], f32_bytes(&x)))],
            );
            tokio::spawn(async move {
                let result = client.predict(req).await;
                let _ = answered.send(());
                result
            })
        })
        .collect();
    // Signal once the server holds every request (received whole: queued, running or answered),
    // not when the client has merely started sending them: a request the server has not read
    // yet is not in flight, and HTTP/2's GOAWAY rightly refuses it. Both numbers come from one
    // scrape.
    common::eventually(
        "all eight requests received by the server, some still in flight",
        std::time::Duration::from_secs(120),
        async || {
            let text = server.metrics_text().await.ok()?;
            let samples = common::metrics_text::parse(&text);
            let value = |name: &str| {
                common::metrics_text::value(&samples, name, &[("name", "dynamic")]) as usize
            };
            let (held, answered) = (
                value("ovms_current_requests"),
                value("ovms_requests_success"),
            );
            (held + answered == 8 && held > 0).then_some(())
        },
    )
    .await;
    server.signal("TERM");
    let mut answered_before_signal = 0;
    while answered_rx.try_recv().is_ok() {
        answered_before_signal += 1;
    }
    assert!(
        answered_before_signal < 8,
        "no request was still in flight when SIGTERM was sent"
    );
    for t in tasks {
        let out = t
            .await
            .unwrap()
            .expect("request in flight at SIGTERM is answered")
            .into_inner();
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&out.outputs["y"].tensor_content);
        assert_eq!(got.len(), rows * 8);
        assert_eq!(got[..7], [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 18.0]);
    }
    assert_eq!(
        server.wait_exit(std::time::Duration::from_secs(30)),
        Some(0)
    );
}

#[test]
fn a_missing_openvino_runtime_is_one_line_and_exit_3() {
    let repo = Repo::new(&[("identity", "")]);
    let output = std::process::Command::new(common::binary())
        .args([
            "--config_path",
            &repo.config_path().display().to_string(),
            "--port",
            "0",
            "--rest_port",
            "0",
        ])
        .args(["--openvino_lib", "/nonexistent/openvino/libs"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/nonexistent/openvino/libs") && stderr.contains("scripts/setup.sh"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shape_and_batch_size_reshape_at_load() {
    let repo = Repo::new(&[
        ("identity", r#""shape": "(3,10)""#),
        ("dynamic", r#""batch_size": 2"#),
    ]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let mut client = server.predict_client().await;
    let x: Vec<f32> = (0..30).map(|i| i as f32).collect();
    let out = client
        .predict(predict(
            "identity",
            None,
            vec![("x", tensor(Tf::DtFloat, &[3, 10], f32_bytes(&x)))],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        out.outputs["y"].tensor_shape,
        Some(shape_proto(&[3i64, 10]))
    );
    let status = client
        .predict(predict(
            "identity",
            None,
            vec![("x", tensor(Tf::DtFloat, &[1, 10], f32_bytes(&x[..10])))],
        ))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("Expected: (3,10)"),
        "{}",
        status.message()
    );
    let (_, map) = common::signature_def(&mut client, "dynamic").await;
    assert_eq!(
        map.signature_def["serving_default"].inputs["x"].tensor_shape,
        Some(shape_proto(&[2i64, 8]))
    );
}
