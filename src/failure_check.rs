//! Runs the failure detector once a second during a leadership term and proposes its
//! decisions: mark silent OSDs down, mark long-down OSDs out (the commands honour nodown and
//! noout).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cluster::Command;
use crate::cluster::failure::FailureTimings;
use crate::commit::Serving;

/// How often the detector looks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs until `stop`.
pub async fn run(serving: Arc<Serving>, timings: FailureTimings, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snap = serving.snapshot();
        let decisions = serving
            .detector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(&snap, Instant::now(), timings);
        let flags = snap.flags();
        if !decisions.mark_down.is_empty() && !flags.contains(crate::cluster::ClusterFlag::NoDown) {
            tracing::warn!(osds = ?decisions.mark_down, after_s = timings.down_after.as_secs(), "marking OSDs down: no heartbeat");
            if let Err(e) = serving
                .propose(Command::MarkDown {
                    ids: decisions.mark_down,
                })
                .await
            {
                tracing::warn!(error = %e, "cannot mark OSDs down");
            }
        }
        if !decisions.mark_out.is_empty() && !flags.contains(crate::cluster::ClusterFlag::NoOut) {
            tracing::warn!(osds = ?decisions.mark_out, after_s = timings.out_after.as_secs(), "marking OSDs out: down too long");
            if let Err(e) = serving
                .propose(Command::MarkOut {
                    ids: decisions.mark_out,
                })
                .await
            {
                tracing::warn!(error = %e, "cannot mark OSDs out");
            }
        }
    }
}
