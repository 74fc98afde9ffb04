//! Watch fan-out: 10,000 concurrent WatchClusterMap streams (osdmap scope) on a standalone
//! monitor with 10,000 OSDs; one OSD state change (a weight change) at a time; how long until
//! every subscriber has it (p50/p99/max over all subscribers and rounds), and the bytes sent
//! per change against the original's full-map polling (every OSD fetched the whole osdmap
//! every 3 s).
//!
//! `make bench` runs it. FB_BENCH_WATCHERS sets the number of streams (default 10,000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::api::boot_request;
use fastblock_monitor::client::{ClientOptions, MonitorClient};
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::proto::wire::watch_cluster_map_response_fields::Update;
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};

const OSDS: u32 = 10_000;
const STREAMS_PER_CONNECTION: usize = 100;
const ROUNDS: usize = 5;

fn main() {
    let watchers: usize = std::env::var("FB_BENCH_WATCHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(watchers));
}

/// What every subscriber task records.
struct Shared {
    /// The osdmap epoch being waited for (0: none).
    target: AtomicU64,
    /// When the change was committed, in µs since `base`.
    committed_us: AtomicU64,
    /// Subscribers that have the target epoch.
    arrived: AtomicUsize,
    /// Latencies (µs) by round and subscriber; 0 until it arrived.
    latencies: Vec<AtomicU64>,
    /// The current round.
    round: AtomicUsize,
    /// Bytes of the last update one subscriber received.
    update_bytes: AtomicU64,
    done: Notify,
    base: Instant,
}

async fn run(watchers: usize) {
    let c = common::standalone_for_bench();
    let addr = c.monitors[0].grpc.clone();
    let m = Arc::new(
        MonitorClient::new(std::slice::from_ref(&addr), ClientOptions::default()).unwrap(),
    );
    println!("watch benchmark: booting {OSDS} OSDs, opening {watchers} streams...");
    let mut tasks = Vec::new();
    for w in 0..64u32 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let mut k = w + 1;
            while k <= OSDS {
                let u = format!("0a7c4e00-0000-4000-8000-{k:012}");
                let id = m
                    .apply_id(api::ApplyIdRequest { uuid: u.clone() })
                    .await
                    .unwrap()
                    .osd_id;
                m.boot(boot_request(id, &u, &format!("host{}", k % 1000), 1, 64))
                    .await
                    .unwrap();
                k += 64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let full_map = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .unwrap();
    let full_bytes = prost::Message::encoded_len(&full_map) as u64;
    let epoch = full_map.epoch;

    let connections = watchers.div_ceil(STREAMS_PER_CONNECTION);
    let channels: Vec<Channel> = (0..connections)
        .map(|_| {
            Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .tcp_nodelay(true)
                .connect_lazy()
        })
        .collect();
    let shared = Arc::new(Shared {
        target: AtomicU64::new(0),
        committed_us: AtomicU64::new(0),
        arrived: AtomicUsize::new(0),
        latencies: (0..watchers * ROUNDS).map(|_| AtomicU64::new(0)).collect(),
        round: AtomicUsize::new(0),
        update_bytes: AtomicU64::new(0),
        done: Notify::new(),
        base: Instant::now(),
    });
    let opened = Arc::new(AtomicUsize::new(0));
    for i in 0..watchers {
        let ch = channels[i % connections].clone();
        let (shared, opened) = (shared.clone(), opened.clone());
        tokio::spawn(async move {
            let mut client = api::monitor_client::MonitorClient::new(ch);
            let mut stream = client
                .watch_cluster_map(api::WatchClusterMapRequest {
                    osdmap_epoch: epoch,
                    pool_epochs: Default::default(),
                    scope: api::WatchScope::Osdmap as i32,
                })
                .await
                .unwrap()
                .into_inner();
            opened.fetch_add(1, Ordering::Relaxed);
            while let Ok(Some(msg)) = stream.message().await {
                let now = shared.base.elapsed().as_micros() as u64;
                let size = prost::Message::encoded_len(&msg) as u64;
                let Some(Update::Osdmap(u)) = msg.into_fields().update else {
                    continue;
                };
                let target = shared.target.load(Ordering::Acquire);
                if target != 0 && u.epoch >= target {
                    let latency = now.saturating_sub(shared.committed_us.load(Ordering::Acquire));
                    let slot = shared.round.load(Ordering::Acquire) * watchers + i;
                    shared.latencies[slot].store(latency.max(1), Ordering::Relaxed);
                    shared.update_bytes.store(size, Ordering::Relaxed);
                    if shared.arrived.fetch_add(1, Ordering::AcqRel) + 1 == watchers {
                        shared.done.notify_one();
                    }
                }
            }
        });
    }
    while opened.load(Ordering::Relaxed) < watchers {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let every server-side task reach its wait point.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rounds = Vec::new();
    for r in 0..ROUNDS {
        shared.arrived.store(0, Ordering::Release);
        shared.round.store(r, Ordering::Release);
        let done = shared.done.notified();
        // The expected epoch is the next one: set it before the change can be seen.
        let expected = epoch + 1 + r as u64;
        shared.target.store(expected, Ordering::Release);
        let started = shared.base.elapsed().as_micros() as u64;
        shared.committed_us.store(started, Ordering::Release);
        let reply = m
            .set_osd_weight(api::SetOsdWeightRequest {
                osd_id: 1 + r as u32,
                weight: 0.5,
            })
            .await
            .unwrap();
        assert_eq!(reply.osdmap_epoch, expected);
        tokio::time::timeout(Duration::from_secs(60), done)
            .await
            .expect("every subscriber got it");
        rounds.push(shared.base.elapsed().as_micros() as u64 - started);
        shared.target.store(0, Ordering::Release);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut lat: Vec<u64> = shared
        .latencies
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .collect();
    assert!(
        lat.iter().all(|l| *l > 0),
        "every subscriber got every change"
    );
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    let delta_bytes = shared.update_bytes.load(Ordering::Relaxed);

    println!();
    println!("| measurement | value |");
    println!("|---|---|");
    println!("| subscribers (streams) | {watchers} over {connections} connections |");
    println!(
        "| change → subscriber (all subscribers, {ROUNDS} rounds): p50 / p99 / max | {:.1} ms / {:.1} ms / {:.1} ms |",
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1] as f64 / 1000.0
    );
    println!(
        "| change → last subscriber, per round | {} |",
        rounds
            .iter()
            .map(|us| format!("{:.0} ms", *us as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| one update (delta: one OSD) | {delta_bytes} bytes |");
    println!(
        "| sent per change to all subscribers | {:.2} MiB |",
        (delta_bytes * watchers as u64) as f64 / (1 << 20) as f64
    );
    println!(
        "| full osdmap (what the original sent every 3 s to every OSD) | {:.2} MiB |",
        full_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "| original: sent per 3 s to {watchers} OSDs, changes or not | {:.0} MiB |",
        (full_bytes * watchers as u64) as f64 / (1 << 20) as f64
    );
}
