//! One `tracing` span per request: method, model, version (once resolved), a request id, and
//! the W3C trace id when the client sent a `traceparent` header (HTTP) or metadata entry (gRPC).
//! The span travels with the job to the worker thread that runs the inference, so a request's
//! log lines can be followed from transport to worker (`--log_format json` writes the span's
//! fields on every line; `--log_level debug` adds one line per request and per inference).

use crate::error::Clip;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`), if well formed.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    valid.then_some(trace)
}

/// The span of one request. `id`: the client's own request id (KServe `id`), else a number of
/// this process's.
pub fn request_span(
    method: &'static str,
    model: &str,
    traceparent: Option<&str>,
    id: Option<&str>,
) -> tracing::Span {
    let id = match id.filter(|id| !id.is_empty()) {
        Some(id) => Clip(id).to_string(),
        None => NEXT_REQUEST.fetch_add(1, Ordering::Relaxed).to_string(),
    };
    let span = tracing::info_span!(
        "request",
        method,
        model = %Clip(model),
        version = tracing::field::Empty,
        request_id = %id,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace) = traceparent.and_then(trace_id) {
        span.record("trace_id", trace);
    }
    span
}

/// A gRPC request's `traceparent` metadata entry.
pub fn grpc_traceparent(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata.get("traceparent").and_then(|v| v.to_str().ok())
}

/// An HTTP request's `traceparent` header.
pub fn http_traceparent(request: &actix_web::HttpRequest) -> Option<&str> {
    request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
}

/// Records the version that answered, once known.
pub fn record_version(span: &tracing::Span, version: Option<u64>) {
    if let Some(version) = version {
        span.record("version", version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_as_w3c_defines_it() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(header), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }
}
