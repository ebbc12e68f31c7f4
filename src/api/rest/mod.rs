//! The REST transport shared by TF Serving's and KServe's APIs: body limits and timeouts,
//! method-checked routes, and OVMS's config endpoints.

pub mod body;
pub mod config;
pub mod routes;
