//! The term's health task: every [`timing::HEALTH_EVERY`] it evaluates the failing checks
//! (`TermContext::health`) and, when they differ from the stored health (a check to raise,
//! update or clear, a mute whose time is up or whose check worsened), proposes
//! `ReconcileHealth`. The transitions and their events are the core's (`cluster::health`), so
//! each is written once, in the transaction that stores it, whoever leads.
//!
//! It also keeps since when each PG has not been active (PG_STUCK_INACTIVE after
//! `pg_stuck_inactive_after`), scanning the snapshot on the blocking pool.
//!
//! At the start of a term the checks built on what the term learns by itself
//! ([`health::codes::LEARNED`]) are not cleared when not observed, each until the term can have
//! learned it again (`held_codes`): a new leader does not clear what its predecessor raised
//! only because it has not learned it yet. Checks read from the state are complete from the
//! start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::TermContext;
use crate::cluster::command::ReconcileHealth;
use crate::cluster::health::Observed;
use crate::cluster::{ClusterState, PgId, PgState, PoolId};
use crate::commit::ProposeError;
use crate::health::{self, StuckPgs};
use crate::node::Node;
use crate::reconcile::off_runtime;
use crate::timing;

/// The task's timing settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long clears of learned checks are held at the start of a term.
    pub hold: Duration,
    /// A PG not active this long is stuck.
    pub stuck_after: Duration,
}

/// Runs until `stop`. Never fails: a refused or lost proposal is tried again next round.
pub async fn run(
    context: Arc<TermContext>,
    node: Arc<Node>,
    timing: Timing,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut inactive = Inactive::default();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(timing::HEALTH_EVERY) => {}
        }
        let snap = context.snapshot();
        let (next, stuck) = {
            let snap = snap.clone();
            let now = Instant::now();
            off_runtime(move || {
                let stuck = inactive.update(&snap, now, timing.stuck_after);
                (inactive, stuck)
            })
            .await
        };
        inactive = next;
        context.stuck_inactive.store(Arc::new(stuck));
        let observed: Vec<Observed> = context
            .health(&snap, node.monitor_facts())
            .iter()
            .map(|c| c.observed())
            .collect();
        let now_ms = timing::unix_ms_now();
        let held = held_codes(
            started.elapsed(),
            timing,
            !inactive.since.is_empty(),
            context.webhooks.health.load().loaded,
        );
        if snap.health().reconcile(&observed, now_ms, &held).is_none() {
            continue;
        }
        let command = ReconcileHealth {
            observed,
            now_ms,
            held,
        };
        match context.propose(command).await {
            Ok(_) => {}
            Err(ProposeError::NotLeader) => return,
            Err(e) => tracing::warn!(error = %e, "storing health changes failed; trying again"),
        }
    }
}

/// The checks whose clears are held `elapsed` into a term, each until the term can have
/// learned it again:
/// - the failure detector's (flapping, late heartbeats, refused outs and downs) and changes too
///   large: for `hold` (`osd_down_after`, by when every live OSD has been heard from);
/// - `PG_STUCK_INACTIVE`: while some PG is not active, for `stuck_after` (a new leader needs
///   that long to find a PG stuck again; with every PG active it clears at once);
/// - `ETCD_SLOW`, `ETCD_UNREACHABLE`: for the window of transactions they are judged on;
/// - the webhook checks: until the term's webhook task has read the registrations.
fn held_codes(
    elapsed: Duration,
    timing: Timing,
    any_inactive: bool,
    webhooks_loaded: bool,
) -> Vec<String> {
    use health::codes;
    health::codes::LEARNED
        .iter()
        .filter(|&&code| match code {
            codes::PG_STUCK_INACTIVE => any_inactive && elapsed < timing.stuck_after,
            codes::ETCD_SLOW | codes::ETCD_UNREACHABLE => {
                elapsed < crate::timing::ETCD_HEALTH_WINDOW
            }
            codes::WEBHOOK_DEAD_LETTERS | codes::WEBHOOK_DISABLED => !webhooks_loaded,
            _ => elapsed < timing.hold,
        })
        .map(|c| c.to_string())
        .collect()
}

/// Since when each PG of the term has not been active (as this term saw it).
#[derive(Debug, Default)]
struct Inactive {
    since: HashMap<(PoolId, PgId), Instant>,
}

impl Inactive {
    /// Notes which PGs of `snap` are not active at `now`, and returns those not active for
    /// longer than `after`.
    fn update(&mut self, snap: &ClusterState, now: Instant, after: Duration) -> StuckPgs {
        let mut seen = HashMap::with_capacity(self.since.len());
        let mut stuck: Vec<(Duration, PoolId, PgId)> = Vec::new();
        for pool in snap.pools() {
            for (pg, p) in pool.pgs.iter() {
                if p.state.contains(PgState::ACTIVE) {
                    continue;
                }
                let since = self.since.get(&(pool.id, pg)).copied().unwrap_or(now);
                seen.insert((pool.id, pg), since);
                let inactive = now.saturating_duration_since(since);
                if inactive > after {
                    stuck.push((inactive, pool.id, pg));
                }
            }
        }
        self.since = seen;
        let count = stuck.len();
        stuck.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        stuck.truncate(health::MAX_DETAIL);
        StuckPgs {
            count,
            longest: stuck
                .into_iter()
                .map(|(d, pool, pg)| {
                    let name = snap.pool(pool).map(|p| p.name.clone()).unwrap_or_default();
                    (name, pg, d)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_cluster;
    use crate::cluster::{PoolArgs, command};

    #[test]
    fn a_new_term_holds_the_clears_of_what_it_has_not_learned_yet() {
        let timing = Timing {
            hold: Duration::from_secs(10),
            stuck_after: Duration::from_secs(60),
        };
        let secs = Duration::from_secs;
        let every_learned = held_codes(secs(1), timing, true, false);
        assert_eq!(every_learned.len(), health::codes::LEARNED.len());
        for code in [
            "OSD_HEARTBEAT_LATE",
            "PG_STUCK_INACTIVE",
            "ETCD_SLOW",
            "WEBHOOK_DISABLED",
        ] {
            assert!(every_learned.iter().any(|c| c == code), "{code} held");
        }
        // Checks read from the stored state are never held.
        assert!(
            !every_learned
                .iter()
                .any(|c| c == "OSD_DOWN" || c == "PG_DEGRADED")
        );
        // Each kind for as long as it takes to learn it again.
        assert_eq!(
            held_codes(secs(11), timing, true, true),
            vec!["PG_STUCK_INACTIVE", "ETCD_SLOW", "ETCD_UNREACHABLE"]
        );
        assert_eq!(
            held_codes(secs(11), timing, false, true),
            vec!["ETCD_SLOW", "ETCD_UNREACHABLE"]
        );
        assert_eq!(
            held_codes(secs(31), timing, true, false),
            vec![
                "PG_STUCK_INACTIVE",
                "WEBHOOK_DEAD_LETTERS",
                "WEBHOOK_DISABLED"
            ]
        );
        assert!(held_codes(secs(61), timing, true, true).is_empty());
        // No PG inactive: a raised PG_STUCK_INACTIVE clears at once.
        assert!(
            !held_codes(secs(1), timing, false, true)
                .iter()
                .any(|c| c == "PG_STUCK_INACTIVE")
        );
    }

    #[test]
    fn a_pg_not_active_for_longer_than_the_threshold_is_stuck_until_it_is_active() {
        let mut s = test_cluster(6, 3);
        s.begin_group();
        s.apply(&command::CreatePool(PoolArgs {
            name: "rbd".into(),
            size: 3,
            pg_count: 8,
            failure_domain: "host".into(),
            root: String::new(),
        }))
        .unwrap();
        let t0 = Instant::now();
        let after = Duration::from_secs(60);
        let mut inactive = Inactive::default();
        // Every PG is creating: not yet stuck, then stuck, longest first.
        assert_eq!(inactive.update(&s, t0, after).count, 0);
        let stuck = inactive.update(&s, t0 + Duration::from_secs(61), after);
        assert_eq!(stuck.count, 8);
        assert_eq!(stuck.longest[0].0, "rbd");
        assert_eq!(stuck.longest[0].2, Duration::from_secs(61));
        // One becomes active: 7 left; a PG seen inactive again starts over.
        let pool = s.pool_by_name("rbd").unwrap().id;
        let members = s
            .pool(pool)
            .unwrap()
            .pgs
            .get(PgId(0))
            .unwrap()
            .members
            .clone();
        s.begin_group();
        s.apply(&command::LeaderBeElected {
            pool,
            pg: PgId(0),
            leader: members[0],
            members: members.clone(),
            new_members: Vec::new(),
        })
        .unwrap();
        assert_eq!(
            inactive
                .update(&s, t0 + Duration::from_secs(62), after)
                .count,
            7
        );
    }
}
