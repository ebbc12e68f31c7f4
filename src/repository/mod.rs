//! The model repository on disk: `<base_path>/<version>/` folders holding the model files.

pub mod completeness;
pub mod tfrecord;
pub mod warmup_requests;
pub mod watcher;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Version folders found under a model's base path: positive integer names only. Anything else
/// is ignored with a debug log, never an error for the whole model.
pub fn scan_versions(base_path: &Path) -> std::io::Result<BTreeSet<u64>> {
    let mut versions = BTreeSet::new();
    for entry in std::fs::read_dir(base_path)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_dir =
            entry.file_type().map(|t| t.is_dir()).unwrap_or(false) || entry.path().is_dir();
        match name.parse::<u64>() {
            Ok(v) if v > 0 && is_dir && !name.starts_with('+') => {
                versions.insert(v);
            }
            _ => {
                tracing::debug!(path = %entry.path().display(), "ignoring entry that is not a version folder")
            }
        }
    }
    Ok(versions)
}

pub fn version_dir(base_path: &Path, version: u64) -> PathBuf {
    base_path.join(version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_numeric_folders_count() {
        let d = tempfile::tempdir().unwrap();
        for name in ["1", "2", "10", "0", "abc", "3.tmp", "+4"] {
            std::fs::create_dir(d.path().join(name)).unwrap();
        }
        std::fs::write(d.path().join("5"), b"a file, not a folder").unwrap();
        assert_eq!(scan_versions(d.path()).unwrap(), BTreeSet::from([1, 2, 10]));
    }
}
