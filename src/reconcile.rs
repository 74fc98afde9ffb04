//! Keeps every PG's health bits and pending remap in line with the osdmap, during a leadership
//! term: after each osdmap change (and every few seconds regardless) it finds the PGs that are
//! out of date and proposes RefreshPgs for them, a bounded batch per pool at a time, so each
//! change stays one consistent transaction of its own pool.
//!
//! When nothing needs repair and `norebalance` is not set, it also runs rebalance rounds: each
//! round remaps at most `rebalance_max_fraction` of all PGs (minus the remaps still running),
//! and the next round follows once they complete, until the load is even.

use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::batches::{PartResult, propose_in_parts};
use crate::cluster::{ClusterFlag, Epoch, REFRESH_BATCH, command, reply};
use crate::commit::ProposeError;
use crate::failure_check::OSDS_PER_COMMAND;
use crate::term::TermContext;
use crate::timing::{RECONCILE_DEBOUNCE, RECONCILE_PASS_EVERY};

/// Name under which this task reports changes too large to commit.
const TASK: &str = "reconcile";

/// Runs until `stop`. `rebalance_fraction` bounds each rebalance round (0.05: 5% of the PGs).
pub async fn run(serving: Arc<TermContext>, rebalance_fraction: f64, stop: CancellationToken) {
    let mut commits = serving.pipeline.commits();
    let mut periodic = tokio::time::interval(RECONCILE_PASS_EVERY);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<Epoch> = None;
    let mut more = true;
    // (osdmap epoch, remaps in flight) when rebalancing last found nothing to do.
    let mut balanced_at: Option<(Epoch, usize)> = None;
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            r = commits.changed() => {
                if r.is_err() {
                    return;
                }
                false
            }
            _ = periodic.tick() => true,
        };
        tokio::time::sleep(RECONCILE_DEBOUNCE).await;
        let snap = serving.snapshot();
        if !forced && !more && seen == Some(snap.osdmap_epoch()) {
            continue;
        }
        seen = Some(snap.osdmap_epoch());
        let mut too_large = Vec::new();
        let pass = repair(&serving, &stop, &mut too_large).await;
        more = pass.more;
        if !pass.repaired && !stop.is_cancelled() {
            balanced_at =
                rebalance_round(&serving, rebalance_fraction, balanced_at, &mut too_large).await;
        }
        if !stop.is_cancelled() {
            serving.too_large.report(TASK, too_large);
        }
    }
}

/// What one repair pass found.
struct Repair {
    /// Something needed repair (rebalancing waits until nothing does).
    repaired: bool,
    /// More may be waiting behind a full batch: pass again without waiting for a change.
    more: bool,
}

/// Replays what cleared flags deferred, then brings a batch of each pool's PGs up to date.
async fn repair(
    serving: &TermContext,
    stop: &CancellationToken,
    too_large: &mut Vec<String>,
) -> Repair {
    let mut pass = Repair {
        repaired: false,
        more: false,
    };
    let snap = serving.snapshot();
    let released = snap.deferred_releases(usize::MAX);
    if !released.is_empty() {
        pass.repaired = true;
        tracing::info!(
            osds = released.len(),
            "replaying what cleared flags deferred"
        );
        let propose = |c| serving.propose(c);
        let parts = propose_in_parts(propose, released, OSDS_PER_COMMAND, |ids| {
            command::ReleaseDeferred { ids }
        })
        .await;
        for (part, result) in parts {
            match result {
                // The released OSDs change the osdmap: the PGs are looked at again after it.
                Ok(_) => pass.more = true,
                Err(e) => note_failure(&e, || format!("releasing {}", part[0]), too_large),
            }
        }
        return pass;
    }
    let todo = off_runtime(move || {
        let scan = snap.refresh_scan();
        snap.pools()
            .map(|p| (p.id, scan.pgs(p.id, REFRESH_BATCH)))
            .filter(|(_, pgs)| !pgs.is_empty())
            .collect::<Vec<_>>()
    })
    .await;
    for (id, pgs) in todo {
        if stop.is_cancelled() {
            return pass;
        }
        pass.repaired = true;
        let full = pgs.len() == REFRESH_BATCH;
        let propose = |c| serving.propose(c);
        let parts = propose_in_parts(propose, pgs, REFRESH_BATCH, |pgs| command::RefreshPgs {
            pool: id,
            pgs,
        })
        .await;
        let changed = count_changed(&parts, |part, e| {
            note_failure(e, || format!("{id} PG {}", part[0].0), too_large)
        });
        // A full batch that changed something may have more behind it. PGs that cannot be
        // fixed now (no OSD to refill them) change nothing: wait for the next osdmap change or
        // the periodic pass instead of spinning on them.
        pass.more |= full && changed > 0;
    }
    pass
}

/// Runs a pure computation over a snapshot on the blocking pool: at a million PGs a scan or a
/// rebalance plan takes seconds, which on a runtime worker would hold up the calls the monitor
/// serves. A panic in it is the task's panic (it ends the term).
pub(crate) async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("a computation on the blocking pool was cancelled: {e}"),
        },
    }
}

/// PGs changed by the committed parts; `failed` is called for every part that failed.
fn count_changed<T>(
    parts: &[PartResult<T, reply::Refreshed>],
    mut failed: impl FnMut(&[T], &ProposeError),
) -> usize {
    let mut changed = 0;
    for (part, result) in parts {
        match result {
            Ok(reply::Refreshed { changed: n }) => changed += n,
            Err(e) => failed(part, e),
        }
    }
    changed
}

/// Logs a failed part; one that cannot fit a transaction even alone is reported for health.
fn note_failure(e: &ProposeError, what: impl Fn() -> String, too_large: &mut Vec<String>) {
    tracing::warn!(error = %e, change = %what(), "cannot commit a reconciler change");
    if let ProposeError::TooLarge { .. } = e {
        too_large.push(format!("{}: {e}", what()));
    }
}

/// One rebalance round if it can help; returns the new "balanced at" marker.
async fn rebalance_round(
    serving: &TermContext,
    fraction: f64,
    balanced_at: Option<(Epoch, usize)>,
    too_large: &mut Vec<String>,
) -> Option<(Epoch, usize)> {
    let snap = serving.snapshot();
    if snap.flags().contains(ClusterFlag::NoRebalance) {
        return None;
    }
    let in_flight = snap.remapped_count();
    let marker = (snap.osdmap_epoch(), in_flight);
    if balanced_at == Some(marker) {
        return balanced_at;
    }
    let round = ((snap.pg_count() as f64 * fraction) as usize).max(1);
    let budget = round.saturating_sub(in_flight);
    if budget == 0 {
        // The previous round is still moving data: wait for it.
        return None;
    }
    let plan = off_runtime(move || snap.plan_rebalance(budget)).await;
    if plan.is_empty() {
        return Some(marker);
    }
    let total: usize = plan.values().map(Vec::len).sum();
    tracing::info!(moves = total, in_flight, "rebalance round");
    let propose = |c| serving.propose(c);
    for (pool, moves) in plan {
        let parts = propose_in_parts(propose, moves, REFRESH_BATCH, |moves| command::Rebalance {
            pool,
            moves,
        })
        .await;
        if parts
            .iter()
            .any(|(_, r)| matches!(r, Err(ProposeError::NotLeader)))
        {
            return None;
        }
        count_changed(&parts, |part, e| {
            note_failure(
                e,
                || format!("{pool} PG {} (rebalance)", part[0].pg.0),
                too_large,
            )
        });
    }
    None
}
