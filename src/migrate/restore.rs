//! What a restore writes, from a backup's entries (pure): the records and blobs decoded and
//! checked as a new leader's load would, and every epoch raised so that a client holding an
//! epoch from after the backup resynchronises instead of rejecting a map that went back.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::cluster::{
    BlobKey, ClusterState, Epoch, Liveness, Membership, Record, RecordKey, decode_record,
};
use crate::etcd::KeyLayout;
use crate::proto::monitor as api;

/// Default raise of every epoch on restore: more changes than a cluster makes between two
/// daily backups (each osdmap or pool change is one epoch, changes committed together share
/// one). `--epoch-jump` sets another.
pub const DEFAULT_EPOCH_JUMP: u64 = 1_000_000;

/// A backup's entries as the records and blobs they hold.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    pub records: Vec<(RecordKey, Record)>,
    pub blobs: Vec<(BlobKey, Vec<u8>)>,
}

/// Why a backup's content cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("entry {index}: key {key:?} is not a key of the cluster state")]
    UnknownKey { index: usize, key: String },
    #[error("entry {index} ({key}): {why}")]
    Undecodable {
        index: usize,
        key: String,
        why: String,
    },
    #[error("the records do not form a valid cluster state: {0}")]
    Invalid(String),
    #[error("the backup holds no osdmap record: it is not a backup of a cluster's state")]
    NoOsdMap,
}

/// Decodes every entry (keys relative to the prefix, placed under `keys`' prefix).
pub fn decode_entries(
    entries: &[api::BackupEntry],
    keys: &KeyLayout,
) -> Result<Decoded, ContentError> {
    let mut out = Decoded::default();
    for (i, e) in entries.iter().enumerate() {
        let index = i + 1;
        let shown = crate::text::shown(&e.key);
        let absolute = keys.absolute(&e.key);
        if let Some(rk) = keys.parse_record(&absolute) {
            let record = decode_record(&rk, &e.value).map_err(|err| ContentError::Undecodable {
                index,
                key: shown.clone(),
                why: err.reason,
            })?;
            out.records.push((rk, record));
        } else if let Some(bk) = keys.parse_blob(&absolute) {
            out.blobs.push((bk, e.value.clone()));
        } else {
            return Err(ContentError::UnknownKey { index, key: shown });
        }
    }
    Ok(out)
}

/// Builds the state the records describe, as a new leader's load does. Records that belong
/// to nothing (left by an interrupted change) are dropped and returned.
pub fn build_state(
    records: Vec<(RecordKey, Record)>,
) -> Result<(ClusterState, Vec<RecordKey>), ContentError> {
    if !records
        .iter()
        .any(|(k, _)| matches!(k, RecordKey::OsdMapMeta))
    {
        return Err(ContentError::NoOsdMap);
    }
    ClusterState::from_records(records).map_err(|e| ContentError::Invalid(e.to_string()))
}

/// The epochs before and after [`raise_epochs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub osdmap_from: Epoch,
    pub osdmap_to: Epoch,
    pub pools: usize,
}

/// Raises every epoch by `jump`: the osdmap epoch and each pool's (and tombstone's) epoch. Every
/// OSD, PG and purge is stamped with the new epoch of its map, so a client at any epoch below
/// the new one receives all of it again (a delta from its epoch is the whole map), whatever
/// it saw between the backup and the restore.
pub fn raise_epochs(records: &mut [(RecordKey, Record)], jump: u64) -> Raised {
    let mut osdmap_from = Epoch(0);
    for (_, r) in records.iter() {
        if let Record::OsdMapMeta(m) = r {
            osdmap_from = m.epoch;
        }
    }
    let osdmap_to = Epoch(osdmap_from.0.saturating_add(jump));
    let mut pool_epochs: HashMap<u32, Epoch> = HashMap::new();
    for (_, r) in records.iter_mut() {
        if let Record::Pool(p) = r {
            p.epoch = Epoch(p.epoch.0.saturating_add(jump));
            pool_epochs.insert(p.id.0, p.epoch);
        }
    }
    let raise = |e: Epoch| Epoch(e.0.saturating_add(jump));
    for (key, r) in records.iter_mut() {
        match r {
            Record::OsdMapMeta(m) => m.epoch = osdmap_to,
            Record::Osd(o) => {
                let mut osd = (**o).clone();
                osd.last_change = osdmap_to;
                osd.liveness = match osd.liveness {
                    Liveness::Up { instance, since } => Liveness::Up {
                        instance,
                        since: raise(since),
                    },
                    Liveness::Down {
                        instance,
                        since,
                        reason,
                    } => Liveness::Down {
                        instance,
                        since: raise(since),
                        reason,
                    },
                    other => other,
                };
                osd.membership = match osd.membership {
                    Membership::In { since } => Membership::In {
                        since: raise(since),
                    },
                    Membership::Out { reason, since } => Membership::Out {
                        reason,
                        since: raise(since),
                    },
                };
                *o = Arc::new(osd);
            }
            Record::PgChunk(pgs) => {
                if let RecordKey::PgChunk(pool, _) = key {
                    // A chunk without its pool is dropped by the load; keep it consistent anyway.
                    let epoch = pool_epochs.get(&pool.0).copied();
                    for pg in pgs.iter_mut() {
                        pg.version = epoch.unwrap_or_else(|| raise(pg.version));
                    }
                }
            }
            Record::Tombstone(t) => t.deleted_epoch = raise(t.deleted_epoch),
            Record::PurgedOsd(_, e) => *e = osdmap_to,
            Record::Counters(_) | Record::Pool(_) | Record::Image(_) | Record::Health(_) => {}
        }
    }
    Raised {
        osdmap_from,
        osdmap_to,
        pools: pool_epochs.len(),
    }
}

/// What a state holds, for the reports of backup-verify, restore and import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StateSummary {
    pub osdmap_epoch: u64,
    pub osds: usize,
    pub osds_up: usize,
    pub osds_in: usize,
    pub pools: usize,
    pub pgs: u64,
    pub images: usize,
    pub deleted_pools: usize,
    pub flags: Vec<String>,
}

impl StateSummary {
    pub fn of(s: &ClusterState) -> StateSummary {
        StateSummary {
            osdmap_epoch: s.osdmap_epoch().0,
            osds: s.osd_count(),
            osds_up: s.osds().filter(|o| o.is_up()).count(),
            osds_in: s.osds().filter(|o| o.is_in()).count(),
            pools: s.pools().count(),
            pgs: s.pools().map(|p| u64::from(p.pg_count)).sum(),
            images: s.image_count(),
            deleted_pools: s.tombstone_count(),
            flags: crate::cluster::ClusterFlag::ALL
                .iter()
                .filter(|f| s.flags().contains(**f))
                .map(|f| f.name().to_string())
                .collect(),
        }
    }
}

impl fmt::Display for StateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "osdmap epoch {}; {} OSDs ({} up, {} in); {} pools with {} PGs; {} images; {} deleted pools; flags: {}",
            self.osdmap_epoch,
            self.osds,
            self.osds_up,
            self.osds_in,
            self.pools,
            self.pgs,
            self.images,
            self.deleted_pools,
            if self.flags.is_empty() {
                "none".to_string()
            } else {
                self.flags.join(",")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::command::{self, PoolArgs};
    use crate::cluster::state::tests::cluster;

    fn records_of(s: &ClusterState) -> Vec<(RecordKey, Record)> {
        s.record_keys()
            .into_iter()
            .map(|k| {
                let r = s.record(&k).unwrap();
                (k, r)
            })
            .collect()
    }

    fn sample() -> ClusterState {
        let mut s = cluster(6, 3);
        s.begin_group();
        s.apply(&command::CreatePool(PoolArgs {
            name: "rbd".to_string(),
            size: 3,
            pg_count: 600,
            failure_domain: "host".to_string(),
            root: String::new(),
        }))
        .unwrap();
        s.begin_group();
        s.apply(&command::CreateImage {
            pool: "rbd".to_string(),
            name: "vm1".to_string(),
            size: 1 << 30,
            object_size: 0,
        })
        .unwrap();
        s
    }

    #[test]
    fn entries_round_trip_to_the_same_state() {
        let s = sample();
        let keys = KeyLayout::new("/fastblock", "fastblock_master");
        let entries: Vec<api::BackupEntry> = records_of(&s)
            .iter()
            .map(|(k, r)| api::BackupEntry {
                key: keys.relative(&keys.record(k)).unwrap().to_string(),
                value: crate::cluster::encode_record(r),
            })
            .chain([api::BackupEntry {
                key: "osdconfig/0000000001".to_string(),
                value: b"rdma".to_vec(),
            }])
            .collect();
        // Restored under another prefix: keys are relative.
        let other = KeyLayout::new("/elsewhere", "fastblock_master");
        let d = decode_entries(&entries, &other).unwrap();
        assert_eq!(
            d.blobs,
            vec![(
                BlobKey::OsdConfig(crate::cluster::OsdId(1)),
                b"rdma".to_vec()
            )]
        );
        let (loaded, garbage) = build_state(d.records).unwrap();
        assert!(garbage.is_empty());
        assert_eq!(StateSummary::of(&loaded), StateSummary::of(&s));
        assert_eq!(records_of(&loaded), records_of(&s));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_index() {
        let keys = KeyLayout::new("/fastblock", "fastblock_master");
        let bad_key = [api::BackupEntry {
            key: "cluster/nonsense".to_string(),
            value: vec![],
        }];
        let e = decode_entries(&bad_key, &keys).unwrap_err();
        assert!(
            matches!(e, ContentError::UnknownKey { index: 1, .. }),
            "{e}"
        );
        let bad_value = [api::BackupEntry {
            key: "cluster/osd/0000000001".to_string(),
            value: vec![0xff; 9],
        }];
        let e = decode_entries(&bad_value, &keys).unwrap_err();
        assert!(
            matches!(e, ContentError::Undecodable { index: 1, .. }),
            "{e}"
        );
        assert!(matches!(
            build_state(Vec::new()).unwrap_err(),
            ContentError::NoOsdMap
        ));
    }

    #[test]
    fn raised_epochs_are_above_every_old_one_and_everything_is_new_at_them() {
        let s = sample();
        let mut records = records_of(&s);
        let before_pool = s.pools().next().unwrap().epoch;
        let r = raise_epochs(&mut records, 1000);
        assert_eq!(r.osdmap_from, s.osdmap_epoch());
        assert_eq!(r.osdmap_to, Epoch(s.osdmap_epoch().0 + 1000));
        assert_eq!(r.pools, 1);
        let (raised, _) = build_state(records).unwrap();
        assert_eq!(raised.osdmap_epoch(), r.osdmap_to);
        let pool = raised.pools().next().unwrap();
        assert_eq!(pool.epoch, Epoch(before_pool.0 + 1000));
        // A client anywhere below the new epochs gets every OSD and PG again.
        let (changed, _) = raised.osd_changes_since(Epoch(r.osdmap_to.0 - 1));
        assert_eq!(changed.len(), raised.osd_count());
        assert!(pool.pgs.iter().all(|(_, pg)| pg.version == pool.epoch));
        // Nothing else changed: same members, same OSDs' addresses and states.
        for (a, b) in s.osds().zip(raised.osds()) {
            assert_eq!(
                (a.id, a.address, a.is_up(), a.is_in()),
                (b.id, b.address, b.is_up(), b.is_in())
            );
        }
        let old = s.pools().next().unwrap();
        assert!(
            old.pgs
                .iter()
                .zip(pool.pgs.iter())
                .all(|((_, x), (_, y))| x.members == y.members && x.core == y.core)
        );
    }
}
