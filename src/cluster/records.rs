//! Records: the units the cluster state is stored as in etcd (one key each), and their
//! protobuf encoding. The key strings are built by `etcd::keys`.

use std::net::IpAddr;
use std::sync::Arc;

use prost::Message;

use super::events::{Event, EventBody};
use super::flags::Flags;
use super::health::{Health, Mute, Raised, Severity};
use super::image::Image;
use super::osd::{DownReason, Liveness, Location, Membership, Osd, OutReason, Shard};
use super::pool::{FailureDomain, Pg, PgState, Target};
use super::types::{BootInstance, Epoch, ImageId, OsdId, PoolId, Weight};
use crate::proto::store as pb;
use crate::text::shown;

/// Identifies one stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    /// The osdmap's epoch, flags and core count.
    OsdMapMeta,
    /// Id counters.
    Counters,
    Osd(OsdId),
    /// A pool's settings and pgmap epoch.
    Pool(PoolId),
    /// A chunk of a pool's PG table.
    PgChunk(PoolId, u32),
    Image(PoolId, ImageId),
    /// The tombstone of a deleted pool.
    Tombstone(PoolId),
    /// The osdmap epoch at which an OSD was purged.
    PurgedOsd(OsdId),
    /// The raised health checks and their mutes.
    Health,
}

/// The osdmap-wide settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OsdMapMeta {
    pub epoch: Epoch,
    pub flags: Flags,
    /// Shards per OSD; None until the first boot.
    pub core_num: Option<u32>,
}

/// Id counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub next_pool_id: u32,
    pub next_image_id: u64,
    /// The id the next event gets (ids start at 1, never reused, never skipped).
    pub next_event_id: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            next_pool_id: 1,
            next_image_id: 1,
            next_event_id: 1,
        }
    }
}

/// A pool's settings as stored (its PGs are stored in chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub id: PoolId,
    pub name: String,
    pub size: u32,
    pub pg_count: u32,
    pub failure_domain: FailureDomain,
    pub root: String,
    pub epoch: Epoch,
}

/// A deleted pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub pool: PoolId,
    pub name: String,
    pub deleted_epoch: Epoch,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    OsdMapMeta(OsdMapMeta),
    Counters(Counters),
    Osd(Arc<Osd>),
    Pool(PoolSettings),
    PgChunk(Vec<Pg>),
    Image(Arc<Image>),
    Tombstone(Tombstone),
    PurgedOsd(OsdId, Epoch),
    Health(Health),
}

/// A stored value that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode {key:?}: {reason}")]
pub struct DecodeError {
    pub key: RecordKey,
    pub reason: String,
}

/// Encodes the events of one transaction (`<prefix>/events/<first id>`).
pub fn encode_event_batch(events: &[Event]) -> Vec<u8> {
    pb::EventBatch {
        events: events.iter().map(event_to_pb).collect(),
    }
    .encode_to_vec()
}

fn event_to_pb(e: &Event) -> pb::EventRecord {
    pb::EventRecord {
        id: e.id,
        r#type: e.kind.clone(),
        subject: e.subject.clone(),
        time_ms: e.time_ms,
        osdmap_epoch: e.osdmap_epoch.map_or(0, |x| x.0),
        pool_id: e.pool_epoch.map_or(0, |(p, _)| p.0),
        pool_epoch: e.pool_epoch.map_or(0, |(_, x)| x.0),
        data: e.data.clone(),
    }
}

/// The encoded size of one event in a batch (what it adds to a transaction).
pub fn event_size(body: &EventBody) -> usize {
    // The id and time are not known yet: count them at their largest.
    event_to_pb(&Event::committed(body.clone(), u64::MAX, u64::MAX)).encoded_len() + 4
}

/// Decodes the events of one transaction; `first` is the id its key names. The ids must
/// follow each other from `first`.
pub fn decode_event_batch(first: u64, value: &[u8]) -> Result<Vec<Event>, String> {
    let batch = pb::EventBatch::decode(value).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(batch.events.len());
    for (i, r) in batch.events.into_iter().enumerate() {
        if r.id != first + i as u64 {
            return Err(format!(
                "event {} of the batch at {first} has id {}",
                i + 1,
                r.id
            ));
        }
        out.push(Event {
            id: r.id,
            kind: r.r#type,
            subject: r.subject,
            time_ms: r.time_ms,
            osdmap_epoch: (r.osdmap_epoch > 0).then_some(Epoch(r.osdmap_epoch)),
            pool_epoch: (r.pool_epoch > 0).then_some((PoolId(r.pool_id), Epoch(r.pool_epoch))),
            data: r.data,
        });
    }
    if out.is_empty() {
        return Err(format!("the batch at {first} holds no event"));
    }
    Ok(out)
}

/// Encodes a record as its protobuf value.
pub fn encode_record(record: &Record) -> Vec<u8> {
    match record {
        Record::OsdMapMeta(m) => pb::OsdMapMeta {
            epoch: m.epoch.0,
            flags: m.flags.bits(),
            core_num: m.core_num.unwrap_or(0),
        }
        .encode_to_vec(),
        Record::Counters(c) => pb::Counters {
            next_pool_id: c.next_pool_id,
            next_image_id: c.next_image_id,
            next_event_id: c.next_event_id,
        }
        .encode_to_vec(),
        Record::Osd(o) => osd_to_pb(o).encode_to_vec(),
        Record::Pool(p) => pb::PoolRecord {
            id: p.id.0,
            name: p.name.clone(),
            size: p.size,
            pg_count: p.pg_count,
            failure_domain: p.failure_domain.to_i32(),
            root: p.root.clone(),
            epoch: p.epoch.0,
        }
        .encode_to_vec(),
        Record::PgChunk(pgs) => pb::PgChunkRecord {
            pgs: pgs.iter().map(pg_to_pb).collect(),
        }
        .encode_to_vec(),
        Record::Image(i) => pb::ImageRecord {
            id: i.id.0,
            pool_id: i.pool.0,
            name: i.name.clone(),
            size: i.size,
            object_size: i.object_size,
        }
        .encode_to_vec(),
        Record::Tombstone(t) => pb::PoolTombstone {
            pool_id: t.pool.0,
            name: t.name.clone(),
            deleted_epoch: t.deleted_epoch.0,
        }
        .encode_to_vec(),
        Record::PurgedOsd(id, epoch) => pb::PurgedOsd {
            id: id.0,
            epoch: epoch.0,
        }
        .encode_to_vec(),
        Record::Health(h) => health_to_pb(h).encode_to_vec(),
    }
}

/// Decodes the value stored under `key`.
pub fn decode_record(key: &RecordKey, value: &[u8]) -> Result<Record, DecodeError> {
    let err = |reason: String| DecodeError { key: *key, reason };
    let pe = |e: prost::DecodeError| err(e.to_string());
    Ok(match key {
        RecordKey::OsdMapMeta => {
            let m = pb::OsdMapMeta::decode(value).map_err(pe)?;
            Record::OsdMapMeta(OsdMapMeta {
                epoch: Epoch(m.epoch),
                flags: Flags::from_bits(m.flags),
                core_num: (m.core_num > 0).then_some(m.core_num),
            })
        }
        RecordKey::Counters => {
            let c = pb::Counters::decode(value).map_err(pe)?;
            Record::Counters(Counters {
                next_pool_id: c.next_pool_id.max(1),
                next_image_id: c.next_image_id.max(1),
                next_event_id: c.next_event_id.max(1),
            })
        }
        RecordKey::Osd(id) => {
            let r = pb::OsdRecord::decode(value).map_err(pe)?;
            if r.id != id.0 {
                return Err(err(format!("record holds osd {}", r.id)));
            }
            Record::Osd(Arc::new(osd_from_pb(r).map_err(err)?))
        }
        RecordKey::Pool(id) => {
            let r = pb::PoolRecord::decode(value).map_err(pe)?;
            if r.id != id.0 {
                return Err(err(format!("record holds pool {}", r.id)));
            }
            Record::Pool(PoolSettings {
                id: PoolId(r.id),
                name: r.name,
                size: r.size,
                pg_count: r.pg_count,
                failure_domain: FailureDomain::from_i32(r.failure_domain)
                    .ok_or_else(|| err(format!("failure domain {}", r.failure_domain)))?,
                root: r.root,
                epoch: Epoch(r.epoch),
            })
        }
        RecordKey::PgChunk(..) => {
            let r = pb::PgChunkRecord::decode(value).map_err(pe)?;
            Record::PgChunk(r.pgs.into_iter().map(pg_from_pb).collect())
        }
        RecordKey::Image(pool, id) => {
            let r = pb::ImageRecord::decode(value).map_err(pe)?;
            if r.id != id.0 || r.pool_id != pool.0 {
                return Err(err(format!(
                    "record holds image {} of pool {}",
                    r.id, r.pool_id
                )));
            }
            Record::Image(Arc::new(Image {
                id: ImageId(r.id),
                pool: PoolId(r.pool_id),
                name: r.name,
                size: r.size,
                object_size: r.object_size,
            }))
        }
        RecordKey::Tombstone(pool) => {
            let r = pb::PoolTombstone::decode(value).map_err(pe)?;
            if r.pool_id != pool.0 {
                return Err(err(format!("record holds pool {}", r.pool_id)));
            }
            Record::Tombstone(Tombstone {
                pool: PoolId(r.pool_id),
                name: r.name,
                deleted_epoch: Epoch(r.deleted_epoch),
            })
        }
        RecordKey::PurgedOsd(id) => {
            let r = pb::PurgedOsd::decode(value).map_err(pe)?;
            if r.id != id.0 {
                return Err(err(format!("record holds osd {}", r.id)));
            }
            Record::PurgedOsd(*id, Epoch(r.epoch))
        }
        RecordKey::Health => {
            Record::Health(health_from_pb(pb::HealthRecord::decode(value).map_err(pe)?))
        }
    })
}

fn health_to_pb(h: &Health) -> pb::HealthRecord {
    pb::HealthRecord {
        raised: h
            .raised
            .iter()
            .map(|(code, r)| pb::RaisedCheckRecord {
                code: code.clone(),
                severity: r.severity.to_u32(),
                count: r.count,
                summary: r.summary.clone(),
                since_ms: r.since_ms,
            })
            .collect(),
        mutes: h
            .mutes
            .iter()
            .map(|(code, m)| pb::HealthMuteRecord {
                code: code.clone(),
                until_ms: m.until_ms.unwrap_or(0),
                sticky: m.sticky,
                severity: m.severity.to_u32(),
                count: m.count,
                since_ms: m.since_ms,
            })
            .collect(),
    }
}

fn health_from_pb(r: pb::HealthRecord) -> Health {
    Health {
        raised: r
            .raised
            .into_iter()
            .map(|c| {
                (
                    c.code,
                    Raised {
                        severity: Severity::from_u32(c.severity),
                        count: c.count,
                        summary: c.summary,
                        since_ms: c.since_ms,
                    },
                )
            })
            .collect(),
        mutes: r
            .mutes
            .into_iter()
            .map(|m| {
                (
                    m.code,
                    Mute {
                        until_ms: (m.until_ms > 0).then_some(m.until_ms),
                        sticky: m.sticky,
                        severity: Severity::from_u32(m.severity),
                        count: m.count,
                        since_ms: m.since_ms,
                    },
                )
            })
            .collect(),
    }
}

fn osd_to_pb(o: &Osd) -> pb::OsdRecord {
    let (liveness, boot_instance, liveness_since, down_reason) = match o.liveness {
        Liveness::New => (pb::LivenessKind::New, 0, 0, pb::DownReasonKind::Stopped),
        Liveness::Up { instance, since } => (
            pb::LivenessKind::Up,
            instance.0,
            since.0,
            pb::DownReasonKind::Stopped,
        ),
        Liveness::HeldDown { instance } => (
            pb::LivenessKind::HeldDown,
            instance.0,
            0,
            pb::DownReasonKind::Stopped,
        ),
        Liveness::Down {
            instance,
            since,
            reason,
        } => (
            pb::LivenessKind::Down,
            instance.map_or(0, |i| i.0),
            since.0,
            match reason {
                DownReason::Stopped => pb::DownReasonKind::Stopped,
                DownReason::NoHeartbeat => pb::DownReasonKind::NoHeartbeat,
            },
        ),
    };
    let (is_in, out_reason, membership_since) = match o.membership {
        Membership::In { since } => (true, pb::OutReasonKind::New, since.0),
        Membership::Out { reason, since } => (
            false,
            match reason {
                OutReason::New => pb::OutReasonKind::New,
                OutReason::Manual => pb::OutReasonKind::Manual,
                OutReason::Auto => pb::OutReasonKind::Auto,
                OutReason::DeferredByNoIn => pb::OutReasonKind::DeferredByNoIn,
            },
            since.0,
        ),
    };
    pb::OsdRecord {
        id: o.id.0,
        uuid: o.uuid.hyphenated().to_string(),
        address: o.address.map(|a| a.to_string()).unwrap_or_default(),
        host: o.location.host.clone(),
        rack: o.location.rack.clone().unwrap_or_default(),
        root: o.location.root.clone(),
        weight_milli: o.weight.0,
        size: o.size,
        core_num: o.core_num,
        shards: o
            .shards
            .iter()
            .map(|s| pb::ShardRecord {
                core_id: s.core_id,
                port: u32::from(s.port),
                raw_port: u32::from(s.raw_port),
            })
            .collect(),
        liveness: liveness as i32,
        boot_instance,
        liveness_since,
        down_reason: down_reason as i32,
        r#in: is_in,
        out_reason: out_reason as i32,
        membership_since,
        config_hash: o.config_hash,
        last_change: o.last_change.0,
    }
}

fn osd_from_pb(r: pb::OsdRecord) -> Result<Osd, String> {
    let instance = (r.boot_instance != 0).then_some(BootInstance(r.boot_instance));
    let need_instance = || instance.ok_or_else(|| "booted OSD without a boot instance".to_string());
    let liveness = match pb::LivenessKind::try_from(r.liveness) {
        Ok(pb::LivenessKind::New) => Liveness::New,
        Ok(pb::LivenessKind::Up) => Liveness::Up {
            instance: need_instance()?,
            since: Epoch(r.liveness_since),
        },
        Ok(pb::LivenessKind::HeldDown) => Liveness::HeldDown {
            instance: need_instance()?,
        },
        Ok(pb::LivenessKind::Down) => Liveness::Down {
            instance,
            since: Epoch(r.liveness_since),
            reason: match pb::DownReasonKind::try_from(r.down_reason) {
                Ok(pb::DownReasonKind::NoHeartbeat) => DownReason::NoHeartbeat,
                _ => DownReason::Stopped,
            },
        },
        Err(_) => return Err(format!("unknown liveness {}", r.liveness)),
    };
    let membership = if r.r#in {
        Membership::In {
            since: Epoch(r.membership_since),
        }
    } else {
        Membership::Out {
            reason: match pb::OutReasonKind::try_from(r.out_reason) {
                Ok(pb::OutReasonKind::New) => OutReason::New,
                Ok(pb::OutReasonKind::Manual) => OutReason::Manual,
                Ok(pb::OutReasonKind::Auto) => OutReason::Auto,
                Ok(pb::OutReasonKind::DeferredByNoIn) => OutReason::DeferredByNoIn,
                Err(_) => return Err(format!("unknown out reason {}", r.out_reason)),
            },
            since: Epoch(r.membership_since),
        }
    };
    let address: Option<IpAddr> = if r.address.is_empty() {
        None
    } else {
        Some(
            r.address
                .parse()
                .map_err(|_| format!("bad address {}", shown(&r.address)))?,
        )
    };
    Ok(Osd {
        id: OsdId(r.id),
        uuid: r
            .uuid
            .parse()
            .map_err(|_| format!("bad uuid {}", shown(&r.uuid)))?,
        address,
        location: Location {
            host: r.host,
            rack: (!r.rack.is_empty()).then_some(r.rack),
            root: r.root,
        },
        weight: Weight(r.weight_milli),
        size: r.size,
        core_num: r.core_num,
        shards: r
            .shards
            .into_iter()
            .map(|s| {
                let port = |p: u32| u16::try_from(p).map_err(|_| format!("shard port {p}"));
                Ok(Shard {
                    core_id: s.core_id,
                    port: port(s.port)?,
                    raw_port: port(s.raw_port)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?
            .into(),
        liveness,
        membership,
        config_hash: r.config_hash,
        last_change: Epoch(r.last_change),
    })
}

fn pg_to_pb(p: &Pg) -> pb::PgRecord {
    pb::PgRecord {
        members: p.members.iter().map(|m| m.0).collect(),
        target_members: p
            .target
            .as_ref()
            .map(|t| t.members.iter().map(|m| m.0).collect())
            .unwrap_or_default(),
        core: p.core,
        target_core: p.target.as_ref().map_or(0, |t| t.core),
        state: p.state.0,
        version: p.version.0,
        leader: p.leader.map_or(0, |l| l.0),
        change_failures: p.change_failures,
    }
}

fn pg_from_pb(r: pb::PgRecord) -> Pg {
    Pg {
        members: r.members.into_iter().map(OsdId).collect(),
        target: (!r.target_members.is_empty()).then(|| Target {
            members: r.target_members.into_iter().map(OsdId).collect(),
            core: r.target_core,
        }),
        core: r.core,
        state: PgState(r.state),
        version: Epoch(r.version),
        leader: (r.leader != 0).then_some(OsdId(r.leader)),
        change_failures: r.change_failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(key: RecordKey, r: Record) {
        let bytes = encode_record(&r);
        assert_eq!(decode_record(&key, &bytes).unwrap(), r, "{key:?}");
    }

    #[test]
    fn every_record_round_trips() {
        round_trip(
            RecordKey::OsdMapMeta,
            Record::OsdMapMeta(OsdMapMeta {
                epoch: Epoch(42),
                flags: Flags::from_bits(0b110),
                core_num: Some(4),
            }),
        );
        round_trip(
            RecordKey::Counters,
            Record::Counters(Counters {
                next_pool_id: 7,
                next_image_id: 99,
                next_event_id: 12345,
            }),
        );
        let mut osd = Osd::new(OsdId(3), uuid::Uuid::from_u128(0xabc), Epoch(2));
        osd.address = Some("10.0.0.1".parse().unwrap());
        osd.location.rack = Some("r1".to_string());
        osd.shards = vec![Shard {
            core_id: 1,
            port: 8000,
            raw_port: 9000,
        }]
        .into();
        osd.liveness = Liveness::Down {
            instance: Some(BootInstance(5)),
            since: Epoch(9),
            reason: DownReason::NoHeartbeat,
        };
        osd.membership = Membership::Out {
            reason: OutReason::Auto,
            since: Epoch(10),
        };
        round_trip(RecordKey::Osd(OsdId(3)), Record::Osd(Arc::new(osd.clone())));
        osd.liveness = Liveness::Up {
            instance: BootInstance(6),
            since: Epoch(11),
        };
        osd.membership = Membership::In { since: Epoch(11) };
        round_trip(RecordKey::Osd(OsdId(3)), Record::Osd(Arc::new(osd)));
        round_trip(
            RecordKey::Pool(PoolId(1)),
            Record::Pool(PoolSettings {
                id: PoolId(1),
                name: "rbd".to_string(),
                size: 3,
                pg_count: 64,
                failure_domain: FailureDomain::Rack,
                root: "default".to_string(),
                epoch: Epoch(3),
            }),
        );
        round_trip(
            RecordKey::PgChunk(PoolId(1), 0),
            Record::PgChunk(vec![Pg {
                members: vec![OsdId(1), OsdId(2)],
                target: Some(Target {
                    members: vec![OsdId(1), OsdId(3)],
                    core: 2,
                }),
                core: 1,
                state: PgState::ACTIVE.with(PgState::REMAPPED),
                version: Epoch(4),
                leader: Some(OsdId(1)),
                change_failures: 2,
            }]),
        );
        round_trip(
            RecordKey::Image(PoolId(1), ImageId(5)),
            Record::Image(Arc::new(Image {
                id: ImageId(5),
                pool: PoolId(1),
                name: "vm".to_string(),
                size: 1 << 30,
                object_size: 4 << 20,
            })),
        );
        round_trip(
            RecordKey::PurgedOsd(OsdId(4)),
            Record::PurgedOsd(OsdId(4), Epoch(12)),
        );
        round_trip(
            RecordKey::Tombstone(PoolId(2)),
            Record::Tombstone(Tombstone {
                pool: PoolId(2),
                name: "old".to_string(),
                deleted_epoch: Epoch(8),
            }),
        );
    }

    #[test]
    fn mismatched_or_corrupt_records_are_refused() {
        let osd = Osd::new(OsdId(3), uuid::Uuid::from_u128(1), Epoch(1));
        let bytes = encode_record(&Record::Osd(Arc::new(osd)));
        assert!(decode_record(&RecordKey::Osd(OsdId(4)), &bytes).is_err());
        assert!(decode_record(&RecordKey::OsdMapMeta, &[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_corrupt_field_is_named_in_one_short_line() {
        let mut stored = osd_to_pb(&Osd::new(OsdId(3), uuid::Uuid::from_u128(1), Epoch(1)));
        stored.uuid = format!("x\n{}", "y".repeat(10_000));
        let e = decode_record(&RecordKey::Osd(OsdId(3)), &stored.encode_to_vec())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot decode Osd(OsdId(3)): bad uuid 'x\\nyyy"),
            "{e}"
        );
        assert!(e.ends_with("'…(10002 bytes)"), "{e}");
        stored.uuid = uuid::Uuid::from_u128(1).to_string();
        stored.shards = vec![pb::ShardRecord {
            core_id: 0,
            port: 70_000,
            raw_port: 1,
        }];
        let e = decode_record(&RecordKey::Osd(OsdId(3)), &stored.encode_to_vec()).unwrap_err();
        assert_eq!(e.reason, "shard port 70000");
    }

    /// Fuzzing the stored records: every record of a small cluster, mutated or replaced by
    /// random bytes, decodes to an error (one bounded line) or to a record that re-encodes to
    /// itself; a decoded one put in place of the original loads to a state or a LoadError.
    /// Never a panic: a corrupt etcd must not crash-loop every monitor that tries to lead.
    mod fuzz {
        use std::sync::OnceLock;

        use proptest::prelude::*;

        use super::*;
        use crate::cluster::state::tests::cluster;
        use crate::cluster::{ClusterState, Command, PoolArgs, command};
        use crate::fuzzing;

        /// Every stored record of a cluster with a pool, an image, a tombstone, a purged OSD.
        fn stored() -> &'static Vec<(RecordKey, Vec<u8>)> {
            static STORED: OnceLock<Vec<(RecordKey, Vec<u8>)>> = OnceLock::new();
            STORED.get_or_init(|| {
                let mut s = cluster(6, 3);
                let pool = |name: &str| {
                    command::CreatePool(PoolArgs {
                        name: name.to_string(),
                        size: 3,
                        pg_count: 300,
                        failure_domain: "host".to_string(),
                        root: String::new(),
                    })
                };
                fn run<C: Command>(s: &mut ClusterState, c: C) {
                    s.begin_group();
                    s.apply(&c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
                }
                run(&mut s, pool("rbd"));
                run(&mut s, pool("old"));
                run(
                    &mut s,
                    command::DeletePool {
                        name: "old".to_string(),
                    },
                );
                run(
                    &mut s,
                    command::CreateImage {
                        pool: "rbd".to_string(),
                        name: "vm".to_string(),
                        size: 1 << 30,
                        object_size: 0,
                    },
                );
                run(&mut s, command::OsdStop { id: OsdId(6) });
                run(&mut s, command::OsdOut { id: OsdId(6) });
                let mut keys = vec![RecordKey::OsdMapMeta, RecordKey::Counters];
                keys.extend(s.osds().map(|o| RecordKey::Osd(o.id)));
                for p in s.pools() {
                    keys.push(RecordKey::Pool(p.id));
                    keys.extend((0..p.pgs.chunk_count()).map(|i| RecordKey::PgChunk(p.id, i)));
                }
                keys.extend(s.images().map(|i| RecordKey::Image(i.pool, i.id)));
                keys.push(RecordKey::Tombstone(PoolId(2)));
                let purged = Record::PurgedOsd(OsdId(9), Epoch(3));
                let mut out: Vec<(RecordKey, Vec<u8>)> = keys
                    .iter()
                    .map(|k| (*k, encode_record(&s.record(k).expect("record"))))
                    .collect();
                out.push((RecordKey::PurgedOsd(OsdId(9)), encode_record(&purged)));
                out
            })
        }

        /// (which record, its bytes mutated or random)
        fn corrupted() -> impl Strategy<Value = (usize, Vec<u8>)> {
            (0..stored().len())
                .prop_flat_map(|i| (Just(i), fuzzing::bytes(vec![stored()[i].1.clone()])))
        }

        proptest! {
            #![proptest_config(fuzzing::config(4096))]

            #[test]
            fn corrupt_records_are_refused_or_loaded_never_a_panic((i, bytes) in corrupted()) {
                let (key, _) = &stored()[i];
                match decode_record(key, &bytes) {
                    Err(e) => {
                        let text = e.to_string();
                        prop_assert!(!text.is_empty() && !text.contains('\n'), "{}", text);
                        prop_assert!(text.len() <= 256 + bytes.len(), "{}", text);
                    }
                    Ok(record) => {
                        let again = decode_record(key, &encode_record(&record));
                        prop_assert_eq!(again.ok(), Some(record.clone()));
                        let records = stored().iter().map(|(k, v)| {
                            let r = if k == key {
                                record.clone()
                            } else {
                                decode_record(k, v).expect("intact record")
                            };
                            (*k, r)
                        });
                        if let Err(e) = ClusterState::from_records(records) {
                            prop_assert!(!e.to_string().contains('\n'));
                        }
                    }
                }
            }
        }
    }
}
