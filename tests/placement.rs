//! NUMA placement, verified by observation (issue #4): with `--topology`, two models planned on
//! CPU 0 and CPU 1 run their inference only there. Proven from what the kernel reports for every
//! thread of each worker process — `Cpus_allowed_list` in /proc/<pid>/task/*/status and the CPU
//! each running thread was on (stat field 39) — sampled while both models are under load, not from
//! OpenVINO's reported properties. Then: a hot-reloaded version and a restarted (killed) worker
//! keep the placement, memory is bound to the node, and the plan is visible at run time.
//!
//! Needs two CPUs (the planned ones); on a one-CPU machine it says so and passes.

mod common;

use common::requests::tensor;
use common::values::f32_bytes;
use common::{load, Repo, Server};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use vinoserve::proto::tensorflow::serving::model_spec::VersionChoice;
use vinoserve::proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use vinoserve::proto::tensorflow::serving::PredictRequest;
use vinoserve::proto::tensorflow::DataType as Tf;

const ROWS: usize = 32;
const WIDTH: usize = 1024;

fn request(model: &str) -> PredictRequest {
    let x = vec![0.25f32; ROWS * WIDTH];
    PredictRequest {
        model_spec: common::spec(model, None),
        inputs: HashMap::from([(
            "x".to_string(),
            tensor(Tf::DtFloat, &[ROWS as i64, WIDTH as i64], f32_bytes(&x)),
        )]),
        ..Default::default()
    }
}

/// What the kernel said about one worker process's threads while sampling.
#[derive(Default, Debug)]
struct Observed {
    /// Every `Cpus_allowed_list` seen, with the thread names that had it.
    masks: BTreeMap<String, BTreeSet<String>>,
    /// CPU (stat field 39) of threads seen running (state R), with sample counts.
    ran_on: BTreeMap<usize, u64>,
    /// utime + stime of all threads at the last sample, in clock ticks.
    cpu_ticks: u64,
}

/// Fields of /proc/<pid>/task/<tid>/stat after the command name (which may hold spaces):
/// index 0 is field 3 (state).
fn stat_fields(text: &str) -> Vec<String> {
    let after = &text[text.rfind(')').map_or(0, |i| i + 1)..];
    after.split_whitespace().map(str::to_string).collect()
}

fn sample_into(pid: u32, observed: &mut Observed) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    let mut ticks = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(status), Ok(stat)) = (
            std::fs::read_to_string(path.join("status")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread exited between listing and reading
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        observed
            .masks
            .entry(field("Cpus_allowed_list:"))
            .or_default()
            .insert(field("Name:"));
        let fields = stat_fields(&stat);
        let number = |field_no: usize| -> u64 { fields[field_no - 3].parse().unwrap() };
        ticks += number(14) + number(15);
        if fields[0] == "R" {
            *observed.ran_on.entry(number(39) as usize).or_default() += 1;
        }
    }
    observed.cpu_ticks = ticks;
}

/// Samples the given worker processes every 2 ms into `observed` until `stop` is set.
fn sample(
    pids: Vec<u32>,
    observed: Arc<Mutex<Vec<Observed>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for (pid, o) in pids.iter().zip(observed.lock().unwrap().iter_mut()) {
                sample_into(*pid, o);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

/// What one Predict came to: the version that answered, or the failure.
#[derive(Clone, Debug)]
enum Outcome {
    Answered(Option<i64>),
    Failed(String),
}

impl load::Outcome for Outcome {
    fn kind(&self) -> Cow<'static, str> {
        match self {
            Outcome::Answered(Some(v)) => format!("v{v}").into(),
            Outcome::Answered(None) => "unversioned".into(),
            Outcome::Failed(_) => "failed".into(),
        }
    }

    fn failure(&self) -> Option<String> {
        match self {
            Outcome::Answered(_) => None,
            Outcome::Failed(status) => Some(status.clone()),
        }
    }
}

/// A client of one model, with its own connection.
struct Caller {
    grpc: PredictionServiceClient<Channel>,
    request: PredictRequest,
}

impl load::Client for Caller {
    type Outcome = Outcome;

    async fn call(&mut self, _n: u32) -> Outcome {
        match self.grpc.predict(self.request.clone()).await {
            Ok(r) => {
                let spec = r.into_inner().model_spec;
                Outcome::Answered(spec.and_then(|s| match s.version_choice? {
                    VersionChoice::Version(v) => Some(v),
                    VersionChoice::VersionLabel(_) => None,
                }))
            }
            Err(status) => Outcome::Failed(format!("{status:?}")),
        }
    }
}

/// Two closed-loop gRPC clients per model, labelled with the model's name.
async fn load(server: &Server, models: &[&str]) -> load::Load<Outcome> {
    let mut callers = Vec::new();
    for &model in models {
        for _ in 0..2 {
            let grpc = server.predict_client().await;
            let request = request(model);
            callers.push((model.to_string(), Caller { grpc, request }));
        }
    }
    load::Load::spawn(load::Settings::default(), callers)
}

/// (successes, failures, versions that answered) per model.
type Totals = BTreeMap<String, (u64, u64, BTreeSet<i64>)>;

fn totals(load: &load::Load<Outcome>) -> Totals {
    let models: BTreeSet<String> = (0..load.clients()).map(|c| load.label(c).into()).collect();
    models
        .into_iter()
        .map(|model| {
            let tally = load.tally_of(|label| label == model);
            let versions = tally
                .kinds
                .keys()
                .filter_map(|kind| kind.strip_prefix('v')?.parse().ok())
                .collect();
            (model, (tally.successes(), tally.failures, versions))
        })
        .collect()
}

/// Waits until `load` has had `n` more successful answers than `before`.
async fn wait_answers(load: &load::Load<Outcome>, what: &str, before: u64, n: u64) {
    load.wait_tally(what, |t| t.successes() >= before + n).await
}

/// Answers each model must have had, and what the sampler must have seen of each worker,
/// before the observation ends: evidence, not a duration, so a slow or busy machine only takes
/// longer.
const ENOUGH_ANSWERS: u64 = 50;
const ENOUGH_RUNNING_SAMPLES: u64 = 5;
const ENOUGH_CPU_TICKS: u64 = 10;

/// Loads the models while sampling their workers until every worker was seen doing enough
/// work; returns what each worker did (CPU ticks counted from the start) and the answers.
async fn observe_under_load(server: &Server, workers: &[(&str, u32)]) -> (Vec<Observed>, Totals) {
    let stop = Arc::new(AtomicBool::new(false));
    let pids: Vec<u32> = workers.iter().map(|(_, pid)| *pid).collect();
    let mut before = Vec::new();
    for pid in &pids {
        let mut o = Observed::default();
        sample_into(*pid, &mut o);
        before.push(o.cpu_ticks);
    }
    let observed = Arc::new(Mutex::new(
        pids.iter().map(|_| Observed::default()).collect::<Vec<_>>(),
    ));
    let sampler = sample(pids, observed.clone(), stop.clone());
    let models: Vec<&str> = workers.iter().map(|(m, _)| *m).collect();
    let mut clients = load(server, &models).await;
    let enough = || {
        let answered = models
            .iter()
            .all(|m| clients.tally_of(|label| label == *m).successes() >= ENOUGH_ANSWERS);
        let worked = observed.lock().unwrap().iter().zip(&before).all(|(o, b)| {
            o.ran_on.values().sum::<u64>() >= ENOUGH_RUNNING_SAMPLES
                && o.cpu_ticks.saturating_sub(*b) >= ENOUGH_CPU_TICKS
        });
        answered && worked
    };
    // A fail-safe only: ends a test whose workers never run (the assertions then say what was
    // seen).
    let deadline = Instant::now() + Duration::from_secs(300);
    while !enough() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    clients.stop().await;
    sampler.join().unwrap();
    let mut observed = std::mem::take(&mut *observed.lock().unwrap());
    for (o, b) in observed.iter_mut().zip(before) {
        o.cpu_ticks -= b;
    }
    (observed, totals(&clients))
}

/// Every model had answers and no request failed.
fn assert_all_answered(totals: &Totals) {
    assert!(
        totals
            .values()
            .all(|(ok, failed, _)| *ok > 0 && *failed == 0),
        "{totals:?}"
    );
}

/// Every thread confined to `cpu`, running threads seen only there, and real work done.
fn assert_confined(model: &str, cpu: usize, observed: &Observed) {
    println!("placement: model {model}, worker threads by Cpus_allowed_list {:?}, running samples by CPU {:?}, {} CPU ticks",
        observed.masks, observed.ran_on, observed.cpu_ticks);
    let expected = cpu.to_string();
    assert!(
        observed.masks.keys().all(|m| *m == expected),
        "model {model}: every worker thread must be allowed only CPU {cpu}: {:?}",
        observed.masks
    );
    assert!(
        observed.ran_on.keys().all(|&c| c == cpu),
        "model {model}: worker threads ran off CPU {cpu}: {:?}",
        observed.ran_on
    );
    assert!(
        observed.ran_on.values().sum::<u64>() >= ENOUGH_RUNNING_SAMPLES
            && observed.cpu_ticks >= ENOUGH_CPU_TICKS,
        "model {model}: its worker hardly ran ({:?}, {} ticks): was inference done elsewhere?",
        observed.ran_on,
        observed.cpu_ticks
    );
}

/// The `SigIgn` mask of a process (bit n-1 set: signal n is ignored).
fn ignored_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .expect("SigIgn in /proc/<pid>/status");
    u64::from_str_radix(mask.trim(), 16).unwrap()
}

async fn placement(server: &Server) -> Value {
    reqwest::get(server.rest_url("/v1/placement"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn worker_of(placement: &Value, model: &str) -> (Option<u32>, u64) {
    let entry = placement["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model)
        .unwrap_or_else(|| panic!("{model} in {placement}"));
    (
        entry["worker_pid"].as_u64().map(|p| p as u32),
        entry["worker_restarts"].as_u64().unwrap(),
    )
}

/// A repository of matmul models (version 1 each), a topology file, and the server on them.
struct Placed {
    staging: tempfile::TempDir,
    repo: Repo,
    server: Server,
    _observing: std::sync::MutexGuard<'static, ()>,
}

/// The observation tests watch where threads run and how much CPU they get, so they run one at
/// a time rather than competing for the same two CPUs.
static OBSERVING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts the server with `--topology` on `models`; `None` when this machine lacks CPUs 0 and 1.
fn start_placed(models: &[&str], topology: &str) -> Option<Placed> {
    start_placed_from(None, models, topology)
}

/// [`start_placed`] with another copy of the server binary.
fn start_placed_from(
    binary: Option<&std::path::Path>,
    models: &[&str],
    topology: &str,
) -> Option<Placed> {
    if vinoserve::placement::affinity::current_cpus().len() < 2 {
        println!("placement: SKIPPED, this test needs CPUs 0 and 1");
        return None;
    }
    let observing = OBSERVING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let staging = tempfile::tempdir().unwrap();
    // A few milliseconds of work per inference on one thread, so the sampler catches
    // inference threads running.
    common::make_matmul_model(staging.path(), ROWS, WIDTH);
    let repo = Repo::new(&[]);
    let entries: Vec<String> = models
        .iter()
        .map(|m| {
            common::copy_dir(staging.path(), &repo.model_dir(m).join("1"));
            format!(r#"{{"config": {{"name": "{m}", "base_path": "models/{m}"}}}}"#)
        })
        .collect();
    let config = format!(r#"{{"model_config_list": [{}]}}"#, entries.join(", "));
    std::fs::write(repo.config_path(), config).unwrap();
    let path = repo.dir.path().join("topology.toml");
    std::fs::write(&path, topology).unwrap();
    let path = path.display().to_string();
    let flags = ["--topology", path.as_str(), "--file_settle_ms", "50"];
    let server = match binary {
        Some(binary) => Server::with_config_from(binary, &repo, &flags),
        None => Server::with_config(&repo, &flags),
    };
    server.wait_loaded();
    Some(Placed {
        staging,
        repo,
        server,
        _observing: observing,
    })
}

// The guard only keeps the observation tests apart; each test has its own runtime, so holding
// it across awaits cannot deadlock.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_on_two_cpus_run_only_there() {
    let Some(Placed {
        staging,
        repo,
        server,
        _observing,
    }) = start_placed(
        &["a", "b"],
        "[models.a]\nnode = 0\ncore_ids = [0]\n\n[models.b]\nnode = 0\ncore_ids = [1]\n",
    )
    else {
        return;
    };

    // The plan is visible at run time, with each group's worker.
    let plan = placement(&server).await;
    let (Some(pid_a), 0) = worker_of(&plan, "a") else {
        panic!("worker of a: {plan}")
    };
    let (Some(pid_b), 0) = worker_of(&plan, "b") else {
        panic!("worker of b: {plan}")
    };
    assert_eq!(plan["models"][0]["cpus"], "0", "{plan}");
    assert_eq!(plan["models"][1]["cpus"], "1", "{plan}");
    assert_ne!(pid_a, pid_b);

    // Both under load at once: each worker's threads only on its CPU.
    let (observed, totals) = observe_under_load(&server, &[("a", pid_a), ("b", pid_b)]).await;
    println!("placement: requests (ok, failed, versions) {totals:?}");
    assert_all_answered(&totals);
    assert_confined("a", 0, &observed[0]);
    assert_confined("b", 1, &observed[1]);

    // Memory bound to node 0, where the kernel supports NUMA policies.
    for pid in [pid_a, pid_b] {
        match std::fs::read_to_string(format!("/proc/{pid}/numa_maps")) {
            Ok(maps) => assert!(
                maps.lines().any(|l| l.contains(" bind:0 ")),
                "worker {pid}: no mapping bound to node 0"
            ),
            Err(e) => println!("placement: no numa_maps ({e}): memory binding not checked"),
        }
    }

    // A hot-reloaded version loads in the same worker and keeps the placement.
    common::copy_dir(staging.path(), &repo.model_dir("a").join("2"));
    common::wait_state(&server, "a", 2, 30, Duration::from_secs(60)).await;
    assert_eq!(worker_of(&placement(&server).await, "a").0, Some(pid_a));
    let (observed, totals) = observe_under_load(&server, &[("a", pid_a)]).await;
    assert_eq!(totals["a"].2, BTreeSet::from([2]), "{totals:?}");
    assert_eq!(totals["a"].1, 0, "{totals:?}");
    assert_confined("a (version 2)", 0, &observed[0]);

    // Stop signals meant for the service (systemd signals the whole cgroup) leave the worker to
    // the server, which drains first. The kernel discards a signal the process ignores when it
    // is sent, so once `kill` returned there is nothing left to wait for.
    let ignored = ignored_signals(pid_a);
    for (name, number) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        assert!(
            ignored & (1 << (number - 1)) != 0,
            "the worker must ignore SIG{name}: SigIgn {ignored:#x}"
        );
    }
    assert!(Command::new("kill")
        .args(["-TERM", &pid_a.to_string()])
        .status()
        .unwrap()
        .success());
    assert_eq!(worker_of(&placement(&server).await, "a"), (Some(pid_a), 0));
    assert!(server
        .predict_client()
        .await
        .predict(request("a"))
        .await
        .is_ok());

    // A worker that dies is restarted with the same placement and its model reloaded.
    assert!(Command::new("kill")
        .args(["-9", &pid_a.to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_pid = loop {
        let plan = placement(&server).await;
        if let (Some(pid), 1) = worker_of(&plan, "a") {
            if pid != pid_a {
                break pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "worker of a not restarted: {plan}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = server.predict_client().await;
    while client.predict(request("a")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "a never answered after its worker restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (observed, totals) = observe_under_load(&server, &[("a", new_pid), ("b", pid_b)]).await;
    assert_all_answered(&totals);
    assert_confined("a (restarted worker)", 0, &observed[0]);
    assert_confined("b", 1, &observed[1]);
    let metrics = server.metrics_text().await.unwrap();
    assert!(
        metrics.contains("vinoserve_placement_worker_restarts_total{group=\"n0-c0\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("vinoserve_placement_info{cpus=\"1\",name=\"b\",node=\"0\"} 1"));
}

/// `reserved_cores`: the server's own threads (gRPC, REST, loading, watching, the request
/// workers feeding the placement worker) keep to the reserved core; the model's worker to its own.
#[allow(clippy::await_holding_lock)] // see two_models_on_two_cpus_run_only_there
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_to_its_reserved_cores() {
    let Some(Placed {
        server,
        repo,
        staging: _staging,
        _observing,
    }) = start_placed(
        &["a"],
        "reserved_cores = { 0 = 1 }\n\n[models.a]\nnode = 0\ncore_ids = [1]\n",
    )
    else {
        return;
    };
    let plan = placement(&server).await;
    assert_eq!(plan["reserved"][0]["cpus"], "0", "{plan}");
    let (Some(worker), _) = worker_of(&plan, "a") else {
        panic!("worker of a: {plan}")
    };
    let (observed, totals) = observe_under_load(&server, &[("a", worker)]).await;
    assert!(totals["a"].0 > 0 && totals["a"].1 == 0, "{totals:?}");
    assert_confined("a", 1, &observed[0]);
    let mut own = Observed::default();
    sample_into(server.child.id(), &mut own);
    println!(
        "placement: server threads by Cpus_allowed_list {:?}",
        own.masks
    );
    // Only the placement supervisors start before the server confines itself; they only fork.
    for (mask, names) in &own.masks {
        let unconfined: Vec<_> = names.iter().filter(|n| !n.starts_with("pw-")).collect();
        assert!(
            mask == "0" || unconfined.is_empty(),
            "server threads {unconfined:?} allowed CPUs {mask}, reserved is 0"
        );
    }
    assert!(
        own.masks.get("0").is_some_and(|n| n.contains("grpc")),
        "{:?}",
        own.masks
    );

    // Reserved cores edited on the running server: every server thread follows (threads
    // started earlier too); the model stays in its worker.
    let topology = repo.dir.path().join("topology.toml");
    for (text, mask) in [
        ("[models.a]\nnode = 0\ncore_ids = [1]\n", "0-1"),
        (
            "reserved_cores = { 0 = 1 }\n\n[models.a]\nnode = 0\ncore_ids = [1]\n",
            "0",
        ),
    ] {
        replace_file(&topology, text);
        common::eventually(
            &format!("every server thread allowed CPUs {mask}"),
            Duration::from_secs(60),
            async || {
                let mut own = Observed::default();
                sample_into(server.child.id(), &mut own);
                own.masks.keys().all(|m| m == mask).then_some(())
            },
        )
        .await;
        assert_eq!(worker_of(&placement(&server).await, "a").0, Some(worker));
    }
}

/// A node the kernel does not know (as under emulated topologies): the worker says it cannot bind
/// memory there and goes on serving with the default policy.
#[test]
fn a_worker_that_cannot_bind_memory_warns_and_serves() {
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::os::unix::process::CommandExt;
    use vinoserve::placement::wire::{self, FromWorker, ToWorker};

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("worker.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let fd = listener.as_raw_fd();
    let mut command = Command::new(common::binary());
    command
        .args(["placement-worker", "--group", "test", "--node", "63"])
        .stderr(std::process::Stdio::piped());
    // SAFETY: only dup2 / fcntl run between fork and exec. dup2 onto itself would keep
    // close-on-exec, so descriptor 3 is made inheritable directly then.
    unsafe {
        command.pre_exec(move || {
            let inheritable = if fd == 3 {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if inheritable < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut worker = command.spawn().unwrap();
    let mut stderr = BufReader::new(worker.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("cannot bind memory to the NUMA node") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "worker exited without the warning"
        );
    }
    assert!(line.contains("node=63"), "{line}");

    let stream = UnixStream::connect(&socket).unwrap();
    let spec = vinoserve::runtime::LoadSpec {
        model: "add".into(),
        version: 1,
        dir: common::fixtures().join("add/1"),
        device: "CPU".into(),
        plugin_config: Default::default(),
        reshape: Default::default(),
    };
    wire::send(&stream, &ToWorker::Load(spec), None).unwrap();
    let (reply, _) = wire::recv::<FromWorker>(&stream).unwrap().unwrap();
    assert!(matches!(reply, FromWorker::Loaded { .. }), "{reply:?}");
    let _ = worker.kill();
    let _ = worker.wait();
}

/// Without `--topology` there is no plan, and the endpoint says so.
#[tokio::test]
async fn without_a_topology_the_placement_endpoint_says_why() {
    let repo = Repo::new(&[("add", "")]);
    let server = Server::with_config(&repo, &[]);
    server.wait_loaded();
    let response = reqwest::get(server.rest_url("/v1/placement"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("--topology"),
        "{body}"
    );
}

/// A placement worker killed under load is invisible to clients: requests in flight in it and
/// requests that arrive while it restarts wait for the model to be back in the new worker and
/// run there (inference is idempotent); none fails. Twice in a row.
#[allow(clippy::await_holding_lock)] // see two_models_on_two_cpus_run_only_there
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_no_request() {
    let Some(Placed {
        server,
        repo: _repo,
        staging: _staging,
        _observing,
    }) = start_placed(&["a"], "[models.a]\nnode = 0\ncore_ids = [1]\n")
    else {
        return;
    };
    let mut clients = load(&server, &["a"]).await;
    let answered = || clients.tally().successes();
    for round in 0..2 {
        let (Some(pid), restarts) = worker_of(&placement(&server).await, "a") else {
            panic!("no worker for a")
        };
        let before = answered();
        wait_answers(&clients, "answers before the kill", before, 20).await;
        assert!(Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        common::eventually(
            &format!("round {round}: the worker restarted and answers flow again"),
            Duration::from_secs(120),
            async || {
                let (now, count) = worker_of(&placement(&server).await, "a");
                let killed_at = answered();
                (now.is_some_and(|p| p != pid) && count > restarts && killed_at > before + 40)
                    .then_some(())
            },
        )
        .await;
    }
    clients.stop().await;
    let totals = totals(&clients);
    assert_eq!(
        totals["a"].1, 0,
        "requests failed across two worker kills: {totals:?}"
    );
}

/// Replaces a file the way careful operators and editors do (write aside, rename over), so the
/// server never reads it half-written.
fn replace_file(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// The assignment of `model` in `GET /v1/placement`: (CPU list, worker pid).
fn placed_on(placement: &Value, model: &str) -> Option<(String, Option<u32>)> {
    let entry = placement["models"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == model)?;
    Some((
        entry["cpus"].as_str()?.to_string(),
        entry["worker_pid"].as_u64().map(|p| p as u32),
    ))
}

/// A model added to config.json at run time is placed by `[default]` before it serves: its
/// worker is on the CPU the plan gives it, away from the model already running.
#[allow(clippy::await_holding_lock)] // see two_models_on_two_cpus_run_only_there
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_added_at_run_time_is_placed_before_it_serves() {
    let Some(Placed {
        staging,
        repo,
        server,
        _observing,
    }) = start_placed(
        &["a"],
        "[default]\nnode = 0\ncores = 1\n\n[models.a]\nnode = 0\ncore_ids = [0]\n",
    )
    else {
        return;
    };
    common::copy_dir(staging.path(), &repo.model_dir("b").join("1"));
    replace_file(
        &repo.config_path(),
        r#"{"model_config_list": [
            {"config": {"name": "a", "base_path": "models/a"}},
            {"config": {"name": "b", "base_path": "models/b"}}]}"#,
    );
    common::wait_state(&server, "b", 1, 30, Duration::from_secs(120)).await;
    let plan = placement(&server).await;
    let (Some((cpus_b, Some(pid_b))), Some((cpus_a, Some(pid_a)))) =
        (placed_on(&plan, "b"), placed_on(&plan, "a"))
    else {
        panic!("a and b placed with workers: {plan}")
    };
    assert_eq!((cpus_a.as_str(), cpus_b.as_str()), ("0", "1"), "{plan}");
    assert_ne!(pid_a, pid_b);

    let (observed, totals) = observe_under_load(&server, &[("a", pid_a), ("b", pid_b)]).await;
    assert_all_answered(&totals);
    assert_confined("a", 0, &observed[0]);
    assert_confined("b (added at run time)", 1, &observed[1]);

    // No core left for a third model: it is not loaded anywhere (not unplaced in the server),
    // its status says why, and the plan in force does not change.
    common::copy_dir(staging.path(), &repo.model_dir("c").join("1"));
    replace_file(
        &repo.config_path(),
        r#"{"model_config_list": [
            {"config": {"name": "a", "base_path": "models/a"}},
            {"config": {"name": "b", "base_path": "models/b"}},
            {"config": {"name": "c", "base_path": "models/c"}}]}"#,
    );
    let error = common::eventually("c refused", Duration::from_secs(120), async || {
        let status: Value = reqwest::get(server.rest_url("/v1/models/c"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let version = &status["model_version_status"][0];
        (version["state"] == "END").then(|| version["status"]["error_message"].to_string())
    })
    .await;
    assert!(
        error.contains("not in the placement plan") && error.contains("model c"),
        "{error}"
    );
    let plan = placement(&server).await;
    assert!(plan["rejected"].as_str().is_some(), "{plan}");
    assert_eq!(placed_on(&plan, "a"), Some(("0".into(), Some(pid_a))));
    assert_eq!(placed_on(&plan, "b"), Some(("1".into(), Some(pid_b))));
}

/// A topology edit moves a running model: an unsatisfiable edit is refused whole (nothing
/// moves, the error is shown and counted), a valid one loads the model in a worker on its new
/// CPU, swaps it in and stops the old worker once drained, and no request fails meanwhile.
#[allow(clippy::await_holding_lock)] // see two_models_on_two_cpus_run_only_there
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_edit_moves_a_model_without_failing_a_request() {
    let Some(Placed {
        server,
        repo,
        staging: _staging,
        _observing,
    }) = start_placed(&["a"], "[models.a]\nnode = 0\ncore_ids = [0]\n")
    else {
        return;
    };
    let topology = repo.dir.path().join("topology.toml");
    let Some((_, Some(old_pid))) = placed_on(&placement(&server).await, "a") else {
        panic!("no worker for a")
    };
    let mut clients = load(&server, &["a"]).await;
    let more_answers = async |what: &str, n: u64| {
        wait_answers(&clients, what, clients.tally().successes(), n).await
    };
    more_answers("answers before the edits", 20).await;

    // A core this machine does not have: refused, a stays where it is.
    replace_file(&topology, "[models.a]\nnode = 0\ncore_ids = [4096]\n");
    let refused = common::eventually("the refused plan", Duration::from_secs(60), async || {
        let plan = placement(&server).await;
        let error = plan["rejected"].as_str()?.to_string();
        Some((error, plan))
    })
    .await;
    assert!(refused.0.contains("4096"), "{}", refused.0);
    assert_eq!(
        placed_on(&refused.1, "a"),
        Some(("0".into(), Some(old_pid)))
    );
    assert_eq!(
        server
            .metric(
                "vinoserve_topology_reloads_total",
                &[("result", "rejected")]
            )
            .await,
        1.0
    );
    more_answers("answers after the refused edit", 20).await;

    // What the edit will do, asked of the running server before it is made.
    let proposed = repo.dir.path().join("proposed.toml");
    std::fs::write(&proposed, "[models.a]\nnode = 0\ncore_ids = [1]\n").unwrap();
    let diff = Command::new(common::binary())
        .args(["plan", "--config"])
        .arg(repo.config_path())
        .arg("--topology")
        .arg(&proposed)
        .args(["--diff", &server.rest_url("")])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&diff.stdout);
    assert!(
        diff.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        table.contains("a      node 0 cpus 0  node 0 cpus 1  moves")
            && table.contains("1 of 1 models change"),
        "{table}"
    );

    // Moved to CPU 1 under load.
    replace_file(&topology, "[models.a]\nnode = 0\ncore_ids = [1]\n");
    let new_pid = common::eventually(
        "a moved to CPU 1 and the old worker stopped",
        Duration::from_secs(120),
        async || {
            let plan = placement(&server).await;
            let (cpus, pid) = placed_on(&plan, "a")?;
            let old_gone = !std::path::Path::new(&format!("/proc/{old_pid}")).exists();
            let drained = plan["retiring"].as_array()?.is_empty();
            (cpus == "1" && plan["rejected"].is_null() && old_gone && drained)
                .then_some(pid)
                .flatten()
        },
    )
    .await;
    more_answers("answers after the move", 20).await;
    clients.stop().await;
    let totals = totals(&clients);
    assert_eq!(
        totals["a"].1, 0,
        "requests failed during the move: {totals:?}"
    );

    let (observed, totals) = observe_under_load(&server, &[("a", new_pid)]).await;
    assert_eq!(totals["a"].1, 0, "{totals:?}");
    assert_confined("a (moved)", 1, &observed[0]);
    let metrics = server.metrics_text().await.unwrap();
    assert!(
        metrics.contains("vinoserve_placement_info{cpus=\"1\",name=\"a\",node=\"0\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("vinoserve_placement_info{cpus=\"0\",name=\"a\""),
        "{metrics}"
    );
    assert_eq!(
        server
            .metric("vinoserve_topology_reloads_total", &[("result", "changed")])
            .await,
        1.0
    );
}

/// An upgrade replaces (here: deletes) the binary under a running server: a worker that dies
/// afterwards is restarted from the server's own image, and its model answers again.
#[allow(clippy::await_holding_lock)] // see two_models_on_two_cpus_run_only_there
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarts_after_the_binary_was_replaced() {
    let copy = tempfile::tempdir().unwrap();
    let binary = copy.path().join("vinoserve");
    std::fs::copy(common::binary(), &binary).unwrap();
    let Some(Placed {
        server,
        repo: _repo,
        staging: _staging,
        _observing,
    }) = start_placed_from(
        Some(&binary),
        &["a"],
        "[models.a]\nnode = 0\ncore_ids = [1]\n",
    )
    else {
        return;
    };
    std::fs::remove_file(&binary).unwrap();
    let (Some(pid), restarts) = worker_of(&placement(&server).await, "a") else {
        panic!("no worker for a")
    };
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let mut client = server.predict_client().await;
    common::eventually(
        "a new worker, and a answering again",
        Duration::from_secs(120),
        async || {
            let (now, count) = worker_of(&placement(&server).await, "a");
            let restarted = now.is_some_and(|p| p != pid) && count > restarts;
            (restarted && client.predict(request("a")).await.is_ok()).then_some(())
        },
    )
    .await;
}
