//! The clients users already have, run against the real server: KServe's SDK, tritonclient,
//! ovmsclient, the OpenVINO Model API, TF Serving's own API with TensorFlow, and real public
//! models checked against their reference runtimes. Each check is a Python script in
//! `tests/clients/`, run with a venv `scripts/test-deps.sh` makes: `.deps/clients` (the packages
//! in `tests/clients/requirements.txt`) or `.deps/tf-clients` (TensorFlow); the script exits
//! non-zero saying what differed.

mod common;

use common::{Repo, Server};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A venv's interpreter under `.deps/` (made by scripts/test-deps.sh).
fn python(venv: &str) -> PathBuf {
    let path = root().join(".deps").join(venv).join("bin/python");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test-deps.sh (scripts/test.sh does) to install the clients",
        path.display()
    );
    path
}

/// Runs `tests/clients/<script>` with `args` in the clients venv; fails the test with its
/// output if it fails.
fn run(script: &str, args: &[&str]) -> String {
    run_in("clients", script, args)
}

fn run_in(venv: &str, script: &str, args: &[&str]) -> String {
    let output = Command::new(python(venv))
        .arg(root().join("tests/clients").join(script))
        .args(args)
        // The venv's own packages only: not the project's .deps/python on PYTHONPATH.
        .env_remove("PYTHONPATH")
        .output()
        .expect("run the client script");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
    stdout
}

#[test]
fn kserve_sdk_rest_and_grpc() {
    let repo = Repo::new(&[("add", ""), ("two_io", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    run("kserve_sdk.py", &[&server.rest_addr, &server.grpc_addr]);
}

#[test]
fn tritonclient_http_and_grpc() {
    let repo = Repo::new(&[("two_io", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    run(
        "tritonclient_check.py",
        &[&server.rest_addr, &server.grpc_addr],
    );
}

#[test]
fn ovmsclient_grpc_and_rest() {
    let repo = Repo::new(&[
        ("add", r#""model_version_policy": {"all": {}}"#),
        ("two_io", ""),
    ]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    run(
        "ovmsclient_check.py",
        &[&server.rest_addr, &server.grpc_addr],
    );
}

/// The real public models `tests/clients/fetch_models.py` took from PyPI packages (ONNX with
/// dynamic dimensions and names with '/' and '.', ONNX with an int64 scalar and recurrent state,
/// TFLite, PaddlePaddle), served with no conversion step and compared with onnxruntime and
/// LiteRT on the same inputs.
#[test]
fn real_models_match_their_reference_runtimes() {
    let models = root().join(".deps/models");
    let names = ["ocr_cls", "ocr_cls_paddle", "silero_vad", "face_detection"];
    let repo = Repo::new(&[]);
    let entries: Vec<String> = names
        .iter()
        .map(|name| {
            let base = models.join(name);
            assert!(
                base.is_dir(),
                "{} is missing: run scripts/test-deps.sh",
                base.display()
            );
            format!(
                r#"{{"config": {{"name": "{name}", "base_path": "{}",
                   "plugin_config": {{"INFERENCE_PRECISION_HINT": "f32"}}}}}}"#,
                base.display()
            )
        })
        .collect();
    std::fs::write(
        repo.config_path(),
        format!(r#"{{"model_config_list": [{}]}}"#, entries.join(",")),
    )
    .unwrap();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    run(
        "real_models.py",
        &[
            &server.rest_addr,
            &server.grpc_addr,
            &models.display().to_string(),
        ],
    );
}

/// The OpenVINO Model API builds its wrapper from the served model's rt_info, as on OVMS, and
/// classifies the same as a local OpenvinoAdapter on the same IR.
#[test]
fn model_api_over_ovms_adapter_matches_the_local_adapter() {
    let repo = Repo::new(&[]);
    let models = repo.dir.path().join("models");
    run(
        "model_api_check.py",
        &["prepare", &models.display().to_string()],
    );
    std::fs::write(
        repo.config_path(),
        r#"{"model_config_list": [{"config": {"name": "classifier",
            "base_path": "models/classifier",
            "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}}}]}"#,
    )
    .unwrap();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    run(
        "model_api_check.py",
        &["check", &server.rest_addr, &models.display().to_string()],
    );
}

/// TF Serving's Python API (with TensorFlow: `tf.make_tensor_proto`, `signature_name`, the
/// SignatureDefMap in metadata) on a TF Serving repository of SavedModels, pointed at unchanged.
#[test]
fn tensorflow_serving_api_on_saved_models() {
    let repo = Repo::new(&[]);
    let fixtures = root().join("tests/fixtures/tf");
    common::copy_dir(&fixtures.join("scorer"), &repo.model_dir("scorer"));
    std::fs::write(
        repo.config_path(),
        r#"{"model_config_list": [{"config": {"name": "scorer", "base_path": "models/scorer",
            "model_version_policy": {"all": {}},
            "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}}}]}"#,
    )
    .unwrap();
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let reference = fixtures.join("reference.json").display().to_string();
    run_in(
        "tf-clients",
        "tfs_api_check.py",
        &[&server.rest_addr, &server.grpc_addr, &reference],
    );
}
