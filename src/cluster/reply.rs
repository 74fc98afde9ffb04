//! What each command reports to its caller once its group committed: one type per kind of
//! answer, named by [`super::Command::Reply`], so a caller can only receive its own command's
//! reply.

use super::flags;
use super::image;
use super::out_guards::OutRefusal;
use super::types::{Epoch, ImageId, OsdId, PoolId};

/// ApplyId: the OSD id of the uuid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedId {
    pub id: OsdId,
    pub osdmap_epoch: Epoch,
}

/// Boot: the osdmap epoch, and whether `noup` holds the OSD down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booted {
    pub osdmap_epoch: Epoch,
    pub held_down: bool,
}

/// Any other osdmap change (or none): the osdmap epoch after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsdMap {
    pub osdmap_epoch: Epoch,
}

/// SetFlag and UnsetFlag: the flags after the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub flags: flags::Flags,
    pub osdmap_epoch: Epoch,
}

/// CreatePool: the new pool's id and first epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCreated {
    pub id: PoolId,
    pub epoch: Epoch,
}

/// DeletePool: the deleted pool's id and final epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolDeleted {
    pub id: PoolId,
    pub epoch: Epoch,
}

/// CreateImage and ResizeImage: the image as it now is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image(pub image::Image);

/// RemoveImage: the removed image's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRemoved(pub ImageId);

/// A PG report (LeaderBeElected, PgMemberChangeFinish): the PG as the monitor now holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pg {
    pub pool_epoch: Epoch,
    pub state: u32,
    pub version: Epoch,
}

/// Reconciler (RefreshPgs, Rebalance): how many PGs changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    pub changed: usize,
}

/// Failure detector's outs: those done and those the guards refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkedOut {
    pub marked: Vec<OsdId>,
    pub refused: Vec<(OsdId, OutRefusal)>,
}
