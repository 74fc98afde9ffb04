//! Cluster health: named checks in Ceph's vocabulary (OSD_DOWN, PG_DEGRADED, ...), each with a
//! severity, a one-line summary and details. Evaluated from a committed snapshot and the
//! failure detector's findings; GetClusterStatus and the metrics both use it.

use std::collections::BTreeMap;

use crate::cluster::{ClusterState, Liveness, OsdId, OutRefusal, PgState};

/// Longest detail list of one check.
const MAX_DETAIL: usize = 20;

/// How bad a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Warn,
    Err,
}

impl Severity {
    /// `HEALTH_OK`-style name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "HEALTH_OK",
            Severity::Warn => "HEALTH_WARN",
            Severity::Err => "HEALTH_ERR",
        }
    }
}

/// One failing check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub code: &'static str,
    pub severity: Severity,
    pub summary: String,
    pub detail: Vec<String>,
}

/// What health is evaluated from besides the snapshot.
#[derive(Debug, Clone, Default)]
pub struct Findings<'a> {
    /// Automatic outs the guards refused.
    pub out_refused: &'a [(OsdId, OutRefusal)],
    /// Silent OSDs the min-up-ratio guard keeps up.
    pub down_refused: &'a [OsdId],
    /// OSDs marked down repeatedly, with how often.
    pub flapping: &'a [(OsdId, usize)],
    /// Changes that cannot be committed under the transaction limits, one line each.
    pub too_large: &'a [String],
    /// Monitors registered now, and how many the cluster is configured with (0: unknown).
    pub monitors: usize,
    pub expected_monitors: usize,
}

/// PG counts by state bits, over every pool.
pub fn pg_states(s: &ClusterState) -> BTreeMap<u32, u64> {
    let mut states = BTreeMap::new();
    for p in s.pools() {
        for (_, pg) in p.pgs.iter() {
            *states.entry(pg.state.0).or_insert(0) += 1;
        }
    }
    states
}

/// The overall status: the worst check, OK when none fails.
pub fn overall(checks: &[Check]) -> Severity {
    checks
        .iter()
        .map(|c| c.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// Every failing check.
pub fn evaluate(s: &ClusterState, f: &Findings<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |code, severity, summary: String, detail: Vec<String>| {
        checks.push(Check {
            code,
            severity,
            summary,
            detail: detail.into_iter().take(MAX_DETAIL).collect(),
        })
    };
    let down: Vec<String> = s
        .osds()
        .filter(|o| {
            o.is_in()
                && matches!(
                    o.liveness,
                    Liveness::Down { .. } | Liveness::HeldDown { .. }
                )
        })
        .map(|o| format!("{} ({}) is down", o.id, o.location.host))
        .collect();
    if !down.is_empty() {
        push(
            "OSD_DOWN",
            Severity::Warn,
            format!("{} osds down", down.len()),
            down,
        );
    }
    let states = pg_states(s);
    let count = |bit: PgState| -> u64 {
        states
            .iter()
            .filter(|(s, _)| PgState(**s).contains(bit))
            .map(|(_, n)| n)
            .sum()
    };
    let unavailable = count(PgState::DOWN);
    if unavailable > 0 {
        push(
            "PG_AVAILABILITY",
            Severity::Err,
            format!("Reduced data availability: {unavailable} pgs down"),
            Vec::new(),
        );
    }
    let degraded = count(PgState::UNDERSIZE);
    if degraded > 0 {
        push(
            "PG_DEGRADED",
            Severity::Warn,
            format!("Degraded data redundancy: {degraded} pgs undersized"),
            Vec::new(),
        );
    }
    let flags = s.flags();
    if flags.iter().next().is_some() {
        push(
            "FLAGS_SET",
            Severity::Warn,
            format!("{flags} flag(s) set"),
            Vec::new(),
        );
    }
    if f.expected_monitors > f.monitors {
        push(
            "MON_DOWN",
            Severity::Warn,
            format!(
                "{}/{} monitors down",
                f.expected_monitors - f.monitors,
                f.expected_monitors
            ),
            Vec::new(),
        );
    }
    // Only refusals that still hold: the OSD is still down and in.
    let refused: Vec<String> = f
        .out_refused
        .iter()
        .filter(|(id, _)| s.osd(*id).is_some_and(|o| o.is_in() && !o.is_up()))
        .map(|(id, why)| match why {
            OutRefusal::MinInRatio => {
                format!("{id} stays in: marking it out would leave too few OSDs in")
            }
            OutRefusal::WholeSubtreeDown(level) => format!(
                "{id} stays in: its whole {} is down (mark it out by hand if it is gone)",
                level.name()
            ),
        })
        .collect();
    if !refused.is_empty() {
        push(
            "OSD_OUT_REFUSED",
            Severity::Warn,
            format!("{} down osds not marked out automatically", refused.len()),
            refused,
        );
    }
    if !f.down_refused.is_empty() {
        push(
            "OSD_DOWN_REFUSED",
            Severity::Err,
            format!(
                "{} silent osds not marked down: too few osds would stay up \
                 (osd_min_up_ratio)",
                f.down_refused.len()
            ),
            f.down_refused
                .iter()
                .map(|id| format!("{id} sends no heartbeat but stays up"))
                .collect(),
        );
    }
    if !f.too_large.is_empty() {
        push(
            "TXN_TOO_LARGE",
            Severity::Err,
            format!(
                "{} changes cannot be committed: each exceeds one etcd transaction \
                 (raise etcd_txn_max_ops / etcd_txn_max_bytes)",
                f.too_large.len()
            ),
            f.too_large.to_vec(),
        );
    }
    if !f.flapping.is_empty() {
        push(
            "OSD_FLAPPING",
            Severity::Warn,
            format!("{} osds flapping", f.flapping.len()),
            f.flapping
                .iter()
                .map(|(id, n)| format!("{id} marked down {n} times recently"))
                .collect(),
        );
    }
    checks
}
