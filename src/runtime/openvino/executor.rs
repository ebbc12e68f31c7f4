//! One OpenVINO infer request per worker thread, and how a request's bytes reach it.
//!
//! Inputs are lent in place where the layout allows: the request's own bytes (a slice of the
//! gRPC or HTTP receive buffer) become the input tensor through a host-pointer tensor, so they
//! are not copied into OpenVINO's tensor first. Where they cannot be (not aligned for the element
//! type, or too small for the hand-over to pay), they are copied as before. Static outputs get a
//! buffer of ours that OpenVINO writes into and that then becomes the response's bytes.
//!
//! Lifetimes: our memory is set on the infer request only for the duration of [`run`]; before it
//! returns, every port gets back the tensor OpenVINO allocated for it, so the request never keeps
//! a pointer to a request's bytes after the call. (The CPU plugin's graph may still hold the
//! last pointer in an edge until its next inference, which re-points every edge before it reads
//! or writes any: the restored tensors are compatible with the graph, as ours are.)
//!
//! [`run`]: OpenVinoExecutor::run

use super::data_type;
use super::host_tensor::{self, OutputBuffer};
use crate::error::BackendError;
use crate::metrics::METRICS;
use crate::runtime::{Executor, OutputSink};
use crate::serving::validate::ValidatedInputs;
use crate::tensor::{DataType, Signature, Tensor, TensorSpec};
use openvino::{InferRequest, Shape};
use prometheus::IntCounter;

/// Inputs and outputs smaller than this are copied: setting a tensor on the request and back
/// costs a few µs, about what copying 64 KiB costs, and small-model latency matters most.
pub const IN_PLACE_MIN_BYTES: usize = 64 << 10;

fn infer_error(e: openvino::InferenceError) -> BackendError {
    BackendError::Infer(e.to_string())
}

struct InputPort {
    name: String,
    dynamic: bool,
    /// The tensor OpenVINO allocated for the port: the copy target, and what is set back after
    /// an inference that lent the request's bytes.
    own: openvino::Tensor,
    /// The element type of `own` matches the signature, so a tensor of the request's dtype is
    /// accepted in its place (else the port only ever copies).
    lendable: bool,
    /// Our memory is still set on the request (setting `own` back failed): set it back before
    /// the next copy into `own`.
    lent: bool,
}

struct OutputPort {
    /// `(dtype, shape, bytes)` of a static, fixed-size output: one we can give a buffer for.
    fixed: Option<(DataType, Vec<usize>, usize)>,
    own: openvino::Tensor,
    lent: bool,
}

/// How inputs and outputs were handed over, counted per executor (tests read it) and in
/// `vinoserve_tensor_handover_total` (operators do).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandOver {
    pub inputs_in_place: u64,
    pub inputs_copied_misaligned: u64,
    pub inputs_copied: u64,
    pub outputs_in_place: u64,
}

/// The metric's counters, looked up once per executor rather than per inference.
struct HandOverMetrics {
    inputs_in_place: IntCounter,
    inputs_copied_misaligned: IntCounter,
    inputs_copied: IntCounter,
    outputs_in_place: IntCounter,
    outputs_copied: IntCounter,
}

impl HandOverMetrics {
    fn new() -> HandOverMetrics {
        let counter = |direction, mode| {
            METRICS
                .tensor_handover
                .with_label_values(&[direction, mode])
        };
        HandOverMetrics {
            inputs_in_place: counter("input", "in_place"),
            inputs_copied_misaligned: counter("input", "copied_misaligned"),
            inputs_copied: counter("input", "copied"),
            outputs_in_place: counter("output", "in_place"),
            outputs_copied: counter("output", "copied"),
        }
    }
}

pub struct OpenVinoExecutor {
    request: InferRequest,
    inputs: Vec<InputPort>,
    outputs: Vec<OutputPort>,
    in_place_min_bytes: usize,
    pub(super) hand_over: HandOver,
    metrics: HandOverMetrics,
}

impl OpenVinoExecutor {
    pub fn new(
        request: InferRequest,
        signature: &Signature,
        in_place_min_bytes: usize,
    ) -> Result<OpenVinoExecutor, BackendError> {
        let inputs = signature
            .inputs
            .iter()
            .map(|spec| {
                let own = request.get_tensor(&spec.name).map_err(infer_error)?;
                Ok(InputPort {
                    name: spec.name.clone(),
                    dynamic: spec.is_dynamic(),
                    lendable: same_type(&own, spec)?,
                    own,
                    lent: false,
                })
            })
            .collect::<Result<_, BackendError>>()?;
        let outputs = signature
            .outputs
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let own = request
                    .get_output_tensor_by_index(index)
                    .map_err(infer_error)?;
                let fixed = match (spec.is_dynamic(), spec.dtype.element_size()) {
                    (false, Some(size)) if same_type(&own, spec)? => {
                        let shape: Vec<usize> = spec.shape.iter().map(|&d| d as usize).collect();
                        let bytes = shape.iter().product::<usize>() * size;
                        Some((spec.dtype, shape, bytes))
                    }
                    _ => None,
                };
                Ok(OutputPort {
                    fixed,
                    own,
                    lent: false,
                })
            })
            .collect::<Result<_, BackendError>>()?;
        Ok(OpenVinoExecutor {
            request,
            inputs,
            outputs,
            in_place_min_bytes,
            hand_over: HandOver::default(),
            metrics: HandOverMetrics::new(),
        })
    }

    fn lends(&self, len: usize) -> bool {
        len > 0 && len >= self.in_place_min_bytes
    }

    /// Sets the inputs (lent or copied) and the lent outputs' buffers, infers, then sets every
    /// lent port back to OpenVINO's own tensor. `buffers[i]` receives output `i`'s buffer when it
    /// was lent one (only outputs listed in `lend_outputs` are).
    fn run(
        &mut self,
        inputs: &ValidatedInputs,
        lend_outputs: &[usize],
    ) -> Result<Vec<Option<OutputBuffer>>, BackendError> {
        let mut buffers: Vec<Option<OutputBuffer>> = std::iter::repeat_with(|| None)
            .take(self.outputs.len())
            .collect();
        // The host tensors must outlive the inference; the memory they point at is borrowed
        // (`inputs`) or owned (`buffers`) until after `restore`.
        let mut lent = Vec::new();
        let outcome = self.set_inputs(inputs, &mut lent).and_then(|()| {
            self.set_outputs(lend_outputs, &mut buffers, &mut lent)?;
            self.request.infer().map_err(infer_error)
        });
        let restored = self.restore();
        drop(lent);
        outcome.and(restored)?;
        Ok(buffers)
    }

    fn set_inputs(
        &mut self,
        inputs: &ValidatedInputs,
        lent: &mut Vec<openvino::Tensor>,
    ) -> Result<(), BackendError> {
        for (index, tensor) in inputs.tensors().iter().enumerate() {
            let name = &self.inputs[index].name;
            if tensor.dtype == DataType::Bytes {
                return Err(BackendError::Unsupported(format!(
                    "input {name} takes strings"
                )));
            }
            let bytes = tensor.raw_bytes();
            if self.inputs[index].lendable && self.lends(bytes.len()) {
                if host_tensor::aligned_for(tensor.dtype, bytes) {
                    // SAFETY: `bytes` has the validated size for dtype × shape, is aligned for
                    // the element type, and is borrowed from `inputs` for the whole of `run`,
                    // which sets OpenVINO's own tensor back before returning. OpenVINO reads it
                    // only: the CPU plugin uses an input in place only where no node writes to
                    // it, and copies out of it otherwise.
                    let host = unsafe {
                        host_tensor::over(tensor.dtype, &tensor.shape, bytes.as_ptr().cast_mut())
                    }?;
                    let port = &mut self.inputs[index];
                    port.lent = true;
                    self.request
                        .set_tensor(&port.name, &host)
                        .map_err(infer_error)?;
                    lent.push(host);
                    self.hand_over.inputs_in_place += 1;
                    self.metrics.inputs_in_place.inc();
                    continue;
                }
                self.hand_over.inputs_copied_misaligned += 1;
                self.metrics.inputs_copied_misaligned.inc();
            } else {
                self.hand_over.inputs_copied += 1;
                self.metrics.inputs_copied.inc();
            }
            self.copy_input(index, tensor)?;
        }
        Ok(())
    }

    /// The one copy of an input that cannot be lent: into OpenVINO's own tensor.
    fn copy_input(&mut self, index: usize, tensor: &Tensor) -> Result<(), BackendError> {
        let port = &mut self.inputs[index];
        if port.lent {
            self.request
                .set_tensor(&port.name, &port.own)
                .map_err(infer_error)?;
            port.lent = false;
        }
        if port.dynamic {
            let dims: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
            let shape = Shape::new(&dims).map_err(infer_error)?;
            // `set_shape` hands back a second owner of the same C tensor; forget it so the
            // tensor is freed once, by `port.own`.
            std::mem::forget(port.own.set_shape(&shape).map_err(infer_error)?);
        }
        port.own
            .get_raw_data_mut()
            .map_err(infer_error)?
            .copy_from_slice(tensor.raw_bytes());
        Ok(())
    }

    fn set_outputs(
        &mut self,
        indices: &[usize],
        buffers: &mut [Option<OutputBuffer>],
        lent: &mut Vec<openvino::Tensor>,
    ) -> Result<(), BackendError> {
        for &index in indices {
            let Some((dtype, shape, len)) = self.outputs[index].fixed.clone() else {
                continue;
            };
            if !self.lends(len) {
                continue;
            }
            let mut buffer = OutputBuffer::new(len);
            // SAFETY: the buffer holds `len` bytes (dtype × shape), 64-byte aligned; it is owned
            // by `buffers` until after `run` has set OpenVINO's own tensor back, and nothing
            // reads it before the inference has returned.
            let host = unsafe { host_tensor::over(dtype, &shape, buffer.as_mut_ptr()) }?;
            self.outputs[index].lent = true;
            self.request
                .set_output_tensor_by_index(index, &host)
                .map_err(infer_error)?;
            lent.push(host);
            buffers[index] = Some(buffer);
            self.hand_over.outputs_in_place += 1;
            self.metrics.outputs_in_place.inc();
        }
        Ok(())
    }

    /// Sets OpenVINO's own tensor back on every lent port; the first failure is returned (the
    /// port stays marked, and is set back before its next use).
    fn restore(&mut self) -> Result<(), BackendError> {
        let mut result = Ok(());
        for port in self.inputs.iter_mut().filter(|p| p.lent) {
            match self.request.set_tensor(&port.name, &port.own) {
                Ok(()) => port.lent = false,
                Err(e) => result = result.and(Err(infer_error(e))),
            }
        }
        for (index, port) in self.outputs.iter_mut().enumerate() {
            if port.lent {
                match self.request.set_output_tensor_by_index(index, &port.own) {
                    Ok(()) => port.lent = false,
                    Err(e) => result = result.and(Err(infer_error(e))),
                }
            }
        }
        result
    }

    /// Output `index` of the last inference, as OpenVINO holds it.
    fn output(
        &self,
        index: usize,
    ) -> Result<(DataType, Vec<usize>, openvino::Tensor), BackendError> {
        let out = self
            .request
            .get_output_tensor_by_index(index)
            .map_err(infer_error)?;
        let element = out.get_element_type().map_err(infer_error)?;
        let dtype = data_type(element)
            .ok_or_else(|| BackendError::Unsupported(format!("output element type {element:?}")))?;
        let shape = out
            .get_shape()
            .map_err(infer_error)?
            .get_dimensions()
            .iter()
            .map(|&d| d as usize)
            .collect();
        Ok((dtype, shape, out))
    }
}

/// Whether OpenVINO's tensor for a port has the signature's element type (it does for every
/// model we know of; if a plugin ever changed it, a tensor of ours would be refused).
fn same_type(own: &openvino::Tensor, spec: &TensorSpec) -> Result<bool, BackendError> {
    let element = own.get_element_type().map_err(infer_error)?;
    Ok(data_type(element) == Some(spec.dtype))
}

impl Executor for OpenVinoExecutor {
    fn infer(
        &mut self,
        inputs: &ValidatedInputs,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, BackendError> {
        let mut buffers = self.run(inputs, outputs)?;
        outputs
            .iter()
            .map(|&index| {
                if let (Some(buffer), Some((dtype, shape, _))) =
                    (buffers[index].take(), &self.outputs[index].fixed)
                {
                    return Ok(Tensor::raw(*dtype, shape.clone(), buffer.into_bytes()));
                }
                let (dtype, shape, out) = self.output(index)?;
                // The one copy of an output that had no buffer of ours: out of OpenVINO's tensor.
                self.metrics.outputs_copied.inc();
                let bytes = bytes::Bytes::copy_from_slice(out.get_raw_data().map_err(infer_error)?);
                Ok(Tensor::raw(dtype, shape, bytes))
            })
            .collect()
    }

    fn infer_with(
        &mut self,
        inputs: &ValidatedInputs,
        outputs: &[usize],
        sink: &mut OutputSink<'_>,
    ) -> Result<(), BackendError> {
        // The sink copies each output out of OpenVINO's memory itself: no buffers to lend.
        self.run(inputs, &[])?;
        for &index in outputs {
            let (dtype, shape, out) = self.output(index)?;
            self.metrics.outputs_copied.inc();
            sink(dtype, &shape, out.get_raw_data().map_err(infer_error)?)?;
        }
        Ok(())
    }
}
