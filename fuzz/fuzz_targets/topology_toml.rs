//! The topology file (TOML): `TopologyFile::parse` on arbitrary text, then each model's
//! placement over `[default]`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vinoserve::topology::{Placement, TopologyFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match TopologyFile::parse(text, "fuzz.toml") {
        Ok(file) => {
            let base = file.default.clone().unwrap_or_default();
            for placement in file.models.values() {
                let merged: Placement = placement.over(&base);
                let _ = merged.performance_hint.map(|h| h.to_string());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
