//! `vinoserve plan --diff URL`: what a topology file would change on a running server.
//!
//! The running plan comes from the server's `GET /v1/placement`; the new one is planned here
//! the way the server re-plans (models that still fit keep their cores), so the table shows
//! exactly which models a reload of that file would move, re-tune, add or leave alone.

use super::{cpu_list, replan, Assignment, Machine, Plan, TopologyFile};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One model's assignment as `GET /v1/placement` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Running {
    pub name: String,
    pub node: usize,
    pub cores: Vec<usize>,
    pub cpus: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct Status {
    models: Vec<Running>,
    #[serde(default)]
    reserved: Vec<Running>,
}

/// What happens to one model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// Other CPUs or another node: reloaded in a new worker.
    Moves,
    /// Same CPUs, other OpenVINO properties: reloaded in the same worker.
    Retuned(Vec<String>),
    Added,
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub model: String,
    pub running: Option<String>,
    pub planned: Option<String>,
    pub change: Change,
}

/// The rows of the diff, by model name, and the reserved cores before → after if they change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub rows: Vec<Row>,
    pub reserved: Option<(String, String)>,
    pub warnings: Vec<String>,
}

fn place(node: usize, cpus: &str) -> String {
    format!("node {node} cpus {cpus}")
}

fn reserved_text(list: impl Iterator<Item = (usize, String)>) -> String {
    let parts: Vec<String> = list.map(|(node, cpus)| place(node, &cpus)).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Fetches the running placement from `url` (the server's REST address).
pub fn fetch_running(url: &str) -> Result<(Vec<Running>, Vec<Running>), String> {
    let endpoint = format!("{}/v1/placement", url.trim_end_matches('/'));
    let body = ureq::get(&endpoint)
        .call()
        .map_err(|e| format!("cannot read the running placement from {endpoint}: {e}"))?
        .into_string()
        .map_err(|e| format!("cannot read the answer of {endpoint}: {e}"))?;
    let status: Status = serde_json::from_str(&body)
        .map_err(|e| format!("{endpoint} did not answer with a placement ({e}): {body}"))?;
    Ok((status.models, status.reserved))
}

/// Plans `models` from `file` against the running assignments and compares.
pub fn diff(
    machine: &Machine,
    file: &TopologyFile,
    models: &[String],
    running: &[Running],
    running_reserved: &[Running],
) -> Result<Diff, super::PlanError> {
    // Only the running models' cores matter to `replan`.
    let as_plan = Plan {
        models: running
            .iter()
            .map(|r| Assignment {
                name: r.name.clone(),
                node: r.node,
                cores: r.cores.clone(),
                cpus: Vec::new(),
                properties: BTreeMap::new(),
            })
            .collect(),
        ..Plan::default()
    };
    let planned = replan(machine, file, models, &as_plan)?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for r in running {
        rows.insert(
            r.name.clone(),
            Row {
                model: r.name.clone(),
                running: Some(place(r.node, &r.cpus)),
                planned: None,
                change: Change::Removed,
            },
        );
    }
    for a in &planned.models {
        let cpus = cpu_list(&a.cpus);
        let properties: BTreeMap<String, String> = a
            .properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let was = running.iter().find(|r| r.name == a.name);
        let change = match was {
            None => Change::Added,
            Some(r) if r.node != a.node || r.cpus != cpus => Change::Moves,
            Some(r) if r.properties != properties => {
                // Each key once, in order, whichever side has it.
                let keys: BTreeSet<&String> =
                    properties.keys().chain(r.properties.keys()).collect();
                let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "-".into());
                let changed = keys
                    .into_iter()
                    .filter(|k| r.properties.get(*k) != properties.get(*k))
                    .map(|k| {
                        format!(
                            "{k} {} -> {}",
                            show(r.properties.get(k)),
                            show(properties.get(k))
                        )
                    })
                    .collect();
                Change::Retuned(changed)
            }
            Some(_) => Change::Unchanged,
        };
        rows.insert(
            a.name.clone(),
            Row {
                model: a.name.clone(),
                running: was.map(|r| place(r.node, &r.cpus)),
                planned: Some(place(a.node, &cpus)),
                change,
            },
        );
    }
    let before = reserved_text(running_reserved.iter().map(|r| (r.node, r.cpus.clone())));
    let after = reserved_text(planned.reserved.iter().map(|a| (a.node, cpu_list(&a.cpus))));
    Ok(Diff {
        rows: rows.into_values().collect(),
        reserved: (before != after).then_some((before, after)),
        warnings: planned.warnings,
    })
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Unchanged => f.write_str("unchanged"),
            Change::Moves => f.write_str("moves (reloaded in a new worker, then swapped)"),
            Change::Retuned(what) => write!(f, "re-tuned: {}", what.join(", ")),
            Change::Added => f.write_str("placed (not running yet)"),
            Change::Removed => f.write_str("not in the config (retired)"),
        }
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
                [
                    r.model.clone(),
                    or_dash(&r.running),
                    or_dash(&r.planned),
                    r.change.to_string(),
                ]
            })
            .collect();
        super::table::write_aligned(f, ["model", "running", "planned", "change"], &cells)?;
        if let Some((before, after)) = &self.reserved {
            writeln!(f, "reserved for the server: {before} -> {after}")?;
        }
        let moved = self
            .rows
            .iter()
            .filter(|r| r.change != Change::Unchanged)
            .count();
        writeln!(f, "{moved} of {} models change", self.rows.len())?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{discover, plan, Source};

    fn running(plan: &Plan) -> Vec<Running> {
        plan.models
            .iter()
            .map(|a| Running {
                name: a.name.clone(),
                node: a.node,
                cores: a.cores.clone(),
                cpus: cpu_list(&a.cpus),
                properties: a
                    .properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn says_which_models_move_retune_arrive_or_leave() {
        let machine = discover(Source::Synthetic("pack:2 numa:1 core:28 pu:2")).unwrap();
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let before = TopologyFile::parse(
            "[default]\nnode = 0\ncores = 2\n[models.b]\nnode = 0\ncores = 2\nstreams = 1\n",
            "t.toml",
        )
        .unwrap();
        let now = plan(&machine, &before, &names(&["a", "b", "c", "d", "gone"])).unwrap();
        let after = TopologyFile::parse(
            "reserved_cores = { 0 = 1 }\n[default]\nnode = 0\ncores = 2\n\
             [models.b]\nnode = 0\ncores = 2\nstreams = 2\n[models.c]\nnode = 1\ncores = 2\n",
            "t.toml",
        )
        .unwrap();
        let d = diff(
            &machine,
            &after,
            &names(&["a", "b", "c", "d", "new"]),
            &running(&now),
            &[],
        )
        .unwrap();
        let change = |m: &str| d.rows.iter().find(|r| r.model == m).unwrap().change.clone();
        // The new reserved core was a's: a moves, and only a (d keeps its cores).
        assert_eq!(change("a"), Change::Moves, "{d}");
        assert_eq!(change("d"), Change::Unchanged, "{d}");
        assert_eq!(
            change("b"),
            Change::Retuned(vec!["NUM_STREAMS 1 -> 2".into()]),
            "{d}"
        );
        // Two properties changed: each listed once (both sides have both keys).
        let hinted = TopologyFile::parse(
            "[default]\nnode = 0\ncores = 2\n[models.b]\nnode = 0\ncores = 2\nstreams = 2\n\
             performance_hint = \"THROUGHPUT\"\n",
            "t.toml",
        )
        .unwrap();
        let two = diff(&machine, &hinted, &names(&["b"]), &running(&now), &[]).unwrap();
        let b = two.rows.iter().find(|r| r.model == "b").unwrap();
        let Change::Retuned(keys) = &b.change else {
            panic!("{two}")
        };
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(change("c"), Change::Moves, "{d}");
        assert_eq!(change("new"), Change::Added, "{d}");
        assert_eq!(change("gone"), Change::Removed, "{d}");
        assert_eq!(
            d.reserved,
            Some(("none".into(), "node 0 cpus 0-1".into())),
            "{d}"
        );
        let text = d.to_string();
        assert!(text.contains("5 of 6 models change"), "{text}");
    }
}
