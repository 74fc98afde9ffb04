//! The one place where errors become gRPC statuses: a code plus an ErrorInfo whose reason is a
//! stable machine-readable name. Messages are bounded: values a client sent are quoted through
//! `cluster::echo`, and every message is clipped to [`MAX_MESSAGE`] bytes besides.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::cluster::placement::PlacementError;
use crate::cluster::{ClusterError, clip};
use crate::commit::ProposeError;

/// ErrorInfo domain of every error of this service.
pub const DOMAIN: &str = "fastblock.monitor";
/// Response metadata carrying the leader's address on NOT_LEADER errors.
pub const LEADER_HEADER: &str = "x-fastblock-leader";
/// ErrorInfo reason of leader-only calls made on a standby.
pub const NOT_LEADER: &str = "NOT_LEADER";
/// ErrorInfo reason of a request message over its call's size limit.
pub const REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";
/// ErrorInfo reason of a request that is not one well-formed message of the call's type.
pub const INVALID_MESSAGE: &str = "INVALID_MESSAGE";
/// The longest status message, in bytes. The message travels twice in the response headers
/// (`grpc-message` and inside `grpc-status-details-bin`), and gRPC clients refuse headers
/// beyond a few KiB.
pub const MAX_MESSAGE: usize = 1024;

/// A status with an ErrorInfo detail.
pub fn error(code: Code, reason: &str, message: impl Into<String>) -> Status {
    error_with_metadata(code, reason, message, HashMap::new())
}

/// A status with an ErrorInfo detail carrying `metadata`.
fn error_with_metadata(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
) -> Status {
    Status::with_error_details(
        code,
        clip(&message.into(), MAX_MESSAGE),
        ErrorDetails::with_error_info(reason, DOMAIN, metadata),
    )
}

/// RESOURCE_EXHAUSTED / REQUEST_TOO_LARGE: a request message of `size` bytes on a call that
/// accepts at most `limit`. ErrorInfo.metadata["limit_bytes"] is the limit.
pub fn request_too_large(call: &str, size: usize, limit: usize) -> Status {
    error_with_metadata(
        Code::ResourceExhausted,
        REQUEST_TOO_LARGE,
        format!("the {call} request message is {size} bytes; {call} accepts at most {limit} bytes"),
        [("limit_bytes".to_string(), limit.to_string())].into(),
    )
}

/// INVALID_ARGUMENT / INVALID_MESSAGE: the request is not a well-formed message of its call.
pub fn invalid_message(why: impl std::fmt::Display) -> Status {
    error(
        Code::InvalidArgument,
        INVALID_MESSAGE,
        format!("malformed request: {why}"),
    )
}

/// UNAVAILABLE / NOT_LEADER, with the leader's address (may be empty) as a hint.
pub fn not_leader(leader: &str) -> Status {
    let message = if leader.is_empty() {
        "this monitor is not the leader and no leader is known; retry".to_string()
    } else {
        format!("this monitor is not the leader; the leader is {leader}")
    };
    let metadata: HashMap<String, String> = [("leader".to_string(), leader.to_string())]
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

/// The gRPC code and ErrorInfo reason of a refused command. docs/api.md lists the same table.
pub fn cluster_error_code(e: &ClusterError) -> (Code, &'static str) {
    use ClusterError as E;
    use Code as C;
    match e {
        E::UnknownFlag(_) => (C::InvalidArgument, "INVALID_FLAG"),
        E::InvalidUuid(_) => (C::InvalidArgument, "INVALID_UUID"),
        E::OsdNotFound(_) => (C::NotFound, "OSD_NOT_FOUND"),
        E::UuidMismatch { .. } => (C::FailedPrecondition, "OSD_UUID_MISMATCH"),
        E::InvalidAddress(_) => (C::InvalidArgument, "INVALID_ADDRESS"),
        E::InvalidPort { .. } => (C::InvalidArgument, "INVALID_PORT"),
        E::InvalidCoreNum => (C::InvalidArgument, "INVALID_CORE_NUM"),
        E::CoreNumMismatch { .. } => (C::FailedPrecondition, "CORE_NUM_MISMATCH"),
        E::InvalidShards(_) => (C::InvalidArgument, "INVALID_SHARDS"),
        E::InvalidBootInstance => (C::InvalidArgument, "INVALID_BOOT_INSTANCE"),
        E::ConfigTooLarge(_) => (C::InvalidArgument, "CONFIG_TOO_LARGE"),
        E::InvalidLocation { .. } => (C::InvalidArgument, "INVALID_LOCATION"),
        E::OsdAlreadyUp(_) => (C::FailedPrecondition, "OSD_ALREADY_UP"),
        E::OsdNotBooted(_) => (C::FailedPrecondition, "OSD_NOT_BOOTED"),
        E::StaleBootInstance(_) => (C::FailedPrecondition, "STALE_BOOT_INSTANCE"),
        E::OsdIsDown(_) => (C::FailedPrecondition, "OSD_DOWN"),
        E::OsdNotDownAndOut(_) => (C::FailedPrecondition, "OSD_NOT_DOWN_AND_OUT"),
        E::OsdHasPgs { .. } => (C::FailedPrecondition, "OSD_HAS_PGS"),
        E::InvalidWeight => (C::InvalidArgument, "INVALID_WEIGHT"),
        E::InvalidPoolName(_) => (C::InvalidArgument, "INVALID_POOL_NAME"),
        E::PoolNameExists(_) => (C::AlreadyExists, "POOL_NAME_EXISTS"),
        E::InvalidPgSize(_) => (C::InvalidArgument, "INVALID_PG_SIZE"),
        E::InvalidPgCount(_) => (C::InvalidArgument, "INVALID_PG_COUNT"),
        E::UnknownFailureDomain(_) => (C::InvalidArgument, "UNKNOWN_FAILURE_DOMAIN"),
        E::Placement(PlacementError::NoEnoughOsd { .. }) => {
            (C::FailedPrecondition, "NO_ENOUGH_OSD")
        }
        E::Placement(PlacementError::FailureDomainNotSatisfied { .. }) => {
            (C::FailedPrecondition, "FAILURE_DOMAIN_NEED_NOT_SATISFIED")
        }
        E::UnknownPoolName(_) => (C::NotFound, "UNKNOWN_POOL_NAME"),
        E::PoolNotFound(_) => (C::NotFound, "POOL_NOT_FOUND"),
        E::InvalidImageName => (C::InvalidArgument, "INVALID_IMAGE_NAME"),
        E::ImageNameTooLong(_) => (C::InvalidArgument, "IMAGE_NAME_TOO_LONG"),
        E::ImageExists(_) => (C::AlreadyExists, "IMAGE_EXISTS"),
        E::ImageNotFound(_) => (C::NotFound, "IMAGE_NOT_FOUND"),
        E::InvalidImageSize(_) => (C::InvalidArgument, "INVALID_IMAGE_SIZE"),
        E::InvalidObjectSize(_) => (C::InvalidArgument, "INVALID_OBJECT_SIZE"),
        E::ShrinkNotAllowed { .. } => (C::FailedPrecondition, "IMAGE_SHRINK_NOT_ALLOWED"),
        E::PgNotFound { .. } => (C::NotFound, "PG_NOT_FOUND"),
        E::InvalidMembers(_) => (C::InvalidArgument, "INVALID_MEMBERS"),
        E::LeaderNotMember { .. } => (C::InvalidArgument, "LEADER_NOT_MEMBER"),
        E::PgNotRemapped { .. } => (C::FailedPrecondition, "PG_NOT_REMAPPED"),
        E::MembersMismatch { .. } | E::MembersNotHeld { .. } => {
            (C::FailedPrecondition, "PG_MEMBERS_MISMATCH")
        }
        E::ReporterMissing => (C::InvalidArgument, "PG_REPORTER_MISSING"),
        E::ReporterNotUp(_) => (C::FailedPrecondition, "PG_REPORTER_NOT_UP"),
        E::InvalidPgName(_) => (C::InvalidArgument, "INVALID_PG_NAME"),
        E::DuplicatePgName { .. } => (C::InvalidArgument, "DUPLICATE_PG_NAME"),
    }
}

/// A refused command as a status.
pub fn cluster_error(e: &ClusterError) -> Status {
    let (code, reason) = cluster_error_code(e);
    error(code, reason, e.to_string())
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
