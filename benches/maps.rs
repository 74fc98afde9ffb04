//! Map serving benchmark on a standalone monitor with 10,000 OSDs (64 shards each) and a
//! 10,000-PG pool:
//! - throughput of GetClusterMap answered "unchanged" with 64 concurrent clients, as a ratio to
//!   the trivial gRPC health Check served by the same monitor process in the same run;
//! - latency of a full 10,000-OSD osdmap fetch (GetOsdMap from epoch 0), sequential, alone and
//!   while 63 other clients ask "unchanged" at 3,333 requests/s in all — the load of 10,000 OSDs
//!   polling every 3 s, as the original's OSDs did.
//!
//! `make bench` runs it. FB_BENCH_SECONDS sets each throughput phase's length (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::api::{boot_request, uuid};
use fastblock_monitor::client::{ClientOptions, MonitorClient};
use fastblock_monitor::proto::monitor as api;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const OSDS: u32 = 10_000;
const CLIENTS: usize = 64;
/// Each of the 63 background clients asks this often: 3,333 requests/s in all.
const POLL_EVERY: Duration = Duration::from_micros(63 * 300);

fn main() {
    let seconds: u64 = std::env::var("FB_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(Duration::from_secs(seconds)));
}

async fn run(phase: Duration) {
    let c = common::standalone_for_bench();
    let addr = c.monitors[0].grpc.clone();
    let m = Arc::new(
        MonitorClient::new(std::slice::from_ref(&addr), ClientOptions::default()).expect("client"),
    );
    println!("maps benchmark: booting {OSDS} OSDs x 64 shards on one monitor...");
    let mut tasks = Vec::new();
    for w in 0..CLIENTS as u32 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let mut k = w + 1;
            while k <= OSDS {
                let u = uuid(k);
                let id = m
                    .apply_id(api::ApplyIdRequest { uuid: u.clone() })
                    .await
                    .unwrap()
                    .osd_id;
                m.boot(boot_request(id, &u, &format!("host{}", k % 1000), 1, 64))
                    .await
                    .unwrap();
                k += CLIENTS as u32;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".to_string(),
        pg_size: 3,
        pg_count: 10_000,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .unwrap();
    let current = m
        .get_cluster_map(api::GetClusterMapRequest::default())
        .await
        .unwrap();
    let osdmap_epoch = current.osdmap.as_ref().unwrap().epoch;
    let pool_epochs: std::collections::HashMap<u32, u64> = current
        .pgmap
        .as_ref()
        .unwrap()
        .pools
        .iter()
        .map(|p| (p.pool_id, p.epoch))
        .collect();
    let full_size = prost::Message::encoded_len(current.osdmap.as_ref().unwrap());

    let channels: Vec<Channel> = (0..CLIENTS)
        .map(|_| {
            Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .tcp_nodelay(true)
                .initial_stream_window_size(Some(8 << 20))
                .initial_connection_window_size(Some(32 << 20))
                .connect_lazy()
        })
        .collect();

    // Baseline and subject alternate (3 rounds) so drifting machine load hits both alike.
    let unchanged_req = api::GetClusterMapRequest {
        osdmap: Some(api::GetOsdMapRequest {
            osd_id: 1,
            epoch: osdmap_epoch,
        }),
        pgmap: Some(api::GetPgMapRequest {
            pool_epochs: pool_epochs.clone(),
        }),
    };
    let mut rounds = Vec::new();
    for _ in 0..3 {
        // Baseline: the trivial health Check of the same process.
        let echo = throughput(&channels, phase, |ch| async move {
            let mut h = HealthClient::new(ch);
            h.check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
        })
        .await;
        let req = unchanged_req.clone();
        let unchanged = throughput(&channels, phase, move |ch| {
            let req = req.clone();
            async move {
                let mut m = api::monitor_client::MonitorClient::new(ch);
                let r = m.get_cluster_map(req).await;
                r.is_ok_and(|r| {
                    r.into_inner().osdmap.unwrap().status == api::MapStatus::Unchanged as i32
                })
            }
        })
        .await;
        rounds.push((echo, unchanged, unchanged / echo));
    }
    rounds.sort_by(|a, b| a.2.partial_cmp(&b.2).unwrap());
    let (echo, unchanged, ratio) = rounds[1];
    let worst = rounds[0].2;

    // Full osdmap fetches: alone, then while the 64 clients keep asking "unchanged".
    let full_alone = full_fetches(&channels[0], 100).await;
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let stop = stop.clone();
        let chans = channels[1..].to_vec();
        let req = api::GetClusterMapRequest {
            osdmap: Some(api::GetOsdMapRequest {
                osd_id: 1,
                epoch: osdmap_epoch,
            }),
            pgmap: Some(api::GetPgMapRequest { pool_epochs }),
        };
        tokio::spawn(async move {
            let mut set = Vec::new();
            for ch in chans {
                let (stop, req) = (stop.clone(), req.clone());
                set.push(tokio::spawn(async move {
                    let mut m = api::monitor_client::MonitorClient::new(ch);
                    let mut tick = tokio::time::interval(POLL_EVERY);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let _ = m.get_cluster_map(req.clone()).await;
                    }
                }));
            }
            for t in set {
                let _ = t.await;
            }
        })
    };
    let full_loaded = full_fetches(&channels[0], 100).await;
    stop.store(true, Ordering::Relaxed);
    let _ = background.await;

    println!();
    println!("| measurement | value |");
    println!("|---|---|");
    println!("| health Check (baseline), {CLIENTS} clients, median round | {echo:.0} req/s |");
    println!("| GetClusterMap unchanged, {CLIENTS} clients, median round | {unchanged:.0} req/s |");
    println!(
        "| ratio unchanged / baseline: median (worst) of 3 alternating rounds | {ratio:.2} ({worst:.2}) |"
    );
    println!(
        "| full osdmap size ({OSDS} OSDs x 64 shards) | {:.1} MiB |",
        full_size as f64 / (1 << 20) as f64
    );
    println!(
        "| full osdmap fetch, alone: p50 / p99 | {:.1} ms / {:.1} ms |",
        full_alone.0, full_alone.1
    );
    println!(
        "| full osdmap fetch, {} clients polling at 3,333 req/s: p50 / p99 | {:.1} ms / {:.1} ms |",
        CLIENTS - 1,
        full_loaded.0,
        full_loaded.1
    );
}

/// Requests per second over `phase` (after a one-second warm-up), one task per channel.
async fn throughput<F, Fut>(channels: &[Channel], phase: Duration, call: F) -> f64
where
    F: Fn(Channel) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let count = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for ch in channels {
        let (ch, call, count, measuring, stop) = (
            ch.clone(),
            call.clone(),
            count.clone(),
            measuring.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = call(ch.clone()).await;
                assert!(ok, "a benchmark call failed");
                if measuring.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(phase).await;
    let n = count.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / secs
}

/// p50 and p99 (ms) of `n` sequential full osdmap fetches.
async fn full_fetches(ch: &Channel, n: usize) -> (f64, f64) {
    let mut m =
        api::monitor_client::MonitorClient::new(ch.clone()).max_decoding_message_size(1 << 30);
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = m
            .get_osd_map(api::GetOsdMapRequest {
                osd_id: 1,
                epoch: 0,
            })
            .await
            .unwrap()
            .into_inner();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.osdmap.unwrap().osds.len(), OSDS as usize);
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (ms[n / 2], ms[(n * 99 / 100).min(n - 1)])
}
