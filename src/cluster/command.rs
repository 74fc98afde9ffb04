//! Commands: what callers ask of the leader. Each command is a type of its own that names its
//! reply type ([`super::reply`]) and the handler that applies it, so the reply a caller gets is
//! checked by the compiler. [`ClusterState::apply`] runs a command atomically.
//!
//! The handlers live in `osd_ops.rs`, `pool_ops.rs`, `image_ops.rs`, `rebalance_ops.rs` and
//! `health_ops.rs`.

use std::fmt::Debug;
use std::sync::Arc;

use super::error::ClusterError;
use super::events::EventBody;
use super::flags::ClusterFlag;
use super::health::{Health, Observed};
use super::out_guards::OutGuards;
use super::placement::PlannedMove;
use super::reply;
use super::state::{Applied, ClusterState};
use super::types::{OsdId, PgId, PoolId};

/// A change requested of the leader, and what its caller hears back.
pub trait Command: Debug + Send + 'static {
    /// What the caller hears once the command's group committed.
    type Reply: Debug + Send + 'static;

    /// Applies the command to `state` through its handler. Call [`ClusterState::apply`], which
    /// also undoes whatever a refused command changed.
    fn handle(&self, state: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError>;

    /// Whether applying it may take long enough (seconds of CPU, e.g. placing a large pool)
    /// that the commit pipeline should first move the runtime's other tasks off its thread.
    fn heavy(&self) -> bool {
        false
    }
}

/// PGs above which creating a pool counts as [`Command::heavy`].
pub const HEAVY_POOL_PGS: u32 = 4096;

impl ClusterState {
    /// Applies one command. On error nothing changed.
    pub fn apply<C: Command>(&mut self, command: &C) -> Result<Applied<C::Reply>, ClusterError> {
        let before = self.clone();
        match command.handle(self) {
            Ok(mut applied) => {
                let derived = self.events_since(&before, &applied.touched);
                applied.events.splice(0..0, derived);
                Ok(applied)
            }
            Err(e) => {
                *self = before;
                Err(e)
            }
        }
    }
}

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

/// Hands out the OSD id of a uuid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyId {
    pub uuid: String,
}

/// Registers a (re)started OSD process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot(pub BootArgs);

/// A planned stop: the OSD goes down now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdStop {
    pub id: OsdId,
}

/// Failure detector: these OSDs missed their heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkDown {
    pub ids: Vec<OsdId>,
}

/// A heartbeat from a run that was marked down: it is alive after all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkUp {
    pub id: OsdId,
    pub instance: u64,
}

/// Failure detector: these OSDs have been down long enough.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkOut {
    pub ids: Vec<OsdId>,
    pub guards: OutGuards,
}

/// An operator's out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdOut {
    pub id: OsdId,
}

/// An operator's in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdIn {
    pub id: OsdId,
}

/// Moves an OSD in the topology (None: keep that label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetLocation {
    pub id: OsdId,
    pub host: Option<String>,
    pub rack: Option<String>,
    pub root: Option<String>,
}

/// Changes an OSD's placement weight.
#[derive(Debug, Clone, PartialEq)]
pub struct SetWeight {
    pub id: OsdId,
    pub weight: f64,
}

/// Removes an OSD for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    pub id: OsdId,
}

/// Sets a cluster flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFlag(pub ClusterFlag);

/// Clears a cluster flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsetFlag(pub ClusterFlag);

/// Records events that describe no change of the state (a leader elected, a health check
/// raised): they are written like any change's events, with ids in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvents(pub Vec<EventBody>);

/// The health task: what fails now, against what was raised (see `Health::reconcile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileHealth {
    pub observed: Vec<Observed>,
    pub now_ms: u64,
    /// Codes whose raised check stays raised when not observed (the term is too young for
    /// what they are built on).
    pub held: Vec<String>,
}

/// Mutes a health check, for `ttl_ms` or until unmuted; `sticky` outlives its clearing and
/// worsening (and allows muting a check that is not raised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuteHealth {
    pub code: String,
    pub ttl_ms: Option<u64>,
    pub sticky: bool,
    pub now_ms: u64,
}

/// Ends the mute of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmuteHealth {
    pub code: String,
}

/// Reconciler: replay what a cleared `noup`/`noin` deferred for these OSDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseDeferred {
    pub ids: Vec<OsdId>,
}

/// Creates a pool and places its PGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePool(pub PoolArgs);

/// Deletes a pool with its PGs and images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePool {
    pub name: String,
}

/// Creates an image (`object_size` 0: the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateImage {
    pub pool: String,
    pub name: String,
    pub size: u64,
    pub object_size: u64,
}

/// Removes an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveImage {
    pub pool: String,
    pub name: String,
}

/// Resizes an image (shrinking only when allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeImage {
    pub pool: String,
    pub name: String,
    pub size: u64,
    pub allow_shrink: bool,
}

/// A PG's raft leader reports in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderBeElected {
    pub leader: OsdId,
    pub pool: PoolId,
    pub pg: PgId,
    pub members: Vec<OsdId>,
    pub new_members: Vec<OsdId>,
}

/// A PG's member change finished (or failed: `result` is not 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChangeFinish {
    /// The OSD reporting (None: the request did not say).
    pub reporter: Option<OsdId>,
    pub result: i32,
    pub pool: PoolId,
    pub pg: PgId,
    pub members: Vec<OsdId>,
}

/// Reconciler: bring these PGs' health bits and pending remaps up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshPgs {
    pub pool: PoolId,
    pub pgs: Vec<PgId>,
}

/// Reconciler: remap these PGs to even out the load (moves still valid are applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Rebalance {
    pub pool: PoolId,
    pub moves: Vec<PlannedMove>,
}

impl Command for ApplyId {
    type Reply = reply::AppliedId;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.apply_id(&self.uuid)
    }
}

impl Command for Boot {
    type Reply = reply::Booted;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.boot(&self.0)
    }
}

impl Command for OsdStop {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.osd_stop(self.id)
    }
}

impl Command for MarkDown {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        Ok(s.mark_down(&self.ids))
    }
}

impl Command for MarkUp {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.mark_up(self.id, self.instance)
    }
}

impl Command for MarkOut {
    type Reply = reply::MarkedOut;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        Ok(s.mark_out(&self.ids, &self.guards))
    }
}

impl Command for OsdOut {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.osd_out(self.id)
    }
}

impl Command for OsdIn {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.osd_in(self.id)
    }
}

impl Command for SetLocation {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.set_location(
            self.id,
            self.host.as_deref(),
            self.rack.as_deref(),
            self.root.as_deref(),
        )
    }
}

impl Command for SetWeight {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.set_weight(self.id, self.weight)
    }
}

impl Command for Purge {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.purge(self.id)
    }
}

impl Command for SetFlag {
    type Reply = reply::Flags;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        Ok(s.set_flag(self.0))
    }
}

impl Command for UnsetFlag {
    type Reply = reply::Flags;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        Ok(s.unset_flag(self.0))
    }
}

impl Command for RecordEvents {
    type Reply = ();
    fn handle(&self, _: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        let mut applied = Applied::new(());
        applied.events = self.0.clone();
        Ok(applied)
    }
}

impl Command for ReconcileHealth {
    type Reply = Arc<Health>;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        Ok(s.reconcile_health(&self.observed, self.now_ms, &self.held))
    }
}

impl Command for MuteHealth {
    type Reply = Arc<Health>;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.mute_health(&self.code, self.ttl_ms, self.sticky, self.now_ms)
    }
}

impl Command for UnmuteHealth {
    type Reply = Arc<Health>;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.unmute_health(&self.code)
    }
}

impl Command for ReleaseDeferred {
    type Reply = reply::OsdMap;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        Ok(s.release_deferred(&self.ids))
    }
}

impl Command for CreatePool {
    type Reply = reply::PoolCreated;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.create_pool(&self.0)
    }
    fn heavy(&self) -> bool {
        self.0.pg_count > HEAVY_POOL_PGS
    }
}

impl Command for DeletePool {
    type Reply = reply::PoolDeleted;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.delete_pool(&self.name)
    }
}

impl Command for CreateImage {
    type Reply = reply::Image;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.create_image(&self.pool, &self.name, self.size, self.object_size)
    }
}

impl Command for RemoveImage {
    type Reply = reply::ImageRemoved;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.remove_image(&self.pool, &self.name)
    }
}

impl Command for ResizeImage {
    type Reply = reply::Image;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.resize_image(&self.pool, &self.name, self.size, self.allow_shrink)
    }
}

impl Command for LeaderBeElected {
    type Reply = reply::Pg;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.leader_be_elected(
            self.leader,
            self.pool,
            self.pg,
            &self.members,
            &self.new_members,
        )
    }
}

impl Command for MemberChangeFinish {
    type Reply = reply::Pg;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.member_change_finish(
            self.reporter,
            self.result,
            self.pool,
            self.pg,
            &self.members,
        )
    }
}

impl Command for RefreshPgs {
    type Reply = reply::Refreshed;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.refresh_pgs(self.pool, &self.pgs)
    }
}

impl Command for Rebalance {
    type Reply = reply::Refreshed;
    fn handle(&self, s: &mut ClusterState) -> Result<Applied<Self::Reply>, ClusterError> {
        s.rebalance(self.pool, &self.moves)
    }
}
