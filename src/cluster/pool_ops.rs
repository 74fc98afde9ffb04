//! Pool commands and the PG lifecycle: create (placement), delete (tombstone), the OSD side's
//! reports (LeaderBeElected, PgMemberChangeFinish), and the reconciler's RefreshPgs, which
//! brings PG health bits and pending remaps up to date with the osdmap.
//!
//! Pending work is level-triggered: a PG whose members include an out OSD needs a target; a
//! remapped PG keeps its target until the OSDs report the change done. The state itself is the
//! persisted work queue, so whichever leader comes next continues it.

use std::collections::HashSet;

use super::command::PoolArgs;
use super::error::{ClusterError, echo};
use super::osd::{DEFAULT_ROOT, check_label};
use super::placement::{self, Loads, Placement, PoolSpec, spec_of};
use super::pool::{
    FailureDomain, MAX_PG_COUNT, MAX_PG_SIZE, MAX_POOL_NAME, Pg, PgState, PgTable, Pool,
    REFRESH_BATCH, Target, state_for,
};
use super::queries::Usable;
use super::records::{RecordKey, Tombstone};
use super::reply;
use super::state::{Applied, ClusterState};
use super::types::{Epoch, OsdId, PgId, PoolId};

impl ClusterState {
    pub(super) fn create_pool(
        &mut self,
        a: &PoolArgs,
    ) -> Result<Applied<reply::PoolCreated>, ClusterError> {
        if a.name.is_empty() || a.name.len() > MAX_POOL_NAME {
            return Err(ClusterError::InvalidPoolName(a.name.len()));
        }
        if self.pool_by_name.contains_key(&a.name) {
            return Err(ClusterError::PoolNameExists(echo(&a.name)));
        }
        if !(1..=MAX_PG_SIZE).contains(&a.size) {
            return Err(ClusterError::InvalidPgSize(a.size));
        }
        if !(1..=MAX_PG_COUNT).contains(&a.pg_count) {
            return Err(ClusterError::InvalidPgCount(a.pg_count));
        }
        let failure_domain = FailureDomain::from_name(&a.failure_domain)
            .ok_or_else(|| ClusterError::UnknownFailureDomain(echo(&a.failure_domain)))?;
        let root = if a.root.is_empty() {
            DEFAULT_ROOT.to_string()
        } else {
            check_label("root", &a.root)?;
            a.root.clone()
        };
        let spec = PoolSpec {
            size: a.size,
            pg_count: a.pg_count,
            failure_domain,
            root: root.clone(),
        };
        let mut loads = self.loads();
        let placements = placement::place_pool(&self.topology(), &mut loads, &spec)
            .map_err(ClusterError::Placement)?;

        let id = PoolId(self.counters.next_pool_id);
        self.counters.next_pool_id += 1;
        let epoch = Epoch(1);
        let pgs: Vec<Pg> = placements
            .into_iter()
            .map(|p| Pg {
                members: p.members,
                target: None,
                core: p.core,
                state: PgState::CREATING,
                version: epoch,
                leader: None,
                change_failures: 0,
            })
            .collect();
        let mut pool = Pool {
            id,
            name: a.name.clone(),
            size: a.size,
            pg_count: a.pg_count,
            failure_domain,
            root,
            epoch,
            pgs: PgTable::from_pgs(pgs),
        };
        // Health bits from the members' up state.
        let up = self.up_set();
        let ids: Vec<PgId> = pool.pgs.iter().map(|(id, _)| id).collect();
        for pg in ids {
            if let Some(p) = pool.pgs.get_mut(pg) {
                p.state = state_for(p, &up, pool.size);
            }
        }
        let mut applied = Applied::new(reply::PoolCreated { id, epoch });
        applied.prelude = (0..pool.pgs.chunk_count())
            .map(|i| RecordKey::PgChunk(id, i))
            .collect();
        applied.touched = vec![RecordKey::Pool(id), RecordKey::Counters];
        self.pool_by_name.insert(pool.name.clone(), id);
        self.put_pool(pool);
        Ok(applied)
    }

    pub(super) fn delete_pool(
        &mut self,
        name: &str,
    ) -> Result<Applied<reply::PoolDeleted>, ClusterError> {
        let id = *self
            .pool_by_name
            .get(name)
            .ok_or_else(|| ClusterError::UnknownPoolName(echo(name)))?;
        let pool = self.take_pool(id).ok_or(ClusterError::PoolNotFound(id))?;
        let final_epoch = pool.epoch.next();
        self.pools.remove(&id);
        self.pool_by_name.remove(name);
        self.tombstones.insert(
            id,
            Tombstone {
                pool: id,
                name: name.to_string(),
                deleted_epoch: final_epoch,
            },
        );
        let mut applied = Applied::new(reply::PoolDeleted {
            id,
            epoch: final_epoch,
        });
        applied.touched = vec![RecordKey::Pool(id), RecordKey::Tombstone(id)];
        applied.cleanup = (0..pool.pgs.chunk_count())
            .map(|i| RecordKey::PgChunk(id, i))
            .collect();
        let images: Vec<_> = self
            .images
            .range((id, super::types::ImageId(0))..)
            .take_while(|((p, _), _)| *p == id)
            .map(|(k, i)| (*k, i.name.clone()))
            .collect();
        for ((pool, image), name) in images {
            self.images.remove(&(pool, image));
            self.image_by_name.remove(&(pool, name));
            applied.cleanup.push(RecordKey::Image(pool, image));
        }
        Ok(applied)
    }

    /// A PG's raft leader reports in. The report must come from an up OSD holding the PG and
    /// describe the PG as the monitor holds it: `members` its members and `new_members` empty or
    /// its target, or `members` its target (the change finished without a
    /// PgMemberChangeFinish). Lists compare as sets: raft keeps its own order after a change, the
    /// monitor's order (primary first) stays.
    pub(super) fn leader_be_elected(
        &mut self,
        leader: OsdId,
        pool_id: PoolId,
        pg: PgId,
        members: &[OsdId],
        new_members: &[OsdId],
    ) -> Result<Applied<reply::Pg>, ClusterError> {
        let mut pool = self.pg_pool(pool_id, pg)?;
        self.check_members(members, false)?;
        self.check_members(new_members, true)?;
        let current = pool
            .pgs
            .get(pg)
            .cloned()
            .ok_or(ClusterError::PgNotFound { pool: pool_id, pg })?;
        self.check_reporter(leader, pool_id, pg, &current)?;
        let target = current.target.as_ref().map(|t| t.members.as_slice());
        let as_held = same_set(members, &current.members)
            && (new_members.is_empty() || target.is_some_and(|t| same_set(new_members, t)));
        let change_done = new_members.is_empty() && target.is_some_and(|t| same_set(members, t));
        if !as_held && !change_done {
            return Err(ClusterError::MembersNotHeld {
                pool: pool_id,
                pg,
                reported: reported_lists(members, new_members),
                held: held_lists(&current),
            });
        }
        // A raft leader is in its own group (a target member is not before the change starts).
        if !members.contains(&leader) && !new_members.contains(&leader) {
            return Err(ClusterError::LeaderNotMember {
                leader,
                pool: pool_id,
                pg,
            });
        }
        // Only this PG's OSDs matter: its members and those of its pending change.
        let involved: Vec<OsdId> = current
            .members
            .iter()
            .chain(target.into_iter().flatten())
            .copied()
            .collect();
        let up = self.up_among(involved.iter().copied());
        let usable = Usable::among(self, &pool, involved);
        let size = pool.size;
        let mut touched = Vec::new();
        self.change_pg(&mut pool, pg, &mut touched, |p| {
            p.leader = Some(leader);
            if let Some(t) = &p.target {
                if change_done {
                    // The OSDs finished the change without telling us: adopt it.
                    p.members = t.members.clone();
                    p.core = t.core;
                    p.target = None;
                    p.change_failures = 0;
                } else if new_members.is_empty() && usable.misplaced(&p.members).is_empty() {
                    // No change runs in raft and the current members are fine again (the out
                    // OSD came back in): the change is no longer needed.
                    p.target = None;
                    p.change_failures = 0;
                }
            }
            p.state = p.state.without(PgState::CREATING);
            p.state = state_for(p, &up, size);
        });
        let applied = Applied {
            touched,
            ..Applied::new(pg_reply(&pool, pg))
        };
        self.put_pool(pool);
        Ok(applied)
    }

    /// The outcome of a membership change, reported by `reporter`, an up OSD holding the PG
    /// (a member before or after the change). Success must name the target's members (in any
    /// order).
    pub(super) fn member_change_finish(
        &mut self,
        reporter: Option<OsdId>,
        result: i32,
        pool_id: PoolId,
        pg: PgId,
        members: &[OsdId],
    ) -> Result<Applied<reply::Pg>, ClusterError> {
        let mut pool = self.pg_pool(pool_id, pg)?;
        self.check_members(members, result != 0)?;
        let reporter = reporter.ok_or(ClusterError::ReporterMissing)?;
        let current = pool
            .pgs
            .get(pg)
            .cloned()
            .ok_or(ClusterError::PgNotFound { pool: pool_id, pg })?;
        self.check_reporter(reporter, pool_id, pg, &current)?;
        let Some(target) = current.target.clone() else {
            return Err(ClusterError::PgNotRemapped { pool: pool_id, pg });
        };
        if result == 0 && !same_set(members, &target.members) {
            return Err(ClusterError::MembersMismatch {
                pool: pool_id,
                pg,
                reported: echo(&list(members)),
                target: list(&target.members),
            });
        }
        let up = self.up_among(current.members.iter().chain(&target.members).copied());
        let size = pool.size;
        let mut touched = Vec::new();
        self.change_pg(&mut pool, pg, &mut touched, |p| {
            if result == 0 {
                p.members = target.members.clone();
                p.core = target.core;
                p.target = None;
                p.change_failures = 0;
            } else {
                // Keep the PG remapped and make the failure visible: the OSDs retry.
                p.change_failures += 1;
            }
            p.state = state_for(p, &up, size);
        });
        let applied = Applied {
            touched,
            ..Applied::new(pg_reply(&pool, pg))
        };
        self.put_pool(pool);
        Ok(applied)
    }

    pub(super) fn refresh_pgs(
        &mut self,
        pool_id: PoolId,
        pgs: &[PgId],
    ) -> Result<Applied<reply::Refreshed>, ClusterError> {
        let mut pool = self
            .take_pool(pool_id)
            .ok_or(ClusterError::PoolNotFound(pool_id))?;
        let up = self.up_set();
        let usable = Usable::new(self, &pool);
        let topo = self.topology();
        let spec = spec_of(&pool);
        let mut loads: Option<Loads> = None;
        let mut applied = Applied::new(reply::Refreshed { changed: 0 });
        let mut changed = 0;
        for &pg in pgs.iter().take(REFRESH_BATCH) {
            let Some(current) = pool.pgs.get(pg).cloned() else {
                continue;
            };
            let mut target = current.target.clone();
            if usable.needs_remap(&current, pool.size) {
                let l = loads.get_or_insert_with(|| self.loads());
                l.remove(&current.members, current.core);
                let remove = usable.misplaced(&current.members);
                let now = Placement {
                    members: current.members.clone(),
                    core: current.core,
                };
                match placement::replace(&topo, l, &spec, &now, &remove) {
                    Ok(p) => {
                        l.add(&p.members, p.core);
                        target = Some(Target {
                            members: p.members,
                            core: p.core,
                        });
                    }
                    // Not enough OSDs to refill it now: it stays undersize until there are.
                    Err(_) => l.add(&current.members, current.core),
                }
            }
            let did = self.change_pg(&mut pool, pg, &mut applied.touched, |p| {
                p.target = target;
                p.state = state_for(p, &up, spec.size);
            });
            changed += usize::from(did);
        }
        applied.reply = reply::Refreshed { changed };
        self.put_pool(pool);
        Ok(applied)
    }

    fn pg_pool(&self, pool: PoolId, pg: PgId) -> Result<Pool, ClusterError> {
        let p = self
            .take_pool(pool)
            .ok_or(ClusterError::PoolNotFound(pool))?;
        if p.pgs.get(pg).is_none() {
            return Err(ClusterError::PgNotFound { pool, pg });
        }
        Ok(p)
    }

    /// Members reported by an OSD: at most a PG's largest size, no duplicates, only known OSDs,
    /// not empty (unless allowed). Without duplicates, comparing as sets is exact.
    fn check_members(&self, members: &[OsdId], may_be_empty: bool) -> Result<(), ClusterError> {
        if members.is_empty() && !may_be_empty {
            return Err(ClusterError::InvalidMembers(
                "the list is empty".to_string(),
            ));
        }
        if members.len() > MAX_PG_SIZE as usize {
            return Err(ClusterError::InvalidMembers(format!(
                "{} OSDs listed; a PG has at most {MAX_PG_SIZE}",
                members.len()
            )));
        }
        let mut seen = HashSet::new();
        for m in members {
            if !seen.insert(m) {
                return Err(ClusterError::InvalidMembers(format!("{m} appears twice")));
            }
            if !self.osds.contains_key(m) {
                return Err(ClusterError::InvalidMembers(format!("{m} does not exist")));
            }
        }
        Ok(())
    }

    /// An OSD reporting for a PG must exist, be up (booted, not down or held down), and hold
    /// the PG as the monitor knows it.
    fn check_reporter(
        &self,
        reporter: OsdId,
        pool: PoolId,
        pg: PgId,
        current: &Pg,
    ) -> Result<(), ClusterError> {
        self.check_reporter_up(reporter)?;
        if !current.involves(reporter) {
            return Err(ClusterError::LeaderNotMember {
                leader: reporter,
                pool,
                pg,
            });
        }
        Ok(())
    }
}

fn same_set(a: &[OsdId], b: &[OsdId]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn list(ids: &[OsdId]) -> String {
    let v: Vec<String> = ids.iter().map(|i| i.0.to_string()).collect();
    format!("[{}]", v.join(","))
}

/// The lists of a leader report, for an error.
fn reported_lists(members: &[OsdId], new_members: &[OsdId]) -> String {
    if new_members.is_empty() {
        format!("members {}", list(members))
    } else {
        format!(
            "members {} with new members {}",
            list(members),
            list(new_members)
        )
    }
}

/// A PG's lists as the monitor holds them, for an error.
fn held_lists(pg: &Pg) -> String {
    match &pg.target {
        Some(t) => format!("members {}, target {}", list(&pg.members), list(&t.members)),
        None => format!("members {}, no change in progress", list(&pg.members)),
    }
}

fn pg_reply(pool: &Pool, pg: PgId) -> reply::Pg {
    let p = pool.pgs.get(pg);
    reply::Pg {
        pool_epoch: pool.epoch,
        state: p.map_or(0, |p| p.state.0),
        version: p.map_or(Epoch(0), |p| p.version),
    }
}
