//! The maps of the framed protocol (LEGACY-PROTOCOL.md §7.5, §7.9, §7.10), read from the
//! committed snapshot and encoded once per epoch.
//!
//! The C++ client polls GetClusterMap every 3 s with `currentversion = −1`, so every poll of
//! every OSD and block client returns the whole osdmap. Its encoding (a `GetOsdMapResponse`
//! with every OSD) is built once per osdmap epoch, and each pool's PG list (`PGInfos`) once per
//! pool epoch; a reply is a [`Payload`]: those cached bytes, shared, between a few bytes of
//! field headers built per reply, written to the socket without being copied into a reply
//! buffer (never a message tree built and encoded again per poll either).
//!
//! What we answer differently from the Go monitor, inside the wire format (SPEC §12):
//! - pools the client did not list are sent in full (`pgMapGetOk`): a client that knows some
//!   pools still discovers new ones;
//! - a pool the client listed is left out only when it was deleted (its id is below the pool
//!   id counter, ids are never reused); a pool id this monitor never had (the client talked to
//!   a monitor with newer state, or invented it) is answered `pgMapclientVersionHigher`, never
//!   by absence, which the C++ client reads as "deleted" and answers by deleting PG data;
//! - `ispendingcreate` is filled in (true for an OSD that has an id but never booted).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::frame::Payload;
use crate::cluster::{ClusterState, Epoch, Liveness, Osd, PgState, Pool, PoolId};
use crate::proto::legacy as msg;

/// `newcoreindex` of a PG with no membership change in progress.
pub const NO_CORE: u32 = u32::MAX;

/// Encodings of the osdmap and the pools' PG lists, kept for their epoch.
#[derive(Default)]
pub struct MapCache {
    osdmap: Mutex<Option<(Epoch, Bytes)>>,
    pools: Mutex<HashMap<PoolId, (Epoch, Bytes)>>,
}

impl MapCache {
    /// The encoded `GetOsdMapResponse` carrying every OSD at the snapshot's epoch.
    fn full_osdmap(&self, s: &ClusterState) -> Bytes {
        let epoch = s.osdmap_epoch();
        if let Some((e, b)) = &*self.osdmap.lock()
            && *e == epoch
        {
            return b.clone();
        }
        // Built outside the lock; a concurrent miss builds it twice, harmlessly.
        let reply = msg::GetOsdMapResponse {
            errorcode: msg::OsdMapErrorCode::Ok as i32,
            osdmapversion: version(epoch),
            osds: s.osds().map(osd_info).collect(),
        };
        let bytes = Bytes::from(reply.encode_to_vec());
        *self.osdmap.lock() = Some((epoch, bytes.clone()));
        bytes
    }

    /// The encoded `PGInfos` of `pool` at its epoch.
    fn pg_infos(&self, s: &ClusterState, pool: &Pool) -> Bytes {
        if let Some((e, b)) = self.pools.lock().get(&pool.id)
            && *e == pool.epoch
        {
            return b.clone();
        }
        let infos = msg::PgInfos {
            pi: pool
                .pgs
                .iter()
                .map(|(id, pg)| msg::PgInfo {
                    pgid: id.0 as i32,
                    version: version(pg.version),
                    state: legacy_state(pg.state) as i32,
                    coreindex: pg.core,
                    osdid: pg.members.iter().map(|m| m.0 as i32).collect(),
                    newcoreindex: pg.target.as_ref().map_or(NO_CORE, |t| t.core),
                    newosdid: pg
                        .target
                        .as_ref()
                        .map(|t| t.members.iter().map(|m| m.0 as i32).collect())
                        .unwrap_or_default(),
                })
                .collect(),
        };
        let bytes = Bytes::from(infos.encode_to_vec());
        let mut cache = self.pools.lock();
        cache.retain(|p, _| s.pool(*p).is_some());
        cache.insert(pool.id, (pool.epoch, bytes.clone()));
        bytes
    }

    /// The encoded `GetOsdMapResponse` for a client at `r.currentversion` (§7.5).
    pub fn osdmap_reply(&self, s: &ClusterState, r: &msg::GetOsdMapRequest) -> Bytes {
        let current = version(s.osdmap_epoch());
        let bare = |code: msg::OsdMapErrorCode, v: i64| {
            Bytes::from(
                msg::GetOsdMapResponse {
                    errorcode: code as i32,
                    osdmapversion: v,
                    osds: Vec::new(),
                }
                .encode_to_vec(),
            )
        };
        if s.osd_count() == 0 {
            bare(msg::OsdMapErrorCode::NoOsdsExist, -1)
        } else if r.currentversion > current {
            bare(msg::OsdMapErrorCode::ClientVersionHigher, -1)
        } else if r.currentversion == current {
            bare(msg::OsdMapErrorCode::Ok, current)
        } else {
            self.full_osdmap(s)
        }
    }

    /// The encoded `GetPgMapResponse` for a client holding the pool versions `r` (§7.9 with
    /// the fixes in the module comment): the pools' cached `PGInfos` shared, not copied.
    pub fn pgmap_reply(&self, s: &ClusterState, r: &msg::GetPgMapRequest) -> Payload {
        let mut head = msg::GetPgMapResponse::default();
        // (pool id, its PGInfos) of the pools sent in full.
        let mut full: Vec<(i32, Bytes)> = Vec::new();
        let mut send_full = |head: &mut msg::GetPgMapResponse, p: &Pool| {
            let id = p.id.0 as i32;
            head.errorcode
                .insert(id, msg::GetPgMapErrorCode::PgMapGetOk as i32);
            head.poolid_pgmapversion.insert(id, version(p.epoch));
            head.pools.insert(id, p.name.clone());
            full.push((id, self.pg_infos(s, p)));
        };
        for (&id, &client) in &r.pool_versions {
            let known = u32::try_from(id).ok().filter(|&i| i > 0).map(PoolId);
            match known.and_then(|p| s.pool(p)) {
                Some(p) => {
                    let current = version(p.epoch);
                    if client > current {
                        head.errorcode
                            .insert(id, msg::GetPgMapErrorCode::PgMapclientVersionHigher as i32);
                        head.poolid_pgmapversion.insert(id, current);
                    } else if client == current {
                        head.errorcode
                            .insert(id, msg::GetPgMapErrorCode::PgMapSameVersion as i32);
                        head.poolid_pgmapversion.insert(id, current);
                        head.pools.insert(id, p.name.clone());
                    } else {
                        send_full(&mut head, p);
                    }
                }
                // Deleted: left out, the only way this wire says so.
                None if known.is_some_and(|p| p.0 < s.counters().next_pool_id) => {}
                // Never a pool here: not "deleted" (the client would drop its data).
                None => {
                    head.errorcode
                        .insert(id, msg::GetPgMapErrorCode::PgMapclientVersionHigher as i32);
                    head.poolid_pgmapversion.insert(id, 0);
                }
            }
        }
        for p in s.pools() {
            if !r.pool_versions.contains_key(&(p.id.0 as i32)) {
                send_full(&mut head, p);
            }
        }
        // The head, then per pool sent in full its `pgs` (field 3) map entry {1: pool id,
        // 2: PGInfos}: the entry's header written after the head, the PGInfos shared.
        let mut small = BytesMut::with_capacity(head.encoded_len() + 24 * full.len());
        head.encode(&mut small).expect("BytesMut grows");
        let mut out = Payload::default();
        for (id, infos) in full {
            let key_len = 1 + encoded_len_varint(id as i64 as u64);
            let value_len = 1 + encoded_len_varint(infos.len() as u64) + infos.len();
            encode_key(3, WireType::LengthDelimited, &mut small);
            encode_varint((key_len + value_len) as u64, &mut small);
            encode_key(1, WireType::Varint, &mut small);
            encode_varint(id as i64 as u64, &mut small);
            encode_key(2, WireType::LengthDelimited, &mut small);
            encode_varint(infos.len() as u64, &mut small);
            out.push(small.split().freeze());
            out.push(infos);
        }
        out.push(small.freeze());
        out
    }
}

/// The payload of a `msg.Response` answering GetClusterMap: `{gom_response, gpm_response}`
/// around their encodings, which are not copied.
pub fn cluster_map_response(gom: Bytes, gpm: Payload) -> Payload {
    let inner_len = field_len(gom.len()) + field_len(gpm.len());
    let mut small = BytesMut::with_capacity(24);
    encode_key(10, WireType::LengthDelimited, &mut small);
    encode_varint(inner_len as u64, &mut small);
    encode_key(1, WireType::LengthDelimited, &mut small);
    encode_varint(gom.len() as u64, &mut small);
    let mut out = Payload::default();
    out.push(small.split().freeze());
    out.push(gom);
    encode_key(2, WireType::LengthDelimited, &mut small);
    encode_varint(gpm.len() as u64, &mut small);
    out.push(small.freeze());
    out.append(gpm);
    out
}

/// The payload of a `msg.Response` answering GetOsdMap (4) or GetPgMap (8) around the
/// encoding of its body, which is not copied.
pub fn response_with(kind: u32, body: Payload) -> Payload {
    let mut head = BytesMut::with_capacity(16);
    encode_key(kind, WireType::LengthDelimited, &mut head);
    encode_varint(body.len() as u64, &mut head);
    let mut out = Payload::from(head.freeze());
    out.append(body);
    out
}

/// Bytes of a length-delimited field (tag below 16) holding `len` bytes.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// A PG state as the wire's clients know it: only the combinations the Go monitor produced
/// (§9.1: creating, active, undersize, down, remapped, creating+undersize, creating+down,
/// undersize+remapped, down+remapped). Ours keeps `active` beside `undersize` (an active PG
/// that lost a replica) and beside `remapped`; the Go monitor's setters cleared it there,
/// and its clients print anything else as `unknown`.
pub fn legacy_state(state: PgState) -> u32 {
    let mut s = state;
    if s.contains(PgState::UNDERSIZE) || s.contains(PgState::DOWN) {
        s = s.without(PgState::ACTIVE);
    }
    if s.contains(PgState::REMAPPED) {
        s = s.without(PgState::ACTIVE).without(PgState::CREATING);
    }
    s.0
}

/// An epoch as the wire's `int64` version.
pub fn version(e: Epoch) -> i64 {
    i64::try_from(e.0).unwrap_or(i64::MAX)
}

/// One OSD of the osdmap reply.
fn osd_info(o: &Arc<Osd>) -> msg::OsdDynamicInfo {
    msg::OsdDynamicInfo {
        osdid: o.id.0 as i32,
        address: o.address.map(|a| a.to_string()).unwrap_or_default(),
        sharded_ports: o
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    i as u32,
                    msg::ShardCore {
                        coreid: s.core_id,
                        port: u32::from(s.port),
                        raw_port: u32::from(s.raw_port),
                    },
                )
            })
            .collect(),
        isin: o.is_in(),
        isup: o.is_up(),
        ispendingcreate: matches!(o.liveness, Liveness::New),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::{BootArgs, PoolArgs, ShardArg, command};

    /// `n` booted OSDs on `hosts` hosts and one pool of `pgs` PGs, size 2.
    pub(crate) fn cluster_with_pool(n: u32, hosts: u32, pgs: u32) -> ClusterState {
        let mut s = ClusterState::default();
        for i in 1..=n {
            s.begin_group();
            let uuid = uuid::Uuid::from_u128(u128::from(i)).to_string();
            let id = s
                .apply(&command::ApplyId { uuid: uuid.clone() })
                .unwrap()
                .reply
                .id;
            s.apply(&command::Boot(BootArgs {
                id,
                uuid,
                size: 1 << 20,
                shards: vec![ShardArg {
                    shard: 0,
                    core_id: 0,
                    port: 7000,
                    raw_port: 0,
                }],
                address: "10.0.0.1".to_string(),
                host: format!("host{}", i % hosts),
                core_num: 1,
                config: String::new(),
                instance: 1,
                rack: String::new(),
                root: String::new(),
            }))
            .unwrap();
        }
        s.begin_group();
        s.apply(&command::CreatePool(PoolArgs {
            name: "rbd".to_string(),
            size: 2,
            pg_count: pgs,
            failure_domain: "host".to_string(),
            root: String::new(),
        }))
        .unwrap();
        s.begin_group();
        s
    }

    fn decode_cluster_map(payload: &[u8]) -> msg::GetClusterMapResponse {
        match crate::legacy::frame::decode_response(payload).expect("decodes") {
            msg::response::Union::GetClusterMapResponse(r) => r,
            other => panic!("not a cluster map: {other:?}"),
        }
    }

    #[test]
    fn a_cluster_map_reply_assembled_from_cached_bytes_decodes_as_the_message() {
        let s = cluster_with_pool(6, 3, 64);
        let cache = MapCache::default();
        let gom = cache.osdmap_reply(
            &s,
            &msg::GetOsdMapRequest {
                osdid: 1,
                currentversion: -1,
            },
        );
        let gpm = cache.pgmap_reply(&s, &msg::GetPgMapRequest::default());
        let payload = cluster_map_response(gom.clone(), gpm);
        // The cached osdmap is one of the pieces, shared with the cache, not a copy.
        assert!(
            payload
                .pieces()
                .iter()
                .any(|p| p.as_ptr() == gom.as_ptr() && p.len() == gom.len())
        );
        let r = decode_cluster_map(&payload.to_bytes());
        let om = r.gom_response.expect("osdmap");
        assert_eq!(om.osdmapversion, version(s.osdmap_epoch()));
        assert_eq!(om.osds.len(), 6);
        let pm = r.gpm_response.expect("pgmap");
        let pool = s.pools().next().unwrap();
        let id = pool.id.0 as i32;
        assert_eq!(pm.errorcode[&id], msg::GetPgMapErrorCode::PgMapGetOk as i32);
        assert_eq!(pm.pools[&id], pool.name);
        let pgs = &pm.pgs[&id].pi;
        assert_eq!(pgs.len(), 64);
        for pg in pgs {
            let ours = pool.pgs.get(crate::cluster::PgId(pg.pgid as u32)).unwrap();
            assert_eq!(
                pg.osdid,
                ours.members.iter().map(|m| m.0 as i32).collect::<Vec<_>>()
            );
            assert_eq!(pg.newcoreindex, NO_CORE);
        }
    }

    #[test]
    fn replies_with_several_pools_in_full_share_the_cached_pg_lists_and_decode_whole() {
        let mut s = cluster_with_pool(6, 3, 16);
        s.apply(&command::CreatePool(PoolArgs {
            name: "second".to_string(),
            size: 2,
            pg_count: 8,
            failure_domain: "host".to_string(),
            root: String::new(),
        }))
        .unwrap();
        s.begin_group();
        let cache = MapCache::default();
        let everything = msg::GetPgMapRequest::default();
        let gpm = cache.pgmap_reply(&s, &everything);
        // Each pool's PGInfos is the cached buffer itself, in every reply.
        for p in s.pools() {
            let cached = cache.pg_infos(&s, p);
            assert!(
                gpm.pieces()
                    .iter()
                    .any(|piece| piece.as_ptr() == cached.as_ptr() && piece.len() == cached.len()),
                "pool {}",
                p.name
            );
        }
        let gom = cache.osdmap_reply(
            &s,
            &msg::GetOsdMapRequest {
                osdid: 2,
                currentversion: -1,
            },
        );
        let r = decode_cluster_map(&cluster_map_response(gom.clone(), gpm.clone()).to_bytes());
        assert_eq!(r.gom_response.expect("osdmap").osds.len(), 6);
        let pm = r.gpm_response.expect("pgmap");
        let sizes: BTreeMap<String, usize> = s
            .pools()
            .map(|p| (p.name.clone(), pm.pgs[&(p.id.0 as i32)].pi.len()))
            .collect();
        assert_eq!(
            sizes,
            BTreeMap::from([("rbd".to_string(), 16), ("second".to_string(), 8)])
        );
        // GetPgMap and GetOsdMap alone carry the same bodies.
        match crate::legacy::frame::decode_response(&response_with(8, gpm).to_bytes()).unwrap() {
            msg::response::Union::GetPgmapResponse(alone) => assert_eq!(alone, pm),
            other => panic!("not a pgmap: {other:?}"),
        }
        match crate::legacy::frame::decode_response(&response_with(4, gom.into()).to_bytes())
            .unwrap()
        {
            msg::response::Union::GetOsdmapResponse(alone) => assert_eq!(alone.osds.len(), 6),
            other => panic!("not an osdmap: {other:?}"),
        }
    }

    #[test]
    fn pgmap_reply_keeps_new_pools_visible_and_never_signals_deletion_for_unknown_ids() {
        let s = cluster_with_pool(6, 3, 8);
        let cache = MapCache::default();
        let pool = s.pools().next().unwrap();
        let id = pool.id.0 as i32;
        let current = version(pool.epoch);
        let ask = |versions: &[(i32, i64)]| {
            msg::GetPgMapResponse::decode(
                cache
                    .pgmap_reply(
                        &s,
                        &msg::GetPgMapRequest {
                            pool_versions: versions.iter().copied().collect(),
                        },
                    )
                    .to_bytes()
                    .as_ref(),
            )
            .unwrap()
        };
        // The client knows another (never existing) pool only: ours is sent in full anyway,
        // and the unknown id is not reported as deleted.
        let r = ask(&[(999, 3)]);
        assert_eq!(r.errorcode[&id], msg::GetPgMapErrorCode::PgMapGetOk as i32);
        assert_eq!(r.pgs[&id].pi.len(), 8);
        assert_eq!(
            r.errorcode[&999],
            msg::GetPgMapErrorCode::PgMapclientVersionHigher as i32
        );
        // Same version: no PGs, name and version.
        let r = ask(&[(id, current)]);
        assert_eq!(
            r.errorcode[&id],
            msg::GetPgMapErrorCode::PgMapSameVersion as i32
        );
        assert!(r.pgs.is_empty());
        assert_eq!(r.pools[&id], pool.name);
        // Ahead of us.
        let r = ask(&[(id, current + 5)]);
        assert_eq!(
            r.errorcode[&id],
            msg::GetPgMapErrorCode::PgMapclientVersionHigher as i32
        );
        // Behind (or 0 as an OSD restarting sends): full.
        let r = ask(&[(id, 0)]);
        assert_eq!(r.pgs[&id].pi.len(), 8);
    }

    #[test]
    fn states_shown_are_the_go_monitors_combinations() {
        let c = PgState::CREATING;
        let a = PgState::ACTIVE;
        let u = PgState::UNDERSIZE;
        let d = PgState::DOWN;
        let r = PgState::REMAPPED;
        for (ours, wire) in [
            (a, a),
            (a.with(u), u),
            (d, d),
            (c.with(u), c.with(u)),
            (a.with(r), r),
            (a.with(u).with(r), u.with(r)),
            (c.with(r), r),
            (c.with(d).with(r), d.with(r)),
        ] {
            assert_eq!(legacy_state(ours), wire.0, "{}", ours.name());
        }
    }

    #[test]
    fn osdmap_reply_follows_the_client_version() {
        let s = cluster_with_pool(4, 2, 8);
        let cache = MapCache::default();
        let current = version(s.osdmap_epoch());
        let ask = |v: i64| {
            msg::GetOsdMapResponse::decode(
                cache
                    .osdmap_reply(
                        &s,
                        &msg::GetOsdMapRequest {
                            osdid: -1,
                            currentversion: v,
                        },
                    )
                    .as_ref(),
            )
            .unwrap()
        };
        assert_eq!(ask(-1).osds.len(), 4);
        let same = ask(current);
        assert_eq!(
            (same.errorcode, same.osdmapversion, same.osds.len()),
            (0, current, 0)
        );
        let ahead = ask(current + 1);
        assert_eq!(
            (ahead.errorcode, ahead.osdmapversion),
            (msg::OsdMapErrorCode::ClientVersionHigher as i32, -1)
        );
        let empty = ClusterState::default();
        let none = msg::GetOsdMapResponse::decode(
            cache
                .osdmap_reply(&empty, &msg::GetOsdMapRequest::default())
                .as_ref(),
        )
        .unwrap();
        assert_eq!(
            (none.errorcode, none.osdmapversion),
            (msg::OsdMapErrorCode::NoOsdsExist as i32, -1)
        );
    }
}
