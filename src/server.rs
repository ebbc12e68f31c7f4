//! Assembles the server: registry + actors, the gRPC runtime, the REST server, and shutdown.
//!
//! Shutdown order: stop accepting, let in-flight requests finish (bounded by the drain timeout),
//! retire every version, let workers drain and join.

use crate::api::rest::body::{BodyLimit, BodyTimeout, JsonLimit};
use crate::api::rest::routes::only;
use crate::api::{grpc, kserve, rest, tfs};
use crate::config::{ServeArgs, ServerConfig};
use crate::control::manager::{
    ApplyConfig, ModelManager, RebuildModels, ReloadConfig, RetireEverything, Sources,
};
use crate::control::model_actor::ActorDefaults;
use crate::control::readiness::Readiness;
use crate::placement::Placement;
use crate::runtime::Backend;
use crate::serving::registry::Registry;
use crate::systemd::Notifier;
use actix::{Actor, Addr};
use actix_web::http::Method;
use actix_web::{web, App, HttpServer};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Binds a listening socket; the error names the address, and what it was for.
fn bind(what: &str, address: &str, port: u16) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind((address, port)).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for {what} on {address}:{port}: {e}"),
        )
    })
}

/// Whether an error from [`serve`] is the operator's configuration (an address that cannot be
/// bound), rather than a failure of the server.
pub fn is_configuration_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{AddrInUse, AddrNotAvailable, PermissionDenied};
    matches!(
        error.kind(),
        AddrInUse | AddrNotAvailable | PermissionDenied
    )
}

fn start_rest(
    args: &ServeArgs,
    listener: std::net::TcpListener,
    registry: Arc<Registry>,
    manager: Addr<ModelManager>,
    readiness: Arc<Readiness>,
    placement: Option<Arc<Placement>>,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let limit = args.max_message_size;
    let placement = web::Data::new(placement);
    let registry = web::Data::new(registry);
    let manager = web::Data::new(manager);
    let readiness = web::Data::new(readiness);
    let metrics_enabled = args.metrics_enable;
    let body_timeout = BodyTimeout(Duration::from_secs(args.body_timeout_seconds));
    let json_limit = JsonLimit(args.max_json_body_size);
    let send_timeout = Duration::from_secs(args.send_timeout_seconds);
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(registry.clone())
            .app_data(manager.clone())
            .app_data(readiness.clone())
            .app_data(placement.clone())
            .app_data(BodyLimit(limit))
            .app_data(body_timeout)
            .app_data(json_limit)
            .service(only("/v1/placement", Method::GET, placement_status))
            .service(only("/v1/config", Method::GET, rest::config::get_config))
            .service(only(
                "/v1/config/reload",
                Method::POST,
                rest::config::reload,
            ))
            // Every method: which one a path takes depends on its suffix (`:predict` is POST).
            // TFS REST bodies are all JSON: their budget applies before they are read.
            .service(
                web::resource("/v1/models/{tail:.*}")
                    .app_data(BodyLimit(json_limit.0.min(limit)))
                    .route(web::route().to(tfs::rest::models)),
            )
            .configure(kserve::rest::routes);
        let app = if metrics_enabled {
            app.service(only("/metrics", Method::GET, metrics_text))
        } else {
            app
        };
        app.default_service(web::to(tfs::rest::not_found))
    })
    .on_connect(move |connection, _| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            if let Err(e) = crate::api::grpc::accept::set_send_timeout(tcp, send_timeout) {
                tracing::warn!(error = %e, "cannot set the send timeout of a REST connection");
            }
        }
    })
    .workers(args.rest_workers.max(1))
    // actix counts connections per worker thread.
    .max_connections((args.max_connections / args.rest_workers.max(1)).max(1))
    .keep_alive(Duration::from_secs(args.keep_alive_seconds))
    .disable_signals()
    .shutdown_timeout(args.drain_timeout_seconds)
    .listen(listener)?;
    let addr = server.addrs()[0];
    Ok((addr, server.run()))
}

/// `GET /v1/placement`: the plan in force and each group's worker process.
async fn placement_status(placement: web::Data<Option<Arc<Placement>>>) -> actix_web::HttpResponse {
    match placement.get_ref() {
        Some(p) => actix_web::HttpResponse::Ok().json(p.status()),
        None => actix_web::HttpResponse::NotFound().json(serde_json::json!({
            "error": "no topology file (--topology): every model runs unplaced in the server process"
        })),
    }
}

/// `GET /metrics`: the Prometheus text format.
async fn metrics_text(registry: web::Data<Arc<Registry>>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::METRICS.render(registry.get_ref()))
}

/// The service's signals, installed before anything listens: a SIGTERM that arrives as soon as
/// the ports are open must start a drain, not kill the process.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT, reloading the config on every SIGHUP meanwhile (announced
    /// to systemd as RELOADING=1 … READY=1).
    async fn until_terminated(&mut self, server: &RunningServer) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading config");
                    let reload = server.notifier.reloading(server.registry.clone());
                    match server.manager.send(ReloadConfig).await {
                        Ok(Ok(outcome)) => {
                            tracing::info!(changed = outcome.changed, "config reloaded");
                            reload.ready(None);
                        }
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "config reload rejected; nothing changed");
                            reload.ready(Some("config reload rejected, see the log"));
                        }
                        Err(_) => reload.ready(None),
                    }
                }
            }
        }
    }
}

/// During the drain, a second SIGTERM or SIGINT means "now": exit at once, with status 1 because
/// requests in flight are abandoned.
fn exit_on_second_signal(mut signals: Signals) {
    actix_rt::spawn(async move {
        tokio::select! {
            _ = signals.term.recv() => {}
            _ = signals.int.recv() => {}
        }
        tracing::warn!("second termination signal: exiting without finishing requests in flight");
        std::process::exit(1);
    });
}

/// What the server starts with, read and validated before it starts.
pub struct Startup {
    pub models: ServerConfig,
    /// `--enable_batching`'s parameters, for every model that sets none.
    pub default_batching: Option<crate::config::batching::Batching>,
}

/// A started server: its addresses and what it takes to stop it.
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    pub rest_addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub manager: Addr<ModelManager>,
    readiness: Arc<Readiness>,
    notifier: Notifier,
    grpc: grpc::server::GrpcServer,
    rest: actix_web::dev::ServerHandle,
    rest_task: actix_rt::task::JoinHandle<std::io::Result<()>>,
    drain: Duration,
    /// Resolves when the initial load of the configured models has finished.
    loaded: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl RunningServer {
    /// Waits until every configured model has loaded or failed (the start-up summary).
    pub async fn loaded(&mut self) {
        if let Some(loaded) = self.loaded.take() {
            let _ = loaded.await;
        }
    }

    /// Stops accepting, lets in-flight requests finish (bounded by `--drain_timeout_seconds`),
    /// then retires every version; `why` names the cause in the log.
    pub async fn shutdown(self, why: &str) {
        self.readiness.mark_stopping();
        self.notifier
            .stopping(&format!("{why}: draining requests in flight"));
        tracing::info!(
            cause = why,
            "shutting down: no new connections; finishing requests in flight"
        );
        let _ = self.grpc.stop.send(());
        let grpc_done = async {
            let _ = self.grpc.done.await;
        };
        let rest_done = self.rest.stop(true);
        if tokio::time::timeout(self.drain, futures::future::join(grpc_done, rest_done))
            .await
            .is_err()
        {
            tracing::warn!(
                seconds = self.drain.as_secs(),
                "drain timeout: exiting with requests still in flight"
            );
        }
        let _ = self.rest_task.await;
        let _ = self.manager.send(RetireEverything).await;
        tracing::info!("stopped");
    }
}

/// Starts the server (both ports, the model manager, the initial load) and returns once it
/// listens. Must run inside an actix `System`. Tests start it in-process on the fake backend.
pub async fn start(
    args: ServeArgs,
    startup: Startup,
    backend: Arc<dyn Backend>,
    placement: Option<Arc<Placement>>,
    notifier: Notifier,
) -> std::io::Result<RunningServer> {
    // Both ports first: an address that cannot be bound is reported before anything starts.
    let grpc_listener = bind("gRPC", &args.grpc_bind_address, args.port)?;
    let rest_listener = bind("REST", &args.rest_bind_address, args.rest_port)?;
    let registry = Arc::new(Registry::new());
    let pools = ActorDefaults {
        queue_bound: args.queue_bound,
        inline_limit: (args.inline_inference_us > 0)
            .then(|| Duration::from_micros(args.inline_inference_us)),
        settle: Duration::from_millis(args.file_settle_ms),
    };
    let sources = Sources {
        default_batching: startup.default_batching,
        config_file: args.config_path.clone(),
        poll: (args.file_system_poll_wait_seconds > 0)
            .then(|| Duration::from_secs(args.file_system_poll_wait_seconds)),
    };
    let manager =
        ModelManager::new(backend, registry.clone(), pools, sources, placement.clone()).start();
    if let Some(placement) = &placement {
        let manager = manager.clone();
        placement.on_worker_restart(move |models| manager.do_send(RebuildModels(models)));
    }
    let readiness = Arc::new(Readiness::new(registry.clone(), args.readiness));
    let grpc = grpc::server::start(
        &args,
        grpc_listener,
        registry.clone(),
        manager.clone(),
        readiness.clone(),
    )?;
    let (rest_addr, rest) = start_rest(
        &args,
        rest_listener,
        registry.clone(),
        manager.clone(),
        readiness.clone(),
        placement,
    )?;
    let rest_handle = rest.handle();
    let rest_task = actix_rt::spawn(rest);
    // Machine-readable lines (tests and scripts read the bound ports from them).
    println!("vinoserve: gRPC listening on {}", grpc.addr);
    println!("vinoserve: REST listening on {rest_addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(grpc = %grpc.addr, rest = %rest_addr, "listening");

    notifier.spawn_watchdog(registry.clone());
    let loading = notifier.starting(
        registry.clone(),
        &format!("loading {} configured models", startup.models.models.len()),
    );
    let initial = manager.send(ApplyConfig(startup.models));
    let started = readiness.clone();
    let (loaded, loaded_rx) = tokio::sync::oneshot::channel();
    actix_rt::spawn(async move {
        let reports = initial.await.unwrap_or_default();
        started.mark_started();
        loading.ready(None);
        let failed: Vec<_> = reports
            .iter()
            .filter(|(_, r)| !r.failed.is_empty())
            .map(|(m, _)| m.as_str())
            .collect();
        tracing::info!(models = reports.len(), ?failed, "initial load finished");
        println!(
            "vinoserve: models loaded ({} configured, failures in: {:?})",
            reports.len(),
            failed
        );
        let _ = std::io::stdout().flush();
        let _ = loaded.send(());
    });
    Ok(RunningServer {
        grpc_addr: grpc.addr,
        rest_addr,
        registry,
        manager,
        readiness,
        notifier,
        grpc,
        rest: rest_handle,
        rest_task,
        drain: Duration::from_secs(args.drain_timeout_seconds),
        loaded: Some(loaded_rx),
    })
}

/// Runs the server until SIGTERM / SIGINT. Must run inside an actix `System`.
pub async fn serve(
    args: ServeArgs,
    startup: Startup,
    backend: Arc<dyn Backend>,
    placement: Option<Arc<Placement>>,
    notifier: Notifier,
) -> std::io::Result<()> {
    let mut signals = Signals::install()?;
    let server = start(args, startup, backend, placement, notifier).await?;
    let which = signals.until_terminated(&server).await;
    exit_on_second_signal(signals);
    server.readiness.mark_stopping();
    // Machine-readable, like the listening lines: tests wait for it instead of guessing how
    // long the signal takes to arrive.
    println!("vinoserve: {which} received; draining requests in flight");
    let _ = std::io::stdout().flush();
    server.shutdown(which).await;
    Ok(())
}
