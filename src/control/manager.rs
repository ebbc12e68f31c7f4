//! The supervisor: owns the desired set of models (the config) and, with `--topology`, where
//! they run (the placement plan); one model actor per model, the file watchers and the periodic
//! rescan; reconciles on every event.

use crate::config::{load_config_file, ModelConfig, ServerConfig};
use crate::control::model_actor::{
    ActorDefaults, FolderChanged, ModelActor, Rebuild, Reconcile, ReconcileReport, Reconfigure,
    RetireAll, RetryFailed,
};
use crate::metrics::{ScanTrigger, METRICS};
use crate::placement::Placement;
use crate::repository::watcher::{self, Target};
use crate::runtime::Backend;
use crate::serving::registry::Registry;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub type Reports = BTreeMap<String, ReconcileReport>;

/// A model actor's answer to a reconcile request, whichever message asked for it.
type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ReconcileReport, MailboxError>>>>;

/// Make this the whole set of models: add new ones, reconfigure changed ones (new instances
/// beside the old), retire removed ones, and reconcile every model with its folder.
#[derive(Message)]
#[rtype(result = "Reports")]
pub struct ApplyConfig(pub ServerConfig);

/// Re-read the config file (SIGHUP, `POST /v1/config/reload`, a change on disk) and apply it.
/// Without a config file, rescans every model's folder. An invalid file changes nothing.
#[derive(Message)]
#[rtype(result = "Result<ReloadOutcome, String>")]
pub struct ReloadConfig;

#[derive(Debug, Default)]
pub struct ReloadOutcome {
    /// The model list or any version changed.
    pub changed: bool,
    pub reports: Reports,
}

/// Retire every model's versions (shutdown); in-flight requests finish on their own handles.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireEverything;

/// Load these models' versions again (their placement worker was restarted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RebuildModels(pub Vec<String>);

/// The config file may have changed on disk (reloaded only if its content did).
#[derive(Message)]
#[rtype(result = "()")]
struct ConfigFileTouched;

/// The topology file may have changed on disk (re-planned only if its content did).
#[derive(Message)]
#[rtype(result = "()")]
struct TopologyFileTouched;

/// Where the config comes from and how often to look again.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Batching for every model that sets none (`--enable_batching`).
    pub default_batching: Option<crate::config::batching::Batching>,
    pub config_file: Option<PathBuf>,
    /// Periodic full rescan (None = inotify only).
    pub poll: Option<Duration>,
}

pub struct ModelManager {
    backend: Arc<dyn Backend>,
    registry: Arc<Registry>,
    pools: ActorDefaults,
    sources: Sources,
    models: BTreeMap<String, (ModelConfig, Addr<ModelActor>)>,
    config_hash: Option<u64>,
    /// With `--topology`: the placement, re-planned with the models and the topology file.
    placement: Option<Arc<Placement>>,
    topology_hash: Option<u64>,
    watcher: Option<notify::RecommendedWatcher>,
}

fn content_hash(path: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

impl ModelManager {
    pub fn new(
        backend: Arc<dyn Backend>,
        registry: Arc<Registry>,
        pools: ActorDefaults,
        sources: Sources,
        placement: Option<Arc<Placement>>,
    ) -> ModelManager {
        let config_hash = sources.config_file.as_deref().and_then(content_hash);
        let topology_hash = placement.as_ref().and_then(|p| content_hash(p.topology()));
        ModelManager {
            backend,
            registry,
            pools,
            sources,
            models: BTreeMap::new(),
            config_hash,
            placement,
            topology_hash,
            watcher: None,
        }
    }

    /// Plans `models` again (re-reading the topology file when `reread`); the models whose
    /// placement changed, to be loaded again where they now belong. A refused plan changes
    /// nothing (the placement logs, counts and shows why).
    fn replan(&mut self, models: &[String], reread: bool) -> Vec<String> {
        let Some(placement) = &self.placement else {
            return Vec::new();
        };
        if reread {
            self.topology_hash = content_hash(placement.topology());
        }
        placement
            .replan(models, reread)
            .map(|change| change.placed)
            .unwrap_or_default()
    }

    /// `config` with the server-wide defaults filled in (`--enable_batching`).
    fn with_defaults(&self, mut config: ServerConfig) -> ServerConfig {
        for model in &mut config.models {
            if model.batching.is_none() {
                model.batching = self.sources.default_batching.clone();
            }
        }
        config
    }

    fn current_config(&self) -> ServerConfig {
        ServerConfig {
            models: self.models.values().map(|(c, _)| c.clone()).collect(),
        }
    }

    /// Re-creates the inotify watches for the current models and the config file.
    fn rewatch(&mut self, me: Addr<ModelManager>) {
        let mut targets: Vec<Target> = self
            .models
            .values()
            .map(|(config, actor)| {
                let actor = actor.clone();
                Target::folder(
                    &config.base_path,
                    Arc::new(move || {
                        METRICS.count_scan(ScanTrigger::FileEvent);
                        actor.do_send(FolderChanged)
                    }),
                )
            })
            .collect();
        if let Some(file) = &self.sources.config_file {
            let me = me.clone();
            targets.push(Target::file(
                file,
                Arc::new(move || {
                    METRICS.count_scan(ScanTrigger::FileEvent);
                    me.do_send(ConfigFileTouched)
                }),
            ));
        }
        if let Some(placement) = &self.placement {
            targets.push(Target::file(
                placement.topology(),
                Arc::new(move || me.do_send(TopologyFileTouched)),
            ));
        }
        self.watcher = None;
        match watcher::watch(targets) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; relying on the periodic rescan")
            }
        }
    }

    /// `explicit`: an explicit reload, which re-reads the topology file and tries failed
    /// versions again even where their files did not change.
    fn apply(
        &mut self,
        config: ServerConfig,
        explicit: bool,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Reports> {
        let wanted: BTreeMap<String, ModelConfig> = self
            .with_defaults(config)
            .models
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        // Placed before any new model starts loading, so its first instance loads where the
        // plan puts it.
        let names: Vec<String> = wanted.keys().cloned().collect();
        let placed = self.replan(&names, explicit);
        let removed: Vec<String> = self
            .models
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            if let Some((_, actor)) = self.models.remove(&name) {
                tracing::info!(model = %name, "model removed from config; draining and unloading");
                actor.do_send(RetireAll);
                self.registry.remove(&name);
            }
        }
        let mut pending = Vec::new();
        for (name, model) in wanted {
            let moved = placed.contains(&name);
            let request: Pending = match self.models.get_mut(&name) {
                Some((current, actor)) if *current == model => {
                    if moved {
                        tracing::info!(model = %name, "placement changed; new instances load in the new worker beside the old");
                        Box::pin(actor.send(Rebuild))
                    } else {
                        if explicit {
                            // The same mailbox: handled before the Reconcile below.
                            actor.do_send(RetryFailed);
                        }
                        Box::pin(actor.send(Reconcile))
                    }
                }
                Some((current, actor)) => {
                    tracing::info!(model = %name, "model config changed; new instances load beside the old");
                    *current = model.clone();
                    if moved {
                        // Reconfigure may not reload (a label change); the move must.
                        actor.do_send(Reconfigure(model));
                        Box::pin(actor.send(Rebuild))
                    } else {
                        Box::pin(actor.send(Reconfigure(model)))
                    }
                }
                None => {
                    tracing::info!(model = %name, "model added");
                    let actor = ModelActor::new(
                        model.clone(),
                        self.backend.clone(),
                        self.registry.clone(),
                        self.pools.clone(),
                    )
                    .start();
                    let request = Box::pin(actor.send(Reconcile));
                    self.models.insert(name.clone(), (model, actor));
                    request
                }
            };
            pending.push(async move { (name, request.await.unwrap_or_default()) });
        }
        self.rewatch(ctx.address());
        Box::pin(async move {
            futures::future::join_all(pending)
                .await
                .into_iter()
                .collect()
        })
    }
}

impl Actor for ModelManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(poll) = self.sources.poll {
            ctx.run_interval(poll, |act, ctx| {
                METRICS.count_scan(ScanTrigger::Poll);
                for (_, actor) in act.models.values() {
                    actor.do_send(FolderChanged);
                }
                if act.sources.config_file.is_some() {
                    ctx.notify(ConfigFileTouched);
                }
                if act.placement.is_some() {
                    ctx.notify(TopologyFileTouched);
                }
            });
        }
    }
}

impl Handler<ApplyConfig> for ModelManager {
    type Result = ResponseFuture<Reports>;

    fn handle(
        &mut self,
        ApplyConfig(config): ApplyConfig,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.apply(config, false, ctx)
    }
}

impl Handler<ReloadConfig> for ModelManager {
    type Result = ResponseFuture<Result<ReloadOutcome, String>>;

    fn handle(&mut self, _: ReloadConfig, ctx: &mut Context<Self>) -> Self::Result {
        let config = match &self.sources.config_file {
            None => self.current_config(),
            Some(path) => match load_config_file(path) {
                Ok(config) => {
                    self.config_hash = content_hash(path);
                    config
                }
                Err(e) => {
                    tracing::error!(error = %e, "config reload rejected; nothing changed");
                    METRICS
                        .config_reloads
                        .with_label_values(&["rejected"])
                        .inc();
                    return Box::pin(async move { Err(e.to_string()) });
                }
            },
        };
        // `current_config()` lists models by name, a file in its own order: compare them sorted,
        // or reloading an unchanged file whose models are not in name order reports a change.
        let mut listed = self.with_defaults(config.clone()).models;
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        let config_changed = listed != self.current_config().models;
        let reports = self.apply(config, true, ctx);
        Box::pin(async move {
            let reports = reports.await;
            let changed = config_changed || reports.values().any(ReconcileReport::changed);
            let result = if changed { "changed" } else { "unchanged" };
            METRICS.config_reloads.with_label_values(&[result]).inc();
            Ok(ReloadOutcome { changed, reports })
        })
    }
}

impl Handler<ConfigFileTouched> for ModelManager {
    type Result = ();

    fn handle(&mut self, _: ConfigFileTouched, ctx: &mut Context<Self>) {
        let Some(path) = &self.sources.config_file else {
            return;
        };
        let hash = content_hash(path);
        if hash.is_some() && hash != self.config_hash {
            tracing::info!(path = %path.display(), "config file changed; reloading");
            // Remember the new content even if it is invalid, so it is reported once, not on
            // every poll; the next edit is seen again.
            self.config_hash = hash;
            let me = ctx.address();
            actix::spawn(async move {
                let _ = me.send(ReloadConfig).await;
            });
        }
    }
}

impl Handler<TopologyFileTouched> for ModelManager {
    type Result = ();

    fn handle(&mut self, _: TopologyFileTouched, _: &mut Context<Self>) {
        let Some(placement) = &self.placement else {
            return;
        };
        let hash = content_hash(placement.topology());
        if hash.is_none() || hash == self.topology_hash {
            return;
        }
        tracing::info!(path = %placement.topology().display(), "topology file changed; re-planning");
        let names: Vec<String> = self.models.keys().cloned().collect();
        for name in self.replan(&names, true) {
            if let Some((_, actor)) = self.models.get(&name) {
                tracing::info!(model = %name, "placement changed; new instances load in the new worker beside the old");
                actor.do_send(Rebuild);
            }
        }
    }
}

impl Handler<RetireEverything> for ModelManager {
    type Result = ();

    fn handle(&mut self, _: RetireEverything, _: &mut Context<Self>) {
        self.watcher = None;
        for (_, actor) in self.models.values() {
            actor.do_send(RetireAll);
        }
    }
}

/// A whole new set of models derived from the one in force (TF Serving's
/// `HandleReloadConfigRequest` fills in what its `ModelServerConfig` cannot say from the current
/// config). Applied as an explicit reload; an `Err` changes nothing.
pub type ConfigEdit = Box<dyn FnOnce(&ServerConfig) -> Result<ServerConfig, String> + Send>;

#[derive(Message)]
#[rtype(result = "Result<Reports, String>")]
pub struct EditConfig(pub ConfigEdit);

impl Handler<EditConfig> for ModelManager {
    type Result = ResponseFuture<Result<Reports, String>>;

    fn handle(&mut self, EditConfig(edit): EditConfig, ctx: &mut Context<Self>) -> Self::Result {
        match edit(&self.current_config()) {
            Ok(config) => {
                let reports = self.apply(config, true, ctx);
                Box::pin(async move { Ok(reports.await) })
            }
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

impl Handler<RebuildModels> for ModelManager {
    type Result = ();

    fn handle(&mut self, RebuildModels(names): RebuildModels, _: &mut Context<Self>) {
        for name in names {
            if let Some((_, actor)) = self.models.get(&name) {
                tracing::info!(model = %name, "reloading the model's versions in its restarted worker");
                actor.do_send(Rebuild);
            }
        }
    }
}
