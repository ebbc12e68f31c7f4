//! The gRPC transport shared by TF Serving's and KServe's services: the server and its threads,
//! accepting within limits, the lingering close, deadlines, the send timeout, the message codec,
//! health and reflection.

pub mod accept;
pub mod codec;
pub mod deadline;
pub mod linger;
pub mod meta;
pub mod send_watch;
pub mod server;
pub mod watched_body;
