//! The rules a chaos run's history must obey, as plain functions of the history (and of the
//! state read back at the end). Each returns the violations it found, with the entries that
//! show them, so a failure prints the offending part of the history.
//!
//! An operation that did not come back ok (an error, a deadline, no answer before the end) may
//! or may not have taken effect: the client library retries attempts whose outcome is unknown,
//! so even a "not found" or "exists" answer can follow an earlier attempt that was applied.
//! The rules therefore treat every non-ok operation as "maybe applied" and every ok one as
//! applied, and they only flag what no interleaving of the maybes can explain.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use fastblock_monitor::proto::monitor::ClusterFlag;

use crate::history::{Entry, Event, Fault, Granted, Observation, Op, Reply};

/// The bounds the rules use.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub lease_ttl: Duration,
    /// A crash failover must be served within `lease_ttl + failover_slack`.
    pub failover_slack: Duration,
    pub osd_down_after: Duration,
}

/// The rules, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// Two different OSD uuids, pools or images got the same id (or one uuid two ids).
    GrantedTwice,
    /// An acknowledged write is not in the final state, and no later unacknowledged
    /// operation on the same thing explains it.
    LostWrite,
    /// The state a freshly loaded leader serves differs from what the previous leader served
    /// (the leader's memory and etcd disagree).
    StateDiffersAfterHandover,
    /// One observer saw an epoch (osdmap, a pool's, or the leader term) go back.
    EpochWentBack,
    /// An answer carried an epoch or term older than one already answered before the operation
    /// was invoked: a stale read, or an answer from a superseded (fenced) leader.
    StaleAnswer,
    /// An OSD was marked down although a heartbeat of it was acknowledged less than
    /// `osd_down_after` before.
    MarkedDownWhileHeartbeating,
    /// No write succeeded on a new leader within `lease_ttl + failover_slack` of the leader's
    /// kill.
    SlowFailover,
    /// Some PG was not active (or still remapped) when the deadline after healing passed.
    PgsNotActive,
    /// The cluster did not come back (every monitor and member healthy, one leader) after a
    /// fault was healed.
    NoRecovery,
    /// A rule had nothing to judge (no acknowledged heartbeat, no mark-down seen, no crash of
    /// the leader measured): the run proves nothing about it.
    NotExercised,
}

/// One broken rule.
#[derive(Debug, Clone)]
pub struct Violation {
    pub rule: Rule,
    pub detail: String,
    /// Indices of the entries that show it.
    pub entries: Vec<usize>,
}

/// The state read back through the API at the end, for what the workload touched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FinalState {
    /// Pool name → (id, pg count).
    pub pools: BTreeMap<String, (u32, u32)>,
    /// (pool, image) → (id, size), for every image name the history mentions that exists.
    pub images: BTreeMap<(String, String), (u64, u64)>,
    pub flags: BTreeSet<ClusterFlag>,
    /// OSD id → (uuid, in).
    pub osds: BTreeMap<u32, (String, bool)>,
}

/// One operation: its invoke and, when it came back, its completion.
#[derive(Debug, Clone)]
pub struct OpRecord {
    pub process: String,
    pub what: Op,
    pub invoked: Duration,
    pub invoke_entry: usize,
    pub completion: Option<Completion>,
}

/// How an operation came back.
#[derive(Debug, Clone)]
pub struct Completion {
    pub at: Duration,
    pub entry: usize,
    pub result: Result<Reply, String>,
}

impl OpRecord {
    /// The reply, when the operation came back ok.
    pub fn ok(&self) -> Option<&Reply> {
        self.completion.as_ref()?.result.as_ref().ok()
    }

    fn entries(&self) -> Vec<usize> {
        let mut e = vec![self.invoke_entry];
        e.extend(self.completion.as_ref().map(|c| c.entry));
        e
    }
}

/// Pairs every invoke with its completion; in invoke order.
pub fn operations(entries: &[Entry]) -> Vec<OpRecord> {
    let mut ops: Vec<OpRecord> = Vec::new();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        match &e.event {
            Event::Invoke { op, what } => {
                by_id.insert(*op, ops.len());
                ops.push(OpRecord {
                    process: e.process.clone(),
                    what: what.clone(),
                    invoked: e.at,
                    invoke_entry: i,
                    completion: None,
                });
            }
            Event::Ok { op, reply } => {
                if let Some(&k) = by_id.get(op) {
                    ops[k].completion = Some(Completion {
                        at: e.at,
                        entry: i,
                        result: Ok(reply.clone()),
                    });
                }
            }
            Event::Fail { op, error } => {
                if let Some(&k) = by_id.get(op) {
                    ops[k].completion = Some(Completion {
                        at: e.at,
                        entry: i,
                        result: Err(error.clone()),
                    });
                }
            }
            Event::Observed(_) | Event::Fault(_) => {}
        }
    }
    ops
}

/// Every rule over a finished run: `served` is the state the last leader served at the end,
/// `reloaded` the state the next leader served after loading it from etcd, `osds` the fake
/// OSDs that heartbeat.
pub fn check(
    entries: &[Entry],
    rules: &Rules,
    served: &FinalState,
    reloaded: &FinalState,
    osds: &[u32],
) -> Vec<Violation> {
    let ops = operations(entries);
    let mut out = not_exercised(entries, &ops, rules, osds);
    out.extend(granted_twice(&ops));
    out.extend(lost_writes(&ops, reloaded));
    out.extend(differs_after_handover(served, reloaded));
    out.extend(epochs_went_back(entries));
    out.extend(stale_answers(entries, &ops));
    out.extend(marked_down_while_heartbeating(
        entries,
        &ops,
        rules.osd_down_after,
    ));
    out.extend(failovers(entries, &ops, rules).1);
    out
}

/// No OSD id for two uuids (nor two ids for one uuid), no pool id and no image id granted by
/// two successful creates.
pub fn granted_twice(ops: &[OpRecord]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut osd_of_uuid: HashMap<&str, (u32, &OpRecord)> = HashMap::new();
    let mut uuid_of_osd: HashMap<u32, (&str, &OpRecord)> = HashMap::new();
    let mut granted: HashMap<Granted, &OpRecord> = HashMap::new();
    for op in ops {
        let Some(reply) = op.ok() else { continue };
        let Some(g) = reply.granted else { continue };
        let both = |a: &OpRecord, b: &OpRecord| {
            let mut e = a.entries();
            e.extend(b.entries());
            e
        };
        match (&op.what, g) {
            (Op::ApplyId { uuid }, Granted::Osd(id)) => {
                if let Some((other, first)) = uuid_of_osd.get(&id)
                    && *other != uuid.as_str()
                {
                    out.push(Violation {
                        rule: Rule::GrantedTwice,
                        detail: format!("OSD id {id} granted to uuid {other} and to uuid {uuid}"),
                        entries: both(first, op),
                    });
                }
                if let Some((other, first)) = osd_of_uuid.get(uuid.as_str())
                    && *other != id
                {
                    out.push(Violation {
                        rule: Rule::GrantedTwice,
                        detail: format!("uuid {uuid} granted OSD id {other} and OSD id {id}"),
                        entries: both(first, op),
                    });
                }
                uuid_of_osd.entry(id).or_insert((uuid, op));
                osd_of_uuid.entry(uuid).or_insert((id, op));
            }
            (Op::CreatePool { .. } | Op::CreateImage { .. }, g) => {
                if let Some(first) = granted.get(&g) {
                    out.push(Violation {
                        rule: Rule::GrantedTwice,
                        detail: format!(
                            "{g:?} granted to two creates: {} and {}",
                            first.what, op.what
                        ),
                        entries: both(first, op),
                    });
                } else {
                    granted.insert(g, op);
                }
            }
            _ => {}
        }
    }
    out
}

/// What a write decides about one thing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Pool(String),
    Image(String, String),
    Flag(ClusterFlag),
    OsdIn(u32),
    Uuid(String),
}

/// A thing's value; `None` ids are not known (an unacknowledged create) and match any id.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Absent,
    Pool { id: Option<u32>, pg_count: u32 },
    Image { id: Option<u64>, size: u64 },
    Flag(bool),
    In(bool),
    Osd { id: Option<u32> },
}

impl Value {
    fn admits(&self, actual: &Value) -> bool {
        fn id<T: PartialEq>(want: &Option<T>, got: &Option<T>) -> bool {
            want.is_none() || want == got
        }
        match (self, actual) {
            (Value::Pool { id: a, pg_count: x }, Value::Pool { id: b, pg_count: y }) => {
                id(a, b) && x == y
            }
            (Value::Image { id: a, size: x }, Value::Image { id: b, size: y }) => {
                id(a, b) && x == y
            }
            (Value::Osd { id: a }, Value::Osd { id: b }) => id(a, b),
            _ => self == actual,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = |i: Option<u64>| i.map_or("?".to_string(), |i| i.to_string());
        match self {
            Value::Absent => write!(f, "absent"),
            Value::Pool { id: i, pg_count } => {
                write!(f, "pool id {} pgs {pg_count}", id(i.map(u64::from)))
            }
            Value::Image { id: i, size } => write!(f, "image id {} size {size}", id(*i)),
            Value::Flag(b) => write!(f, "{}", if *b { "set" } else { "unset" }),
            Value::In(b) => write!(f, "{}", if *b { "in" } else { "out" }),
            Value::Osd { id: i } => write!(f, "OSD id {}", id(i.map(u64::from))),
        }
    }
}

/// What one thing may be now: every value a still-possible history leaves it with.
struct Possible {
    values: Vec<Value>,
    /// The last acknowledged write and the unacknowledged ones after it.
    since_last_ok: Vec<usize>,
    last_ok: Option<usize>,
}

impl Possible {
    fn new(initial: Value) -> Possible {
        Possible {
            values: vec![initial],
            since_last_ok: Vec::new(),
            last_ok: None,
        }
    }

    fn apply(&mut self, value: Value, op: usize, acknowledged: bool) {
        if acknowledged {
            self.values = vec![value];
            self.since_last_ok = vec![op];
            self.last_ok = Some(op);
        } else {
            if !self.values.contains(&value) {
                self.values.push(value);
            }
            self.since_last_ok.push(op);
        }
    }

    /// The image id every possible value agrees on.
    fn image_id(&self) -> Option<u64> {
        let mut ids = self.values.iter().map(|v| match v {
            Value::Image { id, .. } => *id,
            _ => None,
        });
        let first = ids.next()?;
        ids.all(|i| i == first).then_some(first).flatten()
    }
}

fn initial(key: &Key) -> Value {
    match key {
        Key::Flag(_) => Value::Flag(false),
        Key::OsdIn(_) => Value::In(true),
        Key::Pool(_) | Key::Image(..) | Key::Uuid(_) => Value::Absent,
    }
}

fn actual(key: &Key, s: &FinalState) -> Value {
    match key {
        Key::Pool(name) => s
            .pools
            .get(name)
            .map_or(Value::Absent, |&(id, pg_count)| Value::Pool {
                id: Some(id),
                pg_count,
            }),
        Key::Image(pool, name) => {
            s.images
                .get(&(pool.clone(), name.clone()))
                .map_or(Value::Absent, |&(id, size)| Value::Image {
                    id: Some(id),
                    size,
                })
        }
        Key::Flag(f) => Value::Flag(s.flags.contains(f)),
        Key::OsdIn(id) => s.osds.get(id).map_or(Value::Absent, |o| Value::In(o.1)),
        Key::Uuid(uuid) => s
            .osds
            .iter()
            .find(|(_, o)| o.0 == *uuid)
            .map_or(Value::Absent, |(id, _)| Value::Osd { id: Some(*id) }),
    }
}

/// The image names (pool, image) the history mentions: the state to read back at the end.
pub fn image_keys(entries: &[Entry]) -> BTreeSet<(String, String)> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Invoke {
                what:
                    Op::CreateImage { pool, name, .. }
                    | Op::ResizeImage { pool, name, .. }
                    | Op::RemoveImage { pool, name },
                ..
            } => Some((pool.clone(), name.clone())),
            _ => None,
        })
        .collect()
}

/// Every acknowledged write is in the final state, unless an unacknowledged operation on the
/// same thing after it explains the difference. Writes to one thing come from one client, one
/// at a time, so invoke order is their order.
pub fn lost_writes(ops: &[OpRecord], end: &FinalState) -> Vec<Violation> {
    fn touch(things: &mut BTreeMap<Key, Possible>, key: Key, value: Value, op: usize, ok: bool) {
        let initial = initial(&key);
        things
            .entry(key)
            .or_insert_with(|| Possible::new(initial))
            .apply(value, op, ok);
    }
    fn images_of(things: &BTreeMap<Key, Possible>, pool: &str) -> Vec<Key> {
        things
            .keys()
            .filter(|key| matches!(key, Key::Image(p, _) if p == pool))
            .cloned()
            .collect()
    }
    let mut things: BTreeMap<Key, Possible> = BTreeMap::new();
    for (k, op) in ops.iter().enumerate() {
        if !op.what.is_write() {
            continue;
        }
        let reply = op.ok();
        let ok = reply.is_some();
        let granted = reply.and_then(|r| r.granted);
        match &op.what {
            Op::ApplyId { uuid } => {
                let id = match granted {
                    Some(Granted::Osd(id)) => Some(id),
                    _ => None,
                };
                touch(
                    &mut things,
                    Key::Uuid(uuid.clone()),
                    Value::Osd { id },
                    k,
                    ok,
                );
            }
            Op::CreatePool { name, pg_count } => {
                let id = match granted {
                    Some(Granted::Pool(id)) => Some(id),
                    _ => None,
                };
                let value = Value::Pool {
                    id,
                    pg_count: *pg_count,
                };
                touch(&mut things, Key::Pool(name.clone()), value, k, ok);
                // A created pool is a new one: images of an earlier pool of that name are gone.
                if ok {
                    for key in images_of(&things, name) {
                        touch(&mut things, key, Value::Absent, k, true);
                    }
                }
            }
            Op::DeletePool { name } => {
                touch(&mut things, Key::Pool(name.clone()), Value::Absent, k, ok);
                for key in images_of(&things, name) {
                    touch(&mut things, key, Value::Absent, k, ok);
                }
            }
            Op::CreateImage { pool, name, size } => {
                let id = match granted {
                    Some(Granted::Image(id)) => Some(id),
                    _ => None,
                };
                let value = Value::Image { id, size: *size };
                touch(
                    &mut things,
                    Key::Image(pool.clone(), name.clone()),
                    value,
                    k,
                    ok,
                );
            }
            Op::ResizeImage { pool, name, size } => {
                let key = Key::Image(pool.clone(), name.clone());
                let id = things.get(&key).and_then(Possible::image_id);
                let value = Value::Image { id, size: *size };
                touch(&mut things, key, value, k, ok);
            }
            Op::RemoveImage { pool, name } => {
                let key = Key::Image(pool.clone(), name.clone());
                touch(&mut things, key, Value::Absent, k, ok);
            }
            Op::SetFlag { flag } | Op::UnsetFlag { flag } => {
                let set = matches!(op.what, Op::SetFlag { .. });
                touch(&mut things, Key::Flag(*flag), Value::Flag(set), k, ok);
            }
            Op::OsdOut { osd } | Op::OsdIn { osd } => {
                let inn = matches!(op.what, Op::OsdIn { .. });
                touch(&mut things, Key::OsdIn(*osd), Value::In(inn), k, ok);
            }
            Op::Heartbeat { .. } | Op::ReadStatus | Op::ListPools => {}
        }
    }
    let mut out = Vec::new();
    for (key, possible) in &things {
        let got = actual(key, end);
        if possible.values.iter().any(|v| v.admits(&got)) {
            continue;
        }
        let allowed: Vec<String> = possible.values.iter().map(Value::to_string).collect();
        let because = match possible.last_ok {
            Some(k) => format!(
                "the acknowledged {} (invoked at {:.3}s) and the {} unacknowledged operation(s) after it",
                ops[k].what,
                ops[k].invoked.as_secs_f64(),
                possible.since_last_ok.len() - 1
            ),
            None => format!(
                "no acknowledged write; {} unacknowledged operation(s)",
                possible.since_last_ok.len()
            ),
        };
        let entries = possible
            .since_last_ok
            .iter()
            .flat_map(|&k| ops[k].entries())
            .collect();
        out.push(Violation {
            rule: Rule::LostWrite,
            detail: format!(
                "{key:?} is {got} at the end; after {because} it can only be one of: {}",
                allowed.join(" | ")
            ),
            entries,
        });
    }
    out
}

/// The state served after a handover to a leader that loaded it from etcd equals the state
/// served before.
pub fn differs_after_handover(before: &FinalState, after: &FinalState) -> Vec<Violation> {
    if before == after {
        return Vec::new();
    }
    let mut diffs = Vec::new();
    fn diff<K: fmt::Debug + Ord, V: fmt::Debug + PartialEq>(
        what: &str,
        a: &BTreeMap<K, V>,
        b: &BTreeMap<K, V>,
        out: &mut Vec<String>,
    ) {
        let keys: BTreeSet<&K> = a.keys().chain(b.keys()).collect();
        for k in keys {
            if a.get(k) != b.get(k) {
                out.push(format!("{what} {k:?}: {:?} → {:?}", a.get(k), b.get(k)));
            }
        }
    }
    diff("pool", &before.pools, &after.pools, &mut diffs);
    diff("image", &before.images, &after.images, &mut diffs);
    diff("osd", &before.osds, &after.osds, &mut diffs);
    if before.flags != after.flags {
        diffs.push(format!("flags: {:?} → {:?}", before.flags, after.flags));
    }
    diffs.truncate(20);
    vec![Violation {
        rule: Rule::StateDiffersAfterHandover,
        detail: format!(
            "the state served after a graceful handover differs from the state served before: {}",
            diffs.join("; ")
        ),
        entries: Vec::new(),
    }]
}

/// Which epoch a sample is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum EpochKind {
    Term,
    Osdmap,
    Pool(u32),
}

/// The epochs an entry reports.
fn epochs_of(e: &Entry) -> Vec<(EpochKind, u64)> {
    match &e.event {
        Event::Ok { reply, .. } => {
            let mut out = Vec::new();
            out.extend(reply.leader_epoch.map(|t| (EpochKind::Term, t)));
            out.extend(reply.osdmap_epoch.map(|t| (EpochKind::Osdmap, t)));
            out.extend(
                reply
                    .pool_epochs
                    .iter()
                    .map(|&(p, t)| (EpochKind::Pool(p), t)),
            );
            out
        }
        Event::Observed(o) => match o {
            Observation::Osdmap { epoch } | Observation::OsdDown { epoch, .. } => {
                vec![(EpochKind::Osdmap, *epoch)]
            }
            Observation::Pool { pool, epoch } | Observation::PoolDeleted { pool, epoch } => {
                vec![(EpochKind::Pool(*pool), *epoch)]
            }
            Observation::Connected { .. }
            | Observation::WatchError { .. }
            | Observation::Fenced { .. } => Vec::new(),
        },
        Event::Invoke { .. } | Event::Fail { .. } | Event::Fault(_) => Vec::new(),
    }
}

/// Violations reported per rule and epoch kind before the rest are only counted.
const SHOWN_PER_KIND: usize = 3;

/// Every observer (a client, a watcher, one fake OSD's heartbeats) sees every epoch only move
/// forward: each observer works one request at a time, so its entries are in its own order.
pub fn epochs_went_back(entries: &[Entry]) -> Vec<Violation> {
    let mut highest: HashMap<(&str, EpochKind), (u64, usize)> = HashMap::new();
    let mut found: BTreeMap<(&str, EpochKind), (Vec<Violation>, usize)> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        for (kind, epoch) in epochs_of(e) {
            let key = (e.process.as_str(), kind);
            match highest.get(&key) {
                Some(&(max, at)) if epoch < max => {
                    let (shown, count) = found.entry(key).or_default();
                    *count += 1;
                    if shown.len() < SHOWN_PER_KIND {
                        shown.push(Violation {
                            rule: Rule::EpochWentBack,
                            detail: format!("{} saw {kind:?} epoch {epoch} after {max}", e.process),
                            entries: vec![at, i],
                        });
                    }
                }
                Some(&(max, _)) if epoch == max => {}
                _ => {
                    highest.insert(key, (epoch, i));
                }
            }
        }
    }
    with_counts(found)
}

fn with_counts<K>(found: BTreeMap<K, (Vec<Violation>, usize)>) -> Vec<Violation> {
    let mut out = Vec::new();
    for (_, (mut shown, count)) in found {
        if count > shown.len()
            && let Some(last) = shown.last_mut()
        {
            last.detail
                .push_str(&format!(" ({count} such answers in all)"));
        }
        out.append(&mut shown);
    }
    out
}

/// In real time, across observers: an operation invoked after another one's answer never gets
/// an older epoch or term than that answer (or a watcher's update received before it) had. A
/// smaller term means a superseded leader answered — for a write, that a fenced leader
/// accepted it.
pub fn stale_answers(entries: &[Entry], ops: &[OpRecord]) -> Vec<Violation> {
    // Known facts: (time the epoch was known to exist, kind, epoch, entry).
    let mut facts: Vec<(Duration, EpochKind, u64, usize)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if matches!(e.event, Event::Ok { .. } | Event::Observed(_)) {
            facts.extend(epochs_of(e).into_iter().map(|(k, v)| (e.at, k, v, i)));
        }
    }
    facts.sort_by_key(|f| f.0);
    let mut answers: Vec<&OpRecord> = ops.iter().filter(|o| o.ok().is_some()).collect();
    answers.sort_by_key(|o| o.invoked);
    let mut newest: HashMap<EpochKind, (u64, usize)> = HashMap::new();
    let mut next_fact = 0;
    let mut found: BTreeMap<EpochKind, (Vec<Violation>, usize)> = BTreeMap::new();
    for op in answers {
        while next_fact < facts.len() && facts[next_fact].0 < op.invoked {
            let (_, kind, epoch, entry) = facts[next_fact];
            let slot = newest.entry(kind).or_insert((epoch, entry));
            if epoch > slot.0 {
                *slot = (epoch, entry);
            }
            next_fact += 1;
        }
        let completion = op.completion.as_ref().expect("answered");
        for (kind, epoch) in epochs_of(&entries[completion.entry]) {
            let Some(&(known, known_at)) = newest.get(&kind) else {
                continue;
            };
            if epoch >= known {
                continue;
            }
            let (shown, count) = found.entry(kind).or_default();
            *count += 1;
            if shown.len() < SHOWN_PER_KIND {
                let what = match (kind, op.what.is_write()) {
                    (EpochKind::Term, true) => "a superseded (fenced) leader accepted a write",
                    (EpochKind::Term, false) => "a superseded leader answered",
                    _ => "stale answer",
                };
                shown.push(Violation {
                    rule: Rule::StaleAnswer,
                    detail: format!(
                        "{what}: {} of {} got {kind:?} {epoch} although {known} had been seen before it was invoked",
                        op.what, op.process
                    ),
                    entries: vec![known_at, op.invoke_entry, completion.entry],
                });
            }
        }
    }
    with_counts(found)
}

/// No OSD is marked down while it heartbeats. A watcher that held OSD o up at epoch `u` and
/// sees it down at epoch `d` at time W knows the mark-down committed at some D ≤ W. A heartbeat
/// of o acknowledged with osdmap epoch ≤ u was processed before the mark-down was published,
/// and after it was sent at I. When W − I < `osd_down_after`, the monitor marked o down less
/// than `osd_down_after` after hearing from it: a violation. Heartbeats nobody acknowledged
/// (no leader, a partition, a frozen leader) never count, and a new leader's grace (every OSD
/// counts as heard from when its term starts) keeps heartbeats acknowledged by an earlier
/// leader out of the window.
pub fn marked_down_while_heartbeating(
    entries: &[Entry],
    ops: &[OpRecord],
    down_after: Duration,
) -> Vec<Violation> {
    let mut acks: HashMap<u32, Vec<&OpRecord>> = HashMap::new();
    for op in ops {
        if let (Op::Heartbeat { osd, .. }, Some(_)) = (&op.what, op.ok()) {
            acks.entry(*osd).or_default().push(op);
        }
    }
    let mut out = Vec::new();
    let mut reported: BTreeSet<(u32, u64)> = BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let Event::Observed(Observation::OsdDown {
            osd,
            last_up_epoch,
            epoch,
        }) = &e.event
        else {
            continue;
        };
        let seen = e.at;
        let culprit = acks.get(osd).into_iter().flatten().find(|hb| {
            let acked_epoch = hb.ok().and_then(|r| r.osdmap_epoch).unwrap_or(u64::MAX);
            acked_epoch <= *last_up_epoch && hb.invoked + down_after > seen
        });
        if let Some(hb) = culprit
            && reported.insert((*osd, *epoch))
        {
            let acked_epoch = hb.ok().and_then(|r| r.osdmap_epoch).unwrap_or_default();
            let mut shown = hb.entries();
            shown.push(i);
            out.push(Violation {
                rule: Rule::MarkedDownWhileHeartbeating,
                detail: format!(
                    "osd.{osd} was marked down in osdmap ({last_up_epoch}, {epoch}], seen by {} at {:.3}s, \
                     but its heartbeat sent at {:.3}s ({:.3}s before) was acknowledged at osdmap {acked_epoch}, \
                     before the mark-down (osd_down_after {:?})",
                    e.process,
                    seen.as_secs_f64(),
                    hb.invoked.as_secs_f64(),
                    (seen - hb.invoked).as_secs_f64(),
                    down_after
                ),
                entries: shown,
            });
        }
    }
    out
}

/// The rules that would pass for want of data: every fake OSD (`osds`) has acknowledged
/// heartbeats, some watcher saw a mark-down (each run crashes a fake OSD), and some crash of
/// the leader was measured.
pub fn not_exercised(
    entries: &[Entry],
    ops: &[OpRecord],
    rules: &Rules,
    osds: &[u32],
) -> Vec<Violation> {
    let mut missing = Vec::new();
    let beating: BTreeSet<u32> = ops
        .iter()
        .filter_map(|o| match (&o.what, o.ok()) {
            (Op::Heartbeat { osd, .. }, Some(_)) => Some(*osd),
            _ => None,
        })
        .collect();
    let silent: Vec<&u32> = osds.iter().filter(|o| !beating.contains(o)).collect();
    if !silent.is_empty() {
        missing.push(format!(
            "no acknowledged heartbeat recorded for OSDs {silent:?}"
        ));
    }
    let downs = entries
        .iter()
        .any(|e| matches!(e.event, Event::Observed(Observation::OsdDown { .. })));
    if !downs {
        missing.push("no watcher saw an OSD marked down".to_string());
    }
    if !failovers(entries, ops, rules).0.iter().any(|f| f.bounded) {
        missing.push("no crash of the leader was measured".to_string());
    }
    missing
        .into_iter()
        .map(|detail| Violation {
            rule: Rule::NotExercised,
            detail,
            entries: Vec::new(),
        })
        .collect()
}

/// A failover measured after a fault of the leader.
#[derive(Debug, Clone)]
pub struct Failover {
    pub fault: String,
    pub at: Duration,
    /// Until the first acknowledged write of another monitor (None: none before the nemesis
    /// acted again, so no failover).
    pub took: Option<Duration>,
    /// Only crash failovers (kill -9 of the leader) are held to the bound.
    pub bounded: bool,
}

/// Failover times: from each fault of the leader to the first write acknowledged by another
/// monitor. After a kill -9 of the leader it must come within `lease_ttl + failover_slack`;
/// when none comes before the killed monitor is back, the first write acknowledged at all
/// counts. The other faults of the leader are measured for the report only.
pub fn failovers(
    entries: &[Entry],
    ops: &[OpRecord],
    rules: &Rules,
) -> (Vec<Failover>, Vec<Violation>) {
    let bound = rules.lease_ttl + rules.failover_slack;
    let mut writes: Vec<(&OpRecord, &Completion, &Reply)> = ops
        .iter()
        .filter(|o| o.what.is_write())
        .filter_map(|o| {
            let c = o.completion.as_ref()?;
            Some((o, c, c.result.as_ref().ok()?))
        })
        .collect();
    writes.sort_by_key(|w| w.1.at);
    let mut measured = Vec::new();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Event::Fault(f) = &e.event else { continue };
        let (monitor, bounded) = match f {
            Fault::Kill {
                monitor,
                was_leader: true,
                ..
            } => (monitor, true),
            Fault::KillEtcd {
                monitor,
                was_leader: true,
            }
            | Fault::Stop {
                monitor,
                was_leader: true,
            }
            | Fault::Partition {
                monitor,
                was_leader: true,
            } => (monitor, false),
            _ => continue,
        };
        // The fault lasts until the nemesis acts again: it restarts, continues or heals the
        // monitor, or (a killed member is restarted by its monitor) injects the next fault.
        let healed = entries[i + 1..]
            .iter()
            .find(|x| matches!(&x.event, Event::Fault(f) if !matches!(f, Fault::Note(_))))
            .map_or(Duration::MAX, |x| x.at);
        let after: Vec<_> = writes.iter().filter(|w| w.1.at > e.at).collect();
        let on_another = after
            .iter()
            .find(|w| w.2.answered_by != *monitor && w.1.at <= healed);
        let first = if bounded {
            on_another.or_else(|| after.first())
        } else {
            on_another
        };
        let took = first.map(|w| w.1.at - e.at);
        measured.push(Failover {
            fault: format!("{f:?}"),
            at: e.at,
            took,
            bounded,
        });
        if bounded && took.is_none_or(|t| t > bound) {
            let mut shown = vec![i];
            if let Some(w) = first {
                shown.extend(w.0.entries());
            }
            out.push(Violation {
                rule: Rule::SlowFailover,
                detail: match took {
                    Some(t) => format!(
                        "the leader {monitor} was killed at {:.3}s; the first write acknowledged by a new leader came {:.3}s later (bound: lease TTL {:?} + {:?})",
                        e.at.as_secs_f64(),
                        t.as_secs_f64(),
                        rules.lease_ttl,
                        rules.failover_slack
                    ),
                    None => format!(
                        "the leader {monitor} was killed at {:.3}s and no write was acknowledged afterwards",
                        e.at.as_secs_f64()
                    ),
                },
                entries: shown,
            });
        }
    }
    (measured, out)
}

/// The violations with the part of the history that shows each: its entries and every fault
/// from 10 s before the first to 2 s after the last.
pub fn report(entries: &[Entry], violations: &[Violation]) -> String {
    const SHOWN: usize = 25;
    const LINES: usize = 80;
    let mut out = String::new();
    for v in violations.iter().take(SHOWN) {
        out.push_str(&format!("\nVIOLATION {:?}: {}\n", v.rule, v.detail));
        let mut shown: BTreeSet<usize> = v.entries.iter().copied().collect();
        if let (Some(&first), Some(&last)) = (shown.first(), shown.last()) {
            let from = entries[first].at.saturating_sub(Duration::from_secs(10));
            let to = entries[last].at + Duration::from_secs(2);
            shown.extend(
                entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| {
                        matches!(e.event, Event::Fault(_)) && e.at >= from && e.at <= to
                    })
                    .map(|(i, _)| i),
            );
        }
        let total = shown.len();
        for i in shown.into_iter().take(LINES) {
            out.push_str(&format!("  {}\n", entries[i]));
        }
        if total > LINES {
            out.push_str(&format!("  … {} more entries\n", total - LINES));
        }
    }
    if violations.len() > SHOWN {
        out.push_str(&format!(
            "\n… and {} more violations\n",
            violations.len() - SHOWN
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        lease_ttl: Duration::from_secs(3),
        failover_slack: Duration::from_secs(1),
        osd_down_after: Duration::from_secs(4),
    };
    const M1: &str = "10.0.0.2:24000";
    const M2: &str = "10.0.0.6:24010";

    /// Builds histories by hand: ops with invoke and completion times in milliseconds.
    #[derive(Default)]
    struct Builder {
        entries: Vec<Entry>,
        next: u64,
    }

    fn ms(t: u64) -> Duration {
        Duration::from_millis(t)
    }

    fn reply(by: &str, term: u64) -> Reply {
        Reply {
            answered_by: by.to_string(),
            leader_epoch: Some(term),
            ..Reply::default()
        }
    }

    impl Builder {
        fn push(&mut self, at: u64, process: &str, event: Event) {
            self.entries.push(Entry {
                at: ms(at),
                process: process.to_string(),
                event,
            });
        }

        fn ok(&mut self, process: &str, what: Op, from: u64, to: u64, reply: Reply) -> &mut Self {
            self.next += 1;
            let op = self.next;
            self.push(from, process, Event::Invoke { op, what });
            self.push(to, process, Event::Ok { op, reply });
            self
        }

        fn fail(&mut self, process: &str, what: Op, from: u64, to: u64) -> &mut Self {
            self.next += 1;
            let op = self.next;
            self.push(from, process, Event::Invoke { op, what });
            self.push(
                to,
                process,
                Event::Fail {
                    op,
                    error: "no leader reachable".to_string(),
                },
            );
            self
        }

        fn saw(&mut self, at: u64, process: &str, o: Observation) -> &mut Self {
            self.push(at, process, Event::Observed(o));
            self
        }

        fn fault(&mut self, at: u64, f: Fault) -> &mut Self {
            self.push(at, "nemesis", Event::Fault(f));
            self
        }

        fn entries(&self) -> Vec<Entry> {
            let mut e = self.entries.clone();
            e.sort_by_key(|e| e.at);
            e
        }
    }

    fn image(pool: &str, name: &str, size: u64) -> Op {
        Op::CreateImage {
            pool: pool.to_string(),
            name: name.to_string(),
            size,
        }
    }

    fn resize(pool: &str, name: &str, size: u64) -> Op {
        Op::ResizeImage {
            pool: pool.to_string(),
            name: name.to_string(),
            size,
        }
    }

    fn granted(term: u64, g: Granted) -> Reply {
        Reply {
            granted: Some(g),
            ..reply(M1, term)
        }
    }

    /// A run where everything holds: ids once, writes present, epochs forward, a quick
    /// failover, a heartbeat long before a legitimate mark-down.
    fn clean() -> (Builder, FinalState) {
        let mut b = Builder::default();
        b.ok(
            "worker-1",
            Op::ApplyId {
                uuid: "u1".to_string(),
            },
            0,
            10,
            granted(5, Granted::Osd(1)),
        )
        .ok(
            "worker-2",
            Op::ApplyId {
                uuid: "u2".to_string(),
            },
            5,
            20,
            granted(5, Granted::Osd(2)),
        )
        .ok(
            "worker-1",
            Op::CreatePool {
                name: "p".to_string(),
                pg_count: 8,
            },
            30,
            40,
            Reply {
                pool_epochs: vec![(1, 1)],
                ..granted(5, Granted::Pool(1))
            },
        )
        .ok(
            "worker-1",
            image("p", "i", 100),
            50,
            60,
            granted(5, Granted::Image(1)),
        )
        .ok(
            "worker-1",
            resize("p", "i", 200),
            70,
            80,
            Reply {
                image_size: Some(200),
                ..reply(M1, 5)
            },
        )
        .ok(
            "worker-2",
            Op::SetFlag {
                flag: ClusterFlag::Noout,
            },
            90,
            100,
            Reply {
                osdmap_epoch: Some(3),
                ..reply(M1, 5)
            },
        )
        .ok(
            "osd.7",
            Op::Heartbeat {
                osd: 7,
                boot_instance: 1,
            },
            1_000,
            1_010,
            Reply {
                osdmap_epoch: Some(3),
                ..reply(M1, 5)
            },
        )
        .saw(
            5_500,
            "watcher-1",
            Observation::OsdDown {
                osd: 7,
                last_up_epoch: 3,
                epoch: 4,
            },
        )
        .fault(
            6_000,
            Fault::Kill {
                monitor: M1.to_string(),
                was_leader: true,
                host_down: true,
            },
        )
        .fail(
            "worker-2",
            Op::UnsetFlag {
                flag: ClusterFlag::Noout,
            },
            6_000,
            7_000,
        )
        .ok(
            "prober",
            resize("p", "probe", 1),
            9_000,
            9_500,
            Reply {
                image_size: Some(1),
                ..reply(M2, 9)
            },
        )
        .fault(
            10_000,
            Fault::Restart {
                monitor: M1.to_string(),
            },
        );
        let end = FinalState {
            pools: [("p".to_string(), (1, 8))].into(),
            images: [
                (("p".to_string(), "i".to_string()), (1, 200)),
                (("p".to_string(), "probe".to_string()), (2, 1)),
            ]
            .into(),
            // The unacknowledged UnsetFlag may or may not have happened.
            flags: BTreeSet::new(),
            osds: [(1, ("u1".to_string(), true)), (2, ("u2".to_string(), true))].into(),
        };
        (b, end)
    }

    #[test]
    fn a_clean_history_passes_every_rule() {
        let (b, end) = clean();
        let entries = b.entries();
        let v = check(&entries, &RULES, &end, &end, &[7]);
        assert!(v.is_empty(), "{}", report(&entries, &v));
        let (measured, _) = failovers(&entries, &operations(&entries), &RULES);
        assert_eq!(measured.len(), 1);
        assert_eq!(measured[0].took, Some(ms(3_500)));
    }

    #[test]
    fn rules_without_data_are_reported() {
        let (b, _) = clean();
        let entries = b.entries();
        let ops = operations(&entries);
        assert!(not_exercised(&entries, &ops, &RULES, &[7]).is_empty());
        let v = not_exercised(&entries, &ops, &RULES, &[7, 8]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("[8]"), "{}", v[0].detail);
        let quiet = Builder::default().entries();
        assert_eq!(not_exercised(&quiet, &[], &RULES, &[]).len(), 2);
    }

    #[test]
    fn an_osd_id_granted_to_two_uuids_is_reported() {
        let (mut b, _) = clean();
        b.ok(
            "worker-3",
            Op::ApplyId {
                uuid: "u3".to_string(),
            },
            200,
            210,
            granted(5, Granted::Osd(2)),
        );
        let v = granted_twice(&operations(&b.entries()));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].rule, Rule::GrantedTwice);
        assert!(
            v[0].detail
                .contains("OSD id 2 granted to uuid u2 and to uuid u3")
        );
    }

    #[test]
    fn an_image_id_granted_twice_is_reported() {
        let (mut b, _) = clean();
        b.ok(
            "worker-2",
            image("p", "j", 1),
            200,
            210,
            granted(5, Granted::Image(1)),
        );
        let v = granted_twice(&operations(&b.entries()));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("Image(1)"), "{}", v[0].detail);
    }

    #[test]
    fn an_acknowledged_write_missing_at_the_end_is_reported() {
        let (b, mut end) = clean();
        // The acknowledged resize to 200 is gone.
        end.images
            .insert(("p".to_string(), "i".to_string()), (1, 100));
        let entries = b.entries();
        let v = lost_writes(&operations(&entries), &end);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].rule, Rule::LostWrite);
        assert!(v[0].detail.contains("size 100"), "{}", v[0].detail);
        assert!(!report(&entries, &v).is_empty());
    }

    #[test]
    fn an_unacknowledged_write_after_it_explains_a_difference() {
        let (mut b, mut end) = clean();
        b.fail(
            "worker-1",
            Op::RemoveImage {
                pool: "p".to_string(),
                name: "i".to_string(),
            },
            300,
            400,
        );
        end.images.remove(&("p".to_string(), "i".to_string()));
        assert!(lost_writes(&operations(&b.entries()), &end).is_empty());
        // ... but not a value no operation ever wrote.
        end.images
            .insert(("p".to_string(), "i".to_string()), (1, 150));
        assert_eq!(lost_writes(&operations(&b.entries()), &end).len(), 1);
    }

    #[test]
    fn an_unacknowledged_write_before_an_acknowledged_one_cannot_win() {
        let mut b = Builder::default();
        b.ok(
            "w",
            image("p", "i", 1),
            0,
            10,
            granted(5, Granted::Image(9)),
        )
        .fail("w", resize("p", "i", 10), 20, 30)
        .ok("w", resize("p", "i", 20), 40, 50, reply(M1, 5));
        let end = FinalState {
            images: [(("p".to_string(), "i".to_string()), (9, 10))].into(),
            ..FinalState::default()
        };
        let v = lost_writes(&operations(&b.entries()), &end);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].detail.contains("image id 9 size 20"),
            "{}",
            v[0].detail
        );
    }

    #[test]
    fn a_deleted_pool_takes_its_images_along() {
        let (mut b, mut end) = clean();
        b.ok(
            "worker-1",
            Op::DeletePool {
                name: "p".to_string(),
            },
            11_000,
            11_100,
            reply(M2, 9),
        );
        end.pools.clear();
        end.images.clear();
        let v = lost_writes(&operations(&b.entries()), &end);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_state_that_changes_across_a_handover_is_reported() {
        let (_, end) = clean();
        let mut after = end.clone();
        after.flags.insert(ClusterFlag::Norebalance);
        let v = differs_after_handover(&end, &after);
        assert_eq!(v.len(), 1);
        assert!(v[0].detail.contains("Norebalance"), "{}", v[0].detail);
        assert!(differs_after_handover(&end, &end).is_empty());
    }

    #[test]
    fn an_epoch_going_back_for_one_observer_is_reported() {
        let (mut b, _) = clean();
        b.saw(200, "watcher-3", Observation::Osdmap { epoch: 5 })
            .saw(300, "watcher-3", Observation::Osdmap { epoch: 4 })
            // Another observer being behind is not a violation of this rule.
            .saw(310, "watcher-4", Observation::Osdmap { epoch: 2 });
        let v = epochs_went_back(&b.entries());
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("watcher-3 saw Osdmap epoch 4 after 5"));
    }

    #[test]
    fn a_term_going_back_in_real_time_is_a_fenced_leaders_answer() {
        let (mut b, _) = clean();
        b.ok(
            "worker-2",
            Op::SetFlag {
                flag: ClusterFlag::Noin,
            },
            11_000,
            11_100,
            reply(M2, 9),
        )
        // Invoked after term 9 answered, answered by term 5: a superseded leader.
        .ok(
            "worker-3",
            Op::SetFlag {
                flag: ClusterFlag::Norebalance,
            },
            11_200,
            11_300,
            reply(M1, 5),
        );
        let entries = b.entries();
        let v = stale_answers(&entries, &operations(&entries));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].rule, Rule::StaleAnswer);
        assert!(
            v[0].detail
                .contains("superseded (fenced) leader accepted a write"),
            "{}",
            v[0].detail
        );
    }

    #[test]
    fn concurrent_operations_may_see_either_order() {
        let (mut b, _) = clean();
        // Invoked before the prober's term-9 answer came back at 9.5 s: either order is
        // possible, so an answer from term 5 is fine.
        b.ok("worker-3", Op::ReadStatus, 9_100, 9_600, reply(M1, 5));
        let entries = b.entries();
        assert!(stale_answers(&entries, &operations(&entries)).is_empty());
    }

    #[test]
    fn a_mark_down_right_after_an_acknowledged_heartbeat_is_reported() {
        let (mut b, _) = clean();
        b.ok(
            "osd.8",
            Op::Heartbeat {
                osd: 8,
                boot_instance: 1,
            },
            3_000,
            3_010,
            Reply {
                osdmap_epoch: Some(3),
                ..reply(M1, 5)
            },
        )
        .saw(
            5_000,
            "watcher-1",
            Observation::OsdDown {
                osd: 8,
                last_up_epoch: 3,
                epoch: 4,
            },
        );
        let entries = b.entries();
        let v =
            marked_down_while_heartbeating(&entries, &operations(&entries), RULES.osd_down_after);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("osd.8"), "{}", v[0].detail);
    }

    #[test]
    fn heartbeats_answered_after_the_mark_down_or_unacknowledged_do_not_count() {
        let mut b = Builder::default();
        // Answered at an epoch after the mark-down: it came after it (and brings the OSD back).
        b.ok(
            "osd.8",
            Op::Heartbeat {
                osd: 8,
                boot_instance: 1,
            },
            4_900,
            5_100,
            Reply {
                osdmap_epoch: Some(4),
                ..reply(M1, 5)
            },
        )
        // Never acknowledged (no leader).
        .fail(
            "osd.8",
            Op::Heartbeat {
                osd: 8,
                boot_instance: 1,
            },
            4_000,
            4_500,
        )
        .saw(
            5_000,
            "watcher-1",
            Observation::OsdDown {
                osd: 8,
                last_up_epoch: 3,
                epoch: 4,
            },
        );
        let entries = b.entries();
        let v =
            marked_down_while_heartbeating(&entries, &operations(&entries), RULES.osd_down_after);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_slow_crash_failover_is_reported_and_other_faults_are_only_measured() {
        let mut b = Builder::default();
        // The leader's member killed and restarted: no failover before the next fault.
        b.fault(
            500,
            Fault::KillEtcd {
                monitor: M1.to_string(),
                was_leader: true,
            },
        )
        .fault(
            1_000,
            Fault::Kill {
                monitor: M1.to_string(),
                was_leader: true,
                host_down: true,
            },
        )
        // A late answer of the killed monitor does not count.
        .ok("prober", resize("p", "probe", 1), 900, 1_100, reply(M1, 5))
        .ok(
            "prober",
            resize("p", "probe", 2),
            1_200,
            5_200,
            reply(M2, 9),
        )
        .fault(
            8_000,
            Fault::Restart {
                monitor: M1.to_string(),
            },
        )
        .fault(
            9_000,
            Fault::Stop {
                monitor: M2.to_string(),
                was_leader: true,
            },
        )
        .fault(
            20_000,
            Fault::Continue {
                monitor: M2.to_string(),
            },
        );
        let entries = b.entries();
        let (measured, v) = failovers(&entries, &operations(&entries), &RULES);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].rule, Rule::SlowFailover);
        assert!(v[0].detail.contains("4.200s later"), "{}", v[0].detail);
        assert_eq!(measured.len(), 3);
        assert_eq!(measured[0].took, None, "{measured:?}");
        assert_eq!(measured[2].took, None);
        assert!(!measured[2].bounded);
    }
}
