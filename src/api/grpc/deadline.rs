//! gRPC deadlines (`grpc-timeout`): a request that runs out of time answers DEADLINE_EXCEEDED, and
//! its job is skipped by the worker instead of being run for nobody.
//!
//! tonic also reads `grpc-timeout`, but answers CANCELLED when it fires. Ours (a layer inside
//! tonic's) fires a little earlier, so clients see the code the gRPC spec asks for.

use crate::api::status::to_status;
use crate::error::ServeError;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// How much before the client's own timer ours fires: a tenth of the allowed time, between 2 and
/// 50 ms, so the answer can still travel back before the client gives up.
fn margin(allowed: Duration) -> Duration {
    (allowed / 10)
        .clamp(Duration::from_millis(2), Duration::from_millis(50))
        .min(allowed / 2)
}

/// Parses `grpc-timeout` (`<digits><unit>`, unit one of H M S m u n; at most 8 digits).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The deadline error for a request that was allowed `allowed` and has waited since `since`.
fn exceeded(allowed: Duration, since: Instant) -> ServeError {
    ServeError::DeadlineExceeded {
        allowed_ms: allowed.as_millis() as u64,
        waited_ms: since.elapsed().as_millis() as u64,
    }
}

/// Runs `work` until `since + allowed` (minus the margin). Dropping `work` on expiry drops the
/// reply channel, which is how a queued job learns that nobody waits for it any more.
pub async fn within<T>(
    allowed: Duration,
    since: Instant,
    work: impl Future<Output = T>,
) -> Result<T, ServeError> {
    let end = since + allowed - margin(allowed);
    tokio::time::timeout_at(end.into(), work)
        .await
        .map_err(|_| exceeded(allowed, since))
}

/// A tower layer enforcing `grpc-timeout` from the moment a request arrives, covering the time
/// its body takes to arrive and decode as well as queueing and inference.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct DeadlineService<S> {
    inner: S,
}

type Answer = http::Response<tonic::body::Body>;

impl<S, B> tower::Service<http::Request<B>> for DeadlineService<S>
where
    S: tower::Service<http::Request<B>, Response = Answer>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Answer;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let arrival = Instant::now();
        let allowed = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let answer = self.inner.call(request);
        Box::pin(async move {
            match allowed {
                None => answer.await,
                Some(allowed) => match within(allowed, arrival, answer).await {
                    Ok(answer) => answer,
                    Err(e) => Ok(to_status(&e).into_http()),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_junk() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("100u"), Some(Duration::from_micros(100)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "12", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn expiry_answers_deadline_exceeded_and_drops_the_work() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let work = async move {
            let _keep = tx;
            tokio::time::sleep(Duration::from_secs(5)).await;
        };
        let e = within(Duration::from_millis(20), Instant::now(), work)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ServeError::DeadlineExceeded { allowed_ms: 20, .. }),
            "{e}"
        );
        assert!(
            rx.await.is_err(),
            "the work (and its reply channel) was dropped"
        );
        assert_eq!(
            within(Duration::from_secs(5), Instant::now(), async { 7 })
                .await
                .unwrap(),
            7
        );
    }
}
