//! The send timeout for answers HTTP/2 flow control holds back: a gRPC client whose window stays
//! closed (it stops reading at the HTTP/2 level while its TCP stack keeps acknowledging and it
//! answers PINGs) is disconnected after `--send_timeout_seconds`, like a client that stops
//! reading at the TCP level (TCP_USER_TIMEOUT, see `accept`).
//!
//! How it is seen: hyper pipes a response body into h2 and polls the body for its next frame
//! only once h2 gave the stream send capacity beyond what it already buffers for it. An answer
//! body not polled for a while is one its client takes nothing of ([`WatchedBody`] hands the
//! answer out in slices, so that "nothing" means "less than one slice").
//!
//! How it is timed: each connection has one [`SendWatch`], shared by its stream (which it
//! stops) and its answer bodies (which tell it when they wait). A watchdog task per connection
//! runs only while some answer waits or waited recently: started by the first body that waits,
//! it sleeps until the oldest wait could be overdue, and ends when it finds nothing waiting.
//! Idle connections cost nothing; a busy one, a wake-up per timeout.
//!
//! How it stops the connection: the stream's reads fail (`TimedOut`), so hyper and h2 end the
//! connection and drop its streams, which frees the answers they held.

use crate::api::grpc::watched_body::WatchedBody;
use futures::task::AtomicWaker;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What tonic hands each request of a connection (`Connected::ConnectInfo`, in the request's
/// extensions): the TCP addresses, and the connection's send watch. Note: tonic's
/// `Request::remote_addr()` looks for a bare `TcpConnectInfo`; read `tcp` here instead.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub tcp: tonic::transport::server::TcpConnectInfo,
    /// None when the send timeout is off (`--send_timeout_seconds 0`).
    pub send_watch: Option<Arc<SendWatch>>,
}

/// One connection's send timeout: the answers waiting on their client, and the switch that
/// ends the connection.
#[derive(Debug)]
pub struct SendWatch {
    timeout: Duration,
    peer: Option<SocketAddr>,
    aborted: AtomicBool,
    /// The connection's reader, woken to fail once aborted.
    reader: AtomicWaker,
    waiting: Mutex<Waiting>,
}

/// Since when each waiting answer waits (slots reused through `free`), and whether the
/// watchdog runs.
#[derive(Debug, Default)]
struct Waiting {
    since: Vec<Option<Instant>>,
    free: Vec<usize>,
    watchdog: bool,
}

impl SendWatch {
    pub fn new(timeout: Duration, peer: Option<SocketAddr>) -> SendWatch {
        SendWatch {
            timeout,
            peer,
            aborted: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            waiting: Mutex::new(Waiting::default()),
        }
    }

    /// For the connection's reader: whether to fail, registering to be woken when it must.
    pub fn poll_aborted(&self, cx: &Context<'_>) -> bool {
        self.reader.register(cx.waker());
        self.aborted.load(Ordering::Acquire)
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// An answer starts waiting for its client; returns its slot for [`SendWatch::stop_waiting`].
    /// Starts the watchdog if none runs.
    pub fn start_waiting(self: &Arc<Self>) -> usize {
        let (slot, start_watchdog) = self.start_waiting_at(Instant::now());
        if start_watchdog {
            tokio::spawn(watchdog(self.clone()));
        }
        slot
    }

    /// The slot, and whether the caller must start the watchdog.
    fn start_waiting_at(&self, now: Instant) -> (usize, bool) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match waiting.free.pop() {
            Some(slot) => {
                waiting.since[slot] = Some(now);
                slot
            }
            None => {
                waiting.since.push(Some(now));
                waiting.since.len() - 1
            }
        };
        let start_watchdog = !waiting.watchdog;
        waiting.watchdog = true;
        (slot, start_watchdog)
    }

    pub fn stop_waiting(&self, slot: usize) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.since[slot] = None;
        waiting.free.push(slot);
    }

    #[cfg(test)]
    pub fn waiting_is_empty(&self) -> bool {
        let waiting = self.waiting.lock().unwrap();
        waiting.since.iter().all(Option::is_none)
    }

    /// What the watchdog does at `now`; `Stop` also marks it stopped.
    fn verdict(&self, now: Instant) -> Verdict {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let Some(oldest) = waiting.since.iter().flatten().min().copied() else {
            waiting.watchdog = false;
            return Verdict::Stop;
        };
        let waited = now.saturating_duration_since(oldest);
        if waited >= self.timeout {
            Verdict::Abort(waited)
        } else {
            Verdict::SleepUntil(oldest + self.timeout)
        }
    }

    fn abort(&self, waited: Duration) {
        self.aborted.store(true, Ordering::Release);
        crate::metrics::METRICS.grpc_send_timeouts.inc();
        tracing::warn!(
            peer = %self.peer.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
            waited_ms = waited.as_millis() as u64,
            "closing a gRPC connection: its client took less than 1 MiB of an answer within \
             --send_timeout_seconds ({} s; HTTP/2 flow control held the answer back)",
            self.timeout.as_secs_f64()
        );
        self.reader.wake();
    }
}

#[derive(Debug, PartialEq)]
enum Verdict {
    /// No answer waits: the watchdog ends (the next answer to wait starts another).
    Stop,
    /// The oldest answer waited this long, at least the timeout: close the connection.
    Abort(Duration),
    /// Look again when the oldest answer would be overdue.
    SleepUntil(Instant),
}

/// Sleeps until the oldest waiting answer could be overdue, then closes the connection if it
/// is; ends when no answer waits, or once the connection is closed.
async fn watchdog(watch: Arc<SendWatch>) {
    let mut wake_at = Instant::now() + watch.timeout;
    loop {
        tokio::time::sleep_until(wake_at.into()).await;
        match watch.verdict(Instant::now()) {
            Verdict::Stop => return,
            Verdict::Abort(waited) => return watch.abort(waited),
            Verdict::SleepUntil(at) => wake_at = at,
        }
    }
}

/// A tower layer giving each answer body the connection's send watch ([`WatchedBody`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SendWatchLayer;

impl<S> tower::Layer<S> for SendWatchLayer {
    type Service = SendWatchService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SendWatchService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct SendWatchService<S> {
    inner: S,
}

type Answer = http::Response<tonic::body::Body>;

impl<S, B> tower::Service<http::Request<B>> for SendWatchService<S>
where
    S: tower::Service<http::Request<B>, Response = Answer>,
{
    type Response = Answer;
    type Error = S::Error;
    type Future = Watched<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let watch = request
            .extensions()
            .get::<ConnectionInfo>()
            .and_then(|info| info.send_watch.clone());
        Watched {
            answer: self.inner.call(request),
            watch,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's answer, its body watched once it is ready.
    pub struct Watched<F> {
        #[pin]
        answer: F,
        watch: Option<Arc<SendWatch>>,
    }
}

impl<F, E> Future for Watched<F>
where
    F: Future<Output = Result<Answer, E>>,
{
    type Output = Result<Answer, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        let answer = std::task::ready!(me.answer.poll(cx))?;
        Poll::Ready(Ok(match me.watch.take() {
            Some(watch) => answer.map(|body| tonic::body::Body::new(WatchedBody::new(body, watch))),
            None => answer,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_oldest_wait_decides_and_a_moving_answer_does_not_cover_a_stuck_one() {
        let watch = SendWatch::new(SECOND, None);
        let t0 = Instant::now();
        assert_eq!(watch.start_waiting_at(t0), (0, true));
        let (moving, start_watchdog) = watch.start_waiting_at(t0 + ms(400));
        assert!(!start_watchdog, "one watchdog per connection");
        assert_eq!(
            watch.verdict(t0 + ms(999)),
            Verdict::SleepUntil(t0 + SECOND)
        );
        watch.stop_waiting(moving);
        assert_eq!(
            watch.start_waiting_at(t0 + ms(900)).0,
            moving,
            "slots are reused"
        );
        assert_eq!(watch.verdict(t0 + ms(1001)), Verdict::Abort(ms(1001)));
    }

    #[test]
    fn answers_that_keep_moving_never_abort_and_the_watchdog_stops_when_none_waits() {
        let watch = SendWatch::new(SECOND, None);
        let t0 = Instant::now();
        let mut at = t0;
        for _ in 0..10 {
            let (slot, _) = watch.start_waiting_at(at);
            at += ms(900);
            assert_eq!(watch.verdict(at), Verdict::SleepUntil(at + ms(100)));
            watch.stop_waiting(slot);
        }
        assert_eq!(watch.verdict(at + 10 * SECOND), Verdict::Stop);
        assert!(watch.start_waiting_at(at).1, "a new watchdog after Stop");
    }

    /// The watchdog fires on its own (nobody polls the answer) and wakes the connection's
    /// reader, which then fails.
    #[tokio::test]
    async fn the_watchdog_closes_the_connection_of_an_answer_that_waits_too_long() {
        let watch = Arc::new(SendWatch::new(ms(50), None));
        let _slot = watch.start_waiting();
        let reader = std::future::poll_fn(|cx| {
            if watch.poll_aborted(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("the reader was woken as aborted");
    }
}
