//! Realising a placement plan: each group of models that share a CPU set runs in its own
//! supervised worker process, started with that CPU mask and bound to that NUMA node.
//!
//! Why processes: OpenVINO 2026.4 confines inference only through the CPU mask of the process
//! (read once, when its CPU plugin starts); pinning threads later does not hold, and
//! ENABLE_CPU_RESERVATION breaks later compiles (docs/placement-experiments.md). The rest of the
//! server does not change: [`Placement`] is a [`Backend`], so model actors, worker pools, hot
//! swaps, metrics and errors work the same whether a model runs here or in a worker.
//!
//! The plan is desired state, like versions: [`Placement::replan`] re-reads the topology file
//! for the models the config lists, starts the groups the new plan needs and retires those it
//! no longer uses; the manager then reloads each moved model, which swaps its instances the way
//! a new version does (loaded in the new group, published, old ones drained).

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
use crate::metrics::METRICS;
use crate::runtime::{Backend, Executor, LoadSpec, LoadedModel};
use crate::tensor::Signature;
use crate::topology::{cpu_list, replan, Assignment, Machine, Plan, TopologyFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Worker groups are shared by models with the same node and CPU set.
type GroupKey = (usize, Vec<usize>);

/// Told which models must be loaded again because their worker restarted.
type RestartCallback = Arc<dyn Fn(Vec<String>) + Send + Sync>;

/// The plan in force and the worker groups that realise it.
pub struct Placement {
    topology: PathBuf,
    /// Discovered once, at start-up: later the server's own threads are confined to their
    /// reserved cores, and discovering from there would see only those.
    machine: Machine,
    /// The server threads' CPUs before any confinement, restored if reserved cores go.
    unreserved: Vec<usize>,
    settings: WorkerSettings,
    state: Mutex<State>,
    on_restart: OnceLock<RestartCallback>,
}

struct State {
    file: TopologyFile,
    plan: Plan,
    /// Every group with a live worker, including retired ones still draining.
    groups: BTreeMap<GroupKey, Arc<WorkerGroup>>,
    /// Model name → its group and assignment.
    models: BTreeMap<String, (Arc<WorkerGroup>, Assignment)>,
    /// Why the last re-plan was refused (nothing changed then).
    rejected: Option<String>,
}

/// What a re-plan changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PlanChange {
    /// Models with a new assignment (moved, re-tuned or newly placed): reload them.
    pub placed: Vec<String>,
}

impl Placement {
    /// Plans `models` on `machine` from the topology file and starts one worker process per
    /// distinct (node, CPU set), then confines the calling thread (and so every thread it starts
    /// from here on) to the reserved cores.
    pub fn start(
        topology: &Path,
        machine: Machine,
        models: &[String],
        settings: WorkerSettings,
    ) -> Result<Placement, String> {
        let file = read_file(topology)?;
        let plan = crate::topology::plan(&machine, &file, models)
            .map_err(|e| format!("invalid placement for {}: {e}", topology.display()))?;
        for line in plan.to_string().lines() {
            tracing::info!(target: "vinoserve::placement", "plan: {line}");
        }
        let placement = Placement {
            topology: topology.to_path_buf(),
            machine,
            unreserved: affinity::current_cpus(),
            settings,
            state: Mutex::new(State {
                file,
                // Nothing runs yet: `realise` below starts every group of the plan.
                plan: Plan::default(),
                groups: BTreeMap::new(),
                models: BTreeMap::new(),
                rejected: None,
            }),
            on_restart: OnceLock::new(),
        };
        {
            let mut state = placement.state.lock().expect("placement state");
            placement
                .realise(&mut state, plan)
                .map_err(|e| format!("cannot start placement workers: {e}"))?;
        }
        Ok(placement)
    }

    /// Called with the models of a worker that died, once its replacement runs.
    pub fn on_worker_restart(&self, hook: impl Fn(Vec<String>) + Send + Sync + 'static) {
        let hook: RestartCallback = Arc::new(hook);
        if self.on_restart.set(hook.clone()).is_ok() {
            for group in self.state.lock().expect("placement state").groups.values() {
                let hook = hook.clone();
                group.set_restart_hook(Box::new(move |models| hook(models)));
            }
        }
    }

    /// The topology file this placement follows.
    pub fn topology(&self) -> &Path {
        &self.topology
    }

    /// Plans `models` again, from the topology file re-read when `reread`, keeping every model
    /// whose request did not change where it runs. An unreadable, invalid or unsatisfiable
    /// file changes nothing: the error is logged, counted and shown in [`Self::status`].
    pub fn replan(&self, models: &[String], reread: bool) -> Result<PlanChange, String> {
        let mut state = self.state.lock().expect("placement state");
        let outcome = self.next_plan(&state, models, reread);
        let (file, plan) = match outcome {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(topology = %self.topology.display(), error = %e,
                    "new placement refused; the running one stays");
                METRICS
                    .topology_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                state.rejected = Some(e.clone());
                return Err(e);
            }
        };
        state.rejected = None;
        if plan == state.plan && file == state.file {
            METRICS
                .topology_reloads
                .with_label_values(&["unchanged"])
                .inc();
            return Ok(PlanChange::default());
        }
        for line in plan.to_string().lines() {
            tracing::info!(target: "vinoserve::placement", "new plan: {line}");
        }
        state.file = file;
        let change = self.realise(&mut state, plan).map_err(|e| {
            let e = format!("cannot start placement workers: {e}");
            state.rejected = Some(e.clone());
            e
        })?;
        METRICS
            .topology_reloads
            .with_label_values(&["changed"])
            .inc();
        Ok(change)
    }

    fn next_plan(
        &self,
        state: &State,
        models: &[String],
        reread: bool,
    ) -> Result<(TopologyFile, Plan), String> {
        let file = if reread {
            read_file(&self.topology)?
        } else {
            state.file.clone()
        };
        let plan = replan(&self.machine, &file, models, &state.plan)
            .map_err(|e| format!("invalid placement for {}: {e}", self.topology.display()))?;
        Ok((file, plan))
    }

    /// Makes `plan` the one in force: starts the groups it needs, retires the others, confines
    /// the server's threads to the reserved cores, and says which models must be (re)loaded.
    fn realise(&self, state: &mut State, plan: Plan) -> std::io::Result<PlanChange> {
        let mut models = BTreeMap::new();
        let mut change = PlanChange::default();
        for assignment in &plan.models {
            let key = (assignment.node, assignment.cpus.clone());
            let group = match state.groups.get(&key).filter(|g| g.reinstate()) {
                Some(g) => g.clone(),
                None => {
                    let g = self.start_group(assignment)?;
                    state.groups.insert(key, g.clone());
                    g
                }
            };
            if state.models.get(&assignment.name).map(|(_, a)| a) != Some(assignment) {
                change.placed.push(assignment.name.clone());
            }
            models.insert(assignment.name.clone(), (group, assignment.clone()));
        }
        for (name, (_, old)) in &state.models {
            let _ = METRICS.placement_info.remove_label_values(&[
                name,
                &old.node.to_string(),
                &cpu_list(&old.cpus),
            ]);
        }
        for (name, (_, assignment)) in &models {
            METRICS
                .placement_info
                .with_label_values(&[
                    name,
                    &assignment.node.to_string(),
                    &cpu_list(&assignment.cpus),
                ])
                .set(1);
        }
        let planned: Vec<GroupKey> = plan
            .models
            .iter()
            .map(|a| (a.node, a.cpus.clone()))
            .collect();
        for (key, group) in &state.groups {
            if !planned.contains(key) {
                group.retire();
            }
        }
        state.groups.retain(|_, g| !g.stopped());
        if state.plan.reserved != plan.reserved {
            self.confine_server(&plan)?;
        }
        state.models = models;
        state.plan = plan;
        Ok(change)
    }

    fn start_group(&self, assignment: &Assignment) -> std::io::Result<Arc<WorkerGroup>> {
        let name = format!("n{}-c{}", assignment.node, cpu_list(&assignment.cpus));
        let group = WorkerGroup::start(
            name,
            assignment.node,
            assignment.cpus.clone(),
            self.settings.clone(),
        )?;
        if let Some(hook) = self.on_restart.get() {
            let hook = hook.clone();
            group.set_restart_hook(Box::new(move |models| hook(models)));
        }
        Ok(group)
    }

    /// Keeps the server's own threads (gRPC, REST, loading, watching) on the reserved cores.
    /// At start-up only the calling thread exists to confine; threads started later inherit.
    fn confine_server(&self, plan: &Plan) -> std::io::Result<()> {
        let reserved: Vec<usize> = plan
            .reserved
            .iter()
            .flat_map(|a| a.cpus.iter().copied())
            .collect();
        let cpus = if reserved.is_empty() {
            &self.unreserved
        } else {
            &reserved
        };
        affinity::set_all_threads(cpus)?;
        tracing::info!(cpus = %cpu_list(cpus), "server threads confined");
        Ok(())
    }

    /// The plan and the live workers, for `GET /v1/placement`.
    pub fn status(&self) -> serde_json::Value {
        let state = self.state.lock().expect("placement state");
        let assignment = |a: &Assignment| {
            serde_json::json!({
                "name": a.name,
                "node": a.node,
                "cores": a.cores,
                "cpus": cpu_list(&a.cpus),
                "properties": a.properties,
            })
        };
        let models: Vec<_> = state
            .plan
            .models
            .iter()
            .map(|a| {
                let mut entry = assignment(a);
                if let Some((group, _)) = state.models.get(&a.name) {
                    let (pid, restarts) = group.worker();
                    entry["group"] = group.name.clone().into();
                    entry["worker_pid"] = pid.into();
                    entry["worker_restarts"] = restarts.into();
                }
                entry
            })
            .collect();
        let retiring: Vec<_> = state
            .groups
            .values()
            .filter(|g| !g.stopped() && !state.models.values().any(|(m, _)| Arc::ptr_eq(m, g)))
            .map(|g| serde_json::json!({"group": g.name, "worker_pid": g.worker().0}))
            .collect();
        serde_json::json!({
            "topology": self.topology.display().to_string(),
            "machine": state.plan.machine,
            "reserved": state.plan.reserved.iter().map(assignment).collect::<Vec<_>>(),
            "models": models,
            "retiring": retiring,
            "warnings": state.plan.warnings,
            "rejected": state.rejected,
        })
    }
}

fn read_file(topology: &Path) -> Result<TopologyFile, String> {
    TopologyFile::load(topology).map_err(|e| format!("invalid topology: {e}"))
}

impl Backend for Placement {
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LoadedModel>, BackendError> {
        let (group, assignment) = {
            let state = self.state.lock().expect("placement state");
            match state.models.get(&spec.model) {
                Some((group, assignment)) => (group.clone(), assignment.clone()),
                None => {
                    let why = state.rejected.as_deref().unwrap_or(
                        "the topology file has neither a [models.NAME] table for it nor [default]",
                    );
                    return Err(BackendError::Runtime(format!(
                        "model {} is not in the placement plan: {why}",
                        spec.model
                    )));
                }
            }
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
        let lease = group.lease();
        let model = group.endpoint().load(&placed)?;
        Ok(Box::new(Leased {
            model: Box::new(model),
            _lease: lease,
        }))
    }
}

/// A model instance in a worker group; dropping it may let a retired group stop.
struct Leased {
    model: Box<dyn LoadedModel>,
    _lease: group::Lease,
}

impl LoadedModel for Leased {
    fn signature(&self) -> &Signature {
        self.model.signature()
    }

    fn optimal_infer_requests(&self) -> usize {
        self.model.optimal_infer_requests()
    }

    fn properties(&self) -> BTreeMap<String, String> {
        self.model.properties()
    }

    fn create_executor(&mut self) -> Result<Box<dyn Executor>, BackendError> {
        self.model.create_executor()
    }
}
