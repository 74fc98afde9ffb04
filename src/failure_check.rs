//! Once a second during a leadership term, asks the failure detector (owned by the term's
//! heartbeat actor, [`crate::heartbeat`]) for its decisions and proposes them: mark silent OSDs
//! down, mark long-down OSDs out. The commands honour nodown and noout and the auto-out guards;
//! what could not be done goes back to the actor, which publishes it with the flapping OSDs for
//! the health report.
//!
//! A command must fit one etcd transaction (128 operations), and every OSD it changes is about
//! one operation, so a host or rack failing at once is marked down (or out) in several
//! commands of at most [`OSDS_PER_COMMAND`] OSDs; a command still too large is split in half
//! ([`crate::batches`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::batches::propose_in_parts;
use crate::cluster::failure::FailurePolicy;
use crate::cluster::{ClusterFlag, command, reply};
use crate::commit::ProposeError;
use crate::failpoint;
use crate::heartbeat::ActorGone;
use crate::term::TermContext;
use crate::timing::{FAILURE_CHECK_EVERY, FAILURE_CHECK_STALL};

/// OSDs changed by one MarkDown or MarkOut command.
pub const OSDS_PER_COMMAND: usize = 48;

/// Runs until `stop`. Fails when the heartbeat actor it asks is gone while the term lasts.
pub async fn run(
    serving: Arc<TermContext>,
    policy: FailurePolicy,
    stop: CancellationToken,
) -> Result<(), ActorGone> {
    // Each check is due one period after the previous one finished, so the time a check
    // spends proposing is never mistaken for a stall.
    let mut due = tokio::time::Instant::now() + FAILURE_CHECK_EVERY;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(due) => {}
        }
        failpoint::hit(failpoint::FAILURE_CHECK).await;
        let late = tokio::time::Instant::now().saturating_duration_since(due);
        let stalled = (late > FAILURE_CHECK_STALL).then(|| {
            tracing::warn!(
                stalled_ms = late.as_millis() as u64,
                "the monitor did not run for a while; that time does not count as OSD silence"
            );
            late
        });
        check_once(&serving, policy, stalled).await?;
        due = tokio::time::Instant::now() + FAILURE_CHECK_EVERY;
    }
}

/// One check: decide (after forgiving `stalled`), propose the decisions in parts, publish the
/// findings.
async fn check_once(
    serving: &TermContext,
    policy: FailurePolicy,
    stalled: Option<Duration>,
) -> Result<(), ActorGone> {
    let snap = serving.snapshot();
    let now = Instant::now();
    let heartbeats = &serving.heartbeats;
    let decisions = heartbeats.check(snap.clone(), policy, stalled, now).await?;
    let flags = snap.flags();
    if !decisions.down_refused.is_empty() && !flags.contains(ClusterFlag::NoDown) {
        tracing::warn!(
            osds = decisions.down_refused.len(),
            min_up_ratio = policy.min_up_ratio,
            "not marking silent OSDs down: too few would stay up"
        );
    }
    let mut too_large = Vec::new();
    if !decisions.mark_down.is_empty() && !flags.contains(ClusterFlag::NoDown) {
        let shown = &decisions.mark_down[..decisions.mark_down.len().min(32)];
        tracing::warn!(count = decisions.mark_down.len(), osds = ?shown, after_s = policy.down_after.as_secs(), "marking OSDs down: no heartbeat");
        let ids = decisions.mark_down;
        let propose = |c| serving.propose(c);
        for (part, result) in propose_in_parts(propose, ids, OSDS_PER_COMMAND, |ids| {
            command::MarkDown { ids }
        })
        .await
        {
            match result {
                Ok(_) => heartbeats.marked_down(part, now).await?,
                Err(e) => {
                    tracing::warn!(error = %e, osds = part.len(), "cannot mark OSDs down");
                    if let ProposeError::TooLarge { .. } = e {
                        too_large.push(format!("marking {} down: {e}", part[0]));
                    }
                }
            }
        }
    }
    let mut refused = Vec::new();
    if !decisions.mark_out.is_empty() && !flags.contains(ClusterFlag::NoOut) {
        let guards = policy.guards;
        let propose = |c| serving.propose(c);
        let parts = propose_in_parts(propose, decisions.mark_out, OSDS_PER_COMMAND, |ids| {
            command::MarkOut { ids, guards }
        })
        .await;
        for (part, result) in parts {
            match result {
                Ok(reply::MarkedOut { marked, refused: r }) => {
                    if !marked.is_empty() {
                        tracing::warn!(osds = ?marked, after_s = policy.out_after.as_secs(), "marked OSDs out: down too long");
                    }
                    if !r.is_empty() {
                        tracing::warn!(osds = ?r, "automatic out refused by the guards");
                    }
                    refused.extend(r);
                }
                Err(e) => {
                    tracing::warn!(error = %e, osds = part.len(), "cannot mark OSDs out");
                    if let ProposeError::TooLarge { .. } = e {
                        too_large.push(format!("marking {} out: {e}", part[0]));
                    }
                }
            }
        }
    }
    serving.too_large.report("failure check", too_large);
    let down_refused = if flags.contains(ClusterFlag::NoDown) {
        Vec::new()
    } else {
        decisions.down_refused
    };
    heartbeats
        .check_done(refused, down_refused, policy, now)
        .await
}
