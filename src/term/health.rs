//! The term's health task: every [`timing::HEALTH_EVERY`] it evaluates the failing checks
//! (`TermContext::health`) and, when they differ from the stored health (a check to raise,
//! update or clear, a mute whose time is up or whose check worsened), proposes
//! `ReconcileHealth`. The transitions and their events are the core's (`cluster::health`), so
//! each is written once, in the transaction that stores it, whoever leads.
//!
//! For the first `hold` of a term (the failure detector's grace, during which it has not yet
//! heard from every OSD), the checks built on what the term learns by itself
//! ([`health::codes::LEARNED`]: the failure detector's findings, oversized changes) are not
//! cleared when not observed: a new leader does not clear what its predecessor raised only
//! because it has not learned it yet. Checks read from the state are complete from the start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::TermContext;
use crate::cluster::command::ReconcileHealth;
use crate::cluster::health::Observed;
use crate::commit::ProposeError;
use crate::health;
use crate::observer::MonitorView;
use crate::timing;

/// Runs until `stop`. Never fails: a refused or lost proposal is tried again next round.
pub async fn run(
    context: Arc<TermContext>,
    view: watch::Receiver<MonitorView>,
    expected_monitors: usize,
    hold: Duration,
    stop: CancellationToken,
) {
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(timing::HEALTH_EVERY) => {}
        }
        let snap = context.snapshot();
        let monitors = view.borrow().monitors.len();
        let observed: Vec<Observed> = context
            .health(&snap, monitors, expected_monitors)
            .iter()
            .map(|c| c.observed())
            .collect();
        let now_ms = timing::unix_ms_now();
        let held: Vec<String> = if started.elapsed() < hold {
            health::codes::LEARNED
                .iter()
                .map(|c| c.to_string())
                .collect()
        } else {
            Vec::new()
        };
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
