//! Rebalancing: moving PGs onto OSDs that hold less than their fair share (an OSD came in, a
//! weight changed). Planned from a snapshot by the reconciler in bounded rounds
//! (`ClusterState::plan_rebalance`, a query), applied here by `command::Rebalance`, which checks
//! every move against the current state again: a move whose PG changed in the meantime is
//! skipped, never applied blindly.

use super::error::ClusterError;
use super::placement::PlannedMove;
use super::pool::{REFRESH_BATCH, Target, state_for};
use super::queries::Usable;
use super::reply;
use super::state::{Applied, ClusterState};
use super::types::PoolId;

impl ClusterState {
    /// Remaps the PGs of `moves` that are still as planned (at most [`REFRESH_BATCH`]).
    pub(super) fn rebalance(
        &mut self,
        pool_id: PoolId,
        moves: &[PlannedMove],
    ) -> Result<Applied<reply::Refreshed>, ClusterError> {
        let mut pool = self
            .take_pool(pool_id)
            .ok_or(ClusterError::PoolNotFound(pool_id))?;
        let usable = Usable::new(self, &pool);
        let up = self.up_set();
        let size = pool.size;
        let mut applied = Applied::new(reply::Refreshed { changed: 0 });
        let mut changed = 0;
        for m in moves.iter().take(REFRESH_BATCH) {
            let still_valid = pool
                .pgs
                .get(m.pg)
                .is_some_and(|pg| pg.target.is_none() && pg.members == m.from)
                && m.to.members.len() == size as usize
                && usable.misplaced(&m.to.members).is_empty()
                && m.to.members != m.from;
            if !still_valid {
                continue;
            }
            let to = m.to.clone();
            let did = self.change_pg(&mut pool, m.pg, &mut applied.touched, |p| {
                p.target = Some(Target {
                    members: to.members,
                    core: to.core,
                });
                p.state = state_for(p, &up, size);
            });
            changed += usize::from(did);
        }
        applied.reply = reply::Refreshed { changed };
        self.put_pool(pool);
        Ok(applied)
    }
}
