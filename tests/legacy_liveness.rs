//! Liveness on the framed protocol (LEGACY-PROTOCOL.md §8 and the module comment of
//! src/legacy/translate.rs), against a real monitor with `osd_down_after = "3s"`: a C++ OSD's
//! heartbeat is its GetClusterMap poll naming its own id, and only a connection that speaks for
//! the OSD (the one that booted it, or one from its registered address) keeps it alive. A poll
//! naming the OSD from anywhere else is answered but keeps nothing alive (SPEC §12: no client
//! can keep a dead OSD alive); a down OSD's own connection polling again brings the same run
//! back up without a Boot.
//!
//! Every wait is for a condition, with a generous deadline; the only durations asserted are
//! "stayed up for a while", observed continuously.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::legacy::framed::LegacyClient;
use common::legacy::messages::{ClusterMapReply, GetOsdMapRequest, Request, Response};
use common::legacy::{self, call, osd_ip};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;

const LONG: Duration = Duration::from_secs(60);
/// `osd_down_after` of these tests.
const DOWN_AFTER: Duration = Duration::from_secs(3);
/// How often a live OSD polls.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long an OSD kept alive is watched: more than three grace periods.
const WATCH: Duration = Duration::from_secs(12);
const _: () = assert!(WATCH.as_secs() > 3 * DOWN_AFTER.as_secs());

async fn poll(c: &mut LegacyClient, osdid: i32) -> ClusterMapReply {
    legacy::poll(c, osdid, BTreeMap::new()).await
}

/// A monitor that marks an OSD down after 3 s without a heartbeat and out 5 s later (with no
/// floor on the OSDs left in).
fn start() -> TestCluster {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"3s\"\nosd_out_after = \"5s\"\nosd_min_in_ratio = 0.0"
                .to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    c
}

/// Applies for `n` ids and boots each OSD on its own connection from its own address (host
/// `h<i>`); the connections, in id order (OSD i is ids[i - 1] = i).
async fn boot_legacy_osds(c: &TestCluster, n: u32) -> Vec<LegacyClient> {
    let mut admin = LegacyClient::connect(&c.monitors[0].grpc).await.unwrap();
    let mut conns = Vec::new();
    for i in 1..=n {
        let (id, conn) = legacy::apply_and_boot(&mut admin, &c.monitors[0].grpc, &c.ip, i, 2).await;
        assert_eq!(id, i as i32);
        conns.push(conn);
    }
    conns
}

/// A connection polling with `osdid` every [`POLL_EVERY`] until stopped; gives the connection
/// back. Every poll must be answered.
struct Poller {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<LegacyClient>,
}

impl Poller {
    fn start(mut conn: LegacyClient, osdid: i32) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                let m = poll(&mut conn, osdid).await;
                assert!(
                    m.osdmap.is_some(),
                    "poll of {osdid} answered without an osdmap"
                );
                tokio::time::sleep(POLL_EVERY).await;
            }
            conn
        });
        Poller { stop, task }
    }

    async fn stop(self) -> LegacyClient {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("poller")
    }
}

/// What gRPC says of OSD `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    up: bool,
    is_in: bool,
    last_change: u64,
    boot_instance: u64,
}

async fn seen(grpc: &MonitorClient, id: i32) -> Seen {
    let map = grpc
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .expect("osdmap")
        .osdmap
        .expect("full osdmap");
    let o = map
        .osds
        .iter()
        .find(|o| o.id == id as u32)
        .unwrap_or_else(|| panic!("no osd {id}"));
    Seen {
        up: o.up,
        is_in: o.r#in,
        last_change: o.last_change,
        boot_instance: o.boot_instance,
    }
}

/// Waits up to [`LONG`] for `cond` on what gRPC says of OSD `id`.
async fn wait_for(grpc: &MonitorClient, id: i32, what: &str, cond: impl Fn(&Seen) -> bool) -> Seen {
    let deadline = Instant::now() + LONG;
    loop {
        let s = seen(grpc, id).await;
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "osd {id} not {what} after {LONG:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Watches OSDs `ids` for [`WATCH`]: each stays up, with no change at all (a down and up
/// between two looks would change `last_change`).
async fn assert_stay_up(grpc: &MonitorClient, ids: &[i32]) {
    let mut first = Vec::new();
    for &id in ids {
        let s = seen(grpc, id).await;
        assert!(s.up, "osd {id} is not up: {s:?}");
        first.push(s);
    }
    let started = Instant::now();
    while started.elapsed() < WATCH {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (&id, was) in ids.iter().zip(&first) {
            let now = seen(grpc, id).await;
            assert_eq!(
                (now.up, now.last_change, now.boot_instance),
                (true, was.last_change, was.boot_instance),
                "osd {id} changed {:?} after it was seen up",
                started.elapsed()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osds_polling_on_their_own_connections_stay_up_and_a_silent_one_goes_down() {
    let c = start();
    let grpc = c.client(0);
    let mut conns = boot_legacy_osds(&c, 4).await;
    // OSD 4 booted and then said nothing more.
    let silent_conn = conns.pop().unwrap();
    let pollers: Vec<Poller> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| Poller::start(conn, i as i32 + 1))
        .collect();

    let booted = seen(&grpc, 1).await;
    let down = wait_for(&grpc, 4, "down", |s| !s.up).await;
    assert_ne!(
        down.boot_instance, 0,
        "marked down by the detector, the run kept"
    );
    // The pollers are up all along, for more than three grace periods.
    assert_stay_up(&grpc, &[1, 2, 3]).await;
    // And OSD 4 is still down: nothing else kept it alive.
    assert!(!seen(&grpc, 4).await.up);
    // A legacy client reads the same.
    let mut admin = LegacyClient::connect(&c.monitors[0].grpc).await.unwrap();
    let m = poll(&mut admin, -1).await.osdmap.unwrap();
    let mut ups: Vec<(i32, bool)> = m.osds.iter().map(|o| (o.osdid, o.isup)).collect();
    ups.sort();
    assert_eq!(ups, [(1, true), (2, true), (3, true), (4, false)]);
    for p in pollers {
        p.stop().await;
    }
    // OSD 1 was never marked down: the same run, up since its boot.
    let now = seen(&grpc, 1).await;
    assert_eq!(
        (now.up, now.boot_instance, now.last_change),
        (true, booted.boot_instance, booted.last_change)
    );
    drop(silent_conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_naming_an_osd_from_another_address_do_not_keep_it_up_but_its_own_do() {
    let c = start();
    let grpc = c.client(0);
    let mut conns = boot_legacy_osds(&c, 4).await;
    let mut own = conns.pop().unwrap();
    let pollers: Vec<Poller> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| Poller::start(conn, i as i32 + 1))
        .collect();
    let booted = seen(&grpc, 4).await;
    assert!(booted.up && booted.boot_instance != 0, "{booted:?}");

    // OSD 4's own connection goes quiet; another connection, from an address that is not
    // OSD 4's, polls naming it (and sends Heartbeat and GetOsdMap for it) every second.
    let mut impostor = LegacyClient::connect_from(&c.monitors[0].grpc, osd_ip(&c.ip, 50))
        .await
        .unwrap();
    let deadline = Instant::now() + LONG;
    let down = loop {
        let m = poll(&mut impostor, 4).await;
        assert!(m.osdmap.is_some());
        match call(&mut impostor, Request::Heartbeat { id: 4 }).await {
            Response::Ok { .. } => {}
            other => panic!("{other:?}"),
        }
        match call(
            &mut impostor,
            Request::GetOsdMap(GetOsdMapRequest {
                osdid: 4,
                currentversion: -1,
            }),
        )
        .await
        {
            Response::GetOsdMap(m) => assert_eq!(m.errorcode, 0),
            other => panic!("{other:?}"),
        }
        let s = seen(&grpc, 4).await;
        if !s.up {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "osd 4 kept up by another address's polls: {s:?}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    };
    // The failure detector marked it down: the run is kept, so a heartbeat of it may revive it.
    assert_eq!(down.boot_instance, booted.boot_instance);
    // Down long enough, it is marked out too (osd_out_after = 5 s), the impostor still polling.
    let deadline = Instant::now() + LONG;
    loop {
        poll(&mut impostor, 4).await;
        let s = seen(&grpc, 4).await;
        assert!(!s.up, "the impostor's polls brought osd 4 up: {s:?}");
        if !s.is_in {
            break;
        }
        assert!(Instant::now() < deadline, "osd 4 not out: {s:?}");
        tokio::time::sleep(POLL_EVERY).await;
    }

    // Its own connection polls again: the same run is marked up, without a Boot.
    let m = poll(&mut own, 4).await;
    assert!(m.osdmap.is_some());
    let up = wait_for(&grpc, 4, "up again", |s| s.up).await;
    assert_eq!(up.boot_instance, booted.boot_instance, "the same run");
    // Out was the detector's doing, so coming up brings it back in (docs/api.md: in after an
    // automatic out; an operator's out stays). The Go monitor left it out (§8).
    assert!(up.is_in, "{up:?}");
    // And its own polls keep it up.
    let own = Poller::start(own, 4);
    assert_stay_up(&grpc, &[4]).await;
    own.stop().await;
    for p in pollers {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_from_the_osds_registered_address_keeps_it_alive() {
    let c = start();
    let grpc = c.client(0);
    let mut conns = boot_legacy_osds(&c, 4).await;
    let booted_on = conns.pop().unwrap();
    let pollers: Vec<Poller> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| Poller::start(conn, i as i32 + 1))
        .collect();
    let booted = seen(&grpc, 4).await;

    // The connection OSD 4 booted on closes; the OSD reconnects from its address (as after a
    // monitor failover) and polls, without booting again.
    drop(booted_on);
    let reconnected = LegacyClient::connect_from(&c.monitors[0].grpc, osd_ip(&c.ip, 4))
        .await
        .unwrap();
    let poller = Poller::start(reconnected, 4);
    assert_stay_up(&grpc, &[4]).await;
    assert_eq!(seen(&grpc, 4).await.boot_instance, booted.boot_instance);

    // It is the polls that keep it up: silent, it goes down; polling again, it comes back.
    let mut reconnected = poller.stop().await;
    let down = wait_for(&grpc, 4, "down", |s| !s.up).await;
    assert_eq!(down.boot_instance, booted.boot_instance);
    poll(&mut reconnected, 4).await;
    let up = wait_for(&grpc, 4, "up again", |s| s.up).await;
    assert_eq!(up.boot_instance, booted.boot_instance, "the same run");
    for p in pollers {
        p.stop().await;
    }
}
