//! Criterion micro-benchmarks of the request path (TESTING.md, "Benchmarks"): the per-request
//! work the server does around an inference.
//!
//! ```text
//! cargo bench --bench hot_path                      # all of them
//! cargo bench --bench hot_path -- decode            # a subset, by name filter
//! cargo bench --bench hot_path -- --quick           # criterion's quick mode
//! ```
//!
//! - `tfs_decode`: a `[1,224,224,3]` f32 `TensorProto` to the internal tensor, from
//!   `tensor_content` (what clients send; shares the buffer) and from `float_val` (the typed
//!   field, packed into bytes); and the whole gRPC body (`PredictRequest` wire bytes → prost →
//!   `decode_tensor`).
//! - `tfs_encode`: a `[1,1000]` f32 output to a `TensorProto`, and with the prost encoding of
//!   the `PredictResponse` that carries it.
//! - `validate`: `validate_inputs` of that image against a `[-1,224,224,3]` signature.
//! - `registry_resolve`: `Registry::resolve` on a registry of 8 models × 2 versions loaded with
//!   the fake backend, by latest / number / label, and the unknown-model error.
//!
//! Under `cargo test --all-targets` criterion runs each benchmark once, as a test.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use prost::Message;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use vinoserve::api::tfs::codec::{decode_tensor, encode_tensor, shape_proto};
use vinoserve::proto::tensorflow::serving::{ModelSpec, PredictRequest, PredictResponse};
use vinoserve::proto::tensorflow::{DataType as TfType, TensorProto};
use vinoserve::runtime::fake::{fake_load_spec, FakeBackend};
use vinoserve::serving::registry::{Registry, VersionSelector, VersionState, VersionStatus};
use vinoserve::serving::servable::{PoolSpec, Servable};
use vinoserve::serving::validate::validate_inputs;
use vinoserve::tensor::{tensor_from_slice, DataType, Signature, Tensor, TensorSpec};

const IMAGE: [i64; 4] = [1, 224, 224, 3];
const IMAGE_ELEMENTS: usize = 224 * 224 * 3;
const CLASSES: usize = 1000;

/// Image-like values in [0, 1], deterministic.
fn image_values() -> Vec<f32> {
    (0..IMAGE_ELEMENTS)
        .map(|i| (i % 256) as f32 / 255.0)
        .collect()
}

fn image_proto(typed: bool) -> TensorProto {
    let values = image_values();
    let mut proto = TensorProto {
        dtype: TfType::DtFloat as i32,
        tensor_shape: Some(shape_proto(&IMAGE)),
        ..Default::default()
    };
    if typed {
        proto.float_val = values;
    } else {
        proto.tensor_content = Bytes::copy_from_slice(bytemuck::cast_slice(&values));
    }
    proto
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("tfs_decode");
    for (name, typed) in [("tensor_content", false), ("float_val", true)] {
        let proto = image_proto(typed);
        group.bench_function(format!("decode_tensor/224x224x3_f32/{name}"), |b| {
            b.iter_batched(
                || proto.clone(),
                |p| decode_tensor("input", p).expect("valid tensor"),
                BatchSize::SmallInput,
            )
        });
    }
    // What the gRPC handler sees: the message body as received (a `Bytes`, so prost can share it).
    let request = PredictRequest {
        model_spec: Some(ModelSpec {
            name: "resnet_v1_50".into(),
            ..Default::default()
        }),
        inputs: HashMap::from([("input".to_string(), image_proto(false))]),
        ..Default::default()
    };
    let wire = Bytes::from(request.encode_to_vec());
    group.bench_function("predict_request_wire+decode_tensor/224x224x3_f32", |b| {
        b.iter(|| {
            let mut request = PredictRequest::decode(wire.clone()).expect("valid protobuf");
            let proto = request.inputs.remove("input").expect("input present");
            decode_tensor("input", proto).expect("valid tensor")
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let probabilities: Vec<f32> = (0..CLASSES).map(|i| i as f32 / CLASSES as f32).collect();
    let output = tensor_from_slice(DataType::F32, vec![1, CLASSES], &probabilities);
    let mut group = c.benchmark_group("tfs_encode");
    group.bench_function("encode_tensor/1000_f32", |b| {
        b.iter_batched(|| output.clone(), encode_tensor, BatchSize::SmallInput)
    });
    group.bench_function("encode_tensor+predict_response_wire/1000_f32", |b| {
        b.iter_batched(
            || output.clone(),
            |tensor| {
                let response = PredictResponse {
                    model_spec: Some(ModelSpec {
                        name: "resnet_v1_50".into(),
                        ..Default::default()
                    }),
                    outputs: HashMap::from([("probabilities".to_string(), encode_tensor(tensor))]),
                };
                response.encode_to_vec()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn validate(c: &mut Criterion) {
    let signature = Signature {
        inputs: vec![TensorSpec {
            name: "input".into(),
            dtype: DataType::F32,
            shape: vec![-1, 224, 224, 3],
        }],
        outputs: vec![TensorSpec {
            name: "probabilities".into(),
            dtype: DataType::F32,
            shape: vec![-1, CLASSES as i64],
        }],
    };
    let image: Tensor = tensor_from_slice(DataType::F32, vec![1, 224, 224, 3], &image_values());
    c.bench_function("validate/validate_inputs/224x224x3_f32", |b| {
        b.iter_batched(
            || vec![("input".to_string(), image.clone())],
            |inputs| validate_inputs("resnet_v1_50", &signature, inputs).expect("valid inputs"),
            BatchSize::SmallInput,
        )
    });
}

const MODELS: usize = 8;

/// `MODELS` models with versions 1 and 2 AVAILABLE (fake backend, one worker each) and a label
/// `stable` → 1: a registry as a small multi-model server publishes it.
fn populated_registry() -> Registry {
    let backend = FakeBackend::default();
    let pool = PoolSpec {
        nireq: 1,
        queue_bound: 4,
        inline_limit: None,
        batching: None,
    };
    let registry = Registry::new();
    for m in 0..MODELS {
        let model = format!("model_{m}");
        let servables: Vec<(u64, Arc<Servable>)> = (1..=2)
            .map(|version| {
                let spec = fake_load_spec(&model, version);
                let servable = Servable::load(&backend, &spec, &pool, Box::new(|| {}))
                    .expect("the fake backend loads");
                (version, Arc::new(servable))
            })
            .collect();
        registry.update(&model, |status| {
            for (version, servable) in &servables {
                let mut entry = VersionStatus::new(*version, VersionState::Available);
                entry.servable = Some(servable.clone());
                status.versions.insert(*version, entry);
            }
            status.labels.insert("stable".into(), 1);
        });
    }
    registry
}

fn resolve(c: &mut Criterion) {
    let registry = populated_registry();
    let model = format!("model_{}", MODELS / 2);
    let mut group = c.benchmark_group("registry_resolve");
    let cases = [
        ("latest", VersionSelector::Latest),
        ("number", VersionSelector::Number(1)),
        ("label", VersionSelector::Label("stable".into())),
    ];
    for (name, selector) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                registry
                    .resolve(black_box(&model), black_box(&selector))
                    .expect("available")
            })
        });
    }
    group.bench_function("unknown_model_error", |b| {
        b.iter(|| {
            let result = registry.resolve(black_box("no_such_model"), &VersionSelector::Latest);
            assert!(result.is_err(), "no_such_model resolved");
            result
        })
    });
    group.finish();
}

criterion_group!(benches, decode, encode, validate, resolve);
criterion_main!(benches);
