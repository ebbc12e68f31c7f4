//! The REST request body, read within `--body_timeout_seconds`: a client that announces a body
//! and then sends it a byte a second would otherwise hold a connection (and its buffer) forever.

use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a whole request body may take to arrive (app data; 60 s when absent).
#[derive(Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// The request body, or why it could not be read (too large: 413; too slow: 408; cut: 400).
pub struct Body(pub Result<web::Bytes, actix_web::Error>);

impl FromRequest for Body {
    type Error = Infallible;
    type Future = LocalBoxFuture<'static, Result<Body, Infallible>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let timeout = request
            .app_data::<BodyTimeout>()
            .map_or(Duration::from_secs(60), |t| t.0);
        let read = web::Bytes::from_request(request, payload);
        Box::pin(async move {
            Ok(Body(match tokio::time::timeout(timeout, read).await {
                Ok(result) => result,
                Err(_) => Err(actix_web::error::ErrorRequestTimeout(format!(
                    "the body did not arrive within {} s (--body_timeout_seconds)",
                    timeout.as_secs()
                ))),
            }))
        })
    }
}

/// The JSON budget (`--max_json_body_size`), as app data for the REST handlers.
#[derive(Clone, Copy)]
pub struct JsonLimit(pub usize);

/// A 413 when a request's JSON is over the budget.
pub fn json_too_large(size: usize, limit: usize) -> actix_web::HttpResponse {
    actix_web::HttpResponse::PayloadTooLarge().json(serde_json::json!({
        "error": format!(
            "The request's JSON is {size} bytes; the limit is {limit} (--max_json_body_size). \
             Send large tensors in binary: gRPC, or KServe's binary-data extension"
        )
    }))
}

/// Bodies from this size on are followed by a `malloc_trim` (see [`give_memory_back`]).
pub const TRIM_AFTER_BODY_BYTES: usize = 1 << 20;

/// After a large REST body, hands what decoding and inference freed back to the OS. Blocks of
/// `--malloc_trim_threshold_mib` or more are unmapped when freed anyway; this returns the free
/// pages of smaller ones that glibc keeps in the middle of the heap and in other threads' arenas.
/// Off the REST threads: a trim walks every arena. One at a time: a trim that starts while
/// another runs would find little left to return.
pub async fn give_memory_back(body_len: usize) {
    static TRIMMING: AtomicBool = AtomicBool::new(false);
    if body_len >= TRIM_AFTER_BODY_BYTES && !TRIMMING.swap(true, Ordering::AcqRel) {
        // Cleared by the trim itself: it runs even if this future is dropped.
        let _ = web::block(|| {
            crate::memory::give_memory_back();
            TRIMMING.store(false, Ordering::Release);
        })
        .await;
    }
}
