//! Keeps every PG's health bits and pending remap in line with the osdmap, during a leadership
//! term: after each osdmap change (and every few seconds regardless) it finds the PGs that are
//! out of date and proposes RefreshPgs for them, a bounded batch per pool at a time, so each
//! change stays one consistent transaction of its own pool.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cluster::{Command, Epoch, Outcome, REFRESH_BATCH};
use crate::commit::Serving;

/// A full pass happens at least this often, whatever changed.
const PASS_EVERY: Duration = Duration::from_secs(5);
/// Bursts of commits (a boot storm) are coalesced into one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Runs until `stop`.
pub async fn run(serving: Arc<Serving>, stop: CancellationToken) {
    let mut commits = serving.commits();
    let mut periodic = tokio::time::interval(PASS_EVERY);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<Epoch> = None;
    let mut more = true;
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
        for pool in snap.pools() {
            if stop.is_cancelled() {
                return;
            }
            let pgs = snap.pgs_needing_refresh(pool.id, REFRESH_BATCH);
            if pgs.is_empty() {
                continue;
            }
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
    }
}
