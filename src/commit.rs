//! The commit pipeline: the only writer of cluster state.
//!
//! One task per leadership term takes proposals from a queue, applies as many as are waiting to
//! a working copy of the state (group commit), and commits the touched records in ONE fenced
//! etcd transaction per group, splitting into several groups (each with its own epochs, each
//! consistent on its own) when a transaction would exceed the op or byte limit. Callers hear
//! back and readers see the new snapshot only after the transaction committed; a failed commit
//! leaves the published state untouched.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{ClusterError, ClusterState, Command, Outcome, encode_record};
use crate::etcd::{EncodedOp, KeyLayout, Store, StoreError};
use crate::leadership::LeaderTerm;
use crate::metrics::Metrics;
use crate::{failpoint, timing};

/// Most proposals taken into one batch.
const MAX_BATCH: usize = 4096;
/// Proposals that may wait in the queue before callers are slowed down.
pub const QUEUE_DEPTH: usize = 16_384;

/// Why a proposal did not take effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// The state machine refused the command; nothing changed.
    #[error("{0}")]
    Rejected(ClusterError),
    /// This monitor is not (or no longer) the leader; nothing changed.
    #[error("this monitor is not the leader")]
    NotLeader,
    /// etcd failed mid-commit and this monitor stopped leading before it could confirm the
    /// outcome; the change may or may not have been applied. Read the state before retrying.
    #[error("commit outcome unknown: {0}")]
    Indeterminate(String),
    /// The change alone exceeds one etcd transaction.
    #[error("the change is too large for one etcd transaction ({ops} ops, {bytes} bytes)")]
    TooLarge { ops: usize, bytes: usize },
}

/// Limits of one transaction.
#[derive(Debug, Clone, Copy)]
pub struct TxnLimits {
    pub max_ops: usize,
    pub max_bytes: usize,
}

struct Proposal {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// The leader's serving state for one term: the committed snapshot and the proposal queue.
pub struct Serving {
    /// The term this state belongs to.
    pub term: LeaderTerm,
    state: ArcSwap<ClusterState>,
    proposals: mpsc::Sender<Proposal>,
}

impl Serving {
    /// The last committed state. Readers never wait on the writer.
    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.state.load_full()
    }

    /// Submits a command and waits until it committed (or failed).
    pub async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.proposals
            .send(Proposal { command, reply })
            .await
            .map_err(|_| ProposeError::NotLeader)?;
        answer.await.unwrap_or(Err(ProposeError::NotLeader))
    }
}

/// How a pipeline ended.
#[derive(Debug, PartialEq, Eq)]
pub enum PipelineExit {
    /// The term ended (step-down or stop).
    TermEnded,
    /// A transaction was rejected by the fence: another monitor leads.
    Fenced,
}

/// Creates the serving state of a term and the pipeline that will run it.
pub fn start(term: LeaderTerm, state: ClusterState) -> (Arc<Serving>, Pipeline) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let serving = Arc::new(Serving {
        term,
        state: ArcSwap::from_pointee(state),
        proposals: tx,
    });
    (serving.clone(), Pipeline { serving, queue: rx })
}

/// The writer task of one term.
pub struct Pipeline {
    serving: Arc<Serving>,
    queue: mpsc::Receiver<Proposal>,
}

impl Pipeline {
    /// Runs until the term ends or a commit fails.
    pub async fn run(mut self, store: Store, limits: TxnLimits, metrics: Metrics) -> PipelineExit {
        let ended = self.serving.term.ended().clone();
        loop {
            let first = tokio::select! {
                _ = ended.cancelled() => return PipelineExit::TermEnded,
                p = self.queue.recv() => match p {
                    Some(p) => p,
                    None => return PipelineExit::TermEnded,
                },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            // A batch runs to completion once started: a transaction in flight is never
            // abandoned, so its outcome is always known to the caller.
            if let Err(exit) = self.process(batch, &store, limits, &metrics).await {
                return exit;
            }
        }
    }

    async fn process(
        &self,
        batch: Vec<Proposal>,
        store: &Store,
        limits: TxnLimits,
        metrics: &Metrics,
    ) -> Result<(), PipelineExit> {
        let keys = store.keys();
        let mut state = (*self.serving.snapshot()).clone();
        state.begin_group();
        let mut group = Group::default();
        let mut pending = batch.into_iter();
        while let Some(p) = pending.next() {
            let before = state.clone();
            let (outcome, ops) = match stage(&mut state, &p.command, keys) {
                Ok(staged) => staged,
                Err(e) => {
                    state = before;
                    let _ = p.reply.send(Err(ProposeError::Rejected(e)));
                    continue;
                }
            };
            if group.fits(&ops, limits) {
                group.add(ops, p.reply, outcome);
                continue;
            }
            state = before;
            if group.is_empty() {
                reply_too_large(p, &ops);
                continue;
            }
            // Seal the group without this command, then start a new group with it.
            let sealed = std::mem::take(&mut group);
            if let Err(exit) = self.commit(sealed, &state, store, metrics).await {
                fail_all(p, pending);
                return Err(exit);
            }
            state.begin_group();
            let before = state.clone();
            match stage(&mut state, &p.command, keys) {
                Ok((outcome, ops)) if group.fits(&ops, limits) => group.add(ops, p.reply, outcome),
                Ok((_, ops)) => {
                    state = before;
                    reply_too_large(p, &ops);
                }
                Err(e) => {
                    state = before;
                    let _ = p.reply.send(Err(ProposeError::Rejected(e)));
                }
            }
        }
        if !group.is_empty() {
            self.commit(group, &state, store, metrics).await?;
        }
        Ok(())
    }

    /// Commits one group, then publishes `state` and answers its callers.
    ///
    /// A transaction holds only puts and deletes of absolute values under the fence, and this
    /// pipeline is the only writer, so sending the same transaction again is idempotent even if
    /// an earlier attempt was applied. Failed attempts are therefore retried for as long as the
    /// term lasts (etcd drops proposals during a raft leader change, for instance); callers hear
    /// "outcome unknown" only if the term ends after an attempt whose fate is unknown.
    async fn commit(
        &self,
        group: Group,
        state: &ClusterState,
        store: &Store,
        metrics: &Metrics,
    ) -> Result<(), PipelineExit> {
        let term = &self.serving.term;
        let ops: Vec<EncodedOp> = group
            .ops
            .iter()
            .map(|(k, v)| EncodedOp {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let mut uncertain = false;
        let mut backoff = timing::ETCD_RETRY_MIN;
        let result = loop {
            if !term.is_valid() {
                break Err(PipelineExit::TermEnded);
            }
            if ops.is_empty() {
                // Only no-op commands: nothing to write, but answer as the leader only.
                break Ok(());
            }
            if !uncertain {
                failpoint::pause(failpoint::COMMIT_BEFORE_TXN).await;
            }
            match store.commit(&term.fence, &ops).await {
                Ok(()) => break Ok(()),
                Err(StoreError::Fenced) => {
                    tracing::error!(epoch = %term.epoch, "commit rejected by the leader fence; stepping down");
                    break Err(PipelineExit::Fenced);
                }
                Err(e) => {
                    uncertain = true;
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "commit failed; retrying the same transaction");
                    tokio::select! {
                        _ = term.ended().cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(timing::ETCD_RETRY_MAX);
                }
            }
        };
        match result {
            Ok(()) => {
                metrics
                    .commit_batch_commands
                    .observe(group.waiting.len() as f64);
                let mut published = state.clone();
                published.begin_group();
                self.serving.state.store(Arc::new(published));
                for (reply, outcome) in group.waiting {
                    let _ = reply.send(Ok(outcome));
                }
                Ok(())
            }
            Err(exit) => {
                let err = if uncertain {
                    ProposeError::Indeterminate(
                        "etcd did not confirm the commit before this monitor stopped leading"
                            .to_string(),
                    )
                } else {
                    ProposeError::NotLeader
                };
                for (reply, _) in group.waiting {
                    let _ = reply.send(Err(err.clone()));
                }
                Err(exit)
            }
        }
    }
}

/// Applies `cmd` and encodes the records it touched.
fn stage(
    state: &mut ClusterState,
    cmd: &Command,
    keys: &KeyLayout,
) -> Result<(Outcome, Vec<EncodedOp>), ClusterError> {
    let applied = state.apply(cmd)?;
    let ops = applied
        .touched
        .iter()
        .map(|key| EncodedOp {
            key: keys.record(key),
            value: state.record(key).map(|r| encode_record(&r)),
        })
        .collect();
    Ok((applied.outcome, ops))
}

fn reply_too_large(p: Proposal, ops: &[EncodedOp]) {
    let _ = p.reply.send(Err(ProposeError::TooLarge {
        ops: ops.len(),
        bytes: ops.iter().map(EncodedOp::size).sum(),
    }));
}

/// Answers proposals that were not committed because the term ended: nothing of theirs was
/// sent to etcd.
fn fail_all(current: Proposal, rest: impl Iterator<Item = Proposal>) {
    let _ = current.reply.send(Err(ProposeError::NotLeader));
    for p in rest {
        let _ = p.reply.send(Err(ProposeError::NotLeader));
    }
}

/// The writes and waiting callers of one transaction.
#[derive(Default)]
struct Group {
    /// etcd key → value (None: delete). A key written twice keeps the last value.
    ops: BTreeMap<String, Option<Vec<u8>>>,
    bytes: usize,
    waiting: Vec<(oneshot::Sender<Result<Outcome, ProposeError>>, Outcome)>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether adding `ops` keeps the group within the limits.
    fn fits(&self, ops: &[EncodedOp], limits: TxnLimits) -> bool {
        let mut count = self.ops.len();
        let mut bytes = self.bytes;
        for op in ops {
            match self.ops.get(&op.key) {
                Some(old) => {
                    bytes = bytes + op.size() - old_size(&op.key, old);
                }
                None => {
                    count += 1;
                    bytes += op.size();
                }
            }
        }
        count <= limits.max_ops && bytes <= limits.max_bytes
    }

    fn add(
        &mut self,
        ops: Vec<EncodedOp>,
        reply: oneshot::Sender<Result<Outcome, ProposeError>>,
        outcome: Outcome,
    ) {
        for op in ops {
            if let Some(old) = self.ops.get(&op.key) {
                self.bytes -= old_size(&op.key, old);
            }
            self.bytes += op.size();
            self.ops.insert(op.key, op.value);
        }
        self.waiting.push((reply, outcome));
    }
}

fn old_size(key: &str, value: &Option<Vec<u8>>) -> usize {
    EncodedOp {
        key: key.to_string(),
        value: value.clone(),
    }
    .size()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Epoch, Flags};

    fn op(key: &str, len: usize) -> EncodedOp {
        EncodedOp {
            key: key.to_string(),
            value: Some(vec![0; len]),
        }
    }

    fn outcome() -> Outcome {
        Outcome::Flags {
            flags: Flags::default(),
            osdmap_epoch: Epoch(0),
        }
    }

    fn add(g: &mut Group, ops: Vec<EncodedOp>) {
        let (tx, _rx) = oneshot::channel();
        g.add(ops, tx, outcome());
    }

    #[test]
    fn group_respects_the_op_limit() {
        let limits = TxnLimits {
            max_ops: 3,
            max_bytes: 1 << 20,
        };
        let mut g = Group::default();
        assert!(g.fits(&[op("a", 1), op("b", 1), op("c", 1)], limits));
        assert!(!g.fits(&[op("a", 1), op("b", 1), op("c", 1), op("d", 1)], limits));
        add(&mut g, vec![op("a", 1), op("b", 1)]);
        assert!(g.fits(&[op("c", 1)], limits));
        assert!(!g.fits(&[op("c", 1), op("d", 1)], limits));
        // Rewriting a key already in the group costs no extra op.
        assert!(g.fits(&[op("a", 5), op("c", 1)], limits));
    }

    #[test]
    fn group_respects_the_byte_limit_and_replaces_rewritten_keys() {
        let limits = TxnLimits {
            max_ops: 100,
            max_bytes: 1000,
        };
        let mut g = Group::default();
        add(&mut g, vec![op("a", 500)]);
        assert_eq!(g.bytes, op("a", 500).size());
        assert!(!g.fits(&[op("b", 500)], limits));
        // Replacing "a" by a smaller value frees room.
        add(&mut g, vec![op("a", 100)]);
        assert_eq!(g.bytes, op("a", 100).size());
        assert_eq!(g.ops.len(), 1);
        assert!(g.fits(&[op("b", 500)], limits));
        assert_eq!(g.waiting.len(), 2);
    }

    #[test]
    fn an_empty_group_is_empty_until_a_command_joins() {
        let mut g = Group::default();
        assert!(g.is_empty());
        add(&mut g, Vec::new());
        assert!(!g.is_empty(), "a no-op command still waits for its answer");
        assert!(g.ops.is_empty());
    }
}
