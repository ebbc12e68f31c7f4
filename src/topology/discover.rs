//! hwloc → [`Machine`]: the only file that touches hwloc types.
//!
//! hwloc is the source of truth for packages, NUMA nodes, cores and hyper-thread siblings (it
//! reads sysfs and knows the quirks we would otherwise re-learn), and it can also describe a
//! machine we are not running on: a synthetic string such as `pack:2 numa:1 core:28 pu:2`
//! (2 × Xeon Platinum 8180) or an XML file saved with `lstopo host.xml` on the target host.

use super::machine::{Core, Machine, Node};
use hwlocality::cpu::binding::CpuBindingFlags;
use hwlocality::cpu::cpuset::CpuSet;
use hwlocality::object::types::ObjectType;
use hwlocality::object::TopologyObject;
use hwlocality::topology::builder::BuildFlags;
use hwlocality::Topology;
use std::path::Path;

/// Which machine to describe.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// The host we run on, restricted to what this process may use.
    ThisMachine,
    /// An hwloc synthetic description, e.g. `pack:2 numa:1 core:28 pu:2`.
    Synthetic(&'a str),
    /// An hwloc XML export (`lstopo file.xml`) of another host.
    XmlFile(&'a Path),
}

/// Topology discovery failed; the message says which source and why.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct DiscoverError {
    pub source_name: String,
    pub reason: String,
}

/// Describes the machine from `source`.
///
/// For [`Source::ThisMachine`] the allowed CPUs are the cgroup's cpuset intersected with the
/// calling thread's affinity, which at start-up is the process's (systemd `CPUAffinity=`,
/// `taskset`): call this before any thread is pinned.
pub fn discover(source: Source<'_>) -> Result<Machine, DiscoverError> {
    let name = match source {
        Source::ThisMachine => "this machine".to_string(),
        Source::Synthetic(s) => format!("synthetic {s:?}"),
        Source::XmlFile(p) => format!("hwloc XML {}", p.display()),
    };
    let fail = |reason: String| DiscoverError {
        source_name: name.clone(),
        reason,
    };
    // Keep disallowed PUs in the tree so the plan can say what taskset/cgroups hide.
    let builder = Topology::builder()
        .with_flags(BuildFlags::INCLUDE_DISALLOWED)
        .map_err(|e| fail(e.to_string()))?;
    let builder = match source {
        Source::ThisMachine => builder,
        Source::Synthetic(s) => builder
            .from_synthetic(s)
            .map_err(|e| fail(format!("invalid synthetic description: {e}")))?,
        // Read the file ourselves: hwlocality's from_xml_file panics on a missing file.
        Source::XmlFile(p) => {
            let xml = std::fs::read_to_string(p).map_err(|e| fail(format!("cannot read: {e}")))?;
            builder
                .from_xml(&xml)
                .map_err(|e| fail(format!("invalid hwloc XML: {e}")))?
        }
    };
    let topology = builder.build().map_err(|e| fail(e.to_string()))?;
    let mut allowed = topology.allowed_cpuset().clone_target();
    if matches!(source, Source::ThisMachine) {
        // THREAD, not PROCESS: PROCESS unions all threads, and a pinned worker would widen
        // or narrow nothing useful; the main thread still carries the launch-time mask.
        if let Ok(bound) = topology.cpu_binding(CpuBindingFlags::THREAD) {
            allowed &= bound;
        }
    }
    let machine = to_machine(&topology, &allowed, name.clone());
    if machine.nodes.iter().all(|n| n.cores.is_empty()) {
        return Err(fail("no cores found".into()));
    }
    Ok(machine)
}

/// Walks the hwloc tree into plain data.
fn to_machine(topology: &Topology, allowed: &CpuSet, source: String) -> Machine {
    let mut nodes: Vec<(Node, CpuSet)> = topology
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|n| {
            let cpuset = n.cpuset()?.clone_target();
            let package = n
                .first_ancestor_with_type(ObjectType::Package)
                .map_or(0, TopologyObject::logical_index);
            let node = Node {
                id: n.os_index().unwrap_or_else(|| n.logical_index()),
                package,
                cores: Vec::new(),
            };
            Some((node, cpuset))
        })
        .collect();
    nodes.sort_by_key(|(n, _)| n.id);
    // Some synthetic or exotic topologies have no Core level: then each PU is a core.
    let unit = if topology.objects_with_type(ObjectType::Core).len() > 0 {
        ObjectType::Core
    } else {
        ObjectType::PU
    };
    for (i, obj) in topology.objects_with_type(unit).enumerate() {
        let Some(cpuset) = obj.cpuset() else { continue };
        let mut pus: Vec<usize> = cpuset.iter_set().map(usize::from).collect();
        pus.sort_unstable();
        if pus.is_empty() {
            continue;
        }
        let core = Core {
            id: i,
            allowed: pus.iter().copied().filter(|&p| allowed.is_set(p)).collect(),
            pus,
        };
        // A core belongs to the first node whose CPUs include it (memory-only nodes, e.g.
        // HBM or CXL, have empty cpusets and never match).
        if let Some((node, _)) = nodes
            .iter_mut()
            .find(|(_, set)| !set.is_empty() && set.includes(cpuset))
        {
            node.cores.push(core);
        }
    }
    Machine {
        source,
        nodes: nodes
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !n.cores.is_empty())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_dual_8180() {
        let m = discover(Source::Synthetic("pack:2 numa:1 core:28 pu:2")).unwrap();
        assert_eq!(m.packages(), 2);
        assert_eq!(m.nodes.len(), 2);
        assert_eq!((m.nodes[0].id, m.nodes[1].id), (0, 1));
        assert_eq!((m.nodes[0].package, m.nodes[1].package), (0, 1));
        assert!(m.nodes.iter().all(|n| n.cores.len() == 28));
        let c = &m.nodes[1].cores[0];
        assert_eq!((c.id, c.pus.clone()), (28, vec![56, 57]));
        assert_eq!(
            c.allowed, c.pus,
            "a described machine has no affinity limits"
        );
        assert!(m.disallowed_pus().is_empty());
    }

    #[test]
    fn this_machine_has_a_usable_core() {
        let m = discover(Source::ThisMachine).unwrap();
        assert!(m.nodes.iter().any(|n| n.usable_cores().count() > 0));
    }

    #[test]
    fn xml_round_trip_and_bad_inputs() {
        let d = tempfile::tempdir().unwrap();
        let xml = d.path().join("host.xml");
        let t = Topology::builder()
            .from_synthetic("pack:1 numa:2 core:2 pu:1")
            .unwrap()
            .build()
            .unwrap();
        t.export_xml_file(Some(xml.as_path()), Default::default())
            .unwrap();
        let m = discover(Source::XmlFile(&xml)).unwrap();
        assert_eq!(m.nodes.len(), 2);
        assert_eq!(m.nodes[1].cores[0].pus, vec![2]);
        let e = discover(Source::Synthetic("pack:two")).unwrap_err();
        assert!(e.to_string().contains("synthetic"), "{e}");
        let e = discover(Source::XmlFile(&d.path().join("missing.xml"))).unwrap_err();
        assert!(e.to_string().contains("missing.xml"), "{e}");
    }
}
