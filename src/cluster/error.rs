//! Why a command was refused by the state machine. Each variant maps to one gRPC code and
//! ErrorInfo reason in `service::status`; docs/api.md lists them. A variant that quotes what a
//! client sent holds it through [`echo`], so no error carries more than a short prefix of it.
//!
//! [`PlacementError`] (why a pool cannot be placed) lives here beside the variant that wraps
//! it, not in `placement`: the model's own checks (`osd.rs`, `image.rs`) return these errors,
//! and placement builds on the model, so errors must not depend on placement.

use super::pool::FailureDomain;
use super::types::{OsdId, PgId, PoolId};

/// The most bytes of a client's value an error quotes.
pub const ECHO_BYTES: usize = 64;

/// A client's value as errors quote it: unchanged up to [`ECHO_BYTES`] bytes, else its first
/// bytes (cut on a character boundary) and its length, e.g. `abc…(1048576 bytes)`. Error
/// messages travel in gRPC headers, which clients cap at a few KiB.
pub fn echo(value: &str) -> String {
    clip(value, ECHO_BYTES)
}

/// `text` unchanged up to `max` bytes (control characters escaped), else its first bytes up to
/// `max` (cut on a character boundary) followed by `…(N bytes)`.
pub fn clip(text: &str, max: usize) -> String {
    match crate::text::escape_and_cut(text, max) {
        (out, true) => format!("{out}…({} bytes)", text.len()),
        (out, false) => out,
    }
}

/// A command the state machine refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("unknown cluster flag value {0}")]
    UnknownFlag(i32),
    #[error("invalid uuid '{0}': use 36-char hyphenated, braced, urn:uuid: or 32 hex digits")]
    InvalidUuid(String),
    #[error("{0} does not exist (apply an id first)")]
    OsdNotFound(OsdId),
    #[error("uuid {given} does not match the uuid {id} was applied with")]
    UuidMismatch { id: OsdId, given: String },
    #[error("address '{0}' is not a unicast IP address")]
    InvalidAddress(String),
    #[error("shard {shard}: port {port} is out of range 1..=65535")]
    InvalidPort { shard: u32, port: u32 },
    #[error("core_num must be at least 1")]
    InvalidCoreNum,
    #[error("core_num {given} differs from the cluster's {cluster}")]
    CoreNumMismatch { cluster: u32, given: u32 },
    #[error("shard ports: {0}")]
    InvalidShards(String),
    #[error("config text is {0} bytes; the limit is 262144")]
    ConfigTooLarge(usize),
    #[error("boot_instance must not be 0")]
    InvalidBootInstance,
    #[error("{field}: {reason}")]
    InvalidLocation { field: &'static str, reason: String },
    #[error(
        "{0} is already up with another boot instance; stop it (OsdStop) before booting a new instance"
    )]
    OsdAlreadyUp(OsdId),
    #[error("{0} is not booted")]
    OsdNotBooted(OsdId),
    #[error("{0}: the boot instance is not the current one (a newer boot replaced it)")]
    StaleBootInstance(OsdId),
    #[error("{0} is down; only an up OSD can be marked in")]
    OsdIsDown(OsdId),
    #[error("{0} must be down and out before it can be purged")]
    OsdNotDownAndOut(OsdId),
    #[error("{osd} still holds {pgs} PGs; wait until they are remapped")]
    OsdHasPgs { osd: OsdId, pgs: usize },
    #[error("weight must be a number in 0..=100")]
    InvalidWeight,
    #[error("pool name must be 1..=255 bytes, got {0} bytes")]
    InvalidPoolName(usize),
    #[error("a pool named '{0}' exists")]
    PoolNameExists(String),
    #[error("pg size must be in 1..=16, got {0}")]
    InvalidPgSize(u32),
    #[error("pg count must be in 1..=131072, got {0}")]
    InvalidPgCount(u32),
    #[error("unknown failure domain '{0}' (use osd, host, rack or root)")]
    UnknownFailureDomain(String),
    #[error("{0}")]
    Placement(PlacementError),
    #[error("no pool named '{0}'")]
    UnknownPoolName(String),
    #[error("{0} does not exist")]
    PoolNotFound(PoolId),
    #[error("image name must not be empty")]
    InvalidImageName,
    #[error("image name is {0} bytes; the limit is 512")]
    ImageNameTooLong(usize),
    #[error("image '{0}' exists in this pool")]
    ImageExists(String),
    #[error("no image '{0}' in this pool")]
    ImageNotFound(String),
    #[error("image size {0} must be greater than 0 and a multiple of 512")]
    InvalidImageSize(u64),
    #[error("object size {0} must be a power of two from 4096 to 1073741824")]
    InvalidObjectSize(u64),
    #[error(
        "shrinking image '{name}' from {from} to {to} bytes destroys data; ask with allow_shrink"
    )]
    ShrinkNotAllowed { name: String, from: u64, to: u64 },
    #[error("{pool} has no {pg}")]
    PgNotFound { pool: PoolId, pg: PgId },
    #[error("members: {0}")]
    InvalidMembers(String),
    #[error("{leader} is not a member of {pool} {pg} nor of its membership change in progress")]
    LeaderNotMember {
        leader: OsdId,
        pool: PoolId,
        pg: PgId,
    },
    #[error("the reporting OSD (leader_id) is missing; it must be an up member of the PG")]
    ReporterMissing,
    #[error("{0} is not up (never booted, down or held down); only an up OSD reports for its PGs")]
    ReporterNotUp(OsdId),
    #[error(
        "{pool} {pg}: the reported {reported} are not the PG's as the monitor holds them \
         ({held}); read the pgmap again"
    )]
    MembersNotHeld {
        pool: PoolId,
        pg: PgId,
        reported: String,
        held: String,
    },
    #[error("{pool} {pg} has no membership change in progress")]
    PgNotRemapped { pool: PoolId, pg: PgId },
    #[error("{pool} {pg}: reported members {reported} differ from the target {target}")]
    MembersMismatch {
        pool: PoolId,
        pg: PgId,
        reported: String,
        target: String,
    },
    #[error("{0} is not a PG name like <pool id>.<pg id>")]
    InvalidPgName(String),
    #[error(
        "health check {0} is not raised; mute it ahead of time with sticky (it then stays muted \
         until unmuted or its ttl ends)"
    )]
    HealthCheckNotRaised(String),
    #[error("health check {0} is not muted")]
    HealthMuteNotFound(String),
    #[error("mute ttl {0} ms is out of range 1 ms..=365 days")]
    InvalidMuteTtl(u64),
    #[error("{0} health checks are muted already; unmute one first")]
    TooManyMutes(usize),
    #[error("{pool} {pg} is named twice in one report")]
    DuplicatePgName { pool: PoolId, pg: PgId },
}

/// Why a placement is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "not enough OSDs: {needed} replicas need {needed} usable OSDs under root '{root}', {available} available"
    )]
    NoEnoughOsd {
        available: usize,
        needed: u32,
        root: String,
    },
    #[error(
        "failure domain {failure_domain} cannot hold {needed} replicas: only {domains} distinct {failure_domain} domains under root '{root}'"
    )]
    FailureDomainNotSatisfied {
        domains: usize,
        needed: u32,
        failure_domain: FailureDomain,
        root: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(echo(""), "");
        assert_eq!(echo("rbd"), "rbd");
        let exact = "x".repeat(ECHO_BYTES);
        assert_eq!(echo(&exact), exact);
    }

    #[test]
    fn long_values_keep_a_prefix_and_their_length() {
        let long = "a".repeat(1 << 20);
        let e = echo(&long);
        assert_eq!(e, format!("{}…(1048576 bytes)", "a".repeat(ECHO_BYTES)));
        let one_over = "b".repeat(ECHO_BYTES + 1);
        assert_eq!(
            echo(&one_over),
            format!("{}…(65 bytes)", "b".repeat(ECHO_BYTES))
        );
    }

    #[test]
    fn the_cut_never_splits_a_character() {
        // 63 ASCII bytes then a 3-byte character straddling the 64-byte mark: the cut falls
        // before it.
        let text = format!("{}€€€", "a".repeat(ECHO_BYTES - 1));
        assert_eq!(
            echo(&text),
            format!("{}…({} bytes)", "a".repeat(ECHO_BYTES - 1), text.len())
        );
        // Only multi-byte characters: the prefix is whole characters, at most 64 bytes.
        let text = "é".repeat(100);
        let e = echo(&text);
        assert_eq!(e, format!("{}…(200 bytes)", "é".repeat(32)));
        let text = "😀".repeat(40);
        let e = echo(&text);
        assert_eq!(e, format!("{}…(160 bytes)", "😀".repeat(16)));
        let text = format!("ab{}", "😀".repeat(40));
        assert_eq!(echo(&text), format!("ab{}…(162 bytes)", "😀".repeat(15)));
    }

    #[test]
    fn clip_bounds_any_text() {
        assert_eq!(clip("hello", 5), "hello");
        assert_eq!(clip("hello!", 5), "hello…(6 bytes)");
        assert_eq!(clip("€", 2), "…(3 bytes)");
    }
}
