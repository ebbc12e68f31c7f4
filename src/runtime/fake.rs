//! A backend without a runtime, for testing the core (registry, policies, swaps, queues).
//!
//! Every "model" takes `x: FP32 [1]` and answers `y = x + version`, so a test can tell which
//! version served it; a test may give a model another signature (`FakeControl::set_signature`,
//! e.g. one shaped like a committed fixture), whose output `i` answers input `i mod inputs`:
//! FP32 values plus the version, any other type as sent. A version folder containing a file named
//! `FAIL` fails to load. Inference can be held at a gate to make queue and drain behaviour
//! deterministic.

use super::{Backend, Executor, LoadSpec, LoadedModel};
use crate::error::BackendError;
use crate::serving::validate::ValidatedInputs;
use crate::tensor::{tensor_from_slice, tensor_to_vec, DataType, Signature, Tensor, TensorSpec};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Shared knobs and counters, visible to the test that owns the backend.
#[derive(Default)]
pub struct FakeControl {
    pub loads: AtomicUsize,
    pub inferences: AtomicUsize,
    /// While closed, inferences wait (and count themselves in `waiting`).
    gate_open: Mutex<bool>,
    gate: Condvar,
    pub waiting: AtomicUsize,
    /// While set, every load fails (a cause outside the model's folder, e.g. a missing library).
    pub failing: AtomicBool,
    /// While set, every load panics (a runtime that crashes on a model).
    pub panicking: AtomicBool,
    /// Signatures of the models that do not take `fake_signature()`, by model name.
    signatures: Mutex<HashMap<String, Signature>>,
}

impl FakeControl {
    pub fn close_gate(&self) {
        *self.gate_open.lock().unwrap() = false;
    }

    pub fn open_gate(&self) {
        *self.gate_open.lock().unwrap() = true;
        self.gate.notify_all();
    }

    /// Versions of `model` loaded from now on take `signature`.
    pub fn set_signature(&self, model: &str, signature: Signature) {
        self.signatures
            .lock()
            .unwrap()
            .insert(model.to_string(), signature);
    }

    fn signature_of(&self, model: &str) -> Signature {
        let signatures = self.signatures.lock().unwrap();
        signatures
            .get(model)
            .cloned()
            .unwrap_or_else(fake_signature)
    }

    fn pass_gate(&self) {
        let mut open = self.gate_open.lock().unwrap();
        if !*open {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while !*open {
                open = self.gate.wait(open).unwrap();
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[derive(Clone)]
pub struct FakeBackend {
    pub control: Arc<FakeControl>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        let control = FakeControl::default();
        *control.gate_open.lock().unwrap() = true;
        FakeBackend {
            control: Arc::new(control),
        }
    }
}

/// A load spec for the fake backend (which ignores the folder, device and properties).
pub fn fake_load_spec(model: &str, version: u64) -> LoadSpec {
    LoadSpec {
        model: model.to_string(),
        version,
        dir: std::env::temp_dir(),
        device: "CPU".into(),
        plugin_config: Default::default(),
        reshape: super::Reshape::None,
    }
}

/// `y = x + version` on one f32. Static, so a load warms up with one inference on zeros, which
/// tests hold at the gate to catch a load half-way.
pub fn fake_signature() -> Signature {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        dtype: DataType::F32,
        shape: vec![1],
    };
    Signature {
        inputs: vec![spec("x")],
        outputs: vec![spec("y")],
    }
}

impl Backend for FakeBackend {
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LoadedModel>, BackendError> {
        if self.control.panicking.load(Ordering::SeqCst) {
            panic!("fake runtime crash requested by the test");
        }
        if self.control.failing.load(Ordering::SeqCst) {
            return Err(BackendError::Runtime(
                "fake load failure requested by the test".into(),
            ));
        }
        if spec.dir.join("FAIL").exists() {
            return Err(BackendError::Read {
                path: spec.dir.display().to_string(),
                reason: "fake load failure requested by FAIL file".into(),
            });
        }
        self.control.loads.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeModel {
            signature: self.control.signature_of(&spec.model),
            version: spec.version,
            control: self.control.clone(),
        }))
    }
}

struct FakeModel {
    signature: Signature,
    version: u64,
    control: Arc<FakeControl>,
}

impl LoadedModel for FakeModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn optimal_infer_requests(&self) -> usize {
        2
    }

    fn properties(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("BACKEND".to_string(), "fake".to_string())])
    }

    fn create_executor(&mut self) -> Result<Box<dyn Executor>, BackendError> {
        Ok(Box::new(FakeExecutor {
            add: self.version as f32,
            control: self.control.clone(),
        }))
    }
}

struct FakeExecutor {
    add: f32,
    control: Arc<FakeControl>,
}

impl Executor for FakeExecutor {
    fn infer(
        &mut self,
        inputs: &ValidatedInputs,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, BackendError> {
        self.control.pass_gate();
        self.control.inferences.fetch_add(1, Ordering::SeqCst);
        let inputs = inputs.tensors();
        let answer = |output: usize| {
            let x = &inputs[output % inputs.len()];
            match tensor_to_vec::<f32>(x).filter(|_| x.dtype == DataType::F32) {
                Some(values) => {
                    let values: Vec<f32> = values.into_iter().map(|v| v + self.add).collect();
                    tensor_from_slice(DataType::F32, x.shape.clone(), &values)
                }
                None => x.clone(),
            }
        };
        Ok(outputs.iter().map(|&output| answer(output)).collect())
    }
}
