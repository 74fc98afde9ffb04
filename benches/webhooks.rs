//! Events and webhooks under a boot storm: 10,000 OSDs (64 shards each) do ApplyId + Boot all
//! at once against a standalone monitor (release build, embedded etcd), as `bootstorm.rs` does.
//!
//! - Baseline, same run: the same storm against a monitor whose commit writer drops every event
//!   (failpoint switch `events.off=on`), so no event is written, followed or delivered. The
//!   events are still derived by the core (that part is not switched off), so the difference
//!   is the cost of writing them to etcd, following them and delivering them.
//! - Events on: the storm with 3 webhook endpoints registered (receivers in this process, plain
//!   HTTP on loopback). Each receiver notes every POST's arrival; commit → received is the
//!   arrival time less the event's CloudEvents `time` (its commit time, ms). Also: how long
//!   after the storm's start the last event reached every endpoint, and the delivery rate.
//!
//! - Events on, no webhook: the storm with the event log only.
//!
//! Rounds run the three in turn (FB_BENCH_ROUNDS, default 3); the medians are compared. The
//! goal: the storm is at most 10% slower with events on. FB_BENCH_STORM_OSDS
//! sets the storm's size (default 10,000).
//!
//! `make bench` runs it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::api::apply_and_boot;
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;
use parking_lot::Mutex;

const CONNECTIONS: usize = 256;
const ENDPOINTS: usize = 3;
/// How long delivery may take after the storm before the run is called failed.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(900);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One receiver's arrivals: (event id, commit → received, received at).
#[derive(Default)]
struct Sink {
    got: Mutex<Vec<(u64, Duration, Instant)>>,
}

async fn receive(State(sink): State<Arc<Sink>>, body: Bytes) -> StatusCode {
    let now = SystemTime::now();
    let at = Instant::now();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = v["id"].as_str().and_then(|s| s.parse().ok());
    let time = v["time"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    match (id, time) {
        (Some(id), Some(time)) => {
            let took = now.duration_since(time).unwrap_or_default();
            sink.got.lock().push((id, took, at));
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn start_receiver() -> (Arc<Sink>, String) {
    let sink = Arc::new(Sink::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(sink.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (sink, format!("http://{addr}/hook"))
}

fn monitor(events_on: bool) -> TestCluster {
    let mut options = ClusterOptions {
        extra_config: "osd_down_after = \"3600s\"\nwebhook_allow_http = true".to_string(),
        ..ClusterOptions::default()
    };
    if !events_on {
        options.env.push((
            "FASTBLOCK_FAILPOINTS".to_string(),
            "events.off=on".to_string(),
        ));
    }
    let mut c = TestCluster::new(1, options);
    c.start_all();
    c.wait_leader(&[0], Duration::from_secs(120));
    c
}

fn uuid(n: u32) -> String {
    format!("b0075702-0000-4000-8000-{n:012}")
}

/// Boots `osds` OSDs at once; the time until every one is up.
async fn storm(addr: &str, osds: u32) -> Duration {
    let channels = common::lazy_channels(addr, CONNECTIONS);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(osds as usize);
    for n in 0..osds {
        let mut client =
            api::monitor_client::MonitorClient::new(channels[n as usize % CONNECTIONS].clone());
        tasks.push(tokio::spawn(async move {
            apply_and_boot(&mut client, &uuid(n), &format!("host{}", n % 1000), 64).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

async fn latest_event(m: &MonitorClient) -> u64 {
    m.list_events(api::ListEventsRequest {
        last: 1,
        after_id: 0,
        types: Vec::new(),
    })
    .await
    .expect("ListEvents")
    .latest_id
}

struct OnRun {
    storm: Duration,
    events: u64,
    /// Every (endpoint, event) arrival's commit → received.
    latencies: Vec<Duration>,
    /// From the storm's start until the last endpoint had the last event.
    all_delivered: Duration,
    duplicates: usize,
}

async fn run_on(osds: u32) -> OnRun {
    let c = monitor(true);
    let m = c.client(0);
    let mut sinks = Vec::new();
    for _ in 0..ENDPOINTS {
        let (sink, url) = start_receiver().await;
        m.add_webhook(api::AddWebhookRequest {
            url,
            ..Default::default()
        })
        .await
        .expect("AddWebhook");
        sinks.push(sink);
    }
    let first = latest_event(&m).await + 1;
    let started = Instant::now();
    let storm_time = storm(&c.monitors[0].grpc, osds).await;
    let last = latest_event(&m).await;
    let events = last + 1 - first;
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let done = sinks
            .iter()
            .all(|s| s.got.lock().iter().any(|&(id, _, _)| id >= last));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events {first}..={last} not delivered to every endpoint within {DELIVERY_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::new();
    let mut last_arrival = started;
    let mut duplicates = 0;
    for s in &sinks {
        let got = s.got.lock();
        let mut ids: Vec<u64> = got.iter().map(|&(id, _, _)| id).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        duplicates += before - ids.len();
        let wanted: Vec<u64> = (first..=last).collect();
        let received: Vec<u64> = ids.into_iter().filter(|id| *id >= first).collect();
        assert_eq!(received, wanted, "every event reached every endpoint");
        for &(id, took, at) in got.iter() {
            if id >= first {
                latencies.push(took);
                last_arrival = last_arrival.max(at);
            }
        }
    }
    latencies.sort();
    OnRun {
        storm: storm_time,
        events,
        latencies,
        all_delivered: last_arrival - started,
        duplicates,
    }
}

/// The storm with events written (and followed) but no webhook registered.
async fn run_events_only(osds: u32) -> Duration {
    let c = monitor(true);
    let m = c.client(0);
    let before = latest_event(&m).await;
    let t = storm(&c.monitors[0].grpc, osds).await;
    assert!(
        latest_event(&m).await >= before + u64::from(osds),
        "events are written"
    );
    t
}

async fn run_off(osds: u32) -> Duration {
    let c = monitor(false);
    let m = c.client(0);
    let before = latest_event(&m).await;
    let t = storm(&c.monitors[0].grpc, osds).await;
    assert_eq!(
        latest_event(&m).await,
        before,
        "the baseline writes no events"
    );
    t
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let rounds = env("FB_BENCH_ROUNDS", 3).max(1);
    let osds = env("FB_BENCH_STORM_OSDS", 10_000) as u32;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "webhooks benchmark: {osds}-OSD boot storm, events off vs on ({ENDPOINTS} webhook endpoints), {rounds} rounds"
        );
        let mut off = Vec::new();
        let mut events_only = Vec::new();
        let mut on = Vec::new();
        for round in 1..=rounds {
            let t = run_off(osds).await;
            println!("round {round}: events off: storm {:.2} s", t.as_secs_f64());
            off.push(t);
            let t = run_events_only(osds).await;
            println!(
                "round {round}: events on, no webhook: storm {:.2} s",
                t.as_secs_f64()
            );
            events_only.push(t);
            let r = run_on(osds).await;
            println!(
                "round {round}: events on:  storm {:.2} s, {} events, commit → received p50 {:.1} ms p99 {:.1} ms max {:.1} ms, all delivered after {:.2} s ({:.0} deliveries/s over {ENDPOINTS} endpoints), {} duplicates",
                r.storm.as_secs_f64(),
                r.events,
                ms(pct(&r.latencies, 0.5)),
                ms(pct(&r.latencies, 0.99)),
                ms(pct(&r.latencies, 1.0)),
                r.all_delivered.as_secs_f64(),
                r.latencies.len() as f64 / r.all_delivered.as_secs_f64(),
                r.duplicates,
            );
            on.push(r);
        }
        let off_median = median(off);
        let events_only_median = median(events_only);
        let on_median = median(on.iter().map(|r| r.storm).collect());
        let mut all: Vec<Duration> = on.iter().flat_map(|r| r.latencies.clone()).collect();
        all.sort();
        println!();
        println!("| boot storm, {osds} OSDs | median of {rounds} | vs baseline |");
        println!("|---|---|---|");
        println!(
            "| events off (baseline) | {:.2} s | 1.00 |",
            off_median.as_secs_f64()
        );
        println!(
            "| events on, no webhook | {:.2} s | {:.2} |",
            events_only_median.as_secs_f64(),
            events_only_median.as_secs_f64() / off_median.as_secs_f64()
        );
        println!(
            "| events on, {ENDPOINTS} webhooks | {:.2} s | {:.2} |",
            on_median.as_secs_f64(),
            on_median.as_secs_f64() / off_median.as_secs_f64()
        );
        println!();
        println!(
            "commit → webhook received, every (endpoint, event) of every round: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
            ms(pct(&all, 0.5)),
            ms(pct(&all, 0.99)),
            ms(pct(&all, 1.0)),
            all.len()
        );
    });
}
