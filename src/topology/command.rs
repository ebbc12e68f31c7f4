//! `vinoserve plan`: config + topology file + machine → the printed plan.

use super::diff::{diff, fetch_running, Diff};
use super::{discover, plan, Plan, Source, TopologyFile};
use crate::config::{load_config_file, PlanArgs};
use std::path::Path;

fn source(args: &PlanArgs) -> Source<'_> {
    match (&args.synthetic, &args.hwloc_xml) {
        (Some(s), _) => Source::Synthetic(s),
        (None, Some(p)) => Source::XmlFile(p),
        (None, None) => Source::ThisMachine,
    }
}

fn config_models(args: &PlanArgs) -> Result<Vec<String>, String> {
    let config = load_config_file(&args.config).map_err(|e| format!("invalid config: {e}"))?;
    Ok(config.models.into_iter().map(|m| m.name).collect())
}

/// Runs the planner for the CLI; the error is the one line to print before exiting 1.
pub fn run_plan(args: &PlanArgs) -> Result<Plan, String> {
    plan_from_file(&args.topology, source(args), &config_models(args)?)
}

/// `vinoserve plan --diff URL`: the running server's placement against this file's plan.
pub fn run_diff(args: &PlanArgs, url: &str) -> Result<Diff, String> {
    let models = config_models(args)?;
    let (running, reserved) = fetch_running(url)?;
    let file = TopologyFile::load(&args.topology).map_err(|e| format!("invalid topology: {e}"))?;
    let machine = discover(source(args)).map_err(|e| format!("topology discovery failed: {e}"))?;
    diff(&machine, &file, &models, &running, &reserved)
        .map_err(|e| format!("invalid placement for {}: {e}", args.topology.display()))
}

/// Topology file + machine + model names → plan (`vinoserve plan`, and `--topology` at start-up);
/// the error is one line that says which step failed.
pub fn plan_from_file(
    topology: &Path,
    source: Source<'_>,
    models: &[String],
) -> Result<Plan, String> {
    let file = TopologyFile::load(topology).map_err(|e| format!("invalid topology: {e}"))?;
    let machine = discover(source).map_err(|e| format!("topology discovery failed: {e}"))?;
    plan(&machine, &file, models)
        .map_err(|e| format!("invalid placement for {}: {e}", topology.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser;

    fn args(extra: &[&str], config: &str, topology: &str) -> PlanArgs {
        let mut argv = vec![
            "vinoserve",
            "plan",
            "--config",
            config,
            "--topology",
            topology,
        ];
        argv.extend(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Plan(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plans_the_configs_models_on_a_described_machine() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("m1")).unwrap();
        let config = d.path().join("config.json");
        let config_json = r#"{"model_config_list":[{"config":{"name":"m1","base_path":"m1"}}]}"#;
        std::fs::write(&config, config_json).unwrap();
        let topo = d.path().join("t.toml");
        std::fs::write(&topo, "[models.m1]\nnode = 1\ncores = 3").unwrap();
        let (c, t) = (config.to_str().unwrap(), topo.to_str().unwrap());
        let plan = run_plan(&args(&["--synthetic", "pack:2 numa:1 core:28 pu:2"], c, t)).unwrap();
        assert_eq!(plan.models[0].cores, vec![28, 29, 30]);
        assert!(
            plan.to_string().contains("m1     1     28-30 (3)"),
            "{plan}"
        );

        std::fs::write(&topo, "[models.m1]\nnode = 1\ncores = 29").unwrap();
        let e = run_plan(&args(&["--synthetic", "pack:2 numa:1 core:28 pu:2"], c, t)).unwrap_err();
        assert!(
            e.contains("model m1: needs 29 cores on node 1, 28 available"),
            "{e}"
        );
        let e = run_plan(&args(&["--hwloc-xml", "/nonexistent.xml"], c, t)).unwrap_err();
        assert!(e.contains("/nonexistent.xml"), "{e}");
        assert!(Cli::try_parse_from([
            "vinoserve",
            "plan",
            "--config",
            c,
            "--topology",
            t,
            "--synthetic",
            "x",
            "--hwloc-xml",
            "y"
        ])
        .is_err());
    }
}
