//! Why a command was refused by the state machine. Each variant maps to one gRPC code and
//! ErrorInfo reason in `service::status`.

/// A command the state machine refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("unknown cluster flag value {0}")]
    UnknownFlag(i32),
}
