//! What a leadership term serves from, as the front ends see it: the term, its commit
//! pipeline (proposals, snapshots, history), its heartbeat actor (liveness and the failure
//! detector's findings), the client I/O statistics, and the changes its tasks could not fit
//! in a transaction. Every part has its own way of being shared (a queue, an immutable
//! published value, one short lock); nothing here is a catch-all lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::batches::TooLarge;
use crate::cluster::iostats::IoStats;
use crate::cluster::{ClusterState, Command};
use crate::commit::{self, Pipeline, ProposeError, Writer};
use crate::health;
use crate::heartbeat::{self, HeartbeatActor, Heartbeats};
use crate::leadership::LeaderTerm;
use crate::timing;
use crate::webhook::supervisor::WebhookHandle;

/// The serving state of one leadership term.
pub struct TermContext {
    /// The term this state belongs to.
    pub term: LeaderTerm,
    /// Proposals, the committed snapshot and its recent history.
    pub pipeline: Arc<Pipeline>,
    /// Liveness: heartbeats in, the failure detector's findings out.
    pub heartbeats: Heartbeats,
    /// Client I/O statistics reported by the OSDs.
    pub iostats: SharedIoStats,
    /// Changes the term's tasks cannot commit under the transaction limits (for health).
    pub too_large: TooLarge,
    /// PGs not active for longer than `pg_stuck_inactive_after`, as the health task last found
    /// them.
    pub stuck_inactive: ArcSwap<health::StuckPgs>,
    /// What the service shares with the term's webhook task (reload now, health findings).
    pub webhooks: Arc<WebhookHandle>,
}

/// The parts of a term that run as tasks, returned by [`start`] for the term to run.
pub struct TermParts {
    pub context: Arc<TermContext>,
    pub writer: Writer,
    pub heartbeat_actor: HeartbeatActor,
}

/// Creates the context of `term` serving `state`, and the tasks that will run it.
pub fn start(
    term: LeaderTerm,
    state: ClusterState,
    webhooks: crate::webhook::deliver::Settings,
) -> TermParts {
    let (pipeline, writer) = commit::start(term.clone(), state);
    let (heartbeats, heartbeat_actor) = heartbeat::start(Instant::now());
    let context = Arc::new(TermContext {
        term,
        pipeline,
        heartbeats,
        iostats: SharedIoStats::new(timing::IO_RATE_WINDOW),
        too_large: TooLarge::default(),
        stuck_inactive: ArcSwap::from_pointee(health::StuckPgs::default()),
        webhooks: Arc::new(WebhookHandle::new(webhooks)),
    });
    TermParts {
        context,
        writer,
        heartbeat_actor,
    }
}

impl TermContext {
    /// The last committed state. Never waits.
    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.pipeline.snapshot()
    }

    /// Submits a command and waits until it committed (or failed).
    pub async fn propose<C: Command>(&self, command: C) -> Result<C::Reply, ProposeError> {
        self.pipeline.propose(command).await
    }

    /// The failing health checks of `snap`, with what this term's tasks found and what the
    /// monitors know of themselves (`Node::monitor_facts`).
    pub fn health(
        &self,
        snap: &ClusterState,
        monitors: health::MonitorFacts,
    ) -> Vec<health::Check> {
        let findings = self.heartbeats.findings();
        let stuck = self.stuck_inactive.load();
        let webhooks = self.webhooks.health.load();
        health::evaluate(
            snap,
            &health::Findings {
                out_refused: &findings.check.out_refused,
                down_refused: &findings.check.down_refused,
                flapping: &findings.check.flapping,
                late: &findings.check.late,
                too_large: &self.too_large.all(),
                stuck_inactive: &stuck,
                monitors,
                etcd: self.pipeline.etcd_commits(),
                webhooks: &webhooks,
            },
        )
    }
}

/// Client I/O statistics shared by the calls that report them (DataStatistics, PG changes,
/// pool deletion) and those that read them (status, metrics). Each use holds the lock only
/// for one short, non-blocking update or read.
pub struct SharedIoStats(Mutex<IoStats>);

impl SharedIoStats {
    fn new(window: Duration) -> SharedIoStats {
        SharedIoStats(Mutex::new(IoStats::new(window)))
    }

    /// Runs `f` on the statistics.
    pub fn with<R>(&self, f: impl FnOnce(&mut IoStats) -> R) -> R {
        f(&mut self.0.lock())
    }
}
