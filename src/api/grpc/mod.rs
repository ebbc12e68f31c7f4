//! The gRPC transport shared by TF Serving's and KServe's services: the server and its threads,
//! accepting within limits, the lingering close, deadlines, the message codec, health and
//! reflection.

pub mod accept;
pub mod codec;
pub mod deadline;
pub mod linger;
pub mod meta;
pub mod server;
