//! Why no plan exists. Each variant carries the model, the node and the counts an operator
//! needs to fix the topology file without reading code.

/// Why no plan exists; every variant names what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("model {model}: no [models.{model}] table and no [default] in the topology file")]
    NoPlacement { model: String },
    #[error("model {model}: give cores = N or core_ids = [...] (or cores in [default])")]
    NoCores { model: String },
    #[error("{who}: node {node} does not exist here (nodes: {available})")]
    UnknownNode {
        who: String,
        node: usize,
        available: String,
    },
    #[error("model {model}: core {core} does not exist here (cores 0-{last})")]
    UnknownCore {
        model: String,
        core: usize,
        last: usize,
    },
    #[error("model {model}: core {core} is on node {core_node}, not node {node}")]
    CoreOnOtherNode {
        model: String,
        core: usize,
        core_node: usize,
        node: usize,
    },
    #[error("model {model}: core {core} (CPUs {cpus}) is not allowed for this process (taskset, CPUAffinity= or cgroup)")]
    CoreNotAllowed {
        model: String,
        core: usize,
        cpus: String,
    },
    #[error("model {model}: core {core} on node {node} is already taken by {owner}")]
    CoreTaken {
        model: String,
        core: usize,
        node: usize,
        owner: String,
    },
    #[error("reserved_cores: node {node} reserves {reserved} cores but has {usable} usable")]
    ReservationTooLarge {
        node: usize,
        reserved: usize,
        usable: usize,
    },
    #[error("model {model}: needs {needed} cores on node {node}, {available} available ({usable} usable, {reserved} reserved, taken by {taken})")]
    NotEnoughCores {
        model: String,
        node: usize,
        needed: usize,
        available: usize,
        usable: usize,
        reserved: usize,
        taken: String,
    },
    #[error("model {model}: {streams} streams need at least as many threads, it has {threads}")]
    TooManyStreams {
        model: String,
        streams: usize,
        threads: usize,
    },
}
