//! Assembles the server: registry + actors, the gRPC runtime, the REST server, and shutdown.
//!
//! Shutdown order: stop accepting, let in-flight requests finish (bounded by the drain timeout),
//! retire every version, let workers drain and join.

use crate::api::tfs_grpc::TfsGrpc;
use crate::api::tfs_rest;
use crate::config::{ServeArgs, ServerConfig};
use crate::model::manager::{ApplyConfig, ModelManager, RetireEverything};
use crate::model::model_actor::PoolDefaults;
use crate::model::registry::Registry;
use crate::proto::tensorflow::serving::model_service_server::ModelServiceServer;
use crate::proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use crate::runtime::Backend;
use actix::Actor;
use actix_web::{web, App, HttpServer};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The running gRPC server: its address, its stop switch, and the thread that runs it.
struct GrpcServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
}

fn start_grpc(args: &ServeArgs, registry: Arc<Registry>) -> std::io::Result<GrpcServer> {
    let listener = std::net::TcpListener::bind((args.grpc_bind_address.as_str(), args.port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let limit = args.max_message_size;
    let workers = args.grpc_workers.max(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let (finished, done) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("grpc")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("grpc-main".into())
        .spawn(move || {
            runtime.block_on(async move {
                let service = TfsGrpc::new(registry);
                let incoming = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => tokio_stream::wrappers::TcpListenerStream::new(l),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot use the gRPC listener");
                        return;
                    }
                };
                let result = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
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
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = result {
                    tracing::error!(error = %e, "gRPC server failed");
                }
            });
            let _ = finished.send(());
        })?;
    Ok(GrpcServer { addr, stop, done })
}

fn start_rest(
    args: &ServeArgs,
    registry: Arc<Registry>,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let limit = args.max_message_size;
    let data = web::Data::new(registry);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(limit))
            .route("/v1/models/{tail:.*}", web::get().to(tfs_rest::models))
            .route("/v1/models/{tail:.*}", web::post().to(tfs_rest::models))
            .default_service(web::to(tfs_rest::not_found))
    })
    .workers(args.rest_workers.max(1))
    .disable_signals()
    .shutdown_timeout(args.drain_timeout_seconds)
    .bind((args.rest_bind_address.as_str(), args.rest_port))?;
    let addr = server.addrs()[0];
    Ok((addr, server.run()))
}

/// Resolves on SIGTERM or SIGINT.
async fn termination_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Runs the server until SIGTERM / SIGINT. Must run inside an actix `System`.
pub async fn serve(
    args: ServeArgs,
    config: ServerConfig,
    backend: Arc<dyn Backend>,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::new());
    let manager = ModelManager::new(
        backend,
        registry.clone(),
        PoolDefaults {
            queue_bound: args.queue_bound,
        },
    )
    .start();
    let signal = termination_signal();
    let grpc = start_grpc(&args, registry.clone())?;
    let (rest_addr, rest) = start_rest(&args, registry.clone())?;
    let rest_handle = rest.handle();
    let rest_task = actix_rt::spawn(rest);
    // Machine-readable lines (tests and scripts read the bound ports from them).
    println!("vinoserve: gRPC listening on {}", grpc.addr);
    println!("vinoserve: REST listening on {rest_addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(grpc = %grpc.addr, rest = %rest_addr, "listening");

    let load = manager.send(ApplyConfig(config));
    tokio::pin!(signal);
    let which = tokio::select! {
        reports = load => {
            let reports = reports.unwrap_or_default();
            let failed: Vec<_> = reports.iter().filter(|(_, r)| !r.failed.is_empty()).map(|(m, _)| m.as_str()).collect();
            tracing::info!(models = reports.len(), ?failed, "initial load finished");
            println!("vinoserve: models loaded ({} configured, failures in: {:?})", reports.len(), failed);
            let _ = std::io::stdout().flush();
            signal.await?
        }
        which = &mut signal => which?,
    };

    tracing::info!(
        signal = which,
        "shutting down: no new connections; finishing requests in flight"
    );
    let drain = Duration::from_secs(args.drain_timeout_seconds);
    let _ = grpc.stop.send(());
    let grpc_done = async {
        let _ = grpc.done.await;
    };
    let rest_done = rest_handle.stop(true);
    if tokio::time::timeout(drain, futures::future::join(grpc_done, rest_done))
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = drain.as_secs(),
            "drain timeout: exiting with requests still in flight"
        );
    }
    let _ = rest_task.await;
    let _ = manager.send(RetireEverything).await;
    tracing::info!("stopped");
    Ok(())
}
