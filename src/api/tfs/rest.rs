//! TensorFlow Serving REST: `/v1/models/{m}[/versions/{v}|/labels/{l}][/metadata|:predict]`.

use crate::api::handling::{Answer, Handling, TFS};
use crate::api::json::threads as json_threads;
use crate::api::rest::body::{give_memory_back, Body};
use crate::api::rest::routes::method_not_allowed;
use crate::api::status::{body_error, http_status};
use crate::api::tfs::codec::tf_dtype;
use crate::api::tfs::grpc::{
    check_signature_name, status_filter, version_statuses, DEFAULT_SIGNATURE,
};
use crate::api::tfs::json::{decode_predict, encode_predict, PredictResponse};
use crate::api::trace::http_traceparent;
use crate::error::{Clip, ServeError};
use crate::proto::tensorflow::serving::model_version_status::State;
use crate::serving::registry::{ModelStatus, Registry, VersionSelector};
use crate::serving::request::{infer_resolved, InferRequest};
use crate::tensor::{Signature, TensorSpec};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::sync::Arc;

/// What a `/v1/models/...` path asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Status,
    Metadata,
    Predict,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ModelPath {
    pub model: String,
    pub version: VersionSelector,
    pub action: Action,
}

/// Parses the part after `/v1/models/`. Model names may not contain '/' or ':'.
pub fn parse_model_path(tail: &str) -> Result<ModelPath, ServeError> {
    let bad = || {
        ServeError::invalid(format!(
        "Malformed request path /v1/models/{}: expected /v1/models/<model>[/versions/<n>|/labels/<label>][/metadata|:predict]", Clip(tail)
    ))
    };
    let (tail, predict) = match tail.strip_suffix(":predict") {
        Some(rest) => (rest, true),
        None => (tail, false),
    };
    let mut parts: Vec<&str> = tail.split('/').collect();
    let metadata = !predict && parts.len() > 1 && parts.last() == Some(&"metadata");
    if metadata {
        parts.pop();
    }
    let action = if predict {
        Action::Predict
    } else if metadata {
        Action::Metadata
    } else {
        Action::Status
    };
    let (model, version) = match parts.as_slice() {
        [model] => (*model, VersionSelector::Latest),
        [model, "versions", v] => {
            let n = v.parse::<u64>().map_err(|_| {
                ServeError::invalid(format!(
                    "Invalid version {v:?} in path: expected a positive integer (or 0 for the default version)"
                ))
            })?;
            (*model, VersionSelector::from_number(n))
        }
        [model, "labels", label] if !label.is_empty() => {
            (*model, VersionSelector::Label(label.to_string()))
        }
        _ => return Err(bad()),
    };
    if model.is_empty() || model.contains(':') {
        return Err(bad());
    }
    Ok(ModelPath {
        model: model.to_string(),
        version,
        action,
    })
}

/// One input or output: TF Serving's snake_case keys and, beside them, the camelCase ones OVMS
/// writes (protobuf's JSON names), which ovmsclient's REST client reads. Each client finds the
/// keys it knows; neither is bothered by the others.
fn tensor_info_json(spec: &TensorSpec) -> Value {
    let shape = json!({
        "dim": spec.shape.iter().map(|d| json!({"size": d.to_string(), "name": ""})).collect::<Vec<_>>(),
        "unknown_rank": false,
        "unknownRank": false,
    });
    json!({
        "dtype": tf_dtype(spec.dtype).as_str_name(),
        "tensor_shape": shape,
        "tensorShape": shape,
        "name": spec.name,
    })
}

/// The metadata body (protobuf JSON mapping of GetModelMetadataResponse), with both spellings
/// of every multi-word key: TF Serving's (`model_spec`, `signature_def`, `tensor_shape`) and
/// OVMS's (`modelSpec`, `signatureDef`, `tensorShape`).
pub fn metadata_json(model: &str, version: u64, signature: &Signature) -> Value {
    let infos = |specs: &[TensorSpec]| -> Value {
        Value::Object(
            specs
                .iter()
                .map(|s| (s.name.clone(), tensor_info_json(s)))
                .collect(),
        )
    };
    let spec = json!({"name": model, "signature_name": "", "signatureName": "", "version": version.to_string()});
    let signatures = json!({DEFAULT_SIGNATURE: {
        "inputs": infos(&signature.inputs),
        "outputs": infos(&signature.outputs),
        "method_name": "tensorflow/serving/predict",
        "methodName": "tensorflow/serving/predict",
    }});
    json!({
        "model_spec": spec,
        "modelSpec": spec,
        "metadata": {"signature_def": {
            "signature_def": signatures,
            "signatureDef": signatures,
        }}
    })
}

/// `{"model_version_status": [...]}` in the protobuf JSON mapping TFS uses.
pub fn model_status_json(model: &ModelStatus, only: Option<u64>) -> Value {
    let versions: Vec<Value> = version_statuses(model, only)
        .into_iter()
        .map(|s| {
            let status = s.status.unwrap_or_default();
            json!({
                "version": s.version.to_string(),
                "state": State::try_from(s.state).map(|st| st.as_str_name()).unwrap_or("UNKNOWN"),
                "status": {
                    "error_code": if status.error_code == 0 { "OK" } else { "UNKNOWN" },
                    "error_message": if status.error_code == 0 { String::new() } else { status.error_message },
                }
            })
        })
        .collect();
    json!({ "model_version_status": versions })
}

fn status_json(registry: &Registry, path: &ModelPath) -> Result<Value, ServeError> {
    let model = registry
        .model(&path.model)
        .ok_or_else(|| ServeError::ModelNotFound {
            model: path.model.clone(),
        })?;
    let only = status_filter(&model, &path.version)?;
    Ok(model_status_json(&model, only))
}

/// A `/v1/models/...` answer: a small JSON value, or a predict body serialized from its tensors.
enum Reply {
    Json(Value),
    Predict(PredictResponse),
}

/// `GET` and `POST` on `/v1/models/{tail:.*}`.
pub async fn models(
    request: HttpRequest,
    tail: web::Path<String>,
    body: Body,
    registry: web::Data<Arc<Registry>>,
) -> HttpResponse {
    let body = match body.0 {
        Ok(body) => body,
        Err(e) => return body_error(&e),
    };
    let body_len = body.len();
    let parsed = parse_model_path(&tail);
    if let Ok(path) = &parsed {
        let allow = match path.action {
            Action::Predict => Method::POST,
            Action::Status | Action::Metadata => Method::GET,
        };
        if request.method() != allow {
            return method_not_allowed(&request, &allow);
        }
    }
    let method = match parsed.as_ref().map(|p| &p.action) {
        Ok(Action::Status) => "GetModelStatus",
        Ok(Action::Metadata) => "GetModelMetadata",
        Ok(Action::Predict) | Err(_) => "Predict",
    };
    let model = parsed.as_ref().map_or("", |p| p.model.as_str());
    let mut handling = Handling::new(method, model, http_traceparent(&request), None);
    // A path that names no model is answered but not counted.
    if parsed.is_ok() {
        handling = handling.counted(TFS, &registry);
    }
    let response = handling
        .rest(
            async {
                let path = parsed.as_ref().map_err(Clone::clone)?;
                // The method was checked against the action above.
                match path.action {
                    Action::Status => {
                        status_json(&registry, path).map(|s| Answer::new(Reply::Json(s)))
                    }
                    Action::Metadata => {
                        let servable = registry.resolve(&path.model, &path.version)?;
                        let metadata =
                            metadata_json(&servable.model, servable.version, &servable.signature);
                        Ok(Answer::new(Reply::Json(metadata)).by_version(servable.version))
                    }
                    Action::Predict => predict(&registry, path, body).await,
                }
            },
            |reply| match reply {
                Reply::Json(body) => HttpResponse::Ok().json(body),
                Reply::Predict(body) => HttpResponse::Ok().json(body),
            },
        )
        .await;
    give_memory_back(body_len).await;
    response
}

/// `:predict`: the body decoded against the model's signature, the inference, the outputs in
/// the request's format.
async fn predict(
    registry: &Arc<Registry>,
    path: &ModelPath,
    body: web::Bytes,
) -> Result<Answer<Reply>, ServeError> {
    let servable = registry.resolve(&path.model, &path.version)?;
    // Decoding a large JSON body takes long: off the REST threads (and at a lower priority), so
    // they keep answering other connections meanwhile.
    let decoding = servable.clone();
    let (inputs, format, signature_name) = json_threads::decode(body.len(), move || {
        decode_predict(&body, &decoding.model, &decoding.signature)
    })
    .await
    .ok_or_else(|| ServeError::invalid("cannot decode the body: its decoding failed"))??;
    check_signature_name(signature_name.as_deref().unwrap_or(""))?;
    let request = InferRequest {
        model: path.model.clone(),
        version: path.version.clone(),
        inputs,
        output_filter: Vec::new(),
    };
    let answer = infer_resolved(registry, servable, request).await?;
    let version = answer.version;
    Ok(Answer::new(Reply::Predict(encode_predict(format, answer.outputs))).by_version(version))
}

/// Any other path: a JSON 404, like TF Serving.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    HttpResponse::build(http_status(tonic::Code::NotFound)).json(
        json!({"error": format!("Malformed request: {} {}", request.method(), Clip(request.path()))}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = parse_model_path("resnet").unwrap();
        assert_eq!(
            (p.model.as_str(), p.version, p.action),
            ("resnet", VersionSelector::Latest, Action::Status)
        );
        let p = parse_model_path("resnet/versions/3:predict").unwrap();
        assert_eq!(
            (p.version, p.action),
            (VersionSelector::Number(3), Action::Predict)
        );
        let p = parse_model_path("resnet/labels/stable/metadata").unwrap();
        assert_eq!(
            (p.version, p.action),
            (VersionSelector::Label("stable".into()), Action::Metadata)
        );
        assert_eq!(
            parse_model_path("resnet/metadata").unwrap().action,
            Action::Metadata
        );
        assert!(parse_model_path("resnet/versions/x").is_err());
        assert_eq!(
            parse_model_path("resnet/versions/0:predict")
                .unwrap()
                .version,
            VersionSelector::Latest,
            "0 is the default version, as in OVMS"
        );
        assert!(parse_model_path("a/b/c/d").is_err());
        assert!(parse_model_path(":predict").is_err());
    }
}
