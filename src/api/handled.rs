//! What every request handler shares, whatever its protocol and transport: its work runs inside
//! the request's span, the version that answered is recorded in the span, and the call is
//! counted in the metrics with its latency. A handler then reads as decode → call → encode.

use crate::api::trace::record_version;
use crate::error::ServeError;
use crate::metrics::{Call, METRICS};
use crate::serving::registry::Registry;
use std::future::Future;
use std::time::Instant;
use tracing::Instrument;

/// Runs `work` (its result, and the version that answered when one did) in `span`, then counts
/// it as `call` for `model` (`None`: not counted, e.g. a path that names no model).
pub async fn handled<T>(
    call: Call,
    model: Option<(&str, &Registry)>,
    span: tracing::Span,
    work: impl Future<Output = (Result<T, ServeError>, Option<u64>)>,
) -> Result<T, ServeError> {
    let started = Instant::now();
    let (result, version) = work.instrument(span.clone()).await;
    record_version(&span, version);
    // The metrics' debug line belongs to the request too.
    let _entered = span.enter();
    if let Some(model) = model {
        METRICS.observe_request(call, model, version, result.is_ok(), started.elapsed());
    }
    result
}
