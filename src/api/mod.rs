//! The front ends: each protocol turns its wire format into the internal request
//! (`serving::request`) and the answer back, and maps errors to its codes (`status`).
//!
//! - `tfs`: TensorFlow Serving's gRPC and REST APIs, sharing its tensor codec and JSON formats;
//! - `kserve`: KServe v2 (Open Inference Protocol) over gRPC and REST;
//! - `handling`: the one wrapper every handler goes through (span, timing, metrics, errors);
//! - `tensor_pack`: shapes, value counts and typed values packed into bytes, for both tensor
//!   codecs;
//! - `json`: JSON ⇄ tensor bytes without a value tree, shared by both REST APIs;
//! - `grpc`: the gRPC transport (accepting within limits, lingering close, deadlines, the codec,
//!   health and reflection);
//! - `rest`: the REST transport (body limits and timeouts, routes, the config endpoints).

pub mod grpc;
pub mod handling;
pub mod json;
pub mod kserve;
pub mod rest;
pub mod status;
pub mod tensor_pack;
pub mod tfs;
pub mod trace;
