//! OVMS's config endpoints: `POST /v1/config/reload` and `GET /v1/config`.

use crate::api::status::http_status;
use crate::api::tfs::rest::model_status_json;
use crate::control::manager::{ModelManager, ReloadConfig};
use crate::serving::registry::Registry;
use actix::Addr;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};
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

pub async fn get_config(registry: web::Data<Arc<Registry>>) -> HttpResponse {
    HttpResponse::Ok().json(config_status(&registry))
}

/// Re-reads the config file and rescans every model: 201 when something changed, 200 when
/// nothing did, 400 with the reason when the file is invalid (then nothing changed).
pub async fn reload(
    registry: web::Data<Arc<Registry>>,
    manager: web::Data<Addr<ModelManager>>,
) -> HttpResponse {
    match manager.send(ReloadConfig).await {
        Ok(Ok(outcome)) => {
            let status = if outcome.changed {
                actix_web::http::StatusCode::CREATED
            } else {
                actix_web::http::StatusCode::OK
            };
            HttpResponse::build(status).json(config_status(&registry))
        }
        Ok(Err(reason)) => HttpResponse::build(http_status(tonic::Code::FailedPrecondition))
            .json(json!({ "error": format!("Config reload rejected, nothing changed: {reason}") })),
        Err(_) => HttpResponse::build(http_status(tonic::Code::Unavailable))
            .json(json!({ "error": "Server is shutting down" })),
    }
}
