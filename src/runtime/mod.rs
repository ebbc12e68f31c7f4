//! The seam between the server core and an inference runtime.
//!
//! A small synchronous trait lets the whole core (registry, policies, swaps, queues) be tested with
//! [`fake::FakeBackend`]; [`openvino::OpenVinoBackend`] is the real one, tested on tiny real models.

pub mod fake;
pub mod files;
pub mod openvino;
pub mod rt_info;

use crate::error::BackendError;
use crate::serving::validate::ValidatedInputs;
use crate::tensor::{DataType, Signature, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How to change a model's input shapes at load time (OVMS `batch_size` / `shape`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reshape {
    #[default]
    None,
    /// Set the first dimension of every input (`-1` makes it dynamic).
    Batch(i64),
    /// Replace whole shapes by input name (`-1` entries are dynamic).
    Shapes(BTreeMap<String, Vec<i64>>),
    /// Replace the shape of the model's only input.
    Single(Vec<i64>),
}

/// Everything needed to load one version of a model.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LoadSpec {
    pub model: String,
    pub version: u64,
    pub dir: PathBuf,
    pub device: String,
    /// Runtime properties passed through verbatim (e.g. `PERFORMANCE_HINT`).
    pub plugin_config: BTreeMap<String, String>,
    pub reshape: Reshape,
}

/// Receives one output of an inference: element type, shape and the runtime's own bytes.
pub type OutputSink<'a> = dyn FnMut(DataType, &[usize], &[u8]) -> Result<(), BackendError> + 'a;

/// Loads model versions. Implementations must be callable from any loading thread.
pub trait Backend: Send + Sync + 'static {
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LoadedModel>, BackendError>;
}

/// A compiled model version. Owned by one thread at a time: executors are created on the loading
/// thread and then moved to the worker threads.
pub trait LoadedModel: Send {
    fn signature(&self) -> &Signature;
    /// What the runtime considers the best number of parallel infer requests (used for `nireq: 0`).
    fn optimal_infer_requests(&self) -> usize;
    /// Runtime facts worth showing operators (streams, threads, precision).
    fn properties(&self) -> BTreeMap<String, String>;
    fn create_executor(&mut self) -> Result<Box<dyn Executor>, BackendError>;
}

/// One infer request, owned by one worker thread.
pub trait Executor: Send {
    /// Runs one inference; returns the outputs at the signature indices `outputs`, in that order.
    fn infer(
        &mut self,
        inputs: &ValidatedInputs,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, BackendError>;

    /// Runs one inference and shows each requested output to `sink` (in `outputs` order) while
    /// the runtime still holds it, for a caller that copies the bytes somewhere anyway (a
    /// placement worker, into shared memory): one copy instead of two.
    fn infer_with(
        &mut self,
        inputs: &ValidatedInputs,
        outputs: &[usize],
        sink: &mut OutputSink<'_>,
    ) -> Result<(), BackendError> {
        for tensor in self.infer(inputs, outputs)? {
            sink(tensor.dtype, &tensor.shape, tensor.raw_bytes())?;
        }
        Ok(())
    }
}
