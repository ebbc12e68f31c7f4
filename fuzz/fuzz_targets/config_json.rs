//! `config.json` (OVMS format): `parse_config_all` on arbitrary text, relative base paths
//! anchored at a temporary folder that holds one model folder, `m`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;
use vinoserve::config::parse_config_all;

fn base_dir() -> &'static Path {
    static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir_all(dir.path().join("m/1")).expect("a model folder");
        dir
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_config_all(text, base_dir()) {
        Ok((config, problems)) => {
            for model in &config.models {
                assert!(!model.name.is_empty());
            }
            for problem in problems {
                let _ = problem.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
