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
