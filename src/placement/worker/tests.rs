//! The whole data path in one process: the server's `RemoteModel` and executors against this
//! worker's connection handling over a real abstract socket, with the fake backend (y = x + 1)
//! standing in for OpenVINO.

use super::*;
use crate::placement::remote::Endpoint;
use crate::runtime::fake::{fake_load_spec, FakeBackend};
use crate::runtime::LoadSpec;
use crate::tensor::{tensor_from_slice, tensor_to_vec, DataType, Signature};
use std::collections::BTreeMap;
use std::os::linux::net::SocketAddrExt;

/// The fake backend, but an inference whose first input value is negative fails in the worker.
struct Picky(FakeBackend);
struct PickyModel(Box<dyn LoadedModel>);
struct PickyExecutor(Box<dyn Executor>);

impl Backend for Picky {
    fn load(&self, spec: &LoadSpec) -> Result<Box<dyn LoadedModel>, BackendError> {
        Ok(Box::new(PickyModel(self.0.load(spec)?)))
    }
}

impl LoadedModel for PickyModel {
    fn signature(&self) -> &Signature {
        self.0.signature()
    }
    fn optimal_infer_requests(&self) -> usize {
        self.0.optimal_infer_requests()
    }
    fn properties(&self) -> BTreeMap<String, String> {
        self.0.properties()
    }
    fn create_executor(&mut self) -> Result<Box<dyn Executor>, BackendError> {
        Ok(Box::new(PickyExecutor(self.0.create_executor()?)))
    }
}

impl Executor for PickyExecutor {
    fn infer(
        &mut self,
        inputs: &ValidatedInputs,
        outputs: &[usize],
    ) -> Result<Vec<Tensor>, BackendError> {
        let first = tensor_to_vec::<f32>(&inputs.tensors()[0]).and_then(|v| v.first().copied());
        if first.is_some_and(|x| x < 0.0) {
            return Err(BackendError::Infer("negative input refused".into()));
        }
        self.0.infer(inputs, outputs)
    }
}

/// A worker serving the fake backend on a fresh abstract socket; the endpoint that reaches it.
fn fake_worker(name: &str) -> Endpoint {
    let socket = format!("vinoserve-test-{}-{name}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(&socket).unwrap();
    let listener = UnixListener::bind_addr(&address).unwrap();
    let models = Arc::new(Models::new(Box::new(Picky(FakeBackend::default()))));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let models = models.clone();
            std::thread::spawn(move || serve_connection(&models, stream.unwrap()));
        }
    });
    Endpoint {
        group: name.into(),
        socket,
    }
}

fn floats(values: &[f32]) -> ValidatedInputs {
    ValidatedInputs::trusted(vec![tensor_from_slice(
        DataType::F32,
        vec![values.len()],
        values,
    )])
}

#[test]
fn requests_of_growing_size_and_a_failure_cross_the_mailbox() {
    let endpoint = fake_worker("grow");
    let mut model = endpoint.load(&fake_load_spec("m", 1)).unwrap();
    let mut executor = model.create_executor().unwrap();
    // Small, then larger than both first regions (new regions each way), then small again in
    // the grown regions.
    for len in [3usize, 5000, 300_000, 7] {
        let x: Vec<f32> = (0..len).map(|i| i as f32).collect();
        let outputs = executor.infer(&floats(&x), &[0, 0]).unwrap();
        assert_eq!(outputs.len(), 2);
        for y in outputs {
            assert_eq!(y.shape, vec![len]);
            let y = tensor_to_vec::<f32>(&y).unwrap();
            assert!(y.iter().zip(&x).all(|(y, x)| *y == x + 1.0), "len {len}");
        }
    }
    // The worker's error comes back as this request's error (a request that also brought a
    // larger input region), and the executor serves the next request.
    let mut negative = vec![-1.0f32];
    negative.resize(600_000, 0.0);
    let e = executor.infer(&floats(&negative), &[0]).unwrap_err();
    assert!(
        matches!(&e, BackendError::Infer(m) if m.contains("negative input refused")),
        "{e:?}"
    );
    let y = executor.infer(&floats(&[41.0]), &[0]).unwrap();
    assert_eq!(tensor_to_vec::<f32>(&y[0]).unwrap(), vec![42.0]);
}

#[test]
fn string_inputs_are_refused_before_the_hop() {
    let endpoint = fake_worker("strings");
    let mut model = endpoint.load(&fake_load_spec("m", 1)).unwrap();
    let mut executor = model.create_executor().unwrap();
    let strings = ValidatedInputs::trusted(vec![crate::tensor::Tensor::strings(
        vec![1],
        vec![bytes::Bytes::from_static(b"a")],
    )]);
    let e = executor.infer(&strings, &[0]).unwrap_err();
    assert!(matches!(e, BackendError::Unsupported(_)), "{e:?}");
}

/// Many server threads at once, each with its own executor on one worker.
#[test]
fn concurrent_executors_on_one_worker() {
    let endpoint = fake_worker("concurrent");
    let mut model = endpoint.load(&fake_load_spec("m", 1)).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let mut executor = model.create_executor().unwrap();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let x = (t * 1000 + i) as f32;
                    let y = executor.infer(&floats(&[x]), &[0]).unwrap();
                    assert_eq!(tensor_to_vec::<f32>(&y[0]).unwrap(), vec![x + 1.0]);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}
