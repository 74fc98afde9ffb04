//! What can be read from a [`ClusterState`] without changing it: its parts (OSDs, pools,
//! images, changes since an epoch) and the views computed from them (placement topology, loads,
//! up sets, PGs needing a refresh, the next rebalance plan, OSDs a cleared flag released).
//! Callers outside the core, the handlers and the term tasks all read through these.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::command;
use super::error::ClusterError;
use super::flags::{ClusterFlag, Flags};
use super::health::Health;
use super::image::Image;
use super::osd::{Liveness, Membership, Osd, OutReason};
use super::placement::{self, Loads, Placement, PlannedMove, PoolSpec, PoolView, spec_of};
use super::pool::{Pg, Pool, state_for};
use super::records::{Counters, Tombstone};
use super::state::ClusterState;
use super::topology::{DomainKey, TopoOsd, Topology};
use super::types::{BootInstance, Epoch, OsdId, PgId, PoolId};

impl ClusterState {
    // ---- liveness --------------------------------------------------------------------------------

    /// A heartbeat of run `instance` of OSD `id`, checked against this (committed) state: the
    /// command that brings the OSD back up when the failure detector had marked this run down,
    /// else None. Refused for an unknown OSD, one never booted, or another run than the
    /// current one. Every front end checks heartbeats here.
    pub fn heartbeat(
        &self,
        id: OsdId,
        instance: BootInstance,
    ) -> Result<Option<command::MarkUp>, ClusterError> {
        let osd = self.osd(id).ok_or(ClusterError::OsdNotFound(id))?;
        let current = osd.boot_instance().ok_or(ClusterError::OsdNotBooted(id))?;
        if current != instance {
            return Err(ClusterError::StaleBootInstance(id));
        }
        Ok(
            matches!(osd.liveness, Liveness::Down { .. }).then_some(command::MarkUp {
                id,
                instance: instance.0,
            }),
        )
    }

    // ---- the state's parts --------------------------------------------------------------------

    /// The osdmap epoch (including a bump by the open group).
    pub fn osdmap_epoch(&self) -> Epoch {
        self.meta.epoch
    }

    /// The cluster flags set.
    pub fn flags(&self) -> Flags {
        self.meta.flags
    }

    /// The raised health checks and the mutes.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Shards per OSD; None until the first boot.
    pub fn core_num(&self) -> Option<u32> {
        self.meta.core_num
    }

    /// The id counters (next pool and image ids).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The OSD `id`, if it exists.
    pub fn osd(&self, id: OsdId) -> Option<&Arc<Osd>> {
        self.osds.get(&id)
    }

    /// Every OSD, by id.
    pub fn osds(&self) -> impl Iterator<Item = &Arc<Osd>> {
        self.osds.values()
    }

    /// How many OSDs exist.
    pub fn osd_count(&self) -> usize {
        self.osds.len()
    }

    /// The live pool `id`.
    pub fn pool(&self, id: PoolId) -> Option<&Arc<Pool>> {
        self.pools.get(&id)
    }

    /// The live pool named `name`.
    pub fn pool_by_name(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pool_by_name
            .get(name)
            .and_then(|id| self.pools.get(id))
    }

    /// Every live pool, by id.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }

    /// The tombstone of a deleted pool.
    pub fn tombstone(&self, id: PoolId) -> Option<&Tombstone> {
        self.tombstones.get(&id)
    }

    /// How many deleted pools have a tombstone.
    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    /// The image `name` of pool `pool`.
    pub fn image(&self, pool: PoolId, name: &str) -> Option<&Arc<Image>> {
        self.image_by_name
            .get(&(pool, name.to_string()))
            .and_then(|id| self.images.get(&(pool, *id)))
    }

    /// OSDs changed since osdmap epoch `since` (added or modified after it), and OSDs purged
    /// since then. A watcher at `since` applies the purges first, then the changes.
    pub fn osd_changes_since(&self, since: Epoch) -> (Vec<&Arc<Osd>>, Vec<OsdId>) {
        let changed = self
            .osds
            .values()
            .filter(|o| o.last_change > since)
            .collect();
        let removed = self
            .purged
            .iter()
            .filter(|(_, e)| **e > since)
            .map(|(id, _)| *id)
            .collect();
        (changed, removed)
    }

    /// Every image, by pool and id.
    pub fn images(&self) -> impl Iterator<Item = &Arc<Image>> {
        self.images.values()
    }

    /// How many images exist.
    pub fn image_count(&self) -> usize {
        self.images.len()
    }

    // ---- views for placement and health -------------------------------------------------------

    /// The placement view of the current osdmap.
    pub fn topology(&self) -> Topology {
        Topology::from_osds(self.osds.values().map(|o| &**o))
    }

    /// Loads of every OSD across all pools (a remapped PG counts on its target).
    pub fn loads(&self) -> Loads {
        Loads::from_pgs(self.pools.values().flat_map(|p| {
            p.pgs.iter().map(|(_, pg)| match &pg.target {
                Some(t) => (t.members.as_slice(), t.core),
                None => (pg.members.as_slice(), pg.core),
            })
        }))
    }

    /// Every up OSD.
    pub(super) fn up_set(&self) -> HashSet<OsdId> {
        self.osds
            .values()
            .filter(|o| o.is_up())
            .map(|o| o.id)
            .collect()
    }

    /// The up OSDs among `osds` (see [`Usable::among`]).
    pub(super) fn up_among(&self, osds: impl IntoIterator<Item = OsdId>) -> HashSet<OsdId> {
        osds.into_iter()
            .filter(|id| self.osds.get(id).is_some_and(|o| o.is_up()))
            .collect()
    }

    // ---- PGs ----------------------------------------------------------------------------------

    /// Every PG of every pool.
    pub fn pg_count(&self) -> usize {
        self.pools.values().map(|p| p.pgs.len()).sum()
    }

    /// PGs with a membership change in progress.
    pub fn remapped_count(&self) -> usize {
        self.pools
            .values()
            .map(|p| p.pgs.iter().filter(|(_, pg)| pg.target.is_some()).count())
            .sum()
    }

    /// PGs of `pool` whose health bits or pending remap are out of date, at most `limit` (see
    /// [`RefreshScan::pgs`]; a scan of many pools builds the cluster-wide views once).
    pub fn pgs_needing_refresh(&self, pool: PoolId, limit: usize) -> Vec<PgId> {
        self.refresh_scan().pgs(pool, limit)
    }

    /// What finding out-of-date PGs needs of the whole cluster (the up set, the topology),
    /// computed once for any number of pools.
    pub fn refresh_scan(&self) -> RefreshScan<'_> {
        RefreshScan {
            state: self,
            up: self.up_set(),
            topology: self.topology(),
        }
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

    // ---- OSDs ---------------------------------------------------------------------------------

    /// Up to `limit` OSDs whose change a cleared flag deferred: held down by `noup`, or kept
    /// out by `noin` although up.
    pub fn deferred_releases(&self, limit: usize) -> Vec<OsdId> {
        let flags = self.meta.flags;
        self.osds
            .values()
            .filter(|o| released_by(o, flags))
            .map(|o| o.id)
            .take(limit)
            .collect()
    }

    /// An OSD reporting about PGs (leader reports, I/O statistics) must exist and be up.
    pub(crate) fn check_reporter_up(&self, reporter: OsdId) -> Result<(), ClusterError> {
        let osd = self
            .osds
            .get(&reporter)
            .ok_or(ClusterError::OsdNotFound(reporter))?;
        if !osd.is_up() {
            return Err(ClusterError::ReporterNotUp(reporter));
        }
        Ok(())
    }
}

/// Finds the PGs whose health bits or pending remap are out of date (see
/// [`ClusterState::refresh_scan`]).
pub struct RefreshScan<'a> {
    state: &'a ClusterState,
    up: HashSet<OsdId>,
    topology: Topology,
}

impl RefreshScan<'_> {
    /// PGs of `pool` out of date, at most `limit`. When the pool cannot be placed at all right
    /// now (too few usable OSDs or domains), no remap is possible and only health bits are
    /// listed: the reconciler must not spin on PGs it cannot fix. (With at least `size` usable
    /// domains a replacement always exists.)
    pub fn pgs(&self, pool: PoolId, limit: usize) -> Vec<PgId> {
        let Some(p) = self.state.pools.get(&pool) else {
            return Vec::new();
        };
        let usable = Usable::of(&self.topology, p);
        let can_remap = placement::check(&self.topology, &spec_of(p)).is_ok();
        p.pgs
            .iter()
            .filter(|(_, pg)| {
                state_for(pg, &self.up, p.size) != pg.state
                    || (can_remap && usable.needs_remap(pg, p.size))
            })
            .map(|(id, _)| id)
            .take(limit)
            .collect()
    }
}

/// Which OSDs a pool's PGs may keep, and in which failure domain each sits.
pub(super) struct Usable {
    /// Usable OSDs for the pool (in, weight > 0, under its root) → their failure domain.
    domains: HashMap<OsdId, DomainKey>,
}

impl Usable {
    /// The view of every OSD for `pool`.
    pub(super) fn new(state: &ClusterState, pool: &Pool) -> Usable {
        Usable::of(&state.topology(), pool)
    }

    /// The view of every OSD of `topo` for `pool`.
    fn of(topo: &Topology, pool: &Pool) -> Usable {
        let domains = topo
            .under_root(&pool.root)
            .map(|o| (o.id, o.domain(pool.failure_domain)))
            .collect();
        Usable { domains }
    }

    /// The same view restricted to `osds`: enough to judge one PG's members, at a cost that
    /// does not grow with the cluster (a PG report must not walk 10,000 OSDs).
    pub(super) fn among(
        state: &ClusterState,
        pool: &Pool,
        osds: impl IntoIterator<Item = OsdId>,
    ) -> Usable {
        let domains = osds
            .into_iter()
            .filter_map(|id| TopoOsd::usable(state.osds.get(&id)?))
            .filter(|o| o.root == pool.root)
            .map(|o| (o.id, o.domain(pool.failure_domain)))
            .collect();
        Usable { domains }
    }

    /// Members placement can no longer keep: not usable any more (out, weight 0, purged, moved
    /// to another root) or sharing a failure domain with an earlier member (after a topology
    /// change).
    pub(super) fn misplaced(&self, members: &[OsdId]) -> Vec<OsdId> {
        let mut seen = HashSet::new();
        members
            .iter()
            .copied()
            .filter(|m| match self.domains.get(m) {
                Some(d) => !seen.insert(d),
                None => true,
            })
            .collect()
    }

    /// A PG needs a target when a member is misplaced (or missing) and no change is running.
    pub(super) fn needs_remap(&self, pg: &Pg, size: u32) -> bool {
        pg.target.is_none()
            && (pg.members.len() < size as usize || !self.misplaced(&pg.members).is_empty())
    }
}

/// Whether `o` waits for a flag that `flags` no longer has.
pub(super) fn released_by(o: &Osd, flags: Flags) -> bool {
    match o.liveness {
        Liveness::HeldDown { .. } => !flags.contains(ClusterFlag::NoUp),
        _ => {
            o.is_up()
                && !flags.contains(ClusterFlag::NoIn)
                && matches!(
                    o.membership,
                    Membership::Out {
                        reason: OutReason::DeferredByNoIn,
                        ..
                    }
                )
        }
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
