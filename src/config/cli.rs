//! Command-line flags, spelled as OVMS spells them so existing service files carry over.

use super::model::{validate_model, ConfigError, RawModel, ServerConfig};
use crate::control::readiness::ReadinessRule;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "vinoserve",
    version,
    about = "OpenVINO model server with TensorFlow Serving and KServe v2 APIs"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Built once at start-up, so the size gap between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve models (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Print where each model would run (NUMA node, cores, CPUs, OpenVINO properties) for
    /// this machine or a described one, without loading anything. Exits 1 on invalid input.
    Plan(PlanArgs),
    /// Validate a deployment without serving: the config, every model folder and the files of
    /// the versions it would serve, and the topology file against this machine. Prints each
    /// problem with its location, one per line; exits 0 when there is none, 1 otherwise.
    Check(CheckArgs),
    /// Internal: the worker process the server starts for each placement group.
    #[command(hide = true)]
    PlacementWorker(WorkerArgs),
}

/// Flags the server passes to a placement worker (`vinoserve placement-worker`).
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Group name, for logs.
    #[arg(long)]
    pub group: String,
    /// NUMA node to bind memory to.
    #[arg(long)]
    pub node: Option<usize>,
    #[arg(long = "log_level", default_value = "INFO")]
    pub log_level: String,
    #[arg(long = "log_format", default_value = "text")]
    pub log_format: String,
    #[arg(long = "openvino_lib")]
    pub openvino_lib: Option<PathBuf>,
    #[arg(long = "malloc_arena_max", default_value_t = 2)]
    pub malloc_arena_max: usize,
    #[arg(long = "malloc_trim_threshold_mib", default_value_t = 4)]
    pub malloc_trim_threshold_mib: usize,
}

/// Flags of `vinoserve check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// OVMS-compatible config.json to check (with its model folders).
    #[arg(long, env = "VINOSERVE_CONFIG_PATH")]
    pub config: PathBuf,

    /// Topology file (TOML) to check against this machine's CPUs, as far as this process may
    /// use them (run it under the service's CPUAffinity= to check what the service gets).
    #[arg(long, env = "VINOSERVE_TOPOLOGY")]
    pub topology: Option<PathBuf>,
}

/// Flags of `vinoserve plan`.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// OVMS-compatible config.json whose models are placed.
    #[arg(long, env = "VINOSERVE_CONFIG_PATH")]
    pub config: PathBuf,

    /// Topology file (TOML) saying which node and how many cores each model gets.
    #[arg(long, env = "VINOSERVE_TOPOLOGY")]
    pub topology: PathBuf,

    /// Plan for an hwloc synthetic machine instead of this one, e.g. the 2 × Xeon Platinum
    /// 8180 host: "pack:2 numa:1 core:28 pu:2".
    #[arg(long, conflicts_with = "hwloc_xml")]
    pub synthetic: Option<String>,

    /// Plan for the machine described by an hwloc XML file (`lstopo host.xml` on that host).
    #[arg(long = "hwloc-xml")]
    pub hwloc_xml: Option<PathBuf>,

    /// Compare with the placement of the server running at this REST address (e.g.
    /// http://127.0.0.1:8001): which models the file would move, re-tune, add or retire.
    #[arg(long, value_name = "URL")]
    pub diff: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// OVMS-compatible config.json listing the models to serve.
    #[arg(long = "config_path", env = "VINOSERVE_CONFIG_PATH", conflicts_with_all = ["model_name", "model_path"])]
    pub config_path: Option<PathBuf>,

    /// Name of the single model to serve (with --model_path).
    #[arg(long = "model_name", requires = "model_path")]
    pub model_name: Option<String>,

    /// Folder holding the single model's numbered version folders (with --model_name).
    #[arg(long = "model_path", requires = "model_name")]
    pub model_path: Option<PathBuf>,

    /// Single-model mode: infer requests per version (0 = OpenVINO's optimal number).
    #[arg(long, default_value_t = 0)]
    pub nireq: usize,

    /// Single-model mode: OpenVINO properties as JSON, e.g. '{"PERFORMANCE_HINT":"LATENCY"}'.
    #[arg(long = "plugin_config")]
    pub plugin_config: Option<String>,

    /// Single-model mode: version policy as JSON, e.g. '{"latest":{"num_versions":2}}'.
    #[arg(long = "model_version_policy")]
    pub model_version_policy: Option<String>,

    /// Single-model mode: reshape the batch dimension at load (-1 = dynamic).
    #[arg(long = "batch_size", allow_hyphen_values = true)]
    pub batch_size: Option<String>,

    /// Single-model mode: reshape inputs at load, e.g. "(1,3,224,224)" or '{"x":"(1,10)"}'.
    #[arg(long)]
    pub shape: Option<String>,

    /// Single-model mode: target device (only CPU is supported).
    #[arg(long = "target_device", default_value = "CPU")]
    pub target_device: String,

    /// gRPC port (TFS and KServe services); 0 picks a free port and prints it.
    #[arg(long, env = "VINOSERVE_PORT", default_value_t = 9000)]
    pub port: u16,

    /// REST port (TFS and KServe REST); 0 picks a free port and prints it.
    #[arg(
        long = "rest_port",
        env = "VINOSERVE_REST_PORT",
        default_value_t = 8000
    )]
    pub rest_port: u16,

    /// Address the gRPC server binds to.
    #[arg(long = "grpc_bind_address", default_value = "0.0.0.0")]
    pub grpc_bind_address: String,

    /// Address the REST server binds to.
    #[arg(long = "rest_bind_address", default_value = "0.0.0.0")]
    pub rest_bind_address: String,

    /// Largest request or response message in bytes (gRPC and REST bodies).
    #[arg(long = "max_message_size", default_value_t = 1 << 30)]
    pub max_message_size: usize,

    /// Largest JSON a REST request may carry (a TFS REST body, or the JSON part of a KServe
    /// REST body), in bytes: decoding JSON takes many times its size in memory, so it has a
    /// budget of its own, below --max_message_size. Tensors that large belong in binary
    /// (gRPC, or KServe's binary-data extension).
    #[arg(long = "max_json_body_size", default_value_t = 64 << 20)]
    pub max_json_body_size: usize,

    /// Batch concurrent requests of every model (TF Serving's flag), with the parameters of
    /// --batching_parameters_file (or TF Serving's defaults). A model's own "batching" in
    /// config.json wins.
    #[arg(long = "enable_batching", default_value_t = false)]
    pub enable_batching: bool,

    /// TF Serving batching parameters (protobuf text format: `max_batch_size { value: 32 }`,
    /// `batch_timeout_micros { value: 500 }`, `allowed_batch_sizes: 8` ...).
    #[arg(long = "batching_parameters_file")]
    pub batching_parameters_file: Option<PathBuf>,

    /// Requests that may wait for a free infer request per model version; beyond it requests
    /// fail fast with RESOURCE_EXHAUSTED / 429.
    #[arg(long = "queue_bound", default_value_t = 256)]
    pub queue_bound: usize,

    /// Microseconds: a fixed-shape model version whose recent inferences average under this
    /// runs a request on the thread that received it (when one of its infer requests is idle and
    /// none is queued) instead of handing it to a worker thread, saving two thread wake-ups per
    /// request. 0 always hands off.
    #[arg(long = "inline_inference_us", default_value_t = 100)]
    pub inline_inference_us: u64,

    /// gRPC threads, each an async runtime of its own serving the connections it accepts.
    #[arg(long = "grpc_workers", default_value_t = 2)]
    pub grpc_workers: usize,

    /// Threads for the REST server.
    #[arg(long = "rest_workers", default_value_t = 2)]
    pub rest_workers: usize,

    /// Seconds between full rescans of model folders and the config file (a safety net under
    /// inotify); 0 turns polling off and keeps inotify.
    #[arg(long = "file_system_poll_wait_seconds", default_value_t = 1)]
    pub file_system_poll_wait_seconds: u64,

    /// Milliseconds a version folder's files must stay unmodified before the version loads.
    #[arg(long = "file_settle_ms", default_value_t = 500)]
    pub file_settle_ms: u64,

    /// Connections each listener (gRPC, REST) keeps open at once; more wait in the kernel's
    /// accept queue until one closes. Keep it under the process's file limit (LimitNOFILE).
    #[arg(long = "max_connections", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Seconds a new gRPC connection may stay silent before its first bytes (the HTTP/2
    /// preface); then it is closed.
    #[arg(long = "handshake_timeout_seconds", default_value_t = 10)]
    pub handshake_timeout_seconds: u64,

    /// HTTP/2 streams (requests in flight) one gRPC connection may have open at once; the
    /// server advertises it in its SETTINGS.
    #[arg(long = "http2_max_concurrent_streams", default_value_t = 256)]
    pub http2_max_concurrent_streams: u32,

    /// Seconds between HTTP/2 PINGs on a gRPC connection, and how long an answer may take
    /// before the connection is closed as dead.
    #[arg(long = "http2_keepalive_seconds", default_value_t = 60)]
    pub http2_keepalive_seconds: u64,

    /// Seconds a REST request body may take to arrive in full; a slower one gets 408.
    #[arg(long = "body_timeout_seconds", default_value_t = 60)]
    pub body_timeout_seconds: u64,

    /// Seconds an answer may wait for a client that stopped reading (unacknowledged data on a
    /// gRPC or REST connection, TCP_USER_TIMEOUT; or, on gRPC, less than 1 MiB of an answer
    /// taken because the client's HTTP/2 window stays closed); then the connection is closed
    /// and what it held is freed. 0: no timeout (TCP: the kernel's default, about 15 minutes,
    /// never for a zero window).
    #[arg(long = "send_timeout_seconds", default_value_t = 60)]
    pub send_timeout_seconds: u64,

    /// Seconds an idle REST keep-alive connection stays open.
    #[arg(long = "keep_alive_seconds", default_value_t = 75)]
    pub keep_alive_seconds: u64,

    /// Seconds to wait for in-flight requests on shutdown before exiting anyway.
    #[arg(long = "drain_timeout_seconds", default_value_t = 30)]
    pub drain_timeout_seconds: u64,

    /// glibc malloc arenas (0 = glibc's default of 8 per CPU). Few arenas let memory freed by
    /// unloaded versions go back to the OS; MALLOC_ARENA_MAX in the environment wins.
    #[arg(long = "malloc_arena_max", default_value_t = 2)]
    pub malloc_arena_max: usize,

    /// MiB free at the top of the heap before free() returns it to the OS, and the block size
    /// from which allocations get their own mappings (0 = glibc's dynamic thresholds). Keeps memory freed by unloaded versions from lingering; MALLOC_TRIM_THRESHOLD_
    /// or MALLOC_MMAP_THRESHOLD_ in the environment win.
    #[arg(long = "malloc_trim_threshold_mib", default_value_t = 4)]
    pub malloc_trim_threshold_mib: usize,

    /// Serve Prometheus metrics on GET /metrics of the REST port (`--metrics_enable false` turns
    /// them off).
    #[arg(long = "metrics_enable", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_enable: bool,

    /// When the server reports ready (KServe ServerReady, GET /v2/health/ready, gRPC health):
    /// strict = every configured model has an AVAILABLE version; any = at least one has.
    #[arg(long, value_enum, default_value_t = ReadinessRule::Strict)]
    pub readiness: ReadinessRule,

    /// Log level: ERROR, WARNING, INFO, DEBUG or TRACE (or an env-filter directive).
    #[arg(
        long = "log_level",
        env = "VINOSERVE_LOG_LEVEL",
        default_value = "INFO"
    )]
    pub log_level: String,

    /// Log format: text or json.
    #[arg(long = "log_format", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// libopenvino_c location (file or folder); default: $OPENVINO_LIB_DIR, then .deps/ of the repo.
    #[arg(long = "openvino_lib", env = "VINOSERVE_OPENVINO_LIB")]
    pub openvino_lib: Option<PathBuf>,

    /// Topology file (TOML, see topology/): run each model in a worker process confined to its
    /// planned NUMA node and CPUs. Without it every model runs unconfined in the server process.
    #[arg(long = "topology", env = "VINOSERVE_TOPOLOGY")]
    pub topology: Option<PathBuf>,
}

impl ServeArgs {
    /// The models to serve, from --config_path or from the single-model flags.
    /// The batching every model gets unless it sets its own (`--enable_batching`).
    pub fn default_batching(&self) -> Result<Option<super::batching::Batching>, ConfigError> {
        if !self.enable_batching {
            return match &self.batching_parameters_file {
                Some(_) => Err(ConfigError {
                    path: "--batching_parameters_file".into(),
                    reason: "given without --enable_batching, which turns it on".into(),
                }),
                None => Ok(None),
            };
        }
        let Some(path) = &self.batching_parameters_file else {
            return Ok(Some(super::batching::Batching::default()));
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: shown.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        super::batching::Batching::from_tf_text(&text, &shown).map(Some)
    }

    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        if let Some(path) = &self.config_path {
            return super::model::load_config_file(path);
        }
        let (Some(name), Some(path)) = (&self.model_name, &self.model_path) else {
            return Err(ConfigError {
                path: "command line".into(),
                reason: "give --config_path, or --model_name with --model_path".into(),
            });
        };
        let json =
            |flag: &str, text: &Option<String>| -> Result<Option<serde_json::Value>, ConfigError> {
                text.as_ref()
                    .map(|t| {
                        serde_json::from_str(t)
                            .or_else(|_| {
                                Ok::<_, serde_json::Error>(serde_json::Value::String(t.clone()))
                            })
                            .map_err(|e| ConfigError {
                                path: flag.into(),
                                reason: e.to_string(),
                            })
                    })
                    .transpose()
            };
        let plugin_config = match json("--plugin_config", &self.plugin_config)? {
            None => Default::default(),
            Some(v) => serde_json::from_value(v).map_err(|e| ConfigError {
                path: "--plugin_config".into(),
                reason: format!("expected a JSON object: {e}"),
            })?,
        };
        let model_version_policy = match json("--model_version_policy", &self.model_version_policy)?
        {
            None => None,
            Some(v) => Some(serde_json::from_value(v).map_err(|e| ConfigError {
                path: "--model_version_policy".into(),
                reason: e.to_string(),
            })?),
        };
        let raw = RawModel {
            name: name.clone(),
            base_path: path.display().to_string(),
            model_version_policy,
            nireq: Some(self.nireq),
            target_device: Some(self.target_device.clone()),
            plugin_config,
            batch_size: json("--batch_size", &self.batch_size)?,
            shape: json("--shape", &self.shape)?,
            ..Default::default()
        };
        let cwd = std::env::current_dir().unwrap_or_default();
        let model = validate_model(raw, &cwd, "command line").map_err(|e| ConfigError {
            path: e
                .path
                .replace("command line.base_path", "--model_path")
                .replace("command line.", "--"),
            reason: e.reason,
        })?;
        Ok(ServerConfig {
            models: vec![model],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn single_model_flags_build_a_config() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().display().to_string();
        let cli = Cli::try_parse_from([
            "vinoserve",
            "--model_name",
            "m",
            "--model_path",
            &path,
            "--plugin_config",
            r#"{"PERFORMANCE_HINT":"THROUGHPUT"}"#,
            "--batch_size",
            "4",
        ])
        .unwrap();
        let cfg = cli.serve.server_config().unwrap();
        assert_eq!(cfg.models[0].name, "m");
        assert_eq!(
            cfg.models[0].plugin_config["PERFORMANCE_HINT"],
            "THROUGHPUT"
        );
        assert_eq!(cfg.models[0].reshape, crate::runtime::Reshape::Batch(4));
    }

    #[test]
    fn single_model_errors_name_the_flag() {
        let cli = Cli::try_parse_from([
            "vinoserve",
            "--model_name",
            "m",
            "--model_path",
            "/nonexistent/x",
        ])
        .unwrap();
        let e = cli.serve.server_config().unwrap_err();
        assert_eq!(e.path, "--model_path");
        assert!(Cli::try_parse_from(["vinoserve", "--model_name", "m"]).is_err());
    }
}
