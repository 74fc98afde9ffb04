//! The registered webhooks in etcd (`<prefix>/webhooks/`): endpoints, the url index that makes
//! a url registered once, each endpoint's delivery cursor and its dead letters. Every write is
//! one transaction under the leader fence; a registration also compares the id counter and the
//! url index, so concurrent adds (from any client, through any leader) never collide.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use prost::Message;

use super::endpoints::{Etcd, EtcdFailure};
use super::keys::{KeyLayout, prefix_end};
use super::store::Fence;
use crate::proto::store as pb;

/// Why a webhook store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookStoreError {
    #[error("etcd request failed: {0}")]
    Etcd(#[from] EtcdFailure),
    #[error("another monitor leads now")]
    Fenced,
    #[error("the url is registered already as webhook {0}")]
    Duplicate(u32),
    #[error("no webhook {0}")]
    NotFound(u32),
    #[error("stored webhook value {key} is invalid: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A registered endpoint as stored.
pub type Endpoint = pb::WebhookRecord;
/// A dead letter as stored.
pub type DeadLetter = pb::WebhookDeadLetter;

/// Reads and fenced writes of `<prefix>/webhooks/`.
#[derive(Clone)]
pub struct WebhookStore {
    etcd: Etcd,
    keys: KeyLayout,
}

/// The sha-256 of a url, hex: the url index's key.
pub fn url_hash(url: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(url.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl WebhookStore {
    pub fn new(etcd: Etcd, keys: KeyLayout) -> WebhookStore {
        WebhookStore { etcd, keys }
    }

    fn decode<M: Message + Default>(key: &[u8], value: &[u8]) -> Result<M, WebhookStoreError> {
        M::decode(value).map_err(|e| WebhookStoreError::Corrupt {
            key: crate::text::shown(&String::from_utf8_lossy(key)),
            reason: e.to_string(),
        })
    }

    /// Every registered endpoint, by id.
    pub async fn list(&self) -> Result<Vec<Endpoint>, WebhookStoreError> {
        let prefix = self.keys.webhook_endpoints();
        let resp = self
            .etcd
            .get(
                prefix.clone(),
                Some(GetOptions::new().with_range(prefix_end(&prefix))),
            )
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| Self::decode(kv.key(), kv.value()))
            .collect()
    }

    /// The endpoint `id`.
    pub async fn endpoint(&self, id: u32) -> Result<Endpoint, WebhookStoreError> {
        let resp = self.etcd.get(self.keys.webhook_endpoint(id), None).await?;
        match resp.kvs().first() {
            Some(kv) => Self::decode(kv.key(), kv.value()),
            None => Err(WebhookStoreError::NotFound(id)),
        }
    }

    /// Registers `endpoint` (its id is given here) with its cursor at `cursor`: delivery starts
    /// with the event after it.
    pub async fn add(
        &self,
        fence: &Fence,
        mut endpoint: Endpoint,
        cursor: u64,
    ) -> Result<Endpoint, WebhookStoreError> {
        let url_key = self.keys.webhook_url(&url_hash(&endpoint.url));
        let next_key = self.keys.webhook_next_id();
        // A concurrent add may take the id first: read again and retry a few times.
        for _ in 0..8 {
            let next = self.etcd.get(next_key.clone(), None).await?;
            let (id, id_compare) = match next.kvs().first() {
                Some(kv) => (
                    String::from_utf8_lossy(kv.value())
                        .parse::<u32>()
                        .unwrap_or(1),
                    Compare::mod_revision(next_key.clone(), CompareOp::Equal, kv.mod_revision()),
                ),
                None => (
                    1,
                    Compare::create_revision(next_key.clone(), CompareOp::Equal, 0),
                ),
            };
            endpoint.id = id;
            let txn = Txn::new()
                .when([
                    fence.compare(),
                    id_compare,
                    Compare::create_revision(url_key.clone(), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(next_key.clone(), (id + 1).to_string(), None),
                    TxnOp::put(
                        self.keys.webhook_endpoint(id),
                        endpoint.encode_to_vec(),
                        None,
                    ),
                    TxnOp::put(url_key.clone(), id.to_string(), None),
                    TxnOp::put(
                        self.keys.webhook_cursor(id),
                        pb::WebhookCursor { delivered: cursor }.encode_to_vec(),
                        None,
                    ),
                ]);
            if self.etcd.txn(txn).await?.succeeded() {
                return Ok(endpoint);
            }
            let existing = self.etcd.get(url_key.clone(), None).await?;
            if let Some(kv) = existing.kvs().first() {
                let id = String::from_utf8_lossy(kv.value()).parse().unwrap_or(0);
                return Err(WebhookStoreError::Duplicate(id));
            }
            if !self.fence_holds(fence).await? {
                return Err(WebhookStoreError::Fenced);
            }
        }
        Err(WebhookStoreError::Fenced)
    }

    async fn fence_holds(&self, fence: &Fence) -> Result<bool, WebhookStoreError> {
        let resp = self
            .etcd
            .txn(Txn::new().when([fence.compare()]).and_then([]))
            .await?;
        Ok(resp.succeeded())
    }

    async fn fenced(&self, fence: &Fence, ops: Vec<TxnOp>) -> Result<(), WebhookStoreError> {
        let resp = self
            .etcd
            .txn(Txn::new().when([fence.compare()]).and_then(ops))
            .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(WebhookStoreError::Fenced)
        }
    }

    /// Removes the endpoint `id` with its url index, cursor and dead letters.
    pub async fn remove(&self, fence: &Fence, id: u32) -> Result<Endpoint, WebhookStoreError> {
        let endpoint = self.endpoint(id).await?;
        let dead = self.keys.webhook_dead_prefix(id);
        self.fenced(
            fence,
            vec![
                TxnOp::delete(self.keys.webhook_endpoint(id), None),
                TxnOp::delete(self.keys.webhook_url(&url_hash(&endpoint.url)), None),
                TxnOp::delete(self.keys.webhook_cursor(id), None),
                TxnOp::delete(
                    dead.clone(),
                    Some(etcd_client::DeleteOptions::new().with_range(prefix_end(&dead))),
                ),
            ],
        )
        .await?;
        Ok(endpoint)
    }

    /// Stores `endpoint` as it is now (disabled, for instance), if it still exists.
    pub async fn update(
        &self,
        fence: &Fence,
        endpoint: &Endpoint,
    ) -> Result<(), WebhookStoreError> {
        let key = self.keys.webhook_endpoint(endpoint.id);
        let resp = self
            .etcd
            .txn(
                Txn::new()
                    .when([
                        fence.compare(),
                        Compare::create_revision(key.clone(), CompareOp::Greater, 0),
                    ])
                    .and_then([TxnOp::put(key, endpoint.encode_to_vec(), None)]),
            )
            .await?;
        if resp.succeeded() {
            Ok(())
        } else if !self.fence_holds(fence).await? {
            Err(WebhookStoreError::Fenced)
        } else {
            Err(WebhookStoreError::NotFound(endpoint.id))
        }
    }

    /// The last event id delivered to `id` (0 when it has no cursor).
    pub async fn cursor(&self, id: u32) -> Result<u64, WebhookStoreError> {
        let resp = self.etcd.get(self.keys.webhook_cursor(id), None).await?;
        match resp.kvs().first() {
            Some(kv) => Ok(Self::decode::<pb::WebhookCursor>(kv.key(), kv.value())?.delivered),
            None => Ok(0),
        }
    }

    /// Moves the cursor of `id` (only while the endpoint exists).
    pub async fn set_cursor(
        &self,
        fence: &Fence,
        id: u32,
        delivered: u64,
    ) -> Result<(), WebhookStoreError> {
        let endpoint = self.keys.webhook_endpoint(id);
        let resp = self
            .etcd
            .txn(
                Txn::new()
                    .when([
                        fence.compare(),
                        Compare::create_revision(endpoint, CompareOp::Greater, 0),
                    ])
                    .and_then([TxnOp::put(
                        self.keys.webhook_cursor(id),
                        pb::WebhookCursor { delivered }.encode_to_vec(),
                        None,
                    )]),
            )
            .await?;
        if resp.succeeded() {
            Ok(())
        } else if !self.fence_holds(fence).await? {
            Err(WebhookStoreError::Fenced)
        } else {
            Err(WebhookStoreError::NotFound(id))
        }
    }

    /// Records a dead letter of `id` and moves its cursor past the event, in one transaction.
    pub async fn dead_letter(
        &self,
        fence: &Fence,
        id: u32,
        letter: &DeadLetter,
    ) -> Result<(), WebhookStoreError> {
        self.fenced(
            fence,
            vec![
                TxnOp::put(
                    self.keys.webhook_dead(id, letter.event_id),
                    letter.encode_to_vec(),
                    None,
                ),
                TxnOp::put(
                    self.keys.webhook_cursor(id),
                    pb::WebhookCursor {
                        delivered: letter.event_id,
                    }
                    .encode_to_vec(),
                    None,
                ),
            ],
        )
        .await
    }

    /// The dead letters of `id`, oldest first (at most `limit`).
    pub async fn dead_letters(
        &self,
        id: u32,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, WebhookStoreError> {
        let prefix = self.keys.webhook_dead_prefix(id);
        let resp = self
            .etcd
            .get(
                prefix.clone(),
                Some(
                    GetOptions::new()
                        .with_range(prefix_end(&prefix))
                        .with_limit(limit),
                ),
            )
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| Self::decode(kv.key(), kv.value()))
            .collect()
    }

    /// How many dead letters endpoint `id` has, or every endpoint together (`None`, for the
    /// health check); counted by etcd, no value read.
    pub async fn dead_letter_count(&self, id: Option<u32>) -> Result<i64, WebhookStoreError> {
        let prefix = match id {
            Some(id) => self.keys.webhook_dead_prefix(id),
            None => format!("{}dead/", self.keys.webhooks_prefix()),
        };
        let resp = self
            .etcd
            .get(
                prefix.clone(),
                Some(
                    GetOptions::new()
                        .with_range(prefix_end(&prefix))
                        .with_count_only(),
                ),
            )
            .await?;
        Ok(resp.count())
    }

    /// Deletes every dead letter of `id`.
    pub async fn purge_dead_letters(
        &self,
        fence: &Fence,
        id: u32,
    ) -> Result<(), WebhookStoreError> {
        let dead = self.keys.webhook_dead_prefix(id);
        self.fenced(
            fence,
            vec![TxnOp::delete(
                dead.clone(),
                Some(etcd_client::DeleteOptions::new().with_range(prefix_end(&dead))),
            )],
        )
        .await
    }
}
