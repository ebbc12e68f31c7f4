//! Which files in a version folder make up the model.

use crate::error::BackendError;
use std::path::{Path, PathBuf};

/// The model files found in a version folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelFiles {
    /// An OpenVINO IR pair.
    Ir { xml: PathBuf, bin: PathBuf },
    /// An ONNX file, read directly by OpenVINO.
    Onnx(PathBuf),
}

impl ModelFiles {
    /// Finds exactly one IR pair or one ONNX file in `dir`; other files are ignored.
    pub fn find(dir: &Path) -> Result<ModelFiles, BackendError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| BackendError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut xml = Vec::new();
        let mut onnx = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            match path.extension().and_then(|e| e.to_str()) {
                Some("xml") => xml.push(path),
                Some("onnx") => onnx.push(path),
                _ => {}
            }
        }
        xml.sort();
        onnx.sort();
        match (xml.len(), onnx.len()) {
            (1, 0) => {
                let xml = xml.remove(0);
                let bin = xml.with_extension("bin");
                if !bin.is_file() {
                    return Err(BackendError::Read {
                        path: bin.display().to_string(),
                        reason: "the IR weights file is missing".into(),
                    });
                }
                Ok(ModelFiles::Ir { xml, bin })
            }
            (0, 1) => Ok(ModelFiles::Onnx(onnx.remove(0))),
            (0, 0) => Err(BackendError::NoModelFiles { dir: shown }),
            _ => Err(BackendError::AmbiguousModelFiles {
                dir: shown,
                detail: format!(
                    "found {} *.xml and {} *.onnx files; expected exactly one model",
                    xml.len(),
                    onnx.len()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }

    #[test]
    fn finds_ir_pair_and_ignores_other_files() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "model.xml");
        touch(d.path(), "model.bin");
        touch(d.path(), "notes.txt");
        assert_eq!(
            ModelFiles::find(d.path()).unwrap(),
            ModelFiles::Ir {
                xml: d.path().join("model.xml"),
                bin: d.path().join("model.bin")
            }
        );
    }

    #[test]
    fn missing_bin_and_ambiguity_are_errors() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "model.xml");
        assert!(matches!(
            ModelFiles::find(d.path()),
            Err(BackendError::Read { .. })
        ));
        touch(d.path(), "other.onnx");
        assert!(matches!(
            ModelFiles::find(d.path()),
            Err(BackendError::AmbiguousModelFiles { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            ModelFiles::find(empty.path()),
            Err(BackendError::NoModelFiles { .. })
        ));
    }

    #[test]
    fn finds_onnx() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "m.onnx");
        assert_eq!(
            ModelFiles::find(d.path()).unwrap(),
            ModelFiles::Onnx(d.path().join("m.onnx"))
        );
    }
}
