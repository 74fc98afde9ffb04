//! The one place where errors become gRPC statuses: a code plus an ErrorInfo whose reason is a
//! stable machine-readable name.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::cluster::ClusterError;
use crate::commit::ProposeError;

/// ErrorInfo domain of every error of this service.
pub const DOMAIN: &str = "fastblock.monitor";
/// Response metadata carrying the leader's address on NOT_LEADER errors.
pub const LEADER_HEADER: &str = "x-fastblock-leader";
/// ErrorInfo reason of leader-only calls made on a standby.
pub const NOT_LEADER: &str = "NOT_LEADER";

/// A status with an ErrorInfo detail.
pub fn error(code: Code, reason: &str, message: impl Into<String>) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, std::collections::HashMap::new()),
    )
}

/// UNAVAILABLE / NOT_LEADER, with the leader's address (may be empty) as a hint.
pub fn not_leader(leader: &str) -> Status {
    let message = if leader.is_empty() {
        "this monitor is not the leader and no leader is known; retry".to_string()
    } else {
        format!("this monitor is not the leader; the leader is {leader}")
    };
    let metadata: std::collections::HashMap<String, String> =
        [("leader".to_string(), leader.to_string())]
            .into_iter()
            .collect();
    let mut status = Status::with_error_details(
        Code::Unavailable,
        message,
        ErrorDetails::with_error_info(NOT_LEADER, DOMAIN, metadata),
    );
    if let Ok(v) = leader.parse() {
        status.metadata_mut().insert(LEADER_HEADER, v);
    }
    status
}

/// The reason name of a refused command.
pub fn cluster_error(e: &ClusterError) -> Status {
    match e {
        ClusterError::UnknownFlag(_) => error(Code::InvalidArgument, "INVALID_FLAG", e.to_string()),
    }
}

/// Maps a failed proposal; `leader` is the hint for NOT_LEADER.
pub fn propose_error(e: &ProposeError, leader: &str) -> Status {
    match e {
        ProposeError::Rejected(c) => cluster_error(c),
        ProposeError::NotLeader => not_leader(leader),
        ProposeError::Indeterminate(_) => error(Code::Unavailable, "COMMIT_UNKNOWN", e.to_string()),
        ProposeError::TooLarge { .. } => {
            error(Code::ResourceExhausted, "CHANGE_TOO_LARGE", e.to_string())
        }
    }
}

/// The ErrorInfo reason of a status, if it has one.
pub fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|i| i.reason)
}
