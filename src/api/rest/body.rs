//! The REST request body, read within `--body_timeout_seconds`: a client that announces a body
//! and then sends it a byte a second would otherwise hold a connection (and its buffer) forever.
//!
//! Read into one buffer of the announced `Content-Length`, reserved up front: actix's own
//! extractor starts at 8 KiB and doubles, and each doubling of a large body copies all of it and
//! faults in a fresh buffer twice its size in one go (for a 100 MB body, tens of milliseconds at
//! a time) on the REST thread that also answers other connections. The reservation is address
//! space until the bytes arrive, and is only tried (a refused one falls back to growing).

use actix_web::dev::Decompress;
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a whole request body may take to arrive (app data; 60 s when absent).
#[derive(Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// The most bytes a request body may have, after decompression (app data; 256 KiB when absent,
/// as actix's `PayloadConfig`).
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The request body, or why it could not be read (too large: 413; too slow: 408; cut: 400).
pub struct Body(pub Result<web::Bytes, actix_web::Error>);

impl FromRequest for Body {
    type Error = Infallible;
    type Future = LocalBoxFuture<'static, Result<Body, Infallible>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let timeout = request
            .app_data::<BodyTimeout>()
            .map_or(Duration::from_secs(60), |t| t.0);
        let limit = request
            .app_data::<BodyLimit>()
            .map_or(256 << 10, |limit| limit.0);
        let read = read_body(request, payload, limit);
        Box::pin(async move {
            Ok(Body(match tokio::time::timeout(timeout, read).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(actix_web::error::ErrorRequestTimeout(format!(
                    "the body did not arrive within {} s (--body_timeout_seconds)",
                    timeout.as_secs()
                ))),
            }))
        })
    }
}

/// The whole body (decompressed as its `Content-Encoding` says), with the errors actix's
/// `Bytes` extractor gives: `Overflow` (413) over `limit`, `UnknownLength` for a
/// `Content-Length` that is not a number.
fn read_body(
    request: &HttpRequest,
    payload: &mut actix_web::dev::Payload,
    limit: usize,
) -> impl std::future::Future<Output = Result<web::Bytes, PayloadError>> + 'static {
    let headers = request.headers();
    let length = headers.get(CONTENT_LENGTH).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|text| text.parse::<usize>().ok())
            .ok_or(PayloadError::UnknownLength)
    });
    // Compressed bodies are larger than announced: those grow as they arrive.
    let identity = headers
        .get(CONTENT_ENCODING)
        .is_none_or(|encoding| encoding.as_bytes().eq_ignore_ascii_case(b"identity"));
    let mut stream = Decompress::from_headers(payload.take(), headers);
    async move {
        let announced = length.transpose()?;
        if announced.is_some_and(|length| length > limit) {
            return Err(PayloadError::Overflow);
        }
        let mut buffer = Vec::new();
        if let (Some(length), true) = (announced, identity) {
            // Refused only when the address space is short: then grow as actix would.
            let _ = buffer.try_reserve_exact(length);
        }
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if buffer.len() + chunk.len() > limit {
                return Err(PayloadError::Overflow);
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(web::Bytes::from(buffer))
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
