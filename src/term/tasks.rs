//! The tasks a leadership term runs beside its commit pipeline, held by the term.
//!
//! A term cannot serve correctly without its tasks: without the heartbeat actor no OSD is
//! heard, without the failure check no dead OSD is marked down, without the reconciler no PG
//! is remapped. So a task that panics, fails, or returns while the term lasts is a failure of
//! the term: it is logged, counted (`fastblock_term_task_failures_total{task}`), and the term
//! ends (the monitor steps down and campaigns again, and a healthy monitor takes over) instead
//! of serving on without it. Tasks that end because the term ended are not failures.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, TermTask};

/// How a task failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskFailure {
    /// It panicked, with this message.
    Panicked(String),
    /// It returned this error.
    Failed(String),
    /// It returned while the term lasted.
    Returned,
}

impl Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskFailure::Panicked(m) => write!(f, "panicked: {m}"),
            TaskFailure::Failed(e) => write!(f, "failed: {e}"),
            TaskFailure::Returned => f.write_str("returned while the term lasted"),
        }
    }
}

/// The running tasks of one term.
pub struct TermTasks {
    set: JoinSet<Result<(), String>>,
    names: HashMap<Id, TermTask>,
    /// Cancelled when the term ends: tasks stop on it.
    stop: CancellationToken,
    metrics: Metrics,
}

impl TermTasks {
    /// No tasks yet; `stop` is the token the tasks will be given.
    pub fn new(stop: CancellationToken, metrics: Metrics) -> TermTasks {
        TermTasks {
            set: JoinSet::new(),
            names: HashMap::new(),
            stop,
            metrics,
        }
    }

    /// The token every task must stop on.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Starts `future` as `task`. An `Err` it returns is a failure of the term.
    pub fn spawn<F, E>(&mut self, task: TermTask, future: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let handle = self
            .set
            .spawn(async move { future.await.map_err(|e| e.to_string()) });
        self.names.insert(handle.id(), task);
    }

    /// Starts `future` as `task`, a task that has no errors of its own: only a panic or its
    /// return while the term lasts is a failure.
    pub fn spawn_infallible<F>(&mut self, task: TermTask, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(task, async move {
            future.await;
            Ok::<(), std::convert::Infallible>(())
        });
    }

    /// Waits until a task fails while the term lasts, logs and counts it, and returns which
    /// task it was and how. Pends forever if none does (select it against the term's end).
    pub async fn failure(&mut self) -> (TermTask, TaskFailure) {
        loop {
            let Some(joined) = self.set.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (id, failure) = match joined {
                Ok((id, Ok(()))) => (id, TaskFailure::Returned),
                Ok((id, Err(e))) => (id, TaskFailure::Failed(e)),
                Err(e) => (e.id(), TaskFailure::Panicked(panic_message(e))),
            };
            let task = self.names.remove(&id).unwrap_or(TermTask::Pipeline);
            if self.stop.is_cancelled() {
                // Ended with its term: not a failure.
                continue;
            }
            report(&self.metrics, task, &failure);
            return (task, failure);
        }
    }

    /// Stops every task and waits until they have ended.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while let Some(joined) = self.set.join_next_with_id().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                let task = self.names.remove(&e.id()).unwrap_or(TermTask::Pipeline);
                tracing::error!(task = task.as_str(), panic = %panic_message(e), "term task panicked while stopping");
            }
        }
    }
}

/// Logs and counts the failure of `task`.
pub fn report(metrics: &Metrics, task: TermTask, failure: &TaskFailure) {
    tracing::error!(task = task.as_str(), %failure, "term task failed; ending the term");
    metrics
        .term_task_failures
        .with_label_values(&[task.as_str()])
        .inc();
}

/// The message of a panicked task (or why there is none).
pub fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".to_string();
    }
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn tasks() -> (TermTasks, Metrics) {
        let metrics = Metrics::new();
        (
            TermTasks::new(CancellationToken::new(), metrics.clone()),
            metrics,
        )
    }

    fn failures(m: &Metrics, task: TermTask) -> u64 {
        m.term_task_failures
            .with_label_values(&[task.as_str()])
            .get()
    }

    async fn until_stopped(stop: CancellationToken) -> Result<(), String> {
        stop.cancelled().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_with_its_name_and_message() {
        let (mut t, m) = tasks();
        t.spawn(TermTask::Reconcile, until_stopped(t.stop_token()));
        t.spawn(TermTask::FailureCheck, async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        });
        let (task, failure) = t.failure().await;
        assert_eq!(task, TermTask::FailureCheck);
        assert_eq!(failure, TaskFailure::Panicked("boom".to_string()));
        assert_eq!(failures(&m, TermTask::FailureCheck), 1);
        assert_eq!(failures(&m, TermTask::Reconcile), 0);
        t.stop().await;
    }

    #[tokio::test]
    async fn an_error_or_an_early_return_is_a_failure() {
        let (mut t, m) = tasks();
        t.spawn(TermTask::Heartbeats, async { Err::<(), _>("actor gone") });
        let (task, failure) = t.failure().await;
        assert_eq!(task, TermTask::Heartbeats);
        assert_eq!(failure, TaskFailure::Failed("actor gone".to_string()));
        t.spawn_infallible(TermTask::RaftLeader, async {});
        let (task, failure) = t.failure().await;
        assert_eq!(task, TermTask::RaftLeader);
        assert_eq!(failure, TaskFailure::Returned);
        assert_eq!(failures(&m, TermTask::RaftLeader), 1);
        t.stop().await;
    }

    #[tokio::test]
    async fn tasks_ending_with_the_term_are_not_failures() {
        let (mut t, m) = tasks();
        let stop = t.stop_token();
        t.spawn(TermTask::Reconcile, until_stopped(stop.clone()));
        t.spawn(TermTask::FailureCheck, async move {
            stop.cancelled().await;
            Err::<(), _>("the heartbeat actor stopped first")
        });
        t.stop.cancel();
        let waited = tokio::time::timeout(Duration::from_millis(200), t.failure()).await;
        assert!(waited.is_err(), "no failure is reported: {waited:?}");
        assert!(TermTask::ALL.iter().all(|task| failures(&m, *task) == 0));
        t.stop().await;
    }
}
