//! Runs the failure detector once a second during a leadership term and proposes its
//! decisions: mark silent OSDs down, mark long-down OSDs out. The commands honour nodown and
//! noout and the auto-out guards; refusals and flapping OSDs are kept for the health report.
//!
//! A command must fit one etcd transaction (128 operations), and every OSD it changes is about
//! one operation, so a host or rack failing at once is marked down (or out) in several
//! commands of at most [`OSDS_PER_COMMAND`] OSDs; a command still too large is split in half.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cluster::failure::FailurePolicy;
use crate::cluster::{ClusterFlag, Command, OsdId, Outcome};
use crate::commit::{ProposeError, Serving};

/// How often the detector looks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// OSDs changed by one MarkDown or MarkOut command.
pub const OSDS_PER_COMMAND: usize = 48;

/// Proposes `make(ids)` for `ids` in commands of at most [`OSDS_PER_COMMAND`] OSDs, in id
/// order, splitting a command the pipeline finds too large; each part's result with its OSDs.
pub async fn propose_in_parts(
    serving: &Serving,
    ids: Vec<OsdId>,
    make: impl Fn(Vec<OsdId>) -> Command,
) -> Vec<(Vec<OsdId>, Result<Outcome, ProposeError>)> {
    let mut todo: Vec<Vec<OsdId>> = ids
        .chunks(OSDS_PER_COMMAND)
        .map(<[OsdId]>::to_vec)
        .collect();
    todo.reverse();
    let mut out = Vec::new();
    while let Some(part) = todo.pop() {
        match serving.propose(make(part.clone())).await {
            Err(ProposeError::TooLarge { .. }) if part.len() > 1 => {
                let (a, b) = part.split_at(part.len() / 2);
                todo.push(b.to_vec());
                todo.push(a.to_vec());
            }
            Err(ProposeError::NotLeader) => {
                out.push((part, Err(ProposeError::NotLeader)));
                break;
            }
            result => out.push((part, result)),
        }
    }
    out
}

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
            let shown = &decisions.mark_down[..decisions.mark_down.len().min(32)];
            tracing::warn!(count = decisions.mark_down.len(), osds = ?shown, after_s = policy.down_after.as_secs(), "marking OSDs down: no heartbeat");
            let ids = decisions.mark_down;
            for (part, result) in
                propose_in_parts(&serving, ids, |ids| Command::MarkDown { ids }).await
            {
                match result {
                    Ok(_) => {
                        let mut detector = serving.detector();
                        for id in part {
                            detector.marked_down(id, now);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, osds = part.len(), "cannot mark OSDs down")
                    }
                }
            }
        }
        let mut refused = Vec::new();
        if !decisions.mark_out.is_empty() && !flags.contains(ClusterFlag::NoOut) {
            let guards = policy.guards;
            let parts = propose_in_parts(&serving, decisions.mark_out, |ids| Command::MarkOut {
                ids,
                guards,
            })
            .await;
            for (part, result) in parts {
                match result {
                    Ok(Outcome::MarkedOut { marked, refused: r }) => {
                        if !marked.is_empty() {
                            tracing::warn!(osds = ?marked, after_s = policy.out_after.as_secs(), "marked OSDs out: down too long");
                        }
                        if !r.is_empty() {
                            tracing::warn!(osds = ?r, "automatic out refused by the guards");
                        }
                        refused.extend(r);
                    }
                    Ok(other) => tracing::warn!(?other, "unexpected outcome of MarkOut"),
                    Err(e) => tracing::warn!(error = %e, osds = part.len(), "cannot mark OSDs out"),
                }
            }
        }
        *serving.out_refused() = refused;
        let flapping = serving.detector().flapping(now, &policy);
        *serving.flapping() = flapping;
    }
}
