//! Runs each leadership term: load the state (fenced, consistent), serve it through the commit
//! pipeline with the term's tasks (heartbeat actor, failure check, reconciler, events, health,
//! raft leader placement), end the term when one of them fails, and stop serving the moment the term
//! ends. `context.rs` is what the front ends serve from; `tasks.rs` holds the term's tasks.

mod context;
mod events;
mod health;
mod tasks;

pub use context::{SharedIoStats, TermContext, TermParts};
pub use tasks::{TaskFailure, TermTasks};

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::failure::FailurePolicy;
use crate::cluster::{ClusterState, RecordKey};
use crate::commit::{PipelineExit, TxnLimits};
use crate::etcd::{Store, StoreError, raft_leader};
use crate::event_log::Retention;
use crate::leadership::{LeaderTerm, Role};
use crate::metrics::TermTask;
use crate::node::Node;
use crate::{failure_check, reconcile, timing};

/// The gRPC service whose health status says "this monitor serves as leader".
pub const MONITOR_SERVICE: &str = "fastblock.monitor.v1.Monitor";

/// What every term needs from the configuration.
#[derive(Debug, Clone)]
pub struct TermSettings {
    pub limits: TxnLimits,
    pub failure: FailurePolicy,
    /// Our embedded member's client URL when raft leadership should be kept off it.
    pub raft_leader_url: Option<String>,
    /// Largest share of all PGs one rebalance round may move.
    pub rebalance_fraction: f64,
    /// What the event log keeps.
    pub events: Retention,
    /// A PG not active this long is reported stuck (PG_STUCK_INACTIVE).
    pub pg_stuck_inactive_after: std::time::Duration,
    /// How webhooks are delivered.
    pub webhooks: crate::webhook::deliver::Settings,
}

/// Runs terms as the election starts them, until `stop`.
pub async fn run_terms(
    node: Arc<Node>,
    store: Store,
    settings: TermSettings,
    mut role: watch::Receiver<Role>,
    health: tonic_health::server::HealthReporter,
    stop: CancellationToken,
) {
    health
        .set_service_status(MONITOR_SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    loop {
        let term = tokio::select! {
            _ = stop.cancelled() => return,
            changed = role.wait_for(|r| matches!(r, Role::Leader(_))) => match changed {
                Ok(r) => match &*r {
                    Role::Leader(t) => t.clone(),
                    Role::Standby => continue,
                },
                Err(_) => return,
            },
        };
        run_term(&node, &store, &settings, &term, &health).await;
        // Wait for the election to publish the end of this term before looking again.
        let _ = role
            .wait_for(|r| !matches!(r, Role::Leader(t) if t.epoch == term.epoch))
            .await;
    }
}

async fn run_term(
    node: &Arc<Node>,
    store: &Store,
    settings: &TermSettings,
    term: &LeaderTerm,
    health: &tonic_health::server::HealthReporter,
) {
    let Some((state, garbage)) = load(store, term).await else {
        return;
    };
    let TermParts {
        context,
        writer,
        heartbeat_actor,
    } = context::start(term.clone(), state, settings.webhooks.clone());
    let mut tasks = TermTasks::new(term.ended().child_token(), node.metrics.clone());
    tasks.spawn_infallible(
        TermTask::Heartbeats,
        heartbeat_actor.run(tasks.stop_token()),
    );
    tasks.spawn(
        TermTask::FailureCheck,
        failure_check::run(context.clone(), settings.failure, tasks.stop_token()),
    );
    tasks.spawn_infallible(
        TermTask::Reconcile,
        reconcile::run(
            context.clone(),
            settings.rebalance_fraction,
            tasks.stop_token(),
        ),
    );
    tasks.spawn(
        TermTask::Events,
        events::run(
            context.clone(),
            store.clone(),
            settings.events,
            node.me.name.clone(),
            node.me.grpc_address.clone(),
            node.metrics.clone(),
            tasks.stop_token(),
        ),
    );
    tasks.spawn_infallible(
        TermTask::Health,
        health::run(
            context.clone(),
            node.clone(),
            health::Timing {
                hold: settings.failure.down_after,
                stuck_after: settings.pg_stuck_inactive_after,
            },
            tasks.stop_token(),
        ),
    );
    match crate::webhook::deliver::Sender::new(settings.webhooks.timeout) {
        Ok(sender) => {
            let deliverer = Arc::new(crate::webhook::deliver::Deliverer {
                log: node.events.clone(),
                store: store.webhooks(),
                fence: term.fence.clone(),
                sender,
                settings: settings.webhooks.clone(),
                metrics: node.metrics.clone(),
            });
            tasks.spawn(
                TermTask::Webhooks,
                crate::webhook::supervisor::run(
                    deliverer,
                    context.webhooks.clone(),
                    tasks.stop_token(),
                ),
            );
        }
        Err(e) => tracing::error!(error = %e, "no HTTP client for webhooks; none are delivered"),
    }
    // Only after the load: moving etcd's raft leadership makes etcd answer "leader changed"
    // for a moment, which would fail a page of the load.
    if let Some(url) = &settings.raft_leader_url {
        tasks.spawn_infallible(
            TermTask::RaftLeader,
            raft_leader::keep_elsewhere(url.clone(), tasks.stop_token()),
        );
    }
    let mut writer = tokio::spawn(writer.run(
        store.clone(),
        settings.limits,
        node.metrics.clone(),
        garbage,
    ));
    node.set_serving(Some(context));
    node.metrics.leader.set(1);
    node.metrics.leader_epoch.set(term.epoch.0 as i64);
    health
        .set_service_status(MONITOR_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    tracing::info!(epoch = %term.epoch, "serving as leader");

    let exit = tokio::select! {
        exit = &mut writer => exit,
        _ = tasks.failure() => {
            // Logged and counted; the writer stops once the election has ended the term.
            term.report_task_failed();
            (&mut writer).await
        }
    };

    node.set_serving(None);
    node.metrics.leader.set(0);
    node.metrics.leader_epoch.set(0);
    health
        .set_service_status(MONITOR_SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    match exit {
        Ok(PipelineExit::TermEnded) => {}
        Ok(PipelineExit::Fenced) => term.report_fenced(),
        Err(e) => {
            let failure = TaskFailure::Panicked(tasks::panic_message(e));
            tasks::report(&node.metrics, TermTask::Pipeline, &failure);
            term.report_task_failed();
        }
    }
    tasks.stop().await;
}

/// Loads the state for the term, retrying etcd errors while the term lasts. Also returns the
/// unreferenced records the load found.
async fn load(store: &Store, term: &LeaderTerm) -> Option<(ClusterState, Vec<RecordKey>)> {
    let mut backoff = timing::ETCD_RETRY_MIN;
    loop {
        if !term.is_valid() {
            return None;
        }
        let error = match store.load(&term.fence).await {
            Ok(records) => match ClusterState::from_records(records) {
                Ok(loaded) => return Some(loaded),
                Err(e) => StoreError::Corrupt(e.to_string()),
            },
            Err(StoreError::Fenced) => {
                term.report_fenced();
                return None;
            }
            Err(e) => e,
        };
        tracing::error!(error = %error, retry_in_ms = backoff.as_millis() as u64, "cannot load cluster state");
        tokio::select! {
            _ = term.ended().cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(timing::ETCD_RETRY_MAX);
    }
}
