//! Logging set-up: `tracing` with an env-filter and a JSON switch.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Maps OVMS log levels (ERROR, WARNING, INFO, DEBUG, TRACE) to a filter; anything else is
/// taken as an env-filter directive (`RUST_LOG` wins when set).
pub fn init(log_level: &str, format: &str) {
    let level = match log_level.to_ascii_uppercase().as_str() {
        "ERROR" => "error".to_string(),
        "WARNING" | "WARN" => "warn".to_string(),
        // notify logs at INFO what it tolerates itself (e.g. a watch on a folder that is already
        // gone cannot be removed): not news for an operator.
        "INFO" => "info,notify=warn".to_string(),
        "DEBUG" => "debug".to_string(),
        "TRACE" => "trace".to_string(),
        _ => log_level.to_string(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: under systemd stderr goes to the
        // journal, where they would show up as raw escape sequences.
        .with_ansi(std::io::stderr().is_terminal())
        .with_thread_names(true);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
