//! Fenced access to the cluster state in etcd: the new leader's consistent load and the commit
//! pipeline's transactions. Every request here carries the leader fence,
//! `create_revision(election key) == leader epoch`, so a deposed leader can neither write nor
//! mistake a read for current.

use std::time::Instant;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use super::keys::{KeyLayout, prefix_end};
use crate::cluster::{BlobKey, LeaderEpoch, OsdId, Record, RecordKey, decode_record};
use crate::metrics::Metrics;
use crate::timing;

/// Keys per page of the load.
const LOAD_PAGE: i64 = 256;
/// Largest response the loader accepts (a page of PG-table chunks is several MiB).
const LOAD_MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The leader fence: this term's election key and its create revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub election_key: Vec<u8>,
    pub epoch: LeaderEpoch,
}

impl Fence {
    fn compare(&self) -> Compare {
        Compare::create_revision(
            self.election_key.clone(),
            CompareOp::Equal,
            self.epoch.0 as i64,
        )
    }
}

/// One write of a transaction: a put (value) or a delete (None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedOp {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl EncodedOp {
    /// Bytes this op adds to a transaction request (key, value and framing).
    pub fn size(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len) + 16
    }
}

/// Why a store request failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The fence compare failed: another monitor leads now. Definite: nothing was written.
    #[error("the leader fence rejected the request: this monitor no longer leads")]
    Fenced,
    /// etcd failed or did not answer in time. For a write the outcome is unknown.
    #[error("etcd request failed: {0}")]
    Etcd(String),
    /// Stored data does not decode.
    #[error("stored cluster data is invalid: {0}")]
    Corrupt(String),
}

/// Reads and writes the cluster state under the leader fence.
#[derive(Clone)]
pub struct Store {
    client: etcd_client::Client,
    keys: KeyLayout,
    metrics: Metrics,
}

impl Store {
    pub fn new(client: etcd_client::Client, keys: KeyLayout, metrics: Metrics) -> Store {
        Store {
            client,
            keys,
            metrics,
        }
    }

    /// The key layout in use.
    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    /// Loads every cluster record in one consistent (linearizable, single-revision) read.
    /// The first page is read inside a fenced transaction, so a deposed leader cannot load.
    pub async fn load(&self, fence: &Fence) -> Result<Vec<(RecordKey, Record)>, StoreError> {
        let prefix = self.keys.cluster_prefix();
        let end = prefix_end(&prefix);
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(LOAD_MAX_MESSAGE);
        let first = Txn::new().when([fence.compare()]).and_then([TxnOp::get(
            prefix.clone(),
            Some(
                GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(LOAD_PAGE),
            ),
        )]);
        let resp = with_timeout(kv.txn(first)).await?;
        if !resp.succeeded() {
            return Err(StoreError::Fenced);
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let Some(TxnOpResponse::Get(mut page)) = resp.op_responses().into_iter().next() else {
            return Err(StoreError::Etcd(
                "fenced read returned no range".to_string(),
            ));
        };
        let mut records = Vec::new();
        loop {
            let more = page.more();
            let kvs = page.take_kvs();
            let last = kvs.last().map(|kv| kv.key().to_vec());
            for kv in kvs {
                let key = String::from_utf8_lossy(kv.key()).to_string();
                match self.keys.parse_record(&key) {
                    Some(rk) => {
                        let record = decode_record(&rk, kv.value())
                            .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
                        records.push((rk, record));
                    }
                    None => {
                        tracing::warn!(%key, "ignoring an unknown key under the cluster prefix")
                    }
                }
            }
            let (true, Some(mut next)) = (more, last) else {
                break;
            };
            next.push(0);
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_revision(revision)
                .with_limit(LOAD_PAGE);
            page = with_timeout(kv.get(next, Some(options))).await?;
        }
        Ok(records)
    }

    /// The config text an OSD reported at boot (kept outside the cluster state).
    pub async fn osd_config(&self, id: OsdId) -> Result<Option<String>, StoreError> {
        let key = self.keys.blob(&BlobKey::OsdConfig(id));
        let resp = with_timeout(self.client.clone().get(key, None)).await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).to_string()))
    }

    /// Commits `ops` in one fenced transaction.
    pub async fn commit(&self, fence: &Fence, ops: &[EncodedOp]) -> Result<(), StoreError> {
        let txn_ops: Vec<TxnOp> = ops
            .iter()
            .map(|op| match &op.value {
                Some(v) => TxnOp::put(op.key.clone(), v.clone(), None),
                None => TxnOp::delete(op.key.clone(), None),
            })
            .collect();
        let txn = Txn::new().when([fence.compare()]).and_then(txn_ops);
        let started = Instant::now();
        let mut kv = self.client.kv_client();
        let result = with_timeout(kv.txn(txn)).await;
        self.metrics
            .etcd_txn_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(resp) if resp.succeeded() => Ok(()),
            Ok(_) => {
                self.metrics
                    .etcd_txn_failures
                    .with_label_values(&["fenced"])
                    .inc();
                Err(StoreError::Fenced)
            }
            Err(e) => {
                self.metrics
                    .etcd_txn_failures
                    .with_label_values(&["error"])
                    .inc();
                Err(e)
            }
        }
    }
}

/// Bounds one etcd request by the standard timeout.
pub async fn with_timeout<T>(
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timing::ETCD_REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StoreError::Etcd(e.to_string())),
        Err(_) => Err(StoreError::Etcd(format!(
            "no answer within {:?}",
            timing::ETCD_REQUEST_TIMEOUT
        ))),
    }
}
