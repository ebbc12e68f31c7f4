//! Transports: each converts its wire format to the internal request and back.

pub mod config_rest;
pub mod status;
pub mod tfs_codec;
pub mod tfs_grpc;
pub mod tfs_json;
pub mod tfs_rest;
