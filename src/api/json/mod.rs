//! JSON ⇄ tensor bytes for both REST APIs: values decoded straight into typed buffers (no value
//! tree), and the threads large bodies are decoded on.

pub mod priority;
pub mod threads;
pub mod values;
