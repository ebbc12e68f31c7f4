//! The control plane: what serves and where. The manager owns the desired state (config.json,
//! the placement plan) and one actor per model; each model actor turns its folder, its version
//! policy and its config into loads and retirements, published through the registry
//! (`crate::serving`). Readiness says what the health endpoints answer.

pub mod manager;
pub mod model_actor;
pub mod policy;
pub mod readiness;
pub mod versions;
