//! Transports: each converts its wire format to the internal request and back.

pub mod accept;
pub mod codec;
pub mod config_rest;
pub mod deadline;
pub mod grpc_meta;
pub mod grpc_server;
pub mod json_threads;
pub mod json_values;
pub mod kserve_codec;
pub mod kserve_grpc;
pub mod kserve_json;
pub mod kserve_json_data;
pub mod kserve_rest;
pub mod linger;
pub mod rest_body;
pub mod rest_routes;
pub mod status;
pub mod tfs_codec;
pub mod tfs_grpc;
pub mod tfs_json;
pub mod tfs_json_decode;
pub mod tfs_rest;
pub mod trace;
