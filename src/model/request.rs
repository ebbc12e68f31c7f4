//! The one internal request every transport builds, and the path it takes:
//! resolve the servable (lock-free) → validate once → queue → await the worker's answer.

use crate::error::ServeError;
use crate::model::registry::{Registry, VersionSelector};
use crate::model::servable::Servable;
use crate::model::validate::{select_outputs, validate_inputs};
use crate::tensor::Tensor;
use std::sync::Arc;

/// A transport-neutral inference request.
pub struct InferRequest {
    pub model: String,
    pub version: VersionSelector,
    pub inputs: Vec<(String, Tensor)>,
    /// Outputs to return; empty means all.
    pub output_filter: Vec<String>,
}

/// The answer, with the version that actually served it.
pub struct InferResponse {
    pub model: String,
    pub version: u64,
    pub outputs: Vec<(String, Tensor)>,
}

/// Runs a request on an already-resolved servable (transports that need the signature to decode
/// their body resolve first, then decode, then call this).
pub async fn infer_on(
    servable: Arc<Servable>,
    inputs: Vec<(String, Tensor)>,
    output_filter: &[String],
) -> Result<InferResponse, ServeError> {
    let validated = validate_inputs(&servable.model, &servable.signature, inputs)?;
    let outputs = select_outputs(&servable.model, &servable.signature, output_filter)?;
    let tensors = servable.infer(validated, outputs.clone()).await?;
    let named = outputs
        .iter()
        .zip(tensors)
        .map(|(&index, tensor)| (servable.signature.outputs[index].name.clone(), tensor))
        .collect();
    Ok(InferResponse {
        model: servable.model.clone(),
        version: servable.version,
        outputs: named,
    })
}

pub async fn infer(
    registry: &Registry,
    request: InferRequest,
) -> Result<InferResponse, ServeError> {
    let servable = registry.resolve(&request.model, &request.version)?;
    infer_on(servable, request.inputs, &request.output_filter).await
}
