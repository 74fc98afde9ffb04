//! WatchClusterMap against real monitors: every epoch in order across 1,000 changes; a full map
//! first for a subscriber behind the history; a stalled subscriber gets a full map, not a gap;
//! and a kill -9 of the leader resumes the stream on the new leader with no missed or repeated
//! epoch.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::api::{boot_osds, stalled_watcher};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::{MapEvent, MapWatcher, Scope};
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::proto::wire::watch_cluster_map_response_fields::Update;
use nix::sys::signal::Signal;
use tonic::transport::Endpoint;

const LONG: Duration = Duration::from_secs(90);

async fn toggle(m: &fastblock_monitor::client::MonitorClient, i: u32) -> u64 {
    let flag = api::ClusterFlag::Noin as i32;
    if i % 2 == 0 {
        m.set_flag(api::SetFlagRequest { flag })
            .await
            .unwrap()
            .osdmap_epoch
    } else {
        m.unset_flag(api::UnsetFlagRequest { flag })
            .await
            .unwrap()
            .osdmap_epoch
    }
}

/// Osdmap events until the watcher holds `epoch`.
async fn osdmap_events_until(w: &mut MapWatcher, epoch: u64) -> Vec<MapEvent> {
    let mut out = Vec::new();
    while w.maps().osdmap_epoch != Some(epoch) {
        let e = tokio::time::timeout(LONG, w.next())
            .await
            .expect("watch stalled")
            .unwrap();
        if matches!(e, MapEvent::Osdmap { .. }) {
            out.push(e);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_epoch_in_order() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));
    let mut w = MapWatcher::new(m.clone(), Scope::Osdmap);
    let start = toggle(&m, 1).await;
    let first = osdmap_events_until(&mut w, start).await;
    assert!(matches!(first[0], MapEvent::Osdmap { full: true, .. }));

    let writer = {
        let m = m.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..1000 {
                last = toggle(&m, i).await;
            }
            last
        })
    };
    let mut seen = Vec::new();
    let mut last = start;
    loop {
        let e = tokio::time::timeout(LONG, w.next())
            .await
            .expect("stalled")
            .unwrap();
        if let MapEvent::Osdmap {
            epoch,
            from_epoch,
            full,
            ..
        } = e
        {
            assert!(
                !full,
                "a subscriber that keeps up gets deltas: {e:?} after {last} (seen {})",
                seen.len()
            );
            assert_eq!(
                from_epoch, last,
                "each delta starts where the last one ended"
            );
            seen.push(epoch);
            last = epoch;
            if seen.len() == 1000 {
                break;
            }
        }
    }
    let end = writer.await.unwrap();
    let expected: Vec<u64> = (start + 1..=end).collect();
    assert_eq!(seen, expected, "every epoch, in order");
    assert_eq!(
        w.maps().flags,
        Vec::<i32>::new(),
        "noin toggled an even number of times"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_history_a_full_map_comes_first_then_deltas() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "watch_history_epochs = 10".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    boot_osds(&m, 1, 3, 3).await;
    let mut now = 0;
    for i in 0..40 {
        now = toggle(&m, i).await;
    }
    let mut raw = m.raw(&c.monitors[0].grpc).unwrap();
    let mut stream = raw
        .watch_cluster_map(api::WatchClusterMapRequest {
            osdmap_epoch: now - 20,
            pool_epochs: Default::default(),
            scope: api::WatchScope::Osdmap as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().into_fields();
    let Some(Update::Osdmap(u)) = first.update else {
        panic!("{first:?}")
    };
    assert!(u.full, "20 epochs behind a 10-epoch history: a full map");
    assert_eq!((u.epoch, u.osds.len()), (now, 3));
    // Within the history: a delta.
    let mut raw2 = m.raw(&c.monitors[0].grpc).unwrap();
    let mut near = raw2
        .watch_cluster_map(api::WatchClusterMapRequest {
            osdmap_epoch: now - 3,
            pool_epochs: Default::default(),
            scope: api::WatchScope::Osdmap as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Update::Osdmap(d)) = near.message().await.unwrap().unwrap().into_fields().update
    else {
        panic!("expected an osdmap update")
    };
    assert!(
        !d.full && d.from_epoch == now - 3 && d.epoch == now,
        "{d:?}"
    );
    assert!(d.osds.is_empty(), "only flags changed in those epochs");
    // Then one delta per change.
    for i in 0..5 {
        let e = toggle(&m, 40 + i).await;
        let Some(Update::Osdmap(u)) = stream
            .message()
            .await
            .unwrap()
            .unwrap()
            .into_fields()
            .update
        else {
            panic!("expected an osdmap update")
        };
        assert_eq!((u.full, u.from_epoch, u.epoch), (false, e - 1, e));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_gets_a_full_map_not_a_gap() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "watch_history_epochs = 10".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    boot_osds(&m, 1, 3, 3).await;
    // A tiny HTTP/2 window, so that not reading really stalls the monitor's sender.
    let channel = Endpoint::from_shared(format!("http://{}", c.monitors[0].grpc))
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let mut raw = api::monitor_client::MonitorClient::new(channel);
    let mut stream = raw
        .watch_cluster_map(api::WatchClusterMapRequest {
            osdmap_epoch: 0,
            pool_epochs: Default::default(),
            scope: api::WatchScope::Osdmap as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Update::Osdmap(first)) = stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .into_fields()
        .update
    else {
        panic!("expected an osdmap update")
    };
    // Stall while the map changes 600 times (more than the 256 snapshots the leader keeps).
    let mut end = 0;
    for i in 0..600 {
        end = toggle(&m, i).await;
    }
    let mut epoch = first.epoch;
    let mut fulls = 0;
    while epoch < end {
        let msg = tokio::time::timeout(LONG, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Some(Update::Osdmap(u)) = msg.into_fields().update else {
            continue;
        };
        if u.full {
            fulls += 1;
        } else {
            assert_eq!(
                u.from_epoch, epoch,
                "no gap: each delta starts where we are"
            );
        }
        assert!(u.epoch > epoch, "epochs only grow");
        epoch = u.epoch;
    }
    assert!(
        fulls >= 1,
        "the stalled subscriber was caught up with a full map"
    );
    assert_eq!(epoch, end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_on_the_new_leader_without_a_gap() {
    let mut c = TestCluster::new(3, ClusterOptions::default());
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let m = Arc::new(c.cluster_client());
    boot_osds(&m, 1, 3, 3).await;
    let mut w = MapWatcher::new(m.clone(), Scope::All);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (m, stop) = (m.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let flag = api::ClusterFlag::Noin as i32;
                let _ = if i % 2 == 0 {
                    m.set_flag(api::SetFlagRequest { flag }).await.map(|_| ())
                } else {
                    m.unset_flag(api::UnsetFlagRequest { flag })
                        .await
                        .map(|_| ())
                };
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut epochs = Vec::new();
    let mut connected = 0;
    let mut killed = false;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let e = tokio::time::timeout(LONG, w.next())
            .await
            .expect("stalled")
            .unwrap();
        match e {
            MapEvent::Connected { .. } => connected += 1,
            MapEvent::Osdmap {
                epoch,
                from_epoch,
                full,
                ..
            } => {
                if let Some(prev) = epochs.last() {
                    assert!(!full, "no resync after the first map");
                    assert_eq!(from_epoch, *prev, "no missed epoch");
                    assert!(epoch > *prev, "no repeated epoch");
                }
                epochs.push(epoch);
            }
            _ => {}
        }
        if !killed && started.elapsed() > Duration::from_secs(3) {
            c.signal(leader, Signal::SIGKILL);
            killed = true;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(connected >= 2, "the stream was reopened on the new leader");
    // Catch up with the last writes, then the watcher's map equals the leader's.
    let now = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .unwrap();
    let map = now.osdmap.unwrap();
    while w.maps().osdmap_epoch != Some(map.epoch) {
        tokio::time::timeout(LONG, w.next())
            .await
            .expect("stalled")
            .unwrap();
    }
    assert_eq!(w.maps().flags, map.flags);
    assert_eq!(w.maps().osds.len(), map.osds.len());
    for o in &map.osds {
        assert_eq!(w.maps().osds.get(&o.id), Some(o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_wakes_every_watcher_at_once() {
    // Progress messages only every minute: an update that arrives must have been woken by its
    // commit. (A watcher once could miss the wake-up when it came before the snapshot was in
    // the history, and waited for the next progress tick.)
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "watch_progress_every = \"60s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));
    let start = toggle(&m, 0).await;
    let mut watchers = Vec::new();
    for _ in 0..50 {
        let mut w = MapWatcher::new(m.clone(), Scope::Osdmap);
        osdmap_events_until(&mut w, start).await;
        watchers.push(w);
    }
    for i in 1..=20 {
        let epoch = toggle(&m, i).await;
        for w in &mut watchers {
            let got =
                tokio::time::timeout(Duration::from_secs(10), osdmap_events_until(w, epoch)).await;
            assert!(got.is_ok(), "a watcher missed the wake-up of epoch {epoch}");
        }
    }
}

/// A 65,536-PG pool on three OSDs: its full pgmap is over a MiB. Returns its size in bytes.
async fn big_pool(m: &fastblock_monitor::client::MonitorClient) -> u64 {
    boot_osds(m, 1, 3, 3).await;
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
    assert!(size > 1 << 20, "full pgmap of {size} bytes");
    size
}

/// Waits until `series` satisfies `cond`.
fn until_metric(c: &TestCluster, series: &str, what: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        if let Some(v) = c.metric(0, series)
            && cond(v)
        {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_watchers_share_one_copy_of_the_map() {
    // 200 watchers that never read, each on its own connection, all sent the same full pgmap
    // of over a MiB: they hold one buffer between them, not one copy each.
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    let size = big_pool(&m).await;
    let pid = c.monitors[0].pid().unwrap();
    let before = common::proc_memory(pid, "VmRSS");
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(stalled_watcher(&c.monitors[0].grpc).await);
    }
    until_metric(
        &c,
        "fastblock_watch_updates_sent_total",
        "200 updates sent",
        |v| v >= 200.0,
    );
    // Every stream holds the update it cannot send; the distinct bytes held are one map.
    let held = until_metric(&c, "fastblock_watch_held_bytes", "updates held", |v| {
        v >= size as f64
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held_later = c.metric(0, "fastblock_watch_held_bytes").unwrap();
    let during = common::proc_memory(pid, "VmRSS");
    eprintln!(
        "map {size} bytes; held {held} then {held_later}; RSS {} MB before, {} MB with 200 stalled watchers",
        before >> 20,
        during >> 20
    );
    assert!(
        held_later < 2.0 * size as f64,
        "one copy, not one per watcher: {held_later} bytes held for a {size}-byte map"
    );
    // One copy each would be 200 × the map (over 200 MB).
    assert!(
        during.saturating_sub(before) < 100 << 20,
        "RSS grew from {before} to {during}"
    );
    drop(streams);
    until_metric(&c, "fastblock_watch_held_bytes", "holds released", |v| {
        v == 0.0
    });
    until_metric(&c, "fastblock_watch_streams", "streams closed", |v| {
        v == 0.0
    });
    eprintln!(
        "RSS {} MB after the watchers left",
        common::proc_memory(pid, "VmRSS") >> 20
    );
    assert_eq!(
        c.metric(0, "fastblock_watch_streams_cut_total"),
        Some(0.0),
        "within the budget nobody is cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_watch_budget_the_slowest_watcher_is_cut() {
    // Budget 1 MiB; two stalled watchers hold full maps of different epochs (over a MiB each):
    // the older one's connection is closed, the newer one still gets its map.
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "watch_buffer_budget = 1048576".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    big_pool(&m).await;
    let mut first = stalled_watcher(&c.monitors[0].grpc).await;
    until_metric(
        &c,
        "fastblock_watch_held_bytes",
        "the first map held",
        |v| v > 0.0,
    );
    assert_eq!(c.metric(0, "fastblock_watch_streams_cut_total"), Some(0.0));
    // A new pool epoch: PG 0's leader reports in (creating → active).
    let map = m.get_pg_map(api::GetPgMapRequest::default()).await.unwrap();
    let pg0 = map.pools[0].pgs[0].clone();
    m.leader_be_elected(api::LeaderBeElectedRequest {
        leader_id: pg0.members[0],
        pool_id: map.pools[0].pool_id,
        pg_id: 0,
        members: pg0.members.clone(),
        new_members: Vec::new(),
    })
    .await
    .unwrap();
    let mut second = stalled_watcher(&c.monitors[0].grpc).await;
    until_metric(
        &c,
        "fastblock_watch_streams_cut_total",
        "a watcher cut",
        |v| v >= 1.0,
    );
    // The first watcher's connection is gone: reading ends in an error, not a full map.
    let first_result = tokio::time::timeout(LONG, async {
        loop {
            match first.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the cut stream ends");
    assert!(first_result.is_err(), "cut, not a clean end");
    // The newer watcher reads its full map.
    let msg = tokio::time::timeout(LONG, second.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(Update::Pgmap(u)) = msg.into_fields().update else {
        panic!("expected a pgmap update");
    };
    assert!(u.full);
    assert_eq!(u.pgs.len(), 65_536);
    assert!(
        c.log(0)
            .contains("closing the connection of the slowest watcher")
    );
}
