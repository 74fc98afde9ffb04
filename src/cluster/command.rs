//! Commands (what callers ask of the leader) and outcomes (what they hear back).

use super::flags::{ClusterFlag, Flags};
use super::image::Image;
use super::out_guards::{OutGuards, OutRefusal};
use super::placement::PlannedMove;
use super::types::{Epoch, ImageId, OsdId, PgId, PoolId};

/// Ports of one shard as reported by Boot (validated by the state machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardArg {
    pub shard: u32,
    pub core_id: u32,
    pub port: u32,
    pub raw_port: u32,
}

/// Everything Boot reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    pub id: OsdId,
    pub uuid: String,
    pub size: u64,
    pub shards: Vec<ShardArg>,
    pub address: String,
    pub host: String,
    pub core_num: u32,
    pub config: String,
    pub instance: u64,
    /// Empty: keep the current label.
    pub rack: String,
    pub root: String,
}

/// What CreatePool asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolArgs {
    pub name: String,
    pub size: u32,
    pub pg_count: u32,
    pub failure_domain: String,
    pub root: String,
}

/// A change requested of the leader.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ApplyId {
        uuid: String,
    },
    Boot(Box<BootArgs>),
    OsdStop {
        id: OsdId,
    },
    /// Failure detector: these OSDs missed their heartbeats.
    MarkDown {
        ids: Vec<OsdId>,
    },
    /// A heartbeat from a run that was marked down: it is alive after all.
    MarkUp {
        id: OsdId,
        instance: u64,
    },
    /// Failure detector: these OSDs have been down long enough.
    MarkOut {
        ids: Vec<OsdId>,
        guards: OutGuards,
    },
    OsdOut {
        id: OsdId,
    },
    OsdIn {
        id: OsdId,
    },
    SetLocation {
        id: OsdId,
        host: Option<String>,
        rack: Option<String>,
        root: Option<String>,
    },
    SetWeight {
        id: OsdId,
        weight: f64,
    },
    Purge {
        id: OsdId,
    },
    SetFlag(ClusterFlag),
    UnsetFlag(ClusterFlag),
    /// Reconciler: replay what a cleared `noup`/`noin` deferred for these OSDs.
    ReleaseDeferred {
        ids: Vec<OsdId>,
    },
    CreatePool(PoolArgs),
    DeletePool {
        name: String,
    },
    CreateImage {
        pool: String,
        name: String,
        size: u64,
        object_size: u64,
    },
    RemoveImage {
        pool: String,
        name: String,
    },
    ResizeImage {
        pool: String,
        name: String,
        size: u64,
        allow_shrink: bool,
    },
    LeaderBeElected {
        leader: OsdId,
        pool: PoolId,
        pg: PgId,
        members: Vec<OsdId>,
        new_members: Vec<OsdId>,
    },
    MemberChangeFinish {
        /// The OSD reporting (None: the request did not say).
        reporter: Option<OsdId>,
        result: i32,
        pool: PoolId,
        pg: PgId,
        members: Vec<OsdId>,
    },
    /// Reconciler: bring these PGs' health bits and pending remaps up to date.
    RefreshPgs {
        pool: PoolId,
        pgs: Vec<PgId>,
    },
    /// Reconciler: remap these PGs to even out the load (moves still valid are applied).
    Rebalance {
        pool: PoolId,
        moves: Vec<PlannedMove>,
    },
}

/// What a command did, reported to its caller once its group has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    AppliedId {
        id: OsdId,
        osdmap_epoch: Epoch,
    },
    Booted {
        osdmap_epoch: Epoch,
        held_down: bool,
    },
    /// Any other osdmap change (or none).
    OsdMap {
        osdmap_epoch: Epoch,
    },
    Flags {
        flags: Flags,
        osdmap_epoch: Epoch,
    },
    PoolCreated {
        id: PoolId,
        epoch: Epoch,
    },
    PoolDeleted {
        id: PoolId,
        epoch: Epoch,
    },
    Image(Image),
    ImageRemoved(ImageId),
    Pg {
        pool_epoch: Epoch,
        state: u32,
        version: Epoch,
    },
    /// Reconciler: how many PGs changed.
    Refreshed {
        changed: usize,
    },
    /// Failure detector's outs: those done and those the guards refused.
    MarkedOut {
        marked: Vec<OsdId>,
        refused: Vec<(OsdId, OutRefusal)>,
    },
}
