//! The cluster state machine: `(state, command) → (new state, touched records)`.
//!
//! Commands are applied in *groups*; one group becomes one etcd transaction. Within a group each
//! map's epoch is bumped at most once, by the first command that changes that map, and every
//! record the group touches is written with the group's epoch. `apply` is atomic: on error the
//! state is exactly as before. The state is cheap to clone (persistent maps, shared chunks), so
//! the pipeline snapshots it freely.
//!
//! The commands and `apply` are in `command.rs`; the handlers in `osd_ops.rs`, `pool_ops.rs`,
//! `image_ops.rs` and `rebalance_ops.rs`; everything read without a change (accessors,
//! topology, loads, plans) in `queries.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use imbl::{HashMap as PHashMap, OrdMap};
use uuid::Uuid;

use super::events::{self, EventBody};
use super::health::Health;
use super::image::Image;
use super::osd::Osd;
use super::pool::{Pg, PgTable, Pool, chunk_of};
use super::records::{Counters, OsdMapMeta, PoolSettings, Record, RecordKey, Tombstone};
use super::types::{Epoch, ImageId, OsdId, PgId, PoolId};

/// Values stored outside the cluster state (not loaded by a new leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlobKey {
    /// The config text an OSD reported at boot.
    OsdConfig(OsdId),
}

/// A successfully applied command: its reply and what must be written for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<R> {
    /// What the caller hears once the command's group committed.
    pub reply: R,
    /// Records written in the command's group transaction.
    pub touched: Vec<RecordKey>,
    /// New records nothing refers to until `touched` commits: they may be written in earlier
    /// transactions (e.g. the PG chunks of a pool being created).
    pub prelude: Vec<RecordKey>,
    /// Records nothing refers to once `touched` commits: they may be deleted in later
    /// transactions (e.g. the PG chunks of a deleted pool).
    pub cleanup: Vec<RecordKey>,
    /// Values outside the state: written with the prelude (None deletes, with the cleanup).
    pub blobs: Vec<(BlobKey, Option<Vec<u8>>)>,
    /// What the change means (derived from the touched records by `apply`, plus any the
    /// handler records itself): written in the group's transaction.
    pub events: Vec<EventBody>,
}

impl<R> Applied<R> {
    pub(super) fn new(reply: R) -> Applied<R> {
        Applied {
            reply,
            touched: Vec::new(),
            prelude: Vec::new(),
            cleanup: Vec::new(),
            blobs: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// Stored records that do not form a valid state.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("record {0:?} appears twice")]
    Duplicate(RecordKey),
    #[error("{0}: {1}")]
    Corrupt(PoolId, String),
}

/// The whole cluster state held by the leader.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    pub(super) meta: OsdMapMeta,
    pub(super) counters: Counters,
    pub(super) osds: OrdMap<OsdId, Arc<Osd>>,
    pub(super) osd_by_uuid: PHashMap<Uuid, OsdId>,
    pub(super) pools: OrdMap<PoolId, Arc<Pool>>,
    pub(super) pool_by_name: PHashMap<String, PoolId>,
    pub(super) tombstones: OrdMap<PoolId, Tombstone>,
    /// Purged OSDs and the osdmap epoch of their purge (for map deltas).
    pub(super) purged: OrdMap<OsdId, Epoch>,
    pub(super) images: OrdMap<(PoolId, ImageId), Arc<Image>>,
    pub(super) image_by_name: PHashMap<(PoolId, String), ImageId>,
    /// Raised health checks and mutes.
    pub(super) health: Arc<Health>,
    /// Group bookkeeping: maps whose epoch this group already bumped.
    osdmap_bumped: bool,
    pools_bumped: Vec<PoolId>,
}

impl ClusterState {
    /// Rebuilds the state from stored records (a new leader's load). Also returns records that
    /// belong to nothing (chunks and images of pools that do not exist), to be deleted.
    pub fn from_records(
        records: impl IntoIterator<Item = (RecordKey, Record)>,
    ) -> Result<(ClusterState, Vec<RecordKey>), LoadError> {
        let mut s = ClusterState::default();
        let mut seen_meta = false;
        let mut seen_counters = false;
        let mut settings: BTreeMap<PoolId, PoolSettings> = BTreeMap::new();
        let mut chunks: HashMap<PoolId, Vec<(u32, Vec<Pg>)>> = HashMap::new();
        let mut images = Vec::new();
        for (key, record) in records {
            match record {
                Record::OsdMapMeta(m) => {
                    if std::mem::replace(&mut seen_meta, true) {
                        return Err(LoadError::Duplicate(key));
                    }
                    s.meta = m;
                }
                Record::Counters(c) => {
                    if std::mem::replace(&mut seen_counters, true) {
                        return Err(LoadError::Duplicate(key));
                    }
                    s.counters = c;
                }
                Record::Osd(o) => {
                    s.osd_by_uuid.insert(o.uuid, o.id);
                    s.osds.insert(o.id, o);
                }
                Record::Pool(p) => {
                    settings.insert(p.id, p);
                }
                Record::PgChunk(pgs) => {
                    if let RecordKey::PgChunk(pool, i) = key {
                        chunks.entry(pool).or_default().push((i, pgs));
                    }
                }
                Record::Image(i) => images.push((key, i)),
                Record::Tombstone(t) => {
                    s.tombstones.insert(t.pool, t);
                }
                Record::PurgedOsd(id, epoch) => {
                    s.purged.insert(id, epoch);
                }
                Record::Health(h) => s.health = Arc::new(h),
            }
        }
        let mut garbage = Vec::new();
        for (pool, list) in &chunks {
            if !settings.contains_key(pool) {
                garbage.extend(list.iter().map(|(i, _)| RecordKey::PgChunk(*pool, *i)));
            }
        }
        for (id, p) in settings {
            let mut list = chunks.remove(&id).unwrap_or_default();
            // Chunks beyond the pool's count are leftovers of an interrupted earlier attempt.
            let expected = p.pg_count.div_ceil(super::pool::PG_CHUNK);
            list.retain(|(i, _)| {
                let keep = *i < expected;
                if !keep {
                    garbage.push(RecordKey::PgChunk(id, *i));
                }
                keep
            });
            let pgs =
                PgTable::from_chunks(p.pg_count, list).map_err(|e| LoadError::Corrupt(id, e))?;
            s.pool_by_name.insert(p.name.clone(), id);
            s.pools.insert(
                id,
                Arc::new(Pool {
                    id,
                    name: p.name,
                    size: p.size,
                    pg_count: p.pg_count,
                    failure_domain: p.failure_domain,
                    root: p.root,
                    epoch: p.epoch,
                    pgs,
                }),
            );
        }
        for (key, image) in images {
            if s.pools.contains_key(&image.pool) {
                s.image_by_name
                    .insert((image.pool, image.name.clone()), image.id);
                s.images.insert((image.pool, image.id), image);
            } else {
                garbage.push(key);
            }
        }
        Ok((s, garbage))
    }

    // ---- groups and records -----------------------------------------------------------------

    /// Starts a new group: the next change to each map bumps its epoch again.
    pub fn begin_group(&mut self) {
        self.osdmap_bumped = false;
        self.pools_bumped.clear();
    }

    /// The key of every record the state consists of (what a full write of it stores), in the
    /// order a writer makes them visible: OSDs, PG chunks before their pools, images,
    /// tombstones and purges, health, then the counters and the osdmap meta last.
    pub fn record_keys(&self) -> Vec<RecordKey> {
        let mut keys: Vec<RecordKey> = self.osds.keys().map(|id| RecordKey::Osd(*id)).collect();
        for p in self.pools.values() {
            keys.extend((0..p.pgs.chunk_count()).map(|i| RecordKey::PgChunk(p.id, i)));
            keys.push(RecordKey::Pool(p.id));
        }
        keys.extend(self.images.keys().map(|(p, i)| RecordKey::Image(*p, *i)));
        keys.extend(self.tombstones.keys().map(|id| RecordKey::Tombstone(*id)));
        keys.extend(self.purged.keys().map(|id| RecordKey::PurgedOsd(*id)));
        keys.push(RecordKey::Health);
        keys.push(RecordKey::Counters);
        keys.push(RecordKey::OsdMapMeta);
        keys
    }

    /// The current value of a record (None: it does not exist and must be deleted).
    pub fn record(&self, key: &RecordKey) -> Option<Record> {
        match key {
            RecordKey::OsdMapMeta => Some(Record::OsdMapMeta(self.meta)),
            RecordKey::Counters => Some(Record::Counters(self.counters)),
            RecordKey::Osd(id) => self.osds.get(id).cloned().map(Record::Osd),
            RecordKey::Pool(id) => self.pools.get(id).map(|p| {
                Record::Pool(PoolSettings {
                    id: p.id,
                    name: p.name.clone(),
                    size: p.size,
                    pg_count: p.pg_count,
                    failure_domain: p.failure_domain,
                    root: p.root.clone(),
                    epoch: p.epoch,
                })
            }),
            RecordKey::PgChunk(pool, i) => self
                .pools
                .get(pool)
                .and_then(|p| p.pgs.chunk(*i))
                .map(|c| Record::PgChunk(c.to_vec())),
            RecordKey::Image(pool, id) => {
                self.images.get(&(*pool, *id)).cloned().map(Record::Image)
            }
            RecordKey::Tombstone(id) => self.tombstones.get(id).cloned().map(Record::Tombstone),
            RecordKey::PurgedOsd(id) => self.purged.get(id).map(|e| Record::PurgedOsd(*id, *e)),
            RecordKey::Health => Some(Record::Health(Health::clone(&self.health))),
        }
    }

    /// The events of the change from `before` to this state, which changed the records in
    /// `touched` (the records one command changed), in a stable order: OSDs, pools, PGs,
    /// images, flags.
    pub(super) fn events_since(
        &self,
        before: &ClusterState,
        touched: &[RecordKey],
    ) -> Vec<EventBody> {
        let mut keys: Vec<RecordKey> = touched.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::new();
        let mut pg_changes: BTreeMap<
            PoolId,
            Vec<(PgId, super::pool::PgState, super::pool::PgState)>,
        > = BTreeMap::new();
        let epoch = self.meta.epoch;
        for key in keys {
            match key {
                RecordKey::OsdMapMeta => {
                    events::flag_events(before.meta.flags, self.meta.flags, epoch, &mut out)
                }
                RecordKey::Osd(id) => {
                    events::osd_events(before.osds.get(&id), self.osds.get(&id), epoch, &mut out)
                }
                RecordKey::Pool(id) => {
                    events::pool_events(before.pools.get(&id), self.pools.get(&id), epoch, &mut out)
                }
                RecordKey::PgChunk(pool, chunk) => {
                    // PGs of a pool being created or deleted have no events of their own.
                    if let (Some(b), Some(a)) = (before.pools.get(&pool), self.pools.get(&pool))
                        && let (Some(old), Some(new)) = (b.pgs.chunk(chunk), a.pgs.chunk(chunk))
                    {
                        let list = pg_changes.entry(pool).or_default();
                        events::pg_state_changes(chunk, old, new, list);
                    }
                }
                RecordKey::Image(pool, id) => {
                    let name = self
                        .pools
                        .get(&pool)
                        .or_else(|| before.pools.get(&pool))
                        .map(|p| p.name.as_str())
                        .unwrap_or_default();
                    events::image_events(
                        before.images.get(&(pool, id)),
                        self.images.get(&(pool, id)),
                        name,
                        &mut out,
                    )
                }
                // Health transitions are named by their handler (`health_ops.rs`).
                RecordKey::Counters
                | RecordKey::Tombstone(_)
                | RecordKey::PurgedOsd(_)
                | RecordKey::Health => {}
            }
        }
        for (pool, changed) in pg_changes {
            if let Some(p) = self.pools.get(&pool)
                && !changed.is_empty()
            {
                out.push(events::pg_states_event(p, &changed));
            }
        }
        events::sort(&mut out);
        out
    }

    /// Takes `n` event ids: the first is returned, the counter moves past the last.
    pub fn take_event_ids(&mut self, n: u64) -> u64 {
        let first = self.counters.next_event_id;
        self.counters.next_event_id = first + n;
        first
    }

    // ---- helpers for the handlers -----------------------------------------------------------

    /// Bumps the osdmap epoch once per group and marks the meta record touched.
    pub(super) fn bump_osdmap(&mut self, touched: &mut Vec<RecordKey>) -> Epoch {
        if !self.osdmap_bumped {
            self.meta.epoch = self.meta.epoch.next();
            self.osdmap_bumped = true;
        }
        touched.push(RecordKey::OsdMapMeta);
        self.meta.epoch
    }

    /// The osdmap epoch a change made now will carry.
    pub(super) fn pending_osdmap_epoch(&self) -> Epoch {
        if self.osdmap_bumped {
            self.meta.epoch
        } else {
            self.meta.epoch.next()
        }
    }

    /// Replaces an OSD record, stamping it with the (bumped) osdmap epoch.
    pub(super) fn put_osd(&mut self, mut osd: Osd, touched: &mut Vec<RecordKey>) {
        let epoch = self.bump_osdmap(touched);
        osd.last_change = epoch;
        touched.push(RecordKey::Osd(osd.id));
        self.osds.insert(osd.id, Arc::new(osd));
    }

    /// Bumps a pool's epoch once per group and marks its record touched.
    pub(super) fn bump_pool(&mut self, pool: &mut Pool, touched: &mut Vec<RecordKey>) -> Epoch {
        if !self.pools_bumped.contains(&pool.id) {
            pool.epoch = pool.epoch.next();
            self.pools_bumped.push(pool.id);
        }
        touched.push(RecordKey::Pool(pool.id));
        pool.epoch
    }

    /// Applies `change` to one PG; if it changed anything, bumps the pool epoch, stamps the
    /// PG's version and marks its chunk touched. Returns whether it changed.
    pub(super) fn change_pg(
        &mut self,
        pool: &mut Pool,
        pg: PgId,
        touched: &mut Vec<RecordKey>,
        change: impl FnOnce(&mut Pg),
    ) -> bool {
        let Some(current) = pool.pgs.get(pg) else {
            return false;
        };
        let mut updated = current.clone();
        change(&mut updated);
        if &updated == current {
            return false;
        }
        let epoch = self.bump_pool(pool, touched);
        updated.version = epoch;
        if let Some(slot) = pool.pgs.get_mut(pg) {
            *slot = updated;
        }
        touched.push(RecordKey::PgChunk(pool.id, chunk_of(pg)));
        true
    }

    /// Takes a pool out for modification (put it back with [`ClusterState::put_pool`]).
    pub(super) fn take_pool(&self, id: PoolId) -> Option<Pool> {
        self.pools.get(&id).map(|p| (**p).clone())
    }

    pub(super) fn put_pool(&mut self, pool: Pool) {
        self.pools.insert(pool.id, Arc::new(pool));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cluster::ClusterError;
    use crate::cluster::command::{self, BootArgs, ShardArg};

    /// A state with `n` booted, up and in OSDs on `hosts` hosts (OSD i on host i % hosts).
    pub fn cluster(n: u32, hosts: u32) -> ClusterState {
        let mut s = ClusterState::default();
        for i in 1..=n {
            s.begin_group();
            let uuid = Uuid::from_u128(u128::from(i)).to_string();
            let id = s
                .apply(&command::ApplyId { uuid: uuid.clone() })
                .unwrap()
                .reply
                .id;
            s.apply(&command::Boot(boot_args(id, &uuid, i % hosts, 1)))
                .unwrap();
        }
        s.begin_group();
        s
    }

    pub fn boot_args(id: OsdId, uuid: &str, host: u32, instance: u64) -> BootArgs {
        BootArgs {
            id,
            uuid: uuid.to_string(),
            size: 1 << 40,
            shards: (0..2)
                .map(|i| ShardArg {
                    shard: i,
                    core_id: i,
                    port: 7000 + i,
                    raw_port: 8000 + i,
                })
                .collect(),
            address: "10.0.0.1".to_string(),
            host: format!("host{host}"),
            core_num: 2,
            config: "cfg".to_string(),
            instance,
            rack: String::new(),
            root: String::new(),
        }
    }

    #[test]
    fn a_failed_command_leaves_the_state_untouched() {
        let mut s = cluster(3, 3);
        let before = s.clone();
        let err = s
            .apply(&command::Boot(boot_args(
                OsdId(1),
                &Uuid::from_u128(2).to_string(),
                0,
                9,
            )))
            .unwrap_err();
        assert!(matches!(err, ClusterError::UuidMismatch { .. }));
        assert_eq!(s, before);
    }

    #[test]
    fn records_round_trip_through_a_load() {
        let mut s = cluster(6, 3);
        s.apply(&command::CreatePool(crate::cluster::command::PoolArgs {
            name: "rbd".to_string(),
            size: 3,
            pg_count: 300,
            failure_domain: "host".to_string(),
            root: String::new(),
        }))
        .unwrap();
        s.apply(&command::CreateImage {
            pool: "rbd".to_string(),
            name: "vm1".to_string(),
            size: 1 << 30,
            object_size: 0,
        })
        .unwrap();
        let keys = s.record_keys();
        assert_eq!(keys.last(), Some(&RecordKey::OsdMapMeta));
        // Meta and counters, 6 OSDs, the pool, its 2 chunks, the image, the health.
        assert_eq!(keys.len(), 2 + 6 + 1 + 2 + 1 + 1, "{keys:?}");
        // An orphan chunk (an interrupted create of pool 9) is reported as garbage.
        let orphan = (
            RecordKey::PgChunk(PoolId(9), 0),
            Record::PgChunk(Vec::new()),
        );
        let records: Vec<_> = keys
            .iter()
            .map(|k| (*k, s.record(k).unwrap()))
            .chain([orphan])
            .collect();
        let (mut loaded, garbage) = ClusterState::from_records(records).unwrap();
        assert_eq!(garbage, vec![RecordKey::PgChunk(PoolId(9), 0)]);
        loaded.osdmap_bumped = s.osdmap_bumped;
        loaded.pools_bumped = s.pools_bumped.clone();
        assert_eq!(loaded, s);
    }
}
