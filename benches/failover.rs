//! Failover benchmark: time from kill -9 (crash) or SIGTERM (graceful) of the leading monitor
//! until another monitor serves as leader, over several rounds, on a 3-monitor cluster with
//! embedded etcd on loopback. Runs twice in the same process: with the raft leadership left
//! where etcd put it (baseline) and with `etcd_move_raft_leader` (the default).
//!
//! Then crash failover with a state to load: 100, 3,000 and 10,000 OSD records, with
//! `etcd_server` listing the monitor's own member only and listing every member; the time from
//! the kill -9 of the leading monitor (its etcd member dies with it) until a leader-only call
//! succeeds on the new leader.
//!
//! `make bench` runs it; `FB_BENCH_ROUNDS` sets the rounds per kind (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster, wait_until};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;
use futures::stream::{self, StreamExt};
use nix::sys::signal::Signal;

const TTL: u64 = 3;
const LONG: Duration = Duration::from_secs(120);
/// OSD records in the state the new leader loads, in the order the rounds run.
const RECORD_COUNTS: [u32; 3] = [100, 3_000, 10_000];
/// Log lines of the new leader that tell a load went wrong.
const LOAD_TROUBLE: [(&str, &str); 3] = [
    ("etcd endpoint unhealthy", "endpoints found unhealthy"),
    ("reading a page of the state failed", "page re-reads"),
    ("cannot load cluster state", "failed loads"),
];

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

    println!();
    println!(
        "crash failover with a state to load: kill -9 of the leading monitor (and its etcd \
         member) until a leader-only call (GetClusterStatus) succeeds on the new leader, \
         {rounds} rounds per row"
    );
    let mut rows = Vec::new();
    for list_all_members in [false, true] {
        rows.extend(runtime.block_on(records_rows(list_all_members, rounds)));
    }
    println!();
    println!(
        "| etcd_server | OSD records | median | min | max | rounds with raft leader on the killed host | {} |",
        LOAD_TROUBLE.map(|(_, column)| column).join(" | ")
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let mut ms: Vec<f64> = row.took.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {}/{} | {} |",
            row.etcd_server,
            row.records,
            ms[ms.len() / 2],
            ms[0],
            ms[ms.len() - 1],
            row.raft_leader_colocated,
            row.took.len(),
            row.trouble.map(|n| n.to_string()).join(" | ")
        );
    }
    println!(
        "\ngoal: crash failover <= TTL + 1 s = {} ms",
        TTL * 1000 + 1000
    );
}

/// The rounds at every record count of one `etcd_server` configuration.
struct RecordsRow {
    etcd_server: &'static str,
    records: u32,
    took: Vec<Duration>,
    /// Rounds in which the killed monitor's etcd member was etcd's raft leader.
    raft_leader_colocated: usize,
    /// Occurrences of each [`LOAD_TROUBLE`] line in the new leaders' logs, over the rounds.
    trouble: [usize; LOAD_TROUBLE.len()],
}

async fn records_rows(list_all_members: bool, rounds: usize) -> Vec<RecordsRow> {
    let etcd_server = if list_all_members {
        "every member"
    } else {
        "own member only"
    };
    let mut c = TestCluster::new(
        3,
        ClusterOptions {
            lease_ttl_secs: TTL,
            list_all_members,
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0, 1, 2], LONG);
    let mut rows = Vec::new();
    let mut created = 0;
    for records in RECORD_COUNTS {
        let client = c.cluster_client();
        create_osd_records(&client, created, records).await;
        created = records;
        let mut row = RecordsRow {
            etcd_server,
            records,
            took: Vec::new(),
            raft_leader_colocated: 0,
            trouble: [0; LOAD_TROUBLE.len()],
        };
        for _ in 0..rounds {
            let crash = crash_until_served(&mut c, records).await;
            let log = c.log(crash.new_leader);
            let during = log.get(crash.log_before..).unwrap_or_default();
            for (n, (line, _)) in row.trouble.iter_mut().zip(LOAD_TROUBLE) {
                *n += during.matches(line).count();
            }
            // The evidence behind the counts, for the reader of the output.
            for l in during
                .lines()
                .filter(|l| LOAD_TROUBLE.iter().any(|(t, _)| l.contains(t)))
            {
                eprintln!("  new leader m{}: {l}", crash.new_leader + 1);
            }
            row.raft_leader_colocated += usize::from(crash.raft_leader_colocated);
            row.took.push(crash.took);
        }
        eprintln!(
            "{etcd_server}, {records} records: {:?}",
            row.took.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
        );
        rows.push(row);
    }
    rows
}

/// Applies for OSD ids until `to` OSD records exist (`from` exist already), 64 at a time.
async fn create_osd_records(client: &MonitorClient, from: u32, to: u32) {
    stream::iter(from..to)
        .map(|n| async move {
            client
                .apply_id(api::ApplyIdRequest {
                    uuid: common::api::uuid(n + 1),
                })
                .await
                .expect("apply id")
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
}

/// One crash round.
struct Crash {
    /// From the kill until the new leader answered a leader-only call.
    took: Duration,
    new_leader: usize,
    /// The length of the new leader's log at the kill.
    log_before: usize,
    raft_leader_colocated: bool,
}

/// Kills the leader with SIGKILL and polls the other monitors with a leader-only call until one
/// answers; then restarts the killed monitor.
async fn crash_until_served(c: &mut TestCluster, records: u32) -> Crash {
    let all = [0, 1, 2];
    let leader = c.wait_leader(&all, LONG);
    wait_until(LONG, "every standby ready", || {
        all.iter()
            .all(|&i| i == leader || c.readyz(i).is_some_and(|v| v["ready"] == true))
    });
    // Let the leader settle into its term (keep-alives, raft placement check).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    // Connections to the candidates are open before the kill, as a client's would be.
    let mut candidates = Vec::new();
    for &i in &others {
        let client = c.client(i);
        client
            .get_leader_from(&c.monitors[i].grpc)
            .await
            .expect("standby answers");
        let raw = client.raw(&c.monitors[i].grpc).unwrap();
        candidates.push((i, raw));
    }
    let raft_leader_colocated = raft_leader_is(c, leader).await;
    let log_before: Vec<usize> = others.iter().map(|&i| c.log(i).len()).collect();
    c.signal(leader, Signal::SIGKILL);
    let killed = Instant::now();
    let (took, new_leader) = 'poll: loop {
        for (i, raw) in &mut candidates {
            let mut req = tonic::Request::new(api::GetClusterStatusRequest::default());
            req.set_timeout(Duration::from_secs(1));
            if let Ok(status) = raw.get_cluster_status(req).await {
                let took = killed.elapsed();
                assert_eq!(
                    status.get_ref().osds_total,
                    records,
                    "the whole state loaded"
                );
                break 'poll (took, *i);
            }
        }
        assert!(killed.elapsed() < LONG, "no new leader within {LONG:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    c.wait_exit(leader, LONG);
    c.start(leader);
    wait_until(LONG, "the restarted monitor to be ready", || {
        c.readyz(leader).is_some_and(|v| v["ready"] == true)
    });
    let at = others.iter().position(|&i| i == new_leader).unwrap();
    Crash {
        took,
        new_leader,
        log_before: log_before[at],
        raft_leader_colocated,
    }
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
