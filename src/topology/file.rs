//! The topology file (TOML): which NUMA node and how many cores each model gets.
//!
//! Parsing is strict (unknown keys are errors) because a misspelt `hyperthread = true` that
//! silently did nothing would cost an operator a day of benchmarking. Errors carry the key
//! path (`models.resnet.cores`) and, for syntax errors, TOML's line/column snippet.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A parsed, shape-checked topology file. Checks against a machine happen in the planner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyFile {
    /// Cores per NUMA node kept for the server's own gRPC/REST/IO threads (the lowest-numbered
    /// usable cores of the node, where the kernel also tends to put housekeeping work).
    pub reserved_cores: BTreeMap<usize, usize>,
    /// Turn over-subscription errors into warnings in the plan.
    pub allow_oversubscription: bool,
    /// Settings for models without their own `[models.NAME]` table, and defaults for the
    /// keys such a table leaves out.
    pub default: Option<PlacementRequest>,
    /// Per-model settings, by model name.
    pub models: BTreeMap<String, PlacementRequest>,
}

/// Where one model runs and how OpenVINO should use its cores. Every key is optional so a
/// model table can override just one key of `[default]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    /// The one NUMA node (OS index) to run on.
    pub node: Option<usize>,
    /// Candidate nodes; the planner picks the one with the most free cores.
    pub nodes: Option<Vec<usize>>,
    /// How many physical cores (the planner picks which).
    pub cores: Option<usize>,
    /// Exactly these cores (hwloc logical indexes, `Core L#n` in `lstopo`).
    pub core_ids: Option<Vec<usize>>,
    /// Whether inference may also run on the cores' hyper-thread siblings.
    pub hyperthreads: Option<bool>,
    /// OpenVINO NUM_STREAMS; by default 1 for LATENCY and left to OpenVINO otherwise.
    pub streams: Option<usize>,
    /// OpenVINO PERFORMANCE_HINT: LATENCY, THROUGHPUT or CUMULATIVE_THROUGHPUT.
    pub performance_hint: Option<Hint>,
    /// OpenVINO ENABLE_CPU_PINNING (default true: threads stay on the planned CPUs).
    pub pinning: Option<bool>,
}

/// OpenVINO's PERFORMANCE_HINT values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Hint {
    Latency,
    Throughput,
    CumulativeThroughput,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hint::Latency => "LATENCY",
            Hint::Throughput => "THROUGHPUT",
            Hint::CumulativeThroughput => "CUMULATIVE_THROUGHPUT",
        })
    }
}

impl PlacementRequest {
    /// `self` with keys it leaves out taken from `base`. `node`/`nodes` and `cores`/`core_ids`
    /// are each one choice: a model that names either key of a pair overrides both.
    pub fn over(&self, base: &PlacementRequest) -> PlacementRequest {
        let names_node = self.node.is_some() || self.nodes.is_some();
        let names_cores = self.cores.is_some() || self.core_ids.is_some();
        PlacementRequest {
            node: if names_node { self.node } else { base.node },
            nodes: if names_node {
                self.nodes.clone()
            } else {
                base.nodes.clone()
            },
            cores: if names_cores { self.cores } else { base.cores },
            core_ids: if names_cores {
                self.core_ids.clone()
            } else {
                base.core_ids.clone()
            },
            hyperthreads: self.hyperthreads.or(base.hyperthreads),
            streams: self.streams.or(base.streams),
            performance_hint: self.performance_hint.or(base.performance_hint),
            pinning: self.pinning.or(base.pinning),
        }
    }
}

/// A topology file problem: the file, the key path and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct FileError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    reserved_cores: BTreeMap<String, usize>,
    #[serde(default)]
    allow_oversubscription: bool,
    default: Option<PlacementRequest>,
    #[serde(default)]
    models: BTreeMap<String, PlacementRequest>,
}

impl TopologyFile {
    /// Reads and parses a topology file.
    pub fn load(path: &Path) -> Result<TopologyFile, FileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            file: file.clone(),
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses topology TOML; `file` only names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<TopologyFile, FileError> {
        let fail = |key: String, reason: String| FileError {
            file: file.to_string(),
            key,
            reason,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| fail("(syntax)".into(), e.to_string().trim_end().into()))?;
        let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." {
                "(top level)".into()
            } else {
                key
            };
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1);
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            fail(key, format!("{}{at}", inner.message()))
        })?;
        let mut reserved_cores = BTreeMap::new();
        for (node, count) in raw.reserved_cores {
            let id = node.parse::<usize>().map_err(|_| {
                fail(
                    format!("reserved_cores.{node}"),
                    "keys are NUMA node numbers, e.g. reserved_cores = { 0 = 2, 1 = 2 }".into(),
                )
            })?;
            reserved_cores.insert(id, count);
        }
        let tables = raw.default.iter().map(|p| ("default".to_string(), p));
        let tables = tables.chain(raw.models.iter().map(|(m, p)| (format!("models.{m}"), p)));
        for (at, p) in tables {
            check_shape(p).map_err(|(key, reason)| fail(format!("{at}.{key}"), reason))?;
        }
        Ok(TopologyFile {
            reserved_cores,
            allow_oversubscription: raw.allow_oversubscription,
            default: raw.default,
            models: raw.models,
        })
    }
}

/// Checks that need no machine: exclusive key pairs, empty lists, zero counts.
fn check_shape(p: &PlacementRequest) -> Result<(), (&'static str, String)> {
    if p.node.is_some() && p.nodes.is_some() {
        return Err(("nodes", "give either node or nodes, not both".into()));
    }
    if p.nodes.as_ref().is_some_and(Vec::is_empty) {
        return Err(("nodes", "must list at least one node".into()));
    }
    if p.cores.is_some() && p.core_ids.is_some() {
        return Err(("core_ids", "give either cores or core_ids, not both".into()));
    }
    if p.cores == Some(0) {
        return Err(("cores", "must be at least 1".into()));
    }
    if let Some(ids) = &p.core_ids {
        if ids.is_empty() {
            return Err(("core_ids", "must list at least one core".into()));
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(("core_ids", format!("core {} is listed twice", w[0])));
        }
    }
    if p.streams == Some(0) {
        return Err(("streams", "must be at least 1".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TopologyFile, FileError> {
        TopologyFile::parse(text, "t.toml")
    }

    #[test]
    fn parses_models_defaults_and_reservations() {
        let f = parse(
            r#"
            reserved_cores = { 0 = 2, 1 = 1 }
            [default]
            nodes = [0, 1]
            cores = 4
            [models.big]
            node = 1
            core_ids = [30, 31]
            hyperthreads = true
            performance_hint = "THROUGHPUT"
            streams = 2
            "#,
        )
        .unwrap();
        assert_eq!(f.reserved_cores, BTreeMap::from([(0, 2), (1, 1)]));
        let big = f.models["big"].over(f.default.as_ref().unwrap());
        assert_eq!((big.node, big.nodes), (Some(1), None));
        assert_eq!((big.cores, big.core_ids), (None, Some(vec![30, 31])));
        assert_eq!(big.performance_hint, Some(Hint::Throughput));
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = parse("[models.m]\nhyperthread = true").unwrap_err();
        assert_eq!(e.key, "models.m.hyperthread");
        assert!(e.reason.contains("unknown field"), "{e}");
        let e = parse("[models.m]\ncores = \"many\"").unwrap_err();
        assert_eq!(e.key, "models.m.cores");
        let e = parse("[default]\nperformance_hint = \"FAST\"").unwrap_err();
        assert_eq!(e.key, "default.performance_hint");
        let e = parse("reserved_cores = { a = 1 }").unwrap_err();
        assert_eq!(e.key, "reserved_cores.a");
        let e = parse("[models.m]\ncores = 2\ncore_ids = [1]").unwrap_err();
        assert_eq!(e.key, "models.m.core_ids");
        let e = parse("[models.m]\ncore_ids = [1, 1]").unwrap_err();
        assert!(e.reason.contains("twice"), "{e}");
        let e = parse("[models.m\n").unwrap_err();
        assert_eq!(e.key, "(syntax)");
        assert!(e.to_string().starts_with("t.toml: "), "{e}");
        let e = parse("[models.m]\n\ncores = -1").unwrap_err();
        assert_eq!(
            e.reason,
            "invalid value: integer `-1`, expected usize (line 3)"
        );
    }
}
