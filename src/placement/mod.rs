//! Realising a placement plan: each group of models that share a CPU set runs in its own
//! supervised worker process, started with that CPU mask and bound to that NUMA node.
//!
//! Why processes: OpenVINO 2026.4 confines inference only through the CPU mask of the process
//! (read once, when its CPU plugin starts); pinning threads later does not hold, and
//! ENABLE_CPU_RESERVATION breaks later compiles (docs/placement-experiments.md). The rest of the
//! server does not change: [`Placement`] is a [`Backend`], so model actors, worker pools, hot
//! swaps, metrics and errors work the same whether a model runs here or in a worker.

pub mod affinity;
mod descriptor;
mod group;
mod mailbox;
mod remote;
pub mod shm;
pub mod wire;
pub mod worker;

pub use group::{RestartHook, WorkerGroup, WorkerSettings};

use crate::error::BackendError;
use crate::runtime::{Backend, LoadSpec, LoadedModel};
use crate::topology::{cpu_list, Assignment, Plan};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The plan in force and the worker groups that realise it.
pub struct Placement {
    plan: Plan,
    groups: Vec<Arc<WorkerGroup>>,
    /// Model name → its group and assignment.
    models: BTreeMap<String, (Arc<WorkerGroup>, Assignment)>,
    /// For models the plan does not cover (added to config.json after start-up).
    local: Arc<dyn Backend>,
}

impl Placement {
    /// Starts one worker process per distinct (node, CPU set) of the plan.
    pub fn start(
        plan: Plan,
        settings: WorkerSettings,
        local: Arc<dyn Backend>,
    ) -> std::io::Result<Placement> {
        let mut groups: BTreeMap<(usize, Vec<usize>), Arc<WorkerGroup>> = BTreeMap::new();
        let mut models = BTreeMap::new();
        for assignment in &plan.models {
            let key = (assignment.node, assignment.cpus.clone());
            let group = match groups.get(&key) {
                Some(g) => g.clone(),
                None => {
                    let name = format!("n{}-c{}", assignment.node, cpu_list(&assignment.cpus));
                    let g = WorkerGroup::start(
                        name,
                        assignment.node,
                        assignment.cpus.clone(),
                        settings.clone(),
                    )?;
                    groups.insert(key, g.clone());
                    g
                }
            };
            crate::metrics::METRICS
                .placement_info
                .with_label_values(&[
                    &assignment.name,
                    &assignment.node.to_string(),
                    &cpu_list(&assignment.cpus),
                ])
                .set(1);
            models.insert(assignment.name.clone(), (group, assignment.clone()));
        }
        Ok(Placement {
            plan,
            groups: groups.into_values().collect(),
            models,
            local,
        })
    }

    /// Called with the models of a worker that died, once its replacement runs.
    pub fn on_worker_restart(&self, hook: impl Fn(Vec<String>) + Clone + Send + Sync + 'static) {
        for group in &self.groups {
            group.set_restart_hook(Box::new(hook.clone()));
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The plan and the live workers, for `GET /v1/placement`.
    pub fn status(&self) -> serde_json::Value {
        let assignment = |a: &Assignment| {
            serde_json::json!({
                "name": a.name,
                "node": a.node,
                "cores": a.cores,
                "cpus": cpu_list(&a.cpus),
                "properties": a.properties,
            })
        };
        let models: Vec<_> = self
            .plan
            .models
            .iter()
            .map(|a| {
                let mut entry = assignment(a);
                if let Some((group, _)) = self.models.get(&a.name) {
                    let (pid, restarts) = group.worker();
                    entry["group"] = group.name.clone().into();
                    entry["worker_pid"] = pid.into();
                    entry["worker_restarts"] = restarts.into();
                }
                entry
            })
            .collect();
        serde_json::json!({
            "machine": self.plan.machine,
            "reserved": self.plan.reserved.iter().map(assignment).collect::<Vec<_>>(),
            "models": models,
            "warnings": self.plan.warnings,
        })
    }
}

impl Backend for Placement {
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LoadedModel>, BackendError> {
        let Some((group, assignment)) = self.models.get(&spec.model) else {
            tracing::warn!(model = %spec.model, "model not in the placement plan (added after start-up): loading it unplaced in the server process");
            return self.local.load(spec);
        };
        let mut placed = spec.clone();
        for (key, value) in &assignment.properties {
            match spec.plugin_config.get(*key) {
                Some(own) if own != value => {
                    tracing::warn!(model = %spec.model, key, plan = %value, config = %own,
                    "plugin_config overrides a property of the placement plan")
                }
                Some(_) => {}
                None => {
                    placed.plugin_config.insert(key.to_string(), value.clone());
                }
            }
        }
        group.note_model(&spec.model);
        tracing::info!(model = %spec.model, version = spec.version, group = %group.name, node = assignment.node,
            cpus = %cpu_list(&assignment.cpus), "loading in placement worker");
        group
            .endpoint()
            .load(&placed)
            .map(|m| Box::new(m) as Box<dyn LoadedModel>)
    }
}
