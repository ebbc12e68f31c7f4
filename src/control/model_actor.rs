//! One actor per model: owns that model's versions through load → warm up → publish → retire →
//! drain → unload. Loading runs on its own thread; the actor only routes and owns lifetimes.
//!
//! A reconciliation compares the folder with what serves: versions the policy wants and whose
//! folder is complete (and unchanged for the settle interval) are loaded beside whatever serves,
//! published, and only then are versions the policy no longer wants retired.

use crate::config::ModelConfig;
use crate::control::versions::{needs_load, versions_to_retire};
use crate::error::BackendError;
use crate::metrics::METRICS;
use crate::repository::completeness::{files_complete, stamp, Stamp, Verdict};
use crate::repository::{scan_versions, version_dir};
use crate::runtime::{Backend, LoadSpec};
use crate::serving::registry::{Registry, VersionState, VersionStatus};
use crate::serving::servable::{PoolSpec, Servable};
use actix::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What every model actor starts with: how its versions' worker pools are sized, and how long a
/// version folder must stay unchanged before it is loaded.
#[derive(Clone)]
pub struct ActorDefaults {
    pub queue_bound: usize,
    /// Inline path limit of every version's pool (see `serving::pool`); `None` turns it off.
    pub inline_limit: Option<Duration>,
    /// How long a version folder must stay unchanged before it is loaded.
    pub settle: Duration,
}

/// What one reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub loaded: Vec<u64>,
    /// Every version that failed to load in this reconcile.
    pub failed: Vec<(u64, String)>,
    /// How many of those did not fail the same way before (a retry that fails again is no news).
    pub new_failures: usize,
    pub retired: Vec<u64>,
}

impl ReconcileReport {
    pub fn changed(&self) -> bool {
        !self.loaded.is_empty() || self.new_failures > 0 || !self.retired.is_empty()
    }
}

/// Scan the model's folder and bring serving versions in line with the policy.
#[derive(Message)]
#[rtype(result = "ReconcileReport")]
pub struct Reconcile;

/// Something under the model's folder changed; reconcile soon (coalesces bursts of events).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FolderChanged;

/// Take a new configuration for this model, then reconcile. Versions serving under a config
/// that changes how they load are rebuilt beside the old instance and swapped when ready.
#[derive(Message)]
#[rtype(result = "ReconcileReport")]
pub struct Reconfigure(pub ModelConfig);

/// The instances serving lost their runtime (a placement worker died): load every version
/// again beside them and swap when ready, as for a config change.
#[derive(Message)]
#[rtype(result = "ReconcileReport")]
pub struct Rebuild;

/// Forget which versions failed to load, so the next reconcile tries them again (an explicit
/// reload: the operator may have fixed what no file stamp shows, e.g. a missing library).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetryFailed;

/// Retire every version (model removed or server stopping).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireAll;

/// A retired instance's last request finished and its resources are freed.
#[derive(Message)]
#[rtype(result = "()")]
struct InstanceUnloaded(u64);

/// A serving version: its servable, and what it was loaded from (files, config generation).
struct Serving {
    servable: Arc<Servable>,
    stamp: Stamp,
    generation: u64,
}

/// Distinguishes actor generations of one model name in the registry.
static NEXT_ACTOR_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct ModelActor {
    /// This actor's registry ownership token.
    id: u64,
    config: ModelConfig,
    /// Bumped when a config change alters how versions load (nireq, properties, shape, path).
    generation: u64,
    backend: Arc<dyn Backend>,
    registry: Arc<Registry>,
    pools: ActorDefaults,
    serving: BTreeMap<u64, Serving>,
    /// Versions whose last load failed: retried on change only.
    failed: BTreeMap<u64, Failure>,
    rescan_scheduled: bool,
    /// Versions being loaded now, with the config generation they load under.
    loading: BTreeMap<u64, u64>,
    /// Reconciles that found a version already loading, told how its load ended.
    waiters: BTreeMap<u64, Vec<oneshot::Sender<Result<(), String>>>>,
    /// The base folder's last read error, logged once until it changes.
    folder_error: Option<String>,
    /// Set by `RetireAll` (model removed, or shutdown): the actor no longer reconciles, so a
    /// removed model's pending rescans cannot load versions nobody can reach.
    retired_all: bool,
    /// When each draining instance stopped taking new requests, for the unload log line.
    /// Keyed by version: a version drains at most one instance at a time in practice, and if
    /// two overlap the earlier start is kept.
    draining_since: BTreeMap<u64, Instant>,
}

/// What the version folders look like right now.
struct Survey {
    on_disk: BTreeSet<u64>,
    /// Complete and settled, with the stamp they would be loaded from.
    ready: BTreeMap<u64, Stamp>,
    /// Present but not loadable yet, with the reason.
    waiting: BTreeMap<u64, String>,
    /// Complete versions still being written to: how long until they have been quiet enough.
    settling: BTreeMap<u64, Duration>,
    /// Quiet folders holding no model (or several): failed, with the folder's stamp.
    no_model: BTreeMap<u64, (Stamp, String)>,
}

/// A version whose last load failed.
struct Failure {
    /// The folder stamp and config generation it failed with; `None` once an explicit reload
    /// or a config change asks for another try.
    tried: Option<(Stamp, u64)>,
    error: String,
}

/// Why a complete version folder is not loaded yet.
const SETTLING: &str = "files are still changing";

/// A version ready to load: folder stamp at the time it was judged complete.
/// What a loading thread reports: the version, the folder stamp it was judged complete with,
/// the config generation it was loaded under, and the servable or why not.
type LoadOutcome = (u64, Stamp, u64, Result<Servable, String>);

fn loads_differently(a: &ModelConfig, b: &ModelConfig) -> bool {
    a.base_path != b.base_path
        || a.nireq != b.nireq
        || a.device != b.device
        || a.plugin_config != b.plugin_config
        || a.reshape != b.reshape
        || a.batching != b.batching
}

impl ModelActor {
    pub fn new(
        config: ModelConfig,
        backend: Arc<dyn Backend>,
        registry: Arc<Registry>,
        pools: ActorDefaults,
    ) -> ModelActor {
        let labels = config.version_labels.clone();
        let id = NEXT_ACTOR_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        registry.register(&config.name, id, labels);
        ModelActor {
            id,
            config,
            generation: 0,
            backend,
            registry,
            pools,
            serving: BTreeMap::new(),
            failed: BTreeMap::new(),
            rescan_scheduled: false,
            loading: BTreeMap::new(),
            waiters: BTreeMap::new(),
            folder_error: None,
            retired_all: false,
            draining_since: BTreeMap::new(),
        }
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn set_state(
        &self,
        version: u64,
        state: VersionState,
        error: Option<String>,
        servable: Option<Arc<Servable>>,
    ) {
        self.registry.update_owned(&self.config.name, self.id, |m| {
            let entry = m
                .versions
                .entry(version)
                .or_insert_with(|| VersionStatus::new(version, state));
            entry.state = state;
            entry.error = error.clone();
            entry.servable = servable.clone();
        });
    }

    /// Starts loading one version on a named thread; the receiver yields the outcome.
    fn spawn_load(
        &self,
        version: u64,
        stamp: Stamp,
        me: Addr<ModelActor>,
    ) -> oneshot::Receiver<LoadOutcome> {
        let (tx, rx) = oneshot::channel();
        let spec = LoadSpec {
            model: self.config.name.clone(),
            version,
            dir: version_dir(&self.config.base_path, version),
            device: self.config.device.clone(),
            plugin_config: self.config.plugin_config.clone(),
            reshape: self.config.reshape.clone(),
        };
        let batching = self.config.batching.clone();
        let pool = PoolSpec {
            nireq: self.config.nireq,
            // With batching, what may wait is counted in batches (TF Serving's
            // max_enqueued_batches), as requests: batches × max_batch_size.
            queue_bound: batching
                .as_ref()
                .map_or(self.pools.queue_bound, |b| b.queue_bound()),
            #[cfg(test)]
            setup: None,
            inline_limit: self.pools.inline_limit,
            batching,
        };
        let backend = self.backend.clone();
        let generation = self.generation;
        let spawned = std::thread::Builder::new().name(format!("load-{}", self.name())).spawn(move || {
            let started = Instant::now();
            let on_unloaded = Box::new(move || me.do_send(InstanceUnloaded(version)));
            // A panic in the runtime fails this version, with its message, not the server.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Servable::load(backend.as_ref(), &spec, &pool, on_unloaded)
            }))
            .unwrap_or_else(|panic| Err(BackendError::Runtime(format!("the load panicked: {}", panic_message(&*panic)))))
            .map_err(|e| e.to_string());
            let outcome = if result.is_ok() { "success" } else { "failure" };
            METRICS.model_loads.with_label_values(&[&spec.model, outcome]).inc();
            METRICS.model_load_seconds.with_label_values(&[&spec.model]).observe(started.elapsed().as_secs_f64());
            match &result {
                Ok(s) => tracing::info!(
                    model = %spec.model, version, workers = s.workers(),
                    ms = started.elapsed().as_millis() as u64, properties = ?s.properties, "version loaded"
                ),
                Err(e) => tracing::error!(
                    model = %spec.model, version, ms = started.elapsed().as_millis() as u64, error = %e,
                    "version failed to load"
                ),
            }
            let _ = tx.send((version, stamp, generation, result));
        });
        if let Err(e) = spawned {
            tracing::error!(model = %self.name(), version, error = %e, "cannot spawn loading thread");
        }
        rx
    }

    fn retire(&mut self, version: u64) {
        if let Some(retired) = self.serving.remove(&version) {
            METRICS
                .version_swaps
                .with_label_values(&[self.name()])
                .inc();
            self.draining_since
                .entry(version)
                .or_insert_with(Instant::now);
            tracing::info!(
                model = %self.name(), version, in_flight = retired.servable.in_flight(),
                "version retired; draining in-flight requests"
            );
            self.set_state(version, VersionState::Unloading, None, None);
        }
    }

    /// Looks at every version folder: which exist, which are complete and settled (no file
    /// modified within the settle interval).
    fn survey(&self) -> std::io::Result<Survey> {
        let on_disk = scan_versions(&self.config.base_path)?;
        let mut ready = BTreeMap::new();
        let mut waiting = BTreeMap::new();
        let mut settling = BTreeMap::new();
        let mut no_model = BTreeMap::new();
        for &version in &on_disk {
            let dir = version_dir(&self.config.base_path, version);
            let Ok(current) = stamp(&dir) else { continue };
            let quiet = current.quiet_for(self.pools.settle);
            match (files_complete(&dir), quiet) {
                (Verdict::Incomplete(reason), _) => {
                    waiting.insert(
                        version,
                        format!("waiting for the version folder to be complete: {reason}"),
                    );
                }
                (_, false) => {
                    waiting.insert(version, SETTLING.to_string());
                    settling.insert(version, current.quiet_remaining(self.pools.settle));
                }
                (Verdict::Complete, true) => {
                    ready.insert(version, current);
                }
                (Verdict::NoModel(reason), true) => {
                    no_model.insert(version, (current, reason));
                }
            }
        }
        Ok(Survey {
            on_disk,
            ready,
            waiting,
            settling,
            no_model,
        })
    }

    fn needs_load(&self, version: u64, stamp: &Stamp) -> bool {
        let current = (stamp.clone(), self.generation);
        let serving = self
            .serving
            .get(&version)
            .map(|s| (s.stamp.clone(), s.generation));
        let failed = self.failed.get(&version).and_then(|f| f.tried.as_ref());
        needs_load(&current, serving.as_ref(), failed)
    }

    /// Publishes load outcomes, then retires what the policy no longer wants. Runs when loads
    /// finish, with whatever happened meanwhile: a model retired or reconfigured since drops
    /// the instances loaded for its past.
    fn finish(&mut self, outcomes: Vec<LoadOutcome>) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        for (version, stamp, generation, result) in outcomes {
            if self.loading.get(&version) == Some(&generation) {
                self.loading.remove(&version);
            }
            let waiters = self.waiters.remove(&version).unwrap_or_default();
            if self.retired_all || generation != self.generation {
                // Dropping an unpublished servable unloads it.
                tracing::info!(model = %self.name(), version, "load finished after the model was retired or reconfigured; discarded");
                continue;
            }
            match result {
                Ok(servable) => {
                    // Request-side settings come from the config the version is published under.
                    servable.set_resize_images(self.config.resize_images);
                    let servable = Arc::new(servable);
                    self.failed.remove(&version);
                    let replaced = self.serving.insert(
                        version,
                        Serving {
                            servable: servable.clone(),
                            stamp,
                            generation: self.generation,
                        },
                    );
                    self.set_state(version, VersionState::Available, None, Some(servable));
                    if let Some(old) = replaced {
                        self.draining_since
                            .entry(version)
                            .or_insert_with(Instant::now);
                        tracing::info!(
                            model = %self.name(), version, in_flight = old.servable.in_flight(),
                            "version reloaded; previous instance draining"
                        );
                    }
                    report.loaded.push(version);
                    waiters.into_iter().for_each(|w| drop(w.send(Ok(()))));
                }
                Err(error) => {
                    // A retry (explicit reload) that fails the same way is not a change.
                    let known = self.failed.get(&version).is_some_and(|f| f.error == error);
                    let failure = Failure {
                        tried: Some((stamp, self.generation)),
                        error: error.clone(),
                    };
                    self.failed.insert(version, failure);
                    match self.serving.get(&version) {
                        // A reload failed: the instance already serving stays, with the error shown.
                        Some(s) => self.set_state(
                            version,
                            VersionState::Available,
                            Some(error.clone()),
                            Some(s.servable.clone()),
                        ),
                        None => {
                            self.set_state(version, VersionState::End, Some(error.clone()), None)
                        }
                    }
                    if !known {
                        report.new_failures += 1;
                    }
                    for waiter in waiters {
                        let _ = waiter.send(Err(error.clone()));
                    }
                    report.failed.push((version, error));
                }
            }
        }
        // What the policy wants now (the folder may have changed while the loads ran).
        let Ok(on_disk) = scan_versions(&self.config.base_path) else {
            return report;
        };
        report.retired = self.retire_unwanted(&on_disk);
        // Debug: each load, swap and retirement already has its own info line.
        if report.changed() {
            tracing::debug!(model = %self.name(), loaded = ?report.loaded, failed = report.failed.len(), retired = ?report.retired, "reconciled");
        }
        report
    }

    /// Failed versions load again at the next reconcile, whatever their files; their errors are
    /// kept, to tell a new failure from the same one again.
    fn retry_failed(&mut self) {
        for failure in self.failed.values_mut() {
            failure.tried = None;
        }
    }

    /// Retires what [`versions_to_retire`] says, now; returns the versions retired.
    fn retire_unwanted(&mut self, on_disk: &BTreeSet<u64>) -> Vec<u64> {
        let wanted = self.config.policy.select(on_disk);
        let serving: BTreeSet<u64> = self.serving.keys().copied().collect();
        let retired: Vec<u64> = versions_to_retire(&wanted, &serving, on_disk)
            .into_iter()
            .collect();
        for &version in &retired {
            self.retire(version);
        }
        retired
    }

    /// A reconciliation; when a wanted folder looks complete but was modified within the settle
    /// interval, it first waits out the interval once, so a fresh copy loads in this same call.
    ///
    /// Never holds the mailbox: the answer comes when the loads it started finish, while the
    /// actor goes on handling messages (a retirement, a new config, another rescan).
    fn reconcile(&mut self, ctx: &mut Context<Self>) -> ResponseActFuture<Self, ReconcileReport> {
        if self.retired_all {
            return Box::pin(fut::ready(ReconcileReport::default()));
        }
        // The longest any wanted, complete folder still has to stay untouched.
        let settle_wait = self.survey().ok().and_then(|survey| {
            let wanted = self.config.policy.select(&survey.on_disk);
            survey
                .settling
                .iter()
                .filter(|(v, _)| wanted.contains(v))
                .map(|(_, d)| *d)
                .max()
        });
        if let Some(remaining) = settle_wait {
            // A little past the boundary, so the next survey sees the folder as quiet.
            let wait = tokio::time::sleep(remaining + Duration::from_millis(5));
            return Box::pin(
                wait.into_actor(self)
                    .then(|_, act, ctx| act.reconcile_now(ctx)),
            );
        }
        self.reconcile_now(ctx)
    }

    fn reconcile_now(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ReconcileReport> {
        let Survey {
            on_disk,
            ready,
            waiting,
            no_model,
            ..
        } = match self.survey() {
            Ok(found) => {
                if self.folder_error.take().is_some() {
                    tracing::info!(model = %self.name(), "model folder readable again");
                }
                self.registry
                    .update_owned(&self.config.name, self.id, |m| m.error = None);
                found
            }
            Err(e) => {
                let error = format!(
                    "cannot read model folder {}: {e}",
                    self.config.base_path.display()
                );
                // Once per distinct error, not on every rescan.
                if self.folder_error.as_ref() != Some(&error) {
                    tracing::error!(model = %self.name(), %error);
                    self.folder_error = Some(error.clone());
                }
                self.registry.update_owned(&self.config.name, self.id, |m| {
                    m.error = Some(error.clone())
                });
                return Box::pin(fut::ready(ReconcileReport::default()));
            }
        };
        self.failed.retain(|v, _| on_disk.contains(v));
        let wanted = self.config.policy.select(&on_disk);
        // Forget statuses of versions that vanished before they ever loaded.
        self.registry.update_owned(&self.config.name, self.id, |m| {
            m.versions
                .retain(|v, s| on_disk.contains(v) || s.state != VersionState::Start)
        });
        for (&version, reason) in &waiting {
            if wanted.contains(&version) && !self.serving.contains_key(&version) {
                self.set_state(version, VersionState::Start, Some(reason.clone()), None);
            }
        }
        if waiting.keys().any(|v| wanted.contains(v)) {
            ctx.notify_later(
                FolderChanged,
                self.pools.settle.max(Duration::from_millis(50)),
            );
        }
        // A version already loading under this config is not loaded twice: this reconcile waits
        // for that load and reports how it ended.
        type Ready = Vec<(u64, Stamp)>;
        let (to_load, already): (Ready, Ready) = ready
            .into_iter()
            .filter(|(v, s)| wanted.contains(v) && self.needs_load(*v, s))
            .partition(|(v, _)| self.loading.get(v) != Some(&self.generation));
        let waits: Vec<_> = already
            .into_iter()
            .map(|(version, _)| {
                let (tx, rx) = oneshot::channel();
                self.waiters.entry(version).or_default().push(tx);
                async move { rx.await.ok().map(|result| (version, result)) }
            })
            .collect();
        for (version, _) in &to_load {
            self.loading.insert(*version, self.generation);
            if !self.serving.contains_key(version) {
                self.set_state(*version, VersionState::Loading, None, None);
            }
        }
        // Retirements need no load: applied now, not when this reconcile's loads finish.
        let retired_now = self.retire_unwanted(&on_disk);
        let generation = self.generation;
        // A quiet folder with no model is a failed version (once per state of the folder), not
        // one to wait for: its status says what was found and what is accepted.
        let unloadable: Vec<LoadOutcome> = no_model
            .into_iter()
            .filter(|(v, (s, _))| {
                wanted.contains(v) && !self.serving.contains_key(v) && self.needs_load(*v, s)
            })
            .map(|(version, (stamp, reason))| {
                tracing::warn!(model = %self.name(), version, "version folder holds no model it can load: {reason}");
                (version, stamp, generation, Err(reason))
            })
            .collect();
        let loads: Vec<_> = to_load
            .into_iter()
            .map(|(v, s)| {
                let outcome = self.spawn_load(v, s.clone(), ctx.address());
                async move {
                    // A loading thread that ended without a word (it could not be spawned, or
                    // died past catch_unwind) fails its version instead of leaving it LOADING.
                    outcome.await.unwrap_or_else(|_| {
                        (
                            v,
                            s,
                            generation,
                            Err("the loading thread ended without a result".into()),
                        )
                    })
                }
            })
            .collect();
        Box::pin(
            async move {
                let mut outcomes = unloadable;
                outcomes.extend(futures::future::join_all(loads).await);
                let waited = futures::future::join_all(waits).await;
                (outcomes, waited)
            }
            .into_actor(self)
            .map(move |(outcomes, waited), act, _| {
                let mut report = act.finish(outcomes);
                report.retired.splice(0..0, retired_now);
                for (version, result) in waited.into_iter().flatten() {
                    match result {
                        Ok(()) => report.loaded.push(version),
                        Err(error) => report.failed.push((version, error)),
                    }
                }
                report
            }),
        )
    }
}

/// The text of a panic's payload (`panic!` with a message gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

impl Actor for ModelActor {
    type Context = Context<Self>;
}

impl Handler<Reconcile> for ModelActor {
    type Result = ResponseActFuture<Self, ReconcileReport>;

    fn handle(&mut self, _: Reconcile, ctx: &mut Context<Self>) -> Self::Result {
        self.reconcile(ctx)
    }
}

impl Handler<RetryFailed> for ModelActor {
    type Result = ();

    fn handle(&mut self, _: RetryFailed, _: &mut Context<Self>) {
        self.retry_failed();
    }
}

impl Handler<FolderChanged> for ModelActor {
    type Result = ();

    fn handle(&mut self, _: FolderChanged, ctx: &mut Context<Self>) {
        // A retired actor stops rescheduling itself (a waiting version re-sends FolderChanged
        // every settle interval), which also lets it stop once its last version has drained.
        if !self.rescan_scheduled && !self.retired_all {
            self.rescan_scheduled = true;
            // Coalesce the burst of events one copy makes into one rescan.
            ctx.run_later(Duration::from_millis(100), |act, ctx| {
                act.rescan_scheduled = false;
                ctx.address().do_send(Reconcile);
            });
        }
    }
}

impl Handler<Reconfigure> for ModelActor {
    type Result = ResponseActFuture<Self, ReconcileReport>;

    fn handle(
        &mut self,
        Reconfigure(config): Reconfigure,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        if loads_differently(&self.config, &config) {
            self.generation += 1;
            self.retry_failed();
        }
        let labels = config.version_labels.clone();
        self.registry
            .update_owned(&config.name, self.id, |m| m.labels = labels.clone());
        // Applies at once to what serves: it changes how requests are read, not the model.
        for serving in self.serving.values() {
            serving.servable.set_resize_images(config.resize_images);
        }
        self.config = config;
        self.reconcile(ctx)
    }
}

impl Handler<Rebuild> for ModelActor {
    type Result = ResponseActFuture<Self, ReconcileReport>;

    fn handle(&mut self, _: Rebuild, ctx: &mut Context<Self>) -> Self::Result {
        self.generation += 1;
        self.retry_failed();
        self.reconcile(ctx)
    }
}

impl Handler<RetireAll> for ModelActor {
    type Result = ();

    fn handle(&mut self, _: RetireAll, _: &mut Context<Self>) {
        self.retired_all = true;
        let versions: Vec<u64> = self.serving.keys().copied().collect();
        for version in versions {
            self.retire(version);
        }
    }
}

impl Handler<InstanceUnloaded> for ModelActor {
    type Result = ();

    fn handle(&mut self, InstanceUnloaded(version): InstanceUnloaded, _: &mut Context<Self>) {
        // A replaced instance unloads while its version keeps serving: only a retired version
        // (UNLOADING) moves on to END.
        let unloading = self
            .registry
            .model(self.name())
            .and_then(|m| {
                m.versions
                    .get(&version)
                    .map(|v| v.state == VersionState::Unloading)
            })
            .unwrap_or(false);
        if unloading {
            self.set_state(version, VersionState::End, None, None);
        }
        let drain_ms = self
            .draining_since
            .remove(&version)
            .map(|since| since.elapsed().as_millis() as u64);
        tracing::info!(model = %self.name(), version, drain_ms, "instance unloaded");
    }
}
