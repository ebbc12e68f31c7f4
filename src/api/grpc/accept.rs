//! Accepting gRPC connections within limits: at most `--max_connections` open at once (beyond
//! it new ones wait in the kernel's accept queue), a first byte within
//! `--handshake_timeout_seconds`, and no busy loop when the process is out of file descriptors
//! (EMFILE): accepting backs off and says so once per interval, while the connections already
//! open keep being served. Every accepted socket (gRPC and REST) gets the send timeout: a
//! client that stops reading its answers is disconnected once data waits that long; on gRPC
//! connections also one that stops granting HTTP/2 window (`send_watch`).

use crate::api::grpc::linger::LingeringStream;
use crate::api::grpc::send_watch::SendWatch;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long accepting pauses after the process ran out of descriptors.
const BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this interval about failed accepts.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Limits {
    pub connections: Arc<Semaphore>,
    pub handshake: Duration,
    pub send_timeout: Duration,
}

impl Limits {
    pub fn new(max_connections: usize, handshake: Duration, send_timeout: Duration) -> Limits {
        Limits {
            connections: Arc::new(Semaphore::new(max_connections.max(1))),
            handshake,
            send_timeout,
        }
    }
}

/// The longest data written to `socket` may stay unacknowledged, including while the peer
/// advertises a zero window because it stopped reading (TCP_USER_TIMEOUT: the kernel then
/// resets the connection and every pending write fails, which frees what the server held for
/// that client). Zero leaves the kernel's default (retransmissions for ~15 minutes, and zero
/// window probes without end).
pub fn set_send_timeout(socket: &impl std::os::fd::AsRawFd, timeout: Duration) -> io::Result<()> {
    let millis = libc::c_uint::try_from(timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: plain setsockopt on a descriptor the caller owns, with a c_uint option value.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&millis as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accepts the next connection within `limits`; errors other than running out of resources
/// are returned.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    limits: &Limits,
) -> io::Result<LingeringStream> {
    let permit = limits
        .connections
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                return Ok(prepare(stream, limits.send_timeout)?
                    .with_permit(permit)
                    .with_handshake_timeout(limits.handshake));
            }
            Err(e) if out_of_resources(&e) => {
                note_failed_accept(&e);
                tokio::time::sleep(BACKOFF).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// An accepted connection as tonic gets it.
pub fn prepare(
    stream: tokio::net::TcpStream,
    send_timeout: Duration,
) -> io::Result<LingeringStream> {
    // tonic applies `.tcp_nodelay` only to listeners it binds itself; without NODELAY, small
    // replies can wait ~40 ms for delayed ACKs.
    stream.set_nodelay(true)?;
    set_send_timeout(&stream, send_timeout)?;
    let peer = stream.peer_addr().ok();
    let stream = LingeringStream::new(stream);
    // The same timeout for answers HTTP/2 flow control holds back, which TCP does not see.
    Ok(if send_timeout.is_zero() {
        stream
    } else {
        stream.with_send_watch(Arc::new(SendWatch::new(send_timeout, peer)))
    })
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the next accept fails the same way until something closes.
pub fn out_of_resources(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

static FAILED_ACCEPTS: AtomicU64 = AtomicU64::new(0);
static LAST_LOG: Mutex<Option<Instant>> = Mutex::new(None);

fn note_failed_accept(error: &io::Error) {
    let failed = FAILED_ACCEPTS.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = LAST_LOG.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|at| at.elapsed() >= LOG_INTERVAL) {
        *last = Some(Instant::now());
        FAILED_ACCEPTS.store(0, Ordering::Relaxed);
        tracing::error!(
            error = %error, failed_accepts = failed,
            "cannot accept gRPC connections (raise LimitNOFILE, or lower --max_connections); \
             new connections wait, open ones are served; next report in {} s",
            LOG_INTERVAL.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What TCP_USER_TIMEOUT does for a peer that stops reading: writes fail with a timeout
    /// once data has waited that long (zero-window probes included), instead of never.
    #[tokio::test]
    async fn a_peer_that_stops_reading_times_out_the_writer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let limits = Limits::new(1, Duration::from_secs(60), Duration::from_millis(500));
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut served = accept(&listener, &limits).await.unwrap();
        let chunk = vec![0u8; 1 << 16];
        let error = loop {
            if let Err(e) = served.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(error.raw_os_error(), Some(libc::ETIMEDOUT), "{error}");
        drop(client);
    }
}
