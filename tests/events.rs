//! The event log against real monitors: each event produced by the action that causes it with
//! its payload and epochs, resume across many events and across a kill -9 failover, watchers
//! on a standby, retention and the errors of bad resume points and filters.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::api::{boot_osds, expect_err};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::{EventItem, EventStart, EventWatcher, MonitorClient};
use fastblock_monitor::proto::monitor as api;
use serde_json::Value;
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

/// Reads events (skipping progress and connection notices) until `done` says enough, within
/// `LONG`.
async fn collect(
    w: &mut EventWatcher,
    mut done: impl FnMut(&[api::Event]) -> bool,
) -> Vec<api::Event> {
    let mut got = Vec::new();
    tokio::time::timeout(LONG, async {
        while !done(&got) {
            if let EventItem::Event(e) = w.next().await.expect("watch") {
                got.push(e);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("events did not come; got {got:#?}"));
    got
}

/// ListEvents: the `last` most recent events of `types` (after_id 0).
async fn recent(
    m: &MonitorClient,
    last: u32,
    types: &[&str],
) -> Result<api::ListEventsResponse, fastblock_monitor::client::ClientError> {
    m.list_events(api::ListEventsRequest {
        last,
        after_id: 0,
        types: types.iter().map(|t| t.to_string()).collect(),
    })
    .await
}

fn data(e: &api::Event) -> Value {
    serde_json::from_str(&e.data).expect("data is JSON")
}

fn find<'a>(events: &'a [api::Event], kind: &str, subject: &str) -> &'a api::Event {
    events
        .iter()
        .find(|e| e.r#type == kind && e.subject == subject)
        .unwrap_or_else(|| panic!("no {kind} {subject} in {events:#?}"))
}

fn assert_contiguous(events: &[api::Event]) {
    for w in events.windows(2) {
        assert_eq!(w[1].id, w[0].id + 1, "ids follow each other: {w:#?}");
    }
}

async fn set_flag(m: &MonitorClient, flag: api::ClusterFlag, on: bool) {
    if on {
        m.set_flag(api::SetFlagRequest { flag: flag as i32 })
            .await
            .expect("set flag");
    } else {
        m.unset_flag(api::UnsetFlagRequest { flag: flag as i32 })
            .await
            .expect("unset flag");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_produces_its_event_with_payload_and_epochs() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));

    // The leader recorded its election.
    let history = recent(&m, 10, &["monitor."]).await.unwrap();
    let elected = &history.events[0];
    assert_eq!(elected.r#type, "monitor.leader_elected");
    assert_eq!(elected.id, 1, "the first event of a new cluster");
    assert!(data(elected)["leader_epoch"].as_u64().unwrap() > 0);

    let mut w = EventWatcher::new(m.clone(), EventStart::Now, Vec::new());
    match w.next().await.unwrap() {
        EventItem::Connected { .. } => {}
        other => panic!("{other:?}"),
    }
    // Five OSDs: applied, booted, up and in each.
    let mut osds = boot_osds(&m, 1, 5, 5).await;
    let got = collect(&mut w, |g| g.len() >= 20).await;
    assert_contiguous(&got);
    for o in &osds {
        let subject = format!("osd.{}", o.id);
        let applied = find(&got, "osd.applied", &subject);
        assert_eq!(data(applied)["uuid"], o.uuid.as_str());
        let booted = find(&got, "osd.booted", &subject);
        assert_eq!(data(booted)["host"], o.host.as_str());
        assert_eq!(data(booted)["instance"], o.instance);
        assert_eq!(data(booted)["address"], "10.1.2.3");
        let up = find(&got, "osd.up", &subject);
        let r#in = find(&got, "osd.in", &subject);
        assert!(booted.id < up.id && up.id < r#in.id, "booted, up, in");
        assert!(up.osdmap_epoch > 0 && up.osdmap_epoch == r#in.osdmap_epoch);
    }
    let osdmap = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        got.last().unwrap().osdmap_epoch,
        osdmap.epoch,
        "the last event carries the epoch the map is at"
    );

    // One of them stopped, out and purged (before it holds PGs).
    let gone = osds.pop().unwrap();
    let subject = format!("osd.{}", gone.id);
    m.osd_stop(api::OsdStopRequest { osd_id: gone.id })
        .await
        .unwrap();
    m.osd_out(api::OsdOutRequest { osd_id: gone.id })
        .await
        .unwrap();
    m.purge_osd(api::PurgeOsdRequest { osd_id: gone.id })
        .await
        .unwrap();
    let got = collect(&mut w, |g| g.iter().any(|e| e.r#type == "osd.purged")).await;
    assert_eq!(data(find(&got, "osd.down", &subject))["reason"], "stopped");
    assert_eq!(data(find(&got, "osd.out", &subject))["reason"], "manual");
    assert_eq!(
        data(find(&got, "osd.purged", &subject))["uuid"],
        gone.uuid.as_str()
    );

    // A pool.
    let created = m
        .create_pool(api::CreatePoolRequest {
            name: "rbd".to_string(),
            pg_size: 3,
            pg_count: 32,
            failure_domain: "host".to_string(),
            root: String::new(),
        })
        .await
        .unwrap();
    let got = collect(&mut w, |g| g.iter().any(|e| e.r#type == "pool.created")).await;
    let pool = find(&got, "pool.created", "pool.rbd");
    assert_eq!(data(pool)["pg_count"], 32);
    assert_eq!(data(pool)["size"], 3);
    assert_eq!(pool.pool_id, created.pool_id);
    assert!(pool.pool_epoch > 0);

    // Flags, set and cleared.
    set_flag(&m, api::ClusterFlag::Noout, true).await;
    set_flag(&m, api::ClusterFlag::Noout, false).await;
    let got = collect(&mut w, |g| g.iter().any(|e| e.r#type == "flag.unset")).await;
    let set = find(&got, "flag.set", "flag.noout");
    let unset = find(&got, "flag.unset", "flag.noout");
    assert_eq!(data(set)["flag"], "noout");
    assert_eq!(unset.osdmap_epoch, set.osdmap_epoch + 1);

    // Images.
    m.create_image(api::CreateImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "vm1".to_string(),
        size: 1 << 30,
        object_size: 0,
    })
    .await
    .unwrap();
    m.resize_image(api::ResizeImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "vm1".to_string(),
        size: 2 << 30,
        allow_shrink: false,
    })
    .await
    .unwrap();
    m.remove_image(api::RemoveImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "vm1".to_string(),
    })
    .await
    .unwrap();
    let got = collect(&mut w, |g| g.iter().any(|e| e.r#type == "image.removed")).await;
    assert_eq!(
        got.iter()
            .filter(|e| e.r#type.starts_with("image."))
            .map(|e| e.r#type.as_str())
            .collect::<Vec<_>>(),
        ["image.created", "image.resized", "image.removed"]
    );
    let resized = find(&got, "image.resized", "image.rbd/vm1");
    assert_eq!(data(resized)["from"], 1u64 << 30);
    assert_eq!(data(resized)["to"], 2u64 << 30);

    // Out, weight, in: the PGs of the pool change state on the way.
    let victim = osds[0].id;
    m.osd_out(api::OsdOutRequest { osd_id: victim })
        .await
        .unwrap();
    m.set_osd_weight(api::SetOsdWeightRequest {
        osd_id: victim,
        weight: 2.0,
    })
    .await
    .unwrap();
    m.osd_in(api::OsdInRequest { osd_id: victim })
        .await
        .unwrap();
    let subject = format!("osd.{victim}");
    let got = collect(&mut w, |g| {
        g.iter()
            .any(|e| e.r#type == "osd.in" && e.subject == subject)
    })
    .await;
    assert_eq!(data(find(&got, "osd.out", &subject))["reason"], "manual");
    let weight = find(&got, "osd.weight_changed", &subject);
    assert_eq!(data(weight)["from"], 1.0);
    assert_eq!(data(weight)["to"], 2.0);
    // A planned stop.
    m.osd_stop(api::OsdStopRequest { osd_id: victim })
        .await
        .unwrap();
    // Deleting the pool.
    m.delete_pool(api::DeletePoolRequest {
        name: "rbd".to_string(),
    })
    .await
    .unwrap();
    let got = collect(&mut w, |g| g.iter().any(|e| e.r#type == "pool.deleted")).await;
    assert_eq!(
        data(find(&got, "pool.deleted", "pool.rbd"))["pool"],
        created.pool_id
    );

    // The history holds the same events as the stream, in order, gap-free.
    let all = recent(&m, 10_000, &[]).await.unwrap();
    assert_eq!(all.events.first().unwrap().id, 1);
    assert_contiguous(&all.events);
    assert_eq!(all.latest_id, all.events.last().unwrap().id);
    assert_eq!(all.oldest_id, 1);
    let metric = c.metric(0, "fastblock_events_written_total").unwrap();
    assert_eq!(metric as u64, all.latest_id);

    // A leader that stops says so before it resigns; the next term records its election.
    c.signal(0, nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(0, LONG);
    c.start(0);
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    let monitors = tokio::time::timeout(LONG, async {
        loop {
            let r = recent(&m, 10, &["monitor."]).await.unwrap();
            if r.events.len() >= 3 {
                return r.events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the second term's election");
    let seen: Vec<(&str, u64)> = monitors
        .iter()
        .map(|e| (e.r#type.as_str(), data(e)["leader_epoch"].as_u64().unwrap()))
        .collect();
    let first = seen[0].1;
    assert_eq!(seen[0], ("monitor.leader_elected", first));
    assert_eq!(seen[1], ("monitor.stepped_down", first), "{seen:?}");
    assert_eq!(seen[2].0, "monitor.leader_elected");
    assert!(seen[2].1 > first);
    assert_eq!(data(&monitors[1])["reason"], "stopping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resumes_across_a_thousand_events_with_none_missed_or_repeated() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));
    let mut w = EventWatcher::new(m.clone(), EventStart::Now, vec!["flag.".to_string()]);
    assert!(matches!(
        w.next().await.unwrap(),
        EventItem::Connected { .. }
    ));
    set_flag(&m, api::ClusterFlag::Noout, true).await;
    let first = collect(&mut w, |g| !g.is_empty()).await;
    let resume_after = first[0].id;
    drop(w);
    // 1,000 events while nobody watches (and 20 of another type the filter skips).
    for i in 0..1000 {
        set_flag(&m, api::ClusterFlag::Noout, i % 2 == 1).await;
        if i % 50 == 0 {
            set_flag(&m, api::ClusterFlag::Noin, i % 100 == 0).await;
        }
    }
    // Unfiltered, the ids follow each other (the health task's FLAGS_SET events come in
    // between); then the flag events alone.
    let is_flag = |e: &api::Event| e.r#type.starts_with("flag.");
    let mut w = EventWatcher::new(m.clone(), EventStart::After(resume_after), Vec::new());
    let all = collect(&mut w, |g| g.iter().filter(|e| is_flag(e)).count() >= 1020).await;
    assert_eq!(all[0].id, resume_after + 1, "none missed, none repeated");
    assert_contiguous(&all);
    let got: Vec<api::Event> = all.into_iter().filter(is_flag).collect();
    assert_eq!(got.len(), 1020);
    let noout: Vec<&str> = got
        .iter()
        .filter(|e| e.subject == "flag.noout")
        .map(|e| e.r#type.as_str())
        .collect();
    assert_eq!(noout.len(), 1000);
    assert!(
        noout
            .iter()
            .enumerate()
            .all(|(i, t)| *t == if i % 2 == 0 { "flag.unset" } else { "flag.set" }),
        "in commit order"
    );
    // A filter by prefix sees only its types, and progress marks move past the others.
    let mut only_noin = EventWatcher::new(
        m.clone(),
        EventStart::After(resume_after),
        vec!["flag.set".to_string()],
    );
    let got = collect(&mut only_noin, |g| g.len() >= 510).await;
    assert!(got.iter().all(|e| e.r#type == "flag.set"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resume_points_and_filters_are_clear_errors_and_retention_trims_the_log() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "events_max_count = 1000\n".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    let raw = || m.raw(&m.addresses()[0]).unwrap();

    // Filters.
    for bad in ["OSD.", "", "osd down", &"x".repeat(65)] {
        let r = raw()
            .watch_events(api::WatchEventsRequest {
                start: api::EventStart::Now as i32,
                after_id: 0,
                types: vec![bad.to_string()],
            })
            .await
            .map_err(fastblock_monitor::client::ClientError::Status);
        expect_err(r.map(|_| ()), Code::InvalidArgument, "INVALID_EVENT_TYPE");
    }
    let r = m
        .list_events(api::ListEventsRequest {
            last: 1,
            after_id: 0,
            types: (0..33).map(|i| format!("t{i}")).collect(),
        })
        .await;
    expect_err(r, Code::InvalidArgument, "INVALID_EVENT_TYPE");

    // An id never written.
    let r = raw()
        .watch_events(api::WatchEventsRequest {
            start: api::EventStart::After as i32,
            after_id: 1_000_000,
            types: Vec::new(),
        })
        .await
        .map_err(fastblock_monitor::client::ClientError::Status);
    expect_err(r.map(|_| ()), Code::OutOfRange, "EVENTS_AHEAD");

    // 1,500 events; the retention (applied when a term starts, and every 30 s) keeps 1,000.
    for i in 0..1500 {
        set_flag(&m, api::ClusterFlag::Noup, i % 2 == 0).await;
    }
    let before = recent(&m, 1, &[]).await.unwrap();
    assert_eq!(before.oldest_id, 1);
    let latest = before.latest_id;
    c.signal(0, nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(0, LONG);
    c.start(0);
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    // The retention deletes in steps; wait until it is within its bound.
    let mut trimmed = None;
    for _ in 0..300 {
        let now = recent(&m, 1, &[]).await.unwrap();
        if now.latest_id - now.oldest_id < 1000 {
            trimmed = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = trimmed.expect("the retention trimmed the log to events_max_count");
    assert!(now.latest_id > latest, "the new term's election event");
    let kept = now.latest_id - now.oldest_id + 1;
    assert!(kept <= 1000 && kept > 900, "kept {kept}");
    // A resume point the retention deleted: OUT_OF_RANGE naming the oldest kept.
    let r = m
        .raw(&m.addresses()[0])
        .unwrap()
        .watch_events(api::WatchEventsRequest {
            start: api::EventStart::After as i32,
            after_id: 5,
            types: Vec::new(),
        })
        .await
        .map_err(fastblock_monitor::client::ClientError::Status);
    let status = match r {
        Err(fastblock_monitor::client::ClientError::Status(s)) => s,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert_eq!(status.code(), Code::OutOfRange);
    assert!(
        status
            .message()
            .contains(&format!("the oldest kept is {}", now.oldest_id)),
        "{}",
        status.message()
    );
    let r = m
        .list_events(api::ListEventsRequest {
            last: 10,
            after_id: 5,
            types: Vec::new(),
        })
        .await;
    expect_err(r, Code::OutOfRange, "EVENTS_COMPACTED");
    // From the oldest kept on, everything is there.
    let mut w = EventWatcher::new(Arc::new(m), EventStart::Oldest, Vec::new());
    let got = collect(&mut w, |g| g.last().is_some_and(|e| e.id == now.latest_id)).await;
    assert_eq!(got[0].id, now.oldest_id);
    assert_contiguous(&got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_a_standby_and_across_a_kill_9_failover_miss_nothing() {
    let mut c = TestCluster::new(3, ClusterOptions::default());
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let standby = (leader + 1) % 3;
    let cluster = Arc::new(c.cluster_client());
    // One watcher bound to a standby only, one that may use any monitor.
    let mut on_standby =
        EventWatcher::new(Arc::new(c.client(standby)), EventStart::Now, Vec::new());
    let mut anywhere = EventWatcher::new(cluster.clone(), EventStart::Now, Vec::new());
    for w in [&mut on_standby, &mut anywhere] {
        match w.next().await.unwrap() {
            EventItem::Connected { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    for i in 0..50 {
        set_flag(&cluster, api::ClusterFlag::Noout, i % 2 == 0).await;
    }
    c.kill9(leader);
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    c.wait_leader(&others, LONG);
    for i in 0..50 {
        set_flag(&cluster, api::ClusterFlag::Norebalance, i % 2 == 0).await;
    }
    let want =
        |g: &[api::Event]| g.iter().filter(|e| e.subject == "flag.norebalance").count() >= 50;
    let a = collect(&mut on_standby, want).await;
    let b = collect(&mut anywhere, want).await;
    for got in [&a, &b] {
        assert_contiguous(got);
        assert_eq!(got.iter().filter(|e| e.subject == "flag.noout").count(), 50);
        // The new leader's election (more than one if a term ended early), each once.
        let terms: Vec<u64> = got
            .iter()
            .filter(|e| e.r#type == "monitor.leader_elected")
            .map(|e| data(e)["leader_epoch"].as_u64().unwrap())
            .collect();
        assert!(!terms.is_empty(), "the new leader's election is an event");
        let mut distinct = terms.clone();
        distinct.dedup();
        assert_eq!(distinct, terms, "one event per term");
    }
    // "Now" is when each stream opened (the first leader's election may fall on either side).
    let from = a[0].id.max(b[0].id);
    let common = |g: &[api::Event]| -> Vec<api::Event> {
        g.iter().filter(|e| e.id >= from).cloned().collect()
    };
    assert_eq!(common(&a), common(&b), "both saw the same log");
}
