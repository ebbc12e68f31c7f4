//! Model repositories as users bring them, served with no conversion step: a TF Serving
//! repository of SavedModels (two versions, one with TF Serving's warm-up file) and a TFLite
//! model, made once with TensorFlow (`scripts/make_tf_fixtures.py`) and checked against the
//! outputs TensorFlow computed (`tests/fixtures/tf/reference.json`). Also what is refused: a
//! folder with no model in it, a warm-up file that does not parse, a SavedModel half copied.
//! ONNX and PaddlePaddle exports of real public models are checked in tests/clients.rs.

mod common;

use common::values::f32_bytes;
use common::{copy_dir, wait_state, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vinoserve::proto::tensorflow::serving::{model_spec, ModelSpec, PredictRequest};
use vinoserve::proto::tensorflow::DataType as Tf;

const AVAILABLE: i32 = 30;
const START: i32 = 10;
const END: i32 = 50;
const DEADLINE: Duration = Duration::from_secs(120);
/// OpenVINO in f32 matches TensorFlow to ~5e-8 on these models (bf16 would not).
const F32: &str = r#""plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}"#;

fn tf_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(tf_fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A repository with the given models (name, base folder to copy, extra config) and a
/// config.json for them.
struct TfRepo {
    dir: tempfile::TempDir,
}

impl TfRepo {
    fn new(models: &[(&str, &Path, &str)]) -> TfRepo {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<String> = models
            .iter()
            .map(|(name, from, extra)| {
                copy_dir(from, &dir.path().join(name));
                format!(r#"{{"config": {{"name": "{name}", "base_path": "{name}", {extra}}}}}"#)
            })
            .collect();
        let config = format!(r#"{{"model_config_list": [{}]}}"#, entries.join(","));
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        TfRepo { dir }
    }

    fn start(&self) -> Server {
        let config = self.dir.path().join("config.json").display().to_string();
        let server = Server::start(&["--config_path", &config, "--file_settle_ms", "200"]);
        server.wait_loaded();
        server
    }
}

fn f32s(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn dims(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-5,
        "{what}: max abs difference {worst}\n{got:?}\n{want:?}"
    );
}

/// Runs every reference case of `model` version `version` through TFS gRPC Predict, with
/// inputs and outputs renamed by `rename` (signature key → served name).
async fn check_cases(server: &Server, model: &str, version: i64, rename: &dyn Fn(&str) -> String) {
    let reference = reference();
    let cases = reference["models"][model][version.to_string()]["cases"]
        .as_array()
        .unwrap()
        .clone();
    let mut client = server.predict_client().await;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let inputs = case["inputs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, tensor)| {
                let values = f32s(&tensor["data"]);
                let proto = common::requests::tensor(
                    Tf::DtFloat,
                    &dims(&tensor["shape"]),
                    f32_bytes(&values),
                );
                (rename(key), proto)
            })
            .collect();
        let request = PredictRequest {
            model_spec: Some(ModelSpec {
                name: model.into(),
                // As TF Serving clients send it.
                signature_name: "serving_default".into(),
                version_choice: Some(model_spec::VersionChoice::Version(version)),
            }),
            inputs,
            ..Default::default()
        };
        let answer = client.predict(request).await.unwrap().into_inner();
        for (key, tensor) in case["outputs"].as_object().unwrap() {
            let served = &answer.outputs[&rename(key)];
            let got: Vec<f32> = bytemuck::pod_collect_to_vec(&served.tensor_content);
            assert_eq!(
                common::dims_of(served),
                dims(&tensor["shape"]),
                "{model}/{version} {name} {key}"
            );
            assert_close(
                &got,
                &f32s(&tensor["data"]),
                &format!("{model}/{version} {name} {key}"),
            );
        }
    }
}

/// A TF Serving repository pointed at unchanged: both SavedModel versions serve, named by the
/// `serving_default` signature's keys, with TensorFlow's answers; version 2 was warmed up with
/// the two requests of its warm-up file before it served (and version 1, whose batch dimension
/// is dynamic, with none). The TFLite model serves under OpenVINO's tensor names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_models_and_tflite_serve_as_tensorflow_computes_them() {
    let all = format!(r#""model_version_policy": {{"all": {{}}}}, {F32}"#);
    let repo = TfRepo::new(&[
        ("scorer", &tf_fixtures().join("scorer"), &all),
        ("lite", &tf_fixtures().join("lite"), F32),
    ]);
    let server = repo.start();
    wait_state(&server, "scorer", 2, AVAILABLE, DEADLINE).await;
    let count = "vinoserve_warmup_inferences_total";
    let v2 = server
        .metric(count, &[("name", "scorer"), ("version", "2")])
        .await;
    let v1 = server
        .metric(count, &[("name", "scorer"), ("version", "1")])
        .await;
    assert_eq!(v2, 2.0, "version 2 replays its two warm-up requests");
    assert_eq!(v1, 0.0, "nothing is invented for a dynamic batch");

    for version in [1, 2] {
        check_cases(&server, "scorer", version, &|key| key.to_string()).await;
    }
    let reference = reference();
    let tensors = &reference["models"]["lite"]["1"]["tflite_tensors"]["signature_serving_default"];
    let lite_name = |key: &str| {
        let inputs = tensors["inputs"][key].as_str();
        inputs
            .or_else(|| tensors["outputs"][key].as_str())
            .unwrap()
            .to_string()
    };
    check_cases(&server, "lite", 1, &lite_name).await;
}

/// What cannot load says why, and the rest serves: a folder holding no model names what it
/// found and what is accepted; a warm-up file that does not parse fails its version's load,
/// naming the record; a SavedModel whose weights are still being copied waits, then loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_load_says_why_and_half_copies_wait() {
    let staging = tempfile::tempdir().unwrap();
    // not_a_model/1 holds a PyTorch file; bad_warmup/2 a truncated warm-up file.
    let not_a_model = staging.path().join("not_a_model");
    std::fs::create_dir_all(not_a_model.join("1")).unwrap();
    std::fs::write(not_a_model.join("1/model.pt"), b"not for OpenVINO").unwrap();
    let bad_warmup = staging.path().join("bad_warmup");
    copy_dir(&tf_fixtures().join("scorer/2"), &bad_warmup.join("2"));
    let warmup = bad_warmup.join("2/assets.extra/tf_serving_warmup_requests");
    let bytes = std::fs::read(&warmup).unwrap();
    std::fs::write(&warmup, &bytes[..bytes.len() - 10]).unwrap();

    let repo = TfRepo::new(&[
        ("not_a_model", &not_a_model, F32),
        ("bad_warmup", &bad_warmup, F32),
        ("scorer", &tf_fixtures().join("scorer"), F32),
    ]);
    let config = repo.dir.path().join("config.json").display().to_string();
    let server = Server::start(&["--config_path", &config, "--file_settle_ms", "200"]);
    let deadline = std::time::Instant::now() + DEADLINE;
    let summary = loop {
        let line = server.next_line(deadline).expect("the start-up summary");
        if line.starts_with("vinoserve: models loaded") {
            break line;
        }
    };
    assert!(
        summary.contains("\"bad_warmup\"") && summary.contains("\"not_a_model\""),
        "the start-up summary counts both as failed: {summary}"
    );
    let error_of = |model: &'static str, version: i64| {
        let server = &server;
        async move {
            let mut client = server.model_client().await;
            let request = vinoserve::proto::tensorflow::serving::GetModelStatusRequest {
                model_spec: common::spec(model, Some(version)),
            };
            let status = client.get_model_status(request).await.unwrap().into_inner();
            let version = &status.model_version_status[0];
            (
                version.state,
                version.status.as_ref().unwrap().error_message.clone(),
            )
        }
    };
    let (state, error) = error_of("not_a_model", 1).await;
    assert_eq!(state, END, "{error}");
    assert!(
        error.contains("found: model.pt") && error.contains("TensorFlow SavedModel"),
        "{error}"
    );
    let (state, error) = error_of("bad_warmup", 2).await;
    assert_eq!(state, END, "{error}");
    assert!(
        error.contains("tf_serving_warmup_requests: record 1"),
        "{error}"
    );
    wait_state(&server, "scorer", 2, AVAILABLE, DEADLINE).await;

    // A third version whose variables shard is not there yet waits (START), then loads.
    let scorer = repo.dir.path().join("scorer");
    let copying = scorer.join("3");
    copy_dir(&tf_fixtures().join("scorer/1"), &copying);
    let shard = copying.join("variables/variables.data-00000-of-00001");
    let shard_bytes = std::fs::read(&shard).unwrap();
    std::fs::remove_file(&shard).unwrap();
    wait_state(&server, "scorer", 3, START, DEADLINE).await;
    server.wait_polls(2).await;
    let (state, waiting) = error_of("scorer", 3).await;
    assert_eq!(state, START, "{waiting}");
    assert!(
        waiting.contains("variables.index but no variables.data"),
        "{waiting}"
    );
    std::fs::write(&shard, shard_bytes).unwrap();
    wait_state(&server, "scorer", 3, AVAILABLE, DEADLINE).await;
}
