//! Runs the failure detector once a second during a leadership term and proposes its
//! decisions: mark silent OSDs down, mark long-down OSDs out. The commands honour nodown and
//! noout and the auto-out guards; refusals and flapping OSDs are kept for the health report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cluster::failure::FailurePolicy;
use crate::cluster::{ClusterFlag, Command, Outcome};
use crate::commit::Serving;

/// How often the detector looks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs until `stop`.
pub async fn run(serving: Arc<Serving>, policy: FailurePolicy, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snap = serving.snapshot();
        let now = Instant::now();
        let decisions = serving.detector().check(&snap, now, policy);
        let flags = snap.flags();
        if !decisions.mark_down.is_empty() && !flags.contains(ClusterFlag::NoDown) {
            tracing::warn!(osds = ?decisions.mark_down, after_s = policy.down_after.as_secs(), "marking OSDs down: no heartbeat");
            let ids = decisions.mark_down.clone();
            match serving.propose(Command::MarkDown { ids }).await {
                Ok(_) => {
                    let mut detector = serving.detector();
                    for id in decisions.mark_down {
                        detector.marked_down(id, now);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot mark OSDs down"),
            }
        }
        let mut refused = Vec::new();
        if !decisions.mark_out.is_empty() && !flags.contains(ClusterFlag::NoOut) {
            let command = Command::MarkOut {
                ids: decisions.mark_out,
                guards: policy.guards,
            };
            match serving.propose(command).await {
                Ok(Outcome::MarkedOut { marked, refused: r }) => {
                    if !marked.is_empty() {
                        tracing::warn!(osds = ?marked, after_s = policy.out_after.as_secs(), "marked OSDs out: down too long");
                    }
                    if !r.is_empty() {
                        tracing::warn!(osds = ?r, "automatic out refused by the guards");
                    }
                    refused = r;
                }
                Ok(other) => tracing::warn!(?other, "unexpected outcome of MarkOut"),
                Err(e) => tracing::warn!(error = %e, "cannot mark OSDs out"),
            }
        }
        *serving.out_refused() = refused;
        let flapping = serving.detector().flapping(now, &policy);
        *serving.flapping() = flapping;
    }
}
