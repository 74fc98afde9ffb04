//! One endpoint's delivery: its events from the log in id order, each tried until it is
//! delivered, the receiver says 410, or it is older than the head-age limit after a failed
//! attempt (then it becomes a dead letter and the next event goes). The cursor (the last event
//! id done with) is persisted under the leader fence about once a second and when the loop
//! stops, so a new leader resumes there: at least once, in order.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::envelope;
use super::policy::{self, Outcome};
use super::sign::{self, Secret};
use crate::cluster::Event;
use crate::etcd::webhooks::{DeadLetter, Endpoint};
use crate::etcd::{Fence, WebhookStore, WebhookStoreError};
use crate::event_log::EventLog;
use crate::metrics::Metrics;
use crate::timing;

/// Events read from the log at once.
const BATCH: usize = 256;
/// How often a moving cursor is persisted at most.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Longest error text kept in a dead letter or a log line.
const MAX_ERROR: usize = 256;

/// How delivery behaves (config keys).
#[derive(Debug, Clone)]
pub struct Settings {
    /// One attempt's bound (connect, send, answer).
    pub timeout: Duration,
    /// An event at the head of an endpoint's queue older than this, after a failed attempt,
    /// becomes a dead letter.
    pub max_event_age: Duration,
    /// Whether `http://` urls are accepted (tests, labs); otherwise only `https://`.
    pub allow_http: bool,
    /// The CloudEvents `source` of every event (`urn:fastblock:<cluster>`).
    pub source: String,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// What went wrong, for the log and dead letters.
    pub error: Option<String>,
}

/// Sends signed webhooks over HTTP(S): certificates verified, redirects not followed, every
/// attempt bounded.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new(timeout: Duration) -> Result<Sender, String> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("fastblock-monitor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map(|client| Sender { client })
            .map_err(|e| e.to_string())
    }

    /// One attempt to deliver `body` (the event `id`) to `endpoint`.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        secrets: &[Secret],
        id: u64,
        body: &[u8],
    ) -> Attempt {
        self.send_with_id(endpoint, secrets, &id.to_string(), body)
            .await
    }

    /// One attempt with the `webhook-id` `msg_id` (a test's id is not an event id).
    pub async fn send_with_id(
        &self,
        endpoint: &Endpoint,
        secrets: &[Secret],
        msg_id: &str,
        body: &[u8],
    ) -> Attempt {
        let now = SystemTime::now();
        let timestamp = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut request = self
            .client
            .post(&endpoint.url)
            .header(reqwest::header::CONTENT_TYPE, envelope::CONTENT_TYPE)
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .body(body.to_vec());
        if !secrets.is_empty() {
            request = request.header(
                "webhook-signature",
                sign::signature(secrets, msg_id, timestamp, body),
            );
        }
        if !endpoint.bearer_token.is_empty() {
            request = request.bearer_auth(&endpoint.bearer_token);
        }
        match request.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let outcome = policy::classify(status, retry_after.as_deref(), now);
                Attempt {
                    outcome,
                    status: Some(status),
                    error: (outcome != Outcome::Delivered).then(|| format!("HTTP {status}")),
                }
            }
            Err(e) => Attempt {
                outcome: Outcome::Retry { wait: None },
                status: None,
                error: Some(crate::cluster::clip(&error_chain(&e), MAX_ERROR)),
            },
        }
    }
}

/// An error with its causes, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What the delivery loops of one term share.
pub struct Deliverer {
    pub log: Arc<EventLog>,
    pub store: WebhookStore,
    pub fence: Fence,
    pub sender: Sender,
    pub settings: Settings,
    pub metrics: Metrics,
}

/// Why an endpoint's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop (term end, endpoint changed or removed).
    Stopped,
    /// The receiver answered 410: the endpoint was disabled.
    Disabled,
    /// Another monitor leads.
    Fenced,
    /// The endpoint was removed meanwhile.
    Removed,
}

/// The endpoint's secrets (stored ones that do not parse are skipped and logged).
pub fn secrets_of(endpoint: &Endpoint) -> Vec<Secret> {
    endpoint
        .secrets
        .iter()
        .filter_map(|b| match Secret::from_bytes(b.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(webhook = endpoint.id, error = %e, "skipping a stored secret");
                None
            }
        })
        .collect()
}

impl Deliverer {
    /// Persists `cursor` of `id`; Err when the loop must end.
    async fn persist(&self, id: u32, cursor: u64) -> Result<(), Ended> {
        match self.store.set_cursor(&self.fence, id, cursor).await {
            Ok(()) => Ok(()),
            Err(WebhookStoreError::Fenced) => Err(Ended::Fenced),
            Err(WebhookStoreError::NotFound(_)) => Err(Ended::Removed),
            Err(e) => {
                tracing::warn!(webhook = id, error = %e, "persisting the webhook cursor failed; will try again");
                Ok(())
            }
        }
    }

    /// Runs the delivery of `endpoint` from its stored cursor until `stop` or an end. The
    /// endpoint's series exist (at zero) while its loop runs; its gauges go with the loop, so a
    /// monitor that stopped leading exports none.
    pub async fn run(&self, endpoint: Endpoint, stop: CancellationToken) -> Ended {
        let label = endpoint.id.to_string();
        for outcome in Outcome::LABELS {
            self.metrics
                .webhook_deliveries
                .with_label_values(&[&label, outcome]);
        }
        self.metrics
            .webhook_dead_letters
            .with_label_values(&[&label]);
        self.metrics
            .webhook_queue_depth
            .with_label_values(&[&label]);
        self.metrics
            .webhook_oldest_undelivered
            .with_label_values(&[&label])
            .set(0.0);
        let end = self.deliver_from_cursor(endpoint, stop).await;
        let _ = self
            .metrics
            .webhook_queue_depth
            .remove_label_values(&[&label]);
        let _ = self
            .metrics
            .webhook_oldest_undelivered
            .remove_label_values(&[&label]);
        end
    }

    async fn deliver_from_cursor(&self, endpoint: Endpoint, stop: CancellationToken) -> Ended {
        let id = endpoint.id;
        let label = id.to_string();
        let secrets = secrets_of(&endpoint);
        if endpoint.replay_from > 0 {
            // A replay asked for: the cursor goes back first, then the request is cleared
            // (both again if this loop is cut in between: the same result).
            if let Err(end) = self.persist(id, endpoint.replay_from - 1).await {
                return end;
            }
            let mut done = endpoint.clone();
            done.replay_from = 0;
            match self.store.update(&self.fence, &done).await {
                Ok(()) => {}
                Err(WebhookStoreError::Fenced) => return Ended::Fenced,
                Err(WebhookStoreError::NotFound(_)) => return Ended::Removed,
                Err(e) => {
                    tracing::warn!(webhook = id, error = %e, "clearing the replay request failed")
                }
            }
            tracing::info!(
                webhook = id,
                from = endpoint.replay_from,
                "webhook replay starts"
            );
        }
        let mut cursor = loop {
            match self.store.cursor(id).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(webhook = id, error = %e, "reading the webhook cursor failed");
                    tokio::select! {
                        _ = stop.cancelled() => return Ended::Stopped,
                        _ = tokio::time::sleep(timing::ETCD_RETRY_MAX) => {}
                    }
                }
            }
        };
        let mut persisted = cursor;
        let mut last_persist = Instant::now();
        // Set when an event was given up on, to its last error; cleared by a delivery.
        let mut failing: Option<String> = None;
        let mut latest = self.log.subscribe();
        loop {
            let events = match self.log.after(cursor, BATCH).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(webhook = id, error = %e, "reading the event log failed");
                    Vec::new()
                }
            };
            self.metrics
                .webhook_queue_depth
                .with_label_values(&[&label])
                .set(self.log.latest().saturating_sub(cursor) as i64);
            if events.is_empty() {
                if persisted != cursor {
                    if let Err(end) = self.persist(id, cursor).await {
                        return end;
                    }
                    persisted = cursor;
                    last_persist = Instant::now();
                }
                self.metrics
                    .webhook_oldest_undelivered
                    .with_label_values(&[&label])
                    .set(0.0);
                tokio::select! {
                    _ = stop.cancelled() => return Ended::Stopped,
                    _ = latest.changed() => {}
                    _ = tokio::time::sleep(PERSIST_EVERY) => {}
                }
                continue;
            }
            if let Some(first) = events.first()
                && first.id > cursor + 1
            {
                tracing::error!(
                    webhook = id,
                    from = cursor + 1,
                    to = first.id - 1,
                    "events were deleted by the event log's retention before this webhook got them"
                );
            }
            for event in events {
                if event.matches(&endpoint.types) {
                    match self
                        .deliver_one(&endpoint, &secrets, &event, &mut failing, &stop)
                        .await
                    {
                        Ok(()) => {}
                        Err(Ended::Stopped) => {
                            if persisted != cursor {
                                let _ = self.persist(id, cursor).await;
                            }
                            return Ended::Stopped;
                        }
                        Err(end) => return end,
                    }
                }
                cursor = event.id;
                if last_persist.elapsed() >= PERSIST_EVERY && persisted != cursor {
                    if let Err(end) = self.persist(id, cursor).await {
                        return end;
                    }
                    persisted = cursor;
                    last_persist = Instant::now();
                }
            }
        }
    }

    /// Delivers one event to `endpoint`, trying again until done or given up on; Err when the
    /// loop must end.
    ///
    /// `failing` holds the last error while the receiver is known to be failing (an earlier
    /// event was given up on and nothing was delivered since). Then an event already older
    /// than `webhook_max_event_age` is given up on without being tried: a receiver that hangs
    /// until `webhook_timeout` would otherwise take that long per queued event, and an endpoint
    /// behind by an hour of events would never catch up. The first event younger than the limit
    /// is tried as usual; `webhook-replay` sends the skipped ones again.
    async fn deliver_one(
        &self,
        endpoint: &Endpoint,
        secrets: &[Secret],
        event: &Event,
        failing: &mut Option<String>,
        stop: &CancellationToken,
    ) -> Result<(), Ended> {
        let label = endpoint.id.to_string();
        if let Some(last) = failing.as_deref() {
            let age = Duration::from_millis(timing::unix_ms_now().saturating_sub(event.time_ms));
            if age > self.settings.max_event_age {
                let letter = DeadLetter {
                    event_id: event.id,
                    event_type: event.kind.clone(),
                    attempts: 0,
                    last_error: format!("not tried: the receiver was failing ({last})"),
                    dead_ms: timing::unix_ms_now(),
                };
                return self.bury(endpoint, &letter, stop).await;
            }
        }
        let body = envelope::body(event, &self.settings.source);
        let mut attempt = 0u32;
        loop {
            if stop.is_cancelled() {
                return Err(Ended::Stopped);
            }
            attempt += 1;
            let age_ms = timing::unix_ms_now().saturating_sub(event.time_ms);
            self.metrics
                .webhook_oldest_undelivered
                .with_label_values(&[&label])
                .set(age_ms as f64 / 1000.0);
            let result = tokio::select! {
                _ = stop.cancelled() => return Err(Ended::Stopped),
                r = self.sender.send(endpoint, secrets, event.id, &body) => r,
            };
            self.metrics
                .webhook_deliveries
                .with_label_values(&[&label, result.outcome.label()])
                .inc();
            let wait = match result.outcome {
                Outcome::Delivered => {
                    *failing = None;
                    let took = timing::unix_ms_now().saturating_sub(event.time_ms);
                    self.metrics
                        .webhook_delivery_seconds
                        .observe(took as f64 / 1000.0);
                    return Ok(());
                }
                Outcome::Gone => {
                    tracing::warn!(webhook = endpoint.id, url = %crate::text::shown(&endpoint.url), "the receiver answered 410 Gone: disabling the webhook");
                    let mut disabled = endpoint.clone();
                    disabled.disabled_reason = "gone: the receiver answered 410".to_string();
                    disabled.disabled_ms = timing::unix_ms_now();
                    return Err(match self.store.update(&self.fence, &disabled).await {
                        Ok(()) => Ended::Disabled,
                        Err(WebhookStoreError::Fenced) => Ended::Fenced,
                        Err(WebhookStoreError::NotFound(_)) => Ended::Removed,
                        Err(e) => {
                            tracing::warn!(webhook = endpoint.id, error = %e, "disabling the webhook failed");
                            Ended::Disabled
                        }
                    });
                }
                Outcome::Retry { wait } => wait,
            };
            let error = result.error.unwrap_or_default();
            let age = Duration::from_millis(timing::unix_ms_now().saturating_sub(event.time_ms));
            if age > self.settings.max_event_age {
                let letter = DeadLetter {
                    event_id: event.id,
                    event_type: event.kind.clone(),
                    attempts: attempt,
                    last_error: error.clone(),
                    dead_ms: timing::unix_ms_now(),
                };
                tracing::warn!(webhook = endpoint.id, event = event.id, attempts = attempt, error = %error, "webhook event given up: dead letter");
                let buried = self.bury(endpoint, &letter, stop).await;
                if buried.is_ok() {
                    *failing = Some(error);
                }
                return buried;
            }
            let pause = wait.unwrap_or_else(|| policy::backoff(attempt, jitter()));
            tracing::debug!(webhook = endpoint.id, event = event.id, attempt, error = %error, retry_in_ms = pause.as_millis() as u64, "webhook attempt failed");
            self.pause(pause, stop).await?;
        }
    }

    /// Stores `letter` (and moves the cursor past its event). Until it is stored the event is
    /// not lost: a failed write is tried again after a pause; Err when the loop must end.
    async fn bury(
        &self,
        endpoint: &Endpoint,
        letter: &DeadLetter,
        stop: &CancellationToken,
    ) -> Result<(), Ended> {
        let mut tries = 0u32;
        loop {
            tries += 1;
            match self
                .store
                .dead_letter(&self.fence, endpoint.id, letter)
                .await
            {
                Ok(()) => {
                    self.metrics
                        .webhook_dead_letters
                        .with_label_values(&[&endpoint.id.to_string()])
                        .inc();
                    return Ok(());
                }
                Err(WebhookStoreError::Fenced) => return Err(Ended::Fenced),
                Err(e) => {
                    tracing::warn!(webhook = endpoint.id, error = %e, "recording a dead letter failed; trying again");
                    self.pause(policy::backoff(tries, jitter()), stop).await?;
                }
            }
        }
    }

    async fn pause(&self, d: Duration, stop: &CancellationToken) -> Result<(), Ended> {
        tokio::select! {
            _ = stop.cancelled() => Err(Ended::Stopped),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }
}

/// A random number in 0..1 for back-off jitter.
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}
