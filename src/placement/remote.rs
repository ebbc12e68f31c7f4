//! The server's side of a model loaded in a placement worker: a [`LoadedModel`] and its
//! [`Executor`]s that forward to the worker, so pools, swaps and metrics work unchanged.

use super::shm::{self, Region};
use super::wire::{self, FromWorker, Slot, ToWorker};
use crate::error::BackendError;
use crate::runtime::{Executor, LoadSpec, LoadedModel};
use crate::serving::validate::ValidatedInputs;
use crate::tensor::{DataType, Signature, Tensor};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::net::UnixStream;

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
        fd: Option<std::os::fd::RawFd>,
    ) -> Result<(FromWorker, Option<std::os::fd::OwnedFd>), BackendError> {
        wire::send(stream, message, fd).map_err(|e| self.lost(e))?;
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
        match self.exchange(&stream, &ToWorker::Load(spec.clone()), None)? {
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
        match self
            .endpoint
            .exchange(&stream, &ToWorker::Attach { model: self.id }, None)?
        {
            (FromWorker::Attached, _) => Ok(Box::new(RemoteExecutor {
                endpoint: self.endpoint.clone(),
                stream,
                inputs: None,
                outputs: None,
            })),
            (other, _) => Err(unexpected(&other)),
        }
    }
}

/// One infer request in the worker, driven by one server worker thread.
struct RemoteExecutor {
    endpoint: Endpoint,
    stream: UnixStream,
    /// Written here, read by the worker.
    inputs: Option<Region>,
    /// Written by the worker, read here.
    outputs: Option<Region>,
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
        let new_region = appender.replaced();
        let message = ToWorker::Infer {
            inputs: slots,
            outputs: outputs.to_vec(),
            new_region,
        };
        let fd = match (&self.inputs, new_region) {
            (Some(region), true) => Some(region.fd()),
            _ => None,
        };
        let (reply, fd) = self.endpoint.exchange(&self.stream, &message, fd)?;
        let FromWorker::Outputs {
            tensors,
            new_region,
        } = reply
        else {
            return Err(unexpected(&reply));
        };
        if new_region {
            let fd = fd.ok_or_else(|| {
                BackendError::Runtime("placement worker announced a region without one".into())
            })?;
            self.outputs = Some(Region::open(fd).map_err(|e| self.endpoint.lost(e))?);
        }
        if tensors.is_empty() {
            return Ok(Vec::new());
        }
        let region = self.outputs.as_ref().ok_or_else(|| {
            BackendError::Runtime("placement worker sent no output region".into())
        })?;
        tensors
            .into_iter()
            .map(|slot| {
                let bytes = region
                    .bytes()
                    .get(slot.offset..slot.offset + slot.len)
                    .ok_or_else(|| {
                        BackendError::Runtime(format!(
                            "placement worker output {}..+{} outside its {}-byte region",
                            slot.offset,
                            slot.len,
                            region.len()
                        ))
                    })?;
                Ok(Tensor::raw(
                    slot.dtype,
                    slot.shape,
                    bytes::Bytes::copy_from_slice(bytes),
                ))
            })
            .collect()
    }
}
