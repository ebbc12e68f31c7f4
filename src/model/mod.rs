//! Model versions: the registry requests read, the actors that change it, the worker pools.

pub mod batcher;
pub mod image;
pub mod manager;
pub mod model_actor;
pub mod policy;
pub mod pool;
pub mod readiness;
pub mod registry;
pub mod request;
pub mod servable;
pub mod validate;
pub mod versions;
pub mod warmup;
