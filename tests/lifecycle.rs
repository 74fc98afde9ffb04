//! The PG lifecycle end to end, with real monitors and a fleet of fake OSDs playing the OSD
//! side: create → active; an OSD dies → undersize within the grace → out after the interval →
//! remapped → finished → active; it comes back → rebalanced onto it (deferred by norebalance);
//! and the same remap finished by the next leader when the leader is killed in the middle; and a
//! whole host marked out on a cluster large enough that its remap spans many transactions.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::proto::wire::PoolPgMapFields;
use fastblock_monitor::sim::{Fleet, FleetSpec};
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(90);
const ACTIVE: u32 = api::PgStateBit::Active as u32;
const UNDERSIZE: u32 = api::PgStateBit::Undersize as u32;

fn timings() -> String {
    "osd_down_after = \"2s\"\nosd_out_after = \"3s\"".to_string()
}

fn fleet_spec(prefix: &str, change_takes: Duration) -> FleetSpec {
    FleetSpec {
        osds: 12,
        hosts: 4,
        prefix: prefix.to_string(),
        heartbeat_every: Duration::from_millis(500),
        poll_every: Duration::from_millis(100),
        change_takes,
        ..FleetSpec::default()
    }
}

async fn pool(m: &MonitorClient) -> PoolPgMapFields {
    m.get_pg_map(api::GetPgMapRequest::default())
        .await
        .unwrap()
        .pools
        .remove(0)
        .into_fields()
}

async fn osd(m: &MonitorClient, id: u32) -> api::OsdInfo {
    let map = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .unwrap();
    map.osdmap
        .as_ref()
        .unwrap()
        .osds
        .iter()
        .find(|o| o.id == id)
        .unwrap()
        .clone()
}

/// Polls `cond` on the pool until it holds.
async fn until_pool(m: &MonitorClient, what: &str, cond: impl Fn(&PoolPgMapFields) -> bool) {
    let deadline = Instant::now() + LONG;
    loop {
        let p = pool(m).await;
        if cond(&p) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            p.pgs
                .iter()
                .map(|g| (g.id, &g.members, &g.new_members, g.state))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_active(p: &PoolPgMapFields) -> bool {
    !p.pgs.is_empty()
        && p.pgs
            .iter()
            .all(|g| g.state == ACTIVE && g.new_members.is_empty())
}

async fn create_pool(m: &MonitorClient) {
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".to_string(),
        pg_size: 3,
        pg_count: 64,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_osd_dies_its_pgs_move_and_come_back_when_it_returns() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: timings(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.cluster_client());
    let fleet = Fleet::start(
        m.clone(),
        fleet_spec("life", Duration::from_millis(300)),
        |_, _| {},
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(fleet.clone().run(stop.clone()));
    create_pool(&m).await;
    until_pool(&m, "every PG active", all_active).await;

    // One OSD dies: its PGs degrade, then it is marked down and out and its PGs move.
    let victim = fleet.osds()[0].id;
    let held: Vec<u32> = pool(&m)
        .await
        .pgs
        .iter()
        .filter(|g| g.members.contains(&victim))
        .map(|g| g.id)
        .collect();
    assert!(!held.is_empty());
    let killed_at = Instant::now();
    fleet.kill(victim);
    until_pool(&m, "its PGs undersize", |p| {
        held.iter().all(|id| {
            let g = &p.pgs[*id as usize];
            g.state & UNDERSIZE != 0 || !g.members.contains(&victim)
        })
    })
    .await;
    eprintln!("undersize after {:?}", killed_at.elapsed());
    until_pool(&m, "its PGs remapped away and active again", |p| {
        all_active(p) && p.pgs.iter().all(|g| !g.members.contains(&victim))
    })
    .await;
    let o = osd(&m, victim).await;
    assert!(!o.up && !o.r#in, "{o:?}");
    // Only the PGs it held moved, each by exactly one member.
    let after = pool(&m).await;
    assert!(after.pgs.iter().all(|g| g.members.len() == 3));

    // It comes back while norebalance is set: up and in, but nothing moves onto it.
    m.set_flag(api::SetFlagRequest {
        flag: api::ClusterFlag::Norebalance as i32,
    })
    .await
    .unwrap();
    fleet.revive(victim).await.unwrap();
    let deadline = Instant::now() + LONG;
    while !(osd(&m, victim).await.up && osd(&m, victim).await.r#in) {
        assert!(Instant::now() < deadline, "never back up and in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = pool(&m).await;
    assert!(
        p.pgs
            .iter()
            .all(|g| !g.members.contains(&victim) && !g.new_members.contains(&victim)),
        "norebalance defers the rebalance"
    );
    // Clearing the flag replays it: PGs move back onto the returned OSD.
    m.unset_flag(api::UnsetFlagRequest {
        flag: api::ClusterFlag::Norebalance as i32,
    })
    .await
    .unwrap();
    until_pool(&m, "PGs rebalanced onto the returned OSD", |p| {
        all_active(p) && p.pgs.iter().filter(|g| g.members.contains(&victim)).count() >= 8
    })
    .await;
    stop.cancel();
    let _ = running.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remap_in_flight_is_finished_by_the_next_leader() {
    let mut c = TestCluster::new(
        3,
        ClusterOptions {
            extra_config: timings(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let m = Arc::new(c.cluster_client());
    // Membership changes take 4 s: room to kill the leader in the middle.
    let fleet = Fleet::start(
        m.clone(),
        fleet_spec("fail", Duration::from_secs(4)),
        |_, _| {},
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(fleet.clone().run(stop.clone()));
    create_pool(&m).await;
    until_pool(&m, "every PG active", all_active).await;

    let victim = fleet.osds()[0].id;
    fleet.kill(victim);
    until_pool(&m, "PGs remapped", |p| {
        p.pgs.iter().any(|g| !g.new_members.is_empty())
    })
    .await;
    c.signal(leader, Signal::SIGKILL);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.wait_leader(&others, LONG);
    until_pool(&m, "the remaps finished under the new leader", |p| {
        all_active(p) && p.pgs.iter().all(|g| !g.members.contains(&victim))
    })
    .await;
    assert!(
        fleet
            .stats
            .changes_finished
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    stop.cancel();
    let _ = running.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_host_marked_out_is_remapped_under_the_default_limits() {
    // 96 OSDs on 12 hosts and a 4,096-PG pool: the host holds ~1,024 replicas, so the PGs to
    // refresh span many PG chunks. With etcd's stock limits (128 ops, 1 MiB per transaction:
    // no txn keys in the config) every batch must be cut to fit, or nothing is remapped.
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: timings(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.cluster_client());
    let spec = FleetSpec {
        osds: 96,
        hosts: 12,
        change_takes: Duration::from_millis(50),
        ..fleet_spec("hostout", Duration::ZERO)
    };
    let fleet = Fleet::start(m.clone(), spec, |_, _| {}).await.unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(fleet.clone().run(stop.clone()));
    m.create_pool(api::CreatePoolRequest {
        name: "big".to_string(),
        pg_size: 3,
        pg_count: 4096,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .unwrap();
    until_pool(&m, "every PG active", all_active).await;

    let host = fleet.osds()[0].host.clone();
    let gone: Vec<u32> = fleet
        .osds()
        .iter()
        .filter(|o| o.host == host)
        .map(|o| o.id)
        .collect();
    assert_eq!(gone.len(), 8);
    let held = pool(&m)
        .await
        .pgs
        .iter()
        .filter(|g| g.members.iter().any(|id| gone.contains(id)))
        .count();
    assert!(
        held > 512,
        "more PGs to remap than one refresh batch: {held}"
    );
    for id in &gone {
        m.osd_out(api::OsdOutRequest { osd_id: *id }).await.unwrap();
    }
    until_pool(&m, "the host's PGs remapped away and active", |p| {
        all_active(p)
            && p.pgs
                .iter()
                .all(|g| g.members.len() == 3 && !g.members.iter().any(|id| gone.contains(id)))
    })
    .await;
    let status = m
        .get_cluster_status(api::GetClusterStatusRequest::default())
        .await
        .unwrap();
    assert!(
        status.checks.iter().all(|c| c.code != "TXN_TOO_LARGE"),
        "{:?}",
        status.checks
    );
    stop.cancel();
    let _ = running.await;
}
