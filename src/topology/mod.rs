//! NUMA placement: which cores and CPUs each model's inference threads use.
//!
//! Three steps, kept apart so the middle one is a pure, testable function:
//! [`discover`] (hwloc → plain [`Machine`]), [`TopologyFile`] (the operator's TOML), and
//! [`plan`] (machine + file + model names → [`Plan`] with CPU sets and OpenVINO properties).

mod command;
pub mod diff;
pub mod discover;
mod error;
pub mod file;
pub mod machine;
pub mod planner;
mod table;
#[cfg(test)]
mod tests;

pub use command::{plan_from_file, run_diff, run_plan};
pub use discover::{discover, DiscoverError, Source};
pub use file::{FileError, Hint, PlacementRequest, TopologyFile};
pub use machine::{cpu_list, Core, Machine, Node};
pub use planner::{plan, replan, Assignment, Plan, PlanError};
