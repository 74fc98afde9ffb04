//! Health checks with a lifecycle, against real monitors: each check raised, updated and
//! cleared exactly once (read back from the event log), mutes that end by ttl, by worsening,
//! by clearing and by the operator, muted checks left out of the overall status, refusals that
//! change nothing, and a failover that neither raises again nor forgets a mute.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::api::{boot_osds, boot_request, expect_err};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::{EventItem, EventStart, EventWatcher, MonitorClient};
use fastblock_monitor::proto::monitor as api;
use serde_json::Value;
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

/// The next health event (skipping progress marks), within `LONG`.
async fn next_health(w: &mut EventWatcher) -> api::Event {
    tokio::time::timeout(LONG, async {
        loop {
            if let EventItem::Event(e) = w.next().await.expect("watch") {
                return e;
            }
        }
    })
    .await
    .expect("a health event within a minute")
}

fn data(e: &api::Event) -> Value {
    serde_json::from_str(&e.data).expect("data is JSON")
}

/// Asserts the next health event is `kind` of `code`, and returns its data.
async fn expect_next(w: &mut EventWatcher, kind: &str, code: &str) -> Value {
    let e = next_health(w).await;
    assert_eq!(
        (e.r#type.as_str(), e.subject.as_str()),
        (kind, format!("health.{code}").as_str()),
        "{e:#?}"
    );
    data(&e)
}

/// Like [`expect_next`], skipping the events of other checks.
async fn expect_next_of(w: &mut EventWatcher, kind: &str, code: &str) -> Value {
    let subject = format!("health.{code}");
    loop {
        let e = next_health(w).await;
        if e.subject == subject {
            assert_eq!(e.r#type, kind, "{e:#?}");
            return data(&e);
        }
    }
}

async fn flag(m: &MonitorClient, flag: api::ClusterFlag, on: bool) {
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

async fn mute(
    m: &MonitorClient,
    code: &str,
    ttl_ms: u64,
    sticky: bool,
) -> Result<api::HealthMutesResponse, fastblock_monitor::client::ClientError> {
    m.mute_health(api::MuteHealthRequest {
        code: code.to_string(),
        ttl_ms,
        sticky,
    })
    .await
}

async fn status(m: &MonitorClient) -> api::GetClusterStatusResponse {
    m.get_cluster_status(api::GetClusterStatusRequest {})
        .await
        .expect("status")
}

fn check<'a>(s: &'a api::GetClusterStatusResponse, code: &str) -> Option<&'a api::HealthCheck> {
    s.checks.iter().find(|c| c.code == code)
}

/// The newest event id of the log.
async fn latest(m: &MonitorClient) -> u64 {
    m.list_events(api::ListEventsRequest {
        last: 1,
        after_id: 0,
        types: Vec::new(),
    })
    .await
    .expect("list events")
    .latest_id
}

/// Every health event after `after` (at most 1,000).
async fn health_events_after(m: &MonitorClient, after: u64) -> Vec<api::Event> {
    m.list_events(api::ListEventsRequest {
        last: 0,
        after_id: after,
        types: vec!["health.".to_string()],
    })
    .await
    .expect("list events")
    .events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_are_raised_updated_and_cleared_once_and_mutes_end_as_documented() {
    // OSDs that stop heartbeating stay up: only OsdStop takes them down here.
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"1h\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));
    let start = latest(&m).await;
    let mut w = EventWatcher::new(
        m.clone(),
        EventStart::After(start),
        vec!["health.".to_string()],
    );

    // FLAGS_SET: raised with one flag, updated with two, updated back, cleared.
    flag(&m, api::ClusterFlag::Noout, true).await;
    let raised = expect_next(&mut w, "health.check_raised", "FLAGS_SET").await;
    assert_eq!(raised["count"], 1);
    assert_eq!(raised["severity"], "HEALTH_WARN");
    flag(&m, api::ClusterFlag::Noin, true).await;
    let updated = expect_next(&mut w, "health.check_updated", "FLAGS_SET").await;
    assert_eq!(
        (
            updated["count"].as_u64(),
            updated["previous_count"].as_u64()
        ),
        (Some(2), Some(1))
    );
    flag(&m, api::ClusterFlag::Noin, false).await;
    expect_next(&mut w, "health.check_updated", "FLAGS_SET").await;
    flag(&m, api::ClusterFlag::Noout, false).await;
    let cleared = expect_next(&mut w, "health.check_cleared", "FLAGS_SET").await;
    assert!(cleared["duration_ms"].as_u64().unwrap() > 0);

    // OSD_DOWN, muted: still listed (muted), no longer counted in the overall status.
    let osds = boot_osds(&m, 1, 4, 4).await;
    m.osd_stop(api::OsdStopRequest { osd_id: osds[0].id })
        .await
        .unwrap();
    assert_eq!(
        expect_next(&mut w, "health.check_raised", "OSD_DOWN").await["count"],
        1
    );
    let mutes = mute(&m, "OSD_DOWN", 3_600_000, false).await.unwrap();
    assert_eq!(mutes.mutes.len(), 1);
    assert!(mutes.mutes[0].until_ms > 0 && !mutes.mutes[0].sticky);
    let muted = expect_next(&mut w, "health.muted", "OSD_DOWN").await;
    assert_eq!(muted["ttl_ms"], 3_600_000);
    let s = status(&m).await;
    let down = check(&s, "OSD_DOWN").expect("a muted check is still listed");
    assert!(down.muted);
    assert_eq!(down.count, 1);
    assert!(down.since_ms > 0);
    assert_eq!(s.health, api::HealthStatus::Ok as i32, "{s:#?}");
    assert_eq!(s.mutes.len(), 1);

    // Worse than when muted: updated, then unmuted (worsened), in that order.
    m.osd_stop(api::OsdStopRequest { osd_id: osds[1].id })
        .await
        .unwrap();
    let updated = expect_next(&mut w, "health.check_updated", "OSD_DOWN").await;
    assert_eq!(updated["muted"], true);
    let unmuted = expect_next(&mut w, "health.unmuted", "OSD_DOWN").await;
    assert_eq!(unmuted["reason"], "worsened");
    assert_eq!(status(&m).await.health, api::HealthStatus::Warn as i32);

    // Better again: one update.
    let o = &osds[1];
    m.boot(boot_request(o.id, &o.uuid, &o.host, 5001, 4))
        .await
        .expect("boot again");
    let better = expect_next(&mut w, "health.check_updated", "OSD_DOWN").await;
    assert_eq!(better["count"], 1);

    // A ttl ends a mute by itself.
    mute(&m, "OSD_DOWN", 1_500, false).await.unwrap();
    expect_next(&mut w, "health.muted", "OSD_DOWN").await;
    let expired = expect_next(&mut w, "health.unmuted", "OSD_DOWN").await;
    assert_eq!(expired["reason"], "expired");

    // A sticky mute outlives the clearing; the operator ends it.
    mute(&m, "OSD_DOWN", 0, true).await.unwrap();
    expect_next(&mut w, "health.muted", "OSD_DOWN").await;
    let o = &osds[0];
    m.boot(boot_request(o.id, &o.uuid, &o.host, 5000, 4))
        .await
        .expect("boot again");
    let cleared = expect_next(&mut w, "health.check_cleared", "OSD_DOWN").await;
    assert_eq!(cleared["muted"], true);
    assert_eq!(status(&m).await.mutes.len(), 1, "a sticky mute stays");
    let after_all = latest(&m).await;

    // Bad input: each refused with its reason, nothing changed and nothing announced.
    let before = status(&m).await.mutes;
    for (code, ttl, sticky, reason, grpc) in [
        (
            "osd_down",
            0,
            false,
            "INVALID_HEALTH_CHECK",
            Code::InvalidArgument,
        ),
        (
            "NO_SUCH_CHECK",
            0,
            false,
            "INVALID_HEALTH_CHECK",
            Code::InvalidArgument,
        ),
        ("", 0, false, "INVALID_HEALTH_CHECK", Code::InvalidArgument),
        (
            "FLAGS_SET",
            0,
            false,
            "HEALTH_CHECK_NOT_RAISED",
            Code::FailedPrecondition,
        ),
        (
            "OSD_DOWN",
            366 * 86_400_000,
            true,
            "INVALID_MUTE_TTL",
            Code::InvalidArgument,
        ),
    ] {
        expect_err(mute(&m, code, ttl, sticky).await, grpc, reason);
    }
    let long = "A".repeat(1000);
    let e = mute(&m, &long, 0, false).await.unwrap_err();
    assert_eq!(e.reason().as_deref(), Some("INVALID_HEALTH_CHECK"));
    assert!(
        e.to_string().len() < 600,
        "the code is not echoed whole: {e}"
    );
    expect_err(
        m.unmute_health(api::UnmuteHealthRequest {
            code: "FLAGS_SET".into(),
        })
        .await,
        Code::NotFound,
        "HEALTH_MUTE_NOT_FOUND",
    );
    assert_eq!(status(&m).await.mutes, before);
    let r = m
        .unmute_health(api::UnmuteHealthRequest {
            code: "OSD_DOWN".into(),
        })
        .await
        .unwrap();
    assert!(r.mutes.is_empty());
    assert_eq!(
        expect_next(&mut w, "health.unmuted", "OSD_DOWN").await["reason"],
        "operator"
    );
    assert_eq!(
        health_events_after(&m, after_all).await.len(),
        1,
        "the refusals announced nothing; the unmute once"
    );

    // The whole history: each transition exactly once, in order.
    let all: Vec<(String, String)> = health_events_after(&m, start)
        .await
        .into_iter()
        .map(|e| {
            (
                e.r#type,
                e.subject.trim_start_matches("health.").to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("health.check_raised", "FLAGS_SET"),
        ("health.check_updated", "FLAGS_SET"),
        ("health.check_updated", "FLAGS_SET"),
        ("health.check_cleared", "FLAGS_SET"),
        ("health.check_raised", "OSD_DOWN"),
        ("health.muted", "OSD_DOWN"),
        ("health.check_updated", "OSD_DOWN"),
        ("health.unmuted", "OSD_DOWN"),
        ("health.check_updated", "OSD_DOWN"),
        ("health.muted", "OSD_DOWN"),
        ("health.unmuted", "OSD_DOWN"),
        ("health.muted", "OSD_DOWN"),
        ("health.check_cleared", "OSD_DOWN"),
        ("health.unmuted", "OSD_DOWN"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(all, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_neither_raises_again_nor_forgets_a_mute() {
    let mut c = TestCluster::new(3, ClusterOptions::default());
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let m = Arc::new(c.cluster_client());
    let start = latest(&m).await;
    let mut w = EventWatcher::new(
        m.clone(),
        EventStart::After(start),
        vec!["health.".to_string()],
    );
    flag(&m, api::ClusterFlag::Noout, true).await;
    expect_next_of(&mut w, "health.check_raised", "FLAGS_SET").await;
    mute(&m, "FLAGS_SET", 3_600_000, false).await.unwrap();
    expect_next_of(&mut w, "health.muted", "FLAGS_SET").await;
    let since = check(&status(&m).await, "FLAGS_SET").unwrap().since_ms;
    let before_kill = latest(&m).await;

    c.kill9(leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.wait_leader(&others, LONG);
    // A few of the new leader's health rounds (it raises MON_DOWN for the killed monitor).
    let mut rounds = 0;
    while rounds < 50 {
        let s = status(&m).await;
        if check(&s, "MON_DOWN").is_some_and(|c| c.since_ms > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        rounds += 1;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = status(&m).await;
    let flags = check(&s, "FLAGS_SET").expect("still failing");
    assert_eq!(
        flags.since_ms, since,
        "the stored raise is kept, not made again"
    );
    assert!(flags.muted, "the mute survived: {s:#?}");
    let again: Vec<(String, String)> = health_events_after(&m, before_kill)
        .await
        .into_iter()
        .filter(|e| e.subject == "health.FLAGS_SET")
        .map(|e| (e.r#type, e.subject))
        .collect();
    assert!(
        again.is_empty(),
        "no transition of FLAGS_SET on failover: {again:?}"
    );

    // The new leader clears once, and the plain mute goes with the check.
    flag(&m, api::ClusterFlag::Noout, false).await;
    expect_next_of(&mut w, "health.check_cleared", "FLAGS_SET").await;
    assert_eq!(
        expect_next_of(&mut w, "health.unmuted", "FLAGS_SET").await["reason"],
        "cleared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_osd_late_with_its_heartbeats_is_warned_about_before_it_is_marked_down() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"6s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));
    let osds = boot_osds(&m, 1, 3, 3).await;
    // Every OSD beats every 300 ms; OSD 1 stops when told.
    let stop_one = tokio_util::sync::CancellationToken::new();
    let mut beats = Vec::new();
    for (k, o) in osds.iter().enumerate() {
        let (m, stop, id, instance) = (m.clone(), stop_one.clone(), o.id, o.instance);
        beats.push(tokio::spawn(async move {
            loop {
                if k == 0 && stop.is_cancelled() {
                    return;
                }
                let _ = m
                    .heartbeat(api::HeartbeatRequest {
                        osd_id: id,
                        boot_instance: instance,
                    })
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }));
    }
    // Enough intervals for every window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = latest(&m).await;
    let mut w = EventWatcher::new(
        m.clone(),
        EventStart::After(start),
        vec!["health.".to_string(), "osd.down".to_string()],
    );
    stop_one.cancel();
    let subject = format!("osd.{}", osds[0].id);
    let mut seen = Vec::new();
    while !seen.contains(&(
        "health.check_cleared".to_string(),
        "health.OSD_HEARTBEAT_LATE".to_string(),
    )) {
        let e = next_health(&mut w).await;
        if e.r#type == "health.check_raised" && e.subject == "health.OSD_HEARTBEAT_LATE" {
            let d = data(&e);
            assert_eq!(d["count"], 1, "{d}");
            let s = status(&m).await;
            if let Some(late) = check(&s, "OSD_HEARTBEAT_LATE") {
                assert!(
                    late.detail[0].starts_with(&format!("{subject} silent for ")),
                    "{late:?}"
                );
            }
        }
        seen.push((e.r#type, e.subject));
    }
    let at = |t: &str, s: &str| {
        seen.iter()
            .position(|(a, b)| a == t && b == s)
            .unwrap_or_else(|| panic!("no {t} {s} in {seen:?}"))
    };
    let raised = at("health.check_raised", "health.OSD_HEARTBEAT_LATE");
    let down = at("osd.down", &subject);
    let cleared = at("health.check_cleared", "health.OSD_HEARTBEAT_LATE");
    assert!(
        raised < down && down < cleared,
        "late, then down, then no longer late: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|(t, s)| t == "health.check_raised" && s == "health.OSD_HEARTBEAT_LATE")
            .count(),
        1,
        "{seen:?}"
    );
    for b in beats {
        b.abort();
    }
}

/// Waits (up to `LONG`) until `code` fails, and returns it.
async fn wait_check(m: &MonitorClient, code: &str) -> api::HealthCheck {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        if let Ok(s) = m.get_cluster_status(api::GetClusterStatusRequest {}).await
            && let Some(c) = check(&s, code)
            && c.since_ms > 0
        {
            return c.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{code} was not raised within {LONG:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_pgs_and_a_flapping_leadership_are_raised_and_cleared() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "pg_stuck_inactive_after = \"5s\"\nosd_down_after = \"1h\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));
    let start = latest(&m).await;
    boot_osds(&m, 1, 3, 3).await;
    // Nobody reports for the PGs: they stay creating, and are stuck after 5 s.
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".into(),
        pg_size: 3,
        pg_count: 8,
        failure_domain: "host".into(),
        root: String::new(),
    })
    .await
    .unwrap();
    let stuck = wait_check(&m, "PG_STUCK_INACTIVE").await;
    assert_eq!(stuck.count, 8);
    assert_eq!(stuck.severity, api::HealthStatus::Err as i32);
    assert!(stuck.detail[0].starts_with("pg rbd."), "{stuck:?}");
    m.delete_pool(api::DeletePoolRequest { name: "rbd".into() })
        .await
        .unwrap();
    let mut w = EventWatcher::new(
        m.clone(),
        EventStart::After(start),
        vec!["health.".to_string()],
    );
    expect_next_of(&mut w, "health.check_raised", "PG_STUCK_INACTIVE").await;
    expect_next_of(&mut w, "health.check_cleared", "PG_STUCK_INACTIVE").await;

    // Two restarts: three elections within ten minutes.
    for _ in 0..2 {
        c.signal(0, nix::sys::signal::Signal::SIGTERM);
        c.wait_exit(0, LONG);
        c.start(0);
        c.wait_leader(&[0], LONG);
    }
    let m = Arc::new(c.client(0));
    let flapping = wait_check(&m, "MON_LEADER_FLAPPING").await;
    assert_eq!(flapping.count, 3, "{flapping:?}");
    let events = health_events_after(&m, start).await;
    let raised: Vec<&api::Event> = events
        .iter()
        .filter(|e| e.subject == "health.MON_LEADER_FLAPPING")
        .collect();
    assert_eq!(raised.len(), 1, "{raised:#?}");
    assert_eq!(raised[0].r#type, "health.check_raised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_etcd_transactions_raise_etcd_slow() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            // Every commit waits 700 ms before its transaction: as the leader sees it, etcd
            // takes that long.
            env: vec![(
                "FASTBLOCK_FAILPOINTS".to_string(),
                "commit.before_txn=sleep(700)".to_string(),
            )],
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.client(0));
    for k in 0..6 {
        flag(&m, api::ClusterFlag::Noout, k % 2 == 0).await;
    }
    let slow = wait_check(&m, "ETCD_SLOW").await;
    assert!(
        slow.summary.starts_with("etcd transactions take "),
        "{slow:?}"
    );
    assert!(c.log(0).contains("ETCD_SLOW") || slow.count == 1);
}
