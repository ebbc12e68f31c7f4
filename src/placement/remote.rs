//! The server's side of a model loaded in a placement worker: a [`LoadedModel`] and its
//! [`Executor`]s that forward to the worker, so pools, swaps and metrics work unchanged.

use super::descriptor::{self, Slot};
use super::mailbox::{self, Mailbox, Message};
use super::shm::{self, Region};
use super::wire::{self, FromWorker, ToWorker};
use crate::error::BackendError;
use crate::runtime::{Executor, LoadSpec, LoadedModel};
use crate::serving::validate::ValidatedInputs;
use crate::tensor::{DataType, Signature, Tensor};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How the server reaches one worker process (stable across the worker's restarts).
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Shown in errors: which group's worker failed.
    pub group: String,
    /// Abstract-namespace socket name (Linux): no file to create, clean up or sandbox.
    pub socket: String,
}

impl Endpoint {
    fn connect(&self) -> Result<UnixStream, BackendError> {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&self.socket)
            .map_err(|e| self.lost(e))?;
        UnixStream::connect_addr(&address).map_err(|e| self.lost(e))
    }

    fn lost(&self, e: io::Error) -> BackendError {
        BackendError::WorkerLost(format!("placement worker {} unreachable: {e}", self.group))
    }

    fn closed(&self) -> BackendError {
        BackendError::WorkerLost(format!(
            "placement worker {} closed the connection (it exited; it is restarted and its \
             models reloaded)",
            self.group
        ))
    }

    /// Sends `message` and waits for the one reply.
    fn exchange(
        &self,
        stream: &UnixStream,
        message: &ToWorker,
    ) -> Result<(FromWorker, Vec<OwnedFd>), BackendError> {
        wire::send(stream, message, None).map_err(|e| self.lost(e))?;
        self.reply(stream)
    }

    /// The worker's next message on `stream`; its `Failed` as an error.
    fn reply(&self, stream: &UnixStream) -> Result<(FromWorker, Vec<OwnedFd>), BackendError> {
        match wire::recv(stream).map_err(|e| self.lost(e))? {
            Some((FromWorker::Failed(e), _)) => Err(e),
            Some(reply) => Ok(reply),
            None => Err(self.closed()),
        }
    }

    /// Loads one version in the worker. The returned model's connection is the version's
    /// lifeline: dropping it unloads the version there.
    pub fn load(&self, spec: &LoadSpec) -> Result<RemoteModel, BackendError> {
        let stream = self.connect()?;
        match self.exchange(&stream, &ToWorker::Load(spec.clone()))? {
            (
                FromWorker::Loaded {
                    model,
                    signature,
                    properties,
                    optimal_infer_requests,
                },
                _,
            ) => Ok(RemoteModel {
                endpoint: self.clone(),
                _lifeline: stream,
                id: model,
                signature,
                properties,
                optimal_infer_requests,
            }),
            (other, _) => Err(unexpected(&other)),
        }
    }
}

fn unexpected(reply: &FromWorker) -> BackendError {
    BackendError::Runtime(format!("placement worker answered out of turn: {reply:?}"))
}

pub struct RemoteModel {
    endpoint: Endpoint,
    _lifeline: UnixStream,
    id: u64,
    signature: Signature,
    properties: BTreeMap<String, String>,
    optimal_infer_requests: usize,
}

impl LoadedModel for RemoteModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn optimal_infer_requests(&self) -> usize {
        self.optimal_infer_requests
    }

    fn properties(&self) -> BTreeMap<String, String> {
        self.properties.clone()
    }

    fn create_executor(&mut self) -> Result<Box<dyn Executor>, BackendError> {
        let stream = self.endpoint.connect()?;
        let mailbox = Mailbox::create().map_err(|e| self.endpoint.lost(e))?;
        wire::send_fds(
            &stream,
            &ToWorker::Attach { model: self.id },
            &mailbox.fds(),
        )
        .map_err(|e| self.endpoint.lost(e))?;
        match self.endpoint.reply(&stream)? {
            (FromWorker::Attached, _) => Ok(Box::new(RemoteExecutor {
                endpoint: self.endpoint.clone(),
                stream,
                mailbox,
                inputs: None,
                inputs_shared: false,
                outputs: None,
                descriptor: Vec::new(),
            })),
            (other, _) => Err(unexpected(&other)),
        }
    }
}

/// How long a server thread polls for its answer before it sleeps: long enough for a tiny
/// model's inference and the hop back, a few percent of a CPU at most for slower ones.
const SPIN_FOR_ANSWER: Duration = Duration::from_micros(50);

/// One infer request in the worker, driven by one server worker thread.
struct RemoteExecutor {
    endpoint: Endpoint,
    /// Rare messages (a new region, an error); its hang-up says the worker is gone.
    stream: UnixStream,
    mailbox: Mailbox,
    /// Written here, read by the worker.
    inputs: Option<Region>,
    /// Whether the worker has the current input region.
    inputs_shared: bool,
    /// Written by the worker, read here.
    outputs: Option<Region>,
    /// The request descriptor, encoded here before it goes into the input region.
    descriptor: Vec<u8>,
}

impl RemoteExecutor {
    /// Writes the inputs and the request's descriptor into the input region; the message that
    /// announces them.
    fn write_request(
        &mut self,
        tensors: &[Tensor],
        outputs: &[usize],
    ) -> Result<Message, BackendError> {
        let mut appender = shm::Appender::new(&mut self.inputs);
        let mut slots = Vec::with_capacity(tensors.len());
        for tensor in tensors {
            let bytes = tensor.raw_bytes();
            let offset = appender.push(bytes).map_err(|e| self.endpoint.lost(e))?;
            slots.push(Slot {
                dtype: tensor.dtype,
                shape: tensor.shape.clone(),
                offset,
                len: bytes.len(),
            });
        }
        self.descriptor.clear();
        descriptor::encode_request(&slots, outputs, &mut self.descriptor);
        let at = appender
            .push(&self.descriptor)
            .map_err(|e| self.endpoint.lost(e))?;
        if appender.replaced() {
            self.inputs_shared = false;
        }
        let mut flags = 0;
        if !self.inputs_shared {
            let region = self.inputs.as_ref().expect("the appender made one");
            wire::send(&self.stream, &ToWorker::InputRegion, Some(region.fd()))
                .map_err(|e| self.endpoint.lost(e))?;
            self.inputs_shared = true;
            flags |= mailbox::NEW_REGION;
        }
        Ok(Message {
            flags,
            at: at as u64,
            len: self.descriptor.len() as u64,
        })
    }

    /// The outputs an answer describes, copied out of the output region.
    fn read_answer(&mut self, answer: Message) -> Result<Vec<Tensor>, BackendError> {
        if answer.flags & mailbox::FAILED != 0 {
            // The error waits on the socket: `reply` returns it as this request's error.
            let (other, _) = self.endpoint.reply(&self.stream)?;
            return Err(unexpected(&other));
        }
        if answer.flags & mailbox::NEW_REGION != 0 {
            let fd = match self.endpoint.reply(&self.stream)? {
                (FromWorker::OutputRegion, fds) => fds.into_iter().next().ok_or_else(|| {
                    BackendError::Runtime("placement worker announced a region without one".into())
                })?,
                (other, _) => return Err(unexpected(&other)),
            };
            self.outputs = Some(Region::open(fd).map_err(|e| self.endpoint.lost(e))?);
        }
        let region = self.outputs.as_ref().ok_or_else(|| {
            BackendError::Runtime("placement worker sent no output region".into())
        })?;
        let bytes = region.bytes();
        let described = usize::try_from(answer.at)
            .ok()
            .zip(usize::try_from(answer.len).ok())
            .and_then(|(at, len)| bytes.get(at..at.checked_add(len)?))
            .ok_or_else(|| {
                BackendError::Runtime(format!(
                    "placement worker answer {}..+{} outside its {}-byte region",
                    answer.at,
                    answer.len,
                    bytes.len()
                ))
            })?;
        let slots =
            descriptor::decode_slots(&mut descriptor::Reader { bytes: described }, bytes.len())
                .map_err(|e| BackendError::Runtime(format!("placement worker answer: {e}")))?;
        Ok(slots
            .into_iter()
            .map(|slot| {
                let data = &bytes[slot.offset..slot.offset + slot.len];
                Tensor::raw(slot.dtype, slot.shape, bytes::Bytes::copy_from_slice(data))
            })
            .collect())
    }
}

impl Executor for RemoteExecutor {
    fn infer(
        &mut self,
        inputs: &ValidatedInputs,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, BackendError> {
        let tensors = inputs.tensors();
        if tensors.iter().any(|t| t.dtype == DataType::Bytes) {
            return Err(BackendError::Unsupported(
                "string inputs are not passed to placement workers".into(),
            ));
        }
        let request = self.write_request(tensors, outputs)?;
        self.mailbox.post(request);
        let answer = self
            .mailbox
            .wait(self.stream.as_fd(), SPIN_FOR_ANSWER)
            .map_err(|e| self.endpoint.lost(e))?
            .ok_or_else(|| self.endpoint.closed())?;
        self.read_answer(answer)
    }
}
