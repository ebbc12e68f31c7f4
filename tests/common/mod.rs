//! Test harness: the real `vinoserve` binary on 127.0.0.1 with ephemeral ports, pointed at a
//! temporary model repository built from the committed fixtures.
#![allow(dead_code)]

pub mod in_process;
pub mod load;
pub mod requests;
pub mod rest;
pub mod values;

/// Every test server listens on ephemeral ports of the loopback interface.
pub const LOOPBACK: [&str; 8] = [
    "--port",
    "0",
    "--rest_port",
    "0",
    "--grpc_bind_address",
    "127.0.0.1",
    "--rest_bind_address",
    "127.0.0.1",
];
pub mod metrics_text;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use vinoserve::proto::tensorflow::serving::model_service_client::ModelServiceClient;
use vinoserve::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use vinoserve::proto::tensorflow::serving::{model_spec, GetModelStatusRequest, ModelSpec};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The committed fixtures the protocol tests serve, real (`Repo::protocol_fixtures`) or on the
/// fake backend (`in_process::protocol_fixtures`).
pub const PROTOCOL_FIXTURES: [&str; 8] = [
    "identity", "add", "two_io", "int64", "half", "uint8", "dynamic", "broken",
];

/// `add`'s config for the protocol tests: both versions served.
pub const ADD_ALL_VERSIONS: &str = r#""model_version_policy": {"all": {}}"#;
/// `add`'s config for the TFS REST tests: both versions, version 1 labelled `stable`.
pub const ADD_WITH_LABEL: &str =
    r#""model_version_policy": {"all": {}}, "version_labels": {"stable": 1}"#;

/// A temporary repository with the named fixture models and a config.json listing them.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// `models`: (fixture name, extra config JSON fields such as `"nireq": 2`).
    pub fn new(models: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = Vec::new();
        for (name, extra) in models {
            copy_dir(
                &fixtures().join(name),
                &dir.path().join("models").join(name),
            );
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(", {extra}")
            };
            entries.push(format!(
                r#"{{"config": {{"name": "{name}", "base_path": "models/{name}"{extra}}}}}"#
            ));
        }
        let config = format!(r#"{{"model_config_list": [{}]}}"#, entries.join(",\n"));
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        Repo { dir }
    }

    /// [`PROTOCOL_FIXTURES`] but those `without` names, `add` with `add_config`.
    pub fn protocol_fixtures(add_config: &str, without: &[&str]) -> Repo {
        let models: Vec<(&str, &str)> = PROTOCOL_FIXTURES
            .into_iter()
            .filter(|name| !without.contains(name))
            .map(|name| (name, if name == "add" { add_config } else { "" }))
            .collect();
        Repo::new(&models)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("models").join(name)
    }
}

/// The `n`th input of load-test client `client` for the `[1,10]` f32 fixtures: exact in f32 (so
/// are `x + 1` and `x + 2`), and different per client and request so answers cannot be mixed up.
pub fn probe_input(n: u32, client: usize) -> Vec<f32> {
    (0..10)
        .map(|i| (n % 512) as f32 + i as f32 * 0.25 + client as f32 * 0.0625)
        .collect()
}

/// A TFS Predict of `[1, width]` f32 zeros for input `x` of `model` (the `add`/`identity`
/// fixtures take width 10).
pub fn zeros_request(
    model: &str,
    width: usize,
) -> vinoserve::proto::tensorflow::serving::PredictRequest {
    use vinoserve::proto::tensorflow::DataType;
    vinoserve::proto::tensorflow::serving::PredictRequest {
        model_spec: spec(model, None),
        inputs: [(
            "x".to_string(),
            requests::tensor(DataType::DtFloat, &[1, width as i64], vec![0u8; width * 4]),
        )]
        .into(),
        ..Default::default()
    }
}

/// The dimensions of a TensorProto's shape.
pub fn dims_of(tensor: &vinoserve::proto::tensorflow::TensorProto) -> Vec<i64> {
    tensor
        .tensor_shape
        .as_ref()
        .map(|shape| shape.dim.iter().map(|d| d.size).collect())
        .unwrap_or_default()
}

/// y = x · W with x [rows, width] and random f32 weights W [width, width] (fixed seed), written
/// by OpenVINO's Python API: a model whose size and work per inference the test chooses.
pub fn make_matmul_model(dir: &Path, rows: usize, width: usize) {
    let script = r#"
import sys, numpy as np, openvino as ov
from openvino import opset13 as ops
rows, width = int(sys.argv[2]), int(sys.argv[3])
x = ops.parameter([rows, width], np.float32, name="x"); x.output(0).set_names({"x"})
w = ops.constant((np.random.default_rng(0).standard_normal((width, width)) * 0.01).astype(np.float32))
y = ops.matmul(x, w, False, False); y.output(0).set_names({"y"})
ov.save_model(ov.Model([y], [x], "matmul"), sys.argv[1] + "/model.xml", compress_to_fp16=False)
"#;
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("python3")
        .args(["-c", script, &dir.display().to_string()])
        .args([rows.to_string(), width.to_string()])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "python3 with openvino (source scripts/env.sh)"
    );
}

pub struct Server {
    pub child: Child,
    pub grpc_addr: String,
    pub rest_addr: String,
    lines: mpsc::Receiver<String>,
    /// The server's log (stderr). Many tests provoke errors on purpose (a broken model, a killed
    /// worker, an invalid config), so the log is kept and shown only when the test fails,
    /// instead of interleaving expected ERROR lines with the results of passing tests.
    log: Arc<Mutex<Vec<String>>>,
    log_reader: Option<std::thread::JoinHandle<()>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_vinoserve")
}

impl Server {
    /// Starts the binary with `--port 0 --rest_port 0` plus `args`; returns once both ports are bound.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// [`Server::start`] with extra environment variables (e.g. systemd's `NOTIFY_SOCKET`).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(Command::new(binary()), args, env)
    }

    /// [`Server::start`] so that file permissions apply to the server even when the tests run
    /// as root (who reads a mode-000 file): as root, without the capabilities that bypass them
    /// (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), through util-linux's `setpriv`. Same user, so
    /// the binary, the runtime and the test's folders stay reachable wherever the clone is.
    pub fn start_unprivileged(args: &[&str]) -> Server {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            let wrapper = [
                "setpriv",
                "--bounding-set",
                "-dac_override,-dac_read_search",
                "--",
            ];
            Server::start_wrapped(&wrapper, args)
        } else {
            Server::spawn(Command::new(binary()), args, &[])
        }
    }

    /// [`Server::start`] under a wrapper command, e.g. `["prlimit", "--nofile=256", "--"]`.
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Server {
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(binary());
        Server::spawn(command, args, &[])
    }

    fn spawn(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = command
            .args(LOOPBACK)
            .args(args)
            .env("VINOSERVE_LOG_LEVEL", "WARNING")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vinoserve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_lines = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log_lines.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            grpc_addr: String::new(),
            rest_addr: String::new(),
            lines,
            log,
            log_reader: Some(log_reader),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.grpc_addr.is_empty() || server.rest_addr.is_empty() {
            let line = server
                .next_line(deadline)
                .expect("server printed its addresses");
            if let Some(a) = line.strip_prefix("vinoserve: gRPC listening on ") {
                server.grpc_addr = a.trim().to_string();
            } else if let Some(a) = line.strip_prefix("vinoserve: REST listening on ") {
                server.rest_addr = a.trim().to_string();
            }
        }
        server
    }

    /// [`Server::with_config`] with another copy of the binary (e.g. one the test then deletes).
    pub fn with_config_from(binary: &Path, repo: &Repo, extra: &[&str]) -> Server {
        let config = repo.config_path().display().to_string();
        let mut args = vec!["--config_path", config.as_str()];
        args.extend_from_slice(extra);
        Server::spawn(Command::new(binary), &args, &[])
    }

    pub fn with_config(repo: &Repo, extra: &[&str]) -> Server {
        let config = repo.config_path().display().to_string();
        let mut args = vec!["--config_path", config.as_str()];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    pub fn next_line(&self, deadline: Instant) -> Option<String> {
        self.lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// Waits for the "models loaded" line (initial load finished, failures included).
    pub fn wait_loaded(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = self
                .next_line(deadline)
                .expect("server finished loading models");
            if line.starts_with("vinoserve: models loaded") {
                return;
            }
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn rest_url(&self, path: &str) -> String {
        format!("http://{}{}", self.rest_addr, path)
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics_text(&self) -> reqwest::Result<String> {
        reqwest::get(self.rest_url("/metrics")).await?.text().await
    }

    /// The sum of the samples of metric `name` whose labels include `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics_text().await.expect("GET /metrics");
        metrics_text::value(&metrics_text::parse(&text), name, labels)
    }

    /// Waits until the server has started `n` more periodic rescans (of every model folder and
    /// the config file) than when called, and the one before the last has had time to finish:
    /// how a test proves that something did *not* happen on the next poll, without guessing how
    /// long a poll takes on this machine.
    pub async fn wait_polls(&self, n: u32) {
        let polls = || self.metric("vinoserve_repository_scans_total", &[("trigger", "poll")]);
        let target = polls().await + f64::from(n);
        eventually(
            &format!("{n} periodic rescans"),
            Duration::from_secs(120),
            async || (polls().await >= target).then_some(()),
        )
        .await
    }

    pub async fn predict_client(&self) -> PredictionServiceClient<Channel> {
        PredictionServiceClient::connect(self.grpc_url())
            .await
            .unwrap()
            .max_decoding_message_size(1 << 30)
            .max_encoding_message_size(1 << 30)
    }

    pub async fn model_client(&self) -> ModelServiceClient<Channel> {
        ModelServiceClient::connect(self.grpc_url()).await.unwrap()
    }

    /// Sends a signal (e.g. "TERM") to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipe closes with the process (placement workers die with it), so this ends.
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            // Captured by the test harness and printed with the failure.
            eprintln!(
                "--- vinoserve's log (pid {}) ---\n{}\n--- end of log ---",
                self.child.id(),
                self.log_text()
            );
        }
    }
}

pub fn spec(name: &str, version: Option<i64>) -> Option<ModelSpec> {
    Some(ModelSpec {
        name: name.to_string(),
        signature_name: String::new(),
        version_choice: version.map(model_spec::VersionChoice::Version),
    })
}

/// A gRPC error with `code` whose message contains `part`.
pub fn assert_status(status: &tonic::Status, code: tonic::Code, part: &str) {
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(part),
        "{:?} does not contain {part:?}",
        status.message()
    );
}

/// Polls `probe` every 20 ms until it gives a value; fails the test after `timeout`, naming `what`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until GetModelStatus reports `version` of `model` in `state` (TFS state numbers).
pub async fn wait_state(server: &Server, model: &str, version: i64, state: i32, timeout: Duration) {
    use vinoserve::proto::tensorflow::serving::model_version_status::State;
    let name = State::try_from(state).map_or("?", |s| s.as_str_name());
    let what = format!("{model} version {version} {name}");
    let mut client = server.model_client().await;
    eventually(&what, timeout, async || {
        let request = GetModelStatusRequest {
            model_spec: spec(model, None),
        };
        let statuses = client.get_model_status(request).await.ok()?.into_inner();
        statuses
            .model_version_status
            .iter()
            .any(|s| s.version == version && s.state == state)
            .then_some(())
    })
    .await
}

/// A model whose only version failed to load, as GetModelStatus at `grpc_url` reports it:
/// asserts version 1 in END (50) with an error code; returns the error message.
pub async fn load_error(grpc_url: String, model: &str) -> String {
    let mut client = ModelServiceClient::connect(grpc_url).await.unwrap();
    let request = GetModelStatusRequest {
        model_spec: spec(model, None),
    };
    let statuses = client.get_model_status(request).await.unwrap().into_inner();
    let status = &statuses.model_version_status[0];
    assert_eq!((status.version, status.state), (1, 50), "{statuses:?}");
    let error = status.status.as_ref().unwrap();
    assert_ne!(error.error_code, 0);
    error.error_message.clone()
}

/// GetModelMetadata's `signature_def` of `model`: its type URL and the decoded map.
pub async fn signature_def(
    client: &mut PredictionServiceClient<Channel>,
    model: &str,
) -> (
    String,
    vinoserve::proto::tensorflow::serving::SignatureDefMap,
) {
    use prost::Message;
    let request = vinoserve::proto::tensorflow::serving::GetModelMetadataRequest {
        model_spec: spec(model, None),
        metadata_field: vec!["signature_def".into()],
    };
    let meta = client
        .get_model_metadata(request)
        .await
        .unwrap()
        .into_inner();
    let any = &meta.metadata["signature_def"];
    let map = Message::decode(any.value.as_slice()).unwrap();
    (any.type_url.clone(), map)
}

/// States (version, state) of a model as GetModelStatus reports them.
pub async fn statuses(server: &Server, model: &str) -> Vec<(i64, i32)> {
    let mut client = server.model_client().await;
    let response = client
        .get_model_status(GetModelStatusRequest {
            model_spec: spec(model, None),
        })
        .await;
    match response {
        Ok(r) => r
            .into_inner()
            .model_version_status
            .iter()
            .map(|s| (s.version, s.state))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Reference outputs: the same model file run directly through the OpenVINO crate.
pub mod reference {
    use openvino::{Core, DeviceType, ElementType, Shape, Tensor};
    use std::path::Path;
    use std::sync::Once;

    static LOAD: Once = Once::new();

    pub fn load_library() {
        LOAD.call_once(|| {
            vinoserve::runtime::openvino::library::load(None)
                .expect("OpenVINO runtime (run scripts/setup.sh)");
        });
    }

    /// Runs `xml` on named raw inputs; returns each named output's raw bytes.
    pub fn infer(
        xml: &Path,
        inputs: &[(&str, ElementType, Vec<i64>, Vec<u8>)],
        outputs: &[&str],
    ) -> Vec<Vec<u8>> {
        load_library();
        let mut core = Core::new().unwrap();
        let bin = xml.with_extension("bin");
        let model = core
            .read_model_from_file(&xml.display().to_string(), &bin.display().to_string())
            .unwrap();
        let mut compiled = core.compile_model(&model, DeviceType::CPU).unwrap();
        let mut request = compiled.create_infer_request().unwrap();
        for (name, element, shape, bytes) in inputs {
            let mut tensor = Tensor::new(*element, &Shape::new(shape).unwrap()).unwrap();
            tensor.get_raw_data_mut().unwrap().copy_from_slice(bytes);
            request.set_tensor(name, &tensor).unwrap();
        }
        request.infer().unwrap();
        outputs
            .iter()
            .map(|name| {
                request
                    .get_tensor(name)
                    .unwrap()
                    .get_raw_data()
                    .unwrap()
                    .to_vec()
            })
            .collect()
    }
}
