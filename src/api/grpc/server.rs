//! The gRPC server: `--grpc_workers` threads, each running tonic on an async runtime of its own
//! and serving the connections it accepts from the one shared listener.
//!
//! One single-threaded runtime per thread rather than one multi-threaded runtime: a request's
//! tasks (its connection, its stream, its answer) then never change threads. On a shared
//! multi-threaded runtime they are spread over the workers, and each hand-over wakes a sleeping
//! sibling thread; measured on the 2-vCPU dev VM with the `add` model at one client, p50 87 µs
//! with one thread vs 120–149 µs with two sharing a runtime. Connections spread over the threads
//! as they are accepted, which is how gRPC clients spread load anyway (a channel's requests share
//! one connection, whose frames one task reads whichever way the runtime is built).

use crate::api::grpc::accept;
use crate::api::grpc::linger::LingeringStream;
use crate::api::grpc::{deadline::DeadlineLayer, meta, send_watch::SendWatchLayer};
use crate::api::kserve::grpc::KServeGrpc;
use crate::api::tfs::grpc::TfsGrpc;
use crate::config::ServeArgs;
use crate::control::manager::ModelManager;
use crate::control::readiness::Readiness;
use crate::proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::proto::tensorflow::serving::model_service_server::ModelServiceServer;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use crate::serving::registry::Registry;
use actix::Addr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// The running gRPC server: its address, its stop switch, and the signal that it has stopped.
pub struct GrpcServer {
    pub addr: SocketAddr,
    pub stop: oneshot::Sender<()>,
    pub done: oneshot::Receiver<()>,
}

/// What every serving thread builds its services from.
#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    manager: Addr<ModelManager>,
    readiness: Arc<Readiness>,
    max_message_size: usize,
    limits: accept::Limits,
    /// HTTP/2 streams one connection may have open at once (advertised in SETTINGS).
    max_streams: u32,
    keepalive: Duration,
}

/// Binds the listener and starts the serving threads ("grpc") and their supervisor
/// ("grpc-main"), which reports `done` once every thread has drained its connections.
pub fn start(
    args: &ServeArgs,
    listener: std::net::TcpListener,
    registry: Arc<Registry>,
    manager: Addr<ModelManager>,
    readiness: Arc<Readiness>,
) -> std::io::Result<GrpcServer> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Shared {
        registry,
        manager,
        readiness,
        max_message_size: args.max_message_size,
        limits: accept::Limits::new(
            args.max_connections,
            Duration::from_secs(args.handshake_timeout_seconds),
            Duration::from_secs(args.send_timeout_seconds),
        ),
        max_streams: args.http2_max_concurrent_streams,
        keepalive: Duration::from_secs(args.http2_keepalive_seconds),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let (stop_all, stop_seen) = watch::channel(false);
    let (finished, done) = oneshot::channel::<()>();
    let mut threads = Vec::new();
    for _ in 0..args.grpc_workers.max(1) {
        let listener = listener.try_clone()?;
        let (shared, stop_seen) = (shared.clone(), stop_seen.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        threads.push(
            std::thread::Builder::new()
                .name("grpc".into())
                .spawn(move || runtime.block_on(serve(listener, shared, stop_seen)))?,
        );
    }
    std::thread::Builder::new()
        .name("grpc-main".into())
        .spawn(move || {
            // The one stop switch reaches every thread; each then drains its own connections.
            if stopped.blocking_recv().is_ok() {
                let _ = stop_all.send(true);
            }
            for thread in threads {
                let _ = thread.join();
            }
            let _ = finished.send(());
        })?;
    Ok(GrpcServer { addr, stop, done })
}

/// One thread's server: every service, on the connections this thread accepts.
async fn serve(listener: std::net::TcpListener, shared: Shared, stop: watch::Receiver<bool>) {
    let limit = shared.max_message_size;
    let kserve = KServeGrpc::new(shared.registry.clone(), shared.readiness.clone());
    let service = TfsGrpc::new(shared.registry, shared.manager);
    let health = meta::health_service(shared.readiness).await;
    let (reflection, reflection_v1alpha) = match meta::reflection_services() {
        Ok(services) => services,
        Err(e) => {
            tracing::error!(error = %e, "cannot build gRPC reflection");
            return;
        }
    };
    let incoming = match incoming(listener, shared.limits.clone(), stopped(stop)) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the gRPC listener");
            return;
        }
    };
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // Tensors are large: with HTTP/2's default 64 KiB-1 MiB windows a 9.6 MB batch-16
        // request waits on a dozen WINDOW_UPDATE round trips; windows sized from the measured
        // bandwidth-delay product avoid that.
        .http2_adaptive_window(Some(true))
        // Bounded per connection: a client cannot open streams without limit, and a peer that
        // went away without closing is found by PINGs that stay unanswered.
        .max_concurrent_streams(Some(shared.max_streams))
        .http2_keepalive_interval(Some(shared.keepalive))
        .http2_keepalive_timeout(Some(shared.keepalive))
        .layer(DeadlineLayer)
        // Answers held back by HTTP/2 flow control for `--send_timeout_seconds` close their
        // connection (src/api/grpc/send_watch.rs).
        .layer(SendWatchLayer)
        .add_service(
            PredictionServiceServer::new(service.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            ModelServiceServer::new(service)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            GrpcInferenceServiceServer::new(kserve)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        // The stop switch ends `incoming` instead (see there); a shutdown future is still given
        // because it is what makes tonic drain the connections (GOAWAY, then wait for their
        // requests) once `incoming` has ended.
        .serve_with_incoming_shutdown(incoming, std::future::pending::<()>())
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

/// Resolves once the stop switch is on (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|&on| on).await;
}

/// The listener's connections for tonic until `stop` fires; then the connections the kernel has
/// already queued, accepted without waiting; then the end of the stream, which closes this
/// thread's copy of the listener (tonic then sends GOAWAY on every connection and waits for their
/// requests).
///
/// Closing a listening socket resets the connections still in its accept queue, and their
/// clients may have sent a request already: a load balancer that opened one just before the
/// stop cannot retry that request elsewhere (nginx keeps no gRPC request bodies), so it would
/// fail. Accepted, they drain like the others. Connections after the close are refused, which
/// balancers do retry on another instance.
fn incoming(
    listener: std::net::TcpListener,
    limits: accept::Limits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl futures::Stream<Item = std::io::Result<LingeringStream>>> {
    /// More than any accept queue (Linux caps them at `net.core.somaxconn`, 4096 by default),
    /// so that a flood of connections cannot hold the shutdown.
    const QUEUED_AT_MOST: usize = 4096;
    // The same socket, non-blocking like `listener`: accepts without the reactor's readiness.
    let queued = listener.try_clone()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let state = (listener, queued, Some(Box::pin(stop)), 0);
    Ok(futures::stream::unfold(
        state,
        move |(listener, queued, stop, drained)| {
            let limits = limits.clone();
            async move {
                if let Some(mut stop) = stop {
                    tokio::select! {
                        biased;
                        _ = &mut stop => {}
                        accepted = accept::accept(&listener, &limits) => {
                            return Some((accepted, (listener, queued, Some(stop), 0)));
                        }
                    }
                }
                if drained == QUEUED_AT_MOST {
                    return None;
                }
                // The first error (normally WouldBlock: the queue is empty) ends the stream.
                let (stream, _) = queued.accept().ok()?;
                let next = stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(stream))
                    .and_then(|stream| accept::prepare(stream, limits.send_timeout));
                Some((next, (listener, queued, None, drained + 1)))
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::net::TcpStream;

    #[tokio::test]
    async fn incoming_hands_over_the_queued_connections_after_the_stop_then_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let stopped = async {
            let _ = stopped.await;
        };
        let limits = accept::Limits::new(100, Duration::from_secs(60), Duration::from_secs(60));
        let mut incoming = std::pin::pin!(incoming(listener, limits, stopped).unwrap());

        let _served = TcpStream::connect(addr).unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());

        // The kernel completes these handshakes; nothing accepts them before the stop.
        let _queued: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        stop.send(()).unwrap();
        for _ in 0..5 {
            let accepted = incoming.next().await.unwrap().unwrap();
            assert!(accepted.nodelay().unwrap());
        }
        assert!(incoming.next().await.is_none());
        // The end of the stream closed the listener: later clients are refused at once.
        let refused = TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
