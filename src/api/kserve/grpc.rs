//! KServe v2 gRPC: `inference.GRPCInferenceService` (health, metadata, `ModelInfer`).

use crate::api::handling::{Answer, Handling, KSERVE};
use crate::api::kserve::codec::{
    decode_infer_request, encode_infer_response, tensor_metadata, version_selector,
};
use crate::api::trace::grpc_traceparent;
use crate::control::readiness::Readiness;
use crate::error::ServeError;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::inference::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse,
    ModelReadyRequest, ModelReadyResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use crate::serving::registry::Registry;
use crate::serving::request::infer;
use crate::serving::servable::Servable;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub const SERVER_NAME: &str = "vinoserve";
/// KServe extensions this server implements (only those; clients probe for them).
pub const EXTENSIONS: &[&str] = &["binary_tensor_data"];
const PLATFORM: &str = "openvino";

#[derive(Clone)]
pub struct KServeGrpc {
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
}

impl KServeGrpc {
    pub fn new(registry: Arc<Registry>, readiness: Arc<Readiness>) -> KServeGrpc {
        KServeGrpc {
            registry,
            readiness,
        }
    }
}

pub fn server_metadata() -> ServerMetadataResponse {
    ServerMetadataResponse {
        name: SERVER_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
    }
}

/// A model's metadata: its AVAILABLE versions, and the signature of the version asked for
/// (empty `version` = the latest); with the servable it describes (REST adds what the proto
/// lacks).
pub fn model_metadata(
    registry: &Registry,
    model: &str,
    version: &str,
) -> Result<(ModelMetadataResponse, Arc<Servable>), ServeError> {
    let servable = registry.resolve(model, &version_selector(version)?)?;
    let versions = registry
        .model(model)
        .map(|status| {
            status
                .versions
                .values()
                .filter(|v| v.servable.is_some())
                .map(|v| v.version.to_string())
                .collect()
        })
        .unwrap_or_default();
    let metadata = ModelMetadataResponse {
        name: servable.model.clone(),
        versions,
        platform: PLATFORM.to_string(),
        inputs: servable
            .signature
            .inputs
            .iter()
            .map(tensor_metadata)
            .collect(),
        outputs: servable
            .signature
            .outputs
            .iter()
            .map(tensor_metadata)
            .collect(),
    };
    Ok((metadata, servable))
}

/// A call's handling (see `api::handling`) naming `model` (empty for server-level calls).
fn handling<'a, T>(method: &'static str, model: &'a str, request: &Request<T>) -> Handling<'a> {
    Handling::new(method, model, grpc_traceparent(request.metadata()), None)
}

#[tonic::async_trait]
impl GrpcInferenceService for KServeGrpc {
    async fn server_live(
        &self,
        request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        handling("ServerLive", "", &request)
            .grpc(async { Ok(Answer::new(ServerLiveResponse { live: true })) })
            .await
    }

    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        handling("ServerReady", "", &request)
            .grpc(async {
                let ready = self.readiness.server_ready();
                Ok(Answer::new(ServerReadyResponse { ready }))
            })
            .await
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let ModelReadyRequest { name, version } = request.get_ref();
        handling("ModelReady", name, &request)
            .counted(KSERVE, &self.registry)
            .grpc(async {
                let ready = self
                    .readiness
                    .model_ready(name, &version_selector(version)?)?;
                Ok(Answer::new(ModelReadyResponse { ready }))
            })
            .await
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        handling("ServerMetadata", "", &request)
            .grpc(async { Ok(Answer::new(server_metadata())) })
            .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let ModelMetadataRequest { name, version } = request.get_ref();
        handling("ModelMetadata", name, &request)
            .counted(KSERVE, &self.registry)
            .grpc(async {
                let (metadata, servable) = model_metadata(&self.registry, name, version)?;
                Ok(Answer::new(metadata).by_version(servable.version))
            })
            .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let name = request.get_ref().model_name.clone();
        let handling = Handling::new(
            "ModelInfer",
            &name,
            grpc_traceparent(request.metadata()),
            Some(&request.get_ref().id),
        )
        .counted(KSERVE, &self.registry);
        let request = request.into_inner();
        handling
            .grpc(async {
                let (request, id) = decode_infer_request(request)?;
                let answer = infer(&self.registry, request).await?;
                let version = answer.version;
                Ok(Answer::new(encode_infer_response(answer, id)).by_version(version))
            })
            .await
    }
}
