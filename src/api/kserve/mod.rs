//! KServe v2 (the Open Inference Protocol): `GRPCInferenceService` and the REST API
//! (`/v2/...`, with the binary-data extension), sharing one tensor codec.

pub mod codec;
pub mod grpc;
pub mod json;
pub mod json_data;
pub mod rest;
