//! `vinoserve placement-worker`: the child process that runs one placement group's models.
//!
//! The server starts it with the group's CPU mask already applied (so OpenVINO, which reads the
//! process mask once when its CPU plugin starts, sizes and pins itself to those CPUs — see
//! docs/placement-experiments.md) and with the listening socket on descriptor 3. Here we bind
//! memory to the group's NUMA node before anything is allocated for a model, load OpenVINO, and
//! serve the `wire` protocol: one thread per connection.

use super::shm::{self, Region};
use super::wire::{self, FromWorker, Slot, ToWorker};
use crate::config::WorkerArgs;
use crate::error::BackendError;
use crate::runtime::openvino::{library, OpenVinoBackend};
use crate::runtime::{Backend, Executor, LoadedModel};
use crate::serving::validate::ValidatedInputs;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::os::fd::FromRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where the server puts the listening socket in the worker.
pub const LISTENER_FD: i32 = 3;

type Shared = Arc<Mutex<Box<dyn LoadedModel>>>;

#[derive(Default)]
struct Models {
    loaded: Mutex<HashMap<u64, Shared>>,
    next_id: AtomicU64,
}

pub fn run(args: &WorkerArgs) -> ExitCode {
    // systemd's stop signals the whole cgroup and a terminal's Ctrl-C the whole process group:
    // a worker that died with them would fail the requests the server is still draining. It
    // leaves when the server does (PR_SET_PDEATHSIG) or closes its connections.
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: setting a signal to SIG_IGN installs no handler code.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    crate::memory::tune_malloc(args.malloc_arena_max, args.malloc_trim_threshold_mib);
    crate::telemetry::init(&args.log_level, &args.log_format);
    let allowed = super::affinity::current_cpus();
    tracing::info!(group = %args.group, cpus = %crate::topology::cpu_list(&allowed), pid = std::process::id(), "placement worker starting");
    if let Some(node) = args.node {
        match super::affinity::bind_memory(node) {
            Ok(()) => tracing::info!(group = %args.group, node, "memory bound to NUMA node"),
            Err(e) => tracing::warn!(group = %args.group, node, error = %e,
                "cannot bind memory to the NUMA node (the kernel or a sandbox refused); allocations follow the default policy"),
        }
    }
    if let Err(e) = library::load(args.openvino_lib.as_deref()) {
        eprintln!("vinoserve placement worker: {e}");
        return ExitCode::from(3);
    }
    // SAFETY: the server dup2'ed its listening socket to this descriptor before exec, and
    // nothing else in this process owns it.
    let listener = unsafe { UnixListener::from_raw_fd(LISTENER_FD) };
    if let Err(e) = listener.local_addr() {
        eprintln!(
            "vinoserve placement worker: descriptor {LISTENER_FD} is not the server's socket ({e}); \
             workers are started by `vinoserve --topology`, not by hand"
        );
        return ExitCode::from(2);
    }
    let models = Arc::new(Models::default());
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or an aborted connection: transient, but do not spin.
                tracing::error!(error = %e, "placement worker: accept failed");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        let models = models.clone();
        let spawned = std::thread::Builder::new()
            .name("pw-conn".into())
            .spawn(move || serve_connection(&models, stream));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "placement worker: cannot spawn a connection thread");
        }
    }
    ExitCode::SUCCESS
}

fn serve_connection(models: &Models, stream: UnixStream) {
    let first = match wire::recv::<ToWorker>(&stream) {
        Ok(Some((message, _))) => message,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "placement worker: unreadable first message");
            return;
        }
    };
    let result = match first {
        ToWorker::Load(spec) => hold_model(models, &stream, &spec),
        ToWorker::Attach { model } => run_executor(models, &stream, model),
        ToWorker::Infer { .. } => Err(BackendError::Runtime(
            "infer before attach on a placement worker connection".into(),
        )),
    };
    if let Err(e) = result {
        let _ = wire::send(&stream, &FromWorker::Failed(e), None);
    }
}

/// Loads the version and keeps it until the server closes this connection.
fn hold_model(
    models: &Models,
    stream: &UnixStream,
    spec: &crate::runtime::LoadSpec,
) -> Result<(), BackendError> {
    let loaded = OpenVinoBackend.load(spec)?;
    let id = models.next_id.fetch_add(1, Ordering::Relaxed);
    let reply = FromWorker::Loaded {
        model: id,
        signature: loaded.signature().clone(),
        properties: loaded.properties(),
        optimal_infer_requests: loaded.optimal_infer_requests(),
    };
    models
        .loaded
        .lock()
        .expect("models lock")
        .insert(id, Arc::new(Mutex::new(loaded)));
    tracing::info!(model = %spec.model, version = spec.version, id, "loaded in placement worker");
    if wire::send(stream, &reply, None).is_ok() {
        // The server sends nothing more on this connection; its close is the unload.
        while let Ok(Some(_)) = wire::recv::<ToWorker>(stream) {}
    }
    let removed = models.loaded.lock().expect("models lock").remove(&id);
    drop(removed);
    crate::memory::give_memory_back();
    tracing::info!(model = %spec.model, version = spec.version, id, "unloaded from placement worker");
    Ok(())
}

fn run_executor(models: &Models, stream: &UnixStream, id: u64) -> Result<(), BackendError> {
    let model = models
        .loaded
        .lock()
        .expect("models lock")
        .get(&id)
        .cloned()
        .ok_or_else(|| BackendError::Runtime(format!("no model {id} in this placement worker")))?;
    let executor = model.lock().expect("model lock").create_executor()?;
    wire::send(stream, &FromWorker::Attached, None)
        .map_err(|e| BackendError::Runtime(e.to_string()))?;
    let mut session = Session {
        executor,
        inputs: None,
        outputs: None,
    };
    loop {
        let (message, fd) = match wire::recv::<ToWorker>(stream) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "placement worker: executor connection failed");
                break;
            }
        };
        let (reply, fd) = match session.handle(message, fd) {
            Ok((reply, fd)) => (reply, fd),
            Err(e) => (FromWorker::Failed(e), None),
        };
        if wire::send(stream, &reply, fd).is_err() {
            break;
        }
    }
    // The infer request goes before the model it belongs to.
    drop(session);
    drop(model);
    Ok(())
}

/// One executor connection's state.
struct Session {
    executor: Box<dyn Executor>,
    inputs: Option<Arc<Region>>,
    outputs: Option<Region>,
}

impl Session {
    fn handle(
        &mut self,
        message: ToWorker,
        fd: Option<std::os::fd::OwnedFd>,
    ) -> Result<(FromWorker, Option<std::os::fd::RawFd>), BackendError> {
        let ToWorker::Infer {
            inputs,
            outputs,
            new_region,
        } = message
        else {
            return Err(BackendError::Runtime("only Infer may follow Attach".into()));
        };
        if new_region {
            let fd = fd.ok_or_else(|| {
                BackendError::Runtime("new input region without a descriptor".into())
            })?;
            self.inputs = Some(Arc::new(Region::open(fd).map_err(runtime)?));
        }
        let tensors = inputs
            .into_iter()
            .map(|slot| self.input(slot))
            .collect::<Result<Vec<_>, _>>()?;
        // Outputs go from OpenVINO's tensors straight into shared memory.
        let mut appender = shm::Appender::new(&mut self.outputs);
        let mut slots = Vec::with_capacity(outputs.len());
        self.executor.infer_with(
            &ValidatedInputs::trusted(tensors),
            &outputs,
            &mut |dtype, shape, bytes| {
                let offset = appender.push(bytes).map_err(runtime)?;
                slots.push(Slot {
                    dtype,
                    shape: shape.to_vec(),
                    offset,
                    len: bytes.len(),
                });
                Ok(())
            },
        )?;
        let new_region = appender.replaced();
        let fd = match (&self.outputs, new_region) {
            (Some(region), true) => Some(region.fd()),
            _ => None,
        };
        let reply = FromWorker::Outputs {
            tensors: slots,
            new_region,
        };
        Ok((reply, fd))
    }

    /// A tensor whose bytes stay in the shared region (no copy before OpenVINO's own).
    fn input(&self, slot: Slot) -> Result<Tensor, BackendError> {
        let region = self
            .inputs
            .clone()
            .ok_or_else(|| BackendError::Runtime("input before any input region".into()))?;
        if slot
            .offset
            .checked_add(slot.len)
            .is_none_or(|end| end > region.len())
        {
            return Err(BackendError::Runtime(format!(
                "input {}..+{} outside the {}-byte region",
                slot.offset,
                slot.len,
                region.len()
            )));
        }
        let bytes = bytes::Bytes::from_owner(SharedSlice {
            region,
            offset: slot.offset,
            len: slot.len,
        });
        Ok(Tensor::raw(slot.dtype, slot.shape, bytes))
    }
}

/// A window of a shared region, kept mapped while a tensor points into it.
struct SharedSlice {
    region: Arc<Region>,
    offset: usize,
    len: usize,
}

impl AsRef<[u8]> for SharedSlice {
    fn as_ref(&self) -> &[u8] {
        &self.region.bytes()[self.offset..self.offset + self.len]
    }
}

fn runtime(e: std::io::Error) -> BackendError {
    BackendError::Runtime(e.to_string())
}
