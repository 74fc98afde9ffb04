//! The tests' legacy clients (tests/common/legacy) checked on their own, with no monitor: the
//! hand-written protobuf encoder against byte vectors derived by hand from the encoding rules
//! and LEGACY-PROTOCOL.md, decoder round trips and every decoding error, the §6 framing and the
//! client's FIFO over a local socket, and the §11 raw header, bodies and FNV-1a.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::legacy::framed::{LegacyClient, LegacyError, MAX_RESPONSE_BYTES, frame};
use common::legacy::messages::{
    ApplyIdReply, BootRequest, ClusterMapReply, DataStatistics, GetOsdMapRequest, GetPgMapRequest,
    ImageInfo, ImageReply, LeaderBeElectedRequest, OsdInfo, OsdMapReply, PgInfo, PgMapReply,
    PgMemberChangeFinishRequest, PgOsdInfo, PoolInfo, Request, Response, ResponseError, ShardCore,
    apply_id_code, boot_result, get_image_code, kind, remove_image_code,
};
use common::legacy::protobuf::{Encoder, Reader, WireError};
use common::legacy::raw::{
    self, RawClient, RawClusterMap, RawError, RawHeader, RawImageInfo, RawOsd, RawPg, RawShard,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// `-1` as an int32/int64 varint: its 64-bit two's complement, ten bytes.
const MINUS_ONE: [u8; 10] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];

fn varint(value: u64) -> Vec<u8> {
    let mut encoder = Encoder::new();
    encoder.put_varint(value);
    encoder.finish()
}

// ---- protobuf encoder: byte vectors derived by hand ----

#[test]
fn varints_are_seven_bits_per_byte_low_group_first() {
    assert_eq!(varint(0), [0x00]);
    assert_eq!(varint(1), [0x01]);
    assert_eq!(varint(127), [0x7f]);
    assert_eq!(varint(128), [0x80, 0x01]);
    // 300 = 0b10_0101100: low group 0x2c with the continuation bit, then 2.
    assert_eq!(varint(300), [0xac, 0x02]);
    // 2^64 - 1: nine full groups and the last bit.
    let mut max = vec![0xff; 9];
    max.push(0x01);
    assert_eq!(varint(u64::MAX), max);
}

#[test]
fn negative_int32_is_a_ten_byte_varint_and_defaults_are_left_out() {
    let mut encoder = Encoder::new();
    encoder.int32(1, -1);
    let mut expected = vec![0x08];
    expected.extend_from_slice(&MINUS_ONE);
    assert_eq!(encoder.finish(), expected);

    // −156 (Boot's OSD_ERR_NOT_APPLY) = 0xffff_ffff_ffff_ff64.
    let mut encoder = Encoder::new();
    encoder.int32(1, boot_result::NOT_APPLY);
    assert_eq!(
        encoder.finish(),
        [
            0x08, 0xe4, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ]
    );

    let mut encoder = Encoder::new();
    encoder
        .int32(1, 0)
        .int64(2, 0)
        .uint32(3, 0)
        .boolean(4, false)
        .string(5, "")
        .packed_int32(6, &[]);
    assert!(encoder.finish().is_empty(), "proto3 leaves defaults out");
}

#[test]
fn apply_id_envelope_byte_by_byte() {
    let request = Request::ApplyId {
        uuid: "ab".to_string(),
    };
    // Inner ApplyIDRequest: field 1 (uuid) LEN → key 0x0a, length 2, "ab".
    assert_eq!(request.encode_inner(), [0x0a, 0x02, b'a', b'b']);
    // Envelope: oneof member 6 LEN → key (6 << 3) | 2 = 0x32, length 4, the inner message.
    assert_eq!(request.encode(), [0x32, 0x04, 0x0a, 0x02, b'a', b'b']);
    // Framed: 8-byte little-endian length 6, then the envelope.
    assert_eq!(
        frame(&request.encode()),
        [6, 0, 0, 0, 0, 0, 0, 0, 0x32, 0x04, 0x0a, 0x02, b'a', b'b']
    );
}

#[test]
fn empty_requests_still_select_their_oneof_member() {
    // GetClusterStatus is member 21: key (21 << 3) | 2 = 170 = varint aa 01, then length 0.
    assert_eq!(Request::GetClusterStatus.encode(), [0xaa, 0x01, 0x00]);
    // ListPools is member 5: key 0x2a, length 0.
    assert_eq!(Request::ListPools.encode(), [0x2a, 0x00]);
}

#[test]
fn osd_out_and_in_envelopes() {
    // Member 17: key 138 = 8a 01; inner osdid 3 = 08 03.
    assert_eq!(
        Request::OsdOut { osdid: 3 }.encode(),
        [0x8a, 0x01, 0x02, 0x08, 0x03]
    );
    // Member 18: key 146 = 92 01.
    assert_eq!(
        Request::OsdIn { osdid: 3 }.encode(),
        [0x92, 0x01, 0x02, 0x08, 0x03]
    );
}

#[test]
fn create_pool_as_the_cli_sends_it() {
    let request = Request::CreatePool {
        name: "p".to_string(),
        pgsize: 3,
        pgcount: 8,
        failuredomain: "host".to_string(),
        root: "defaultroot".to_string(),
    };
    let mut expected = vec![0x0a, 0x01, b'p', 0x10, 0x03, 0x18, 0x08, 0x22, 0x04];
    expected.extend_from_slice(b"host");
    expected.extend_from_slice(&[0x2a, 0x0b]);
    expected.extend_from_slice(b"defaultroot");
    assert_eq!(request.encode_inner(), expected);
    assert_eq!(expected.len(), 26);
    // Member 7: key 0x3a, length 26.
    let mut envelope = vec![0x3a, 26];
    envelope.extend_from_slice(&expected);
    assert_eq!(request.encode(), envelope);
}

#[test]
fn cpp_poll_cluster_map_byte_by_byte() {
    let request = Request::cpp_poll(2, BTreeMap::from([(1, 5)]));
    // gom_request: osdid 2 (08 02), currentversion −1 (10 + ten bytes): 13 bytes.
    let mut gom = vec![0x08, 0x02, 0x10];
    gom.extend_from_slice(&MINUS_ONE);
    // gpm_request: one pool_versions entry {1: 1, 2: 5} = 08 01 10 05, as field 1.
    let gpm = [0x0a, 0x04, 0x08, 0x01, 0x10, 0x05];
    let mut inner = vec![0x0a, gom.len() as u8];
    inner.extend_from_slice(&gom);
    inner.extend_from_slice(&[0x12, gpm.len() as u8]);
    inner.extend_from_slice(&gpm);
    assert_eq!(inner.len(), 23);
    assert_eq!(request.encode_inner(), inner);
    // Member 10: key 0x52.
    let mut envelope = vec![0x52, 23];
    envelope.extend_from_slice(&inner);
    assert_eq!(request.encode(), envelope);
}

#[test]
fn a_first_poll_sends_an_empty_pgmap_request_not_none() {
    let request = Request::cpp_poll(-1, BTreeMap::new());
    let mut gom = vec![0x08];
    gom.extend_from_slice(&MINUS_ONE);
    gom.push(0x10);
    gom.extend_from_slice(&MINUS_ONE);
    let mut inner = vec![0x0a, gom.len() as u8];
    inner.extend_from_slice(&gom);
    inner.extend_from_slice(&[0x12, 0x00]);
    assert_eq!(request.encode_inner(), inner);
}

#[test]
fn map_halves_alone_and_absent() {
    let osdmap = GetOsdMapRequest {
        osdid: 1,
        currentversion: 5,
    };
    // Member 4: key 0x22; inner osdid 1, currentversion 5.
    assert_eq!(
        Request::GetOsdMap(osdmap).encode(),
        [0x22, 0x04, 0x08, 0x01, 0x10, 0x05]
    );
    // Member 8: key 0x42, an empty map (give me everything).
    assert_eq!(
        Request::GetPgMap(GetPgMapRequest::default()).encode(),
        [0x42, 0x00]
    );
    // A GetClusterMap without its pgmap half leaves field 2 out entirely.
    let request = Request::GetClusterMap {
        osdmap: Some(osdmap),
        pgmap: None,
    };
    assert_eq!(request.encode_inner(), [0x0a, 0x04, 0x08, 0x01, 0x10, 0x05]);
}

#[test]
fn leader_be_elected_packs_its_lists() {
    let request = Request::LeaderBeElected(LeaderBeElectedRequest {
        leader_id: 1,
        pool_id: 1,
        pg_id: 0,
        osd_list: vec![1, 2, 3],
        new_osd_list: vec![],
    });
    // pgId 0 and the empty newOsdList are left out; osdList packed under key 0x22.
    let inner = [0x08, 0x01, 0x10, 0x01, 0x22, 0x03, 0x01, 0x02, 0x03];
    assert_eq!(request.encode_inner(), inner);
    // Member 15: key 0x7a.
    let mut envelope = vec![0x7a, 9];
    envelope.extend_from_slice(&inner);
    assert_eq!(request.encode(), envelope);

    let finish = Request::PgMemberChangeFinish(PgMemberChangeFinishRequest {
        result: 0,
        pool_id: 2,
        pg_id: 7,
        osd_list: vec![4, 5, 6],
    });
    // Member 16: key 0x82 0x01.
    assert_eq!(
        finish.encode(),
        [
            0x82, 0x01, 0x09, 0x10, 0x02, 0x18, 0x07, 0x22, 0x03, 0x04, 0x05, 0x06
        ]
    );
}

#[test]
fn boot_sends_shards_as_map_entries() {
    let mut boot = BootRequest::like_cpp_osd(1, "u", "10.0.0.1", "h", 1, 7000, 0);
    boot.size = 0;
    // osd_id 1, uuid "u", shard 0 → {port 7000} (key 0 left out), address, host, core_num 1.
    // 7000 = 0x1b58: varint d8 36. ShardCore = 10 d8 36; entry = 12 03 10 d8 36.
    let mut expected = vec![0x08, 0x01, 0x12, 0x01, b'u'];
    expected.extend_from_slice(&[0x22, 0x05, 0x12, 0x03, 0x10, 0xd8, 0x36]);
    expected.extend_from_slice(&[0x2a, 0x08]);
    expected.extend_from_slice(b"10.0.0.1");
    expected.extend_from_slice(&[0x32, 0x01, b'h', 0x38, 0x01]);
    assert_eq!(Request::Boot(boot).encode_inner(), expected);
}

#[test]
fn boot_like_cpp_osd_numbers_shards_and_raw_ports() {
    let boot = BootRequest::like_cpp_osd(4, "uuid", "10.0.0.4", "host-b", 3, 7000, 9000);
    assert_eq!(boot.size, 1 << 20);
    assert_eq!(boot.core_num, 3);
    assert_eq!(
        boot.sharded_ports[&2],
        ShardCore {
            coreid: 2,
            port: 7002,
            raw_port: 9002
        }
    );
    let no_raw = BootRequest::like_cpp_osd(4, "uuid", "10.0.0.4", "host-b", 2, 7000, 0);
    assert!(no_raw.sharded_ports.values().all(|core| core.raw_port == 0));
}

// ---- decoder: hand-made responses, round trips, errors ----

fn envelope(member: u32, inner: &[u8]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    encoder.bytes_field(member, inner);
    encoder.finish()
}

#[test]
fn decodes_an_apply_id_reply_from_hand_made_bytes() {
    let bytes = [0x32, 0x06, 0x0a, 0x02, b'a', b'b', 0x10, 0x07];
    assert_eq!(
        Response::decode(&bytes),
        Ok(Response::ApplyId(ApplyIdReply {
            uuid: "ab".to_string(),
            id: 7,
            errorcode: apply_id_code::OK,
        }))
    );
    let mut refused = vec![0x10];
    refused.extend_from_slice(&MINUS_ONE);
    refused.extend_from_slice(&[0x18, 0x01]);
    assert_eq!(
        Response::decode(&envelope(kind::APPLY_ID, &refused)),
        Ok(Response::ApplyId(ApplyIdReply {
            uuid: String::new(),
            id: -1,
            errorcode: apply_id_code::UUID_ALREADY_EXISTS,
        }))
    );
}

#[test]
fn decodes_boot_results_and_ok_replies() {
    let inner = [
        0x08, 0xe4, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert_eq!(
        Response::decode(&envelope(kind::BOOT, &inner)),
        Ok(Response::Boot {
            result: boot_result::NOT_APPLY
        })
    );
    // An empty Boot reply is result 0 (proto3 default).
    assert_eq!(
        Response::decode(&envelope(kind::BOOT, &[])),
        Ok(Response::Boot { result: 0 })
    );
    for member in [
        kind::LEADER_BE_ELECTED,
        kind::PG_MEMBER_CHANGE_FINISH,
        kind::OSD_OUT,
        kind::OSD_IN,
    ] {
        assert_eq!(
            Response::decode(&envelope(member, &[0x08, 0x01])),
            Ok(Response::Ok {
                kind: member,
                ok: true
            })
        );
        assert_eq!(
            Response::decode(&envelope(member, &[])),
            Ok(Response::Ok {
                kind: member,
                ok: false
            })
        );
    }
}

/// A GetClusterMapResponse built with the encoder the way a server would write it.
fn encoded_cluster_map(osds: &[OsdInfo], pools: &BTreeMap<i32, Vec<PgInfo>>) -> Vec<u8> {
    let mut osdmap = Encoder::new();
    osdmap.int32(1, 0).int64(2, 9);
    for osd in osds {
        let mut info = Encoder::new();
        info.int32(1, osd.osdid).string(2, &osd.address);
        for (&shard, core) in &osd.sharded_ports {
            info.map_entry(
                3,
                |key| {
                    key.uint32(1, shard);
                },
                |value| {
                    let mut message = Encoder::new();
                    message
                        .uint32(1, core.coreid)
                        .uint32(2, core.port)
                        .uint32(3, core.raw_port);
                    value.message(2, message);
                },
            );
        }
        info.boolean(4, osd.isin).boolean(5, osd.isup);
        osdmap.message(3, info);
    }
    let mut pgmap = Encoder::new();
    for (&pool, pgs) in pools {
        pgmap.map_entry(
            1,
            |key| {
                key.int32(1, pool);
            },
            |value| {
                value.int32(2, 0);
            },
        );
        pgmap.map_entry(
            2,
            |key| {
                key.int32(1, pool);
            },
            |value| {
                value.int64(2, 4);
            },
        );
        pgmap.map_entry(
            3,
            |key| {
                key.int32(1, pool);
            },
            |value| {
                let mut infos = Encoder::new();
                for pg in pgs {
                    let mut message = Encoder::new();
                    message
                        .int32(1, pg.pgid)
                        .int64(2, pg.version)
                        .int32(3, pg.state)
                        .uint32(4, pg.coreindex)
                        .packed_int32(5, &pg.osdid)
                        .uint32(6, pg.newcoreindex)
                        .packed_int32(7, &pg.newosdid);
                    infos.message(1, message);
                }
                value.message(2, infos);
            },
        );
        pgmap.map_entry(
            4,
            |key| {
                key.int32(1, pool);
            },
            |value| {
                value.string(2, &format!("pool{pool}"));
            },
        );
    }
    let mut reply = Encoder::new();
    reply.message(1, osdmap).message(2, pgmap);
    envelope(kind::GET_CLUSTER_MAP, &reply.finish())
}

#[test]
fn cluster_map_round_trip() {
    let osds = vec![
        OsdInfo {
            osdid: 1,
            address: "10.0.0.1".to_string(),
            sharded_ports: BTreeMap::from([
                (
                    0,
                    ShardCore {
                        coreid: 0,
                        port: 7000,
                        raw_port: 9000,
                    },
                ),
                (
                    1,
                    ShardCore {
                        coreid: 1,
                        port: 7001,
                        raw_port: 0,
                    },
                ),
            ]),
            isin: true,
            isup: true,
            ispendingcreate: false,
        },
        OsdInfo {
            osdid: 2,
            address: "10.0.0.2".to_string(),
            isin: true,
            ..OsdInfo::default()
        },
    ];
    let pgs = vec![
        PgInfo {
            pgid: 0,
            version: 3,
            state: 2,
            coreindex: 1,
            osdid: vec![1, 2, 3],
            newcoreindex: u32::MAX,
            newosdid: vec![],
        },
        PgInfo {
            pgid: 1,
            version: 5,
            state: 16,
            coreindex: 0,
            osdid: vec![2, 3, 1],
            newcoreindex: 1,
            newosdid: vec![2, 3, 4],
        },
    ];
    let pools = BTreeMap::from([(1, pgs.clone()), (2, vec![])]);
    let decoded = Response::decode(&encoded_cluster_map(&osds, &pools));
    let expected = ClusterMapReply {
        osdmap: Some(OsdMapReply {
            errorcode: 0,
            osdmapversion: 9,
            osds,
        }),
        pgmap: Some(PgMapReply {
            errorcode: BTreeMap::from([(1, 0), (2, 0)]),
            poolid_pgmapversion: BTreeMap::from([(1, 4), (2, 4)]),
            pgs: pools,
            pools: BTreeMap::from([(1, "pool1".to_string()), (2, "pool2".to_string())]),
        }),
    };
    assert_eq!(decoded, Ok(Response::GetClusterMap(expected)));
}

#[test]
fn a_cluster_map_reply_without_a_pgmap_half_says_so() {
    // The Go monitor leaves gpm_response out when there are no pools.
    let mut osdmap = vec![0x08, 0x03, 0x10];
    osdmap.extend_from_slice(&MINUS_ONE);
    let mut inner = vec![0x0a, osdmap.len() as u8];
    inner.extend_from_slice(&osdmap);
    assert_eq!(
        Response::decode(&envelope(kind::GET_CLUSTER_MAP, &inner)),
        Ok(Response::GetClusterMap(ClusterMapReply {
            osdmap: Some(OsdMapReply {
                errorcode: 3,
                osdmapversion: -1,
                osds: vec![],
            }),
            pgmap: None,
        }))
    );
}

#[test]
fn repeated_int32_is_read_packed_or_not() {
    // PGInfo with osdid unpacked (28 01 28 02) and then as one packed run (2a 01 03): a
    // parser must take both forms and concatenate them.
    let pg = [0x08, 0x04, 0x28, 0x01, 0x28, 0x02, 0x2a, 0x01, 0x03];
    let infos = [&[0x0a, pg.len() as u8][..], &pg].concat();
    let entry = [&[0x08, 0x01, 0x12, infos.len() as u8][..], &infos].concat();
    let pgmap = [&[0x1a, entry.len() as u8][..], &entry].concat();
    let reply = [&[0x12, pgmap.len() as u8][..], &pgmap].concat();
    let Ok(Response::GetClusterMap(map)) =
        Response::decode(&envelope(kind::GET_CLUSTER_MAP, &reply))
    else {
        panic!("not a cluster map");
    };
    let pgs = &map.pgmap.expect("pgmap half").pgs[&1];
    assert_eq!(pgs[0].pgid, 4);
    assert_eq!(pgs[0].osdid, [1, 2, 3]);
    assert!(pgs[0].newosdid.is_empty());
}

#[test]
fn cluster_status_counts_and_flags() {
    let mut flags = Encoder::new();
    flags.boolean(1, true).boolean(2, false);
    let mut counts = Encoder::new();
    counts.int32(2, 8).int32(6, 1);
    let mut status = Encoder::new();
    status
        .message(1, flags)
        .string(2, "mon1")
        .string(2, "mon2")
        .int32(3, 3)
        .int32(4, 2)
        .int32(5, 3)
        .int32(6, 1)
        .int32(7, 9)
        .uint64(10, 1234)
        .message(9, counts);
    let Ok(Response::GetClusterStatus(reply)) =
        Response::decode(&envelope(kind::GET_CLUSTER_STATUS, &status.finish()))
    else {
        panic!("not a cluster status");
    };
    assert!(reply.no_reblance && !reply.no_out);
    assert_eq!(reply.mon_names, ["mon1", "mon2"]);
    assert_eq!(
        (
            reply.osd_num,
            reply.up_osd_num,
            reply.in_osd_num,
            reply.pool_num,
            reply.pg_num
        ),
        (3, 2, 3, 1, 9)
    );
    assert_eq!(reply.pg_state.active, 8);
    assert_eq!(reply.pg_state.creating_undersize, 1);
}

#[test]
fn list_pools_reply_field_by_field() {
    // poolinfo {1: 1, 2: "rbd", 3: 3, 4: 32, 5: "host", 6: "default"}:
    // 08 01 | 12 03 "rbd" | 18 03 | 20 20 | 2a 04 "host" | 32 07 "default" = 26 bytes.
    let mut first = vec![0x08, 0x01, 0x12, 0x03];
    first.extend_from_slice(b"rbd");
    first.extend_from_slice(&[0x18, 0x03, 0x20, 0x20, 0x2a, 0x04]);
    first.extend_from_slice(b"host");
    first.extend_from_slice(&[0x32, 0x07]);
    first.extend_from_slice(b"default");
    assert_eq!(first.len(), 26);
    // A second pool with every default left out but its id: 08 02.
    let mut inner = vec![0x0a, 26];
    inner.extend_from_slice(&first);
    inner.extend_from_slice(&[0x0a, 0x02, 0x08, 0x02]);
    // Member 5: key 0x2a.
    let mut bytes = vec![0x2a, inner.len() as u8];
    bytes.extend_from_slice(&inner);
    assert_eq!(
        Response::decode(&bytes),
        Ok(Response::ListPools(vec![
            PoolInfo {
                poolid: 1,
                name: "rbd".to_string(),
                pgsize: 3,
                pgcount: 32,
                failuredomain: "host".to_string(),
                root: "default".to_string(),
            },
            PoolInfo {
                poolid: 2,
                ..PoolInfo::default()
            },
        ]))
    );
    // No pools: the member with nothing in it.
    assert_eq!(
        Response::decode(&[0x2a, 0x00]),
        Ok(Response::ListPools(Vec::new()))
    );
}

#[test]
fn heartbeat_and_image_requests_byte_by_byte() {
    // Member 3: key (3 << 3) | 2 = 0x1a; inner id 5 = 08 05.
    assert_eq!(
        Request::Heartbeat { id: 5 }.encode(),
        [0x1a, 0x02, 0x08, 0x05]
    );
    // CreateImage: poolname "p" (0a 01 70), imagename "i" (12 01 69), size 2^30 (18 + five
    // bytes 80 80 80 80 04), object_size 2^22 (20 + four bytes 80 80 80 02) = 17 bytes.
    let create = Request::CreateImage(ImageInfo {
        poolname: "p".to_string(),
        imagename: "i".to_string(),
        size: 1 << 30,
        object_size: 4 << 20,
    });
    let inner = [
        0x0a, 0x01, b'p', 0x12, 0x01, b'i', 0x18, 0x80, 0x80, 0x80, 0x80, 0x04, 0x20, 0x80, 0x80,
        0x80, 0x02,
    ];
    assert_eq!(create.encode_inner(), inner);
    // Member 11: key 0x5a.
    let mut envelope = vec![0x5a, 17];
    envelope.extend_from_slice(&inner);
    assert_eq!(create.encode(), envelope);
    // RemoveImage (member 12, key 0x62) and GetImageInfo (member 14, key 0x72): two strings.
    let names = [0x0a, 0x01, b'p', 0x12, 0x01, b'i'];
    let remove = Request::RemoveImage {
        poolname: "p".to_string(),
        imagename: "i".to_string(),
    };
    let mut expected = vec![0x62, 0x06];
    expected.extend_from_slice(&names);
    assert_eq!(remove.encode(), expected);
    let info = Request::GetImageInfo {
        poolname: "p".to_string(),
        imagename: "i".to_string(),
    };
    expected[0] = 0x72;
    assert_eq!(info.encode(), expected);
    // ResizeImage (member 13, key 0x6a): the two strings, then size 300 = 18 ac 02.
    let resize = Request::ResizeImage {
        poolname: "p".to_string(),
        imagename: "i".to_string(),
        size: 300,
    };
    let mut expected = vec![0x6a, 0x09];
    expected.extend_from_slice(&names);
    expected.extend_from_slice(&[0x18, 0xac, 0x02]);
    assert_eq!(resize.encode(), expected);
    // A negative size is a ten-byte varint, as every int64.
    let resize = Request::ResizeImage {
        poolname: String::new(),
        imagename: String::new(),
        size: -1,
    };
    let mut expected = vec![0x18];
    expected.extend_from_slice(&MINUS_ONE);
    assert_eq!(resize.encode_inner(), expected);
}

#[test]
fn data_statistics_is_a_map_of_pg_names_to_counters() {
    let counters = DataStatistics {
        read_ios: 1,
        read_bytes: 4096,
        write_ios: 2,
        write_bytes: 300,
        objects: 5,
        recovery_bytes: 0,
        recovery_obs: 7,
    };
    let request = Request::DataStatistics(BTreeMap::from([("1.0".to_string(), counters)]));
    // DataStatistics: 08 01 | 10 80 20 (4096) | 18 02 | 20 ac 02 (300) | 28 05 | 38 07
    // (recovery_bytes 0 left out) = 14 bytes.
    let value = [
        0x08, 0x01, 0x10, 0x80, 0x20, 0x18, 0x02, 0x20, 0xac, 0x02, 0x28, 0x05, 0x38, 0x07,
    ];
    // The map entry: key "1.0" (0a 03 31 2e 30), value as field 2 (12 0e ...) = 21 bytes.
    let mut entry = vec![0x0a, 0x03, b'1', b'.', b'0', 0x12, 14];
    entry.extend_from_slice(&value);
    assert_eq!(entry.len(), 21);
    let mut inner = vec![0x0a, 21];
    inner.extend_from_slice(&entry);
    assert_eq!(request.encode_inner(), inner);
    // Member 22: key (22 << 3) | 2 = 178 = b2 01.
    let mut envelope = vec![0xb2, 0x01, 23];
    envelope.extend_from_slice(&inner);
    assert_eq!(request.encode(), envelope);
    // An empty report still selects its member.
    assert_eq!(
        Request::DataStatistics(BTreeMap::new()).encode(),
        [0xb2, 0x01, 0x00]
    );
}

#[test]
fn get_pg_osd_info_packs_its_pool_ids() {
    // Member 24: key (24 << 3) | 2 = 194 = c2 01; pool ids packed under key 0x0a.
    assert_eq!(
        Request::GetPgOsdInfo {
            pool_ids: vec![1, 2]
        }
        .encode(),
        [0xc2, 0x01, 0x04, 0x0a, 0x02, 0x01, 0x02]
    );
    // No ids (every pool): an empty member.
    assert_eq!(
        Request::GetPgOsdInfo { pool_ids: vec![] }.encode(),
        [0xc2, 0x01, 0x00]
    );
    // OsdConfig is member 23: key (23 << 3) | 2 = 186 = ba 01.
    assert_eq!(
        Request::OsdConfig { osdid: 2 }.encode(),
        [0xba, 0x01, 0x02, 0x08, 0x02]
    );
}

#[test]
fn image_replies_carry_a_code_and_the_info() {
    // ImageInfo {poolname "p", imagename "i", size 4096 (18 80 20), object_size 4096
    // (20 80 20)} = 12 bytes.
    let info = [
        0x0a, 0x01, b'p', 0x12, 0x01, b'i', 0x18, 0x80, 0x20, 0x20, 0x80, 0x20,
    ];
    // errorcode 1 (08 01), ImageInfo as field 2 (12 0c ...).
    let mut inner = vec![0x08, 0x01, 0x12, 12];
    inner.extend_from_slice(&info);
    let expected_info = ImageInfo {
        poolname: "p".to_string(),
        imagename: "i".to_string(),
        size: 4096,
        object_size: 4096,
    };
    for member in [
        kind::CREATE_IMAGE,
        kind::REMOVE_IMAGE,
        kind::RESIZE_IMAGE,
        kind::GET_IMAGE_INFO,
    ] {
        assert_eq!(
            Response::decode(&envelope(member, &inner)),
            Ok(Response::Image {
                kind: member,
                reply: ImageReply {
                    errorcode: 1,
                    info: Some(expected_info.clone()),
                },
            })
        );
    }
    // Code 0 and an empty info: 12 00 only; no info field at all: nothing.
    assert_eq!(
        Response::decode(&envelope(kind::GET_IMAGE_INFO, &[0x12, 0x00])),
        Ok(Response::Image {
            kind: kind::GET_IMAGE_INFO,
            reply: ImageReply {
                errorcode: get_image_code::OK,
                info: Some(ImageInfo::default()),
            },
        })
    );
    assert_eq!(
        Response::decode(&envelope(kind::REMOVE_IMAGE, &[0x08, 0x01])),
        Ok(Response::Image {
            kind: kind::REMOVE_IMAGE,
            reply: ImageReply {
                errorcode: remove_image_code::IMAGE_NOT_FOUND,
                info: None,
            },
        })
    );
    // A negative size reads back as such.
    let mut negative = vec![0x12, 11, 0x18];
    negative.extend_from_slice(&MINUS_ONE);
    let Ok(Response::Image { reply, .. }) =
        Response::decode(&envelope(kind::RESIZE_IMAGE, &negative))
    else {
        panic!("not an image reply");
    };
    assert_eq!(reply.info.map(|i| i.size), Some(-1));
}

#[test]
fn pg_osd_info_reply_is_a_map_of_pools() {
    // PgOsdInfo {pgid 3 (08 03), coreindex 1 (10 01), osdid [1, 2] packed (1a 02 01 02)} =
    // 8 bytes; PgOsdInfos {pgs: it} = 0a 08 ... = 10 bytes.
    let pg = [0x08, 0x03, 0x10, 0x01, 0x1a, 0x02, 0x01, 0x02];
    let mut infos = vec![0x0a, 0x08];
    infos.extend_from_slice(&pg);
    // A second PG with pgid 0 and coreindex 0 left out, its members unpacked (18 04 18 05).
    infos.extend_from_slice(&[0x0a, 0x04, 0x18, 0x04, 0x18, 0x05]);
    assert_eq!(infos.len(), 16);
    // Map entry {1: pool 2 (08 02), 2: PgOsdInfos (12 10 ...)} = 20 bytes, as field 1.
    let mut entry = vec![0x08, 0x02, 0x12, 16];
    entry.extend_from_slice(&infos);
    let mut inner = vec![0x0a, 20];
    inner.extend_from_slice(&entry);
    // A pool with no PGs: entry {1: 7} only.
    inner.extend_from_slice(&[0x0a, 0x02, 0x08, 0x07]);
    assert_eq!(
        Response::decode(&envelope(kind::PG_OSD_INFO, &inner)),
        Ok(Response::PgOsdInfo(BTreeMap::from([
            (
                2,
                vec![
                    PgOsdInfo {
                        pgid: 3,
                        coreindex: 1,
                        osdid: vec![1, 2],
                    },
                    PgOsdInfo {
                        pgid: 0,
                        coreindex: 0,
                        osdid: vec![4, 5],
                    },
                ]
            ),
            (7, Vec::new()),
        ])))
    );
    // Member 24's key is two bytes: c2 01.
    assert_eq!(
        Response::decode(&[0xc2, 0x01, 0x00]),
        Ok(Response::PgOsdInfo(BTreeMap::new()))
    );
}

#[test]
fn bad_envelopes_are_typed_errors() {
    assert_eq!(Response::decode(&[]), Err(ResponseError::Empty));
    assert_eq!(
        Response::decode(&envelope(25, &[])),
        Err(ResponseError::UnknownKind { kind: 25 })
    );
    // Member 6 as a varint instead of a message.
    assert_eq!(
        Response::decode(&[0x30, 0x01]),
        Err(ResponseError::Wire(WireError::WrongWireType {
            field: 6,
            expected: 2,
            got: 0
        }))
    );
}

#[test]
fn bad_protobuf_is_a_typed_error_never_a_panic() {
    // A key with nothing after it.
    assert_eq!(
        Response::decode(&[0x32]),
        Err(ResponseError::Wire(WireError::Truncated { offset: 1 }))
    );
    // Length 5 with 1 byte left.
    assert_eq!(
        Response::decode(&[0x32, 0x05, 0x00]),
        Err(ResponseError::Wire(WireError::LengthOverrun {
            field: 6,
            offset: 1,
            len: 5,
            left: 1
        }))
    );
    // An 11-byte varint, and a 10th byte with more than bit 63.
    let mut long = vec![0x08];
    long.extend_from_slice(&[0xff; 10]);
    long.push(0x01);
    assert_eq!(
        Reader::new(&long[1..]).varint(),
        Err(WireError::VarintTooLong { offset: 0 })
    );
    assert_eq!(
        Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint(),
        Err(WireError::VarintTooLong { offset: 0 })
    );
    // Field number 0, and a group (wire type 3).
    assert_eq!(
        Response::decode(&[0x02, 0x00]),
        Err(ResponseError::Wire(WireError::BadFieldNumber {
            field: 0,
            offset: 0
        }))
    );
    assert_eq!(
        Response::decode(&[0x33]),
        Err(ResponseError::Wire(WireError::BadWireType {
            wire_type: 3,
            offset: 0
        }))
    );
    // A fixed64 cut short.
    assert_eq!(
        Reader::new(&[0x09, 0x01, 0x02]).field(),
        Err(WireError::Truncated { offset: 1 })
    );
}

#[test]
fn bad_utf8_shows_a_short_hex_prefix_only() {
    let name = vec![0xff; 1000];
    let mut inner = Encoder::new();
    inner.bytes_field(1, &name);
    let error =
        Response::decode(&envelope(kind::APPLY_ID, &inner.finish())).expect_err("not UTF-8");
    let ResponseError::Wire(WireError::BadUtf8 { field: 1, prefix }) = &error else {
        panic!("unexpected error {error:?}");
    };
    assert_eq!(prefix, &format!("{}…(1000 bytes)", "ff".repeat(16)));
    assert!(error.to_string().len() < 100, "{error}");
}

#[test]
fn every_truncation_of_a_reply_is_an_error() {
    let osds = vec![OsdInfo {
        osdid: 1,
        address: "10.0.0.1".to_string(),
        isin: true,
        isup: true,
        ..OsdInfo::default()
    }];
    let bytes = encoded_cluster_map(&osds, &BTreeMap::new());
    // Cutting inside the envelope's only field always breaks its length.
    for cut in 0..bytes.len() {
        let decoded = Response::decode(&bytes[..cut]);
        assert!(decoded.is_err(), "cut at {cut} decoded as {decoded:?}");
    }
}

// ---- framing and the client over a local socket (a scripted peer, not a monitor) ----

#[test]
fn frames_carry_a_little_endian_u64_length() {
    assert_eq!(frame(&[]), [0; 8]);
    let payload = vec![7u8; 0x0102];
    let framed = frame(&payload);
    assert_eq!(&framed[..8], &[0x02, 0x01, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&framed[8..], &payload[..]);
}

/// A peer on a local port that reads `expect_bytes` request bytes, then writes `reply` and
/// closes; returns the address and a handle yielding the bytes it read.
async fn scripted_peer(
    expect_bytes: usize,
    reply: Vec<u8>,
) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut read = vec![0u8; expect_bytes];
        socket.read_exact(&mut read).await.expect("request bytes");
        socket.write_all(&reply).await.expect("reply");
        read
    });
    (address, handle)
}

#[tokio::test]
async fn pipelined_replies_are_matched_in_request_order() {
    let requests = [
        Request::ApplyId {
            uuid: "u1".to_string(),
        },
        Request::cpp_poll(1, BTreeMap::new()),
        Request::OsdOut { osdid: 1 },
    ];
    let sent: Vec<u8> = requests.iter().flat_map(|r| frame(&r.encode())).collect();
    let replies = [
        envelope(kind::APPLY_ID, &[0x0a, 0x02, b'u', b'1', 0x10, 0x01]),
        envelope(kind::GET_CLUSTER_MAP, &[]),
        envelope(kind::OSD_OUT, &[0x08, 0x01]),
    ];
    let reply_bytes: Vec<u8> = replies.iter().flat_map(|r| frame(r)).collect();
    let (address, peer) = scripted_peer(sent.len(), reply_bytes).await;

    let mut client = LegacyClient::connect(&address).await.expect("connect");
    for request in &requests {
        client.send(request).await.expect("send");
    }
    let busy = client.call(&Request::ListPools).await;
    assert!(
        matches!(busy, Err(LegacyError::Busy { in_flight: 3 })),
        "{busy:?}"
    );
    let Response::ApplyId(applied) = client.recv().await.expect("apply") else {
        panic!("not ApplyId");
    };
    assert_eq!((applied.uuid.as_str(), applied.id), ("u1", 1));
    assert_eq!(
        client.recv().await.expect("map"),
        Response::GetClusterMap(ClusterMapReply::default())
    );
    assert_eq!(
        client.recv().await.expect("out"),
        Response::Ok {
            kind: kind::OSD_OUT,
            ok: true
        }
    );
    assert_eq!(peer.await.expect("peer"), sent, "the bytes on the wire");
    assert!(matches!(
        client.recv_frame().await,
        Err(LegacyError::Closed)
    ));
}

#[tokio::test]
async fn a_reply_of_the_wrong_kind_is_reported() {
    let request = Request::OsdIn { osdid: 2 };
    let sent = frame(&request.encode());
    let reply = frame(&envelope(kind::OSD_OUT, &[0x08, 0x01]));
    let (address, _peer) = scripted_peer(sent.len(), reply).await;
    let mut client = LegacyClient::connect(&address).await.expect("connect");
    let result = client.call(&request).await;
    assert!(
        matches!(
            result,
            Err(LegacyError::WrongKind {
                expected: kind::OSD_IN,
                got: kind::OSD_OUT
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_oversized_length_is_refused_from_the_header_alone() {
    let request = Request::GetClusterStatus;
    let sent = frame(&request.encode());
    // 2^40: refused before any allocation, although no payload follows.
    let (address, _peer) = scripted_peer(sent.len(), (1u64 << 40).to_le_bytes().to_vec()).await;
    let mut client = LegacyClient::connect(&address).await.expect("connect");
    let result = client.call(&request).await;
    assert!(
        matches!(
            result,
            Err(LegacyError::TooLarge { len, max: MAX_RESPONSE_BYTES }) if len == 1 << 40
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_frame_cut_short_is_truncated() {
    let request = Request::GetClusterStatus;
    let sent = frame(&request.encode());
    let mut reply = 10u64.to_le_bytes().to_vec();
    reply.extend_from_slice(&[0xaa, 0x01, 0x00]);
    let (address, _peer) = scripted_peer(sent.len(), reply).await;
    let mut client = LegacyClient::connect(&address).await.expect("connect");
    let result = client.call(&request).await;
    assert!(
        matches!(
            result,
            Err(LegacyError::Truncated {
                got: 11,
                expected: 18
            })
        ),
        "{result:?}"
    );

    let (address, _peer) = scripted_peer(sent.len(), vec![1, 0, 0]).await;
    let mut client = LegacyClient::connect(&address).await.expect("connect");
    let result = client.call(&request).await;
    assert!(
        matches!(
            result,
            Err(LegacyError::Truncated {
                got: 3,
                expected: 8
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_silent_peer_times_out_and_a_closing_one_is_seen_closing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let mut client = LegacyClient::connect(&address).await.expect("connect");
    let (peer, _) = listener.accept().await.expect("accept");
    client.set_reply_timeout(Duration::from_millis(100));
    let result = client.call(&Request::ListPools).await;
    assert!(matches!(result, Err(LegacyError::Timeout(_))), "{result:?}");
    assert!(!client.closed_within(Duration::from_millis(100)).await);
    drop(peer);
    assert!(client.closed_within(Duration::from_secs(5)).await);
}

// ---- raw protocol (§11) ----

#[test]
fn raw_header_is_28_bytes_field_by_field() {
    let header = RawHeader::request(raw::OP_GET_CLUSTER_MAP, 0x0102_0304_0506_0708, 24);
    let expected: [u8; 28] = [
        0x57, 0x52, 0x42, 0x46, // magic "WRBF"
        0x01, 0x00, 0x01, 0x02, // version 1.0, service 1, opcode 2
        0x00, 0x00, 0x00, 0x00, // flags
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // seq
        0x00, 0x00, 0x00, 0x00, // status
        0x18, 0x00, 0x00, 0x00, // body_len 24
    ];
    assert_eq!(header.encode(), expected);
    assert_eq!(RawHeader::parse(&expected), Ok(header));
    assert!(!header.is_response());
    assert_eq!(
        RawHeader::parse(&expected[..27]),
        Err(RawError::Short {
            what: "header",
            offset: 24,
            need: 4,
            have: 3
        })
    );
}

#[test]
fn raw_requests_byte_by_byte() {
    let map = raw::get_cluster_map(7, 3, 1, 5);
    assert_eq!(map.len(), 28 + 24);
    assert_eq!(
        RawHeader::parse(&map),
        Ok(RawHeader::request(raw::OP_GET_CLUSTER_MAP, 7, 24))
    );
    assert_eq!(
        &map[28..],
        &[
            3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0
        ]
    );

    let info = raw::get_image_info(9, 0x11, "rbd", "img").expect("short names");
    assert_eq!(
        RawHeader::parse(&info),
        Ok(RawHeader::request(raw::OP_GET_IMAGE_INFO, 9, 18))
    );
    let mut body = vec![0x11, 0, 0, 0, 0, 0, 0, 0, 3, 0, 3, 0];
    body.extend_from_slice(b"rbdimg");
    assert_eq!(&info[28..], &body[..]);

    let long = "x".repeat(70_000);
    assert_eq!(
        raw::get_image_info(1, 0, &long, "img"),
        Err(RawError::NameTooLong {
            what: "pool name",
            len: 70_000
        })
    );
}

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn push_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A GET_CLUSTER_MAP body as §11 lays it out: one OSD with two shards and one PG.
fn raw_cluster_map_body() -> Vec<u8> {
    let mut body = Vec::new();
    push_u64(&mut body, 12);
    push_u64(&mut body, 4);
    push_u32(&mut body, 1);
    push_u32(&mut body, 1);
    push_u32(&mut body, 1); // OSD id
    push_u32(&mut body, 3); // in and up
    push_u16(&mut body, 8);
    push_u16(&mut body, 2);
    body.extend_from_slice(b"10.0.0.1");
    for (shard, port, core) in [(0u32, 9000u16, 0u16), (1, 9001, 1)] {
        push_u32(&mut body, shard);
        push_u16(&mut body, port);
        push_u16(&mut body, core);
    }
    push_u32(&mut body, 1); // pool
    push_u32(&mut body, 0); // pg
    push_u64(&mut body, 3); // version
    push_u32(&mut body, 2); // active
    push_u32(&mut body, 1); // primary shard
    push_u32(&mut body, 3);
    for osd in [1u32, 2, 3] {
        push_u32(&mut body, osd);
    }
    body
}

#[test]
fn raw_cluster_map_body_parses_field_by_field() {
    let parsed = RawClusterMap::parse(&raw_cluster_map_body()).expect("valid body");
    let osd = RawOsd {
        id: 1,
        flags: 3,
        address: "10.0.0.1".to_string(),
        shards: vec![
            RawShard {
                shard_id: 0,
                port: 9000,
                core_id: 0,
            },
            RawShard {
                shard_id: 1,
                port: 9001,
                core_id: 1,
            },
        ],
    };
    assert!(osd.is_in() && osd.is_up());
    assert_eq!(
        parsed,
        RawClusterMap {
            osdmap_epoch: 12,
            pgmap_epoch: 4,
            osds: vec![osd],
            pgs: vec![RawPg {
                pool: 1,
                pg: 0,
                version: 3,
                state: 2,
                primary_shard: 1,
                replicas: vec![1, 2, 3],
            }],
        }
    );
}

#[test]
fn raw_bodies_cut_or_padded_are_typed_errors() {
    let body = raw_cluster_map_body();
    for cut in 0..body.len() {
        assert!(
            matches!(
                RawClusterMap::parse(&body[..cut]),
                Err(RawError::Short { .. })
            ),
            "cut at {cut}"
        );
    }
    let mut padded = body.clone();
    padded.push(0);
    assert_eq!(
        RawClusterMap::parse(&padded),
        Err(RawError::Trailing {
            what: "cluster map",
            extra: 1
        })
    );
    // Counts of 2^32 - 1 with nothing behind them: an error, no huge allocation.
    let mut lying = Vec::new();
    push_u64(&mut lying, 1);
    push_u64(&mut lying, 1);
    push_u32(&mut lying, u32::MAX);
    push_u32(&mut lying, u32::MAX);
    assert!(matches!(
        RawClusterMap::parse(&lying),
        Err(RawError::Short { .. })
    ));

    let mut info = Vec::new();
    push_u64(&mut info, 0xabc);
    push_u32(&mut info, 2);
    push_u32(&mut info, raw::BLOCK_SIZE);
    push_u32(&mut info, 4 << 20);
    push_u32(&mut info, 0);
    push_u64(&mut info, 1 << 30);
    assert_eq!(info.len(), raw::IMAGE_INFO_BYTES);
    assert_eq!(
        RawImageInfo::parse(&info),
        Ok(RawImageInfo {
            epoch: 0xabc,
            pool_id: 2,
            block_size: 4096,
            object_size: 4 << 20,
            flags: 0,
            size: 1 << 30,
        })
    );
    assert!(matches!(
        RawImageInfo::parse(&info[..31]),
        Err(RawError::Short { .. })
    ));
}

#[test]
fn fnv1a_64_matches_the_reference_vectors() {
    assert_eq!(raw::fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(raw::fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(raw::fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    assert_eq!(
        raw::image_epoch("rbd", "img", 1, 1 << 30, 4 << 20),
        raw::fnv1a_64(b"rbd\x00img\x001\x001073741824\x004194304")
    );
}

#[tokio::test]
async fn raw_client_reads_header_then_body() {
    let request = raw::get_cluster_map(42, 0, 1, 0);
    let mut header = RawHeader::request(raw::OP_GET_CLUSTER_MAP, 42, 0);
    header.flags = raw::FLAG_RESPONSE;
    header.status = raw::status::OK;
    let body = raw_cluster_map_body();
    let reply = raw::message(header, &body);
    let (address, peer) = scripted_peer(request.len(), reply).await;
    let mut client = RawClient::connect(&address).await.expect("connect");
    let response = client.exchange(&request).await.expect("response");
    assert_eq!(response.header.seq, 42);
    assert!(response.header.is_response());
    assert_eq!(response.header.body_len as usize, body.len());
    assert_eq!(response.body, body);
    assert_eq!(peer.await.expect("peer"), request);
    assert!(matches!(
        client.recv().await,
        Err(raw::RawClientError::Closed)
    ));
}

// ---- no input makes a decoder panic ----

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let _ = Response::decode(&bytes);
        let _ = RawClusterMap::parse(&bytes);
        let _ = RawImageInfo::parse(&bytes);
        let _ = RawHeader::parse(&bytes);
    }

    #[test]
    fn mutated_replies_never_panic_the_decoder(
        position in 0usize..64,
        value in proptest::prelude::any::<u8>(),
    ) {
        let osds = vec![OsdInfo {
            osdid: 1,
            address: "10.0.0.1".to_string(),
            isin: true,
            ..OsdInfo::default()
        }];
        let pgs = vec![PgInfo {
            pgid: 1,
            osdid: vec![1, 2, 3],
            ..PgInfo::default()
        }];
        let mut bytes = encoded_cluster_map(&osds, &BTreeMap::from([(1, pgs)]));
        let at = position % bytes.len();
        bytes[at] = value;
        let _ = Response::decode(&bytes);
    }
}
