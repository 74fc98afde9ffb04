//! Fenced access to the cluster state in etcd: the new leader's consistent load and the commit
//! pipeline's transactions. Every request here carries the leader fence,
//! `create_revision(election key) == leader epoch`, so a deposed leader can neither write nor
//! mistake a read for current.

use std::time::Instant;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use super::endpoints::{Etcd, EtcdFailure};
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
    pub(super) fn compare(&self) -> Compare {
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

/// What [`Store::count`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The etcd revision of the read.
    pub revision: i64,
    /// Keys under the prefixes.
    pub keys: u64,
    /// The value of the single key asked for, if it exists.
    pub also: Option<Vec<u8>>,
}

/// Why a store request failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The fence compare failed: another monitor leads now. Definite: nothing was written.
    #[error("the leader fence rejected the request: this monitor no longer leads")]
    Fenced,
    /// etcd failed or did not answer in time. For a write the outcome is unknown.
    #[error("etcd request failed: {0}")]
    Etcd(#[from] EtcdFailure),
    /// Stored data does not decode.
    #[error("stored cluster data is invalid: {0}")]
    Corrupt(String),
    /// An import or restore is writing the state (or was interrupted): nothing to load yet.
    #[error(
        "{0} is writing the cluster state (the key <prefix>/maintenance exists); this monitor leads once it completes. If it was interrupted, run it again with --force"
    )]
    Maintenance(String),
}

/// Who holds the maintenance key, for the log.
fn describe_maintenance(value: &[u8]) -> String {
    use prost::Message;
    match crate::proto::store::MaintenanceRecord::decode(value) {
        Ok(m) => format!(
            "{} on {} (fastblock-mon {})",
            crate::text::shown(&m.operation),
            crate::text::shown(&m.host),
            crate::text::shown(&m.version)
        ),
        Err(_) => "an import or restore".to_string(),
    }
}

/// Reads and writes the cluster state under the leader fence.
#[derive(Clone)]
pub struct Store {
    etcd: Etcd,
    keys: KeyLayout,
    metrics: Metrics,
}

/// Attempts at reading one page of the load before the load as a whole fails (each attempt
/// already tries every healthy endpoint).
const PAGE_ATTEMPTS: u32 = 4;

impl Store {
    pub fn new(etcd: Etcd, keys: KeyLayout, metrics: Metrics) -> Store {
        Store {
            etcd,
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
        let first = Txn::new().when([fence.compare()]).and_then([
            TxnOp::get(
                prefix.clone(),
                Some(
                    GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(LOAD_PAGE),
                ),
            ),
            TxnOp::get(self.keys.maintenance(), None),
        ]);
        let resp = self
            .etcd
            .request(timing::ETCD_REQUEST_TIMEOUT, |c| {
                let mut kv = c.kv_client().max_decoding_message_size(LOAD_MAX_MESSAGE);
                let txn = first.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::Fenced);
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut responses = resp.op_responses().into_iter();
        let (Some(TxnOpResponse::Get(mut page)), Some(TxnOpResponse::Get(maintenance))) =
            (responses.next(), responses.next())
        else {
            return Err(StoreError::Corrupt(
                "fenced read returned no range".to_string(),
            ));
        };
        if let Some(kv) = maintenance.kvs().first() {
            return Err(StoreError::Maintenance(describe_maintenance(kv.value())));
        }
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
            page = self.load_page(next, &end, revision).await?;
        }
        Ok(records)
    }

    /// One page of the load at the load's revision: a failed page is read again (every page
    /// reads the same revision, so the load stays one consistent snapshot) instead of failing
    /// the whole load.
    async fn load_page(
        &self,
        from: Vec<u8>,
        end: &[u8],
        revision: i64,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        let options = GetOptions::new()
            .with_range(end.to_vec())
            .with_revision(revision)
            .with_limit(LOAD_PAGE);
        let mut backoff = timing::ETCD_RETRY_MIN;
        let mut attempt = 1;
        loop {
            let result = self
                .etcd
                .request(timing::ETCD_REQUEST_TIMEOUT, |c| {
                    let mut kv = c.kv_client().max_decoding_message_size(LOAD_MAX_MESSAGE);
                    let (from, options) = (from.clone(), options.clone());
                    async move { kv.get(from, Some(options)).await }
                })
                .await;
            match result {
                Err(e) if e.endpoint_at_fault() && attempt < PAGE_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "reading a page of the state failed; reading it again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(timing::ETCD_RETRY_MAX);
                    attempt += 1;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Starts a consistent read of every key under `prefixes` (a backup): one fenced
    /// transaction fixes the revision, counts the keys and reads `also` (a single key, e.g. the
    /// osdmap meta); [`SnapshotReader::next_page`] then reads the keys page by page at that
    /// revision, prefixes in the order given.
    pub async fn snapshot_reader(
        &self,
        fence: &Fence,
        prefixes: Vec<String>,
        also: String,
    ) -> Result<(SnapshotReader, Option<Vec<u8>>), StoreError> {
        let counted = self.count(fence, &prefixes, also).await?;
        let reader = SnapshotReader {
            store: self.clone(),
            revision: counted.revision,
            total: counted.keys,
            ranges: prefixes
                .into_iter()
                .map(|p| {
                    let end = prefix_end(&p);
                    (p.into_bytes(), end)
                })
                .collect(),
        };
        Ok((reader, counted.also))
    }

    /// Under the fence, at one revision: how many keys are under `prefixes`, and the value of
    /// the single key `also`.
    pub async fn count(
        &self,
        fence: &Fence,
        prefixes: &[String],
        also: String,
    ) -> Result<Counted, StoreError> {
        let mut ops: Vec<TxnOp> = prefixes
            .iter()
            .map(|p| {
                TxnOp::get(
                    p.clone(),
                    Some(
                        GetOptions::new()
                            .with_range(prefix_end(p))
                            .with_count_only(),
                    ),
                )
            })
            .collect();
        ops.push(TxnOp::get(also, None));
        let resp = self.fenced_txn(fence, ops).await?;
        let mut counted = Counted {
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
            keys: 0,
            also: None,
        };
        for (i, op) in resp.op_responses().into_iter().enumerate() {
            if let TxnOpResponse::Get(g) = op {
                if i < prefixes.len() {
                    counted.keys += g.count().max(0) as u64;
                } else {
                    counted.also = g.kvs().first().map(|kv| kv.value().to_vec());
                }
            }
        }
        Ok(counted)
    }

    /// Deletes every key under `prefixes` in one fenced transaction.
    pub async fn delete_prefixes(
        &self,
        fence: &Fence,
        prefixes: &[String],
    ) -> Result<(), StoreError> {
        let ops = prefixes
            .iter()
            .map(|p| {
                TxnOp::delete(
                    p.clone(),
                    Some(DeleteOptions::new().with_range(prefix_end(p))),
                )
            })
            .collect();
        self.fenced_txn(fence, ops).await.map(|_| ())
    }

    /// Deletes the keys in `[from, to)` in one fenced transaction; returns how many there were.
    pub async fn delete_range(
        &self,
        fence: &Fence,
        from: &str,
        to: &str,
    ) -> Result<u64, StoreError> {
        let op = TxnOp::delete(
            from.to_string(),
            Some(DeleteOptions::new().with_range(to.to_string())),
        );
        let resp = self.fenced_txn(fence, vec![op]).await?;
        Ok(resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Delete(d) => d.deleted().max(0) as u64,
                _ => 0,
            })
            .sum())
    }

    /// The event log's reads, through the same etcd clients.
    pub fn events(&self) -> super::EventStore {
        super::EventStore::new(self.etcd.clone(), self.keys.clone())
    }

    /// The registered webhooks' reads and fenced writes, through the same etcd clients.
    pub fn webhooks(&self) -> super::WebhookStore {
        super::WebhookStore::new(self.etcd.clone(), self.keys.clone())
    }

    /// Sends `ops` in one transaction under the fence.
    async fn fenced_txn(&self, fence: &Fence, ops: Vec<TxnOp>) -> Result<TxnResponse, StoreError> {
        let resp = self
            .etcd
            .txn(Txn::new().when([fence.compare()]).and_then(ops))
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::Fenced);
        }
        Ok(resp)
    }

    /// The config text an OSD reported at boot (kept outside the cluster state).
    pub async fn osd_config(&self, id: OsdId) -> Result<Option<String>, StoreError> {
        let key = self.keys.blob(&BlobKey::OsdConfig(id));
        let resp = self.etcd.get(key, None).await?;
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
        let started = Instant::now();
        // Safe to send to another endpoint after a failure: a transaction of absolute values
        // under the fence applies the same way twice.
        let result = self.fenced_txn(fence, txn_ops).await;
        self.metrics
            .etcd_txn_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(_) => Ok(()),
            Err(StoreError::Fenced) => {
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

/// A consistent read of several key ranges at one revision, page by page (see
/// [`Store::snapshot_reader`]).
pub struct SnapshotReader {
    store: Store,
    revision: i64,
    total: u64,
    /// Ranges still to read: (next key, end); the first is the one being read.
    ranges: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl SnapshotReader {
    /// The etcd revision every page is read at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// How many keys the ranges hold at that revision.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The next page of (key, value) pairs in key order; None when every range is read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<(String, Vec<u8>)>>, StoreError> {
        while let Some((from, end)) = self.ranges.front().cloned() {
            let mut page = self.store.load_page(from, &end, self.revision).await?;
            let more = page.more();
            let kvs = page.take_kvs();
            match (more, kvs.last()) {
                (true, Some(last)) => {
                    let mut next = last.key().to_vec();
                    next.push(0);
                    self.ranges[0].0 = next;
                }
                _ => {
                    self.ranges.pop_front();
                }
            }
            if kvs.is_empty() {
                continue;
            }
            let mut out = Vec::with_capacity(kvs.len());
            for kv in kvs {
                let (key, value) = kv.into_key_value();
                let key = String::from_utf8(key)
                    .map_err(|e| StoreError::Corrupt(format!("a key that is not UTF-8: {e}")))?;
                out.push((key, value));
            }
            return Ok(Some(out));
        }
        Ok(None)
    }
}
