//! `vinoserve check`: everything that can be validated without serving, in one run.
//!
//! An operator runs it before `systemctl restart vinoserve` (ideally as the service user, so
//! "readable" means readable by the service). Each problem says where it is — a config JSON
//! path, a folder, a file, a topology key — so it can be fixed without reading code, and all of
//! them are listed, not only the first.

use crate::config::{parse_config_all, CheckArgs, ModelConfig};
use crate::control::policy::VersionPolicy;
use crate::repository::completeness::{files_complete, Verdict};
use crate::repository::{scan_versions, version_dir};
use crate::runtime::files::ModelFiles;
use crate::topology::{discover, plan, Source, TopologyFile};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

/// One thing to fix: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub location: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// What `check` found: problems (exit 1), warnings and, for the OK summary, what was checked.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// Worth knowing, not wrong (e.g. allowed over-subscription).
    pub warnings: Vec<String>,
    /// One line per thing that checked out.
    pub checked: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, location: impl fmt::Display, message: impl Into<String>) {
        self.problems.push(Problem {
            location: location.to_string(),
            message: message.into(),
        });
    }
}

impl fmt::Display for Report {
    /// Problems one per line then a count; or an OK line and the summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        match self.problems.len() {
            0 => {
                writeln!(f, "vinoserve check: OK")?;
                for line in &self.checked {
                    writeln!(f, "  {line}")?;
                }
                Ok(())
            }
            1 => writeln!(f, "vinoserve check: 1 problem"),
            n => writeln!(f, "vinoserve check: {n} problems"),
        }
    }
}

/// Runs every check; never stops at the first problem.
pub fn run_check(args: &CheckArgs) -> Report {
    let mut report = Report::default();
    let models = check_config(&args.config, &mut report);
    for model in &models {
        check_model(model, &mut report);
    }
    if let Some(topology) = &args.topology {
        check_topology(topology, &models, &mut report);
    }
    report
}

/// The config file against the schema; returns the models that are valid.
fn check_config(path: &Path, report: &mut Report) -> Vec<ModelConfig> {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            report.problem(shown, format!("cannot read config: {e}"));
            return Vec::new();
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    match parse_config_all(&text, base_dir) {
        Ok((config, problems)) => {
            for e in problems {
                report.problem(format!("{shown}: {}", e.path), e.reason);
            }
            report.checked.push(format!(
                "config {shown}: {}",
                count(config.models.len(), "model")
            ));
            config.models
        }
        Err(e) => {
            report.problem(format!("{shown}: {}", e.path), e.reason);
            Vec::new()
        }
    }
}

/// The model's folder: readable, with version folders, and the versions its policy would serve
/// complete and readable. Versions the policy would not serve are not loaded, so not checked.
fn check_model(model: &ModelConfig, report: &mut Report) {
    let base = model.base_path.display().to_string();
    let on_disk = match scan_versions(&model.base_path) {
        Ok(found) => found,
        Err(e) => {
            report.problem(
                &base,
                format!("model {}: cannot read the model folder: {e}", model.name),
            );
            return;
        }
    };
    if on_disk.is_empty() {
        report.problem(
            &base,
            format!(
                "model {}: no version folder (expected numbered folders such as {}/1/ holding the model files)",
                model.name, base
            ),
        );
        return;
    }
    let served = model.policy.select(&on_disk);
    if let VersionPolicy::Specific { versions } = &model.policy {
        let missing: Vec<String> = versions
            .iter()
            .filter(|v| !on_disk.contains(v))
            .map(u64::to_string)
            .collect();
        if served.is_empty() {
            report.problem(
                &base,
                format!(
                    "model {}: model_version_policy names versions {} but the folder has {}",
                    model.name,
                    list(versions.iter()),
                    list(on_disk.iter())
                ),
            );
            return;
        }
        if !missing.is_empty() {
            report.warnings.push(format!(
                "model {}: versions {} of model_version_policy are not in {base}",
                model.name,
                missing.join(", ")
            ));
        }
    }
    let mut complete = 0;
    for &version in &served {
        let dir = version_dir(&model.base_path, version);
        let at = dir.display();
        let name = &model.name;
        match files_complete(&dir) {
            Verdict::Complete => {}
            Verdict::Incomplete(reason) | Verdict::NoModel(reason) => {
                report.problem(at, format!("model {name} version {version}: {reason}"));
                continue;
            }
        }
        if let Err(reason) = files_readable(&dir) {
            report.problem(at, format!("model {name} version {version}: {reason}"));
            continue;
        }
        complete += 1;
    }
    if complete == served.len() {
        report.checked.push(format!(
            "model {}: {base}: versions on disk {}, serves {}",
            model.name,
            list(on_disk.iter()),
            list(served.iter())
        ));
    }
}

/// Every model file opens for reading (the XML was read already; the weights were only
/// measured).
fn files_readable(dir: &Path) -> Result<(), String> {
    let files = ModelFiles::find(dir).map_err(|e| e.to_string())?.files();
    for file in files {
        std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

/// The topology file parses and, for the valid models, a plan exists on this machine.
fn check_topology(path: &Path, models: &[ModelConfig], report: &mut Report) {
    let file = match TopologyFile::load(path) {
        Ok(file) => file,
        Err(e) => {
            report.problem(format!("{}: {}", e.file, e.key), e.reason);
            return;
        }
    };
    let machine = match discover(Source::ThisMachine) {
        Ok(machine) => machine,
        Err(e) => {
            report.problem(path.display(), format!("cannot discover this machine: {e}"));
            return;
        }
    };
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    match plan(&machine, &file, &names) {
        Ok(plan) => {
            report.warnings.extend(plan.warnings);
            report.checked.push(format!(
                "topology {}: {} placed on {}",
                path.display(),
                count(plan.models.len(), "model"),
                plan.machine
            ));
        }
        Err(e) => report.problem(
            path.display(),
            format!("does not fit this machine ({machine}): {e}"),
        ),
    }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn list<'a>(versions: impl Iterator<Item = &'a u64>) -> String {
    let all: BTreeSet<u64> = versions.copied().collect();
    all.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const XML: &str = r#"<?xml version="1.0"?>
<net name="m" version="11"><layers>
<layer id="1" type="Const"><data element_type="f32" shape="2" offset="0" size="8" /></layer>
</layers></net>
"#;

    /// A repository with `models` (name → versions, each complete unless its bin is short).
    fn repo(models: &[(&str, &[(u64, usize)])], extra: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let mut entries = Vec::new();
        for (name, versions) in models {
            let base = d.path().join("models").join(name);
            std::fs::create_dir_all(&base).unwrap();
            for &(v, bin_len) in *versions {
                let dir = base.join(v.to_string());
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("model.xml"), XML).unwrap();
                std::fs::write(dir.join("model.bin"), vec![0u8; bin_len]).unwrap();
            }
            entries.push(format!(
                r#"{{"config": {{"name": "{name}", "base_path": "models/{name}"{extra}}}}}"#
            ));
        }
        let config = d.path().join("config.json");
        let text = format!(r#"{{"model_config_list": [{}]}}"#, entries.join(","));
        std::fs::write(&config, text).unwrap();
        (d, config)
    }

    fn check(config: &Path, topology: Option<&Path>) -> Report {
        run_check(&CheckArgs {
            config: config.to_path_buf(),
            topology: topology.map(Path::to_path_buf),
        })
    }

    #[test]
    fn a_good_deployment_is_ok() {
        let (d, config) = repo(&[("a", &[(1, 8), (2, 8)]), ("b", &[(3, 8)])], "");
        let topology = d.path().join("t.toml");
        std::fs::write(
            &topology,
            "allow_oversubscription = true\n[default]\ncores = 1\n",
        )
        .unwrap();
        let report = check(&config, Some(&topology));
        assert!(report.ok(), "{report}");
        let text = report.to_string();
        assert!(text.starts_with("vinoserve check: OK\n"), "{text}");
        assert!(text.contains("model a: "), "{text}");
        assert!(text.contains("versions on disk 1, 2, serves 2"), "{text}");
    }

    #[test]
    fn every_problem_is_listed_with_its_location() {
        let (d, config) = repo(
            &[("a", &[(1, 8), (2, 3)]), ("empty", &[])],
            r#", "model_version_policy": {"all": {}}"#,
        );
        // A third model whose folder is missing, after the others.
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "]}",
            r#",{"config": {"name": "gone", "base_path": "nowhere"}}]}"#,
        );
        std::fs::write(&config, text).unwrap();
        let topology = d.path().join("t.toml");
        std::fs::write(
            &topology,
            "[default]\ncores = 1\n[models.a]\ncores = 100000\n",
        )
        .unwrap();
        let report = check(&config, Some(&topology));
        let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(lines.len(), 4, "{report}");
        let root = d.path().display();
        assert!(
            lines[0].starts_with(&format!(
                "{root}/config.json: model_config_list[2].config.base_path: model folder"
            )),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with(&format!(
                "{root}/models/a/2: model a version 2: {root}/models/a/2/model.bin has 3 of the 8 bytes"
            )),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with(&format!(
                "{root}/models/empty: model empty: no version folder"
            )),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with(&format!("{root}/t.toml: does not fit this machine ("))
                && lines[3].contains("model a: needs 100000 cores"),
            "{}",
            lines[3]
        );
        assert!(report
            .to_string()
            .ends_with("vinoserve check: 4 problems\n"));
    }

    #[test]
    fn broken_files_stop_only_their_own_checks() {
        let (d, config) = repo(&[("a", &[(1, 8)])], "");
        let topology = d.path().join("t.toml");
        std::fs::write(&topology, "[models.a]\ncore = 1\n").unwrap();
        let report = check(&config, Some(&topology));
        assert_eq!(report.problems.len(), 1, "{report}");
        assert_eq!(
            report.problems[0].location,
            format!("{}: models.a.core", topology.display())
        );
        std::fs::write(
            &config,
            r#"{"model_config_list": [{"config": {"nam": 1}}]}"#,
        )
        .unwrap();
        let report = check(&config, None);
        assert_eq!(report.problems.len(), 1, "{report}");
        assert_eq!(
            report.problems[0].location,
            format!("{}: model_config_list[0].config.nam", config.display())
        );
        let report = check(&d.path().join("none.json"), None);
        assert!(report.problems[0].message.starts_with("cannot read config"));
    }

    #[test]
    fn specific_versions_must_exist() {
        let (_d, config) = repo(
            &[("a", &[(1, 8)])],
            r#", "model_version_policy": {"specific": {"versions": [1, 4]}}"#,
        );
        let report = check(&config, None);
        assert!(report.ok(), "{report}");
        assert_eq!(report.warnings.len(), 1, "{report}");
        assert!(report.warnings[0].contains("versions 4 of model_version_policy"));
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("[1, 4]", "[5]");
        std::fs::write(&config, text).unwrap();
        let report = check(&config, None);
        assert_eq!(report.problems.len(), 1, "{report}");
        assert!(report.problems[0]
            .message
            .contains("names versions 5 but the folder has 1"));
    }
}
