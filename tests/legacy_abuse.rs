//! Bad input on the framed protocol, against a real monitor: every frame that is not a request
//! closes its connection with no reply (§6), every bad request gets its documented answer
//! (§7), and none of it changes the cluster's state (a fingerprint of everything gRPC can read,
//! before and after), stops the monitor from serving other legacy connections and gRPC, or
//! crashes it. A thousand abusive connections do not starve a well-behaved client.
//!
//! The monitor marks no silent OSD down during these tests (`osd_down_after = "1h"`), so the
//! state changes only if a bad input changes it.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::api::{Fingerprint, fingerprint};
use common::legacy::framed::{LegacyClient, frame};
use common::legacy::messages::{
    BootRequest, ClusterMapReply, GetOsdMapRequest, LeaderBeElectedRequest, OsdMapReply, PgInfo,
    PgMemberChangeFinishRequest, Request, Response, boot_result, kind,
};
use common::legacy::protobuf::Encoder;
use common::legacy::{self, call, ok, osd_ip, osd_uuid};
use common::{ClusterOptions, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(60);
/// How long a closed connection may take to be seen closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(20);

const INVALID_REFUSED: &str =
    "fastblock_legacy_requests_total{kind=\"invalid\",protocol=\"framed\",result=\"refused\"}";
const FRAMED_OPEN: &str = "fastblock_connections_open{protocol=\"framed\"}";

async fn boot(c: &mut LegacyClient, r: BootRequest) -> i32 {
    match call(c, Request::Boot(r)).await {
        Response::Boot { result } => result,
        other => panic!("{other:?}"),
    }
}

async fn poll(c: &mut LegacyClient, osdid: i32) -> ClusterMapReply {
    legacy::poll(c, osdid, BTreeMap::new()).await
}

/// One legacy OSD: its id, address and the connection it booted on.
struct Osd {
    id: i32,
    ip: IpAddr,
    conn: LegacyClient,
}

/// A cluster to abuse: three OSDs booted on their own connections (hosts h1..h3, 2 cores,
/// RDMA ports 7000 and 7001), a pool "rbd" of 8 PGs (still creating: no PG leader reported),
/// an image "rbd/img", and one OSD id applied for but never booted (`pending`).
struct Setup {
    c: TestCluster,
    admin: LegacyClient,
    osds: Vec<Osd>,
    pending: i32,
    pgs: Vec<PgInfo>,
}

impl Setup {
    async fn new() -> Setup {
        let mut c = TestCluster::new(
            1,
            ClusterOptions {
                extra_config: "osd_down_after = \"1h\"".to_string(),
                ..ClusterOptions::default()
            },
        );
        c.start_all();
        c.wait_leader(&[0], LONG);
        let mut admin = LegacyClient::connect(&c.monitors[0].grpc).await.unwrap();
        let mut osds = Vec::new();
        for i in 1..=4 {
            let id = match call(&mut admin, Request::ApplyId { uuid: osd_uuid(i) }).await {
                Response::ApplyId(r) => r.id,
                other => panic!("{other:?}"),
            };
            assert_eq!(id, i as i32);
            if i == 4 {
                break;
            }
            let ip = osd_ip(&c.ip, i);
            let mut conn = LegacyClient::connect_from(&c.monitors[0].grpc, ip)
                .await
                .unwrap();
            let r = BootRequest::like_cpp_osd(
                id,
                &osd_uuid(i),
                &ip.to_string(),
                &format!("h{i}"),
                2,
                7000,
                0,
            );
            assert_eq!(boot(&mut conn, r).await, boot_result::OK);
            osds.push(Osd { id, ip, conn });
        }
        let created = call(
            &mut admin,
            Request::CreatePool {
                name: "rbd".into(),
                pgsize: 3,
                pgcount: 8,
                failuredomain: "host".into(),
                root: "defaultroot".into(),
            },
        )
        .await;
        assert!(
            matches!(created, Response::CreatePool(r) if r.errorcode == 0 && r.poolid == 1),
            "{created:?}"
        );
        let image = call(
            &mut admin,
            Request::CreateImage(common::legacy::messages::ImageInfo {
                poolname: "rbd".into(),
                imagename: "img".into(),
                size: 1 << 30,
                object_size: 4 << 20,
            }),
        )
        .await;
        assert!(
            matches!(&image, Response::Image { reply, .. } if reply.errorcode == 0),
            "{image:?}"
        );
        let pgs = poll(&mut admin, -1).await.pgmap.unwrap().pgs[&1].clone();
        assert_eq!(pgs.len(), 8);
        Setup {
            c,
            admin,
            osds,
            pending: 4,
            pgs,
        }
    }

    fn addr(&self) -> &str {
        &self.c.monitors[0].grpc
    }

    async fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.c.client(0), &[("rbd", "img")]).await
    }

    /// A counter's value; 0 while it is not reported (a labelled series appears when first
    /// counted).
    fn counter(&self, series: &str) -> f64 {
        self.c.metric(0, series).unwrap_or(0.0)
    }

    fn metric(&self, series: &str) -> f64 {
        self.c
            .metric(0, series)
            .unwrap_or_else(|| panic!("{series} is not reported"))
    }

    /// The monitor is alive and serves a new legacy connection and gRPC; the state is
    /// `before`.
    async fn assert_serving_unchanged(&self, before: &Fingerprint) {
        let pid = self.c.monitors[0].pid().expect("monitor running");
        assert!(common::process_alive(pid), "the monitor process died");
        let mut fresh = LegacyClient::connect(self.addr()).await.unwrap();
        let m = poll(&mut fresh, -1).await;
        let om = m.osdmap.expect("osdmap");
        assert_eq!(om.osds.len(), 4);
        assert_eq!(m.pgmap.expect("pgmap").pgs[&1].len(), 8);
        assert_eq!(&self.fingerprint().await, before, "the state changed");
    }

    /// The osdmap as a legacy client reads it.
    async fn osdmap(&mut self) -> OsdMapReply {
        poll(&mut self.admin, -1).await.osdmap.expect("osdmap")
    }
}

/// Opens a connection, writes `bytes` (then closes the write side when `shutdown`), and waits
/// for the monitor to close it: what it sent before closing, or None if it did not close
/// within [`CLOSE_WITHIN`].
async fn send_and_wait_close(addr: &str, bytes: &[u8], shutdown: bool) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    if shutdown {
        s.shutdown().await.expect("shutdown");
    }
    let mut got = Vec::new();
    let reading = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(CLOSE_WITHIN, reading).await.ok()?;
    Some(got)
}

/// A payload holding one field `number` as an empty length-delimited value.
fn field_only(number: u32) -> Vec<u8> {
    let mut e = Encoder::new();
    e.bytes_field(number, &[]);
    e.finish()
}

/// The frames that are not requests, each with what it is: (name, bytes, close the write side
/// after sending).
fn bad_frames() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut truncated = 100u64.to_le_bytes().to_vec();
    truncated.extend_from_slice(&[0x52; 10]);
    let mut unknown_varint = Encoder::new();
    unknown_varint.uint64(99, 5);
    vec![
        ("length 2^40", (1u64 << 40).to_le_bytes().to_vec(), false),
        ("length u64::MAX", u64::MAX.to_le_bytes().to_vec(), false),
        // Over the default 1 MiB limit by one byte: refused from the header alone.
        (
            "length 1 MiB + 1",
            ((1u64 << 20) + 1).to_le_bytes().to_vec(),
            false,
        ),
        ("header cut at 5 bytes", vec![6, 0, 0, 0, 0], true),
        ("100-byte frame cut after 10", truncated, true),
        ("garbage: an over-long varint", frame(&[0xff; 16]), false),
        (
            "garbage: a field longer than the payload",
            frame(&[0x52, 0x7f, 0x00]),
            false,
        ),
        ("garbage: wire type 7", frame(&[0x0f, 0x00]), false),
        ("garbage: member 1 as a varint", frame(&[0x08, 0x01]), false),
        (
            "garbage: member 10 with a bad inner message",
            frame(&[0x52, 0x02, 0x0a, 0x05]),
            false,
        ),
        ("empty payload (length 0)", frame(&[]), false),
        (
            "only field 99 (unknown oneof member)",
            frame(&field_only(99)),
            false,
        ),
        ("only field 25", frame(&field_only(25)), false),
        (
            "only field 99 as a varint",
            frame(&unknown_varint.finish()),
            false,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_are_not_requests_close_their_connection_only_with_no_reply() {
    let mut s = Setup::new().await;
    let before = s.fingerprint().await;
    let invalid_before = s.counter(INVALID_REFUSED);
    let frames = bad_frames();
    for (what, bytes, shutdown) in &frames {
        let got = send_and_wait_close(s.addr(), bytes, *shutdown).await;
        assert_eq!(got, Some(Vec::new()), "{what}: closed with no reply");
        // The OSDs' connections are untouched: they are still served.
        let first = s.osds[0].id;
        assert_eq!(
            poll(&mut s.osds[0].conn, first)
                .await
                .osdmap
                .unwrap()
                .osds
                .len(),
            4
        );
    }
    // A valid request then a bad frame on one connection: the reply, then the close.
    let mut mixed = frame(&Request::GetClusterStatus.encode());
    mixed.extend_from_slice(&frame(&[0xff; 16]));
    let got = send_and_wait_close(s.addr(), &mixed, false)
        .await
        .expect("closed");
    let len = u64::from_le_bytes(got[..8].try_into().unwrap()) as usize;
    assert_eq!(got.len(), 8 + len, "exactly one reply: {got:?}");
    assert!(matches!(
        Response::decode(&got[8..]),
        Ok(Response::GetClusterStatus(_))
    ));

    // Each bad frame is counted, except the header cut short: a connection that closes before
    // 8 bytes is not told apart as legacy at all. The mixed connection makes up for it.
    let invalid_after = s.metric(INVALID_REFUSED);
    assert!(
        invalid_after >= invalid_before + frames.len() as f64,
        "{INVALID_REFUSED}: {invalid_before} → {invalid_after}"
    );
    // The admin and three OSD connections are open (the count may include more).
    assert!(s.metric(FRAMED_OPEN) >= 4.0);
    s.assert_serving_unchanged(&before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_documented_answers_and_change_nothing() {
    let mut s = Setup::new().await;
    let before = s.fingerprint().await;
    let addr = s.addr().to_string();

    // A BootResponse {result: −157} sent as a request: kind 1 reads as a BootRequest with
    // osd_id −157, an id never applied for.
    let mut inner = Encoder::new();
    inner.int32(1, boot_result::ID_CONFLICT);
    let mut envelope = Encoder::new();
    envelope.bytes_field(kind::BOOT, &inner.finish());
    s.admin.send_raw(&frame(&envelope.finish())).await.unwrap();
    assert_eq!(
        s.admin.recv().await.unwrap(),
        Response::Boot {
            result: boot_result::NOT_APPLY
        }
    );

    // Negative and zero ids everywhere.
    for id in [-1, -5, 0, i32::MIN] {
        assert!(
            !ok(&mut s.admin, Request::OsdOut { osdid: id }).await,
            "out {id}"
        );
        assert!(
            !ok(&mut s.admin, Request::OsdIn { osdid: id }).await,
            "in {id}"
        );
        assert!(
            !ok(&mut s.admin, Request::OsdStop { id }).await,
            "stop {id}"
        );
        let r = BootRequest::like_cpp_osd(id, &osd_uuid(1), "10.0.0.1", "h1", 2, 7000, 0);
        assert_eq!(
            boot(&mut s.admin, r).await,
            boot_result::NOT_APPLY,
            "boot {id}"
        );
        match call(&mut s.admin, Request::OsdConfig { osdid: id }).await {
            Response::OsdConfig { config } => assert_eq!(config, ""),
            other => panic!("{other:?}"),
        }
    }
    // A poll naming a negative id is still answered, in full.
    match call(
        &mut s.admin,
        Request::GetOsdMap(GetOsdMapRequest {
            osdid: -7,
            currentversion: -1,
        }),
    )
    .await
    {
        Response::GetOsdMap(m) => {
            assert_eq!(m.errorcode, 0);
            assert_eq!(m.osds.len(), 4);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(poll(&mut s.admin, -7).await.osdmap.unwrap().osds.len(), 4);

    // PG reports: a negative leader, a leader this connection does not speak for, from an
    // OSD's own connection and from the admin one; negative members. All false.
    let pg = s.pgs[0].clone();
    let holder = pg.osdid[0];
    let other = s
        .osds
        .iter()
        .position(|o| o.id != holder)
        .expect("another OSD");
    let elected = |leader_id: i32, osd_list: Vec<i32>| {
        Request::LeaderBeElected(LeaderBeElectedRequest {
            leader_id,
            pool_id: 1,
            pg_id: pg.pgid as u64,
            osd_list,
            new_osd_list: Vec::new(),
        })
    };
    let o = &mut s.osds[other].conn;
    assert!(!ok(o, elected(-1, pg.osdid.clone())).await);
    assert!(!ok(o, elected(holder, pg.osdid.clone())).await);
    assert!(!ok(&mut s.admin, elected(holder, pg.osdid.clone())).await);
    let holder_conn = s.osds.iter().position(|o| o.id == holder).unwrap();
    let mut negative = pg.osdid.clone();
    negative[1] = -negative[1];
    assert!(!ok(&mut s.osds[holder_conn].conn, elected(holder, negative)).await);
    // A member-change report from a connection that speaks for no OSD of the PG.
    let finish = Request::PgMemberChangeFinish(PgMemberChangeFinishRequest {
        result: 0,
        pool_id: 1,
        pg_id: pg.pgid as u64,
        osd_list: pg.osdid.clone(),
    });
    assert!(!ok(&mut s.admin, finish).await);
    // The PG is still creating.
    let now = poll(&mut s.admin, -1).await.pgmap.unwrap().pgs[&1].clone();
    let same = now.iter().find(|p| p.pgid == pg.pgid).unwrap();
    assert_eq!(same, &pg);

    // Boot refusals. OSD 1 is up on its own connection: a Boot of it from elsewhere, and from
    // a new connection of its own address (another run), is an ID conflict; the OSD keeps its
    // address and ports.
    let up = s.osds[0].id;
    let up_ip = s.osds[0].ip;
    let elsewhere = osd_ip(&s.c.ip, 40);
    for from in [elsewhere, up_ip] {
        let mut conn = LegacyClient::connect_from(&addr, from).await.unwrap();
        let r =
            BootRequest::like_cpp_osd(up, &osd_uuid(1), &elsewhere.to_string(), "h9", 2, 8000, 0);
        assert_eq!(
            boot(&mut conn, r).await,
            boot_result::ID_CONFLICT,
            "from {from}"
        );
    }
    let om = s.osdmap().await;
    let o = om.osds.iter().find(|o| o.osdid == up).unwrap();
    assert_eq!(o.address, up_ip.to_string());
    assert!(o.isup);
    assert_eq!(
        o.sharded_ports.values().map(|p| p.port).collect::<Vec<_>>(),
        [7000, 7001]
    );

    // The pending OSD (applied, never booted), from its own address: a bad address, then a
    // core count other than the cluster's (2); an id never applied for.
    let pending = s.pending;
    let ip = osd_ip(&s.c.ip, 4);
    let mut conn = LegacyClient::connect_from(&addr, ip).await.unwrap();
    for address in ["not-an-ip", "", "10.0.0.256", "host.example"] {
        let r = BootRequest::like_cpp_osd(pending, &osd_uuid(4), address, "h4", 2, 7000, 0);
        assert_eq!(
            boot(&mut conn, r).await,
            boot_result::ADDRESS_INVALID,
            "{address:?}"
        );
    }
    for cores in [1, 4] {
        let r =
            BootRequest::like_cpp_osd(pending, &osd_uuid(4), &ip.to_string(), "h4", cores, 7000, 0);
        assert_eq!(
            boot(&mut conn, r).await,
            boot_result::CORE_NUM,
            "{cores} cores"
        );
    }
    let r = BootRequest::like_cpp_osd(99, &osd_uuid(99), &ip.to_string(), "h4", 2, 7000, 0);
    assert_eq!(boot(&mut conn, r).await, boot_result::NOT_APPLY);
    let om = s.osdmap().await;
    let o = om.osds.iter().find(|o| o.osdid == pending).unwrap();
    assert!(!o.isup && !o.isin, "{o:?}");

    s.assert_serving_unchanged(&before).await;
    // The connections that were refused something are still served.
    assert!(matches!(
        call(&mut conn, Request::GetClusterStatus).await,
        Response::GetClusterStatus(_)
    ));
    assert!(matches!(
        call(&mut s.admin, Request::ListPools).await,
        Response::ListPools(p) if p.len() == 1
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_checks_run_in_the_documented_order() {
    let s = Setup::new().await;
    let before = s.fingerprint().await;
    let ip = osd_ip(&s.c.ip, 4);
    let mut conn = LegacyClient::connect_from(s.addr(), ip).await.unwrap();
    // §7.2: 1. the address, 2. the ports, 3. the core count, 4. an unknown id, 5. already up.
    let r = BootRequest::like_cpp_osd(s.pending, &osd_uuid(4), "not-an-ip", "h4", 4, 7000, 0);
    assert_eq!(boot(&mut conn, r).await, boot_result::ADDRESS_INVALID);
    let r = BootRequest::like_cpp_osd(99, &osd_uuid(99), &ip.to_string(), "h4", 4, 7000, 0);
    assert_eq!(boot(&mut conn, r).await, boot_result::CORE_NUM);
    s.assert_serving_unchanged(&before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_abusive_connections_do_not_starve_a_polling_client() {
    const ABUSERS: usize = 1000;
    const POLLS: usize = 30;
    let mut s = Setup::new().await;
    let before = s.fingerprint().await;
    let invalid_before = s.counter(INVALID_REFUSED);
    let addr = s.addr().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicU64::new(0));
    let replied = Arc::new(AtomicU64::new(0));
    let frames: Arc<Vec<Vec<u8>>> = Arc::new(
        bad_frames()
            .into_iter()
            .filter(|(_, _, shutdown)| !shutdown)
            .map(|(_, bytes, _)| bytes)
            .collect(),
    );
    let mut abusers = Vec::new();
    for i in 0..ABUSERS {
        let (stop, closed, replied, frames, addr) = (
            stop.clone(),
            closed.clone(),
            replied.clone(),
            frames.clone(),
            addr.clone(),
        );
        abusers.push(tokio::spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut conn) = TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                n += 1;
                if conn.write_all(&frames[n % frames.len()]).await.is_err() {
                    continue;
                }
                let mut buf = [0u8; 64];
                match tokio::time::timeout(CLOSE_WITHIN, conn.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        replied.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    // The well-behaved client: an OSD polling on its own connection, every 200 ms, until the
    // flood has had a few rounds. Each poll is answered in full (the client gives up on a
    // reply after 30 s).
    let first = s.osds[0].id;
    let started = std::time::Instant::now();
    let mut answered = 0;
    let mut open_seen = 0.0f64;
    let during = loop {
        let m = poll(&mut s.osds[0].conn, first).await;
        assert_eq!(m.osdmap.expect("osdmap").osds.len(), 4);
        assert_eq!(m.pgmap.expect("pgmap").pgs[&1].len(), 8);
        answered += 1;
        if answered == POLLS / 2 {
            open_seen = s.metric(FRAMED_OPEN);
        }
        let closed_so_far = closed.load(Ordering::Relaxed);
        if answered >= POLLS && closed_so_far >= 2 * ABUSERS as u64 {
            break closed_so_far;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "after {answered} polls, only {closed_so_far} abusive connections were closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for a in abusers {
        a.await.unwrap();
    }
    assert_eq!(
        replied.load(Ordering::Relaxed),
        0,
        "a bad frame got a reply"
    );
    // The framed connections are counted as such (the client's own at least).
    assert!(open_seen >= 1.0, "{FRAMED_OPEN} = {open_seen}");
    let invalid_after = s.metric(INVALID_REFUSED);
    assert!(
        invalid_after >= invalid_before + during as f64,
        "{INVALID_REFUSED}: {invalid_before} → {invalid_after} after {during} bad frames"
    );
    s.assert_serving_unchanged(&before).await;
}
