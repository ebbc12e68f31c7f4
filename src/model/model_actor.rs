//! One actor per model: owns that model's versions through load → warm up → publish → retire →
//! drain → unload. Loading runs on its own thread; the actor only routes and owns lifetimes.

use crate::config::ModelConfig;
use crate::model::registry::{Registry, VersionState, VersionStatus};
use crate::model::servable::{PoolSpec, Servable};
use crate::model::versions::{versions_to_load, versions_to_retire};
use crate::repository::{scan_versions, version_dir};
use crate::runtime::{Backend, LoadSpec};
use actix::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Settings shared by every model's worker pools.
#[derive(Clone)]
pub struct PoolDefaults {
    pub queue_bound: usize,
}

/// What one reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub loaded: Vec<u64>,
    pub failed: Vec<(u64, String)>,
    pub retired: Vec<u64>,
}

impl ReconcileReport {
    pub fn changed(&self) -> bool {
        !self.loaded.is_empty() || !self.failed.is_empty() || !self.retired.is_empty()
    }
}

/// Scan the model's folder and bring loaded versions in line with the policy.
#[derive(Message)]
#[rtype(result = "ReconcileReport")]
pub struct Reconcile;

/// Retire every version (model removed or server stopping).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireAll;

/// A retired version's last request finished and its resources are freed.
#[derive(Message)]
#[rtype(result = "()")]
struct VersionUnloaded(u64);

pub struct ModelActor {
    config: ModelConfig,
    backend: Arc<dyn Backend>,
    registry: Arc<Registry>,
    pools: PoolDefaults,
    /// The actor's own handle on each serving version; the registry holds another.
    loaded: BTreeMap<u64, Arc<Servable>>,
    /// Versions whose last load failed; not retried until their folder changes.
    failed: BTreeSet<u64>,
}

type LoadOutcome = (u64, Result<Servable, String>);

impl ModelActor {
    pub fn new(
        config: ModelConfig,
        backend: Arc<dyn Backend>,
        registry: Arc<Registry>,
        pools: PoolDefaults,
    ) -> ModelActor {
        let labels = config.version_labels.clone();
        registry.update(&config.name, |m| m.labels = labels.clone());
        ModelActor {
            config,
            backend,
            registry,
            pools,
            loaded: BTreeMap::new(),
            failed: BTreeSet::new(),
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
        self.registry.update(&self.config.name, |m| {
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
    fn spawn_load(&self, version: u64, me: Addr<ModelActor>) -> oneshot::Receiver<LoadOutcome> {
        let (tx, rx) = oneshot::channel();
        let spec = LoadSpec {
            model: self.config.name.clone(),
            version,
            dir: version_dir(&self.config.base_path, version),
            device: self.config.device.clone(),
            plugin_config: self.config.plugin_config.clone(),
            reshape: self.config.reshape.clone(),
        };
        let pool = PoolSpec {
            nireq: self.config.nireq,
            queue_bound: self.pools.queue_bound,
            setup: None,
        };
        let backend = self.backend.clone();
        let spawned = std::thread::Builder::new().name(format!("load-{}", self.name())).spawn(move || {
            let started = Instant::now();
            let on_unloaded = Box::new(move || me.do_send(VersionUnloaded(version)));
            let result = Servable::load(backend.as_ref(), &spec, &pool, on_unloaded).map_err(|e| e.to_string());
            match &result {
                Ok(s) => tracing::info!(model = %spec.model, version, workers = s.workers(), ms = started.elapsed().as_millis() as u64, properties = ?s.properties, "version loaded"),
                Err(e) => tracing::error!(model = %spec.model, version, error = %e, "version failed to load"),
            }
            let _ = tx.send((version, result));
        });
        if let Err(e) = spawned {
            tracing::error!(model = %self.name(), version, error = %e, "cannot spawn loading thread");
        }
        rx
    }

    fn retire(&mut self, version: u64) {
        if self.loaded.remove(&version).is_some() {
            tracing::info!(model = %self.name(), version, "version retired; draining in-flight requests");
            self.set_state(version, VersionState::Unloading, None, None);
        }
    }

    /// Publishes load outcomes, then retires what the policy no longer wants.
    fn finish(&mut self, wanted: BTreeSet<u64>, outcomes: Vec<LoadOutcome>) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        for (version, result) in outcomes {
            match result {
                Ok(servable) => {
                    let servable = Arc::new(servable);
                    self.failed.remove(&version);
                    self.loaded.insert(version, servable.clone());
                    self.set_state(version, VersionState::Available, None, Some(servable));
                    report.loaded.push(version);
                }
                Err(error) => {
                    self.failed.insert(version);
                    self.set_state(version, VersionState::End, Some(error.clone()), None);
                    report.failed.push((version, error));
                }
            }
        }
        let serving: BTreeSet<u64> = self.loaded.keys().copied().collect();
        for version in versions_to_retire(&wanted, &serving) {
            self.retire(version);
            report.retired.push(version);
        }
        report
    }
}

impl Actor for ModelActor {
    type Context = Context<Self>;
}

impl Handler<Reconcile> for ModelActor {
    type Result = AtomicResponse<Self, ReconcileReport>;

    fn handle(&mut self, _: Reconcile, ctx: &mut Context<Self>) -> Self::Result {
        let on_disk = match scan_versions(&self.config.base_path) {
            Ok(v) => {
                self.registry.update(&self.config.name, |m| m.error = None);
                v
            }
            Err(e) => {
                let error = format!(
                    "cannot read model folder {}: {e}",
                    self.config.base_path.display()
                );
                tracing::error!(model = %self.name(), %error);
                self.registry
                    .update(&self.config.name, |m| m.error = Some(error.clone()));
                return AtomicResponse::new(Box::pin(fut::ready(ReconcileReport::default())));
            }
        };
        // A version whose folder disappeared is no longer "failed": it may come back fixed.
        self.failed.retain(|v| on_disk.contains(v));
        let wanted = self.config.policy.select(&on_disk);
        let loaded: BTreeSet<u64> = self.loaded.keys().copied().collect();
        let to_load = versions_to_load(&wanted, &loaded, &self.failed);
        for &version in &to_load {
            self.set_state(version, VersionState::Loading, None, None);
        }
        let loads: Vec<_> = to_load
            .iter()
            .map(|&v| self.spawn_load(v, ctx.address()))
            .collect();
        AtomicResponse::new(Box::pin(
            async move {
                futures::future::join_all(loads)
                    .await
                    .into_iter()
                    .filter_map(Result::ok)
                    .collect::<Vec<_>>()
            }
            .into_actor(self)
            .map(move |outcomes, act, _| act.finish(wanted, outcomes)),
        ))
    }
}

impl Handler<RetireAll> for ModelActor {
    type Result = ();

    fn handle(&mut self, _: RetireAll, _: &mut Context<Self>) {
        let versions: Vec<u64> = self.loaded.keys().copied().collect();
        for version in versions {
            self.retire(version);
        }
    }
}

impl Handler<VersionUnloaded> for ModelActor {
    type Result = ();

    fn handle(&mut self, VersionUnloaded(version): VersionUnloaded, _: &mut Context<Self>) {
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
        tracing::info!(model = %self.name(), version, "version unloaded");
    }
}
