//! `vinoserve placement-worker`: the child process that runs one placement group's models.
//!
//! The server starts it with the group's CPU mask already applied (so OpenVINO, which reads the
//! process mask once when its CPU plugin starts, sizes and pins itself to those CPUs — see
//! docs/placement-experiments.md) and with the listening socket on descriptor 3. Here we bind
//! memory to the group's NUMA node before anything is allocated for a model, load OpenVINO, and
//! serve the `wire` protocol: one thread per connection; an executor's thread then takes its
//! requests from its `mailbox`.

use super::descriptor::{self, Slot};
use super::mailbox::{self, Mailbox, Message};
use super::shm::{self, Region};
use super::wire::{self, FromWorker, ToWorker};
use crate::config::WorkerArgs;
use crate::error::BackendError;
use crate::runtime::openvino::{library, OpenVinoBackend};
use crate::runtime::{Backend, Executor, LoadedModel};
use crate::serving::validate::ValidatedInputs;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the server puts the listening socket in the worker.
pub const LISTENER_FD: i32 = 3;

type Shared = Arc<Mutex<Box<dyn LoadedModel>>>;

struct Models {
    /// OpenVINO in a real worker; the fake backend in tests of the protocol.
    backend: Box<dyn Backend + Send + Sync>,
    loaded: Mutex<HashMap<u64, Shared>>,
    next_id: AtomicU64,
}

impl Models {
    fn new(backend: Box<dyn Backend + Send + Sync>) -> Models {
        Models {
            backend,
            loaded: Mutex::default(),
            next_id: AtomicU64::default(),
        }
    }
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
    let models = Arc::new(Models::new(Box::new(OpenVinoBackend)));
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
    let (first, fds) = match wire::recv::<ToWorker>(&stream) {
        Ok(Some(message)) => message,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "placement worker: unreadable first message");
            return;
        }
    };
    let result = match first {
        ToWorker::Load(spec) => hold_model(models, &stream, &spec),
        ToWorker::Attach { model } => run_executor(models, &stream, model, fds),
        ToWorker::InputRegion => Err(BackendError::Runtime(
            "input region before attach on a placement worker connection".into(),
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
    let loaded = models.backend.load(spec)?;
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

/// How long an executor thread polls for the server's next request after answering one before
/// it sleeps: a client that sends request after request (the case where the hop's cost shows)
/// finds it awake, and the CPUs it polls on are its model's own.
const SPIN_FOR_REQUEST: Duration = Duration::from_micros(100);

fn run_executor(
    models: &Models,
    stream: &UnixStream,
    id: u64,
    fds: Vec<OwnedFd>,
) -> Result<(), BackendError> {
    let mut mailbox = Mailbox::open(fds).map_err(runtime)?;
    let model = models
        .loaded
        .lock()
        .expect("models lock")
        .get(&id)
        .cloned()
        .ok_or_else(|| BackendError::Runtime(format!("no model {id} in this placement worker")))?;
    let executor = model.lock().expect("model lock").create_executor()?;
    wire::send(stream, &FromWorker::Attached, None).map_err(runtime)?;
    let mut session = Session {
        executor,
        inputs: None,
        outputs: None,
        outputs_shared: false,
        descriptor: Vec::new(),
        stream,
    };
    loop {
        let request = match mailbox.wait(stream.as_fd(), SPIN_FOR_REQUEST) {
            Ok(Some(request)) => request,
            // The server dropped the executor (or exited).
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "placement worker: executor mailbox failed");
                break;
            }
        };
        let answer = match session.handle(request) {
            Ok(answer) => answer,
            Err(e) => {
                if wire::send(stream, &FromWorker::Failed(e), None).is_err() {
                    break;
                }
                Message {
                    flags: mailbox::FAILED,
                    ..Message::default()
                }
            }
        };
        mailbox.post(answer);
    }
    // The infer request goes before the model it belongs to.
    drop(session);
    drop(model);
    Ok(())
}

/// One executor connection's state.
struct Session<'a> {
    executor: Box<dyn Executor>,
    inputs: Option<Arc<Region>>,
    outputs: Option<Region>,
    /// Whether the server has the current output region.
    outputs_shared: bool,
    /// The answer's descriptor, encoded here before it goes into the output region.
    descriptor: Vec<u8>,
    /// Where new regions and errors go, and the server's new input regions come from.
    stream: &'a UnixStream,
}

impl Session<'_> {
    /// Runs the request a message announces; the message that announces its answer.
    fn handle(&mut self, request: Message) -> Result<Message, BackendError> {
        if request.flags & mailbox::NEW_REGION != 0 {
            // Sent just before the request was posted: already waiting on the socket.
            let fd = match wire::recv::<ToWorker>(self.stream).map_err(runtime)? {
                Some((ToWorker::InputRegion, fds)) => fds.into_iter().next(),
                _ => None,
            }
            .ok_or_else(|| BackendError::Runtime("new input region without a descriptor".into()))?;
            self.inputs = Some(Arc::new(Region::open(fd).map_err(runtime)?));
        }
        let region = self
            .inputs
            .clone()
            .ok_or_else(|| BackendError::Runtime("request before any input region".into()))?;
        let described = usize::try_from(request.at)
            .ok()
            .zip(usize::try_from(request.len).ok())
            .and_then(|(at, len)| region.bytes().get(at..at.checked_add(len)?))
            .ok_or_else(|| {
                BackendError::Runtime(format!(
                    "request {}..+{} outside the {}-byte input region",
                    request.at,
                    request.len,
                    region.len()
                ))
            })?;
        let (inputs, outputs) = descriptor::decode_request(described, region.len())
            .map_err(|e| BackendError::Runtime(format!("request descriptor: {e}")))?;
        let tensors = inputs
            .into_iter()
            .map(|slot| input(&region, slot))
            .collect();
        // Outputs go from OpenVINO's tensors straight into shared memory.
        let mut appender = shm::Appender::new(&mut self.outputs);
        let mut slots = Vec::with_capacity(outputs.len());
        let ran = self.executor.infer_with(
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
        );
        self.descriptor.clear();
        descriptor::encode_slots(&slots, &mut self.descriptor);
        let at = ran.and_then(|()| appender.push(&self.descriptor).map_err(runtime));
        // A region replaced by a request that then failed is still new to the server.
        if appender.replaced() {
            self.outputs_shared = false;
        }
        let at = at?;
        let mut flags = 0;
        if !self.outputs_shared {
            let region = self.outputs.as_ref().expect("the appender made one");
            wire::send(self.stream, &FromWorker::OutputRegion, Some(region.fd()))
                .map_err(runtime)?;
            self.outputs_shared = true;
            flags |= mailbox::NEW_REGION;
        }
        Ok(Message {
            flags,
            at: at as u64,
            len: self.descriptor.len() as u64,
        })
    }
}

/// A tensor whose bytes stay in the shared region (no copy before OpenVINO's own); the
/// descriptor's decoding checked that the slot lies inside the region.
fn input(region: &Arc<Region>, slot: Slot) -> Tensor {
    let bytes = bytes::Bytes::from_owner(SharedSlice {
        region: region.clone(),
        offset: slot.offset,
        len: slot.len,
    });
    Tensor::raw(slot.dtype, slot.shape, bytes)
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

#[cfg(test)]
mod tests;
