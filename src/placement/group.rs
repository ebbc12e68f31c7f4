//! One placement group: the models that share a CPU set, served by one supervised worker process.
//!
//! The server keeps the group's listening socket (abstract namespace, so nothing to clean up and
//! nothing for ProtectSystem= to forbid) for its whole life; every incarnation of the worker
//! inherits it as descriptor 3. Connections made while a worker restarts wait in the backlog.
//!
//! A group the plan no longer uses is retired: its worker is stopped once the last model
//! instance loaded in it is dropped (each holds a [`Lease`]), so requests draining on the old
//! placement finish there.

use super::affinity;
use super::remote::Endpoint;
use super::worker::LISTENER_FD;
use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What to pass on to every worker's command line.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub openvino_lib: Option<std::path::PathBuf>,
    pub log_level: String,
    pub log_format: String,
    pub malloc_arena_max: usize,
    pub malloc_trim_threshold_mib: usize,
}

/// Told which models lost their instances when a worker died (they must be loaded again).
pub type RestartHook = Box<dyn Fn(Vec<String>) + Send + Sync>;

#[derive(Default)]
struct State {
    pid: Option<u32>,
    restarts: u64,
    /// Models that have loaded (or tried to) in this group.
    models: BTreeSet<String>,
    /// Model instances loaded in this group and not yet dropped.
    leases: usize,
    /// The plan no longer uses this group: stop the worker when `leases` reaches 0.
    retired: bool,
    /// The worker was stopped for good; the supervisor does not restart it.
    stopped: bool,
}

pub struct WorkerGroup {
    pub name: String,
    pub node: usize,
    pub cpus: Vec<usize>,
    endpoint: Endpoint,
    listener: UnixListener,
    state: Mutex<State>,
    on_restart: OnceLock<RestartHook>,
}

/// A worker that dies within `STABLE` of starting waits before its restart, 1 s at first and
/// twice as long each time up to `MAX_BACKOFF`: a model that crashes OpenVINO on load would
/// otherwise restart and reload it in a tight loop. A worker that ran longer restarts at once.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const STABLE: Duration = Duration::from_secs(10);

/// The wait before the next restart, and the backoff after it.
fn next_backoff(lived: Duration, backoff: Duration) -> (Duration, Duration) {
    if lived >= STABLE {
        (Duration::ZERO, FIRST_BACKOFF)
    } else {
        (backoff, (backoff * 2).min(MAX_BACKOFF))
    }
}

/// Distinguishes the sockets of successive groups with the same name (a group retired while a
/// new one for the same CPUs starts).
static SOCKET_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Held by each model instance loaded in a group; the last one dropped stops a retired group.
pub struct Lease(Arc<WorkerGroup>);

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().expect("group state");
        state.leases -= 1;
        if state.retired && state.leases == 0 {
            self.0.stop(&mut state);
        }
    }
}

impl WorkerGroup {
    /// Binds the group's socket and starts its supervisor (which starts the worker).
    pub fn start(
        name: String,
        node: usize,
        cpus: Vec<usize>,
        settings: WorkerSettings,
    ) -> io::Result<Arc<WorkerGroup>> {
        let serial = SOCKET_SERIAL.fetch_add(1, Ordering::Relaxed);
        let socket = format!("vinoserve-{}-{name}-{serial}", std::process::id());
        let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&socket)?)?;
        let group = Arc::new(WorkerGroup {
            endpoint: Endpoint {
                group: name.clone(),
                socket,
            },
            name,
            node,
            cpus,
            listener,
            state: Mutex::new(State::default()),
            on_restart: OnceLock::new(),
        });
        let supervised = group.clone();
        // The supervisor thread is the workers' parent for their whole life: PR_SET_PDEATHSIG
        // fires when the forking thread ends, so it must be a thread that never returns early.
        std::thread::Builder::new()
            .name(format!("pw-{}", group.name))
            .spawn(move || supervised.supervise(&settings))?;
        Ok(group)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn set_restart_hook(&self, hook: RestartHook) {
        let _ = self.on_restart.set(hook);
    }

    /// Counts a model instance loaded here, until the lease is dropped.
    pub fn lease(self: &Arc<Self>) -> Lease {
        self.state.lock().expect("group state").leases += 1;
        Lease(self.clone())
    }

    /// The plan no longer uses this group: stop its worker once no instance needs it.
    pub fn retire(&self) {
        let mut state = self.state.lock().expect("group state");
        state.retired = true;
        if state.leases == 0 {
            self.stop(&mut state);
        }
    }

    /// The plan uses this group again before its worker stopped: keep it.
    pub fn reinstate(&self) -> bool {
        let mut state = self.state.lock().expect("group state");
        state.retired = false;
        !state.stopped
    }

    pub fn stopped(&self) -> bool {
        self.state.lock().expect("group state").stopped
    }

    /// Kills the worker; the supervisor sees `stopped` and ends instead of restarting it.
    fn stop(&self, state: &mut State) {
        if state.stopped {
            return;
        }
        state.stopped = true;
        tracing::info!(group = %self.name, pid = state.pid, "placement group retired; stopping its worker");
        if let Some(pid) = state.pid {
            // SAFETY: plain syscall; the pid is our child, not yet reaped (the supervisor
            // clears it under this lock after waiting).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    pub fn note_model(&self, model: &str) {
        self.state
            .lock()
            .expect("group state")
            .models
            .insert(model.to_string());
    }

    /// The current worker's pid (None while it restarts) and how often it was restarted.
    pub fn worker(&self) -> (Option<u32>, u64) {
        let state = self.state.lock().expect("group state");
        (state.pid, state.restarts)
    }

    fn supervise(&self, settings: &WorkerSettings) {
        let mut restarted = false;
        let mut backoff = FIRST_BACKOFF;
        loop {
            if self.stopped() {
                return;
            }
            let started = Instant::now();
            let mut child = match self.spawn(settings) {
                Ok(child) => child,
                Err(e) => {
                    tracing::error!(group = %self.name, error = %e, retry_in_s = backoff.as_secs(), "cannot start placement worker");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            tracing::info!(group = %self.name, pid = child.id(), node = self.node,
                cpus = %crate::topology::cpu_list(&self.cpus), "placement worker started");
            let models = {
                let mut state = self.state.lock().expect("group state");
                state.pid = Some(child.id());
                if state.stopped {
                    // Retired while this worker was being started.
                    let _ = child.kill();
                }
                state.models.iter().cloned().collect::<Vec<_>>()
            };
            if restarted && !models.is_empty() {
                if let Some(hook) = self.on_restart.get() {
                    hook(models);
                }
            }
            let status = child.wait();
            {
                let mut state = self.state.lock().expect("group state");
                state.pid = None;
                if state.stopped {
                    tracing::info!(group = %self.name, "placement worker stopped");
                    return;
                }
                state.restarts += 1;
            }
            crate::metrics::METRICS
                .placement_worker_restarts
                .with_label_values(&[&self.name])
                .inc();
            let (wait, next) = next_backoff(started.elapsed(), backoff);
            tracing::error!(group = %self.name, status = ?status, restart_in_ms = wait.as_millis() as u64,
                "placement worker exited; restarting it and reloading its models");
            std::thread::sleep(wait);
            backoff = next;
            restarted = true;
        }
    }

    fn spawn(&self, settings: &WorkerSettings) -> io::Result<std::process::Child> {
        // The running binary itself, even after an upgrade replaced (or removed) its file: a
        // worker restarted then must be the server's own version, and a path to a deleted file
        // cannot be executed at all.
        let mut command = Command::new("/proc/self/exe");
        if let Ok(exe) = std::env::current_exe() {
            command.arg0(exe);
        }
        command
            .arg("placement-worker")
            .args(["--group", &self.name])
            .args(["--node", &self.node.to_string()])
            .args(["--log_level", &settings.log_level])
            .args(["--log_format", &settings.log_format])
            .args(["--malloc_arena_max", &settings.malloc_arena_max.to_string()])
            .args([
                "--malloc_trim_threshold_mib",
                &settings.malloc_trim_threshold_mib.to_string(),
            ])
            .stdin(Stdio::null());
        if let Some(lib) = &settings.openvino_lib {
            command.arg("--openvino_lib").arg(lib);
        }
        let listener = self.listener.as_raw_fd();
        let cpus = self.cpus.clone();
        // SAFETY: between fork and exec only async-signal-safe calls run: dup2/fcntl, prctl,
        // sched_setaffinity (the Vec was allocated before the fork).
        unsafe {
            command.pre_exec(move || {
                if listener == LISTENER_FD {
                    if libc::fcntl(listener, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(listener, LISTENER_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                affinity::set_cpus(&cpus)
            });
        }
        command.spawn()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loops_back_off_and_stable_workers_restart_at_once() {
        let second = Duration::from_secs(1);
        assert_eq!(
            next_backoff(second, FIRST_BACKOFF),
            (FIRST_BACKOFF, 2 * second)
        );
        assert_eq!(next_backoff(second, 2 * second), (2 * second, 4 * second));
        assert_eq!(
            next_backoff(second, MAX_BACKOFF),
            (MAX_BACKOFF, MAX_BACKOFF)
        );
        assert_eq!(
            next_backoff(STABLE, MAX_BACKOFF),
            (Duration::ZERO, FIRST_BACKOFF)
        );
    }
}
