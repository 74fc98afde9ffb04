//! Memory of watchers that never read: a standalone monitor with a 65,536-PG pool (a full pgmap
//! of about 1.2 MB); N WatchClusterMap streams from epoch 0, each on its own connection with a
//! small HTTP/2 window, that never read past the first bytes. Reports the monitor's resident
//! memory idle, with the streams open (and the bytes the watch budget counts as held), and
//! after they closed; then the same with the pool's epoch moving between connects, so the
//! streams stall on different full maps and the budget (`watch_buffer_budget`) must cut the
//! slowest.
//!
//! `make bench` runs it. FB_BENCH_STALLED sets N (default 1,000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::api::{boot_osds, stalled_watcher};
use common::{ClusterOptions, TestCluster, proc_memory};
use fastblock_monitor::proto::monitor as api;

const LONG: Duration = Duration::from_secs(120);
const MB: u64 = 1 << 20;

fn main() {
    let n: usize = std::env::var("FB_BENCH_STALLED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(n));
}

fn metric(c: &TestCluster, series: &str) -> f64 {
    c.metric(0, series).unwrap_or(0.0)
}

fn wait(c: &TestCluster, what: &str, cond: impl Fn(&TestCluster) -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond(c) {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn run(n: usize) {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    let osds = boot_osds(&m, 1, 3, 3).await;
    m.create_pool(api::CreatePoolRequest {
        name: "big".to_string(),
        pg_size: 3,
        pg_count: 65_536,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .unwrap();
    let map = m.get_pg_map(api::GetPgMapRequest::default()).await.unwrap();
    let size = prost::Message::encoded_len(&map.pools[0]) as u64;
    let pid = c.monitors[0].pid().unwrap();
    let rss = || proc_memory(pid, "VmRSS");
    println!(
        "watch memory: {n} never-reading watchers, each on its own connection; full pgmap {:.2} MB",
        size as f64 / MB as f64
    );

    // The same epoch for everyone: one shared buffer.
    let idle = rss();
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(stalled_watcher(&c.monitors[0].grpc).await);
    }
    wait(&c, "every watcher sent its map", |c| {
        metric(c, "fastblock_watch_updates_sent_total") >= n as f64
    });
    std::thread::sleep(Duration::from_secs(2));
    let with = rss();
    let held = metric(&c, "fastblock_watch_held_bytes");
    drop(streams);
    wait(&c, "streams closed", |c| {
        metric(c, "fastblock_watch_streams") == 0.0
    });
    // Freed memory goes back to the OS on the monitor's next trim (every 10 s).
    std::thread::sleep(Duration::from_secs(12));
    let after = rss();
    println!();
    println!(
        "| case | RSS idle | RSS with the watchers | above idle | held (budget's count) | RSS after they closed |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {n} watchers, one epoch | {} MB | {} MB | {} MB | {:.1} MB | {} MB |",
        idle / MB,
        with / MB,
        with.saturating_sub(idle) / MB,
        held / MB as f64,
        after / MB
    );

    // A new pool epoch before every 10th connect: watchers stall on different full maps.
    let map = m.get_pg_map(api::GetPgMapRequest::default()).await.unwrap();
    let pool = map.pools[0].pool_id;
    let idle = rss();
    let cut_before = metric(&c, "fastblock_watch_streams_cut_total");
    let mut streams = Vec::with_capacity(n);
    let mut pg = 0u32;
    for i in 0..n {
        if i % 10 == 0 {
            // PG `pg`'s leader reports in: creating → active, a new pool epoch.
            let members = map.pools[0].pgs[pg as usize].members.clone();
            let leader = members[0];
            let _ = m
                .leader_be_elected(api::LeaderBeElectedRequest {
                    leader_id: leader,
                    pool_id: pool,
                    pg_id: pg,
                    members,
                    new_members: Vec::new(),
                })
                .await;
            pg += 1;
        }
        streams.push(stalled_watcher(&c.monitors[0].grpc).await);
    }
    std::thread::sleep(Duration::from_secs(2));
    let with = rss();
    let held = metric(&c, "fastblock_watch_held_bytes");
    let cut = metric(&c, "fastblock_watch_streams_cut_total") - cut_before;
    drop(streams);
    wait(&c, "streams closed", |c| {
        metric(c, "fastblock_watch_streams") == 0.0
    });
    // Freed memory goes back to the OS on the monitor's next trim (every 10 s).
    std::thread::sleep(Duration::from_secs(12));
    let after = rss();
    println!(
        "| {n} watchers, {} epochs (budget 256 MB; {cut} cut) | {} MB | {} MB | {} MB | {:.1} MB | {} MB |",
        n / 10,
        idle / MB,
        with / MB,
        with.saturating_sub(idle) / MB,
        held / MB as f64,
        after / MB
    );
    drop(osds);
}
