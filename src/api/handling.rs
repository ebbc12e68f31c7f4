//! The one wrapper every protocol handler goes through, whatever its API and transport: the
//! work runs inside the request's span (`api::trace`), the version that answered is recorded in
//! the span, the call is timed and, for the calls OVMS counts, counted in `ovms_requests_*` and
//! `ovms_request_time_us`; errors get their gRPC code or HTTP status (`api::status`). A handler
//! then reads as decode → call → encode:
//!
//! ```ignore
//! Handling::new("Predict", &model, traceparent, None)
//!     .counted(TFS, &registry)
//!     .grpc(async { decode → infer → Ok(Answer::new(response).by_version(v)) })
//! ```

use crate::api::status::{error_response, to_status};
use crate::api::trace::{record_version, request_span};
use crate::error::ServeError;
use crate::metrics::{Call, METRICS};
use crate::serving::registry::Registry;
use actix_web::HttpResponse;
use std::future::Future;
use std::time::Instant;
use tracing::Instrument;

/// The `api` label of TensorFlow Serving's calls.
pub const TFS: &str = "TensorFlowServing";
/// The `api` label of KServe v2's calls.
pub const KSERVE: &str = "KServe";

/// A handler's answer, and the version that gave it when a single one did (it goes in the span
/// and in the metrics' `version` label).
pub struct Answer<T> {
    body: T,
    version: Option<u64>,
}

impl<T> Answer<T> {
    /// An answer no single version gave (health, server metadata, a status listing).
    pub fn new(body: T) -> Answer<T> {
        Answer {
            body,
            version: None,
        }
    }

    pub fn by_version(self, version: u64) -> Answer<T> {
        Answer {
            version: Some(version),
            ..self
        }
    }
}

/// One request on its way through a handler: its method, the model it names, its span, and
/// whether it is counted.
pub struct Handling<'a> {
    method: &'static str,
    model: &'a str,
    span: tracing::Span,
    /// The `api` label, and the registry that says whether the model's name may label a metric
    /// (see `Metrics::observe_request`); `None`: the call is not counted.
    counted: Option<(&'static str, &'a Registry)>,
}

impl<'a> Handling<'a> {
    /// A call of `method` naming `model` (empty for server-level calls); `traceparent`: the
    /// client's W3C header or metadata entry; `id`: its own request id, when the protocol has one.
    pub fn new(
        method: &'static str,
        model: &'a str,
        traceparent: Option<&str>,
        id: Option<&str>,
    ) -> Handling<'a> {
        Handling {
            method,
            model,
            span: request_span(method, model, traceparent, id),
            counted: None,
        }
    }

    /// Counts the call under `api` in the request metrics.
    pub fn counted(self, api: &'static str, registry: &'a Registry) -> Handling<'a> {
        Handling {
            counted: Some((api, registry)),
            ..self
        }
    }

    /// Runs `work` in the span, then records and counts it as a call over `interface`.
    async fn run<T>(
        &self,
        interface: &'static str,
        work: impl Future<Output = Result<Answer<T>, ServeError>>,
    ) -> Result<T, ServeError> {
        let started = Instant::now();
        let result = work.instrument(self.span.clone()).await;
        let version = result.as_ref().ok().and_then(|answer| answer.version);
        record_version(&self.span, version);
        if let Some((api, registry)) = self.counted {
            // The metrics' debug line belongs to the request too.
            let _entered = self.span.enter();
            let call = Call {
                api,
                interface,
                method: self.method,
            };
            METRICS.observe_request(
                call,
                (self.model, registry),
                version,
                result.is_ok(),
                started.elapsed(),
            );
        }
        result.map(|answer| answer.body)
    }

    /// A gRPC call: the answer as the response message, an error as its status.
    pub async fn grpc<T>(
        self,
        work: impl Future<Output = Result<Answer<T>, ServeError>>,
    ) -> Result<tonic::Response<T>, tonic::Status> {
        self.run("gRPC", work)
            .await
            .map(tonic::Response::new)
            .map_err(|e| to_status(&e))
    }

    /// A REST call: the answer as `encode` writes it, an error as the JSON error body with its
    /// HTTP status.
    pub async fn rest<T>(
        self,
        work: impl Future<Output = Result<Answer<T>, ServeError>>,
        encode: impl FnOnce(T) -> HttpResponse,
    ) -> HttpResponse {
        match self.run("REST", work).await {
            Ok(body) => self.span.in_scope(|| encode(body)),
            Err(e) => error_response(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text exposition's `ovms_requests_*` lines for `method` (each test its own method).
    fn request_lines(method: &str) -> Vec<String> {
        let label = format!("method=\"{method}\"");
        METRICS
            .render(&Registry::new())
            .lines()
            .filter(|l| l.starts_with("ovms_requests_") && l.contains(&label))
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn counted_calls_are_counted_with_the_answering_version() {
        let registry = Registry::new();
        let handling = Handling::new("HandlingTestCounted", "m", None, None);
        let answer = handling
            .counted(TFS, &registry)
            .grpc(async { Ok(Answer::new(7).by_version(3)) })
            .await
            .unwrap();
        assert_eq!(answer.into_inner(), 7);
        let lines = request_lines("HandlingTestCounted");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("ovms_requests_success{"), "{lines:?}");
        for label in [
            "api=\"TensorFlowServing\"",
            "interface=\"gRPC\"",
            "name=\"m\"",
            "version=\"3\"",
        ] {
            assert!(lines[0].contains(label), "{label} in {lines:?}");
        }
        assert!(lines[0].ends_with(" 1"), "{lines:?}");
    }

    #[tokio::test]
    async fn failures_get_their_code_and_unknown_models_no_series_of_their_own() {
        let registry = Registry::new();
        let status = Handling::new("HandlingTestFailed", "nosuch", None, None)
            .counted(KSERVE, &registry)
            .grpc(async {
                Err::<Answer<()>, _>(ServeError::ModelNotFound {
                    model: "nosuch".into(),
                })
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let lines = request_lines("HandlingTestFailed");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("ovms_requests_fail{"), "{lines:?}");
        assert!(lines[0].contains("name=\"(unknown)\""), "{lines:?}");

        let response = Handling::new("HandlingTestFailed", "nosuch", None, None)
            .rest(
                async { Err::<Answer<()>, _>(ServeError::invalid("bad")) },
                |_| HttpResponse::Ok().finish(),
            )
            .await;
        assert_eq!(response.status(), actix_web::http::StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn uncounted_calls_are_answered_and_not_counted() {
        let response = Handling::new("HandlingTestUncounted", "", None, None)
            .rest(async { Ok(Answer::new(201)) }, |code| {
                HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).finish()
            })
            .await;
        assert_eq!(response.status(), actix_web::http::StatusCode::CREATED);
        assert_eq!(request_lines("HandlingTestUncounted"), Vec::<String>::new());
    }
}
