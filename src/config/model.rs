//! OVMS-compatible `config.json`: parsing with JSON paths in every error, then validation into
//! one [`ServerConfig`] value. A config that fails here changes nothing that is running.

use super::batching::Batching;
use crate::control::policy::VersionPolicy;
use crate::runtime::Reshape;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A config problem: where (JSON path or file) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// One model, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    pub base_path: PathBuf,
    pub policy: VersionPolicy,
    /// Infer requests (worker threads) per version; 0 = OpenVINO's optimal number.
    pub nireq: usize,
    pub device: String,
    pub plugin_config: BTreeMap<String, String>,
    pub reshape: Reshape,
    pub version_labels: BTreeMap<String, u64>,
    /// Resize JPEG/PNG inputs to the model's height and width instead of refusing other sizes
    /// (`serving::image`). Not an OVMS key: OVMS always resizes.
    pub resize_images: bool,
    /// Server-side dynamic batching (TF Serving's parameters); `None`: every request is one
    /// inference. Not an OVMS key.
    pub batching: Option<Batching>,
}

/// The whole desired set of models.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerConfig {
    pub models: Vec<ModelConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    model_config_list: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    config: RawModel,
}

/// The per-model keys, as users write them for OVMS.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub base_path: String,
    #[serde(default)]
    pub model_version_policy: Option<VersionPolicy>,
    #[serde(default)]
    pub nireq: Option<usize>,
    #[serde(default)]
    pub target_device: Option<String>,
    #[serde(default)]
    pub plugin_config: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub batch_size: Option<serde_json::Value>,
    #[serde(default)]
    pub shape: Option<serde_json::Value>,
    #[serde(default)]
    pub layout: Option<serde_json::Value>,
    #[serde(default)]
    pub version_labels: BTreeMap<String, u64>,
    #[serde(default)]
    pub resize_images: Option<bool>,
    #[serde(default)]
    pub batching: Option<Batching>,
}

/// Reads and validates a config file; relative base paths are relative to the file's folder.
pub fn load_config_file(path: &Path) -> Result<ServerConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(&shown, format!("cannot read config: {e}")))?;
    parse_config(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| err(format!("{shown}: {}", e.path), e.reason))
}

/// Parses config JSON text; `base_dir` anchors relative base paths.
pub fn parse_config(text: &str, base_dir: &Path) -> Result<ServerConfig, ConfigError> {
    let (config, mut problems) = parse_config_all(text, base_dir)?;
    match problems.is_empty() {
        true => Ok(config),
        false => Err(problems.remove(0)),
    }
}

/// Like [`parse_config`], but one invalid model does not hide the next (`vinoserve check`
/// lists every problem in one run): returns the valid models and an error per invalid one.
/// Text that is not JSON, or not the schema, is still a single error.
pub fn parse_config_all(
    text: &str,
    base_dir: &Path,
) -> Result<(ServerConfig, Vec<ConfigError>), ConfigError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let path = if path == "." {
            format!("line {} column {}", inner.line(), inner.column())
        } else {
            path
        };
        // Keep "at line L column C" for broken JSON; for schema errors the path says where.
        let reason = if inner.is_syntax() || inner.is_eof() {
            inner.to_string()
        } else {
            strip_position(&inner.to_string())
        };
        err(path, reason)
    })?;
    let mut models = Vec::with_capacity(raw.model_config_list.len());
    let mut problems = Vec::new();
    for (i, entry) in raw.model_config_list.into_iter().enumerate() {
        let model = match validate_model(
            entry.config,
            base_dir,
            &format!("model_config_list[{i}].config"),
        ) {
            Ok(model) => model,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if models.iter().any(|m: &ModelConfig| m.name == model.name) {
            problems.push(err(
                format!("model_config_list[{i}].config.name"),
                format!("duplicate model name {}", model.name),
            ));
            continue;
        }
        models.push(model);
    }
    Ok((ServerConfig { models }, problems))
}

/// serde_json appends " at line L column C"; the JSON path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Turns the raw keys of one model into a [`ModelConfig`]; `at` is its JSON path.
pub fn validate_model(
    raw: RawModel,
    base_dir: &Path,
    at: &str,
) -> Result<ModelConfig, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    if raw.name.is_empty() || raw.name.contains('/') || raw.name.chars().any(char::is_whitespace) {
        return Err(err(
            field("name"),
            format!(
                "invalid model name {:?}: must be non-empty, without '/' or spaces",
                raw.name
            ),
        ));
    }
    let base_path = base_dir.join(&raw.base_path);
    if !base_path.is_dir() {
        return Err(err(
            field("base_path"),
            format!(
                "model folder {} does not exist or is not a folder",
                base_path.display()
            ),
        ));
    }
    let policy = raw.model_version_policy.unwrap_or_default();
    if let Some(problem) = policy.problem() {
        return Err(err(field("model_version_policy"), problem));
    }
    let device = raw.target_device.unwrap_or_else(|| "CPU".to_string());
    if device != "CPU" {
        return Err(err(
            field("target_device"),
            format!("{device} is not supported: this server runs on CPU only"),
        ));
    }
    let plugin_config = raw
        .plugin_config
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, if b { "YES" } else { "NO" }.to_string())),
            other => Err(err(
                format!("{at}.plugin_config.{k}"),
                format!("expected a string or number, got {other}"),
            )),
        })
        .collect::<Result<_, _>>()?;
    if raw.layout.is_some() {
        return Err(err(
            field("layout"),
            "layout conversion is not supported; export the model in the layout clients send",
        ));
    }
    let reshape = reshape_from(raw.batch_size, raw.shape, at)?;
    if let Some(batching) = &raw.batching {
        batching.validate(&field("batching"))?;
    }
    Ok(ModelConfig {
        name: raw.name,
        base_path,
        policy,
        nireq: raw.nireq.unwrap_or(0),
        device,
        plugin_config,
        reshape,
        version_labels: raw.version_labels,
        resize_images: raw.resize_images.unwrap_or(false),
        batching: raw.batching,
    })
}

fn reshape_from(
    batch_size: Option<serde_json::Value>,
    shape: Option<serde_json::Value>,
    at: &str,
) -> Result<Reshape, ConfigError> {
    use serde_json::Value;
    let batch = match batch_size {
        None => None,
        Some(Value::Number(n)) => Some(n.as_i64().filter(|&b| b == -1 || b > 0)),
        Some(Value::String(s)) => Some(s.trim().parse::<i64>().ok().filter(|&b| b == -1 || b > 0)),
        Some(_) => Some(None),
    };
    let batch = match batch {
        None => None,
        Some(Some(b)) => Some(b),
        Some(None) => {
            return Err(err(
                format!("{at}.batch_size"),
                "expected a positive integer or -1 (dynamic); \"auto\" is not supported",
            ))
        }
    };
    let shape = match shape {
        None => None,
        Some(Value::Object(map)) => {
            let mut by_name = BTreeMap::new();
            for (name, v) in map {
                by_name.insert(
                    name.clone(),
                    parse_shape(&v).map_err(|r| err(format!("{at}.shape.{name}"), r))?,
                );
            }
            Some(Reshape::Shapes(by_name))
        }
        Some(v) => Some(Reshape::Single(
            parse_shape(&v).map_err(|r| err(format!("{at}.shape"), r))?,
        )),
    };
    match (batch, shape) {
        (Some(_), Some(_)) => Err(err(
            format!("{at}.batch_size"),
            "give either batch_size or shape, not both",
        )),
        (Some(b), None) => Ok(Reshape::Batch(b)),
        (None, Some(s)) => Ok(s),
        (None, None) => Ok(Reshape::None),
    }
}

/// A shape as OVMS users write it: `"(1,3,224,224)"`, `"[1,3,-1,-1]"` or a JSON array.
pub fn parse_shape(value: &serde_json::Value) -> Result<Vec<i64>, String> {
    let expected =
        "expected a shape like \"(1,3,224,224)\" or [1,3,224,224] with positive dims or -1";
    let dims: Vec<i64> = match value {
        serde_json::Value::String(s) => {
            let inner = s
                .trim()
                .trim_start_matches(['(', '['])
                .trim_end_matches([')', ']']);
            if inner.trim().is_empty() {
                return Err(format!("{expected}, got {s:?}"));
            }
            inner
                .split(',')
                .map(|d| {
                    d.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("{expected}, got {s:?}"))
                })
                .collect::<Result<_, _>>()?
        }
        serde_json::Value::Array(items) => items
            .iter()
            .map(|d| d.as_i64().ok_or_else(|| format!("{expected}, got {value}")))
            .collect::<Result<_, _>>()?,
        other => return Err(format!("{expected}, got {other}")),
    };
    if dims.iter().any(|&d| d == 0 || d < -1) {
        return Err(format!("{expected}, got {value}"));
    }
    Ok(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("models/resnet")).unwrap();
        d
    }

    #[test]
    fn every_invalid_model_is_reported() {
        let d = repo();
        let text = r#"{"model_config_list": [
            {"config": {"name": "a", "base_path": "missing"}},
            {"config": {"name": "b", "base_path": "models/resnet"}},
            {"config": {"name": "c", "base_path": "models/resnet", "target_device": "GPU"}},
            {"config": {"name": "b", "base_path": "models/resnet"}}]}"#;
        let (config, problems) = parse_config_all(text, d.path()).unwrap();
        assert_eq!(config.models.len(), 1);
        assert_eq!(config.models[0].name, "b");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "model_config_list[0].config.base_path",
                "model_config_list[2].config.target_device",
                "model_config_list[3].config.name"
            ]
        );
        // parse_config stops at the first, as before.
        assert_eq!(parse_config(text, d.path()).unwrap_err(), problems[0]);
        assert!(parse_config_all("{", d.path()).is_err());
    }

    #[test]
    fn parses_full_ovms_entry_with_relative_path() {
        let d = repo();
        let text = r#"{"model_config_list": [{"config": {
            "name": "resnet", "base_path": "models/resnet",
            "model_version_policy": {"latest": {"num_versions": 2}},
            "nireq": 4, "target_device": "CPU", "batch_size": 8,
            "plugin_config": {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 2},
            "version_labels": {"stable": 1}}}]}"#;
        let cfg = parse_config(text, d.path()).unwrap();
        let m = &cfg.models[0];
        assert_eq!(m.base_path, d.path().join("models/resnet"));
        assert_eq!(m.policy, VersionPolicy::Latest { num_versions: 2 });
        assert_eq!(m.nireq, 4);
        assert_eq!(m.reshape, Reshape::Batch(8));
        assert_eq!(m.plugin_config["NUM_STREAMS"], "2");
        assert_eq!(m.version_labels["stable"], 1);
        assert!(!m.resize_images, "off unless asked for");
    }

    #[test]
    fn resize_images_is_a_boolean() {
        let d = repo();
        let with = |value: &str| {
            format!(
                r#"{{"model_config_list": [{{"config": {{"name": "a", "base_path": "models/resnet", "resize_images": {value}}}}}]}}"#
            )
        };
        assert!(parse_config(&with("true"), d.path()).unwrap().models[0].resize_images);
        assert!(!parse_config(&with("false"), d.path()).unwrap().models[0].resize_images);
        let e = parse_config(&with(r#""yes""#), d.path()).unwrap_err();
        assert_eq!(e.path, "model_config_list[0].config.resize_images");
        assert!(e.reason.contains("expected a boolean"), "{e}");
    }

    #[test]
    fn unknown_key_is_reported_with_its_path() {
        let d = repo();
        let text = r#"{"model_config_list": [
            {"config": {"name": "a", "base_path": "models/resnet"}},
            {"config": {"name": "b", "base_path": "models/resnet", "nirq": 2}}]}"#;
        let e = parse_config(text, d.path()).unwrap_err();
        assert_eq!(e.path, "model_config_list[1].config.nirq");
        assert!(e.reason.starts_with("unknown field `nirq`"), "{e}");
    }

    #[test]
    fn wrong_type_and_syntax_errors_say_where() {
        let d = repo();
        let e = parse_config(r#"{"model_config_list": [{"config": {"name": "a", "base_path": "models/resnet", "nireq": "four"}}]}"#, d.path())
            .unwrap_err();
        assert_eq!(e.path, "model_config_list[0].config.nireq");
        let e = parse_config("{\"model_config_list\": [", d.path()).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let d = repo();
        let one = |extra: &str| {
            format!(
                r#"{{"model_config_list": [{{"config": {{"name": "a", "base_path": "models/resnet"{extra}}}}}]}}"#
            )
        };
        let cases = [
            (r#", "target_device": "GPU""#, "target_device"),
            (r#", "batch_size": "auto""#, "batch_size"),
            (r#", "shape": "(1,0,3)""#, "shape"),
            (
                r#", "model_version_policy": {"latest": {"num_versions": 0}}"#,
                "model_version_policy",
            ),
            (r#", "layout": "NHWC""#, "layout"),
        ];
        for (extra, field) in cases {
            let e = parse_config(&one(extra), d.path()).unwrap_err();
            assert_eq!(
                e.path,
                format!("model_config_list[0].config.{field}"),
                "{extra}"
            );
        }
        let e = parse_config(
            r#"{"model_config_list": [{"config": {"name": "a", "base_path": "nope"}}]}"#,
            d.path(),
        )
        .unwrap_err();
        assert_eq!(e.path, "model_config_list[0].config.base_path");
        let dup = r#"{"model_config_list": [{"config": {"name": "a", "base_path": "models/resnet"}},
                                            {"config": {"name": "a", "base_path": "models/resnet"}}]}"#;
        assert!(parse_config(dup, d.path())
            .unwrap_err()
            .reason
            .contains("duplicate"));
    }

    #[test]
    fn shapes_in_every_ovms_spelling() {
        assert_eq!(
            parse_shape(&serde_json::json!("(1,3,224,224)")).unwrap(),
            vec![1, 3, 224, 224]
        );
        assert_eq!(
            parse_shape(&serde_json::json!("[-1, 8]")).unwrap(),
            vec![-1, 8]
        );
        assert_eq!(parse_shape(&serde_json::json!([2, 4])).unwrap(), vec![2, 4]);
        assert!(parse_shape(&serde_json::json!("auto")).is_err());
        let r = reshape_from(None, Some(serde_json::json!({"x": "(1,10)"})), "m").unwrap();
        assert_eq!(
            r,
            Reshape::Shapes(BTreeMap::from([("x".to_string(), vec![1, 10])]))
        );
    }
}
