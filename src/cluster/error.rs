//! Why a command was refused by the state machine. Each variant maps to one gRPC code and
//! ErrorInfo reason in `service::status`; docs/api.md lists them.

use super::placement::PlacementError;
use super::types::{OsdId, PgId, PoolId};

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
    #[error("{pool} {pg} is named twice in one report")]
    DuplicatePgName { pool: PoolId, pg: PgId },
}
