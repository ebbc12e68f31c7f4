//! OVMS's config endpoints: `POST /v1/config/reload` and `GET /v1/config`.

use crate::api::handling::{Answer, Handling};
use crate::api::tfs::rest::model_status_json;
use crate::api::trace::http_traceparent;
use crate::control::manager::{ModelManager, ReloadConfig};
use crate::error::ServeError;
use crate::serving::registry::Registry;
use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Every model and version with its state, keyed by model name.
pub fn config_status(registry: &Registry) -> Value {
    let snapshot = registry.snapshot();
    let mut names: Vec<&String> = snapshot.keys().collect();
    names.sort();
    let models: Map<String, Value> = names
        .into_iter()
        .map(|name| (name.clone(), model_status_json(&snapshot[name], None)))
        .collect();
    Value::Object(models)
}

pub async fn get_config(request: HttpRequest, registry: web::Data<Arc<Registry>>) -> HttpResponse {
    Handling::new("GetConfig", "", http_traceparent(&request), None)
        .rest(
            async { Ok(Answer::new(config_status(&registry))) },
            |status| HttpResponse::Ok().json(status),
        )
        .await
}

/// Re-reads the config file and rescans every model: 201 when something changed, 200 when
/// nothing did, 400 with the reason when the file is invalid (then nothing changed).
pub async fn reload(
    request: HttpRequest,
    registry: web::Data<Arc<Registry>>,
    manager: web::Data<Addr<ModelManager>>,
) -> HttpResponse {
    Handling::new("ReloadConfig", "", http_traceparent(&request), None)
        .rest(
            async {
                let outcome = manager
                    .send(ReloadConfig)
                    .await
                    .map_err(|_| ServeError::ShuttingDown)?
                    .map_err(|reason| {
                        ServeError::invalid(format!(
                            "Config reload rejected, nothing changed: {reason}"
                        ))
                    })?;
                Ok(Answer::new((outcome.changed, config_status(&registry))))
            },
            |(changed, models)| {
                let status = if changed {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                HttpResponse::build(status).json(models)
            },
        )
        .await
}
