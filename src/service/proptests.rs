//! Fuzzing every gRPC request: random and mutated bytes for each request type of the Monitor
//! service, decoded as tonic decodes them (prost) and, when they decode, run through the
//! handler's own validation and command building (`requests.rs`, the map and watch replies)
//! and the state machine, against a small live cluster — everything a handler does short of
//! etcd. Nothing may panic. A refusal is a status with a client-error code, an ErrorInfo
//! reason and a non-empty message that costs at most a fixed budget plus what the client sent;
//! a refused command leaves the state exactly as it was; an accepted one stores records that
//! decode back to what was stored. `PROPTEST_CASES=<n>` runs deeper.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use prost::Message;
use tonic::{Code, Status};

use super::maps::MapCache;
use super::watch::{Subscriber, WatchCache, updates};
use super::{requests, status};
use crate::cluster::iostats::IoStats;
use crate::cluster::{ClusterState, Command, PgId, PoolId, command, decode_record, encode_record};
use crate::fuzzing;
use crate::node::WatchSettings;
use crate::proto::monitor as api;
use crate::proto::wire::WatchClusterMapResponseFields;

/// Cases per request type: each is a decode and one command on a cloned state.
const CASES: u32 = 4096;
/// What an error message may cost beyond the bytes of the request that caused it.
const MESSAGE_BUDGET: usize = 256;
/// OSDs of the fixture cluster (on three hosts).
const OSDS: u32 = 6;

fn uuid(i: u32) -> String {
    uuid::Uuid::from_u128(0xf00d_0000 + u128::from(i)).to_string()
}

fn boot_request(id: u32, instance: u64) -> api::BootRequest {
    api::BootRequest {
        osd_id: id,
        uuid: uuid(id),
        size: 1 << 40,
        shard_ports: (0..2)
            .map(|i| {
                (
                    i,
                    api::ShardPort {
                        core_id: i,
                        port: 7000 + i,
                        raw_port: 8000 + i,
                    },
                )
            })
            .collect(),
        address: format!("10.0.0.{id}"),
        host: format!("host{}", id % 3),
        core_num: 2,
        config: "osd config".to_string(),
        boot_instance: instance,
        rack: format!("rack{}", id % 2),
        root: String::new(),
    }
}

fn run<C: Command>(s: &mut ClusterState, command: C) -> C::Reply {
    s.begin_group();
    match s.apply(&command) {
        Ok(a) => a.reply,
        Err(e) => panic!("fixture command {command:?} refused: {e}"),
    }
}

/// Six OSDs on three hosts (osd.5 out, osd.6 stopped), pool "rbd" (size 3, 32 PGs, PG 0
/// active with a leader) and its image "vm": built through the same request functions.
fn cluster() -> &'static ClusterState {
    static STATE: OnceLock<ClusterState> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut s = ClusterState::default();
        for i in 1..=OSDS {
            let uuid = uuid(i);
            run(&mut s, requests::apply_id(api::ApplyIdRequest { uuid }));
            run(&mut s, requests::boot(boot_request(i, u64::from(i))));
        }
        run(&mut s, requests::osd_out(&api::OsdOutRequest { osd_id: 5 }));
        run(
            &mut s,
            requests::osd_stop(&api::OsdStopRequest { osd_id: 6 }),
        );
        run(&mut s, requests::create_pool(pool_request("rbd")));
        let members = pg_members(&s, 0);
        run(
            &mut s,
            requests::leader_be_elected(&api::LeaderBeElectedRequest {
                leader_id: members[0],
                pool_id: 1,
                pg_id: 0,
                members: members.clone(),
                new_members: Vec::new(),
            }),
        );
        run(&mut s, requests::create_image(image_request("vm", 1 << 30)));
        s.begin_group();
        s
    })
}

fn pg_members(s: &ClusterState, pg: u32) -> Vec<u32> {
    let pool = s.pool(PoolId(1)).expect("pool 1");
    let pg = pool.pgs.get(PgId(pg)).expect("pg");
    pg.members.iter().map(|m| m.0).collect()
}

fn pool_request(name: &str) -> api::CreatePoolRequest {
    api::CreatePoolRequest {
        name: name.to_string(),
        pg_size: 3,
        pg_count: 32,
        failure_domain: "host".to_string(),
        root: String::new(),
    }
}

fn image_request(name: &str, size: u64) -> api::CreateImageRequest {
    api::CreateImageRequest {
        pool_name: "rbd".to_string(),
        image_name: name.to_string(),
        size,
        object_size: 0,
    }
}

/// A refusal as the client sees it: a client-error code, a reason, a bounded message.
fn check_refusal(st: &Status, request_len: usize) {
    assert!(
        !matches!(st.code(), Code::Ok | Code::Unknown | Code::Internal),
        "a refusal must not look like a server bug: {st:?}"
    );
    let reason = status::reason(st).unwrap_or_default();
    assert!(
        !reason.is_empty() && reason.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
        "reason {reason:?} of {st:?}"
    );
    assert!(!st.message().is_empty(), "{st:?}");
    assert!(
        st.message().len() <= MESSAGE_BUDGET + request_len,
        "a {request_len}-byte request got a {}-byte message",
        st.message().len()
    );
}

/// Applies `command` to a copy of the fixture, as the commit pipeline would.
fn propose<C: Command>(command: C, request_len: usize) {
    let mut s = cluster().clone();
    s.begin_group();
    let before = s.clone();
    match s.apply(&command) {
        Ok(applied) => {
            for key in applied.touched.iter().chain(&applied.prelude) {
                let Some(record) = s.record(key) else {
                    continue;
                };
                let stored = encode_record(&record);
                let back = decode_record(key, &stored)
                    .unwrap_or_else(|e| panic!("{command:?} stored {key:?} that fails: {e}"));
                assert_eq!(back, record, "{command:?} stored {key:?}");
            }
        }
        Err(e) => {
            assert!(s == before, "{command:?} was refused but changed the state");
            check_refusal(&status::cluster_error(&e), request_len);
        }
    }
}

/// A reply must encode and decode back as the client receives it.
fn round_trips<M: Message + Default + PartialEq + std::fmt::Debug>(reply: &M) {
    let back = M::decode(reply.encode_to_vec().as_slice()).expect("reply decodes");
    assert_eq!(&back, reply);
}

/// The encodings of valid requests, to mutate.
fn seeds<M: Message>(requests: Vec<M>) -> Vec<Vec<u8>> {
    requests.iter().map(Message::encode_to_vec).collect()
}

/// Decodes as tonic does; a decode failure must explain itself briefly.
fn decode<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    match M::decode(bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty() && text.len() < 512, "{text}");
            None
        }
    }
}

macro_rules! fuzz_request {
    ($($name:ident: $ty:ty = $seeds:expr => |$r:ident, $len:ident| $serve:expr;)*) => {
        proptest! {
            #![proptest_config(fuzzing::config(CASES))]
            $(
                #[test]
                fn $name(bytes in fuzzing::bytes(seeds::<$ty>($seeds))) {
                    if let Some($r) = decode::<$ty>(&bytes) {
                        let $len = bytes.len();
                        $serve;
                    }
                }
            )*
        }
    };
}

fn get_image_seeds() -> Vec<api::GetImageInfoRequest> {
    vec![
        api::GetImageInfoRequest {
            pool_name: "rbd".to_string(),
            image_name: "vm".to_string(),
        },
        api::GetImageInfoRequest::default(),
    ]
}

fn statistics_seeds() -> Vec<api::DataStatisticsRequest> {
    let counters = |n: u64| api::PgIoCounters {
        read_bytes: n,
        write_bytes: n / 2,
        read_ops: n / 4096,
        write_ops: n / 2048,
    };
    vec![api::DataStatisticsRequest {
        osd_id: 1,
        pgs: [
            ("1.0".to_string(), counters(1 << 20)),
            ("1.0x1f".to_string(), counters(u64::MAX)),
            ("1.31".to_string(), counters(u64::MAX - 1)),
            ("9.0".to_string(), counters(5)),
        ]
        .into_iter()
        .collect(),
    }]
}

fn pg_report_seeds() -> Vec<api::LeaderBeElectedRequest> {
    let members = pg_members(cluster(), 0);
    let other = pg_members(cluster(), 1);
    vec![
        api::LeaderBeElectedRequest {
            leader_id: members[0],
            pool_id: 1,
            pg_id: 0,
            members: members.clone(),
            new_members: Vec::new(),
        },
        api::LeaderBeElectedRequest {
            leader_id: other[1],
            pool_id: 1,
            pg_id: 1,
            members: other,
            new_members: vec![1, 2, 3],
        },
    ]
}

fn finish_seeds() -> Vec<api::PgMemberChangeFinishRequest> {
    let members = pg_members(cluster(), 0);
    vec![api::PgMemberChangeFinishRequest {
        result: 0,
        pool_id: 1,
        pg_id: 0,
        leader_id: members[0],
        members,
    }]
}

fn watch_seeds() -> Vec<api::WatchClusterMapRequest> {
    let s = cluster();
    vec![
        api::WatchClusterMapRequest::default(),
        api::WatchClusterMapRequest {
            osdmap_epoch: s.osdmap_epoch().0,
            pool_epochs: s.pools().map(|p| (p.id.0, p.epoch.0 - 1)).collect(),
            scope: api::WatchScope::All as i32,
        },
        api::WatchClusterMapRequest {
            osdmap_epoch: 1,
            pool_epochs: [(1, 1), (7, 3)].into_iter().collect(),
            scope: api::WatchScope::Pgmaps as i32,
        },
    ]
}

fn serve_watch(r: api::WatchClusterMapRequest, len: usize) {
    let mut subscriber = Subscriber::new(r);
    let settings = WatchSettings {
        history_epochs: 3,
        progress_every: Duration::from_secs(5),
        buffer_budget: 256 << 20,
    };
    match updates(
        &mut subscriber,
        cluster(),
        &WatchCache::default(),
        settings,
        1,
    ) {
        Ok(sent) => {
            for update in &sent {
                // Sent pre-encoded; a client decodes it as the plain message.
                let sent = update.encode_to_vec();
                let public =
                    WatchClusterMapResponseFields::decode(sent.as_slice()).expect("update decodes");
                assert!(public.update.is_some(), "{public:?}");
            }
        }
        Err(Some(st)) => check_refusal(&st, len),
        Err(None) => panic!("a watch request ended the stream without a status"),
    }
}

fn serve_statistics(r: api::DataStatisticsRequest, len: usize) {
    match requests::statistics(cluster(), &r) {
        Ok(report) => {
            assert!((report.unknown + report.not_member) as usize <= r.pgs.len());
            let mut stats = IoStats::new(Duration::from_secs(10));
            let now = Instant::now();
            // Twice: the second report of the same counters is a zero delta.
            stats.record(report.clone(), cluster(), now);
            let first = stats.cluster_totals();
            stats.record(report, cluster(), now + Duration::from_secs(1));
            assert_eq!(stats.cluster_totals(), first);
        }
        Err(st) => check_refusal(&st, len),
    }
}

fuzz_request! {
    // These carry no field: decoding is all the service does with them, and anything that
    // decodes (unknown fields are skipped) is the empty request.
    get_leader: api::GetLeaderRequest = vec![api::GetLeaderRequest {}]
        => |r, _len| assert_eq!(r.encoded_len(), 0);
    list_pools: api::ListPoolsRequest = vec![api::ListPoolsRequest {}]
        => |r, _len| assert_eq!(r.encoded_len(), 0);
    get_cluster_status: api::GetClusterStatusRequest = vec![api::GetClusterStatusRequest {}]
        => |r, _len| assert_eq!(r.encoded_len(), 0);
    // The event calls check their type filter before reading etcd: any filter is accepted as
    // given or refused with INVALID_EVENT_TYPE and a short message.
    watch_events: api::WatchEventsRequest = vec![
        api::WatchEventsRequest {
            start: api::EventStart::After as i32,
            after_id: 7,
            types: vec!["osd.".to_string(), "pool.created".to_string()],
        },
        api::WatchEventsRequest::default(),
    ] => |r, len| match requests::event_types(&r.types) {
        Ok(types) => assert_eq!(types, r.types),
        Err(st) => {
            check_refusal(&st, len);
            assert_eq!(status::reason(&st).as_deref(), Some(super::reasons::INVALID_EVENT_TYPE));
        }
    };
    list_events: api::ListEventsRequest = vec![api::ListEventsRequest {
        last: 20,
        after_id: 0,
        types: vec!["health.".to_string()],
    }] => |r, len| if let Err(st) = requests::event_types(&r.types) {
        check_refusal(&st, len);
    };
    apply_id: api::ApplyIdRequest = vec![
        api::ApplyIdRequest { uuid: uuid(1) },
        api::ApplyIdRequest { uuid: uuid(99) },
        api::ApplyIdRequest { uuid: format!("urn:uuid:{}", uuid(98)) },
    ] => |r, len| propose(requests::apply_id(r), len);
    boot: api::BootRequest = vec![boot_request(1, 1), boot_request(6, 60), boot_request(5, 7)]
        => |r, len| propose(requests::boot(r), len);
    osd_stop: api::OsdStopRequest = vec![api::OsdStopRequest { osd_id: 2 }]
        => |r, len| propose(requests::osd_stop(&r), len);
    heartbeat: api::HeartbeatRequest = vec![
        api::HeartbeatRequest { osd_id: 1, boot_instance: 1 },
        api::HeartbeatRequest { osd_id: 6, boot_instance: 6 },
    ] => |r, len| match requests::heartbeat(cluster(), &r) {
        Ok(Some(mark_up)) => propose(mark_up, len),
        Ok(None) => {}
        Err(st) => check_refusal(&st, len),
    };
    osd_out: api::OsdOutRequest = vec![api::OsdOutRequest { osd_id: 3 }]
        => |r, len| propose(requests::osd_out(&r), len);
    osd_in: api::OsdInRequest = vec![api::OsdInRequest { osd_id: 5 }]
        => |r, len| propose(requests::osd_in(&r), len);
    set_osd_location: api::SetOsdLocationRequest = vec![api::SetOsdLocationRequest {
        osd_id: 2,
        host: Some("host9".to_string()),
        rack: Some(String::new()),
        root: Some("ssd".to_string()),
    }] => |r, len| propose(requests::set_osd_location(r), len);
    set_osd_weight: api::SetOsdWeightRequest = vec![
        api::SetOsdWeightRequest { osd_id: 2, weight: 0.5 },
        api::SetOsdWeightRequest { osd_id: 3, weight: 100.0 },
    ] => |r, len| propose(requests::set_osd_weight(&r), len);
    purge_osd: api::PurgeOsdRequest = vec![api::PurgeOsdRequest { osd_id: 6 }]
        => |r, len| propose(requests::purge_osd(&r), len);
    osd_config: api::OsdConfigRequest = vec![api::OsdConfigRequest { osd_id: 1 }]
        => |r, len| if let Err(st) = requests::osd_config(cluster(), &r) {
            check_refusal(&st, len);
        };
    get_osd_map: api::GetOsdMapRequest = vec![
        api::GetOsdMapRequest { osd_id: 1, epoch: 0 },
        api::GetOsdMapRequest { osd_id: 0, epoch: cluster().osdmap_epoch().0 },
    ] => |r, _len| round_trips(&MapCache::default().osdmap_reply(cluster(), &r, 1));
    get_pg_map: api::GetPgMapRequest = vec![api::GetPgMapRequest {
        pool_epochs: [(1, 1), (2, 0), (9, 4)].into_iter().collect(),
    }] => |r, _len| round_trips(&MapCache::default().pgmap_reply(cluster(), &r, 1));
    get_cluster_map: api::GetClusterMapRequest = vec![api::GetClusterMapRequest {
        osdmap: Some(api::GetOsdMapRequest { osd_id: 0, epoch: 2 }),
        pgmap: Some(api::GetPgMapRequest {
            pool_epochs: [(1, 3)].into_iter().collect(),
        }),
    }] => |r, _len| {
        let maps = MapCache::default();
        round_trips(&maps.osdmap_reply(cluster(), &r.osdmap.unwrap_or_default(), 1));
        round_trips(&maps.pgmap_reply(cluster(), &r.pgmap.unwrap_or_default(), 1));
    };
    get_pg_osd_info: api::GetPgOsdInfoRequest = vec![
        api::GetPgOsdInfoRequest { pool_ids: vec![1] },
        api::GetPgOsdInfoRequest { pool_ids: vec![1, 2, 1] },
    ] => |r, len| if let Err(st) = requests::pg_osd_info(cluster(), &r) {
        check_refusal(&st, len);
    };
    create_pool: api::CreatePoolRequest = vec![pool_request("new"), pool_request("rbd")]
        => |r, len| propose(requests::create_pool(r), len);
    delete_pool: api::DeletePoolRequest = vec![api::DeletePoolRequest { name: "rbd".to_string() }]
        => |r, len| propose(requests::delete_pool(r), len);
    create_image: api::CreateImageRequest = vec![image_request("vm2", 1 << 20), image_request("vm", 512)]
        => |r, len| propose(requests::create_image(r), len);
    resize_image: api::ResizeImageRequest = vec![api::ResizeImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "vm".to_string(),
        size: 1 << 29,
        allow_shrink: false,
    }] => |r, len| propose(requests::resize_image(r), len);
    remove_image: api::RemoveImageRequest = vec![api::RemoveImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "vm".to_string(),
    }] => |r, len| propose(requests::remove_image(r), len);
    get_image_info: api::GetImageInfoRequest = get_image_seeds()
        => |r, len| match requests::image_info(cluster(), &r) {
            Ok(reply) => round_trips(&reply),
            Err(st) => check_refusal(&st, len),
        };
    leader_be_elected: api::LeaderBeElectedRequest = pg_report_seeds()
        => |r, len| propose(requests::leader_be_elected(&r), len);
    pg_member_change_finish: api::PgMemberChangeFinishRequest = finish_seeds()
        => |r, len| propose(requests::pg_member_change_finish(&r), len);
    set_flag: api::SetFlagRequest = vec![api::SetFlagRequest { flag: api::ClusterFlag::Noout as i32 }]
        => |r, len| match requests::flag(r.flag) {
            Ok(flag) => propose(command::SetFlag(flag), len),
            Err(st) => check_refusal(&st, len),
        };
    unset_flag: api::UnsetFlagRequest = vec![api::UnsetFlagRequest { flag: api::ClusterFlag::Noin as i32 }]
        => |r, len| match requests::flag(r.flag) {
            Ok(flag) => propose(command::UnsetFlag(flag), len),
            Err(st) => check_refusal(&st, len),
        };
    // A mute is checked (code, then the core's ttl and raised checks) and proposed.
    mute_health: api::MuteHealthRequest = vec![
        api::MuteHealthRequest { code: "OSD_DOWN".into(), ttl_ms: 3_600_000, sticky: false },
        api::MuteHealthRequest { code: "PG_DEGRADED".into(), ttl_ms: 0, sticky: true },
    ] => |r, len| match requests::mute_health(&r, 1_000) {
        Ok(command) => propose(command, len),
        Err(st) => {
            check_refusal(&st, len);
            assert_eq!(status::reason(&st).as_deref(), Some(super::reasons::INVALID_HEALTH_CHECK));
        }
    };
    unmute_health: api::UnmuteHealthRequest = vec![api::UnmuteHealthRequest { code: "OSD_DOWN".into() }]
        => |r, len| match requests::health_code(&r.code) {
            Ok(code) => propose(command::UnmuteHealth { code }, len),
            Err(st) => check_refusal(&st, len),
        };
    // A registration is checked whole (url, types, secrets, token); what passes is what the
    // delivery uses: an https url with a host and no credentials, secrets that sign.
    add_webhook: api::AddWebhookRequest = vec![
        api::AddWebhookRequest {
            url: "https://hooks.example.com/fastblock".into(),
            types: vec!["osd.".into(), "health.".into()],
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            bearer_token: "t0ken".into(),
            skip_reachability_check: true,
        },
        api::AddWebhookRequest { url: "http://10.0.0.1:8080/x".into(), ..Default::default() },
    ] => |r, len| match requests::add_webhook(&r, false) {
        Ok(checked) => {
            assert_eq!(checked.url.scheme(), "https");
            assert!(checked.url.host_str().is_some_and(|h| !h.is_empty()));
            assert!(checked.url.username().is_empty() && checked.url.password().is_none());
            assert!(checked.secrets.len() <= requests::MAX_WEBHOOK_SECRETS);
            for secret in &checked.secrets {
                assert!(secret.entry("1", 2, b"{}").starts_with("v1,"));
            }
        }
        Err(st) => check_refusal(&st, len),
    };
    // A replay's first id is checked against what the log keeps and has written.
    replay_webhook: api::ReplayWebhookRequest = vec![
        api::ReplayWebhookRequest { id: 1, from_id: 50 },
        api::ReplayWebhookRequest { id: 1, from_id: 5 },
    ] => |r, len| match requests::replay_from(r.from_id, Some(10), 100) {
        Ok(()) => assert!((10..100).contains(&r.from_id)),
        Err(st) => {
            check_refusal(&st, len);
            assert!(r.from_id < 10 || r.from_id >= 100);
        }
    };
    data_statistics: api::DataStatisticsRequest = statistics_seeds()
        => |r, len| serve_statistics(r, len);
    watch_cluster_map: api::WatchClusterMapRequest = watch_seeds()
        => |r, len| serve_watch(r, len);
}

/// The fixture itself is what the seeds assume.
#[test]
fn the_fixture_cluster_is_as_described() {
    let s = cluster();
    assert_eq!(s.osd_count(), OSDS as usize);
    assert!(s.osd(crate::cluster::OsdId(6)).is_some_and(|o| !o.is_up()));
    assert!(s.osd(crate::cluster::OsdId(5)).is_some_and(|o| !o.is_in()));
    assert_eq!(pg_members(s, 0).len(), 3);
    assert!(
        s.pool_by_name("rbd")
            .is_some_and(|p| s.image(p.id, "vm").is_some())
    );
}

#[test]
fn a_report_naming_one_pg_twice_is_refused() {
    let report = api::DataStatisticsRequest {
        osd_id: 1,
        pgs: [
            ("1.31".to_string(), api::PgIoCounters::default()),
            ("1.0x1f".to_string(), api::PgIoCounters::default()),
        ]
        .into_iter()
        .collect(),
    };
    let Err(st) = requests::statistics(cluster(), &report) else {
        panic!("accepted");
    };
    assert_eq!(st.code(), Code::InvalidArgument);
    assert_eq!(status::reason(&st).as_deref(), Some("DUPLICATE_PG_NAME"));
    assert!(
        st.message()
            .ends_with("pool 1 pg 31 is named twice in one report"),
        "{}",
        st.message()
    );
}
