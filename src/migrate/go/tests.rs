//! The fixtures of `tests/fixtures/go/` converted and checked record by record, against the
//! source read independently (as `serde_json::Value`s) and through the legacy map encoder; the
//! report asserted exactly; the errors; a synthetic source at scale (ignored by default).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use serde_json::Value;

use super::osds::{import_instance, placeholder_uuid};
use super::*;
use crate::cluster::{
    ClusterState, DEFAULT_ROOT, DownReason, FailureDomain, Membership, Osd, OsdId, OutReason,
    PG_CHUNK, Pg, PgId, PgState, PoolSettings, Shard, Target, Weight, config_hash,
};
use crate::legacy::maps::MapCache;
use crate::proto::legacy as msg;

const SMALL: &[u8] = include_bytes!("../../../tests/fixtures/go/small.json");
const REMAP: &[u8] = include_bytes!("../../../tests/fixtures/go/remap.json");
const QUIRKS: &[u8] = include_bytes!("../../../tests/fixtures/go/quirks.json");

pub(super) fn fixture(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    source_from_json(bytes).expect("a fixture")
}

fn value_of(source: &[(String, Vec<u8>)], key: &str) -> Value {
    let (_, v) = source.iter().find(|(k, _)| k == key).expect(key);
    serde_json::from_slice(v).expect("JSON")
}

/// The records by kind, for looking them up.
#[derive(Default)]
struct Parts {
    meta: Option<OsdMapMeta>,
    counters: Option<Counters>,
    osds: BTreeMap<u32, Arc<Osd>>,
    pools: BTreeMap<u32, PoolSettings>,
    pgs: BTreeMap<u32, Vec<Pg>>,
    images: Vec<Arc<Image>>,
}

fn parts(records: &[(RecordKey, Record)]) -> Parts {
    let mut p = Parts::default();
    let mut last_chunk: BTreeMap<u32, u32> = BTreeMap::new();
    for (key, record) in records {
        match (key, record) {
            (RecordKey::OsdMapMeta, Record::OsdMapMeta(m)) => p.meta = Some(*m),
            (RecordKey::Counters, Record::Counters(c)) => p.counters = Some(*c),
            (RecordKey::Osd(id), Record::Osd(o)) => {
                assert_eq!(*id, o.id);
                p.osds.insert(id.0, o.clone());
            }
            (RecordKey::Pool(id), Record::Pool(s)) => {
                assert_eq!(*id, s.id);
                p.pools.insert(id.0, s.clone());
            }
            (RecordKey::PgChunk(pool, i), Record::PgChunk(pgs)) => {
                let next = last_chunk.entry(pool.0).or_insert(0);
                assert_eq!(*i, *next, "chunks of {pool} in order");
                *next += 1;
                p.pgs.entry(pool.0).or_default().extend(pgs.iter().cloned());
            }
            (RecordKey::Image(pool, id), Record::Image(i)) => {
                assert_eq!((*pool, *id), (i.pool, i.id));
                p.images.push(i.clone());
            }
            other => panic!("unexpected record {other:?}"),
        }
    }
    p
}

/// The records are sorted, unique, chunked as our store chunks, and load with no garbage.
fn loads_cleanly(c: &Converted) -> ClusterState {
    let keys: Vec<RecordKey> = c.records.iter().map(|(k, _)| *k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "records in key order, each once");
    for (key, record) in &c.records {
        if let (RecordKey::PgChunk(pool, i), Record::PgChunk(pgs)) = (key, record) {
            let count = c
                .records
                .iter()
                .find_map(|(_, r)| match r {
                    Record::Pool(s) if s.id == *pool => Some(s.pg_count),
                    _ => None,
                })
                .expect("its pool");
            let want = PG_CHUNK.min(count - i * PG_CHUNK) as usize;
            assert_eq!(pgs.len(), want, "{key:?}");
        }
        // Every record survives our codec unchanged.
        let bytes = crate::cluster::encode_record(record);
        assert_eq!(
            &crate::cluster::decode_record(key, &bytes).expect("decodes"),
            record
        );
    }
    let (state, garbage) = ClusterState::from_records(c.records.clone()).expect("loads");
    assert!(garbage.is_empty(), "garbage: {garbage:?}");
    state
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .map(|a| a.iter().map(|v| v.as_i64().expect("an id")).collect())
        .unwrap_or_default()
}

fn int(v: &Value, field: &str) -> i64 {
    v.get(field).map_or(0, |x| x.as_i64().expect(field))
}

/// Through the legacy map encoder, every OSD and every PG of the source is answered as the Go
/// monitor answered it: same members, core index, new members and core, state and versions; the
/// maps' versions never below the source's.
fn legacy_answers_as_the_source(source: &[(String, Vec<u8>)], c: &Converted) {
    let state = loads_cleanly(c);
    let cache = MapCache::default();
    let gom = cache.osdmap_reply(
        &state,
        &msg::GetOsdMapRequest {
            osdid: -1,
            currentversion: -1,
        },
    );
    let gom = msg::GetOsdMapResponse::decode(gom.as_ref()).expect("osdmap");
    let map = value_of(source, OSDMAP_KEY);
    assert_eq!(gom.osdmapversion, int(&map, "version").max(1));
    let osdinfo = map["osdinfo"].as_object().unwrap();
    assert_eq!(gom.osds.len(), osdinfo.len());
    for o in &gom.osds {
        let src = &osdinfo[&o.osdid.to_string()];
        let pending = src["ispendingcreate"].as_bool().unwrap();
        assert_eq!(
            o.address,
            src["address"].as_str().unwrap(),
            "osd.{}",
            o.osdid
        );
        assert_eq!(o.isin, src["isin"].as_bool().unwrap(), "osd.{}", o.osdid);
        assert_eq!(o.isup, src["isup"].as_bool().unwrap(), "osd.{}", o.osdid);
        assert_eq!(o.ispendingcreate, pending);
        let ports: BTreeMap<u32, (i64, i64, i64)> = src["sharded_ports"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, s)| {
                        (
                            k.parse().unwrap(),
                            (int(s, "shardid"), int(s, "port"), int(s, "raw_port")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ours: BTreeMap<u32, (i64, i64, i64)> = o
            .sharded_ports
            .iter()
            .map(|(k, s)| {
                (
                    *k,
                    (
                        i64::from(s.coreid),
                        i64::from(s.port),
                        i64::from(s.raw_port),
                    ),
                )
            })
            .collect();
        assert_eq!(ours, ports, "osd.{}", o.osdid);
    }
    let gpm = cache.pgmap_reply(&state, &msg::GetPgMapRequest::default());
    let gpm = msg::GetPgMapResponse::decode(gpm.to_bytes().as_ref()).expect("pgmap");
    let pool_keys: Vec<&String> = source
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(POOL_PREFIX))
        .collect();
    assert_eq!(gpm.pgs.len(), pool_keys.len());
    for key in pool_keys {
        let id: i32 = key[POOL_PREFIX.len()..].parse().unwrap();
        let pool = value_of(source, key);
        assert_eq!(gpm.pools[&id], pool["name"].as_str().unwrap());
        let pgmap = &pool["poolpgmap"];
        let pgs = pgmap["pgmap"].as_object().unwrap();
        let max_pg = pgs.values().map(|p| int(p, "version")).max().unwrap_or(0);
        assert_eq!(
            gpm.poolid_pgmapversion[&id],
            int(pgmap, "version").max(max_pg),
            "{key}: the highest of its versions, not lower"
        );
        let ours: BTreeMap<i32, &msg::PgInfo> =
            gpm.pgs[&id].pi.iter().map(|p| (p.pgid, p)).collect();
        assert_eq!(ours.len(), pgs.len());
        for (pg_id, src) in pgs {
            let p = ours[&pg_id.parse::<i32>().unwrap()];
            let what = format!("{key} pg {pg_id}");
            assert_eq!(
                p.osdid.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
                ids(&src["osdlist"]),
                "{what}"
            );
            assert_eq!(i64::from(p.coreindex), int(src, "coreindex"), "{what}");
            assert_eq!(p.version, int(src, "version"), "{what}");
            assert_eq!(i64::from(p.state), int(src, "pgstate"), "{what}");
            let new = ids(&src["newosdlist"]);
            assert_eq!(
                p.newosdid.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
                new,
                "{what}"
            );
            assert_eq!(
                i64::from(p.newcoreindex),
                int(src, "newcoreindex"),
                "{what}"
            );
        }
    }
}

fn shard(core_id: u32, port: u16, raw_port: u16) -> Shard {
    Shard {
        core_id,
        port,
        raw_port,
    }
}

#[test]
fn small_converts_record_by_record() {
    let source = fixture(SMALL);
    let c = convert(&source).expect("converts");
    let p = parts(&c.records);
    let epoch = Epoch(57);
    assert_eq!(
        p.meta,
        Some(OsdMapMeta {
            epoch,
            flags: Flags::default(),
            core_num: Some(2),
        })
    );
    assert_eq!(
        p.counters,
        Some(Counters {
            next_pool_id: 2,
            next_image_id: 4,
            next_event_id: 1,
        })
    );
    assert_eq!(p.osds.len(), 7);
    let map = value_of(&source, OSDMAP_KEY);
    for (id, osd) in &p.osds {
        let src = &map["osdinfo"][id.to_string()];
        let uuid: uuid::Uuid = src["uuid"].as_str().unwrap().parse().unwrap();
        assert_eq!(osd.uuid, uuid);
        assert_eq!(osd.weight, Weight::DEFAULT);
        assert_eq!(osd.location.rack, None);
        assert_eq!(osd.location.root, DEFAULT_ROOT);
        assert_eq!(osd.last_change, epoch);
        if *id == 7 {
            // Applied for, never booted.
            assert_eq!(osd.liveness, Liveness::New);
            assert_eq!(
                osd.membership,
                Membership::Out {
                    reason: OutReason::New,
                    since: epoch
                }
            );
            assert_eq!(osd.address, None);
            assert!(osd.shards.is_empty());
            assert_eq!((osd.core_num, osd.size, osd.config_hash), (0, 0, 0));
            continue;
        }
        let address: IpAddr = format!("192.168.10.{}", 10 + id).parse().unwrap();
        assert_eq!(osd.address, Some(address));
        assert_eq!(osd.location.host, format!("node{}", id.div_ceil(2)));
        assert_eq!((osd.size, osd.core_num), (1 << 20, 2));
        let base = 7000 + 10 * *id as u16;
        assert_eq!(
            *osd.shards,
            [shard(0, base, base + 100), shard(1, base + 1, base + 101)]
        );
        let config = src["Config"].as_str().unwrap();
        assert_eq!(osd.config_hash, config_hash(config));
        assert!(
            c.blobs
                .contains(&(BlobKey::OsdConfig(OsdId(*id)), config.as_bytes().to_vec()))
        );
        let instance = import_instance(OsdId(*id));
        if *id == 4 {
            assert_eq!(
                osd.liveness,
                Liveness::Down {
                    instance: Some(instance),
                    since: epoch,
                    reason: DownReason::NoHeartbeat
                }
            );
            assert_eq!(
                osd.membership,
                Membership::Out {
                    reason: OutReason::Auto,
                    since: epoch
                }
            );
        } else {
            assert_eq!(
                osd.liveness,
                Liveness::Up {
                    instance,
                    since: epoch
                }
            );
            assert_eq!(osd.membership, Membership::In { since: epoch });
        }
    }
    assert_eq!(c.blobs.len(), 6);

    assert_eq!(
        p.pools[&1],
        PoolSettings {
            id: PoolId(1),
            name: "rbd".to_string(),
            size: 3,
            pg_count: 64,
            failure_domain: FailureDomain::Host,
            root: DEFAULT_ROOT.to_string(),
            // The highest PG version (40) is above the pgmap version (33).
            epoch: Epoch(40),
        }
    );
    let pool = value_of(&source, "/config/pools/1");
    let pgs = &p.pgs[&1];
    assert_eq!(pgs.len(), 64);
    for (i, pg) in pgs.iter().enumerate() {
        let src = &pool["poolpgmap"]["pgmap"][i.to_string()];
        let members: Vec<i64> = pg.members.iter().map(|m| i64::from(m.0)).collect();
        assert_eq!(members, ids(&src["osdlist"]), "pg {i}");
        assert_eq!(i64::from(pg.core), int(src, "coreindex"), "pg {i}");
        assert_eq!(pg.target, None);
        assert_eq!(pg.state, PgState::ACTIVE);
        assert_eq!(pg.version, Epoch(int(src, "version") as u64));
        assert_eq!((pg.leader, pg.change_failures), (None, 0));
    }
    let images: Vec<(u64, u32, &str, u64, u64)> = p
        .images
        .iter()
        .map(|i| (i.id.0, i.pool.0, i.name.as_str(), i.size, i.object_size))
        .collect();
    assert_eq!(
        images,
        [
            (1, 1, "vm1", 10 << 30, 4 << 20),
            (3, 1, "vm-data", 20 << 30, 4 << 20)
        ]
    );

    let r = &c.report;
    assert_eq!(
        r.counts,
        Counts {
            osds: 7,
            osds_up: 5,
            osds_in: 5,
            osds_pending_create: 1,
            pools: 1,
            pgs: 64,
            pgs_remapped: 0,
            pgs_to_remap: 0,
            pgs_to_refresh: 0,
            images: 2,
            flags_set: 0,
            topology_keys_ignored: 0,
            election_keys_ignored: 1,
            unknown_keys: 0,
        }
    );
    assert_eq!(
        r.versions,
        Versions {
            source_osdmap: 57,
            osdmap_epoch: 57,
            source_max_pg: 40,
            pools: vec![PoolVersions {
                pool: 1,
                source_pgmap: 33,
                source_max_pg: 40,
                epoch: 40,
            }],
        }
    );
    assert!(r.flags.is_empty());
    assert!(!r.pending_out_to_in);
    assert_eq!(r.anomalies, []);
    assert!(!r.has_blocking());
    assert_eq!(r.notes.len(), 1);
    assert!(
        r.notes[0].starts_with("norebalance is not set"),
        "{:?}",
        r.notes
    );
    legacy_answers_as_the_source(&source, &c);
}

#[test]
fn remap_keeps_every_change_in_flight_and_the_flags() {
    let source = fixture(REMAP);
    let c = convert(&source).expect("converts");
    let p = parts(&c.records);
    let meta = p.meta.unwrap();
    assert_eq!(meta.epoch, Epoch(212));
    assert_eq!(
        meta.flags,
        Flags::default().with(ClusterFlag::NoRebalance),
        "norebalance set, noout not"
    );
    assert_eq!(meta.core_num, Some(4));
    // osd.3 died and went out; osd.5 was marked out while up.
    let instance = |id| import_instance(OsdId(id));
    assert_eq!(
        p.osds[&3].liveness,
        Liveness::Down {
            instance: Some(instance(3)),
            since: Epoch(212),
            reason: DownReason::NoHeartbeat
        }
    );
    assert!(!p.osds[&3].is_in() && !p.osds[&5].is_in());
    assert!(p.osds[&5].is_up());
    assert_eq!(
        p.osds[&5].membership,
        Membership::Out {
            reason: OutReason::Auto,
            since: Epoch(212)
        }
    );
    assert!(p.osds[&8].is_in() && p.osds[&8].is_up());

    // Every PG as the source has it; a target exactly where new members are listed.
    let mut remapped = 0;
    for (key, id) in [("/config/pools/1", 1), ("/config/pools/2", 2)] {
        let pool = value_of(&source, key);
        for (i, pg) in p.pgs[&id].iter().enumerate() {
            let src = &pool["poolpgmap"]["pgmap"][i.to_string()];
            let new = ids(&src["newosdlist"]);
            let state = int(src, "pgstate");
            match &pg.target {
                None => {
                    assert!(new.is_empty());
                    assert_eq!(pg.state, PgState::ACTIVE, "{key} pg {i}");
                }
                Some(t) => {
                    remapped += 1;
                    assert_eq!(
                        t.members.iter().map(|m| i64::from(m.0)).collect::<Vec<_>>(),
                        new
                    );
                    assert_eq!(i64::from(t.core), int(src, "newcoreindex"));
                    let want = if state == 20 {
                        PgState::ACTIVE
                            .with(PgState::UNDERSIZE)
                            .with(PgState::REMAPPED)
                    } else {
                        assert_eq!(state, 16);
                        PgState::ACTIVE.with(PgState::REMAPPED)
                    };
                    assert_eq!(pg.state, want, "{key} pg {i}");
                }
            }
            assert_eq!(pg.version, Epoch(int(src, "version") as u64));
        }
    }
    assert_eq!(p.pools[&1].epoch, Epoch(149));
    assert_eq!(
        p.pools[&1].root, DEFAULT_ROOT,
        "defaultroot is our default root"
    );
    assert_eq!(p.pools[&2].failure_domain, FailureDomain::Osd);
    assert_eq!(p.pools[&2].epoch, Epoch(17));

    let r = &c.report;
    assert_eq!(r.counts.pgs, 160);
    assert_eq!(r.counts.pgs_remapped, remapped);
    assert_eq!(remapped, 99);
    assert_eq!(
        r.counts.pgs_to_remap, 0,
        "every out member has its change in flight"
    );
    assert_eq!(
        (r.counts.osds, r.counts.osds_up, r.counts.osds_in),
        (8, 7, 6)
    );
    assert_eq!(r.flags, ["norebalance"]);
    assert!(r.pending_out_to_in);
    assert_eq!(r.anomalies, []);
    // The Go monitor's undersize on size-2 PGs with one replica down (down by our rule), and
    // remapped PGs whose other member is down: state bits our reconciler brings in line.
    assert_eq!(r.counts.pgs_to_refresh, 18);
    assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    assert!(
        r.notes[0].starts_with("pending out→in rebalance: replayed when norebalance is cleared")
    );
    assert!(r.notes[1].starts_with("18 PGs get new state bits"));
    legacy_answers_as_the_source(&source, &c);
}

/// (severity, kind, key, count) of every anomaly.
fn summary(r: &ImportReport) -> Vec<(Severity, AnomalyKind, &str, u64)> {
    r.anomalies
        .iter()
        .map(|a| (a.severity, a.kind, a.key.as_str(), a.count))
        .collect()
}

#[test]
fn quirks_are_read_and_every_anomaly_reported() {
    use AnomalyKind as K;
    use Severity::{Blocking, Fixed, Warning};
    let source = fixture(QUIRKS);
    let c = convert(&source).expect("converts");
    let r = &c.report;
    let om = "/osd/osdmap";
    let (p1, p2, p3) = ("/config/pools/1", "/config/pools/2", "/config/pools/3");
    assert_eq!(
        summary(r),
        [
            // Blocking, in the order found.
            (Blocking, K::InvalidValue, om, 1),
            (Blocking, K::BadOsdKey, om, 1),
            (Blocking, K::OsdIdMismatch, om, 1),
            (Blocking, K::InvalidUuid, om, 1),
            (Blocking, K::DuplicateUuid, om, 1),
            (Blocking, K::InvalidAddress, om, 1),
            (Blocking, K::InvalidHost, om, 1),
            (Blocking, K::BadShard, om, 1),
            (Blocking, K::InvalidValue, p1, 1),
            (Blocking, K::NoMembers, p1, 1),
            (Blocking, K::MissingPgs, p2, 4),
            (Blocking, K::PgOutOfRange, p2, 1),
            (Blocking, K::UnknownFailureDomain, p3, 1),
            (Blocking, K::DuplicatePoolName, p3, 1),
            (Blocking, K::ImagePoolGone, "/config/images/2", 1),
            (Blocking, K::DuplicateImageName, "/config/images/5", 1),
            (Blocking, K::InvalidValue, "/config/images/5", 1),
            // Warnings.
            (Warning, K::UnknownKey, "(keys)", 1),
            (Warning, K::CoreNumMismatch, om, 1),
            (Warning, K::IgnoredPoolKey, "/config/pools/abc", 1),
            (Warning, K::SharedFailureDomain, p1, 1),
            (Warning, K::TooManyMembers, p1, 1),
            (Warning, K::CoreBeyondCoreNum, p1, 1),
            (Warning, K::PoolIdMismatch, p3, 1),
            (Warning, K::ImageIdMismatch, "/config/images/7", 1),
            (Warning, K::UnknownField, om, 1),
            (Warning, K::UnknownField, p1, 1),
            // Fixed.
            (Fixed, K::PendingOsdState, om, 1),
            (Fixed, K::ShardGap, om, 1),
            (Fixed, K::DuplicateMember, p1, 1),
            (Fixed, K::UnknownMember, p1, 2),
            (Fixed, K::TargetWithoutCore, p1, 1),
            (Fixed, K::StateNormalised, p1, 4),
            (Fixed, K::EmptyFailureDomain, p2, 1),
            (Fixed, K::UnknownRoot, p2, 1),
        ],
        "{r}"
    );
    assert!(r.has_blocking());
    assert_eq!(r.flags, ["noout"]);
    assert!(r.pending_out_to_in);
    assert_eq!(
        (r.counts.topology_keys_ignored, r.counts.unknown_keys),
        (2, 1)
    );

    let p = parts(&c.records);
    let meta = p.meta.unwrap();
    // The import changed what the osdmap shows of OSDs: one epoch more.
    assert_eq!(meta.epoch, Epoch(41));
    assert_eq!(meta.flags, Flags::default().with(ClusterFlag::NoOut));
    assert_eq!(meta.core_num, Some(2), "the most common core count");
    assert_eq!(
        p.counters,
        Some(Counters {
            next_pool_id: 4,
            next_image_id: 9,
            next_event_id: 1,
        })
    );
    // OSDs: key 0 dropped; key 9 (osdid 10) imported as osd.9.
    assert_eq!(
        p.osds.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        *p.osds[&1].shards,
        [shard(2, 7100, 0), shard(3, 7101, 0)],
        "shardid holds the core id; raw_port 0 left out"
    );
    assert_eq!(p.osds[&3].uuid, p.osds[&4].uuid, "both kept");
    assert_eq!(p.osds[&5].uuid, placeholder_uuid(OsdId(5)));
    assert_eq!(
        p.osds[&5].uuid.to_string(),
        "676f0000-0000-8000-8000-000000000005"
    );
    assert_eq!(p.osds[&6].address, None);
    assert_eq!(p.osds[&6].location.host, "node 3", "kept");
    assert_eq!(p.osds[&6].core_num, 4);
    assert_eq!(
        *p.osds[&7].shards,
        [shard(0, 7170, 7270), shard(0, 0, 0), shard(1, 0, 0)]
    );
    assert_eq!(p.osds[&7].size, 0);
    assert_eq!(p.osds[&8].liveness, Liveness::New);
    assert!(!p.osds[&8].is_in());

    // Pool 1.
    let pgs = &p.pgs[&1];
    let members = |i: usize| -> Vec<u32> { pgs[i].members.iter().map(|m| m.0).collect() };
    let target = |i: usize| pgs[i].target.clone();
    let epoch1 = p.pools[&1].epoch;
    assert_eq!(
        epoch1,
        Epoch(16),
        "the highest version 15, one more for the changes"
    );
    assert_eq!(
        (members(0), pgs[0].version),
        (vec![1, 3, 7], Epoch(5)),
        "untouched"
    );
    assert_eq!((members(1), pgs[1].version), (vec![1, 3], epoch1));
    assert_eq!(members(2), [1, 7]);
    assert_eq!(
        target(3),
        Some(Target {
            members: vec![OsdId(2), OsdId(7)],
            core: 1
        })
    );
    assert_eq!(
        (members(4), pgs[4].version),
        (vec![1, 2, 3], Epoch(9)),
        "kept"
    );
    assert_eq!(pgs[5].state, PgState::ACTIVE, "state 0");
    assert_eq!((pgs[6].state, target(6)), (PgState::ACTIVE, None));
    assert_eq!(
        (pgs[7].state, target(7).map(|t| t.core)),
        (PgState::ACTIVE.with(PgState::REMAPPED), Some(0)),
        "newcoreindex left out is core 0"
    );
    assert_eq!(
        (pgs[8].state, target(8).map(|t| t.core)),
        (PgState::CREATING.with(PgState::REMAPPED), Some(1)),
        "no core for the change: the PG's"
    );
    assert_eq!((pgs[9].core, pgs[9].version), (7, epoch1));
    // Placed anew: three members on three hosts among the in OSDs.
    assert_eq!(pgs[10].members.len(), 3);
    assert!(pgs[10].state.contains(PgState::CREATING));
    assert_eq!(pgs[10].version, epoch1);
    assert_eq!(members(11), [1, 3, 5, 7], "more than the size, kept");
    assert_eq!(p.pgs[&2].len(), 16, "the missing PGs placed anew");
    for pg in &p.pgs[&2][12..] {
        assert_eq!(pg.members.len(), 3);
        assert_eq!(pg.version, p.pools[&2].epoch);
    }
    assert_eq!(p.pools[&2].root, DEFAULT_ROOT);
    assert_eq!(p.pools[&2].failure_domain, FailureDomain::Host);
    assert_eq!(p.pools[&3].failure_domain, FailureDomain::Host);
    assert!(!p.pools.contains_key(&4), "/config/pools/abc ignored");

    // Images: the ghost dropped; both "dup" kept; imageID 8 under key 7.
    let images: Vec<(u64, u32, &str, u64)> = p
        .images
        .iter()
        .map(|i| (i.id.0, i.pool.0, i.name.as_str(), i.size))
        .collect();
    assert_eq!(
        images,
        [
            (1, 1, "vm1", 1 << 30),
            (4, 1, "dup", 1 << 30),
            (5, 1, "dup", 0),
            (8, 3, "vm8", 1 << 30)
        ]
    );
    let state = loads_cleanly(&c);
    // Names resolve as the report says: "big" is pool 3, "dup" image 5.
    assert_eq!(state.pool_by_name("big").unwrap().id, PoolId(3));
    assert_eq!(state.image(PoolId(1), "dup").unwrap().id, ImageId(5));
    // ApplyId of the shared uuid answers the higher id.
    let mut s = state.clone();
    let again = s
        .apply(&crate::cluster::command::ApplyId {
            uuid: p.osds[&3].uuid.to_string(),
        })
        .unwrap();
    assert_eq!(again.reply.id, OsdId(4));
}

#[test]
fn the_quirks_report_reads_well_and_stays_short() {
    let c = convert(&fixture(QUIRKS)).unwrap();
    let text = c.report.to_string();
    for line in text.lines() {
        assert!(line.len() < 700, "{line}");
    }
    assert!(text.contains(
        "BLOCKING missing-pgs /config/pools/2: 4 PGs: pg 12; pg 13; pg 14; pg 15; placed anew"
    ));
    assert!(text.contains("FIXED duplicate-member /config/pools/1: 1 PGs: pg 1 members [1,1,3]"));
    assert!(text.contains("WARNING shared-failure-domain /config/pools/1: 1 PGs: pg 4 [1,2,3]"));
    assert!(
        text.contains("anomalies: 17 blocking, 10 warnings, 8 fixed"),
        "{text}"
    );
    assert!(text.contains("  osdmap: 40 → 41\n  pool 1: pgmap 15, highest PG 15 → epoch 16\n"));
    let json: Value = serde_json::from_str(&c.report.to_json()).unwrap();
    assert_eq!(json["counts"]["osds"], 9);
    assert_eq!(json["anomalies"][0]["severity"], "blocking");
    assert_eq!(json["anomalies"][0]["kind"], "invalid-value");
    assert_eq!(json["versions"]["osdmap_epoch"], 41);
}

#[test]
fn sources_that_cannot_be_imported_are_refused_in_one_line() {
    let mut source = fixture(SMALL);
    source.retain(|(k, _)| k != OSDMAP_KEY);
    assert_eq!(convert(&source).unwrap_err(), GoImportError::NoOsdMap);

    let mut source = fixture(SMALL);
    source.push(("/config/pools/7".to_string(), b"{\"name\":".to_vec()));
    let e = convert(&source).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("/config/pools/7: not the Go monitor's JSON: EOF while parsing"),
        "{text}"
    );

    let mut source = fixture(SMALL);
    let huge = format!("{{\"pg_count\":\"{}\"}}", "x".repeat(100_000));
    source.push(("/config/pools/8".to_string(), huge.into_bytes()));
    let text = convert(&source).unwrap_err().to_string();
    assert!(text.len() < 300 && !text.contains('\n'), "{text}");

    let mut source = fixture(SMALL);
    source.push(source[0].clone());
    assert!(matches!(
        convert(&source),
        Err(GoImportError::DuplicateKey { .. })
    ));

    let mut source = fixture(SMALL);
    for (k, v) in &mut source {
        if k == OSDMAP_KEY {
            *v = b"[]".to_vec();
        }
    }
    assert!(
        convert(&source)
            .unwrap_err()
            .to_string()
            .starts_with("/osd/osdmap: not the Go monitor's JSON: invalid type: sequence")
    );
}

#[test]
fn an_empty_osdmap_is_imported_as_a_cluster_without_osds() {
    let source = vec![(OSDMAP_KEY.to_string(), b"{\"RwMutex\":{}}".to_vec())];
    let c = convert(&source).unwrap();
    let p = parts(&c.records);
    assert_eq!(p.meta.unwrap().epoch, Epoch(1), "our lowest epoch");
    assert!(p.osds.is_empty());
    assert_eq!(c.report.anomalies, []);
    loads_cleanly(&c);
}

#[test]
fn synthetic_sources_convert_without_anomalies() {
    let source = synthetic_source(120, 4, 300, 11);
    let c = convert(&source).unwrap();
    assert_eq!(
        c.report
            .anomalies
            .iter()
            .map(|a| (a.kind, a.detail.as_str()))
            .collect::<Vec<_>>(),
        []
    );
    let counts = &c.report.counts;
    assert_eq!(
        (counts.osds, counts.pools, counts.pgs, counts.images),
        (120, 4, 1200, 4)
    );
    assert!(counts.pgs_remapped > 0);
    legacy_answers_as_the_source(&source, &c);
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// 10,000 OSDs, 1,000 pools, 1,000,000 PGs: `cargo test --release --lib migrate -- --ignored
/// --nocapture`. Prints the time and memory.
#[test]
#[ignore = "scale: run in release mode"]
fn a_million_pgs_convert_in_seconds() {
    let started = Instant::now();
    let source = synthetic_source(10_000, 1_000, 1_000, 42);
    let bytes: usize = source.iter().map(|(k, v)| k.len() + v.len()).sum();
    let generated = started.elapsed();
    let before = rss_mib();
    let started = Instant::now();
    let c = convert(&source).expect("converts");
    let took = started.elapsed();
    let after = rss_mib();
    let peak = peak_rss_mib();
    assert_eq!(c.report.counts.pgs, 1_000_000);
    assert_eq!(c.report.counts.osds, 10_000);
    assert!(!c.report.has_blocking(), "{}", c.report);
    let started = Instant::now();
    let (state, garbage) = ClusterState::from_records(c.records.clone()).expect("loads");
    let loaded = started.elapsed();
    assert!(garbage.is_empty());
    assert_eq!(state.pg_count(), 1_000_000);
    println!(
        "synthetic source: {:.1} MiB in {} keys, generated in {generated:.2?}",
        bytes as f64 / (1 << 20) as f64,
        source.len()
    );
    println!(
        "convert: {took:.2?}; RSS before {before:?} MiB, after {after:?} MiB (source and \
         records held), peak {peak:?} MiB; {} records; from_records {loaded:.2?}",
        c.records.len()
    );
    println!(
        "{}",
        c.report
            .to_string()
            .lines()
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Keep the source alive until here, so the RSS figures include it as stated.
    drop(source);
    let _ = PgId(0);
}
