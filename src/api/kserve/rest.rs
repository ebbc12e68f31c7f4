//! KServe v2 REST: `/v2/health/{live,ready}`, `/v2` (server metadata),
//! `/v2/models/{m}[/versions/{v}]` (model metadata), `.../ready` and `.../infer`.

use crate::api::handling::{Answer, Handling, KSERVE};
use crate::api::json::threads as json_threads;
use crate::api::kserve::codec::version_selector;
use crate::api::kserve::grpc::{model_metadata, server_metadata};
use crate::api::kserve::json::{decode_request, encode_response, ResponseHeader};
use crate::api::rest::body::{give_memory_back, json_too_large, Body, JsonLimit};
use crate::api::rest::routes::only;
use crate::api::status::body_error;
use crate::api::trace::http_traceparent;
use crate::control::readiness::Readiness;
use crate::error::ServeError;
use crate::proto::inference::model_metadata_response::TensorMetadata;
use crate::serving::registry::Registry;
use crate::serving::request::{infer, InferRequest};
use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

/// Length of the JSON part of a body that carries binary tensor data (request and response).
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// Registers the KServe v2 routes (all under `/v2`).
pub fn routes(config: &mut web::ServiceConfig) {
    use actix_web::http::Method;
    config
        .service(only("/v2", Method::GET, server_metadata_json))
        .service(only("/v2/health/live", Method::GET, live))
        .service(only("/v2/health/ready", Method::GET, ready))
        .service(only("/v2/models/{model}", Method::GET, metadata))
        .service(only(
            "/v2/models/{model}/versions/{version}",
            Method::GET,
            metadata,
        ))
        .service(only("/v2/models/{model}/ready", Method::GET, model_ready))
        .service(only(
            "/v2/models/{model}/versions/{version}/ready",
            Method::GET,
            model_ready,
        ))
        .service(only("/v2/models/{model}/infer", Method::POST, model_infer))
        .service(only(
            "/v2/models/{model}/versions/{version}/infer",
            Method::POST,
            model_infer,
        ));
}

/// Model name and version (empty = latest) from the path.
fn model_path(request: &HttpRequest) -> (&str, &str) {
    let info = request.match_info();
    (
        info.get("model").unwrap_or_default(),
        info.get("version").unwrap_or_default(),
    )
}

/// Health answers as the Open Inference Protocol defines them: the status code says it (200, or
/// 503 when not), and the body says it again for clients that parse it (KServe's SDK reads
/// `{"live": true}`, `{"ready": true}`; tritonclient reads only the code).
fn health(ok: bool, body: Value) -> HttpResponse {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(body)
}

/// A call's handling (see `api::handling`) naming `model` (empty for server-level calls).
fn handling<'a>(method: &'static str, model: &'a str, request: &HttpRequest) -> Handling<'a> {
    Handling::new(method, model, http_traceparent(request), None)
}

async fn live(request: HttpRequest) -> HttpResponse {
    handling("ServerLive", "", &request)
        .rest(async { Ok(Answer::new(true)) }, |live| {
            health(live, json!({ "live": live }))
        })
        .await
}

async fn ready(request: HttpRequest, readiness: web::Data<Arc<Readiness>>) -> HttpResponse {
    handling("ServerReady", "", &request)
        .rest(
            async { Ok(Answer::new(readiness.server_ready())) },
            |ready| health(ready, json!({ "ready": ready })),
        )
        .await
}

/// `{"name": ..., "ready": ...}`, the protocol's model-ready response.
async fn model_ready(
    request: HttpRequest,
    readiness: web::Data<Arc<Readiness>>,
    registry: web::Data<Arc<Registry>>,
) -> HttpResponse {
    let (model, version) = model_path(&request);
    handling("ModelReady", model, &request)
        .counted(KSERVE, &registry)
        .rest(
            async {
                let ready = readiness.model_ready(model, &version_selector(version)?)?;
                Ok(Answer::new(ready))
            },
            |ready| health(ready, json!({"name": model, "ready": ready})),
        )
        .await
}

async fn server_metadata_json(request: HttpRequest) -> HttpResponse {
    handling("ServerMetadata", "", &request)
        .rest(async { Ok(Answer::new(server_metadata())) }, |m| {
            HttpResponse::Ok()
                .json(json!({"name": m.name, "version": m.version, "extensions": m.extensions}))
        })
        .await
}

fn tensors_json(tensors: &[TensorMetadata]) -> Vec<Value> {
    tensors
        .iter()
        .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
        .collect()
}

async fn metadata(request: HttpRequest, registry: web::Data<Arc<Registry>>) -> HttpResponse {
    let (model, version) = model_path(&request);
    handling("ModelMetadata", model, &request)
        .counted(KSERVE, &registry)
        .rest(
            async {
                let (m, servable) = model_metadata(&registry, model, version)?;
                let version = servable.version;
                Ok(Answer::new((m, servable)).by_version(version))
            },
            // `rt_info` as OVMS serves it: the OpenVINO Model API's OVMSAdapter reads it.
            |(m, servable)| {
                HttpResponse::Ok().json(json!({
                    "name": m.name,
                    "versions": m.versions,
                    "platform": m.platform,
                    "inputs": tensors_json(&m.inputs),
                    "outputs": tensors_json(&m.outputs),
                    "rt_info": servable.rt_info,
                }))
            },
        )
        .await
}

/// The JSON header's length, when the body carries binary tensor data.
fn header_length(request: &HttpRequest) -> Result<Option<usize>, ServeError> {
    let Some(value) = request.headers().get(HEADER_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            ServeError::invalid(format!(
                "{HEADER_LENGTH} must be a non-negative integer, got {value:?}"
            ))
        })
}

async fn model_infer(
    request: HttpRequest,
    body: Body,
    registry: web::Data<Arc<Registry>>,
) -> HttpResponse {
    let body = match body.0 {
        Ok(body) => body,
        Err(e) => return body_error(&e),
    };
    let json_limit = request
        .app_data::<JsonLimit>()
        .map_or(usize::MAX, |limit| limit.0);
    let header = header_length(&request);
    let json_size = match header {
        Ok(Some(header)) => header,
        _ => body.len(),
    };
    if json_size > json_limit {
        return json_too_large(json_size, json_limit);
    }
    let body_len = body.len();
    let (model, version) = model_path(&request);
    let response = handling("ModelInfer", model, &request)
        .counted(KSERVE, &registry)
        .rest(
            async {
                let version = version_selector(version)?;
                let header = header?;
                // Off the REST threads, as for TFS REST (a large JSON takes long to decode).
                let decoded = json_threads::decode(body_len, move || decode_request(body, header))
                    .await
                    .ok_or_else(|| {
                        ServeError::invalid("cannot decode the body: its decoding failed")
                    })??;
                let request = InferRequest {
                    model: model.to_string(),
                    version,
                    inputs: decoded.inputs,
                    output_filter: decoded.outputs,
                };
                let answer = infer(&registry, request).await?;
                let version = answer.version;
                let reply = encode_response(answer, decoded.id, &decoded.binary);
                Ok(Answer::new(reply).by_version(version))
            },
            |(json, binary)| {
                if binary.is_empty() {
                    HttpResponse::Ok().json(json)
                } else {
                    binary_response(json, binary)
                }
            },
        )
        .await;
    give_memory_back(body_len).await;
    response
}

/// JSON header then the outputs' bytes, streamed as they are (no copy into one buffer).
fn binary_response(json: ResponseHeader, binary: Vec<Bytes>) -> HttpResponse {
    let header = match serde_json::to_vec(&json) {
        Ok(header) => Bytes::from(header),
        // As `.json()` answers a body that cannot be serialized (ours always can: strings and numbers).
        Err(e) => return HttpResponse::from_error(e),
    };
    let size = header.len() + binary.iter().map(Bytes::len).sum::<usize>();
    let chunks = std::iter::once(header.clone()).chain(binary);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((HEADER_LENGTH, header.len()))
        .body(SizedStream::new(
            size as u64,
            futures::stream::iter(chunks.map(Ok::<_, std::convert::Infallible>)),
        ))
}
