use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use vinoserve::config::{Cli, Command};
use vinoserve::runtime::openvino::{library, OpenVinoBackend};

/// Rust's allocations (request bodies, tensors, responses) go to mimalloc, which reuses freed
/// large blocks; glibc, tuned by `memory::tune_malloc`, keeps serving OpenVINO's own (model
/// weights, compiled graphs). Large requests were the reason: with glibc each request body of
/// 4 MiB or more (`--malloc_trim_threshold_mib`) was a fresh mapping, faulted in page by page
/// (~2,350 minor faults per 9.6 MB request) and unmapped after the response.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Plan(args)) => return plan(&args),
        Some(Command::Check(args)) => return check(&args),
        Some(Command::PlacementWorker(args)) => return vinoserve::placement::worker::run(&args),
        None => cli.serve,
    };
    vinoserve::memory::tune_malloc(args.malloc_arena_max, args.malloc_trim_threshold_mib);
    vinoserve::telemetry::init(&args.log_level, &args.log_format);
    let (config, default_batching) = match args
        .server_config()
        .and_then(|c| Ok((c, args.default_batching()?)))
    {
        Ok(read) => read,
        Err(e) => {
            eprintln!("vinoserve: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match library::load(args.openvino_lib.as_deref()) {
        Ok(path) => {
            tracing::info!(library = %path.display(), version = %openvino::version().build_number, "OpenVINO loaded")
        }
        Err(e) => {
            eprintln!("vinoserve: {e}");
            return ExitCode::from(3);
        }
    }
    let local: Arc<dyn vinoserve::runtime::Backend> = Arc::new(OpenVinoBackend);
    let placement = match &args.topology {
        None => None,
        Some(topology) => match start_placement(&args, &config, topology) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                eprintln!("vinoserve: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let backend: Arc<dyn vinoserve::runtime::Backend> = match &placement {
        Some(p) => p.clone(),
        None => local,
    };
    // Reads NOTIFY_SOCKET / WATCHDOG_USEC, set by systemd for a Type=notify service.
    let notifier = vinoserve::systemd::Notifier::from_env();
    let system = actix_rt::System::new();
    let config = vinoserve::server::Startup {
        models: config,
        default_batching,
    };
    match system.block_on(vinoserve::server::serve(
        args, config, backend, placement, notifier,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if vinoserve::server::is_configuration_error(&e) => {
            eprintln!("vinoserve: invalid configuration: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("vinoserve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Plans the configured models on this machine and starts their worker processes.
fn start_placement(
    args: &vinoserve::config::ServeArgs,
    config: &vinoserve::config::ServerConfig,
    topology: &std::path::Path,
) -> Result<vinoserve::placement::Placement, String> {
    use vinoserve::topology::{discover, Source};
    let models: Vec<String> = config.models.iter().map(|m| m.name.clone()).collect();
    // Before any thread is pinned: discovery sees the CPUs the calling thread may use.
    let machine =
        discover(Source::ThisMachine).map_err(|e| format!("topology discovery failed: {e}"))?;
    let settings = vinoserve::placement::WorkerSettings {
        openvino_lib: args.openvino_lib.clone(),
        log_level: args.log_level.clone(),
        log_format: args.log_format.clone(),
        malloc_arena_max: args.malloc_arena_max,
        malloc_trim_threshold_mib: args.malloc_trim_threshold_mib,
    };
    vinoserve::placement::Placement::start(topology, machine, &models, settings)
}

/// `vinoserve plan`: print the placement table, or the error and exit 1.
fn plan(args: &vinoserve::config::PlanArgs) -> ExitCode {
    if let Some(url) = &args.diff {
        return match vinoserve::topology::run_diff(args, url) {
            Ok(diff) => {
                print!("{diff}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vinoserve: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match vinoserve::topology::run_plan(args) {
        Ok(plan) => {
            print!("{plan}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vinoserve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `vinoserve check`: print every problem (or an OK summary); exit 1 if there is any.
fn check(args: &vinoserve::config::CheckArgs) -> ExitCode {
    let report = vinoserve::check::run_check(args);
    print!("{report}");
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
