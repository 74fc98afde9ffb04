//! The fake fleet over the legacy framed protocol against a real monitor: `fbclient
//! -op=fakestartcluster -protocol=legacy` boots its OSDs with ApplyID and Boot on the
//! monitor's port, keeps them up with its 3 s-style GetClusterMap polls, and plays the OSD side
//! of the PG protocol with LeaderBeElected and PgMemberChangeFinish; a pool created over gRPC
//! becomes active, a killed OSD goes down and out and its PGs move; a stopped fleet's OSDs are
//! marked down. And the fleet comes back by itself when the monitor restarts under it.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::spawned::Spawned;
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::sim::{Fleet, FleetSpec, legacy};
use tokio_util::sync::CancellationToken;

const FBCLIENT: &str = env!("CARGO_BIN_EXE_fbclient");
const LONG: Duration = Duration::from_secs(90);
const ACTIVE: u32 = api::PgStateBit::Active as u32;

fn start_monitor() -> TestCluster {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            // Every OSD may go down at once (the quit at the end).
            extra_config: "osd_down_after = \"2s\"\nosd_out_after = \"3s\"\nosd_min_up_ratio = 0"
                .to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    c
}

async fn osdmap(m: &MonitorClient) -> Vec<api::OsdInfo> {
    let map = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .expect("osdmap");
    map.osdmap.map(|m| m.osds.clone()).unwrap_or_default()
}

async fn pgs(m: &MonitorClient) -> Vec<api::PgInfo> {
    let map = m
        .get_pg_map(api::GetPgMapRequest::default())
        .await
        .expect("pgmap");
    map.pools
        .into_iter()
        .flat_map(|p| p.into_fields().pgs)
        .collect()
}

/// Polls `cond` until it holds.
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + LONG;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_pool(m: &MonitorClient, pg_count: u32) {
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".to_string(),
        pg_size: 3,
        pg_count,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .expect("create pool");
}

fn all_active(pgs: &[api::PgInfo], n: usize) -> bool {
    pgs.len() == n && pgs.iter().all(|g| g.state == ACTIVE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fakestartcluster_over_legacy_activates_pgs_and_heals_after_a_kill() {
    let c = start_monitor();
    let mon = c.monitors[0].grpc.clone();
    let m = c.client(0);
    let mut fleet = Spawned::start(
        FBCLIENT,
        &format!(
            "-op=fakestartcluster -protocol=legacy -osdcount=9 -hostcount=3 -heartbeat=500ms \
         -interval=1s -mon={mon}"
        ),
    );
    let line = fleet.wait_line("the fleet started", |l| l.contains("started 9 fake OSDs"));
    assert!(
        line.contains("on 3 hosts") && line.contains("legacy protocol"),
        "{line}"
    );

    // Booted over the legacy protocol: up, in, on their hosts, with the C++ OSD's size.
    until("9 OSDs up and in", || async {
        let osds = osdmap(&m).await;
        osds.len() == 9 && osds.iter().all(|o| o.up && o.r#in)
    })
    .await;
    let osds = osdmap(&m).await;
    let mut hosts: Vec<&str> = osds.iter().map(|o| o.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(hosts, ["fake-host0", "fake-host1", "fake-host2"]);

    // A pool: its PGs become active through the fleet's LeaderBeElected reports.
    create_pool(&m, 32).await;
    until("every PG active", || async {
        all_active(&pgs(&m).await, 32)
    })
    .await;
    fleet.wait_line("an all-active summary", |l| {
        l.contains("osds 9: 9 up, 9 in | pgs 32: 32 active, 0 undersize")
    });

    // The polls keep the OSDs up: a few down grace periods later, all still up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        osdmap(&m).await.iter().all(|o| o.up),
        "polls are heartbeats"
    );

    // Kill one: its polls stop and its connection closes; down, out, its PGs move (the
    // fleet's PgMemberChangeFinish), all active again without it.
    let victim = pgs(&m).await[0].members[0];
    fleet.send(&format!("kill {victim}"));
    fleet.wait_line("the kill", |l| l.ends_with(&format!("killed osd.{victim}")));
    until("the victim down and out", || async {
        osdmap(&m)
            .await
            .iter()
            .any(|o| o.id == victim && !o.up && !o.r#in)
    })
    .await;
    until("every PG active without it", || async {
        let pgs = pgs(&m).await;
        all_active(&pgs, 32)
            && pgs
                .iter()
                .all(|g| !g.members.contains(&victim) && !g.new_members.contains(&victim))
    })
    .await;

    // Revive it: it boots again on a new connection and polls.
    fleet.send(&format!("revive {victim}"));
    fleet.wait_line("the revival", |l| {
        l.ends_with(&format!("revived osd.{victim}"))
    });
    until("the victim up again", || async {
        osdmap(&m).await.iter().any(|o| o.id == victim && o.up)
    })
    .await;

    // Stop the fleet: its OSDs fall silent and are marked down.
    fleet.send("quit");
    let (code, lines) = fleet.wait_exit();
    assert_eq!(code, 0, "{}", lines.join("\n"));
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.contains("stopped: ") && last.contains(" 0 errors"),
        "{last}"
    );
    until("every OSD down", || async {
        osdmap(&m).await.iter().all(|o| !o.up)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_fleet_reconnects_when_the_monitor_restarts_under_it() {
    let mut c = start_monitor();
    let mon = c.monitors[0].grpc.clone();
    let m = Arc::new(c.client(0));
    let spec = FleetSpec {
        osds: 6,
        hosts: 3,
        prefix: "restart".to_string(),
        heartbeat_every: Duration::from_millis(500),
        poll_every: Duration::from_millis(100),
        change_takes: Duration::from_millis(300),
        ..FleetSpec::default()
    };
    let fleet = Fleet::start_legacy(&[mon], legacy::ConnOptions::default(), spec, |_, _| {})
        .await
        .expect("the fleet boots over the legacy protocol");
    let stop = CancellationToken::new();
    let running = tokio::spawn(fleet.clone().run(stop.clone()));
    create_pool(&m, 16).await;
    until("every PG active", || async {
        all_active(&pgs(&m).await, 16)
    })
    .await;

    // The monitor goes away and comes back: every connection is lost, then made again.
    c.kill9(0);
    c.start(0);
    c.wait_leader(&[0], LONG);
    until("every OSD connected again", || async {
        fleet.stats.reconnects.load(Ordering::Relaxed) >= 6
    })
    .await;
    until("every OSD up and every PG active", || async {
        let osds = osdmap(&m).await;
        osds.len() == 6 && osds.iter().all(|o| o.up) && all_active(&pgs(&m).await, 16)
    })
    .await;
    // Up because they poll, not because nothing noticed: stop one and it goes down.
    let victim = fleet.osds()[0].id;
    fleet.kill(victim);
    until("the killed OSD down", || async {
        osdmap(&m).await.iter().any(|o| o.id == victim && !o.up)
    })
    .await;
    stop.cancel();
    running.await.unwrap();
    assert_eq!(fleet.stats.errors.load(Ordering::Relaxed), 0);
}
