//! The one place where errors become gRPC statuses: a code plus an ErrorInfo whose reason is a
//! stable machine-readable name (declared in `reasons.rs`). Messages are bounded: values a client sent are quoted through
//! `cluster::echo`, and every message is clipped to [`MAX_MESSAGE`] bytes besides.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::reasons;
use crate::cluster::placement::PlacementError;
use crate::cluster::{ClusterError, clip};
use crate::commit::ProposeError;

/// ErrorInfo domain of every error of this service.
pub const DOMAIN: &str = "fastblock.monitor";
/// Response metadata carrying the leader's address on NOT_LEADER errors.
pub const LEADER_HEADER: &str = "x-fastblock-leader";
/// The longest status message, in bytes. The message travels twice in the response headers
/// (`grpc-message` and inside `grpc-status-details-bin`), and gRPC clients refuse headers
/// beyond a few KiB.
pub const MAX_MESSAGE: usize = 1024;

/// A status with an ErrorInfo detail.
pub fn error(code: Code, reason: &str, message: impl Into<String>) -> Status {
    error_with_metadata(code, reason, message, HashMap::new())
}

/// A status with an ErrorInfo detail carrying `metadata`.
pub fn error_with_metadata(
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
        reasons::REQUEST_TOO_LARGE,
        format!("the {call} request message is {size} bytes; {call} accepts at most {limit} bytes"),
        [("limit_bytes".to_string(), limit.to_string())].into(),
    )
}

/// INVALID_ARGUMENT / INVALID_MESSAGE: the request is not a well-formed message of its call.
pub fn invalid_message(why: impl std::fmt::Display) -> Status {
    error(
        Code::InvalidArgument,
        reasons::INVALID_MESSAGE,
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
        ErrorDetails::with_error_info(reasons::NOT_LEADER, DOMAIN, metadata),
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
    use reasons as R;
    match e {
        E::UnknownFlag(_) => (C::InvalidArgument, R::INVALID_FLAG),
        E::InvalidUuid(_) => (C::InvalidArgument, R::INVALID_UUID),
        E::OsdNotFound(_) => (C::NotFound, R::OSD_NOT_FOUND),
        E::UuidMismatch { .. } => (C::FailedPrecondition, R::OSD_UUID_MISMATCH),
        E::InvalidAddress(_) => (C::InvalidArgument, R::INVALID_ADDRESS),
        E::InvalidPort { .. } => (C::InvalidArgument, R::INVALID_PORT),
        E::InvalidCoreNum => (C::InvalidArgument, R::INVALID_CORE_NUM),
        E::CoreNumMismatch { .. } => (C::FailedPrecondition, R::CORE_NUM_MISMATCH),
        E::InvalidShards(_) => (C::InvalidArgument, R::INVALID_SHARDS),
        E::InvalidBootInstance => (C::InvalidArgument, R::INVALID_BOOT_INSTANCE),
        E::ConfigTooLarge(_) => (C::InvalidArgument, R::CONFIG_TOO_LARGE),
        E::InvalidLocation { .. } => (C::InvalidArgument, R::INVALID_LOCATION),
        E::OsdAlreadyUp(_) => (C::FailedPrecondition, R::OSD_ALREADY_UP),
        E::OsdNotBooted(_) => (C::FailedPrecondition, R::OSD_NOT_BOOTED),
        E::StaleBootInstance(_) => (C::FailedPrecondition, R::STALE_BOOT_INSTANCE),
        E::OsdIsDown(_) => (C::FailedPrecondition, R::OSD_DOWN),
        E::OsdNotDownAndOut(_) => (C::FailedPrecondition, R::OSD_NOT_DOWN_AND_OUT),
        E::OsdHasPgs { .. } => (C::FailedPrecondition, R::OSD_HAS_PGS),
        E::InvalidWeight => (C::InvalidArgument, R::INVALID_WEIGHT),
        E::InvalidPoolName(_) => (C::InvalidArgument, R::INVALID_POOL_NAME),
        E::PoolNameExists(_) => (C::AlreadyExists, R::POOL_NAME_EXISTS),
        E::InvalidPgSize(_) => (C::InvalidArgument, R::INVALID_PG_SIZE),
        E::InvalidPgCount(_) => (C::InvalidArgument, R::INVALID_PG_COUNT),
        E::UnknownFailureDomain(_) => (C::InvalidArgument, R::UNKNOWN_FAILURE_DOMAIN),
        E::Placement(PlacementError::NoEnoughOsd { .. }) => {
            (C::FailedPrecondition, R::NO_ENOUGH_OSD)
        }
        E::Placement(PlacementError::FailureDomainNotSatisfied { .. }) => {
            (C::FailedPrecondition, R::FAILURE_DOMAIN_NEED_NOT_SATISFIED)
        }
        E::UnknownPoolName(_) => (C::NotFound, R::UNKNOWN_POOL_NAME),
        E::PoolNotFound(_) => (C::NotFound, R::POOL_NOT_FOUND),
        E::InvalidImageName => (C::InvalidArgument, R::INVALID_IMAGE_NAME),
        E::ImageNameTooLong(_) => (C::InvalidArgument, R::IMAGE_NAME_TOO_LONG),
        E::ImageExists(_) => (C::AlreadyExists, R::IMAGE_EXISTS),
        E::ImageNotFound(_) => (C::NotFound, R::IMAGE_NOT_FOUND),
        E::InvalidImageSize(_) => (C::InvalidArgument, R::INVALID_IMAGE_SIZE),
        E::InvalidObjectSize(_) => (C::InvalidArgument, R::INVALID_OBJECT_SIZE),
        E::ShrinkNotAllowed { .. } => (C::FailedPrecondition, R::IMAGE_SHRINK_NOT_ALLOWED),
        E::PgNotFound { .. } => (C::NotFound, R::PG_NOT_FOUND),
        E::InvalidMembers(_) => (C::InvalidArgument, R::INVALID_MEMBERS),
        E::LeaderNotMember { .. } => (C::InvalidArgument, R::LEADER_NOT_MEMBER),
        E::PgNotRemapped { .. } => (C::FailedPrecondition, R::PG_NOT_REMAPPED),
        E::MembersMismatch { .. } | E::MembersNotHeld { .. } => {
            (C::FailedPrecondition, R::PG_MEMBERS_MISMATCH)
        }
        E::ReporterMissing => (C::InvalidArgument, R::PG_REPORTER_MISSING),
        E::ReporterNotUp(_) => (C::FailedPrecondition, R::PG_REPORTER_NOT_UP),
        E::InvalidPgName(_) => (C::InvalidArgument, R::INVALID_PG_NAME),
        E::HealthCheckNotRaised(_) => (C::FailedPrecondition, R::HEALTH_CHECK_NOT_RAISED),
        E::HealthMuteNotFound(_) => (C::NotFound, R::HEALTH_MUTE_NOT_FOUND),
        E::InvalidMuteTtl(_) => (C::InvalidArgument, R::INVALID_MUTE_TTL),
        E::TooManyMutes(_) => (C::ResourceExhausted, R::TOO_MANY_MUTES),
        E::DuplicatePgName { .. } => (C::InvalidArgument, R::DUPLICATE_PG_NAME),
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
        ProposeError::Indeterminate(_) => {
            error(Code::Unavailable, reasons::COMMIT_UNKNOWN, e.to_string())
        }
        ProposeError::TooLarge { .. } => error(
            Code::ResourceExhausted,
            reasons::CHANGE_TOO_LARGE,
            e.to_string(),
        ),
    }
}

/// The ErrorInfo reason of a status, if it has one.
pub fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|i| i.reason)
}
