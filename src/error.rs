//! The error lattice: backend failures feed [`ServeError`], which every transport maps to its own
//! status in exactly one place (`api::status`). Variant names double as the metrics failure label.

use crate::tensor::{DataType, ShapeDisplay};
use thiserror::Error;

/// Client-supplied text quoted in an error (names, labels, values) is cut to this many
/// characters: a 500 MB name must not come back as a 500 MB answer, and over gRPC a long one
/// would exceed the client's metadata limit and reach it as RESOURCE_EXHAUSTED instead of the
/// real code.
pub const ECHO_LIMIT: usize = 128;

/// No error message, whatever it quotes, is longer than this many characters.
pub const MESSAGE_LIMIT: usize = 2048;

/// Displays client-supplied text cut to [`ECHO_LIMIT`] characters, saying how long it was.
pub struct Clip<'a>(pub &'a str);

impl std::fmt::Display for Clip<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&clip(self.0, ECHO_LIMIT))
    }
}

/// `text` if it has at most `limit` characters; else its first `limit` characters and how many
/// there were.
pub fn clip(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(limit) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!(
            "{}... ({} characters in all)",
            &text[..end],
            text.chars().count()
        )),
    }
}

/// Failures inside the inference runtime (OpenVINO or the fake backend).
#[derive(Debug, Error, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum BackendError {
    #[error("no model in {dir} (found: {found}); expected {layouts}", layouts = crate::runtime::files::ACCEPTED_LAYOUTS)]
    NoModelFiles { dir: String, found: String },
    #[error("model files in {dir} are ambiguous: {detail}")]
    AmbiguousModelFiles { dir: String, detail: String },
    #[error("cannot read model {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot reshape model: {0}")]
    Reshape(String),
    #[error("cannot compile model for {device}: {reason}")]
    Compile { device: String, reason: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("inference failed: {0}")]
    Infer(String),
    #[error("OpenVINO: {0}")]
    Runtime(String),
    /// The process running the model (a placement worker) went away: the request may be run
    /// again on its replacement.
    #[error("{0}")]
    WorkerLost(String),
}

/// Everything a request can fail with. Messages follow the OVMS wording clients already match on.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ServeError {
    #[error("Model with requested name is not found: {}", Clip(.model))]
    ModelNotFound { model: String },
    #[error("Model with requested version is not found: model {}, version {version}", Clip(.model))]
    VersionNotFound { model: String, version: u64 },
    #[error("Model version label is not found: model {}, label {}", Clip(.model), Clip(.label))]
    LabelNotFound { model: String, label: String },
    #[error("Model version is retired: model {model}, version {version}")]
    VersionRetired { model: String, version: u64 },
    #[error("Model version is not loaded yet: model {model}, version {version}")]
    VersionNotLoadedYet { model: String, version: u64 },
    #[error("Model has no available version: model {model}")]
    NoVersionAvailable { model: String, loading: bool },
    #[error("Model {model} has no version: {error}")]
    ModelFolderUnreadable { model: String, error: String },
    #[error(
        "Invalid input shape - Expected: {}; Actual: {}; input name: {}",
        ShapeDisplay(expected),
        ShapeDisplay(actual),
        Clip(.input)
    )]
    InvalidShape {
        input: String,
        expected: Vec<i64>,
        actual: Vec<usize>,
    },
    #[error(
        "Invalid input precision - Expected: {expected}; Actual: {actual}; input name: {}",
        Clip(.input)
    )]
    InvalidPrecision {
        input: String,
        expected: DataType,
        actual: DataType,
    },
    #[error("Missing input with specific name - Expected input: {input}; model {model} takes: {expected}")]
    MissingInput {
        model: String,
        input: String,
        expected: String,
    },
    #[error("Unexpected input name: {}; model {model} takes: {expected}", Clip(.input))]
    UnexpectedInput {
        model: String,
        input: String,
        expected: String,
    },
    #[error("Invalid content size of tensor proto - Expected: {expected} bytes; Actual: {actual} bytes; input name: {}", Clip(.input))]
    ByteSizeMismatch {
        input: String,
        expected: usize,
        actual: usize,
    },
    #[error("Unknown output requested: {}; model {model} gives: {available}", Clip(.output))]
    UnknownOutput {
        model: String,
        output: String,
        available: String,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "Model {model} version {version} is busy: its request queue is full ({bound} waiting)"
    )]
    QueueFull {
        model: String,
        version: u64,
        bound: usize,
    },
    #[error("{0}")]
    Unimplemented(String),
    #[error("Server is shutting down")]
    ShuttingDown,
    #[error("Deadline exceeded after {waited_ms} ms (the client allowed {allowed_ms} ms); the request was dropped")]
    DeadlineExceeded { allowed_ms: u64, waited_ms: u64 },
    #[error("Internal error: {0}")]
    Backend(#[from] BackendError),
}

impl ServeError {
    /// A stable label for metrics and logs (the variant name).
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::ModelNotFound { .. } => "ModelNotFound",
            ServeError::VersionNotFound { .. } => "VersionNotFound",
            ServeError::LabelNotFound { .. } => "LabelNotFound",
            ServeError::VersionRetired { .. } => "VersionRetired",
            ServeError::VersionNotLoadedYet { .. } => "VersionNotLoadedYet",
            ServeError::NoVersionAvailable { .. } => "NoVersionAvailable",
            ServeError::ModelFolderUnreadable { .. } => "ModelFolderUnreadable",
            ServeError::InvalidShape { .. } => "InvalidShape",
            ServeError::InvalidPrecision { .. } => "InvalidPrecision",
            ServeError::MissingInput { .. } => "MissingInput",
            ServeError::UnexpectedInput { .. } => "UnexpectedInput",
            ServeError::ByteSizeMismatch { .. } => "ByteSizeMismatch",
            ServeError::UnknownOutput { .. } => "UnknownOutput",
            ServeError::InvalidRequest(_) => "InvalidRequest",
            ServeError::QueueFull { .. } => "QueueFull",
            ServeError::Unimplemented(_) => "Unimplemented",
            ServeError::ShuttingDown => "ShuttingDown",
            ServeError::DeadlineExceeded { .. } => "DeadlineExceeded",
            ServeError::Backend(_) => "Backend",
        }
    }

    pub fn invalid(message: impl Into<String>) -> ServeError {
        ServeError::InvalidRequest(message.into())
    }
}

/// An invalid request, naming the input at fault as OVMS's messages do (`...; input name: x`).
pub fn invalid_input(input: &str, what: impl std::fmt::Display) -> ServeError {
    ServeError::invalid(format!("{what}; input name: {input}"))
}
