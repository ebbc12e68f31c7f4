//! The OpenVINO backend: reads every format OpenVINO reads (IR, ONNX, TensorFlow SavedModel,
//! TFLite, PaddlePaddle), reshapes, compiles on CPU with the model's properties, and runs one
//! `InferRequest` per worker thread (`executor`: inputs and outputs in place where they can be).

mod executor;
mod host_tensor;
pub mod library;

use super::files::ModelFiles;
use super::{Backend, Executor, LoadSpec, LoadedModel, Reshape};
use crate::error::BackendError;
use crate::tensor::{DataType, Signature, TensorSpec};
use executor::{OpenVinoExecutor, IN_PLACE_MIN_BYTES};
use openvino::{
    CompiledModel, Core, DeviceType, Dimension, ElementType, Model, Node, PartialShape,
    PropertyKey, RwPropertyKey,
};
use std::collections::BTreeMap;

/// Properties read back from a compiled model and shown to operators.
const REPORTED_PROPERTIES: [&str; 5] = [
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "INFERENCE_NUM_THREADS",
    "INFERENCE_PRECISION_HINT",
    "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
];

/// Loads models with OpenVINO. The C library must have been loaded (see [`library::load`]).
#[derive(Default, Clone)]
pub struct OpenVinoBackend;

fn runtime(context: &str) -> impl Fn(openvino::InferenceError) -> BackendError + '_ {
    move |e| BackendError::Runtime(format!("{context}: {e}"))
}

pub fn data_type(element: ElementType) -> Option<DataType> {
    Some(match element {
        ElementType::Boolean => DataType::Bool,
        ElementType::U8 => DataType::U8,
        ElementType::U16 => DataType::U16,
        ElementType::U32 => DataType::U32,
        ElementType::U64 => DataType::U64,
        ElementType::I8 => DataType::I8,
        ElementType::I16 => DataType::I16,
        ElementType::I32 => DataType::I32,
        ElementType::I64 => DataType::I64,
        ElementType::F16 => DataType::F16,
        ElementType::Bf16 => DataType::BF16,
        ElementType::F32 => DataType::F32,
        ElementType::F64 => DataType::F64,
        _ => return None,
    })
}

fn tensor_spec(node: &Node, role: &str, index: usize) -> Result<TensorSpec, BackendError> {
    let name = node.get_name().map_err(|e| {
        BackendError::Unsupported(format!("{role} {index} has no tensor name: {e}"))
    })?;
    let element = node.get_element_type().map_err(runtime("element type"))?;
    let dtype = data_type(element).ok_or_else(|| {
        BackendError::Unsupported(format!(
            "{role} {name} has element type {element:?}, which the server cannot carry"
        ))
    })?;
    let partial = node.get_partial_shape().map_err(runtime("partial shape"))?;
    // Not `Rank::is_dynamic` / `Dimension::is_dynamic`: OpenVINO's C API calls a static 0
    // dynamic, which would refuse every scalar (rank 0) and every zero-sized dimension.
    let rank = partial.get_rank();
    if rank.get_min() != rank.get_max() || rank.get_max() < 0 {
        return Err(BackendError::Unsupported(format!(
            "{role} {name} has a dynamic rank; set its shape in the model config"
        )));
    }
    let shape = partial
        .get_dimensions()
        .iter()
        .map(|d| {
            if d.get_min() == d.get_max() && d.get_max() >= 0 {
                d.get_max()
            } else {
                -1
            }
        })
        .collect();
    Ok(TensorSpec { name, dtype, shape })
}

fn partial_shape(dims: &[i64]) -> Result<PartialShape, BackendError> {
    let dims: Vec<Dimension> = dims
        .iter()
        .map(|&d| {
            if d < 0 {
                Dimension::new(-1, -1)
            } else {
                Dimension::new(d, d)
            }
        })
        .collect();
    PartialShape::new(dims.len() as i64, &dims).map_err(|e| BackendError::Reshape(e.to_string()))
}

fn input_specs(model: &Model) -> Result<Vec<TensorSpec>, BackendError> {
    port_specs(model, Port::Input)
}

fn reshape(model: &mut Model, reshape: &Reshape) -> Result<(), BackendError> {
    let targets: Vec<(String, Vec<i64>)> = match reshape {
        Reshape::None => return Ok(()),
        Reshape::Batch(batch) => input_specs(model)?
            .into_iter()
            .map(|spec| {
                let mut shape = spec.shape;
                if shape.is_empty() {
                    return Err(BackendError::Reshape(format!(
                        "input {} is a scalar and has no batch dimension",
                        spec.name
                    )));
                }
                shape[0] = *batch;
                Ok((spec.name, shape))
            })
            .collect::<Result<_, _>>()?,
        Reshape::Single(shape) => {
            let inputs = input_specs(model)?;
            if inputs.len() != 1 {
                return Err(BackendError::Reshape(format!(
                    "a single shape was given but the model has {} inputs; give shapes by input name",
                    inputs.len()
                )));
            }
            vec![(inputs[0].name.clone(), shape.clone())]
        }
        Reshape::Shapes(by_name) => {
            let inputs = input_specs(model)?;
            for name in by_name.keys() {
                if !inputs.iter().any(|s| &s.name == name) {
                    return Err(BackendError::Reshape(format!(
                        "the model has no input named {name}"
                    )));
                }
            }
            by_name
                .iter()
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect()
        }
    };
    let shapes: Vec<(String, PartialShape)> = targets
        .into_iter()
        .map(|(n, s)| Ok((n, partial_shape(&s)?)))
        .collect::<Result<_, BackendError>>()?;
    let refs: Vec<(&str, &PartialShape)> = shapes.iter().map(|(n, s)| (n.as_str(), s)).collect();
    model
        .reshape(&refs)
        .map_err(|e| BackendError::Reshape(e.to_string()))
}

impl Backend for OpenVinoBackend {
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LoadedModel>, BackendError> {
        Ok(Box::new(self.load_model(spec)?))
    }
}

impl OpenVinoBackend {
    fn load_model(&self, spec: &LoadSpec) -> Result<OpenVinoModel, BackendError> {
        if spec.device != "CPU" {
            return Err(BackendError::Unsupported(format!(
                "target_device {} (only CPU is served)",
                spec.device
            )));
        }
        // One Core per load: properties set on it apply to this compile only, because the Rust
        // bindings' compile_model takes no per-call properties.
        let mut core = Core::new().map_err(|e| BackendError::Runtime(e.to_string()))?;
        for (key, value) in &spec.plugin_config {
            core.set_property(
                &DeviceType::CPU,
                &RwPropertyKey::Other(key.clone().into()),
                value,
            )
            .map_err(|e| BackendError::Compile {
                device: spec.device.clone(),
                reason: format!("plugin_config {key}={value} rejected: {e}"),
            })?;
        }
        let files = ModelFiles::find(&spec.dir)?;
        let (model_path, weights) = files.read_model_args();
        let mut model = core
            .read_model_from_file(&model_path.display().to_string(), &weights)
            .map_err(|e| BackendError::Read {
                path: model_path.display().to_string(),
                reason: e.to_string(),
            })?;
        reshape(&mut model, &spec.reshape)?;
        // The signature comes from the model as read, not as compiled: a compiled model's port
        // may answer `get_any_name` with an internal name of a fused node (seen with ONNX `If`
        // graphs), while the read model's ports carry the names the model's author gave.
        let signature = Signature {
            inputs: port_specs(&model, Port::Input)?,
            outputs: port_specs(&model, Port::Output)?,
        };
        let compiled =
            core.compile_model(&model, DeviceType::CPU)
                .map_err(|e| BackendError::Compile {
                    device: spec.device.clone(),
                    reason: e.to_string(),
                })?;
        Ok(OpenVinoModel {
            compiled,
            signature,
            in_place_min_bytes: IN_PLACE_MIN_BYTES,
        })
    }
}

#[derive(Clone, Copy)]
enum Port {
    Input,
    Output,
}

fn port_specs(model: &Model, port: Port) -> Result<Vec<TensorSpec>, BackendError> {
    let (count, role) = match port {
        Port::Input => (model.get_inputs_len().map_err(runtime("inputs"))?, "input"),
        Port::Output => (
            model.get_outputs_len().map_err(runtime("outputs"))?,
            "output",
        ),
    };
    (0..count)
        .map(|i| {
            let node = match port {
                Port::Input => model.get_input_by_index(i),
                Port::Output => model.get_output_by_index(i),
            }
            .map_err(runtime(role))?;
            tensor_spec(&OwnedPort(node).0, role, i)
        })
        .collect()
}

/// A port that is freed when dropped. The openvino crate's `Node` has no `Drop`, so its C handle
/// would leak, and an output port keeps its whole graph alive: every load of a model would leak
/// the model's weights (a 16 MiB model grew the server by 16 MiB per hot swap).
struct OwnedPort(Node);

// `Node` is the one raw pointer the C API handed out; `OwnedPort::drop` relies on it.
const _: () = assert!(
    std::mem::size_of::<Node>() == std::mem::size_of::<*mut openvino_sys::ov_output_const_port_t>()
);

impl Drop for OwnedPort {
    fn drop(&mut self) {
        // SAFETY: `Node` holds exactly the `ov_output_const_port_t*` returned by
        // `ov_model_const_{input,output}_by_index` (size checked above; a single-field struct has
        // its field at offset 0). It is freed once, here; the `Node` is never used after.
        unsafe {
            let port: *mut openvino_sys::ov_output_const_port_t = std::mem::transmute_copy(&self.0);
            openvino_sys::ov_output_const_port_free(port);
        }
    }
}

struct OpenVinoModel {
    compiled: CompiledModel,
    signature: Signature,
    /// Inputs and outputs of at least this many bytes are lent in place (see `executor`).
    in_place_min_bytes: usize,
}

impl OpenVinoModel {
    fn executor(&mut self) -> Result<OpenVinoExecutor, BackendError> {
        let request = self
            .compiled
            .create_infer_request()
            .map_err(runtime("create infer request"))?;
        OpenVinoExecutor::new(request, &self.signature, self.in_place_min_bytes)
    }

    fn property(&self, key: &str) -> Option<String> {
        self.compiled
            .get_property(&PropertyKey::Other(key.to_string().into()))
            .ok()
            .map(|v| v.into_owned())
    }
}

impl LoadedModel for OpenVinoModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn optimal_infer_requests(&self) -> usize {
        self.property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1)
    }

    fn properties(&self) -> BTreeMap<String, String> {
        REPORTED_PROPERTIES
            .iter()
            .filter_map(|k| Some((k.to_string(), self.property(k)?)))
            .collect()
    }

    fn create_executor(&mut self) -> Result<Box<dyn Executor>, BackendError> {
        Ok(Box::new(self.executor()?))
    }
}

#[cfg(test)]
mod tests;
