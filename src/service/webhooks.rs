//! Webhook registration calls (leader only): add, list, remove, test, replay, dead letters.
//! Registrations live in etcd (`crate::etcd::webhooks`), written under the leader fence; the
//! term's webhook task (`crate::webhook::supervisor`) is woken to act on a change at once.

use std::time::Duration;

use tonic::{Code, Status};

use super::{MonitorService, requests, status};
use crate::etcd::WebhookStoreError;
use crate::etcd::webhooks::Endpoint;
use crate::proto::monitor as api;
use crate::service::reasons;
use crate::term::TermContext;
use crate::webhook::deliver::{Sender, secrets_of};
use crate::webhook::envelope;
use crate::webhook::policy::Outcome;
use crate::webhook::sign::Secret;

/// How long AddWebhook waits for a TCP connection to the endpoint's host.
const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(3);
/// Dead letters listed when the request says 0, and at most.
const DEFAULT_LETTERS: u32 = 100;
const MAX_LETTERS: u32 = 10_000;

fn store_error(e: WebhookStoreError, leader: &str) -> Status {
    match e {
        WebhookStoreError::Fenced => status::not_leader(leader),
        WebhookStoreError::Duplicate(id) => status::error(
            Code::AlreadyExists,
            reasons::WEBHOOK_EXISTS,
            format!("the url is registered already as webhook {id}"),
        ),
        WebhookStoreError::NotFound(id) => status::error(
            Code::NotFound,
            reasons::WEBHOOK_NOT_FOUND,
            format!("no webhook {id}"),
        ),
        WebhookStoreError::Etcd(e) => status::error(
            Code::Unavailable,
            reasons::ETCD_UNAVAILABLE,
            format!("etcd cannot be reached: {e}"),
        ),
        e @ WebhookStoreError::Corrupt { .. } => {
            status::error(Code::Internal, reasons::STORED_VALUE_CORRUPT, e.to_string())
        }
    }
}

/// The API view of an endpoint (never its secrets).
fn info(e: &Endpoint, delivered_id: u64, dead_letters: u64) -> api::WebhookInfo {
    api::WebhookInfo {
        id: e.id,
        url: e.url.clone(),
        types: e.types.clone(),
        secrets: e.secrets.len() as u32,
        bearer_token: !e.bearer_token.is_empty(),
        created_ms: e.created_ms,
        disabled_reason: e.disabled_reason.clone(),
        delivered_id,
        dead_letters,
    }
}

impl MonitorService {
    fn webhook_error(&self, e: WebhookStoreError) -> Status {
        store_error(e, &self.node.leader_hint())
    }

    async fn webhook_info(&self, e: &Endpoint) -> Result<api::WebhookInfo, Status> {
        let store = self.node.store.webhooks();
        let cursor = store
            .cursor(e.id)
            .await
            .map_err(|e| self.webhook_error(e))?;
        let dead = store
            .dead_letter_count(Some(e.id))
            .await
            .map_err(|e| self.webhook_error(e))?
            .max(0) as u64;
        Ok(info(e, cursor, dead))
    }

    pub(super) async fn add_webhook(
        &self,
        r: api::AddWebhookRequest,
    ) -> Result<api::AddWebhookResponse, Status> {
        let serving = self.leader()?;
        let settings = &serving.webhooks.settings;
        let checked = requests::add_webhook(&r, settings.allow_http)?;
        // Checked before the add, not in its transaction: adds racing at the limit may pass it
        // by a few, never without bound.
        let registered = self
            .node
            .store
            .webhooks()
            .list()
            .await
            .map_err(|e| self.webhook_error(e))?
            .len();
        if registered >= requests::MAX_WEBHOOKS {
            return Err(status::error(
                Code::ResourceExhausted,
                reasons::TOO_MANY_WEBHOOKS,
                format!(
                    "{registered} webhooks are registered, the most there may be; remove one first"
                ),
            ));
        }
        if !r.skip_reachability_check {
            reachable(&checked.url).await?;
        }
        let (secrets, generated) = if checked.secrets.is_empty() {
            let s = Secret::generate();
            (vec![s.clone()], s.shown())
        } else {
            (checked.secrets, String::new())
        };
        let endpoint = Endpoint {
            id: 0,
            url: checked.url.to_string(),
            types: checked.types,
            secrets: secrets.iter().map(|s| s.bytes().to_vec()).collect(),
            bearer_token: r.bearer_token,
            created_ms: crate::timing::unix_ms_now(),
            disabled_reason: String::new(),
            disabled_ms: 0,
            replay_from: 0,
        };
        // Delivery starts after the newest event committed now.
        let start = serving.snapshot().counters().next_event_id - 1;
        let added = self
            .node
            .store
            .webhooks()
            .add(&serving.term.fence, endpoint, start)
            .await
            .map_err(|e| self.webhook_error(e))?;
        serving.webhooks.reload.notify_one();
        tracing::info!(webhook = added.id, url = %crate::text::shown(&added.url), "webhook registered");
        Ok(api::AddWebhookResponse {
            webhook: Some(info(&added, start, 0)),
            generated_secret: generated,
        })
    }

    pub(super) async fn list_webhooks(
        &self,
        _r: api::ListWebhooksRequest,
    ) -> Result<api::ListWebhooksResponse, Status> {
        self.leader()?;
        let endpoints = self
            .node
            .store
            .webhooks()
            .list()
            .await
            .map_err(|e| self.webhook_error(e))?;
        let mut webhooks = Vec::with_capacity(endpoints.len());
        for e in &endpoints {
            webhooks.push(self.webhook_info(e).await?);
        }
        Ok(api::ListWebhooksResponse { webhooks })
    }

    pub(super) async fn remove_webhook(
        &self,
        r: api::RemoveWebhookRequest,
    ) -> Result<api::WebhookResponse, Status> {
        let serving = self.leader()?;
        let removed = self
            .node
            .store
            .webhooks()
            .remove(&serving.term.fence, r.id)
            .await
            .map_err(|e| self.webhook_error(e))?;
        serving.webhooks.reload.notify_one();
        tracing::info!(webhook = r.id, "webhook removed");
        Ok(api::WebhookResponse {
            webhook: Some(info(&removed, 0, 0)),
        })
    }

    pub(super) async fn test_webhook(
        &self,
        r: api::TestWebhookRequest,
    ) -> Result<api::TestWebhookResponse, Status> {
        let serving = self.leader()?;
        let endpoint = self
            .node
            .store
            .webhooks()
            .endpoint(r.id)
            .await
            .map_err(|e| self.webhook_error(e))?;
        let attempt = test_delivery(&serving, &endpoint).await?;
        Ok(api::TestWebhookResponse {
            delivered: attempt.outcome == Outcome::Delivered,
            status: u32::from(attempt.status.unwrap_or(0)),
            error: attempt.error.unwrap_or_default(),
        })
    }

    pub(super) async fn replay_webhook(
        &self,
        r: api::ReplayWebhookRequest,
    ) -> Result<api::WebhookResponse, Status> {
        let serving = self.leader()?;
        let (oldest, _) = self.node.events.store().oldest().await.map_err(|e| {
            status::error(Code::Unavailable, reasons::ETCD_UNAVAILABLE, e.to_string())
        })?;
        let next = serving.snapshot().counters().next_event_id;
        requests::replay_from(r.from_id, oldest, next)?;
        let store = self.node.store.webhooks();
        let mut endpoint = store
            .endpoint(r.id)
            .await
            .map_err(|e| self.webhook_error(e))?;
        endpoint.replay_from = r.from_id;
        endpoint.disabled_reason.clear();
        endpoint.disabled_ms = 0;
        store
            .update(&serving.term.fence, &endpoint)
            .await
            .map_err(|e| self.webhook_error(e))?;
        serving.webhooks.reload.notify_one();
        tracing::info!(webhook = r.id, from = r.from_id, "webhook replay requested");
        Ok(api::WebhookResponse {
            webhook: Some(self.webhook_info(&endpoint).await?),
        })
    }

    pub(super) async fn webhook_dead_letters(
        &self,
        r: api::WebhookDeadLettersRequest,
    ) -> Result<api::WebhookDeadLettersResponse, Status> {
        let serving = self.leader()?;
        let limit = match r.limit {
            0 => DEFAULT_LETTERS,
            n => n.min(MAX_LETTERS),
        };
        let store = self.node.store.webhooks();
        store
            .endpoint(r.id)
            .await
            .map_err(|e| self.webhook_error(e))?;
        let letters = store
            .dead_letters(r.id, i64::from(limit))
            .await
            .map_err(|e| self.webhook_error(e))?;
        if r.purge {
            store
                .purge_dead_letters(&serving.term.fence, r.id)
                .await
                .map_err(|e| self.webhook_error(e))?;
            serving.webhooks.reload.notify_one();
        }
        Ok(api::WebhookDeadLettersResponse {
            letters: letters
                .into_iter()
                .map(|l| api::WebhookDeadLetter {
                    event_id: l.event_id,
                    event_type: l.event_type,
                    attempts: l.attempts,
                    last_error: l.last_error,
                    dead_ms: l.dead_ms,
                })
                .collect(),
        })
    }
}

/// Checks that `url`'s host accepts a TCP connection (resolving its name first).
async fn reachable(url: &url::Url) -> Result<(), Status> {
    let unreachable = |why: String| {
        status::error(
            Code::FailedPrecondition,
            reasons::WEBHOOK_UNREACHABLE,
            format!("{why}; register anyway with skip_reachability_check (fbclient -force)"),
        )
    };
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let target = format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
    let shown = crate::cluster::echo(&target);
    match tokio::time::timeout(
        REACHABILITY_TIMEOUT,
        tokio::net::TcpStream::connect(&target),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(format!("cannot connect to {shown}: {e}"))),
        Err(_) => Err(unreachable(format!(
            "no connection to {shown} within {REACHABILITY_TIMEOUT:?}"
        ))),
    }
}

/// One test event, sent now with the endpoint's secrets and token.
async fn test_delivery(
    serving: &TermContext,
    endpoint: &Endpoint,
) -> Result<crate::webhook::deliver::Attempt, Status> {
    let settings = &serving.webhooks.settings;
    let sender = Sender::new(settings.timeout)
        .map_err(|e| status::error(Code::Internal, reasons::STORED_VALUE_CORRUPT, e))?;
    let now = crate::timing::unix_ms_now();
    let event = crate::cluster::Event {
        id: 0,
        kind: "webhook.test".to_string(),
        subject: format!("webhook.{}", endpoint.id),
        time_ms: now,
        osdmap_epoch: None,
        pool_epoch: None,
        data: serde_json::json!({ "webhook": endpoint.id }).to_string(),
    };
    // The test's id is not an event id: "test-<ms>" never collides with one.
    let id = format!("test-{now}");
    let body = envelope::body_as(&event, &id, &settings.source);
    Ok(sender
        .send_with_id(endpoint, &secrets_of(endpoint), &id, &body)
        .await)
}
