//! Event delivery to watchers: a standalone monitor, N concurrent WatchEvents streams (from
//! now, all types), and a series of flag changes made one at a time. For every (stream, event)
//! the time from the change's request to the event's arrival on the stream; baseline: the
//! same change's request → reply (its commit) in the same run. Run with 1 stream (no fan-out)
//! and with 1,000 (the goal: p99 commit → received ≤ 100 ms).
//!
//! `make bench` runs it. FB_BENCH_EVENT_WATCHERS sets the larger count (default 1,000),
//! FB_BENCH_EVENTS the changes per run (default 200).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fastblock_monitor::client::{ClientOptions, MonitorClient};
use fastblock_monitor::proto::monitor as api;
use parking_lot::Mutex;

const STREAMS_PER_CONNECTION: usize = 100;
/// Pause between changes, so each one's delivery is measured on its own.
const GAP: Duration = Duration::from_millis(20);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let watchers = env("FB_BENCH_EVENT_WATCHERS", 1000);
    let events = env("FB_BENCH_EVENTS", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let c = common::standalone_for_bench();
        let addr = c.monitors[0].grpc.clone();
        println!("events benchmark: {events} flag changes, one at a time, {GAP:?} apart");
        println!(
            "{:>9}  {:>10} {:>10} {:>10}  {:>10} {:>10}  {:>8}",
            "streams", "recv p50", "recv p99", "recv max", "commit p50", "commit p99", "p99/base"
        );
        for n in [1, watchers] {
            let r = measure(&addr, n, events).await;
            println!(
                "{:>9}  {:>8.1}ms {:>8.1}ms {:>8.1}ms  {:>8.1}ms {:>8.1}ms  {:>8.2}",
                n,
                ms(pct(&r.received, 0.5)),
                ms(pct(&r.received, 0.99)),
                ms(pct(&r.received, 1.0)),
                ms(pct(&r.committed, 0.5)),
                ms(pct(&r.committed, 0.99)),
                pct(&r.received, 0.99).as_secs_f64() / pct(&r.committed, 0.99).as_secs_f64(),
            );
        }
        drop(c);
    });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

struct Results {
    /// Request → event on a stream, every (stream, event), sorted.
    received: Vec<Duration>,
    /// Request → reply of the change (its commit), sorted.
    committed: Vec<Duration>,
}

/// Keyed by the osdmap epoch each change produced: when its request was sent.
type Sent = Arc<Mutex<HashMap<u64, Instant>>>;

async fn measure(addr: &str, streams: usize, events: usize) -> Results {
    let m = MonitorClient::new(&[addr.to_string()], ClientOptions::default()).unwrap();
    let channels = common::lazy_channels(addr, streams.div_ceil(STREAMS_PER_CONNECTION));
    let sent: Sent = Arc::default();
    let arrivals: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..streams {
        let ch = channels[i % channels.len()].clone();
        let (arrivals, opened) = (arrivals.clone(), opened.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = api::monitor_client::MonitorClient::new(ch);
            let mut stream = client
                .watch_events(api::WatchEventsRequest {
                    start: api::EventStart::Now as i32,
                    after_id: 0,
                    types: vec!["flag.".to_string()],
                })
                .await
                .unwrap()
                .into_inner();
            // The first message is the starting point.
            stream.message().await.unwrap();
            opened.fetch_add(1, Ordering::Relaxed);
            let mut got = 0;
            let mut mine = Vec::with_capacity(events);
            while got < events {
                match stream.message().await {
                    Ok(Some(msg)) => {
                        let now = Instant::now();
                        for e in msg.events {
                            mine.push((e.osdmap_epoch, now));
                            got += 1;
                        }
                    }
                    _ => break,
                }
            }
            arrivals.lock().extend(mine);
        }));
    }
    while opened.load(Ordering::Relaxed) < streams {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut committed = Vec::with_capacity(events);
    for i in 0..events {
        let start = Instant::now();
        let flag = api::ClusterFlag::Noout as i32;
        let epoch = if i % 2 == 0 {
            m.set_flag(api::SetFlagRequest { flag })
                .await
                .unwrap()
                .osdmap_epoch
        } else {
            m.unset_flag(api::UnsetFlagRequest { flag })
                .await
                .unwrap()
                .osdmap_epoch
        };
        committed.push(start.elapsed());
        sent.lock().insert(epoch, start);
        tokio::time::sleep(GAP).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    let sent = sent.lock();
    let mut received: Vec<Duration> = arrivals
        .lock()
        .iter()
        .filter_map(|(epoch, at)| Some(at.saturating_duration_since(*sent.get(epoch)?)))
        .collect();
    assert_eq!(
        received.len(),
        streams * events,
        "every stream received every event"
    );
    received.sort();
    committed.sort();
    Results {
        received,
        committed,
    }
}
