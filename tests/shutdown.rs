//! Shutdown: a second SIGTERM during the drain exits at once instead of waiting.

mod common;

use bytes::Bytes;
use common::{spec, Repo, Server};
use std::time::{Duration, Instant};
use vinoserve::api::tfs_codec::shape_proto;
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::{DataType as Tf, TensorProto};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_sigterm_exits_at_once_with_status_one() {
    let repo = Repo::new(&[("dynamic", r#""nireq": 1"#)]);
    let mut server = Server::with_config(&repo, &["--drain_timeout_seconds", "60"]);
    server.wait_loaded();
    let rows = 1_000_000i64;
    let x = TensorProto {
        dtype: Tf::DtFloat as i32,
        tensor_shape: Some(shape_proto(&[rows, 8])),
        tensor_content: Bytes::from(vec![0u8; rows as usize * 32]),
        ..Default::default()
    };
    // Enough queued work that draining it takes far longer than the test waits.
    let mut pending = Vec::new();
    for _ in 0..24 {
        let mut client = server.predict_client().await;
        let request = PredictRequest {
            model_spec: spec("dynamic", None),
            inputs: [("x".to_string(), x.clone())].into(),
            ..Default::default()
        };
        pending.push(tokio::spawn(async move { client.predict(request).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.child.try_wait().unwrap(),
        None,
        "the first SIGTERM drains, it does not exit"
    );
    let second = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(1));
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        second.elapsed()
    );
    for p in pending {
        let _ = p.await;
    }
}
