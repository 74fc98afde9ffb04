//! Connections at the descriptor limit: a standalone monitor whose open-file limit is 1,024
//! (soft and hard, as under a default shell with the hard limit lowered too) with three OSDs
//! heartbeating on one connection. The same run measures the monitor's CPU use and the latency
//! of new gRPC and HTTP connections first with no other connections, then with 1,100 TCP
//! connections open that never send anything (more than the process has descriptors).
//!
//! `make bench` runs it; `FB_BENCH_SAMPLES` sets the new connections per kind (default 200).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster, wait_until};
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::proto::monitor::monitor_client::MonitorClient as RawClient;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

const OPEN_FILE_LIMIT: u64 = 1024;
const FLOOD: usize = 1100;
const OSDS: u32 = 3;
const CPU_WINDOW: Duration = Duration::from_secs(5);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);
const LONG: Duration = Duration::from_secs(60);

/// What one phase measured.
struct Phase {
    cpu: f64,
    grpc: Vec<Duration>,
    grpc_failed: usize,
    http: Vec<Duration>,
    http_failed: usize,
    heartbeats: Vec<Duration>,
    heartbeats_failed: usize,
}

/// Heartbeat round trips on the existing connection since the last take, and failures.
#[derive(Default)]
struct Heartbeats {
    rtts: Vec<Duration>,
    failed: usize,
}

fn main() {
    let samples: usize = std::env::var("FB_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(samples));
}

async fn run(samples: usize) {
    // The default idle timeout (120 s) keeps the silent connections for the whole measurement.
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            open_file_limit: Some(OPEN_FILE_LIMIT),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let pid = c.monitors[0].pid().unwrap();
    let grpc = c.monitors[0].grpc.clone();
    let osds = common::api::boot_osds(&c.client(0), 1, OSDS, OSDS).await;

    let heartbeats: Arc<Mutex<Heartbeats>> = Arc::default();
    let channel = Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();
    let heartbeater = tokio::spawn({
        let heartbeats = heartbeats.clone();
        async move {
            let mut client = RawClient::new(channel);
            loop {
                for o in &osds {
                    let started = Instant::now();
                    let r = client
                        .heartbeat(api::HeartbeatRequest {
                            osd_id: o.id,
                            boot_instance: o.instance,
                        })
                        .await;
                    let mut h = heartbeats.lock().unwrap();
                    match r {
                        Ok(_) => h.rtts.push(started.elapsed()),
                        Err(_) => h.failed += 1,
                    }
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        }
    });

    println!(
        "connections at the descriptor limit: open-file limit {OPEN_FILE_LIMIT} (soft and hard), \
         {OSDS} OSDs heartbeating every {HEARTBEAT_EVERY:?} on one connection, {samples} new \
         connections per kind"
    );
    let quiet = measure(&c, pid, &grpc, &heartbeats, samples).await;

    let mut flood = Vec::with_capacity(FLOOD);
    let opening = Instant::now();
    for _ in 0..FLOOD {
        flood.push(TcpStream::connect(&grpc).await.expect("connect"));
    }
    let opened_in = opening.elapsed();
    wait_until(LONG, "the connection cap to be reached", || {
        metric(&c, "fastblock_connections_refused_total") > 0.0
    });
    // Silent connections become replaceable after their grace.
    tokio::time::sleep(fastblock_monitor::timing::SILENT_GRACE * 2).await;
    let flooded = measure(&c, pid, &grpc, &heartbeats, samples).await;
    heartbeater.abort();

    let cap = c.log(0).lines().find_map(|l| {
        l.split("allows only ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    });
    println!();
    println!("| measurement | no other connections | {FLOOD} silent connections |");
    println!("|---|---|---|");
    println!(
        "| monitor CPU over {}s (heartbeats only) | {:.1}% | {:.1}% |",
        CPU_WINDOW.as_secs(),
        quiet.cpu * 100.0,
        flooded.cpu * 100.0
    );
    println!(
        "| new gRPC connection + first call (GetLeader): p50 / p99 / max | {} | {} |",
        percentiles(&quiet.grpc),
        percentiles(&flooded.grpc)
    );
    println!(
        "| new HTTP connection, GET /healthz: p50 / p99 / max | {} | {} |",
        percentiles(&quiet.http),
        percentiles(&flooded.http)
    );
    println!(
        "| heartbeat on the existing connection: p50 / p99 / max | {} | {} |",
        percentiles(&quiet.heartbeats),
        percentiles(&flooded.heartbeats)
    );
    println!(
        "| failed: new gRPC / new HTTP / heartbeats | {} / {} / {} | {} / {} / {} |",
        quiet.grpc_failed,
        quiet.http_failed,
        quiet.heartbeats_failed,
        flooded.grpc_failed,
        flooded.http_failed,
        flooded.heartbeats_failed
    );
    println!();
    println!(
        "connection cap derived from the limit: {}; {FLOOD} silent connections opened in {:.0} ms; \
         refused {}, replaced {}, gRPC connections open at the end {}",
        cap.map_or("not logged".to_string(), |c| c.to_string()),
        opened_in.as_secs_f64() * 1000.0,
        metric(&c, "fastblock_connections_refused_total"),
        metric(&c, "fastblock_connections_replaced_total"),
        metric(&c, "fastblock_connections_open"),
    );
    drop(flood);
}

async fn measure(
    c: &TestCluster,
    pid: u32,
    grpc: &str,
    heartbeats: &Mutex<Heartbeats>,
    samples: usize,
) -> Phase {
    *heartbeats.lock().unwrap() = Heartbeats::default();
    let cpu_before = common::cpu_time(pid);
    let window = Instant::now();
    tokio::time::sleep(CPU_WINDOW).await;
    let cpu = (common::cpu_time(pid) - cpu_before).as_secs_f64() / window.elapsed().as_secs_f64();

    let mut phase = Phase {
        cpu,
        grpc: Vec::new(),
        grpc_failed: 0,
        http: Vec::new(),
        http_failed: 0,
        heartbeats: Vec::new(),
        heartbeats_failed: 0,
    };
    // The new connections stay open until the phase ends, so that with the silent ones every
    // new connection meets a full cap and has to take a silent connection's place.
    let mut kept = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        match new_grpc_call(grpc).await {
            Ok(channel) => {
                phase.grpc.push(started.elapsed());
                kept.push(channel);
            }
            Err(_) => phase.grpc_failed += 1,
        }
    }
    for _ in 0..samples {
        let started = Instant::now();
        match c.http_get(0, "/healthz") {
            Some((200, _)) => phase.http.push(started.elapsed()),
            _ => phase.http_failed += 1,
        }
    }
    let h = std::mem::take(&mut *heartbeats.lock().unwrap());
    phase.heartbeats = h.rtts;
    phase.heartbeats_failed = h.failed;
    drop(kept);
    phase
}

/// A fresh connection (TCP and HTTP/2 handshakes) and one call on it; the connection is
/// returned to be kept open.
async fn new_grpc_call(grpc: &str) -> Result<Channel, Box<dyn std::error::Error>> {
    let channel = Endpoint::from_shared(format!("http://{grpc}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await?;
    RawClient::new(channel.clone())
        .get_leader(api::GetLeaderRequest {})
        .await?;
    Ok(channel)
}

fn metric(c: &TestCluster, name: &str) -> f64 {
    c.metric(0, &format!("{name}{{protocol=\"grpc\"}}"))
        .unwrap_or(f64::NAN)
}

fn percentiles(v: &[Duration]) -> String {
    if v.is_empty() {
        return "none".to_string();
    }
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!("{:.2} / {:.2} / {:.2} ms", at(0.5), at(0.99), at(1.0))
}
