//! What a version is warmed up with before it serves: only inputs known to be valid.
//!
//! - Samples shipped with the version, in TF Serving's format: the TFRecord file
//!   `assets.extra/tf_serving_warmup_requests` of `PredictionLog`s holding `PredictRequest`s,
//!   replayed in order (any model format). A sample that fails fails the load, naming it.
//! - Otherwise, for a model whose inputs are all static, one inference on zeros.
//! - Otherwise nothing: values for dynamic dimensions are never invented (a CNN with pooling
//!   refuses a width of 1, which says nothing about the model).

use crate::repository::{tfrecord, warmup_requests};
use crate::serving::validate::{validate_inputs, ValidatedInputs};
use crate::tensor::{Signature, TensorSpec};
use std::path::Path;

/// Where TF Serving looks for warm-up requests, relative to the version folder.
pub const WARMUP_FILE: &str = "assets.extra/tf_serving_warmup_requests";

/// TF Serving reads at most this many warm-up records; so do we.
const MAX_SAMPLES: usize = 1000;

/// The inputs to warm `model` up with, each already validated against its signature.
pub fn samples(
    dir: &Path,
    model: &str,
    signature: &Signature,
) -> Result<Vec<ValidatedInputs>, String> {
    let path = dir.join(WARMUP_FILE);
    if path.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        return shipped(&bytes, model, signature).map_err(|e| format!("{WARMUP_FILE}: {e}"));
    }
    if signature.inputs.iter().any(TensorSpec::is_dynamic) {
        return Ok(Vec::new());
    }
    ValidatedInputs::zeros(signature)
        .map(|zeros| vec![zeros])
        .map_err(|e| e.to_string())
}

/// The predict requests of a warm-up file, decoded and validated.
fn shipped(
    bytes: &[u8],
    model: &str,
    signature: &Signature,
) -> Result<Vec<ValidatedInputs>, String> {
    let records = tfrecord::records(bytes)?;
    if records.len() > MAX_SAMPLES {
        return Err(format!(
            "{} records; at most {MAX_SAMPLES} are read",
            records.len()
        ));
    }
    records
        .into_iter()
        .enumerate()
        .map(|(index, record)| {
            sample(record, model, signature).map_err(|e| format!("sample {index}: {e}"))
        })
        .collect()
}

fn sample(record: &[u8], model: &str, signature: &Signature) -> Result<ValidatedInputs, String> {
    let inputs = warmup_requests::decode(record)?;
    validate_inputs(model, signature, inputs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tfs::codec::encode_tensor;
    use crate::proto::tensorflow::serving::{
        prediction_log::LogType, PredictLog, PredictRequest, PredictionLog,
    };
    use crate::tensor::{tensor_from_slice, DataType};
    use prost::Message;

    fn signature(shape: Vec<i64>) -> Signature {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DataType::F32,
            shape: shape.clone(),
        };
        Signature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        }
    }

    fn predict_log(values: &[f32], shape: &[usize]) -> Vec<u8> {
        let tensor = encode_tensor(tensor_from_slice(DataType::F32, shape.to_vec(), values));
        PredictionLog {
            log_type: Some(LogType::PredictLog(PredictLog {
                request: Some(PredictRequest {
                    inputs: [("x".to_string(), tensor)].into(),
                    ..Default::default()
                }),
                response: None,
            })),
        }
        .encode_to_vec()
    }

    fn folder_with(file: &[u8]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("assets.extra")).unwrap();
        std::fs::write(d.path().join(WARMUP_FILE), file).unwrap();
        d
    }

    #[test]
    fn static_inputs_warm_up_on_zeros_and_dynamic_ones_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let zeros = samples(d.path(), "m", &signature(vec![1, 4])).unwrap();
        assert_eq!(zeros.len(), 1);
        assert_eq!(zeros[0].tensors()[0].raw_bytes(), &[0u8; 16][..]);
        assert!(samples(d.path(), "m", &signature(vec![-1, 3, 48, -1]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn shipped_samples_replace_zeros_and_name_the_bad_one() {
        let file = [
            tfrecord::frame(&predict_log(&[1.0, 2.0, 3.0], &[1, 3])),
            tfrecord::frame(&predict_log(&[1.0; 6], &[2, 3])),
        ]
        .concat();
        let dynamic = signature(vec![-1, 3]);
        let got = samples(folder_with(&file).path(), "m", &dynamic).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].tensors()[0].shape, vec![2, 3]);

        let error = samples(folder_with(&file).path(), "m", &signature(vec![1, 3])).unwrap_err();
        assert!(
            error.starts_with(&format!("{WARMUP_FILE}: sample 1: Invalid input shape")),
            "{error}"
        );
        let truncated = samples(folder_with(&file[..file.len() - 3]).path(), "m", &dynamic);
        assert!(truncated.unwrap_err().contains("record 1"));
    }
}
