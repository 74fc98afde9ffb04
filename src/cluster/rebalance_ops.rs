//! Rebalancing: moving PGs onto OSDs that hold less than their fair share (an OSD came in, a
//! weight changed). Planned from a snapshot by the reconciler in bounded rounds, applied by
//! `command::Rebalance`, which checks every move against the current state again: a move whose
//! PG changed in the meantime is skipped, never applied blindly.

use std::collections::BTreeMap;

use super::error::ClusterError;
use super::placement::{self, Placement, PoolSpec, PoolView};
use super::pool::{Pg, Pool, Target};
use super::pool_ops::{Usable, spec_of};
use super::reply;
use super::state::{Applied, ClusterState};
use super::types::{OsdId, PgId, PoolId};

/// One planned move: the PG's members were `from`; it is to be remapped to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    pub pg: PgId,
    pub from: Vec<OsdId>,
    pub to: Placement,
}

impl ClusterState {
    /// PGs with a membership change in progress.
    pub fn remapped_count(&self) -> usize {
        self.pools
            .values()
            .map(|p| p.pgs.iter().filter(|(_, pg)| pg.target.is_some()).count())
            .sum()
    }

    /// Every PG of every pool.
    pub fn pg_count(&self) -> usize {
        self.pools.values().map(|p| p.pgs.len()).sum()
    }

    /// At most `budget` moves towards weight-proportional PG counts, by pool. PGs with a change
    /// already in progress are left alone (the next round may pick them).
    pub fn plan_rebalance(&self, budget: usize) -> BTreeMap<PoolId, Vec<PlannedMove>> {
        let mut out: BTreeMap<PoolId, Vec<PlannedMove>> = BTreeMap::new();
        if budget == 0 {
            return out;
        }
        let pools: Vec<&Pool> = self.pools.values().map(|p| &**p).collect();
        let specs: Vec<PoolSpec> = pools.iter().map(|p| spec_of(p)).collect();
        let placements: Vec<Vec<(PgId, Placement)>> = pools
            .iter()
            .map(|p| {
                p.pgs
                    .iter()
                    .map(|(id, pg)| (id, current_placement(pg)))
                    .collect()
            })
            .collect();
        let views: Vec<PoolView> = pools
            .iter()
            .zip(&specs)
            .zip(&placements)
            .map(|((p, spec), pgs)| PoolView {
                id: p.id,
                spec,
                pgs,
            })
            .collect();
        for m in placement::rebalance(&self.topology(), &views, budget) {
            let Some(pg) = self.pools.get(&m.pool).and_then(|p| p.pgs.get(m.pg)) else {
                continue;
            };
            if pg.target.is_some() {
                continue;
            }
            out.entry(m.pool).or_default().push(PlannedMove {
                pg: m.pg,
                from: pg.members.clone(),
                to: m.to,
            });
        }
        out
    }

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
        for m in moves.iter().take(super::pool_ops::REFRESH_BATCH) {
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
                p.state = super::pool_ops::state_for(p, &up, size);
            });
            changed += usize::from(did);
        }
        applied.reply = reply::Refreshed { changed };
        self.put_pool(pool);
        Ok(applied)
    }
}

/// Where a PG is headed: its target while remapped, else its members.
fn current_placement(pg: &Pg) -> Placement {
    match &pg.target {
        Some(t) => Placement {
            members: t.members.clone(),
            core: t.core,
        },
        None => Placement {
            members: pg.members.clone(),
            core: pg.core,
        },
    }
}
