//! vinoserve: an OpenVINO model server speaking TensorFlow Serving's and KServe v2's APIs.

pub mod api;
pub mod check;
pub mod config;
pub mod control;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod placement;
pub mod proto;
pub mod repository;
pub mod runtime;
pub mod server;
pub mod serving;
pub mod systemd;
pub mod telemetry;
pub mod tensor;
pub mod topology;
