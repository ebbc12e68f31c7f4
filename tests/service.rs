//! Running as a systemd service: the sd_notify conversation with a real notify socket, the
//! installer under DESTDIR (and the unit file through `systemd-analyze verify`), and
//! `vinoserve check`.

mod common;

use common::{binary, copy_dir, fixtures, Server};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// CLOCK_MONOTONIC in µs, the clock of `MONOTONIC_USEC=`.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec passed, which outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// What systemd would receive: the datagrams sent to a socket the test binds, in order.
struct NotifySocket {
    path: PathBuf,
    messages: mpsc::Receiver<(Instant, String)>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if tx.send((Instant::now(), text)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => panic!("notify socket: {e}"),
                }
            }
        });
        NotifySocket {
            path,
            messages,
            _dir: dir,
        }
    }
}

/// The conversation so far: every message with its arrival time.
struct Transcript {
    start: Instant,
    messages: Vec<(Instant, String)>,
}

impl Transcript {
    /// Receives until a message (not a watchdog ping) satisfies `want`; returns it.
    fn until(&mut self, socket: &NotifySocket, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, message) = socket
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what}; got:\n{}", self.render()));
            self.messages.push((at, message.clone()));
            if message != "WATCHDOG=1" && want(&message) {
                return message;
            }
        }
    }

    /// Receives until `count` watchdog pings arrived after `from`.
    fn until_pings(&mut self, socket: &NotifySocket, from: Instant, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.pings_between(from, Instant::now()) < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = socket.messages.recv_timeout(left).unwrap_or_else(|_| {
                panic!("fewer than {count} watchdog pings; got:\n{}", self.render())
            });
            self.messages.push(message);
        }
    }

    /// Takes whatever arrives within `wait`.
    fn drain(&mut self, socket: &NotifySocket, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Ok(m) = socket
            .messages
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.messages.push(m);
        }
    }

    fn pings_between(&self, from: Instant, to: Instant) -> usize {
        self.messages
            .iter()
            .filter(|(at, m)| m == "WATCHDOG=1" && *at >= from && *at <= to)
            .count()
    }

    /// One line per message, `\n` inside a datagram shown as ` | `; runs of pings folded.
    fn render(&self) -> String {
        let mut out = String::new();
        let mut pings = 0;
        for (at, m) in &self.messages {
            if m == "WATCHDOG=1" {
                pings += 1;
                continue;
            }
            if pings > 0 {
                out.push_str(&format!("           WATCHDOG=1 ×{pings}\n"));
                pings = 0;
            }
            let ms = at.duration_since(self.start).as_millis();
            out.push_str(&format!("{ms:>7} ms  {}\n", m.replace('\n', " | ")));
        }
        if pings > 0 {
            out.push_str(&format!("           WATCHDOG=1 ×{pings}\n"));
        }
        out
    }
}

fn config_json(models: &[&str]) -> String {
    let entries: Vec<String> = models
        .iter()
        .map(|m| format!(r#"{{"config": {{"name": "{m}", "base_path": "models/{m}"}}}}"#))
        .collect();
    format!(r#"{{"model_config_list": [{}]}}"#, entries.join(","))
}

/// The whole sd_notify life cycle of the real binary against a socket this test listens on:
/// STATUS… → READY=1 → (SIGHUP) RELOADING=1 + MONOTONIC_USEC … READY=1 → WATCHDOG=1 pings
/// (WATCHDOG_USEC small) → (SIGHUP, invalid config) RELOADING=1 → READY=1 "rejected" →
/// (SIGTERM) STOPPING=1, exit 0.
#[test]
fn sd_notify_conversation_with_systemd() {
    let socket = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    for model in ["add", "identity"] {
        copy_dir(
            &fixtures().join(model),
            &dir.path().join("models").join(model),
        );
    }
    let config = dir.path().join("config.json");
    std::fs::write(&config, config_json(&["add"])).unwrap();
    let mut transcript = Transcript {
        start: Instant::now(),
        messages: Vec::new(),
    };
    let started_mono = monotonic_usec();
    let mut server = Server::start_with_env(
        &["--config_path", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", socket.path.to_str().unwrap()),
            // 200 ms: pings every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    let ready = transcript.until(&socket, "READY=1", |m| m.starts_with("READY=1"));
    assert_eq!(
        ready,
        "READY=1\nSTATUS=serving 1 model, 1 version AVAILABLE; failed: none"
    );
    let before_ready: Vec<&String> = transcript.messages.iter().map(|(_, m)| m).collect();
    assert_eq!(
        before_ready
            .iter()
            .find(|m| m.as_str() != "WATCHDOG=1")
            .map(|m| m.as_str()),
        Some("STATUS=loading 1 configured models"),
        "the first message announces the load:\n{}",
        transcript.render()
    );

    // Reload with a second model: RELOADING=1 (stamped with our monotonic clock), progress,
    // READY=1 once the new model serves.
    std::fs::write(&config, config_json(&["add", "identity"])).unwrap();
    let before_hup = monotonic_usec();
    server.signal("HUP");
    let reloading = transcript.until(&socket, "RELOADING=1", |m| m.starts_with("RELOADING=1"));
    let fields: Vec<&str> = reloading.split('\n').collect();
    assert_eq!(fields[0], "RELOADING=1");
    let stamp: u64 = fields[1]
        .strip_prefix("MONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        before_hup <= stamp && stamp <= monotonic_usec() && stamp > started_mono,
        "MONOTONIC_USEC={stamp} is CLOCK_MONOTONIC at the reload"
    );
    assert_eq!(fields[2], "STATUS=reloading config");
    let reloaded = transcript.until(&socket, "READY=1 after the reload", |m| {
        m.starts_with("READY=1")
    });
    assert_eq!(
        reloaded,
        "READY=1\nSTATUS=serving 2 models, 2 versions AVAILABLE; failed: none"
    );

    // The watchdog keeps pinging while everything is healthy: four more pings arrive (counted,
    // not timed: a busy machine may space them out).
    let from = Instant::now();
    transcript.until_pings(&socket, from, 4);

    // A reload of an invalid file changes nothing, and still ends with READY=1, saying so.
    std::fs::write(&config, "{\"model_config_list\": [").unwrap();
    server.signal("HUP");
    transcript.until(&socket, "RELOADING=1", |m| m.starts_with("RELOADING=1"));
    let rejected = transcript.until(&socket, "READY=1 after a rejected reload", |m| {
        m.starts_with("READY=1")
    });
    assert_eq!(
        rejected,
        "READY=1\nSTATUS=config reload rejected, see the log; \
         serving 2 models, 2 versions AVAILABLE; failed: none"
    );

    server.signal("TERM");
    let stopping = transcript.until(&socket, "STOPPING=1", |m| m.starts_with("STOPPING=1"));
    assert_eq!(
        stopping,
        "STOPPING=1\nSTATUS=SIGTERM: draining requests in flight"
    );
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    transcript.drain(&socket, Duration::from_millis(300));
    let after_stop: Vec<&String> = transcript
        .messages
        .iter()
        .map(|(_, m)| m)
        .skip_while(|m| !m.starts_with("STOPPING=1"))
        .collect();
    assert!(
        after_stop.iter().all(|m| !m.starts_with("READY=1")),
        "no READY=1 after STOPPING=1:\n{}",
        transcript.render()
    );
    eprintln!("sd_notify messages received:\n{}", transcript.render());
}

/// A run of scripts/install.sh with DESTDIR (never touches the machine).
fn install_sh(root: &Path, uninstall: bool) -> String {
    let mut cmd = Command::new(repo_root().join("scripts/install.sh"));
    if uninstall {
        cmd.arg("--uninstall");
    }
    let out = cmd
        .env("DESTDIR", root)
        .env("VINOSERVE_BIN", binary())
        .output()
        .expect("run scripts/install.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "install.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `systemd-analyze verify` on the unit, with ExecStart= pointed at a binary that exists here
/// (verify insists on it, and the unit names the installed path). Skipped, saying so, where
/// systemd-analyze is not installed (scripts/setup.sh installs it when apt has it).
fn verify_unit(unit: &Path) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-analyze verify (systemd-analyze is not installed)");
        return;
    }
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/vinoserve "));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vinoserve.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/vinoserve", binary())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    eprintln!("systemd-analyze verify: clean");
}

/// The installed binary loads the installed OpenVINO through the unit's environment, and
/// serves a model with it.
fn installed_binary_uses_installed_runtime(root: &Path, unit: &str) {
    let lib = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=VINOSERVE_OPENVINO_LIB="))
        .expect("the unit sets VINOSERVE_OPENVINO_LIB");
    let lib = root.join(lib.trim_start_matches('/'));
    let models = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("add"), &models.path().join("models/add"));
    let config = models.path().join("config.json");
    std::fs::write(&config, config_json(&["add"])).unwrap();
    let mut child = Command::new(root.join("usr/local/bin/vinoserve"))
        .args(["--config_path", config.to_str().unwrap()])
        .args(["--port", "0", "--rest_port", "0"])
        .args([
            "--grpc_bind_address",
            "127.0.0.1",
            "--rest_bind_address",
            "127.0.0.1",
        ])
        .env("VINOSERVE_OPENVINO_LIB", &lib)
        .env("VINOSERVE_LOG_LEVEL", "INFO")
        // Nothing else may lead it to the repository's own runtime.
        .env_remove("OPENVINO_LIB_DIR")
        .env_remove("LD_LIBRARY_PATH")
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut loaded_from, mut served) = (None, false);
    while !(served && loaded_from.is_some()) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the installed binary starts and loads the model");
        if line.contains("OpenVINO loaded") {
            loaded_from = Some(line.clone());
        }
        served |= line.starts_with("vinoserve: models loaded (1 configured, failures in: [])");
    }
    let _ = child.kill();
    let _ = child.wait();
    let loaded_from = loaded_from.unwrap();
    assert!(
        loaded_from.contains(&format!("library={}", lib.display())),
        "{loaded_from}"
    );
}

#[test]
fn install_under_destdir_then_uninstall() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let said = install_sh(root, false);
    assert!(said.contains("not creating user vinoserve"), "{said}");

    let bin = root.join("usr/local/bin/vinoserve");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let unit_path = root.join("etc/systemd/system/vinoserve.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(repo_root().join("config/vinoserve.service")).unwrap()
    );
    assert!(root.join("var/lib/vinoserve/models/resnet").is_dir());
    let config = root.join("etc/vinoserve/config.json");
    let topology = root.join("etc/vinoserve/topology.toml");

    // The examples pass `vinoserve check` once the model has a version, with the folder
    // moved under the test root.
    let local = std::fs::read_to_string(&config).unwrap().replace(
        "/var/lib/vinoserve",
        root.join("var/lib/vinoserve").to_str().unwrap(),
    );
    let local_config = root.join("local.json");
    std::fs::write(&local_config, local).unwrap();
    let check = |expect_ok: bool| {
        let out = Command::new(&bin)
            .args(["check", "--config", local_config.to_str().unwrap()])
            .args(["--topology", topology.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.success(), expect_ok, "{text}");
        text
    };
    let text = check(false);
    assert!(text.contains("model resnet: no version folder"), "{text}");
    copy_dir(
        &fixtures().join("add/1"),
        &root.join("var/lib/vinoserve/models/resnet/1"),
    );
    let text = check(true);
    assert!(text.starts_with("vinoserve check: OK"), "{text}");

    installed_binary_uses_installed_runtime(root, &unit);
    verify_unit(&unit_path);

    // A second install keeps the operator's config and topology, replaces the unit.
    std::fs::write(&config, "{\"model_config_list\": []}").unwrap();
    std::fs::write(&topology, "# mine\n").unwrap();
    std::fs::write(&unit_path, "stale").unwrap();
    let said = install_sh(root, false);
    assert!(said.contains("kept existing"), "{said}");
    assert!(
        said.contains("OpenVINO 2026.4.1 already installed"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "{\"model_config_list\": []}"
    );
    assert_eq!(std::fs::read_to_string(&topology).unwrap(), "# mine\n");
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), unit);

    let said = install_sh(root, true);
    assert!(said.contains("kept"), "{said}");
    assert!(!bin.exists());
    assert!(!unit_path.exists());
    assert!(!root.join("usr/local/lib/vinoserve").exists());
    assert!(config.is_file() && topology.is_file(), "config stays");
    assert!(
        root.join("var/lib/vinoserve/models/resnet/1").is_dir(),
        "models stay"
    );
}

#[test]
fn check_exit_status_and_output() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("add"), &dir.path().join("models/add"));
    let config = dir.path().join("config.json");
    std::fs::write(&config, config_json(&["add"])).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(binary())
            .arg("check")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("vinoserve check: OK\n"), "{text}");
    assert!(
        text.contains("model add: ") && text.contains("serves 2"),
        "{text}"
    );

    // Truncate the served version's weights (4 bytes, one constant) and name a topology that
    // cannot fit: two problems, each with its location, then the count.
    let bin = dir.path().join("models/add/2/model.bin");
    std::fs::write(&bin, [0u8; 2]).unwrap();
    let topology = dir.path().join("t.toml");
    std::fs::write(&topology, "[models.add]\ncores = 100000\n").unwrap();
    let (code, text) = run(&[
        "--config",
        config.to_str().unwrap(),
        "--topology",
        topology.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "{}: model add version 2: {} has 2 of the 4 bytes",
            dir.path().join("models/add/2").display(),
            bin.display()
        )),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}: does not fit this machine",
            topology.display()
        )),
        "{text}"
    );
    assert_eq!(lines[2], "vinoserve check: 2 problems");
}

/// A port that is already taken: exit code 2 (invalid configuration) and one line naming the
/// address, before anything starts; no panic.
#[test]
fn a_port_already_in_use_is_a_configuration_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let repo = common::Repo::new(&[("add", "")]);
    let config = repo.config_path().display().to_string();
    for (flag, other, address_flag, what) in [
        ("--port", "--rest_port", "--grpc_bind_address", "gRPC"),
        ("--rest_port", "--port", "--rest_bind_address", "REST"),
    ] {
        let output = Command::new(common::binary())
            .args(["--config_path", &config, flag, &port, other, "0"])
            .args([address_flag, "127.0.0.1"])
            .env("VINOSERVE_LOG_LEVEL", "WARNING")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(
            stderr.trim(),
            format!(
                "vinoserve: invalid configuration: cannot listen for {what} on 127.0.0.1:{port}: Address already in use (os error 98)"
            )
        );
    }
}
