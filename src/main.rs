use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use vinoserve::config::{Cli, Command};
use vinoserve::runtime::openvino::{library, OpenVinoBackend};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Plan(args)) => return plan(&args),
        Some(Command::Check(args)) => return check(&args),
        None => cli.serve,
    };
    vinoserve::memory::tune_malloc(args.malloc_arena_max, args.malloc_trim_threshold_mib);
    vinoserve::telemetry::init(&args.log_level, &args.log_format);
    let config = match args.server_config() {
        Ok(config) => config,
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
    // Reads NOTIFY_SOCKET / WATCHDOG_USEC, set by systemd for a Type=notify service.
    let notifier = vinoserve::systemd::Notifier::from_env();
    let system = actix_rt::System::new();
    match system.block_on(vinoserve::server::serve(
        args,
        config,
        Arc::new(OpenVinoBackend),
        notifier,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vinoserve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `vinoserve plan`: print the placement table, or the error and exit 1.
fn plan(args: &vinoserve::config::PlanArgs) -> ExitCode {
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
