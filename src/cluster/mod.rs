//! The pure core: cluster state, the commands that change it, placement, and the records it is
//! stored as. No async, no etcd, no clock reads; everything here is unit-testable in
//! milliseconds.

pub mod command;
mod error;
pub mod events;
pub mod failure;
mod flags;
pub mod health;
mod health_ops;
mod image;
mod image_ops;
pub mod iostats;
mod osd;
mod osd_ops;
mod out_guards;
pub mod placement;
mod pool;
mod pool_ops;
mod queries;
mod rebalance_ops;
mod records;
pub mod reply;
pub(crate) mod state;
pub mod topology;
mod types;

#[cfg(test)]
mod tests;

pub use command::{BootArgs, Command, PoolArgs, ShardArg};
pub use error::{ClusterError, ECHO_BYTES, clip, echo};
pub use events::{Event, EventBody, EventType};
pub use flags::{ClusterFlag, Flags};
pub use health::{Health, Severity};
pub use image::{DEFAULT_OBJECT_SIZE, Image, MAX_IMAGE_NAME};
pub use osd::{
    DEFAULT_ROOT, DownReason, Liveness, Location, MAX_ADDRESS_TEXT, MAX_CONFIG_TEXT, MAX_LABEL,
    MAX_UUID_TEXT, Membership, Osd, OutReason, Shard, check_label, config_hash, label_too_long,
    parse_uuid,
};
pub use out_guards::{OutGuards, OutRefusal, SubtreeLimit};
pub use placement::PlannedMove;
/// The state a PG's members give it (the Go import counts the PGs our reconciler will refresh).
pub(crate) use pool::state_for;
pub use pool::{
    FailureDomain, MAX_PG_COUNT, MAX_PG_SIZE, MAX_POOL_NAME, PG_CHUNK, Pg, PgState, PgTable, Pool,
    REFRESH_BATCH, Target, chunk_of,
};
pub use records::{
    Counters, DecodeError, OsdMapMeta, PoolSettings, Record, RecordKey, Tombstone,
    decode_event_batch, decode_record, encode_event_batch, encode_record, event_size,
};
/// A state of `n` booted OSDs on `hosts` hosts, for unit tests outside the core.
#[cfg(test)]
pub(crate) use state::tests::cluster as test_cluster;
pub use state::{Applied, BlobKey, ClusterState, LoadError};
pub use types::{BootInstance, Epoch, ImageId, LeaderEpoch, OsdId, PgId, PoolId, Weight};
