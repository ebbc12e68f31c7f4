//! The one internal request every transport builds, and the path it takes:
//! resolve the servable (lock-free) → decode image inputs → validate once → queue → await the
//! worker's answer.

use crate::error::{BackendError, ServeError};
use crate::serving::image::{decode_image_tensor, is_image_batch};
use crate::serving::registry::{Registry, VersionSelector};
use crate::serving::servable::Servable;
use crate::serving::validate::{select_outputs, validate_inputs};
use crate::tensor::{Signature, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let inputs = decode_image_inputs(&servable.signature, servable.resize_images(), inputs).await?;
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

/// Decodes the JPEG/PNG strings sent for numeric inputs into those inputs' tensors (see
/// `serving::image`); every other input passes untouched, strings for string inputs included.
/// This is the one place for every transport, so they all accept images alike.
async fn decode_image_inputs(
    signature: &Signature,
    resize: bool,
    inputs: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>, ServeError> {
    let spec_of = |name: &str| signature.input_index(name).map(|i| &signature.inputs[i]);
    let has_images = inputs
        .iter()
        .any(|(name, t)| spec_of(name).is_some_and(|spec| is_image_batch(spec, t)));
    if !has_images {
        return Ok(inputs);
    }
    let mut decoded = Vec::with_capacity(inputs.len());
    for (name, tensor) in inputs {
        let tensor = match spec_of(&name) {
            Some(spec) if is_image_batch(spec, &tensor) => {
                // Decoding takes milliseconds per image (seconds for a huge one): off the
                // transport's async threads, so other requests on them keep moving.
                let spec = spec.clone();
                tokio::task::spawn_blocking(move || decode_image_tensor(&spec, tensor, resize))
                    .await
                    // Only a decoder panic gets here: the image made it fail.
                    .map_err(|e| {
                        ServeError::invalid(format!(
                            "Invalid image data - the decoder failed ({e}); input name: {name}"
                        ))
                    })??
            }
            _ => tensor,
        };
        decoded.push((name, tensor));
    }
    Ok(decoded)
}

/// How long a request whose model's worker process died waits for the model to be back
/// (its worker restarted and the version reloaded there) before it is answered UNAVAILABLE.
/// The request's own deadline, when shorter, ends the wait first.
pub const WORKER_RESTART_WAIT: Duration = Duration::from_secs(30);

pub async fn infer(
    registry: &Registry,
    request: InferRequest,
) -> Result<InferResponse, ServeError> {
    let servable = registry.resolve(&request.model, &request.version)?;
    infer_resolved(registry, servable, request).await
}

/// [`infer`] for a caller that resolved the servable already (to decode against its
/// signature): if its worker process is lost meanwhile, the request runs on the replacement.
pub async fn infer_resolved(
    registry: &Registry,
    servable: Arc<Servable>,
    request: InferRequest,
) -> Result<InferResponse, ServeError> {
    let InferRequest {
        model,
        version,
        inputs,
        output_filter,
    } = request;
    // Tensors share their bytes: keeping the inputs for a second attempt copies no data.
    let again = inputs.clone();
    match infer_on(servable.clone(), inputs, &output_filter).await {
        // Inference is idempotent: run it once more on the instance that replaces the lost one.
        Err(ServeError::Backend(BackendError::WorkerLost(lost))) => {
            let replacement = replacement_of(registry, &model, &version, &servable)
                .await
                .ok_or(ServeError::Backend(BackendError::WorkerLost(lost)))?;
            infer_on(replacement, again, &output_filter).await
        }
        answer => answer,
    }
}

/// The servable that replaced `lost` for this request, once the registry publishes one within
/// [`WORKER_RESTART_WAIT`].
async fn replacement_of(
    registry: &Registry,
    model: &str,
    version: &VersionSelector,
    lost: &Arc<Servable>,
) -> Option<Arc<Servable>> {
    let deadline = Instant::now() + WORKER_RESTART_WAIT;
    while Instant::now() < deadline {
        match registry.resolve(model, version) {
            Ok(servable) if !Arc::ptr_eq(&servable, lost) => return Some(servable),
            // Still the lost instance, or nothing published yet: the reload is under way.
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DataType, TensorSpec};
    use bytes::Bytes;

    fn signature() -> Signature {
        let spec = |name: &str, dtype, shape: &[i64]| TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        };
        Signature {
            inputs: vec![
                spec("image", DataType::F32, &[-1, 1, 2, 3]),
                spec("text", DataType::Bytes, &[-1]),
                spec("x", DataType::F32, &[1, 2]),
            ],
            outputs: vec![],
        }
    }

    fn png() -> Bytes {
        let img = image::RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8, 2, 3]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner().into()
    }

    #[tokio::test]
    async fn only_strings_for_numeric_inputs_are_decoded() {
        let text = Tensor::strings(vec![1], vec![Bytes::from_static(b"not an image")]);
        let x = crate::tensor::tensor_from_slice(DataType::F32, vec![1, 2], &[1f32, 2.0]);
        let inputs = vec![
            ("text".to_string(), text.clone()),
            ("image".to_string(), Tensor::strings(vec![1], vec![png()])),
            ("x".to_string(), x.clone()),
            // Unknown names are left for validation to report.
            ("nope".to_string(), text.clone()),
        ];
        let out = decode_image_inputs(&signature(), false, inputs)
            .await
            .unwrap();
        assert_eq!(out[0], ("text".to_string(), text.clone()));
        assert_eq!(out[1].1.shape, vec![1, 1, 2, 3]);
        assert_eq!(
            crate::tensor::tensor_to_vec::<f32>(&out[1].1).unwrap(),
            vec![3.0, 2.0, 0.0, 3.0, 2.0, 1.0]
        );
        assert_eq!(out[2], ("x".to_string(), x));
        assert_eq!(out[3], ("nope".to_string(), text));
    }

    #[tokio::test]
    async fn image_errors_surface() {
        let bad = vec![(
            "image".to_string(),
            Tensor::strings(vec![1], vec![Bytes::from_static(b"nope")]),
        )];
        let e = decode_image_inputs(&signature(), false, bad)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("image 0 is neither JPEG nor PNG"),
            "{e}"
        );
    }
}
