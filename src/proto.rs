//! Generated protobuf / gRPC bindings (see `build.rs` and `proto/README.md`).
//!
//! Module paths mirror the protobuf packages:
//!
//! * [`tensorflow`]: `package tensorflow` (`TensorProto`, `TensorShapeProto`,
//!   `DataType`, `SignatureDef`, `TensorInfo`, `Example`, ...)
//! * [`tensorflow::serving`]: `package tensorflow.serving` (`PredictRequest`,
//!   `ModelSpec`, `GetModelMetadataRequest`, `SignatureDefMap`, `StatusProto`,
//!   `ModelServerConfig`, `prediction_service_server`/`_client`,
//!   `model_service_server`/`_client`, ...)
//! * [`tensorflow::error`]: `package tensorflow.error` (`Code`)
//! * [`inference`]: `package inference`, the `KServe` v2 / Open Inference
//!   Protocol (`ModelInferRequest`, `grpc_inference_service_server`/`_client`, ...)
//!
//! Every protobuf `bytes` field is generated as [`bytes::Bytes`].

/// `package tensorflow` (TensorFlow core framework / example / meta_graph types).
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unused_qualifications,
    unused_results,
    trivial_casts,
    trivial_numeric_casts,
    rustdoc::all
)]
pub mod tensorflow {
    tonic::include_proto!("tensorflow");

    /// `package tensorflow.serving` (TensorFlow Serving APIs and config).
    pub mod serving {
        tonic::include_proto!("tensorflow.serving");
    }

    /// `package tensorflow.error` (canonical TensorFlow error codes).
    pub mod error {
        tonic::include_proto!("tensorflow.error");
    }
}

/// `package inference` (`KServe` v2 / Open Inference Protocol gRPC API).
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    unused_qualifications,
    unused_results,
    trivial_casts,
    trivial_numeric_casts,
    rustdoc::all
)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// Encoded `google.protobuf.FileDescriptorSet` of every compiled `.proto`
/// (including imports), for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vinoserve_descriptor");
