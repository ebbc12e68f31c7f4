//! TF Serving's `ModelServerConfig` (from `HandleReloadConfigRequest`) as a [`ServerConfig`].
//!
//! TFS's message has no OVMS keys (nireq, plugin_config, shape) nor `resize_images`; a model
//! that is already configured keeps those, a new one gets the defaults.

use super::model::{validate_model, ConfigError, RawModel, ServerConfig};
use crate::control::policy::VersionPolicy;
use crate::proto::tensorflow::serving::file_system_storage_path_source_config::servable_version_policy::PolicyChoice;
use crate::proto::tensorflow::serving::{model_server_config, ModelServerConfig};
use std::path::Path;

pub fn from_model_server_config(
    request: ModelServerConfig,
    current: &ServerConfig,
) -> Result<ServerConfig, ConfigError> {
    let list = match request.config {
        Some(model_server_config::Config::ModelConfigList(list)) => list,
        Some(model_server_config::Config::CustomModelConfig(_)) => {
            return Err(ConfigError {
                path: "config.custom_model_config".into(),
                reason: "custom model configs are not supported".into(),
            })
        }
        None => {
            return Err(ConfigError {
                path: "config".into(),
                reason: "a model_config_list is required".into(),
            })
        }
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| Path::new("/").to_path_buf());
    let mut models = Vec::with_capacity(list.config.len());
    for (i, m) in list.config.into_iter().enumerate() {
        let at = format!("model_config_list.config[{i}]");
        if !m.model_platform.is_empty()
            && m.model_platform != "openvino"
            && m.model_platform != "tensorflow"
        {
            return Err(ConfigError {
                path: format!("{at}.model_platform"),
                reason: format!("{} models cannot be served", m.model_platform),
            });
        }
        let policy = match m.model_version_policy.and_then(|p| p.policy_choice) {
            None => None,
            Some(PolicyChoice::Latest(l)) => Some(VersionPolicy::Latest {
                num_versions: (l.num_versions.max(1)) as usize,
            }),
            Some(PolicyChoice::All(_)) => Some(VersionPolicy::All {}),
            Some(PolicyChoice::Specific(s)) => Some(VersionPolicy::Specific {
                versions: s
                    .versions
                    .iter()
                    .map(|&v| u64::try_from(v).unwrap_or(0))
                    .collect(),
            }),
        };
        let version_labels = m
            .version_labels
            .into_iter()
            .map(|(label, v)| {
                u64::try_from(v)
                    .ok()
                    .filter(|&v| v > 0)
                    .map(|v| (label.clone(), v))
                    .ok_or_else(|| ConfigError {
                        path: format!("{at}.version_labels.{label}"),
                        reason: format!("expected a positive version, got {v}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        let mut model = validate_model(
            RawModel {
                name: m.name,
                base_path: m.base_path,
                model_version_policy: policy,
                version_labels,
                ..Default::default()
            },
            &cwd,
            &at,
        )?;
        if let Some(existing) = current.models.iter().find(|c| c.name == model.name) {
            model.nireq = existing.nireq;
            model.plugin_config = existing.plugin_config.clone();
            model.reshape = existing.reshape.clone();
            model.device = existing.device.clone();
            model.resize_images = existing.resize_images;
        }
        if models
            .iter()
            .any(|c: &super::ModelConfig| c.name == model.name)
        {
            return Err(ConfigError {
                path: format!("{at}.name"),
                reason: format!("duplicate model name {}", model.name),
            });
        }
        models.push(model);
    }
    Ok(ServerConfig { models })
}
