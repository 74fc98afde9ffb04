//! Events derived from what each command changed: the right types, in order, with their
//! payload and epochs; nothing for a refused or a no-op command.

use serde_json::Value;

use super::*;
use crate::cluster::events::{EventBody, EventType, merge};
use crate::cluster::{ClusterFlag, PgState};

fn types(events: &[EventBody]) -> Vec<(EventType, String)> {
    events.iter().map(|e| (e.kind, e.subject.clone())).collect()
}

fn osd(kind: EventType, id: u32) -> (EventType, String) {
    (kind, format!("osd.{id}"))
}

#[test]
fn the_failure_detector_s_changes_and_a_boot_again_are_named_in_order() {
    let mut s = cluster(4, 4);
    let down = run(
        &mut s,
        command::MarkDown {
            ids: vec![OsdId(2)],
        },
    );
    assert_eq!(types(&down.events), [osd(EventType::OsdDown, 2)]);
    assert_eq!(down.events[0].data["reason"], "no_heartbeat");
    assert_eq!(down.events[0].osdmap_epoch, Some(s.osdmap_epoch()));
    // A heartbeat of the same run: up again, not a boot.
    let up = run(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 1,
        },
    );
    assert_eq!(types(&up.events), [osd(EventType::OsdUp, 2)]);
    run(
        &mut s,
        command::MarkDown {
            ids: vec![OsdId(2)],
        },
    );
    let out = run(
        &mut s,
        command::MarkOut {
            ids: vec![OsdId(2)],
            guards: NO_GUARDS,
        },
    );
    assert_eq!(types(&out.events), [osd(EventType::OsdOut, 2)]);
    assert_eq!(out.events[0].data["reason"], "auto");
    // A new run boots: booted, up and back in, in that order, all at one epoch.
    let boot = run(&mut s, command::Boot(boot_args(OsdId(2), &uuid(2), 2, 7)));
    assert_eq!(
        types(&boot.events),
        [
            osd(EventType::OsdBooted, 2),
            osd(EventType::OsdUp, 2),
            osd(EventType::OsdIn, 2)
        ]
    );
    assert_eq!(boot.events[0].data["instance"], 7);
    assert!(
        boot.events
            .iter()
            .all(|e| e.osdmap_epoch == Some(s.osdmap_epoch()))
    );
}

#[test]
fn a_refused_or_no_op_command_has_no_event() {
    let mut s = cluster(3, 3);
    assert!(s.apply(&command::OsdOut { id: OsdId(9) }).is_err());
    run(&mut s, command::SetFlag(ClusterFlag::NoOut));
    let again = run(&mut s, command::SetFlag(ClusterFlag::NoOut));
    assert!(again.events.is_empty(), "{:?}", again.events);
    let cleared = run(&mut s, command::UnsetFlag(ClusterFlag::NoOut));
    assert_eq!(
        types(&cleared.events),
        [(EventType::FlagUnset, "flag.noout".to_string())]
    );
}

#[test]
fn noup_holds_a_booted_osd_down_and_its_release_brings_it_up() {
    let mut s = cluster(3, 3);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    run(&mut s, command::OsdStop { id: OsdId(3) });
    let held = run(&mut s, command::Boot(boot_args(OsdId(3), &uuid(3), 3, 9)));
    assert_eq!(types(&held.events), [osd(EventType::OsdBooted, 3)]);
    assert_eq!(held.events[0].data["held_down"], true);
    run(&mut s, command::UnsetFlag(ClusterFlag::NoUp));
    let released = run(
        &mut s,
        command::ReleaseDeferred {
            ids: vec![OsdId(3)],
        },
    );
    assert_eq!(types(&released.events), [osd(EventType::OsdUp, 3)]);
}

#[test]
fn weight_location_and_purge_are_named_with_before_and_after() {
    let mut s = cluster(4, 4);
    let w = run(
        &mut s,
        command::SetWeight {
            id: OsdId(1),
            weight: 2.5,
        },
    );
    assert_eq!(types(&w.events), [osd(EventType::OsdWeightChanged, 1)]);
    assert_eq!(w.events[0].data["from"], 1.0);
    assert_eq!(w.events[0].data["to"], 2.5);
    let moved = run(
        &mut s,
        command::SetLocation {
            id: OsdId(1),
            host: Some("elsewhere".to_string()),
            rack: None,
            root: None,
        },
    );
    assert_eq!(
        types(&moved.events),
        [osd(EventType::OsdLocationChanged, 1)]
    );
    assert_eq!(moved.events[0].data["to"], "root=default host=elsewhere");
    run(&mut s, command::OsdStop { id: OsdId(4) });
    run(&mut s, command::OsdOut { id: OsdId(4) });
    let purged = run(&mut s, command::Purge { id: OsdId(4) });
    assert_eq!(types(&purged.events), [osd(EventType::OsdPurged, 4)]);
}

#[test]
fn pools_images_and_pg_states_have_their_events_and_pool_epochs() {
    let mut s = cluster(4, 4);
    let created = run(
        &mut s,
        command::CreatePool(PoolArgs {
            name: "rbd".to_string(),
            size: 3,
            pg_count: 600,
            failure_domain: "host".to_string(),
            root: String::new(),
        }),
    );
    // The PGs of a new pool are part of its creation, not state changes of their own.
    assert_eq!(
        types(&created.events),
        [(EventType::PoolCreated, "pool.rbd".to_string())]
    );
    let pool = s.pools().next().unwrap().clone();
    assert_eq!(created.events[0].pool_epoch, Some((pool.id, pool.epoch)));
    assert_eq!(created.events[0].data["pg_count"], 600);
    // A stopped OSD: the reconciler's refresh gives its PGs their health.
    run(&mut s, command::OsdStop { id: OsdId(1) });
    let stale: Vec<PgId> = pool
        .pgs
        .iter()
        .filter(|(_, pg)| pg.members.contains(&OsdId(1)))
        .map(|(id, _)| id)
        .collect();
    let refreshed = run(
        &mut s,
        command::RefreshPgs {
            pool: pool.id,
            pgs: stale.clone(),
        },
    );
    let pg_events: Vec<&EventBody> = refreshed
        .events
        .iter()
        .filter(|e| e.kind == EventType::PgStatesChanged)
        .collect();
    assert_eq!(
        pg_events.len(),
        1,
        "one event per pool: {:?}",
        refreshed.events
    );
    let e = pg_events[0];
    let pool_now = s.pool(pool.id).unwrap();
    assert_eq!(e.pool_epoch, Some((pool.id, pool_now.epoch)));
    assert_eq!(e.data["changed_count"], stale.len());
    let listed = e.data["changed"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        stale.len().min(crate::cluster::events::MAX_LISTED_PGS)
    );
    assert_eq!(listed[0]["pg"], stale[0].0);
    let counts: u64 = e.data["states"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(counts, 600, "every PG of the pool counted by state");
    let undersized = PgState::default().with(PgState::UNDERSIZE).name();
    assert!(
        e.data["states"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("undersize")),
        "{undersized}: {}",
        e.data
    );

    let img = run(
        &mut s,
        command::CreateImage {
            pool: "rbd".to_string(),
            name: "vm".to_string(),
            size: 1 << 30,
            object_size: 0,
        },
    );
    assert_eq!(
        types(&img.events),
        [(EventType::ImageCreated, "image.rbd/vm".to_string())]
    );
    let deleted = run(
        &mut s,
        command::DeletePool {
            name: "rbd".to_string(),
        },
    );
    assert!(
        types(&deleted.events).contains(&(EventType::PoolDeleted, "pool.rbd".to_string())),
        "{:?}",
        deleted.events
    );
}

#[test]
fn a_transaction_s_pg_events_of_one_pool_merge_into_one() {
    let body = |changed: u64, listed: Vec<u64>, epoch: u64, active: u64| EventBody {
        kind: EventType::PgStatesChanged,
        subject: "pool.rbd".to_string(),
        osdmap_epoch: None,
        pool_epoch: Some((PoolId(1), Epoch(epoch))),
        data: serde_json::json!({
            "changed_count": changed,
            "changed": listed.iter().map(|p| serde_json::json!({"pg": p})).collect::<Vec<Value>>(),
            "states": { "active": active },
        }),
    };
    let other = EventBody {
        kind: EventType::FlagSet,
        subject: "flag.noout".to_string(),
        osdmap_epoch: Some(Epoch(3)),
        pool_epoch: None,
        data: serde_json::json!({}),
    };
    let merged = merge(vec![
        body(2, vec![1, 2], 5, 10),
        other.clone(),
        body(1, vec![7], 5, 9),
    ]);
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[1], other, "other events keep their place");
    let pg = &merged[0];
    assert_eq!(pg.data["changed_count"], 3);
    assert_eq!(pg.data["changed"].as_array().unwrap().len(), 3);
    assert_eq!(
        pg.data["states"]["active"], 9,
        "the states as the last change left them"
    );
}
