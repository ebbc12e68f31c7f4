//! TensorFlow Serving gRPC: `PredictionService` and `ModelService`, wire-compatible with TFS.

use crate::api::handling::{Answer, Handling, TFS};
use crate::api::tfs::codec::{decode_tensor, encode_tensor, shape_proto, tf_dtype};
use crate::api::trace::grpc_traceparent;
use crate::control::manager::{EditConfig, ModelManager, Reports};
use crate::error::ServeError;
use crate::proto::tensorflow::serving::{
    model_service_server::ModelService, model_spec::VersionChoice, model_version_status::State,
    prediction_service_server::PredictionService, ClassificationRequest, ClassificationResponse,
    GetModelMetadataRequest, GetModelMetadataResponse, GetModelStatusRequest,
    GetModelStatusResponse, ModelSpec, ModelVersionStatus, MultiInferenceRequest,
    MultiInferenceResponse, PredictRequest, PredictResponse, RegressionRequest, RegressionResponse,
    ReloadConfigRequest, ReloadConfigResponse, SignatureDefMap, StatusProto,
};
use crate::proto::tensorflow::{tensor_info, SignatureDef, TensorInfo};
use crate::serving::registry::{ModelStatus, Registry, VersionSelector};
use crate::serving::request::{infer, InferRequest};
use crate::tensor::{Signature, TensorSpec};
use actix::Addr;
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The only signature a served OpenVINO model has.
pub const DEFAULT_SIGNATURE: &str = "serving_default";
const PREDICT_METHOD: &str = "tensorflow/serving/predict";

#[derive(Clone)]
pub struct TfsGrpc {
    registry: Arc<Registry>,
    manager: Addr<ModelManager>,
}

impl TfsGrpc {
    pub fn new(registry: Arc<Registry>, manager: Addr<ModelManager>) -> TfsGrpc {
        TfsGrpc { registry, manager }
    }
}

fn model_spec(spec: Option<ModelSpec>) -> Result<(String, VersionSelector, String), ServeError> {
    let spec = spec.ok_or_else(|| ServeError::invalid("model_spec is required"))?;
    if spec.name.is_empty() {
        return Err(ServeError::invalid("model_spec.name is required"));
    }
    let selector = match spec.version_choice {
        None => VersionSelector::Latest,
        Some(VersionChoice::Version(v)) => match u64::try_from(v) {
            Ok(v) => VersionSelector::from_number(v),
            Err(_) => {
                return Err(ServeError::invalid(format!(
                    "model_spec.version must be a positive integer (or 0 for the default version), got {v}"
                )))
            }
        },
        Some(VersionChoice::VersionLabel(label)) => VersionSelector::Label(label),
    };
    Ok((spec.name, selector, spec.signature_name))
}

/// A call's handling (see `api::handling`), named by its model_spec.
fn handling<'a, T>(method: &'static str, model: &'a str, request: &Request<T>) -> Handling<'a> {
    Handling::new(method, model, grpc_traceparent(request.metadata()), None)
}

/// TF Serving's `signature_name`: empty or `serving_default`, the only one a model has.
pub(crate) fn check_signature_name(name: &str) -> Result<(), ServeError> {
    if name.is_empty() || name == DEFAULT_SIGNATURE {
        Ok(())
    } else {
        Err(ServeError::invalid(format!("Serving signature name: \"{name}\" not found in signature def; the only one is \"{DEFAULT_SIGNATURE}\"")))
    }
}

fn answered_spec(model: String, version: u64) -> Option<ModelSpec> {
    Some(ModelSpec {
        name: model,
        signature_name: DEFAULT_SIGNATURE.to_string(),
        version_choice: Some(VersionChoice::Version(version as i64)),
    })
}

fn spec_name(spec: &Option<ModelSpec>) -> String {
    spec.as_ref().map(|s| s.name.clone()).unwrap_or_default()
}

fn tensor_info(spec: &TensorSpec) -> TensorInfo {
    TensorInfo {
        dtype: tf_dtype(spec.dtype) as i32,
        tensor_shape: Some(shape_proto(&spec.shape)),
        encoding: Some(tensor_info::Encoding::Name(spec.name.clone())),
    }
}

/// The signature as TFS describes it: a `SignatureDefMap` with one `serving_default` entry.
pub fn signature_def_map(signature: &Signature) -> SignatureDefMap {
    let infos = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|s| (s.name.clone(), tensor_info(s)))
            .collect()
    };
    let def = SignatureDef {
        inputs: infos(&signature.inputs),
        outputs: infos(&signature.outputs),
        method_name: PREDICT_METHOD.to_string(),
        defaults: HashMap::new(),
    };
    SignatureDefMap {
        signature_def: HashMap::from([(DEFAULT_SIGNATURE.to_string(), def)]),
    }
}

/// Version statuses in TFS form; `only` restricts to one version.
pub fn version_statuses(model: &ModelStatus, only: Option<u64>) -> Vec<ModelVersionStatus> {
    model
        .versions
        .values()
        .filter(|v| only.is_none_or(|o| o == v.version))
        .map(|v| ModelVersionStatus {
            version: v.version as i64,
            state: State::try_from(v.state as i32).unwrap_or(State::Unknown) as i32,
            status: Some(StatusProto {
                // tensorflow.error.Code: OK = 0, UNKNOWN = 2 for a failed load.
                error_code: if v.error.is_some() { 2 } else { 0 },
                error_message: v.error.clone().unwrap_or_else(|| "OK".to_string()),
            }),
        })
        .collect()
}

/// Resolves a status request's version choice to a version number filter.
pub fn status_filter(
    model: &ModelStatus,
    selector: &VersionSelector,
) -> Result<Option<u64>, ServeError> {
    if let (true, Some(error)) = (model.versions.is_empty(), &model.error) {
        // An unreadable base folder: say why there is nothing to list.
        return Err(ServeError::ModelFolderUnreadable {
            model: model.name.clone(),
            error: error.clone(),
        });
    }
    let version = match selector {
        VersionSelector::Latest => return Ok(None),
        VersionSelector::Number(v) => *v,
        VersionSelector::Label(l) => {
            *model
                .labels
                .get(l)
                .ok_or_else(|| ServeError::LabelNotFound {
                    model: model.name.clone(),
                    label: l.clone(),
                })?
        }
    };
    if !model.versions.contains_key(&version) {
        return Err(ServeError::VersionNotFound {
            model: model.name.clone(),
            version,
        });
    }
    Ok(Some(version))
}

/// A reload's outcome as TFS reports it: OK, or UNKNOWN naming each version that did not load
/// (the config is applied all the same).
fn reload_status(reports: &Reports) -> StatusProto {
    let failures: Vec<String> = reports
        .iter()
        .flat_map(|(model, r)| {
            r.failed
                .iter()
                .map(move |(v, e)| format!("{model} version {v}: {e}"))
        })
        .collect();
    if failures.is_empty() {
        StatusProto {
            error_code: 0,
            error_message: String::new(),
        }
    } else {
        // tensorflow.error.Code UNKNOWN.
        StatusProto {
            error_code: 2,
            error_message: failures.join("; "),
        }
    }
}

/// Classify, Regress and MultiInference: refused, they take tf.Example inputs.
async fn tf_example_unsupported<T, R>(
    method: &'static str,
    spec: &Option<ModelSpec>,
    request: &Request<T>,
) -> Result<Response<R>, Status> {
    let model = spec_name(spec);
    let refusal = ServeError::Unimplemented(format!(
        "{method} takes tf.Example inputs, which OpenVINO models do not have; use Predict"
    ));
    handling(method, &model, request)
        .grpc(async { Err(refusal) })
        .await
}

#[tonic::async_trait]
impl PredictionService for TfsGrpc {
    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let name = spec_name(&request.get_ref().model_spec);
        let handling = handling("Predict", &name, &request).counted(TFS, &self.registry);
        let request = request.into_inner();
        handling
            .grpc(async {
                let (model, version, signature_name) = model_spec(request.model_spec)?;
                check_signature_name(&signature_name)?;
                let inputs = request
                    .inputs
                    .into_iter()
                    .map(|(name, proto)| decode_tensor(&name, proto).map(|t| (name, t)))
                    .collect::<Result<Vec<_>, _>>()?;
                let request = InferRequest {
                    model,
                    version,
                    inputs,
                    output_filter: request.output_filter,
                };
                let answer = infer(&self.registry, request).await?;
                let outputs = answer
                    .outputs
                    .into_iter()
                    .map(|(name, t)| (name, encode_tensor(t)))
                    .collect();
                Ok(Answer::new(PredictResponse {
                    model_spec: answered_spec(answer.model, answer.version),
                    outputs,
                })
                .by_version(answer.version))
            })
            .await
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        let name = spec_name(&request.get_ref().model_spec);
        let handling = handling("GetModelMetadata", &name, &request).counted(TFS, &self.registry);
        let request = request.into_inner();
        handling
            .grpc(async {
                let (model, version, _) = model_spec(request.model_spec)?;
                if request.metadata_field.iter().any(|f| f != "signature_def")
                    || request.metadata_field.is_empty()
                {
                    return Err(ServeError::invalid(format!(
                        "metadata_field must be [\"signature_def\"], got {:?}",
                        request.metadata_field
                    )));
                }
                let servable = self.registry.resolve(&model, &version)?;
                let any = prost_types::Any::from_msg(&signature_def_map(&servable.signature))
                    .map_err(|e| ServeError::invalid(format!("cannot encode signature: {e}")))?;
                Ok(Answer::new(GetModelMetadataResponse {
                    model_spec: answered_spec(servable.model.clone(), servable.version),
                    metadata: HashMap::from([("signature_def".to_string(), any)]),
                })
                .by_version(servable.version))
            })
            .await
    }

    async fn classify(
        &self,
        request: Request<ClassificationRequest>,
    ) -> Result<Response<ClassificationResponse>, Status> {
        tf_example_unsupported("Classify", &request.get_ref().model_spec, &request).await
    }

    async fn regress(
        &self,
        request: Request<RegressionRequest>,
    ) -> Result<Response<RegressionResponse>, Status> {
        tf_example_unsupported("Regress", &request.get_ref().model_spec, &request).await
    }

    async fn multi_inference(
        &self,
        request: Request<MultiInferenceRequest>,
    ) -> Result<Response<MultiInferenceResponse>, Status> {
        // Each of its tasks names a model of its own: the span names none.
        tf_example_unsupported("MultiInference", &None, &request).await
    }
}

#[tonic::async_trait]
impl ModelService for TfsGrpc {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        let name = spec_name(&request.get_ref().model_spec);
        let handling = handling("GetModelStatus", &name, &request).counted(TFS, &self.registry);
        let spec = request.into_inner().model_spec;
        handling
            .grpc(async {
                let (name, selector, _) = model_spec(spec)?;
                let model = self
                    .registry
                    .model(&name)
                    .ok_or(ServeError::ModelNotFound { model: name })?;
                let only = status_filter(&model, &selector)?;
                Ok(Answer::new(GetModelStatusResponse {
                    model_version_status: version_statuses(&model, only),
                }))
            })
            .await
    }

    /// Really applies the config (the given list becomes the whole set of models) and answers
    /// once every model has reconciled; a version that failed to load is reported in the status.
    async fn handle_reload_config_request(
        &self,
        request: Request<ReloadConfigRequest>,
    ) -> Result<Response<ReloadConfigResponse>, Status> {
        let handling = handling("HandleReloadConfigRequest", "", &request);
        let config = request.into_inner().config;
        handling
            .grpc(async {
                let config = config
                    .ok_or_else(|| ServeError::invalid("ReloadConfigRequest.config is required"))?;
                let reports = self
                    .manager
                    .send(EditConfig(Box::new(move |current| {
                        crate::config::tfs::from_model_server_config(config, current)
                            .map_err(|e| e.to_string())
                    })))
                    .await
                    .map_err(|_| ServeError::ShuttingDown)?
                    .map_err(|e| {
                        ServeError::invalid(format!("config rejected, nothing changed: {e}"))
                    })?;
                Ok(Answer::new(ReloadConfigResponse {
                    status: Some(reload_status(&reports)),
                }))
            })
            .await
    }
}
