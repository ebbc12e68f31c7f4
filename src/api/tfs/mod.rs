//! TensorFlow Serving's APIs: `PredictionService` and `ModelService` over gRPC, and the REST API
//! (`/v1/models/...`), sharing one tensor codec and the JSON row/columnar formats.

pub mod codec;
pub mod grpc;
pub mod json;
pub mod json_decode;
pub mod rest;
