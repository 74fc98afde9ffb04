//! Cluster health: named checks in Ceph's vocabulary (OSD_DOWN, PG_DEGRADED, ...), each with a
//! severity, a one-line summary and details. Evaluated from a committed snapshot and the
//! failure detector's findings; GetClusterStatus and the metrics both use it.

use std::collections::BTreeMap;

use std::time::Duration;

use crate::cluster::failure::Late;
use crate::cluster::health::Observed;
use crate::cluster::{ClusterState, Health, Liveness, OsdId, OutRefusal, PgId, PgState};
use crate::commit::EtcdCommits;
use crate::timing;
use crate::webhook::supervisor::WebhookHealth;

/// Longest detail list of one check.
pub const MAX_DETAIL: usize = 20;

pub use crate::cluster::Severity;

/// The code of every check the monitor raises: what an operator may mute.
pub mod codes {
    /// Declares each code as a constant whose value is its name, and `ALL` listing them.
    macro_rules! codes {
        ($($(#[$doc:meta])* $name:ident,)*) => {
            $($(#[$doc])* pub const $name: &str = stringify!($name);)*
            /// Every code, in declaration order.
            pub const ALL: &[&str] = &[$($name),*];
        };
    }

    codes! {
        /// In OSDs are down.
        OSD_DOWN,
        /// OSDs marked down repeatedly within the flapping window.
        OSD_FLAPPING,
        /// Up OSDs silent for three of their usual heartbeat intervals, not yet marked down.
        OSD_HEARTBEAT_LATE,
        /// Down OSDs the auto-out guards keep in.
        OSD_OUT_REFUSED,
        /// Silent OSDs the min-up-ratio guard keeps up.
        OSD_DOWN_REFUSED,
        /// PGs without enough members up to serve.
        PG_AVAILABILITY,
        /// PGs with fewer members up than replicas.
        PG_DEGRADED,
        /// Cluster flags are set.
        FLAGS_SET,
        /// Fewer monitors registered than configured.
        MON_DOWN,
        /// Changes that cannot fit one etcd transaction.
        TXN_TOO_LARGE,
        /// PGs not active for longer than `pg_stuck_inactive_after`.
        PG_STUCK_INACTIVE,
        /// Several leader elections within ten minutes.
        MON_LEADER_FLAPPING,
        /// The leader's etcd transactions are slow.
        ETCD_SLOW,
        /// The leader's etcd transactions failed (unreachable, timed out) and were retried.
        ETCD_UNREACHABLE,
        /// Webhook events were given up on (dead letters kept).
        WEBHOOK_DEAD_LETTERS,
        /// Webhooks disabled because their receiver answered 410 Gone.
        WEBHOOK_DISABLED,
    }

    /// The checks built on what a term learns by itself (the failure detector's findings,
    /// changes found too large), not on the stored state: a new leader needs a while to see
    /// them again.
    pub const LEARNED: &[&str] = &[
        OSD_FLAPPING,
        OSD_HEARTBEAT_LATE,
        OSD_OUT_REFUSED,
        OSD_DOWN_REFUSED,
        TXN_TOO_LARGE,
        PG_STUCK_INACTIVE,
        ETCD_SLOW,
        ETCD_UNREACHABLE,
        WEBHOOK_DEAD_LETTERS,
        WEBHOOK_DISABLED,
    ];

    /// Whether `code` names a check.
    pub fn known(code: &str) -> bool {
        ALL.contains(&code)
    }
}

/// One failing check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub code: &'static str,
    pub severity: Severity,
    /// How many things fail (OSDs, PGs, flags, ...): a change is announced as an update.
    pub count: u64,
    pub summary: String,
    pub detail: Vec<String>,
}

impl Check {
    /// The check as the stored health's reconciliation sees it.
    pub fn observed(&self) -> Observed {
        Observed {
            code: self.code.to_string(),
            severity: self.severity,
            count: self.count,
            summary: self.summary.clone(),
        }
    }
}

/// What health is evaluated from besides the snapshot.
#[derive(Debug, Clone)]
pub struct Findings<'a> {
    /// Automatic outs the guards refused.
    pub out_refused: &'a [(OsdId, OutRefusal)],
    /// Silent OSDs the min-up-ratio guard keeps up.
    pub down_refused: &'a [OsdId],
    /// OSDs marked down repeatedly, with how often.
    pub flapping: &'a [(OsdId, usize)],
    /// Up OSDs late with their heartbeats.
    pub late: &'a [Late],
    /// PGs not active for longer than `pg_stuck_inactive_after`.
    pub stuck_inactive: &'a StuckPgs,
    /// How the leader's etcd transactions went lately.
    pub etcd: EtcdCommits,
    /// Dead letters and disabled endpoints of the webhooks.
    pub webhooks: &'a WebhookHealth,
    /// Changes that cannot be committed under the transaction limits, one line each.
    pub too_large: &'a [String],
    /// What the monitors know of themselves.
    pub monitors: MonitorFacts,
}

/// PGs not active for longer than `pg_stuck_inactive_after`: how many, and the longest stuck
/// (at most the detail list's length) with their pool's name and how long.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StuckPgs {
    pub count: usize,
    pub longest: Vec<(String, PgId, Duration)>,
}

/// What the monitors know of themselves, for the MON_* checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonitorFacts {
    /// Monitors registered now, and how many the cluster is configured with (0: unknown).
    pub registered: usize,
    pub expected: usize,
    /// Leader elections within [`timing::LEADER_FLAP_WINDOW`] (from the event log).
    pub recent_elections: usize,
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

/// The overall status: the worst check that is not muted, OK when none fails. Muted checks
/// are still listed, flagged muted, as Ceph does.
pub fn overall(checks: &[Check], stored: &Health) -> Severity {
    checks
        .iter()
        .filter(|c| !stored.is_muted(c.code))
        .map(|c| c.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// Every failing check.
pub fn evaluate(s: &ClusterState, f: &Findings<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |code, severity, count: usize, summary: String, detail: Vec<String>| {
        checks.push(Check {
            code,
            severity,
            count: count as u64,
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
            codes::OSD_DOWN,
            Severity::Warn,
            down.len(),
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
            codes::PG_AVAILABILITY,
            Severity::Err,
            unavailable as usize,
            format!("Reduced data availability: {unavailable} pgs down"),
            Vec::new(),
        );
    }
    let degraded = count(PgState::UNDERSIZE);
    if degraded > 0 {
        push(
            codes::PG_DEGRADED,
            Severity::Warn,
            degraded as usize,
            format!("Degraded data redundancy: {degraded} pgs undersized"),
            Vec::new(),
        );
    }
    let flags = s.flags();
    if flags.iter().next().is_some() {
        push(
            codes::FLAGS_SET,
            Severity::Warn,
            flags.iter().count(),
            format!("{flags} flag(s) set"),
            Vec::new(),
        );
    }
    if f.monitors.expected > f.monitors.registered {
        push(
            codes::MON_DOWN,
            Severity::Warn,
            f.monitors.expected - f.monitors.registered,
            format!(
                "{}/{} monitors down",
                f.monitors.expected - f.monitors.registered,
                f.monitors.expected
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
            codes::OSD_OUT_REFUSED,
            Severity::Warn,
            refused.len(),
            format!("{} down osds not marked out automatically", refused.len()),
            refused,
        );
    }
    if !f.down_refused.is_empty() {
        push(
            codes::OSD_DOWN_REFUSED,
            Severity::Err,
            f.down_refused.len(),
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
            codes::TXN_TOO_LARGE,
            Severity::Err,
            f.too_large.len(),
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
            codes::OSD_FLAPPING,
            Severity::Warn,
            f.flapping.len(),
            format!("{} osds flapping", f.flapping.len()),
            f.flapping
                .iter()
                .map(|(id, n)| format!("{id} marked down {n} times recently"))
                .collect(),
        );
    }
    if f.stuck_inactive.count > 0 {
        push(
            codes::PG_STUCK_INACTIVE,
            Severity::Err,
            f.stuck_inactive.count,
            format!(
                "{} pgs stuck inactive (not active for longer than pg_stuck_inactive_after)",
                f.stuck_inactive.count
            ),
            f.stuck_inactive
                .longest
                .iter()
                .map(|(pool, pg, d)| format!("pg {pool}.{} inactive for {}s", pg.0, d.as_secs()))
                .collect(),
        );
    }
    if f.monitors.recent_elections >= timing::LEADER_FLAP_COUNT {
        push(
            codes::MON_LEADER_FLAPPING,
            Severity::Warn,
            f.monitors.recent_elections,
            format!(
                "{} leader elections in the last {} minutes",
                f.monitors.recent_elections,
                timing::LEADER_FLAP_WINDOW.as_secs() / 60
            ),
            Vec::new(),
        );
    }
    if let Some(median) = f.etcd.median
        && f.etcd.succeeded >= timing::ETCD_SLOW_MIN_SAMPLES
        && median > timing::ETCD_SLOW
    {
        push(
            codes::ETCD_SLOW,
            Severity::Warn,
            1,
            format!(
                "etcd transactions take {} ms (median of {} in the last {} s)",
                median.as_millis(),
                f.etcd.succeeded,
                timing::ETCD_HEALTH_WINDOW.as_secs()
            ),
            Vec::new(),
        );
    }
    if f.etcd.failed > 0 {
        push(
            codes::ETCD_UNREACHABLE,
            Severity::Warn,
            1,
            format!(
                "{} etcd transaction attempts failed in the last {} s (retried)",
                f.etcd.failed,
                timing::ETCD_HEALTH_WINDOW.as_secs()
            ),
            Vec::new(),
        );
    }
    if f.webhooks.dead_letters > 0 {
        push(
            codes::WEBHOOK_DEAD_LETTERS,
            Severity::Warn,
            f.webhooks.dead_letters as usize,
            format!(
                "{} webhook events given up on (fbclient -op=webhook-deadletters; replay with -op=webhook-replay)",
                f.webhooks.dead_letters
            ),
            Vec::new(),
        );
    }
    if !f.webhooks.disabled.is_empty() {
        push(
            codes::WEBHOOK_DISABLED,
            Severity::Warn,
            f.webhooks.disabled.len(),
            format!(
                "{} webhooks disabled: their receiver answered 410 Gone",
                f.webhooks.disabled.len()
            ),
            f.webhooks
                .disabled
                .iter()
                .map(|id| format!("webhook {id} is disabled"))
                .collect(),
        );
    }
    if !f.late.is_empty() {
        push(
            codes::OSD_HEARTBEAT_LATE,
            Severity::Warn,
            f.late.len(),
            format!(
                "{} osds late with heartbeats (not marked down yet)",
                f.late.len()
            ),
            f.late
                .iter()
                .map(|l| {
                    format!(
                        "{} silent for {:.1}s (usually every {:.1}s)",
                        l.id,
                        l.silent.as_secs_f64(),
                        l.usual.as_secs_f64()
                    )
                })
                .collect(),
        );
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_cluster;

    fn codes_of(f: &Findings<'_>) -> Vec<&'static str> {
        evaluate(&test_cluster(3, 3), f)
            .iter()
            .map(|c| c.code)
            .collect()
    }

    fn quiet<'a>(stuck: &'a StuckPgs) -> Findings<'a> {
        static NO_WEBHOOKS: std::sync::OnceLock<WebhookHealth> = std::sync::OnceLock::new();
        Findings {
            webhooks: NO_WEBHOOKS.get_or_init(WebhookHealth::default),
            out_refused: &[],
            down_refused: &[],
            flapping: &[],
            too_large: &[],
            late: &[],
            stuck_inactive: stuck,
            monitors: MonitorFacts::default(),
            etcd: EtcdCommits::default(),
        }
    }

    #[test]
    fn etcd_checks_follow_the_leader_s_recent_transactions() {
        let stuck = StuckPgs::default();
        assert!(codes_of(&quiet(&stuck)).is_empty());
        let slow = |succeeded, ms| Findings {
            etcd: EtcdCommits {
                succeeded,
                median: Some(Duration::from_millis(ms)),
                failed: 0,
            },
            ..quiet(&stuck)
        };
        assert_eq!(codes_of(&slow(5, 600)), [codes::ETCD_SLOW]);
        assert!(codes_of(&slow(4, 600)).is_empty(), "too few to judge");
        assert!(codes_of(&slow(50, 400)).is_empty());
        let failing = Findings {
            etcd: EtcdCommits {
                succeeded: 0,
                median: None,
                failed: 2,
            },
            ..quiet(&stuck)
        };
        let checks = evaluate(&test_cluster(3, 3), &failing);
        assert_eq!(checks[0].code, codes::ETCD_UNREACHABLE);
        assert_eq!(
            checks[0].count, 1,
            "a state, not a tally: no update per failure"
        );
    }

    #[test]
    fn leader_elections_flap_from_three_within_the_window() {
        let stuck = StuckPgs::default();
        let elections = |n| Findings {
            monitors: MonitorFacts {
                registered: 3,
                expected: 3,
                recent_elections: n,
            },
            ..quiet(&stuck)
        };
        assert!(codes_of(&elections(2)).is_empty());
        assert_eq!(codes_of(&elections(3)), [codes::MON_LEADER_FLAPPING]);
    }

    #[test]
    fn every_code_is_known_and_learned_ones_are_codes() {
        assert!(codes::LEARNED.iter().all(|c| codes::known(c)));
        assert!(!codes::known("osd_down"));
        let mut sorted = codes::ALL.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), codes::ALL.len());
    }
}
