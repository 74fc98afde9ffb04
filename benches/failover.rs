//! Failover benchmark: time from kill -9 (crash) or SIGTERM (graceful) of the leading monitor
//! until another monitor serves as leader, over several rounds, on a 3-monitor cluster with
//! embedded etcd on loopback. Runs twice in the same process: with the raft leadership left
//! where etcd put it (baseline) and with `etcd_move_raft_leader` (the default).
//!
//! `make bench` runs it; `FB_BENCH_ROUNDS` sets the rounds per kind (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster, wait_until};
use nix::sys::signal::Signal;

const TTL: u64 = 3;
const LONG: Duration = Duration::from_secs(120);

struct Round {
    took: Duration,
    raft_leader_colocated: bool,
}

fn main() {
    let rounds: usize = std::env::var("FB_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "failover benchmark: 3 monitors, embedded etcd, lease TTL {TTL}s, {rounds} rounds per kind"
    );
    let mut rows = Vec::new();
    for move_raft in [false, true] {
        let label = if move_raft {
            "etcd_move_raft_leader = true (default)"
        } else {
            "etcd_move_raft_leader = false (baseline)"
        };
        let mut c = TestCluster::new(
            3,
            ClusterOptions {
                lease_ttl_secs: TTL,
                extra_config: format!("etcd_move_raft_leader = {move_raft}"),
                ..ClusterOptions::default()
            },
        );
        c.start_all();
        c.wait_leader(&[0, 1, 2], LONG);
        let crash: Vec<Round> = (0..rounds)
            .map(|_| runtime.block_on(round(&mut c, Signal::SIGKILL)))
            .collect();
        let graceful: Vec<Round> = (0..rounds)
            .map(|_| runtime.block_on(round(&mut c, Signal::SIGTERM)))
            .collect();
        rows.push((label, "crash (kill -9)", crash));
        rows.push((label, "graceful (SIGTERM)", graceful));
    }
    println!();
    println!(
        "| configuration | stop | median | min | max | rounds with raft leader on the killed host |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, kind, r) in &rows {
        let mut ms: Vec<f64> = r.iter().map(|x| x.took.as_secs_f64() * 1000.0).collect();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let colocated = r.iter().filter(|x| x.raft_leader_colocated).count();
        println!(
            "| {label} | {kind} | {:.0} ms | {:.0} ms | {:.0} ms | {colocated}/{} |",
            ms[ms.len() / 2],
            ms[0],
            ms[ms.len() - 1],
            r.len()
        );
    }
    println!("\nlease TTL: {} ms", TTL * 1000);
}

/// Stops the leader with `signal`, times the takeover, then brings the monitor back.
async fn round(c: &mut TestCluster, signal: Signal) -> Round {
    let all = [0, 1, 2];
    let leader = c.wait_leader(&all, LONG);
    wait_until(LONG, "every standby ready", || {
        all.iter()
            .all(|&i| i == leader || c.readyz(i).is_some_and(|v| v["ready"] == true))
    });
    // Let the leader settle into its term (keep-alives, raft placement check).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let raft_leader_colocated = raft_leader_is(c, leader).await;
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    c.signal(leader, signal);
    let started = Instant::now();
    let mut took = None;
    while took.is_none() {
        if others.iter().any(|&i| c.is_serving_leader(i)) {
            took = Some(started.elapsed());
        }
        assert!(started.elapsed() < LONG, "no new leader");
        std::thread::sleep(Duration::from_millis(5));
    }
    c.wait_exit(leader, LONG);
    c.start(leader);
    wait_until(LONG, "the restarted monitor to be ready", || {
        c.readyz(leader).is_some_and(|v| v["ready"] == true)
    });
    Round {
        took: took.unwrap(),
        raft_leader_colocated,
    }
}

/// Whether monitor `i`'s etcd member leads the raft group.
async fn raft_leader_is(c: &TestCluster, i: usize) -> bool {
    let url = c.monitors[i].etcd_client_url.clone();
    let mut client = etcd_client::Client::connect([url], None).await.unwrap();
    let s = client.status().await.unwrap();
    s.header().map(|h| h.member_id()) == Some(s.leader())
}
