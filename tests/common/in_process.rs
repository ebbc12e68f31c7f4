//! The server in the test's own process on the fake backend (`y = x + version`, `x: FP32 [1]`):
//! no OpenVINO and no child process, so protocol tests of the serving layer start in
//! milliseconds. What needs the real runtime or the binary (signals, placement, OpenVINO
//! results) keeps using `Server`.
//!
//! Dropping it drains the server like a SIGTERM, blocking the dropping thread: use it from a
//! multi-threaded tokio test, so the test's own clients keep running and close their
//! connections meanwhile.

use std::net::SocketAddr;
use std::path::Path;
use vinoserve::runtime::fake::{fake_signature, FakeBackend};
use vinoserve::tensor::{DataType, Signature, TensorSpec};

pub struct InProcess {
    pub grpc_addr: SocketAddr,
    pub rest_addr: SocketAddr,
    pub backend: FakeBackend,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A version folder the model actor accepts (the fake backend reads nothing in it).
pub fn fake_version(base: &Path, version: u64) {
    let dir = base.join(version.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"").unwrap();
}

/// A model of the fake backend: its versions on disk, its config entry and its signature.
#[derive(Clone)]
pub struct FakeModel {
    pub name: &'static str,
    pub versions: Vec<u64>,
    /// Extra fields of its config.json entry, e.g. `"model_version_policy": {"all": {}}`.
    pub config: &'static str,
    pub signature: Signature,
    /// Its versions fail to load (a `FAIL` file in each folder).
    pub broken: bool,
}

impl FakeModel {
    /// `y = x + version` on `x: FP32 [1]`.
    pub fn new(name: &'static str, versions: &[u64]) -> FakeModel {
        FakeModel {
            name,
            versions: versions.to_vec(),
            config: "",
            signature: fake_signature(),
            broken: false,
        }
    }

    pub fn config(mut self, extra: &'static str) -> FakeModel {
        self.config = extra;
        self
    }

    /// The tensors it takes and answers: (name, type, shape; -1 for a dynamic dimension).
    pub fn io(
        mut self,
        inputs: &[(&str, DataType, &[i64])],
        outputs: &[(&str, DataType, &[i64])],
    ) -> FakeModel {
        let specs = |tensors: &[(&str, DataType, &[i64])]| {
            tensors
                .iter()
                .map(|(name, dtype, shape)| TensorSpec {
                    name: name.to_string(),
                    dtype: *dtype,
                    shape: shape.to_vec(),
                })
                .collect()
        };
        self.signature = Signature {
            inputs: specs(inputs),
            outputs: specs(outputs),
        };
        self
    }

    pub fn broken(mut self) -> FakeModel {
        self.broken = true;
        self
    }
}

/// A committed fixture (tests/fixtures/models, README.md there) as the fake backend serves it:
/// the same name, versions, tensor names, types and shapes; values `x + version` for FP32 and
/// as sent otherwise. For what the serving layer does with a signature: errors, metadata.
pub fn fixture(name: &'static str) -> FakeModel {
    use DataType::{F16, F32, I64, U8};
    let same = |dtype: DataType, shape: &'static [i64]| {
        FakeModel::new(name, &[1]).io(&[("x", dtype, shape)], &[("y", dtype, shape)])
    };
    match name {
        "identity" => same(F32, &[1, 10]),
        "add" => FakeModel {
            versions: vec![1, 2],
            ..same(F32, &[1, 10])
        },
        "two_io" => FakeModel::new(name, &[1]).io(
            &[("a", F32, &[1, 4]), ("b", F32, &[1, 4])],
            &[("sum", F32, &[1, 4]), ("product", F32, &[1, 4])],
        ),
        "int64" => same(I64, &[1, 5]),
        "half" => same(F16, &[1, 4]),
        "uint8" => same(U8, &[1, 6]),
        "dynamic" => same(F32, &[-1, 8]),
        "broken" => FakeModel::new(name, &[1]).broken(),
        other => panic!("no fixture named {other}"),
    }
}

/// [`super::PROTOCOL_FIXTURES`] but those `without` names, `add` with `add_config`.
pub fn protocol_fixtures(add_config: &'static str, without: &[&str]) -> Vec<FakeModel> {
    super::PROTOCOL_FIXTURES
        .into_iter()
        .filter(|name| !without.contains(name))
        .map(|name| fixture(name).config(if name == "add" { add_config } else { "" }))
        .collect()
}

impl InProcess {
    /// Serves `models` (name, versions on disk) with the server's flags plus `extra`, and
    /// returns once the initial load has finished.
    pub fn start(models: &[(&'static str, &[u64])], extra: &[&str]) -> InProcess {
        let models: Vec<FakeModel> = models
            .iter()
            .map(|(name, versions)| FakeModel::new(name, versions))
            .collect();
        InProcess::serve(&models, extra)
    }

    /// [`InProcess::start`] with models of any signature, config and state.
    pub fn serve(models: &[FakeModel], extra: &[&str]) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let backend = FakeBackend::default();
        let mut entries = Vec::new();
        for model in models {
            let base = dir.path().join("models").join(model.name);
            for &v in &model.versions {
                fake_version(&base, v);
                if model.broken {
                    std::fs::write(base.join(v.to_string()).join("FAIL"), b"").unwrap();
                }
            }
            let extra = if model.config.is_empty() {
                String::new()
            } else {
                format!(", {}", model.config)
            };
            entries.push(format!(
                r#"{{"config": {{"name": "{}", "base_path": "{}"{extra}}}}}"#,
                model.name,
                base.display()
            ));
            backend
                .control
                .set_signature(model.name, model.signature.clone());
        }
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            format!(r#"{{"model_config_list": [{}]}}"#, entries.join(",")),
        )
        .unwrap();
        let mut argv = vec![
            "vinoserve".to_string(),
            "--config_path".into(),
            config.display().to_string(),
        ];
        argv.extend(super::LOOPBACK.iter().chain(extra).map(|s| s.to_string()));
        let args = <vinoserve::config::Cli as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .serve;
        let startup = vinoserve::server::Startup {
            models: args.server_config().unwrap(),
            default_batching: args.default_batching().unwrap(),
        };
        let served = backend.clone();
        let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let mut server = vinoserve::server::start(
                    args,
                    startup,
                    std::sync::Arc::new(served),
                    None,
                    vinoserve::systemd::Notifier::disabled(),
                )
                .await
                .unwrap();
                server.loaded().await;
                addrs_tx.send((server.grpc_addr, server.rest_addr)).unwrap();
                let _ = stopped.await;
                server.shutdown("end of test").await;
            })
        });
        let (grpc_addr, rest_addr) = addrs_rx
            .recv()
            .expect("the in-process server did not start");
        InProcess {
            grpc_addr,
            rest_addr,
            backend,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn rest_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.rest_addr)
    }

    /// The folder of `model`'s versions.
    pub fn model_dir(&self, model: &str) -> std::path::PathBuf {
        self.dir.path().join("models").join(model)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
