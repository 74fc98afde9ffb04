//! Heartbeat flood: does a second's worth of heartbeats from 10,000 OSDs, every second, delay
//! the leader's writes? A standalone monitor with 10,000 booted OSDs; a leader-only write
//! (SetFlag/UnsetFlag of `noout`, one fenced transaction each) is timed one after another,
//! first with no heartbeats (the baseline, same run), then while 10,000 heartbeats a second
//! arrive over 64 connections. Also: how many heartbeats a second the monitor takes when they
//! come as fast as 256 concurrent callers can send them, beside GetLeader (a call that touches
//! no state) measured the same way as the baseline.
//!
//! `make bench` runs it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::api::apply_and_boot;
use fastblock_monitor::proto::monitor as api;
use tonic::transport::Channel;

const OSDS: u32 = 10_000;
/// Heartbeats per second during the flood: every OSD once a second.
const FLOOD_RATE: u32 = OSDS;
const CONNECTIONS: usize = 64;
/// Writes timed in each phase.
const WRITES: usize = 200;
/// Concurrent callers of the throughput phase.
const CALLERS: usize = 256;
const THROUGHPUT_FOR: Duration = Duration::from_secs(5);

type Client = api::monitor_client::MonitorClient<Channel>;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

fn uuid(n: u32) -> String {
    format!("f100d000-0000-4000-8000-{n:012}")
}

async fn boot_all(channels: &[Channel]) -> Vec<(u32, u64)> {
    let tasks: Vec<_> = (0..OSDS)
        .map(|n| {
            let mut m = Client::new(channels[n as usize % channels.len()].clone());
            tokio::spawn(async move {
                let id = apply_and_boot(&mut m, &uuid(n), &format!("host{}", n % 500), 4).await;
                (id, 1)
            })
        })
        .collect();
    let mut osds = Vec::with_capacity(tasks.len());
    for t in tasks {
        osds.push(t.await.unwrap());
    }
    osds
}

/// Times `WRITES` flag changes one after another.
async fn time_writes(m: &mut Client) -> Vec<Duration> {
    let flag = api::ClusterFlag::Noout as i32;
    let mut times = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let started = Instant::now();
        if i % 2 == 0 {
            m.set_flag(api::SetFlagRequest { flag }).await.unwrap();
        } else {
            m.unset_flag(api::UnsetFlagRequest { flag }).await.unwrap();
        }
        times.push(started.elapsed());
    }
    times.sort();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Sends every OSD's heartbeat once per second, spread evenly over the second, until `stop`.
/// Returns the heartbeats answered.
fn flood(
    channels: &[Channel],
    osds: Arc<Vec<(u32, u64)>>,
    stop: Arc<AtomicBool>,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<AtomicU64>) {
    let sent = Arc::new(AtomicU64::new(0));
    let senders = channels.len();
    let handles = (0..senders)
        .map(|s| {
            let mut m = Client::new(channels[s].clone());
            let (osds, stop, sent) = (osds.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                // Sender s beats OSDs s, s + senders, ...: FLOOD_RATE / senders a second.
                let mine: Vec<(u32, u64)> = osds.iter().skip(s).step_by(senders).copied().collect();
                let every = Duration::from_secs(1) / (FLOOD_RATE / senders as u32);
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for (id, instance) in mine.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    tick.tick().await;
                    m.heartbeat(api::HeartbeatRequest {
                        osd_id: *id,
                        boot_instance: *instance,
                    })
                    .await
                    .unwrap();
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (handles, sent)
}

/// Calls per second `CALLERS` concurrent callers complete in `THROUGHPUT_FOR`.
async fn throughput<F, Fut>(channels: &[Channel], call: F) -> f64
where
    F: Fn(Client, u32) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + THROUGHPUT_FOR;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let m = Client::new(channels[i % channels.len()].clone());
            let (done, call) = (done.clone(), call.clone());
            tokio::spawn(async move {
                let mut n = i as u32;
                while Instant::now() < until {
                    call(m.clone(), n % OSDS).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    n = n.wrapping_add(CALLERS as u32);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / THROUGHPUT_FOR.as_secs_f64()
}

async fn run() {
    let c = common::standalone_for_bench();
    let addr = c.monitors[0].grpc.clone();
    let channels = common::lazy_channels(&addr, CONNECTIONS);
    let osds = Arc::new(boot_all(&channels).await);
    // The writer has its own connection, as an operator's client would.
    let mut writer = Client::new(common::lazy_channels(&addr, 1).remove(0));

    let quiet = time_writes(&mut writer).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (senders, sent) = flood(&channels, osds.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sent_before, flood_started) = (sent.load(Ordering::Relaxed), Instant::now());
    let flooded = time_writes(&mut writer).await;
    let rate =
        (sent.load(Ordering::Relaxed) - sent_before) as f64 / flood_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }

    let osds_for_calls = osds.clone();
    let get_leader = throughput(&channels, |mut m, _| async move {
        m.get_leader(api::GetLeaderRequest {}).await.unwrap();
    })
    .await;
    let heartbeats = throughput(&channels, move |mut m, n| {
        let (id, instance) = osds_for_calls[n as usize];
        async move {
            m.heartbeat(api::HeartbeatRequest {
                osd_id: id,
                boot_instance: instance,
            })
            .await
            .unwrap();
        }
    })
    .await;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "| leader-only write (SetFlag/UnsetFlag, {WRITES} one after another) | p50 | p99 | max |"
    );
    println!("|---|---|---|---|");
    for (name, t) in [
        ("no heartbeats (baseline)".to_string(), &quiet),
        (format!("{rate:.0} heartbeats/s from {OSDS} OSDs"), &flooded),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms |",
            ms(percentile(t, 0.5)),
            ms(percentile(t, 0.99)),
            ms(*t.last().unwrap())
        );
    }
    println!(
        "| flood / baseline | {:.2}x | {:.2}x | |",
        ms(percentile(&flooded, 0.5)) / ms(percentile(&quiet, 0.5)),
        ms(percentile(&flooded, 0.99)) / ms(percentile(&quiet, 0.99))
    );
    println!();
    println!(
        "| calls/s, {CALLERS} concurrent callers, {CONNECTIONS} connections | calls/s | vs GetLeader |"
    );
    println!("|---|---|---|");
    println!("| GetLeader (baseline: no state) | {get_leader:.0} | 1.00 |");
    println!(
        "| Heartbeat ({OSDS} OSDs) | {heartbeats:.0} | {:.2} |",
        heartbeats / get_leader
    );
}
