//! The legacy transport against a scripted fake monitor: a TCP listener in the test that reads
//! frames (its own header parsing, not the crate's), records every request with the connection
//! it came on, and answers what the test's script says (or closes the connection).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, ConnError, ConnOptions, request_kind};
use super::*;
use crate::sim::{Fleet, FleetSpec, SimError, fake_uuid};

/// One request the fake monitor received.
#[derive(Debug, Clone)]
struct Seen {
    /// Connections are numbered from 0 in the order they were accepted.
    conn: usize,
    /// The OSD that booted on this connection, if one did (before this request).
    osd: Option<u32>,
    at: Instant,
    /// The whole frame as received: header and payload.
    frame: Vec<u8>,
    req: Req,
}

/// What one connection of the fake monitor has seen so far.
#[derive(Debug, Clone, Default)]
struct ConnCtx {
    conn: usize,
    osd: Option<u32>,
    /// GetClusterMap polls received on this connection, this one included.
    polls: usize,
    /// Boots received on this connection, this one included.
    boots: usize,
}

// One answer per request, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Reply(Resp),
    /// Close the connection without replying.
    Close,
}

type Script = Arc<dyn Fn(&ConnCtx, &Req) -> Answer + Send + Sync>;

struct Peer {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections the client closed (end of stream seen), by number.
    ended: Arc<Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    async fn start(script: Script) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(Vec::new()));
        let (s, e) = (seen.clone(), ended.clone());
        let task = tokio::spawn(async move {
            let mut n = 0;
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(serve(n, stream, script.clone(), s.clone(), e.clone()));
                n += 1;
            }
        });
        Peer {
            addr,
            seen,
            ended,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// Waits until `cond` holds on what was received.
    async fn until(&self, what: &str, cond: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen();
            if cond(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {:#?}",
                seen.iter()
                    .map(|s| (s.conn, s.osd, kind(&s.req)))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads one frame by hand: 8 bytes of little-endian length, then the payload.
async fn read_one(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.ok()?;
    let len = usize::try_from(u64::from_le_bytes(header)).ok()?;
    assert!(len < 1 << 20, "a frame of {len} bytes");
    let mut frame = header.to_vec();
    frame.resize(8 + len, 0);
    stream.read_exact(&mut frame[8..]).await.ok()?;
    Some(frame)
}

async fn serve(
    conn: usize,
    mut stream: tokio::net::TcpStream,
    script: Script,
    seen: Arc<Mutex<Vec<Seen>>>,
    ended: Arc<Mutex<Vec<usize>>>,
) {
    let mut ctx = ConnCtx {
        conn,
        ..ConnCtx::default()
    };
    loop {
        let Some(frame) = read_one(&mut stream).await else {
            ended.lock().push(conn);
            return;
        };
        let req = msg::Request::decode(&frame[8..])
            .expect("a msg.Request")
            .union
            .expect("a request kind");
        match &req {
            Req::GetClusterMapRequest(_) => ctx.polls += 1,
            Req::BootRequest(_) => ctx.boots += 1,
            _ => {}
        }
        seen.lock().push(Seen {
            conn,
            osd: ctx.osd,
            at: Instant::now(),
            frame,
            req: req.clone(),
        });
        match script(&ctx, &req) {
            Answer::Reply(r) => {
                if let (Req::BootRequest(b), Resp::BootResponse(r)) = (&req, &r)
                    && r.result == 0
                {
                    ctx.osd = u32::try_from(b.osd_id).ok();
                }
                let payload = msg::Response { union: Some(r) }.encode_to_vec();
                let mut out = (payload.len() as u64).to_le_bytes().to_vec();
                out.extend_from_slice(&payload);
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            Answer::Close => return,
        }
    }
}

fn kind(r: &Req) -> u32 {
    request_kind(r)
}

/// The id the fake monitor gives a fleet uuid: its OSD number + 1 (`fake_uuid` ends with it).
fn id_of(uuid: &str) -> i32 {
    i32::from_str_radix(&uuid[24..], 16).unwrap() + 1
}

fn cluster_map(
    version: i64,
    osds: &[(i32, bool)],
    pools: &[(i32, msg::GetPgMapErrorCode, i64, Vec<msg::PgInfo>)],
) -> Resp {
    let mut gpm = msg::GetPgMapResponse::default();
    for (id, code, v, pgs) in pools {
        gpm.errorcode.insert(*id, *code as i32);
        gpm.poolid_pgmapversion.insert(*id, *v);
        if *code == msg::GetPgMapErrorCode::PgMapGetOk {
            gpm.pgs.insert(*id, msg::PgInfos { pi: pgs.clone() });
            gpm.pools.insert(*id, format!("pool{id}"));
        }
    }
    Resp::GetClusterMapResponse(msg::GetClusterMapResponse {
        gom_response: Some(msg::GetOsdMapResponse {
            errorcode: msg::OsdMapErrorCode::Ok as i32,
            osdmapversion: version,
            osds: osds
                .iter()
                .map(|(id, up)| msg::OsdDynamicInfo {
                    osdid: *id,
                    isup: *up,
                    isin: true,
                    ..msg::OsdDynamicInfo::default()
                })
                .collect(),
        }),
        gpm_response: (!pools.is_empty()).then_some(gpm),
    })
}

fn pg(id: i32, version: i64, state: i32, members: &[i32], new: &[i32]) -> msg::PgInfo {
    msg::PgInfo {
        pgid: id,
        version,
        state,
        coreindex: 0,
        osdid: members.to_vec(),
        newcoreindex: u32::MAX,
        newosdid: new.to_vec(),
    }
}

/// A monitor that accepts everything; polls are answered by `map`.
fn script(map: impl Fn(&ConnCtx) -> Resp + Send + Sync + 'static) -> Script {
    Arc::new(move |ctx, req| {
        Answer::Reply(match req {
            Req::ApplyIdRequest(r) => Resp::ApplyIdResponse(msg::ApplyIdResponse {
                uuid: r.uuid.clone(),
                id: id_of(&r.uuid),
                errorcode: 0,
            }),
            Req::BootRequest(_) => Resp::BootResponse(msg::BootResponse { result: 0 }),
            Req::OsdStopRequest(_) => Resp::OsdStopResponse(msg::OsdStopResponse { ok: true }),
            Req::GetClusterMapRequest(_) => map(ctx),
            Req::LeaderBeElectedRequest(_) => {
                Resp::LeaderBeElectedResponse(msg::LeaderBeElectedResponse { ok: true })
            }
            Req::PgMemberChangeFinishRequest(_) => {
                Resp::PgMemberChangeFinishResponse(msg::PgMemberChangeFinishResponse { ok: true })
            }
            other => panic!("unexpected request {other:?}"),
        })
    })
}

/// Every OSD up, no pools.
fn all_up(n: i32) -> impl Fn(&ConnCtx) -> Resp + Send + Sync + 'static {
    move |_| {
        let osds: Vec<(i32, bool)> = (1..=n).map(|i| (i, true)).collect();
        cluster_map(1, &osds, &[])
    }
}

fn spec(osds: u32, every_ms: u64) -> FleetSpec {
    FleetSpec {
        osds,
        hosts: 2,
        cores: 2,
        prefix: "lt".to_string(),
        heartbeat_every: Duration::from_millis(every_ms),
        poll_every: Duration::from_millis(20),
        change_takes: Duration::ZERO,
        concurrency: 8,
        record_heartbeats: true,
        ..FleetSpec::default()
    }
}

fn options() -> ConnOptions {
    ConnOptions {
        connect_timeout: Duration::from_secs(1),
        reply_timeout: Duration::from_secs(2),
        ..ConnOptions::default()
    }
}

async fn start(peer: &Peer, spec: FleetSpec) -> Arc<Fleet> {
    Fleet::start_legacy(std::slice::from_ref(&peer.addr), options(), spec, |_, _| {})
        .await
        .expect("the fleet boots")
}

fn run(fleet: &Arc<Fleet>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(fleet.clone().run(stop)))
}

fn polls_of(seen: &[Seen], osd: u32) -> Vec<(Instant, msg::GetClusterMapRequest)> {
    seen.iter()
        .filter(|s| s.osd == Some(osd))
        .filter_map(|s| match &s.req {
            Req::GetClusterMapRequest(r) => Some((s.at, r.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn apply_id_then_boot_each_osd_on_a_connection_of_its_own() {
    let peer = Peer::start(script(all_up(3))).await;
    let fleet = start(&peer, spec(3, 1000)).await;
    let ids: Vec<u32> = fleet.osds().iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    let seen = peer.seen();

    // The deploy step: every ApplyID on one connection, which closes once the fleet is up.
    let applies: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s.req, Req::ApplyIdRequest(_)))
        .collect();
    assert_eq!(applies.len(), 3);
    let admin = applies[0].conn;
    assert!(applies.iter().all(|s| s.conn == admin));
    peer.until("the deploy connection closed", |_| {
        peer.ended.lock().contains(&admin)
    })
    .await;
    // ApplyID byte by byte: length 40 (LE), field 6 (LEN, 38 bytes), field 1 (LEN, 36 bytes).
    let uuid = fake_uuid("lt", 0);
    let first = applies
        .iter()
        .find(|s| matches!(&s.req, Req::ApplyIdRequest(r) if r.uuid == uuid))
        .unwrap();
    let mut want = vec![40, 0, 0, 0, 0, 0, 0, 0, 0x32, 38, 0x0a, 36];
    want.extend_from_slice(uuid.as_bytes());
    assert_eq!(first.frame, want);

    // Each OSD boots on a connection of its own, as its first request there.
    let boots: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s.req, Req::BootRequest(_)))
        .collect();
    assert_eq!(boots.len(), 3);
    let mut conns: Vec<usize> = boots.iter().map(|s| s.conn).collect();
    conns.sort_unstable();
    conns.dedup();
    assert_eq!(conns.len(), 3);
    assert!(!conns.contains(&admin));
    for b in &boots {
        assert_eq!(
            seen.iter().find(|s| s.conn == b.conn).unwrap().frame,
            b.frame
        );
    }
    let Req::BootRequest(boot) = &boots
        .iter()
        .find(|s| matches!(&s.req, Req::BootRequest(b) if b.osd_id == 2))
        .unwrap()
        .req
    else {
        unreachable!()
    };
    let want = msg::BootRequest {
        osd_id: 2,
        uuid: fake_uuid("lt", 1),
        size: 1 << 20,
        sharded_ports: [
            (
                0,
                msg::ShardCore {
                    coreid: 0,
                    port: 20_000,
                    raw_port: 40_000,
                },
            ),
            (
                1,
                msg::ShardCore {
                    coreid: 1,
                    port: 20_001,
                    raw_port: 40_001,
                },
            ),
        ]
        .into_iter()
        .collect(),
        address: "10.0.0.2".to_string(),
        host: "lt-host1".to_string(),
        core_num: 2,
        config: "# fake osd 2\nhost = lt-host1\n".to_string(),
    };
    assert_eq!(boot, &want);
    // The frame is the 8-byte little-endian length of exactly that payload.
    let b = boots
        .iter()
        .find(|s| s.req == Req::BootRequest(want.clone()))
        .unwrap();
    let payload = msg::Request {
        union: Some(Req::BootRequest(want)),
    }
    .encode_to_vec();
    assert_eq!(b.frame[..8], (payload.len() as u64).to_le_bytes());
    assert_eq!(b.frame.len(), 8 + payload.len());
}

#[tokio::test]
async fn a_non_zero_boot_result_is_an_error_with_its_meaning() {
    let inner = script(all_up(2));
    let peer = Peer::start(Arc::new(move |ctx, req| match req {
        Req::BootRequest(b) if b.osd_id == 2 => {
            Answer::Reply(Resp::BootResponse(msg::BootResponse {
                result: OSD_ERR_CORE_NUM,
            }))
        }
        _ => inner(ctx, req),
    }))
    .await;
    let err = Fleet::start_legacy(
        std::slice::from_ref(&peer.addr),
        options(),
        spec(2, 1000),
        |_, _| {},
    )
    .await
    .err()
    .expect("the boot of osd.2 fails");
    assert!(
        matches!(
            err,
            SimError::Legacy(LegacyError::Boot {
                osd: 2,
                result: -160
            })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("osd.2") && text.contains("-160 OSD_ERR_CORE_NUM"),
        "{text}"
    );

    // An ApplyID refused with an error code is one too.
    let peer = Peer::start(Arc::new(|_, req| match req {
        Req::ApplyIdRequest(r) => Answer::Reply(Resp::ApplyIdResponse(msg::ApplyIdResponse {
            uuid: r.uuid.clone(),
            id: -1,
            errorcode: msg::ApplyIdErrorCode::UuidAlreadyExists as i32,
        })),
        other => panic!("unexpected {other:?}"),
    }))
    .await;
    let err = Fleet::start_legacy(
        std::slice::from_ref(&peer.addr),
        options(),
        spec(1, 1000),
        |_, _| {},
    )
    .await
    .err()
    .expect("ApplyID fails");
    assert!(err.to_string().contains("UuidAlreadyExists (1)"), "{err}");
}

#[tokio::test]
async fn each_osd_polls_every_interval_with_version_minus_one_and_its_known_pools() {
    // Pool 1 at version 3 once; the same version afterwards.
    let peer = Peer::start(script(|ctx| {
        let code = if ctx.polls == 1 {
            msg::GetPgMapErrorCode::PgMapGetOk
        } else {
            msg::GetPgMapErrorCode::PgMapSameVersion
        };
        let pgs = vec![pg(0, 2, 2, &[1, 2], &[])];
        cluster_map(4, &[(1, true), (2, true)], &[(1, code, 3, pgs)])
    }))
    .await;
    let fleet = start(&peer, spec(2, 100)).await;
    let (stop, running) = run(&fleet);
    let seen = peer
        .until("six polls of each OSD", |s| {
            polls_of(s, 1).len() >= 6 && polls_of(s, 2).len() >= 6
        })
        .await;
    stop.cancel();
    running.await.unwrap();
    for osd in [1, 2] {
        let polls = polls_of(&seen, osd);
        for (i, (_, p)) in polls.iter().enumerate() {
            let gom = p.gom_request.as_ref().unwrap();
            assert_eq!((gom.osdid, gom.currentversion), (osd as i32, -1));
            let known = &p.gpm_request.as_ref().unwrap().pool_versions;
            if i == 0 {
                assert!(known.is_empty(), "the first poll knows no pool: {known:?}");
            } else {
                assert_eq!(known, &HashMap::from([(1, 3)]), "poll {i}");
            }
        }
        // Once per interval: on average the interval apart, never in a burst, no long gap.
        let gaps: Vec<Duration> = polls.windows(2).map(|w| w[1].0 - w[0].0).collect();
        let mean = (polls[polls.len() - 1].0 - polls[0].0) / (gaps.len() as u32);
        assert!(
            mean >= Duration::from_millis(90) && mean <= Duration::from_millis(300),
            "osd.{osd}: polls {mean:?} apart on average: {gaps:?}"
        );
        assert!(
            gaps.iter()
                .all(|g| *g >= Duration::from_millis(30) && *g <= Duration::from_millis(1000)),
            "osd.{osd}: polls apart by {gaps:?}"
        );
    }
    assert_eq!(
        fleet.maps_for_tests().versions(),
        [(1, 3)].into_iter().collect()
    );
    assert!(fleet.stats.heartbeats.load(Ordering::Relaxed) >= 12);
    assert_eq!(fleet.stats.heartbeat_errors.load(Ordering::Relaxed), 0);
    assert_eq!(fleet.stats.errors.load(Ordering::Relaxed), 0);
    // A poll is a heartbeat record with the versions it left the OSD with.
    let records = fleet.heartbeat_records();
    let last = records.iter().rev().find(|r| r.osd == 1).unwrap();
    let held = last.result.as_ref().unwrap();
    assert_eq!(held.osdmap_epoch, 4);
    assert_eq!(held.pool_epochs, HashMap::from([(1, 3)]));
    // The fleet stopped: every OSD connection is closed.
    let boots: Vec<usize> = seen
        .iter()
        .filter(|s| matches!(s.req, Req::BootRequest(_)))
        .map(|s| s.conn)
        .collect();
    peer.until("every OSD connection closed", |_| {
        let ended = peer.ended.lock();
        boots.iter().all(|c| ended.contains(c))
    })
    .await;
}

#[tokio::test]
async fn leader_reports_and_finished_changes_go_on_the_reporters_connection() {
    const CREATING: i32 = 1;
    const REMAPPED: i32 = 16 | 2;
    let peer = Peer::start(script(|_| {
        let pgs = vec![
            pg(0, 1, CREATING, &[2, 1, 3], &[]),
            pg(1, 5, REMAPPED, &[1, 2, 3], &[3, 1, 4]),
        ];
        let osds: Vec<(i32, bool)> = (1..=4).map(|i| (i, true)).collect();
        cluster_map(2, &osds, &[(7, msg::GetPgMapErrorCode::PgMapGetOk, 9, pgs)])
    }))
    .await;
    let fleet = start(&peer, spec(4, 100)).await;
    let (stop, running) = run(&fleet);
    let seen = peer
        .until("a leader report and a finished change", |s| {
            s.iter()
                .any(|x| matches!(x.req, Req::LeaderBeElectedRequest(_)))
                && s.iter()
                    .any(|x| matches!(x.req, Req::PgMemberChangeFinishRequest(_)))
        })
        .await;
    // More looks at the same maps: the leader report is not sent again for the same version.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    running.await.unwrap();
    let seen_after = peer.seen();
    let leaders: Vec<&Seen> = seen_after
        .iter()
        .filter(|s| matches!(s.req, Req::LeaderBeElectedRequest(_)))
        .collect();
    assert_eq!(leaders.len(), 1, "one report for the creating PG");
    assert_eq!(
        leaders[0].osd,
        Some(2),
        "sent on the leader's own connection"
    );
    assert_eq!(
        leaders[0].req,
        Req::LeaderBeElectedRequest(msg::LeaderBeElectedRequest {
            leader_id: 2,
            pool_id: 7,
            pg_id: 0,
            osd_list: vec![2, 1, 3],
            new_osd_list: vec![],
        })
    );
    let finish = seen
        .iter()
        .find(|s| matches!(s.req, Req::PgMemberChangeFinishRequest(_)))
        .unwrap();
    assert_eq!(finish.osd, Some(3), "sent by the new group's first member");
    assert_eq!(
        finish.req,
        Req::PgMemberChangeFinishRequest(msg::PgMemberChangeFinishRequest {
            result: 0,
            pool_id: 7,
            pg_id: 1,
            osd_list: vec![3, 1, 4],
        })
    );
    assert!(fleet.stats.leader_reports.load(Ordering::Relaxed) == 1);
    assert!(fleet.stats.changes_finished.load(Ordering::Relaxed) >= 1);
    assert_eq!(fleet.stats.errors.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn pipelined_replies_are_matched_in_request_order() {
    // A monitor that reads three requests before it answers any, then answers all three in
    // one write, in order.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let frame = read_one(&mut stream).await.unwrap();
            let req = msg::Request::decode(&frame[8..]).unwrap().union.unwrap();
            kinds.push(kind(&req));
        }
        let replies = [
            Resp::LeaderBeElectedResponse(msg::LeaderBeElectedResponse { ok: true }),
            cluster_map(7, &[(1, true)], &[]),
            Resp::PgMemberChangeFinishResponse(msg::PgMemberChangeFinishResponse { ok: false }),
        ];
        let mut out = Vec::new();
        for r in replies {
            let payload = msg::Response { union: Some(r) }.encode_to_vec();
            out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            out.extend_from_slice(&payload);
        }
        stream.write_all(&out).await.unwrap();
        let _ = read_one(&mut stream).await;
        kinds
    });
    let conn = Conn::connect(std::slice::from_ref(&addr), options())
        .await
        .unwrap();
    let (a, b, c) = tokio::join!(
        conn.call(Req::LeaderBeElectedRequest(
            msg::LeaderBeElectedRequest::default()
        )),
        conn.call(Req::GetClusterMapRequest(
            msg::GetClusterMapRequest::default()
        )),
        conn.call(Req::PgMemberChangeFinishRequest(
            msg::PgMemberChangeFinishRequest::default()
        )),
    );
    assert_eq!(
        a.unwrap(),
        Resp::LeaderBeElectedResponse(msg::LeaderBeElectedResponse { ok: true })
    );
    match b.unwrap() {
        Resp::GetClusterMapResponse(r) => {
            assert_eq!(r.gom_response.unwrap().osdmapversion, 7)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.unwrap(),
        Resp::PgMemberChangeFinishResponse(msg::PgMemberChangeFinishResponse { ok: false })
    );
    assert!(!conn.is_closed());
    drop(conn);
    assert_eq!(server.await.unwrap(), vec![15, 10, 16]);
}

#[tokio::test]
async fn a_reply_out_of_order_or_a_close_ends_the_connection() {
    // A Boot answered with an ApplyID reply: the order is lost, the connection given up.
    let peer = Peer::start(Arc::new(|ctx, _req| {
        if ctx.boots == 1 {
            Answer::Reply(Resp::ApplyIdResponse(msg::ApplyIdResponse::default()))
        } else {
            Answer::Close
        }
    }))
    .await;
    let conn = Conn::connect(std::slice::from_ref(&peer.addr), options())
        .await
        .unwrap();
    let err = conn
        .call(Req::BootRequest(msg::BootRequest::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConnError::WrongKind {
                expected: 1,
                got: 6,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(conn.is_closed());
    let again = conn
        .call(Req::GetClusterMapRequest(
            msg::GetClusterMapRequest::default(),
        ))
        .await
        .unwrap_err();
    assert_eq!(again, err, "later calls fail with the same error");

    // The monitor closes without replying: the waiting call fails as Closed.
    let conn = Conn::connect(std::slice::from_ref(&peer.addr), options())
        .await
        .unwrap();
    let err = conn
        .call(Req::GetClusterMapRequest(
            msg::GetClusterMapRequest::default(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnError::Closed { .. }), "{err:?}");

    // No monitor of the list accepts: one error naming them.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let Err(err) = Conn::connect(std::slice::from_ref(&dead), options()).await else {
        panic!("connected to a closed port");
    };
    assert!(matches!(err, ConnError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&dead), "{err}");
}

#[tokio::test]
async fn a_reply_that_does_not_come_ends_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        while read_one(&mut stream).await.is_some() {}
    });
    let conn = Conn::connect(
        std::slice::from_ref(&addr),
        ConnOptions {
            reply_timeout: Duration::from_millis(100),
            ..options()
        },
    )
    .await
    .unwrap();
    let err = conn
        .call(Req::GetClusterMapRequest(
            msg::GetClusterMapRequest::default(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnError::Timeout { .. }), "{err:?}");
    assert!(conn.is_closed());
}

/// Whether `s` is a request of osd.1's own: its poll or its boot.
fn of_osd1(s: &Seen) -> bool {
    match &s.req {
        Req::GetClusterMapRequest(r) => r.gom_request.as_ref().is_some_and(|g| g.osdid == 1),
        Req::BootRequest(b) => b.osd_id == 1,
        _ => false,
    }
}

#[tokio::test]
async fn after_the_monitor_closes_the_osd_reconnects_and_boots_again_if_not_up() {
    // The monitor closes osd.1's first connection at its second poll. On the next connection
    // (reached past a dead first monitor of the list) the osdmap has osd.1 down until it
    // boots again.
    struct State {
        first: Option<usize>,
        booted_again: bool,
    }
    let state = Arc::new(Mutex::new(State {
        first: None,
        booted_again: false,
    }));
    let st = state.clone();
    let inner = script(all_up(2));
    let peer = Peer::start(Arc::new(move |ctx, req| {
        let mut st = st.lock();
        match req {
            Req::BootRequest(b) if b.osd_id == 1 => match st.first {
                None => st.first = Some(ctx.conn),
                Some(_) => st.booted_again = true,
            },
            Req::GetClusterMapRequest(r) if r.gom_request.as_ref().unwrap().osdid == 1 => {
                let on_first = st.first == Some(ctx.conn);
                if on_first && ctx.polls == 2 {
                    return Answer::Close;
                }
                let up = on_first || st.booted_again;
                return Answer::Reply(cluster_map(3, &[(1, up), (2, true)], &[]));
            }
            _ => {}
        }
        inner(ctx, req)
    }))
    .await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let monitors = vec![dead, format!("http://{}", peer.addr)];
    let fleet = Fleet::start_legacy(&monitors, options(), spec(2, 100), |_, _| {})
        .await
        .unwrap();
    let (stop, running) = run(&fleet);
    let first = state.lock().first.unwrap();
    let seen = peer
        .until("osd.1 booted again and polled on its new connection", |s| {
            s.iter().any(|x| {
                x.conn != first && x.osd == Some(1) && matches!(x.req, Req::GetClusterMapRequest(_))
            })
        })
        .await;
    stop.cancel();
    running.await.unwrap();
    // On the new connection: a poll (the monitor says down), Boot, then polls again.
    let new = seen
        .iter()
        .find(|x| x.conn != first && of_osd1(x))
        .unwrap()
        .conn;
    let kinds: Vec<u32> = seen
        .iter()
        .filter(|x| x.conn == new)
        .map(|x| kind(&x.req))
        .take(3)
        .collect();
    assert_eq!(kinds, vec![10, 1, 10]);
    assert_eq!(fleet.stats.reconnects.load(Ordering::Relaxed), 1);
    assert_eq!(fleet.stats.reboots.load(Ordering::Relaxed), 1);
    assert!(
        fleet.stats.heartbeat_errors.load(Ordering::Relaxed) >= 1,
        "the lost poll"
    );
    // osd.2 kept its one connection.
    let osd2: Vec<usize> = seen
        .iter()
        .filter(|x| x.osd == Some(2))
        .map(|x| x.conn)
        .collect();
    assert!(!osd2.is_empty() && osd2.iter().all(|c| *c == osd2[0]));
}

#[tokio::test]
async fn osdmap_going_back_is_an_error_and_pools_left_out_are_deleted() {
    let peer = Peer::start(script(|ctx| {
        let ok = msg::GetPgMapErrorCode::PgMapGetOk;
        let same = msg::GetPgMapErrorCode::PgMapSameVersion;
        match ctx.polls {
            1 => cluster_map(
                5,
                &[(1, true)],
                &[
                    (1, ok, 3, vec![pg(0, 1, 2, &[1], &[])]),
                    (2, ok, 1, vec![pg(0, 1, 2, &[1], &[])]),
                ],
            ),
            // The osdmap goes back; pool 2 is not in the reply any more.
            2 => cluster_map(4, &[(1, true)], &[(1, same, 3, vec![])]),
            _ => cluster_map(6, &[(1, true)], &[(1, same, 3, vec![])]),
        }
    }))
    .await;
    let fleet = start(&peer, spec(1, 80)).await;
    let (stop, running) = run(&fleet);
    let seen = peer
        .until("four polls", |s| polls_of(s, 1).len() >= 4)
        .await;
    stop.cancel();
    running.await.unwrap();
    let polls = polls_of(&seen, 1);
    let known = |i: usize| polls[i].1.gpm_request.clone().unwrap().pool_versions;
    assert_eq!(known(1), HashMap::from([(1, 3), (2, 1)]));
    assert_eq!(known(2), HashMap::from([(1, 3)]), "pool 2 deleted");
    assert_eq!(known(3), HashMap::from([(1, 3)]));
    assert_eq!(
        fleet.stats.errors.load(Ordering::Relaxed),
        1,
        "the osdmap went back"
    );
    assert_eq!(
        fleet.maps_for_tests().versions(),
        [(1, 3)].into_iter().collect()
    );
}

#[tokio::test]
async fn a_killed_osd_closes_its_connection_and_revives_past_a_run_still_up() {
    // The monitor still has the killed run up: the first boot of the new run gets -157.
    let conflicts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = conflicts.clone();
    let inner = script(all_up(2));
    let peer = Peer::start(Arc::new(move |ctx, req| match req {
        Req::BootRequest(b) if b.osd_id == 1 && ctx.conn > 2 && ctx.boots == 1 => {
            c.fetch_add(1, Ordering::Relaxed);
            Answer::Reply(Resp::BootResponse(msg::BootResponse {
                result: OSD_ERR_ID_CONFLICT,
            }))
        }
        _ => inner(ctx, req),
    }))
    .await;
    let fleet = start(&peer, spec(2, 100)).await;
    let (stop, running) = run(&fleet);
    let first = peer
        .seen()
        .iter()
        .find(|s| matches!(&s.req, Req::BootRequest(b) if b.osd_id == 1))
        .unwrap()
        .conn;
    assert!(fleet.kill(1));
    peer.until("osd.1's connection closed", |_| {
        peer.ended.lock().contains(&first)
    })
    .await;
    fleet.revive(1).await.expect("revived");
    assert_eq!(conflicts.load(Ordering::Relaxed), 1);
    let seen = peer
        .until("osd.1 polls on its new connection", |s| {
            s.iter().any(|x| {
                x.osd == Some(1) && x.conn != first && matches!(x.req, Req::GetClusterMapRequest(_))
            })
        })
        .await;
    stop.cancel();
    running.await.unwrap();
    let new = seen
        .iter()
        .filter(|x| x.conn > first && matches!(&x.req, Req::BootRequest(b) if b.osd_id == 1))
        .map(|x| x.conn)
        .next()
        .unwrap();
    let kinds: Vec<u32> = seen
        .iter()
        .filter(|x| x.conn == new)
        .map(|x| kind(&x.req))
        .take(3)
        .collect();
    assert_eq!(kinds, vec![1, 2, 1], "Boot (-157), OsdStop, Boot");
}

#[test]
fn request_kinds_are_the_oneof_numbers_on_the_wire() {
    for r in [
        Req::BootRequest(msg::BootRequest::default()),
        Req::OsdStopRequest(msg::OsdStopRequest::default()),
        Req::ApplyIdRequest(msg::ApplyIdRequest::default()),
        Req::GetClusterMapRequest(msg::GetClusterMapRequest::default()),
        Req::LeaderBeElectedRequest(msg::LeaderBeElectedRequest::default()),
        Req::PgMemberChangeFinishRequest(msg::PgMemberChangeFinishRequest::default()),
        Req::PgOsdInfoRequest(msg::GetPgOsdInfoRequest::default()),
    ] {
        let k = kind(&r);
        let bytes = msg::Request { union: Some(r) }.encode_to_vec();
        // The envelope holds one length-delimited field: key = number << 3 | 2.
        assert_eq!(u32::from(bytes[0]) >> 3, k);
        assert_eq!(bytes[0] & 7, 2);
    }
}
