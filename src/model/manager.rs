//! The supervisor: owns the desired set of models and reconciles it, one model actor per model.

use crate::config::{ModelConfig, ServerConfig};
use crate::model::model_actor::{ModelActor, PoolDefaults, Reconcile, ReconcileReport, RetireAll};
use crate::model::registry::Registry;
use crate::runtime::Backend;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Make this the whole set of models: add new ones, retire removed ones, reconcile all.
#[derive(Message)]
#[rtype(result = "BTreeMap<String, ReconcileReport>")]
pub struct ApplyConfig(pub ServerConfig);

/// Retire every model's versions (shutdown); in-flight requests finish on their own handles.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireEverything;

pub struct ModelManager {
    backend: Arc<dyn Backend>,
    registry: Arc<Registry>,
    pools: PoolDefaults,
    models: BTreeMap<String, (ModelConfig, Addr<ModelActor>)>,
}

impl ModelManager {
    pub fn new(
        backend: Arc<dyn Backend>,
        registry: Arc<Registry>,
        pools: PoolDefaults,
    ) -> ModelManager {
        ModelManager {
            backend,
            registry,
            pools,
            models: BTreeMap::new(),
        }
    }
}

impl Actor for ModelManager {
    type Context = Context<Self>;
}

impl Handler<ApplyConfig> for ModelManager {
    type Result = ResponseFuture<BTreeMap<String, ReconcileReport>>;

    fn handle(&mut self, ApplyConfig(config): ApplyConfig, _: &mut Context<Self>) -> Self::Result {
        let wanted: BTreeMap<String, ModelConfig> = config
            .models
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        let removed: Vec<String> = self
            .models
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            if let Some((_, actor)) = self.models.remove(&name) {
                tracing::info!(model = %name, "model removed from config; draining");
                actor.do_send(RetireAll);
                self.registry.remove(&name);
            }
        }
        for (name, model) in wanted {
            let unchanged = self
                .models
                .get(&name)
                .is_some_and(|(current, _)| *current == model);
            if !unchanged {
                // A changed model gets a fresh actor; the old one retires once the new is up
                // (hot reconfiguration is built on this seam).
                let actor = ModelActor::new(
                    model.clone(),
                    self.backend.clone(),
                    self.registry.clone(),
                    self.pools.clone(),
                )
                .start();
                if let Some((_, old)) = self.models.insert(name, (model, actor)) {
                    old.do_send(RetireAll);
                }
            }
        }
        let reconciles: Vec<_> = self
            .models
            .iter()
            .map(|(name, (_, actor))| {
                let name = name.clone();
                let request = actor.send(Reconcile);
                async move { (name, request.await.unwrap_or_default()) }
            })
            .collect();
        Box::pin(async move {
            futures::future::join_all(reconciles)
                .await
                .into_iter()
                .collect()
        })
    }
}

impl Handler<RetireEverything> for ModelManager {
    type Result = ();

    fn handle(&mut self, _: RetireEverything, _: &mut Context<Self>) {
        for (_, actor) in self.models.values() {
            actor.do_send(RetireAll);
        }
    }
}
