//! Server flags and the OVMS-compatible model config.

pub mod batching;
pub mod cli;
pub mod model;
pub mod tfs;

pub use cli::{CheckArgs, Cli, Command, PlanArgs, ServeArgs, WorkerArgs};
pub use model::{
    load_config_file, parse_config, parse_config_all, ConfigError, ModelConfig, ServerConfig,
};
