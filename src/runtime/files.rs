//! Which files in a version folder make up the model: every format OpenVINO reads directly, so
//! a repository made for TF Serving, or an export from ONNX, TFLite or PaddlePaddle, is served
//! as it is, with no conversion step.

use crate::error::BackendError;
use std::path::{Path, PathBuf};

/// The layouts a version folder may have, as operators are told when none is found.
pub const ACCEPTED_LAYOUTS: &str = "an OpenVINO IR (one *.xml with its *.bin), one *.onnx, \
     a TensorFlow SavedModel (saved_model.pb with its variables/ folder), one *.tflite, \
     or a PaddlePaddle model (one *.pdmodel with its *.pdiparams)";

/// The model files found in a version folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelFiles {
    /// An OpenVINO IR pair.
    Ir { xml: PathBuf, bin: PathBuf },
    /// An ONNX file.
    Onnx(PathBuf),
    /// A TensorFlow SavedModel: the folder holding `saved_model.pb` and `variables/`.
    SavedModel(PathBuf),
    /// A TensorFlow Lite flatbuffer.
    TfLite(PathBuf),
    /// A PaddlePaddle inference model and its parameters.
    Paddle { model: PathBuf, params: PathBuf },
}

impl ModelFiles {
    /// What OpenVINO's `read_model` takes: the model path and the weights path ("" when the
    /// model file holds or finds its own weights).
    pub fn read_model_args(&self) -> (PathBuf, String) {
        match self {
            ModelFiles::Ir { xml, bin } => (xml.clone(), bin.display().to_string()),
            ModelFiles::Paddle { model, params } => (model.clone(), params.display().to_string()),
            ModelFiles::Onnx(path) | ModelFiles::SavedModel(path) | ModelFiles::TfLite(path) => {
                (path.clone(), String::new())
            }
        }
    }

    /// Every file the model is made of (for checks that each one can be opened).
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            ModelFiles::Ir { xml, bin } => vec![xml.clone(), bin.clone()],
            ModelFiles::Paddle { model, params } => vec![model.clone(), params.clone()],
            ModelFiles::SavedModel(dir) => vec![dir.join(SAVED_MODEL)],
            ModelFiles::Onnx(path) | ModelFiles::TfLite(path) => vec![path.clone()],
        }
    }

    /// The format's name, for logs and status messages.
    pub fn format(&self) -> &'static str {
        match self {
            ModelFiles::Ir { .. } => "OpenVINO IR",
            ModelFiles::Onnx(_) => "ONNX",
            ModelFiles::SavedModel(_) => "TensorFlow SavedModel",
            ModelFiles::TfLite(_) => "TensorFlow Lite",
            ModelFiles::Paddle { .. } => "PaddlePaddle",
        }
    }

    /// Finds exactly one model in `dir`; other files are ignored.
    pub fn find(dir: &Path) -> Result<ModelFiles, BackendError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| BackendError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut found: Vec<Candidate> = Vec::new();
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !path.is_file() {
                names.push(format!("{name}/"));
                continue;
            }
            names.push(name.clone());
            if name == SAVED_MODEL {
                found.push(Candidate::SavedModel);
                continue;
            }
            match path.extension().and_then(|e| e.to_str()) {
                Some("xml") => found.push(Candidate::Ir(path)),
                Some("onnx") => found.push(Candidate::Onnx(path)),
                Some("tflite") => found.push(Candidate::TfLite(path)),
                Some("pdmodel") => found.push(Candidate::Paddle(path)),
                _ => {}
            }
        }
        match found.len() {
            0 => {
                names.sort();
                Err(BackendError::NoModelFiles {
                    dir: shown,
                    found: if names.is_empty() {
                        NOTHING_FOUND.into()
                    } else {
                        names.join(", ")
                    },
                })
            }
            1 => found.remove(0).resolve(dir),
            _ => {
                let mut listed: Vec<String> = found.iter().map(Candidate::describe).collect();
                listed.sort();
                Err(BackendError::AmbiguousModelFiles {
                    dir: shown,
                    detail: format!("found {}; expected exactly one model", listed.join(", ")),
                })
            }
        }
    }
}

/// What [`BackendError::NoModelFiles`] says was found in an empty folder.
pub const NOTHING_FOUND: &str = "nothing";

/// The file that marks a TensorFlow SavedModel folder.
pub const SAVED_MODEL: &str = "saved_model.pb";

/// A file that names a format, before its companions are checked.
enum Candidate {
    Ir(PathBuf),
    Onnx(PathBuf),
    SavedModel,
    TfLite(PathBuf),
    Paddle(PathBuf),
}

impl Candidate {
    fn describe(&self) -> String {
        let name = |p: &PathBuf| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        match self {
            Candidate::Ir(p) => format!("IR {}", name(p)),
            Candidate::Onnx(p) => format!("ONNX {}", name(p)),
            Candidate::SavedModel => format!("SavedModel {SAVED_MODEL}"),
            Candidate::TfLite(p) => format!("TFLite {}", name(p)),
            Candidate::Paddle(p) => format!("Paddle {}", name(p)),
        }
    }

    /// The model, with its companion file where the format has one.
    fn resolve(self, dir: &Path) -> Result<ModelFiles, BackendError> {
        let companion = |model: &Path, extension: &str, what: &str| {
            let companion = model.with_extension(extension);
            if companion.is_file() {
                Ok(companion)
            } else {
                Err(BackendError::Read {
                    path: companion.display().to_string(),
                    reason: format!("{what} is missing"),
                })
            }
        };
        Ok(match self {
            Candidate::Ir(xml) => {
                let bin = companion(&xml, "bin", "the IR weights file")?;
                ModelFiles::Ir { xml, bin }
            }
            Candidate::Paddle(model) => {
                let params = companion(&model, "pdiparams", "the Paddle parameters file")?;
                ModelFiles::Paddle { model, params }
            }
            Candidate::Onnx(path) => ModelFiles::Onnx(path),
            Candidate::TfLite(path) => ModelFiles::TfLite(path),
            Candidate::SavedModel => ModelFiles::SavedModel(dir.to_path_buf()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        if let Some(parent) = Path::new(name).parent() {
            std::fs::create_dir_all(dir.join(parent)).unwrap();
        }
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
    fn missing_companions_and_ambiguity_are_errors() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "model.xml");
        assert!(matches!(
            ModelFiles::find(d.path()),
            Err(BackendError::Read { .. })
        ));
        touch(d.path(), "other.onnx");
        let Err(BackendError::AmbiguousModelFiles { detail, .. }) = ModelFiles::find(d.path())
        else {
            panic!("two models are ambiguous")
        };
        assert_eq!(
            detail,
            "found IR model.xml, ONNX other.onnx; expected exactly one model"
        );
        let paddle = tempfile::tempdir().unwrap();
        touch(paddle.path(), "inference.pdmodel");
        assert!(matches!(
            ModelFiles::find(paddle.path()),
            Err(BackendError::Read { reason, .. }) if reason.contains("Paddle parameters")
        ));
    }

    #[test]
    fn an_unrecognised_folder_says_what_it_holds() {
        let empty = tempfile::tempdir().unwrap();
        let Err(BackendError::NoModelFiles { found, .. }) = ModelFiles::find(empty.path()) else {
            panic!("nothing to load")
        };
        assert_eq!(found, NOTHING_FOUND);
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "model.pt");
        touch(d.path(), "weights/a.bin");
        let error = ModelFiles::find(d.path()).unwrap_err();
        let BackendError::NoModelFiles { found, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(found, "model.pt, weights/");
        assert!(
            error.to_string().contains("TensorFlow SavedModel"),
            "{error}"
        );
    }

    #[test]
    fn finds_each_format_openvino_reads() {
        type Case = (&'static [&'static str], fn(&Path) -> ModelFiles);
        let cases: [Case; 4] = [
            (&["m.onnx"], |d| ModelFiles::Onnx(d.join("m.onnx"))),
            (&["m.tflite"], |d| ModelFiles::TfLite(d.join("m.tflite"))),
            (&["saved_model.pb", "variables/variables.index"], |d| {
                ModelFiles::SavedModel(d.to_path_buf())
            }),
            (&["inference.pdmodel", "inference.pdiparams"], |d| {
                ModelFiles::Paddle {
                    model: d.join("inference.pdmodel"),
                    params: d.join("inference.pdiparams"),
                }
            }),
        ];
        for (files, expected) in cases {
            let d = tempfile::tempdir().unwrap();
            for f in files {
                touch(d.path(), f);
            }
            assert_eq!(ModelFiles::find(d.path()).unwrap(), expected(d.path()));
        }
    }
}
