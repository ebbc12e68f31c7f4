//! Build script: compiles the vendored TensorFlow Serving and KServe v2 (Open
//! Inference Protocol) `.proto` files under `proto/` into tonic/prost Rust code
//! in `OUT_DIR`, plus a file descriptor set for gRPC reflection.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so no system protoc is
//! needed. The `google/protobuf/*.proto` well-known types are taken from the
//! include directory bundled with it and mapped to `prost_types`.

use std::env;
use std::path::PathBuf;

/// Every `.proto` file that defines a service we serve or call. All their
/// transitive imports (tensor.proto, meta_graph.proto, model_server_config.proto,
/// example.proto, error_codes.proto, ...) are generated as well.
const PROTOS: &[&str] = &[
    // TensorFlow Serving (package tensorflow.serving)
    "proto/tensorflow_serving/apis/prediction_service.proto",
    "proto/tensorflow_serving/apis/model_service.proto",
    // Message-only files, listed explicitly so they are generated even if a
    // service stops importing them.
    "proto/tensorflow_serving/apis/predict.proto",
    "proto/tensorflow_serving/apis/get_model_metadata.proto",
    "proto/tensorflow_serving/apis/get_model_status.proto",
    "proto/tensorflow_serving/apis/model_management.proto",
    "proto/tensorflow_serving/apis/classification.proto",
    "proto/tensorflow_serving/apis/regression.proto",
    "proto/tensorflow_serving/apis/inference.proto",
    // Warm-up records (assets.extra/tf_serving_warmup_requests).
    "proto/tensorflow_serving/apis/prediction_log.proto",
    "proto/tensorflow_serving/config/model_server_config.proto",
    // KServe v2 / Open Inference Protocol (package inference)
    "proto/kserve/grpc_predict_v2.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let wkt_include = protoc_bin_vendored::include_path()?;
    // prost-build reads the PROTOC environment variable. Build scripts run as
    // their own single-threaded process, so setting it here is sound.
    env::set_var("PROTOC", &protoc);

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let proto_root = PathBuf::from("proto");

    // `prost::Name` impls for every message, so e.g. a `SignatureDefMap` can be
    // packed with `prost_types::Any::from_msg` (type URL
    // `type.googleapis.com/tensorflow.serving.SignatureDefMap`), as
    // GetModelMetadataResponse.metadata requires.
    let mut prost_config = tonic_prost_build::Config::new();
    prost_config.enable_type_names();
    prost_config.type_name_domain(["."], "type.googleapis.com");

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Zero-copy: every `bytes` field (tensor_content, string_val,
        // raw_input_contents, raw_output_contents, bytes_contents, ...) becomes
        // `bytes::Bytes`, decoded by slicing tonic's decode buffer
        // (`copy_to_bytes`) instead of copying into a `Vec<u8>`.
        .bytes(".")
        // Malformed protobuf from a client is INVALID_ARGUMENT, not INTERNAL (src/api/grpc/codec.rs).
        .codec_path("crate::api::grpc::codec::StrictCodec")
        .file_descriptor_set_path(out_dir.join("vinoserve_descriptor.bin"))
        .compile_with_config(
            prost_config,
            PROTOS,
            &[
                proto_root.to_str().ok_or("non UTF-8 proto path")?,
                wkt_include
                    .to_str()
                    .ok_or("non UTF-8 protoc include path")?,
            ],
        )?;

    Ok(())
}
