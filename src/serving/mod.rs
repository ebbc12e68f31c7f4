//! The data plane: what a request touches on its way to an inference. The registry (one
//! lock-free snapshot of what serves), a version's servable and its worker pool, request
//! validation, image decoding and dynamic batching. Nothing here decides what serves; the
//! control plane (`crate::control`) publishes into the registry.

pub mod batcher;
pub mod image;
pub mod pool;
pub mod registry;
pub mod request;
pub mod servable;
pub mod validate;
pub mod warmup;
