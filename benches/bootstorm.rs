//! Boot storm: 10,000 OSDs (64 shards each) do ApplyId + Boot all at once against a standalone
//! monitor; how long until all are up, and how many etcd transactions and osdmap epochs it took.
//! Baseline in the same run: 500 OSDs booting one after another (no concurrency, so no group
//! commit), which costs one transaction and one epoch per request.
//!
//! Then the cost of a Prometheus scrape of the leader with every OSD up (per-OSD series and the
//! heartbeat-age histogram), beside the scrape of the empty monitor and a full osdmap fetch in
//! the same run.
//!
//! `make bench` runs it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::TestCluster;
use common::api::apply_and_boot;
use fastblock_monitor::proto::monitor as api;
use tonic::transport::Channel;

const STORM: u32 = 10_000;
const SEQUENTIAL: u32 = 500;
const CONNECTIONS: usize = 256;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

struct Counts {
    txns: f64,
    epoch: u64,
}

async fn counts(c: &TestCluster, m: &mut api::monitor_client::MonitorClient<Channel>) -> Counts {
    let txns = c
        .metric(0, "fastblock_etcd_txn_duration_seconds_count")
        .expect("txn count metric");
    let epoch = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .epoch;
    Counts { txns, epoch }
}

fn uuid(n: u32) -> String {
    format!("b0075702-0000-4000-8000-{n:012}")
}

async fn boot_one(mut m: api::monitor_client::MonitorClient<Channel>, n: u32) {
    apply_and_boot(&mut m, &uuid(n), &format!("host{}", n % 1000), 64).await;
}

/// Median time and size of `n` GETs of `/metrics` on monitor 0.
fn scrape_cost(c: &TestCluster, n: usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let started = Instant::now();
        let (status, body) = c.http_get(0, "/metrics").expect("scrape");
        times.push(started.elapsed());
        assert_eq!(status, 200);
        size = body.len();
    }
    times.sort();
    (times[n / 2], size)
}

async fn run() {
    let c = common::standalone_for_bench();
    let addr = c.monitors[0].grpc.clone();
    let channels = common::lazy_channels(&addr, CONNECTIONS);
    let mut m = api::monitor_client::MonitorClient::new(channels[0].clone())
        .max_decoding_message_size(1 << 30);

    let (empty_scrape, empty_size) = scrape_cost(&c, 21);

    // Baseline: one at a time.
    let before = counts(&c, &mut m).await;
    let started = Instant::now();
    for n in 0..SEQUENTIAL {
        boot_one(m.clone(), n).await;
    }
    let seq_time = started.elapsed();
    let after = counts(&c, &mut m).await;
    let seq_txns = after.txns - before.txns;
    let seq_epochs = after.epoch - before.epoch;

    // The storm: every OSD at once.
    let before = after;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(STORM as usize);
    for n in SEQUENTIAL..SEQUENTIAL + STORM {
        let client =
            api::monitor_client::MonitorClient::new(channels[n as usize % CONNECTIONS].clone());
        tasks.push(tokio::spawn(boot_one(client, n)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let storm_time = started.elapsed();
    let after = counts(&c, &mut m).await;
    let status = m
        .get_cluster_status(api::GetClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.osds_up, SEQUENTIAL + STORM, "every OSD is up");
    let (full_scrape, full_size) = scrape_cost(&c, 21);
    let mut fetches = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let r = m
            .get_osd_map(api::GetOsdMapRequest {
                osd_id: 0,
                epoch: 0,
            })
            .await
            .unwrap()
            .into_inner();
        fetches.push(started.elapsed());
        assert_eq!(r.osdmap.unwrap().osds.len() as u32, SEQUENTIAL + STORM);
    }
    fetches.sort();
    let fetch = fetches[fetches.len() / 2];
    let storm_txns = after.txns - before.txns;
    let storm_epochs = after.epoch - before.epoch;
    let requests = f64::from(2 * STORM);

    println!();
    println!(
        "| boot | OSDs | time | etcd transactions | osdmap epochs | transactions per request |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| one after another (baseline) | {SEQUENTIAL} | {:.2} s | {seq_txns:.0} | {seq_epochs} | {:.2} |",
        seq_time.as_secs_f64(),
        seq_txns / f64::from(2 * SEQUENTIAL)
    );
    println!(
        "| all at once (storm) | {STORM} | {:.2} s | {storm_txns:.0} | {storm_epochs} | {:.3} |",
        storm_time.as_secs_f64(),
        storm_txns / requests
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!("| /metrics scrape (median of 21) | time | size | vs full osdmap fetch |");
    println!("|---|---|---|---|");
    println!(
        "| empty monitor (baseline) | {:.2} ms | {:.1} KiB | |",
        ms(empty_scrape),
        empty_size as f64 / 1024.0
    );
    println!(
        "| {} OSDs up | {:.2} ms | {:.1} KiB | {:.2}x ({:.2} ms fetch) |",
        SEQUENTIAL + STORM,
        ms(full_scrape),
        full_size as f64 / 1024.0,
        ms(full_scrape) / ms(fetch),
        ms(fetch)
    );
}
