//! Keeps every PG's health bits and pending remap in line with the osdmap, during a leadership
//! term: after each osdmap change (and every few seconds regardless) it finds the PGs that are
//! out of date and proposes RefreshPgs for them, a bounded batch per pool at a time, so each
//! change stays one consistent transaction of its own pool.
//!
//! When nothing needs repair and `norebalance` is not set, it also runs rebalance rounds: each
//! round remaps at most `rebalance_max_fraction` of all PGs (minus the remaps still running),
//! and the next round follows once they complete, until the load is even.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterFlag, Command, Epoch, Outcome, REFRESH_BATCH};
use crate::commit::Serving;

/// A full pass happens at least this often, whatever changed.
const PASS_EVERY: Duration = Duration::from_secs(5);
/// Bursts of commits (a boot storm) are coalesced into one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Runs until `stop`. `rebalance_fraction` bounds each rebalance round (0.05: 5% of the PGs).
pub async fn run(serving: Arc<Serving>, rebalance_fraction: f64, stop: CancellationToken) {
    let mut commits = serving.commits();
    let mut periodic = tokio::time::interval(PASS_EVERY);
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
        tokio::time::sleep(DEBOUNCE).await;
        let snap = serving.snapshot();
        if !forced && !more && seen == Some(snap.osdmap_epoch()) {
            continue;
        }
        seen = Some(snap.osdmap_epoch());
        more = false;
        let mut repaired = false;
        for pool in snap.pools() {
            if stop.is_cancelled() {
                return;
            }
            let pgs = snap.pgs_needing_refresh(pool.id, REFRESH_BATCH);
            if pgs.is_empty() {
                continue;
            }
            repaired = true;
            let full = pgs.len() == REFRESH_BATCH;
            match serving
                .propose(Command::RefreshPgs { pool: pool.id, pgs })
                .await
            {
                // A full batch that changed something may have more behind it. PGs that cannot
                // be fixed now (no OSD to refill them) change nothing: wait for the next osdmap
                // change or the periodic pass instead of spinning on them.
                Ok(Outcome::Refreshed { changed }) => more |= full && changed > 0,
                Ok(other) => tracing::warn!(pool = %pool.id, ?other, "unexpected refresh outcome"),
                Err(e) => tracing::warn!(pool = %pool.id, error = %e, "cannot refresh PGs"),
            }
        }
        if !repaired {
            balanced_at = rebalance_round(&serving, rebalance_fraction, balanced_at, &stop).await;
        }
    }
}

/// One rebalance round if it can help; returns the new "balanced at" marker.
async fn rebalance_round(
    serving: &Serving,
    fraction: f64,
    balanced_at: Option<(Epoch, usize)>,
    stop: &CancellationToken,
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
    let plan = snap.plan_rebalance(budget);
    if plan.is_empty() {
        return Some(marker);
    }
    let total: usize = plan.values().map(Vec::len).sum();
    tracing::info!(moves = total, in_flight, "rebalance round");
    for (pool, moves) in plan {
        for batch in moves.chunks(REFRESH_BATCH) {
            if stop.is_cancelled() {
                return None;
            }
            let command = Command::Rebalance {
                pool,
                moves: batch.to_vec(),
            };
            if let Err(e) = serving.propose(command).await {
                tracing::warn!(%pool, error = %e, "cannot apply rebalance moves");
                return None;
            }
        }
    }
    None
}
