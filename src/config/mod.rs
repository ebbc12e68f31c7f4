//! Server flags and the OVMS-compatible model config.

pub mod cli;
pub mod model;
pub mod tfs;

pub use cli::{Cli, Command, PlanArgs, ServeArgs};
pub use model::{load_config_file, parse_config, ConfigError, ModelConfig, ServerConfig};
