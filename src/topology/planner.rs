//! The planner: (machine, topology file, model names) → [`Plan`], a pure function.
//!
//! Pure so it is tested on a synthetic 2 × 8180 on any machine and so `vinoserve plan` can show
//! an operator what a host would do before the server starts there. Cores are the unit of
//! placement: two models never share a physical core (not even via its two hyper-threads)
//! unless the file says `allow_oversubscription = true`, and then the plan says so.

pub use super::error::PlanError;
use super::file::{Hint, PlacementRequest, TopologyFile};
use super::machine::{cpu_list, Machine, Node};
use std::collections::BTreeMap;

/// Who holds the reserved cores in the plan and in error messages.
pub const SERVER: &str = "(server)";

/// Where every model runs, and what the server keeps for itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One-line description of the machine planned for.
    pub machine: String,
    /// Per node, the cores kept for the server's gRPC/REST/IO threads.
    pub reserved: Vec<Assignment>,
    /// One entry per model, ordered by node then first core.
    pub models: Vec<Assignment>,
    /// Over-subscription (when allowed) and topology entries for models not served.
    pub warnings: Vec<String>,
}

/// Cores and CPUs given to one model (or to the server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub node: usize,
    /// Logical core ids.
    pub cores: Vec<usize>,
    /// PU OS indexes the model's threads may run on. Apply it as the affinity of the process
    /// (or child) that initialises OpenVINO for this model: OpenVINO overwrites per-thread pins
    /// (docs/placement-experiments.md).
    pub cpus: Vec<usize>,
    /// OpenVINO compile properties that realise the placement.
    pub properties: BTreeMap<&'static str, String>,
}

impl Assignment {
    /// Inference threads: one per CPU in the set.
    pub fn threads(&self) -> usize {
        self.cpus.len()
    }
}

/// Plans `models` (names in config order) on `machine` as `file` says.
pub fn plan(machine: &Machine, file: &TopologyFile, models: &[String]) -> Result<Plan, PlanError> {
    let mut state = State {
        machine,
        owners: BTreeMap::new(),
        warnings: Vec::new(),
        oversubscribe: file.allow_oversubscription,
    };
    let reserved = state.reserve(file)?;
    // Resolve every model first so a missing table is reported before any core arithmetic.
    let mut wanted = Vec::with_capacity(models.len());
    for model in models {
        let Some(p) = resolve(file, model) else {
            return Err(PlanError::NoPlacement {
                model: model.clone(),
            });
        };
        if p.cores.is_none() && p.core_ids.is_none() {
            return Err(PlanError::NoCores {
                model: model.clone(),
            });
        }
        wanted.push((model.clone(), p));
    }
    for name in file.models.keys().filter(|m| !models.contains(m)) {
        state.warnings.push(format!(
            "topology file places {name}, which the config does not serve"
        ));
    }
    // Fixed core lists first, then single-node requests, then "any of these nodes"; larger
    // requests first within a group, so small models fill the gaps.
    wanted.sort_by_key(|(name, p)| {
        let group = if p.core_ids.is_some() {
            0
        } else if p.node.is_some() || p.nodes.as_ref().is_some_and(|n| n.len() == 1) {
            1
        } else {
            2
        };
        (group, usize::MAX - p.cores.unwrap_or(0), name.clone())
    });
    let mut out = Vec::with_capacity(wanted.len());
    for (name, p) in &wanted {
        let (node, cores) = match &p.core_ids {
            Some(ids) => state.take_ids(name, p.node, ids)?,
            None => state.take_count(name, p, p.cores.unwrap_or(1))?,
        };
        out.push(assignment(machine, name, node, cores, p)?);
    }
    out.sort_by_key(|a| (a.node, a.cores.first().copied()));
    Ok(Plan {
        machine: machine.to_string(),
        reserved,
        models: out,
        warnings: state.warnings,
    })
}

/// What the file asks for `model`: its own table over `[default]`, or `[default]` alone.
fn resolve(file: &TopologyFile, model: &str) -> Option<PlacementRequest> {
    match (file.models.get(model), &file.default) {
        (Some(p), Some(d)) => Some(p.over(d)),
        (Some(p), None) => Some(p.clone()),
        (None, Some(d)) => Some(d.clone()),
        (None, None) => None,
    }
}

/// Plans like [`plan`] on a running server: every model whose request still fits the cores it
/// has in `running` keeps them, so adding a model or editing another model's table moves
/// nobody else. Where keeping one model's cores is impossible (a new `core_ids` or reserved
/// core claims them), only that model moves. Errors are those of a fresh plan.
pub fn replan(
    machine: &Machine,
    file: &TopologyFile,
    models: &[String],
    running: &Plan,
) -> Result<Plan, PlanError> {
    let mut best = plan(machine, file, models)?;
    let mut keeping = file.clone();
    // One model at a time, so a model that cannot stay does not make the others move.
    for current in running.models.iter().filter(|a| models.contains(&a.name)) {
        let Some(wanted) = resolve(file, &current.name) else {
            continue;
        };
        let node_allowed = match (wanted.node, &wanted.nodes) {
            (Some(n), _) => n == current.node,
            (None, Some(list)) => list.contains(&current.node),
            (None, None) => true,
        };
        if wanted.core_ids.is_some()
            || wanted.cores.unwrap_or(1) != current.cores.len()
            || !node_allowed
        {
            continue;
        }
        let kept = PlacementRequest {
            node: Some(current.node),
            nodes: None,
            cores: None,
            core_ids: Some(current.cores.clone()),
            ..wanted
        };
        let mut trial = keeping.clone();
        trial.models.insert(current.name.clone(), kept);
        if let Ok(p) = plan(machine, &trial, models) {
            keeping = trial;
            best = p;
        }
    }
    Ok(best)
}

/// Turns a core choice into CPUs and OpenVINO properties.
fn assignment(
    machine: &Machine,
    name: &str,
    node: usize,
    cores: Vec<usize>,
    p: &PlacementRequest,
) -> Result<Assignment, PlanError> {
    let ht = p.hyperthreads.unwrap_or(false);
    let mut cpus: Vec<usize> = cores
        .iter()
        .filter_map(|&c| machine.core(c))
        .flat_map(|(_, c)| {
            let n = if ht { c.allowed.len() } else { 1 };
            c.allowed.iter().take(n).copied()
        })
        .collect();
    cpus.sort_unstable();
    let hint = p.performance_hint.unwrap_or(Hint::Latency);
    let streams = p
        .streams
        .or((hint == Hint::Latency).then_some(1))
        .filter(|_| !cpus.is_empty());
    if let Some(s) = streams.filter(|&s| s > cpus.len()) {
        return Err(PlanError::TooManyStreams {
            model: name.to_string(),
            streams: s,
            threads: cpus.len(),
        });
    }
    let yes_no = |b: bool| if b { "YES" } else { "NO" }.to_string();
    let mut properties = BTreeMap::from([
        ("PERFORMANCE_HINT", hint.to_string()),
        ("INFERENCE_NUM_THREADS", cpus.len().to_string()),
        ("ENABLE_HYPER_THREADING", yes_no(ht)),
        ("ENABLE_CPU_PINNING", yes_no(p.pinning.unwrap_or(true))),
    ]);
    if let Some(s) = streams {
        properties.insert("NUM_STREAMS", s.to_string());
    }
    Ok(Assignment {
        name: name.to_string(),
        node,
        cores,
        cpus,
        properties,
    })
}

/// Core ownership while planning.
struct State<'a> {
    machine: &'a Machine,
    /// Core id → who holds it (more than one only when over-subscription is allowed).
    owners: BTreeMap<usize, Vec<String>>,
    warnings: Vec<String>,
    oversubscribe: bool,
}

impl State<'_> {
    fn node(&self, who: &str, id: usize) -> Result<&Node, PlanError> {
        self.machine.node(id).ok_or_else(|| PlanError::UnknownNode {
            who: who.to_string(),
            node: id,
            available: self
                .machine
                .nodes
                .iter()
                .map(|n| n.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    fn reserve(&mut self, file: &TopologyFile) -> Result<Vec<Assignment>, PlanError> {
        let mut out = Vec::new();
        for (&id, &count) in file.reserved_cores.iter().filter(|(_, &c)| c > 0) {
            let node = self.node(&format!("reserved_cores.{id}"), id)?;
            let usable: Vec<usize> = node.usable_cores().map(|c| c.id).collect();
            if count > usable.len() {
                return Err(PlanError::ReservationTooLarge {
                    node: id,
                    reserved: count,
                    usable: usable.len(),
                });
            }
            let cores = usable[..count].to_vec();
            for &c in &cores {
                self.owners.entry(c).or_default().push(SERVER.to_string());
            }
            let cpus = cores
                .iter()
                .filter_map(|&c| self.machine.core(c))
                .flat_map(|(_, c)| c.allowed.clone())
                .collect();
            out.push(Assignment {
                name: SERVER.to_string(),
                node: id,
                cores,
                cpus,
                properties: BTreeMap::new(),
            });
        }
        Ok(out)
    }

    /// Explicit `core_ids`: all on one node (the given one, or the first core's).
    fn take_ids(
        &mut self,
        model: &str,
        node: Option<usize>,
        ids: &[usize],
    ) -> Result<(usize, Vec<usize>), PlanError> {
        let machine = self.machine;
        let last = machine
            .nodes
            .iter()
            .flat_map(|n| &n.cores)
            .count()
            .saturating_sub(1);
        let mut expected = node;
        for &id in ids {
            let (n, core) = machine.core(id).ok_or(PlanError::UnknownCore {
                model: model.to_string(),
                core: id,
                last,
            })?;
            let want = *expected.get_or_insert(n.id);
            if n.id != want {
                self.node(model, want)?;
                return Err(PlanError::CoreOnOtherNode {
                    model: model.to_string(),
                    core: id,
                    core_node: n.id,
                    node: want,
                });
            }
            if !core.usable() {
                return Err(PlanError::CoreNotAllowed {
                    model: model.to_string(),
                    core: id,
                    cpus: cpu_list(&core.pus),
                });
            }
            if let Some(owner) = self.owners.get(&id).and_then(|o| o.first()) {
                if !self.oversubscribe {
                    return Err(PlanError::CoreTaken {
                        model: model.to_string(),
                        core: id,
                        node: n.id,
                        owner: owner.clone(),
                    });
                }
                self.warnings.push(format!(
                    "{model} shares core {id} on node {} with {owner}",
                    n.id
                ));
            }
        }
        let mut cores = ids.to_vec();
        cores.sort_unstable();
        for &c in &cores {
            self.owners.entry(c).or_default().push(model.to_string());
        }
        Ok((expected.unwrap_or(0), cores))
    }

    /// `cores = N` on `node`, or on the candidate in `nodes` (default: all) with most room.
    fn take_count(
        &mut self,
        model: &str,
        p: &PlacementRequest,
        needed: usize,
    ) -> Result<(usize, Vec<usize>), PlanError> {
        let candidates = match (p.node, &p.nodes) {
            (Some(n), _) => vec![n],
            (None, Some(list)) => list.clone(),
            (None, None) => self.machine.nodes.iter().map(|n| n.id).collect(),
        };
        let mut best: Option<(usize, Vec<usize>)> = None;
        for id in candidates {
            let node = self.node(model, id)?;
            let free: Vec<usize> = node
                .usable_cores()
                .map(|c| c.id)
                .filter(|c| !self.owners.contains_key(c))
                .collect();
            if best.as_ref().is_none_or(|(_, f)| free.len() > f.len()) {
                best = Some((id, free));
            }
        }
        let (id, free) = best.expect("candidate lists are never empty");
        if free.len() >= needed {
            let cores = free[..needed].to_vec();
            for &c in &cores {
                self.owners.entry(c).or_default().push(model.to_string());
            }
            return Ok((id, cores));
        }
        let node = self.node(model, id)?;
        let usable: Vec<usize> = node.usable_cores().map(|c| c.id).collect();
        if !self.oversubscribe || usable.is_empty() {
            return Err(self.shortage(model, id, needed, free.len(), &usable));
        }
        // Over-subscribe: all free cores, then the least shared ones (server cores last).
        let mut cores = free;
        let mut shared: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|c| !cores.contains(c))
            .collect();
        shared.sort_by_key(|c| {
            let o = self.owners.get(c).map_or(&[][..], Vec::as_slice);
            (o.iter().any(|w| w == SERVER), o.len(), *c)
        });
        let short = needed - cores.len();
        let extra: Vec<usize> = shared.into_iter().take(short).collect();
        let with: Vec<String> = extra
            .iter()
            .flat_map(|c| self.owners.get(c).cloned().unwrap_or_default())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.warnings.push(format!(
            "{model} needs {needed} cores on node {id}; {short} of them shared with {}",
            with.join(", ")
        ));
        cores.extend(extra);
        cores.sort_unstable();
        cores.dedup();
        for &c in &cores {
            self.owners.entry(c).or_default().push(model.to_string());
        }
        Ok((id, cores))
    }

    fn shortage(
        &self,
        model: &str,
        node: usize,
        needed: usize,
        free: usize,
        usable: &[usize],
    ) -> PlanError {
        let mut by_owner: BTreeMap<&str, usize> = BTreeMap::new();
        for owner in usable.iter().filter_map(|c| self.owners.get(c)).flatten() {
            *by_owner.entry(owner).or_default() += 1;
        }
        let reserved = by_owner.remove(SERVER).unwrap_or(0);
        let taken = if by_owner.is_empty() {
            "no model".to_string()
        } else {
            let parts: Vec<String> = by_owner.iter().map(|(m, n)| format!("{m} {n}")).collect();
            parts.join(", ")
        };
        PlanError::NotEnoughCores {
            model: model.to_string(),
            node,
            needed,
            available: free,
            usable: usable.len(),
            reserved,
            taken,
        }
    }
}
