//! One record of TF Serving's warm-up file (`assets.extra/tf_serving_warmup_requests`): a
//! `PredictionLog` holding a `PredictRequest`, decoded into named tensors. The file format is
//! TF Serving's, so its protobuf stays here, out of the model layer that replays the samples.

use crate::api::tfs::codec::decode_tensor;
use crate::proto::tensorflow::serving::{prediction_log::LogType, PredictionLog};
use crate::tensor::Tensor;
use prost::Message;

/// The inputs of one warm-up record, by name.
pub fn decode(record: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let log = PredictionLog::decode(record).map_err(|e| format!("not a PredictionLog: {e}"))?;
    let request = match log.log_type {
        Some(LogType::PredictLog(predict)) => predict.request.unwrap_or_default(),
        Some(other) => {
            let kind = match other {
                LogType::ClassifyLog(_) => "classify",
                LogType::RegressLog(_) => "regress",
                LogType::MultiInferenceLog(_) => "multi_inference",
                LogType::PredictStreamedLog(_) => "predict_streamed",
                LogType::PredictLog(_) => unreachable!("matched above"),
            };
            return Err(format!(
                "a {kind} log; only predict_log requests can warm up a model"
            ));
        }
        None => return Err("an empty PredictionLog".into()),
    };
    request
        .inputs
        .into_iter()
        .map(|(name, proto)| decode_tensor(&name, proto).map(|t| (name, t)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}
