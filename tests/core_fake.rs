//! The server core (registry, model actors, manager, worker pools) driven by the fake backend:
//! no OpenVINO, no network. The fake model answers `y = x + version`, so every answer says which
//! version served it. The fake backend reads no files, but the model actor only loads a version
//! folder that looks complete, so each version folder holds an (empty) `model.onnx`.

use actix::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vinoserve::config::{ModelConfig, ServerConfig};
use vinoserve::control::manager::{ApplyConfig, ModelManager, ReloadConfig, Sources};
use vinoserve::control::model_actor::{ActorDefaults, ModelActor, Reconcile};
use vinoserve::control::policy::VersionPolicy;
use vinoserve::error::{BackendError, ServeError};
use vinoserve::runtime::fake::FakeBackend;
use vinoserve::runtime::{Backend, LoadSpec, LoadedModel, Reshape};
use vinoserve::serving::registry::{Registry, VersionSelector, VersionState};
use vinoserve::serving::request::{infer, InferRequest};
use vinoserve::tensor::{tensor_from_slice, tensor_to_vec, DataType};

use VersionSelector::{Label, Latest, Number};

/// A fail-safe for a hung actor, far above what any wait here takes even on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A model folder with the given version folders.
fn repo(versions: &[u64]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for &v in versions {
        add_version(dir.path(), v);
    }
    dir
}

/// A complete version folder (an ONNX file has no content check; the fake backend ignores it).
fn add_version(base: &Path, version: u64) {
    let dir = base.join(version.to_string());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"").unwrap();
}

/// A version folder the fake backend refuses to load.
fn add_failing_version(base: &Path, version: u64) {
    add_version(base, version);
    std::fs::write(base.join(version.to_string()).join("FAIL"), b"").unwrap();
}

fn model(name: &str, base: &Path, policy: VersionPolicy) -> ModelConfig {
    ModelConfig {
        name: name.to_string(),
        base_path: base.to_path_buf(),
        policy,
        nireq: 1,
        device: "CPU".to_string(),
        plugin_config: BTreeMap::new(),
        reshape: Reshape::None,
        version_labels: BTreeMap::new(),
        resize_images: false,
        batching: None,
    }
}

fn latest(n: usize) -> VersionPolicy {
    VersionPolicy::Latest { num_versions: n }
}

/// Starts a model actor on `registry` (no reconcile yet).
fn actor(
    config: ModelConfig,
    backend: Arc<dyn Backend>,
    registry: &Arc<Registry>,
    queue_bound: usize,
) -> Addr<ModelActor> {
    ModelActor::new(
        config,
        backend,
        registry.clone(),
        ActorDefaults {
            queue_bound,
            inline_limit: None,
            settle: Duration::ZERO,
        },
    )
    .start()
}

fn manager(backend: &FakeBackend, registry: &Arc<Registry>) -> Addr<ModelManager> {
    ModelManager::new(
        Arc::new(backend.clone()),
        registry.clone(),
        ActorDefaults {
            queue_bound: 8,
            inline_limit: None,
            settle: Duration::ZERO,
        },
        Sources::default(),
        None,
    )
    .start()
}

fn server(models: Vec<ModelConfig>) -> ApplyConfig {
    ApplyConfig(ServerConfig { models })
}

/// Sends `x` through the whole request path; answers (serving version, y).
async fn ask(
    registry: &Registry,
    model: &str,
    version: VersionSelector,
    x: f32,
) -> Result<(u64, f32), ServeError> {
    let request = InferRequest {
        model: model.to_string(),
        version,
        inputs: vec![(
            "x".to_string(),
            tensor_from_slice(DataType::F32, vec![1], &[x]),
        )],
        output_filter: vec![],
    };
    let response = infer(registry, request).await?;
    assert_eq!(response.model, model);
    assert_eq!(response.outputs.len(), 1);
    assert_eq!(response.outputs[0].0, "y");
    let y = tensor_to_vec::<f32>(&response.outputs[0].1).unwrap();
    assert_eq!(y.len(), 1);
    Ok((response.version, y[0]))
}

fn state(registry: &Registry, model: &str, version: u64) -> Option<VersionState> {
    registry
        .model(model)
        .and_then(|m| m.versions.get(&version).map(|v| v.state))
}

/// The versions the registry knows for a model, with their states.
fn states(registry: &Registry, model: &str) -> Vec<(u64, VersionState)> {
    registry
        .model(model)
        .map(|m| m.versions.values().map(|v| (v.version, v.state)).collect())
        .unwrap_or_default()
}

/// Polls `condition` (yielding to the actors between tries) until it holds; fails after 5 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

fn loads(backend: &FakeBackend) -> usize {
    backend.control.loads.load(Ordering::SeqCst)
}

fn waiting(backend: &FakeBackend) -> usize {
    backend.control.waiting.load(Ordering::SeqCst)
}

/// Loads each version from its own fake backend, so one version's inferences can be held at a
/// gate while another version loads (loading warms up through the gate too).
struct PerVersion(BTreeMap<u64, FakeBackend>);

impl Backend for PerVersion {
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LoadedModel>, BackendError> {
        self.0[&spec.version].load(spec)
    }
}

#[actix_rt::test]
async fn latest_one_loads_only_the_highest_version() {
    let dir = repo(&[1, 2, 3]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), latest(1)),
        Arc::new(backend.clone()),
        &registry,
        8,
    );
    let report = addr.send(Reconcile).await.unwrap();
    assert_eq!(report.loaded, vec![3]);
    assert!(report.failed.is_empty() && report.retired.is_empty());
    assert_eq!(loads(&backend), 1);
    assert_eq!(
        states(&registry, "m"),
        vec![(3, VersionState::Available)],
        "versions 1 and 2 were never loaded, so the registry does not list them"
    );

    assert_eq!(ask(&registry, "m", Latest, 10.0).await, Ok((3, 13.0)));
    assert_eq!(ask(&registry, "m", Number(3), 1.5).await, Ok((3, 4.5)));
    for version in [1, 2] {
        assert_eq!(
            ask(&registry, "m", Number(version), 0.0).await,
            Err(ServeError::VersionNotFound {
                model: "m".into(),
                version
            })
        );
    }
    assert_eq!(
        ask(&registry, "other", Latest, 0.0).await,
        Err(ServeError::ModelNotFound {
            model: "other".into()
        })
    );
}

#[actix_rt::test]
async fn policy_all_serves_every_version() {
    let dir = repo(&[1, 2, 3]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), VersionPolicy::All {}),
        Arc::new(backend.clone()),
        &registry,
        8,
    );
    let report = addr.send(Reconcile).await.unwrap();
    assert_eq!(report.loaded, vec![1, 2, 3]);
    assert_eq!(loads(&backend), 3);
    assert_eq!(
        states(&registry, "m"),
        vec![
            (1, VersionState::Available),
            (2, VersionState::Available),
            (3, VersionState::Available)
        ]
    );
    for v in [1, 2, 3] {
        assert_eq!(
            ask(&registry, "m", Number(v), 100.0).await,
            Ok((v, 100.0 + v as f32))
        );
    }
    assert_eq!(ask(&registry, "m", Latest, 0.0).await, Ok((3, 3.0)));
}

#[actix_rt::test]
async fn policy_specific_serves_exactly_the_listed_versions_on_disk() {
    let dir = repo(&[1, 2, 3]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let policy = VersionPolicy::Specific {
        versions: vec![1, 3, 7],
    };
    let addr = actor(
        model("m", dir.path(), policy),
        Arc::new(backend.clone()),
        &registry,
        8,
    );
    let report = addr.send(Reconcile).await.unwrap();
    assert_eq!(report.loaded, vec![1, 3]);
    assert_eq!(loads(&backend), 2);
    assert_eq!(
        states(&registry, "m"),
        vec![(1, VersionState::Available), (3, VersionState::Available)]
    );
    assert_eq!(ask(&registry, "m", Number(1), 0.0).await, Ok((1, 1.0)));
    assert_eq!(ask(&registry, "m", Number(3), 0.0).await, Ok((3, 3.0)));
    assert_eq!(ask(&registry, "m", Latest, 0.0).await, Ok((3, 3.0)));
    // 2 is on disk but not listed; 7 is listed but not on disk.
    for version in [2, 7] {
        assert_eq!(
            ask(&registry, "m", Number(version), 0.0).await,
            Err(ServeError::VersionNotFound {
                model: "m".into(),
                version
            })
        );
    }
}

#[actix_rt::test]
async fn policy_latest_two_serves_the_two_highest() {
    let dir = repo(&[1, 2, 3]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), latest(2)),
        Arc::new(backend.clone()),
        &registry,
        8,
    );
    let report = addr.send(Reconcile).await.unwrap();
    assert_eq!(report.loaded, vec![2, 3]);
    assert_eq!(loads(&backend), 2);
    assert_eq!(
        states(&registry, "m"),
        vec![(2, VersionState::Available), (3, VersionState::Available)]
    );
    assert_eq!(ask(&registry, "m", Number(2), 0.5).await, Ok((2, 2.5)));
    assert_eq!(ask(&registry, "m", Latest, 0.5).await, Ok((3, 3.5)));
    assert_eq!(
        ask(&registry, "m", Number(1), 0.0).await,
        Err(ServeError::VersionNotFound {
            model: "m".into(),
            version: 1
        })
    );
}

#[actix_rt::test]
async fn failing_new_version_keeps_the_old_one_serving() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), latest(1)),
        Arc::new(backend.clone()),
        &registry,
        8,
    );
    assert_eq!(addr.send(Reconcile).await.unwrap().loaded, vec![1]);

    add_failing_version(dir.path(), 2);
    let report = addr.send(Reconcile).await.unwrap();
    assert!(report.loaded.is_empty(), "{report:?}");
    assert!(report.retired.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, 2);

    let status = registry.model("m").unwrap();
    let v2 = &status.versions[&2];
    assert_eq!(v2.state, VersionState::End);
    assert!(v2.servable.is_none());
    let error = v2.error.as_deref().expect("the failed load says why");
    assert!(error.contains("FAIL"), "{error}");
    assert_eq!(error, report.failed[0].1);
    assert_eq!(status.versions[&1].state, VersionState::Available);

    assert_eq!(ask(&registry, "m", Latest, 5.0).await, Ok((1, 6.0)));
    assert_eq!(ask(&registry, "m", Number(1), 5.0).await, Ok((1, 6.0)));
    assert_eq!(
        ask(&registry, "m", Number(2), 5.0).await,
        Err(ServeError::VersionNotFound {
            model: "m".into(),
            version: 2
        })
    );

    // A failed version is not retried on every scan while its folder stays as it is.
    let report = addr.send(Reconcile).await.unwrap();
    assert!(!report.changed(), "{report:?}");
    assert_eq!(loads(&backend), 1);
    assert_eq!(ask(&registry, "m", Latest, 5.0).await, Ok((1, 6.0)));
}

#[actix_rt::test]
async fn failed_version_is_retried_once_its_folder_changes() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), latest(1)),
        Arc::new(backend.clone()),
        &registry,
        8,
    );
    addr.send(Reconcile).await.unwrap();
    add_failing_version(dir.path(), 2);
    assert_eq!(addr.send(Reconcile).await.unwrap().failed.len(), 1);

    std::fs::remove_file(dir.path().join("2").join("FAIL")).unwrap();
    let report = addr.send(Reconcile).await.unwrap();
    assert_eq!(report.loaded, vec![2], "{report:?}");
    assert_eq!(report.retired, vec![1], "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let v2 = &registry.model("m").unwrap().versions[&2];
    assert_eq!(v2.state, VersionState::Available);
    assert!(v2.error.is_none(), "a successful load clears the old error");
    assert_eq!(ask(&registry, "m", Latest, 5.0).await, Ok((2, 7.0)));
}

#[actix_rt::test]
async fn incomplete_version_folder_waits_while_the_old_version_serves() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), latest(1)),
        Arc::new(backend.clone()),
        &registry,
        8,
    );
    addr.send(Reconcile).await.unwrap();

    // A folder without model files looks like a copy in progress.
    std::fs::create_dir(dir.path().join("2")).unwrap();
    let report = addr.send(Reconcile).await.unwrap();
    assert!(!report.changed(), "{report:?}");
    assert_eq!(loads(&backend), 1);
    let v2 = &registry.model("m").unwrap().versions[&2];
    assert_eq!(v2.state, VersionState::Start);
    assert!(v2.error.is_some(), "the status says what it waits for");
    assert_eq!(ask(&registry, "m", Latest, 0.0).await, Ok((1, 1.0)));
    assert_eq!(
        ask(&registry, "m", Number(2), 0.0).await,
        Err(ServeError::VersionNotLoadedYet {
            model: "m".into(),
            version: 2
        })
    );
}

#[actix_rt::test]
async fn retired_version_drains_its_in_flight_request_then_unloads() {
    let dir = repo(&[1]);
    let old = FakeBackend::default();
    let new = FakeBackend::default();
    let backend = PerVersion(BTreeMap::from([(1, old.clone()), (2, new.clone())]));
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), latest(1)),
        Arc::new(backend),
        &registry,
        8,
    );
    assert_eq!(addr.send(Reconcile).await.unwrap().loaded, vec![1]);

    old.control.close_gate();
    let in_flight = {
        let registry = registry.clone();
        actix_rt::spawn(async move { ask(&registry, "m", Latest, 1.0).await })
    };
    wait_until("the v1 request to reach the gate", || waiting(&old) == 1).await;

    add_version(dir.path(), 2);
    let report = addr.send(Reconcile).await.unwrap();
    assert_eq!(report.loaded, vec![2]);
    assert_eq!(report.retired, vec![1]);

    // The swap is immediate for new requests, even though v1 still has one in flight.
    assert_eq!(ask(&registry, "m", Latest, 1.0).await, Ok((2, 3.0)));
    assert_eq!(
        ask(&registry, "m", Number(1), 1.0).await,
        Err(ServeError::VersionRetired {
            model: "m".into(),
            version: 1
        })
    );
    assert_eq!(state(&registry, "m", 1), Some(VersionState::Unloading));
    assert_eq!(state(&registry, "m", 2), Some(VersionState::Available));
    assert!(!in_flight.is_finished());
    assert_eq!(waiting(&old), 1);

    old.control.open_gate();
    let answer = actix_rt::time::timeout(TIMEOUT, in_flight)
        .await
        .expect("the drained request finishes")
        .unwrap();
    assert_eq!(answer, Ok((1, 2.0)));
    wait_until("v1 to reach END once its workers are joined", || {
        state(&registry, "m", 1) == Some(VersionState::End)
    })
    .await;
    let status = registry.model("m").unwrap();
    assert!(status.versions[&1].servable.is_none());
    assert!(status.versions[&1].error.is_none());
    assert_eq!(
        ask(&registry, "m", Number(1), 1.0).await,
        Err(ServeError::VersionRetired {
            model: "m".into(),
            version: 1
        })
    );
    assert_eq!(ask(&registry, "m", Latest, 1.0).await, Ok((2, 3.0)));
}

#[actix_rt::test]
async fn deleting_the_only_version_leaves_no_version_available() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), latest(1)),
        Arc::new(backend.clone()),
        &registry,
        8,
    );
    assert_eq!(addr.send(Reconcile).await.unwrap().loaded, vec![1]);
    assert_eq!(ask(&registry, "m", Latest, 0.0).await, Ok((1, 1.0)));

    std::fs::remove_dir_all(dir.path().join("1")).unwrap();
    let report = addr.send(Reconcile).await.unwrap();
    assert_eq!(report.retired, vec![1]);
    assert!(report.loaded.is_empty() && report.failed.is_empty());

    let no_version = Err(ServeError::NoVersionAvailable {
        model: "m".into(),
        loading: false,
    });
    assert_eq!(ask(&registry, "m", Latest, 0.0).await, no_version);
    assert_eq!(
        ask(&registry, "m", Number(1), 0.0).await,
        Err(ServeError::VersionRetired {
            model: "m".into(),
            version: 1
        })
    );
    wait_until("v1 to reach END", || {
        state(&registry, "m", 1) == Some(VersionState::End)
    })
    .await;
    assert_eq!(ask(&registry, "m", Latest, 0.0).await, no_version);
}

#[actix_rt::test]
async fn apply_config_adds_models_and_keeps_unchanged_ones_loaded() {
    let dir_a = repo(&[1]);
    let dir_b = repo(&[4]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let manager = manager(&backend, &registry);
    let a = model("a", dir_a.path(), latest(1));
    let b = model("b", dir_b.path(), latest(1));

    let reports = manager.send(server(vec![a.clone()])).await.unwrap();
    assert_eq!(reports.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(reports["a"].loaded, vec![1]);
    assert_eq!(loads(&backend), 1);
    assert_eq!(
        ask(&registry, "b", Latest, 0.0).await,
        Err(ServeError::ModelNotFound { model: "b".into() })
    );

    // Same config again: nothing reloads.
    let reports = manager.send(server(vec![a.clone()])).await.unwrap();
    assert!(!reports["a"].changed(), "{reports:?}");
    assert_eq!(loads(&backend), 1);
    assert_eq!(ask(&registry, "a", Latest, 0.0).await, Ok((1, 1.0)));

    // Adding b loads only b.
    let reports = manager.send(server(vec![a, b])).await.unwrap();
    assert!(!reports["a"].changed(), "{reports:?}");
    assert_eq!(reports["b"].loaded, vec![4]);
    assert_eq!(loads(&backend), 2);
    assert_eq!(ask(&registry, "a", Latest, 0.0).await, Ok((1, 1.0)));
    assert_eq!(ask(&registry, "b", Latest, 0.0).await, Ok((4, 4.0)));
}

/// Bug: the manager removes the model from the registry, but the actor's `RetireAll` then calls
/// `set_state`, and `Registry::update` re-creates the model (version 1 UNLOADING, later END).
#[actix_rt::test]
async fn apply_config_removing_a_model_answers_model_not_found() {
    let dir_a = repo(&[1]);
    let dir_b = repo(&[4]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let manager = manager(&backend, &registry);
    let a = model("a", dir_a.path(), latest(1));
    let b = model("b", dir_b.path(), latest(1));
    manager.send(server(vec![a, b.clone()])).await.unwrap();
    assert_eq!(ask(&registry, "a", Latest, 0.0).await, Ok((1, 1.0)));
    let a_v1 = Arc::downgrade(&registry.resolve("a", &Latest).unwrap());

    let reports = manager.send(server(vec![b])).await.unwrap();
    assert_eq!(reports.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(loads(&backend), 2, "removing a model reloads nothing");
    assert_eq!(ask(&registry, "b", Latest, 0.0).await, Ok((4, 4.0)));

    // Once the removed model's actor has retired its version, nothing holds the servable.
    wait_until("a's servable to be released", || a_v1.strong_count() == 0).await;
    assert!(
        registry.model("a").is_none(),
        "a removed model must not be listed, found versions {:?}",
        states(&registry, "a")
    );
    assert_eq!(
        ask(&registry, "a", Latest, 0.0).await,
        Err(ServeError::ModelNotFound { model: "a".into() })
    );
}

/// A config change that alters how versions load rebuilds them beside the old instances.
#[actix_rt::test]
async fn changed_model_keeps_serving_while_its_new_config_loads() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let manager = manager(&backend, &registry);
    let before = model("m", dir.path(), latest(1));
    let after = ModelConfig {
        nireq: 2,
        ..before.clone()
    };
    manager.send(server(vec![before])).await.unwrap();
    assert_eq!(registry.resolve("m", &Latest).unwrap().workers(), 1);

    // Hold the new load at its warm-up inference.
    backend.control.close_gate();
    let applying = manager.send(server(vec![after]));
    let applying = actix_rt::spawn(applying);
    wait_until("the new config's warm-up to reach the gate", || {
        waiting(&backend) == 1
    })
    .await;
    let serving = registry.resolve("m", &Latest).map(|s| s.workers());
    assert_eq!(
        serving,
        Ok(1),
        "the old config must serve until the new one is up; versions {:?}",
        states(&registry, "m")
    );

    backend.control.open_gate();
    let reports = actix_rt::time::timeout(TIMEOUT, applying)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reports["m"].loaded, vec![1]);
    assert_eq!(registry.resolve("m", &Latest).unwrap().workers(), 2);
    assert_eq!(ask(&registry, "m", Latest, 0.0).await, Ok((1, 1.0)));
}

/// `resize_images` changes how requests are read, not the model: a change reaches the serving
/// instance at once, without a reload.
#[actix_rt::test]
async fn resize_images_applies_to_the_serving_instance_without_a_reload() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let manager = manager(&backend, &registry);
    let off = model("m", dir.path(), latest(1));
    let on = ModelConfig {
        resize_images: true,
        ..off.clone()
    };
    manager.send(server(vec![on.clone()])).await.unwrap();
    let serving = registry.resolve("m", &Latest).unwrap();
    assert!(
        serving.resize_images(),
        "set from the config it loaded under"
    );

    for (config, want) in [(off, false), (on, true)] {
        let reports = manager.send(server(vec![config])).await.unwrap();
        assert!(reports["m"].loaded.is_empty(), "{:?}", reports["m"]);
        let now = registry.resolve("m", &Latest).unwrap();
        assert!(Arc::ptr_eq(&serving, &now), "the same instance serves");
        assert_eq!(now.resize_images(), want);
    }
    assert_eq!(loads(&backend), 1);
}

#[actix_rt::test]
async fn full_queue_refuses_at_once_and_queued_requests_complete() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let addr = actor(
        model("m", dir.path(), latest(1)),
        Arc::new(backend.clone()),
        &registry,
        2,
    );
    assert_eq!(addr.send(Reconcile).await.unwrap().loaded, vec![1]);
    let servable = registry.resolve("m", &Latest).unwrap();
    assert_eq!((servable.workers(), servable.queue_bound()), (1, 2));
    let warmed_up = backend.control.inferences.load(Ordering::SeqCst);

    backend.control.close_gate();
    let spawn = |x: f32| {
        let registry = registry.clone();
        actix_rt::spawn(async move { ask(&registry, "m", Latest, x).await })
    };
    let running = spawn(10.0);
    wait_until("the first request to hold the worker", || {
        waiting(&backend) == 1
    })
    .await;
    let queued = [spawn(20.0), spawn(30.0)];
    wait_until("two requests to be queued", || servable.queued() == 2).await;

    let refused = actix_rt::time::timeout(TIMEOUT, ask(&registry, "m", Latest, 40.0))
        .await
        .expect("a full queue refuses at once");
    assert_eq!(
        refused,
        Err(ServeError::QueueFull {
            model: "m".into(),
            version: 1,
            bound: 2
        })
    );

    backend.control.open_gate();
    let mut answers = Vec::new();
    for handle in std::iter::once(running).chain(queued) {
        let answer = actix_rt::time::timeout(TIMEOUT, handle).await.unwrap();
        answers.push(answer.unwrap());
    }
    assert_eq!(answers, vec![Ok((1, 11.0)), Ok((1, 21.0)), Ok((1, 31.0))]);
    assert_eq!(
        backend.control.inferences.load(Ordering::SeqCst) - warmed_up,
        3,
        "the refused request never reached a worker"
    );
}

#[actix_rt::test]
async fn labels_resolve_to_their_version() {
    let dir = repo(&[1, 2]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let config = ModelConfig {
        version_labels: BTreeMap::from([("stable".to_string(), 1), ("next".to_string(), 9)]),
        ..model("m", dir.path(), VersionPolicy::All {})
    };
    let addr = actor(config, Arc::new(backend.clone()), &registry, 8);
    assert_eq!(addr.send(Reconcile).await.unwrap().loaded, vec![1, 2]);

    assert_eq!(
        ask(&registry, "m", Label("stable".into()), 0.25).await,
        Ok((1, 1.25))
    );
    assert_eq!(ask(&registry, "m", Latest, 0.25).await, Ok((2, 2.25)));
    assert_eq!(
        ask(&registry, "m", Label("canary".into()), 0.0).await,
        Err(ServeError::LabelNotFound {
            model: "m".into(),
            label: "canary".into()
        })
    );
    // A label that points at a version that is not served.
    assert_eq!(
        ask(&registry, "m", Label("next".into()), 0.0).await,
        Err(ServeError::VersionNotFound {
            model: "m".into(),
            version: 9
        })
    );
}

/// A version that failed for a reason outside its folder is not retried while its files stay
/// the same (no retry storm on every rescan), but every explicit reload (SIGHUP,
/// `POST /v1/config/reload`, `HandleReloadConfigRequest`) tries it again; a reload that fails
/// the same way again reports no change.
#[actix_rt::test]
async fn an_explicit_reload_retries_a_failed_version() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let manager = manager(&backend, &registry);
    backend.control.failing.store(true, Ordering::SeqCst);
    let reports = manager
        .send(server(vec![model("m", dir.path(), latest(1))]))
        .await
        .unwrap();
    assert_eq!(reports["m"].failed.len(), 1, "{reports:?}");
    assert_eq!(states(&registry, "m"), vec![(1, VersionState::End)]);

    let again = manager.send(ReloadConfig).await.unwrap().unwrap();
    assert!(
        !again.changed,
        "the same failure again is no change: {:?}",
        again.reports
    );
    assert_eq!(again.reports["m"].failed.len(), 1);

    backend.control.failing.store(false, Ordering::SeqCst);
    let before = loads(&backend);
    let rescanned = manager
        .send(server(vec![model("m", dir.path(), latest(1))]))
        .await;
    assert!(
        rescanned.unwrap()["m"].loaded.is_empty(),
        "unchanged files: no retry"
    );
    assert_eq!(loads(&backend), before);
    let fixed = manager.send(ReloadConfig).await.unwrap().unwrap();
    assert!(fixed.changed);
    assert_eq!(fixed.reports["m"].loaded, vec![1]);
    assert_eq!(ask(&registry, "m", Latest, 1.0).await, Ok((1, 2.0)));
}

/// The model actor never waits for a load: while a version's load is held (its warm-up waits at
/// the fake backend's gate, for as long as the test wants), deleting another version retires it
/// and a config that drops the model takes effect; the held load, finished later, is discarded.
/// Were the actor waiting, these would wait for the gate, which opens only at the end.
#[actix_rt::test]
async fn retirements_and_removals_do_not_wait_for_a_load() {
    let dir = repo(&[1, 2]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let manager = manager(&backend, &registry);
    let all = VersionPolicy::All {};
    manager
        .send(server(vec![model("m", dir.path(), all.clone())]))
        .await
        .unwrap();
    backend.control.close_gate();
    add_version(dir.path(), 3);
    let loading = actix_rt::spawn(manager.send(server(vec![model("m", dir.path(), all.clone())])));
    wait_until("version 3's warm-up to reach the gate", || {
        waiting(&backend) == 1
    })
    .await;

    // Its folder deleted, version 1 is retired at once (version 2 serves). The reply of this
    // reconcile waits for version 3's load, which it found under way.
    std::fs::remove_dir_all(dir.path().join("1")).unwrap();
    let rescan = actix_rt::spawn(manager.send(server(vec![model("m", dir.path(), all.clone())])));
    wait_until("version 1 retired", || {
        states(&registry, "m")
            .iter()
            .any(|&(v, s)| v == 1 && s != VersionState::Available)
    })
    .await;
    assert_eq!(waiting(&backend), 1, "version 3 is still loading");

    let dropped = manager.send(server(vec![]));
    actix_rt::time::timeout(TIMEOUT, dropped)
        .await
        .unwrap()
        .unwrap();
    assert!(registry.model("m").is_none(), "the model is gone at once");

    backend.control.open_gate();
    for reply in [loading, rescan] {
        actix_rt::time::timeout(TIMEOUT, reply)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert!(
        registry.model("m").is_none(),
        "a load finished after removal is not published"
    );
}

/// A load that panics ends its version in END with the panic's message (it stayed LOADING
/// forever), and the next explicit reload tries it again.
#[actix_rt::test]
async fn a_load_that_panics_ends_in_end_and_is_retried() {
    let dir = repo(&[1]);
    let backend = FakeBackend::default();
    let registry = Arc::new(Registry::new());
    let manager = manager(&backend, &registry);
    backend.control.panicking.store(true, Ordering::SeqCst);
    let reports = manager
        .send(server(vec![model("m", dir.path(), latest(1))]))
        .await
        .unwrap();
    let (version, error) = &reports["m"].failed[0];
    assert_eq!(*version, 1);
    assert!(
        error.contains("fake runtime crash requested by the test"),
        "{error}"
    );
    let status = &registry.model("m").unwrap().versions[&1];
    assert_eq!(status.state, VersionState::End);
    assert!(status.error.as_deref().unwrap().contains("panicked"));

    backend.control.panicking.store(false, Ordering::SeqCst);
    let fixed = manager.send(ReloadConfig).await.unwrap().unwrap();
    assert_eq!(fixed.reports["m"].loaded, vec![1]);
    assert_eq!(ask(&registry, "m", Latest, 1.0).await, Ok((1, 2.0)));
}
