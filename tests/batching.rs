//! Server-side dynamic batching on real OpenVINO (the `dynamic` fixture: x [-1,8] → y = 3x):
//! concurrent requests become one inference and each client gets exactly its own rows back;
//! a request larger than the batch runs alone; TF Serving's --enable_batching with its
//! parameters file does the same for models that set no batching of their own.

mod common;

use common::requests::tensor;
use common::values::f32_bytes;
use common::{spec, Repo, Server};
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::DataType as Tf;

fn rows_request(rows: usize, client: usize) -> (PredictRequest, Vec<f32>) {
    let x: Vec<f32> = (0..rows * 8)
        .map(|i| client as f32 * 100.0 + i as f32)
        .collect();
    let request = PredictRequest {
        model_spec: spec("dynamic", None),
        inputs: [(
            "x".to_string(),
            tensor(Tf::DtFloat, &[rows as i64, 8], f32_bytes(&x)),
        )]
        .into(),
        ..Default::default()
    };
    (request, x)
}

/// Sends one request per entry of `rows` at once, each on its own connection; checks every
/// answer is 3x of its own input.
async fn concurrent(server: &Server, rows: &[usize]) {
    let mut tasks = Vec::new();
    for (client, &n) in rows.iter().enumerate() {
        let mut grpc = server.predict_client().await;
        let (request, x) = rows_request(n, client);
        tasks.push(tokio::spawn(async move {
            let answer = grpc.predict(request).await.unwrap().into_inner();
            let y: Vec<f32> = bytemuck::pod_collect_to_vec(&answer.outputs["y"].tensor_content);
            let shape = common::dims_of(&answer.outputs["y"]);
            assert_eq!(shape, vec![n as i64, 8], "client {client}");
            assert_eq!(
                y,
                x.iter().map(|v| v * 3.0).collect::<Vec<_>>(),
                "client {client}"
            );
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// (batches run, requests in them) from `vinoserve_batch_size`.
async fn batches(server: &Server) -> (f64, f64) {
    let labels = [("name", "dynamic")];
    (
        server.metric("vinoserve_batch_size_count", &labels).await,
        server.metric("vinoserve_batch_size_sum", &labels).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_run_as_one_inference_and_get_their_own_rows() {
    // A timeout far longer than the test: the batch runs when it is full (8 rows), which makes
    // what is batched independent of how fast this machine is.
    let repo = Repo::new(&[(
        "dynamic",
        r#""nireq": 1, "batching": {"max_batch_size": 8, "batch_timeout_micros": 600000000}"#,
    )]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    concurrent(&server, &[1, 2, 1, 1, 3]).await;
    assert_eq!(
        batches(&server).await,
        (1.0, 5.0),
        "five requests, eight rows, one batch"
    );
    // Larger than max_batch_size: alone, at once.
    concurrent(&server, &[12]).await;
    assert_eq!(batches(&server).await, (2.0, 6.0));
    let inferences = server
        .metric("ovms_inference_time_us_count", &[("name", "dynamic")])
        .await;
    assert_eq!(inferences, 2.0, "two inferences for six requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_serving_enable_batching_with_its_parameters_file() {
    let repo = Repo::new(&[("dynamic", r#""nireq": 1"#)]);
    let file = repo.dir.path().join("batching.txt");
    std::fs::write(
        &file,
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 600000000 }\n\
         max_enqueued_batches { value: 8 }\nallowed_batch_sizes: 2\nallowed_batch_sizes: 4\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let server = Server::with_config(
        &repo,
        &["--enable_batching", "--batching_parameters_file", &file],
    );
    server.wait_loaded();
    concurrent(&server, &[1, 1, 1, 1]).await;
    assert_eq!(batches(&server).await, (1.0, 4.0));
    concurrent(&server, &[1, 2, 1]).await;
    assert_eq!(
        batches(&server).await,
        (2.0, 7.0),
        "1+2+1 rows: one batch of three requests"
    );
}

/// A batch the timeout closes early is padded up to the next allowed size (zero rows, dropped
/// from the answers); what ends up batched depends on timing here, the answers never do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_closed_by_its_timeout_is_padded_and_answers_stay_exact() {
    let repo = Repo::new(&[(
        "dynamic",
        r#""nireq": 1, "batching": {"max_batch_size": 8, "batch_timeout_micros": 2000,
            "allowed_batch_sizes": [4, 8]}"#,
    )]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    for _ in 0..5 {
        concurrent(&server, &[1, 2]).await;
    }
    let (batches, requests) = batches(&server).await;
    assert_eq!(requests, 10.0);
    assert!(batches >= 5.0, "{batches}");
}
