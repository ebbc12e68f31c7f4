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
use vinoserve::runtime::fake::FakeBackend;

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

impl InProcess {
    /// Serves `models` (name, versions on disk) with the server's flags plus `extra`, and
    /// returns once the initial load has finished.
    pub fn start(models: &[(&str, &[u64])], extra: &[&str]) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = Vec::new();
        for (name, versions) in models {
            let base = dir.path().join("models").join(name);
            for &v in *versions {
                fake_version(&base, v);
            }
            entries.push(format!(
                r#"{{"config": {{"name": "{name}", "base_path": "{}"}}}}"#,
                base.display()
            ));
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
        let backend = FakeBackend::default();
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
