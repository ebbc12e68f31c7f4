//! Finding and loading `libopenvino_c` at run time (the `openvino` crate's `runtime-linking`).

use std::path::{Path, PathBuf};

/// Where the project's setup script installs OpenVINO, relative to the repository root.
pub const PROJECT_LIB_DIR: &str = ".deps/python/openvino/libs";

/// The one line an operator sees when the runtime is missing.
pub const INSTALL_HINT: &str =
    "run scripts/setup.sh (installs openvino==2026.4.1 from PyPI into .deps/)";

/// Candidate library locations when none is named with the flag / `VINOSERVE_OPENVINO_LIB`:
/// `OPENVINO_LIB_DIR`, then the project-local install next to the working directory or the
/// executable (target/{debug,release}/ sits two levels below the repository root).
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os("OPENVINO_LIB_DIR") {
        out.push(PathBuf::from(dir));
    }
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join(PROJECT_LIB_DIR));
    }
    if let Ok(exe) = std::env::current_exe() {
        for ancestor in exe.ancestors().skip(1).take(4) {
            out.push(ancestor.join(PROJECT_LIB_DIR));
        }
    }
    out
}

/// Resolves a directory or file candidate to the C library file itself.
fn library_file(candidate: &Path) -> Option<PathBuf> {
    if candidate.is_file() {
        return Some(candidate.to_path_buf());
    }
    let entries = std::fs::read_dir(candidate).ok()?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "libopenvino_c.so" || n.starts_with("libopenvino_c.so."))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Loads the OpenVINO C library once per process; returns the file it loaded.
pub fn load(explicit: Option<&Path>) -> Result<PathBuf, String> {
    // An operator who names a location means that one: never fall back to another runtime.
    if let Some(path) = explicit {
        let file = library_file(path).ok_or_else(|| {
            format!(
                "OpenVINO runtime not found at {}: {INSTALL_HINT}",
                path.display()
            )
        })?;
        openvino_sys::library::load_from(&file)
            .map_err(|e| format!("cannot load OpenVINO from {}: {e}", file.display()))?;
        return Ok(file);
    }
    for candidate in &candidates() {
        if let Some(file) = library_file(candidate) {
            openvino_sys::library::load_from(&file)
                .map_err(|e| format!("cannot load OpenVINO from {}: {e}", file.display()))?;
            return Ok(file);
        }
    }
    // Last resort: the crate's own search (LD_LIBRARY_PATH, INTEL_OPENVINO_DIR, ...).
    if let Some(file) = openvino_sys::library::find() {
        if openvino_sys::library::load().is_ok() {
            return Ok(file);
        }
    }
    Err(format!("OpenVINO runtime not found: {INSTALL_HINT}"))
}
