//! Planner tests on hwloc's synthetic 2 × Xeon Platinum 8180 and on a 1-node 2-core machine
//! like the CI host, so they pass on any machine.

use super::*;

const DUAL_8180: &str = "pack:2 numa:1 core:28 pu:2";

fn machine(synthetic: &str) -> Machine {
    discover(Source::Synthetic(synthetic)).unwrap()
}

fn file(text: &str) -> TopologyFile {
    TopologyFile::parse(text, "t.toml").unwrap()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn get<'a>(p: &'a Plan, model: &str) -> &'a Assignment {
    p.models.iter().find(|a| a.name == model).unwrap()
}

const TWO_HEAVY: &str = r#"
    reserved_cores = { 0 = 2, 1 = 2 }
    [default]
    nodes = [0, 1]
    cores = 2
    [models.resnet_v1_152]
    node = 0
    cores = 24
    [models.resnet_v2_152]
    node = 1
    cores = 24
"#;

#[test]
fn heavy_models_get_a_socket_each_and_small_ones_the_rest() {
    let models = names(&[
        "resnet_v1_50",
        "resnet_v1_152",
        "resnet_v2_50",
        "resnet_v2_152",
    ]);
    let p = plan(&machine(DUAL_8180), &file(TWO_HEAVY), &models).unwrap();
    assert_eq!(p.reserved[0].cores, vec![0, 1]);
    assert_eq!(p.reserved[1].cores, vec![28, 29]);
    let v1 = get(&p, "resnet_v1_152");
    assert_eq!((v1.node, v1.cores.len()), (0, 24));
    assert_eq!(v1.cores, (2..26).collect::<Vec<_>>());
    // One PU per core without hyper-threads: core n owns PUs 2n and 2n+1 in this topology.
    assert_eq!(v1.cpus, (2..26).map(|c| 2 * c).collect::<Vec<_>>());
    assert_eq!(v1.properties["INFERENCE_NUM_THREADS"], "24");
    assert_eq!(v1.properties["NUM_STREAMS"], "1");
    assert_eq!(v1.properties["ENABLE_HYPER_THREADING"], "NO");
    assert_eq!(v1.properties["ENABLE_CPU_PINNING"], "YES");
    assert_eq!(v1.properties["PERFORMANCE_HINT"], "LATENCY");
    let v2 = get(&p, "resnet_v2_152");
    assert_eq!((v2.node, v2.cores.clone()), (1, (30..54).collect()));
    // The two small models take what is left, one per node (most free cores first).
    assert_eq!(
        (
            get(&p, "resnet_v1_50").node,
            get(&p, "resnet_v1_50").cores.clone()
        ),
        (0, vec![26, 27])
    );
    assert_eq!(
        (
            get(&p, "resnet_v2_50").node,
            get(&p, "resnet_v2_50").cores.clone()
        ),
        (1, vec![54, 55])
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let table = p.to_string();
    assert!(table.contains("resnet_v1_152  0     2-25 (24)"), "{table}");
}

#[test]
fn hyperthreads_double_the_cpus_and_threads() {
    let f = file("[models.m]\nnode = 1\ncores = 2\nhyperthreads = true\nperformance_hint = \"THROUGHPUT\"\nstreams = 2");
    let p = plan(&machine(DUAL_8180), &f, &names(&["m"])).unwrap();
    let m = get(&p, "m");
    assert_eq!(m.cpus, vec![56, 57, 58, 59]);
    assert_eq!(m.threads(), 4);
    assert_eq!(m.properties["ENABLE_HYPER_THREADING"], "YES");
    assert_eq!(m.properties["NUM_STREAMS"], "2");
}

#[test]
fn throughput_without_streams_leaves_them_to_openvino() {
    let f = file("[default]\ncores = 4\nperformance_hint = \"THROUGHPUT\"");
    let p = plan(&machine(DUAL_8180), &f, &names(&["m"])).unwrap();
    assert!(!get(&p, "m").properties.contains_key("NUM_STREAMS"));
}

#[test]
fn shipped_example_files_plan_cleanly() {
    let models = names(&[
        "resnet_v1_50",
        "resnet_v1_152",
        "resnet_v2_50",
        "resnet_v2_152",
    ]);
    let dual = TopologyFile::parse(
        include_str!("../../topology/dual-platinum-8180.toml"),
        "dual-platinum-8180.toml",
    )
    .unwrap();
    let p = plan(&machine(DUAL_8180), &dual, &models).unwrap();
    assert_eq!(get(&p, "resnet_v1_152").node, 0);
    assert_eq!(get(&p, "resnet_v2_152").node, 1);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let single = TopologyFile::parse(
        include_str!("../../topology/single-socket.toml"),
        "single-socket.toml",
    )
    .unwrap();
    let p = plan(&machine("pack:1 numa:1 core:28 pu:2"), &single, &models).unwrap();
    assert!(p.models.iter().all(|a| a.node == 0));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn oversubscription_is_an_error_naming_model_node_and_counts() {
    let f = file("reserved_cores = { 0 = 2 }\n[default]\nnode = 0\ncores = 20");
    let e = plan(&machine(DUAL_8180), &f, &names(&["a", "b"])).unwrap_err();
    assert_eq!(
        e,
        PlanError::NotEnoughCores {
            model: "b".into(),
            node: 0,
            needed: 20,
            available: 6,
            usable: 28,
            reserved: 2,
            taken: "a 20".into(),
        }
    );
    let text = e.to_string();
    assert!(
        text.contains("model b: needs 20 cores on node 0, 6 available"),
        "{text}"
    );
    let e = plan(
        &machine(DUAL_8180),
        &file("[models.a]\nnode = 0\ncores = 29"),
        &names(&["a"]),
    );
    assert!(matches!(
        e,
        Err(PlanError::NotEnoughCores {
            needed: 29,
            available: 28,
            ..
        })
    ));
}

#[test]
fn allowed_oversubscription_shares_cores_with_a_warning() {
    let f = file("allow_oversubscription = true\nreserved_cores = { 0 = 2 }\n[default]\nnode = 0\ncores = 20");
    let p = plan(&machine(DUAL_8180), &f, &names(&["a", "b"])).unwrap();
    assert_eq!(get(&p, "b").cores.len(), 20);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("b needs 20 cores on node 0; 14 of them shared with a"),
        "{:?}",
        p.warnings
    );
    assert!(p.to_string().contains("warning: b needs 20"));
}

#[test]
fn explicit_core_ids_are_checked() {
    let m = machine(DUAL_8180);
    let run = |text: &str| plan(&m, &file(text), &names(&["a", "b"]));
    let e = run("[models.a]\ncore_ids = [3]\n[models.b]\ncore_ids = [3, 4]").unwrap_err();
    assert!(
        matches!(&e, PlanError::CoreTaken { model, core: 3, owner, .. } if model == "b" && owner == "a"),
        "{e}"
    );
    let e = run("reserved_cores = { 0 = 1 }\n[default]\ncore_ids = [0]").unwrap_err();
    assert!(e.to_string().contains("already taken by (server)"), "{e}");
    let e = run("[default]\nnode = 1\ncore_ids = [5]").unwrap_err();
    assert_eq!(e.to_string(), "model a: core 5 is on node 0, not node 1");
    let e = run("[default]\ncore_ids = [99]").unwrap_err();
    assert_eq!(
        e.to_string(),
        "model a: core 99 does not exist here (cores 0-55)"
    );
    let e = run("[default]\nnode = 2\ncores = 1").unwrap_err();
    assert_eq!(e.to_string(), "a: node 2 does not exist here (nodes: 0, 1)");
    let p = run("[models.a]\ncore_ids = [29, 28]\n[models.b]\ncores = 1\nnode = 1").unwrap();
    assert_eq!(
        (get(&p, "a").node, get(&p, "a").cpus.clone()),
        (1, vec![56, 58])
    );
    assert_eq!(
        get(&p, "b").cores,
        vec![30],
        "counted cores skip the fixed ones"
    );
}

#[test]
fn missing_placement_and_bad_streams_are_errors() {
    let m = machine(DUAL_8180);
    let e = plan(&m, &file("[models.a]\ncores = 1"), &names(&["a", "b"])).unwrap_err();
    assert_eq!(e, PlanError::NoPlacement { model: "b".into() });
    let e = plan(&m, &file("[default]\nnode = 0"), &names(&["a"])).unwrap_err();
    assert_eq!(e, PlanError::NoCores { model: "a".into() });
    let e = plan(
        &m,
        &file("[default]\ncores = 2\nstreams = 3"),
        &names(&["a"]),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        PlanError::TooManyStreams {
            streams: 3,
            threads: 2,
            ..
        }
    ));
    let e = plan(&m, &file("reserved_cores = { 1 = 29 }"), &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "reserved_cores: node 1 reserves 29 cores but has 28 usable"
    );
}

#[test]
fn unserved_models_in_the_file_are_warnings() {
    let f = file("[default]\ncores = 1\n[models.gone]\ncores = 1");
    let p = plan(&machine(DUAL_8180), &f, &names(&["a"])).unwrap();
    assert_eq!(
        p.warnings,
        vec!["topology file places gone, which the config does not serve"]
    );
}

#[test]
fn two_cpu_host_one_model_per_cpu() {
    let m = machine("numa:1 core:2 pu:1");
    let f = file("[models.a]\ncore_ids = [0]\n[models.b]\ncore_ids = [1]");
    let p = plan(&m, &f, &names(&["a", "b"])).unwrap();
    assert_eq!(
        (get(&p, "a").cpus.clone(), get(&p, "b").cpus.clone()),
        (vec![0], vec![1])
    );
    assert_eq!(get(&p, "a").properties["INFERENCE_NUM_THREADS"], "1");
    let f = file("reserved_cores = { 0 = 1 }\n[default]\ncores = 1");
    let e = plan(&m, &f, &names(&["a", "b"])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "model b: needs 1 cores on node 0, 0 available (2 usable, 1 reserved, taken by a 1)"
    );
}

#[test]
fn cpus_hidden_by_affinity_are_not_planned() {
    // As under `taskset -c 1` on the 2-CPU host: core 0 exists but is not allowed.
    let mut m = machine("numa:1 core:2 pu:1");
    m.nodes[0].cores[0].allowed.clear();
    assert!(
        m.to_string()
            .ends_with("not allowed for this process: CPUs 0"),
        "{m}"
    );
    let p = plan(&m, &file("[default]\ncores = 1"), &names(&["a"])).unwrap();
    assert_eq!(get(&p, "a").cpus, vec![1]);
    let e = plan(&m, &file("[default]\ncore_ids = [0]"), &names(&["a"])).unwrap_err();
    assert!(
        e.to_string().contains("not allowed for this process"),
        "{e}"
    );
    let e = plan(&m, &file("[default]\ncores = 2"), &names(&["a"])).unwrap_err();
    assert!(matches!(e, PlanError::NotEnoughCores { usable: 1, .. }));
}

#[test]
fn replanning_keeps_running_models_on_their_cores() {
    let m = machine(DUAL_8180);
    let f = file("[default]\nnode = 0\ncores = 2\n");
    let running = plan(&m, &f, &names(&["b", "d"])).unwrap();
    // A fresh plan of a, b, d gives a the first cores, moving b and d; replanning does not.
    let fresh = plan(&m, &f, &names(&["a", "b", "d"])).unwrap();
    assert_ne!(get(&fresh, "b").cores, get(&running, "b").cores);
    let next = replan(&m, &f, &names(&["a", "b", "d"]), &running).unwrap();
    assert_eq!(get(&next, "b"), get(&running, "b"));
    assert_eq!(get(&next, "d"), get(&running, "d"));
    assert_eq!(get(&next, "a").cores.len(), 2);

    // A model whose own request changed is planned again; the others stay.
    let f2 = file("[default]\nnode = 0\ncores = 2\n[models.b]\nnode = 1\ncores = 3\n");
    let moved = replan(&m, &f2, &names(&["a", "b", "d"]), &next).unwrap();
    assert_eq!(get(&moved, "b").node, 1);
    assert_eq!(get(&moved, "b").cores.len(), 3);
    assert_eq!(get(&moved, "a"), get(&next, "a"));
    assert_eq!(get(&moved, "d"), get(&next, "d"));

    // A new core_ids request for a running model's cores takes them: that model moves.
    let taken = get(&next, "d").cores.clone();
    let f3 = file(&format!(
        "[default]\nnode = 0\ncores = 2\n[models.a]\nnode = 0\ncore_ids = {taken:?}\n"
    ));
    let grabbed = replan(&m, &f3, &names(&["a", "b", "d"]), &next).unwrap();
    assert_eq!(get(&grabbed, "a").cores, taken);
    assert_ne!(get(&grabbed, "d").cores, taken);

    // An unsatisfiable file is an error, whatever runs.
    let f4 = file("[default]\nnode = 0\ncores = 40\n");
    assert!(replan(&m, &f4, &names(&["a"]), &next).is_err());
}
