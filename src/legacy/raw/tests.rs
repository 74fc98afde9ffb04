//! The raw protocol's pure part (exact bytes, every refusal, both answers against a state built
//! through commands) and its request loop over scripted streams, with hostile input.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::executor::block_on;
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::server::{End, OsdSectionCache, session};
use super::*;
use crate::cluster::{
    Command, DownReason, Epoch, ImageId, LeaderEpoch, Liveness, Membership, OsdId, OutReason,
    PoolArgs, PoolId, command, test_cluster,
};
use crate::fuzzing;
use crate::metrics::Metrics;

// ---- fixture ----------------------------------------------------------------------------------

fn run<C: Command>(s: &mut ClusterState, c: C) -> C::Reply {
    s.begin_group();
    match s.apply(&c) {
        Ok(a) => a.reply,
        Err(e) => panic!("fixture command {c:?} refused: {e}"),
    }
}

/// Six booted OSDs on six hosts (osd.5 out, osd.6 stopped), osd.7 applied but never booted,
/// pool "rbd" (id 1, size 3, 16 PGs) with image "vm" (1 GiB, default 4 MiB objects), and pool
/// "two" (id 2, 4 PGs).
fn state() -> &'static ClusterState {
    static STATE: OnceLock<ClusterState> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut s = test_cluster(6, 6);
        run(&mut s, command::OsdOut { id: OsdId(5) });
        run(&mut s, command::OsdStop { id: OsdId(6) });
        run(
            &mut s,
            command::ApplyId {
                uuid: uuid::Uuid::from_u128(7).to_string(),
            },
        );
        for (name, count) in [("rbd", 16), ("two", 4)] {
            run(
                &mut s,
                command::CreatePool(PoolArgs {
                    name: name.into(),
                    size: 3,
                    pg_count: count,
                    failure_domain: "host".into(),
                    root: String::new(),
                }),
            );
        }
        run(
            &mut s,
            command::CreateImage {
                pool: "rbd".into(),
                name: "vm".into(),
                size: 1 << 30,
                object_size: 0,
            },
        );
        s.begin_group();
        s
    })
}

fn header(opcode: u8, seq: u64, body_len: u32) -> Header {
    Header {
        magic: MAGIC,
        version_major: 1,
        version_minor: 0,
        service: 1,
        opcode,
        flags: 0,
        seq,
        status: 0,
        body_len,
    }
}

fn map_body(osdmap_epoch: u64, pool: u32, pgmap_epoch: u64) -> Vec<u8> {
    let mut b = osdmap_epoch.to_le_bytes().to_vec();
    b.extend_from_slice(&pool.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&pgmap_epoch.to_le_bytes());
    b
}

fn image_req(epoch: u64, pool: &[u8], image: &[u8]) -> Vec<u8> {
    let mut b = epoch.to_le_bytes().to_vec();
    b.extend_from_slice(&(pool.len() as u16).to_le_bytes());
    b.extend_from_slice(&(image.len() as u16).to_le_bytes());
    b.extend_from_slice(pool);
    b.extend_from_slice(image);
    b
}

fn ask(h: &Header, body: &[u8]) -> Reply {
    let s = state();
    answer(h, body, s, || osd_section(s))
}

fn ask_map(osdmap_epoch: u64, pool: u32, pgmap_epoch: u64) -> Reply {
    ask(
        &header(OP_GET_CLUSTER_MAP, 1, 24),
        &map_body(osdmap_epoch, pool, pgmap_epoch),
    )
}

fn ask_image(epoch: u64, pool: &[u8], image: &[u8]) -> Reply {
    let body = image_req(epoch, pool, image);
    ask(&header(OP_GET_IMAGE_INFO, 1, body.len() as u32), &body)
}

/// A little-endian reader for the tests' own parsing of answers.
struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().unwrap()
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
}

// ---- header -----------------------------------------------------------------------------------

#[test]
fn the_header_is_28_little_endian_bytes_without_padding() {
    let h = Header {
        magic: MAGIC,
        version_major: 1,
        version_minor: 2,
        service: 1,
        opcode: 2,
        flags: 0x0403_0201,
        seq: 0x0102_0304_0506_0708,
        status: 0x0a0b_0c0d,
        body_len: 0x1122_3344,
    };
    let bytes = h.encode();
    assert_eq!(
        bytes,
        [
            0x57, 0x52, 0x42, 0x46, // "WRBF"
            1, 2, 1, 2, // version, service, opcode
            0x01, 0x02, 0x03, 0x04, // flags
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // seq
            0x0d, 0x0c, 0x0b, 0x0a, // status
            0x44, 0x33, 0x22, 0x11, // body_len
        ]
    );
    assert_eq!(&bytes[..4], b"WRBF");
    assert_eq!(Header::parse(&bytes), h);
}

#[test]
fn a_response_echoes_seq_and_opcode_and_sets_the_response_flag() {
    let mut request = header(7, 0xdead_beef_0000_0001, 3);
    request.magic = 1;
    request.version_major = 9;
    request.service = 4;
    let r = Header::response_to(&request, Status::NotFound, 32);
    assert_eq!(
        r,
        Header {
            magic: MAGIC,
            version_major: 1,
            version_minor: 0,
            service: 1,
            opcode: 7,
            flags: FLAG_RESPONSE,
            seq: 0xdead_beef_0000_0001,
            status: 2,
            body_len: 32,
        }
    );
    let reply = Reply::new(Kind::GetImageInfo, Status::Ok, vec![1, 2, 3]);
    let message = reply.encode(&request);
    assert_eq!(message.len(), HEADER_LEN + 3);
    let h = Header::parse(message[..HEADER_LEN].try_into().unwrap());
    assert_eq!((h.status, h.body_len, h.seq), (0, 3, request.seq));
    assert_eq!(&message[HEADER_LEN..], [1, 2, 3]);
}

#[test]
fn status_codes_are_those_of_the_doc() {
    let codes = [
        (Status::Ok, 0),
        (Status::InvalidRequest, 1),
        (Status::NotFound, 2),
        (Status::StaleEpoch, 3),
        (Status::RetryLater, 4),
        (Status::NotLeader, 5),
        (Status::PgInitializing, 6),
        (Status::OsdDown, 7),
        (Status::InternalError, 8),
    ];
    for (s, code) in codes {
        assert_eq!(s.code(), code, "{s:?}");
    }
    assert_eq!(Status::StaleEpoch.result_label(), "ok");
    assert_eq!(Status::NotFound.result_label(), "refused");
    assert_eq!(Status::InternalError.result_label(), "failed");
}

#[test]
fn bad_headers_are_invalid_requests_with_an_empty_body() {
    let body = map_body(0, 1, 0);
    let good = header(OP_GET_CLUSTER_MAP, 5, 24);
    assert_eq!(ask(&good, &body).status, Status::Ok);
    let mut cases = Vec::new();
    let mut h = good;
    h.magic = 0x4642_5258;
    cases.push((h, HeaderError::Magic(0x4642_5258)));
    let mut h = good;
    h.version_major = 2;
    cases.push((h, HeaderError::Version(2)));
    let mut h = good;
    h.version_major = 0;
    cases.push((h, HeaderError::Version(0)));
    let mut h = good;
    h.service = 2;
    cases.push((h, HeaderError::Service(2)));
    let mut h = good;
    h.flags = 1;
    cases.push((h, HeaderError::ResponseFlag));
    let mut h = good;
    h.flags = 0xffff_ffff;
    cases.push((h, HeaderError::ResponseFlag));
    for op in [0, 3, 255] {
        let mut h = good;
        h.opcode = op;
        cases.push((h, HeaderError::Opcode(op)));
    }
    for (h, expected) in cases {
        assert_eq!(check_header(&h), Err(expected));
        let r = ask(&h, &body);
        assert_eq!(
            (r.kind, r.status, r.body.len()),
            (Kind::Invalid, Status::InvalidRequest, 0),
            "{h:?}"
        );
    }
    // Neither the minor version, other flag bits nor the status field are judged.
    let mut h = good;
    h.version_minor = 9;
    h.flags = 2;
    h.status = 8;
    assert_eq!(ask(&h, &body).status, Status::Ok);
}

#[test]
fn the_body_limit_is_the_longest_legal_request() {
    assert_eq!(MAX_BODY_LEN, 131_082);
    let longest = image_req(0, &[b'p'; 65535], &[b'i'; 65535]);
    assert_eq!(longest.len(), MAX_BODY_LEN as usize);
    assert!(!body_too_large(&header(1, 0, MAX_BODY_LEN)));
    assert!(body_too_large(&header(1, 0, MAX_BODY_LEN + 1)));
    assert!(body_too_large(&header(1, 0, u32::MAX)));
    // The longest legal request is answered (NOT_FOUND: no such names).
    assert_eq!(
        ask_image(0, &[b'p'; 65535], &[b'i'; 65535]).status,
        Status::NotFound
    );
}

// ---- GET_CLUSTER_MAP --------------------------------------------------------------------------

struct ParsedOsd {
    id: i32,
    flags: u32,
    address: String,
    shards: Vec<(u32, u16, u16)>,
}

struct ParsedPg {
    pool: i32,
    pg: i32,
    version: i64,
    state: u32,
    core: u32,
    members: Vec<i32>,
}

fn parse_map(body: &[u8]) -> (u64, u64, Vec<ParsedOsd>, Vec<ParsedPg>) {
    let mut r = Rd(body);
    let (osdmap, pgmap) = (r.u64(), r.u64());
    let (osd_count, pg_count) = (r.u32(), r.u32());
    let mut osds = Vec::new();
    for _ in 0..osd_count {
        let id = r.i32();
        let flags = r.u32();
        let addr_len = r.u16();
        let shard_count = r.u16();
        let address = String::from_utf8(r.bytes(usize::from(addr_len))).unwrap();
        let shards = (0..shard_count)
            .map(|_| (r.u32(), r.u16(), r.u16()))
            .collect();
        osds.push(ParsedOsd {
            id,
            flags,
            address,
            shards,
        });
    }
    let mut pgs = Vec::new();
    for _ in 0..pg_count {
        let pool = r.i32();
        let pg = r.i32();
        let version = r.i64();
        let state = r.u32();
        let core = r.u32();
        let n = r.u32();
        let members = (0..n).map(|_| r.i32()).collect();
        pgs.push(ParsedPg {
            pool,
            pg,
            version,
            state,
            core,
            members,
        });
    }
    assert!(r.0.is_empty(), "{} bytes after the last PG", r.0.len());
    (osdmap, pgmap, osds, pgs)
}

#[test]
fn the_cluster_map_carries_every_osd_and_the_pools_pgs_sorted() {
    let s = state();
    let pool = s.pool(PoolId(1)).unwrap();
    let r = ask_map(0, 1, 0);
    assert_eq!(r.status, Status::Ok);
    let (osdmap, pgmap, osds, pgs) = parse_map(&r.body);
    assert_eq!(osdmap, s.osdmap_epoch().0);
    assert!(osdmap >= 1);
    assert_eq!(pgmap, pool.epoch.0);
    assert_eq!(
        osds.iter().map(|o| o.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    for o in &osds {
        let ours = s.osd(OsdId(o.id as u32)).unwrap();
        assert_eq!(
            o.flags,
            u32::from(ours.is_in()) | (u32::from(ours.is_up()) << 1),
            "osd.{}",
            o.id
        );
        if o.id == 7 {
            assert_eq!(
                (o.address.as_str(), o.shards.len()),
                ("", 0),
                "never booted"
            );
        } else {
            assert_eq!(o.address, "10.0.0.1");
            // The fixture's shards: RDMA port 7000 + i, raw port 8000 + i, core i.
            assert_eq!(o.shards, [(0, 8000, 0), (1, 8001, 1)]);
        }
    }
    assert_eq!(osds[0].flags, 0b11, "osd.1 up and in");
    assert_eq!(osds[4].flags, 0b10, "osd.5 out, up");
    assert!(matches!(
        s.osd(OsdId(6)).unwrap().liveness,
        Liveness::Down {
            reason: DownReason::Stopped,
            ..
        }
    ));
    assert_eq!(osds[5].flags & 0b10, 0, "osd.6 down");
    assert!(matches!(
        s.osd(OsdId(7)).unwrap().membership,
        Membership::Out {
            reason: OutReason::New,
            ..
        }
    ));
    assert_eq!(osds[6].flags, 0, "osd.7 new: out and down");

    assert_eq!(pgs.len(), 16);
    for (i, (p, (id, ours))) in pgs.iter().zip(pool.pgs.iter()).enumerate() {
        assert_eq!((p.pool, p.pg), (1, i as i32));
        assert_eq!(id.0, i as u32);
        assert_eq!(p.version, ours.version.0 as i64);
        assert_eq!(p.state, ours.state.0);
        assert_eq!(p.core, ours.core);
        let members: Vec<i32> = ours.members.iter().map(|m| m.0 as i32).collect();
        assert_eq!(p.members, members);
        assert_eq!(p.members.len(), 3);
    }
    // Another pool: the same OSDs, its own PGs only.
    let (_, pgmap2, osds2, pgs2) = parse_map(&ask_map(0, 2, 0).body);
    assert_eq!(pgmap2, s.pool(PoolId(2)).unwrap().epoch.0);
    assert_eq!(osds2.len(), 7);
    assert_eq!(pgs2.len(), 4);
    assert!(pgs2.iter().all(|p| p.pool == 2));
}

#[test]
fn cluster_map_refusals_and_stale_epochs() {
    let s = state();
    let osdmap = s.osdmap_epoch().0;
    let pgmap = s.pool(PoolId(1)).unwrap().epoch.0;
    let stale = ask_map(osdmap, 1, pgmap);
    assert_eq!((stale.status, stale.body.len()), (Status::StaleEpoch, 0));
    // One epoch behind (or ahead) is a full answer.
    for (o, p) in [
        (osdmap - 1, pgmap),
        (osdmap, pgmap + 1),
        (osdmap + 1, pgmap),
        (0, 0),
    ] {
        assert_eq!(ask_map(o, 1, p).status, Status::Ok, "{o} {p}");
    }
    let zero = ask_map(0, 0, 0);
    assert_eq!(
        (zero.kind, zero.status, zero.body.len()),
        (Kind::GetClusterMap, Status::InvalidRequest, 0)
    );
    for pool in [3, 99, u32::MAX] {
        let r = ask_map(0, pool, 0);
        assert_eq!((r.status, r.body.len()), (Status::NotFound, 0), "{pool}");
    }
    for len in [0, 8, 23, 25, 48] {
        let mut body = map_body(0, 1, 0);
        body.resize(len, 0);
        let r = ask(&header(OP_GET_CLUSTER_MAP, 1, len as u32), &body);
        assert_eq!(
            (r.kind, r.status, r.body.len()),
            (Kind::GetClusterMap, Status::InvalidRequest, 0),
            "{len}"
        );
    }
    // The reserved field is not judged.
    let mut body = map_body(0, 1, 0);
    body[12] = 0xff;
    assert_eq!(
        ask(&header(OP_GET_CLUSTER_MAP, 1, 24), &body).status,
        Status::Ok
    );
}

#[test]
fn with_no_osd_the_osdmap_epoch_is_minus_one() {
    assert_eq!(reported_osdmap_epoch(&ClusterState::default()), u64::MAX);
    assert_eq!(reported_osdmap_epoch(state()), state().osdmap_epoch().0);
    let empty = osd_section(&ClusterState::default()).unwrap();
    assert_eq!((empty.count, empty.bytes.len()), (0, 0));
    // No OSD means no pool either: every pool is unknown.
    let s = ClusterState::default();
    let r = answer(
        &header(OP_GET_CLUSTER_MAP, 1, 24),
        &map_body(0, 1, 0),
        &s,
        || osd_section(&s),
    );
    assert_eq!(r.status, Status::NotFound);
}

#[test]
fn shard_ports_prefer_the_raw_port_and_core_ids_are_clamped() {
    let shard = |port, raw_port, core_id| Shard {
        core_id,
        port,
        raw_port,
    };
    assert_eq!(shard_port(&shard(7000, 8000, 0)), 8000);
    assert_eq!(shard_port(&shard(7000, 0, 0)), 7000);
    assert_eq!(shard_core(&shard(1, 1, 65535)), 65535);
    assert_eq!(shard_core(&shard(1, 1, 70_000)), 65535);

    let mut osd = (**state().osd(OsdId(1)).unwrap()).clone();
    osd.shards = Arc::from(vec![shard(7000, 0, 3), shard(7001, 9001, 100_000)]);
    let mut out = Vec::new();
    encode_osd(&osd, &mut out).unwrap();
    let mut r = Rd(&out);
    assert_eq!((r.i32(), r.u32(), r.u16(), r.u16()), (1, 3, 8, 2));
    assert_eq!(r.bytes(8), b"10.0.0.1");
    assert_eq!((r.u32(), r.u16(), r.u16()), (0, 7000, 3));
    assert_eq!((r.u32(), r.u16(), r.u16()), (1, 9001, 65535));
    assert!(r.0.is_empty());
}

#[test]
fn values_that_do_not_fit_their_field_are_internal_errors() {
    let mut osd = (**state().osd(OsdId(1)).unwrap()).clone();
    osd.id = OsdId(1 << 31);
    let e = encode_osd(&osd, &mut Vec::new()).unwrap_err();
    assert_eq!(e.field, "id i32");
    assert_eq!(e.value, 1 << 31);

    let mut pool = (**state().pool(PoolId(1)).unwrap()).clone();
    pool.pgs.get_mut(crate::cluster::PgId(3)).unwrap().version = Epoch(1 << 63);
    assert_eq!(
        encode_pgs(&pool, &mut Vec::new()).unwrap_err().field,
        "version i64"
    );

    let s = state();
    let r = answer(
        &header(OP_GET_CLUSTER_MAP, 1, 24),
        &map_body(0, 1, 0),
        s,
        || Err(e.clone()),
    );
    assert_eq!((r.status, r.body.len()), (Status::InternalError, 0));
    assert!(r.why.contains("does not fit"), "{}", r.why);

    let image = Image {
        id: ImageId(1),
        pool: PoolId(1),
        name: "big".into(),
        size: 1 << 40,
        object_size: 1 << 32,
    };
    let r = image_reply(0, "rbd", &image);
    assert_eq!((r.status, r.body.len()), (Status::InternalError, 0));
}

// ---- GET_IMAGE_INFO ---------------------------------------------------------------------------

#[test]
fn fnv1a_reference_vectors() {
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn an_image_is_found_with_its_epoch_of_decimal_text() {
    let s = state();
    let image = s.image(PoolId(1), "vm").unwrap();
    let epoch = fnv1a_64(format!("rbd\0vm\0{}\01073741824\04194304", image.id.0).as_bytes());
    assert_eq!(image_epoch("rbd", image), epoch);
    for client in [0, 1, epoch.wrapping_add(1)] {
        let r = ask_image(client, b"rbd", b"vm");
        assert_eq!((r.kind, r.status), (Kind::GetImageInfo, Status::Ok));
        let mut rd = Rd(&r.body);
        assert_eq!(rd.u64(), epoch);
        assert_eq!(rd.u32(), 1, "pool id");
        assert_eq!(rd.u32(), 4096, "block size");
        assert_eq!(rd.u32(), 4 << 20, "object size");
        assert_eq!(rd.u32(), 0, "flags");
        assert_eq!(rd.u64(), 1 << 30, "size");
        assert!(rd.0.is_empty());
    }
    let stale = ask_image(epoch, b"rbd", b"vm");
    assert_eq!((stale.status, stale.body.len()), (Status::StaleEpoch, 0));
    // The epoch follows the size.
    let mut resized = (**image).clone();
    resized.size = 2 << 30;
    assert_ne!(image_epoch("rbd", &resized), epoch);
}

#[test]
fn an_unknown_image_is_not_found_with_a_zero_body() {
    let zero = {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&4096u32.to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b
    };
    assert_eq!(zero.len(), IMAGE_INFO_LEN);
    for (pool, image) in [
        (&b"rbd"[..], &b"nope"[..]),
        (b"two", b"vm"),
        (b"nopool", b"vm"),
        (b"", b""),
        (b"rbd", b"\xff\xfe"),
        (b"\xc3(", b"vm"),
    ] {
        let r = ask_image(0, pool, image);
        assert_eq!(
            (r.kind, r.status, &r.body),
            (Kind::GetImageInfo, Status::NotFound, &zero),
            "{pool:?} {image:?}"
        );
    }
}

#[test]
fn image_requests_must_match_their_name_lengths_exactly() {
    let good = image_req(0, b"rbd", b"vm");
    let mut cases = vec![
        Vec::new(),
        good[..11].to_vec(),
        good[..good.len() - 1].to_vec(),
    ];
    let mut long = good.clone();
    long.push(b'x');
    cases.push(long);
    let mut lens = good.clone();
    lens[8] = 4;
    cases.push(lens);
    for body in cases {
        let r = ask(&header(OP_GET_IMAGE_INFO, 1, body.len() as u32), &body);
        assert_eq!(
            (r.kind, r.status, r.body.len()),
            (Kind::GetImageInfo, Status::InvalidRequest, 0),
            "{body:?}"
        );
    }
    assert_eq!(
        ImageInfoRequest::parse(&good),
        Some(ImageInfoRequest {
            image_epoch: 0,
            pool: b"rbd",
            image: b"vm"
        })
    );
}

// ---- the OSD section cache --------------------------------------------------------------------

#[test]
fn the_osd_section_is_reused_within_a_term_and_osdmap_epoch() {
    let cache = OsdSectionCache::default();
    let s = state();
    let a = cache.get(LeaderEpoch(5), s).unwrap();
    assert_eq!(a, osd_section(s).unwrap());
    let b = cache.get(LeaderEpoch(5), s).unwrap();
    assert_eq!(a.bytes.as_ptr(), b.bytes.as_ptr(), "the same bytes");
    let c = cache.get(LeaderEpoch(6), s).unwrap();
    assert_ne!(
        a.bytes.as_ptr(),
        c.bytes.as_ptr(),
        "another term encodes again"
    );
    let mut changed = s.clone();
    run(&mut changed, command::OsdIn { id: OsdId(5) });
    let d = cache.get(LeaderEpoch(6), &changed).unwrap();
    assert_eq!(d, osd_section(&changed).unwrap());
    assert_ne!(d, c);
}

// ---- the request loop -------------------------------------------------------------------------

/// A connection whose peer sends `input` (at most `chunk` bytes per read), then closes its
/// side (or stays open when `hold`), and whose replies are collected.
struct Script {
    input: Vec<u8>,
    at: usize,
    chunk: usize,
    hold: bool,
    output: Vec<u8>,
}

impl Script {
    fn new(input: Vec<u8>, chunk: usize) -> Script {
        Script {
            input,
            at: 0,
            chunk: chunk.max(1),
            hold: false,
            output: Vec::new(),
        }
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.input.len() - self.at);
        if n == 0 && self.hold {
            return Poll::Pending;
        }
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs a session over `script` from the fixture state: how it ended, and the replies.
fn converse(
    script: &mut Script,
    first: &[u8],
    ended: &CancellationToken,
    metrics: &Metrics,
) -> (End, Vec<(Header, Vec<u8>)>) {
    let snapshot = Arc::new(state().clone());
    let cache = OsdSectionCache::default();
    let end = block_on(session(
        &mut *script,
        first,
        || snapshot.clone(),
        LeaderEpoch(1),
        ended,
        metrics,
        &cache,
    ))
    .expect("no I/O error on a script");
    (end, split_replies(&script.output))
}

fn split_replies(mut out: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let mut replies = Vec::new();
    while !out.is_empty() {
        let h = Header::parse(out[..HEADER_LEN].try_into().expect("a whole header"));
        let end = HEADER_LEN + h.body_len as usize;
        replies.push((h, out[HEADER_LEN..end].to_vec()));
        out = &out[end..];
    }
    replies
}

fn message(h: Header, body: &[u8]) -> Vec<u8> {
    let mut h = h;
    h.body_len = body.len() as u32;
    let mut out = h.encode().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn pipelined_requests_are_answered_in_order_and_bad_ones_do_not_end_the_connection() {
    let mut input = message(header(OP_GET_CLUSTER_MAP, 10, 0), &map_body(0, 1, 0));
    let mut bad = header(OP_GET_CLUSTER_MAP, 11, 0);
    bad.magic = 0;
    input.extend(message(bad, &[1, 2, 3]));
    input.extend(message(header(9, 12, 0), &[]));
    input.extend(message(
        header(OP_GET_IMAGE_INFO, 13, 0),
        &image_req(0, b"rbd", b"vm"),
    ));
    input.extend(message(header(OP_GET_CLUSTER_MAP, 14, 0), &[0; 5]));
    input.extend(message(
        header(OP_GET_CLUSTER_MAP, 15, 0),
        &map_body(0, 0, 0),
    ));
    for chunk in [1, 7, 28, 4096] {
        let metrics = Metrics::new();
        let mut script = Script::new(input.clone(), chunk);
        // The sniff took the first 8 bytes.
        let first = script.input.drain(..8).collect::<Vec<_>>();
        let (end, replies) = converse(&mut script, &first, &CancellationToken::new(), &metrics);
        assert_eq!(end, End::PeerClosed, "chunk {chunk}");
        let got: Vec<(u64, u32, u8, bool)> = replies
            .iter()
            .map(|(h, _)| (h.seq, h.status, h.opcode, h.flags & FLAG_RESPONSE != 0))
            .collect();
        assert_eq!(
            got,
            [
                (10, 0, 2, true),
                (11, 1, 2, true),
                (12, 1, 9, true),
                (13, 0, 1, true),
                (14, 1, 2, true),
                (15, 1, 2, true),
            ],
            "chunk {chunk}"
        );
        assert_eq!(replies[3].1.len(), IMAGE_INFO_LEN);
        let count = |kind: &str, result: &str| {
            metrics
                .legacy_requests
                .with_label_values(&["raw", kind, result])
                .get()
        };
        assert_eq!(count("get_cluster_map", "ok"), 1);
        assert_eq!(count("get_cluster_map", "refused"), 2);
        assert_eq!(count("get_image_info", "ok"), 1);
        assert_eq!(count("invalid", "refused"), 2);
    }
}

#[test]
fn a_body_over_the_limit_is_refused_from_the_header_and_closes_the_connection() {
    let mut input = message(header(OP_GET_CLUSTER_MAP, 1, 0), &map_body(0, 1, 0));
    let mut huge = header(OP_GET_IMAGE_INFO, 2, 0).encode();
    huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    input.extend_from_slice(&huge);
    // What follows is never read, let alone answered.
    input.extend(message(
        header(OP_GET_CLUSTER_MAP, 3, 0),
        &map_body(0, 1, 0),
    ));
    let mut script = Script::new(input, 4096);
    let (end, replies) = converse(&mut script, &[], &CancellationToken::new(), &Metrics::new());
    assert_eq!(end, End::TooLarge { body_len: u32::MAX });
    assert_eq!(replies.len(), 2);
    assert_eq!((replies[1].0.seq, replies[1].0.status), (2, 1));
    assert!(replies[1].1.is_empty());
}

#[test]
fn the_session_ends_with_the_term_and_on_truncation() {
    let ended = CancellationToken::new();
    ended.cancel();
    let mut script = Script::new(Vec::new(), 1);
    script.hold = true;
    let (end, replies) = converse(&mut script, &[], &ended, &Metrics::new());
    assert_eq!((end, replies.len()), (End::TermEnded, 0));

    let whole = message(header(OP_GET_CLUSTER_MAP, 1, 0), &map_body(0, 1, 0));
    for cut in [1, 27, 28, 40] {
        let mut script = Script::new(whole[..cut].to_vec(), 3);
        let (end, replies) = converse(&mut script, &[], &CancellationToken::new(), &Metrics::new());
        assert_eq!((end, replies.len()), (End::Truncated { got: cut }, 0));
    }
    let mut script = Script::new(Vec::new(), 3);
    let (end, _) = converse(&mut script, &[], &CancellationToken::new(), &Metrics::new());
    assert_eq!(end, End::PeerClosed);
}

/// What the loop must answer to `input`: the seq of each complete request, and whether the
/// stream ends at an oversized header (answered, then closed).
fn expected_replies(mut input: &[u8]) -> (Vec<u64>, bool) {
    let mut seqs = Vec::new();
    while input.len() >= HEADER_LEN {
        let h = Header::parse(input[..HEADER_LEN].try_into().unwrap());
        if body_too_large(&h) {
            seqs.push(h.seq);
            return (seqs, true);
        }
        let end = HEADER_LEN + h.body_len as usize;
        if input.len() < end {
            break;
        }
        seqs.push(h.seq);
        input = &input[end..];
    }
    (seqs, false)
}

fn seeds() -> Vec<Vec<u8>> {
    let mut two = message(header(OP_GET_CLUSTER_MAP, 1, 0), &map_body(0, 1, 0));
    two.extend(message(
        header(OP_GET_IMAGE_INFO, 2, 0),
        &image_req(0, b"rbd", b"vm"),
    ));
    vec![
        two,
        message(header(OP_GET_CLUSTER_MAP, 3, 0), &map_body(7, 2, 1)),
        message(
            header(OP_GET_IMAGE_INFO, 4, 0),
            &image_req(9, b"rbd", b"nope"),
        ),
        message(header(5, 5, 0), &[]),
    ]
}

fn streams() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..200),
        4 => fuzzing::mutated(seeds()),
        2 => prop::collection::vec(fuzzing::mutated(seeds()), 1..4)
            .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(fuzzing::config(256))]

    /// Random and mutated byte streams: never a panic; every complete request gets exactly one
    /// reply, in order, with its seq echoed and the response flag set; an oversized header is
    /// the last thing answered.
    #[test]
    fn any_byte_stream_is_answered_request_by_request(
        input in streams(),
        chunk in 1usize..64,
        split in 0usize..9,
    ) {
        let (seqs, too_large) = expected_replies(&input);
        let first = input[..split.min(input.len())].to_vec();
        let mut script = Script::new(input[first.len()..].to_vec(), chunk);
        let (end, replies) = converse(&mut script, &first, &CancellationToken::new(), &Metrics::new());
        prop_assert_eq!(replies.iter().map(|(h, _)| h.seq).collect::<Vec<_>>(), seqs);
        for (h, body) in &replies {
            prop_assert_eq!(h.magic, MAGIC);
            prop_assert_eq!(h.flags, FLAG_RESPONSE);
            prop_assert_eq!(h.body_len as usize, body.len());
            prop_assert!(h.status <= 3, "status {}", h.status);
            if h.status != 0 && h.status != 2 {
                prop_assert!(body.is_empty());
            }
        }
        prop_assert_eq!(matches!(end, End::TooLarge { .. }), too_large);
    }

    /// Any body under any header: an answer, never a panic; an OK or NOT_FOUND image answer is
    /// 32 bytes.
    #[test]
    fn any_request_gets_a_well_formed_answer(
        opcode in prop_oneof![Just(1u8), Just(2u8), any::<u8>()],
        body in fuzzing::bytes(vec![
            map_body(0, 1, 0),
            map_body(u64::MAX, 2, 3),
            image_req(0, b"rbd", b"vm"),
            image_req(1, b"two", b""),
        ]),
    ) {
        let h = header(opcode, 1, body.len() as u32);
        let r = ask(&h, &body);
        if r.status != Status::Ok && r.status != Status::NotFound {
            prop_assert!(r.body.is_empty());
        }
        if r.kind == Kind::GetImageInfo && matches!(r.status, Status::Ok | Status::NotFound) {
            prop_assert_eq!(r.body.len(), IMAGE_INFO_LEN);
        }
        if r.kind == Kind::GetClusterMap && r.status == Status::Ok {
            parse_map(&r.body);
        }
    }
}
