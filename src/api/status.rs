//! The one mapping from [`ServeError`] to a gRPC code, and from a gRPC code to an HTTP status.

use crate::error::{clip, BackendError, ServeError, MESSAGE_LIMIT};
use actix_web::http::StatusCode;
use tonic::Code;

/// The gRPC code of an error. Exhaustive on purpose: a new variant must choose its code here.
pub fn grpc_code(error: &ServeError) -> Code {
    match error {
        ServeError::ModelNotFound { .. }
        | ServeError::VersionNotFound { .. }
        | ServeError::LabelNotFound { .. }
        | ServeError::VersionRetired { .. } => Code::NotFound,
        ServeError::NoVersionAvailable { loading: false, .. } => Code::NotFound,
        ServeError::NoVersionAvailable { loading: true, .. }
        | ServeError::VersionNotLoadedYet { .. }
        | ServeError::ModelFolderUnreadable { .. } => Code::Unavailable,
        ServeError::InvalidShape { .. }
        | ServeError::InvalidPrecision { .. }
        | ServeError::MissingInput { .. }
        | ServeError::UnexpectedInput { .. }
        | ServeError::ByteSizeMismatch { .. }
        | ServeError::UnknownOutput { .. }
        | ServeError::InvalidRequest(_) => Code::InvalidArgument,
        ServeError::QueueFull { .. } => Code::ResourceExhausted,
        ServeError::Unimplemented(_) => Code::Unimplemented,
        ServeError::ShuttingDown => Code::Unavailable,
        ServeError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        // Retryable: the model's worker process is being restarted (see model::request).
        ServeError::Backend(BackendError::WorkerLost(_)) => Code::Unavailable,
        ServeError::Backend(_) => Code::Internal,
    }
}

pub fn to_status(error: &ServeError) -> tonic::Status {
    tonic::Status::new(grpc_code(error), message(error))
}

/// The error's message, bounded (it may quote what a client sent).
fn message(error: &ServeError) -> String {
    clip(&error.to_string(), MESSAGE_LIMIT).into_owned()
}

/// HTTP status for a gRPC code, as TF Serving's REST layer maps them.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error": "..."}` with the mapped status: the body every REST error has.
pub fn error_response(error: &ServeError) -> actix_web::HttpResponse {
    actix_web::HttpResponse::build(http_status(grpc_code(error)))
        .json(serde_json::json!({ "error": message(error) }))
}

/// A body that could not be read (too large, truncated): the same JSON error shape.
pub fn body_error(error: &actix_web::Error) -> actix_web::HttpResponse {
    let status = error.as_response_error().status_code();
    let hint = if status == StatusCode::PAYLOAD_TOO_LARGE {
        " (the limits are --max_json_body_size for TFS REST bodies, --max_message_size otherwise)"
    } else {
        ""
    };
    actix_web::HttpResponse::build(status)
        .json(serde_json::json!({"error": format!("Cannot read the request body: {error}{hint}")}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DataType;

    #[test]
    fn reference_table_codes() {
        let cases = [
            (ServeError::ModelNotFound { model: "m".into() }, 404),
            (
                ServeError::VersionNotFound {
                    model: "m".into(),
                    version: 3,
                },
                404,
            ),
            (
                ServeError::VersionRetired {
                    model: "m".into(),
                    version: 3,
                },
                404,
            ),
            (
                ServeError::VersionNotLoadedYet {
                    model: "m".into(),
                    version: 3,
                },
                503,
            ),
            (
                ServeError::InvalidPrecision {
                    input: "x".into(),
                    expected: DataType::F32,
                    actual: DataType::I32,
                },
                400,
            ),
            (
                ServeError::QueueFull {
                    model: "m".into(),
                    version: 1,
                    bound: 4,
                },
                429,
            ),
            (ServeError::Unimplemented("Classify".into()), 501),
            (ServeError::invalid("bad"), 400),
        ];
        for (error, http) in cases {
            assert_eq!(http_status(grpc_code(&error)).as_u16(), http, "{error}");
        }
    }
}
