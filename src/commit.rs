//! The commit pipeline: the only writer of cluster state.
//!
//! One task per leadership term takes proposals from a queue, applies as many as are waiting to
//! a working copy of the state (group commit), and commits the touched records in ONE fenced
//! etcd transaction per group, splitting into several groups (each with its own epochs, each
//! consistent on its own) when a transaction would exceed the op or byte limit. Callers hear
//! back and readers see the new snapshot only after the transaction committed; a failed commit
//! leaves the published state untouched.
//!
//! A command may also carry a *prelude* (new records nothing refers to yet, such as the PG
//! chunks of a pool being created) and a *cleanup* (records nothing refers to any more). The
//! prelude travels in the command's own transaction when it fits, otherwise in transactions of
//! its own just before; the cleanup is deleted right after. A leader that dies in between
//! leaves only unreferenced records, which the next leader's load finds and deletes.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::{
    Applied, ClusterError, ClusterState, Command, Event, EventBody, RecordKey, encode_event_batch,
    encode_record, event_size, events,
};
use crate::etcd::{EncodedOp, Fence, KeyLayout, Store, StoreError};
use crate::leadership::LeaderTerm;
use crate::metrics::Metrics;
use crate::{failpoint, timing};

/// Published snapshots kept for map watchers. They share structure, so each costs only what
/// its commit changed.
const HISTORY: usize = 256;
/// Most proposals taken into one batch.
const MAX_BATCH: usize = 4096;
/// Proposals that may wait in the queue before callers are slowed down.
pub const QUEUE_DEPTH: usize = 16_384;
/// What an event batch adds to a transaction besides its events: its key, the counter record.
const EVENT_BATCH_OVERHEAD: usize = 256;

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

/// A command waiting in the queue, type-erased so that one queue carries every command.
trait Queued: Send {
    /// Applies the command to the working state of the open group. Applied: its writes, and
    /// the caller holding the reply it hears once the group committed. Refused: the caller is
    /// answered here and None returned.
    fn apply(
        self: Box<Self>,
        state: &mut ClusterState,
        keys: &KeyLayout,
    ) -> Option<(Staged, Box<dyn Waiting>)>;

    /// Answers the caller with `error`; the command was not applied.
    fn fail(self: Box<Self>, error: ProposeError);
}

/// Runs `f` on this thread after telling a multi-thread runtime to move its other tasks (the
/// lease keep-alive, the calls being served) to another worker; inline elsewhere. For commands
/// that take seconds of CPU: placing a 100,000-PG pool inline starved the lease keep-alive
/// until the leader lost its lease.
fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// An applied command waiting for its group's commit.
trait Waiting: Send {
    /// The group committed: the caller hears the command's reply.
    fn answer(self: Box<Self>);

    /// The group did not commit: the caller hears `error`.
    fn fail(self: Box<Self>, error: ProposeError);

    /// Takes the command back unanswered, to be applied again in another group (its reply
    /// belonged to the group it leaves).
    fn requeue(self: Box<Self>) -> Box<dyn Queued>;
}

/// A command and its caller.
struct Proposal<C: Command> {
    command: C,
    caller: oneshot::Sender<Result<C::Reply, ProposeError>>,
}

impl<C: Command> Queued for Proposal<C> {
    fn apply(
        self: Box<Self>,
        state: &mut ClusterState,
        keys: &KeyLayout,
    ) -> Option<(Staged, Box<dyn Waiting>)> {
        let applied = if self.command.heavy() {
            off_worker(|| state.apply(&self.command))
        } else {
            state.apply(&self.command)
        };
        match applied {
            Ok(applied) => {
                let staged = Staged::encode(state, &applied, keys);
                let waiting = Replied {
                    proposal: *self,
                    reply: applied.reply,
                };
                Some((staged, Box::new(waiting)))
            }
            Err(e) => {
                let _ = self.caller.send(Err(ProposeError::Rejected(e)));
                None
            }
        }
    }

    fn fail(self: Box<Self>, error: ProposeError) {
        let _ = self.caller.send(Err(error));
    }
}

/// An applied proposal and the reply its caller hears if the group commits.
struct Replied<C: Command> {
    proposal: Proposal<C>,
    reply: C::Reply,
}

impl<C: Command> Waiting for Replied<C> {
    fn answer(self: Box<Self>) {
        let _ = self.proposal.caller.send(Ok(self.reply));
    }

    fn fail(self: Box<Self>, error: ProposeError) {
        let _ = self.proposal.caller.send(Err(error));
    }

    fn requeue(self: Box<Self>) -> Box<dyn Queued> {
        Box::new(self.proposal)
    }
}

/// The commit pipeline's side that callers see, for one term: the proposal queue, the last
/// committed snapshot and the recent history of snapshots. The writer ([`Writer`]) is the
/// only task that publishes.
pub struct Pipeline {
    state: ArcSwap<ClusterState>,
    proposals: mpsc::Sender<Box<dyn Queued>>,
    /// Counts published snapshots; background tasks wait on it to react to commits.
    commits: watch::Sender<u64>,
    /// The most recent published snapshots with their commit sequence numbers, oldest first:
    /// map watchers step through them to see every epoch. Replaced whole on every publish, so
    /// thousands of watchers read it without a lock.
    history: ArcSwap<Vec<(u64, Arc<ClusterState>)>>,
    /// How the recent etcd transactions went (for the ETCD_SLOW and ETCD_UNREACHABLE checks).
    etcd: Mutex<EtcdRecord>,
}

/// The etcd transactions of the last [`timing::ETCD_HEALTH_WINDOW`]: when each succeeded and
/// how long it took, and when attempts failed (unreachable, timed out).
#[derive(Debug, Default)]
struct EtcdRecord {
    took: VecDeque<(Instant, Duration)>,
    failed: VecDeque<Instant>,
}

impl EtcdRecord {
    fn trim(&mut self, now: Instant) {
        let old = |t: &Instant| now.saturating_duration_since(*t) > timing::ETCD_HEALTH_WINDOW;
        while self.took.front().is_some_and(|(t, _)| old(t)) || self.took.len() > 4096 {
            self.took.pop_front();
        }
        while self.failed.front().is_some_and(old) || self.failed.len() > 4096 {
            self.failed.pop_front();
        }
    }
}

/// The etcd transactions of the last [`timing::ETCD_HEALTH_WINDOW`], as the writer saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EtcdCommits {
    /// Transactions that succeeded, and the median of how long they took.
    pub succeeded: usize,
    pub median: Option<Duration>,
    /// Attempts that failed (etcd unreachable, timed out, refused); each was retried.
    pub failed: usize,
}

impl Pipeline {
    /// How the etcd transactions of the last [`timing::ETCD_HEALTH_WINDOW`] went.
    pub fn etcd_commits(&self) -> EtcdCommits {
        let mut r = self.etcd.lock();
        r.trim(Instant::now());
        let mut took: Vec<Duration> = r.took.iter().map(|(_, d)| *d).collect();
        took.sort_unstable();
        EtcdCommits {
            succeeded: took.len(),
            median: took.get(took.len() / 2).copied(),
            failed: r.failed.len(),
        }
    }

    fn etcd_took(&self, took: Duration) {
        let now = Instant::now();
        let mut r = self.etcd.lock();
        r.took.push_back((now, took));
        r.trim(now);
    }

    fn etcd_failed(&self) {
        let now = Instant::now();
        let mut r = self.etcd.lock();
        r.failed.push_back(now);
        r.trim(now);
    }

    /// The last committed state. Readers never wait on the writer.
    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.state.load_full()
    }

    /// Submits a command and waits until it committed (or failed).
    pub async fn propose<C: Command>(&self, command: C) -> Result<C::Reply, ProposeError> {
        let (caller, answer) = oneshot::channel();
        self.proposals
            .send(Box::new(Proposal { command, caller }))
            .await
            .map_err(|_| ProposeError::NotLeader)?;
        answer.await.unwrap_or(Err(ProposeError::NotLeader))
    }

    /// Changes every time a new snapshot is published.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// The newest published snapshot and its commit sequence number.
    pub fn latest(&self) -> (u64, Arc<ClusterState>) {
        self.history
            .load()
            .last()
            .cloned()
            .unwrap_or_else(|| (0, self.state.load_full()))
    }

    /// Published snapshots newer than commit `seq`, oldest first (all retained ones when `seq`
    /// is older than the ring).
    pub fn history_after(&self, seq: u64) -> Vec<(u64, Arc<ClusterState>)> {
        let h = self.history.load();
        let start = h.partition_point(|(s, _)| *s <= seq);
        h[start..].to_vec()
    }

    fn publish(&self, state: &ClusterState) {
        let mut published = state.clone();
        published.begin_group();
        let published = Arc::new(published);
        self.state.store(published.clone());
        // The snapshot goes into the history before anyone is told: a watcher woken by the
        // notification must find it there (only the writer publishes, so `seq` is stable).
        let seq = *self.commits.borrow() + 1;
        let old = self.history.load();
        let keep = old.len().saturating_sub(HISTORY - 1);
        let mut ring = Vec::with_capacity(HISTORY);
        ring.extend(old[keep..].iter().cloned());
        ring.push((seq, published));
        self.history.store(Arc::new(ring));
        self.commits.send_replace(seq);
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

/// What the writer needs of the store: the key layout and fenced transactions. The etcd
/// [`Store`] in production; an in-process fake in the pipeline's unit tests.
pub trait CommitStore: Send + Sync {
    /// Where records live.
    fn keys(&self) -> &KeyLayout;
    /// Writes `ops` in one transaction under `fence`.
    fn commit(
        &self,
        fence: &Fence,
        ops: &[EncodedOp],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl CommitStore for Store {
    fn keys(&self) -> &KeyLayout {
        Store::keys(self)
    }

    fn commit(
        &self,
        fence: &Fence,
        ops: &[EncodedOp],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        Store::commit(self, fence, ops)
    }
}

/// Creates the pipeline of a term starting from `state`, and the writer that will run it.
pub fn start(term: LeaderTerm, state: ClusterState) -> (Arc<Pipeline>, Writer) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let (commits, _) = watch::channel(0);
    let initial = Arc::new(state);
    let pipeline = Arc::new(Pipeline {
        state: ArcSwap::new(initial.clone()),
        proposals: tx,
        commits,
        history: ArcSwap::from_pointee(vec![(0, initial)]),
        etcd: Mutex::new(EtcdRecord::default()),
    });
    (
        pipeline.clone(),
        Writer {
            pipeline,
            term,
            queue: rx,
        },
    )
}

/// The writer task of one term: the only writer of cluster state.
pub struct Writer {
    pipeline: Arc<Pipeline>,
    term: LeaderTerm,
    queue: mpsc::Receiver<Box<dyn Queued>>,
}

/// A commit that did not go through, and what to tell the callers waiting on it.
struct Failed {
    exit: PipelineExit,
    error: ProposeError,
}

impl Writer {
    /// Runs until the term ends or a commit fails. `garbage` (unreferenced records found by the
    /// load) is deleted first.
    pub async fn run<S: CommitStore>(
        mut self,
        store: S,
        limits: TxnLimits,
        metrics: Metrics,
        garbage: Vec<RecordKey>,
    ) -> PipelineExit {
        let ended = self.term.ended().clone();
        if !garbage.is_empty() {
            tracing::info!(
                records = garbage.len(),
                "deleting records left by an interrupted change"
            );
            let ops: Vec<EncodedOp> = garbage
                .iter()
                .map(|k| EncodedOp {
                    key: store.keys().record(k),
                    value: None,
                })
                .collect();
            if let Err(f) = self.write_all(&ops, &store, limits).await {
                return f.exit;
            }
        }
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
        batch: Vec<Box<dyn Queued>>,
        store: &impl CommitStore,
        limits: TxnLimits,
        metrics: &Metrics,
    ) -> Result<(), PipelineExit> {
        let keys = store.keys();
        let mut state = (*self.pipeline.snapshot()).clone();
        state.begin_group();
        let mut group = Group::default();
        let mut pending = batch.into_iter();
        while let Some(mut p) = pending.next() {
            let mut retried = false;
            loop {
                let before = state.clone();
                let Some((mut staged, waiting)) = p.apply(&mut state, keys) else {
                    break;
                };
                if group.fits(&staged.all(), staged.event_bytes, limits) {
                    let all = staged.all();
                    group.add(all, staged, waiting);
                    break;
                }
                if !group.is_empty() && !retried {
                    // Seal the group without this command, then apply it again in a new one.
                    state = before;
                    let sealed = std::mem::take(&mut group);
                    if let Err(f) = self
                        .commit(sealed, &mut state, store, limits, metrics)
                        .await
                    {
                        fail_all(waiting.requeue(), pending);
                        return Err(f);
                    }
                    state.begin_group();
                    retried = true;
                    p = waiting.requeue();
                    continue;
                }
                if !group.fits(&staged.ops, staged.event_bytes, limits) {
                    state = before;
                    waiting.fail(ProposeError::TooLarge {
                        ops: staged.ops.len(),
                        bytes: staged.ops.iter().map(EncodedOp::size).sum(),
                    });
                    break;
                }
                // The prelude does not fit beside the command: write it first, on its own.
                if let Err(f) = self.write_all(&staged.prelude, store, limits).await {
                    waiting.fail(f.error);
                    for rest in pending {
                        rest.fail(ProposeError::NotLeader);
                    }
                    return Err(f.exit);
                }
                let ops = std::mem::take(&mut staged.ops);
                group.add(ops, staged, waiting);
                break;
            }
        }
        if !group.is_empty() {
            self.commit(group, &mut state, store, limits, metrics)
                .await?;
        }
        Ok(())
    }

    /// Commits one group with its events, then publishes `state`, answers its callers, and
    /// deletes its cleanup.
    async fn commit(
        &self,
        group: Group,
        state: &mut ClusterState,
        store: &impl CommitStore,
        limits: TxnLimits,
        metrics: &Metrics,
    ) -> Result<(), PipelineExit> {
        let mut ops: Vec<EncodedOp> = group
            .ops
            .iter()
            .map(|(k, v)| EncodedOp {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let mut events = events::merge(group.events);
        if crate::failpoint::on(crate::failpoint::EVENTS_OFF) {
            events.clear();
        }
        if !events.is_empty() {
            // The events get their ids here, in commit order, and travel in the same
            // transaction as the records they describe (the counter with them).
            let first = state.take_event_ids(events.len() as u64);
            let now = crate::timing::unix_ms_now();
            let committed: Vec<Event> = events
                .into_iter()
                .zip(first..)
                .map(|(body, id)| Event::committed(body, id, now))
                .collect();
            ops.retain(|op| op.key != store.keys().record(&RecordKey::Counters));
            ops.push(EncodedOp {
                key: store.keys().record(&RecordKey::Counters),
                value: state
                    .record(&RecordKey::Counters)
                    .map(|r| encode_record(&r)),
            });
            ops.push(EncodedOp {
                key: store.keys().event_batch(first),
                value: Some(encode_event_batch(&committed)),
            });
            metrics.events_written.inc_by(committed.len() as u64);
        }
        let written = if ops.is_empty() {
            // Only no-op commands: nothing to write, but answer as the leader only.
            if self.term.is_valid() {
                Ok(())
            } else {
                Err(Failed {
                    exit: PipelineExit::TermEnded,
                    error: ProposeError::NotLeader,
                })
            }
        } else {
            self.write(&ops, store).await
        };
        match written {
            Ok(()) => {
                metrics
                    .commit_batch_commands
                    .observe(group.waiting.len() as f64);
                self.pipeline.publish(state);
                for waiting in group.waiting {
                    waiting.answer();
                }
                self.write_all(&group.cleanup, store, limits)
                    .await
                    .map_err(|f| f.exit)
            }
            Err(f) => {
                for waiting in group.waiting {
                    waiting.fail(f.error.clone());
                }
                Err(f.exit)
            }
        }
    }

    /// Writes `ops` in as many transactions as the limits require (records nobody refers to:
    /// a prelude or a cleanup).
    async fn write_all(
        &self,
        ops: &[EncodedOp],
        store: &impl CommitStore,
        limits: TxnLimits,
    ) -> Result<(), Failed> {
        for txn in split(ops, limits) {
            self.write(&txn, store).await?;
        }
        Ok(())
    }

    /// Writes one fenced transaction.
    ///
    /// A transaction holds only puts and deletes of absolute values under the fence, and this
    /// pipeline is the only writer, so sending the same transaction again is idempotent even if
    /// an earlier attempt was applied. Failed attempts are therefore retried for as long as the
    /// term lasts (etcd drops proposals during a raft leader change, for instance); callers hear
    /// "outcome unknown" only if the term ends after an attempt whose fate is unknown.
    async fn write(&self, ops: &[EncodedOp], store: &impl CommitStore) -> Result<(), Failed> {
        let term = &self.term;
        let mut uncertain = false;
        let mut backoff = timing::COMMIT_RETRY_MIN;
        loop {
            if !term.is_valid() {
                return Err(Failed {
                    exit: PipelineExit::TermEnded,
                    error: if uncertain {
                        ProposeError::Indeterminate(
                            "etcd did not confirm the commit before this monitor stopped leading"
                                .to_string(),
                        )
                    } else {
                        ProposeError::NotLeader
                    },
                });
            }
            // Timed as the writer waits for it (a failpoint's pause included).
            let sent = Instant::now();
            if !uncertain {
                failpoint::hit(failpoint::COMMIT_BEFORE_TXN).await;
            }
            match store.commit(&term.fence, ops).await {
                Ok(()) => {
                    self.pipeline.etcd_took(sent.elapsed());
                    return Ok(());
                }
                Err(StoreError::Fenced) => {
                    tracing::error!(epoch = %term.epoch, "commit rejected by the leader fence; stepping down");
                    return Err(Failed {
                        exit: PipelineExit::Fenced,
                        error: if uncertain {
                            ProposeError::Indeterminate(
                                "another monitor took over while the commit was being retried"
                                    .to_string(),
                            )
                        } else {
                            ProposeError::NotLeader
                        },
                    });
                }
                Err(e) => {
                    uncertain = true;
                    self.pipeline.etcd_failed();
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "commit failed; retrying the same transaction");
                    tokio::select! {
                        _ = term.ended().cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(timing::COMMIT_RETRY_MAX);
                }
            }
        }
    }
}

/// The writes of one applied command, encoded.
struct Staged {
    /// The command's own records (its group transaction).
    ops: Vec<EncodedOp>,
    /// Its events (given ids when its group commits) and their encoded size.
    events: Vec<EventBody>,
    event_bytes: usize,
    /// Records that may be written before (new, unreferenced).
    prelude: Vec<EncodedOp>,
    /// Records to delete after (unreferenced).
    cleanup: Vec<EncodedOp>,
}

impl Staged {
    fn encode<R>(state: &ClusterState, applied: &Applied<R>, keys: &KeyLayout) -> Staged {
        let record = |key: &RecordKey| EncodedOp {
            key: keys.record(key),
            value: state.record(key).map(|r| encode_record(&r)),
        };
        // A command names a record once per change it makes to it (a pool's record and a PG
        // chunk once per PG changed); each record is encoded and written once.
        let encode = |list: &[RecordKey]| -> Vec<EncodedOp> {
            let mut seen = std::collections::HashSet::with_capacity(list.len());
            list.iter()
                .filter(|k| seen.insert(*k))
                .map(record)
                .collect()
        };
        let mut prelude = encode(&applied.prelude);
        let mut cleanup = encode(&applied.cleanup);
        for (key, value) in &applied.blobs {
            let op = EncodedOp {
                key: keys.blob(key),
                value: value.clone(),
            };
            if op.value.is_some() {
                prelude.push(op);
            } else {
                cleanup.push(op);
            }
        }
        Staged {
            ops: encode(&applied.touched),
            events: applied.events.clone(),
            event_bytes: applied.events.iter().map(event_size).sum(),
            prelude,
            cleanup,
        }
    }

    /// The prelude and the command's records together (one transaction when they fit).
    fn all(&self) -> Vec<EncodedOp> {
        self.prelude.iter().chain(&self.ops).cloned().collect()
    }
}

/// Splits writes into transactions within the limits.
fn split(ops: &[EncodedOp], limits: TxnLimits) -> Vec<Vec<EncodedOp>> {
    let mut out: Vec<Vec<EncodedOp>> = Vec::new();
    let mut bytes = 0;
    for op in ops {
        let fits = out
            .last()
            .is_some_and(|t| t.len() < limits.max_ops && bytes + op.size() <= limits.max_bytes);
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += op.size();
        if let Some(t) = out.last_mut() {
            t.push(op.clone());
        }
    }
    out
}

/// Answers proposals that were not committed because the term ended: nothing of theirs was
/// sent to etcd.
fn fail_all(current: Box<dyn Queued>, rest: impl Iterator<Item = Box<dyn Queued>>) {
    current.fail(ProposeError::NotLeader);
    for p in rest {
        p.fail(ProposeError::NotLeader);
    }
}

/// The writes and waiting callers of one transaction.
#[derive(Default)]
struct Group {
    /// etcd key → value (None: delete). A key written twice keeps the last value.
    ops: BTreeMap<String, Option<Vec<u8>>>,
    bytes: usize,
    /// Deleted after the transaction committed.
    cleanup: Vec<EncodedOp>,
    waiting: Vec<Box<dyn Waiting>>,
    /// The events of its commands, in order, and their encoded size.
    events: Vec<EventBody>,
    event_bytes: usize,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether adding `ops` and events of `event_bytes` keeps the group within the limits.
    /// Events take two more operations (their batch and the id counter).
    fn fits(&self, ops: &[EncodedOp], event_bytes: usize, limits: TxnLimits) -> bool {
        let mut count = self.ops.len();
        let mut bytes = self.bytes;
        let mut seen = std::collections::HashSet::new();
        for op in ops {
            match self.ops.get(&op.key) {
                Some(old) => bytes = bytes + op.size() - old_size(&op.key, old),
                None if seen.insert(&op.key) => {
                    count += 1;
                    bytes += op.size();
                }
                None => bytes += op.size(),
            }
        }
        let event_bytes = self.event_bytes + event_bytes;
        if event_bytes > 0 {
            count += 2;
            bytes += event_bytes + EVENT_BATCH_OVERHEAD;
        }
        count <= limits.max_ops && bytes <= limits.max_bytes
    }

    fn add(&mut self, ops: Vec<EncodedOp>, staged: Staged, waiting: Box<dyn Waiting>) {
        let Staged {
            cleanup,
            events,
            event_bytes,
            ..
        } = staged;
        self.events.extend(events);
        self.event_bytes += event_bytes;
        for op in ops {
            if let Some(old) = self.ops.get(&op.key) {
                self.bytes -= old_size(&op.key, old);
            }
            self.bytes += op.size();
            self.ops.insert(op.key, op.value);
        }
        self.cleanup.extend(cleanup);
        self.waiting.push(waiting);
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
    use crate::cluster::{ClusterFlag, OsdId, command, reply};

    fn op(key: &str, len: usize) -> EncodedOp {
        EncodedOp {
            key: key.to_string(),
            value: Some(vec![0; len]),
        }
    }

    fn add(g: &mut Group, ops: Vec<EncodedOp>) {
        let (caller, _answer) = oneshot::channel();
        let proposal = Box::new(Proposal {
            command: command::SetFlag(ClusterFlag::NoOut),
            caller,
        });
        let mut state = ClusterState::default();
        let (_, waiting) = proposal
            .apply(&mut state, &KeyLayout::new("/fb", "master"))
            .expect("SetFlag applies");
        let staged = Staged {
            ops: Vec::new(),
            events: Vec::new(),
            event_bytes: 0,
            prelude: Vec::new(),
            cleanup: Vec::new(),
        };
        g.add(ops, staged, waiting);
    }

    #[test]
    fn a_proposal_is_answered_with_its_own_reply_once_its_group_commits() {
        let keys = KeyLayout::new("/fb", "master");
        let mut state = ClusterState::default();
        let (caller, mut answer) = oneshot::channel();
        let queued: Box<dyn Queued> = Box::new(Proposal {
            command: command::SetFlag(ClusterFlag::NoOut),
            caller,
        });
        let before = state.clone();
        let (staged, waiting) = queued.apply(&mut state, &keys).expect("SetFlag applies");
        assert_eq!(staged.ops.len(), 1, "the osdmap meta record");
        // Sealed out of its group: taken back unanswered, applied again in the next group.
        state = before;
        state.begin_group();
        let (_, waiting) = waiting
            .requeue()
            .apply(&mut state, &keys)
            .expect("applies again");
        assert!(answer.try_recv().is_err(), "no answer before the commit");
        waiting.answer();
        let flags: reply::Flags = answer.try_recv().expect("answered").expect("committed");
        assert!(flags.flags.contains(ClusterFlag::NoOut));
        assert_eq!(flags.osdmap_epoch, state.osdmap_epoch());
    }

    #[test]
    fn a_proposal_hears_its_refusal_at_once_and_a_failed_commit_after() {
        let keys = KeyLayout::new("/fb", "master");
        let mut state = ClusterState::default();
        let (caller, mut answer) = oneshot::channel();
        let refused: Box<dyn Queued> = Box::new(Proposal {
            command: command::OsdOut { id: OsdId(7) },
            caller,
        });
        assert!(refused.apply(&mut state, &keys).is_none());
        assert_eq!(
            answer.try_recv().expect("answered"),
            Err(ProposeError::Rejected(ClusterError::OsdNotFound(OsdId(7))))
        );
        assert_eq!(state, ClusterState::default(), "nothing changed");
        let (caller, mut answer) = oneshot::channel();
        let queued: Box<dyn Queued> = Box::new(Proposal {
            command: command::SetFlag(ClusterFlag::NoIn),
            caller,
        });
        let (_, waiting) = queued.apply(&mut state, &keys).expect("applies");
        waiting.fail(ProposeError::NotLeader);
        assert_eq!(
            answer.try_recv().expect("answered"),
            Err(ProposeError::NotLeader)
        );
    }

    #[test]
    fn group_respects_the_op_limit() {
        let limits = TxnLimits {
            max_ops: 3,
            max_bytes: 1 << 20,
        };
        let mut g = Group::default();
        assert!(g.fits(&[op("a", 1), op("b", 1), op("c", 1)], 0, limits));
        assert!(!g.fits(&[op("a", 1), op("b", 1), op("c", 1), op("d", 1)], 0, limits));
        add(&mut g, vec![op("a", 1), op("b", 1)]);
        assert!(g.fits(&[op("c", 1)], 0, limits));
        assert!(!g.fits(&[op("c", 1), op("d", 1)], 0, limits));
        // Rewriting a key already in the group costs no extra op.
        assert!(g.fits(&[op("a", 5), op("c", 1)], 0, limits));
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
        assert!(!g.fits(&[op("b", 500)], 0, limits));
        // Replacing "a" by a smaller value frees room.
        add(&mut g, vec![op("a", 100)]);
        assert_eq!(g.bytes, op("a", 100).size());
        assert_eq!(g.ops.len(), 1);
        assert!(g.fits(&[op("b", 500)], 0, limits));
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

    #[test]
    fn a_record_named_once_per_change_is_encoded_and_written_once() {
        // RefreshPgs names the pool record and a PG chunk once per PG it changes: 512 PGs of
        // one chunk are 1,024 names but two records.
        let keys = KeyLayout::new("/fb", "master");
        let pool = crate::cluster::PoolId(1);
        let mut touched = Vec::new();
        for _ in 0..512 {
            touched.push(RecordKey::Pool(pool));
            touched.push(RecordKey::PgChunk(pool, 0));
        }
        touched.push(RecordKey::PgChunk(pool, 1));
        let applied = Applied {
            reply: (),
            touched,
            prelude: vec![RecordKey::Counters, RecordKey::Counters],
            cleanup: vec![RecordKey::Tombstone(pool), RecordKey::Tombstone(pool)],
            blobs: Vec::new(),
            events: Vec::new(),
        };
        let staged = Staged::encode(&ClusterState::default(), &applied, &keys);
        let names: Vec<&str> = staged.ops.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            names,
            [
                keys.record(&RecordKey::Pool(pool)),
                keys.record(&RecordKey::PgChunk(pool, 0)),
                keys.record(&RecordKey::PgChunk(pool, 1)),
            ],
            "first-seen order, each once"
        );
        assert_eq!(staged.prelude.len(), 1);
        assert_eq!(staged.cleanup.len(), 1);
    }

    #[test]
    fn split_respects_both_limits() {
        let limits = TxnLimits {
            max_ops: 2,
            max_bytes: 300,
        };
        let ops: Vec<EncodedOp> = (0..5).map(|i| op(&format!("k{i}"), 100)).collect();
        let txns = split(&ops, limits);
        assert_eq!(txns.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        let big: Vec<EncodedOp> = (0..3).map(|i| op(&format!("k{i}"), 200)).collect();
        assert_eq!(split(&big, limits).len(), 3, "bytes split too");
        assert!(split(&[], limits).is_empty());
    }

    /// The pipeline against an in-process store: its retry and fence paths, without etcd.
    mod pipeline {
        use std::collections::VecDeque;
        use std::time::Duration;

        use parking_lot::Mutex;

        use super::*;
        use crate::cluster::{ClusterFlag, command, reply};
        use crate::etcd::{EtcdFailure, FailureKind};
        use crate::leadership::LeaderTerm;

        /// Records every transaction attempt and answers them as scripted (then Ok).
        #[derive(Clone)]
        struct FakeStore {
            keys: KeyLayout,
            attempts: Arc<Mutex<Vec<Vec<EncodedOp>>>>,
            answers: Arc<Mutex<VecDeque<Result<(), StoreError>>>>,
            /// Called after each attempt with how many there have been.
            after_attempt: Arc<dyn Fn(usize) + Send + Sync>,
        }

        impl FakeStore {
            fn new(answers: Vec<Result<(), StoreError>>) -> FakeStore {
                FakeStore {
                    keys: KeyLayout::new("/fb", "test"),
                    attempts: Arc::default(),
                    answers: Arc::new(Mutex::new(answers.into())),
                    after_attempt: Arc::new(|_| {}),
                }
            }

            fn attempts(&self) -> Vec<Vec<EncodedOp>> {
                self.attempts.lock().clone()
            }
        }

        impl CommitStore for FakeStore {
            fn keys(&self) -> &KeyLayout {
                &self.keys
            }

            fn commit(
                &self,
                _fence: &Fence,
                ops: &[EncodedOp],
            ) -> impl Future<Output = Result<(), StoreError>> + Send {
                let n = {
                    let mut a = self.attempts.lock();
                    a.push(ops.to_vec());
                    a.len()
                };
                let answer = self.answers.lock().pop_front().unwrap_or(Ok(()));
                (self.after_attempt)(n);
                async move { answer }
            }
        }

        fn timed_out() -> StoreError {
            StoreError::Etcd(EtcdFailure {
                kind: FailureKind::TimedOut,
                message: "no answer".to_string(),
            })
        }

        const LIMITS: TxnLimits = TxnLimits {
            max_ops: 128,
            max_bytes: 1 << 20,
        };

        /// Runs a writer for `term` over an empty state; returns the pipeline and the
        /// writer's exit.
        fn run(
            term: &LeaderTerm,
            store: &FakeStore,
            limits: TxnLimits,
        ) -> (Arc<Pipeline>, tokio::task::JoinHandle<PipelineExit>) {
            let (pipeline, writer) = start(term.clone(), ClusterState::default());
            let exit = tokio::spawn(writer.run(store.clone(), limits, Metrics::new(), Vec::new()));
            (pipeline, exit)
        }

        fn noout(pipeline: &Pipeline) -> bool {
            pipeline.snapshot().flags().contains(ClusterFlag::NoOut)
        }

        #[tokio::test]
        async fn a_failed_transaction_is_sent_again_unchanged_until_it_commits() {
            let (term, _ends) = LeaderTerm::detached(7);
            let store = FakeStore::new(vec![Err(timed_out()), Err(timed_out())]);
            let (pipeline, _exit) = run(&term, &store, LIMITS);
            let commits = pipeline.commits();
            let outcome = pipeline.propose(command::SetFlag(ClusterFlag::NoOut)).await;
            assert!(outcome.is_ok_and(|r| r.flags.contains(ClusterFlag::NoOut)));
            let attempts = store.attempts();
            assert_eq!(attempts.len(), 3, "two failures, then the commit");
            assert!(
                attempts.iter().all(|a| a == &attempts[0]),
                "the same transaction"
            );
            assert!(noout(&pipeline));
            assert_eq!(*commits.borrow(), 1, "published once");
        }

        #[tokio::test]
        async fn a_fenced_transaction_answers_not_leader_and_publishes_nothing() {
            let (term, _ends) = LeaderTerm::detached(7);
            let store = FakeStore::new(vec![Err(StoreError::Fenced)]);
            let (pipeline, exit) = run(&term, &store, LIMITS);
            let outcome = pipeline.propose(command::SetFlag(ClusterFlag::NoOut)).await;
            assert_eq!(outcome, Err(ProposeError::NotLeader));
            assert_eq!(exit.await.unwrap(), PipelineExit::Fenced);
            assert!(!noout(&pipeline), "nothing published");
            assert_eq!(pipeline.latest().0, 0);
            assert_eq!(
                pipeline.propose(command::SetFlag(ClusterFlag::NoIn)).await,
                Err(ProposeError::NotLeader),
                "a fenced pipeline takes nothing more"
            );
        }

        #[tokio::test]
        async fn a_fence_after_an_unanswered_attempt_leaves_the_outcome_unknown() {
            let (term, _ends) = LeaderTerm::detached(7);
            let store = FakeStore::new(vec![Err(timed_out()), Err(StoreError::Fenced)]);
            let (pipeline, exit) = run(&term, &store, LIMITS);
            let outcome = pipeline.propose(command::SetFlag(ClusterFlag::NoOut)).await;
            assert!(
                matches!(outcome, Err(ProposeError::Indeterminate(_))),
                "the first attempt may have been applied: {outcome:?}"
            );
            assert_eq!(exit.await.unwrap(), PipelineExit::Fenced);
            assert!(!noout(&pipeline));
        }

        #[tokio::test]
        async fn a_term_ending_while_a_transaction_is_retried_leaves_the_outcome_unknown() {
            let (term, _ends) = LeaderTerm::detached(7);
            let mut store = FakeStore::new((0..1000).map(|_| Err(timed_out())).collect());
            let ended = term.ended().clone();
            store.after_attempt = Arc::new(move |n| {
                if n == 3 {
                    ended.cancel();
                }
            });
            let (pipeline, exit) = run(&term, &store, LIMITS);
            let outcome = pipeline.propose(command::SetFlag(ClusterFlag::NoOut)).await;
            assert!(
                matches!(outcome, Err(ProposeError::Indeterminate(_))),
                "{outcome:?}"
            );
            assert_eq!(exit.await.unwrap(), PipelineExit::TermEnded);
            assert_eq!(store.attempts().len(), 3, "no attempt after the term ended");
            assert!(!noout(&pipeline));
        }

        #[tokio::test]
        async fn a_rejected_command_changes_nothing_and_the_next_one_commits() {
            let (term, _ends) = LeaderTerm::detached(7);
            let store = FakeStore::new(Vec::new());
            let (pipeline, _exit) = run(&term, &store, LIMITS);
            let refused = pipeline
                .propose(command::OsdOut {
                    id: crate::cluster::OsdId(42),
                })
                .await;
            assert!(
                matches!(refused, Err(ProposeError::Rejected(_))),
                "{refused:?}"
            );
            assert!(store.attempts().is_empty(), "nothing sent to the store");
            let ok = pipeline.propose(command::SetFlag(ClusterFlag::NoOut)).await;
            assert!(ok.is_ok(), "{ok:?}");
            assert_eq!(store.attempts().len(), 1);
        }

        #[tokio::test]
        async fn waiting_proposals_share_transactions_within_the_limits() {
            let (term, _ends) = LeaderTerm::detached(7);
            let store = FakeStore::new(Vec::new());
            // Two records per new OSD (its record, the osdmap meta shared by the group) and two
            // for the events (their batch, the id counter).
            let limits = TxnLimits {
                max_ops: 6,
                max_bytes: 1 << 20,
            };
            let (pipeline, writer) = start(term.clone(), ClusterState::default());
            // All proposals are queued before the writer starts: one batch.
            let proposals: Vec<_> = (0..12)
                .map(|i| {
                    let p = pipeline.clone();
                    tokio::spawn(async move {
                        p.propose(command::ApplyId {
                            uuid: format!("00000000-0000-4000-8000-{i:012}"),
                        })
                        .await
                    })
                })
                .collect();
            while pipeline.proposals.capacity() > QUEUE_DEPTH - 12 {
                tokio::task::yield_now().await;
            }
            let _exit = tokio::spawn(writer.run(store.clone(), limits, Metrics::new(), Vec::new()));
            let mut ids = std::collections::BTreeSet::new();
            for p in proposals {
                match p.await.unwrap() {
                    Ok(reply::AppliedId { id, .. }) => assert!(ids.insert(id)),
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(ids.len(), 12, "every caller got its own id");
            let attempts = store.attempts();
            assert!(
                attempts.iter().all(|t| t.len() <= limits.max_ops),
                "{attempts:?}"
            );
            assert!(
                attempts.len() > 1 && attempts.len() < 12,
                "grouped, and split at the limit: {} transactions",
                attempts.len()
            );
            assert_eq!(pipeline.snapshot().osd_count(), 12);
            // Each transaction carries its own events (one osd.applied per new OSD) and the
            // counter; the ids follow each other across transactions.
            let keys = KeyLayout::new("/fb", "master");
            let mut next = 1;
            for txn in &attempts {
                let batches: Vec<_> = txn
                    .iter()
                    .filter_map(|op| Some((keys.parse_event_batch(&op.key)?, op)))
                    .collect();
                assert_eq!(batches.len(), 1, "{txn:?}");
                let (first, op) = batches[0];
                assert_eq!(first, next);
                let events =
                    crate::cluster::decode_event_batch(first, op.value.as_ref().unwrap()).unwrap();
                let osds = txn
                    .iter()
                    .filter(|op| {
                        keys.parse_record(&op.key)
                            .is_some_and(|k| matches!(k, RecordKey::Osd(_)))
                    })
                    .count();
                assert_eq!(events.len(), osds, "one event per OSD applied");
                assert!(events.iter().all(|e| e.kind == "osd.applied"), "{events:?}");
                next += events.len() as u64;
                let counters = txn
                    .iter()
                    .find(|op| op.key == keys.record(&RecordKey::Counters))
                    .expect("the counter travels with the events");
                let Ok(crate::cluster::Record::Counters(c)) = crate::cluster::decode_record(
                    &RecordKey::Counters,
                    counters.value.as_ref().unwrap(),
                ) else {
                    panic!("counters decode");
                };
                assert_eq!(c.next_event_id, next);
            }
            assert_eq!(next, 13);
            tokio::time::timeout(Duration::from_secs(5), async {
                while pipeline.latest().0 < attempts.len() as u64 {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("one published snapshot per transaction");
        }
    }
}
