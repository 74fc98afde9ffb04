//! Events: what a committed change means, for people and programs watching the cluster.
//!
//! Most events are *derived*: after a command changed the state, [`derive`] compares the
//! records it touched before and after and names each change of note (an OSD went down, a pool
//! was created, PG states changed). Nothing can change the state without its event, and no
//! event exists for a change that was refused. Health transitions are decided by their own
//! handlers (`health.rs` names them while it changes the stored health), and a few events
//! describe what is not in the state (a leader was elected); those are recorded with the
//! `RecordEvents` command. Either way an event travels in the same transaction as its change:
//! the commit writer gives the events of a group their ids (from `Counters::next_event_id`,
//! gap-free) and time, and writes them beside the group's records.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::flags::Flags;
use super::image::Image;
use super::osd::{Liveness, Membership, Osd};
use super::pool::{Pg, PgState, Pool};
use super::types::{Epoch, PgId, PoolId};

/// PGs listed by name in one `pg.states_changed` event (the rest are only counted).
pub const MAX_LISTED_PGS: usize = 64;

/// Every event type. The names are the API's (`osd.down`); new types are added, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    OsdApplied,
    OsdBooted,
    OsdDown,
    OsdUp,
    OsdOut,
    OsdIn,
    OsdPurged,
    OsdWeightChanged,
    OsdLocationChanged,
    PoolCreated,
    PoolDeleted,
    PgStatesChanged,
    ImageCreated,
    ImageRemoved,
    ImageResized,
    FlagSet,
    FlagUnset,
    MonitorLeaderElected,
    MonitorSteppedDown,
    HealthCheckRaised,
    HealthCheckUpdated,
    HealthCheckCleared,
    HealthMuted,
    HealthUnmuted,
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [EventType; 24] = [
        EventType::OsdApplied,
        EventType::OsdBooted,
        EventType::OsdDown,
        EventType::OsdUp,
        EventType::OsdOut,
        EventType::OsdIn,
        EventType::OsdPurged,
        EventType::OsdWeightChanged,
        EventType::OsdLocationChanged,
        EventType::PoolCreated,
        EventType::PoolDeleted,
        EventType::PgStatesChanged,
        EventType::ImageCreated,
        EventType::ImageRemoved,
        EventType::ImageResized,
        EventType::FlagSet,
        EventType::FlagUnset,
        EventType::MonitorLeaderElected,
        EventType::MonitorSteppedDown,
        EventType::HealthCheckRaised,
        EventType::HealthCheckUpdated,
        EventType::HealthCheckCleared,
        EventType::HealthMuted,
        EventType::HealthUnmuted,
    ];

    /// The dotted name (`osd.down`).
    pub fn name(self) -> &'static str {
        match self {
            EventType::OsdApplied => "osd.applied",
            EventType::OsdBooted => "osd.booted",
            EventType::OsdDown => "osd.down",
            EventType::OsdUp => "osd.up",
            EventType::OsdOut => "osd.out",
            EventType::OsdIn => "osd.in",
            EventType::OsdPurged => "osd.purged",
            EventType::OsdWeightChanged => "osd.weight_changed",
            EventType::OsdLocationChanged => "osd.location_changed",
            EventType::PoolCreated => "pool.created",
            EventType::PoolDeleted => "pool.deleted",
            EventType::PgStatesChanged => "pg.states_changed",
            EventType::ImageCreated => "image.created",
            EventType::ImageRemoved => "image.removed",
            EventType::ImageResized => "image.resized",
            EventType::FlagSet => "flag.set",
            EventType::FlagUnset => "flag.unset",
            EventType::MonitorLeaderElected => "monitor.leader_elected",
            EventType::MonitorSteppedDown => "monitor.stepped_down",
            EventType::HealthCheckRaised => "health.check_raised",
            EventType::HealthCheckUpdated => "health.check_updated",
            EventType::HealthCheckCleared => "health.check_cleared",
            EventType::HealthMuted => "health.muted",
            EventType::HealthUnmuted => "health.unmuted",
        }
    }
}

/// An event before it is committed: no id or time yet.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBody {
    pub kind: EventType,
    /// What it is about: `osd.12`, `pool.rbd`, `image.rbd/vm1`, `flag.noout`, `monitor.m1`.
    pub subject: String,
    /// The osdmap epoch the change produced.
    pub osdmap_epoch: Option<Epoch>,
    /// The pool and the pgmap epoch the change produced.
    pub pool_epoch: Option<(PoolId, Epoch)>,
    /// The payload: a JSON object.
    pub data: Value,
}

/// A committed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Global, gap-free, ordered.
    pub id: u64,
    /// The dotted type name. A string, so that events written by a newer monitor are still
    /// read and served by an older one.
    pub kind: String,
    pub subject: String,
    /// Unix time in milliseconds of the commit.
    pub time_ms: u64,
    pub osdmap_epoch: Option<Epoch>,
    pub pool_epoch: Option<(PoolId, Epoch)>,
    /// The payload as JSON text (an object).
    pub data: String,
}

impl Event {
    /// Gives `body` its id and time.
    pub fn committed(body: EventBody, id: u64, time_ms: u64) -> Event {
        Event {
            id,
            kind: body.kind.name().to_string(),
            subject: body.subject,
            time_ms,
            osdmap_epoch: body.osdmap_epoch,
            pool_epoch: body.pool_epoch,
            data: body.data.to_string(),
        }
    }

    /// Whether the type starts with one of `prefixes` (all types when there are none).
    pub fn matches(&self, prefixes: &[String]) -> bool {
        prefixes.is_empty() || prefixes.iter().any(|p| self.kind.starts_with(p.as_str()))
    }
}

impl EventBody {
    fn new(kind: EventType, subject: String, data: Value) -> EventBody {
        EventBody {
            kind,
            subject,
            osdmap_epoch: None,
            pool_epoch: None,
            data,
        }
    }

    fn osdmap(mut self, epoch: Epoch) -> EventBody {
        self.osdmap_epoch = Some(epoch);
        self
    }

    fn pool(mut self, pool: PoolId, epoch: Epoch) -> EventBody {
        self.pool_epoch = Some((pool, epoch));
        self
    }

    /// An event about the health check `code` (`health.OSD_DOWN`).
    pub(super) fn health(kind: EventType, code: &str, data: Value) -> EventBody {
        EventBody::new(kind, format!("health.{code}"), data)
    }

    /// An event about a monitor (not derived from the state).
    pub fn monitor(kind: EventType, name: &str, data: Value) -> EventBody {
        EventBody::new(kind, format!("monitor.{name}"), data)
    }
}

/// The events of a change to the osdmap meta: flags set and cleared.
pub(super) fn flag_events(was: Flags, now: Flags, epoch: Epoch, out: &mut Vec<EventBody>) {
    for (kind, flags) in [
        (
            EventType::FlagSet,
            now.iter().filter(|f| !was.contains(*f)).collect::<Vec<_>>(),
        ),
        (
            EventType::FlagUnset,
            was.iter().filter(|f| !now.contains(*f)).collect(),
        ),
    ] {
        for flag in flags {
            out.push(
                EventBody::new(kind, format!("flag.{flag}"), json!({ "flag": flag.name() }))
                    .osdmap(epoch),
            );
        }
    }
}

/// The events of a change to a pool's settings record: created or deleted.
pub(super) fn pool_events(
    before: Option<&Arc<Pool>>,
    after: Option<&Arc<Pool>>,
    epoch: Epoch,
    out: &mut Vec<EventBody>,
) {
    match (before, after) {
        (None, Some(p)) => out.push(
            EventBody::new(
                EventType::PoolCreated,
                format!("pool.{}", p.name),
                json!({
                    "pool": p.id.0,
                    "name": p.name,
                    "size": p.size,
                    "pg_count": p.pg_count,
                    "failure_domain": p.failure_domain.to_string(),
                    "root": p.root,
                }),
            )
            .osdmap(epoch)
            .pool(p.id, p.epoch),
        ),
        (Some(p), None) => out.push(
            EventBody::new(
                EventType::PoolDeleted,
                format!("pool.{}", p.name),
                json!({ "pool": p.id.0, "name": p.name }),
            )
            .osdmap(epoch),
        ),
        _ => {}
    }
}

/// The PGs of one chunk whose state changed: (PG, from, to).
pub(super) fn pg_state_changes(
    chunk: u32,
    old: &[Pg],
    new: &[Pg],
    out: &mut Vec<(PgId, PgState, PgState)>,
) {
    let first = chunk * super::pool::PG_CHUNK;
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        if o.state != n.state {
            out.push((PgId(first + i as u32), o.state, n.state));
        }
    }
}

/// Sorts the events of one command: OSDs, then pools, PGs, images and flags — the order an
/// operator reads a change in.
pub(super) fn sort(events: &mut [EventBody]) {
    events.sort_by_key(|e| order(e.kind));
}

fn order(kind: EventType) -> u8 {
    match kind {
        EventType::OsdApplied | EventType::OsdBooted | EventType::OsdDown | EventType::OsdUp => 0,
        EventType::OsdOut | EventType::OsdIn => 1,
        EventType::OsdPurged | EventType::OsdWeightChanged | EventType::OsdLocationChanged => 2,
        EventType::PoolCreated | EventType::PoolDeleted => 3,
        EventType::PgStatesChanged => 4,
        EventType::ImageCreated | EventType::ImageRemoved | EventType::ImageResized => 5,
        EventType::FlagSet | EventType::FlagUnset => 6,
        EventType::MonitorLeaderElected | EventType::MonitorSteppedDown => 7,
        EventType::HealthCheckRaised
        | EventType::HealthCheckUpdated
        | EventType::HealthCheckCleared
        | EventType::HealthMuted
        | EventType::HealthUnmuted => 8,
    }
}

fn instance(l: &Liveness) -> Option<u64> {
    match l {
        Liveness::Up { instance, .. } | Liveness::HeldDown { instance } => Some(instance.0),
        Liveness::Down { instance, .. } => instance.map(|i| i.0),
        Liveness::New => None,
    }
}

pub(super) fn osd_events(
    before: Option<&Arc<Osd>>,
    after: Option<&Arc<Osd>>,
    epoch: Epoch,
    out: &mut Vec<EventBody>,
) {
    let subject = |o: &Osd| format!("osd.{}", o.id.0);
    match (before, after) {
        (None, Some(a)) => out.push(
            EventBody::new(
                EventType::OsdApplied,
                subject(a),
                json!({ "osd": a.id.0, "uuid": a.uuid.to_string() }),
            )
            .osdmap(epoch),
        ),
        (Some(b), None) => out.push(
            EventBody::new(
                EventType::OsdPurged,
                subject(b),
                json!({ "osd": b.id.0, "uuid": b.uuid.to_string(), "host": b.location.host }),
            )
            .osdmap(epoch),
        ),
        (Some(b), Some(a)) => {
            let id = a.id.0;
            let booted = match (&b.liveness, &a.liveness) {
                (_, Liveness::Up { .. } | Liveness::HeldDown { .. }) => {
                    instance(&a.liveness) != instance(&b.liveness)
                        || matches!(b.liveness, Liveness::New)
                }
                _ => false,
            };
            if booted {
                out.push(
                    EventBody::new(
                        EventType::OsdBooted,
                        subject(a),
                        json!({
                            "osd": id,
                            "address": a.address.map(|ip| ip.to_string()),
                            "host": a.location.host,
                            "instance": instance(&a.liveness),
                            "held_down": matches!(a.liveness, Liveness::HeldDown { .. }),
                        }),
                    )
                    .osdmap(epoch),
                );
            }
            let (was_up, is_up) = (
                matches!(b.liveness, Liveness::Up { .. }),
                matches!(a.liveness, Liveness::Up { .. }),
            );
            if was_up && !is_up {
                let reason = match a.liveness {
                    Liveness::Down { reason, .. } => reason.name(),
                    _ => "held_down",
                };
                out.push(
                    EventBody::new(
                        EventType::OsdDown,
                        subject(a),
                        json!({ "osd": id, "host": a.location.host, "reason": reason }),
                    )
                    .osdmap(epoch),
                );
            } else if !was_up && is_up {
                out.push(
                    EventBody::new(
                        EventType::OsdUp,
                        subject(a),
                        json!({ "osd": id, "host": a.location.host }),
                    )
                    .osdmap(epoch),
                );
            }
            match (&b.membership, &a.membership) {
                (Membership::In { .. }, Membership::Out { reason, .. }) => out.push(
                    EventBody::new(
                        EventType::OsdOut,
                        subject(a),
                        json!({ "osd": id, "host": a.location.host, "reason": reason.name() }),
                    )
                    .osdmap(epoch),
                ),
                (Membership::Out { .. }, Membership::In { .. }) => out.push(
                    EventBody::new(
                        EventType::OsdIn,
                        subject(a),
                        json!({ "osd": id, "host": a.location.host }),
                    )
                    .osdmap(epoch),
                ),
                _ => {}
            }
            if a.weight != b.weight {
                out.push(
                    EventBody::new(
                        EventType::OsdWeightChanged,
                        subject(a),
                        json!({ "osd": id, "from": b.weight.as_f64(), "to": a.weight.as_f64() }),
                    )
                    .osdmap(epoch),
                );
            }
            if a.location != b.location && !booted {
                out.push(
                    EventBody::new(
                        EventType::OsdLocationChanged,
                        subject(a),
                        json!({ "osd": id, "from": b.location.to_string(), "to": a.location.to_string() }),
                    )
                    .osdmap(epoch),
                );
            }
        }
        (None, None) => {}
    }
}

pub(super) fn image_events(
    before: Option<&Arc<Image>>,
    after: Option<&Arc<Image>>,
    pool: &str,
    out: &mut Vec<EventBody>,
) {
    let pool_name = |_: &Image| pool.to_string();
    let subject = |i: &Image| format!("image.{}/{}", pool_name(i), i.name);
    match (before, after) {
        (None, Some(a)) => out.push(EventBody::new(
            EventType::ImageCreated,
            subject(a),
            json!({
                "pool": pool_name(a), "pool_id": a.pool.0, "image": a.name, "id": a.id.0,
                "size": a.size, "object_size": a.object_size,
            }),
        )),
        (Some(b), None) => out.push(EventBody::new(
            EventType::ImageRemoved,
            subject(b),
            json!({ "pool": pool_name(b), "pool_id": b.pool.0, "image": b.name, "id": b.id.0 }),
        )),
        (Some(b), Some(a)) if a.size != b.size => out.push(EventBody::new(
            EventType::ImageResized,
            subject(a),
            json!({
                "pool": pool_name(a), "pool_id": a.pool.0, "image": a.name, "id": a.id.0,
                "from": b.size, "to": a.size,
            }),
        )),
        _ => {}
    }
}

/// One `pg.states_changed` event for `pool`: the PGs that changed (the first
/// [`MAX_LISTED_PGS`] by name) and how many PGs of the pool are in each state now.
pub(super) fn pg_states_event(pool: &Pool, changed: &[(PgId, PgState, PgState)]) -> EventBody {
    let listed: Vec<Value> = changed
        .iter()
        .take(MAX_LISTED_PGS)
        .map(|(pg, from, to)| json!({ "pg": pg.0, "from": from.name(), "to": to.name() }))
        .collect();
    EventBody::new(
        EventType::PgStatesChanged,
        format!("pool.{}", pool.name),
        json!({
            "pool": pool.id.0,
            "name": pool.name,
            "changed_count": changed.len(),
            "changed": listed,
            "states": state_counts(pool.pgs.iter().map(|(_, pg)| pg)),
        }),
    )
    .pool(pool.id, pool.epoch)
}

fn state_counts<'a>(pgs: impl Iterator<Item = &'a Pg>) -> Value {
    let mut counts: BTreeMap<PgState, u64> = BTreeMap::new();
    for pg in pgs {
        *counts.entry(pg.state).or_default() += 1;
    }
    Value::Object(
        counts
            .into_iter()
            .map(|(s, n)| (s.name(), Value::from(n)))
            .collect(),
    )
}

/// Merges the events of one transaction: the `pg.states_changed` events of one pool (one pool
/// epoch per transaction) become one, listing the changes in order and counting the states
/// as the last one saw them. Other events are kept as they are, in order.
pub fn merge(events: Vec<EventBody>) -> Vec<EventBody> {
    let mut out: Vec<EventBody> = Vec::with_capacity(events.len());
    let mut pg_event_at: BTreeMap<PoolId, usize> = BTreeMap::new();
    for e in events {
        if e.kind == EventType::PgStatesChanged
            && let Some((pool, _)) = e.pool_epoch
        {
            if let Some(&i) = pg_event_at.get(&pool) {
                merge_pg_states(&mut out[i], e);
                continue;
            }
            pg_event_at.insert(pool, out.len());
        }
        out.push(e);
    }
    out
}

fn merge_pg_states(into: &mut EventBody, later: EventBody) {
    into.pool_epoch = later.pool_epoch;
    let Value::Object(later) = later.data else {
        return;
    };
    let Value::Object(data) = &mut into.data else {
        return;
    };
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let total = count(data.get("changed_count")) + count(later.get("changed_count"));
    data.insert("changed_count".to_string(), Value::from(total));
    if let (Some(Value::Array(list)), Some(Value::Array(more))) =
        (data.get_mut("changed"), later.get("changed"))
    {
        let room = MAX_LISTED_PGS.saturating_sub(list.len());
        list.extend(more.iter().take(room).cloned());
    }
    if let Some(states) = later.get("states") {
        data.insert("states".to_string(), states.clone());
    }
}
