//! The gRPC services: thin handlers that validate, call the core, and map errors to Status.

mod monitor;
pub mod status;

pub use monitor::MonitorService;
