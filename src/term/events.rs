//! The term's event task: records that this monitor was elected, then applies the event log's
//! retention every [`timing::EVENT_RETENTION_EVERY`] (fenced deletes of the oldest
//! transactions' events).

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::TermContext;
use crate::cluster::{EventBody, EventType, command};
use crate::commit::ProposeError;
use crate::etcd::{Store, StoreError};
use crate::event_log::{self, CompactError, Retention};
use crate::metrics::Metrics;
use crate::timing;

/// Why the event task ended the term.
#[derive(Debug, thiserror::Error)]
pub enum EventTaskError {
    #[error("recording the election failed: {0}")]
    Elected(ProposeError),
    #[error("the retention's delete was fenced: another monitor leads")]
    Fenced,
}

/// Runs until `stop`.
pub async fn run(
    context: Arc<TermContext>,
    store: Store,
    retention: Retention,
    monitor: String,
    address: String,
    metrics: Metrics,
    stop: CancellationToken,
) -> Result<(), EventTaskError> {
    let elected = EventBody::monitor(
        EventType::MonitorLeaderElected,
        &monitor,
        json!({
            "monitor": monitor,
            "address": address,
            "leader_epoch": context.term.epoch.0,
        }),
    );
    match context.propose(command::RecordEvents(vec![elected])).await {
        Ok(()) => {}
        // The term is ending anyway: nothing to report.
        Err(ProposeError::NotLeader) => return Ok(()),
        Err(e) => return Err(EventTaskError::Elected(e)),
    }
    loop {
        let latest = context.pipeline.snapshot().counters().next_event_id - 1;
        match event_log::compact(&store, &context.term.fence, retention, latest, &metrics).await {
            Ok(done) if done.events > 0 => {
                tracing::info!(
                    deleted = done.events,
                    oldest_kept = done.oldest,
                    "event log retention deleted old events"
                );
            }
            Ok(_) => {}
            Err(CompactError::Store(StoreError::Fenced)) => {
                if stop.is_cancelled() {
                    return Ok(());
                }
                return Err(EventTaskError::Fenced);
            }
            Err(e) => tracing::warn!(error = %e, "event log retention failed; trying again later"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(timing::EVENT_RETENTION_EVERY) => {}
        }
    }
}
