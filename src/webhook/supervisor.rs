//! The term task that delivers webhooks: every second (and at once when a registration
//! changes through this leader) it reads the registered endpoints and keeps one delivery loop
//! running per enabled endpoint, restarting a loop whose registration changed and stopping
//! those of removed or disabled endpoints. It also counts the stored dead letters and the
//! disabled endpoints for the health checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::deliver::{Deliverer, Ended, Settings};
use crate::etcd::webhooks::Endpoint;

/// How often the registrations are read again.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What the health checks read of the webhooks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookHealth {
    /// Dead letters stored, over every endpoint.
    pub dead_letters: u64,
    /// Endpoints disabled (410 Gone), by id.
    pub disabled: Vec<u32>,
    /// Whether this term has read them once (until then the checks are not cleared).
    pub loaded: bool,
}

/// What the service shares with the term's webhook task.
pub struct WebhookHandle {
    /// How delivery behaves (the service checks urls against `allow_http`, tests send with it).
    pub settings: Settings,
    /// Wakes the task to read the registrations now.
    pub reload: Notify,
    /// The latest health findings.
    pub health: ArcSwap<WebhookHealth>,
}

impl WebhookHandle {
    pub fn new(settings: Settings) -> WebhookHandle {
        WebhookHandle {
            settings,
            reload: Notify::new(),
            health: ArcSwap::from_pointee(WebhookHealth::default()),
        }
    }
}

/// The task ended because another monitor leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a webhook write was fenced: another monitor leads")]
pub struct Fenced;

struct Running {
    endpoint: Endpoint,
    stop: CancellationToken,
    task: JoinHandle<Ended>,
}

/// Runs until `stop`.
pub async fn run(
    deliverer: Arc<Deliverer>,
    handle: Arc<WebhookHandle>,
    stop: CancellationToken,
) -> Result<(), Fenced> {
    let mut running: HashMap<u32, Running> = HashMap::new();
    let result = supervise(&deliverer, &handle, &mut running, &stop).await;
    for (_, r) in running.drain() {
        r.stop.cancel();
        let _ = r.task.await;
    }
    if stop.is_cancelled() {
        return Ok(());
    }
    result
}

async fn supervise(
    deliverer: &Arc<Deliverer>,
    handle: &WebhookHandle,
    running: &mut HashMap<u32, Running>,
    stop: &CancellationToken,
) -> Result<(), Fenced> {
    loop {
        // Loops that ended by themselves.
        let finished: Vec<u32> = running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in finished {
            if let Some(r) = running.remove(&id)
                && let Ok(Ended::Fenced) = r.task.await
            {
                return Err(Fenced);
            }
        }
        match deliverer.store.list().await {
            Ok(endpoints) => {
                let mut health = WebhookHealth::default();
                let mut wanted = HashMap::new();
                for ep in endpoints {
                    if ep.disabled_reason.is_empty() {
                        wanted.insert(ep.id, ep);
                    } else {
                        health.disabled.push(ep.id);
                    }
                }
                // Stop what is gone or changed.
                let stale: Vec<u32> = running
                    .iter()
                    .filter(|(id, r)| wanted.get(id) != Some(&r.endpoint))
                    .map(|(id, _)| *id)
                    .collect();
                for id in stale {
                    if let Some(r) = running.remove(&id) {
                        r.stop.cancel();
                        if let Ok(Ended::Fenced) = r.task.await {
                            return Err(Fenced);
                        }
                    }
                }
                for (id, ep) in wanted {
                    if running.contains_key(&id) {
                        continue;
                    }
                    let child = stop.child_token();
                    let d = deliverer.clone();
                    let (ep2, token) = (ep.clone(), child.clone());
                    let task = tokio::spawn(async move { d.run(ep2, token).await });
                    running.insert(
                        id,
                        Running {
                            endpoint: ep,
                            stop: child,
                            task,
                        },
                    );
                }
                match deliverer.store.dead_letter_count(None).await {
                    Ok(n) => {
                        health.dead_letters = n.max(0) as u64;
                        health.loaded = true;
                    }
                    Err(e) => {
                        // Not known now: keep what was known, so nothing clears by mistake.
                        tracing::warn!(error = %e, "counting the webhooks' dead letters failed");
                        let before = handle.health.load();
                        health.dead_letters = before.dead_letters;
                        health.loaded = before.loaded;
                    }
                }
                handle.health.store(Arc::new(health));
            }
            Err(e) => tracing::warn!(error = %e, "reading the registered webhooks failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = handle.reload.notified() => {}
            _ = tokio::time::sleep(RELOAD_EVERY) => {}
        }
    }
}
