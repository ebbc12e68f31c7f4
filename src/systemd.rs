//! systemd integration: the `sd_notify` datagram protocol, spoken directly.
//!
//! When systemd starts the server with `Type=notify`, it passes `NOTIFY_SOCKET` (a path, or an
//! abstract socket name starting with `@`) and, with `WatchdogSec=`, `WATCHDOG_USEC`. The server
//! sends newline-separated `KEY=value` datagrams to that socket:
//!
//! - `STATUS=` while loading ("loading resnet v3 (2/5)"), then what serves; shown by
//!   `systemctl status`.
//! - `READY=1` once the initial load of the configured models has finished (failures included:
//!   a broken model must not keep the whole unit "activating" until its start timeout).
//! - `RELOADING=1` + `MONOTONIC_USEC=` on SIGHUP (`systemctl reload`), `READY=1` when applied.
//! - `STOPPING=1` when shutdown begins.
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, only while every published version's worker
//!   threads are alive. The pings come from a task on the control-plane event loop, so a stuck
//!   loop also stops them and systemd restarts the service.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op, so the same binary runs by hand or in a
//! container. Sending is best effort: a failed send is logged, never fatal.

use crate::serving::registry::{Registry, Snapshot, VersionState};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How often loading progress is read from the registry and, when it changed, sent as STATUS.
const PROGRESS_PERIOD: Duration = Duration::from_millis(200);

/// Talks to the service manager; cheap to clone. Disabled (all calls no-ops) without
/// `NOTIFY_SOCKET`.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    socket: UnixDatagram,
    target: SocketAddr,
    /// `WATCHDOG_USEC` as a duration, when systemd expects pings from this process.
    watchdog: Option<Duration>,
    /// The first READY=1 has been sent: a reload before that is part of start-up and must not
    /// announce RELOADING=1 (systemd would take the READY=1 that ends it as start-up complete).
    ready: AtomicBool,
    /// STOPPING=1 has been sent: a load finishing during shutdown must not say READY=1.
    stopping: AtomicBool,
}

impl Notifier {
    /// A notifier that sends nothing (not started by systemd, or in tests).
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// From the environment systemd sets for `Type=notify` services. An unusable
    /// `NOTIFY_SOCKET` is logged and leaves the notifier disabled.
    pub fn from_env() -> Notifier {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::disabled();
        };
        let socket = socket.to_string_lossy().into_owned();
        let watchdog = watchdog_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        match Notifier::connect(&socket, watchdog) {
            Ok(notifier) => notifier,
            Err(e) => {
                tracing::warn!(socket, error = %e, "NOTIFY_SOCKET unusable; not notifying systemd");
                Notifier::disabled()
            }
        }
    }

    /// A notifier sending to `socket`: a file system path, or `@name` for an abstract socket.
    pub fn connect(socket: &str, watchdog: Option<Duration>) -> std::io::Result<Notifier> {
        let target = match socket.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if socket.starts_with('/') => SocketAddr::from_pathname(socket)?,
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "expected an absolute path or @abstract-name",
                ))
            }
        };
        Ok(Notifier {
            inner: Some(Arc::new(Inner {
                socket: UnixDatagram::unbound()?,
                target,
                watchdog,
                ready: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
            })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends one datagram of `KEY=value` lines.
    fn send(&self, message: &str) {
        let Some(inner) = &self.inner else { return };
        if let Err(e) = inner.socket.send_to_addr(message.as_bytes(), &inner.target) {
            tracing::warn!(error = %e, message, "cannot notify systemd");
        }
    }

    /// `STATUS=`: one line for `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", one_line(text)));
    }

    /// Start-up: announces `what` and then reports loading progress until [`Loading::ready`].
    pub fn starting(&self, registry: Arc<Registry>, what: &str) -> Loading {
        self.status(what);
        Loading::new(self.clone(), registry)
    }

    /// A SIGHUP reload begins: `RELOADING=1` (with `MONOTONIC_USEC=`, which systemd ≥ 253
    /// needs to match the reload to this message), then progress until [`Loading::ready`].
    /// Before the first READY=1 this announces nothing: the start-up's READY=1 is still to come.
    pub fn reloading(&self, registry: Arc<Registry>) -> Loading {
        let announce = self.inner.as_ref().is_some_and(|i| {
            i.ready.load(Ordering::Acquire) && !i.stopping.load(Ordering::Acquire)
        });
        if !announce {
            return Loading::silent();
        }
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading config",
            monotonic_usec()
        ));
        Loading::new(self.clone(), registry)
    }

    /// Shutdown begins: `STOPPING=1`, and no READY=1 after it.
    pub fn stopping(&self, why: &str) {
        if let Some(inner) = &self.inner {
            inner.stopping.store(true, Ordering::Release);
        }
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(why)));
    }

    fn ready(&self, status: &str) {
        let Some(inner) = &self.inner else { return };
        if inner.stopping.load(Ordering::Acquire) {
            return;
        }
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
        inner.ready.store(true, Ordering::Release);
    }

    /// The ping interval systemd asked for (half of `WATCHDOG_USEC`), if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.inner.as_ref()?.watchdog.map(|w| w / 2)
    }

    /// With `WatchdogSec=`, pings systemd every half period on the current (actix) event loop
    /// for as long as the process lives. Pings start at once: the watchdog runs during start-up
    /// too, and loading big models can take longer than the watchdog period.
    pub fn spawn_watchdog(&self, registry: Arc<Registry>) {
        let Some(interval) = self.watchdog_interval() else {
            return;
        };
        let notifier = self.clone();
        actix_rt::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reported: Option<String> = None;
            loop {
                ticks.tick().await;
                match dead_workers(&registry.snapshot()) {
                    None => {
                        notifier.send("WATCHDOG=1");
                        reported = None;
                    }
                    // No ping: systemd's watchdog then restarts the service, which is the only
                    // repair for a version whose infer threads are gone (its requests would
                    // queue forever). Say why, once, where an operator looks.
                    Some(problem) => {
                        if reported.as_deref() != Some(&problem) {
                            tracing::error!(%problem, "worker threads died; withholding watchdog pings");
                            notifier.status(&format!("unhealthy: {problem}"));
                            reported = Some(problem);
                        }
                    }
                }
            }
        });
    }
}

/// A load phase (start-up or reload) reporting progress; [`Loading::ready`] ends it.
pub struct Loading {
    notifier: Notifier,
    registry: Option<Arc<Registry>>,
    /// Dropping it stops the progress task.
    _stop: Option<oneshot::Sender<()>>,
}

impl Loading {
    fn new(notifier: Notifier, registry: Arc<Registry>) -> Loading {
        if !notifier.is_enabled() {
            return Loading::silent();
        }
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task_notifier = notifier.clone();
        let task_registry = registry.clone();
        actix_rt::spawn(async move {
            let mut last = String::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(PROGRESS_PERIOD) => {}
                }
                let Some(text) = loading_status(&task_registry.snapshot()) else {
                    continue;
                };
                if text != last {
                    task_notifier.status(&text);
                    last = text;
                }
            }
        });
        Loading {
            notifier,
            registry: Some(registry),
            _stop: Some(stop),
        }
    }

    fn silent() -> Loading {
        Loading {
            notifier: Notifier::disabled(),
            registry: None,
            _stop: None,
        }
    }

    /// Stops the progress reports and sends `READY=1` with what serves now; `note` (e.g. a
    /// rejected reload) goes first in the status line.
    pub fn ready(self, note: Option<&str>) {
        let Some(registry) = &self.registry else {
            return;
        };
        let serving = serving_status(&registry.snapshot());
        let status = match note {
            Some(note) => format!("{note}; {serving}"),
            None => serving,
        };
        self.notifier.ready(&status);
    }
}

/// Progress of the versions being brought up, for STATUS=: "loading resnet v3 (2/5)".
///
/// Counts every version the model actors have taken on (waiting for files, loading, loaded or
/// failed); retired ones are not part of a load. `n/total` numbers the version being loaded.
/// `None` until some version is known: the caller's "loading N configured models" stands.
pub fn loading_status(models: &Snapshot) -> Option<String> {
    let mut names: Vec<&String> = models.keys().collect();
    names.sort();
    let (mut total, mut done) = (0, 0);
    let (mut loading, mut waiting) = (Vec::new(), Vec::new());
    for name in names {
        for v in models[name].versions.values() {
            match v.state {
                VersionState::Start => waiting.push(format!("{name} v{}", v.version)),
                VersionState::Loading => loading.push(format!("{name} v{}", v.version)),
                VersionState::Available => done += 1,
                VersionState::End if v.error.is_some() => done += 1,
                VersionState::Unloading | VersionState::End => continue,
            }
            total += 1;
        }
    }
    let first_and_more = |list: &[String]| match list.len() {
        1 => list[0].clone(),
        n => format!("{} and {} more", list[0], n - 1),
    };
    if total == 0 {
        return None;
    }
    Some(if !loading.is_empty() {
        format!(
            "loading {} ({}/{total})",
            first_and_more(&loading),
            done + 1
        )
    } else if !waiting.is_empty() {
        format!(
            "waiting for complete files: {} ({done}/{total} loaded)",
            first_and_more(&waiting)
        )
    } else {
        format!("loaded {done}/{total} versions")
    })
}

/// What serves, for the STATUS= that goes with READY=1.
pub fn serving_status(models: &Snapshot) -> String {
    let mut failed: Vec<String> = Vec::new();
    let mut available = 0;
    for (name, model) in models {
        for v in model.versions.values() {
            match v.state {
                VersionState::Available => available += 1,
                VersionState::End if v.error.is_some() => {
                    failed.push(format!("{name} v{}", v.version))
                }
                _ => {}
            }
        }
    }
    failed.sort();
    let failed = if failed.is_empty() {
        "none".to_string()
    } else {
        failed.join(", ")
    };
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "serving {}, {} AVAILABLE; failed: {failed}",
        count(models.len(), "model"),
        count(available, "version")
    )
}

/// The first published version whose worker threads have exited, described; `None` if every
/// pool is whole. Workers only exit once their queue is closed, which happens after the version
/// left the registry, so a dead worker of a published version is a crash.
pub fn dead_workers(models: &Snapshot) -> Option<String> {
    models.values().find_map(|model| {
        model.versions.values().find_map(|v| {
            let servable = v.servable.as_ref()?;
            let dead = servable.dead_workers();
            (dead > 0).then(|| {
                format!(
                    "model {} version {}: {dead} of {} worker threads exited",
                    model.name,
                    v.version,
                    servable.workers()
                )
            })
        })
    })
}

/// `WATCHDOG_USEC` applies to this process unless `WATCHDOG_PID` names another one.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC=` with.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass, which outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// A newline would end the STATUS= field and start a bogus key.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serving::registry::{ModelStatus, VersionStatus};

    fn model(name: &str, versions: &[(u64, VersionState, bool)]) -> (String, Arc<ModelStatus>) {
        let mut m = ModelStatus::new(name);
        for &(v, state, failed) in versions {
            let mut status = VersionStatus::new(v, state);
            status.error = failed.then(|| "broken".to_string());
            m.versions.insert(v, status);
        }
        (name.to_string(), Arc::new(m))
    }

    #[test]
    fn progress_names_the_version_being_loaded() {
        use VersionState::*;
        let snapshot: Snapshot = [
            model("add", &[(1, Available, false), (2, End, true)]),
            model("resnet", &[(3, Loading, false), (4, Start, false)]),
            model("old", &[(1, Unloading, false), (2, End, false)]),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            loading_status(&snapshot).as_deref(),
            Some("loading resnet v3 (3/4)")
        );
        assert_eq!(
            serving_status(&snapshot),
            "serving 3 models, 1 version AVAILABLE; failed: add v2"
        );
        let waiting: Snapshot = [model("resnet", &[(4, Start, false)])]
            .into_iter()
            .collect();
        assert_eq!(
            loading_status(&waiting).as_deref(),
            Some("waiting for complete files: resnet v4 (0/1 loaded)")
        );
        let two: Snapshot = [model("a", &[(1, Loading, false), (2, Loading, false)])]
            .into_iter()
            .collect();
        assert_eq!(
            loading_status(&two).as_deref(),
            Some("loading a v1 and 1 more (1/2)")
        );
        let registered: Snapshot = [model("a", &[])].into_iter().collect();
        assert_eq!(loading_status(&registered), None);
    }

    #[test]
    fn a_published_version_with_a_dead_worker_is_reported() {
        use crate::runtime::fake::{fake_load_spec, FakeBackend};
        use crate::serving::servable::{PoolSpec, Servable};
        let spec = fake_load_spec("m", 1);
        let load = |crash: bool| {
            // Worker 1's start-up panics when `crash`: that thread is gone, the version serves on.
            let setup: crate::serving::pool::ThreadSetup =
                Arc::new(move |i| assert!(!(crash && i == 1), "simulated crash"));
            let pool = PoolSpec {
                nireq: 2,
                queue_bound: 4,
                setup: Some(setup),
                inline_limit: None,
                batching: None,
            };
            Servable::load(&FakeBackend::default(), &spec, &pool, Box::new(|| {})).unwrap()
        };
        let published = |servable: Servable| -> Snapshot {
            let mut m = ModelStatus::new("m");
            let mut v = VersionStatus::new(1, VersionState::Available);
            v.servable = Some(Arc::new(servable));
            m.versions.insert(1, v);
            [("m".to_string(), Arc::new(m))].into_iter().collect()
        };
        let healthy = published(load(false));
        let crashed = published(load(true));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while dead_workers(&crashed).is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            dead_workers(&crashed).as_deref(),
            Some("model m version 1: 1 of 2 worker threads exited")
        );
        assert_eq!(dead_workers(&healthy), None);
    }

    #[test]
    fn watchdog_applies_to_this_process_only() {
        assert_eq!(
            watchdog_from(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_from(Some("500"), Some("7"), 7),
            Some(Duration::from_micros(500))
        );
        assert_eq!(watchdog_from(Some("500"), Some("8"), 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
    }

    #[test]
    fn sends_datagrams_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::connect(path.to_str().unwrap(), None).unwrap();
        notifier.status("loading\nresnet");
        notifier.stopping("bye");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=loading resnet");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=bye");

        let name = format!("vinoserve-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier::connect(&format!("@{name}"), None).unwrap();
        notifier.status("abstract");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=abstract");

        assert!(Notifier::connect("relative.sock", None).is_err());
        assert!(!Notifier::disabled().is_enabled());
        Notifier::disabled().status("goes nowhere");
    }

    #[test]
    fn monotonic_clock_is_the_kernels() {
        // /proc/uptime is CLOCK_BOOTTIME, which is never behind CLOCK_MONOTONIC.
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mono = monotonic_usec() as f64 / 1e6;
        assert!(mono > 0.0 && mono <= uptime + 1.0, "{mono} vs {uptime}");
    }
}
