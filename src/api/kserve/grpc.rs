//! KServe v2 gRPC: `inference.GRPCInferenceService` (health, metadata, `ModelInfer`).

use crate::api::handled::handled;
use crate::api::kserve::codec::{
    decode_infer_request, encode_infer_response, tensor_metadata, version_selector,
};
use crate::api::status::to_status;
use crate::api::trace::{grpc_traceparent, request_span};
use crate::control::readiness::Readiness;
use crate::error::ServeError;
use crate::metrics::Call;
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
/// (empty `version` = the latest).
pub fn model_metadata(
    registry: &Registry,
    model: &str,
    version: &str,
) -> Result<ModelMetadataResponse, ServeError> {
    model_metadata_of(registry, model, version).map(|(metadata, _)| metadata)
}

/// [`model_metadata`] with the servable it describes (REST adds what the proto lacks).
pub fn model_metadata_of(
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

#[tonic::async_trait]
impl GrpcInferenceService for KServeGrpc {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.readiness.server_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        version_selector(&request.version)
            .and_then(|version| self.readiness.model_ready(&request.name, &version))
            .map(|ready| Response::new(ModelReadyResponse { ready }))
            .map_err(|e| to_status(&e))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(server_metadata()))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        model_metadata(&self.registry, &request.name, &request.version)
            .map(Response::new)
            .map_err(|e| to_status(&e))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let span = request_span(
            "ModelInfer",
            &request.get_ref().model_name,
            grpc_traceparent(request.metadata()),
            Some(&request.get_ref().id),
        );
        let request = request.into_inner();
        let name = request.model_name.clone();
        let run = async {
            let (request, id) = decode_infer_request(request)?;
            let answer = infer(&self.registry, request).await?;
            Ok::<_, ServeError>(encode_infer_response(answer, id))
        };
        let call = Call {
            api: "KServe",
            interface: "gRPC",
            method: "ModelInfer",
        };
        handled(call, Some((&name, &self.registry)), span, async {
            let result = run.await;
            let version = result
                .as_ref()
                .ok()
                .and_then(|r| r.model_version.parse().ok());
            (result, version)
        })
        .await
        .map(Response::new)
        .map_err(|e| to_status(&e))
    }
}
