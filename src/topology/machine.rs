//! The machine as the planner sees it: plain data, no hwloc types.
//!
//! Keeping hwloc out of this struct is what lets the planner be a pure function tested on
//! any machine, and lets the plan be printed for a host we are not running on.

use std::fmt;

/// NUMA nodes → physical cores → PU (logical CPU) OS indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Where the description came from ("this machine", "synthetic \"pack:2 ...\"", a path).
    pub source: String,
    /// NUMA nodes that have cores, by ascending OS index.
    pub nodes: Vec<Node>,
}

/// One NUMA node with its cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's OS index, as `numactl` and `/sys/devices/system/node/nodeN` name it.
    pub id: usize,
    /// Logical index of the package (socket) the node sits in.
    pub package: usize,
    /// Physical cores whose PUs belong to this node, by ascending id.
    pub cores: Vec<Core>,
}

/// One physical core and its hyper-thread siblings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Core {
    /// hwloc's logical core index (`Core L#n` in `lstopo`), unique across the machine.
    /// OS core ids are not: Linux numbers cores per package, so they repeat on socket 1.
    pub id: usize,
    /// OS indexes of all PUs (hyper-threads) of the core, ascending.
    pub pus: Vec<usize>,
    /// The subset of `pus` this process may run on (cgroup cpuset ∩ its affinity mask, i.e.
    /// systemd `CPUAffinity=`/`AllowedCPUs=` or `taskset`). Empty: the core is unusable.
    pub allowed: Vec<usize>,
}

impl Core {
    /// Whether the process may run on at least one of the core's PUs.
    pub fn usable(&self) -> bool {
        !self.allowed.is_empty()
    }
}

impl Node {
    /// Cores this process may use on this node.
    pub fn usable_cores(&self) -> impl Iterator<Item = &Core> {
        self.cores.iter().filter(|c| c.usable())
    }
}

impl Machine {
    /// The node with OS index `id`.
    pub fn node(&self, id: usize) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The node holding core `core_id`, with the core.
    pub fn core(&self, core_id: usize) -> Option<(&Node, &Core)> {
        self.nodes
            .iter()
            .find_map(|n| n.cores.iter().find(|c| c.id == core_id).map(|c| (n, c)))
    }

    /// PUs that exist but that this process may not use, ascending.
    pub fn disallowed_pus(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .nodes
            .iter()
            .flat_map(|n| &n.cores)
            .flat_map(|c| c.pus.iter().filter(|p| !c.allowed.contains(p)))
            .copied()
            .collect();
        out.sort_unstable();
        out
    }

    /// Number of distinct packages.
    pub fn packages(&self) -> usize {
        let mut p: Vec<usize> = self.nodes.iter().map(|n| n.package).collect();
        p.sort_unstable();
        p.dedup();
        p.len()
    }
}

impl fmt::Display for Machine {
    /// One summary line, e.g. `2 packages, 2 NUMA nodes, 56 cores, 112 PUs (synthetic ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cores: usize = self.nodes.iter().map(|n| n.cores.len()).sum();
        let pus: usize = self
            .nodes
            .iter()
            .flat_map(|n| &n.cores)
            .map(|c| c.pus.len())
            .sum();
        let n = |count: usize, what: &str| {
            format!("{count} {what}{}", if count == 1 { "" } else { "s" })
        };
        write!(
            f,
            "{}, {}, {}, {} ({})",
            n(self.packages(), "package"),
            n(self.nodes.len(), "NUMA node"),
            n(cores, "core"),
            n(pus, "PU"),
            self.source
        )?;
        let hidden = self.disallowed_pus();
        if !hidden.is_empty() {
            write!(
                f,
                "; not allowed for this process: CPUs {}",
                cpu_list(&hidden)
            )?;
        }
        Ok(())
    }
}

/// Formats CPU or core numbers the way `taskset -c` and `Cpus_allowed_list` do: `0-13,56-69`.
pub fn cpu_list(ids: &[usize]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_use_ranges() {
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(cpu_list(&[3]), "3");
        assert_eq!(cpu_list(&[]), "-");
    }
}
