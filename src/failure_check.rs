//! Runs the failure detector once a second during a leadership term and proposes its
//! decisions: mark silent OSDs down, mark long-down OSDs out. The commands honour nodown and
//! noout and the auto-out guards; refusals and flapping OSDs are kept for the health report.
//!
//! A command must fit one etcd transaction (128 operations), and every OSD it changes is about
//! one operation, so a host or rack failing at once is marked down (or out) in several
//! commands of at most [`OSDS_PER_COMMAND`] OSDs; a command still too large is split in half
//! ([`crate::batches`]).

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::batches::propose_in_parts;
use crate::cluster::failure::{DetectorFindings, FailurePolicy};
use crate::cluster::{ClusterFlag, command, reply};
use crate::commit::{ProposeError, Serving};
use crate::timing::{FAILURE_CHECK_EVERY, FAILURE_CHECK_STALL};

/// OSDs changed by one MarkDown or MarkOut command.
pub const OSDS_PER_COMMAND: usize = 48;

/// Runs until `stop`.
pub async fn run(serving: Arc<Serving>, policy: FailurePolicy, stop: CancellationToken) {
    // Each check is due one period after the previous one finished, so the time a check
    // spends proposing is never mistaken for a stall.
    let mut due = tokio::time::Instant::now() + FAILURE_CHECK_EVERY;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let late = tokio::time::Instant::now().saturating_duration_since(due);
        if late > FAILURE_CHECK_STALL {
            tracing::warn!(
                stalled_ms = late.as_millis() as u64,
                "the monitor did not run for a while; that time does not count as OSD silence"
            );
            serving.detector().forgive(late, Instant::now());
        }
        check_once(&serving, policy).await;
        due = tokio::time::Instant::now() + FAILURE_CHECK_EVERY;
    }
}

/// One check: decide, propose the decisions in parts, publish the findings.
async fn check_once(serving: &Serving, policy: FailurePolicy) {
    let snap = serving.snapshot();
    let now = Instant::now();
    let decisions = serving.detector().check(&snap, now, policy);
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
                Ok(_) => {
                    let mut detector = serving.detector();
                    for id in part {
                        detector.marked_down(id, now);
                    }
                }
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
    let flapping = serving.detector().flapping(now, &policy);
    let down_refused = if flags.contains(ClusterFlag::NoDown) {
        Vec::new()
    } else {
        decisions.down_refused
    };
    serving.set_findings(DetectorFindings {
        out_refused: refused,
        down_refused,
        flapping,
    });
}
