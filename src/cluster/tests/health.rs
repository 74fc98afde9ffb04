//! Stored health: each transition of a check announced exactly once (raised, updated when its
//! severity or count changes, cleared), mutes with their ends (operator, ttl, worsening,
//! clearing), refusals that change nothing, and a new leader's load that raises nothing again.

use super::*;
use crate::cluster::EventType;
use crate::cluster::command::{MuteHealth, ReconcileHealth, UnmuteHealth};
use crate::cluster::health::{MAX_MUTE_TTL_MS, MAX_MUTES, Observed, Severity};

fn seen(code: &str, severity: Severity, count: u64) -> Observed {
    Observed {
        code: code.to_string(),
        severity,
        count,
        summary: format!("{count} things fail"),
    }
}

fn reconcile(observed: Vec<Observed>, now_ms: u64) -> ReconcileHealth {
    ReconcileHealth {
        observed,
        now_ms,
        held: Vec::new(),
    }
}

fn mute(code: &str, ttl_ms: Option<u64>, sticky: bool, now_ms: u64) -> MuteHealth {
    MuteHealth {
        code: code.to_string(),
        ttl_ms,
        sticky,
        now_ms,
    }
}

fn kinds<R>(a: &Applied<R>) -> Vec<(EventType, String)> {
    a.events
        .iter()
        .map(|e| (e.kind, e.subject.clone()))
        .collect()
}

fn one(kind: EventType, code: &str) -> Vec<(EventType, String)> {
    vec![(kind, format!("health.{code}"))]
}

#[test]
fn a_check_is_raised_updated_and_cleared_once_each() {
    let mut s = cluster(3, 3);
    let mut store = Store::holding(&s);
    let raised = store.run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 1)], 1_000),
    );
    assert_eq!(
        kinds(&raised),
        one(EventType::HealthCheckRaised, "OSD_DOWN")
    );
    assert_eq!(raised.touched, [RecordKey::Health]);
    let data = &raised.events[0].data;
    assert_eq!(data["severity"], "HEALTH_WARN");
    assert_eq!(data["count"], 1);
    assert_eq!(data["muted"], false);
    assert_eq!(s.health().raised["OSD_DOWN"].since_ms, 1_000);
    // Held: nothing to write, no event.
    let same = assert_no_op(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 1)], 2_000),
    );
    assert!(same.events.is_empty());
    // A new summary alone is not news.
    let mut reworded = seen("OSD_DOWN", Severity::Warn, 1);
    reworded.summary = "reworded".into();
    assert!(
        assert_no_op(&mut s, reconcile(vec![reworded], 2_500))
            .events
            .is_empty()
    );
    // Count up, then severity up: one update each, with what it was.
    let more = store.run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 3)], 3_000),
    );
    assert_eq!(kinds(&more), one(EventType::HealthCheckUpdated, "OSD_DOWN"));
    assert_eq!(more.events[0].data["count"], 3);
    assert_eq!(more.events[0].data["previous_count"], 1);
    let worse = store.run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Err, 3)], 4_000),
    );
    assert_eq!(
        kinds(&worse),
        one(EventType::HealthCheckUpdated, "OSD_DOWN")
    );
    assert_eq!(worse.events[0].data["previous_severity"], "HEALTH_WARN");
    assert_eq!(worse.events[0].data["severity"], "HEALTH_ERR");
    store.assert_loads_as(&s);
    // Gone: cleared once, with how long it held; then nothing more.
    let cleared = store.run(&mut s, reconcile(vec![], 9_000));
    assert_eq!(
        kinds(&cleared),
        one(EventType::HealthCheckCleared, "OSD_DOWN")
    );
    assert_eq!(cleared.events[0].data["duration_ms"], 8_000);
    assert!(s.health().raised.is_empty());
    assert!(
        assert_no_op(&mut s, reconcile(vec![], 10_000))
            .events
            .is_empty()
    );
    store.assert_loads_as(&s);
}

#[test]
fn several_checks_change_in_one_transaction_and_a_hold_keeps_unseen_ones() {
    let mut s = cluster(3, 3);
    let both = run(
        &mut s,
        reconcile(
            vec![
                seen("PG_DEGRADED", Severity::Warn, 32),
                seen("FLAGS_SET", Severity::Warn, 1),
            ],
            1_000,
        ),
    );
    assert_eq!(both.events.len(), 2);
    assert!(
        both.events
            .iter()
            .all(|e| e.kind == EventType::HealthCheckRaised)
    );
    // A young term holds the clears of what it has not learned yet, but still raises and
    // updates.
    let held = run(
        &mut s,
        ReconcileHealth {
            observed: vec![seen("PG_DEGRADED", Severity::Warn, 16)],
            now_ms: 2_000,
            held: vec!["FLAGS_SET".to_string()],
        },
    );
    assert_eq!(
        kinds(&held),
        one(EventType::HealthCheckUpdated, "PG_DEGRADED")
    );
    assert!(s.health().raised.contains_key("FLAGS_SET"));
    let cleared = run(
        &mut s,
        reconcile(vec![seen("PG_DEGRADED", Severity::Warn, 16)], 3_000),
    );
    assert_eq!(
        kinds(&cleared),
        one(EventType::HealthCheckCleared, "FLAGS_SET")
    );
}

#[test]
fn a_new_leader_s_load_raises_nothing_again() {
    let mut s = cluster(3, 3);
    let mut store = Store::holding(&s);
    let observed = vec![
        seen("OSD_DOWN", Severity::Warn, 2),
        seen("PG_AVAILABILITY", Severity::Err, 5),
    ];
    store.run(&mut s, reconcile(observed.clone(), 1_000));
    store.run(&mut s, mute("OSD_DOWN", Some(60_000), false, 1_500));
    let mut loaded = store.load();
    assert_eq!(loaded.health(), s.health());
    assert!(
        assert_no_op(&mut loaded, reconcile(observed, 5_000))
            .events
            .is_empty()
    );
}

#[test]
fn a_mute_ends_by_ttl_by_worsening_by_clearing_or_by_the_operator() {
    let mut s = cluster(3, 3);
    let mut store = Store::holding(&s);
    store.run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 2)], 1_000),
    );
    // ttl: ends at 1 s + 10 s.
    let muted = store.run(&mut s, mute("OSD_DOWN", Some(10_000), false, 1_000));
    assert_eq!(kinds(&muted), one(EventType::HealthMuted, "OSD_DOWN"));
    assert_eq!(muted.events[0].data["until_ms"], 11_000);
    assert!(s.health().is_muted("OSD_DOWN"));
    assert_eq!(muted.reply.mutes["OSD_DOWN"].count, 2);
    // Better is not worse: the mute holds (the update is announced, flagged muted).
    let better = store.run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 1)], 5_000),
    );
    assert_eq!(
        kinds(&better),
        one(EventType::HealthCheckUpdated, "OSD_DOWN")
    );
    assert_eq!(better.events[0].data["muted"], true);
    assert!(s.health().is_muted("OSD_DOWN"));
    let expired = store.run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 1)], 11_000),
    );
    assert_eq!(kinds(&expired), one(EventType::HealthUnmuted, "OSD_DOWN"));
    assert_eq!(expired.events[0].data["reason"], "expired");
    // Worse than when muted (count 1 → 2): the update and the unmute, in one transaction.
    store.run(&mut s, mute("OSD_DOWN", None, false, 12_000));
    let worse = store.run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 2)], 13_000),
    );
    assert_eq!(
        kinds(&worse),
        [
            (EventType::HealthCheckUpdated, "health.OSD_DOWN".to_string()),
            (EventType::HealthUnmuted, "health.OSD_DOWN".to_string()),
        ]
    );
    assert_eq!(worse.events[1].data["reason"], "worsened");
    // Cleared: a plain mute goes with its check.
    store.run(&mut s, mute("OSD_DOWN", None, false, 14_000));
    let cleared = store.run(&mut s, reconcile(vec![], 15_000));
    assert_eq!(
        kinds(&cleared),
        [
            (EventType::HealthCheckCleared, "health.OSD_DOWN".to_string()),
            (EventType::HealthUnmuted, "health.OSD_DOWN".to_string()),
        ]
    );
    assert_eq!(cleared.events[1].data["reason"], "cleared");
    assert!(s.health().mutes.is_empty());
    // The operator's unmute.
    store.run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 1)], 16_000),
    );
    store.run(&mut s, mute("OSD_DOWN", None, false, 16_000));
    let unmuted = store.run(
        &mut s,
        UnmuteHealth {
            code: "OSD_DOWN".into(),
        },
    );
    assert_eq!(unmuted.events[0].data["reason"], "operator");
    assert!(s.health().mutes.is_empty());
    store.assert_loads_as(&s);
}

#[test]
fn a_sticky_mute_is_set_ahead_and_outlives_worsening_and_clearing() {
    let mut s = cluster(3, 3);
    let ahead = run(&mut s, mute("OSD_DOWN", None, true, 1_000));
    assert_eq!(ahead.events[0].data["raised"], false);
    let raised = run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Err, 40)], 2_000),
    );
    assert_eq!(
        kinds(&raised),
        one(EventType::HealthCheckRaised, "OSD_DOWN")
    );
    assert_eq!(raised.events[0].data["muted"], true);
    run(&mut s, reconcile(vec![], 3_000));
    assert!(s.health().is_muted("OSD_DOWN"));
    // Its ttl still ends it.
    run(&mut s, mute("OSD_DOWN", Some(1_000), true, 4_000));
    let expired = run(&mut s, reconcile(vec![], 5_000));
    assert_eq!(kinds(&expired), one(EventType::HealthUnmuted, "OSD_DOWN"));
}

#[test]
fn refused_mutes_change_nothing() {
    let mut s = cluster(3, 3);
    refuse(
        &mut s,
        mute("OSD_DOWN", None, false, 1_000),
        ClusterError::HealthCheckNotRaised("OSD_DOWN".into()),
    );
    refuse(
        &mut s,
        UnmuteHealth {
            code: "OSD_DOWN".into(),
        },
        ClusterError::HealthMuteNotFound("OSD_DOWN".into()),
    );
    run(
        &mut s,
        reconcile(vec![seen("OSD_DOWN", Severity::Warn, 1)], 1_000),
    );
    for ttl in [0, MAX_MUTE_TTL_MS + 1] {
        refuse(
            &mut s,
            mute("OSD_DOWN", Some(ttl), false, 1_000),
            ClusterError::InvalidMuteTtl(ttl),
        );
    }
    for i in 0..MAX_MUTES {
        run(&mut s, mute(&format!("CODE_{i}"), None, true, 1_000));
    }
    refuse(
        &mut s,
        mute("OSD_DOWN", None, false, 1_000),
        ClusterError::TooManyMutes(MAX_MUTES),
    );
    // Replacing a mute is not one more.
    run(&mut s, mute("CODE_0", Some(5_000), true, 1_000));
}
