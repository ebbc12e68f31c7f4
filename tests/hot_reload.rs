//! Hot reload under load: the real binary, real OpenVINO, temporary model repositories.
//!
//! Every test starts its own server and drives continuous gRPC Predict traffic from several
//! clients — unversioned, pinned to a version, or by label — counting every response: answers
//! per answering version, failures per gRPC code, and wrong answers (each answer is checked
//! against `y = x + version` for `add`, `y = x` for `identity`). Meanwhile it changes the
//! repository the way operators do (`cp -r`, `mv`, a copy that stops half-way, `rm -rf`, a
//! corrupt version, config edits and reloads over REST, gRPC and SIGHUP) and checks that nothing
//! failed that should not have, and that the answers moved where they should.
//!
//! A request pinned to a version the policy retires is answered NOT_FOUND from the moment it is
//! retired (as TF Serving does): such clients may see their answers turn into NOT_FOUND, and
//! nothing else. Unversioned clients must never fail while some version can serve.
//!
//! The load is the shared harness (tests/common/load.rs): each answer wakes the waits on it. The
//! server's states are polled (GetModelStatus, metrics) with deadlines as fail-safes only. That
//! something does *not* happen (a half-copied folder is never loaded, an invalid config changes
//! nothing) is proven over the server's own periodic rescans (`Server::wait_polls`), not a
//! duration.

mod common;

use common::requests::tensor;
use common::values::f32_bytes;
use common::{eventually, load, Repo, Server};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;
use vinoserve::proto::tensorflow::serving::file_system_storage_path_source_config::{
    servable_version_policy::{Latest, PolicyChoice},
    ServableVersionPolicy,
};
use vinoserve::proto::tensorflow::serving::model_service_client::ModelServiceClient;
use vinoserve::proto::tensorflow::serving::model_spec::VersionChoice;
use vinoserve::proto::tensorflow::serving::model_version_status::State;
use vinoserve::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use vinoserve::proto::tensorflow::serving::{
    model_server_config, GetModelStatusRequest, ModelConfig, ModelConfigList, ModelServerConfig,
    ModelSpec, ModelVersionStatus, PredictRequest, PredictResponse, ReloadConfigRequest,
};
use vinoserve::proto::tensorflow::DataType as Tf;

const START: i32 = State::Start as i32;
const AVAILABLE: i32 = State::Available as i32;
const UNLOADING: i32 = State::Unloading as i32;
const END: i32 = State::End as i32;

/// A short settle interval for the tests that do not exercise the defaults (500 ms settle,
/// 1 s poll; `cp_r_of_a_new_version_swaps_without_a_failed_request` runs with those).
const FAST_SETTLE: &[&str] = &["--file_settle_ms", "200"];
/// How long a client waits between two requests: keeps 5–6 clients per server (and two
/// servers at once) from starving the 2 CPUs the servers load models on.
const PACE: Duration = Duration::from_millis(1);
/// Fail-safe for anything the server does on its own (loads, swaps, reloads): what the tests
/// wait for is the event; this only ends a test whose server hung, even on a busy machine.
const DEADLINE: Duration = Duration::from_secs(120);
/// Versions `scripts/make_fixtures.py --add-version` writes for these tests.
const MADE_VERSIONS: &[u64] = &[3];

fn name_of(state: i32) -> &'static str {
    State::try_from(state).map_or("?", |s| s.as_str_name())
}

// ------------------------------------------------------------------------------------ files

/// A finished `add` version folder computing `y = x + version`, written (and verified on CPU)
/// by `scripts/make_fixtures.py --add-version N` once per test run.
fn made_add_version(version: u64) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hot_reload_models");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make_fixtures.py");
        for v in MADE_VERSIONS {
            let output = Command::new("python3")
                .arg(&script)
                .args(["--add-version", &v.to_string(), "--out"])
                .arg(&root)
                .output()
                .expect("python3 runs");
            assert!(
                output.status.success(),
                "scripts/make_fixtures.py --add-version {v} failed (run scripts/setup.sh): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        root
    });
    let dir = root.join("add").join(version.to_string());
    assert!(
        dir.join("model.xml").is_file(),
        "add/{version} was not generated"
    );
    dir
}

/// Runs a command the way an operator would (`cp -r`, `mv`, `rm -rf`) on `paths`; panics if
/// it fails. `cp -r` copies file by file, so files appear in the target one after the other.
fn run(command: &str, paths: &[&Path]) {
    let mut words = command.split_whitespace();
    let status = Command::new(words.next().expect("a command"))
        .args(words)
        .args(paths)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    assert!(status.success(), "{command} {paths:?} failed: {status}");
}

/// One `model_config_list` entry with a base path relative to the config file.
fn entry(name: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(r#"{{"config": {{"name": "{name}", "base_path": "models/{name}"{extra}}}}}"#)
}

fn config_text(models: &[(&str, &str)]) -> String {
    let entries: Vec<String> = models.iter().map(|(n, e)| entry(n, e)).collect();
    format!("{{\"model_config_list\": [\n{}\n]}}\n", entries.join(",\n"))
}

/// Threads of process `pid` whose name starts with `prefix`. A version's inference workers are
/// named `ov-<first 6 letters of the model>-<index>`, one per infer request, so this counts
/// a model's nireq.
fn threads_named(pid: u32, prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .count()
}

// ------------------------------------------------------------------------------------ waiting

// ------------------------------------------------------------------------------------ status

async fn model_status(
    client: &mut ModelServiceClient<Channel>,
    model: &str,
) -> Result<Vec<ModelVersionStatus>, tonic::Status> {
    client
        .get_model_status(GetModelStatusRequest {
            model_spec: Some(ModelSpec {
                name: model.to_string(),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().model_version_status)
}

fn state_of(statuses: &[ModelVersionStatus], version: i64) -> Option<i32> {
    statuses
        .iter()
        .find(|s| s.version == version)
        .map(|s| s.state)
}

/// Waits until GetModelStatus reports `version` of `model` in `state`.
async fn wait_state(server: &Server, model: &str, version: i64, state: i32) {
    common::wait_state(server, model, version, state, DEADLINE).await
}

/// Model → version → state name, from `GET /v1/config`.
fn config_states(body: &Value) -> BTreeMap<String, BTreeMap<String, String>> {
    body.as_object()
        .expect("GET /v1/config answers an object")
        .iter()
        .map(|(model, status)| {
            let versions = status["model_version_status"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    (
                        v["version"].as_str().unwrap_or("?").to_string(),
                        v["state"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect();
            (model.clone(), versions)
        })
        .collect()
}

async fn rest(method: reqwest::Method, url: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, &url)
        .timeout(DEADLINE)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn get_config(server: &Server) -> (u16, Value) {
    rest(reqwest::Method::GET, server.rest_url("/v1/config")).await
}

async fn post_reload(server: &Server) -> (u16, Value) {
    rest(reqwest::Method::POST, server.rest_url("/v1/config/reload")).await
}

/// Version → state, as one GetModelStatus answer lists them.
type Snapshot = BTreeMap<i64, i32>;
/// Every distinct snapshot, with when it was first seen.
type History = Vec<(Instant, Snapshot)>;

/// Records every distinct GetModelStatus answer for one model, polling every half millisecond
/// from its own thread (so it is not starved by the load clients), so that short-lived states
/// are seen: UNLOADING lasts as long as the old version takes to drain and free its model.
struct StatusWatch {
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Duration)>>,
}

impl StatusWatch {
    async fn start(server: &Server, model: &'static str) -> StatusWatch {
        let url = server.grpc_url();
        let history = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (history, stop) = (history.clone(), stop.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let mut client = runtime.block_on(ModelServiceClient::connect(url)).unwrap();
                // How many polls, and the longest time between two: what the watch could miss.
                let (mut polls, mut longest, mut last) = (0, Duration::ZERO, Instant::now());
                // The last poll starts after `stop` was asked for, so a state the caller saw
                // before stopping the watch (say END) is in the history too.
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    let snapshot: Snapshot =
                        match runtime.block_on(model_status(&mut client, model)) {
                            Ok(statuses) => statuses.iter().map(|s| (s.version, s.state)).collect(),
                            Err(_) => BTreeMap::new(),
                        };
                    let now = Instant::now();
                    (polls, longest, last) = (polls + 1, longest.max(now - last), now);
                    let mut history = history.lock().unwrap();
                    if history.last().map(|(_, last)| last) != Some(&snapshot) {
                        history.push((now, snapshot));
                    }
                    drop(history);
                    if stopping {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                (polls, longest)
            }
        });
        let watch = StatusWatch {
            history,
            stop,
            thread: Some(thread),
        };
        eventually("first status snapshot", DEADLINE, async || {
            (!watch.history.lock().unwrap().is_empty()).then_some(())
        })
        .await;
        watch
    }

    /// Stops polling; returns the history and how closely it was sampled.
    fn stop(&mut self) -> (History, String) {
        self.stop.store(true, Ordering::Relaxed);
        let (polls, longest) = self
            .thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        let sampling = format!(
            "{polls} status polls, longest gap {:.1} ms",
            longest.as_secs_f64() * 1e3
        );
        (self.history.lock().unwrap().clone(), sampling)
    }
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Checks that a retired version went AVAILABLE → UNLOADING → END, never back. Returns whether
/// UNLOADING itself was seen: it lasts only while the version drains and frees its compiled
/// model (5–15 ms for `add`), so a watch sampling a loaded 2-CPU machine (gaps of tens of ms)
/// cannot be sure to catch it. What END means is checked where it is deterministic instead:
/// the callers assert that the version's worker threads are gone once END is reported.
fn assert_retired_in_order(history: &[(Instant, Snapshot)], version: i64, shown: &str) -> bool {
    let states = sequence(history, version);
    assert!(
        states == [AVAILABLE, UNLOADING, END] || states == [AVAILABLE, END],
        "version {version} goes AVAILABLE → UNLOADING → END: {:?}\n{shown}",
        states.iter().map(|&s| name_of(s)).collect::<Vec<_>>()
    );
    states.contains(&UNLOADING)
}

/// The states one version went through, consecutive repeats (and absences) removed.
fn sequence(history: &[(Instant, Snapshot)], version: i64) -> Vec<i32> {
    let mut states: Vec<i32> = Vec::new();
    for state in history.iter().filter_map(|(_, s)| s.get(&version)) {
        if states.last() != Some(state) {
            states.push(*state);
        }
    }
    states
}

fn show_history(history: &[(Instant, Snapshot)]) -> String {
    let Some((t0, _)) = history.first() else {
        return "(nothing observed)".into();
    };
    history
        .iter()
        .map(|(t, s)| {
            let states: Vec<String> = s
                .iter()
                .map(|(v, st)| format!("v{v} {}", name_of(*st)))
                .collect();
            format!(
                "+{:>5.1} ms: {}",
                t.duration_since(*t0).as_secs_f64() * 1e3,
                states.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ------------------------------------------------------------------------------------ load

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Latest,
    Version(i64),
    Label(&'static str),
}

#[derive(Clone, Debug)]
struct Client {
    model: &'static str,
    target: Target,
}

impl Client {
    fn latest(model: &'static str) -> Client {
        Client {
            model,
            target: Target::Latest,
        }
    }

    fn pinned(model: &'static str, version: i64) -> Client {
        Client {
            model,
            target: Target::Version(version),
        }
    }

    fn label(model: &'static str, label: &'static str) -> Client {
        Client {
            model,
            target: Target::Label(label),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Latest => write!(f, "{}@latest", self.model),
            Target::Version(v) => write!(f, "{}@v{v}", self.model),
            Target::Label(l) => write!(f, "{}@{l}", self.model),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// A correct answer, from this version.
    Answered(i64),
    Failed(Code, String),
    /// An answer with the wrong values or from a version other than the one asked for.
    Wrong(String),
}

impl load::Outcome for Outcome {
    fn kind(&self) -> Cow<'static, str> {
        match self {
            Outcome::Answered(v) => format!("v{v}").into(),
            Outcome::Failed(code, _) => format!("{code:?}").into(),
            Outcome::Wrong(_) => "WRONG".into(),
        }
    }

    fn failure(&self) -> Option<String> {
        (!matches!(self, Outcome::Answered(_))).then(|| format!("{self:?}"))
    }
}

type Record = load::Record<Outcome>;

/// Closed-loop clients ([`load::Load`]), one request outstanding each, every response recorded.
struct Load {
    clients: Vec<Client>,
    run: load::Load<Outcome>,
}

/// One client of the load: its target and its own gRPC connection.
struct Caller {
    client: Client,
    index: usize,
    grpc: PredictionServiceClient<Channel>,
}

impl load::Client for Caller {
    type Outcome = Outcome;

    async fn call(&mut self, n: u32) -> Outcome {
        let x = common::probe_input(n, self.index);
        let mut request = tonic::Request::new(predict_request(&self.client, &x));
        // A fail-safe against a hung request, far above any answer time.
        request.set_timeout(DEADLINE);
        let result = self.grpc.predict(request).await.map(|r| r.into_inner());
        judge(&self.client, &x, result)
    }
}

fn predict_request(client: &Client, x: &[f32]) -> PredictRequest {
    let version_choice = match &client.target {
        Target::Latest => None,
        Target::Version(v) => Some(VersionChoice::Version(*v)),
        Target::Label(l) => Some(VersionChoice::VersionLabel(l.to_string())),
    };
    let tensor = tensor(Tf::DtFloat, &[1i64, 10], f32_bytes(x));
    PredictRequest {
        model_spec: Some(ModelSpec {
            name: client.model.to_string(),
            signature_name: String::new(),
            version_choice,
        }),
        inputs: HashMap::from([("x".to_string(), tensor)]),
        ..Default::default()
    }
}

/// Checks an answer: the version it names, and `y = x + version` (`add`) or `y = x`.
fn judge(client: &Client, x: &[f32], result: Result<PredictResponse, tonic::Status>) -> Outcome {
    let response = match result {
        Ok(r) => r,
        Err(status) => return Outcome::Failed(status.code(), status.message().to_string()),
    };
    let Some(VersionChoice::Version(version)) = response.model_spec.and_then(|s| s.version_choice)
    else {
        return Outcome::Wrong("the answer names no version".into());
    };
    if let Target::Version(asked) = client.target {
        if asked != version {
            return Outcome::Wrong(format!("asked for version {asked}, answered by {version}"));
        }
    }
    let Some(y) = response.outputs.get("y") else {
        return Outcome::Wrong("no output y".into());
    };
    let y: Vec<f32> = y
        .tensor_content
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let offset = if client.model == "add" {
        version as f32
    } else {
        0.0
    };
    let want: Vec<f32> = x.iter().map(|v| v + offset).collect();
    if y != want {
        return Outcome::Wrong(format!("version {version}: y = {y:?}, expected {want:?}"));
    }
    Outcome::Answered(version)
}

impl Load {
    /// Starts one task per client; returns once every client has had an answer.
    async fn start(server: &Server, clients: &[Client]) -> Load {
        let mut callers = Vec::new();
        for (index, client) in clients.iter().cloned().enumerate() {
            let grpc = server.predict_client().await;
            let label = client.to_string();
            callers.push((
                label,
                Caller {
                    client,
                    index,
                    grpc,
                },
            ));
        }
        let settings = load::Settings {
            pace: Some(PACE),
            ..load::Settings::recorded()
        };
        let load = Load {
            clients: clients.to_vec(),
            run: load::Load::spawn(settings, callers),
        };
        load.wait_until("every client has an answer", |records| {
            (0..load.clients.len()).all(|c| {
                records
                    .iter()
                    .any(|r| r.client == c && matches!(r.outcome, Outcome::Answered(_)))
            })
        })
        .await;
        load
    }

    fn records(&self) -> Vec<Record> {
        self.run.with_records(<[Record]>::to_vec)
    }

    /// Waits for answers until `done` holds; panics with the tally after [`DEADLINE`].
    async fn wait_until(&self, what: &str, done: impl Fn(&[Record]) -> bool) {
        self.run.wait_until(what, done).await
    }

    /// Waits until `count` more responses matching `which` arrived after `since`.
    async fn wait_answers_after(
        &self,
        which: impl Fn(&Client) -> bool,
        since: Instant,
        count: usize,
    ) {
        let clients = self.clients.clone();
        self.wait_until(&format!("{count} more answers"), |records| {
            records
                .iter()
                .filter(|r| r.sent >= since && which(&clients[r.client]))
                .count()
                >= count
        })
        .await
    }

    async fn stop(&mut self) {
        self.run.stop().await
    }

    /// Per client: answers per version, failures per code.
    fn tally(&self) -> String {
        self.run.summary()
    }

    fn failures(&self, which: impl Fn(&Client) -> bool) -> Vec<(String, Outcome)> {
        self.records()
            .into_iter()
            .filter(|r| which(&self.clients[r.client]))
            .filter(|r| !matches!(r.outcome, Outcome::Answered(_)))
            .map(|r| (self.clients[r.client].to_string(), r.outcome))
            .collect()
    }

    /// Every response to the clients `which` selects was a correct answer.
    fn assert_no_failures(&self, which: impl Fn(&Client) -> bool) {
        let failures = self.failures(which);
        assert!(
            failures.is_empty(),
            "{} failed requests, first: {:?}\n{}",
            failures.len(),
            &failures[..failures.len().min(5)],
            self.tally()
        );
    }

    /// For each client `which` selects: correct answers, then only NOT_FOUND from some point on
    /// (its version or model went away), and nothing else.
    fn assert_answered_then_not_found(&self, which: impl Fn(&Client) -> bool) {
        let records = self.records();
        for (index, client) in self.clients.iter().enumerate().filter(|(_, c)| which(c)) {
            let mut gone = false;
            for r in records.iter().filter(|r| r.client == index) {
                match &r.outcome {
                    Outcome::Answered(_) if !gone => {}
                    Outcome::Failed(Code::NotFound, _) => gone = true,
                    other => panic!(
                        "{client}: {other:?} (after NOT_FOUND: {gone})\n{}",
                        self.tally()
                    ),
                }
            }
        }
    }

    /// When the first correct answer from `version` arrived, among the clients `which` selects.
    fn first_answer(&self, which: impl Fn(&Client) -> bool, version: i64) -> Option<Instant> {
        self.records()
            .iter()
            .filter(|r| which(&self.clients[r.client]) && r.outcome == Outcome::Answered(version))
            .map(|r| r.done)
            .min()
    }

    /// Every request `which` selects that was sent at or after `since` was answered by `version`.
    fn assert_all_answered_by(
        &self,
        which: impl Fn(&Client) -> bool,
        since: Instant,
        version: i64,
    ) {
        let records = self.records();
        let others: Vec<&Record> = records
            .iter()
            .filter(|r| r.sent >= since && which(&self.clients[r.client]))
            .filter(|r| r.outcome != Outcome::Answered(version))
            .collect();
        assert!(
            others.is_empty(),
            "{} requests after the switch not answered by version {version}, first: {:?}\n{}",
            others.len(),
            others.first().map(|r| &r.outcome),
            self.tally()
        );
    }

    fn answered_versions(&self, which: impl Fn(&Client) -> bool) -> BTreeSet<i64> {
        self.records()
            .iter()
            .filter(|r| which(&self.clients[r.client]))
            .filter_map(|r| match r.outcome {
                Outcome::Answered(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    /// Latency percentiles of the responses that arrived in `[from, to)`.
    fn latency(&self, from: Instant, to: Instant) -> String {
        self.run.with_records(|records| {
            let window = records.iter().filter(|r| r.done >= from && r.done < to);
            load::percentiles(&load::latencies(window))
        })
    }
}

fn is_latest(c: &Client) -> bool {
    c.target == Target::Latest
}

/// The clients of the version-swap tests: three unversioned, two pinned to the serving version.
fn swap_clients(serving: i64) -> Vec<Client> {
    vec![
        Client::latest("add"),
        Client::latest("add"),
        Client::latest("add"),
        Client::pinned("add", serving),
        Client::pinned("add", serving),
    ]
}

/// After a change that makes `new` replace `old` (the change finished at `complete`): waits
/// for the swap, then checks it from the clients' side and from GetModelStatus:
///
/// * unversioned clients never failed, and once one was answered by `new`, every request sent
///   afterwards was answered by `new` (no flapping back);
/// * clients pinned to `old` got answers, then only NOT_FOUND once it was retired;
/// * `old` went AVAILABLE → UNLOADING → END, and only while `new` was AVAILABLE; some version
///   was AVAILABLE at every moment; `new`, once AVAILABLE, stayed so.
///
/// Stops the load; prints the swap latency and request latencies.
async fn expect_swap(
    test: &str,
    server: &Server,
    before: Steady,
    (old, new): (i64, i64),
    complete: Instant,
) {
    let Steady {
        mut load,
        mut watch,
        since: steady_since,
        workers,
    } = before;
    load.wait_until(&format!("an unversioned answer from v{new}"), |records| {
        records
            .iter()
            .any(|r| r.outcome == Outcome::Answered(new) && is_latest(&load.clients[r.client]))
    })
    .await;
    let first_new = load.first_answer(is_latest, new).unwrap();
    wait_state(server, "add", old, END).await;
    let ended = Instant::now();
    // END means the old instance is gone: its workers exited before it was reported.
    assert_eq!(
        threads_named(server.child.id(), "ov-add-"),
        workers,
        "only the new version's workers remain once the old one is END"
    );
    load.wait_answers_after(is_latest, ended, 60).await;
    let (history, sampling) = watch.stop();
    load.stop().await;
    let shown = format!("{}\n({sampling})", show_history(&history));

    load.assert_no_failures(is_latest);
    load.assert_all_answered_by(is_latest, first_new, new);
    assert_eq!(
        load.answered_versions(is_latest),
        BTreeSet::from([old, new]),
        "unversioned answers come from the old version, then the new one\n{}",
        load.tally()
    );
    load.assert_answered_then_not_found(|c| c.target == Target::Version(old));
    load.assert_no_failures(|c| !is_latest(c) && c.target != Target::Version(old));

    let saw_unloading = assert_retired_in_order(&history, old, &shown);
    let new_states = sequence(&history, new);
    let available_at = new_states.iter().position(|&s| s == AVAILABLE);
    assert!(
        available_at.is_some_and(|i| i == new_states.len() - 1),
        "version {new} ends AVAILABLE and stays so: {new_states:?}\n{shown}"
    );
    for (_, snapshot) in &history {
        assert!(
            snapshot.values().any(|&s| s == AVAILABLE),
            "a moment with no AVAILABLE version:\n{shown}"
        );
        if matches!(snapshot.get(&old), Some(&UNLOADING) | Some(&END)) {
            assert_eq!(
                snapshot.get(&new),
                Some(&AVAILABLE),
                "version {old} retired before {new} was AVAILABLE:\n{shown}"
            );
        }
    }
    let unloading = history
        .iter()
        .find(|(_, s)| s.get(&old) == Some(&UNLOADING))
        .map(|(t, _)| *t);
    let end = history
        .iter()
        .find(|(_, s)| s.get(&old) == Some(&END))
        .map(|(t, _)| *t);
    println!(
        "[{test}] folder complete → first answer from v{new}: {:.0} ms; v{old} UNLOADING seen: \
         {saw_unloading}, → END: {:.1} ms ({sampling})\n\
         [{test}] latency steady: {}\n[{test}] latency during swap: {}\n{}",
        first_new.duration_since(complete).as_secs_f64() * 1e3,
        end.zip(unloading)
            .map_or(f64::NAN, |(e, u)| e.duration_since(u).as_secs_f64() * 1e3),
        load.latency(steady_since, complete),
        load.latency(complete, ended + Duration::from_millis(50)),
        load.tally()
    );
}

/// A server serving `add` under load, before a change.
struct Steady {
    load: Load,
    watch: StatusWatch,
    /// When the steady-state latency sample starts.
    since: Instant,
    /// Worker threads of the serving `add` instance.
    workers: usize,
}

/// Starts the status watch and the swap clients on a server serving `add` version `serving`;
/// lets the load run for a steady-state sample first. Returns when the sample is in.
async fn steady(server: &Server, serving: i64) -> Steady {
    wait_state(server, "add", serving, AVAILABLE).await;
    let load = Load::start(server, &swap_clients(serving)).await;
    let watch = StatusWatch::start(server, "add").await;
    let since = Instant::now();
    load.wait_answers_after(|_| true, since, 300).await;
    load.assert_no_failures(|_| true);
    assert_eq!(load.answered_versions(is_latest), BTreeSet::from([serving]));
    let workers = threads_named(server.child.id(), "ov-add-");
    assert!(workers > 0, "the serving version has worker threads");
    Steady {
        load,
        watch,
        since,
        workers,
    }
}

// ------------------------------------------------------------------------------------ tests

/// 1. `cp -r` straight into the model folder (files appear one by one), with the default
///    settle interval and poll period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_r_of_a_new_version_swaps_without_a_failed_request() {
    let staged = made_add_version(3);
    let repo = Repo::new(&[("add", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let before = steady(&server, 2).await;

    run("cp -r", &[&staged, &repo.model_dir("add").join("3")]);
    let complete = Instant::now();
    expect_swap("cp -r", &server, before, (2, 3), complete).await;
}

/// 2. `mv` of a finished folder prepared beside the repository on the same file system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mv_of_a_finished_version_swaps_without_a_failed_request() {
    let repo = Repo::new(&[("add", "")]);
    let staging = repo.dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    run("cp -r", &[&made_add_version(3), &staging.join("3")]);
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    let before = steady(&server, 2).await;

    run(
        "mv",
        &[&staging.join("3"), &repo.model_dir("add").join("3")],
    );
    let complete = Instant::now();
    expect_swap("mv", &server, before, (2, 3), complete).await;
}

/// 3. A copy that stops half-way (first the XML cut in the middle, then a whole XML with half
///    of the weights) is never loaded, however long it stays so; finishing it swaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_copied_version_is_never_loaded_until_finished() {
    let staged = made_add_version(3);
    let xml = std::fs::read(staged.join("model.xml")).unwrap();
    let bin = std::fs::read(staged.join("model.bin")).unwrap();
    let repo = Repo::new(&[("add", "")]);
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    let before = steady(&server, 2).await;
    let target = repo.model_dir("add").join("3");
    let mut status = server.model_client().await;

    std::fs::create_dir(&target).unwrap();
    // Where the copy stops: what model.xml and (if written yet) model.bin hold then.
    type Partial<'a> = (&'a str, &'a [u8], Option<&'a [u8]>);
    let stages: [Partial; 2] = [
        ("half of model.xml", &xml[..xml.len() / 2], None),
        (
            "model.xml, half of model.bin",
            &xml,
            Some(&bin[..bin.len() / 2]),
        ),
    ];
    for (stage, xml_part, bin_part) in stages {
        std::fs::write(target.join("model.xml"), xml_part).unwrap();
        if let Some(bin_part) = bin_part {
            std::fs::write(target.join("model.bin"), bin_part).unwrap();
        }
        // Proving a non-event: two polls (each longer than the settle interval), watching all
        // along.
        let polls = || server.metric("vinoserve_repository_scans_total", &[("trigger", "poll")]);
        let until = polls().await + 2.0;
        let mut seen = BTreeSet::new();
        while polls().await < until {
            let statuses = model_status(&mut status, "add").await.unwrap();
            if let Some(s) = statuses.iter().find(|s| s.version == 3) {
                assert_eq!(s.state, START, "{stage}: version 3 is {}", name_of(s.state));
                seen.insert(s.status.as_ref().map(|s| s.error_message.clone()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        before.load.assert_no_failures(|_| true);
        assert_eq!(
            before.load.answered_versions(|_| true),
            BTreeSet::from([2]),
            "{stage}"
        );
        println!("[half copy] {stage}: version 3 status messages {seen:?}");
    }

    std::fs::write(target.join("model.bin"), &bin).unwrap();
    let complete = Instant::now();
    expect_swap("half copy", &server, before, (2, 3), complete).await;
}

/// 4. Deleting the serving version while an older one is on disk (latest{1}): the older one
///    loads before the deleted one is retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_serving_version_falls_back_to_the_older_one() {
    let repo = Repo::new(&[("add", "")]);
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    let before = steady(&server, 2).await;

    run("rm -rf", &[&repo.model_dir("add").join("2")]);
    let complete = Instant::now();
    expect_swap("rm -rf v2", &server, before, (2, 1), complete).await;
}

/// 5. Deleting the only version: requests turn into NOT_FOUND (nothing else), and the status
///    says the version ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_only_version_answers_not_found() {
    let repo = Repo::new(&[("add", "")]);
    std::fs::remove_dir_all(repo.model_dir("add").join("2")).unwrap();
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    wait_state(&server, "add", 1, AVAILABLE).await;
    let clients = [
        Client::latest("add"),
        Client::latest("add"),
        Client::latest("add"),
        Client::pinned("add", 1),
    ];
    let mut load = Load::start(&server, &clients).await;
    let mut watch = StatusWatch::start(&server, "add").await;

    run("rm -rf", &[&repo.model_dir("add").join("1")]);
    let complete = Instant::now();
    load.wait_until("every client gets NOT_FOUND", |records| {
        (0..clients.len()).all(|c| {
            records
                .iter()
                .any(|r| r.client == c && matches!(r.outcome, Outcome::Failed(Code::NotFound, _)))
        })
    })
    .await;
    let gone = Instant::now();
    wait_state(&server, "add", 1, END).await;
    assert_eq!(
        threads_named(server.child.id(), "ov-add-"),
        0,
        "END: the version's workers are gone"
    );
    let (history, sampling) = watch.stop();
    load.stop().await;

    load.assert_answered_then_not_found(|_| true);
    let messages: BTreeSet<String> = load
        .failures(is_latest)
        .into_iter()
        .filter_map(|(_, o)| match o {
            Outcome::Failed(_, m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        BTreeSet::from(["Model has no available version: model add".to_string()])
    );
    let shown = format!("{}\n({sampling})", show_history(&history));
    let saw_unloading = assert_retired_in_order(&history, 1, &shown);
    let (code, body) = rest(reqwest::Method::GET, server.rest_url("/v1/models/add")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["model_version_status"][0]["state"], "END", "{body}");
    println!(
        "[rm -rf only version] NOT_FOUND for every client {:.0} ms after the folder went; \
         UNLOADING seen: {saw_unloading} ({sampling})\n{}",
        gone.duration_since(complete).as_secs_f64() * 1e3,
        load.tally()
    );
}

/// 6. A corrupt version beside a good one: the good one keeps serving, the status carries the
///    load error; replacing the files with a good model retries and swaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_version_keeps_the_old_one_serving_and_loads_once_fixed() {
    let staged = made_add_version(3);
    let repo = Repo::new(&[("add", "")]);
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    let mut before = steady(&server, 2).await;
    let target = repo.model_dir("add").join("3");
    let mut status = server.model_client().await;

    run("cp -r", &[&common::fixtures().join("broken/1"), &target]);
    let failed = eventually("version 3 fails to load", DEADLINE, async || {
        let statuses = model_status(&mut status, "add").await.ok()?;
        statuses
            .into_iter()
            .find(|s| s.version == 3 && s.state == END)
    })
    .await;
    let error = failed.status.unwrap_or_default();
    assert_ne!(error.error_code, 0, "{error:?}");
    assert!(
        !error.error_message.is_empty() && error.error_message != "OK",
        "{error:?}"
    );
    println!("[corrupt v3] status: {}", error.error_message);
    // The failure changed nothing for the clients: v2 serves, pinned and unversioned.
    let load = &before.load;
    load.wait_answers_after(|_| true, Instant::now(), 100).await;
    load.assert_no_failures(|_| true);
    assert_eq!(load.answered_versions(|_| true), BTreeSet::from([2]));
    let statuses = model_status(&mut status, "add").await.unwrap();
    assert_eq!(state_of(&statuses, 2), Some(AVAILABLE));
    // Only v2 was AVAILABLE throughout (the failed load never published anything).
    let (history, _) = before.watch.stop();
    assert!(
        history
            .iter()
            .all(|(_, s)| s.get(&2) == Some(&AVAILABLE)
                && s.get(&3).is_none_or(|&st| st != AVAILABLE)),
        "{}",
        show_history(&history)
    );

    // Fixed in place: the same folder, new files.
    before.watch = StatusWatch::start(&server, "add").await;
    run(
        "cp",
        &[
            &staged.join("model.xml"),
            &staged.join("model.bin"),
            &target,
        ],
    );
    let complete = Instant::now();
    expect_swap("corrupt v3 fixed", &server, before, (2, 3), complete).await;
    let statuses = model_status(&mut status, "add").await.unwrap();
    let v3 = statuses.iter().find(|s| s.version == 3).unwrap();
    assert_eq!(
        v3.status.as_ref().map(|s| s.error_code),
        Some(0),
        "{statuses:?}"
    );
}

/// 7. Editing nireq in config.json (picked up by the config watcher): versions are rebuilt
///    beside the serving ones and swapped, with no failed request and no gap in AVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nireq_change_rebuilds_versions_without_a_failed_request() {
    let repo = Repo::new(&[("add", r#""nireq": 1"#)]);
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    let pid = server.child.id();
    let Steady {
        mut load,
        mut watch,
        ..
    } = steady(&server, 2).await;
    eventually("one worker for nireq 1", DEADLINE, async || {
        (threads_named(pid, "ov-add-") == 1).then_some(())
    })
    .await;
    assert_eq!(infer_requests(&server, "add", 2).await, Some(1));

    std::fs::write(repo.config_path(), config_text(&[("add", r#""nireq": 3"#)])).unwrap();
    let edited = Instant::now();
    // The new instance has 3 workers; the old one's single worker exits once it has drained.
    eventually("three workers for nireq 3", DEADLINE, async || {
        (threads_named(pid, "ov-add-") == 3).then_some(())
    })
    .await;
    let applied = Instant::now();
    load.wait_answers_after(|_| true, applied, 100).await;
    let (history, _) = watch.stop();
    load.stop().await;

    load.assert_no_failures(|_| true);
    assert_eq!(load.answered_versions(|_| true), BTreeSet::from([2]));
    assert!(
        history
            .iter()
            .all(|(_, s)| s == &BTreeMap::from([(2, AVAILABLE)])),
        "version 2 stays AVAILABLE throughout:\n{}",
        show_history(&history)
    );
    let (code, body) = get_config(&server).await;
    assert_eq!(code, 200);
    assert_eq!(config_states(&body)["add"]["2"], "AVAILABLE", "{body}");
    assert_eq!(infer_requests(&server, "add", 2).await, Some(3));
    println!(
        "[nireq 1 → 3] edit → 3 workers, old one gone: {:.0} ms; latency during the rebuild: {}\n{}",
        applied.duration_since(edited).as_secs_f64() * 1e3,
        load.latency(edited, applied),
        load.tally()
    );
}

/// The server's own count of a version's infer requests (worker threads): the
/// `ovms_infer_req_queue_size` gauge on `GET /metrics`.
async fn infer_requests(server: &Server, model: &str, version: u64) -> Option<u64> {
    let text = server.metrics_text().await.ok()?;
    let (name, version) = (
        format!("name=\"{model}\""),
        format!("version=\"{version}\""),
    );
    text.lines()
        .filter(|l| l.starts_with("ovms_infer_req_queue_size{"))
        .find(|l| l.contains(&name) && l.contains(&version))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Points the repository's config.json at a file in another folder, so that edits to it raise
/// no inotify event where the server watches; with polling off, only an explicit reload
/// applies them, which makes the reload's answer (201 vs 200) deterministic.
fn config_behind_symlink(repo: &Repo, text: &str) -> PathBuf {
    let real = repo.dir.path().join("real");
    std::fs::create_dir_all(&real).unwrap();
    let file = real.join("config.json");
    std::fs::write(&file, text).unwrap();
    std::fs::remove_file(repo.config_path()).unwrap();
    std::os::unix::fs::symlink(&file, repo.config_path()).unwrap();
    file
}

/// 8. `POST /v1/config/reload` with a config that adds one model and removes another; then
///    SIGHUP with the original config adds the removed one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_adds_and_removes_models() {
    let repo = Repo::new(&[("add", ""), ("identity", ""), ("two_io", "")]);
    let file = config_behind_symlink(&repo, &config_text(&[("add", ""), ("identity", "")]));
    let server = Server::with_config(&repo, &["--file_system_poll_wait_seconds", "0"]);
    server.wait_loaded();
    wait_state(&server, "add", 2, AVAILABLE).await;
    wait_state(&server, "identity", 1, AVAILABLE).await;
    // `add` is untouched throughout; `identity` goes, then comes back.
    let adds = [
        Client::latest("add"),
        Client::latest("add"),
        Client::pinned("add", 2),
    ];
    let mut add_load = Load::start(&server, &adds).await;
    let identities = [Client::latest("identity"), Client::latest("identity")];
    let mut identity_load = Load::start(&server, &identities).await;

    // Listed out of name order on purpose: a config means the same in any order.
    std::fs::write(&file, config_text(&[("two_io", ""), ("add", "")])).unwrap();
    let (code, body) = post_reload(&server).await;
    let reloaded = Instant::now();
    assert_eq!(code, 201, "{body}");
    let states = config_states(&body);
    assert_eq!(
        states.keys().collect::<Vec<_>>(),
        ["add", "two_io"],
        "{body}"
    );
    assert_eq!(states["two_io"]["1"], "AVAILABLE", "{body}");
    let (_, body) = get_config(&server).await;
    assert_eq!(config_states(&body), states, "GET /v1/config agrees");

    let response = reqwest::Client::new()
        .post(server.rest_url("/v1/models/two_io:predict"))
        .json(&serde_json::json!({"inputs": {"a": [[1.0, 2.0, 3.0, 4.0]], "b": [[0.5, 0.5, 0.5, 0.5]]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["outputs"]["sum"],
        serde_json::json!([[1.5, 2.5, 3.5, 4.5]]),
        "{body}"
    );

    identity_load
        .wait_answers_after(|_| true, reloaded, 40)
        .await;
    identity_load.stop().await;
    identity_load.assert_answered_then_not_found(|_| true);
    let after: Vec<Record> = identity_load
        .records()
        .into_iter()
        .filter(|r| r.sent >= reloaded)
        .collect();
    assert!(
        after
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Failed(Code::NotFound, _))),
        "identity is gone once the reload answered\n{}",
        identity_load.tally()
    );

    let (code, body) = post_reload(&server).await;
    assert_eq!(code, 200, "a reload with nothing changed: {body}");

    // SIGHUP is the other explicit trigger: it brings identity back under the same name.
    std::fs::write(&file, config_text(&[("add", ""), ("identity", "")])).unwrap();
    server.signal("HUP");
    wait_state(&server, "identity", 1, AVAILABLE).await;
    let (_, body) = get_config(&server).await;
    assert_eq!(
        config_states(&body).keys().collect::<Vec<_>>(),
        ["add", "identity"],
        "{body}"
    );
    let mut back = Load::start(&server, &identities[..1]).await;
    back.wait_answers_after(|_| true, Instant::now(), 20).await;
    back.stop().await;
    back.assert_no_failures(|_| true);

    add_load
        .wait_answers_after(|_| true, Instant::now(), 60)
        .await;
    add_load.stop().await;
    add_load.assert_no_failures(|_| true);
    println!(
        "[config reload +two_io -identity, SIGHUP +identity]\n{}\n{}\n{}",
        add_load.tally(),
        identity_load.tally(),
        back.tally()
    );
}

/// 9. An invalid config (a syntax error; an unknown key `nirq`) is refused with where it is
///    wrong, over REST and on SIGHUP, and nothing running changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_changes_nothing() {
    let repo = Repo::new(&[("add", ""), ("identity", "")]);
    let good = std::fs::read_to_string(repo.config_path()).unwrap();
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    wait_state(&server, "identity", 1, AVAILABLE).await;
    let clients = [
        Client::latest("add"),
        Client::latest("add"),
        Client::pinned("add", 2),
        Client::latest("identity"),
    ];
    let mut load = Load::start(&server, &clients).await;
    let (_, before) = get_config(&server).await;

    std::fs::write(
        repo.config_path(),
        "{\"model_config_list\": [\n  {\"config\": ",
    )
    .unwrap();
    let (code, body) = post_reload(&server).await;
    assert_eq!(code, 400, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("config.json: model_config_list[0].config: ")
            && message.contains("at line 2 column"),
        "a syntax error says where: {message}"
    );

    // Also drops `identity`: an invalid file must not half-apply.
    std::fs::write(repo.config_path(), config_text(&[("add", r#""nirq": 2"#)])).unwrap();
    let (code, body) = post_reload(&server).await;
    assert_eq!(code, 400, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("model_config_list[0].config.nirq") && message.contains("unknown field"),
        "an unknown key is named by its JSON path: {message}"
    );

    // SIGHUP re-reads the same invalid file: rejected, and the server keeps serving.
    let mut server = server;
    let rejected = || server.metric("vinoserve_config_reloads_total", &[("result", "rejected")]);
    let rejected_before = rejected().await;
    server.signal("HUP");
    let hup = Instant::now();
    eventually("SIGHUP's reload rejected", DEADLINE, async || {
        (rejected().await > rejected_before).then_some(())
    })
    .await;
    assert_eq!(
        server.child.try_wait().unwrap(),
        None,
        "SIGHUP must not stop the server"
    );
    load.wait_answers_after(|c| c.model == "identity", hup, 40)
        .await;
    let (code, after) = get_config(&server).await;
    assert_eq!(code, 200);
    assert_eq!(after, before, "nothing changed");

    std::fs::write(repo.config_path(), &good).unwrap();
    let (code, body) = post_reload(&server).await;
    assert!(code == 200 || code == 201, "{code} {body}");
    assert_eq!(config_states(&body), config_states(&before), "{body}");
    load.stop().await;
    load.assert_no_failures(|_| true);
    println!("[invalid config]\n{}", load.tally());
}

/// 10. gRPC `HandleReloadConfigRequest` with a subset of the models really applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reload_config_applies_the_given_models() {
    let repo = Repo::new(&[("add", ""), ("identity", "")]);
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    wait_state(&server, "identity", 1, AVAILABLE).await;
    let clients = [
        Client::latest("add"),
        Client::latest("add"),
        Client::pinned("add", 2),
        Client::latest("identity"),
        Client::latest("identity"),
    ];
    let mut load = Load::start(&server, &clients).await;

    let only = |base_path: String| ReloadConfigRequest {
        config: Some(ModelServerConfig {
            config: Some(model_server_config::Config::ModelConfigList(
                ModelConfigList {
                    config: vec![ModelConfig {
                        name: "add".into(),
                        base_path,
                        model_platform: "openvino".into(),
                        model_version_policy: Some(ServableVersionPolicy {
                            policy_choice: Some(PolicyChoice::Latest(Latest { num_versions: 1 })),
                        }),
                        ..Default::default()
                    }],
                },
            )),
        }),
    };
    let mut model_client = server.model_client().await;
    // A config that cannot be applied is refused whole: nothing is removed.
    let missing = repo.dir.path().join("nowhere").display().to_string();
    let refused = model_client
        .handle_reload_config_request(only(missing))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("base_path"),
        "{}",
        refused.message()
    );
    let (_, body) = get_config(&server).await;
    assert_eq!(
        config_states(&body).keys().collect::<Vec<_>>(),
        ["add", "identity"],
        "{body}"
    );

    let answer = model_client
        .handle_reload_config_request(only(repo.model_dir("add").display().to_string()))
        .await
        .unwrap()
        .into_inner();
    let applied = Instant::now();
    assert_eq!(answer.status.map(|s| s.error_code), Some(0));

    let status = model_status(&mut model_client, "identity").await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    let (_, body) = get_config(&server).await;
    assert_eq!(
        config_states(&body).keys().collect::<Vec<_>>(),
        ["add"],
        "{body}"
    );
    // The config file (which still lists identity) is polled every second; it did not change,
    // so it must not undo the gRPC reload. Proving a non-event: two polls.
    server.wait_polls(2).await;
    load.stop().await;

    load.assert_no_failures(|c| c.model == "add");
    load.assert_answered_then_not_found(|c| c.model == "identity");
    let identity_after = load
        .records()
        .into_iter()
        .filter(|r| r.sent >= applied && clients[r.client].model == "identity")
        .collect::<Vec<_>>();
    assert!(
        identity_after.len() > 100
            && identity_after
                .iter()
                .all(|r| matches!(r.outcome, Outcome::Failed(Code::NotFound, _))),
        "identity stays removed\n{}",
        load.tally()
    );
    println!("[gRPC reload: add only]\n{}", load.tally());
}

/// 11. `version_labels` from config.json: a label answers from its version (gRPC and REST), and
///     moving it in the config moves its answers with no failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_labels_select_and_follow_the_config() {
    const POLICY_ALL: &str = r#""model_version_policy": {"all": {}}"#;
    let labels = |v: u64| format!(r#"{POLICY_ALL}, "version_labels": {{"stable": {v}}}"#);
    let repo = Repo::new(&[("add", &labels(1))]);
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    wait_state(&server, "add", 1, AVAILABLE).await;
    wait_state(&server, "add", 2, AVAILABLE).await;
    let clients = [
        Client::label("add", "stable"),
        Client::label("add", "stable"),
        Client::latest("add"),
        Client::pinned("add", 1),
        Client::pinned("add", 2),
    ];
    let mut load = Load::start(&server, &clients).await;
    let stable = |c: &Client| c.target == Target::Label("stable");
    load.wait_answers_after(stable, Instant::now(), 50).await;
    assert_eq!(load.answered_versions(stable), BTreeSet::from([1]));

    let (code, body) = rest(
        reqwest::Method::GET,
        server.rest_url("/v1/models/add/labels/stable"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["model_version_status"][0]["version"], "1", "{body}");
    assert_eq!(
        body["model_version_status"][0]["state"], "AVAILABLE",
        "{body}"
    );
    let response = reqwest::Client::new()
        .post(server.rest_url("/v1/models/add/labels/stable:predict"))
        .json(
            &serde_json::json!({"instances": [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["predictions"],
        serde_json::json!([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]])
    );

    std::fs::write(repo.config_path(), config_text(&[("add", &labels(2))])).unwrap();
    let moved = Instant::now();
    load.wait_until("the label answers from version 2", |records| {
        records
            .iter()
            .any(|r| stable(&clients[r.client]) && r.outcome == Outcome::Answered(2))
    })
    .await;
    let switched = load.first_answer(stable, 2).unwrap();
    load.wait_answers_after(stable, switched, 50).await;
    load.stop().await;
    load.assert_no_failures(|_| true);
    load.assert_all_answered_by(stable, switched, 2);
    assert_eq!(load.answered_versions(is_latest), BTreeSet::from([2]));
    let (_, body) = rest(
        reqwest::Method::GET,
        server.rest_url("/v1/models/add/labels/stable"),
    )
    .await;
    assert_eq!(body["model_version_status"][0]["version"], "2", "{body}");
    println!(
        "[labels] config edit → label answers from v2: {:.0} ms\n{}",
        switched.duration_since(moved).as_secs_f64() * 1e3,
        load.tally()
    );
}

/// 12. A model removed from the config while one of its versions is still being copied must
///     not go on watching its folder: finishing the copy afterwards loads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_model_does_not_load_a_version_finished_later() {
    let repo = Repo::new(&[("add", ""), ("identity", "")]);
    let server = Server::with_config(&repo, FAST_SETTLE);
    server.wait_loaded();
    let pid = server.child.id();
    wait_state(&server, "identity", 1, AVAILABLE).await;
    let v1 = repo.model_dir("identity").join("1");
    let v2 = repo.model_dir("identity").join("2");
    let xml = std::fs::read(v1.join("model.xml")).unwrap();
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("model.xml"), &xml[..xml.len() / 2]).unwrap();
    wait_state(&server, "identity", 2, START).await;

    std::fs::write(repo.config_path(), config_text(&[("add", "")])).unwrap();
    let mut status = server.model_client().await;
    eventually("identity removed", DEADLINE, async || {
        let gone = model_status(&mut status, "identity")
            .await
            .is_err_and(|e| e.code() == Code::NotFound);
        (gone && threads_named(pid, "ov-identi") == 0).then_some(())
    })
    .await;

    run("cp", &[&v1.join("model.xml"), &v1.join("model.bin"), &v2]);
    // Proving a non-event: two polls (each longer than the settle interval).
    server.wait_polls(2).await;
    assert_eq!(
        threads_named(pid, "ov-identi"),
        0,
        "a removed model loaded a version"
    );
    assert_eq!(
        model_status(&mut status, "identity")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}
